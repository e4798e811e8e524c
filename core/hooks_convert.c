/*
 * hooks_convert.c - records into Lua tables and back.
 *
 * Into Lua: NULL is nil (the field is absent), bool a boolean, int an
 * integer, double a float, numeric/text/blob/json a string, timestamp an ISO
 * 8601 UTC string.
 *
 * Back, by column type (nil is always NULL):
 *   bool      boolean; integer 0 or 1; a string etl_parse_bool accepts
 *   int       integer; float with an exact integer value; decimal string
 *   double    number; numeric string
 *   numeric   decimal string kept exactly as written ("0.10"); number formatted
 *   text      string; number formatted; boolean "true"/"false"
 *   blob      string (any bytes)
 *   json      string taken as JSON text; table, number or boolean encoded
 *   timestamp string parsed by etl_ts_parse; number as seconds since the epoch
 *   null      (an untyped column) the value's own type, a table as json
 *
 * Everything here runs inside a protected call: failures are Lua errors, and
 * the only C memory used is scratch owned by the etl_lua_t, so unwinding
 * leaks nothing.
 */
#include <lauxlib.h>
#include <lua.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hooks_internal.h"

#define NO_OFFSET SIZE_MAX
#define JSON_MAX_DEPTH 100

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

/* etl_ts_format's text without snprintf, which costs more than the rest of
 * a record's trip into Lua; years outside 0000-9999 take the slow path. */
static size_t format_ts(int64_t us, char *buf, size_t size)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0)
        frac += 1000000, secs--;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0)
        rem += 86400, days--;
    /* days since 1970-01-01 to a civil date, in 400-year eras starting
     * on March 1st so that leap days fall at the end of a year */
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = (int64_t)yoe + era * 400 + (m <= 2);
    if (y < 0 || y > 9999 || size < 28)
        return etl_ts_format(us, buf, size);
    unsigned r = (unsigned)rem;
    put2(buf, (unsigned)(y / 100));
    put2(buf + 2, (unsigned)(y % 100));
    buf[4] = '-';
    put2(buf + 5, m);
    buf[7] = '-';
    put2(buf + 8, d);
    buf[10] = 'T';
    put2(buf + 11, r / 3600);
    buf[13] = ':';
    put2(buf + 14, r / 60 % 60);
    buf[16] = ':';
    put2(buf + 17, r % 60);
    size_t n = 19;
    if (frac) {
        buf[n++] = '.';
        for (int i = 5; i >= 0; i--, frac /= 10)
            buf[n + (size_t)i] = (char)('0' + frac % 10);
        n += 6;
    }
    buf[n++] = 'Z';
    buf[n] = '\0';
    return n;
}

void etl_lua_push_record(lua_State *L, const etl_schema_t *schema, const etl_value_t *row)
{
    size_t n = etl_schema_ncols(schema);
    char ts[32];
    lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
    for (size_t i = 0; i < n; i++) {
        const etl_value_t *v = &row[i];
        switch (v->type) {
        case ETL_T_BOOL:
            lua_pushboolean(L, v->v.i != 0);
            break;
        case ETL_T_INT:
            lua_pushinteger(L, (lua_Integer)v->v.i);
            break;
        case ETL_T_DOUBLE:
            lua_pushnumber(L, (lua_Number)v->v.d);
            break;
        case ETL_T_TIMESTAMP:
            lua_pushlstring(L, ts, format_ts(v->v.i, ts, sizeof ts));
            break;
        case ETL_T_NUMERIC:
        case ETL_T_TEXT:
        case ETL_T_BLOB:
        case ETL_T_JSON:
            lua_pushlstring(L, v->v.s ? v->v.s : "", v->len);
            break;
        default: /* NULL (or a type this build does not know): absent */
            continue;
        }
        lua_setfield(L, -2, etl_schema_col(schema, i)->name);
    }
}

/* ------------------------------------------------------------ helpers */

/* The shortest text that reads back as the same double. */
static size_t format_double(double d, char *buf, size_t size)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, size, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d)
            break;
    }
    return n < 0 ? 0 : (size_t)n;
}

/* A Lua number as decimal text: integers exactly, floats round-tripping. */
static size_t format_number(lua_State *L, int idx, char *buf, size_t size)
{
    if (lua_isinteger(L, idx)) {
        int n = snprintf(buf, size, "%lld", (long long)lua_tointeger(L, idx));
        return n < 0 ? 0 : (size_t)n;
    }
    return format_double((double)lua_tonumber(L, idx), buf, size);
}

/* [+-] digits [. digits] [e [+-] digits], at least one digit before the e. */
static int is_decimal(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (!digits)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t exp = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            exp++;
        if (!exp)
            return 0;
    }
    return i == n;
}

