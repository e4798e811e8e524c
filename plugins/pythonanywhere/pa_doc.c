/*
 * pa_doc.c - a row as the JSON item the remote store takes.
 *
 * Column -> field of the same name, in schema order. Values:
 *   NULL -> null; bool -> true/false; int -> a JSON integer;
 *   double -> a JSON number in its shortest exact form (not finite: null);
 *   numeric -> a JSON string of its exact text ("12.50"): the API's decimal
 *     fields take strings, and a string cannot lose a digit;
 *   text -> a JSON string; blob -> a base64 string;
 *   timestamp -> "YYYY-MM-DDTHH:MM:SS[.ffffff]Z";
 *   json -> embedded as JSON, not as a string: the arrays a pipeline's
 *     `nest:` builds (a receipt's `sales` and `payments`) arrive as arrays.
 * The text is built by hand rather than through jansson so that doubles
 * keep their shortest form (jansson writes 0.10000000000000001) and json
 * columns are embedded without being rewritten.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pa.h"

/* ------------------------------------------------------------ buffer */

void pa_buf_free(pa_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int pa_buf_reserve(pa_buf_t *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void pa_buf_add(pa_buf_t *b, const void *p, size_t n)
{
    if (pa_buf_reserve(b, n) != 0)
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void pa_buf_adds(pa_buf_t *b, const char *s) { pa_buf_add(b, s, strlen(s)); }

void pa_buf_addc(pa_buf_t *b, char c) { pa_buf_add(b, &c, 1); }

void pa_buf_json_str(pa_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    pa_buf_addc(b, '"');
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        pa_buf_add(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            pa_buf_add(b, esc, 6);
            continue;
        }
        pa_buf_add(b, esc, 2);
    }
    pa_buf_add(b, s + run, n - run);
    pa_buf_addc(b, '"');
}

/* ------------------------------------------------------------ values */

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
static int pa_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            k = 1, cp = c & 0x1Fu;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 2, cp = c & 0x0Fu;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3, cp = c & 0x07u;
        else
            return 0;
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3Fu);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void pa_base64(pa_buf_t *b, const unsigned char *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pa_buf_addc(b, '"');
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char out[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63],
                       i + 1 < n ? tab[(v >> 6) & 63] : '=', i + 2 < n ? tab[v & 63] : '='};
        pa_buf_add(b, out, 4);
    }
    pa_buf_addc(b, '"');
}

/* Appends one value; -1 with why set when it cannot be sent. */
static int pa_value(pa_buf_t *b, const etl_value_t *v, const char *col, char *why, size_t whylen)
{
    char tmp[64];
    const char *t;
    size_t n;
    switch (v->type) {
    case ETL_T_NULL:
        pa_buf_adds(b, "null");
        return 0;
    case ETL_T_BOOL:
        pa_buf_adds(b, v->v.i ? "true" : "false");
        return 0;
    case ETL_T_INT:
        n = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v->v.i);
        pa_buf_add(b, tmp, n);
        return 0;
    case ETL_T_DOUBLE:
        if (!isfinite(v->v.d)) {
            pa_buf_adds(b, "null"); /* JSON has no NaN or infinity */
            return 0;
        }
        n = etl_value_text(v, tmp, sizeof tmp, &t); /* shortest exact form */
        pa_buf_add(b, t, n);
        return 0;
    case ETL_T_TIMESTAMP:
        n = etl_value_text(v, tmp, sizeof tmp, &t);
        pa_buf_json_str(b, t, n);
        return 0;
    case ETL_T_BLOB:
        pa_base64(b, (const unsigned char *)v->v.s, v->len);
        return 0;
    case ETL_T_JSON: {
        json_error_t err;
        json_t *j = v->len ? json_loadb(v->v.s, v->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err)
                           : NULL;
        if (!j) {
            snprintf(why, whylen, "column '%s' is not valid JSON (%s)", col,
                     v->len ? err.text : "empty");
            return -1;
        }
        json_decref(j);
        pa_buf_add(b, v->v.s, v->len);
        return 0;
    }
    case ETL_T_NUMERIC:
    case ETL_T_TEXT:
        if (!pa_utf8((const unsigned char *)v->v.s, v->len)) {
            snprintf(why, whylen, "column '%s' is not valid UTF-8 text", col);
            return -1;
        }
        pa_buf_json_str(b, v->v.s ? v->v.s : "", v->len);
        return 0;
    default:
        snprintf(why, whylen, "column '%s' has a value of unknown type %d", col, (int)v->type);
        return -1;
    }
}

int pa_item(pa_buf_t *b, const etl_schema_t *schema, const etl_value_t *row, char *why,
            size_t whylen)
{
    size_t start = b->len, nc = etl_schema_ncols(schema);
    int first = 1;
    pa_buf_addc(b, '{');
    for (size_t i = 0; i < nc; i++) {
        const etl_column_t *c = etl_schema_col(schema, i);
        if (c->flags & (ETL_COL_HIDDEN | ETL_COL_GENERATED))
            continue;
        if (!first)
            pa_buf_addc(b, ',');
        first = 0;
        pa_buf_json_str(b, c->name, strlen(c->name));
        pa_buf_addc(b, ':');
        if (pa_value(b, &row[i], c->name, why, whylen) != 0) {
            b->len = start;
            if (b->data)
                b->data[start] = '\0';
            return -1;
        }
    }
    pa_buf_addc(b, '}');
    return 0;
}
