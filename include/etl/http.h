/*
 * etl/http.h - the HTTP toolkit for plugins that talk to web APIs.
 *
 * A plugin opens one client from its context in open() and closes it in
 * close(). The client reads the plugin's standard HTTP options (put
 * ETL_HTTP_OPTIONS in the plugin's option table), reuses one connection per
 * host (keep-alive, HTTP/1.1, compressed answers accepted), verifies TLS
 * always, retries transient failures with exponential backoff and full
 * jitter, honours Retry-After, spaces requests with a per-host token bucket
 * the plugin can feed from the API's own rate headers, and logs every request
 * and answer at debug level with credentials redacted.
 *
 *     static const etl_option_def_t opts[] = {
 *         {"token", ETL_OPT_STRING, 1, NULL, 1, "API token", NULL},
 *         ETL_HTTP_OPTIONS,
 *         {NULL, 0, 0, NULL, 0, NULL, NULL}};
 *
 *     etl_http_t *h = etl_http_open(ctx);           // NULL: etl_ctx_error(ctx) says why
 *     etl_http_set_base_url(h, "https://api.example.com");  // unless base_url was given
 *     etl_http_set_header(h, "Authorization", "Bearer ...");  // redacted everywhere
 *     etl_http_param_t q[] = {{"limit", "250"}, {"cursor", cur}};
 *     etl_http_request_t rq = {0};
 *     rq.url = "/v2/things"; rq.query = q; rq.nquery = 2;
 *     etl_http_response_t rs = {0};
 *     etl_status_t st = etl_http_request(h, &rq, &rs);
 *     if (st == ETL_OK) st = etl_http_check(h, &rs);  // non-2xx -> error naming URL and status
 *     ... rs.body, rs.body_len ...
 *     etl_http_response_free(&rs);
 *     etl_http_close(h);
 *
 * A client is used by one thread at a time. Strings passed in are copied or
 * only read during the call. See docs/http.md for the policies in full.
 *
 * ABI: etl_http_request_t and etl_http_response_t start with `size`; 0 (a
 * zero-initialised struct) means the layout of this first version. Later
 * versions only append members and read or write them only when `size` says
 * the caller has them.
 */
