/* test_config.c - the pipeline DSL loader: values, defaults, interpolation,
 * paths, fk order, matrix, and every error path. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

#define GOOD ETL_TEST_FIXTURES "/pipelines/good"
#define BAD ETL_TEST_FIXTURES "/pipelines/bad"
/* Inline pipelines are named as if they lived beside the good fixtures, so
 * relative paths (lua/orders.lua, secret.txt) resolve there. */
#define INLINE GOOD "/inline.yaml"

#define HEAD                                                                                       \
    "version: 1\n"                                                                                 \
    "name: t\n"                                                                                    \
    "source: {plugin: pgsqlite, url: \"sqlite:a.db\"}\n"                                           \
    "sink: {plugin: pgsqlite, url: \"sqlite:b.db\"}\n"

static const char *test_env(const char *name, void *arg)
{
    (void)arg;
    static const char *const kv[][2] = {
        {"TOKEN", "t0k"},
        {"ACME_SHOPIFY_TOKEN", "acme-tok"},
        {"BOLT_SHOPIFY_TOKEN", "bolt-tok"},
        {"EMPTY", ""},
        {"DB_HOST", "db.local"},
        {"LOOKS_LIKE_REF", "${TOKEN}"},
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(kv); i++)
        if (strcmp(kv[i][0], name) == 0)
            return kv[i][1];
    return NULL;
}

typedef struct loaded {
    etl_pipeline_t **v;
    size_t n;
    etl_cfg_status_t st;
    char err[1024];
} loaded_t;

static void load_text(loaded_t *l, const char *path, const char *yaml, const char *client)
{
    etl_load_opts_t o = {test_env, NULL, client};
    l->st = etl_config_parse(path, yaml, strlen(yaml), &o, &l->v, &l->n, l->err, sizeof l->err);
}

static void load_file(loaded_t *l, const char *path, const char *client)
{
    etl_load_opts_t o = {test_env, NULL, client};
    l->st = etl_config_load(path, &o, &l->v, &l->n, l->err, sizeof l->err);
}

static void unload(loaded_t *l)
{
    etl_pipelines_free(l->v, l->n);
    l->v = NULL;
    l->n = 0;
}

/* Parses yaml that must be valid and hold one pipeline. */
static etl_pipeline_t *parse_ok(loaded_t *l, const char *yaml)
{
    load_text(l, INLINE, yaml, NULL);
    if (l->st != ETL_CFG_OK)
        print_error("unexpected error: %s\n", l->err);
    assert_int_equal(l->st, ETL_CFG_OK);
    assert_int_equal(l->n, 1);
    return l->v[0];
}

/* Parses yaml that must fail at "LINE:COL: " with a message holding substr. */
static void parse_bad(const char *yaml, const char *at, const char *substr)
{
    loaded_t l;
    load_text(&l, "mem.yaml", yaml, NULL);
    if (l.st != ETL_CFG_INVALID || strncmp(l.err, "mem.yaml:", 9) != 0 ||
        strncmp(l.err + 9, at, strlen(at)) != 0 || !strstr(l.err, substr) ||
        !strstr(l.err, " (expected "))
        print_error("wanted %s ...%s..., got (%d) %s\n", at, substr, l.st, l.err);
    assert_int_equal(l.st, ETL_CFG_INVALID);
    assert_null(l.v);
    assert_int_equal(l.n, 0);
    assert_memory_equal(l.err, "mem.yaml:", 9);
    assert_memory_equal(l.err + 9, at, strlen(at));
    assert_non_null(strstr(l.err, substr));
    assert_non_null(strstr(l.err, " (expected "));
}

static const etl_opt_cfg_t *opt(const etl_endpoint_cfg_t *e, const char *name)
{
    for (size_t i = 0; i < e->nopts; i++)
        if (strcmp(e->opts[i].name, name) == 0)
            return &e->opts[i];
    return NULL;
}

static const etl_stream_cfg_t *stream(const etl_pipeline_t *p, const char *name)
{
    int i = etl_pipeline_stream(p, name);
    assert_true(i >= 0);
    return &p->streams[i];
}

static const char *pair(const etl_pair_t *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return v[i].value;
    return NULL;
}

/* ------------------------------------------------------------ valid pipelines */

