"""Shared helpers for the integration tests (python3 standard library only).

Tests drive the real `etl` binary in a temporary folder and assert on what
lands in real databases and in the state store.
"""
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
