/*
 * lite_write.c - SQLite as a sink: creating and evolving tables, writes
 * with a per-row outcome, deletes, and write: replace through a staging
 * table swapped in by one transaction.
 *
 * A row is written in at most two statements: an INSERT that does nothing
 * on a key conflict (a new key: created), then for an existing key an
 * UPDATE whose WHERE clause only matches when some column differs (updated,
 * else unchanged). So re-delivering a row can never duplicate it, and the
 * counts stay true even when the core's ledger was lost.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pgsqlite.h"

struct lite_stream {
    char *table;  /* the table the user sees */
    char *target; /* where rows go: the table, or its staging copy */
    etl_write_mode_t mode;
    etl_conflict_t conflict;
    size_t ncols;
    unsigned char *use;  /* per schema column: written */
    unsigned char *key;  /* per schema column: part of the key */
    sqlite3_stmt *ins, *upd, *del, *has;
    sqlite3_stmt *diff; /* does the stored row differ? (newer rules refuse some updates) */
    size_t nkeys;
    int soft;            /* deletes set a column instead of removing the row */
    char *soft_value;    /* ... to this text, or to the time of the delete */
    const etl_schema_t *schema; /* the core's, alive until finish() */
};

const etl_schema_t *lite_stream_schema(const lite_stream_t *s) { return s->schema; }
const char *lite_stream_table(const lite_stream_t *s) { return s->target; }

static int is_text_like(etl_type_t t)
{
    return t == ETL_T_TEXT || t == ETL_T_JSON || t == ETL_T_NUMERIC || t == ETL_T_BLOB;
}

/* The declared type for a new column: the source's own when it reads back
 * as the same etl type and SQLite's affinity will not rewrite the values. */
static const char *decl_type(const etl_column_t *c)
{
    if (c->native && lite_etl_type(c->native) == c->type) {
        lite_affinity_t a = lite_affinity(c->native);
        if (!is_text_like(c->type) || a == AFF_TEXT || a == AFF_BLOB)
            return c->native;
    }
    switch (c->type) {
    case ETL_T_BOOL: return "BOOLEAN";
    case ETL_T_INT: return "INTEGER";
    case ETL_T_DOUBLE: return "REAL";
    case ETL_T_NUMERIC: return "DECIMAL TEXT"; /* TEXT affinity keeps "0.10" exact */
    case ETL_T_JSON: return "JSON TEXT";
    case ETL_T_BLOB: return "BLOB";
    case ETL_T_TIMESTAMP: return "TIMESTAMP";
    default: return "TEXT";
    }
}

