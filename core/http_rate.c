/* http_rate.c - token buckets of the HTTP toolkit, one per host (or per
 * rate_key), set from the options and fed by the plugin from the API's own
 * rate headers. A request takes one token; with none left it waits for the
 * next, interruptibly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"

static http_bucket_t *find(etl_http_t *h, const char *key)
{
    for (size_t i = 0; i < h->nbuckets; i++)
        if (strcmp(h->buckets[i].key, key) == 0)
            return &h->buckets[i];
    return NULL;
}

static double default_burst(double rate) { return rate >= 1 ? floor(rate) : 1; }

/* The bucket of key, created from the options when new; NULL on no memory. */
static http_bucket_t *get(etl_http_t *h, const char *key)
{
    http_bucket_t *b = find(h, key);
    if (b)
        return b;
    http_bucket_t *v = realloc(h->buckets, (h->nbuckets + 1) * sizeof *v);
    if (!v)
        return NULL;
    h->buckets = v;
    b = &v[h->nbuckets];
    memset(b, 0, sizeof *b);
    if (!(b->key = etl_strdup(key)))
        return NULL;
    h->nbuckets++;
    b->rate = h->opt_rate;
    b->burst = h->opt_burst > 0 ? h->opt_burst : default_burst(b->rate);
    b->tokens = b->burst;
    b->last_us = etl_mono_us();
    return b;
}

static void refill(http_bucket_t *b, int64_t now)
{
    if (b->rate > 0 && now > b->last_us) {
        b->tokens += (double)(now - b->last_us) / 1e6 * b->rate;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
    }
    b->last_us = now;
}

/* key, or base_url's host for NULL; *owned is set when the caller must free. */
static const char *resolve_key(etl_http_t *h, const char *key, char **owned)
{
    *owned = NULL;
    if (key)
        return key;
    *owned = h->base_url ? http_url_host(h->base_url) : NULL;
    return *owned;
}

etl_status_t http_rate_acquire(etl_http_t *h, const char *key, int64_t *waited_us)
{
    http_bucket_t *b = get(h, key);
    if (!b)
        return etl_fail(h->ctx, ETL_ERR_NOMEM, "out of memory");
    for (;;) {
        if (b->rate <= 0)
            return ETL_OK;
        int64_t now = etl_mono_us();
        refill(b, now);
        if (b->tokens >= 1 - 1e-9) {
            b->tokens -= 1;
            return ETL_OK;
        }
        int64_t need = (int64_t)ceil((1 - b->tokens) / b->rate * 1e6);
        etl_status_t st = http_sleep(h, need);
        *waited_us += etl_mono_us() - now;
        if (st != ETL_OK)
            return etl_fail(h->ctx, st, "cancelled while waiting for the rate limit of %s", key);
    }
}

void http_rate_drained(etl_http_t *h, const char *key)
{
    http_bucket_t *b = find(h, key);
    if (b && b->rate > 0) {
        b->tokens = 0;
        b->last_us = etl_mono_us();
    }
}

void http_rate_free(etl_http_t *h)
{
    for (size_t i = 0; i < h->nbuckets; i++)
        free(h->buckets[i].key);
    free(h->buckets);
    h->buckets = NULL;
    h->nbuckets = 0;
}

void etl_http_rate_set(etl_http_t *h, const char *key, double per_sec, double burst)
{
    char *owned;
    if (!h || !(key = resolve_key(h, key, &owned)))
        return;
    http_bucket_t *b = get(h, key);
    if (b) {
        int64_t now = etl_mono_us();
        refill(b, now);
        int fresh = b->rate <= 0;
        b->rate = per_sec > 0 && isfinite(per_sec) ? per_sec : 0;
        if (burst > 0 && isfinite(burst))
            b->burst = burst;
        else if (fresh || b->burst <= 0)
            b->burst = default_burst(b->rate);
        if (fresh || b->tokens > b->burst)
            b->tokens = b->burst; /* a new limit starts with a full burst */
    }
    free(owned);
}

void etl_http_rate_used(etl_http_t *h, const char *key, double used, double size,
                        double leak_per_sec)
{
    char *owned;
    if (!h || !(key = resolve_key(h, key, &owned)))
        return;
    if (!(size > 0) || !(leak_per_sec > 0) || !isfinite(size) || !isfinite(used) ||
        !isfinite(leak_per_sec)) {
        free(owned);
        return;
    }
    http_bucket_t *b = get(h, key);
    if (b) {
        /* the server's count is the truth: it includes what other clients spent */
        b->rate = leak_per_sec;
        b->burst = size;
        b->tokens = size - used;
        if (b->tokens < 0)
            b->tokens = 0;
        if (b->tokens > size)
            b->tokens = size;
        b->last_us = etl_mono_us();
    }
    free(owned);
}

/* A whole-string non-negative decimal number. */
static int parse_num(const char *s, size_t n, double *out)
{
    char tmp[64];
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (!n || n >= sizeof tmp)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (*end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int etl_http_rate_from_header(etl_http_t *h, const etl_http_response_t *resp, const char *header,
                              double leak_per_sec)
{
    if (!h || !resp || !header)
        return -1;
    const char *v = etl_http_header(resp, header);
    if (!v)
        return 0;
    const http_priv_t *p = resp->priv_;
    const char *key = p && p->rate_key ? p->rate_key : NULL;
    const char *slash = strchr(v, '/');
    if (slash) {
        double used, size;
        if (parse_num(v, (size_t)(slash - v), &used) != 0 ||
            parse_num(slash + 1, strlen(slash + 1), &size) != 0 || size <= 0 ||
            !(leak_per_sec > 0))
            return -1;
        etl_http_rate_used(h, key, used, size, leak_per_sec);
        return 1;
    }
    double rate;
    if (parse_num(v, strlen(v), &rate) != 0 || rate <= 0)
        return -1;
    etl_http_rate_set(h, key, rate, 0);
    return 1;
}
