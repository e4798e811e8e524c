/*
 * cron.c - five-field cron expressions: the parser, and the search for the
 * next matching minute.
 *
 * The search runs over wall-clock ("civil") time, which has no DST: it jumps
 * to the next matching month, day, hour and minute in turn, and only a match
 * is turned into an instant. Daylight saving time is then a question about
 * one wall-clock reading: it may not exist (skipped) or exist twice (its
 * first instant is taken). See cron.h for the contract.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cron.h"

/* The longest piece of an expression quoted back in a message. */
#define QUOTE_MAX 40
/* How far ahead etl_cron_next looks, in months. */
#define SEARCH_MONTHS (5 * 12)
/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define MIN_TIME (-62135596800LL)
#define MAX_TIME 253402300799LL

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

typedef struct field_spec {
    const char *name;          /* in messages */
    int lo, hi;                /* the values the field can match */
    int max_in;                /* the highest number accepted: 7 for Sunday again */
    const char *const *names;  /* names[i] stands for lo + i; NULL: numbers only */
    size_t nnames;
} field_spec_t;

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, F__N };

static const field_spec_t fields[F__N] = {
    {"minute", 0, 59, 59, NULL, 0},
    {"hour", 0, 23, 23, NULL, 0},
    {"day", 1, 31, 31, NULL, 0},
    {"month", 1, 12, 12, month_names, 12},
    {"weekday", 0, 6, 7, day_names, 7},
};

