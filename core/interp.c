/*
 * interp.c - ${...} interpolation of pipeline strings.
 *
 *   $$                 a literal $
 *   ${VAR}             the variable; unset is an error
 *   ${VAR:-default}    the default when VAR is unset or empty (the default
 *                      may be empty and is itself interpolated)
 *   ${file:path}       the file's contents without its trailing newline;
 *                      path is relative to the pipeline's folder
 *   ${matrix.KEY}      the current matrix entry's value
 *   $ before anything else stays a literal $, so "pa$word" needs no escape.
 *
 * Inserted text is never interpolated again: a secret holding "${x}" stays
 * as it is.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"
#include "util.h"

/* ${A:-${B:-${C}}} nests; deeper than this is surely a mistake. */
#define INTERP_MAX_DEPTH 8
#define EXPECTED_FORMS "${VAR}, ${VAR:-default}, ${file:path}, ${matrix.KEY} or $$"

typedef struct interp_run {
    const etl_interp_t *ip;
    const char *key;
    char *msg;
    size_t msglen;
    int nomem;
    int unset; /* the failure is an unset environment variable */
} interp_run_t;

static int run_bad(interp_run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int run_bad(interp_run_t *r, const char *fmt, ...)
{
    if (r->msg && r->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, r->msglen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int is_var_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

static int is_matrix_key(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

/* Index just past the `}` closing the `${` at s[i], counting nested `${`;
 * 0 when there is none. */
static size_t ref_end(const char *s, size_t n, size_t i)
{
    int depth = 0;
    for (size_t j = i; j < n; j++) {
        if (s[j] == '$' && j + 1 < n && s[j + 1] == '$') {
            j++;
        } else if (s[j] == '$' && j + 1 < n && s[j + 1] == '{') {
            depth++;
            j++;
        } else if (s[j] == '}') {
            if (--depth == 0)
                return j + 1;
        }
    }
    return 0;
}

static int expand(interp_run_t *r, const char *s, size_t n, int depth, etl_buf_t *out);

static int read_file(interp_run_t *r, const char *rel, etl_buf_t *out)
{
    int rc = -1;
    int fd = -1;
    char *path = etl_path_join(r->ip->dir, rel);
    if (!path) {
        r->nomem = 1;
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        run_bad(r, "cannot read ${file:%s} for '%s': %s (expected a readable file, relative to the pipeline folder)",
                rel, r->key, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > ETL_INTERP_FILE_MAX) {
        run_bad(r, "${file:%s} for '%s' is %s (expected a regular file of at most %d bytes)", rel,
                r->key, S_ISREG(st.st_mode) ? "too large" : "not a regular file", ETL_INTERP_FILE_MAX);
        goto fail;
    }
    size_t start = out->len;
    char chunk[4096];
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            run_bad(r, "cannot read ${file:%s} for '%s': %s (expected a readable file)", rel, r->key,
                    strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        if (memchr(chunk, '\0', (size_t)got)) {
            run_bad(r, "${file:%s} for '%s' holds a NUL byte (expected a text file)", rel, r->key);
            goto fail;
        }
        etl_buf_add(out, chunk, (size_t)got);
        /* The file may grow after fstat(); the bound still holds. */
        if (out->len - start > ETL_INTERP_FILE_MAX) {
            run_bad(r, "${file:%s} for '%s' is too large (expected at most %d bytes)", rel, r->key,
                    ETL_INTERP_FILE_MAX);
            goto fail;
        }
    }
    /* One trailing newline is how editors end a file, not part of a secret. */
    if (out->len > start && out->data[out->len - 1] == '\n') {
        out->len--;
        if (out->len > start && out->data[out->len - 1] == '\r')
            out->len--;
        out->data[out->len] = '\0';
    }
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

static const char *lookup_env(const etl_interp_t *ip, const char *name)
{
    return ip->getenv ? ip->getenv(name, ip->getenv_arg) : getenv(name);
}

/* One ${...}; body is what lies between the braces. */
static int expand_ref(interp_run_t *r, const char *body, size_t n, int depth, etl_buf_t *out)
{
    const etl_interp_t *ip = r->ip;
    int rc = -1;
    etl_buf_t tmp;
    etl_buf_init(&tmp);
    char *name = NULL;

    if (n >= 5 && memcmp(body, "file:", 5) == 0) {
        if (expand(r, body + 5, n - 5, depth + 1, &tmp) != 0)
            goto fail;
        if (tmp.oom) {
            r->nomem = 1;
            goto fail;
        }
        if (tmp.len == 0) {
            run_bad(r, "empty ${file:} for '%s' (expected ${file:path})", r->key);
            goto fail;
        }
        rc = read_file(r, tmp.data, out);
        goto fail;
    }
    if (n >= 7 && memcmp(body, "matrix.", 7) == 0) {
        const char *k = body + 7;
        size_t kn = n - 7;
        if (!is_matrix_key(k, kn)) {
            run_bad(r, "bad reference '${%.*s}' for '%s' (expected ${matrix.KEY})", (int)n, body,
                    r->key);
            goto fail;
        }
        if (ip->matrix_state == ETL_INTERP_NO_MATRIX) {
            run_bad(r, "'${matrix.%.*s}' for '%s' but the pipeline has no matrix (expected a matrix: list)",
                    (int)kn, k, r->key);
            goto fail;
        }
        if (ip->matrix_state == ETL_INTERP_IN_MATRIX) {
            run_bad(r, "'${matrix.%.*s}' for '%s' inside the matrix itself (expected ${VAR} or text)",
                    (int)kn, k, r->key);
            goto fail;
        }
        for (size_t i = 0; i < ip->nmatrix; i++) {
            if (strlen(ip->matrix[i].name) == kn && memcmp(ip->matrix[i].name, k, kn) == 0) {
                etl_buf_adds(out, ip->matrix[i].value);
                rc = 0;
                goto fail;
            }
        }
        etl_buf_t keys;
        etl_buf_init(&keys);
        for (size_t i = 0; i < ip->nmatrix; i++)
            etl_buf_printf(&keys, "%s%s", i ? ", " : "", ip->matrix[i].name);
        run_bad(r, "unknown matrix key '%.*s' in '${matrix.%.*s}' for '%s' (expected one of: %s)",
                (int)kn, k, (int)kn, k, r->key, keys.data ? keys.data : "");
        etl_buf_free(&keys);
        goto fail;
    }

    size_t vn = 0;
    while (vn < n && body[vn] != ':')
        vn++;
    int has_default = vn < n;
    if (!is_var_name(body, vn) || (has_default && (vn + 1 >= n || body[vn + 1] != '-'))) {
        run_bad(r, "bad reference '${%.*s}' for '%s' (expected " EXPECTED_FORMS ")", (int)n, body,
                r->key);
        goto fail;
    }
    name = etl_strndup(body, vn);
    if (!name) {
        r->nomem = 1;
        goto fail;
    }
    const char *v = lookup_env(ip, name);
    if (v && (*v || !has_default)) {
        etl_buf_adds(out, v);
        rc = 0;
    } else if (has_default) {
        rc = expand(r, body + vn + 2, n - vn - 2, depth + 1, out);
    } else {
        run_bad(r, "environment variable %s is not set for '%s' (expected it set, or ${%s:-default})",
                name, r->key, name);
        r->unset = 1;
    }
fail:
    free(name);
    etl_buf_free(&tmp);
    return rc;
}

static int expand(interp_run_t *r, const char *s, size_t n, int depth, etl_buf_t *out)
{
    if (depth > INTERP_MAX_DEPTH)
        return run_bad(r, "'${' nested too deep in '%s' (expected at most %d levels)", r->key,
                       INTERP_MAX_DEPTH);
    size_t i = 0, lit = 0;
    while (i < n) {
        if (s[i] != '$' || i + 1 >= n || (s[i + 1] != '$' && s[i + 1] != '{')) {
            i++;
            continue;
        }
        etl_buf_add(out, s + lit, i - lit);
        if (s[i + 1] == '$') {
            etl_buf_addc(out, '$');
            i += 2;
        } else {
            size_t end = ref_end(s, n, i);
            if (end == 0)
                return run_bad(r, "unterminated '${' in '%s' (expected " EXPECTED_FORMS ")", r->key);
            if (expand_ref(r, s + i + 2, end - i - 3, depth, out) != 0)
                return -1;
            i = end;
        }
        lit = i;
    }
    etl_buf_add(out, s + lit, n - lit);
    return 0;
}

etl_interp_status_t etl_interp(const etl_interp_t *ip, const char *key, const char *s, size_t n,
                               char **out, char *msg, size_t msglen)
{
    interp_run_t r = {ip, key ? key : "?", msg, msglen, 0, 0};
    *out = NULL;
    /* The common case: nothing to expand. */
    if (!memchr(s, '$', n)) {
        *out = etl_strndup(s, n);
        return *out ? ETL_INTERP_OK : ETL_INTERP_NOMEM;
    }
    etl_buf_t b;
    etl_buf_init(&b);
    int rc = expand(&r, s, n, 0, &b);
    int oom = r.nomem || b.oom;
    if (rc != 0 || oom) {
        etl_buf_free(&b);
        /* A message was written only when expand() failed for a reason of
         * its own; a failed append shows up as oom instead. */
        return rc == 0 || r.nomem ? ETL_INTERP_NOMEM
               : r.unset          ? ETL_INTERP_UNSET
                                  : ETL_INTERP_BAD;
    }
    *out = etl_buf_take(&b);
    return *out ? ETL_INTERP_OK : ETL_INTERP_NOMEM;
}
