/* test_hooks.c - the embedded Lua hooks: conversions, sandbox, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "util.h"

#define LUA_DIR ETL_TEST_FIXTURES "/lua"
#define MAX_ROWS 8
#define MAX_COLS 16

/* A row received by io->out, copied (its memory is only valid during out). */
typedef struct got_row {
    char stream[32]; /* "" for the stream being transformed */
    size_t n;
    etl_value_t v[MAX_COLS];
    char *bytes[MAX_COLS];
} got_row_t;

typedef struct fx {
    etl_lua_t *lua;
    etl_schema_t *orders;
    etl_schema_t *lines;
    etl_value_t row[MAX_COLS];
    etl_lua_io_t io;
    got_row_t got[MAX_ROWS];
    size_t ngot;
    int out_rc;
    etl_buf_t log;
    etl_buf_t err;
} fx_t;

enum { C_ID, C_NAME, C_QTY, C_PRICE, C_TOTAL, C_PAID, C_CREATED, C_PAYLOAD, C_META, C_NOTE, C_MISC };

/* 2024-05-01T10:00:00.123456Z */
#define CREATED_US (INT64_C(1714557600) * 1000000 + 123456)

static const etl_schema_t *io_schema(void *arg, const char *stream)
{
    fx_t *f = arg;
    if (!stream || strcmp(stream, "orders") == 0)
        return f->orders;
    if (strcmp(stream, "lines") == 0)
        return f->lines;
    return NULL;
}

static int io_out(void *arg, const char *stream, const etl_value_t *row)
{
    fx_t *f = arg;
    if (f->out_rc)
        return f->out_rc;
    assert_true(f->ngot < MAX_ROWS);
    got_row_t *g = &f->got[f->ngot++];
    const etl_schema_t *s = io_schema(f, stream);
    assert_non_null(s);
    snprintf(g->stream, sizeof g->stream, "%s", stream ? stream : "");
    g->n = etl_schema_ncols(s);
    for (size_t i = 0; i < g->n; i++) {
        g->v[i] = row[i];
        g->bytes[i] = NULL;
        switch (row[i].type) {
        case ETL_T_NUMERIC:
        case ETL_T_TEXT:
        case ETL_T_BLOB:
        case ETL_T_JSON:
            g->bytes[i] = malloc(row[i].len + 1);
            memcpy(g->bytes[i], row[i].v.s, row[i].len);
            g->bytes[i][row[i].len] = '\0';
            g->v[i].v.s = g->bytes[i];
            break;
        default:
            break;
        }
    }
    return 0;
}

static void on_log(void *arg, int level, const char *msg)
{
    fx_t *f = arg;
    etl_buf_printf(&f->log, "%d:%s\n", level, msg);
}

static void clear_got(fx_t *f)
{
    for (size_t r = 0; r < f->ngot; r++)
        for (size_t i = 0; i < f->got[r].n; i++)
            free(f->got[r].bytes[i]);
    f->ngot = 0;
}

