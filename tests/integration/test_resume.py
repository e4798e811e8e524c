"""Full scans read in key order and resume after the last key they committed.
A scan interrupted half way (here by a failing record) continues where it
stopped; a row changed meanwhile behind the resume point is picked up by the
next run, because a resumed scan moves the checkpoint no further than its
first part read."""
import sqlite3
import unittest

from etltest import Workdir, execute, last_run_counts, query, rows, run

PIPELINE = """version: 1
name: r
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: items
    batch: 500
    transform: |
      if rec.id == ${FAIL_AT:-0} then error('stop at ' .. rec.id) end
      return rec
"""


class Resume(Workdir):
    def setUp(self):
        super().setUp()
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)")
        c.executemany("INSERT INTO items VALUES (?, ?, ?)",
                      [(i, f"item {i}", f"2025-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}")
                       for i in range(1, 50001)])
        c.commit()
        c.close()
        self.write("r.yaml", PIPELINE)
        self.state = self.path(".etl", "r.state.db")

    def test_interrupted_scan_resumes_and_the_next_run_catches_up(self):
        # batches grow while the writer is behind: fail late enough for some to commit
        r = run("run", self.path("r.yaml"), env={"FAIL_AT": "40000"}, check=1)
        self.assertIn("stop at 40000", r.out + r.err)
        key = query(self.state, "SELECT resume_key FROM checkpoints")[0][0]
        self.assertIsNotNone(key)
        k = int(key)
        self.assertTrue(0 < k < 40000, k)
        # everything up to the resume point is in (the failing batch wrote its good rows)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items WHERE id <= ?", k),
                         [(k,)])
        # no cursor checkpoint while the scan is unfinished
        self.assertEqual(query(self.state, "SELECT cursor FROM checkpoints"), [(None,)])
        # meanwhile: a row behind the resume point and one ahead of it change
        execute(self.path("src.db"), "UPDATE items SET name = 'behind', updated_at ="
                " '2025-06-01 00:00:00' WHERE id = 10")
        execute(self.path("src.db"), "UPDATE items SET name = 'ahead', updated_at ="
                " '2025-06-01 00:00:01' WHERE id = 49000")
        r = run("run", self.path("r.yaml"), check=0)
        self.assertIn(f"resuming after key {k}", r.err)
        c = last_run_counts(self.state, "r")[("items", "forward")]
        self.assertEqual(c["read"], 50000 - k)
        self.assertEqual(query(self.state, "SELECT resume_key FROM checkpoints"), [(None,)])
        self.assertEqual(query(self.path("dst.db"), "SELECT name FROM items WHERE id = 49000"),
                         [("ahead",)])
        # the first part's bound: everything read before the interruption
        ck = query(self.state, "SELECT cursor FROM checkpoints")[0][0]
        self.assertLess(ck, "2025-06-01")
        # the next run reads from there and finds the row changed behind it
        run("run", self.path("r.yaml"), check=0)
        self.assertEqual(rows(self.path("src.db"), "items", "id"), rows(self.path("dst.db"), "items", "id"))
        total = query(self.state, "SELECT sum(created) FROM run_streams")[0][0]
        self.assertEqual(total, 50000)

    def test_a_later_incremental_run_forgets_a_stale_resume_point(self):
        run("run", self.path("r.yaml"), check=0)  # complete: a checkpoint
        run("run", self.path("r.yaml"), "--full", env={"FAIL_AT": "40000"}, check=1)
        self.assertIsNotNone(query(self.state, "SELECT resume_key FROM checkpoints")[0][0])
        run("run", self.path("r.yaml"), check=0)  # incremental: not a key-ordered scan
        self.assertEqual(query(self.state, "SELECT resume_key FROM checkpoints"), [(None,)])
        r = run("run", self.path("r.yaml"), "--full", check=0)
        self.assertNotIn("resuming", r.err)
        self.assertEqual(last_run_counts(self.state, "r")[("items", "forward")]["read"], 50000)


if __name__ == "__main__":
    unittest.main()
