/*
 * admin_api.c - the JSON endpoints of the admin API:
 *
 *   GET    /api/pipelines
 *   POST   /api/pipelines/{name}/runs?mode=&stream=&client=&direction=
 *   GET    /api/runs?pipeline=&limit=
 *   GET    /api/runs/{id}[?pipeline=]
 *   GET    /api/runs/{id}/log[?pipeline=]
 *   GET    /api/checkpoints[?pipeline=]
 *   DELETE /api/checkpoints/{pipeline}[/{stream}]
 *
 * Run history and checkpoints are read from the state stores, so a run on
 * another worker sharing the store shows here too, with its counts growing
 * batch by batch while it runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etl/record.h"
#include "schedule.h"
#include "serve_internal.h"

#define RUN_COLS                                                                              \
    "r.id, r.pipeline, r.client, r.mode, r.direction, r.triggered_by, r.worker, r.started_at," \
    " r.finished_at, r.status, r.error, r.log_file"
#define RUN_SELECT                                                                         \
    "SELECT " RUN_COLS ", coalesce(sum(s.read),0), coalesce(sum(s.created),0),"            \
    " coalesce(sum(s.updated),0), coalesce(sum(s.unchanged),0), coalesce(sum(s.deleted),0)," \
    " coalesce(sum(s.deferred),0), coalesce(sum(s.failed),0)"                              \
    " FROM runs r LEFT JOIN run_streams s ON s.run_id = r.id"
enum { RC_LOG = 11, RC_COUNTS = 12, RC_N = 19 };

static const char *const count_names[] = {"read", "created", "updated", "unchanged",
                                          "deleted", "deferred", "failed"};

void sv_error(sv_response_t *r, int status, const char *msg)
{
    r->status = status;
    r->content_type = "application/json";
    etl_buf_reset(&r->body);
    etl_buf_adds(&r->body, "{\"error\":");
    etl_buf_json_str(&r->body, msg, strlen(msg));
    etl_buf_adds(&r->body, "}\n");
}

static void set_error(sv_response_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(sv_response_t *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sv_error(r, status, msg);
}

/* Takes j: its text becomes the body. */
static void set_json(sv_response_t *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        set_error(r, 500, "out of memory");
        return;
    }
    r->status = status;
    r->content_type = "application/json";
    etl_buf_adds(&r->body, text);
    etl_buf_addc(&r->body, '\n');
    free(text);
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *int_of(const char *s)
{
    int64_t v;
    return s && etl_parse_i64(s, &v) == 0 ? json_integer(v) : json_null();
}

static int64_t time_us(const char *s)
{
    int64_t us;
    return s && etl_ts_parse(s, strlen(s), &us) == 0 ? us : 0;
}

/* ---- queries ------------------------------------------------------------ */

typedef struct rows {
    json_t *list;
    int (*row)(json_t *list, const char *const *cols);
} rows_t;

static int rows_cb(void *arg, int ncols, const char *const *cols, const char *const *names)
{
    (void)ncols;
    (void)names;
    rows_t *r = arg;
    return r->row(r->list, cols);
}

/* Runs a query on a store's admin handle; -1 with msg on failure. */
static int store_query(etl_serve_t *sv, size_t store, const char *sql, const char *const *params,
                       size_t n, rows_t *rows, char *msg, size_t msglen)
{
    sv_store_t *s = &sv->stores[store];
    pthread_mutex_lock(&s->api_mu);
    int rc = etl_state_query(s->api, sql, params, n, rows_cb, rows);
    if (rc != 0)
        etl_errf(msg, msglen, "state store: %s", etl_state_error(s->api));
    pthread_mutex_unlock(&s->api_mu);
    return rc;
}

/* Columns c[0..] as strings (or null) under these names, NULL-terminated. */
static void put_strs(json_t *o, const char *const *names, const char *const *c)
{
    for (size_t i = 0; names[i]; i++)
        json_object_set_new(o, names[i], str_or_null(c[i]));
}

