/* test_state.c - the state store (core/state.h): schema and migrations,
 * stream ids, runs, checkpoints, ledger, deferred records, dead letters,
 * counts, reset, the plugin key/value space, reports, and sharing the sink's
 * connection. On SQLite by default; with ETL_TEST_STATE_URL=postgres://...
 * (tests/integration/test_pg_state.py sets it) the tests that are not about
 * SQLite files run on PostgreSQL, each in a schema of its own, plus the
 * PostgreSQL-only ones. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etl/record.h"
#include "state.h"
#include "util.h"

typedef struct fixture {
    char dir[64];
    char *file;     /* dir/state.db (SQLite) */
    char *url;      /* sqlite:<file>, or the PostgreSQL URL with its schema */
    char schema[48]; /* PostgreSQL: this test's schema */
    etl_state_t *st;
} fixture_t;

/* The PostgreSQL server to test against, or NULL for SQLite. */
static const char *pg_base(void)
{
    const char *u = getenv("ETL_TEST_STATE_URL");
    return u && strncmp(u, "postgres", 8) == 0 ? u : NULL;
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Runs one command on the test server outside the store. */
static void pg_admin(const char *fmt, const char *arg)
{
    char sql[256];
    snprintf(sql, sizeof sql, fmt, arg);
    PGconn *c = PQconnectdb(pg_base());
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The base URL with the schema first in search_path: the store's tables
 * land there. */
static char *pg_url(const char *schema)
{
    const char *b = pg_base();
    return etl_asprintf("%s%coptions=-csearch_path%%3D%s", b, strchr(b, '?') ? '&' : '?', schema);
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char *p = etl_path_join(path, e->d_name);
            rm_rf(p);
            free(p);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static etl_state_t *open_ok(const char *url)
{
    char err[ETL_ERRLEN] = "";
    etl_state_t *st = etl_state_open(url, err, sizeof err);
    if (!st)
        fail_msg("open %s: %s", url, err);
    return st;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (pg_base()) {
        static int n;
        snprintf(f->schema, sizeof f->schema, "test_state_%d_%d", (int)getpid(), ++n);
        pg_admin("CREATE SCHEMA %s", f->schema);
        f->url = pg_url(f->schema);
        f->st = open_ok(f->url);
        *state = f;
        return 0;
    }
    strcpy(f->dir, "/tmp/etl-test-state-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->file = etl_path_join(f->dir, "state.db");
    f->url = etl_asprintf("sqlite:%s", f->file);
    f->st = open_ok(f->url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    etl_state_close(f->st);
    if (f->schema[0])
        pg_admin("DROP SCHEMA %s CASCADE", f->schema);
    else
        rm_rf(f->dir);
    free(f->file);
    free(f->url);
    free(f);
    return 0;
}

/* ------------------------------------------------------------ query helpers */

typedef struct rows {
    int n;
    int ncols;
    char cell[64][12][128]; /* "(null)" for SQL NULL */
    char names[12][64];
    int stop_after; /* 0: never */
} rows_t;

static int rows_cb(void *arg, int ncols, const char *const *cols, const char *const *names)
{
    rows_t *r = arg;
    r->ncols = ncols;
    for (int i = 0; i < ncols && i < 12; i++) {
        etl_strlcpy(r->names[i], names[i], sizeof r->names[i]);
        if (r->n < 64)
            etl_strlcpy(r->cell[r->n][i], cols[i] ? cols[i] : "(null)", sizeof r->cell[0][0]);
    }
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

/* Runs sql (with up to 3 text params) and returns the rows. */
static rows_t *q(etl_state_t *st, const char *sql, const char *p1, const char *p2)
{
    static rows_t r;
    memset(&r, 0, sizeof r);
    const char *params[2] = {p1, p2};
    size_t np = p2 ? 2 : p1 ? 1 : 0;
    if (etl_state_query(st, sql, params, np, rows_cb, &r) != 0)
        fail_msg("%s: %s", sql, etl_state_error(st));
    return &r;
}

/* The single value of a one-row, one-column query. */
static const char *q1(etl_state_t *st, const char *sql, const char *p1, const char *p2)
{
    rows_t *r = q(st, sql, p1, p2);
    if (r->n != 1)
        fail_msg("%s: %d rows", sql, r->n);
    return r->cell[0][0];
}

static int64_t sid_of(etl_state_t *st, const char *pipeline, const char *stream, const char *dir)
{
    int64_t sid = -1;
    assert_int_equal(etl_state_stream_id(st, pipeline, stream, dir, &sid), 0);
    assert_true(sid > 0);
    return sid;
}

/* ------------------------------------------------------------ open */

static void test_open_creates_and_migrates(void **state)
{
    fixture_t *f = *state;
    struct stat sb;
    assert_int_equal(stat(f->file, &sb), 0);
    assert_string_equal(etl_state_file(f->st), f->file);
    assert_string_equal(q1(f->st, "SELECT value FROM etl_meta WHERE key='schema_version'", NULL,
                           NULL),
                        "5");
    assert_int_equal(ETL_STATE_SCHEMA_VERSION, 5);
    /* version 2 added echo marks to the ledger */
    assert_string_equal(q1(f->st, "SELECT count(*) FROM pragma_table_info('ledger') WHERE"
                                  " name='echo'", NULL, NULL),
                        "1");
    static const char *const tables[] = {"checkpoints", "dead_letters", "deferred", "etl_meta",
                                         "etl_streams", "kv",           "ledger",   "run_streams",
                                         "runs",        "schedules"};
    rows_t *r = q(f->st, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name", NULL,
                  NULL);
    assert_int_equal(r->n, (int)ETL_ARRAY_LEN(tables));
    for (size_t i = 0; i < ETL_ARRAY_LEN(tables); i++)
        assert_string_equal(r->cell[i][0], tables[i]);
    assert_string_equal(q1(f->st, "PRAGMA journal_mode", NULL, NULL), "wal");
}

static void test_open_creates_missing_folders_and_abs_form(void **state)
{
    fixture_t *f = *state;
    char *url = etl_asprintf("sqlite://%s/deep/er/s.db", f->dir); /* sqlite:///abs */
    etl_state_t *st = open_ok(url);
    char *want = etl_asprintf("%s/deep/er/s.db", f->dir);
    assert_string_equal(etl_state_file(st), want);
    struct stat sb;
    assert_int_equal(stat(want, &sb), 0);
    etl_state_close(st);
    free(url);
    free(want);
}

static void test_open_refuses_other_urls(void **state)
{
    (void)state;
    char err[ETL_ERRLEN] = "";
    assert_null(etl_state_open("mysql://x/y", err, sizeof err));
    assert_non_null(strstr(err, "mysql://x/y"));
    assert_non_null(strstr(err, "sqlite:"));
}

static void test_reopen_is_idempotent(void **state)
{
    fixture_t *f = *state;
    int64_t sid = sid_of(f->st, "pos", "orders", "forward");
    assert_int_equal(etl_state_checkpoint_put(f->st, "pos", "orders", "forward", "c1", "text", 3,
                                              0),
                     0);
    etl_state_close(f->st);
    for (int i = 0; i < 3; i++) {
        f->st = open_ok(f->url);
        if (i < 2)
            etl_state_close(f->st);
    }
    assert_string_equal(q1(f->st, "SELECT count(*) FROM etl_meta", NULL, NULL), "1");
    assert_string_equal(q1(f->st, "SELECT value FROM etl_meta WHERE key='schema_version'", NULL,
                           NULL),
                        "5");
    assert_int_equal(sid_of(f->st, "pos", "orders", "forward"), sid);
    etl_checkpoint_t c;
    assert_int_equal(etl_state_checkpoint_get(f->st, "pos", "orders", "forward", &c), 0);
    assert_string_equal(c.cursor, "c1");
    assert_int_equal(c.records_synced, 3);
    etl_checkpoint_clear(&c);
}

static void test_version_1_store_is_migrated(void **state)
{
    fixture_t *f = *state;
    etl_state_close(f->st);
    f->st = NULL;
    /* back to what version 1 looked like */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE ledger DROP COLUMN echo;"
                                      " ALTER TABLE checkpoints DROP COLUMN resume_key;"
                                      " ALTER TABLE checkpoints DROP COLUMN resume_max;"
                                      " ALTER TABLE checkpoints DROP COLUMN resume_max_type;"
                                      " ALTER TABLE checkpoints DROP COLUMN resume_scan;"
                                      " INSERT INTO etl_streams(id, pipeline, stream, direction)"
                                      " VALUES (7, 'p', 's', 'forward');"
                                      " INSERT INTO ledger(sid, key, hash, seen) VALUES"
                                      " (7, '42', 5, 1), (7, 'x', 6, 1), (7, '007', 8, 1);"
                                      " UPDATE etl_meta SET value='1' WHERE key='schema_version'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char err[ETL_ERRLEN] = "";
    f->st = etl_state_open(f->url, err, sizeof err);
    assert_non_null(f->st);
    assert_string_equal(q1(f->st, "SELECT value FROM etl_meta WHERE key='schema_version'", NULL,
                           NULL),
                        "5");
    assert_string_equal(q1(f->st, "SELECT count(*) FROM pragma_table_info('ledger') WHERE"
                                  " name='echo'", NULL, NULL),
                        "1");
    /* version 3 stores integer keys as integers; the others stay text */
    assert_string_equal(q1(f->st, "SELECT group_concat(typeof(key) || ':' || key, ',') FROM"
                                  " (SELECT key FROM ledger WHERE sid=7 ORDER BY key)", NULL, NULL),
                        "integer:42,text:007,text:x");
    uint64_t h = 0;
    assert_int_equal(etl_state_ledger_get(f->st, 7, "42", 2, &h), 1);
    assert_int_equal(h, 5);
    assert_int_equal(etl_state_ledger_get(f->st, 7, "007", 3, &h), 1);
    assert_int_equal(h, 8);
    /* version 4 added the resume point of key-ordered scans */
    assert_string_equal(q1(f->st, "SELECT count(*) FROM pragma_table_info('checkpoints') WHERE"
                                  " name LIKE 'resume_%'", NULL, NULL),
                        "4");
}

static void test_future_schema_version_is_refused(void **state)
{
    fixture_t *f = *state;
    etl_state_close(f->st);
    f->st = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE etl_meta SET value='7' WHERE key='schema_version'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char err[ETL_ERRLEN] = "";
    assert_null(etl_state_open(f->url, err, sizeof err));
    assert_non_null(strstr(err, f->file));
    assert_non_null(strstr(err, "schema version 7"));
    assert_non_null(strstr(err, "newer than this etl (5)"));
    assert_non_null(strstr(err, "upgrade etl"));
    /* nothing was changed by the refusal */
    assert_int_equal(sqlite3_open(f->file, &db), SQLITE_OK);
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "SELECT value FROM etl_meta WHERE key='schema_version'", -1, &s, NULL);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "7");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* ------------------------------------------------------------ streams and runs */

static void test_stream_ids_are_stable(void **state)
{
    fixture_t *f = *state;
    int64_t a = sid_of(f->st, "pos", "orders", "forward");
    assert_int_equal(sid_of(f->st, "pos", "orders", "forward"), a);
    int64_t b = sid_of(f->st, "pos", "orders", "reverse");
    int64_t c = sid_of(f->st, "pos", "shifts", "forward");
    int64_t d = sid_of(f->st, "pos@acme", "orders", "forward");
    assert_true(a != b && a != c && a != d && b != c && b != d && c != d);
    etl_state_close(f->st);
    f->st = open_ok(f->url);
    assert_int_equal(sid_of(f->st, "pos", "orders", "forward"), a);
    assert_int_equal(sid_of(f->st, "pos@acme", "orders", "forward"), d);
    assert_string_equal(q1(f->st, "SELECT count(*) FROM etl_streams", NULL, NULL), "4");
}

static void test_runs_begin_and_finish(void **state)
{
    fixture_t *f = *state;
    etl_run_info_t info = {"pos", "acme", "incremental", "both", NULL, "/logs/pos.log"};
    int64_t r1 = 0, r2 = 0;
    assert_int_equal(etl_state_run_begin(f->st, &info, &r1), 0);
    info.client = NULL;
    info.triggered_by = "schedule";
    assert_int_equal(etl_state_run_begin(f->st, &info, &r2), 0);
    assert_true(r1 > 0);
    assert_true(r2 > r1);
    char id1[24], id2[24];
    snprintf(id1, sizeof id1, "%lld", (long long)r1);
    snprintf(id2, sizeof id2, "%lld", (long long)r2);
    rows_t *r = q(f->st,
                  "SELECT pipeline, client, mode, direction, triggered_by, status, finished_at,"
                  " log_file, started_at FROM runs WHERE id=?",
                  id1, NULL);
    assert_int_equal(r->n, 1);
    assert_string_equal(r->cell[0][0], "pos");
    assert_string_equal(r->cell[0][1], "acme");
    assert_string_equal(r->cell[0][2], "incremental");
    assert_string_equal(r->cell[0][3], "both");
    assert_string_equal(r->cell[0][4], "cli"); /* the default */
    assert_string_equal(r->cell[0][5], "running");
    assert_string_equal(r->cell[0][6], "(null)");
    assert_string_equal(r->cell[0][7], "/logs/pos.log");
    int64_t started;
    assert_int_equal(etl_ts_parse(r->cell[0][8], strlen(r->cell[0][8]), &started), 0);
    assert_true(llabs(started - etl_now_us()) < 60 * INT64_C(1000000));

    assert_int_equal(etl_state_run_finish(f->st, r1, "failed", "source: boom"), 0);
    assert_int_equal(etl_state_run_log_file(f->st, r2, "/logs/other.log"), 0);
    assert_int_equal(etl_state_run_finish(f->st, r2, "ok", NULL), 0);
    r = q(f->st, "SELECT status, error, CASE WHEN finished_at IS NULL THEN 0 ELSE 1 END"
                 " FROM runs WHERE id=?", id1, NULL);
    assert_string_equal(r->cell[0][0], "failed");
    assert_string_equal(r->cell[0][1], "source: boom");
    assert_string_equal(r->cell[0][2], "1");
    r = q(f->st, "SELECT status, error, client, triggered_by, log_file FROM runs WHERE id=?", id2,
          NULL);
    assert_string_equal(r->cell[0][0], "ok");
    assert_string_equal(r->cell[0][1], "(null)");
    assert_string_equal(r->cell[0][2], "(null)");
    assert_string_equal(r->cell[0][3], "schedule");
    assert_string_equal(r->cell[0][4], "/logs/other.log");
}

static void test_run_stream_records_status_and_counts(void **state)
{
    fixture_t *f = *state;
    etl_run_info_t info = {"pos", NULL, "full", "forward", "api", NULL};
    int64_t run;
    assert_int_equal(etl_state_run_begin(f->st, &info, &run), 0);
    etl_counts_t c = {10, 4, 3, 2, 1, 0, 0};
    assert_int_equal(etl_state_run_stream(f->st, run, "orders", "forward", "ok", &c, 1234, NULL),
                     0);
    assert_int_equal(etl_state_run_stream(f->st, run, "shifts", "forward", "failed", NULL, 5,
                                          "sink: no table"),
                     0);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)run);
    rows_t *r = q(f->st,
                  "SELECT stream, status, read, created, updated, unchanged, deleted, duration_ms,"
                  " coalesce(error,'-') FROM run_streams WHERE run_id=? ORDER BY stream",
                  id, NULL);
    assert_int_equal(r->n, 2);
    const char *want0[] = {"orders", "ok", "10", "4", "3", "2", "1", "1234", "-"};
    const char *want1[] = {"shifts", "failed", "0", "0", "0", "0", "0", "5", "sink: no table"};
    for (int i = 0; i < 9; i++) {
        assert_string_equal(r->cell[0][i], want0[i]);
        assert_string_equal(r->cell[1][i], want1[i]);
    }
}

/* ------------------------------------------------------------ checkpoints */

static void test_checkpoint_absent_is_empty(void **state)
{
    fixture_t *f = *state;
    etl_checkpoint_t c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(etl_state_checkpoint_get(f->st, "pos", "orders", "forward", &c), 0);
    assert_null(c.cursor);
    assert_null(c.type);
    assert_null(c.last_sync_time);
    assert_null(c.last_record_time);
    assert_int_equal(c.records_synced, 0);
    assert_int_equal(c.is_full_sync, 0);
    etl_checkpoint_clear(&c);
}

static void test_checkpoint_put_get(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "orders", "forward",
                                              "2024-05-01T10:00:00Z", "timestamp", 10, 1),
                     0);
    etl_checkpoint_t c;
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "forward", &c), 0);
    assert_string_equal(c.cursor, "2024-05-01T10:00:00Z");
    assert_string_equal(c.type, "timestamp");
    assert_int_equal(c.records_synced, 10);
    assert_int_equal(c.is_full_sync, 1);
    assert_non_null(c.last_sync_time);
    assert_non_null(c.last_record_time);
    int64_t t;
    assert_int_equal(etl_ts_parse(c.last_sync_time, strlen(c.last_sync_time), &t), 0);
    assert_true(llabs(t - etl_now_us()) < 60 * INT64_C(1000000));
    etl_checkpoint_clear(&c);
    assert_null(c.cursor);

    /* a NULL cursor keeps the stored one (and its type); records add up */
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "orders", "forward", NULL, "text", 5, 0),
                     0);
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "forward", &c), 0);
    assert_string_equal(c.cursor, "2024-05-01T10:00:00Z");
    assert_string_equal(c.type, "timestamp");
    assert_int_equal(c.records_synced, 15);
    assert_int_equal(c.is_full_sync, 0);
    char *record_time = etl_strdup(c.last_record_time);
    etl_checkpoint_clear(&c);

    /* no records: last_record_time stays */
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "orders", "forward", "42", "int", 0, 0),
                     0);
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "forward", &c), 0);
    assert_string_equal(c.cursor, "42");
    assert_string_equal(c.type, "int");
    assert_int_equal(c.records_synced, 15);
    assert_string_equal(c.last_record_time, record_time);
    assert_string_not_equal(c.last_sync_time, record_time); /* the sync time moved on */
    etl_checkpoint_clear(&c);
    free(record_time);

    /* other directions and pipelines are other checkpoints */
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "reverse", &c), 0);
    assert_null(c.cursor);
    assert_int_equal(etl_state_checkpoint_get(st, "pos@acme", "orders", "forward", &c), 0);
    assert_null(c.cursor);
}