static void test_builtin_defaults(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "streams:\n  - name: items\n");
    assert_string_equal(p->file, INLINE);
    assert_string_equal(p->dir, GOOD);
    assert_string_equal(p->name, "t");
    assert_null(p->client);
    assert_string_equal(p->state_url, "sqlite:" GOOD "/.etl/t.state.db");
    assert_int_equal(p->state_loc.line, 0);
    assert_int_equal(p->direction, ETL_DIR_FORWARD);
    assert_null(p->identity.key);
    assert_null(p->hooks);
    assert_int_equal(p->max_errors, 0);
    assert_null(p->log_dir);
    assert_int_equal(p->log_keep, 30 * 86400);
    assert_null(p->schedule.cron);
    assert_int_equal(p->schedule.every, 0);
    assert_int_equal(p->schedule.expires, 0);
    assert_int_equal(p->lua_instructions, 10000000);
    assert_int_equal(p->lua_memory, 64u * 1024 * 1024);
    assert_string_equal(p->source.plugin, "pgsqlite");
    assert_int_equal(p->source.loc.line, 3);
    assert_int_equal(p->source.map_loc.line, 3);
    assert_int_equal(p->source.map_loc.col, 9);

    assert_int_equal(p->nstreams, 1);
    const etl_stream_cfg_t *s = &p->streams[0];
    assert_string_equal(s->name, "items");
    assert_string_equal(s->table, "items");
    assert_int_equal(s->loc.line, 6);
    assert_int_equal(s->loc.col, 5);
    assert_int_equal(s->key.n, 0);
    assert_null(s->cursor);
    assert_int_equal(s->mode, ETL_MODE_INCREMENTAL);
    assert_int_equal(s->overlap, 0);
    assert_int_equal(s->window, 0);
    assert_int_equal(s->write, ETL_WRITE_UPSERT);
    assert_int_equal(s->conflict, ETL_CONFLICT_SOURCE);
    assert_int_equal(s->deletes, ETL_DELETES_IGNORE);
    assert_null(s->deletes_column);
    assert_int_equal(s->batch, 500);
    assert_int_equal(s->transform.kind, ETL_XF_NONE);
    assert_int_equal(s->resolve.kind, ETL_XF_NONE);
    assert_null(s->timezone);
    assert_int_equal(p->order[0], 0);
    unload(&l);
}

static void test_pos_fixture(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/pos.yaml", NULL);
    if (l.st)
        print_error("%s\n", l.err);
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_int_equal(l.n, 1);
    etl_pipeline_t *p = l.v[0];
    assert_string_equal(p->name, "pos");
    assert_string_equal(p->state_url, "sqlite:" GOOD "/.etl/pos.state.db");
    assert_int_equal(p->state_loc.line, 4);
    assert_int_equal(p->direction, ETL_DIR_BOTH);
    assert_string_equal(p->identity.key, "id");
    assert_string_equal(p->identity.sink_key, "server_id");
    assert_string_equal(p->identity.sink_pk, "local_id");
    assert_int_equal(p->max_errors, 10);
    assert_string_equal(p->log_dir, GOOD "/logs");
    assert_int_equal(p->log_keep, 14 * 86400);
    assert_int_equal(p->lua_instructions, 5000000);
    assert_int_equal(p->lua_memory, 32u * 1024 * 1024);
    assert_string_equal(p->schedule.cron, "*/30 * * * *");
    assert_int_equal(p->schedule.expires, 1800);
    /* ${OFFICE_URL:-...} with OFFICE_URL unset takes the default. */
    assert_string_equal(opt(&p->source, "url")->value, "sqlite:var/office.db");
    assert_string_equal(opt(&p->sink, "create")->value, "true");
    assert_null(opt(&p->sink, "plugin"));

    /* defaults: applied where the stream says nothing */
    const etl_stream_cfg_t *stores = stream(p, "stores");
    assert_string_equal(stores->cursor, "updated_at");
    assert_int_equal(stores->overlap, 300);
    assert_int_equal(stores->conflict, ETL_CONFLICT_NEWER);
    assert_int_equal(stores->batch, 250);
    assert_int_equal(stores->key.n, 1);
    assert_string_equal(stores->key.items[0], "id");

    const etl_stream_cfg_t *products = stream(p, "products");
    assert_int_equal(products->nrename, 1);
    assert_string_equal(products->rename[0].name, "master_stock_quantity");
    assert_string_equal(products->rename[0].value, "stock_quantity");
    assert_int_equal(products->local_only.n, 6);
    assert_string_equal(products->local_only.items[5], "available_quantity");

    const etl_stream_cfg_t *orders = stream(p, "orders");
    assert_int_equal(orders->nfk, 2);
    assert_string_equal(orders->fk[0].column, "shift_id");
    assert_string_equal(orders->fk[0].parent, "shifts");
    assert_int_equal(orders->deletes, ETL_DELETES_SOFT);
    assert_string_equal(orders->deletes_column, "deleted_at");
    assert_int_equal(orders->transform.kind, ETL_XF_FILE);
    assert_string_equal(orders->transform.text, GOOD "/lua/orders.lua");
    assert_int_equal(orders->window, 90 * 86400);

    /* the stream's own settings win over defaults */
    const etl_stream_cfg_t *audit = stream(p, "audit");
    assert_string_equal(audit->cursor, "");
    assert_int_equal(audit->mode, ETL_MODE_FULL);
    assert_int_equal(audit->write, ETL_WRITE_REPLACE);
    assert_int_equal(audit->deletes, ETL_DELETES_HARD);
    assert_null(audit->deletes_column);
    assert_int_equal(audit->batch, 1000);

    /* parents first, declaration order among equals; users -> users is fine */
    static const char *const want[] = {"stores", "terminals", "users", "shifts",
                                       "products", "orders", "audit"};
    assert_int_equal(p->nstreams, ETL_ARRAY_LEN(want));
    for (size_t i = 0; i < p->nstreams; i++)
        assert_string_equal(p->streams[p->order[i]].name, want[i]);
    unload(&l);
}

