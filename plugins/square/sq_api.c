/*
 * sq_api.c - talking to Square: one call (request, status, JSON, Square's
 * error envelope), times as Square writes them, page sizes, and the list of
 * locations the orders and inventory readers need.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "square.h"

const char *sq_where(sq_t *s, const char *method, char *buf, size_t size)
{
    snprintf(buf, size, "%s %s", method, s->rs.url ? s->rs.url : "?");
    return buf;
}

/* Square's own words from an error envelope: "CODE: detail" of the first error. */
static void sq_envelope(const sq_page_t *pg, sq_span_t errors, char *buf, size_t size)
{
    sq_iter_t it;
    sq_span_t e = {NULL, 0}, v;
    char *code = NULL, *detail = NULL;
    size_t n = 0;
    sq_iter_init(&it, pg, errors);
    while (sq_iter_item(&it, &v))
        if (!n++)
            e = v;
    if (e.p && sq_member(pg, e, "code", &v))
        code = sq_strdup(v);
    if (e.p && sq_member(pg, e, "detail", &v))
        detail = sq_strdup(v);
    snprintf(buf, size, "%s%s%s%s", code ? code : "error", detail ? ": " : "",
             detail ? detail : "", n > 1 ? " (and more errors)" : "");
    free(code);
    free(detail);
}

