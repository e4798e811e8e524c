/*
 * shopify_streams.c - the streams of etl-shopify.so: their columns, their
 * discovery and their reads.
 *
 * Every stream lands with `id` (text: Shopify's 64-bit ids, exact; never
 * through a double), the API's top-level scalar fields under their API
 * names, `updated_at` (the cursor) and `data` (the whole object as JSON).
 * Columns holding another object's id (order_id, product_id, location_id,
 * inventory_item_id, customer_id...) are text too, so they join with `id`
 * in any database.
 *
 * Incremental reads send updated_at_min = since (inclusive, whole seconds,
 * UTC). Child streams read their parent's list again with
 * fields=id,updated_at,<children>: order_line_items take their order's
 * updated_at (line items have none of their own), product_variants keep
 * their own (a variant change touches its product, so the product filter
 * finds it). Locations are not paginated and have no filter: the since
 * bound is applied here. inventory_levels need location ids: the read asks
 * for the locations first, then pages the levels 50 locations at a time.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopify.h"

#define TXT ETL_T_TEXT
#define INT ETL_T_INT
#define NUM ETL_T_NUMERIC
#define BOOL ETL_T_BOOL
#define TS ETL_T_TIMESTAMP
#define JSN ETL_T_JSON

typedef struct shopify_col {
    const char *name;
    etl_type_t type;
} shopify_col_t;

static const shopify_col_t order_cols[] = {
    {"id", TXT}, {"name", TXT}, {"number", INT}, {"order_number", INT}, {"email", TXT},
    {"contact_email", TXT}, {"phone", TXT}, {"customer_id", TXT}, {"created_at", TS},
    {"updated_at", TS}, {"processed_at", TS}, {"closed_at", TS}, {"cancelled_at", TS},
    {"cancel_reason", TXT}, {"financial_status", TXT}, {"fulfillment_status", TXT},
    {"currency", TXT}, {"presentment_currency", TXT}, {"total_price", NUM},
    {"subtotal_price", NUM}, {"total_tax", NUM}, {"total_discounts", NUM},
    {"total_line_items_price", NUM}, {"current_total_price", NUM},
    {"current_subtotal_price", NUM}, {"current_total_tax", NUM},
    {"current_total_discounts", NUM}, {"total_weight", INT}, {"taxes_included", BOOL},
    {"confirmed", BOOL}, {"test", BOOL}, {"buyer_accepts_marketing", BOOL}, {"gateway", TXT},
    {"source_name", TXT}, {"tags", TXT}, {"note", TXT}, {"token", TXT}, {"cart_token", TXT},
    {"checkout_token", TXT}, {"reference", TXT}, {"location_id", TXT}, {"user_id", TXT},
    {"app_id", TXT}, {"browser_ip", TXT}, {"order_status_url", TXT},
    {"admin_graphql_api_id", TXT}, {"data", JSN}, {NULL, 0}};

static const shopify_col_t line_item_cols[] = {
    {"id", TXT}, {"order_id", TXT}, {"variant_id", TXT}, {"product_id", TXT}, {"title", TXT},
    {"variant_title", TXT}, {"name", TXT}, {"sku", TXT}, {"vendor", TXT}, {"quantity", INT},
    {"current_quantity", INT}, {"price", NUM}, {"total_discount", NUM}, {"grams", INT},
    {"fulfillment_status", TXT}, {"fulfillable_quantity", INT}, {"fulfillment_service", TXT},
    {"requires_shipping", BOOL}, {"taxable", BOOL}, {"gift_card", BOOL},
    {"product_exists", BOOL}, {"admin_graphql_api_id", TXT}, {"updated_at", TS},
    {"data", JSN}, {NULL, 0}};

static const shopify_col_t product_cols[] = {
    {"id", TXT}, {"title", TXT}, {"body_html", TXT}, {"vendor", TXT}, {"product_type", TXT},
    {"handle", TXT}, {"status", TXT}, {"tags", TXT}, {"template_suffix", TXT},
    {"published_scope", TXT}, {"created_at", TS}, {"updated_at", TS}, {"published_at", TS},
    {"admin_graphql_api_id", TXT}, {"data", JSN}, {NULL, 0}};

static const shopify_col_t variant_cols[] = {
    {"id", TXT}, {"product_id", TXT}, {"title", TXT}, {"price", NUM},
    {"compare_at_price", NUM}, {"sku", TXT}, {"barcode", TXT}, {"position", INT},
    {"inventory_policy", TXT}, {"fulfillment_service", TXT}, {"inventory_management", TXT},
    {"option1", TXT}, {"option2", TXT}, {"option3", TXT}, {"taxable", BOOL}, {"grams", INT},
    {"weight", NUM}, {"weight_unit", TXT}, {"inventory_item_id", TXT},
    {"inventory_quantity", INT}, {"old_inventory_quantity", INT}, {"requires_shipping", BOOL},
    {"image_id", TXT}, {"created_at", TS}, {"updated_at", TS}, {"admin_graphql_api_id", TXT},
    {"data", JSN}, {NULL, 0}};

static const shopify_col_t customer_cols[] = {
    {"id", TXT}, {"email", TXT}, {"first_name", TXT}, {"last_name", TXT}, {"phone", TXT},
    {"state", TXT}, {"accepts_marketing", BOOL}, {"verified_email", BOOL}, {"tax_exempt", BOOL},
    {"orders_count", INT}, {"total_spent", NUM}, {"last_order_id", TXT},
    {"last_order_name", TXT}, {"note", TXT}, {"tags", TXT}, {"currency", TXT},
    {"multipass_identifier", TXT}, {"created_at", TS}, {"updated_at", TS},
    {"admin_graphql_api_id", TXT}, {"data", JSN}, {NULL, 0}};

static const shopify_col_t location_cols[] = {
    {"id", TXT}, {"name", TXT}, {"address1", TXT}, {"address2", TXT}, {"city", TXT},
    {"zip", TXT}, {"province", TXT}, {"country", TXT}, {"phone", TXT}, {"country_code", TXT},
    {"country_name", TXT}, {"province_code", TXT}, {"legacy", BOOL}, {"active", BOOL},
    {"created_at", TS}, {"updated_at", TS}, {"admin_graphql_api_id", TXT}, {"data", JSN},
    {NULL, 0}};

static const shopify_col_t level_cols[] = {
    {"id", TXT}, {"inventory_item_id", TXT}, {"location_id", TXT}, {"available", INT},
    {"updated_at", TS}, {"admin_graphql_api_id", TXT}, {"data", JSN}, {NULL, 0}};

/* Fields whose value is not the top-level member of the column's name
 * (etl_json_row takes every other column by name). */