static void test_interpolation_forms(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/interp.yaml", NULL);
    if (l.st)
        print_error("%s\n", l.err);
    assert_int_equal(l.st, ETL_CFG_OK);
    etl_pipeline_t *p = l.v[0];
    assert_string_equal(p->state_url, "postgres://etl@db.local/state");
    assert_string_equal(opt(&p->source, "url")->value, "postgres://app:s3cret@db.local/office");
    assert_string_equal(opt(&p->source, "price")->value, "$5 and pa$word");
    assert_string_equal(opt(&p->source, "fallback")->value, "db.local");
    assert_string_equal(opt(&p->source, "empty")->value, "x");
    const etl_opt_cfg_t *tables = opt(&p->source, "tables");
    assert_true(tables->is_list);
    assert_int_equal(tables->n_items, 3);
    assert_string_equal(tables->items[1], "t0k");
    assert_string_equal(tables->value, "a,t0k,c");
    const etl_opt_cfg_t *cols = opt(&p->source, "columns");
    assert_false(cols->is_list);
    assert_string_equal(cols->value, "x, y ,z");
    assert_int_equal(cols->n_items, 3);
    assert_string_equal(cols->items[0], "x");
    assert_string_equal(cols->items[1], "y");
    assert_string_equal(cols->items[2], "z");
    assert_string_equal(p->sink.opts[0].value, "sqlite:/abs/sink.db");
    const etl_stream_cfg_t *s = stream(p, "orders");
    assert_string_equal(pair(s->select, s->nselect, "region"), "eu");
    assert_string_equal(pair(s->select, s->nselect, "token"), "t0k");
    unload(&l);
}

static void test_interpolation_edges(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "streams:\n"
                                          "  - name: a\n"
                                          "    table: \"${EMPTY:-dflt}|${EMPTY}|${NOPE:-}|$$|$${TOKEN}|$x|end$\"\n"
                                          "  - name: b\n"
                                          "    table: \"${LOOKS_LIKE_REF}\"\n"
                                          "  - name: c\n"
                                          "    table: \"${NOPE:-${NADA:-${TOKEN}}}\"\n"
                                          "  - name: d\n"
                                          "    table: \"${file:secret.txt}!\"\n");
    /* :- takes the default for an empty value too, as in the shell */
    assert_string_equal(stream(p, "a")->table, "dflt|||$|${TOKEN}|$x|end$");
    /* inserted text is never interpolated again */
    assert_string_equal(stream(p, "b")->table, "${TOKEN}");
    assert_string_equal(stream(p, "c")->table, "t0k");
    /* the trailing newline of the file is not part of the value */
    assert_string_equal(stream(p, "d")->table, "s3cret!");
    unload(&l);
}

static void test_process_environment_when_no_getenv(void **state)
{
    (void)state;
    static const char yaml[] = HEAD "streams:\n  - name: \"${ETL_TEST_CONFIG_VAR}\"\n";
    etl_pipeline_t **v;
    size_t n;
    char err[512];
    setenv("ETL_TEST_CONFIG_VAR", "from_env", 1);
    assert_int_equal(etl_config_parse("x.yaml", yaml, strlen(yaml), NULL, &v, &n, err, sizeof err),
                     ETL_CFG_OK);
    assert_string_equal(v[0]->streams[0].name, "from_env");
    etl_pipelines_free(v, n);
    unsetenv("ETL_TEST_CONFIG_VAR");
    assert_int_equal(etl_config_parse("x.yaml", yaml, strlen(yaml), NULL, &v, &n, err, sizeof err),
                     ETL_CFG_INVALID);
    assert_non_null(strstr(err, "x.yaml:6:11: environment variable ETL_TEST_CONFIG_VAR is not set for 'name'"));
}

static void test_matrix_expansion(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/matrix.yaml", NULL);
    if (l.st)
        print_error("%s\n", l.err);
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_int_equal(l.n, 2);
    etl_pipeline_t *acme = l.v[0], *bolt = l.v[1];
    assert_string_equal(acme->client, "acme");
    assert_string_equal(bolt->client, "bolt");
    assert_string_equal(acme->name, "shops");
    assert_string_equal(opt(&acme->source, "shop")->value, "acme-store");
    assert_string_equal(opt(&acme->source, "token")->value, "acme-tok");
    assert_string_equal(opt(&bolt->source, "token")->value, "bolt-tok");
    assert_string_equal(opt(&bolt->sink, "url")->value, "sqlite:var/bolt.db");
    assert_string_equal(stream(acme, "orders")->table, "client_acme_orders");
    assert_string_equal(stream(bolt, "orders")->table, "client_bolt_orders");
    /* the pipeline's schedule, unless the entry has its own */
    assert_string_equal(acme->schedule.cron, "0 * * * *");
    assert_null(bolt->schedule.cron);
    assert_int_equal(bolt->schedule.every, 6 * 3600);
    unload(&l);
}

static void test_matrix_client_filter(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/matrix.yaml", "bolt");
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0]->client, "bolt");
    unload(&l);

    load_file(&l, GOOD "/matrix.yaml", "zeta");
    assert_int_equal(l.st, ETL_CFG_INVALID);
    assert_null(l.v);
    assert_non_null(strstr(l.err, "unknown client 'zeta' (expected one of: acme, bolt)"));

    load_file(&l, GOOD "/pos.yaml", "acme");
    assert_int_equal(l.st, ETL_CFG_INVALID);
    assert_non_null(strstr(l.err, "no matrix"));
}

