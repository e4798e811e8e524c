/* test_util.c - buffers, checked number/bool/duration parsing, paths and
 * clocks (core/util.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* ------------------------------------------------------------ etl_buf */

static void test_buf_starts_empty(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.oom, 0);
    etl_buf_add(&b, "", 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    etl_buf_free(&b);
    assert_null(b.data);
    etl_buf_free(&b); /* twice is fine */
}

static void test_buf_grows_and_stays_terminated(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    for (int i = 0; i < 10000; i++) {
        etl_buf_addc(&b, (char)('a' + i % 26));
        assert_int_equal(b.len, (size_t)i + 1);
        assert_true(b.cap >= b.len + 1);
        assert_int_equal(b.data[b.len], '\0');
    }
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[i], 'a' + i % 26);
    etl_buf_adds(&b, "tail");
    assert_string_equal(b.data + 10000, "tail");
    /* bytes, not strings */
    etl_buf_add(&b, "x\0y", 3);
    assert_int_equal(b.len, 10007);
    assert_memory_equal(b.data + 10004, "x\0y", 4);
    etl_buf_free(&b);
}

static void test_buf_reserve(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    assert_int_equal(etl_buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1001);
    char *before = b.data;
    for (int i = 0; i < 1000; i++)
        etl_buf_addc(&b, 'z');
    assert_ptr_equal(b.data, before); /* no reallocation within the reserve */
    etl_buf_free(&b);
}

static void test_buf_reset_keeps_memory(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, "something long enough");
    size_t cap = b.cap;
    etl_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(b.cap, cap);
    etl_buf_adds(&b, "new");
    assert_string_equal(b.data, "new");
    etl_buf_free(&b);
    etl_buf_reset(&b); /* on an empty buffer */
    assert_int_equal(b.len, 0);
}

static void test_buf_printf_appends(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, "x=");
    etl_buf_printf(&b, "%d,%s,%lld", 42, "str", (long long)INT64_MIN);
    assert_string_equal(b.data, "x=42,str,-9223372036854775808");
    /* longer than the buffer's first size */
    char big[300];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    etl_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.len, strlen("x=42,str,-9223372036854775808") + 301);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    etl_buf_printf(&b, "%s", "");
    assert_int_equal(b.len, strlen("x=42,str,-9223372036854775808") + 301);
    etl_buf_free(&b);
}

static void test_buf_take_leaves_buffer_empty(void **state)
{
    (void)state;
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_adds(&b, "mine");
    char *p = etl_buf_take(&b);
    assert_string_equal(p, "mine");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(p);
    p = etl_buf_take(&b); /* nothing in it: an empty string, not NULL */
    assert_non_null(p);
    assert_string_equal(p, "");
    free(p);
    char *s = etl_asprintf("%s-%03d", "run", 7);
    assert_string_equal(s, "run-007");
    free(s);
}

static void json_str_is(const char *in, size_t n, const char *want)
{
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_json_str(&b, in, n);
    assert_string_equal(b.data, want);
    etl_buf_free(&b);
}

static void test_buf_json_str_escapes(void **state)
{
    (void)state;
    json_str_is("", 0, "\"\"");
    json_str_is("plain", 5, "\"plain\"");
    json_str_is("a\"b", 3, "\"a\\\"b\"");
    json_str_is("a\\b", 3, "\"a\\\\b\"");
    json_str_is("l1\nl2\r\tx", 8, "\"l1\\nl2\\r\\tx\"");
    json_str_is("\x01\x1f\x08\x0c", 4, "\"\\u0001\\u001f\\u0008\\u000c\"");
    json_str_is("a\0b", 3, "\"a\\u0000b\"");
    json_str_is("caf\xc3\xa9 \x7f/", 8, "\"caf\xc3\xa9 \x7f/\"");
    json_str_is("end\\", 4, "\"end\\\\\"");
}

static void test_buf_json_str_reads_back(void **state)
{
    (void)state;
    char in[128];
    for (int i = 0; i < 128; i++)
        in[i] = (char)i; /* every ASCII byte, NUL, quote and backslash included */
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_json_str(&b, in, sizeof in);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j)
        fail_msg("%s: %s", b.data, je.text);
    assert_int_equal(json_string_length(j), sizeof in);
    assert_memory_equal(json_string_value(j), in, sizeof in);
    json_decref(j);
    etl_buf_free(&b);
}