/* (Re)creates the state with the given limits (0: the defaults). */
static void reopen(fx_t *f, uint64_t instructions, size_t memory)
{
    char err[ETL_ERRLEN];
    etl_lua_free(f->lua);
    etl_lua_env_t env = {LUA_DIR, instructions, memory, "test", "acme", on_log, f};
    f->lua = etl_lua_new(&env, err, sizeof err);
    if (!f->lua)
        fail_msg("etl_lua_new: %s", err);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->orders = etl_schema_new("orders");
    etl_schema_add(f->orders, "id", ETL_T_INT, NULL, ETL_COL_KEY);
    etl_schema_add(f->orders, "name", ETL_T_TEXT, NULL, 0);
    etl_schema_add(f->orders, "qty", ETL_T_INT, NULL, 0);
    etl_schema_add(f->orders, "price", ETL_T_DOUBLE, NULL, 0);
    etl_schema_add(f->orders, "total", ETL_T_NUMERIC, NULL, 0);
    etl_schema_add(f->orders, "paid", ETL_T_BOOL, NULL, 0);
    etl_schema_add(f->orders, "created_at", ETL_T_TIMESTAMP, NULL, 0);
    etl_schema_add(f->orders, "payload", ETL_T_BLOB, NULL, 0);
    etl_schema_add(f->orders, "meta", ETL_T_JSON, NULL, 0);
    etl_schema_add(f->orders, "note", ETL_T_TEXT, NULL, 0);
    etl_schema_add(f->orders, "misc", ETL_T_NULL, NULL, 0);
    f->lines = etl_schema_new("lines");
    etl_schema_add(f->lines, "order_id", ETL_T_INT, NULL, 0);
    etl_schema_add(f->lines, "sku", ETL_T_TEXT, NULL, 0);
    etl_schema_add(f->lines, "qty", ETL_T_INT, NULL, 0);

    f->row[C_ID] = etl_int(42);
    f->row[C_NAME] = etl_text("widget", 6);
    f->row[C_QTY] = etl_int(3);
    f->row[C_PRICE] = etl_double(2.5);
    f->row[C_TOTAL] = etl_str(ETL_T_NUMERIC, "0.10", 4);
    f->row[C_PAID] = etl_bool(1);
    f->row[C_CREATED] = etl_ts(CREATED_US);
    f->row[C_PAYLOAD] = etl_str(ETL_T_BLOB, "a\0b\0c", 5);
    f->row[C_META] = etl_str(ETL_T_JSON, "{\"a\":1}", 7);
    f->row[C_NOTE] = etl_null();
    f->row[C_MISC] = etl_null();

    f->io.out = io_out;
    f->io.schema = io_schema;
    f->io.arg = f;
    etl_buf_init(&f->log);
    etl_buf_init(&f->err);
    reopen(f, 0, 0);
    etl_lua_run_t run = {7, "incremental", "reverse"};
    etl_lua_set_run(f->lua, &run);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    clear_got(f);
    etl_lua_free(f->lua);
    etl_schema_free(f->orders);
    etl_schema_free(f->lines);
    etl_buf_free(&f->log);
    etl_buf_free(&f->err);
    free(f);
    return 0;
}

/* ------------------------------------------------------------ helpers */

static int compile_kind(fx_t *f, etl_transform_kind_t kind, const char *text, const char *what,
                        char *err, size_t errlen)
{
    etl_transform_cfg_t cfg = {kind, (char *)text, {0, 0}};
    int ref = 0;
    if (etl_lua_compile(f->lua, &cfg, "orders", what, &ref, err, errlen) != 0)
        return -1;
    assert_true(ref > 0);
    return ref;
}

/* Compiles an inline transform that must compile. */
static int inline_xf(fx_t *f, const char *body)
{
    char err[ETL_ERRLEN];
    int ref = compile_kind(f, ETL_XF_INLINE, body, "transform", err, sizeof err);
    if (ref < 0)
        fail_msg("compile: %s", err);
    return ref;
}

static int transform(fx_t *f, int ref)
{
    clear_got(f);
    etl_buf_reset(&f->err);
    return etl_lua_transform(f->lua, ref, "orders", f->orders, f->row, &f->io, &f->err);
}

/* Runs a transform that must succeed. */
static void transform_ok(fx_t *f, int ref)
{
    if (transform(f, ref) != 0)
        fail_msg("transform: %s", f->err.data);
}

/* Runs a transform that must fail with a message containing `want`. */
static void transform_fails(fx_t *f, int ref, const char *want)
{
    assert_int_equal(transform(f, ref), -1);
    assert_non_null(f->err.data);
    if (!strstr(f->err.data, want))
        fail_msg("error \"%s\" does not contain \"%s\"", f->err.data, want);
}

static void assert_text(const etl_value_t *v, etl_type_t type, const char *want, size_t n)
{
    assert_int_equal(v->type, type);
    assert_int_equal(v->len, n);
    assert_memory_equal(v->v.s, want, n);
}

/* ------------------------------------------------------------ results */

