/*
 * sq_json.c - a validating JSON scanner for Square's pages, without a tree.
 *
 * Why not the toolkit's etl_json_parse (jansson): on a page of 1000 catalog
 * items (1.5 MB) jansson builds and frees about a hundred nodes per item and
 * parses at ~20 MB/s here, 80 µs per item, eight times the budget of the
 * whole framework. Square's answers are read once, in order, and mostly
 * copied: so a page is validated in one pass (RFC 8259: structure, number
 * grammar, string escapes, UTF-8, no control characters, bounded depth) and
 * then read through spans of the original text. Values point into the body
 * where they can (strings without escapes, numbers exactly as sent, `data`
 * as the object's own bytes) and are converted with the same rules as
 * etl_json_value (json.h): "" is NULL for non-text types, integers exact,
 * decimal strings kept, RFC 3339 times parsed by etl_ts_parse.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sq_json.h"

#define SQ_JSON_DEPTH 128

/* ------------------------------------------------------------ validation */

typedef struct sq_vstate {
    const char *p, *end, *base;
    int depth;
    int spaced; /* whitespace between tokens somewhere inside the root */
    int nomem;
    const char *why;
    sq_index_t *ix;
} sq_vstate_t;

void sq_index_free(sq_index_t *ix)
{
    free(ix->pairs);
    free(ix->stack);
    memset(ix, 0, sizeof *ix);
}

static int sq_ws(int c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static void sq_v_skip_ws(sq_vstate_t *v)
{
    while (v->p < v->end && sq_ws((unsigned char)*v->p)) {
        v->p++;
        v->spaced = 1;
    }
}

static int sq_hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned sq_hexval(int c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* One UTF-8 sequence starting at p (a byte >= 0x80): its length, or 0. */
static size_t sq_utf8(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static int sq_v_string(sq_vstate_t *v)
{
    const unsigned char *p = (const unsigned char *)v->p + 1, *end = (const unsigned char *)v->end;
    for (;;) {
        /* the common case: plain ASCII, eight bytes at a time while none of
         * them is a quote, a backslash, a control character or >= 0x80 */
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            uint64_t q = x ^ 0x2222222222222222ull, b = x ^ 0x5C5C5C5C5C5C5C5Cull;
            uint64_t hit = ((q - 0x0101010101010101ull) & ~q) |
                           ((b - 0x0101010101010101ull) & ~b) |
                           ((x - 0x2020202020202020ull) & ~x) | x;
            if (hit & 0x8080808080808080ull)
                break;
            p += 8;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end) {
            v->why = "unterminated string";
            goto fail;
        }
        if (*p == '"') {
            v->p = (const char *)p + 1;
            return 0;
        }
        if (*p == '\\') {
            if (p + 1 >= end) {
                v->why = "unterminated string";
                goto fail;
            }
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u':
                if (end - p < 6 || !sq_hex(p[2]) || !sq_hex(p[3]) || !sq_hex(p[4]) ||
                    !sq_hex(p[5])) {
                    v->why = "bad \\u escape";
                    goto fail;
                }
                p += 6;
                break;
            default:
                v->why = "bad escape in a string";
                goto fail;
            }
        } else if (*p < 0x20) {
            v->why = "control character in a string";
            goto fail;
        } else {
            size_t n = sq_utf8(p, end);
            if (!n) {
                v->why = "invalid UTF-8 in a string";
                goto fail;
            }
            p += n;
        }
    }
fail:
    v->p = (const char *)p;
    return -1;
}

static int sq_digit(int c) { return c >= '0' && c <= '9'; }

static int sq_v_number(sq_vstate_t *v)
{
    const char *p = v->p, *end = v->end;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && sq_digit(*p))
            p++;
    } else {
        goto bad;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !sq_digit(*p))
            goto bad;
        while (p < end && sq_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !sq_digit(*p))
            goto bad;
        while (p < end && sq_digit(*p))
            p++;
    }
    v->p = p;
    return 0;
