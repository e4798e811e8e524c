/* test_log.c - redaction of secrets, run log files and their retention
 * (core/log.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include "log.h"
#include "util.h"

static int clear_secrets(void **state)
{
    (void)state;
    etl_redact_clear();
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_TEXT, 0);
    return 0;
}

/* etl_redact_dup(in) must equal want. */
static void redacts_to(const char *in, const char *want)
{
    char *got = etl_redact_dup(in);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        print_error("redact '%s'\n  want '%s'\n  got  '%s'\n", in, want, got);
    assert_string_equal(got, want);
    free(got);
}

/* ------------------------------------------------------------ redaction */

static void test_redact_registered_secret_everywhere(void **state)
{
    (void)state;
    etl_redact_add("s3cr3t-token");
    redacts_to("Authorization: Bearer s3cr3t-token", "Authorization: Bearer ***");
    redacts_to("s3cr3t-token at the start, s3cr3t-token twice, and at the end s3cr3t-token",
               "*** at the start, *** twice, and at the end ***");
    redacts_to("s3cr3t-tokens3cr3t-token", "******");
    redacts_to("{\"token\":\"s3cr3t-token\"}", "{\"token\":\"***\"}");
    redacts_to("s3cr3t-toke", "s3cr3t-toke"); /* a prefix is not the secret */
    etl_redact_add("other-secret");
    redacts_to("a=s3cr3t-token b=other-secret", "a=*** b=***");
}

static void test_redact_reads_only_n_bytes(void **state)
{
    (void)state;
    etl_redact_add("hunter22");
    etl_buf_t b;
    etl_buf_init(&b);
    etl_redact("x hunter22 y", 6, &b); /* the secret is cut off: nothing to hide */
    assert_string_equal(b.data, "x hunt");
    etl_buf_reset(&b);
    etl_redact("x hunter22\0hunter22", 19, &b);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "x ***\0***", 9);
    etl_buf_free(&b);
}

static void test_redact_url_password(void **state)
{
    (void)state;
    redacts_to("postgres://user:pw@host/db", "postgres://user:***@host/db");
    redacts_to("connect postgres://etl:hunter2@db.local:5432/pos failed",
               "connect postgres://etl:***@db.local:5432/pos failed");
    redacts_to("https://u:p%40ss@api.example.com/x?y=1", "https://u:***@api.example.com/x?y=1");
    redacts_to("a postgresql://a:1@h/d and mysql://b:2@h/d",
               "a postgresql://a:***@h/d and mysql://b:***@h/d");
    redacts_to("'postgres://user:pw@host/db'", "'postgres://user:***@host/db'");
}

static void test_redact_conninfo_password(void **state)
{
    (void)state;
    redacts_to("host=db user=etl password=xyz dbname=pos",
               "host=db user=etl password=*** dbname=pos");
    redacts_to("password=xyz", "password=***");
    redacts_to("PASSWORD=Xyz1 port=5432", "PASSWORD=*** port=5432");
    redacts_to("GET /login?user=a&password=zz&next=1", "GET /login?user=a&password=***&next=1");
    redacts_to("dsn \"host=h password=pw\"", "dsn \"host=h password=***\"");
    /* libpq allows spaces around '=' and quoted values; keys may carry a prefix */
    redacts_to("host=db password = s3cr3t user=x", "host=db password = *** user=x");
    redacts_to("host=db password='s3cr3t pw' user=x", "host=db password='***' user=x");
    redacts_to("db_password=hunter22", "db_password=***");
    redacts_to("{\"password\":\"hunter22\"}", "{\"password\":\"***\"}");
    /* a value after '= ' is still a password: better hidden than leaked */
    redacts_to("password= (empty)", "password= ***");
}

static void test_redact_leaves_ordinary_text_alone(void **state)
{
    (void)state;
    static const char *const same[] = {
        "",
        "plain words",
        "the password is not shown here",
        "passwords are long",
        "at 10:00:00 the run started",
        "user:name@host without a scheme",
        "http://host:8080/path",
        "http://host:8080/a@b",
        "postgres://user@host/db",
        "sqlite:/var/etl/pos.db",
        "key a\\:b:c",
        "pass word=x",
    };
    for (size_t i = 0; i < ETL_ARRAY_LEN(same); i++)
        redacts_to(same[i], same[i]);
}

