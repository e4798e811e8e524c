"""Crash safety: `kill -9` of `etl run` at eleven moments of a 200,000-row sync,
each followed by a re-run. Every time the sink ends equal to the source, with no
duplicate keys, and the counts of all runs add up to the rows copied."""
import os
import signal
import sqlite3
import subprocess
import time
import unittest

import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import make_items_db  # noqa: E402
from etltest import ETL, Workdir, query, run, table_digest  # noqa: E402

ROWS = 200_000

PIPELINE = """version: 1
name: items
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: items
    batch: 500
"""


class CrashSafety(Workdir):
    def setUp(self):
        super().setUp()
        make_items_db.build(self.path("src.db"), ROWS)
        # a realistic table: rows mostly updated in insertion order, some later
        c = sqlite3.connect(self.path("src.db"))
        c.execute("UPDATE items SET updated_at = created_at")
        c.execute("UPDATE items SET updated_at = datetime(1790000000 + (id * 7919) % 3153600,"
                  " 'unixepoch') WHERE id % 10 = 0")
        c.commit()
        c.close()
        self.write("items.yaml", PIPELINE)
        self.source = table_digest(self.path("src.db"))

    def fresh(self):
        for name in ("dst.db", "dst.db-wal", "dst.db-shm"):
            if os.path.exists(self.path(name)):
                os.remove(self.path(name))
        for root, _, files in os.walk(self.path(".etl")):
            for f in files:
                os.remove(os.path.join(root, f))

    def test_kill_at_eleven_moments_then_rerun(self):
        # how long an undisturbed run takes on this machine
        t0 = time.monotonic()
        run("-q", "run", self.path("items.yaml"), check=0)
        full = time.monotonic() - t0
        self.assertEqual(table_digest(self.path("dst.db")), self.source)

        resumed_partially = 0
        moments = [full * f for f in (0.02, 0.08, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.78, 0.9, 0.97)]
        for delay in moments:
            with self.subTest(kill_after=round(delay, 3)):
                self.fresh()
                p = subprocess.Popen([ETL, "-q", "run", self.path("items.yaml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(delay)
                killed = p.poll() is None
                if killed:
                    os.kill(p.pid, signal.SIGKILL)
                p.wait()
                state = self.path(".etl", "items.state.db")
                try:
                    before = query(state, "SELECT coalesce(sum(created),0) FROM run_streams")[0][0]
                except sqlite3.OperationalError:
                    before = 0  # killed before the state store had its tables
                r = run("-q", "run", self.path("items.yaml"), check=0)
                self.assertEqual(table_digest(self.path("dst.db")), self.source, r)
                # every row was created exactly once across the killed run and the re-run
                created = query(state, "SELECT sum(created), sum(updated) FROM run_streams")[0]
                self.assertEqual(created, (ROWS, 0))
                rerun = query(state, "SELECT read FROM run_streams WHERE run_id ="
                                     " (SELECT max(id) FROM runs)")[0][0]
                if killed and before > 0 and rerun < ROWS:
                    resumed_partially += 1
                # the killed run is visible as a run that never finished
                statuses = [s for (s,) in query(state, "SELECT status FROM runs ORDER BY id")]
                self.assertEqual(statuses[-1], "ok")
                if killed:
                    # killed before it finished; at the very end it may have recorded "ok"
                    self.assertIn(statuses[0], ("running", "ok"))
        # the checkpoint moved during the killed runs: re-runs did not start over
        self.assertGreaterEqual(resumed_partially, 3)


if __name__ == "__main__":
    unittest.main()
