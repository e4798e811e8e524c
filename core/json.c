/* json.c - JSON helpers for plugins (etl/json.h): parsing with located
 * errors, path lookup, exact typed conversion into record values, compact
 * serialization with shortest-exact reals, and the row builder. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "etl/json.h"
#include "util.h"

/* ------------------------------------------------------------ scratch */

#define CHUNK_MIN ((size_t)16 << 10)

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    char data[];
} chunk_t;

struct etl_json_scratch {
    chunk_t *first, *cur; /* chunks before cur are full; after it, free for reuse */
    etl_buf_t tmp;        /* where serialization happens before its copy */
};

etl_json_scratch_t *etl_json_scratch_new(void)
{
    etl_json_scratch_t *s = calloc(1, sizeof *s);
    if (s)
        etl_buf_init(&s->tmp);
    return s;
}

void etl_json_scratch_reset(etl_json_scratch_t *s)
{
    if (!s)
        return;
    for (chunk_t *c = s->first; c; c = c->next)
        c->used = 0;
    s->cur = s->first;
}

void etl_json_scratch_free(etl_json_scratch_t *s)
{
    if (!s)
        return;
    chunk_t *c = s->first;
    while (c) {
        chunk_t *n = c->next;
        free(c);
        c = n;
    }
    etl_buf_free(&s->tmp);
    free(s);
}

/* n bytes that stay put until the next reset; NULL on no memory. */
static char *scratch_alloc(etl_json_scratch_t *s, size_t n)
{
    while (s->cur && s->cur->cap - s->cur->used < n) {
        if (!s->cur->next)
            break;
        s->cur = s->cur->next;
    }
    chunk_t *c = s->cur;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
        chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->cap = cap;
        nc->used = 0;
        /* insert after cur, so the free chunks after it stay reachable */
        if (c) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = s->first;
            s->first = nc;
        }
        s->cur = c = nc;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

const char *etl_json_scratch_dup(etl_json_scratch_t *s, const char *p, size_t n)
{
    char *d = scratch_alloc(s, n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

const char *etl_json_scratch_printf(etl_json_scratch_t *s, size_t *len, const char *fmt, ...)
{
    etl_buf_reset(&s->tmp);
    va_list ap;
    va_start(ap, fmt);
    etl_buf_vprintf(&s->tmp, fmt, ap);
    va_end(ap);
    if (s->tmp.oom)
        return NULL;
    if (len)
        *len = s->tmp.len;
    return etl_json_scratch_dup(s, s->tmp.data ? s->tmp.data : "", s->tmp.len);
}

/* ------------------------------------------------------------ parsing */

etl_status_t etl_json_parse(etl_ctx_t *ctx, const char *text, size_t len, const char *what,
                            json_t **out)
{
    json_error_t e;
    *out = json_loadb(text ? text : "", text ? len : 0, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (*out)
        return ETL_OK;
    return etl_fail(ctx, ETL_ERR_DATA, "%s: not valid JSON at line %d, column %d: %s",
                    what ? what : "JSON", e.line, e.column, e.text);
}

/* ------------------------------------------------------------ paths */

static json_t *member(const json_t *obj, const char *key, size_t n)
{
    if (!json_is_object(obj))
        return NULL;
#if JANSSON_VERSION_HEX >= 0x020e00
    return json_object_getn(obj, key, n);
#else
    char buf[256];
    char *k = n < sizeof buf ? buf : malloc(n + 1);
    if (!k)
        return NULL;
    memcpy(k, key, n);
    k[n] = '\0';
    json_t *v = json_object_get(obj, k);
    if (k != buf)
        free(k);
    return v;
#endif
}

/* Walks path from root. 0 with *out (NULL: absent), or -1: malformed path. */
static int walk(const json_t *root, const char *path, json_t **out)
{
    const json_t *cur = root;
    const char *p = path;
    *out = NULL;
    /* "$", "$.a", "$[0]": the root; "$type" is a member's name */
    if (p && p[0] == '$' && (!p[1] || p[1] == '.' || p[1] == '[')) {
        p++;
        if (*p == '.' && !*++p)
            return -1;
    }
    if (!p || !*p) {
        *out = (json_t *)root;
        return 0;
    }
    etl_buf_t key;
    etl_buf_init(&key);
    int rc = 0;
    while (*p) {
        if (*p == '[') {
            p++;
            if (*p == '"') {
                etl_buf_reset(&key);
                etl_buf_add(&key, "", 0);
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1])
                        p++;
                    etl_buf_addc(&key, *p++);
                }
                if (*p != '"' || p[1] != ']') {
                    rc = -1;
                    break;
                }
                p += 2;
                cur = member(cur, key.data, key.len);
            } else {
                int neg = *p == '-';
                if (neg)
                    p++;
                if (!isdigit((unsigned char)*p)) {
                    rc = -1;
                    break;
                }
                size_t idx = 0;
                while (isdigit((unsigned char)*p)) {
                    if (idx > ((size_t)-1) / 20) {
                        rc = -1;
                        break;
                    }
                    idx = idx * 10 + (size_t)(*p++ - '0');
                }
                if (rc || *p != ']') {
                    rc = -1;
                    break;
                }
                p++;
                if (!json_is_array(cur)) {
                    cur = NULL;
                } else {
                    size_t size = json_array_size(cur);
                    if (neg)
                        cur = idx >= 1 && idx <= size ? json_array_get(cur, size - idx) : NULL;
                    else
                        cur = json_array_get(cur, idx);
                }
            }
        } else {
            const char *s = p;
            while (*p && *p != '.' && *p != '[')
                p++;
            if (p == s) {
                rc = -1;
                break;
            }
            cur = member(cur, s, (size_t)(p - s));
        }
        if (*p == '.') {
            p++;
            if (!*p || *p == '.' || *p == '[') {
                rc = -1;
                break;
            }
        }
    }
    etl_buf_free(&key);
    if (rc == 0)
        *out = (json_t *)cur;
    return rc;
}