static int run_row(json_t *list, const char *const *c)
{
    json_t *o = json_object();
    char *key = c[2] ? etl_asprintf("%s@%s", c[1], c[2]) : etl_strdup(c[1]);
    json_object_set_new(o, "id", int_of(c[0]));
    json_object_set_new(o, "pipeline", str_or_null(c[1]));
    json_object_set_new(o, "client", str_or_null(c[2]));
    json_object_set_new(o, "key", str_or_null(key));
    static const char *const cols[] = {"mode",       "direction",   "triggered_by", "worker",
                                       "started_at", "finished_at", "status",       "error", NULL};
    put_strs(o, cols, c + 3);
    json_t *counts = json_object();
    for (int i = 0; i < 7; i++)
        json_object_set_new(counts, count_names[i], int_of(c[RC_COUNTS + i]));
    json_object_set_new(o, "counts", counts);
    int64_t t0 = time_us(c[7]), t1 = c[8] ? time_us(c[8]) : etl_now_us();
    json_object_set_new(o, "duration_ms", t0 && t1 >= t0 ? json_integer((t1 - t0) / 1000)
                                                         : json_null());
    /* internal: where its log is (not sent) */
    json_object_set_new(o, "_log", str_or_null(c[RC_LOG]));
    free(key);
    json_array_append_new(list, o);
    return 0;
}

/* "name@client" -> name and client (NULL when the key has none). */
static void split_key(const char *key, char *name, size_t nlen, const char **client)
{
    const char *at = strchr(key, '@');
    size_t n = at ? (size_t)(at - key) : strlen(key);
    if (n >= nlen)
        n = nlen - 1;
    memcpy(name, key, n);
    name[n] = '\0';
    *client = at ? at + 1 : NULL;
}

/* Runs of a key or name (NULL: all), newest first, at most limit. */
static int runs_of(etl_serve_t *sv, size_t store, const char *key, long limit, json_t *list,
                   char *msg, size_t msglen)
{
    char name[256], lim[32], sql[1024];
    const char *client = NULL, *params[3];
    size_t n = 0;
    snprintf(lim, sizeof lim, "%ld", limit);
    const char *where = "";
    if (key) {
        split_key(key, name, sizeof name, &client);
        params[n++] = name;
        where = " WHERE r.pipeline = ?";
        if (client) {
            params[n++] = client;
            where = " WHERE r.pipeline = ? AND r.client = ?";
        }
    }
    params[n++] = lim;
    snprintf(sql, sizeof sql, "%s%s GROUP BY " RUN_COLS " ORDER BY r.id DESC LIMIT ?",
             RUN_SELECT, where);
    rows_t rows = {list, run_row};
    return store_query(sv, store, sql, params, n, &rows, msg, msglen);
}

static int run_by_id(etl_serve_t *sv, size_t store, const char *id, json_t *list, char *msg,
                     size_t msglen)
{
    const char *params[] = {id};
    rows_t rows = {list, run_row};
    return store_query(sv, store, RUN_SELECT " WHERE r.id = ? GROUP BY " RUN_COLS, params, 1,
                       &rows, msg, msglen);
}

static int stream_row(json_t *list, const char *const *c)
{
    json_t *o = json_object();
    static const char *const cols[] = {"stream", "direction", "status", NULL};
    put_strs(o, cols, c);
    for (int i = 0; i < 7; i++)
        json_object_set_new(o, count_names[i], int_of(c[3 + i]));
    json_object_set_new(o, "duration_ms", int_of(c[10]));
    json_object_set_new(o, "error", str_or_null(c[11]));
    json_array_append_new(list, o);
    return 0;
}

static int ckpt_row(json_t *list, const char *const *c)
{
    json_t *o = json_object();
    static const char *const cols[] = {"pipeline",    "stream",         "direction",
                                       "cursor",      "cursor_type",    "last_sync_time",
                                       "last_record_time", NULL};
    put_strs(o, cols, c);
    json_object_set_new(o, "records_synced", int_of(c[7]));
    json_object_set_new(o, "is_full_sync", json_boolean(c[8] && strcmp(c[8], "0") != 0 &&
                                                        strcmp(c[8], "f") != 0));
    json_array_append_new(list, o);
    return 0;
}

