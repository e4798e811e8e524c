/*
 * serve_internal.h - what the parts of `etl serve` share: the scheduler and
 * its worker pool (serve.c), the admin HTTP server (admin.c), its JSON
 * handlers (admin_api.c) and the metrics (metrics.c).
 *
 * Locking: sv->mu guards the pipeline table, the job list and the metrics.
 * Each sv_store_t has one state store handle for the scheduler side and one
 * for the admin server (behind api_mu), since a handle serves one thread at
 * a time. Lease claims, renewals and releases on the scheduler's handle are
 * made with sv->mu held (a trigger or a reset from the admin thread claims
 * through it too); the admin server's reads are made outside sv->mu.
 */
#ifndef ETL_CORE_SERVE_INTERNAL_H
#define ETL_CORE_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "run.h"
#include "serve.h"
#include "state.h"
#include "util.h"

typedef struct sv_metrics sv_metrics_t;

/* One pipeline file as last loaded; jobs keep it alive across reloads. */
typedef struct sv_file {
    char *path;
    etl_pipeline_t **p;
    size_t n;
    int refs; /* the table's reference plus one per job */
} sv_file_t;

#define SV_MAX_STORES 64

typedef struct sv_store {
    char *url;
    etl_state_t *sched; /* the scheduler thread's */
    etl_state_t *api;   /* the admin server's, behind api_mu */
    pthread_mutex_t api_mu;
} sv_store_t;

typedef enum sv_job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE } sv_job_state_t;

typedef struct sv_job {
    struct etl_serve *sv;
    char *key;           /* the pipeline's state key */
    etl_pipeline_t *p;   /* borrowed from file */
    sv_file_t *file;
    size_t store;
    int manual;          /* started through the API */
    int64_t due_us;      /* scheduled time it runs for (0: manual) */
    int64_t saved_next;  /* manual runs: next_run_at to restore after */
    /* what etl_run gets */
    int full;
    int direction;       /* -1: the pipeline's */
    char *streams;
    atomic_int cancel;
    /* progress */
    sv_job_state_t state;
    int64_t run_id;      /* once started */
    int started;         /* etl_run reached its start (run_id known or failed) */
    int waiters;         /* triggers waiting for run_id: not reaped before they read it */
    int64_t renewed_us;  /* last lease renewal (monotonic) */
    int64_t t0;          /* when it started running (monotonic), 0: never ran */
    int lease_lost;
    int rc;
    etl_run_result_t res;
    struct sv_job *next;
} sv_job_t;

/* A schedulable unit: a pipeline, or one client of a matrix pipeline. */
typedef struct sv_pipe {
    char *key;
    etl_pipeline_t *p; /* borrowed from file */
    sv_file_t *file;
    size_t store;
    sv_job_t *job;     /* queued or running here, or NULL */
} sv_pipe_t;

typedef struct etl_serve {
    const etl_serve_opts_t *o;
    char worker_id[256];
    int64_t lease_us;
    int nworkers;

    pthread_mutex_t mu;
    pthread_cond_t wake;    /* the scheduler: a job finished or was queued */
    pthread_cond_t work;    /* the pool: a job is queued */
    pthread_cond_t started; /* the admin server: a job reached its start */
    sv_file_t **files;
    size_t nfiles;
    sv_pipe_t *pipes;
    size_t npipes;
    sv_store_t *stores;
    size_t nstores;
    sv_job_t *jobs;         /* queued, running and done-but-not-reaped, oldest first */
    int busy;               /* jobs running */
    int stopping;
    pthread_t *threads;
    sv_metrics_t *metrics;
    int64_t started_us;
} etl_serve_t;

/* serve.c: a manual run. Returns 1 queued (*jobs_out the jobs, one per key;
 * the caller may wait with sv_wait_started), 0 a lease is held elsewhere
 * (msg says by whom), -1 error (msg). `client` NULL: every client. */
typedef struct sv_trigger {
    const char *name;   /* pipeline name or key */
    const char *client; /* or NULL */
    int full;
    int direction;      /* -1: the pipeline's */
    const char *streams;
} sv_trigger_t;

enum { SV_TRIGGER_ERROR = -1, SV_TRIGGER_BUSY = 0, SV_TRIGGER_OK = 1, SV_TRIGGER_UNKNOWN = 2,
       SV_TRIGGER_BAD = 3 };
typedef struct sv_started {
    char *key;
    char *client;
    int64_t run_id; /* 0: still queued */
    char *error;    /* the run could not start */
} sv_started_t;
int sv_trigger(etl_serve_t *sv, const sv_trigger_t *t, sv_started_t **out, size_t *nout,
               char *msg, size_t msglen);
void sv_started_free(sv_started_t *v, size_t n);

/* Forgets the checkpoints, ledger and deferred records of a pipeline (or of
 * one stream) while holding its lease. SV_TRIGGER_OK, _UNKNOWN, _BUSY or
 * _ERROR, with msg. */
int sv_reset(etl_serve_t *sv, const char *key, const char *stream, char *msg, size_t msglen);

/* The pipe of a key (or of a name when it has one pipe); sv->mu held. */
sv_pipe_t *sv_find_pipe(etl_serve_t *sv, const char *key);
/* Whether any pipe uses this name (a matrix pipeline's name). */
int sv_name_known(etl_serve_t *sv, const char *name);

/* admin.c: the HTTP server. */
typedef struct sv_admin sv_admin_t;
sv_admin_t *sv_admin_start(etl_serve_t *sv, const char *listen, const char *token, char *err,
                           size_t errlen);
void sv_admin_stop(sv_admin_t *a);

/* admin_api.c: one API request -> status and body. */
typedef struct sv_response {
    int status;
    const char *content_type;
    etl_buf_t body;
    const char *allow; /* for 405 */
    int fd;            /* >= 0: the body is this file (a run log) */
    uint64_t fd_size;
} sv_response_t;
/* A JSON error answer: {"error": msg}. */
void sv_error(sv_response_t *r, int status, const char *msg);
void sv_api_handle(etl_serve_t *sv, const char *method, const char *path,
                   const char *(*query)(void *arg, const char *name), void *qarg,
                   sv_response_t *res);

/* metrics.c */
sv_metrics_t *sv_metrics_new(void);
void sv_metrics_free(sv_metrics_t *m);
/* A finished run (sv->mu held). */
void sv_metrics_run(sv_metrics_t *m, const char *key, const etl_run_result_t *res,
                    double seconds);
void sv_metrics_skipped(sv_metrics_t *m, const char *key);
/* The Prometheus text exposition. */
void sv_metrics_render(etl_serve_t *sv, etl_buf_t *out);

/* JSON time text of microseconds (UTC), "" for 0. */
void sv_time_text(int64_t us, char *buf, size_t n);

#endif
