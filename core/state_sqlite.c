/* state_sqlite.c - the state store on SQLite: schema, migrations, typed
 * accessors, schedules and leases (state.h has the contracts). */
#define _GNU_SOURCE
#include "state_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl/record.h"

/* Each migration takes the schema from version i to i+1. Never edit one that
 * has shipped; append a new one. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE etl_streams(id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL,"
    " stream TEXT NOT NULL, direction TEXT NOT NULL, UNIQUE(pipeline, stream, direction));"
    "CREATE TABLE checkpoints(pipeline TEXT NOT NULL, stream TEXT NOT NULL,"
    " direction TEXT NOT NULL, cursor TEXT, cursor_type TEXT, last_sync_time TEXT,"
    " last_record_time TEXT, records_synced INTEGER NOT NULL DEFAULT 0,"
    " is_full_sync INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(pipeline, stream, direction));"
    "CREATE TABLE runs(id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, client TEXT,"
    " mode TEXT NOT NULL, direction TEXT NOT NULL, triggered_by TEXT NOT NULL,"
    " started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL, error TEXT,"
    " log_file TEXT, worker TEXT);"
    "CREATE INDEX runs_by_pipeline ON runs(pipeline, client, id);"
    "CREATE TABLE run_streams(run_id INTEGER NOT NULL, stream TEXT NOT NULL,"
    " direction TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'running',"
    " read INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL DEFAULT 0,"
    " updated INTEGER NOT NULL DEFAULT 0, unchanged INTEGER NOT NULL DEFAULT 0,"
    " deleted INTEGER NOT NULL DEFAULT 0, deferred INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER, error TEXT,"
    " PRIMARY KEY(run_id, stream, direction));"
    "CREATE TABLE ledger(sid INTEGER NOT NULL, key TEXT NOT NULL, hash INTEGER NOT NULL,"
    " seen INTEGER NOT NULL, PRIMARY KEY(sid, key)) WITHOUT ROWID;"
    "CREATE TABLE deferred(sid INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL,"
    " record TEXT NOT NULL, first_seen TEXT NOT NULL, last_try TEXT NOT NULL,"
    " tries INTEGER NOT NULL DEFAULT 1, PRIMARY KEY(sid, key));"
    "CREATE TABLE dead_letters(id INTEGER PRIMARY KEY, run_id INTEGER, pipeline TEXT NOT NULL,"
    " stream TEXT NOT NULL, direction TEXT NOT NULL, key TEXT, error TEXT NOT NULL,"
    " record TEXT, created_at TEXT NOT NULL);"
    "CREATE INDEX dead_letters_by_stream ON dead_letters(pipeline, stream);"
    "CREATE TABLE kv(scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT,"
    " updated_at TEXT NOT NULL, PRIMARY KEY(scope, key));"
    "CREATE TABLE schedules(pipeline TEXT PRIMARY KEY, next_run_at TEXT, lease_owner TEXT,"
    " lease_until TEXT);",
    /* 1 -> 2: echo marks (hash 0): the other direction wrote this key with
     * this cursor; reading it back is not a change */
    "ALTER TABLE ledger ADD COLUMN echo TEXT;",
    /* 2 -> 3: keys that are integers are stored as integers, so a table
     * read in key order fills the ledger in order instead of scattering
     * "1", "10", "100"... across it */
    "CREATE TABLE ledger_v3(sid INTEGER NOT NULL, key NOT NULL, hash INTEGER NOT NULL,"
    " seen INTEGER NOT NULL, echo TEXT, PRIMARY KEY(sid, key)) WITHOUT ROWID;"
    "INSERT INTO ledger_v3 SELECT sid, CASE WHEN CAST(CAST(key AS INTEGER) AS TEXT) = key"
    " THEN CAST(key AS INTEGER) ELSE key END, hash, seen, echo FROM ledger;"
    "DROP TABLE ledger; ALTER TABLE ledger_v3 RENAME TO ledger;",
    /* 3 -> 4: a full scan read in key order resumes after the last key it
     * committed; resume_max is the first part's greatest cursor */
    "ALTER TABLE checkpoints ADD COLUMN resume_key TEXT;"
    "ALTER TABLE checkpoints ADD COLUMN resume_max TEXT;"
    "ALTER TABLE checkpoints ADD COLUMN resume_max_type TEXT;"
    "ALTER TABLE checkpoints ADD COLUMN resume_scan INTEGER;",
    /* 4 -> 5: schedules and leases (the table of version 1 was never
     * used): times as integer microseconds, and the run holding the lease */
    "DROP TABLE schedules;"
    "CREATE TABLE schedules(pipeline TEXT PRIMARY KEY, next_run_at INTEGER NOT NULL DEFAULT 0,"
    " lease_owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0,"
    " run_id INTEGER NOT NULL DEFAULT 0);",
};

enum {
    S_LEDGER_GET,
    S_LEDGER_PUT,
    S_LEDGER_SEEN,
    S_LEDGER_DEL,
    S_DEFERRED_PUT,
    S_DEFERRED_DEL,
    S_COUNTS_ADD,
    S_CKPT_PUT,
    S_DEAD,
    S_ECHO_PUT,
    S_ECHO_GET,
    S_LEDGER_ADD,
    S_COUNT_
};

