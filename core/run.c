/*
 * run.c - the life of a run: plugins and options (config errors stop here,
 * before anything is touched), the state store and the run record, Lua
 * hooks, each stream in fk order for each direction, the after_run hook and
 * the summary.
 */
#define _GNU_SOURCE
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "nest.h"
#include "runtime.h"

char *etl_pipeline_key(const etl_pipeline_t *p)
{
    return p->client ? etl_asprintf("%s@%s", p->name, p->client) : etl_strdup(p->name);
}

static void lua_log(void *arg, int level, const char *msg)
{
    etl_run_t *r = arg;
    etl_logf(r->log, (etl_level_t)level, "lua", NULL, "%s", msg);
}

static int wanted(const etl_run_opts_t *o, const char *name)
{
    if (!o->streams)
        return 1;
    size_t n = strlen(name);
    for (const char *p = o->streams; *p;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0)
            return 1;
        if (!c)
            break;
        p = c + 1;
    }
    return 0;
}

static int check_stream_filter(const etl_pipeline_t *p, const char *streams, char *err,
                               size_t errlen)
{
    if (!streams)
        return 0;
    char *copy = etl_strdup(streams), *save = NULL;
    int rc = 0;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !rc;
         t = strtok_r(NULL, ",", &save)) {
        if (etl_pipeline_stream(p, t) < 0) {
            etl_buf_t b;
            etl_buf_init(&b);
            for (size_t i = 0; i < p->nstreams; i++)
                etl_buf_printf(&b, "%s%s", i ? ", " : "", p->streams[i].name);
            etl_errf(err, errlen, "unknown stream '%s' in --stream (expected one of: %s)", t,
                     b.data ? b.data : "");
            etl_buf_free(&b);
            rc = -1;
        }
    }
    free(copy);
    return rc;
}

static int needs_lua(const etl_pipeline_t *p)
{
    if (p->hooks)
        return 1;
    for (size_t i = 0; i < p->nstreams; i++)
        if (p->streams[i].transform.kind != ETL_XF_NONE ||
            p->streams[i].resolve.kind != ETL_XF_NONE)
            return 1;
    return 0;
}

/* A Lua state for the pipeline with its hooks file loaded. */
static etl_lua_t *new_lua(etl_run_t *r, char *err, size_t errlen)
{
    const etl_pipeline_t *p = r->p;
    char *lua_dir = etl_path_join(p->dir, "lua");
    etl_lua_env_t env = {
        .lua_dir = lua_dir,
        .instructions = p->lua_instructions,
        .memory = p->lua_memory,
        .pipeline = p->name,
        .client = p->client,
        .log = lua_log,
        .log_arg = r,
    };
    etl_lua_t *L = etl_lua_new(&env, err, errlen);
    free(lua_dir);
    if (L && p->hooks && etl_lua_load_hooks(L, p->hooks, err, errlen) != 0) {
        etl_lua_free(L);
        return NULL;
    }
    return L;
}

/* Transforms run in the reader thread and resolvers in the writer: each
 * side has its own Lua state, never shared between threads. */
static int setup_lua(etl_run_t *r, char *err, size_t errlen)
{
    const etl_pipeline_t *p = r->p;
    if (!needs_lua(p))
        return 0;
    if (!(r->lua = new_lua(r, err, errlen)))
        return -1;
    for (size_t i = 0; i < p->nstreams; i++) {
        const etl_stream_cfg_t *c = &p->streams[i];
        if (c->transform.kind == ETL_XF_NONE)
            continue;
        if (etl_lua_compile(r->lua, &c->transform, c->name, "transform", &r->srt[i * 2].xf, err,
                            errlen) != 0)
            return -1;
    }
    for (size_t i = 0; i < p->nstreams; i++) {
        const etl_stream_cfg_t *c = &p->streams[i];
        if (c->conflict != ETL_CONFLICT_LUA)
            continue;
        if (!r->lua_w && !(r->lua_w = new_lua(r, err, errlen)))
            return -1;
        /* without `resolve:`, the hooks file's own resolve function */
        etl_transform_cfg_t from_hooks = {ETL_XF_FUNCTION, (char *)"resolve", c->loc};
        const etl_transform_cfg_t *rc = c->resolve.kind != ETL_XF_NONE ? &c->resolve : &from_hooks;
        if (etl_lua_compile(r->lua_w, rc, c->name, "resolve", &r->srt[i * 2].rs, err, errlen) != 0)
            return -1;
        r->srt[i * 2 + 1].rs = r->srt[i * 2].rs;
    }
    return 0;
}

