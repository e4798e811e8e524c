/*
 * hooks.c - the embedded Lua 5.4 state behind transforms, resolvers and run
 * hooks: its allocator (the memory cap), its count hook (the instruction
 * budget), the sandbox, and every call into Lua.
 *
 * Every entry point does its Lua work inside one lua_pcall of a C function
 * (see run()): an API call that allocates can fail once the cap is reached,
 * and a failure outside a protected call would end the process through
 * Lua's panic handler. Conversions are in hooks_convert.c.
 *
 * The sandbox is the state's global table itself, so every chunk (hooks
 * file, transform file, inline chunk, require()d module, load()) runs in it:
 *   - opened: base, string, table, math, utf8; os with time, date, clock only
 *     (io, debug, package, coroutine are never opened);
 *   - removed: dofile, loadfile, string.dump;
 *   - replaced: load (text only), require (lua_dir only), print (the log),
 *     collectgarbage ("count" only), setmetatable (no __gc: finalizers run
 *     with hooks off, out of the budget's reach), pcall and xpcall (they
 *     re-raise an exhausted budget, the memory cap and an output refusal).
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hooks_internal.h"

#define DEFAULT_INSTRUCTIONS 10000000ull
#define DEFAULT_MEMORY ((size_t)64 << 20)
#define HOOK_EVERY 1000 /* instructions between two calls of the count hook */
#define MEM_PREFIX "not enough memory"

/* ------------------------------------------------------------ limits */

/* The allocator: refuses any growth that would take the state past its cap.
 * Shrinking and freeing always succeed, as Lua requires. */
static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    etl_lua_t *E = ud;
    if (!ptr)
        osize = 0; /* then osize encodes the kind of object, not a size */
    if (nsize == 0) {
        free(ptr);
        E->used -= osize;
        return NULL;
    }
    if (nsize > osize && nsize - osize > E->cap - E->used) {
        E->refused = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        if (nsize <= osize)
            return ptr; /* a shrink may not fail; the old block still fits */
        E->refused = 1;
        return NULL;
    }
    E->used = E->used - osize + nsize;
    return p;
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    etl_lua_t *E = etl_lua_of(L);
    E->count += HOOK_EVERY;
    if (E->count > E->budget) {
        char msg[80];
        if (!E->abort)
            E->abort = ETL_LUA_ABORT_BUDGET;
        snprintf(msg, sizeof msg, "instruction budget of %llu exceeded",
                 (unsigned long long)E->budget);
        luaL_where(L, 0); /* level 0 inside a hook: the function that was running */
        lua_pushstring(L, msg);
        lua_concat(L, 2);
        lua_error(L);
    }
}

static int on_panic(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    if (E && E->log)
        E->log(E->log_arg, ETL_LOG_ERROR,
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "Lua panic");
    return 0;
}

/* Warnings (warn(), errors in __gc) arrive in pieces; one log line each. */
static void on_warn(void *ud, const char *msg, int tocont)
{
    etl_lua_t *E = ud;
    if (!tocont && E->warn.len == 0 && msg[0] == '@')
        return; /* a control message ("@on", "@off") */
    etl_buf_adds(&E->warn, msg);
    if (tocont)
        return;
    if (E->log && !E->warn.oom)
        E->log(E->log_arg, ETL_LOG_WARN, E->warn.data);
    etl_buf_free(&E->warn);
}

/* ------------------------------------------------------------ protected calls */

/* Message handler: the error with a traceback of where it happened. */
static int traceback_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int is_memory_error(etl_lua_t *E, lua_State *L, int status)
{
    if (status == LUA_ERRMEM || E->abort == ETL_LUA_ABORT_MEMORY)
        return 1;
    /* lauxlib's buffers report a refused allocation as a plain error */
    return E->refused && (status == LUA_ERRERR ||
                          (lua_type(L, -1) == LUA_TSTRING &&
                           strncmp(lua_tostring(L, -1), MEM_PREFIX, strlen(MEM_PREFIX)) == 0));
}

static int collect_body(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}

/*
 * Runs fn(arg) as one call: budget and flags reset, protected, with a
 * traceback appended to errors when `traceback` is set. Returns 0, or -1
 * with the message in E->msg. The stack is left as it was.
 */
