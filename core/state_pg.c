/*
 * state_pg.c - the state store on PostgreSQL (libpq): the tables of the
 * SQLite store in the first schema of the connection's search_path, created
 * and migrated on open under an advisory lock, prepared statements, the
 * writes between begin and commit pipelined, schedules and leases with
 * FOR UPDATE SKIP LOCKED. Contracts are in state.h.
 *
 * Secrets: the URL's password (and libpq's from PGPASSWORD or .pgpass) is
 * registered with the log's redaction, and every libpq message passes
 * through etl_redact before it reaches st->err. Messages name the store as
 * postgres://user@host:port/db, never with the password.
 */
#define _GNU_SOURCE
#include "state_internal.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "state_pg_cache.h"
#include "state_pg_rows.h"

/* Migrations as { the version they bring the schema to, SQL }: the same
 * numbers as the SQLite store's, so a version means the same tables on both.
 * Never edit one that has shipped; append. */
static const struct migration {
    int to;
    const char *sql;
} migrations[] = {
    {5,
     "CREATE TABLE etl_streams(id bigserial PRIMARY KEY, pipeline text NOT NULL,"
     " stream text NOT NULL, direction text NOT NULL, UNIQUE(pipeline, stream, direction));"
     "CREATE TABLE checkpoints(pipeline text NOT NULL, stream text NOT NULL,"
     " direction text NOT NULL, cursor text, cursor_type text, last_sync_time text,"
     " last_record_time text, records_synced bigint NOT NULL DEFAULT 0,"
     " is_full_sync integer NOT NULL DEFAULT 0, resume_key text, resume_max text,"
     " resume_max_type text, resume_scan bigint, PRIMARY KEY(pipeline, stream, direction));"
     "CREATE TABLE runs(id bigserial PRIMARY KEY, pipeline text NOT NULL, client text,"
     " mode text NOT NULL, direction text NOT NULL, triggered_by text NOT NULL,"
     " started_at text NOT NULL, finished_at text, status text NOT NULL, error text,"
     " log_file text, worker text);"
     "CREATE INDEX runs_by_pipeline ON runs(pipeline, client, id);"
     "CREATE TABLE run_streams(run_id bigint NOT NULL, stream text NOT NULL,"
     " direction text NOT NULL, status text NOT NULL DEFAULT 'running',"
     " read bigint NOT NULL DEFAULT 0, created bigint NOT NULL DEFAULT 0,"
     " updated bigint NOT NULL DEFAULT 0, unchanged bigint NOT NULL DEFAULT 0,"
     " deleted bigint NOT NULL DEFAULT 0, deferred bigint NOT NULL DEFAULT 0,"
     " failed bigint NOT NULL DEFAULT 0, duration_ms bigint, error text,"
     " PRIMARY KEY(run_id, stream, direction));"
     /* keys compare bytewise ("C"): paging by key > last must agree with
      * ORDER BY key whatever the database's collation */
     "CREATE TABLE ledger(sid bigint NOT NULL, key text COLLATE \"C\" NOT NULL,"
     " hash bigint NOT NULL, seen bigint NOT NULL, echo text, PRIMARY KEY(sid, key));"
     "CREATE TABLE deferred(sid bigint NOT NULL, key text COLLATE \"C\" NOT NULL,"
     " reason text NOT NULL, record text NOT NULL, first_seen text NOT NULL,"
     " last_try text NOT NULL, tries integer NOT NULL DEFAULT 1, PRIMARY KEY(sid, key));"
     "CREATE TABLE dead_letters(id bigserial PRIMARY KEY, run_id bigint, pipeline text NOT NULL,"
     " stream text NOT NULL, direction text NOT NULL, key text, error text NOT NULL,"
     " record text, created_at text NOT NULL);"
     "CREATE INDEX dead_letters_by_stream ON dead_letters(pipeline, stream);"
     "CREATE TABLE kv(scope text NOT NULL, key text NOT NULL, value text,"
     " updated_at text NOT NULL, PRIMARY KEY(scope, key));"
     "CREATE TABLE schedules(pipeline text COLLATE \"C\" PRIMARY KEY,"
     " next_run_at bigint NOT NULL DEFAULT 0, lease_owner text,"
     " lease_until bigint NOT NULL DEFAULT 0, run_id bigint NOT NULL DEFAULT 0);"},
};

/* Every opener of a store takes this lock around its migration check, so
 * concurrent first opens create the tables once ('etlstate'). */
#define MIGRATION_LOCK "7310587338258740325"

/* Parameter types (pg_type oids) */
enum { T_I8 = 20, T_TEXT = 25, T_TEXTARR = 1009, T_I8ARR = 1016 };

enum {
    P_LEDGER_GET,
    P_LEDGER_PUT,
    P_ECHO_PUT,
    P_ECHO_GET,
    P_LEDGER_SEEN,
    P_LEDGER_DEL,
    P_LEDGER_COUNT,
    P_UNSEEN_FIRST,
    P_UNSEEN_AFTER,
    P_DEFERRED_PUT,
    P_DEFERRED_DEL,
    P_DEFERRED_COUNT,
    P_DEFERRED_FIRST,
    P_DEFERRED_AFTER,
    P_COUNTS_ADD,
    P_CKPT_GET,
    P_CKPT_PUT,
    P_RESUME_SET,
    P_RESUME_CLEAR,
    P_DEAD,
    P_STREAM_GET,
    P_STREAM_NEW,
    P_RUN_BEGIN,
    P_RUN_LOG,
    P_RUN_FINISH,
    P_RUN_ABANDON,
    P_RUN_STREAM,
    P_RESET_LEDGER,
    P_RESET_DEFERRED,
    P_RESET_CKPT,
    P_SCHED_ENSURE,
    P_SCHED_SET,
    P_SCHED_ROW,
    P_SCHED_LOCK,
    P_SCHED_LOCK_OWNER,
    P_CLAIM_DUE,
    P_TAKE,
    P_RENEW,
    P_LEASE_RUN,
    P_RELEASE,
    P_SCHED_LIST,
    P_ROWS_PUT,
    P_ROWS_ECHO,
    P_ROWS_SEEN,
    P_ROWS_DEL,
    P_ROWS_DDEL,
    P_LEDGER_SIZE,
    P_LEDGER_LOAD_FIRST,
    P_LEDGER_LOAD_AFTER,
    P_COUNT_
};

/* The combined statement of each kind of queued row (state_pg_rows.h). */
static const int rows_stmt[ETL_PG_ROW_KINDS] = {
    [ETL_PG_ROW_PUT] = P_ROWS_PUT, [ETL_PG_ROW_ECHO] = P_ROWS_ECHO,
    [ETL_PG_ROW_SEEN] = P_ROWS_SEEN, [ETL_PG_ROW_DEL] = P_ROWS_DEL,
    [ETL_PG_ROW_DDEL] = P_ROWS_DDEL,
};

#define MAXP 10

/* Each row of the queue's arrays once, the last queued winning: what the
 * statements one by one would have left. Keys sort bytewise, as the index. */
#define LAST_OF(cols, arrays, ...)                                                              \
    "SELECT DISTINCT ON (s, k COLLATE \"C\") " cols " FROM unnest(" arrays ") WITH ORDINALITY" \
    " AS u(" __VA_ARGS__ ", o) ORDER BY s, k COLLATE \"C\", o DESC"

