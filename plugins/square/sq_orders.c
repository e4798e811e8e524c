/*
 * sq_orders.c - orders and order_line_items: POST /v2/orders/search, sorted
 * by updated_at ascending and, when the core gives a lower bound, filtered
 * from it (start_at is inclusive, like the core's bound). Each stream walks
 * the orders once: orders emits the orders, order_line_items the line items
 * of each order (key: the line item's uid) with the order's id, location and
 * updated_at.
 *
 * SearchOrders takes at most 10 location_ids, so more locations are read in
 * groups, one walk each. While the last group is walked, the checkpoint
 * moves page by page (every order updated before the page's last one has
 * been emitted). With several groups, a first probe asks each group for its
 * newest order and every walk stops there (end_at): an order changed while
 * another group is being read is then newer than the checkpoint, never
 * passed by.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "square.h"

typedef struct sq_orders_walk {
    sq_t *s;
    etl_ctx_t *ctx;
    etl_emitter_t *em;
    sq_plan_t *plan;
    int lines;          /* order_line_items */
    int c_id, c_order, c_location, c_updated;
    const char *start;  /* start_at, or NULL */
    const char *end;    /* end_at, or NULL */
    int64_t limit;
} sq_orders_walk_t;

/* {"location_ids": [...], "query": {"filter": ..., "sort": ...}, "limit": N} */
static json_t *sq_orders_body(const char *const *locs, size_t n, const char *start,
                              const char *end, const char *order, int64_t limit)
{
    json_t *b = json_object(), *ids = json_array(), *query = json_object();
    if (!b || !ids || !query) {
        json_decref(ids);
        json_decref(query);
        goto fail;
    }
    if (json_object_set_new(b, "location_ids", ids) || json_object_set_new(b, "query", query))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(ids, json_string(locs[i])))
            goto fail;
    if (start || end) {
        json_t *range = json_object();
        if (!range ||
            json_object_set_new(query, "filter",
                                json_pack("{s:{s:o}}", "date_time_filter", "updated_at", range)) ||
            (start && json_object_set_new(range, "start_at", json_string(start))) ||
            (end && json_object_set_new(range, "end_at", json_string(end))))
            goto fail;
    }
    if (json_object_set_new(query, "sort",
                            json_pack("{s:s, s:s}", "sort_field", "UPDATED_AT", "sort_order",
                                      order)) ||
        json_object_set_new(b, "limit", json_integer(limit)))
        goto fail;
    return b;
fail:
    json_decref(b);
    return NULL;
}

/* The newest updated_at of the orders of these locations (probe: one order,
 * newest first). *found = 0 when there is none. */
static etl_status_t sq_orders_newest(sq_orders_walk_t *w, const char *const *locs, size_t n,
                                     int64_t *newest, int *found)
{
    sq_page_t page;
    sq_span_t orders, o;
    sq_iter_t it;
    char where[512];
    char *u = NULL;
    int64_t t;
    json_t *body = sq_orders_body(locs, n, w->start, NULL, "DESC", 1);
    if (!body)
        return etl_fail(w->ctx, ETL_ERR_NOMEM, "out of memory");
    etl_status_t st = sq_post_page(w->s, w->ctx, "/v2/orders/search", body, NULL, &page, where,
                                   sizeof where);
    json_decref(body);
    if (st != ETL_OK)
        return st;
    if ((st = sq_array(w->ctx, &page, "orders", where, &orders)) != ETL_OK)
        return st;
    sq_iter_init(&it, &page, orders);
    if (!sq_iter_item(&it, &o))
        return ETL_OK;
    if ((st = sq_string(w->ctx, &page, o, "updated_at", where, &u)) != ETL_OK)
        return st;
    if (!u || etl_ts_parse(u, strlen(u), &t) != 0) {
        st = etl_fail(w->ctx, ETL_ERR_DATA, "%s: an order without a valid updated_at", where);
    } else if (!*found || t > *newest) {
        *newest = t;
        *found = 1;
    }
    free(u);
    return st;
}

