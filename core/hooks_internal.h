/*
 * hooks_internal.h - what hooks.c (the state, the sandbox, the calls) and
 * hooks_convert.c (records <-> Lua tables, the JSON encoder) share. Not part
 * of any API outside core/hooks*.c.
 */
#ifndef ETL_CORE_HOOKS_INTERNAL_H
#define ETL_CORE_HOOKS_INTERNAL_H

#include <lua.h>

#include "hooks.h"

/* Why the current call is being torn down; once set, the sandbox's pcall and
 * xpcall re-raise instead of catching, so Lua code cannot swallow it. */
enum {
    ETL_LUA_ABORT_NONE = 0,
    ETL_LUA_ABORT_BUDGET,
    ETL_LUA_ABORT_MEMORY,
    ETL_LUA_ABORT_OUTPUT
};

/* An object key collected while encoding a table as JSON. */
typedef struct etl_lua_key {
    const char *s;
    size_t n;
} etl_lua_key_t;

struct etl_lua {
    lua_State *L;

    /* memory cap, enforced by the allocator */
    size_t used;
    size_t cap;
    int refused; /* an allocation was refused during the current call */

    /* instruction budget, counted by the count hook */
    uint64_t budget;
    uint64_t count;
    int abort;   /* ETL_LUA_ABORT_* for the current call */
    int busy;    /* inside a call; the state is not re-entrant */

    char *lua_dir;
    char *pipeline;
    char *client;
    void (*log)(void *arg, int level, const char *msg);
    void *log_arg;

    /* registry references */
    int hooks_ref;  /* the hooks table, or LUA_NOREF */
    int ctx_ref;    /* the ctx table shared by every call */
    int loaded_ref; /* require() cache: name -> module value */
    int files_ref;  /* transform files already run: path -> result */

    const etl_lua_io_t *io; /* during transform/resolve only */

    /* scratch reused by every conversion (owned here so a Lua error that
     * unwinds a conversion never leaks) */
    etl_value_t *row;
    size_t *off;        /* per column: offset into scratch, or SIZE_MAX */
    size_t rowcap;
    etl_buf_t scratch;  /* bytes of values formatted on the C side */
    etl_lua_key_t *keys;
    size_t nkeys, keycap;

    etl_buf_t msg;  /* the last call's error message */
    etl_buf_t warn; /* a warning being assembled from pieces */
};

/* The etl_lua_t a state belongs to (kept in the state's extra space). */
static inline etl_lua_t *etl_lua_of(lua_State *L)
{
    return *(etl_lua_t **)lua_getextraspace(L);
}

/* Pushes a table holding one row of `schema`, keyed by column name. */
void etl_lua_push_record(lua_State *L, const etl_schema_t *schema, const etl_value_t *row);

/*
 * Converts the table at idx into a row aligned to `schema` and returns it
 * (memory owned by E; string values point into the table or E->scratch, so
 * they are valid while the table stays on the stack and until the next
 * conversion). Raises a Lua error naming `stream` and the field for an
 * unknown field or a value the column cannot take; `verb` says who produced
 * the table ("transform returned", "ctx:emit got", ...).
 */
const etl_value_t *etl_lua_table_row(lua_State *L, etl_lua_t *E, int idx,
                                     const etl_schema_t *schema, const char *stream,
                                     const char *verb);

#endif
