/*
 * config.h - the pipeline DSL (version 1): loading a YAML file into a fully
 * resolved, validated etl_pipeline_t.
 *
 * Loading checks every key before anything runs. The first problem found is
 * reported as "FILE:LINE:COL: message (expected ...)" (lines and columns are
 * 1-based) and the loader returns ETL_CFG_INVALID. After a successful load:
 *   - `defaults:` and the built-in defaults are applied to every stream, so a
 *     stream's settings are final (see the DSL reference for each default);
 *   - ${VAR}, ${VAR:-default}, ${file:path} and ${matrix.KEY} are expanded;
 *   - relative paths (state, hooks, transform files, log dir) are absolute,
 *     resolved against the pipeline file's folder;
 *   - `order` lists the streams in topological order of their fk graph
 *     (parents first, declaration order among equals).
 * Plugin options are kept as text here; the plugin loader checks them
 * against the plugin's option table (etl_plugin_check_options).
 */
#ifndef ETL_CORE_CONFIG_H
#define ETL_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cron.h"
#include "etl/etl.h"

typedef struct etl_loc {
    int line; /* 1-based; 0 when unknown */
    int col;  /* 1-based */
} etl_loc_t;

/* A `name: value` pair, value as text (rename, select, identity...). */
typedef struct etl_pair {
    char *name;
    char *value;
    etl_loc_t loc; /* of the name */
} etl_pair_t;

typedef struct etl_strlist {
    char **items;
    size_t n;
    etl_loc_t loc;
} etl_strlist_t;

/* One plugin option beside `plugin:`: a scalar or a list. */
typedef struct etl_opt_cfg {
    char *name;
    char *value;       /* scalar text; for a list, the items joined by "," */
    char **items;      /* list items (a scalar is split on ","), n_items >= 1 */
    size_t n_items;
    int is_list;       /* written as a YAML sequence */
    etl_loc_t loc;     /* of the key */
    etl_loc_t vloc;    /* of the value */
} etl_opt_cfg_t;

typedef struct etl_endpoint_cfg {
    char *plugin;
    etl_loc_t loc;        /* of the `plugin:` value */
    etl_loc_t map_loc;    /* of the `source:` / `sink:` mapping */
    etl_opt_cfg_t *opts;  /* every key except `plugin` */
    size_t nopts;
} etl_endpoint_cfg_t;

typedef enum etl_mode { ETL_MODE_INCREMENTAL = 0, ETL_MODE_FULL } etl_mode_t;
typedef enum etl_direction {
    ETL_DIR_FORWARD = 0,
    ETL_DIR_REVERSE,
    ETL_DIR_BOTH
} etl_direction_t;
typedef enum etl_deletes {
    ETL_DELETES_IGNORE = 0,
    ETL_DELETES_SOFT,
    ETL_DELETES_HARD
} etl_deletes_t;
typedef enum etl_transform_kind {
    ETL_XF_NONE = 0,
    ETL_XF_FILE,     /* a .lua file (absolute path in `text`) */
    ETL_XF_FUNCTION, /* a function name in the pipeline's `hooks:` file */
    ETL_XF_INLINE    /* a Lua chunk: the body of function(rec, ctx) */
} etl_transform_kind_t;

typedef struct etl_transform_cfg {
    etl_transform_kind_t kind;
    char *text;
    etl_loc_t loc;
} etl_transform_cfg_t;

typedef struct etl_fk_cfg {
    char *column; /* child column (sink-side name) */
    char *parent; /* parent stream name */
    etl_loc_t loc;
} etl_fk_cfg_t;

typedef struct etl_nest_cfg {
    char *field;   /* the array's name in the parent document */
    char *stream;  /* child stream */
    char *fk;      /* child column holding the parent's key */
    etl_pair_t *rename;
    size_t nrename;
    etl_strlist_t exclude;
    etl_strlist_t local_only;
    char *cursor;  /* NULL: the child stream's own */
    etl_loc_t loc;
} etl_nest_cfg_t;

typedef struct etl_column_cfg {
    char *name;
    etl_type_t type;
    etl_loc_t loc;
} etl_column_cfg_t;

typedef struct etl_stream_cfg {
    char *name;
    etl_loc_t loc;               /* of the stream's mapping */
    char *table;                 /* sink table; default: name */
    etl_strlist_t key;           /* n == 0: from the plugin's discovery */
    etl_strlist_t fallback_key;
    char *cursor;                /* NULL: from defaults or discovery; "" (cursor: none): no cursor */
    etl_mode_t mode;             /* default incremental */
    int64_t overlap;             /* seconds; default 0 */
    int64_t window;              /* seconds; 0 = no window */
    etl_write_mode_t write;      /* default upsert */
    etl_conflict_t conflict;     /* default source */
    etl_deletes_t deletes;       /* default ignore */
    char *deletes_column;        /* soft deletes: the column; default deleted_at */
    char *deletes_value;         /* soft deletes: the value set; NULL = the time of the delete */
    etl_pair_t *rename;          /* source column -> sink column */
    size_t nrename;
    etl_strlist_t local_only;
    etl_strlist_t exclude;
    etl_fk_cfg_t *fk;
    size_t nfk;
    etl_transform_cfg_t transform;
    etl_transform_cfg_t resolve; /* conflict: lua */
    int batch;                   /* default 500 */
    etl_pair_t *select;          /* plugin-specific stream options */
    size_t nselect;
    etl_nest_cfg_t *nest;
    size_t nnest;
    char *timezone;              /* for cursors without a zone; NULL = UTC */
    etl_column_cfg_t *columns;   /* declared columns for a stream fed only by ctx:emit */
    size_t ncolumns;
} etl_stream_cfg_t;

