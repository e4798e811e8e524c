/*
 * ckey.c - content keys for append streams without a key (see ckey.h).
 */
#include "ckey.h"

#include <stdlib.h>
#include <string.h>

void etl_ckey_init(etl_ckey_t *c)
{
    memset(c, 0, sizeof *c);
    etl_buf_init(&c->cursor);
}

void etl_ckey_free(etl_ckey_t *c)
{
    free(c->hash);
    free(c->rank);
    free(c->gen);
    etl_buf_free(&c->cursor);
    memset(c, 0, sizeof *c);
}

static size_t slot(const etl_ckey_t *c, uint64_t h)
{
    size_t i = (size_t)(h ^ (h >> 29)) & (c->cap - 1);
    while (c->gen[i] == c->cur && c->hash[i] != h)
        i = (i + 1) & (c->cap - 1);
    return i;
}

static int grow(etl_ckey_t *c)
{
    size_t cap = c->cap ? c->cap * 2 : 64;
    uint64_t *h = malloc(cap * sizeof *h);
    uint32_t *r = malloc(cap * sizeof *r), *g = calloc(cap, sizeof *g);
    if (!h || !r || !g) {
        free(h);
        free(r);
        free(g);
        return -1;
    }
    etl_ckey_t old = *c;
    c->hash = h;
    c->rank = r;
    c->gen = g;
    c->cap = cap;
    c->cur = 1; /* the fresh table: gen 0 is empty */
    for (size_t i = 0; i < old.cap; i++) {
        if (old.gen[i] != old.cur)
            continue;
        size_t j = slot(c, old.hash[i]);
        c->hash[j] = old.hash[i];
        c->rank[j] = old.rank[i];
        c->gen[j] = c->cur;
    }
    free(old.hash);
    free(old.rank);
    free(old.gen);
    return 0;
}

int etl_ckey_next(etl_ckey_t *c, uint64_t hash, const char *cursor, size_t clen, etl_buf_t *out)
{
    if (!c->have_cursor || c->cursor.len != clen ||
        (clen && memcmp(c->cursor.data, cursor, clen) != 0)) {
        /* a new cursor value: the ranks start over (a generation, not a wipe) */
        etl_buf_reset(&c->cursor);
        etl_buf_add(&c->cursor, cursor, clen);
        etl_buf_addc(&c->cursor, '\0');
        c->cursor.len = clen;
        if (c->cursor.oom)
            return -1;
        c->have_cursor = 1;
        c->used = 0;
        if (++c->cur == 0) { /* wrapped: really empty it once */
            if (c->gen)
                memset(c->gen, 0, c->cap * sizeof *c->gen);
            c->cur = 1;
        }
    }
    if ((c->used + 1) * 2 > c->cap && grow(c) != 0)
        return -1;
    size_t i = slot(c, hash);
    if (c->gen[i] != c->cur) {
        c->gen[i] = c->cur;
        c->hash[i] = hash;
        c->rank[i] = 0;
        c->used++;
    }
    c->rank[i]++;
    etl_buf_printf(out, "=%016llx:%u", (unsigned long long)hash, (unsigned)c->rank[i]);
    return out->oom ? -1 : 0;
}
