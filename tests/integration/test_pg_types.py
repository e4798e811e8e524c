"""pgsqlite on a real PostgreSQL: exact types across PostgreSQL -> SQLite ->
PostgreSQL, the Chinook sample round trip, write: replace under a concurrent
reader, kill -9 during a PostgreSQL-sink run, generated and new columns, and
a password that never reaches a log or an error."""
import os
import signal
import subprocess
import threading
import time
import unittest

import pgserver
from etltest import ETL, SOURCE, Workdir, execute, last_run_counts, query, run  # noqa: I001
import make_items_db  # noqa: E402  (scripts/ is on the path through etltest)

def _chinook():
    """The Chinook sample ships beside the project (../shared/data), not in it."""
    for d in (os.environ.get("ETL_SHARED_DATA"), os.path.join(os.path.dirname(SOURCE), "shared", "data"),
              "/work/shared/data"):
        if d and os.path.exists(os.path.join(d, "chinook", "Chinook_PostgreSql.sql")):
            return os.path.join(d, "chinook", "Chinook_PostgreSql.sql")
    return None


CHINOOK = _chinook()
CHINOOK_TABLES = ["artist", "album", "media_type", "genre", "track", "playlist", "playlist_track",
                  "employee", "customer", "invoice", "invoice_line"]

TYPES = """
CREATE TABLE t (
  id uuid PRIMARY KEY, n numeric, n2 numeric(12,2), ts timestamptz, b boolean, j jsonb,
  raw bytea, txt text, empty text, nul text, i bigint, d double precision, day date,
  updated_at timestamptz NOT NULL);
INSERT INTO t VALUES
 ('00000000-0000-4000-8000-000000000001', 1234567.89, 0.10, '2024-05-01 10:00:00.123456+02',
  true, '{"a": [1, 2, {"b": null}], "u": "\u00e9"}',
  (SELECT decode(string_agg(lpad(to_hex(g), 2, '0'), '' ORDER BY g), 'hex')
   FROM generate_series(0, 255) g),
  E'Gr\u00fc\u00dfe, \u4e16\u754c \U0001F680 tab\there\nnew line', '', NULL,
  9223372036854775807, 1e308, '2024-02-29', '2024-05-01 00:00:00+00'),
 ('00000000-0000-4000-8000-000000000002', NULL, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL,
  -9223372036854775808, -0.5, NULL, '2024-05-02 00:00:00+00'),
 ('00000000-0000-4000-8000-000000000003', 123456789012345678901234567890.123456789, 0, 
  '1999-12-31 23:59:59.999999-05:30', NULL, '[]', '\\x', 'back\\\\slash', ' ', NULL, 0,
  'NaN', '1970-01-01', '2024-05-03 00:00:00+00');
"""

COLS = "id, n, n2, ts, b, j, raw, txt, empty, nul, i, d, day"


def setUpModule():
    pgserver.shared()


def tearDownModule():
    pgserver.stop_shared()


def pipeline(name, src, dst, streams, extra=""):
    return (f"version: 1\nname: {name}\nsource: {{plugin: pgsqlite, url: \"{src}\"}}\n"
            f"sink: {{plugin: pgsqlite, url: \"{dst}\"}}\n{extra}streams:\n" +
            "".join(f"  - name: {s}\n" for s in streams))


