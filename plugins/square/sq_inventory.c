/*
 * sq_inventory.c - inventory_counts: POST /v2/inventory/counts/batch-retrieve
 * with updated_after when the core gives a lower bound, the location_ids
 * option when it is set, page by page with the body's cursor. A count's key
 * is catalog_object_id:location_id:state; its change time is calculated_at.
 * Square answers newest first, so no checkpoint is stated on the way: the
 * core's (the greatest calculated_at read) is taken at the end.
 */
#define _GNU_SOURCE
#include <stdlib.h>

#include "square.h"

static json_t *sq_counts_body(sq_t *s, int64_t limit, const char *after)
{
    json_t *b = json_object();
    if (!b || json_object_set_new(b, "limit", json_integer(limit)) ||
        (after && json_object_set_new(b, "updated_after", json_string(after))))
        goto fail;
    if (s->opt_locs) {
        json_t *ids = json_array();
        if (!ids || json_object_set_new(b, "location_ids", ids))
            goto fail;
        for (size_t i = 0; i < s->nopt_locs; i++)
            if (json_array_append_new(ids, json_string(s->opt_locs[i])))
                goto fail;
    }
    return b;
fail:
    json_decref(b);
    return NULL;
}

etl_status_t sq_read_inventory(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                               const etl_read_t *req, etl_emitter_t *em)
{
    static const char *const key[] = {"catalog_object_id", "location_id", "state"};
    json_t *body = NULL;
    sq_plan_t *plan = NULL;
    sq_page_t page;
    char *cursor = NULL, *next = NULL;
    char where[512], after[40];
    int64_t limit, since;
    int has_since;
    etl_status_t st;
    if ((st = sq_since_us(ctx, req, &since, &has_since)) != ETL_OK ||
        (st = sq_page_limit(s, ctx, req, SQ_PAGE_MAX, &limit)) != ETL_OK ||
        (st = sq_plan_new(ctx, def->cols, req->schema, &plan)) != ETL_OK)
        goto done;
    int id_col = sq_plan_col(plan, "id"), kcol[3], probe[3];
    for (int j = 0; j < 3; j++) {
        kcol[j] = sq_plan_col(plan, key[j]);
        probe[j] = kcol[j] >= 0 ? -1 : sq_plan_probe(plan, key[j]);
    }
    if (has_since) {
        /* updated_after is exclusive too: one millisecond less */
        sq_format_ms(since - 1000, after, sizeof after);
        etl_log(ctx, ETL_LOG_DEBUG, "counts calculated after %s", after);
    }
    if (!(body = sq_counts_body(s, limit, has_since ? after : NULL))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        if ((st = sq_post_page(s, ctx, "/v2/inventory/counts/batch-retrieve", body, cursor,
                               &page, where, sizeof where)) != ETL_OK)
            goto done;
        sq_span_t counts, c;
        sq_iter_t it;
        if ((st = sq_array(ctx, &page, "counts", where, &counts)) != ETL_OK)
            goto done;
        sq_iter_init(&it, &page, counts);
        for (size_t i = 0; sq_iter_item(&it, &c); i++) {
            etl_value_t *row;
            etl_json_scratch_reset(s->scratch);
            if ((st = sq_plan_fill(plan, ctx, &s->conv, &page, c, where, &row)) != ETL_OK)
                goto done;
            if (id_col >= 0) {
                /* the key: catalog_object_id:location_id:state */
                etl_value_t part[3];
                for (int j = 0; j < 3; j++) {
                    /* a part the read has as a column (counts_cols: text, from
                     * the member of its name) was converted by the fill */
                    if (kcol[j] >= 0)
                        part[j] = row[kcol[j]];
                    else if ((st = sq_value(ctx, &s->conv, sq_plan_span(plan, probe[j]),
                                            ETL_T_TEXT, key[j], &part[j])) != ETL_OK)
                        goto done;
                    if (part[j].type != ETL_T_TEXT || !part[j].len) {
                        st = etl_fail(ctx, ETL_ERR_DATA, "%s: count %zu has no %s", where, i,
                                      key[j]);
                        goto done;
                    }
                }
                size_t len;
                const char *id = etl_json_scratch_printf(
                    s->scratch, &len, "%.*s:%.*s:%.*s", (int)part[0].len, part[0].v.s,
                    (int)part[1].len, part[1].v.s, (int)part[2].len, part[2].v.s);
                if (!id) {
                    st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
                    goto done;
                }
                row[id_col] = etl_text(id, len);
            }
            if ((st = etl_emit(em, row)) != ETL_OK)
                goto done;
        }
        if ((st = sq_string(ctx, &page, page.root, "cursor", where, &next)) != ETL_OK ||
            (st = sq_next_cursor(ctx, where, &cursor, &next)) != ETL_OK)
            goto done;
        if (!cursor)
            break;
    }
done:
    free(cursor);
    free(next);
    json_decref(body);
    sq_plan_free(plan);
    return st;
}
