/*
 * amazon.c - etl-amazon.so: orders and their items, FBA inventory summaries
 * and catalog items from the Amazon Selling Partner API.
 *
 * This file: the descriptor and options, the instance, the endpoint of the
 * region, and the SP-API call every read goes through:
 *   - x-amz-access-token from Login with Amazon (amazon_token.c), redacted;
 *   - one token bucket per operation (rate_key = the operation's name),
 *     seeded with the documented default rate and burst, then set from each
 *     answer's x-amzn-RateLimit-Limit (requests per second); a 429
 *     QuotaExceeded is retried by the toolkit with backoff;
 *   - a 403 (SP-API's answer to an expired or revoked access token) gets one
 *     new token and one more try; a second 403 ends the stream;
 *   - errors name the URL, the status and SP-API's {"errors":[{code, message,
 *     details}]}.
 * The streams themselves are in amazon_streams.c.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amazon.h"

#define AMAZON_TOKEN_URL "https://api.amazon.com/auth/o2/token"

static const etl_option_def_t amazon_options[] = {
    {"client_id", ETL_OPT_STRING, 1, NULL, 0,
     "the LWA client id of the SP-API application (amzn1.application-oa2-client...)", NULL},
    {"client_secret", ETL_OPT_STRING, 1, NULL, 1, "the LWA client secret of the application",
     NULL},
    {"refresh_token", ETL_OPT_STRING, 1, NULL, 1,
     "the seller's LWA refresh token (Atzr|...), from authorizing the application", NULL},
    {"token_url", ETL_OPT_STRING, 0, AMAZON_TOKEN_URL, 0,
     "the Login with Amazon token endpoint", NULL},
    {"region", ETL_OPT_ENUM, 0, "na", 0,
     "na, eu or fe: the SP-API endpoint sellingpartnerapi-REGION.amazon.com", "na|eu|fe"},
    {"marketplace_ids", ETL_OPT_LIST, 1, NULL, 0,
     "marketplace ids (e.g. ATVPDKIKX0DER); orders read all of them, inventory and catalog "
     "the first (or select: marketplace_id)",
     NULL},
    {"start", ETL_OPT_STRING, 0, "730d", 0,
     "where a first run of orders starts: a date/time (2024-01-01) or a duration back from now "
     "(730d)",
     NULL},
    ETL_HTTP_OPTIONS,
    {NULL, 0, 0, NULL, 0, NULL, NULL},
};

/* The documented default usage plan of each operation: rate (per second)
 * and burst. x-amzn-RateLimit-Limit replaces the rate as answers arrive. */
static const struct {
    const char *op;
    double rate, burst;
} amazon_plans[] = {
    {"getOrders", 0.0167, 20},
    {"getOrderItems", 0.5, 30},
    {"getInventorySummaries", 2.0, 2},
    {"searchCatalogItems", 2.0, 2},
};

int64_t amazon_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

void amazon_iso(int64_t us, char *buf, size_t size)
{
    int64_t floor_us = us - ((us % 1000000) + 1000000) % 1000000;
    etl_ts_format(floor_us, buf, size);
}

/* "730d", "12h", "1w2d": seconds; -1 when it is not a duration. */
static int64_t amazon_duration(const char *s)
{
    int64_t total = 0;
    if (!*s)
        return -1;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return -1;
        int64_t n = 0;
        while (isdigit((unsigned char)*s)) {
            if (n > 100000000)
                return -1;
            n = n * 10 + (*s++ - '0');
        }
        switch (*s++) {
        case 's': total += n; break;
        case 'm': total += n * 60; break;
        case 'h': total += n * 3600; break;
        case 'd': total += n * 86400; break;
        case 'w': total += n * 7 * 86400; break;
        default: return -1;
        }
    }
    return total;
}

static void amazon_close(void *self)
{
    amazon_t *a = self;
    if (!a)
        return;
    etl_http_close(a->http);
    etl_json_scratch_free(a->scratch);
    free(a->marketplace_list);
    free(a->token);
    free(a->auth_error);
    free(a);
}

static etl_status_t amazon_open(etl_ctx_t *ctx, void **self)
{
    etl_status_t st = ETL_OK;
    amazon_t *a = calloc(1, sizeof *a);
    if (!a || !(a->scratch = etl_json_scratch_new())) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    a->client_id = etl_opt(ctx, "client_id");
    a->client_secret = etl_opt(ctx, "client_secret");
    a->refresh_token = etl_opt(ctx, "refresh_token");
    a->token_url = etl_opt(ctx, "token_url");
    const char *empty = !a->client_id || !*a->client_id           ? "client_id"
                        : !a->client_secret || !*a->client_secret ? "client_secret"
                        : !a->refresh_token || !*a->refresh_token ? "refresh_token"
                                                                  : NULL;
    if (empty) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option %s is empty: Login with Amazon needs it", empty);
        goto fail;
    }
    if (!a->token_url || !*a->token_url)
        a->token_url = AMAZON_TOKEN_URL;
    if (strncmp(a->token_url, "https://", 8) != 0 && strncmp(a->token_url, "http://", 7) != 0) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option token_url: '%s' is not an http(s) URL",
                      a->token_url);
        goto fail;
    }
    a->nmarketplaces = etl_opt_list(ctx, "marketplace_ids", &a->marketplaces);
    size_t len = 1;
    for (size_t i = 0; i < a->nmarketplaces; i++) {
        const char *m = a->marketplaces[i];
        if (!*m || strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(m)) {
            st = etl_fail(ctx, ETL_ERR_CONFIG,
                          "option marketplace_ids: '%s' is not a marketplace id (e.g. "
                          "ATVPDKIKX0DER)",
                          m);
            goto fail;
        }
        len += strlen(m) + 1;
    }
    if (!a->nmarketplaces) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option marketplace_ids: at least one marketplace id");
        goto fail;
    }
    if (!(a->marketplace_list = calloc(1, len))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < a->nmarketplaces; i++) {
        if (i)
            strcat(a->marketplace_list, ",");
        strcat(a->marketplace_list, a->marketplaces[i]);
    }
    const char *start = etl_opt(ctx, "start");
    int64_t secs;
    if (!start || !*start)
        start = "730d";
    if (etl_ts_parse(start, strlen(start), &a->start_us) != 0) {
        if ((secs = amazon_duration(start)) < 0) {
            st = etl_fail(ctx, ETL_ERR_CONFIG,
                          "option start: '%s' is neither a date/time (2024-01-01T00:00:00Z) nor a "
                          "duration back from now (730d)",
                          start);
            goto fail;
        }
        a->start_us = amazon_now_us() - secs * 1000000;
    }
    if (!(a->http = etl_http_open(ctx))) {
        st = ETL_ERR_CONFIG; /* the toolkit said why */
        goto fail;
    }
    const char *region = etl_opt(ctx, "region");
    char base[128];
    snprintf(base, sizeof base, "https://sellingpartnerapi-%s.amazon.com", region ? region : "na");
    if ((st = etl_http_set_base_url(a->http, base)) != ETL_OK ||
        (st = etl_http_set_header(a->http, "Accept", "application/json")) != ETL_OK)
        goto fail;
    for (size_t i = 0; i < sizeof amazon_plans / sizeof amazon_plans[0]; i++)
        etl_http_rate_set(a->http, amazon_plans[i].op, amazon_plans[i].rate, amazon_plans[i].burst);
    *self = a;
    return ETL_OK;
