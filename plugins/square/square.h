/*
 * square.h - the square source plugin's shared types: the instance, the
 * stream table, the row plans that map Square's JSON objects onto a
 * stream's columns, and the API helpers. See docs/square.md.
 */
#ifndef SQUARE_H
#define SQUARE_H

#include <stddef.h>
#include <stdint.h>

#include <etl/etl.h>
#include <etl/http.h>
#include <etl/json.h>

#include "sq_json.h"

#define SQ_DEFAULT_VERSION "2025-08-20" /* the spec's pinned Square-Version */
#define SQ_PAGE_MAX 1000                /* the largest page any endpoint we use allows */
#define SQ_ORDERS_LOCATIONS_MAX 10      /* location_ids per SearchOrders request */

/* One plugin instance (the core opens one per run for reading). */
typedef struct sq {
    etl_ctx_t *ctx;
    etl_http_t *http;
    etl_http_response_t rs;        /* the last answer; released by the next call */
    etl_json_scratch_t *scratch;   /* text made while mapping one row */
    sq_conv_t conv;                /* conversions: the scratch, a work buffer */
    sq_index_t index;              /* the structure of the last answer */
    const char *const *opt_locs;   /* the location_ids option (the core's), or NULL */
    size_t nopt_locs;
    char **all_locs;               /* every location Square lists, fetched once */
    size_t nall_locs;
    int have_all_locs;
    int64_t page_size;             /* the page_size option */
} sq_t;

/* A column: its name, type and where its value is in the API's object
 * (dotted members; "$" is the whole object). path NULL: the reader sets it. */
typedef struct sq_col {
    const char *name;
    etl_type_t type;
    const char *path;
} sq_col_t;

typedef struct sq_stream sq_stream_t;
typedef etl_status_t (*sq_read_fn)(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                                   const etl_read_t *req, etl_emitter_t *em);

/* A stream: its columns (ending with a NULL name), its cursor and its reader. */
struct sq_stream {
    const char *name;
    const sq_col_t *cols;
    const char *cursor;      /* NULL: read in full every run */
    const char *object_type; /* catalog streams: the CatalogObjectType read */
    sq_read_fn read;
};

/* ------------------------------------------------------------ sq_map.c */

/* The columns of one read (the core's schema, in its order) and how each is
 * filled from an object; built once per read, applied once per object. */
typedef struct sq_plan sq_plan_t;

etl_status_t sq_plan_new(etl_ctx_t *ctx, const sq_col_t *cols, const etl_schema_t *schema,
                         sq_plan_t **out);
void sq_plan_free(sq_plan_t *p);
/* Index of a column in the read's schema, or -1 when the stream left it out. */
int sq_plan_col(const sq_plan_t *p, const char *name);
/* Fills the row (NULL first) from obj; text points into the page or the
 * scratch (reset it per row). `where` names the response in messages. */
etl_status_t sq_plan_fill(sq_plan_t *p, etl_ctx_t *ctx, sq_conv_t *cv, const sq_page_t *pg,
                          sq_span_t obj, const char *where, etl_value_t **row);
/* Asks the plan to keep the span of the top-level member `name` of each
 * object it fills (read it with sq_plan_span after sq_plan_fill): one walk
 * of the object serves the columns and the reader. Returns the slot, or -1
 * when too many were asked for. */
int sq_plan_probe(sq_plan_t *p, const char *name);
sq_span_t sq_plan_span(const sq_plan_t *p, int slot);

/* ------------------------------------------------------------ sq_api.c */

/*
 * Sends METHOD path with body (NULL: none) and validates the answer into
 * *page, whose spans point into the answer until the next call. Errors name
 * the method and URL: the toolkit's (retries exhausted, network),
 * ETL_ERR_AUTH on 401/403, and ETL_ERR_DATA for other statuses, an answer
 * that is not a JSON object, or one that carries Square's `errors`.
 */
etl_status_t sq_call(sq_t *s, etl_ctx_t *ctx, const char *method, const char *path,
                     const json_t *body, sq_page_t *page);
/* POST path with body, the cursor (NULL: the first page) set into it, as
 * sq_call; `where` gets "POST URL" of the answer, for messages. */
etl_status_t sq_post_page(sq_t *s, etl_ctx_t *ctx, const char *path, json_t *body,
                          const char *cursor, sq_page_t *page, char *where, size_t size);
/* Moves *next (the page's cursor, NULL on the last page) into *cursor,
 * freeing the old one. ETL_ERR_DATA, both left as they were, when the same
 * cursor came back twice: paging would never end. */
etl_status_t sq_next_cursor(etl_ctx_t *ctx, const char *where, char **cursor, char **next);
/* The array member `name` of the page's root (absent: an empty span);
 * ETL_ERR_DATA when it is there and not an array. */
etl_status_t sq_array(etl_ctx_t *ctx, const sq_page_t *page, const char *name,
                      const char *where, sq_span_t *out);
/* The string member `name` of obj, malloc'd; *out NULL when absent.
 * ETL_ERR_DATA when it is there and not a string. */
etl_status_t sq_string(etl_ctx_t *ctx, const sq_page_t *pg, sq_span_t obj, const char *name,
                       const char *where, char **out);
/* "METHOD URL" of the last answer, for messages. */
const char *sq_where(sq_t *s, const char *method, char *buf, size_t size);
/* The read's lower bound as microseconds; 0 with *has = 0 when there is none. */
etl_status_t sq_since_us(etl_ctx_t *ctx, const etl_read_t *req, int64_t *us, int *has);
/* RFC 3339 with milliseconds and Z, as Square writes times; buf >= 32 bytes. */
void sq_format_ms(int64_t us, char *buf, size_t size);
/* The page size of a read: the stream's `select: {limit: N}`, else the
 * page_size option, clamped to 1..max. */
etl_status_t sq_page_limit(sq_t *s, etl_ctx_t *ctx, const etl_read_t *req, int64_t max,
                           int64_t *out);
/* The locations to read: the location_ids option, else every location
 * Square lists (fetched once per instance). The arrays stay the instance's. */
etl_status_t sq_locations(sq_t *s, etl_ctx_t *ctx, const char *const **ids, size_t *n);
/* GET /v2/locations: the answer's `locations` array, its ids remembered
 * (sq_remember_locations); `where` as sq_post_page. */
etl_status_t sq_get_locations(sq_t *s, etl_ctx_t *ctx, sq_page_t *page, sq_span_t *locs,
                              char *where, size_t size);
/* Remembers the ids of a GET /v2/locations answer (for sq_locations). */
etl_status_t sq_remember_locations(sq_t *s, etl_ctx_t *ctx, const sq_page_t *pg,
                                   sq_span_t locations);

/* ------------------------------------------------------------ readers */

etl_status_t sq_read_locations(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                               const etl_read_t *req, etl_emitter_t *em);
etl_status_t sq_read_catalog(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                             const etl_read_t *req, etl_emitter_t *em);
etl_status_t sq_read_inventory(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                               const etl_read_t *req, etl_emitter_t *em);
/* orders and order_line_items: one walk of SearchOrders each */
etl_status_t sq_read_orders(sq_t *s, etl_ctx_t *ctx, const sq_stream_t *def,
                            const etl_read_t *req, etl_emitter_t *em);

#endif
