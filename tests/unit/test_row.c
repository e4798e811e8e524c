/* test_row.c - key text, key splitting, content hashes and the JSON form of
 * rows (core/row.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "row.h"
#include "util.h"

#define TS_MAY1_10 (INT64_C(1714557600) * 1000000)

static etl_value_t txt(const char *s) { return etl_text(s, strlen(s)); }

/* The key of row over cols, as a malloc'd string; NULL when etl_row_key refused. */
static char *key_of(const etl_value_t *row, const int *cols, size_t n, size_t *len)
{
    etl_buf_t b;
    etl_buf_init(&b);
    if (etl_row_key(&b, row, cols, n) != 0) {
        etl_buf_free(&b);
        return NULL;
    }
    if (len)
        *len = b.len;
    return etl_buf_take(&b);
}

/* ------------------------------------------------------------ keys */

static void test_key_single_column_is_text_form(void **state)
{
    (void)state;
    const int c0[] = {0};
    etl_value_t row[1];
    char *k;

    row[0] = etl_int(42);
    assert_string_equal(k = key_of(row, c0, 1, NULL), "42");
    free(k);
    row[0] = etl_int(-7);
    assert_string_equal(k = key_of(row, c0, 1, NULL), "-7");
    free(k);
    row[0] = txt("a1b2-c3");
    assert_string_equal(k = key_of(row, c0, 1, NULL), "a1b2-c3");
    free(k);
    row[0] = etl_ts(TS_MAY1_10);
    assert_string_equal(k = key_of(row, c0, 1, NULL), "2024-05-01T10:00:00Z");
    free(k);
    row[0] = etl_bool(1);
    assert_string_equal(k = key_of(row, c0, 1, NULL), "true");
    free(k);
    /* one column is taken as is, ':' included (an API's natural id) */
    row[0] = txt("obj:loc:IN_STOCK");
    assert_string_equal(k = key_of(row, c0, 1, NULL), "obj:loc:IN_STOCK");
    free(k);
    /* text is length-delimited */
    row[0] = etl_text("a\0b", 3);
    size_t len = 0;
    k = key_of(row, c0, 1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(k, "a\0b", 3);
    free(k);
}

static void test_key_picks_columns_by_index(void **state)
{
    (void)state;
    etl_value_t row[4] = {txt("zero"), etl_int(1), txt("two"), etl_int(3)};
    const int c3[] = {3}, c20[] = {2, 0};
    char *k;
    assert_string_equal(k = key_of(row, c3, 1, NULL), "3");
    free(k);
    assert_string_equal(k = key_of(row, c20, 2, NULL), "two:zero");
    free(k);
}

static void test_key_single_null_is_refused(void **state)
{
    (void)state;
    etl_value_t row[1] = {etl_null()};
    const int c0[] = {0};
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, "keep");
    assert_int_equal(etl_row_key(&b, row, c0, 1), -1);
    assert_string_equal(b.data, "keep"); /* nothing appended */
    etl_buf_free(&b);
}

static void test_key_composite_escapes_colon_and_backslash(void **state)
{
    (void)state;
    const int c01[] = {0, 1}, c012[] = {0, 1, 2};
    etl_value_t row[3];
    char *k;

    row[0] = txt("a"), row[1] = txt("b");
    assert_string_equal(k = key_of(row, c01, 2, NULL), "a:b");
    free(k);
    row[0] = txt("a:b"), row[1] = txt("c");
    assert_string_equal(k = key_of(row, c01, 2, NULL), "a\\:b:c");
    free(k);
    row[0] = txt("a"), row[1] = txt("b:c");
    assert_string_equal(k = key_of(row, c01, 2, NULL), "a:b\\:c");
    free(k);
    row[0] = txt("x\\y"), row[1] = txt("\\");
    assert_string_equal(k = key_of(row, c01, 2, NULL), "x\\\\y:\\\\");
    free(k);
    row[0] = etl_int(7), row[1] = etl_ts(TS_MAY1_10), row[2] = txt("");
    assert_string_equal(k = key_of(row, c012, 3, NULL), "7:2024-05-01T10\\:00\\:00Z:");
    free(k);
}