static void test_checkpoint_first_put_without_cursor(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(etl_state_checkpoint_put(f->st, "pos", "s", "forward", NULL, "text", 2, 0), 0);
    etl_checkpoint_t c;
    assert_int_equal(etl_state_checkpoint_get(f->st, "pos", "s", "forward", &c), 0);
    assert_null(c.cursor);
    assert_null(c.type); /* no cursor, no type */
    assert_int_equal(c.records_synced, 2);
    assert_non_null(c.last_sync_time);
    etl_checkpoint_clear(&c);
}

static void test_checkpoint_rollback_discards(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(etl_state_begin(f->st), 0);
    assert_int_equal(etl_state_checkpoint_put(f->st, "pos", "s", "forward", "9", "int", 1, 0), 0);
    etl_state_rollback(f->st);
    etl_checkpoint_t c;
    assert_int_equal(etl_state_checkpoint_get(f->st, "pos", "s", "forward", &c), 0);
    assert_null(c.cursor);
    assert_int_equal(etl_state_begin(f->st), 0);
    assert_int_equal(etl_state_checkpoint_put(f->st, "pos", "s", "forward", "9", "int", 1, 0), 0);
    assert_int_equal(etl_state_commit(f->st), 0);
    assert_int_equal(etl_state_checkpoint_get(f->st, "pos", "s", "forward", &c), 0);
    assert_string_equal(c.cursor, "9");
    etl_checkpoint_clear(&c);
    etl_state_rollback(f->st); /* no transaction: nothing happens */
}