/* Whether the sink writes into the state store's own SQLite file. */
static void *shared_handle(etl_run_t *r, etl_end_t *sink)
{
    const etl_sink_ops_t *ops = sink->lib->desc->sink;
    if (!ops->native || !sink->sink)
        return NULL;
    const char *kind = NULL, *loc = NULL;
    void *h = ops->native(sink->sink, &kind, &loc);
    if (!h || !kind || strcmp(kind, "sqlite3") != 0 || !loc)
        return NULL;
    char a[PATH_MAX], b[PATH_MAX];
    const char *state_file = etl_state_file(r->state); /* NULL: not a file (PostgreSQL) */
    if (!state_file || !realpath(loc, a) || !realpath(state_file, b) || strcmp(a, b) != 0)
        return NULL;
    return h;
}

static const char *status_text(int st)
{
    switch (st) {
    case ST_OK: return "ok";
    case ST_SKIPPED: return "skipped";
    case ST_CANCELLED: return "cancelled";
    case ST_FAILED: return "failed";
    default: return "not run";
    }
}

/* The first failed parent of stream i in this direction, or NULL. */
static const char *failed_parent(etl_run_t *r, size_t i, int d)
{
    const etl_stream_cfg_t *c = &r->p->streams[i];
    for (size_t k = 0; k < c->nfk; k++) {
        int pi = etl_pipeline_stream(r->p, c->fk[k].parent);
        if (pi < 0 || (size_t)pi == i)
            continue;
        int st = r->srt[(size_t)pi * 2 + (size_t)d].status;
        if (st == ST_FAILED || st == ST_SKIPPED)
            return c->fk[k].parent;
    }
    return NULL;
}

/* Streams whose transforms emitted rows into others held their checkpoints
 * (writer.c): they move now that the direction wrote those rows, or stay
 * where they were when a stream they emitted into did not complete (an
 * emitted row may be lost: the next run reads the rows that emitted it
 * again). */
static void release_held(etl_run_t *r, int d)
{
    const etl_pipeline_t *p = r->p;
    for (size_t i = 0; i < p->nstreams; i++) {
        etl_srt_t *s = &r->srt[i * 2 + (size_t)d];
        if (!s->held_ck && !s->held_clear_resume)
            continue;
        int lost = s->status != ST_OK;
        for (size_t k = 0; s->targets && k < p->nstreams; k++) {
            const etl_srt_t *t = &r->srt[k * 2 + (size_t)d];
            if (s->targets[k] && (t->spool_lost || (wanted(r->o, t->cfg->name) && t->status != ST_OK)))
                lost = 1;
        }
        if (lost) {
            etl_logf(r->log, ETL_LOG_WARN, "run", s->cfg->name,
                     "%s: the checkpoint stays: rows this stream's transform emitted were not "
                     "all written; the next run reads them again",
                     s->dir_name);
        } else if (etl_state_begin(r->state) ||
                   (s->held_clear_resume &&
                    etl_state_resume_put(r->state, r->pkey, s->cfg->name, s->dir_name, NULL, NULL,
                                         NULL, 0)) ||
                   (s->held_ck &&
                    etl_state_checkpoint_put(r->state, r->pkey, s->cfg->name, s->dir_name,
                                             s->held_ck, s->held_type, 0, s->held_full)) ||
                   etl_state_commit(r->state)) {
            etl_state_rollback(r->state);
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            etl_state_run_stream(r->state, r->run_id, s->cfg->name, s->dir_name, "failed", NULL,
                                 s->duration_ms, s->error);
        }
        free(s->held_ck);
        free(s->held_type);
        s->held_ck = s->held_type = NULL;
        s->held_clear_resume = 0;
    }
}

