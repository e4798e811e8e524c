/*
 * state_pg_rows.h - write combining for the PostgreSQL state store: the
 * per-row ledger and deferred operations of a batch transaction, queued and
 * sent as one multi-row statement per kind (arrays through unnest) instead of
 * one statement per row. Not part of any public API.
 *
 * Order: operations of one kind on the same (table, stream id, key) keep
 * their order (the last one wins, as it would have run last). Operations of
 * different kinds on the same row do not commute, so adding one that meets a
 * queued row of another kind answers "flush first". Rows of different keys,
 * or of other tables, commute: the flush may send the kinds in any order.
 */
#ifndef ETL_CORE_STATE_PG_ROWS_H
#define ETL_CORE_STATE_PG_ROWS_H

#include <stddef.h>
#include <stdint.h>

enum {
    ETL_PG_ROW_PUT,   /* ledger upsert: a = hash, b = seen */
    ETL_PG_ROW_ECHO,  /* ledger echo mark: text = cursor */
    ETL_PG_ROW_SEEN,  /* ledger seen: a = seen */
    ETL_PG_ROW_DEL,   /* ledger delete */
    ETL_PG_ROW_DDEL,  /* deferred delete */
    ETL_PG_ROW_KINDS
};

/* Rows of one kind beyond which the queue asks to be flushed. */
#define ETL_PG_ROWS_MAX 2000

typedef struct etl_pg_rows etl_pg_rows_t;

etl_pg_rows_t *etl_pg_rows_new(void);
void etl_pg_rows_free(etl_pg_rows_t *q);

/* Queues one operation. 0 queued; 1 not queued: it meets a queued row of
 * another kind, or the kind is full (flush, then add again); -1 out of
 * memory. */
int etl_pg_rows_add(etl_pg_rows_t *q, int kind, int64_t sid, const char *key, size_t klen,
                    int64_t a, int64_t b, const char *text);
/* Rows queued, all kinds. */
size_t etl_pg_rows_count(const etl_pg_rows_t *q);
/* The rows of `kind` as PostgreSQL array literals, one per column (sid,
 * key, then the kind's values), into params; returns how many (0 when
 * none are queued, -1 out of memory). Valid until the next reset. */
int etl_pg_rows_params(etl_pg_rows_t *q, int kind, const char **params);
/* Forgets every queued row. */
void etl_pg_rows_reset(etl_pg_rows_t *q);

#endif
