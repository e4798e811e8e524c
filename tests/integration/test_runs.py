"""Run-level rules: one run of a pipeline at a time; write: replace always
reads the whole source; rows a hook emits into a stream that already ran
are still written; the identity columns may be listed in local_only; status
lists forward before reverse."""
import os
import shutil
import sqlite3
import subprocess
import time
import unittest


from etltest import ETL, SOURCE, Workdir, make_pos_db, query, run  # noqa: I001
import make_items_db  # noqa: E402  (scripts/ is on the path through etltest)


def pipeline(streams, extra=""):
    return (f'version: 1\nname: t\nsource: {{plugin: pgsqlite, url: "sqlite:src.db"}}\n'
            f'sink: {{plugin: pgsqlite, url: "sqlite:dst.db"}}\n{extra}streams:\n{streams}')


class Runs(Workdir):
    def test_one_run_of_a_pipeline_at_a_time(self):
        make_items_db.build(self.path("src.db"), 300000)
        self.write("t.yaml", pipeline("  - name: items\n"))
        p = subprocess.Popen([ETL, "-q", "run", self.path("t.yaml")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            # wait until the first run holds its lock
            lock = self.path(".etl", "t.lock")
            for _ in range(200):
                if os.path.exists(lock):
                    break
                time.sleep(0.01)
            r = run("run", self.path("t.yaml"), check=1)
            self.assertIn("pipeline t is already running", r.out + r.err)
        finally:
            p.wait()
        self.assertEqual(p.returncode, 0)
        run("-q", "run", self.path("t.yaml"), check=0)

    def test_replace_reads_everything_whatever_the_window(self):
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at TEXT)")
        c.executemany("INSERT INTO items VALUES (?, ?)",
                      [(i, "2020-01-01 00:00:00" if i <= 7 else "2099-01-01 00:00:00")
                       for i in range(1, 11)])
        c.commit()
        c.close()
        self.write("t.yaml", pipeline("  - name: items\n    write: replace\n"))
        run("run", self.path("t.yaml"), check=0)
        r = run("run", self.path("t.yaml"), "--window", "30d", check=0)
        self.assertIn("replace reads the whole source", r.err)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items"), [(10,)])
        run("run", self.path("t.yaml"), "--since", "2090-01-01", check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items"), [(10,)])

    def test_rows_emitted_into_a_stream_that_already_ran_are_written(self):
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT, updated_at TEXT)")
        c.execute("CREATE TABLE later (id INTEGER PRIMARY KEY, n INTEGER, updated_at TEXT)")
        c.executemany("INSERT INTO notes VALUES (?, ?, '2025-01-01')", [(i, f"n{i}") for i in (1, 2)])
        c.executemany("INSERT INTO later VALUES (?, ?, '2025-01-01')", [(i, i * 10) for i in (1, 2, 3)])
        c.commit()
        c.close()
        # notes runs first; later's hook emits into it afterwards
        self.write("t.yaml", pipeline(
            "  - name: notes\n"
            "  - name: later\n"
            "    transform: |\n"
            "      ctx:emit('notes', {id = 100 + rec.id, text = 'from later', updated_at = rec.updated_at})\n"
            "      return rec\n"))
        r = run("run", self.path("t.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT id FROM notes ORDER BY id"),
                         [(1,), (2,), (101,), (102,), (103,)])
        self.assertIn("emitted row(s) written after the stream ran", r.err)

    def test_identity_columns_may_be_listed_in_local_only(self):
        make_pos_db.build(self.path("var", "office.db"), 20, 3)
        make_pos_db.terminal(self.path("var", "terminal.db"))
        with open(os.path.join(SOURCE, "pipelines", "pos.yaml")) as f:
            text = f.read()
        text = text.replace("local_only: [sync_status]\n  - name: terminals",
                            "local_only: [sync_status, server_id, local_id]\n  - name: terminals")
        self.write("pos.yaml", text)
        run("run", self.path("pos.yaml"), check=0)
        self.assertEqual(query(self.path("var", "terminal.db"), "SELECT count(server_id) FROM stores"),
                         [(3,)])
        doc = self.status(self.path("pos.yaml"))
        dirs = [s["direction"] for s in doc["streams"]]
        self.assertEqual(dirs, sorted(dirs))  # forward before reverse
        self.assertEqual(dirs[0], "forward")


if __name__ == "__main__":
    unittest.main()
