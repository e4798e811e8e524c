/*
 * metrics.c - /metrics in the Prometheus text format.
 *
 * Counters of what this worker ran (runs, records, durations) live in
 * memory and start at zero with the process, as Prometheus expects of
 * counters. Gauges that describe the shared state (last success, deferred
 * and dead-letter rows, next run times) are read from the state stores at
 * scrape time, so every worker reports the same, current values.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl/http.h"
#include "etl/record.h"
#include "serve_internal.h"

static const double buckets[] = {1, 5, 15, 60, 300, 900, 3600, 14400};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct series {
    char *labels; /* rendered: pipeline="a",status="ok" */
    double value;
} series_t;

typedef struct family {
    series_t *v;
    size_t n, cap;
} family_t;

typedef struct hist {
    char *pipeline;
    uint64_t counts[NBUCKETS];
    uint64_t count;
    double sum;
} hist_t;

struct sv_metrics {
    family_t runs;    /* pipeline, status */
    family_t records; /* pipeline, stream, direction, outcome */
    hist_t *hist;
    size_t nhist;
};

sv_metrics_t *sv_metrics_new(void) { return calloc(1, sizeof(sv_metrics_t)); }

static void family_free(family_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].labels);
    free(f->v);
}

void sv_metrics_free(sv_metrics_t *m)
{
    if (!m)
        return;
    family_free(&m->runs);
    family_free(&m->records);
    for (size_t i = 0; i < m->nhist; i++)
        free(m->hist[i].pipeline);
    free(m->hist);
    free(m);
}

/* Label values escaped as the text format wants (\\, \", \n). */
static void label(etl_buf_t *b, const char *name, const char *value, int first)
{
    if (!first)
        etl_buf_addc(b, ',');
    etl_buf_adds(b, name);
    etl_buf_adds(b, "=\"");
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            etl_buf_addc(b, '\\');
        if (*p == '\n')
            etl_buf_adds(b, "\\n");
        else
            etl_buf_addc(b, *p);
    }
    etl_buf_addc(b, '"');
}

static void family_add(family_t *f, etl_buf_t *labels, double delta)
{
    if (labels->oom || !labels->data)
        return;
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->v[i].labels, labels->data) == 0) {
            f->v[i].value += delta;
            return;
        }
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        series_t *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return;
        f->v = v;
        f->cap = cap;
    }
    char *l = etl_strdup(labels->data);
    if (!l)
        return;
    f->v[f->n].labels = l;
    f->v[f->n].value = delta;
    f->n++;
}

static void count_run(sv_metrics_t *m, const char *key, const char *status)
{
    etl_buf_t b;
    etl_buf_init(&b);
    label(&b, "pipeline", key, 1);
    label(&b, "status", status, 0);
    family_add(&m->runs, &b, 1);
    etl_buf_free(&b);
}

void sv_metrics_skipped(sv_metrics_t *m, const char *key) { count_run(m, key, "skipped"); }

void sv_metrics_run(sv_metrics_t *m, const char *key, const etl_run_result_t *res,
                    double seconds)
{
    count_run(m, key, res->status ? res->status : "failed");
    for (size_t i = 0; i < res->nstreams; i++) {
        const etl_stream_result_t *s = &res->streams[i];
        const int64_t v[] = {s->counts.read,    s->counts.created, s->counts.updated,
                             s->counts.unchanged, s->counts.deleted, s->counts.deferred,
                             s->counts.failed};
        static const char *const names[] = {"read",    "created",  "updated", "unchanged",
                                            "deleted", "deferred", "failed"};
        for (size_t k = 0; k < 7; k++) {
            etl_buf_t b;
            etl_buf_init(&b);
            label(&b, "pipeline", key, 1);
            label(&b, "stream", s->stream, 0);
            label(&b, "direction", s->direction, 0);
            label(&b, "outcome", names[k], 0);
            family_add(&m->records, &b, (double)v[k]);
            etl_buf_free(&b);
        }
    }
    hist_t *h = NULL;
    for (size_t i = 0; i < m->nhist && !h; i++)
        if (strcmp(m->hist[i].pipeline, key) == 0)
            h = &m->hist[i];
    if (!h) {
        hist_t *v = realloc(m->hist, (m->nhist + 1) * sizeof *v);
        if (!v)
            return;
        m->hist = v;
        h = &v[m->nhist];
        memset(h, 0, sizeof *h);
        if (!(h->pipeline = etl_strdup(key)))
            return;
        m->nhist++;
    }
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= buckets[i])
            h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

