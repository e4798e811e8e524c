/*
 * state_lease.c - holding a pipeline's lease for as long as `etl run` or
 * `etl reset` lasts, on either store (a SQLite store's lock file keeps out
 * other runs of this machine; the lease keeps out `etl serve` workers, and
 * on a PostgreSQL store, which has no file to lock, everyone): the claim,
 * taking over from a dead process of this host, a thread that renews the
 * lease on a store connection of its own, and the release.
 */
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct etl_lease_hold {
    etl_state_t *st; /* the renewals' own connection */
    char *key, *owner;
    int64_t lease_us;
    pthread_t th;
    int started;
    int borrowed; /* the lease is this process's caller's: not renewed, not released */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    atomic_int lost;
    atomic_int *cancel;
};

char *etl_lease_owner_self(void)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        etl_strlcpy(host, "localhost", sizeof host);
    host[sizeof host - 1] = '\0';
    return etl_asprintf("%s:%ld", host, (long)getpid());
}

/* Whether `holder` names a process of this host that no longer exists: a
 * run killed with -9 must not keep its pipeline for a whole lease. */
static int holder_is_dead(const char *holder, const char *self)
{
    const char *hc = strrchr(holder, ':'), *sc = strrchr(self, ':');
    if (!hc || !sc || hc - holder != sc - self || strncmp(holder, self, (size_t)(sc - self)) != 0)
        return 0;
    int64_t pid;
    if (etl_parse_i64(hc + 1, &pid) != 0 || pid <= 0 || pid > INT_MAX)
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Renews every third of the lease; stops at the release, or when the lease
 * turns out to be another worker's (then the run is cancelled). */
static void *renew(void *arg)
{
    etl_lease_hold_t *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + (h->lease_us / 3 % 1000000) * 1000;
        until.tv_sec += (time_t)(h->lease_us / 3 / 1000000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        int w = 0;
        while (!h->stop && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&h->cv, &h->mu, &until);
        if (h->stop)
            break;
        pthread_mutex_unlock(&h->mu);
        /* an error (-1) passes: the lease outlives two more attempts */
        int rc = etl_state_lease_renew(h->st, h->key, h->owner, etl_now_us() + h->lease_us);
        pthread_mutex_lock(&h->mu);
        if (rc == 0) {
            atomic_store(&h->lost, 1);
            if (h->cancel)
                atomic_store(h->cancel, 1);
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static etl_lease_hold_t *hold_new(const char *key, int64_t lease_us, atomic_int *cancel)
{
    etl_lease_hold_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->lease_us = lease_us;
    h->cancel = cancel;
    atomic_init(&h->lost, 0);
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wall clock jumps do not matter */
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!(h->key = etl_strdup(key)) || !(h->owner = etl_lease_owner_self())) {
        etl_lease_hold_release(h);
        return NULL;
    }
    return h;
}

/* Claims the lease on st: 1, 0 with *holder, or -1 (state.h). */
static int claim(etl_state_t *st, etl_lease_hold_t *h, etl_lease_t *l, char **holder)
{
    int64_t now = etl_now_us();
    int rc = etl_state_lease_claim(st, h->key, h->owner, now, h->lease_us, l, holder);
    if (rc == 0 && *holder && holder_is_dead(*holder, h->owner)) {
        rc = etl_state_lease_takeover(st, h->key, *holder, h->owner, now, h->lease_us, l);
        if (rc == 0) { /* it changed hands meanwhile: say to whom */
            free(*holder);
            *holder = NULL;
            rc = etl_state_lease_claim(st, h->key, h->owner, now, h->lease_us, l, holder);
        }
    }
    return rc;
}

etl_lease_hold_t *etl_lease_hold(etl_state_t *st, const char *url, const char *key,
                                 int64_t lease_us, atomic_int *cancel, char *err, size_t errlen)
{
    etl_lease_hold_t *h = hold_new(key, lease_us, cancel);
    if (!h) {
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    etl_lease_t l;
    char *holder = NULL;
    int rc = claim(st, h, &l, &holder);
    if (rc == 0 && holder && strcmp(holder, h->owner) == 0) {
        /* held under this very process's name: by the caller (etl serve
         * runs what it claimed), who renews and releases it */
        free(holder);
        h->borrowed = 1;
        return h;
    }
    if (rc < 0)
        etl_errf(err, errlen, "%s", etl_state_error(st));
    else if (rc == 0)
        etl_errf(err, errlen, "pipeline %s is already running (lease held by %s)", key,
                 holder ? holder : "another worker");
    free(holder);
    if (rc != 1)
        goto fail;
    if (l.lost_run_id) {
        /* the run of the lease taken over never finished: its history says so */
        char *why = etl_asprintf("interrupted: %s stopped without finishing; %s took the "
                                 "pipeline over", l.lost_owner, h->owner);
        etl_state_run_abandon(st, l.lost_run_id, why ? why : "interrupted");
        free(why);
    }
    etl_lease_clear(&l);
    if (!(h->st = etl_state_open(url, err, errlen))) {
        etl_state_lease_release(st, h->key, h->owner, -1);
        goto fail;
    }
    if (pthread_create(&h->th, NULL, renew, h) != 0) {
        etl_errf(err, errlen, "cannot start the lease renewal thread");
        etl_lease_hold_release(h);
        return NULL;
    }
    h->started = 1;
    return h;
fail:
    etl_lease_hold_release(h);
    return NULL;
}

const char *etl_lease_hold_owner(const etl_lease_hold_t *h) { return h->owner; }

int etl_lease_hold_lost(etl_lease_hold_t *h) { return atomic_load(&h->lost); }

void etl_lease_hold_release(etl_lease_hold_t *h)
{
    if (!h)
        return;
    if (h->started) {
        pthread_mutex_lock(&h->mu);
        h->stop = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->th, NULL);
    }
    if (h->st && !atomic_load(&h->lost))
        etl_state_lease_release(h->st, h->key, h->owner, -1);
    etl_state_close(h->st);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h->key);
    free(h->owner);
    free(h);
}
