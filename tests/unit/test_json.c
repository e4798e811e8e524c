/* test_json.c - the JSON helpers of etl/json.h: parsing with located errors,
 * path lookup, typed getters (64-bit ids exact, numeric strings), value
 * conversion into every record type, compact serialization, the scratch
 * area and the row builder. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "etl/json.h"
#include "util.h"

static const etl_plugin_t json_plugin = {ETL_ABI_VERSION, sizeof(etl_plugin_t), "jsontest", "0",
                                         "test", NULL, NULL, NULL};

typedef struct fx {
    etl_ctx_t *ctx;
    etl_json_scratch_t *s;
    json_t *doc;
} fx_t;

static const char DOC[] =
    "{\"id\": 9007199254740993,"
    " \"big\": 9223372036854775807,"
    " \"neg\": -9223372036854775808,"
    " \"sid\": \"9007199254740993\","
    " \"price\": \"409.94\","
    " \"price_num\": 409.94,"
    " \"tenth\": 0.1,"
    " \"whole\": 3.0,"
    " \"half\": 3.5,"
    " \"huge\": 1e300,"
    " \"yes\": true, \"no\": false, \"nil\": null, \"empty\": \"\","
    " \"flag\": \"TRUE\", \"one\": 1, \"two\": 2,"
    " \"name\": \"Caf\\u00e9 \\\"quoted\\\"\\n\","
    " \"nul\": \"a\\u0000b\","
    " \"created_at\": \"2024-05-01T10:00:00.123456+02:00\","
    " \"updated_at\": \"2024-05-01T08:00:00Z\","
    " \"bad_time\": \"yesterday\","
    " \"money\": {\"amount\": 1250, \"currency\": \"USD\"},"
    " \"items\": [{\"sku\": \"A\", \"qty\": \"2\"}, {\"sku\": \"B\", \"qty\": \"-1.5\"},"
    "            {\"sku\": \"C\", \"qty\": \"1e3\"}],"
    " \"payload\": {\"NextToken\": \"tok/+=\", \"Orders\": []},"
    " \"a.b\": {\"c\": 7},"
    " \"$type\": \"odd\","
    " \"nested\": {\"z\": 1, \"a\": [1.5, 2, \"x\", null, {\"k\": 0.1}], \"m\": {}}}";

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->ctx = etl_ctx_new(&json_plugin, "source", NULL, "/tmp", NULL, NULL, NULL, "t");
    f->s = etl_json_scratch_new();
    if (!f->ctx || !f->s || etl_json_parse(f->ctx, DOC, strlen(DOC), "doc", &f->doc) != ETL_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    json_decref(f->doc);
    etl_json_scratch_free(f->s);
    etl_ctx_free(f->ctx);
    free(f);
    return 0;
}

static void value_text_is(const etl_value_t *v, etl_type_t t, const char *want)
{
    assert_int_equal(v->type, t);
    if (v->len != strlen(want) || memcmp(v->v.s, want, v->len) != 0)
        fail_msg("wanted %s '%s', got '%.*s'", etl_type_name(t), want, (int)v->len, v->v.s);
}

/* ------------------------------------------------------------ parsing */

static void test_parse_error_names_source_and_place(void **state)
{
    fx_t *f = *state;
    json_t *j = NULL;
    const char *bad = "{\"a\": 1,\n \"b\": }";
    assert_int_equal(etl_json_parse(f->ctx, bad, strlen(bad), "GET https://x/y", &j), ETL_ERR_DATA);
    assert_null(j);
    const char *e = etl_ctx_error(f->ctx);
    if (!strstr(e, "GET https://x/y: not valid JSON at line 2, column"))
        fail_msg("message: %s", e);
    /* more than 64 bits is refused, not rounded */
    const char *big = "{\"id\": 99999999999999999999}";
    assert_int_equal(etl_json_parse(f->ctx, big, strlen(big), "body", &j), ETL_ERR_DATA);
    assert_non_null(strstr(etl_ctx_error(f->ctx), "too big integer"));
    /* a length, not a NUL, ends the text */
    assert_int_equal(etl_json_parse(f->ctx, "[1,2]garbage", 5, "body", &j), ETL_OK);
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);
    assert_int_equal(etl_json_parse(f->ctx, "", 0, "empty body", &j), ETL_ERR_DATA);
}

