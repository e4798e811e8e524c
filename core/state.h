/*
 * state.h - the state store: checkpoints, run history, per-stream counts,
 * the dedup ledger, deferred records, dead letters, plugin key/values and
 * schedules with their leases. SQLite by default (`sqlite:/path`), or
 * PostgreSQL (`postgres://...`, `postgresql://...`) with the same tables; the
 * schema is versioned in etl_meta and migrated on open.
 *
 * Threading: one etl_state_t is used by one thread at a time (the runner's
 * writer; `etl serve` opens one of its own for scheduling). The kv functions
 * are the exception: they run on a connection of their own behind a mutex,
 * so plugins may call them from any thread.
 *
 * Transactions: etl_state_begin/commit wrap a batch's writes. When the sink
 * writes into the same SQLite file, etl_state_share() makes the store issue
 * its statements on the sink's connection inside the sink's transaction, and
 * begin/commit become no-ops: one commit covers both. On PostgreSQL the
 * statements between begin and commit are pipelined: an error may only show
 * at commit (or at a later call), never silently.
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
#include <stdatomic.h>
#include <stdint.h>

#include "util.h"

typedef struct etl_state etl_state_t;

#define ETL_STATE_SCHEMA_VERSION 5

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

/* The file of a sqlite: state store URL (inside url), NULL for another kind. */
const char *etl_state_url_file(const char *url);
/* Opens (creating and migrating) the store at url: "sqlite:PATH",
 * "sqlite:///ABS", "postgres://..." or "postgresql://..." (libpq's URL: its
 * parameters pass through). A password in the URL is registered as a secret
 * and appears in no message. */
ETL_API etl_state_t *etl_state_open(const char *url, char *err, size_t errlen);
ETL_API void etl_state_close(etl_state_t *st);
/* "sqlite" or "postgres". */
ETL_API const char *etl_state_kind(const etl_state_t *st);
/* The SQLite file of the store (absolute), for same-database detection;
 * NULL for a store that is not a file (PostgreSQL). */
const char *etl_state_file(const etl_state_t *st);
ETL_API const char *etl_state_error(const etl_state_t *st);

/* Runs the store's statements on the sink's sqlite3 connection (NULL: back
 * to its own). Returns 0, or -1 when the handle cannot be used (always for a
 * non-NULL handle on PostgreSQL: the runner then commits the sink first and
 * the state after it). */
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
/* Closes a run whose process stopped without finishing it (status
 * "failed", this error), when it is still "running". 1 closed, 0 it was not
 * running, -1 error. */
int etl_state_run_abandon(etl_state_t *st, int64_t run_id, const char *error);

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

/* Ledger hashes with a meaning: 0 an echo mark (below), 1 a soft-deleted
 * key (its row stays in the sink, so children may still point at it; a
 * full scan does not delete it again). Content hashes avoid both. */
#define ETL_LEDGER_ECHO 0
#define ETL_LEDGER_TOMBSTONE 1

/* Keys not seen in run `seen` (full-scan delete detection; tombstones are
 * left out), in key order,
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

/* Schedules and leases: one row per pipeline state key. A lease says which
 * worker runs the key until when; a worker renews it while the run lasts and
 * releases it at the end. Times are microseconds since the epoch (UTC).
 * Leases hold between processes and machines sharing the store. These calls
 * must not be made between etl_state_begin and etl_state_commit. */
typedef struct etl_lease {
    char *pipeline;      /* the key claimed (malloc'd) */
    int64_t due_us;      /* its next_run_at when claimed, 0: none */
    int64_t lost_run_id; /* the run of an expired lease this claim took over, else 0 */
    char *lost_owner;    /* that lease's owner, else NULL */
} etl_lease_t;
void etl_lease_clear(etl_lease_t *l);
/* Creates the key's row with next_run_at = next_us when it has none; an
 * existing row keeps its time (a row at 0, "not scheduled", as a manual run
 * leaves it, counts as having none and takes next_us). 0, or -1. */
