/* test_cron.c - cron expressions (core/cron.h): every syntax form and
 * error, next() on known dates, DST in real zones, a randomized check of
 * next() against a plain minute-by-minute search, and the `schedule: cron`
 * errors of the pipeline loader with their columns. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "cron.h"

#define B(n) ((uint64_t)1 << (n))
/* Bits a..b. */
#define SPAN(a, b) ((~(uint64_t)0 >> (63 - (b))) & (~(uint64_t)0 << (a)))
#define ALL_MIN SPAN(0, 59)
#define ALL_HOUR SPAN(0, 23)
#define ALL_DOM SPAN(1, 31)
#define ALL_MON SPAN(1, 12)
#define ALL_DOW SPAN(0, 6)

#define DAY 86400
#define YEAR (365 * DAY)

/* The instant of a UTC wall-clock time. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm);
}

static void parse_ok(const char *expr, etl_cron_t *c)
{
    char err[256] = "";
    size_t pos = 99;
    int rc = etl_cron_parse(expr, c, &pos, err, sizeof err);
    if (rc != 0)
        print_error("'%s': unexpected error at %zu: %s\n", expr, pos, err);
    assert_int_equal(rc, 0);
}

static char *fmt_time(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t < 0 || !gmtime_r(&tt, &tm))
        snprintf(buf, n, "%lld", (long long)t);
    else
        strftime(buf, n, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

static void expect_next(const char *expr, int64_t after, int64_t want, int utc_flag)
{
    etl_cron_t c;
    parse_ok(expr, &c);
    int64_t got = etl_cron_next(&c, after, utc_flag);
    if (got != want) {
        char a[64], w[64], g[64];
        print_error("'%s' after %s: want %s, got %s\n", expr, fmt_time(after, a, sizeof a),
                    fmt_time(want, w, sizeof w), fmt_time(got, g, sizeof g));
    }
    assert_int_equal(got, want);
}

/* ------------------------------------------------------------ syntax */

