/*
 * util.h - small helpers shared inside libetl: a growable buffer, checked
 * number parsing, paths. Nothing here is part of the plugin ABI.
 */
#ifndef ETL_CORE_UTIL_H
#define ETL_CORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#ifndef ETL_API
#define ETL_API __attribute__((visibility("default")))
#endif
#include <stdint.h>

#define ETL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ETL_ERRLEN 512

/* A growable byte buffer, always NUL-terminated when len > 0 or after init. */
typedef struct etl_buf {
    char *data;
    size_t len;
    size_t cap;
    int oom; /* set once an allocation failed; later appends are no-ops */
} etl_buf_t;

void etl_buf_init(etl_buf_t *b);
void etl_buf_free(etl_buf_t *b);
void etl_buf_reset(etl_buf_t *b);
int etl_buf_reserve(etl_buf_t *b, size_t extra);
void etl_buf_add(etl_buf_t *b, const void *p, size_t n);
void etl_buf_adds(etl_buf_t *b, const char *s);
void etl_buf_addc(etl_buf_t *b, char c);
void etl_buf_printf(etl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void etl_buf_vprintf(etl_buf_t *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal (with quotes). */
void etl_buf_json_str(etl_buf_t *b, const char *s, size_t n);
/* Takes the data (caller frees); the buffer is left empty. NULL after OOM. */
char *etl_buf_take(etl_buf_t *b);

char *etl_strdup(const char *s);
char *etl_strndup(const char *s, size_t n);
char *etl_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whole-string decimal parse; 0 on success, -1 on junk or overflow. */
ETL_API int etl_parse_i64(const char *s, int64_t *out);
int etl_parse_bool(const char *s, int *out);
/* "30s" "5m" "2h" "90d" "1w" (also "1h30m"); 0 on success, seconds in *out. */
ETL_API int etl_parse_duration(const char *s, int64_t *out);
/* Inverse for messages: 90 -> "90s", 300 -> "5m". buf >= 32. */
const char *etl_format_duration(int64_t secs, char *buf, size_t n);

/* Joins dir and rel unless rel is absolute; caller frees. */
char *etl_path_join(const char *dir, const char *rel);
/* Folder part of a path ("." when none); caller frees. */
char *etl_path_dir(const char *path);
/* mkdir -p; 0 on success. */
int etl_mkdirs(const char *dir);
/* The folder holding the running executable; caller frees; NULL if unknown. */
char *etl_exe_dir(void);

/* Wall clock, microseconds since the epoch (UTC). */
int64_t etl_now_us(void);
/* Monotonic clock, microseconds. */
int64_t etl_mono_us(void);

/* Copies at most n-1 bytes and NUL-terminates; returns dst. */
char *etl_strlcpy(char *dst, const char *src, size_t n);
/* snprintf into an error buffer, never overflowing. */
void etl_errf(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
