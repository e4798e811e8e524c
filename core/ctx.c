/* ctx.c - the functions a plugin calls on its context (etl.h). */
#include "ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const status_names[] = {
    "ok", "retry", "config", "auth", "data", "io", "nomem", "cancelled", "internal",
};

const char *etl_status_name(etl_status_t st)
{
    return (unsigned)st < ETL_ARRAY_LEN(status_names) ? status_names[st] : "?";
}

etl_ctx_t *etl_ctx_new(const etl_plugin_t *p, const char *role, const etl_options_t *opts,
                       const char *dir, etl_logger_t *lg, atomic_int *cancel, etl_state_t *st,
                       const char *pipeline_key)
{
    etl_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->plugin = p;
    c->role = role;
    c->opts = opts;
    c->dir = etl_strdup(dir ? dir : ".");
    c->log = lg;
    c->cancel = cancel;
    c->state = st;
    c->kv_scope = etl_asprintf("%s@%s", p->name, pipeline_key ? pipeline_key : "");
    atomic_init(&c->pages, 0);
    if (!c->dir || !c->kv_scope) {
        etl_ctx_free(c);
        return NULL;
    }
    return c;
}

void etl_ctx_free(etl_ctx_t *c)
{
    if (!c)
        return;
    free(c->dir);
    free(c->kv_scope);
    free(c);
}

void etl_vlog(etl_ctx_t *ctx, etl_level_t level, const char *fmt, va_list ap)
{
    etl_logv(ctx ? ctx->log : NULL, level, ctx ? ctx->plugin->name : "plugin",
             ctx ? ctx->stream : NULL, fmt, ap);
}

void etl_log(etl_ctx_t *ctx, etl_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    etl_vlog(ctx, level, fmt, ap);
    va_end(ap);
}

int etl_log_enabled(etl_ctx_t *ctx, etl_level_t level)
{
    (void)ctx;
    return level <= etl_log_level();
}

etl_status_t etl_fail(etl_ctx_t *ctx, etl_status_t st, const char *fmt, ...)
{
    char raw[sizeof ctx->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* redact here too: errors end up in run history and on screen */
    char *clean = etl_redact_dup(raw);
    etl_strlcpy(ctx->err, clean ? clean : raw, sizeof ctx->err);
    free(clean);
    return st;
}

const char *etl_ctx_error(const etl_ctx_t *ctx) { return ctx->err; }

const char *etl_opt(etl_ctx_t *ctx, const char *name)
{
    const etl_optval_t *o = etl_options_get(ctx->opts, name);
    return o ? o->value : NULL;
}

int64_t etl_opt_int(etl_ctx_t *ctx, const char *name, int64_t dflt)
{
    const char *v = etl_opt(ctx, name);
    int64_t x;
    return v && etl_parse_i64(v, &x) == 0 ? x : dflt;
}

int etl_opt_bool(etl_ctx_t *ctx, const char *name, int dflt)
{
    const char *v = etl_opt(ctx, name);
    int b;
    return v && etl_parse_bool(v, &b) == 0 ? b : dflt;
}

int64_t etl_opt_duration(etl_ctx_t *ctx, const char *name, int64_t dflt)
{
    const char *v = etl_opt(ctx, name);
    int64_t x;
    return v && etl_parse_duration(v, &x) == 0 ? x : dflt;
}

size_t etl_opt_list(etl_ctx_t *ctx, const char *name, const char *const **items)
{
    const etl_optval_t *o = etl_options_get(ctx->opts, name);
    if (!o || !o->items) {
        *items = NULL;
        return 0;
    }
    *items = (const char *const *)o->items;
    return o->nitems;
}

char *etl_path(etl_ctx_t *ctx, const char *path) { return etl_path_join(ctx->dir, path); }

int etl_cancelled(etl_ctx_t *ctx) { return ctx->cancel && atomic_load(ctx->cancel); }

int etl_dry_run(etl_ctx_t *ctx) { return ctx->dry_run; }

void etl_secret(etl_ctx_t *ctx, const char *value)
{
    (void)ctx;
    etl_redact_add(value);
}

etl_status_t etl_kv_get(etl_ctx_t *ctx, const char *key, char **value)
{
    *value = NULL;
    if (!ctx->state)
        return ETL_OK;
    if (etl_state_kv_get(ctx->state, ctx->kv_scope, key, value) != 0)
        return etl_fail(ctx, ETL_ERR_IO, "%s", etl_state_error(ctx->state));
    return ETL_OK;
}

etl_status_t etl_kv_put(etl_ctx_t *ctx, const char *key, const char *value)
{
    if (!ctx->state)
        return ETL_OK;
    if (etl_state_kv_put(ctx->state, ctx->kv_scope, key, value) != 0)
        return etl_fail(ctx, ETL_ERR_IO, "%s", etl_state_error(ctx->state));
    return ETL_OK;
}

void etl_progress_page(etl_ctx_t *ctx) { atomic_fetch_add(&ctx->pages, 1); }

const char *etl_read_select(const etl_read_t *r, const char *name)
{
    for (size_t i = 0; i < r->nselect; i++)
        if (strcmp(r->select[2 * i], name) == 0)
            return r->select[2 * i + 1];
    return NULL;
}
