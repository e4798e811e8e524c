/* row.c - key text, content hashes and the JSON form of rows. */
#include "row.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ keys */

static void add_escaped(etl_buf_t *out, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':' || s[i] == '\\') {
            etl_buf_add(out, s + i - run, run);
            run = 0;
            etl_buf_addc(out, '\\');
        }
        run++;
    }
    etl_buf_add(out, s + n - run, run);
}

int etl_row_key(etl_buf_t *out, const etl_value_t *row, const int *cols, size_t ncols)
{
    char tmp[64];
    const char *t;
    if (ncols == 1) {
        const etl_value_t *v = &row[cols[0]];
        if (v->type == ETL_T_NULL)
            return -1;
        size_t n = etl_value_text(v, tmp, sizeof tmp, &t);
        etl_buf_add(out, t, n);
        return 0;
    }
    for (size_t i = 0; i < ncols; i++) {
        const etl_value_t *v = &row[cols[i]];
        if (i)
            etl_buf_addc(out, ':');
        if (v->type == ETL_T_NULL) {
            etl_buf_add(out, "\\N", 2);
            continue;
        }
        size_t n = etl_value_text(v, tmp, sizeof tmp, &t);
        add_escaped(out, t, n);
    }
    return 0;
}

int etl_key_split(const char *key, size_t len, etl_arena_t *a, const char **parts, size_t *lens,
                  int *is_null, size_t max)
{
    size_t n = 0, i = 0;
    char *buf = etl_arena_alloc(a, len + 1);
    if (!buf)
        return -1;
    while (n < max) {
        size_t o = 0;
        char *start = buf;
        int null = 0;
        if (i + 1 < len + 1 && i + 2 <= len && key[i] == '\\' && key[i + 1] == 'N' &&
            (i + 2 == len || key[i + 2] == ':')) {
            null = 1;
            i += 2;
        }
        while (i < len && key[i] != ':') {
            if (key[i] == '\\' && i + 1 < len)
                i++;
            start[o++] = key[i++];
        }
        start[o] = '\0';
        parts[n] = start;
        lens[n] = o;
        is_null[n] = null;
        n++;
        buf += o + 1;
        if (i >= len)
            return (int)n;
        i++; /* the ':' */
    }
    return -1;
}

/* One key part back to a value of its column's type; text when it does not
 * read as one (SQLite keys can hold anything). */
static etl_value_t key_part(const char *t, size_t n, etl_type_t type)
{
    int64_t i;
    int b;
    switch (type) {
    case ETL_T_TIMESTAMP:
        if (etl_ts_parse(t, n, &i) == 0)
            return etl_ts(i);
        break;
    case ETL_T_BOOL:
        if (etl_parse_bool(t, &b) == 0)
            return etl_bool(b);
        /* fall through */
    case ETL_T_INT:
        if (etl_parse_i64(t, &i) == 0)
            return etl_int(i);
        break;
    case ETL_T_DOUBLE: {
        char *end;
        double d = strtod(t, &end);
        if (n && end == t + n)
            return etl_double(d);
        break;
    }
    case ETL_T_NUMERIC:
    case ETL_T_BLOB:
    case ETL_T_JSON:
        return etl_str(type, t, n);
    default:
        break;
    }
    return etl_text(t, n);
}

int etl_key_values(const char *key, size_t len, const etl_schema_t *sc, const int *cols,
                   size_t ncols, etl_arena_t *a, etl_value_t *out)
{
    const char *parts[16];
    size_t lens[16];
    int nulls[16] = {0};
    if (ncols == 0 || ncols > 16)
        return -1;
    if (ncols == 1) {
        /* one column: the key text is the value itself, never escaped */
        parts[0] = etl_arena_dup(a, key, len);
        lens[0] = len;
        if (!parts[0])
            return -1;
    } else if (etl_key_split(key, len, a, parts, lens, nulls, ncols) != (int)ncols) {
        return -1;
    }
    for (size_t k = 0; k < ncols; k++)
        out[k] = nulls[k] ? etl_null()
                          : key_part(parts[k], lens[k], etl_schema_col(sc, (size_t)cols[k])->type);
    return 0;
}

/* ------------------------------------------------------------ hash */

static inline uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    v *= 0x9E3779B97F4A7C15ULL;
    v ^= v >> 31;
    h ^= v;
    h = (h << 27) | (h >> 37);
    return h * 0xBF58476D1CE4E5B9ULL + 0x94D049BB133111EBULL;
}

