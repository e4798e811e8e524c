/*
 * pa.c - etl-pythonanywhere.so: the shop's remote store (a Django REST API
 * hosted on PythonAnywhere) as a sink. See docs/pythonanywhere.md.
 *
 * A stream is sent to an endpoint by its table name (the stream's `table:`,
 * default its name): `products` to products_path, `receipts` to
 * receipts_path. A row becomes a JSON object, column -> field (pa_doc.c);
 * a receipt's sales and payments are json columns the core fills from the
 * pipeline's `nest:`, embedded as arrays. Batches are POSTed by pa_sync.c,
 * tokens handled by pa_auth.c.
 *
 * Transactions: an HTTP API cannot roll back, so begin() and rollback() do
 * nothing and commit() has nothing left to do: an item is on the server
 * once its POST answered. The core records the checkpoint and the ledger
 * after commit() returns; a crash between a POST and that record means the
 * batch is sent again next run, which the server's dedup (local ids for
 * receipts, sales and payments; barcode or brand+size+color+location for
 * products) makes harmless.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pa.h"

#define PA_MAX_BATCH 1000

static const etl_option_def_t pa_options[] = {
    {"username", ETL_OPT_STRING, 1, NULL, 0, "the API user's name", NULL},
    {"password", ETL_OPT_STRING, 1, NULL, 1, "the API user's password", NULL},
    {"token_path", ETL_OPT_STRING, 0, "/api/oem/token/", 0,
     "the login endpoint, relative to base_url", NULL},
    {"refresh_path", ETL_OPT_STRING, 0, "/api/oem/token/refresh/", 0,
     "the token refresh endpoint, relative to base_url", NULL},
    {"products_path", ETL_OPT_STRING, 0, "/api/oem/sync/products/", 0,
     "where the table `products` is POSTed, relative to base_url", NULL},
    {"receipts_path", ETL_OPT_STRING, 0, "/api/oem/sync/receipts/", 0,
     "where the table `receipts` is POSTed, relative to base_url", NULL},
    {"batch_products", ETL_OPT_INT, 0, "50", 0,
     "products per request, 1..1000 (a 413 halves it)", NULL},
    {"batch_receipts", ETL_OPT_INT, 0, "20", 0,
     "receipts per request, 1..1000 (a 413 halves it)", NULL},
    ETL_HTTP_OPTIONS,
    {NULL, 0, 0, NULL, 0, NULL, NULL},
};

/* Fields of the contract, for a debug line naming the extra columns sent
 * (the server ignores fields it does not know). */
static const char *const pa_product_fields[] = {
    "barcode_number", "brand",         "size",     "color",      "location", "name",
    "category",       "cost_price",    "selling_price", "quantity", "updated_at", NULL};
static const char *const pa_receipt_fields[] = {
    "local_receipt_id", "receipt_number", "customer_name", "total_amount", "discount_amount",
    "discount_percentage", "delivery_cost", "created_at", "sales", "payments", NULL};

/* ------------------------------------------------------------ open, close */

static void pa_close(void *self)
{
    pa_t *p = self;
    if (!p)
        return;
    etl_http_close(p->http);
    free(p->access);
    free(p->refresh);
    free(p->auth_error);
    free(p);
}

static etl_status_t pa_batch_opt(etl_ctx_t *ctx, const char *name, int64_t dflt, size_t *out)
{
    int64_t v = etl_opt_int(ctx, name, dflt);
    if (v < 1 || v > PA_MAX_BATCH)
        return etl_fail(ctx, ETL_ERR_CONFIG, "option %s: %lld is out of range (expected 1..%d)",
                        name, (long long)v, PA_MAX_BATCH);
    *out = (size_t)v;
    return ETL_OK;
}

static etl_status_t pa_open(etl_ctx_t *ctx, void **self)
{
    etl_status_t st;
    pa_t *p = calloc(1, sizeof *p);
    if (!p)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    p->username = etl_opt(ctx, "username");
    p->password = etl_opt(ctx, "password");
    p->token_path = etl_opt(ctx, "token_path");
    p->refresh_path = etl_opt(ctx, "refresh_path");
    p->products_path = etl_opt(ctx, "products_path");
    p->receipts_path = etl_opt(ctx, "receipts_path");
    if (!p->username || !p->password || !p->token_path || !p->refresh_path ||
        !p->products_path || !p->receipts_path) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "options username and password are required");
        goto fail;
    }
    if ((st = pa_batch_opt(ctx, "batch_products", 50, &p->batch_products)) != ETL_OK ||
        (st = pa_batch_opt(ctx, "batch_receipts", 20, &p->batch_receipts)) != ETL_OK)
        goto fail;
    if (!(p->http = etl_http_open(ctx))) {
        st = ETL_ERR_CONFIG;
        goto fail;
    }
    if (!etl_http_base_url(p->http)) {
        /* there is no public default: every shop has its own host */
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "option base_url is required (the API's root, e.g. "
                      "https://SHOP.pythonanywhere.com)");
        goto fail;
    }
    /* a POST cannot be rolled back: a dry run sends nothing */
    p->dry_run = etl_dry_run(ctx);
    *self = p;
    return ETL_OK;
fail:
    pa_close(p);
    return st;
}

/* `etl check`: the credentials are tried (one login, nothing sent). */
static etl_status_t pa_check(void *self, etl_ctx_t *ctx)
{
    pa_t *p = self;
    etl_status_t st = pa_login(p, ctx);
    if (st == ETL_OK)
        etl_log(ctx, ETL_LOG_INFO, "logged in to %s as %s", etl_http_base_url(p->http),
                p->username);
    return st;
}

