"""The state store on PostgreSQL (`state: postgres://...`), against a server the
test starts: pipelines/pos.yaml both ways gives what it gives with the SQLite
store; status and reset; kill -9 and a re-run lose and duplicate nothing; one
run of a pipeline at a time through its lease; a wrong password is a clear
error that shows no password; tables made on first open, by several
processes at once; and the store's unit tests (leases, racing processes)
run on PostgreSQL too."""
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import unittest

import pgserver
from etltest import (BUILD, ETL, POS_TABLES, SOURCE, Workdir, execute, last_run_counts, make_pos_db,
                     office_view, query, run, sqlite_dicts, table_digest, terminal_view)

sys.path.insert(0, os.path.join(SOURCE, "scripts"))
import make_items_db  # noqa: E402

_ids = itertools.count(1)
COUNT_COLS = ("read", "created", "updated", "unchanged", "deleted", "deferred", "failed")


def setUpModule():
    pgserver.shared()


def tearDownModule():
    pgserver.stop_shared()


def pos_yaml(dest):
    """pipelines/pos.yaml with its state store taken from STATE_URL."""
    with open(os.path.join(SOURCE, "pipelines", "pos.yaml")) as f:
        text = f.read()
    assert "\nname: pos\n" in text
    with open(dest, "w") as f:
        f.write(text.replace("\nname: pos\n", '\nname: pos\nstate: "${STATE_URL}"\n'))


class PgState(Workdir):
    def setUp(self):
        super().setUp()
        self.pg = pgserver.shared()
        self.db = f"state{next(_ids)}"
        self.url = self.pg.createdb(self.db)

    def sql(self, q):
        return self.pg.psql(q, self.db)

    def pg_counts(self, pipeline):
        """{(stream, direction): counts} of the pipeline's newest run in the PG store."""
        rows = self.pg.dicts(f"SELECT * FROM run_streams WHERE run_id = (SELECT max(id) FROM runs"
                             f" WHERE pipeline = '{pipeline}')", self.db)
        return {(r["stream"], r["direction"]): {k: int(r[k]) for k in COUNT_COLS} for r in rows}


