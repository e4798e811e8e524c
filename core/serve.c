/*
 * serve.c - `etl serve`: loads the pipeline files, keeps one schedule row
 * per pipeline (or matrix client) in its state store, claims due runs with
 * a lease, runs them on a pool of worker threads, renews the leases while
 * they run and releases them with the next run time when they end.
 *
 * Why leases: several `etl serve` processes may share one state store. The
 * lease is what makes "never two runs of one pipeline at once" true across
 * them, and a lease that stops being renewed (its worker died) lets another
 * worker take the run over from the last checkpoint.
 *
 * Threads: the caller's thread is the scheduler; `workers` threads run
 * etl_run(); the admin server has its own. Every lease call is made under
 * sv->mu on the store's scheduler handle, so the scheduler and a manual
 * trigger never race for the same pipeline inside one process.
 */
#define _GNU_SOURCE
#include "serve_internal.h"

#include <errno.h>
#include <glob.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "schedule.h"

#define US 1000000LL

void sv_time_text(int64_t us, char *buf, size_t n)
{
    if (us <= 0) {
        if (n)
            buf[0] = '\0';
        return;
    }
    etl_ts_format(us, buf, n);
}

/* ---- files, pipes and stores -------------------------------------------- */

static void file_unref(sv_file_t *f)
{
    if (f && --f->refs == 0) {
        etl_pipelines_free(f->p, f->n);
        free(f->path);
        free(f);
    }
}

static sv_file_t *file_load(etl_serve_t *sv, const char *path, char *err, size_t errlen)
{
    etl_load_opts_t lo = {0};
    etl_pipeline_t **ps;
    size_t n;
    if (etl_config_load(path, &lo, &ps, &n, err, errlen) != ETL_CFG_OK) {
        char *clean = etl_redact_dup(err);
        if (clean) {
            etl_strlcpy(err, clean, errlen);
            free(clean);
        }
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        etl_pipeline_t *p = ps[i];
        if (sv->o->state_url) {
            free(p->state_url);
            p->state_url = etl_strdup(sv->o->state_url);
        }
        /* the admin API serves run logs: a run under serve always keeps one */
        if (!p->log_dir)
            p->log_dir = etl_asprintf("%s/.etl/logs", p->dir);
        if (!p->state_url || !p->log_dir) {
            etl_pipelines_free(ps, n);
            etl_errf(err, errlen, "out of memory");
            return NULL;
        }
    }
    sv_file_t *f = calloc(1, sizeof *f);
    if (!f || !(f->path = etl_strdup(path))) {
        free(f);
        etl_pipelines_free(ps, n);
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    f->p = ps;
    f->n = n;
    f->refs = 1;
    return f;
}

/* The index of the store at url, opening it when new; -1 on failure. */
static long store_index(etl_serve_t *sv, const char *url, char *err, size_t errlen)
{
    for (size_t i = 0; i < sv->nstores; i++)
        if (strcmp(sv->stores[i].url, url) == 0)
            return (long)i;
    /* a fixed table: the admin thread reads it without the lock */
    if (sv->nstores == SV_MAX_STORES) {
        etl_errf(err, errlen, "more than %d different state stores", SV_MAX_STORES);
        return -1;
    }
    sv_store_t *s = &sv->stores[sv->nstores];
    memset(s, 0, sizeof *s);
    if (!(s->sched = etl_state_open(url, err, errlen)))
        return -1;
    if (!(s->api = etl_state_open(url, err, errlen))) {
        etl_state_close(s->sched);
        return -1;
    }
    s->url = etl_strdup(url);
    pthread_mutex_init(&s->api_mu, NULL);
    return (long)sv->nstores++;
}

static void pipes_free(sv_pipe_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].key);
    free(v);
}

/* Builds the pipe table of `files`; keys must be unique across files.
 * Returns 0, or -1 with err naming the clash. */
static int pipes_build(etl_serve_t *sv, sv_file_t **files, size_t nfiles, sv_pipe_t **out,
                       size_t *nout, char *err, size_t errlen)
{
    size_t total = 0;
    for (size_t i = 0; i < nfiles; i++)
        total += files[i]->n;
    sv_pipe_t *v = calloc(total ? total : 1, sizeof *v);
    if (!v) {
        etl_errf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < nfiles; i++) {
        for (size_t j = 0; j < files[i]->n; j++) {
            etl_pipeline_t *p = files[i]->p[j];
            char *key = etl_pipeline_key(p);
            long si = key ? store_index(sv, p->state_url, err, errlen) : -1;
            if (!key || si < 0) {
                if (!key)
                    etl_errf(err, errlen, "out of memory");
                free(key);
                pipes_free(v, k);
                return -1;
            }
            for (size_t m = 0; m < k; m++) {
                if (strcmp(v[m].key, key) == 0) {
                    etl_errf(err, errlen, "pipeline %s is defined twice: in %s and in %s", key,
                             v[m].file->path, files[i]->path);
                    free(key);
                    pipes_free(v, k);
                    return -1;
                }
            }
            v[k].key = key;
            v[k].p = p;
            v[k].file = files[i];
            v[k].store = (size_t)si;
            k++;
        }
    }
    *out = v;
    *nout = k;
    return 0;
}

