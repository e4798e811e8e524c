/*
 * template.c - etl-jsonl.so: JSON-lines files as a source and as a sink.
 *
 * The copy-me plugin (see README.md). A stream is one file, DIR/NAME.jsonl,
 * holding one JSON object per line.
 *
 * As a source it declares a file's columns from its first line (or from the
 * `columns` option), reads the file line by line, keeps the rows whose cursor
 * is at or after `since` (the bound is inclusive) and, when the file is known
 * to be written in cursor order, lets the checkpoint move during the read.
 *
 * As a sink it holds a file's records by key, applies each batch to a copy
 * in memory and makes it durable at commit by writing a new file and
 * renaming it over the old one: a crash leaves the old file or the new one,
 * never half of either. write: append adds lines at the end instead, and
 * write: replace writes the file once, at finish().
 *
 * It includes nothing of etl but <etl/etl.h>; JSON is jansson's. Everything
 * but the entry point is static and named jsonl_<verb>.
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <etl/etl.h>
#include <jansson.h>

#define CHECKPOINT_EVERY 256 /* rows between checkpoints of an ordered file */

/* ------------------------------------------------------------ options */

/* The core validates these before open() and shows them in `etl plugins`.
 * `help` also ends error messages ("expected <help>"): it describes a value. */
static const etl_option_def_t jsonl_options[] = {
    {"dir", ETL_OPT_PATH, 1, NULL, 0,
     "a folder with one NAME.jsonl file per stream (relative to the pipeline)", NULL},
    {"columns", ETL_OPT_LIST, 0, NULL, 0,
     "name:type items (text, int, double, bool, numeric, json, timestamp, blob); "
     "default: the fields of a file's first line",
     NULL},
    {"key", ETL_OPT_LIST, 0, "id", 0, "column names: the key, where a file has them", NULL},
    {"cursor", ETL_OPT_STRING, 0, "updated_at", 0,
     "a column name: the cursor, where a file has it", NULL},
    {"ordered", ETL_OPT_BOOL, 0, "false", 0,
     "true or false: files only grow, in cursor order (checkpoints then move during a read)",
     NULL},
    {"bad_lines", ETL_OPT_ENUM, 0, "fail", 0,
     "fail or skip: what a read does with a line it cannot use", "fail|skip"},
    {NULL, 0, 0, NULL, 0, NULL, NULL},
};

/* ------------------------------------------------------------ instance */

typedef struct jsonl_stream jsonl_stream_t;

/* One instance: the core opens one for reading and another for writing. */
typedef struct jsonl {
    char *dir;               /* absolute */
    size_t ncols;            /* columns declared by the `columns` option, or 0 */
    char **names;
    etl_type_t *types;
    const char *const *keys; /* the `key` option: the core's, valid until close */
    size_t nkeys;
    const char *cursor;
    int ordered, skip_bad;
    jsonl_stream_t *streams; /* sink: prepared and not yet finished */
} jsonl_t;

/* A sink stream, from prepare() to finish(). */
struct jsonl_stream {
    jsonl_stream_t *next;
    char *path;
    etl_write_mode_t write;
    etl_conflict_t conflict;
    int keyed;        /* records are matched by key (not write: append) */
    char **keys;      /* key column names (NULL-terminated, as are all lists here) */
    size_t nkeys;
    char *cursor;     /* for conflict: newer */
    char **keep;      /* columns never overwritten */
    size_t nkeep;
    char *soft;       /* soft-delete column, or NULL: deletes remove records */
    int soft_in_rows; /* the rows carry the soft-delete column themselves */
    json_t *rows;     /* keyed: key text -> record, as committed; else the records
                       * staged for write: replace */
    json_t *work;     /* inside a transaction: keyed: the changed copy of rows;
                       * else the new records */
    int dirty;        /* work holds a change */
};

/* Frees a NULL-terminated array of strings. */
static void jsonl_freev(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static void jsonl_stream_free(jsonl_stream_t *s)
{
    if (!s)
        return;
    free(s->path);
    jsonl_freev(s->keys);
    jsonl_freev(s->keep);
    free(s->cursor);
    free(s->soft);
    json_decref(s->rows);
    json_decref(s->work);
    free(s);
}

static void jsonl_close(void *self)
{
    jsonl_t *j = self;
    if (!j)
        return;
    while (j->streams) { /* finish() was not called for these */
        jsonl_stream_t *s = j->streams;
        j->streams = s->next;
        jsonl_stream_free(s);
    }
    jsonl_freev(j->names);
    free(j->types);
    free(j->dir);
    free(j);
}

/* The `columns` option: "name" (text) or "name:type" items. */
static etl_status_t jsonl_columns(jsonl_t *j, etl_ctx_t *ctx)
{
    const char *const *items;
    size_t n = etl_opt_list(ctx, "columns", &items);
    if (!n)
        return ETL_OK;
    j->names = calloc(n + 1, sizeof *j->names);
    j->types = calloc(n, sizeof *j->types);
    if (!j->names || !j->types)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(items[i], ':');
        size_t len = colon ? (size_t)(colon - items[i]) : strlen(items[i]);
        int type = colon ? etl_type_from_name(colon + 1) : ETL_T_TEXT;
        if (!len || type <= ETL_T_NULL)
            return etl_fail(ctx, ETL_ERR_CONFIG,
                            "option columns: '%s' is not name:type (types: text, int, double, "
                            "bool, numeric, json, timestamp, blob)",
                            items[i]);
        if (!(j->names[i] = strndup(items[i], len)))
            return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        j->types[i] = (etl_type_t)type;
        j->ncols = i + 1;
    }
    return ETL_OK;
}

