/* test_batch.c - the arena, batches of rows, rejects, the reader->writer
 * queue (core/batch.h) and the spool of emitted rows (core/spool.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "spool.h"
#include "util.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls until *v == want or about 5 s pass; returns the last value seen. */
static int wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 500 && atomic_load(v) != want; i++)
        sleep_ms(10);
    return atomic_load(v);
}

/* ------------------------------------------------------------ arena */

static void test_arena_alloc_is_aligned_and_disjoint(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    unsigned char *p[200];
    size_t sizes[200];
    for (int i = 0; i < 200; i++) {
        sizes[i] = (size_t)(1 + (i * 37) % 1500);
        p[i] = etl_arena_alloc(&a, sizes[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], i, sizes[i]);
    }
    /* total > one 64 KiB chunk: every block still holds what was written */
    for (int i = 0; i < 200; i++)
        for (size_t k = 0; k < sizes[i]; k++)
            if (p[i][k] != (unsigned char)i)
                fail_msg("block %d byte %zu overwritten", i, k);
    etl_arena_free(&a);
}

static void test_arena_big_allocation_gets_its_own_chunk(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    char *small = etl_arena_alloc(&a, 8);
    char *big = etl_arena_alloc(&a, 1 << 20);
    assert_non_null(small);
    assert_non_null(big);
    memset(big, 'b', 1 << 20);
    memset(small, 's', 8);
    assert_int_equal(big[0], 'b');
    assert_int_equal(big[(1 << 20) - 1], 'b');
    assert_int_equal(small[7], 's');
    etl_arena_free(&a);
}

static void test_arena_dup_copies_and_terminates(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    char src[] = "a\0bc";
    char *d = etl_arena_dup(&a, src, 4);
    assert_non_null(d);
    assert_ptr_not_equal(d, src);
    assert_memory_equal(d, "a\0bc", 5);
    src[0] = 'z';
    assert_int_equal(d[0], 'a');
    char *e = etl_arena_dup(&a, NULL, 0);
    assert_non_null(e);
    assert_string_equal(e, "");
    etl_arena_free(&a);
}

static void test_arena_reset_reuses_first_chunk(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    void *first = etl_arena_alloc(&a, 32);
    for (int i = 0; i < 10; i++)
        assert_non_null(etl_arena_alloc(&a, 30000)); /* several more chunks */
    assert_non_null(etl_arena_alloc(&a, 200000));
    etl_arena_reset(&a);
    assert_int_equal(a.used, 0);
    assert_non_null(a.head);
    assert_ptr_equal(etl_arena_alloc(&a, 32), first);
    etl_arena_reset(&a);
    etl_arena_reset(&a);
    assert_ptr_equal(etl_arena_alloc(&a, 1), first);
    etl_arena_free(&a);
}

static void test_arena_free_empties_and_allows_reuse(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    etl_arena_reset(&a); /* on an empty arena: nothing to do */
    assert_null(a.head);
    assert_non_null(etl_arena_alloc(&a, 100));
    etl_arena_free(&a);
    assert_null(a.head);
    assert_int_equal(a.used, 0);
    etl_arena_free(&a);
    char *p = etl_arena_dup(&a, "again", 5);
    assert_string_equal(p, "again");
    etl_arena_free(&a);
}

static void test_arena_value_copies_string_types_only(void **state)
{
    (void)state;
    etl_arena_t a = {0};
    char src[] = "0.10";
    const etl_type_t str_types[] = {ETL_T_NUMERIC, ETL_T_TEXT, ETL_T_BLOB, ETL_T_JSON};
    for (size_t i = 0; i < ETL_ARRAY_LEN(str_types); i++) {
        etl_value_t v = etl_str(str_types[i], src, 4), d;
        assert_int_equal(etl_arena_value(&a, &d, &v), 0);
        assert_int_equal(d.type, str_types[i]);
        assert_int_equal(d.len, 4);
        assert_ptr_not_equal(d.v.s, src);
        assert_memory_equal(d.v.s, "0.10", 4);
    }
    /* in place */
    etl_value_t v = etl_text(src, 4);
    assert_int_equal(etl_arena_value(&a, &v, &v), 0);
    src[0] = 'X';
    assert_memory_equal(v.v.s, "0.10", 4);
    /* a NULL pointer with no bytes becomes "" */
    etl_value_t empty = etl_text(NULL, 0), d;
    assert_int_equal(etl_arena_value(&a, &d, &empty), 0);
    assert_non_null(d.v.s);
    assert_int_equal(d.len, 0);
    /* scalars are copied as they are */
    const etl_value_t scalars[] = {etl_null(), etl_bool(1), etl_int(-5), etl_double(2.5),
                                   etl_ts(123)};
    for (size_t i = 0; i < ETL_ARRAY_LEN(scalars); i++) {
        assert_int_equal(etl_arena_value(&a, &d, &scalars[i]), 0);
        assert_memory_equal(&d, &scalars[i], sizeof d);
    }
    etl_arena_free(&a);
}

