/*
 * amazon_streams.c - the streams of etl-amazon.so: columns, discovery, reads.
 *
 * Every stream lands with `id` (text), the API's top-level scalar fields
 * under their API names (money objects flattened: OrderTotal ->
 * OrderTotalAmount, OrderTotalCurrencyCode), `updated_at` where the API has
 * a change time, and `data` (the whole object as JSON).
 *
 * orders (getOrders): LastUpdatedAfter = since (first run: option start),
 *   NextToken pagination resending the same query plus NextToken; the
 *   answer's LastUpdatedBefore (the same on every page: "now" minus two
 *   minutes on Amazon's clock) is the checkpoint, given at the end of a
 *   complete walk. Cursor: LastUpdateDate.
 * order_items: the same getOrders walk, then getOrderItems of each order
 *   (NextToken alone on its later pages). Rows carry their order's id and
 *   LastUpdateDate (items have no change time of their own).
 * inventory_summaries (getInventorySummaries): granularityType=Marketplace,
 *   details=true, startDateTime = since (incremental), nextToken pagination
 *   sending startDateTime again; a nextToken lives 30 seconds, so a walk
 *   whose token expired starts again (three times at most). Cursor:
 *   lastUpdatedTime.
 * catalog_items (searchCatalogItems): what to search comes from the
 *   stream's select: options (keywords, or identifiers + identifiers_type);
 *   pageToken pagination resending the same query. No change time: full.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amazon.h"

#define TXT ETL_T_TEXT
#define INT ETL_T_INT
#define NUM ETL_T_NUMERIC
#define BOOL ETL_T_BOOL
#define TS ETL_T_TIMESTAMP
#define JSN ETL_T_JSON

#define AMAZON_FBA_RESTARTS 3      /* walks started again after an expired nextToken */
#define AMAZON_FBA_MAX_BACK_US ((int64_t)540 * 86400 * 1000000) /* startDateTime: 18 months */
#define AMAZON_IDS_PER_SEARCH 20   /* identifiers per searchCatalogItems */

typedef struct amazon_col {
    const char *name;
    etl_type_t type;
    const char *path; /* NULL: the member of the column's name */
} amazon_col_t;

static const amazon_col_t order_cols[] = {
    {"id", TXT, "AmazonOrderId"},
    {"AmazonOrderId", TXT, NULL},
    {"SellerOrderId", TXT, NULL},
    {"PurchaseDate", TS, NULL},
    {"LastUpdateDate", TS, NULL},
    {"OrderStatus", TXT, NULL},
    {"FulfillmentChannel", TXT, NULL},
    {"SalesChannel", TXT, NULL},
    {"OrderChannel", TXT, NULL},
    {"ShipServiceLevel", TXT, NULL},
    {"OrderTotalAmount", NUM, "OrderTotal.Amount"},
    {"OrderTotalCurrencyCode", TXT, "OrderTotal.CurrencyCode"},
    {"NumberOfItemsShipped", INT, NULL},
    {"NumberOfItemsUnshipped", INT, NULL},
    {"PaymentMethod", TXT, NULL},
    {"MarketplaceId", TXT, NULL},
    {"ShipmentServiceLevelCategory", TXT, NULL},
    {"OrderType", TXT, NULL},
    {"EarliestShipDate", TS, NULL},
    {"LatestShipDate", TS, NULL},
    {"EarliestDeliveryDate", TS, NULL},
    {"LatestDeliveryDate", TS, NULL},
    {"IsBusinessOrder", BOOL, NULL},
    {"IsPrime", BOOL, NULL},
    {"IsPremiumOrder", BOOL, NULL},
    {"IsGlobalExpressEnabled", BOOL, NULL},
    {"IsReplacementOrder", BOOL, NULL},
    {"ReplacedOrderId", TXT, NULL},
    {"IsSoldByAB", BOOL, NULL},
    {"IsISPU", BOOL, NULL},
    {"IsAccessPointOrder", BOOL, NULL},
    {"HasRegulatedItems", BOOL, NULL},
    {"updated_at", TS, "LastUpdateDate"},
    {"data", JSN, "$"},
    {NULL, 0, NULL}};

