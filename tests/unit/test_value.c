/* test_value.c - type names, timestamp parsing and formatting, and the text
 * form of values (include/etl/record.h, core/value.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl/record.h"
#include "util.h"

#define SEC INT64_C(1000000)
/* 2024-05-01T00:00:00Z and 2024-05-01T10:00:00Z in seconds */
#define MAY1 INT64_C(1714521600)
#define MAY1_10 INT64_C(1714557600)

/* Parses a NUL-terminated text; fails the test when it is refused. */
static int64_t ts_ok(const char *s)
{
    int64_t us = INT64_MIN;
    int rc = etl_ts_parse(s, strlen(s), &us);
    if (rc != 0)
        print_error("refused: '%s'\n", s);
    assert_int_equal(rc, 0);
    return us;
}

static void ts_bad(const char *s)
{
    int64_t us = 12345;
    int rc = etl_ts_parse(s, strlen(s), &us);
    if (rc != -1)
        print_error("accepted: '%s' as %lld\n", s, (long long)us);
    assert_int_equal(rc, -1);
}

/* ------------------------------------------------------------ parse */

static void test_parse_date_only_is_midnight_utc(void **state)
{
    (void)state;
    assert_int_equal(ts_ok("2024-05-01"), MAY1 * SEC);
    assert_int_equal(ts_ok("1970-01-01"), 0);
    assert_int_equal(ts_ok("1969-12-31"), -86400 * SEC);
    assert_int_equal(ts_ok("1900-01-01"), INT64_C(-2208988800) * SEC);
    assert_int_equal(ts_ok("0001-01-01"), INT64_C(-62135596800) * SEC);
}

static void test_parse_space_or_t_separator(void **state)
{
    (void)state;
    assert_int_equal(ts_ok("2024-05-01 10:00:00"), MAY1_10 * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00"), MAY1_10 * SEC);
    assert_int_equal(ts_ok("2024-05-01t10:00:00"), MAY1_10 * SEC);
    /* seconds are optional */
    assert_int_equal(ts_ok("2024-05-01T10:00"), MAY1_10 * SEC);
    assert_int_equal(ts_ok("2024-05-01T23:59:59"), (MAY1 + 86399) * SEC);
}

static void test_parse_fractions_one_to_nine_digits_truncate_to_micros(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t frac;
    } cases[] = {
        {"2024-05-01T10:00:00.1", 100000},
        {"2024-05-01T10:00:00.12", 120000},
        {"2024-05-01T10:00:00.123", 123000},
        {"2024-05-01T10:00:00.1234", 123400},
        {"2024-05-01T10:00:00.12345", 123450},
        {"2024-05-01T10:00:00.123456", 123456},
        {"2024-05-01T10:00:00.1234567", 123456},
        {"2024-05-01T10:00:00.12345678", 123456},
        {"2024-05-01T10:00:00.123456789", 123456},
        {"2024-05-01T10:00:00.999999999", 999999},
        {"2024-05-01T10:00:00.000001", 1},
        {"2024-05-01T10:00:00,5", 500000},
        {"2024-05-01 10:00:00.5Z", 500000},
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(cases); i++)
        assert_int_equal(ts_ok(cases[i].text), MAY1_10 * SEC + cases[i].frac);
}

static void test_parse_zone_forms(void **state)
{
    (void)state;
    assert_int_equal(ts_ok("2024-05-01T10:00:00Z"), MAY1_10 * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00z"), MAY1_10 * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00+00:00"), MAY1_10 * SEC);
    /* 10:00 at +02:00 is 08:00 UTC */
    assert_int_equal(ts_ok("2024-05-01T10:00:00+02:00"), (MAY1_10 - 7200) * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00+0200"), (MAY1_10 - 7200) * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00+02"), (MAY1_10 - 7200) * SEC);
    assert_int_equal(ts_ok("2024-05-01 10:00:00 +02:00"), (MAY1_10 - 7200) * SEC);
    /* 10:00 at -05:30 is 15:30 UTC */
    assert_int_equal(ts_ok("2024-05-01T10:00:00-0530"), (MAY1_10 + 19800) * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00-05:30"), (MAY1_10 + 19800) * SEC);
    /* the offset can move the date */
    assert_int_equal(ts_ok("2024-05-01T01:00:00+02:00"), (MAY1 - 3600) * SEC);
    assert_int_equal(ts_ok("2024-05-01T10:00:00.250+02:00"), (MAY1_10 - 7200) * SEC + 250000);
    assert_int_equal(ts_ok("2024-05-01T10:00+02:00"), (MAY1_10 - 7200) * SEC);
}