static void test_matrix_values_interpolated_once(void **state)
{
    (void)state;
    loaded_t l;
    load_text(&l, INLINE,
              HEAD "matrix:\n  - { client: a, tok: \"${TOKEN}\", n: 3 }\n"
                   "streams:\n  - { name: \"s_${matrix.n}\", table: \"${matrix.tok}\" }\n",
              NULL);
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_string_equal(l.v[0]->streams[0].name, "s_3");
    assert_string_equal(l.v[0]->streams[0].table, "t0k");
    unload(&l);
    parse_bad(HEAD "matrix:\n  - { client: a, x: \"${matrix.client}\" }\nstreams:\n  - name: s\n",
              "6:21: ", "inside the matrix itself");
}

static void test_matrix_unset_variable_is_the_clients(void **state)
{
    (void)state;
    const char *yaml = HEAD "matrix:\n  - { client: a, tok: \"${TOKEN}\" }\n"
                            "  - { client: b, tok: \"${NOT_SET_ANYWHERE}\" }\n"
                            "streams:\n  - { name: s, table: \"t_${matrix.client}\" }\n";
    loaded_t l;
    /* the file loads; client b carries its error, a has none */
    load_text(&l, "mem.yaml", yaml, NULL);
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_int_equal(l.n, 2);
    assert_null(l.v[0]->config_error);
    assert_non_null(l.v[1]->config_error);
    assert_memory_equal(l.v[1]->config_error, "mem.yaml:7:", 11);
    assert_non_null(strstr(l.v[1]->config_error, "NOT_SET_ANYWHERE is not set"));
    unload(&l);
    /* asking for a: b's variable is not needed */
    load_text(&l, "mem.yaml", yaml, "a");
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_int_equal(l.n, 1);
    unload(&l);
    /* asking for b: its error is the load's */
    load_text(&l, "mem.yaml", yaml, "b");
    assert_int_equal(l.st, ETL_CFG_INVALID);
    assert_non_null(strstr(l.err, "mem.yaml:7:"));
    assert_non_null(strstr(l.err, "NOT_SET_ANYWHERE"));
    /* anything else wrong in an entry still fails the whole file */
    parse_bad(HEAD "matrix:\n  - { client: a, x: \"${BROKEN\" }\nstreams:\n  - name: s\n",
              "6:21: ", "unterminated");
}

static void test_hooks_and_transform_kinds(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/hooks.yaml", NULL);
    if (l.st)
        print_error("%s\n", l.err);
    assert_int_equal(l.st, ETL_CFG_OK);
    etl_pipeline_t *p = l.v[0];
    assert_string_equal(p->hooks, GOOD "/lua/hooks.lua");
    assert_int_equal(p->hooks_loc.line, 4);
    const etl_stream_cfg_t *orders = stream(p, "orders");
    assert_int_equal(orders->transform.kind, ETL_XF_FUNCTION);
    assert_string_equal(orders->transform.text, "fix_order");
    assert_int_equal(orders->resolve.kind, ETL_XF_FUNCTION);
    assert_string_equal(orders->resolve.text, "pick");
    assert_int_equal(orders->conflict, ETL_CONFLICT_LUA);
    const etl_stream_cfg_t *lines = stream(p, "lines");
    assert_int_equal(lines->transform.kind, ETL_XF_INLINE);
    assert_non_null(strstr(lines->transform.text, "rec.total = rec.qty * rec.price\n"));
    assert_int_equal(lines->ncolumns, 4);
    assert_string_equal(lines->columns[1].name, "total");
    assert_int_equal(lines->columns[1].type, ETL_T_NUMERIC);
    assert_int_equal(lines->columns[2].type, ETL_T_TIMESTAMP);
    assert_int_equal(lines->key.n, 2);
    assert_string_equal(lines->key.items[1], "line_no");
    assert_int_equal(lines->fallback_key.n, 3);
    assert_string_equal(lines->fallback_key.items[1], "size");
    unload(&l);
}

static void test_nest(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/nest.yaml", NULL);
    assert_int_equal(l.st, ETL_CFG_OK);
    const etl_stream_cfg_t *r = stream(l.v[0], "receipts");
    assert_int_equal(r->nnest, 2);
    assert_string_equal(r->nest[0].field, "sales");
    assert_string_equal(r->nest[0].stream, "sales");
    assert_string_equal(r->nest[0].fk, "receipt_id");
    assert_string_equal(r->nest[0].rename[0].value, "local_sale_id");
    assert_null(r->nest[0].cursor);
    assert_string_equal(r->nest[1].cursor, "");
    assert_string_equal(r->nest[1].exclude.items[0], "card");
    assert_string_equal(stream(l.v[0], "sales")->timezone, "UTC");
    unload(&l);
}