/* ------------------------------------------------------------ ledger */

static void test_ledger_get_put_seen_del(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "orders", "forward");
    int64_t other = sid_of(st, "pos", "orders", "reverse");
    uint64_t h = 1;
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 0);
    assert_int_equal(h, 1); /* untouched when absent */
    assert_int_equal(etl_state_ledger_count(st, sid), 0);

    const uint64_t big = 0xFEDCBA9876543210ULL; /* above INT64_MAX: stored as its bits */
    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, big, 1), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1);
    assert_true(h == big);
    /* only klen bytes of the key count */
    assert_int_equal(etl_state_ledger_get(st, sid, "k1-longer", 2, &h), 1);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 1, &h), 0);
    /* another stream id is another ledger */
    assert_int_equal(etl_state_ledger_get(st, other, "k1", 2, &h), 0);
    assert_int_equal(etl_state_ledger_count(st, other), 0);

    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, 77, 2), 0); /* update */
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1);
    assert_int_equal(h, 77);
    assert_string_equal(q1(st, "SELECT seen FROM ledger WHERE key='k1'", NULL, NULL), "2");
    assert_int_equal(etl_state_ledger_seen(st, sid, "k1", 2, 5), 0);
    assert_string_equal(q1(st, "SELECT seen FROM ledger WHERE key='k1'", NULL, NULL), "5");
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1);
    assert_int_equal(h, 77); /* seen leaves the hash */
    assert_int_equal(etl_state_ledger_seen(st, sid, "absent", 6, 5), 0); /* no row: no error */

    assert_int_equal(etl_state_ledger_put(st, sid, "k2", 2, 2, 5), 0);
    assert_true(etl_state_ledger_count(st, sid) > 0);
    assert_int_equal(etl_state_ledger_del(st, sid, "k1", 2), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k2", 2, &h), 1);
    assert_int_equal(etl_state_ledger_del(st, sid, "k2", 2), 0);
    assert_int_equal(etl_state_ledger_count(st, sid), 0);
    assert_int_equal(etl_state_ledger_del(st, sid, "k2", 2), 0); /* twice is fine */
}

typedef struct keys {
    int n;
    char k[64][16];
    int stop_after;
} keys_t;

static int keys_cb(void *arg, const char *key, size_t klen)
{
    keys_t *k = arg;
    assert_true(klen < sizeof k->k[0]);
    memcpy(k->k[k->n], key, klen);
    k->k[k->n][klen] = '\0';
    k->n++;
    return k->stop_after && k->n >= k->stop_after;
}

static void test_ledger_unseen_pages_in_key_order(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "items", "forward");
    int64_t other = sid_of(st, "pos", "other", "forward");
    /* inserted out of order; every third one is seen by run 2 */
    char key[16];
    assert_int_equal(etl_state_begin(st), 0);
    for (int i = 24; i >= 0; i--) {
        snprintf(key, sizeof key, "k%02d", i);
        /* content hashes are >= 2: 0 and 1 mean an echo mark and a tombstone */
        assert_int_equal(etl_state_ledger_put(st, sid, key, 3, (uint64_t)i + 2, i % 3 == 0 ? 2 : 1), 0);
        assert_int_equal(etl_state_ledger_put(st, other, key, 3, (uint64_t)i + 2, 1), 0);
    }
    /* a soft-deleted key (tombstone) is never reported unseen */
    assert_int_equal(etl_state_ledger_put(st, sid, "k99", 3, ETL_LEDGER_TOMBSTONE, 1), 0);
    assert_int_equal(etl_state_commit(st), 0);
    keys_t all = {0};
    const char *after = NULL;
    size_t afterlen = 0;
    char last[16];
    int pages = 0;
    for (;;) {
        keys_t page = {0};
        int n = etl_state_ledger_unseen(st, sid, 2, after, afterlen, 5, keys_cb, &page);
        assert_true(n >= 0);
        assert_int_equal(n, page.n);
        assert_true(n <= 5);
        if (n == 0)
            break;
        pages++;
        for (int i = 0; i < n; i++)
            strcpy(all.k[all.n++], page.k[i]);
        strcpy(last, page.k[n - 1]);
        after = last;
        afterlen = strlen(last);
    }
    assert_int_equal(pages, 4); /* 16 keys, 5 a page */
    assert_int_equal(all.n, 16);
    int j = 0;
    for (int i = 0; i <= 24; i++) {
        if (i % 3 == 0)
            continue;
        snprintf(key, sizeof key, "k%02d", i);
        assert_string_equal(all.k[j], key);
        j++;
    }
    /* a callback that stops ends the scan early */
    keys_t stop = {0};
    stop.stop_after = 2;
    assert_int_equal(etl_state_ledger_unseen(st, sid, 2, NULL, 0, 100, keys_cb, &stop), 2);
    assert_string_equal(stop.k[1], "k02");
    /* `after` is compared by its first afterlen bytes */
    keys_t tail = {0};
    assert_int_equal(etl_state_ledger_unseen(st, sid, 2, "k2-junk", 2, 100, keys_cb, &tail), 3);
    assert_string_equal(tail.k[0], "k20");
    assert_string_equal(tail.k[1], "k22");
    assert_string_equal(tail.k[2], "k23");
    /* a run that saw everything leaves nothing unseen */
    keys_t none = {0};
    assert_int_equal(etl_state_ledger_unseen(st, other, 1, NULL, 0, 100, keys_cb, &none), 0);
}

/* ------------------------------------------------------------ deferred */

typedef struct deferred_rows {
    int n;
    char key[32][16], reason[32][64], record[32][64];
} deferred_rows_t;

static int deferred_cb(void *arg, const char *key, const char *reason, const char *record)
{
    deferred_rows_t *d = arg;
    etl_strlcpy(d->key[d->n], key, sizeof d->key[0]);
    etl_strlcpy(d->reason[d->n], reason, sizeof d->reason[0]);
    etl_strlcpy(d->record[d->n], record, sizeof d->record[0]);
    d->n++;
    return 0;
}

static void test_deferred_put_counts_tries(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "shifts", "forward");
    assert_int_equal(etl_state_deferred_count(st, sid), 0);
    assert_int_equal(etl_state_deferred_put(st, sid, "s1xx", 2, "terminal_id->terminals[t9]",
                                            "{\"id\":\"s1\"}"),
                     0);
    assert_int_equal(etl_state_deferred_count(st, sid), 1);
    assert_string_equal(q1(st, "SELECT tries FROM deferred WHERE key='s1'", NULL, NULL), "1");
    const char *first = q1(st, "SELECT first_seen FROM deferred WHERE key='s1'", NULL, NULL);
    char first_seen[64];
    etl_strlcpy(first_seen, first, sizeof first_seen);
    assert_int_equal(etl_state_deferred_put(st, sid, "s1", 2, "user_id->users[u1]",
                                            "{\"id\":\"s1\",\"v\":2}"),
                     0);
    assert_int_equal(etl_state_deferred_put(st, sid, "s1", 2, "user_id->users[u1]",
                                            "{\"id\":\"s1\",\"v\":3}"),
                     0);
    assert_int_equal(etl_state_deferred_count(st, sid), 1);
    rows_t *r = q(st, "SELECT tries, reason, record, first_seen FROM deferred WHERE key='s1'", NULL,
                  NULL);
    assert_string_equal(r->cell[0][0], "3");
    assert_string_equal(r->cell[0][1], "user_id->users[u1]");
    assert_string_equal(r->cell[0][2], "{\"id\":\"s1\",\"v\":3}");
    assert_string_equal(r->cell[0][3], first_seen);
    assert_int_equal(etl_state_deferred_del(st, sid, "s1", 2), 0);
    assert_int_equal(etl_state_deferred_count(st, sid), 0);
}

static void test_deferred_page_in_key_order(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "shifts", "forward");
    int64_t other = sid_of(st, "pos", "orders", "forward");
    const char *keys[] = {"d", "a", "c", "e", "b"};
    char rec[32];
    for (size_t i = 0; i < 5; i++) {
        snprintf(rec, sizeof rec, "{\"id\":\"%s\"}", keys[i]);
        assert_int_equal(etl_state_deferred_put(st, sid, keys[i], 1, "why", rec), 0);
    }
    assert_int_equal(etl_state_deferred_put(st, other, "a0", 2, "x", "{}"), 0);
    assert_int_equal(etl_state_deferred_count(st, sid), 5);
    assert_int_equal(etl_state_deferred_count(st, other), 1);
    deferred_rows_t d = {0};
    assert_int_equal(etl_state_deferred_page(st, sid, NULL, 2, deferred_cb, &d), 2);
    assert_string_equal(d.key[0], "a");
    assert_string_equal(d.key[1], "b");
    assert_string_equal(d.reason[0], "why");
    assert_string_equal(d.record[1], "{\"id\":\"b\"}");
    assert_int_equal(etl_state_deferred_page(st, sid, "b", 2, deferred_cb, &d), 2);
    assert_string_equal(d.key[2], "c");
    assert_string_equal(d.key[3], "d");
    assert_int_equal(etl_state_deferred_page(st, sid, "d", 2, deferred_cb, &d), 1);
    assert_string_equal(d.key[4], "e");
    assert_int_equal(etl_state_deferred_page(st, sid, "e", 2, deferred_cb, &d), 0);
    assert_int_equal(d.n, 5);
}

/* ------------------------------------------------------------ dead letters, counts */

static void test_dead_letters_are_kept(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    assert_int_equal(etl_state_dead_letter(st, 7, "pos", "orders", "forward", "o1",
                                           "lua: attempt to index nil", "{\"id\":\"o1\"}"),
                     0);
    assert_int_equal(etl_state_dead_letter(st, 7, "pos", "orders", "reverse", NULL, "bad", NULL),
                     0);
    rows_t *r = q(st,
                  "SELECT run_id, pipeline, stream, direction, key, error, record,"
                  " CASE WHEN created_at IS NULL THEN 0 ELSE 1 END FROM dead_letters ORDER BY id",
                  NULL, NULL);
    assert_int_equal(r->n, 2);
    const char *w0[] = {"7", "pos", "orders", "forward", "o1", "lua: attempt to index nil",
                        "{\"id\":\"o1\"}", "1"};
    const char *w1[] = {"7", "pos", "orders", "reverse", "(null)", "bad", "(null)", "1"};
    for (int i = 0; i < 8; i++) {
        assert_string_equal(r->cell[0][i], w0[i]);
        assert_string_equal(r->cell[1][i], w1[i]);
    }
}

