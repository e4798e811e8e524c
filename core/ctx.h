/*
 * ctx.h - the context the core gives one plugin instance (etl_ctx_t of the
 * ABI): its options, log, error buffer, cancellation flag, key/value scope.
 */
#ifndef ETL_CORE_CTX_H
#define ETL_CORE_CTX_H

#include <stdatomic.h>

#include "etl/etl.h"
#include "log.h"
#include "plugin.h"
#include "state.h"

struct etl_ctx {
    const etl_plugin_t *plugin;
    const char *role;          /* "source" | "sink" */
    const etl_options_t *opts; /* borrowed */
    char *dir;                 /* pipeline folder */
    etl_logger_t *log;         /* borrowed, may be NULL */
    const char *stream;        /* current stream, for log lines */
    atomic_int *cancel;        /* shared with the run */
    etl_state_t *state;        /* may be NULL (etl check) */
    char *kv_scope;
    atomic_long pages;
    int dry_run;               /* --dry-run: nothing may leave for good */
    char err[1024];
};

etl_ctx_t *etl_ctx_new(const etl_plugin_t *p, const char *role, const etl_options_t *opts,
                       const char *dir, etl_logger_t *lg, atomic_int *cancel, etl_state_t *st,
                       const char *pipeline_key);
void etl_ctx_free(etl_ctx_t *ctx);

#endif
