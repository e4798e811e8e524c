/*
 * emit.c - the source side of a stream, in the reader thread: what
 * etl_emit() does with a row. The row is mapped to the sink's columns
 * (rename, exclude, local_only), passed through the Lua transform when there
 * is one, and copied into the current batch; full batches go to the queue
 * with the checkpoint they make safe.
 */
#include <stdlib.h>
#include <string.h>

#include "row.h"
#include "runtime.h"

#define FLUSH_AFTER_US 2000000 /* a slow source still commits every 2 s */
#define GROW_MAX 16            /* a batch grows to 16x `batch` while the writer is behind */

void etl_emitter_init(etl_emitter_t *em, etl_run_t *r, etl_srt_t *s, etl_queue_t *q)
{
    memset(em, 0, sizeof *em);
    em->run = r;
    em->s = s;
    em->q = q;
    em->batch_rows = (size_t)s->cfg->batch;
    etl_buf_init(&em->max_buf);
    etl_buf_init(&em->ck_buf);
    etl_buf_init(&em->key);
    etl_buf_init(&em->lerr);
    etl_buf_init(&em->json);
    if (s->xf)
        em->scratch = calloc(etl_schema_ncols(s->out) + 1, sizeof *em->scratch);
    etl_buf_init(&em->last_buf);
    if (s->by_key)
        em->last_key = calloc(s->nrkey + 1, sizeof *em->last_key);
}

void etl_emitter_init_collect(etl_emitter_t *em, etl_run_t *r, etl_srt_t *s,
                              int (*cb)(void *arg, const etl_value_t *row), void *arg)
{
    memset(em, 0, sizeof *em);
    em->run = r;
    em->s = s;
    em->collect = cb;
    em->collect_arg = arg;
    etl_buf_init(&em->max_buf);
    etl_buf_init(&em->ck_buf);
    etl_buf_init(&em->key);
    etl_buf_init(&em->lerr);
    etl_buf_init(&em->json);
    etl_buf_init(&em->last_buf);
}

void etl_emitter_free(etl_emitter_t *em)
{
    if (em->cur)
        etl_queue_put(em->q, em->cur);
    em->cur = NULL;
    etl_buf_free(&em->max_buf);
    etl_buf_free(&em->ck_buf);
    etl_buf_free(&em->key);
    etl_buf_free(&em->lerr);
    etl_buf_free(&em->json);
    etl_buf_free(&em->last_buf);
    free(em->last_key);
    free(em->scratch);
}

int etl_cursor_cmp(const etl_value_t *a, const etl_value_t *b)
{
    if (a->type != b->type)
        return a->type < b->type ? -1 : 1;
    switch (a->type) {
    case ETL_T_NULL:
        return 0;
    case ETL_T_BOOL:
    case ETL_T_INT:
    case ETL_T_TIMESTAMP:
        return a->v.i < b->v.i ? -1 : a->v.i > b->v.i;
    case ETL_T_DOUBLE:
        return a->v.d < b->v.d ? -1 : a->v.d > b->v.d;
    default: {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = n ? memcmp(a->v.s, b->v.s, n) : 0;
        if (c)
            return c;
        return a->len < b->len ? -1 : a->len > b->len;
    }
    }
}

/* Keeps a copy of v in (dst, buf). */
static void hold(etl_value_t *dst, etl_buf_t *buf, const etl_value_t *v)
{
    *dst = *v;
    if (v->type >= ETL_T_NUMERIC && v->type <= ETL_T_JSON) {
        etl_buf_reset(buf);
        etl_buf_add(buf, v->v.s ? v->v.s : "", v->len);
        dst->v.s = buf->data ? buf->data : "";
    }
}

static int64_t now_mono(void) { return etl_mono_us(); }

static etl_batch_t *current(etl_emitter_t *em)
{
    if (!em->cur) {
        em->cur = etl_queue_get(em->q);
        if (!em->cur)
            em->failed = ETL_ERR_NOMEM;
        em->t0 = now_mono();
    }
    return em->cur;
}