static const struct pg_stmt {
    const char *sql;
    int n;
    unsigned types[MAXP];
} stmts[P_COUNT_] = {
    [P_LEDGER_GET] = {"SELECT hash FROM ledger WHERE sid=$1 AND key=$2", 2, {T_I8, T_TEXT}},
    [P_LEDGER_PUT] = {"INSERT INTO ledger(sid,key,hash,seen) VALUES($1,$2,$3,$4)"
                      " ON CONFLICT(sid,key) DO UPDATE SET hash=excluded.hash,"
                      " seen=excluded.seen, echo=NULL",
                      4, {T_I8, T_TEXT, T_I8, T_I8}},
    [P_ECHO_PUT] = {"INSERT INTO ledger(sid,key,hash,seen,echo) VALUES($1,$2,0,0,$3)"
                    " ON CONFLICT(sid,key) DO UPDATE SET hash=0, echo=excluded.echo",
                    3, {T_I8, T_TEXT, T_TEXT}},
    [P_ECHO_GET] = {"SELECT echo FROM ledger WHERE sid=$1 AND key=$2 AND hash=0", 2,
                    {T_I8, T_TEXT}},
    [P_LEDGER_SEEN] = {"UPDATE ledger SET seen=$3 WHERE sid=$1 AND key=$2", 3,
                       {T_I8, T_TEXT, T_I8}},
    [P_LEDGER_DEL] = {"DELETE FROM ledger WHERE sid=$1 AND key=$2", 2, {T_I8, T_TEXT}},
    [P_LEDGER_COUNT] = {"SELECT EXISTS(SELECT 1 FROM ledger WHERE sid=$1)::int", 1, {T_I8}},
    /* two statements rather than "$4 IS NULL OR key>$4", which no index
     * range serves once the plan is generic */
    [P_UNSEEN_FIRST] = {"SELECT key FROM ledger WHERE sid=$1 AND seen<>$2 AND hash<>1"
                        " ORDER BY key LIMIT $3",
                        3, {T_I8, T_I8, T_I8}},
    [P_UNSEEN_AFTER] = {"SELECT key FROM ledger WHERE sid=$1 AND seen<>$2 AND hash<>1 AND key>$4"
                        " ORDER BY key LIMIT $3",
                        4, {T_I8, T_I8, T_I8, T_TEXT}},
    [P_DEFERRED_PUT] = {"INSERT INTO deferred(sid,key,reason,record,first_seen,last_try)"
                        " VALUES($1,$2,$3,$4,$5,$5) ON CONFLICT(sid,key) DO UPDATE SET"
                        " reason=excluded.reason, record=excluded.record,"
                        " last_try=excluded.last_try, tries=deferred.tries+1",
                        5, {T_I8, T_TEXT, T_TEXT, T_TEXT, T_TEXT}},
    [P_DEFERRED_DEL] = {"DELETE FROM deferred WHERE sid=$1 AND key=$2", 2, {T_I8, T_TEXT}},
    [P_DEFERRED_COUNT] = {"SELECT count(*) FROM deferred WHERE sid=$1", 1, {T_I8}},
    [P_DEFERRED_FIRST] = {"SELECT key, reason, record FROM deferred WHERE sid=$1"
                          " ORDER BY key LIMIT $2",
                          2, {T_I8, T_I8}},
    [P_DEFERRED_AFTER] = {"SELECT key, reason, record FROM deferred WHERE sid=$1 AND key>$3"
                          " ORDER BY key LIMIT $2",
                          3, {T_I8, T_I8, T_TEXT}},
    [P_COUNTS_ADD] = {"INSERT INTO run_streams(run_id,stream,direction,read,created,updated,"
                      "unchanged,deleted,deferred,failed) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
                      " ON CONFLICT(run_id,stream,direction) DO UPDATE SET"
                      " read=run_streams.read+excluded.read,"
                      " created=run_streams.created+excluded.created,"
                      " updated=run_streams.updated+excluded.updated,"
                      " unchanged=run_streams.unchanged+excluded.unchanged,"
                      " deleted=run_streams.deleted+excluded.deleted,"
                      " deferred=run_streams.deferred+excluded.deferred,"
                      " failed=run_streams.failed+excluded.failed",
                      10, {T_I8, T_TEXT, T_TEXT, T_I8, T_I8, T_I8, T_I8, T_I8, T_I8, T_I8}},
    [P_CKPT_GET] = {"SELECT cursor, cursor_type, last_sync_time, last_record_time,"
                    " records_synced, is_full_sync, resume_key, resume_max,"
                    " resume_max_type, resume_scan FROM checkpoints"
                    " WHERE pipeline=$1 AND stream=$2 AND direction=$3",
                    3, {T_TEXT, T_TEXT, T_TEXT}},
    [P_CKPT_PUT] = {"INSERT INTO checkpoints(pipeline,stream,direction,cursor,cursor_type,"
                    "last_sync_time,last_record_time,records_synced,is_full_sync)"
                    " VALUES($1,$2,$3,$4,$5,$6,$6,$7,$8) ON CONFLICT(pipeline,stream,direction)"
                    " DO UPDATE SET cursor=coalesce(excluded.cursor,checkpoints.cursor),"
                    " cursor_type=coalesce(excluded.cursor_type,checkpoints.cursor_type),"
                    " last_sync_time=excluded.last_sync_time,"
                    " last_record_time=CASE WHEN excluded.records_synced>0"
                    "   THEN excluded.last_record_time ELSE checkpoints.last_record_time END,"
                    " records_synced=checkpoints.records_synced+excluded.records_synced,"
                    " is_full_sync=excluded.is_full_sync",
                    8, {T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_I8, T_I8}},
    [P_RESUME_SET] = {"INSERT INTO checkpoints(pipeline,stream,direction,resume_key,"
                      "resume_max,resume_max_type,resume_scan) VALUES($1,$2,$3,$4,$5,$6,$7)"
                      " ON CONFLICT(pipeline,stream,direction) DO UPDATE SET"
                      " resume_key=excluded.resume_key, resume_max=excluded.resume_max,"
                      " resume_max_type=excluded.resume_max_type,"
                      " resume_scan=excluded.resume_scan",
                      7, {T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_I8}},
    [P_RESUME_CLEAR] = {"UPDATE checkpoints SET resume_key=NULL, resume_max=NULL,"
                        " resume_max_type=NULL, resume_scan=NULL"
                        " WHERE pipeline=$1 AND stream=$2 AND direction=$3",
                        3, {T_TEXT, T_TEXT, T_TEXT}},
    [P_DEAD] = {"INSERT INTO dead_letters(run_id,pipeline,stream,direction,key,error,record,"
                "created_at) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                8, {T_I8, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT}},
    [P_STREAM_GET] = {"SELECT id FROM etl_streams WHERE pipeline=$1 AND stream=$2"
                      " AND direction=$3",
                      3, {T_TEXT, T_TEXT, T_TEXT}},
    [P_STREAM_NEW] = {"INSERT INTO etl_streams(pipeline,stream,direction) VALUES($1,$2,$3)"
                      " ON CONFLICT DO NOTHING RETURNING id",
                      3, {T_TEXT, T_TEXT, T_TEXT}},
    [P_RUN_BEGIN] = {"INSERT INTO runs(pipeline,client,mode,direction,triggered_by,"
                     "started_at,status,log_file) VALUES($1,$2,$3,$4,$5,$6,'running',$7)"
                     " RETURNING id",
                     7, {T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT, T_TEXT}},
    [P_RUN_LOG] = {"UPDATE runs SET log_file=$1 WHERE id=$2", 2, {T_TEXT, T_I8}},
    [P_RUN_FINISH] = {"UPDATE runs SET finished_at=$1, status=$2, error=$3 WHERE id=$4", 4,
                      {T_TEXT, T_TEXT, T_TEXT, T_I8}},
    [P_RUN_ABANDON] = {"UPDATE runs SET finished_at=$1, status='failed', error=$2"
                       " WHERE id=$3 AND status='running'",
                       3, {T_TEXT, T_TEXT, T_I8}},
    [P_RUN_STREAM] = {"UPDATE run_streams SET status=$1, duration_ms=$2, error=$3"
                      " WHERE run_id=$4 AND stream=$5 AND direction=$6",
                      6, {T_TEXT, T_I8, T_TEXT, T_I8, T_TEXT, T_TEXT}},
    [P_RESET_LEDGER] = {"DELETE FROM ledger WHERE sid IN (SELECT id FROM etl_streams"
                        " WHERE pipeline=$1 AND ($2::text IS NULL OR stream=$2))",
                        2, {T_TEXT, T_TEXT}},
    [P_RESET_DEFERRED] = {"DELETE FROM deferred WHERE sid IN (SELECT id FROM etl_streams"
                          " WHERE pipeline=$1 AND ($2::text IS NULL OR stream=$2))",
                          2, {T_TEXT, T_TEXT}},
    [P_RESET_CKPT] = {"DELETE FROM checkpoints WHERE pipeline=$1"
                      " AND ($2::text IS NULL OR stream=$2)",
                      2, {T_TEXT, T_TEXT}},
    [P_SCHED_ENSURE] = {"INSERT INTO schedules(pipeline,next_run_at) VALUES($1,$2)"
                        " ON CONFLICT(pipeline) DO UPDATE SET next_run_at=excluded.next_run_at"
                        " WHERE schedules.next_run_at=0",
                        2, {T_TEXT, T_I8}},
    [P_SCHED_SET] = {"INSERT INTO schedules(pipeline,next_run_at) VALUES($1,$2)"
                     " ON CONFLICT(pipeline) DO UPDATE SET next_run_at=excluded.next_run_at",
                     2, {T_TEXT, T_I8}},
    [P_SCHED_ROW] = {"INSERT INTO schedules(pipeline) VALUES($1) ON CONFLICT(pipeline)"
                     " DO NOTHING",
                     1, {T_TEXT}},
    [P_SCHED_LOCK] = {"SELECT pipeline, next_run_at, lease_owner, run_id, lease_until"
                      " FROM schedules WHERE pipeline=$1 FOR UPDATE",
                      1, {T_TEXT}},
    [P_SCHED_LOCK_OWNER] = {"SELECT pipeline, next_run_at, lease_owner, run_id, lease_until"
                            " FROM schedules WHERE pipeline=$1 AND lease_owner=$2 FOR UPDATE",
                            2, {T_TEXT, T_TEXT}},
    /* one statement, so one transaction: the due row is locked (rows another
     * worker is claiming right now are skipped, not waited for) and taken */
    [P_CLAIM_DUE] = {"WITH c AS (SELECT pipeline, next_run_at, lease_owner, run_id FROM schedules"
                     " WHERE pipeline=ANY($1) AND next_run_at>0 AND next_run_at<=$2"
                     " AND (lease_owner IS NULL OR lease_until<$2)"
                     " ORDER BY next_run_at, pipeline LIMIT 1 FOR UPDATE SKIP LOCKED)"
                     " UPDATE schedules s SET lease_owner=$3, lease_until=$4, run_id=0 FROM c"
                     " WHERE s.pipeline=c.pipeline"
                     " RETURNING c.pipeline, c.next_run_at, c.lease_owner, c.run_id",
                     4, {T_TEXTARR, T_I8, T_TEXT, T_I8}},
    [P_TAKE] = {"UPDATE schedules SET lease_owner=$2, lease_until=$3, run_id=0 WHERE pipeline=$1",
                3, {T_TEXT, T_TEXT, T_I8}},
    [P_RENEW] = {"UPDATE schedules SET lease_until=$3 WHERE pipeline=$1 AND lease_owner=$2", 3,
                 {T_TEXT, T_TEXT, T_I8}},
    [P_LEASE_RUN] = {"WITH l AS (UPDATE schedules SET run_id=$3 WHERE pipeline=$1"
                     " AND lease_owner=$2 RETURNING 1), r AS (UPDATE runs SET worker=$2"
                     " WHERE id=$3 AND EXISTS (SELECT 1 FROM l)) SELECT count(*) FROM l",
                     3, {T_TEXT, T_TEXT, T_I8}},
    [P_RELEASE] = {"UPDATE schedules SET lease_owner=NULL, lease_until=0, run_id=0,"
                   " next_run_at=CASE WHEN $3>=0 THEN $3 ELSE next_run_at END"
                   " WHERE pipeline=$1 AND lease_owner=$2",
                   3, {T_TEXT, T_TEXT, T_I8}},
    [P_SCHED_LIST] = {"SELECT pipeline, next_run_at, lease_owner, lease_until, run_id"
                      " FROM schedules ORDER BY pipeline",
                      0, {0}},
    [P_ROWS_PUT] = {"INSERT INTO ledger(sid,key,hash,seen) "
                    LAST_OF("s, k, h, n", "$1::bigint[], $2::text[], $3::bigint[], $4::bigint[]",
                            "s, k, h, n")
                    " ON CONFLICT(sid,key) DO UPDATE SET hash=excluded.hash,"
                    " seen=excluded.seen, echo=NULL",
                    4, {T_I8ARR, T_TEXTARR, T_I8ARR, T_I8ARR}},
    [P_ROWS_ECHO] = {"INSERT INTO ledger(sid,key,hash,seen,echo) "
                     LAST_OF("s, k, 0, 0, e", "$1::bigint[], $2::text[], $3::text[]", "s, k, e")
                     " ON CONFLICT(sid,key) DO UPDATE SET hash=0, echo=excluded.echo",
                     3, {T_I8ARR, T_TEXTARR, T_TEXTARR}},
    [P_ROWS_SEEN] = {"UPDATE ledger l SET seen=x.n FROM ("
                     LAST_OF("s, k, n", "$1::bigint[], $2::text[], $3::bigint[]", "s, k, n")
                     ") x WHERE l.sid=x.s AND l.key=x.k",
                     3, {T_I8ARR, T_TEXTARR, T_I8ARR}},
    [P_ROWS_DEL] = {"DELETE FROM ledger l USING unnest($1::bigint[], $2::text[]) AS u(s, k)"
                    " WHERE l.sid=u.s AND l.key=u.k",
                    2, {T_I8ARR, T_TEXTARR}},
    [P_ROWS_DDEL] = {"DELETE FROM deferred d USING unnest($1::bigint[], $2::text[]) AS u(s, k)"
                     " WHERE d.sid=u.s AND d.key=u.k",
                     2, {T_I8ARR, T_TEXTARR}},
    [P_LEDGER_SIZE] = {"SELECT count(*) FROM (SELECT 1 FROM ledger WHERE sid=$1 LIMIT $2) x", 2,
                       {T_I8, T_I8}},
    [P_LEDGER_LOAD_FIRST] = {"SELECT key, hash, echo FROM ledger WHERE sid=$1 ORDER BY key"
                             " LIMIT $2",
                             2, {T_I8, T_I8}},
    [P_LEDGER_LOAD_AFTER] = {"SELECT key, hash, echo FROM ledger WHERE sid=$1 AND key>$3"
                             " ORDER BY key LIMIT $2",
                             3, {T_I8, T_I8, T_TEXT}},
};

/* Statements that must not pass rows still queued: they touch the ledger
 * or deferred rows a queued operation may change. */
static int meets_rows(int which)
{
    switch (which) {
    case P_DEFERRED_PUT:
    case P_RESET_LEDGER:
    case P_RESET_DEFERRED:
    case P_LEDGER_PUT:
    case P_ECHO_PUT:
    case P_LEDGER_SEEN:
    case P_LEDGER_DEL:
    case P_DEFERRED_DEL:
        return 1;
    default:
        return 0;
    }
}

/* Pipelined results read back in one go: small enough that neither side's
 * socket buffer fills while the other writes (no deadlock in blocking mode). */
#define MAX_PENDING 256

/* Ledger lookups of one stream after which its whole ledger is read into
 * memory (state_pg_cache.h), the entries all streams may hold (some 30 MB),
 * and the rows read per round trip while loading. A lookup costs a round
 * trip; so many of them predict a big read, which the load then serves. */
#define CACHE_AFTER 1000
#define CACHE_BUDGET 250000
#define CACHE_CHUNK 20000

typedef struct pg {
    etl_state_t base;
    char *url;      /* as given, for the kv connection and reconnects */
    char *where;    /* postgres://user@host:port/db, for messages */
    PGconn *conn;
    PGconn *kv;     /* for plugins, any thread, behind kv_mu */
    pthread_mutex_t kv_mu;
    int in_tx;      /* between begin and commit/rollback */
    int pipelined;  /* in libpq pipeline mode */
    int pending;    /* results sent for and not read yet */
    int failed;     /* a pipelined statement failed: the transaction is lost */
    int in_lease;   /* inside a lease transaction (BEGIN ... COMMIT, not pipelined) */
    etl_pg_rows_t *rows; /* a transaction's row operations, combined */
    etl_pg_cache_t *cache; /* whole ledgers of streams looked up a lot */
    const char *what[MAX_PENDING + 2];
} pg_t;

static const etl_state_ops_t pg_ops;

/* Parameters of one statement. Integers travel binary (8 bytes, network
 * order); keys binary too, so their length is theirs and not strlen's. */
typedef struct args {
    int n;
    const char *v[MAXP];
    int len[MAXP];
    int fmt[MAXP];
    char num[MAXP][8];
} args_t;

static void a_i64(args_t *a, int64_t x)
{
    uint64_t u = (uint64_t)x;
    for (int i = 0; i < 8; i++)
        a->num[a->n][i] = (char)(u >> (56 - 8 * i));
    a->v[a->n] = a->num[a->n];
    a->len[a->n] = 8;
    a->fmt[a->n++] = 1;
}

static void a_text(args_t *a, const char *s)
{
    a->v[a->n] = s;
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}

static void a_key(args_t *a, const char *s, size_t n)
{
    a->v[a->n] = s;
    a->len[a->n] = (int)n;
    a->fmt[a->n++] = 1;
}

/* Appends the arguments `types` lists: 't' a const char * (NULL is NULL),
 * 'i' an int64_t. */
static void a_list(args_t *a, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            a_text(a, va_arg(ap, const char *));
        else
            a_i64(a, va_arg(ap, int64_t));
    }
    va_end(ap);
}

