/*
 * config_yaml.c - the pipeline file as a YAML document: loading it, typed
 * reads of its nodes, key checks, and messages that point at a line and
 * column. What the keys mean is config.c's business.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "util.h"

/* Aliases may re-use at most this many nodes beyond the document's own
 * count within one walk; enough for any honest reuse of a list or a map. */
#define ALIAS_SLACK 1000

etl_loc_t etl_cfg_loc(yaml_mark_t m)
{
    etl_loc_t l = {(int)m.line + 1, (int)m.column + 1};
    return l;
}

int etl_cfg_fail(etl_cfg_t *c, yaml_mark_t m, const char *expected, const char *fmt, ...)
{
    if (c->failed || c->nomem)
        return -1;
    c->failed = 1;
    if (!c->err || !c->errlen)
        return -1;
    /* Straight into the caller's buffer: reporting must not need memory. */
    size_t at = 0;
    int w = snprintf(c->err, c->errlen, "%s:%d:%d: ", c->file, (int)m.line + 1,
                     (int)m.column + 1);
    if (w > 0)
        at += (size_t)w;
    if (at < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        w = vsnprintf(c->err + at, c->errlen - at, fmt, ap);
        va_end(ap);
        if (w > 0)
            at += (size_t)w;
    }
    if (at < c->errlen)
        snprintf(c->err + at, c->errlen - at, " (expected %s)", expected);
    return -1;
}

int etl_cfg_oom(etl_cfg_t *c)
{
    if (!c->failed && !c->nomem && c->err && c->errlen)
        etl_errf(c->err, c->errlen, "%s: out of memory", c->file);
    c->nomem = 1;
    return -1;
}

/* Line and column of a byte offset, for reader errors that carry only one. */
static yaml_mark_t mark_at(const char *text, size_t len, size_t off)
{
    yaml_mark_t m = {0, 0, 0};
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    m.index = off;
    return m;
}

static int yaml_error(etl_cfg_t *c, yaml_parser_t *p, const char *text, size_t len)
{
    /* libyaml fails without a problem text only when an allocation failed. */
    if (p->error == YAML_MEMORY_ERROR || p->error == YAML_NO_ERROR || !p->problem)
        return etl_cfg_oom(c);
    const char *problem = p->problem ? p->problem : "invalid YAML";
    yaml_mark_t m = p->problem_mark;
    if (p->error == YAML_READER_ERROR)
        m = mark_at(text, len, p->problem_offset);
    if (p->context)
        return etl_cfg_fail(c, m, "valid YAML", "%s %s (from line %d)", p->context, problem,
                            (int)p->context_mark.line + 1);
    return etl_cfg_fail(c, m, "valid YAML", "%s", problem);
}

/*
 * libyaml's scanner does work proportional to the flow nesting depth for
 * every token, so "[[[[..." a few hundred thousand deep takes minutes. A
 * first pass over the events stops at a depth no pipeline needs, after a
 * few dozen tokens; it also reports syntax errors exactly as the load would.
 */
