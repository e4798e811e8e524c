/*
 * pgsqlite.c - the pgsqlite plugin: PostgreSQL and SQLite as source and
 * sink. This file holds the descriptor, the options and the dispatch on the
 * URL's scheme; each dialect lives in its own files.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"

typedef struct pgsqlite {
    lite_t *lite; /* exactly one of the two */
    pg_t *pg;
} pgsqlite_t;

static const etl_option_def_t options[] = {
    {"url", ETL_OPT_STRING, 1, NULL, 0,
     "sqlite:PATH (relative to the pipeline), sqlite:///ABSOLUTE/PATH or postgres://...", NULL},
    {"schema", ETL_OPT_STRING, 0, "public", 0, "PostgreSQL schema of the tables", NULL},
    {"create", ETL_OPT_BOOL, 0, "true", 0, "create missing sink tables and add new columns",
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, NULL},
};

/* "sqlite:rel/path", "sqlite:/abs", "sqlite:///abs" -> a path (caller frees). */
static char *sqlite_path(etl_ctx_t *ctx, const char *url)
{
    const char *p = url + strlen("sqlite:");
    if (strncmp(p, "///", 3) == 0)
        p += 2;
    else if (strncmp(p, "//", 2) == 0)
        p += 2; /* sqlite://relative/path */
    return etl_path(ctx, p);
}

static etl_status_t pgsqlite_open(etl_ctx_t *ctx, int sink, void **self)
{
    const char *url = etl_opt(ctx, "url");
    pgsqlite_t *p = calloc(1, sizeof *p);
    if (!p)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    etl_status_t st;
    if (strncmp(url, "sqlite:", 7) == 0) {
        char *path = sqlite_path(ctx, url);
        if (!path) {
            free(p);
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        }
        st = lite_open(ctx, path, sink, &p->lite);
        free(path);
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        st = pg_open(ctx, url, sink, &p->pg);
    } else {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "url '%s' (expected sqlite:PATH, sqlite:///ABS or postgres://...)", url);
    }
    if (st != ETL_OK) {
        free(p);
        return st;
    }
    *self = p;
    return ETL_OK;
}

static etl_status_t src_open(etl_ctx_t *ctx, void **self) { return pgsqlite_open(ctx, 0, self); }
static etl_status_t sink_open(etl_ctx_t *ctx, void **self) { return pgsqlite_open(ctx, 1, self); }

static void pgsqlite_close(void *self)
{
    pgsqlite_t *p = self;
    if (!p)
        return;
    lite_close(p->lite);
    pg_close(p->pg);
    free(p);
}

/* Each operation goes to the dialect the instance was opened on. */
#define DISPATCH(self, lite_call, pg_call)                                                         \
    do {                                                                                           \
        pgsqlite_t *p_ = (self);                                                                   \
        return p_->lite ? lite_call : pg_call;                                                     \
    } while (0)

static etl_status_t pgsqlite_check(void *self, etl_ctx_t *ctx)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_check(p->lite, ctx), pg_check(p->pg, ctx));
}

static etl_status_t pgsqlite_streams(void *self, etl_ctx_t *ctx, void (*cb)(void *, const char *),
                                     void *arg)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_streams(p->lite, ctx, cb, arg), pg_streams(p->pg, ctx, cb, arg));
}

static etl_status_t pgsqlite_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_discover(p->lite, ctx, out), pg_discover(p->pg, ctx, out));
}

static etl_status_t pgsqlite_read(void *self, etl_ctx_t *ctx, const etl_read_t *req,
                                  etl_emitter_t *em)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_read(p->lite, ctx, req, em), pg_read(p->pg, ctx, req, em));
}

static etl_status_t pgsqlite_prepare(void *self, etl_ctx_t *ctx, const etl_sink_stream_t *spec,
                                     void **stream)
{
    pgsqlite_t *p = self;
    /* a NULL key never conflicts in a unique index: every change of such a
     * record would insert another row */
    if (spec->nfallback_key)
        return etl_fail(ctx, ETL_ERR_CONFIG,
                        "stream %s: fallback_key is not supported by a database sink (rows whose "
                        "key is NULL cannot be matched); give the table a key that is never NULL",
                        spec->stream);
    DISPATCH(p, lite_prepare(p->lite, ctx, spec, (lite_stream_t **)stream),
             pg_prepare(p->pg, ctx, spec, (pg_stream_t **)stream));
}

