/*
 * sq_json.h - the page scanner of the square plugin (see sq_json.c): a
 * page is validated once, then read through spans of its own text.
 */
#ifndef SQ_JSON_H
#define SQ_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <etl/etl.h>
#include <etl/json.h>

/* A JSON value: its text, from its first byte to its last. p NULL: absent. */
typedef struct sq_span {
    const char *p;
    size_t n;
} sq_span_t;

/* Where each object and array of a page ends, by where it starts (in the
 * order they start), so that reading skips a nested value in one step.
 * Reused from page to page; sq_index_free releases it. */
typedef struct sq_index {
    uint32_t (*pairs)[2]; /* {offset of '{' or '[', offset of its '}' or ']'} */
    size_t n, cap;
    uint32_t *stack;      /* open containers while validating */
    size_t scap;
} sq_index_t;

void sq_index_free(sq_index_t *ix);

/* A validated answer: the root object, whether the text has no whitespace
 * between tokens (then every inner span is compact JSON), and its index. */
typedef struct sq_page {
    sq_span_t root;
    int compact;
    const char *base;
    const sq_index_t *ix;
} sq_page_t;

/* Validates text[0..len) as one JSON object (at most 4 GiB) and indexes it.
 * ETL_ERR_DATA naming `where`, the line, column and byte, and "truncated?"
 * when the text ends early. */
etl_status_t sq_json_page(etl_ctx_t *ctx, const char *text, size_t len, const char *where,
                          sq_index_t *ix, sq_page_t *page);

/* Walks the members of an object or the items of an array of a page. */
typedef struct sq_iter {
    const char *p, *end;
    const sq_page_t *pg;
} sq_iter_t;

void sq_iter_init(sq_iter_t *it, const sq_page_t *pg, sq_span_t container);
/* 1 with the next member (key: the name's text between the quotes, escapes
 * kept), 0 at the end. */
int sq_iter_member(sq_iter_t *it, sq_span_t *key, sq_span_t *val);
/* 1 with the next item, 0 at the end. */
int sq_iter_item(sq_iter_t *it, sq_span_t *val);
/* The member's name is `name` (len bytes), escapes understood. */
int sq_key_is(sq_span_t key, const char *name, size_t len);
/* 1 with the value of member `name` of obj (the last one when repeated). */
int sq_member(const sq_page_t *pg, sq_span_t obj, const char *name, sq_span_t *val);

/* Several members in one pass: vals[i] gets member names[i] (p NULL when
 * absent). Returns how many were found. */
int sq_members(const sq_page_t *pg, sq_span_t obj, const char *const *names, sq_span_t *vals,
               size_t n);

/* A string value's text (unescaped, NUL-terminated, malloc'd), or NULL when
 * v is not a string (or no memory). */
char *sq_strdup(sq_span_t v);
/* Unescapes the text between a string's quotes into out (n bytes at most). */
int sq_unescape(const char *s, size_t n, char *out, size_t *outlen);

/* What conversions need: the scratch for text they make, a work buffer,
 * and whether the page is compact. */
typedef struct sq_conv {
    etl_json_scratch_t *scratch;
    char *buf;
    size_t cap;
    int compact;
} sq_conv_t;

/* v (absent: p NULL) as a value of `type`, by the rules of etl_json_value;
 * ETL_T_JSON is the value's own text (compacted if the page is not). */
etl_status_t sq_value(etl_ctx_t *ctx, sq_conv_t *cv, sq_span_t v, etl_type_t type,
                      const char *path, etl_value_t *out);

#endif
