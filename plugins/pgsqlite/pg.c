/*
 * pg.c - the PostgreSQL side of pgsqlite: connecting through libpq (the URL
 * passes through, so sslmode and the other parameters work; the password is
 * registered as a secret), the session settings every read and write relies
 * on, and introspection from pg_catalog.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"

etl_status_t pg_fail(pg_t *p, etl_ctx_t *ctx, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res)
                                                          : PQerrorMessage(p->conn);
    etl_status_t st = ETL_ERR_IO;
    if (PQstatus(p->conn) != CONNECTION_OK)
        st = ETL_ERR_RETRY;
    else if (state && (strncmp(state, "40", 2) == 0 || strcmp(state, "55P03") == 0 ||
                       strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0))
        st = ETL_ERR_RETRY; /* serialization, deadlock, lock timeout, connection */
    else if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
        st = ETL_ERR_DATA;
    else if (state && strncmp(state, "42", 2) == 0)
        st = ETL_ERR_CONFIG;
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    return etl_fail(ctx, st, "PostgreSQL %s: %s: %.*s", p->where, what, (int)n, msg);
}

/* Runs a command that returns no rows. */
etl_status_t pg_exec(pg_t *p, etl_ctx_t *ctx, const char *sql, const char *what)
{
    PGresult *r = PQexec(p->conn, sql);
    etl_status_t st = ETL_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        st = pg_fail(p, ctx, r, what);
    PQclear(r);
    return st;
}

/* "host:port/db" for messages: never the user's password. */
static char *describe(PGconn *c)
{
    const char *host = PQhost(c), *port = PQport(c), *db = PQdb(c);
    size_t n = strlen(host ? host : "") + strlen(port ? port : "") + strlen(db ? db : "") + 8;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s:%s/%s", host ? host : "", port ? port : "", db ? db : "");
    return s;
}

/* Server notices ("table ... does not exist, skipping") go to the debug log. */
static void on_notice(void *arg, const char *msg)
{
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        n--;
    etl_log(arg, ETL_LOG_DEBUG, "PostgreSQL: %.*s", (int)n, msg);
}

etl_status_t pg_open(etl_ctx_t *ctx, const char *url, int sink, pg_t **out)
{
    pg_t *p = calloc(1, sizeof *p);
    if (!p)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    p->sink = sink;
    const char *schema = etl_opt(ctx, "schema");
    p->schema = strdup(schema ? schema : "public");
    p->conn = PQconnectdb(url);
    if (!p->schema || !p->conn) {
        pg_close(p);
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    }
    if (PQpass(p->conn) && *PQpass(p->conn))
        etl_secret(ctx, PQpass(p->conn));
    PQsetNoticeProcessor(p->conn, on_notice, ctx);
    p->where = describe(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(p->conn);
        size_t n = strlen(msg);
        while (n && msg[n - 1] == '\n')
            n--;
        etl_status_t st = etl_fail(ctx, ETL_ERR_IO, "cannot connect to PostgreSQL %s: %.*s",
                                   p->where ? p->where : "", (int)n, msg);
        pg_close(p);
        return st;
    }
    /* timestamps travel in UTC and ISO form; floats print exactly */
    etl_status_t st = pg_exec(p, ctx,
                              "SET TIME ZONE 'UTC'; SET client_encoding TO 'UTF8';"
                              " SET DateStyle TO 'ISO, YMD'; SET extra_float_digits TO 3;"
                              " SET bytea_output TO 'hex'",
                              "session settings");
    if (st != ETL_OK) {
        pg_close(p);
        return st;
    }
    *out = p;
    return ETL_OK;
}

void pg_close(pg_t *p)
{
    if (!p)
        return;
    if (p->dry_tx) /* a dry run leaves the database as it found it */
        PQclear(PQexec(p->conn, "ROLLBACK"));
    PQfinish(p->conn);
    keep_clear(&p->keep);
    free(p->keep.v);
    free(p->schema);
    free(p->where);
    free(p);
}

etl_status_t pg_check(pg_t *p, etl_ctx_t *ctx)
{
    const char *params[1] = {p->schema};
    PGresult *r = PQexecParams(p->conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL,
                               params, NULL, NULL, 0);
    etl_status_t st = ETL_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        st = pg_fail(p, ctx, r, "check");
    else if (PQntuples(r) == 0)
        st = etl_fail(ctx, ETL_ERR_CONFIG, "PostgreSQL %s: no schema '%s'", p->where, p->schema);
    PQclear(r);
    return st;
}

etl_status_t pg_streams(pg_t *p, etl_ctx_t *ctx, void (*cb)(void *, const char *), void *arg)
{
    const char *params[1] = {p->schema};
    PGresult *r = PQexecParams(p->conn,
                               "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON"
                               " n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN"
                               " ('r','v','m','p') ORDER BY 1",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        etl_status_t st = pg_fail(p, ctx, r, "list tables");
        PQclear(r);
        return st;
    }
    for (int i = 0; i < PQntuples(r); i++)
        cb(arg, PQgetvalue(r, i, 0));
    PQclear(r);
    return ETL_OK;
}

