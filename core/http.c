/* http.c - the HTTP client of the toolkit (etl/http.h): options, default
 * headers, one libcurl easy handle per client (its connection cache gives
 * keep-alive reuse), and the request loop with its retries. The policy
 * pieces live in http_retry.c, http_rate.c, http_page.c and http_log.c. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http_internal.h"

#ifndef ETL_VERSION
#define ETL_VERSION "0"
#endif

#define MAX_BODY_DEFAULT ((size_t)512 << 20)
#define ERR_BODY_MAX 300

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ------------------------------------------------------------ options */

/* "2", "0.5", "100/m", "2/s", "3600/h" -> requests per second. */
static int parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v <= 0 || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    if (*end == '/') {
        switch (end[1]) {
        case 's': break;
        case 'm': v /= 60; break;
        case 'h': v /= 3600; break;
        default: return -1;
        }
        if (end[2])
            return -1;
    } else if (*end) {
        return -1;
    }
    *out = v;
    return 0;
}

etl_http_t *etl_http_open(etl_ctx_t *ctx)
{
    etl_http_t *h = NULL;
    char *ca = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        etl_fail(ctx, ETL_ERR_INTERNAL, "libcurl failed to start: %s",
                 curl_easy_strerror(curl_init_rc));
        goto fail;
    }
    if (!(h = calloc(1, sizeof *h)) || !(h->curl = curl_easy_init()))
        goto nomem;
    h->ctx = ctx;
    h->backoff_base_ms = 500;
    h->backoff_cap_ms = 30000;
    h->low_speed_limit = 100;
    h->low_speed_time = 30;
    h->max_body = MAX_BODY_DEFAULT;
    h->rng = (uint64_t)etl_mono_us() ^ ((uint64_t)(uintptr_t)h << 17) ^ (uint64_t)getpid();
    if (!h->rng)
        h->rng = 0x9E3779B97F4A7C15ULL;

    const char *base = etl_opt(ctx, "base_url");
    if (base && *base) {
        if (!http_url_is_absolute(base)) {
            etl_fail(ctx, ETL_ERR_CONFIG, "option base_url: '%s' is not an absolute URL "
                     "(expected e.g. https://api.example.com)", base);
            goto fail;
        }
        if (!(h->base_url = etl_strdup(base)))
            goto nomem;
        h->base_from_option = 1;
    }
    int64_t timeout = etl_opt_duration(ctx, "timeout", 60);
    int64_t connect = etl_opt_duration(ctx, "connect_timeout", 10);
    if (timeout <= 0 || connect <= 0) {
        etl_fail(ctx, ETL_ERR_CONFIG, "options timeout and connect_timeout must be longer than 0s");
        goto fail;
    }
    h->timeout_ms = timeout * 1000;
    h->connect_timeout_ms = connect * 1000;
    int64_t retries = etl_opt_int(ctx, "max_retries", 5);
    if (retries < 0 || retries > 1000) {
        etl_fail(ctx, ETL_ERR_CONFIG, "option max_retries: %lld is out of range (expected 0..1000)",
                 (long long)retries);
        goto fail;
    }
    h->max_retries = (int)retries;
    int64_t rt = etl_opt_duration(ctx, "max_retry_time", 600);
    h->max_retry_time_ms = rt < 0 ? 0 : rt * 1000;
    const char *rate = etl_opt(ctx, "rate_limit");
    if (rate && *rate && parse_rate(rate, &h->opt_rate) != 0) {
        etl_fail(ctx, ETL_ERR_CONFIG, "option rate_limit: bad value '%s' (expected requests per "
                 "second such as 2 or 0.5, or 100/m, 3600/h)", rate);
        goto fail;
    }
    int64_t burst = etl_opt_int(ctx, "rate_burst", 0);
    if (etl_opt(ctx, "rate_burst") && burst < 1) {
        etl_fail(ctx, ETL_ERR_CONFIG, "option rate_burst: %lld is out of range (expected 1 or more)",
                 (long long)burst);
        goto fail;
    }
    h->opt_burst = (double)burst;
    const char *caf = etl_opt(ctx, "ca_file");
    if (caf && *caf) {
        if (!(ca = etl_path(ctx, caf)))
            goto nomem;
        if (access(ca, R_OK) != 0) {
            etl_fail(ctx, ETL_ERR_CONFIG, "option ca_file: cannot read %s", ca);
            goto fail;
        }
        h->ca_file = ca;
        ca = NULL;
    }
    return h;