static void test_redact_short_secrets_not_registered(void **state)
{
    (void)state;
    etl_redact_add("abc");
    etl_redact_add("");
    etl_redact_add(NULL);
    redacts_to("abc abcd", "abc abcd");
    etl_redact_add("abcd");
    redacts_to("abc abcd", "abc ***");
}

static void test_redact_clear_forgets_secrets(void **state)
{
    (void)state;
    etl_redact_add("forget-me");
    redacts_to("x forget-me", "x ***");
    etl_redact_clear();
    redacts_to("x forget-me", "x forget-me");
    char *empty = etl_redact_dup(NULL);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);
}

static void *redact_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char secret[32], text[96], want[96];
    snprintf(secret, sizeof secret, "thread-secret-%d", id);
    for (int i = 0; i < 200; i++) {
        etl_redact_add(secret);
        snprintf(text, sizeof text, "%d: %s and shared-secret", i, secret);
        snprintf(want, sizeof want, "%d: *** and ***", i);
        char *got = etl_redact_dup(text);
        if (!got || strcmp(got, want) != 0) {
            free(got);
            return (void *)1;
        }
        free(got);
    }
    return NULL;
}

static void test_redact_is_thread_safe(void **state)
{
    (void)state;
    etl_redact_add("shared-secret");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, redact_worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    redacts_to("thread-secret-0 thread-secret-3", "*** ***");
}

/* ------------------------------------------------------------ log files */

typedef struct tmpdir {
    char path[64];
} tmpdir_t;

static void tmp_make(tmpdir_t *t)
{
    strcpy(t->path, "/tmp/etl-test-log-XXXXXX");
    assert_non_null(mkdtemp(t->path));
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char *p = etl_path_join(path, e->d_name);
            rm_rf(p);
            free(p);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    etl_buf_t b;
    etl_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        etl_buf_add(&b, chunk, n);
    fclose(f);
    return etl_buf_take(&b);
}

