/*
 * batch.h - the unit records travel in: rows of values aligned to a stream's
 * sink-side columns, with an arena owning every string they point to.
 */
#ifndef ETL_CORE_BATCH_H
#define ETL_CORE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "etl/etl.h"

/* Bump allocator in chunks; reset keeps the first chunk for reuse. */
typedef struct etl_arena_chunk etl_arena_chunk_t;
typedef struct etl_arena {
    etl_arena_chunk_t *head;
    size_t used; /* in head */
} etl_arena_t;

void *etl_arena_alloc(etl_arena_t *a, size_t n);
char *etl_arena_dup(etl_arena_t *a, const char *s, size_t n);
void etl_arena_reset(etl_arena_t *a);
void etl_arena_free(etl_arena_t *a);
/* Copies v's bytes (strings) into the arena; dst may equal v. 0 or -1. */
int etl_arena_value(etl_arena_t *a, etl_value_t *dst, const etl_value_t *v);

enum { ETL_OP_UPSERT = 0, ETL_OP_DELETE = 1 };

/* A row that could not be used, found before the writer (a Lua error), or
 * (error NULL) a row the transform dropped: its key is only marked seen, so
 * a full scan does not delete what the source still has. */
typedef struct etl_reject {
    const char *key;    /* may be NULL */
    const char *error;  /* NULL: dropped, not failed */
    const char *record; /* JSON, may be NULL */
} etl_reject_t;

typedef struct etl_batch {
    size_t ncols;
    size_t nrows, cap;
    etl_value_t *values; /* cap * ncols */
    uint8_t *op;
    etl_arena_t arena;
    int64_t read;        /* source records behind these rows */
    int has_ckpt;        /* the checkpoint may move to ckpt once this batch commits */
    etl_value_t ckpt;
    etl_reject_t *rejects;
    size_t nrejects, caprejects;
    int ordered;         /* a key-ordered scan whose keys only grew, up to this batch */
    int has_resume;      /* a full scan in key order reached resume (source key values) */
    etl_value_t *resume;
    int has_smax;        /* ... and the greatest cursor it has read so far */
    etl_value_t smax;
    int end;             /* last batch of the stream */
    etl_status_t status; /* of the read, on the last batch */
    char *error;         /* malloc'd, on the last batch when status != OK */
} etl_batch_t;

etl_batch_t *etl_batch_new(size_t ncols, size_t cap);
void etl_batch_free(etl_batch_t *b);
void etl_batch_reset(etl_batch_t *b);
/* Appends a row of NULLs and returns its values; NULL on no memory. */
etl_value_t *etl_batch_row(etl_batch_t *b, int op);
int etl_batch_reject(etl_batch_t *b, const char *key, const char *error, const char *record);

/* Row failures reported by a sink through etl_rows_fail(): rows->core_
 * points at one of these, owned by the writer. */
typedef struct etl_rows_errors {
    etl_arena_t *arena;
    const char **msg; /* nrows entries, NULL where the row did not fail */
} etl_rows_errors_t;

/* A bounded single-producer single-consumer queue of batches, with a pool
 * of spare batches so a run allocates a handful of them in all. */
typedef struct etl_queue etl_queue_t;

etl_queue_t *etl_queue_new(size_t depth, size_t ncols, size_t batch_rows);
void etl_queue_free(etl_queue_t *q);
/* Blocks while full; returns -1 when the consumer has closed the queue. */
int etl_queue_push(etl_queue_t *q, etl_batch_t *b);
/* Blocks while empty; NULL once closed by the producer and drained. */
etl_batch_t *etl_queue_pop(etl_queue_t *q);
/* Whether a push would block now (the consumer is behind). */
int etl_queue_full(etl_queue_t *q);
/* The consumer gives up: pushes fail from now on. */
void etl_queue_abort(etl_queue_t *q);
/* A batch for the producer (from the pool, or new). */
etl_batch_t *etl_queue_get(etl_queue_t *q);
/* Returns a consumed batch to the pool. */
void etl_queue_put(etl_queue_t *q, etl_batch_t *b);

#endif