static int check_depth(etl_cfg_t *c, const char *text, size_t len)
{
    yaml_parser_t p;
    yaml_event_t e;
    int depth = 0, rc = -1;
    if (!yaml_parser_initialize(&p))
        return etl_cfg_oom(c);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &e)) {
            yaml_error(c, &p, text, len);
            break;
        }
        yaml_event_type_t t = e.type;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > ETL_CFG_MAX_DEPTH) {
                etl_cfg_fail(c, e.start_mark, "a pipeline, not deeply nested data",
                             "nesting deeper than %d levels", ETL_CFG_MAX_DEPTH);
                yaml_event_delete(&e);
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&e);
        if (t == YAML_STREAM_END_EVENT) {
            rc = 0;
            break;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

int etl_cfg_yaml_load(etl_cfg_t *c, const char *text, size_t len)
{
    yaml_parser_t p;
    int rc = -1;
    if (check_depth(c, text, len) != 0)
        return -1;
    if (!yaml_parser_initialize(&p))
        return etl_cfg_oom(c);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &c->doc)) {
        yaml_error(c, &p, text, len);
        goto fail;
    }
    c->have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&c->doc);
    if (!root) {
        yaml_mark_t m = {0, 0, 0};
        etl_cfg_fail(c, m, "a mapping with version: 1, name, source, sink and streams",
                     "the file is empty");
        goto fail;
    }
    /* A second document would be silently ignored; say so instead. */
    yaml_document_t next;
    if (!yaml_parser_load(&p, &next)) {
        yaml_error(c, &p, text, len);
        goto fail;
    }
    yaml_node_t *nroot = yaml_document_get_root_node(&next);
    yaml_mark_t nm = nroot ? nroot->start_mark : p.mark;
    yaml_document_delete(&next);
    if (nroot) {
        etl_cfg_fail(c, nm, "one pipeline per file", "a second YAML document");
        goto fail;
    }
    c->nnodes = (size_t)(c->doc.nodes.top - c->doc.nodes.start);
    c->seen = calloc(c->nnodes ? c->nnodes : 1, 1);
    if (!c->seen) {
        etl_cfg_oom(c);
        goto fail;
    }
    c->reuse_limit = c->nnodes + ALIAS_SLACK;
    rc = 0;
fail:
    yaml_parser_delete(&p);
    return rc;
}

void etl_cfg_yaml_free(etl_cfg_t *c)
{
    if (c->have_doc)
        yaml_document_delete(&c->doc);
    c->have_doc = 0;
    free(c->seen);
    c->seen = NULL;
}

void etl_cfg_walk_reset(etl_cfg_t *c)
{
    if (c->seen)
        memset(c->seen, 0, c->nnodes ? c->nnodes : 1);
    c->reused = 0;
}

yaml_node_t *etl_cfg_node(etl_cfg_t *c, int index)
{
    yaml_node_t *n = c->have_doc ? yaml_document_get_node(&c->doc, index) : NULL;
    if (!n) {
        yaml_mark_t m = {0, 0, 0};
        etl_cfg_fail(c, m, "valid YAML", "bad node reference");
        return NULL;
    }
    size_t i = (size_t)(index - 1);
    if (c->seen[i] && ++c->reused > c->reuse_limit) {
        etl_cfg_fail(c, n->start_mark, "aliases to repeat a value a few times",
                     "aliases expand the document beyond %zu reused nodes", c->reuse_limit);
        return NULL;
    }
    c->seen[i] = 1;
    return n;
}

const char *etl_cfg_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_SCALAR_NODE: return etl_cfg_is_null(n) ? "empty" : "a string";
    default: return "nothing";
    }
}

int etl_cfg_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    const char *v = (const char *)n->data.scalar.value;
    for (size_t i = 0; i < ETL_ARRAY_LEN(nulls); i++)
        if (strlen(nulls[i]) == n->data.scalar.length && strcmp(v, nulls[i]) == 0)
            return 1;
    return 0;
}

int etl_cfg_want(etl_cfg_t *c, const yaml_node_t *n, yaml_node_type_t type, const char *what,
                 const char *expected)
{
    if (n->type == type && !(type == YAML_SCALAR_NODE && etl_cfg_is_null(n)))
        return 0;
    const char *want = type == YAML_MAPPING_NODE    ? "a mapping"
                       : type == YAML_SEQUENCE_NODE ? "a list"
                                                    : "a string";
    return etl_cfg_fail(c, n->start_mark, expected, "'%s' must be %s, not %s", what, want,
                        etl_cfg_kind(n));
}

const char *etl_cfg_join(const char *const *names, size_t n, char *buf, size_t len)
{
    size_t at = 0;
    if (!len)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + at, len - at, "%s%s", i ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= len - at) {
            /* Too many to list: end with an ellipsis that fits. */
            if (len >= 4)
                strcpy(buf + (at + 4 < len ? at : len - 4), "...");
            break;
        }
        at += (size_t)w;
    }
    return buf;
}

/* The key's text when it is a string without NUL bytes, else NULL. */
static const char *key_text(const yaml_node_t *k)
{
    if (k->type != YAML_SCALAR_NODE)
        return NULL;
    const char *s = (const char *)k->data.scalar.value;
    if (strlen(s) != k->data.scalar.length)
        return NULL;
    return s;
}