static int run(etl_lua_t *E, lua_CFunction fn, void *arg, int traceback)
{
    lua_State *L = E->L;
    int base = lua_gettop(L);
    E->count = 0;
    E->abort = ETL_LUA_ABORT_NONE;
    E->refused = 0;
    E->busy = 1;
    etl_buf_reset(&E->msg);
    if (traceback)
        lua_pushcfunction(L, traceback_handler);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    int status = lua_pcall(L, 1, 0, traceback ? base + 1 : 0);
    if (status != LUA_OK) {
        if (E->msg.oom)
            etl_buf_free(&E->msg);
        if (is_memory_error(E, L, status)) {
            if (E->cap % ((size_t)1 << 20) == 0)
                etl_buf_printf(&E->msg, "memory limit of %zu MiB exceeded", E->cap >> 20);
            else
                etl_buf_printf(&E->msg, "memory limit of %zu bytes exceeded", E->cap);
        } else if (status == LUA_ERRERR && E->abort == ETL_LUA_ABORT_BUDGET) {
            /* the budget ran out again inside a __tostring of the error */
            etl_buf_printf(&E->msg, "instruction budget of %llu exceeded",
                           (unsigned long long)E->budget);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            etl_buf_add(&E->msg, s, n);
        } else {
            etl_buf_printf(&E->msg, "(error object is a %s value)", luaL_typename(L, -1));
        }
    }
    lua_settop(L, base);
    if (status != LUA_OK && E->refused) {
        /* give back what the failed call left behind before the next one */
        lua_pushcfunction(L, collect_body);
        if (lua_pcall(L, 0, 0, 0) != LUA_OK)
            lua_settop(L, base);
    }
    E->busy = 0;
    return status == LUA_OK ? 0 : -1;
}

/* Raises an error whose message starts with the position of the Lua code
 * that called the current C function. */
static int caller_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    luaL_where(L, 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

/* ------------------------------------------------------------ the sandbox */

/* What pcall/xpcall do with a failed call: an abort (budget, memory, output)
 * is re-raised so that Lua code cannot swallow it. */
static int pcall_failed(lua_State *L, int status)
{
    etl_lua_t *E = etl_lua_of(L);
    if (!E->abort && is_memory_error(E, L, status))
        E->abort = ETL_LUA_ABORT_MEMORY;
    if (E->abort || E->count > E->budget)
        return lua_error(L); /* the error object is on top */
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1); /* true, f, args... */
    int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
    if (status != LUA_OK)
        return pcall_failed(L, status);
    return lua_gettop(L);
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, handler, true, f, args... */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    if (status != LUA_OK)
        return pcall_failed(L, status);
    return lua_gettop(L) - 2;
}

static int sb_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "count");
    if (strcmp(opt, "count") != 0)
        return caller_error(L, "collectgarbage: only \"count\" is allowed in hooks");
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
    return 1;
}

/* setmetatable without __gc: Lua runs finalizers with hooks turned off, so
 * the instruction budget could not stop an endless one. */
static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return caller_error(L, "setmetatable: __gc metamethods are not allowed in hooks");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* load()'s reader for a function chunk; slot 5 keeps the last piece alive. */
static const char *load_reader(lua_State *L, void *ud, size_t *size)
{
    (void)ud;
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *size = 0;
        return NULL;
    }
    if (!lua_isstring(L, -1))
        luaL_error(L, "reader function must return a string");
    lua_replace(L, 5);
    return lua_tolstring(L, 5, size);
}

/* load(chunk [, name [, mode [, env]]]): text chunks only; the default
 * environment is the sandbox (the state's global table). */
static int sb_load(lua_State *L)
{
    const char *mode = luaL_optstring(L, 3, "t");
    int has_env = !lua_isnone(L, 4);
    int status;
    if (strcmp(mode, "t") != 0) {
        lua_pushnil(L);
        lua_pushstring(L, "load: only text chunks are allowed in hooks (mode \"t\")");
        return 2;
    }
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, 1, &n);
        const char *name = luaL_optstring(L, 2, s);
        status = luaL_loadbufferx(L, s, n, name, "t");
    } else {
        const char *name = luaL_optstring(L, 2, "=(load)");
        luaL_checktype(L, 1, LUA_TFUNCTION);
        lua_settop(L, 5);
        status = lua_load(L, load_reader, NULL, name, "t");
    }
    if (status == LUA_ERRMEM)
        return lua_error(L); /* the memory cap is not load()'s to swallow */
    if (status != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env) {
        lua_pushvalue(L, 4);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

/* Letters, digits and '_' in segments joined by '.'. */
static int valid_module_name(const char *s, size_t n)
{
    size_t seg = 0;
    if (n == 0 || n > 200)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (!seg)
                return 0;
            seg = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_') {
            seg++;
        } else {
            return 0;
        }
    }
    return seg > 0;
}

