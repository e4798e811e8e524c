/*
 * nest.c - child rows embedded in their parent (`nest:`), for sinks that
 * take documents: a receipt carrying its sales and payments.
 *
 * Before the parent stream runs, each child stream is read whole and its
 * rows (renamed, minus excluded and local-only columns) are kept as JSON in
 * a temporary on-disk SQLite index by the value of their fk column; so a
 * large child table never sits in memory. The parent's out schema has one
 * extra json column per nest field; the writer fills it, before the content
 * hash, with the array of the parent's children. The hash covering the
 * children is what makes an unchanged family unchanged, and a family with
 * one changed child changed. Parents of a stream with nest are read whole
 * every run (bounded by a window when there is one): a changed child must
 * bring back a parent whose own cursor did not move.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "nest.h"
#include "row.h"

typedef struct nest_child {
    const etl_nest_cfg_t *cfg;
    const etl_stream_cfg_t *scfg; /* the child stream's declaration */
    etl_schema_t *read;           /* what is read of the child */
    etl_schema_t *out;            /* what lands in the document */
    int *map;                     /* out column j <- read column map[j] */
    int fk;                       /* the fk column, in read */
    int out_col;                  /* the parent's json column */
} nest_child_t;

struct etl_nest {
    nest_child_t *kids;
    size_t n;
    sqlite3 *db;
    sqlite3_stmt *ins, *get;
    etl_buf_t json, key;
    etl_value_t *row; /* scratch, widest child out schema */
    size_t pos;
};

static int listed(const etl_strlist_t *l, const char *col)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], col) == 0)
            return 1;
    return 0;
}

static const char *renamed(const etl_nest_cfg_t *c, const char *col)
{
    for (size_t i = 0; i < c->nrename; i++)
        if (strcmp(c->rename[i].name, col) == 0)
            return c->rename[i].value;
    return col;
}

void etl_nest_free(etl_nest_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        etl_schema_free(n->kids[i].read);
        etl_schema_free(n->kids[i].out);
        free(n->kids[i].map);
    }
    free(n->kids);
    sqlite3_finalize(n->ins);
    sqlite3_finalize(n->get);
    sqlite3_close(n->db);
    etl_buf_free(&n->json);
    etl_buf_free(&n->key);
    free(n->row);
    free(n);
}

int etl_nest_is_child(const etl_pipeline_t *p, const char *stream)
{
    for (size_t i = 0; i < p->nstreams; i++)
        for (size_t k = 0; k < p->streams[i].nnest; k++)
            if (strcmp(p->streams[i].nest[k].stream, stream) == 0)
                return 1;
    return 0;
}

static int child_schemas(etl_run_t *r, etl_srt_t *s, etl_end_t *src, nest_child_t *kid)
{
    const etl_nest_cfg_t *c = kid->cfg;
    etl_schema_t *found = etl_schema_new(kid->scfg->name);
    if (!found)
        return -1;
    src->src_ctx->err[0] = '\0';
    etl_status_t st = src->lib->desc->source->discover(src->src, src->src_ctx, found);
    if (st != ETL_OK) {
        etl_srt_fail(s, "nest '%s': source %s: stream %s: %s", c->field, src->lib->desc->name,
                     kid->scfg->name, src->src_ctx->err[0] ? src->src_ctx->err
                                                           : etl_status_name(st));
        etl_schema_free(found);
        return -1;
    }
    kid->read = etl_schema_new(kid->scfg->name);
    kid->out = etl_schema_new(c->field);
    kid->map = calloc(etl_schema_ncols(found) + 1, sizeof *kid->map);
    kid->fk = -1;
    int rc = kid->read && kid->out && kid->map ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < etl_schema_ncols(found); i++) {
        const etl_column_t *col = etl_schema_col(found, i);
        if (col->flags & ETL_COL_HIDDEN)
            continue;
        int is_fk = strcmp(col->name, c->fk) == 0;
        int gone = listed(&c->exclude, col->name) || listed(&c->local_only, col->name) ||
                   listed(&kid->scfg->exclude, col->name);
        if (gone && !is_fk)
            continue;
        int ri = etl_schema_add(kid->read, col->name, col->type, col->native, col->flags);
        if (ri < 0) {
            rc = -1;
            break;
        }
        if (is_fk)
            kid->fk = ri;
        if (gone)
            continue; /* read for the grouping only */
        int oi = etl_schema_add(kid->out, renamed(c, col->name), col->type, NULL, 0);
        if (oi < 0)
            rc = -1;
        else
            kid->map[oi] = ri;
    }
    etl_schema_free(found);
    if (rc == 0 && kid->fk < 0) {
        etl_srt_fail(s, "nest '%s': stream %s has no column '%s' to group by", c->field,
                     kid->scfg->name, c->fk);
        return -1;
    }
    (void)r;
    return rc;
}