uint64_t etl_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix(h, w);
        s += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < n; i++)
        tail |= (uint64_t)s[i] << (8 * i);
    return mix(h, tail ^ ((uint64_t)n << 56));
}

uint64_t etl_row_hash(const etl_value_t *row, size_t ncols, const unsigned char *skip)
{
    uint64_t h = 0x5bd1e995;
    for (size_t i = 0; i < ncols; i++) {
        if (skip && skip[i])
            continue;
        const etl_value_t *v = &row[i];
        h = mix(h, (uint64_t)v->type + ((uint64_t)i << 8));
        switch (v->type) {
        case ETL_T_NULL:
            break;
        case ETL_T_DOUBLE: {
            uint64_t bits;
            double d = v->v.d == 0 ? 0.0 : v->v.d; /* -0 == 0 */
            memcpy(&bits, &d, 8);
            h = mix(h, bits);
            break;
        }
        case ETL_T_BOOL:
        case ETL_T_INT:
        case ETL_T_TIMESTAMP:
            h = mix(h, (uint64_t)v->v.i);
            break;
        default:
            h = etl_hash_bytes(v->v.s, v->len, h);
        }
    }
    return fmix(h);
}

/* ------------------------------------------------------------ JSON */

static const char type_codes[ETL_T_COUNT_] = {'n', 'b', 'i', 'd', 'N', 't', 'x', 'j', 'T'};
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void add_base64(etl_buf_t *out, const unsigned char *s, size_t n)
{
    etl_buf_addc(out, '"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], i + 1 < n ? b64[(v >> 6) & 63] : '=',
                     i + 2 < n ? b64[v & 63] : '='};
        etl_buf_add(out, q, 4);
    }
    etl_buf_addc(out, '"');
}

static int unbase64(const char *s, size_t n, etl_arena_t *a, const char **out, uint32_t *outlen)
{
    char *p = etl_arena_alloc(a, n / 4 * 3 + 3);
    if (!p || n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *c = s[i + k] == '=' ? NULL : strchr(b64, s[i + k]);
            if (s[i + k] == '=') {
                pad++;
            } else if (!c || !s[i + k] || pad) {
                return -1;
            }
            v = v << 6 | (c ? (uint32_t)(c - b64) : 0);
        }
        p[o++] = (char)(v >> 16);
        if (pad < 2)
            p[o++] = (char)(v >> 8);
        if (pad < 1)
            p[o++] = (char)v;
    }
    *out = p;
    *outlen = (uint32_t)o;
    return 0;
}

static int valid_utf8(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n || (len > 1 && c < 0xC2 && len == 2))
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* One value as JSON. exact: as etl_row_json keeps it (a double always has a
 * '.', NaN and infinities as strings, text that is not UTF-8 in base64, json
 * as text); else as a reader expects it (json inline, non-finite as null). */
static void add_json_value(etl_buf_t *out, const etl_value_t *v, int exact)
{
    char tmp[64];
    const char *t;
    size_t l;
    switch (v->type) {
    case ETL_T_NULL:
        etl_buf_adds(out, "null");
        return;
    case ETL_T_BOOL:
        etl_buf_adds(out, v->v.i ? "true" : "false");
        return;
    case ETL_T_INT:
        etl_buf_printf(out, "%lld", (long long)v->v.i);
        return;
    case ETL_T_DOUBLE:
        if (isfinite(v->v.d)) {
            l = etl_value_text(v, tmp, sizeof tmp, &t);
            etl_buf_add(out, t, l);
            if (exact && !strpbrk(tmp, ".eE"))
                etl_buf_adds(out, ".0");
        } else if (exact) {
            etl_buf_adds(out, isnan(v->v.d) ? "\"nan\"" : v->v.d > 0 ? "\"inf\"" : "\"-inf\"");
        } else {
            etl_buf_adds(out, "null");
        }
        return;
    case ETL_T_BLOB:
        add_base64(out, (const unsigned char *)v->v.s, v->len);
        return;
    case ETL_T_TEXT:
        if (exact && !valid_utf8(v->v.s, v->len)) { /* JSON cannot carry it: base64 */
            add_base64(out, (const unsigned char *)v->v.s, v->len);
            return;
        }
        break;
    case ETL_T_JSON:
        if (!exact) {
            etl_buf_add(out, v->v.s, v->len);
            return;
        }
        break;
    default:
        break;
    }
    l = etl_value_text(v, tmp, sizeof tmp, &t);
    etl_buf_json_str(out, t, l);
}