static int exists(const char *dir, const char *name)
{
    char *p = etl_path_join(dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

/* Creates dir/name with mtime age_days ago. */
static void touch_old(const char *dir, const char *name, int age_days)
{
    char *p = etl_path_join(dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("old\n", f);
    fclose(f);
    struct utimbuf ut;
    ut.actime = ut.modtime = time(NULL) - (time_t)age_days * 86400;
    assert_int_equal(utime(p, &ut), 0);
    free(p);
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static void test_logger_file_name_pattern(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    char *dir = etl_path_join(t.path, "nested/logs"); /* created on demand */
    char err[256] = "";
    time_t before = time(NULL);
    etl_logger_t *lg = etl_logger_new("pos", dir, 17, 0, err, sizeof err);
    time_t after = time(NULL);
    assert_non_null(lg);
    assert_string_equal(err, "");
    const char *path = etl_logger_path(lg);
    assert_non_null(path);
    /* <dir>/pos-YYYYMMDDTHHMMSSZ-17.log */
    size_t dl = strlen(dir);
    assert_memory_equal(path, dir, dl);
    const char *base = path + dl;
    assert_int_equal(strlen(base), strlen("/pos-20240501T100000Z-17.log"));
    assert_memory_equal(base, "/pos-", 5);
    assert_true(is_digits(base + 5, 8));
    assert_int_equal(base[13], 'T');
    assert_true(is_digits(base + 14, 6));
    assert_string_equal(base + 20, "Z-17.log");
    /* the stamp is the UTC time of opening */
    struct tm tm = {0};
    assert_non_null(strptime(base + 5, "%Y%m%dT%H%M%SZ", &tm));
    time_t stamp = timegm(&tm);
    assert_true(stamp >= before && stamp <= after);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    etl_logger_free(lg);
    free(dir);
    rm_rf(t.path);
}

static void test_logger_client_and_run_id_in_name(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    char err[256] = "";
    etl_logger_t *lg = etl_logger_new("shop-acme", t.path, 123456789012, 0, err, sizeof err);
    assert_non_null(lg);
    const char *base = strrchr(etl_logger_path(lg), '/') + 1;
    assert_memory_equal(base, "shop-acme-", 10);
    assert_string_equal(base + strlen(base) - strlen("-123456789012.log"), "-123456789012.log");
    etl_logger_free(lg);
    rm_rf(t.path);
}

static void test_logger_writes_redacted_lines(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    char err[256] = "";
    etl_redact_add("tok-123456");
    etl_logger_t *lg = etl_logger_new("pos", t.path, 1, 0, err, sizeof err);
    assert_non_null(lg);
    etl_logf(lg, ETL_LOG_INFO, "run", "orders", "token %s via %s", "tok-123456",
             "postgres://etl:pw1@db/pos");
    etl_logf(lg, ETL_LOG_WARN, "pgsqlite", NULL, "conn host=h password=hunter2\n");
    etl_logf(lg, ETL_LOG_DEBUG, "run", NULL, "debug lines stay out at this level");
    char *text = slurp(etl_logger_path(lg));
    assert_non_null(text);
    assert_null(strstr(text, "tok-123456"));
    assert_null(strstr(text, "pw1"));
    assert_null(strstr(text, "hunter2"));
    assert_null(strstr(text, "debug lines"));
    char *l1 = strstr(text, "info  [run/orders] token *** via postgres://etl:***@db/pos\n");
    char *l2 = strstr(text, "warn  [pgsqlite] conn host=h password=***\n");
    assert_non_null(l1);
    assert_non_null(l2);
    assert_true(l1 < l2);
    /* exactly two lines, each starting with an ISO time in milliseconds */
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    assert_int_equal(text[4], '-');
    assert_int_equal(text[10], 'T');
    assert_int_equal(text[19], '.');
    assert_int_equal(text[23], 'Z');
    free(text);
    etl_logger_free(lg);
    rm_rf(t.path);
}

static void test_logger_json_lines(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    char err[256] = "";
    etl_redact_add("json-secret");
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_JSON, 0);
    etl_logger_t *lg = etl_logger_new("pos", t.path, 2, 0, err, sizeof err);
    assert_non_null(lg);
    etl_logf(lg, ETL_LOG_INFO, "run", "orders", "said \"json-secret\"\tok");
    char *text = slurp(etl_logger_path(lg));
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_TEXT, 0);
    assert_non_null(text);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("not JSON: %s (%s)", text, je.text);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "pipeline")), "pos");
    assert_string_equal(json_string_value(json_object_get(j, "scope")), "run");
    assert_string_equal(json_string_value(json_object_get(j, "stream")), "orders");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "said \"***\"\tok");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "time"))), 24);
    json_decref(j);
    free(text);
    etl_logger_free(lg);
    rm_rf(t.path);
}

static void test_log_stderr_is_redacted_too(void **state)
{
    (void)state;
    etl_redact_add("stderr-secret");
    char path[] = "/tmp/etl-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    etl_logf(NULL, ETL_LOG_ERROR, "run", NULL, "failed with stderr-secret");
    etl_logf(NULL, ETL_LOG_INFO, "run", NULL, "below the level: not shown");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *text = slurp(path);
    unlink(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "error [run] failed with ***\n"));
    assert_null(strstr(text, "stderr-secret"));
    assert_null(strstr(text, "below the level"));
    free(text);
}

