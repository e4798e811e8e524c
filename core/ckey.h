/*
 * ckey.h - content keys for `write: append` streams without a key. A row is
 * named by its content hash and its rank among the identical rows of the same
 * cursor value ("=<hash>:<rank>"), so the rows an incremental run reads
 * again at its checkpoint's boundary are found in the ledger and not
 * appended twice, while a new row identical to one already there is still
 * new. Rows arrive in cursor order, so only the ranks of the current cursor
 * value are kept: memory is bounded by the rows sharing one cursor value.
 */
#ifndef ETL_CORE_CKEY_H
#define ETL_CORE_CKEY_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct etl_ckey {
    uint64_t *hash;
    uint32_t *rank, *gen; /* an entry counts only when gen matches cur */
    size_t cap, used;
    uint32_t cur;
    etl_buf_t cursor;     /* the cursor value the ranks belong to */
    int have_cursor;
} etl_ckey_t;

void etl_ckey_init(etl_ckey_t *c);
void etl_ckey_free(etl_ckey_t *c);
/* Appends the key of the next row (its content hash, its cursor value as
 * text) to out. -1 on no memory. */
int etl_ckey_next(etl_ckey_t *c, uint64_t hash, const char *cursor, size_t clen, etl_buf_t *out);

#endif
