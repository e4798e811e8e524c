/*
 * square.c - etl-square.so: Square (locations, catalog, inventory, orders)
 * as a source. This file holds the descriptor, the options, the streams and
 * their columns, and open / check / discover / read; the API helpers are in
 * sq_api.c, the object-to-row mapping in sq_map.c, one reader per API in
 * sq_locations.c, sq_catalog.c, sq_inventory.c and sq_orders.c.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "square.h"

#define SQ_PRODUCTION "https://connect.squareup.com"
#define SQ_SANDBOX "https://connect.squareupsandbox.com"

static const etl_option_def_t sq_options[] = {
    {"token", ETL_OPT_STRING, 1, NULL, 1,
     "a Square access token (personal or OAuth), sent as Authorization: Bearer", NULL},
    {"environment", ETL_OPT_ENUM, 0, "production", 0,
     "production (https://connect.squareup.com) or sandbox "
     "(https://connect.squareupsandbox.com); base_url overrides it",
     "production|sandbox"},
    {"version", ETL_OPT_STRING, 0, SQ_DEFAULT_VERSION, 0,
     "the Square-Version header, YYYY-MM-DD", NULL},
    {"location_ids", ETL_OPT_LIST, 0, NULL, 0,
     "location ids to read (locations, inventory, orders); default: every location", NULL},
    {"page_size", ETL_OPT_INT, 0, "1000", 0,
     "objects asked for per page, 1..1000 (a stream's select: {limit: N} overrides it)", NULL},
    ETL_HTTP_OPTIONS,
    {NULL, 0, 0, NULL, 0, NULL, NULL},
};

/* ------------------------------------------------------------ columns */

/* CatalogObject's own fields, first in every catalog stream. */
#define SQ_CATALOG_COMMON                                                                      \
    {"id", ETL_T_TEXT, "id"}, {"type", ETL_T_TEXT, "type"}, {"version", ETL_T_INT, "version"}, \
        {"present_at_all_locations", ETL_T_BOOL, "present_at_all_locations"},                  \
        {"updated_at", ETL_T_TIMESTAMP, "updated_at"}