#ifndef ETL_HTTP_H
#define ETL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "etl.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The standard options of an HTTP plugin, for its option table:
 *   base_url        the API root (default: the plugin's own, set with
 *                   etl_http_set_base_url); relative request URLs append to it
 *   timeout         total time for one attempt (60s)
 *   connect_timeout time to connect, TLS included (10s)
 *   max_retries     retries after the first attempt (5); 0 disables retries
 *   max_retry_time  cap on the time spent retrying one request (10m)
 *   rate_limit      requests per second per host ("2", "0.5", "100/m", "3600/h");
 *                   unset: no limit until the API's headers say one
 *   rate_burst      requests that may go at once before the rate applies
 *                   (default: one second's worth, at least 1)
 *   ca_file         a PEM bundle of extra certificate authorities to trust
 *                   (besides the system's); TLS verification is never off
 */
#define ETL_HTTP_OPTIONS                                                                   \
    {"base_url", ETL_OPT_STRING, 0, NULL, 0,                                               \
     "API root URL; overrides the plugin's default (e.g. a mock or a proxy)", NULL},       \
    {"timeout", ETL_OPT_DURATION, 0, "60s", 0, "total time allowed for one HTTP attempt",  \
     NULL},                                                                                \
    {"connect_timeout", ETL_OPT_DURATION, 0, "10s", 0,                                     \
     "time allowed to connect (TLS handshake included)", NULL},                            \
    {"max_retries", ETL_OPT_INT, 0, "5", 0,                                                \
     "retries of a request after network errors, 5xx, 408 and 429 (0: none)", NULL},       \
    {"max_retry_time", ETL_OPT_DURATION, 0, "10m", 0,                                      \
     "cap on the total time spent retrying one request", NULL},                            \
    {"rate_limit", ETL_OPT_STRING, 0, NULL, 0,                                             \
     "requests per second per host: 2, 0.5, 100/m, 3600/h (default: no limit)", NULL},     \
    {"rate_burst", ETL_OPT_INT, 0, NULL, 0,                                                \
     "requests allowed at once before rate_limit applies (default: 1 second's worth)",     \
     NULL},                                                                                \
    {"ca_file", ETL_OPT_PATH, 0, NULL, 0,                                                  \
     "PEM file of extra certificate authorities to trust (verification stays on)", NULL}

typedef struct etl_http etl_http_t;

/* A name/value pair: a query parameter or a header. */
typedef struct etl_http_param {
    const char *name;
    const char *value; /* NULL: the pair is left out */
} etl_http_param_t;

/* etl_http_request_t.flags */
enum {
    ETL_HTTP_NO_RETRY = 1u << 0,    /* one attempt only (a non-idempotent POST) */
    ETL_HTTP_NO_LOG_BODY = 1u << 1, /* debug logs leave both bodies out */
    ETL_HTTP_NO_RATE = 1u << 2      /* do not wait for the host's token bucket */
};

typedef struct etl_http_request {
    size_t size;                   /* sizeof(etl_http_request_t), or 0 */
    const char *method;            /* "GET" when NULL; any token ("PATCH"...) */
    const char *url;               /* absolute, or appended to base_url */
    const etl_http_param_t *query; /* added to the URL, percent-encoded */
    size_t nquery;
    const etl_http_param_t *headers; /* extra headers for this request; a
                                      * value replaces a default header of
                                      * the same name, NULL removes it */
    size_t nheaders;
    const void *body; /* sent as is; NULL with body_len 0: no body */
    size_t body_len;
    const char *content_type; /* of body; default "application/json" */
    unsigned flags;           /* ETL_HTTP_* */
    int64_t timeout_ms;       /* this request's total timeout per attempt; 0: the client's */
    const char *rate_key;     /* token bucket to wait on (e.g. an operation with its
                               * own limit, as SP-API has); NULL: the URL's host */
} etl_http_request_t;

/* One response header (name as the server spelled it). */
typedef struct etl_http_header {
    const char *name;
    const char *value;
} etl_http_header_t;

typedef struct etl_http_response {
    size_t size;     /* sizeof(etl_http_response_t), or 0 */
    long status;     /* HTTP status of the last attempt; 0 when none arrived */
    char *body;      /* body_len bytes plus a NUL (not counted); never NULL after a response */
    size_t body_len;
    const char *url; /* the URL of the last attempt, after redirects */
    const etl_http_header_t *headers; /* in arrival order; use etl_http_header() */
    size_t nheaders;
    int attempts;         /* attempts made (1 = no retry) */
    int64_t total_us;     /* from the call to the return, waits included */
    int64_t wait_us;      /* of total_us: rate limiter and retry waits */
    int64_t connect_us;   /* last attempt: until connected (0 on a reused connection) */
    int64_t first_byte_us; /* last attempt: until the first byte of the answer */
    int64_t transfer_us;  /* last attempt: the whole exchange */
    void *priv_;          /* the toolkit's; do not touch */
} etl_http_response_t;

/*
 * Opens a client from the plugin's options (ETL_HTTP_OPTIONS; missing ones
 * take their defaults). Returns NULL with the context's error set
 * (etl_ctx_error) on a bad option value or no memory.
 */
ETL_API etl_http_t *etl_http_open(etl_ctx_t *ctx);
/* Closes the client and its connections. NULL is fine. */
ETL_API void etl_http_close(etl_http_t *h);

/* The base URL relative request URLs append to. Only used when the pipeline
 * did not set the `base_url` option (which always wins), so a plugin can call
 * it with its own default unconditionally. */
ETL_API etl_status_t etl_http_set_base_url(etl_http_t *h, const char *url);
/* The effective base URL, or NULL. */
ETL_API const char *etl_http_base_url(const etl_http_t *h);

/*
 * A header sent with every request (e.g. "Square-Version"). A NULL value
 * removes it. Values of credential headers (Authorization,
 * Proxy-Authorization, Cookie, X-Shopify-Access-Token, x-amz-access-token,
 * X-Api-Key, and any name passed to etl_http_secret_header) are registered
 * for redaction (etl_secret), the token part of "Bearer TOKEN" too.
 */
ETL_API etl_status_t etl_http_set_header(etl_http_t *h, const char *name, const char *value);
/* Marks a header name as carrying a credential (redacted in logs). */
ETL_API etl_status_t etl_http_secret_header(etl_http_t *h, const char *name);

/*
 * Sends one request and fills *resp (which must be zeroed before its first
 * use; a response from an earlier call is released first).
 *
 * ETL_OK: an answer arrived that is not to be retried: 1xx-3xx, and 4xx other
 *   than 408 and 429 (a 401 goes back to the plugin, e.g. to refresh a token).
 *   Check resp->status, or call etl_http_check.
 * ETL_ERR_RETRY: the retries ran out on 5xx/408/429 (resp holds the last answer).
 * ETL_ERR_IO: the retries ran out on network errors, or an error that no retry
 *   can fix (TLS verification failed, bad URL).
 * ETL_ERR_CANCELLED: the run was stopped, during a transfer or a wait.
 * ETL_ERR_CONFIG, ETL_ERR_DATA (answer too large), ETL_ERR_NOMEM.
 * Every error sets the context's message naming METHOD URL (sensitive query
 * parameters shown as ***), the last status and the number of attempts.
 *
 * Redirects (301, 302, 303, 307, 308) are followed, up to 5 hops, when they
 * stay on the same scheme, host and port (or go from http to https on the
 * same host), so credentials never travel to another host; 303, and 301/302
 * after a POST, continue as a GET without a body. Any other redirect comes
 * back as the 3xx answer. A hop is not counted as an attempt.
 */
ETL_API etl_status_t etl_http_request(etl_http_t *h, const etl_http_request_t *req,
                                      etl_http_response_t *resp);
/* Shorthand for a GET of url (absolute or relative). */
ETL_API etl_status_t etl_http_get(etl_http_t *h, const char *url, etl_http_response_t *resp);

/* ETL_OK for a 2xx status; else an error naming METHOD URL, the status and
 * the start of the body: ETL_ERR_AUTH for 401/403, ETL_ERR_RETRY for
 * 408/429/5xx, ETL_ERR_DATA for other statuses. */
ETL_API etl_status_t etl_http_check(etl_http_t *h, const etl_http_response_t *resp);

/* Releases what a response holds and zeroes it (size is kept). */
ETL_API void etl_http_response_free(etl_http_response_t *resp);

/* The value of the first response header named `name` (any case), or NULL. */
ETL_API const char *etl_http_header(const etl_http_response_t *resp, const char *name);

/* ------------------------------------------------------------ rate limiting */

/*
 * Buckets are named by a key: a host as "host:port" (the port always
 * written, "api.example.com:443"), or any name a request gives as rate_key.
 * NULL stands for base_url's host. A new bucket starts with the rate_limit
 * and rate_burst options (unlimited when unset).
 *
 * Sets the token bucket `key`: `per_sec` requests per second (<= 0 removes the limit),
 * `burst` requests at once (<= 0: keep the current burst, or one second's
 * worth, at least 1). E.g. Amazon's x-amzn-RateLimit-Limit: 0.5.
 */
ETL_API void etl_http_rate_set(etl_http_t *h, const char *key, double per_sec, double burst);
/*
 * Reports a leaky bucket's fill level as the API states it: `used` of `size`
 * requests, leaking `leak_per_sec` (Shopify: X-Shopify-Shop-Api-Call-Limit:
 * 32/40 and 2/s). The client then sends at most size - used requests at once
 * and then one per 1/leak_per_sec, so it slows down before a 429.
 */
ETL_API void etl_http_rate_used(etl_http_t *h, const char *key, double used, double size,
                                double leak_per_sec);
/*
 * Feeds the bucket the response's request used (its rate_key, else its host)
 * from one of its headers: a value
 * "USED/SIZE" calls etl_http_rate_used (with leak_per_sec), a number calls
 * etl_http_rate_set (requests per second). Returns 1 when the header was
 * there and understood, 0 when absent, -1 when malformed.
 */
ETL_API int etl_http_rate_from_header(etl_http_t *h, const etl_http_response_t *resp,
                                      const char *header, double leak_per_sec);

/* ------------------------------------------------------------ URLs and pages */

/* Percent-encodes s[0..n) for a URL component (RFC 3986 unreserved bytes
 * stay). The caller frees. NULL on no memory. */
ETL_API char *etl_http_escape(const char *s, size_t n);

/*
 * Builds base + path + "?" + encoded query (pairs with a NULL value left
 * out; "&" when the URL already has a query). An absolute `path` ignores
 * base; a relative one is appended with exactly one "/" between. base or
 * path may be NULL. The caller frees. NULL on no memory.
 */
ETL_API char *etl_http_url(const char *base, const char *path, const etl_http_param_t *query,
                           size_t nquery);

/*
 * The target of the link with relation `rel` in an RFC 8288 Link header
 * value (several links, quoted or bare parameters, rel lists such as
 * rel="next last", any case), resolved against `base` when relative (base
 * may be NULL). The caller frees. NULL when there is none or the header is
 * malformed before it.
 */
ETL_API char *etl_http_link(const char *link_header, const char *rel, const char *base);
/* The rel="next" URL from every Link header of a response (resolved against
 * its URL), or NULL: the last page. The caller frees. */
ETL_API char *etl_http_next_link(const etl_http_response_t *resp);

/*
 * The value of query parameter `name` in url, decoded (e.g. Shopify's
 * page_info), or NULL. The caller frees.
 */
ETL_API char *etl_http_query_param(const char *url, const char *name);

/* ------------------------------------------------------------ metrics */

/*
 * Calls cb once per (host, status) with the number of retries made in this
 * process for it; status 0 stands for network errors (connection refused or
 * reset, timeouts, truncated answers). For /metrics.
 */
ETL_API void etl_http_retry_counts(void (*cb)(void *arg, const char *host, long status,
                                              uint64_t retries),
                                   void *arg);

#ifdef __cplusplus
}
#endif
#endif
