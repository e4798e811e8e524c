/*
 * etl/json.h - JSON helpers for plugins (jansson): parse with messages that
 * say where, look values up by path, convert them into typed record values,
 * and fill a whole row from a table of fields.
 *
 *     json_t *root;
 *     if ((st = etl_json_parse(ctx, rs.body, rs.body_len, rs.url, &root)) != ETL_OK)
 *         return st;
 *     const char *next = etl_json_str(root, "payload.NextToken");  // NULL: last page
 *
 *     static const etl_json_field_t fields[] = {
 *         {"id", "id", ETL_T_TEXT, ETL_JSON_REQUIRED}, // 64-bit ids stay exact
 *         {"total", "total_money.amount", ETL_T_INT, 0},
 *         {"price", "price", ETL_T_NUMERIC, 0},        // "409.94" stays "409.94"
 *         {"updated_at", NULL, ETL_T_TIMESTAMP, 0},    // NULL path: the column name
 *         {"data", "$", ETL_T_JSON, 0},                // the whole object, compact
 *         ETL_JSON_FIELDS_END};
 *     etl_json_scratch_reset(scratch);                // once per row
 *     st = etl_json_row(ctx, obj, fields, schema, 0, scratch, row);
 *     st = etl_emit(em, row);                        // copies; then the row may go
 *
 * Paths: members separated by '.', array items by [N] (negative N counts
 * from the end: [-1] is the last), members with odd names by ["a.b"];
 * "" or "$" is the value itself. A path that runs into a missing member, an
 * index out of range, or a value of another kind (a member of an array) is
 * absent.
 *
 * Lifetimes: values that can point into the JSON document (text, numeric
 * and blob from JSON strings) do so; text the helpers must produce (a number
 * as text, serialized JSON) goes to a scratch area. Both must outlive the
 * values: keep the document and do not reset the scratch until the row has
 * been emitted.
 *
 * Plugins link jansson (pkg-config etl brings it in).
 */
#ifndef ETL_JSON_H
#define ETL_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "etl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ scratch */

/* A growable area for the text conversions produce; cheap to reset. */
typedef struct etl_json_scratch etl_json_scratch_t;

ETL_API etl_json_scratch_t *etl_json_scratch_new(void);
/* Forgets every value made since the last reset (memory is kept for reuse). */
ETL_API void etl_json_scratch_reset(etl_json_scratch_t *s);
ETL_API void etl_json_scratch_free(etl_json_scratch_t *s);
/* A copy of s[0..n) (NUL-terminated) in the scratch area; NULL on no memory. */
ETL_API const char *etl_json_scratch_dup(etl_json_scratch_t *s, const char *p, size_t n);
/* Formatted text in the scratch area (e.g. a composite id "a:b:c"); *len
 * gets its length (len may be NULL). NULL on no memory. */
