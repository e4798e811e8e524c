/* schedule.c - next run times of schedules and the expires rule. */
#include "schedule.h"

#include <string.h>

#include "cron.h"

#define US 1000000LL

int etl_sched_has(const etl_schedule_cfg_t *s) { return s->cron != NULL || s->every > 0; }

/* The next cron match strictly after t (microseconds); 0 when none. */
static int64_t cron_after(const etl_cron_t *c, int64_t t_us)
{
    int64_t next = etl_cron_next(c, t_us / US, 0);
    return next < 0 ? 0 : next * US;
}

int64_t etl_sched_first(const etl_schedule_cfg_t *s, int64_t now_us)
{
    if (s->cron)
        return cron_after(&s->cron_parsed, now_us);
    return s->every > 0 ? now_us : 0;
}

int64_t etl_sched_next(const etl_schedule_cfg_t *s, int64_t due_us, int64_t now_us)
{
    if (s->cron)
        return cron_after(&s->cron_parsed, now_us > due_us ? now_us : due_us);
    if (s->every <= 0)
        return 0;
    int64_t step = s->every * US;
    if (due_us <= 0)
        return now_us + step;
    int64_t next = due_us + step;
    if (next <= now_us)
        next += ((now_us - next) / step + 1) * step;
    return next;
}

int etl_sched_expired(const etl_schedule_cfg_t *s, int64_t due_us, int64_t now_us)
{
    return s->expires > 0 && due_us > 0 && now_us - due_us > s->expires * US;
}

int etl_sched_same(const etl_schedule_cfg_t *a, const etl_schedule_cfg_t *b)
{
    if ((a->cron == NULL) != (b->cron == NULL))
        return 0;
    if (a->cron && strcmp(a->cron, b->cron) != 0)
        return 0;
    return a->every == b->every;
}
