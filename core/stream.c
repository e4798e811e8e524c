/*
 * stream.c - one stream in one direction: its column mapping (from the
 * source's discovery and the pipeline's rename / exclude / local_only /
 * key / cursor / fk), then the run itself: deferred records first, the
 * source read in a reader thread feeding the writer through a bounded queue,
 * rows emitted here by other streams' hooks, delete detection on full scans,
 * and the sink's finish (where write: replace swaps its table in).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nest.h"
#include "row.h"
#include "runtime.h"

#define QUEUE_DEPTH 4

/* ------------------------------------------------------------ setup */

/* The sink-side name of a source column. */
static const char *renamed(const etl_srt_t *s, const char *col)
{
    const etl_stream_cfg_t *c = s->cfg;
    if (s->ident && s->idcfg) {
        /* the identity key travels as sink_key at the sink: end */
        if (s->dir == ETL_DIR_FORWARD && strcmp(col, s->idcfg->key) == 0)
            return s->idcfg->sink_key;
        if (s->dir == ETL_DIR_REVERSE && strcmp(col, s->idcfg->sink_key) == 0)
            return s->idcfg->key;
    }
    for (size_t i = 0; i < c->nrename; i++) {
        if (s->dir == ETL_DIR_FORWARD && strcmp(c->rename[i].name, col) == 0)
            return c->rename[i].value;
        if (s->dir == ETL_DIR_REVERSE && strcmp(c->rename[i].value, col) == 0)
            return c->rename[i].name;
    }
    return col;
}

static int listed(const etl_strlist_t *l, const char *col)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], col) == 0)
            return 1;
    return 0;
}

/* Finds a column of `out` by its sink-side name or, failing that, by the
 * source-side name the pipeline may have used. */
static int out_col(const etl_srt_t *s, const char *name)
{
    int i = etl_schema_find(s->out, name);
    if (i < 0)
        i = etl_schema_find(s->out, renamed(s, name));
    return i;
}

static void list_cols(const etl_schema_t *sc, etl_buf_t *b)
{
    for (size_t i = 0; i < etl_schema_ncols(sc); i++)
        etl_buf_printf(b, "%s%s", i ? ", " : "", etl_schema_col(sc, i)->name);
}

static int resolve_cols(etl_srt_t *s, const etl_strlist_t *names, int **out, size_t *n,
                        const char *what)
{
    if (!names->n)
        return 0;
    *out = calloc(names->n, sizeof **out);
    if (!*out)
        return -1;
    for (size_t i = 0; i < names->n; i++) {
        int c = out_col(s, names->items[i]);
        if (c < 0) {
            etl_buf_t b;
            etl_buf_init(&b);
            list_cols(s->out, &b);
            etl_srt_fail(s, "stream %s: %s column '%s' not found (columns: %s)", s->cfg->name,
                         what, names->items[i], b.data ? b.data : "");
            etl_buf_free(&b);
            return -1;
        }
        (*out)[i] = c;
    }
    *n = names->n;
    return 0;
}

static int build_out(etl_run_t *r, etl_srt_t *s)
{
    const etl_stream_cfg_t *c = s->cfg;
    if (!(s->out = etl_schema_new(c->name)))
        return -1;
    if (s->emit_only) {
        for (size_t i = 0; i < c->ncolumns; i++)
            if (etl_schema_add(s->out, c->columns[i].name, c->columns[i].type, NULL, 0) < 0)
                return -1;
        s->map = calloc(c->ncolumns + 1, sizeof *s->map);
        return s->map ? 0 : -1;
    }
    size_t n = etl_schema_ncols(s->read);
    s->map = calloc(n + 1, sizeof *s->map);
    if (!s->map)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const etl_column_t *col = etl_schema_col(s->read, i);
        const char *name = renamed(s, col->name);
        if (etl_schema_find(s->out, name) >= 0) {
            etl_srt_fail(s, "stream %s: two columns would both be named '%s' after rename",
                         c->name, name);
            return -1;
        }
        unsigned flags = col->flags & ~(unsigned)ETL_COL_KEY;
        if (s->ident && s->dir == ETL_DIR_REVERSE && strcmp(col->name, s->idcfg->sink_pk) == 0)
            flags |= ETL_COL_HIDDEN; /* for the write-back of a new id, never written */
        int j = etl_schema_add(s->out, name, col->type, col->native, flags);
        if (j < 0)
            return -1;
        s->map[j] = (int)i;
    }
    (void)r;
    return 0;
}

