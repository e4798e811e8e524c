/* batch.c - arena, batches of rows, and the reader->writer queue. */
#include "batch.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct etl_arena_chunk {
    etl_arena_chunk_t *next;
    size_t size;
    max_align_t data[];
};

#define ARENA_CHUNK (64 * 1024)

void *etl_arena_alloc(etl_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->used + n > a->head->size) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        etl_arena_chunk_t *c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->size = size;
        c->next = a->head;
        a->head = c;
        a->used = 0;
    }
    void *p = (char *)a->head->data + a->used;
    a->used += n;
    return p;
}

char *etl_arena_dup(etl_arena_t *a, const char *s, size_t n)
{
    char *p = etl_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void etl_arena_reset(etl_arena_t *a)
{
    if (!a->head)
        return;
    /* keep the oldest chunk: it is the common size */
    etl_arena_chunk_t *c = a->head, *keep = NULL;
    while (c) {
        etl_arena_chunk_t *next = c->next;
        if (!next && c->size == ARENA_CHUNK)
            keep = c;
        else
            free(c);
        c = next;
    }
    if (keep)
        keep->next = NULL;
    a->head = keep;
    a->used = 0;
}

void etl_arena_free(etl_arena_t *a)
{
    etl_arena_chunk_t *c = a->head;
    while (c) {
        etl_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

int etl_arena_value(etl_arena_t *a, etl_value_t *dst, const etl_value_t *v)
{
    *dst = *v;
    switch (v->type) {
    case ETL_T_NUMERIC:
    case ETL_T_TEXT:
    case ETL_T_BLOB:
    case ETL_T_JSON:
        dst->v.s = etl_arena_dup(a, v->v.s ? v->v.s : "", v->len);
        return dst->v.s ? 0 : -1;
    default:
        return 0;
    }
}

etl_batch_t *etl_batch_new(size_t ncols, size_t cap)
{
    etl_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->ncols = ncols ? ncols : 1;
    b->cap = cap ? cap : 16;
    b->values = malloc(b->cap * b->ncols * sizeof *b->values);
    b->op = malloc(b->cap);
    if (!b->values || !b->op) {
        etl_batch_free(b);
        return NULL;
    }
    return b;
}

void etl_batch_free(etl_batch_t *b)
{
    if (!b)
        return;
    free(b->values);
    free(b->op);
    free(b->rejects);
    free(b->error);
    etl_arena_free(&b->arena);
    free(b);
}

void etl_batch_reset(etl_batch_t *b)
{
    b->nrows = 0;
    b->read = 0;
    b->has_ckpt = 0;
    b->has_resume = 0;
    b->ordered = 0;
    b->has_smax = 0;
    b->nrejects = 0;
    b->end = 0;
    b->status = ETL_OK;
    free(b->error);
    b->error = NULL;
    etl_arena_reset(&b->arena);
}

etl_value_t *etl_batch_row(etl_batch_t *b, int op)
{
    if (b->nrows == b->cap) {
        size_t cap = b->cap * 2;
        etl_value_t *v = realloc(b->values, cap * b->ncols * sizeof *v);
        if (!v)
            return NULL;
        b->values = v;
        uint8_t *o = realloc(b->op, cap);
        if (!o)
            return NULL;
        b->op = o;
        b->cap = cap;
    }
    etl_value_t *row = b->values + b->nrows * b->ncols;
    memset(row, 0, b->ncols * sizeof *row);
    b->op[b->nrows++] = (uint8_t)op;
    return row;
}

int etl_batch_reject(etl_batch_t *b, const char *key, const char *error, const char *record)
{
    if (b->nrejects == b->caprejects) {
        size_t cap = b->caprejects ? b->caprejects * 2 : 8;
        etl_reject_t *r = realloc(b->rejects, cap * sizeof *r);
        if (!r)
            return -1;
        b->rejects = r;
        b->caprejects = cap;
    }
    etl_reject_t *r = &b->rejects[b->nrejects];
    r->key = key ? etl_arena_dup(&b->arena, key, strlen(key)) : NULL;
    r->error = error ? etl_arena_dup(&b->arena, error, strlen(error)) : NULL;
    r->record = record ? etl_arena_dup(&b->arena, record, strlen(record)) : NULL;
    if ((error && !r->error) || (key && !r->key))
        return -1;
    b->nrejects++;
    return 0;
}

/* ------------------------------------------------------------ queue */

struct etl_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    etl_batch_t **ring;
    size_t depth, head, count;
    int aborted;
    etl_batch_t **pool;
    size_t npool, cappool;
    size_t ncols, batch_rows;
};

etl_queue_t *etl_queue_new(size_t depth, size_t ncols, size_t batch_rows)
{
    etl_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->depth = depth ? depth : 4;
    q->ring = calloc(q->depth, sizeof *q->ring);
    q->cappool = q->depth + 2;
    q->pool = calloc(q->cappool, sizeof *q->pool);
    if (!q->ring || !q->pool) {
        free(q->ring);
        free(q->pool);
        free(q);
        return NULL;
    }
    q->ncols = ncols;
    q->batch_rows = batch_rows;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return q;
}

void etl_queue_free(etl_queue_t *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->count; i++)
        etl_batch_free(q->ring[(q->head + i) % q->depth]);
    for (size_t i = 0; i < q->npool; i++)
        etl_batch_free(q->pool[i]);
    free(q->ring);
    free(q->pool);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q);
}

int etl_queue_push(etl_queue_t *q, etl_batch_t *b)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == q->depth && !q->aborted)
        pthread_cond_wait(&q->not_full, &q->mu);
    if (q->aborted) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    q->ring[(q->head + q->count) % q->depth] = b;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

etl_batch_t *etl_queue_pop(etl_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->aborted)
        pthread_cond_wait(&q->not_empty, &q->mu);
    etl_batch_t *b = NULL;
    if (q->count) {
        b = q->ring[q->head];
        q->head = (q->head + 1) % q->depth;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return b;
}

int etl_queue_full(etl_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    int full = q->count == q->depth;
    pthread_mutex_unlock(&q->mu);
    return full;
}

void etl_queue_abort(etl_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->aborted = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

etl_batch_t *etl_queue_get(etl_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    etl_batch_t *b = q->npool ? q->pool[--q->npool] : NULL;
    pthread_mutex_unlock(&q->mu);
    if (b)
        etl_batch_reset(b);
    else
        b = etl_batch_new(q->ncols, q->batch_rows);
    return b;
}

void etl_queue_put(etl_queue_t *q, etl_batch_t *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&q->mu);
    if (q->npool < q->cappool) {
        q->pool[q->npool++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    etl_batch_free(b);
}

/* ------------------------------------------------------------ etl_rows_t */

void etl_rows_fail(etl_rows_t *r, size_t i, const char *fmt, ...)
{
    if (i >= r->nrows)
        return;
    r->outcome[i] = ETL_OUT_FAILED;
    etl_rows_errors_t *e = r->core_;
    if (!e)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    e->msg[i] = etl_arena_dup(e->arena, buf, strlen(buf));
}