etl_status_t sq_call(sq_t *s, etl_ctx_t *ctx, const char *method, const char *path,
                     const json_t *body, sq_page_t *page)
{
    etl_status_t st;
    char *text = NULL;
    char where[512];
    memset(page, 0, sizeof *page);
    if (body && !(text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    etl_http_request_t rq = {0};
    rq.method = method;
    rq.url = path;
    rq.body = text;
    rq.body_len = text ? strlen(text) : 0;
    st = etl_http_request(s->http, &rq, &s->rs);
    free(text);
    if (st != ETL_OK) {
        /* retries ran out, or the network: the toolkit's message names the
         * URL; say it plainly when the last answer was cut short */
        const char *cl = etl_http_header(&s->rs, "content-length");
        char *end = NULL;
        unsigned long long want = cl ? strtoull(cl, &end, 10) : 0;
        if (st != ETL_ERR_CANCELLED && cl && end != cl && want > s->rs.body_len) {
            char msg[900];
            snprintf(msg, sizeof msg, "%s", etl_ctx_error(ctx));
            return etl_fail(ctx, st, "%s %s: answer truncated (%zu of %llu bytes), every time: %s",
                            method, s->rs.url ? s->rs.url : path, s->rs.body_len, want, msg);
        }
        return st;
    }
    etl_progress_page(ctx);
    /* 401/403 -> ETL_ERR_AUTH, others -> ETL_ERR_DATA; the message names
     * METHOD URL, the status and Square's error envelope */
    if ((st = etl_http_check(s->http, &s->rs)) != ETL_OK)
        return st;
    sq_where(s, method, where, sizeof where);
    if ((st = sq_json_page(ctx, s->rs.body, s->rs.body_len, where, &s->index, page)) != ETL_OK)
        return st;
    s->conv.compact = page->compact;
    sq_span_t errors;
    if (sq_member(page, page->root, "errors", &errors) && *errors.p == '[') {
        sq_iter_t it;
        sq_span_t first;
        sq_iter_init(&it, page, errors);
        if (sq_iter_item(&it, &first)) {
            char msg[512];
            sq_envelope(page, errors, msg, sizeof msg);
            return etl_fail(ctx, ETL_ERR_DATA, "%s: status %ld with errors: %s", where,
                            s->rs.status, msg);
        }
    }
    return ETL_OK;
}

etl_status_t sq_post_page(sq_t *s, etl_ctx_t *ctx, const char *path, json_t *body,
                          const char *cursor, sq_page_t *page, char *where, size_t size)
{
    /* the original query, unchanged, with the cursor */
    if (cursor && json_object_set_new(body, "cursor", json_string(cursor)))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    etl_status_t st = sq_call(s, ctx, "POST", path, body, page);
    if (st == ETL_OK)
        sq_where(s, "POST", where, size);
    return st;
}

etl_status_t sq_next_cursor(etl_ctx_t *ctx, const char *where, char **cursor, char **next)
{
    if (*next && *cursor && strcmp(*next, *cursor) == 0)
        return etl_fail(ctx, ETL_ERR_DATA, "%s: the same cursor came back twice", where);
    free(*cursor);
    *cursor = *next;
    *next = NULL;
    return ETL_OK;
}

etl_status_t sq_array(etl_ctx_t *ctx, const sq_page_t *page, const char *name,
                      const char *where, sq_span_t *out)
{
    out->p = NULL;
    out->n = 0;
    if (!sq_member(page, page->root, name, out) || *out->p == 'n') {
        out->p = NULL;
        out->n = 0;
        return ETL_OK;
    }
    if (*out->p != '[')
        return etl_fail(ctx, ETL_ERR_DATA, "%s: '%s' is not an array", where, name);
    return ETL_OK;
}

etl_status_t sq_string(etl_ctx_t *ctx, const sq_page_t *pg, sq_span_t obj, const char *name, const char *where,
                       char **out)
{
    sq_span_t v;
    *out = NULL;
    if (!sq_member(pg, obj, name, &v) || *v.p == 'n')
        return ETL_OK;
    if (*v.p != '"')
        return etl_fail(ctx, ETL_ERR_DATA, "%s: '%s' is not a string", where, name);
    if (!(*out = sq_strdup(v)))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    return ETL_OK;
}

etl_status_t sq_since_us(etl_ctx_t *ctx, const etl_read_t *req, int64_t *us, int *has)
{
    const etl_value_t *v = req->since;
    *has = 0;
    *us = 0;
    if (!v || v->type == ETL_T_NULL)
        return ETL_OK;
    if (v->type == ETL_T_TIMESTAMP) {
        *us = v->v.i;
    } else if ((v->type == ETL_T_TEXT || v->type == ETL_T_NUMERIC) &&
               etl_ts_parse(v->v.s, v->len, us) == 0) {
        /* a text checkpoint (a pipeline that renamed the cursor's type) */
    } else {
        return etl_fail(ctx, ETL_ERR_CONFIG, "stream %s: cursor bound of type %s is not a time "
                        "(Square filters by time)", req->stream, etl_type_name(v->type));
    }
    *has = 1;
    return ETL_OK;
}

void sq_format_ms(int64_t us, char *buf, size_t size)
{
    int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000); /* floor */
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

etl_status_t sq_page_limit(sq_t *s, etl_ctx_t *ctx, const etl_read_t *req, int64_t max,
                           int64_t *out)
{
    int64_t n = s->page_size;
    const char *sel = etl_read_select(req, "limit");
    if (sel) {
        char *end;
        errno = 0;
        long long v = strtoll(sel, &end, 10);
        if (errno || end == sel || *end || v < 1 || v > SQ_PAGE_MAX)
            return etl_fail(ctx, ETL_ERR_CONFIG, "stream %s: select limit '%s' (expected 1..%d)",
                            req->stream, sel, SQ_PAGE_MAX);
        n = v;
    }
    *out = n < max ? n : max;
    return ETL_OK;
}

etl_status_t sq_remember_locations(sq_t *s, etl_ctx_t *ctx, const sq_page_t *pg,
                                   sq_span_t locations)
{
    sq_iter_t it;
    sq_span_t loc, v;
    size_t n = 0, k = 0;
    sq_iter_init(&it, pg, locations);
    while (sq_iter_item(&it, &loc))
        n++;
    char **ids = calloc(n + 1, sizeof *ids);
    if (!ids)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    sq_iter_init(&it, pg, locations);
    while (sq_iter_item(&it, &loc)) {
        if (*loc.p != '{' || !sq_member(pg, loc, "id", &v) || *v.p != '"')
            continue;
        if (!(ids[k] = sq_strdup(v))) {
            for (size_t j = 0; j < k; j++)
                free(ids[j]);
            free(ids);
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        }
        k++;
    }
    for (size_t i = 0; i < s->nall_locs; i++)
        free(s->all_locs[i]);
    free(s->all_locs);
    s->all_locs = ids;
    s->nall_locs = k;
    s->have_all_locs = 1;
    return ETL_OK;
}

etl_status_t sq_get_locations(sq_t *s, etl_ctx_t *ctx, sq_page_t *page, sq_span_t *locs,
                              char *where, size_t size)
{
    etl_status_t st = sq_call(s, ctx, "GET", "/v2/locations", NULL, page);
    if (st == ETL_OK)
        st = sq_array(ctx, page, "locations", sq_where(s, "GET", where, size), locs);
    if (st == ETL_OK)
        st = sq_remember_locations(s, ctx, page, *locs);
    return st;
}

etl_status_t sq_locations(sq_t *s, etl_ctx_t *ctx, const char *const **ids, size_t *n)
{
    if (s->opt_locs) {
        *ids = s->opt_locs;
        *n = s->nopt_locs;
        return ETL_OK;
    }
    if (!s->have_all_locs) {
        sq_page_t page;
        sq_span_t locs;
        char where[512];
        etl_status_t st = sq_get_locations(s, ctx, &page, &locs, where, sizeof where);
        if (st != ETL_OK)
            return st;
    }
    *ids = (const char *const *)s->all_locs;
    *n = s->nall_locs;
    return ETL_OK;
}