static void test_transform_changes_a_field(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "rec.name = rec.name .. ' (changed)' return rec"));
    assert_int_equal(f->ngot, 1);
    assert_string_equal(f->got[0].stream, "");
    assert_text(&f->got[0].v[C_NAME], ETL_T_TEXT, "widget (changed)", 16);
    assert_int_equal(f->got[0].v[C_ID].v.i, 42);
    assert_int_equal(f->got[0].v[C_NOTE].type, ETL_T_NULL);
}

static void test_transform_returning_nil_drops_the_record(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "return nil"));
    assert_int_equal(f->ngot, 0);
}

static void test_transform_returning_an_empty_table_sends_nothing(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "return {}"));
    assert_int_equal(f->ngot, 0);
}

static void test_transform_list_fans_out(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "local out = {}\n"
                                 "for i = 1, 3 do out[i] = {id = rec.id * 10 + i, name = 'n' .. i} end\n"
                                 "return out"));
    assert_int_equal(f->ngot, 3);
    for (int i = 0; i < 3; i++) {
        char name[8];
        snprintf(name, sizeof name, "n%d", i + 1);
        assert_string_equal(f->got[i].stream, "");
        assert_int_equal(f->got[i].v[C_ID].v.i, 420 + i + 1);
        assert_text(&f->got[i].v[C_NAME], ETL_T_TEXT, name, 2);
        assert_int_equal(f->got[i].v[C_QTY].type, ETL_T_NULL);
    }
}

static void test_ctx_emit_sends_to_another_stream(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "ctx:emit('lines', {order_id = rec.id, sku = 'A-1', qty = 2.0})\n"
                                 "return rec"));
    assert_int_equal(f->ngot, 2);
    assert_string_equal(f->got[0].stream, "lines");
    assert_int_equal(f->got[0].n, 3);
    assert_int_equal(f->got[0].v[0].type, ETL_T_INT);
    assert_int_equal(f->got[0].v[0].v.i, 42);
    assert_text(&f->got[0].v[1], ETL_T_TEXT, "A-1", 3);
    assert_int_equal(f->got[0].v[2].type, ETL_T_INT); /* 2.0 has an exact integer value */
    assert_int_equal(f->got[0].v[2].v.i, 2);
    assert_string_equal(f->got[1].stream, "");
}

static void test_ctx_emit_to_an_unknown_stream_is_an_error(void **state)
{
    fx_t *f = *state;
    transform_fails(f, inline_xf(f, "ctx:emit('nope', {id = 1}) return rec"),
                    "unknown stream 'nope'");
    assert_int_equal(f->ngot, 0);
}

static void test_transform_returning_a_number_is_an_error(void **state)
{
    fx_t *f = *state;
    transform_fails(f, inline_xf(f, "return 42"),
                    "transform must return a table, nil or a list of tables, got number");
}

static void test_output_refusal_cannot_be_caught_by_pcall(void **state)
{
    fx_t *f = *state;
    int ref = inline_xf(f, "local ok = pcall(ctx.emit, ctx, 'lines', {order_id = 1})\n"
                           "rec.note = 'kept going' return rec");
    f->out_rc = 5;
    transform_fails(f, ref, "refused by the output (error 5)");
    f->out_rc = 0;
}

/* ------------------------------------------------------------ conversions */

