/* http_log.c - debug lines of the HTTP toolkit and what they hide:
 * credential headers, credential query/form parameters and JSON fields
 * (tokens, secrets, passwords, keys, codes), on top of the redaction of
 * registered secrets every log line gets. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"

#define BODY_LOG_MAX 2048

static const char *const secret_headers[] = {
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-shopify-access-token",
    "x-amz-access-token", "x-amz-security-token", "x-api-key", "api-key",
};

int http_header_is_secret(const etl_http_t *h, const char *name, size_t len)
{
    for (size_t i = 0; i < ETL_ARRAY_LEN(secret_headers); i++)
        if (strlen(secret_headers[i]) == len && strncasecmp(secret_headers[i], name, len) == 0)
            return 1;
    for (size_t i = 0; h && i < h->nsecret; i++)
        if (strlen(h->secret_names[i]) == len && strncasecmp(h->secret_names[i], name, len) == 0)
            return 1;
    return 0;
}

static int has(const char *lower, const char *word) { return strstr(lower, word) != NULL; }

static int ends(const char *lower, size_t n, const char *word)
{
    size_t l = strlen(word);
    return n >= l && memcmp(lower + n - l, word, l) == 0;
}

int http_param_is_secret(const char *name, size_t len)
{
    char lower[64];
    if (len == 0)
        return 0;
    if (len >= sizeof lower)
        len = sizeof lower - 1;
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[len] = '\0';
    static const char *const exact[] = {"key", "code", "sig", "auth", "pass", "pwd",
                                        "access", "refresh", "jwt"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(exact); i++)
        if (strcmp(lower, exact[i]) == 0)
            return 1;
    if (has(lower, "token"))
        /* pagination cursors named like tokens (NextToken, page_token) are not credentials */
        return !has(lower, "next") && !has(lower, "page") && !has(lower, "continuation") &&
               !has(lower, "sync");
    return has(lower, "secret") || has(lower, "password") || has(lower, "passwd") ||
           has(lower, "signature") || has(lower, "credential") || has(lower, "apikey") ||
           ends(lower, len, "_key") || ends(lower, len, "-key") ||
           (has(lower, "auth") && ends(lower, len, "code"));
}

/* Registers s[0..n) as a secret when learn is set: a credential the client
 * sends is redacted everywhere afterwards (an echo, an error message). */
static void learn_secret(etl_ctx_t *learn, const char *s, size_t n)
{
    if (!learn || n < 4 || n > 4096)
        return;
    char *v = etl_strndup(s, n);
    if (v)
        etl_secret(learn, v);
    free(v);
}

/* Appends the form/query string s[0..n) with credential values as ***. */
static void add_form_redacted(etl_buf_t *b, const char *s, size_t n, etl_ctx_t *learn)
{
    size_t i = 0;
    while (i < n) {
        size_t st = i;
        while (i < n && s[i] != '&' && s[i] != '#')
            i++;
        const char *eq = memchr(s + st, '=', i - st);
        if (eq && http_param_is_secret(s + st, (size_t)(eq - (s + st)))) {
            learn_secret(learn, eq + 1, (size_t)(s + i - eq - 1));
            etl_buf_add(b, s + st, (size_t)(eq - (s + st)) + 1);
            etl_buf_adds(b, "***");
        } else {
            etl_buf_add(b, s + st, i - st);
        }
        if (i < n && s[i] == '#') {
            etl_buf_add(b, s + i, n - i);
            return;
        }
        if (i < n)
            etl_buf_addc(b, s[i++]);
    }
}

static char *url_redacted(const char *url, etl_ctx_t *learn)
{
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_add(&b, "", 0);
    if (!url)
        return etl_buf_take(&b);
    const char *q = strchr(url, '?');
    if (!q) {
        etl_buf_adds(&b, url);
    } else {
        etl_buf_add(&b, url, (size_t)(q - url) + 1);
        add_form_redacted(&b, q + 1, strlen(q + 1), learn);
    }
    return etl_buf_take(&b);
}

