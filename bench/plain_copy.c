/*
 * plain_copy.c - the raw limit for SQLite -> SQLite: one SELECT stepped over
 * the source table and one prepared INSERT per row into the destination, all
 * in one transaction. No checkpoints, no dedup, no crash safety: what a
 * hand-written loop would do, to measure etl against.
 *
 * usage: plain_copy SRC.db DST.db TABLE
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "plain_copy: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: plain_copy SRC.db DST.db TABLE\n");
        return 2;
    }
    sqlite3 *src, *dst;
    if (sqlite3_open_v2(argv[1], &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die(src, "open source");
    if (sqlite3_open(argv[2], &dst) != SQLITE_OK)
        die(dst, "open destination");
    sqlite3_exec(dst, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
    char sql[4096];
    /* same table definition as the source */
    sqlite3_stmt *def;
    snprintf(sql, sizeof sql, "SELECT sql FROM sqlite_master WHERE type='table' AND name='%s'",
             argv[3]);
    if (sqlite3_prepare_v2(src, sql, -1, &def, NULL) != SQLITE_OK || sqlite3_step(def) != SQLITE_ROW)
        die(src, "table definition");
    if (sqlite3_exec(dst, (const char *)sqlite3_column_text(def, 0), NULL, NULL, NULL) != SQLITE_OK)
        die(dst, "create");
    sqlite3_finalize(def);

    sqlite3_stmt *sel, *ins;
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", argv[3]);
    if (sqlite3_prepare_v2(src, sql, -1, &sel, NULL) != SQLITE_OK)
        die(src, "select");
    int n = sqlite3_column_count(sel);
    int len = snprintf(sql, sizeof sql, "INSERT INTO \"%s\" VALUES (", argv[3]);
    for (int i = 0; i < n; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, "%s?", i ? "," : "");
    snprintf(sql + len, sizeof sql - (size_t)len, ")");
    if (sqlite3_prepare_v2(dst, sql, -1, &ins, NULL) != SQLITE_OK)
        die(dst, "insert");
    sqlite3_exec(dst, "BEGIN", NULL, NULL, NULL);
    long rows = 0;
    while (sqlite3_step(sel) == SQLITE_ROW) {
        for (int i = 0; i < n; i++)
            sqlite3_bind_value(ins, i + 1, sqlite3_column_value(sel, i));
        if (sqlite3_step(ins) != SQLITE_DONE)
            die(dst, "step");
        sqlite3_reset(ins);
        rows++;
    }
    if (sqlite3_exec(dst, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        die(dst, "commit");
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    sqlite3_close(src);
    sqlite3_close(dst);
    printf("%ld\n", rows);
    return 0;
}