sv_pipe_t *sv_find_pipe(etl_serve_t *sv, const char *key)
{
    for (size_t i = 0; i < sv->npipes; i++)
        if (strcmp(sv->pipes[i].key, key) == 0)
            return &sv->pipes[i];
    return NULL;
}

int sv_name_known(etl_serve_t *sv, const char *name)
{
    for (size_t i = 0; i < sv->npipes; i++)
        if (strcmp(sv->pipes[i].p->name, name) == 0)
            return 1;
    return 0;
}

/* Makes sure every scheduled pipe has its row; a changed schedule (after a
 * reload) starts again from now. `old` may be NULL. sv->mu held. */
static void schedules_ensure(etl_serve_t *sv, const sv_pipe_t *old, size_t nold)
{
    int64_t now = etl_now_us();
    for (size_t i = 0; i < sv->npipes; i++) {
        sv_pipe_t *pp = &sv->pipes[i];
        const etl_schedule_cfg_t *s = &pp->p->schedule;
        const sv_pipe_t *was = NULL;
        for (size_t j = 0; j < nold; j++)
            if (strcmp(old[j].key, pp->key) == 0)
                was = &old[j];
        etl_state_t *st = sv->stores[pp->store].sched;
        int rc = 0;
        if (was && !etl_sched_same(&was->p->schedule, s))
            rc = etl_state_schedule_set(st, pp->key, etl_sched_first(s, now));
        else if (etl_sched_has(s))
            rc = etl_state_schedule_ensure(st, pp->key, etl_sched_first(s, now));
        if (rc != 0)
            etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL, "%s: cannot record its schedule: %s",
                     pp->key, etl_state_error(st));
    }
}

/* ---- jobs --------------------------------------------------------------- */

static sv_job_t *job_new(etl_serve_t *sv, sv_pipe_t *pp)
{
    sv_job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->key = etl_strdup(pp->key))) {
        free(j);
        return NULL;
    }
    j->sv = sv;
    j->p = pp->p;
    j->file = pp->file;
    j->file->refs++;
    j->store = pp->store;
    j->direction = -1;
    j->renewed_us = etl_mono_us();
    atomic_init(&j->cancel, 0);
    pp->job = j;
    /* append: the pool takes the oldest queued job first */
    sv_job_t **tail = &sv->jobs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = j;
    return j;
}

static void job_free(sv_job_t *j)
{
    file_unref(j->file);
    etl_run_result_free(&j->res);
    free(j->streams);
    free(j->key);
    free(j);
}

/* etl_run calls this once the run has its id: a trigger waiting to answer
 * with it wakes up. */
static void on_run_start(void *arg, int64_t run_id)
{
    sv_job_t *j = arg;
    etl_serve_t *sv = j->sv;
    pthread_mutex_lock(&sv->mu);
    j->run_id = run_id;
    j->started = 1;
    /* the lease names its run: a worker taking over can close it */
    if (run_id && !j->lease_lost)
        etl_state_lease_run(sv->stores[j->store].sched, j->key, sv->worker_id, run_id);
    pthread_cond_broadcast(&sv->started);
    pthread_mutex_unlock(&sv->mu);
}