char *http_url_redacted(const char *url) { return url_redacted(url, NULL); }

/* Length of the JSON string starting at s[i] == '"' (quotes included),
 * or n - i when it runs off the end. */
static size_t json_str_len(const char *s, size_t n, size_t i)
{
    size_t k = i + 1;
    while (k < n && s[k] != '"')
        k += s[k] == '\\' ? 2 : 1;
    return k < n ? k + 1 - i : n - i;
}

/* Appends the value of a credential key, a string or an array (of strings),
 * with every string as "***"; returns the bytes of s it covered. */
static size_t add_secret_value(etl_buf_t *b, const char *s, size_t n, etl_ctx_t *learn)
{
    if (s[0] == '"') {
        size_t l = json_str_len(s, n, 0);
        learn_secret(learn, s + 1, l >= 2 ? l - 2 : 0);
        etl_buf_adds(b, "\"***\"");
        return l;
    }
    size_t i = 0;
    int depth = 0;
    while (i < n) {
        if (s[i] == '"') {
            size_t l = json_str_len(s, n, i);
            learn_secret(learn, s + i + 1, l >= 2 ? l - 2 : 0);
            etl_buf_adds(b, "\"***\"");
            i += l;
            continue;
        }
        depth += s[i] == '[';
        depth -= s[i] == ']';
        etl_buf_addc(b, s[i++]);
        if (depth == 0)
            break;
    }
    return i;
}

/* Appends JSON text with the string values of credential keys as "***".
 * Works on a prefix of a document too. */
static void add_json_redacted(etl_buf_t *b, const char *s, size_t n, etl_ctx_t *learn)
{
    size_t i = 0, run = 0;
    while (i < n) {
        if (s[i] != '"') {
            run++, i++;
            continue;
        }
        size_t kl = json_str_len(s, n, i);
        size_t j = i + kl;
        while (j < n && isspace((unsigned char)s[j]))
            j++;
        int is_key = j < n && s[j] == ':';
        /* a JSON "code" is an error code (Square's envelope), not an OAuth code */
        int error_code = kl == 6 && strncasecmp(s + i + 1, "code", 4) == 0;
        if (is_key && kl >= 2 && !error_code &&
            (http_param_is_secret(s + i + 1, kl - 2) ||
             http_header_is_secret(NULL, s + i + 1, kl - 2))) {
            size_t v = j + 1;
            while (v < n && isspace((unsigned char)s[v]))
                v++;
            if (v < n && (s[v] == '"' || s[v] == '[')) {
                etl_buf_add(b, s + i - run, run + (v - i));
                run = 0;
                i = v + add_secret_value(b, s + v, n - v, learn);
                continue;
            }
        }
        if (!is_key && kl >= 2 && memchr(s + i, '=', kl)) {
            /* a URL or form text inside a string: its credential parameters */
            int closed = i + kl <= n && s[i + kl - 1] == '"' && kl >= 2;
            etl_buf_add(b, s + i - run, run + 1);
            run = 0;
            add_form_redacted(b, s + i + 1, kl - 1 - (size_t)closed, learn);
            if (closed)
                etl_buf_addc(b, '"');
            i += kl;
            continue;
        }
        run += kl, i += kl;
    }
    etl_buf_add(b, s + n - run, run);
}