static void test_parse_http_date(void **state)
{
    (void)state;
    assert_int_equal(ts_ok("Sun, 06 Nov 1994 08:49:37 GMT"), INT64_C(784111777) * SEC);
    assert_int_equal(ts_ok("Wed, 01 May 2024 10:00:00 GMT"), MAY1_10 * SEC);
    ts_bad("Sun, 06 Foo 1994 08:49:37 GMT");
    ts_bad("Sun, 31 Feb 1994 08:49:37 GMT");
    ts_bad("Sun, 06 Nov 1994 08:49:37 UTC");
    ts_bad("Sun, 06 Nov 1994 24:49:37 GMT");
    ts_bad("Sun, 06 Nov 1994 08:49:37 GMTx");
    ts_bad("Sunday, 06-Nov-94 08:49:37 GMT");
}

static void test_parse_surrounding_space_is_ignored(void **state)
{
    (void)state;
    assert_int_equal(ts_ok("  2024-05-01T10:00:00Z \n"), MAY1_10 * SEC);
    assert_int_equal(ts_ok(" 2024-05-01\t"), MAY1 * SEC);
}

static void test_parse_reads_only_n_bytes(void **state)
{
    (void)state;
    const char *s = "2024-05-01T10:00:00Zjunk";
    int64_t us = 0;
    assert_int_equal(etl_ts_parse(s, 20, &us), 0);
    assert_int_equal(us, MAY1_10 * SEC);
    assert_int_equal(etl_ts_parse(s, 10, &us), 0);
    assert_int_equal(us, MAY1 * SEC);
    assert_int_equal(etl_ts_parse(s, strlen(s), &us), -1);
}

static void test_parse_leap_days(void **state)
{
    (void)state;
    assert_int_equal(ts_ok("2024-02-29"), INT64_C(1709164800) * SEC);
    assert_int_equal(ts_ok("2000-02-29"), INT64_C(951782400) * SEC);
    ts_bad("2023-02-29");
    ts_bad("1900-02-29"); /* divisible by 100, not by 400 */
    ts_bad("2100-02-29T00:00:00Z");
    ts_bad("2024-02-30");
}

static void test_parse_rejects_junk(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   ",
        "garbage",
        "2024",
        "2024-05",
        "2024-5-1",
        "24-05-01",
        "2024/05/01",
        "2024-13-01",
        "2024-00-10",
        "2024-05-00",
        "2024-05-32",
        "2024-04-31",
        "2024-05-01x",
        "2024-05-01Z",
        "2024-05-01T",
        "2024-05-01T10",
        "2024-05-01T1:00",
        "2024-05-01T24:00:00",
        "2024-05-01T10:60:00",
        "2024-05-01T10:00:61",
        "2024-05-01T10:00:00.",
        "2024-05-01T10:00:00.Z",
        "2024-05-01T10:00:00Zjunk",
        "2024-05-01T10:00:00 junk",
        "2024-05-01T10:00:00+2",
        "2024-05-01T10:00:00+24:00",
        "2024-05-01T10:00:00+02:60",
        "2024-05-01T10:00:00+02:0",
        "2024-05-01T10:00:00+02:00:00",
        "2024-05-01T10:00:00ZZ",
        "2024-05-01T10:00:00.123abc",
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(bad); i++)
        ts_bad(bad[i]);
}

static void test_parse_rejection_leaves_output_alone(void **state)
{
    (void)state;
    int64_t us = 777;
    assert_int_equal(etl_ts_parse("2024-13-01", 10, &us), -1);
    assert_int_equal(us, 777);
}

/* ------------------------------------------------------------ format */

