/* log.c - log lines, run log files with retention, progress line, redaction. */
#define _GNU_SOURCE
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static etl_level_t log_level = ETL_LOG_INFO;
static etl_log_format_t log_fmt = ETL_LOGFMT_TEXT;
static int log_color;
static int progress_active; /* a progress line is on screen, without newline */

static pthread_mutex_t redact_mu = PTHREAD_MUTEX_INITIALIZER;
static char **secrets;
static size_t nsecrets;

struct etl_logger {
    char *name;
    char *path;
    FILE *fp;
};

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void etl_log_setup(etl_level_t level, etl_log_format_t fmt, int color)
{
    pthread_mutex_lock(&log_mu);
    log_level = level;
    log_fmt = fmt;
    log_color = color;
    pthread_mutex_unlock(&log_mu);
}

etl_level_t etl_log_level(void) { return log_level; }
etl_log_format_t etl_log_format(void) { return log_fmt; }

int etl_log_is_tty(void) { return isatty(STDERR_FILENO) && log_fmt == ETL_LOGFMT_TEXT; }

/* ------------------------------------------------------------ redaction */

void etl_redact_add(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&redact_mu);
    for (size_t i = 0; i < nsecrets; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            pthread_mutex_unlock(&redact_mu);
            return;
        }
    }
    char **v = realloc(secrets, (nsecrets + 1) * sizeof *v);
    char *copy = etl_strdup(secret);
    if (v && copy) {
        secrets = v;
        /* longest first, so a secret that contains another is hidden whole */
        size_t at = 0, l = strlen(copy);
        while (at < nsecrets && strlen(secrets[at]) >= l)
            at++;
        memmove(&secrets[at + 1], &secrets[at], (nsecrets - at) * sizeof *secrets);
        secrets[at] = copy;
        nsecrets++;
    } else {
        if (v)
            secrets = v;
        free(copy);
    }
    pthread_mutex_unlock(&redact_mu);
}

void etl_redact_clear(void)
{
    pthread_mutex_lock(&redact_mu);
    for (size_t i = 0; i < nsecrets; i++)
        free(secrets[i]);
    free(secrets);
    secrets = NULL;
    nsecrets = 0;
    pthread_mutex_unlock(&redact_mu);
}

/* Length of a URL password starting after the ':' at s[colon] when what
 * precedes is "scheme://user", else 0. */
static size_t url_password_len(const char *s, size_t n, size_t colon)
{
    size_t j = colon;
    while (j > 0 && s[j - 1] != '/' && s[j - 1] != '@' && s[j - 1] != ' ' && s[j - 1] != ':')
        j--;
    if (j < 3 || s[j - 1] != '/' || s[j - 2] != '/' || s[j - 3] != ':')
        return 0;
    /* RFC 3986: the userinfo ends at '@'; a raw '/' ends the authority */
    size_t k = colon + 1;
    while (k < n && s[k] != '@' && s[k] != '/' && s[k] != ' ' && s[k] != '"' && s[k] != '\'')
        k++;
    return k < n && s[k] == '@' ? k - colon - 1 : 0;
}

/* A value after a key ending in "password" (password=, db_password = 'x',
 * "password": "x"): returns the offset where the value starts (in *start)
 * and its length, or 0. */
static size_t kv_password_len(const char *s, size_t n, size_t i, size_t *start)
{
    static const char key[] = "password";
    size_t kl = sizeof key - 1;
    if (i + kl > n || strncasecmp(s + i, key, kl) != 0)
        return 0;
    size_t k = i + kl;
    if (k < n && s[k] == '"')
        k++; /* JSON: "password": */
    while (k < n && s[k] == ' ')
        k++;
    if (k >= n || (s[k] != '=' && s[k] != ':'))
        return 0;
    k++;
    while (k < n && s[k] == ' ')
        k++;
    char quote = k < n && (s[k] == '\'' || s[k] == '"') ? s[k] : 0;
    if (quote)
        k++;
    size_t v = k;
    while (k < n && (quote ? s[k] != quote
                           : (s[k] != ' ' && s[k] != '&' && s[k] != ',' && s[k] != '}' &&
                              s[k] != '\n' && s[k] != '"' && s[k] != '\'')))
        k++;
    *start = v;
    return k - v;
}