static const etl_json_field_t plain_fields[] = {
    {"id", "id", ETL_T_TEXT, ETL_JSON_REQUIRED},
    {"data", "$", ETL_T_JSON, 0},
    ETL_JSON_FIELDS_END};

static const etl_json_field_t order_fields[] = {
    {"id", "id", ETL_T_TEXT, ETL_JSON_REQUIRED},
    {"customer_id", "customer.id", ETL_T_TEXT, 0},
    {"data", "$", ETL_T_JSON, 0},
    ETL_JSON_FIELDS_END};

static const etl_json_field_t level_fields[] = { /* id is made of two ids */
    {"inventory_item_id", NULL, ETL_T_TEXT, ETL_JSON_REQUIRED},
    {"location_id", NULL, ETL_T_TEXT, ETL_JSON_REQUIRED},
    {"data", "$", ETL_T_JSON, 0},
    ETL_JSON_FIELDS_END};

typedef enum shopify_kind {
    SK_LIST,      /* a paginated list of its own */
    SK_CHILD,     /* rows nested in a parent list's objects */
    SK_LOCATIONS, /* one unpaginated answer */
    SK_LEVELS     /* per location_ids, paginated */
} shopify_kind_t;

typedef struct shopify_stream {
    const char *name;
    shopify_kind_t kind;
    const char *resource;   /* under /admin/api/<version>/ */
    const char *envelope;   /* the answer's list member */
    const char *child;      /* SK_CHILD: the member of a parent holding the rows */
    const char *parent_col; /* SK_CHILD: the column taking the parent's id */
    int parent_cursor;      /* SK_CHILD: updated_at is the parent's */
    const char *fields;     /* SK_CHILD: fields= of the parent walk */
    int order_status;       /* takes select: status (orders' status filter) */
    const shopify_col_t *cols;
    const etl_json_field_t *jfields;
} shopify_stream_t;

