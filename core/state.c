/* state.c - the state store's front: opens the backend the URL names and
 * passes each call to it (state_sqlite.c, state_pg.c); helpers both share. */
#define _GNU_SOURCE
#include "state.h"

#include <stdlib.h>
#include <string.h>

#include "etl/record.h"
#include "log.h"
#include "state_internal.h"

const char *etl_state_url_file(const char *url)
{
    if (strncmp(url, "sqlite:", 7) != 0)
        return NULL;
    const char *path = url + 7;
    return strncmp(path, "//", 2) == 0 ? path + 2 : path; /* sqlite:///abs */
}

etl_state_t *etl_state_open(const char *url, char *err, size_t errlen)
{
    const char *file = etl_state_url_file(url);
    if (file)
        return etl_state_sqlite_open(file, err, errlen);
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return etl_state_pg_open(url, err, errlen);
    /* the URL may carry a password of a scheme we do not know */
    char *shown = etl_redact_dup(url);
    etl_errf(err, errlen, "state store '%s': expected sqlite:PATH or postgres://...",
             shown ? shown : "");
    free(shown);
    return NULL;
}

void etl_state_close(etl_state_t *st)
{
    if (st)
        st->ops->close(st);
}

const char *etl_state_kind(const etl_state_t *st) { return st->ops->kind; }

const char *etl_state_file(const etl_state_t *st)
{
    return strcmp(st->ops->kind, "sqlite") == 0 ? etl_state_sqlite_file(st) : NULL;
}

const char *etl_state_error(const etl_state_t *st) { return st->err; }

int etl_state_share(etl_state_t *st, void *db) { return st->ops->share(st, db); }
int etl_state_shared(const etl_state_t *st) { return st->ops->shared(st); }
int etl_state_begin(etl_state_t *st) { return st->ops->begin(st); }
int etl_state_read_begin(etl_state_t *st) { return st->ops->read_begin(st); }
void etl_state_read_end(etl_state_t *st) { st->ops->read_end(st); }
int etl_state_commit(etl_state_t *st) { return st->ops->commit(st); }
void etl_state_rollback(etl_state_t *st) { st->ops->rollback(st); }

int etl_state_stream_id(etl_state_t *st, const char *pipeline, const char *stream,
                        const char *direction, int64_t *sid)
{
    return st->ops->stream_id(st, pipeline, stream, direction, sid);
}

/* ------------------------------------------------------------ runs */

int etl_state_run_begin(etl_state_t *st, const etl_run_info_t *info, int64_t *run_id)
{
    return st->ops->run_begin(st, info, run_id);
}

int etl_state_run_finish(etl_state_t *st, int64_t run_id, const char *status, const char *error)
{
    return st->ops->run_finish(st, run_id, status, error);
}

int etl_state_run_abandon(etl_state_t *st, int64_t run_id, const char *error)
{
    return st->ops->run_abandon(st, run_id, error);
}

int etl_state_run_stream(etl_state_t *st, int64_t run_id, const char *stream,
                         const char *direction, const char *status, const etl_counts_t *c,
                         int64_t duration_ms, const char *error)
{
    /* the row may not exist yet (a stream that failed before its first batch) */
    etl_counts_t zero = {0};
    if (st->ops->counts_add(st, run_id, stream, direction, c ? c : &zero) != 0)
        return -1;
    return st->ops->run_stream_status(st, run_id, stream, direction, status, duration_ms, error);
}

int etl_state_run_log_file(etl_state_t *st, int64_t run_id, const char *path)
{
    return st->ops->run_log_file(st, run_id, path);
}

int etl_state_counts_add(etl_state_t *st, int64_t run_id, const char *stream,
                         const char *direction, const etl_counts_t *delta)
{
    return st->ops->counts_add(st, run_id, stream, direction, delta);
}

/* ------------------------------------------------------------ checkpoints */

int etl_state_checkpoint_get(etl_state_t *st, const char *pipeline, const char *stream,
                             const char *direction, etl_checkpoint_t *out)
{
    memset(out, 0, sizeof *out);
    return st->ops->checkpoint_get(st, pipeline, stream, direction, out);
}