/* order_id, LastUpdateDate and updated_at come from the order. */
static const amazon_col_t item_cols[] = {
    {"id", TXT, "OrderItemId"},
    {"order_id", TXT, NULL},
    {"OrderItemId", TXT, NULL},
    {"ASIN", TXT, NULL},
    {"SellerSKU", TXT, NULL},
    {"Title", TXT, NULL},
    {"QuantityOrdered", INT, NULL},
    {"QuantityShipped", INT, NULL},
    {"ItemPriceAmount", NUM, "ItemPrice.Amount"},
    {"ItemPriceCurrencyCode", TXT, "ItemPrice.CurrencyCode"},
    {"ItemTaxAmount", NUM, "ItemTax.Amount"},
    {"ShippingPriceAmount", NUM, "ShippingPrice.Amount"},
    {"ShippingTaxAmount", NUM, "ShippingTax.Amount"},
    {"PromotionDiscountAmount", NUM, "PromotionDiscount.Amount"},
    {"PromotionDiscountTaxAmount", NUM, "PromotionDiscountTax.Amount"},
    {"IsGift", TXT, NULL},
    {"ConditionId", TXT, NULL},
    {"ConditionSubtypeId", TXT, NULL},
    {"IsTransparency", BOOL, NULL},
    {"SerialNumberRequired", BOOL, NULL},
    {"LastUpdateDate", TS, NULL},
    {"updated_at", TS, NULL},
    {"data", JSN, "$"},
    {NULL, 0, NULL}};

/* marketplace_id comes from the request. */
static const amazon_col_t inventory_cols[] = {
    {"id", TXT, "sellerSku"},
    {"sellerSku", TXT, NULL},
    {"asin", TXT, NULL},
    {"fnSku", TXT, NULL},
    {"condition", TXT, NULL},
    {"productName", TXT, NULL},
    {"lastUpdatedTime", TS, NULL},
    {"totalQuantity", INT, NULL},
    {"fulfillableQuantity", INT, "inventoryDetails.fulfillableQuantity"},
    {"inboundWorkingQuantity", INT, "inventoryDetails.inboundWorkingQuantity"},
    {"inboundShippedQuantity", INT, "inventoryDetails.inboundShippedQuantity"},
    {"inboundReceivingQuantity", INT, "inventoryDetails.inboundReceivingQuantity"},
    {"reservedQuantity", INT, "inventoryDetails.reservedQuantity.totalReservedQuantity"},
    {"unfulfillableQuantity", INT,
     "inventoryDetails.unfulfillableQuantity.totalUnfulfillableQuantity"},
    {"researchingQuantity", INT, "inventoryDetails.researchingQuantity.totalResearchingQuantity"},
    {"marketplace_id", TXT, NULL},
    {"updated_at", TS, "lastUpdatedTime"},
    {"data", JSN, "$"},
    {NULL, 0, NULL}};

/* The summary of the marketplace asked for comes first (the API lists only it). */
static const amazon_col_t catalog_cols[] = {
    {"id", TXT, "asin"},
    {"asin", TXT, NULL},
    {"marketplace_id", TXT, NULL},
    {"itemName", TXT, "summaries[0].itemName"},
    {"brand", TXT, "summaries[0].brand"},
    {"manufacturer", TXT, "summaries[0].manufacturer"},
    {"color", TXT, "summaries[0].color"},
    {"size", TXT, "summaries[0].size"},
    {"modelNumber", TXT, "summaries[0].modelNumber"},
    {"partNumber", TXT, "summaries[0].partNumber"},
    {"itemClassification", TXT, "summaries[0].itemClassification"},
    {"websiteDisplayGroup", TXT, "summaries[0].websiteDisplayGroup"},
    {"browseClassification", TXT, "summaries[0].browseClassification.displayName"},
    {"productType", TXT, "productTypes[0].productType"},
    {"data", JSN, "$"},
    {NULL, 0, NULL}};

typedef enum amazon_kind { AK_ORDERS, AK_ITEMS, AK_INVENTORY, AK_CATALOG } amazon_kind_t;