static void test_deletes_forms(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "defaults: { deletes: soft }\n"
                                          "streams:\n"
                                          "  - name: a\n"
                                          "  - { name: b, deletes: { mode: soft } }\n"
                                          "  - { name: c, deletes: { mode: soft, column: gone_at } }\n"
                                          "  - { name: d, deletes: hard }\n"
                                          "  - { name: e, deletes: { mode: ignore } }\n");
    assert_int_equal(stream(p, "a")->deletes, ETL_DELETES_SOFT);
    assert_string_equal(stream(p, "a")->deletes_column, "deleted_at");
    assert_string_equal(stream(p, "b")->deletes_column, "deleted_at");
    assert_string_equal(stream(p, "c")->deletes_column, "gone_at");
    assert_int_equal(stream(p, "d")->deletes, ETL_DELETES_HARD);
    assert_null(stream(p, "d")->deletes_column);
    assert_int_equal(stream(p, "e")->deletes, ETL_DELETES_IGNORE);
    unload(&l);
}

static void test_list_option_forms(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, "version: 1\nname: t\n"
                                     "source:\n  plugin: x\n  one: a\n  csv: \"a, b,,c\"\n"
                                     "  list: [p, q]\n  empty: \"\"\n  nothing:\n  num: 42\n"
                                     "sink: {plugin: y}\nstreams:\n  - name: s\n"
                                     "    key: \"k1, k2\"\n    exclude: [x]\n");
    const etl_opt_cfg_t *o = opt(&p->source, "one");
    assert_int_equal(o->n_items, 1);
    assert_string_equal(o->items[0], "a");
    assert_int_equal(o->loc.line, 5);
    assert_int_equal(o->loc.col, 3);
    assert_int_equal(o->vloc.col, 8);
    o = opt(&p->source, "csv");
    assert_int_equal(o->n_items, 4);
    assert_string_equal(o->items[1], "b");
    assert_string_equal(o->items[2], "");
    o = opt(&p->source, "list");
    assert_true(o->is_list);
    assert_string_equal(o->value, "p,q");
    o = opt(&p->source, "empty");
    assert_string_equal(o->value, "");
    assert_int_equal(o->n_items, 1);
    /* a key with no value is as if not written */
    assert_null(opt(&p->source, "nothing"));
    assert_string_equal(opt(&p->source, "num")->value, "42");
    assert_int_equal(p->streams[0].key.n, 2);
    assert_string_equal(p->streams[0].key.items[1], "k2");
    assert_int_equal(p->streams[0].exclude.n, 1);
    assert_int_equal(p->streams[0].exclude.loc.line, 15);
    unload(&l);
}

static void test_topological_order(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "streams:\n"
                                          "  - { name: lines, fk: { order_id: orders, item_id: items } }\n"
                                          "  - { name: orders, fk: { customer_id: customers } }\n"
                                          "  - { name: employees, fk: { manager_id: employees } }\n"
                                          "  - { name: items }\n"
                                          "  - { name: customers }\n");
    static const char *const want[] = {"employees", "items", "customers", "orders", "lines"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(want); i++)
        assert_string_equal(p->streams[p->order[i]].name, want[i]);
    assert_int_equal(p->streams[0].fk[1].loc.line, 6);
    unload(&l);
}

static void test_paths(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "state: sqlite:../state/x.db\nlog: { dir: ./logs }\n"
                                          "streams:\n  - name: s\n");
    assert_string_equal(p->state_url, "sqlite:" GOOD "/../state/x.db");
    assert_string_equal(p->log_dir, GOOD "/logs");
    unload(&l);

    p = parse_ok(&l, HEAD "state: sqlite:///var/lib/etl/s.db\nstreams:\n  - name: s\n");
    assert_string_equal(p->state_url, "sqlite:/var/lib/etl/s.db");
    unload(&l);

    p = parse_ok(&l, HEAD "state: postgresql://u@h/db\nstreams:\n  - name: s\n");
    assert_string_equal(p->state_url, "postgresql://u@h/db");
    unload(&l);

    /* a relative pipeline path anchors at the current directory */
    char cwd[4096], want[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    load_text(&l, "./sub/./deeper//p.yaml", HEAD "streams:\n  - name: s\n", NULL);
    assert_int_equal(l.st, ETL_CFG_OK);
    snprintf(want, sizeof want, "%s/sub/deeper", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(l.v[0]->dir, want);
    assert_string_equal(l.v[0]->file, "./sub/./deeper//p.yaml");
    unload(&l);
}

static void test_null_is_unset(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "hooks: ~\nstreams:\n  - name: s\n    table: null\n"
                                          "    cursor:\n");
    assert_null(p->hooks);
    assert_string_equal(p->streams[0].table, "s");
    assert_null(p->streams[0].cursor);
    unload(&l);
    /* a quoted "~" is text */
    p = parse_ok(&l, HEAD "streams:\n  - name: s\n    table: \"~\"\n");
    assert_string_equal(p->streams[0].table, "~");
    unload(&l);
}