static int build_read(etl_run_t *r, etl_srt_t *s, etl_schema_t *found)
{
    const etl_stream_cfg_t *c = s->cfg;
    if (!(s->read = etl_schema_new(s->read_name)))
        return -1;
    for (size_t i = 0; i < etl_schema_ncols(found); i++) {
        const etl_column_t *col = etl_schema_col(found, i);
        if (col->flags & ETL_COL_HIDDEN)
            continue;
        if (listed(&c->exclude, col->name) || listed(&c->exclude, renamed(s, col->name)))
            continue;
        /* local_only columns belong to the sink side: never read from it
         * (the identity columns are the translation's own) */
        int ident_col = s->ident && s->idcfg && (strcmp(col->name, s->idcfg->sink_key) == 0 ||
                                                 strcmp(col->name, s->idcfg->sink_pk) == 0);
        if (s->dir == ETL_DIR_REVERSE && listed(&c->local_only, col->name) && !ident_col)
            continue;
        if (s->dir == ETL_DIR_FORWARD && listed(&c->local_only, renamed(s, col->name)) &&
            !(s->ident && strcmp(col->name, s->idcfg->key) == 0))
            continue;
        if (etl_schema_add(s->read, col->name, col->type, col->native, col->flags) < 0)
            return -1;
    }
    (void)r;
    return 0;
}