static void attach_checkpoint(etl_emitter_t *em, etl_batch_t *b, const etl_value_t *ck)
{
    if (etl_arena_value(&b->arena, &b->ckpt, ck) == 0)
        b->has_ckpt = 1;
}

/* A key-ordered scan: everything up to the last key read is in this batch
 * or before it, so a crash resumes after it. */
static void attach_resume(etl_emitter_t *em, etl_batch_t *b)
{
    if (!em->s->resume || !em->last_key || !em->read || em->unordered || em->replay)
        return;
    size_t nk = em->s->nrkey;
    b->resume = etl_arena_alloc(&b->arena, nk * sizeof *b->resume);
    int ok = b->resume != NULL;
    for (size_t k = 0; ok && k < nk; k++)
        ok = etl_arena_value(&b->arena, &b->resume[k], &em->last_key[k]) == 0;
    b->has_resume = ok;
    if (ok && em->have_max && etl_arena_value(&b->arena, &b->smax, &em->max) == 0)
        b->has_smax = 1;
}

static etl_status_t seal(etl_emitter_t *em)
{
    etl_batch_t *b = em->cur;
    if (!b)
        return ETL_OK;
    em->cur = NULL;
    /* a scan that keeps key order moves the checkpoint only at its end; a
     * source that read otherwise keeps the checkpoints it stated */
    if (em->have_ck && !em->replay && !(em->s->by_key && !em->unordered))
        attach_checkpoint(em, b, &em->ck);
    attach_resume(em, b);
    b->ordered = em->s->by_key && !em->unordered && !em->replay;
    if (etl_queue_push(em->q, b) != 0) {
        etl_queue_put(em->q, b);
        em->failed = ETL_ERR_CANCELLED;
        return em->failed;
    }
    return ETL_OK;
}

/* A full batch goes to the writer; but while the writer is still busy with
 * the ones before it, the batch keeps growing (to GROW_MAX times its size):
 * fewer, larger commits exactly when the sink is the bottleneck. */
static etl_status_t maybe_seal(etl_emitter_t *em, etl_batch_t *b)
{
    if (b->nrows < em->batch_rows)
        return ETL_OK;
    if (b->nrows < em->batch_rows * GROW_MAX && etl_queue_full(em->q))
        return ETL_OK;
    return seal(em);
}

etl_status_t etl_emit_out(etl_emitter_t *em, const etl_value_t *row, int op)
{
    etl_batch_t *b = current(em);
    if (!b)
        return em->failed;
    etl_value_t *dst = etl_batch_row(b, op);
    if (!dst) {
        em->failed = ETL_ERR_NOMEM;
        return em->failed;
    }
    size_t n = etl_schema_ncols(em->s->out);
    for (size_t j = 0; j < n; j++) {
        if (etl_arena_value(&b->arena, &dst[j], &row[j]) != 0) {
            em->failed = ETL_ERR_NOMEM;
            return em->failed;
        }
    }
    /* inside a transform the batch is sealed once the call returned, when
     * everything that row emitted elsewhere is known (held checkpoints) */
    return em->in_transform ? ETL_OK : maybe_seal(em, b);
}

/* ------------------------------------------------------------ Lua glue */

static etl_srt_t *find_stream(etl_emitter_t *em, const char *name)
{
    etl_run_t *r = em->run;
    for (size_t i = 0; i < r->p->nstreams; i++) {
        etl_srt_t *t = &r->srt[i * 2 + (em->s->dir == ETL_DIR_REVERSE)];
        if (strcmp(t->cfg->name, name) == 0)
            return t->out ? t : NULL;
    }
    return NULL;
}

static int lua_out(void *arg, const char *stream, const etl_value_t *row)
{
    etl_emitter_t *em = arg;
    etl_srt_t *t = stream ? find_stream(em, stream) : em->s;
    if (!t)
        return -1;
    if (t == em->s) {
        em->own++;
        return etl_emit_out(em, row, ETL_OP_UPSERT) == ETL_OK ? 0 : -1;
    }
    if (!t->spool && !(t->spool = etl_spool_new()))
        return -1;
    if (!em->s->targets && !(em->s->targets = calloc(em->run->p->nstreams, 1)))
        return -1;
    em->s->targets[t->index] = 1;
    atomic_store(&em->s->emitted, 1); /* before the batch of this row is queued */
    return etl_spool_add(t->spool, row, etl_schema_ncols(t->out));
}