static etl_status_t exec(lite_t *l, etl_ctx_t *ctx, const char *sql, const char *what)
{
    if (sqlite3_exec(l->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return lite_fail(l, ctx, what);
    return ETL_OK;
}

static void add_column_def(sqlbuf_t *b, const etl_column_t *c)
{
    sb_ident(b, c->name);
    sb_add(b, " ");
    sb_add(b, decl_type(c));
    if (c->flags & ETL_COL_NOT_NULL)
        sb_add(b, " NOT NULL");
}

/* A dry run's tables are temporary ones (the connection's temp schema,
 * which unqualified names find first), and it never drops one of the file's. */
static const char *dry_kw(etl_ctx_t *ctx, const char *dry, const char *real)
{
    return etl_dry_run(ctx) ? dry : real;
}

static etl_status_t create_table(lite_t *l, etl_ctx_t *ctx, const char *name,
                                 const etl_schema_t *sc, int with_pk, const char *assigned_pk)
{
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, dry_kw(ctx, "CREATE TEMP TABLE ", "CREATE TABLE "));
    sb_ident(&b, name);
    sb_add(&b, " (");
    size_t n = etl_schema_ncols(sc), nk = 0, k = 0;
    if (assigned_pk && etl_schema_find(sc, assigned_pk) < 0) {
        /* the local row id SQLite assigns; the key stays unique beside it */
        sb_ident(&b, assigned_pk);
        sb_add(&b, " INTEGER PRIMARY KEY");
        k++;
        with_pk = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const etl_column_t *c = etl_schema_col(sc, i);
        if (c->flags & ETL_COL_HIDDEN)
            continue;
        if (k++)
            sb_add(&b, ", ");
        add_column_def(&b, c);
        nk += (c->flags & ETL_COL_KEY) != 0;
    }
    if (nk && with_pk) {
        sb_add(&b, ", PRIMARY KEY (");
        for (size_t i = 0, kk = 0; i < n; i++) {
            if (!(etl_schema_col(sc, i)->flags & ETL_COL_KEY))
                continue;
            if (kk++)
                sb_add(&b, ", ");
            sb_ident(&b, etl_schema_col(sc, i)->name);
        }
        sb_add(&b, ")");
    }
    sb_add(&b, ")");
    etl_status_t st = b.oom ? etl_fail(ctx, ETL_ERR_NOMEM, "out of memory")
                            : exec(l, ctx, sb_str(&b), "create table");
    if (st == ETL_OK)
        etl_log(ctx, ETL_LOG_INFO, "%s table %s in %s",
                etl_dry_run(ctx) ? "dry run: a temporary" : "created", name, l->path);
    sb_free(&b);
    return st;
}

/* Whether the key columns carry a primary key or unique index; if not, one
 * is created so ON CONFLICT has something to match. */
static etl_status_t ensure_unique(lite_t *l, etl_ctx_t *ctx, const char *table,
                                  const etl_schema_t *sc)
{
    size_t n = etl_schema_ncols(sc), nk = 0;
    for (size_t i = 0; i < n; i++)
        nk += (etl_schema_col(sc, i)->flags & ETL_COL_KEY) != 0;
    if (!nk)
        return ETL_OK;
    sqlite3_stmt *il = NULL, *ii = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(l->db, "SELECT name FROM pragma_index_list(?1) WHERE \"unique\"", -1,
                           &il, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(l->db, "SELECT name FROM pragma_index_info(?1)", -1, &ii, NULL) !=
            SQLITE_OK) {
        sqlite3_finalize(il);
        return lite_fail(l, ctx, "index list");
    }
    sqlite3_bind_text(il, 1, table, -1, SQLITE_STATIC);
    while (!found && sqlite3_step(il) == SQLITE_ROW) {
        sqlite3_bind_text(ii, 1, (const char *)sqlite3_column_text(il, 0), -1, SQLITE_TRANSIENT);
        size_t cols = 0, match = 0;
        while (sqlite3_step(ii) == SQLITE_ROW) {
            cols++;
            int c = etl_schema_find(sc, (const char *)sqlite3_column_text(ii, 0));
            match += c >= 0 && (etl_schema_col(sc, (size_t)c)->flags & ETL_COL_KEY);
        }
        sqlite3_reset(ii);
        found = cols == nk && match == nk;
    }
    sqlite3_finalize(il);
    sqlite3_finalize(ii);
    if (!found) {
        /* a rowid table whose INTEGER PRIMARY KEY is the key has no index entry */
        int pkcols = 0, pkmatch = 0;
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(l->db, "SELECT name FROM pragma_table_info(?1) WHERE pk > 0", -1,
                               &s, NULL) == SQLITE_OK) {
            sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
            while (sqlite3_step(s) == SQLITE_ROW) {
                pkcols++;
                int c = etl_schema_find(sc, (const char *)sqlite3_column_text(s, 0));
                pkmatch += c >= 0 && (etl_schema_col(sc, (size_t)c)->flags & ETL_COL_KEY);
            }
            sqlite3_finalize(s);
        }
        found = pkcols == (int)nk && pkmatch == (int)nk;
    }
    if (found)
        return ETL_OK;
    if (etl_dry_run(ctx)) { /* an index on a table of the file would stay */
        etl_log(ctx, ETL_LOG_WARN,
                "dry run: table %s has no unique index on the key (a real run adds one); rows "
                "already there may be counted as created",
                table);
        return ETL_OK;
    }
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "CREATE UNIQUE INDEX IF NOT EXISTS ");
    sb_printf(&b, "\"%s__etl_key\"", table);
    sb_add(&b, " ON ");
    sb_ident(&b, table);
    sb_add(&b, " (");
    for (size_t i = 0, k = 0; i < n; i++) {
        if (!(etl_schema_col(sc, i)->flags & ETL_COL_KEY))
            continue;
        if (k++)
            sb_add(&b, ", ");
        sb_ident(&b, etl_schema_col(sc, i)->name);
    }
    sb_add(&b, ")");
    etl_status_t st = exec(l, ctx, sb_str(&b), "unique index on the key");
    if (st != ETL_OK)
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "table %s has no unique index on the stream's key and one cannot be "
                      "created: %s",
                      table, sqlite3_errmsg(l->db));
    sb_free(&b);
    return st;
}

