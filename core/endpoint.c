/*
 * endpoint.c - the two ends of a pipeline: loading their plugins, binding
 * their options (config errors, before anything runs) and opening plugin
 * instances in the roles a run needs.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

int etl_ends_load(etl_run_t *r, char *err, size_t errlen)
{
    const etl_pipeline_t *p = r->p;
    const etl_endpoint_cfg_t *cfgs[2] = {&p->source, &p->sink};
    for (int i = 0; i < 2; i++) {
        etl_end_t *e = &r->ends[i];
        e->cfg = cfgs[i];
        char why[ETL_ERRLEN];
        e->lib = etl_plugin_open(e->cfg->plugin, why, sizeof why);
        if (!e->lib) {
            etl_errf(err, errlen, "%s:%d:%d: %s", p->file, e->cfg->loc.line, e->cfg->loc.col, why);
            return -1;
        }
        if (etl_plugin_bind(e->lib->desc, e->cfg, p->file, &e->opts, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static etl_ctx_t *new_ctx(etl_run_t *r, etl_end_t *e, const char *role, etl_logger_t *lg)
{
    etl_ctx_t *ctx =
        etl_ctx_new(e->lib->desc, role, e->opts, r->p->dir, lg, r->cancel, r->state, r->pkey);
    if (ctx && r->o)
        ctx->dry_run = r->o->dry_run;
    return ctx;
}

int etl_end_source(etl_run_t *r, etl_end_t *e, etl_logger_t *lg)
{
    if (e->src)
        return 0;
    const etl_plugin_t *d = e->lib->desc;
    if (!d->source) {
        etl_errf(r->err, sizeof r->err, "plugin %s cannot read (it is not a source)", d->name);
        return -1;
    }
    if (!e->src_ctx && !(e->src_ctx = new_ctx(r, e, "source", lg))) {
        etl_errf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    etl_status_t st = d->source->open(e->src_ctx, &e->src);
    if (st != ETL_OK) {
        etl_errf(r->err, sizeof r->err, "source %s: %s", d->name,
                 e->src_ctx->err[0] ? e->src_ctx->err : etl_status_name(st));
        e->src = NULL;
        return -1;
    }
    return 0;
}

int etl_end_sink(etl_run_t *r, etl_end_t *e, etl_logger_t *lg)
{
    if (e->sink)
        return 0;
    const etl_plugin_t *d = e->lib->desc;
    if (!d->sink) {
        etl_errf(r->err, sizeof r->err, "plugin %s cannot write (it is not a sink)", d->name);
        return -1;
    }
    if (!e->sink_ctx && !(e->sink_ctx = new_ctx(r, e, "sink", lg))) {
        etl_errf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    etl_status_t st = d->sink->open(e->sink_ctx, &e->sink);
    if (st != ETL_OK) {
        etl_errf(r->err, sizeof r->err, "sink %s: %s", d->name,
                 e->sink_ctx->err[0] ? e->sink_ctx->err : etl_status_name(st));
        e->sink = NULL;
        return -1;
    }
    return 0;
}

void etl_ends_close(etl_run_t *r)
{
    for (int i = 0; i < 2; i++) {
        etl_end_t *e = &r->ends[i];
        if (e->src)
            e->lib->desc->source->close(e->src);
        if (e->sink)
            e->lib->desc->sink->close(e->sink);
        etl_ctx_free(e->src_ctx);
        etl_ctx_free(e->sink_ctx);
        etl_options_free(e->opts);
        etl_plugin_close(e->lib);
        memset(e, 0, sizeof *e);
    }
}