bad:
    v->p = p;
    v->why = "bad number";
    return -1;
}

static int sq_v_literal(sq_vstate_t *v, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(v->end - v->p) < n || memcmp(v->p, word, n) != 0) {
        v->why = "unexpected character";
        return -1;
    }
    v->p += n;
    return 0;
}

static int sq_v_value(sq_vstate_t *v);

/* Records where a container starts (its end comes in sq_v_close). */
static int sq_v_open(sq_vstate_t *v)
{
    sq_index_t *ix = v->ix;
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 1024;
        void *pairs = realloc(ix->pairs, cap * sizeof *ix->pairs);
        if (!pairs)
            goto nomem;
        ix->pairs = pairs;
        ix->cap = cap;
    }
    if ((size_t)v->depth >= ix->scap) {
        size_t cap = ix->scap ? ix->scap * 2 : 32;
        uint32_t *stack = realloc(ix->stack, cap * sizeof *stack);
        if (!stack)
            goto nomem;
        ix->stack = stack;
        ix->scap = cap;
    }
    ix->stack[v->depth] = (uint32_t)ix->n;
    ix->pairs[ix->n][0] = (uint32_t)(v->p - v->base);
    ix->pairs[ix->n][1] = 0;
    ix->n++;
    return 0;
nomem:
    v->nomem = 1;
    v->why = "out of memory";
    return -1;
}

static void sq_v_close(sq_vstate_t *v)
{
    v->ix->pairs[v->ix->stack[v->depth]][1] = (uint32_t)(v->p - v->base);
}

static int sq_v_container(sq_vstate_t *v, char close)
{
    if (v->depth + 1 > SQ_JSON_DEPTH) {
        v->why = "nested too deep";
        return -1;
    }
    if (sq_v_open(v) != 0)
        return -1;
    v->depth++;
    v->p++; /* { or [ */
    sq_v_skip_ws(v);
    if (v->p < v->end && *v->p == close) {
        v->depth--;
        sq_v_close(v);
        v->p++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            if (v->p >= v->end || *v->p != '"') {
                v->why = "expected a member name";
                return -1;
            }
            if (sq_v_string(v) != 0)
                return -1;
            sq_v_skip_ws(v);
            if (v->p >= v->end || *v->p != ':') {
                v->why = "expected ':'";
                return -1;
            }
            v->p++;
            sq_v_skip_ws(v);
        }
        if (sq_v_value(v) != 0)
            return -1;
        sq_v_skip_ws(v);
        if (v->p < v->end && *v->p == ',') {
            v->p++;
            sq_v_skip_ws(v);
            continue;
        }
        if (v->p < v->end && *v->p == close) {
            v->depth--;
            sq_v_close(v);
            v->p++;
            return 0;
        }
        v->why = close == '}' ? "expected ',' or '}'" : "expected ',' or ']'";
        return -1;
    }
}

static int sq_v_value(sq_vstate_t *v)
{
    if (v->p >= v->end) {
        v->why = "unexpected end of text";
        return -1;
    }
    switch (*v->p) {
    case '{': return sq_v_container(v, '}');
    case '[': return sq_v_container(v, ']');
    case '"': return sq_v_string(v);
    case 't': return sq_v_literal(v, "true");
    case 'f': return sq_v_literal(v, "false");
    case 'n': return sq_v_literal(v, "null");
    default:
        if (*v->p == '-' || sq_digit(*v->p))
            return sq_v_number(v);
        v->why = "unexpected character";
        return -1;
    }
}