typedef struct amazon_stream {
    const char *name;
    amazon_kind_t kind;
    const char *cursor; /* NULL: none (full reads) */
    const amazon_col_t *cols;
} amazon_stream_t;

static const amazon_stream_t amazon_catalogue[] = {
    {"orders", AK_ORDERS, "LastUpdateDate", order_cols},
    {"order_items", AK_ITEMS, "LastUpdateDate", item_cols},
    {"inventory_summaries", AK_INVENTORY, "lastUpdatedTime", inventory_cols},
    {"catalog_items", AK_CATALOG, NULL, catalog_cols},
};
#define AMAZON_NSTREAMS (sizeof amazon_catalogue / sizeof amazon_catalogue[0])

static const amazon_stream_t *amazon_find(const char *name)
{
    for (size_t i = 0; i < AMAZON_NSTREAMS; i++)
        if (strcmp(amazon_catalogue[i].name, name) == 0)
            return &amazon_catalogue[i];
    return NULL;
}

etl_status_t amazon_streams(void *self, etl_ctx_t *ctx, void (*cb)(void *arg, const char *stream),
                            void *arg)
{
    for (size_t i = 0; i < AMAZON_NSTREAMS; i++)
        cb(arg, amazon_catalogue[i].name);
    return ETL_OK;
}

etl_status_t amazon_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out)
{
    const char *name = etl_schema_stream(out);
    const amazon_stream_t *d = amazon_find(name);
    if (!d)
        return etl_fail(ctx, ETL_ERR_CONFIG,
                        "no stream '%s' in amazon (streams: orders, order_items, "
                        "inventory_summaries, catalog_items)",
                        name);
    for (const amazon_col_t *c = d->cols; c->name; c++)
        if (etl_schema_add(out, c->name, c->type, NULL,
                           strcmp(c->name, "id") == 0 ? ETL_COL_KEY : 0) < 0)
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    if (d->cursor)
        etl_schema_set_cursor(out, d->cursor);
    return ETL_OK;
}

/* ------------------------------------------------------------ reads */

typedef struct amazon_rd {
    amazon_t *a;
    etl_ctx_t *ctx;
    const etl_read_t *req;
    etl_emitter_t *em;
    const amazon_stream_t *d;
    etl_json_field_t *fields; /* from d->cols, for etl_json_row */
    etl_value_t *row;
    int i_order, i_lud, i_updated, i_market;
    const char *marketplace; /* inventory and catalog: the one asked */
    size_t market_len;
    int has_since;
    int64_t since_us;
} amazon_rd_t;

static etl_status_t amazon_since(amazon_rd_t *r)
{
    const etl_value_t *v = r->req->since;
    if (!v || v->type == ETL_T_NULL)
        return ETL_OK;
    if (v->type == ETL_T_TIMESTAMP)
        r->since_us = v->v.i;
    else if (!((v->type == ETL_T_TEXT || v->type == ETL_T_JSON) &&
               etl_ts_parse(v->v.s, v->len, &r->since_us) == 0))
        return etl_fail(r->ctx, ETL_ERR_CONFIG,
                        "stream %s: the lower bound of the read is not a time (cursor %s has "
                        "type %s)",
                        r->d->name, r->req->cursor ? r->req->cursor : "none",
                        etl_type_name(v->type));
    r->has_since = 1;
    return ETL_OK;
}