/* ---- the pipelines (a snapshot taken under sv->mu) ----------------------- */

typedef struct pipe_view {
    char *key, *name, *client, *file;
    size_t store;
    json_t *schedule;
    json_t *streams;
    int queued;
    int64_t planned_us; /* the schedule's next time from now, 0: none */
} pipe_view_t;

static pipe_view_t *snapshot(etl_serve_t *sv, size_t *n)
{
    pthread_mutex_lock(&sv->mu);
    pipe_view_t *v = calloc(sv->npipes + 1, sizeof *v);
    for (size_t i = 0; v && i < sv->npipes; i++) {
        const sv_pipe_t *pp = &sv->pipes[i];
        const etl_pipeline_t *p = pp->p;
        v[i].key = etl_strdup(pp->key);
        v[i].name = etl_strdup(p->name);
        v[i].client = p->client ? etl_strdup(p->client) : NULL;
        v[i].file = etl_strdup(pp->file->path);
        v[i].store = pp->store;
        v[i].queued = pp->job && pp->job->state == JOB_QUEUED;
        v[i].planned_us = etl_sched_next(&p->schedule, etl_now_us(), etl_now_us());
        if (p->schedule.cron || p->schedule.every) {
            json_t *s = json_object();
            json_object_set_new(s, "cron", str_or_null(p->schedule.cron));
            json_object_set_new(s, "every", p->schedule.every ? json_integer(p->schedule.every)
                                                              : json_null());
            json_object_set_new(s, "expires", p->schedule.expires
                                                  ? json_integer(p->schedule.expires)
                                                  : json_null());
            v[i].schedule = s;
        } else {
            v[i].schedule = json_null();
        }
        v[i].streams = json_array();
        for (size_t k = 0; k < p->nstreams; k++)
            json_array_append_new(v[i].streams, json_string(p->streams[p->order[k]].name));
    }
    *n = v ? sv->npipes : 0;
    pthread_mutex_unlock(&sv->mu);
    return v;
}

static void snapshot_free(pipe_view_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].name);
        free(v[i].client);
        free(v[i].file);
        json_decref(v[i].schedule);
        json_decref(v[i].streams);
    }
    free(v);
}

typedef struct sched_rows {
    json_t *by_key; /* key -> {next, owner, until, run_id} */
} sched_rows_t;

static int sched_cb(void *arg, const char *key, int64_t next_us, const char *owner,
                    int64_t until_us, int64_t run_id)
{
    sched_rows_t *s = arg;
    json_t *o = json_object();
    char t[48];
    sv_time_text(next_us, t, sizeof t);
    json_object_set_new(o, "next_run_at", next_us > 0 ? json_string(t) : json_null());
    if (owner && until_us > etl_now_us()) {
        json_t *run = json_object();
        json_object_set_new(run, "run_id", run_id > 0 ? json_integer(run_id) : json_null());
        json_object_set_new(run, "owner", json_string(owner));
        sv_time_text(until_us, t, sizeof t);
        json_object_set_new(run, "lease_until", json_string(t));
        json_object_set_new(o, "running", run);
    }
    json_object_set_new(s->by_key, key, o);
    return 0;
}

