/*
 * pa_auth.c - SimpleJWT tokens for the remote store.
 *
 * POST token_path {"username","password"} gives an access token (5 minutes
 * by default) and a refresh token (a day); POST refresh_path {"refresh"}
 * gives a new access token. The access token goes out as the client's
 * `Authorization: Bearer` header, which the HTTP toolkit registers for
 * redaction; the refresh token is registered with etl_secret. Tokens live
 * in memory for one run only: nothing is written to the state store.
 *
 * Expiry is read from the tokens' own `exp` claim: an access token that
 * has less than PA_MARGIN seconds left is refreshed before a batch goes
 * out (clocks differ: a 401 is still possible and handled by pa_renew).
 * A login the server refuses (400/401) ends the run: the message is kept
 * and every later call fails with it, without asking again.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pa.h"

#define PA_MARGIN 30 /* seconds of life a token must have left to be used */

/* ------------------------------------------------------------ helpers */

int64_t pa_jwt_exp(const char *jwt)
{
    const char *a = jwt ? strchr(jwt, '.') : NULL;
    const char *z = a ? strchr(a + 1, '.') : NULL;
    if (!z)
        return 0;
    a++;
    size_t n = (size_t)(z - a);
    unsigned char *out = malloc(n + 4);
    if (!out)
        return 0;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-' || c == '+' ? 62
                : c == '_' || c == '/' ? 63
                                       : -1;
        if (c == '=')
            break;
        if (v < 0) {
            free(out);
            return 0;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)((acc >> bits) & 0xFF);
        }
    }
    int64_t exp = 0;
    json_t *payload = json_loadb((const char *)out, o, 0, NULL);
    if (payload && etl_json_int(payload, "exp", &exp) != 0)
        exp = 0;
    json_decref(payload);
    free(out);
    return exp;
}

const char *pa_detail(const etl_http_response_t *rs, int with_errors, char *buf, size_t size)
{
    json_t *root = rs->body && rs->body_len
                       ? json_loadb(rs->body, rs->body_len, JSON_DECODE_ANY, NULL)
                       : NULL;
    const char *detail = root ? etl_json_str(root, "detail") : NULL;
    json_t *errors = root && with_errors ? etl_json_get(root, "errors") : NULL;
    char *etext = errors && (json_object_size(errors) || json_array_size(errors)) ? json_dumps(errors, JSON_COMPACT) : NULL;
    if (detail || etext) {
        snprintf(buf, size, "%s%s%s", detail ? detail : "", detail && etext ? " " : "",
                 etext ? etext : "");
    } else if (root && json_is_object(root)) {
        /* DRF field errors: {"username": ["This field is required."]} */
        char *all = json_dumps(root, JSON_COMPACT);
        snprintf(buf, size, "%s", all ? all : "");
        free(all);
    } else {
        /* HTML error pages and the like: their first bytes, on one line */
        size_t n = rs->body_len < 200 ? rs->body_len : 200, o = 0;
        for (size_t i = 0; i < n && o + 1 < size; i++)
            buf[o++] = rs->body[i] == '\n' || rs->body[i] == '\r' ? ' ' : rs->body[i];
        if (size)
            buf[o < size ? o : size - 1] = '\0';
        if (!n && size)
            snprintf(buf, size, "(empty body)");
    }
    free(etext);
    json_decref(root);
    return buf;
}

static void pa_set_access(pa_t *p, etl_ctx_t *ctx, const char *tok)
{
    free(p->access);
    p->access = strdup(tok);
    p->access_exp = pa_jwt_exp(tok);
    etl_secret(ctx, tok);
}

static void pa_set_refresh(pa_t *p, etl_ctx_t *ctx, const char *tok)
{
    free(p->refresh);
    p->refresh = tok ? strdup(tok) : NULL;
    p->refresh_exp = tok ? pa_jwt_exp(tok) : 0;
    if (tok)
        etl_secret(ctx, tok);
}

static etl_status_t pa_bearer(pa_t *p, etl_ctx_t *ctx)
{
    if (!p->access)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    size_t n = strlen(p->access) + 8;
    char *h = malloc(n);
    if (!h)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    snprintf(h, n, "Bearer %s", p->access);
    etl_status_t st = etl_http_set_header(p->http, "Authorization", h);
    free(h);
    if (st != ETL_OK)
        return etl_fail(ctx, st, "setting the Authorization header: %s", etl_status_name(st));
    return ETL_OK;
}

/* POSTs a JSON object to an auth endpoint: no Authorization header, no
 * bodies in the debug log (they hold the password and the tokens). */
static etl_status_t pa_auth_post(pa_t *p, etl_ctx_t *ctx, const char *path, json_t *body,
                                 etl_http_response_t *rs)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    etl_http_param_t no_auth[] = {{"Authorization", NULL}};
    etl_http_request_t rq = {0};
    rq.method = "POST";
    rq.url = path;
    rq.headers = no_auth;
    rq.nheaders = 1;
    rq.body = text;
    rq.body_len = strlen(text);
    rq.flags = ETL_HTTP_NO_LOG_BODY;
    etl_status_t st = etl_http_request(p->http, &rq, rs);
    free(text);
    return st;
}

