/* http_retry.c - the retry policy of the HTTP toolkit: which failures are
 * transient, how long to wait (Retry-After, else exponential backoff with
 * full jitter), interruptible sleeping, and the per-host retry counters. */
#define _GNU_SOURCE
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_internal.h"

int http_status_retryable(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

int http_curl_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: /* DNS hiccups pass */
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:   /* connect, total and low-speed timeouts */
    case CURLE_PARTIAL_FILE:         /* fewer bytes than Content-Length */
    case CURLE_GOT_NOTHING:          /* closed without answering */
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:           /* connection reset */
    case CURLE_SSL_CONNECT_ERROR:    /* handshake cut off, not a verification failure */
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING: /* a compressed body cut short */
    case CURLE_AGAIN:
        return 1;
    default:
        return 0;
    }
}

int http_retry_after(const char *value, int64_t now_us, int64_t *wait_us)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (!n)
        return -1;
    if (isdigit((unsigned char)value[0]) || value[0] == '.') {
        /* delay-seconds; some APIs send a fraction ("1.5") */
        char tmp[64];
        if (n >= sizeof tmp)
            return -1;
        memcpy(tmp, value, n);
        tmp[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (!isdigit((unsigned char)tmp[i]) && tmp[i] != '.')
                return -1;
        char *end;
        double s = strtod(tmp, &end);
        if (*end || !isfinite(s) || s < 0 || s > 1e9)
            return -1;
        *wait_us = (int64_t)ceil(s * 1e6);
        return 0;
    }
    int64_t at;
    if (etl_ts_parse(value, n, &at) != 0)
        return -1;
    *wait_us = at > now_us ? at - now_us : 0;
    return 0;
}

/* xorshift64*: good enough for jitter, and no shared state between clients */
static uint64_t next_rand(etl_http_t *h)
{
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int64_t http_backoff_us(etl_http_t *h, int n)
{
    int64_t ceiling = h->backoff_base_ms * 1000;
    int64_t cap = h->backoff_cap_ms * 1000;
    for (int i = 1; i < n && ceiling < cap; i++)
        ceiling *= 2;
    if (ceiling > cap)
        ceiling = cap;
    if (ceiling <= 0)
        return 0;
    /* full jitter: uniform in [0, ceiling] */
    return (int64_t)(next_rand(h) % (uint64_t)(ceiling + 1));
}

etl_status_t http_sleep(etl_http_t *h, int64_t us)
{
    int64_t until = etl_mono_us() + us;
    for (;;) {
        if (etl_cancelled(h->ctx))
            return ETL_ERR_CANCELLED;
        int64_t left = until - etl_mono_us();
        if (left <= 0)
            return ETL_OK;
        /* short slices so a stop request is seen within 20 ms */
        int64_t slice = left < 20000 ? left : 20000;
        struct timespec ts = {(time_t)(slice / 1000000), (long)(slice % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------ counters */

typedef struct retry_count {
    char *host;
    long status;
    uint64_t n;
} retry_count_t;

static pthread_mutex_t counts_mu = PTHREAD_MUTEX_INITIALIZER;
static retry_count_t *counts;
static size_t ncounts;

void http_count_retry(const char *host, long status)
{
    if (!host)
        host = "";
    pthread_mutex_lock(&counts_mu);
    for (size_t i = 0; i < ncounts; i++) {
        if (counts[i].status == status && strcmp(counts[i].host, host) == 0) {
            counts[i].n++;
            pthread_mutex_unlock(&counts_mu);
            return;
        }
    }
    retry_count_t *v = realloc(counts, (ncounts + 1) * sizeof *v);
    char *copy = etl_strdup(host);
    if (v)
        counts = v;
    if (v && copy) {
        counts[ncounts].host = copy;
        counts[ncounts].status = status;
        counts[ncounts].n = 1;
        ncounts++;
    } else {
        free(copy); /* a counter lost to no memory is not worth failing a request */
    }
    pthread_mutex_unlock(&counts_mu);
}

void etl_http_retry_counts(void (*cb)(void *arg, const char *host, long status, uint64_t retries),
                           void *arg)
{
    if (!cb)
        return;
    pthread_mutex_lock(&counts_mu);
    for (size_t i = 0; i < ncounts; i++)
        cb(arg, counts[i].host, counts[i].status, counts[i].n);
    pthread_mutex_unlock(&counts_mu);
}
