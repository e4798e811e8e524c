/* spool.c - rows parked in a temporary file until their stream runs. */
#include "spool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct etl_spool {
    FILE *fp;
    size_t count;
};

etl_spool_t *etl_spool_new(void) { return calloc(1, sizeof(etl_spool_t)); }

void etl_spool_free(etl_spool_t *sp)
{
    if (!sp)
        return;
    if (sp->fp)
        fclose(sp->fp);
    free(sp);
}

size_t etl_spool_count(const etl_spool_t *sp) { return sp ? sp->count : 0; }

static int is_bytes(etl_type_t t)
{
    return t == ETL_T_NUMERIC || t == ETL_T_TEXT || t == ETL_T_BLOB || t == ETL_T_JSON;
}

int etl_spool_add(etl_spool_t *sp, const etl_value_t *row, size_t ncols)
{
    if (!sp->fp && !(sp->fp = tmpfile()))
        return -1;
    for (size_t i = 0; i < ncols; i++) {
        const etl_value_t *v = &row[i];
        uint8_t t = (uint8_t)v->type;
        if (fwrite(&t, 1, 1, sp->fp) != 1)
            return -1;
        if (is_bytes(v->type)) {
            uint32_t n = v->len;
            if (fwrite(&n, 4, 1, sp->fp) != 1 || (n && fwrite(v->v.s, 1, n, sp->fp) != n))
                return -1;
        } else if (v->type != ETL_T_NULL) {
            if (fwrite(&v->v, 8, 1, sp->fp) != 1)
                return -1;
        }
    }
    sp->count++;
    return 0;
}

int etl_spool_drain(etl_spool_t *sp, size_t ncols, int (*cb)(void *, const etl_value_t *),
                    void *arg)
{
    if (!sp || !sp->fp || !sp->count)
        return 0;
    int rc = 0;
    etl_value_t *row = calloc(ncols ? ncols : 1, sizeof *row);
    char **bufs = calloc(ncols ? ncols : 1, sizeof *bufs);
    size_t *caps = calloc(ncols ? ncols : 1, sizeof *caps);
    if (!row || !bufs || !caps || fflush(sp->fp) != 0 || fseek(sp->fp, 0, SEEK_SET) != 0) {
        rc = -1;
        goto done;
    }
    for (size_t r = 0; r < sp->count && rc == 0; r++) {
        for (size_t i = 0; i < ncols; i++) {
            uint8_t t;
            if (fread(&t, 1, 1, sp->fp) != 1 || t >= ETL_T_COUNT_) {
                rc = -1;
                goto done;
            }
            memset(&row[i], 0, sizeof row[i]);
            row[i].type = (etl_type_t)t;
            if (is_bytes(row[i].type)) {
                uint32_t n;
                if (fread(&n, 4, 1, sp->fp) != 1) {
                    rc = -1;
                    goto done;
                }
                if (n + 1 > caps[i]) {
                    char *p = realloc(bufs[i], n + 1);
                    if (!p) {
                        rc = -1;
                        goto done;
                    }
                    bufs[i] = p;
                    caps[i] = n + 1;
                }
                if (n && fread(bufs[i], 1, n, sp->fp) != n) {
                    rc = -1;
                    goto done;
                }
                bufs[i][n] = '\0';
                row[i].v.s = bufs[i];
                row[i].len = n;
            } else if (t != ETL_T_NULL && fread(&row[i].v, 8, 1, sp->fp) != 1) {
                rc = -1;
                goto done;
            }
        }
        rc = cb(arg, row);
    }
done:
    fclose(sp->fp);
    sp->fp = NULL;
    sp->count = 0;
    for (size_t i = 0; bufs && i < ncols; i++)
        free(bufs[i]);
    free(bufs);
    free(caps);
    free(row);
    return rc;
}
