/* plugin.c - plugin search path, dlopen with ABI checks, option binding. */
#define _GNU_SOURCE
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "util.h"

#ifndef ETL_PLUGIN_INSTALL_DIR
#define ETL_PLUGIN_INSTALL_DIR "/usr/local/lib/etl/plugins"
#endif

/* The descriptor's fields up to and including `sink` are what ABI 1 needs. */
#define MIN_STRUCT_SIZE (offsetof(etl_plugin_t, sink) + sizeof(void *))

/* "<folder of libetl.so>/etl/plugins": where an installed tree keeps its
 * plugins, wherever the tree was moved. */
static char *installed_dir(void)
{
    Dl_info info;
    if (!dladdr((void *)installed_dir, &info) || !info.dli_fname)
        return NULL;
    char real[PATH_MAX];
    char *lib = etl_path_dir(realpath(info.dli_fname, real) ? real : info.dli_fname);
    char *dir = lib ? etl_asprintf("%s/etl/plugins", lib) : NULL;
    free(lib);
    return dir;
}

size_t etl_plugin_dirs(char ***out)
{
    char **v = NULL;
    size_t n = 0;
    const char *env = getenv("ETL_PLUGIN_PATH");
    char *exe = etl_exe_dir(), *lib = installed_dir();
    const char *fixed[3] = {exe, lib, ETL_PLUGIN_INSTALL_DIR};
    size_t cap = 4;
    v = malloc(cap * sizeof *v);
    if (!v)
        goto done;
    if (env) {
        char *copy = etl_strdup(env), *save = NULL;
        for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok;
             tok = strtok_r(NULL, ":", &save)) {
            if (n == cap) {
                char **nv = realloc(v, (cap *= 2) * sizeof *v);
                if (!nv)
                    break;
                v = nv;
            }
            v[n++] = etl_strdup(tok);
        }
        free(copy);
    }
    for (size_t i = 0; i < 3; i++) {
        if (!fixed[i] || (i == 2 && lib && strcmp(lib, fixed[2]) == 0))
            continue;
        if (n == cap) {
            char **nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        v[n++] = etl_strdup(fixed[i]);
    }
done:
    free(exe);
    free(lib);
    *out = v;
    return n;
}