/* A float with an exact int64 value. */
static int float_to_i64(double d, int64_t *out)
{
    /* -2^63 is representable; 2^63 is the first value out of range */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || floor(d) != d)
        return -1;
    *out = (int64_t)d;
    return 0;
}

/* Raises "stream 'S': field 'F' (type) cannot take <value>[: why]". */
static int bad_value(lua_State *L, int idx, const char *stream, const etl_column_t *col,
                     const char *why)
{
    char shown[96];
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        format_number(L, idx, shown, sizeof shown);
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        snprintf(shown, sizeof shown, "'%.*s%s'", n > 60 ? 60 : (int)n, s, n > 60 ? "..." : "");
        break;
    }
    case LUA_TBOOLEAN:
        snprintf(shown, sizeof shown, "%s", lua_toboolean(L, idx) ? "true" : "false");
        break;
    default:
        snprintf(shown, sizeof shown, "a %s", luaL_typename(L, idx));
    }
    return luaL_error(L, "stream '%s': field '%s' (%s) cannot take %s%s%s", stream, col->name,
                      etl_type_name(col->type), shown, why ? ": " : "", why ? why : "");
}

/* ------------------------------------------------------------ JSON */

typedef struct json_enc {
    lua_State *L;
    etl_lua_t *E;
    const char *stream;
    const etl_column_t *col;
} json_enc_t;

static int json_fail(json_enc_t *j, const char *why)
{
    return luaL_error(j->L, "stream '%s': field '%s' (%s) cannot be encoded as JSON: %s",
                      j->stream, j->col->name, etl_type_name(j->col->type), why);
}

static void json_value(json_enc_t *j, int idx, int depth);

static int key_cmp(const void *a, const void *b)
{
    const etl_lua_key_t *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static void push_key(json_enc_t *j, const char *s, size_t n)
{
    etl_lua_t *E = j->E;
    if (E->nkeys == E->keycap) {
        size_t cap = E->keycap ? E->keycap * 2 : 32;
        etl_lua_key_t *k = realloc(E->keys, cap * sizeof *k);
        if (!k)
            json_fail(j, "out of memory");
        E->keys = k;
        E->keycap = cap;
    }
    E->keys[E->nkeys].s = s;
    E->keys[E->nkeys].n = n;
    E->nkeys++;
}

/* An array when the keys are exactly 1..n (so an empty table is []), an
 * object when every key is a string; object keys are sorted so that equal
 * tables always give equal text (the dedup stage hashes it). */
static void json_table(json_enc_t *j, int idx, int depth)
{
    lua_State *L = j->L;
    etl_lua_t *E = j->E;
    etl_buf_t *b = &E->scratch;
    if (depth >= JSON_MAX_DEPTH)
        json_fail(j, "nested too deeply (a table that contains itself?)");
    luaL_checkstack(L, 4, "JSON nesting");
    idx = lua_absindex(L, idx);
    size_t base = E->nkeys, count = 0;
    lua_Integer max = 0;
    int array = 1, strings = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -2, &n);
            push_key(j, s, n); /* the string stays alive as the table's key */
            array = 0;
        } else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
            if (lua_tointeger(L, -2) > max)
                max = lua_tointeger(L, -2);
            strings = 0;
        } else {
            array = strings = 0;
        }
        lua_pop(L, 1);
    }
    if (array && (lua_Unsigned)max == count) {
        etl_buf_addc(b, '[');
        for (lua_Integer i = 1; i <= max; i++) {
            if (i > 1)
                etl_buf_addc(b, ',');
            lua_rawgeti(L, idx, i);
            json_value(j, -1, depth + 1);
            lua_pop(L, 1);
        }
        etl_buf_addc(b, ']');
        return;
    }
    if (!strings)
        json_fail(j, "a table needs keys 1..n (an array) or only string keys (an object)");
    qsort(E->keys + base, E->nkeys - base, sizeof *E->keys, key_cmp);
    etl_buf_addc(b, '{');
    for (size_t k = base; k < E->nkeys; k++) {
        /* nested objects may move E->keys: index it, never keep a pointer */
        const char *s = E->keys[k].s;
        size_t n = E->keys[k].n;
        if (k > base)
            etl_buf_addc(b, ',');
        etl_buf_json_str(b, s, n);
        etl_buf_addc(b, ':');
        lua_pushlstring(L, s, n);
        lua_rawget(L, idx);
        json_value(j, -1, depth + 1);
        lua_pop(L, 1);
    }
    etl_buf_addc(b, '}');
    E->nkeys = base;
}

