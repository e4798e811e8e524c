/*
 * status.c - `etl status` and `etl reset`: what the state store knows of a
 * pipeline, as a table or as JSON, and forgetting it.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "run.h"
#include "state.h"
#include "util.h"

typedef struct rows {
    json_t *arr;
} rows_t;

/* Collects query rows as JSON objects; numbers stay numbers. */
static int collect(void *arg, int n, const char *const *cols, const char *const *names)
{
    rows_t *r = arg;
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        json_t *v;
        int64_t x;
        if (!cols[i])
            v = json_null();
        else if (etl_parse_i64(cols[i], &x) == 0 && strcmp(names[i], "cursor") != 0 &&
                 strcmp(names[i], "key") != 0)
            v = json_integer(x);
        else
            v = json_string(cols[i]);
        json_object_set_new(o, names[i], v);
    }
    json_array_append_new(r->arr, o);
    return 0;
}

static json_t *query(etl_state_t *st, const char *sql, const char *const *params, size_t n)
{
    rows_t r = {json_array()};
    if (etl_state_query(st, sql, params, n, collect, &r) != 0) {
        json_decref(r.arr);
        return NULL;
    }
    return r.arr;
}

static const char sql_last_run[] =
    "SELECT id, status, mode, direction, triggered_by, started_at, finished_at, error, log_file"
    " FROM runs WHERE pipeline=?1 AND coalesce(client,'')=coalesce(?2,'')"
    " ORDER BY id DESC LIMIT 1";

static const char sql_streams[] =
    "SELECT s.stream, s.direction, c.cursor, c.cursor_type, c.last_sync_time,"
    " c.records_synced, c.is_full_sync,"
    " (SELECT count(*) FROM deferred d WHERE d.sid=s.id) AS deferred_now,"
    " (SELECT count(*) FROM dead_letters x WHERE x.pipeline=s.pipeline AND x.stream=s.stream"
    "   AND x.direction=s.direction) AS dead_letters,"
    " rs.run_id, rs.status, rs.read, rs.created, rs.updated, rs.unchanged, rs.deleted,"
    " rs.deferred, rs.failed, rs.duration_ms, rs.error"
    " FROM etl_streams s"
    " LEFT JOIN checkpoints c ON c.pipeline=s.pipeline AND c.stream=s.stream"
    "   AND c.direction=s.direction"
    " LEFT JOIN run_streams rs ON rs.stream=s.stream AND rs.direction=s.direction AND rs.run_id="
    "   (SELECT max(r2.run_id) FROM run_streams r2 JOIN runs ru ON ru.id=r2.run_id"
    "    WHERE ru.pipeline=?2 AND coalesce(ru.client,'')=coalesce(?3,'') AND r2.stream=s.stream"
    "    AND r2.direction=s.direction)"
    " WHERE s.pipeline=?1 ORDER BY s.direction, s.id";

