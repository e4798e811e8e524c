/*
 * pg_read.c - reading a PostgreSQL table as a stream with COPY (SELECT ...
 * ORDER BY cursor, key) TO STDOUT: one statement, one snapshot, rows arrive
 * one at a time, so memory stays flat whatever the table's size.
 */
#include <stdlib.h>
#include <string.h>

#include "pgsqlite.h"

#define CHECKPOINT_EVERY 256

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                 : -1;
}

/* Undoes COPY text escaping in place; returns the new length. */
static size_t unescape(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            s[o++] = s[i];
            continue;
        }
        char c = s[++i];
        switch (c) {
        case 'b': s[o++] = '\b'; break;
        case 'f': s[o++] = '\f'; break;
        case 'n': s[o++] = '\n'; break;
        case 'r': s[o++] = '\r'; break;
        case 't': s[o++] = '\t'; break;
        case 'v': s[o++] = '\v'; break;
        case 'x': {
            int v = 0, k = 0;
            while (k < 2 && i + 1 < n && hexval(s[i + 1]) >= 0)
                v = v * 16 + hexval(s[++i]), k++;
            s[o++] = (char)v;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                int v = c - '0', k = 1;
                while (k < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7')
                    v = v * 8 + (s[++i] - '0'), k++;
                s[o++] = (char)v;
            } else {
                s[o++] = c; /* "\\" and any other escaped character */
            }
        }
    }
    return o;
}

/* bytea's "\x0a0b..." text form, decoded in place. */
static int unhex(char *s, size_t n, size_t *out)
{
    if (n < 2 || s[0] != '\\' || s[1] != 'x')
        return -1;
    size_t o = 0;
    for (size_t i = 2; i + 1 < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        s[o++] = (char)(hi * 16 + lo);
    }
    *out = o;
    return 0;
}

static void add_literal(pg_t *p, sqlbuf_t *b, const etl_value_t *v)
{
    char tmp[64];
    const char *t;
    size_t n = etl_value_text(v, tmp, sizeof tmp, &t);
    char *lit = PQescapeLiteral(p->conn, t, n);
    sb_add(b, lit ? lit : "NULL");
    PQfreemem(lit);
}

/* Whether a column's type sorts by collation (text, varchar, char): those
 * are ordered bytewise with COLLATE "C", as the core compares keys. */
static int collatable(const etl_column_t *c)
{
    static const char *const kinds[] = {"text", "character", "varchar", "char", "bpchar", "name"};
    if (c->type != ETL_T_TEXT || !c->native)
        return 0;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strncmp(c->native, kinds[i], strlen(kinds[i])) == 0)
            return 1;
    return 0;
}

/* The key columns, in schema order, text compared bytewise (as the core
 * checks a key-ordered scan). */
static void add_key_list(sqlbuf_t *b, const etl_schema_t *sc)
{
    for (size_t i = 0, k = 0; i < etl_schema_ncols(sc); i++) {
        const etl_column_t *c = etl_schema_col(sc, i);
        if (!(c->flags & ETL_COL_KEY))
            continue;
        sb_add(b, k++ ? ", " : "");
        sb_ident(b, c->name);
        if (collatable(c))
            sb_add(b, " COLLATE \"C\"");
    }
}

static etl_status_t parse_row(etl_ctx_t *ctx, const etl_schema_t *sc, char *line, size_t len,
                              etl_value_t *row)
{
    size_t n = etl_schema_ncols(sc), col = 0;
    char *p = line, *end = line + len;
    if (len && end[-1] == '\n')
        end--;
    while (col < n) {
        char *tab = memchr(p, '\t', (size_t)(end - p));
        char *f = p, *fe = tab ? tab : end;
        size_t fl = (size_t)(fe - f);
        const etl_column_t *c = etl_schema_col(sc, col);
        if (fl == 2 && f[0] == '\\' && f[1] == 'N') {
            row[col] = etl_null();
        } else {
            fl = unescape(f, fl);
            f[fl] = '\0'; /* the tab or newline it replaces is no longer needed */
            switch (c->type) {
            case ETL_T_INT:
                row[col] = etl_int(strtoll(f, NULL, 10));
                break;
            case ETL_T_DOUBLE:
                row[col] = etl_double(strtod(f, NULL));
                break;
            case ETL_T_BOOL:
                row[col] = etl_bool(f[0] == 't');
                break;
            case ETL_T_TIMESTAMP: {
                int64_t us;
                row[col] = etl_ts_parse(f, fl, &us) == 0 ? etl_ts(us) : etl_text(f, fl);
                break;
            }
            case ETL_T_BLOB: {
                size_t bl;
                if (unhex(f, fl, &bl) != 0)
                    return etl_fail(ctx, ETL_ERR_DATA, "column %s: bad bytea text", c->name);
                row[col] = etl_str(ETL_T_BLOB, f, bl);
                break;
            }
            default:
                row[col] = etl_str(c->type, f, fl);
            }
        }
        col++;
        if (!tab)
            break;
        p = tab + 1;
    }
    if (col != n)
        return etl_fail(ctx, ETL_ERR_DATA, "COPY row has %zu fields, expected %zu", col, n);
    return ETL_OK;
}