static void json_value(json_enc_t *j, int idx, int depth)
{
    lua_State *L = j->L;
    etl_buf_t *b = &j->E->scratch;
    char num[64];
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        etl_buf_adds(b, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) && !isfinite((double)lua_tonumber(L, idx)))
            json_fail(j, isnan((double)lua_tonumber(L, idx)) ? "NaN is not a JSON number"
                                                             : "infinity is not a JSON number");
        etl_buf_add(b, num, format_number(L, idx, num, sizeof num));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        etl_buf_json_str(b, s, n);
        break;
    }
    case LUA_TTABLE:
        json_table(j, idx, depth);
        break;
    default: {
        char why[64];
        snprintf(why, sizeof why, "a %s has no JSON form", luaL_typename(L, idx));
        json_fail(j, why);
    }
    }
}

/* ------------------------------------------------------------ into a row */

/* Appends bytes to scratch and records where they start. */
static void scratch_put(etl_lua_t *E, const char *s, size_t n, etl_type_t type, etl_value_t *out,
                        size_t *off)
{
    *off = E->scratch.len;
    etl_buf_add(&E->scratch, s, n);
    *out = etl_str(type, NULL, n);
}

/* Converts the value at idx (not nil) for column col into *out. Bytes made
 * on the C side go to scratch, their offset in *off (fixed up later, since
 * scratch may move while the row is converted). */
static void to_value(lua_State *L, etl_lua_t *E, int idx, const char *stream,
                     const etl_column_t *col, etl_value_t *out, size_t *off)
{
    int t = lua_type(L, idx);
    size_t n = 0;
    const char *s = t == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
    int cstr = s && strlen(s) == n; /* usable as a C string: no NUL inside */
    char num[64];
    int64_t i64;
    int b;
    *off = NO_OFFSET;
    switch (col->type) {
    case ETL_T_BOOL:
        if (t == LUA_TBOOLEAN)
            *out = etl_bool(lua_toboolean(L, idx));
        else if (t == LUA_TNUMBER && lua_isinteger(L, idx) && (lua_Unsigned)lua_tointeger(L, idx) <= 1)
            *out = etl_bool(lua_tointeger(L, idx) == 1);
        else if (cstr && etl_parse_bool(s, &b) == 0)
            *out = etl_bool(b);
        else
            bad_value(L, idx, stream, col, NULL);
        break;
    case ETL_T_INT:
        if (t == LUA_TNUMBER && lua_isinteger(L, idx))
            *out = etl_int((int64_t)lua_tointeger(L, idx));
        else if (t == LUA_TNUMBER && float_to_i64((double)lua_tonumber(L, idx), &i64) == 0)
            *out = etl_int(i64);
        else if (cstr && etl_parse_i64(s, &i64) == 0)
            *out = etl_int(i64);
        else
            bad_value(L, idx, stream, col, t == LUA_TNUMBER ? "not an integer" : NULL);
        break;
    case ETL_T_DOUBLE:
        if (t == LUA_TNUMBER) {
            *out = etl_double((double)lua_tonumber(L, idx));
        } else if (cstr && lua_stringtonumber(L, s) == n + 1) {
            *out = etl_double((double)lua_tonumber(L, -1));
            lua_pop(L, 1);
        } else {
            bad_value(L, idx, stream, col, NULL);
        }
        break;
    case ETL_T_NUMERIC:
        if (s && is_decimal(s, n)) {
            *out = etl_str(ETL_T_NUMERIC, s, n);
        } else if (t == LUA_TNUMBER &&
                   (lua_isinteger(L, idx) || isfinite((double)lua_tonumber(L, idx)))) {
            scratch_put(E, num, format_number(L, idx, num, sizeof num), ETL_T_NUMERIC, out, off);
        } else {
            bad_value(L, idx, stream, col, s ? "not a decimal number" : NULL);
        }
        break;
    case ETL_T_TEXT:
        if (s)
            *out = etl_text(s, n);
        else if (t == LUA_TNUMBER)
            scratch_put(E, num, format_number(L, idx, num, sizeof num), ETL_T_TEXT, out, off);
        else if (t == LUA_TBOOLEAN)
            *out = lua_toboolean(L, idx) ? etl_text("true", 4) : etl_text("false", 5);
        else
            bad_value(L, idx, stream, col, NULL);
        break;
    case ETL_T_BLOB:
        if (s)
            *out = etl_str(ETL_T_BLOB, s, n);
        else
            bad_value(L, idx, stream, col, "a blob takes a string of bytes");
        break;
    case ETL_T_JSON:
        if (s) {
            *out = etl_str(ETL_T_JSON, s, n);
        } else if (t == LUA_TTABLE || t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
            json_enc_t j = {L, E, stream, col};
            size_t start = E->scratch.len;
            E->nkeys = 0;
            json_value(&j, idx, 0);
            *off = start;
            *out = etl_str(ETL_T_JSON, NULL, E->scratch.len - start);
        } else {
            bad_value(L, idx, stream, col, NULL);
        }
        break;
    case ETL_T_TIMESTAMP:
        if (s) {
            if (etl_ts_parse(s, n, &i64) == 0)
                *out = etl_ts(i64);
            else
                bad_value(L, idx, stream, col, "not a timestamp");
        } else if (t == LUA_TNUMBER && lua_isinteger(L, idx)) {
            lua_Integer secs = lua_tointeger(L, idx);
            if (secs <= INT64_MAX / 1000000 && secs >= INT64_MIN / 1000000)
                *out = etl_ts((int64_t)secs * 1000000);
            else
                bad_value(L, idx, stream, col, "out of range");
        } else if (t == LUA_TNUMBER) {
            double us = (double)lua_tonumber(L, idx) * 1e6;
            if (us > -9.2e18 && us < 9.2e18)
                *out = etl_ts((int64_t)llround(us));
            else
                bad_value(L, idx, stream, col, "out of range");
        } else {
            bad_value(L, idx, stream, col, NULL);
        }
        break;
    case ETL_T_NULL: /* an untyped column keeps the value's own type */
        if (s) {
            *out = etl_text(s, n);
        } else if (t == LUA_TBOOLEAN) {
            *out = etl_bool(lua_toboolean(L, idx));
        } else if (t == LUA_TNUMBER) {
            *out = lua_isinteger(L, idx) ? etl_int((int64_t)lua_tointeger(L, idx))
                                         : etl_double((double)lua_tonumber(L, idx));
        } else if (t == LUA_TTABLE) {
            json_enc_t j = {L, E, stream, col};
            size_t start = E->scratch.len;
            E->nkeys = 0;
            json_value(&j, idx, 0);
            *off = start;
            *out = etl_str(ETL_T_JSON, NULL, E->scratch.len - start);
        } else {
            bad_value(L, idx, stream, col, NULL);
        }
        break;
    default:
        bad_value(L, idx, stream, col, "unsupported column type");
    }
}

