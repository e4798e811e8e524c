/* plugins.c - `etl plugins`: what is installed, what each plugin can do. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "plugin.h"
#include "run.h"

static const char *const type_names[] = {"string", "int", "bool", "duration",
                                         "enum", "list", "path"};

static void describe(const etl_plugin_t *d, const char *path, int verbose)
{
    printf("%-16s %-8s %-14s %s\n", d->name, d->version ? d->version : "?",
           d->source && d->sink ? "source, sink" : d->source ? "source" : "sink",
           d->description ? d->description : "");
    if (verbose)
        printf("  file: %s\n", path);
    for (const etl_option_def_t *o = d->options; o && o->name; o++) {
        char type[96];
        if (o->type == ETL_OPT_ENUM)
            snprintf(type, sizeof type, "%s", o->choices ? o->choices : "enum");
        else
            snprintf(type, sizeof type, "%s",
                     (unsigned)o->type < sizeof type_names / sizeof *type_names
                         ? type_names[o->type] : "?");
        printf("    %-16s %-22s %s%s%s", o->name, type, o->required ? "required. " : "",
               o->secret ? "secret. " : "", o->help ? o->help : "");
        if (o->default_value)
            printf(" (default %s)", o->default_value);
        putchar('\n');
    }
}

typedef struct scan {
    const char *only;
    int found, bad, verbose;
} scan_t;

static void on_plugin(void *arg, const char *path, const etl_plugin_lib_t *lib, const char *err)
{
    scan_t *s = arg;
    if (!lib) {
        if (!s->only) {
            fprintf(stderr, "warning: %s\n", err);
            s->bad++;
        }
        return;
    }
    if (s->only && strcmp(lib->desc->name, s->only) != 0)
        return;
    s->found++;
    describe(lib->desc, path, s->verbose);
}

int cli_plugins(int argc, char **argv)
{
    scan_t s = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-l") == 0)
            s.verbose = 1;
        else if (argv[i][0] == '-')
            return cli_usage_error("unknown option '%s' for plugins", argv[i]);
        else
            s.only = argv[i];
    }
    if (s.only)
        s.verbose = 1;
    etl_plugin_scan(on_plugin, &s);
    if (s.only && !s.found) {
        fprintf(stderr, "etl: no plugin named '%s'\n", s.only);
        return ETL_EXIT_CONFIG;
    }
    if (!s.only && !s.found)
        printf("no plugins found\n");
    return 0;
}
