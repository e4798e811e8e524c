/*
 * state_pg_cache.h - the PostgreSQL state store's copy of whole stream
 * ledgers in memory. A lookup on PostgreSQL is a round trip; a stream that
 * looks up many keys in one run (a full re-read) has its ledger loaded once
 * and answered from here. Not part of any public API.
 *
 * Why a copy may be trusted: one run of a pipeline at a time (its lock or
 * lease), so during a run the ledgers of its streams change only through
 * this store, which writes every change here too. When a write may not have
 * landed (a failed or rolled-back transaction) the store drops the copies.
 */
#ifndef ETL_CORE_STATE_PG_CACHE_H
#define ETL_CORE_STATE_PG_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct etl_pg_cache etl_pg_cache_t;

/* budget: entries held over all streams. */
etl_pg_cache_t *etl_pg_cache_new(size_t budget);
void etl_pg_cache_free(etl_pg_cache_t *c);

/* Counts a lookup of sid that went to the server; returns how many so far. */
int64_t etl_pg_cache_miss(etl_pg_cache_t *c, int64_t sid);
/* Entries the budget still has room for. */
size_t etl_pg_cache_room(const etl_pg_cache_t *c);
/* Whether sid's whole ledger is held. */
int etl_pg_cache_held(const etl_pg_cache_t *c, int64_t sid);
/* Starts holding sid, empty, to be filled with put. -1 out of memory. */
int etl_pg_cache_hold(etl_pg_cache_t *c, int64_t sid);
/* Marks sid as not worth holding (too big): no more attempts this store. */
void etl_pg_cache_refuse(etl_pg_cache_t *c, int64_t sid);
int etl_pg_cache_refused(const etl_pg_cache_t *c, int64_t sid);

/* For a held sid: 1 found (*hash, and *echo borrowed until the next change,
 * NULL when none), 0 absent. */
int etl_pg_cache_get(const etl_pg_cache_t *c, int64_t sid, const char *key, size_t klen,
                     uint64_t *hash, const char **echo);
/* Sets an entry of a held sid (no-op for a sid not held). Out of memory or
 * over budget, the sid stops being held (its lookups go to the server). */
void etl_pg_cache_put(etl_pg_cache_t *c, int64_t sid, const char *key, size_t klen,
                      uint64_t hash, const char *echo);
void etl_pg_cache_del(etl_pg_cache_t *c, int64_t sid, const char *key, size_t klen);
/* Forgets every held ledger (their next lookups go to the server). */
void etl_pg_cache_drop_all(etl_pg_cache_t *c);

#endif
