/* value.c - type names, timestamps and the text form of values. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "etl/record.h"

static const char *const type_names[ETL_T_COUNT_] = {
    "null", "bool", "int", "double", "numeric", "text", "blob", "json", "timestamp",
};

const char *etl_type_name(etl_type_t t)
{
    return (unsigned)t < ETL_T_COUNT_ ? type_names[t] : "?";
}

int etl_type_from_name(const char *name)
{
    for (int i = 0; i < ETL_T_COUNT_; i++)
        if (strcmp(type_names[i], name) == 0)
            return i;
    return -1;
}

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Reads exactly `w` digits. */
static int digits(const char **p, const char *end, int w, int *out)
{
    int v = 0;
    for (int i = 0; i < w; i++) {
        if (*p >= end || !isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (*(*p)++ - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

static int parse_http_date(const char *p, const char *end, int64_t *out)
{
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (end - p < 29 || p[3] != ',' || p[4] != ' ')
        return -1;
    p += 5;
    int d, y, hh, mi, ss, m = -1;
    if (digits(&p, end, 2, &d) || *p++ != ' ')
        return -1;
    for (int i = 0; i < 12; i++)
        if (strncmp(p, mon[i], 3) == 0)
            m = i + 1;
    if (m < 0)
        return -1;
    p += 3;
    if (*p++ != ' ' || digits(&p, end, 4, &y) || *p++ != ' ' || digits(&p, end, 2, &hh) ||
        *p++ != ':' || digits(&p, end, 2, &mi) || *p++ != ':' || digits(&p, end, 2, &ss))
        return -1;
    if (end - p != 4 || strncmp(p, " GMT", 4) != 0)
        return -1;
    if (d < 1 || d > days_in_month(y, m) || hh > 23 || mi > 59 || ss > 60)
        return -1;
    *out = (days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + hh * 3600 + mi * 60 + ss) *
           1000000;
    return 0;
}

int etl_ts_parse(const char *s, size_t n, int64_t *out_us)
{
    const char *p = s, *end = s + n;
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (end - p >= 4 && isalpha((unsigned char)*p))
        return parse_http_date(p, end, out_us);
    int y, m, d, hh = 0, mi = 0, ss = 0;
    int64_t frac = 0, off = 0;
    if (digits(&p, end, 4, &y) || p >= end || *p++ != '-' || digits(&p, end, 2, &m) ||
        p >= end || *p++ != '-' || digits(&p, end, 2, &d))
        return -1;
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return -1;
    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return -1;
        p++;
        if (digits(&p, end, 2, &hh) || p >= end || *p++ != ':' || digits(&p, end, 2, &mi))
            return -1;
        if (p < end && *p == ':') {
            p++;
            if (digits(&p, end, 2, &ss))
                return -1;
            if (p < end && (*p == '.' || *p == ',')) {
                p++;
                int nd = 0;
                if (p >= end || !isdigit((unsigned char)*p))
                    return -1;
                while (p < end && isdigit((unsigned char)*p)) {
                    if (nd < 6)
                        frac = frac * 10 + (*p - '0');
                    nd++, p++;
                }
                for (; nd < 6; nd++)
                    frac *= 10;
            }
        }
        if (hh > 23 || mi > 59 || ss > 60)
            return -1;
        if (p < end && *p == ' ')
            p++; /* "2024-05-01 10:00:00 +02:00" */
        if (p < end) {
            if (*p == 'Z' || *p == 'z') {
                p++;
            } else if (*p == '+' || *p == '-') {
                int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
                if (digits(&p, end, 2, &oh))
                    return -1;
                if (p < end && *p == ':')
                    p++;
                if (p < end && digits(&p, end, 2, &om))
                    return -1;
                if (oh > 23 || om > 59)
                    return -1;
                off = sign * (oh * 3600 + om * 60);
            } else {
                return -1;
            }
        }
        if (p != end)
            return -1;
    }
    int64_t secs = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + hh * 3600 + mi * 60 +
                   ss - off;
    *out_us = secs * 1000000 + frac;
    return 0;
}

size_t etl_ts_format(int64_t us, char *buf, size_t size)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0)
        frac += 1000000, secs--;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0)
        rem += 86400, days--;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    int n;
    if (frac)
        n = snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%06lldZ", (long long)y, m, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (long long)frac);
    else
        n = snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    return n < 0 ? 0 : (size_t)n;
}

