/*
 * hooks.h - Lua 5.4 hooks, embedded and sandboxed.
 *
 * One etl_lua_t is one Lua state for one pipeline run. It is not thread
 * safe: the runner uses it from one thread at a time (transforms in the
 * reader thread, before_run/after_run in the main thread, never at once).
 *
 * Records cross into Lua as tables keyed by column name: NULL is nil, bool
 * a boolean, int an integer, double a float, numeric/text/blob/json a
 * string, timestamp an ISO 8601 UTC string ("2024-05-01T10:00:00Z", with
 * ".ffffff" when it has microseconds). On the way back each field is
 * converted to its column's type (a string into a timestamp column is
 * parsed, a number into a text column is formatted, a table into a json
 * column is encoded); a field that is not a column of the target stream, or
 * a value that cannot become the column's type, is an error naming the
 * stream and the field.
 *
 * The sandbox: base functions without dofile/loadfile/collectgarbage and
 * with load() restricted to text chunks in the sandbox; string, table, math,
 * utf8; os.time, os.date, os.clock only; no io, no debug, no package;
 * require(name) loads only "<lua_dir>/<name>.lua" (name made of letters,
 * digits, '_' and '.' as a folder separator, no ".."). Every call into Lua
 * runs under an instruction budget (a count hook) and the state under a
 * memory cap (the allocator refuses past it); both end the call with an
 * error, never the process.
 */
#ifndef ETL_CORE_HOOKS_H
#define ETL_CORE_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "etl/etl.h"
#include "util.h"

typedef struct etl_lua etl_lua_t;

typedef struct etl_lua_env {
    const char *lua_dir;   /* require() root; NULL disables require */
    uint64_t instructions; /* budget per call; 0 = 10,000,000 */
    size_t memory;         /* heap cap in bytes; 0 = 64 MiB */
    const char *pipeline;
    const char *client;    /* or NULL */
    /* ctx:log(msg) and print(...) go here (level is an etl_level_t). */
    void (*log)(void *arg, int level, const char *msg);
    void *log_arg;
} etl_lua_env_t;

/* How results leave a call. */
typedef struct etl_lua_io {
    /* Receives each output row, aligned to schema(stream). stream is NULL for
     * the stream being transformed, or the target of ctx:emit(). The row's
     * memory is valid only during the call. Non-zero aborts the hook call
     * with that error. */
    int (*out)(void *arg, const char *stream, const etl_value_t *row);
    /* The schema of a stream by name (NULL: the current one); NULL when there
     * is no such stream, which makes ctx:emit() raise an error. */
    const etl_schema_t *(*schema)(void *arg, const char *stream);
    void *arg;
} etl_lua_io_t;

/* What ctx holds for the current run. */
typedef struct etl_lua_run {
    int64_t run_id;
    const char *mode;      /* "incremental" | "full" */
    const char *direction; /* "forward" | "reverse" */
} etl_lua_run_t;

/* Per-stream counts handed to after_run(ctx, stats). */
typedef struct etl_lua_stat {
    const char *stream;
    int64_t read, created, updated, unchanged, deleted, deferred, failed;
} etl_lua_stat_t;

etl_lua_t *etl_lua_new(const etl_lua_env_t *env, char *err, size_t errlen);
void etl_lua_free(etl_lua_t *L);

void etl_lua_set_run(etl_lua_t *L, const etl_lua_run_t *run);

/* Loads the pipeline's hooks file: it must return a table of functions. */
int etl_lua_load_hooks(etl_lua_t *L, const char *file, char *err, size_t errlen);

/*
 * Compiles a stream's transform (what="transform") or conflict resolver
 * (what="resolve") into *ref (> 0). ETL_XF_FILE: the file returns a function,
 * or a table holding one under `what`. ETL_XF_FUNCTION: a function of that
 * name in the hooks table. ETL_XF_INLINE: the text is the body of
 * function(rec, ctx) (resolve: function(incoming, existing, ctx)).
 * Returns 0, or -1 with err set ("stream orders: transform: ...").
 */
int etl_lua_compile(etl_lua_t *L, const etl_transform_cfg_t *cfg, const char *stream,
                    const char *what, int *ref, char *err, size_t errlen);

/*
 * Runs transform(rec, ctx) for one row of `stream`. The result: a table is
 * one record, nil drops it, a list (a table whose [1] is a table) fans out;
 * each output goes to io->out(arg, NULL, row). ctx:emit(name, rec) sends to
 * io->out(arg, name, row). Returns 0, or -1 with the message and a Lua
 * traceback appended to err.
 */
int etl_lua_transform(etl_lua_t *L, int ref, const char *stream, const etl_schema_t *schema,
                      const etl_value_t *row, const etl_lua_io_t *io, etl_buf_t *err);

/*
 * Runs resolve(incoming, existing, ctx): a table is the row to write (sent to
 * io->out with stream NULL), nil keeps the existing row. *keep is set to 1
 * when the existing row is kept. Returns 0 or -1 (err).
 */
int etl_lua_resolve(etl_lua_t *L, int ref, const char *stream, const etl_schema_t *schema,
                    const etl_value_t *incoming, const etl_value_t *existing,
                    const etl_lua_io_t *io, int *keep, etl_buf_t *err);

/* The hooks table's before_run(ctx) / after_run(ctx, stats), if defined
 * (a missing function is not an error). stats is a table keyed by stream
 * name: {read=, created=, updated=, unchanged=, deleted=, deferred=, failed=}. */
int etl_lua_before_run(etl_lua_t *L, etl_buf_t *err);
int etl_lua_after_run(etl_lua_t *L, const etl_lua_stat_t *stats, size_t n, const char *status,
                      etl_buf_t *err);

#endif