static void excerpt(etl_buf_t *out, const char *body, size_t len, const char *content_type,
                    size_t max, etl_ctx_t *learn)
{
    size_t n = len < max ? len : max;
    etl_buf_t red;
    etl_buf_init(&red);
    etl_buf_add(&red, "", 0);
    size_t k = 0;
    while (k < n && isspace((unsigned char)body[k]))
        k++;
    if (content_type && strcasestr(content_type, "x-www-form-urlencoded"))
        add_form_redacted(&red, body, n, learn);
    else if (k < n && (body[k] == '{' || body[k] == '['))
        add_json_redacted(&red, body, n, learn);
    else
        etl_buf_add(&red, body, n);
    for (size_t i = 0; i < red.len; i++) {
        unsigned char c = (unsigned char)red.data[i];
        if (c == '\n')
            etl_buf_adds(out, "\\n");
        else if (c == '\r')
            etl_buf_adds(out, "\\r");
        else if (c == '\t')
            etl_buf_adds(out, "\\t");
        else if (c < 0x20 || c == 0x7f)
            etl_buf_printf(out, "\\x%02x", c);
        else
            etl_buf_addc(out, (char)c);
    }
    if (len > n)
        etl_buf_printf(out, " ... (%zu more bytes)", len - n);
    etl_buf_free(&red);
}

void http_body_excerpt(etl_buf_t *out, const char *body, size_t len, const char *content_type,
                       size_t max)
{
    excerpt(out, body, len, content_type, max, NULL);
}

static void log_header(etl_http_t *h, char dir, const char *name, size_t nl, const char *value)
{
    if (http_header_is_secret(h, name, nl))
        etl_log(h->ctx, ETL_LOG_DEBUG, "%c %.*s: ***", dir, (int)nl, name);
    else
        etl_log(h->ctx, ETL_LOG_DEBUG, "%c %.*s: %s", dir, (int)nl, name, value);
}

void http_log_request(etl_http_t *h, const char *method, const char *url,
                      const struct curl_slist *hdrs, const etl_http_request_t *req, int attempt)
{
    if (!etl_log_enabled(h->ctx, ETL_LOG_DEBUG))
        return;
    char *u = url_redacted(url, h->ctx);
    etl_log(h->ctx, ETL_LOG_DEBUG, "> %s %s (attempt %d)", method, u ? u : "?", attempt);
    free(u);
    for (const struct curl_slist *l = hdrs; l; l = l->next) {
        const char *c = strchr(l->data, ':');
        if (!c || !c[1])
            continue; /* "Expect:" and the like: headers switched off */
        const char *v = c + 1;
        while (*v == ' ')
            v++;
        log_header(h, '>', l->data, (size_t)(c - l->data), v);
    }
    if (req->body_len && req->body && !(req->flags & ETL_HTTP_NO_LOG_BODY)) {
        etl_buf_t b;
        etl_buf_init(&b);
        excerpt(&b, req->body, req->body_len,
                req->content_type ? req->content_type : "application/json", BODY_LOG_MAX, h->ctx);
        etl_log(h->ctx, ETL_LOG_DEBUG, "> body (%zu bytes): %s", req->body_len,
                b.data ? b.data : "");
        etl_buf_free(&b);
    }
}

void http_log_response(etl_http_t *h, const char *url, const etl_http_response_t *resp,
                       const char *content_type, unsigned flags)
{
    if (!etl_log_enabled(h->ctx, ETL_LOG_DEBUG))
        return;
    char *u = http_url_redacted(url);
    etl_log(h->ctx, ETL_LOG_DEBUG, "< %ld %s (%.1f ms, %zu bytes)", resp->status, u ? u : "?",
            (double)resp->transfer_us / 1000.0, resp->body_len);
    free(u);
    for (size_t i = 0; i < resp->nheaders; i++)
        log_header(h, '<', resp->headers[i].name, strlen(resp->headers[i].name),
                   resp->headers[i].value);
    if (resp->body_len && !(flags & ETL_HTTP_NO_LOG_BODY)) {
        etl_buf_t b;
        etl_buf_init(&b);
        http_body_excerpt(&b, resp->body, resp->body_len, content_type, BODY_LOG_MAX);
        etl_log(h->ctx, ETL_LOG_DEBUG, "< body: %s", b.data ? b.data : "");
        etl_buf_free(&b);
    }
}
