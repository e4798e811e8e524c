/* serve.c - `etl serve`: arguments, signals, then etl_serve(). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "run.h"
#include "serve.h"

static atomic_int stop_flag, reload_flag;

static void on_stop(int sig)
{
    if (atomic_exchange(&stop_flag, 1)) {
        /* a second signal: stop now, without waiting for the batches */
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static void on_hup(int sig)
{
    (void)sig;
    atomic_store(&reload_flag, 1);
}

/* A path or URL for --state: plain paths become sqlite:/absolute. */
static char *state_url(const char *arg)
{
    const char *path = arg;
    if (strstr(arg, "://"))
        return strdup(arg);
    if (strncmp(arg, "sqlite:", 7) == 0)
        path = arg + 7;
    char *cwd = path[0] == '/' ? NULL : getcwd(NULL, 0), *url = NULL;
    if (path[0] != '/' && !cwd)
        return NULL;
    if (asprintf(&url, "sqlite:%s%s%s", cwd ? cwd : "", cwd ? "/" : "", path) < 0)
        url = NULL;
    free(cwd);
    return url;
}

/* The token from a file (systemd credentials), trailing newline dropped. */
static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return strdup(buf);
}

int cli_serve(int argc, char **argv)
{
    etl_serve_opts_t o = {0};
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    const char *v, *workers = NULL, *lease = NULL, *tick = NULL, *state = NULL;
    const char *token_file = NULL;
    int rc = ETL_EXIT_CONFIG;
    char *url = NULL, *token = NULL;
    if (!files)
        return ETL_EXIT_CONFIG;
    for (int i = 0; i < argc; i++) {
        int m;
        if ((m = cli_opt_value(argc, argv, &i, "--listen", &o.listen)) ||
            (m = cli_opt_value(argc, argv, &i, "--workers", &workers)) ||
            (m = cli_opt_value(argc, argv, &i, "--state", &state)) ||
            (m = cli_opt_value(argc, argv, &i, "--worker-id", &o.worker_id)) ||
            (m = cli_opt_value(argc, argv, &i, "--lease", &lease)) ||
            (m = cli_opt_value(argc, argv, &i, "--tick", &tick)) ||
            (m = cli_opt_value(argc, argv, &i, "--token-file", &token_file))) {
            if (m < 0) {
                rc = cli_usage_error("option %s needs a value", argv[i]);
                goto out;
            }
            continue;
        }
        v = argv[i];
        if (v[0] == '-') {
            rc = cli_usage_error("unknown option '%s' for serve", v);
            goto out;
        }
        files[o.nfiles++] = v;
    }
    if (!o.nfiles) {
        rc = cli_usage_error("%s", "serve needs at least one pipeline file");
        goto out;
    }
    int64_t n;
    if (workers) {
        if (etl_parse_i64(workers, &n) != 0 || n < 1 || n > 256) {
            rc = cli_usage_error("bad --workers '%s' (expected 1 to 256)", workers);
            goto out;
        }
        o.workers = (int)n;
    }
    if (lease) {
        if (etl_parse_duration(lease, &o.lease_secs) != 0 || o.lease_secs < 3) {
            rc = cli_usage_error("bad --lease '%s' (expected a duration of 3s or more, such as "
                                 "60s)", lease);
            goto out;
        }
    }
    if (tick) {
        if (etl_parse_i64(tick, &o.tick_ms) != 0 || o.tick_ms < 10 || o.tick_ms > 60000) {
            rc = cli_usage_error("bad --tick '%s' (expected milliseconds, 10 to 60000)", tick);
            goto out;
        }
    }
    if (state && !(o.state_url = url = state_url(state)))
        goto out;
    if (token_file) {
        if (!(token = read_token(token_file))) {
            rc = cli_usage_error("cannot read --token-file '%s'", token_file);
            goto out;
        }
    } else if (getenv("ETL_ADMIN_TOKEN") && *getenv("ETL_ADMIN_TOKEN")) {
        token = strdup(getenv("ETL_ADMIN_TOKEN"));
    }
    if (token && strlen(token) < 16) {
        rc = cli_usage_error("%s", "the admin token is too short (use 16 characters or more, "
                             "e.g. from `openssl rand -hex 32`)");
        goto out;
    }
    if (token)
        etl_redact_add(token);
    o.token = token;
    o.files = files;
    o.stop = &stop_flag;
    o.reload = &reload_flag;

    struct sigaction sa = {0};
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[2048] = "";
    rc = etl_serve(&o, err, sizeof err);
    if (rc != 0 && err[0]) {
        char *clean = etl_redact_dup(err);
        fprintf(stderr, "etl serve: %s\n", clean ? clean : err);
        free(clean);
    }
out:
    free(files);
    free(url);
    free(token);
    return rc;
}
