/*
 * pgsqlite.h - shared inside the pgsqlite plugin: the connection of either
 * dialect, a small SQL text builder, and the SQLite side's entry points.
 */
#ifndef PGSQLITE_H
#define PGSQLITE_H

#include <sqlite3.h>
#include <stddef.h>

#include "etl/etl.h"

/* ------------------------------------------------------------ sql text */

typedef struct sqlbuf {
    char *s;
    size_t len, cap;
    int oom;
} sqlbuf_t;

void sb_init(sqlbuf_t *b);
void sb_free(sqlbuf_t *b);
void sb_reset(sqlbuf_t *b);
void sb_add(sqlbuf_t *b, const char *s);
void sb_addn(sqlbuf_t *b, const char *s, size_t n);
void sb_printf(sqlbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An identifier in double quotes, inner quotes doubled: the one way any
 * name from a pipeline reaches SQL. */
void sb_ident(sqlbuf_t *b, const char *name);
/* Text of b, "" after an allocation failure (then b->oom is set). */
const char *sb_str(const sqlbuf_t *b);

/* ------------------------------------------------------------ SQLite */

typedef struct lite {
    sqlite3 *db;
    char *path;
    int sink; /* opened to write */
} lite_t;

typedef struct lite_stream lite_stream_t;

etl_status_t lite_open(etl_ctx_t *ctx, const char *path, int sink, lite_t **out);
void lite_close(lite_t *l);
etl_status_t lite_check(lite_t *l, etl_ctx_t *ctx);
etl_status_t lite_streams(lite_t *l, etl_ctx_t *ctx, void (*cb)(void *, const char *), void *arg);
etl_status_t lite_discover(lite_t *l, etl_ctx_t *ctx, etl_schema_t *out);
etl_status_t lite_read(lite_t *l, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em);

etl_status_t lite_prepare(lite_t *l, etl_ctx_t *ctx, const etl_sink_stream_t *spec,
                          lite_stream_t **out);
etl_status_t lite_begin(lite_t *l, etl_ctx_t *ctx);
etl_status_t lite_write(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, etl_rows_t *rows);
etl_status_t lite_remove(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, etl_rows_t *keys);
etl_status_t lite_commit(lite_t *l, etl_ctx_t *ctx);
void lite_rollback(lite_t *l, etl_ctx_t *ctx);
etl_status_t lite_finish(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, int ok);

/* Shared by read and write: SQLite's type affinity of a declared type. */
typedef enum { AFF_INTEGER, AFF_TEXT, AFF_BLOB, AFF_REAL, AFF_NUMERIC } lite_affinity_t;
lite_affinity_t lite_affinity(const char *declared);
/* The etl type a column of this declared type carries. */
etl_type_t lite_etl_type(const char *declared);
/* Maps an SQLite error to a status and a message in ctx. */
etl_status_t lite_fail(lite_t *l, etl_ctx_t *ctx, const char *what);
/* Table columns as PRAGMA table_xinfo reports them; generated ones flagged. */
etl_status_t lite_columns(lite_t *l, etl_ctx_t *ctx, const char *table, etl_schema_t *out,
                          int *exists);

#endif