static void test_aliases_within_budget(void **state)
{
    (void)state;
    loaded_t l;
    etl_pipeline_t *p = parse_ok(&l, HEAD "streams:\n"
                                          "  - { name: a, local_only: &lo [x, y] }\n"
                                          "  - { name: b, local_only: *lo, exclude: *lo }\n");
    assert_int_equal(p->streams[1].exclude.n, 2);
    assert_string_equal(p->streams[1].local_only.items[1], "y");
    unload(&l);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(etl_mode_name(ETL_MODE_FULL), "full");
    assert_string_equal(etl_direction_name(ETL_DIR_REVERSE), "reverse");
    assert_string_equal(etl_write_name(ETL_WRITE_APPEND), "append");
    assert_string_equal(etl_conflict_name(ETL_CONFLICT_NEWER), "newer");
    assert_string_equal(etl_deletes_name(ETL_DELETES_SOFT), "soft");
    assert_string_equal(etl_mode_name((etl_mode_t)99), "?");
    assert_int_equal(etl_pipeline_stream(NULL, "x"), -1);
    etl_pipeline_free(NULL);
    etl_pipelines_free(NULL, 0);
}

/* ------------------------------------------------------------ errors */

static void test_error_messages(void **state)
{
    (void)state;
    parse_bad(HEAD "streams:\n  - name: orders\n    modee: full\n", "7:5: ",
              "unknown key 'modee' in stream 'orders' (expected one of: name, table, key,");
    parse_bad(HEAD "streams:\n  - name: orders\n    overlap: 5 minutes\n", "7:14: ",
              "bad duration '5 minutes' for 'overlap' (expected a number with a unit: 30s, 5m, 2h, 90d)");
    parse_bad(HEAD "streams:\n  - name: orders\n    batch: x\n", "7:12: ",
              "'batch' must be an integer (expected 1..100000)");
    parse_bad(HEAD "streams:\n  - name: orders\n    batch: 100001\n", "7:12: ", "out of range");
    parse_bad("version: 1\nname: t\nsource: {plugin: p, url: \"${OFFICE_URL}\"}\nsink: {plugin: p}\n"
              "streams: [{name: s}]\n",
              "3:26: ",
              "environment variable OFFICE_URL is not set for 'url' (expected it set, or ${OFFICE_URL:-default})");
    parse_bad(HEAD "streams:\n  - name: shifts\n  - name: o\n    fk: { shift_id: shiftz }\n",
              "8:11: ", "fk 'shift_id' names unknown stream 'shiftz' in stream 'o' (expected one of: shifts, o)");
    parse_bad(HEAD "streams:\n  - { name: a, fk: { b_id: b } }\n  - { name: b, fk: { a_id: a } }\n",
              "6:22: ", "fk cycle: a -> b -> a (expected the fk graph to have no cycle)");
    parse_bad(HEAD "direction: up\nstreams: [{name: s}]\n", "5:12: ",
              "bad value 'up' for 'direction' (expected one of: forward, reverse, both)");
    parse_bad(HEAD "streams:\n  - name: s\n    columns: { a: varchar }\n", "7:19: ",
              "unknown column type 'varchar'");
    parse_bad(HEAD "streams:\n  - name: s\n    columns: { a: \"null\" }\n", "7:19: ",
              "unknown column type 'null'");
    parse_bad(HEAD "streams:\n  - name: s\n    key: {a: b}\n", "7:10: ",
              "'key' must be a list or a string, not a mapping");
    parse_bad(HEAD "streams:\n  - name: s\n    key: []\n", "7:10: ", "'key' is an empty list");
    parse_bad(HEAD "streams:\n  - name: s\n    table: \"\"\n", "7:12: ", "'table' is empty");
    parse_bad(HEAD "streams:\n  - name: s\n    rename: { a: \"\" }\n", "7:15: ", "rename of 'a'");
    parse_bad(HEAD "streams:\n  - name: s\n    rename: { a: [b] }\n", "7:18: ", "'a' in 'rename' must be a string");
    parse_bad(HEAD "streams:\n  - name: s\n    fk: [a]\n", "7:9: ", "'fk' must be a mapping");
    parse_bad(HEAD "streams:\n  - name: s\n    nest: { x: y }\n", "7:16: ", "nest 'x' in stream 's' must be a mapping");
    parse_bad(HEAD "streams:\n  - name: s\n    nest: { x: { fk: a } }\n", "7:16: ", "missing key 'stream'");
    parse_bad(HEAD "streams:\n  - name: s\n  - name\n", "7:5: ", "stream #2 must be a mapping");
    parse_bad(HEAD "streams:\n  - name: s\n    window: 0s0\n", "7:13: ", "bad duration '0s0'");
    parse_bad(HEAD "schedule: { every: 0 }\nstreams: [{name: s}]\n", "5:20: ", "'every' must not be zero");
    parse_bad(HEAD "schedule: { expires: 1h }\nstreams: [{name: s}]\n", "5:11: ", "missing key 'cron' or 'every'");
    parse_bad(HEAD "lua: { instructions: 10 }\nstreams: [{name: s}]\n", "5:22: ", "'instructions' is 10, out of range");
    parse_bad(HEAD "log: { keep: 0 }\nstreams: [{name: s}]\n", "5:14: ", "'keep' must not be zero");
    parse_bad(HEAD "state: \"sqlite:\"\nstreams: [{name: s}]\n", "5:8: ", "no path");
    parse_bad(HEAD "state: \"sqlite://relative\"\nstreams: [{name: s}]\n", "5:8: ", "bad state");
    parse_bad("version: 1\nname: t\nsource: {plugin: \"../evil\"}\nsink: {plugin: p}\nstreams: [{name: s}]\n",
              "3:18: ", "bad plugin name '../evil' in source");
    parse_bad("version: 1\nname: t\nsource: {plugin: p, tables: []}\nsink: {plugin: p}\nstreams: [{name: s}]\n",
              "3:29: ", "option 'tables' in source is an empty list");
    parse_bad("version: 1\nname: t\nsource: {plugin: p, t: [a, [b]]}\nsink: {plugin: p}\nstreams: [{name: s}]\n",
              "3:28: ", "an item of 't' in source is a list");
    parse_bad("version: \"1.0\"\n", "1:10: ", "unsupported version '1.0'");
    parse_bad("version: [1]\n", "1:10: ", "'version' must be 1, not a list");
    parse_bad("version: 1\n[a]: b\n", "2:1: ", "a key that is not a name");
    parse_bad("version: 1\n\"na\\0me\": t\n", "2:1: ", "a key that is not a name");
    /* the version is read before anything else */
    parse_bad("version: 2\nnew_key: x\n", "1:10: ", "unsupported version '2'");
    parse_bad(HEAD "streams:\n  - name: \"a\\0b\"\n", "6:11: ", "'name' holds a NUL character");
    parse_bad("version: 1\nname: t\nmatrix: {client: a}\n", "3:9: ", "'matrix' must be a list");
    parse_bad("version: 1\nname: t\nmatrix: []\n", "3:9: ", "'matrix' is an empty list");
    parse_bad("version: 1\nname: t\nmatrix: [a]\n", "3:10: ", "matrix entry #1 must be a mapping");
    parse_bad("version: 1\nname: t\nmatrix: [{client: \"a b\"}]\n", "3:19: ", "bad client 'a b'");
    parse_bad("version: 1\nname: t\nmatrix: [{client: a, x: [1]}]\n", "3:25: ", "'x' in matrix entry #1 must be a string");
    parse_bad("version: 1\nname: t\nmatrix: [{client: a, schedule: 1h}]\n", "3:32: ", "'schedule' in matrix entry #1 must be a mapping");
    parse_bad(HEAD "schedule: { cron: \"* * * * *\" }\nmatrix: [{client: a, schedule: {every: x}}]\nstreams: [{name: s}]\n",
              "6:40: ", "bad duration 'x' for 'every'");
    parse_bad(HEAD "streams: [{name: s, table: \"${X:-${Y:-${Z:-${W:-${V:-${U:-${T:-${S:-${R:-${Q:-}}}}}}}}}}\"}]\n",
              "5:28: ", "nested too deep");
    parse_bad(HEAD "streams: [{name: s, table: \"${file:}\"}]\n", "5:28: ", "empty ${file:}");
    parse_bad(HEAD "streams: [{name: s, table: \"${file:" GOOD "/lua}\"}]\n", "5:28: ", "not a regular file");
    parse_bad(HEAD "streams: [{name: s, table: \"${matrix.}\"}]\n", "5:28: ", "bad reference '${matrix.}'");
    parse_bad(HEAD "streams: [{name: s, table: \"${X:a}\"}]\n", "5:28: ", "bad reference '${X:a}'");
    parse_bad(HEAD "streams: [{name: s, table: \"${}\"}]\n", "5:28: ", "bad reference '${}'");
    parse_bad("version: 1\n\xff: x\n", "2:1: ", "invalid");
    parse_bad("a: 1\n---\n", "3:1: ", "a second YAML document");
    parse_bad("a: [1\n", "2:1: ", "did not find expected ',' or ']'");
}