/* For write: replace, a fresh staging table shaped like the real one. */
static etl_status_t create_staging(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s,
                                   const etl_schema_t *sc, int exists)
{
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, dry_kw(ctx, "DROP TABLE IF EXISTS temp.", "DROP TABLE IF EXISTS "));
    sb_ident(&b, s->target);
    etl_status_t st = exec(l, ctx, sb_str(&b), "drop staging table");
    sb_free(&b);
    if (st != ETL_OK || !exists)
        return st != ETL_OK ? st : create_table(l, ctx, s->target, sc, 1, NULL);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(l->db, "SELECT sql FROM sqlite_master WHERE type='table' AND name=?1",
                           -1, &q, NULL) != SQLITE_OK)
        return lite_fail(l, ctx, "table definition");
    sqlite3_bind_text(q, 1, s->table, -1, SQLITE_STATIC);
    const char *sql = sqlite3_step(q) == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : NULL;
    const char *paren = sql ? strchr(sql, '(') : NULL;
    if (!paren) {
        sqlite3_finalize(q);
        return create_table(l, ctx, s->target, sc, 1, NULL);
    }
    sb_init(&b);
    sb_add(&b, dry_kw(ctx, "CREATE TEMP TABLE ", "CREATE TABLE "));
    sb_ident(&b, s->target);
    sb_add(&b, " ");
    sb_add(&b, paren);
    sqlite3_finalize(q);
    st = exec(l, ctx, sb_str(&b), "create staging table");
    sb_free(&b);
    return st;
}

static etl_status_t prepare_stmt(lite_t *l, etl_ctx_t *ctx, sqlbuf_t *b, sqlite3_stmt **out)
{
    if (b->oom)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    if (sqlite3_prepare_v3(l->db, sb_str(b), -1, SQLITE_PREPARE_PERSISTENT, out, NULL) !=
        SQLITE_OK)
        return lite_fail(l, ctx, "prepare");
    return ETL_OK;
}