nomem:
    etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
fail:
    free(ca);
    etl_http_close(h);
    return NULL;
}

void etl_http_close(etl_http_t *h)
{
    if (!h)
        return;
    if (h->curl)
        curl_easy_cleanup(h->curl);
    for (size_t i = 0; i < h->nhdr; i++) {
        free(h->hname[i]);
        free(h->hvalue[i]);
    }
    free(h->hname);
    free(h->hvalue);
    for (size_t i = 0; i < h->nsecret; i++)
        free(h->secret_names[i]);
    free(h->secret_names);
    http_rate_free(h);
    free(h->base_url);
    free(h->ca_file);
    free(h);
}

void etl_http_set_backoff(etl_http_t *h, int64_t base_ms, int64_t cap_ms)
{
    h->backoff_base_ms = base_ms;
    h->backoff_cap_ms = cap_ms;
}

void etl_http_set_low_speed(etl_http_t *h, long bytes_per_sec, long secs)
{
    h->low_speed_limit = bytes_per_sec;
    h->low_speed_time = secs;
}

void etl_http_set_timeouts_ms(etl_http_t *h, int64_t total_ms, int64_t connect_ms)
{
    if (total_ms > 0)
        h->timeout_ms = total_ms;
    if (connect_ms > 0)
        h->connect_timeout_ms = connect_ms;
}

void etl_http_set_max_retry_time_ms(etl_http_t *h, int64_t ms) { h->max_retry_time_ms = ms; }

etl_status_t etl_http_set_base_url(etl_http_t *h, const char *url)
{
    if (h->base_from_option)
        return ETL_OK; /* the pipeline's base_url wins */
    if (url && !http_url_is_absolute(url))
        return etl_fail(h->ctx, ETL_ERR_CONFIG, "base URL '%s' is not absolute", url);
    char *copy = NULL;
    if (url && !(copy = etl_strdup(url)))
        return etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
    free(h->base_url);
    h->base_url = copy;
    return ETL_OK;
}

const char *etl_http_base_url(const etl_http_t *h) { return h ? h->base_url : NULL; }

/* ------------------------------------------------------------ headers */

static int header_name_ok(const char *name)
{
    if (!name || !*name)
        return 0;
    for (const char *p = name; *p; p++)
        if (*p <= ' ' || *p == ':' || *p == 0x7f)
            return 0;
    return 1;
}

static int header_value_ok(const char *v)
{
    return !v || (!strchr(v, '\r') && !strchr(v, '\n'));
}

/* Registers a credential header's value, and its token after a scheme word
 * ("Bearer abc..." -> "abc..."), for redaction. */
static void register_secret(etl_http_t *h, const char *value)
{
    etl_secret(h->ctx, value);
    const char *sp = strchr(value, ' ');
    if (sp) {
        while (*sp == ' ')
            sp++;
        etl_secret(h->ctx, sp);
    }
}

etl_status_t etl_http_secret_header(etl_http_t *h, const char *name)
{
    if (!header_name_ok(name))
        return etl_fail(h->ctx, ETL_ERR_CONFIG, "bad header name '%s'", name ? name : "");
    if (http_header_is_secret(h, name, strlen(name)))
        return ETL_OK;
    char **v = realloc(h->secret_names, (h->nsecret + 1) * sizeof *v);
    if (!v)
        return etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
    h->secret_names = v;
    if (!(v[h->nsecret] = etl_strdup(name)))
        return etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
    h->nsecret++;
    for (size_t i = 0; i < h->nhdr; i++)
        if (strcasecmp(h->hname[i], name) == 0)
            register_secret(h, h->hvalue[i]);
    return ETL_OK;
}