static void get_pipelines(etl_serve_t *sv, sv_response_t *r)
{
    size_t n;
    pipe_view_t *v = snapshot(sv, &n);
    char msg[ETL_ERRLEN];
    json_t *sched = json_object(), *out = json_array();
    for (size_t s = 0; s < sv->nstores; s++) {
        sched_rows_t sr = {sched};
        pthread_mutex_lock(&sv->stores[s].api_mu);
        etl_state_schedule_list(sv->stores[s].api, sched_cb, &sr);
        pthread_mutex_unlock(&sv->stores[s].api_mu);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object(), *runs = json_array();
        json_object_set_new(o, "key", json_string(v[i].key));
        json_object_set_new(o, "name", json_string(v[i].name));
        json_object_set_new(o, "client", str_or_null(v[i].client));
        json_object_set_new(o, "file", json_string(v[i].file));
        json_object_set(o, "schedule", v[i].schedule);
        json_object_set(o, "streams", v[i].streams);
        json_t *row = json_object_get(sched, v[i].key);
        json_t *next = row ? json_object_get(row, "next_run_at") : NULL;
        json_t *running = row ? json_object_get(row, "running") : NULL;
        if (running && next && json_is_string(next) &&
            time_us(json_string_value(next)) <= etl_now_us()) {
            /* a run in progress holds the row at "due now" (so a worker
             * taking over would run it): show the schedule's next time */
            char t[48];
            sv_time_text(v[i].planned_us, t, sizeof t);
            next = v[i].planned_us ? json_string(t) : json_null();
        } else {
            next = next ? json_incref(next) : json_null();
        }
        json_object_set_new(o, "next_run_at", next);
        json_object_set(o, "running", running ? running : json_null());
        json_object_set_new(o, "queued", json_boolean(v[i].queued));
        /* a key with no client must not match the runs of a matrix's clients */
        json_t *last = json_null();
        if (runs_of(sv, v[i].store, v[i].key, v[i].client ? 1 : 20, runs, msg, sizeof msg) == 0) {
            size_t k;
            json_t *run;
            json_array_foreach(runs, k, run) {
                if (v[i].client || json_is_null(json_object_get(run, "client"))) {
                    json_object_del(run, "_log");
                    last = json_incref(run);
                    break;
                }
            }
        }
        json_decref(runs);
        json_object_set_new(o, "last_run", last);
        json_array_append_new(out, o);
    }
    json_decref(sched);
    snapshot_free(v, n);
    json_t *body = json_object();
    json_object_set_new(body, "pipelines", out);
    json_object_set_new(body, "worker", json_string(sv->worker_id));
    set_json(r, 200, body);
}

/* The store of a key or name; -1 when unknown. */
static long store_of(etl_serve_t *sv, const char *key)
{
    long s = -1;
    pthread_mutex_lock(&sv->mu);
    for (size_t i = 0; i < sv->npipes && s < 0; i++)
        if (strcmp(sv->pipes[i].key, key) == 0 || strcmp(sv->pipes[i].p->name, key) == 0)
            s = (long)sv->pipes[i].store;
    pthread_mutex_unlock(&sv->mu);
    return s;
}

static int by_started_desc(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *sx = json_string_value(json_object_get(x, "started_at"));
    const char *sy = json_string_value(json_object_get(y, "started_at"));
    int c = strcmp(sy ? sy : "", sx ? sx : "");
    if (c)
        return c;
    json_int_t ix = json_integer_value(json_object_get(x, "id"));
    json_int_t iy = json_integer_value(json_object_get(y, "id"));
    return ix < iy ? 1 : ix > iy ? -1 : 0;
}

static void get_runs(etl_serve_t *sv, const char *pipeline, const char *limit_s,
                     sv_response_t *r)
{
    int64_t limit = 20;
    if (limit_s && (etl_parse_i64(limit_s, &limit) != 0 || limit < 1 || limit > 1000)) {
        set_error(r, 400, "bad limit '%s' (expected 1 to 1000)", limit_s);
        return;
    }
    long only = -1;
    if (pipeline && *pipeline && (only = store_of(sv, pipeline)) < 0) {
        set_error(r, 404, "no pipeline '%s'", pipeline);
        return;
    }
    json_t *all = json_array();
    char msg[ETL_ERRLEN];
    for (size_t s = 0; s < sv->nstores; s++) {
        if (only >= 0 && (size_t)only != s)
            continue;
        if (runs_of(sv, s, pipeline && *pipeline ? pipeline : NULL, (long)limit, all, msg,
                    sizeof msg) != 0) {
            json_decref(all);
            set_error(r, 500, "%s", msg);
            return;
        }
    }
    size_t n = json_array_size(all);
    json_t **v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        v[i] = json_array_get(all, i);
    if (v)
        qsort(v, n, sizeof *v, by_started_desc);
    json_t *runs = json_array();
    for (size_t i = 0; v && i < n && i < (size_t)limit; i++) {
        json_object_del(v[i], "_log");
        json_array_append(runs, v[i]);
    }
    free(v);
    json_decref(all);
    json_t *body = json_object();
    json_object_set_new(body, "runs", runs);
    set_json(r, 200, body);
}

