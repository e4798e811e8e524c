/*
 * log.h - logging for the core and plugins: levels, text or JSON lines on
 * stderr, an optional per-run log file, a live progress line on terminals,
 * and redaction of secrets in everything written.
 *
 * Redaction: every value registered with etl_redact_add (secret plugin
 * options, tokens learned at run time) is replaced by "***" wherever it
 * appears, and so is the password of any URL ("scheme://user:***@host") and
 * of "password=..." in connection strings. Messages that reach the state
 * store (run errors, dead letters) pass through etl_redact too.
 */
#ifndef ETL_CORE_LOG_H
#define ETL_CORE_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "etl/etl.h"
#include "util.h"

typedef enum etl_log_format { ETL_LOGFMT_TEXT = 0, ETL_LOGFMT_JSON } etl_log_format_t;

/* Process-wide settings, set once by the CLI before anything runs. */
ETL_API void etl_log_setup(etl_level_t level, etl_log_format_t fmt, int color);
ETL_API etl_level_t etl_log_level(void);
ETL_API etl_log_format_t etl_log_format(void);

/* A run's logger: its lines also go to its log file when one is open. */
typedef struct etl_logger etl_logger_t;

/* Opens "<dir>/<pipeline>[-<client>]-<UTC time>-<run_id>.log" and deletes log
 * files of this pipeline older than keep_secs. Returns NULL and fills err on
 * failure. `name` is used in every line. */
etl_logger_t *etl_logger_new(const char *name, const char *dir, int64_t run_id, int64_t keep_secs,
                             char *err, size_t errlen);
void etl_logger_free(etl_logger_t *lg);
const char *etl_logger_path(const etl_logger_t *lg);

/* Writes one line (redacted). lg may be NULL (stderr only). `scope` names the
 * component or plugin ("run", "pgsqlite"), `stream` may be NULL. */
void etl_logv(etl_logger_t *lg, etl_level_t lvl, const char *scope, const char *stream,
              const char *fmt, va_list ap);
void etl_logf(etl_logger_t *lg, etl_level_t lvl, const char *scope, const char *stream,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The live line (terminals only; ignored elsewhere). done() erases it. */
ETL_API int etl_log_is_tty(void);
void etl_log_progress(const char *line);
void etl_log_progress_done(void);

/* Secrets. Values shorter than 4 bytes are not registered (they would
 * redact ordinary words). Thread safe. */
ETL_API void etl_redact_add(const char *secret);
/* Clears the registry (tests). */
void etl_redact_clear(void);
/* Appends a redacted copy of s[0..n) to out. */
void etl_redact(const char *s, size_t n, etl_buf_t *out);
/* A redacted, malloc'd copy (NULL on no memory). */
ETL_API char *etl_redact_dup(const char *s);

#endif