static void run_direction(etl_run_t *r, etl_direction_t dir)
{
    const etl_pipeline_t *p = r->p;
    int d = dir == ETL_DIR_REVERSE;
    /* every stream's columns first, the ones this run skips too: hooks may
     * emit into any of them, and fks translate through their parents */
    for (size_t k = 0; k < p->nstreams; k++) {
        size_t i = p->order[k];
        etl_srt_t *s = &r->srt[i * 2 + (size_t)d];
        s->cfg = &p->streams[i];
        s->index = i;
        s->dir = dir;
        if (etl_nest_is_child(p, s->cfg->name)) {
            s->status = ST_OK; /* read as part of its parents' documents */
            continue;
        }
        if (etl_stream_setup(r, s) != 0) {
            if (wanted(r->o, s->cfg->name)) {
                s->status = ST_FAILED;
            } else {
                /* not part of this run: its trouble is for the run that reads it */
                s->status = ST_PENDING;
                free(s->error);
                s->error = NULL;
            }
        }
    }
    for (size_t k = 0; k < p->nstreams; k++) {
        size_t i = p->order[k];
        etl_srt_t *s = &r->srt[i * 2 + (size_t)d];
        if (!wanted(r->o, s->cfg->name) || s->status != ST_PENDING)
            continue;
        if (r->cancel && atomic_load(r->cancel)) {
            s->status = ST_CANCELLED;
            continue;
        }
        const char *parent = failed_parent(r, i, d);
        if (parent) {
            /* said in the log and the run history, not only in the summary */
            s->status = ST_SKIPPED;
            s->error = etl_asprintf("skipped: parent stream %s failed", parent);
            etl_logf(r->log, ETL_LOG_ERROR, "run", s->cfg->name, "%s %s", s->dir_name,
                     s->error ? s->error : "skipped");
            if (!r->o->dry_run)
                etl_state_run_stream(r->state, r->run_id, s->cfg->name, s->dir_name,
                                     status_text(s->status), NULL, 0, s->error);
            continue;
        }
        etl_end_t *sink = &r->ends[dir == ETL_DIR_FORWARD ? 1 : 0];
        if (etl_end_sink(r, sink, r->log) == 0)
            r->shared_db = shared_handle(r, sink) != NULL;
        etl_stream_run(r, s);
        s->duration_ms = (etl_mono_us() - s->started_us) / 1000;
        char took[32];
        snprintf(took, sizeof took, "%.2fs", (double)s->duration_ms / 1e3);
        etl_logf(r->log, s->status == ST_OK ? ETL_LOG_INFO : ETL_LOG_ERROR, "run", s->cfg->name,
                 "%s %s: read %lld, created %lld, updated %lld, unchanged %lld, deleted %lld, "
                 "deferred %lld, failed %lld (%s)%s%s",
                 s->dir_name, status_text(s->status), (long long)s->counts.read,
                 (long long)s->counts.created, (long long)s->counts.updated,
                 (long long)s->counts.unchanged, (long long)s->counts.deleted,
                 (long long)s->counts.deferred, (long long)s->counts.failed, took,
                 s->error ? ": " : "", s->error ? s->error : "");
        if (!r->o->dry_run)
            etl_state_run_stream(r->state, r->run_id, s->cfg->name, s->dir_name,
                                 status_text(s->status), NULL, s->duration_ms, s->error);
    }
    /* rows emitted by hooks into a stream that had already run */
    for (size_t k = 0; k < p->nstreams; k++) {
        size_t i = p->order[k];
        etl_srt_t *s = &r->srt[i * 2 + (size_t)d];
        if (!etl_spool_count(s->spool))
            continue;
        if (!wanted(r->o, s->cfg->name) || s->status != ST_OK) {
            s->spool_lost = 1;
            etl_logf(r->log, ETL_LOG_WARN, "run", s->cfg->name,
                     "%zu row(s) emitted into this stream are dropped: it %s", etl_spool_count(s->spool),
                     wanted(r->o, s->cfg->name) ? "did not complete" : "is not part of this run");
            etl_spool_free(s->spool);
            s->spool = NULL;
            continue;
        }
        s->spool_only = 1;
        s->status = ST_PENDING;
        etl_counts_t before = s->counts;
        etl_stream_run(r, s);
        etl_logf(r->log, s->status == ST_OK ? ETL_LOG_INFO : ETL_LOG_ERROR, "run", s->cfg->name,
                 "%s: %lld emitted row(s) written after the stream ran%s%s", s->dir_name,
                 (long long)(s->counts.created + s->counts.updated - before.created -
                             before.updated),
                 s->error ? ": " : "", s->error ? s->error : "");
        if (!r->o->dry_run)
            etl_state_run_stream(r->state, r->run_id, s->cfg->name, s->dir_name,
                                 status_text(s->status), NULL, s->duration_ms, s->error);
    }
    if (!r->o->dry_run)
        release_held(r, d);
}

