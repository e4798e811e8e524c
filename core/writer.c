/*
 * writer.c - the sink side of a stream (the run's main thread): for each
 * batch, the dedup stage (last record of a key wins, the ledger tells
 * created / updated / unchanged), the fk check (records whose parent is not
 * in the sink yet are deferred), the sink write in one transaction, then the
 * state commit: ledger, deferred, dead letters, counts and the checkpoint.
 *
 * The checkpoint rule: a batch's checkpoint is written only after the sink
 * committed the batch, in the same transaction when both are one database.
 * A crash between the two commits re-reads the batch on the next run; the
 * sink's idempotent writes and the ledger make that harmless.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ckey.h"
#include "nest.h"
#include "row.h"
#include "runtime.h"

/* What becomes of each row of a batch. A_ECHO: the other direction wrote
 * it (unchanged, but the ledger learns its hash); A_KEPT: a conflict kept
 * the sink's row (unchanged, the ledger learns the incoming hash). */
enum { A_WRITE = 0, A_SKIP, A_UNCHANGED, A_DEFER, A_DELETE, A_FAIL, A_ECHO, A_KEPT };
enum { C_CREATED = 0, C_UPDATED, C_UNCHANGED };

#define MAX_SINK_RETRIES 5
#define PROGRESS_EVERY_US 250000

struct etl_writer {
    etl_run_t *r;
    etl_srt_t *s;
    etl_end_t *end;
    const etl_sink_ops_t *ops;
    size_t ncols;

    size_t cap;
    etl_buf_t keys;
    size_t *koff;
    uint32_t *klen;
    uint64_t *hash;
    uint8_t *act, *cls, *noecho;
    const char **reason;
    uint32_t *table; /* in-batch key index: row + 1, 0 = empty */
    size_t tcap;

    etl_value_t *wvals;
    etl_outcome_t *wout;
    const char **werr;
    size_t *widx;
    size_t nw;
    etl_value_t *dvals;
    etl_outcome_t *dout;
    const char **derr;
    size_t *didx;
    size_t nd;

    etl_arena_t arena;
    etl_buf_t tmp, json;
    int have_ck;
    etl_value_t ck;
    etl_buf_t ck_buf;
    int pending;             /* write: replace: a checkpoint waits for the swap */
    int64_t deferred_live;
    int64_t t_start, t_last;
    int64_t read_last;
    int ckeyed;              /* append without a key, with a cursor: content keys */
    etl_ckey_t ckey;
};

void etl_srt_fail(etl_srt_t *s, const char *fmt, ...)
{
    if (s->error)
        return; /* the first cause is the one worth reading */
    etl_buf_t b;
    etl_buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    etl_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char *raw = etl_buf_take(&b);
    s->error = etl_redact_dup(raw ? raw : "out of memory");
    free(raw);
    s->status = ST_FAILED;
}

static int value_from_text(const char *t, etl_type_t type, etl_value_t *v, const char **why)
{
    switch (type) {
    case ETL_T_TIMESTAMP:
        *v = etl_ts(0);
        if (etl_ts_parse(t, strlen(t), &v->v.i) != 0) {
            *why = "not a timestamp";
            return -1;
        }
        return 0;
    case ETL_T_INT:
    case ETL_T_BOOL:
        *v = etl_int(0);
        if (type == ETL_T_BOOL) {
            int b;
            if (etl_parse_bool(t, &b) == 0) {
                *v = etl_bool(b);
                return 0;
            }
        }
        if (etl_parse_i64(t, &v->v.i) != 0) {
            *v = etl_text(t, strlen(t));
        }
        return 0;
    case ETL_T_DOUBLE:
        *v = etl_double(strtod(t, NULL));
        return 0;
    default:
        *v = etl_str(type == ETL_T_NULL ? ETL_T_TEXT : type, t, strlen(t));
        return 0;
    }
}

etl_writer_t *etl_writer_new(etl_run_t *r, etl_srt_t *s)
{
    etl_writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->r = r;
    w->s = s;
    w->end = &r->ends[s->dir == ETL_DIR_FORWARD ? 1 : 0];
    w->ops = w->end->lib->desc->sink;
    w->ncols = etl_schema_ncols(s->out);
    etl_buf_init(&w->keys);
    etl_buf_init(&w->tmp);
    etl_buf_init(&w->json);
    etl_buf_init(&w->ck_buf);
    w->deferred_live = s->deferred_before;
    w->t_start = w->t_last = etl_mono_us();
    etl_ckey_init(&w->ckey);
    /* rows re-read at the checkpoint's boundary must not be appended again
     * (not for the second pass of a keyless replace stream, appending to the
     * table it swapped in: its next run replaces it whole) */
    w->ckeyed = !s->nkey && s->cfg->write == ETL_WRITE_APPEND && s->cursor_out >= 0;
    /* the stored checkpoint, so a batch never moves it backwards */
    if (s->ckpt.cursor && s->ckpt.type) {
        int t = etl_type_from_name(s->ckpt.type);
        const char *why;
        etl_value_t v;
        if (t > 0 && value_from_text(s->ckpt.cursor, (etl_type_t)t, &v, &why) == 0) {
            w->ck = v;
            if (v.type >= ETL_T_NUMERIC && v.type <= ETL_T_JSON) {
                etl_buf_adds(&w->ck_buf, s->ckpt.cursor);
                w->ck.v.s = w->ck_buf.data;
            }
            w->have_ck = 1;
        }
    }
    return w;
}

void etl_writer_free(etl_writer_t *w)
{
    if (!w)
        return;
    etl_buf_free(&w->keys);
    etl_buf_free(&w->tmp);
    etl_buf_free(&w->json);
    etl_buf_free(&w->ck_buf);
    free(w->koff);
    free(w->klen);
    free(w->hash);
    free(w->act);
    free(w->cls);
    free(w->noecho);
    free(w->reason);
    free(w->table);
    free(w->wvals);
    free(w->wout);
    free(w->werr);
    free(w->widx);
    free(w->dvals);
    free(w->dout);
    free(w->derr);
    free(w->didx);
    etl_arena_free(&w->arena);
    etl_ckey_free(&w->ckey);
    free(w);
}