static const sq_col_t locations_cols[] = {
    {"id", ETL_T_TEXT, "id"},
    {"name", ETL_T_TEXT, "name"},
    {"status", ETL_T_TEXT, "status"},
    {"type", ETL_T_TEXT, "type"},
    {"business_name", ETL_T_TEXT, "business_name"},
    {"description", ETL_T_TEXT, "description"},
    {"timezone", ETL_T_TEXT, "timezone"},
    {"currency", ETL_T_TEXT, "currency"},
    {"country", ETL_T_TEXT, "country"},
    {"language_code", ETL_T_TEXT, "language_code"},
    {"merchant_id", ETL_T_TEXT, "merchant_id"},
    {"phone_number", ETL_T_TEXT, "phone_number"},
    {"business_email", ETL_T_TEXT, "business_email"},
    {"website_url", ETL_T_TEXT, "website_url"},
    {"mcc", ETL_T_TEXT, "mcc"},
    {"created_at", ETL_T_TIMESTAMP, "created_at"},
    {"address_line_1", ETL_T_TEXT, "address.address_line_1"},
    {"address_line_2", ETL_T_TEXT, "address.address_line_2"},
    {"locality", ETL_T_TEXT, "address.locality"},
    {"administrative_district_level_1", ETL_T_TEXT, "address.administrative_district_level_1"},
    {"postal_code", ETL_T_TEXT, "address.postal_code"},
    {"address_country", ETL_T_TEXT, "address.country"},
    {"latitude", ETL_T_DOUBLE, "coordinates.latitude"},
    {"longitude", ETL_T_DOUBLE, "coordinates.longitude"},
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_col_t categories_cols[] = {
    SQ_CATALOG_COMMON,
    {"name", ETL_T_TEXT, "category_data.name"},
    {"category_type", ETL_T_TEXT, "category_data.category_type"},
    {"is_top_level", ETL_T_BOOL, "category_data.is_top_level"},
    {"parent_category_id", ETL_T_TEXT, "category_data.parent_category.id"},
    {"root_category", ETL_T_TEXT, "category_data.root_category"},
    {"online_visibility", ETL_T_BOOL, "category_data.online_visibility"},
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_col_t items_cols[] = {
    SQ_CATALOG_COMMON,
    {"name", ETL_T_TEXT, "item_data.name"},
    {"description", ETL_T_TEXT, "item_data.description"},
    {"description_html", ETL_T_TEXT, "item_data.description_html"},
    {"description_plaintext", ETL_T_TEXT, "item_data.description_plaintext"},
    {"abbreviation", ETL_T_TEXT, "item_data.abbreviation"},
    {"label_color", ETL_T_TEXT, "item_data.label_color"},
    {"product_type", ETL_T_TEXT, "item_data.product_type"},
    {"category_id", ETL_T_TEXT, "item_data.category_id"},
    {"reporting_category_id", ETL_T_TEXT, "item_data.reporting_category.id"},
    {"is_taxable", ETL_T_BOOL, "item_data.is_taxable"},
    {"is_archived", ETL_T_BOOL, "item_data.is_archived"},
    {"is_alcoholic", ETL_T_BOOL, "item_data.is_alcoholic"},
    {"skip_modifier_screen", ETL_T_BOOL, "item_data.skip_modifier_screen"},
    {"sort_name", ETL_T_TEXT, "item_data.sort_name"},
    {"ecom_uri", ETL_T_TEXT, "item_data.ecom_uri"},
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_col_t variations_cols[] = {
    SQ_CATALOG_COMMON,
    {"item_id", ETL_T_TEXT, "item_variation_data.item_id"},
    {"name", ETL_T_TEXT, "item_variation_data.name"},
    {"sku", ETL_T_TEXT, "item_variation_data.sku"},
    {"upc", ETL_T_TEXT, "item_variation_data.upc"},
    {"ordinal", ETL_T_INT, "item_variation_data.ordinal"},
    {"pricing_type", ETL_T_TEXT, "item_variation_data.pricing_type"},
    {"price_amount", ETL_T_INT, "item_variation_data.price_money.amount"},
    {"price_currency", ETL_T_TEXT, "item_variation_data.price_money.currency"},
    {"track_inventory", ETL_T_BOOL, "item_variation_data.track_inventory"},
    {"inventory_alert_type", ETL_T_TEXT, "item_variation_data.inventory_alert_type"},
    {"inventory_alert_threshold", ETL_T_INT, "item_variation_data.inventory_alert_threshold"},
    {"sellable", ETL_T_BOOL, "item_variation_data.sellable"},
    {"stockable", ETL_T_BOOL, "item_variation_data.stockable"},
    {"service_duration", ETL_T_INT, "item_variation_data.service_duration"},
    {"available_for_booking", ETL_T_BOOL, "item_variation_data.available_for_booking"},
    {"measurement_unit_id", ETL_T_TEXT, "item_variation_data.measurement_unit_id"},
    {"user_data", ETL_T_TEXT, "item_variation_data.user_data"},
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_col_t counts_cols[] = {
    {"id", ETL_T_TEXT, NULL}, /* catalog_object_id:location_id:state */
    {"catalog_object_id", ETL_T_TEXT, "catalog_object_id"},
    {"catalog_object_type", ETL_T_TEXT, "catalog_object_type"},
    {"state", ETL_T_TEXT, "state"},
    {"location_id", ETL_T_TEXT, "location_id"},
    {"quantity", ETL_T_NUMERIC, "quantity"},
    {"is_estimated", ETL_T_BOOL, "is_estimated"},
    {"calculated_at", ETL_T_TIMESTAMP, "calculated_at"},
    {"updated_at", ETL_T_TIMESTAMP, "calculated_at"},
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_col_t orders_cols[] = {
    {"id", ETL_T_TEXT, "id"},
    {"location_id", ETL_T_TEXT, "location_id"},
    {"state", ETL_T_TEXT, "state"},
    {"version", ETL_T_INT, "version"},
    {"reference_id", ETL_T_TEXT, "reference_id"},
    {"customer_id", ETL_T_TEXT, "customer_id"},
    {"ticket_name", ETL_T_TEXT, "ticket_name"},
    {"source_name", ETL_T_TEXT, "source.name"},
    {"created_at", ETL_T_TIMESTAMP, "created_at"},
    {"closed_at", ETL_T_TIMESTAMP, "closed_at"},
    {"currency", ETL_T_TEXT, "total_money.currency"},
    {"total_amount", ETL_T_INT, "total_money.amount"},
    {"total_tax_amount", ETL_T_INT, "total_tax_money.amount"},
    {"total_discount_amount", ETL_T_INT, "total_discount_money.amount"},
    {"total_tip_amount", ETL_T_INT, "total_tip_money.amount"},
    {"total_service_charge_amount", ETL_T_INT, "total_service_charge_money.amount"},
    {"net_amount_due_amount", ETL_T_INT, "net_amount_due_money.amount"},
    {"updated_at", ETL_T_TIMESTAMP, "updated_at"},
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_col_t line_items_cols[] = {
    {"id", ETL_T_TEXT, "uid"},
    {"order_id", ETL_T_TEXT, NULL},    /* the order's id */
    {"location_id", ETL_T_TEXT, NULL}, /* the order's location */
    {"name", ETL_T_TEXT, "name"},
    {"variation_name", ETL_T_TEXT, "variation_name"},
    {"catalog_object_id", ETL_T_TEXT, "catalog_object_id"},
    {"catalog_version", ETL_T_INT, "catalog_version"},
    {"item_type", ETL_T_TEXT, "item_type"},
    {"quantity", ETL_T_NUMERIC, "quantity"},
    {"note", ETL_T_TEXT, "note"},
    {"currency", ETL_T_TEXT, "base_price_money.currency"},
    {"base_price_amount", ETL_T_INT, "base_price_money.amount"},
    {"variation_total_price_amount", ETL_T_INT, "variation_total_price_money.amount"},
    {"gross_sales_amount", ETL_T_INT, "gross_sales_money.amount"},
    {"total_tax_amount", ETL_T_INT, "total_tax_money.amount"},
    {"total_discount_amount", ETL_T_INT, "total_discount_money.amount"},
    {"total_service_charge_amount", ETL_T_INT, "total_service_charge_money.amount"},
    {"total_amount", ETL_T_INT, "total_money.amount"},
    {"updated_at", ETL_T_TIMESTAMP, NULL}, /* the order's updated_at */
    {"data", ETL_T_JSON, "$"},
    {NULL, ETL_T_NULL, NULL},
};

static const sq_stream_t sq_streams[] = {
    {"locations", locations_cols, NULL, NULL, sq_read_locations},
    {"catalog_categories", categories_cols, "updated_at", "CATEGORY", sq_read_catalog},
    {"catalog_items", items_cols, "updated_at", "ITEM", sq_read_catalog},
    {"catalog_variations", variations_cols, "updated_at", "ITEM_VARIATION", sq_read_catalog},
    {"inventory_counts", counts_cols, "updated_at", NULL, sq_read_inventory},
    {"orders", orders_cols, "updated_at", NULL, sq_read_orders},
    {"order_line_items", line_items_cols, "updated_at", NULL, sq_read_orders},
    {NULL, NULL, NULL, NULL, NULL},
};

static const sq_stream_t *sq_find_stream(const char *name)
{
    for (const sq_stream_t *d = sq_streams; d->name; d++)
        if (name && strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static etl_status_t sq_unknown_stream(etl_ctx_t *ctx, const char *name)
{
    char list[256] = "";
    for (const sq_stream_t *d = sq_streams; d->name; d++) {
        if (d != sq_streams)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, d->name, sizeof list - strlen(list) - 1);
    }
    return etl_fail(ctx, ETL_ERR_CONFIG, "no stream '%s' in square (streams: %s)",
                    name ? name : "", list);
}

/* ------------------------------------------------------------ instance */

static void sq_close(void *self)
{
    sq_t *s = self;
    if (!s)
        return;
    etl_http_response_free(&s->rs);
    etl_http_close(s->http);
    etl_json_scratch_free(s->scratch);
    free(s->conv.buf);
    sq_index_free(&s->index);
    for (size_t i = 0; i < s->nall_locs; i++)
        free(s->all_locs[i]);
    free(s->all_locs);
    free(s);
}

/* YYYY-MM-DD, as Square checks it (INVALID_SQUARE_VERSION_FORMAT otherwise). */
static int sq_version_ok(const char *v)
{
    if (!v || strlen(v) != 10)
        return 0;
    for (int i = 0; i < 10; i++) {
        int dash = i == 4 || i == 7;
        if (dash ? v[i] != '-' : (v[i] < '0' || v[i] > '9'))
            return 0;
    }
    return 1;
}

static etl_status_t sq_open(etl_ctx_t *ctx, void **self)
{
    etl_status_t st = ETL_OK;
    char *auth = NULL;
    sq_t *s = calloc(1, sizeof *s);
    if (!s || !(s->scratch = etl_json_scratch_new())) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    s->ctx = ctx;
    s->conv.scratch = s->scratch;
    const char *token = etl_opt(ctx, "token");
    const char *version = etl_opt(ctx, "version");
    const char *env = etl_opt(ctx, "environment");
    if (!token || !*token) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option token is empty (expected a Square access token)");
        goto fail;
    }
    if (!sq_version_ok(version)) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option version: '%s' is not a Square-Version "
                      "(expected YYYY-MM-DD, e.g. %s)", version ? version : "",
                      SQ_DEFAULT_VERSION);
        goto fail;
    }
    s->page_size = etl_opt_int(ctx, "page_size", SQ_PAGE_MAX);
    if (s->page_size < 1 || s->page_size > SQ_PAGE_MAX) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option page_size: %lld is out of range (expected "
                      "1..%d)", (long long)s->page_size, SQ_PAGE_MAX);
        goto fail;
    }
    s->nopt_locs = etl_opt_list(ctx, "location_ids", &s->opt_locs);
    if (!s->nopt_locs)
        s->opt_locs = NULL;
    if (!(s->http = etl_http_open(ctx))) {
        st = ETL_ERR_CONFIG; /* the message is in the context */
        goto fail;
    }
    if ((st = etl_http_set_base_url(s->http, env && strcmp(env, "sandbox") == 0 ? SQ_SANDBOX
                                                                                 : SQ_PRODUCTION)))
        goto fail;
    if (asprintf(&auth, "Bearer %s", token) < 0) {
        auth = NULL;
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = etl_http_set_header(s->http, "Authorization", auth)) != ETL_OK ||
        (st = etl_http_set_header(s->http, "Square-Version", version)) != ETL_OK ||
        (st = etl_http_set_header(s->http, "Accept", "application/json")) != ETL_OK)
        goto fail;
    free(auth);
    *self = s;
    return ETL_OK;
fail:
    free(auth);
    sq_close(s);
    return st;
}

/* `etl check`: the token and the URL work if the locations come back. */
static etl_status_t sq_check(void *self, etl_ctx_t *ctx)
{
    sq_t *s = self;
    sq_page_t page;
    sq_span_t locs, loc;
    char where[512];
    etl_status_t st = sq_call(s, ctx, "GET", "/v2/locations", NULL, &page);
    if (st == ETL_OK)
        st = sq_array(ctx, &page, "locations", sq_where(s, "GET", where, sizeof where), &locs);
    if (st == ETL_OK) {
        sq_iter_t it;
        size_t n = 0;
        sq_iter_init(&it, &page, locs);
        while (sq_iter_item(&it, &loc))
            n++;
        etl_log(ctx, ETL_LOG_INFO, "%s: %zu location(s)", etl_http_base_url(s->http), n);
    }
    return st;
}

static etl_status_t sq_list_streams(void *self, etl_ctx_t *ctx,
                                    void (*cb)(void *arg, const char *stream), void *arg)
{
    (void)self;
    (void)ctx;
    for (const sq_stream_t *d = sq_streams; d->name; d++)
        cb(arg, d->name);
    return ETL_OK;
}

static etl_status_t sq_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out)
{
    (void)self;
    const sq_stream_t *d = sq_find_stream(etl_schema_stream(out));
    if (!d)
        return sq_unknown_stream(ctx, etl_schema_stream(out));
    for (const sq_col_t *c = d->cols; c->name; c++) {
        unsigned flags = strcmp(c->name, "id") == 0 ? ETL_COL_KEY | ETL_COL_NOT_NULL : 0;
        if (etl_schema_add(out, c->name, c->type, NULL, flags) < 0)
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    }
    etl_schema_set_cursor(out, d->cursor);
    return ETL_OK;
}

static etl_status_t sq_read(void *self, etl_ctx_t *ctx, const etl_read_t *req,
                            etl_emitter_t *em)
{
    const sq_stream_t *d = sq_find_stream(req->stream);
    if (!d)
        return sq_unknown_stream(ctx, req->stream);
    return d->read(self, ctx, d, req, em);
}

static const etl_source_ops_t sq_source = {
    .open = sq_open,
    .check = sq_check,
    .streams = sq_list_streams,
    .discover = sq_discover,
    .read = sq_read,
    .close = sq_close,
};

static const etl_plugin_t sq_descriptor = {
    .abi_version = ETL_ABI_VERSION,
    .struct_size = sizeof(etl_plugin_t),
    .name = "square",
    .version = "0.1.0",
    .description = "Square: locations, catalog, inventory counts, orders and their line items "
                   "(source)",
    .options = sq_options,
    .source = &sq_source,
    .sink = NULL,
};

ETL_PLUGIN(sq_descriptor)