void etl_checkpoint_clear(etl_checkpoint_t *c)
{
    free(c->resume_key);
    free(c->resume_max);
    free(c->resume_max_type);
    free(c->cursor);
    free(c->type);
    free(c->last_sync_time);
    free(c->last_record_time);
    memset(c, 0, sizeof *c);
}

int etl_state_checkpoint_put(etl_state_t *st, const char *pipeline, const char *stream,
                             const char *direction, const char *cursor, const char *type,
                             int64_t records, int full)
{
    return st->ops->checkpoint_put(st, pipeline, stream, direction, cursor, type, records, full);
}

int etl_state_resume_put(etl_state_t *st, const char *pipeline, const char *stream,
                         const char *direction, const char *key, const char *max,
                         const char *max_type, int64_t scan)
{
    return st->ops->resume_put(st, pipeline, stream, direction, key, max, max_type, scan);
}

/* ------------------------------------------------------------ ledger */

int etl_state_ledger_get(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t *hash)
{
    return st->ops->ledger_get(st, sid, key, klen, hash);
}

int etl_state_ledger_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen)
{
    return st->ops->ledger_put(st, sid, key, klen, hash, seen);
}

int etl_state_ledger_add(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen)
{
    return st->ops->ledger_add(st, sid, key, klen, hash, seen);
}

int etl_state_ledger_seen(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                          int64_t seen)
{
    return st->ops->ledger_seen(st, sid, key, klen, seen);
}

int etl_state_ledger_del(etl_state_t *st, int64_t sid, const char *key, size_t klen)
{
    return st->ops->ledger_del(st, sid, key, klen);
}

int64_t etl_state_ledger_count(etl_state_t *st, int64_t sid)
{
    return st->ops->ledger_count(st, sid);
}

int etl_state_echo_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                       const char *cursor)
{
    return st->ops->echo_put(st, sid, key, klen, cursor);
}

int etl_state_echo_get(etl_state_t *st, int64_t sid, const char *key, size_t klen, char **cursor)
{
    *cursor = NULL;
    return st->ops->echo_get(st, sid, key, klen, cursor);
}

int etl_state_ledger_unseen(etl_state_t *st, int64_t sid, int64_t seen, const char *after,
                            size_t afterlen, int limit, int (*cb)(void *, const char *, size_t),
                            void *arg)
{
    return st->ops->ledger_unseen(st, sid, seen, after, afterlen, limit, cb, arg);
}

/* ------------------------------------------------------------ deferred, dead letters */

int etl_state_deferred_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                           const char *reason, const char *record_json)
{
    return st->ops->deferred_put(st, sid, key, klen, reason, record_json);
}

int etl_state_deferred_del(etl_state_t *st, int64_t sid, const char *key, size_t klen)
{
    return st->ops->deferred_del(st, sid, key, klen);
}

int64_t etl_state_deferred_count(etl_state_t *st, int64_t sid)
{
    return st->ops->deferred_count(st, sid);
}

int etl_state_deferred_page(etl_state_t *st, int64_t sid, const char *after, int limit,
                            int (*cb)(void *, const char *, const char *, const char *), void *arg)
{
    return st->ops->deferred_page(st, sid, after, limit, cb, arg);
}

int etl_state_dead_letter(etl_state_t *st, int64_t run_id, const char *pipeline,
                          const char *stream, const char *direction, const char *key,
                          const char *error, const char *record_json)
{
    return st->ops->dead_letter(st, run_id, pipeline, stream, direction, key, error, record_json);
}

int etl_state_reset(etl_state_t *st, const char *pipeline, const char *stream)
{
    return st->ops->reset(st, pipeline, stream);
}

/* ------------------------------------------------------------ kv, reports */

int etl_state_kv_get(etl_state_t *st, const char *scope, const char *key, char **value)
{
    *value = NULL;
    return st->ops->kv_get(st, scope, key, value);
}

int etl_state_kv_put(etl_state_t *st, const char *scope, const char *key, const char *value)
{
    return st->ops->kv_put(st, scope, key, value);
}

