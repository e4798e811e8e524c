/*
 * spool.h - rows waiting for a stream that has not run yet (ctx:emit() from
 * another stream's transform). Kept in an unlinked temporary file, so a big
 * fan-out never sits in memory.
 */
#ifndef ETL_CORE_SPOOL_H
#define ETL_CORE_SPOOL_H

#include <stddef.h>

#include "etl/record.h"

typedef struct etl_spool etl_spool_t;

etl_spool_t *etl_spool_new(void);
void etl_spool_free(etl_spool_t *sp);
int etl_spool_add(etl_spool_t *sp, const etl_value_t *row, size_t ncols);
size_t etl_spool_count(const etl_spool_t *sp);
/* Calls cb for every row in order, then empties the spool. cb's row is
 * valid during the call. Returns 0, -1 on an I/O error, or cb's non-zero. */
int etl_spool_drain(etl_spool_t *sp, size_t ncols, int (*cb)(void *arg, const etl_value_t *row),
                    void *arg);

#endif