/* ------------------------------------------------------------ errors */

/* libpq's message, redacted, without its trailing newline, into st->err. */
static int fail_msg(pg_t *p, const char *what, const char *msg)
{
    etl_buf_t b;
    etl_buf_init(&b);
    size_t n = strlen(msg ? msg : "");
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    etl_redact(msg ? msg : "", n, &b);
    etl_errf(p->base.err, sizeof p->base.err, "state store %s: %s: %s", p->where, what,
             b.data ? b.data : "out of memory");
    etl_buf_free(&b);
    return -1;
}

static int fail(pg_t *p, const PGresult *r, const char *what)
{
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    return fail_msg(p, what, m && *m ? m : PQerrorMessage(p->conn));
}

/* Server notices ("there is no transaction in progress") are not for users. */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* ------------------------------------------------------------ connections */

/* libpq's URL as is (so sslmode and the rest work), UTF-8 on the wire and
 * a bounded connect time unless the URL says otherwise. */
static PGconn *connect_url(const char *url)
{
    static const char *const keys[] = {"connect_timeout", "client_encoding",
                                       "fallback_application_name", "dbname", NULL};
    /* the process in the server's session list: a run taking over from a
     * killed one waits for that process's sessions (pg_lease_takeover) */
    char *self = etl_lease_owner_self();
    char *app = self ? etl_asprintf("etl %s", self) : NULL;
    const char *vals[] = {"10", "UTF8", app ? app : "etl", url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    free(app);
    free(self);
    if (c) {
        PQsetNoticeProcessor(c, quiet, NULL);
        if (PQpass(c) && *PQpass(c))
            etl_redact_add(PQpass(c)); /* also when it came from PGPASSWORD or .pgpass */
    }
    return c;
}

/* Registers the URL's password and builds the store's name for messages. */
static int describe(pg_t *p, const char *url, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        char *clean = etl_redact_dup(perr ? perr : "out of memory");
        char *shown = etl_redact_dup(url);
        size_t n = clean ? strlen(clean) : 0;
        while (n && clean[n - 1] == '\n')
            clean[--n] = '\0';
        etl_errf(err, errlen, "state store %s: %s", shown ? shown : "postgres://...",
                 clean ? clean : "out of memory");
        free(clean);
        free(shown);
        PQfreemem(perr);
        return -1;
    }
    const char *user = NULL, *host = NULL, *port = NULL, *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp(o->keyword, "password") == 0)
            etl_redact_add(o->val);
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
    }
    p->where = etl_asprintf("postgres://%s%s%s%s%s/%s", user ? user : "", user ? "@" : "",
                            host ? host : "localhost", port ? ":" : "", port ? port : "",
                            db ? db : "");
    PQconninfoFree(opts);
    if (!p->where) {
        etl_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int pipe_close(pg_t *p);
static void pipe_abort(pg_t *p);

/* Every statement, prepared in one round trip. */
static int prepare_all(pg_t *p)
{
    if (PQenterPipelineMode(p->conn) != 1)
        return fail(p, NULL, "prepare");
    p->pipelined = 1;
    for (int i = 0; i < P_COUNT_; i++) {
        char name[24];
        snprintf(name, sizeof name, "etl_state_%d", i);
        if (!PQsendPrepare(p->conn, name, stmts[i].sql, stmts[i].n, stmts[i].types)) {
            fail(p, NULL, "prepare");
            pipe_abort(p);
            p->failed = 0;
            return -1;
        }
        p->what[p->pending++] = "prepare";
    }
    int rc = pipe_close(p);
    p->failed = 0;
    return rc;
}

/* A connection lost between calls (server restart, network) is made again
 * before the next call outside a transaction: a long-lived store (etl serve)
 * heals itself. Inside a transaction the loss fails the batch. */
static int ensure_conn(pg_t *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    if (p->in_tx || p->in_lease)
        return fail_msg(p, "connection", "the connection was lost inside a transaction");
    PQreset(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK)
        return fail(p, NULL, "reconnect");
    p->pipelined = p->pending = p->failed = 0;
    return prepare_all(p);
}

/* ------------------------------------------------------------ pipeline */

/* Reads the results of everything sent; with `sync`, the sync's result
 * too. The first error goes to st->err. */
static int collect(pg_t *p, int sync)
{
    int rc = 0;
    for (int i = 0; i < p->pending; i++) {
        PGresult *r;
        while ((r = PQgetResult(p->conn)) != NULL) {
            if (PQresultStatus(r) == PGRES_FATAL_ERROR && rc == 0)
                rc = fail(p, r, p->what[i] ? p->what[i] : "statement");
            PQclear(r);
        }
        if (PQstatus(p->conn) == CONNECTION_BAD && rc == 0)
            rc = fail(p, NULL, p->what[i] ? p->what[i] : "statement");
    }
    p->pending = 0;
    if (sync) {
        PGresult *r = PQgetResult(p->conn);
        if ((!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) && rc == 0)
            rc = fail(p, r, "pipeline");
        PQclear(r);
    }
    return rc;
}

/* Ends the pipeline: a sync (which inside BEGIN does not commit), every
 * result read, back to ordinary calls. */
static int pipe_close(pg_t *p)
{
    if (!p->pipelined)
        return 0;
    /* without a sync sent nothing more will come: the results are not waited for */
    int rc = PQpipelineSync(p->conn) == 1 ? collect(p, 1) : fail(p, NULL, "sync");
    p->pending = 0;
    if (PQexitPipelineMode(p->conn) != 1 && rc == 0)
        rc = fail(p, NULL, "pipeline");
    p->pipelined = 0;
    if (rc)
        p->failed = 1;
    return rc;
}

/* Closes the pipeline after a failure whose message is in st->err already:
 * that first message is the one reported. */
static void pipe_abort(pg_t *p)
{
    char keep[ETL_ERRLEN];
    etl_strlcpy(keep, p->base.err, sizeof keep);
    pipe_close(p);
    etl_strlcpy(p->base.err, keep, sizeof p->base.err);
    p->failed = 1;
}

/* Reads what is pending without ending the pipeline; after an error the
 * server skips everything up to a sync, so the pipeline is closed. */
static int pipe_drain(pg_t *p)
{
    if (PQsendFlushRequest(p->conn) != 1 || PQflush(p->conn) != 0)
        fail(p, NULL, "pipeline");
    else if (collect(p, 0) == 0)
        return 0;
    pipe_abort(p);
    return -1;
}

static const char *stmt_name(int which, char *buf, size_t n)
{
    snprintf(buf, n, "etl_state_%d", which);
    return buf;
}

static int rows_flush(pg_t *p);

/* A statement whose rows nobody reads: inside a transaction it joins the
 * pipeline (its error shows at commit, or at the next drain); outside it
 * runs at once. Returns the rows it changed, or -1. */
static int cmd(pg_t *p, int which, const args_t *a, const char *what)
{
    char name[24];
    stmt_name(which, name, sizeof name);
    if (p->in_tx) {
        if (p->failed || (meets_rows(which) && rows_flush(p) != 0))
            return -1; /* the message of the first failure stays */
        if (!p->pipelined) {
            if (PQenterPipelineMode(p->conn) != 1)
                return fail(p, NULL, what);
            p->pipelined = 1;
        }
        if (!PQsendQueryPrepared(p->conn, name, a->n, a->v, a->len, a->fmt, 0)) {
            fail(p, NULL, what);
            pipe_abort(p);
            return -1;
        }
        p->what[p->pending++] = what;
        return p->pending >= MAX_PENDING ? pipe_drain(p) : 0;
    }
    if (ensure_conn(p) != 0)
        return -1;
    PGresult *r = PQexecPrepared(p->conn, name, a->n, a->v, a->len, a->fmt, 0);
    int rc;
    if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) {
        int64_t changed = 0;
        rc = etl_parse_i64(PQcmdTuples(r), &changed) == 0 ? (int)changed : 0;
    } else {
        rc = fail(p, r, what);
    }
    PQclear(r);
    return rc;
}