static void test_every_type_converts_into_lua_and_back(void **state)
{
    fx_t *f = *state;
    int ref = inline_xf(f,
                        "assert(math.type(rec.id) == 'integer' and rec.id == 42, 'id')\n"
                        "assert(rec.name == 'widget', 'name')\n"
                        "assert(math.type(rec.price) == 'float' and rec.price == 2.5, 'price')\n"
                        "assert(rec.total == '0.10', 'numeric stays a string')\n"
                        "assert(rec.paid == true, 'paid')\n"
                        "assert(rec.created_at == '2024-05-01T10:00:00.123456Z', rec.created_at)\n"
                        "assert(rec.payload == 'a\\0b\\0c' and #rec.payload == 5, 'blob')\n"
                        "assert(rec.meta == '{\"a\":1}', 'json')\n"
                        "assert(rec.note == nil and rec.misc == nil, 'null')\n"
                        "return rec");
    transform_ok(f, ref);
    assert_int_equal(f->ngot, 1);
    const etl_value_t *v = f->got[0].v;
    assert_int_equal(v[C_ID].type, ETL_T_INT);
    assert_int_equal(v[C_ID].v.i, 42);
    assert_text(&v[C_NAME], ETL_T_TEXT, "widget", 6);
    assert_int_equal(v[C_QTY].v.i, 3);
    assert_int_equal(v[C_PRICE].type, ETL_T_DOUBLE);
    assert_true(v[C_PRICE].v.d == 2.5);
    assert_text(&v[C_TOTAL], ETL_T_NUMERIC, "0.10", 4);
    assert_int_equal(v[C_PAID].type, ETL_T_BOOL);
    assert_int_equal(v[C_PAID].v.i, 1);
    assert_int_equal(v[C_CREATED].type, ETL_T_TIMESTAMP);
    assert_int_equal(v[C_CREATED].v.i, CREATED_US);
    assert_text(&v[C_PAYLOAD], ETL_T_BLOB, "a\0b\0c", 5);
    assert_text(&v[C_META], ETL_T_JSON, "{\"a\":1}", 7);
    assert_int_equal(v[C_NOTE].type, ETL_T_NULL);
    assert_int_equal(v[C_MISC].type, ETL_T_NULL);
}

static void test_lua_values_convert_to_column_types(void **state)
{
    fx_t *f = *state;
    int ref = inline_xf(f, "return {id = 7.0, name = 12.5, qty = '15', price = '3.25',\n"
                           "  total = 1.5, paid = 0, created_at = '2024-05-01 12:30:00+02:00',\n"
                           "  payload = 'x\\0y', meta = 3, note = false, misc = 9}");
    transform_ok(f, ref);
    const etl_value_t *v = f->got[0].v;
    assert_int_equal(v[C_ID].type, ETL_T_INT);
    assert_int_equal(v[C_ID].v.i, 7);
    assert_text(&v[C_NAME], ETL_T_TEXT, "12.5", 4);
    assert_int_equal(v[C_QTY].type, ETL_T_INT);
    assert_int_equal(v[C_QTY].v.i, 15);
    assert_int_equal(v[C_PRICE].type, ETL_T_DOUBLE);
    assert_true(v[C_PRICE].v.d == 3.25);
    assert_text(&v[C_TOTAL], ETL_T_NUMERIC, "1.5", 3);
    assert_int_equal(v[C_PAID].type, ETL_T_BOOL);
    assert_int_equal(v[C_PAID].v.i, 0);
    assert_int_equal(v[C_CREATED].type, ETL_T_TIMESTAMP);
    assert_int_equal(v[C_CREATED].v.i, (INT64_C(1714557600) + 1800) * 1000000);
    assert_text(&v[C_PAYLOAD], ETL_T_BLOB, "x\0y", 3);
    assert_text(&v[C_META], ETL_T_JSON, "3", 1);
    assert_text(&v[C_NOTE], ETL_T_TEXT, "false", 5);
    assert_int_equal(v[C_MISC].type, ETL_T_INT);
    assert_int_equal(v[C_MISC].v.i, 9);
}

static void test_epoch_seconds_convert_to_a_timestamp(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "return {id = 1, created_at = 1714557600.5}"));
    assert_int_equal(f->got[0].v[C_CREATED].type, ETL_T_TIMESTAMP);
    assert_int_equal(f->got[0].v[C_CREATED].v.i, INT64_C(1714557600) * 1000000 + 500000);
}

static void test_json_column_from_a_table(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "rec.meta = {z = {}, a = {1, 'two', {k = 0.5}}, n = -3,\n"
                                 "  s = 'q\"\\n', t = true}\n"
                                 "rec.misc = {x = 1}\n"
                                 "return rec"));
    const char *want = "{\"a\":[1,\"two\",{\"k\":0.5}],\"n\":-3,\"s\":\"q\\\"\\n\",\"t\":true,\"z\":[]}";
    assert_text(&f->got[0].v[C_META], ETL_T_JSON, want, strlen(want));
    assert_text(&f->got[0].v[C_MISC], ETL_T_JSON, "{\"x\":1}", 7);
}