/* Walks a mapping's pairs: keys must be strings, each given once. */
static int walk_map(etl_cfg_t *c, yaml_node_t *map, const char *what, const char *where,
                    etl_cfg_pair_fn fn, void *arg)
{
    if (etl_cfg_want(c, map, YAML_MAPPING_NODE, what, "key: value pairs") != 0)
        return -1;
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = etl_cfg_node(c, p->key);
        if (!k)
            return -1;
        const char *name = key_text(k);
        if (!name || etl_cfg_is_null(k))
            return etl_cfg_fail(c, k->start_mark, "key: value", "a key%s that is not a name",
                                where);
        for (yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(&c->doc, q->key);
            const char *qn = qk ? key_text(qk) : NULL;
            if (qn && strcmp(qn, name) == 0)
                return etl_cfg_fail(c, k->start_mark, "each key once",
                                    "duplicate key '%s'%s (first at %d:%d)", name, where,
                                    (int)qk->start_mark.line + 1, (int)qk->start_mark.column + 1);
        }
        yaml_node_t *v = etl_cfg_node(c, p->value);
        if (!v)
            return -1;
        if (fn(c, k, name, v, arg) != 0)
            return -1;
    }
    return 0;
}

yaml_node_t *etl_cfg_find(etl_cfg_t *c, yaml_node_t *map, const char *key)
{
    if (map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&c->doc, p->key);
        const char *name = k ? key_text(k) : NULL;
        if (name && strcmp(name, key) == 0) {
            yaml_node_t *v = yaml_document_get_node(&c->doc, p->value);
            return v && !etl_cfg_is_null(v) ? v : NULL;
        }
    }
    return NULL;
}

typedef struct map_slots {
    const char *what;
    const char *where;
    const char *const *names;
    size_t nnames;
    yaml_node_t **vals;
    yaml_node_t **keys;
} map_slots_t;

static int slot_pair(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *v, void *arg)
{
    map_slots_t *s = arg;
    for (size_t i = 0; i < s->nnames; i++) {
        if (strcmp(s->names[i], name) != 0)
            continue;
        s->vals[i] = etl_cfg_is_null(v) ? NULL : v;
        if (s->keys)
            s->keys[i] = k;
        return 0;
    }
    char list[1024], expected[1040];
    snprintf(expected, sizeof expected, "one of: %s",
             etl_cfg_join(s->names, s->nnames, list, sizeof list));
    return etl_cfg_fail(c, k->start_mark, expected, "unknown key '%s'%s", name, s->where);
}

int etl_cfg_map(etl_cfg_t *c, yaml_node_t *map, const char *what, const char *where,
                const char *const *names, size_t nnames, yaml_node_t **vals, yaml_node_t **keys)
{
    for (size_t i = 0; i < nnames; i++) {
        vals[i] = NULL;
        if (keys)
            keys[i] = NULL;
    }
    map_slots_t s = {what, where, names, nnames, vals, keys};
    return walk_map(c, map, what, where, slot_pair, &s);
}

int etl_cfg_each_pair(etl_cfg_t *c, yaml_node_t *map, const char *what, const char *where,
                      etl_cfg_pair_fn fn, void *arg)
{
    return walk_map(c, map, what, where, fn, arg);
}

int etl_cfg_str(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                int allow_empty, char **out)
{
    *out = NULL;
    if (etl_cfg_want(c, n, YAML_SCALAR_NODE, what, expected) != 0)
        return -1;
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(s, '\0', len))
        return etl_cfg_fail(c, n->start_mark, expected, "'%s' holds a NUL character", what);
    char msg[ETL_ERRLEN];
    msg[0] = '\0';
    etl_interp_status_t ist = etl_interp(&c->ip, what, s, len, out, msg, sizeof msg);
    c->unset = ist == ETL_INTERP_UNSET;
    switch (ist) {
    case ETL_INTERP_OK: break;
    case ETL_INTERP_NOMEM: return etl_cfg_oom(c);
    case ETL_INTERP_UNSET:
    case ETL_INTERP_BAD: {
        /* msg ends with its own "(expected ...)": split it off. */
        char *paren = strstr(msg, " (expected ");
        size_t ml = strlen(msg);
        if (paren && ml > 0 && msg[ml - 1] == ')') {
            msg[ml - 1] = '\0';
            *paren = '\0';
            return etl_cfg_fail(c, n->start_mark, paren + 11, "%s", msg);
        }
        return etl_cfg_fail(c, n->start_mark, expected, "%s", msg);
    }
    }
    if (!allow_empty && !**out) {
        free(*out);
        *out = NULL;
        return etl_cfg_fail(c, n->start_mark, expected, "'%s' is empty", what);
    }
    return 0;
}