static void *worker_main(void *arg)
{
    etl_serve_t *sv = arg;
    pthread_mutex_lock(&sv->mu);
    for (;;) {
        sv_job_t *j = NULL;
        for (sv_job_t *x = sv->jobs; x && !j; x = x->next)
            if (x->state == JOB_QUEUED)
                j = x;
        if (!j) {
            if (sv->stopping)
                break;
            pthread_cond_wait(&sv->work, &sv->mu);
            continue;
        }
        j->state = JOB_RUNNING;
        j->t0 = etl_mono_us();
        sv->busy++;
        pthread_mutex_unlock(&sv->mu);

        etl_run_opts_t ro = {0};
        ro.full = j->full;
        ro.streams = j->streams;
        ro.direction = j->direction;
        ro.triggered_by = j->manual ? "api" : "schedule";
        ro.cancel = &j->cancel;
        ro.on_start = on_run_start;
        ro.on_start_arg = j;
        ro.lease_owner = sv->worker_id; /* held since the claim: etl_run takes none */
        int rc = etl_run(j->p, &ro, &j->res);

        pthread_mutex_lock(&sv->mu);
        j->rc = rc;
        j->run_id = j->res.run_id;
        j->started = 1;
        j->state = JOB_DONE;
        /* counted as the job stops running, so /metrics never shows a run
         * that is neither running nor counted */
        sv_metrics_run(sv->metrics, j->key, &j->res, (double)(etl_mono_us() - j->t0) / 1e6);
        sv->busy--;
        pthread_cond_broadcast(&sv->started);
        pthread_cond_signal(&sv->wake);
    }
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

/* ---- the scheduler's steps ---------------------------------------------- */

static int jobs_active(etl_serve_t *sv)
{
    int n = 0;
    for (sv_job_t *j = sv->jobs; j; j = j->next)
        n += j->state != JOB_DONE;
    return n;
}

/* Where the schedule stands after job j: the time to write back, or -1 to
 * leave it (the run did not happen and stays due). */
static int64_t next_after(const sv_job_t *j, int64_t now)
{
    if (j->manual)
        return j->saved_next;
    if (j->rc != ETL_EXIT_CONFIG && j->res.status && strcmp(j->res.status, "cancelled") == 0)
        return -1;
    return etl_sched_next(&j->p->schedule, j->due_us, now);
}

static void log_done(const sv_job_t *j)
{
    etl_counts_t t = {0};
    for (size_t i = 0; i < j->res.nstreams; i++) {
        const etl_counts_t *c = &j->res.streams[i].counts;
        t.read += c->read;
        t.created += c->created;
        t.updated += c->updated;
        t.unchanged += c->unchanged;
        t.deleted += c->deleted;
        t.deferred += c->deferred;
        t.failed += c->failed;
    }
    const char *status = j->res.status ? j->res.status : "failed";
    etl_level_t lvl = strcmp(status, "ok") == 0 ? ETL_LOG_INFO : ETL_LOG_ERROR;
    etl_logf(NULL, lvl, "serve", NULL,
             "%s: run %lld %s: read %lld, created %lld, updated %lld, unchanged %lld, deleted "
             "%lld, deferred %lld, failed %lld%s%s",
             j->key, (long long)j->run_id, status, (long long)t.read, (long long)t.created,
             (long long)t.updated, (long long)t.unchanged, (long long)t.deleted,
             (long long)t.deferred, (long long)t.failed, j->res.error[0] ? ": " : "",
             j->res.error);
}

/* Finished jobs: write the next run time, release the lease, count.
 * sv->mu held. */
static void reap_locked(etl_serve_t *sv)
{
    int64_t now = etl_now_us();
    for (sv_job_t **pj = &sv->jobs; *pj;) {
        sv_job_t *j = *pj;
        if (j->state != JOB_DONE || j->waiters) {
            pj = &j->next;
            continue;
        }
        *pj = j->next;
        etl_state_t *st = sv->stores[j->store].sched;
        if (!j->lease_lost &&
            etl_state_lease_release(st, j->key, sv->worker_id, next_after(j, now)) < 0)
            etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL, "%s: cannot release its lease: %s",
                     j->key, etl_state_error(st));
        log_done(j);
        sv_pipe_t *pp = sv_find_pipe(sv, j->key);
        if (pp && pp->job == j)
            pp->job = NULL;
        job_free(j);
    }
}

static void reap(etl_serve_t *sv)
{
    pthread_mutex_lock(&sv->mu);
    reap_locked(sv);
    pthread_mutex_unlock(&sv->mu);
}

/* A run that just ended may still be closing its plugins when its client,
 * having seen the run finished, asks for the next one: give it a moment
 * and reap it, rather than answer "already running". Returns the key's pipe
 * afresh (the wait lets a reload replace the table), or NULL. sv->mu held. */
static sv_pipe_t *settle(etl_serve_t *sv, const char *key)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    sv_pipe_t *pp;
    while ((pp = sv_find_pipe(sv, key)) && pp->job && pp->job->state == JOB_RUNNING &&
           pthread_cond_timedwait(&sv->started, &sv->mu, &until) != ETIMEDOUT)
        ;
    if ((pp = sv_find_pipe(sv, key)) && pp->job && pp->job->state == JOB_DONE &&
        !pp->job->waiters)
        reap_locked(sv);
    return sv_find_pipe(sv, key);
}

/* Renews the leases of queued and running jobs a third of the way through;
 * a lease found lost (another worker took the pipeline over) cancels the
 * run here, so the two never both write. */
static void renew(etl_serve_t *sv)
{
    int64_t mono = etl_mono_us(), now = etl_now_us();
    pthread_mutex_lock(&sv->mu);
    for (sv_job_t *j = sv->jobs; j; j = j->next) {
        if (j->state == JOB_DONE || j->lease_lost || mono - j->renewed_us < sv->lease_us / 3)
            continue;
        etl_state_t *st = sv->stores[j->store].sched;
        int rc = etl_state_lease_renew(st, j->key, sv->worker_id, now + sv->lease_us);
        if (rc == 1) {
            j->renewed_us = mono;
        } else if (rc == 0) {
            j->lease_lost = 1;
            atomic_store(&j->cancel, 1);
            etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL,
                     "%s: lost its lease to another worker; stopping run %lld", j->key,
                     (long long)j->run_id);
        } else {
            etl_logf(NULL, ETL_LOG_WARN, "serve", NULL, "%s: cannot renew its lease: %s",
                     j->key, etl_state_error(st));
        }
    }
    pthread_mutex_unlock(&sv->mu);
}

