/* state.c - the state store on SQLite: schema, migrations, typed accessors. */
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
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

struct etl_state {
    char *path;
    sqlite3 *own;     /* the store's connection */
    sqlite3 *db;      /* where statements run: own, or the sink's when shared */
    sqlite3_stmt *stmt[S_COUNT_];
    sqlite3 *kvdb;    /* for plugins, any thread */
    pthread_mutex_t kv_mu;
    char err[ETL_ERRLEN];
};

static int fail(etl_state_t *st, const char *what)
{
    etl_errf(st->err, sizeof st->err, "state store %s: %s: %s", st->path, what,
             sqlite3_errmsg(st->db));
    return -1;
}

static void now_text(char *buf, size_t n) { etl_ts_format(etl_now_us(), buf, n); }

static int exec(etl_state_t *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        etl_errf(st->err, sizeof st->err, "state store %s: %s", st->path,
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

static int migrate(etl_state_t *st)
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
        etl_errf(st->err, sizeof st->err,
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

etl_state_t *etl_state_open(const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "sqlite:", 7) != 0) {
        etl_errf(err, errlen, "state store '%s': only sqlite: URLs are supported by this build",
                 url);
        return NULL;
    }
    const char *path = url + 7;
    if (strncmp(path, "//", 2) == 0)
        path += 2; /* sqlite:///abs */
    etl_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&st->kv_mu, NULL);
    st->path = etl_strdup(path);
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
        etl_strlcpy(err, st->err, errlen);
        goto fail;
    }
    return st;
fail:
    etl_state_close(st);
    return NULL;
}

static void finalize_all(etl_state_t *st)
{
    for (int i = 0; i < S_COUNT_; i++) {
        sqlite3_finalize(st->stmt[i]);
        st->stmt[i] = NULL;
    }
}

void etl_state_close(etl_state_t *st)
{
    if (!st)
        return;
    finalize_all(st);
    sqlite3_close(st->own);
    sqlite3_close(st->kvdb);
    pthread_mutex_destroy(&st->kv_mu);
    free(st->path);
    free(st);
}

const char *etl_state_file(const etl_state_t *st) { return st->path; }
const char *etl_state_error(const etl_state_t *st) { return st->err; }

int etl_state_share(etl_state_t *st, void *db)
{
    sqlite3 *target = db ? (sqlite3 *)db : st->own;
    if (target == st->db)
        return 0;
    finalize_all(st);
    st->db = target;
    return 0;
}

int etl_state_shared(const etl_state_t *st) { return st->db != st->own; }

static sqlite3_stmt *stmt(etl_state_t *st, int which)
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
static int run_stmt(etl_state_t *st, sqlite3_stmt *s, const char *what)
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

int etl_state_begin(etl_state_t *st)
{
    return etl_state_shared(st) ? 0 : exec(st, "BEGIN IMMEDIATE");
}

int etl_state_commit(etl_state_t *st) { return etl_state_shared(st) ? 0 : exec(st, "COMMIT"); }

/* A batch's lookups share one read transaction: in WAL mode every
 * statement outside one takes and drops the shared locks again. */
int etl_state_read_begin(etl_state_t *st)
{
    return sqlite3_get_autocommit(st->db) ? exec(st, "BEGIN") : 0;
}

void etl_state_read_end(etl_state_t *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
}

void etl_state_rollback(etl_state_t *st)
{
    if (!etl_state_shared(st) && !sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

int etl_state_stream_id(etl_state_t *st, const char *pipeline, const char *stream,
                        const char *direction, int64_t *sid)
{
    sqlite3_stmt *s = NULL;
    int rc = -1;
    for (int pass = 0; pass < 2 && rc != 0; pass++) {
        const char *sql = pass == 0 ? "SELECT id FROM etl_streams WHERE pipeline=?1 AND stream=?2"
                                      " AND direction=?3"
                                    : "INSERT INTO etl_streams(pipeline,stream,direction)"
                                      " VALUES(?1,?2,?3) RETURNING id";
        if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
            return fail(st, "stream id");
        sqlite3_bind_text(s, 1, pipeline, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, stream, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, direction, -1, SQLITE_STATIC);
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

int etl_state_run_begin(etl_state_t *st, const etl_run_info_t *info, int64_t *run_id)
{
    sqlite3_stmt *s;
    char now[40];
    now_text(now, sizeof now);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO runs(pipeline,client,mode,direction,triggered_by,"
                           "started_at,status,log_file) VALUES(?,?,?,?,?,?,'running',?)",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, "run begin");
    sqlite3_bind_text(s, 1, info->pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, info->client, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, info->mode, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, info->direction, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, info->triggered_by ? info->triggered_by : "cli", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, info->log_file, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "run begin");
    sqlite3_finalize(s);
    *run_id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

int etl_state_run_log_file(etl_state_t *st, int64_t run_id, const char *path)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "UPDATE runs SET log_file=? WHERE id=?", -1, &s, NULL))
        return fail(st, "run log");
    sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, run_id);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "run log");
    sqlite3_finalize(s);
    return rc;
}

