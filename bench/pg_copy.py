#!/usr/bin/env python3
"""SQLite -> PostgreSQL: etl against the raw limit (COPY of the same rows from a
CSV file, through psql) and against pgloader (SQLite -> PostgreSQL), measured
in the same run on a throw-away PostgreSQL server, on a 10-column table.

usage: bench/pg_copy.py [--rows N]   (default 1,000,000)
"""
import argparse
import os
import shutil
import subprocess
import tempfile

from benchlib import ETL, measure, realistic_items, report

import pgserver  # noqa: E402  (tests/integration is on the path through benchlib)

TABLE = ("CREATE TABLE items (id bigint PRIMARY KEY, code text NOT NULL, name text NOT NULL,"
         " qty bigint NOT NULL, price double precision NOT NULL, note text, flag bigint NOT NULL,"
         " created_at text NOT NULL, category text NOT NULL, updated_at text NOT NULL)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="etl-bench-pg-")
    pg = pgserver.PgServer().start()
    try:
        src = os.path.join(d, "src.db")
        realistic_items(src, a.rows)
        csv = os.path.join(d, "items.csv")
        with open(csv, "w") as f:
            subprocess.run(["sqlite3", "-csv", src, "SELECT * FROM items ORDER BY id"], stdout=f,
                           check=True)
        results = []
        # the raw limit: COPY of the rows into a table with its primary key
        pg.createdb("raw")
        pg.psql(TABLE, "raw")
        secs, rss = measure(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                             "postgres", "-d", "raw", "-c", f"\\copy items FROM '{csv}' CSV"])
        results.append({"what": f"COPY from CSV, {a.rows:,} rows", "rows": a.rows, "seconds": secs,
                        "rss_mib": rss})
        base = secs
        # pgloader, SQLite -> PostgreSQL (it creates the table itself)
        if shutil.which("pgloader"):
            url = pg.createdb("pgl")
            secs, rss = measure(["pgloader", "--quiet", f"sqlite://{src}", url])
            results.append({"what": f"pgloader, {a.rows:,} rows", "rows": a.rows, "seconds": secs,
                             "rss_mib": rss, "ratio": secs / base})
        # etl, into the same kind of table
        url = pg.createdb("etl")
        pg.psql(TABLE, "etl")
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(f'version: 1\nname: pgbench\nsource: {{plugin: pgsqlite, url: "sqlite:src.db"}}\n'
                    f'sink: {{plugin: pgsqlite, url: "{url}"}}\nstreams:\n  - name: items\n')
        secs, rss = measure([ETL, "-q", "run", os.path.join(d, "p.yaml")])
        results.append({"what": f"etl full, {a.rows:,} rows", "rows": a.rows, "seconds": secs,
                        "rss_mib": rss, "ratio": secs / base})
        secs, rss = measure([ETL, "-q", "run", os.path.join(d, "p.yaml")])
        results.append({"what": "etl incremental, nothing changed", "rows": 0, "seconds": secs,
                        "rss_mib": rss})
        got = pg.psql("SELECT count(*) FROM items", "etl")[0][0]
        assert int(got) == a.rows, got
        print(f"SQLite -> PostgreSQL, 10 columns ({os.cpu_count()} cores)")
        report("pg_copy", a.rows, results)
    finally:
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