/* ------------------------------------------------------------ batch */

static void test_batch_new_defaults(void **state)
{
    (void)state;
    etl_batch_t *b = etl_batch_new(0, 0);
    assert_non_null(b);
    assert_int_equal(b->ncols, 1);
    assert_int_equal(b->cap, 16);
    assert_int_equal(b->nrows, 0);
    assert_int_equal(b->status, ETL_OK);
    assert_null(b->error);
    etl_batch_free(b);
    etl_batch_free(NULL);
}

static void test_batch_rows_grow_and_keep_values(void **state)
{
    (void)state;
    etl_batch_t *b = etl_batch_new(3, 2);
    assert_non_null(b);
    for (int i = 0; i < 1000; i++) {
        etl_value_t *r = etl_batch_row(b, i % 3 == 0 ? ETL_OP_DELETE : ETL_OP_UPSERT);
        assert_non_null(r);
        for (int c = 0; c < 3; c++)
            assert_int_equal(r[c].type, ETL_T_NULL); /* a fresh row is all NULL */
        char txt[32];
        int n = snprintf(txt, sizeof txt, "row-%d", i);
        r[0] = etl_int(i);
        r[1] = etl_text(etl_arena_dup(&b->arena, txt, (size_t)n), (size_t)n);
    }
    assert_int_equal(b->nrows, 1000);
    assert_true(b->cap >= 1000);
    for (int i = 0; i < 1000; i++) {
        const etl_value_t *r = b->values + (size_t)i * b->ncols;
        char txt[32];
        int n = snprintf(txt, sizeof txt, "row-%d", i);
        assert_int_equal(r[0].v.i, i);
        assert_int_equal(r[1].len, n);
        assert_memory_equal(r[1].v.s, txt, (size_t)n);
        assert_int_equal(r[2].type, ETL_T_NULL);
        assert_int_equal(b->op[i], i % 3 == 0 ? ETL_OP_DELETE : ETL_OP_UPSERT);
    }
    etl_batch_free(b);
}

static void test_batch_reset_clears_everything(void **state)
{
    (void)state;
    etl_batch_t *b = etl_batch_new(2, 4);
    etl_batch_row(b, ETL_OP_UPSERT);
    b->read = 10;
    b->has_ckpt = 1;
    b->end = 1;
    b->status = ETL_ERR_IO;
    b->error = etl_strdup("boom");
    assert_int_equal(etl_batch_reject(b, "k", "bad", NULL), 0);
    etl_batch_reset(b);
    assert_int_equal(b->nrows, 0);
    assert_int_equal(b->read, 0);
    assert_int_equal(b->has_ckpt, 0);
    assert_int_equal(b->nrejects, 0);
    assert_int_equal(b->end, 0);
    assert_int_equal(b->status, ETL_OK);
    assert_null(b->error);
    assert_int_equal(b->arena.used, 0);
    /* usable again */
    etl_value_t *r = etl_batch_row(b, ETL_OP_UPSERT);
    assert_non_null(r);
    assert_int_equal(b->nrows, 1);
    etl_batch_free(b);
}

static void test_batch_rejects_are_copied_and_grow(void **state)
{
    (void)state;
    etl_batch_t *b = etl_batch_new(1, 1);
    char key[16], err[32], rec[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(err, sizeof err, "lua error %d", i);
        snprintf(rec, sizeof rec, "{\"id\":%d}", i);
        assert_int_equal(etl_batch_reject(b, i % 5 ? key : NULL, err, i % 7 ? rec : NULL), 0);
    }
    memset(key, 0, sizeof key);
    memset(err, 0, sizeof err);
    memset(rec, 0, sizeof rec);
    assert_int_equal(b->nrejects, 50);
    for (int i = 0; i < 50; i++) {
        char want[32];
        const etl_reject_t *r = &b->rejects[i];
        if (i % 5) {
            snprintf(want, sizeof want, "k%d", i);
            assert_string_equal(r->key, want);
        } else {
            assert_null(r->key);
        }
        snprintf(want, sizeof want, "lua error %d", i);
        assert_string_equal(r->error, want);
        if (i % 7) {
            snprintf(want, sizeof want, "{\"id\":%d}", i);
            assert_string_equal(r->record, want);
        } else {
            assert_null(r->record);
        }
    }
    etl_batch_free(b);
}

