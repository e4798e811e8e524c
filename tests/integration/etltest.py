"""Shared helpers for the integration tests (python3 standard library only).

Tests drive the real `etl` binary in a temporary folder and assert on what
lands in real databases and in the state store.
"""
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("ETL_SOURCE") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("ETL_BUILD") or os.path.join(SOURCE, "build")
ETL = os.environ.get("ETL_BIN") or os.path.join(BUILD, "etl")
FIXTURES = os.path.join(SOURCE, "tests", "fixtures")

sys.path.insert(0, os.path.join(SOURCE, "scripts"))
import make_pos_db  # noqa: E402

POS_TABLES = ["stores", "terminals", "users", "shifts", "suppliers", "products",
              "orders", "order_items", "payments"]


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def run(*args, env=None, cwd=None, timeout=600, check=None):
    e = dict(os.environ)
    e.pop("OFFICE_URL", None)
    e.setdefault("NO_COLOR", "1")
    if env:
        e.update(env)
    p = subprocess.run([ETL, *args], capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout)
    r = Result(p)
    if check is not None and r.code != check:
        raise AssertionError(f"etl {' '.join(args)}: expected exit {check}, got {r!r}")
    return r


def rows(db, table, order="1"):
    c = sqlite3.connect(db)
    try:
        return c.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
    finally:
        c.close()


def query(db, sql, *params):
    c = sqlite3.connect(db)
    try:
        return c.execute(sql, params).fetchall()
    finally:
        c.close()


def table_digest(db):
    """(rows, distinct ids, md5 of every row in id order) of an items table,
    streamed."""
    c = sqlite3.connect(db)
    h = hashlib.md5()
    n = 0
    for row in c.execute("SELECT * FROM items ORDER BY id"):
        h.update(repr(row).encode())
        n += 1
    distinct = c.execute("SELECT count(DISTINCT id) FROM items").fetchone()[0]
    c.close()
    return n, distinct, h.hexdigest()


def execute(db, sql, *params):
    c = sqlite3.connect(db)
    try:
        c.execute(sql, params)
        c.commit()
    finally:
        c.close()


def last_run_counts(state_db, pipeline):
    """{stream: {read, created, ...}} of the pipeline's newest run."""
    c = sqlite3.connect(state_db)
    c.row_factory = sqlite3.Row
    try:
        rid = c.execute("SELECT max(id) FROM runs WHERE pipeline=?", (pipeline,)).fetchone()[0]
        out = {}
        for r in c.execute("SELECT * FROM run_streams WHERE run_id=?", (rid,)):
            out[(r["stream"], r["direction"])] = dict(r)
        return out
    finally:
        c.close()


class Workdir(unittest.TestCase):
    """A test with its own temporary folder holding pipelines and databases."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="etl-it-")

    def tearDown(self):
        if os.environ.get("ETL_KEEP_TMP"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def pos_db(self, orders=200, seed=7, name="var/office.db"):
        p = self.path(name)
        make_pos_db.build(p, orders, seed)
        return p

    def status(self, pipeline, *extra):
        r = run("status", pipeline, "--json", *extra, check=0)
        return json.loads(r.out)


# ---------------------------------------------------------------- POS comparison

import datetime
import decimal

# child column -> parent table, per table of the POS sample
POS_FKS = {
    "terminals": {"store_id": "stores"},
    "users": {"store_id": "stores"},
    "shifts": {"terminal_id": "terminals", "user_id": "users"},
    "products": {"store_id": "stores", "supplier_id": "suppliers"},
    "orders": {"store_id": "stores", "shift_id": "shifts"},
    "order_items": {"order_id": "orders", "product_id": "products"},
    "payments": {"order_id": "orders"},
}
# terminal column -> office column
POS_RENAMES = {"products": {"stock_quantity": "master_stock_quantity"}}
TERMINAL_ONLY = {"local_id", "server_id", "sync_status", "sync_operation", "last_sync_at",
                 "available_quantity"}


def norm(v):
    """One comparable form for values the two ends spell differently."""
    if v is None:
        return None
    if isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool):
        return decimal.Decimal(str(v)).normalize()
    s = str(v)
    if len(s) >= 19 and s[4] == "-" and s[7] == "-" and s[10] in " T" and s[13] == ":":
        t = s.replace("T", " ").replace("Z", "+00:00")
        if t.endswith("+00"):
            t += ":00"
        try:
            d = datetime.datetime.fromisoformat(t)
            if d.tzinfo is None:
                d = d.replace(tzinfo=datetime.timezone.utc)
            return d.astimezone(datetime.timezone.utc)
        except ValueError:
            return s
    try:
        if s.strip() and s.strip()[0] in "-0123456789" and "-" not in s[1:]:
            return decimal.Decimal(s).normalize()
    except decimal.InvalidOperation:
        pass
    return s


def office_view(rows_by_table):
    """{table: {id: {col: norm(value)}}} from {table: [dict rows]} of the office."""
    out = {}
    for t, rs in rows_by_table.items():
        out[t] = {r["id"]: {k: norm(v) for k, v in r.items() if k not in ("id", "price_with_tax")}
                  for r in rs}
    return out


def sqlite_dicts(db, table):
    c = sqlite3.connect(db)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute(f'SELECT * FROM "{table}"')]
    finally:
        c.close()


def terminal_view(db, tables=POS_TABLES):
    """The terminal's rows keyed by server id, fks resolved to server ids, renamed
    like the office, terminal-only columns dropped."""
    rows = {t: sqlite_dicts(db, t) for t in tables}
    local_to_server = {t: {r["local_id"]: r["server_id"] for r in rs} for t, rs in rows.items()}
    out = {}
    for t, rs in rows.items():
        out[t] = {}
        for r in rs:
            d = {}
            for k, v in r.items():
                if k in TERMINAL_ONLY:
                    continue
                if k in POS_FKS.get(t, {}) and v is not None:
                    v = local_to_server[POS_FKS[t][k]].get(v, f"<dangling {v}>")
                d[POS_RENAMES.get(t, {}).get(k, k)] = norm(v)
            out[t][r["server_id"]] = d
    return out