static const etl_schema_t *lua_schema(void *arg, const char *stream)
{
    etl_emitter_t *em = arg;
    etl_srt_t *t = stream ? find_stream(em, stream) : em->s;
    return t ? t->out : NULL;
}

static void reject(etl_emitter_t *em, const etl_value_t *row, const char *error)
{
    etl_srt_t *s = em->s;
    etl_batch_t *b = current(em);
    if (!b)
        return;
    etl_buf_reset(&em->key);
    etl_buf_reset(&em->json);
    int haskey = s->nkey && etl_row_key(&em->key, row, s->key, s->nkey) == 0;
    if (!error && !haskey)
        return;
    if (error)
        etl_row_json(&em->json, s->out, row);
    if (etl_batch_reject(b, haskey ? em->key.data : NULL, error, error ? em->json.data : NULL) != 0)
        em->failed = ETL_ERR_NOMEM;
}

static etl_status_t transform(etl_emitter_t *em, const etl_value_t *mapped)
{
    etl_srt_t *s = em->s;
    etl_lua_io_t io = {lua_out, lua_schema, em};
    etl_buf_reset(&em->lerr);
    int64_t own = em->own;
    em->in_transform = 1;
    int rc = etl_lua_transform(em->run->lua, s->xf, s->cfg->name, s->out, mapped, &io, &em->lerr);
    em->in_transform = 0;
    if (rc != 0) {
        if (em->failed)
            return em->failed;
        reject(em, mapped, em->lerr.data ? em->lerr.data : "transform failed");
    } else if (em->own == own && s->detect_deletes && s->nkey && !em->failed) {
        reject(em, mapped, NULL); /* dropped: still in the source */
    }
    etl_batch_t *b = em->failed ? NULL : em->cur;
    if (!b)
        return em->failed;
    /* rejects weigh like rows: a transform that drops most rows must not grow
     * one batch without end */
    if (b->nrows < em->batch_rows && b->nrows + b->nrejects >= em->batch_rows)
        return seal(em);
    return maybe_seal(em, b);
}

/* A full scan in key order: checks the order holds (a source may ignore
 * by_key) and keeps the last key. Returns -1 once it does not hold. */
static int track_key(etl_emitter_t *em, const etl_value_t *row)
{
    etl_srt_t *s = em->s;
    int cmp = em->read > 1 ? 0 : 1;
    for (size_t k = 0; k < s->nrkey && cmp == 0; k++) {
        const etl_value_t *v = &row[s->rkey[k]];
        if (v->type == ETL_T_NULL || v->type != em->last_key[k].type)
            return -1; /* NULL keys and mixed types have no order to trust */
        cmp = etl_cursor_cmp(v, &em->last_key[k]);
    }
    if (cmp < 0 || (cmp == 0 && em->read > 1))
        return -1;
    /* keep a copy: strings in last_buf, laid end to end */
    etl_buf_reset(&em->last_buf);
    size_t need = 0;
    for (size_t k = 0; k < s->nrkey; k++) {
        const etl_value_t *v = &row[s->rkey[k]];
        if (v->type >= ETL_T_NUMERIC && v->type <= ETL_T_JSON)
            need += v->len + 1;
    }
    if (etl_buf_reserve(&em->last_buf, need) != 0)
        return -1;
    for (size_t k = 0; k < s->nrkey; k++) {
        const etl_value_t *v = &row[s->rkey[k]];
        em->last_key[k] = *v;
        if (v->type == ETL_T_NULL)
            return -1;
        if (v->type >= ETL_T_NUMERIC && v->type <= ETL_T_JSON) {
            em->last_key[k].v.s = em->last_buf.data + em->last_buf.len;
            etl_buf_add(&em->last_buf, v->v.s, v->len);
            etl_buf_addc(&em->last_buf, '\0');
        }
    }
    return 0;
}