static void ensure_row(lua_State *L, etl_lua_t *E, size_t n)
{
    if (n <= E->rowcap)
        return;
    etl_value_t *row = realloc(E->row, n * sizeof *row);
    if (!row)
        luaL_error(L, "out of memory converting a record");
    E->row = row;
    size_t *off = realloc(E->off, n * sizeof *off);
    if (!off)
        luaL_error(L, "out of memory converting a record");
    E->off = off;
    E->rowcap = n;
}

/* Called when the table has more entries than matched columns: names the
 * first key that is not a column. */
static void unknown_field(lua_State *L, int idx, const etl_schema_t *schema, const char *stream,
                          const char *verb)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            char key[64];
            if (lua_type(L, -1) == LUA_TNUMBER)
                format_number(L, -1, key, sizeof key);
            else
                snprintf(key, sizeof key, "a %s", luaL_typename(L, -1));
            luaL_error(L, "stream '%s': %s a field keyed by %s (fields are column names)", stream,
                       verb, key);
        }
        size_t n;
        const char *name = lua_tolstring(L, -1, &n);
        if (strlen(name) != n || etl_schema_find(schema, name) < 0)
            luaL_error(L, "stream '%s': %s unknown field '%s'", stream, verb, name);
    }
}

const etl_value_t *etl_lua_table_row(lua_State *L, etl_lua_t *E, int idx,
                                     const etl_schema_t *schema, const char *stream,
                                     const char *verb)
{
    idx = lua_absindex(L, idx);
    size_t ncols = etl_schema_ncols(schema), found = 0, entries = 0;
    ensure_row(L, E, ncols ? ncols : 1);
    if (E->scratch.oom)
        etl_buf_free(&E->scratch); /* forget an old failure; start over */
    etl_buf_reset(&E->scratch);
    luaL_checkstack(L, 4, "converting a record");
    for (size_t i = 0; i < ncols; i++) {
        const etl_column_t *col = etl_schema_col(schema, i);
        lua_pushstring(L, col->name);
        if (lua_rawget(L, idx) == LUA_TNIL) {
            E->row[i] = etl_null();
            E->off[i] = NO_OFFSET;
        } else {
            found++;
            /* the value stays referenced by the table, so its string bytes
             * outlive this pop */
            to_value(L, E, -1, stream, col, &E->row[i], &E->off[i]);
        }
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        entries++;
    }
    if (entries != found)
        unknown_field(L, idx, schema, stream, verb);
    if (E->scratch.oom)
        luaL_error(L, "out of memory converting a record");
    for (size_t i = 0; i < ncols; i++)
        if (E->off[i] != NO_OFFSET)
            E->row[i].v.s = E->scratch.data + E->off[i];
    return E->row;
}