static int reserve(etl_writer_t *w, size_t n)
{
    if (n <= w->cap)
        return 0;
    size_t cap = n * 2, nc = w->ncols ? w->ncols : 1;
    size_t nk = etl_schema_ncols(w->s->keys) ? etl_schema_ncols(w->s->keys) : 1;
#define GROW(p, count)                                                                             \
    do {                                                                                           \
        void *q_ = realloc((p), (count) * sizeof *(p));                                            \
        if (!q_)                                                                                   \
            return -1;                                                                             \
        (p) = q_;                                                                                  \
    } while (0)
    GROW(w->koff, cap);
    GROW(w->klen, cap);
    GROW(w->hash, cap);
    GROW(w->act, cap);
    GROW(w->cls, cap);
    GROW(w->noecho, cap);
    GROW(w->reason, cap);
    GROW(w->wvals, cap * nc);
    GROW(w->wout, cap);
    GROW(w->werr, cap);
    GROW(w->widx, cap);
    GROW(w->dvals, cap * nk);
    GROW(w->dout, cap);
    GROW(w->derr, cap);
    GROW(w->didx, cap);
#undef GROW
    w->cap = cap;
    size_t tcap = 16;
    while (tcap < cap * 2)
        tcap *= 2;
    uint32_t *t = realloc(w->table, tcap * sizeof *t);
    if (!t)
        return -1;
    w->table = t;
    w->tcap = tcap;
    return 0;
}

static const char *key_of(etl_writer_t *w, size_t i) { return w->keys.data + w->koff[i]; }

/* In-batch key index: returns the earlier row holding the same key, or -1,
 * and records row i as the key's holder. */
static long index_key(etl_writer_t *w, size_t i)
{
    uint64_t h = etl_hash_bytes(key_of(w, i), w->klen[i], 7);
    size_t mask = w->tcap - 1, slot = (size_t)h & mask;
    while (w->table[slot]) {
        size_t j = w->table[slot] - 1;
        if (w->klen[j] == w->klen[i] && memcmp(key_of(w, j), key_of(w, i), w->klen[i]) == 0) {
            w->table[slot] = (uint32_t)(i + 1);
            return (long)j;
        }
        slot = (slot + 1) & mask;
    }
    w->table[slot] = (uint32_t)(i + 1);
    return -1;
}

static int in_batch(etl_writer_t *w, const char *key, size_t klen)
{
    uint64_t h = etl_hash_bytes(key, klen, 7);
    size_t mask = w->tcap - 1, slot = (size_t)h & mask;
    while (w->table[slot]) {
        size_t j = w->table[slot] - 1;
        if (w->klen[j] == klen && memcmp(key_of(w, j), key, klen) == 0)
            return w->act[j] == A_WRITE || w->act[j] == A_UNCHANGED;
        slot = (slot + 1) & mask;
    }
    return 0;
}

static const char *adup(etl_writer_t *w, const char *s)
{
    const char *p = etl_arena_dup(&w->arena, s, strlen(s));
    return p ? p : "out of memory";
}

/* The fk check of row i; sets act/reason when a parent is missing. */
static int check_fks(etl_writer_t *w, size_t i, const etl_value_t *row)
{
    etl_srt_t *s = w->s;
    for (size_t k = 0; k < s->nfk; k++) {
        const etl_fk_rt_t *f = &s->fk[k];
        if (s->ident) {
            /* identity translation checked the parents that take part in it */
            int pi = etl_pipeline_stream(w->r->p, f->parent);
            if (pi >= 0 && w->r->srt[(size_t)pi * 2 + (s->dir == ETL_DIR_REVERSE)].ident)
                continue;
        }
        const etl_value_t *v = &row[f->col];
        if (v->type == ETL_T_NULL)
            continue;
        char tmp[64];
        const char *t;
        size_t n = etl_value_text(v, tmp, sizeof tmp, &t);
        int found = etl_state_ledger_get(w->r->state, f->parent_sid, t, n, &(uint64_t){0});
        if (found < 0) {
            etl_srt_fail(s, "%s", etl_state_error(w->r->state));
            return -1;
        }
        if (!found && strcmp(f->parent, s->cfg->name) == 0)
            found = in_batch(w, t, n);
        if (!found) {
            etl_buf_reset(&w->tmp);
            etl_buf_printf(&w->tmp, "%s->%s[%.*s]", f->column, f->parent, (int)n, t);
            w->act[i] = A_DEFER;
            w->reason[i] = adup(w, w->tmp.data);
            return 0;
        }
    }
    return 0;
}

/* Key rows for remove(): the key text split back into typed values. */
static int key_row(etl_writer_t *w, const char *key, size_t klen, etl_value_t *out)
{
    static const int cols[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    etl_srt_t *s = w->s;
    if (klen && key[0] == '~')
        return -1; /* a fallback key names no sink row */
    return etl_key_values(key, klen, s->keys, cols, etl_schema_ncols(s->keys), &w->arena, out);
}

/* ------------------------------------------------------------ identity */

/* A random (version 4) UUID in the arena. */
static const char *new_uuid(etl_writer_t *w)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n <= 0)
            return NULL;
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char t[37];
    snprintf(t, sizeof t,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return etl_arena_dup(&w->arena, t, 36);
}

/*
 * Identity translation of a batch, before keys are computed. Coming back
 * (reverse), a row born at the sink: end without a sink_key gets a new UUID,
 * written back there first (so a crash cannot lose it). Then every fk value
 * is translated through the parent's table at the sink: end (sink_key <->
 * sink_pk); a row whose parent is not there yet is deferred untouched.
 */
