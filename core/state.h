/*
 * state.h - the state store: checkpoints, run history, per-stream counts,
 * the dedup ledger, deferred records, dead letters, plugin key/values and
 * schedules. SQLite by default (`sqlite:/path`); the schema is versioned in
 * etl_meta and migrated on open.
 *
 * Threading: one etl_state_t is used by one thread at a time (the runner's
 * writer). The kv functions are the exception: they run on a connection of
 * their own behind a mutex, so plugins may call them from any thread.
 *
 * Transactions: etl_state_begin/commit wrap a batch's writes. When the sink
 * writes into the same database file, etl_state_share() makes the store
 * issue its statements on the sink's connection inside the sink's
 * transaction, and begin/commit become no-ops: one commit covers both.
 *
 * `pipeline` below is the pipeline's state key: its name, or
 * "name@client" for a matrix client.
 */
#ifndef ETL_CORE_STATE_H
#define ETL_CORE_STATE_H

#include <stddef.h>

#ifndef ETL_API
#define ETL_API __attribute__((visibility("default")))
#endif
#include <stdint.h>

#include "util.h"

typedef struct etl_state etl_state_t;

#define ETL_STATE_SCHEMA_VERSION 4

typedef struct etl_counts {
    int64_t read, created, updated, unchanged, deleted, deferred, failed;
} etl_counts_t;

typedef struct etl_checkpoint {
    char *cursor; /* text form, NULL when none */
    char *type;   /* etl_type_name of the cursor value */
    char *last_sync_time;
    char *last_record_time;
    int64_t records_synced;
    int is_full_sync;
    /* an interrupted full scan in key order: where it resumes */
    char *resume_key;      /* key text of the last row committed, NULL: none */
    char *resume_max;      /* the first part's greatest cursor (text) */
    char *resume_max_type;
    int64_t resume_scan;   /* the run that started the scan (its seen marks) */
} etl_checkpoint_t;

typedef struct etl_run_info {
    const char *pipeline; /* name */
    const char *client;   /* or NULL */
    const char *mode;
    const char *direction;
    const char *triggered_by; /* "cli", "schedule", "api" */
    const char *log_file;
} etl_run_info_t;

/* Opens (creating and migrating) the store at url. */
ETL_API etl_state_t *etl_state_open(const char *url, char *err, size_t errlen);
ETL_API void etl_state_close(etl_state_t *st);
/* The SQLite file of the store (absolute), for same-database detection. */
const char *etl_state_file(const etl_state_t *st);
ETL_API const char *etl_state_error(const etl_state_t *st);

/* Runs the store's statements on the sink's sqlite3 connection (NULL: back
 * to its own). Returns 0, or -1 when the handle cannot be used. */
int etl_state_share(etl_state_t *st, void *sqlite3_db);
int etl_state_shared(const etl_state_t *st);

int etl_state_begin(etl_state_t *st);
/* A read transaction around a batch's ledger lookups (none may be open). */
int etl_state_read_begin(etl_state_t *st);
void etl_state_read_end(etl_state_t *st);
int etl_state_commit(etl_state_t *st);
void etl_state_rollback(etl_state_t *st);

/* A stable integer id for (pipeline, stream, direction), created on demand. */
int etl_state_stream_id(etl_state_t *st, const char *pipeline, const char *stream,
                        const char *direction, int64_t *sid);

/* Runs. */
int etl_state_run_begin(etl_state_t *st, const etl_run_info_t *info, int64_t *run_id);
int etl_state_run_finish(etl_state_t *st, int64_t run_id, const char *status, const char *error);
int etl_state_run_stream(etl_state_t *st, int64_t run_id, const char *stream,
                         const char *direction, const char *status, const etl_counts_t *c,
                         int64_t duration_ms, const char *error);
int etl_state_run_log_file(etl_state_t *st, int64_t run_id, const char *path);

/* Checkpoints. get: fields NULL/0 when there is none. */
int etl_state_checkpoint_get(etl_state_t *st, const char *pipeline, const char *stream,
                             const char *direction, etl_checkpoint_t *out);
