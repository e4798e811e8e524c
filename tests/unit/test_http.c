/* test_http.c - the HTTP toolkit (etl/http.h) against tests/mock/httpbin.py:
 * connection reuse, retries (5xx, 429, Retry-After in seconds and as a date,
 * network errors, truncated bodies, timeouts), their caps, rate limiting,
 * pagination helpers, debug-log redaction, cancellation and TLS.
 *
 * One httpbin runs for the whole file (reset before each test); the TLS test
 * starts its own with a certificate made by `openssl req`. Control calls go
 * through a separate plain libcurl handle, never through the code under test. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctx.h"
#include "etl/http.h"
#include "http_internal.h"
#include "log.h"
#include "plugin.h"
#include "util.h"

#define HTTPBIN ETL_TEST_FIXTURES "/../mock/httpbin.py"

static char base[128];    /* http://127.0.0.1:PORT */
static char hostkey[128]; /* 127.0.0.1:PORT */
static pid_t server_pid;
static CURL *ctl_curl;

/* ------------------------------------------------------------ the server */

/* Starts httpbin with extra arguments; fills url with its base URL. */
static pid_t start_httpbin(char *url, size_t n, const char *a1, const char *a2, const char *a3,
                           const char *a4)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", HTTPBIN, "--port", "0", a1, a2, a3, a4, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[256] = "";
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    const char *p = strstr(line, "http");
    if (strncmp(line, "listening on ", 13) != 0 || !p)
        return -1;
    etl_strlcpy(url, p, n);
    url[strcspn(url, "\r\n")] = '\0';
    return pid;
}

static void stop_httpbin(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static size_t ctl_write(char *data, size_t size, size_t nmemb, void *arg)
{
    etl_buf_add(arg, data, size * nmemb);
    return size * nmemb;
}

/* A control call; returns the parsed JSON answer (caller decrefs). */
static json_t *ctl(const char *method, const char *path, const char *body)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", base, path);
    etl_buf_t b;
    etl_buf_init(&b);
    curl_easy_reset(ctl_curl);
    curl_easy_setopt(ctl_curl, CURLOPT_URL, url);
    curl_easy_setopt(ctl_curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(ctl_curl, CURLOPT_WRITEFUNCTION, ctl_write);
    curl_easy_setopt(ctl_curl, CURLOPT_WRITEDATA, &b);
    if (body)
        curl_easy_setopt(ctl_curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(ctl_curl);
    assert_int_equal(rc, CURLE_OK);
    etl_buf_add(&b, "", 0);
    json_error_t e;
    json_t *j = json_loads(b.data, 0, &e);
    if (!j)
        fail_msg("control %s %s: not JSON: %s", method, path, b.data);
    etl_buf_free(&b);
    return j;
}

static void behave(const char *fault_json)
{
    json_t *j = ctl("POST", "/__mock/behave", fault_json);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
}

/* The request log for a path prefix (caller decrefs the array's parent). */
static json_t *requests(const char *prefix)
{
    char path[256];
    snprintf(path, sizeof path, "/__mock/requests?path=%s", prefix);
    return ctl("GET", path, NULL);
}

static int count_requests(const char *prefix)
{
    json_t *j = requests(prefix);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_TEXT, 0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    server_pid = start_httpbin(base, sizeof base, NULL, NULL, NULL, NULL);
    if (server_pid <= 0)
        return -1;
    etl_strlcpy(hostkey, base + strlen("http://"), sizeof hostkey);
    ctl_curl = curl_easy_init();
    return ctl_curl ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_httpbin(server_pid);
    curl_easy_cleanup(ctl_curl);
    curl_global_cleanup();
    etl_redact_clear();
    return 0;
}

/* ------------------------------------------------------------ clients */

static const etl_option_def_t http_opts[] = {ETL_HTTP_OPTIONS, {NULL, 0, 0, NULL, 0, NULL, NULL}};
static const etl_plugin_t http_plugin = {ETL_ABI_VERSION, sizeof(etl_plugin_t), "httptest", "0",
                                         "test", http_opts, NULL, NULL};

typedef struct client {
    etl_options_t *opts;
    etl_ctx_t *ctx;
    etl_http_t *h;
    atomic_int cancel;
} client_t;

/* Binds the options (name, value pairs, NULL-terminated; base_url is the
 * server's unless given) and makes a context. */
static etl_status_t client_try(client_t *c, const char *const *kv)
{
    etl_opt_cfg_t oc[16];
    char *items[16];
    size_t n = 0;
    int has_base = 0;
    memset(c, 0, sizeof *c);
    memset(oc, 0, sizeof oc);
    for (size_t i = 0; kv && kv[i]; i += 2) {
        has_base |= strcmp(kv[i], "base_url") == 0;
        oc[n].name = (char *)kv[i];
        oc[n].value = (char *)kv[i + 1];
        n++;
    }
    if (!has_base) {
        oc[n].name = (char *)"base_url";
        oc[n].value = base;
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        items[i] = oc[i].value;
        oc[i].items = &items[i];
        oc[i].n_items = 1;
        oc[i].loc = (etl_loc_t){1, 1};
        oc[i].vloc = (etl_loc_t){1, 1};
    }
    etl_endpoint_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.plugin = (char *)"httptest";
    cfg.opts = oc;
    cfg.nopts = n;
    char err[512];
    if (etl_plugin_bind(&http_plugin, &cfg, "test.yaml", &c->opts, err, sizeof err) != 0)
        fail_msg("bind: %s", err);
    atomic_init(&c->cancel, 0);
    c->ctx = etl_ctx_new(&http_plugin, "source", c->opts, "/tmp", NULL, &c->cancel, NULL, "t");
    assert_non_null(c->ctx);
    c->h = etl_http_open(c->ctx);
    if (!c->h)
        return ETL_ERR_CONFIG;
    /* fast retries unless a test wants the real policy */
    etl_http_set_backoff(c->h, 10, 50);
    return ETL_OK;
}

static void client_open(client_t *c, const char *const *kv)
{
    if (client_try(c, kv) != ETL_OK)
        fail_msg("etl_http_open: %s", etl_ctx_error(c->ctx));
}

static void client_close(client_t *c)
{
    etl_http_close(c->h);
    etl_ctx_free(c->ctx);
    etl_options_free(c->opts);
}

static int reset_mock(void **state)
{
    (void)state;
    json_t *j = ctl("POST", "/__mock/reset", "{}");
    json_decref(j);
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_TEXT, 0);
    return 0;
}

static double secs_since(int64_t t0) { return (double)(etl_mono_us() - t0) / 1e6; }

/* stderr into a temporary file, for log assertions */
typedef struct capture {
    int saved;
    char path[64];
} capture_t;

static void capture_start(capture_t *c)
{
    fflush(stderr);
    strcpy(c->path, "/tmp/etl-test-http-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    c->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(capture_t *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    etl_buf_t b;
    etl_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        etl_buf_add(&b, chunk, n);
    etl_buf_add(&b, "", 0);
    fclose(f);
    unlink(c->path);
    return etl_buf_take(&b);
}

static json_t *body_json(const etl_http_response_t *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    if (!j)
        fail_msg("body is not JSON: %.*s", (int)r->body_len, r->body);
    return j;
}

/* ------------------------------------------------------------ connections */

static void test_connection_reused_for_many_requests(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    json_t *before = ctl("GET", "/__mock/httpbin/connections", NULL);
    long long opened0 = json_integer_value(json_object_get(before, "opened"));
    json_decref(before);
    etl_http_response_t r = {0};
    long long conn = -1;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(etl_http_get(c.h, "/anything/reuse", &r), ETL_OK);
        assert_int_equal(r.status, 200);
        json_t *j = body_json(&r);
        long long id = json_integer_value(json_object_get(j, "connection"));
        if (i == 0)
            conn = id;
        assert_int_equal(id, conn);
        if (i > 0)
            assert_true(r.connect_us == 0 || r.connect_us < 1000); /* no new connect */
        json_decref(j);
    }
    etl_http_response_free(&r);
    json_t *after = ctl("GET", "/__mock/httpbin/connections", NULL);
    long long opened1 = json_integer_value(json_object_get(after, "opened"));
    json_decref(after);
    assert_int_equal(opened1 - opened0, 1); /* eight requests, one connection */
    client_close(&c);
}

static void test_gzip_accepted_and_decoded(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/gzip", &r), ETL_OK);
    json_t *j = body_json(&r);
    assert_true(json_is_true(json_object_get(j, "gzipped")));
    json_decref(j);
    json_t *log = requests("/gzip");
    const char *ae = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(log, "requests"), 0), "headers"),
        "accept-encoding"));
    assert_non_null(ae);
    assert_non_null(strstr(ae, "gzip"));
    json_decref(log);
    etl_http_response_free(&r);
    client_close(&c);
}