static const char *const stmt_sql[S_COUNT_] = {
    [S_LEDGER_GET] = "SELECT hash FROM ledger WHERE sid=?1 AND key=?2",
    [S_LEDGER_PUT] = "INSERT INTO ledger(sid,key,hash,seen) VALUES(?1,?2,?3,?4)"
                     " ON CONFLICT(sid,key) DO UPDATE SET hash=excluded.hash, seen=excluded.seen,"
                     " echo=NULL",
    [S_ECHO_PUT] = "INSERT INTO ledger(sid,key,hash,seen,echo) VALUES(?1,?2,0,0,?3)"
                   " ON CONFLICT(sid,key) DO UPDATE SET hash=0, echo=excluded.echo",
    [S_ECHO_GET] = "SELECT echo FROM ledger WHERE sid=?1 AND key=?2 AND hash=0",
    /* a plain INSERT appends in place where an UPSERT would not */
    [S_LEDGER_ADD] = "INSERT INTO ledger(sid,key,hash,seen) VALUES(?1,?2,?3,?4)",
    [S_LEDGER_SEEN] = "UPDATE ledger SET seen=?3 WHERE sid=?1 AND key=?2",
    [S_LEDGER_DEL] = "DELETE FROM ledger WHERE sid=?1 AND key=?2",
    [S_DEFERRED_PUT] = "INSERT INTO deferred(sid,key,reason,record,first_seen,last_try)"
                       " VALUES(?1,?2,?3,?4,?5,?5) ON CONFLICT(sid,key) DO UPDATE SET"
                       " reason=excluded.reason, record=excluded.record,"
                       " last_try=excluded.last_try, tries=deferred.tries+1",
    [S_DEFERRED_DEL] = "DELETE FROM deferred WHERE sid=?1 AND key=?2",
    [S_COUNTS_ADD] = "INSERT INTO run_streams(run_id,stream,direction,read,created,updated,"
                     "unchanged,deleted,deferred,failed) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
                     " ON CONFLICT(run_id,stream,direction) DO UPDATE SET"
                     " read=read+excluded.read, created=created+excluded.created,"
                     " updated=updated+excluded.updated, unchanged=unchanged+excluded.unchanged,"
                     " deleted=deleted+excluded.deleted, deferred=deferred+excluded.deferred,"
                     " failed=failed+excluded.failed",
    [S_CKPT_PUT] = "INSERT INTO checkpoints(pipeline,stream,direction,cursor,cursor_type,"
                   "last_sync_time,last_record_time,records_synced,is_full_sync)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?6,?7,?8) ON CONFLICT(pipeline,stream,direction)"
                   " DO UPDATE SET cursor=coalesce(excluded.cursor,cursor),"
                   " cursor_type=coalesce(excluded.cursor_type,cursor_type),"
                   " last_sync_time=excluded.last_sync_time,"
                   " last_record_time=CASE WHEN excluded.records_synced>0"
                   "   THEN excluded.last_record_time ELSE last_record_time END,"
                   " records_synced=records_synced+excluded.records_synced,"
                   " is_full_sync=excluded.is_full_sync",
    [S_DEAD] = "INSERT INTO dead_letters(run_id,pipeline,stream,direction,key,error,record,"
               "created_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
};

typedef struct lite {
    etl_state_t base;
    char *path;
    sqlite3 *own;     /* the store's connection */
    sqlite3 *db;      /* where statements run: own, or the sink's when shared */
    sqlite3_stmt *stmt[S_COUNT_];
    sqlite3 *kvdb;    /* for plugins, any thread */
    pthread_mutex_t kv_mu;
} lite_t;

static const etl_state_ops_t lite_ops;
static void lite_close(etl_state_t *base);

static int fail_on(lite_t *st, sqlite3 *db, const char *what)
{
    etl_errf(st->base.err, sizeof st->base.err, "state store %s: %s: %s", st->path, what,
             sqlite3_errmsg(db));
    return -1;
}

static int fail(lite_t *st, const char *what) { return fail_on(st, st->db, what); }
/* For statements on the store's own connection (st->db may be a sink's). */
static int own_fail(lite_t *st, const char *what) { return fail_on(st, st->own, what); }