int etl_nest_setup(etl_run_t *r, etl_srt_t *s)
{
    const etl_stream_cfg_t *c = s->cfg;
    if (!c->nnest)
        return 0;
    etl_end_t *src = &r->ends[s->dir == ETL_DIR_FORWARD ? 0 : 1];
    etl_nest_t *n = calloc(1, sizeof *n);
    if (!n || !(n->kids = calloc(c->nnest, sizeof *n->kids)))
        goto nomem;
    s->nest = n;
    etl_buf_init(&n->json);
    etl_buf_init(&n->key);
    size_t widest = 0;
    for (size_t k = 0; k < c->nnest; k++) {
        nest_child_t *kid = &n->kids[n->n++];
        kid->cfg = &c->nest[k];
        int ci = etl_pipeline_stream(r->p, kid->cfg->stream);
        kid->scfg = ci >= 0 ? &r->p->streams[ci] : c;
        if (child_schemas(r, s, src, kid) != 0)
            return s->error ? -1 : (etl_srt_fail(s, "out of memory"), -1);
        if (etl_schema_find(s->out, kid->cfg->field) >= 0) {
            etl_srt_fail(s, "stream %s: nest field '%s' is also a column", c->name,
                         kid->cfg->field);
            return -1;
        }
        kid->out_col = etl_schema_add(s->out, kid->cfg->field, ETL_T_JSON, NULL, 0);
        if (kid->out_col < 0)
            goto nomem;
        if (etl_schema_ncols(kid->read) > widest)
            widest = etl_schema_ncols(kid->read);
    }
    /* the out columns grew: the map must cover them (no source column) */
    int *map = realloc(s->map, (etl_schema_ncols(s->out) + 1) * sizeof *map);
    if (!map || !(n->row = calloc(widest + 1, sizeof *n->row)))
        goto nomem;
    s->map = map;
    for (size_t k = 0; k < n->n; k++)
        s->map[n->kids[k].out_col] = -1;
    return 0;
nomem:
    etl_srt_fail(s, "stream %s: out of memory", c->name);
    return -1;
}

/* ------------------------------------------------------------ collect */

typedef struct collect {
    etl_nest_t *n;
    nest_child_t *kid;
    int k;
    int failed;
} collect_t;

static int collect_row(void *arg, const etl_value_t *row)
{
    collect_t *c = arg;
    etl_nest_t *n = c->n;
    nest_child_t *kid = c->kid;
    const etl_value_t *fk = &row[kid->fk];
    if (fk->type == ETL_T_NULL)
        return 0; /* an orphan belongs to no document */
    size_t no = etl_schema_ncols(kid->out);
    for (size_t j = 0; j < no; j++)
        n->row[j] = row[kid->map[j]];
    etl_buf_reset(&n->json);
    etl_row_json_plain(&n->json, kid->out, n->row);
    char tmp[64];
    const char *t;
    size_t tl = etl_value_text(fk, tmp, sizeof tmp, &t);
    sqlite3_bind_int(n->ins, 1, c->k);
    sqlite3_bind_text(n->ins, 2, t, (int)tl, SQLITE_TRANSIENT);
    sqlite3_bind_int64(n->ins, 3, (sqlite3_int64)n->pos++);
    sqlite3_bind_text(n->ins, 4, n->json.data ? n->json.data : "{}", (int)n->json.len,
                      SQLITE_STATIC);
    int rc = sqlite3_step(n->ins);
    sqlite3_reset(n->ins);
    if (rc != SQLITE_DONE || n->json.oom) {
        c->failed = 1;
        return -1;
    }
    return 0;
}