/* A statement whose rows are wanted: waits for it (a pipeline in progress
 * is synced first). NULL on failure, message in st->err. */
static PGresult *query(pg_t *p, int which, const args_t *a, const char *what)
{
    if (p->in_tx && (p->failed || rows_flush(p) != 0 || pipe_close(p) != 0))
        return NULL;
    if (!p->in_tx && ensure_conn(p) != 0)
        return NULL;
    char name[24];
    PGresult *r = PQexecPrepared(p->conn, stmt_name(which, name, sizeof name), a->n, a->v,
                                 a->len, a->fmt, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(p, r, what);
        PQclear(r);
        if (p->in_tx)
            p->failed = 1;
        return NULL;
    }
    return r;
}

/* Sends the queued row operations, one statement per kind. */
static int rows_flush(pg_t *p)
{
    int rc = 0;
    for (int k = 0; k < ETL_PG_ROW_KINDS && rc == 0 && etl_pg_rows_count(p->rows); k++) {
        const char *v[4];
        int n = etl_pg_rows_params(p->rows, k, v);
        if (n < 0) {
            etl_errf(p->base.err, sizeof p->base.err, "out of memory");
            p->failed = 1;
            rc = -1;
        } else if (n > 0) {
            args_t a = {0};
            for (int i = 0; i < n; i++)
                a_text(&a, v[i]);
            rc = cmd(p, rows_stmt[k], &a, k == ETL_PG_ROW_DDEL ? "deferred" : "ledger") < 0;
        }
    }
    etl_pg_rows_reset(p->rows);
    return rc ? -1 : 0;
}

/* Inside a transaction a row operation waits in the queue, to go with the
 * others of its kind in one statement. */
static int queue(pg_t *p, int kind, int64_t sid, const char *key, size_t klen, int64_t a,
                 int64_t b, const char *text)
{
    if (p->failed)
        return -1;
    int rc = etl_pg_rows_add(p->rows, kind, sid, key, klen, a, b, text);
    if (rc == 1) { /* it meets a queued row of another kind, or the kind is full */
        if (rows_flush(p) != 0)
            return -1;
        rc = etl_pg_rows_add(p->rows, kind, sid, key, klen, a, b, text);
    }
    if (rc != 0) {
        etl_errf(p->base.err, sizeof p->base.err, "out of memory");
        p->failed = 1;
        return -1;
    }
    return 0;
}

static int simple(pg_t *p, const char *sql, const char *what)
{
    PGresult *r = PQexec(p->conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                 ? 0
                 : fail(p, r, what);
    PQclear(r);
    return rc;
}

static char *val_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : etl_strdup(PQgetvalue(r, row, col));
}

static int64_t val_i64(const PGresult *r, int row, int col)
{
    int64_t v = 0;
    if (!PQgetisnull(r, row, col))
        etl_parse_i64(PQgetvalue(r, row, col), &v);
    return v;
}

/* ------------------------------------------------------------ open, migrate */