etl_status_t etl_http_set_header(etl_http_t *h, const char *name, const char *value)
{
    if (!header_name_ok(name) || !header_value_ok(value))
        return etl_fail(h->ctx, ETL_ERR_CONFIG, "bad header '%s' (names are tokens, values "
                        "have no line breaks)", name ? name : "");
    size_t i = 0;
    while (i < h->nhdr && strcasecmp(h->hname[i], name) != 0)
        i++;
    if (!value) {
        if (i < h->nhdr) {
            free(h->hname[i]);
            free(h->hvalue[i]);
            memmove(h->hname + i, h->hname + i + 1, (h->nhdr - i - 1) * sizeof *h->hname);
            memmove(h->hvalue + i, h->hvalue + i + 1, (h->nhdr - i - 1) * sizeof *h->hvalue);
            h->nhdr--;
        }
        return ETL_OK;
    }
    if (http_header_is_secret(h, name, strlen(name)))
        register_secret(h, value);
    char *v = etl_strdup(value);
    if (!v)
        return etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
    if (i < h->nhdr) {
        free(h->hvalue[i]);
        h->hvalue[i] = v;
        return ETL_OK;
    }
    char **nn = realloc(h->hname, (h->nhdr + 1) * sizeof *nn);
    if (nn)
        h->hname = nn;
    char **nv = nn ? realloc(h->hvalue, (h->nhdr + 1) * sizeof *nv) : NULL;
    if (nv)
        h->hvalue = nv;
    char *n = nv ? etl_strdup(name) : NULL;
    if (!n) {
        free(v);
        return etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
    }
    h->hname[h->nhdr] = n;
    h->hvalue[h->nhdr] = v;
    h->nhdr++;
    return ETL_OK;
}

/* ------------------------------------------------------------ responses */

static void clear_headers(http_priv_t *p)
{
    for (size_t i = 0; i < p->nhdrs; i++)
        free((char *)p->hdrs[i].name); /* name and value share one allocation */
    p->nhdrs = 0;
}

void etl_http_response_free(etl_http_response_t *r)
{
    if (!r)
        return;
    size_t size = r->size;
    http_priv_t *p = r->priv_;
    if (p) {
        clear_headers(p);
        free(p->hdrs);
        free(p->url);
        free(p->rate_key);
        free(p->method);
        free(p);
    }
    free(r->body);
    memset(r, 0, sizeof *r);
    r->size = size;
}