static void test_key_composite_null_part(void **state)
{
    (void)state;
    const int c012[] = {0, 1, 2};
    etl_value_t row[3] = {txt("brand"), etl_null(), etl_int(9)};
    char *k;
    assert_string_equal(k = key_of(row, c012, 3, NULL), "brand:\\N:9");
    free(k);
    /* text "\N" and "N" are not NULL */
    row[1] = txt("\\N");
    assert_string_equal(k = key_of(row, c012, 3, NULL), "brand:\\\\N:9");
    free(k);
    row[1] = txt("N");
    assert_string_equal(k = key_of(row, c012, 3, NULL), "brand:N:9");
    free(k);
    etl_value_t nulls[2] = {etl_null(), etl_null()};
    assert_string_equal(k = key_of(nulls, c012, 2, NULL), "\\N:\\N");
    free(k);
}

/* Awkward parts: every pair and triple of them must give a distinct key. */
static const char *const awkward[] = {"", "a", ":", "\\", "a:", ":a", "\\:", ":\\", "N",
                                      "\\N", "a\\", "b:c", "a:b", "c", NULL};
#define NAWK ETL_ARRAY_LEN(awkward)

static etl_value_t awk(size_t i) { return awkward[i] ? txt(awkward[i]) : etl_null(); }

static void test_key_distinct_composites_never_collide(void **state)
{
    (void)state;
    const int c012[] = {0, 1, 2};
    for (size_t width = 2; width <= 3; width++) {
        size_t total = width == 2 ? NAWK * NAWK : NAWK * NAWK * NAWK;
        char **keys = calloc(total, sizeof *keys);
        size_t *lens = calloc(total, sizeof *lens);
        assert_non_null(keys);
        for (size_t t = 0; t < total; t++) {
            etl_value_t row[3];
            size_t x = t;
            for (size_t c = 0; c < width; c++, x /= NAWK)
                row[c] = awk(x % NAWK);
            keys[t] = key_of(row, c012, width, &lens[t]);
            assert_non_null(keys[t]);
        }
        for (size_t a = 0; a < total; a++)
            for (size_t b = a + 1; b < total; b++)
                if (lens[a] == lens[b] && memcmp(keys[a], keys[b], lens[a]) == 0)
                    fail_msg("tuples %zu and %zu share key '%s'", a, b, keys[a]);
        for (size_t t = 0; t < total; t++)
            free(keys[t]);
        free(keys);
        free(lens);
    }
    /* the case the escaping exists for */
    etl_value_t r1[2] = {txt("a:b"), txt("c")}, r2[2] = {txt("a"), txt("b:c")};
    char *k1 = key_of(r1, c012, 2, NULL), *k2 = key_of(r2, c012, 2, NULL);
    assert_string_not_equal(k1, k2);
    free(k1);
    free(k2);
}

static void test_key_split_inverts_composite_keys(void **state)
{
    (void)state;
    const int c012[] = {0, 1, 2};
    etl_arena_t a = {0};
    for (size_t width = 2; width <= 3; width++) {
        size_t total = width == 2 ? NAWK * NAWK : NAWK * NAWK * NAWK;
        for (size_t t = 0; t < total; t++) {
            etl_value_t row[3];
            size_t x = t;
            for (size_t c = 0; c < width; c++, x /= NAWK)
                row[c] = awk(x % NAWK);
            size_t klen = 0;
            char *k = key_of(row, c012, width, &klen);
            const char *parts[4];
            size_t lens[4];
            int nulls[4];
            int n = etl_key_split(k, klen, &a, parts, lens, nulls, 4);
            assert_int_equal(n, (int)width);
            for (size_t c = 0; c < width; c++) {
                if (row[c].type == ETL_T_NULL) {
                    assert_true(nulls[c]);
                    assert_int_equal(lens[c], 0);
                } else {
                    assert_false(nulls[c]);
                    assert_int_equal(lens[c], row[c].len);
                    assert_memory_equal(parts[c], row[c].v.s, row[c].len);
                    assert_int_equal(parts[c][lens[c]], '\0');
                }
            }
            free(k);
        }
        etl_arena_reset(&a);
    }
    etl_arena_free(&a);
}

