/*
 * state_internal.h - what the state store's backends share with state.c:
 * the operation table each backend fills, the common head of every store,
 * and small helpers. Not part of any public API.
 *
 * A backend's store struct starts with an etl_state_t, so state.c can reach
 * the head and the backend can cast back to its own type. Each operation has
 * the contract of the public function of the same name in state.h.
 */
#ifndef ETL_CORE_STATE_INTERNAL_H
#define ETL_CORE_STATE_INTERNAL_H

#include "state.h"

typedef struct etl_state_ops {
    const char *kind; /* "sqlite" | "postgres" */
    void (*close)(etl_state_t *st);
    int (*share)(etl_state_t *st, void *db);
    int (*shared)(const etl_state_t *st);

    int (*begin)(etl_state_t *st);
    int (*read_begin)(etl_state_t *st);
    void (*read_end)(etl_state_t *st);
    int (*commit)(etl_state_t *st);
    void (*rollback)(etl_state_t *st);

    int (*stream_id)(etl_state_t *st, const char *pipeline, const char *stream,
                     const char *direction, int64_t *sid);

    int (*run_begin)(etl_state_t *st, const etl_run_info_t *info, int64_t *run_id);
    int (*run_finish)(etl_state_t *st, int64_t run_id, const char *status, const char *error);
    int (*run_abandon)(etl_state_t *st, int64_t run_id, const char *error);
    int (*run_stream_status)(etl_state_t *st, int64_t run_id, const char *stream,
                             const char *direction, const char *status, int64_t duration_ms,
                             const char *error);
    int (*run_log_file)(etl_state_t *st, int64_t run_id, const char *path);
    int (*counts_add)(etl_state_t *st, int64_t run_id, const char *stream, const char *direction,
                      const etl_counts_t *delta);

    int (*checkpoint_get)(etl_state_t *st, const char *pipeline, const char *stream,
                          const char *direction, etl_checkpoint_t *out);
    int (*checkpoint_put)(etl_state_t *st, const char *pipeline, const char *stream,
                          const char *direction, const char *cursor, const char *type,
                          int64_t records, int full);
    int (*resume_put)(etl_state_t *st, const char *pipeline, const char *stream,
                      const char *direction, const char *key, const char *max,
                      const char *max_type, int64_t scan);

    int (*ledger_get)(etl_state_t *st, int64_t sid, const char *key, size_t klen, uint64_t *hash);
    int (*ledger_put)(etl_state_t *st, int64_t sid, const char *key, size_t klen, uint64_t hash,
                      int64_t seen);
    int (*ledger_add)(etl_state_t *st, int64_t sid, const char *key, size_t klen, uint64_t hash,
                      int64_t seen);
    int (*ledger_seen)(etl_state_t *st, int64_t sid, const char *key, size_t klen, int64_t seen);
    int (*ledger_del)(etl_state_t *st, int64_t sid, const char *key, size_t klen);
    int64_t (*ledger_count)(etl_state_t *st, int64_t sid);
    int (*echo_put)(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                    const char *cursor);
    int (*echo_get)(etl_state_t *st, int64_t sid, const char *key, size_t klen, char **cursor);
    int (*ledger_unseen)(etl_state_t *st, int64_t sid, int64_t seen, const char *after,
                         size_t afterlen, int limit,
                         int (*cb)(void *arg, const char *key, size_t klen), void *arg);

    int (*deferred_put)(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                        const char *reason, const char *record_json);
    int (*deferred_del)(etl_state_t *st, int64_t sid, const char *key, size_t klen);
    int64_t (*deferred_count)(etl_state_t *st, int64_t sid);
    int (*deferred_page)(etl_state_t *st, int64_t sid, const char *after, int limit,
                         int (*cb)(void *arg, const char *key, const char *reason,
                                   const char *record_json),
                         void *arg);

    int (*dead_letter)(etl_state_t *st, int64_t run_id, const char *pipeline, const char *stream,
                       const char *direction, const char *key, const char *error,
                       const char *record_json);
    int (*reset)(etl_state_t *st, const char *pipeline, const char *stream);

    int (*kv_get)(etl_state_t *st, const char *scope, const char *key, char **value);
    int (*kv_put)(etl_state_t *st, const char *scope, const char *key, const char *value);

    int (*query)(etl_state_t *st, const char *sql, const char *const *params, size_t nparams,
                 int (*cb)(void *arg, int ncols, const char *const *cols,
                           const char *const *names),
                 void *arg);

    /* schedules and leases (state.h) */
    int (*schedule_ensure)(etl_state_t *st, const char *key, int64_t next_us);
    int (*schedule_set)(etl_state_t *st, const char *key, int64_t next_us);
    int (*lease_claim_due)(etl_state_t *st, const char *const *keys, size_t n, const char *owner,
                           int64_t now_us, int64_t lease_us, etl_lease_t *out);
    int (*lease_claim)(etl_state_t *st, const char *key, const char *owner, int64_t now_us,
                       int64_t lease_us, etl_lease_t *out, char **holder);
    int (*lease_takeover)(etl_state_t *st, const char *key, const char *from_owner,
                          const char *owner, int64_t now_us, int64_t lease_us, etl_lease_t *out);
    int (*lease_renew)(etl_state_t *st, const char *key, const char *owner, int64_t until_us);
    int (*lease_run)(etl_state_t *st, const char *key, const char *owner, int64_t run_id);
    int (*lease_release)(etl_state_t *st, const char *key, const char *owner, int64_t next_us);
    int (*schedule_list)(etl_state_t *st,
                         int (*cb)(void *arg, const char *key, int64_t next_us, const char *owner,
                                   int64_t until_us, int64_t run_id),
                         void *arg);
} etl_state_ops_t;

/* The head every backend's store begins with. */
struct etl_state {
    const etl_state_ops_t *ops;
    char err[ETL_ERRLEN];
};

/* Backends: open the store at what follows the URL's scheme (SQLite: a path)
 * or at the whole URL (PostgreSQL). NULL with err filled on failure. */
etl_state_t *etl_state_sqlite_open(const char *path, char *err, size_t errlen);
etl_state_t *etl_state_pg_open(const char *url, char *err, size_t errlen);
/* SQLite only: the store's file. */
const char *etl_state_sqlite_file(const etl_state_t *st);

/* The current time as the store's text form (ISO 8601 UTC); buf >= 40. */
void etl_state_now_text(char *buf, size_t n);
/* Fills a lease from what a claim read; 0, or -1 when out of memory. */
int etl_state_lease_fill(etl_lease_t *out, const char *key, int64_t due_us, const char *old_owner,
                         int64_t old_run_id);

#endif