/* Finds run `id` (in the store of `pipeline` when given); its JSON and
 * store, or an error response. */
static json_t *find_run(etl_serve_t *sv, const char *id, const char *pipeline, size_t *store,
                        sv_response_t *r)
{
    int64_t v;
    if (etl_parse_i64(id, &v) != 0 || v <= 0) {
        set_error(r, 400, "bad run id '%s' (expected a positive integer)", id);
        return NULL;
    }
    long only = -1;
    if (pipeline && *pipeline && (only = store_of(sv, pipeline)) < 0) {
        set_error(r, 404, "no pipeline '%s'", pipeline);
        return NULL;
    }
    json_t *found = json_array();
    char msg[ETL_ERRLEN];
    for (size_t s = 0; s < sv->nstores; s++) {
        if (only >= 0 && (size_t)only != s)
            continue;
        size_t before = json_array_size(found);
        if (run_by_id(sv, s, id, found, msg, sizeof msg) != 0) {
            json_decref(found);
            set_error(r, 500, "%s", msg);
            return NULL;
        }
        if (json_array_size(found) > before)
            *store = s;
    }
    size_t n = json_array_size(found);
    json_t *run = n == 1 ? json_incref(json_array_get(found, 0)) : NULL;
    json_decref(found);
    if (n == 0)
        set_error(r, 404, "no run %s", id);
    else if (n > 1)
        set_error(r, 400, "run %s exists in %zu state stores: add ?pipeline=NAME", id, n);
    return run;
}

static void get_run(etl_serve_t *sv, const char *id, const char *pipeline, sv_response_t *r)
{
    size_t store = 0;
    json_t *run = find_run(sv, id, pipeline, &store, r);
    if (!run)
        return;
    json_object_del(run, "_log");
    json_t *streams = json_array();
    char msg[ETL_ERRLEN];
    const char *params[] = {id};
    rows_t rows = {streams, stream_row};
    if (store_query(sv, store,
                    "SELECT stream, direction, status, read, created, updated, unchanged,"
                    " deleted, deferred, failed, duration_ms, error FROM run_streams"
                    " WHERE run_id = ? ORDER BY direction, stream",
                    params, 1, &rows, msg, sizeof msg) != 0) {
        json_decref(streams);
        json_decref(run);
        set_error(r, 500, "%s", msg);
        return;
    }
    json_object_set_new(run, "streams", streams);
    /* records per second so far (the page shows it while the run lasts) */
    json_int_t read = json_integer_value(json_object_get(json_object_get(run, "counts"), "read"));
    json_int_t ms = json_integer_value(json_object_get(run, "duration_ms"));
    json_object_set_new(run, "rate", ms > 0 ? json_real((double)read * 1000.0 / (double)ms)
                                            : json_null());
    set_json(r, 200, run);
}

static void get_run_log(etl_serve_t *sv, const char *id, const char *pipeline, sv_response_t *r)
{
    size_t store = 0;
    json_t *run = find_run(sv, id, pipeline, &store, r);
    if (!run)
        return;
    const char *path = json_string_value(json_object_get(run, "_log"));
    const char *worker = json_string_value(json_object_get(run, "worker"));
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat stt;
    if (fd < 0 || fstat(fd, &stt) != 0) {
        if (fd >= 0)
            close(fd);
        if (!path)
            set_error(r, 404, "run %s kept no log", id);
        else
            set_error(r, 404, "the log of run %s is not on this machine (%s%s%s)", id, path,
                      worker ? ", worker " : "", worker ? worker : "");
        json_decref(run);
        return;
    }
    json_decref(run);
    r->status = 200;
    r->content_type = "text/plain; charset=utf-8";
    r->fd = fd;
    r->fd_size = (uint64_t)stt.st_size;
}