/* ------------------------------------------------------------ queue */

static void test_queue_is_fifo(void **state)
{
    (void)state;
    etl_queue_t *q = etl_queue_new(4, 2, 8);
    assert_non_null(q);
    etl_batch_t *b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = etl_queue_get(q);
        assert_non_null(b[i]);
        b[i]->read = i;
        assert_int_equal(etl_queue_push(q, b[i]), 0);
    }
    for (int round = 0; round < 3; round++) {
        /* wrap the ring around a few times */
        for (int i = 0; i < 3; i++) {
            etl_batch_t *got = etl_queue_pop(q);
            assert_ptr_equal(got, b[i]);
            assert_int_equal(got->read, i);
            assert_int_equal(etl_queue_push(q, got), 0);
        }
    }
    etl_queue_free(q); /* frees the batches still queued */
}

typedef struct producer {
    etl_queue_t *q;
    int n;
    atomic_int pushed;
    atomic_int failed;
} producer_t;

static void *produce(void *arg)
{
    producer_t *p = arg;
    for (int i = 0; i < p->n; i++) {
        etl_batch_t *b = etl_queue_get(p->q);
        b->read = i;
        if (etl_queue_push(p->q, b) != 0) {
            etl_batch_free(b);
            atomic_fetch_add(&p->failed, 1);
            break;
        }
        atomic_fetch_add(&p->pushed, 1);
    }
    return NULL;
}

static void test_queue_producer_blocks_when_full(void **state)
{
    (void)state;
    etl_queue_t *q = etl_queue_new(2, 1, 4);
    producer_t p = {q, 5, 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    assert_int_equal(wait_for(&p.pushed, 2), 2);
    sleep_ms(150);
    assert_int_equal(atomic_load(&p.pushed), 2); /* still blocked on the third */
    for (int i = 0; i < 5; i++) {
        etl_batch_t *b = etl_queue_pop(q);
        assert_non_null(b);
        assert_int_equal(b->read, i);
        etl_queue_put(q, b);
        if (i < 3)
            assert_int_equal(wait_for(&p.pushed, i + 3), i + 3);
    }
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&p.pushed), 5);
    assert_int_equal(atomic_load(&p.failed), 0);
    etl_queue_free(q);
}

static void test_queue_abort_wakes_blocked_producer(void **state)
{
    (void)state;
    etl_queue_t *q = etl_queue_new(1, 1, 4);
    producer_t p = {q, 3, 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
    assert_int_equal(wait_for(&p.pushed, 1), 1);
    sleep_ms(50);
    etl_queue_abort(q);
    assert_int_equal(wait_for(&p.failed, 1), 1);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&p.pushed), 1);
    /* pushes fail from now on, without blocking */
    etl_batch_t *b = etl_queue_get(q);
    assert_int_equal(etl_queue_push(q, b), -1);
    etl_batch_free(b);
    /* what was queued before the abort can still be taken, then NULL */
    etl_batch_t *left = etl_queue_pop(q);
    assert_non_null(left);
    assert_int_equal(left->read, 0);
    etl_batch_free(left);
    assert_null(etl_queue_pop(q));
    etl_queue_free(q);
}

typedef struct consumer {
    etl_queue_t *q;
    atomic_int done;
    etl_batch_t *got;
} consumer_t;

static void *consume(void *arg)
{
    consumer_t *c = arg;
    c->got = etl_queue_pop(c->q);
    atomic_store(&c->done, 1);
    return NULL;
}

static void test_queue_abort_wakes_blocked_consumer(void **state)
{
    (void)state;
    etl_queue_t *q = etl_queue_new(2, 1, 4);
    consumer_t c = {q, 0, (etl_batch_t *)&c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, consume, &c), 0);
    sleep_ms(100);
    assert_int_equal(atomic_load(&c.done), 0); /* blocked on the empty queue */
    etl_queue_abort(q);
    assert_int_equal(wait_for(&c.done, 1), 1);
    pthread_join(t, NULL);
    assert_null(c.got);
    etl_queue_free(q);
}

static void test_queue_consumer_wakes_on_push(void **state)
{
    (void)state;
    etl_queue_t *q = etl_queue_new(2, 1, 4);
    consumer_t c = {q, 0, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, consume, &c), 0);
    sleep_ms(50);
    etl_batch_t *b = etl_queue_get(q);
    assert_int_equal(etl_queue_push(q, b), 0);
    assert_int_equal(wait_for(&c.done, 1), 1);
    pthread_join(t, NULL);
    assert_ptr_equal(c.got, b);
    etl_batch_free(b);
    etl_queue_free(q);
}