/* A run that was due too long ago: recorded as skipped, not run. */
static void record_skipped(etl_serve_t *sv, sv_pipe_t *pp, int64_t due, int64_t now)
{
    etl_state_t *st = sv->stores[pp->store].sched;
    etl_run_info_t info = {pp->p->name, pp->p->client, "incremental",
                           etl_direction_name(pp->p->direction), "schedule", NULL};
    int64_t run_id = 0;
    char due_text[40], late[32], exp[32];
    sv_time_text(due, due_text, sizeof due_text);
    etl_format_duration((now - due) / US, late, sizeof late);
    etl_format_duration(pp->p->schedule.expires, exp, sizeof exp);
    char *msg = etl_asprintf("due at %s, %s late (expires after %s)", due_text, late, exp);
    if (etl_state_run_begin(st, &info, &run_id) == 0)
        etl_state_run_finish(st, run_id, "skipped", msg);
    etl_logf(NULL, ETL_LOG_WARN, "serve", NULL, "%s: skipped run %lld: %s", pp->key,
             (long long)run_id, msg ? msg : "too late");
    free(msg);
    sv_metrics_skipped(sv->metrics, pp->key);
    etl_state_lease_release(st, pp->key, sv->worker_id,
                            etl_sched_next(&pp->p->schedule, due, now));
}

/* A claimed lease whose previous holder stopped renewing: its run is over. */
static void close_lost_run(etl_serve_t *sv, sv_pipe_t *pp, const etl_lease_t *l)
{
    etl_state_t *st = sv->stores[pp->store].sched;
    char *msg = etl_asprintf("worker %s stopped renewing its lease; %s takes the pipeline over",
                             l->lost_owner ? l->lost_owner : "?", sv->worker_id);
    etl_logf(NULL, ETL_LOG_WARN, "serve", NULL, "%s: run %lld: %s", pp->key,
             (long long)l->lost_run_id, msg ? msg : "taken over");
    /* only a run still "running": one that finished in between keeps its status */
    if (l->lost_run_id > 0)
        etl_state_run_abandon(st, l->lost_run_id, msg ? msg : "taken over");
    free(msg);
}

/* Claims due runs while workers are free. */
static void claim(etl_serve_t *sv)
{
    pthread_mutex_lock(&sv->mu);
    for (size_t s = 0; s < sv->nstores && !sv->stopping; s++) {
        for (;;) {
            if (jobs_active(sv) >= sv->nworkers)
                goto out;
            const char **keys = calloc(sv->npipes + 1, sizeof *keys);
            size_t n = 0;
            for (size_t i = 0; keys && i < sv->npipes; i++) {
                sv_pipe_t *pp = &sv->pipes[i];
                if (pp->store == s && !pp->job && etl_sched_has(&pp->p->schedule))
                    keys[n++] = pp->key;
            }
            etl_lease_t l = {0};
            int64_t now = etl_now_us();
            etl_state_t *st = sv->stores[s].sched;
            int rc = n ? etl_state_lease_claim_due(st, keys, n, sv->worker_id, now,
                                                   sv->lease_us, &l)
                       : 0;
            free(keys);
            if (rc < 0)
                etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL, "cannot claim due runs: %s",
                         etl_state_error(st));
            if (rc != 1)
                break;
            sv_pipe_t *pp = sv_find_pipe(sv, l.pipeline);
            if (!pp) {
                etl_state_lease_release(st, l.pipeline, sv->worker_id, -1);
                etl_lease_clear(&l);
                break;
            }
            if (l.lost_owner || l.lost_run_id)
                close_lost_run(sv, pp, &l);
            if (!l.lost_run_id && etl_sched_expired(&pp->p->schedule, l.due_us, now)) {
                record_skipped(sv, pp, l.due_us, now);
                etl_lease_clear(&l);
                continue;
            }
            sv_job_t *j = job_new(sv, pp);
            if (!j) {
                etl_state_lease_release(st, l.pipeline, sv->worker_id, -1);
                etl_lease_clear(&l);
                break;
            }
            j->due_us = l.due_us;
            etl_lease_clear(&l);
            pthread_cond_signal(&sv->work);
        }
    }
out:
    pthread_mutex_unlock(&sv->mu);
}

/* ---- manual runs ---------------------------------------------------------- */

void sv_started_free(sv_started_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].client);
        free(v[i].error);
    }
    free(v);
}