fail:
    amazon_close(a);
    return st;
}

/* ------------------------------------------------------------ calls */

/* SP-API's error: "Code: message (details)" from {"errors":[...]}, else the body's start. */
static void amazon_error_text(const etl_http_response_t *rs, char *buf, size_t size)
{
    json_t *root = json_loadb(rs->body, rs->body_len, 0, NULL);
    json_t *e = root ? json_array_get(json_object_get(root, "errors"), 0) : NULL;
    const char *code = etl_json_str(e, "code"), *msg = etl_json_str(e, "message"),
               *det = etl_json_str(e, "details");
    if (code || msg) {
        snprintf(buf, size, "%s%s%s%s%s%s", code ? code : "", code && msg ? ": " : "",
                 msg ? msg : "", det && *det ? " (" : "", det && *det ? det : "",
                 det && *det ? ")" : "");
    } else {
        size_t n = 0;
        for (size_t i = 0; i < rs->body_len && n + 1 < size && i < 300; i++)
            buf[n++] = rs->body[i] == '\n' || rs->body[i] == '\r' ? ' ' : rs->body[i];
        buf[n] = '\0';
    }
    json_decref(root);
}

etl_status_t amazon_call(amazon_t *a, etl_ctx_t *ctx, const char *op, const char *path,
                         const etl_http_param_t *query, size_t nquery, etl_http_response_t *rs,
                         json_t **out)
{
    etl_status_t st;
    char text[600];
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        if ((st = amazon_token(a, ctx, attempt > 0)) != ETL_OK)
            return st;
        etl_http_request_t rq = {0};
        rq.url = path;
        rq.query = query;
        rq.nquery = nquery;
        rq.rate_key = op;
        if ((st = etl_http_request(a->http, &rq, rs)) != ETL_OK)
            return st; /* the toolkit's message: URL, attempts, last status */
        if (rs->status == 403 && attempt == 0) {
            amazon_error_text(rs, text, sizeof text);
            etl_log(ctx, ETL_LOG_WARN, "%s: the access token was refused (%s): getting a new one",
                    op, text);
            continue;
        }
        etl_http_rate_from_header(a->http, rs, "x-amzn-RateLimit-Limit", 0);
        if (rs->status >= 200 && rs->status < 300) {
            etl_progress_page(ctx);
            return etl_json_parse(ctx, rs->body, rs->body_len, rs->url, out);
        }
        amazon_error_text(rs, text, sizeof text);
        if (rs->status == 401 || rs->status == 403)
            return etl_fail(ctx, ETL_ERR_AUTH,
                            "%s: GET %s: status %ld: %s (refused with a new access token too: "
                            "is the application authorized by this seller for this API?)",
                            op, rs->url, rs->status, text);
        return etl_fail(ctx, rs->status == 404 ? ETL_ERR_CONFIG : ETL_ERR_DATA,
                        "%s: GET %s: status %ld: %s", op, rs->url, rs->status, text);
    }
}

/* ------------------------------------------------------------ check */

static etl_status_t amazon_check(void *self, etl_ctx_t *ctx)
{
    amazon_t *a = self;
    etl_status_t st = amazon_token(a, ctx, 1);
    if (st == ETL_OK)
        etl_log(ctx, ETL_LOG_INFO, "Login with Amazon accepted the credentials (%s)",
                a->token_url);
    return st;
}

/* ------------------------------------------------------------ descriptor */

static const etl_source_ops_t amazon_source = {
    .open = amazon_open,
    .check = amazon_check,
    .streams = amazon_streams,
    .discover = amazon_discover,
    .read = amazon_read,
    .close = amazon_close,
};

static const etl_plugin_t amazon_plugin = {
    .abi_version = ETL_ABI_VERSION,
    .struct_size = sizeof(etl_plugin_t),
    .name = "amazon",
    .version = "0.1.0",
    .description = "Amazon Selling Partner API source: orders, order items, FBA inventory "
                   "summaries, catalog items",
    .options = amazon_options,
    .source = &amazon_source,
    .sink = NULL,
};

ETL_PLUGIN(amazon_plugin)