/* ------------------------------------------------------------ streams */

static void pa_stream_free(pa_stream_t *s)
{
    if (!s)
        return;
    free(s->table);
    pa_buf_free(&s->items);
    pa_buf_free(&s->body);
    free(s->off);
    free(s->len);
    free(s->idx);
    free(s);
}

static int pa_listed(const char *const *l, const char *name)
{
    for (; *l; l++)
        if (strcmp(*l, name) == 0)
            return 1;
    return 0;
}

static etl_status_t pa_prepare(void *self, etl_ctx_t *ctx, const etl_sink_stream_t *spec,
                               void **stream)
{
    pa_t *p = self;
    const etl_schema_t *sc = spec->schema;
    const char *need;
    const char *const *fields;
    etl_status_t st;
    pa_stream_t *s = calloc(1, sizeof *s);
    if (!s || !(s->table = strdup(spec->table))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (strcmp(spec->table, "products") == 0) {
        s->kind = PA_PRODUCTS;
        s->path = p->products_path;
        s->member = "products";
        s->batch = p->batch_products;
        need = "name";
        fields = pa_product_fields;
    } else if (strcmp(spec->table, "receipts") == 0) {
        s->kind = PA_RECEIPTS;
        s->path = p->receipts_path;
        s->member = "receipts";
        s->batch = p->batch_receipts;
        need = "local_receipt_id";
        fields = pa_receipt_fields;
    } else {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "no endpoint for table '%s' (expected products or receipts: set the "
                      "stream's table:)",
                      spec->table);
        goto fail;
    }
    if (spec->write == ETL_WRITE_REPLACE || spec->write == ETL_WRITE_APPEND) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "write: %s cannot be done through this API (it matches and deduplicates "
                      "every item, and deletes nothing); use write: upsert",
                      spec->write == ETL_WRITE_REPLACE ? "replace" : "append");
        goto fail;
    }
    if (spec->write == ETL_WRITE_INSERT && s->kind == PA_PRODUCTS) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "write: insert cannot be honoured for products (the server updates a "
                      "product it matches); use write: upsert");
        goto fail;
    }
    if (etl_schema_find(sc, need) < 0) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "table %s: no column '%s', which the server requires%s", spec->table, need,
                      s->kind == PA_RECEIPTS ? " (rename the local id: rename: {id: "
                                               "local_receipt_id})"
                                             : "");
        goto fail;
    }
    if (etl_log_enabled(ctx, ETL_LOG_DEBUG)) {
        for (size_t i = 0; i < etl_schema_ncols(sc); i++) {
            const etl_column_t *c = etl_schema_col(sc, i);
            if (!pa_listed(fields, c->name) && !(c->flags & (ETL_COL_HIDDEN | ETL_COL_GENERATED)))
                etl_log(ctx, ETL_LOG_DEBUG,
                        "%s: column '%s' is not a field of the contract; sent anyway (the "
                        "server ignores fields it does not know)",
                        spec->table, c->name);
        }
    }
    *stream = s;
    return ETL_OK;
fail:
    pa_stream_free(s);
    return st;
}

/* Nothing to open: an HTTP API has no transaction (see the top of the file). */
static etl_status_t pa_begin(void *self, etl_ctx_t *ctx)
{
    (void)self;
    (void)ctx;
    return ETL_OK;
}

static etl_status_t pa_write(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *rows)
{
    return pa_sync(self, stream, ctx, rows);
}

/* What write() sent is on the server already; the core records the
 * checkpoint and the ledger once this returns. */
static etl_status_t pa_commit(void *self, etl_ctx_t *ctx)
{
    (void)self;
    (void)ctx;
    return ETL_OK;
}

/* A POST cannot be taken back; a batch that failed half-way is sent again
 * whole (the core retries it, or the next run reads it again) and the
 * server skips what it has. */
static void pa_rollback(void *self, etl_ctx_t *ctx)
{
    (void)self;
    (void)ctx;
}

static etl_status_t pa_finish(void *self, etl_ctx_t *ctx, void *stream, int ok)
{
    pa_t *p = self;
    pa_stream_t *s = stream;
    (void)ok;
    if (s->requests)
        etl_log(ctx, ETL_LOG_INFO,
                "%s: %lld item(s) in %lld request(s) to %s: server says created %lld, updated "
                "%lld, skipped %lld, refused %lld%s%s (logins %d, token refreshes %d)",
                s->table, (long long)s->sent, (long long)s->requests, s->path,
                (long long)s->created, (long long)s->updated, (long long)s->skipped,
                (long long)s->refused, s->too_large ? "; batch halved after 413" : "",
                s->bisected ? "; refused batches split" : "", p->logins, p->refreshes);
    pa_stream_free(s);
    return ETL_OK;
}

/* ------------------------------------------------------------ descriptor */

static const etl_sink_ops_t pa_sink = {
    .open = pa_open,
    .check = pa_check,
    .prepare = pa_prepare,
    .begin = pa_begin,
    .write = pa_write,
    .remove = NULL, /* the API deletes nothing */
    .commit = pa_commit,
    .rollback = pa_rollback,
    .finish = pa_finish,
    .close = pa_close,
};

static const etl_plugin_t pa_plugin = {
    .abi_version = ETL_ABI_VERSION,
    .struct_size = sizeof(etl_plugin_t),
    .name = "pythonanywhere",
    .version = "0.1.0",
    .description = "the shop's remote store API (products, receipts with sales and payments) "
                   "as a sink: JWT login, batched idempotent POSTs",
    .options = pa_options,
    .source = NULL,
    .sink = &pa_sink,
};

ETL_PLUGIN(pa_plugin)
