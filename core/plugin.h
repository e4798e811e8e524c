/*
 * plugin.h - finding, loading and checking plugins, and binding a pipeline's
 * `source:` / `sink:` options to a plugin's declared option table.
 *
 * Search path, first match wins: each folder of $ETL_PLUGIN_PATH (':'
 * separated), the folder of the running executable, the install folder
 * (ETL_PLUGIN_INSTALL_DIR). A plugin named NAME lives in etl-NAME.so.
 */
#ifndef ETL_CORE_PLUGIN_H
#define ETL_CORE_PLUGIN_H

#include <stddef.h>

#include "config.h"
#include "etl/etl.h"

typedef struct etl_plugin_lib {
    char *path;
    void *dl;
    const etl_plugin_t *desc;
} etl_plugin_lib_t;

/* The folders searched, in order; caller frees each and the array. */
size_t etl_plugin_dirs(char ***out);

/* Loads one file and checks its descriptor. On failure returns NULL and err
 * holds one line naming the file ("etl-x.so: not an etl plugin (...)"). */
etl_plugin_lib_t *etl_plugin_open_file(const char *path, char *err, size_t errlen);
/* Finds etl-<name>.so on the search path and loads it. */
etl_plugin_lib_t *etl_plugin_open(const char *name, char *err, size_t errlen);
void etl_plugin_close(etl_plugin_lib_t *lib);

/* Calls cb for every etl-*.so on the search path (a name found twice: only
 * the first). lib is NULL and err set when the file is not a usable plugin.
 * The callback does not own lib; it is closed after the call. */
ETL_API void etl_plugin_scan(void (*cb)(void *arg, const char *path, const etl_plugin_lib_t *lib,
                                const char *err),
                     void *arg);

/* One option after binding: the pipeline's value or the default. */
typedef struct etl_optval {
    const etl_option_def_t *def;
    char *value;   /* NULL when unset and no default */
    char **items;  /* list form (ETL_OPT_LIST), NULL-terminated */
    size_t nitems;
    int from_pipeline;
} etl_optval_t;

typedef struct etl_options {
    etl_optval_t *v;
    size_t n;
} etl_options_t;

/*
 * Checks cfg against the plugin's option table: unknown options (with the
 * list of known ones), missing required ones, values of the wrong type or
 * outside an enum. Errors read "FILE:LINE:COL: message (expected ...)".
 * Registers the values of secret options for redaction. Returns 0 or -1.
 */
int etl_plugin_bind(const etl_plugin_t *p, const etl_endpoint_cfg_t *cfg, const char *file,
                    etl_options_t **out, char *err, size_t errlen);
void etl_options_free(etl_options_t *o);
const etl_optval_t *etl_options_get(const etl_options_t *o, const char *name);

#endif
