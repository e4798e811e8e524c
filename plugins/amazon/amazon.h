/*
 * amazon.h - internals of etl-amazon.so (the Amazon Selling Partner API source).
 *
 * amazon.c: descriptor, options, instance, region, SP-API calls (per-operation
 * rate buckets, the one refresh after a 403, the error envelope);
 * amazon_token.c: the Login with Amazon refresh-token exchange and its cache
 * in the plugin's key/value store; amazon_streams.c: the streams (columns,
 * discovery, reads). Nothing here is exported: the entry point is the only
 * symbol.
 */
#ifndef ETL_AMAZON_H
#define ETL_AMAZON_H

#include <etl/etl.h>
#include <etl/http.h>
#include <etl/json.h>

typedef struct amazon {
    etl_http_t *http;
    const char *client_id;
    const char *client_secret;
    const char *refresh_token;
    const char *token_url;
    const char *const *marketplaces; /* the option's items (the core's) */
    size_t nmarketplaces;
    char *marketplace_list;          /* "A,B": MarketplaceIds of getOrders */
    int64_t start_us;                /* LastUpdatedAfter of a first run */
    /* Login with Amazon */
    char *token;                     /* the access token in use, or NULL */
    int64_t token_expires_us;        /* wall clock (this machine's) */
    int64_t token_ttl_us;            /* its lifetime when issued */
    int cache_checked;               /* the kv store was asked once */
    char *auth_error;                /* credentials refused: later streams fail at once */
    etl_json_scratch_t *scratch;
} amazon_t;

/* Wall-clock microseconds. */
int64_t amazon_now_us(void);

/* "2024-05-01T14:00:00Z": whole seconds (rounded down), UTC. buf: 32 bytes. */
void amazon_iso(int64_t us, char *buf, size_t size);

/*
 * Makes sure a live access token is set as the x-amz-access-token header:
 * the one in use, else the one cached in the key/value store (when it was
 * issued for these credentials and is not about to expire), else a new one
 * from token_url. force: get a new one whatever the cache says (the API
 * refused the last). ETL_ERR_AUTH when Login with Amazon refuses the
 * credentials.
 */
etl_status_t amazon_token(amazon_t *a, etl_ctx_t *ctx, int force);

/*
 * One SP-API GET of `path` with `query`, waiting on the operation's own
 * token bucket (`op`, e.g. "getOrders") and feeding it from the answer's
 * x-amzn-RateLimit-Limit. A 403 gets one new access token and one more try.
 * On ETL_OK *out is the parsed body (the caller json_decref()s it). Other
 * answers are errors naming the URL, the status and the SP-API error
 * (code, message, details); rs keeps the answer for the caller to inspect.
 */
etl_status_t amazon_call(amazon_t *a, etl_ctx_t *ctx, const char *op, const char *path,
                         const etl_http_param_t *query, size_t nquery, etl_http_response_t *rs,
                         json_t **out);

/* amazon_streams.c */
etl_status_t amazon_streams(void *self, etl_ctx_t *ctx, void (*cb)(void *arg, const char *stream),
                            void *arg);
etl_status_t amazon_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out);
etl_status_t amazon_read(void *self, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em);

#endif