static void test_logger_prunes_old_files_of_its_pipeline(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    touch_old(t.path, "pos-20200101T000000Z-1.log", 60);  /* old, ours: goes */
    touch_old(t.path, "pos-20200102T000000Z-2.log", 31);  /* old, ours: goes */
    touch_old(t.path, "pos-20240101T000000Z-3.log", 29);  /* recent: stays */
    touch_old(t.path, "pos-20240101T000000Z-4.log", 0);   /* new: stays */
    touch_old(t.path, "other-20200101T000000Z-5.log", 60); /* another pipeline */
    touch_old(t.path, "posx-20200101T000000Z-6.log", 60);  /* another pipeline */
    touch_old(t.path, "pos.log", 60);                      /* not a run log */
    touch_old(t.path, "pos-notes.txt", 60);                /* not a log */
    char err[256] = "";
    etl_logger_t *lg = etl_logger_new("pos", t.path, 7, 30 * 86400, err, sizeof err);
    assert_non_null(lg);
    assert_false(exists(t.path, "pos-20200101T000000Z-1.log"));
    assert_false(exists(t.path, "pos-20200102T000000Z-2.log"));
    assert_true(exists(t.path, "pos-20240101T000000Z-3.log"));
    assert_true(exists(t.path, "pos-20240101T000000Z-4.log"));
    assert_true(exists(t.path, "other-20200101T000000Z-5.log"));
    assert_true(exists(t.path, "posx-20200101T000000Z-6.log"));
    assert_true(exists(t.path, "pos.log"));
    assert_true(exists(t.path, "pos-notes.txt"));
    /* the new file is there */
    struct stat st;
    assert_int_equal(stat(etl_logger_path(lg), &st), 0);
    etl_logger_free(lg);
    rm_rf(t.path);
}

static void test_logger_keep_zero_prunes_nothing(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    touch_old(t.path, "pos-20000101T000000Z-1.log", 3650);
    char err[256] = "";
    etl_logger_t *lg = etl_logger_new("pos", t.path, 2, 0, err, sizeof err);
    assert_non_null(lg);
    assert_true(exists(t.path, "pos-20000101T000000Z-1.log"));
    etl_logger_free(lg);
    rm_rf(t.path);
}

static void test_logger_without_dir_has_no_file(void **state)
{
    (void)state;
    char err[64] = "";
    etl_logger_t *lg = etl_logger_new("pos", NULL, 1, 86400, err, sizeof err);
    assert_non_null(lg);
    assert_null(etl_logger_path(lg));
    assert_null(etl_logger_path(NULL));
    etl_logf(lg, ETL_LOG_DEBUG, "run", NULL, "goes nowhere");
    etl_logger_free(lg);
    etl_logger_free(NULL);
}

static void test_logger_unusable_dir_is_an_error(void **state)
{
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    touch_old(t.path, "afile", 0);
    char *dir = etl_path_join(t.path, "afile/logs");
    char err[512] = "";
    assert_null(etl_logger_new("pos", dir, 1, 0, err, sizeof err));
    assert_non_null(strstr(err, "cannot create log folder"));
    assert_non_null(strstr(err, dir));
    free(dir);
    /* the folder is a regular file */
    dir = etl_path_join(t.path, "afile");
    err[0] = '\0';
    assert_null(etl_logger_new("pos", dir, 1, 0, err, sizeof err));
    assert_non_null(strstr(err, dir));
    free(dir);
    rm_rf(t.path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_redact_registered_secret_everywhere, clear_secrets),
        cmocka_unit_test_setup(test_redact_reads_only_n_bytes, clear_secrets),
        cmocka_unit_test_setup(test_redact_url_password, clear_secrets),
        cmocka_unit_test_setup(test_redact_conninfo_password, clear_secrets),
        cmocka_unit_test_setup(test_redact_leaves_ordinary_text_alone, clear_secrets),
        cmocka_unit_test_setup(test_redact_short_secrets_not_registered, clear_secrets),
        cmocka_unit_test_setup(test_redact_clear_forgets_secrets, clear_secrets),
        cmocka_unit_test_setup(test_redact_is_thread_safe, clear_secrets),
        cmocka_unit_test_setup(test_logger_file_name_pattern, clear_secrets),
        cmocka_unit_test_setup(test_logger_client_and_run_id_in_name, clear_secrets),
        cmocka_unit_test_setup(test_logger_writes_redacted_lines, clear_secrets),
        cmocka_unit_test_setup(test_logger_json_lines, clear_secrets),
        cmocka_unit_test_setup(test_log_stderr_is_redacted_too, clear_secrets),
        cmocka_unit_test_setup(test_logger_prunes_old_files_of_its_pipeline, clear_secrets),
        cmocka_unit_test_setup(test_logger_keep_zero_prunes_nothing, clear_secrets),
        cmocka_unit_test_setup(test_logger_without_dir_has_no_file, clear_secrets),
        cmocka_unit_test_setup(test_logger_unusable_dir_is_an_error, clear_secrets),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    etl_redact_clear();
    return rc;
}