void etl_row_json(etl_buf_t *out, const etl_schema_t *s, const etl_value_t *row)
{
    size_t n = etl_schema_ncols(s);
    etl_buf_addc(out, '{');
    for (size_t i = 0; i < n; i++) {
        const char *name = etl_schema_col(s, i)->name;
        etl_buf_json_str(out, name, strlen(name));
        etl_buf_addc(out, ':');
        add_json_value(out, &row[i], 1);
        etl_buf_addc(out, ',');
    }
    /* the value types by column, so the record reads back exactly even if
     * the stream's columns move ('X': text that is not UTF-8, in base64) */
    etl_buf_adds(out, "\"$types\":{");
    for (size_t i = 0; i < n; i++) {
        const char *name = etl_schema_col(s, i)->name;
        char code = (unsigned)row[i].type < ETL_T_COUNT_ ? type_codes[row[i].type] : 'n';
        if (row[i].type == ETL_T_TEXT && !valid_utf8(row[i].v.s, row[i].len))
            code = 'X';
        etl_buf_json_str(out, name, strlen(name));
        etl_buf_printf(out, ":\"%c\"%s", code, i + 1 < n ? "," : "");
    }
    etl_buf_adds(out, "}}");
}

void etl_row_json_plain(etl_buf_t *out, const etl_schema_t *s, const etl_value_t *row)
{
    size_t n = etl_schema_ncols(s);
    etl_buf_addc(out, '{');
    for (size_t i = 0; i < n; i++) {
        const char *name = etl_schema_col(s, i)->name;
        if (i)
            etl_buf_addc(out, ',');
        etl_buf_json_str(out, name, strlen(name));
        etl_buf_addc(out, ':');
        add_json_value(out, &row[i], 0);
    }
    etl_buf_addc(out, '}');
}

static int from_json_value(json_t *j, int type, etl_arena_t *a, etl_value_t *v, const char *col,
                           char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    v->type = (etl_type_t)type;
    const char *str = json_is_string(j) ? json_string_value(j) : NULL;
    size_t slen = str ? json_string_length(j) : 0;
    switch (type) {
    case ETL_T_NULL:
        return 0;
    case ETL_T_BOOL:
        if (!json_is_boolean(j))
            goto bad;
        v->v.i = json_is_true(j);
        return 0;
    case ETL_T_INT:
        if (!json_is_integer(j))
            goto bad;
        v->v.i = json_integer_value(j);
        return 0;
    case ETL_T_DOUBLE:
        if (json_is_number(j))
            v->v.d = json_number_value(j);
        else if (str)
            v->v.d = strtod(str, NULL);
        else
            goto bad;
        return 0;
    case ETL_T_TIMESTAMP:
        if (!str || etl_ts_parse(str, slen, &v->v.i) != 0)
            goto bad;
        return 0;
    case ETL_T_BLOB:
        if (!str || unbase64(str, slen, a, &v->v.s, &v->len) != 0)
            goto bad;
        return 0;
    default:
        if (!str)
            goto bad;
        v->v.s = etl_arena_dup(a, str, slen);
        v->len = (uint32_t)slen;
        return v->v.s ? 0 : -1;
    }
bad:
    etl_errf(err, errlen, "column '%s': value does not fit type %s", col,
             etl_type_name((etl_type_t)type));
    return -1;
}

int etl_row_from_json(const char *json, const etl_schema_t *s, etl_arena_t *a, etl_value_t *row,
                      char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root || !json_is_object(root)) {
        etl_errf(err, errlen, "stored record is not a JSON object (%s)", root ? "" : je.text);
        json_decref(root);
        return -1;
    }
    size_t n = etl_schema_ncols(s);
    json_t *types = json_object_get(root, "$types");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const etl_column_t *c = etl_schema_col(s, i);
        json_t *j = json_object_get(root, c->name);
        if (!j || json_is_null(j)) {
            memset(&row[i], 0, sizeof row[i]);
            continue;
        }
        int type = c->type;
        const char *code = json_string_value(json_object_get(types, c->name));
        if (code && code[0] == 'X') {
            rc = from_json_value(j, ETL_T_BLOB, a, &row[i], c->name, err, errlen);
            row[i].type = ETL_T_TEXT;
            continue;
        }
        const char *k = code && code[0] ? memchr(type_codes, code[0], sizeof type_codes) : NULL;
        if (k)
            type = (int)(k - type_codes);
        rc = from_json_value(j, type, a, &row[i], c->name, err, errlen);
    }
    json_decref(root);
    return rc;
}
