/* test_ckey.c - content keys of keyless append streams (core/ckey.h): ranks
 * among identical rows of one cursor value, starting over at the next. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ckey.h"

static const char *key(etl_ckey_t *c, etl_buf_t *b, uint64_t hash, const char *cursor)
{
    etl_buf_reset(b);
    assert_int_equal(etl_ckey_next(c, hash, cursor, strlen(cursor), b), 0);
    return b->data;
}

static void test_identical_rows_are_ranked(void **state)
{
    (void)state;
    etl_ckey_t c;
    etl_buf_t b;
    etl_ckey_init(&c);
    etl_buf_init(&b);
    assert_string_equal(key(&c, &b, 0xabc, "t1"), "=0000000000000abc:1");
    assert_string_equal(key(&c, &b, 0xdef, "t1"), "=0000000000000def:1");
    assert_string_equal(key(&c, &b, 0xabc, "t1"), "=0000000000000abc:2");
    /* the next cursor value starts over; the same cursor read again later
     * (the next run's overlap) gives the same keys again */
    assert_string_equal(key(&c, &b, 0xabc, "t2"), "=0000000000000abc:1");
    assert_string_equal(key(&c, &b, 0xabc, "t1"), "=0000000000000abc:1");
    assert_string_equal(key(&c, &b, 0xabc, "t1"), "=0000000000000abc:2");
    /* an empty cursor text is a value like any other */
    assert_string_equal(key(&c, &b, 0xabc, ""), "=0000000000000abc:1");
    etl_buf_free(&b);
    etl_ckey_free(&c);
}

static void test_many_rows_of_one_cursor_value(void **state)
{
    (void)state;
    etl_ckey_t c;
    etl_buf_t b;
    etl_ckey_init(&c);
    etl_buf_init(&b);
    /* past several growths: every hash keeps its own rank */
    for (int round = 1; round <= 3; round++) {
        for (uint64_t h = 2; h < 5000; h++) {
            char want[40];
            snprintf(want, sizeof want, "=%016llx:%d", (unsigned long long)(h * 0x9e3779b97f4a7c15ULL),
                     round);
            assert_string_equal(key(&c, &b, h * 0x9e3779b97f4a7c15ULL, "same"), want);
        }
    }
    /* and a new cursor value forgets them all */
    assert_string_equal(key(&c, &b, 2 * 0x9e3779b97f4a7c15ULL, "next"),
                        "=3c6ef372fe94f82a:1");
    etl_buf_free(&b);
    etl_ckey_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_rows_are_ranked),
        cmocka_unit_test(test_many_rows_of_one_cursor_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