/* One run of a pipeline (or of one client of it) at a time: an exclusive
 * lock on a file beside a SQLite state store, released when the process
 * ends. */
static int lock_file(etl_run_t *r, char *err, size_t errlen)
{
    char *dir = etl_path_dir(etl_state_file(r->state));
    char *path = dir ? etl_asprintf("%s/%s.lock", dir, r->pkey) : NULL;
    free(dir);
    if (!path) {
        etl_errf(err, errlen, "out of memory");
        return -1;
    }
    r->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->lock_fd < 0 || flock(r->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        etl_errf(err, errlen, "pipeline %s is already running (lock %s)%s%s", r->pkey, path,
                 r->lock_fd < 0 ? ": " : "", r->lock_fd < 0 ? strerror(errno) : "");
        free(path);
        return -1;
    }
    free(path);
    return 0;
}

/* The pipeline's lease in the state store (state.h), held while the run
 * lasts: what `etl serve` workers claim before they run a pipeline. */
#define LEASE_US (60 * INT64_C(1000000))

/* A PostgreSQL store, shared by machines, has no file to lock: the lease
 * alone. A SQLite store: the lock file as ever, and the lease too, so that
 * `etl serve` on the same file (whose runs hold a lease and no lock file)
 * and `etl run` keep out of each other's way. Nothing when the caller holds
 * the lease already (o->lease_owner). */
static int lock_run(etl_run_t *r, etl_lease_hold_t **lease, char *err, size_t errlen)
{
    /* a dry run writes no state: it keeps nobody out */
    if (r->o->lease_owner || r->o->dry_run)
        return 0;
    if (etl_state_file(r->state) && lock_file(r, err, errlen) != 0)
        return -1;
    *lease = etl_lease_hold(r->state, r->p->state_url, r->pkey, LEASE_US, r->cancel, err, errlen);
    return *lease ? 0 : -1;
}

/* A dry run leaves no state store behind: when its SQLite file does not
 * exist yet, the run works on a scratch file (*scratch, malloc'd) that
 * drop_scratch() removes. Returns the URL to open (malloc'd), NULL on no
 * memory. */
static char *dry_state_url(const etl_pipeline_t *p, char **scratch)
{
    *scratch = NULL;
    const char *url = p->state_url, *path = etl_state_url_file(url);
    if (!path || access(path, F_OK) == 0)
        return etl_strdup(url);
    const char *tmp = getenv("TMPDIR");
    char *tpl = etl_asprintf("%s/etl-dry-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = tpl ? mkstemp(tpl) : -1;
    if (fd < 0) {
        free(tpl);
        return etl_strdup(url); /* no scratch space: the real file it is */
    }
    close(fd);
    *scratch = tpl;
    return etl_asprintf("sqlite:%s", tpl);
}

static void drop_scratch(char *scratch)
{
    if (!scratch)
        return;
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(ext); i++) {
        char *f = etl_asprintf("%s%s", scratch, ext[i]);
        if (f)
            unlink(f);
        free(f);
    }
    free(scratch);
}

static void collect(etl_run_t *r, etl_run_result_t *res)
{
    const etl_pipeline_t *p = r->p;
    res->streams = calloc(p->nstreams * 2, sizeof *res->streams);
    if (!res->streams)
        return;
    for (size_t k = 0; k < p->nstreams; k++) {
        size_t i = p->order[k];
        for (int d = 0; d < 2; d++) {
            etl_srt_t *s = &r->srt[i * 2 + (size_t)d];
            if (!s->cfg || !wanted(r->o, s->cfg->name) || !s->dir_name)
                continue;
            etl_stream_result_t *sr = &res->streams[res->nstreams++];
            sr->stream = etl_strdup(s->cfg->name);
            sr->direction = s->dir_name;
            sr->status = status_text(s->status);
            sr->counts = s->counts;
            sr->duration_ms = s->duration_ms;
            sr->error = etl_strdup(s->error);
        }
    }
}