static void test_key_split_typed_parts_and_limits(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    const char *parts[3];
    size_t lens[3];
    int nulls[3];
    const char *k = "42:2024-05-01T10\\:00\\:00Z:\\N";
    assert_int_equal(etl_key_split(k, strlen(k), &a, parts, lens, nulls, 3), 3);
    assert_string_equal(parts[0], "42");
    assert_string_equal(parts[1], "2024-05-01T10:00:00Z");
    assert_int_equal(lens[1], 20);
    assert_true(nulls[2]);
    assert_false(nulls[0] || nulls[1]);
    /* more parts than allowed */
    assert_int_equal(etl_key_split("a:b:c", 5, &a, parts, lens, nulls, 2), -1);
    /* only len bytes are read */
    assert_int_equal(etl_key_split("a:b:c", 3, &a, parts, lens, nulls, 2), 2);
    assert_string_equal(parts[1], "b");
    /* an empty key is one empty part */
    assert_int_equal(etl_key_split("", 0, &a, parts, lens, nulls, 3), 1);
    assert_int_equal(lens[0], 0);
    assert_false(nulls[0]);
    /* a single-column key without ':' or '\' splits to itself */
    assert_int_equal(etl_key_split("a1b2-c3", 7, &a, parts, lens, nulls, 1), 1);
    assert_string_equal(parts[0], "a1b2-c3");
    etl_arena_free(&a);
}

/* ------------------------------------------------------------ hash */

#define NH 9
/* One of every type; text buffers are fresh copies so equality is by content. */
static void base_row(etl_value_t *row, char bufs[][16])
{
    static const char *const s[] = {"hello", "0.10", "\x01\x02", "{\"a\":1}"};
    for (int i = 0; i < 4; i++)
        strcpy(bufs[i], s[i]);
    row[0] = etl_null();
    row[1] = etl_bool(1);
    row[2] = etl_int(1);
    row[3] = etl_double(2.5);
    row[4] = etl_str(ETL_T_NUMERIC, bufs[1], 4);
    row[5] = etl_text(bufs[0], 5);
    row[6] = etl_str(ETL_T_BLOB, bufs[2], 2);
    row[7] = etl_str(ETL_T_JSON, bufs[3], 7);
    row[8] = etl_ts(TS_MAY1_10);
}

static void test_hash_equal_rows_equal_hash(void **state)
{
    (void)state;
    etl_value_t r1[NH], r2[NH];
    char b1[4][16], b2[4][16];
    base_row(r1, b1);
    base_row(r2, b2);
    assert_ptr_not_equal(r1[5].v.s, r2[5].v.s);
    assert_true(etl_row_hash(r1, NH, NULL) == etl_row_hash(r2, NH, NULL));
    /* a zero skip mask is the same as none */
    unsigned char none[NH] = {0};
    assert_true(etl_row_hash(r1, NH, none) == etl_row_hash(r1, NH, NULL));
    /* and it is a pure function */
    assert_true(etl_row_hash(r1, NH, NULL) == etl_row_hash(r1, NH, NULL));
}

static void test_hash_any_single_change_changes_it(void **state)
{
    (void)state;
    etl_value_t base[NH];
    char bb[4][16];
    base_row(base, bb);
    const uint64_t h0 = etl_row_hash(base, NH, NULL);
    const struct {
        int col;
        etl_value_t v;
    } changes[] = {
        {0, etl_int(0)},
        {0, etl_str(ETL_T_TEXT, "", 0)},
        {1, etl_bool(0)},
        {1, etl_int(1)},           /* bool true vs int 1 */
        {2, etl_int(2)},
        {2, etl_int(-1)},
        {2, etl_text("1", 1)},     /* int 1 vs text "1" */
        {2, etl_double(1.0)},
        {2, etl_bool(1)},
        {2, etl_ts(1)},
        {2, etl_null()},
        {3, etl_double(2.5000000000000004)},
        {3, etl_double(-2.5)},
        {4, etl_str(ETL_T_NUMERIC, "0.1", 3)},
        {4, etl_str(ETL_T_TEXT, "0.10", 4)},
        {5, etl_text("hellO", 5)},
        {5, etl_text("hell", 4)},
        {5, etl_text("hello\0", 6)},
        {5, etl_str(ETL_T_JSON, "hello", 5)},
        {5, etl_str(ETL_T_BLOB, "hello", 5)},
        {5, etl_null()},
        {6, etl_str(ETL_T_BLOB, "\x01\x03", 2)},
        {6, etl_str(ETL_T_BLOB, "\x01", 1)},
        {7, etl_str(ETL_T_JSON, "{\"a\":2}", 7)},
        {8, etl_ts(TS_MAY1_10 + 1)},
        {8, etl_int(TS_MAY1_10)},
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(changes); i++) {
        etl_value_t row[NH];
        memcpy(row, base, sizeof row);
        row[changes[i].col] = changes[i].v;
        if (etl_row_hash(row, NH, NULL) == h0)
            fail_msg("change %zu (column %d) kept the hash", i, changes[i].col);
    }
    /* the same value in another column is another row */
    etl_value_t a[2] = {etl_int(1), etl_null()}, b[2] = {etl_null(), etl_int(1)};
    assert_true(etl_row_hash(a, 2, NULL) != etl_row_hash(b, 2, NULL));
    etl_value_t c[2] = {txt("ab"), txt("c")}, d[2] = {txt("a"), txt("bc")};
    assert_true(etl_row_hash(c, 2, NULL) != etl_row_hash(d, 2, NULL));
}

