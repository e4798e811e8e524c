/*
 * http_internal.h - what the parts of the HTTP toolkit share: the client
 * struct, and the functions of http_retry.c (what to retry, how long to
 * wait), http_rate.c (token buckets), http_page.c (URLs, Link headers) and
 * http_log.c (debug lines, redaction). Not part of the plugin ABI.
 */
#ifndef ETL_CORE_HTTP_INTERNAL_H
#define ETL_CORE_HTTP_INTERNAL_H

#include <curl/curl.h>
#include <stdint.h>

#include "etl/http.h"
#include "util.h"

/* One token bucket (a host, or a request's rate_key). */
typedef struct http_bucket {
    char *key;
    double rate;   /* tokens per second; 0: no limit */
    double burst;  /* capacity */
    double tokens;
    int64_t last_us; /* monotonic time of the last refill */
} http_bucket_t;

struct etl_http {
    etl_ctx_t *ctx;
    CURL *curl;
    char *base_url;
    int base_from_option; /* the pipeline's base_url: set_base_url leaves it */
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    int max_retries;
    int64_t max_retry_time_ms;
    int64_t backoff_base_ms; /* first retry waits up to this */
    int64_t backoff_cap_ms;  /* no single backoff wait is longer */
    long low_speed_limit;    /* bytes per second ... */
    long low_speed_time;     /* ... over this many seconds, else abort */
    size_t max_body;         /* answers larger than this are refused */
    char *ca_file;
    double opt_rate, opt_burst; /* rate_limit / rate_burst: new buckets start so */
    char **hname, **hvalue;     /* default headers */
    size_t nhdr;
    char **secret_names; /* extra credential header names */
    size_t nsecret;
    http_bucket_t *buckets;
    size_t nbuckets;
    uint64_t rng;
    char errbuf[CURL_ERROR_SIZE];
};

/* What a response keeps besides the public fields. */
typedef struct http_priv {
    etl_http_header_t *hdrs;
    size_t nhdrs, caphdrs;
    char *url;
    char *rate_key;
    char *method;
} http_priv_t;

/* ------------------------------------------------------------ tuning (tests) */

/* Backoff: the n-th retry waits a uniform random time in
 * [0, min(cap, base * 2^(n-1))]. Defaults 500 ms and 30 s. */
void etl_http_set_backoff(etl_http_t *h, int64_t base_ms, int64_t cap_ms);
/* Abort an attempt slower than bytes_per_sec over secs (default 100 B/s, 30 s). */
void etl_http_set_low_speed(etl_http_t *h, long bytes_per_sec, long secs);
/* Per-attempt total and connect timeouts in milliseconds (0: keep). */
void etl_http_set_timeouts_ms(etl_http_t *h, int64_t total_ms, int64_t connect_ms);
/* Cap on the total retry time in milliseconds. */
void etl_http_set_max_retry_time_ms(etl_http_t *h, int64_t ms);

/* ------------------------------------------------------------ http_retry.c */

/* 408, 429 and 5xx. */
int http_status_retryable(long status);
/* Network failures worth another attempt (connect, reset, timeout, partial). */
int http_curl_retryable(CURLcode rc);
/* Parses Retry-After (seconds, integer or decimal, or an HTTP date, relative
 * to now_us on the wall clock). 0 and *wait_us, or -1 when unusable. */
int http_retry_after(const char *value, int64_t now_us, int64_t *wait_us);
/* Full-jitter backoff before retry number n (1-based), microseconds. */
int64_t http_backoff_us(etl_http_t *h, int n);
/* Sleeps us microseconds, waking early when the run is cancelled:
 * ETL_OK or ETL_ERR_CANCELLED. */
etl_status_t http_sleep(etl_http_t *h, int64_t us);
/* Counts one retry of host because of status (0: network error). */
void http_count_retry(const char *host, long status);

/* ------------------------------------------------------------ http_rate.c */

/* Waits for a token of bucket `key` (created from the options when new).
 * Adds the time waited to *waited_us. ETL_OK, ETL_ERR_CANCELLED, ETL_ERR_NOMEM. */
etl_status_t http_rate_acquire(etl_http_t *h, const char *key, int64_t *waited_us);
/* A 429 from key: empty its bucket so the next requests space out. */
void http_rate_drained(etl_http_t *h, const char *key);
void http_rate_free(etl_http_t *h);

/* ------------------------------------------------------------ http_page.c */

/* "host:port" in lower case (port from the scheme when absent); caller frees.
 * NULL when url has no "scheme://host". */
char *http_url_host(const char *url);
/* 1 when url starts with "scheme://". */
int http_url_is_absolute(const char *url);
/* ref[0..n) resolved against base (absolute, //host, /path, ?query,
 * relative path); caller frees. */
char *http_url_resolve(const char *ref, size_t n, const char *base);

/* ------------------------------------------------------------ http_log.c */

/* 1 when a header of this name carries a credential. */
int http_header_is_secret(const etl_http_t *h, const char *name, size_t len);
/* 1 when a query/form/JSON field of this name carries a credential
 * (token, secret, password, key, code, signature...). */
int http_param_is_secret(const char *name, size_t len);
/* A copy of url with the values of credential parameters as ***; caller frees. */
char *http_url_redacted(const char *url);
/* A one-line excerpt of a body (at most max bytes of it): credential fields
 * of JSON and form bodies as ***, control bytes escaped. */
void http_body_excerpt(etl_buf_t *out, const char *body, size_t len, const char *content_type,
                       size_t max);
/* Debug lines for one attempt: the request, and the answer. */
void http_log_request(etl_http_t *h, const char *method, const char *url,
                      const struct curl_slist *hdrs, const etl_http_request_t *req, int attempt);
void http_log_response(etl_http_t *h, const char *url, const etl_http_response_t *resp,
                       const char *content_type, unsigned flags);

#endif