static int translate(etl_writer_t *w, etl_batch_t *b)
{
    etl_srt_t *s = w->s;
    etl_run_t *r = w->r;
    etl_end_t *pend = &r->ends[1];
    const etl_sink_ops_t *ops = pend->lib->desc->sink;
    const etl_identity_cfg_t *id = s->idcfg;
    size_t n = b->nrows, nc = w->ncols;
    int fwd = s->dir == ETL_DIR_FORWARD;
    if (!fwd && s->ident_pk >= 0) {
        for (size_t i = 0; i < n; i++) {
            etl_value_t *row = b->values + i * nc;
            if (b->op[i] != ETL_OP_UPSERT || row[s->ident_key].type != ETL_T_NULL)
                continue;
            const char *u = new_uuid(w);
            if (!u) {
                etl_srt_fail(s, "cannot make a new id: %s", strerror(errno));
                return -1;
            }
            etl_value_t v = etl_text(u, 36);
            pend->sink_ctx->err[0] = '\0';
            if (!r->o->dry_run &&
                ops->assign(pend->sink, pend->sink_ctx, s->ident_table, id->sink_pk,
                            &row[s->ident_pk], id->sink_key, &v) != ETL_OK) {
                etl_srt_fail(s, "writing the new id of %s back: %s", s->ident_table,
                             pend->sink_ctx->err);
                return -1;
            }
            row[s->ident_key] = v;
        }
    }
    etl_value_t *in = calloc(n + 1, sizeof *in), *out = calloc(n + 1, sizeof *out);
    etl_value_t *done = calloc(n * s->nfk + 1, sizeof *done);
    int rc = 0;
    if (!in || !out || !done) {
        etl_srt_fail(s, "out of memory");
        rc = -1;
        goto end;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < s->nfk; k++)
            done[i * s->nfk + k] = b->values[i * nc + (size_t)s->fk[k].col];
    for (size_t k = 0; k < s->nfk; k++) {
        const etl_fk_rt_t *f = &s->fk[k];
        int pi = etl_pipeline_stream(r->p, f->parent);
        if (pi < 0 || !r->srt[(size_t)pi * 2 + !fwd].ident)
            continue; /* the parent keeps its own ids: nothing to translate */
        for (size_t i = 0; i < n; i++)
            in[i] = w->act[i] == A_WRITE ? b->values[i * nc + (size_t)f->col] : etl_null();
        pend->sink_ctx->err[0] = '\0';
        if (ops->lookup(pend->sink, pend->sink_ctx, f->parent_table,
                        fwd ? id->sink_key : id->sink_pk, fwd ? id->sink_pk : id->sink_key, in,
                        n, out) != ETL_OK) {
            etl_srt_fail(s, "looking up %s in %s: %s", f->column, f->parent_table,
                         pend->sink_ctx->err);
            rc = -1;
            goto end;
        }
        for (size_t i = 0; i < n; i++) {
            done[i * s->nfk + k] = in[i];
            if (in[i].type == ETL_T_NULL || w->act[i] != A_WRITE)
                continue;
            if (out[i].type == ETL_T_NULL) {
                char tmp[64];
                const char *t;
                size_t l = etl_value_text(&in[i], tmp, sizeof tmp, &t);
                etl_buf_reset(&w->tmp);
                etl_buf_printf(&w->tmp, "%s->%s[%.*s]", f->column, f->parent, (int)l, t);
                w->act[i] = A_DEFER;
                w->reason[i] = adup(w, w->tmp.data);
            } else if (etl_arena_value(&w->arena, &done[i * s->nfk + k], &out[i]) != 0) {
                etl_srt_fail(s, "out of memory");
                rc = -1;
                goto end;
            }
        }
    }
    /* all parents found: the row takes the translated values */
    for (size_t i = 0; i < n; i++) {
        if (w->act[i] != A_WRITE)
            continue;
        for (size_t k = 0; k < s->nfk; k++)
            b->values[i * nc + (size_t)s->fk[k].col] = done[i * s->nfk + k];
    }
end:
    free(in);
    free(out);
    free(done);
    return rc;
}

/* Whether a cursor read back equals the one an echo mark remembers:
 * as instants when both are times (the two ends spell them differently). */
static int same_cursor(const etl_value_t *v, const char *mark)
{
    char tmp[64];
    const char *t;
    size_t n = etl_value_text(v, tmp, sizeof tmp, &t);
    int64_t a, b;
    if (v->type == ETL_T_TIMESTAMP)
        a = v->v.i;
    else if (etl_ts_parse(t, n, &a) != 0)
        return strlen(mark) == n && memcmp(mark, t, n) == 0;
    return etl_ts_parse(mark, strlen(mark), &b) == 0 && a == b;
}

/* ------------------------------------------------------------ conflict: lua */

/* The keys resolve() rewrote going forward in this run: coming back they
 * are written as they are, not resolved a second time. */
typedef struct etl_keyset {
    char **slot;
    size_t cap, n;
} etl_keyset_t;

static int keyset_has(const etl_keyset_t *k, const char *key, size_t len)
{
    if (!k || !k->cap)
        return 0;
    size_t i = (size_t)etl_hash_bytes(key, len, 3) & (k->cap - 1);
    for (; k->slot[i]; i = (i + 1) & (k->cap - 1))
        if (strlen(k->slot[i]) == len && memcmp(k->slot[i], key, len) == 0)
            return 1;
    return 0;
}

static int keyset_add(etl_keyset_t *k, const char *key, size_t len)
{
    if (keyset_has(k, key, len))
        return 0;
    if ((k->n + 1) * 2 > k->cap) {
        etl_keyset_t g = {calloc(k->cap ? k->cap * 2 : 64, sizeof(char *)), k->cap ? k->cap * 2 : 64,
                          0};
        if (!g.slot)
            return -1;
        for (size_t i = 0; i < k->cap; i++) {
            if (!k->slot[i])
                continue;
            size_t j = (size_t)etl_hash_bytes(k->slot[i], strlen(k->slot[i]), 3) & (g.cap - 1);
            while (g.slot[j])
                j = (j + 1) & (g.cap - 1);
            g.slot[j] = k->slot[i];
            g.n++;
        }
        free(k->slot);
        *k = g;
    }
    size_t i = (size_t)etl_hash_bytes(key, len, 3) & (k->cap - 1);
    while (k->slot[i])
        i = (i + 1) & (k->cap - 1);
    if (!(k->slot[i] = etl_strndup(key, len)))
        return -1;
    k->n++;
    return 0;
}

void etl_keyset_free(etl_keyset_t *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->cap; i++)
        free(k->slot[i]);
    free(k->slot);
    free(k);
}

typedef struct resolve_io {
    etl_writer_t *w;
    etl_batch_t *b;
    size_t row;
} resolve_io_t;

static int resolve_out(void *arg, const char *stream, const etl_value_t *row)
{
    resolve_io_t *io = arg;
    if (stream)
        return -1;
    size_t nc = io->w->ncols;
    etl_value_t *dst = io->b->values + io->row * nc;
    for (size_t c = 0; c < nc; c++)
        if (etl_arena_value(&io->b->arena, &dst[c], &row[c]) != 0)
            return -1;
    return 0;
}

static const etl_schema_t *resolve_schema(void *arg, const char *stream)
{
    resolve_io_t *io = arg;
    return stream ? NULL : io->w->s->out;
}

/* conflict: lua: the sink's rows for the batch's keys, and resolve() for
 * each row that meets one. */