void etl_redact(const char *s, size_t n, etl_buf_t *out)
{
    pthread_mutex_lock(&redact_mu);
    size_t i = 0, run = 0;
    while (i < n) {
        size_t hit = 0, keep = 0;
        /* secrets are kept longest first: the longest match wins */
        for (size_t k = 0; k < nsecrets && !hit; k++) {
            size_t l = strlen(secrets[k]);
            if (l <= n - i && memcmp(s + i, secrets[k], l) == 0)
                hit = l;
        }
        if (!hit && s[i] == ':') {
            size_t l = url_password_len(s, n, i);
            if (l)
                keep = 1, hit = l + 1;
        }
        if (!hit && (s[i] == 'p' || s[i] == 'P')) {
            size_t start = 0, l = kv_password_len(s, n, i, &start);
            if (l)
                keep = start - i, hit = keep + l;
        }
        if (hit) {
            etl_buf_add(out, s + i - run, run);
            run = 0;
            etl_buf_add(out, s + i, keep);
            etl_buf_adds(out, "***");
            i += hit;
        } else {
            run++;
            i++;
        }
    }
    etl_buf_add(out, s + n - run, run);
    pthread_mutex_unlock(&redact_mu);
}

char *etl_redact_dup(const char *s)
{
    etl_buf_t b;
    etl_buf_init(&b);
    if (s)
        etl_redact(s, strlen(s), &b);
    return etl_buf_take(&b);
}

/* ------------------------------------------------------------ files */

static void prune_logs(const char *dir, const char *name, int64_t keep_secs)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t nl = strlen(name);
    time_t cutoff = time(NULL) - (time_t)keep_secs;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        /* only "<name>-YYYYMMDDTHHMMSSZ-<run>.log": not another pipeline
         * whose name starts with this one's */
        const char *stamp = e->d_name + nl + 1;
        if (l < nl + 22 || strncmp(e->d_name, name, nl) != 0 || e->d_name[nl] != '-' ||
            strcmp(e->d_name + l - 4, ".log") != 0 || strspn(stamp, "0123456789") != 8 ||
            stamp[8] != 'T' || strspn(stamp + 9, "0123456789") != 6 || stamp[15] != 'Z' ||
            stamp[16] != '-')
            continue;
        char *p = etl_path_join(dir, e->d_name);
        struct stat st;
        if (p && stat(p, &st) == 0 && st.st_mtime < cutoff)
            unlink(p);
        free(p);
    }
    closedir(d);
}