size_t etl_ts_format_like(int64_t us, const char *ex, size_t n, char *buf, size_t size)
{
    /* the example's shape: date [sep HH:MM [:SS [.frac]]] [space] [zone] */
    char sep = n > 10 ? ex[10] : 'T';
    int has_time = n >= 16, has_secs = n >= 19 && ex[16] == ':';
    size_t i = has_secs ? 19 : 16, frac = 0;
    if (has_secs && i < n && (ex[i] == '.' || ex[i] == ',')) {
        size_t j = i + 1;
        while (j < n && isdigit((unsigned char)ex[j]))
            j++;
        frac = j - i - 1;
        i = j;
    }
    size_t zspace = 0;
    while (i + zspace < n && ex[i + zspace] == ' ')
        zspace++;
    const char *zone = has_time && i + zspace < n ? ex + i + zspace : NULL;
    size_t zlen = zone ? n - i - zspace : 0;
    if (!zone)
        zspace = 0;
    /* the example's zone offset decides the wall time written */
    int64_t off = 0;
    if (zone && zone[0] != 'Z' && zone[0] != 'z' && zlen >= 3 && isdigit((unsigned char)zone[1])) {
        int oh = (zone[1] - '0') * 10 + (zone[2] - '0'), om = 0;
        const char *m = zlen >= 6 && zone[3] == ':' ? zone + 4 : zlen >= 5 ? zone + 3 : NULL;
        if (m && isdigit((unsigned char)m[0]) && isdigit((unsigned char)m[1]))
            om = (m[0] - '0') * 10 + (m[1] - '0');
        off = (zone[0] == '-' ? -1 : 1) * ((int64_t)oh * 3600 + om * 60) * 1000000;
    }
    char iso[48];
    etl_ts_format(us + off, iso, sizeof iso); /* YYYY-MM-DDTHH:MM:SS[.ffffff]Z */
    size_t dl = (size_t)(strchr(iso, 'T') - iso); /* years past 9999 are longer */
    if (!has_time)
        return (size_t)snprintf(buf, size, "%.*s", (int)dl, iso);
    char fr[16] = "";
    if (frac) {
        const char *dot = strchr(iso, '.');
        char digits9[10] = "000000000";
        if (dot)
            memcpy(digits9, dot + 1, 6);
        snprintf(fr, sizeof fr, ".%.*s", (int)(frac > 9 ? 9 : frac), digits9);
    }
    int len = snprintf(buf, size, "%.*s%c%.*s%s%.*s%.*s", (int)dl, iso, sep, has_secs ? 8 : 5,
                       iso + dl + 1, fr, (int)zspace, "        ", (int)zlen, zone ? zone : "");
    return len < 0 ? 0 : (size_t)len;
}

size_t etl_value_text(const etl_value_t *v, char *buf, size_t size, const char **out)
{
    int n = 0;
    switch (v->type) {
    case ETL_T_NULL:
        n = 0;
        if (size)
            buf[0] = '\0';
        break;
    case ETL_T_BOOL:
        n = snprintf(buf, size, "%s", v->v.i ? "true" : "false");
        break;
    case ETL_T_INT:
        n = snprintf(buf, size, "%lld", (long long)v->v.i);
        break;
    case ETL_T_DOUBLE:
        /* the shortest text that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(buf, size, "%.*g", prec, v->v.d);
            if (prec == 17 || strtod(buf, NULL) == v->v.d)
                break;
        }
        break;
    case ETL_T_TIMESTAMP:
        n = (int)etl_ts_format(v->v.i, buf, size);
        break;
    default:
        *out = v->v.s ? v->v.s : "";
        return v->len;
    }
    *out = buf;
    return n < 0 ? 0 : (size_t)n;
}