/* Stops a COPY in progress (the reader gave up) and drains the connection. */
static void abandon_copy(pg_t *p)
{
    PGcancel *c = PQgetCancel(p->conn);
    char err[256];
    if (c) {
        PQcancel(c, err, sizeof err);
        PQfreeCancel(c);
    }
    char *buf;
    while (PQgetCopyData(p->conn, &buf, 0) > 0)
        PQfreemem(buf);
    PGresult *r;
    while ((r = PQgetResult(p->conn)) != NULL)
        PQclear(r);
}

etl_status_t pg_read(pg_t *p, etl_ctx_t *ctx, const etl_read_t *req, etl_emitter_t *em)
{
    const etl_schema_t *sc = req->schema;
    size_t n = etl_schema_ncols(sc);
    int cursor = req->cursor ? etl_schema_find(sc, req->cursor) : -1;
    sqlbuf_t b;
    sb_init(&b);
    sb_add(&b, "COPY (SELECT ");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_add(&b, ", ");
        sb_ident(&b, etl_schema_col(sc, i)->name);
    }
    sb_add(&b, " FROM ");
    sb_qualified(&b, p, req->stream);
    if (req->by_key) {
        /* a full scan in key order (text bytewise, as the core checks it),
         * after a resume point when there is one */
        if (req->after) {
            sb_add(&b, " WHERE (");
            add_key_list(&b, sc);
            sb_add(&b, ") > (");
            for (size_t i = 0, j = 0; i < n; i++) {
                const etl_column_t *c = etl_schema_col(sc, i);
                if (!(c->flags & ETL_COL_KEY))
                    continue;
                sb_add(&b, j ? ", " : "");
                add_literal(p, &b, &req->after[j++]);
            }
            sb_add(&b, ")");
        }
        sb_add(&b, " ORDER BY ");
        add_key_list(&b, sc);
        cursor = -1; /* no checkpoints along the way: the order is not the cursor's */
    } else if (cursor >= 0 && req->since) {
        sb_add(&b, " WHERE ");
        sb_ident(&b, req->cursor);
        sb_add(&b, " >= ");
        add_literal(p, &b, req->since);
    }
    if (cursor >= 0) {
        sb_add(&b, " ORDER BY ");
        sb_ident(&b, req->cursor);
        for (size_t i = 0; i < n; i++) {
            if (etl_schema_col(sc, i)->flags & ETL_COL_KEY) {
                sb_add(&b, ", ");
                sb_ident(&b, etl_schema_col(sc, i)->name);
            }
        }
    }
    sb_add(&b, ") TO STDOUT");
    etl_value_t *row = calloc(n + 1, sizeof *row);
    etl_status_t st = ETL_OK;
    if (!row || b.oom) {
        st = etl_fail(ctx, ETL_ERR_NOMEM, "out of memory");
        goto done;
    }
    etl_log(ctx, ETL_LOG_DEBUG, "%s", sb_str(&b));
    PGresult *r = PQexec(p->conn, sb_str(&b));
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        st = pg_fail(p, ctx, r, "read");
        PQclear(r);
        goto done;
    }
    PQclear(r);
    uint64_t count = 0;
    char *line;
    int len;
    while ((len = PQgetCopyData(p->conn, &line, 0)) > 0) {
        st = parse_row(ctx, sc, line, (size_t)len, row);
        if (st == ETL_OK && cursor >= 0 && ++count % CHECKPOINT_EVERY == 0)
            st = etl_emit_checkpoint(em, &row[cursor]);
        if (st == ETL_OK)
            st = etl_emit(em, row);
        PQfreemem(line);
        if (st != ETL_OK) {
            abandon_copy(p);
            goto done;
        }
    }
    if (len == -2) {
        st = pg_fail(p, ctx, NULL, "read");
        goto done;
    }
    while ((r = PQgetResult(p->conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && st == ETL_OK)
            st = pg_fail(p, ctx, r, "read");
        PQclear(r);
    }
done:
    free(row);
    sb_free(&b);
    return st;
}