etl_status_t sq_json_page(etl_ctx_t *ctx, const char *text, size_t len, const char *where,
                          sq_index_t *ix, sq_page_t *page)
{
    sq_vstate_t v = {text, text + len, text, 0, 0, 0, NULL, ix};
    memset(page, 0, sizeof *page);
    ix->n = 0;
    if (len > UINT32_MAX)
        return etl_fail(ctx, ETL_ERR_DATA, "%s: an answer of %zu bytes is too large", where, len);
    while (v.p < v.end && sq_ws((unsigned char)*v.p))
        v.p++;
    const char *start = v.p;
    if (sq_v_value(&v) == 0) {
        const char *stop = v.p;
        while (v.p < v.end && sq_ws((unsigned char)*v.p))
            v.p++;
        if (v.p == v.end) {
            if (*start != '{')
                return etl_fail(ctx, ETL_ERR_DATA, "%s: the answer is not a JSON object", where);
            page->root.p = start;
            page->root.n = (size_t)(stop - start);
            page->compact = !v.spaced;
            page->base = text;
            page->ix = ix;
            return ETL_OK;
        }
        v.why = "text after the value";
    }
    if (v.nomem)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    /* where: line and column, like etl_json_parse */
    size_t off = (size_t)(v.p - text), line = 1, col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return etl_fail(ctx, ETL_ERR_DATA, "%s: not valid JSON at line %zu, column %zu (byte %zu of "
                    "%zu): %s%s", where, line, col, off, len, v.why ? v.why : "malformed",
                    off >= len ? " (the answer ends early: truncated?)" : "");
}

/* ------------------------------------------------------------ reading */

/* After validation: whitespace and whole values are skipped without checks. */
static const char *sq_skip_ws(const char *p, const char *end)
{
    while (p < end && sq_ws((unsigned char)*p))
        p++;
    return p;
}

static const char *sq_skip_string(const char *p, const char *end)
{
    p++;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return end;
        /* a quote preceded by an odd number of backslashes is escaped */
        size_t bs = 0;
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (!(bs & 1))
            return q + 1;
        p = q + 1;
    }
    return end;
}

/* The end of the container starting at p, from the page's index. */
static const char *sq_skip_container(const sq_page_t *pg, const char *p)
{
    uint32_t off = (uint32_t)(p - pg->base);
    size_t lo = 0, hi = pg->ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pg->ix->pairs[mid][0] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return pg->base + pg->ix->pairs[lo][1] + 1; /* validated: it is there */
}

static const char *sq_skip_value(const sq_page_t *pg, const char *p, const char *end)
{
    if (p >= end)
        return end;
    if (*p == '"')
        return sq_skip_string(p, end);
    if (*p == '{' || *p == '[')
        return sq_skip_container(pg, p);
    while (p < end && *p != ',' && *p != '}' && *p != ']' && !sq_ws((unsigned char)*p))
        p++;
    return p;
}

void sq_iter_init(sq_iter_t *it, const sq_page_t *pg, sq_span_t container)
{
    it->pg = pg;
    it->p = container.p ? container.p + 1 : NULL;
    it->end = container.p ? container.p + container.n - 1 : NULL; /* before } or ] */
}

int sq_iter_member(sq_iter_t *it, sq_span_t *key, sq_span_t *val)
{
    if (!it->p)
        return 0;
    const char *p = sq_skip_ws(it->p, it->end);
    if (p < it->end && *p == ',')
        p = sq_skip_ws(p + 1, it->end);
    if (p >= it->end || *p != '"')
        return 0;
    const char *k = p;
    p = sq_skip_string(p, it->end);
    key->p = k + 1;
    key->n = (size_t)(p - k - 2);
    p = sq_skip_ws(p, it->end);
    p = sq_skip_ws(p + 1, it->end); /* ':' */
    val->p = p;
    p = sq_skip_value(it->pg, p, it->end);
    val->n = (size_t)(p - val->p);
    it->p = p;
    return 1;
}

int sq_iter_item(sq_iter_t *it, sq_span_t *val)
{
    if (!it->p)
        return 0;
    const char *p = sq_skip_ws(it->p, it->end);
    if (p < it->end && *p == ',')
        p = sq_skip_ws(p + 1, it->end);
    if (p >= it->end)
        return 0;
    val->p = p;
    p = sq_skip_value(it->pg, p, it->end);
    val->n = (size_t)(p - val->p);
    it->p = p;
    return 1;
}