static int migrate(pg_t *p)
{
    int latest = migrations[ETL_ARRAY_LEN(migrations) - 1].to;
    if (simple(p, "BEGIN", "migration") != 0)
        return -1;
    PGresult *r = NULL;
    int version = 0;
    if (simple(p, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", "migration lock") != 0)
        goto fail;
    /* no CREATE when the table is there: a role without CREATE on the
     * schema may use a store someone else made */
    r = PQexec(p->conn, "SELECT to_regclass('etl_meta') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(p, r, "migration");
        goto fail;
    }
    int have_meta = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    r = NULL;
    if (!have_meta && simple(p, "CREATE TABLE etl_meta(key text PRIMARY KEY, value text NOT NULL)",
                             "migration") != 0)
        goto fail;
    r = PQexec(p->conn, "SELECT value FROM etl_meta WHERE key='schema_version'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(p, r, "migration");
        goto fail;
    }
    int64_t v = 0;
    if (PQntuples(r) == 1 && etl_parse_i64(PQgetvalue(r, 0, 0), &v) != 0) {
        fail_msg(p, "migration", "etl_meta holds a schema_version that is not a number");
        goto fail;
    }
    version = (int)v;
    PQclear(r);
    r = NULL;
    if (version > latest) {
        etl_errf(p->base.err, sizeof p->base.err,
                 "state store %s has schema version %d, newer than this etl (%d): upgrade etl",
                 p->where, version, latest);
        goto fail;
    }
    for (size_t i = 0; i < ETL_ARRAY_LEN(migrations); i++) {
        if (migrations[i].to > version && simple(p, migrations[i].sql, "migration") != 0)
            goto fail;
    }
    if (version != latest) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "INSERT INTO etl_meta(key,value) VALUES('schema_version','%d')"
                 " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                 latest);
        if (simple(p, sql, "migration") != 0)
            goto fail;
    }
    return simple(p, "COMMIT", "migration");
fail:
    PQclear(r);
    PQclear(PQexec(p->conn, "ROLLBACK"));
    return -1;
}

static void pg_close(etl_state_t *base)
{
    pg_t *p = (pg_t *)base;
    PQfinish(p->conn);
    PQfinish(p->kv);
    etl_pg_rows_free(p->rows);
    etl_pg_cache_free(p->cache);
    pthread_mutex_destroy(&p->kv_mu);
    free(p->url);
    free(p->where);
    free(p);
}

etl_state_t *etl_state_pg_open(const char *url, char *err, size_t errlen)
{
    pg_t *p = calloc(1, sizeof *p);
    if (!p) {
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    p->base.ops = &pg_ops;
    pthread_mutex_init(&p->kv_mu, NULL);
    if (describe(p, url, err, errlen) != 0)
        goto fail;
    if (!(p->url = etl_strdup(url)) || !(p->rows = etl_pg_rows_new()) ||
        !(p->cache = etl_pg_cache_new(CACHE_BUDGET)) || !(p->conn = connect_url(url))) {
        etl_errf(err, errlen, "out of memory");
        goto fail;
    }
    if (PQstatus(p->conn) != CONNECTION_OK) {
        fail_msg(p, "cannot connect", PQerrorMessage(p->conn));
        etl_strlcpy(err, p->base.err, errlen);
        goto fail;
    }
    if (migrate(p) != 0 || prepare_all(p) != 0) {
        etl_strlcpy(err, p->base.err, errlen);
        goto fail;
    }
    return &p->base;
fail:
    pg_close(&p->base);
    return NULL;
}

/* ------------------------------------------------------------ transactions */

static int pg_share(etl_state_t *base, void *db)
{
    pg_t *p = (pg_t *)base;
    if (!db)
        return 0;
    etl_errf(p->base.err, sizeof p->base.err,
             "state store %s: a PostgreSQL store cannot share a sink's SQLite transaction",
             p->where);
    return -1;
}

static int pg_shared(const etl_state_t *base)
{
    (void)base;
    return 0;
}

static int pg_begin(etl_state_t *base)
{
    pg_t *p = (pg_t *)base;
    if (p->in_tx) {
        etl_errf(p->base.err, sizeof p->base.err, "state store %s: a transaction is open",
                 p->where);
        return -1;
    }
    if (ensure_conn(p) != 0)
        return -1;
    if (PQenterPipelineMode(p->conn) != 1)
        return fail(p, NULL, "begin");
    p->pipelined = 1;
    p->in_tx = 1;
    p->failed = 0;
    if (!PQsendQueryParams(p->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        fail(p, NULL, "begin");
        p->failed = 1;
        return -1;
    }
    p->what[p->pending++] = "begin";
    return 0;
}

/* Leaves a failed or aborted transaction behind on the server: none. */
static void tx_end(pg_t *p)
{
    PGTransactionStatusType ts = PQtransactionStatus(p->conn);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(p->conn, "ROLLBACK"));
    p->in_tx = 0;
    p->failed = 0;
    etl_pg_rows_reset(p->rows);
}

static int pg_commit(etl_state_t *base)
{
    pg_t *p = (pg_t *)base;
    if (!p->in_tx) {
        etl_errf(p->base.err, sizeof p->base.err, "state store %s: commit without begin",
                 p->where);
        return -1;
    }
    int rc = -1;
    if (p->failed || rows_flush(p) != 0) {
        pipe_abort(p);
    } else if (!p->pipelined) {
        rc = simple(p, "COMMIT", "commit");
    } else if (!PQsendQueryParams(p->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)) {
        fail(p, NULL, "commit");
        pipe_abort(p);
    } else {
        /* the batch's statements and the commit answer in one round trip */
        p->what[p->pending++] = "commit";
        rc = pipe_close(p);
    }
    if (rc != 0)
        etl_pg_cache_drop_all(p->cache); /* it holds writes that did not land */
    tx_end(p);
    return rc;
}

static void pg_rollback(etl_state_t *base)
{
    pg_t *p = (pg_t *)base;
    if (!p->in_tx)
        return;
    pipe_abort(p); /* the caller reports the first error, kept in st->err */
    etl_pg_cache_drop_all(p->cache);
    tx_end(p);
}

/* Lookups run one statement each, outside any transaction: no BEGIN/COMMIT
 * round trips around a batch's ledger reads. */
static int pg_read_begin(etl_state_t *base)
{
    (void)base;
    return 0;
}

static void pg_read_end(etl_state_t *base) { (void)base; }

/* ------------------------------------------------------------ streams, runs */

static int pg_stream_id(etl_state_t *base, const char *pipeline, const char *stream,
                        const char *direction, int64_t *sid)
{
    pg_t *p = (pg_t *)base;
    args_t a = {0};
    a_list(&a, "ttt", pipeline, stream, direction);
    /* get, else create; another process may create it in between: get again */
    static const int order[] = {P_STREAM_GET, P_STREAM_NEW, P_STREAM_GET};
    for (size_t i = 0; i < ETL_ARRAY_LEN(order); i++) {
        PGresult *r = query(p, order[i], &a, "stream id");
        if (!r)
            return -1;
        int found = PQntuples(r) == 1;
        if (found)
            *sid = val_i64(r, 0, 0);
        PQclear(r);
        if (found)
            return 0;
    }
    return fail_msg(p, "stream id", "no id after creating it");
}

static int pg_run_begin(etl_state_t *base, const etl_run_info_t *info, int64_t *run_id)
{
    pg_t *p = (pg_t *)base;
    char now[40];
    etl_state_now_text(now, sizeof now);
    args_t a = {0};
    a_list(&a, "ttttttt", info->pipeline, info->client, info->mode, info->direction,
           info->triggered_by ? info->triggered_by : "cli", now, info->log_file);
    PGresult *r = query(p, P_RUN_BEGIN, &a, "run begin");
    if (!r)
        return -1;
    *run_id = val_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pg_run_log_file(etl_state_t *base, int64_t run_id, const char *path)
{
    args_t a = {0};
    a_list(&a, "ti", path, run_id);
    return cmd((pg_t *)base, P_RUN_LOG, &a, "run log") < 0 ? -1 : 0;
}

static int pg_run_finish(etl_state_t *base, int64_t run_id, const char *status,
                         const char *error)
{
    char now[40];
    etl_state_now_text(now, sizeof now);
    args_t a = {0};
    a_list(&a, "ttti", now, status, error, run_id);
    return cmd((pg_t *)base, P_RUN_FINISH, &a, "run finish") < 0 ? -1 : 0;
}

static int pg_run_abandon(etl_state_t *base, int64_t run_id, const char *error)
{
    char now[40];
    etl_state_now_text(now, sizeof now);
    args_t a = {0};
    a_list(&a, "tti", now, error, run_id);
    int n = cmd((pg_t *)base, P_RUN_ABANDON, &a, "run abandon");
    return n < 0 ? -1 : n > 0;
}

static int pg_run_stream_status(etl_state_t *base, int64_t run_id, const char *stream,
                                const char *direction, const char *status, int64_t duration_ms,
                                const char *error)
{
    args_t a = {0};
    a_list(&a, "tititt", status, duration_ms, error, run_id, stream, direction);
    return cmd((pg_t *)base, P_RUN_STREAM, &a, "run stream") < 0 ? -1 : 0;
}

static int pg_counts_add(etl_state_t *base, int64_t run_id, const char *stream,
                         const char *direction, const etl_counts_t *d)
{
    args_t a = {0};
    a_list(&a, "itt", run_id, stream, direction);
    const int64_t v[] = {d->read,    d->created,  d->updated, d->unchanged,
                         d->deleted, d->deferred, d->failed};
    for (int i = 0; i < 7; i++)
        a_i64(&a, v[i]);
    return cmd((pg_t *)base, P_COUNTS_ADD, &a, "counts") < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ checkpoints */

static int pg_checkpoint_get(etl_state_t *base, const char *pipeline, const char *stream,
                             const char *direction, etl_checkpoint_t *out)
{
    args_t a = {0};
    a_list(&a, "ttt", pipeline, stream, direction);
    PGresult *r = query((pg_t *)base, P_CKPT_GET, &a, "checkpoint");
    if (!r)
        return -1;
    if (PQntuples(r) == 1) {
        out->cursor = val_dup(r, 0, 0);
        out->type = val_dup(r, 0, 1);
        out->last_sync_time = val_dup(r, 0, 2);
        out->last_record_time = val_dup(r, 0, 3);
        out->records_synced = val_i64(r, 0, 4);
        out->is_full_sync = (int)val_i64(r, 0, 5);
        out->resume_key = val_dup(r, 0, 6);
        out->resume_max = val_dup(r, 0, 7);
        out->resume_max_type = val_dup(r, 0, 8);
        out->resume_scan = val_i64(r, 0, 9);
    }
    PQclear(r);
    return 0;
}

static int pg_checkpoint_put(etl_state_t *base, const char *pipeline, const char *stream,
                             const char *direction, const char *cursor, const char *type,
                             int64_t records, int full)
{
    char now[40];
    etl_state_now_text(now, sizeof now);
    args_t a = {0};
    a_list(&a, "ttttttii", pipeline, stream, direction, cursor, cursor ? type : NULL, now,
           records, (int64_t)full);
    return cmd((pg_t *)base, P_CKPT_PUT, &a, "checkpoint") < 0 ? -1 : 0;
}

static int pg_resume_put(etl_state_t *base, const char *pipeline, const char *stream,
                         const char *direction, const char *key, const char *max,
                         const char *max_type, int64_t scan)
{
    args_t a = {0};
    /* clearing takes the first three only */
    a_list(&a, key ? "tttttti" : "ttt", pipeline, stream, direction, key, max,
           max ? max_type : NULL, scan);
    return cmd((pg_t *)base, key ? P_RESUME_SET : P_RESUME_CLEAR, &a, "resume point") < 0 ? -1
                                                                                          : 0;
}

/* ------------------------------------------------------------ ledger */

/* A ledger write outside a transaction: when it fails it may or may not
 * have landed, so the cached ledgers are dropped. */
static int cmd_cached(pg_t *p, int which, const args_t *a, const char *what)
{
    if (cmd(p, which, a, what) >= 0)
        return 0;
    etl_pg_cache_drop_all(p->cache);
    return -1;
}

/* Reads sid's whole ledger into the cache, when it fits; a failure only
 * leaves the lookups to the server. */
static void cache_load(pg_t *p, int64_t sid)
{
    char keep[ETL_ERRLEN];
    etl_strlcpy(keep, p->base.err, sizeof keep);
    size_t room = etl_pg_cache_room(p->cache);
    args_t a = {0};
    a_i64(&a, sid);
    a_i64(&a, (int64_t)room + 1);
    PGresult *r = query(p, P_LEDGER_SIZE, &a, "ledger");
    int64_t size = r ? val_i64(r, 0, 0) : -1;
    PQclear(r);
    if (size < 0 || (size_t)size > room || etl_pg_cache_hold(p->cache, sid) != 0) {
        etl_pg_cache_refuse(p->cache, sid);
        etl_strlcpy(p->base.err, keep, sizeof p->base.err);
        return;
    }
    char *last = NULL;
    for (;;) {
        args_t b = {0};
        a_i64(&b, sid);
        a_i64(&b, CACHE_CHUNK);
        if (last)
            a_text(&b, last);
        r = query(p, last ? P_LEDGER_LOAD_AFTER : P_LEDGER_LOAD_FIRST, &b, "ledger");
        free(last);
        last = NULL;
        if (!r) {
            etl_pg_cache_refuse(p->cache, sid);
            break;
        }
        int n = PQntuples(r);
        for (int i = 0; i < n; i++)
            etl_pg_cache_put(p->cache, sid, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0),
                             (uint64_t)val_i64(r, i, 1),
                             PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2));
        if (n == CACHE_CHUNK && !(last = etl_strdup(PQgetvalue(r, n - 1, 0))))
            etl_pg_cache_refuse(p->cache, sid);
        PQclear(r);
        if (!last)
            break;
    }
    etl_strlcpy(p->base.err, keep, sizeof p->base.err);
}

/* A lookup that went to the server: enough of them for one stream, and its
 * ledger is loaded (outside transactions, where the server's rows are all
 * there is). */
static void count_miss(pg_t *p, int64_t sid)
{
    if (etl_pg_cache_miss(p->cache, sid) == CACHE_AFTER && !p->in_tx &&
        !etl_pg_cache_refused(p->cache, sid))
        cache_load(p, sid);
}

/* A ledger lookup on the server (which: P_LEDGER_GET or P_ECHO_GET): 1
 * found, its one column into *hash or *echo (malloc'd); 0 absent; -1. */
static int server_get(pg_t *p, int which, int64_t sid, const char *key, size_t klen,
                      const char *what, uint64_t *hash, char **echo)
{
    args_t a = {0};
    a_i64(&a, sid);
    a_key(&a, key, klen);
    PGresult *r = query(p, which, &a, what);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found && hash)
        *hash = (uint64_t)val_i64(r, 0, 0);
    if (found && echo)
        *echo = val_dup(r, 0, 0);
    PQclear(r);
    count_miss(p, sid);
    return found;
}

static int pg_ledger_get(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                         uint64_t *hash)
{
    pg_t *p = (pg_t *)base;
    if (etl_pg_cache_held(p->cache, sid))
        return etl_pg_cache_get(p->cache, sid, key, klen, hash, NULL);
    return server_get(p, P_LEDGER_GET, sid, key, klen, "ledger", hash, NULL);
}

/* A ledger or deferred row operation: queued inside a transaction, else run
 * at once. A failed write to the ledger (put, echo, delete) may or may not
 * have landed, so the cached ledgers are dropped. */
static int row_op(pg_t *p, int kind, int64_t sid, const char *key, size_t klen, int64_t x,
                  int64_t y, const char *text)
{
    static const int one[ETL_PG_ROW_KINDS] = {
        [ETL_PG_ROW_PUT] = P_LEDGER_PUT, [ETL_PG_ROW_ECHO] = P_ECHO_PUT,
        [ETL_PG_ROW_SEEN] = P_LEDGER_SEEN, [ETL_PG_ROW_DEL] = P_LEDGER_DEL,
        [ETL_PG_ROW_DDEL] = P_DEFERRED_DEL,
    };
    if (p->in_tx)
        return queue(p, kind, sid, key, klen, x, y, text);
    args_t a = {0};
    a_i64(&a, sid);
    a_key(&a, key, klen);
    if (kind == ETL_PG_ROW_PUT || kind == ETL_PG_ROW_SEEN)
        a_i64(&a, x);
    if (kind == ETL_PG_ROW_PUT)
        a_i64(&a, y);
    if (kind == ETL_PG_ROW_ECHO)
        a_text(&a, text);
    const char *what = kind == ETL_PG_ROW_ECHO ? "ledger echo"
                       : kind == ETL_PG_ROW_DDEL ? "deferred"
                                                 : "ledger";
    if (kind == ETL_PG_ROW_SEEN || kind == ETL_PG_ROW_DDEL)
        return cmd(p, one[kind], &a, what) < 0 ? -1 : 0;
    return cmd_cached(p, one[kind], &a, what);
}

/* Also ledger_add: on PostgreSQL a plain INSERT buys nothing, and a failed
 * one would abort the whole pipelined transaction. */
static int pg_ledger_put(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                         uint64_t hash, int64_t seen)
{
    pg_t *p = (pg_t *)base;
    etl_pg_cache_put(p->cache, sid, key, klen, hash, NULL);
    return row_op(p, ETL_PG_ROW_PUT, sid, key, klen, (int64_t)hash, seen, NULL);
}

static int pg_ledger_seen(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                          int64_t seen)
{
    return row_op((pg_t *)base, ETL_PG_ROW_SEEN, sid, key, klen, seen, 0, NULL);
}

static int pg_ledger_del(etl_state_t *base, int64_t sid, const char *key, size_t klen)
{
    pg_t *p = (pg_t *)base;
    etl_pg_cache_del(p->cache, sid, key, klen);
    return row_op(p, ETL_PG_ROW_DEL, sid, key, klen, 0, 0, NULL);
}

static int64_t count_of(pg_t *p, int which, int64_t sid, const char *what)
{
    args_t a = {0};
    a_i64(&a, sid);
    PGresult *r = query(p, which, &a, what);
    if (!r)
        return -1;
    int64_t n = val_i64(r, 0, 0);
    PQclear(r);
    return n;
}

static int64_t pg_ledger_count(etl_state_t *base, int64_t sid)
{
    return count_of((pg_t *)base, P_LEDGER_COUNT, sid, "count");
}

static int pg_echo_put(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                       const char *cursor)
{
    pg_t *p = (pg_t *)base;
    const char *mark = cursor ? cursor : "";
    etl_pg_cache_put(p->cache, sid, key, klen, 0, mark);
    return row_op(p, ETL_PG_ROW_ECHO, sid, key, klen, 0, 0, mark);
}

static int pg_echo_get(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                       char **cursor)
{
    pg_t *p = (pg_t *)base;
    if (etl_pg_cache_held(p->cache, sid)) {
        uint64_t h = 1;
        const char *echo = NULL;
        if (!etl_pg_cache_get(p->cache, sid, key, klen, &h, &echo) || h != 0)
            return 0;
        if (echo && !(*cursor = etl_strdup(echo))) {
            etl_errf(p->base.err, sizeof p->base.err, "out of memory");
            return -1;
        }
        return 1;
    }
    return server_get(p, P_ECHO_GET, sid, key, klen, "ledger echo", NULL, cursor);
}

/* The rows are all in memory before the first callback, so a callback may
 * use the store (the connection is free again). */
static int pg_ledger_unseen(etl_state_t *base, int64_t sid, int64_t seen, const char *after,
                            size_t afterlen, int limit, int (*cb)(void *, const char *, size_t),
                            void *arg)
{
    args_t a = {0};
    a_i64(&a, sid);
    a_i64(&a, seen);
    a_i64(&a, limit);
    if (after)
        a_key(&a, after, afterlen);
    PGresult *r = query((pg_t *)base, after ? P_UNSEEN_AFTER : P_UNSEEN_FIRST, &a,
                        "ledger scan");
    if (!r)
        return -1;
    int n = PQntuples(r), i;
    for (i = 0; i < n; i++)
        if (cb(arg, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0))) {
            i++;
            break;
        }
    PQclear(r);
    return i;
}

