/*
 * sq_locations.c - the locations stream: GET /v2/locations (one answer, no
 * paging; INACTIVE locations included). Locations have no change time, so
 * the stream is read in full every run; the core's delete detection on full
 * reads (with `deletes:` set) marks the locations Square no longer lists.
 */
#include <stdlib.h>
#include <string.h>

#include "square.h"

static int sq_wanted(const sq_t *s, const char *id)
{
    if (!s->opt_locs)
        return 1;
    for (size_t i = 0; i < s->nopt_locs; i++)
        if (strcmp(s->opt_locs[i], id) == 0)
            return 1;
    return 0;
}

etl_status_t sq_read_locations(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                               const etl_read_t *req, etl_emitter_t *em)
{
    sq_plan_t *plan = NULL;
    sq_page_t page;
    sq_span_t locs, loc, v;
    sq_iter_t it;
    char where[512];
    etl_status_t st = sq_plan_new(ctx, def->cols, req->schema, &plan);
    if (st != ETL_OK)
        goto done;
    if ((st = sq_get_locations(s, ctx, &page, &locs, where, sizeof where)) != ETL_OK)
        goto done;
    sq_iter_init(&it, &page, locs);
    for (size_t i = 0; sq_iter_item(&it, &loc); i++) {
        char *id = NULL;
        if (*loc.p != '{' || !sq_member(&page, loc, "id", &v) || !(id = sq_strdup(v))) {
            st = etl_fail(ctx, ETL_ERR_DATA, "%s: location %zu has no id", where, i);
            goto done;
        }
        int wanted = sq_wanted(s, id);
        free(id);
        if (!wanted)
            continue;
        etl_value_t *row;
        etl_json_scratch_reset(s->scratch);
        if ((st = sq_plan_fill(plan, ctx, &s->conv, &page, loc, where, &row)) != ETL_OK ||
            (st = etl_emit(em, row)) != ETL_OK)
            goto done;
    }
done:
    sq_plan_free(plan);
    return st;
}