int etl_state_schedule_ensure(etl_state_t *st, const char *key, int64_t next_us);
/* Sets next_run_at (0: not scheduled), creating the row. 0, or -1. */
int etl_state_schedule_set(etl_state_t *st, const char *key, int64_t next_us);
/* Claims the earliest-due key among keys[0..n) with 0 < next_run_at <= now_us
 * whose lease is free or expired (lease_until < now_us): owner, lease_until =
 * now_us + lease_us. 1 claimed (*out filled), 0 nothing due, -1 error.
 * PostgreSQL: one transaction, SELECT ... FOR UPDATE SKIP LOCKED. SQLite:
 * BEGIN IMMEDIATE. */
int etl_state_lease_claim_due(etl_state_t *st, const char *const *keys, size_t n,
                              const char *owner, int64_t now_us, int64_t lease_us,
                              etl_lease_t *out);
/* Claims key now whatever its next_run_at (a manual run; creates the row).
 * 1 claimed, 0 a live lease holds it (*holder = its owner, malloc'd; a live
 * lease of `owner` itself holds it too), -1 error. */
int etl_state_lease_claim(etl_state_t *st, const char *key, const char *owner, int64_t now_us,
                          int64_t lease_us, etl_lease_t *out, char **holder);
/* Takes a live lease over from from_owner (whose process is known to be
 * gone): 1 taken (*out filled, lost_owner = from_owner), 0 the lease is no
 * longer from_owner's, -1 error. */
int etl_state_lease_takeover(etl_state_t *st, const char *key, const char *from_owner,
                             const char *owner, int64_t now_us, int64_t lease_us,
                             etl_lease_t *out);
/* Extends our lease: 1 still ours, 0 lost, -1 error. */
int etl_state_lease_renew(etl_state_t *st, const char *key, const char *owner, int64_t until_us);
/* Records which run holds the lease (so a taker-over can close it), and
 * the owner as that run's `worker` in the run history: 1 recorded, 0 the
 * lease is not ours (nothing recorded), -1 error. */
int etl_state_lease_run(etl_state_t *st, const char *key, const char *owner, int64_t run_id);
/* Releases our lease; next_us >= 0 also sets next_run_at. 1 released, 0 it
 * was not ours any more (next_run_at untouched), -1 error. */
int etl_state_lease_release(etl_state_t *st, const char *key, const char *owner, int64_t next_us);
/* Every schedule row, key order: cb(arg, key, next_run_at_us, owner or NULL,
 * lease_until_us, run_id); a non-zero return stops. 0, or -1. */
int etl_state_schedule_list(etl_state_t *st,
                            int (*cb)(void *arg, const char *key, int64_t next_us,
                                      const char *owner, int64_t until_us, int64_t run_id),
                            void *arg);

/* Holding a pipeline's lease while a run lasts (`etl run`): claims key as
 * "<hostname>:<pid>" for lease_us; a live lease of another owner refuses
 * ("pipeline KEY is already running (lease held by OWNER)"), except one of
 * this host whose process is gone, which is taken over at once (its
 * unfinished run, if the lease names one, is closed as failed). A live lease
 * under this very process's name is its caller's (etl serve): borrowed, not
 * renewed, not released. Otherwise a thread renews the lease every third of
 * lease_us on a connection of its own to url; when the lease turns out to be
 * another worker's it sets *cancel (may be NULL) and etl_lease_hold_lost()
 * turns true. NULL with err filled when not held. */
typedef struct etl_lease_hold etl_lease_hold_t;
etl_lease_hold_t *etl_lease_hold(etl_state_t *st, const char *url, const char *key,
                                 int64_t lease_us, atomic_int *cancel, char *err, size_t errlen);
const char *etl_lease_hold_owner(const etl_lease_hold_t *h);
int etl_lease_hold_lost(etl_lease_hold_t *h);
/* Stops the renewals and releases the lease (next_run_at untouched). NULL ok. */
void etl_lease_hold_release(etl_lease_hold_t *h);
/* "<hostname>:<pid>" of this process (malloc'd). */
char *etl_lease_owner_self(void);

#endif