static void test_hash_null_differs_from_empty_string(void **state)
{
    (void)state;
    etl_value_t n[1] = {etl_null()}, e[1] = {etl_text("", 0)}, z[1] = {etl_int(0)};
    assert_true(etl_row_hash(n, 1, NULL) != etl_row_hash(e, 1, NULL));
    assert_true(etl_row_hash(n, 1, NULL) != etl_row_hash(z, 1, NULL));
    assert_true(etl_row_hash(e, 1, NULL) != etl_row_hash(z, 1, NULL));
}

static void test_hash_negative_zero_equals_zero(void **state)
{
    (void)state;
    etl_value_t p[2] = {txt("k"), etl_double(0.0)}, m[2] = {txt("k"), etl_double(-0.0)};
    assert_true(signbit(m[1].v.d));
    assert_true(etl_row_hash(p, 2, NULL) == etl_row_hash(m, 2, NULL));
    etl_value_t o[2] = {txt("k"), etl_double(1e-300)};
    assert_true(etl_row_hash(p, 2, NULL) != etl_row_hash(o, 2, NULL));
}

static void test_hash_skip_mask_excludes_columns(void **state)
{
    (void)state;
    etl_value_t r1[3] = {txt("id-1"), txt("name"), etl_ts(TS_MAY1_10)};
    etl_value_t r2[3] = {txt("id-1"), txt("name"), etl_ts(TS_MAY1_10 + 5000000)};
    const unsigned char skip_ts[3] = {0, 0, 1};
    assert_true(etl_row_hash(r1, 3, NULL) != etl_row_hash(r2, 3, NULL));
    assert_true(etl_row_hash(r1, 3, skip_ts) == etl_row_hash(r2, 3, skip_ts));
    /* a skipped column's type does not matter either */
    r2[2] = etl_null();
    assert_true(etl_row_hash(r1, 3, skip_ts) == etl_row_hash(r2, 3, skip_ts));
    /* but the others still count */
    r2[1] = txt("other");
    assert_true(etl_row_hash(r1, 3, skip_ts) != etl_row_hash(r2, 3, skip_ts));
    /* everything skipped: all rows alike */
    const unsigned char all[3] = {1, 1, 1};
    assert_true(etl_row_hash(r1, 3, all) == etl_row_hash(r2, 3, all));
}

static void test_hash_bytes_depends_on_every_byte_and_seed(void **state)
{
    (void)state;
    unsigned char buf[37];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7);
    const uint64_t h = etl_hash_bytes(buf, sizeof buf, 1);
    assert_true(h != etl_hash_bytes(buf, sizeof buf, 2));
    assert_true(h != etl_hash_bytes(buf, sizeof buf - 1, 1));
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] ^= 1;
        assert_true(etl_hash_bytes(buf, sizeof buf, 1) != h);
        buf[i] ^= 1;
    }
    assert_true(etl_hash_bytes(buf, sizeof buf, 1) == h);
    /* trailing zero bytes are not the same as a shorter input */
    assert_true(etl_hash_bytes("a\0", 2, 0) != etl_hash_bytes("a", 1, 0));
}

/* ------------------------------------------------------------ JSON */

static etl_schema_t *all_types_schema(void)
{
    static const struct {
        const char *name;
        etl_type_t type;
    } cols[] = {
        {"n", ETL_T_NULL},      {"flag", ETL_T_BOOL},   {"qty", ETL_T_INT},
        {"ratio", ETL_T_DOUBLE}, {"price", ETL_T_NUMERIC}, {"name", ETL_T_TEXT},
        {"raw", ETL_T_BLOB},    {"doc", ETL_T_JSON},    {"at", ETL_T_TIMESTAMP},
        {"gone", ETL_T_TEXT},
    };
    etl_schema_t *s = etl_schema_new("things");
    assert_non_null(s);
    for (size_t i = 0; i < ETL_ARRAY_LEN(cols); i++)
        assert_int_equal(etl_schema_add(s, cols[i].name, cols[i].type, NULL, 0), (int)i);
    return s;
}