static int finish_hooks(etl_run_t *r, const char *status)
{
    if (!r->lua)
        return 0;
    const etl_pipeline_t *p = r->p;
    etl_lua_stat_t *stats = calloc(p->nstreams * 2 + 1, sizeof *stats);
    size_t n = 0;
    /* one entry per stream: a two-way run adds both directions up */
    for (size_t i = 0; stats && i < p->nstreams; i++) {
        etl_lua_stat_t *t = NULL;
        for (int d = 0; d < 2; d++) {
            etl_srt_t *s = &r->srt[i * 2 + (size_t)d];
            if (!s->cfg || !s->dir_name || !wanted(r->o, s->cfg->name))
                continue;
            if (!t) {
                t = &stats[n++];
                t->stream = s->cfg->name;
            }
            t->read += s->counts.read;
            t->created += s->counts.created;
            t->updated += s->counts.updated;
            t->unchanged += s->counts.unchanged;
            t->deleted += s->counts.deleted;
            t->deferred += s->counts.deferred;
            t->failed += s->counts.failed;
        }
    }
    etl_buf_t err;
    etl_buf_init(&err);
    int rc = etl_lua_after_run(r->lua, stats, n, status, &err);
    if (rc != 0)
        etl_errf(r->err, sizeof r->err, "after_run hook: %s", err.data ? err.data : "failed");
    etl_buf_free(&err);
    free(stats);
    return rc;
}