static const shopify_stream_t shopify_catalogue[] = {
    {"orders", SK_LIST, "orders.json", "orders", NULL, NULL, 0, NULL, 1, order_cols,
     order_fields},
    {"order_line_items", SK_CHILD, "orders.json", "orders", "line_items", "order_id", 1,
     "id,updated_at,line_items", 1, line_item_cols, plain_fields},
    {"products", SK_LIST, "products.json", "products", NULL, NULL, 0, NULL, 0, product_cols,
     plain_fields},
    {"product_variants", SK_CHILD, "products.json", "products", "variants", "product_id", 0,
     "id,updated_at,variants", 0, variant_cols, plain_fields},
    {"customers", SK_LIST, "customers.json", "customers", NULL, NULL, 0, NULL, 0, customer_cols,
     plain_fields},
    {"locations", SK_LOCATIONS, "locations.json", "locations", NULL, NULL, 0, NULL, 0,
     location_cols, plain_fields},
    {"inventory_levels", SK_LEVELS, "inventory_levels.json", "inventory_levels", NULL, NULL, 0,
     NULL, 0, level_cols, level_fields},
};
#define SHOPIFY_NSTREAMS (sizeof shopify_catalogue / sizeof shopify_catalogue[0])

static const shopify_stream_t *shopify_find(const char *name)
{
    for (size_t i = 0; i < SHOPIFY_NSTREAMS; i++)
        if (strcmp(shopify_catalogue[i].name, name) == 0)
            return &shopify_catalogue[i];
    return NULL;
}

etl_status_t shopify_streams(void *self, etl_ctx_t *ctx, void (*cb)(void *arg, const char *stream),
                             void *arg)
{
    for (size_t i = 0; i < SHOPIFY_NSTREAMS; i++)
        cb(arg, shopify_catalogue[i].name);
    return ETL_OK;
}

etl_status_t shopify_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out)
{
    const char *name = etl_schema_stream(out);
    const shopify_stream_t *d = shopify_find(name);
    if (!d)
        return etl_fail(ctx, ETL_ERR_CONFIG,
                        "no stream '%s' in shopify (streams: orders, order_line_items, products, "
                        "product_variants, customers, locations, inventory_levels)",
                        name);
    for (const shopify_col_t *c = d->cols; c->name; c++)
        if (etl_schema_add(out, c->name, c->type, NULL,
                           strcmp(c->name, "id") == 0 ? ETL_COL_KEY : 0) < 0)
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    etl_schema_set_cursor(out, "updated_at");
    return ETL_OK;
}

/* ------------------------------------------------------------ reads */

typedef struct shopify_rd {
    shopify_t *s;
    etl_ctx_t *ctx;
    const etl_read_t *req;
    etl_emitter_t *em;
    const shopify_stream_t *d;
    etl_value_t *row;
    int i_id, i_parent, i_updated, i_cursor;
    int has_since;
    int64_t since_us;
    char since[40]; /* updated_at_min: whole seconds, UTC */
    /* inventory_levels: the location ids to ask for */
    char **locations;
    size_t nlocations;
} shopify_rd_t;

