/*
 * sq_catalog.c - catalog_categories, catalog_items and catalog_variations:
 * POST /v2/catalog/search for one object type, deleted objects included,
 * from begin_time when the core gives a lower bound, page by page with the
 * body's cursor. Live objects are emitted as rows, deleted ones
 * (is_deleted: true) as deletions, which the pipeline's `deletes: soft` turns
 * into a deleted_at mark. At the end the first page's latest_time (how far
 * the catalog's answer reaches) is stated as the checkpoint.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "square.h"

/* The request body: the same on every page but for the cursor. */
static json_t *sq_catalog_body(const sq_stream_t *def, int64_t limit, const char *begin_time)
{
    json_t *b = json_object();
    json_t *types = json_array();
    if (!b || !types || json_array_append_new(types, json_string(def->object_type)) ||
        json_object_set_new(b, "object_types", types) ||
        json_object_set_new(b, "include_deleted_objects", json_true()) ||
        json_object_set_new(b, "limit", json_integer(limit)) ||
        (begin_time && json_object_set_new(b, "begin_time", json_string(begin_time)))) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* The span's string equals text (no escapes expected in Square's enums). */
static int sq_is(sq_span_t v, const char *text)
{
    size_t n = strlen(text);
    return v.p && v.n == n + 2 && *v.p == '"' && memcmp(v.p + 1, text, n) == 0;
}

etl_status_t sq_read_catalog(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                             const etl_read_t *req, etl_emitter_t *em)
{
    json_t *body = NULL;
    sq_plan_t *plan = NULL;
    sq_page_t page;
    char *cursor = NULL, *next = NULL, *lt = NULL;
    char where[512], begin[40];
    int64_t limit, since, latest = 0;
    int has_since, has_latest = 0, first = 1;
    etl_status_t st;
    if ((st = sq_since_us(ctx, req, &since, &has_since)) != ETL_OK ||
        (st = sq_page_limit(s, ctx, req, SQ_PAGE_MAX, &limit)) != ETL_OK ||
        (st = sq_plan_new(ctx, def->cols, req->schema, &plan)) != ETL_OK)
        goto done;
    int p_type = sq_plan_probe(plan, "type"), p_deleted = sq_plan_probe(plan, "is_deleted");
    if (has_since) {
        /* begin_time is exclusive and Square's times have milliseconds:
         * one millisecond less keeps an object stamped at the bound */
        sq_format_ms(since - 1000, begin, sizeof begin);
        etl_log(ctx, ETL_LOG_DEBUG, "%s changed after %s (begin_time is exclusive)",
                def->object_type, begin);
    }
    if (!(body = sq_catalog_body(def, limit, has_since ? begin : NULL))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        if ((st = sq_post_page(s, ctx, "/v2/catalog/search", body, cursor, &page, where,
                               sizeof where)) != ETL_OK)
            goto done;
        if (first) {
            /* the catalog's newest change when the walk began: a change
             * made later is stamped later, and found from there next time */
            if ((st = sq_string(ctx, &page, page.root, "latest_time", where, &lt)) != ETL_OK)
                goto done;
            if (lt && etl_ts_parse(lt, strlen(lt), &latest) != 0) {
                st = etl_fail(ctx, ETL_ERR_DATA, "%s: latest_time '%s' is not a time", where, lt);
                goto done;
            }
            has_latest = lt != NULL;
            first = 0;
        }
        sq_span_t objs, obj;
        sq_iter_t it;
        if ((st = sq_array(ctx, &page, "objects", where, &objs)) != ETL_OK)
            goto done;
        sq_iter_init(&it, &page, objs);
        while (sq_iter_item(&it, &obj)) {
            etl_value_t *row;
            etl_json_scratch_reset(s->scratch);
            if ((st = sq_plan_fill(plan, ctx, &s->conv, &page, obj, where, &row)) != ETL_OK)
                goto done;
            if (!sq_is(sq_plan_span(plan, p_type), def->object_type))
                continue; /* not asked for */
            sq_span_t del = sq_plan_span(plan, p_deleted);
            st = del.p && *del.p == 't' ? etl_emit_delete(em, row) : etl_emit(em, row);
            if (st != ETL_OK)
                goto done;
        }
        if ((st = sq_string(ctx, &page, page.root, "cursor", where, &next)) != ETL_OK ||
            (st = sq_next_cursor(ctx, where, &cursor, &next)) != ETL_OK)
            goto done;
        if (!cursor)
            break;
    }
    if (has_latest) {
        etl_value_t ck = etl_ts(latest);
        st = etl_emit_checkpoint(em, &ck);
    }
done:
    free(cursor);
    free(next);
    free(lt);
    json_decref(body);
    sq_plan_free(plan);
    return st;
}