const char *etl_http_header(const etl_http_response_t *r, const char *name)
{
    if (!r || !name)
        return NULL;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* What one attempt collects through the callbacks. */
typedef struct xfer {
    etl_http_t *h;
    etl_http_response_t *resp;
    http_priv_t *priv;
    etl_buf_t body;
    int too_big;
    int hdr_oom;
} xfer_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    xfer_t *x = arg;
    size_t n = size * nmemb;
    if (x->body.len + n > x->h->max_body) {
        x->too_big = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    etl_buf_add(&x->body, data, n);
    return x->body.oom ? 0 : n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    xfer_t *x = arg;
    size_t n = size * nmemb;
    http_priv_t *p = x->priv;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        clear_headers(p); /* a new response (after a redirect or a 100 Continue) */
        x->resp->nheaders = 0;
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return n; /* the blank line, or junk */
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1, *e = data + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t vl = (size_t)(e - v);
    if (p->nhdrs == p->caphdrs) {
        size_t cap = p->caphdrs ? p->caphdrs * 2 : 16;
        etl_http_header_t *nh = realloc(p->hdrs, cap * sizeof *nh);
        if (!nh) {
            x->hdr_oom = 1;
            return 0;
        }
        p->hdrs = nh;
        p->caphdrs = cap;
    }
    char *mem = malloc(nl + vl + 2);
    if (!mem) {
        x->hdr_oom = 1;
        return 0;
    }
    memcpy(mem, data, nl);
    mem[nl] = '\0';
    memcpy(mem + nl + 1, v, vl);
    mem[nl + 1 + vl] = '\0';
    p->hdrs[p->nhdrs].name = mem;
    p->hdrs[p->nhdrs].value = mem + nl + 1;
    p->nhdrs++;
    x->resp->headers = p->hdrs;
    x->resp->nheaders = p->nhdrs;
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    xfer_t *x = arg;
    return etl_cancelled(x->h->ctx) ? 1 : 0;
}

/* ------------------------------------------------------------ requests */

/* The headers of one request: defaults, overridden or removed by the
 * request's own, Content-Type for a body, and no "Expect: 100-continue"
 * (one round trip less; every server we talk to reads the body anyway). */
static struct curl_slist *build_headers(etl_http_t *h, const etl_http_request_t *req, int *bad)
{
    struct curl_slist *l = NULL, *t;
    char *line = NULL;
    int has_ct = 0;
    *bad = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (!header_name_ok(req->headers[i].name) || !header_value_ok(req->headers[i].value)) {
            *bad = 1;
            return NULL;
        }
    for (size_t i = 0; i < h->nhdr; i++) {
        int overridden = 0;
        for (size_t k = 0; k < req->nheaders; k++)
            overridden |= strcasecmp(req->headers[k].name, h->hname[i]) == 0;
        if (overridden)
            continue;
        has_ct |= strcasecmp(h->hname[i], "content-type") == 0;
        if (!(line = etl_asprintf("%s: %s", h->hname[i], h->hvalue[i])) ||
            !(t = curl_slist_append(l, line)))
            goto nomem;
        l = t;
        free(line);
        line = NULL;
    }
    for (size_t k = 0; k < req->nheaders; k++) {
        if (!req->headers[k].value)
            continue;
        if (http_header_is_secret(h, req->headers[k].name, strlen(req->headers[k].name)))
            register_secret(h, req->headers[k].value);
        has_ct |= strcasecmp(req->headers[k].name, "content-type") == 0;
        if (!(line = etl_asprintf("%s: %s", req->headers[k].name, req->headers[k].value)) ||
            !(t = curl_slist_append(l, line)))
            goto nomem;
        l = t;
        free(line);
        line = NULL;
    }
    if (req->body && req->body_len && !has_ct) {
        if (!(line = etl_asprintf("Content-Type: %s",
                                  req->content_type ? req->content_type : "application/json")) ||
            !(t = curl_slist_append(l, line)))
            goto nomem;
        l = t;
        free(line);
        line = NULL;
    }
    if (!(t = curl_slist_append(l, "Expect:")))
        goto nomem;
    return t;
nomem:
    free(line);
    curl_slist_free_all(l);
    return NULL;
}

/* One attempt: sets every option afresh on the reused handle (reset keeps
 * its live connections) and performs it. */
static CURLcode perform(etl_http_t *h, xfer_t *x, const char *method, const char *url,
                        struct curl_slist *hdrs, const etl_http_request_t *req)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    h->errbuf[0] = '\0';
    int64_t timeout = req->timeout_ms > 0 ? req->timeout_ms : h->timeout_ms;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    /* redirects are followed by the request loop, which keeps credentials
     * on their host (libcurl would forward headers such as
     * X-Shopify-Access-Token to any host a Location names) */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* every encoding libcurl decodes */
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    /* verification is always on; ca_file adds authorities (the system's
     * folder of CAs stays in use through libcurl's CA path) */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)h->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, h->low_speed_limit);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->low_speed_time);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "etl/" ETL_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);

    int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
    int has_body = req->body && req->body_len;
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (has_body || is_post || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(has_body ? req->body_len : 0));
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, has_body ? (const char *)req->body : "");
        if (!is_post)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        if (!is_get)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    return curl_easy_perform(c);
}

static int64_t info_us(CURL *c, CURLINFO what)
{
    curl_off_t v = 0;
    return curl_easy_getinfo(c, what, &v) == CURLE_OK ? (int64_t)v : 0;
}

/* Content-Length says more than arrived (libcurl catches most of these as
 * CURLE_PARTIAL_FILE; this covers the rest). Not for HEAD, 1xx/204/304,
 * or compressed answers (their length is of the compressed bytes). */
static int short_body(const etl_http_response_t *r, const char *method, int64_t *want)
{
    const char *cl = etl_http_header(r, "content-length");
    if (!cl || etl_http_header(r, "content-encoding") || strcmp(method, "HEAD") == 0 ||
        r->status < 200 || r->status == 204 || r->status == 304)
        return 0;
    if (etl_parse_i64(cl, want) != 0 || *want < 0)
        return 0;
    return (int64_t)r->body_len < *want;
}

