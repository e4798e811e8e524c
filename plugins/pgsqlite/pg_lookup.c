/*
 * pg_lookup.c - what the core asks of a PostgreSQL end beside reads and
 * writes: translating identities, writing a new id back, and fetching the
 * rows a conflict is about. Values travel as text parameters; PostgreSQL
 * casts them to the columns' types.
 */
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"

const char *pg_param(keep_t *k, const etl_value_t *v)
{
    static const char hex[] = "0123456789abcdef";
    if (v->type == ETL_T_NULL)
        return NULL;
    if (v->type == ETL_T_BLOB) {
        size_t n = 2 + 2 * (size_t)v->len;
        char *b = malloc(n + 1);
        if (!b)
            return NULL;
        b[0] = '\\', b[1] = 'x';
        for (uint32_t i = 0; i < v->len; i++) {
            b[2 + 2 * i] = hex[(unsigned char)v->v.s[i] >> 4];
            b[3 + 2 * i] = hex[(unsigned char)v->v.s[i] & 15];
        }
        const char *kept = keep_dup(k, b, n);
        free(b);
        return kept;
    }
    char tmp[64];
    const char *t;
    size_t n = etl_value_text(v, tmp, sizeof tmp, &t);
    return keep_dup(k, t, n);
}

etl_value_t pg_field(keep_t *k, const PGresult *r, int row, int col, etl_type_t type)
{
    if (PQgetisnull(r, row, col))
        return etl_null();
    const char *t = PQgetvalue(r, row, col);
    size_t n = (size_t)PQgetlength(r, row, col);
    switch (type) {
    case ETL_T_INT:
        return etl_int(strtoll(t, NULL, 10));
    case ETL_T_DOUBLE:
        return etl_double(strtod(t, NULL));
    case ETL_T_BOOL:
        return etl_bool(t[0] == 't');
    case ETL_T_TIMESTAMP: {
        int64_t us;
        if (etl_ts_parse(t, n, &us) == 0)
            return etl_ts(us);
        return etl_text(keep_dup(k, t, n), n);
    }
    default:
        return etl_str(type == ETL_T_NULL ? ETL_T_TEXT : type, keep_dup(k, t, n), n);
    }
}

etl_status_t pg_lookup(pg_t *p, etl_ctx_t *ctx, const char *table, const char *by,
                       const char *want, const etl_value_t *in, size_t n, etl_value_t *out)
{
    keep_clear(&p->keep);
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "SELECT ");
    sb_ident(&b, want);
    sb_add(&b, "::text FROM ");
    sb_qualified(&b, p, table);
    sb_add(&b, " WHERE ");
    sb_ident(&b, by);
    sb_add(&b, " = $1");
    etl_status_t st = ETL_OK;
    for (size_t i = 0; i < n && st == ETL_OK; i++) {
        out[i] = etl_null();
        if (in[i].type == ETL_T_NULL)
            continue;
        const char *param = pg_param(&p->keep, &in[i]);
        PGresult *r = PQexecParams(p->conn, sb_str(&b), 1, NULL, &param, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            st = pg_fail(p, ctx, r, "lookup");
        else if (PQntuples(r) > 0)
            out[i] = pg_field(&p->keep, r, 0, 0, ETL_T_TEXT);
        PQclear(r);
    }
    sb_free(&b);
    return st;
}

etl_status_t pg_assign(pg_t *p, etl_ctx_t *ctx, const char *table, const char *by,
                       const etl_value_t *by_value, const char *col, const etl_value_t *value)
{
    keep_clear(&p->keep);
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "UPDATE ");
    sb_qualified(&b, p, table);
    sb_add(&b, " SET ");
    sb_ident(&b, col);
    sb_add(&b, " = $1 WHERE ");
    sb_ident(&b, by);
    sb_add(&b, " = $2");
    const char *params[2] = {pg_param(&p->keep, value), pg_param(&p->keep, by_value)};
    PGresult *r = PQexecParams(p->conn, sb_str(&b), 2, NULL, params, NULL, NULL, 0);
    etl_status_t st = PQresultStatus(r) == PGRES_COMMAND_OK ? ETL_OK : pg_fail(p, ctx, r, "assign");
    PQclear(r);
    sb_free(&b);
    return st;
}

etl_status_t pg_fetch(pg_t *p, etl_ctx_t *ctx, pg_stream_t *s, const etl_rows_t *keys,
                      etl_value_t *out, unsigned char *found)
{
    keep_clear(&p->keep);
    const etl_schema_t *sc = pg_stream_schema(s);
    size_t nc = etl_schema_ncols(sc), nk = etl_schema_ncols(keys->schema);
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "SELECT ");
    for (size_t i = 0; i < nc; i++) {
        sb_add(&b, i ? ", " : "");
        sb_ident(&b, etl_schema_col(sc, i)->name);
    }
    sb_add(&b, " FROM ");
    sb_qualified(&b, p, pg_stream_table(s));
    sb_add(&b, " WHERE ");
    for (size_t k = 0; k < nk; k++) {
        sb_add(&b, k ? " AND " : "");
        sb_ident(&b, etl_schema_col(keys->schema, k)->name);
        sb_printf(&b, " = $%zu", k + 1);
    }
    const char *params[16];
    etl_status_t st = ETL_OK;
    if (nk > 16)
        st = etl_fail(ctx, ETL_ERR_CONFIG, "keys of more than 16 columns");
    for (size_t i = 0; i < keys->nrows && st == ETL_OK; i++) {
        const etl_value_t *key = etl_rows_row(keys, i);
        for (size_t k = 0; k < nk; k++)
            params[k] = pg_param(&p->keep, &key[k]);
        PGresult *r = PQexecParams(p->conn, sb_str(&b), (int)nk, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            st = pg_fail(p, ctx, r, "fetch");
        } else {
            found[i] = PQntuples(r) > 0;
            for (size_t c = 0; c < nc; c++)
                out[i * nc + c] = found[i] ? pg_field(&p->keep, r, 0, (int)c,
                                                      etl_schema_col(sc, c)->type)
                                           : etl_null();
        }
        PQclear(r);
    }
    sb_free(&b);
    return st;
}