int sq_key_is(sq_span_t key, const char *name, size_t len)
{
    if (key.n == len && memcmp(key.p, name, len) == 0)
        return 1;
    if (!memchr(key.p, '\\', key.n))
        return 0;
    /* an escaped member name ("\u0069d"): compare its text */
    char buf[128];
    size_t n;
    if (key.n >= sizeof buf || sq_unescape(key.p, key.n, buf, &n) != 0)
        return 0;
    return n == len && memcmp(buf, name, len) == 0;
}

int sq_member(const sq_page_t *pg, sq_span_t obj, const char *name, sq_span_t *val)
{
    sq_iter_t it;
    sq_span_t k, v;
    size_t len = strlen(name);
    int found = 0;
    if (!obj.p || *obj.p != '{')
        return 0;
    sq_iter_init(&it, pg, obj);
    while (sq_iter_member(&it, &k, &v)) {
        if (sq_key_is(k, name, len)) {
            *val = v; /* the last one wins, as in jansson */
            found = 1;
        }
    }
    return found;
}

int sq_members(const sq_page_t *pg, sq_span_t obj, const char *const *names, sq_span_t *vals,
               size_t n)
{
    sq_iter_t it;
    sq_span_t k, v;
    int found = 0;
    for (size_t i = 0; i < n; i++)
        vals[i].p = NULL, vals[i].n = 0;
    if (!obj.p || *obj.p != '{')
        return 0;
    sq_iter_init(&it, pg, obj);
    while (sq_iter_member(&it, &k, &v)) {
        for (size_t i = 0; i < n; i++) {
            if (sq_key_is(k, names[i], strlen(names[i]))) {
                if (!vals[i].p)
                    found++;
                vals[i] = v;
                break;
            }
        }
    }
    return found;
}

/* ------------------------------------------------------------ strings */

static void sq_put_utf8(char **w, unsigned cp)
{
    unsigned char *o = (unsigned char *)*w;
    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | (cp >> 6));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (cp >> 12));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | (cp >> 18));
        *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *w = (char *)o;
}

int sq_unescape(const char *s, size_t n, char *out, size_t *outlen)
{
    char *w = out;
    const char *end = s + n;
    while (s < end) {
        if (*s != '\\') {
            *w++ = *s++;
            continue;
        }
        char c = s[1];
        s += 2;
        switch (c) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++)
                cp = cp << 4 | sq_hexval((unsigned char)s[i]);
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && end - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                unsigned lo = 0;
                for (int i = 2; i < 6; i++)
                    lo = lo << 4 | sq_hexval((unsigned char)s[i]);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s += 6;
                }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF)
                return -1; /* a lone surrogate is no text */
            sq_put_utf8(&w, cp);
            break;
        }
        default: *w++ = c; break; /* " \ / */
        }
    }
    *outlen = (size_t)(w - out);
    return 0;
}

/* A string span's text: in place when it has no escapes, else unescaped
 * into the scratch (an escape never grows the text). */
static int sq_text(sq_span_t v, sq_conv_t *cv, const char **s, size_t *n)
{
    const char *body = v.p + 1;
    size_t len = v.n - 2;
    if (!memchr(body, '\\', len)) {
        *s = body;
        *n = len;
        return 0;
    }
    if (len + 1 > cv->cap) {
        char *b = realloc(cv->buf, len + 1);
        if (!b)
            return -2;
        cv->buf = b;
        cv->cap = len + 1;
    }
    if (sq_unescape(body, len, cv->buf, n) != 0)
        return -1;
    if (!(*s = etl_json_scratch_dup(cv->scratch, cv->buf, *n)))
        return -2;
    return 0;
}