/* The inclusive lower bound as microseconds: a timestamp, or text that is one. */
static etl_status_t shopify_since(shopify_rd_t *r)
{
    const etl_value_t *v = r->req->since;
    if (!v || v->type == ETL_T_NULL)
        return ETL_OK;
    int64_t us;
    if (v->type == ETL_T_TIMESTAMP)
        us = v->v.i;
    else if ((v->type == ETL_T_TEXT || v->type == ETL_T_JSON) && etl_ts_parse(v->v.s, v->len, &us) == 0)
        ;
    else
        return etl_fail(r->ctx, ETL_ERR_CONFIG,
                        "stream %s: the lower bound of the read is not a time (cursor %s has "
                        "type %s); shopify streams page by updated_at",
                        r->d->name, r->req->cursor ? r->req->cursor : "none",
                        etl_type_name(v->type));
    /* whole seconds, rounded down: the bound stays inclusive */
    int64_t floor_us = us - ((us % 1000000) + 1000000) % 1000000;
    r->has_since = 1;
    r->since_us = floor_us;
    etl_ts_format(floor_us, r->since, sizeof r->since);
    return ETL_OK;
}

/* Fills and emits one row from obj (and its parent, for child rows). */
static etl_status_t shopify_emit(shopify_rd_t *r, json_t *obj, json_t *parent)
{
    shopify_t *s = r->s;
    etl_ctx_t *ctx = r->ctx;
    etl_status_t st;
    etl_json_scratch_reset(s->scratch);
    if ((st = etl_json_row(ctx, obj, r->d->jfields, r->req->schema, ETL_JSON_ROW_BY_NAME,
                           s->scratch, r->row)) != ETL_OK)
        return st;
    if (parent && r->i_parent >= 0 &&
        (st = etl_json_value(ctx, json_object_get(parent, "id"), ETL_T_TEXT, s->scratch,
                             "id", &r->row[r->i_parent])) != ETL_OK)
        return st;
    if (parent && r->d->parent_cursor && r->i_updated >= 0 &&
        (st = etl_json_value(ctx, json_object_get(parent, "updated_at"), ETL_T_TIMESTAMP,
                             s->scratch, "updated_at", &r->row[r->i_updated])) != ETL_OK)
        return st;
    if (r->d->kind == SK_LEVELS && r->i_id >= 0) {
        int64_t item, loc;
        if (etl_json_int(obj, "inventory_item_id", &item) != 0 ||
            etl_json_int(obj, "location_id", &loc) != 0)
            return etl_fail(ctx, ETL_ERR_DATA,
                            "an inventory level without integer inventory_item_id and "
                            "location_id");
        size_t n;
        const char *id = etl_json_scratch_printf(s->scratch, &n, "%" PRId64 ":%" PRId64, item, loc);
        if (!id)
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        r->row[r->i_id] = etl_text(id, n);
    }
    if (r->d->kind == SK_LOCATIONS && r->has_since && r->i_cursor >= 0) {
        /* no filter on the API side: leave out what is older than the bound */
        const etl_value_t *c = &r->row[r->i_cursor];
        if (c->type != ETL_T_TIMESTAMP || c->v.i < r->since_us)
            return ETL_OK;
    }
    return etl_emit(r->em, r->row);
}

static etl_status_t shopify_item(void *arg, json_t *item)
{
    shopify_rd_t *r = arg;
    if (r->d->kind != SK_CHILD)
        return shopify_emit(r, item, NULL);
    json_t *kids = json_object_get(item, r->d->child);
    if (!kids || json_is_null(kids))
        return ETL_OK;
    if (!json_is_array(kids)) {
        int64_t id = 0;
        etl_json_int(item, "id", &id);
        return etl_fail(r->ctx, ETL_ERR_DATA, "%s %" PRId64 ": '%s' is not a list",
                        r->d->envelope, id, r->d->child);
    }
    size_t i;
    json_t *kid;
    etl_status_t st;
    json_array_foreach(kids, i, kid) {
        if (!json_is_object(kid))
            return etl_fail(r->ctx, ETL_ERR_DATA, "%s[%zu] is not an object", r->d->child, i);
        if ((st = shopify_emit(r, kid, item)) != ETL_OK)
            return st;
    }
    return ETL_OK;
}