/* ------------------------------------------------------------ deferred, dead letters */

static int pg_deferred_put(etl_state_t *base, int64_t sid, const char *key, size_t klen,
                           const char *reason, const char *record_json)
{
    char now[40];
    etl_state_now_text(now, sizeof now);
    args_t a = {0};
    a_i64(&a, sid);
    a_key(&a, key, klen);
    a_text(&a, reason);
    a_text(&a, record_json);
    a_text(&a, now);
    return cmd((pg_t *)base, P_DEFERRED_PUT, &a, "deferred") < 0 ? -1 : 0;
}

static int pg_deferred_del(etl_state_t *base, int64_t sid, const char *key, size_t klen)
{
    return row_op((pg_t *)base, ETL_PG_ROW_DDEL, sid, key, klen, 0, 0, NULL);
}

static int64_t pg_deferred_count(etl_state_t *base, int64_t sid)
{
    return count_of((pg_t *)base, P_DEFERRED_COUNT, sid, "deferred");
}

static int pg_deferred_page(etl_state_t *base, int64_t sid, const char *after, int limit,
                            int (*cb)(void *, const char *, const char *, const char *),
                            void *arg)
{
    args_t a = {0};
    a_i64(&a, sid);
    a_i64(&a, limit);
    if (after)
        a_text(&a, after);
    PGresult *r = query((pg_t *)base, after ? P_DEFERRED_AFTER : P_DEFERRED_FIRST, &a,
                        "deferred");
    if (!r)
        return -1;
    int n = PQntuples(r), i;
    for (i = 0; i < n; i++)
        if (cb(arg, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2))) {
            i++;
            break;
        }
    PQclear(r);
    return i;
}