static void assert_value_same(const etl_value_t *want, const etl_value_t *got, size_t col)
{
    if (want->type != got->type)
        fail_msg("column %zu: type %s, want %s", col, etl_type_name(got->type),
                 etl_type_name(want->type));
    switch (want->type) {
    case ETL_T_NULL:
        break;
    case ETL_T_BOOL:
    case ETL_T_INT:
    case ETL_T_TIMESTAMP:
        assert_int_equal(got->v.i, want->v.i);
        break;
    case ETL_T_DOUBLE:
        if (isnan(want->v.d))
            assert_true(isnan(got->v.d));
        else
            assert_memory_equal(&got->v.d, &want->v.d, sizeof(double)); /* bit for bit */
        break;
    default:
        assert_int_equal(got->len, want->len);
        if (want->len)
            assert_memory_equal(got->v.s, want->v.s, want->len);
    }
}

/* JSON of row, read back; both rows must be identical. */
static void round_trip(const etl_schema_t *s, const etl_value_t *row)
{
    size_t n = etl_schema_ncols(s);
    etl_buf_t b;
    etl_buf_init(&b);
    etl_row_json(&b, s, row);
    assert_non_null(b.data);
    etl_arena_t a = {0};
    etl_value_t *back = calloc(n, sizeof *back);
    char err[256] = "";
    int rc = etl_row_from_json(b.data, s, &a, back, err, sizeof err);
    if (rc != 0)
        fail_msg("%s: %s", b.data, err);
    for (size_t i = 0; i < n; i++)
        assert_value_same(&row[i], &back[i], i);
    /* the copy must not point into the JSON text */
    for (size_t i = 0; i < n; i++)
        if (back[i].type >= ETL_T_NUMERIC && back[i].type <= ETL_T_JSON && back[i].len)
            assert_true(back[i].v.s < b.data || back[i].v.s >= b.data + b.len);
    free(back);
    etl_arena_free(&a);
    etl_buf_free(&b);
}

static void test_json_round_trip_every_type(void **state)
{
    (void)state;
    etl_schema_t *s = all_types_schema();
    unsigned char blob[256];
    for (int i = 0; i < 256; i++)
        blob[i] = (unsigned char)i;
    static const char doc[] = "{\"a\":[1,2.5,{\"b\":null}],\"s\":\"x\\\"y\"}";
    etl_value_t row[10] = {
        etl_null(),
        etl_bool(1),
        etl_int(-42),
        etl_double(0.1),
        etl_str(ETL_T_NUMERIC, "0.10", 4),
        txt("caf\xc3\xa9 \"q\" back\\slash\nline\ttab\x01\x1f \xe2\x82\xac"),
        etl_str(ETL_T_BLOB, (const char *)blob, sizeof blob),
        etl_str(ETL_T_JSON, doc, sizeof doc - 1),
        etl_ts(TS_MAY1_10 + 123456),
        etl_null(),
    };
    round_trip(s, row);
    /* values of another type than the column's come back as they were */
    row[2] = txt("not a number");
    row[5] = etl_int(7);
    row[0] = etl_ts(-1);
    round_trip(s, row);
    etl_schema_free(s);
}

static void test_json_round_trip_doubles(void **state)
{
    (void)state;
    etl_schema_t *s = etl_schema_new("d");
    etl_schema_add(s, "x", ETL_T_DOUBLE, NULL, 0);
    const double ds[] = {1.0,  0.1,     1e300, -1e-300, 0.0,      -0.0, 100.0, 1e16,
                         1e17, 5e-324, 1.7976931348623157e308, 0.30000000000000004,
                         123456789012345678.0, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < ETL_ARRAY_LEN(ds); i++) {
        etl_value_t row[1] = {etl_double(ds[i])};
        round_trip(s, row);
    }
    /* a whole double is written as a JSON real, so it never reads back as an int */
    etl_buf_t b;
    etl_buf_init(&b);
    etl_value_t one[1] = {etl_double(1.0)};
    etl_row_json(&b, s, one);
    assert_non_null(strstr(b.data, "\"x\":1.0,"));
    etl_buf_free(&b);
    etl_schema_free(s);
}

