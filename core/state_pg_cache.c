/* state_pg_cache.c - whole stream ledgers held in memory for the PostgreSQL
 * state store (state_pg_cache.h has the contract). */
#include "state_pg_cache.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { FREE = 0, USED, GONE }; /* GONE: a deleted entry, kept for probing */
enum { NOT_HELD = 0, HELD, REFUSED };

typedef struct entry {
    uint64_t h;
    const char *key; /* in the stream's key chunks */
    size_t klen;
    uint64_t hash;
    char *echo; /* malloc'd, or NULL */
    int state;
} entry_t;

/* Key bytes live in chunks freed together when the stream is dropped. */
typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
} chunk_t;

typedef struct stream {
    int64_t sid;
    int64_t misses;
    int state;
    entry_t *e;
    size_t cap, n, gone;
    chunk_t *chunks;
} stream_t;

struct etl_pg_cache {
    stream_t *s;
    size_t ns, scap;
    size_t budget, used;
};

etl_pg_cache_t *etl_pg_cache_new(size_t budget)
{
    etl_pg_cache_t *c = calloc(1, sizeof *c);
    if (c)
        c->budget = budget;
    return c;
}

static void release(etl_pg_cache_t *c, stream_t *s)
{
    for (size_t i = 0; i < s->cap; i++)
        if (s->e[i].state == USED)
            free(s->e[i].echo);
    free(s->e);
    while (s->chunks) {
        chunk_t *next = s->chunks->next;
        free(s->chunks);
        s->chunks = next;
    }
    c->used -= s->n;
    s->e = NULL;
    s->cap = s->n = s->gone = 0;
    if (s->state == HELD) {
        s->state = NOT_HELD;
        s->misses = 0; /* worth loading again after as many lookups */
    }
}

void etl_pg_cache_free(etl_pg_cache_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ns; i++)
        release(c, &c->s[i]);
    free(c->s);
    free(c);
}

static stream_t *find_stream(const etl_pg_cache_t *c, int64_t sid)
{
    for (size_t i = 0; i < c->ns; i++)
        if (c->s[i].sid == sid)
            return &c->s[i];
    return NULL;
}

static stream_t *stream_of(etl_pg_cache_t *c, int64_t sid)
{
    stream_t *s = find_stream(c, sid);
    if (s)
        return s;
    if (c->ns == c->scap) {
        size_t cap = c->scap ? c->scap * 2 : 8;
        stream_t *v = realloc(c->s, cap * sizeof *v);
        if (!v)
            return NULL;
        c->s = v;
        c->scap = cap;
    }
    s = &c->s[c->ns++];
    memset(s, 0, sizeof *s);
    s->sid = sid;
    return s;
}

int64_t etl_pg_cache_miss(etl_pg_cache_t *c, int64_t sid)
{
    stream_t *s = stream_of(c, sid);
    return s ? ++s->misses : 0;
}

size_t etl_pg_cache_room(const etl_pg_cache_t *c)
{
    return c->budget > c->used ? c->budget - c->used : 0;
}

int etl_pg_cache_held(const etl_pg_cache_t *c, int64_t sid)
{
    const stream_t *s = find_stream(c, sid);
    return s && s->state == HELD;
}

int etl_pg_cache_refused(const etl_pg_cache_t *c, int64_t sid)
{
    const stream_t *s = find_stream(c, sid);
    return s && s->state == REFUSED;
}

int etl_pg_cache_hold(etl_pg_cache_t *c, int64_t sid)
{
    stream_t *s = stream_of(c, sid);
    if (!s)
        return -1;
    release(c, s);
    s->state = HELD;
    return 0;
}

void etl_pg_cache_refuse(etl_pg_cache_t *c, int64_t sid)
{
    stream_t *s = stream_of(c, sid);
    if (s) {
        release(c, s);
        s->state = REFUSED;
    }
}

