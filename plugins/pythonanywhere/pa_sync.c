/*
 * pa_sync.c - batched POSTs to the sync endpoints and their per-item results.
 *
 * A write() gets the rows the core's ledger found new or changed; they are
 * sent in requests of `batch` items ({"products": [...]} or
 * {"receipts": [...]}), in order. For each answer:
 *
 *   200  one result per item: created -> CREATED, updated -> UPDATED,
 *        skipped -> UNCHANGED, error -> the row fails with the server's
 *        message (dead letters) and the rest goes on.
 *   401  the token was refused: renew it (refresh token, else log in again)
 *        and send the same request once more; a second 401 fails the stream.
 *   413  too large: the stream's batch size becomes half the request's
 *        for the rest of the run, and the request's items go again in
 *        requests of that size. One item alone that is too large fails
 *        (dead letters).
 *   400  the whole batch was refused and nothing of it stored (a missing
 *        required field): it is split in halves until the refused items are
 *        alone, so only they fail, with the server's detail and errors; the
 *        good ones are stored. A bad item costs about 2 log2(batch) requests.
 *   429, 5xx, network errors: retried by the HTTP toolkit (backoff,
 *        Retry-After); when its retries run out the batch returns
 *        ETL_ERR_RETRY and the core runs it again (the server's dedup by
 *        local ids and barcodes makes a resend harmless).
 *   anything else fails the stream with the URL, the status and the detail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pa.h"

/* Marks row r failed, with the server's words. */
#define PA_FAIL(rows, r, ...) etl_rows_fail((rows), (r), __VA_ARGS__)

static etl_status_t pa_send(pa_t *p, pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows,
                            const size_t *idx, size_t n);

/* Reads the per-item results of a 200 into the rows' outcomes. */
static etl_status_t pa_results(pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows,
                               const size_t *idx, size_t n, const etl_http_response_t *rs)
{
    json_t *root = NULL;
    etl_status_t st = etl_json_parse(ctx, rs->body, rs->body_len, rs->url, &root);
    if (st != ETL_OK)
        return st;
    json_t *results = etl_json_get(root, "results");
    unsigned char *seen = calloc(n + 1, 1);
    int64_t c[4] = {0, 0, 0, 0};
    if (!seen) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!json_is_array(results)) {
        st = etl_fail(ctx, ETL_ERR_DATA,
                      "POST %s: status %ld but the answer has no \"results\" list (%zu items sent)",
                      rs->url, rs->status, n);
        goto done;
    }
    for (size_t k = 0; k < json_array_size(results); k++) {
        json_t *r = json_array_get(results, k);
        int64_t at = (int64_t)k;
        if (etl_json_int(r, "index", &at) < 0 || at < 0 || (size_t)at >= n || seen[at])
            continue; /* not one of ours: the item stays without a result */
        seen[at] = 1;
        size_t row = idx[at];
        const char *status = etl_json_str(r, "status");
        if (status && strcmp(status, "created") == 0) {
            rows->outcome[row] = ETL_OUT_CREATED;
            c[0]++;
        } else if (status && strcmp(status, "updated") == 0) {
            rows->outcome[row] = ETL_OUT_UPDATED;
            c[1]++;
        } else if (status && strcmp(status, "skipped") == 0) {
            rows->outcome[row] = ETL_OUT_UNCHANGED; /* the server had it as sent */
            c[2]++;
        } else if (status && strcmp(status, "error") == 0) {
            const char *why = etl_json_str(r, "error");
            PA_FAIL(rows, row, "the server refused this %s: %s", s->kind == PA_PRODUCTS ? "product" : "receipt",
                    why && *why ? why : "(no message)");
            c[3]++;
        } else {
            PA_FAIL(rows, row, "POST %s: unknown result status '%s' for this item", rs->url,
                    status ? status : "(none)");
            c[3]++;
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (!seen[k]) {
            PA_FAIL(rows, idx[k], "POST %s: the answer has no result for this item (index %zu)",
                    rs->url, k);
            c[3]++;
        }
    }
    s->created += c[0];
    s->updated += c[1];
    s->skipped += c[2];
    s->refused += c[3];
    etl_log(ctx, ETL_LOG_DEBUG,
            "POST %s: %zu item(s): created %lld, updated %lld, skipped %lld, refused %lld "
            "(%.0f ms, %d attempt(s))",
            rs->url, n, (long long)c[0], (long long)c[1], (long long)c[2], (long long)c[3],
            (double)rs->total_us / 1000.0, rs->attempts);
done:
    free(seen);
    json_decref(root);
    return st;
}

/* {"<member>":[item,...]} for rows idx[0..n). */
static etl_status_t pa_body(pa_stream_t *s, etl_ctx_t *ctx, const size_t *idx, size_t n)
{
    s->body.len = 0;
    s->body.oom = 0;
    pa_buf_adds(&s->body, "{\"");
    pa_buf_adds(&s->body, s->member);
    pa_buf_adds(&s->body, "\":[");
    for (size_t k = 0; k < n; k++) {
        if (k)
            pa_buf_addc(&s->body, ',');
        pa_buf_add(&s->body, s->items.data + s->off[idx[k]], s->len[idx[k]]);
    }
    pa_buf_adds(&s->body, "]}");
    return s->body.oom ? etl_fail(ctx, ETL_ERR_NOMEM, "out of memory") : ETL_OK;
}

/* Sends idx[0..n) in two halves. */
static etl_status_t pa_halves(pa_t *p, pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows,
                              const size_t *idx, size_t n)
{
    size_t half = n / 2;
    etl_status_t st = pa_send(p, s, ctx, rows, idx, half);
    if (st == ETL_OK)
        st = pa_send(p, s, ctx, rows, idx + half, n - half);
    return st;
}

