/*
 * lite.c - the SQLite side of pgsqlite: opening a database, type affinity,
 * and introspection with PRAGMA table_xinfo (generated columns flagged so
 * they are never written).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/stat.h>

#include "pgsqlite.h"

etl_status_t lite_fail(lite_t *l, etl_ctx_t *ctx, const char *what)
{
    int code = sqlite3_extended_errcode(l->db) & 0xff;
    etl_status_t st = code == SQLITE_BUSY || code == SQLITE_LOCKED ? ETL_ERR_RETRY
                      : code == SQLITE_NOMEM                        ? ETL_ERR_NOMEM
                      : code == SQLITE_CONSTRAINT || code == SQLITE_MISMATCH ||
                              code == SQLITE_TOOBIG
                          ? ETL_ERR_DATA
                          : ETL_ERR_IO;
    return etl_fail(ctx, st, "%s: %s: %s", l->path, what, sqlite3_errmsg(l->db));
}

etl_status_t lite_open(etl_ctx_t *ctx, const char *path, int sink, lite_t **out)
{
    lite_t *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    }
    l->sink = sink;
    /* a source must exist: creating an empty file would hide a typo */
    int flags = SQLITE_OPEN_READWRITE | (sink ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    /* a dry run creates no file: a sink that does not exist yet is an empty
     * database in memory for as long as the run lasts */
    const char *open_path = path;
    if (sink && etl_dry_run(ctx) && access(path, F_OK) != 0) {
        open_path = ":memory:";
        etl_log(ctx, ETL_LOG_INFO, "dry run: %s does not exist; writing to memory", path);
    } else if (sink) {
        /* the folder of a new sink database may not exist yet */
        char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) {
            *slash = '\0';
            for (char *p = dir + 1; *p; p++) {
                if (*p == '/') {
                    *p = '\0';
                    (void)mkdir(dir, 0755);
                    *p = '/';
                }
            }
            (void)mkdir(dir, 0755);
        }
        free(dir);
    }
    if (sqlite3_open_v2(open_path, &l->db, flags, NULL) != SQLITE_OK) {
        etl_status_t st = etl_fail(ctx, ETL_ERR_CONFIG, "cannot open SQLite database %s: %s",
                                   path, l->db ? sqlite3_errmsg(l->db) : "out of memory");
        lite_close(l);
        return st;
    }
    sqlite3_busy_timeout(l->db, 30000);
    sqlite3_extended_result_codes(l->db, 1);
    if (sink)
        sqlite3_exec(l->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=16384;", NULL, NULL, NULL);
    /* fail now, not at the first read, when the file is not a database */
    if (sqlite3_exec(l->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        etl_status_t st = etl_fail(ctx, ETL_ERR_CONFIG, "%s is not a usable SQLite database: %s",
                                   path, sqlite3_errmsg(l->db));
        lite_close(l);
        return st;
    }
    *out = l;
    return ETL_OK;
}

void lite_close(lite_t *l)
{
    if (!l)
        return;
    sqlite3_close_v2(l->db);
    keep_clear(&l->keep);
    free(l->keep.v);
    free(l->path);
    free(l);
}

etl_status_t lite_check(lite_t *l, etl_ctx_t *ctx)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(l->db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK)
        return lite_fail(l, ctx, "quick_check");
    int rc = sqlite3_step(s);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    etl_status_t st = ETL_OK;
    if (!res || strcmp(res, "ok") != 0)
        st = etl_fail(ctx, ETL_ERR_IO, "%s: integrity check: %s", l->path,
                      res ? res : sqlite3_errmsg(l->db));
    sqlite3_finalize(s);
    return st;
}

