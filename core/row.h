/*
 * row.h - what the core computes from a row: its key text (the ledger's and
 * the deferred table's identity), its content hash (the ledger's change
 * test), and its JSON form (deferred records and dead letters).
 */
#ifndef ETL_CORE_ROW_H
#define ETL_CORE_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "etl/etl.h"
#include "util.h"

/*
 * Key text: one column gives its text form ("42", "a1b2-..."); several are
 * joined with ':' after escaping '\' and ':' with '\' (so "a:b" + "c" and
 * "a" + "b:c" differ); a NULL part is "\N". Returns -1 when a single-column
 * key is NULL (the caller tries the fallback key).
 */
int etl_row_key(etl_buf_t *out, const etl_value_t *row, const int *cols, size_t ncols);
/* Splits key text back into its parts (unescaped, NUL-terminated, in the
 * arena). Returns the number of parts, or -1 when there are more than max. */
int etl_key_split(const char *key, size_t len, etl_arena_t *a, const char **parts, size_t *lens,
                  int *is_null, size_t max);

/* The reverse of etl_row_key for columns cols of schema sc: typed values
 * into out (ncols of them), strings in the arena. Returns 0 or -1. */
int etl_key_values(const char *key, size_t len, const etl_schema_t *sc, const int *cols,
                   size_t ncols, etl_arena_t *a, etl_value_t *out);

/* 64-bit content hash over the columns whose skip[i] is 0 (skip may be NULL). */
uint64_t etl_row_hash(const etl_value_t *row, size_t ncols, const unsigned char *skip);
uint64_t etl_hash_bytes(const void *p, size_t n, uint64_t seed);

/* {"col": value, ...}: timestamps as ISO 8601 UTC, numeric as a string,
 * json embedded as is when valid, blobs as {"base64": "..."}. */
void etl_row_json(etl_buf_t *out, const etl_schema_t *s, const etl_value_t *row);
/* A plain JSON object for a document (nested children): no type notes;
 * numeric as a string (exact), timestamps ISO 8601, json embedded, blobs
 * in base64. */
void etl_row_json_plain(etl_buf_t *out, const etl_schema_t *s, const etl_value_t *row);
/* The reverse, into `row` (ncols of s), strings in the arena. Columns absent
 * from the JSON are NULL. Returns 0, or -1 with err set. */
int etl_row_from_json(const char *json, const etl_schema_t *s, etl_arena_t *a, etl_value_t *row,
                      char *err, size_t errlen);

#endif