int etl_run(const etl_pipeline_t *p, const etl_run_opts_t *o, etl_run_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->status = "failed";
    etl_run_t run = {0}, *r = &run;
    etl_lease_hold_t *lease = NULL;
    char *scratch = NULL;
    r->p = p;
    r->o = o;
    r->lock_fd = -1;
    atomic_init(&r->own_cancel, 0);
    r->cancel = o->cancel ? o->cancel : &r->own_cancel;
    int exit_code = ETL_EXIT_CONFIG;
    int direction = o->direction >= 0 ? o->direction : (int)p->direction;
    char *err = res->error;
    size_t errlen = sizeof res->error;

    if (!(r->pkey = etl_pipeline_key(p)) || !(r->srt = calloc(p->nstreams * 2, sizeof *r->srt))) {
        etl_errf(err, errlen, "out of memory");
        goto done;
    }
    if (p->config_error) {
        /* this matrix client's own values could not be expanded: its run
         * fails, and the other clients run */
        etl_errf(err, errlen, "%s", p->config_error);
        exit_code = ETL_EXIT_FAILED;
        goto done;
    }
    /* --- everything that can be wrong with the configuration, before any write */
    if (check_stream_filter(p, o->streams, err, errlen) != 0 || etl_ends_load(r, err, errlen))
        goto done;
    if (direction != ETL_DIR_REVERSE &&
        (!r->ends[0].lib->desc->source || !r->ends[1].lib->desc->sink)) {
        etl_errf(err, errlen, "%s: direction forward needs a source plugin at source: (%s) and a "
                 "sink plugin at sink: (%s)", p->file, r->ends[0].lib->desc->name,
                 r->ends[1].lib->desc->name);
        goto done;
    }
    if (direction != ETL_DIR_FORWARD &&
        (!r->ends[1].lib->desc->source || !r->ends[0].lib->desc->sink)) {
        etl_errf(err, errlen, "%s: direction %s needs both plugins to read and write (%s, %s)",
                 p->file, etl_direction_name((etl_direction_t)direction),
                 r->ends[0].lib->desc->name, r->ends[1].lib->desc->name);
        goto done;
    }
    if (o->since) {
        if (etl_ts_parse(o->since, strlen(o->since), &r->since_us) != 0) {
            etl_errf(err, errlen, "--since '%s' is not a time (expected 2024-05-01 or "
                     "2024-05-01T10:00:00Z)", o->since);
            goto done;
        }
        r->has_since = 1;
    }
    r->window = o->window;
    if (setup_lua(r, err, errlen) != 0)
        goto done;
    char *state_url = o->dry_run ? dry_state_url(p, &scratch) : etl_strdup(p->state_url);
    if (!state_url) {
        etl_errf(err, errlen, "out of memory");
        goto done;
    }
    r->state = etl_state_open(state_url, err, errlen);
    free(state_url);
    if (!r->state)
        goto done;

    /* --- the run itself */
    exit_code = ETL_EXIT_FAILED;
    if (lock_run(r, &lease, err, errlen) != 0)
        goto done;
    const char *mode = o->full ? "full" : "incremental";
    if (!o->dry_run) {
        etl_run_info_t info = {p->name, p->client, mode,
                               etl_direction_name((etl_direction_t)direction),
                               o->triggered_by ? o->triggered_by : "cli", NULL};
        if (etl_state_run_begin(r->state, &info, &r->run_id) != 0) {
            etl_errf(err, errlen, "%s", etl_state_error(r->state));
            goto done;
        }
    }
    res->run_id = r->run_id;
    /* the lease names its run, so a worker taking over can close it; a SQLite
     * store keeps the killed `etl run` of a machine "running" (its lock file
     * already kept any other run out) */
    if (r->run_id && (o->lease_owner || (lease && !etl_state_file(r->state))))
        etl_state_lease_run(r->state, r->pkey,
                            o->lease_owner ? o->lease_owner : etl_lease_hold_owner(lease),
                            r->run_id);
    if (o->on_start)
        o->on_start(o->on_start_arg, r->run_id);
    char *logname = p->client ? etl_asprintf("%s-%s", p->name, p->client) : etl_strdup(p->name);
    char lerr[ETL_ERRLEN] = "";
    r->log = etl_logger_new(logname ? logname : p->name, o->dry_run ? NULL : p->log_dir,
                            r->run_id, p->log_keep, lerr, sizeof lerr);
    free(logname);
    if (!r->log) {
        etl_errf(err, errlen, "%s", lerr);
        goto finish;
    }
    if (etl_logger_path(r->log)) {
        res->log_file = etl_strdup(etl_logger_path(r->log));
        etl_state_run_log_file(r->state, r->run_id, res->log_file);
    }
    etl_logf(r->log, ETL_LOG_INFO, "run", NULL, "run %lld of %s%s%s: %s, %s%s",
             (long long)r->run_id, p->name, p->client ? " for client " : "",
             p->client ? p->client : "", mode, etl_direction_name((etl_direction_t)direction),
             o->dry_run ? " (dry run: nothing is committed)" : "");
    if (r->lua) {
        etl_lua_run_t info = {r->run_id, mode,
                              direction == ETL_DIR_REVERSE ? "reverse" : "forward"};
        etl_lua_set_run(r->lua, &info);
        if (r->lua_w)
            etl_lua_set_run(r->lua_w, &info);
        etl_buf_t lb;
        etl_buf_init(&lb);
        if (etl_lua_before_run(r->lua, &lb) != 0) {
            etl_errf(err, errlen, "before_run hook: %s", lb.data ? lb.data : "failed");
            etl_buf_free(&lb);
            goto finish;
        }
        etl_buf_free(&lb);
    }
    if (direction != ETL_DIR_REVERSE)
        run_direction(r, ETL_DIR_FORWARD);
    if (direction != ETL_DIR_FORWARD && !atomic_load(r->cancel)) {
        if (r->lua) {
            etl_lua_run_t info = {r->run_id, mode, "reverse"};
            etl_lua_set_run(r->lua, &info);
            if (r->lua_w)
                etl_lua_set_run(r->lua_w, &info);
        }
        run_direction(r, ETL_DIR_REVERSE);
    }

finish:;
    if (lease && etl_lease_hold_lost(lease) && !err[0])
        etl_errf(err, errlen, "pipeline %s: another worker took the pipeline over (this run "
                 "could not renew its lease in time): stopped", r->pkey);
    int failed = err[0] != '\0', cancelled = 0;
    for (size_t i = 0; i < p->nstreams * 2; i++) {
        etl_srt_t *s = &r->srt[i];
        if (s->status == ST_FAILED || s->status == ST_SKIPPED) {
            if (!failed)
                etl_errf(err, errlen, "stream %s (%s): %s", s->cfg->name, s->dir_name,
                         s->error ? s->error : "failed");
            failed = 1;
        }
        cancelled |= s->status == ST_CANCELLED;
    }
    res->status = failed ? "failed" : cancelled ? "cancelled" : "ok";
    if (finish_hooks(r, res->status) != 0 && !failed) {
        failed = 1;
        res->status = "failed";
        etl_strlcpy(err, r->err, errlen);
    }
    if (cancelled && !failed)
        etl_errf(err, errlen, "cancelled");
    if (!o->dry_run && r->run_id) {
        char *clean = etl_redact_dup(err);
        etl_state_run_finish(r->state, r->run_id, res->status, err[0] ? clean : NULL);
        free(clean);
    }
    collect(r, res);
    exit_code = failed || cancelled ? ETL_EXIT_FAILED : ETL_EXIT_OK;
    if (failed)
        etl_logf(r->log, ETL_LOG_ERROR, "run", NULL, "run %lld failed: %s", (long long)r->run_id,
                 err);
done:
    if (exit_code == ETL_EXIT_CONFIG) {
        char *clean = etl_redact_dup(err);
        if (clean) {
            etl_strlcpy(err, clean, errlen);
            free(clean);
        }
    }
    etl_ends_close(r);
    for (size_t i = 0; r->srt && i < p->nstreams * 2; i++)
        etl_stream_free(&r->srt[i]);
    free(r->srt);
    etl_lua_free(r->lua);
    etl_lua_free(r->lua_w);
    etl_lease_hold_release(lease);
    etl_state_close(r->state);
    drop_scratch(scratch);
    etl_logger_free(r->log);
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    free(r->pkey);
    return exit_code;
}