static int exec(lite_t *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        etl_errf(st->base.err, sizeof st->base.err, "state store %s: %s", st->path,
                 msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static sqlite3 *open_db(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    /* one thread at a time per connection (the kv one has its own mutex):
     * no need for SQLite's per-call locking */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        etl_errf(err, errlen, "cannot open state store %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 30000);
    /* WAL lets status readers and kv writers work beside a run; NORMAL is
     * durable across process crashes, which is what checkpoints need. */
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-8192; PRAGMA wal_autocheckpoint=16384;", NULL, NULL, NULL);
    return db;
}

static int migrate(lite_t *st)
{
    if (exec(st, "CREATE TABLE IF NOT EXISTS etl_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)"))
        return -1;
    if (exec(st, "BEGIN IMMEDIATE"))
        return -1;
    sqlite3_stmt *s = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM etl_meta WHERE key='schema_version'", -1,
                           &s, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    s = NULL;
    if (version > (int)ETL_ARRAY_LEN(migrations)) {
        etl_errf(st->base.err, sizeof st->base.err,
                 "state store %s has schema version %d, newer than this etl (%d): upgrade etl",
                 st->path, version, (int)ETL_ARRAY_LEN(migrations));
        goto rollback;
    }
    for (int v = version; v < (int)ETL_ARRAY_LEN(migrations); v++) {
        if (exec(st, migrations[v]))
            goto rollback;
    }
    if (version != (int)ETL_ARRAY_LEN(migrations)) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "INSERT OR REPLACE INTO etl_meta(key,value) VALUES('schema_version','%d')",
                 (int)ETL_ARRAY_LEN(migrations));
        if (exec(st, sql))
            goto rollback;
    }
    return exec(st, "COMMIT");
fail:
    fail(st, "migration");
rollback:
    sqlite3_finalize(s);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* SQLite's memory statistics take a global mutex on every allocation;
 * nothing here reads them. Must run before SQLite initializes. */
__attribute__((constructor)) static void no_memstatus(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

etl_state_t *etl_state_sqlite_open(const char *path, char *err, size_t errlen)
{
    lite_t *st = calloc(1, sizeof *st);
    if (!st) {
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    st->base.ops = &lite_ops;
    pthread_mutex_init(&st->kv_mu, NULL);
    if (!(st->path = etl_strdup(path))) {
        etl_errf(err, errlen, "out of memory");
        goto fail;
    }
    char *dir = etl_path_dir(path);
    if (dir && etl_mkdirs(dir) != 0) {
        etl_errf(err, errlen, "cannot create folder %s for the state store: %s", dir,
                 strerror(errno));
        free(dir);
        goto fail;
    }
    free(dir);
    if (!(st->own = open_db(path, err, errlen)))
        goto fail;
    st->db = st->own;
    if (migrate(st) != 0) {
        etl_strlcpy(err, st->base.err, errlen);
        goto fail;
    }
    return &st->base;
fail:
    lite_close(&st->base);
    return NULL;
}

static void finalize_all(lite_t *st)
{
    for (int i = 0; i < S_COUNT_; i++) {
        sqlite3_finalize(st->stmt[i]);
        st->stmt[i] = NULL;
    }
}

static void lite_close(etl_state_t *base)
{
    lite_t *st = (lite_t *)base;
    if (!st)
        return;
    finalize_all(st);
    sqlite3_close(st->own);
    sqlite3_close(st->kvdb);
    pthread_mutex_destroy(&st->kv_mu);
    free(st->path);
    free(st);
}

const char *etl_state_sqlite_file(const etl_state_t *base)
{
    return ((const lite_t *)base)->path;
}

static int lite_share(etl_state_t *base, void *db)
{
    lite_t *st = (lite_t *)base;
    sqlite3 *target = db ? (sqlite3 *)db : st->own;
    if (target == st->db)
        return 0;
    finalize_all(st);
    st->db = target;
    return 0;
}

static int lite_shared(const etl_state_t *base)
{
    const lite_t *st = (const lite_t *)base;
    return st->db != st->own;
}

static sqlite3_stmt *stmt(lite_t *st, int which)
{
    if (!st->stmt[which] &&
        sqlite3_prepare_v3(st->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                           &st->stmt[which], NULL) != SQLITE_OK) {
        fail(st, "prepare");
        return NULL;
    }
    return st->stmt[which];
}

/* Steps a cached statement to completion and resets it. */
static int run_stmt(lite_t *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fail(st, what);
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    return 0;
}

/* Binds the arguments `types` lists from ?1 on: 't' a const char * (NULL
 * binds NULL), 'i' an int64_t. */
static void bind_v(sqlite3_stmt *s, const char *types, va_list ap)
{
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            sqlite3_bind_text(s, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t));
    }
}

static void bind(sqlite3_stmt *s, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    bind_v(s, types, ap);
    va_end(ap);
}

/* A one-shot statement on db with its arguments bound (bind_v); NULL when it
 * does not prepare, the message in st->err. */
static sqlite3_stmt *prep_on(lite_t *st, sqlite3 *db, const char *what, const char *sql,
                             const char *types, va_list ap)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fail_on(st, db, what);
        return NULL;
    }
    bind_v(s, types, ap);
    return s;
}

static sqlite3_stmt *prep(lite_t *st, const char *what, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *s = prep_on(st, st->db, what, sql, types, ap);
    va_end(ap);
    return s;
}

/* Steps a one-shot statement (NULL: it did not prepare) to its end and
 * finalizes it: the rows it changed, or -1. */
static int once(lite_t *st, sqlite3_stmt *s, const char *what)
{
    if (!s)
        return -1;
    sqlite3 *db = sqlite3_db_handle(s);
    int rc = sqlite3_step(s) == SQLITE_DONE ? sqlite3_changes(db) : fail_on(st, db, what);
    sqlite3_finalize(s);
    return rc;
}

/* Steps a cached lookup without resetting it: 1 a row to read, 0 none, -1
 * error. */
static int lookup(lite_t *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : fail(st, what);
}

static int lite_begin(etl_state_t *base)
{
    lite_t *st = (lite_t *)base;
    return lite_shared(base) ? 0 : exec(st, "BEGIN IMMEDIATE");
}

static int lite_commit(etl_state_t *base)
{
    return lite_shared(base) ? 0 : exec((lite_t *)base, "COMMIT");
}

/* A batch's lookups share one read transaction: in WAL mode every
 * statement outside one takes and drops the shared locks again. */
static int lite_read_begin(etl_state_t *base)
{
    lite_t *st = (lite_t *)base;
    return sqlite3_get_autocommit(st->db) ? exec(st, "BEGIN") : 0;
}

static void lite_read_end(etl_state_t *base)
{
    lite_t *st = (lite_t *)base;
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
}

static void lite_rollback(etl_state_t *base)
{
    lite_t *st = (lite_t *)base;
    if (!lite_shared(base) && !sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static int lite_stream_id(etl_state_t *base, const char *pipeline, const char *stream,
                          const char *direction, int64_t *sid)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = NULL;
    int rc = -1;
    for (int pass = 0; pass < 2 && rc != 0; pass++) {
        const char *sql = pass == 0 ? "SELECT id FROM etl_streams WHERE pipeline=?1 AND stream=?2"
                                      " AND direction=?3"
                                    : "INSERT INTO etl_streams(pipeline,stream,direction)"
                                      " VALUES(?1,?2,?3) RETURNING id";
        if (!(s = prep(st, "stream id", sql, "ttt", pipeline, stream, direction)))
            return -1;
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            *sid = sqlite3_column_int64(s, 0);
            rc = 0;
        } else if (step != SQLITE_DONE) {
            fail(st, "stream id");
            sqlite3_finalize(s);
            return -1;
        }
        sqlite3_finalize(s);
    }
    return rc;
}

/* ------------------------------------------------------------ runs */