static void family_render(etl_buf_t *out, const char *name, const family_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        etl_buf_printf(out, "%s{%s} %.17g\n", name, f->v[i].labels, f->v[i].value);
}

/* ---- gauges from the state stores -------------------------------------- */

typedef struct gauge_ctx {
    etl_buf_t *out;
    const char *metric;
    const char *const *labels; /* names of the first columns; the last column is the value */
    size_t nlabels;
    int time_value; /* the value is a timestamp text: seconds since the epoch */
} gauge_ctx_t;

static int gauge_row(void *arg, int ncols, const char *const *cols, const char *const *names)
{
    (void)names;
    gauge_ctx_t *g = arg;
    if ((size_t)ncols != g->nlabels + 1 || !cols[g->nlabels])
        return 0;
    double value;
    if (g->time_value) {
        int64_t us;
        if (etl_ts_parse(cols[g->nlabels], strlen(cols[g->nlabels]), &us) != 0)
            return 0;
        value = (double)us / 1e6;
    } else {
        value = strtod(cols[g->nlabels], NULL);
    }
    etl_buf_adds(g->out, g->metric);
    etl_buf_addc(g->out, '{');
    for (size_t i = 0; i < g->nlabels; i++)
        label(g->out, g->labels[i], cols[i], i == 0);
    etl_buf_printf(g->out, "} %.17g\n", value);
    return 0;
}

static void store_gauge(etl_serve_t *sv, etl_buf_t *out, const char *metric, const char *help,
                        const char *sql, const char *const *labels, size_t nlabels,
                        int time_value)
{
    etl_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", metric, help, metric);
    gauge_ctx_t g = {out, metric, labels, nlabels, time_value};
    for (size_t s = 0; s < sv->nstores; s++) {
        pthread_mutex_lock(&sv->stores[s].api_mu);
        etl_state_query(sv->stores[s].api, sql, NULL, 0, gauge_row, &g);
        pthread_mutex_unlock(&sv->stores[s].api_mu);
    }
}

typedef struct next_ctx {
    etl_buf_t *out;
    etl_serve_t *sv;
} next_ctx_t;

static int next_row(void *arg, const char *key, int64_t next_us, const char *owner,
                    int64_t until_us, int64_t run_id)
{
    (void)owner;
    (void)until_us;
    (void)run_id;
    next_ctx_t *n = arg;
    if (next_us <= 0)
        return 0;
    etl_buf_adds(n->out, "etl_next_run_timestamp_seconds{");
    label(n->out, "pipeline", key, 1);
    etl_buf_printf(n->out, "} %.6f\n", (double)next_us / 1e6);
    return 0;
}

static void http_retry_row(void *arg, const char *host, long status, uint64_t retries)
{
    etl_buf_t *out = arg;
    char st[24];
    snprintf(st, sizeof st, "%ld", status);
    etl_buf_adds(out, "etl_http_retries_total{");
    label(out, "host", host, 1);
    label(out, "status", status > 0 ? st : "network", 0);
    etl_buf_printf(out, "} %llu\n", (unsigned long long)retries);
}