static void get_checkpoints(etl_serve_t *sv, const char *pipeline, sv_response_t *r)
{
    long only = -1;
    if (pipeline && *pipeline && (only = store_of(sv, pipeline)) < 0) {
        set_error(r, 404, "no pipeline '%s'", pipeline);
        return;
    }
    json_t *list = json_array();
    char msg[ETL_ERRLEN], like[300];
    for (size_t s = 0; s < sv->nstores; s++) {
        if (only >= 0 && (size_t)only != s)
            continue;
        rows_t rows = {list, ckpt_row};
        const char *cols = "SELECT pipeline, stream, direction, cursor, cursor_type,"
                           " last_sync_time, last_record_time, records_synced, is_full_sync"
                           " FROM checkpoints";
        char sql[600];
        int rc;
        if (pipeline && *pipeline) {
            snprintf(like, sizeof like, "%s@%%", pipeline);
            const char *params[] = {pipeline, like};
            snprintf(sql, sizeof sql, "%s WHERE pipeline = ? OR pipeline LIKE ?"
                     " ORDER BY pipeline, stream, direction", cols);
            rc = store_query(sv, s, sql, params, 2, &rows, msg, sizeof msg);
        } else {
            snprintf(sql, sizeof sql, "%s ORDER BY pipeline, stream, direction", cols);
            rc = store_query(sv, s, sql, NULL, 0, &rows, msg, sizeof msg);
        }
        if (rc != 0) {
            json_decref(list);
            set_error(r, 500, "%s", msg);
            return;
        }
    }
    json_t *body = json_object();
    json_object_set_new(body, "checkpoints", list);
    set_json(r, 200, body);
}

static void delete_checkpoints(etl_serve_t *sv, const char *key, const char *stream,
                               sv_response_t *r)
{
    char msg[ETL_ERRLEN];
    int rc = sv_reset(sv, key, stream, msg, sizeof msg);
    if (rc == SV_TRIGGER_OK) {
        json_t *body = json_object();
        json_object_set_new(body, "reset", json_string(key));
        json_object_set_new(body, "stream", str_or_null(stream));
        set_json(r, 200, body);
        return;
    }
    set_error(r, rc == SV_TRIGGER_UNKNOWN ? 404 : rc == SV_TRIGGER_BUSY ? 409 : 500, "%s", msg);
}

static void post_run(etl_serve_t *sv, const char *name,
                     const char *(*query)(void *arg, const char *name), void *qarg,
                     sv_response_t *r)
{
    sv_trigger_t t = {name, query(qarg, "client"), 0, -1, query(qarg, "stream")};
    const char *mode = query(qarg, "mode"), *dir = query(qarg, "direction");
    if (mode && strcmp(mode, "full") == 0)
        t.full = 1;
    else if (mode && strcmp(mode, "incremental") != 0) {
        set_error(r, 400, "bad mode '%s' (expected full or incremental)", mode);
        return;
    }
    if (dir) {
        if (strcmp(dir, "forward") == 0)
            t.direction = ETL_DIR_FORWARD;
        else if (strcmp(dir, "reverse") == 0)
            t.direction = ETL_DIR_REVERSE;
        else if (strcmp(dir, "both") == 0)
            t.direction = ETL_DIR_BOTH;
        else {
            set_error(r, 400, "bad direction '%s' (expected forward, reverse or both)", dir);
            return;
        }
    }
    if (t.client && !*t.client)
        t.client = NULL;
    if (t.streams && !*t.streams) {
        set_error(r, 400, "empty stream= (expected stream names separated by commas)");
        return;
    }
    sv_started_t *v;
    size_t n;
    char msg[ETL_ERRLEN];
    int rc = sv_trigger(sv, &t, &v, &n, msg, sizeof msg);
    if (rc != SV_TRIGGER_OK) {
        set_error(r, rc == SV_TRIGGER_UNKNOWN ? 404 : rc == SV_TRIGGER_BUSY ? 409
                     : rc == SV_TRIGGER_BAD   ? 400
                                              : 500,
                  "%s", msg);
        return;
    }
    json_t *runs = json_array();
    size_t errors = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "key", json_string(v[i].key));
        json_object_set_new(o, "client", str_or_null(v[i].client));
        json_object_set_new(o, "run_id", v[i].run_id ? json_integer(v[i].run_id) : json_null());
        json_object_set_new(o, "queued", json_boolean(!v[i].run_id && !v[i].error));
        if (v[i].error) {
            json_object_set_new(o, "error", json_string(v[i].error));
            errors++;
        }
        json_array_append_new(runs, o);
    }
    if (n && errors == n) {
        set_error(r, 500, "%s", v[0].error);
        json_decref(runs);
        sv_started_free(v, n);
        return;
    }
    json_t *body = json_object();
    char name_only[256];
    const char *client;
    split_key(name, name_only, sizeof name_only, &client);
    json_object_set_new(body, "pipeline", json_string(name_only));
    json_object_set(body, "run_id", n ? json_object_get(json_array_get(runs, 0), "run_id")
                                      : json_null());
    json_object_set_new(body, "runs", runs);
    sv_started_free(v, n);
    set_json(r, 202, body);
}