static etl_status_t jsonl_open(etl_ctx_t *ctx, int sink, void **self)
{
    jsonl_t *j = calloc(1, sizeof *j);
    const char *bad = etl_opt(ctx, "bad_lines");
    etl_status_t st = ETL_OK;
    struct stat sb;
    if (!j || !(j->dir = etl_path(ctx, etl_opt(ctx, "dir")))) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    j->nkeys = etl_opt_list(ctx, "key", &j->keys);
    j->cursor = etl_opt(ctx, "cursor");
    j->ordered = etl_opt_bool(ctx, "ordered", 0);
    j->skip_bad = bad && strcmp(bad, "skip") == 0;
    if ((st = jsonl_columns(j, ctx)) != ETL_OK)
        goto fail;
    if (sink && mkdir(j->dir, 0755) != 0 && errno != EEXIST) {
        st = etl_fail(ctx, ETL_ERR_IO, "cannot create %s: %s", j->dir, strerror(errno));
        goto fail;
    }
    if (stat(j->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "option dir: %s is not a folder", j->dir);
        goto fail;
    }
    *self = j;
    return ETL_OK;
fail:
    jsonl_close(j);
    return st;
}

static etl_status_t jsonl_src_open(etl_ctx_t *ctx, void **self) { return jsonl_open(ctx, 0, self); }
static etl_status_t jsonl_sink_open(etl_ctx_t *ctx, void **self) { return jsonl_open(ctx, 1, self); }

static etl_status_t jsonl_access(jsonl_t *j, etl_ctx_t *ctx, int mode)
{
    if (access(j->dir, mode) != 0)
        return etl_fail(ctx, ETL_ERR_IO, "%s: %s", j->dir, strerror(errno));
    return ETL_OK;
}

static etl_status_t jsonl_src_check(void *self, etl_ctx_t *ctx)
{
    return jsonl_access(self, ctx, R_OK | X_OK);
}

static etl_status_t jsonl_sink_check(void *self, etl_ctx_t *ctx)
{
    return jsonl_access(self, ctx, R_OK | W_OK | X_OK);
}

/* DIR/NAME.jsonl. Names come from the pipeline: one that would leave the
 * folder is refused. */
static etl_status_t jsonl_file(jsonl_t *j, etl_ctx_t *ctx, const char *name, char **path)
{
    size_t n = strlen(j->dir) + strlen(name) + sizeof "/.jsonl";
    *path = NULL;
    if (!*name || name[0] == '.' || strchr(name, '/'))
        return etl_fail(ctx, ETL_ERR_CONFIG, "'%s' cannot name a file in %s", name, j->dir);
    if (!(*path = malloc(n)))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    snprintf(*path, n, "%s/%s.jsonl", j->dir, name);
    return ETL_OK;
}

/* ------------------------------------------------------------ lines */

typedef struct jsonl_lines {
    FILE *fp;
    char *buf;
    size_t cap;
    size_t lineno;
} jsonl_lines_t;

/* The next object of a file, blank lines skipped: 1 with *obj set (the
 * caller releases it), 0 at the end, -1 for a line that is not a JSON
 * object, -2 when reading fails; `why` says what was wrong. */
static int jsonl_next(jsonl_lines_t *in, json_t **obj, char *why, size_t whylen)
{
    ssize_t n;
    *obj = NULL;
    while ((n = getline(&in->buf, &in->cap, in->fp)) >= 0) {
        size_t i = 0;
        in->lineno++;
        while (i < (size_t)n && isspace((unsigned char)in->buf[i]))
            i++;
        if (i == (size_t)n)
            continue;
        json_error_t err;
        if (!(*obj = json_loadb(in->buf, (size_t)n, 0, &err))) {
            snprintf(why, whylen, "not JSON: %s", err.text);
            return -1;
        }
        if (!json_is_object(*obj)) {
            json_decref(*obj);
            *obj = NULL;
            snprintf(why, whylen, "not a JSON object");
            return -1;
        }
        return 1;
    }
    if (ferror(in->fp)) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -2;
    }
    return 0;
}

static void jsonl_lines_close(jsonl_lines_t *in)
{
    if (in->fp)
        fclose(in->fp);
    free(in->buf);
}

/* ------------------------------------------------------------ source */

static etl_status_t jsonl_streams(void *self, etl_ctx_t *ctx, void (*cb)(void *, const char *),
                                  void *arg)
{
    jsonl_t *j = self;
    DIR *d = opendir(j->dir);
    struct dirent *e;
    if (!d)
        return etl_fail(ctx, ETL_ERR_IO, "%s: %s", j->dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        char name[256];
        if (n > 6 && e->d_name[0] != '.' && strcmp(e->d_name + n - 6, ".jsonl") == 0) {
            snprintf(name, sizeof name, "%.*s", (int)(n - 6), e->d_name);
            cb(arg, name);
        }
    }
    closedir(d);
    return ETL_OK;
}

