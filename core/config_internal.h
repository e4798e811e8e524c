/*
 * config_internal.h - what the pipeline loader's files share; not an API.
 *
 *   interp.c       ${...} interpolation of one scalar (no YAML in it)
 *   config_yaml.c  the YAML document: loading, error messages with marks,
 *                  typed reads of nodes (strings, numbers, lists, pairs),
 *                  key checks of mappings, the alias budget
 *   config.c       the DSL itself: keys, defaults, paths, fk order, matrix
 */
#ifndef ETL_CORE_CONFIG_INTERNAL_H
#define ETL_CORE_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config.h"

/* ------------------------------------------------------------ interp.c */

/* A ${file:...} larger than this is refused: it is meant for a secret or a
 * short value, and a bound keeps /dev/zero-like paths from hanging the load. */
#define ETL_INTERP_FILE_MAX (1024 * 1024)

typedef enum etl_interp_matrix {
    ETL_INTERP_NO_MATRIX = 0, /* the pipeline has no matrix: ${matrix.x} is an error */
    ETL_INTERP_IN_MATRIX,     /* reading the matrix itself: ${matrix.x} is an error */
    ETL_INTERP_ENTRY          /* `matrix` holds the current entry's values */
} etl_interp_matrix_t;

typedef struct etl_interp {
    const char *dir; /* ${file:rel} resolves against it */
    etl_getenv_fn getenv; /* NULL: getenv(3) */
    void *getenv_arg;
    etl_interp_matrix_t matrix_state;
    const etl_pair_t *matrix; /* the current entry's scalars */
    size_t nmatrix;
} etl_interp_t;

typedef enum etl_interp_status {
    ETL_INTERP_OK = 0,
    ETL_INTERP_BAD,  /* msg holds "message (expected ...)" without a location */
    ETL_INTERP_NOMEM,
    ETL_INTERP_UNSET /* as BAD: an environment variable is not set */
} etl_interp_status_t;

/*
 * Expands ${VAR}, ${VAR:-default}, ${file:path}, ${matrix.KEY} and $$ in
 * s[0..n). `key` names the setting in messages. On success *out is a new
 * NUL-terminated string the caller frees.
 */
etl_interp_status_t etl_interp(const etl_interp_t *ip, const char *key, const char *s, size_t n,
                               char **out, char *msg, size_t msglen);

/* ------------------------------------------------------------ config_yaml.c */

/* Mappings and lists nest at most this deep; a pipeline needs about 6. */
#define ETL_CFG_MAX_DEPTH 64

/* The state of one load. */
typedef struct etl_cfg {
    const char *file; /* as given, for messages */
    char *dir;        /* absolute folder of the file */
    const etl_load_opts_t *opts;
    yaml_document_t doc;
    int have_doc;
    char *err;
    size_t errlen;
    int failed; /* err holds the first problem; later ones are dropped */
    int nomem;
    int unset;  /* the last etl_cfg_str failed on an unset environment variable */
    /* Alias budget: a node reached a second time within one walk was reached
     * through an alias. Their count is bounded so a "billion laughs" document
     * is refused instead of expanded. */
    unsigned char *seen;
    size_t nnodes;
    size_t reused;
    size_t reuse_limit;
    etl_interp_t ip;
} etl_cfg_t;

/* Parses text into c->doc; a YAML error becomes the message. 0 or -1. */
int etl_cfg_yaml_load(etl_cfg_t *c, const char *text, size_t len);
void etl_cfg_yaml_free(etl_cfg_t *c);
/* Starts a new walk of the document (a new matrix entry): clears the marks. */
void etl_cfg_walk_reset(etl_cfg_t *c);

/* Records "FILE:LINE:COL: message (expected ...)" unless a problem was
 * already recorded; returns -1 for `return etl_cfg_fail(...)`. */
int etl_cfg_fail(etl_cfg_t *c, yaml_mark_t m, const char *expected, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int etl_cfg_oom(etl_cfg_t *c);

etl_loc_t etl_cfg_loc(yaml_mark_t m);

/* The node with that index, counted against the alias budget; NULL (with
 * the message set) when the budget is spent or the index is bad. */
yaml_node_t *etl_cfg_node(etl_cfg_t *c, int index);
/* "a mapping", "a list", "a string". */
const char *etl_cfg_kind(const yaml_node_t *n);
/* A plain ~, null or empty scalar: treated as if the key were absent. */
int etl_cfg_is_null(const yaml_node_t *n);
/* Fails with "'what' must be KIND, not ..." unless n has that type. */
int etl_cfg_want(etl_cfg_t *c, const yaml_node_t *n, yaml_node_type_t type, const char *what,
                 const char *expected);

/*
 * Checks a mapping whose keys are fixed: every key a string, known (one of
 * names) and given once. vals[i] receives the value node of names[i], or
 * NULL when absent or null; keys[i] (optional) its key node. `where` goes
 * after the key in messages: " in stream 'orders'", or "" at the top.
 */
int etl_cfg_map(etl_cfg_t *c, yaml_node_t *map, const char *what, const char *where,
                const char *const *names, size_t nnames, yaml_node_t **vals, yaml_node_t **keys);

/* The value of `key` in a mapping, or NULL (absent, null, or not a
 * mapping). A raw look-up for reading one key ahead of the checks; it does
 * not count against the alias budget. */
yaml_node_t *etl_cfg_find(etl_cfg_t *c, yaml_node_t *map, const char *key);

/* Visits a free-form mapping (rename, fk, options...): keys are strings,
 * each once; fn is called per pair and returns 0 or -1. */
typedef int (*etl_cfg_pair_fn)(etl_cfg_t *c, yaml_node_t *key, const char *name,
                               yaml_node_t *val, void *arg);
int etl_cfg_each_pair(etl_cfg_t *c, yaml_node_t *map, const char *what, const char *where,
                      etl_cfg_pair_fn fn, void *arg);

/* A scalar's text after interpolation; not empty unless allow_empty. */
int etl_cfg_str(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                int allow_empty, char **out);
/* Replaces *slot (freeing the old value) with the scalar's text. */
int etl_cfg_str_set(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                    char **slot);
int etl_cfg_int(etl_cfg_t *c, yaml_node_t *n, const char *what, int64_t lo, int64_t hi,
                int64_t *out);
/* A duration in seconds ("0" is allowed when min is 0). */
int etl_cfg_duration(etl_cfg_t *c, yaml_node_t *n, const char *what, int64_t min, int64_t *out);
/* Index of the scalar's text in names. */
int etl_cfg_enum(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *const *names,
                 size_t nnames, int *out);
/* A list of strings, or one string split on ",". Items are trimmed and not
 * empty. Replaces *out. */
int etl_cfg_strlist(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *expected,
                    etl_strlist_t *out);
/* A mapping of strings to strings, in document order. Replaces *out. */
int etl_cfg_pairs(etl_cfg_t *c, yaml_node_t *n, const char *what, const char *where,
                  const char *expected, etl_pair_t **out, size_t *nout);

/* "a, b, c" from a list of names, into buf (truncated with "..."). */
const char *etl_cfg_join(const char *const *names, size_t n, char *buf, size_t len);

void etl_cfg_strlist_free(etl_strlist_t *l);
int etl_cfg_strlist_copy(etl_strlist_t *dst, const etl_strlist_t *src);
void etl_cfg_pairs_free(etl_pair_t *v, size_t n);

#endif