/* The order status filter: select: { status: open|closed|cancelled|any } (default any:
 * without it Shopify lists open orders only). */
static etl_status_t shopify_status(shopify_rd_t *r, const char **out)
{
    const char *st = etl_read_select(r->req, "status");
    if (!st || !*st)
        st = "any";
    if (strcmp(st, "any") && strcmp(st, "open") && strcmp(st, "closed") && strcmp(st, "cancelled"))
        return etl_fail(r->ctx, ETL_ERR_CONFIG,
                        "stream %s: select status '%s' is not one of any, open, closed, cancelled",
                        r->d->name, st);
    *out = st;
    return ETL_OK;
}

static void shopify_free_locations(shopify_rd_t *r)
{
    for (size_t i = 0; i < r->nlocations; i++)
        free(r->locations[i]);
    free(r->locations);
    r->locations = NULL;
    r->nlocations = 0;
}

/* One unpaginated GET of resource and the answer's `envelope` list; *root is
 * the caller's to json_decref, also on an error. */
static etl_status_t shopify_get_list(shopify_rd_t *r, const char *resource, const char *envelope,
                                     json_t **root, json_t **list)
{
    etl_status_t st = shopify_get_json(r->s, r->ctx, resource, NULL, 0, root);
    if (st != ETL_OK)
        return st;
    *list = json_object_get(*root, envelope);
    if (!json_is_array(*list))
        return etl_fail(r->ctx, ETL_ERR_DATA, "%s: the answer has no '%s' list", resource,
                        envelope);
    return ETL_OK;
}

/* inventory_levels: the location ids, from select: location_ids or the API. */
static etl_status_t shopify_location_ids(shopify_rd_t *r)
{
    etl_status_t st = ETL_OK;
    const char *sel = etl_read_select(r->req, "location_ids");
    json_t *root = NULL;
    if (sel && *sel) {
        const char *p = sel;
        while (*p) {
            size_t n = strcspn(p, ", ");
            if (n) {
                for (size_t i = 0; i < n; i++)
                    if (p[i] < '0' || p[i] > '9')
                        return etl_fail(r->ctx, ETL_ERR_CONFIG,
                                        "stream %s: select location_ids '%s' is not a list of "
                                        "integer ids",
                                        r->d->name, sel);
                char **v = realloc(r->locations, (r->nlocations + 1) * sizeof *v);
                if (!v)
                    return etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
                r->locations = v;
                if (!(v[r->nlocations] = strndup(p, n)))
                    return etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
                r->nlocations++;
            }
            p += n;
            p += strspn(p, ", ");
        }
        return ETL_OK;
    }
    json_t *list;
    if ((st = shopify_get_list(r, "locations.json", "locations", &root, &list)) != ETL_OK)
        goto done;
    size_t i;
    json_t *loc;
    if (!(r->locations = calloc(json_array_size(list) + 1, sizeof *r->locations))) {
        st = etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_array_foreach(list, i, loc) {
        int64_t id;
        if (etl_json_int(loc, "id", &id) != 0) {
            st = etl_fail(r->ctx, ETL_ERR_DATA, "locations[%zu] has no integer id", i);
            goto done;
        }
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRId64, id);
        if (!(r->locations[r->nlocations] = strdup(buf))) {
            st = etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
            goto done;
        }
        r->nlocations++;
    }
done:
    json_decref(root);
    return st;
}