static int streams_known(const etl_pipeline_t *p, const char *list, char *msg, size_t msglen)
{
    const char *s = list;
    while (s && *s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int found = 0;
        for (size_t i = 0; i < p->nstreams && !found; i++)
            found = strlen(p->streams[i].name) == n && strncmp(p->streams[i].name, s, n) == 0;
        if (!found) {
            etl_errf(msg, msglen, "pipeline %s has no stream '%.*s'", p->name, (int)n, s);
            return 0;
        }
        s = e ? e + 1 : NULL;
    }
    return 1;
}

/* Claims one pipe for a manual run and queues it; sv->mu held. */
static int trigger_one(etl_serve_t *sv, const char *key, const sv_trigger_t *t, sv_job_t **out,
                       char *msg, size_t msglen)
{
    sv_pipe_t *pp = settle(sv, key);
    if (!pp) {
        etl_errf(msg, msglen, "no pipeline '%s' (any more)", key);
        return SV_TRIGGER_UNKNOWN;
    }
    if (pp->job) {
        etl_errf(msg, msglen, "pipeline %s is already running (worker %s, run %lld)", pp->key,
                 sv->worker_id, (long long)pp->job->run_id);
        return SV_TRIGGER_BUSY;
    }
    etl_state_t *st = sv->stores[pp->store].sched;
    etl_lease_t l = {0};
    char *holder = NULL;
    int64_t now = etl_now_us();
    int rc = etl_state_lease_claim(st, pp->key, sv->worker_id, now, sv->lease_us, &l, &holder);
    if (rc == 0) {
        etl_errf(msg, msglen, "pipeline %s is already running (worker %s)", pp->key,
                 holder ? holder : "?");
        free(holder);
        return SV_TRIGGER_BUSY;
    }
    if (rc < 0) {
        etl_errf(msg, msglen, "%s: %s", pp->key, etl_state_error(st));
        return SV_TRIGGER_ERROR;
    }
    if (l.lost_owner || l.lost_run_id)
        close_lost_run(sv, pp, &l);
    /* due now while it runs: if this worker dies, another takes it over */
    int64_t saved = l.due_us;
    etl_lease_clear(&l);
    etl_state_schedule_set(st, pp->key, now);
    sv_job_t *j = job_new(sv, pp);
    if (!j || (t->streams && !(j->streams = etl_strdup(t->streams)))) {
        if (j)
            j->state = JOB_DONE; /* reaped with the lease released */
        etl_errf(msg, msglen, "out of memory");
        return SV_TRIGGER_ERROR;
    }
    j->manual = 1;
    j->saved_next = saved;
    j->full = t->full;
    j->direction = t->direction;
    *out = j;
    return SV_TRIGGER_OK;
}

int sv_trigger(etl_serve_t *sv, const sv_trigger_t *t, sv_started_t **out, size_t *nout,
               char *msg, size_t msglen)
{
    *out = NULL;
    *nout = 0;
    pthread_mutex_lock(&sv->mu);
    int rc = SV_TRIGGER_UNKNOWN;
    sv_job_t **jobs = calloc(sv->npipes + 1, sizeof *jobs);
    char **keys = calloc(sv->npipes + 1, sizeof *keys);
    size_t nj = 0, matched = 0;
    if (!jobs || !keys) {
        rc = SV_TRIGGER_ERROR;
        goto out;
    }
    if (sv->stopping) {
        etl_errf(msg, msglen, "the server is stopping");
        rc = SV_TRIGGER_BUSY;
        goto out;
    }
    etl_errf(msg, msglen, "no pipeline '%s'%s%s", t->name, t->client ? " with client " : "",
             t->client ? t->client : "");
    for (size_t i = 0; i < sv->npipes; i++) {
        sv_pipe_t *pp = &sv->pipes[i];
        int match = strcmp(pp->key, t->name) == 0 ||
                    (strcmp(pp->p->name, t->name) == 0 &&
                     (!t->client || (pp->p->client && strcmp(pp->p->client, t->client) == 0)));
        if (!match)
            continue;
        if (t->streams && !streams_known(pp->p, t->streams, msg, msglen)) {
            rc = SV_TRIGGER_BAD;
            goto out;
        }
        if (!(keys[matched++] = etl_strdup(pp->key))) {
            rc = SV_TRIGGER_ERROR;
            goto out;
        }
    }
    if (!matched)
        goto out;
    /* by key: waiting for a run to settle lets a reload swap the table */
    for (size_t i = 0; i < matched; i++) {
        char one[ETL_ERRLEN];
        int r = trigger_one(sv, keys[i], t, &jobs[nj], one, sizeof one);
        if (r == SV_TRIGGER_OK)
            nj++;
        else
            etl_strlcpy(msg, one, msglen);
        if (r == SV_TRIGGER_ERROR || (r == SV_TRIGGER_BUSY && matched == 1)) {
            rc = r;
            break;
        }
    }
    if (nj == 0) {
        if (rc == SV_TRIGGER_UNKNOWN)
            rc = SV_TRIGGER_BUSY;
        goto out;
    }
    rc = SV_TRIGGER_OK;
    for (size_t i = 0; i < nj; i++)
        jobs[i]->waiters++;
    pthread_cond_broadcast(&sv->work);
    /* wait (briefly) for the runs to get their ids */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < nj; i++)
            pending += (jobs[i]->state == JOB_RUNNING && !jobs[i]->started) ||
                       (jobs[i]->state == JOB_QUEUED && sv->busy < sv->nworkers);
        if (!pending || pthread_cond_timedwait(&sv->started, &sv->mu, &until) == ETIMEDOUT)
            break;
    }
    sv_started_t *v = calloc(nj, sizeof *v);
    for (size_t i = 0; v && i < nj; i++) {
        sv_job_t *j = jobs[i];
        v[i].key = etl_strdup(j->key);
        v[i].client = j->p->client ? etl_strdup(j->p->client) : NULL;
        v[i].run_id = j->run_id;
        if (j->state == JOB_DONE && !j->run_id && j->res.error[0])
            v[i].error = etl_strdup(j->res.error); /* it could not start */
    }
    for (size_t i = 0; i < nj; i++)
        jobs[i]->waiters--;
    pthread_cond_signal(&sv->wake);
    *out = v;
    *nout = v ? nj : 0;