static void test_counts_add_accumulates(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    etl_counts_t d = {1, 2, 3, 4, 5, 6, 7};
    for (int i = 0; i < 3; i++)
        assert_int_equal(etl_state_counts_add(st, 9, "orders", "forward", &d), 0);
    etl_counts_t e = {100, 0, 0, 0, 0, 0, 0};
    assert_int_equal(etl_state_counts_add(st, 9, "orders", "reverse", &e), 0);
    rows_t *r = q(st,
                  "SELECT read, created, updated, unchanged, deleted, deferred, failed, status"
                  " FROM run_streams WHERE run_id=9 AND direction=?",
                  "forward", NULL);
    assert_int_equal(r->n, 1);
    const char *w[] = {"3", "6", "9", "12", "15", "18", "21", "running"};
    for (int i = 0; i < 8; i++)
        assert_string_equal(r->cell[0][i], w[i]);
    assert_string_equal(
        q1(st, "SELECT read FROM run_streams WHERE run_id=9 AND direction='reverse'", NULL, NULL),
        "100");
}

/* ------------------------------------------------------------ reset */

static void fill_stream(etl_state_t *st, const char *pipeline, const char *stream)
{
    int64_t sid = sid_of(st, pipeline, stream, "forward");
    int64_t rsid = sid_of(st, pipeline, stream, "reverse");
    assert_int_equal(etl_state_checkpoint_put(st, pipeline, stream, "forward", "5", "int", 1, 0), 0);
    assert_int_equal(etl_state_checkpoint_put(st, pipeline, stream, "reverse", "6", "int", 1, 0), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k", 1, 1, 1), 0);
    assert_int_equal(etl_state_ledger_put(st, rsid, "k", 1, 1, 1), 0);
    assert_int_equal(etl_state_deferred_put(st, sid, "k", 1, "r", "{}"), 0);
    assert_int_equal(etl_state_dead_letter(st, 1, pipeline, stream, "forward", "k", "e", NULL), 0);
}

/* 1 when the stream still has a checkpoint, ledger and deferred rows. */
static int has_state(etl_state_t *st, const char *pipeline, const char *stream)
{
    int64_t sid = sid_of(st, pipeline, stream, "forward");
    int64_t rsid = sid_of(st, pipeline, stream, "reverse");
    etl_checkpoint_t c, rc;
    etl_state_checkpoint_get(st, pipeline, stream, "forward", &c);
    etl_state_checkpoint_get(st, pipeline, stream, "reverse", &rc);
    uint64_t h;
    int ck = c.cursor != NULL, rck = rc.cursor != NULL;
    int led = etl_state_ledger_get(st, sid, "k", 1, &h) == 1;
    int rled = etl_state_ledger_get(st, rsid, "k", 1, &h) == 1;
    int def = etl_state_deferred_count(st, sid) == 1;
    etl_checkpoint_clear(&c);
    etl_checkpoint_clear(&rc);
    if (ck && rck && led && rled && def)
        return 1;
    if (!ck && !rck && !led && !rled && !def)
        return 0;
    fail_msg("%s/%s partly reset: ck %d/%d ledger %d/%d deferred %d", pipeline, stream, ck, rck,
             led, rled, def);
    return -1;
}

static void test_reset_one_stream_or_all(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    fill_stream(st, "pos", "orders");
    fill_stream(st, "pos", "shifts");
    fill_stream(st, "pos@acme", "orders");
    fill_stream(st, "other", "orders");
    etl_run_info_t info = {"pos", NULL, "full", "forward", "cli", NULL};
    int64_t run;
    assert_int_equal(etl_state_run_begin(st, &info, &run), 0);

    assert_int_equal(etl_state_reset(st, "pos", "orders"), 0);
    assert_int_equal(has_state(st, "pos", "orders"), 0);
    assert_int_equal(has_state(st, "pos", "shifts"), 1);
    assert_int_equal(has_state(st, "pos@acme", "orders"), 1);
    assert_int_equal(has_state(st, "other", "orders"), 1);

    assert_int_equal(etl_state_reset(st, "pos", NULL), 0);
    assert_int_equal(has_state(st, "pos", "shifts"), 0);
    assert_int_equal(has_state(st, "pos@acme", "orders"), 1);
    assert_int_equal(has_state(st, "other", "orders"), 1);

    /* history stays */
    assert_string_equal(q1(st, "SELECT count(*) FROM runs", NULL, NULL), "1");
    assert_string_equal(q1(st, "SELECT count(*) FROM dead_letters WHERE pipeline='pos'", NULL,
                           NULL),
                        "2");
    /* nothing to reset is not an error */
    assert_int_equal(etl_state_reset(st, "nobody", NULL), 0);
}

/* ------------------------------------------------------------ kv */

static void test_kv_get_put_delete(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    char *v = (char *)"junk";
    assert_int_equal(etl_state_kv_get(st, "amazon@pos", "token", &v), 0);
    assert_null(v);
    assert_int_equal(etl_state_kv_put(st, "amazon@pos", "token", "abc"), 0);
    assert_int_equal(etl_state_kv_put(st, "amazon@other", "token", "xyz"), 0);
    assert_int_equal(etl_state_kv_get(st, "amazon@pos", "token", &v), 0);
    assert_string_equal(v, "abc");
    free(v);
    assert_int_equal(etl_state_kv_put(st, "amazon@pos", "token", "def"), 0); /* overwrite */
    assert_int_equal(etl_state_kv_get(st, "amazon@pos", "token", &v), 0);
    assert_string_equal(v, "def");
    free(v);
    assert_int_equal(etl_state_kv_put(st, "amazon@pos", "token", NULL), 0); /* delete */
    assert_int_equal(etl_state_kv_get(st, "amazon@pos", "token", &v), 0);
    assert_null(v);
    assert_int_equal(etl_state_kv_get(st, "amazon@other", "token", &v), 0);
    assert_string_equal(v, "xyz");
    free(v);
    assert_int_equal(etl_state_kv_put(st, "amazon@pos", "never-set", NULL), 0);
    /* what the kv connection wrote is visible to the store's own */
    assert_string_equal(q1(st, "SELECT value FROM kv WHERE scope=? AND key='token'",
                           "amazon@other", NULL),
                        "xyz");
}

typedef struct kv_worker {
    etl_state_t *st;
    int id;
    int errors;
} kv_worker_t;

static void *kv_thread(void *arg)
{
    kv_worker_t *w = arg;
    char scope[32], key[32], val[32];
    snprintf(scope, sizeof scope, "plugin%d@pos", w->id);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i % 10);
        snprintf(val, sizeof val, "v%d-%d", w->id, i);
        if (etl_state_kv_put(w->st, scope, key, val) != 0) {
            w->errors++;
            continue;
        }
        char *got = NULL;
        if (etl_state_kv_get(w->st, scope, key, &got) != 0 || !got || strcmp(got, val) != 0)
            w->errors++;
        free(got);
    }
    return NULL;
}

static void test_kv_from_two_threads(void **state)
{
    fixture_t *f = *state;
    kv_worker_t w[2] = {{f->st, 1, 0}, {f->st, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, kv_thread, &w[i]), 0);
    /* meanwhile the store's own connection writes in short transactions */
    int64_t sid = sid_of(f->st, "pos", "orders", "forward");
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof key, "o%d", i);
        assert_int_equal(etl_state_begin(f->st), 0);
        assert_int_equal(etl_state_ledger_put(f->st, sid, key, strlen(key), (uint64_t)i, 1), 0);
        assert_int_equal(etl_state_commit(f->st), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(w[0].errors, 0);
    assert_int_equal(w[1].errors, 0);
    for (int id = 1; id <= 2; id++) {
        char scope[32], want[32];
        snprintf(scope, sizeof scope, "plugin%d@pos", id);
        for (int k = 0; k < 10; k++) {
            char key[8], *v = NULL;
            snprintf(key, sizeof key, "k%d", k);
            snprintf(want, sizeof want, "v%d-%d", id, 90 + k);
            assert_int_equal(etl_state_kv_get(f->st, scope, key, &v), 0);
            assert_string_equal(v, want);
            free(v);
        }
    }
    assert_string_equal(q1(f->st, "SELECT count(*) FROM kv", NULL, NULL), "20");
}

/* ------------------------------------------------------------ query */

static void test_query_binds_params_and_reports_nulls(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "a", "forward", "1", "int", 1, 0), 0);
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "b", "forward", NULL, NULL, 2, 0), 0);
    assert_int_equal(etl_state_checkpoint_put(st, "zzz", "c", "forward", "3", "int", 3, 0), 0);
    rows_t r;
    memset(&r, 0, sizeof r);
    const char *params[] = {"pos"};
    assert_int_equal(etl_state_query(st,
                                     "SELECT stream AS s, cursor, records_synced FROM checkpoints"
                                     " WHERE pipeline=?1 ORDER BY stream",
                                     params, 1, rows_cb, &r),
                     0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ncols, 3);
    assert_string_equal(r.names[0], "s");
    assert_string_equal(r.names[1], "cursor");
    assert_string_equal(r.cell[0][0], "a");
    assert_string_equal(r.cell[0][1], "1");
    assert_string_equal(r.cell[1][0], "b");
    assert_string_equal(r.cell[1][1], "(null)");
    assert_string_equal(r.cell[1][2], "2");
    /* the callback can stop the walk */
    memset(&r, 0, sizeof r);
    r.stop_after = 1;
    assert_int_equal(etl_state_query(st, "SELECT pipeline FROM checkpoints", NULL, 0, rows_cb, &r),
                     0);
    assert_int_equal(r.n, 1);
    /* a parameter is data, never SQL */
    memset(&r, 0, sizeof r);
    const char *inj[] = {"pos' OR '1'='1"};
    assert_int_equal(etl_state_query(st, "SELECT stream FROM checkpoints WHERE pipeline=?", inj,
                                     1, rows_cb, &r),
                     0);
    assert_int_equal(r.n, 0);
    /* bad SQL is an error with a message */
    memset(&r, 0, sizeof r);
    assert_int_equal(etl_state_query(st, "SELECT nope FROM nowhere", NULL, 0, rows_cb, &r), -1);
    assert_non_null(strstr(etl_state_error(st), "nowhere"));
    assert_int_equal(r.n, 0);
}