etl_type_t pg_etl_type(const char *typname)
{
    static const struct {
        const char *name;
        etl_type_t type;
    } map[] = {
        {"int2", ETL_T_INT},        {"int4", ETL_T_INT},         {"int8", ETL_T_INT},
        {"oid", ETL_T_INT},         {"float4", ETL_T_DOUBLE},    {"float8", ETL_T_DOUBLE},
        {"numeric", ETL_T_NUMERIC}, {"money", ETL_T_NUMERIC},    {"bool", ETL_T_BOOL},
        {"json", ETL_T_JSON},       {"jsonb", ETL_T_JSON},       {"bytea", ETL_T_BLOB},
        {"timestamptz", ETL_T_TIMESTAMP}, {"timestamp", ETL_T_TIMESTAMP},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(map[i].name, typname) == 0)
            return map[i].type;
    return ETL_T_TEXT; /* text, varchar, uuid, date, enums, arrays: their text form */
}

etl_status_t pg_columns(pg_t *p, etl_ctx_t *ctx, const char *table, etl_schema_t *out,
                        int *exists)
{
    static const char sql[] =
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " a.attgenerated <> '', t.typname,"
        " coalesce(a.attnum = ANY(i.indkey), false)"
        " FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
        " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum";
    const char *params[2] = {p->schema, table};
    PGresult *r = PQexecParams(p->conn, sql, 2, NULL, params, NULL, NULL, 0);
    *exists = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        etl_status_t st = pg_fail(p, ctx, r, "columns");
        PQclear(r);
        return st;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned flags = (PQgetvalue(r, i, 2)[0] == 't' ? ETL_COL_NOT_NULL : 0) |
                         (PQgetvalue(r, i, 3)[0] == 't' ? ETL_COL_GENERATED : 0) |
                         (PQgetvalue(r, i, 5)[0] == 't' ? ETL_COL_KEY : 0);
        const char *typname = PQgetvalue(r, i, 4);
        /* an array's pg_type name starts with '_': its text form travels */
        etl_type_t t = typname[0] == '_' ? ETL_T_TEXT : pg_etl_type(typname);
        if (etl_schema_add(out, PQgetvalue(r, i, 0), t, PQgetvalue(r, i, 1), flags) < 0) {
            PQclear(r);
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        }
        *exists = 1;
    }
    PQclear(r);
    return ETL_OK;
}

/* Foreign keys of a table, for the log: "column -> table(column)". */
static void log_fks(pg_t *p, etl_ctx_t *ctx, const char *table)
{
    static const char sql[] =
        "SELECT a.attname, cf.relname, af.attname FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_class cf ON cf.oid = k.confrelid"
        " JOIN LATERAL unnest(k.conkey, k.confkey) AS u(col, fcol) ON true"
        " JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.col"
        " JOIN pg_attribute af ON af.attrelid = k.confrelid AND af.attnum = u.fcol"
        " WHERE k.contype = 'f' AND n.nspname = $1 AND c.relname = $2";
    const char *params[2] = {p->schema, table};
    PGresult *r = PQexecParams(p->conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(r); i++)
            etl_log(ctx, ETL_LOG_DEBUG, "%s.%s: foreign key %s -> %s(%s)", p->schema, table,
                    PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    PQclear(r);
}

etl_status_t pg_discover(pg_t *p, etl_ctx_t *ctx, etl_schema_t *out)
{
    const char *table = etl_schema_stream(out);
    int exists;
    etl_status_t st = pg_columns(p, ctx, table, out, &exists);
    if (st != ETL_OK)
        return st;
    if (!exists) {
        sqlbuf_t b;
        sb_init(&b);
        const char *params[1] = {p->schema};
        PGresult *r = PQexecParams(p->conn,
                                   "SELECT string_agg(c.relname, ', ' ORDER BY c.relname)"
                                   " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                   " WHERE n.nspname = $1 AND c.relkind IN ('r','v','m','p')",
                                   1, NULL, params, NULL, NULL, 0);
        const char *list = PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0)
                               ? PQgetvalue(r, 0, 0)
                               : "none";
        st = etl_fail(ctx, ETL_ERR_CONFIG, "no table '%s' in schema %s of PostgreSQL %s (tables: %s)",
                      table, p->schema, p->where, list);
        PQclear(r);
        sb_free(&b);
        return st;
    }
    log_fks(p, ctx, table);
    if (etl_schema_find(out, "updated_at") >= 0)
        etl_schema_set_cursor(out, "updated_at");
    return ETL_OK;
}

void sb_qualified(sqlbuf_t *b, pg_t *p, const char *table)
{
    sb_ident(b, p->schema);
    sb_add(b, ".");
    sb_ident(b, table);
}