static void test_string_helpers(void **state)
{
    (void)state;
    char *d = etl_strndup("abcdef", 3);
    assert_string_equal(d, "abc");
    free(d);
    assert_null(etl_strdup(NULL));
    char small[4];
    assert_ptr_equal(etl_strlcpy(small, "truncated", sizeof small), small);
    assert_string_equal(small, "tru");
    etl_strlcpy(small, "ok", sizeof small);
    assert_string_equal(small, "ok");
    char err[8] = "";
    etl_errf(err, sizeof err, "error %d happened", 12345);
    assert_string_equal(err, "error 1");
    etl_errf(NULL, 10, "ignored %d", 1);
    etl_errf(err, 0, "ignored %d", 1);
    assert_string_equal(err, "error 1");
}

/* ------------------------------------------------------------ parse_i64 */

static void test_parse_i64_accepts_whole_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t v;
    } ok[] = {
        {"0", 0},
        {"-0", 0},
        {"7", 7},
        {"-42", -42},
        {"+5", 5},
        {"000123", 123},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(ok); i++) {
        int64_t v = 99;
        assert_int_equal(etl_parse_i64(ok[i].s, &v), 0);
        assert_int_equal(v, ok[i].v);
    }
}

static void test_parse_i64_rejects_junk_and_overflow(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", " 5", "\t5", "5 ", "5\n", "12a", "a12", "0x10", "1e3", "1.0", "-", "+", "--1",
        "9223372036854775808", "-9223372036854775809", "99999999999999999999999",
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(bad); i++) {
        int64_t v = 99;
        if (etl_parse_i64(bad[i], &v) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(v, 99);
    }
    int64_t v = 99;
    assert_int_equal(etl_parse_i64(NULL, &v), -1);
}

/* ------------------------------------------------------------ parse_bool */

static void test_parse_bool_forms(void **state)
{
    (void)state;
    static const char *const yes[] = {"true", "TRUE", "True", "yes", "Yes", "on", "ON", "1"};
    static const char *const no[] = {"false", "FALSE", "no", "NO", "off", "Off", "0"};
    static const char *const bad[] = {"", "2", "t", "f", "y", "n", "truee", " true", "true ",
                                      "enabled", "-1"};
    int v;
    for (size_t i = 0; i < ETL_ARRAY_LEN(yes); i++) {
        v = -1;
        assert_int_equal(etl_parse_bool(yes[i], &v), 0);
        assert_int_equal(v, 1);
    }
    for (size_t i = 0; i < ETL_ARRAY_LEN(no); i++) {
        v = -1;
        assert_int_equal(etl_parse_bool(no[i], &v), 0);
        assert_int_equal(v, 0);
    }
    for (size_t i = 0; i < ETL_ARRAY_LEN(bad); i++) {
        v = -1;
        if (etl_parse_bool(bad[i], &v) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(v, -1);
    }
}

/* ------------------------------------------------------------ durations */

static void test_parse_duration_units(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t secs;
    } ok[] = {
        {"30s", 30},      {"5m", 300},       {"2h", 7200},           {"90d", 7776000},
        {"1w", 604800},   {"1h30m", 5400},   {"1d2h3m4s", 93784},    {"0s", 0},
        {"90m", 5400},    {"007s", 7},       {"2w1d", 1296000},
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(ok); i++) {
        int64_t v = -1;
        if (etl_parse_duration(ok[i].s, &v) != 0)
            fail_msg("refused '%s'", ok[i].s);
        assert_int_equal(v, ok[i].secs);
    }
}

static void test_parse_duration_refuses_bad_forms(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "5", "5x", "", "-5m", "m", "5m ", " 5m", "1.5h", "5M", "5S", "1h30", "h1", "5 m",
        "+5m", "1y",
        "99999999999999999999s",           /* the number overflows */
        "106751991167301d",                /* number * unit overflows */
        "5000000000000000000s5000000000000000000s", /* the sum overflows */
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(bad); i++) {
        int64_t v = -7;
        if (etl_parse_duration(bad[i], &v) != -1)
            fail_msg("accepted '%s' as %lld", bad[i], (long long)v);
        assert_int_equal(v, -7);
    }
    int64_t v = -7;
    assert_int_equal(etl_parse_duration(NULL, &v), -1);
}

static void test_format_duration(void **state)
{
    (void)state;
    static const struct {
        int64_t secs;
        const char *text;
    } cases[] = {
        {0, "0s"},        {1, "1s"},      {59, "59s"},       {90, "90s"},
        {300, "5m"},      {5400, "90m"},  {7200, "2h"},      {86400, "1d"},
        {7776000, "90d"}, {604800, "7d"}, {3601, "3601s"},   {-60, "-1m"},
    };
    char buf[32];
    for (size_t i = 0; i < ETL_ARRAY_LEN(cases); i++) {
        assert_ptr_equal(etl_format_duration(cases[i].secs, buf, sizeof buf), buf);
        assert_string_equal(buf, cases[i].text);
    }
    /* every formatted positive duration parses back */
    for (int64_t s = 0; s < 200000; s += 97) {
        int64_t back = -1;
        etl_format_duration(s, buf, sizeof buf);
        assert_int_equal(etl_parse_duration(buf, &back), 0);
        assert_int_equal(back, s);
    }
}