/* ------------------------------------------------------------ share */

static void test_share_runs_statements_on_the_sink_connection(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "orders", "forward");
    sqlite3 *sink;
    assert_int_equal(sqlite3_open_v2(f->file, &sink, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(sink, 5000);
    assert_int_equal(etl_state_shared(st), 0);
    assert_int_equal(etl_state_share(st, sink), 0);
    assert_int_equal(etl_state_shared(st), 1);

    /* the sink's transaction is the store's: rolling it back undoes both */
    assert_int_equal(sqlite3_exec(sink, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(etl_state_begin(st), 0); /* no-op: no nested BEGIN error */
    assert_int_equal(sqlite3_exec(sink, "CREATE TABLE sink_rows(id INTEGER)", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, 11, 1), 0);
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "orders", "forward", "10", "int", 1, 0),
                     0);
    assert_int_equal(etl_state_commit(st), 0); /* no-op too */
    assert_int_equal(sqlite3_get_autocommit(sink), 0); /* still inside the sink's transaction */
    etl_state_rollback(st);                            /* and this leaves it alone */
    assert_int_equal(sqlite3_get_autocommit(sink), 0);
    uint64_t h;
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1); /* seen inside it */
    assert_int_equal(sqlite3_exec(sink, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 0);
    etl_checkpoint_t c;
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "forward", &c), 0);
    assert_null(c.cursor);

    /* committed by the sink: both land */
    assert_int_equal(sqlite3_exec(sink, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(sqlite3_exec(sink, "CREATE TABLE sink_rows(id INTEGER)", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, 11, 1), 0);
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "orders", "forward", "10", "int", 1, 0),
                     0);
    assert_int_equal(etl_state_commit(st), 0);
    assert_int_equal(sqlite3_exec(sink, "COMMIT", NULL, NULL, NULL), SQLITE_OK);

    /* back to its own connection */
    assert_int_equal(etl_state_share(st, NULL), 0);
    assert_int_equal(etl_state_shared(st), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1);
    assert_int_equal(h, 11);
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "forward", &c), 0);
    assert_string_equal(c.cursor, "10");
    etl_checkpoint_clear(&c);
    assert_string_equal(q1(st, "SELECT count(*) FROM sqlite_master WHERE name='sink_rows'", NULL,
                           NULL),
                        "1");
    /* and begin/commit are real again */
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k2", 2, 12, 1), 0);
    etl_state_rollback(st);
    assert_int_equal(etl_state_ledger_get(st, sid, "k2", 2, &h), 0);
    sqlite3_close(sink);
}

/* ------------------------------------------------------------ schedules and leases */

typedef struct sched_rows {
    int n;
    char key[16][32], owner[16][32];
    int64_t next[16], until[16], run[16];
} sched_rows_t;

static int sched_cb(void *arg, const char *key, int64_t next, const char *owner, int64_t until,
                    int64_t run)
{
    sched_rows_t *r = arg;
    etl_strlcpy(r->key[r->n], key, sizeof r->key[0]);
    etl_strlcpy(r->owner[r->n], owner ? owner : "(none)", sizeof r->owner[0]);
    r->next[r->n] = next;
    r->until[r->n] = until;
    r->run[r->n] = run;
    r->n++;
    return 0;
}

static sched_rows_t *sched(etl_state_t *st)
{
    static sched_rows_t r;
    memset(&r, 0, sizeof r);
    if (etl_state_schedule_list(st, sched_cb, &r) != 0)
        fail_msg("schedule list: %s", etl_state_error(st));
    return &r;
}

/* The row of key in sched(), or -1. */
static int sched_row(sched_rows_t *r, const char *key)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->key[i], key) == 0)
            return i;
    return -1;
}

static const char *const KEYS[] = {"a", "b", "c", "d", "e"};

static void test_claim_due_takes_the_earliest_due_key(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    const int64_t due[] = {300, 100, 200, 0, 900}; /* d: not scheduled; e: later */
    for (int i = 0; i < 5; i++)
        assert_int_equal(etl_state_schedule_set(st, KEYS[i], due[i]), 0);
    etl_lease_t l;
    const char *order[] = {"b", "c", "a"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(etl_state_lease_claim_due(st, KEYS, 5, "w1", 500, 60, &l), 1);
        assert_string_equal(l.pipeline, order[i]);
        assert_int_equal(l.due_us, due[order[i][0] - 'a']);
        assert_int_equal(l.lost_run_id, 0);
        assert_null(l.lost_owner);
        etl_lease_clear(&l);
    }
    /* the rest: leased, not scheduled, or not due yet */
    assert_int_equal(etl_state_lease_claim_due(st, KEYS, 5, "w2", 500, 60, &l), 0);
    assert_null(l.pipeline);
    /* only the keys asked about */
    assert_int_equal(etl_state_lease_claim_due(st, KEYS + 3, 2, "w1", 1000, 60, &l), 1);
    assert_string_equal(l.pipeline, "e");
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_claim_due(st, KEYS, 0, "w1", 1000, 60, &l), 0);
    /* keys without a row are no error */
    const char *ghosts[] = {"nobody", "x\"y\\z"};
    assert_int_equal(etl_state_lease_claim_due(st, ghosts, 2, "w1", 1000, 60, &l), 0);
    sched_rows_t *r = sched(st);
    assert_int_equal(r->n, 5);
    assert_string_equal(r->owner[sched_row(r, "b")], "w1");
    assert_int_equal(r->until[sched_row(r, "b")], 560);
    assert_string_equal(r->owner[sched_row(r, "d")], "(none)");
}

static void test_schedule_ensure_keeps_an_existing_time(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    assert_int_equal(etl_state_schedule_ensure(st, "p", 100), 0);
    assert_int_equal(etl_state_schedule_ensure(st, "p", 200), 0);
    sched_rows_t *r = sched(st);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->next[0], 100);
    assert_int_equal(etl_state_schedule_set(st, "p", 150), 0);
    assert_int_equal(sched(st)->next[0], 150);
    /* 0 is "not scheduled": ensure gives it a time */
    assert_int_equal(etl_state_schedule_set(st, "p", 0), 0);
    assert_int_equal(etl_state_schedule_ensure(st, "p", 300), 0);
    assert_int_equal(sched(st)->next[0], 300);
    assert_int_equal(etl_state_schedule_ensure(st, "", 300), -1);
}

static void test_renew_extends_and_release_frees(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    assert_int_equal(etl_state_schedule_set(st, "p", 100), 0);
    etl_lease_t l;
    assert_int_equal(etl_state_lease_claim_due(st, KEYS, 0, "w1", 100, 60, &l), 0);
    const char *p[] = {"p"};
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "w1", 100, 60, &l), 1);
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_renew(st, "p", "w1", 400), 1);
    assert_int_equal(sched(st)->until[0], 400);
    assert_int_equal(etl_state_lease_renew(st, "p", "w2", 900), 0); /* not w2's */
    assert_int_equal(etl_state_lease_run(st, "p", "w1", 42), 1);
    assert_int_equal(etl_state_lease_run(st, "p", "w2", 43), 0);
    assert_int_equal(sched(st)->run[0], 42);
    /* the run history names the worker of a run that holds a lease */
    etl_run_info_t info = {"p", NULL, "full", "forward", "schedule", NULL};
    int64_t run;
    assert_int_equal(etl_state_run_begin(st, &info, &run), 0);
    assert_int_equal(etl_state_lease_run(st, "p", "w1", run), 1);
    assert_int_equal(etl_state_lease_run(st, "p", "w2", run), 0);
    char rid[24];
    snprintf(rid, sizeof rid, "%lld", (long long)run);
    assert_string_equal(q1(st, "SELECT worker FROM runs WHERE id=?", rid, NULL), "w1");
    assert_int_equal(sched(st)->run[0], run);
    assert_int_equal(etl_state_lease_release(st, "p", "w2", 5), 0);
    assert_int_equal(sched(st)->next[0], 100); /* a release that is not ours changes nothing */
    assert_int_equal(etl_state_lease_release(st, "p", "w1", 1000), 1);
    sched_rows_t *r = sched(st);
    assert_string_equal(r->owner[0], "(none)");
    assert_int_equal(r->until[0], 0);
    assert_int_equal(r->run[0], 0);
    assert_int_equal(r->next[0], 1000);
    assert_int_equal(etl_state_lease_release(st, "p", "w1", 2000), 0); /* twice: not ours */
    assert_int_equal(etl_state_lease_renew(st, "p", "w1", 2000), 0);
    /* next_us < 0 leaves next_run_at alone */
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "w1", 1000, 60, &l), 1);
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_release(st, "p", "w1", -1), 1);
    assert_int_equal(sched(st)->next[0], 1000);
}