/* require(name): "<lua_dir>/<name, '.' as '/'>.lua", text only, in the
 * sandbox, run once and cached (a module returning nothing caches true). */
static int sb_require(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    lua_settop(L, 1);
    if (!valid_module_name(name, n))
        return caller_error(L, "require: invalid module name '%s' (letters, digits and '_', "
                               "with '.' between folders)", name);
    if (!E->lua_dir)
        return caller_error(L, "require: no lua folder is configured for this pipeline");
    lua_rawgeti(L, LUA_REGISTRYINDEX, E->loaded_ref); /* 2: the cache */
    lua_pushvalue(L, 1);
    int t = lua_rawget(L, 2);
    if (t == LUA_TLIGHTUSERDATA)
        return caller_error(L, "require: module '%s' is being loaded (a require loop?)", name);
    if (t != LUA_TNIL)
        return 1;
    lua_pop(L, 1);

    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, E->lua_dir);
    luaL_addchar(&b, '/');
    for (size_t i = 0; i < n; i++)
        luaL_addchar(&b, name[i] == '.' ? '/' : name[i]);
    luaL_addstring(&b, ".lua");
    luaL_pushresult(&b); /* 3: the path */
    const char *path = lua_tostring(L, 3);

    int status = luaL_loadfilex(L, path, "t"); /* 4: the chunk */
    if (status == LUA_ERRFILE)
        return caller_error(L, "require: module '%s' not found (%s)", name, lua_tostring(L, -1));
    if (status != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, E); /* mark: loading */
    lua_rawset(L, 2);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 3);
    status = lua_pcall(L, 2, 1, 0);
    if (status != LUA_OK) {
        if (!E->abort && is_memory_error(E, L, status))
            E->abort = ETL_LUA_ABORT_MEMORY;
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        lua_rawset(L, 2); /* clearing an existing key allocates nothing */
        return lua_error(L);
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);
    return 1;
}

/* Joins luaL_tolstring of the values first..top with tabs and logs the line
 * at INFO. */
static void log_values(lua_State *L, int first)
{
    etl_lua_t *E = etl_lua_of(L);
    int top = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = first; i <= top; i++) {
        if (i > first)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    if (E->log)
        E->log(E->log_arg, ETL_LOG_INFO, lua_tostring(L, -1));
}

static int sb_print(lua_State *L)
{
    log_values(L, 1);
    return 0;
}

static int ctx_log(lua_State *L)
{
    /* ctx:log(msg), also tolerating ctx.log(msg) */
    int first = lua_type(L, 1) == LUA_TTABLE && lua_gettop(L) > 1 ? 2 : 1;
    log_values(L, first);
    return 0;
}

/* Sends a converted row to io->out; a refusal aborts the whole call. */
static void send_row(lua_State *L, etl_lua_t *E, const char *target, const etl_value_t *row,
                     const char *stream)
{
    int rc = E->io->out(E->io->arg, target, row);
    if (rc != 0) {
        E->abort = ETL_LUA_ABORT_OUTPUT;
        luaL_error(L, "stream '%s': the row was refused by the output (error %d)", stream, rc);
    }
}

/* ctx:emit(stream, rec): rec converted to that stream's columns. */
static int ctx_emit(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    int a = lua_type(L, 1) == LUA_TTABLE ? 2 : 1; /* ctx:emit or ctx.emit */
    const char *name = luaL_checkstring(L, a);
    luaL_checktype(L, a + 1, LUA_TTABLE);
    if (!E->io)
        return caller_error(L, "ctx:emit is only available in transform and resolve");
    const etl_schema_t *schema = E->io->schema ? E->io->schema(E->io->arg, name) : NULL;
    if (!schema)
        return caller_error(L, "ctx:emit: unknown stream '%s'", name);
    const etl_value_t *row = etl_lua_table_row(L, E, a + 1, schema, name, "ctx:emit got");
    send_row(L, E, name, row, name);
    return 0;
}

