/*
 * etl/record.h - typed values, stream schemas and row sets.
 *
 * A record is a row of typed values aligned to its stream's column list.
 * Text, numeric, json and blob values are (pointer, length) and never
 * NUL-scanned. Values handed to a plugin are borrowed for the duration of
 * the call; values a plugin emits are copied by the core.
 */
#ifndef ETL_RECORD_H
#define ETL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ETL_API
#define ETL_API __attribute__((visibility("default")))
#endif

typedef enum etl_type {
    ETL_T_NULL = 0,
    ETL_T_BOOL,      /* v.i is 0 or 1 */
    ETL_T_INT,       /* v.i */
    ETL_T_DOUBLE,    /* v.d */
    ETL_T_NUMERIC,   /* v.s: exact decimal text such as "0.10"; never a double */
    ETL_T_TEXT,      /* v.s, UTF-8 */
    ETL_T_BLOB,      /* v.s, any bytes */
    ETL_T_JSON,      /* v.s, JSON text */
    ETL_T_TIMESTAMP, /* v.i: microseconds since 1970-01-01T00:00:00Z */
    ETL_T_COUNT_
} etl_type_t;

typedef struct etl_value {
    etl_type_t type;
    uint32_t len; /* bytes at v.s for NUMERIC, TEXT, BLOB, JSON */
    union {
        int64_t i;
        double d;
        const char *s;
    } v;
} etl_value_t;

/* Value constructors: they borrow, never copy. */
static inline etl_value_t etl_null(void) { etl_value_t x = {ETL_T_NULL, 0, {0}}; return x; }
static inline etl_value_t etl_int(int64_t i) { etl_value_t x = {ETL_T_INT, 0, {0}}; x.v.i = i; return x; }
static inline etl_value_t etl_bool(int b) { etl_value_t x = {ETL_T_BOOL, 0, {0}}; x.v.i = b != 0; return x; }
static inline etl_value_t etl_double(double d) { etl_value_t x = {ETL_T_DOUBLE, 0, {0}}; x.v.d = d; return x; }
static inline etl_value_t etl_ts(int64_t us) { etl_value_t x = {ETL_T_TIMESTAMP, 0, {0}}; x.v.i = us; return x; }
static inline etl_value_t etl_str(etl_type_t t, const char *s, size_t n)
{
    etl_value_t x = {t, (uint32_t)n, {0}};
    x.v.s = s;
    return x;
}
static inline etl_value_t etl_text(const char *s, size_t n) { return etl_str(ETL_T_TEXT, s, n); }

/* "null", "bool", "int", ... ; "?" for an unknown code. */
ETL_API const char *etl_type_name(etl_type_t t);
/* The reverse of etl_type_name; returns -1 when the name is unknown. */
ETL_API int etl_type_from_name(const char *name);

/*
 * Timestamps. etl_ts_parse accepts ISO 8601 / RFC 3339 forms
 * ("2024-05-01", "2024-05-01 10:00:00", "2024-05-01T10:00:00.123456+02:00",
 * "...Z") and an HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT"). A time with no
 * zone is UTC. Returns 0 on success, -1 when the text is not a timestamp.
 */
ETL_API int etl_ts_parse(const char *s, size_t n, int64_t *out_us);
/* Formats as "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"; buf needs 32 bytes. Returns length. */
ETL_API size_t etl_ts_format(int64_t us, char *buf, size_t size);

/*
 * Formats a timestamp in the style of an example taken from the data, so a
 * bound compares correctly with text cursors: the same date/time separator
 * ('T' or ' '), as many fraction digits, the same zone form ("Z", "+02:00",
 * "+0200", or none, meaning UTC), or a date alone. Returns the length.
 */
ETL_API size_t etl_ts_format_like(int64_t us, const char *example, size_t exlen, char *buf,
                                  size_t size);

/*
 * The text form of a value: what it looks like as a SQL literal's content or a
 * checkpoint. NULL gives "", bools "true"/"false", timestamps ISO 8601 UTC.
 * Writes at most size-1 bytes plus a NUL into buf when the value needs
 * formatting, or points *out at the value's own bytes for string types.
 * Returns the length of the text.
 */
ETL_API size_t etl_value_text(const etl_value_t *v, char *buf, size_t size, const char **out);

/* ------------------------------------------------------------------ schema */

enum {
    ETL_COL_KEY = 1u << 0,       /* part of the stream's key */
    ETL_COL_NOT_NULL = 1u << 1,
    ETL_COL_GENERATED = 1u << 2, /* computed by the database; never written */
    ETL_COL_HIDDEN = 1u << 3     /* present in the source, not copied */
};

typedef struct etl_column {
    const char *name;
    etl_type_t type;
    const char *native; /* the declared type as the database spells it, or NULL */
    unsigned flags;
} etl_column_t;

/* A stream's column list. Owned by whoever created it. */
typedef struct etl_schema etl_schema_t;

ETL_API etl_schema_t *etl_schema_new(const char *stream);
ETL_API void etl_schema_free(etl_schema_t *s);
/* Adds a column (copies name and native); returns its index, or -1 on no memory. */
ETL_API int etl_schema_add(etl_schema_t *s, const char *name, etl_type_t type, const char *native,
                           unsigned flags);
ETL_API const char *etl_schema_stream(const etl_schema_t *s);
ETL_API size_t etl_schema_ncols(const etl_schema_t *s);
ETL_API const etl_column_t *etl_schema_col(const etl_schema_t *s, size_t i);
/* Index of a column by name, or -1. */
ETL_API int etl_schema_find(const etl_schema_t *s, const char *name);
/* The suggested cursor column (e.g. "updated_at"), or NULL. */
ETL_API void etl_schema_set_cursor(etl_schema_t *s, const char *column);
ETL_API const char *etl_schema_cursor(const etl_schema_t *s);
ETL_API void etl_schema_set_flags(etl_schema_t *s, size_t i, unsigned flags);

/* ------------------------------------------------------------------ rows */

typedef enum etl_outcome {
    ETL_OUT_PENDING = 0,
    ETL_OUT_CREATED,
    ETL_OUT_UPDATED,
    ETL_OUT_UNCHANGED, /* the sink already held this content */
    ETL_OUT_SKIPPED,   /* write: insert met an existing key, or a conflict kept the sink row */
    ETL_OUT_DELETED,
    ETL_OUT_FAILED     /* see etl_rows_fail */
} etl_outcome_t;

/*
 * A set of rows handed to a sink: nrows x ncols values, row-major, aligned to
 * `schema`. The sink fills outcome[i] for every row it was given.
 */
typedef struct etl_rows {
    const etl_schema_t *schema;
    size_t nrows;
    const etl_value_t *values;
    etl_outcome_t *outcome;
    void *core_; /* private to the core */
} etl_rows_t;

static inline const etl_value_t *etl_rows_row(const etl_rows_t *r, size_t i)
{
    return r->values + i * etl_schema_ncols(r->schema);
}

/* Marks row i failed with a message (copied); it goes to the dead letters. */
ETL_API void etl_rows_fail(etl_rows_t *r, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
