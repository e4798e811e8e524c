/*
 * main.c - the etl command line: argument parsing and dispatch. Everything
 * it does is a call into libetl; exit codes are 0 (ok), 1 (a run or a check
 * failed), 2 (usage or configuration error).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "run.h"
#include "util.h"

#ifndef ETL_VERSION
#define ETL_VERSION "0.1.0"
#endif

static atomic_int cancel_flag;

static void on_signal(int sig)
{
    if (atomic_exchange(&cancel_flag, 1)) {
        /* a second signal: stop now */
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static const char usage[] =
    "usage: etl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  run PIPELINE.yaml      run the pipeline once\n"
    "      --full             read everything (deletes are detected when `deletes:` is set)\n"
    "      --since TIME       read from this cursor time instead of the checkpoint\n"
    "      --window DURATION  read only the last DURATION (e.g. 90d)\n"
    "      --stream A,B       only these streams\n"
    "      --direction D      forward | reverse | both\n"
    "      --client ID        only this client of a matrix pipeline\n"
    "      --dry-run          do everything but commit (nothing is left behind)\n"
    "  check PIPELINE.yaml    validate, compile Lua hooks, load plugins, test connections,\n"
    "                         discover streams\n"
    "  status PIPELINE.yaml   checkpoints, last run counts, deferred and dead letters\n"
    "      --json             as JSON\n"
    "      --client ID        only this client\n"
    "  reset PIPELINE.yaml    forget checkpoints, ledger and deferred records\n"
    "      --stream S         only this stream\n"
    "      --client ID        only this client\n"
    "  plugins [NAME]         list plugins with their capabilities and options\n"
    "  serve PIPELINE.yaml|DIR...  run pipelines on their schedules until SIGTERM\n"
    "      --listen ADDR:PORT the admin API, status page and /metrics (e.g. 127.0.0.1:8787)\n"
    "      --workers N        runs at once (default 4)\n"
    "      --state URL        one state store for every pipeline (sqlite path or postgres://)\n"
    "      --worker-id ID     this worker's name in leases and runs (default host:pid)\n"
    "      --lease DURATION   how long a claimed run is held without renewal (default 60s)\n"
    "      --token-file PATH  the admin token (instead of ETL_ADMIN_TOKEN)\n"
    "      --tick MS          how often due runs are looked for (default 1000)\n"
    "  version                print the version\n"
    "\n"
    "Global options:\n"
    "  -v, --verbose          more log output (repeat for trace)\n"
    "  -q, --quiet            only errors\n"
    "  --log-format F         text (default) | json\n"
    "  -h, --help             this help\n"
    "\n"
    "Environment: ETL_PLUGIN_PATH (extra plugin folders, ':' separated), NO_COLOR,\n"
    "  ETL_ADMIN_TOKEN (bearer token of the serve admin API; required beyond loopback).\n"
    "Exit codes: 0 ok, 1 a run or check failed, 2 usage or configuration error.\n";

int cli_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "etl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nRun 'etl --help' for usage.\n");
    return ETL_EXIT_CONFIG;
}

/* Matches "--name VALUE" or "--name=VALUE"; advances *i past what it used. */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        *out = NULL;
        return -1;
    }
    *out = argv[++*i];
    return 1;
}

int cli_load(const char *path, const char *client, etl_pipeline_t ***out, size_t *n)
{
    char err[2048];
    etl_load_opts_t lo = {NULL, NULL, client};
    etl_cfg_status_t st = etl_config_load(path, &lo, out, n, err, sizeof err);
    if (st != ETL_CFG_OK) {
        char *clean = etl_redact_dup(err);
        fprintf(stderr, "%s\n", clean ? clean : err);
        free(clean);
        return ETL_EXIT_CONFIG;
    }
    return ETL_EXIT_OK;
}