static void test_every_syntax_form(void **state)
{
    (void)state;
    static const struct {
        const char *expr;
        uint64_t minute, hour, dom, month, dow;
        int dom_star, dow_star;
    } cases[] = {
        {"* * * * *", ALL_MIN, ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"5 4 3 2 1", B(5), B(4), B(3), B(2), B(1), 0, 0},
        {"59 23 31 12 6", B(59), B(23), B(31), B(12), B(6), 0, 0},
        {"0 0 1 1 0", B(0), B(0), B(1), B(1), B(0), 0, 0},
        {"1,2,5-7 * * * *", B(1) | B(2) | SPAN(5, 7), ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"*/15 * * * *", B(0) | B(15) | B(30) | B(45), ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"10-30/10 * * * *", B(10) | B(20) | B(30), ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"5/20 * * * *", B(5) | B(25) | B(45), ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"*,5 * * * *", ALL_MIN, ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"0 9-17/4 * * *", B(0), B(9) | B(13) | B(17), ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"0 0 1-31/10 * *", B(0), B(0), B(1) | B(11) | B(21) | B(31), ALL_MON, ALL_DOW, 0, 1},
        {"0 0 */2 * *", B(0), B(0), 0xaaaaaaaaull, ALL_MON, ALL_DOW, 1, 1},
        {"0 0 * jan,JUL-Sep *", B(0), B(0), ALL_DOM, B(1) | SPAN(7, 9), ALL_DOW, 1, 1},
        {"0 0 * Dec *", B(0), B(0), ALL_DOM, B(12), ALL_DOW, 1, 1},
        {"0 0 * feb-nov/3 *", B(0), B(0), ALL_DOM, B(2) | B(5) | B(8) | B(11), ALL_DOW, 1, 1},
        {"0 0 * * Mon-FRI", B(0), B(0), ALL_DOM, ALL_MON, SPAN(1, 5), 1, 0},
        {"0 0 * * sat,SUN", B(0), B(0), ALL_DOM, ALL_MON, B(6) | B(0), 1, 0},
        {"0 0 * * 7", B(0), B(0), ALL_DOM, ALL_MON, B(0), 1, 0},
        {"0 0 * * 5-7", B(0), B(0), ALL_DOM, ALL_MON, B(5) | B(6) | B(0), 1, 0},
        {"0 0 * * fri-sun", B(0), B(0), ALL_DOM, ALL_MON, B(5) | B(6) | B(0), 1, 0},
        {"0 0 * * 0-7", B(0), B(0), ALL_DOM, ALL_MON, ALL_DOW, 1, 0},
        {"0 0 * * */2", B(0), B(0), ALL_DOM, ALL_MON, B(0) | B(2) | B(4) | B(6), 1, 1},
        {"0 0 * * mon/2", B(0), B(0), ALL_DOM, ALL_MON, B(1) | B(3) | B(5), 1, 0},
        {"  0\t0   1 1 *  ", B(0), B(0), B(1), B(1), ALL_DOW, 0, 1},
        {"00 007 01 * *", B(0), B(7), B(1), ALL_MON, ALL_DOW, 0, 1},
        {"@yearly", B(0), B(0), B(1), B(1), ALL_DOW, 0, 1},
        {"@annually", B(0), B(0), B(1), B(1), ALL_DOW, 0, 1},
        {"@monthly", B(0), B(0), B(1), ALL_MON, ALL_DOW, 0, 1},
        {"@weekly", B(0), B(0), ALL_DOM, ALL_MON, B(0), 1, 0},
        {"@daily", B(0), B(0), ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {"@midnight", B(0), B(0), ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
        {" @HOURLY ", B(0), ALL_HOUR, ALL_DOM, ALL_MON, ALL_DOW, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        etl_cron_t c;
        parse_ok(cases[i].expr, &c);
        if (c.minute != cases[i].minute || c.hour != cases[i].hour || c.dom != cases[i].dom ||
            c.month != cases[i].month || c.dow != cases[i].dow ||
            c.dom_star != cases[i].dom_star || c.dow_star != cases[i].dow_star)
            print_error("'%s': minute %llx hour %x dom %x month %x dow %x stars %d %d\n",
                        cases[i].expr, (unsigned long long)c.minute, c.hour, c.dom, c.month,
                        c.dow, c.dom_star, c.dow_star);
        assert_true(c.minute == cases[i].minute);
        assert_true(c.hour == cases[i].hour);
        assert_true(c.dom == cases[i].dom);
        assert_true(c.month == cases[i].month);
        assert_true(c.dow == cases[i].dow);
        assert_int_equal(c.dom_star, cases[i].dom_star);
        assert_int_equal(c.dow_star, cases[i].dow_star);
    }
}

static void test_every_error(void **state)
{
    (void)state;
    static const struct {
        const char *expr;
        size_t pos;
        const char *msg;
    } cases[] = {
        {"", 0, "it is empty"},
        {"   \t ", 0, "it is empty"},
        {"*", 1, "only 1 field: the hour field is missing"},
        {"* * * *", 7, "only 4 fields: the weekday field is missing"},
        {"* * * *   ", 10, "only 4 fields: the weekday field is missing"},
        {"* * * * * *", 10, "6 fields, not 5: '*' follows the weekday field"},
        {"0 0 1 1 * 2024 x", 10, "7 fields, not 5: '2024' follows the weekday field"},
        {"60 * * * *", 0, "minute field '60': 60 is out of range 0-59"},
        {"* 24 * * *", 2, "hour field '24': 24 is out of range 0-23"},
        {"* * 0 * *", 4, "day field '0': 0 is out of range 1-31"},
        {"* * 32 * *", 4, "day field '32': 32 is out of range 1-31"},
        {"* * * 13 *", 6, "month field '13': 13 is out of range 1-12"},
        {"* * * 0 *", 6, "month field '0': 0 is out of range 1-12"},
        {"* * * * 8", 8, "weekday field '8': 8 is out of range 0-7"},
        {"1,2,61 * * * *", 0, "minute field '1,2,61': 61 is out of range 0-59"},
        {"99999999999 * * * *", 0, "99999999999 is out of range 0-59"},
        {"*/0 * * * *", 0, "minute field '*/0': step 0 is out of range 1-59"},
        {"* */24 * * *", 2, "hour field '*/24': step 24 is out of range 1-23"},
        {"* * * * mon-fri/7", 8, "step 7 is out of range 1-6"},
        {"1-5/0 * * * *", 0, "step 0 is out of range 1-59"},
        {"5-1 * * * *", 0, "minute field '5-1': range 5-1 is reversed"},
        {"* * * dec-jan *", 6, "range dec-jan is reversed"},
        {"* * * * sat-mon", 8, "range sat-mon is reversed"},
        {"* * * foo *", 6, "month field 'foo': unknown name 'foo' (jan-dec)"},
        {"* * * january *", 6, "unknown name 'january' (jan-dec)"},
        {"* * * * funday", 8, "weekday field 'funday': unknown name 'funday' (sun-sat)"},
        {"* * * * mo", 8, "unknown name 'mo' (sun-sat)"},
        {"* * * * jan", 8, "unknown name 'jan' (sun-sat)"},
        {"* * * mon *", 6, "unknown name 'mon' (jan-dec)"},
        {"every hour", 0, "minute field 'every': 'every' is not a number"},
        {"0 noon * * *", 2, "hour field 'noon': 'noon' is not a number"},
        {"1, * * * *", 0, "minute field '1,': empty list item"},
        {"1,,2 * * * *", 0, "empty list item"},
        {",1 * * * *", 0, "empty list item"},
        {"* * * * 1,", 8, "weekday field '1,': empty list item"},
        {"* * * jan, *", 6, "empty list item"},
        {"1- * * * *", 0, "minute field '1-': it ends too early"},
        {"*/ * * * *", 0, "it ends too early"},
        {"1-2-3 * * * *", 0, "unexpected '-'"},
        {"*-5 * * * *", 0, "unexpected '-'"},
        {"-1 * * * *", 0, "unexpected '-'"},
        {"5x * * * *", 0, "unexpected 'x'"},
        {"*/1x * * * *", 0, "unexpected 'x'"},
        {"? * * * *", 0, "unexpected '?'"},
        {"* * L * *", 4, "'L' is not a number"},
        {"* * * * \x01", 8, "unexpected byte 0x01"},
        {"* * * * \xc3\xa9", 8, "unexpected byte 0xc3"},
        {"@reboot", 0, "unknown shorthand '@reboot'"},
        {"@", 0, "unknown shorthand '@'"},
        {"@daily 0", 7, "'@daily' takes no fields after it"},
        {"  @weekly x", 10, "'@weekly' takes no fields after it"},
        {"0 @daily * * *", 2, "unexpected '@'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        etl_cron_t c;
        memset(&c, 0xff, sizeof c);
        char err[256] = "";
        size_t pos = 12345;
        int rc = etl_cron_parse(cases[i].expr, &c, &pos, err, sizeof err);
        if (rc != -1 || pos != cases[i].pos || !strstr(err, cases[i].msg))
            print_error("'%s': rc %d at %zu: %s\n  (wanted at %zu: %s)\n", cases[i].expr, rc, pos,
                        err, cases[i].pos, cases[i].msg);
        assert_int_equal(rc, -1);
        assert_int_equal(pos, cases[i].pos);
        assert_non_null(strstr(err, cases[i].msg));
    }
}

static void test_error_buffer_is_optional_and_bounded(void **state)
{
    (void)state;
    etl_cron_t c;
    assert_int_equal(etl_cron_parse("61 * * * *", &c, NULL, NULL, 0), -1);
    char small[8];
    size_t pos;
    assert_int_equal(etl_cron_parse("* * 61 * *", &c, &pos, small, sizeof small), -1);
    assert_int_equal(pos, 4);
    assert_int_equal(strlen(small), sizeof small - 1);
    /* a long field is quoted back shortened */
    char big[300], err[512];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(etl_cron_parse(big, &c, &pos, err, sizeof err), -1);
    assert_true(strlen(err) < 150);
    /* success leaves the message empty */
    strcpy(err, "old");
    assert_int_equal(etl_cron_parse("* * * * *", &c, &pos, err, sizeof err), 0);
    assert_string_equal(err, "");
}

/* ------------------------------------------------------------ next(), UTC */

static void test_next_minutes_and_steps(void **state)
{
    (void)state;
    expect_next("*/15 * * * *", utc(2024, 1, 1, 0, 0), utc(2024, 1, 1, 0, 15), 1);
    expect_next("*/15 * * * *", utc(2024, 1, 1, 0, 14) + 59, utc(2024, 1, 1, 0, 15), 1);
    /* strictly after: a matching `after` is not returned */
    expect_next("*/15 * * * *", utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 30), 1);
    expect_next("*/15 * * * *", utc(2024, 1, 1, 23, 50), utc(2024, 1, 2, 0, 0), 1);
    expect_next("* * * * *", utc(2024, 1, 1, 10, 0) + 30, utc(2024, 1, 1, 10, 1), 1);
    expect_next("0 9-17/4 * * *", utc(2024, 1, 1, 10, 0), utc(2024, 1, 1, 13, 0), 1);
    expect_next("0 9-17/4 * * *", utc(2024, 1, 1, 13, 0), utc(2024, 1, 1, 17, 0), 1);
    expect_next("0 9-17/4 * * *", utc(2024, 1, 1, 17, 0), utc(2024, 1, 2, 9, 0), 1);
    expect_next("10-30/10 8 * * *", utc(2024, 1, 1, 8, 25), utc(2024, 1, 1, 8, 30), 1);
    expect_next("10-30/10 8 * * *", utc(2024, 1, 1, 8, 30), utc(2024, 1, 2, 8, 10), 1);
    expect_next("@hourly", utc(2024, 5, 5, 10, 59) + 59, utc(2024, 5, 5, 11, 0), 1);
    expect_next("@hourly", utc(2024, 5, 5, 11, 0), utc(2024, 5, 5, 12, 0), 1);
    expect_next("@daily", utc(2024, 5, 5, 11, 0), utc(2024, 5, 6, 0, 0), 1);
    expect_next("@weekly", utc(2024, 9, 1, 0, 0), utc(2024, 9, 8, 0, 0), 1); /* Sunday to Sunday */
    expect_next("@monthly", utc(2024, 1, 31, 12, 0), utc(2024, 2, 1, 0, 0), 1);
}

static void test_next_month_ends_and_years(void **state)
{
    (void)state;
    /* months without the day are skipped */
    expect_next("0 12 31 * *", utc(2024, 4, 1, 0, 0), utc(2024, 5, 31, 12, 0), 1);
    expect_next("0 0 30 * *", utc(2024, 1, 31, 0, 0), utc(2024, 3, 30, 0, 0), 1);
    expect_next("59 23 31 * *", utc(2024, 7, 31, 23, 59), utc(2024, 8, 31, 23, 59), 1);
    /* year rollover */
    expect_next("0 0 1 1 *", utc(2023, 12, 31, 23, 59) + 30, utc(2024, 1, 1, 0, 0), 1);
    expect_next("@yearly", utc(2024, 1, 1, 0, 0), utc(2025, 1, 1, 0, 0), 1);
    expect_next("*/30 * * * *", utc(2024, 12, 31, 23, 45), utc(2025, 1, 1, 0, 0), 1);
    expect_next("0 0 * feb *", utc(2024, 3, 1, 0, 0), utc(2025, 2, 1, 0, 0), 1);
    /* leap years: every 4, not 100, again 400 */
    expect_next("0 0 29 2 *", utc(2023, 6, 1, 0, 0), utc(2024, 2, 29, 0, 0), 1);
    expect_next("0 0 29 2 *", utc(2024, 2, 29, 0, 0), utc(2028, 2, 29, 0, 0), 1);
    expect_next("0 0 29 2 *", utc(2399, 3, 1, 0, 0), utc(2400, 2, 29, 0, 0), 1);
    expect_next("0 0 29 2 *", utc(2096, 3, 1, 0, 0), -1, 1); /* 2100 is not: 8 years */
    expect_next("0 0 28-31 2 *", utc(2023, 2, 28, 0, 0), utc(2024, 2, 28, 0, 0), 1);
    expect_next("0 0 28-31 2 *", utc(2024, 2, 28, 0, 0), utc(2024, 2, 29, 0, 0), 1);
    /* never */
    expect_next("30 2 31 2 *", utc(2024, 1, 1, 0, 0), -1, 1);
    expect_next("0 0 31 4,6,9,11 *", utc(2024, 1, 1, 0, 0), -1, 1);
    expect_next("0 0 30 feb *", utc(2024, 1, 1, 0, 0), -1, 1);
    /* but a weekday makes them possible again (OR rule) */
    expect_next("0 0 30 2 mon", utc(2024, 1, 1, 0, 0), utc(2024, 2, 5, 0, 0), 1);
    /* before 1970, and the edges of the supported range */
    expect_next("0 0 1 1 *", utc(1969, 12, 31, 12, 0), 0, 1);
    expect_next("0 0 * * *", utc(1900, 3, 1, 0, 0), utc(1900, 3, 2, 0, 0), 1);
    expect_next("0 0 1 1 *", utc(9999, 6, 1, 0, 0), -1, 1);
    etl_cron_t c;
    parse_ok("* * * * *", &c);
    assert_int_equal(etl_cron_next(&c, INT64_MAX, 1), -1);
    assert_int_equal(etl_cron_next(&c, INT64_MIN, 1), -1);
    assert_int_equal(etl_cron_next(&c, INT64_MAX, 0), -1);
}

static void test_next_day_of_month_or_weekday(void **state)
{
    (void)state;
    /* Both restricted: the 13th or any Friday. September 2024 starts on a Sunday. */
    const char *e = "0 0 13 * 5";
    expect_next(e, utc(2024, 9, 1, 0, 0), utc(2024, 9, 6, 0, 0), 1);
    expect_next(e, utc(2024, 9, 6, 0, 0), utc(2024, 9, 13, 0, 0), 1);
    expect_next(e, utc(2024, 9, 13, 0, 0), utc(2024, 9, 20, 0, 0), 1);
    expect_next(e, utc(2024, 10, 11, 0, 0), utc(2024, 10, 13, 0, 0), 1); /* a Sunday */
    expect_next(e, utc(2024, 10, 13, 0, 0), utc(2024, 10, 18, 0, 0), 1);
    /* One side starts with '*': both must match (odd days that are Mondays). */
    expect_next("0 0 */2 * 1", utc(2024, 9, 1, 0, 0), utc(2024, 9, 9, 0, 0), 1);
    expect_next("0 0 */2 * 1", utc(2024, 9, 9, 0, 0), utc(2024, 9, 23, 0, 0), 1);
    expect_next("0 0 1 * */2", utc(2024, 9, 2, 0, 0), utc(2024, 10, 1, 0, 0), 1); /* a Tuesday */
    expect_next("0 0 1 * */2", utc(2024, 10, 1, 0, 0), utc(2024, 12, 1, 0, 0), 1); /* a Sunday */
    /* Only one restricted. */
    expect_next("0 0 * * 1", utc(2024, 9, 1, 0, 0), utc(2024, 9, 2, 0, 0), 1);
    expect_next("0 0 1 * *", utc(2024, 9, 1, 0, 0), utc(2024, 10, 1, 0, 0), 1);
    /* Sunday as 0, 7 and sun */
    expect_next("0 0 * * 7", utc(2024, 9, 2, 0, 0), utc(2024, 9, 8, 0, 0), 1);
    expect_next("0 0 * * sun", utc(2024, 9, 2, 0, 0), utc(2024, 9, 8, 0, 0), 1);
    expect_next("0 0 * * fri-sun", utc(2024, 9, 2, 0, 0), utc(2024, 9, 6, 0, 0), 1);
    expect_next("0 0 * * mon-fri", utc(2024, 9, 6, 0, 0), utc(2024, 9, 9, 0, 0), 1);
}

static void test_next_jumps_instead_of_walking(void **state)
{
    (void)state;
    /* Each of these would be 2.6 million minutes to walk; together they
     * must take well under a second even under valgrind. */
    static const char *const exprs[] = {"30 2 31 2 *", "0 0 29 2 *", "59 23 31 12 *",
                                        "0 0 13 2 5", "0 0 31 4,6,9,11 *"};
    clock_t start = clock();
    for (int round = 0; round < 200; round++)
        for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
            etl_cron_t c;
            parse_ok(exprs[i], &c);
            (void)etl_cron_next(&c, utc(2025, 3, 1, 0, 0) + round * 977, 1);
        }
    double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
    if (secs > 5)
        print_error("1000 searches took %.1fs\n", secs);
    assert_true(secs < 5);
}

/* ------------------------------------------------------------ DST */

static char *saved_tz;
static int had_tz;

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static int tz_setup(void **state)
{
    (void)state;
    const char *tz = getenv("TZ");
    had_tz = tz != NULL;
    saved_tz = tz ? strdup(tz) : NULL;
    return 0;
}

static int tz_teardown(void **state)
{
    (void)state;
    if (had_tz)
        setenv("TZ", saved_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    free(saved_tz);
    saved_tz = NULL;
    return 0;
}

static void test_dst_new_york(void **state)
{
    (void)state;
    set_tz("America/New_York");
    /* 2024-03-10: 02:00 EST (07:00Z) becomes 03:00 EDT. 02:30 does not exist
     * that day and is skipped. */
    expect_next("30 2 * * *", utc(2024, 3, 9, 8, 0), utc(2024, 3, 11, 6, 30), 0);
    expect_next("*/15 * * * *", utc(2024, 3, 10, 6, 45), utc(2024, 3, 10, 7, 0), 0);
    expect_next("0 * * * *", utc(2024, 3, 10, 6, 0), utc(2024, 3, 10, 7, 0), 0);
    expect_next("0 3 * * *", utc(2024, 3, 10, 5, 0), utc(2024, 3, 10, 7, 0), 0);
    expect_next("0 2-3 * * *", utc(2024, 3, 10, 5, 0), utc(2024, 3, 10, 7, 0), 0);
    /* 2024-11-03: 02:00 EDT (06:00Z) becomes 01:00 EST. 01:30 happens twice
     * (05:30Z EDT, 06:30Z EST) and runs at the first. */
    expect_next("30 1 * * *", utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 5, 30), 0);
    expect_next("30 1 * * *", utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30), 0);
    /* from inside the second pass, the repeated times are not run again */
    expect_next("30 1 * * *", utc(2024, 11, 3, 6, 10), utc(2024, 11, 4, 6, 30), 0);
    expect_next("*/15 * * * *", utc(2024, 11, 3, 5, 45), utc(2024, 11, 3, 7, 0), 0);
    expect_next("*/15 * * * *", utc(2024, 11, 3, 6, 20), utc(2024, 11, 3, 7, 0), 0);
    expect_next("0 * * * *", utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 5, 0), 0);
    expect_next("0 * * * *", utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 7, 0), 0);
    expect_next("0 2 * * *", utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 7, 0), 0);
    /* ordinary days are in local time */
    expect_next("0 9 * * *", utc(2024, 7, 1, 0, 0), utc(2024, 7, 1, 13, 0), 0);
    expect_next("0 9 * * *", utc(2024, 1, 15, 0, 0), utc(2024, 1, 15, 14, 0), 0);
    /* the local date decides the day: 21:00 EDT Sunday is 01:00Z Monday */
    expect_next("0 21 * * sun", utc(2024, 9, 1, 0, 0), utc(2024, 9, 2, 1, 0), 0);
    /* utc ignores TZ */
    expect_next("30 2 * * *", utc(2024, 3, 10, 0, 0), utc(2024, 3, 10, 2, 30), 1);
}