static etl_status_t shopify_read_levels(shopify_rd_t *r)
{
    etl_status_t st;
    char *ids = NULL;
    if ((st = shopify_location_ids(r)) != ETL_OK)
        goto done;
    if (!r->nlocations) {
        etl_log(r->ctx, ETL_LOG_INFO, "the shop has no locations: no inventory levels to read");
        goto done;
    }
    for (size_t at = 0; at < r->nlocations; at += SHOPIFY_MAX_IDS) {
        size_t end = at + SHOPIFY_MAX_IDS < r->nlocations ? at + SHOPIFY_MAX_IDS : r->nlocations;
        size_t len = 1;
        for (size_t i = at; i < end; i++)
            len += strlen(r->locations[i]) + 1;
        free(ids);
        if (!(ids = malloc(len))) {
            st = etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
            goto done;
        }
        ids[0] = '\0';
        for (size_t i = at; i < end; i++) {
            if (i > at)
                strcat(ids, ",");
            strcat(ids, r->locations[i]);
        }
        etl_http_param_t q[] = {{"location_ids", ids},
                                {"updated_at_min", r->has_since ? r->since : NULL}};
        if ((st = shopify_walk(r->s, r->ctx, r->d->resource, q, 2, NULL, r->d->envelope,
                               shopify_item, r)) != ETL_OK)
            goto done;
    }
done:
    free(ids);
    shopify_free_locations(r);
    return st;
}

static etl_status_t shopify_read_locations(shopify_rd_t *r)
{
    json_t *root = NULL, *list;
    etl_status_t st = shopify_get_list(r, r->d->resource, r->d->envelope, &root, &list);
    if (st == ETL_OK) {
        size_t i;
        json_t *loc;
        json_array_foreach(list, i, loc) {
            if (!json_is_object(loc)) {
                st = etl_fail(r->ctx, ETL_ERR_DATA, "locations[%zu] is not an object", i);
                break;
            }
            if ((st = shopify_emit(r, loc, NULL)) != ETL_OK)
                break;
        }
    }
    json_decref(root);
    return st;
}

etl_status_t shopify_read(void *self, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em)
{
    shopify_t *s = self;
    shopify_rd_t r = {0};
    etl_status_t st;
    r.s = s;
    r.ctx = ctx;
    r.req = req;
    r.em = em;
    if (!(r.d = shopify_find(req->stream)))
        return etl_fail(ctx, ETL_ERR_CONFIG, "no stream '%s' in shopify", req->stream);
    size_t nc = etl_schema_ncols(req->schema);
    if (!(r.row = calloc(nc ? nc : 1, sizeof *r.row)))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    r.i_id = etl_schema_find(req->schema, "id");
    r.i_parent = r.d->parent_col ? etl_schema_find(req->schema, r.d->parent_col) : -1;
    r.i_updated = etl_schema_find(req->schema, "updated_at");
    r.i_cursor = req->cursor ? etl_schema_find(req->schema, req->cursor) : -1;
    if ((st = shopify_since(&r)) != ETL_OK)
        goto done;
    if (r.has_since)
        etl_log(ctx, ETL_LOG_DEBUG, "%s: changes from %s", r.d->name, r.since);
    switch (r.d->kind) {
    case SK_LIST:
    case SK_CHILD: {
        const char *status = NULL;
        if (r.d->order_status && (st = shopify_status(&r, &status)) != ETL_OK)
            goto done;
        etl_http_param_t q[2];
        size_t n = 0;
        if (status)
            q[n++] = (etl_http_param_t){"status", status};
        if (r.has_since)
            q[n++] = (etl_http_param_t){"updated_at_min", r.since};
        st = shopify_walk(s, ctx, r.d->resource, q, n, r.d->fields, r.d->envelope, shopify_item,
                          &r);
        break;
    }
    case SK_LOCATIONS:
        st = shopify_read_locations(&r);
        break;
    case SK_LEVELS:
        st = shopify_read_levels(&r);
        break;
    }
done:
    free(r.row);
    return st;
}