static void test_unknown_field_is_an_error(void **state)
{
    fx_t *f = *state;
    transform_fails(f, inline_xf(f, "rec.foo = 1 return rec"),
                    "stream 'orders': transform returned unknown field 'foo'");
    assert_int_equal(f->ngot, 0);
}

static void test_wrong_type_is_an_error_naming_stream_and_field(void **state)
{
    fx_t *f = *state;
    transform_fails(f, inline_xf(f, "rec.qty = 1.5 return rec"), "stream 'orders': field 'qty'");
    transform_fails(f, inline_xf(f, "rec.created_at = 'yesterday' return rec"),
                    "field 'created_at' (timestamp) cannot take 'yesterday': not a timestamp");
    transform_fails(f, inline_xf(f, "rec.paid = {} return rec"), "field 'paid'");
    transform_fails(f, inline_xf(f, "rec.total = 'ten' return rec"), "field 'total'");
    transform_fails(f, inline_xf(f, "rec.meta = {x = 0/0} return rec"), "field 'meta'");
    transform_fails(f, inline_xf(f, "rec.meta = {1, x = 2} return rec"), "field 'meta'");
    assert_int_equal(f->ngot, 0);
}

/* ------------------------------------------------------------ errors and limits */

static void test_error_in_a_hook_has_a_traceback(void **state)
{
    fx_t *f = *state;
    transform_fails(f, inline_xf(f, "local function inner() error('boom') end\n"
                                    "inner() return rec"),
                    "[orders transform]:1: boom");
    assert_non_null(strstr(f->err.data, "stack traceback"));
    assert_non_null(strstr(f->err.data, "inner"));
}

static void test_endless_loop_is_stopped_by_the_budget(void **state)
{
    fx_t *f = *state;
    int loop = inline_xf(f, "while true do end");
    int ok = inline_xf(f, "return rec");
    transform_fails(f, loop, "instruction budget of 10000000 exceeded");
    assert_non_null(strstr(f->err.data, "stack traceback"));
    transform_ok(f, ok);
    assert_int_equal(f->ngot, 1);
}

static void test_budget_cannot_be_swallowed_by_pcall(void **state)
{
    fx_t *f = *state;
    reopen(f, 200000, 0);
    int loop = inline_xf(f, "while true do pcall(function() while true do end end) end");
    int ok = inline_xf(f, "return rec");
    transform_fails(f, loop, "instruction budget of 200000 exceeded");
    transform_ok(f, ok);
    assert_int_equal(f->ngot, 1);
}

static void test_memory_cap_stops_a_runaway_table(void **state)
{
    fx_t *f = *state;
    reopen(f, 1000000000, 0);
    int grow = inline_xf(f, "local t = {} for i = 1, 1e9 do t[i] = i end return rec");
    int big_string = inline_xf(f, "local s = string.rep('x', 1e9) return rec");
    int caught = inline_xf(f, "local ok = pcall(string.rep, 'x', 1e9) rec.note = 'caught' return rec");
    int ok = inline_xf(f, "local s = string.rep('x', 20e6) rec.note = tostring(#s) return rec");
    transform_fails(f, grow, "memory limit of 64 MiB exceeded");
    transform_ok(f, ok);
    assert_text(&f->got[0].v[C_NOTE], ETL_T_TEXT, "20000000", 8);
    transform_fails(f, big_string, "memory limit of 64 MiB exceeded");
    transform_fails(f, caught, "memory limit of 64 MiB exceeded");
    transform_ok(f, ok);
    assert_int_equal(f->ngot, 1);
}

/* ------------------------------------------------------------ sandbox */

static void test_io_is_absent(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "assert(io == nil and debug == nil and package == nil)\n"
                                 "assert(dofile == nil and loadfile == nil)\n"
                                 "return nil"));
    transform_fails(f, inline_xf(f, "io.open('/etc/passwd') return rec"),
                    "attempt to index a nil value (global 'io')");
}