static void fmt_secs(char *buf, size_t n, int64_t us)
{
    snprintf(buf, n, "%.1fs", (double)us / 1e6);
}

etl_status_t etl_http_get(etl_http_t *h, const char *url, etl_http_response_t *resp)
{
    etl_http_request_t req;
    memset(&req, 0, sizeof req);
    req.url = url;
    return etl_http_request(h, &req, resp);
}

/* The next URL of a redirect the client follows itself: 301/302/303/307/308
 * with a Location on the same scheme, host and port (http may become https).
 * NULL: hand the answer to the plugin. */
static char *redirect_target(const etl_http_response_t *r, const char *url)
{
    long s = r->status;
    if (s != 301 && s != 302 && s != 303 && s != 307 && s != 308)
        return NULL;
    const char *loc = etl_http_header(r, "location");
    if (!loc || !*loc)
        return NULL;
    char *next = http_url_resolve(loc, strlen(loc), url);
    char *h1 = http_url_host(url), *h2 = next ? http_url_host(next) : NULL;
    int from_https = strncasecmp(url, "https:", 6) == 0;
    int to_https = next && strncasecmp(next, "https:", 6) == 0;
    int ok = h1 && h2 && (!from_https || to_https);
    if (ok && strcmp(h1, h2) != 0) {
        /* http://h:80 -> https://h:443 is the same host moving to TLS */
        size_t l1 = strcspn(h1, ":"), l2 = strcspn(h2, ":");
        ok = !from_https && to_https && l1 == l2 && strncmp(h1, h2, l1) == 0;
    }
    free(h1);
    free(h2);
    if (!ok) {
        free(next);
        return NULL;
    }
    return next;
}