json_t *etl_json_get(const json_t *root, const char *path)
{
    json_t *v;
    if (!root || walk(root, path, &v) != 0)
        return NULL;
    return v;
}

const char *etl_json_strn(const json_t *root, const char *path, size_t *len)
{
    json_t *v = etl_json_get(root, path);
    if (!json_is_string(v))
        return NULL;
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

const char *etl_json_str(const json_t *root, const char *path)
{
    return etl_json_strn(root, path, NULL);
}

/* ------------------------------------------------------------ scalars */

/* Whole-string decimal integer, exact; 0 or -1. */
static int parse_int_text(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == n)
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* A decimal number as text: [+-] digits [. digits] [e [+-] digits]. */
static int is_decimal_text(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && isdigit((unsigned char)s[i]))
        i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && isdigit((unsigned char)s[i]))
            i++, digits++;
    }
    if (!digits)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t e = 0;
        while (i < n && isdigit((unsigned char)s[i]))
            i++, e++;
        if (!e)
            return 0;
    }
    return i == n;
}

static int parse_double_text(const char *s, size_t n, double *out)
{
    char buf[128];
    if (n == 0 || n >= sizeof buf || !is_decimal_text(s, n))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    char *end;
    double d = strtod(buf, &end);
    if (*end || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

static int conv_int(const json_t *v, int64_t *out)
{
    if (!v || json_is_null(v))
        return 1;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v))
        return parse_int_text(json_string_value(v), json_string_length(v), out) == 0 ? 0 : -1;
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* only where a double is exact: an integral value within 2^53 */
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return -1;
}

static int conv_double(const json_t *v, double *out)
{
    if (!v || json_is_null(v))
        return 1;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (json_is_string(v))
        return parse_double_text(json_string_value(v), json_string_length(v), out) == 0 ? 0 : -1;
    return -1;
}

static int conv_bool(const json_t *v, int *out)
{
    if (!v || json_is_null(v))
        return 1;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0) {
            *out = tolower((unsigned char)s[0]) == 't';
            return 0;
        }
    }
    return -1;
}

int etl_json_int(const json_t *root, const char *path, int64_t *out)
{
    return conv_int(etl_json_get(root, path), out);
}

int etl_json_double(const json_t *root, const char *path, double *out)
{
    return conv_double(etl_json_get(root, path), out);
}

int etl_json_bool(const json_t *root, const char *path, int *out)
{
    return conv_bool(etl_json_get(root, path), out);
}

/* ------------------------------------------------------------ serializing */

/* The shortest text that reads back as exactly d ("409.94", not
 * "409.93999999999999773"), with ".0" on integral values so it stays a real. */
