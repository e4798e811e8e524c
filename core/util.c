/* util.c - buffers, checked parsing, paths and clocks for libetl. */
#define _GNU_SOURCE
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void etl_buf_init(etl_buf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void etl_buf_free(etl_buf_t *b)
{
    free(b->data);
    etl_buf_init(b);
}

void etl_buf_reset(etl_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int etl_buf_reserve(etl_buf_t *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void etl_buf_add(etl_buf_t *b, const void *p, size_t n)
{
    if (etl_buf_reserve(b, n) != 0)
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void etl_buf_adds(etl_buf_t *b, const char *s) { etl_buf_add(b, s, strlen(s)); }

void etl_buf_addc(etl_buf_t *b, char c) { etl_buf_add(b, &c, 1); }

void etl_buf_vprintf(etl_buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0 || etl_buf_reserve(b, (size_t)n) != 0)
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void etl_buf_printf(etl_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    etl_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void etl_buf_json_str(etl_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    etl_buf_addc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0';
                u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            etl_buf_add(b, s + i - run, run);
            run = 0;
            etl_buf_adds(b, esc);
        } else {
            run++;
        }
    }
    etl_buf_add(b, s + n - run, run);
    etl_buf_addc(b, '"');
}

char *etl_buf_take(etl_buf_t *b)
{
    if (b->oom) {
        etl_buf_free(b);
        return NULL;
    }
    if (!b->data)
        etl_buf_add(b, "", 0);
    char *p = b->data;
    etl_buf_init(b);
    return p;
}

char *etl_strdup(const char *s) { return s ? strdup(s) : NULL; }

char *etl_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *etl_asprintf(const char *fmt, ...)
{
    etl_buf_t b;
    etl_buf_init(&b);
    va_list ap;
    va_start(ap, fmt);
    etl_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return etl_buf_take(&b);
}

int etl_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int etl_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int etl_parse_duration(const char *s, int64_t *out)
{
    int64_t total = 0;
    if (!s || !*s)
        return -1;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return -1;
        int64_t n = 0;
        while (isdigit((unsigned char)*s)) {
            if (n > INT64_MAX / 10 - 10)
                return -1;
            n = n * 10 + (*s++ - '0');
        }
        int64_t unit;
        switch (*s) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return -1; /* a unit is required: "30" alone is ambiguous */
        }
        s++;
        if (n > (INT64_MAX - total) / unit)
            return -1;
        total += n * unit;
    }
    *out = total;
    return 0;
}

const char *etl_format_duration(int64_t secs, char *buf, size_t n)
{
    if (secs && secs % 86400 == 0)
        snprintf(buf, n, "%lldd", (long long)(secs / 86400));
    else if (secs && secs % 3600 == 0)
        snprintf(buf, n, "%lldh", (long long)(secs / 3600));
    else if (secs && secs % 60 == 0)
        snprintf(buf, n, "%lldm", (long long)(secs / 60));
    else
        snprintf(buf, n, "%llds", (long long)secs);
    return buf;
}

char *etl_path_join(const char *dir, const char *rel)
{
    if (!rel)
        return NULL;
    if (rel[0] == '/' || !dir || !*dir)
        return etl_strdup(rel);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    if (dl == 1 && dir[0] == '/')
        return etl_asprintf("/%s", rel);
    return etl_asprintf("%.*s/%s", (int)dl, dir, rel);
}

char *etl_path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return etl_strdup(".");
    if (slash == path)
        return etl_strdup("/");
    return etl_strndup(path, (size_t)(slash - path));
}

int etl_mkdirs(const char *dir)
{
    char *p = etl_strdup(dir);
    if (!p)
        return -1;
    int rc = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = -1;
        *s = '/';
    }
    if (rc == 0 && mkdir(p, 0755) != 0 && errno != EEXIST)
        rc = -1;
    free(p);
    return rc;
}

char *etl_exe_dir(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return etl_path_dir(buf);
}

int64_t etl_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t etl_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

char *etl_strlcpy(char *dst, const char *src, size_t n)
{
    if (n == 0)
        return dst;
    size_t l = strlen(src);
    if (l >= n)
        l = n - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
    return dst;
}

void etl_errf(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}