static etl_status_t pgsqlite_begin(void *self, etl_ctx_t *ctx)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_begin(p->lite, ctx), pg_begin(p->pg, ctx));
}

static etl_status_t pgsqlite_write(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *rows)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_write(p->lite, ctx, stream, rows), pg_write(p->pg, ctx, stream, rows));
}

static etl_status_t pgsqlite_remove(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *keys)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_remove(p->lite, ctx, stream, keys), pg_remove(p->pg, ctx, stream, keys));
}

static etl_status_t pgsqlite_commit(void *self, etl_ctx_t *ctx)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_commit(p->lite, ctx), pg_commit(p->pg, ctx));
}

static void pgsqlite_rollback(void *self, etl_ctx_t *ctx)
{
    pgsqlite_t *p = self;
    if (p->lite)
        lite_rollback(p->lite, ctx);
    else
        pg_rollback(p->pg, ctx);
}

static etl_status_t pgsqlite_finish(void *self, etl_ctx_t *ctx, void *stream, int ok)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_finish(p->lite, ctx, stream, ok), pg_finish(p->pg, ctx, stream, ok));
}

static void *pgsqlite_native(void *self, const char **kind, const char **location)
{
    pgsqlite_t *p = self;
    if (p->pg) {
        *kind = "libpq";
        *location = p->pg->where;
        return p->pg->conn;
    }
    *kind = "sqlite3";
    *location = p->lite->path;
    return p->lite->db;
}

static etl_status_t pgsqlite_lookup(void *self, etl_ctx_t *ctx, const char *table, const char *by,
                                    const char *want, const etl_value_t *in, size_t n,
                                    etl_value_t *out)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_lookup(p->lite, ctx, table, by, want, in, n, out),
             pg_lookup(p->pg, ctx, table, by, want, in, n, out));
}

static etl_status_t pgsqlite_assign(void *self, etl_ctx_t *ctx, const char *table, const char *by,
                                    const etl_value_t *by_value, const char *col,
                                    const etl_value_t *value)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_assign(p->lite, ctx, table, by, by_value, col, value),
             pg_assign(p->pg, ctx, table, by, by_value, col, value));
}

static etl_status_t pgsqlite_fetch(void *self, etl_ctx_t *ctx, void *stream,
                                   const etl_rows_t *keys, etl_value_t *out, unsigned char *found)
{
    pgsqlite_t *p = self;
    DISPATCH(p, lite_fetch(p->lite, ctx, stream, keys, out, found),
             pg_fetch(p->pg, ctx, stream, keys, out, found));
}

static const etl_source_ops_t source_ops = {
    .open = src_open,
    .check = pgsqlite_check,
    .streams = pgsqlite_streams,
    .discover = pgsqlite_discover,
    .read = pgsqlite_read,
    .close = pgsqlite_close,
};

static const etl_sink_ops_t sink_ops = {
    .open = sink_open,
    .check = pgsqlite_check,
    .prepare = pgsqlite_prepare,
    .begin = pgsqlite_begin,
    .write = pgsqlite_write,
    .remove = pgsqlite_remove,
    .commit = pgsqlite_commit,
    .rollback = pgsqlite_rollback,
    .finish = pgsqlite_finish,
    .close = pgsqlite_close,
    .native = pgsqlite_native,
    .lookup = pgsqlite_lookup,
    .assign = pgsqlite_assign,
    .fetch = pgsqlite_fetch,
};

static const etl_plugin_t descriptor = {
    .abi_version = ETL_ABI_VERSION,
    .struct_size = sizeof(etl_plugin_t),
    .name = "pgsqlite",
    .version = "0.1.0",
    .description = "PostgreSQL and SQLite tables, both directions",
    .options = options,
    .source = &source_ops,
    .sink = &sink_ops,
};

ETL_PLUGIN(descriptor)