/* ------------------------------------------------------------ retries */

static void test_retry_on_500_then_success(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    behave("{\"path\": \"/anything/flaky\", \"status\": 500, \"count\": 2}");
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/anything/flaky", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(count_requests("/anything/flaky"), 3);
    etl_http_response_free(&r);
    client_close(&c);
}

/* The retry counters for a host and status (0: network). */
typedef struct counted {
    const char *host;
    long status;
    uint64_t n;
} counted_t;

static void count_cb(void *arg, const char *host, long status, uint64_t n)
{
    counted_t *c = arg;
    if (strcmp(host, c->host) == 0 && status == c->status)
        c->n = n;
}

static void test_retry_logs_warning_and_counts(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    counted_t before = {hostkey, 502, 0};
    etl_http_retry_counts(count_cb, &before);
    behave("{\"path\": \"/anything/warn\", \"status\": 502}");
    etl_log_setup(ETL_LOG_WARN, ETL_LOGFMT_TEXT, 0);
    capture_t cap;
    capture_start(&cap);
    etl_http_response_t r = {0};
    etl_status_t st = etl_http_get(c.h, "/anything/warn?x=1", &r);
    char *text = capture_end(&cap);
    assert_int_equal(st, ETL_OK);
    assert_int_equal(r.attempts, 2);
    char want[256];
    snprintf(want, sizeof want, "GET %s/anything/warn?x=1: status 502 (attempt 1 of 6), retrying in ",
             base);
    if (!strstr(text, want))
        fail_msg("no warning line '%s' in:\n%s", want, text);
    assert_non_null(strstr(text, "warn "));
    free(text);
    counted_t after = {hostkey, 502, 0};
    etl_http_retry_counts(count_cb, &after);
    assert_int_equal(after.n, before.n + 1);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_503_retry_after_seconds_is_honoured(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    behave("{\"path\": \"/anything/ra\", \"status\": 503, \"retry_after\": \"2\"}");
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    assert_int_equal(etl_http_get(c.h, "/anything/ra", &r), ETL_OK);
    double took = secs_since(t0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    if (took < 2.0 || took >= 3.0)
        fail_msg("Retry-After: 2 took %.3fs", took);
    /* the server saw the two requests at least 2 s apart */
    json_t *log = requests("/anything/ra");
    json_t *reqs = json_object_get(log, "requests");
    double gap = json_real_value(json_object_get(json_array_get(reqs, 1), "time")) -
                 json_real_value(json_object_get(json_array_get(reqs, 0), "time"));
    assert_true(gap >= 2.0 && gap < 3.0);
    assert_true(r.wait_us >= 2000000);
    json_decref(log);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_503_retry_after_http_date_is_honoured(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    time_t at = time(NULL) + 3;
    struct tm tm;
    gmtime_r(&at, &tm);
    char date[64], fault[256];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(fault, sizeof fault,
             "{\"path\": \"/anything/date\", \"status\": 503, \"retry_after\": \"%s\"}", date);
    behave(fault);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    double asked = (double)at - (double)etl_now_us() / 1e6; /* between 2 and 3 s */
    assert_int_equal(etl_http_get(c.h, "/anything/date", &r), ETL_OK);
    double took = secs_since(t0);
    assert_int_equal(r.attempts, 2);
    if (took < asked - 0.05 || took >= asked + 1.0)
        fail_msg("Retry-After: %s (%.3fs away) took %.3fs", date, asked, took);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_429_retry_after_float_is_honoured(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    behave("{\"path\": \"/anything/429\", \"status\": 429, \"retry_after\": \"1.5\"}");
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    assert_int_equal(etl_http_get(c.h, "/anything/429", &r), ETL_OK);
    double took = secs_since(t0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    if (took < 1.5 || took >= 2.5)
        fail_msg("Retry-After: 1.5 took %.3fs", took);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_no_retry_on_4xx(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    static const long codes[] = {400, 401, 403, 404, 422};
    for (size_t i = 0; i < ETL_ARRAY_LEN(codes); i++) {
        char path[64];
        snprintf(path, sizeof path, "/status/%ld", codes[i]);
        etl_http_response_t r = {0};
        assert_int_equal(etl_http_get(c.h, path, &r), ETL_OK);
        assert_int_equal(r.status, codes[i]);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(count_requests(path), 1);
        /* the body comes back for the plugin to read */
        assert_non_null(strstr(r.body, "\"status\""));
        etl_status_t st = etl_http_check(c.h, &r);
        assert_int_equal(st, codes[i] == 401 || codes[i] == 403 ? ETL_ERR_AUTH : ETL_ERR_DATA);
        char want[512];
        snprintf(want, sizeof want, "GET %s%s: status %ld", base, path, codes[i]);
        if (!strstr(etl_ctx_error(c.ctx), want))
            fail_msg("'%s' lacks '%s'", etl_ctx_error(c.ctx), want);
        etl_http_response_free(&r);
    }
    client_close(&c);
}

static void test_retries_exhausted_error_names_request(void **state)
{
    (void)state;
    const char *const kv[] = {"max_retries", "2", NULL};
    client_t c;
    client_open(&c, kv);
    etl_http_response_t r = {0};
    etl_status_t st = etl_http_get(c.h, "/status/503?body=%7B%22errors%22%3A1%7D", &r);
    assert_int_equal(st, ETL_ERR_RETRY);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(count_requests("/status/503"), 3);
    const char *e = etl_ctx_error(c.ctx);
    char want[200];
    snprintf(want, sizeof want, "GET %s/status/503?body=", base);
    if (!strstr(e, want) || !strstr(e, "gave up after 3 attempts") ||
        !strstr(e, "max_retries 2 reached") || !strstr(e, "last status 503") ||
        !strstr(e, "{\"errors\":1}"))
        fail_msg("message: %s", e);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_no_retry_flag_means_one_attempt(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    etl_http_request_t rq = {0};
    rq.method = "POST";
    rq.url = "/status/500";
    rq.flags = ETL_HTTP_NO_RETRY;
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_ERR_RETRY);
    assert_int_equal(r.attempts, 1);
    assert_non_null(strstr(etl_ctx_error(c.ctx), "retries are off"));
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_total_retry_time_is_capped(void **state)
{
    (void)state;
    const char *const kv[] = {"max_retries", "1000", NULL};
    client_t c;
    client_open(&c, kv);
    etl_http_set_max_retry_time_ms(c.h, 1500);
    etl_http_set_backoff(c.h, 300, 300);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    etl_status_t st = etl_http_get(c.h, "/status/500", &r);
    double took = secs_since(t0);
    assert_int_equal(st, ETL_ERR_RETRY);
    assert_true(r.attempts > 2);
    if (took > 1.5 + 0.3)
        fail_msg("capped at 1.5s, took %.3fs", took);
    assert_non_null(strstr(etl_ctx_error(c.ctx), "max_retry_time"));

    /* a Retry-After beyond the cap fails at once instead of sleeping for nothing */
    t0 = etl_mono_us();
    st = etl_http_get(c.h, "/status/429?Retry-After=30", &r);
    took = secs_since(t0);
    assert_int_equal(st, ETL_ERR_RETRY);
    assert_int_equal(r.attempts, 1);
    assert_true(took < 0.5);
    if (!strstr(etl_ctx_error(c.ctx), "Retry-After 30.0s is beyond max_retry_time"))
        fail_msg("message: %s", etl_ctx_error(c.ctx));
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_truncated_body_is_retried(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    behave("{\"path\": \"/bytes\", \"truncate\": true}");
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/bytes/5000", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 5000);
    assert_int_equal(r.attempts, 2);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_truncated_body_that_persists_fails_clearly(void **state)
{
    (void)state;
    const char *const kv[] = {"max_retries", "2", NULL};
    client_t c;
    client_open(&c, kv);
    behave("{\"path\": \"/bytes\", \"truncate\": true, \"count\": 10}");
    etl_http_response_t r = {0};
    etl_status_t st = etl_http_get(c.h, "/bytes/5000", &r);
    assert_int_equal(st, ETL_ERR_IO);
    assert_int_equal(r.attempts, 3);
    const char *e = etl_ctx_error(c.ctx);
    char want[512];
    snprintf(want, sizeof want, "GET %s/bytes/5000: gave up after 3 attempts", base);
    if (!strstr(e, want) || !strstr(e, "network error") || !strstr(e, "bytes remaining"))
        fail_msg("message: %s", e);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_dropped_connection_is_retried(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    behave("{\"path\": \"/anything/drop\", \"drop\": true}");
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/anything/drop", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_slow_answer_times_out_and_is_retried(void **state)
{
    (void)state;
    const char *const kv[] = {"timeout", "1s", NULL};
    client_t c;
    client_open(&c, kv);
    behave("{\"path\": \"/anything/slow\", \"slow\": 3}");
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    assert_int_equal(etl_http_get(c.h, "/anything/slow", &r), ETL_OK);
    double took = secs_since(t0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    if (took < 0.95 || took > 2.5)
        fail_msg("1s timeout then a retry took %.3fs", took);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_low_speed_transfer_is_aborted(void **state)
{
    (void)state;
    const char *const kv[] = {"max_retries", "0", NULL};
    client_t c;
    client_open(&c, kv);
    etl_http_set_low_speed(c.h, 100, 1); /* under 100 B/s for 1 s */
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    etl_status_t st = etl_http_get(c.h, "/drip?numbytes=40&duration=20", &r);
    double took = secs_since(t0);
    assert_int_equal(st, ETL_ERR_IO);
    if (!strstr(etl_ctx_error(c.ctx), "too slow"))
        fail_msg("message: %s", etl_ctx_error(c.ctx));
    assert_true(took < 4.0);
    etl_http_response_free(&r);
    client_close(&c);
}

static void *cancel_later(void *arg)
{
    client_t *c = arg;
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&c->cancel, 1);
    return NULL;
}

static void test_cancel_interrupts_retry_after_wait(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    behave("{\"path\": \"/anything/long\", \"status\": 503, \"retry_after\": \"60\"}");
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, &c);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    etl_status_t st = etl_http_get(c.h, "/anything/long", &r);
    double took = secs_since(t0);
    pthread_join(t, NULL);
    assert_int_equal(st, ETL_ERR_CANCELLED);
    if (took > 0.6)
        fail_msg("cancel took %.3fs to be seen", took);
    assert_non_null(strstr(etl_ctx_error(c.ctx), "cancelled"));
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_cancel_interrupts_transfer(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, &c);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    etl_status_t st = etl_http_get(c.h, "/delay/10", &r);
    double took = secs_since(t0);
    pthread_join(t, NULL);
    assert_int_equal(st, ETL_ERR_CANCELLED);
    assert_true(took < 2.0); /* libcurl polls its progress callback about once a second */
    etl_http_response_free(&r);
    client_close(&c);
}

/* ------------------------------------------------------------ rate limits */

static void test_token_bucket_spaces_requests(void **state)
{
    (void)state;
    const char *const kv[] = {"rate_limit", "5", "rate_burst", "2", NULL};
    client_t c;
    client_open(&c, kv);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    for (int i = 0; i < 8; i++)
        assert_int_equal(etl_http_get(c.h, "/anything/rate", &r), ETL_OK);
    double took = secs_since(t0);
    /* 8 requests, 2 at once, then 5 per second: at least 6/5 s */
    if (took < 1.2 - 0.01 || took > 2.0)
        fail_msg("8 requests at 5/s (burst 2) took %.3fs", took);
    assert_true(r.wait_us > 0);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_rate_limit_option_forms(void **state)
{
    (void)state;
    const char *const per_min[] = {"rate_limit", "120/m", "rate_burst", "1", NULL};
    client_t c;
    client_open(&c, per_min);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    for (int i = 0; i < 3; i++)
        assert_int_equal(etl_http_get(c.h, "/anything/m", &r), ETL_OK);
    double took = secs_since(t0);
    assert_true(took >= 1.0 - 0.01 && took < 1.8); /* 2/s: two gaps of 0.5 s */
    etl_http_response_free(&r);
    client_close(&c);

    const char *const bad[] = {"rate_limit", "fast", NULL};
    assert_int_equal(client_try(&c, bad), ETL_ERR_CONFIG);
    assert_non_null(strstr(etl_ctx_error(c.ctx), "rate_limit"));
    client_close(&c);
    const char *const zero[] = {"rate_limit", "0", NULL};
    assert_int_equal(client_try(&c, zero), ETL_ERR_CONFIG);
    client_close(&c);
}

static void test_shopify_used_size_header_slows_down_before_429(void **state)
{
    (void)state;
    const char *url = "/leaky?size=4&leak=10&key=fed";
    client_t c;
    client_open(&c, NULL);
    etl_http_response_t r = {0};
    int64_t t0 = etl_mono_us();
    for (int i = 0; i < 14; i++) {
        assert_int_equal(etl_http_get(c.h, url, &r), ETL_OK);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.attempts, 1);
        assert_int_equal(
            etl_http_rate_from_header(c.h, &r, "X-Shopify-Shop-Api-Call-Limit", 10), 1);
    }
    double took = secs_since(t0);
    /* a bucket of 4 draining 10/s: 14 requests need about (14 - 4) / 10 s */
    if (took < 0.9 || took > 2.0)
        fail_msg("14 requests took %.3fs", took);
    json_t *log = requests("/leaky");
    json_t *reqs = json_object_get(log, "requests");
    for (size_t i = 0; i < json_array_size(reqs); i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(reqs, i), "status")),
                         200);
    json_decref(log);
    client_close(&c);

    /* the same without feeding the bucket runs into 429s */
    const char *const kv[] = {"max_retries", "0", NULL};
    client_open(&c, kv);
    int got429 = 0;
    for (int i = 0; i < 14 && !got429; i++) {
        etl_status_t st = etl_http_get(c.h, "/leaky?size=4&leak=10&key=unfed", &r);
        got429 = st == ETL_ERR_RETRY && r.status == 429;
    }
    assert_true(got429);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_amazon_rate_header_sets_rate(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    etl_http_rate_set(c.h, NULL, 100, 1); /* the documented burst of the operation: 1 */
    etl_http_response_t r = {0};
    const char *url = "/response-headers?x-amzn-RateLimit-Limit=4";
    assert_int_equal(etl_http_get(c.h, url, &r), ETL_OK);
    assert_int_equal(etl_http_rate_from_header(c.h, &r, "x-amzn-RateLimit-Limit", 0), 1);
    int64_t t0 = etl_mono_us();
    for (int i = 0; i < 6; i++) {
        assert_int_equal(etl_http_get(c.h, url, &r), ETL_OK);
        assert_int_equal(etl_http_rate_from_header(c.h, &r, "x-amzn-RateLimit-Limit", 0), 1);
    }
    double took = secs_since(t0);
    /* 4 per second, burst 1: six requests wait about 6 x 0.25 s (the bucket
     * was emptied by the first one) */
    if (took < 1.25 - 0.01 || took > 2.2)
        fail_msg("6 requests at 4/s took %.3fs", took);
    assert_int_equal(etl_http_rate_from_header(c.h, &r, "x-missing", 0), 0);

    /* a per-operation bucket through rate_key, apart from the host's */
    etl_http_rate_set(c.h, "getOrders", 2, 1);
    etl_http_request_t rq = {0};
    rq.url = "/anything/op";
    rq.rate_key = "getOrders";
    t0 = etl_mono_us();
    for (int i = 0; i < 3; i++)
        assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    took = secs_since(t0);
    assert_true(took >= 1.0 - 0.01 && took < 1.8);
    etl_http_response_free(&r);
    client_close(&c);
}

/* ------------------------------------------------------------ URLs and pages */

static void link_is(const char *header, const char *rel, const char *base_url, const char *want)
{
    char *got = etl_http_link(header, rel, base_url);
    if (want == NULL ? got != NULL : (got == NULL || strcmp(got, want) != 0))
        fail_msg("Link: %s rel=%s: wanted %s, got %s", header ? header : "(null)", rel,
                 want ? want : "(none)", got ? got : "(none)");
    free(got);
}

static void test_link_header_parsing(void **state)
{
    (void)state;
    const char *shop = "https://s.myshopify.com/admin/api/2024-01/orders.json";
    /* none */
    link_is(NULL, "next", NULL, NULL);
    link_is("", "next", NULL, NULL);
    link_is("<https://a/x?page=2>; rel=\"previous\"", "next", NULL, NULL);
    /* Shopify: previous and next */
    link_is("<https://s.myshopify.com/admin/api/2024-01/orders.json?limit=250&page_info=abc>; "
            "rel=\"previous\", <https://s.myshopify.com/admin/api/2024-01/orders.json?limit=250"
            "&page_info=def>; rel=\"next\"",
            "next", NULL, "https://s.myshopify.com/admin/api/2024-01/orders.json?limit=250&page_info=def");
    link_is("<https://a/1>; rel=\"previous\", <https://a/3>; rel=\"next\"", "previous", NULL,
            "https://a/1");
    /* quoted parameters holding commas and semicolons, rel lists, any case, bare rel */
    link_is("<https://a/p1>; title=\"a, b; c\"; rel=\"prev\", <https://a/p3>; title=\"x,y\"; "
            "rel=\"last next\"",
            "next", NULL, "https://a/p3");
    link_is("<https://a/n>;REL=Next", "next", NULL, "https://a/n");
    link_is("<https://a/n>; rel=next; rel=prev", "prev", NULL, NULL); /* only the first rel */
    link_is("<https://a/q?x=1,2>; rel=\"next\"", "next", NULL, "https://a/q?x=1,2");
    /* relative targets resolve against the request URL */
    link_is("</items?page=2>; rel=next", "next", "http://h:8080/v1/items?page=1",
            "http://h:8080/items?page=2");
    link_is("<?page=3>; rel=next", "next", "http://h/v1/items?page=2", "http://h/v1/items?page=3");
    link_is("<items?page=4>; rel=next", "next", "http://h/v1/list", "http://h/v1/items?page=4");
    link_is("<//cdn.h/x>; rel=next", "next", "https://h/v1", "https://cdn.h/x");
    /* malformed */
    link_is("https://a/2; rel=next", "next", NULL, NULL);
    link_is("<https://a/2>; rel=\"next", "next", NULL, NULL);
    link_is("<https://a/2", "next", NULL, NULL);
    link_is("<https://a/2> junk, <https://a/3>; rel=next", "next", NULL, NULL);
    (void)shop;

    /* from a response, with the page_info to carry on */
    client_t c;
    client_open(&c, NULL);
    etl_http_response_t r = {0};
    char *hdr = etl_http_escape("<https://s.myshopify.com/o.json?limit=250&page_info=pg2>; rel=\"next\"",
                                strlen("<https://s.myshopify.com/o.json?limit=250&page_info=pg2>; rel=\"next\""));
    char path[512];
    snprintf(path, sizeof path, "/response-headers?Link=%s", hdr);
    free(hdr);
    assert_int_equal(etl_http_get(c.h, path, &r), ETL_OK);
    char *next = etl_http_next_link(&r);
    assert_non_null(next);
    assert_string_equal(next, "https://s.myshopify.com/o.json?limit=250&page_info=pg2");
    char *pi = etl_http_query_param(next, "page_info");
    assert_string_equal(pi, "pg2");
    free(pi);
    free(next);
    assert_int_equal(etl_http_get(c.h, "/anything/last", &r), ETL_OK);
    assert_null(etl_http_next_link(&r));
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_query_parameters_are_encoded(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    const char *odd = "a b&c=d/é?#+%";
    etl_http_param_t q[] = {{"q", odd}, {"empty", ""}, {"skipped", NULL}, {"k y", "v"}};
    etl_http_request_t rq = {0};
    rq.url = "/anything/q?fixed=1";
    rq.query = q;
    rq.nquery = 4;
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    json_t *j = body_json(&r);
    json_t *query = json_object_get(j, "query");
    assert_string_equal(json_string_value(json_array_get(json_object_get(query, "q"), 0)), odd);
    assert_string_equal(json_string_value(json_array_get(json_object_get(query, "empty"), 0)), "");
    assert_string_equal(json_string_value(json_array_get(json_object_get(query, "fixed"), 0)), "1");
    assert_string_equal(json_string_value(json_array_get(json_object_get(query, "k y"), 0)), "v");
    assert_null(json_object_get(query, "skipped"));
    assert_string_equal(json_string_value(json_object_get(j, "raw_path")),
                        "/anything/q?fixed=1&q=a%20b%26c%3Dd%2F%C3%A9%3F%23%2B%25&empty=&k%20y=v");
    json_decref(j);
    etl_http_response_free(&r);
    client_close(&c);

    /* the builder on its own */
    etl_http_param_t p[] = {{"limit", "250"}, {"cursor", "x/y"}};
    char *u = etl_http_url("https://api.x/v2/", "/catalog/search", p, 2);
    assert_string_equal(u, "https://api.x/v2/catalog/search?limit=250&cursor=x%2Fy");
    free(u);
    u = etl_http_url("https://api.x/v2", "items", NULL, 0);
    assert_string_equal(u, "https://api.x/v2/items");
    free(u);
    u = etl_http_url("https://ignored", "http://other/x?a=1", p, 1);
    assert_string_equal(u, "http://other/x?a=1&limit=250");
    free(u);
    u = etl_http_url("https://api.x/list?", NULL, p, 1);
    assert_string_equal(u, "https://api.x/list?limit=250");
    free(u);
    u = etl_http_escape("~-._AZaz09 ", 11);
    assert_string_equal(u, "~-._AZaz09%20");
    free(u);
    char *v = etl_http_query_param("https://a/b?x=1&page_info=a%2Bb+c&y", "page_info");
    assert_string_equal(v, "a+b c");
    free(v);
    assert_null(etl_http_query_param("https://a/b?x=1", "page_info"));
    v = etl_http_query_param("https://a/b?x=1&y", "y");
    assert_string_equal(v, "");
    free(v);
}

static void test_headers_default_override_and_remove(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    assert_int_equal(etl_http_set_header(c.h, "Square-Version", "2025-08-20"), ETL_OK);
    assert_int_equal(etl_http_set_header(c.h, "X-Gone", "soon"), ETL_OK);
    assert_int_equal(etl_http_set_header(c.h, "X-Gone", NULL), ETL_OK);
    assert_int_equal(etl_http_set_header(c.h, "Bad:Name", "x"), ETL_ERR_CONFIG);
    assert_int_equal(etl_http_set_header(c.h, "X-Inject", "a\r\nEvil: 1"), ETL_ERR_CONFIG);
    etl_http_param_t hdrs[] = {{"X-Extra", "1"}, {"Square-Version", "2024-01-01"}};
    etl_http_request_t rq = {0};
    rq.url = "/anything/h";
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    json_t *j = body_json(&r);
    json_t *h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "square-version")), "2025-08-20");
    assert_null(json_object_get(h, "x-gone"));
    assert_null(json_object_get(h, "expect"));
    assert_non_null(strstr(json_string_value(json_object_get(h, "user-agent")), "etl/"));
    json_decref(j);
    rq.headers = hdrs;
    rq.nheaders = 2;
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    j = body_json(&r);
    h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "square-version")), "2024-01-01");
    assert_string_equal(json_string_value(json_object_get(h, "x-extra")), "1");
    json_decref(j);
    /* response headers by any case */
    assert_non_null(etl_http_header(&r, "content-type"));
    assert_string_equal(etl_http_header(&r, "CONTENT-TYPE"), etl_http_header(&r, "Content-Type"));
    assert_null(etl_http_header(&r, "x-nope"));
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_methods_and_bodies(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    static const char *const methods[] = {"POST", "PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(methods); i++) {
        etl_http_request_t rq = {0};
        rq.method = methods[i];
        rq.url = "/anything/m";
        rq.body = "{\"a\":1}";
        rq.body_len = 7;
        etl_http_response_t r = {0};
        assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
        json_t *j = body_json(&r);
        assert_string_equal(json_string_value(json_object_get(j, "method")), methods[i]);
        assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"a\":1}");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(j, "headers"), "content-type")),
            "application/json");
        json_decref(j);
        etl_http_response_free(&r);
    }
    /* a form body with its own content type, and an empty POST */
    etl_http_request_t rq = {0};
    rq.method = "POST";
    rq.url = "/anything/form";
    rq.body = "a=1&b=2";
    rq.body_len = 7;
    rq.content_type = "application/x-www-form-urlencoded";
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    json_t *j = body_json(&r);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "headers"), "content-type")),
        "application/x-www-form-urlencoded");
    json_decref(j);
    rq.body = NULL;
    rq.body_len = 0;
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "body")), "");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    json_decref(j);
    /* HEAD: status and headers, no body */
    rq.method = "HEAD";
    rq.url = "/anything/head";
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_non_null(r.body);
    /* and the connection still works afterwards */
    assert_int_equal(etl_http_get(c.h, "/anything/after", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_redirect_followed_and_final_url_reported(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/redirect?to=/anything/final", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    char want[200];
    snprintf(want, sizeof want, "%s/anything/final", base);
    assert_string_equal(r.url, want);
    assert_int_equal(r.attempts, 1);
    assert_true(r.total_us >= r.transfer_us);
    assert_true(r.first_byte_us > 0);

    /* a 303 after a POST goes on as a GET without the body; 307 keeps both */
    etl_http_request_t rq = {0};
    rq.method = "POST";
    rq.url = "/redirect?to=/anything/seeother&code=303";
    rq.body = "{\"a\":1}";
    rq.body_len = 7;
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(j, "body")), "");
    json_decref(j);
    rq.url = "/redirect?to=/anything/temporary&code=307";
    assert_int_equal(etl_http_request(c.h, &rq, &r), ETL_OK);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(j, "body")), "{\"a\":1}");
    json_decref(j);

    /* another host (localhost is not 127.0.0.1): the 302 comes back unfollowed */
    char other[300], path[400];
    snprintf(other, sizeof other, "http://localhost:%s/anything/elsewhere",
             strchr(hostkey, ':') + 1);
    char *esc = etl_http_escape(other, strlen(other));
    snprintf(path, sizeof path, "/redirect?to=%s", esc);
    free(esc);
    assert_int_equal(etl_http_set_header(c.h, "X-Shopify-Access-Token", "shpat_redirect1"), ETL_OK);
    assert_int_equal(etl_http_get(c.h, path, &r), ETL_OK);
    assert_int_equal(r.status, 302);
    assert_string_equal(etl_http_header(&r, "location"), other);
    assert_int_equal(count_requests("/anything/elsewhere"), 0);

    /* a loop stops after 5 hops with the last 3xx */
    int before = count_requests("/redirect");
    assert_int_equal(etl_http_get(c.h, "/redirect?loop=1", &r), ETL_OK);
    assert_int_equal(r.status, 302);
    assert_int_equal(count_requests("/redirect") - before, 6);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_base_url_option_and_relative_urls(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    /* the pipeline's base_url wins over the plugin's default */
    assert_int_equal(etl_http_set_base_url(c.h, "https://connect.squareup.com"), ETL_OK);
    assert_string_equal(etl_http_base_url(c.h), base);
    client_close(&c);

    const char *const none[] = {"base_url", "", NULL};
    client_open(&c, none);
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/v2/x", &r), ETL_ERR_CONFIG);
    assert_non_null(strstr(etl_ctx_error(c.ctx), "needs base_url"));
    assert_int_equal(etl_http_set_base_url(c.h, base), ETL_OK);
    assert_int_equal(etl_http_get(c.h, "anything/rel", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    /* absolute URLs ignore the base */
    char abs_url[200];
    snprintf(abs_url, sizeof abs_url, "%s/anything/abs", base);
    assert_int_equal(etl_http_get(c.h, abs_url, &r), ETL_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(etl_http_get(c.h, "ftp://x/y", &r), ETL_ERR_IO);
    assert_int_equal(etl_http_set_base_url(c.h, "not a url"), ETL_ERR_CONFIG);
    etl_http_response_free(&r);
    client_close(&c);

    const char *const bad[] = {"base_url", "api.example.com", NULL};
    assert_int_equal(client_try(&c, bad), ETL_ERR_CONFIG);
    client_close(&c);
    const char *const nofile[] = {"ca_file", "/nonexistent/ca.pem", NULL};
    assert_int_equal(client_try(&c, nofile), ETL_ERR_CONFIG);
    assert_non_null(strstr(etl_ctx_error(c.ctx), "ca_file"));
    client_close(&c);
}

static void test_connection_refused_is_retried_then_io_error(void **state)
{
    (void)state;
    const char *const kv[] = {"base_url", "http://127.0.0.1:1", "max_retries", "2", NULL};
    client_t c;
    client_open(&c, kv);
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/x?refresh_token=zzzz-9999", &r), ETL_ERR_IO);
    assert_int_equal(r.attempts, 3);
    assert_int_equal(r.status, 0);
    const char *e = etl_ctx_error(c.ctx);
    if (!strstr(e, "GET http://127.0.0.1:1/x?refresh_token=***: gave up after 3 attempts") ||
        !strstr(e, "network error") || strstr(e, "zzzz-9999"))
        fail_msg("message: %s", e);
    etl_http_response_free(&r);
    client_close(&c);
}

/* ------------------------------------------------------------ debug logs */

static void test_debug_log_redacts_credentials(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    assert_int_equal(etl_http_set_header(c.h, "Authorization", "Bearer sekret-token-123"), ETL_OK);
    assert_int_equal(etl_http_set_header(c.h, "X-Shopify-Access-Token", "shpat_abc123"), ETL_OK);
    assert_int_equal(etl_http_set_header(c.h, "X-Custom-Auth", "custom-cred-77"), ETL_OK);
    assert_int_equal(etl_http_secret_header(c.h, "X-Custom-Auth"), ETL_OK);
    etl_http_param_t q[] = {{"access_token", "qsecret1"}, {"page_info", "visible"},
                            {"api_key", "k123456"}, {"NextToken", "cursor-ok"}};
    etl_http_request_t rq = {0};
    rq.method = "POST";
    rq.url = "/anything/log";
    rq.query = q;
    rq.nquery = 4;
    rq.body = "{\"password\": \"pw-9876\", \"name\": \"ok\", \"client_secret\": \"cs-555\", "
              "\"code\": \"RATE_LIMITED\"}";
    rq.body_len = strlen(rq.body);
    etl_log_setup(ETL_LOG_DEBUG, ETL_LOGFMT_TEXT, 0);
    capture_t cap;
    capture_start(&cap);
    etl_http_response_t r = {0};
    etl_status_t st = etl_http_request(c.h, &rq, &r);
    /* a form body too (Login with Amazon's token exchange) */
    etl_http_request_t form = {0};
    form.method = "POST";
    form.url = "/anything/token";
    form.body = "grant_type=refresh_token&refresh_token=Atzr-rt-42&client_id=cid";
    form.body_len = strlen(form.body);
    form.content_type = "application/x-www-form-urlencoded";
    etl_status_t st2 = etl_http_request(c.h, &form, &r);
    char *text = capture_end(&cap);
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_TEXT, 0);
    assert_int_equal(st, ETL_OK);
    assert_int_equal(st2, ETL_OK);
    static const char *const hidden[] = {"sekret-token-123", "shpat_abc123", "custom-cred-77",
                                         "qsecret1", "k123456", "pw-9876", "cs-555",
                                         "Atzr-rt-42"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(hidden); i++)
        if (strstr(text, hidden[i]))
            fail_msg("'%s' leaked into the debug log:\n%s", hidden[i], text);
    static const char *const shown[] = {
        "> POST ", "access_token=***", "page_info=visible", "api_key=***", "NextToken=cursor-ok",
        "> Authorization: ***", "> X-Shopify-Access-Token: ***", "> X-Custom-Auth: ***",
        "\"password\": \"***\"", "\"name\": \"ok\"", "\"client_secret\": \"***\"",
        "\"code\": \"RATE_LIMITED\"",
        "< 200 ", "< Content-Type: application/json", "< body: {",
        "refresh_token=***", "client_id=cid", "grant_type=refresh_token"};
    for (size_t i = 0; i < ETL_ARRAY_LEN(shown); i++)
        if (!strstr(text, shown[i]))
            fail_msg("'%s' missing from the debug log:\n%s", shown[i], text);
    free(text);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_debug_log_cuts_bodies_at_2k(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    etl_log_setup(ETL_LOG_DEBUG, ETL_LOGFMT_TEXT, 0);
    capture_t cap;
    capture_start(&cap);
    etl_http_response_t r = {0};
    etl_status_t st = etl_http_get(c.h, "/bytes/10000", &r);
    char *text = capture_end(&cap);
    etl_log_setup(ETL_LOG_ERROR, ETL_LOGFMT_TEXT, 0);
    assert_int_equal(st, ETL_OK);
    assert_non_null(strstr(text, "... (7952 more bytes)"));
    free(text);
    etl_http_response_free(&r);
    client_close(&c);
}

static void test_redaction_helpers(void **state)
{
    (void)state;
    char *u = http_url_redacted("https://h/p?code=abc&state=s1&password=pw&sig=x#frag");
    assert_string_equal(u, "https://h/p?code=***&state=s1&password=***&sig=***#frag");
    free(u);
    assert_true(http_param_is_secret("refresh_token", 13));
    assert_true(http_param_is_secret("X-Amz-Signature", 15));
    assert_true(http_param_is_secret("authorization_code", 18));
    assert_false(http_param_is_secret("NextToken", 9));
    assert_false(http_param_is_secret("page_info", 9));
    assert_false(http_param_is_secret("country_code", 12));
    assert_false(http_param_is_secret("limit", 5));
}

/* ------------------------------------------------------------ unit pieces */

static void test_retry_after_parsing(void **state)
{
    (void)state;
    int64_t w;
    int64_t now = 784111777LL * 1000000; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(http_retry_after("2", now, &w), 0);
    assert_int_equal(w, 2000000);
    assert_int_equal(http_retry_after(" 1.5 ", now, &w), 0);
    assert_int_equal(w, 1500000);
    assert_int_equal(http_retry_after("0", now, &w), 0);
    assert_int_equal(w, 0);
    assert_int_equal(http_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now, &w), 0);
    assert_int_equal(w, 3000000);
    assert_int_equal(http_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now, &w), 0);
    assert_int_equal(w, 0); /* a date in the past: at once */
    assert_int_equal(http_retry_after("-1", now, &w), -1);
    assert_int_equal(http_retry_after("soon", now, &w), -1);
    assert_int_equal(http_retry_after("", now, &w), -1);
    assert_int_equal(http_retry_after("1e3", now, &w), -1);
}

static void test_backoff_is_exponential_with_full_jitter(void **state)
{
    (void)state;
    client_t c;
    client_open(&c, NULL);
    etl_http_set_backoff(c.h, 500, 30000);
    int64_t max_seen[8] = {0};
    for (int i = 0; i < 2000; i++)
        for (int n = 1; n <= 7; n++) {
            int64_t w = http_backoff_us(c.h, n);
            int64_t ceiling = (int64_t)500000 << (n - 1);
            if (ceiling > 30000000)
                ceiling = 30000000;
            assert_true(w >= 0 && w <= ceiling);
            if (w > max_seen[n])
                max_seen[n] = w;
        }
    /* spread over the whole range: the maximum seen is near the ceiling */
    assert_true(max_seen[1] > 450000);
    assert_true(max_seen[7] > 27000000);
    client_close(&c);
}

static void test_status_classes(void **state)
{
    (void)state;
    assert_true(http_status_retryable(429));
    assert_true(http_status_retryable(408));
    assert_true(http_status_retryable(500));
    assert_true(http_status_retryable(503));
    assert_false(http_status_retryable(400));
    assert_false(http_status_retryable(401));
    assert_false(http_status_retryable(404));
    assert_false(http_status_retryable(200));
    assert_true(http_curl_retryable(CURLE_PARTIAL_FILE));
    assert_true(http_curl_retryable(CURLE_OPERATION_TIMEDOUT));
    assert_true(http_curl_retryable(CURLE_COULDNT_CONNECT));
    assert_false(http_curl_retryable(CURLE_PEER_FAILED_VERIFICATION));
    assert_false(http_curl_retryable(CURLE_URL_MALFORMAT));
    char *h = http_url_host("https://User:pw@API.Example.com/v2?x");
    assert_string_equal(h, "api.example.com:443");
    free(h);
    h = http_url_host("http://127.0.0.1:8080");
    assert_string_equal(h, "127.0.0.1:8080");
    free(h);
    h = http_url_host("http://[::1]:9/x");
    assert_string_equal(h, "[::1]:9");
    free(h);
    assert_null(http_url_host("/relative"));
}

/* ------------------------------------------------------------ TLS */

static void test_tls_verified_and_ca_file_adds_trust(void **state)
{
    (void)state;
    char dir[] = "/tmp/etl-http-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024], cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    char tls_base[128];
    pid_t pid = start_httpbin(tls_base, sizeof tls_base, "--tls-cert", cert, "--tls-key", key);
    assert_true(pid > 0);
    assert_memory_equal(tls_base, "https://", 8);

    /* a certificate nobody vouches for: refused at once, never retried */
    const char *const plain[] = {"base_url", tls_base, NULL};
    client_t c;
    client_open(&c, plain);
    etl_http_response_t r = {0};
    assert_int_equal(etl_http_get(c.h, "/anything/tls", &r), ETL_ERR_IO);
    assert_int_equal(r.attempts, 1);
    if (!strstr(etl_ctx_error(c.ctx), "not retried") ||
        !strstr(etl_ctx_error(c.ctx), "certificate"))
        fail_msg("message: %s", etl_ctx_error(c.ctx));
    client_close(&c);

    /* with ca_file it is trusted */
    const char *const trusted[] = {"base_url", tls_base, "ca_file", cert, NULL};
    client_open(&c, trusted);
    assert_int_equal(etl_http_get(c.h, "/anything/tls", &r), ETL_OK);
    assert_int_equal(r.status, 200);
    etl_http_response_free(&r);
    client_close(&c);

    stop_httpbin(pid);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_connection_reused_for_many_requests, reset_mock),
        cmocka_unit_test_setup(test_gzip_accepted_and_decoded, reset_mock),
        cmocka_unit_test_setup(test_retry_on_500_then_success, reset_mock),
        cmocka_unit_test_setup(test_retry_logs_warning_and_counts, reset_mock),
        cmocka_unit_test_setup(test_503_retry_after_seconds_is_honoured, reset_mock),
        cmocka_unit_test_setup(test_503_retry_after_http_date_is_honoured, reset_mock),
        cmocka_unit_test_setup(test_429_retry_after_float_is_honoured, reset_mock),
        cmocka_unit_test_setup(test_no_retry_on_4xx, reset_mock),
        cmocka_unit_test_setup(test_retries_exhausted_error_names_request, reset_mock),
        cmocka_unit_test_setup(test_no_retry_flag_means_one_attempt, reset_mock),
        cmocka_unit_test_setup(test_total_retry_time_is_capped, reset_mock),
        cmocka_unit_test_setup(test_truncated_body_is_retried, reset_mock),
        cmocka_unit_test_setup(test_truncated_body_that_persists_fails_clearly, reset_mock),
        cmocka_unit_test_setup(test_dropped_connection_is_retried, reset_mock),
        cmocka_unit_test_setup(test_slow_answer_times_out_and_is_retried, reset_mock),
        cmocka_unit_test_setup(test_low_speed_transfer_is_aborted, reset_mock),
        cmocka_unit_test_setup(test_cancel_interrupts_retry_after_wait, reset_mock),
        cmocka_unit_test_setup(test_cancel_interrupts_transfer, reset_mock),
        cmocka_unit_test_setup(test_token_bucket_spaces_requests, reset_mock),
        cmocka_unit_test_setup(test_rate_limit_option_forms, reset_mock),
        cmocka_unit_test_setup(test_shopify_used_size_header_slows_down_before_429, reset_mock),
        cmocka_unit_test_setup(test_amazon_rate_header_sets_rate, reset_mock),
        cmocka_unit_test_setup(test_link_header_parsing, reset_mock),
        cmocka_unit_test_setup(test_query_parameters_are_encoded, reset_mock),
        cmocka_unit_test_setup(test_headers_default_override_and_remove, reset_mock),
        cmocka_unit_test_setup(test_methods_and_bodies, reset_mock),
        cmocka_unit_test_setup(test_redirect_followed_and_final_url_reported, reset_mock),
        cmocka_unit_test_setup(test_base_url_option_and_relative_urls, reset_mock),
        cmocka_unit_test_setup(test_connection_refused_is_retried_then_io_error, reset_mock),
        cmocka_unit_test_setup(test_debug_log_redacts_credentials, reset_mock),
        cmocka_unit_test_setup(test_debug_log_cuts_bodies_at_2k, reset_mock),
        cmocka_unit_test(test_redaction_helpers),
        cmocka_unit_test(test_retry_after_parsing),
        cmocka_unit_test(test_backoff_is_exponential_with_full_jitter),
        cmocka_unit_test(test_status_classes),
        cmocka_unit_test(test_tls_verified_and_ca_file_adds_trust),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