class PgTypes(Workdir):
    def setUp(self):
        super().setUp()
        self.pg = pgserver.shared()

    def newdb(self, name):
        self.pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
        return self.pg.createdb(name)

    def test_types_survive_postgres_sqlite_postgres(self):
        src = self.newdb("types_src")
        dst = self.newdb("types_dst")
        self.pg.psql(TYPES, "types_src")
        self.write("down.yaml", pipeline("down", src, "sqlite:mid.db", ["t"]))
        self.write("up.yaml", pipeline("up", "sqlite:mid.db", dst, ["t"]))
        run("run", self.path("down.yaml"), check=0)
        # in SQLite: numerics as exact text, bytes as blobs, NULL apart from ''
        mid = query(self.path("mid.db"), "SELECT n, n2, typeof(raw), length(raw), empty, nul FROM t"
                    " ORDER BY id")
        self.assertEqual(mid[0], ("1234567.89", "0.10", "blob", 256, "", None))
        run("run", self.path("up.yaml"), check=0)
        a = self.pg.dicts(f"SELECT {COLS} FROM t ORDER BY id", "types_src")
        b = self.pg.dicts(f"SELECT id::uuid AS id, n, n2, ts, b, j::jsonb AS j, raw, txt, empty,"
                          f" nul, i, d, day::date AS day FROM t ORDER BY id", "types_dst")
        self.assertEqual(a, b)
        self.assertEqual(a[0]["n"], "1234567.89")
        self.assertEqual(a[0]["n2"], "0.10")
        self.assertEqual(a[0]["ts"], "2024-05-01 08:00:00.123456+00")
        self.assertTrue(b[0]["raw"].startswith("\\x000102"))
        # a second pass both ways writes nothing
        run("run", self.path("down.yaml"), check=0)
        run("run", self.path("up.yaml"), check=0)
        for name in ("down", "up"):
            c = last_run_counts(self.path(".etl", f"{name}.state.db"), name)[("t", "forward")]
            self.assertEqual((c["created"], c["updated"]), (0, 0), name)

    @unittest.skipUnless(CHINOOK, "the Chinook sample (../shared/data/chinook) is not beside this checkout;"
                         " set ETL_SHARED_DATA to its data folder")
    def test_chinook_round_trip(self):
        self.pg.psql_file(CHINOOK)
        back = self.newdb("chinook_back")
        self.write("down.yaml", pipeline("down", self.pg.url("chinook"), "sqlite:chinook.db",
                                         CHINOOK_TABLES))
        self.write("up.yaml", pipeline("up", "sqlite:chinook.db", back, CHINOOK_TABLES))
        run("run", self.path("down.yaml"), check=0)
        self.assertEqual(query(self.path("chinook.db"), "SELECT count(*) FROM invoice_line"), [(2240,)])
        run("run", self.path("up.yaml"), check=0)
        for t in CHINOOK_TABLES:
            with self.subTest(t):
                a = self.pg.dicts(f"SELECT * FROM {t} ORDER BY 1, 2", "chinook")
                b = self.pg.dicts(f"SELECT * FROM {t} ORDER BY 1, 2", "chinook_back")
                self.assertEqual(len(a), len(b))
                self.assertEqual(a, b)

    def test_replace_swaps_under_a_concurrent_reader(self):
        url = self.newdb("replace_db")
        self.pg.psql("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at text)", "replace_db")
        make_items_db.build(self.path("src.db"), 20000)
        self.write("r.yaml", pipeline("r", "sqlite:src.db", url, []) +
                   "  - name: items\n    write: replace\n    batch: 1000\n")
        run("run", self.path("r.yaml"), check=0)
        execute(self.path("src.db"), "DELETE FROM items WHERE id > 15000")
        seen, errors, stop = [], [], threading.Event()

        def reader():
            # one psql session polling the row count
            p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p",
                                  str(self.pg.port), "-U", "postgres", "-d", "replace_db"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, bufsize=1)
            while not stop.is_set():
                p.stdin.write("SELECT count(*) FROM items;\n")
                p.stdin.flush()
                line = p.stdout.readline().strip()
                if line.isdigit():
                    seen.append(int(line))
                else:
                    errors.append(line)
            p.stdin.close()
            p.wait()
        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.2)
        run("run", self.path("r.yaml"), check=0)
        time.sleep(0.2)
        stop.set()
        t.join()
        self.assertTrue(seen)
        self.assertEqual(set(seen) - {20000, 15000}, set(), "a reader saw a partial table")
        self.assertIn(20000, seen)
        self.assertIn(15000, seen)
        self.assertEqual(errors, [])
        self.assertEqual(self.pg.psql("SELECT count(*) FROM items", "replace_db"), [["15000"]])
        # the swapped table kept its primary key index under the table's own name
        self.assertEqual(self.pg.psql("SELECT indexname FROM pg_indexes WHERE tablename='items'",
                                      "replace_db"), [["items_pkey"]])

    def test_failed_replace_leaves_the_old_table(self):
        import sqlite3
        url = self.newdb("replace_fail")
        self.pg.psql("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, updated_at text)",
                     "replace_fail")
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)")
        c.executemany("INSERT INTO items VALUES (?, ?, '2025-01-01')",
                      [(i, f"item {i}") for i in range(1, 1001)])
        c.commit()
        c.close()
        self.write("r.yaml", pipeline("r", "sqlite:src.db", url, []) +
                   "  - name: items\n    write: replace\n    batch: 100\n")
        run("run", self.path("r.yaml"), check=0)
        execute(self.path("src.db"), "UPDATE items SET name = NULL WHERE id = 900")
        r = run("run", self.path("r.yaml"), check=1)
        self.assertIn("null value", r.out + r.err)
        self.assertEqual(self.pg.psql("SELECT count(*), count(*) FILTER (WHERE name IS NULL)"
                                      " FROM items", "replace_fail"), [["1000", "0"]])
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE"
                                      " 'items__etl%'", "replace_fail"), [["0"]])

    def test_kill_during_a_postgres_sink_run(self):
        url = self.newdb("kill_db")
        make_items_db.build(self.path("src.db"), 100000)
        self.write("k.yaml", pipeline("k", "sqlite:src.db", url, ["items"]))
        for delay in (0.3, 0.8, 1.5):
            p = subprocess.Popen([ETL, "-q", "run", self.path("k.yaml")], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(delay)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
        run("-q", "run", self.path("k.yaml"), check=0)
        got = self.pg.psql("SELECT count(*), count(DISTINCT id), sum(qty), sum(price::numeric)"
                           " FROM items", "kill_db")
        want = query(self.path("src.db"), "SELECT count(*), count(DISTINCT id), sum(qty),"
                     " printf('%.2f', sum(price)) FROM items")[0]
        self.assertEqual(got[0][:3], [str(want[0]), str(want[1]), str(want[2])])
        self.assertEqual(float(got[0][3]), float(want[3]))
        created = query(self.path(".etl", "k.state.db"), "SELECT sum(created) FROM run_streams")[0][0]
        self.assertEqual(created, 100000)

    def test_generated_columns_are_never_written_and_new_columns_arrive(self):
        url = self.newdb("gen_db")
        self.pg.psql("CREATE TABLE items (id int PRIMARY KEY, name text, qty int,"
                     " twice int GENERATED ALWAYS AS (qty * 2) STORED, updated_at text)", "gen_db")
        import sqlite3
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INT, twice INT,"
                  " updated_at TEXT)")
        c.execute("INSERT INTO items VALUES (1, 'a', 5, 999, '2025-01-01'), (2, 'b', 7, 999, '2025-01-02')")
        c.commit()
        c.close()
        self.write("g.yaml", pipeline("g", "sqlite:src.db", url, ["items"]))
        run("run", self.path("g.yaml"), check=0)
        self.assertEqual(self.pg.psql("SELECT id, twice FROM items ORDER BY id", "gen_db"),
                         [["1", "10"], ["2", "14"]])
        execute(self.path("src.db"), "ALTER TABLE items ADD COLUMN color TEXT")
        execute(self.path("src.db"), "UPDATE items SET color = 'red', updated_at = '2025-02-01'"
                " WHERE id = 2")
        run("run", self.path("g.yaml"), check=0)
        self.assertEqual(self.pg.psql("SELECT id, coalesce(color, '-') FROM items ORDER BY id",
                                      "gen_db"), [["1", "-"], ["2", "red"]])

    def test_dry_run_leaves_postgres_as_it_found_it(self):
        """--dry-run into PostgreSQL: missing tables exist only while the run
        lasts, missing columns are not added, no row is committed."""
        url = self.newdb("dry_db")
        self.pg.psql("CREATE TABLE items (id int PRIMARY KEY, name text, updated_at text)", "dry_db")
        import sqlite3
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INT, updated_at TEXT)")
        c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)")
        c.execute("INSERT INTO items VALUES (1, 'a', 5, '2025-01-01'), (2, 'b', 7, '2025-01-02')")
        c.execute("INSERT INTO notes VALUES (1, 'n', '2025-01-01')")
        c.commit()
        c.close()
        self.write("d.yaml", pipeline("d", "sqlite:src.db", url, ["items", "notes"]))
        r = run("run", self.path("d.yaml"), "--dry-run", check=0)
        self.assertRegex(r.out, r"items +forward +2 +2 ")
        self.assertRegex(r.out, r"notes +forward +1 +1 ")
        self.assertIn("dry run: column qty would be added to table items", r.err)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM items", "dry_db"), [["0"]])
        self.assertEqual(self.pg.psql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position)"
                                      " FROM information_schema.columns WHERE table_name = 'items'",
                                      "dry_db"), [["id,name,updated_at"]])
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'notes'",
                                      "dry_db"), [["0"]])
        self.assertFalse(os.path.exists(self.path(".etl")) and os.listdir(self.path(".etl")))
        run("run", self.path("d.yaml"), check=0)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM notes", "dry_db"), [["1"]])

    def test_first_load_copies_straight_in_and_falls_back_to_the_merge(self):
        """An empty target takes COPY straight in; a key met again later in the
        same run (or a row already there) sends the batch through the merge."""
        url = self.newdb("direct_db")
        import sqlite3
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE ev (id INTEGER, v TEXT, updated_at TEXT)")  # no primary key
        c.executemany("INSERT INTO ev VALUES (?, ?, ?)",
                      [(1, "a", "2025-01-01"), (2, "b", "2025-01-02"), (3, "c", "2025-01-03"),
                       (3, "C", "2025-01-04"), (4, "d", "2025-01-05")])
        c.commit()
        c.close()
        text = pipeline("ev", "sqlite:src.db", url, ["ev"]) + "    key: [id]\n    batch: 3\n"
        self.write("ev.yaml", text)
        r = run("-v", "run", self.path("ev.yaml"), check=0)
        self.assertIn("direct COPY into ev stopped", r.err)
        got = self.pg.psql("SELECT id, v FROM ev ORDER BY id", "direct_db")
        self.assertEqual([g[0] for g in got], ["1", "2", "3", "4"])  # key 3 once, merged
        self.assertIn(got[2][1], ("c", "C"))
        cn = last_run_counts(self.path(".etl", "ev.state.db"), "ev")[("ev", "forward")]
        self.assertEqual((cn["read"], cn["created"], cn["updated"]), (5, 4, 1))
        # a table that already has rows is merged from the first batch on
        self.pg.psql("INSERT INTO ev VALUES (9, 'z', '2025-02-01')", "direct_db")
        run("reset", self.path("ev.yaml"), check=0)
        r = run("-v", "run", self.path("ev.yaml"), check=0)
        self.assertNotIn("direct COPY", r.err)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM ev", "direct_db"), [["5"]])

    def test_password_never_reaches_logs_errors_or_history(self):
        self.pg.psql("DO $$ BEGIN CREATE ROLE shop LOGIN PASSWORD 'Sup3rSecretPw';"
                     " EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        self.newdb("pw_db")
        self.pg.psql("GRANT ALL ON SCHEMA public TO shop", "pw_db")
        good = f"postgres://shop:Sup3rSecretPw@127.0.0.1:{self.pg.port}/pw_db?application_name=etl-test"
        bad = f"postgres://shop:Sup3rSecretPw@127.0.0.1:1/pw_db"
        make_items_db.build(self.path("src.db"), 50)
        self.write("ok.yaml", pipeline("ok", "sqlite:src.db", good, ["items"],
                                       "log: {dir: logs}\n"))
        self.write("bad.yaml", pipeline("bad", "sqlite:src.db", bad, ["items"]))
        r1 = run("-vv", "run", self.path("ok.yaml"), check=0)
        r2 = run("-vv", "run", self.path("bad.yaml"), check=1)
        r3 = run("check", self.path("bad.yaml"), check=1)
        self.assertIn("cannot connect to PostgreSQL", r2.out + r2.err)
        texts = [r1.out, r1.err, r2.out, r2.err, r3.out, r3.err]
        for f in os.listdir(self.path("logs")):
            with open(self.path("logs", f)) as fh:
                texts.append(fh.read())
        for db in ("ok", "bad"):
            texts.append(repr(query(self.path(".etl", f"{db}.state.db"), "SELECT * FROM runs")))
            texts.append(repr(query(self.path(".etl", f"{db}.state.db"), "SELECT * FROM run_streams")))
        for t in texts:
            self.assertNotIn("Sup3rSecretPw", t)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM items", "pw_db"), [["50"]])


if __name__ == "__main__":
    unittest.main()