static void test_expired_lease_is_taken_over_with_its_run(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    const char *p[] = {"p"};
    etl_lease_t l;
    assert_int_equal(etl_state_schedule_set(st, "p", 100), 0);
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "host-a:1", 100, 50, &l), 1);
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_run(st, "p", "host-a:1", 42), 1);
    /* lease_until 150: still live at 150 */
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "host-b:2", 150, 50, &l), 0);
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "host-b:2", 151, 50, &l), 1);
    assert_string_equal(l.pipeline, "p");
    assert_int_equal(l.due_us, 100);
    assert_int_equal(l.lost_run_id, 42);
    assert_string_equal(l.lost_owner, "host-a:1");
    etl_lease_clear(&l);
    assert_null(l.lost_owner);
    /* the taker's lease starts without a run; the old owner has lost it */
    assert_int_equal(sched(st)->run[0], 0);
    assert_int_equal(etl_state_lease_renew(st, "p", "host-a:1", 500), 0);
    assert_int_equal(etl_state_lease_release(st, "p", "host-a:1", 999), 0);
    assert_int_equal(etl_state_lease_release(st, "p", "host-b:2", 500), 1);
    /* a lease released properly leaves nothing to take over */
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "host-c:3", 600, 50, &l), 1);
    assert_int_equal(l.lost_run_id, 0);
    assert_null(l.lost_owner);
    etl_lease_clear(&l);
}

static void test_manual_claim_names_the_holder(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    etl_lease_t l;
    char *holder = (char *)"junk";
    assert_int_equal(etl_state_lease_claim(st, "m", "w1", 100, 60, &l, &holder), 1);
    assert_null(holder);
    assert_string_equal(l.pipeline, "m");
    assert_int_equal(l.due_us, 0); /* the row was made: not scheduled */
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_claim(st, "m", "w2", 120, 60, &l, &holder), 0);
    assert_string_equal(holder, "w1");
    assert_null(l.pipeline);
    free(holder);
    /* a live lease holds even its own owner off: no second run */
    assert_int_equal(etl_state_lease_claim(st, "m", "w1", 130, 60, &l, &holder), 0);
    assert_string_equal(holder, "w1");
    free(holder);
    /* a manual claim ignores next_run_at, and takes an expired lease over */
    assert_int_equal(etl_state_lease_run(st, "m", "w1", 7), 1);
    assert_int_equal(etl_state_schedule_set(st, "m", 99999), 0);
    assert_int_equal(etl_state_lease_claim(st, "m", "w2", 161, 60, &l, &holder), 1);
    assert_null(holder);
    assert_int_equal(l.due_us, 99999);
    assert_int_equal(l.lost_run_id, 7);
    assert_string_equal(l.lost_owner, "w1");
    etl_lease_clear(&l);
    /* a NULL holder pointer is allowed */
    assert_int_equal(etl_state_lease_claim(st, "m", "w3", 170, 60, &l, NULL), 0);
}

static void test_takeover_only_from_the_named_owner(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    etl_lease_t l;
    assert_int_equal(etl_state_lease_claim(st, "t", "host:111", 100, 60, &l, NULL), 1);
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_run(st, "t", "host:111", 5), 1);
    assert_int_equal(etl_state_lease_takeover(st, "t", "host:999", "host:222", 110, 60, &l), 0);
    assert_null(l.pipeline);
    assert_int_equal(etl_state_lease_takeover(st, "t", "host:111", "host:222", 110, 60, &l), 1);
    assert_string_equal(l.lost_owner, "host:111");
    assert_int_equal(l.lost_run_id, 5);
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_renew(st, "t", "host:111", 500), 0);
    assert_int_equal(etl_state_lease_renew(st, "t", "host:222", 500), 1);
    assert_int_equal(etl_state_lease_takeover(st, "nokey", "host:111", "host:222", 110, 60, &l), 0);
}

static void test_schedule_list_in_key_order(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    const char *keys[] = {"pos@zeta", "pos", "Pos", "pos@acme", "a b"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(etl_state_schedule_set(st, keys[i], i + 1), 0);
    sched_rows_t *r = sched(st);
    const char *want[] = {"Pos", "a b", "pos", "pos@acme", "pos@zeta"}; /* bytewise */
    assert_int_equal(r->n, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(r->key[i], want[i]);
}

static void test_lease_calls_inside_a_transaction_are_refused(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    etl_lease_t l;
    const char *p[] = {"p"};
    assert_int_equal(etl_state_schedule_set(st, "p", 1), 0);
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "w", 10, 10, &l), -1);
    assert_non_null(strstr(etl_state_error(st), "inside a transaction"));
    etl_state_rollback(st);
    assert_int_equal(etl_state_lease_claim_due(st, p, 1, "w", 10, 10, &l), 1);
    etl_lease_clear(&l);
    assert_int_equal(etl_state_lease_claim(st, "q", "", 10, 10, &l, NULL), -1);
}

/* Processes racing for the same due keys: each claim of a (key, due time)
 * happens once, and a key is never held by two at a time (a release moves
 * its due time on, so a double hold would claim one due time twice). */