typedef struct etl_identity_cfg {
    char *key;      /* source key column, e.g. id (UUID) */
    char *sink_key; /* where the sink keeps it, e.g. server_id */
    char *sink_pk;  /* the sink's own primary key, e.g. local_id */
    etl_loc_t loc;
} etl_identity_cfg_t;

/* When `etl serve` runs a pipeline: cron (in the server's local time, TZ)
 * or every; never both. */
typedef struct etl_schedule_cfg {
    char *cron;              /* the expression as written (interpolated), or NULL */
    etl_cron_t cron_parsed;  /* cron, parsed; meaningful only when cron != NULL */
    int64_t every;           /* seconds, 0 = none */
    int64_t expires;         /* seconds, 0 = never */
    etl_loc_t loc;
} etl_schedule_cfg_t;

typedef struct etl_pipeline {
    char *file;      /* as given */
    char *dir;       /* absolute folder of the file */
    char *name;
    char *client;    /* matrix client id, or NULL */
    char *state_url; /* "sqlite:/abs/path" or "postgres://..." */
    etl_loc_t state_loc;
    etl_endpoint_cfg_t source;
    etl_endpoint_cfg_t sink;
    etl_direction_t direction;  /* default forward */
    etl_identity_cfg_t identity; /* identity.key == NULL: none */
    etl_stream_cfg_t *streams;
    size_t nstreams;
    size_t *order;   /* nstreams indexes into streams, parents first */
    char *hooks;     /* absolute path of the pipeline's Lua hooks file, or NULL */
    etl_loc_t hooks_loc;
    int max_errors;  /* default 0 */
    char *log_dir;   /* absolute; NULL = no run log files */
    int64_t log_keep; /* seconds; default 30d */
    etl_schedule_cfg_t schedule;
    uint64_t lua_instructions; /* per hook call; default 10,000,000 (lua: {instructions}) */
    size_t lua_memory;         /* bytes; default 64 MiB (lua: {memory: 64}) in MiB */
    /* a matrix client whose own values could not be expanded (an unset
     * ${VAR}): "file:line:col: message". The other clients load and run;
     * this one fails when it runs (etl_run) or is checked (etl_check). */
    char *config_error;
} etl_pipeline_t;

typedef enum etl_cfg_status {
    ETL_CFG_OK = 0,
    ETL_CFG_INVALID, /* the message says where and what */
    ETL_CFG_IO,      /* the file could not be read */
    ETL_CFG_NOMEM
} etl_cfg_status_t;

/* Where ${VAR} values come from; NULL means getenv. */
typedef const char *(*etl_getenv_fn)(const char *name, void *arg);

typedef struct etl_load_opts {
    etl_getenv_fn getenv;
    void *getenv_arg;
    const char *client; /* keep only this matrix client; unknown -> error */
} etl_load_opts_t;

/*
 * Loads `path`. On success *out holds one pipeline per matrix client (one
 * when there is no matrix) and *n their count; free with etl_pipelines_free.
 * On failure err holds "path:line:col: message (expected ...)".
 */
ETL_API etl_cfg_status_t etl_config_load(const char *path, const etl_load_opts_t *opts,
                                 etl_pipeline_t ***out, size_t *n, char *err, size_t errlen);

/* The same from text in memory; `path` names it in messages and anchors
 * relative paths. Used by the fuzzer and the unit tests. */
ETL_API etl_cfg_status_t etl_config_parse(const char *path, const char *text, size_t len,
                                  const etl_load_opts_t *opts, etl_pipeline_t ***out, size_t *n,
                                  char *err, size_t errlen);

ETL_API void etl_pipeline_free(etl_pipeline_t *p);
ETL_API void etl_pipelines_free(etl_pipeline_t **v, size_t n);

/* Index of a stream by name, or -1. */
ETL_API int etl_pipeline_stream(const etl_pipeline_t *p, const char *name);

ETL_API const char *etl_mode_name(etl_mode_t m);
ETL_API const char *etl_direction_name(etl_direction_t d);
ETL_API const char *etl_write_name(etl_write_mode_t w);
ETL_API const char *etl_conflict_name(etl_conflict_t c);
ETL_API const char *etl_deletes_name(etl_deletes_t d);

#endif