class PosOnPgState(PgState):
    """The same POS data synced twice side by side: one pipeline keeps its state
    in SQLite, the other in PostgreSQL. Everything must come out the same."""

    def setUp(self):
        super().setUp()
        self.ends = {}
        for kind in ("sqlite", "pg"):
            d = self.path(kind)
            make_pos_db.build(os.path.join(d, "var", "office.db"), 300, 7)
            make_pos_db.terminal(os.path.join(d, "var", "terminal.db"))
            pos_yaml(os.path.join(d, "pos.yaml"))
            self.ends[kind] = d
        self.env = {"sqlite": {"STATE_URL": "sqlite:.etl/pos.state.db"},
                    # the URL form libpq calls postgresql:// works too
                    "pg": {"STATE_URL": self.url.replace("postgres://", "postgresql://", 1)}}

    def run_both(self, *args):
        for kind in ("sqlite", "pg"):
            r = run("run", os.path.join(self.ends[kind], "pos.yaml"), *args, env=self.env[kind])
            self.assertEqual(r.code, 0, (kind, r))

    def counts(self):
        lite = last_run_counts(os.path.join(self.ends["sqlite"], ".etl", "pos.state.db"), "pos")
        lite = {k: {c: v[c] for c in COUNT_COLS} for k, v in lite.items()}
        return lite, self.pg_counts("pos")

    def office(self, kind):
        return os.path.join(self.ends[kind], "var", "office.db")

    def terminal(self, kind):
        return os.path.join(self.ends[kind], "var", "terminal.db")

    def assert_same_everywhere(self):
        lite, pg = self.counts()
        self.assertEqual(pg, lite)
        views = {}
        for kind in ("sqlite", "pg"):
            office = office_view({t: sqlite_dicts(self.office(kind), t) for t in POS_TABLES})
            term = terminal_view(self.terminal(kind))
            for t in POS_TABLES:
                self.assertEqual(office[t], term[t], (kind, t))
            views[kind] = term
        self.assertEqual(views["pg"], views["sqlite"])

    def status(self, kind):
        r = run("status", os.path.join(self.ends[kind], "pos.yaml"), "--json", env=self.env[kind],
                check=0)
        return json.loads(r.out)

    def test_two_way_runs_match_the_sqlite_store(self):
        self.run_both()
        lite, pg = self.counts()
        self.assertEqual(pg[("orders", "forward")]["created"], 300)
        self.assert_same_everywhere()
        self.run_both()
        _, pg = self.counts()
        self.assertEqual(sum(c["created"] + c["updated"] for c in pg.values()), 0)
        self.assert_same_everywhere()
        # the same changes on both sides of both copies
        for kind in ("sqlite", "pg"):
            office, term = self.office(kind), self.terminal(kind)
            store, shift = query(office, "SELECT store_id, shift_id FROM orders LIMIT 1")[0]
            execute(office, "INSERT INTO orders VALUES ('11111111-1111-4111-8111-111111111111',"
                    " ?, ?, 'R999999', 'Zed', 10.5, 0, 0, 0, 'completed', '2026-01-02 10:00:00',"
                    " '2026-01-02 10:00:00', NULL)", store, shift)
            execute(office, "UPDATE products SET selling_price = 99.99, updated_at ="
                    " '2026-01-02 11:00:00' WHERE id = (SELECT min(id) FROM products)")
            t_store, t_shift = query(term, "SELECT store_id, shift_id FROM orders LIMIT 1")[0]
            execute(term, "INSERT INTO orders (store_id, shift_id, receipt_number, customer_name,"
                    " total_amount, discount_amount, discount_percentage, delivery_cost, status,"
                    " created_at, updated_at) VALUES (?, ?, 'T000001', 'Walk-in', '5.25', '0', '0',"
                    " '0', 'completed', '2026-01-03 09:00:00', '2026-01-03 09:00:00')",
                    t_store, t_shift)
            execute(term, "UPDATE users SET email = 'new@shop.example', updated_at ="
                    " '2026-01-03 09:30:00' WHERE local_id = 1")
        self.run_both()
        _, pg = self.counts()
        self.assertEqual(pg[("orders", "forward")]["created"], 1)
        self.assertEqual(pg[("products", "forward")]["updated"], 1)
        self.assertEqual(pg[("orders", "reverse")]["created"], 1)
        self.assertEqual(pg[("users", "reverse")]["updated"], 1)
        # the new terminal order got a UUID of its own in each copy: compare
        # the copies without that one row
        for kind in ("sqlite", "pg"):
            execute(self.terminal(kind), "DELETE FROM orders WHERE receipt_number = 'T000001'")
            execute(self.office(kind), "DELETE FROM orders WHERE receipt_number = 'T000001'")
        self.assert_same_everywhere()

    def test_status_and_reset_on_the_pg_store(self):
        self.run_both()
        lite, pg = self.status("sqlite"), self.status("pg")
        self.assertEqual(pg["last_run"]["status"], "ok")
        self.assertTrue(pg["state"].startswith("postgresql://"))
        drop = ("last_sync_time", "duration_ms")
        strip = lambda doc: [{k: v for k, v in s.items() if k not in drop} for s in doc["streams"]]
        self.assertEqual(strip(pg), strip(lite))
        self.assertEqual(pg["deferred"], lite["deferred"])
        text = run("status", os.path.join(self.ends["pg"], "pos.yaml"), env=self.env["pg"],
                   check=0).out
        self.assertIn("last run 1: ok", text)

        r = run("reset", os.path.join(self.ends["pg"], "pos.yaml"), "--stream", "orders",
                env=self.env["pg"], check=0)
        self.assertIn("reset pos, stream orders", r.out)
        doc = self.status("pg")
        for s in doc["streams"]:
            self.assertEqual(s["cursor"] is None, s["stream"] == "orders", s)
        self.assertEqual(self.sql("SELECT count(*) FROM ledger l JOIN etl_streams s ON s.id = l.sid"
                                  " WHERE s.stream = 'orders'"), [["0"]])
        pipeline = os.path.join(self.ends["pg"], "pos.yaml")
        run("run", pipeline, "--stream", "orders", "--direction", "forward", env=self.env["pg"],
            check=0)
        c = self.pg_counts("pos")[("orders", "forward")]
        self.assertEqual((c["read"], c["created"], c["updated"]), (300, 300, 0))
        self.assertEqual(query(self.terminal("pg"), "SELECT count(*), count(DISTINCT server_id)"
                                                    " FROM orders"), [(300, 300)])
        run("reset", pipeline, env=self.env["pg"], check=0)
        self.assertEqual(self.sql("SELECT count(*) FROM ledger"), [["0"]])
        self.assertEqual(self.sql("SELECT count(*) FROM checkpoints"), [["0"]])
        self.assertEqual(self.sql("SELECT count(*) FROM runs"), [["2"]])  # history stays


ITEMS = """version: 1
name: items
state: "${STATE_URL}"
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: items
    batch: 500
"""