int etl_cfg_str_set(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                    char **slot)
{
    char *s;
    if (etl_cfg_str(c, n, what, expected, 0, &s) != 0)
        return -1;
    free(*slot);
    *slot = s;
    return 0;
}

int etl_cfg_int(etl_cfg_t *c, yaml_node_t *n, const char *what, int64_t lo, int64_t hi,
                int64_t *out)
{
    char expected[96];
    snprintf(expected, sizeof expected, "%lld..%lld", (long long)lo, (long long)hi);
    if (n->type != YAML_SCALAR_NODE)
        return etl_cfg_fail(c, n->start_mark, expected, "'%s' must be an integer, not %s", what,
                            etl_cfg_kind(n));
    char *s;
    if (etl_cfg_str(c, n, what, expected, 1, &s) != 0)
        return -1;
    int64_t v;
    int bad = etl_parse_i64(s, &v) != 0;
    free(s);
    if (bad)
        return etl_cfg_fail(c, n->start_mark, expected, "'%s' must be an integer", what);
    if (v < lo || v > hi)
        return etl_cfg_fail(c, n->start_mark, expected, "'%s' is %lld, out of range", what,
                            (long long)v);
    *out = v;
    return 0;
}

int etl_cfg_duration(etl_cfg_t *c, yaml_node_t *n, const char *what, int64_t min, int64_t *out)
{
    static const char expected[] = "a number with a unit: 30s, 5m, 2h, 90d";
    char *s;
    if (etl_cfg_str(c, n, what, expected, 1, &s) != 0)
        return -1;
    int64_t v = 0;
    int bad = strcmp(s, "0") != 0 && etl_parse_duration(s, &v) != 0;
    if (bad) {
        etl_cfg_fail(c, n->start_mark, expected, "bad duration '%s' for '%s'", s, what);
        free(s);
        return -1;
    }
    free(s);
    if (v < min)
        return etl_cfg_fail(c, n->start_mark, "a duration above zero, such as 30s, 5m, 2h, 90d",
                            "'%s' must not be zero", what);
    *out = v;
    return 0;
}

int etl_cfg_enum(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *const *names,
                 size_t nnames, int *out)
{
    char list[512], expected[540];
    snprintf(expected, sizeof expected, "one of: %s", etl_cfg_join(names, nnames, list, sizeof list));
    char *s;
    if (etl_cfg_str(c, n, what, expected, 1, &s) != 0)
        return -1;
    for (size_t i = 0; i < nnames; i++) {
        if (strcmp(s, names[i]) == 0) {
            free(s);
            *out = (int)i;
            return 0;
        }
    }
    etl_cfg_fail(c, n->start_mark, expected, "bad value '%s' for '%s'", s, what);
    free(s);
    return -1;
}

