/*
 * run.h - one run of a pipeline: `etl run`, `etl check`, and what `etl serve`
 * calls for each scheduled run.
 *
 * etl_run() returns ETL_EXIT_OK when every stream finished, ETL_EXIT_FAILED
 * when the run started and something failed (the state store and the sink
 * keep everything committed before the failure; nothing half-written), and
 * ETL_EXIT_CONFIG when the pipeline could not start (unknown plugin, bad
 * option, unreachable state store): nothing was touched.
 */
#ifndef ETL_CORE_RUN_H
#define ETL_CORE_RUN_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "state.h"

enum { ETL_EXIT_OK = 0, ETL_EXIT_FAILED = 1, ETL_EXIT_CONFIG = 2 };

typedef struct etl_run_opts {
    int full;                 /* --full */
    const char *since;        /* --since TIME, or NULL */
    int64_t window;           /* --window, seconds; 0 = the pipeline's */
    const char *streams;      /* --stream a,b, or NULL for all */
    int direction;            /* --direction, or -1 for the pipeline's */
    int dry_run;              /* --dry-run: everything but the commits */
    const char *triggered_by; /* "cli" by default */
    atomic_int *cancel;       /* set to stop the run after the batch in flight; may be NULL */
    int progress;             /* draw the live progress line (terminal) */
    /* The caller (etl serve) already holds the pipeline's lease in the state
     * store under this owner: the run takes no lock file and no lease of its
     * own, and records its run id on that lease. NULL: `etl run` takes the
     * lock file beside a SQLite store, or the lease on a PostgreSQL one. */
    const char *lease_owner;
    /* called once the run has its id in the run history (etl serve answers
     * a trigger with it); not called when the run cannot start */
    void (*on_start)(void *arg, int64_t run_id);
    void *on_start_arg;
} etl_run_opts_t;

typedef struct etl_stream_result {
    char *stream;
    const char *direction;
    const char *status; /* "ok" | "failed" | "skipped" | "cancelled" */
    etl_counts_t counts;
    int64_t duration_ms;
    char *error;
} etl_stream_result_t;

typedef struct etl_run_result {
    int64_t run_id;
    const char *status; /* "ok" | "failed" | "cancelled" */
    char error[1024];
    etl_stream_result_t *streams;
    size_t nstreams;
    char *log_file;
} etl_run_result_t;

ETL_API int etl_run(const etl_pipeline_t *p, const etl_run_opts_t *o, etl_run_result_t *res);
ETL_API void etl_run_result_free(etl_run_result_t *res);
/* The end-of-run table (stream, direction, counts, time). */
ETL_API void etl_run_print_summary(FILE *f, const etl_pipeline_t *p, const etl_run_result_t *res);

/* `etl check`: loads the plugins, binds their options (config errors ->
 * ETL_EXIT_CONFIG), opens both ends and runs their connection tests and
 * discovery of every stream (failures -> ETL_EXIT_FAILED). Messages go to
 * `out`, one line per check. */
ETL_API int etl_check(const etl_pipeline_t *p, FILE *out, char *err, size_t errlen);

/* `etl reset`: forgets the checkpoints, ledger and deferred records of the
 * pipeline (of one stream when stream is not NULL) under the same lock file
 * and lease as a run, so it never pulls the state from under a running one.
 * 0, or ETL_EXIT_FAILED with err filled. */
ETL_API int etl_reset(const etl_pipeline_t *p, const char *stream, char *err, size_t errlen);

/* The state key of a pipeline: its name, or "name@client". Caller frees. */
ETL_API char *etl_pipeline_key(const etl_pipeline_t *p);

#endif