static void test_json_round_trip_ints_and_timestamps(void **state)
{
    (void)state;
    etl_schema_t *s = etl_schema_new("i");
    etl_schema_add(s, "i", ETL_T_INT, NULL, 0);
    etl_schema_add(s, "t", ETL_T_TIMESTAMP, NULL, 0);
    const int64_t ints[] = {0, 1, -1, INT64_MAX, INT64_MIN, INT64_C(9007199254740993)};
    const int64_t stamps[] = {0, 1, -1, TS_MAY1_10 + 1, -999999, INT64_C(-62135596800) * 1000000,
                              INT64_C(253402300799) * 1000000 + 999999};
    for (size_t i = 0; i < ETL_ARRAY_LEN(ints); i++) {
        etl_value_t row[2] = {etl_int(ints[i]), etl_null()};
        round_trip(s, row);
    }
    for (size_t i = 0; i < ETL_ARRAY_LEN(stamps); i++) {
        etl_value_t row[2] = {etl_null(), etl_ts(stamps[i])};
        round_trip(s, row);
    }
    etl_schema_free(s);
}

static void test_json_round_trip_blob_lengths(void **state)
{
    (void)state;
    etl_schema_t *s = etl_schema_new("b");
    etl_schema_add(s, "b", ETL_T_BLOB, NULL, 0);
    unsigned char buf[8];
    for (size_t len = 0; len <= sizeof buf; len++) {
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)(0xff - i * 31);
        etl_value_t row[1] = {etl_str(ETL_T_BLOB, (const char *)buf, len)};
        round_trip(s, row);
    }
    /* and the stored form is standard base64 */
    etl_buf_t b;
    etl_buf_init(&b);
    etl_value_t row[1] = {etl_str(ETL_T_BLOB, "\x00\xff\x10", 3)};
    etl_row_json(&b, s, row);
    assert_non_null(strstr(b.data, "\"b\":\"AP8Q\""));
    etl_buf_reset(&b);
    row[0] = etl_str(ETL_T_BLOB, "ab", 2);
    etl_row_json(&b, s, row);
    assert_non_null(strstr(b.data, "\"b\":\"YWI=\""));
    etl_buf_free(&b);
    etl_schema_free(s);
}

static void test_json_text_with_nul_bytes(void **state)
{
    (void)state;
    etl_schema_t *s = etl_schema_new("t");
    etl_schema_add(s, "t", ETL_T_TEXT, NULL, 0);
    etl_value_t row[1] = {etl_text("a\0b\0", 4)};
    round_trip(s, row);
    etl_schema_free(s);
}

static void test_json_form_is_readable(void **state)
{
    (void)state;
    etl_schema_t *s = etl_schema_new("r");
    etl_schema_add(s, "id", ETL_T_INT, NULL, 0);
    etl_schema_add(s, "price", ETL_T_NUMERIC, NULL, 0);
    etl_schema_add(s, "at", ETL_T_TIMESTAMP, NULL, 0);
    etl_schema_add(s, "ok", ETL_T_BOOL, NULL, 0);
    etl_schema_add(s, "note", ETL_T_TEXT, NULL, 0);
    etl_value_t row[5] = {etl_int(5), etl_str(ETL_T_NUMERIC, "0.10", 4), etl_ts(TS_MAY1_10 + 7),
                          etl_bool(0), etl_null()};
    etl_buf_t b;
    etl_buf_init(&b);
    etl_row_json(&b, s, row);
    assert_string_equal(b.data, "{\"id\":5,\"price\":\"0.10\",\"at\":\"2024-05-01T10:00:00.000007Z\","
                                "\"ok\":false,\"note\":null,\"$types\":{\"id\":\"i\",\"price\":\"N\",\"at\":\"T\",\"ok\":\"b\",\"note\":\"n\"}}");
    etl_buf_free(&b);
    etl_schema_free(s);
}

