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
#include <time.h>

#include "row.h"
#include "runtime.h"

enum { A_WRITE = 0, A_SKIP, A_UNCHANGED, A_DEFER, A_DELETE, A_FAIL };
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
    uint8_t *act, *cls;
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
    etl_srt_t *s = w->s;
    size_t nk = etl_schema_ncols(s->keys);
    const char *parts[16];
    size_t lens[16];
    int nulls[16] = {0};
    if (nk == 0 || nk > 16 || (klen && key[0] == '~'))
        return -1; /* a fallback key names no sink row */
    if (nk == 1) {
        /* one column: the key text is the value itself, never escaped */
        parts[0] = etl_arena_dup(&w->arena, key, klen);
        lens[0] = klen;
        if (!parts[0])
            return -1;
    } else if (etl_key_split(key, klen, &w->arena, parts, lens, nulls, nk) != (int)nk) {
        return -1;
    }
    for (size_t k = 0; k < nk; k++) {
        const char *why;
        if (nulls[k])
            out[k] = etl_null();
        else if (value_from_text(parts[k], etl_schema_col(s->keys, k)->type, &out[k], &why) != 0)
            out[k] = etl_text(parts[k], lens[k]);
    }
    return 0;
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
        else
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
            continue;
        }
        if (!s->nkey)
            continue;
        if (etl_state_ledger_put(st, s->sid, key, w->klen[i], w->hash[i], r->run_id))
            return -1;
        if (w->deferred_live && etl_state_deferred_del(st, s->sid, key, w->klen[i]))
            return -1;
    }
    for (size_t k = 0; k < w->nd; k++) {
        size_t i = w->didx[k];
        if (w->dout[k] == ETL_OUT_FAILED) {
            if (dead_letter(w, key_of(w, i), w->derr[k] ? w->derr[k] : "delete failed", NULL))
                return -1;
        } else if (etl_state_ledger_del(st, s->sid, key_of(w, i), w->klen[i])) {
            return -1;
        }
    }
    for (size_t i = 0; i < b->nrows; i++) {
        const char *key = key_of(w, i);
        switch (w->act[i]) {
        case A_UNCHANGED:
            if (s->detect_deletes && etl_state_ledger_seen(st, s->sid, key, w->klen[i], r->run_id))
                return -1;
            if (w->deferred_live && etl_state_deferred_del(st, s->sid, key, w->klen[i]))
                return -1;
            break;
        case A_DEFER:
            etl_buf_reset(&w->json);
            etl_row_json(&w->json, s->out, b->values + i * nc);
            if (etl_state_deferred_put(st, s->sid, key, w->klen[i], w->reason[i], w->json.data))
                return -1;
            if (s->detect_deletes && etl_state_ledger_seen(st, s->sid, key, w->klen[i], r->run_id))
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
    for (size_t k = 0; k < b->nrejects; k++)
        if (dead_letter(w, b->rejects[k].key, b->rejects[k].error, b->rejects[k].record))
            return -1;
    if (etl_state_counts_add(st, r->run_id, s->cfg->name, s->dir_name, delta))
        return -1;
    int64_t records = delta->created + delta->updated + delta->deleted;
    if (move_ck && b->has_ckpt && s->cfg->write != ETL_WRITE_REPLACE) {
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

    /* 1. keys, hashes, in-batch dedup */
    for (size_t i = 0; i < n; i++) {
        const etl_value_t *row = b->values + i * nc;
        w->act[i] = A_WRITE;
        w->cls[i] = C_CREATED;
        w->reason[i] = NULL;
        w->koff[i] = w->keys.len;
        if (keyed && etl_row_key(&w->keys, row, s->key, s->nkey) != 0) {
            if (s->nfb) {
                etl_buf_addc(&w->keys, '~'); /* fallback keys never meet primary ones */
                etl_row_key(&w->keys, row, s->fb, s->nfb);
            } else {
                w->act[i] = A_FAIL;
                etl_buf_reset(&w->tmp);
                etl_buf_printf(&w->tmp, "stream %s: record has a NULL key (%s)", s->cfg->name,
                               etl_schema_col(s->out, (size_t)s->key[0])->name);
                w->reason[i] = adup(w, w->tmp.data);
            }
        }
        w->klen[i] = (uint32_t)(w->keys.len - w->koff[i]);
        etl_buf_addc(&w->keys, '\0');
        w->hash[i] = etl_row_hash(row, nc, s->skip);
        if (b->op[i] == ETL_OP_DELETE)
            w->act[i] = s->cfg->deletes == ETL_DELETES_IGNORE || !keyed ? A_SKIP : A_DELETE;
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

    /* 2. fk check, then the ledger */
    for (size_t i = 0; i < n; i++) {
        if (w->act[i] != A_WRITE)
            continue;
        const etl_value_t *row = b->values + i * nc;
        if (s->nfk && check_fks(w, i, row) != 0)
            return -1;
        if (w->act[i] != A_WRITE || !keyed)
            continue;
        uint64_t h;
        int found = etl_state_ledger_get(r->state, s->sid, key_of(w, i), w->klen[i], &h);
        if (found < 0) {
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            return -1;
        }
        w->cls[i] = !found ? C_CREATED : h == w->hash[i] ? C_UNCHANGED : C_UPDATED;
        if (w->cls[i] == C_UNCHANGED && s->cfg->write != ETL_WRITE_REPLACE)
            w->act[i] = A_UNCHANGED;
    }

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
        case A_UNCHANGED: base.unchanged++; break;
        case A_DEFER: base.deferred++; break;
        case A_FAIL: base.failed++; break;
        default: break;
        }
    }
    base.failed += (int64_t)b->nrejects;

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
        if (s->cfg->write == ETL_WRITE_REPLACE)
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

int etl_writer_delete_unseen(etl_writer_t *w)
{
    etl_run_t *r = w->r;
    etl_srt_t *s = w->s;
    etl_batch_t *b = etl_batch_new(1, 500);
    if (!b)
        return -1;
    unseen_ctx_t u = {w, b, "", 0, 0};
    int rc = 0, replace = s->cfg->write == ETL_WRITE_REPLACE;
    for (;;) {
        etl_batch_reset(b);
        int got = etl_state_ledger_unseen(r->state, s->sid, r->run_id,
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
    etl_value_text(&w->ck, buf, sizeof buf, &text);
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