static void add_real(etl_buf_t *b, double d)
{
    char buf[40];
    if (!isfinite(d)) {
        etl_buf_adds(b, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    etl_buf_adds(b, buf);
    if (!strpbrk(buf, ".eE"))
        etl_buf_adds(b, ".0");
}

static void dump(etl_buf_t *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        etl_buf_addc(b, '{');
        int first = 1;
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) {
            if (!first)
                etl_buf_addc(b, ',');
            first = 0;
            etl_buf_json_str(b, k, strlen(k));
            etl_buf_addc(b, ':');
            dump(b, m);
        }
        etl_buf_addc(b, '}');
        break;
    }
    case JSON_ARRAY: {
        etl_buf_addc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                etl_buf_addc(b, ',');
            dump(b, json_array_get(v, i));
        }
        etl_buf_addc(b, ']');
        break;
    }
    case JSON_STRING:
        etl_buf_json_str(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        etl_buf_printf(b, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        add_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        etl_buf_adds(b, "true");
        break;
    case JSON_FALSE:
        etl_buf_adds(b, "false");
        break;
    default:
        etl_buf_adds(b, "null");
    }
}

/* tmp -> scratch, as a value of type t. */
static etl_status_t from_tmp(etl_ctx_t *ctx, etl_json_scratch_t *s, etl_type_t t,
                             etl_value_t *out)
{
    const char *p = s->tmp.oom ? NULL
                               : etl_json_scratch_dup(s, s->tmp.data ? s->tmp.data : "",
                                                      s->tmp.len);
    if (!p)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    if (s->tmp.len > UINT32_MAX)
        return etl_fail(ctx, ETL_ERR_DATA, "JSON value of %zu bytes is too large", s->tmp.len);
    *out = etl_str(t, p, s->tmp.len);
    return ETL_OK;
}

etl_status_t etl_json_dump(etl_ctx_t *ctx, const json_t *v, etl_json_scratch_t *s,
                           etl_value_t *out)
{
    etl_buf_reset(&s->tmp);
    if (v)
        dump(&s->tmp, v);
    else
        etl_buf_adds(&s->tmp, "null");
    return from_tmp(ctx, s, ETL_T_JSON, out);
}

/* ------------------------------------------------------------ values */

static const char *kind_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "the string";
    case JSON_INTEGER: return "the integer";
    case JSON_REAL: return "the number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

static etl_status_t mismatch(etl_ctx_t *ctx, const json_t *v, etl_type_t type, const char *path,
                             const char *why)
{
    etl_buf_t shown;
    etl_buf_init(&shown);
    if (json_is_string(v) || json_is_number(v)) {
        etl_buf_addc(&shown, ' ');
        size_t n = json_is_string(v) ? json_string_length(v) : 0;
        if (json_is_string(v))
            etl_buf_json_str(&shown, json_string_value(v), n > 60 ? 60 : n);
        else
            dump(&shown, v);
        if (n > 60)
            etl_buf_adds(&shown, "...");
    }
    etl_status_t st = etl_fail(ctx, ETL_ERR_DATA, "JSON '%s': cannot make %s of %s%s%s%s",
                               path ? path : "$", etl_type_name(type), kind_name(v),
                               shown.data ? shown.data : "", why ? ": " : "", why ? why : "");
    etl_buf_free(&shown);
    return st;
}