static void test_billion_laughs_is_refused(void **state)
{
    (void)state;
    /* Every level is a list of streams' column lists that all type check,
     * so only the alias budget stops it. */
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, HEAD "streams:\n  - { name: s0, local_only: &l0 [a, b, c, d, e, f, g, h, i, j] }\n");
    for (int i = 1; i < 400; i++)
        etl_buf_printf(&b, "  - { name: s%d, local_only: *l0, exclude: *l0, key: *l0, fallback_key: *l0 }\n", i);
    loaded_t l;
    load_text(&l, "mem.yaml", b.data, NULL);
    assert_int_equal(l.st, ETL_CFG_INVALID);
    assert_non_null(strstr(l.err, "aliases expand the document"));
    etl_buf_free(&b);

    /* An alias to its own anchor: the walk is schema-shaped, so it stops. */
    load_text(&l, "mem.yaml", HEAD "streams: &s [{name: a, local_only: *s}]\n", NULL);
    assert_int_equal(l.st, ETL_CFG_INVALID);
}

static void test_deep_nesting_is_refused(void **state)
{
    (void)state;
    /* libyaml's scanner slows down with flow depth: this must stay fast. */
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, "version: 1\nsource: ");
    for (int i = 0; i < 200000; i++)
        etl_buf_addc(&b, '[');
    loaded_t l;
    load_text(&l, "mem.yaml", b.data, NULL);
    assert_int_equal(l.st, ETL_CFG_INVALID);
    assert_string_equal(l.err, "mem.yaml:2:72: nesting deeper than 64 levels (expected a pipeline, not deeply nested data)");
    etl_buf_free(&b);
}