int etl_state_run_finish(etl_state_t *st, int64_t run_id, const char *status, const char *error)
{
    sqlite3_stmt *s;
    char now[40];
    now_text(now, sizeof now);
    if (sqlite3_prepare_v2(st->db, "UPDATE runs SET finished_at=?, status=?, error=? WHERE id=?",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, "run finish");
    sqlite3_bind_text(s, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, run_id);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "run finish");
    sqlite3_finalize(s);
    return rc;
}

int etl_state_run_stream(etl_state_t *st, int64_t run_id, const char *stream,
                         const char *direction, const char *status, const etl_counts_t *c,
                         int64_t duration_ms, const char *error)
{
    etl_counts_t zero = {0};
    if (etl_state_counts_add(st, run_id, stream, direction, c ? c : &zero) != 0)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE run_streams SET status=?, duration_ms=?, error=?"
                           " WHERE run_id=? AND stream=? AND direction=?",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, "run stream");
    sqlite3_bind_text(s, 1, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, duration_ms);
    sqlite3_bind_text(s, 3, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, run_id);
    sqlite3_bind_text(s, 5, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, direction, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "run stream");
    sqlite3_finalize(s);
    return rc;
}

int etl_state_counts_add(etl_state_t *st, int64_t run_id, const char *stream,
                         const char *direction, const etl_counts_t *d)
{
    sqlite3_stmt *s = stmt(st, S_COUNTS_ADD);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_text(s, 2, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, direction, -1, SQLITE_STATIC);
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

int etl_state_checkpoint_get(etl_state_t *st, const char *pipeline, const char *stream,
                             const char *direction, etl_checkpoint_t *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT cursor, cursor_type, last_sync_time, last_record_time,"
                           " records_synced, is_full_sync, resume_key, resume_max,"
                           " resume_max_type, resume_scan FROM checkpoints"
                           " WHERE pipeline=? AND stream=? AND direction=?",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, "checkpoint");
    sqlite3_bind_text(s, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, direction, -1, SQLITE_STATIC);
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

void etl_checkpoint_clear(etl_checkpoint_t *c)
{
    free(c->resume_key);
    free(c->resume_max);
    free(c->resume_max_type);
    free(c->cursor);
    free(c->type);
    free(c->last_sync_time);
    free(c->last_record_time);
    memset(c, 0, sizeof *c);
}

int etl_state_checkpoint_put(etl_state_t *st, const char *pipeline, const char *stream,
                             const char *direction, const char *cursor, const char *type,
                             int64_t records, int full)
{
    sqlite3_stmt *s = stmt(st, S_CKPT_PUT);
    if (!s)
        return -1;
    char now[40];
    now_text(now, sizeof now);
    sqlite3_bind_text(s, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, direction, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, cursor, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, cursor ? type : NULL, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 7, records);
    sqlite3_bind_int(s, 8, full);
    return run_stmt(st, s, "checkpoint");
}

int etl_state_resume_put(etl_state_t *st, const char *pipeline, const char *stream,
                         const char *direction, const char *key, const char *max,
                         const char *max_type, int64_t scan)
{
    sqlite3_stmt *s;
    const char *sql = key ? "INSERT INTO checkpoints(pipeline,stream,direction,resume_key,"
                            "resume_max,resume_max_type,resume_scan) VALUES(?1,?2,?3,?4,?5,?6,?7)"
                            " ON CONFLICT(pipeline,stream,direction) DO UPDATE SET"
                            " resume_key=excluded.resume_key, resume_max=excluded.resume_max,"
                            " resume_max_type=excluded.resume_max_type,"
                            " resume_scan=excluded.resume_scan"
                          : "UPDATE checkpoints SET resume_key=NULL, resume_max=NULL,"
                            " resume_max_type=NULL, resume_scan=NULL"
                            " WHERE pipeline=?1 AND stream=?2 AND direction=?3";
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return fail(st, "resume point");
    sqlite3_bind_text(s, 1, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, direction, -1, SQLITE_STATIC);
    if (key) {
        sqlite3_bind_text(s, 4, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, max, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, max ? max_type : NULL, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, scan);
    }
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "resume point");
    sqlite3_finalize(s);
    return rc;
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

int etl_state_ledger_get(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t *hash)
{
    sqlite3_stmt *s = stmt(st, S_LEDGER_GET);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    int rc = sqlite3_step(s);
    int found = 0;
    if (rc == SQLITE_ROW) {
        *hash = (uint64_t)sqlite3_column_int64(s, 0);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        fail(st, "ledger");
        found = -1;
    }
    sqlite3_reset(s);
    return found;
}

int etl_state_ledger_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen)
{
    sqlite3_stmt *s = stmt(st, S_LEDGER_PUT);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    sqlite3_bind_int64(s, 3, (int64_t)hash);
    sqlite3_bind_int64(s, 4, seen);
    return run_stmt(st, s, "ledger");
}

