/*
 * cron.h - five-field cron expressions for `schedule: { cron: ... }`:
 * parsing, and the next time an expression matches.
 *
 * Syntax (fields separated by spaces or tabs):
 *
 *   minute 0-59   hour 0-23   day of month 1-31   month 1-12   day of week 0-7
 *
 * A field is a list of items separated by ",": `*`, a number `5`, a range
 * `1-5`, or one of those with a step `/N` (every N-th value from the start):
 * `* /15` (written without the space, which only this C comment needs),
 * `1-30/5`, and `5/15` meaning 5-max/15. A step must reach a second value
 * (minutes 1-59, hours 1-23, ...). Months may be written jan..dec and
 * weekdays sun..sat (any case, in ranges too); weekday 7 is Sunday, like 0,
 * and a weekday range may end on Sunday (fri-sun).
 *
 * Shorthands: @yearly (= @annually) "0 0 1 1 *", @monthly "0 0 1 * *",
 * @weekly "0 0 * * 0", @daily (= @midnight) "0 0 * * *", @hourly "0 * * * *".
 *
 * Days follow Vixie cron: when both the day-of-month and the day-of-week
 * field are restricted, a day matches when either does; a field that starts
 * with `*` (including `* /2`) is not a restriction, and then a day must match
 * both fields.
 */
#ifndef ETL_CORE_CRON_H
#define ETL_CORE_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "etl/etl.h"

/* One bit per value that matches: bit 5 of `minute` is minute 5. */
typedef struct etl_cron {
    uint64_t minute; /* bits 0..59 */
    uint32_t hour;   /* bits 0..23 */
    uint32_t dom;    /* bits 1..31 */
    uint16_t month;  /* bits 1..12 */
    uint8_t dow;     /* bits 0..6, 0 = Sunday (7 is folded into 0) */
    int dom_star;    /* the day-of-month field starts with '*' */
    int dow_star;    /* the day-of-week field starts with '*' */
} etl_cron_t;

/*
 * Parses expr into *out. Returns 0, or -1 with err holding what is wrong
 * ("hour field '24': 24 is out of range 0-23") and *errpos the byte offset in
 * expr of the offending field: the field itself, the first extra field when
 * there are more than five, the end of expr when there are fewer, 0 when expr
 * is empty. errpos may be NULL; err may be NULL when errlen is 0. Fields are
 * read left to right and the first problem is reported.
 */
ETL_API int etl_cron_parse(const char *expr, etl_cron_t *out, size_t *errpos, char *err,
                           size_t errlen);

/*
 * The first whole minute strictly after `after` (seconds since the epoch)
 * whose wall clock matches, in local time (the process's TZ; call tzset()
 * after changing it) unless `utc` is set. -1 when nothing matches within
 * five years (30 2 31 2 *) or `after` is outside years 1..9999.
 *
 * Daylight saving time: the search is over wall-clock times, so
 *  - a time the clock skips when it springs forward does not exist and is
 *    skipped: "30 2 * * *" does not run on that day in America/New_York;
 *  - a time the clock shows twice when it falls back runs once, at its first
 *    occurrence: nothing runs during the repeated hour's second pass, so
 *    "* /15 * * * *" pauses for an hour there while a daily job runs once.
 */
ETL_API int64_t etl_cron_next(const etl_cron_t *c, int64_t after, int utc);

#endif
