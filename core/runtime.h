/*
 * runtime.h - the state of a run while it executes, shared by the modules
 * that make up the runner: run.c (lifecycle), endpoint.c (plugins),
 * stream.c (one stream: setup, threads, finishing), emit.c (the source
 * side: map, Lua, batching) and writer.c (the sink side: in-batch dedup, fk
 * check, ledger, write, state commit). Not part of any public API.
 */
#ifndef ETL_CORE_RUNTIME_H
#define ETL_CORE_RUNTIME_H

#include <stdatomic.h>

#include "batch.h"
#include "config.h"
#include "ctx.h"
#include "hooks.h"
#include "log.h"
#include "plugin.h"
#include "run.h"
#include "spool.h"
#include "state.h"

typedef struct etl_nest etl_nest_t;

/* One end of the pipeline (`source:` or `sink:`), which may serve as a
 * source, a sink, or both (direction: both). */
typedef struct etl_end {
    const etl_endpoint_cfg_t *cfg;
    etl_plugin_lib_t *lib;
    etl_options_t *opts;
    etl_ctx_t *src_ctx, *sink_ctx;
    void *src, *sink; /* plugin instances, opened on demand */
} etl_end_t;

typedef struct etl_fk_rt {
    int col;              /* index in the out schema */
    const char *column;
    const char *parent;   /* parent stream name */
    int64_t parent_sid;   /* its ledger in this direction */
    const char *parent_table; /* the parent's table at the pipeline's sink: end */
} etl_fk_rt_t;

enum { ST_PENDING = 0, ST_OK, ST_FAILED, ST_SKIPPED, ST_CANCELLED };

/* One stream in one direction. */
typedef struct etl_srt {
    const etl_stream_cfg_t *cfg;
    size_t index;               /* in the pipeline's streams */
    etl_direction_t dir;        /* FORWARD or REVERSE */
    const char *dir_name;
    const char *read_name;      /* the resource the source reads */
    const char *table;          /* the sink table */
    etl_schema_t *read;         /* columns asked of the source; NULL when emit-only */
    etl_schema_t *out;          /* columns the sink receives */
    etl_schema_t *keys;         /* the key columns alone, for deletes */
    int *map;                   /* out column j comes from read column map[j], -1: NULL */
    int *key;
    size_t nkey;
    int *fb;                    /* fallback key */
    size_t nfb;
    int cursor_read, cursor_out;
    unsigned char *skip;        /* per out column: left out of the content hash */
    etl_fk_rt_t *fk;
    size_t nfk;
    int self_fk;                /* a column refers to this stream itself */
    int64_t sid;
    int xf;                     /* Lua transform ref, 0 = none */
    int emit_only;
    void *sink_stream;
    etl_spool_t *spool;         /* rows sent here by ctx:emit() from other streams */
    const char **keep;          /* local_only on the sink side */
    size_t nkeep;
    etl_conflict_t conflict;    /* the pipeline's rule, seen from this direction */
    int rs;                     /* Lua resolve ref (conflict: lua), 0 = none */
    /* identity translation: the key is the source's id (key) going forward,
     * kept at the sink: end in sink_key beside its own sink_pk */
    int ident;
    const etl_identity_cfg_t *idcfg;
    int ident_key;              /* out column of the translated key */
    int ident_pk;               /* reverse: hidden out column with the sink_pk, else -1 */
    const char *ident_table;    /* this stream's table at the pipeline's sink: end */
    int64_t sid_other;          /* the other direction's ledger (echo marks), 0 = none */
    struct etl_keyset *resolved; /* forward: keys resolve() rewrote in this run */
    etl_nest_t *nest;           /* children embedded as json arrays (nest:) */

    /* per run */
    int full, detect_deletes, has_since;
    int by_key;                 /* a full scan in key order */
    int resume;                 /* ... that records where it stands */
    int resumed;                /* ... continuing an interrupted one */
    int *rkey;                  /* the key's columns in the read schema */
    size_t nrkey;
    etl_value_t *after;         /* where a resumed scan starts (nrkey values) */
    etl_arena_t after_arena;
    etl_value_t resume_max;     /* resumed: the first part's greatest cursor */
    int64_t scan_id;            /* the run whose seen marks this scan uses */
    int fresh;                  /* the ledger was empty when the stream started */
    int spool_only;             /* a second pass for rows emitted after the stream ran */
    etl_write_mode_t write;     /* this pass's: a second pass of replace adds to the live table */
    /* The transform sent rows to other streams (ctx:emit): they are written
     * later, so this stream's checkpoint and resume point wait for them
     * (held_*) and move at the end of the direction when nothing was lost. */
    atomic_int emitted;         /* set by the reader thread */
    char *held_ck, *held_type;  /* the checkpoint to move to, malloc'd */
    int held_full;
    int held_clear_resume;      /* the key-ordered scan completed: drop its resume point */
    unsigned char *targets;     /* [nstreams]: the streams it emitted into (reader thread) */
    int spool_lost;             /* rows emitted into this stream were not all written */
    etl_value_t since;
    char since_buf[80];
    etl_checkpoint_t ckpt;
    etl_counts_t counts;
    int status;
    char *error;
    int64_t started_us;
    int64_t duration_ms;
    int64_t deferred_before;    /* deferred rows at the start */
} etl_srt_t;