int etl_state_ledger_add(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen)
{
    sqlite3_stmt *s = stmt(st, S_LEDGER_ADD);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    sqlite3_bind_int64(s, 3, (int64_t)hash);
    sqlite3_bind_int64(s, 4, seen);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return 0;
    if ((sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_CONSTRAINT)
        return etl_state_ledger_put(st, sid, key, klen, hash, seen);
    return fail(st, "ledger");
}

int etl_state_ledger_seen(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                          int64_t seen)
{
    sqlite3_stmt *s = stmt(st, S_LEDGER_SEEN);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    sqlite3_bind_int64(s, 3, seen);
    return run_stmt(st, s, "ledger");
}

int etl_state_ledger_del(etl_state_t *st, int64_t sid, const char *key, size_t klen)
{
    sqlite3_stmt *s = stmt(st, S_LEDGER_DEL);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    return run_stmt(st, s, "ledger");
}

static int64_t count_where_sid(etl_state_t *st, const char *sql, int64_t sid)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return fail(st, "count");
    sqlite3_bind_int64(s, 1, sid);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
}

int64_t etl_state_ledger_count(etl_state_t *st, int64_t sid)
{
    /* only "empty or not" matters to callers; EXISTS stays O(1) */
    return count_where_sid(st, "SELECT EXISTS(SELECT 1 FROM ledger WHERE sid=?)", sid);
}

int etl_state_ledger_unseen(etl_state_t *st, int64_t sid, int64_t seen, const char *after,
                            size_t afterlen, int limit, int (*cb)(void *, const char *, size_t),
                            void *arg)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->own,
                           "SELECT key FROM ledger WHERE sid=?1 AND seen<>?2"
                           " AND (?3 IS NULL OR key>?3) ORDER BY key LIMIT ?4",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, "ledger scan");
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
    return ok ? n : fail(st, "ledger scan");
}

int etl_state_echo_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                       const char *cursor)
{
    sqlite3_stmt *s = stmt(st, S_ECHO_PUT);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    sqlite3_bind_text(s, 3, cursor ? cursor : "", -1, SQLITE_STATIC);
    return run_stmt(st, s, "ledger echo");
}

int etl_state_echo_get(etl_state_t *st, int64_t sid, const char *key, size_t klen, char **cursor)
{
    *cursor = NULL;
    sqlite3_stmt *s = stmt(st, S_ECHO_GET);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    bind_key(s, 2, key, klen);
    int rc = sqlite3_step(s), found = 0;
    if (rc == SQLITE_ROW) {
        *cursor = col_dup(s, 0);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        fail(st, "ledger echo");
        found = -1;
    }
    sqlite3_reset(s);
    return found;
}

/* ------------------------------------------------------------ deferred */

int etl_state_deferred_put(etl_state_t *st, int64_t sid, const char *key, size_t klen,
                           const char *reason, const char *record_json)
{
    sqlite3_stmt *s = stmt(st, S_DEFERRED_PUT);
    if (!s)
        return -1;
    char now[40];
    now_text(now, sizeof now);
    sqlite3_bind_int64(s, 1, sid);
    sqlite3_bind_text(s, 2, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, record_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, now, -1, SQLITE_TRANSIENT);
    return run_stmt(st, s, "deferred");
}