/* ---- routing ---------------------------------------------------------- */

/* Splits "/api/a/b/c" into at most max segments (after "api"). */
static size_t segments(const char *path, char seg[][256], size_t max)
{
    size_t n = 0;
    const char *p = path + strlen("/api");
    while (*p == '/')
        p++;
    while (*p && n < max + 1) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n < max) {
            if (len >= 256)
                len = 255;
            memcpy(seg[n], p, len);
            seg[n][len] = '\0';
        }
        n++;
        p += e ? len + 1 : len;
    }
    return n;
}

static int method_is(const char *m, const char *want)
{
    return strcmp(m, want) == 0 || (strcmp(want, "GET") == 0 && strcmp(m, "HEAD") == 0);
}

static void not_allowed(sv_response_t *r, const char *allow)
{
    set_error(r, 405, "method not allowed here (allowed: %s)", allow);
    r->allow = allow;
}

void sv_api_handle(etl_serve_t *sv, const char *method, const char *path,
                   const char *(*query)(void *arg, const char *name), void *qarg,
                   sv_response_t *r)
{
    char seg[4][256];
    size_t n = segments(path, seg, 4);
    const char *pipeline = query(qarg, "pipeline");
    if (n == 1 && strcmp(seg[0], "pipelines") == 0) {
        if (!method_is(method, "GET"))
            return not_allowed(r, "GET");
        return get_pipelines(sv, r);
    }
    if (n == 3 && strcmp(seg[0], "pipelines") == 0 && strcmp(seg[2], "runs") == 0) {
        if (!method_is(method, "POST"))
            return not_allowed(r, "POST");
        return post_run(sv, seg[1], query, qarg, r);
    }
    if (n == 1 && strcmp(seg[0], "runs") == 0) {
        if (!method_is(method, "GET"))
            return not_allowed(r, "GET");
        return get_runs(sv, pipeline, query(qarg, "limit"), r);
    }
    if (n == 2 && strcmp(seg[0], "runs") == 0) {
        if (!method_is(method, "GET"))
            return not_allowed(r, "GET");
        return get_run(sv, seg[1], pipeline, r);
    }
    if (n == 3 && strcmp(seg[0], "runs") == 0 && strcmp(seg[2], "log") == 0) {
        if (!method_is(method, "GET"))
            return not_allowed(r, "GET");
        return get_run_log(sv, seg[1], pipeline, r);
    }
    if (n == 1 && strcmp(seg[0], "checkpoints") == 0) {
        if (!method_is(method, "GET"))
            return not_allowed(r, "GET");
        return get_checkpoints(sv, pipeline, r);
    }
    if ((n == 2 || n == 3) && strcmp(seg[0], "checkpoints") == 0) {
        if (!method_is(method, "DELETE"))
            return not_allowed(r, "DELETE");
        return delete_checkpoints(sv, seg[1], n == 3 ? seg[2] : NULL, r);
    }
    set_error(r, 404, "no such endpoint: %s %.300s", method, path);
}
