/*
 * amazon_token.c - Login with Amazon: the refresh-token exchange and the
 * access token's cache.
 *
 * POST token_url, form-encoded: grant_type=refresh_token, refresh_token,
 * client_id, client_secret -> {"access_token", "expires_in", ...}. The
 * token is kept in the plugin's key/value store (the pipeline's state
 * store, per pipeline and matrix client) as
 *     lwa_access_token = {"access_token", "expires_at" (epoch seconds),
 *                         "ttl" (seconds), "client" (a fingerprint)}
 * so the next run reuses it instead of asking again. The fingerprint is a
 * hash of client_id, client_secret, refresh_token and token_url: other
 * credentials never pick up a token that was not issued for them. A token is replaced a
 * minute before it expires (a quarter of its life for short-lived ones),
 * and whenever the API refused it (amazon_call asks with force).
 * Every token is registered with etl_secret before anything could log it.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amazon.h"

#define AMAZON_KV_TOKEN "lwa_access_token"
#define AMAZON_MARGIN_US (60 * (int64_t)1000000)

/* Refresh this long before the expiry. */
static int64_t amazon_margin(int64_t ttl_us)
{
    if (ttl_us > 0 && ttl_us / 4 < AMAZON_MARGIN_US)
        return ttl_us / 4;
    return AMAZON_MARGIN_US;
}

/* FNV-1a 64 of the credentials the token belongs to, as 16 hex digits (the
 * client secret too: a changed secret is tried at once, not in an hour). */
static void amazon_fingerprint(const amazon_t *a, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[] = {a->client_id, a->client_secret, a->refresh_token, a->token_url};
    for (size_t i = 0; i < 4; i++) {
        for (const char *p = parts[i] ? parts[i] : ""; *p; p++) {
            h ^= (unsigned char)*p;
            h *= 1099511628211ULL;
        }
        h ^= 0xff; /* separator */
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016" PRIx64, h);
}

static etl_status_t amazon_use(amazon_t *a, etl_ctx_t *ctx, const char *tok, int64_t expires_us,
                               int64_t ttl_us)
{
    char *t = strdup(tok);
    if (!t)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    etl_secret(ctx, t);
    free(a->token);
    a->token = t;
    a->token_expires_us = expires_us;
    a->token_ttl_us = ttl_us;
    return etl_http_set_header(a->http, "x-amz-access-token", t);
}

/* The cached token, when it is for these credentials and still good. */
static void amazon_cache_load(amazon_t *a, etl_ctx_t *ctx)
{
    char *v = NULL;
    if (etl_kv_get(ctx, AMAZON_KV_TOKEN, &v) != ETL_OK) {
        etl_log(ctx, ETL_LOG_WARN, "cannot read the cached access token: %s", etl_ctx_error(ctx));
        return;
    }
    if (!v)
        return;
    json_t *j = json_loads(v, 0, NULL);
    const char *tok = etl_json_str(j, "access_token");
    const char *client = etl_json_str(j, "client");
    int64_t exp = 0, ttl = 0;
    char fp[17];
    amazon_fingerprint(a, fp);
    if (tok && *tok)
        etl_secret(ctx, tok);
    if (!tok || !*tok || !client || strcmp(client, fp) != 0 ||
        etl_json_int(j, "expires_at", &exp) != 0 || etl_json_int(j, "ttl", &ttl) != 0) {
        etl_log(ctx, ETL_LOG_DEBUG, "the cached access token is not for these credentials");
    } else if (amazon_now_us() >= exp * 1000000 - amazon_margin(ttl * 1000000)) {
        etl_log(ctx, ETL_LOG_INFO, "the cached access token expires at %" PRId64
                                   " (epoch seconds): getting a new one",
                exp);
    } else if (amazon_use(a, ctx, tok, exp * 1000000, ttl * 1000000) == ETL_OK) {
        etl_log(ctx, ETL_LOG_DEBUG, "using the cached access token (expires in %" PRId64 "s)",
                exp - amazon_now_us() / 1000000);
    }
    json_decref(j);
    free(v);
}

static void amazon_cache_store(amazon_t *a, etl_ctx_t *ctx)
{
    char fp[17];
    amazon_fingerprint(a, fp);
    json_t *j = json_pack("{s:s, s:I, s:I, s:s}", "access_token", a->token, "expires_at",
                          (json_int_t)(a->token_expires_us / 1000000), "ttl",
                          (json_int_t)(a->token_ttl_us / 1000000), "client", fp);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!text || etl_kv_put(ctx, AMAZON_KV_TOKEN, text) != ETL_OK)
        etl_log(ctx, ETL_LOG_WARN,
                "cannot cache the access token (the next run asks for a new one): %s",
                text ? etl_ctx_error(ctx) : "out of memory");
    free(text);
    json_decref(j);
}