void sv_metrics_render(etl_serve_t *sv, etl_buf_t *out)
{
    pthread_mutex_lock(&sv->mu);
    sv_metrics_t *m = sv->metrics;
    etl_buf_adds(out, "# HELP etl_runs_total Runs this worker finished (or skipped), by "
                      "pipeline and status.\n# TYPE etl_runs_total counter\n");
    family_render(out, "etl_runs_total", &m->runs);
    etl_buf_adds(out, "# HELP etl_records_total Records this worker's runs handled, by "
                      "pipeline, stream, direction and outcome.\n"
                      "# TYPE etl_records_total counter\n");
    family_render(out, "etl_records_total", &m->records);
    etl_buf_adds(out, "# HELP etl_run_duration_seconds How long runs took.\n"
                      "# TYPE etl_run_duration_seconds histogram\n");
    for (size_t i = 0; i < m->nhist; i++) {
        const hist_t *h = &m->hist[i];
        for (size_t k = 0; k < NBUCKETS; k++) {
            etl_buf_adds(out, "etl_run_duration_seconds_bucket{");
            label(out, "pipeline", h->pipeline, 1);
            etl_buf_printf(out, ",le=\"%g\"} %llu\n", buckets[k],
                           (unsigned long long)h->counts[k]);
        }
        etl_buf_adds(out, "etl_run_duration_seconds_bucket{");
        label(out, "pipeline", h->pipeline, 1);
        etl_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
        etl_buf_adds(out, "etl_run_duration_seconds_sum{");
        label(out, "pipeline", h->pipeline, 1);
        etl_buf_printf(out, "} %.6f\n", h->sum);
        etl_buf_adds(out, "etl_run_duration_seconds_count{");
        label(out, "pipeline", h->pipeline, 1);
        etl_buf_printf(out, "} %llu\n", (unsigned long long)h->count);
    }
    etl_buf_adds(out, "# HELP etl_running Runs in progress on this worker.\n"
                      "# TYPE etl_running gauge\n");
    for (size_t i = 0; i < sv->npipes; i++) {
        etl_buf_adds(out, "etl_running{");
        label(out, "pipeline", sv->pipes[i].key, 1);
        etl_buf_printf(out, "} %d\n",
                       sv->pipes[i].job && sv->pipes[i].job->state == JOB_RUNNING);
    }
    etl_buf_printf(out, "# HELP etl_workers Runs this worker may run at once.\n"
                        "# TYPE etl_workers gauge\netl_workers %d\n", sv->nworkers);
    etl_buf_printf(out, "# HELP etl_start_time_seconds When this worker started.\n"
                        "# TYPE etl_start_time_seconds gauge\netl_start_time_seconds %.6f\n",
                   (double)sv->started_us / 1e6);
    pthread_mutex_unlock(&sv->mu);

    static const char *const by_pipeline[] = {"pipeline", "client"};
    store_gauge(sv, out, "etl_last_success_timestamp_seconds",
                "When the last successful run of a pipeline finished.",
                "SELECT pipeline, coalesce(client, ''), max(finished_at) FROM runs"
                " WHERE status = 'ok' GROUP BY pipeline, client",
                by_pipeline, 2, 1);
    static const char *const by_stream[] = {"pipeline", "stream", "direction"};
    store_gauge(sv, out, "etl_deferred_records",
                "Records waiting for their parent (retried every run).",
                "SELECT e.pipeline, e.stream, e.direction, count(*) FROM deferred d"
                " JOIN etl_streams e ON e.id = d.sid GROUP BY e.pipeline, e.stream, e.direction",
                by_stream, 3, 0);
    store_gauge(sv, out, "etl_dead_letters", "Records a sink refused, kept for inspection.",
                "SELECT pipeline, stream, direction, count(*) FROM dead_letters"
                " GROUP BY pipeline, stream, direction",
                by_stream, 3, 0);
    etl_buf_adds(out, "# HELP etl_next_run_timestamp_seconds When a pipeline runs next.\n"
                      "# TYPE etl_next_run_timestamp_seconds gauge\n");
    for (size_t s = 0; s < sv->nstores; s++) {
        next_ctx_t n = {out, sv};
        pthread_mutex_lock(&sv->stores[s].api_mu);
        etl_state_schedule_list(sv->stores[s].api, next_row, &n);
        pthread_mutex_unlock(&sv->stores[s].api_mu);
    }
    etl_buf_adds(out, "# HELP etl_http_retries_total HTTP requests retried, by host and the "
                      "status that caused it (network: no response).\n"
                      "# TYPE etl_http_retries_total counter\n");
    etl_http_retry_counts(http_retry_row, out);
}
