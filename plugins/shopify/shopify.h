/*
 * shopify.h - internals of etl-shopify.so (the Shopify REST Admin API source).
 *
 * shopify.c holds the descriptor, the options, the instance and the request
 * path (auth, the call-limit bucket, errors, Link/page_info paging);
 * shopify_streams.c holds the stream catalogue (columns), discovery and the
 * reads. Nothing here is exported: the entry point is the only symbol.
 */
#ifndef ETL_SHOPIFY_H
#define ETL_SHOPIFY_H

#include <etl/etl.h>
#include <etl/http.h>
#include <etl/json.h>

#define SHOPIFY_MAX_LIMIT 250   /* the REST Admin API's largest page */
#define SHOPIFY_MAX_IDS 50      /* ids per location_ids filter */

typedef struct shopify {
    etl_http_t *http;
    const char *shop;        /* the option, as given */
    const char *version;     /* api_version */
    char *prefix;            /* "/admin/api/<version>/" */
    double leak;             /* the bucket's leak rate (calls per second) */
    long page_size;          /* limit= on every list call */
    char *auth_error;        /* set once the token was refused: later streams fail at once */
    int version_warned;      /* the fall-forward warning was logged */
    etl_json_scratch_t *scratch;
} shopify_t;

/* Called once per object of a page's list; `page` is the whole answer. */
typedef etl_status_t (*shopify_item_fn)(void *arg, json_t *item);

/*
 * Walks a paginated list: GET prefix+resource with `query` (the filters; the
 * plugin adds limit), then follows the Link header's rel="next" page_info,
 * sending only page_info, limit and `fields` as Shopify demands. Calls fn
 * for each item of the `envelope` array of every page.
 */
etl_status_t shopify_walk(shopify_t *s, etl_ctx_t *ctx, const char *resource,
                          const etl_http_param_t *query, size_t nquery, const char *fields,
                          const char *envelope, shopify_item_fn fn, void *arg);

/* One GET of prefix+resource (no paging), parsed; the caller json_decref()s. */
etl_status_t shopify_get_json(shopify_t *s, etl_ctx_t *ctx, const char *resource,
                              const etl_http_param_t *query, size_t nquery, json_t **out);

/* shopify_streams.c */
etl_status_t shopify_streams(void *self, etl_ctx_t *ctx, void (*cb)(void *arg, const char *stream),
                             void *arg);
etl_status_t shopify_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out);
etl_status_t shopify_read(void *self, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em);

#endif
