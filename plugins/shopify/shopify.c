/*
 * shopify.c - etl-shopify.so: orders, line items, products, variants,
 * customers, locations and inventory levels from the Shopify REST Admin API.
 *
 * This file: the descriptor and options, the instance, and the request path
 * every read goes through:
 *   - X-Shopify-Access-Token on every call (redacted everywhere);
 *   - X-Shopify-Shop-Api-Call-Limit ("32/40") fed to the toolkit's limiter
 *     after every answer, so the client slows down before the shop's leaky
 *     bucket overflows; a 429 with Retry-After is retried by the toolkit;
 *   - a 401 ends the stream with a message naming the shop, and every later
 *     stream of the run fails at once with it (no point asking again);
 *   - cursor pagination through the Link header: the next request carries
 *     only page_info, limit and fields, as Shopify demands (any filter next
 *     to page_info is a 400).
 * The streams themselves are in shopify_streams.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopify.h"

#define SHOPIFY_DEFAULT_VERSION "2025-07"

static const etl_option_def_t shopify_options[] = {
    {"shop", ETL_OPT_STRING, 1, NULL, 0,
     "the shop's name: NAME of NAME.myshopify.com (the API is https://NAME.myshopify.com "
     "unless base_url is set)",
     NULL},
    {"token", ETL_OPT_STRING, 1, NULL, 1,
     "an Admin API access token (shpat_...), sent as X-Shopify-Access-Token", NULL},
    {"api_version", ETL_OPT_STRING, 0, SHOPIFY_DEFAULT_VERSION, 0,
     "the REST Admin API version: YYYY-MM (a quarterly release) or unstable", NULL},
    {"leak_rate", ETL_OPT_STRING, 0, "2", 0,
     "calls per second the shop's bucket leaks: 2 (standard), 4 (Advanced), 20 (Plus)", NULL},
    {"page_size", ETL_OPT_INT, 0, "250", 0, "records per page (limit=), 1..250", NULL},
    ETL_HTTP_OPTIONS,
    {NULL, 0, 0, NULL, 0, NULL, NULL},
};

/* ------------------------------------------------------------ instance */

static void shopify_close(void *self)
{
    shopify_t *s = self;
    if (!s)
        return;
    etl_http_close(s->http);
    etl_json_scratch_free(s->scratch);
    free(s->prefix);
    free(s->auth_error);
    free(s);
}

/* "acme", "acme.myshopify.com" or "https://acme.myshopify.com/" -> "acme". */
static char *shopify_shop_name(const char *opt)
{
    const char *p = opt;
    if (strncmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncmp(p, "http://", 7) == 0)
        p += 7;
    size_t n = strcspn(p, "./");
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '-')
            return NULL;
    const char *rest = p + n;
    if (*rest && strcmp(rest, ".myshopify.com") != 0 && strcmp(rest, ".myshopify.com/") != 0)
        return NULL;
    return strndup(p, n);
}

static int shopify_version_ok(const char *v)
{
    if (strcmp(v, "unstable") == 0)
        return 1;
    if (strlen(v) != 7 || v[4] != '-')
        return 0;
    for (int i = 0; i < 7; i++)
        if (i != 4 && !isdigit((unsigned char)v[i]))
            return 0;
    int month = (v[5] - '0') * 10 + (v[6] - '0');
    return month >= 1 && month <= 12;
}

static etl_status_t shopify_open(etl_ctx_t *ctx, void **self)
{
    etl_status_t st = ETL_OK;
    char *name = NULL;
    shopify_t *s = calloc(1, sizeof *s);
    if (!s || !(s->scratch = etl_json_scratch_new())) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    s->shop = etl_opt(ctx, "shop");
    s->version = etl_opt(ctx, "api_version");
    if (!s->version || !*s->version)
        s->version = SHOPIFY_DEFAULT_VERSION;
    if (!shopify_version_ok(s->version)) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "option api_version: '%s' is not YYYY-MM (e.g. %s) or unstable", s->version,
                      SHOPIFY_DEFAULT_VERSION);
        goto fail;
    }
    if (!s->shop || !(name = shopify_shop_name(s->shop))) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "option shop: '%s' is not a shop name (expected NAME or NAME.myshopify.com)",
                      s->shop ? s->shop : "");
        goto fail;
    }
    const char *token = etl_opt(ctx, "token");
    if (!token || !*token) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "option token is empty: the shop %s needs an Admin API access token", s->shop);
        goto fail;
    }
    const char *leak = etl_opt(ctx, "leak_rate");
    char *end = NULL;
    errno = 0;
    s->leak = leak ? strtod(leak, &end) : 2.0;
    if (leak && (errno || end == leak || *end || !(s->leak > 0) || s->leak > 1000)) {
        st = etl_fail(ctx, ETL_ERR_CONFIG,
                      "option leak_rate: '%s' is not a number of calls per second (e.g. 2 or 20)",
                      leak);
        goto fail;
    }
    int64_t ps = etl_opt_int(ctx, "page_size", SHOPIFY_MAX_LIMIT);
    if (ps < 1 || ps > SHOPIFY_MAX_LIMIT) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option page_size: %lld is not within 1..%d",
                      (long long)ps, SHOPIFY_MAX_LIMIT);
        goto fail;
    }
    s->page_size = (long)ps;
    size_t plen = strlen(s->version) + 16;
    if (!(s->prefix = malloc(plen))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(s->prefix, plen, "/admin/api/%s/", s->version);
    if (!(s->http = etl_http_open(ctx))) {
        st = ETL_ERR_CONFIG; /* the toolkit said why */
        goto fail;
    }
    char base[256];
    snprintf(base, sizeof base, "https://%s.myshopify.com", name);
    if ((st = etl_http_set_base_url(s->http, base)) != ETL_OK ||
        (st = etl_http_set_header(s->http, "X-Shopify-Access-Token", token)) != ETL_OK ||
        (st = etl_http_set_header(s->http, "Accept", "application/json")) != ETL_OK)
        goto fail;
    free(name);
    *self = s;
    return ETL_OK;
fail:
    free(name);
    shopify_close(s);
    return st;
}

