/*
 * pgsqlite.h - shared inside the pgsqlite plugin: the connection of either
 * dialect, a small SQL text builder, and the SQLite side's entry points.
 */
#ifndef PGSQLITE_H
#define PGSQLITE_H

#include <libpq-fe.h>
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

/* Copies handed out by lookup/fetch, valid until the next call. */
typedef struct keep {
    char **v;
    size_t n, cap;
} keep_t;

const char *keep_dup(keep_t *k, const char *s, size_t n);
void keep_clear(keep_t *k);

/* ------------------------------------------------------------ SQLite */

typedef struct lite {
    sqlite3 *db;
    char *path;
    int sink; /* opened to write */
    keep_t keep;
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
etl_status_t lite_lookup(lite_t *l, etl_ctx_t *ctx, const char *table, const char *by,
                         const char *want, const etl_value_t *in, size_t n, etl_value_t *out);
etl_status_t lite_assign(lite_t *l, etl_ctx_t *ctx, const char *table, const char *by,
                         const etl_value_t *by_value, const char *col, const etl_value_t *value);
etl_status_t lite_fetch(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, const etl_rows_t *keys,
                        etl_value_t *out, unsigned char *found);
const etl_schema_t *lite_stream_schema(const lite_stream_t *s);
const char *lite_stream_table(const lite_stream_t *s);
/* Binds an etl value to an SQLite parameter (timestamps as ISO 8601 text). */
void lite_bind(sqlite3_stmt *q, int idx, const etl_value_t *v);
/* A column of a result row as an etl value; strings are copied into k, or
 * borrowed from the statement (valid until its next step) when k is NULL. */
etl_value_t lite_column(keep_t *k, sqlite3_stmt *q, int col, etl_type_t declared);

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

/* ------------------------------------------------------------ PostgreSQL */

typedef struct pg {
    PGconn *conn;
    char *schema;
    char *where; /* host:port/db, for messages: never the password */
    int sink;
    keep_t keep;
    int dry_tx; /* a dry run: one transaction from the first prepare, never committed */
} pg_t;

typedef struct pg_stream pg_stream_t;

etl_status_t pg_open(etl_ctx_t *ctx, const char *url, int sink, pg_t **out);
void pg_close(pg_t *p);
etl_status_t pg_check(pg_t *p, etl_ctx_t *ctx);
etl_status_t pg_streams(pg_t *p, etl_ctx_t *ctx, void (*cb)(void *, const char *), void *arg);
etl_status_t pg_discover(pg_t *p, etl_ctx_t *ctx, etl_schema_t *out);
etl_status_t pg_read(pg_t *p, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em);
etl_status_t pg_prepare(pg_t *p, etl_ctx_t *ctx, const etl_sink_stream_t *spec,
                        pg_stream_t **out);
etl_status_t pg_begin(pg_t *p, etl_ctx_t *ctx);
etl_status_t pg_write(pg_t *p, etl_ctx_t *ctx, pg_stream_t *s, etl_rows_t *rows);
etl_status_t pg_remove(pg_t *p, etl_ctx_t *ctx, pg_stream_t *s, etl_rows_t *keys);
etl_status_t pg_commit(pg_t *p, etl_ctx_t *ctx);
void pg_rollback(pg_t *p, etl_ctx_t *ctx);
etl_status_t pg_finish(pg_t *p, etl_ctx_t *ctx, pg_stream_t *s, int ok);
etl_status_t pg_lookup(pg_t *p, etl_ctx_t *ctx, const char *table, const char *by,
                       const char *want, const etl_value_t *in, size_t n, etl_value_t *out);
etl_status_t pg_assign(pg_t *p, etl_ctx_t *ctx, const char *table, const char *by,
                       const etl_value_t *by_value, const char *col, const etl_value_t *value);
etl_status_t pg_fetch(pg_t *p, etl_ctx_t *ctx, pg_stream_t *s, const etl_rows_t *keys,
                      etl_value_t *out, unsigned char *found);
const etl_schema_t *pg_stream_schema(const pg_stream_t *s);
const char *pg_stream_table(const pg_stream_t *s);
/* Text parameters for PQexecParams: NULL for SQL NULL, else the value's text
 * form (bytea as \x hex) kept in k until the next keep_clear. */
const char *pg_param(keep_t *k, const etl_value_t *v);
/* A text result field as an etl value of the given type (strings kept in k). */
etl_value_t pg_field(keep_t *k, const PGresult *r, int row, int col, etl_type_t type);

etl_status_t pg_fail(pg_t *p, etl_ctx_t *ctx, const PGresult *res, const char *what);
etl_status_t pg_exec(pg_t *p, etl_ctx_t *ctx, const char *sql, const char *what);
etl_status_t pg_columns(pg_t *p, etl_ctx_t *ctx, const char *table, etl_schema_t *out,
                        int *exists);
etl_type_t pg_etl_type(const char *typname);
/* schema.table, both quoted */
void sb_qualified(sqlbuf_t *b, pg_t *p, const char *table);

#endif
