/*
 * lite_lookup.c - what the core asks of an SQLite end beside reads and
 * writes: translating identities (a server id to the local id and back),
 * writing a new server id back, and fetching the rows a conflict is about.
 */
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"


etl_status_t lite_lookup(lite_t *l, etl_ctx_t *ctx, const char *table, const char *by,
                         const char *want, const etl_value_t *in, size_t n, etl_value_t *out)
{
    keep_clear(&l->keep);
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "SELECT ");
    sb_ident(&b, want);
    sb_add(&b, " FROM ");
    sb_ident(&b, table);
    sb_add(&b, " WHERE ");
    sb_ident(&b, by);
    sb_add(&b, " = ?1");
    sqlite3_stmt *q = NULL;
    etl_status_t st = ETL_OK;
    if (b.oom || sqlite3_prepare_v2(l->db, sb_str(&b), -1, &q, NULL) != SQLITE_OK) {
        st = b.oom ? etl_fail(ctx, ETL_ERR_NOMEM, "out of memory") : lite_fail(l, ctx, "lookup");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = etl_null();
        if (in[i].type == ETL_T_NULL)
            continue;
        lite_bind(q, 1, &in[i]);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
            out[i] = lite_column(&l->keep, q, 0, ETL_T_TEXT);
        else if (rc != SQLITE_DONE) {
            st = lite_fail(l, ctx, "lookup");
            break;
        }
        sqlite3_reset(q);
    }
done:
    sqlite3_finalize(q);
    sb_free(&b);
    return st;
}

etl_status_t lite_assign(lite_t *l, etl_ctx_t *ctx, const char *table, const char *by,
                         const etl_value_t *by_value, const char *col, const etl_value_t *value)
{
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "UPDATE ");
    sb_ident(&b, table);
    sb_add(&b, " SET ");
    sb_ident(&b, col);
    sb_add(&b, " = ?1 WHERE ");
    sb_ident(&b, by);
    sb_add(&b, " = ?2");
    sqlite3_stmt *q = NULL;
    etl_status_t st = ETL_OK;
    if (b.oom || sqlite3_prepare_v2(l->db, sb_str(&b), -1, &q, NULL) != SQLITE_OK) {
        st = b.oom ? etl_fail(ctx, ETL_ERR_NOMEM, "out of memory") : lite_fail(l, ctx, "assign");
    } else {
        lite_bind(q, 1, value);
        lite_bind(q, 2, by_value);
        if (sqlite3_step(q) != SQLITE_DONE)
            st = lite_fail(l, ctx, "assign");
    }
    sqlite3_finalize(q);
    sb_free(&b);
    return st;
}

etl_status_t lite_fetch(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, const etl_rows_t *keys,
                        etl_value_t *out, unsigned char *found)
{
    keep_clear(&l->keep);
    const etl_schema_t *sc = lite_stream_schema(s);
    size_t nc = etl_schema_ncols(sc), nk = etl_schema_ncols(keys->schema);
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "SELECT ");
    for (size_t i = 0; i < nc; i++) {
        sb_add(&b, i ? ", " : "");
        sb_ident(&b, etl_schema_col(sc, i)->name);
    }
    sb_add(&b, " FROM ");
    sb_ident(&b, lite_stream_table(s));
    sb_add(&b, " WHERE ");
    for (size_t k = 0; k < nk; k++) {
        sb_add(&b, k ? " AND " : "");
        sb_ident(&b, etl_schema_col(keys->schema, k)->name);
        sb_printf(&b, " = ?%zu", k + 1);
    }
    sqlite3_stmt *q = NULL;
    etl_status_t st = ETL_OK;
    if (b.oom || sqlite3_prepare_v2(l->db, sb_str(&b), -1, &q, NULL) != SQLITE_OK) {
        st = b.oom ? etl_fail(ctx, ETL_ERR_NOMEM, "out of memory") : lite_fail(l, ctx, "fetch");
        goto done;
    }
    for (size_t i = 0; i < keys->nrows; i++) {
        const etl_value_t *key = etl_rows_row(keys, i);
        for (size_t k = 0; k < nk; k++)
            lite_bind(q, (int)k + 1, &key[k]);
        int rc = sqlite3_step(q);
        found[i] = rc == SQLITE_ROW;
        for (size_t c = 0; c < nc; c++)
            out[i * nc + c] = found[i] ? lite_column(&l->keep, q, (int)c,
                                                     etl_schema_col(sc, c)->type)
                                       : etl_null();
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            st = lite_fail(l, ctx, "fetch");
            break;
        }
        sqlite3_reset(q);
    }
done:
    sqlite3_finalize(q);
    sb_free(&b);
    return st;
}