int etl_stream_setup(etl_run_t *r, etl_srt_t *s)
{
    const etl_stream_cfg_t *c = s->cfg;
    etl_end_t *src = &r->ends[s->dir == ETL_DIR_FORWARD ? 0 : 1];
    s->dir_name = etl_direction_name(s->dir);
    s->read_name = s->dir == ETL_DIR_FORWARD ? c->name : (c->table ? c->table : c->name);
    s->table = s->dir == ETL_DIR_FORWARD ? (c->table ? c->table : c->name) : c->name;
    s->emit_only = c->ncolumns > 0;
    s->cursor_read = s->cursor_out = -1;

    etl_schema_t *found = NULL;
    if (!s->emit_only) {
        if (etl_end_source(r, src, r->log) != 0) {
            etl_srt_fail(s, "%s", r->err);
            return -1;
        }
        found = etl_schema_new(s->read_name);
        if (!found)
            goto nomem;
        src->src_ctx->stream = c->name;
        src->src_ctx->err[0] = '\0';
        etl_status_t st = src->lib->desc->source->discover(src->src, src->src_ctx, found);
        if (st != ETL_OK) {
            etl_srt_fail(s, "source %s: stream %s: %s", src->lib->desc->name, s->read_name,
                         src->src_ctx->err[0] ? src->src_ctx->err : etl_status_name(st));
            etl_schema_free(found);
            return -1;
        }
        const etl_identity_cfg_t *id = &r->p->identity;
        if (id->key) {
            /* the stream takes part when its columns are there: the source's
             * key going forward, the sink_key and sink_pk coming back */
            s->idcfg = id;
            s->ident = s->dir == ETL_DIR_FORWARD
                           ? etl_schema_find(found, id->key) >= 0
                           : etl_schema_find(found, id->sink_key) >= 0 &&
                                 etl_schema_find(found, id->sink_pk) >= 0;
        }
        if (build_read(r, s, found) != 0)
            goto nomem;
    }
    if (build_out(r, s) != 0)
        goto nomem;
    if (etl_nest_setup(r, s) != 0)
        goto fail;
    s->ident_pk = -1;
    if (s->ident) {
        const char *k = s->dir == ETL_DIR_FORWARD ? s->idcfg->sink_key : s->idcfg->key;
        s->ident_key = etl_schema_find(s->out, k);
        if (s->dir == ETL_DIR_REVERSE)
            s->ident_pk = etl_schema_find(s->out, s->idcfg->sink_pk);
        s->ident_table = c->table ? c->table : c->name;
        etl_end_t *pend = &r->ends[1];
        if (etl_end_sink(r, pend, r->log) != 0 || !pend->lib->desc->sink->lookup ||
            !pend->lib->desc->sink->assign) {
            etl_srt_fail(s, "stream %s: identity needs the sink: plugin to look ids up%s%s",
                         c->name, r->err[0] ? ": " : "", r->err);
            goto fail;
        }
    }

    /* key: the translated identity, the pipeline's, else the source's primary key */
    if (s->ident && !c->key.n) {
        if (s->ident_key < 0 || !(s->key = calloc(1, sizeof *s->key)))
            goto nomem;
        s->key[0] = s->ident_key;
        s->nkey = 1;
    } else if (c->key.n) {
        if (resolve_cols(s, &c->key, &s->key, &s->nkey, "key") != 0)
            goto fail;
    } else if (s->read) {
        size_t nk = 0;
        for (size_t i = 0; i < etl_schema_ncols(s->read); i++)
            nk += (etl_schema_col(s->read, i)->flags & ETL_COL_KEY) != 0;
        if (nk) {
            s->key = calloc(nk, sizeof *s->key);
            if (!s->key)
                goto nomem;
            for (size_t j = 0; j < etl_schema_ncols(s->out); j++)
                if (s->map[j] >= 0 && etl_schema_col(s->read, (size_t)s->map[j])->flags & ETL_COL_KEY)
                    s->key[s->nkey++] = (int)j;
        }
    }
    if (resolve_cols(s, &c->fallback_key, &s->fb, &s->nfb, "fallback_key") != 0)
        goto fail;
    if (!s->nkey && c->write != ETL_WRITE_APPEND && c->write != ETL_WRITE_REPLACE) {
        etl_srt_fail(s, "stream %s: no key: the source has no primary key for it; set `key:` "
                     "(or use write: append)", c->name);
        goto fail;
    }
    if (!(s->keys = etl_schema_new(c->name)))
        goto nomem;
    /* the key in source columns: what a key-ordered full scan sorts by */
    if (s->read && s->nkey) {
        int all = 1;
        for (size_t k = 0; k < s->nkey; k++)
            all &= s->map[s->key[k]] >= 0;
        if (all) {
            if (!(s->rkey = calloc(s->nkey, sizeof *s->rkey)))
                goto nomem;
            for (size_t i = 0; i < etl_schema_ncols(s->read); i++)
                etl_schema_set_flags(s->read, i, etl_schema_col(s->read, i)->flags &
                                                     ~(unsigned)ETL_COL_KEY);
            for (size_t k = 0; k < s->nkey; k++) {
                s->rkey[k] = s->map[s->key[k]];
                etl_schema_set_flags(s->read, (size_t)s->rkey[k],
                                     etl_schema_col(s->read, (size_t)s->rkey[k])->flags |
                                         ETL_COL_KEY);
            }
            s->nrkey = s->nkey;
        }
    }
    for (size_t k = 0; k < s->nkey; k++) {
        const etl_column_t *col = etl_schema_col(s->out, (size_t)s->key[k]);
        etl_schema_set_flags(s->out, (size_t)s->key[k], col->flags | ETL_COL_KEY);
        if (etl_schema_add(s->keys, col->name, col->type, col->native, col->flags | ETL_COL_KEY) < 0)
            goto nomem;
    }

    /* cursor: the pipeline's (`none` = ""), else the source's suggestion */
    const char *cursor = c->cursor ? c->cursor : (found ? etl_schema_cursor(found) : NULL);
    if (cursor && *cursor && !s->emit_only) {
        int i = etl_schema_find(s->read, cursor);
        if (i < 0) {
            for (size_t k = 0; k < etl_schema_ncols(s->read) && i < 0; k++)
                if (strcmp(renamed(s, etl_schema_col(s->read, k)->name), cursor) == 0)
                    i = (int)k;
        }
        if (i < 0) {
            etl_buf_t b;
            etl_buf_init(&b);
            list_cols(s->read, &b);
            etl_srt_fail(s, "stream %s: cursor column '%s' not found (columns: %s)", c->name,
                         cursor, b.data ? b.data : "");
            etl_buf_free(&b);
            goto fail;
        }
        s->cursor_read = i;
        for (size_t j = 0; j < etl_schema_ncols(s->out); j++)
            if (s->map[j] == i)
                s->cursor_out = (int)j;
    }
    s->skip = calloc(etl_schema_ncols(s->out) + 1, 1);
    if (!s->skip)
        goto nomem;
    /* a cursor that moved while nothing else changed is not a change, and a
     * hidden column is not content */
    if (s->cursor_out >= 0)
        s->skip[s->cursor_out] = 1;
    for (size_t j = 0; j < etl_schema_ncols(s->out); j++)
        if (etl_schema_col(s->out, j)->flags & ETL_COL_HIDDEN)
            s->skip[j] = 1;

    /* fks */
    if (c->nfk && !(s->fk = calloc(c->nfk, sizeof *s->fk)))
        goto nomem;
    for (size_t k = 0; k < c->nfk; k++) {
        int col = out_col(s, c->fk[k].column);
        if (col < 0) {
            etl_srt_fail(s, "stream %s: fk column '%s' not found", c->name, c->fk[k].column);
            goto fail;
        }
        etl_fk_rt_t *f = &s->fk[s->nfk++];
        f->col = col;
        f->column = etl_schema_col(s->out, (size_t)col)->name;
        f->parent = c->fk[k].parent;
        int pi = etl_pipeline_stream(r->p, f->parent);
        const etl_stream_cfg_t *pc = pi >= 0 ? &r->p->streams[pi] : c;
        f->parent_table = pc->table ? pc->table : pc->name;
        s->self_fk |= strcmp(f->parent, c->name) == 0;
        if (etl_state_stream_id(r->state, r->pkey, f->parent, s->dir_name, &f->parent_sid)) {
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            goto fail;
        }
    }
    if (etl_state_stream_id(r->state, r->pkey, c->name, s->dir_name, &s->sid)) {
        etl_srt_fail(s, "%s", etl_state_error(r->state));
        goto fail;
    }
    if ((r->p->direction == ETL_DIR_BOTH || r->o->direction == ETL_DIR_BOTH) &&
        etl_state_stream_id(r->state, r->pkey, c->name,
                            s->dir == ETL_DIR_FORWARD ? "reverse" : "forward", &s->sid_other)) {
        etl_srt_fail(s, "%s", etl_state_error(r->state));
        goto fail;
    }
    /* the rules name the pipeline's ends: coming back, the sink: end's rows
     * are the incoming ones (and a tie goes to them) */
    s->conflict = c->conflict;
    if (s->dir == ETL_DIR_REVERSE) {
        switch (c->conflict) {
        case ETL_CONFLICT_NEWER: s->conflict = ETL_CONFLICT_NEWER_OR_EQUAL; break;
        case ETL_CONFLICT_SOURCE: s->conflict = ETL_CONFLICT_SINK; break;
        case ETL_CONFLICT_SINK: s->conflict = ETL_CONFLICT_SOURCE; break;
        default: break;
        }
    }
    if (s->dir == ETL_DIR_FORWARD && c->local_only.n) {
        s->keep = (const char **)c->local_only.items;
        s->nkeep = c->local_only.n;
    }
    etl_schema_free(found);
    return 0;
nomem:
    etl_srt_fail(s, "stream %s: out of memory", c->name);
fail:
    etl_schema_free(found);
    return -1;
}