char *sq_strdup(sq_span_t v)
{
    if (!v.p || *v.p != '"')
        return NULL;
    char *out = malloc(v.n);
    size_t n;
    if (!out || sq_unescape(v.p + 1, v.n - 2, out, &n) != 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

/* ------------------------------------------------------------ values */

static etl_status_t sq_mismatch(etl_ctx_t *ctx, sq_span_t v, etl_type_t type, const char *path,
                                const char *why)
{
    const char *kind = *v.p == '"' ? "the string" : *v.p == '{' ? "an object"
                       : *v.p == '[' ? "an array" : *v.p == 't' ? "true"
                       : *v.p == 'f' ? "false" : "the number";
    int shown = *v.p == '"' || *v.p == '-' || sq_digit(*v.p);
    int n = v.n > 60 ? 60 : (int)v.n;
    return etl_fail(ctx, ETL_ERR_DATA, "JSON '%s': cannot make %s of %s%s%.*s%s%s%s",
                    path ? path : "$", etl_type_name(type), kind, shown ? " " : "",
                    shown ? n : 0, v.p, shown && v.n > 60 ? "..." : "", why ? ": " : "",
                    why ? why : "");
}

/* Digits with an optional sign, exactly, within 64 bits (as core's rule). */
static int sq_int_text(const char *s, size_t n, int64_t *out)
{
    int neg = n && s[0] == '-';
    size_t i = (size_t)(n && (s[0] == '-' || s[0] == '+'));
    if (i >= n)
        return -1;
    uint64_t x = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!sq_digit(s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (lim - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = neg ? (int64_t)(0 - x) : (int64_t)x;
    return 0;
}

/* A decimal number in text: [-+]digits[.digits][e[-+]digits]. */
static int sq_decimal_text(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && sq_digit(s[i]))
        i++, d++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && sq_digit(s[i]))
            i++, d++;
    }
    if (!d)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t e = 0;
        while (i < n && sq_digit(s[i]))
            i++, e++;
        if (!e)
            return 0;
    }
    return i == n;
}

static int sq_double_text(const char *s, size_t n, double *out)
{
    char buf[64];
    /* the same rule as core's: no hex, no spaces, no inf or nan */
    if (!n || n >= sizeof buf || !sq_decimal_text(s, n))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (*end || end == buf || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}


/* v copied without the whitespace between tokens, into the scratch. */
static int sq_compact(sq_span_t v, sq_conv_t *cv, const char **s, size_t *n)
{
    if (v.n + 1 > cv->cap) {
        char *b = realloc(cv->buf, v.n + 1);
        if (!b)
            return -2;
        cv->buf = b;
        cv->cap = v.n + 1;
    }
    char *w = cv->buf;
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
        if (*p == '"') {
            const char *q = sq_skip_string(p, end);
            memcpy(w, p, (size_t)(q - p));
            w += q - p;
            p = q;
        } else if (sq_ws((unsigned char)*p)) {
            p++;
        } else {
            *w++ = *p++;
        }
    }
    *n = (size_t)(w - cv->buf);
    return (*s = etl_json_scratch_dup(cv->scratch, cv->buf, *n)) ? 0 : -2;
}