/* ------------------------------------------------------------ paths */

static void test_path_lookup(void **state)
{
    fx_t *f = *state;
    json_t *d = f->doc;
    assert_int_equal(json_integer_value(etl_json_get(d, "money.amount")), 1250);
    assert_string_equal(etl_json_str(d, "items[1].sku"), "B");
    assert_string_equal(etl_json_str(d, "items[-1].sku"), "C");
    assert_string_equal(etl_json_str(d, "items[-3].sku"), "A");
    assert_string_equal(etl_json_str(d, "payload.NextToken"), "tok/+=");
    assert_int_equal(json_integer_value(etl_json_get(d, "[\"a.b\"].c")), 7);
    assert_string_equal(etl_json_str(d, "$type"), "odd");
    assert_string_equal(etl_json_str(d, "$.payload.NextToken"), "tok/+=");
    assert_ptr_equal(etl_json_get(d, "$"), d);
    assert_ptr_equal(etl_json_get(d, ""), d);
    assert_ptr_equal(etl_json_get(d, NULL), d);
    assert_true(json_is_real(etl_json_get(d, "nested.a[4].k")));
    assert_string_equal(etl_json_str(d, "nested.a[2]"), "x");
    assert_string_equal(etl_json_str(d, "nested[\"a\"][2]"), "x");
    /* absent */
    assert_null(etl_json_get(d, "missing"));
    assert_null(etl_json_get(d, "money.missing.deeper"));
    assert_null(etl_json_get(d, "items[3]"));
    assert_null(etl_json_get(d, "items[-4]"));
    assert_null(etl_json_get(d, "money[0]"));  /* not an array */
    assert_null(etl_json_get(d, "items.sku")); /* not an object */
    assert_null(etl_json_get(NULL, "a"));
    assert_null(etl_json_str(d, "money")); /* not a string */
    /* JSON null is there, and is null */
    assert_true(json_is_null(etl_json_get(d, "nil")));
    /* malformed paths find nothing */
    static const char *const bad[] = {"a..b", ".a", "a.", "items[", "items[x]", "items[1",
                                      "[\"a.b\"", "a[]", "$.", "items[1]x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (etl_json_get(d, bad[i]))
            fail_msg("malformed path '%s' found something", bad[i]);
    size_t n = 0;
    const char *s = etl_json_strn(d, "nul", &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "a\0b", 3);
}

/* ------------------------------------------------------------ getters */

static void test_int_getter_is_exact(void **state)
{
    fx_t *f = *state;
    json_t *d = f->doc;
    int64_t i = 0;
    assert_int_equal(etl_json_int(d, "id", &i), 0);
    assert_true(i == 9007199254740993LL); /* 2^53 + 1: no double can hold it */
    assert_int_equal(etl_json_int(d, "sid", &i), 0);
    assert_true(i == 9007199254740993LL);
    assert_int_equal(etl_json_int(d, "big", &i), 0);
    assert_true(i == INT64_MAX);
    assert_int_equal(etl_json_int(d, "neg", &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(etl_json_int(d, "whole", &i), 0);
    assert_int_equal(i, 3);
    assert_int_equal(etl_json_int(d, "items[0].qty", &i), 0);
    assert_int_equal(i, 2);
    i = 42;
    assert_int_equal(etl_json_int(d, "missing", &i), 1);
    assert_int_equal(etl_json_int(d, "nil", &i), 1);
    assert_int_equal(i, 42); /* untouched */
    assert_int_equal(etl_json_int(d, "half", &i), -1);
    assert_int_equal(etl_json_int(d, "huge", &i), -1);
    assert_int_equal(etl_json_int(d, "price", &i), -1);
    assert_int_equal(etl_json_int(d, "items[1].qty", &i), -1);
    assert_int_equal(etl_json_int(d, "yes", &i), -1);
    assert_int_equal(etl_json_int(d, "money", &i), -1);
    json_t *j;
    const char *odd = "[\"9223372036854775808\", \"-9223372036854775809\", \" 1\", \"1 \", "
                      "\"0x10\", \"\", \"-\", \"+7\"]";
    assert_int_equal(etl_json_parse(f->ctx, odd, strlen(odd), "t", &j), ETL_OK);
    assert_int_equal(etl_json_int(j, "[0]", &i), -1); /* overflow */
    assert_int_equal(etl_json_int(j, "[1]", &i), -1);
    assert_int_equal(etl_json_int(j, "[2]", &i), -1);
    assert_int_equal(etl_json_int(j, "[3]", &i), -1);
    assert_int_equal(etl_json_int(j, "[4]", &i), -1);
    assert_int_equal(etl_json_int(j, "[5]", &i), -1);
    assert_int_equal(etl_json_int(j, "[6]", &i), -1);
    assert_int_equal(etl_json_int(j, "[7]", &i), 0);
    assert_int_equal(i, 7);
    json_decref(j);
}

static void test_double_and_bool_getters(void **state)
{
    fx_t *f = *state;
    json_t *d = f->doc;
    double x = 0;
    assert_int_equal(etl_json_double(d, "price", &x), 0);
    assert_true(x == 409.94);
    assert_int_equal(etl_json_double(d, "price_num", &x), 0);
    assert_true(x == 409.94);
    assert_int_equal(etl_json_double(d, "id", &x), 0);
    assert_int_equal(etl_json_double(d, "items[2].qty", &x), 0);
    assert_true(x == 1000.0);
    assert_int_equal(etl_json_double(d, "name", &x), -1);
    assert_int_equal(etl_json_double(d, "nil", &x), 1);
    int b = -1;
    assert_int_equal(etl_json_bool(d, "yes", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(etl_json_bool(d, "no", &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(etl_json_bool(d, "flag", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(etl_json_bool(d, "one", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(etl_json_bool(d, "two", &b), -1);
    assert_int_equal(etl_json_bool(d, "name", &b), -1);
    assert_int_equal(etl_json_bool(d, "missing", &b), 1);
}

/* ------------------------------------------------------------ conversions */

static etl_value_t conv(fx_t *f, const char *path, etl_type_t t)
{
    etl_value_t v;
    etl_status_t st = etl_json_value(f->ctx, etl_json_get(f->doc, path), t, f->s, path, &v);
    if (st != ETL_OK)
        fail_msg("%s as %s: %s", path, etl_type_name(t), etl_ctx_error(f->ctx));
    return v;
}

static void conv_fails(fx_t *f, const char *path, etl_type_t t, const char *msg_part)
{
    etl_value_t v;
    etl_status_t st = etl_json_value(f->ctx, etl_json_get(f->doc, path), t, f->s, path, &v);
    if (st != ETL_ERR_DATA || !strstr(etl_ctx_error(f->ctx), msg_part))
        fail_msg("%s as %s: wanted a data error with '%s', got %d '%s'", path, etl_type_name(t),
                 msg_part, st, etl_ctx_error(f->ctx));
}

static void test_numeric_conversions_stay_exact(void **state)
{
    fx_t *f = *state;
    etl_value_t v = conv(f, "price", ETL_T_NUMERIC);
    value_text_is(&v, ETL_T_NUMERIC, "409.94");
    assert_ptr_equal(v.v.s, etl_json_str(f->doc, "price")); /* borrowed, not copied */
    v = conv(f, "price_num", ETL_T_NUMERIC);
    value_text_is(&v, ETL_T_NUMERIC, "409.94");
    v = conv(f, "tenth", ETL_T_NUMERIC);
    value_text_is(&v, ETL_T_NUMERIC, "0.1");
    v = conv(f, "id", ETL_T_NUMERIC);
    value_text_is(&v, ETL_T_NUMERIC, "9007199254740993");
    v = conv(f, "items[1].qty", ETL_T_NUMERIC);
    value_text_is(&v, ETL_T_NUMERIC, "-1.5");
    v = conv(f, "items[2].qty", ETL_T_NUMERIC);
    value_text_is(&v, ETL_T_NUMERIC, "1e3");
    v = conv(f, "empty", ETL_T_NUMERIC);
    assert_int_equal(v.type, ETL_T_NULL);
    conv_fails(f, "name", ETL_T_NUMERIC, "JSON 'name': cannot make numeric of the string");
    conv_fails(f, "money", ETL_T_NUMERIC, "cannot make numeric of an object");
    conv_fails(f, "yes", ETL_T_NUMERIC, "numeric of true");
}

static void test_int_and_text_conversions_keep_64bit_ids(void **state)
{
    fx_t *f = *state;
    etl_value_t v = conv(f, "id", ETL_T_INT);
    assert_int_equal(v.type, ETL_T_INT);
    assert_true(v.v.i == 9007199254740993LL);
    v = conv(f, "sid", ETL_T_INT);
    assert_true(v.v.i == 9007199254740993LL);
    v = conv(f, "id", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "9007199254740993");
    v = conv(f, "big", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "9223372036854775807");
    v = conv(f, "sid", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "9007199254740993");
    conv_fails(f, "half", ETL_T_INT, "JSON 'half': cannot make int of the number 3.5");
    conv_fails(f, "price", ETL_T_INT, "not a whole number within 64 bits");
    conv_fails(f, "money", ETL_T_INT, "int of an object");
    v = conv(f, "whole", ETL_T_INT);
    assert_int_equal(v.v.i, 3);
    v = conv(f, "nil", ETL_T_INT);
    assert_int_equal(v.type, ETL_T_NULL);
    v = conv(f, "missing", ETL_T_INT);
    assert_int_equal(v.type, ETL_T_NULL);
    v = conv(f, "empty", ETL_T_INT);
    assert_int_equal(v.type, ETL_T_NULL);
}

static void test_text_bool_double_blob_conversions(void **state)
{
    fx_t *f = *state;
    etl_value_t v = conv(f, "name", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "Caf\xc3\xa9 \"quoted\"\n");
    v = conv(f, "nul", ETL_T_TEXT);
    assert_int_equal(v.len, 3);
    v = conv(f, "empty", ETL_T_TEXT);
    assert_int_equal(v.type, ETL_T_TEXT);
    assert_int_equal(v.len, 0);
    v = conv(f, "yes", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "true");
    v = conv(f, "price_num", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "409.94");
    v = conv(f, "whole", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "3.0");
    v = conv(f, "money", ETL_T_TEXT);
    value_text_is(&v, ETL_T_TEXT, "{\"amount\":1250,\"currency\":\"USD\"}");
    v = conv(f, "flag", ETL_T_BOOL);
    assert_int_equal(v.type, ETL_T_BOOL);
    assert_int_equal(v.v.i, 1);
    v = conv(f, "no", ETL_T_BOOL);
    assert_int_equal(v.v.i, 0);
    conv_fails(f, "two", ETL_T_BOOL, "bool of the integer 2");
    v = conv(f, "price", ETL_T_DOUBLE);
    assert_int_equal(v.type, ETL_T_DOUBLE);
    assert_true(v.v.d == 409.94);
    v = conv(f, "huge", ETL_T_DOUBLE);
    assert_true(v.v.d == 1e300);
    conv_fails(f, "name", ETL_T_DOUBLE, "double");
    v = conv(f, "name", ETL_T_BLOB);
    assert_int_equal(v.type, ETL_T_BLOB);
    conv_fails(f, "id", ETL_T_BLOB, "blob of the integer 9007199254740993");
    v = conv(f, "money", ETL_T_NULL);
    assert_int_equal(v.type, ETL_T_NULL);
}

static void test_timestamps_with_offsets(void **state)
{
    fx_t *f = *state;
    etl_value_t a = conv(f, "created_at", ETL_T_TIMESTAMP);
    etl_value_t b = conv(f, "updated_at", ETL_T_TIMESTAMP);
    assert_int_equal(a.type, ETL_T_TIMESTAMP);
    /* 10:00:00.123456+02:00 is 08:00:00.123456Z */
    assert_true(a.v.i - b.v.i == 123456);
    assert_true(b.v.i == 1714550400LL * 1000000);
    conv_fails(f, "bad_time", ETL_T_TIMESTAMP, "not an RFC 3339 timestamp");
    conv_fails(f, "one", ETL_T_TIMESTAMP, "timestamps are RFC 3339 text");
    etl_value_t e = conv(f, "empty", ETL_T_TIMESTAMP);
    assert_int_equal(e.type, ETL_T_NULL);
}

static void test_json_serialization_is_compact_and_exact(void **state)
{
    fx_t *f = *state;
    etl_value_t v = conv(f, "nested", ETL_T_JSON);
    /* key order kept, shortest exact reals (jansson alone writes 0.10000000000000001) */
    value_text_is(&v, ETL_T_JSON, "{\"z\":1,\"a\":[1.5,2,\"x\",null,{\"k\":0.1}],\"m\":{}}");
    v = conv(f, "name", ETL_T_JSON);
    value_text_is(&v, ETL_T_JSON, "\"Caf\xc3\xa9 \\\"quoted\\\"\\n\"");
    v = conv(f, "nul", ETL_T_JSON);
    value_text_is(&v, ETL_T_JSON, "\"a\\u0000b\"");
    v = conv(f, "id", ETL_T_JSON);
    value_text_is(&v, ETL_T_JSON, "9007199254740993");
    v = conv(f, "items", ETL_T_JSON);
    value_text_is(&v, ETL_T_JSON,
                  "[{\"sku\":\"A\",\"qty\":\"2\"},{\"sku\":\"B\",\"qty\":\"-1.5\"},"
                  "{\"sku\":\"C\",\"qty\":\"1e3\"}]");
    etl_value_t d;
    assert_int_equal(etl_json_dump(f->ctx, NULL, f->s, &d), ETL_OK);
    value_text_is(&d, ETL_T_JSON, "null");
    /* the whole document reads back equal */
    assert_int_equal(etl_json_dump(f->ctx, f->doc, f->s, &d), ETL_OK);
    json_t *back;
    assert_int_equal(etl_json_parse(f->ctx, d.v.s, d.len, "dump", &back), ETL_OK);
    assert_true(json_equal(back, f->doc));
    json_decref(back);
}

/* ------------------------------------------------------------ scratch */

static void test_scratch_values_stay_valid_until_reset(void **state)
{
    fx_t *f = *state;
    etl_value_t vals[200];
    /* many conversions, some larger than a chunk: every earlier value survives */
    char *big = malloc(100000);
    memset(big, 'x', 99999);
    big[99999] = '\0';
    json_t *bigj = json_string(big);
    for (int i = 0; i < 200; i++) {
        json_t *j = i % 50 == 7 ? json_incref(bigj) : json_integer(1000000 + i);
        assert_int_equal(etl_json_value(f->ctx, j, ETL_T_TEXT, f->s, "x", &vals[i]), ETL_OK);
        if (i % 50 == 7) {
            /* a JSON string as text is borrowed: make a copy in the scratch instead */
            const char *p = etl_json_scratch_dup(f->s, big, 99999);
            vals[i] = etl_text(p, 99999);
        }
        json_decref(j);
    }
    for (int i = 0; i < 200; i++) {
        if (i % 50 == 7) {
            assert_int_equal(vals[i].len, 99999);
            assert_memory_equal(vals[i].v.s, big, 99999);
        } else {
            char want[16];
            snprintf(want, sizeof want, "%d", 1000000 + i);
            value_text_is(&vals[i], ETL_T_TEXT, want);
        }
    }
    size_t n = 0;
    const char *id = etl_json_scratch_printf(f->s, &n, "%s:%s:%s", "obj", "loc", "IN_STOCK");
    assert_string_equal(id, "obj:loc:IN_STOCK");
    assert_int_equal(n, 16);
    /* reset reuses the memory */
    for (int round = 0; round < 50; round++) {
        etl_json_scratch_reset(f->s);
        for (int i = 0; i < 100; i++) {
            etl_value_t v;
            json_t *j = json_real(i + 0.25);
            assert_int_equal(etl_json_value(f->ctx, j, ETL_T_NUMERIC, f->s, "x", &v), ETL_OK);
            json_decref(j);
        }
    }
    json_decref(bigj);
    free(big);
}

/* ------------------------------------------------------------ rows */

static etl_schema_t *order_schema(void)
{
    etl_schema_t *s = etl_schema_new("orders");
    etl_schema_add(s, "id", ETL_T_TEXT, NULL, ETL_COL_KEY);
    etl_schema_add(s, "amount", ETL_T_INT, NULL, 0);
    etl_schema_add(s, "price", ETL_T_NUMERIC, NULL, 0);
    etl_schema_add(s, "updated_at", ETL_T_TIMESTAMP, NULL, 0);
    etl_schema_add(s, "note", ETL_T_TEXT, NULL, 0);
    etl_schema_add(s, "first_sku", ETL_T_TEXT, NULL, 0);
    etl_schema_add(s, "yes", ETL_T_BOOL, NULL, 0);
    etl_schema_add(s, "data", ETL_T_JSON, NULL, 0);
    return s;
}

static const etl_json_field_t order_fields[] = {
    {"id", "id", ETL_T_TEXT, ETL_JSON_REQUIRED},
    {"amount", "money.amount", ETL_T_NULL, 0}, /* the column's type */
    {"price", NULL, ETL_T_NUMERIC, 0},          /* the column's name */
    {"updated_at", NULL, ETL_T_TIMESTAMP, 0},
    {"note", "nothing.here", ETL_T_TEXT, 0},    /* missing: NULL */
    {"first_sku", "items[0].sku", ETL_T_TEXT, 0},
    {"not_in_schema", "name", ETL_T_TEXT, 0},   /* skipped */
    {"data", "$", ETL_T_JSON, 0},
    ETL_JSON_FIELDS_END};

static void test_row_builder_fills_schema_order(void **state)
{
    fx_t *f = *state;
    etl_schema_t *s = order_schema();
    etl_value_t row[8];
    etl_json_scratch_reset(f->s);
    assert_int_equal(etl_json_row(f->ctx, f->doc, order_fields, s, 0, f->s, row), ETL_OK);
    value_text_is(&row[0], ETL_T_TEXT, "9007199254740993");
    assert_int_equal(row[1].type, ETL_T_INT);
    assert_int_equal(row[1].v.i, 1250);
    value_text_is(&row[2], ETL_T_NUMERIC, "409.94");
    assert_int_equal(row[3].type, ETL_T_TIMESTAMP);
    assert_true(row[3].v.i == 1714550400LL * 1000000);
    assert_int_equal(row[4].type, ETL_T_NULL);
    value_text_is(&row[5], ETL_T_TEXT, "A");
    assert_int_equal(row[6].type, ETL_T_NULL); /* no field, no BY_NAME */
    assert_int_equal(row[7].type, ETL_T_JSON);
    assert_memory_equal(row[7].v.s, "{\"id\":9007199254740993,", 23);

    /* BY_NAME: unnamed columns take the top-level member of their name */
    assert_int_equal(etl_json_row(f->ctx, f->doc, order_fields, s, ETL_JSON_ROW_BY_NAME, f->s, row),
                     ETL_OK);
    assert_int_equal(row[6].type, ETL_T_BOOL);
    assert_int_equal(row[6].v.i, 1);
    assert_int_equal(row[4].type, ETL_T_NULL); /* named by a field: the field decides */
    etl_schema_free(s);
}

static void test_row_builder_errors_name_column_and_path(void **state)
{
    fx_t *f = *state;
    etl_schema_t *s = order_schema();
    etl_value_t row[8];
    static const etl_json_field_t bad_type[] = {
        {"amount", "items[1].qty", ETL_T_INT, 0}, ETL_JSON_FIELDS_END};
    assert_int_equal(etl_json_row(f->ctx, f->doc, bad_type, s, 0, f->s, row), ETL_ERR_DATA);
    const char *e = etl_ctx_error(f->ctx);
    if (!strstr(e, "column 'amount': JSON 'items[1].qty': cannot make int of the string \"-1.5\""))
        fail_msg("message: %s", e);
    static const etl_json_field_t bad_path[] = {{"amount", "items[", ETL_T_INT, 0},
                                                ETL_JSON_FIELDS_END};
    assert_int_equal(etl_json_row(f->ctx, f->doc, bad_path, s, 0, f->s, row), ETL_ERR_INTERNAL);
    assert_non_null(strstr(etl_ctx_error(f->ctx), "malformed JSON path 'items['"));
    /* a required field that is missing, or null */
    static const etl_json_field_t req[] = {{"id", "order_id", ETL_T_TEXT, ETL_JSON_REQUIRED},
                                           ETL_JSON_FIELDS_END};
    assert_int_equal(etl_json_row(f->ctx, f->doc, req, s, 0, f->s, row), ETL_ERR_DATA);
    assert_non_null(strstr(etl_ctx_error(f->ctx), "column 'id': JSON 'order_id' is missing but required"));
    static const etl_json_field_t reqnull[] = {{"id", "nil", ETL_T_TEXT, ETL_JSON_REQUIRED},
                                               ETL_JSON_FIELDS_END};
    assert_int_equal(etl_json_row(f->ctx, f->doc, reqnull, s, 0, f->s, row), ETL_ERR_DATA);
    assert_non_null(strstr(etl_ctx_error(f->ctx), "is null but required"));
    /* a BY_NAME column that does not convert */
    etl_schema_t *s2 = etl_schema_new("x");
    etl_schema_add(s2, "money", ETL_T_INT, NULL, 0);
    static const etl_json_field_t none[] = {ETL_JSON_FIELDS_END};
    assert_int_equal(etl_json_row(f->ctx, f->doc, none, s2, ETL_JSON_ROW_BY_NAME, f->s, row),
                     ETL_ERR_DATA);
    assert_non_null(strstr(etl_ctx_error(f->ctx), "column 'money'"));
    etl_schema_free(s2);
    etl_schema_free(s);
}

static void test_next_token_and_cursor_patterns(void **state)
{
    fx_t *f = *state;
    const char *page1 = "{\"payload\": {\"Orders\": [{\"AmazonOrderId\": \"1\"}], \"NextToken\": \"nt2\"}}";
    const char *page2 = "{\"payload\": {\"Orders\": []}}";
    const char *sq = "{\"objects\": [], \"cursor\": \"c2\", \"latest_time\": \"2026-01-01T00:00:00Z\"}";
    json_t *j;
    assert_int_equal(etl_json_parse(f->ctx, page1, strlen(page1), "p1", &j), ETL_OK);
    assert_string_equal(etl_json_str(j, "payload.NextToken"), "nt2");
    assert_int_equal(json_array_size(etl_json_get(j, "payload.Orders")), 1);
    json_decref(j);
    assert_int_equal(etl_json_parse(f->ctx, page2, strlen(page2), "p2", &j), ETL_OK);
    assert_null(etl_json_str(j, "payload.NextToken")); /* the last page */
    json_decref(j);
    assert_int_equal(etl_json_parse(f->ctx, sq, strlen(sq), "sq", &j), ETL_OK);
    assert_string_equal(etl_json_str(j, "cursor"), "c2");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_error_names_source_and_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_getter_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_and_bool_getters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_conversions_stay_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_and_text_conversions_keep_64bit_ids, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_text_bool_double_blob_conversions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamps_with_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_serialization_is_compact_and_exact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scratch_values_stay_valid_until_reset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_row_builder_fills_schema_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_builder_errors_name_column_and_path, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_next_token_and_cursor_patterns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