static etl_status_t build_statements(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s,
                                     const etl_sink_stream_t *spec)
{
    const etl_schema_t *sc = spec->schema;
    sqlbuf_t b;
    sb_init(&b);
    /* INSERT: parameters are numbered by schema position, so one set of
     * bindings serves both statements */
    sb_add(&b, "INSERT INTO ");
    sb_ident(&b, s->target);
    sb_add(&b, " (");
    for (size_t i = 0, k = 0; i < s->ncols; i++) {
        if (!s->use[i])
            continue;
        if (k++)
            sb_add(&b, ", ");
        sb_ident(&b, etl_schema_col(sc, i)->name);
    }
    sb_add(&b, ") VALUES (");
    for (size_t i = 0, k = 0; i < s->ncols; i++) {
        if (!s->use[i])
            continue;
        sb_printf(&b, "%s?%zu", k++ ? ", " : "", i + 1);
    }
    sb_add(&b, ")");
    /* a plain INSERT: SQLite appends in place (an UPSERT would not), and a
     * key that exists already fails fast and takes the UPDATE path */
    etl_status_t st = prepare_stmt(l, ctx, &b, &s->ins);
    if (st != ETL_OK)
        goto done;
    if (s->nkeys) {
        sb_reset(&b);
        sb_add(&b, "SELECT 1 FROM ");
        sb_ident(&b, s->target);
        sb_add(&b, " WHERE ");
        for (size_t i = 0, k = 0; i < s->ncols; i++) {
            if (!s->key[i])
                continue;
            if (k++)
                sb_add(&b, " AND ");
            sb_ident(&b, etl_schema_col(sc, i)->name);
            sb_printf(&b, " = ?%zu", i + 1);
        }
        if ((st = prepare_stmt(l, ctx, &b, &s->has)) != ETL_OK)
            goto done;
    }

    /* UPDATE ... WHERE key AND something differs [AND the incoming row is newer] */
    int can_update = s->nkeys && s->conflict != ETL_CONFLICT_SINK &&
                     (s->mode == ETL_WRITE_UPSERT || s->mode == ETL_WRITE_REPLACE);
    size_t nset = 0;
    sb_reset(&b);
    sb_add(&b, "UPDATE ");
    sb_ident(&b, s->target);
    sb_add(&b, " SET ");
    int soft_extra = spec->soft_delete && etl_schema_find(sc, spec->soft_delete) < 0;
    for (size_t i = 0; i < s->ncols; i++) {
        const char *name = etl_schema_col(sc, i)->name;
        int kept = 0;
        for (size_t k = 0; k < spec->nkeep; k++)
            kept |= strcmp(spec->keep[k], name) == 0;
        if (!s->use[i] || s->key[i] || kept)
            continue;
        if (nset++)
            sb_add(&b, ", ");
        sb_ident(&b, name);
        sb_printf(&b, " = ?%zu", i + 1);
    }
    if (soft_extra && s->soft) {
        /* a row that comes back is no longer deleted */
        sb_add(&b, nset++ ? ", " : "");
        sb_ident(&b, spec->soft_delete);
        sb_add(&b, " = NULL");
    }
    /* the row of this key, where something differs */
    sqlbuf_t cond;
    sb_init(&cond);
    for (size_t i = 0, k = 0; i < s->ncols; i++) {
        if (!s->key[i])
            continue;
        if (k++)
            sb_add(&cond, " AND ");
        sb_ident(&cond, etl_schema_col(sc, i)->name);
        sb_printf(&cond, " = ?%zu", i + 1);
    }
    sb_add(&cond, " AND (");
    size_t ndiff = 0;
    for (size_t i = 0; i < s->ncols; i++) {
        const char *name = etl_schema_col(sc, i)->name;
        int kept = 0;
        for (size_t k = 0; k < spec->nkeep; k++)
            kept |= strcmp(spec->keep[k], name) == 0;
        if (!s->use[i] || s->key[i] || kept)
            continue;
        if (ndiff++)
            sb_add(&cond, " OR ");
        sb_ident(&cond, name);
        sb_printf(&cond, " IS NOT ?%zu", i + 1);
    }
    if (soft_extra && s->soft) {
        sb_add(&cond, ndiff++ ? " OR " : "");
        sb_ident(&cond, spec->soft_delete);
        sb_add(&cond, " IS NOT NULL");
    }
    sb_add(&cond, ")");
    sb_add(&b, " WHERE ");
    sb_add(&b, sb_str(&cond));
    int cursor = spec->cursor ? etl_schema_find(sc, spec->cursor) : -1;
    int newer = (s->conflict == ETL_CONFLICT_NEWER || s->conflict == ETL_CONFLICT_NEWER_OR_EQUAL) &&
                cursor >= 0 && s->use[cursor];
    if (newer) {
        /* newer wins; a tie keeps the row already here, or goes to the
         * incoming one when it comes from the pipeline's sink: end */
        sb_add(&b, " AND (");
        sb_ident(&b, spec->cursor);
        sb_add(&b, " IS NULL OR ");
        sb_ident(&b, spec->cursor);
        sb_printf(&b, " %s ?%d)", s->conflict == ETL_CONFLICT_NEWER ? "<" : "<=", cursor + 1);
    }
    if (can_update && nset && ndiff && (st = prepare_stmt(l, ctx, &b, &s->upd)) != ETL_OK) {
        sb_free(&cond);
        goto done;
    }
    if (s->upd && newer) {
        /* a row the UPDATE left alone was identical, or refused as older */
        sb_reset(&b);
        sb_add(&b, "SELECT 1 FROM ");
        sb_ident(&b, s->target);
        sb_add(&b, " WHERE ");
        sb_add(&b, sb_str(&cond));
        st = prepare_stmt(l, ctx, &b, &s->diff);
    }
    sb_free(&cond);
    if (st != ETL_OK)
        goto done;

    /* deletes: by the key columns, numbered ?1.. in key order */
    if (s->nkeys) {
        sb_reset(&b);
        if (s->soft) {
            sb_add(&b, "UPDATE ");
            sb_ident(&b, s->target);
            sb_add(&b, " SET ");
            sb_ident(&b, spec->soft_delete);
            sb_printf(&b, " = ?%zu WHERE ", s->nkeys + 1);
        } else {
            sb_add(&b, "DELETE FROM ");
            sb_ident(&b, s->target);
            sb_add(&b, " WHERE ");
        }
        for (size_t i = 0, k = 0; i < s->ncols; i++) {
            if (!s->key[i])
                continue;
            if (k)
                sb_add(&b, " AND ");
            sb_ident(&b, etl_schema_col(sc, i)->name);
            sb_printf(&b, " = ?%zu", ++k);
        }
        if (s->soft) {
            /* once: a row already marked keeps its mark (and its time) */
            sb_add(&b, " AND ");
            sb_ident(&b, spec->soft_delete);
            if (spec->soft_delete_value)
                sb_printf(&b, " IS NOT ?%zu", s->nkeys + 1);
            else
                sb_add(&b, " IS NULL");
        }
        st = prepare_stmt(l, ctx, &b, &s->del);
    }
done:
    sb_free(&b);
    return st;
}