/* Fills and emits one row of obj; `order` gives items their order's columns. */
static etl_status_t amazon_emit(amazon_rd_t *r, const json_t *obj, const json_t *order)
{
    amazon_t *a = r->a;
    etl_status_t st;
    etl_json_scratch_reset(a->scratch);
    if ((st = etl_json_row(r->ctx, obj, r->fields, r->req->schema, 0, a->scratch, r->row)) !=
        ETL_OK)
        return st;
    if (order) {
        const json_t *lud = json_object_get(order, "LastUpdateDate");
        if (r->i_order >= 0 &&
            (st = etl_json_value(r->ctx, json_object_get(order, "AmazonOrderId"), ETL_T_TEXT,
                                 a->scratch, "AmazonOrderId", &r->row[r->i_order])) != ETL_OK)
            return st;
        if (r->i_lud >= 0 && (st = etl_json_value(r->ctx, lud, ETL_T_TIMESTAMP, a->scratch,
                                                  "LastUpdateDate", &r->row[r->i_lud])) != ETL_OK)
            return st;
        /* updated_at is the same value: convert it once */
        if (r->i_updated >= 0 && r->i_lud >= 0)
            r->row[r->i_updated] = r->row[r->i_lud];
        else if (r->i_updated >= 0 &&
                 (st = etl_json_value(r->ctx, lud, ETL_T_TIMESTAMP, a->scratch, "LastUpdateDate",
                                      &r->row[r->i_updated])) != ETL_OK)
            return st;
    }
    if (r->i_market >= 0 && r->marketplace)
        r->row[r->i_market] = etl_text(r->marketplace, r->market_len);
    return etl_emit(r->em, r->row);
}

/*
 * Takes the next page's token at `path` of *root, then drops *root: *next
 * becomes a copy of it, or NULL on the last page. twice: the error when the
 * same token comes back (the walk would loop), NULL: not checked. On an
 * error *root and *next are left to the caller.
 */
static etl_status_t amazon_next_page(amazon_rd_t *r, json_t **root, const char *path,
                                     const char *twice, char **next)
{
    const char *nt = etl_json_str(*root, path);
    char *dup = nt && *nt ? strdup(nt) : NULL;
    if (nt && *nt && !dup)
        return etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
    if (twice && dup && *next && strcmp(dup, *next) == 0) {
        free(dup);
        return etl_fail(r->ctx, ETL_ERR_DATA, "%s", twice);
    }
    free(*next);
    *next = dup;
    json_decref(*root); /* nt pointed into it */
    *root = NULL;
    return ETL_OK;
}

/* Every item of one order: getOrderItems, then NextToken alone. */
static etl_status_t amazon_order_items(amazon_rd_t *r, const json_t *order)
{
    etl_status_t st = ETL_OK;
    etl_http_response_t rs = {0};
    json_t *root = NULL;
    char *next = NULL, *path = NULL, *esc = NULL;
    const char *oid = etl_json_str(order, "AmazonOrderId");
    if (!oid || !*oid)
        return etl_fail(r->ctx, ETL_ERR_DATA, "getOrders: an order without AmazonOrderId");
    size_t n;
    if (!(esc = etl_http_escape(oid, strlen(oid))) ||
        !(path = malloc(n = strlen(esc) + 40))) {
        st = etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    snprintf(path, n, "/orders/v0/orders/%s/orderItems", esc);
    for (;;) {
        etl_http_param_t q[] = {{"NextToken", next}};
        if ((st = amazon_call(r->a, r->ctx, "getOrderItems", path, q, 1, &rs, &root)) != ETL_OK)
            goto done;
        json_t *items = etl_json_get(root, "payload.OrderItems");
        if (!json_is_array(items)) {
            st = etl_fail(r->ctx, ETL_ERR_DATA, "getOrderItems %s: the answer has no "
                                                "payload.OrderItems list", oid);
            goto done;
        }
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            if ((st = amazon_emit(r, it, order)) != ETL_OK)
                goto done;
        }
        if ((st = amazon_next_page(r, &root, "payload.NextToken", NULL, &next)) != ETL_OK)
            goto done;
        if (!next)
            break;
    }
done:
    json_decref(root);
    etl_http_response_free(&rs);
    free(next);
    free(path);
    free(esc);
    return st;
}

/* Emits every object of a page's list (order_items: the items of each
 * order); `what` names the list in the message about a non-object. */
static etl_status_t amazon_emit_list(amazon_rd_t *r, const json_t *list, const char *what)
{
    size_t i;
    json_t *o;
    etl_status_t st;
    json_array_foreach(list, i, o) {
        if (!json_is_object(o))
            return etl_fail(r->ctx, ETL_ERR_DATA, "%s[%zu] is not an object", what, i);
        st = r->d->kind == AK_ITEMS ? amazon_order_items(r, o) : amazon_emit(r, o, NULL);
        if (st != ETL_OK)
            return st;
    }
    return ETL_OK;
}