static int lite_run_begin(etl_state_t *base, const etl_run_info_t *info, int64_t *run_id)
{
    lite_t *st = (lite_t *)base;
    char now[40];
    etl_state_now_text(now, sizeof now);
    sqlite3_stmt *s = prep(st, "run begin", "INSERT INTO runs(pipeline,client,mode,direction,"
                           "triggered_by,started_at,status,log_file)"
                           " VALUES(?,?,?,?,?,?,'running',?)",
                           "ttttttt", info->pipeline, info->client, info->mode, info->direction,
                           info->triggered_by ? info->triggered_by : "cli", now, info->log_file);
    if (!s)
        return -1;
    int rc = once(st, s, "run begin") < 0 ? -1 : 0;
    *run_id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

static int lite_run_log_file(etl_state_t *base, int64_t run_id, const char *path)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = prep(st, "run log", "UPDATE runs SET log_file=? WHERE id=?", "ti", path,
                           run_id);
    return once(st, s, "run log") < 0 ? -1 : 0;
}

static int lite_run_finish(etl_state_t *base, int64_t run_id, const char *status, const char *error)
{
    lite_t *st = (lite_t *)base;
    char now[40];
    etl_state_now_text(now, sizeof now);
    sqlite3_stmt *s = prep(st, "run finish", "UPDATE runs SET finished_at=?, status=?, error=?"
                           " WHERE id=?", "ttti", now, status, error, run_id);
    return once(st, s, "run finish") < 0 ? -1 : 0;
}

static int lite_run_abandon(etl_state_t *base, int64_t run_id, const char *error)
{
    lite_t *st = (lite_t *)base;
    char now[40];
    etl_state_now_text(now, sizeof now);
    sqlite3_stmt *s = prep(st, "run abandon", "UPDATE runs SET finished_at=?, status='failed',"
                           " error=? WHERE id=? AND status='running'", "tti", now, error, run_id);
    int n = once(st, s, "run abandon");
    return n < 0 ? -1 : n > 0;
}

static int lite_run_stream_status(etl_state_t *base, int64_t run_id, const char *stream,
                                  const char *direction, const char *status,
                                  int64_t duration_ms, const char *error)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = prep(st, "run stream", "UPDATE run_streams SET status=?, duration_ms=?,"
                           " error=? WHERE run_id=? AND stream=? AND direction=?",
                           "tititt", status, duration_ms, error, run_id, stream, direction);
    return once(st, s, "run stream") < 0 ? -1 : 0;
}

static int lite_counts_add(etl_state_t *base, int64_t run_id, const char *stream,
                           const char *direction, const etl_counts_t *d)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = stmt(st, S_COUNTS_ADD);
    if (!s)
        return -1;
    bind(s, "itt", run_id, stream, direction);
    const int64_t v[] = {d->read, d->created, d->updated, d->unchanged,
                         d->deleted, d->deferred, d->failed};
    for (int i = 0; i < 7; i++)
        sqlite3_bind_int64(s, 4 + i, v[i]);
    return run_stmt(st, s, "counts");
}

/* ------------------------------------------------------------ checkpoints */

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? etl_strdup((const char *)t) : NULL;
}

static int lite_checkpoint_get(etl_state_t *base, const char *pipeline, const char *stream,
                               const char *direction, etl_checkpoint_t *out)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = prep(st, "checkpoint", "SELECT cursor, cursor_type, last_sync_time,"
                           " last_record_time, records_synced, is_full_sync, resume_key,"
                           " resume_max, resume_max_type, resume_scan FROM checkpoints"
                           " WHERE pipeline=? AND stream=? AND direction=?",
                           "ttt", pipeline, stream, direction);
    if (!s)
        return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->cursor = col_dup(s, 0);
        out->type = col_dup(s, 1);
        out->last_sync_time = col_dup(s, 2);
        out->last_record_time = col_dup(s, 3);
        out->records_synced = sqlite3_column_int64(s, 4);
        out->is_full_sync = sqlite3_column_int(s, 5);
        out->resume_key = col_dup(s, 6);
        out->resume_max = col_dup(s, 7);
        out->resume_max_type = col_dup(s, 8);
        out->resume_scan = sqlite3_column_int64(s, 9);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(st, "checkpoint");
}

static int lite_checkpoint_put(etl_state_t *base, const char *pipeline, const char *stream,
                               const char *direction, const char *cursor, const char *type,
                               int64_t records, int full)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = stmt(st, S_CKPT_PUT);
    if (!s)
        return -1;
    char now[40];
    etl_state_now_text(now, sizeof now);
    bind(s, "ttttttii", pipeline, stream, direction, cursor, cursor ? type : NULL, now, records,
         (int64_t)full);
    return run_stmt(st, s, "checkpoint");
}