static void test_queue_pool_reuses_reset_batches(void **state)
{
    (void)state;
    etl_queue_t *q = etl_queue_new(2, 3, 7);
    etl_batch_t *b = etl_queue_get(q);
    assert_non_null(b);
    assert_int_equal(b->ncols, 3);
    assert_int_equal(b->cap, 7);
    etl_value_t *r = etl_batch_row(b, ETL_OP_UPSERT);
    r[0] = etl_int(1);
    b->end = 1;
    b->error = etl_strdup("old error");
    etl_queue_put(q, b);
    etl_batch_t *again = etl_queue_get(q);
    assert_ptr_equal(again, b);
    assert_int_equal(again->nrows, 0);
    assert_int_equal(again->end, 0);
    assert_null(again->error);
    /* the pool is empty now: a new batch */
    etl_batch_t *other = etl_queue_get(q);
    assert_non_null(other);
    assert_ptr_not_equal(other, b);
    /* more batches returned than the pool holds: the extra are freed */
    etl_batch_t *many[10];
    for (int i = 0; i < 10; i++)
        many[i] = etl_batch_new(3, 7);
    for (int i = 0; i < 10; i++)
        etl_queue_put(q, many[i]);
    etl_queue_put(q, NULL);
    etl_queue_put(q, again);
    etl_queue_put(q, other);
    etl_queue_free(q);
}

/* ------------------------------------------------------------ spool */

typedef struct collect {
    size_t ncols;
    size_t nrows;
    int stop_at; /* return non-zero on this row, -1: never */
    etl_value_t *rows; /* copied */
    etl_arena_t arena;
} collect_t;

static int collect_cb(void *arg, const etl_value_t *row)
{
    collect_t *c = arg;
    if ((int)c->nrows == c->stop_at)
        return 42;
    c->rows = realloc(c->rows, (c->nrows + 1) * c->ncols * sizeof *c->rows);
    for (size_t i = 0; i < c->ncols; i++)
        etl_arena_value(&c->arena, &c->rows[c->nrows * c->ncols + i], &row[i]);
    c->nrows++;
    return 0;
}

static void collect_free(collect_t *c)
{
    free(c->rows);
    etl_arena_free(&c->arena);
}

static void assert_same_value(const etl_value_t *a, const etl_value_t *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case ETL_T_NULL:
        break;
    case ETL_T_DOUBLE:
        assert_memory_equal(&a->v.d, &b->v.d, sizeof(double));
        break;
    case ETL_T_BOOL:
    case ETL_T_INT:
    case ETL_T_TIMESTAMP:
        assert_int_equal(a->v.i, b->v.i);
        break;
    default:
        assert_int_equal(a->len, b->len);
        if (a->len)
            assert_memory_equal(a->v.s, b->v.s, a->len);
    }
}

static void test_spool_round_trips_every_type(void **state)
{
    (void)state;
    unsigned char blob[256];
    for (int i = 0; i < 256; i++)
        blob[i] = (unsigned char)i;
    const etl_value_t row[] = {
        etl_null(),
        etl_bool(1),
        etl_int(INT64_MIN),
        etl_double(-0.1),
        etl_str(ETL_T_NUMERIC, "0.10", 4),
        etl_text("t\0xt", 4),
        etl_str(ETL_T_BLOB, (const char *)blob, sizeof blob),
        etl_str(ETL_T_JSON, "{\"a\":1}", 7),
        etl_ts(-1),
        etl_text("", 0),
    };
    const size_t nc = ETL_ARRAY_LEN(row);
    etl_spool_t *sp = etl_spool_new();
    assert_non_null(sp);
    assert_int_equal(etl_spool_add(sp, row, nc), 0);
    assert_int_equal(etl_spool_add(sp, row, nc), 0);
    assert_int_equal(etl_spool_count(sp), 2);
    collect_t c = {nc, 0, -1, NULL, {0}};
    assert_int_equal(etl_spool_drain(sp, nc, collect_cb, &c), 0);
    assert_int_equal(c.nrows, 2);
    for (size_t r = 0; r < 2; r++)
        for (size_t i = 0; i < nc; i++)
            assert_same_value(&row[i], &c.rows[r * nc + i]);
    /* drained: empty, and usable again */
    assert_int_equal(etl_spool_count(sp), 0);
    collect_free(&c);
    collect_t c2 = {nc, 0, -1, NULL, {0}};
    assert_int_equal(etl_spool_drain(sp, nc, collect_cb, &c2), 0);
    assert_int_equal(c2.nrows, 0);
    assert_int_equal(etl_spool_add(sp, row, nc), 0);
    assert_int_equal(etl_spool_count(sp), 1);
    assert_int_equal(etl_spool_drain(sp, nc, collect_cb, &c2), 0);
    assert_int_equal(c2.nrows, 1);
    assert_same_value(&row[6], &c2.rows[6]);
    collect_free(&c2);
    etl_spool_free(sp);
}