void etl_stream_free(etl_srt_t *s)
{
    etl_schema_free(s->read);
    etl_schema_free(s->out);
    etl_schema_free(s->keys);
    free(s->map);
    free(s->key);
    free(s->fb);
    free(s->skip);
    free(s->fk);
    free(s->error);
    etl_spool_free(s->spool);
    etl_keyset_free(s->resolved);
    etl_nest_free(s->nest);
    free(s->rkey);
    etl_arena_free(&s->after_arena);
    etl_checkpoint_clear(&s->ckpt);
    free(s->held_ck);
    free(s->held_type);
    free(s->targets);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ bounds */

/* What this run reads: full or from a lower bound on the cursor. */
static void plan_read(etl_run_t *r, etl_srt_t *s)
{
    const etl_stream_cfg_t *c = s->cfg;
    /* a parent with nest children is read whole: a changed child must bring
     * back a parent whose own cursor did not move (the ledger keeps it cheap) */
    s->full = r->o->full || c->mode == ETL_MODE_FULL || s->write == ETL_WRITE_REPLACE ||
              s->cursor_read < 0 || c->nnest > 0;
    s->has_since = 0;
    const char *ck = s->ckpt.cursor;
    int cktype = s->ckpt.type ? etl_type_from_name(s->ckpt.type) : -1;
    int64_t ts;
    int ck_is_text = ck && cktype >= ETL_T_NUMERIC && cktype <= ETL_T_JSON;
    if (!s->full && ck && cktype > 0) {
        if (cktype == ETL_T_TIMESTAMP && etl_ts_parse(ck, strlen(ck), &ts) == 0) {
            s->since = etl_ts(ts - c->overlap * 1000000);
            s->has_since = 1;
        } else if (cktype == ETL_T_INT && etl_parse_i64(ck, &ts) == 0) {
            s->since = etl_int(ts);
            s->has_since = 1;
        } else if (ck_is_text) {
            if (c->overlap && etl_ts_parse(ck, strlen(ck), &ts) == 0) {
                size_t n = etl_ts_format_like(ts - c->overlap * 1000000, ck, strlen(ck),
                                              s->since_buf, sizeof s->since_buf);
                s->since = etl_str((etl_type_t)cktype, s->since_buf, n);
            } else {
                etl_strlcpy(s->since_buf, ck, sizeof s->since_buf);
                s->since = etl_str((etl_type_t)cktype, s->since_buf, strlen(s->since_buf));
            }
            s->has_since = 1;
        } else if (cktype == ETL_T_DOUBLE) {
            s->since = etl_double(strtod(ck, NULL));
            s->has_since = 1;
        }
    }
    /* --since replaces the checkpoint; a window only ever narrows the read */
    int64_t lower = 0;
    int have_lower = 0;
    if (r->has_since && s->cursor_read >= 0) {
        lower = r->since_us;
        have_lower = 1;
        s->has_since = 0;
    }
    int64_t window = r->window ? r->window : c->window;
    if (window && s->cursor_read >= 0) {
        int64_t w = etl_now_us() - window * 1000000;
        if (!have_lower || w > lower)
            lower = w;
        have_lower = 1;
    }
    if (have_lower && s->write == ETL_WRITE_REPLACE) {
        /* replace swaps in exactly what was read: a bounded read would
         * replace the table with part of it */
        etl_logf(r->log, ETL_LOG_WARN, "run", c->name,
                 "write: replace reads the whole source: --since and window are ignored");
        have_lower = 0;
    }
    if (have_lower) {
        int64_t cur;
        int since_ts = s->has_since && (s->since.type == ETL_T_TIMESTAMP ||
                                        (s->since.type >= ETL_T_NUMERIC &&
                                         s->since.type <= ETL_T_JSON &&
                                         etl_ts_parse(s->since.v.s, s->since.len, &cur) == 0));
        if (since_ts && s->since.type == ETL_T_TIMESTAMP)
            cur = s->since.v.i;
        if (!s->has_since || (since_ts && lower > cur) || r->has_since) {
            if (ck_is_text) {
                size_t n = etl_ts_format_like(lower, ck, strlen(ck), s->since_buf,
                                              sizeof s->since_buf);
                s->since = etl_str((etl_type_t)cktype, s->since_buf, n);
            } else {
                s->since = etl_ts(lower);
            }
            s->has_since = 1;
        }
        s->full = 0;
    }
    /* no checkpoint and no bound: the first run of an incremental stream
     * reads everything, like a full one */
    if (!s->has_since)
        s->full = 1;
    s->detect_deletes = s->full && !s->has_since && c->deletes != ETL_DELETES_IGNORE &&
                        s->nkey && s->write != ETL_WRITE_APPEND && !s->emit_only;

    /* a full scan reads in key order: the sink and the ledger fill in order,
     * and an interrupted scan resumes after the last key it committed
     * (replace starts a new staging table each run: it never resumes) */
    s->scan_id = r->run_id;
    s->by_key = s->full && !s->has_since && s->nrkey > 0 && !s->emit_only;
    s->resume = s->by_key && s->write != ETL_WRITE_REPLACE && !r->o->dry_run;
    if (s->resume && s->ckpt.resume_key && s->ckpt.resume_scan) {
        s->after = etl_arena_alloc(&s->after_arena, s->nrkey * sizeof *s->after);
        if (s->after && etl_key_values(s->ckpt.resume_key, strlen(s->ckpt.resume_key), s->read,
                                       s->rkey, s->nrkey, &s->after_arena, s->after) == 0) {
            s->resumed = 1;
            s->scan_id = s->ckpt.resume_scan;
            int t = s->ckpt.resume_max_type ? etl_type_from_name(s->ckpt.resume_max_type) : -1;
            const char *mx = s->ckpt.resume_max;
            if (mx && t == ETL_T_TIMESTAMP && etl_ts_parse(mx, strlen(mx), &ts) == 0)
                s->resume_max = etl_ts(ts);
            else if (mx && t == ETL_T_INT && etl_parse_i64(mx, &ts) == 0)
                s->resume_max = etl_int(ts);
            else if (mx && t >= ETL_T_NUMERIC && t <= ETL_T_JSON)
                s->resume_max = etl_str((etl_type_t)t, mx, strlen(mx));
        }
    }
}

/* ------------------------------------------------------------ reader */

typedef struct reader {
    etl_run_t *r;
    etl_srt_t *s;
    etl_end_t *end;
    etl_emitter_t em;
    etl_read_t req;
    const char **select;
} reader_t;

static void *reader_main(void *arg)
{
    reader_t *rd = arg;
    etl_end_t *e = rd->end;
    e->src_ctx->err[0] = '\0';
    etl_status_t st = e->lib->desc->source->read(e->src, e->src_ctx, &rd->req, &rd->em);
    if (st == ETL_OK && rd->em.failed)
        st = rd->em.failed;
    char msg[1100];
    if (st != ETL_OK)
        snprintf(msg, sizeof msg, "source %s: %s", e->lib->desc->name,
                 e->src_ctx->err[0] ? e->src_ctx->err : etl_status_name(st));
    etl_emitter_finish(&rd->em, st, st == ETL_OK ? NULL : msg);
    return NULL;
}

/* ------------------------------------------------------------ deferred */

typedef struct replay {
    etl_run_t *r;
    etl_srt_t *s;
    etl_writer_t *w;
    etl_batch_t *b;
    char *last;
    int failed;
} replay_t;

static int flush_replay(replay_t *rp, int deferred)
{
    if (!rp->b->nrows)
        return 0;
    int rc = etl_writer_batch(rp->w, rp->b, deferred);
    etl_batch_reset(rp->b);
    return rc;
}

static int add_deferred(void *arg, const char *key, const char *reason, const char *json)
{
    replay_t *rp = arg;
    (void)reason;
    free(rp->last);
    rp->last = etl_strdup(key);
    etl_value_t *row = etl_batch_row(rp->b, ETL_OP_UPSERT);
    char err[256];
    if (!row || etl_row_from_json(json, rp->s->out, &rp->b->arena, row, err, sizeof err) != 0) {
        if (row)
            rp->b->nrows--; /* unreadable: leave it deferred, visible in status */
        etl_logf(rp->r->log, ETL_LOG_WARN, "run", rp->s->cfg->name,
                 "deferred record %s cannot be read back: %s", key, row ? err : "out of memory");
    }
    return 0;
}

static int retry_deferred(etl_run_t *r, etl_srt_t *s, etl_writer_t *w)
{
    if (!s->deferred_before)
        return 0;
    replay_t rp = {r, s, w, etl_batch_new(etl_schema_ncols(s->out), 500), NULL, 0};
    if (!rp.b)
        return -1;
    etl_logf(r->log, ETL_LOG_INFO, "run", s->cfg->name, "retrying %lld deferred record(s)",
             (long long)s->deferred_before);
    int rc = 0;
    for (;;) {
        int got = etl_state_deferred_page(r->state, s->sid, rp.last, 500, add_deferred, &rp);
        if (got < 0) {
            etl_srt_fail(s, "%s", etl_state_error(r->state));
            rc = -1;
            break;
        }
        if ((rc = flush_replay(&rp, 1)) != 0 || got < 500)
            break;
    }
    free(rp.last);
    etl_batch_free(rp.b);
    return rc;
}

static int add_spooled(void *arg, const etl_value_t *row)
{
    replay_t *rp = arg;
    etl_value_t *dst = etl_batch_row(rp->b, ETL_OP_UPSERT);
    if (!dst)
        return -1;
    for (size_t j = 0; j < rp->b->ncols; j++)
        if (etl_arena_value(&rp->b->arena, &dst[j], &row[j]) != 0)
            return -1;
    rp->b->read++;
    if (rp->b->nrows >= (size_t)rp->s->cfg->batch)
        return flush_replay(rp, 0);
    return 0;
}

static int drain_spool(etl_run_t *r, etl_srt_t *s, etl_writer_t *w)
{
    if (!etl_spool_count(s->spool))
        return 0;
    replay_t rp = {r, s, w, etl_batch_new(etl_schema_ncols(s->out), (size_t)s->cfg->batch), NULL,
                   0};
    if (!rp.b)
        return -1;
    int rc = etl_spool_drain(s->spool, etl_schema_ncols(s->out), add_spooled, &rp);
    if (rc == 0)
        rc = flush_replay(&rp, 0);
    else if (!s->error)
        etl_srt_fail(s, "stream %s: reading rows emitted by other streams failed", s->cfg->name);
    etl_batch_free(rp.b);
    return rc;
}

/* ------------------------------------------------------------ run */

static int read_source(etl_run_t *r, etl_srt_t *s, etl_writer_t *w)
{
    etl_end_t *src = &r->ends[s->dir == ETL_DIR_FORWARD ? 0 : 1];
    etl_queue_t *q = etl_queue_new(QUEUE_DEPTH, etl_schema_ncols(s->out), (size_t)s->cfg->batch);
    reader_t *rd = calloc(1, sizeof *rd);
    const etl_stream_cfg_t *c = s->cfg;
    if (!q || !rd || (c->nselect && !(rd->select = calloc(c->nselect * 2, sizeof(char *))))) {
        etl_queue_free(q);
        free(rd);
        etl_srt_fail(s, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->nselect; i++) {
        rd->select[2 * i] = c->select[i].name;
        rd->select[2 * i + 1] = c->select[i].value;
    }
    rd->r = r;
    rd->s = s;
    rd->end = src;
    rd->req.stream = s->read_name;
    rd->req.schema = s->read;
    rd->req.cursor = s->cursor_read >= 0 ? etl_schema_col(s->read, (size_t)s->cursor_read)->name
                                         : NULL;
    rd->req.since = s->has_since ? &s->since : NULL;
    rd->req.full = s->full;
    rd->req.by_key = s->by_key;
    rd->req.after = s->resumed ? s->after : NULL;
    rd->req.select = rd->select;
    rd->req.nselect = c->nselect;
    etl_emitter_init(&rd->em, r, s, q);
    src->src_ctx->stream = c->name;

    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, rd) != 0) {
        etl_emitter_free(&rd->em);
        etl_queue_free(q);
        free(rd->select);
        free(rd);
        etl_srt_fail(s, "cannot start the reader thread");
        return -1;
    }
    int rc = 0, done = 0;
    while (!done) {
        etl_batch_t *b = etl_queue_pop(q);
        if (!b)
            break;
        /* a completed key-ordered scan always reaches the writer: it clears
         * the resume point even when its last batch is empty */
        if (rc == 0 && (b->nrows || b->nrejects || b->has_ckpt || b->has_resume ||
                        (b->end && b->status == ETL_OK && s->by_key)) &&
            etl_writer_batch(w, b, 0) != 0) {
            rc = -1;
            etl_queue_abort(q); /* the reader's next push fails: it stops */
        }
        if (b->end) {
            done = 1;
            if (b->status == ETL_ERR_CANCELLED && rc == 0) {
                s->status = ST_CANCELLED;
                rc = -1;
            } else if (b->status != ETL_OK && rc == 0) {
                etl_srt_fail(s, "%s", b->error ? b->error : "read failed");
                rc = -1;
            }
        }
        etl_queue_put(q, b);
        etl_writer_progress(w, 0);
        if (rc == 0 && r->cancel && atomic_load(r->cancel)) {
            /* stop after the batch in flight; the reader sees the flag */
            s->status = ST_CANCELLED;
            rc = -1;
            etl_queue_abort(q);
        }
    }
    if (!done)
        etl_queue_abort(q);
    pthread_join(th, NULL);
    etl_emitter_free(&rd->em);
    etl_queue_free(q);
    free(rd->select);
    free(rd);
    return rc;
}