/* ------------------------------------------------------------ ABI */

static etl_status_t emit_row(etl_emitter_t *em, const etl_value_t *row, int op)
{
    if (em->failed)
        return em->failed;
    if (em->run->cancel && atomic_load(em->run->cancel))
        return ETL_ERR_CANCELLED;
    if (em->collect) {
        em->read++;
        if (op == ETL_OP_UPSERT && em->collect(em->collect_arg, row) != 0)
            em->failed = ETL_ERR_IO;
        return em->failed;
    }
    etl_srt_t *s = em->s;
    etl_batch_t *b = current(em);
    if (!b)
        return em->failed;
    em->read++;
    b->read++;
    if (s->by_key && !em->unordered && track_key(em, row) != 0)
        em->unordered = 1;
    if (s->cursor_read >= 0 && row[s->cursor_read].type != ETL_T_NULL &&
        (!em->have_max || etl_cursor_cmp(&row[s->cursor_read], &em->max) > 0)) {
        hold(&em->max, &em->max_buf, &row[s->cursor_read]);
        em->have_max = 1;
    }
    size_t n = etl_schema_ncols(s->out);
    if (s->xf && op == ETL_OP_UPSERT) {
        for (size_t j = 0; j < n; j++)
            em->scratch[j] = s->map[j] >= 0 ? row[s->map[j]] : etl_null();
        return transform(em, em->scratch);
    }
    etl_value_t *dst = etl_batch_row(b, op);
    if (!dst) {
        em->failed = ETL_ERR_NOMEM;
        return em->failed;
    }
    for (size_t j = 0; j < n; j++) {
        if (s->map[j] < 0)
            continue; /* stays NULL */
        if (etl_arena_value(&b->arena, &dst[j], &row[s->map[j]]) != 0) {
            em->failed = ETL_ERR_NOMEM;
            return em->failed;
        }
    }
    return maybe_seal(em, b);
}

etl_status_t etl_emit(etl_emitter_t *em, const etl_value_t *row)
{
    return emit_row(em, row, ETL_OP_UPSERT);
}

etl_status_t etl_emit_delete(etl_emitter_t *em, const etl_value_t *row)
{
    return emit_row(em, row, ETL_OP_DELETE);
}

etl_status_t etl_emit_checkpoint(etl_emitter_t *em, const etl_value_t *cursor)
{
    if (em->failed)
        return em->failed;
    if (!cursor || cursor->type == ETL_T_NULL || em->collect)
        return ETL_OK;
    hold(&em->ck, &em->ck_buf, cursor);
    em->have_ck = 1;
    /* a source that pages slowly still gets its progress committed */
    if (em->cur && em->cur->nrows && now_mono() - em->t0 > FLUSH_AFTER_US)
        return seal(em);
    return ETL_OK;
}

void etl_emitter_finish(etl_emitter_t *em, etl_status_t st, const char *error)
{
    etl_batch_t *b = current(em);
    if (!b)
        return;
    b->end = 1;
    b->status = st;
    b->ordered = em->s->by_key && !em->unordered && !em->replay;
    if (st != ETL_OK) {
        b->error = etl_strdup(error ? error : etl_status_name(st));
        attach_resume(em, b); /* what was read before the failure counts */
    }
    else if (!em->replay && (em->have_ck || em->have_max)) {
        /* the read is complete: everything up to the greatest cursor seen is
         * in, and a bound the source stated may reach further */
        const etl_value_t *ck = em->have_max ? &em->max : &em->ck;
        if (em->have_ck && em->have_max && em->ck.type == em->max.type &&
            etl_cursor_cmp(&em->ck, &em->max) > 0)
            ck = &em->ck;
        attach_checkpoint(em, b, ck);
    }
    em->cur = NULL;
    if (etl_queue_push(em->q, b) != 0)
        etl_queue_put(em->q, b);
}