/* ------------------------------------------------------------ paths */

static void join_is(const char *dir, const char *rel, const char *want)
{
    char *p = etl_path_join(dir, rel);
    assert_non_null(p);
    assert_string_equal(p, want);
    free(p);
}

static void test_path_join(void **state)
{
    (void)state;
    join_is("/a/b", "c", "/a/b/c");
    join_is("/a/b/", "c", "/a/b/c");
    join_is("/a/b//", "c/d.db", "/a/b/c/d.db");
    join_is("/a", "/abs/x", "/abs/x");
    join_is("/a", "./x", "/a/x");
    join_is("/a", "././x", "/a/x");
    join_is("/a", "../x", "/a/../x");
    join_is("rel", "x", "rel/x");
    join_is(NULL, "x", "x");
    join_is("", "x", "x");
    assert_null(etl_path_join("/a", NULL));
}

static void dir_is(const char *path, const char *want)
{
    char *p = etl_path_dir(path);
    assert_non_null(p);
    assert_string_equal(p, want);
    free(p);
}

static void test_path_dir(void **state)
{
    (void)state;
    dir_is("/a/b/c.yaml", "/a/b");
    dir_is("/c.yaml", "/");
    dir_is("c.yaml", ".");
    dir_is("./c.yaml", ".");
    dir_is("a/b", "a");
    dir_is("", ".");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdirs(void **state)
{
    (void)state;
    char tmp[] = "/tmp/etl-test-util-XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char *deep = etl_path_join(tmp, "a/b/c");
    assert_int_equal(etl_mkdirs(deep), 0);
    assert_true(is_dir(deep));
    assert_int_equal(etl_mkdirs(deep), 0); /* already there */
    char *slashes = etl_path_join(tmp, "x//y/");
    assert_int_equal(etl_mkdirs(slashes), 0);
    char *xy = etl_path_join(tmp, "x/y");
    assert_true(is_dir(xy));
    /* a regular file in the way */
    char *file = etl_path_join(tmp, "file");
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    char *under = etl_path_join(tmp, "file/sub");
    assert_int_equal(etl_mkdirs(under), -1);
    assert_false(is_dir(under));
    /* clean up */
    unlink(file);
    rmdir(xy);
    char *x = etl_path_join(tmp, "x");
    rmdir(x);
    rmdir(deep);
    char *ab = etl_path_join(tmp, "a/b"), *a = etl_path_join(tmp, "a");
    rmdir(ab);
    rmdir(a);
    assert_int_equal(rmdir(tmp), 0); /* nothing left behind */
    free(deep);
    free(slashes);
    free(xy);
    free(file);
    free(under);
    free(x);
    free(ab);
    free(a);
}

static void test_exe_dir_is_the_test_folder(void **state)
{
    (void)state;
    char *d = etl_exe_dir();
    assert_non_null(d);
    char *want = realpath(ETL_TEST_BUILD "/tests", NULL);
    assert_non_null(want);
    assert_string_equal(d, want);
    free(want);
    free(d);
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t wall = etl_now_us();
    int64_t t = (int64_t)time(NULL) * 1000000;
    assert_true(wall > t - 2000000 && wall < t + 2000000);
    int64_t m1 = etl_mono_us();
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    int64_t m2 = etl_mono_us();
    assert_true(m2 - m1 >= 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_starts_empty),
        cmocka_unit_test(test_buf_grows_and_stays_terminated),
        cmocka_unit_test(test_buf_reserve),
        cmocka_unit_test(test_buf_reset_keeps_memory),
        cmocka_unit_test(test_buf_printf_appends),
        cmocka_unit_test(test_buf_take_leaves_buffer_empty),
        cmocka_unit_test(test_buf_json_str_escapes),
        cmocka_unit_test(test_buf_json_str_reads_back),
        cmocka_unit_test(test_string_helpers),
        cmocka_unit_test(test_parse_i64_accepts_whole_numbers),
        cmocka_unit_test(test_parse_i64_rejects_junk_and_overflow),
        cmocka_unit_test(test_parse_bool_forms),
        cmocka_unit_test(test_parse_duration_units),
        cmocka_unit_test(test_parse_duration_refuses_bad_forms),
        cmocka_unit_test(test_format_duration),
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_path_dir),
        cmocka_unit_test(test_mkdirs),
        cmocka_unit_test(test_exe_dir_is_the_test_folder),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