static int resolve_conflicts(etl_writer_t *w, etl_batch_t *b)
{
    etl_srt_t *s = w->s;
    etl_run_t *r = w->r;
    size_t n = b->nrows, nc = w->ncols, nk = s->nkey, m = 0;
    if (!w->ops->fetch) {
        etl_srt_fail(s, "conflict: lua needs plugin %s to fetch rows", w->end->lib->desc->name);
        return -1;
    }
    etl_value_t *keys = calloc(n * nk + 1, sizeof *keys), *have = calloc(n * nc + 1, sizeof *have);
    size_t *which = calloc(n + 1, sizeof *which);
    unsigned char *found = calloc(n + 1, 1);
    etl_outcome_t *oc = calloc(n + 1, sizeof *oc);
    int rc = 0;
    if (!keys || !have || !which || !found || !oc) {
        etl_srt_fail(s, "out of memory");
        rc = -1;
        goto end;
    }
    etl_srt_t *fwd = &r->srt[s->index * 2];
    for (size_t i = 0; i < n; i++) {
        if (w->act[i] != A_WRITE || w->cls[i] == C_CREATED)
            continue;
        if (s->dir == ETL_DIR_REVERSE && keyset_has(fwd->resolved, key_of(w, i), w->klen[i]))
            continue; /* resolved going forward: this is that row coming back */
        for (size_t k = 0; k < nk; k++)
            keys[m * nk + k] = b->values[i * nc + (size_t)s->key[k]];
        which[m++] = i;
    }
    if (!m)
        goto end;
    etl_logf(r->log, ETL_LOG_DEBUG, "run", s->cfg->name, "conflict: lua: %zu row(s) to check", m);
    etl_rows_t kr = {s->keys, m, keys, oc, NULL};
    w->end->sink_ctx->err[0] = '\0';
    if (w->ops->fetch(w->end->sink, w->end->sink_ctx, s->sink_stream, &kr, have, found) !=
        ETL_OK) {
        etl_srt_fail(s, "fetching rows for conflict: lua: %s", w->end->sink_ctx->err);
        rc = -1;
        goto end;
    }
    for (size_t j = 0; j < m; j++) {
        if (!found[j])
            continue;
        size_t i = which[j];
        resolve_io_t io = {w, b, i};
        etl_lua_io_t lio = {resolve_out, resolve_schema, &io};
        int keep = 0;
        etl_buf_reset(&w->tmp);
        /* the incoming row is copied: resolve may replace it in place */
        etl_value_t *incoming = etl_arena_alloc(&w->arena, nc * sizeof *incoming);
        if (!incoming) {
            etl_srt_fail(s, "out of memory");
            rc = -1;
            goto end;
        }
        memcpy(incoming, b->values + i * nc, nc * sizeof *incoming);
        if (etl_lua_resolve(r->lua_w, s->rs, s->cfg->name, s->out, incoming, have + j * nc, &lio,
                            &keep, &w->tmp) != 0) {
            w->act[i] = A_FAIL;
            w->reason[i] = adup(w, w->tmp.data ? w->tmp.data : "resolve failed");
        } else if (keep) {
            w->act[i] = A_KEPT;
        } else if (s->dir == ETL_DIR_FORWARD && s->sid_other) {
            /* the resolved row must reach the other end too: no echo mark */
            w->noecho[i] = 1;
            if (!fwd->resolved && !(fwd->resolved = calloc(1, sizeof *fwd->resolved))) {
                etl_srt_fail(s, "out of memory");
                rc = -1;
                goto end;
            }
            if (keyset_add(fwd->resolved, key_of(w, i), w->klen[i]) != 0) {
                etl_srt_fail(s, "out of memory");
                rc = -1;
                goto end;
            }
        }
    }
end:
    free(keys);
    free(have);
    free(which);
    free(found);
    free(oc);
    return rc;
}

/* ------------------------------------------------------------ sink calls */

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int state_writes(etl_writer_t *w, etl_batch_t *b, const etl_counts_t *delta, int move_ck);

/* The batch's counts once the sink has answered: the ledger decides
 * created / updated / unchanged (so a batch the sink committed just before a
 * crash still counts as created when re-read); the sink decides what failed
 * and what it refused to overwrite. */
static void outcome_counts(etl_writer_t *w, const etl_counts_t *base, etl_counts_t *out)
{
    *out = *base;
    for (size_t k = 0; k < w->nw; k++) {
        switch (w->wout[k]) {
        case ETL_OUT_FAILED: out->failed++; break;
        case ETL_OUT_SKIPPED: out->unchanged++; break;
        default:
            switch (w->cls[w->widx[k]]) {
            case C_CREATED: out->created++; break;
            case C_UPDATED: out->updated++; break;
            default: out->unchanged++; break;
            }
        }
    }
    for (size_t k = 0; k < w->nd; k++) {
        if (w->dout[k] == ETL_OUT_FAILED)
            out->failed++;
        else if (w->dout[k] == ETL_OUT_DELETED)
            out->deleted++;
    }
}

/* One attempt: begin, write, remove, (state when shared), commit. */
static etl_status_t sink_attempt(etl_writer_t *w, etl_batch_t *b, const etl_counts_t *base,
                                 etl_counts_t *delta, int move_ck, etl_rows_t *wr, etl_rows_t *dr)
{
    etl_end_t *e = w->end;
    etl_ctx_t *ctx = e->sink_ctx;
    void *self = e->sink;
    etl_status_t st = w->ops->begin(self, ctx);
    if (st != ETL_OK)
        return st;
    if (wr->nrows && (st = w->ops->write(self, ctx, w->s->sink_stream, wr)) != ETL_OK)
        goto rollback;
    if (dr->nrows) {
        if (!w->ops->remove) {
            st = etl_fail(ctx, ETL_ERR_CONFIG, "plugin %s cannot delete rows",
                          e->lib->desc->name);
            goto rollback;
        }
        if ((st = w->ops->remove(self, ctx, w->s->sink_stream, dr)) != ETL_OK)
            goto rollback;
    }
    outcome_counts(w, base, delta);
    if (w->r->o->dry_run) {
        w->ops->rollback(self, ctx);
        return ETL_OK;
    }
    if (w->r->errors + delta->failed > w->r->p->max_errors)
        move_ck = 0; /* over the error budget: the batch stays to be read again */
    if (w->r->shared_db && state_writes(w, b, delta, move_ck) != 0) {
        st = etl_fail(ctx, ETL_ERR_IO, "%s", etl_state_error(w->r->state));
        goto rollback;
    }
    return w->ops->commit(self, ctx);
rollback:
    w->ops->rollback(self, ctx);
    return st;
}

static int sink_write(etl_writer_t *w, etl_batch_t *b, const etl_counts_t *base,
                      etl_counts_t *delta, int move_ck, etl_rows_t *wr, etl_rows_t *dr)
{
    etl_ctx_t *ctx = w->end->sink_ctx;
    for (int attempt = 0;; attempt++) {
        for (size_t i = 0; i < wr->nrows; i++)
            wr->outcome[i] = ETL_OUT_PENDING, w->werr[i] = NULL;
        for (size_t i = 0; i < dr->nrows; i++)
            dr->outcome[i] = ETL_OUT_PENDING, w->derr[i] = NULL;
        ctx->err[0] = '\0';
        etl_status_t st = sink_attempt(w, b, base, delta, move_ck, wr, dr);
        if (st == ETL_OK)
            return 0;
        if (st != ETL_ERR_RETRY || attempt + 1 >= MAX_SINK_RETRIES ||
            (w->r->cancel && atomic_load(w->r->cancel))) {
            etl_srt_fail(w->s, "sink %s, table %s: %s", w->end->lib->desc->name, w->s->table,
                         ctx->err[0] ? ctx->err : etl_status_name(st));
            return -1;
        }
        etl_logf(w->r->log, ETL_LOG_WARN, "run", w->s->cfg->name,
                 "sink %s: %s; retrying the batch (%d/%d)", w->end->lib->desc->name, ctx->err,
                 attempt + 1, MAX_SINK_RETRIES - 1);
        sleep_ms(200LL << attempt);
    }
}