void etl_checkpoint_clear(etl_checkpoint_t *c);
/* Inside a transaction: moves the cursor (never backwards is the caller's
 * rule), adds to records_synced. */
int etl_state_checkpoint_put(etl_state_t *st, const char *pipeline, const char *stream,
                             const char *direction, const char *cursor, const char *type,
                             int64_t records, int full);

/* Inside a transaction: records where a full scan in key order stands
 * (key NULL: the scan is over, the point is cleared). */
int etl_state_resume_put(etl_state_t *st, const char *pipeline, const char *stream,
                         const char *direction, const char *key, const char *max,
                         const char *max_type, int64_t scan);

/* Ledger: content hash per key. get returns 1 found, 0 absent, -1 error. */
int etl_state_ledger_get(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t *hash);
int etl_state_ledger_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen);
/* The same for a key believed new: faster, and correct either way. */
int etl_state_ledger_add(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen);
int etl_state_ledger_seen(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                          int64_t seen);
int etl_state_ledger_del(etl_state_t *st, int64_t sid, const char *key, size_t klen);
int64_t etl_state_ledger_count(etl_state_t *st, int64_t sid);
/* Echo marks: the other direction just wrote `key` with this cursor text
 * (hash 0 in the ledger). get: 1 with *cursor malloc'd when the key carries
 * a mark, 0 when not, -1 on error. A ledger_put clears the mark. */
int etl_state_echo_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                       const char *cursor);
int etl_state_echo_get(etl_state_t *st, int64_t sid, const char *key, size_t klen, char **cursor);

/* Keys not seen in run `seen` (full-scan delete detection), in key order,
 * after `after` (NULL: from the start), at most `limit`: calls cb for each.
 * Returns how many, or -1. Runs on the store's own connection. */
int etl_state_ledger_unseen(etl_state_t *st, int64_t sid, int64_t seen, const char *after,
                            size_t afterlen, int limit,
                            int (*cb)(void *arg, const char *key, size_t klen), void *arg);

/* Deferred records (parent missing). */
int etl_state_deferred_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                           const char *reason, const char *record_json);
int etl_state_deferred_del(etl_state_t *st, int64_t sid, const char *key, size_t klen);
int64_t etl_state_deferred_count(etl_state_t *st, int64_t sid);
/* Deferred records of the stream in key order after `after` (NULL: from
 * the start), at most `limit`. Returns how many, or -1. */
int etl_state_deferred_page(etl_state_t *st, int64_t sid, const char *after, int limit,
                            int (*cb)(void *arg, const char *key, const char *reason,
                                      const char *record_json),
                            void *arg);

int etl_state_dead_letter(etl_state_t *st, int64_t run_id, const char *pipeline,
                          const char *stream, const char *direction, const char *key,
                          const char *error, const char *record_json);

/* Adds to a run's per-stream counts (inside the batch transaction). */
int etl_state_counts_add(etl_state_t *st, int64_t run_id, const char *stream,
                         const char *direction, const etl_counts_t *delta);

/* Removes checkpoints, ledger and deferred records of a pipeline (or of one
 * stream of it). Run history and dead letters stay. */
ETL_API int etl_state_reset(etl_state_t *st, const char *pipeline, const char *stream);

/* Plugin key/value space; scope is "<plugin>@<pipeline>". */
int etl_state_kv_get(etl_state_t *st, const char *scope, const char *key, char **value);
int etl_state_kv_put(etl_state_t *st, const char *scope, const char *key, const char *value);

/* A read-only query for reports (`etl status`): calls cb per row with
 * column values as text (NULL for SQL NULL). Parameters bind as text. */
ETL_API int etl_state_query(etl_state_t *st, const char *sql, const char *const *params, size_t nparams,
                    int (*cb)(void *arg, int ncols, const char *const *cols,
                              const char *const *names),
                    void *arg);

#endif