static int lite_resume_put(etl_state_t *base, const char *pipeline, const char *stream,
                           const char *direction, const char *key, const char *max,
                           const char *max_type, int64_t scan)
{
    lite_t *st = (lite_t *)base;
    const char *sql = key ? "INSERT INTO checkpoints(pipeline,stream,direction,resume_key,"
                            "resume_max,resume_max_type,resume_scan) VALUES(?1,?2,?3,?4,?5,?6,?7)"
                            " ON CONFLICT(pipeline,stream,direction) DO UPDATE SET"
                            " resume_key=excluded.resume_key, resume_max=excluded.resume_max,"
                            " resume_max_type=excluded.resume_max_type,"
                            " resume_scan=excluded.resume_scan"
                          : "UPDATE checkpoints SET resume_key=NULL, resume_max=NULL,"
                            " resume_max_type=NULL, resume_scan=NULL"
                            " WHERE pipeline=?1 AND stream=?2 AND direction=?3";
    /* the clearing UPDATE takes the first three only */
    sqlite3_stmt *s = prep(st, "resume point", sql, key ? "tttttti" : "ttt", pipeline, stream,
                           direction, key, max, max ? max_type : NULL, scan);
    return once(st, s, "resume point") < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ ledger */

/* A ledger key is bound as an integer when its text is one ("42", "-7",
 * not "042" or "4.0"): the same text always binds the same way. */
static void bind_key(sqlite3_stmt *s, int idx, const char *key, size_t klen)
{
    if (klen && klen <= 19) {
        size_t i = key[0] == '-';
        int canonical = i < klen && (key[i] != '0' || klen == i + 1) && !(i && key[i] == '0');
        for (size_t k = i; canonical && k < klen; k++)
            canonical = key[k] >= '0' && key[k] <= '9';
        if (canonical) {
            char buf[24];
            memcpy(buf, key, klen);
            buf[klen] = '\0';
            errno = 0;
            long long v = strtoll(buf, NULL, 10);
            if (!errno) {
                sqlite3_bind_int64(s, idx, v);
                return;
            }
        }
    }
    sqlite3_bind_text(s, idx, key, (int)klen, SQLITE_STATIC);
}

/* A cached statement with the stream id and ledger key bound as ?1, ?2. */
static sqlite3_stmt *keyed(lite_t *st, int which, int64_t sid, const char *key, size_t klen)
{
    sqlite3_stmt *s = stmt(st, which);
    if (s) {
        sqlite3_bind_int64(s, 1, sid);
        bind_key(s, 2, key, klen);
    }
    return s;
}

static int lite_ledger_get(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                           uint64_t *hash)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = keyed(st, S_LEDGER_GET, sid, key, klen);
    if (!s)
        return -1;
    int found = lookup(st, s, "ledger");
    if (found == 1)
        *hash = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return found;
}

static int lite_ledger_put(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                           uint64_t hash, int64_t seen)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = keyed(st, S_LEDGER_PUT, sid, key, klen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 3, (int64_t)hash);
    sqlite3_bind_int64(s, 4, seen);
    return run_stmt(st, s, "ledger");
}

static int lite_ledger_add(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                           uint64_t hash, int64_t seen)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = keyed(st, S_LEDGER_ADD, sid, key, klen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 3, (int64_t)hash);
    sqlite3_bind_int64(s, 4, seen);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    if ((sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_CONSTRAINT)
        return lite_ledger_put(base, sid, key, klen, hash, seen);
    return fail(st, "ledger");
}

static int lite_ledger_seen(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                            int64_t seen)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = keyed(st, S_LEDGER_SEEN, sid, key, klen);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 3, seen);
    return run_stmt(st, s, "ledger");
}

static int lite_ledger_del(etl_state_t *base, int64_t sid, const char *key, size_t klen)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = keyed(st, S_LEDGER_DEL, sid, key, klen);
    return s ? run_stmt(st, s, "ledger") : -1;
}

static int64_t count_where_sid(lite_t *st, const char *sql, int64_t sid)
{
    sqlite3_stmt *s = prep(st, "count", sql, "i", sid);
    if (!s)
        return -1;
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
}

static int64_t lite_ledger_count(etl_state_t *base, int64_t sid)
{
    lite_t *st = (lite_t *)base;
    /* only "empty or not" matters to callers; EXISTS stays O(1) */
    return count_where_sid(st, "SELECT EXISTS(SELECT 1 FROM ledger WHERE sid=?)", sid);
}

static int lite_ledger_unseen(etl_state_t *base, int64_t sid, int64_t seen, const char *after,
                              size_t afterlen, int limit, int (*cb)(void *, const char *, size_t),
                              void *arg)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->own,
                           "SELECT key FROM ledger WHERE sid=?1 AND seen<>?2 AND hash<>1"
                           " AND (?3 IS NULL OR key>?3) ORDER BY key LIMIT ?4",
                           -1, &s, NULL) != SQLITE_OK)
        return own_fail(st, "ledger scan");
    sqlite3_bind_int64(s, 1, sid);
    sqlite3_bind_int64(s, 2, seen);
    if (after)
        bind_key(s, 3, after, afterlen);
    sqlite3_bind_int(s, 4, limit);
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        if (cb(arg, (const char *)sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0)))
            break;
    }
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    sqlite3_finalize(s);
    return ok ? n : own_fail(st, "ledger scan");
}

static int lite_echo_put(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                         const char *cursor)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = keyed(st, S_ECHO_PUT, sid, key, klen);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 3, cursor ? cursor : "", -1, SQLITE_STATIC);
    return run_stmt(st, s, "ledger echo");
}

static int lite_echo_get(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                         char **cursor)
{
    lite_t *st = (lite_t *)base;
    *cursor = NULL;
    sqlite3_stmt *s = keyed(st, S_ECHO_GET, sid, key, klen);
    if (!s)
        return -1;
    int found = lookup(st, s, "ledger echo");
    if (found == 1)
        *cursor = col_dup(s, 0);
    sqlite3_reset(s);
    return found;
}

/* ------------------------------------------------------------ deferred */

static int lite_deferred_put(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                             const char *reason, const char *record_json)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = stmt(st, S_DEFERRED_PUT);
    if (!s)
        return -1;
    char now[40];
    etl_state_now_text(now, sizeof now);
    sqlite3_bind_int64(s, 1, sid);
    sqlite3_bind_text(s, 2, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, record_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, now, -1, SQLITE_TRANSIENT);
    return run_stmt(st, s, "deferred");
}

static int lite_deferred_del(etl_state_t *base, int64_t sid, const char *key, size_t klen)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = stmt(st, S_DEFERRED_DEL);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    sqlite3_bind_text(s, 2, key, (int)klen, SQLITE_STATIC);
    return run_stmt(st, s, "deferred");
}