/* orders and order_items: one getOrders walk. */
static etl_status_t amazon_read_orders(amazon_rd_t *r)
{
    amazon_t *a = r->a;
    etl_status_t st = ETL_OK;
    etl_http_response_t rs = {0};
    json_t *root = NULL;
    char *next = NULL;
    char after[40];
    int64_t before_us = 0;
    int have_before = 0;
    amazon_iso(r->has_since ? r->since_us : a->start_us, after, sizeof after);
    etl_log(r->ctx, ETL_LOG_DEBUG, "%s: LastUpdatedAfter %s", r->d->name, after);
    for (;;) {
        /* the same query on every page, plus NextToken */
        etl_http_param_t q[] = {{"MarketplaceIds", a->marketplace_list},
                                {"LastUpdatedAfter", after},
                                {"MaxResultsPerPage", "100"},
                                {"NextToken", next}};
        if ((st = amazon_call(a, r->ctx, "getOrders", "/orders/v0/orders", q, 4, &rs, &root)) !=
            ETL_OK)
            goto done;
        json_t *orders = etl_json_get(root, "payload.Orders");
        if (!json_is_array(orders)) {
            st = etl_fail(r->ctx, ETL_ERR_DATA, "getOrders: the answer has no payload.Orders "
                                                "list");
            goto done;
        }
        const char *b = etl_json_str(root, "payload.LastUpdatedBefore");
        int64_t bus;
        if (b && etl_ts_parse(b, strlen(b), &bus) == 0 && (!have_before || bus < before_us)) {
            before_us = bus; /* the same on every page; the smallest if not */
            have_before = 1;
        }
        if ((st = amazon_emit_list(r, orders, "getOrders: Orders")) != ETL_OK ||
            (st = amazon_next_page(r, &root, "payload.NextToken",
                                   "getOrders: the same NextToken came back twice", &next)) !=
                ETL_OK)
            goto done;
        if (!next)
            break;
        if (etl_cancelled(r->ctx)) {
            st = ETL_ERR_CANCELLED;
            goto done;
        }
    }
    /* Everything up to LastUpdatedBefore has been read: the checkpoint */
    if (have_before && r->req->cursor) {
        etl_value_t ck = etl_ts(before_us);
        st = etl_emit_checkpoint(r->em, &ck);
    }
done:
    json_decref(root);
    etl_http_response_free(&rs);
    free(next);
    return st;
}

static etl_status_t amazon_read_inventory(amazon_rd_t *r)
{
    amazon_t *a = r->a;
    etl_status_t st = ETL_OK;
    etl_http_response_t rs = {0};
    json_t *root = NULL;
    char *next = NULL;
    char start[40];
    const char *sdt = NULL;
    if (r->has_since) {
        if (r->since_us < amazon_now_us() - AMAZON_FBA_MAX_BACK_US) {
            etl_log(r->ctx, ETL_LOG_INFO,
                    "inventory_summaries: the checkpoint is older than 18 months "
                    "(startDateTime's limit): reading every summary");
        } else {
            amazon_iso(r->since_us, start, sizeof start);
            sdt = start;
        }
    }
    for (int restarts = 0;;) {
        etl_http_param_t q[] = {{"details", "true"},
                                {"granularityType", "Marketplace"},
                                {"granularityId", r->marketplace},
                                {"marketplaceIds", r->marketplace},
                                {"startDateTime", sdt},
                                {"nextToken", next}};
        st = amazon_call(a, r->ctx, "getInventorySummaries", "/fba/inventory/v1/summaries", q, 6,
                         &rs, &root);
        if (st == ETL_ERR_DATA && next && rs.status == 400 && restarts < AMAZON_FBA_RESTARTS &&
            strstr(rs.body, "xpired")) {
            /* nextToken lives 30 seconds: start the walk again (re-read rows are unchanged) */
            restarts++;
            etl_log(r->ctx, ETL_LOG_WARN,
                    "inventory_summaries: the nextToken expired (%s): starting the walk again "
                    "(%d of %d)",
                    etl_ctx_error(r->ctx), restarts, AMAZON_FBA_RESTARTS);
            free(next);
            next = NULL;
            continue;
        }
        if (st != ETL_OK)
            goto done;
        json_t *list = etl_json_get(root, "payload.inventorySummaries");
        if (!json_is_array(list)) {
            st = etl_fail(r->ctx, ETL_ERR_DATA,
                          "getInventorySummaries: the answer has no payload.inventorySummaries "
                          "list");
            goto done;
        }
        /* the token is at the top level, not in payload */
        if ((st = amazon_emit_list(r, list, "inventorySummaries")) != ETL_OK ||
            (st = amazon_next_page(r, &root, "pagination.nextToken", NULL, &next)) != ETL_OK)
            goto done;
        if (!next)
            break;
        if (etl_cancelled(r->ctx)) {
            st = ETL_ERR_CANCELLED;
            goto done;
        }
    }
done:
    json_decref(root);
    etl_http_response_free(&rs);
    free(next);
    return st;
}

