/* cli.h - the commands of the etl executable, one file each. */
#ifndef ETL_CLI_H
#define ETL_CLI_H

#include "config.h"

int cli_usage_error(const char *fmt, const char *arg);
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **out);
int cli_load(const char *path, const char *client, etl_pipeline_t ***out, size_t *n);

int cli_status(int argc, char **argv);
int cli_reset(int argc, char **argv);
int cli_plugins(int argc, char **argv);
int cli_serve(int argc, char **argv);

#endif