/* Appends name=value (value percent-encoded) to a form. */
static int amazon_form_add(char **form, size_t *len, const char *name, const char *value)
{
    char *v = etl_http_escape(value, strlen(value));
    if (!v)
        return -1;
    size_t need = *len + strlen(name) + strlen(v) + 3;
    char *f = realloc(*form, need);
    if (!f) {
        free(v);
        return -1;
    }
    *len += (size_t)snprintf(f + *len, need - *len, "%s%s=%s", *len ? "&" : "", name, v);
    *form = f;
    free(v);
    return 0;
}

/* The refresh-token exchange. */
static etl_status_t amazon_exchange(amazon_t *a, etl_ctx_t *ctx)
{
    etl_status_t st;
    char *form = NULL;
    size_t flen = 0;
    json_t *root = NULL;
    etl_http_response_t rs = {0};
    if (a->auth_error)
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", a->auth_error);
    if (amazon_form_add(&form, &flen, "grant_type", "refresh_token") ||
        amazon_form_add(&form, &flen, "refresh_token", a->refresh_token) ||
        amazon_form_add(&form, &flen, "client_id", a->client_id) ||
        amazon_form_add(&form, &flen, "client_secret", a->client_secret)) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* the SP-API header stays with the SP-API */
    static const etl_http_param_t hdrs[] = {{"x-amz-access-token", NULL}};
    etl_http_request_t rq = {0};
    rq.method = "POST";
    rq.url = a->token_url;
    rq.headers = hdrs;
    rq.nheaders = 1;
    rq.body = form;
    rq.body_len = flen;
    rq.content_type = "application/x-www-form-urlencoded;charset=UTF-8";
    rq.flags = ETL_HTTP_NO_LOG_BODY;
    if ((st = etl_http_request(a->http, &rq, &rs)) != ETL_OK)
        goto done;
    if (rs.status == 400 || rs.status == 401) {
        json_t *e = json_loadb(rs.body, rs.body_len, 0, NULL);
        const char *err = etl_json_str(e, "error"), *desc = etl_json_str(e, "error_description");
        const char *hint = err && strcmp(err, "invalid_client") == 0
                               ? "check client_id and client_secret"
                           : err && strcmp(err, "invalid_grant") == 0
                               ? "check refresh_token: revoked, expired or for another application?"
                               : "check client_id, client_secret and refresh_token";
        char msg[1024];
        snprintf(msg, sizeof msg,
                 "Login with Amazon refused the credentials: POST %s: status %ld: %s%s%s (%s)",
                 a->token_url, rs.status, err ? err : "error", desc ? ": " : "", desc ? desc : "",
                 hint);
        json_decref(e);
        free(a->auth_error);
        a->auth_error = strdup(msg);
        st = etl_fail(ctx, ETL_ERR_AUTH, "%s", msg);
        goto done;
    }
    if ((st = etl_http_check(a->http, &rs)) != ETL_OK)
        goto done;
    if ((st = etl_json_parse(ctx, rs.body, rs.body_len, a->token_url, &root)) != ETL_OK)
        goto done;
    const char *tok = etl_json_str(root, "access_token");
    int64_t ttl = 3600;
    if (!tok || !*tok) {
        st = etl_fail(ctx, ETL_ERR_DATA, "POST %s: the answer has no access_token", a->token_url);
        goto done;
    }
    if (etl_json_int(root, "expires_in", &ttl) < 0 || ttl <= 0)
        ttl = 3600;
    if ((st = amazon_use(a, ctx, tok, amazon_now_us() + ttl * 1000000, ttl * 1000000)) != ETL_OK)
        goto done;
    etl_log(ctx, ETL_LOG_INFO, "got a new access token from %s (valid %" PRId64 "s)",
            a->token_url, ttl);
    amazon_cache_store(a, ctx);
done:
    json_decref(root);
    etl_http_response_free(&rs);
    if (form) {
        memset(form, 0, flen);
        free(form);
    }
    return st;
}

etl_status_t amazon_token(amazon_t *a, etl_ctx_t *ctx, int force)
{
    if (!force) {
        if (!a->token && !a->cache_checked) {
            a->cache_checked = 1;
            amazon_cache_load(a, ctx);
        }
        if (a->token &&
            amazon_now_us() < a->token_expires_us - amazon_margin(a->token_ttl_us))
            return ETL_OK;
        if (a->token)
            etl_log(ctx, ETL_LOG_INFO, "the access token is about to expire: getting a new one");
    }
    return amazon_exchange(a, ctx);
}