/* ------------------------------------------------------------ state */

static int move_checkpoint(etl_writer_t *w, const etl_value_t *ck, const char **text,
                           char *buf, size_t n)
{
    if (w->have_ck && w->ck.type == ck->type && etl_cursor_cmp(ck, &w->ck) <= 0)
        return 0;
    size_t l = etl_value_text(ck, buf, n, text);
    if (*text != buf) {
        etl_buf_reset(&w->tmp);
        etl_buf_add(&w->tmp, *text, l);
        *text = w->tmp.data;
    }
    return 1;
}

static void remember_checkpoint(etl_writer_t *w, const etl_value_t *ck)
{
    if (w->have_ck && w->ck.type == ck->type && etl_cursor_cmp(ck, &w->ck) <= 0)
        return;
    w->ck = *ck;
    if (ck->type >= ETL_T_NUMERIC && ck->type <= ETL_T_JSON) {
        etl_buf_reset(&w->ck_buf);
        etl_buf_add(&w->ck_buf, ck->v.s, ck->len);
        w->ck.v.s = w->ck_buf.data;
    }
    w->have_ck = 1;
}

/* A scan that was resumed moves the checkpoint no further than its first
 * part read, as rows changed between the parts may have been passed by. */
static void bound_by_first_part(const etl_srt_t *s, etl_batch_t *b)
{
    if (s->resumed && s->resume_max.type != ETL_T_NULL && b->has_ckpt &&
        s->resume_max.type == b->ckpt.type && etl_cursor_cmp(&s->resume_max, &b->ckpt) < 0)
        b->ckpt = s->resume_max;
}

/* Keeps a checkpoint in s->held_* for run.c to move later. */
static int hold(etl_srt_t *s, const char *text, size_t n, etl_type_t type)
{
    char *ck = etl_strndup(text, n), *tname = etl_strdup(etl_type_name(type));
    if (!ck || !tname) {
        free(ck);
        free(tname);
        return -1;
    }
    free(s->held_ck);
    free(s->held_type);
    s->held_ck = ck;
    s->held_type = tname;
    s->held_full = s->full;
    return 0;
}

/* A stream whose transform emitted rows into other streams: its checkpoint
 * waits in s->held_* until those rows are written (run.c moves it), and its
 * resume point stays where it was, so a crash in between reads the emitting
 * rows, and emits them, again. Only the counts go to the state store. */
static int hold_checkpoint(etl_writer_t *w, etl_batch_t *b, int64_t records)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    if (s->by_key && b->end && b->status == ETL_OK) {
        s->held_clear_resume = s->resume || s->ckpt.resume_key;
        bound_by_first_part(s, b);
    }
    if (b->has_ckpt && s->write != ETL_WRITE_REPLACE) {
        char buf[64];
        const char *text;
        if (move_checkpoint(w, &b->ckpt, &text, buf, sizeof buf) &&
            hold(s, text, strlen(text), b->ckpt.type) != 0)
            return -1;
    }
    if (records || b->end)
        return etl_state_checkpoint_put(r->state, r->pkey, s->cfg->name, s->dir_name, NULL, NULL,
                                        records, s->full);
    return 0;
}

static int dead_letter(etl_writer_t *w, const char *key, const char *error, const char *json)
{
    etl_run_t *r = w->r;
    char *clean = etl_redact_dup(error);
    int rc = etl_state_dead_letter(r->state, r->run_id, r->pkey, w->s->cfg->name, w->s->dir_name,
                                   key, clean ? clean : error, json);
    free(clean);
    return rc;
}

