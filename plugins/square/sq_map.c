/*
 * sq_map.c - Square objects to rows. A plan is made once per read from the
 * stream's column table and the core's schema (which may leave columns out
 * and orders them its way): the columns' paths become a tree of member
 * names, so each object is walked once, member by member, and nested
 * objects only where a column wants something inside them.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "square.h"

#define SQ_PROBES 4 /* top-level members a reader may ask for besides the columns */

typedef struct sq_node sq_node_t;
struct sq_node {
    const char *name;
    size_t len;
    int field;        /* the column filled from this member, or -1 */
    int probe;        /* the probe slot that keeps this member's span, or -1 */
    etl_type_t type;
    const char *path; /* for messages */
    sq_node_t *kids;  /* members wanted inside it (an object), first child */
    sq_node_t *next;  /* the next sibling */
};

struct sq_plan {
    const etl_schema_t *schema;
    size_t ncols;
    sq_node_t root;
    sq_node_t *nodes; /* every node but the root */
    size_t nnodes;
    int whole;        /* the column that takes the whole object ("$"), or -1 */
    size_t cap;       /* nodes allocated */
    sq_span_t probes[SQ_PROBES];
    char *names;      /* the member names' text */
    etl_value_t *row; /* ncols values */
};

void sq_plan_free(sq_plan_t *p)
{
    if (!p)
        return;
    free(p->nodes);
    free(p->names);
    free(p->row);
    free(p);
}

int sq_plan_col(const sq_plan_t *p, const char *name)
{
    return etl_schema_find(p->schema, name);
}

/* The child of parent named name[0..len), made when missing (or, with
 * `leaf`, when the one there already fills a column: two columns may take
 * the same member, such as calculated_at and updated_at). */
static sq_node_t *sq_child(sq_plan_t *p, sq_node_t *parent, const char *name, size_t len,
                           int leaf)
{
    sq_node_t **link = &parent->kids;
    for (sq_node_t *k = parent->kids; k; k = k->next) {
        if (k->len == len && memcmp(k->name, name, len) == 0 && !(leaf && k->field >= 0))
            return k;
        link = &k->next;
    }
    sq_node_t *k = &p->nodes[p->nnodes++];
    memset(k, 0, sizeof *k);
    k->name = name;
    k->len = len;
    k->field = -1;
    k->probe = -1;
    *link = k;
    return k;
}

etl_status_t sq_plan_new(etl_ctx_t *ctx, const sq_col_t *cols, const etl_schema_t *schema,
                         sq_plan_t **out)
{
    etl_status_t st = ETL_OK;
    sq_plan_t *p = calloc(1, sizeof *p);
    size_t n = etl_schema_ncols(schema), textlen = 0, segs = 0;
    if (!p)
        goto nomem;
    p->schema = schema;
    p->ncols = n;
    p->whole = -1;
    p->root.field = -1;
    p->root.probe = -1;
    for (const sq_col_t *c = cols; c->name; c++) {
        if (!c->path)
            continue;
        textlen += strlen(c->path) + 1;
        segs += 1;
        for (const char *d = c->path; *d; d++)
            segs += *d == '.';
    }
    p->cap = segs + SQ_PROBES + 1;
    p->nodes = calloc(p->cap, sizeof *p->nodes);
    p->row = calloc(n + 1, sizeof *p->row);
    p->names = malloc(textlen + 1);
    if (!p->nodes || !p->row || !p->names)
        goto nomem;
    char *w = p->names;
    for (size_t i = 0; i < n; i++) {
        const etl_column_t *col = etl_schema_col(schema, i);
        const sq_col_t *c = cols;
        while (c->name && strcmp(c->name, col->name) != 0)
            c++;
        if (!c->name || !c->path)
            continue; /* set by the reader, or not Square's (stays NULL) */
        if (strcmp(c->path, "$") == 0) {
            p->whole = (int)i;
            continue;
        }
        sq_node_t *node = &p->root;
        const char *s = c->path;
        while (*s) {
            const char *dot = strchr(s, '.');
            size_t len = dot ? (size_t)(dot - s) : strlen(s);
            if (!len) {
                st = etl_fail(ctx, ETL_ERR_INTERNAL, "column %s: bad path '%s'", c->name,
                              c->path);
                goto fail;
            }
            memcpy(w, s, len);
            w[len] = '\0';
            node = sq_child(p, node, w, len, !dot);
            w += len + 1;
            s += len + (dot ? 1 : 0);
        }
        node->field = (int)i;
        node->type = c->type;
        node->path = c->path;
    }
    *out = p;
    return ETL_OK;
nomem:
    st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
fail:
    sq_plan_free(p);
    return st;
}