static int setup(lua_State *L)
{
    etl_lua_t *E = lua_touserdata(L, 1);
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},   {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},
    };
    static const luaL_Reg replaced[] = {
        {"pcall", sb_pcall},   {"xpcall", sb_xpcall},   {"load", sb_load},
        {"require", sb_require}, {"print", sb_print}, {"collectgarbage", sb_collectgarbage},
        {"setmetatable", sb_setmetatable},
    };
    static const char *const removed[] = {"dofile", "loadfile"};
    static const char *const os_kept[] = {"time", "date", "clock"};

    for (size_t i = 0; i < ETL_ARRAY_LEN(libs); i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    for (size_t i = 0; i < ETL_ARRAY_LEN(removed); i++) {
        lua_pushnil(L);
        lua_setfield(L, g, removed[i]);
    }
    for (size_t i = 0; i < ETL_ARRAY_LEN(replaced); i++) {
        lua_pushcfunction(L, replaced[i].func);
        lua_setfield(L, g, replaced[i].name);
    }
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump"); /* bytecode could never be loaded back anyway */
    lua_pop(L, 1);

    /* os: opened into a temporary table (never registered anywhere Lua can
     * reach) and three functions copied out of it */
    lua_pushcfunction(L, luaopen_os);
    lua_call(L, 0, 1);
    lua_createtable(L, 0, (int)ETL_ARRAY_LEN(os_kept));
    for (size_t i = 0; i < ETL_ARRAY_LEN(os_kept); i++) {
        lua_getfield(L, -2, os_kept[i]);
        lua_setfield(L, -2, os_kept[i]);
    }
    lua_setfield(L, g, LUA_OSLIBNAME);
    lua_pop(L, 1);

    lua_newtable(L);
    E->loaded_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    E->files_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 8);
    lua_pushstring(L, E->pipeline ? E->pipeline : "");
    lua_setfield(L, -2, "pipeline");
    if (E->client) {
        lua_pushstring(L, E->client);
        lua_setfield(L, -2, "client");
    }
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "run_id");
    lua_pushcfunction(L, ctx_emit);
    lua_setfield(L, -2, "emit");
    lua_pushcfunction(L, ctx_log);
    lua_setfield(L, -2, "log");
    E->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

etl_lua_t *etl_lua_new(const etl_lua_env_t *env, char *err, size_t errlen)
{
    static const etl_lua_env_t defaults;
    if (!env)
        env = &defaults;
    etl_lua_t *E = calloc(1, sizeof *E);
    if (!E) {
        etl_errf(err, errlen, "out of memory");
        return NULL;
    }
    E->cap = env->memory ? env->memory : DEFAULT_MEMORY;
    E->budget = env->instructions ? env->instructions : DEFAULT_INSTRUCTIONS;
    E->log = env->log;
    E->log_arg = env->log_arg;
    E->hooks_ref = E->ctx_ref = E->loaded_ref = E->files_ref = LUA_NOREF;
    etl_buf_init(&E->scratch);
    etl_buf_init(&E->msg);
    etl_buf_init(&E->warn);
    if ((env->lua_dir && !(E->lua_dir = etl_strdup(env->lua_dir))) ||
        (env->pipeline && !(E->pipeline = etl_strdup(env->pipeline))) ||
        (env->client && !(E->client = etl_strdup(env->client)))) {
        etl_errf(err, errlen, "out of memory");
        goto fail;
    }
    E->L = lua_newstate(cap_alloc, E);
    if (!E->L) {
        etl_errf(err, errlen, "cannot create a Lua state within the memory limit of %zu bytes",
                 E->cap);
        goto fail;
    }
    *(etl_lua_t **)lua_getextraspace(E->L) = E;
    lua_atpanic(E->L, on_panic);
    lua_setwarnf(E->L, on_warn, E);
    lua_sethook(E->L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    if (run(E, setup, E, 0) != 0) {
        etl_errf(err, errlen, "cannot set up the Lua sandbox: %s", E->msg.data ? E->msg.data : "");
        goto fail;
    }
    return E;
fail:
    etl_lua_free(E);
    return NULL;
}

void etl_lua_free(etl_lua_t *E)
{
    if (!E)
        return;
    if (E->L)
        lua_close(E->L); /* runs pending finalizers, still under the hook */
    free(E->lua_dir);
    free(E->pipeline);
    free(E->client);
    free(E->row);
    free(E->off);
    free(E->keys);
    etl_buf_free(&E->scratch);
    etl_buf_free(&E->msg);
    etl_buf_free(&E->warn);
    free(E);
}

/* ------------------------------------------------------------ ctx */

/* Pushes the shared ctx table with ctx.stream set (nil outside a stream). */
static void push_ctx(lua_State *L, etl_lua_t *E, const char *stream)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, E->ctx_ref);
    if (stream)
        lua_pushstring(L, stream);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, "stream");
}