/* Emits one order, or its line items. */
static etl_status_t sq_orders_emit(sq_orders_walk_t *w, const sq_page_t *pg, sq_span_t order,
                                   const char *where, int64_t *updated)
{
    static const char *const wanted[] = {"id", "updated_at", "location_id", "line_items"};
    sq_t *s = w->s;
    etl_value_t *row, id, loc, up;
    sq_span_t v[4], li;
    etl_status_t st;
    etl_json_scratch_reset(s->scratch);
    sq_members(pg, order, wanted, v, 4);
    if ((st = sq_value(w->ctx, &s->conv, v[0], ETL_T_TEXT, "id", &id)) != ETL_OK ||
        (st = sq_value(w->ctx, &s->conv, v[1], ETL_T_TIMESTAMP, "updated_at", &up)) != ETL_OK ||
        (st = sq_value(w->ctx, &s->conv, v[2], ETL_T_TEXT, "location_id", &loc)) != ETL_OK) {
        char msg[640];
        snprintf(msg, sizeof msg, "%s", etl_ctx_error(w->ctx));
        return etl_fail(w->ctx, st, "%s: order: %s", where, msg);
    }
    if (id.type != ETL_T_TEXT || up.type != ETL_T_TIMESTAMP)
        return etl_fail(w->ctx, ETL_ERR_DATA, "%s: an order without id or updated_at", where);
    *updated = up.v.i;
    if (!w->lines) {
        if ((st = sq_plan_fill(w->plan, w->ctx, &s->conv, pg, order, where, &row)) != ETL_OK)
            return st;
        return etl_emit(w->em, row);
    }
    if (v[3].p && *v[3].p != '[' && *v[3].p != 'n')
        return etl_fail(w->ctx, ETL_ERR_DATA, "%s: order %.*s: line_items is not an array",
                        where, (int)id.len, id.v.s);
    sq_iter_t it;
    sq_iter_init(&it, pg, v[3].p && *v[3].p == '[' ? v[3] : (sq_span_t){NULL, 0});
    for (size_t i = 0; sq_iter_item(&it, &li); i++) {
        /* the order's values stay: they point into the page or sit before
         * the line item's in the scratch, which is not reset here */
        if ((st = sq_plan_fill(w->plan, w->ctx, &s->conv, pg, li, where, &row)) != ETL_OK)
            return st;
        if (w->c_id >= 0 && row[w->c_id].type == ETL_T_NULL)
            return etl_fail(w->ctx, ETL_ERR_DATA, "%s: order %.*s: line item %zu has no uid",
                            where, (int)id.len, id.v.s, i);
        if (w->c_order >= 0)
            row[w->c_order] = id;
        if (w->c_location >= 0)
            row[w->c_location] = loc;
        if (w->c_updated >= 0)
            row[w->c_updated] = up;
        if ((st = etl_emit(w->em, row)) != ETL_OK)
            return st;
    }
    return ETL_OK;
}

/* One walk of SearchOrders for a group of locations. `last`: no group is
 * read after this one, so the checkpoint may follow the pages. */
static etl_status_t sq_orders_walk(sq_orders_walk_t *w, const char *const *locs, size_t n,
                                   int last)
{
    sq_page_t page;
    char *cursor = NULL, *next = NULL;
    char where[512];
    etl_status_t st = ETL_OK;
    json_t *body = sq_orders_body(locs, n, w->start, w->end, "ASC", w->limit);
    if (!body)
        return etl_fail(w->ctx, ETL_ERR_NOMEM, "out of memory");
    for (;;) {
        if ((st = sq_post_page(w->s, w->ctx, "/v2/orders/search", body, cursor, &page, where,
                               sizeof where)) != ETL_OK)
            goto done;
        sq_span_t orders, o;
        sq_iter_t it;
        if ((st = sq_array(w->ctx, &page, "orders", where, &orders)) != ETL_OK)
            goto done;
        int64_t updated = 0;
        size_t count = 0;
        sq_iter_init(&it, &page, orders);
        while (sq_iter_item(&it, &o)) {
            if ((st = sq_orders_emit(w, &page, o, where, &updated)) != ETL_OK)
                goto done;
            count++;
        }
        if ((st = sq_string(w->ctx, &page, page.root, "cursor", where, &next)) != ETL_OK)
            goto done;
        if (last && next && count) {
            etl_value_t ck = etl_ts(updated); /* ascending: all before it are in */
            if ((st = etl_emit_checkpoint(w->em, &ck)) != ETL_OK)
                goto done;
        }
        if ((st = sq_next_cursor(w->ctx, where, &cursor, &next)) != ETL_OK)
            goto done;
        if (!cursor)
            break;
    }
done:
    free(cursor);
    free(next);
    json_decref(body);
    return st;
}