static void test_os_has_only_time_date_and_clock(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "assert(os.execute == nil and os.getenv == nil)\n"
                                 "assert(os.remove == nil and os.exit == nil and os.rename == nil)\n"
                                 "assert(math.type(os.time()) == 'integer')\n"
                                 "assert(os.date('!%Y-%m-%d', 0) == '1970-01-01')\n"
                                 "assert(type(os.clock()) == 'number')\n"
                                 "return nil"));
    transform_fails(f, inline_xf(f, "os.execute('true') return rec"),
                    "attempt to call a nil value (field 'execute')");
}

static void test_require_loads_a_module_from_lua_dir(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "local text = require('helpers.text')\n"
                                 "assert(text == require('helpers.text'), 'cached')\n"
                                 "rec.name = text.shout(rec.name) return rec"));
    assert_text(&f->got[0].v[C_NAME], ETL_T_TEXT, "WIDGET!", 7);
}

static void test_require_refuses_names_outside_lua_dir(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "for _, n in ipairs({'../x', '/etc/passwd', 'helpers..text',\n"
                                 "    '.x', 'x.', 'a/b', '', 'helpers/text', 'a\\0b'}) do\n"
                                 "  local ok, e = pcall(require, n)\n"
                                 "  assert(not ok and e:find('invalid module name'), n)\n"
                                 "end\n"
                                 "local ok, e = pcall(require, 'nope')\n"
                                 "assert(not ok and e:find(\"module 'nope' not found\"), e)\n"
                                 "return nil"));
    transform_fails(f, inline_xf(f, "require('../x') return rec"),
                    "invalid module name '../x'");
}

static void test_require_is_refused_without_lua_dir(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    etl_lua_free(f->lua);
    etl_lua_env_t env = {NULL, 0, 0, "test", NULL, on_log, f};
    f->lua = etl_lua_new(&env, err, sizeof err);
    assert_non_null(f->lua);
    transform_fails(f, inline_xf(f, "require('helpers.text') return rec"),
                    "no lua folder is configured");
}

static void test_load_refuses_bytecode(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "assert(string.dump == nil)\n"
                                 "local g, e = load('return 1', 'x', 'b')\n"
                                 "assert(g == nil and e:find('only text'), e)\n"
                                 "g, e = load('return 1', 'x', 'bt')\n"
                                 "assert(g == nil, 'bt')\n"
                                 "g, e = load('\\27Lua\\84\\0\\25\\147\\r\\n', 'x')\n"
                                 "assert(g == nil and e:find('binary chunk'), e)\n"
                                 "g = load('return os.execute, io')\n"
                                 "assert(select('#', g()) == 2 and g() == nil, 'sandbox env')\n"
                                 "local parts, i = {'return ', '4', '2'}, 0\n"
                                 "g = load(function() i = i + 1 return parts[i] end)\n"
                                 "assert(g() == 42, 'reader')\n"
                                 "assert(load('return x', 'y', 't', {x = 5})() == 5, 'env')\n"
                                 "return nil"));
}

static void test_collectgarbage_only_counts(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "assert(collectgarbage('count') > 0 and collectgarbage() > 0)\n"
                                 "return nil"));
    transform_fails(f, inline_xf(f, "collectgarbage('collect') return rec"),
                    "only \"count\" is allowed");
}

static void test_gc_metamethods_are_refused(void **state)
{
    fx_t *f = *state;
    transform_fails(f, inline_xf(f, "setmetatable({}, {__gc = function() while true do end end})\n"
                                    "return rec"),
                    "__gc metamethods are not allowed");
    transform_ok(f, inline_xf(f, "local t = setmetatable({}, {__index = function() return 5 end})\n"
                                 "assert(t.x == 5) return nil"));
}

/* ------------------------------------------------------------ compiling */

static void test_inline_transform(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "rec.qty = rec.qty + 1\nreturn rec"));
    assert_int_equal(f->got[0].v[C_QTY].v.i, 4);
}

static void test_inline_syntax_error_names_the_stream(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    assert_int_equal(compile_kind(f, ETL_XF_INLINE, "rec.x = = 1", "transform", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "stream orders: transform: "));
    assert_non_null(strstr(err, "[orders transform]:1:"));
}