int etl_reset(const etl_pipeline_t *p, const char *stream, char *err, size_t errlen)
{
    etl_run_opts_t o = {0};
    etl_run_t run = {0}, *r = &run;
    etl_lease_hold_t *lease = NULL;
    int rc = ETL_EXIT_FAILED;
    r->p = p;
    r->o = &o;
    r->lock_fd = -1;
    atomic_init(&r->own_cancel, 0);
    r->cancel = &r->own_cancel;
    if (!(r->pkey = etl_pipeline_key(p))) {
        etl_errf(err, errlen, "out of memory");
        return rc;
    }
    if (!(r->state = etl_state_open(p->state_url, err, errlen)) ||
        lock_run(r, &lease, err, errlen) != 0)
        goto done;
    if (etl_state_reset(r->state, r->pkey, stream) != 0)
        etl_errf(err, errlen, "%s", etl_state_error(r->state));
    else
        rc = 0;
done:
    etl_lease_hold_release(lease);
    etl_state_close(r->state);
    if (r->lock_fd >= 0)
        close(r->lock_fd);
    free(r->pkey);
    return rc;
}

void etl_run_result_free(etl_run_result_t *res)
{
    for (size_t i = 0; i < res->nstreams; i++) {
        free(res->streams[i].stream);
        free(res->streams[i].error);
    }
    free(res->streams);
    free(res->log_file);
    memset(res, 0, sizeof *res);
}

void etl_run_print_summary(FILE *f, const etl_pipeline_t *p, const etl_run_result_t *res)
{
    if (res->run_id)
        fprintf(f, "%s%s%s run %lld: %s\n", p->name, p->client ? "@" : "",
                p->client ? p->client : "", (long long)res->run_id, res->status);
    else /* it did not start */
        fprintf(f, "%s%s%s: %s\n", p->name, p->client ? "@" : "", p->client ? p->client : "",
                res->status);
    if (res->nstreams) {
        fprintf(f, "  %-22s %-8s %9s %9s %9s %9s %9s %9s %7s %8s\n", "stream", "dir", "read",
                "created", "updated", "unchanged", "deleted", "deferred", "failed", "time");
        for (size_t i = 0; i < res->nstreams; i++) {
            const etl_stream_result_t *s = &res->streams[i];
            const etl_counts_t *c = &s->counts;
            fprintf(f, "  %-22s %-8s %9lld %9lld %9lld %9lld %9lld %9lld %7lld %7.2fs%s%s\n",
                    s->stream, s->direction, (long long)c->read, (long long)c->created,
                    (long long)c->updated, (long long)c->unchanged, (long long)c->deleted,
                    (long long)c->deferred, (long long)c->failed, (double)s->duration_ms / 1000,
                    strcmp(s->status, "ok") ? "  " : "", strcmp(s->status, "ok") ? s->status : "");
        }
    }
    if (res->error[0])
        fprintf(f, "error: %s\n", res->error);
    if (res->log_file)
        fprintf(f, "log: %s\n", res->log_file);
}

/* ------------------------------------------------------------ check */

static void print_stream_cb(void *arg, const char *stream)
{
    FILE *f = arg;
    fprintf(f, " %s", stream);
}