static int set_run_body(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    const etl_lua_run_t *run_info = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, E->ctx_ref);
    lua_pushinteger(L, (lua_Integer)run_info->run_id);
    lua_setfield(L, -2, "run_id");
    lua_pushstring(L, run_info->mode);
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, run_info->direction);
    lua_setfield(L, -2, "direction");
    return 0;
}

void etl_lua_set_run(etl_lua_t *E, const etl_lua_run_t *run_info)
{
    if (!E || !run_info || E->busy)
        return;
    if (run(E, set_run_body, (void *)run_info, 0) != 0 && E->log)
        E->log(E->log_arg, ETL_LOG_ERROR, E->msg.data ? E->msg.data : "cannot set ctx");
}

/* ------------------------------------------------------------ loading */

/* Loads a file as a text chunk of the sandbox and runs it: one result. */
static void run_file(lua_State *L, const char *file)
{
    if (luaL_loadfilex(L, file, "t") != LUA_OK)
        lua_error(L);
    lua_call(L, 0, 1);
}

static int load_hooks_body(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    const char *file = lua_touserdata(L, 1);
    run_file(L, file);
    if (!lua_istable(L, -1))
        return luaL_error(L, "%s must return a table of functions, got %s", file,
                          luaL_typename(L, -1));
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (E->hooks_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, E->hooks_ref);
    E->hooks_ref = ref;
    return 0;
}

int etl_lua_load_hooks(etl_lua_t *E, const char *file, char *err, size_t errlen)
{
    if (!E || !file || E->busy) {
        etl_errf(err, errlen, "hooks: bad call");
        return -1;
    }
    if (run(E, load_hooks_body, (void *)file, 0) != 0) {
        etl_errf(err, errlen, "hooks: %s", E->msg.data ? E->msg.data : "");
        return -1;
    }
    return 0;
}

typedef struct compile_arg {
    const etl_transform_cfg_t *cfg;
    const char *stream;
    const char *what;
    int ref;
} compile_arg_t;

static int compile_body(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    compile_arg_t *c = lua_touserdata(L, 1);
    const char *text = c->cfg->text;
    int resolve = strcmp(c->what, "resolve") == 0;
    if (!text && c->cfg->kind != ETL_XF_NONE)
        return luaL_error(L, "no text given");
    switch (c->cfg->kind) {
    case ETL_XF_FILE:
        /* a file runs once per state, so the streams sharing it share its
         * upvalues and a table holding both transform and resolve works */
        lua_rawgeti(L, LUA_REGISTRYINDEX, E->files_ref);
        if (lua_getfield(L, -1, text) == LUA_TNIL) {
            lua_pop(L, 1);
            run_file(L, text);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, text);
        }
        if (lua_istable(L, -1))
            lua_getfield(L, -1, c->what);
        if (!lua_isfunction(L, -1))
            return luaL_error(L, "%s must return a function or a table with a '%s' function",
                              text, c->what);
        break;
    case ETL_XF_FUNCTION:
        if (E->hooks_ref == LUA_NOREF)
            return luaL_error(L, "function '%s' needs a hooks file, and none is loaded", text);
        lua_rawgeti(L, LUA_REGISTRYINDEX, E->hooks_ref);
        if (lua_getfield(L, -1, text) == LUA_TNIL)
            return luaL_error(L, "no function '%s' in the hooks file", text);
        if (!lua_isfunction(L, -1))
            return luaL_error(L, "'%s' in the hooks file is a %s, not a function", text,
                              luaL_typename(L, -1));
        break;
    case ETL_XF_INLINE: {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        /* no newline after the header: line numbers match the user's text */
        luaL_addstring(&b, resolve ? "return function(incoming, existing, ctx) "
                                   : "return function(rec, ctx) ");
        luaL_addstring(&b, text);
        luaL_addstring(&b, "\nend");
        luaL_pushresult(&b);
        size_t n;
        const char *src = lua_tolstring(L, -1, &n);
        const char *chunk = lua_pushfstring(L, "=[%s %s]", c->stream, c->what);
        if (luaL_loadbufferx(L, src, n, chunk, "t") != LUA_OK)
            return lua_error(L);
        lua_call(L, 0, 1);
        if (!lua_isfunction(L, -1))
            return luaL_error(L, "the inline chunk is not a function body");
        break;
    }
    default:
        return luaL_error(L, "nothing to compile");
    }
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int etl_lua_compile(etl_lua_t *E, const etl_transform_cfg_t *cfg, const char *stream,
                    const char *what, int *ref, char *err, size_t errlen)
{
    compile_arg_t c = {cfg, stream ? stream : "?", what ? what : "transform", LUA_NOREF};
    *ref = LUA_NOREF;
    if (!E || !cfg || E->busy) {
        etl_errf(err, errlen, "stream %s: %s: bad call", c.stream, c.what);
        return -1;
    }
    if (run(E, compile_body, &c, 0) != 0) {
        etl_errf(err, errlen, "stream %s: %s: %s", c.stream, c.what,
                 E->msg.data ? E->msg.data : "");
        return -1;
    }
    *ref = c.ref;
    return 0;
}

