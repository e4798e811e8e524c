/* sqlbuf.c - building SQL text with quoted identifiers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"

void sb_init(sqlbuf_t *b) { memset(b, 0, sizeof *b); }

void sb_free(sqlbuf_t *b)
{
    free(b->s);
    sb_init(b);
}

void sb_reset(sqlbuf_t *b)
{
    b->len = 0;
    if (b->s)
        b->s[0] = '\0';
}

static int grow(sqlbuf_t *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->s = p;
    b->cap = cap;
    return 0;
}

void sb_addn(sqlbuf_t *b, const char *s, size_t n)
{
    if (grow(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_add(sqlbuf_t *b, const char *s) { sb_addn(b, s, strlen(s)); }

void sb_printf(sqlbuf_t *b, const char *fmt, ...)
{
    va_list ap, cp;
    va_start(ap, fmt);
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n >= 0 && grow(b, (size_t)n) == 0) {
        vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    }
    va_end(ap);
}

void sb_ident(sqlbuf_t *b, const char *name)
{
    sb_addn(b, "\"", 1);
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            sb_addn(b, "\"", 1);
        sb_addn(b, p, 1);
    }
    sb_addn(b, "\"", 1);
}

const char *sb_str(const sqlbuf_t *b) { return b->s && !b->oom ? b->s : ""; }

const char *keep_dup(keep_t *k, const char *s, size_t n)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        char **v = realloc(k->v, cap * sizeof *v);
        if (!v)
            return NULL;
        k->v = v;
        k->cap = cap;
    }
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    k->v[k->n++] = p;
    return p;
}

void keep_clear(keep_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    k->n = 0;
}