/* Sends idx[0..n) in requests of s->batch items, which a 413 on the way
 * makes smaller. */
static etl_status_t pa_chunks(pa_t *p, pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows,
                              const size_t *idx, size_t n)
{
    for (size_t at = 0; at < n;) {
        size_t k = n - at < s->batch ? n - at : s->batch;
        etl_status_t st = pa_send(p, s, ctx, rows, idx + at, k);
        if (st != ETL_OK)
            return st;
        at += k;
    }
    return ETL_OK;
}

/* One request for the rows idx[0..n), with what its answer asks for. */
static etl_status_t pa_send(pa_t *p, pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows,
                            const size_t *idx, size_t n)
{
    etl_http_response_t rs = {0};
    char detail[768];
    etl_status_t st;
    if (!n)
        return ETL_OK;
    if ((st = pa_token(p, ctx)) != ETL_OK)
        return st;
    if ((st = pa_body(s, ctx, idx, n)) != ETL_OK)
        return st;
    for (int renewed = 0;; renewed = 1) {
        etl_http_request_t rq = {0};
        rq.method = "POST";
        rq.url = s->path;
        rq.body = s->body.data;
        rq.body_len = s->body.len;
        s->requests++;
        etl_progress_page(ctx);
        if ((st = etl_http_request(p->http, &rq, &rs)) != ETL_OK)
            goto done;
        if (rs.status != 401 || renewed)
            break;
        etl_log(ctx, ETL_LOG_INFO, "POST %s: status 401 (%s); renewing the token and sending "
                "the same %zu item(s) again", rs.url, pa_detail(&rs, 0, detail, sizeof detail), n);
        if ((st = pa_renew(p, ctx)) != ETL_OK)
            goto done;
    }
    if (rs.status >= 200 && rs.status < 300) {
        s->sent += (int64_t)n;
        st = pa_results(s, ctx, rows, idx, n, &rs);
    } else if (rs.status == 401) {
        st = etl_fail(ctx, ETL_ERR_AUTH, "POST %s: status 401 with a new token: %s", rs.url,
                      pa_detail(&rs, 0, detail, sizeof detail));
    } else if (rs.status == 413 && n > 1) {
        size_t half = n / 2;
        if (s->batch > half) {
            etl_log(ctx, ETL_LOG_WARN,
                    "POST %s: status 413 for %zu items (%s); sending %zu at a time from now on",
                    rs.url, n, pa_detail(&rs, 0, detail, sizeof detail), half);
            s->batch = half;
        }
        s->too_large++;
        etl_http_response_free(&rs);
        st = pa_chunks(p, s, ctx, rows, idx, n);
    } else if (rs.status == 413) {
        PA_FAIL(rows, idx[0], "POST %s: status 413 for this item alone: %s", rs.url,
                pa_detail(&rs, 0, detail, sizeof detail));
        s->refused++;
    } else if (rs.status == 400 && n > 1) {
        /* nothing of the batch was stored: find the refused items by halving */
        etl_log(ctx, ETL_LOG_INFO,
                "POST %s: status 400, the batch of %zu item(s) was refused (%s); splitting it "
                "to find the bad item(s)",
                rs.url, n, pa_detail(&rs, 1, detail, sizeof detail));
        s->bisected++;
        etl_http_response_free(&rs);
        st = pa_halves(p, s, ctx, rows, idx, n);
    } else if (rs.status == 400) {
        PA_FAIL(rows, idx[0], "the server refused this %s (POST %s: status 400): %s",
                s->kind == PA_PRODUCTS ? "product" : "receipt", rs.url,
                pa_detail(&rs, 1, detail, sizeof detail));
        s->refused++;
    } else {
        /* the toolkit's message: the URL, the status and the start of the body */
        st = etl_http_check(p->http, &rs);
        if (st == ETL_OK) /* a 1xx or 3xx it let through */
            st = etl_fail(ctx, ETL_ERR_DATA, "POST %s: unexpected status %ld: %s", rs.url,
                          rs.status, pa_detail(&rs, 0, detail, sizeof detail));
    }
done:
    etl_http_response_free(&rs);
    return st;
}

static etl_status_t pa_reserve(pa_stream_t *s, etl_ctx_t *ctx, size_t n)
{
    if (n <= s->cap)
        return ETL_OK;
    size_t *off = realloc(s->off, n * sizeof *off);
    if (off)
        s->off = off;
    size_t *len = off ? realloc(s->len, n * sizeof *len) : NULL;
    if (len)
        s->len = len;
    size_t *idx = len ? realloc(s->idx, n * sizeof *idx) : NULL;
    if (!idx)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    s->idx = idx;
    s->cap = n;
    return ETL_OK;
}

etl_status_t pa_sync(pa_t *p, pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows)
{
    size_t n = rows->nrows, nsend = 0;
    char why[512];
    etl_status_t st = pa_reserve(s, ctx, n ? n : 1);
    if (st != ETL_OK)
        return st;
    s->items.len = 0;
    s->items.oom = 0;
    for (size_t i = 0; i < n; i++) {
        s->off[i] = s->items.len;
        if (pa_item(&s->items, rows->schema, etl_rows_row(rows, i), why, sizeof why) != 0) {
            PA_FAIL(rows, i, "cannot send this row: %s", why);
            s->len[i] = 0;
            continue;
        }
        s->len[i] = s->items.len - s->off[i];
        s->idx[nsend++] = i;
    }
    if (s->items.oom)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    if (p->dry_run) {
        etl_log(ctx, ETL_LOG_INFO, "dry run: %zu item(s) not sent to %s", nsend, s->path);
        return ETL_OK;
    }
    return pa_chunks(p, s, ctx, rows, s->idx, nsend);
}