static int cmd_run(int argc, char **argv)
{
    etl_run_opts_t o = {0};
    o.direction = -1;
    o.triggered_by = "cli";
    o.cancel = &cancel_flag;
    const char *path = NULL, *client = NULL, *window = NULL, *dir = NULL, *v;
    for (int i = 0; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--full") == 0)
            o.full = 1;
        else if (strcmp(argv[i], "--dry-run") == 0)
            o.dry_run = 1;
        else if ((m = cli_opt_value(argc, argv, &i, "--since", &v)))
            o.since = m < 0 ? NULL : v;
        else if ((m = cli_opt_value(argc, argv, &i, "--window", &v)))
            window = m < 0 ? "" : v;
        else if ((m = cli_opt_value(argc, argv, &i, "--stream", &v)))
            o.streams = m < 0 ? "" : v;
        else if ((m = cli_opt_value(argc, argv, &i, "--direction", &v)))
            dir = m < 0 ? "" : v;
        else if ((m = cli_opt_value(argc, argv, &i, "--client", &v)))
            client = m < 0 ? "" : v;
        else if (argv[i][0] == '-')
            return cli_usage_error("unknown option '%s' for run", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("unexpected argument '%s'", argv[i]);
        if (m < 0)
            return cli_usage_error("option %s needs a value", argv[i]);
    }
    if (!path)
        return cli_usage_error("%s", "run needs a pipeline file");
    if (window && etl_parse_duration(window, &o.window) != 0)
        return cli_usage_error("bad --window '%s' (expected a duration such as 90d)", window);
    if (o.streams && !*o.streams)
        return cli_usage_error("%s", "--stream needs a value");
    if (dir) {
        if (strcmp(dir, "forward") == 0)
            o.direction = ETL_DIR_FORWARD;
        else if (strcmp(dir, "reverse") == 0)
            o.direction = ETL_DIR_REVERSE;
        else if (strcmp(dir, "both") == 0)
            o.direction = ETL_DIR_BOTH;
        else
            return cli_usage_error("bad --direction '%s' (expected forward, reverse or both)", dir);
    }
    o.progress = etl_log_is_tty();

    etl_pipeline_t **ps;
    size_t n;
    int rc = cli_load(path, client, &ps, &n);
    if (rc)
        return rc;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (size_t i = 0; i < n && !atomic_load(&cancel_flag); i++) {
        etl_run_result_t res;
        int r = etl_run(ps[i], &o, &res);
        if (r == ETL_EXIT_CONFIG) {
            fprintf(stderr, "%s\n", res.error);
        } else if (etl_log_level() >= ETL_LOG_ERROR) {
            if (etl_log_level() >= ETL_LOG_INFO)
                etl_run_print_summary(stdout, ps[i], &res);
            else if (r != ETL_EXIT_OK)
                fprintf(stderr, "%s%s%s: %s\n", ps[i]->name, ps[i]->client ? "@" : "",
                        ps[i]->client ? ps[i]->client : "", res.error);
        }
        fflush(stdout);
        etl_run_result_free(&res);
        if (r > rc)
            rc = r;
    }
    etl_pipelines_free(ps, n);
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    const char *path = NULL, *client = NULL, *v;
    for (int i = 0; i < argc; i++) {
        int m = 0;
        if ((m = cli_opt_value(argc, argv, &i, "--client", &v)))
            client = v;
        else if (argv[i][0] == '-')
            return cli_usage_error("unknown option '%s' for check", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("unexpected argument '%s'", argv[i]);
        if (m < 0)
            return cli_usage_error("option %s needs a value", argv[i]);
    }
    if (!path)
        return cli_usage_error("%s", "check needs a pipeline file");
    etl_pipeline_t **ps;
    size_t n;
    int rc = cli_load(path, client, &ps, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        char err[2048] = "";
        int r = etl_check(ps[i], stdout, err, sizeof err);
        if (r != ETL_EXIT_OK)
            fprintf(stderr, "%s\n", err);
        if (r > rc)
            rc = r;
    }
    etl_pipelines_free(ps, n);
    return rc;
}

int main(int argc, char **argv)
{
    etl_level_t level = ETL_LOG_INFO;
    etl_log_format_t fmt = ETL_LOGFMT_TEXT;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v;
        int m;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("etl %s (plugin ABI %u)\n", ETL_VERSION, ETL_ABI_VERSION);
            return 0;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            level = level < ETL_LOG_TRACE ? level + 1 : level;
        } else if (strcmp(a, "-vv") == 0) {
            level = ETL_LOG_TRACE;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            level = ETL_LOG_ERROR;
        } else if ((m = cli_opt_value(argc, argv, &i, "--log-format", &v))) {
            if (m < 0 || (strcmp(v, "text") && strcmp(v, "json")))
                return cli_usage_error("bad --log-format '%s' (expected text or json)",
                                       m < 0 ? "" : v);
            fmt = strcmp(v, "json") == 0 ? ETL_LOGFMT_JSON : ETL_LOGFMT_TEXT;
        } else {
            return cli_usage_error("unknown option '%s'", a);
        }
    }
    int color = isatty(STDERR_FILENO) && !getenv("NO_COLOR") && fmt == ETL_LOGFMT_TEXT;
    etl_log_setup(level, fmt, color);
    if (i >= argc) {
        fputs(usage, stderr);
        return ETL_EXIT_CONFIG;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **args = argv + i;
    /* global options may also follow the command */
    for (int k = 0; k < rest; k++) {
        if (strcmp(args[k], "-v") == 0 || strcmp(args[k], "-q") == 0 ||
            strcmp(args[k], "--verbose") == 0 || strcmp(args[k], "--quiet") == 0) {
            level = args[k][1] == 'q' || args[k][2] == 'q' ? ETL_LOG_ERROR
                    : level < ETL_LOG_TRACE               ? level + 1
                                                          : level;
            etl_log_setup(level, fmt, color);
            memmove(&args[k], &args[k + 1], (size_t)(rest - k - 1) * sizeof *args);
            rest--, k--;
        }
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(rest, args);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(rest, args);
    if (strcmp(cmd, "status") == 0)
        return cli_status(rest, args);
    if (strcmp(cmd, "reset") == 0)
        return cli_reset(rest, args);
    if (strcmp(cmd, "serve") == 0)
        return cli_serve(rest, args);
    if (strcmp(cmd, "plugins") == 0)
        return cli_plugins(rest, args);
    if (strcmp(cmd, "version") == 0) {
        printf("etl %s (plugin ABI %u)\n", ETL_VERSION, ETL_ABI_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    return cli_usage_error("unknown command '%s'", cmd);
}