etl_status_t etl_http_request(etl_http_t *h, const etl_http_request_t *req_in,
                              etl_http_response_t *resp)
{
    etl_status_t st = ETL_OK;
    /* a copy: a 303 turns the request into a GET without a body */
    etl_http_request_t rq = *req_in;
    const etl_http_request_t *req = &rq;
    int redirects = 0;
    char *url = NULL, *host = NULL, *shown = NULL;
    struct curl_slist *hdrs = NULL;
    xfer_t x;
    memset(&x, 0, sizeof x);
    etl_buf_init(&x.body);
    etl_http_response_free(resp);
    int64_t t0 = etl_mono_us();
    const char *method = req->method && *req->method ? req->method : "GET";
    http_priv_t *p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    resp->priv_ = p;
    if (!(p->method = etl_strdup(method)))
        goto nomem;
    if (!header_name_ok(method)) {
        st = etl_fail(h->ctx, ETL_ERR_CONFIG, "bad HTTP method '%s'", method);
        goto done;
    }
    if (!req->url) {
        st = etl_fail(h->ctx, ETL_ERR_CONFIG, "%s request without a URL", method);
        goto done;
    }
    if (!http_url_is_absolute(req->url) && !h->base_url) {
        st = etl_fail(h->ctx, ETL_ERR_CONFIG, "%s %s: a relative URL needs base_url", method,
                      req->url);
        goto done;
    }
    url = etl_http_url(http_url_is_absolute(req->url) ? NULL : h->base_url, req->url, req->query,
                       req->nquery);
    if (!url || !(shown = http_url_redacted(url)) || !(p->url = etl_strdup(url)))
        goto nomem;
    resp->url = p->url;
    if (!(host = http_url_host(url))) {
        st = etl_fail(h->ctx, ETL_ERR_CONFIG, "%s %s: not an http(s) URL", method, shown);
        goto done;
    }
    if (!(p->rate_key = etl_strdup(req->rate_key ? req->rate_key : host)))
        goto nomem;
    int bad = 0;
    if (!(hdrs = build_headers(h, req, &bad))) {
        if (bad) {
            st = etl_fail(h->ctx, ETL_ERR_CONFIG, "%s %s: bad request header (names are tokens, "
                          "values have no line breaks)", method, shown);
            goto done;
        }
        goto nomem;
    }
    x.h = h;
    x.resp = resp;
    x.priv = p;

    char reason[CURL_ERROR_SIZE + 96];
    long counted = 0;        /* the status a retry is counted under; 0: network */
    const char *stop = NULL; /* why retrying ended */
    char stopbuf[128];
    for (;;) {
        if (etl_cancelled(h->ctx)) {
            st = etl_fail(h->ctx, ETL_ERR_CANCELLED, "%s %s: cancelled", method, shown);
            goto done;
        }
        if (!(req->flags & ETL_HTTP_NO_RATE) &&
            (st = http_rate_acquire(h, p->rate_key, &resp->wait_us)) != ETL_OK)
            goto done;
        resp->attempts++;
        clear_headers(p);
        resp->headers = p->hdrs;
        resp->nheaders = 0;
        resp->status = 0;
        free(resp->body);
        resp->body = NULL;
        resp->body_len = 0;
        etl_buf_reset(&x.body);
        x.too_big = x.hdr_oom = 0;
        http_log_request(h, method, url, hdrs, req, resp->attempts);

        CURLcode rc = perform(h, &x, method, url, hdrs, req);

        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
        resp->connect_us = info_us(h->curl, CURLINFO_CONNECT_TIME_T);
        resp->first_byte_us = info_us(h->curl, CURLINFO_STARTTRANSFER_TIME_T);
        resp->transfer_us = info_us(h->curl, CURLINFO_TOTAL_TIME_T);
        etl_buf_add(&x.body, "", 0); /* a NUL-terminated, non-NULL body */
        if (x.body.oom || x.hdr_oom)
            goto nomem;
        resp->body_len = x.body.len;
        resp->body = etl_buf_take(&x.body);
        if (!resp->body)
            goto nomem;
        const char *ctype = etl_http_header(resp, "content-type");

        if (rc == CURLE_ABORTED_BY_CALLBACK && etl_cancelled(h->ctx)) {
            st = etl_fail(h->ctx, ETL_ERR_CANCELLED, "%s %s: cancelled", method, shown);
            goto done;
        }
        if (x.too_big) {
            st = etl_fail(h->ctx, ETL_ERR_DATA, "%s %s: the answer is larger than %zu bytes",
                          method, shown, h->max_body);
            goto done;
        }
        int64_t want = 0;
        if (rc != CURLE_OK) {
            const char *msg = h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc);
            if (!http_curl_retryable(rc)) {
                st = etl_fail(h->ctx, ETL_ERR_IO, "%s %s: %s (attempt %d, not retried)", method,
                              shown, msg, resp->attempts);
                goto done;
            }
            snprintf(reason, sizeof reason, "network error: %s", msg);
            counted = 0;
        } else if (short_body(resp, method, &want)) {
            snprintf(reason, sizeof reason, "truncated body: %zu of %lld bytes (status %ld)",
                     resp->body_len, (long long)want, resp->status);
            counted = 0;
        } else {
            http_log_response(h, url, resp, ctype, req->flags);
            char *next = redirects < 5 ? redirect_target(resp, url) : NULL;
            if (next) {
                char *next_shown = http_url_redacted(next);
                char *next_copy = etl_strdup(next);
                if (!next_shown || !next_copy) {
                    free(next);
                    free(next_shown);
                    free(next_copy);
                    goto nomem;
                }
                etl_log(h->ctx, ETL_LOG_DEBUG, "%s %s: %ld, following to %s", method, shown,
                        resp->status, next_shown);
                free(url);
                free(shown);
                free(p->url);
                url = next;
                shown = next_shown;
                p->url = next_copy;
                resp->url = next_copy;
                if (resp->status == 303 ||
                    ((resp->status == 301 || resp->status == 302) && !strcmp(method, "POST"))) {
                    if (strcmp(method, "HEAD") != 0)
                        method = "GET";
                    rq.body = NULL;
                    rq.body_len = 0;
                    free(p->method);
                    if (!(p->method = etl_strdup(method)))
                        goto nomem;
                }
                redirects++;
                resp->attempts--; /* a hop is not an attempt */
                continue;
            }
            if (!http_status_retryable(resp->status)) {
                st = ETL_OK;
                goto done;
            }
            snprintf(reason, sizeof reason, "status %ld", resp->status);
            counted = resp->status;
        }

        /* a retryable failure: wait and go again, or give up */
        int64_t wait = 0;
        int asked = 0;
        if (counted) {
            const char *ra = etl_http_header(resp, "retry-after");
            asked = ra && http_retry_after(ra, etl_now_us(), &wait) == 0;
        }
        if (!asked)
            wait = http_backoff_us(h, resp->attempts);
        int64_t elapsed = etl_mono_us() - t0;
        char wbuf[32], capbuf[32];
        fmt_secs(wbuf, sizeof wbuf, wait);
        etl_format_duration(h->max_retry_time_ms / 1000, capbuf, sizeof capbuf);
        if (req->flags & ETL_HTTP_NO_RETRY) {
            stop = "retries are off for this request";
        } else if (resp->attempts > h->max_retries) {
            snprintf(stopbuf, sizeof stopbuf, "max_retries %d reached", h->max_retries);
            stop = stopbuf;
        } else if (elapsed + wait > h->max_retry_time_ms * 1000) {
            if (asked)
                snprintf(stopbuf, sizeof stopbuf, "Retry-After %s is beyond max_retry_time %s",
                         wbuf, capbuf);
            else
                snprintf(stopbuf, sizeof stopbuf, "max_retry_time %s reached", capbuf);
            stop = stopbuf;
        }
        if (stop)
            break;
        if (resp->status == 429)
            http_rate_drained(h, p->rate_key);
        etl_log(h->ctx, ETL_LOG_WARN, "%s %s: %s (attempt %d of %d), retrying in %s%s", method,
                shown, reason, resp->attempts, h->max_retries + 1, wbuf,
                asked ? " as Retry-After asks" : "");
        http_count_retry(host, counted);
        int64_t before = etl_mono_us();
        st = http_sleep(h, wait);
        resp->wait_us += etl_mono_us() - before;
        if (st != ETL_OK) {
            st = etl_fail(h->ctx, st, "%s %s: cancelled while waiting to retry (%s)", method,
                          shown, reason);
            goto done;
        }
    }

    /* out of retries */
    {
        char took[32];
        fmt_secs(took, sizeof took, etl_mono_us() - t0);
        etl_buf_t body;
        etl_buf_init(&body);
        if (resp->status && resp->body_len) {
            etl_buf_adds(&body, ": ");
            http_body_excerpt(&body, resp->body, resp->body_len,
                              etl_http_header(resp, "content-type"), ERR_BODY_MAX);
        }
        st = etl_fail(h->ctx, counted ? ETL_ERR_RETRY : ETL_ERR_IO,
                      "%s %s: gave up after %d attempt%s in %s (%s): last %s%s", method, shown,
                      resp->attempts, resp->attempts == 1 ? "" : "s", took, stop, reason,
                      body.data ? body.data : "");
        etl_buf_free(&body);
    }
    goto done;
nomem:
    st = etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
done:
    resp->total_us = etl_mono_us() - t0;
    etl_buf_free(&x.body);
    curl_slist_free_all(hdrs);
    free(url);
    free(host);
    free(shown);
    return st;
}

etl_status_t etl_http_check(etl_http_t *h, const etl_http_response_t *r)
{
    if (r->status >= 200 && r->status <= 299)
        return ETL_OK;
    const http_priv_t *p = r->priv_;
    char *shown = http_url_redacted(r->url);
    etl_buf_t body;
    etl_buf_init(&body);
    if (r->body_len) {
        etl_buf_adds(&body, ": ");
        http_body_excerpt(&body, r->body, r->body_len, etl_http_header(r, "content-type"),
                          ERR_BODY_MAX);
    }
    etl_status_t st = r->status == 401 || r->status == 403 ? ETL_ERR_AUTH
                      : http_status_retryable(r->status) ? ETL_ERR_RETRY
                                                          : ETL_ERR_DATA;
    etl_fail(h->ctx, st, "%s %s: status %ld%s", p && p->method ? p->method : "HTTP",
             shown ? shown : "?", r->status, body.data ? body.data : "");
    etl_buf_free(&body);
    free(shown);
    return st;
}