static void test_processes_racing_never_share_a_key(void **state)
{
    fixture_t *f = *state;
    enum { PROCS = 4, CLAIMS = 40 };
    for (int i = 0; i < 5; i++)
        assert_int_equal(etl_state_schedule_set(f->st, KEYS[i], 1), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t kids[PROCS];
    for (int k = 0; k < PROCS; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(fds[0]);
            char err[ETL_ERRLEN], owner[32], line[96];
            snprintf(owner, sizeof owner, "racer:%d", k);
            etl_state_t *st = etl_state_open(f->url, err, sizeof err);
            int got = 0, rc = st ? 0 : 1;
            for (int tries = 0; st && got < CLAIMS && tries < CLAIMS * 50; tries++) {
                etl_lease_t l;
                int c = etl_state_lease_claim_due(st, KEYS, 5, owner, etl_now_us(),
                                                  INT64_C(60000000), &l);
                if (c < 0) {
                    rc = 2;
                    break;
                }
                if (c == 0)
                    continue;
                int n = snprintf(line, sizeof line, "%s %lld\n", l.pipeline, (long long)l.due_us);
                if (write(fds[1], line, (size_t)n) != n)
                    rc = 3;
                if (etl_state_lease_release(st, l.pipeline, owner, l.due_us + 1) != 1)
                    rc = 4;
                etl_lease_clear(&l);
                got++;
            }
            etl_state_close(st);
            _exit(rc);
        }
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[96];
    char (*seen)[96] = calloc(PROCS * CLAIMS, sizeof *seen);
    int n = 0;
    while (fgets(line, sizeof line, in)) {
        for (int i = 0; i < n; i++)
            if (strcmp(seen[i], line) == 0)
                fail_msg("claimed twice: %s", line);
        assert_true(n < PROCS * CLAIMS);
        strcpy(seen[n++], line);
    }
    fclose(in);
    for (int k = 0; k < PROCS; k++) {
        int ws;
        assert_int_equal(waitpid(kids[k], &ws, 0), kids[k]);
        assert_true(WIFEXITED(ws));
        assert_int_equal(WEXITSTATUS(ws), 0);
    }
    assert_int_equal(n, PROCS * CLAIMS);
    free(seen);
}

/* ------------------------------------------------------------ holding a lease for a run */

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void test_lease_hold_renews_and_releases(void **state)
{
    fixture_t *f = *state;
    char err[ETL_ERRLEN] = "";
    atomic_int cancel;
    atomic_init(&cancel, 0);
    int64_t t0 = etl_now_us();
    etl_lease_hold_t *h = etl_lease_hold(f->st, f->url, "run", 1000000, &cancel, err, sizeof err);
    if (!h)
        fail_msg("%s", err);
    char *self = etl_lease_owner_self();
    assert_string_equal(etl_lease_hold_owner(h), self);
    sched_rows_t *r = sched(f->st);
    assert_string_equal(r->owner[0], self);
    assert_true(r->until[0] >= t0 + 1000000);
    sleep_ms(1500); /* past the first lease: renewed (every third of it) meanwhile */
    r = sched(f->st);
    assert_true(r->until[0] > etl_now_us());
    assert_int_equal(etl_lease_hold_lost(h), 0);
    assert_int_equal(atomic_load(&cancel), 0);
    /* held under this process's own name: a caller's, borrowed and left alone */
    etl_lease_hold_t *b = etl_lease_hold(f->st, f->url, "run", 300000, NULL, err, sizeof err);
    assert_non_null(b);
    assert_string_equal(etl_lease_hold_owner(b), self);
    etl_lease_hold_release(b);
    assert_string_equal(sched(f->st)->owner[0], self);
    etl_lease_hold_release(h);
    r = sched(f->st);
    assert_string_equal(r->owner[0], "(none)");
    etl_lease_hold_release(NULL);
    free(self);
}

static void test_lease_hold_takes_over_from_a_dead_local_process(void **state)
{
    fixture_t *f = *state;
    /* a process of this host that is gone */
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    char *self = etl_lease_owner_self();
    char *ghost = etl_asprintf("%.*s:%d", (int)(strrchr(self, ':') - self), self, (int)dead);
    etl_lease_t l;
    assert_int_equal(etl_state_lease_claim(f->st, "p", ghost, etl_now_us(), 60000000, &l, NULL),
                     1);
    etl_lease_clear(&l);
    etl_run_info_t info = {"p", NULL, "full", "forward", "cli", NULL};
    int64_t run;
    assert_int_equal(etl_state_run_begin(f->st, &info, &run), 0);
    assert_int_equal(etl_state_lease_run(f->st, "p", ghost, run), 1);
    char err[ETL_ERRLEN] = "";
    etl_lease_hold_t *h = etl_lease_hold(f->st, f->url, "p", 60000000, NULL, err, sizeof err);
    if (!h)
        fail_msg("%s", err);
    char rid[24];
    snprintf(rid, sizeof rid, "%lld", (long long)run);
    rows_t *r = q(f->st, "SELECT status, error FROM runs WHERE id=?", rid, NULL);
    assert_string_equal(r->cell[0][0], "failed");
    char *why = etl_asprintf("interrupted: %s stopped without finishing; %s took the pipeline over",
                             ghost, self);
    assert_string_equal(r->cell[0][1], why);
    free(why);
    etl_lease_hold_release(h);
    /* a live owner elsewhere is waited for, whatever its pid */
    assert_int_equal(etl_state_lease_claim(f->st, "p", "some-other-host:1", etl_now_us(), 60000000,
                                           &l, NULL),
                     1);
    etl_lease_clear(&l);
    assert_null(etl_lease_hold(f->st, f->url, "p", 60000000, NULL, err, sizeof err));
    assert_non_null(strstr(err, "already running (lease held by some-other-host:1)"));
    free(ghost);
    free(self);
}

static void test_lease_hold_lost_to_another_worker_cancels_the_run(void **state)
{
    fixture_t *f = *state;
    char err[ETL_ERRLEN] = "";
    atomic_int cancel;
    atomic_init(&cancel, 0);
    etl_lease_hold_t *h = etl_lease_hold(f->st, f->url, "run", 300000, &cancel, err, sizeof err);
    if (!h)
        fail_msg("%s", err);
    etl_lease_t l;
    assert_int_equal(etl_state_lease_takeover(f->st, "run", etl_lease_hold_owner(h), "thief:1",
                                              etl_now_us(), 60000000, &l),
                     1);
    etl_lease_clear(&l);
    for (int i = 0; i < 50 && !etl_lease_hold_lost(h); i++)
        sleep_ms(50);
    assert_int_equal(etl_lease_hold_lost(h), 1);
    assert_int_equal(atomic_load(&cancel), 1);
    etl_lease_hold_release(h); /* not ours: left to the thief */
    assert_string_equal(sched(f->st)->owner[0], "thief:1");
}

static void test_version_4_store_gets_the_new_schedules(void **state)
{
    fixture_t *f = *state;
    etl_state_close(f->st);
    f->st = NULL;
    /* what version 4 had: the unused text-typed schedules table */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE schedules;"
                                      " CREATE TABLE schedules(pipeline TEXT PRIMARY KEY,"
                                      " next_run_at TEXT, lease_owner TEXT, lease_until TEXT);"
                                      " INSERT INTO schedules VALUES('old', NULL, NULL, NULL);"
                                      " UPDATE etl_meta SET value='4' WHERE key='schema_version'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    f->st = open_ok(f->url);
    assert_string_equal(q1(f->st, "SELECT value FROM etl_meta WHERE key='schema_version'", NULL,
                           NULL),
                        "5");
    assert_string_equal(q1(f->st, "SELECT group_concat(name || ' ' || type, ', ') FROM"
                                  " pragma_table_info('schedules')", NULL, NULL),
                        "pipeline TEXT, next_run_at INTEGER, lease_owner TEXT,"
                        " lease_until INTEGER, run_id INTEGER");
    assert_int_equal(sched(f->st)->n, 0);
    etl_lease_t l;
    assert_int_equal(etl_state_lease_claim(f->st, "p", "w", 1, 10, &l, NULL), 1);
    etl_lease_clear(&l);
}

/* ------------------------------------------------------------ PostgreSQL only */

static void test_pg_open_creates_tables_in_the_search_path_schema(void **state)
{
    fixture_t *f = *state;
    assert_string_equal(etl_state_kind(f->st), "postgres");
    assert_null(etl_state_file(f->st));
    assert_string_equal(q1(f->st, "SELECT value FROM etl_meta WHERE key='schema_version'", NULL,
                           NULL),
                        "5");
    static const char *const tables[] = {"checkpoints", "dead_letters", "deferred", "etl_meta",
                                         "etl_streams", "kv",           "ledger",   "run_streams",
                                         "runs",        "schedules"};
    rows_t *r = q(f->st, "SELECT table_name FROM information_schema.tables WHERE table_schema=?"
                         " ORDER BY 1", f->schema, NULL);
    assert_int_equal(r->n, (int)ETL_ARRAY_LEN(tables));
    for (size_t i = 0; i < ETL_ARRAY_LEN(tables); i++)
        assert_string_equal(r->cell[i][0], tables[i]);
    /* keys page in byte order whatever the database's collation */
    assert_string_equal(q1(f->st, "SELECT collation_name FROM information_schema.columns WHERE"
                                  " table_schema=? AND table_name='ledger' AND column_name='key'",
                           f->schema, NULL),
                        "C");
}

static void test_pg_future_schema_version_is_refused(void **state)
{
    fixture_t *f = *state;
    rows_t r;
    assert_int_equal(etl_state_query(f->st, "UPDATE etl_meta SET value='7' WHERE"
                                            " key='schema_version'", NULL, 0, rows_cb, &r),
                     0);
    char err[ETL_ERRLEN] = "";
    assert_null(etl_state_open(f->url, err, sizeof err));
    assert_non_null(strstr(err, "schema version 7"));
    assert_non_null(strstr(err, "newer than this etl (5)"));
    assert_non_null(strstr(err, "postgres://"));
}

typedef struct opener {
    const char *url;
    int ok;
    char err[ETL_ERRLEN];
} opener_t;

static void *open_thread(void *arg)
{
    opener_t *o = arg;
    etl_state_t *st = etl_state_open(o->url, o->err, sizeof o->err);
    o->ok = st != NULL;
    etl_state_close(st);
    return NULL;
}

static void test_pg_concurrent_first_opens_migrate_once(void **state)
{
    fixture_t *f = *state;
    char schema[64];
    snprintf(schema, sizeof schema, "%s_fresh", f->schema);
    pg_admin("CREATE SCHEMA %s", schema);
    char *url = pg_url(schema);
    opener_t o[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        o[i] = (opener_t){url, 0, ""};
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        if (!o[i].ok)
            fail_msg("open %d: %s", i, o[i].err);
    }
    etl_state_t *st = open_ok(url);
    assert_string_equal(q1(st, "SELECT count(*) FROM etl_meta", NULL, NULL), "1");
    assert_string_equal(q1(st, "SELECT count(*) FROM information_schema.tables WHERE"
                               " table_schema=?", schema, NULL),
                        "10");
    etl_state_close(st);
    free(url);
    pg_admin("DROP SCHEMA %s CASCADE", schema);
}

static void test_pg_share_is_refused(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(etl_state_share(f->st, f), -1);
    assert_non_null(strstr(etl_state_error(f->st), "cannot share"));
    assert_int_equal(etl_state_share(f->st, NULL), 0);
    assert_int_equal(etl_state_shared(f->st), 0);
}

static void test_pg_pipelined_error_shows_at_commit_and_rolls_back(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "orders", "forward");
    uint64_t h;
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, 5, 1), 0);
    /* reason NOT NULL: this fails on the server, reported later */
    assert_int_equal(etl_state_deferred_put(st, sid, "k1", 2, NULL, "{}"), 0);
    assert_int_equal(etl_state_checkpoint_put(st, "pos", "orders", "forward", "9", "int", 1, 0),
                     0);
    assert_int_equal(etl_state_commit(st), -1);
    assert_non_null(strstr(etl_state_error(st), "deferred"));
    assert_non_null(strstr(etl_state_error(st), "reason"));
    etl_state_rollback(st); /* what the writer does next: harmless */
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 0);
    etl_checkpoint_t c;
    assert_int_equal(etl_state_checkpoint_get(st, "pos", "orders", "forward", &c), 0);
    assert_null(c.cursor);
    /* and the store goes on */
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, 6, 1), 0);
    assert_int_equal(etl_state_commit(st), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1);
    assert_int_equal(h, 6);
}

static void test_pg_long_transactions_drain_the_pipeline(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "items", "forward");
    char key[32];
    assert_int_equal(etl_state_begin(st), 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "%d", i);
        assert_int_equal(etl_state_ledger_add(st, sid, key, strlen(key), (uint64_t)i + 1, 1), 0);
        assert_int_equal(etl_state_ledger_seen(st, sid, key, strlen(key), 2), 0);
    }
    assert_int_equal(etl_state_commit(st), 0);
    assert_string_equal(q1(st, "SELECT count(*) FROM ledger WHERE seen=2", NULL, NULL), "2000");

    /* an error early in a long transaction: a later call fails, nothing lands */
    assert_int_equal(etl_state_begin(st), 0);
    int failed_at = -1;
    etl_counts_t one = {1, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 5000 && failed_at < 0; i++) {
        snprintf(key, sizeof key, "x%d", i);
        int rc = i == 10 ? etl_state_deferred_put(st, sid, key, strlen(key), NULL, "{}")
                         : etl_state_ledger_put(st, sid, key, strlen(key), 1, 3) ||
                               etl_state_counts_add(st, 1, "items", "forward", &one);
        if (rc != 0)
            failed_at = i;
    }
    assert_true(failed_at > 10);
    assert_non_null(strstr(etl_state_error(st), "reason"));
    assert_int_equal(etl_state_ledger_put(st, sid, "late", 4, 1, 3), -1);
    assert_int_equal(etl_state_commit(st), -1);
    etl_state_rollback(st);
    assert_string_equal(q1(st, "SELECT count(*) FROM ledger WHERE seen=3", NULL, NULL), "0");
    assert_string_equal(q1(st, "SELECT count(*) FROM run_streams", NULL, NULL), "0");
}

/* Inside a transaction row operations are combined into one statement per
 * kind; what lands must be what the statements one by one would leave. */