out:
    for (size_t i = 0; keys && i < matched; i++)
        free(keys[i]);
    free(keys);
    free(jobs);
    pthread_mutex_unlock(&sv->mu);
    return rc;
}

int sv_reset(etl_serve_t *sv, const char *key, const char *stream, char *msg, size_t msglen)
{
    pthread_mutex_lock(&sv->mu);
    int rc = SV_TRIGGER_UNKNOWN;
    sv_pipe_t *pp = sv_find_pipe(sv, key);
    if (!pp) {
        etl_errf(msg, msglen, "no pipeline '%s'", key);
        goto out;
    }
    if (stream && etl_pipeline_stream(pp->p, stream) < 0) {
        etl_errf(msg, msglen, "pipeline %s has no stream '%s'", key, stream);
        goto out;
    }
    rc = SV_TRIGGER_BUSY;
    if (!(pp = settle(sv, key))) {
        rc = SV_TRIGGER_UNKNOWN;
        etl_errf(msg, msglen, "no pipeline '%s' (any more)", key);
        goto out;
    }
    if (pp->job) {
        etl_errf(msg, msglen, "pipeline %s is running (run %lld): reset it when it is done",
                 key, (long long)pp->job->run_id);
        goto out;
    }
    /* the lease keeps every worker's runs off the pipeline while it resets */
    etl_state_t *st = sv->stores[pp->store].sched;
    etl_lease_t l = {0};
    char *holder = NULL;
    int c = etl_state_lease_claim(st, key, sv->worker_id, etl_now_us(), sv->lease_us, &l,
                                  &holder);
    etl_lease_clear(&l);
    if (c == 0) {
        etl_errf(msg, msglen, "pipeline %s is running on worker %s: reset it when it is done",
                 key, holder ? holder : "?");
        free(holder);
        goto out;
    }
    rc = SV_TRIGGER_ERROR;
    if (c < 0 || etl_state_reset(st, key, stream) != 0) {
        etl_errf(msg, msglen, "%s: %s", key, etl_state_error(st));
        if (c > 0)
            etl_state_lease_release(st, key, sv->worker_id, -1);
        goto out;
    }
    etl_state_lease_release(st, key, sv->worker_id, -1);
    etl_logf(NULL, ETL_LOG_INFO, "serve", NULL, "%s: checkpoints%s%s reset through the admin API",
             key, stream ? " of stream " : "", stream ? stream : "");
    rc = SV_TRIGGER_OK;
out:
    pthread_mutex_unlock(&sv->mu);
    return rc;
}

/* ---- reload ---------------------------------------------------------------- */