static int64_t lite_deferred_count(etl_state_t *base, int64_t sid)
{
    lite_t *st = (lite_t *)base;
    return count_where_sid(st, "SELECT count(*) FROM deferred WHERE sid=?", sid);
}

static int lite_deferred_page(etl_state_t *base, int64_t sid, const char *after, int limit,
                              int (*cb)(void *, const char *, const char *, const char *),
                              void *arg)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->own,
                           "SELECT key, reason, record FROM deferred WHERE sid=?1"
                           " AND (?2 IS NULL OR key>?2) ORDER BY key LIMIT ?3",
                           -1, &s, NULL) != SQLITE_OK)
        return own_fail(st, "deferred");
    sqlite3_bind_int64(s, 1, sid);
    sqlite3_bind_text(s, 2, after, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, limit);
    int rc, n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        if (cb(arg, (const char *)sqlite3_column_text(s, 0),
               (const char *)sqlite3_column_text(s, 1), (const char *)sqlite3_column_text(s, 2)))
            break;
    }
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    sqlite3_finalize(s);
    return ok ? n : own_fail(st, "deferred");
}

static int lite_dead_letter(etl_state_t *base, int64_t run_id, const char *pipeline,
                            const char *stream, const char *direction, const char *key,
                            const char *error, const char *record_json)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = stmt(st, S_DEAD);
    if (!s)
        return -1;
    char now[40];
    etl_state_now_text(now, sizeof now);
    bind(s, "ittttttt", run_id, pipeline, stream, direction, key, error, record_json, now);
    return run_stmt(st, s, "dead letter");
}

static int lite_reset(etl_state_t *base, const char *pipeline, const char *stream)
{
    lite_t *st = (lite_t *)base;
    static const char *const sql[] = {
        "DELETE FROM ledger WHERE sid IN (SELECT id FROM etl_streams WHERE pipeline=?1"
        " AND (?2 IS NULL OR stream=?2))",
        "DELETE FROM deferred WHERE sid IN (SELECT id FROM etl_streams WHERE pipeline=?1"
        " AND (?2 IS NULL OR stream=?2))",
        "DELETE FROM checkpoints WHERE pipeline=?1 AND (?2 IS NULL OR stream=?2)",
    };
    if (lite_begin(base))
        return -1;
    for (size_t i = 0; i < ETL_ARRAY_LEN(sql); i++) {
        if (once(st, prep(st, "reset", sql[i], "tt", pipeline, stream), "reset") < 0) {
            lite_rollback(base);
            return -1;
        }
    }
    return lite_commit(base);
}

/* ------------------------------------------------------------ kv */

static int kv_open(lite_t *st)
{
    if (st->kvdb)
        return 0;
    st->kvdb = open_db(st->path, st->base.err, sizeof st->base.err);
    return st->kvdb ? 0 : -1;
}

static int lite_kv_get(etl_state_t *base, const char *scope, const char *key, char **value)
{
    lite_t *st = (lite_t *)base;
    *value = NULL;
    pthread_mutex_lock(&st->kv_mu);
    int rc = -1;
    sqlite3_stmt *s = NULL;
    if (kv_open(st) == 0 &&
        sqlite3_prepare_v2(st->kvdb, "SELECT value FROM kv WHERE scope=? AND key=?", -1, &s,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            *value = col_dup(s, 0);
            rc = 0;
        } else if (step == SQLITE_DONE) {
            rc = 0;
        }
    }
    if (rc != 0 && st->kvdb)
        etl_errf(st->base.err, sizeof st->base.err, "state store kv: %s", sqlite3_errmsg(st->kvdb));
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->kv_mu);
    return rc;
}

static int lite_kv_put(etl_state_t *base, const char *scope, const char *key, const char *value)
{
    lite_t *st = (lite_t *)base;
    pthread_mutex_lock(&st->kv_mu);
    int rc = -1;
    sqlite3_stmt *s = NULL;
    const char *sql = value ? "INSERT INTO kv(scope,key,value,updated_at) VALUES(?,?,?,?)"
                              " ON CONFLICT(scope,key) DO UPDATE SET value=excluded.value,"
                              " updated_at=excluded.updated_at"
                            : "DELETE FROM kv WHERE scope=? AND key=?";
    if (kv_open(st) == 0 && sqlite3_prepare_v2(st->kvdb, sql, -1, &s, NULL) == SQLITE_OK) {
        char now[40];
        etl_state_now_text(now, sizeof now);
        sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        if (value) {
            sqlite3_bind_text(s, 3, value, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 4, now, -1, SQLITE_STATIC);
        }
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0 && st->kvdb)
        etl_errf(st->base.err, sizeof st->base.err, "state store kv: %s", sqlite3_errmsg(st->kvdb));
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->kv_mu);
    return rc;
}

static int lite_query(etl_state_t *base, const char *sql, const char *const *params, size_t nparams,
                      int (*cb)(void *, int, const char *const *, const char *const *), void *arg)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->own, sql, -1, &s, NULL) != SQLITE_OK)
        return fail(st, "query");
    for (size_t i = 0; i < nparams; i++)
        sqlite3_bind_text(s, (int)i + 1, params[i], -1, SQLITE_STATIC);
    int n = sqlite3_column_count(s), rc;
    const char *cols[64], *names[64];
    if (n > 64)
        n = 64;
    for (int i = 0; i < n; i++)
        names[i] = sqlite3_column_name(s, i);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < n; i++)
            cols[i] = (const char *)sqlite3_column_text(s, i);
        if (cb(arg, n, cols, names))
            break;
    }
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    sqlite3_finalize(s);
    return ok ? 0 : fail(st, "query");
}

/* ------------------------------------------------------------ schedules and leases */

/* Schedule calls run on the store's own connection: a shared store's batch
 * transactions are the sink's, and a claim needs a transaction of its own. */