int etl_state_query(etl_state_t *st, const char *sql, const char *const *params, size_t nparams,
                    int (*cb)(void *, int, const char *const *, const char *const *), void *arg)
{
    return st->ops->query(st, sql, params, nparams, cb, arg);
}

/* ------------------------------------------------------------ schedules and leases */

void etl_lease_clear(etl_lease_t *l)
{
    if (!l)
        return;
    free(l->pipeline);
    free(l->lost_owner);
    memset(l, 0, sizeof *l);
}

int etl_state_lease_fill(etl_lease_t *out, const char *key, int64_t due_us, const char *old_owner,
                         int64_t old_run_id)
{
    memset(out, 0, sizeof *out);
    out->pipeline = etl_strdup(key);
    out->due_us = due_us;
    /* a lease that was still held by someone (expired, or taken over) */
    if (old_owner) {
        out->lost_owner = etl_strdup(old_owner);
        out->lost_run_id = old_run_id;
    }
    if (!out->pipeline || (old_owner && !out->lost_owner)) {
        etl_lease_clear(out);
        return -1;
    }
    return 0;
}

/* An empty owner could not be told from "no lease"; an empty key names no
 * pipeline. */
static int check_args(etl_state_t *st, const char *key, const char *owner)
{
    if ((key && !*key) || (owner && !*owner)) {
        etl_errf(st->err, sizeof st->err, "state store: empty schedule key or lease owner");
        return -1;
    }
    return 0;
}

int etl_state_schedule_ensure(etl_state_t *st, const char *key, int64_t next_us)
{
    return check_args(st, key, NULL) ? -1 : st->ops->schedule_ensure(st, key, next_us);
}

int etl_state_schedule_set(etl_state_t *st, const char *key, int64_t next_us)
{
    return check_args(st, key, NULL) ? -1 : st->ops->schedule_set(st, key, next_us);
}

int etl_state_lease_claim_due(etl_state_t *st, const char *const *keys, size_t n,
                              const char *owner, int64_t now_us, int64_t lease_us,
                              etl_lease_t *out)
{
    memset(out, 0, sizeof *out);
    if (check_args(st, NULL, owner))
        return -1;
    if (n == 0)
        return 0;
    return st->ops->lease_claim_due(st, keys, n, owner, now_us, lease_us, out);
}

int etl_state_lease_claim(etl_state_t *st, const char *key, const char *owner, int64_t now_us,
                          int64_t lease_us, etl_lease_t *out, char **holder)
{
    memset(out, 0, sizeof *out);
    if (holder)
        *holder = NULL;
    if (check_args(st, key, owner))
        return -1;
    return st->ops->lease_claim(st, key, owner, now_us, lease_us, out, holder);
}

int etl_state_lease_takeover(etl_state_t *st, const char *key, const char *from_owner,
                             const char *owner, int64_t now_us, int64_t lease_us,
                             etl_lease_t *out)
{
    memset(out, 0, sizeof *out);
    if (check_args(st, key, owner) || check_args(st, NULL, from_owner))
        return -1;
    return st->ops->lease_takeover(st, key, from_owner, owner, now_us, lease_us, out);
}

int etl_state_lease_renew(etl_state_t *st, const char *key, const char *owner, int64_t until_us)
{
    return check_args(st, key, owner) ? -1 : st->ops->lease_renew(st, key, owner, until_us);
}

int etl_state_lease_run(etl_state_t *st, const char *key, const char *owner, int64_t run_id)
{
    return check_args(st, key, owner) ? -1 : st->ops->lease_run(st, key, owner, run_id);
}

int etl_state_lease_release(etl_state_t *st, const char *key, const char *owner, int64_t next_us)
{
    return check_args(st, key, owner) ? -1 : st->ops->lease_release(st, key, owner, next_us);
}

int etl_state_schedule_list(etl_state_t *st,
                            int (*cb)(void *, const char *, int64_t, const char *, int64_t,
                                      int64_t),
                            void *arg)
{
    return st->ops->schedule_list(st, cb, arg);
}

/* ------------------------------------------------------------ helpers */

void etl_state_now_text(char *buf, size_t n) { etl_ts_format(etl_now_us(), buf, n); }