static int prepare_sink(etl_run_t *r, etl_srt_t *s)
{
    etl_end_t *e = &r->ends[s->dir == ETL_DIR_FORWARD ? 1 : 0];
    if (etl_end_sink(r, e, r->log) != 0) {
        etl_srt_fail(s, "%s", r->err);
        return -1;
    }
    const etl_stream_cfg_t *c = s->cfg;
    const char *fb[16];
    size_t nfb = s->nfb < 16 ? s->nfb : 16;
    for (size_t k = 0; k < nfb; k++)
        fb[k] = etl_schema_col(s->out, (size_t)s->fb[k])->name;
    etl_sink_stream_t spec = {
        .stream = c->name,
        .table = s->table,
        .schema = s->out,
        .write = s->write,
        .conflict = s->conflict,
        .cursor = s->cursor_out >= 0 ? etl_schema_col(s->out, (size_t)s->cursor_out)->name : NULL,
        .keep = s->keep,
        .nkeep = s->nkeep,
        .soft_delete = c->deletes == ETL_DELETES_SOFT ? c->deletes_column : NULL,
        .create = 1,
        .assigned_pk = s->ident && s->dir == ETL_DIR_FORWARD ? s->idcfg->sink_pk : NULL,
        .soft_delete_value = c->deletes == ETL_DELETES_SOFT ? c->deletes_value : NULL,
        .fallback_key = nfb ? fb : NULL,
        .nfallback_key = nfb,
    };
    e->sink_ctx->stream = c->name;
    e->sink_ctx->err[0] = '\0';
    etl_status_t st = e->lib->desc->sink->prepare(e->sink, e->sink_ctx, &spec, &s->sink_stream);
    if (st != ETL_OK) {
        etl_srt_fail(s, "sink %s, table %s: %s", e->lib->desc->name, s->table,
                     e->sink_ctx->err[0] ? e->sink_ctx->err : etl_status_name(st));
        return -1;
    }
    return 0;
}