/* ------------------------------------------------------------ requests */

/* The start of a body for a message: at most 300 bytes, one line. */
static void shopify_body_snippet(const etl_http_response_t *rs, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->body_len && n + 1 < size && i < 300; i++) {
        char c = rs->body[i];
        buf[n++] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    buf[n] = '\0';
}

/* Shopify's error text: {"errors": "text"} or {"errors": {"field": ["msg"]}}. */
static void shopify_error_text(const etl_http_response_t *rs, char *buf, size_t size)
{
    json_t *root = json_loadb(rs->body, rs->body_len, 0, NULL);
    json_t *e = root ? json_object_get(root, "errors") : NULL;
    if (json_is_string(e)) {
        snprintf(buf, size, "%s", json_string_value(e));
    } else if (json_is_object(e) || json_is_array(e)) {
        char *d = json_dumps(e, JSON_COMPACT);
        snprintf(buf, size, "%s", d ? d : "");
        free(d);
    } else {
        shopify_body_snippet(rs, buf, size);
    }
    json_decref(root);
}

/* Sends one GET and turns every answer but a 2xx into an error naming the
 * shop and the URL. Feeds the call-limit header to the limiter first. */
static etl_status_t shopify_request(shopify_t *s, etl_ctx_t *ctx, etl_http_request_t *rq,
                                    etl_http_response_t *rs)
{
    if (s->auth_error)
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", s->auth_error);
    etl_status_t st = etl_http_request(s->http, rq, rs);
    if (rs->status)
        etl_http_rate_from_header(s->http, rs, "X-Shopify-Shop-Api-Call-Limit", s->leak);
    if (st != ETL_OK)
        return st; /* the toolkit's message: URL, attempts, last status */
    if (rs->status >= 200 && rs->status < 300) {
        const char *used = etl_http_header(rs, "X-Shopify-API-Version");
        if (used && strcmp(used, s->version) != 0 && !s->version_warned) {
            s->version_warned = 1;
            etl_log(ctx, ETL_LOG_WARN,
                    "api_version %s is not served by shop %s: Shopify answered with version %s "
                    "(set api_version to a supported release)",
                    s->version, s->shop, used);
        }
        return ETL_OK;
    }
    const char *url = rs->url ? rs->url : rq->url;
    char text[512];
    shopify_error_text(rs, text, sizeof text);
    if (rs->status == 401) {
        char msg[1024];
        snprintf(msg, sizeof msg,
                 "shop %s refused the access token (option token): GET %s: status 401: %s",
                 s->shop, url, text);
        free(s->auth_error);
        s->auth_error = strdup(msg);
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", msg);
    }
    if (rs->status == 403)
        return etl_fail(ctx, ETL_ERR_AUTH,
                        "shop %s: the access token lacks the scope for this resource (e.g. "
                        "read_orders, read_all_orders, read_inventory): GET %s: status 403: %s",
                        s->shop, url, text);
    if (rs->status == 402 || rs->status == 423)
        return etl_fail(ctx, ETL_ERR_AUTH, "shop %s is unavailable (frozen or locked): GET %s: "
                        "status %ld: %s", s->shop, url, rs->status, text);
    if (rs->status == 404)
        return etl_fail(ctx, ETL_ERR_CONFIG,
                        "GET %s: status 404: %s (is api_version %s valid, and is this shop's "
                        "resource there?)",
                        url, text, s->version);
    return etl_fail(ctx, ETL_ERR_DATA, "GET %s: status %ld: %s", url, rs->status, text);
}

static char *shopify_path(shopify_t *s, const char *resource)
{
    size_t n = strlen(s->prefix) + strlen(resource) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s", s->prefix, resource);
    return p;
}