etl_status_t sq_read_orders(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                            const etl_read_t *req, etl_emitter_t *em)
{
    sq_orders_walk_t w = {0};
    const char *const *locs;
    size_t nlocs;
    int64_t since;
    int has_since;
    char start[40], end[40];
    etl_status_t st;
    w.s = s;
    w.ctx = ctx;
    w.em = em;
    w.lines = strcmp(def->name, "order_line_items") == 0;
    if ((st = sq_since_us(ctx, req, &since, &has_since)) != ETL_OK ||
        (st = sq_page_limit(s, ctx, req, SQ_PAGE_MAX, &w.limit)) != ETL_OK ||
        (st = sq_plan_new(ctx, def->cols, req->schema, &w.plan)) != ETL_OK)
        goto done;
    /* a line item's order_id, location_id and updated_at are its order's */
    w.c_id = sq_plan_col(w.plan, "id");
    w.c_order = w.lines ? sq_plan_col(w.plan, "order_id") : -1;
    w.c_location = w.lines ? sq_plan_col(w.plan, "location_id") : -1;
    w.c_updated = w.lines ? sq_plan_col(w.plan, "updated_at") : -1;
    if (has_since) {
        sq_format_ms(since, start, sizeof start); /* inclusive, like the core's bound */
        w.start = start;
    }
    if ((st = sq_locations(s, ctx, &locs, &nlocs)) != ETL_OK)
        goto done;
    if (!nlocs) {
        etl_log(ctx, ETL_LOG_WARN, "no locations: no orders to read");
        goto done;
    }
    size_t ngroups = (nlocs + SQ_ORDERS_LOCATIONS_MAX - 1) / SQ_ORDERS_LOCATIONS_MAX;
    if (ngroups > 1) {
        int64_t newest = 0;
        int found = 0;
        for (size_t g = 0; g < ngroups; g++) {
            size_t off = g * SQ_ORDERS_LOCATIONS_MAX;
            size_t n = nlocs - off < SQ_ORDERS_LOCATIONS_MAX ? nlocs - off
                                                               : SQ_ORDERS_LOCATIONS_MAX;
            if ((st = sq_orders_newest(&w, locs + off, n, &newest, &found)) != ETL_OK)
                goto done;
        }
        if (!found)
            goto done; /* nothing yet: whatever comes is newer than the probe */
        /* one millisecond on: end_at is inclusive in Square's documentation */
        sq_format_ms(newest + 1000, end, sizeof end);
        w.end = end;
        etl_log(ctx, ETL_LOG_DEBUG, "%zu locations in %zu groups, orders up to %s", nlocs,
                ngroups, end);
    }
    for (size_t g = 0; g < ngroups; g++) {
        size_t off = g * SQ_ORDERS_LOCATIONS_MAX;
        size_t n = nlocs - off < SQ_ORDERS_LOCATIONS_MAX ? nlocs - off : SQ_ORDERS_LOCATIONS_MAX;
        if ((st = sq_orders_walk(&w, locs + off, n, g + 1 == ngroups)) != ETL_OK)
            goto done;
    }
done:
    sq_plan_free(w.plan);
    return st;
}