static int state_writes(etl_writer_t *w, etl_batch_t *b, const etl_counts_t *delta, int move_ck)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    etl_state_t *st = r->state;
    size_t nc = w->ncols;
    for (size_t k = 0; k < w->nw; k++) {
        size_t i = w->widx[k];
        const char *key = key_of(w, i);
        if (w->wout[k] == ETL_OUT_FAILED) {
            etl_buf_reset(&w->json);
            etl_row_json(&w->json, s->out, b->values + i * nc);
            if (dead_letter(w, s->nkey ? key : NULL, w->werr[k] ? w->werr[k] : "write failed",
                            w->json.data))
                return -1;
            /* the source still has it: a full scan must not delete it */
            if (s->detect_deletes && s->nkey &&
                etl_state_ledger_seen(st, s->sid, key, w->klen[i], s->scan_id))
                return -1;
            continue;
        }
        if (!s->nkey && !w->ckeyed)
            continue;
        /* (content keys of a source that is not in cursor order may meet
         * twice in a batch: put, never add, for them) */
        if ((w->cls[i] == C_CREATED && !w->ckeyed
                 ? etl_state_ledger_add(st, s->sid, key, w->klen[i], w->hash[i], s->scan_id)
                 : etl_state_ledger_put(st, s->sid, key, w->klen[i], w->hash[i], s->scan_id)))
            return -1;
        if (w->deferred_live && etl_state_deferred_del(st, s->sid, key, w->klen[i]))
            return -1;
        /* direction: both: what was written here must not come back as a change */
        if (s->sid_other && !w->noecho[i] &&
            (w->wout[k] == ETL_OUT_CREATED || w->wout[k] == ETL_OUT_UPDATED)) {
            char tmp[64];
            const char *t = "";
            size_t l = 0;
            if (s->cursor_out >= 0)
                l = etl_value_text(&b->values[i * nc + (size_t)s->cursor_out], tmp, sizeof tmp, &t);
            etl_buf_reset(&w->tmp);
            etl_buf_add(&w->tmp, t, l);
            if (etl_state_echo_put(st, s->sid_other, key, w->klen[i],
                                   w->tmp.data ? w->tmp.data : ""))
                return -1;
        }
    }
    for (size_t k = 0; k < w->nd; k++) {
        size_t i = w->didx[k];
        if (w->dout[k] == ETL_OUT_FAILED) {
            if (dead_letter(w, key_of(w, i), w->derr[k] ? w->derr[k] : "delete failed", NULL))
                return -1;
        } else if (s->cfg->deletes == ETL_DELETES_SOFT) {
            /* the row stays in the sink: the key stays known, so children
             * that point at it are written, and it is not deleted again */
            if (etl_state_ledger_put(st, s->sid, key_of(w, i), w->klen[i], ETL_LEDGER_TOMBSTONE,
                                     s->scan_id))
                return -1;
        } else if (etl_state_ledger_del(st, s->sid, key_of(w, i), w->klen[i])) {
            return -1;
        }
    }
    for (size_t i = 0; i < b->nrows; i++) {
        const char *key = key_of(w, i);
        switch (w->act[i]) {
        case A_ECHO:
        case A_KEPT:
            if (etl_state_ledger_put(st, s->sid, key, w->klen[i], w->hash[i], s->scan_id))
                return -1;
            /* fall through */
        case A_UNCHANGED:
            if (s->detect_deletes && etl_state_ledger_seen(st, s->sid, key, w->klen[i], s->scan_id))
                return -1;
            if (w->deferred_live && etl_state_deferred_del(st, s->sid, key, w->klen[i]))
                return -1;
            break;
        case A_DEFER:
            etl_buf_reset(&w->json);
            etl_row_json(&w->json, s->out, b->values + i * nc);
            if (etl_state_deferred_put(st, s->sid, key, w->klen[i], w->reason[i], w->json.data))
                return -1;
            if (s->detect_deletes && etl_state_ledger_seen(st, s->sid, key, w->klen[i], s->scan_id))
                return -1;
            break;
        case A_FAIL:
            etl_buf_reset(&w->json);
            etl_row_json(&w->json, s->out, b->values + i * nc);
            if (dead_letter(w, NULL, w->reason[i], w->json.data))
                return -1;
            break;
        default:
            break;
        }
    }
    for (size_t k = 0; k < b->nrejects; k++) {
        const etl_reject_t *rj = &b->rejects[k];
        if (rj->error && dead_letter(w, rj->key, rj->error, rj->record))
            return -1;
        /* a failed or dropped row is still in the source: not a delete */
        if (s->detect_deletes && rj->key &&
            etl_state_ledger_seen(st, s->sid, rj->key, strlen(rj->key), s->scan_id))
            return -1;
    }
    if (etl_state_counts_add(st, r->run_id, s->cfg->name, s->dir_name, delta))
        return -1;
    int64_t records = delta->created + delta->updated + delta->deleted;
    if (move_ck && atomic_load(&s->emitted))
        return hold_checkpoint(w, b, records);
    if (move_ck && s->resume && b->has_resume && !(b->end && b->status == ETL_OK)) {
        /* where this key-ordered scan resumes after a crash, and (in its
         * first part) the greatest cursor read, which bounds the checkpoint */
        static const int cols[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        char mbuf[64];
        const char *mtext = NULL, *mtype = NULL;
        etl_buf_reset(&w->tmp);
        if (s->nrkey > 16 || etl_row_key(&w->tmp, b->resume, cols, s->nrkey) != 0)
            return 0; /* an unusable key: the scan will start over */
        char *key = etl_strdup(w->tmp.data ? w->tmp.data : "");
        const etl_value_t *mx = s->resumed ? &s->resume_max : b->has_smax ? &b->smax : NULL;
        if (mx && mx->type != ETL_T_NULL) {
            size_t ml = etl_value_text(mx, mbuf, sizeof mbuf, &mtext);
            etl_buf_reset(&w->tmp);
            etl_buf_add(&w->tmp, mtext, ml);
            mtext = w->tmp.data;
            mtype = etl_type_name(mx->type);
        }
        int rc = key ? etl_state_resume_put(st, r->pkey, s->cfg->name, s->dir_name, key, mtext,
                                            mtype, s->scan_id)
                     : -1;
        free(key);
        if (rc)
            return -1;
    }
    if (move_ck && s->by_key && b->end && b->status == ETL_OK) {
        /* the scan is complete: no resume point; a scan that was resumed
         * moves the checkpoint no further than its first part read, as rows
         * changed between the parts may have been passed by */
        if ((s->resume || s->ckpt.resume_key) &&
            etl_state_resume_put(st, r->pkey, s->cfg->name, s->dir_name, NULL, NULL, NULL, 0))
            return -1;
        bound_by_first_part(s, b);
    }
    if (move_ck && b->has_ckpt && s->write != ETL_WRITE_REPLACE) {
        char buf[64];
        const char *text;
        if (move_checkpoint(w, &b->ckpt, &text, buf, sizeof buf))
            return etl_state_checkpoint_put(st, r->pkey, s->cfg->name, s->dir_name, text,
                                            etl_type_name(b->ckpt.type), records, s->full);
    }
    if (records || (b->end && move_ck))
        return etl_state_checkpoint_put(st, r->pkey, s->cfg->name, s->dir_name, NULL, NULL,
                                        records, s->full);
    return 0;
}

/* ------------------------------------------------------------ batches */

/* The fk check and the ledger's verdict for each row still to be written. */
static int classify(etl_writer_t *w, etl_batch_t *b)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    size_t n = b->nrows, nc = w->ncols;
    int keyed = s->nkey > 0 || w->ckeyed;
    /* a first scan in key order whose keys only grew: nothing of it can be
     * in the ledger yet, every key is new to it */
    int fresh = s->fresh && b->ordered && !s->resumed;
    for (size_t i = 0; i < n; i++) {
        if (w->act[i] != A_WRITE)
            continue;
        const etl_value_t *row = b->values + i * nc;
        if (s->nfk && check_fks(w, i, row) != 0)
            return -1;
        if (w->act[i] != A_WRITE || !keyed || fresh)
            continue;
        uint64_t h;
        int found = etl_state_ledger_get(r->state, s->sid, key_of(w, i), w->klen[i], &h);
        if (found < 0) {
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            return -1;
        }
        if (found && h == ETL_LEDGER_ECHO) {
            /* an echo mark: unchanged if this is what the other direction wrote */
            char *mark = NULL;
            if (etl_state_echo_get(r->state, s->sid, key_of(w, i), w->klen[i], &mark) < 0) {
                etl_srt_fail(s, "%s", etl_state_error(r->state));
                return -1;
            }
            int echo = mark && (s->cursor_out < 0 || same_cursor(&row[s->cursor_out], mark));
            free(mark);
            w->cls[i] = echo ? C_UNCHANGED : C_UPDATED;
            if (echo && s->write != ETL_WRITE_REPLACE)
                w->act[i] = A_ECHO;
            continue;
        }
        w->cls[i] = !found ? C_CREATED : h == w->hash[i] ? C_UNCHANGED : C_UPDATED;
        if (w->cls[i] == C_UNCHANGED && s->write != ETL_WRITE_REPLACE)
            w->act[i] = A_UNCHANGED;
    }
    return 0;
}