static void test_dst_london(void **state)
{
    (void)state;
    set_tz("Europe/London");
    /* 2024-03-31: 01:00 GMT becomes 02:00 BST; 01:30 is skipped. */
    expect_next("30 1 * * *", utc(2024, 3, 30, 12, 0), utc(2024, 4, 1, 0, 30), 0);
    expect_next("0,30 * * * *", utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 0), 0);
    /* 2024-10-27: 02:00 BST becomes 01:00 GMT; 01:30 runs once, in BST. */
    expect_next("30 1 * * *", utc(2024, 10, 26, 12, 0), utc(2024, 10, 27, 0, 30), 0);
    expect_next("30 1 * * *", utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30), 0);
    expect_next("@daily", utc(2024, 10, 26, 12, 0), utc(2024, 10, 26, 23, 0), 0);
    expect_next("@daily", utc(2024, 10, 26, 23, 0), utc(2024, 10, 28, 0, 0), 0);
}

/* ------------------------------------------------------------ randomized */

/* An expression built from random parts, with the sets it means worked out
 * here, independently of the parser. */
typedef struct gen {
    char expr[320];
    uint64_t set[5];
    int dom_star, dow_star;
} gen_t;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int rnd_in(int lo, int hi)
{
    return lo + (int)(rnd() % (uint32_t)(hi - lo + 1));
}