class ItemsOnPgState(PgState):
    ROWS = 100_000

    def setUp(self):
        super().setUp()
        make_items_db.build(self.path("src.db"), self.ROWS)
        c = sqlite3.connect(self.path("src.db"))
        c.execute("UPDATE items SET updated_at = created_at")
        c.commit()
        c.close()
        self.write("items.yaml", ITEMS)
        self.env = {"STATE_URL": self.url}

    def etl(self, *args, **kw):
        return run(*args, env=self.env, **kw)

    def popen(self):
        e = dict(os.environ, **self.env, NO_COLOR="1")
        return subprocess.Popen([ETL, "-q", "run", self.path("items.yaml")], env=e,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def lease_owner(self):
        # before the first run made the tables there is no lease either
        rows = self.pg.psql("SELECT coalesce(lease_owner, '') FROM schedules"
                            " WHERE pipeline = 'items'", self.db, check=False)
        return rows[0][0] if rows else ""

    def fresh(self):
        for name in ("dst.db", "dst.db-wal", "dst.db-shm"):
            if os.path.exists(self.path(name)):
                os.remove(self.path(name))
        self.sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")

    def test_kill_9_then_rerun_loses_and_duplicates_nothing(self):
        t0 = time.monotonic()
        self.etl("-q", "run", self.path("items.yaml"), check=0)
        full = time.monotonic() - t0
        source = table_digest(self.path("src.db"))
        self.assertEqual(table_digest(self.path("dst.db")), source)
        killed_runs = 0
        for f in (0.2, 0.45, 0.7, 0.9):
            with self.subTest(kill_at=f):
                self.fresh()
                p = self.popen()
                time.sleep(full * f)
                killed = p.poll() is None
                if killed:
                    os.kill(p.pid, signal.SIGKILL)
                    killed_runs += 1
                p.wait()
                # the dead run's lease does not hold the re-run back
                t1 = time.monotonic()
                r = self.etl("-q", "run", self.path("items.yaml"))
                self.assertEqual(r.code, 0, r)
                self.assertLess(time.monotonic() - t1, 50)
                self.assertEqual(table_digest(self.path("dst.db")), source, r)
                self.assertEqual(self.sql("SELECT sum(created), sum(updated) FROM run_streams"),
                                 [[str(self.ROWS), "0"]],
                                 (self.sql("SELECT r.id, r.status, r.error, s.read, s.created, s.unchanged"
                                           " FROM runs r JOIN run_streams s ON s.run_id = r.id ORDER BY r.id"), r))
                statuses = [s for (s,) in self.sql("SELECT status FROM runs ORDER BY id")]
                self.assertEqual(statuses[-1], "ok")
                if killed and len(statuses) > 1:
                    # the killed run is closed by the run that took its lease over
                    self.assertIn(statuses[0], ("failed", "ok"))
                    if statuses[0] == "failed":
                        err = self.sql("SELECT error FROM runs ORDER BY id LIMIT 1")[0][0]
                        self.assertIn("stopped without finishing", err)
                self.assertEqual(self.lease_owner(), "")
        self.assertGreaterEqual(killed_runs, 2)

    def test_a_second_run_while_one_runs_names_the_owner(self):
        make_items_db.build(self.path("src.db"), 200_000, start=self.ROWS + 1)
        p = self.popen()
        try:
            deadline = time.monotonic() + 30
            while not self.lease_owner() and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.02)
            owner = self.lease_owner()
            self.assertEqual(owner, f"{socket.gethostname()}:{p.pid}")
            r = self.etl("run", self.path("items.yaml"))
            self.assertEqual(r.code, 1, r)
            self.assertIn(f"error: pipeline items is already running (lease held by {owner})",
                          r.out)
            self.assertEqual(p.wait(timeout=300), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(self.lease_owner(), "")  # released at the end
        self.etl("-q", "run", self.path("items.yaml"), check=0)
        self.assertEqual(table_digest(self.path("dst.db")), table_digest(self.path("src.db")))


class PgStateOpen(PgState):
    def test_first_opens_by_several_processes_make_the_tables_once(self):
        self.write("items.yaml", ITEMS)
        make_items_db.build(self.path("src.db"), 10)
        e = dict(os.environ, STATE_URL=self.url, NO_COLOR="1")
        procs = [subprocess.Popen([ETL, "status", self.path("items.yaml")], env=e,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
            self.assertIn("no runs yet", out)
        self.assertEqual(self.sql("SELECT key, value FROM etl_meta"), [["schema_version", "5"]])
        tables = [t for (t,) in self.sql("SELECT tablename FROM pg_tables WHERE schemaname ="
                                         " 'public' ORDER BY 1")]
        self.assertEqual(tables, ["checkpoints", "dead_letters", "deferred", "etl_meta",
                                  "etl_streams", "kv", "ledger", "run_streams", "runs",
                                  "schedules"])
        # and opening an existing store changes nothing
        run("run", self.path("items.yaml"), env={"STATE_URL": self.url}, check=0)
        run("status", self.path("items.yaml"), env={"STATE_URL": self.url}, check=0)
        self.assertEqual(self.sql("SELECT count(*) FROM etl_meta"), [["1"]])
        self.assertEqual(self.sql("SELECT count(*) FROM runs"), [["1"]])

    def test_unit_tests_of_the_store_on_postgres(self):
        # tests/unit/test_state.c: everything not about SQLite files, the
        # leases, and processes racing for due keys, on this server
        binary = os.path.join(BUILD, "tests", "test_state")
        r = subprocess.run([binary], env=dict(os.environ, ETL_TEST_STATE_URL=self.url),
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-4000:])
        self.assertIn("test_processes_racing_never_share_a_key", r.stdout)
        self.assertIn("test_pg_combined_row_operations_keep_their_order", r.stdout)


class Passwords(PgState):
    PASSWORD = "S3cretPassw0rdXyz"
    WRONG = "Wr0ngPassw0rdAbc"

    def setUp(self):
        super().setUp()
        pg = self.pg
        pg.psql("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'etl_pw') THEN"
                f" CREATE ROLE etl_pw LOGIN PASSWORD '{self.PASSWORD}'; END IF; END$$")
        self.pwdb = f"pwdb{next(_ids)}"
        pg.psql(f'CREATE DATABASE "{self.pwdb}" OWNER etl_pw')
        hba = os.path.join(pg.data, "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        line = "host all etl_pw 127.0.0.1/32 scram-sha-256\n"
        if line not in text:
            with open(hba, "w") as f:  # first match wins: before the trust lines
                f.write(line + text)
            pg.psql("SELECT pg_reload_conf()")
            time.sleep(0.5)
        make_pos_db.build(self.path("var", "office.db"), 50, 3)
        make_pos_db.terminal(self.path("var", "terminal.db"))
        pos_yaml(self.path("pos.yaml"))

    def url_with(self, password):
        return f"postgres://etl_pw:{password}@127.0.0.1:{self.pg.port}/{self.pwdb}"

    def assert_no_password(self, text, where):
        self.assertNotIn(self.PASSWORD, text, where)
        self.assertNotIn(self.WRONG, text, where)

    def test_a_wrong_password_is_a_clear_error_without_it(self):
        r = run("run", self.path("pos.yaml"), env={"STATE_URL": self.url_with(self.WRONG)})
        self.assertEqual(r.code, 2, r)
        self.assertIn("password authentication failed", r.err)
        self.assertIn("etl_pw", r.err)
        self.assertIn(f"127.0.0.1:{self.pg.port}/{self.pwdb}", r.err)
        self.assert_no_password(r.out + r.err, "run")
        for cmd in ("status", "reset"):
            r = run(cmd, self.path("pos.yaml"), env={"STATE_URL": self.url_with(self.WRONG)})
            self.assertEqual(r.code, 1, r)
            self.assertIn("password authentication failed", r.err)
            self.assert_no_password(r.out + r.err, cmd)

    def test_the_right_password_appears_nowhere(self):
        env = {"STATE_URL": self.url_with(self.PASSWORD)}
        r = run("-vv", "run", self.path("pos.yaml"), env=env)
        self.assertEqual(r.code, 0, r)
        self.assert_no_password(r.out + r.err, "run -vv")
        for args in (("status",), ("status", "--json")):
            r = run(*args, self.path("pos.yaml"), env=env, check=0)
            self.assertIn("etl_pw:***@", r.out)
            self.assert_no_password(r.out + r.err, args)
        for name in os.listdir(self.path("var", "logs")):
            with open(self.path("var", "logs", name)) as f:
                self.assert_no_password(f.read(), name)
        # a failing run's error lands in the runs table: redacted too
        os.remove(self.path("var", "terminal.db"))
        os.makedirs(self.path("var", "terminal.db"))
        r = run("run", self.path("pos.yaml"), env=env)
        self.assertNotEqual(r.code, 0, r)
        self.assert_no_password(r.out + r.err, "failed run")
        rows = self.pg.psql("SELECT coalesce(error, '') FROM runs", self.pwdb)
        self.assert_no_password(json.dumps(rows), "runs table")


if __name__ == "__main__":
    unittest.main()