int etl_nest_collect(etl_run_t *r, etl_srt_t *s)
{
    etl_nest_t *n = s->nest;
    if (!n)
        return 0;
    etl_end_t *src = &r->ends[s->dir == ETL_DIR_FORWARD ? 0 : 1];
    /* a private temporary database: SQLite keeps it in a file it deletes */
    if (sqlite3_open("", &n->db) != SQLITE_OK ||
        sqlite3_exec(n->db,
                     "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                     " CREATE TABLE kids(k INTEGER, fk TEXT, pos INTEGER, doc TEXT);"
                     " CREATE INDEX kids_by_fk ON kids(k, fk, pos); BEGIN",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(n->db, "INSERT INTO kids VALUES(?1,?2,?3,?4)", -1, &n->ins, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(n->db, "SELECT doc FROM kids WHERE k=?1 AND fk=?2 ORDER BY pos", -1,
                           &n->get, NULL) != SQLITE_OK) {
        etl_srt_fail(s, "stream %s: nest index: %s", s->cfg->name,
                     n->db ? sqlite3_errmsg(n->db) : "out of memory");
        return -1;
    }
    for (size_t k = 0; k < n->n; k++) {
        nest_child_t *kid = &n->kids[k];
        collect_t c = {n, kid, (int)k, 0};
        etl_emitter_t em;
        etl_emitter_init_collect(&em, r, s, collect_row, &c);
        etl_read_t req = {0};
        req.stream = kid->scfg->name;
        req.schema = kid->read;
        req.full = 1;
        src->src_ctx->err[0] = '\0';
        etl_status_t st = src->lib->desc->source->read(src->src, src->src_ctx, &req, &em);
        etl_emitter_free(&em);
        if (st != ETL_OK || c.failed) {
            etl_srt_fail(s, "nest '%s': reading %s: %s", kid->cfg->field, kid->scfg->name,
                         c.failed ? sqlite3_errmsg(n->db)
                         : src->src_ctx->err[0] ? src->src_ctx->err
                                                : etl_status_name(st));
            return -1;
        }
        etl_logf(r->log, ETL_LOG_DEBUG, "run", s->cfg->name, "nest '%s': %lld row(s) of %s",
                 kid->cfg->field, (long long)em.read, kid->scfg->name);
    }
    if (sqlite3_exec(n->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        etl_srt_fail(s, "stream %s: nest index: %s", s->cfg->name, sqlite3_errmsg(n->db));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ attach */

int etl_nest_attach(etl_srt_t *s, etl_batch_t *b, char *err, size_t errlen)
{
    etl_nest_t *n = s->nest;
    if (!n || !n->db)
        return 0;
    size_t nc = etl_schema_ncols(s->out);
    for (size_t i = 0; i < b->nrows; i++) {
        etl_value_t *row = b->values + i * nc;
        if (b->op[i] != ETL_OP_UPSERT)
            continue;
        etl_buf_reset(&n->key);
        if (etl_row_key(&n->key, row, s->key, s->nkey) != 0)
            continue; /* no key: no children */
        for (size_t k = 0; k < n->n; k++) {
            sqlite3_bind_int(n->get, 1, (int)k);
            sqlite3_bind_text(n->get, 2, n->key.data, (int)n->key.len, SQLITE_STATIC);
            etl_buf_reset(&n->json);
            etl_buf_addc(&n->json, '[');
            int rc, first = 1;
            while ((rc = sqlite3_step(n->get)) == SQLITE_ROW) {
                if (!first)
                    etl_buf_addc(&n->json, ',');
                first = 0;
                etl_buf_add(&n->json, sqlite3_column_text(n->get, 0),
                            (size_t)sqlite3_column_bytes(n->get, 0));
            }
            sqlite3_reset(n->get);
            etl_buf_addc(&n->json, ']');
            if (rc != SQLITE_DONE || n->json.oom) {
                etl_errf(err, errlen, "nest index: %s", sqlite3_errmsg(n->db));
                return -1;
            }
            char *doc = etl_arena_dup(&b->arena, n->json.data, n->json.len);
            if (!doc) {
                etl_errf(err, errlen, "out of memory");
                return -1;
            }
            row[n->kids[k].out_col] = etl_str(ETL_T_JSON, doc, n->json.len);
        }
    }
    return 0;
}