static const struct {
    const char *name;
    const char *expr;
} shorthands[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* ------------------------------------------------------------ parsing */

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static int is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static int same_word(const char *s, size_t n, const char *word)
{
    size_t i = 0;
    for (; i < n && word[i]; i++)
        if (lower(s[i]) != word[i])
            return 0;
    return i == n && !word[i];
}

static int quote_len(size_t n)
{
    return (int)(n < QUOTE_MAX ? n : QUOTE_MAX);
}

static void msgf(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void msgf(char *msg, size_t msglen, const char *fmt, ...)
{
    if (!msg || !msglen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

/* Says what is at s[i] when it is not what the grammar wants there. */
static void unexpected(const char *s, size_t len, size_t i, char *msg, size_t msglen)
{
    if (i >= len)
        msgf(msg, msglen, "it ends too early");
    else if (s[i] > ' ' && s[i] < 0x7f)
        msgf(msg, msglen, "unexpected '%c'", s[i]);
    else
        msgf(msg, msglen, "unexpected byte 0x%02x", (unsigned)(unsigned char)s[i]);
}

/* A number or a name at s[*i]; advances *i. */
static int read_value(const field_spec_t *f, const char *s, size_t len, size_t *i, int *out,
                      char *msg, size_t msglen)
{
    size_t start = *i;
    if (*i < len && is_digit(s[*i])) {
        int v = 0;
        for (; *i < len && is_digit(s[*i]); (*i)++)
            if (v < 1000) /* large enough to be out of range, small enough not to overflow */
                v = v * 10 + (s[*i] - '0');
        if (v < f->lo || v > f->max_in) {
            msgf(msg, msglen, "%.*s is out of range %d-%d", quote_len(*i - start), s + start,
                 f->lo, f->max_in);
            return -1;
        }
        *out = v;
        return 0;
    }
    if (*i < len && is_alpha(s[*i])) {
        while (*i < len && is_alpha(s[*i]))
            (*i)++;
        size_t n = *i - start;
        if (!f->names) {
            msgf(msg, msglen, "'%.*s' is not a number", quote_len(n), s + start);
            return -1;
        }
        for (size_t k = 0; k < f->nnames; k++)
            if (same_word(s + start, n, f->names[k])) {
                *out = f->lo + (int)k;
                return 0;
            }
        msgf(msg, msglen, "unknown name '%.*s' (%s-%s)", quote_len(n), s + start, f->names[0],
             f->names[f->nnames - 1]);
        return -1;
    }
    unexpected(s, len, *i, msg, msglen);
    return -1;
}

/* One field s[0..len) (no spaces in it) into a bit set. */
static int parse_field(const field_spec_t *f, const char *s, size_t len, uint64_t *bits,
                       char *msg, size_t msglen)
{
    uint64_t set = 0;
    size_t i = 0;
    for (;;) {
        size_t item = i;
        int a, b, ranged;
        if (i == len || s[i] == ',') {
            msgf(msg, msglen, "empty list item");
            return -1;
        }
        if (s[i] == '*') {
            a = f->lo;
            b = f->hi;
            ranged = 1;
            i++;
        } else {
            if (read_value(f, s, len, &i, &a, msg, msglen) != 0)
                return -1;
            b = a;
            ranged = 0;
            if (i < len && s[i] == '-') {
                i++;
                if (read_value(f, s, len, &i, &b, msg, msglen) != 0)
                    return -1;
                if (b < a && b == f->lo && f->max_in > f->hi)
                    b = f->max_in; /* fri-sun: a weekday range may end on Sunday, 7 */
                if (b < a) {
                    msgf(msg, msglen, "range %.*s is reversed", quote_len(i - item), s + item);
                    return -1;
                }
                ranged = 1;
            }
        }
        int step = 1;
        if (i < len && s[i] == '/') {
            size_t at = ++i;
            if (i == len || !is_digit(s[i])) {
                unexpected(s, len, i, msg, msglen);
                return -1;
            }
            step = 0;
            for (; i < len && is_digit(s[i]); i++)
                if (step < 1000)
                    step = step * 10 + (s[i] - '0');
            /* A step that can never reach a second value is a mistake (an
             * hour step of 24 for "once a day"), not a way to write one value. */
            if (step < 1 || step > f->hi - f->lo) {
                msgf(msg, msglen, "step %.*s is out of range 1-%d", quote_len(i - at), s + at,
                     f->hi - f->lo);
                return -1;
            }
            if (!ranged)
                b = f->hi > a ? f->hi : a; /* 5/15: from 5 to the end */
        }
        for (int v = a; v <= b; v += step)
            set |= (uint64_t)1 << v;
        if (i == len)
            break;
        if (s[i] != ',') {
            unexpected(s, len, i, msg, msglen);
            return -1;
        }
        i++;
    }
    if (f->max_in > f->hi) /* weekday 7 is Sunday */
        set = (set | set >> 7) & (((uint64_t)1 << 7) - 1);
    *bits = set;
    return 0;
}

static int fail(size_t *errpos, size_t pos, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(size_t *errpos, size_t pos, char *err, size_t errlen, const char *fmt, ...)
{
    if (errpos)
        *errpos = pos;
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static size_t skip_space(const char *s, size_t i)
{
    while (s[i] && is_space(s[i]))
        i++;
    return i;
}

static size_t word_end(const char *s, size_t i)
{
    while (s[i] && !is_space(s[i]))
        i++;
    return i;
}

static int parse_fields(const char *expr, size_t i, etl_cron_t *out, size_t *errpos, char *err,
                        size_t errlen)
{
    uint64_t bits[F__N];
    for (int k = 0; k < F__N; k++) {
        if (!expr[i])
            return fail(errpos, i, err, errlen, "only %d field%s: the %s field is missing", k,
                        k == 1 ? "" : "s", fields[k].name);
        size_t end = word_end(expr, i);
        char msg[160];
        if (parse_field(&fields[k], expr + i, end - i, &bits[k], msg, sizeof msg) != 0)
            return fail(errpos, i, err, errlen, "%s field '%.*s': %s", fields[k].name,
                        quote_len(end - i), expr + i, msg);
        if (k == F_DOM)
            out->dom_star = expr[i] == '*';
        else if (k == F_DOW)
            out->dow_star = expr[i] == '*';
        i = skip_space(expr, end);
    }
    if (expr[i]) {
        int n = F__N;
        for (size_t j = i; expr[j]; j = skip_space(expr, word_end(expr, j)))
            n++;
        size_t end = word_end(expr, i);
        return fail(errpos, i, err, errlen, "%d fields, not 5: '%.*s' follows the weekday field",
                    n, quote_len(end - i), expr + i);
    }
    out->minute = bits[F_MINUTE];
    out->hour = (uint32_t)bits[F_HOUR];
    out->dom = (uint32_t)bits[F_DOM];
    out->month = (uint16_t)bits[F_MONTH];
    out->dow = (uint8_t)bits[F_DOW];
    return 0;
}

int etl_cron_parse(const char *expr, etl_cron_t *out, size_t *errpos, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errpos)
        *errpos = 0;
    if (err && errlen)
        err[0] = '\0';
    size_t i = skip_space(expr, 0);
    if (!expr[i])
        return fail(errpos, 0, err, errlen, "it is empty");
    if (expr[i] != '@')
        return parse_fields(expr, i, out, errpos, err, errlen);

    size_t end = word_end(expr, i);
    for (size_t k = 0; k < sizeof shorthands / sizeof shorthands[0]; k++) {
        if (!same_word(expr + i, end - i, shorthands[k].name))
            continue;
        size_t rest = skip_space(expr, end);
        if (expr[rest])
            return fail(errpos, rest, err, errlen, "'%s' takes no fields after it",
                        shorthands[k].name);
        return parse_fields(shorthands[k].expr, 0, out, NULL, NULL, 0);
    }
    return fail(errpos, i, err, errlen,
                "unknown shorthand '%.*s' (@yearly, @annually, @monthly, @weekly, @daily, "
                "@midnight or @hourly)",
                quote_len(end - i), expr + i);
}

/* ------------------------------------------------------------ calendar */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. The
 * year is taken to start in March so that February, the month of varying
 * length, comes last and the days before a month follow one formula. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    if (m <= 2) {
        y -= 1;
        m += 12;
    }
    int64_t days = 365 * y + floor_div(y, 4) - floor_div(y, 100) + floor_div(y, 400);
    days += (153 * (m - 3) + 2) / 5 + d - 1;
    return days - 719468; /* the same sum for 1970-01-01 */
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* 0 = Sunday. 1970-01-01 was a Thursday. */
static int weekday(int64_t y, int m, int d)
{
    int64_t w = (days_from_civil(y, m, d) + 4) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

/* The lowest set bit of `bits` at or above `from`, or -1. */
static int next_bit(uint64_t bits, int from)
{
    if (from > 63)
        return -1;
    bits &= ~(uint64_t)0 << from;
    return bits ? __builtin_ctzll(bits) : -1;
}

static int day_matches(const etl_cron_t *c, int64_t y, int m, int d)
{
    int in_dom = (c->dom >> d) & 1;
    int in_dow = (c->dow >> weekday(y, m, d)) & 1;
    if (c->dom_star || c->dow_star)
        return in_dom && in_dow;
    return in_dom || in_dow;
}

/* ------------------------------------------------------------ instants */

typedef struct civil {
    int64_t y;
    int mo, d, h, mi; /* 1-12, 1-31, 0-23, 0-59 */
} civil_t;

static int64_t civil_seconds(const civil_t *c)
{
    return days_from_civil(c->y, c->mo, c->d) * 86400 + c->h * 3600 + c->mi * 60;
}

/* How far local time is ahead of UTC at instant t, in seconds. */
static int local_offset(int64_t t, int64_t *off)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if ((int64_t)tt != t || !localtime_r(&tt, &tm))
        return -1;
    int64_t local = days_from_civil(tm.tm_year + 1900LL, tm.tm_mon + 1, tm.tm_mday) * 86400 +
                    tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    *off = local - t;
    return 0;
}

/*
 * The earliest instant at which the local wall clock reads c; -1 when it
 * never does (the clock jumped over it). An instant t reads c when
 * t + offset(t) == c, so each offset in force near c gives one candidate,
 * kept if the offset at the candidate is that offset. Offsets stay within
 * 26 hours of UTC, so the offsets 26 hours either side of c and at c itself
 * cover every transition near it, unless two fall within a day.
 */
static int civil_to_instant(const civil_t *c, int utc, int64_t *out)
{
    int64_t u = civil_seconds(c);
    if (utc) {
        *out = u;
        return 0;
    }
    static const int64_t probes[] = {-26 * 3600, 0, 26 * 3600};
    int found = 0;
    int64_t best = 0;
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        int64_t off, off_at;
        if (local_offset(u + probes[k], &off) != 0)
            continue;
        int64_t t = u - off;
        if (local_offset(t, &off_at) != 0 || off_at != off)
            continue;
        if (!found || t < best)
            best = t;
        found = 1;
    }
    *out = best;
    return found ? 0 : -1;
}

/* ------------------------------------------------------------ search */

int64_t etl_cron_next(const etl_cron_t *c, int64_t after, int utc)
{
    if (after < MIN_TIME || after > MAX_TIME)
        return -1;
    time_t tt = (time_t)after;
    struct tm tm;
    if ((int64_t)tt != after || !(utc ? gmtime_r(&tt, &tm) : localtime_r(&tt, &tm)))
        return -1;
    /* Every wall-clock minute up to the one `after` reads maps to an instant
     * no later than `after` (its first instant, at the latest `after`
     * itself), so the search starts at the next minute. */
    civil_t t = {tm.tm_year + 1900LL, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min + 1};
    const int64_t last_month = t.y * 12 + t.mo + SEARCH_MONTHS;
    for (;;) {
        /* Carry overflows from the jumps below. */
        if (t.mi > 59) {
            t.mi = 0;
            t.h++;
        }
        if (t.h > 23) {
            t.h = 0;
            t.d++;
        }
        if (t.d > days_in_month(t.y, t.mo)) {
            t.d = 1;
            t.mo++;
        }
        if (t.mo > 12) {
            t.mo = 1;
            t.y++;
        }
        if (t.y * 12 + t.mo > last_month || t.y > 9999)
            return -1;
        if (!((c->month >> t.mo) & 1)) {
            if (++t.mo > 12) { /* here, as the day check above needs a real month */
                t.mo = 1;
                t.y++;
            }
            t.d = 1;
            t.h = t.mi = 0;
            continue;
        }
        if (!day_matches(c, t.y, t.mo, t.d)) {
            /* Days given by day of month alone: jump straight to the next
             * one (32, past any month, when none is left in this one). */
            if ((c->dom_star || c->dow_star) && (c->dow & 0x7f) == 0x7f) {
                int nd = next_bit(c->dom, t.d + 1);
                t.d = nd > 0 ? nd : 32;
            } else {
                t.d++;
            }
            t.h = t.mi = 0;
            continue;
        }
        int h = next_bit(c->hour, t.h);
        if (h < 0) {
            t.d++;
            t.h = t.mi = 0;
            continue;
        }
        if (h != t.h) {
            t.h = h;
            t.mi = 0;
        }
        int mi = next_bit(c->minute, t.mi);
        if (mi < 0) {
            t.h++;
            t.mi = 0;
            continue;
        }
        t.mi = mi;
        int64_t at;
        if (civil_to_instant(&t, utc, &at) == 0 && at > after)
            return at;
        t.mi++; /* skipped by the clock, or its first instant is already past */
    }
}