static uint64_t key_hash(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

/* The entry of key, or where it would go (the first GONE slot passed, else
 * the FREE one that ends the probe). */
static entry_t *slot(const stream_t *s, uint64_t h, const char *key, size_t klen)
{
    entry_t *grave = NULL;
    for (size_t j = h & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        entry_t *e = &s->e[j];
        if (e->state == FREE)
            return grave ? grave : e;
        if (e->state == GONE) {
            if (!grave)
                grave = e;
        } else if (e->h == h && e->klen == klen && (klen == 0 || memcmp(e->key, key, klen) == 0)) {
            return e;
        }
    }
}

static int rehash(stream_t *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    while (s->n * 2 >= cap)
        cap *= 2;
    entry_t *e = calloc(cap, sizeof *e);
    if (!e)
        return -1;
    entry_t *old = s->e;
    size_t ocap = s->cap;
    s->e = e;
    s->cap = cap;
    s->gone = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].state != USED)
            continue;
        entry_t *d = slot(s, old[i].h, old[i].key, old[i].klen);
        *d = old[i];
    }
    free(old);
    return 0;
}

static const char *keep_key(stream_t *s, const char *key, size_t klen)
{
    chunk_t *k = s->chunks;
    if (!k || k->cap - k->used < klen) {
        size_t cap = klen > (1u << 20) ? klen : (1u << 20);
        chunk_t *n = malloc(sizeof *n + cap);
        if (!n)
            return NULL;
        n->next = s->chunks;
        n->used = 0;
        n->cap = cap;
        s->chunks = k = n;
    }
    char *at = k->data + k->used;
    if (klen)
        memcpy(at, key, klen);
    k->used += klen;
    return at;
}

int etl_pg_cache_get(const etl_pg_cache_t *c, int64_t sid, const char *key, size_t klen,
                     uint64_t *hash, const char **echo)
{
    const stream_t *s = find_stream(c, sid);
    if (!s || s->state != HELD || !s->cap)
        return 0;
    entry_t *e = slot(s, key_hash(key, klen), key, klen);
    if (e->state != USED)
        return 0;
    *hash = e->hash;
    if (echo)
        *echo = e->echo;
    return 1;
}

void etl_pg_cache_put(etl_pg_cache_t *c, int64_t sid, const char *key, size_t klen,
                      uint64_t hash, const char *echo)
{
    stream_t *s = find_stream(c, sid);
    if (!s || s->state != HELD)
        return;
    char *copy = echo ? etl_strdup(echo) : NULL;
    if ((echo && !copy) || ((s->n + s->gone + 1) * 4 >= s->cap * 3 && rehash(s) != 0)) {
        free(copy);
        release(c, s); /* unsure of it now: back to the server */
        return;
    }
    uint64_t h = key_hash(key, klen);
    entry_t *e = slot(s, h, key, klen);
    if (e->state == USED) {
        free(e->echo);
        e->hash = hash;
        e->echo = copy;
        return;
    }
    const char *k = c->used < c->budget ? keep_key(s, key, klen) : NULL;
    if (!k) {
        free(copy);
        etl_pg_cache_refuse(c, sid); /* over budget (or memory): not worth it */
        return;
    }
    if (e->state == GONE)
        s->gone--;
    *e = (entry_t){h, k, klen, hash, copy, USED};
    s->n++;
    c->used++;
}

void etl_pg_cache_del(etl_pg_cache_t *c, int64_t sid, const char *key, size_t klen)
{
    stream_t *s = find_stream(c, sid);
    if (!s || s->state != HELD || !s->cap)
        return;
    entry_t *e = slot(s, key_hash(key, klen), key, klen);
    if (e->state != USED)
        return;
    free(e->echo);
    e->echo = NULL;
    e->state = GONE;
    s->n--;
    s->gone++;
    c->used--;
}

void etl_pg_cache_drop_all(etl_pg_cache_t *c)
{
    for (size_t i = 0; i < c->ns; i++)
        release(c, &c->s[i]);
}