etl_status_t sq_value(etl_ctx_t *ctx, sq_conv_t *cv, sq_span_t v, etl_type_t type,
                      const char *path, etl_value_t *out)
{
    const char *s;
    size_t n;
    int rc;
    *out = etl_null();
    if (!v.p || !v.n || *v.p == 'n' || type == ETL_T_NULL)
        return ETL_OK; /* absent or null */
    char k = *v.p;
    int str = k == '"', num = k == '-' || sq_digit(k);
    if (v.n > UINT32_MAX)
        return sq_mismatch(ctx, v, type, path, "longer than 4 GiB");
    if (type == ETL_T_JSON) {
        if (cv->compact) {
            *out = etl_str(ETL_T_JSON, v.p, v.n);
            return ETL_OK;
        }
        if ((rc = sq_compact(v, cv, &s, &n)) != 0)
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        *out = etl_str(ETL_T_JSON, s, n);
        return ETL_OK;
    }
    if (str) {
        if ((rc = sq_text(v, cv, &s, &n)) != 0)
            return rc == -2 ? etl_fail(ctx, ETL_ERR_NOMEM, "out of memory")
                            : sq_mismatch(ctx, v, type, path, "a lone UTF-16 surrogate");
        /* "" means "no value" for every type that is not text */
        if (!n && type != ETL_T_TEXT && type != ETL_T_BLOB)
            return ETL_OK;
    } else if (num || k == 't' || k == 'f') {
        s = v.p;
        n = v.n;
    } else {
        s = NULL;
        n = 0;
    }
    switch (type) {
    case ETL_T_TEXT:
        if (str || num) {
            *out = etl_str(ETL_T_TEXT, s, n);
            return ETL_OK;
        }
        if (k == 't' || k == 'f') {
            *out = etl_text(k == 't' ? "true" : "false", k == 't' ? 4 : 5);
            return ETL_OK;
        }
        if ((rc = cv->compact ? 0 : sq_compact(v, cv, &s, &n)) != 0)
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        *out = cv->compact ? etl_str(ETL_T_TEXT, v.p, v.n) : etl_str(ETL_T_TEXT, s, n);
        return ETL_OK;
    case ETL_T_INT: {
        int64_t i;
        if ((str || num) && sq_int_text(s, n, &i) == 0) {
            *out = etl_int(i);
            return ETL_OK;
        }
        double d;
        if (num && sq_double_text(s, n, &d) == 0 && d == floor(d) && fabs(d) <= 9007199254740992.0) {
            *out = etl_int((int64_t)d);
            return ETL_OK;
        }
        return sq_mismatch(ctx, v, type, path, str || num ? "not a whole number within 64 bits"
                                                          : NULL);
    }
    case ETL_T_BOOL:
        if (k == 't' || k == 'f') {
            *out = etl_bool(k == 't');
            return ETL_OK;
        }
        if (str && ((n == 4 && strncasecmp(s, "true", 4) == 0) ||
                    (n == 5 && strncasecmp(s, "false", 5) == 0))) {
            *out = etl_bool(n == 4);
            return ETL_OK;
        }
        if (num && n == 1 && (*s == '0' || *s == '1')) {
            *out = etl_bool(*s == '1');
            return ETL_OK;
        }
        return sq_mismatch(ctx, v, type, path, NULL);
    case ETL_T_DOUBLE: {
        double d;
        if ((str || num) && sq_double_text(s, n, &d) == 0) {
            *out = etl_double(d);
            return ETL_OK;
        }
        return sq_mismatch(ctx, v, type, path, NULL);
    }
    case ETL_T_NUMERIC:
        if (num || (str && sq_decimal_text(s, n))) {
            *out = etl_str(ETL_T_NUMERIC, s, n); /* exactly as Square wrote it */
            return ETL_OK;
        }
        return sq_mismatch(ctx, v, type, path, str ? "not a decimal number" : NULL);
    case ETL_T_BLOB:
        if (str) {
            *out = etl_str(ETL_T_BLOB, s, n);
            return ETL_OK;
        }
        return sq_mismatch(ctx, v, type, path, NULL);
    case ETL_T_TIMESTAMP: {
        int64_t us;
        if (!str)
            return sq_mismatch(ctx, v, type, path, "timestamps are RFC 3339 text");
        if (etl_ts_parse(s, n, &us) != 0)
            return sq_mismatch(ctx, v, type, path, "not an RFC 3339 timestamp");
        *out = etl_ts(us);
        return ETL_OK;
    }
    default:
        return etl_fail(ctx, ETL_ERR_INTERNAL, "JSON '%s': unknown value type %d",
                        path ? path : "$", (int)type);
    }
}
