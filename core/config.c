/*
 * config.c - the pipeline DSL, version 1: which keys exist at each level,
 * what they mean, their defaults, relative paths, the fk order and the
 * matrix. Reading YAML nodes is config_yaml.c's; ${...} is interp.c's.
 *
 * A load checks structure before meaning: every key of a mapping is checked
 * (known, given once) before any of its values is read, and the values are
 * then read in a fixed order, so "the first problem" is well defined.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "util.h"

/* A pipeline file is a page or two; this only guards against reading a
 * wrong, huge file. */
#define CONFIG_FILE_MAX (16 * 1024 * 1024)

#define DEFAULT_BATCH 500
#define MAX_BATCH 100000
#define DEFAULT_LOG_KEEP (30 * 86400)
#define DEFAULT_LUA_INSTRUCTIONS 10000000ull
#define DEFAULT_LUA_MEMORY_MIB 64
#define MAX_LUA_MEMORY_MIB 65536
#define MAX_LUA_INSTRUCTIONS 1000000000000ll

enum {
    TK_VERSION, TK_NAME, TK_STATE, TK_SOURCE, TK_SINK, TK_DIRECTION, TK_DEFAULTS, TK_IDENTITY,
    TK_STREAMS, TK_HOOKS, TK_MAX_ERRORS, TK_LOG, TK_SCHEDULE, TK_MATRIX, TK_LUA, TK__N
};
static const char *const top_keys[TK__N] = {
    "version", "name", "state", "source", "sink", "direction", "defaults", "identity",
    "streams", "hooks", "max_errors", "log", "schedule", "matrix", "lua",
};

enum {
    SK_NAME, SK_TABLE, SK_KEY, SK_FALLBACK_KEY, SK_CURSOR, SK_MODE, SK_OVERLAP, SK_WINDOW,
    SK_WRITE, SK_CONFLICT, SK_DELETES, SK_RENAME, SK_LOCAL_ONLY, SK_EXCLUDE, SK_FK, SK_TRANSFORM,
    SK_RESOLVE, SK_BATCH, SK_SELECT, SK_NEST, SK_TIMEZONE, SK_COLUMNS, SK__N
};
static const char *const stream_keys[SK__N] = {
    "name", "table", "key", "fallback_key", "cursor", "mode", "overlap", "window",
    "write", "conflict", "deletes", "rename", "local_only", "exclude", "fk", "transform",
    "resolve", "batch", "select", "nest", "timezone", "columns",
};
/* The stream keys `defaults:` takes: the ones that make sense for all. */
static const int default_keys[] = {
    SK_CURSOR, SK_MODE, SK_OVERLAP, SK_WINDOW, SK_WRITE, SK_CONFLICT, SK_DELETES, SK_BATCH, SK_KEY,
};
#define NDEFAULT_KEYS ETL_ARRAY_LEN(default_keys)

enum { NK_STREAM, NK_FK, NK_RENAME, NK_EXCLUDE, NK_LOCAL_ONLY, NK_CURSOR, NK__N };
static const char *const nest_keys[NK__N] = {"stream", "fk", "rename", "exclude", "local_only",
                                             "cursor"};

/* Indexed by the enums of config.h and etl.h. */
static const char *const mode_names[] = {"incremental", "full"};
static const char *const direction_names[] = {"forward", "reverse", "both"};
static const char *const write_names[] = {"upsert", "insert", "append", "replace"};
static const char *const conflict_names[] = {"source", "newer", "sink", "lua"};
static const char *const deletes_names[] = {"ignore", "soft", "hard"};

#define EXPECT_COLUMN "a column name"
#define EXPECT_COLUMNS "a column name or a list of them"
#define EXPECT_TRANSFORM "a .lua file, a function of the hooks file, or an inline Lua chunk"

/* One matrix entry: its variables (client among them) and its schedule. */
typedef struct mx_entry {
    char *client;
    char *error;      /* a value of this entry could not be expanded (its ${VAR}) */
    etl_pair_t *vars;
    size_t nvars;
    yaml_node_t *schedule;
    yaml_mark_t mark;
} mx_entry_t;

/* ------------------------------------------------------------ names */

const char *etl_mode_name(etl_mode_t m)
{
    return (unsigned)m < ETL_ARRAY_LEN(mode_names) ? mode_names[m] : "?";
}

const char *etl_direction_name(etl_direction_t d)
{
    return (unsigned)d < ETL_ARRAY_LEN(direction_names) ? direction_names[d] : "?";
}

const char *etl_write_name(etl_write_mode_t w)
{
    return (unsigned)w < ETL_ARRAY_LEN(write_names) ? write_names[w] : "?";
}

const char *etl_conflict_name(etl_conflict_t c)
{
    return (unsigned)c < ETL_ARRAY_LEN(conflict_names) ? conflict_names[c] : "?";
}

const char *etl_deletes_name(etl_deletes_t d)
{
    return (unsigned)d < ETL_ARRAY_LEN(deletes_names) ? deletes_names[d] : "?";
}

/* ------------------------------------------------------------ freeing */

static void endpoint_free(etl_endpoint_cfg_t *e)
{
    free(e->plugin);
    for (size_t i = 0; i < e->nopts; i++) {
        free(e->opts[i].name);
        free(e->opts[i].value);
        for (size_t j = 0; j < e->opts[i].n_items; j++)
            free(e->opts[i].items[j]);
        free(e->opts[i].items);
    }
    free(e->opts);
}

static void nest_free(etl_nest_cfg_t *n)
{
    free(n->field);
    free(n->stream);
    free(n->fk);
    etl_cfg_pairs_free(n->rename, n->nrename);
    etl_cfg_strlist_free(&n->exclude);
    etl_cfg_strlist_free(&n->local_only);
    free(n->cursor);
}

static void stream_free(etl_stream_cfg_t *s)
{
    free(s->name);
    free(s->table);
    etl_cfg_strlist_free(&s->key);
    etl_cfg_strlist_free(&s->fallback_key);
    free(s->cursor);
    free(s->deletes_column);
    free(s->deletes_value);
    etl_cfg_pairs_free(s->rename, s->nrename);
    etl_cfg_strlist_free(&s->local_only);
    etl_cfg_strlist_free(&s->exclude);
    for (size_t i = 0; i < s->nfk; i++) {
        free(s->fk[i].column);
        free(s->fk[i].parent);
    }
    free(s->fk);
    free(s->transform.text);
    free(s->resolve.text);
    etl_cfg_pairs_free(s->select, s->nselect);
    for (size_t i = 0; i < s->nnest; i++)
        nest_free(&s->nest[i]);
    free(s->nest);
    free(s->timezone);
    for (size_t i = 0; i < s->ncolumns; i++)
        free(s->columns[i].name);
    free(s->columns);
}

void etl_pipeline_free(etl_pipeline_t *p)
{
    if (!p)
        return;
    free(p->file);
    free(p->dir);
    free(p->name);
    free(p->client);
    free(p->state_url);
    endpoint_free(&p->source);
    endpoint_free(&p->sink);
    free(p->identity.key);
    free(p->identity.sink_key);
    free(p->identity.sink_pk);
    for (size_t i = 0; i < p->nstreams; i++)
        stream_free(&p->streams[i]);
    free(p->streams);
    free(p->order);
    free(p->hooks);
    free(p->log_dir);
    free(p->schedule.cron);
    free(p->config_error);
    free(p);
}

void etl_pipelines_free(etl_pipeline_t **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        etl_pipeline_free(v[i]);
    free(v);
}