/* ------------------------------------------------------------ calls */

typedef struct call_arg {
    int ref;
    const char *stream;
    const etl_schema_t *schema;
    const etl_value_t *row;
    const etl_value_t *existing;
    int keep;
} call_arg_t;

static void push_hook(lua_State *L, int ref)
{
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION)
        luaL_error(L, "no compiled hook under reference %d", ref);
}

static int transform_body(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    call_arg_t *c = lua_touserdata(L, 1);
    push_hook(L, c->ref);
    etl_lua_push_record(L, c->schema, c->row);
    push_ctx(L, E, c->stream);
    lua_call(L, 2, 1);
    int r = lua_gettop(L);
    switch (lua_type(L, r)) {
    case LUA_TNIL:
        return 0;
    case LUA_TTABLE:
        break;
    default:
        return luaL_error(L,
                          "stream '%s': transform must return a table, nil or a list of "
                          "tables, got %s",
                          c->stream, luaL_typename(L, r));
    }
    if (lua_rawgeti(L, r, 1) == LUA_TTABLE) { /* a list: fan out */
        lua_pop(L, 1);
        lua_Unsigned n = lua_rawlen(L, r);
        for (lua_Unsigned i = 1; i <= n; i++) {
            if (lua_rawgeti(L, r, (lua_Integer)i) != LUA_TTABLE)
                return luaL_error(L,
                                  "stream '%s': transform returned a list whose item %d is a "
                                  "%s, not a table",
                                  c->stream, (int)i, luaL_typename(L, -1));
            send_row(L, E, NULL,
                     etl_lua_table_row(L, E, -1, c->schema, c->stream, "transform returned"),
                     c->stream);
            lua_pop(L, 1);
        }
        return 0;
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    if (!lua_next(L, r))
        return 0; /* {}: an empty list, nothing to send */
    lua_pop(L, 2);
    send_row(L, E, NULL, etl_lua_table_row(L, E, r, c->schema, c->stream, "transform returned"),
             c->stream);
    return 0;
}

/* Shared checks of transform/resolve; sets E->io for the call. */
static int call_start(etl_lua_t *E, call_arg_t *c, const etl_lua_io_t *io, etl_buf_t *err)
{
    if (!E || !io || !io->out || E->busy) {
        etl_buf_printf(err, "stream '%s': bad hook call", c->stream);
        return -1;
    }
    if (!c->schema && io->schema)
        c->schema = io->schema(io->arg, NULL);
    if (!c->schema) {
        etl_buf_printf(err, "stream '%s': no schema for the hook call", c->stream);
        return -1;
    }
    E->io = io;
    return 0;
}

static int call_end(etl_lua_t *E, int rc, etl_buf_t *err)
{
    E->io = NULL;
    if (rc != 0)
        etl_buf_add(err, E->msg.data ? E->msg.data : "", E->msg.len);
    return rc;
}

int etl_lua_transform(etl_lua_t *E, int ref, const char *stream, const etl_schema_t *schema,
                      const etl_value_t *row, const etl_lua_io_t *io, etl_buf_t *err)
{
    call_arg_t c = {ref, stream ? stream : "?", schema, row, NULL, 0};
    if (call_start(E, &c, io, err) != 0)
        return -1;
    return call_end(E, run(E, transform_body, &c, 1), err);
}

static int resolve_body(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    call_arg_t *c = lua_touserdata(L, 1);
    push_hook(L, c->ref);
    etl_lua_push_record(L, c->schema, c->row);
    etl_lua_push_record(L, c->schema, c->existing);
    push_ctx(L, E, c->stream);
    lua_call(L, 3, 1);
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        c->keep = 1;
        return 0;
    case LUA_TTABLE:
        send_row(L, E, NULL,
                 etl_lua_table_row(L, E, -1, c->schema, c->stream, "resolve returned"),
                 c->stream);
        c->keep = 0;
        return 0;
    default:
        return luaL_error(L, "stream '%s': resolve must return a table or nil, got %s",
                          c->stream, luaL_typename(L, -1));
    }
}

