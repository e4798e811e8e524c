/* state_pg_rows.c - the queue behind the PostgreSQL store's write combining
 * (state_pg_rows.h has the contract). */
#include "state_pg_rows.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAXCOLS 4

/* A queued row's identity, to find operations that do not commute. */
typedef struct slot {
    uint64_t h;
    int64_t sid;
    size_t off, len; /* its key in keys */
    int kind;        /* -1: free */
} slot_t;

struct etl_pg_rows {
    etl_buf_t col[ETL_PG_ROW_KINDS][MAXCOLS]; /* array elements, comma-separated */
    int n[ETL_PG_ROW_KINDS];
    size_t total;
    etl_buf_t out[MAXCOLS]; /* the literals handed out by params() */
    slot_t *slots;
    size_t cap, used;
    etl_buf_t keys;
};

static const int ncols[ETL_PG_ROW_KINDS] = {
    [ETL_PG_ROW_PUT] = 4, [ETL_PG_ROW_ECHO] = 3, [ETL_PG_ROW_SEEN] = 3,
    [ETL_PG_ROW_DEL] = 2, [ETL_PG_ROW_DDEL] = 2,
};

/* Ledger kinds share a table; deferred deletes have their own. */
static int table_of(int kind) { return kind == ETL_PG_ROW_DDEL; }

/* Applies fn (init or free) to every buffer of q. */
static void each_buf(etl_pg_rows_t *q, void (*fn)(etl_buf_t *))
{
    for (int k = 0; k < ETL_PG_ROW_KINDS; k++)
        for (int c = 0; c < MAXCOLS; c++)
            fn(&q->col[k][c]);
    for (int c = 0; c < MAXCOLS; c++)
        fn(&q->out[c]);
    fn(&q->keys);
}

etl_pg_rows_t *etl_pg_rows_new(void)
{
    etl_pg_rows_t *q = calloc(1, sizeof *q);
    if (q)
        each_buf(q, etl_buf_init);
    return q;
}

void etl_pg_rows_free(etl_pg_rows_t *q)
{
    if (!q)
        return;
    each_buf(q, etl_buf_free);
    free(q->slots);
    free(q);
}

static uint64_t row_hash(int table, int64_t sid, const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    unsigned char head[9];
    head[0] = (unsigned char)table;
    for (int i = 0; i < 8; i++)
        head[1 + i] = (unsigned char)((uint64_t)sid >> (8 * i));
    for (size_t i = 0; i < sizeof head; i++)
        h = (h ^ head[i]) * 1099511628211ULL;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

static int grow(etl_pg_rows_t *q)
{
    size_t cap = q->cap ? q->cap * 2 : 1024;
    slot_t *s = malloc(cap * sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i < cap; i++)
        s[i].kind = -1;
    for (size_t i = 0; i < q->cap; i++) {
        if (q->slots[i].kind < 0)
            continue;
        size_t j = q->slots[i].h & (cap - 1);
        while (s[j].kind >= 0)
            j = (j + 1) & (cap - 1);
        s[j] = q->slots[i];
    }
    free(q->slots);
    q->slots = s;
    q->cap = cap;
    return 0;
}

/* The slot of (table, sid, key), or a free one where it would go. */
static slot_t *find(etl_pg_rows_t *q, uint64_t h, int table, int64_t sid, const char *key,
                    size_t klen)
{
    size_t j = h & (q->cap - 1);
    for (;; j = (j + 1) & (q->cap - 1)) {
        slot_t *s = &q->slots[j];
        if (s->kind < 0)
            return s;
        if (s->h == h && s->sid == sid && table_of(s->kind) == table && s->len == klen &&
            (klen == 0 || memcmp(q->keys.data + s->off, key, klen) == 0))
            return s;
    }
}

static void add_int(etl_buf_t *b, int64_t v)
{
    etl_buf_printf(b, "%s%lld", b->len ? "," : "", (long long)v);
}

/* An array element: NULL, or a quoted string with " and \ escaped. */
static void add_text(etl_buf_t *b, const char *s, size_t n)
{
    if (b->len)
        etl_buf_addc(b, ',');
    if (!s) {
        etl_buf_adds(b, "NULL");
        return;
    }
    etl_buf_addc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            etl_buf_add(b, s + i - run, run);
            run = 0;
            etl_buf_addc(b, '\\');
        }
        run++;
    }
    etl_buf_add(b, s + n - run, run);
    etl_buf_addc(b, '"');
}

int etl_pg_rows_add(etl_pg_rows_t *q, int kind, int64_t sid, const char *key, size_t klen,
                    int64_t a, int64_t b, const char *text)
{
    if (q->n[kind] >= ETL_PG_ROWS_MAX)
        return 1;
    if (q->used * 2 >= q->cap && grow(q) != 0)
        return -1;
    int table = table_of(kind);
    uint64_t h = row_hash(table, sid, key, klen);
    slot_t *s = find(q, h, table, sid, key, klen);
    if (s->kind >= 0 && s->kind != kind)
        return 1;
    if (s->kind < 0) {
        s->h = h;
        s->sid = sid;
        s->off = q->keys.len;
        s->len = klen;
        s->kind = kind;
        etl_buf_add(&q->keys, key, klen);
        q->used++;
    }
    etl_buf_t *c = q->col[kind];
    add_int(&c[0], sid);
    add_text(&c[1], key, klen);
    switch (kind) {
    case ETL_PG_ROW_PUT:
        add_int(&c[2], a);
        add_int(&c[3], b);
        break;
    case ETL_PG_ROW_ECHO:
        add_text(&c[2], text, text ? strlen(text) : 0);
        break;
    case ETL_PG_ROW_SEEN:
        add_int(&c[2], a);
        break;
    default:
        break;
    }
    q->n[kind]++;
    q->total++;
    for (int i = 0; i < ncols[kind]; i++)
        if (c[i].oom)
            return -1;
    return q->keys.oom ? -1 : 0;
}

size_t etl_pg_rows_count(const etl_pg_rows_t *q) { return q->total; }

int etl_pg_rows_params(etl_pg_rows_t *q, int kind, const char **params)
{
    if (!q->n[kind])
        return 0;
    for (int i = 0; i < ncols[kind]; i++) {
        etl_buf_reset(&q->out[i]);
        etl_buf_addc(&q->out[i], '{');
        etl_buf_add(&q->out[i], q->col[kind][i].data, q->col[kind][i].len);
        etl_buf_addc(&q->out[i], '}');
        if (q->out[i].oom)
            return -1;
        params[i] = q->out[i].data;
    }
    return ncols[kind];
}

void etl_pg_rows_reset(etl_pg_rows_t *q)
{
    for (int k = 0; k < ETL_PG_ROW_KINDS; k++) {
        for (int c = 0; c < MAXCOLS; c++)
            etl_buf_reset(&q->col[k][c]);
        q->n[k] = 0;
    }
    q->total = 0;
    for (size_t i = 0; q->used && i < q->cap; i++)
        q->slots[i].kind = -1;
    q->used = 0;
    etl_buf_reset(&q->keys);
}
