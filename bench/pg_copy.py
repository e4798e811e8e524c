#!/usr/bin/env python3
"""PostgreSQL <-> SQLite on an orders-like table (uuid key and 8 more columns:
text, numeric, integer, timestamptz), every figure next to the limits measured
in the same run on a throw-away PostgreSQL server:

  PostgreSQL read limit   psql \\copy (SELECT ...) TO STDOUT into /dev/null
  PostgreSQL write limit  psql \\copy ... FROM a file, into an empty table with its primary key
  SQLite write limit      bench/plain_copy: one prepared INSERT per row, one transaction
  pgloader                SQLite -> PostgreSQL, paired with etl's runs

then etl PostgreSQL -> SQLite (full, then 1% of the rows changed) and etl
SQLite -> PostgreSQL (full into an empty table, then 1% changed), with wall
time, rows/s, peak RSS and CPU seconds of each process.

usage: bench/pg_copy.py [--rows N] [--pairs K]   (defaults 1,000,000 and 2)
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile

from benchlib import BUILD, ETL, measure_cpu, report

import pgserver  # noqa: E402  (tests/integration is on the path through benchlib)

TABLE = ("CREATE TABLE orders (id uuid PRIMARY KEY, customer text NOT NULL, status text NOT NULL,"
         " note text, total numeric(12,2) NOT NULL, qty integer NOT NULL, store_id integer NOT NULL,"
         " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)")

FILL = """INSERT INTO orders
SELECT gen_random_uuid(), 'customer ' || (g % 50000), (ARRAY['open','paid','shipped','void'])[1 + g % 4],
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'note for order ' || g || ', handle with care' END,
       round((g % 100000) / 7.0, 2), 1 + g % 9, 1 + g % 40,
       timestamptz '2024-01-01' + g * interval '17 seconds',
       timestamptz '2024-01-01' + g * interval '17 seconds' + (g % 10) * interval '1 hour'