static void stream_free(lite_stream_t *s)
{
    if (!s)
        return;
    sqlite3_finalize(s->ins);
    sqlite3_finalize(s->upd);
    sqlite3_finalize(s->del);
    sqlite3_finalize(s->has);
    sqlite3_finalize(s->diff);
    free(s->table);
    free(s->target);
    free(s->use);
    free(s->key);
    free(s->soft_value);
    free(s);
}

etl_status_t lite_prepare(lite_t *l, etl_ctx_t *ctx, const etl_sink_stream_t *spec,
                          lite_stream_t **out)
{
    const etl_schema_t *sc = spec->schema;
    int create = etl_opt_bool(ctx, "create", 1);
    lite_stream_t *s = calloc(1, sizeof *s);
    etl_schema_t *have = etl_schema_new(spec->table);
    etl_status_t st = ETL_OK;
    if (!s || !have)
        goto nomem;
    s->ncols = etl_schema_ncols(sc);
    s->mode = spec->write;
    s->conflict = spec->conflict;
    s->schema = sc;
    s->table = strdup(spec->table);
    s->target = spec->write == ETL_WRITE_REPLACE ? NULL : strdup(spec->table);
    if (spec->write == ETL_WRITE_REPLACE && asprintf(&s->target, "%s__etl_new", spec->table) < 0)
        s->target = NULL;
    s->use = calloc(s->ncols + 1, 1);
    s->key = calloc(s->ncols + 1, 1);
    if (!s->table || !s->target || !s->use || !s->key)
        goto nomem;

    int exists;
    if ((st = lite_columns(l, ctx, spec->table, have, &exists)) != ETL_OK)
        goto fail;
    if (!exists) {
        if (!create) {
            st = etl_fail(ctx, ETL_ERR_CONFIG, "no table '%s' in %s and create is off",
                          spec->table, l->path);
            goto fail;
        }
        if (spec->write != ETL_WRITE_REPLACE &&
            (st = create_table(l, ctx, spec->table, sc, spec->write != ETL_WRITE_APPEND,
                               spec->assigned_pk)) != ETL_OK)
            goto fail;
    } else {
        for (size_t i = 0; i < s->ncols; i++) {
            const etl_column_t *c = etl_schema_col(sc, i);
            if (etl_schema_find(have, c->name) >= 0 || (c->flags & ETL_COL_HIDDEN))
                continue;
            if (etl_dry_run(ctx)) {
                etl_log(ctx, ETL_LOG_INFO, "dry run: column %s would be added to table %s",
                        c->name, spec->table);
                continue;
            }
            if (!create) {
                etl_log(ctx, ETL_LOG_WARN, "table %s has no column %s: not written",
                        spec->table, c->name);
                continue;
            }
            sqlbuf_t b;
            sb_init(&b);
            sb_add(&b, "ALTER TABLE ");
            sb_ident(&b, spec->table);
            sb_add(&b, " ADD COLUMN ");
            etl_column_t nc = *c;
            nc.flags &= ~(unsigned)ETL_COL_NOT_NULL; /* existing rows have no value */
            add_column_def(&b, &nc);
            st = exec(l, ctx, sb_str(&b), "add column");
            sb_free(&b);
            if (st != ETL_OK)
                goto fail;
            etl_log(ctx, ETL_LOG_INFO, "added column %s to table %s", c->name, spec->table);
            etl_schema_add(have, c->name, c->type, NULL, 0);
        }
    }
    /* what is written: columns the table has, minus generated ones */
    for (size_t i = 0; i < s->ncols; i++) {
        const etl_column_t *c = etl_schema_col(sc, i);
        int h = etl_schema_find(have, c->name);
        s->use[i] = !(c->flags & ETL_COL_HIDDEN) &&
                    (!exists || (h >= 0 && !(etl_schema_col(have, (size_t)h)->flags &
                                             ETL_COL_GENERATED)));
        s->key[i] = (c->flags & ETL_COL_KEY) != 0;
        s->nkeys += s->key[i];
    }
    if (spec->soft_delete) {
        s->soft = 1;
        if (spec->soft_delete_value && !(s->soft_value = strdup(spec->soft_delete_value)))
            goto nomem;
        if (etl_schema_find(sc, spec->soft_delete) < 0 && exists &&
            etl_schema_find(have, spec->soft_delete) < 0 && etl_dry_run(ctx)) {
            s->soft = 0; /* no column to set: counted as deletes, rolled back */
        } else if (etl_schema_find(sc, spec->soft_delete) < 0 && exists &&
                   etl_schema_find(have, spec->soft_delete) < 0) {
            if (!create) {
                st = etl_fail(ctx, ETL_ERR_CONFIG, "table %s has no soft-delete column %s",
                              spec->table, spec->soft_delete);
                goto fail;
            }
            sqlbuf_t b;
            sb_init(&b);
            sb_add(&b, "ALTER TABLE ");
            sb_ident(&b, spec->table);
            sb_add(&b, " ADD COLUMN ");
            sb_ident(&b, spec->soft_delete);
            sb_add(&b, spec->soft_delete_value ? " TEXT" : " TIMESTAMP");
            st = exec(l, ctx, sb_str(&b), "add soft-delete column");
            sb_free(&b);
            if (st != ETL_OK)
                goto fail;
        } else if (!exists && etl_schema_find(sc, spec->soft_delete) < 0 &&
                   spec->write != ETL_WRITE_REPLACE) {
            sqlbuf_t b;
            sb_init(&b);
            sb_add(&b, "ALTER TABLE ");
            sb_ident(&b, spec->table);
            sb_add(&b, " ADD COLUMN ");
            sb_ident(&b, spec->soft_delete);
            sb_add(&b, spec->soft_delete_value ? " TEXT" : " TIMESTAMP");
            st = exec(l, ctx, sb_str(&b), "add soft-delete column");
            sb_free(&b);
            if (st != ETL_OK)
                goto fail;
        }
    }
    if (spec->write == ETL_WRITE_REPLACE) {
        if ((st = create_staging(l, ctx, s, sc, exists)) != ETL_OK)
            goto fail;
    } else if (spec->write != ETL_WRITE_APPEND &&
               (st = ensure_unique(l, ctx, spec->table, sc)) != ETL_OK) {
        goto fail;
    }
    if ((st = build_statements(l, ctx, s, spec)) != ETL_OK)
        goto fail;
    etl_schema_free(have);
    *out = s;
    return ETL_OK;
nomem:
    st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
fail:
    etl_schema_free(have);
    stream_free(s);
    return st;
}