static void test_function_transform_from_the_hooks_file(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    assert_int_equal(compile_kind(f, ETL_XF_FUNCTION, "upper_name", "transform", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "none is loaded"));
    if (etl_lua_load_hooks(f->lua, LUA_DIR "/hooks.lua", err, sizeof err) != 0)
        fail_msg("load_hooks: %s", err);
    int ref = compile_kind(f, ETL_XF_FUNCTION, "upper_name", "transform", err, sizeof err);
    assert_true(ref > 0);
    transform_ok(f, ref);
    assert_text(&f->got[0].v[C_NAME], ETL_T_TEXT, "WIDGET", 6);
    assert_int_equal(compile_kind(f, ETL_XF_FUNCTION, "nope", "transform", err, sizeof err), -1);
    assert_non_null(strstr(err, "stream orders: transform: no function 'nope'"));
    assert_int_equal(
        compile_kind(f, ETL_XF_FUNCTION, "not_a_function", "transform", err, sizeof err), -1);
    assert_non_null(strstr(err, "not a function"));
}

static void test_hooks_file_must_return_a_table(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    assert_int_equal(etl_lua_load_hooks(f->lua, LUA_DIR "/bad_hooks.lua", err, sizeof err), -1);
    assert_non_null(strstr(err, "must return a table of functions, got number"));
    assert_int_equal(etl_lua_load_hooks(f->lua, LUA_DIR "/missing.lua", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

static void test_file_transform_returning_a_table(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    int ref = compile_kind(f, ETL_XF_FILE, LUA_DIR "/orders.lua", "transform", err, sizeof err);
    if (ref < 0)
        fail_msg("compile: %s", err);
    transform_ok(f, ref);
    assert_int_equal(f->got[0].v[C_QTY].v.i, 6);
    assert_text(&f->got[0].v[C_NOTE], ETL_T_TEXT, "doubled in orders", 17);
    assert_int_equal(compile_kind(f, ETL_XF_FILE, LUA_DIR "/hooks.lua", "transform", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "with a 'transform' function"));
}

static void test_file_transform_returning_a_function(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    int ref = compile_kind(f, ETL_XF_FILE, LUA_DIR "/stamp.lua", "transform", err, sizeof err);
    if (ref < 0)
        fail_msg("compile: %s", err);
    transform_ok(f, ref);
    assert_text(&f->got[0].v[C_NOTE], ETL_T_TEXT, "stamped", 7);
}

static void test_resolve_keeps_or_replaces(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    int ref = compile_kind(f, ETL_XF_FILE, LUA_DIR "/orders.lua", "resolve", err, sizeof err);
    if (ref < 0)
        fail_msg("compile: %s", err);
    etl_value_t existing[MAX_COLS];
    memcpy(existing, f->row, sizeof existing);
    existing[C_QTY] = etl_int(5);
    int keep = -1;

    clear_got(f);
    assert_int_equal(etl_lua_resolve(f->lua, ref, "orders", f->orders, f->row, existing, &f->io,
                                     &keep, &f->err),
                     0);
    assert_int_equal(keep, 1); /* incoming qty 3 < 5: nil keeps the existing row */
    assert_int_equal(f->ngot, 0);

    existing[C_QTY] = etl_int(1);
    assert_int_equal(etl_lua_resolve(f->lua, ref, "orders", f->orders, f->row, existing, &f->io,
                                     &keep, &f->err),
                     0);
    assert_int_equal(keep, 0);
    assert_int_equal(f->ngot, 1);
    assert_string_equal(f->got[0].stream, "");
    assert_int_equal(f->got[0].v[C_QTY].v.i, 3);

    int inl = compile_kind(f, ETL_XF_INLINE, "return {id = existing.id, qty = incoming.qty + existing.qty}",
                           "resolve", err, sizeof err);
    assert_true(inl > 0);
    clear_got(f);
    assert_int_equal(etl_lua_resolve(f->lua, inl, "orders", f->orders, f->row, existing, &f->io,
                                     &keep, &f->err),
                     0);
    assert_int_equal(keep, 0);
    assert_int_equal(f->got[0].v[C_QTY].v.i, 4);
}

/* ------------------------------------------------------------ ctx and run hooks */

static void test_ctx_holds_the_run(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "assert(ctx.pipeline == 'test' and ctx.client == 'acme', 'names')\n"
                                 "assert(ctx.stream == 'orders' and ctx.run_id == 7, 'stream')\n"
                                 "assert(ctx.mode == 'incremental' and ctx.direction == 'reverse')\n"
                                 "return nil"));
}

static void test_before_and_after_run_get_ctx_and_stats(void **state)
{
    fx_t *f = *state;
    char err[ETL_ERRLEN];
    /* without a hooks file both are no-ops */
    assert_int_equal(etl_lua_before_run(f->lua, &f->err), 0);
    if (etl_lua_load_hooks(f->lua, LUA_DIR "/hooks.lua", err, sizeof err) != 0)
        fail_msg("load_hooks: %s", err);
    etl_lua_run_t run = {99, "full", "forward"};
    etl_lua_set_run(f->lua, &run);
    assert_int_equal(etl_lua_before_run(f->lua, &f->err), 0);
    assert_non_null(strstr(f->log.data, "2:before_run test 99 full forward\n"));
    etl_lua_stat_t stats[] = {{"orders", 10, 4, 3, 2, 1, 0, 1}, {"lines", 6, 6, 0, 0, 0, 0, 0}};
    if (etl_lua_after_run(f->lua, stats, 2, "ok", &f->err) != 0)
        fail_msg("after_run: %s", f->err.data);
    assert_non_null(strstr(f->log.data, "2:after_run ok orders read=10 created=4 updated=3 "
                                        "unchanged=2 deleted=1 deferred=0 failed=1 lines "
                                        "created=6\n"));
}

static void test_print_and_ctx_log_go_to_the_log(void **state)
{
    fx_t *f = *state;
    transform_ok(f, inline_xf(f, "print('a', 1, true, nil) ctx:log('hello') return nil"));
    assert_non_null(f->log.data);
    assert_non_null(strstr(f->log.data, "2:a\t1\ttrue\tnil\n"));
    assert_non_null(strstr(f->log.data, "2:hello\n"));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_transform_changes_a_field),
        T(test_transform_returning_nil_drops_the_record),
        T(test_transform_returning_an_empty_table_sends_nothing),
        T(test_transform_list_fans_out),
        T(test_ctx_emit_sends_to_another_stream),
        T(test_ctx_emit_to_an_unknown_stream_is_an_error),
        T(test_transform_returning_a_number_is_an_error),
        T(test_output_refusal_cannot_be_caught_by_pcall),
        T(test_every_type_converts_into_lua_and_back),
        T(test_lua_values_convert_to_column_types),
        T(test_epoch_seconds_convert_to_a_timestamp),
        T(test_json_column_from_a_table),
        T(test_unknown_field_is_an_error),
        T(test_wrong_type_is_an_error_naming_stream_and_field),
        T(test_error_in_a_hook_has_a_traceback),
        T(test_endless_loop_is_stopped_by_the_budget),
        T(test_budget_cannot_be_swallowed_by_pcall),
        T(test_memory_cap_stops_a_runaway_table),
        T(test_io_is_absent),
        T(test_os_has_only_time_date_and_clock),
        T(test_require_loads_a_module_from_lua_dir),
        T(test_require_refuses_names_outside_lua_dir),
        T(test_require_is_refused_without_lua_dir),
        T(test_load_refuses_bytecode),
        T(test_collectgarbage_only_counts),
        T(test_gc_metamethods_are_refused),
        T(test_inline_transform),
        T(test_inline_syntax_error_names_the_stream),
        T(test_function_transform_from_the_hooks_file),
        T(test_hooks_file_must_return_a_table),
        T(test_file_transform_returning_a_table),
        T(test_file_transform_returning_a_function),
        T(test_resolve_keeps_or_replaces),
        T(test_ctx_holds_the_run),
        T(test_before_and_after_run_get_ctx_and_stats),
        T(test_print_and_ctx_log_go_to_the_log),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