int etl_check(const etl_pipeline_t *p, FILE *out, char *err, size_t errlen)
{
    etl_run_t run = {0}, *r = &run;
    r->p = p;
    atomic_init(&r->own_cancel, 0);
    r->cancel = &r->own_cancel;
    r->pkey = etl_pipeline_key(p);
    int rc = ETL_EXIT_CONFIG;
    if (p->config_error) {
        etl_errf(err, errlen, "%s", p->config_error);
        goto done;
    }
    if (etl_ends_load(r, err, errlen) != 0)
        goto done;
    /* the hooks file and every transform and resolver must compile, as a run
     * would find before it touches anything */
    if (!(r->srt = calloc(p->nstreams * 2, sizeof *r->srt))) {
        etl_errf(err, errlen, "out of memory");
        goto done;
    }
    if (setup_lua(r, err, errlen) != 0)
        goto done;
    fprintf(out, "pipeline %s: configuration ok (%zu streams)\n", p->name, p->nstreams);
    rc = ETL_EXIT_OK;
    for (int i = 0; i < 2; i++) {
        etl_end_t *e = &r->ends[i];
        const etl_plugin_t *d = e->lib->desc;
        const char *where = i == 0 ? "source" : "sink";
        int as_source = i == 0 || p->direction != ETL_DIR_FORWARD;
        int as_sink = i == 1 || p->direction != ETL_DIR_FORWARD;
        if (as_source && d->source) {
            if (etl_end_source(r, e, NULL) != 0) {
                fprintf(out, "%s %s: FAILED: %s\n", where, d->name, r->err);
                rc = ETL_EXIT_FAILED;
                continue;
            }
            etl_status_t st = d->source->check ? d->source->check(e->src, e->src_ctx) : ETL_OK;
            fprintf(out, "%s %s (%s): %s%s\n", where, d->name, d->version ? d->version : "?",
                    st == ETL_OK ? "ok" : "FAILED: ", st == ETL_OK ? "" : e->src_ctx->err);
            if (st != ETL_OK) {
                rc = ETL_EXIT_FAILED;
                continue;
            }
            if (d->source->streams && etl_log_level() >= ETL_LOG_DEBUG) {
                fprintf(out, "  streams:");
                d->source->streams(e->src, e->src_ctx, print_stream_cb, out);
                fputc('\n', out);
            }
            if (i == 0) {
                for (size_t k = 0; k < p->nstreams; k++) {
                    const etl_stream_cfg_t *c = &p->streams[k];
                    if (c->ncolumns)
                        continue;
                    etl_schema_t *sc = etl_schema_new(c->name);
                    etl_status_t ds = sc ? d->source->discover(e->src, e->src_ctx, sc)
                                         : ETL_ERR_NOMEM;
                    if (ds == ETL_OK)
                        fprintf(out, "  stream %s: %zu columns%s%s\n", c->name,
                                etl_schema_ncols(sc), etl_schema_cursor(sc) ? ", cursor " : "",
                                etl_schema_cursor(sc) ? etl_schema_cursor(sc) : "");
                    else {
                        fprintf(out, "  stream %s: FAILED: %s\n", c->name, e->src_ctx->err);
                        rc = ETL_EXIT_FAILED;
                    }
                    etl_schema_free(sc);
                }
            }
        }
        if (as_sink && d->sink) {
            if (etl_end_sink(r, e, NULL) != 0) {
                fprintf(out, "%s %s: FAILED: %s\n", where, d->name, r->err);
                rc = ETL_EXIT_FAILED;
                continue;
            }
            etl_status_t st = d->sink->check ? d->sink->check(e->sink, e->sink_ctx) : ETL_OK;
            fprintf(out, "%s %s (%s) as sink: %s%s\n", where, d->name, d->version ? d->version : "?",
                    st == ETL_OK ? "ok" : "FAILED: ", st == ETL_OK ? "" : e->sink_ctx->err);
            if (st != ETL_OK)
                rc = ETL_EXIT_FAILED;
        }
    }
    if (rc == ETL_EXIT_FAILED)
        etl_errf(err, errlen, "connection checks failed");
done:
    etl_ends_close(r);
    free(r->srt);
    etl_lua_free(r->lua);
    etl_lua_free(r->lua_w);
    free(r->pkey);
    return rc;
}