int etl_pipeline_stream(const etl_pipeline_t *p, const char *name)
{
    if (!p || !name)
        return -1;
    for (size_t i = 0; i < p->nstreams; i++)
        if (p->streams[i].name && strcmp(p->streams[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------------ small helpers */

static yaml_mark_t mark_of(etl_loc_t l)
{
    yaml_mark_t m = {0, l.line > 0 ? (size_t)(l.line - 1) : 0, l.col > 0 ? (size_t)(l.col - 1) : 0};
    return m;
}

static int missing(etl_cfg_t *c, const yaml_node_t *map, const char *key, const char *where,
                   const char *expected)
{
    return etl_cfg_fail(c, map->start_mark, expected, "missing key '%s'%s", key, where);
}

/* [A-Za-z0-9_.-]+: names that end up in file names and state keys. */
static int is_plain_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

static int is_identifier(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

static int is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A relative path joined to the pipeline's folder; NULL only on OOM. */
static char *resolve_path(etl_cfg_t *c, const char *rel)
{
    char *p = etl_path_join(c->dir, rel);
    if (!p)
        etl_cfg_oom(c);
    return p;
}

/* The absolute folder of `path`, lexically: "." parts and repeated slashes
 * go, ".." stays (only the file system could say what it means). */
static char *abs_dir(const char *path)
{
    char *d = etl_path_dir(path);
    char *full = NULL;
    etl_buf_t b;
    etl_buf_init(&b);
    if (!d)
        return NULL;
    if (d[0] == '/') {
        full = d;
        d = NULL;
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            strcpy(cwd, "/");
        full = etl_asprintf("%s/%s", cwd, d);
    }
    free(d);
    if (!full)
        return NULL;
    for (char *s = full; *s;) {
        while (*s == '/')
            s++;
        char *e = s;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - s);
        if (n && !(n == 1 && s[0] == '.')) {
            etl_buf_addc(&b, '/');
            etl_buf_add(&b, s, n);
        }
        s = e;
    }
    free(full);
    if (b.len == 0)
        etl_buf_addc(&b, '/');
    return etl_buf_take(&b);
}

/* ------------------------------------------------------------ source / sink */

typedef struct endpoint_walk {
    etl_endpoint_cfg_t *e;
    const char *what;
} endpoint_walk_t;

static int endpoint_pair(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *v, void *arg)
{
    endpoint_walk_t *w = arg;
    etl_endpoint_cfg_t *e = w->e;
    if (etl_cfg_is_null(v))
        return 0; /* `url:` with nothing: as if not written */
    if (strcmp(name, "plugin") == 0) {
        if (etl_cfg_str_set(c, v, "plugin", "a plugin name such as pgsqlite", &e->plugin) != 0)
            return -1;
        e->loc = etl_cfg_loc(v->start_mark);
        const char *s = e->plugin;
        for (; *s; s++)
            if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
                break;
        if (*s)
            return etl_cfg_fail(c, v->start_mark, "letters, digits, '_' and '-'",
                                "bad plugin name '%s' in %s", e->plugin, w->what);
        return 0;
    }
    if (v->type == YAML_MAPPING_NODE)
        return etl_cfg_fail(c, v->start_mark, "a string or a list of strings",
                            "option '%s' in %s must be a string or a list, not a mapping", name,
                            w->what);
    etl_opt_cfg_t *o = realloc(e->opts, (e->nopts + 1) * sizeof *o);
    if (!o)
        return etl_cfg_oom(c);
    e->opts = o;
    o = &e->opts[e->nopts++];
    memset(o, 0, sizeof *o);
    o->loc = etl_cfg_loc(k->start_mark);
    o->vloc = etl_cfg_loc(v->start_mark);
    if (!(o->name = etl_strdup(name)))
        return etl_cfg_oom(c);
    etl_buf_t joined;
    etl_buf_init(&joined);
    if (v->type == YAML_SCALAR_NODE) {
        if (etl_cfg_str(c, v, name, "a string", 1, &o->value) != 0)
            return -1;
        /* Split for list options; the plugin's option table decides which
         * form it reads. Items are trimmed, empty ones kept. */
        for (const char *p = o->value;;) {
            const char *comma = strchr(p, ',');
            const char *a = p, *b = comma ? comma : p + strlen(p);
            while (a < b && isspace((unsigned char)*a))
                a++;
            while (b > a && isspace((unsigned char)b[-1]))
                b--;
            char **items = realloc(o->items, (o->n_items + 1) * sizeof *items);
            if (!items)
                return etl_cfg_oom(c);
            o->items = items;
            if (!(o->items[o->n_items] = etl_strndup(a, (size_t)(b - a))))
                return etl_cfg_oom(c);
            o->n_items++;
            if (!comma)
                break;
            p = comma + 1;
        }
        return 0;
    }
    o->is_list = 1;
    int rc = -1;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *in = etl_cfg_node(c, *it);
        if (!in)
            goto done;
        if (in->type != YAML_SCALAR_NODE || etl_cfg_is_null(in)) {
            etl_cfg_fail(c, in->start_mark, "a list of strings", "an item of '%s' in %s is %s",
                         name, w->what, etl_cfg_kind(in));
            goto done;
        }
        char **items = realloc(o->items, (o->n_items + 1) * sizeof *items);
        if (!items) {
            etl_cfg_oom(c);
            goto done;
        }
        o->items = items;
        if (etl_cfg_str(c, in, name, "a string", 1, &o->items[o->n_items]) != 0)
            goto done;
        etl_buf_printf(&joined, "%s%s", o->n_items ? "," : "", o->items[o->n_items]);
        o->n_items++;
    }
    if (o->n_items == 0) {
        etl_cfg_fail(c, v->start_mark, "at least one item", "option '%s' in %s is an empty list",
                     name, w->what);
        goto done;
    }
    if (!(o->value = etl_buf_take(&joined))) {
        etl_cfg_oom(c);
        goto done;
    }
    rc = 0;
done:
    etl_buf_free(&joined);
    return rc;
}

static int parse_endpoint(etl_cfg_t *c, yaml_node_t *n, const char *what, etl_endpoint_cfg_t *e)
{
    char where[32];
    snprintf(where, sizeof where, " in %s", what);
    if (n->type != YAML_MAPPING_NODE)
        return etl_cfg_fail(c, n->start_mark, "a mapping with plugin: and its options",
                            "'%s' must be a mapping, not %s", what, etl_cfg_kind(n));
    e->map_loc = etl_cfg_loc(n->start_mark);
    endpoint_walk_t w = {e, what};
    if (etl_cfg_each_pair(c, n, what, where, endpoint_pair, &w) != 0)
        return -1;
    if (!e->plugin)
        return missing(c, n, "plugin", where, "plugin: NAME, such as pgsqlite");
    return 0;
}

/* ------------------------------------------------------------ top-level parts */

static int parse_state(etl_cfg_t *c, yaml_node_t *n, etl_pipeline_t *p)
{
    static const char expected[] = "sqlite:PATH or postgres://...";
    char *s = NULL, *path = NULL;
    int rc = -1;
    if (!n) {
        p->state_url = etl_asprintf("sqlite:%s/.etl/%s.state.db", c->dir, p->name);
        return p->state_url ? 0 : etl_cfg_oom(c);
    }
    p->state_loc = etl_cfg_loc(n->start_mark);
    if (etl_cfg_str(c, n, "state", expected, 0, &s) != 0)
        goto fail;
    if (strncmp(s, "postgres://", 11) == 0 || strncmp(s, "postgresql://", 13) == 0) {
        p->state_url = s;
        return 0;
    }
    if (strncmp(s, "sqlite:", 7) != 0) {
        etl_cfg_fail(c, n->start_mark, expected, "bad state '%s'", s);
        goto fail;
    }
    const char *rest = s + 7;
    /* sqlite:///abs is the URL spelling of sqlite:/abs. */
    if (strncmp(rest, "//", 2) == 0) {
        rest += 2;
        if (rest[0] != '/') {
            etl_cfg_fail(c, n->start_mark, "sqlite:PATH or sqlite:///ABSOLUTE/PATH",
                         "bad state '%s'", s);
            goto fail;
        }
    }
    if (!*rest) {
        etl_cfg_fail(c, n->start_mark, expected, "bad state '%s': no path", s);
        goto fail;
    }
    if (!(path = resolve_path(c, rest)))
        goto fail;
    if (!(p->state_url = etl_asprintf("sqlite:%s", path))) {
        etl_cfg_oom(c);
        goto fail;
    }
    rc = 0;
fail:
    free(path);
    free(s);
    return rc;
}

static int parse_hooks(etl_cfg_t *c, yaml_node_t *n, etl_pipeline_t *p)
{
    char *s = NULL;
    if (etl_cfg_str(c, n, "hooks", "a Lua file", 0, &s) != 0)
        return -1;
    p->hooks_loc = etl_cfg_loc(n->start_mark);
    p->hooks = resolve_path(c, s);
    if (p->hooks && !is_regular_file(p->hooks))
        etl_cfg_fail(c, n->start_mark, "a Lua file, relative to the pipeline folder",
                     "hooks file '%s' not found", s);
    free(s);
    return c->failed || c->nomem ? -1 : 0;
}

static int parse_log(etl_cfg_t *c, yaml_node_t *n, etl_pipeline_t *p)
{
    static const char *const keys[] = {"dir", "keep"};
    yaml_node_t *v[2];
    if (etl_cfg_map(c, n, "log", " in log", keys, 2, v, NULL) != 0)
        return -1;
    if (v[0]) {
        char *s;
        if (etl_cfg_str(c, v[0], "dir", "a folder, relative to the pipeline folder", 0, &s) != 0)
            return -1;
        p->log_dir = resolve_path(c, s);
        free(s);
        if (!p->log_dir)
            return -1;
    }
    if (v[1] && etl_cfg_duration(c, v[1], "keep", 1, &p->log_keep) != 0)
        return -1;
    return 0;
}

static int parse_lua(etl_cfg_t *c, yaml_node_t *n, etl_pipeline_t *p)
{
    static const char *const keys[] = {"instructions", "memory"};
    yaml_node_t *v[2];
    int64_t x;
    if (etl_cfg_map(c, n, "lua", " in lua", keys, 2, v, NULL) != 0)
        return -1;
    if (v[0]) {
        if (etl_cfg_int(c, v[0], "instructions", 1000, MAX_LUA_INSTRUCTIONS, &x) != 0)
            return -1;
        p->lua_instructions = (uint64_t)x;
    }
    if (v[1]) {
        if (etl_cfg_int(c, v[1], "memory", 1, MAX_LUA_MEMORY_MIB, &x) != 0)
            return -1;
        p->lua_memory = (size_t)x * 1024 * 1024;
    }
    return 0;
}

/* Count of UTF-8 characters in s[0..n): libyaml's marks count characters. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

/*
 * Where byte `off` of a scalar's value is in the file. Exact when the value
 * is the scalar as written on one line: plain, or quoted without escapes
 * (an escape makes the source longer than the value) and without ${...}
 * (the value differs from the source). Anything else: the scalar's start.
 */
static yaml_mark_t mark_in_scalar(const yaml_node_t *n, const char *value, size_t off)
{
    yaml_mark_t m = n->start_mark;
    const char *raw = (const char *)n->data.scalar.value;
    size_t rawlen = n->data.scalar.length;
    if (strlen(value) != rawlen || memcmp(raw, value, rawlen) != 0 || off > rawlen ||
        n->start_mark.line != n->end_mark.line)
        return m;
    size_t quotes;
    switch (n->data.scalar.style) {
    case YAML_PLAIN_SCALAR_STYLE: quotes = 0; break;
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: quotes = 2; break;
    default: return m;
    }
    if (n->end_mark.index - n->start_mark.index != utf8_chars(raw, rawlen) + quotes)
        return m;
    size_t chars = quotes / 2 + utf8_chars(raw, off);
    m.index += chars;
    m.column += chars;
    return m;
}

static int parse_schedule(etl_cfg_t *c, yaml_node_t *n, const char *where, etl_schedule_cfg_t *s)
{
    static const char *const keys[] = {"cron", "every", "expires"};
    yaml_node_t *v[3];
    free(s->cron);
    memset(s, 0, sizeof *s);
    if (etl_cfg_map(c, n, "schedule", where, keys, 3, v, NULL) != 0)
        return -1;
    s->loc = etl_cfg_loc(n->start_mark);
    if (v[0]) {
        static const char expected[] = "five fields: minute hour day month weekday";
        if (etl_cfg_str_set(c, v[0], "cron", expected, &s->cron) != 0)
            return -1;
        char msg[200];
        size_t at;
        if (etl_cron_parse(s->cron, &s->cron_parsed, &at, msg, sizeof msg) != 0)
            return etl_cfg_fail(c, mark_in_scalar(v[0], s->cron, at), expected,
                                "bad cron expression '%s': %s", s->cron, msg);
    }
    if (v[1] && etl_cfg_duration(c, v[1], "every", 1, &s->every) != 0)
        return -1;
    if (v[0] && v[1])
        return etl_cfg_fail(c, v[1]->start_mark, "one of cron or every",
                            "both 'cron' and 'every'%s", where);
    if (!v[0] && !v[1])
        return etl_cfg_fail(c, n->start_mark, "cron: \"*/30 * * * *\" or every: 6h",
                            "missing key 'cron' or 'every'%s", where);
    if (v[2] && etl_cfg_duration(c, v[2], "expires", 1, &s->expires) != 0)
        return -1;
    return 0;
}

static int parse_identity(etl_cfg_t *c, yaml_node_t *n, etl_pipeline_t *p)
{
    static const char *const keys[] = {"key", "sink_key", "sink_pk"};
    yaml_node_t *v[3];
    char **slots[3] = {&p->identity.key, &p->identity.sink_key, &p->identity.sink_pk};
    if (etl_cfg_map(c, n, "identity", " in identity", keys, 3, v, NULL) != 0)
        return -1;
    p->identity.loc = etl_cfg_loc(n->start_mark);
    for (int i = 0; i < 3; i++) {
        if (!v[i])
            return missing(c, n, keys[i], " in identity", "key, sink_key and sink_pk");
        if (etl_cfg_str_set(c, v[i], keys[i], EXPECT_COLUMN, slots[i]) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ streams */

/* A parsed stream (or the defaults) and which keys it set. */
typedef struct stream_build {
    etl_stream_cfg_t s;
    unsigned set; /* bit SK_x: the key was written */
} stream_build_t;

static int parse_deletes(etl_cfg_t *c, yaml_node_t *n, const char *where, etl_stream_cfg_t *st)
{
    int mode;
    free(st->deletes_column);
    st->deletes_column = NULL;
    free(st->deletes_value);
    st->deletes_value = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        if (etl_cfg_enum(c, n, "deletes", deletes_names, ETL_ARRAY_LEN(deletes_names), &mode) != 0)
            return -1;
    } else if (n->type == YAML_MAPPING_NODE) {
        static const char *const keys[] = {"mode", "column", "value"};
        yaml_node_t *v[3];
        char w[300];
        snprintf(w, sizeof w, " in deletes%s", where);
        if (etl_cfg_map(c, n, "deletes", w, keys, 3, v, NULL) != 0)
            return -1;
        if (!v[0])
            return missing(c, n, "mode", w, "mode: soft, hard or ignore");
        if (etl_cfg_enum(c, v[0], "mode", deletes_names, ETL_ARRAY_LEN(deletes_names), &mode) != 0)
            return -1;
        if (v[1]) {
            if (mode != ETL_DELETES_SOFT)
                return etl_cfg_fail(c, v[1]->start_mark, "mode: soft with a column",
                                    "'column'%s only applies to soft deletes", w);
            if (etl_cfg_str_set(c, v[1], "column", EXPECT_COLUMN, &st->deletes_column) != 0)
                return -1;
        }
        if (v[2]) {
            if (mode != ETL_DELETES_SOFT)
                return etl_cfg_fail(c, v[2]->start_mark, "mode: soft with a value",
                                    "'value'%s only applies to soft deletes", w);
            if (etl_cfg_str_set(c, v[2], "value", "a value, e.g. INACTIVE", &st->deletes_value) != 0)
                return -1;
        }
    } else {
        return etl_cfg_fail(c, n->start_mark, "soft, hard, ignore, or {mode, column}",
                            "'deletes' must be a string or a mapping, not %s", etl_cfg_kind(n));
    }
    st->deletes = (etl_deletes_t)mode;
    if (mode == ETL_DELETES_SOFT && !st->deletes_column &&
        !(st->deletes_column = etl_strdup("deleted_at")))
        return etl_cfg_oom(c);
    return 0;
}

static int parse_transform(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *where,
                           const etl_pipeline_t *p, etl_transform_cfg_t *t)
{
    char *s;
    if (etl_cfg_str(c, n, what, EXPECT_TRANSFORM, 0, &s) != 0)
        return -1;
    free(t->text);
    t->text = NULL;
    t->loc = etl_cfg_loc(n->start_mark);
    if (ends_with(s, ".lua") && !strchr(s, '\n')) {
        t->kind = ETL_XF_FILE;
        t->text = resolve_path(c, s);
        if (t->text && !is_regular_file(t->text))
            etl_cfg_fail(c, n->start_mark, "a .lua file, relative to the pipeline folder",
                         "%s file '%s' not found%s", what, s, where);
        free(s);
        return c->failed || c->nomem ? -1 : 0;
    }
    if (is_identifier(s)) {
        t->kind = ETL_XF_FUNCTION;
        t->text = s;
        if (!p->hooks)
            return etl_cfg_fail(c, n->start_mark, "hooks: FILE.lua at the top, or a .lua file, or inline Lua",
                                "%s '%s'%s names a function but the pipeline has no 'hooks' file",
                                what, s, where);
        return 0;
    }
    /* Compiled with the hooks, where Lua errors get Lua's own messages. */
    t->kind = ETL_XF_INLINE;
    t->text = s;
    return 0;
}

typedef struct fk_walk {
    etl_stream_cfg_t *st;
} fk_walk_t;

static int fk_pair(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *v, void *arg)
{
    etl_stream_cfg_t *st = ((fk_walk_t *)arg)->st;
    char *parent;
    if (etl_cfg_str(c, v, name, "the parent's stream name", 0, &parent) != 0)
        return -1;
    char *column = etl_strdup(name);
    etl_fk_cfg_t *f = column ? realloc(st->fk, (st->nfk + 1) * sizeof *f) : NULL;
    if (!f) {
        free(column);
        free(parent);
        return etl_cfg_oom(c);
    }
    st->fk = f;
    f[st->nfk].column = column;
    f[st->nfk].parent = parent;
    f[st->nfk].loc = etl_cfg_loc(k->start_mark);
    st->nfk++;
    return 0;
}

static int column_pair(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *v, void *arg)
{
    etl_stream_cfg_t *st = arg;
    char *tn;
    char list[256], expected[280];
    const char *types[ETL_T_COUNT_ - 1];
    for (int i = 1; i < ETL_T_COUNT_; i++)
        types[i - 1] = etl_type_name((etl_type_t)i);
    snprintf(expected, sizeof expected, "one of: %s",
             etl_cfg_join(types, ETL_ARRAY_LEN(types), list, sizeof list));
    if (etl_cfg_str(c, v, name, expected, 0, &tn) != 0)
        return -1;
    int t = etl_type_from_name(tn);
    if (t <= ETL_T_NULL) {
        etl_cfg_fail(c, v->start_mark, expected, "unknown column type '%s' for '%s'", tn, name);
        free(tn);
        return -1;
    }
    free(tn);
    char *cn = etl_strdup(name);
    etl_column_cfg_t *cv = cn ? realloc(st->columns, (st->ncolumns + 1) * sizeof *cv) : NULL;
    if (!cv) {
        free(cn);
        return etl_cfg_oom(c);
    }
    st->columns = cv;
    cv[st->ncolumns].name = cn;
    cv[st->ncolumns].type = (etl_type_t)t;
    cv[st->ncolumns].loc = etl_cfg_loc(k->start_mark);
    st->ncolumns++;
    return 0;
}

static int check_rename(etl_cfg_t *c, const etl_pair_t *v, size_t n, const char *where)
{
    for (size_t i = 0; i < n; i++)
        if (!v[i].value[0])
            return etl_cfg_fail(c, mark_of(v[i].loc), "source_column: sink_column",
                                "rename of '%s'%s is empty", v[i].name, where);
    return 0;
}

typedef struct nest_walk {
    etl_stream_cfg_t *st;
    const char *where;
} nest_walk_t;

static int nest_pair(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *v, void *arg)
{
    nest_walk_t *w = arg;
    etl_stream_cfg_t *st = w->st;
    etl_nest_cfg_t *nv = realloc(st->nest, (st->nnest + 1) * sizeof *nv);
    if (!nv)
        return etl_cfg_oom(c);
    st->nest = nv;
    etl_nest_cfg_t *ne = &nv[st->nnest++];
    memset(ne, 0, sizeof *ne);
    ne->loc = etl_cfg_loc(k->start_mark);
    if (!(ne->field = etl_strdup(name)))
        return etl_cfg_oom(c);
    char where[400];
    snprintf(where, sizeof where, " in nest '%.64s'%s", name, w->where);
    yaml_node_t *x[NK__N];
    if (v->type != YAML_MAPPING_NODE)
        return etl_cfg_fail(c, v->start_mark, "{stream, fk, rename, exclude, local_only, cursor}",
                            "nest '%s'%s must be a mapping, not %s", name, w->where,
                            etl_cfg_kind(v));
    if (etl_cfg_map(c, v, name, where, nest_keys, NK__N, x, NULL) != 0)
        return -1;
    if (!x[NK_STREAM])
        return missing(c, v, "stream", where, "stream: the child stream's name");
    if (!x[NK_FK])
        return missing(c, v, "fk", where, "fk: the child column holding the parent's key");
    if (etl_cfg_str_set(c, x[NK_STREAM], "stream", "a stream name", &ne->stream) != 0 ||
        etl_cfg_str_set(c, x[NK_FK], "fk", EXPECT_COLUMN, &ne->fk) != 0)
        return -1;
    if (x[NK_RENAME] &&
        (etl_cfg_pairs(c, x[NK_RENAME], "rename", where, "source_column: sink_column",
                       &ne->rename, &ne->nrename) != 0 ||
         check_rename(c, ne->rename, ne->nrename, where) != 0))
        return -1;
    if (x[NK_EXCLUDE] && etl_cfg_strlist(c, x[NK_EXCLUDE], "exclude", EXPECT_COLUMNS, &ne->exclude) != 0)
        return -1;
    if (x[NK_LOCAL_ONLY] &&
        etl_cfg_strlist(c, x[NK_LOCAL_ONLY], "local_only", EXPECT_COLUMNS, &ne->local_only) != 0)
        return -1;
    if (x[NK_CURSOR]) {
        if (etl_cfg_str_set(c, x[NK_CURSOR], "cursor", EXPECT_COLUMN " or none", &ne->cursor) != 0)
            return -1;
        if (strcmp(ne->cursor, "none") == 0)
            ne->cursor[0] = '\0';
    }
    return 0;
}

/* Reads the keys in v (indexed by SK_x) into b; shared by streams and
 * `defaults:`, which passes only its subset. */
static int stream_fields(etl_cfg_t *c, yaml_node_t **v, const char *where, const etl_pipeline_t *p,
                         stream_build_t *b)
{
    etl_stream_cfg_t *st = &b->s;
    int e;
    int64_t x;
    for (int k = 0; k < SK__N; k++) {
        yaml_node_t *n = v[k];
        if (!n || k == SK_NAME)
            continue;
        b->set |= 1u << k;
        int rc = 0;
        switch (k) {
        case SK_TABLE:
            rc = etl_cfg_str_set(c, n, "table", "a table name", &st->table);
            break;
        case SK_KEY:
            rc = etl_cfg_strlist(c, n, "key", EXPECT_COLUMNS, &st->key);
            break;
        case SK_FALLBACK_KEY:
            rc = etl_cfg_strlist(c, n, "fallback_key", EXPECT_COLUMNS, &st->fallback_key);
            break;
        case SK_CURSOR:
            rc = etl_cfg_str_set(c, n, "cursor", EXPECT_COLUMN " or none", &st->cursor);
            if (rc == 0 && strcmp(st->cursor, "none") == 0)
                st->cursor[0] = '\0'; /* no cursor at all, unlike NULL: not set */
            break;
        case SK_MODE:
            rc = etl_cfg_enum(c, n, "mode", mode_names, ETL_ARRAY_LEN(mode_names), &e);
            st->mode = (etl_mode_t)e;
            break;
        case SK_OVERLAP:
            rc = etl_cfg_duration(c, n, "overlap", 0, &st->overlap);
            break;
        case SK_WINDOW:
            rc = etl_cfg_duration(c, n, "window", 0, &st->window);
            break;
        case SK_WRITE:
            rc = etl_cfg_enum(c, n, "write", write_names, ETL_ARRAY_LEN(write_names), &e);
            st->write = (etl_write_mode_t)e;
            break;
        case SK_CONFLICT:
            rc = etl_cfg_enum(c, n, "conflict", conflict_names, ETL_ARRAY_LEN(conflict_names), &e);
            st->conflict = (etl_conflict_t)e;
            break;
        case SK_DELETES:
            rc = parse_deletes(c, n, where, st);
            break;
        case SK_RENAME:
            rc = etl_cfg_pairs(c, n, "rename", where, "source_column: sink_column", &st->rename,
                               &st->nrename);
            if (rc == 0)
                rc = check_rename(c, st->rename, st->nrename, where);
            break;
        case SK_LOCAL_ONLY:
            rc = etl_cfg_strlist(c, n, "local_only", EXPECT_COLUMNS, &st->local_only);
            break;
        case SK_EXCLUDE:
            rc = etl_cfg_strlist(c, n, "exclude", EXPECT_COLUMNS, &st->exclude);
            break;
        case SK_FK: {
            fk_walk_t w = {st};
            if (n->type != YAML_MAPPING_NODE)
                rc = etl_cfg_fail(c, n->start_mark, "column: parent_stream",
                                  "'fk' must be a mapping, not %s", etl_cfg_kind(n));
            else
                rc = etl_cfg_each_pair(c, n, "fk", where, fk_pair, &w);
            break;
        }
        case SK_TRANSFORM:
            rc = parse_transform(c, n, "transform", where, p, &st->transform);
            break;
        case SK_RESOLVE:
            rc = parse_transform(c, n, "resolve", where, p, &st->resolve);
            break;
        case SK_BATCH:
            rc = etl_cfg_int(c, n, "batch", 1, MAX_BATCH, &x);
            st->batch = (int)x;
            break;
        case SK_SELECT:
            rc = etl_cfg_pairs(c, n, "select", where, "option: value", &st->select, &st->nselect);
            break;
        case SK_NEST: {
            nest_walk_t w = {st, where};
            if (n->type != YAML_MAPPING_NODE)
                rc = etl_cfg_fail(c, n->start_mark, "field: {stream, fk}",
                                  "'nest' must be a mapping, not %s", etl_cfg_kind(n));
            else
                rc = etl_cfg_each_pair(c, n, "nest", where, nest_pair, &w);
            break;
        }
        case SK_TIMEZONE:
            rc = etl_cfg_str_set(c, n, "timezone", "UTC", &st->timezone);
            /* zoned wall times are not converted yet: refuse what would be
             * silently read as UTC rather than accept it */
            if (rc == 0 && strcmp(st->timezone, "UTC") != 0 && strcmp(st->timezone, "Z") != 0 &&
                strcmp(st->timezone, "+00:00") != 0 && strcmp(st->timezone, "Etc/UTC") != 0)
                rc = etl_cfg_fail(c, n->start_mark, "UTC",
                                  "timezone '%s' is not supported: cursors without a zone are "
                                  "read as UTC",
                                  st->timezone);
            break;
        case SK_COLUMNS:
            if (n->type != YAML_MAPPING_NODE)
                rc = etl_cfg_fail(c, n->start_mark, "column: type",
                                  "'columns' must be a mapping, not %s", etl_cfg_kind(n));
            else
                rc = etl_cfg_each_pair(c, n, "columns", where, column_pair, st);
            break;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int parse_defaults(etl_cfg_t *c, yaml_node_t *n, const etl_pipeline_t *p, stream_build_t *d)
{
    const char *names[NDEFAULT_KEYS];
    yaml_node_t *dv[NDEFAULT_KEYS];
    yaml_node_t *v[SK__N] = {0};
    for (size_t i = 0; i < NDEFAULT_KEYS; i++)
        names[i] = stream_keys[default_keys[i]];
    if (etl_cfg_map(c, n, "defaults", " in defaults", names, NDEFAULT_KEYS, dv, NULL) != 0)
        return -1;
    for (size_t i = 0; i < NDEFAULT_KEYS; i++)
        v[default_keys[i]] = dv[i];
    return stream_fields(c, v, " in defaults", p, d);
}

/* The stream's name as written, for messages before it is read for real. */
static void stream_label(etl_cfg_t *c, yaml_node_t *n, size_t idx, char *buf, size_t len)
{
    yaml_node_t *v = etl_cfg_find(c, n, "name");
    if (v && v->type == YAML_SCALAR_NODE)
        snprintf(buf, len, " in stream '%.64s'", (const char *)v->data.scalar.value);
    else
        snprintf(buf, len, " in stream #%zu", idx + 1);
}

/* Fills what the stream did not set from `defaults:`, then from the
 * built-in defaults. */
static int apply_defaults(etl_cfg_t *c, stream_build_t *b, const stream_build_t *d)
{
    etl_stream_cfg_t *s = &b->s;
    const etl_stream_cfg_t *ds = &d->s;
    unsigned from = d->set & ~b->set;
    if ((from & (1u << SK_CURSOR)) && !(s->cursor = etl_strdup(ds->cursor)))
        return etl_cfg_oom(c);
    if (from & (1u << SK_MODE))
        s->mode = ds->mode;
    if (from & (1u << SK_OVERLAP))
        s->overlap = ds->overlap;
    if (from & (1u << SK_WINDOW))
        s->window = ds->window;
    if (from & (1u << SK_WRITE))
        s->write = ds->write;
    if (from & (1u << SK_CONFLICT))
        s->conflict = ds->conflict;
    if (from & (1u << SK_BATCH))
        s->batch = ds->batch;
    if (from & (1u << SK_DELETES)) {
        s->deletes = ds->deletes;
        if (ds->deletes_column && !(s->deletes_column = etl_strdup(ds->deletes_column)))
            return etl_cfg_oom(c);
        if (ds->deletes_value && !(s->deletes_value = etl_strdup(ds->deletes_value)))
            return etl_cfg_oom(c);
    }
    if ((from & (1u << SK_KEY)) && etl_cfg_strlist_copy(&s->key, &ds->key) != 0)
        return etl_cfg_oom(c);
    unsigned have = b->set | d->set;
    if (!(have & (1u << SK_BATCH)))
        s->batch = DEFAULT_BATCH;
    if (!s->table && !(s->table = etl_strdup(s->name)))
        return etl_cfg_oom(c);
    return 0;
}

static int parse_stream(etl_cfg_t *c, yaml_node_t *n, size_t idx, const etl_pipeline_t *p,
                        const stream_build_t *d, stream_build_t *b)
{
    char where[128];
    yaml_node_t *v[SK__N];
    stream_label(c, n, idx, where, sizeof where);
    if (n->type != YAML_MAPPING_NODE)
        return etl_cfg_fail(c, n->start_mark, "a mapping with at least name:",
                            "stream #%zu must be a mapping, not %s", idx + 1, etl_cfg_kind(n));
    b->s.loc = etl_cfg_loc(n->start_mark);
    if (etl_cfg_map(c, n, "stream", where, stream_keys, SK__N, v, NULL) != 0)
        return -1;
    if (!v[SK_NAME])
        return missing(c, n, "name", where, "name: the table or API resource");
    if (etl_cfg_str_set(c, v[SK_NAME], "name", "the table or API resource", &b->s.name) != 0)
        return -1;
    for (size_t i = 0; i < p->nstreams; i++)
        if (strcmp(p->streams[i].name, b->s.name) == 0)
            return etl_cfg_fail(c, v[SK_NAME]->start_mark, "unique stream names",
                                "duplicate stream '%s' (first at %d:%d)", b->s.name,
                                p->streams[i].loc.line, p->streams[i].loc.col);
    if (stream_fields(c, v, where, p, b) != 0 || apply_defaults(c, b, d) != 0)
        return -1;
    etl_stream_cfg_t *s = &b->s;
    if (s->resolve.kind != ETL_XF_NONE && s->conflict != ETL_CONFLICT_LUA)
        return etl_cfg_fail(c, v[SK_RESOLVE]->start_mark, "conflict: lua, or no resolve",
                            "'resolve'%s is set but conflict is %s", where,
                            etl_conflict_name(s->conflict));
    if (s->conflict == ETL_CONFLICT_LUA && s->resolve.kind == ETL_XF_NONE && !p->hooks)
        return etl_cfg_fail(c, n->start_mark, "resolve: FILE.lua, a function, or inline Lua",
                            "conflict: lua%s but no 'resolve' and no 'hooks' file", where);
    return 0;
}

/* ------------------------------------------------------------ fk graph */

static char *stream_names(const etl_pipeline_t *p)
{
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, "one of: ");
    for (size_t i = 0; i < p->nstreams && b.len < 400; i++)
        etl_buf_printf(&b, "%s%s", i ? ", " : "", p->streams[i].name);
    if (b.len >= 400)
        etl_buf_adds(&b, ", ...");
    return etl_buf_take(&b);
}

/* Stream names sorted, so that fk and nest targets are found in log time:
 * a pipeline may have hundreds of streams times hundreds of clients. */
typedef struct name_ix {
    const char *name;
    size_t i;
} name_ix_t;

static int name_ix_cmp(const void *a, const void *b)
{
    const name_ix_t *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->i > y->i) - (x->i < y->i);
}

static name_ix_t *name_index(const etl_pipeline_t *p)
{
    name_ix_t *ix = malloc((p->nstreams ? p->nstreams : 1) * sizeof *ix);
    if (!ix)
        return NULL;
    for (size_t i = 0; i < p->nstreams; i++) {
        ix[i].name = p->streams[i].name;
        ix[i].i = i;
    }
    qsort(ix, p->nstreams, sizeof *ix, name_ix_cmp);
    return ix;
}

/* Index of the stream named `name`, or SIZE_MAX. */
static size_t name_find(const name_ix_t *ix, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(ix[mid].name, name);
        if (r == 0)
            return ix[mid].i;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

static int check_refs(etl_cfg_t *c, const etl_pipeline_t *p, const name_ix_t *ix)
{
    for (size_t i = 0; i < p->nstreams; i++) {
        const etl_stream_cfg_t *s = &p->streams[i];
        for (size_t j = 0; j < s->nfk + s->nnest; j++) {
            int is_fk = j < s->nfk;
            const char *target = is_fk ? s->fk[j].parent : s->nest[j - s->nfk].stream;
            if (name_find(ix, p->nstreams, target) != SIZE_MAX)
                continue;
            char *names = stream_names(p);
            if (!names)
                return etl_cfg_oom(c);
            if (is_fk)
                etl_cfg_fail(c, mark_of(s->fk[j].loc), names,
                             "fk '%s' names unknown stream '%s' in stream '%s'", s->fk[j].column,
                             target, s->name);
            else
                etl_cfg_fail(c, mark_of(s->nest[j - s->nfk].loc), names,
                             "nest '%s' names unknown stream '%s' in stream '%s'",
                             s->nest[j - s->nfk].field, target, s->name);
            free(names);
            return -1;
        }
    }
    return 0;
}

/* An fk between two different streams, as indexes. */
typedef struct fk_edge {
    size_t child;
    size_t parent;
    etl_loc_t loc;
} fk_edge_t;

/* The first edge from stream i to a parent still in the graph. */
static const fk_edge_t *open_parent(const fk_edge_t *e, size_t ne, size_t i,
                                    const unsigned char *done)
{
    for (size_t k = 0; k < ne; k++)
        if (e[k].child == i && !done[e[k].parent])
            return &e[k];
    return NULL;
}

/* Describes a cycle among the streams Kahn's algorithm could not place:
 * every one of them has a parent among them, so following parents from
 * the first one must come back to a stream already on the path. */
static int report_cycle(etl_cfg_t *c, const etl_pipeline_t *p, const fk_edge_t *e, size_t ne,
                        const unsigned char *done)
{
    size_t n = p->nstreams;
    size_t *path = malloc(n * sizeof *path);
    size_t *pos = malloc(n * sizeof *pos);
    if (!path || !pos) {
        free(path);
        free(pos);
        return etl_cfg_oom(c);
    }
    for (size_t i = 0; i < n; i++)
        pos[i] = SIZE_MAX;
    size_t at = 0;
    while (done[at])
        at++;
    size_t len = 0;
    while (pos[at] == SIZE_MAX) {
        pos[at] = len;
        path[len++] = at;
        const fk_edge_t *up = open_parent(e, ne, at, done);
        if (!up)
            break; /* cannot happen: a placed parent would have freed it */
        at = up->parent;
    }
    size_t first = pos[at] == SIZE_MAX ? 0 : pos[at];
    etl_buf_t b;
    etl_buf_init(&b);
    for (size_t i = first; i < len; i++)
        etl_buf_printf(&b, "%s -> ", p->streams[path[i]].name);
    etl_buf_adds(&b, p->streams[path[first]].name);
    const fk_edge_t *edge = open_parent(e, ne, path[first], done);
    etl_loc_t loc = edge ? edge->loc : p->streams[path[first]].loc;
    if (b.oom)
        etl_cfg_oom(c);
    else
        etl_cfg_fail(c, mark_of(loc), "the fk graph to have no cycle", "fk cycle: %s", b.data);
    etl_buf_free(&b);
    free(path);
    free(pos);
    return -1;
}

/* A binary min-heap of stream indexes: the ready streams, smallest first. */
static void heap_push(size_t *h, size_t *n, size_t v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *n)
{
    size_t top = h[0], v = h[--*n], i = 0;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= *n)
            break;
        if (k + 1 < *n && h[k + 1] < h[k])
            k++;
        if (h[k] >= v)
            break;
        h[i] = h[k];
        i = k;
    }
    if (*n)
        h[i] = v;
    return top;
}

/* Kahn's algorithm, taking the first ready stream in declaration order each
 * time, so the order is stable and readable. Self references (a manager_id
 * pointing into its own table) are not edges: the runner defers such rows. */
static int topo_order(etl_cfg_t *c, etl_pipeline_t *p, const name_ix_t *ix)
{
    size_t n = p->nstreams, ne = 0, total = 0, nheap = 0, placed = 0;
    int rc = -1;
    for (size_t i = 0; i < n; i++)
        total += p->streams[i].nfk;
    fk_edge_t *e = malloc((total ? total : 1) * sizeof *e);
    size_t *indeg = calloc(n, sizeof *indeg);
    size_t *first = calloc(n + 1, sizeof *first); /* children of i: kids[first[i]..first[i+1]) */
    size_t *kids = malloc((total ? total : 1) * sizeof *kids);
    size_t *heap = malloc(n * sizeof *heap);
    unsigned char *done = calloc(n, 1);
    p->order = calloc(n, sizeof *p->order);
    if (!e || !indeg || !first || !kids || !heap || !done || !p->order) {
        etl_cfg_oom(c);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t f = 0; f < p->streams[i].nfk; f++) {
            /* check_refs() made sure every parent exists. */
            size_t parent = name_find(ix, n, p->streams[i].fk[f].parent);
            if (parent == i)
                continue;
            e[ne].child = i;
            e[ne].parent = parent;
            e[ne].loc = p->streams[i].fk[f].loc;
            ne++;
            indeg[i]++;
            first[parent + 1]++;
        }
    }
    for (size_t i = 0; i < n; i++)
        first[i + 1] += first[i];
    for (size_t k = 0; k < ne; k++)
        kids[first[e[k].parent]++] = e[k].child;
    /* The fill above advanced first[i] to the end of i's run: shift back. */
    for (size_t i = n; i > 0; i--)
        first[i] = first[i - 1];
    first[0] = 0;
    for (size_t i = 0; i < n; i++)
        if (indeg[i] == 0)
            heap_push(heap, &nheap, i);
    while (nheap) {
        size_t i = heap_pop(heap, &nheap);
        done[i] = 1;
        p->order[placed++] = i;
        for (size_t k = first[i]; k < first[i + 1]; k++)
            if (--indeg[kids[k]] == 0)
                heap_push(heap, &nheap, kids[k]);
    }
    if (placed < n) {
        report_cycle(c, p, e, ne, done);
        goto fail;
    }
    rc = 0;
fail:
    free(e);
    free(indeg);
    free(first);
    free(kids);
    free(heap);
    free(done);
    return rc;
}

static int check_graph(etl_cfg_t *c, etl_pipeline_t *p)
{
    name_ix_t *ix = name_index(p);
    if (!ix)
        return etl_cfg_oom(c);
    int rc = check_refs(c, p, ix) == 0 && topo_order(c, p, ix) == 0 ? 0 : -1;
    free(ix);
    return rc;
}

/* ------------------------------------------------------------ one pipeline */

static int parse_streams(etl_cfg_t *c, yaml_node_t *n, etl_pipeline_t *p, const stream_build_t *d)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return etl_cfg_fail(c, n->start_mark, "a list of streams, each a mapping with name:",
                            "'streams' must be a list, not %s", etl_cfg_kind(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return etl_cfg_fail(c, n->start_mark, "at least one stream", "'streams' is an empty list");
    p->streams = calloc(count, sizeof *p->streams);
    if (!p->streams)
        return etl_cfg_oom(c);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *sn = etl_cfg_node(c, n->data.sequence.items.start[i]);
        if (!sn)
            return -1;
        stream_build_t b;
        memset(&b, 0, sizeof b);
        int rc = parse_stream(c, sn, i, p, d, &b);
        /* Owned by the pipeline even when half built, so one free suffices. */
        p->streams[p->nstreams++] = b.s;
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int build_pipeline(etl_cfg_t *c, yaml_node_t *root, yaml_node_t **tv,
                          const mx_entry_t *mx, etl_pipeline_t *p)
{
    stream_build_t d;
    memset(&d, 0, sizeof d);
    int rc = -1;
    int64_t x;
    int e;

    p->lua_instructions = DEFAULT_LUA_INSTRUCTIONS;
    p->lua_memory = (size_t)DEFAULT_LUA_MEMORY_MIB * 1024 * 1024;
    p->log_keep = DEFAULT_LOG_KEEP;
    if (!(p->file = etl_strdup(c->file)) || !(p->dir = etl_strdup(c->dir)) ||
        (mx && !(p->client = etl_strdup(mx->client)))) {
        etl_cfg_oom(c);
        goto fail;
    }
    if (!tv[TK_NAME]) {
        missing(c, root, "name", "", "name: [A-Za-z0-9_.-]+");
        goto fail;
    }
    if (etl_cfg_str_set(c, tv[TK_NAME], "name", "letters, digits, '_', '.' and '-'", &p->name) != 0)
        goto fail;
    if (!is_plain_name(p->name)) {
        etl_cfg_fail(c, tv[TK_NAME]->start_mark, "letters, digits, '_', '.' and '-'",
                     "bad pipeline name '%s'", p->name);
        goto fail;
    }
    if (parse_state(c, tv[TK_STATE], p) != 0)
        goto fail;
    if (!tv[TK_SOURCE]) {
        missing(c, root, "source", "", "source: {plugin: NAME, ...}");
        goto fail;
    }
    if (parse_endpoint(c, tv[TK_SOURCE], "source", &p->source) != 0)
        goto fail;
    if (!tv[TK_SINK]) {
        missing(c, root, "sink", "", "sink: {plugin: NAME, ...}");
        goto fail;
    }
    if (parse_endpoint(c, tv[TK_SINK], "sink", &p->sink) != 0)
        goto fail;
    if (tv[TK_DIRECTION]) {
        if (etl_cfg_enum(c, tv[TK_DIRECTION], "direction", direction_names,
                         ETL_ARRAY_LEN(direction_names), &e) != 0)
            goto fail;
        p->direction = (etl_direction_t)e;
    }
    if (tv[TK_HOOKS] && parse_hooks(c, tv[TK_HOOKS], p) != 0)
        goto fail;
    if (tv[TK_LUA] && parse_lua(c, tv[TK_LUA], p) != 0)
        goto fail;
    if (tv[TK_MAX_ERRORS]) {
        if (etl_cfg_int(c, tv[TK_MAX_ERRORS], "max_errors", 0, INT_MAX, &x) != 0)
            goto fail;
        p->max_errors = (int)x;
    }
    if (tv[TK_LOG] && parse_log(c, tv[TK_LOG], p) != 0)
        goto fail;
    /* The pipeline's schedule is checked even when the entry replaces it. */
    if (tv[TK_SCHEDULE] && parse_schedule(c, tv[TK_SCHEDULE], " in schedule", &p->schedule) != 0)
        goto fail;
    if (mx && mx->schedule) {
        char where[160];
        snprintf(where, sizeof where, " in schedule of matrix client '%.64s'", mx->client);
        if (parse_schedule(c, mx->schedule, where, &p->schedule) != 0)
            goto fail;
    }
    if (tv[TK_IDENTITY] && parse_identity(c, tv[TK_IDENTITY], p) != 0)
        goto fail;
    if (tv[TK_DEFAULTS] && parse_defaults(c, tv[TK_DEFAULTS], p, &d) != 0)
        goto fail;
    if (!tv[TK_STREAMS]) {
        missing(c, root, "streams", "", "a list of streams");
        goto fail;
    }
    if (parse_streams(c, tv[TK_STREAMS], p, &d) != 0 || check_graph(c, p) != 0)
        goto fail;
    rc = 0;
fail:
    stream_free(&d.s);
    return rc;
}

/* ------------------------------------------------------------ matrix */

static void matrix_free(mx_entry_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        etl_cfg_pairs_free(v[i].vars, v[i].nvars);
        free(v[i].error);
    }
    free(v);
}

/* The whole load fails with entry e's own error (it was asked for by name,
 * or building its pipeline failed because of the value it lacks). */
static void entry_fails(etl_cfg_t *c, const mx_entry_t *e)
{
    if (c->err && c->errlen)
        etl_strlcpy(c->err, e->error, c->errlen);
    c->failed = 1;
}

typedef struct mx_walk {
    mx_entry_t *e;
    size_t idx;
} mx_walk_t;

static int matrix_pair(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *v, void *arg)
{
    mx_walk_t *w = arg;
    mx_entry_t *e = w->e;
    if (strcmp(name, "schedule") == 0) {
        if (v->type != YAML_MAPPING_NODE)
            return etl_cfg_fail(c, v->start_mark, "{cron, every, expires}",
                                "'schedule' in matrix entry #%zu must be a mapping, not %s",
                                w->idx + 1, etl_cfg_kind(v));
        e->schedule = v;
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE)
        return etl_cfg_fail(c, v->start_mark, "a string",
                            "'%s' in matrix entry #%zu must be a string, not %s", name, w->idx + 1,
                            etl_cfg_kind(v));
    char *value = NULL;
    if (etl_cfg_str(c, v, name, "a string", 1, &value) != 0) {
        if (c->nomem || !c->unset || strcmp(name, "client") == 0)
            return -1;
        /* one client's missing ${VAR} is that client's trouble: kept, and
         * reported when (and only when) that client runs */
        if (!e->error && !(e->error = etl_strdup(c->err ? c->err : "bad value")))
            return etl_cfg_oom(c);
        c->failed = 0;
        if (c->err && c->errlen)
            c->err[0] = '\0';
        if (!(value = etl_strdup("")))
            return etl_cfg_oom(c);
    }
    char *nm = etl_strdup(name);
    etl_pair_t *pv = nm ? realloc(e->vars, (e->nvars + 1) * sizeof *pv) : NULL;
    if (!pv) {
        free(nm);
        free(value);
        return etl_cfg_oom(c);
    }
    e->vars = pv;
    pv[e->nvars].name = nm;
    pv[e->nvars].value = value;
    pv[e->nvars].loc = etl_cfg_loc(k->start_mark);
    e->nvars++;
    if (strcmp(name, "client") == 0) {
        e->client = value;
        if (!is_plain_name(value))
            return etl_cfg_fail(c, v->start_mark, "letters, digits, '_', '.' and '-'",
                                "bad client '%s' in matrix entry #%zu", value, w->idx + 1);
    }
    return 0;
}

static int parse_matrix(etl_cfg_t *c, yaml_node_t *n, mx_entry_t **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return etl_cfg_fail(c, n->start_mark, "a list of {client: ID, ...} mappings",
                            "'matrix' must be a list, not %s", etl_cfg_kind(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return etl_cfg_fail(c, n->start_mark, "at least one {client: ID, ...}",
                            "'matrix' is an empty list");
    mx_entry_t *v = calloc(count, sizeof *v);
    if (!v)
        return etl_cfg_oom(c);
    *out = v;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *en = etl_cfg_node(c, n->data.sequence.items.start[i]);
        if (!en)
            return -1;
        (*nout)++;
        v[i].mark = en->start_mark;
        if (en->type != YAML_MAPPING_NODE)
            return etl_cfg_fail(c, en->start_mark, "{client: ID, ...}",
                                "matrix entry #%zu must be a mapping, not %s", i + 1,
                                etl_cfg_kind(en));
        char where[64];
        snprintf(where, sizeof where, " in matrix entry #%zu", i + 1);
        mx_walk_t w = {&v[i], i};
        if (etl_cfg_each_pair(c, en, "matrix entry", where, matrix_pair, &w) != 0)
            return -1;
        if (!v[i].client)
            return missing(c, en, "client", where, "client: ID in every matrix entry");
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[j].client, v[i].client) == 0)
                return etl_cfg_fail(c, en->start_mark, "unique clients",
                                    "duplicate client '%s' in matrix entry #%zu (first at %d:%d)",
                                    v[i].client, i + 1, (int)v[j].mark.line + 1,
                                    (int)v[j].mark.column + 1);
    }
    return 0;
}

/* ------------------------------------------------------------ entry points */

static int check_version(etl_cfg_t *c, yaml_node_t *root, yaml_node_t *n)
{
    int64_t v;
    if (!n)
        return missing(c, root, "version", "", "version: 1 as the first line");
    if (n->type != YAML_SCALAR_NODE)
        return etl_cfg_fail(c, n->start_mark, "version: 1", "'version' must be 1, not %s",
                            etl_cfg_kind(n));
    char *s;
    if (etl_cfg_str(c, n, "version", "version: 1", 1, &s) != 0)
        return -1;
    int ok = etl_parse_i64(s, &v) == 0 && v == 1;
    if (!ok)
        etl_cfg_fail(c, n->start_mark, "version: 1", "unsupported version '%s'", s);
    free(s);
    return ok ? 0 : -1;
}

static int push_pipeline(etl_cfg_t *c, etl_pipeline_t ***v, size_t *n, etl_pipeline_t **p)
{
    etl_pipeline_t **nv = realloc(*v, (*n + 1) * sizeof *nv);
    *p = calloc(1, sizeof **p);
    if (!nv || !*p) {
        if (nv)
            *v = nv;
        free(*p);
        *p = NULL;
        return etl_cfg_oom(c);
    }
    *v = nv;
    nv[(*n)++] = *p;
    return 0;
}

etl_cfg_status_t etl_config_parse(const char *path, const char *text, size_t len,
                                  const etl_load_opts_t *opts, etl_pipeline_t ***out, size_t *n,
                                  char *err, size_t errlen)
{
    etl_cfg_t c;
    memset(&c, 0, sizeof c);
    etl_pipeline_t **v = NULL;
    size_t nv = 0;
    mx_entry_t *mx = NULL;
    size_t nmx = 0;
    yaml_node_t *tv[TK__N];
    const char *want = opts ? opts->client : NULL;

    *out = NULL;
    *n = 0;
    if (err && errlen)
        err[0] = '\0';
    c.file = path ? path : "<pipeline>";
    c.opts = opts;
    c.err = err;
    c.errlen = errlen;
    if (!(c.dir = abs_dir(c.file))) {
        etl_cfg_oom(&c);
        goto fail;
    }
    c.ip.dir = c.dir;
    c.ip.getenv = opts ? opts->getenv : NULL;
    c.ip.getenv_arg = opts ? opts->getenv_arg : NULL;
    if (etl_cfg_yaml_load(&c, text ? text : "", text ? len : 0) != 0)
        goto fail;
    yaml_node_t *root = etl_cfg_node(&c, 1);
    if (!root)
        goto fail;
    if (root->type != YAML_MAPPING_NODE) {
        etl_cfg_fail(&c, root->start_mark, "a mapping with version: 1, name, source, sink and streams",
                     "the pipeline is %s", etl_cfg_kind(root));
        goto fail;
    }
    /* The version first: another version may well have other keys. */
    if (check_version(&c, root, etl_cfg_find(&c, root, "version")) != 0 ||
        etl_cfg_map(&c, root, "pipeline", "", top_keys, TK__N, tv, NULL) != 0)
        goto fail;

    if (tv[TK_MATRIX]) {
        c.ip.matrix_state = ETL_INTERP_IN_MATRIX;
        if (parse_matrix(&c, tv[TK_MATRIX], &mx, &nmx) != 0)
            goto fail;
        if (want) {
            size_t i = 0;
            while (i < nmx && strcmp(mx[i].client, want) != 0)
                i++;
            if (i == nmx) {
                etl_buf_t names;
                etl_buf_init(&names);
                etl_buf_adds(&names, "one of: ");
                for (size_t j = 0; j < nmx; j++)
                    etl_buf_printf(&names, "%s%s", j ? ", " : "", mx[j].client);
                if (names.oom)
                    etl_cfg_oom(&c);
                else
                    etl_cfg_fail(&c, tv[TK_MATRIX]->start_mark, names.data,
                                 "unknown client '%s'", want);
                etl_buf_free(&names);
                goto fail;
            }
        }
    } else if (want) {
        etl_cfg_fail(&c, root->start_mark, "a matrix: list to choose a client from",
                     "client '%s' asked for but the pipeline has no matrix", want);
        goto fail;
    }

    for (size_t i = 0; i < (mx ? nmx : 1); i++) {
        if (mx && want && strcmp(mx[i].client, want) != 0)
            continue;
        if (mx && want && mx[i].error) {
            entry_fails(&c, &mx[i]);
            goto fail;
        }
        etl_pipeline_t *p;
        if (push_pipeline(&c, &v, &nv, &p) != 0)
            goto fail;
        etl_cfg_walk_reset(&c);
        if (mx) {
            c.ip.matrix_state = ETL_INTERP_ENTRY;
            c.ip.matrix = mx[i].vars;
            c.ip.nmatrix = mx[i].nvars;
        } else {
            c.ip.matrix_state = ETL_INTERP_NO_MATRIX;
        }
        if (build_pipeline(&c, root, tv, mx ? &mx[i] : NULL, p) != 0) {
            if (mx && mx[i].error && !c.nomem)
                entry_fails(&c, &mx[i]);
            goto fail;
        }
        if (mx && mx[i].error && !(p->config_error = etl_strdup(mx[i].error))) {
            etl_cfg_oom(&c);
            goto fail;
        }
    }
    matrix_free(mx, nmx);
    etl_cfg_yaml_free(&c);
    free(c.dir);
    *out = v;
    *n = nv;
    return ETL_CFG_OK;

fail:
    matrix_free(mx, nmx);
    etl_cfg_yaml_free(&c);
    free(c.dir);
    etl_pipelines_free(v, nv);
    if (c.nomem)
        return ETL_CFG_NOMEM;
    if (!c.failed && err && errlen)
        etl_errf(err, errlen, "%s: invalid pipeline", c.file);
    return ETL_CFG_INVALID;
}

etl_cfg_status_t etl_config_load(const char *path, const etl_load_opts_t *opts,
                                 etl_pipeline_t ***out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        etl_errf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return ETL_CFG_IO;
    }
    etl_buf_t b;
    etl_buf_init(&b);
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= CONFIG_FILE_MAX)
        etl_buf_add(&b, chunk, got);
    int bad = ferror(f) ? errno : 0; /* EISDIR for a folder */
    fclose(f);
    if (bad || b.len > CONFIG_FILE_MAX) {
        etl_errf(err, errlen, "%s: cannot read: %s", path,
                 bad ? strerror(bad) : "larger than 16 MiB");
        etl_buf_free(&b);
        return ETL_CFG_IO;
    }
    if (b.oom) {
        etl_errf(err, errlen, "%s: out of memory", path);
        etl_buf_free(&b);
        return ETL_CFG_NOMEM;
    }
    etl_cfg_status_t st = etl_config_parse(path, b.data ? b.data : "", b.len, opts, out, n, err, errlen);
    etl_buf_free(&b);
    return st;
}