static const int gen_lo[5] = {0, 0, 1, 1, 0};
static const int gen_hi[5] = {59, 23, 31, 12, 6};
static const char *const gen_months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const gen_days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"};

static void put(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void put(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* v as a number or, for months and weekdays, sometimes a name in any case. */
static void put_value(char *buf, size_t cap, int f, int v, int may_name)
{
    const char *name = NULL;
    if (f == 3 && rnd() % 3 == 0)
        name = gen_months[v - 1];
    else if (f == 4 && may_name && rnd() % 3 == 0)
        name = gen_days[v];
    if (!name) {
        put(buf, cap, rnd() % 8 == 0 ? "0%d" : "%d", v);
        return;
    }
    char w[4];
    for (int i = 0; i < 3; i++)
        w[i] = rnd() % 2 ? (char)(name[i] - 'a' + 'A') : name[i];
    w[3] = '\0';
    put(buf, cap, "%s", w);
}

/* night: hours written as numbers are 0-3, where DST transitions happen */
static uint64_t gen_field(int f, char *buf, size_t cap, int *star, int night)
{
    int lo = gen_lo[f], hi = gen_hi[f], top = f == 4 ? 7 : f == 1 && night ? 3 : hi;
    uint64_t set = 0;
    int items = (f >= 2 && rnd() % 2 == 0) ? 1 : rnd_in(1, 3);
    if (f >= 2 && rnd() % 2 == 0) { /* days and months: often all */
        put(buf, cap, "*");
        *star = 1;
        return f == 2 ? ALL_DOM : f == 3 ? ALL_MON : ALL_DOW;
    }
    *star = 0;
    for (int k = 0; k < items; k++) {
        int a, b, step = 1, form = rnd_in(0, 5);
        if (k > 0)
            put(buf, cap, ",");
        switch (form) {
        case 0: /* * */
        case 1: /* * /n */
            a = lo;
            b = hi;
            put(buf, cap, "*");
            if (form == 1) {
                step = rnd_in(1, hi - lo);
                put(buf, cap, "/%d", step);
            }
            if (k == 0)
                *star = 1;
            break;
        case 2: /* a */
            a = b = rnd_in(lo, top);
            put_value(buf, cap, f, a, a < 7);
            break;
        case 3: /* a-b, a-b/n */
        case 4:
            a = rnd_in(lo, top);
            b = rnd_in(a, top);
            put_value(buf, cap, f, a, a < 7);
            put(buf, cap, "-");
            put_value(buf, cap, f, b, b < 7 || a > 0); /* sun ends a range as 7 */
            if (form == 4) {
                step = rnd_in(1, hi - lo);
                put(buf, cap, "/%d", step);
            }
            break;
        default: /* a/n: a to the end */
            a = rnd_in(lo, top);
            b = a > hi ? a : hi;
            step = rnd_in(1, hi - lo);
            put_value(buf, cap, f, a, a < 7);
            put(buf, cap, "/%d", step);
            break;
        }
        for (int v = a; v <= b; v += step)
            set |= B(f == 4 ? v % 7 : v);
    }
    return set;
}

static void gen_expr(gen_t *g, int night)
{
    g->expr[0] = '\0';
    int star;
    for (int f = 0; f < 5; f++) {
        if (f > 0)
            put(g->expr, sizeof g->expr, rnd() % 5 == 0 ? " \t " : " ");
        g->set[f] = gen_field(f, g->expr, sizeof g->expr, &star, night);
        if (f == 2)
            g->dom_star = star;
        if (f == 4)
            g->dow_star = star;
    }
}

static int gen_day_ok(const gen_t *g, const struct tm *tm)
{
    if (!(g->set[3] & B(tm->tm_mon + 1)))
        return 0;
    int dom = (g->set[2] >> tm->tm_mday) & 1, dow = (g->set[4] >> tm->tm_wday) & 1;
    return (g->dom_star || g->dow_star) ? dom && dow : dom || dow;
}

static int64_t floor_minute(int64_t t)
{
    return t >= 0 ? t - t % 60 : t - ((t % 60) + 60) % 60;
}

/* Minute by minute in UTC (a day that does not match is passed whole). */
static int64_t brute_utc(const gen_t *g, int64_t after, int64_t horizon)
{
    for (int64_t t = floor_minute(after) + 60; t <= after + horizon;) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        if (!gen_day_ok(g, &tm)) {
            t += DAY - tm.tm_hour * 3600 - tm.tm_min * 60;
            continue;
        }
        if ((g->set[1] & B(tm.tm_hour)) && (g->set[0] & B(tm.tm_min)))
            return t;
        t += 60;
    }
    return -1;
}

/* Minute by minute in local time, for zones whose offsets are whole hours:
 * a wall-clock reading already seen an hour earlier (the second pass of a
 * fall back) does not count; a skipped one is never seen. */
static int64_t brute_local(const gen_t *g, int64_t after, int64_t horizon)
{
    for (int64_t t = floor_minute(after) + 60; t <= after + horizon;) {
        time_t tt = (time_t)t, prev = (time_t)(t - 3600);
        struct tm tm, pm;
        localtime_r(&tt, &tm);
        if (!gen_day_ok(g, &tm) || !(g->set[1] & B(tm.tm_hour))) {
            t += 3600 - tm.tm_min * 60; /* to the next hour */
            continue;
        }
        if (g->set[0] & B(tm.tm_min)) {
            localtime_r(&prev, &pm);
            if (!(pm.tm_mday == tm.tm_mday && pm.tm_hour == tm.tm_hour && pm.tm_min == tm.tm_min))
                return t;
        }
        t += 60;
    }
    return -1;
}

static void check_against_brute(const gen_t *g, int64_t after, int64_t horizon, int utc_flag)
{
    etl_cron_t c;
    parse_ok(g->expr, &c);
    if (c.minute != g->set[0] || c.hour != g->set[1] || c.dom != g->set[2] ||
        c.month != g->set[3] || c.dow != g->set[4] || c.dom_star != g->dom_star ||
        c.dow_star != g->dow_star)
        print_error("'%s' parsed differently from what was generated\n", g->expr);
    assert_true(c.minute == g->set[0] && c.hour == g->set[1] && c.dom == g->set[2]);
    assert_true(c.month == g->set[3] && c.dow == g->set[4]);
    assert_int_equal(c.dom_star, g->dom_star);
    assert_int_equal(c.dow_star, g->dow_star);
    int64_t want = utc_flag ? brute_utc(g, after, horizon) : brute_local(g, after, horizon);
    int64_t got = etl_cron_next(&c, after, utc_flag);
    int ok = want >= 0 ? got == want : (got == -1 || got > after + horizon);
    if (!ok) {
        char a[64], w[64], gt[64];
        print_error("'%s' after %s (%lld, %s): want %s, got %s\n", g->expr,
                    fmt_time(after, a, sizeof a), (long long)after, utc_flag ? "UTC" : "local",
                    fmt_time(want, w, sizeof w), fmt_time(got, gt, sizeof gt));
    }
    assert_true(ok);
}

static void test_random_expressions_match_brute_force_utc(void **state)
{
    (void)state;
    for (int i = 0; i < 3000; i++) {
        gen_t g;
        gen_expr(&g, 0);
        /* 1970..2096, at any second */
        int64_t after = (int64_t)(((uint64_t)rnd() << 16 | rnd()) % 4000000000ull);
        check_against_brute(&g, after, 2 * YEAR, 1);
        /* and the next one after that, from the exact match */
        int64_t t = brute_utc(&g, after, 2 * YEAR);
        if (t >= 0)
            check_against_brute(&g, t, 2 * YEAR, 1);
    }
}

/* The instant the local UTC offset changes within [from, to), found by
 * bisection; -1 when it does not change there. */
static int64_t transition_between(int64_t from, int64_t to)
{
    time_t a = (time_t)from, b = (time_t)to;
    struct tm ta, tb;
    localtime_r(&a, &ta);
    localtime_r(&b, &tb);
    if (ta.tm_gmtoff == tb.tm_gmtoff)
        return -1;
    long off = ta.tm_gmtoff;
    while (to - from > 1) {
        int64_t mid = from + (to - from) / 2;
        time_t m = (time_t)mid;
        struct tm tm;
        localtime_r(&m, &tm);
        if (tm.tm_gmtoff == off)
            from = mid;
        else
            to = mid;
    }
    return to;
}

static void test_random_expressions_match_brute_force_across_dst(void **state)
{
    (void)state;
    static const char *const zones[] = {"America/New_York", "Europe/London"};
    static const int months[] = {3, 10, 11};
    for (size_t z = 0; z < 2; z++) {
        set_tz(zones[z]);
        int near = 0;
        for (int i = 0; i < 600; i++) {
            gen_t g;
            gen_expr(&g, i % 2);
            /* a start in the weeks that hold the transitions, 2020..2030,
             * and every other time a few hours before or after one */
            int y = rnd_in(2020, 2030), mo = months[rnd() % 3];
            int64_t after = utc(y, mo, rnd_in(1, 28), 0, 0) + rnd_in(0, 2 * DAY);
            int64_t tr = transition_between(utc(y, mo, 1, 0, 0), utc(y, mo + 1, 1, 0, 0));
            if (i % 2 && tr > 0) {
                after = tr + rnd_in(-5 * 3600, 2 * 3600);
                near++;
            }
            check_against_brute(&g, after, 2 * DAY, 0);
        }
        assert_true(near > 100);
    }
}

/* ------------------------------------------------------------ the loader */

#define HEAD                                                                                       \
    "version: 1\n"                                                                                 \
    "name: t\n"                                                                                    \
    "source: {plugin: pgsqlite, url: \"sqlite:a.db\"}\n"                                           \
    "sink: {plugin: pgsqlite, url: \"sqlite:b.db\"}\n"
#define INLINE ETL_TEST_FIXTURES "/pipelines/good/inline.yaml"

static const char *env_cron(const char *name, void *arg)
{
    (void)arg;
    return strcmp(name, "CRON") == 0 ? "0 24 * * *" : NULL;
}

static void load_bad(const char *yaml, const char *want)
{
    etl_load_opts_t o = {env_cron, NULL, NULL};
    etl_pipeline_t **v = NULL;
    size_t n = 0;
    char err[1024] = "";
    etl_cfg_status_t st = etl_config_parse("mem.yaml", yaml, strlen(yaml), &o, &v, &n, err, sizeof err);
    if (st != ETL_CFG_INVALID || strncmp(err, want, strlen(want)) != 0)
        print_error("wanted %s...\n   got (%d) %s\n", want, st, err);
    assert_int_equal(st, ETL_CFG_INVALID);
    assert_null(v);
    assert_memory_equal(err, want, strlen(want));
}

static void test_loader_reports_the_bad_field(void **state)
{
    (void)state;
    /* the whole message, once */
    load_bad(HEAD "schedule: { cron: \"0 24 * * *\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:22: bad cron expression '0 24 * * *': hour field '24': 24 is out of "
             "range 0-23 (expected five fields: minute hour day month weekday)");
    /* plain, single- and double-quoted scalars: the column of the field */
    load_bad(HEAD "schedule:\n  cron: 0 24 * * *\nstreams: [{name: s}]\n", "mem.yaml:6:11: bad cron");
    load_bad(HEAD "schedule: { cron: '0 0 * * 8' }\nstreams: [{name: s}]\n",
             "mem.yaml:5:28: bad cron expression '0 0 * * 8': weekday field '8'");
    load_bad(HEAD "schedule: {cron: \"  */0 * * * *\"}\nstreams: [{name: s}]\n",
             "mem.yaml:5:21: bad cron expression '  */0 * * * *': minute field '*/0': step 0");
    /* six fields: the sixth; four: the end (the closing quote) */
    load_bad(HEAD "schedule: { cron: \"0 2 * * * 2024\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:30: bad cron expression '0 2 * * * 2024': 6 fields, not 5");
    load_bad(HEAD "schedule: { cron: \"0 2 * *\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:27: bad cron expression '0 2 * *': only 4 fields");
    load_bad(HEAD "schedule:\n  cron: 0 2 * *   # nightly\nstreams: [{name: s}]\n",
             "mem.yaml:6:16: bad cron expression '0 2 * *': only 4 fields");
    load_bad(HEAD "schedule: { cron: \"@daily 5\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:27: bad cron expression '@daily 5'");
    /* where the value is not the text as written: the scalar's start */
    load_bad(HEAD "schedule: { cron: \"0\\t24 * * *\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:19: bad cron expression '0\t24 * * *': hour field '24'");
    load_bad(HEAD "schedule: { cron: \"${CRON}\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:19: bad cron expression '0 24 * * *': hour field '24'");
    load_bad(HEAD "schedule: { cron: 'it''s 5' }\nstreams: [{name: s}]\n",
             "mem.yaml:5:19: bad cron expression 'it's 5'");
    load_bad(HEAD "schedule:\n  cron: |\n    0 24 * * *\nstreams: [{name: s}]\n",
             "mem.yaml:6:9: bad cron expression");
    /* non-ASCII in the value: columns count characters */
    load_bad(HEAD "schedule: { cron: \"0 0 * * * é\" }\nstreams: [{name: s}]\n",
             "mem.yaml:5:30: bad cron expression '0 0 * * * é': 6 fields");
    /* a matrix client's own schedule */
    load_bad("version: 1\nname: t\nmatrix:\n  - { client: a, schedule: { cron: \"0 0 31 13 *\" } }\n"
             "source: {plugin: p}\nsink: {plugin: p}\nstreams: [{name: s}]\n",
             "mem.yaml:4:44: bad cron expression '0 0 31 13 *': month field '13'");
    /* cron and every together */
    load_bad(HEAD "schedule: { cron: \"0 * * * *\", every: 1h }\nstreams: [{name: s}]\n",
             "mem.yaml:5:39: both 'cron' and 'every' in schedule (expected one of cron or every)");
    load_bad("version: 1\nname: t\nmatrix:\n  - { client: a, schedule: { cron: \"0 * * * *\", every: 6h } }\n"
             "source: {plugin: p}\nsink: {plugin: p}\nstreams: [{name: s}]\n",
             "mem.yaml:4:56: both 'cron' and 'every' in schedule of matrix client 'a'");
}

static void test_loader_keeps_the_parsed_cron(void **state)
{
    (void)state;
    const char *yaml = "version: 1\nname: t\nmatrix:\n  - { client: a }\n"
                       "  - { client: b, schedule: { cron: \"@hourly\" } }\n"
                       "  - { client: c, schedule: { every: 6h } }\n"
                       "source: {plugin: p}\nsink: {plugin: p}\n"
                       "schedule: { cron: \"*/30 9-17 * * mon-fri\", expires: 10m }\n"
                       "streams: [{name: s}]\n";
    etl_load_opts_t o = {env_cron, NULL, NULL};
    etl_pipeline_t **v = NULL;
    size_t n = 0;
    char err[1024] = "";
    etl_cfg_status_t st = etl_config_parse(INLINE, yaml, strlen(yaml), &o, &v, &n, err, sizeof err);
    if (st != ETL_CFG_OK)
        print_error("%s\n", err);
    assert_int_equal(st, ETL_CFG_OK);
    assert_int_equal(n, 3);
    const etl_schedule_cfg_t *a = &v[0]->schedule, *b = &v[1]->schedule, *c = &v[2]->schedule;
    assert_string_equal(a->cron, "*/30 9-17 * * mon-fri");
    assert_true(a->cron_parsed.minute == (B(0) | B(30)));
    assert_true(a->cron_parsed.hour == SPAN(9, 17));
    assert_true(a->cron_parsed.dow == SPAN(1, 5));
    assert_int_equal(a->expires, 600);
    assert_string_equal(b->cron, "@hourly");
    assert_true(b->cron_parsed.minute == B(0) && b->cron_parsed.hour == ALL_HOUR);
    assert_null(c->cron);
    assert_int_equal(c->every, 6 * 3600);
    /* what serve does with it */
    assert_int_equal(etl_cron_next(&a->cron_parsed, utc(2024, 9, 6, 17, 30), 1),
                     utc(2024, 9, 9, 9, 0));
    etl_pipelines_free(v, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_syntax_form),
        cmocka_unit_test(test_every_error),
        cmocka_unit_test(test_error_buffer_is_optional_and_bounded),
        cmocka_unit_test(test_next_minutes_and_steps),
        cmocka_unit_test(test_next_month_ends_and_years),
        cmocka_unit_test(test_next_day_of_month_or_weekday),
        cmocka_unit_test(test_next_jumps_instead_of_walking),
        cmocka_unit_test_setup_teardown(test_dst_new_york, tz_setup, tz_teardown),
        cmocka_unit_test_setup_teardown(test_dst_london, tz_setup, tz_teardown),
        cmocka_unit_test(test_random_expressions_match_brute_force_utc),
        cmocka_unit_test_setup_teardown(test_random_expressions_match_brute_force_across_dst,
                                        tz_setup, tz_teardown),
        cmocka_unit_test(test_loader_reports_the_bad_field),
        cmocka_unit_test(test_loader_keeps_the_parsed_cron),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