static void test_many_clients_and_streams(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, HEAD "matrix:\n");
    for (int i = 0; i < 50; i++)
        etl_buf_printf(&b, "  - { client: c%d }\n", i);
    etl_buf_adds(&b, "streams:\n");
    /* declared children first: each stream's parent comes after it */
    for (int i = 0; i < 300; i++)
        etl_buf_printf(&b, "  - { name: s%d, fk: { p: s%d } }\n", i, i == 299 ? 299 : i + 1);
    loaded_t l;
    load_text(&l, "mem.yaml", b.data, NULL);
    etl_buf_free(&b);
    if (l.st)
        print_error("%s\n", l.err);
    assert_int_equal(l.st, ETL_CFG_OK);
    assert_int_equal(l.n, 50);
    assert_string_equal(l.v[49]->client, "c49");
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(l.v[49]->order[i], 299 - i);
    unload(&l);
}

static void test_load_io_error(void **state)
{
    (void)state;
    loaded_t l;
    load_file(&l, GOOD "/no-such-pipeline.yaml", NULL);
    assert_int_equal(l.st, ETL_CFG_IO);
    assert_null(l.v);
    assert_non_null(strstr(l.err, "no-such-pipeline.yaml: cannot read"));
    load_file(&l, GOOD, NULL);
    assert_int_equal(l.st, ETL_CFG_IO);
    assert_non_null(strstr(l.err, "good: cannot read: Is a directory"));
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the *.yaml files of dir, sorted; caller frees. */
static size_t list_yaml(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **v = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        v = realloc(v, (n + 1) * sizeof *v);
        assert_non_null(v);
        v[n++] = etl_asprintf("%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(v, n, sizeof *v, name_cmp);
    *out = v;
    return n;
}

/* Each bad pipeline's first line says where and what:
 * "# expect: LINE:COL: substring of the message". */
static void test_bad_fixtures(void **state)
{
    (void)state;
    char **files;
    size_t n = list_yaml(BAD, &files);
    assert_true(n >= 30);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "r");
        assert_non_null(f);
        char first[512] = "";
        if (!fgets(first, sizeof first, f))
            first[0] = '\0';
        fclose(f);
        first[strcspn(first, "\n")] = '\0';
        const char *want = strncmp(first, "# expect: ", 10) == 0 ? first + 10 : NULL;
        if (!want) {
            print_error("%s: no '# expect:' line\n", files[i]);
            failures++;
            continue;
        }
        /* "L:C: text": the location, then the substring. */
        const char *colon2 = strchr(want, ':');
        colon2 = colon2 ? strchr(colon2 + 1, ':') : NULL;
        if (!colon2 || colon2[1] != ' ') {
            print_error("%s: bad expect line '%s'\n", files[i], want);
            failures++;
            continue;
        }
        char prefix[600];
        snprintf(prefix, sizeof prefix, "%s:%.*s: ", files[i], (int)(colon2 - want), want);
        const char *substr = colon2 + 2;

        loaded_t l;
        load_file(&l, files[i], NULL);
        int ok = l.st == ETL_CFG_INVALID && l.v == NULL && l.n == 0 &&
                 strncmp(l.err, prefix, strlen(prefix)) == 0 && strstr(l.err, substr) &&
                 strstr(l.err, " (expected ");
        if (!ok) {
            print_error("%s\n  want: %s...%s\n  got (%d): %s\n", files[i], prefix, substr, l.st,
                        l.err);
            failures++;
        }
        unload(&l);
    }
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    assert_int_equal(failures, 0);
}

static void test_good_fixtures(void **state)
{
    (void)state;
    char **files;
    size_t n = list_yaml(GOOD, &files);
    assert_true(n >= 5);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        loaded_t l;
        load_file(&l, files[i], NULL);
        if (l.st != ETL_CFG_OK) {
            print_error("%s: %s\n", files[i], l.err);
            failures++;
        }
        unload(&l);
        free(files[i]);
    }
    free(files);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_defaults),
        cmocka_unit_test(test_pos_fixture),
        cmocka_unit_test(test_interpolation_forms),
        cmocka_unit_test(test_interpolation_edges),
        cmocka_unit_test(test_process_environment_when_no_getenv),
        cmocka_unit_test(test_matrix_expansion),
        cmocka_unit_test(test_matrix_client_filter),
        cmocka_unit_test(test_matrix_values_interpolated_once),
        cmocka_unit_test(test_matrix_unset_variable_is_the_clients),
        cmocka_unit_test(test_hooks_and_transform_kinds),
        cmocka_unit_test(test_nest),
        cmocka_unit_test(test_deletes_forms),
        cmocka_unit_test(test_list_option_forms),
        cmocka_unit_test(test_topological_order),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_null_is_unset),
        cmocka_unit_test(test_aliases_within_budget),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_billion_laughs_is_refused),
        cmocka_unit_test(test_deep_nesting_is_refused),
        cmocka_unit_test(test_many_clients_and_streams),
        cmocka_unit_test(test_load_io_error),
        cmocka_unit_test(test_bad_fixtures),
        cmocka_unit_test(test_good_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
