#!/usr/bin/env python3
"""SQLite -> SQLite: etl against the raw limit (bench/plain_copy: one SELECT,
one prepared INSERT per row, one transaction), on a 10-column table.

Measures: the first (full) run at N rows, the raw loop on the same data, an
incremental run with nothing changed, and etl's peak memory at N and 3N rows.
usage: bench/sqlite_copy.py [--rows N]   (default 1,000,000)
"""
import argparse
import os
import shutil
import tempfile

from benchlib import BUILD, ETL, measure, realistic_items, report

PIPELINE = """version: 1
name: bench
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: items
"""


def etl_copy(d, rows):
    for f in os.listdir(d):
        if f.startswith("dst.db"):
            os.remove(os.path.join(d, f))
    shutil.rmtree(os.path.join(d, ".etl"), ignore_errors=True)
    return measure([ETL, "-q", "run", os.path.join(d, "p.yaml")])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="etl-bench-")
    try:
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(PIPELINE)
        results = []
        for n in (a.rows, 3 * a.rows):
            realistic_items(os.path.join(d, "src.db"), n)
            if n == a.rows:
                raw = os.path.join(d, "raw.db")
                secs, rss = measure([os.path.join(BUILD, "bench", "plain_copy"),
                                     os.path.join(d, "src.db"), raw, "items"])
                os.remove(raw)
                results.append({"what": f"raw loop, {n:,} rows", "rows": n, "seconds": secs,
                                "rss_mib": rss})
                base = secs
            secs, rss = etl_copy(d, n)
            r = {"what": f"etl full, {n:,} rows", "rows": n, "seconds": secs, "rss_mib": rss}
            if n == a.rows:
                r["ratio"] = secs / base
            results.append(r)
            if n == a.rows:
                secs, rss = measure([ETL, "-q", "run", os.path.join(d, "p.yaml")])
                results.append({"what": f"etl incremental, nothing changed, {n:,} rows",
                                "rows": 0, "seconds": secs, "rss_mib": rss})
        print(f"SQLite -> SQLite, 10 columns ({os.cpu_count()} cores)")
        report("sqlite_copy", a.rows, results)
        small = [r for r in results if r["what"].startswith("etl full")]
        print(f"  peak memory {small[1]['rss_mib'] / small[0]['rss_mib']:.2f}x from "
              f"{a.rows:,} to {3 * a.rows:,} rows")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