int etl_writer_batch(etl_writer_t *w, etl_batch_t *b, int retry_deferred)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    size_t n = b->nrows, nc = w->ncols;
    etl_counts_t delta = {0};
    delta.read = retry_deferred ? 0 : b->read;
    etl_arena_reset(&w->arena);
    etl_buf_reset(&w->keys);
    if (reserve(w, n + 1) != 0) {
        etl_srt_fail(s, "out of memory");
        return -1;
    }
    memset(w->table, 0, w->tcap * sizeof *w->table);
    int keyed = s->nkey > 0;

    for (size_t i = 0; i < n; i++) {
        w->act[i] = b->op[i] == ETL_OP_DELETE ? A_DELETE : A_WRITE;
        w->cls[i] = C_CREATED;
        w->noecho[i] = 0;
        w->reason[i] = NULL;
    }
    /* 0. identity translation, nested children */
    if (s->ident && translate(w, b) != 0)
        return -1;
    if (s->nest) {
        char nerr[ETL_ERRLEN];
        if (etl_nest_attach(s, b, nerr, sizeof nerr) != 0) {
            etl_srt_fail(s, "stream %s: %s", s->cfg->name, nerr);
            return -1;
        }
    }

    /* 1. keys, hashes, in-batch dedup */
    for (size_t i = 0; i < n; i++) {
        const etl_value_t *row = b->values + i * nc;
        w->koff[i] = w->keys.len;
        if (keyed && etl_row_key(&w->keys, row, s->key, s->nkey) != 0) {
            if (s->nfb) {
                etl_buf_addc(&w->keys, '~'); /* fallback keys never meet primary ones */
                etl_row_key(&w->keys, row, s->fb, s->nfb);
            } else if (w->act[i] == A_WRITE || w->act[i] == A_DELETE) {
                w->act[i] = A_FAIL;
                etl_buf_reset(&w->tmp);
                etl_buf_printf(&w->tmp, "stream %s: record has a NULL key (%s)", s->cfg->name,
                               etl_schema_col(s->out, (size_t)s->key[0])->name);
                w->reason[i] = adup(w, w->tmp.data);
            }
        }
        w->hash[i] = etl_row_hash(row, nc, s->skip);
        if (w->hash[i] <= ETL_LEDGER_TOMBSTONE)
            w->hash[i] = 2; /* 0 and 1 mean an echo and a soft delete in the ledger */
        if (w->ckeyed) {
            char tmp[64];
            const char *t = "";
            size_t l = etl_value_text(&row[s->cursor_out], tmp, sizeof tmp, &t);
            if (etl_ckey_next(&w->ckey, w->hash[i], t, l, &w->keys) != 0) {
                etl_srt_fail(s, "out of memory");
                return -1;
            }
        }
        w->klen[i] = (uint32_t)(w->keys.len - w->koff[i]);
        etl_buf_addc(&w->keys, '\0');
        if (w->act[i] == A_DELETE && (s->cfg->deletes == ETL_DELETES_IGNORE || !keyed))
            w->act[i] = A_SKIP;
    }
    if (w->keys.oom) {
        etl_srt_fail(s, "out of memory");
        return -1;
    }
    if (keyed) {
        for (size_t i = 0; i < n; i++) {
            if (w->act[i] == A_FAIL)
                continue;
            long j = index_key(w, i);
            if (j >= 0)
                w->act[j] = A_SKIP; /* the last record of a key wins */
        }
    }

    /* 2. fk check, then the ledger, in one read transaction */
    if (etl_state_read_begin(r->state) != 0) {
        etl_srt_fail(s, "%s", etl_state_error(r->state));
        return -1;
    }
    int crc = classify(w, b);
    etl_state_read_end(r->state);
    if (crc != 0)
        return -1;
    if (s->rs && keyed && resolve_conflicts(w, b) != 0)
        return -1;

    /* 3. the rows for the sink */
    w->nw = w->nd = 0;
    size_t nk = etl_schema_ncols(s->keys);
    for (size_t i = 0; i < n; i++) {
        if (w->act[i] == A_WRITE) {
            memcpy(w->wvals + w->nw * nc, b->values + i * nc, nc * sizeof *w->wvals);
            w->widx[w->nw++] = i;
        } else if (w->act[i] == A_DELETE) {
            if (key_row(w, key_of(w, i), w->klen[i], w->dvals + w->nd * nk) != 0) {
                w->act[i] = A_SKIP;
                continue;
            }
            w->didx[w->nd++] = i;
        }
    }
    etl_rows_errors_t we = {&w->arena, w->werr}, de = {&w->arena, w->derr};
    etl_rows_t wr = {s->out, w->nw, w->wvals, w->wout, &we};
    etl_rows_t dr = {s->keys, w->nd, w->dvals, w->dout, &de};

    /* 4. what the core decided itself */
    etl_counts_t base = delta;
    for (size_t i = 0; i < n; i++) {
        switch (w->act[i]) {
        case A_UNCHANGED:
        case A_ECHO:
        case A_KEPT: base.unchanged++; break;
        case A_DEFER: base.deferred++; break;
        case A_FAIL: base.failed++; break;
        default: break;
        }
    }
    for (size_t k = 0; k < b->nrejects; k++)
        base.failed += b->rejects[k].error != NULL;

    /* 5. write; with the state store in the sink's database even a batch with
     * nothing to write goes through the sink's transaction */
    int over = 0;
    if (w->nw || w->nd || (r->shared_db && !r->o->dry_run)) {
        if (sink_write(w, b, &base, &delta, 1, &wr, &dr) != 0)
            return -1;
    } else {
        outcome_counts(w, &base, &delta);
    }
    r->errors += delta.failed;
    over = r->errors > r->p->max_errors;

    /* 6. state (already done inside the sink transaction when shared) */
    if (!r->o->dry_run && !r->shared_db) {
        if (etl_state_begin(r->state) != 0 || state_writes(w, b, &delta, !over) != 0 ||
            etl_state_commit(r->state) != 0) {
            etl_state_rollback(r->state);
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            return -1;
        }
    }
    if (b->has_ckpt && !over) {
        if (s->write == ETL_WRITE_REPLACE)
            w->pending = 1; /* moves after finish() swapped the table in */
        remember_checkpoint(w, &b->ckpt);
    }
    if (!r->o->dry_run && delta.deferred)
        w->deferred_live += delta.deferred;
    s->counts.read += delta.read;
    s->counts.created += delta.created;
    s->counts.updated += delta.updated;
    s->counts.unchanged += delta.unchanged;
    s->counts.deleted += delta.deleted;
    s->counts.deferred += delta.deferred;
    s->counts.failed += delta.failed;
    for (size_t k = 0; k < w->nw; k++) {
        if (w->wout[k] == ETL_OUT_FAILED)
            etl_logf(r->log, ETL_LOG_WARN, "run", s->cfg->name, "record %s failed: %s",
                     s->nkey ? key_of(w, w->widx[k]) : "(no key)",
                     w->werr[k] ? w->werr[k] : "write failed");
    }
    for (size_t k = 0; k < b->nrejects; k++)
        if (b->rejects[k].error)
            etl_logf(r->log, ETL_LOG_WARN, "run", s->cfg->name, "record %s failed: %s",
                     b->rejects[k].key ? b->rejects[k].key : "(no key)", b->rejects[k].error);
    if (over) {
        etl_srt_fail(s, "%lld record(s) failed, more than max_errors (%d); see the dead letters",
                     (long long)r->errors, r->p->max_errors);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ deletes */

typedef struct unseen_ctx {
    etl_writer_t *w;
    etl_batch_t *b;
    char last[1024];
    size_t lastlen;
    int toolong;
} unseen_ctx_t;

static int collect_unseen(void *arg, const char *key, size_t klen)
{
    unseen_ctx_t *u = arg;
    etl_value_t *row = etl_batch_row(u->b, ETL_OP_DELETE);
    if (!row)
        return -1;
    /* only the key text matters: kept in column 0 as text */
    row[0] = etl_text(etl_arena_dup(&u->b->arena, key, klen), klen);
    if (klen < sizeof u->last) {
        memcpy(u->last, key, klen);
        u->lastlen = klen;
    } else {
        u->toolong = 1;
    }
    return 0;
}

void etl_writer_phase(etl_writer_t *w)
{
    etl_ckey_free(&w->ckey);
    etl_ckey_init(&w->ckey);
}

int etl_writer_delete_unseen(etl_writer_t *w)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    etl_batch_t *b = etl_batch_new(1, 500);
    if (!b)
        return -1;
    unseen_ctx_t u = {w, b, "", 0, 0};
    int rc = 0, replace = s->write == ETL_WRITE_REPLACE;
    for (;;) {
        etl_batch_reset(b);
        int got = etl_state_ledger_unseen(r->state, s->sid, s->scan_id,
                                          u.lastlen ? u.last : NULL, u.lastlen, 500,
                                          collect_unseen, &u);
        if (got < 0) {
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            rc = -1;
            break;
        }
        if (got == 0)
            break;
        if (u.toolong) {
            etl_srt_fail(s, "a key longer than 1 KiB stops delete detection");
            rc = -1;
            break;
        }
        /* rows: key text in column 0 -> typed key rows */
        if (reserve(w, (size_t)got + 1) != 0) {
            rc = -1;
            break;
        }
        etl_arena_reset(&w->arena);
        etl_buf_reset(&w->keys);
        w->nw = w->nd = 0;
        size_t nk = etl_schema_ncols(s->keys);
        for (size_t i = 0; i < b->nrows; i++) {
            const etl_value_t *v = &b->values[i];
            w->koff[i] = w->keys.len;
            etl_buf_add(&w->keys, v->v.s, v->len);
            w->klen[i] = v->len;
            etl_buf_addc(&w->keys, '\0');
        }
        for (size_t i = 0; i < b->nrows; i++) {
            if (key_row(w, key_of(w, i), w->klen[i], w->dvals + w->nd * nk) == 0)
                w->didx[w->nd++] = i;
        }
        etl_counts_t delta = {0};
        etl_rows_errors_t we = {&w->arena, w->werr}, de = {&w->arena, w->derr};
        etl_rows_t wr = {s->out, 0, w->wvals, w->wout, &we};
        etl_rows_t dr = {s->keys, w->nd, w->dvals, w->dout, &de};
        etl_batch_t empty = {0};
        empty.ncols = w->ncols;
        size_t saved = b->nrows;
        b->nrows = 0; /* state_writes walks act[] for batch rows: none here */
        if (!replace) {
            etl_counts_t none = {0};
            if (sink_write(w, &empty, &none, &delta, 0, &wr, &dr) != 0) {
                rc = -1;
                break;
            }
        } else {
            for (size_t k = 0; k < w->nd; k++)
                w->dout[k] = ETL_OUT_DELETED;
        }
        if (replace) {
            etl_counts_t none = {0};
            outcome_counts(w, &none, &delta);
        }
        if (!r->o->dry_run && (!r->shared_db || replace)) {
            if (etl_state_begin(r->state) || state_writes(w, &empty, &delta, 0) ||
                etl_state_commit(r->state)) {
                etl_state_rollback(r->state);
                etl_srt_fail(s, "%s", etl_state_error(r->state));
                rc = -1;
                break;
            }
        }
        b->nrows = saved;
        s->counts.deleted += delta.deleted;
        if (got < 500 || r->o->dry_run)
            break;
    }
    etl_batch_free(b);
    return rc;
}