/* One searchCatalogItems query walked to its end with pageToken. */
static etl_status_t amazon_search(amazon_rd_t *r, const char *keywords, const char *identifiers,
                                  const char *id_type)
{
    etl_status_t st = ETL_OK;
    etl_http_response_t rs = {0};
    json_t *root = NULL;
    char *next = NULL;
    const char *inc = etl_read_select(r->req, "included_data");
    const char *size = etl_read_select(r->req, "page_size");
    int64_t total = -1, seen = 0;
    if (!inc || !*inc)
        inc = "summaries,identifiers,productTypes,salesRanks,classifications,images,attributes";
    if (!size || !*size)
        size = "20";
    for (;;) {
        etl_http_param_t q[] = {{"marketplaceIds", r->marketplace},
                                {"keywords", keywords},
                                {"identifiers", identifiers},
                                {"identifiersType", identifiers ? id_type : NULL},
                                {"sellerId", etl_read_select(r->req, "seller_id")},
                                {"brandNames", etl_read_select(r->req, "brand_names")},
                                {"classificationIds", etl_read_select(r->req, "classification_ids")},
                                {"includedData", inc},
                                {"pageSize", size},
                                {"pageToken", next}};
        if ((st = amazon_call(r->a, r->ctx, "searchCatalogItems", "/catalog/2022-04-01/items", q,
                              10, &rs, &root)) != ETL_OK)
            goto done;
        json_t *items = json_object_get(root, "items");
        if (!json_is_array(items)) {
            st = etl_fail(r->ctx, ETL_ERR_DATA, "searchCatalogItems: the answer has no items list");
            goto done;
        }
        etl_json_int(root, "numberOfResults", &total);
        if ((st = amazon_emit_list(r, items, "items")) != ETL_OK)
            goto done;
        seen += (int64_t)json_array_size(items);
        if ((st = amazon_next_page(r, &root, "pagination.nextToken",
                                   "searchCatalogItems: the same page token came back twice",
                                   &next)) != ETL_OK)
            goto done;
        if (!next)
            break;
        if (etl_cancelled(r->ctx)) {
            st = ETL_ERR_CANCELLED;
            goto done;
        }
    }
    if (total > seen)
        etl_log(r->ctx, ETL_LOG_WARN,
                "catalog_items: the search matched %lld items but only %lld are reachable by "
                "paging (Amazon stops at 1000): narrow the query (keywords, brand_names, "
                "classification_ids)",
                (long long)total, (long long)seen);
done:
    json_decref(root);
    etl_http_response_free(&rs);
    free(next);
    return st;
}