ETL_API const char *etl_json_scratch_printf(etl_json_scratch_t *s, size_t *len, const char *fmt,
                                            ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------ parsing */

/*
 * Parses text[0..len) (any JSON value). ETL_ERR_DATA with a message naming
 * `what` (e.g. the URL), the line, column and reason when it is not JSON
 * (integers beyond 64 bits are refused by jansson, never rounded). The
 * caller json_decref()s *out.
 */
ETL_API etl_status_t etl_json_parse(etl_ctx_t *ctx, const char *text, size_t len,
                                    const char *what, json_t **out);

/* ------------------------------------------------------------ lookup */

/* The value at path (a borrowed reference), or NULL when absent or the path
 * is malformed. */
ETL_API json_t *etl_json_get(const json_t *root, const char *path);

/* The string at path, or NULL when absent or not a string. */
ETL_API const char *etl_json_str(const json_t *root, const char *path);
/* The same with its length (JSON strings may hold NUL bytes). */
ETL_API const char *etl_json_strn(const json_t *root, const char *path, size_t *len);

/*
 * Typed getters: 0 and *out when the value is there and converts exactly,
 * 1 when absent or null (*out untouched), -1 when it is there but does not
 * convert (wrong kind, junk text, out of range).
 *   int:    a JSON integer (all 64 bits exact), a string of decimal digits
 *           ("9007199254740993", exact), or a real with an integral value
 *           of at most 2^53 in size
 *   double: a number, or a string holding one
 *   bool:   true/false, the strings "true"/"false", the integers 0/1
 */
ETL_API int etl_json_int(const json_t *root, const char *path, int64_t *out);
ETL_API int etl_json_double(const json_t *root, const char *path, double *out);
ETL_API int etl_json_bool(const json_t *root, const char *path, int *out);

/* ------------------------------------------------------------ values */

/*
 * Converts v (may be NULL: absent) into a value of `type`. Absent and JSON
 * null give ETL_T_NULL for every type, and so does "" for the types that are
 * not text (int, double, numeric, bool, timestamp). Otherwise:
 *   ETL_T_INT        as etl_json_int (never through a double)
 *   ETL_T_DOUBLE     as etl_json_double
 *   ETL_T_BOOL       as etl_json_bool
 *   ETL_T_NUMERIC    a decimal string ("409.94", "-1.5e3") as is; an
 *                    integer exactly; a real in its shortest exact form
 *   ETL_T_TEXT       a string as is; an integer exactly ("9007199254740993");
 *                    a real in its shortest form; true/false; an object or
 *                    array as compact JSON
 *   ETL_T_BLOB       a string's bytes
 *   ETL_T_JSON       any value as compact JSON (key order kept, reals in
 *                    their shortest exact form, strings as JSON strings)
 *   ETL_T_TIMESTAMP  RFC 3339 / ISO 8601 text with any offset (etl_ts_parse)
 *   ETL_T_NULL       always null
 * Anything else is ETL_ERR_DATA with a message naming `path` (only used
 * for the message; may be NULL), the type wanted and what was found.
 */
ETL_API etl_status_t etl_json_value(etl_ctx_t *ctx, const json_t *v, etl_type_t type,
                                    etl_json_scratch_t *s, const char *path, etl_value_t *out);

/* v (absent: null) as compact JSON text: an ETL_T_JSON value in the scratch. */
ETL_API etl_status_t etl_json_dump(etl_ctx_t *ctx, const json_t *v, etl_json_scratch_t *s,
                                   etl_value_t *out);

/* ------------------------------------------------------------ rows */

/* etl_json_field_t.flags */
enum {
    ETL_JSON_REQUIRED = 1u << 0 /* absent or null is an error, not NULL (e.g. the id) */
};

/* One column of a row built from a JSON object. Plugins keep these in static
 * arrays, so this struct never changes size: new behaviour goes in flags. */
typedef struct etl_json_field {
    const char *column; /* the schema's column name */
    const char *path;   /* where in the object; NULL: the column name; "$": the object */
    etl_type_t type;    /* the value's type; ETL_T_NULL: the column's type */
    unsigned flags;     /* ETL_JSON_* */
} etl_json_field_t;

#define ETL_JSON_FIELDS_END {NULL, NULL, ETL_T_NULL, 0}

/* etl_json_row flags */
enum {
    /* Columns of the schema that no field names take the object's
     * top-level member of the same name, converted to the column's type. */
    ETL_JSON_ROW_BY_NAME = 1u << 0
};

/*
 * Fills row (etl_schema_ncols(schema) values, in schema order) from obj:
 * every column starts NULL, then each field whose column is in the schema
 * gets its converted value (fields for columns the schema lacks are
 * skipped, so a stream may exclude columns). `fields` ends with
 * ETL_JSON_FIELDS_END. ETL_ERR_DATA names the column and path of a value
 * that does not convert or of an ETL_JSON_REQUIRED one that is absent or
 * null; ETL_ERR_INTERNAL a malformed path.
 */
ETL_API etl_status_t etl_json_row(etl_ctx_t *ctx, const json_t *obj,
                                  const etl_json_field_t *fields, const etl_schema_t *schema,
                                  unsigned flags, etl_json_scratch_t *s, etl_value_t *row);

#ifdef __cplusplus
}
#endif
#endif