int etl_stream_run(etl_run_t *r, etl_srt_t *s)
{
    const etl_stream_cfg_t *c = s->cfg;
    s->started_us = etl_mono_us();
    /* the first pass of a replace stream swapped its table in: rows emitted
     * into it afterwards are added to that table, not swapped in alone */
    s->write = c->write;
    if (s->spool_only && c->write == ETL_WRITE_REPLACE)
        s->write = s->nkey ? ETL_WRITE_UPSERT : ETL_WRITE_APPEND;
    etl_checkpoint_clear(&s->ckpt); /* a second pass reads it again */
    if (etl_state_checkpoint_get(r->state, r->pkey, c->name, s->dir_name, &s->ckpt) != 0) {
        etl_srt_fail(s, "%s", etl_state_error(r->state));
        return -1;
    }
    plan_read(r, s);
    s->fresh = etl_state_ledger_count(r->state, s->sid) == 0;
    s->deferred_before = etl_state_deferred_count(r->state, s->sid);
    if (s->deferred_before < 0 || prepare_sink(r, s) != 0) {
        if (!s->error)
            etl_srt_fail(s, "%s", etl_state_error(r->state));
        return -1;
    }
    if (s->has_since) {
        char buf[64];
        const char *t;
        size_t n = etl_value_text(&s->since, buf, sizeof buf, &t);
        etl_logf(r->log, ETL_LOG_INFO, "run", c->name, "%s: reading %s from %s >= %.*s",
                 s->dir_name, s->read_name, etl_schema_col(s->read, (size_t)s->cursor_read)->name,
                 (int)n, t);
    } else {
        etl_logf(r->log, ETL_LOG_INFO, "run", c->name, "%s: reading %s in full%s%s%s",
                 s->dir_name, s->emit_only ? "(rows emitted by hooks)" : s->read_name,
                 s->detect_deletes ? " (deletes detected)" : "",
                 s->resumed ? ", resuming after key " : "", s->resumed ? s->ckpt.resume_key : "");
    }
    etl_writer_t *w = etl_writer_new(r, s);
    if (!w) {
        etl_srt_fail(s, "out of memory");
        goto finish;
    }
    etl_end_t *sink = &r->ends[s->dir == ETL_DIR_FORWARD ? 1 : 0];
    if (r->shared_db) {
        const char *kind, *loc;
        etl_state_share(r->state, sink->lib->desc->sink->native(sink->sink, &kind, &loc));
    }
    int rc = s->spool_only ? 0 : retry_deferred(r, s, w);
    /* records the retry wrote are in the ledger now: the scan must look them
     * up, or it counts them created a second time */
    if (rc == 0 && s->fresh && s->deferred_before > 0)
        s->fresh = etl_state_ledger_count(r->state, s->sid) == 0;
    if (rc == 0 && !s->spool_only && etl_nest_collect(r, s) != 0)
        rc = -1;
    if (rc == 0 && !s->emit_only && !s->spool_only) {
        etl_writer_phase(w);
        rc = read_source(r, s, w);
    }
    if (rc == 0) {
        etl_writer_phase(w);
        rc = drain_spool(r, s, w);
    }
    if (rc == 0 && s->detect_deletes && s->write != ETL_WRITE_REPLACE && !s->spool_only)
        rc = etl_writer_delete_unseen(w);
    etl_writer_progress(w, 1);
finish:;
    int ok = s->status == ST_PENDING && !s->error;
    etl_end_t *e = &r->ends[s->dir == ETL_DIR_FORWARD ? 1 : 0];
    if (s->sink_stream) {
        e->sink_ctx->err[0] = '\0';
        etl_status_t st = e->lib->desc->sink->finish(e->sink, e->sink_ctx, s->sink_stream,
                                                     ok && !r->o->dry_run);
        s->sink_stream = NULL;
        if (st != ETL_OK && ok) {
            etl_srt_fail(s, "sink %s, table %s: %s", e->lib->desc->name, s->table,
                         e->sink_ctx->err[0] ? e->sink_ctx->err : etl_status_name(st));
            ok = 0;
        }
    }
    etl_state_share(r->state, NULL);
    if (ok && w && s->write == ETL_WRITE_REPLACE) {
        /* keys the new table lacks are gone: the ledger forgets them */
        if ((s->nkey && !s->has_since && etl_writer_delete_unseen(w) != 0) ||
            etl_writer_final_checkpoint(w) != 0)
            ok = 0;
    }
    if (ok && s->ckpt.resume_key && !s->by_key && !r->o->dry_run &&
        (etl_state_begin(r->state) ||
         etl_state_resume_put(r->state, r->pkey, c->name, s->dir_name, NULL, NULL, NULL, 0) ||
         etl_state_commit(r->state))) {
        etl_state_rollback(r->state);
        etl_srt_fail(s, "%s", etl_state_error(r->state));
        ok = 0;
    }
    etl_writer_free(w);
    if (ok)
        s->status = ST_OK;
    else if (s->status == ST_PENDING)
        s->status = ST_FAILED;
    return ok ? 0 : -1;
}