static void paths_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int add_path(char ***v, size_t *n, const char *path)
{
    char **g = realloc(*v, (*n + 1) * sizeof *g);
    if (!g)
        return -1;
    *v = g;
    if (!(g[*n] = etl_strdup(path)))
        return -1;
    (*n)++;
    return 0;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The pipeline files of the command line: files as given, folders as every
 * *.yaml and *.yml in them in name order (read again at each reload, so a
 * file dropped into the folder is picked up by SIGHUP). */
static int expand_paths(const etl_serve_opts_t *o, char ***out, size_t *nout, char *err,
                        size_t errlen)
{
    char **v = NULL;
    size_t n = 0;
    for (size_t i = 0; i < o->nfiles; i++) {
        struct stat stt;
        if (stat(o->files[i], &stt) != 0) {
            etl_errf(err, errlen, "%s: %s", o->files[i], strerror(errno));
            paths_free(v, n);
            return -1;
        }
        if (!S_ISDIR(stt.st_mode)) {
            if (add_path(&v, &n, o->files[i]) != 0)
                goto oom;
            continue;
        }
        size_t first = n;
        static const char *const pats[] = {"%s/*.yaml", "%s/*.yml"};
        for (size_t k = 0; k < 2; k++) {
            char *pat = etl_asprintf(pats[k], o->files[i]);
            glob_t g;
            int rc = pat ? glob(pat, 0, NULL, &g) : GLOB_NOSPACE;
            free(pat);
            for (size_t m = 0; rc == 0 && m < g.gl_pathc; m++)
                if (add_path(&v, &n, g.gl_pathv[m]) != 0)
                    rc = GLOB_NOSPACE;
            if (rc == 0 || rc == GLOB_NOSPACE)
                globfree(&g);
            if (rc == GLOB_NOSPACE)
                goto oom;
        }
        qsort(v + first, n - first, sizeof *v, by_text);
    }
    *out = v;
    *nout = n;
    return 0;
oom:
    paths_free(v, n);
    etl_errf(err, errlen, "out of memory");
    return -1;
}

static void reload(etl_serve_t *sv)
{
    char **paths;
    size_t n;
    char err[2048];
    if (expand_paths(sv->o, &paths, &n, err, sizeof err) != 0) {
        etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL, "reload: %s; keeping the pipelines "
                 "loaded before", err);
        return;
    }
    sv_file_t **files = calloc(n + 1, sizeof *files);
    size_t nf = 0;
    int failed = 0;
    for (size_t i = 0; files && i < n; i++) {
        sv_file_t *f = file_load(sv, paths[i], err, sizeof err);
        if (!f) {
            failed++;
            /* the version loaded before keeps running */
            pthread_mutex_lock(&sv->mu);
            for (size_t k = 0; k < sv->nfiles && !f; k++) {
                if (strcmp(sv->files[k]->path, paths[i]) == 0) {
                    f = sv->files[k];
                    f->refs++;
                }
            }
            pthread_mutex_unlock(&sv->mu);
            etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL, "reload: %s; %s", err,
                     f ? "keeping the version loaded before" : "not loaded");
        }
        if (f)
            files[nf++] = f;
    }
    paths_free(paths, n);
    if (!files)
        return;
    pthread_mutex_lock(&sv->mu);
    sv_pipe_t *pipes;
    size_t npipes;
    if (pipes_build(sv, files, nf, &pipes, &npipes, err, sizeof err) != 0) {
        for (size_t i = 0; i < nf; i++)
            file_unref(files[i]);
        pthread_mutex_unlock(&sv->mu);
        free(files);
        etl_logf(NULL, ETL_LOG_ERROR, "serve", NULL, "reload: %s; keeping the pipelines loaded "
                 "before", err);
        return;
    }
    /* a pipeline running now keeps its job (and its old definition) */
    for (size_t i = 0; i < npipes; i++) {
        sv_pipe_t *old = sv_find_pipe(sv, pipes[i].key);
        if (old)
            pipes[i].job = old->job;
    }
    sv_pipe_t *oldp = sv->pipes;
    size_t noldp = sv->npipes;
    sv->pipes = pipes;
    sv->npipes = npipes;
    schedules_ensure(sv, oldp, noldp);
    pipes_free(oldp, noldp);
    for (size_t i = 0; i < sv->nfiles; i++)
        file_unref(sv->files[i]);
    free(sv->files);
    sv->files = files;
    sv->nfiles = nf;
    pthread_mutex_unlock(&sv->mu);
    etl_logf(NULL, ETL_LOG_INFO, "serve", NULL, "reloaded %zu pipeline files (%d broken): %zu "
             "pipelines", nf, failed, npipes);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void serve_free(etl_serve_t *sv)
{
    for (sv_job_t *j = sv->jobs, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    pipes_free(sv->pipes, sv->npipes);
    for (size_t i = 0; i < sv->nfiles; i++)
        file_unref(sv->files[i]);
    free(sv->files);
    for (size_t i = 0; i < sv->nstores; i++) {
        etl_state_close(sv->stores[i].sched);
        etl_state_close(sv->stores[i].api);
        pthread_mutex_destroy(&sv->stores[i].api_mu);
        free(sv->stores[i].url);
    }
    free(sv->stores);
    free(sv->threads);
    sv_metrics_free(sv->metrics);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->wake);
    pthread_cond_destroy(&sv->work);
    pthread_cond_destroy(&sv->started);
}

/* Stops: queued runs give their leases back untouched, running ones finish
 * the batch in flight (their checkpoint commits) and stop. */
static void shutdown_jobs(etl_serve_t *sv)
{
    pthread_mutex_lock(&sv->mu);
    sv->stopping = 1;
    for (sv_job_t *j = sv->jobs; j; j = j->next) {
        if (j->state == JOB_QUEUED) {
            j->state = JOB_DONE;
            j->rc = ETL_EXIT_FAILED;
            j->res.status = "cancelled";
        } else if (j->state == JOB_RUNNING) {
            atomic_store(&j->cancel, 1);
        }
    }
    pthread_cond_broadcast(&sv->work);
    pthread_cond_broadcast(&sv->started);
    pthread_mutex_unlock(&sv->mu);
}