etl_status_t lite_streams(lite_t *l, etl_ctx_t *ctx, void (*cb)(void *, const char *), void *arg)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT name FROM sqlite_master WHERE type IN ('table','view')"
                           " AND name NOT LIKE 'sqlite_%' ORDER BY name",
                           -1, &s, NULL) != SQLITE_OK)
        return lite_fail(l, ctx, "list tables");
    while (sqlite3_step(s) == SQLITE_ROW)
        cb(arg, (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return ETL_OK;
}

static int contains(const char *hay, const char *needle) { return strcasestr(hay, needle) != NULL; }

lite_affinity_t lite_affinity(const char *t)
{
    /* the rules of https://sqlite.org/datatype3.html section 3.1, in order */
    if (!t || !*t)
        return AFF_BLOB;
    if (contains(t, "INT"))
        return AFF_INTEGER;
    if (contains(t, "CHAR") || contains(t, "CLOB") || contains(t, "TEXT"))
        return AFF_TEXT;
    if (contains(t, "BLOB"))
        return AFF_BLOB;
    if (contains(t, "REAL") || contains(t, "FLOA") || contains(t, "DOUB"))
        return AFF_REAL;
    return AFF_NUMERIC;
}

etl_type_t lite_etl_type(const char *t)
{
    if (!t || !*t)
        return ETL_T_BLOB;
    if (contains(t, "BOOL"))
        return ETL_T_BOOL;
    if (contains(t, "JSON"))
        return ETL_T_JSON;
    if (contains(t, "DATE") || contains(t, "TIME"))
        return ETL_T_TIMESTAMP;
    switch (lite_affinity(t)) {
    case AFF_INTEGER: return ETL_T_INT;
    case AFF_TEXT:
        /* "DECIMAL TEXT": exact decimals kept as text (what etl creates) */
        return contains(t, "DEC") || contains(t, "NUMERIC") ? ETL_T_NUMERIC : ETL_T_TEXT;
    case AFF_BLOB: return ETL_T_BLOB;
    case AFF_REAL: return ETL_T_DOUBLE;
    default:
        /* NUMERIC affinity stores decimals as REAL: no exactness to keep */
        return ETL_T_DOUBLE;
    }
}

etl_status_t lite_columns(lite_t *l, etl_ctx_t *ctx, const char *table, etl_schema_t *out,
                          int *exists)
{
    sqlite3_stmt *s;
    *exists = 0;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1)"
                           " ORDER BY cid",
                           -1, &s, NULL) != SQLITE_OK)
        return lite_fail(l, ctx, "table_xinfo");
    sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        const char *type = (const char *)sqlite3_column_text(s, 1);
        int notnull = sqlite3_column_int(s, 2), pk = sqlite3_column_int(s, 3);
        int hidden = sqlite3_column_int(s, 4);
        unsigned flags = (notnull ? ETL_COL_NOT_NULL : 0) | (pk ? ETL_COL_KEY : 0) |
                         (hidden == 2 || hidden == 3 ? ETL_COL_GENERATED : 0) |
                         (hidden == 1 ? ETL_COL_HIDDEN : 0);
        if (etl_schema_add(out, name, lite_etl_type(type), type && *type ? type : NULL, flags) <
            0) {
            sqlite3_finalize(s);
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        }
        *exists = 1;
    }
    sqlite3_finalize(s);
    return ETL_OK;
}

etl_status_t lite_discover(lite_t *l, etl_ctx_t *ctx, etl_schema_t *out)
{
    const char *table = etl_schema_stream(out);
    int exists;
    etl_status_t st = lite_columns(l, ctx, table, out, &exists);
    if (st != ETL_OK)
        return st;
    if (!exists) {
        sqlbuf_t b;
        sb_init(&b);
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(l->db,
                               "SELECT name FROM sqlite_master WHERE type IN ('table','view')"
                               " AND name NOT LIKE 'sqlite_%' ORDER BY name",
                               -1, &s, NULL) == SQLITE_OK) {
            while (sqlite3_step(s) == SQLITE_ROW) {
                sb_add(&b, b.len ? ", " : "");
                sb_add(&b, (const char *)sqlite3_column_text(s, 0));
            }
            sqlite3_finalize(s);
        }
        st = etl_fail(ctx, ETL_ERR_CONFIG, "no table '%s' in %s (tables: %s)", table, l->path,
                      b.len ? sb_str(&b) : "none");
        sb_free(&b);
        return st;
    }
    if (etl_schema_find(out, "updated_at") >= 0)
        etl_schema_set_cursor(out, "updated_at");
    return ETL_OK;
}