static void test_pg_combined_row_operations_keep_their_order(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "items", "forward");
    int64_t other = sid_of(st, "pos", "items", "reverse");
    uint64_t h;
    char *mark;
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "a", 1, 1, 1), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "a", 1, 2, 1), 0);   /* the last wins */
    assert_int_equal(etl_state_ledger_seen(st, sid, "a", 1, 7), 0);     /* after the put */
    assert_int_equal(etl_state_ledger_put(st, sid, "b", 1, 3, 1), 0);
    assert_int_equal(etl_state_ledger_del(st, sid, "b", 1), 0);         /* after the put */
    assert_int_equal(etl_state_ledger_put(st, sid, "b", 1, 4, 1), 0);   /* and back */
    assert_int_equal(etl_state_echo_put(st, other, "a", 1, "c1"), 0);   /* another ledger */
    assert_int_equal(etl_state_ledger_put(st, other, "e", 1, 9, 1), 0);
    assert_int_equal(etl_state_echo_put(st, other, "e", 1, "c2"), 0);   /* after the put */
    assert_int_equal(etl_state_deferred_put(st, sid, "d\"q", 3, "why", "{}"), 0);
    assert_int_equal(etl_state_deferred_del(st, sid, "d\"q", 3), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k\\\"{},", 6, 5, 1), 0); /* quoting */
    assert_int_equal(etl_state_ledger_put(st, sid, "", 0, 6, 1), 0);
    assert_int_equal(etl_state_commit(st), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "a", 1, &h), 1);
    assert_int_equal(h, 2);
    assert_string_equal(q1(st, "SELECT seen FROM ledger WHERE key='a' AND hash=2", NULL, NULL),
                        "7");
    assert_int_equal(etl_state_ledger_get(st, sid, "b", 1, &h), 1);
    assert_int_equal(h, 4);
    assert_int_equal(etl_state_echo_get(st, other, "a", 1, &mark), 1);
    assert_string_equal(mark, "c1");
    free(mark);
    assert_int_equal(etl_state_echo_get(st, other, "e", 1, &mark), 1);
    assert_string_equal(mark, "c2");
    free(mark);
    assert_int_equal(etl_state_deferred_count(st, sid), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k\\\"{},", 6, &h), 1);
    assert_int_equal(h, 5);
    assert_int_equal(etl_state_ledger_get(st, sid, "", 0, &h), 1);
    assert_int_equal(h, 6);
    /* a rollback forgets what was queued */
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_del(st, sid, "a", 1), 0);
    etl_state_rollback(st);
    assert_int_equal(etl_state_ledger_get(st, sid, "a", 1, &h), 1);
}

static void test_pg_reconnects_after_the_connection_is_lost(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "orders", "forward");
    char pid[24];
    etl_strlcpy(pid, q1(st, "SELECT pg_backend_pid()", NULL, NULL), sizeof pid);
    pg_admin("SELECT pg_terminate_backend(%s)", pid);
    /* the first call may learn of the loss; the next one reconnects */
    if (etl_state_ledger_count(st, sid) < 0)
        assert_non_null(strstr(etl_state_error(st), "postgres://"));
    assert_int_equal(etl_state_ledger_count(st, sid), 0);
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k", 1, 1, 1), 0);
    assert_int_equal(etl_state_commit(st), 0);
    assert_true(etl_state_ledger_count(st, sid) > 0);
    assert_string_not_equal(q1(st, "SELECT pg_backend_pid()", NULL, NULL), pid);
}

/* A stream looked up often has its ledger read into memory: the answers
 * must stay the server's through writes, rollbacks and outside changes. */
static void test_pg_ledger_cache_answers_like_the_server(void **state)
{
    fixture_t *f = *state;
    etl_state_t *st = f->st;
    int64_t sid = sid_of(st, "pos", "items", "forward");
    int64_t other = sid_of(st, "pos", "items", "reverse");
    char key[32];
    uint64_t h;
    char *mark;
    assert_int_equal(etl_state_begin(st), 0);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(etl_state_ledger_put(st, sid, key, strlen(key), (uint64_t)i + 1, 1), 0);
    }
    assert_int_equal(etl_state_echo_put(st, sid, "k7", 2, "c7"), 0);
    assert_int_equal(etl_state_commit(st), 0);
    /* enough lookups to load it, then lookups served from memory */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3000; i++) {
            snprintf(key, sizeof key, "k%d", i);
            assert_int_equal(etl_state_ledger_get(st, sid, key, strlen(key), &h), 1);
            assert_int_equal(h, i == 7 ? 0 : (uint64_t)i + 1);
        }
        assert_int_equal(etl_state_ledger_get(st, sid, "absent", 6, &h), 0);
        assert_int_equal(etl_state_echo_get(st, sid, "k7", 2, &mark), 1);
        assert_string_equal(mark, "c7");
        free(mark);
        assert_int_equal(etl_state_echo_get(st, sid, "k8", 2, &mark), 0);
        assert_null(mark);
    }
    /* the answers come from memory now: a change made behind the store's back
     * (which a run's lease rules out) is not seen */
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE %s.ledger SET hash=12345 WHERE key='k0'", f->schema);
    pg_admin("%s", sql);
    assert_int_equal(etl_state_ledger_get(st, sid, "k0", 2, &h), 1);
    assert_int_equal(h, 1);
    snprintf(sql, sizeof sql, "UPDATE %s.ledger SET hash=1 WHERE key='k0'", f->schema);
    pg_admin("%s", sql);
    /* writes in a transaction are seen at once, and stay after the commit */
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k1", 2, 111, 1), 0);
    assert_int_equal(etl_state_ledger_del(st, sid, "k2", 2), 0);
    assert_int_equal(etl_state_echo_put(st, sid, "k3", 2, "c3"), 0);
    assert_int_equal(etl_state_ledger_add(st, sid, "new", 3, 5, 1), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k1", 2, &h), 1);
    assert_int_equal(h, 111);
    assert_int_equal(etl_state_ledger_get(st, sid, "k2", 2, &h), 0);
    assert_int_equal(etl_state_commit(st), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "new", 3, &h), 1);
    assert_int_equal(h, 5);
    assert_int_equal(etl_state_echo_get(st, sid, "k3", 2, &mark), 1);
    assert_string_equal(mark, "c3");
    free(mark);
    assert_int_equal(etl_state_ledger_get(st, sid, "k3", 2, &h), 1);
    assert_int_equal(h, 0);
    /* a rollback takes back what the cache was told */
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k4", 2, 444, 1), 0);
    assert_int_equal(etl_state_ledger_del(st, sid, "k5", 2), 0);
    etl_state_rollback(st);
    assert_int_equal(etl_state_ledger_get(st, sid, "k4", 2, &h), 1);
    assert_int_equal(h, 5);
    assert_int_equal(etl_state_ledger_get(st, sid, "k5", 2, &h), 1);
    /* so does a commit that fails */
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        etl_state_ledger_get(st, sid, key, strlen(key), &h);
    }
    assert_int_equal(etl_state_begin(st), 0);
    assert_int_equal(etl_state_ledger_put(st, sid, "k6", 2, 666, 1), 0);
    assert_int_equal(etl_state_deferred_put(st, sid, "k6", 2, NULL, "{}"), 0);
    assert_int_equal(etl_state_commit(st), -1);
    etl_state_rollback(st);
    assert_int_equal(etl_state_ledger_get(st, sid, "k6", 2, &h), 1);
    assert_int_equal(h, 7);
    /* another stream's ledger is its own */
    assert_int_equal(etl_state_ledger_get(st, other, "k1", 2, &h), 0);
    /* the server agrees with everything answered above */
    assert_string_equal(q1(st, "SELECT hash FROM ledger WHERE key='k1'", NULL, NULL), "111");
    assert_string_equal(q1(st, "SELECT count(*) FROM ledger WHERE key='k2'", NULL, NULL), "0");
    /* SQL run through the store may change a ledger: the copy is dropped */
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        etl_state_ledger_get(st, sid, key, strlen(key), &h);
    }
    q(st, "UPDATE ledger SET hash=999 WHERE key='k9'", NULL, NULL);
    assert_int_equal(etl_state_ledger_get(st, sid, "k9", 2, &h), 1);
    assert_int_equal(h, 999);
    /* and a reset */
    assert_int_equal(etl_state_reset(st, "pos", "items"), 0);
    assert_int_equal(etl_state_ledger_get(st, sid, "k9", 2, &h), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest sqlite_only[] = {
        T(test_open_creates_and_migrates),
        T(test_open_creates_missing_folders_and_abs_form),
        T(test_version_1_store_is_migrated),
        T(test_future_schema_version_is_refused),
        T(test_share_runs_statements_on_the_sink_connection),
        T(test_version_4_store_gets_the_new_schedules),
    };
    const struct CMUnitTest both[] = {
        T(test_open_refuses_other_urls),
        T(test_reopen_is_idempotent),
        T(test_stream_ids_are_stable),
        T(test_runs_begin_and_finish),
        T(test_run_stream_records_status_and_counts),
        T(test_checkpoint_absent_is_empty),
        T(test_checkpoint_put_get),
        T(test_checkpoint_first_put_without_cursor),
        T(test_checkpoint_rollback_discards),
        T(test_ledger_get_put_seen_del),
        T(test_ledger_unseen_pages_in_key_order),
        T(test_deferred_put_counts_tries),
        T(test_deferred_page_in_key_order),
        T(test_dead_letters_are_kept),
        T(test_counts_add_accumulates),
        T(test_reset_one_stream_or_all),
        T(test_kv_get_put_delete),
        T(test_kv_from_two_threads),
        T(test_query_binds_params_and_reports_nulls),
        T(test_claim_due_takes_the_earliest_due_key),
        T(test_schedule_ensure_keeps_an_existing_time),
        T(test_renew_extends_and_release_frees),
        T(test_expired_lease_is_taken_over_with_its_run),
        T(test_manual_claim_names_the_holder),
        T(test_takeover_only_from_the_named_owner),
        T(test_schedule_list_in_key_order),
        T(test_lease_calls_inside_a_transaction_are_refused),
        T(test_processes_racing_never_share_a_key),
        T(test_lease_hold_renews_and_releases),
        T(test_lease_hold_takes_over_from_a_dead_local_process),
        T(test_lease_hold_lost_to_another_worker_cancels_the_run),
    };
    const struct CMUnitTest pg_only[] = {
        T(test_pg_open_creates_tables_in_the_search_path_schema),
        T(test_pg_future_schema_version_is_refused),
        T(test_pg_concurrent_first_opens_migrate_once),
        T(test_pg_share_is_refused),
        T(test_pg_pipelined_error_shows_at_commit_and_rolls_back),
        T(test_pg_long_transactions_drain_the_pipeline),
        T(test_pg_combined_row_operations_keep_their_order),
        T(test_pg_ledger_cache_answers_like_the_server),
        T(test_pg_reconnects_after_the_connection_is_lost),
    };
#undef T
    int failed = cmocka_run_group_tests(both, NULL, NULL);
    if (pg_base())
        failed += cmocka_run_group_tests(pg_only, NULL, NULL);
    else
        failed += cmocka_run_group_tests(sqlite_only, NULL, NULL);
    return failed;
}