static void fmt_is(int64_t us, const char *want)
{
    char buf[40];
    size_t n = etl_ts_format(us, buf, sizeof buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_format_iso_utc(void **state)
{
    (void)state;
    fmt_is(0, "1970-01-01T00:00:00Z");
    fmt_is(MAY1_10 * SEC, "2024-05-01T10:00:00Z");
    fmt_is(MAY1_10 * SEC + 123456, "2024-05-01T10:00:00.123456Z");
    fmt_is(MAY1_10 * SEC + 1, "2024-05-01T10:00:00.000001Z");
    fmt_is(INT64_C(253402300799) * SEC + 999999, "9999-12-31T23:59:59.999999Z");
}

static void test_format_before_1970(void **state)
{
    (void)state;
    fmt_is(-1, "1969-12-31T23:59:59.999999Z");
    fmt_is(-SEC, "1969-12-31T23:59:59Z");
    fmt_is(-SEC - 500000, "1969-12-31T23:59:58.500000Z");
    fmt_is(-86400 * SEC, "1969-12-31T00:00:00Z");
    fmt_is(INT64_C(-2208988800) * SEC, "1900-01-01T00:00:00Z");
    fmt_is(INT64_C(-62135596800) * SEC, "0001-01-01T00:00:00Z");
}

static void test_format_parse_round_trip(void **state)
{
    (void)state;
    const int64_t fixed[] = {
        0, 1, -1, 999999, -999999, SEC, -SEC, MAY1_10 * SEC + 42, -86400 * SEC + 1,
        INT64_C(951782400) * SEC,                /* 2000-02-29 */
        INT64_C(-2208988800) * SEC - 1,          /* just before 1900 */
        INT64_C(-62135596800) * SEC,             /* year 1 */
        INT64_C(253402300799) * SEC + 999999,    /* end of 9999 */
    };
    char buf[40];
    for (size_t i = 0; i < ETL_ARRAY_LEN(fixed); i++) {
        size_t n = etl_ts_format(fixed[i], buf, sizeof buf);
        int64_t back = 0;
        assert_int_equal(etl_ts_parse(buf, n, &back), 0);
        assert_int_equal(back, fixed[i]);
    }
    /* a spread over years 1..9999 */
    uint64_t x = 88172645463325252ULL;
    const int64_t lo = INT64_C(-62135596800) * SEC, span = INT64_C(253402300799) * SEC - lo;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t us = lo + (int64_t)(x % (uint64_t)span);
        size_t n = etl_ts_format(us, buf, sizeof buf);
        int64_t back = 0;
        assert_int_equal(etl_ts_parse(buf, n, &back), 0);
        assert_int_equal(back, us);
    }
}

/* ------------------------------------------------------------ format_like */

static void like_is(int64_t us, const char *example, const char *want)
{
    char buf[64];
    memset(buf, 'x', sizeof buf);
    size_t n = etl_ts_format_like(us, example, strlen(example), buf, sizeof buf);
    if (strcmp(buf, want) != 0)
        print_error("like '%s': want '%s', got '%s'\n", example, want, buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
    /* the result reads back as the same instant, up to the digits kept */
    int64_t back = 0;
    assert_int_equal(etl_ts_parse(buf, n, &back), 0);
}

static void test_like_keeps_separator(void **state)
{
    (void)state;
    const int64_t t = MAY1_10 * SEC;
    like_is(t, "2023-01-02T03:04:05", "2024-05-01T10:00:00");
    like_is(t, "2023-01-02 03:04:05", "2024-05-01 10:00:00");
    like_is(t, "2023-01-02 03:04:05Z", "2024-05-01 10:00:00Z");
}

static void test_like_keeps_fraction_digits(void **state)
{
    (void)state;
    const int64_t t = MAY1_10 * SEC + 123456;
    like_is(t, "2023-01-02T03:04:05Z", "2024-05-01T10:00:00Z");
    like_is(t, "2023-01-02T03:04:05.0Z", "2024-05-01T10:00:00.1Z");
    like_is(t, "2023-01-02 03:04:05.000", "2024-05-01 10:00:00.123");
    like_is(t, "2023-01-02T03:04:05.000000Z", "2024-05-01T10:00:00.123456Z");
    /* a whole second still gets its zeros */
    like_is(MAY1_10 * SEC, "2023-01-02T03:04:05.000Z", "2024-05-01T10:00:00.000Z");
}

static void test_like_keeps_zone_form(void **state)
{
    (void)state;
    const int64_t t = MAY1_10 * SEC;
    like_is(t, "2023-01-02T03:04:05Z", "2024-05-01T10:00:00Z");
    like_is(t, "2023-01-02T03:04:05", "2024-05-01T10:00:00");
    like_is(t, "2023-01-02T03:04:05+00:00", "2024-05-01T10:00:00+00:00");
    like_is(t, "2023-01-02T03:04:05.000+02:00", "2024-05-01T12:00:00.000+02:00");
}

static void test_like_offset_shifts_wall_time(void **state)
{
    (void)state;
    const int64_t t = MAY1_10 * SEC;
    like_is(t, "2023-01-02T03:04:05+02:00", "2024-05-01T12:00:00+02:00");
    like_is(t, "2023-01-02T03:04:05+0200", "2024-05-01T12:00:00+0200");
    like_is(t, "2023-01-02T03:04:05-0530", "2024-05-01T04:30:00-0530");
    like_is(t, "2023-01-02 03:04:05-05:30", "2024-05-01 04:30:00-05:30");
    /* across midnight */
    like_is((MAY1 + 23 * 3600 + 1800) * SEC, "2023-01-02T03:04:05+02:00",
            "2024-05-02T01:30:00+02:00");
    /* the written text parses back to the same instant */
    char buf[64];
    size_t n = etl_ts_format_like(t + 5, "2023-01-02T03:04:05.000000-0530", 31, buf, sizeof buf);
    int64_t back = 0;
    assert_int_equal(etl_ts_parse(buf, n, &back), 0);
    assert_int_equal(back, t + 5);
}

static void test_like_date_only(void **state)
{
    (void)state;
    like_is(MAY1_10 * SEC + 5, "2023-01-02", "2024-05-01");
    like_is(-1, "2023-01-02", "1969-12-31");
}

/* ------------------------------------------------------------ value text */

static void text_is(etl_value_t v, const char *want)
{
    char buf[64];
    const char *out = NULL;
    size_t n = etl_value_text(&v, buf, sizeof buf, &out);
    assert_non_null(out);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_value_text_null_bool_int(void **state)
{
    (void)state;
    char buf[8] = "junk";
    const char *out = NULL;
    etl_value_t v = etl_null();
    assert_int_equal(etl_value_text(&v, buf, sizeof buf, &out), 0);
    assert_ptr_equal(out, buf);
    assert_string_equal(buf, "");
    text_is(etl_bool(1), "true");
    text_is(etl_bool(0), "false");
    text_is(etl_bool(7), "true");
    text_is(etl_int(0), "0");
    text_is(etl_int(-42), "-42");
    text_is(etl_int(INT64_MAX), "9223372036854775807");
    text_is(etl_int(INT64_MIN), "-9223372036854775808");
}

static void test_value_text_double_is_shortest_round_trip(void **state)
{
    (void)state;
    text_is(etl_double(1.0), "1");
    text_is(etl_double(0.1), "0.1");
    text_is(etl_double(-2.5), "-2.5");
    text_is(etl_double(1e300), "1e+300");
    text_is(etl_double(0.1 + 0.2), "0.30000000000000004");
    text_is(etl_double(1.0 / 3.0), "0.3333333333333333");
    text_is(etl_double(123456789.125), "123456789.125");
    /* every text reads back as the same double */
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    char buf[64];
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        if (!isfinite(d))
            continue;
        etl_value_t v = etl_double(d);
        const char *out;
        size_t n = etl_value_text(&v, buf, sizeof buf, &out);
        assert_int_equal(n, strlen(buf));
        assert_true(strtod(buf, NULL) == d);
    }
}

static void test_value_text_timestamp_is_iso_utc(void **state)
{
    (void)state;
    text_is(etl_ts(MAY1_10 * SEC), "2024-05-01T10:00:00Z");
    text_is(etl_ts(MAY1_10 * SEC + 10), "2024-05-01T10:00:00.000010Z");
    text_is(etl_ts(-1), "1969-12-31T23:59:59.999999Z");
}

static void test_value_text_strings_point_at_own_bytes(void **state)
{
    (void)state;
    static const char bytes[] = "ab\0cd:0.10";
    char buf[8];
    const etl_type_t types[] = {ETL_T_TEXT, ETL_T_NUMERIC, ETL_T_BLOB, ETL_T_JSON};
    for (size_t i = 0; i < ETL_ARRAY_LEN(types); i++) {
        etl_value_t v = etl_str(types[i], bytes, 10);
        const char *out = NULL;
        assert_int_equal(etl_value_text(&v, buf, sizeof buf, &out), 10);
        assert_ptr_equal(out, bytes); /* no copy, no NUL scan, no truncation */
    }
    etl_value_t empty = etl_str(ETL_T_TEXT, NULL, 0);
    const char *out = NULL;
    assert_int_equal(etl_value_text(&empty, buf, sizeof buf, &out), 0);
    assert_non_null(out);
    text_is(etl_str(ETL_T_NUMERIC, "0.10", 4), "0.10");
}

static void test_value_text_truncates_to_buffer(void **state)
{
    (void)state;
    char buf[5];
    const char *out;
    etl_value_t v = etl_int(123456789);
    size_t n = etl_value_text(&v, buf, sizeof buf, &out);
    assert_int_equal(n, 9); /* the full length, like snprintf */
    assert_string_equal(buf, "1234");
}

/* ------------------------------------------------------------ type names */

static void test_type_names_round_trip(void **state)
{
    (void)state;
    static const char *const want[] = {"null", "bool", "int", "double", "numeric",
                                       "text", "blob", "json", "timestamp"};
    assert_int_equal(ETL_ARRAY_LEN(want), ETL_T_COUNT_);
    for (int t = 0; t < ETL_T_COUNT_; t++) {
        assert_string_equal(etl_type_name((etl_type_t)t), want[t]);
        assert_int_equal(etl_type_from_name(want[t]), t);
    }
    assert_string_equal(etl_type_name(ETL_T_COUNT_), "?");
    assert_string_equal(etl_type_name((etl_type_t)-1), "?");
    assert_string_equal(etl_type_name((etl_type_t)1000), "?");
    assert_int_equal(etl_type_from_name("?"), -1);
    assert_int_equal(etl_type_from_name(""), -1);
    assert_int_equal(etl_type_from_name("Text"), -1);
    assert_int_equal(etl_type_from_name("integer"), -1);
    assert_int_equal(etl_type_from_name("timestamps"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_date_only_is_midnight_utc),
        cmocka_unit_test(test_parse_space_or_t_separator),
        cmocka_unit_test(test_parse_fractions_one_to_nine_digits_truncate_to_micros),
        cmocka_unit_test(test_parse_zone_forms),
        cmocka_unit_test(test_parse_http_date),
        cmocka_unit_test(test_parse_surrounding_space_is_ignored),
        cmocka_unit_test(test_parse_reads_only_n_bytes),
        cmocka_unit_test(test_parse_leap_days),
        cmocka_unit_test(test_parse_rejects_junk),
        cmocka_unit_test(test_parse_rejection_leaves_output_alone),
        cmocka_unit_test(test_format_iso_utc),
        cmocka_unit_test(test_format_before_1970),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_like_keeps_separator),
        cmocka_unit_test(test_like_keeps_fraction_digits),
        cmocka_unit_test(test_like_keeps_zone_form),
        cmocka_unit_test(test_like_offset_shifts_wall_time),
        cmocka_unit_test(test_like_date_only),
        cmocka_unit_test(test_value_text_null_bool_int),
        cmocka_unit_test(test_value_text_double_is_shortest_round_trip),
        cmocka_unit_test(test_value_text_timestamp_is_iso_utc),
        cmocka_unit_test(test_value_text_strings_point_at_own_bytes),
        cmocka_unit_test(test_value_text_truncates_to_buffer),
        cmocka_unit_test(test_type_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