static int pg_dead_letter(etl_state_t *base, int64_t run_id, const char *pipeline,
                          const char *stream, const char *direction, const char *key,
                          const char *error, const char *record_json)
{
    char now[40];
    etl_state_now_text(now, sizeof now);
    args_t a = {0};
    a_list(&a, "ittttttt", run_id, pipeline, stream, direction, key, error, record_json, now);
    return cmd((pg_t *)base, P_DEAD, &a, "dead letter") < 0 ? -1 : 0;
}

static int pg_reset(etl_state_t *base, const char *pipeline, const char *stream)
{
    static const int which[] = {P_RESET_LEDGER, P_RESET_DEFERRED, P_RESET_CKPT};
    etl_pg_cache_drop_all(((pg_t *)base)->cache);
    args_t a = {0};
    a_text(&a, pipeline);
    a_text(&a, stream);
    if (pg_begin(base) != 0)
        return -1;
    for (size_t i = 0; i < ETL_ARRAY_LEN(which); i++) {
        if (cmd((pg_t *)base, which[i], &a, "reset") < 0) {
            pg_rollback(base);
            return -1;
        }
    }
    return pg_commit(base);
}

/* ------------------------------------------------------------ kv */

static int kv_fail(pg_t *p, const PGresult *r)
{
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    return fail_msg(p, "kv", m && *m ? m : p->kv ? PQerrorMessage(p->kv) : "out of memory");
}

/* Under kv_mu: the kv connection, made (or made again) on demand. */
static int kv_conn(pg_t *p)
{
    if (p->kv && PQstatus(p->kv) == CONNECTION_OK)
        return 0;
    if (p->kv)
        PQreset(p->kv);
    else
        p->kv = connect_url(p->url);
    return p->kv && PQstatus(p->kv) == CONNECTION_OK ? 0 : kv_fail(p, NULL);
}