static void free_dirs(char **dirs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

etl_plugin_lib_t *etl_plugin_open_file(const char *path, char *err, size_t errlen)
{
    etl_plugin_lib_t *lib = calloc(1, sizeof *lib);
    if (!lib) {
        etl_errf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    lib->path = etl_strdup(path);
    dlerror();
    lib->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib->dl) {
        const char *why = dlerror();
        /* dlerror repeats the path; keep the part after it */
        const char *p = why ? strstr(why, ": ") : NULL;
        etl_errf(err, errlen, "%s: not a loadable shared object (%s)", path,
                 p ? p + 2 : (why ? why : "unknown error"));
        goto fail;
    }
    dlerror();
    void *sym = dlsym(lib->dl, ETL_PLUGIN_ENTRY_SYMBOL);
    if (!sym || dlerror()) {
        etl_errf(err, errlen, "%s: not an etl plugin (no %s symbol)", path,
                 ETL_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    etl_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const etl_plugin_t *d = entry();
    if (!d) {
        etl_errf(err, errlen, "%s: %s returned no descriptor", path, ETL_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    if (d->abi_version != ETL_ABI_VERSION) {
        etl_errf(err, errlen,
                 "%s: built for plugin ABI %u, this etl speaks ABI %u (rebuild it against this "
                 "etl's headers)",
                 path, d->abi_version, ETL_ABI_VERSION);
        goto fail;
    }
    if (d->struct_size < MIN_STRUCT_SIZE) {
        etl_errf(err, errlen, "%s: descriptor too small (%u bytes, ABI %u needs %zu)", path,
                 d->struct_size, ETL_ABI_VERSION, (size_t)MIN_STRUCT_SIZE);
        goto fail;
    }
    if (!d->name || !*d->name || (!d->source && !d->sink)) {
        etl_errf(err, errlen, "%s: descriptor has no name or neither source nor sink", path);
        goto fail;
    }
    const char *bn = base_name(path);
    size_t nl = strlen(d->name);
    if (strncmp(bn, "etl-", 4) == 0 &&
        (strncmp(bn + 4, d->name, nl) != 0 || strcmp(bn + 4 + nl, ".so") != 0)) {
        etl_errf(err, errlen, "%s: file name does not match plugin name '%s' (expected etl-%s.so)",
                 path, d->name, d->name);
        goto fail;
    }
    if (d->source && (!d->source->open || !d->source->discover || !d->source->read ||
                      !d->source->close)) {
        etl_errf(err, errlen, "%s: source operations incomplete (open, discover, read, close)",
                 path);
        goto fail;
    }
    if (d->sink && (!d->sink->open || !d->sink->prepare || !d->sink->begin || !d->sink->write ||
                    !d->sink->commit || !d->sink->rollback || !d->sink->finish ||
                    !d->sink->close)) {
        etl_errf(err, errlen,
                 "%s: sink operations incomplete (open, prepare, begin, write, commit, rollback, "
                 "finish, close)",
                 path);
        goto fail;
    }
    lib->desc = d;
    return lib;
fail:
    etl_plugin_close(lib);
    return NULL;
}

void etl_plugin_close(etl_plugin_lib_t *lib)
{
    if (!lib)
        return;
    /* Plugins stay mapped: libraries they pull in (libcurl, libpq) register
     * atexit handlers and thread keys that must not outlive their code. */
    free(lib->path);
    free(lib);
}

static int valid_name(const char *name)
{
    if (!*name)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return 0;
    return 1;
}

etl_plugin_lib_t *etl_plugin_open(const char *name, char *err, size_t errlen)
{
    if (!valid_name(name)) {
        etl_errf(err, errlen, "bad plugin name '%s'", name);
        return NULL;
    }
    char **dirs;
    size_t n = etl_plugin_dirs(&dirs);
    etl_plugin_lib_t *lib = NULL;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        char *path = etl_asprintf("%s/etl-%s.so", dirs[i], name);
        struct stat st;
        if (path && stat(path, &st) == 0) {
            found = 1;
            lib = etl_plugin_open_file(path, err, errlen);
        }
        free(path);
    }
    if (!found) {
        etl_buf_t b;
        etl_buf_init(&b);
        for (size_t i = 0; i < n; i++)
            etl_buf_printf(&b, "%s%s", i ? ":" : "", dirs[i]);
        etl_errf(err, errlen, "unknown plugin '%s' (no etl-%s.so in %s)", name, name,
                 b.data ? b.data : "");
        etl_buf_free(&b);
    }
    free_dirs(dirs, n);
    return lib;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void etl_plugin_scan(void (*cb)(void *, const char *, const etl_plugin_lib_t *, const char *),
                     void *arg)
{
    char **dirs;
    size_t n = etl_plugin_dirs(&dirs);
    char **seen = NULL;
    size_t nseen = 0;
    for (size_t i = 0; i < n; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d)
            continue;
        char **files = NULL;
        size_t nf = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l < 8 || strncmp(e->d_name, "etl-", 4) != 0 || strcmp(e->d_name + l - 3, ".so"))
                continue;
            char **nv = realloc(files, (nf + 1) * sizeof *nv);
            if (!nv)
                break;
            files = nv;
            files[nf++] = etl_strdup(e->d_name);
        }
        closedir(d);
        if (nf)
            qsort(files, nf, sizeof *files, cmp_str);
        for (size_t f = 0; f < nf; f++) {
            int dup = 0;
            for (size_t s = 0; s < nseen; s++)
                dup |= strcmp(seen[s], files[f]) == 0;
            if (!dup) {
                char **nv = realloc(seen, (nseen + 1) * sizeof *nv);
                if (nv) {
                    seen = nv;
                    seen[nseen++] = etl_strdup(files[f]);
                }
                char *path = etl_path_join(dirs[i], files[f]);
                char err[ETL_ERRLEN] = "";
                etl_plugin_lib_t *lib = etl_plugin_open_file(path, err, sizeof err);
                cb(arg, path, lib, lib ? NULL : err);
                etl_plugin_close(lib);
                free(path);
            }
            free(files[f]);
        }
        free(files);
    }
    for (size_t s = 0; s < nseen; s++)
        free(seen[s]);
    free(seen);
    free_dirs(dirs, n);
}

/* ------------------------------------------------------------ options */

static void list_names(const etl_plugin_t *p, etl_buf_t *b)
{
    for (const etl_option_def_t *d = p->options; d && d->name; d++)
        etl_buf_printf(b, "%s%s", d == p->options ? "" : ", ", d->name);
}

static int check_value(const etl_option_def_t *d, const char *v, char *why, size_t n)
{
    int64_t i;
    int b;
    switch (d->type) {
    case ETL_OPT_INT:
        if (etl_parse_i64(v, &i) != 0) {
            etl_errf(why, n, "an integer");
            return -1;
        }
        break;
    case ETL_OPT_BOOL:
        if (etl_parse_bool(v, &b) != 0) {
            etl_errf(why, n, "true or false");
            return -1;
        }
        break;
    case ETL_OPT_DURATION:
        if (etl_parse_duration(v, &i) != 0) {
            etl_errf(why, n, "a duration such as 30s, 5m, 2h, 90d");
            return -1;
        }
        break;
    case ETL_OPT_ENUM: {
        const char *c = d->choices ? d->choices : "";
        size_t vl = strlen(v);
        int ok = 0;
        while (*c && !ok) {
            const char *bar = strchr(c, '|');
            size_t l = bar ? (size_t)(bar - c) : strlen(c);
            ok = l == vl && strncmp(c, v, l) == 0;
            c += l + (bar ? 1 : 0);
        }
        if (!ok) {
            etl_errf(why, n, "one of %s", d->choices ? d->choices : "");
            return -1;
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

static int set_items(etl_optval_t *ov, char *const *items, size_t n)
{
    ov->items = calloc(n + 1, sizeof *ov->items);
    if (!ov->items)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!(ov->items[i] = etl_strdup(items[i])))
            return -1;
    ov->nitems = n;
    return 0;
}

/* Splits a default list "a,b" into items. */
static int split_default(etl_optval_t *ov, const char *v)
{
    size_t n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ',';
    char **tmp = calloc(n, sizeof *tmp);
    if (!tmp)
        return -1;
    size_t k = 0;
    const char *s = v;
    for (;;) {
        const char *c = strchr(s, ',');
        size_t l = c ? (size_t)(c - s) : strlen(s);
        while (l && *s == ' ')
            s++, l--;
        while (l && s[l - 1] == ' ')
            l--;
        if (l)
            tmp[k++] = etl_strndup(s, l);
        if (!c)
            break;
        s = c + 1;
    }
    int rc = set_items(ov, tmp, k);
    for (size_t i = 0; i < k; i++)
        free(tmp[i]);
    free(tmp);
    return rc;
}

int etl_plugin_bind(const etl_plugin_t *p, const etl_endpoint_cfg_t *cfg, const char *file,
                    etl_options_t **out, char *err, size_t errlen)
{
    *out = NULL;
    etl_options_t *o = calloc(1, sizeof *o);
    size_t ndefs = 0;
    for (const etl_option_def_t *d = p->options; d && d->name; d++)
        ndefs++;
    if (!o || (ndefs && !(o->v = calloc(ndefs, sizeof *o->v))))
        goto nomem;
    o->n = ndefs;
    for (size_t i = 0; i < ndefs; i++)
        o->v[i].def = &p->options[i];

    for (size_t k = 0; k < cfg->nopts; k++) {
        const etl_opt_cfg_t *c = &cfg->opts[k];
        etl_optval_t *ov = NULL;
        for (size_t i = 0; i < ndefs; i++)
            if (strcmp(o->v[i].def->name, c->name) == 0)
                ov = &o->v[i];
        if (!ov) {
            etl_buf_t b;
            etl_buf_init(&b);
            list_names(p, &b);
            etl_errf(err, errlen, "%s:%d:%d: unknown option '%s' for plugin '%s' (expected one of: %s)",
                     file, c->loc.line, c->loc.col, c->name, p->name, b.data ? b.data : "none");
            etl_buf_free(&b);
            goto fail;
        }
        const etl_option_def_t *d = ov->def;
        if (c->is_list && d->type != ETL_OPT_LIST) {
            etl_errf(err, errlen, "%s:%d:%d: option '%s' of plugin '%s' takes one value, not a list "
                     "(expected %s)", file, c->vloc.line, c->vloc.col, c->name, p->name,
                     d->help ? d->help : "a scalar");
            goto fail;
        }
        char why[160];
        if (d->type != ETL_OPT_LIST && check_value(d, c->value, why, sizeof why) != 0) {
            const char *shown = d->secret ? "***" : c->value;
            etl_errf(err, errlen, "%s:%d:%d: bad value '%s' for option '%s' of plugin '%s' "
                     "(expected %s)", file, c->vloc.line, c->vloc.col, shown, c->name, p->name,
                     why);
            goto fail;
        }
        if (!(ov->value = etl_strdup(c->value)) || set_items(ov, c->items, c->n_items) != 0)
            goto nomem;
        ov->from_pipeline = 1;
        if (d->secret) {
            etl_redact_add(c->value);
            for (size_t it = 0; it < c->n_items; it++)
                etl_redact_add(c->items[it]);
        }
    }
    for (size_t i = 0; i < ndefs; i++) {
        etl_optval_t *ov = &o->v[i];
        if (ov->from_pipeline)
            continue;
        if (ov->def->required) {
            etl_errf(err, errlen, "%s:%d:%d: plugin '%s' needs option '%s' (expected %s)", file,
                     cfg->map_loc.line, cfg->map_loc.col, p->name, ov->def->name,
                     ov->def->help ? ov->def->help : "a value");
            goto fail;
        }
        if (ov->def->default_value) {
            if (!(ov->value = etl_strdup(ov->def->default_value)) ||
                split_default(ov, ov->value) != 0)
                goto nomem;
        }
    }
    *out = o;
    return 0;
nomem:
    etl_errf(err, errlen, "out of memory");
fail:
    etl_options_free(o);
    return -1;
}

void etl_options_free(etl_options_t *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].value);
        for (size_t k = 0; o->v[i].items && o->v[i].items[k]; k++)
            free(o->v[i].items[k]);
        free(o->v[i].items);
    }
    free(o->v);
    free(o);
}

const etl_optval_t *etl_options_get(const etl_options_t *o, const char *name)
{
    for (size_t i = 0; o && i < o->n; i++)
        if (strcmp(o->v[i].def->name, name) == 0)
            return &o->v[i];
    return NULL;
}