etl_status_t etl_json_value(etl_ctx_t *ctx, const json_t *v, etl_type_t type,
                            etl_json_scratch_t *s, const char *path, etl_value_t *out)
{
    *out = etl_null();
    if (!v || json_is_null(v) || type == ETL_T_NULL)
        return ETL_OK;
    const char *str = json_is_string(v) ? json_string_value(v) : NULL;
    size_t slen = str ? json_string_length(v) : 0;
    if (str && slen > UINT32_MAX)
        return mismatch(ctx, v, type, path, "longer than 4 GiB");
    /* "" means "no value" for every type that is not text */
    if (str && slen == 0 && type != ETL_T_TEXT && type != ETL_T_BLOB && type != ETL_T_JSON)
        return ETL_OK;
    int rc;
    switch (type) {
    case ETL_T_BOOL: {
        int b = 0;
        if ((rc = conv_bool(v, &b)) != 0)
            return mismatch(ctx, v, type, path, NULL);
        *out = etl_bool(b);
        return ETL_OK;
    }
    case ETL_T_INT: {
        int64_t i = 0;
        if ((rc = conv_int(v, &i)) != 0)
            return mismatch(ctx, v, type, path,
                            str ? "not a whole number within 64 bits" : NULL);
        *out = etl_int(i);
        return ETL_OK;
    }
    case ETL_T_DOUBLE: {
        double d = 0;
        if ((rc = conv_double(v, &d)) != 0)
            return mismatch(ctx, v, type, path, NULL);
        *out = etl_double(d);
        return ETL_OK;
    }
    case ETL_T_NUMERIC:
        if (str) {
            if (!is_decimal_text(str, slen))
                return mismatch(ctx, v, type, path, "not a decimal number");
            *out = etl_str(ETL_T_NUMERIC, str, slen);
            return ETL_OK;
        }
        if (!json_is_number(v))
            return mismatch(ctx, v, type, path, NULL);
        etl_buf_reset(&s->tmp);
        dump(&s->tmp, v);
        return from_tmp(ctx, s, ETL_T_NUMERIC, out);
    case ETL_T_TEXT:
        if (str) {
            *out = etl_str(ETL_T_TEXT, str, slen);
            return ETL_OK;
        }
        if (json_is_boolean(v)) {
            const char *t = json_is_true(v) ? "true" : "false";
            *out = etl_text(t, strlen(t));
            return ETL_OK;
        }
        etl_buf_reset(&s->tmp);
        dump(&s->tmp, v);
        return from_tmp(ctx, s, ETL_T_TEXT, out);
    case ETL_T_BLOB:
        if (!str)
            return mismatch(ctx, v, type, path, NULL);
        *out = etl_str(ETL_T_BLOB, str, slen);
        return ETL_OK;
    case ETL_T_JSON:
        return etl_json_dump(ctx, v, s, out);
    case ETL_T_TIMESTAMP: {
        int64_t us;
        if (!str)
            return mismatch(ctx, v, type, path, "timestamps are RFC 3339 text");
        if (etl_ts_parse(str, slen, &us) != 0)
            return mismatch(ctx, v, type, path, "not an RFC 3339 timestamp");
        *out = etl_ts(us);
        return ETL_OK;
    }
    default:
        return etl_fail(ctx, ETL_ERR_INTERNAL, "JSON '%s': unknown value type %d",
                        path ? path : "$", (int)type);
    }
}

/* ------------------------------------------------------------ rows */

etl_status_t etl_json_row(etl_ctx_t *ctx, const json_t *obj, const etl_json_field_t *fields,
                          const etl_schema_t *schema, unsigned flags, etl_json_scratch_t *s,
                          etl_value_t *row)
{
    size_t n = etl_schema_ncols(schema);
    for (size_t i = 0; i < n; i++)
        row[i] = etl_null();
    for (const etl_json_field_t *f = fields; f && f->column; f++) {
        int idx = etl_schema_find(schema, f->column);
        if (idx < 0)
            continue;
        const etl_column_t *col = etl_schema_col(schema, (size_t)idx);
        etl_type_t type = f->type != ETL_T_NULL ? f->type : col->type;
        const char *path = f->path ? f->path : f->column;
        json_t *v;
        if (walk(obj, path, &v) != 0)
            return etl_fail(ctx, ETL_ERR_INTERNAL, "column '%s': malformed JSON path '%s'",
                            f->column, path);
        if ((f->flags & ETL_JSON_REQUIRED) && (!v || json_is_null(v)))
            return etl_fail(ctx, ETL_ERR_DATA, "column '%s': JSON '%s' is %s but required",
                            f->column, path, v ? "null" : "missing");
        etl_status_t st = etl_json_value(ctx, v, type, s, path, &row[idx]);
        if (st != ETL_OK) {
            char msg[1024];
            etl_strlcpy(msg, etl_ctx_error(ctx), sizeof msg);
            return etl_fail(ctx, st, "column '%s': %s", f->column, msg);
        }
    }
    if (!(flags & ETL_JSON_ROW_BY_NAME) || !json_is_object(obj))
        return ETL_OK;
    for (size_t i = 0; i < n; i++) {
        const etl_column_t *col = etl_schema_col(schema, i);
        int named = 0;
        for (const etl_json_field_t *f = fields; f && f->column && !named; f++)
            named = strcmp(f->column, col->name) == 0;
        if (named)
            continue;
        json_t *v = json_object_get(obj, col->name);
        if (!v)
            continue;
        etl_status_t st = etl_json_value(ctx, v, col->type, s, col->name, &row[i]);
        if (st != ETL_OK) {
            char msg[1024];
            etl_strlcpy(msg, etl_ctx_error(ctx), sizeof msg);
            return etl_fail(ctx, st, "column '%s': %s", col->name, msg);
        }
    }
    return ETL_OK;
}