static etl_status_t amazon_read_catalog(amazon_rd_t *r)
{
    const char *kw = etl_read_select(r->req, "keywords");
    const char *ids = etl_read_select(r->req, "identifiers");
    const char *type = etl_read_select(r->req, "identifiers_type");
    if ((!kw || !*kw) == (!ids || !*ids))
        return etl_fail(r->ctx, ETL_ERR_CONFIG,
                        "stream catalog_items needs one of select: keywords (words that must all "
                        "match) or select: identifiers (with identifiers_type: ASIN, EAN, GTIN, "
                        "ISBN, JAN, MINSAN, SKU or UPC)");
    if (kw && *kw)
        return amazon_search(r, kw, NULL, NULL);
    if (!type || !*type)
        type = "ASIN";
    if (strcmp(type, "SKU") == 0 && !etl_read_select(r->req, "seller_id"))
        return etl_fail(r->ctx, ETL_ERR_CONFIG,
                        "stream catalog_items: identifiers_type SKU needs select: seller_id");
    /* at most 20 identifiers per search: ask in groups */
    etl_status_t st = ETL_OK;
    char *group = malloc(strlen(ids) + 1);
    if (!group)
        return etl_fail(r->ctx, ETL_ERR_NOMEM, "out of memory");
    const char *p = ids;
    while (*p && st == ETL_OK) {
        size_t len = 0, n = 0;
        group[0] = '\0';
        while (*p && n < AMAZON_IDS_PER_SEARCH) {
            p += strspn(p, ", ");
            size_t w = strcspn(p, ",");
            while (w && p[w - 1] == ' ')
                w--;
            if (w) {
                if (len)
                    group[len++] = ',';
                memcpy(group + len, p, w);
                len += w;
                group[len] = '\0';
                n++;
            }
            p += w;
            p += strspn(p, ", ");
        }
        if (n)
            st = amazon_search(r, NULL, group, type);
    }
    free(group);
    return st;
}

etl_status_t amazon_read(void *self, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em)
{
    amazon_t *a = self;
    amazon_rd_t r = {0};
    etl_status_t st;
    r.a = a;
    r.ctx = ctx;
    r.req = req;
    r.em = em;
    if (a->auth_error)
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", a->auth_error);
    if (!(r.d = amazon_find(req->stream)))
        return etl_fail(ctx, ETL_ERR_CONFIG, "no stream '%s' in amazon", req->stream);
    size_t ncols = 0;
    while (r.d->cols[ncols].name)
        ncols++;
    size_t nc = etl_schema_ncols(req->schema);
    if (!(r.row = calloc(nc ? nc : 1, sizeof *r.row)) ||
        !(r.fields = calloc(ncols + 1, sizeof *r.fields))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* columns filled from the order or the request are left to amazon_emit */
    for (size_t i = 0, k = 0; i < ncols; i++) {
        const amazon_col_t *c = &r.d->cols[i];
        if (strcmp(c->name, "marketplace_id") == 0 ||
            (r.d->kind == AK_ITEMS && (strcmp(c->name, "order_id") == 0 ||
                                       strcmp(c->name, "LastUpdateDate") == 0 ||
                                       strcmp(c->name, "updated_at") == 0)))
            continue;
        r.fields[k++] = (etl_json_field_t){c->name, c->path ? c->path : c->name, c->type,
                                           strcmp(c->name, "id") == 0 ? ETL_JSON_REQUIRED : 0};
    }
    r.i_order = r.d->kind == AK_ITEMS ? etl_schema_find(req->schema, "order_id") : -1;
    r.i_lud = r.d->kind == AK_ITEMS ? etl_schema_find(req->schema, "LastUpdateDate") : -1;
    r.i_updated = r.d->kind == AK_ITEMS ? etl_schema_find(req->schema, "updated_at") : -1;
    r.i_market = etl_schema_find(req->schema, "marketplace_id");
    r.marketplace = etl_read_select(req, "marketplace_id");
    if (!r.marketplace || !*r.marketplace)
        r.marketplace = a->marketplaces[0];
    r.market_len = strlen(r.marketplace);
    if ((st = amazon_since(&r)) != ETL_OK)
        goto done;
    switch (r.d->kind) {
    case AK_ORDERS:
    case AK_ITEMS:
        st = amazon_read_orders(&r);
        break;
    case AK_INVENTORY:
        st = amazon_read_inventory(&r);
        break;
    case AK_CATALOG:
        st = amazon_read_catalog(&r);
        break;
    }
done:
    free(r.fields);
    free(r.row);
    return st;
}