/* The etl type of a column first seen holding v. */
static etl_type_t jsonl_infer(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER: return ETL_T_INT;
    case JSON_REAL: return ETL_T_DOUBLE;
    case JSON_TRUE:
    case JSON_FALSE: return ETL_T_BOOL;
    case JSON_OBJECT:
    case JSON_ARRAY: return ETL_T_JSON;
    default: return ETL_T_TEXT; /* strings, and null: nothing better is known */
    }
}

static etl_status_t jsonl_discover(void *self, etl_ctx_t *ctx, etl_schema_t *out)
{
    jsonl_t *j = self;
    jsonl_lines_t in = {0};
    json_t *first = NULL, *v;
    const char *name;
    char *path = NULL, why[256];
    etl_status_t st = jsonl_file(j, ctx, etl_schema_stream(out), &path);
    if (st != ETL_OK)
        goto done;
    /* no file, no stream: ETL_ERR_CONFIG, as the ABI asks */
    if (!(in.fp = fopen(path, "r"))) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "no stream %s: %s: %s", etl_schema_stream(out), path,
                      strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < j->ncols; i++) {
        if (etl_schema_add(out, j->names[i], j->types[i], NULL, 0) < 0) {
            st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    if (!j->ncols) {
        int rc = jsonl_next(&in, &first, why, sizeof why);
        if (rc <= 0) {
            st = rc == 0 ? etl_fail(ctx, ETL_ERR_CONFIG,
                                    "%s is empty, so its columns are unknown (set the columns "
                                    "option)",
                                    path)
                         : etl_fail(ctx, rc == -1 ? ETL_ERR_DATA : ETL_ERR_IO, "%s:%zu: %s",
                                    path, in.lineno, why);
            goto done;
        }
        json_object_foreach(first, name, v) {
            if (etl_schema_add(out, name, jsonl_infer(v), NULL, 0) < 0) {
                st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    }
    for (size_t k = 0; k < j->nkeys; k++) {
        int c = etl_schema_find(out, j->keys[k]);
        if (c >= 0)
            etl_schema_set_flags(out, (size_t)c,
                                 etl_schema_col(out, (size_t)c)->flags | ETL_COL_KEY);
    }
    if (j->cursor && etl_schema_find(out, j->cursor) >= 0)
        etl_schema_set_cursor(out, j->cursor);
done:
    jsonl_lines_close(&in);
    json_decref(first);
    free(path);
    return st;
}

/* A JSON value as a value of column type t: 0, -1 when it does not fit,
 * -2 without memory. Text that had to be made (a json column, a number in a
 * text column) is malloc'd into *made; the value borrows it. */
static int jsonl_value(json_t *v, etl_type_t t, etl_value_t *out, char **made)
{
    int64_t us;
    *made = NULL;
    *out = etl_null();
    if (!v || json_is_null(v))
        return 0;
    switch (t) {
    case ETL_T_BOOL:
        if (!json_is_boolean(v))
            return -1;
        *out = etl_bool(json_is_true(v));
        return 0;
    case ETL_T_INT:
        if (!json_is_integer(v))
            return -1;
        *out = etl_int(json_integer_value(v));
        return 0;
    case ETL_T_DOUBLE:
        if (!json_is_number(v))
            return -1;
        *out = etl_double(json_number_value(v));
        return 0;
    case ETL_T_TIMESTAMP:
        if (!json_is_string(v) ||
            etl_ts_parse(json_string_value(v), json_string_length(v), &us) != 0)
            return -1;
        *out = etl_ts(us);
        return 0;
    case ETL_T_NUMERIC: /* exact digits: a string, or an integer; a real has lost them */
        if (!json_is_string(v) && !json_is_integer(v))
            return -1;
        break;
    default:
        break;
    }
    if (json_is_string(v) && t != ETL_T_JSON) {
        *out = etl_str(t, json_string_value(v), json_string_length(v));
        return 0;
    }
    if (!(*made = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)))
        return -2;
    *out = etl_str(t, *made, strlen(*made));
    return 0;
}

/* Fills row (the read's schema order) from one object: 0, -1 (why names
 * the field) or -2 without memory. */
static int jsonl_row(json_t *obj, const etl_schema_t *sc, etl_value_t *row, char **made,
                     char *why, size_t whylen)
{
    for (size_t i = 0; i < etl_schema_ncols(sc); i++) {
        const etl_column_t *c = etl_schema_col(sc, i);
        int rc = jsonl_value(json_object_get(obj, c->name), c->type, &row[i], &made[i]);
        if (rc == -1)
            snprintf(why, whylen, "field \"%s\" does not fit column type %s", c->name,
                     etl_type_name(c->type));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int jsonl_is_text(etl_type_t t) { return t >= ETL_T_NUMERIC && t <= ETL_T_JSON; }

static int jsonl_time(const etl_value_t *v, int64_t *us)
{
    if (v->type == ETL_T_TIMESTAMP) {
        *us = v->v.i;
        return 0;
    }
    return jsonl_is_text(v->type) ? etl_ts_parse(v->v.s, v->len, us) : -1;
}

/* Orders two cursor values into *cmp (<0, 0, >0); -1 when they cannot be
 * compared. Text compares as bytes (ISO 8601 times of one format order
 * correctly); a text cursor meets a timestamp bound (--since) as a time. */
static int jsonl_cmp(const etl_value_t *a, const etl_value_t *b, int *cmp)
{
    int64_t x, y;
    if (jsonl_is_text(a->type) && jsonl_is_text(b->type)) {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = n ? memcmp(a->v.s, b->v.s, n) : 0;
        *cmp = c ? c : (a->len > b->len) - (a->len < b->len);
        return 0;
    }
    if (a->type == ETL_T_TIMESTAMP || b->type == ETL_T_TIMESTAMP) {
        if (jsonl_time(a, &x) != 0 || jsonl_time(b, &y) != 0)
            return -1;
        *cmp = (x > y) - (x < y);
        return 0;
    }
    if (a->type == ETL_T_INT && b->type == ETL_T_INT) {
        *cmp = (a->v.i > b->v.i) - (a->v.i < b->v.i);
        return 0;
    }
    if ((a->type == ETL_T_INT || a->type == ETL_T_DOUBLE) &&
        (b->type == ETL_T_INT || b->type == ETL_T_DOUBLE)) {
        double p = a->type == ETL_T_INT ? (double)a->v.i : a->v.d;
        double q = b->type == ETL_T_INT ? (double)b->v.i : b->v.d;
        *cmp = (p > q) - (p < q);
        return 0;
    }
    return -1;
}

/* Keeps a copy of v (its bytes in *buf) across lines. */
static int jsonl_hold(etl_value_t *dst, char **buf, const etl_value_t *v)
{
    *dst = *v;
    if (jsonl_is_text(v->type)) {
        char *p = realloc(*buf, v->len + 1);
        if (!p)
            return -1;
        memcpy(p, v->v.s, v->len);
        *buf = p;
        dst->v.s = p;
    }
    return 0;
}

static void jsonl_unmake(char **made, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(made[i]);
        made[i] = NULL;
    }
}

static etl_status_t jsonl_read(void *self, etl_ctx_t *ctx, const etl_read_t *req,
                               etl_emitter_t *em)
{
    jsonl_t *j = self;
    const etl_schema_t *sc = req->schema;
    size_t n = etl_schema_ncols(sc), lines = 0, taken = 0;
    int cur = req->cursor ? etl_schema_find(sc, req->cursor) : -1, have_last = 0, rc, c;
    etl_value_t *row = calloc(n + 1, sizeof *row), last = etl_null();
    char **made = calloc(n + 1, sizeof *made), *last_buf = NULL, *path = NULL, why[256];
    jsonl_lines_t in = {0};
    json_t *obj = NULL;
    etl_status_t st = ETL_OK;
    if (!row || !made) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = jsonl_file(j, ctx, req->stream, &path)) != ETL_OK)
        goto done;
    if (!(in.fp = fopen(path, "r"))) {
        st = etl_fail(ctx, ETL_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    for (;;) {
        json_decref(obj); /* the core copied the last row in etl_emit() */
        jsonl_unmake(made, n);
        if ((rc = jsonl_next(&in, &obj, why, sizeof why)) == 0)
            break;
        if (++lines % 10000 == 0)
            etl_progress_page(ctx); /* a file has no pages: report progress anyway */
        if (rc == 1 && (rc = jsonl_row(obj, sc, row, made, why, sizeof why)) == -2) {
            st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (rc == -2) {
            st = etl_fail(ctx, ETL_ERR_IO, "%s: %s", path, why);
            goto done;
        }
        if (rc == -1) { /* a line that cannot be used */
            if (!j->skip_bad) {
                st = etl_fail(ctx, ETL_ERR_DATA, "%s:%zu: %s (or set bad_lines: skip)", path,
                              in.lineno, why);
                goto done;
            }
            etl_log(ctx, ETL_LOG_WARN, "%s:%zu: skipped: %s", path, in.lineno, why);
            continue;
        }
        if (cur < 0) {
            if ((st = etl_emit(em, row)) != ETL_OK)
                goto done; /* ETL_ERR_CANCELLED when the run stops */
            continue;
        }
        if (row[cur].type == ETL_T_NULL) {
            if (!req->since && (st = etl_emit(em, row)) != ETL_OK)
                goto done; /* no cursor value: only a read from the start takes it */
            continue;
        }
        if (j->ordered) {
            if (have_last && jsonl_cmp(&row[cur], &last, &c) == 0 && c < 0) {
                st = etl_fail(ctx, ETL_ERR_DATA,
                              "%s:%zu: %s goes back although ordered is true (set ordered: "
                              "false and run once with --full)",
                              path, in.lineno, req->cursor);
                goto done;
            }
            if (jsonl_hold(&last, &last_buf, &row[cur]) != 0) {
                st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
                goto done;
            }
            have_last = 1;
        }
        if (req->since) {
            if (jsonl_cmp(&row[cur], req->since, &c) != 0) {
                st = etl_fail(ctx, ETL_ERR_CONFIG,
                              "%s:%zu: %s (%s) cannot be compared with the read's lower bound "
                              "(%s)",
                              path, in.lineno, req->cursor, etl_type_name(row[cur].type),
                              etl_type_name(req->since->type));
                goto done;
            }
            if (c < 0)
                continue; /* before the bound: an earlier run had it */
        }
        /* In an ordered file every row with a smaller cursor came before this
         * one, so all of them have been emitted: the checkpoint may move here. */
        if (j->ordered && ++taken % CHECKPOINT_EVERY == 0 &&
            (st = etl_emit_checkpoint(em, &row[cur])) != ETL_OK)
            goto done;
        if ((st = etl_emit(em, row)) != ETL_OK)
            goto done;
    }
done:
    json_decref(obj);
    if (made)
        jsonl_unmake(made, n);
    jsonl_lines_close(&in);
    free(made);
    free(row);
    free(last_buf);
    free(path);
    return st;
}

/* ------------------------------------------------------------ sink */

static char **jsonl_dupv(const char *const *v, size_t n)
{
    char **d = calloc(n + 1, sizeof *d);
    for (size_t i = 0; d && i < n; i++) {
        if (!(d[i] = strdup(v[i]))) {
            jsonl_freev(d);
            return NULL;
        }
    }
    return d;
}

/* The text that identifies a record: its key fields as a JSON object with
 * sorted names, so one key always gives one text. NULL without memory. */
static char *jsonl_key(const jsonl_stream_t *s, json_t *rec)
{
    json_t *k = json_object(), *v;
    char *text = NULL;
    for (size_t i = 0; k && i < s->nkeys; i++) {
        v = json_object_get(rec, s->keys[i]);
        if (json_object_set(k, s->keys[i], v ? v : json_null()) != 0)
            goto done;
    }
    text = k ? json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
done:
    json_decref(k);
    return text;
}

/* Reads an existing file into s->rows; a missing file is an empty one. */
static etl_status_t jsonl_load(jsonl_stream_t *s, etl_ctx_t *ctx)
{
    jsonl_lines_t in = {0};
    json_t *rec = NULL;
    char *key = NULL, why[256];
    etl_status_t st = ETL_OK;
    int rc;
    if (!(in.fp = fopen(s->path, "r")))
        return errno == ENOENT ? ETL_OK
                               : etl_fail(ctx, ETL_ERR_IO, "%s: %s", s->path, strerror(errno));
    while ((rc = jsonl_next(&in, &rec, why, sizeof why)) == 1) {
        /* a key seen twice: the later line wins, as it would on read */
        if (!(key = jsonl_key(s, rec)))
            goto nomem;
        rc = json_object_set_new(s->rows, key, rec);
        rec = NULL; /* set_new took it, even on failure */
        if (rc != 0)
            goto nomem;
        free(key);
        key = NULL;
    }
    if (rc < 0)
        st = etl_fail(ctx, rc == -1 ? ETL_ERR_DATA : ETL_ERR_IO, "%s:%zu: %s", s->path,
                      in.lineno, why);
    goto done;
nomem:
    st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
done:
    json_decref(rec);
    free(key);
    jsonl_lines_close(&in);
    return st;
}

static etl_status_t jsonl_prepare(void *self, etl_ctx_t *ctx, const etl_sink_stream_t *spec,
                                  void **stream)
{
    jsonl_t *j = self;
    const etl_schema_t *sc = spec->schema;
    size_t n = etl_schema_ncols(sc);
    struct stat sb;
    etl_status_t st = ETL_OK;
    /* spec and everything it points to are borrowed for this call: keep copies */
    jsonl_stream_t *s = calloc(1, sizeof *s);
    if (!s || !(s->keys = calloc(n + 1, sizeof *s->keys)))
        goto nomem;
    s->write = spec->write;
    s->conflict = spec->conflict;
    for (size_t i = 0; i < n; i++) {
        const etl_column_t *c = etl_schema_col(sc, i);
        if ((c->flags & ETL_COL_KEY) && !(s->keys[s->nkeys++] = strdup(c->name)))
            goto nomem;
    }
    s->keyed = s->nkeys && spec->write != ETL_WRITE_APPEND;
    s->nkeep = spec->nkeep;
    if ((spec->cursor && !(s->cursor = strdup(spec->cursor))) ||
        !(s->keep = jsonl_dupv(spec->keep, spec->nkeep)) ||
        (spec->soft_delete && !(s->soft = strdup(spec->soft_delete))))
        goto nomem;
    s->soft_in_rows = s->soft && etl_schema_find(sc, s->soft) >= 0;
    if ((st = jsonl_file(j, ctx, spec->table, &s->path)) != ETL_OK)
        goto fail;
    if (!spec->create && stat(s->path, &sb) != 0) {
        st = etl_fail(ctx, ETL_ERR_CONFIG, "no file %s, and creating it is off", s->path);
        goto fail;
    }
    if (!(s->rows = s->keyed ? json_object() : json_array()))
        goto nomem;
    /* write: replace starts from nothing and swaps the file in at finish() */
    if (s->keyed && s->write != ETL_WRITE_REPLACE && (st = jsonl_load(s, ctx)) != ETL_OK)
        goto fail;
    s->next = j->streams;
    j->streams = s;
    *stream = s;
    return ETL_OK;
nomem:
    st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
fail:
    jsonl_stream_free(s);
    return st;
}

/* Nothing happens at begin: a stream's transaction copy is made at its
 * first change (jsonl_work) and dropped by rollback. */
static void jsonl_rollback(void *self, etl_ctx_t *ctx)
{
    jsonl_t *j = self;
    (void)ctx;
    for (jsonl_stream_t *s = j->streams; s; s = s->next) {
        json_decref(s->work);
        s->work = NULL;
        s->dirty = 0;
    }
}

static etl_status_t jsonl_begin(void *self, etl_ctx_t *ctx)
{
    jsonl_rollback(self, ctx); /* nothing should be left over; be sure */
    return ETL_OK;
}

static etl_status_t jsonl_work(jsonl_stream_t *s, etl_ctx_t *ctx)
{
    /* json_copy is shallow: records are shared, and replaced, never edited */
    if (!s->work && !(s->work = s->keyed ? json_copy(s->rows) : json_array()))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    return ETL_OK;
}

/* A value as JSON; NULL with *why set when JSON cannot carry it. */
static json_t *jsonl_json(const etl_value_t *v, const char **why)
{
    char buf[40];
    json_t *out = NULL;
    switch (v->type) {
    case ETL_T_NULL: return json_null();
    case ETL_T_BOOL: return json_boolean(v->v.i);
    case ETL_T_INT: return json_integer(v->v.i);
    case ETL_T_DOUBLE:
        *why = "not a finite number";
        return json_real(v->v.d);
    case ETL_T_TIMESTAMP:
        *why = "out of memory";
        return json_stringn(buf, etl_ts_format(v->v.i, buf, sizeof buf));
    case ETL_T_JSON:
        *why = "not valid JSON";
        return json_loadb(v->v.s, v->len, JSON_DECODE_ANY, NULL);
    default: /* text; numeric as text, to keep its digits; blob if it is UTF-8 */
        *why = "not UTF-8 text";
        out = json_stringn(v->v.s ? v->v.s : "", v->len);
        return out;
    }
}

/* Row i as a JSON object. A value JSON cannot carry fails that row alone:
 * *rec is NULL and etl_rows_fail() said why. */
static etl_status_t jsonl_record(etl_ctx_t *ctx, etl_rows_t *rows, size_t i, json_t **rec)
{
    const etl_value_t *row = etl_rows_row(rows, i);
    if (!(*rec = json_object()))
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    for (size_t c = 0; c < etl_schema_ncols(rows->schema); c++) {
        const etl_column_t *col = etl_schema_col(rows->schema, c);
        const char *name = col->name, *why = "";
        json_t *v;
        if (col->flags & (ETL_COL_HIDDEN | ETL_COL_GENERATED))
            continue; /* carried for the core, never written */
        v = jsonl_json(&row[c], &why);
        if (!v || json_object_set_new(*rec, name, v) != 0) {
            etl_rows_fail(rows, i, "column %s: %s", name, v ? "not a UTF-8 name" : why);
            json_decref(*rec);
            *rec = NULL;
            break;
        }
    }
    return ETL_OK;
}

/* Whether the incoming record wins by its cursor: when it is greater, or
 * also when equal unless `strict` (conflict: newer keeps the record already
 * here on a tie; the core's tie-to-incoming rule for the reverse direction
 * does not). */
static int jsonl_newer(const jsonl_stream_t *s, json_t *rec, json_t *old, int strict)
{
    json_t *a = s->cursor ? json_object_get(rec, s->cursor) : NULL;
    json_t *b = s->cursor ? json_object_get(old, s->cursor) : NULL;
    int c;
    if (!s->cursor || !b || json_is_null(b))
        return 1;
    if (!a || json_is_null(a))
        return 0;
    if (json_is_string(a) && json_is_string(b))
        c = strcmp(json_string_value(a), json_string_value(b));
    else if (json_is_number(a) && json_is_number(b))
        c = (json_number_value(a) > json_number_value(b)) -
            (json_number_value(a) < json_number_value(b));
    else
        return 0;
    return strict ? c > 0 : c >= 0;
}

static int jsonl_kept(const jsonl_stream_t *s, const char *name)
{
    for (size_t k = 0; k < s->nkeep; k++)
        if (strcmp(s->keep[k], name) == 0)
            return 1;
    return 0;
}

/* Upserts rec (borrowed) into s->work; the outcome goes to *out. -1 without memory. */
static int jsonl_put(jsonl_stream_t *s, json_t *rec, etl_outcome_t *out)
{
    char *key = jsonl_key(s, rec);
    json_t *old = key ? json_object_get(s->work, key) : NULL, *merged = NULL, *v;
    const char *name;
    int rc = -1;
    if (!key)
        goto done;
    if (!old) {
        if (json_object_set(s->work, key, rec) != 0)
            goto done;
        *out = ETL_OUT_CREATED;
    } else if (s->write == ETL_WRITE_INSERT || s->conflict == ETL_CONFLICT_SINK ||
               /* source, and lua (the core decided before write), always win;
                * every other rule compares cursors */
               (s->conflict != ETL_CONFLICT_SOURCE && s->conflict != ETL_CONFLICT_LUA &&
                !jsonl_newer(s, rec, old, s->conflict == ETL_CONFLICT_NEWER))) {
        *out = ETL_OUT_SKIPPED;
    } else {
        /* fields the rows do not carry, and kept ones, stay as they were */
        if (!(merged = json_copy(old)))
            goto done;
        json_object_foreach(rec, name, v) {
            if (!jsonl_kept(s, name) && json_object_set(merged, name, v) != 0)
                goto done;
        }
        /* a record that comes back is no longer deleted */
        if (s->soft && !s->soft_in_rows && json_object_get(merged, s->soft) &&
            json_object_set(merged, s->soft, json_null()) != 0)
            goto done;
        if (json_equal(merged, old)) {
            *out = ETL_OUT_UNCHANGED;
        } else {
            if (json_object_set(s->work, key, merged) != 0)
                goto done;
            *out = ETL_OUT_UPDATED;
        }
    }
    s->dirty |= *out == ETL_OUT_CREATED || *out == ETL_OUT_UPDATED;
    rc = 0;
done:
    json_decref(merged);
    free(key);
    return rc;
}

static etl_status_t jsonl_write(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *rows)
{
    jsonl_stream_t *s = stream;
    json_t *rec = NULL;
    etl_status_t st = jsonl_work(s, ctx);
    (void)self;
    for (size_t i = 0; st == ETL_OK && i < rows->nrows; i++) {
        if ((st = jsonl_record(ctx, rows, i, &rec)) != ETL_OK || !rec)
            continue; /* a failed row has its outcome: ETL_OUT_FAILED */
        if (!s->keyed) {
            if (json_array_append(s->work, rec) != 0)
                st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
            rows->outcome[i] = ETL_OUT_CREATED;
            s->dirty = 1;
        } else if (jsonl_put(s, rec, &rows->outcome[i]) != 0) {
            st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        }
        json_decref(rec);
        rec = NULL;
    }
    return st;
}

static etl_status_t jsonl_remove(void *self, etl_ctx_t *ctx, void *stream, etl_rows_t *keys)
{
    jsonl_stream_t *s = stream;
    json_t *k = NULL, *old, *gone, *deleted;
    char *key = NULL, now[40];
    etl_status_t st;
    (void)self;
    if (!s->keyed)
        return etl_fail(ctx, ETL_ERR_CONFIG, "%s: deletes need a key", s->path);
    if ((st = jsonl_work(s, ctx)) != ETL_OK)
        return st;
    etl_ts_format((int64_t)time(NULL) * 1000000, now, sizeof now);
    for (size_t i = 0; i < keys->nrows; i++) {
        json_decref(k);
        free(key);
        key = NULL;
        /* keys->schema holds just the key columns */
        if ((st = jsonl_record(ctx, keys, i, &k)) != ETL_OK)
            goto done;
        if (!k)
            continue; /* that row failed */
        if (!(key = jsonl_key(s, k)))
            goto nomem;
        old = json_object_get(s->work, key);
        deleted = old && s->soft ? json_object_get(old, s->soft) : NULL;
        keys->outcome[i] = ETL_OUT_DELETED;
        if (!old || (deleted && !json_is_null(deleted))) {
            keys->outcome[i] = ETL_OUT_UNCHANGED; /* nothing (more) to delete */
        } else if (!s->soft) {
            json_object_del(s->work, key);
        } else {
            if (!(gone = json_copy(old)))
                goto nomem;
            if (json_object_set_new(gone, s->soft, json_string(now)) != 0) {
                json_decref(gone);
                goto nomem;
            }
            if (json_object_set_new(s->work, key, gone) != 0)
                goto nomem;
        }
        s->dirty |= keys->outcome[i] == ETL_OUT_DELETED;
    }
    goto done;
nomem:
    st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
done:
    json_decref(k);
    free(key);
    return st;
}

/* One object per line. */
static int jsonl_dump(FILE *fp, json_t *records)
{
    const char *key;
    json_t *rec;
    size_t i;
    if (json_is_object(records)) {
        json_object_foreach(records, key, rec) {
            if (json_dumpf(rec, fp, JSON_COMPACT) != 0 || fputc('\n', fp) == EOF)
                return -1;
        }
    } else {
        json_array_foreach(records, i, rec) {
            if (json_dumpf(rec, fp, JSON_COMPACT) != 0 || fputc('\n', fp) == EOF)
                return -1;
        }
    }
    return 0;
}

/* Makes a rename or a new file in the folder durable. */
static int jsonl_sync_dir(const char *path)
{
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    int fd = -1, rc = -1;
    if (slash) {
        *slash = '\0';
        if ((fd = open(dir, O_RDONLY | O_DIRECTORY)) >= 0)
            rc = fsync(fd);
    }
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* Writes the whole file through a temporary one renamed over it: readers
 * and crashes see the old file or the new one. */
static etl_status_t jsonl_save(etl_ctx_t *ctx, const char *path, json_t *records)
{
    size_t n = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(n);
    FILE *fp = NULL;
    etl_status_t st = ETL_OK;
    int rc;
    if (!tmp)
        return etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    if (!(fp = fopen(tmp, "w")) || jsonl_dump(fp, records) != 0 || fflush(fp) != 0 ||
        fsync(fileno(fp)) != 0) {
        st = etl_fail(ctx, ETL_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    rc = fclose(fp);
    fp = NULL;
    if (rc != 0 || rename(tmp, path) != 0 || jsonl_sync_dir(path) != 0)
        st = etl_fail(ctx, ETL_ERR_IO, "%s: %s", path, strerror(errno));
done:
    if (fp)
        fclose(fp);
    if (st != ETL_OK)
        unlink(tmp);
    free(tmp);
    return st;
}

/* Adds records at the end of the file; after a failure it is cut back to
 * its old length, so no half batch stays behind. */
static etl_status_t jsonl_append(etl_ctx_t *ctx, const char *path, json_t *records)
{
    FILE *fp = fopen(path, "a");
    struct stat sb;
    int err = 0;
    if (!fp || fstat(fileno(fp), &sb) != 0) {
        err = errno;
        if (fp)
            fclose(fp);
        return etl_fail(ctx, ETL_ERR_IO, "%s: %s", path, strerror(err));
    }
    if (jsonl_dump(fp, records) != 0 || fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        err = errno ? errno : EIO;
    if (fclose(fp) != 0 && !err)
        err = errno;
    if (!err && jsonl_sync_dir(path) != 0)
        err = errno;
    if (!err)
        return ETL_OK;
    if (truncate(path, sb.st_size) != 0)
        etl_log(ctx, ETL_LOG_ERROR, "%s: cannot cut back a failed append: %s", path,
                strerror(errno));
    return etl_fail(ctx, ETL_ERR_IO, "%s: %s", path, strerror(err));
}

/* Makes every change of the transaction durable. After a failed commit the
 * core does not call rollback(): the changes are dropped here either way. */
static etl_status_t jsonl_commit(void *self, etl_ctx_t *ctx)
{
    jsonl_t *j = self;
    etl_status_t st = ETL_OK;
    for (jsonl_stream_t *s = j->streams; s && st == ETL_OK; s = s->next) {
        if (!s->work)
            continue;
        if (s->dirty && s->write != ETL_WRITE_REPLACE)
            st = s->keyed ? jsonl_save(ctx, s->path, s->work) : jsonl_append(ctx, s->path, s->work);
        if (st != ETL_OK)
            break;
        if (s->keyed) {
            json_decref(s->rows);
            s->rows = s->work;
            s->work = NULL;
        } else if (s->write == ETL_WRITE_REPLACE && json_array_extend(s->rows, s->work) != 0) {
            st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        }
    }
    jsonl_rollback(j, ctx);
    return st;
}

/* End of a stream. write: replace makes the staged records the file here,
 * in one rename; after a failure (ok = 0) the old file stays untouched. */
static etl_status_t jsonl_finish(void *self, etl_ctx_t *ctx, void *stream, int ok)
{
    jsonl_t *j = self;
    jsonl_stream_t *s = stream, **p = &j->streams;
    etl_status_t st = ETL_OK;
    if (ok && s->write == ETL_WRITE_REPLACE)
        st = jsonl_save(ctx, s->path, s->rows);
    while (*p && *p != s)
        p = &(*p)->next;
    if (*p)
        *p = s->next;
    jsonl_stream_free(s);
    return st;
}

/* ------------------------------------------------------------ descriptor */

static const etl_source_ops_t jsonl_source = {
    .open = jsonl_src_open,
    .check = jsonl_src_check,
    .streams = jsonl_streams,
    .discover = jsonl_discover,
    .read = jsonl_read,
    .close = jsonl_close,
};

static const etl_sink_ops_t jsonl_sink = {
    .open = jsonl_sink_open,
    .check = jsonl_sink_check,
    .prepare = jsonl_prepare,
    .begin = jsonl_begin,
    .write = jsonl_write,
    .remove = jsonl_remove,
    .commit = jsonl_commit,
    .rollback = jsonl_rollback,
    .finish = jsonl_finish,
    .close = jsonl_close,
    .native = NULL, /* no database handle to share with the state store */
};

static const etl_plugin_t jsonl_plugin = {
    .abi_version = ETL_ABI_VERSION,
    .struct_size = sizeof(etl_plugin_t),
    .name = "jsonl", /* the file must be etl-jsonl.so */
    .version = "0.1.0",
    .description = "JSON-lines files, one object per line (source and sink)",
    .options = jsonl_options,
    .source = &jsonl_source,
    .sink = &jsonl_sink,
};

ETL_PLUGIN(jsonl_plugin)
