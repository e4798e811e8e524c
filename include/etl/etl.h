/*
 * etl/etl.h - the plugin ABI of etl.
 *
 * A plugin is a shared object named etl-<name>.so that exports exactly one
 * symbol, etl_plugin_entry, returning a const descriptor. The loader checks
 * abi_version and struct_size before it touches anything else, so a plugin
 * built against another ABI is refused with a message instead of a crash.
 *
 * The ABI only grows at the end of structs: new members are appended and the
 * loader reads them only when struct_size says the plugin has them. Until
 * etl 1.0 the operation tables may still grow within ABI 1: rebuild plugins
 * against the headers of the etl that loads them.
 *
 * Ownership: the core owns every value, row set and schema it passes in; a
 * plugin borrows them for the duration of the call. A plugin owns what it
 * allocates in open() until close(). Errors are an etl_status_t plus a message
 * set with etl_fail(); a plugin never calls exit() or abort().
 */
#ifndef ETL_ETL_H
#define ETL_ETL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifndef ETL_API
#define ETL_API __attribute__((visibility("default")))
#endif

#include "record.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ETL_ABI_VERSION 1u

typedef enum etl_status {
    ETL_OK = 0,
    ETL_ERR_RETRY,     /* transient: the same call may succeed later */
    ETL_ERR_CONFIG,    /* bad option, unknown stream or table */
    ETL_ERR_AUTH,      /* credentials refused */
    ETL_ERR_DATA,      /* a record or a response that cannot be used */
    ETL_ERR_IO,        /* network, file or database failure */
    ETL_ERR_NOMEM,
    ETL_ERR_CANCELLED, /* the run was asked to stop */
    ETL_ERR_INTERNAL
} etl_status_t;

ETL_API const char *etl_status_name(etl_status_t st);

/* ------------------------------------------------------------ options */

typedef enum etl_opt_type {
    ETL_OPT_STRING = 0,
    ETL_OPT_INT,      /* decimal int64 */
    ETL_OPT_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    ETL_OPT_DURATION, /* 30s 5m 2h 90d; read back in seconds */
    ETL_OPT_ENUM,     /* one of `choices`, "a|b|c" */
    ETL_OPT_LIST,     /* a YAML list or a comma-separated string */
    ETL_OPT_PATH      /* a file path, relative to the pipeline's folder */
} etl_opt_type_t;

typedef struct etl_option_def {
    const char *name;
    etl_opt_type_t type;
    int required;
    const char *default_value; /* text form, or NULL */
    int secret;                /* never logged, never stored in run history */
    const char *help;
    const char *choices;       /* ETL_OPT_ENUM only */
} etl_option_def_t;

/* ------------------------------------------------------------ context */

/* The core's context for one plugin instance: options, log, errors, kv. */
typedef struct etl_ctx etl_ctx_t;

typedef enum etl_level {
    ETL_LOG_ERROR = 0,
    ETL_LOG_WARN,
    ETL_LOG_INFO,
    ETL_LOG_DEBUG,
    ETL_LOG_TRACE
} etl_level_t;