static const char sql_deferred[] =
    "SELECT s.stream, s.direction, d.key, d.reason, d.tries, d.first_seen, d.last_try"
    " FROM deferred d JOIN etl_streams s ON s.id=d.sid WHERE s.pipeline=?1"
    " ORDER BY s.stream, d.key LIMIT 100";

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long num(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

/* Streams in the pipeline's own order. */
static int stream_rank(const etl_pipeline_t *p, const char *name)
{
    for (size_t k = 0; k < p->nstreams; k++)
        if (strcmp(p->streams[p->order[k]].name, name) == 0)
            return (int)k;
    return (int)p->nstreams;
}

static const etl_pipeline_t *sort_p;
static int cmp_streams(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int d = strcmp(str(x, "direction"), str(y, "direction"));
    if (d)
        return d; /* "forward" sorts before "reverse" */
    return stream_rank(sort_p, str(x, "stream")) - stream_rank(sort_p, str(y, "stream"));
}

static void print_table(const etl_pipeline_t *p, json_t *doc)
{
    json_t *run = json_object_get(doc, "last_run");
    printf("pipeline %s%s%s   state %s\n", p->name, p->client ? "@" : "",
           p->client ? p->client : "", str(doc, "state"));
    if (json_is_object(run))
        printf("last run %lld: %s (%s, %s), started %s%s%s%s%s\n", num(run, "id"),
               str(run, "status"), str(run, "mode"), str(run, "direction"),
               str(run, "started_at"), *str(run, "finished_at") ? ", finished " : "",
               str(run, "finished_at"), *str(run, "error") ? "\n  error: " : "",
               str(run, "error"));
    else
        printf("no runs yet\n");
    json_t *streams = json_object_get(doc, "streams");
    size_t i;
    json_t *s;
    printf("  %-22s %-8s %-28s %9s | %-9s %8s %8s %9s %8s %7s | %8s %6s\n", "stream", "dir",
           "checkpoint", "synced", "last run", "created", "updated", "unchanged", "deleted",
           "failed", "deferred", "dead");
    json_array_foreach(streams, i, s)
    {
        const char *cursor = str(s, "cursor");
        printf("  %-22s %-8s %-28s %9lld | %-9s %8lld %8lld %9lld %8lld %7lld | %8lld %6lld\n",
               str(s, "stream"), str(s, "direction"), *cursor ? cursor : "-",
               num(s, "records_synced"), *str(s, "status") ? str(s, "status") : "-",
               num(s, "created"), num(s, "updated"), num(s, "unchanged"), num(s, "deleted"),
               num(s, "failed"), num(s, "deferred_now"), num(s, "dead_letters"));
    }
    json_t *def = json_object_get(doc, "deferred");
    if (json_array_size(def)) {
        printf("deferred records (waiting for a parent):\n");
        json_array_foreach(def, i, s)
        {
            printf("  %s %s: %s (tries %lld, since %s)\n", str(s, "stream"), str(s, "key"),
                   str(s, "reason"), num(s, "tries"), str(s, "first_seen"));
        }
    }
}

static int status_one(const etl_pipeline_t *p, int as_json)
{
    char err[ETL_ERRLEN];
    etl_state_t *st = etl_state_open(p->state_url, err, sizeof err);
    if (!st) {
        fprintf(stderr, "%s\n", err);
        return ETL_EXIT_FAILED;
    }
    char *key = etl_pipeline_key(p);
    const char *p1[] = {p->name, p->client};
    const char *p3[] = {key, p->name, p->client};
    const char *pk[] = {key};
    json_t *runs = query(st, sql_last_run, p1, 2);
    json_t *streams = query(st, sql_streams, p3, 3);
    json_t *deferred = query(st, sql_deferred, pk, 1);
    int rc = ETL_EXIT_OK;
    if (!runs || !streams || !deferred) {
        fprintf(stderr, "%s\n", etl_state_error(st));
        rc = ETL_EXIT_FAILED;
    } else {
        /* order the rows like the pipeline, drop streams it no longer has */
        size_t n = json_array_size(streams);
        json_t **v = calloc(n + 1, sizeof *v);
        json_t *sorted = json_array();
        for (size_t i = 0; v && i < n; i++)
            v[i] = json_array_get(streams, i);
        sort_p = p;
        if (v)
            qsort(v, n, sizeof *v, cmp_streams);
        for (size_t i = 0; v && i < n; i++)
            if (etl_pipeline_stream(p, str(v[i], "stream")) >= 0)
                json_array_append(sorted, v[i]);
        free(v);
        json_t *doc = json_object();
        json_object_set_new(doc, "pipeline", json_string(p->name));
        json_object_set_new(doc, "client", p->client ? json_string(p->client) : json_null());
        /* a PostgreSQL URL may carry its password: never shown */
        char *shown = etl_redact_dup(p->state_url);
        json_object_set_new(doc, "state", json_string(shown ? shown : ""));
        free(shown);
        json_object_set_new(doc, "last_run", json_array_size(runs)
                                                 ? json_incref(json_array_get(runs, 0))
                                                 : json_null());
        json_object_set_new(doc, "streams", sorted);
        json_object_set(doc, "deferred", deferred);
        if (as_json) {
            char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (text)
                puts(text);
            free(text);
        } else {
            print_table(p, doc);
        }
        json_decref(doc);
    }
    json_decref(runs);
    json_decref(streams);
    json_decref(deferred);
    free(key);
    etl_state_close(st);
    return rc;
}

int cli_status(int argc, char **argv)
{
    const char *path = NULL, *client = NULL, *v;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        int m = 0;
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if ((m = cli_opt_value(argc, argv, &i, "--client", &v)))
            client = v;
        else if (argv[i][0] == '-')
            return cli_usage_error("unknown option '%s' for status", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("unexpected argument '%s'", argv[i]);
        if (m < 0)
            return cli_usage_error("option %s needs a value", argv[i]);
    }
    if (!path)
        return cli_usage_error("%s", "status needs a pipeline file");
    etl_pipeline_t **ps;
    size_t n;
    int rc = cli_load(path, client, &ps, &n);
    if (rc)
        return rc;
    if (as_json && n > 1)
        printf("[\n");
    for (size_t i = 0; i < n; i++) {
        if (as_json && i)
            printf(",\n");
        int r = status_one(ps[i], as_json);
        if (r > rc)
            rc = r;
    }
    if (as_json && n > 1)
        printf("]\n");
    etl_pipelines_free(ps, n);
    return rc;
}

int cli_reset(int argc, char **argv)
{
    const char *path = NULL, *client = NULL, *stream = NULL, *v;
    for (int i = 0; i < argc; i++) {
        int m = 0;
        if ((m = cli_opt_value(argc, argv, &i, "--client", &v)))
            client = v;
        else if ((m = cli_opt_value(argc, argv, &i, "--stream", &v)))
            stream = v;
        else if (argv[i][0] == '-')
            return cli_usage_error("unknown option '%s' for reset", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("unexpected argument '%s'", argv[i]);
        if (m < 0)
            return cli_usage_error("option %s needs a value", argv[i]);
    }
    if (!path)
        return cli_usage_error("%s", "reset needs a pipeline file");
    etl_pipeline_t **ps;
    size_t n;
    int rc = cli_load(path, client, &ps, &n);
    if (rc)
        return rc;
    if (stream && etl_pipeline_stream(ps[0], stream) < 0) {
        etl_pipelines_free(ps, n);
        return cli_usage_error("unknown stream '%s'", stream);
    }
    for (size_t i = 0; i < n; i++) {
        char err[ETL_ERRLEN] = "";
        char *key = etl_pipeline_key(ps[i]);
        if (etl_reset(ps[i], stream, err, sizeof err) != 0) {
            fprintf(stderr, "reset %s: %s\n", key ? key : "?", err);
            rc = ETL_EXIT_FAILED;
        } else {
            printf("reset %s%s%s: checkpoints, ledger and deferred records forgotten\n", key,
                   stream ? ", stream " : "", stream ? stream : "");
        }
        free(key);
    }
    etl_pipelines_free(ps, n);
    return rc;
}