static sqlite3_stmt *own_prep(lite_t *st, const char *what, const char *sql, const char *types,
                              ...)
{
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *s = prep_on(st, st->own, what, sql, types, ap);
    va_end(ap);
    return s;
}

static int own_begin(lite_t *st, const char *what)
{
    if (!sqlite3_get_autocommit(st->own)) {
        etl_errf(st->base.err, sizeof st->base.err,
                 "state store %s: %s: called inside a transaction", st->path, what);
        return -1;
    }
    /* IMMEDIATE takes the write lock first: two processes cannot both read
     * a lease as free and then both take it */
    if (sqlite3_exec(st->own, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return own_fail(st, what);
    return 0;
}

static int own_end(lite_t *st, int rc, const char *what)
{
    if (rc >= 0 && sqlite3_exec(st->own, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = own_fail(st, what);
    if (!sqlite3_get_autocommit(st->own))
        sqlite3_exec(st->own, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int lite_schedule_ensure(etl_state_t *base, const char *key, int64_t next_us)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = own_prep(st, "schedule", "INSERT INTO schedules(pipeline,next_run_at)"
                               " VALUES(?1,?2) ON CONFLICT(pipeline) DO UPDATE SET"
                               " next_run_at=excluded.next_run_at WHERE schedules.next_run_at=0",
                               "ti", key, next_us);
    return once(st, s, "schedule") < 0 ? -1 : 0;
}

static int lite_schedule_set(etl_state_t *base, const char *key, int64_t next_us)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = own_prep(st, "schedule", "INSERT INTO schedules(pipeline,next_run_at)"
                               " VALUES(?1,?2) ON CONFLICT(pipeline) DO UPDATE SET"
                               " next_run_at=excluded.next_run_at",
                               "ti", key, next_us);
    return once(st, s, "schedule") < 0 ? -1 : 0;
}

static int take(lite_t *st, const char *key, const char *owner, int64_t until_us)
{
    sqlite3_stmt *s = own_prep(st, "lease", "UPDATE schedules SET lease_owner=?2,"
                               " lease_until=?3, run_id=0 WHERE pipeline=?1",
                               "tti", key, owner, until_us);
    return once(st, s, "lease") == 1 ? 0 : -1;
}

/* Fills *out from a row (key, next_run_at, lease_owner, run_id). */
static int fill_from(lite_t *st, sqlite3_stmt *s, etl_lease_t *out)
{
    const char *old = (const char *)sqlite3_column_text(s, 2);
    if (etl_state_lease_fill(out, (const char *)sqlite3_column_text(s, 0),
                             sqlite3_column_int64(s, 1), old, sqlite3_column_int64(s, 3)) != 0) {
        etl_errf(st->base.err, sizeof st->base.err, "out of memory");
        return -1;
    }
    return 0;
}

static int lite_lease_claim_due(etl_state_t *base, const char *const *keys, size_t n,
                                const char *owner, int64_t now_us, int64_t lease_us,
                                etl_lease_t *out)
{
    lite_t *st = (lite_t *)base;
    etl_buf_t sql;
    etl_buf_init(&sql);
    etl_buf_adds(&sql, "SELECT pipeline, next_run_at, lease_owner, run_id FROM schedules"
                       " WHERE pipeline IN (");
    for (size_t i = 0; i < n; i++)
        etl_buf_printf(&sql, "%s?%zu", i ? "," : "", i + 2);
    etl_buf_adds(&sql, ") AND next_run_at>0 AND next_run_at<=?1 AND (lease_owner IS NULL OR"
                       " lease_until<?1) ORDER BY next_run_at, pipeline LIMIT 1");
    if (sql.oom || n > 30000) {
        etl_buf_free(&sql);
        etl_errf(st->base.err, sizeof st->base.err, "state store: too many keys to claim from");
        return -1;
    }
    int rc = -1;
    sqlite3_stmt *s = NULL;
    if (own_begin(st, "lease") != 0)
        goto done;
    if (sqlite3_prepare_v2(st->own, sql.data, -1, &s, NULL) != SQLITE_OK) {
        own_fail(st, "lease");
        goto done;
    }
    sqlite3_bind_int64(s, 1, now_us);
    for (size_t i = 0; i < n; i++)
        sqlite3_bind_text(s, (int)i + 2, keys[i], -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        rc = 0;
    } else if (step != SQLITE_ROW) {
        own_fail(st, "lease");
    } else if (fill_from(st, s, out) == 0) {
        rc = take(st, out->pipeline, owner, now_us + lease_us) == 0 ? 1 : -1;
    }
done:
    sqlite3_finalize(s);
    etl_buf_free(&sql);
    rc = own_end(st, rc, "lease");
    if (rc != 1)
        etl_lease_clear(out);
    return rc;
}

static int lite_lease_claim(etl_state_t *base, const char *key, const char *owner,
                            int64_t now_us, int64_t lease_us, etl_lease_t *out, char **holder)
{
    lite_t *st = (lite_t *)base;
    int rc = -1;
    sqlite3_stmt *s = NULL;
    if (own_begin(st, "lease") != 0)
        goto done;
    s = own_prep(st, "lease", "INSERT INTO schedules(pipeline) VALUES(?1)"
                 " ON CONFLICT(pipeline) DO NOTHING", "t", key);
    if (once(st, s, "lease") < 0)
        goto done;
    s = own_prep(st, "lease", "SELECT pipeline, next_run_at, lease_owner, run_id, lease_until"
                 " FROM schedules WHERE pipeline=?1", "t", key);
    if (!s)
        goto done;
    if (sqlite3_step(s) != SQLITE_ROW) {
        own_fail(st, "lease");
        goto done;
    }
    const char *cur = (const char *)sqlite3_column_text(s, 2);
    if (cur && sqlite3_column_int64(s, 4) >= now_us) {
        /* a live lease, ours included: a second run of the key must wait */
        if (holder && !(*holder = etl_strdup(cur))) {
            etl_errf(st->base.err, sizeof st->base.err, "out of memory");
            goto done;
        }
        rc = 0;
    } else if (fill_from(st, s, out) == 0) {
        rc = take(st, key, owner, now_us + lease_us) == 0 ? 1 : -1;
    }
done:
    sqlite3_finalize(s);
    rc = own_end(st, rc, "lease");
    if (rc != 1)
        etl_lease_clear(out);
    if (rc < 0 && holder) {
        free(*holder);
        *holder = NULL;
    }
    return rc;
}

static int lite_lease_takeover(etl_state_t *base, const char *key, const char *from_owner,
                               const char *owner, int64_t now_us, int64_t lease_us,
                               etl_lease_t *out)
{
    lite_t *st = (lite_t *)base;
    int rc = -1;
    sqlite3_stmt *s = NULL;
    if (own_begin(st, "lease") != 0)
        goto done;
    s = own_prep(st, "lease", "SELECT pipeline, next_run_at, lease_owner, run_id FROM schedules"
                 " WHERE pipeline=?1 AND lease_owner=?2", "tt", key, from_owner);
    if (!s)
        goto done;
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE)
        rc = 0;
    else if (step != SQLITE_ROW)
        own_fail(st, "lease");
    else if (fill_from(st, s, out) == 0)
        rc = take(st, key, owner, now_us + lease_us) == 0 ? 1 : -1;
done:
    sqlite3_finalize(s);
    rc = own_end(st, rc, "lease");
    if (rc != 1)
        etl_lease_clear(out);
    return rc;
}

static int lite_lease_renew(etl_state_t *base, const char *key, const char *owner,
                            int64_t until_us)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = own_prep(st, "lease renewal", "UPDATE schedules SET lease_until=?3"
                               " WHERE pipeline=?1 AND lease_owner=?2", "tti", key, owner,
                               until_us);
    int n = once(st, s, "lease renewal");
    return n < 0 ? -1 : n > 0;
}

static int lite_lease_run(etl_state_t *base, const char *key, const char *owner, int64_t run_id)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = own_prep(st, "lease", "UPDATE schedules SET run_id=?3"
                               " WHERE pipeline=?1 AND lease_owner=?2", "tti", key, owner, run_id);
    int n = once(st, s, "lease");
    if (n <= 0)
        return n < 0 ? -1 : 0;
    s = own_prep(st, "lease", "UPDATE runs SET worker=?1 WHERE id=?2", "ti", owner, run_id);
    return once(st, s, "lease") < 0 ? -1 : 1;
}

static int lite_lease_release(etl_state_t *base, const char *key, const char *owner,
                              int64_t next_us)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = own_prep(st, "lease release", "UPDATE schedules SET lease_owner=NULL,"
                               " lease_until=0, run_id=0, next_run_at=CASE WHEN ?3>=0 THEN ?3"
                               " ELSE next_run_at END WHERE pipeline=?1 AND lease_owner=?2",
                               "tti", key, owner, next_us);
    int n = once(st, s, "lease release");
    return n < 0 ? -1 : n > 0;
}