int etl_state_deferred_del(etl_state_t *st, int64_t sid, const char *key, size_t klen)
{
    sqlite3_stmt *s = stmt(st, S_DEFERRED_DEL);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, sid);
    sqlite3_bind_text(s, 2, key, (int)klen, SQLITE_STATIC);
    return run_stmt(st, s, "deferred");
}

int64_t etl_state_deferred_count(etl_state_t *st, int64_t sid)
{
    return count_where_sid(st, "SELECT count(*) FROM deferred WHERE sid=?", sid);
}

int etl_state_deferred_page(etl_state_t *st, int64_t sid, const char *after, int limit,
                            int (*cb)(void *, const char *, const char *, const char *), void *arg)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->own,
                           "SELECT key, reason, record FROM deferred WHERE sid=?1"
                           " AND (?2 IS NULL OR key>?2) ORDER BY key LIMIT ?3",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, "deferred");
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
    return ok ? n : fail(st, "deferred");
}

int etl_state_dead_letter(etl_state_t *st, int64_t run_id, const char *pipeline,
                          const char *stream, const char *direction, const char *key,
                          const char *error, const char *record_json)
{
    sqlite3_stmt *s = stmt(st, S_DEAD);
    if (!s)
        return -1;
    char now[40];
    now_text(now, sizeof now);
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_text(s, 2, pipeline, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, stream, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, direction, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, error, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, record_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, now, -1, SQLITE_TRANSIENT);
    return run_stmt(st, s, "dead letter");
}

int etl_state_reset(etl_state_t *st, const char *pipeline, const char *stream)
{
    static const char *const sql[] = {
        "DELETE FROM ledger WHERE sid IN (SELECT id FROM etl_streams WHERE pipeline=?1"
        " AND (?2 IS NULL OR stream=?2))",
        "DELETE FROM deferred WHERE sid IN (SELECT id FROM etl_streams WHERE pipeline=?1"
        " AND (?2 IS NULL OR stream=?2))",
        "DELETE FROM checkpoints WHERE pipeline=?1 AND (?2 IS NULL OR stream=?2)",
    };
    if (etl_state_begin(st))
        return -1;
    for (size_t i = 0; i < ETL_ARRAY_LEN(sql); i++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(st->db, sql[i], -1, &s, NULL) != SQLITE_OK) {
            fail(st, "reset");
            etl_state_rollback(st);
            return -1;
        }
        sqlite3_bind_text(s, 1, pipeline, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, stream, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) {
            fail(st, "reset");
            etl_state_rollback(st);
            return -1;
        }
    }
    return etl_state_commit(st);
}

/* ------------------------------------------------------------ kv */

static int kv_open(etl_state_t *st)
{
    if (st->kvdb)
        return 0;
    st->kvdb = open_db(st->path, st->err, sizeof st->err);
    return st->kvdb ? 0 : -1;
}

int etl_state_kv_get(etl_state_t *st, const char *scope, const char *key, char **value)
{
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
        etl_errf(st->err, sizeof st->err, "state store kv: %s", sqlite3_errmsg(st->kvdb));
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->kv_mu);
    return rc;
}

int etl_state_kv_put(etl_state_t *st, const char *scope, const char *key, const char *value)
{
    pthread_mutex_lock(&st->kv_mu);
    int rc = -1;
    sqlite3_stmt *s = NULL;
    const char *sql = value ? "INSERT INTO kv(scope,key,value,updated_at) VALUES(?,?,?,?)"
                              " ON CONFLICT(scope,key) DO UPDATE SET value=excluded.value,"
                              " updated_at=excluded.updated_at"
                            : "DELETE FROM kv WHERE scope=? AND key=?";
    if (kv_open(st) == 0 && sqlite3_prepare_v2(st->kvdb, sql, -1, &s, NULL) == SQLITE_OK) {
        char now[40];
        now_text(now, sizeof now);
        sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        if (value) {
            sqlite3_bind_text(s, 3, value, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 4, now, -1, SQLITE_STATIC);
        }
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0 && st->kvdb)
        etl_errf(st->err, sizeof st->err, "state store kv: %s", sqlite3_errmsg(st->kvdb));
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->kv_mu);
    return rc;
}

int etl_state_query(etl_state_t *st, const char *sql, const char *const *params, size_t nparams,
                    int (*cb)(void *, int, const char *const *, const char *const *), void *arg)
{
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