etl_status_t lite_begin(lite_t *l, etl_ctx_t *ctx)
{
    return exec(l, ctx, "BEGIN IMMEDIATE", "begin");
}

etl_status_t lite_commit(lite_t *l, etl_ctx_t *ctx) { return exec(l, ctx, "COMMIT", "commit"); }

void lite_rollback(lite_t *l, etl_ctx_t *ctx)
{
    (void)ctx;
    if (!sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}

void lite_bind(sqlite3_stmt *q, int idx, const etl_value_t *v)
{
    switch (v->type) {
    case ETL_T_NULL:
        sqlite3_bind_null(q, idx);
        break;
    case ETL_T_BOOL:
    case ETL_T_INT:
        sqlite3_bind_int64(q, idx, v->v.i);
        break;
    case ETL_T_DOUBLE:
        /* SQLite stores a NaN REAL as NULL: keep it as the text PostgreSQL reads */
        if (v->v.d != v->v.d)
            sqlite3_bind_text(q, idx, "NaN", 3, SQLITE_STATIC);
        else
            sqlite3_bind_double(q, idx, v->v.d);
        break;
    case ETL_T_BLOB:
        sqlite3_bind_blob(q, idx, v->v.s, (int)v->len, SQLITE_STATIC);
        break;
    case ETL_T_TIMESTAMP: {
        char buf[40];
        size_t n = etl_ts_format(v->v.i, buf, sizeof buf);
        sqlite3_bind_text(q, idx, buf, (int)n, SQLITE_TRANSIENT);
        break;
    }
    default:
        sqlite3_bind_text(q, idx, v->v.s ? v->v.s : "", (int)v->len, SQLITE_STATIC);
    }
}

static void bind_row(lite_stream_t *s, sqlite3_stmt *q, const etl_value_t *row)
{
    for (size_t i = 0; i < s->ncols; i++)
        if (s->use[i])
            lite_bind(q, (int)i + 1, &row[i]);
}

/* A statement failed for one row: is it that row's fault, or the batch's? */
static int row_error(lite_t *l)
{
    int code = sqlite3_extended_errcode(l->db) & 0xff;
    return code == SQLITE_CONSTRAINT || code == SQLITE_MISMATCH || code == SQLITE_TOOBIG ||
           code == SQLITE_RANGE;
}

/* Whether the row's key is in the table (the key columns are bound). */
static int key_exists(lite_stream_t *s, const etl_value_t *row)
{
    if (!s->has)
        return 0;
    bind_row(s, s->has, row);
    int rc = sqlite3_step(s->has);
    sqlite3_reset(s->has);
    return rc == SQLITE_ROW;
}

/* A key conflict (the row is there) rather than another constraint. */
static int key_conflict(lite_t *l)
{
    int code = sqlite3_extended_errcode(l->db);
    return code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE ||
           code == SQLITE_CONSTRAINT_ROWID;
}

etl_status_t lite_write(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, etl_rows_t *rows)
{
    char why[512];
    for (size_t i = 0; i < rows->nrows; i++) {
        const etl_value_t *row = etl_rows_row(rows, i);
        bind_row(s, s->ins, row);
        int rc = sqlite3_step(s->ins);
        sqlite3_reset(s->ins);
        if (rc == SQLITE_DONE) {
            rows->outcome[i] = ETL_OUT_CREATED;
            continue;
        }
        if (!row_error(l))
            return lite_fail(l, ctx, "insert");
        snprintf(why, sizeof why, "%s", sqlite3_errmsg(l->db));
        /* another constraint, or a key conflict where the key is not there
         * (a unique column beside it): the row fails */
        if (s->mode == ETL_WRITE_APPEND || !key_conflict(l) || !key_exists(s, row)) {
            etl_rows_fail(rows, i, "%s", why);
            continue;
        }
        if (!s->upd) {
            rows->outcome[i] = s->mode == ETL_WRITE_INSERT || s->conflict == ETL_CONFLICT_SINK
                                   ? ETL_OUT_SKIPPED
                                   : ETL_OUT_UNCHANGED;
            continue;
        }
        bind_row(s, s->upd, row);
        rc = sqlite3_step(s->upd);
        sqlite3_reset(s->upd);
        if (rc != SQLITE_DONE) {
            if (!row_error(l))
                return lite_fail(l, ctx, "update");
            etl_rows_fail(rows, i, "%s", sqlite3_errmsg(l->db));
            continue;
        }
        if (sqlite3_changes(l->db)) {
            rows->outcome[i] = ETL_OUT_UPDATED;
            continue;
        }
        /* no change: identical, or a different row kept by the conflict rule */
        rows->outcome[i] = ETL_OUT_UNCHANGED;
        if (s->diff) {
            bind_row(s, s->diff, row);
            if (sqlite3_step(s->diff) == SQLITE_ROW)
                rows->outcome[i] = ETL_OUT_SKIPPED;
            sqlite3_reset(s->diff);
        }
    }
    return ETL_OK;
}

etl_status_t lite_remove(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, etl_rows_t *keys)
{
    if (!s->del)
        return etl_fail(ctx, ETL_ERR_CONFIG, "table %s: deletes need a key", s->table);
    size_t nk = etl_schema_ncols(keys->schema);
    char now[40];
    etl_ts_format((int64_t)time(NULL) * 1000000, now, sizeof now);
    for (size_t i = 0; i < keys->nrows; i++) {
        const etl_value_t *row = etl_rows_row(keys, i);
        for (size_t k = 0; k < nk; k++)
            lite_bind(s->del, (int)k + 1, &row[k]);
        if (s->soft)
            sqlite3_bind_text(s->del, (int)nk + 1, s->soft_value ? s->soft_value : now, -1,
                              SQLITE_STATIC);
        int rc = sqlite3_step(s->del);
        sqlite3_reset(s->del);
        if (rc != SQLITE_DONE) {
            if (!row_error(l))
                return lite_fail(l, ctx, "delete");
            etl_rows_fail(keys, i, "%s", sqlite3_errmsg(l->db));
            continue;
        }
        keys->outcome[i] = sqlite3_changes(l->db) ? ETL_OUT_DELETED : ETL_OUT_UNCHANGED;
    }
    return ETL_OK;
}

/* Replaces the table by its staging copy in one transaction, indexes and
 * triggers recreated: readers see the old rows or the new ones. */
static etl_status_t swap_in(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s)
{
    sqlite3_stmt *q = NULL;
    char **extra = NULL;
    size_t nextra = 0;
    etl_status_t st = exec(l, ctx, "BEGIN IMMEDIATE", "begin");
    if (st != ETL_OK)
        return st;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT sql FROM sqlite_master WHERE tbl_name=?1 AND sql IS NOT NULL"
                           " AND type IN ('index','trigger') ORDER BY type",
                           -1, &q, NULL) != SQLITE_OK) {
        st = lite_fail(l, ctx, "indexes");
        goto fail;
    }
    sqlite3_bind_text(q, 1, s->table, -1, SQLITE_STATIC);
    while (sqlite3_step(q) == SQLITE_ROW) {
        char **v = realloc(extra, (nextra + 1) * sizeof *v);
        if (!v) {
            st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        extra = v;
        extra[nextra++] = strdup((const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    q = NULL;
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "PRAGMA legacy_alter_table=ON; DROP TABLE IF EXISTS ");
    sb_ident(&b, s->table);
    sb_add(&b, "; ALTER TABLE ");
    sb_ident(&b, s->target);
    sb_add(&b, " RENAME TO ");
    sb_ident(&b, s->table);
    sb_add(&b, "; PRAGMA legacy_alter_table=OFF;");
    st = exec(l, ctx, sb_str(&b), "swap tables");
    sb_free(&b);
    for (size_t i = 0; st == ETL_OK && i < nextra; i++)
        if (extra[i])
            st = exec(l, ctx, extra[i], "recreate index");
    if (st != ETL_OK)
        goto fail;
    st = exec(l, ctx, "COMMIT", "commit");
    if (st != ETL_OK)
        goto fail;
    for (size_t i = 0; i < nextra; i++)
        free(extra[i]);
    free(extra);
    return ETL_OK;
fail:
    sqlite3_finalize(q);
    sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    for (size_t i = 0; i < nextra; i++)
        free(extra[i]);
    free(extra);
    return st;
}

etl_status_t lite_finish(lite_t *l, etl_ctx_t *ctx, lite_stream_t *s, int ok)
{
    etl_status_t st = ETL_OK;
    if (s->mode == ETL_WRITE_REPLACE) {
        /* statements on the staging table must go before it is renamed */
        sqlite3_finalize(s->ins);
        sqlite3_finalize(s->upd);
        sqlite3_finalize(s->del);
        sqlite3_finalize(s->has);
        sqlite3_finalize(s->diff);
        s->ins = s->upd = s->del = s->has = s->diff = NULL;
        if (ok) {
            st = swap_in(l, ctx, s);
        }
        if (!ok || st != ETL_OK) {
            sqlbuf_t b;
            sb_init(&b);
            sb_add(&b, dry_kw(ctx, "DROP TABLE IF EXISTS temp.", "DROP TABLE IF EXISTS "));
            sb_ident(&b, s->target);
            sqlite3_exec(l->db, sb_str(&b), NULL, NULL, NULL);
            sb_free(&b);
        }
    }
    stream_free(s);
    return st;
}
