"""Several `etl serve` workers sharing one PostgreSQL state store: a dozen
pipelines, three workers, one of them killed with `kill -9` in the middle of
its runs. Every due run happens, no pipeline runs twice at once, the dead
worker's runs are taken over after its lease runs out, and every sink ends
equal to its source with nothing duplicated."""
import datetime
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import make_items_db  # noqa: E402
import pgserver  # noqa: E402
from etltest import Workdir, query  # noqa: E402
from servetest import Serve, wait_for  # noqa: E402

PIPELINES = 12
ROWS = 1500
LEASE = 3


def setUpModule():
    pgserver.shared()


def tearDownModule():
    pgserver.stop_shared()


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Workers(Workdir):
    def setUp(self):
        super().setUp()
        self.pg = pgserver.shared()
        self.db = f"state_{os.getpid()}_{time.monotonic_ns()}"
        self.state = self.pg.createdb(self.db)
        self.servers = []
        for i in range(1, PIPELINES + 1):
            make_items_db.build(self.path(f"src{i:02}.db"), ROWS)
            # ~1.5 s a run: long enough for a kill to land in the middle
            self.write(f"pipelines/p{i:02}.yaml", f"""version: 1
name: p{i:02}
source: {{plugin: pgsqlite, url: "sqlite:../src{i:02}.db"}}
sink: {{plugin: pgsqlite, url: "sqlite:../dst{i:02}.db"}}
schedule: {{every: 1h}}
streams:
  - name: items
    batch: 100
    transform: |
      local t = os.clock()
      while os.clock() - t < 0.001 do end
      return rec
""")

    def tearDown(self):
        for s in self.servers:
            s.kill()
        super().tearDown()

    def worker(self, name, listen=False):
        s = Serve(self.dir, [self.path("pipelines")], "--state", self.state, "--workers", "2",
                  "--lease", f"{LEASE}s", "--tick", "100", "--worker-id", name, listen=listen,
                  name=name)
        self.servers.append(s)
        return s

    def runs(self):
        return self.pg.dicts("SELECT id, pipeline, worker, status, error, started_at, finished_at"
                             " FROM runs ORDER BY id", self.db)

    def test_three_workers_one_killed(self):
        a = self.worker("w-a", listen=True)
        b = self.worker("w-b")
        c = self.worker("w-c")
        # wait until the victim holds runs in the middle of their work
        wait_for(lambda: any(r["worker"] == "w-b" and r["status"] == "running"
                             for r in self.runs()), timeout=60, what="w-b running something")
        time.sleep(0.5)
        b.kill()
        killed_at = time.monotonic()
        victims = {r["pipeline"] for r in self.runs()
                   if r["worker"] == "w-b" and r["status"] == "running"}
        self.assertTrue(victims)

        def all_done():
            ok = {r["pipeline"] for r in self.runs() if r["status"] == "ok"}
            return len(ok) == PIPELINES
        wait_for(all_done, timeout=180, step=0.2, what="every pipeline to run")
        runs = self.runs()
        # every due run happened exactly once successfully
        ok = [r["pipeline"] for r in runs if r["status"] == "ok"]
        self.assertEqual(sorted(ok), [f"p{i:02}" for i in range(1, PIPELINES + 1)], runs)
        # the dead worker's runs were closed by the worker that took them over
        for r in runs:
            if r["pipeline"] in victims and r["worker"] == "w-b":
                self.assertEqual(r["status"], "failed", r)
                self.assertIn("w-b stopped renewing its lease", r["error"])
        takers = {r["worker"] for r in runs if r["pipeline"] in victims and r["status"] == "ok"}
        self.assertTrue(takers <= {"w-a", "w-c"}, runs)
        # the takeover waited for the lease to run out
        self.assertGreater(time.monotonic() - killed_at, LEASE - 1)
        # the work was shared
        self.assertGreaterEqual(len({r["worker"] for r in runs}), 2)
        # never two runs of one pipeline at once
        by_pipe = {}
        for r in runs:
            by_pipe.setdefault(r["pipeline"], []).append(r)
        for p, rs in by_pipe.items():
            for x, y in zip(rs, rs[1:]):
                self.assertIsNotNone(x["finished_at"], rs)
                self.assertLessEqual(ts(x["finished_at"]), ts(y["started_at"]), f"{p} overlaps: {rs}")
        # nothing lost, nothing duplicated
        for i in range(1, PIPELINES + 1):
            got = query(self.path(f"dst{i:02}.db"), "SELECT count(*), count(DISTINCT id) FROM items")[0]
            self.assertEqual(got, (ROWS, ROWS), f"p{i:02}")
        created = self.pg.psql("SELECT r.pipeline, sum(s.created) FROM runs r JOIN run_streams s"
                               " ON s.run_id = r.id GROUP BY r.pipeline ORDER BY 1", self.db)
        self.assertEqual(created, [[f"p{i:02}", str(ROWS)] for i in range(1, PIPELINES + 1)])
        # any surviving worker shows the whole history through its API
        api_runs = a.api("GET", "/api/runs?limit=100")["runs"]
        self.assertEqual(len(api_runs), len(runs))
        # the schedule moved on: nothing is due for an hour
        nxt = self.pg.psql("SELECT min(next_run_at) FROM schedules", self.db)[0][0]
        self.assertGreater(int(nxt), (time.time() + 3000) * 1e6)
        self.assertEqual(a.stop(), 0)
        self.assertEqual(c.stop(), 0)


if __name__ == "__main__":
    unittest.main()