static int pg_kv_get(etl_state_t *base, const char *scope, const char *key, char **value)
{
    pg_t *p = (pg_t *)base;
    pthread_mutex_lock(&p->kv_mu);
    int rc = -1;
    if (kv_conn(p) == 0) {
        const char *v[] = {scope, key};
        PGresult *r = PQexecParams(p->kv, "SELECT value FROM kv WHERE scope=$1 AND key=$2", 2,
                                   NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            if (PQntuples(r) == 1)
                *value = val_dup(r, 0, 0);
            rc = 0;
        } else {
            kv_fail(p, r);
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&p->kv_mu);
    return rc;
}

static int pg_kv_put(etl_state_t *base, const char *scope, const char *key, const char *value)
{
    pg_t *p = (pg_t *)base;
    pthread_mutex_lock(&p->kv_mu);
    int rc = -1;
    if (kv_conn(p) == 0) {
        char now[40];
        etl_state_now_text(now, sizeof now);
        const char *v[] = {scope, key, value, now};
        PGresult *r = value ? PQexecParams(p->kv,
                                           "INSERT INTO kv(scope,key,value,updated_at)"
                                           " VALUES($1,$2,$3,$4) ON CONFLICT(scope,key) DO"
                                           " UPDATE SET value=excluded.value,"
                                           " updated_at=excluded.updated_at",
                                           4, NULL, v, NULL, NULL, 0)
                            : PQexecParams(p->kv, "DELETE FROM kv WHERE scope=$1 AND key=$2", 2,
                                           NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            rc = 0;
        else
            kv_fail(p, r);
        PQclear(r);
    }
    pthread_mutex_unlock(&p->kv_mu);
    return rc;
}

/* ------------------------------------------------------------ reports */

/* SQLite's placeholders (?, ?N) as PostgreSQL's ($N), outside string
 * literals, quoted names and comments: report queries are written once for
 * both stores. A bare ? takes the number after the greatest so far, as in
 * SQLite. */
static char *dollar_params(const char *sql)
{
    etl_buf_t b;
    etl_buf_init(&b);
    long top = 0;
    for (const char *s = sql; *s;) {
        if (*s == '\'' || *s == '"') {
            const char *e = strchr(s + 1, *s);
            size_t n = e ? (size_t)(e - s) + 1 : strlen(s);
            etl_buf_add(&b, s, n);
            s += n;
        } else if (s[0] == '-' && s[1] == '-') {
            size_t n = strcspn(s, "\n");
            etl_buf_add(&b, s, n);
            s += n;
        } else if (*s == '?') {
            s++;
            long idx = 0;
            while (*s >= '0' && *s <= '9' && idx < 100000)
                idx = idx * 10 + (*s++ - '0');
            if (!idx)
                idx = top + 1;
            if (idx > top)
                top = idx;
            etl_buf_printf(&b, "$%ld", idx);
        } else {
            etl_buf_addc(&b, *s++);
        }
    }
    return etl_buf_take(&b);
}

static int pg_query(etl_state_t *base, const char *sql, const char *const *params, size_t nparams,
                    int (*cb)(void *, int, const char *const *, const char *const *), void *arg)
{
    pg_t *p = (pg_t *)base;
    if ((p->in_tx && (p->failed || rows_flush(p) != 0 || pipe_close(p) != 0)) ||
        (!p->in_tx && ensure_conn(p) != 0))
        return -1;
    etl_pg_cache_drop_all(p->cache); /* the SQL may change ledgers behind it */
    char *pgsql = dollar_params(sql);
    if (!pgsql) {
        etl_errf(p->base.err, sizeof p->base.err, "out of memory");
        return -1;
    }
    PGresult *r = PQexecParams(p->conn, pgsql, (int)nparams, NULL, params, NULL, NULL, 0);
    free(pgsql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail(p, r, "query");
        PQclear(r);
        return -1;
    }
    int n = PQnfields(r);
    const char *cols[64], *names[64];
    if (n > 64)
        n = 64;
    for (int i = 0; i < n; i++)
        names[i] = PQfname(r, i);
    for (int row = 0; row < PQntuples(r); row++) {
        for (int i = 0; i < n; i++)
            cols[i] = PQgetisnull(r, row, i) ? NULL : PQgetvalue(r, row, i);
        if (cb(arg, n, cols, names))
            break;
    }
    PQclear(r);
    return 0;
}

/* ------------------------------------------------------------ schedules and leases */

static int no_tx(pg_t *p, const char *what)
{
    if (!p->in_tx)
        return 0;
    etl_errf(p->base.err, sizeof p->base.err, "state store %s: %s: called inside a transaction",
             p->where, what);
    return -1;
}

static int pg_schedule_ensure(etl_state_t *base, const char *key, int64_t next_us)
{
    pg_t *p = (pg_t *)base;
    args_t a = {0};
    a_text(&a, key);
    a_i64(&a, next_us);
    return no_tx(p, "schedule") || cmd(p, P_SCHED_ENSURE, &a, "schedule") < 0 ? -1 : 0;
}

static int pg_schedule_set(etl_state_t *base, const char *key, int64_t next_us)
{
    pg_t *p = (pg_t *)base;
    args_t a = {0};
    a_text(&a, key);
    a_i64(&a, next_us);
    return no_tx(p, "schedule") || cmd(p, P_SCHED_SET, &a, "schedule") < 0 ? -1 : 0;
}

/* Fills *out from a row (key, next_run_at, lease_owner, run_id). */
static int fill_from(pg_t *p, const PGresult *r, etl_lease_t *out)
{
    const char *old = PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2);
    if (etl_state_lease_fill(out, PQgetvalue(r, 0, 0), val_i64(r, 0, 1), old, val_i64(r, 0, 3))) {
        etl_errf(p->base.err, sizeof p->base.err, "out of memory");
        return -1;
    }
    return 0;
}

/* keys as a text[] literal: {"a","b"} with " and \ escaped */
static char *array_literal(const char *const *keys, size_t n)
{
    etl_buf_t b;
    etl_buf_init(&b);
    etl_buf_addc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        etl_buf_adds(&b, i ? ",\"" : "\"");
        for (const char *s = keys[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                etl_buf_addc(&b, '\\');
            etl_buf_addc(&b, *s);
        }
        etl_buf_addc(&b, '"');
    }
    etl_buf_addc(&b, '}');
    return etl_buf_take(&b);
}

static int pg_lease_claim_due(etl_state_t *base, const char *const *keys, size_t n,
                              const char *owner, int64_t now_us, int64_t lease_us,
                              etl_lease_t *out)
{
    pg_t *p = (pg_t *)base;
    if (no_tx(p, "lease"))
        return -1;
    char *arr = array_literal(keys, n);
    if (!arr) {
        etl_errf(p->base.err, sizeof p->base.err, "out of memory");
        return -1;
    }
    args_t a = {0};
    a_text(&a, arr);
    a_i64(&a, now_us);
    a_text(&a, owner);
    a_i64(&a, now_us + lease_us);
    PGresult *r = query(p, P_CLAIM_DUE, &a, "lease");
    free(arr);
    if (!r)
        return -1;
    int rc = PQntuples(r) == 1 ? (fill_from(p, r, out) == 0 ? 1 : -1) : 0;
    PQclear(r);
    return rc;
}

/* A claim reads and writes in one transaction of its own: the row it read
 * stays locked until it is taken. */
static int lease_begin(pg_t *p)
{
    if (no_tx(p, "lease") || ensure_conn(p) != 0 || simple(p, "BEGIN", "lease") != 0)
        return -1;
    p->in_lease = 1;
    return 0;
}

/* Commits when rc >= 0, else rolls back; returns rc, or -1 when the commit
 * failed. */
static int lease_end(pg_t *p, int rc)
{
    if (rc >= 0 && simple(p, "COMMIT", "lease") != 0)
        rc = -1;
    if (PQtransactionStatus(p->conn) != PQTRANS_IDLE)
        PQclear(PQexec(p->conn, "ROLLBACK"));
    p->in_lease = 0;
    return rc;
}

static int take(pg_t *p, const char *key, const char *owner, int64_t until_us)
{
    args_t a = {0};
    a_text(&a, key);
    a_text(&a, owner);
    a_i64(&a, until_us);
    return cmd(p, P_TAKE, &a, "lease") == 1 ? 0 : -1;
}

static int pg_lease_claim(etl_state_t *base, const char *key, const char *owner, int64_t now_us,
                          int64_t lease_us, etl_lease_t *out, char **holder)
{
    pg_t *p = (pg_t *)base;
    if (lease_begin(p) != 0)
        return -1;
    int rc = -1;
    PGresult *r = NULL;
    args_t a = {0};
    a_text(&a, key);
    if (cmd(p, P_SCHED_ROW, &a, "lease") < 0 || !(r = query(p, P_SCHED_LOCK, &a, "lease")))
        goto done;
    if (PQntuples(r) != 1) {
        fail_msg(p, "lease", "the schedule row vanished");
        goto done;
    }
    if (!PQgetisnull(r, 0, 2) && val_i64(r, 0, 4) >= now_us) {
        /* a live lease, ours included: a second run of the key must wait */
        if (holder && !(*holder = etl_strdup(PQgetvalue(r, 0, 2)))) {
            etl_errf(p->base.err, sizeof p->base.err, "out of memory");
            goto done;
        }
        rc = 0;
    } else if (fill_from(p, r, out) == 0) {
        rc = take(p, key, owner, now_us + lease_us) == 0 ? 1 : -1;
    }
done:
    PQclear(r);
    rc = lease_end(p, rc);
    if (rc != 1)
        etl_lease_clear(out);
    if (rc < 0 && holder) {
        free(*holder);
        *holder = NULL;
    }
    return rc;
}

/* A process killed with -9 may have left a commit on its way: its session
 * finishes (or aborts) it on its own a moment later. Taking over before then
 * would read the state from before that commit, and the late commit would
 * then count a batch twice. So wait for the dead process's sessions to end
 * (ended by force after 5 s: the process is known to be gone). */
static void wait_sessions_gone(pg_t *p, const char *owner)
{
    char *app = etl_asprintf("etl %s", owner);
    if (!app || ensure_conn(p) != 0) {
        free(app);
        return;
    }
    const char *v[] = {app};
    for (int i = 0; i < 200; i++) {
        PGresult *r = PQexecParams(
            p->conn,
            i == 100 ? "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE application_name = left($1, 63) AND pid <> pg_backend_pid()"
                     : "SELECT count(*) FROM pg_stat_activity"
                       " WHERE application_name = left($1, 63) AND pid <> pg_backend_pid()",
            1, NULL, v, NULL, NULL, 0);
        int64_t n = 0;
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                 etl_parse_i64(PQgetvalue(r, 0, 0), &n) == 0;
        PQclear(r);
        if (!ok || n == 0)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    free(app);
}

static int pg_lease_takeover(etl_state_t *base, const char *key, const char *from_owner,
                             const char *owner, int64_t now_us, int64_t lease_us,
                             etl_lease_t *out)
{
    pg_t *p = (pg_t *)base;
    wait_sessions_gone(p, from_owner);
    if (lease_begin(p) != 0)
        return -1;
    int rc = -1;
    args_t a = {0};
    a_text(&a, key);
    a_text(&a, from_owner);
    PGresult *r = query(p, P_SCHED_LOCK_OWNER, &a, "lease");
    if (r && PQntuples(r) == 0)
        rc = 0;
    else if (r && fill_from(p, r, out) == 0)
        rc = take(p, key, owner, now_us + lease_us) == 0 ? 1 : -1;
    PQclear(r);
    rc = lease_end(p, rc);
    if (rc != 1)
        etl_lease_clear(out);
    return rc;
}

/* An UPDATE of our own lease row: 1 it was ours, 0 not, -1 error. */
static int own_update(etl_state_t *base, int which, const char *key, const char *owner,
                      int64_t v, const char *what)
{
    pg_t *p = (pg_t *)base;
    args_t a = {0};
    a_text(&a, key);
    a_text(&a, owner);
    a_i64(&a, v);
    if (no_tx(p, what))
        return -1;
    int n = cmd(p, which, &a, what);
    return n < 0 ? -1 : n > 0;
}

static int pg_lease_renew(etl_state_t *base, const char *key, const char *owner,
                          int64_t until_us)
{
    return own_update(base, P_RENEW, key, owner, until_us, "lease renewal");
}

static int pg_lease_run(etl_state_t *base, const char *key, const char *owner, int64_t run_id)
{
    pg_t *p = (pg_t *)base;
    args_t a = {0};
    a_text(&a, key);
    a_text(&a, owner);
    a_i64(&a, run_id);
    if (no_tx(p, "lease"))
        return -1;
    PGresult *r = query(p, P_LEASE_RUN, &a, "lease");
    if (!r)
        return -1;
    int n = (int)val_i64(r, 0, 0);
    PQclear(r);
    return n > 0;
}

static int pg_lease_release(etl_state_t *base, const char *key, const char *owner,
                            int64_t next_us)
{
    return own_update(base, P_RELEASE, key, owner, next_us, "lease release");
}

static int pg_schedule_list(etl_state_t *base,
                            int (*cb)(void *, const char *, int64_t, const char *, int64_t,
                                      int64_t),
                            void *arg)
{
    pg_t *p = (pg_t *)base;
    args_t a = {0};
    PGresult *r = query(p, P_SCHED_LIST, &a, "schedules");
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        if (cb(arg, PQgetvalue(r, i, 0), val_i64(r, i, 1),
               PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2), val_i64(r, i, 3),
               val_i64(r, i, 4)))
            break;
    }
    PQclear(r);
    return 0;
}

static const etl_state_ops_t pg_ops = {
    .kind = "postgres",
    .close = pg_close,
    .share = pg_share,
    .shared = pg_shared,
    .begin = pg_begin,
    .read_begin = pg_read_begin,
    .read_end = pg_read_end,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .stream_id = pg_stream_id,
    .run_begin = pg_run_begin,
    .run_finish = pg_run_finish,
    .run_abandon = pg_run_abandon,
    .run_stream_status = pg_run_stream_status,
    .run_log_file = pg_run_log_file,
    .counts_add = pg_counts_add,
    .checkpoint_get = pg_checkpoint_get,
    .checkpoint_put = pg_checkpoint_put,
    .resume_put = pg_resume_put,
    .ledger_get = pg_ledger_get,
    .ledger_put = pg_ledger_put,
    .ledger_add = pg_ledger_put,
    .ledger_seen = pg_ledger_seen,
    .ledger_del = pg_ledger_del,
    .ledger_count = pg_ledger_count,
    .echo_put = pg_echo_put,
    .echo_get = pg_echo_get,
    .ledger_unseen = pg_ledger_unseen,
    .deferred_put = pg_deferred_put,
    .deferred_del = pg_deferred_del,
    .deferred_count = pg_deferred_count,
    .deferred_page = pg_deferred_page,
    .dead_letter = pg_dead_letter,
    .reset = pg_reset,
    .kv_get = pg_kv_get,
    .kv_put = pg_kv_put,
    .query = pg_query,
    .schedule_ensure = pg_schedule_ensure,
    .schedule_set = pg_schedule_set,
    .lease_claim_due = pg_lease_claim_due,
    .lease_claim = pg_lease_claim,
    .lease_takeover = pg_lease_takeover,
    .lease_renew = pg_lease_renew,
    .lease_run = pg_lease_run,
    .lease_release = pg_lease_release,
    .schedule_list = pg_schedule_list,
};