typedef struct etl_run {
    const etl_pipeline_t *p;
    const etl_run_opts_t *o;
    char *pkey;
    etl_state_t *state;
    etl_logger_t *log;
    int64_t run_id;
    atomic_int *cancel;
    atomic_int own_cancel;
    etl_lua_t *lua;             /* transforms, in reader threads */
    etl_lua_t *lua_w;           /* conflict resolvers, in the writer */
    etl_end_t ends[2];          /* [0] the pipeline's source:, [1] its sink: */
    etl_srt_t *srt;             /* nstreams * 2: [i*2 + 0] forward, [i*2 + 1] reverse */
    int64_t window;
    int64_t since_us;
    int has_since;
    int64_t errors;             /* failed records so far, against max_errors */
    int shared_db;              /* the sink is the state store's database */
    int64_t last_progress_us;
    int lock_fd;                /* held while the run lasts: one run of a pipeline at once */
    char err[1024];
} etl_run_t;

/* endpoint.c */
int etl_ends_load(etl_run_t *r, char *err, size_t errlen);
/* Opens the role's instance on demand; -1 with r->err set. */
int etl_end_source(etl_run_t *r, etl_end_t *e, etl_logger_t *lg);
int etl_end_sink(etl_run_t *r, etl_end_t *e, etl_logger_t *lg);
void etl_ends_close(etl_run_t *r);

/* stream.c */
int etl_stream_setup(etl_run_t *r, etl_srt_t *s);
int etl_stream_run(etl_run_t *r, etl_srt_t *s);
void etl_stream_free(etl_srt_t *s);

/* emit.c: the emitter behind etl_emit() */
struct etl_emitter {
    etl_run_t *run;
    etl_srt_t *s;
    etl_queue_t *q;
    etl_batch_t *cur;
    size_t batch_rows;
    int have_max, have_ck;
    etl_value_t max, ck;
    etl_buf_t max_buf, ck_buf;
    etl_value_t *scratch;
    etl_buf_t key, lerr, json;
    etl_status_t failed;        /* sticky: the queue was closed or memory ran out */
    int64_t read;
    int64_t own;                /* rows the transform kept in its own stream */
    int in_transform;           /* a Lua transform is running: no sealing yet */
    int64_t t0;                 /* when the open batch was started */
    int unordered;              /* a key-ordered scan met a key out of order */
    etl_value_t *last_key;      /* the last source row's key (by_key scans) */
    etl_buf_t last_buf;
    int replay;                 /* rows come from a spool, not the source */
    /* collect mode (nest children): each source row goes here, no batches */
    int (*collect)(void *arg, const etl_value_t *row);
    void *collect_arg;
};

void etl_emitter_init(etl_emitter_t *em, etl_run_t *r, etl_srt_t *s, etl_queue_t *q);
/* An emitter that hands each row to cb instead (for reads in the calling
 * thread: nest children). */
void etl_emitter_init_collect(etl_emitter_t *em, etl_run_t *r, etl_srt_t *s,
                              int (*cb)(void *arg, const etl_value_t *row), void *arg);
void etl_emitter_free(etl_emitter_t *em);
/* Ends the stream: pushes the open batch and the end marker with the final
 * checkpoint (only when st is ETL_OK). */
void etl_emitter_finish(etl_emitter_t *em, etl_status_t st, const char *error);
/* Compares two cursor values of one type: <0, 0, >0. */
int etl_cursor_cmp(const etl_value_t *a, const etl_value_t *b);
/* Adds an already mapped row (out schema) to the current batch. */
etl_status_t etl_emit_out(etl_emitter_t *em, const etl_value_t *row, int op);

/* writer.c */
typedef struct etl_writer etl_writer_t;
etl_writer_t *etl_writer_new(etl_run_t *r, etl_srt_t *s);
void etl_writer_free(etl_writer_t *w);
/* Processes one batch: dedup, fk, ledger, write, commit. 0, or -1 with
 * s->error set (the stream fails). retry_deferred: rows come from the
 * deferred table and are not counted as read. */
int etl_writer_batch(etl_writer_t *w, etl_batch_t *b, int retry_deferred);
/* Full scans: deletes (or soft-deletes) keys the scan did not see. */
int etl_writer_delete_unseen(etl_writer_t *w);
/* Between the deferred retry, the read and the spool drain: each numbers
 * identical keyless append rows from the start (ckey.h). */
void etl_writer_phase(etl_writer_t *w);
/* write: replace: the checkpoint, once finish() has swapped the table in. */
int etl_writer_final_checkpoint(etl_writer_t *w);
void etl_keyset_free(struct etl_keyset *k);
/* Prints the progress line when due. */
void etl_writer_progress(etl_writer_t *w, int final);

void etl_srt_fail(etl_srt_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
