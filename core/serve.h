/*
 * serve.h - `etl serve`: pipelines on their schedules, a pool of workers,
 * leases in the state store so several processes share the work, and the
 * admin HTTP API with its status page and /metrics.
 */
#ifndef ETL_CORE_SERVE_H
#define ETL_CORE_SERVE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifndef ETL_API
#define ETL_API __attribute__((visibility("default")))
#endif

typedef struct etl_serve_opts {
    const char *const *files; /* pipeline files */
    size_t nfiles;
    const char *listen;    /* "ADDR:PORT" for the admin API, or NULL for none */
    const char *token;     /* bearer token of the admin API, or NULL */
    const char *state_url; /* replaces every pipeline's `state:`, or NULL */
    const char *worker_id; /* lease owner name; NULL: "<hostname>:<pid>" */
    int workers;           /* runs at once; <= 0: 4 */
    int64_t lease_secs;    /* <= 0: 60 */
    int64_t tick_ms;       /* how often due runs are looked for; <= 0: 1000 */
    atomic_int *stop;      /* set by SIGTERM/SIGINT: finish the batches in flight, exit */
    atomic_int *reload;    /* set by SIGHUP: reload the pipeline files */
} etl_serve_opts_t;

/* Runs until *stop is set. Returns 0 after a clean stop, 2 when it could not
 * start (a pipeline file is broken, the address is unusable, a public
 * address without a token), with err saying why. */
ETL_API int etl_serve(const etl_serve_opts_t *o, char *err, size_t errlen);

/* Whether ADDR:PORT binds only to loopback (127.0.0.0/8, ::1, localhost):
 * 1 yes, 0 no, -1 not of the form ADDR:PORT. */
ETL_API int etl_serve_is_loopback(const char *listen);

#endif