int etl_lua_resolve(etl_lua_t *E, int ref, const char *stream, const etl_schema_t *schema,
                    const etl_value_t *incoming, const etl_value_t *existing,
                    const etl_lua_io_t *io, int *keep, etl_buf_t *err)
{
    call_arg_t c = {ref, stream ? stream : "?", schema, incoming, existing, 1};
    *keep = 1;
    if (call_start(E, &c, io, err) != 0)
        return -1;
    int rc = call_end(E, run(E, resolve_body, &c, 1), err);
    if (rc == 0)
        *keep = c.keep;
    return rc;
}

/* ------------------------------------------------------------ run hooks */

typedef struct run_hook_arg {
    const char *name;
    const etl_lua_stat_t *stats;
    size_t n;
    const char *status;
} run_hook_arg_t;

static int run_hook_body(lua_State *L)
{
    etl_lua_t *E = etl_lua_of(L);
    run_hook_arg_t *h = lua_touserdata(L, 1);
    if (E->hooks_ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, E->hooks_ref);
    int t = lua_getfield(L, -1, h->name);
    if (t == LUA_TNIL)
        return 0;
    if (t != LUA_TFUNCTION)
        return luaL_error(L, "%s in the hooks file is a %s, not a function", h->name,
                          luaL_typename(L, -1));
    push_ctx(L, E, NULL);
    if (!h->stats) {
        lua_call(L, 1, 0);
        return 0;
    }
    lua_createtable(L, 0, h->n > INT_MAX ? INT_MAX : (int)h->n);
    for (size_t i = 0; i < h->n; i++) {
        const etl_lua_stat_t *s = &h->stats[i];
        const struct {
            const char *k;
            int64_t v;
        } f[] = {{"read", s->read},         {"created", s->created}, {"updated", s->updated},
                 {"unchanged", s->unchanged}, {"deleted", s->deleted}, {"deferred", s->deferred},
                 {"failed", s->failed}};
        lua_createtable(L, 0, (int)ETL_ARRAY_LEN(f));
        for (size_t k = 0; k < ETL_ARRAY_LEN(f); k++) {
            lua_pushinteger(L, (lua_Integer)f[k].v);
            lua_setfield(L, -2, f[k].k);
        }
        lua_setfield(L, -2, s->stream ? s->stream : "?");
    }
    lua_pushstring(L, h->status ? h->status : "");
    lua_call(L, 3, 0);
    return 0;
}

int etl_lua_before_run(etl_lua_t *E, etl_buf_t *err)
{
    run_hook_arg_t h = {"before_run", NULL, 0, NULL};
    if (!E || E->busy) {
        etl_buf_adds(err, "before_run: bad call");
        return -1;
    }
    if (run(E, run_hook_body, &h, 1) != 0) {
        etl_buf_add(err, E->msg.data ? E->msg.data : "", E->msg.len);
        return -1;
    }
    return 0;
}

int etl_lua_after_run(etl_lua_t *E, const etl_lua_stat_t *stats, size_t n, const char *status,
                      etl_buf_t *err)
{
    static const etl_lua_stat_t none;
    run_hook_arg_t h = {"after_run", stats ? stats : &none, stats ? n : 0, status};
    if (!E || E->busy) {
        etl_buf_adds(err, "after_run: bad call");
        return -1;
    }
    if (run(E, run_hook_body, &h, 1) != 0) {
        etl_buf_add(err, E->msg.data ? E->msg.data : "", E->msg.len);
        return -1;
    }
    return 0;
}