int sq_plan_probe(sq_plan_t *p, const char *name)
{
    size_t slot = 0;
    for (size_t i = 0; i < p->nnodes; i++)
        slot += p->nodes[i].probe >= 0;
    if (slot >= SQ_PROBES || p->nnodes >= p->cap)
        return -1;
    sq_node_t *k = sq_child(p, &p->root, name, strlen(name), 0);
    if (k->probe < 0)
        k->probe = (int)slot;
    return k->probe;
}

sq_span_t sq_plan_span(const sq_plan_t *p, int slot)
{
    sq_span_t none = {NULL, 0};
    return slot >= 0 && slot < SQ_PROBES ? p->probes[slot] : none;
}

/* Fills the columns under `node` from the members of obj. */
static etl_status_t sq_fill_node(sq_plan_t *p, etl_ctx_t *ctx, sq_conv_t *cv,
                                 const sq_page_t *pg, const sq_node_t *node, sq_span_t obj)
{
    sq_iter_t it;
    sq_span_t key, val;
    if (!obj.p || *obj.p != '{')
        return ETL_OK; /* a path through something else is absent */
    sq_iter_init(&it, pg, obj);
    while (sq_iter_member(&it, &key, &val)) {
        int escaped = memchr(key.p, '\\', key.n) != NULL;
        for (const sq_node_t *k = node->kids; k; k = k->next) {
            if (escaped ? !sq_key_is(key, k->name, k->len)
                        : k->len != key.n || memcmp(k->name, key.p, key.n) != 0)
                continue;
            etl_status_t st;
            if (k->probe >= 0)
                p->probes[k->probe] = val;
            if (k->field >= 0 &&
                (st = sq_value(ctx, cv, val, k->type, k->path, &p->row[k->field])) != ETL_OK)
                return st;
            if (k->kids && (st = sq_fill_node(p, ctx, cv, pg, k, val)) != ETL_OK)
                return st;
        }
    }
    return ETL_OK;
}

etl_status_t sq_plan_fill(sq_plan_t *p, etl_ctx_t *ctx, sq_conv_t *cv, const sq_page_t *pg,
                          sq_span_t obj, const char *where, etl_value_t **row)
{
    etl_status_t st = ETL_OK;
    for (size_t i = 0; i < p->ncols; i++)
        p->row[i] = etl_null();
    for (size_t i = 0; i < SQ_PROBES; i++)
        p->probes[i].p = NULL, p->probes[i].n = 0;
    if (!obj.p || *obj.p != '{')
        return etl_fail(ctx, ETL_ERR_DATA, "%s: an item is not a JSON object", where);
    if (p->whole >= 0)
        st = sq_value(ctx, cv, obj, ETL_T_JSON, "$", &p->row[p->whole]);
    if (st == ETL_OK)
        st = sq_fill_node(p, ctx, cv, pg, &p->root, obj);
    if (st != ETL_OK) {
        char msg[640];
        char *id = NULL;
        sq_span_t v;
        if (sq_member(pg, obj, "id", &v) || sq_member(pg, obj, "uid", &v))
            id = sq_strdup(v);
        snprintf(msg, sizeof msg, "%s", etl_ctx_error(ctx));
        st = etl_fail(ctx, st, "%s: object %s: %s", where, id ? id : "(no id)", msg);
        free(id);
        return st;
    }
    *row = p->row;
    return ETL_OK;
}