/* Logs through the core; registered secrets are redacted. */
ETL_API void etl_log(etl_ctx_t *ctx, etl_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
ETL_API void etl_vlog(etl_ctx_t *ctx, etl_level_t level, const char *fmt, va_list ap);
ETL_API int etl_log_enabled(etl_ctx_t *ctx, etl_level_t level);

/* Sets the context's error message and returns st, for `return etl_fail(...)`. */
ETL_API etl_status_t etl_fail(etl_ctx_t *ctx, etl_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
ETL_API const char *etl_ctx_error(const etl_ctx_t *ctx);

/* Option values after defaults and validation. NULL when unset. */
ETL_API const char *etl_opt(etl_ctx_t *ctx, const char *name);
ETL_API int64_t etl_opt_int(etl_ctx_t *ctx, const char *name, int64_t dflt);
ETL_API int etl_opt_bool(etl_ctx_t *ctx, const char *name, int dflt);
/* Seconds. */
ETL_API int64_t etl_opt_duration(etl_ctx_t *ctx, const char *name, int64_t dflt);
/* A list option's items; the array stays valid until the plugin is closed. */
ETL_API size_t etl_opt_list(etl_ctx_t *ctx, const char *name, const char *const **items);

/* An absolute path for `path` (relative ones resolve against the pipeline's
 * folder). The caller frees the result. */
ETL_API char *etl_path(etl_ctx_t *ctx, const char *path);

/* Non-zero once the run has been asked to stop (SIGINT, SIGTERM, an admin). */
ETL_API int etl_cancelled(etl_ctx_t *ctx);

/* Non-zero in a `--dry-run`: the core still calls write() and then rolls
 * back, so a sink whose writes cannot be taken back (an HTTP API) must not
 * send anything. Added in ABI 1 (etl 0.1): plugins built earlier lack it. */
ETL_API int etl_dry_run(etl_ctx_t *ctx);

/* Registers a value learned at run time (an access token) for redaction. */
ETL_API void etl_secret(etl_ctx_t *ctx, const char *value);

/* The plugin's private key/value space in the state store (e.g. OAuth
 * tokens). get: *value is malloc'd (caller frees) or NULL when absent.
 * put: a NULL value deletes the key. */
ETL_API etl_status_t etl_kv_get(etl_ctx_t *ctx, const char *key, char **value);
ETL_API etl_status_t etl_kv_put(etl_ctx_t *ctx, const char *key, const char *value);

/* Progress for the live line: pages (or requests) done so far. */
ETL_API void etl_progress_page(etl_ctx_t *ctx);

/* ------------------------------------------------------------ source */

typedef struct etl_emitter etl_emitter_t;

/* What the core asks a source to read. */
typedef struct etl_read {
    const char *stream;         /* the source's name for it */
    const etl_schema_t *schema; /* emit rows with exactly these columns, in order */
    const char *cursor;         /* cursor column, or NULL */
    const etl_value_t *since;   /* inclusive lower bound on cursor, or NULL: everything */
    int full;                   /* a full scan was asked for */
    const char *const *select;  /* plugin options of the stream: name, value, name, value... */
    size_t nselect;
    /* A full scan in key order: rows sorted by the schema's ETL_COL_KEY
     * columns (ascending, bytewise for text), starting after `after` (one
     * value per key column, in schema order) when it is not NULL. The core
     * checks the order it receives and only resumes scans that kept it; a
     * source that cannot sort by key may ignore both fields. */
    int by_key;
    const etl_value_t *after;
} etl_read_t;

/* Looks a per-stream `select:` option up; NULL when absent. */
ETL_API const char *etl_read_select(const etl_read_t *r, const char *name);

/* Emits one row (schema order). The core copies the values. Returns
 * ETL_ERR_CANCELLED when the run stops: return it from read(). */
ETL_API etl_status_t etl_emit(etl_emitter_t *em, const etl_value_t *row);
/* Emits a deletion: only the key columns of `row` are read. */
ETL_API etl_status_t etl_emit_delete(etl_emitter_t *em, const etl_value_t *row);
/* Every row whose cursor is below `cursor` has now been emitted (a source
 * reading in cursor order may say so as it goes). The checkpoint may move
 * there once the rows before it are committed. At the end of a complete
 * read the checkpoint is the greater of the greatest cursor emitted and the
 * last value given here (an API's own bound, such as Square's latest_time). */
ETL_API etl_status_t etl_emit_checkpoint(etl_emitter_t *em, const etl_value_t *cursor);

typedef struct etl_source_ops {
    etl_status_t (*open)(etl_ctx_t *ctx, void **self);
    /* Connection test for `etl check`. */
    etl_status_t (*check)(void *self, etl_ctx_t *ctx);
    /* Calls cb once per stream the source can read. */
    etl_status_t (*streams)(void *self, etl_ctx_t *ctx, void (*cb)(void *arg, const char *stream),
                            void *arg);
    /* Fills `out` (named after the stream) with its columns, key flags and
     * cursor. ETL_ERR_CONFIG when there is no such stream. */
    etl_status_t (*discover)(void *self, etl_ctx_t *ctx, etl_schema_t *out);
    etl_status_t (*read)(void *self, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em);
    void (*close)(void *self);
} etl_source_ops_t;

/* ------------------------------------------------------------ sink */

typedef enum etl_write_mode {
    ETL_WRITE_UPSERT = 0,
    ETL_WRITE_INSERT,  /* never touch an existing key */
    ETL_WRITE_APPEND,  /* add every row, no key */
    ETL_WRITE_REPLACE  /* load a staging table, swap it in at finish() */
} etl_write_mode_t;

typedef enum etl_conflict {
    ETL_CONFLICT_SOURCE = 0, /* the incoming row wins */
    ETL_CONFLICT_NEWER,      /* incoming wins when its cursor is strictly greater */
    ETL_CONFLICT_SINK,       /* an existing row is never overwritten */
    ETL_CONFLICT_LUA,        /* decided by the core before write() */
    ETL_CONFLICT_NEWER_OR_EQUAL /* incoming wins unless its cursor is older (a tie goes to it) */
} etl_conflict_t;

typedef struct etl_sink_stream {
    const char *stream;
    const char *table;
    const etl_schema_t *schema; /* the columns the core sends; key columns flagged */
    etl_write_mode_t write;
    etl_conflict_t conflict;
    const char *cursor;         /* for ETL_CONFLICT_NEWER */
    const char *const *keep;    /* sink columns never overwritten (local_only) */
    size_t nkeep;
    const char *soft_delete;    /* column set to now by delete(), or NULL: delete rows */
    int create;                 /* create the table when missing */
    /* The sink's own primary key when the pipeline translates identities
     * (identity: sink_pk), e.g. "local_id": never written, assigned by the
     * sink; a created table gets it as an auto-assigned primary key and a
     * unique key on the schema's key columns. NULL otherwise. */
    const char *assigned_pk;
    /* Soft deletes set `soft_delete` to this text (e.g. "INACTIVE"); NULL:
     * to the time of the delete. A row that comes back gets NULL again. */
    const char *soft_delete_value;
    /* `fallback_key:` the columns that name a record whose key is NULL (the
     * core keys its ledger by them); NULL/0 when not set. A sink that cannot
     * match stored rows by them must refuse the stream in prepare(), or each
     * change of such a record would add a row. */
    const char *const *fallback_key;
    size_t nfallback_key;
} etl_sink_stream_t;

typedef struct etl_sink_ops {
    etl_status_t (*open)(etl_ctx_t *ctx, void **self);
    etl_status_t (*check)(void *self, etl_ctx_t *ctx);
    /* Creates or evolves the table, introspects it; *stream is the plugin's. */
    etl_status_t (*prepare)(void *self, etl_ctx_t *ctx, const etl_sink_stream_t *spec, void **stream);
    etl_status_t (*begin)(void *self, etl_ctx_t *ctx);
    /* Writes every row and fills rows->outcome. ETL_ERR_RETRY: the core rolls
     * back and retries the batch. A row-level failure is etl_rows_fail(). */
    etl_status_t (*write)(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *rows);
    /* Deletes (or soft-deletes) the rows with these keys; rows->schema holds the key columns. */
    etl_status_t (*remove)(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *keys);
    etl_status_t (*commit)(void *self, etl_ctx_t *ctx);
    void (*rollback)(void *self, etl_ctx_t *ctx);
    /* End of a stream: ok=1 after a complete read (replace swaps its staging
     * table in here, in one transaction), ok=0 after a failure. Frees stream. */
    etl_status_t (*finish)(void *self, etl_ctx_t *ctx, void *stream, int ok);
    void (*close)(void *self);
    /* Optional. The database handle the sink writes through, so the core can
     * commit the state store in the same transaction when both are one
     * database: *kind is "sqlite3" (a sqlite3 *) or "libpq" (a PGconn *). */
    void *(*native)(void *self, const char **kind, const char **location);
    /* Optional (identity translation): for each of the n values in `in` of
     * column `by` of `table`, the value of column `want` in the row holding
     * it, or NULL when no row does. out's strings stay valid until the next
     * call on this instance. */
    etl_status_t (*lookup)(void *self, etl_ctx_t *ctx, const char *table, const char *by,
                           const char *want, const etl_value_t *in, size_t n, etl_value_t *out);
    /* Optional (identity translation): sets column `col` to `value` in the
     * row of `table` whose `by` equals `by_value`, committed at once. */
    etl_status_t (*assign)(void *self, etl_ctx_t *ctx, const char *table, const char *by,
                           const etl_value_t *by_value, const char *col,
                           const etl_value_t *value);
    /* Optional (conflict: lua): the rows the sink holds for these keys
     * (keys->schema: the key columns), as rows of the stream's schema in
     * out (keys->nrows x ncols; strings valid until the next call) with
     * found[i] set when row i exists. */
    etl_status_t (*fetch)(void *self, etl_ctx_t *ctx, void *stream, const etl_rows_t *keys,
                          etl_value_t *out, unsigned char *found);
} etl_sink_ops_t;

/* ------------------------------------------------------------ descriptor */

typedef struct etl_plugin {
    uint32_t abi_version; /* ETL_ABI_VERSION */
    uint32_t struct_size; /* sizeof(etl_plugin_t) as the plugin was built */
    const char *name;
    const char *version;
    const char *description;
    const etl_option_def_t *options; /* ends with an entry whose name is NULL */
    const etl_source_ops_t *source;  /* NULL: not a source */
    const etl_sink_ops_t *sink;      /* NULL: not a sink */
} etl_plugin_t;

#define ETL_PLUGIN_ENTRY_SYMBOL "etl_plugin_entry"
typedef const etl_plugin_t *(*etl_plugin_entry_fn)(void);

/* Declares the entry point inside a plugin: ETL_PLUGIN(my_descriptor); */
#define ETL_PLUGIN(desc)                                                       \
    ETL_API const etl_plugin_t *etl_plugin_entry(void);                       \
    ETL_API const etl_plugin_t *etl_plugin_entry(void) { return &(desc); }

#ifdef __cplusplus
}
#endif
#endif