etl_status_t shopify_get_json(shopify_t *s, etl_ctx_t *ctx, const char *resource,
                              const etl_http_param_t *query, size_t nquery, json_t **out)
{
    etl_http_response_t rs = {0};
    etl_http_request_t rq = {0};
    etl_status_t st;
    *out = NULL;
    char *path = shopify_path(s, resource);
    if (!path)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    rq.url = path;
    rq.query = query;
    rq.nquery = nquery;
    if ((st = shopify_request(s, ctx, &rq, &rs)) == ETL_OK) {
        st = etl_json_parse(ctx, rs.body, rs.body_len, rs.url, out);
        etl_progress_page(ctx);
    }
    etl_http_response_free(&rs);
    free(path);
    return st;
}

etl_status_t shopify_walk(shopify_t *s, etl_ctx_t *ctx, const char *resource,
                          const etl_http_param_t *query, size_t nquery, const char *fields,
                          const char *envelope, shopify_item_fn fn, void *arg)
{
    etl_status_t st = ETL_OK;
    etl_http_response_t rs = {0};
    etl_http_param_t *q = NULL;
    char *page_info = NULL, *path = shopify_path(s, resource);
    json_t *root = NULL;
    char limit[16];
    snprintf(limit, sizeof limit, "%ld", s->page_size);
    if (!path || !(q = calloc(nquery + 3, sizeof *q))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (long page = 1;; page++) {
        size_t n = 0;
        if (!page_info) {
            for (size_t i = 0; i < nquery; i++)
                q[n++] = query[i];
        } else {
            q[n++] = (etl_http_param_t){"page_info", page_info};
        }
        q[n++] = (etl_http_param_t){"limit", limit};
        if (fields)
            q[n++] = (etl_http_param_t){"fields", fields};
        etl_http_request_t rq = {0};
        rq.url = path;
        rq.query = q;
        rq.nquery = n;
        if ((st = shopify_request(s, ctx, &rq, &rs)) != ETL_OK)
            goto done;
        if ((st = etl_json_parse(ctx, rs.body, rs.body_len, rs.url, &root)) != ETL_OK)
            goto done;
        json_t *list = json_object_get(root, envelope);
        if (!json_is_array(list)) {
            st = etl_fail(ctx, ETL_ERR_DATA, "GET %s: the answer has no '%s' list", rs.url,
                          envelope);
            goto done;
        }
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            if (!json_is_object(item)) {
                st = etl_fail(ctx, ETL_ERR_DATA, "GET %s: %s[%zu] is not an object", rs.url,
                              envelope, i);
                goto done;
            }
            if ((st = fn(arg, item)) != ETL_OK)
                goto done;
        }
        json_decref(root);
        root = NULL;
        etl_progress_page(ctx);
        char *next = etl_http_next_link(&rs);
        if (!next)
            break; /* no rel="next": the last page */
        char *pi = etl_http_query_param(next, "page_info");
        free(next);
        if (!pi || !*pi) {
            free(pi);
            st = etl_fail(ctx, ETL_ERR_DATA, "GET %s: the Link header's next page has no page_info",
                          rs.url);
            goto done;
        }
        if (page_info && strcmp(pi, page_info) == 0) {
            free(pi);
            st = etl_fail(ctx, ETL_ERR_DATA,
                          "GET %s: the Link header points at the same page again (page %ld)",
                          rs.url, page);
            goto done;
        }
        free(page_info);
        page_info = pi;
        if (etl_cancelled(ctx)) {
            st = ETL_ERR_CANCELLED;
            goto done;
        }
    }
done:
    json_decref(root);
    etl_http_response_free(&rs);
    free(page_info);
    free(q);
    free(path);
    return st;
}

/* ------------------------------------------------------------ check */

static etl_status_t shopify_check(void *self, etl_ctx_t *ctx)
{
    shopify_t *s = self;
    json_t *root = NULL;
    etl_status_t st = shopify_get_json(s, ctx, "shop.json", NULL, 0, &root);
    if (st == ETL_OK) {
        const char *domain = etl_json_str(root, "shop.myshopify_domain");
        etl_log(ctx, ETL_LOG_INFO, "shop %s: token accepted%s%s", s->shop,
                domain ? ", domain " : "", domain ? domain : "");
    }
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------ descriptor */

static const etl_source_ops_t shopify_source = {
    .open = shopify_open,
    .check = shopify_check,
    .streams = shopify_streams,
    .discover = shopify_discover,
    .read = shopify_read,
    .close = shopify_close,
};

static const etl_plugin_t shopify_plugin = {
    .abi_version = ETL_ABI_VERSION,
    .struct_size = sizeof(etl_plugin_t),
    .name = "shopify",
    .version = "0.1.0",
    .description = "Shopify REST Admin API source: orders, line items, products, variants, "
                   "customers, locations, inventory levels",
    .options = shopify_options,
    .source = &shopify_source,
    .sink = NULL,
};

ETL_PLUGIN(shopify_plugin)