void etl_writer_progress(etl_writer_t *w, int final)
{
    etl_run_t *r = w->r;
    if (!r->o->progress)
        return;
    int64_t now = etl_mono_us();
    if (!final && now - w->t_last < PROGRESS_EVERY_US)
        return;
    double secs = (double)(now - w->t_start) / 1e6;
    double rate = secs > 0 ? (double)w->s->counts.read / secs : 0;
    char line[256];
    snprintf(line, sizeof line, "  %-24s %-8s %12lld records %10.0f rec/s  %lld pages",
             w->s->cfg->name, w->s->dir_name, (long long)w->s->counts.read, rate,
             (long long)atomic_load(&w->r->ends[w->s->dir == ETL_DIR_FORWARD ? 0 : 1]
                                         .src_ctx->pages));
    etl_log_progress(line);
    w->t_last = now;
    if (final)
        etl_log_progress_done();
}

int etl_writer_final_checkpoint(etl_writer_t *w)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    if (!w->pending || r->o->dry_run)
        return 0;
    char buf[64];
    const char *text;
    size_t n = etl_value_text(&w->ck, buf, sizeof buf, &text);
    if (atomic_load(&s->emitted)) { /* waits for the rows it emitted, like any */
        w->pending = 0;
        return hold(s, text, n, w->ck.type);
    }
    if (etl_state_begin(r->state) ||
        etl_state_checkpoint_put(r->state, r->pkey, s->cfg->name, s->dir_name, text,
                                 etl_type_name(w->ck.type), 0, s->full) ||
        etl_state_commit(r->state)) {
        etl_state_rollback(r->state);
        etl_srt_fail(s, "%s", etl_state_error(r->state));
        return -1;
    }
    w->pending = 0;
    return 0;
}
