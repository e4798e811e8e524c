/*
 * lite_read.c - reading an SQLite table as a stream: one SELECT stepped row
 * by row (memory stays flat whatever the table's size), ordered by the
 * cursor and the key so checkpoints taken along the way are safe.
 */
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"

#define CHECKPOINT_EVERY 256

/* Binds a timestamp bound in the form the column's data uses. */
static void bind_ts_like_data(lite_t *l, sqlite3_stmt *q, const char *table, const char *col,
                              int64_t us)
{
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "SELECT ");
    sb_ident(&b, col);
    sb_add(&b, " FROM ");
    sb_ident(&b, table);
    sb_add(&b, " WHERE ");
    sb_ident(&b, col);
    sb_add(&b, " IS NOT NULL LIMIT 1");
    sqlite3_stmt *s = NULL;
    int bound = 0;
    if (sqlite3_prepare_v2(l->db, sb_str(&b), -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        switch (sqlite3_column_type(s, 0)) {
        case SQLITE_INTEGER: /* epoch seconds */
            sqlite3_bind_int64(q, 1, us / 1000000);
            bound = 1;
            break;
        case SQLITE_FLOAT: /* julian day */
            sqlite3_bind_double(q, 1, (double)us / 86400e6 + 2440587.5);
            bound = 1;
            break;
        case SQLITE_TEXT: {
            char buf[64];
            size_t n = etl_ts_format_like(us, (const char *)sqlite3_column_text(s, 0),
                                          (size_t)sqlite3_column_bytes(s, 0), buf, sizeof buf);
            sqlite3_bind_text(q, 1, buf, (int)n, SQLITE_TRANSIENT);
            bound = 1;
            break;
        }
        }
    }
    if (!bound) {
        char buf[40];
        size_t n = etl_ts_format(us, buf, sizeof buf);
        sqlite3_bind_text(q, 1, buf, (int)n, SQLITE_TRANSIENT);
    }
    sqlite3_finalize(s);
    sb_free(&b);
}

static void bind_since(lite_t *l, sqlite3_stmt *q, const etl_read_t *req)
{
    const etl_value_t *v = req->since;
    switch (v->type) {
    case ETL_T_INT:
    case ETL_T_BOOL:
        sqlite3_bind_int64(q, 1, v->v.i);
        break;
    case ETL_T_DOUBLE:
        sqlite3_bind_double(q, 1, v->v.d);
        break;
    case ETL_T_TIMESTAMP:
        bind_ts_like_data(l, q, req->stream, req->cursor, v->v.i);
        break;
    case ETL_T_BLOB:
        sqlite3_bind_blob(q, 1, v->v.s, (int)v->len, SQLITE_TRANSIENT);
        break;
    default:
        sqlite3_bind_text(q, 1, v->v.s, (int)v->len, SQLITE_TRANSIENT);
    }
}

etl_value_t lite_column(keep_t *k, sqlite3_stmt *q, int c, etl_type_t declared)
{
    switch (sqlite3_column_type(q, c)) {
    case SQLITE_INTEGER:
        return declared == ETL_T_BOOL ? etl_bool(sqlite3_column_int64(q, c) != 0)
                                      : etl_int(sqlite3_column_int64(q, c));
    case SQLITE_FLOAT:
        return etl_double(sqlite3_column_double(q, c));
    case SQLITE_TEXT: {
        const char *t = (const char *)sqlite3_column_text(q, c);
        size_t len = (size_t)sqlite3_column_bytes(q, c);
        /* text keeps its stored form: a timestamp column's text is copied as is */
        etl_type_t ty = declared == ETL_T_JSON || declared == ETL_T_NUMERIC ? declared : ETL_T_TEXT;
        return etl_str(ty, k ? keep_dup(k, t, len) : t, len);
    }
    case SQLITE_BLOB: {
        const char *b = sqlite3_column_blob(q, c);
        size_t len = (size_t)sqlite3_column_bytes(q, c);
        return etl_str(ETL_T_BLOB, k ? keep_dup(k, b ? b : "", len) : b, len);
    }
    default:
        return etl_null();
    }
}