etl_logger_t *etl_logger_new(const char *name, const char *dir, int64_t run_id, int64_t keep_secs,
                             char *err, size_t errlen)
{
    etl_logger_t *lg = calloc(1, sizeof *lg);
    if (!lg || !(lg->name = etl_strdup(name)))
        goto nomem;
    if (!dir)
        return lg;
    if (etl_mkdirs(dir) != 0) {
        etl_errf(err, errlen, "cannot create log folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (keep_secs > 0)
        prune_logs(dir, name, keep_secs);
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    lg->path = etl_asprintf("%s/%s-%s-%lld.log", dir, name, stamp, (long long)run_id);
    if (!lg->path)
        goto nomem;
    lg->fp = fopen(lg->path, "a");
    if (!lg->fp) {
        etl_errf(err, errlen, "cannot open log file %s: %s", lg->path, strerror(errno));
        goto fail;
    }
    return lg;
nomem:
    etl_errf(err, errlen, "out of memory");
fail:
    etl_logger_free(lg);
    return NULL;
}

void etl_logger_free(etl_logger_t *lg)
{
    if (!lg)
        return;
    if (lg->fp)
        fclose(lg->fp);
    free(lg->name);
    free(lg->path);
    free(lg);
}

const char *etl_logger_path(const etl_logger_t *lg) { return lg ? lg->path : NULL; }

/* ------------------------------------------------------------ lines */

static void format_line(etl_buf_t *out, etl_log_format_t fmt, etl_level_t lvl, const char *logname,
                        const char *scope, const char *stream, const char *msg, size_t msglen,
                        int color)
{
    char ts[40];
    int64_t now = etl_now_us();
    etl_ts_format(now / 1000000 * 1000000, ts, sizeof ts);
    /* milliseconds are enough for a log line: "...T10:00:00.123Z" */
    snprintf(ts + 19, sizeof ts - 19, ".%03dZ", (int)(now / 1000 % 1000));
    if (fmt == ETL_LOGFMT_JSON) {
        etl_buf_printf(out, "{\"time\":\"%s\",\"level\":\"%s\"", ts, level_names[lvl]);
        if (logname) {
            etl_buf_adds(out, ",\"pipeline\":");
            etl_buf_json_str(out, logname, strlen(logname));
        }
        if (scope) {
            etl_buf_adds(out, ",\"scope\":");
            etl_buf_json_str(out, scope, strlen(scope));
        }
        if (stream) {
            etl_buf_adds(out, ",\"stream\":");
            etl_buf_json_str(out, stream, strlen(stream));
        }
        etl_buf_adds(out, ",\"msg\":");
        etl_buf_json_str(out, msg, msglen);
        etl_buf_adds(out, "}\n");
        return;
    }
    static const char *const colors[] = {"\033[31m", "\033[33m", "", "\033[2m", "\033[2m"};
    const char *c = color ? colors[lvl] : "", *r = color && *colors[lvl] ? "\033[0m" : "";
    etl_buf_printf(out, "%s %s%-5s%s ", ts, c, level_names[lvl], r);
    if (scope)
        etl_buf_printf(out, "[%s%s%s] ", scope, stream ? "/" : "", stream ? stream : "");
    etl_buf_add(out, msg, msglen);
    etl_buf_addc(out, '\n');
}

void etl_logv(etl_logger_t *lg, etl_level_t lvl, const char *scope, const char *stream,
              const char *fmt, va_list ap)
{
    int to_stderr = lvl <= log_level;
    int to_file = lg && lg->fp && lvl <= (log_level > ETL_LOG_INFO ? log_level : ETL_LOG_INFO);
    if (!to_stderr && !to_file)
        return;
    etl_buf_t raw, msg, line;
    etl_buf_init(&raw);
    etl_buf_init(&msg);
    etl_buf_init(&line);
    etl_buf_vprintf(&raw, fmt, ap);
    if (raw.len && raw.data[raw.len - 1] == '\n')
        raw.data[--raw.len] = '\0';
    etl_redact(raw.data ? raw.data : "", raw.len, &msg);
    const char *m = msg.data ? msg.data : "";
    pthread_mutex_lock(&log_mu);
    if (to_stderr) {
        format_line(&line, log_fmt, lvl, lg ? lg->name : NULL, scope, stream, m, msg.len,
                    log_color);
        if (progress_active) {
            fputs("\r\033[K", stderr);
            progress_active = 0;
        }
        if (line.data)
            fwrite(line.data, 1, line.len, stderr);
    }
    if (to_file) {
        etl_buf_reset(&line);
        format_line(&line, log_fmt, lvl, lg->name, scope, stream, m, msg.len, 0);
        if (line.data)
            fwrite(line.data, 1, line.len, lg->fp);
        fflush(lg->fp);
    }
    pthread_mutex_unlock(&log_mu);
    etl_buf_free(&raw);
    etl_buf_free(&msg);
    etl_buf_free(&line);
}

void etl_logf(etl_logger_t *lg, etl_level_t lvl, const char *scope, const char *stream,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    etl_logv(lg, lvl, scope, stream, fmt, ap);
    va_end(ap);
}

void etl_log_progress(const char *line)
{
    if (!etl_log_is_tty() || log_level < ETL_LOG_INFO)
        return;
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    progress_active = 1;
    pthread_mutex_unlock(&log_mu);
}

void etl_log_progress_done(void)
{
    pthread_mutex_lock(&log_mu);
    if (progress_active) {
        fputs("\r\033[K", stderr);
        progress_active = 0;
    }
    pthread_mutex_unlock(&log_mu);
}