static void test_json_absent_columns_are_null(void **state)
{
    (void)state;
    etl_schema_t *s = all_types_schema();
    etl_arena_t a = {0};
    etl_value_t row[10];
    for (size_t i = 0; i < 10; i++)
        row[i] = etl_int(99);
    char err[128] = "";
    /* no $types: the columns' own types decide */
    assert_int_equal(etl_row_from_json("{\"qty\": 3, \"name\": \"x\", \"at\": \"2024-05-01\","
                                       " \"ratio\": 2, \"extra\": 1}",
                                       s, &a, row, err, sizeof err),
                     0);
    assert_int_equal(row[2].type, ETL_T_INT);
    assert_int_equal(row[2].v.i, 3);
    assert_int_equal(row[5].type, ETL_T_TEXT);
    assert_int_equal(row[5].len, 1);
    assert_int_equal(row[8].type, ETL_T_TIMESTAMP);
    assert_int_equal(row[8].v.i, INT64_C(1714521600) * 1000000);
    assert_int_equal(row[3].type, ETL_T_DOUBLE);
    assert_true(row[3].v.d == 2.0);
    const int absent[] = {0, 1, 4, 6, 7, 9};
    for (size_t i = 0; i < ETL_ARRAY_LEN(absent); i++)
        assert_int_equal(row[absent[i]].type, ETL_T_NULL);
    etl_arena_free(&a);
    etl_schema_free(s);
}

static void from_json_fails(const etl_schema_t *s, const char *json, const char *substr)
{
    etl_arena_t a = {0};
    etl_value_t row[10];
    char err[256] = "";
    assert_int_equal(etl_row_from_json(json, s, &a, row, err, sizeof err), -1);
    if (!strstr(err, substr))
        fail_msg("%s: wanted '%s' in '%s'", json, substr, err);
    etl_arena_free(&a);
}

static void test_json_malformed_is_an_error(void **state)
{
    (void)state;
    etl_schema_t *s = all_types_schema();
    from_json_fails(s, "", "not a JSON object");
    from_json_fails(s, "{", "not a JSON object");
    from_json_fails(s, "{\"qty\": 1", "not a JSON object");
    from_json_fails(s, "{\"qty\": 1,}", "not a JSON object");
    from_json_fails(s, "[1, 2]", "not a JSON object");
    from_json_fails(s, "null", "not a JSON object");
    from_json_fails(s, "42", "not a JSON object");
    from_json_fails(s, "{\"qty\": 1} trailing", "not a JSON object");
    /* well-formed, but a value does not fit its type */
    from_json_fails(s, "{\"qty\": \"abc\"}", "column 'qty'");
    from_json_fails(s, "{\"qty\": 1.5}", "type int");
    from_json_fails(s, "{\"flag\": 1}", "column 'flag'");
    from_json_fails(s, "{\"name\": 5}", "column 'name'");
    from_json_fails(s, "{\"at\": \"yesterday\"}", "column 'at'");
    from_json_fails(s, "{\"at\": 1714557600}", "type timestamp");
    from_json_fails(s, "{\"raw\": \"@@@@\"}", "column 'raw'");
    from_json_fails(s, "{\"raw\": \"abc\"}", "type blob");
    from_json_fails(s, "{\"raw\": \"A=AA\"}", "type blob");
    from_json_fails(s, "{\"ratio\": true}", "column 'ratio'");
    from_json_fails(s, "{\"qty\": \"1\", \"$types\": \"nbi\"}", "column 'qty'");
    etl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_single_column_is_text_form),
        cmocka_unit_test(test_key_picks_columns_by_index),
        cmocka_unit_test(test_key_single_null_is_refused),
        cmocka_unit_test(test_key_composite_escapes_colon_and_backslash),
        cmocka_unit_test(test_key_composite_null_part),
        cmocka_unit_test(test_key_distinct_composites_never_collide),
        cmocka_unit_test(test_key_split_inverts_composite_keys),
        cmocka_unit_test(test_key_split_typed_parts_and_limits),
        cmocka_unit_test(test_hash_equal_rows_equal_hash),
        cmocka_unit_test(test_hash_any_single_change_changes_it),
        cmocka_unit_test(test_hash_null_differs_from_empty_string),
        cmocka_unit_test(test_hash_negative_zero_equals_zero),
        cmocka_unit_test(test_hash_skip_mask_excludes_columns),
        cmocka_unit_test(test_hash_bytes_depends_on_every_byte_and_seed),
        cmocka_unit_test(test_json_round_trip_every_type),
        cmocka_unit_test(test_json_round_trip_doubles),
        cmocka_unit_test(test_json_round_trip_ints_and_timestamps),
        cmocka_unit_test(test_json_round_trip_blob_lengths),
        cmocka_unit_test(test_json_text_with_nul_bytes),
        cmocka_unit_test(test_json_form_is_readable),
        cmocka_unit_test(test_json_absent_columns_are_null),
        cmocka_unit_test(test_json_malformed_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