static int lite_schedule_list(etl_state_t *base,
                              int (*cb)(void *, const char *, int64_t, const char *, int64_t,
                              int64_t),
                              void *arg)
{
    lite_t *st = (lite_t *)base;
    sqlite3_stmt *s = own_prep(st, "schedules", "SELECT pipeline, next_run_at, lease_owner,"
                               " lease_until, run_id FROM schedules ORDER BY pipeline", "");
    if (!s)
        return -1;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cb(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
               (const char *)sqlite3_column_text(s, 2), sqlite3_column_int64(s, 3),
               sqlite3_column_int64(s, 4)))
            break;
    }
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    sqlite3_finalize(s);
    return ok ? 0 : own_fail(st, "schedules");
}

static const etl_state_ops_t lite_ops = {
    .kind = "sqlite",
    .close = lite_close,
    .share = lite_share,
    .shared = lite_shared,
    .begin = lite_begin,
    .read_begin = lite_read_begin,
    .read_end = lite_read_end,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .stream_id = lite_stream_id,
    .run_begin = lite_run_begin,
    .run_finish = lite_run_finish,
    .run_abandon = lite_run_abandon,
    .run_stream_status = lite_run_stream_status,
    .run_log_file = lite_run_log_file,
    .counts_add = lite_counts_add,
    .checkpoint_get = lite_checkpoint_get,
    .checkpoint_put = lite_checkpoint_put,
    .resume_put = lite_resume_put,
    .ledger_get = lite_ledger_get,
    .ledger_put = lite_ledger_put,
    .ledger_add = lite_ledger_add,
    .ledger_seen = lite_ledger_seen,
    .ledger_del = lite_ledger_del,
    .ledger_count = lite_ledger_count,
    .echo_put = lite_echo_put,
    .echo_get = lite_echo_get,
    .ledger_unseen = lite_ledger_unseen,
    .deferred_put = lite_deferred_put,
    .deferred_del = lite_deferred_del,
    .deferred_count = lite_deferred_count,
    .deferred_page = lite_deferred_page,
    .dead_letter = lite_dead_letter,
    .reset = lite_reset,
    .kv_get = lite_kv_get,
    .kv_put = lite_kv_put,
    .query = lite_query,
    .schedule_ensure = lite_schedule_ensure,
    .schedule_set = lite_schedule_set,
    .lease_claim_due = lite_lease_claim_due,
    .lease_claim = lite_lease_claim,
    .lease_takeover = lite_lease_takeover,
    .lease_renew = lite_lease_renew,
    .lease_run = lite_lease_run,
    .lease_release = lite_lease_release,
    .schedule_list = lite_schedule_list,
};
