#!/usr/bin/env python3
"""Creates a table of N rows and 10 columns for the crash tests and the
benchmarks: items(id INTEGER PRIMARY KEY, code, name, qty, price, note, flag,
created_at, category, updated_at), with an index on updated_at. Deterministic.
"""
import argparse
import os
import sqlite3

SCHEMA = """
CREATE TABLE items (
  id INTEGER PRIMARY KEY, code TEXT NOT NULL, name TEXT NOT NULL, qty INTEGER NOT NULL,
  price REAL NOT NULL, note TEXT, flag INTEGER NOT NULL, created_at TEXT NOT NULL,
  category TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX items_updated ON items(updated_at);
"""

FILL = """
WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
INSERT INTO items
SELECT i, 'code-' || i, 'item number ' || i, i % 1000, (i % 100000) / 100.0,
       printf('%08x%08x', (i * 2654435761) % 4294967296, (i * 40503) % 65536),
       i % 2, datetime(1700000000 + i, 'unixepoch'), 'category-' || (i % 20),
       datetime(1700000000 + (i * 7919) % 31536000, 'unixepoch')
FROM n
"""


def build(path, rows, start=1):
    if os.path.exists(path) and start == 1:
        os.remove(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path)
    if start == 1:
        db.executescript(SCHEMA)
    db.execute(FILL, (start, start + rows - 1))
    db.commit()
    db.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=200000)
    a = ap.parse_args()
    build(a.out, a.rows)


if __name__ == "__main__":
    main()