/* ------------------------------------------------------------ login, refresh */

etl_status_t pa_login(pa_t *p, etl_ctx_t *ctx)
{
    if (p->auth_error)
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", p->auth_error);
    etl_http_response_t rs = {0};
    json_t *root = NULL;
    char detail[512];
    json_t *body = json_pack("{s:s, s:s}", "username", p->username, "password", p->password);
    etl_status_t st = pa_auth_post(p, ctx, p->token_path, body, &rs);
    if (st != ETL_OK)
        goto done;
    if (rs.status == 400 || rs.status == 401 || rs.status == 403) {
        st = etl_fail(ctx, ETL_ERR_AUTH,
                      "login refused: POST %s: status %ld: %s (check the username and password "
                      "options); nothing was sent",
                      rs.url, rs.status, pa_detail(&rs, 1, detail, sizeof detail));
        p->auth_error = strdup(etl_ctx_error(ctx));
        goto done;
    }
    if ((st = etl_http_check(p->http, &rs)) != ETL_OK)
        goto done;
    if ((st = etl_json_parse(ctx, rs.body, rs.body_len, rs.url, &root)) != ETL_OK)
        goto done;
    const char *access = etl_json_str(root, "access");
    if (!access || !*access) {
        st = etl_fail(ctx, ETL_ERR_DATA, "login: POST %s: the answer has no access token", rs.url);
        goto done;
    }
    pa_set_access(p, ctx, access);
    pa_set_refresh(p, ctx, etl_json_str(root, "refresh"));
    p->logins++;
    etl_log(ctx, ETL_LOG_DEBUG, "logged in as %s at %s (access token valid until %lld)",
            p->username, rs.url, (long long)p->access_exp);
    st = pa_bearer(p, ctx);
done:
    json_decref(root);
    etl_http_response_free(&rs);
    return st;
}

/* A new access token from the refresh token. *refused is set (and ETL_OK
 * returned) when the server no longer takes the refresh token. */
static etl_status_t pa_refresh(pa_t *p, etl_ctx_t *ctx, int *refused)
{
    etl_http_response_t rs = {0};
    json_t *root = NULL;
    char detail[512];
    *refused = 0;
    json_t *body = json_pack("{s:s}", "refresh", p->refresh);
    etl_status_t st = pa_auth_post(p, ctx, p->refresh_path, body, &rs);
    if (st != ETL_OK)
        goto done;
    if (rs.status == 400 || rs.status == 401 || rs.status == 403) {
        etl_log(ctx, ETL_LOG_INFO, "refresh token refused (POST %s: status %ld: %s); logging in again",
                rs.url, rs.status, pa_detail(&rs, 0, detail, sizeof detail));
        pa_set_refresh(p, ctx, NULL);
        *refused = 1;
        goto done;
    }
    if ((st = etl_http_check(p->http, &rs)) != ETL_OK)
        goto done;
    if ((st = etl_json_parse(ctx, rs.body, rs.body_len, rs.url, &root)) != ETL_OK)
        goto done;
    const char *access = etl_json_str(root, "access");
    if (!access || !*access) {
        st = etl_fail(ctx, ETL_ERR_DATA, "refresh: POST %s: the answer has no access token",
                      rs.url);
        goto done;
    }
    pa_set_access(p, ctx, access);
    if (etl_json_str(root, "refresh")) /* the server rotates refresh tokens */
        pa_set_refresh(p, ctx, etl_json_str(root, "refresh"));
    p->refreshes++;
    etl_log(ctx, ETL_LOG_DEBUG, "access token refreshed (valid until %lld)",
            (long long)p->access_exp);
    st = pa_bearer(p, ctx);
done:
    json_decref(root);
    etl_http_response_free(&rs);
    return st;
}

etl_status_t pa_renew(pa_t *p, etl_ctx_t *ctx)
{
    int64_t now = (int64_t)time(NULL);
    if (p->auth_error)
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", p->auth_error);
    if (p->refresh && (!p->refresh_exp || p->refresh_exp - now > PA_MARGIN)) {
        int refused;
        etl_status_t st = pa_refresh(p, ctx, &refused);
        if (st != ETL_OK || !refused)
            return st;
    }
    return pa_login(p, ctx);
}

etl_status_t pa_token(pa_t *p, etl_ctx_t *ctx)
{
    if (p->auth_error)
        return etl_fail(ctx, ETL_ERR_AUTH, "%s", p->auth_error);
    if (!p->access)
        return pa_login(p, ctx);
    if (p->access_exp && p->access_exp - (int64_t)time(NULL) <= PA_MARGIN)
        return pa_renew(p, ctx);
    return ETL_OK;
}
