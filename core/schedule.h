/*
 * schedule.h - when a pipeline runs: the next time of a `schedule:` (cron or
 * every) and the `expires` rule. Pure functions of the configuration and
 * the clock; `etl serve` keeps the times in the state store.
 */
#ifndef ETL_CORE_SCHEDULE_H
#define ETL_CORE_SCHEDULE_H

#include <stdint.h>

#include "config.h"

/* Whether the pipeline has a schedule at all. */
int etl_sched_has(const etl_schedule_cfg_t *s);

/* The first time of a schedule never run before: `every` runs at once,
 * cron at its next match after now. 0 when there is no schedule. */
int64_t etl_sched_first(const etl_schedule_cfg_t *s, int64_t now_us);

/* The time after a run that was due at due_us, seen at now_us: the next
 * cron match after now, or due + k * every, the first such time after now
 * (missed runs are not made up one by one). 0 when there is no schedule. */
int64_t etl_sched_next(const etl_schedule_cfg_t *s, int64_t due_us, int64_t now_us);

/* Whether a run due at due_us is too late to start at now_us. */
int etl_sched_expired(const etl_schedule_cfg_t *s, int64_t due_us, int64_t now_us);

/* Whether two schedules are the same (a reload keeps the planned time). */
int etl_sched_same(const etl_schedule_cfg_t *a, const etl_schedule_cfg_t *b);

#endif
