/*
 * pa.h - etl-pythonanywhere.so, the shop's remote store API as a sink
 * (../shared/specs/pythonanywhere.md). Shared by pa.c (descriptor, options,
 * the sink operations), pa_auth.c (JWT login and refresh), pa_doc.c (a row
 * as a JSON item) and pa_sync.c (batched POSTs and their per-item results).
 */
#ifndef PA_H
#define PA_H

#include <stddef.h>
#include <stdint.h>

#include <etl/etl.h>
#include <etl/http.h>
#include <etl/json.h>

/* A growable text buffer; `oom` sticks once an append ran out of memory. */
typedef struct pa_buf {
    char *data;
    size_t len, cap;
    int oom;
} pa_buf_t;

void pa_buf_free(pa_buf_t *b);
void pa_buf_add(pa_buf_t *b, const void *p, size_t n);
void pa_buf_adds(pa_buf_t *b, const char *s);
void pa_buf_addc(pa_buf_t *b, char c);
/* s[0..n) as a JSON string, quotes included (bytes >= 0x80 as they are). */
void pa_buf_json_str(pa_buf_t *b, const char *s, size_t n);

/* One plugin instance (a sink). */
typedef struct pa {
    etl_http_t *http;
    const char *username, *password; /* option values, owned by the core */
    const char *token_path, *refresh_path, *products_path, *receipts_path;
    size_t batch_products, batch_receipts;
    char *access, *refresh;          /* the current tokens, or NULL */
    int64_t access_exp, refresh_exp; /* their `exp` (Unix seconds); 0: unknown */
    char *auth_error;                /* the credentials were refused: every later call fails so */
    int dry_run;                     /* the run is `etl run --dry-run`: nothing is sent */
    int logins, refreshes;           /* this run, for the log */
} pa_t;

/* What a table is sent to. */
typedef enum pa_kind { PA_PRODUCTS = 0, PA_RECEIPTS } pa_kind_t;

/* A prepared stream, from prepare() to finish(). */
typedef struct pa_stream {
    pa_kind_t kind;
    char *table;
    const char *path;   /* the endpoint, relative to base_url */
    const char *member; /* "products" or "receipts": the batch's list */
    size_t batch;       /* items per request; a 413 halves it for the rest of the run */
    const etl_schema_t *schema; /* of the rows being written (borrowed per write) */
    pa_buf_t items;     /* the items of the rows being written, one after another */
    size_t *off, *len;  /* row i's item: items.data[off[i] .. off[i]+len[i]) */
    size_t *idx;        /* rows to send, in order */
    size_t cap;
    pa_buf_t body;      /* the request being built */
    /* totals of this run, for the log */
    int64_t sent, requests, created, updated, skipped, refused, too_large, bisected;
} pa_stream_t;

/* pa_auth.c: a valid access token set as the client's Authorization header
 * (logging in or refreshing as needed). */
etl_status_t pa_token(pa_t *p, etl_ctx_t *ctx);
/* After a 401 of a sync call: a new access token from the refresh token,
 * else by logging in again. */
etl_status_t pa_renew(pa_t *p, etl_ctx_t *ctx);
/* Logs in (username, password): the connection test of `etl check`. */
etl_status_t pa_login(pa_t *p, etl_ctx_t *ctx);
/* The `exp` claim of a JWT (Unix seconds), or 0 when it has none. */
int64_t pa_jwt_exp(const char *jwt);
/* A short text for a server's error answer: its JSON `detail` (plus
 * `errors` when `with_errors`), else the start of the body. Into buf. */
const char *pa_detail(const etl_http_response_t *rs, int with_errors, char *buf, size_t size);

/* pa_doc.c: row (schema order) as one JSON object appended to b: every
 * column a field of its name, json columns embedded as JSON. -1 with `why`
 * set when a value cannot be sent (a json column that is not JSON, text
 * that is not UTF-8); b is then left as it was. */
int pa_item(pa_buf_t *b, const etl_schema_t *schema, const etl_value_t *row, char *why,
            size_t whylen);

/* pa_sync.c: sends rows as items of POSTs and fills rows->outcome. */
etl_status_t pa_sync(pa_t *p, pa_stream_t *s, etl_ctx_t *ctx, etl_rows_t *rows);

#endif