void etl_cfg_strlist_free(etl_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int etl_cfg_strlist_copy(etl_strlist_t *dst, const etl_strlist_t *src)
{
    etl_strlist_t l = {NULL, 0, src->loc};
    if (src->n) {
        l.items = calloc(src->n, sizeof *l.items);
        if (!l.items)
            return -1;
        for (; l.n < src->n; l.n++) {
            l.items[l.n] = etl_strdup(src->items[l.n]);
            if (!l.items[l.n]) {
                etl_cfg_strlist_free(&l);
                return -1;
            }
        }
    }
    etl_cfg_strlist_free(dst);
    *dst = l;
    return 0;
}

static int list_push(etl_strlist_t *l, char *s)
{
    char **v = realloc(l->items, (l->n + 1) * sizeof *v);
    if (!v) {
        free(s);
        return -1;
    }
    l->items = v;
    l->items[l->n++] = s;
    return 0;
}

/* Splits on "," and trims each item; empty items are refused. */
static int split_into(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                      const char *s, etl_strlist_t *l)
{
    for (const char *p = s;;) {
        const char *e = strchr(p, ',');
        const char *end = e ? e : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (a == b)
            return etl_cfg_fail(c, n->start_mark, expected, "'%s' has an empty item", what);
        char *item = etl_strndup(a, (size_t)(b - a));
        if (!item || list_push(l, item) != 0)
            return etl_cfg_oom(c);
        if (!e)
            return 0;
        p = e + 1;
    }
}

int etl_cfg_strlist(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                    etl_strlist_t *out)
{
    etl_strlist_t l = {NULL, 0, etl_cfg_loc(n->start_mark)};
    char *s = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        if (etl_cfg_str(c, n, what, expected, 0, &s) != 0 ||
            split_into(c, n, what, expected, s, &l) != 0)
            goto fail;
    } else if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            yaml_node_t *in = etl_cfg_node(c, *it);
            if (!in)
                goto fail;
            if (in->type != YAML_SCALAR_NODE || etl_cfg_is_null(in)) {
                etl_cfg_fail(c, in->start_mark, expected, "an item of '%s' is %s, not a string",
                             what, etl_cfg_kind(in));
                goto fail;
            }
            if (etl_cfg_str(c, in, what, expected, 0, &s) != 0)
                goto fail;
            if (list_push(&l, s) != 0) {
                s = NULL;
                etl_cfg_oom(c);
                goto fail;
            }
            s = NULL;
        }
        if (l.n == 0) {
            etl_cfg_fail(c, n->start_mark, expected, "'%s' is an empty list", what);
            goto fail;
        }
    } else {
        etl_cfg_fail(c, n->start_mark, expected, "'%s' must be a list or a string, not %s", what,
                     etl_cfg_kind(n));
        goto fail;
    }
    free(s);
    etl_cfg_strlist_free(out);
    *out = l;
    return 0;
fail:
    free(s);
    etl_cfg_strlist_free(&l);
    return -1;
}

void etl_cfg_pairs_free(etl_pair_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
}

typedef struct pairs_acc {
    etl_pair_t *v;
    size_t n;
    const char *what;
    const char *expected;
} pairs_acc_t;

static int pair_add(etl_cfg_t *c, yaml_node_t *k, const char *name, yaml_node_t *val, void *arg)
{
    pairs_acc_t *a = arg;
    if (val->type != YAML_SCALAR_NODE || etl_cfg_is_null(val))
        return etl_cfg_fail(c, val->start_mark, a->expected, "'%s' in '%s' must be a string, not %s",
                            name, a->what, etl_cfg_kind(val));
    char *value;
    if (etl_cfg_str(c, val, name, a->expected, 1, &value) != 0)
        return -1;
    char *nm = etl_strdup(name);
    etl_pair_t *v = nm ? realloc(a->v, (a->n + 1) * sizeof *v) : NULL;
    if (!v) {
        free(nm);
        free(value);
        return etl_cfg_oom(c);
    }
    a->v = v;
    v[a->n].name = nm;
    v[a->n].value = value;
    v[a->n].loc = etl_cfg_loc(k->start_mark);
    a->n++;
    return 0;
}

int etl_cfg_pairs(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *where,
                  const char *expected, etl_pair_t **out, size_t *nout)
{
    pairs_acc_t a = {NULL, 0, what, expected};
    if (n->type != YAML_MAPPING_NODE)
        return etl_cfg_fail(c, n->start_mark, expected, "'%s' must be a mapping, not %s", what,
                            etl_cfg_kind(n));
    if (walk_map(c, n, what, where, pair_add, &a) != 0) {
        etl_cfg_pairs_free(a.v, a.n);
        return -1;
    }
    etl_cfg_pairs_free(*out, *nout);
    *out = a.v;
    *nout = a.n;
    return 0;
}
