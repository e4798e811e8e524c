/*
 * nest.h - child rows embedded in their parent's document (`nest:`): read
 * into a temporary index before the parent runs, attached by the writer as
 * one json array column per nest field.
 */
#ifndef ETL_CORE_NEST_H
#define ETL_CORE_NEST_H

#include "runtime.h"

/* Whether a stream is read only as some parent's `nest:` child. */
int etl_nest_is_child(const etl_pipeline_t *p, const char *stream);
/* At setup, after the out schema is built: the children's columns, and one
 * json column per nest field appended to s->out. 0 or -1 (s->error). */
int etl_nest_setup(etl_run_t *r, etl_srt_t *s);
/* Before the parent's read: every child row, indexed by its fk. */
int etl_nest_collect(etl_run_t *r, etl_srt_t *s);
/* Fills a batch's nest columns with each parent's children. */
int etl_nest_attach(etl_srt_t *s, etl_batch_t *b, char *err, size_t errlen);
void etl_nest_free(etl_nest_t *n);

#endif