static void test_spool_thousands_of_rows_in_order(void **state)
{
    (void)state;
    enum { N = 20000 };
    etl_spool_t *sp = etl_spool_new();
    char buf[600];
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)(i * 13) % sizeof buf;
        memset(buf, 'a' + i % 26, len);
        etl_value_t row[3] = {etl_int(i), etl_text(buf, len),
                              i % 2 ? etl_null() : etl_double(i / 4.0)};
        assert_int_equal(etl_spool_add(sp, row, 3), 0);
    }
    assert_int_equal(etl_spool_count(sp), N);
    collect_t c = {3, 0, -1, NULL, {0}};
    assert_int_equal(etl_spool_drain(sp, 3, collect_cb, &c), 0);
    assert_int_equal(c.nrows, N);
    for (int i = 0; i < N; i++) {
        const etl_value_t *r = &c.rows[(size_t)i * 3];
        size_t len = (size_t)(i * 13) % sizeof buf;
        assert_int_equal(r[0].v.i, i);
        assert_int_equal(r[1].len, len);
        for (size_t k = 0; k < len; k++)
            if (r[1].v.s[k] != 'a' + i % 26)
                fail_msg("row %d byte %zu", i, k);
        if (i % 2)
            assert_int_equal(r[2].type, ETL_T_NULL);
        else
            assert_true(r[2].v.d == i / 4.0);
    }
    assert_int_equal(etl_spool_count(sp), 0);
    collect_free(&c);
    etl_spool_free(sp);
}

static void test_spool_empty(void **state)
{
    (void)state;
    etl_spool_t *sp = etl_spool_new();
    assert_int_equal(etl_spool_count(sp), 0);
    collect_t c = {1, 0, -1, NULL, {0}};
    assert_int_equal(etl_spool_drain(sp, 1, collect_cb, &c), 0);
    assert_int_equal(c.nrows, 0);
    etl_spool_free(sp);
    /* no spool at all */
    assert_int_equal(etl_spool_count(NULL), 0);
    assert_int_equal(etl_spool_drain(NULL, 1, collect_cb, &c), 0);
    etl_spool_free(NULL);
    collect_free(&c);
}

static void test_spool_callback_error_stops_and_empties(void **state)
{
    (void)state;
    etl_spool_t *sp = etl_spool_new();
    for (int i = 0; i < 10; i++) {
        etl_value_t row[1] = {etl_int(i)};
        etl_spool_add(sp, row, 1);
    }
    collect_t c = {1, 0, 3, NULL, {0}};
    assert_int_equal(etl_spool_drain(sp, 1, collect_cb, &c), 42);
    assert_int_equal(c.nrows, 3);
    assert_int_equal(etl_spool_count(sp), 0);
    collect_free(&c);
    etl_spool_free(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alloc_is_aligned_and_disjoint),
        cmocka_unit_test(test_arena_big_allocation_gets_its_own_chunk),
        cmocka_unit_test(test_arena_dup_copies_and_terminates),
        cmocka_unit_test(test_arena_reset_reuses_first_chunk),
        cmocka_unit_test(test_arena_free_empties_and_allows_reuse),
        cmocka_unit_test(test_arena_value_copies_string_types_only),
        cmocka_unit_test(test_batch_new_defaults),
        cmocka_unit_test(test_batch_rows_grow_and_keep_values),
        cmocka_unit_test(test_batch_reset_clears_everything),
        cmocka_unit_test(test_batch_rejects_are_copied_and_grow),
        cmocka_unit_test(test_queue_is_fifo),
        cmocka_unit_test(test_queue_producer_blocks_when_full),
        cmocka_unit_test(test_queue_abort_wakes_blocked_producer),
        cmocka_unit_test(test_queue_abort_wakes_blocked_consumer),
        cmocka_unit_test(test_queue_consumer_wakes_on_push),
        cmocka_unit_test(test_queue_pool_reuses_reset_batches),
        cmocka_unit_test(test_spool_round_trips_every_type),
        cmocka_unit_test(test_spool_thousands_of_rows_in_order),
        cmocka_unit_test(test_spool_empty),
        cmocka_unit_test(test_spool_callback_error_stops_and_empties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