etl_status_t lite_read(lite_t *l, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em)
{
    const etl_schema_t *sc = req->schema;
    size_t n = etl_schema_ncols(sc);
    int cursor = req->cursor ? etl_schema_find(sc, req->cursor) : -1;
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "SELECT ");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_add(&b, ", ");
        sb_ident(&b, etl_schema_col(sc, i)->name);
    }
    sb_add(&b, " FROM ");
    sb_ident(&b, req->stream);
    size_t nkey = 0;
    if (req->by_key) {
        /* a full scan in key order, after a resume point: (k1, k2) > (?1, ?2) */
        for (size_t i = 0; i < n; i++)
            nkey += (etl_schema_col(sc, i)->flags & ETL_COL_KEY) != 0;
        if (req->after && nkey) {
            sb_add(&b, " WHERE (");
            for (size_t i = 0, k = 0; i < n; i++) {
                if (!(etl_schema_col(sc, i)->flags & ETL_COL_KEY))
                    continue;
                sb_add(&b, k++ ? ", " : "");
                sb_ident(&b, etl_schema_col(sc, i)->name);
            }
            sb_add(&b, ") > (");
            for (size_t k = 0; k < nkey; k++)
                sb_printf(&b, "%s?%zu", k ? ", " : "", k + 1);
            sb_add(&b, ")");
        }
        sb_add(&b, " ORDER BY ");
        for (size_t i = 0, k = 0; i < n; i++) {
            if (!(etl_schema_col(sc, i)->flags & ETL_COL_KEY))
                continue;
            sb_add(&b, k++ ? ", " : "");
            sb_ident(&b, etl_schema_col(sc, i)->name);
        }
        cursor = -1; /* no checkpoints along the way: the order is not the cursor's */
    } else if (cursor >= 0 && req->since) {
        sb_add(&b, " WHERE ");
        sb_ident(&b, req->cursor);
        sb_add(&b, " >= ?1");
    }
    if (cursor >= 0) {
        sb_add(&b, " ORDER BY ");
        sb_ident(&b, req->cursor);
        for (size_t i = 0; i < n; i++) {
            if (etl_schema_col(sc, i)->flags & ETL_COL_KEY) {
                sb_add(&b, ", ");
                sb_ident(&b, etl_schema_col(sc, i)->name);
            }
        }
    }
    etl_value_t *row = calloc(n + 1, sizeof *row);
    etl_type_t *declared = calloc(n + 1, sizeof *declared);
    sqlite3_stmt *q = NULL;
    etl_status_t st = ETL_OK;
    if (!row || !declared || b.oom) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        declared[i] = etl_schema_col(sc, i)->type;
    if (sqlite3_prepare_v2(l->db, sb_str(&b), -1, &q, NULL) != SQLITE_OK) {
        st = lite_fail(l, ctx, "read");
        goto done;
    }
    if (req->by_key && req->after)
        for (size_t k = 0; k < nkey; k++)
            lite_bind(q, (int)k + 1, &req->after[k]);
    else if (cursor >= 0 && req->since)
        bind_since(l, q, req);
    etl_log(ctx, ETL_LOG_DEBUG, "%s", sb_str(&b));
    int rc;
    uint64_t count = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        for (size_t i = 0; i < n; i++)
            row[i] = lite_column(NULL, q, (int)i, declared[i]);
        /* ordered by the cursor: every row before this one has a cursor <= its own */
        if (cursor >= 0 && ++count % CHECKPOINT_EVERY == 0 &&
            (st = etl_emit_checkpoint(em, &row[cursor])) != ETL_OK)
            goto done;
        if ((st = etl_emit(em, row)) != ETL_OK)
            goto done;
    }
    if (rc != SQLITE_DONE)
        st = lite_fail(l, ctx, "read");
done:
    sqlite3_finalize(q);
    free(row);
    free(declared);
    sb_free(&b);
    return st;
}