static int wait_tick(etl_serve_t *sv, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&sv->mu);
    int done = 0;
    for (sv_job_t *j = sv->jobs; j && !done; j = j->next)
        done = j->state == JOB_DONE && !j->waiters;
    if (!done)
        pthread_cond_timedwait(&sv->wake, &sv->mu, &until);
    pthread_mutex_unlock(&sv->mu);
    return 0;
}

int etl_serve(const etl_serve_opts_t *o, char *err, size_t errlen)
{
    etl_serve_t s = {0}, *sv = &s;
    sv->o = o;
    sv->nworkers = o->workers > 0 ? o->workers : 4;
    sv->lease_us = (o->lease_secs > 0 ? o->lease_secs : 60) * US;
    int64_t tick = o->tick_ms > 0 ? o->tick_ms : 1000;
    sv->started_us = etl_now_us();
    if (o->worker_id) {
        etl_strlcpy(sv->worker_id, o->worker_id, sizeof sv->worker_id);
    } else {
        char host[200] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(sv->worker_id, sizeof sv->worker_id, "%s:%ld", host, (long)getpid());
    }
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->wake, NULL);
    pthread_cond_init(&sv->work, NULL);
    pthread_cond_init(&sv->started, NULL);
    int rc = ETL_EXIT_CONFIG;
    sv_admin_t *admin = NULL;
    size_t nthreads = 0;

    int loopback = o->listen ? etl_serve_is_loopback(o->listen) : 1;
    if (loopback < 0) {
        etl_errf(err, errlen, "bad --listen '%s' (expected ADDRESS:PORT such as 127.0.0.1:8787)",
                 o->listen);
        goto out;
    }
    if (!o->token && !loopback) {
        etl_errf(err, errlen, "refusing to listen on %s without a token: set ETL_ADMIN_TOKEN "
                 "or listen on 127.0.0.1", o->listen);
        goto out;
    }
    if (!(sv->metrics = sv_metrics_new()) ||
        !(sv->stores = calloc(SV_MAX_STORES, sizeof *sv->stores)) ||
        !(sv->files = calloc(1, sizeof *sv->files)))
        goto oom;
    char **paths;
    size_t npaths;
    if (expand_paths(o, &paths, &npaths, err, errlen) != 0)
        goto out;
    sv_file_t **fv = npaths ? realloc(sv->files, npaths * sizeof *fv) : sv->files;
    if (!fv) {
        paths_free(paths, npaths);
        goto oom;
    }
    sv->files = fv;
    for (size_t i = 0; i < npaths; i++) {
        if (!(sv->files[i] = file_load(sv, paths[i], err, errlen))) {
            paths_free(paths, npaths);
            goto out;
        }
        sv->nfiles++;
    }
    paths_free(paths, npaths);
    if (!sv->nfiles) {
        etl_errf(err, errlen, "no pipeline files (folders are searched for *.yaml and *.yml)");
        goto out;
    }
    if (pipes_build(sv, sv->files, sv->nfiles, &sv->pipes, &sv->npipes, err, errlen) != 0)
        goto out;
    schedules_ensure(sv, NULL, 0);
    if (!(sv->threads = calloc((size_t)sv->nworkers, sizeof *sv->threads)))
        goto oom;
    for (; nthreads < (size_t)sv->nworkers; nthreads++) {
        if (pthread_create(&sv->threads[nthreads], NULL, worker_main, sv) != 0) {
            etl_errf(err, errlen, "cannot start worker threads: %s", strerror(errno));
            goto out;
        }
    }
    if (o->listen && !(admin = sv_admin_start(sv, o->listen, o->token, err, errlen)))
        goto out;
    etl_logf(NULL, ETL_LOG_INFO, "serve", NULL, "worker %s: %zu pipelines from %zu files, %d "
             "workers%s%s", sv->worker_id, sv->npipes, sv->nfiles, sv->nworkers,
             o->listen ? ", admin API on http://" : "", o->listen ? o->listen : "");

    while (!(o->stop && atomic_load(o->stop))) {
        if (o->reload && atomic_exchange(o->reload, 0))
            reload(sv);
        reap(sv);
        renew(sv);
        claim(sv);
        wait_tick(sv, tick);
    }
    etl_logf(NULL, ETL_LOG_INFO, "serve", NULL, "stopping: finishing the batches in flight");
    rc = ETL_EXIT_OK;
    goto out;
oom:
    etl_errf(err, errlen, "out of memory");
out:
    shutdown_jobs(sv);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(sv->threads[i], NULL);
    sv_admin_stop(admin);
    reap(sv);
    serve_free(sv);
    return rc;
}