FROM generate_series(1, {rows}) g"""

CHANGE = ("UPDATE orders SET status = 'refunded', updated_at = now()"
          " WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT {n})")


def pipeline(name, src, dst):
    return (f'version: 1\nname: {name}\nsource: {{plugin: pgsqlite, url: "{src}"}}\n'
            f'sink: {{plugin: pgsqlite, url: "{dst}"}}\nstreams:\n  - name: orders\n')


def psql_args(pg, db, *cmd):
    return ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", db,
            *cmd]


def row(what, rows, m, base=None):
    secs, rss, cpu = m
    r = {"what": what, "rows": rows, "seconds": secs, "rss_mib": rss, "cpu": cpu}
    if base:
        r["ratio"] = secs / base
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=2)
    a = ap.parse_args()
    n = a.rows
    d = tempfile.mkdtemp(prefix="etl-bench-pg-")
    pg = pgserver.PgServer().start()
    plain = os.path.join(BUILD, "bench", "plain_copy")
    try:
        src = pg.createdb("src")
        pg.psql(TABLE, "src")
        pg.psql(FILL.format(rows=n), "src")
        pg.psql("VACUUM ANALYZE orders", "src")
        csv = os.path.join(d, "orders.csv")
        pg.psql(f"\\copy (SELECT * FROM orders ORDER BY id) TO '{csv}' CSV", "src")
        down, up = [], []

        # --- the limits
        with open(os.devnull, "w") as null:
            read_lim = measure_cpu(psql_args(pg, "src", "-c", "\\copy (SELECT * FROM orders) TO STDOUT"),
                                   stdout=null)
        down.append(row(f"limit: PostgreSQL read (\\copy to /dev/null), {n:,} rows", n, read_lim))
        pg.createdb("raw")
        pg.psql(TABLE, "raw")
        write_lim = measure_cpu(psql_args(pg, "raw", "-c", f"\\copy orders FROM '{csv}' CSV"))
        up.append(row(f"limit: PostgreSQL write (\\copy into an empty table with its key), {n:,} rows",
                      n, write_lim))

        # --- PostgreSQL -> SQLite
        with open(os.path.join(d, "down.yaml"), "w") as f:
            f.write(pipeline("down", src, "sqlite:mid.db"))
        etl_down = measure_cpu([ETL, "-q", "run", os.path.join(d, "down.yaml")], cwd=d)
        mid = os.path.join(d, "mid.db")
        got = sqlite3.connect(mid).execute("SELECT count(*) FROM orders").fetchone()[0]
        assert got == n, got
        # the SQLite limit: the same rows, one prepared INSERT each, one transaction
        sqlite_lim = measure_cpu([plain, mid, os.path.join(d, "plain.db"), "orders"])
        slower = max(read_lim[0], sqlite_lim[0])
        down.append(row(f"limit: SQLite write (plain C loop, prepared INSERT), {n:,} rows", n, sqlite_lim))
        down.append(row(f"etl PostgreSQL -> SQLite, full, {n:,} rows", n, etl_down, slower))
        pg.psql(CHANGE.format(n=n // 100), "src")
        down.append(row(f"etl PostgreSQL -> SQLite, {n // 100:,} rows (1%) changed", n // 100,
                        measure_cpu([ETL, "-q", "run", os.path.join(d, "down.yaml")], cwd=d)))

        # --- SQLite -> PostgreSQL, etl and pgloader in pairs, each into an empty database, both
        # reading a copy of the rows with plain SQLite types (pgloader cannot parse the
        # "DECIMAL TEXT" that keeps numerics exact in the etl-made file)
        c = sqlite3.connect(os.path.join(d, "up.db"))
        c.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, status TEXT NOT NULL,"
                  " note TEXT, total NUMERIC NOT NULL, qty INTEGER NOT NULL, store_id INTEGER NOT NULL,"
                  " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
        c.execute(f"ATTACH '{mid}' AS m")
        c.execute("INSERT INTO orders SELECT id, customer, status, note, total, qty, store_id, created_at,"
                  " updated_at FROM m.orders")
        c.commit()
        c.close()
        mid = os.path.join(d, "up.db")
        for k in range(a.pairs):
            if shutil.which("pgloader"):
                url = pg.createdb(f"pgl{k}")
                up.append(row(f"pgloader SQLite -> PostgreSQL, {n:,} rows (pair {k + 1})", n,
                              measure_cpu(["pgloader", "--quiet", f"sqlite://{mid}", url]), write_lim[0]))
                got = pg.psql("SELECT count(*) FROM orders", f"pgl{k}", check=False)
                assert got and int(got[0][0]) == n, f"pgloader loaded {got}"
            url = pg.createdb(f"etl{k}")
            pg.psql(TABLE, f"etl{k}")
            with open(os.path.join(d, f"up{k}.yaml"), "w") as f:
                f.write(pipeline(f"up{k}", "sqlite:up.db", url))
            up.append(row(f"etl SQLite -> PostgreSQL, full, {n:,} rows (pair {k + 1})", n,
                          measure_cpu([ETL, "-q", "run", os.path.join(d, f"up{k}.yaml")], cwd=d),
                          write_lim[0]))
            got = pg.psql("SELECT count(*) FROM orders", f"etl{k}")[0][0]
            assert int(got) == n, got
        # 1% changed in the SQLite copy, then an incremental run up
        c = sqlite3.connect(mid)
        c.execute(f"UPDATE orders SET status = 'returned', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')"
                  f" WHERE rowid IN (SELECT rowid FROM orders ORDER BY rowid DESC LIMIT {n // 100})")
        c.commit()
        c.close()
        up.append(row(f"etl SQLite -> PostgreSQL, {n // 100:,} rows (1%) changed", n // 100,
                      measure_cpu([ETL, "-q", "run", os.path.join(d, "up0.yaml")], cwd=d)))

        print(f"PostgreSQL -> SQLite, orders-like table, uuid key ({os.cpu_count()} cores); "
              f"ratios against the slower limit ({slower:.2f} s)")
        report("pg_to_sqlite", n, down)
        print("SQLite -> PostgreSQL; ratios against the PostgreSQL write limit")
        report("sqlite_to_pg", n, up)
    finally:
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
