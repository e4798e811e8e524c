"""`etl serve` on one machine: the admin API (auth, triggers, runs, logs,
checkpoints, bad parameters), schedules (every, cron, expires), the
overlapping-run guard, /metrics, SIGTERM mid-run and SIGHUP reloads.

Every assertion is on a real outcome: rows in the sink database, rows in the
state store, what the server answered over HTTP."""
import datetime
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import make_items_db  # noqa: E402
from etltest import ETL, Workdir, query, run  # noqa: E402
from servetest import TOKEN, Serve, free_port, wait_for  # noqa: E402

SLOW = """
    transform: |
      local t = os.clock()
      while os.clock() - t < {secs} do end
      return rec"""


def items_pipeline(name="items", src="src.db", dst="dst.db", schedule="", slow=0.0, extra=""):
    text = f"""version: 1
name: {name}
source: {{plugin: pgsqlite, url: "sqlite:{src}"}}
sink: {{plugin: pgsqlite, url: "sqlite:{dst}"}}
{schedule}
streams:
  - name: items
    batch: 200"""
    if slow:
        text += SLOW.format(secs=slow)
    return text + "\n" + extra


class ServeBase(Workdir):
    rows = 1000

    def setUp(self):
        super().setUp()
        make_items_db.build(self.path("src.db"), self.rows)
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.kill()
        super().tearDown()

    def serve(self, *files, args=(), **kw):
        s = Serve(self.dir, [self.path(f) for f in files], *args, **kw)
        self.servers.append(s)
        return s

    def state(self, name="items"):
        return self.path(".etl", f"{name}.state.db")


class AdminApi(ServeBase):
    def test_auth_and_token_rules(self):
        self.write("items.yaml", items_pipeline())
        s = self.serve("items.yaml")
        # no token, a wrong one, a wrong scheme: 401 with the bearer challenge
        for tok in (None, "wrong-token-0123456789", "Basic " + TOKEN):
            status, body, headers = s.request("GET", "/api/pipelines", token=tok)
            self.assertEqual(status, 401, body)
            self.assertIn("Bearer", headers["WWW-Authenticate"])
            self.assertIn("token", body["error"])
        status, _, _ = s.request("GET", "/metrics", token=None)
        self.assertEqual(status, 401)
        # the right token
        self.assertEqual(s.api("GET", "/api/pipelines")["pipelines"][0]["key"], "items")
        # the page and the health check need none
        status, page, headers = s.request("GET", "/", token=None)
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertIn("<html", page.lower())
        self.assertEqual(s.request("GET", "/healthz", token=None)[0], 200)
        # the token never reaches the log
        self.assertEqual(s.stop(), 0)
        self.assertNotIn(TOKEN, s.output())

    def test_refuses_a_public_address_without_a_token_and_short_tokens(self):
        self.write("items.yaml", items_pipeline())
        port = free_port()
        r = run("serve", "--listen", f"0.0.0.0:{port}", self.path("items.yaml"),
                env={"ETL_ADMIN_TOKEN": ""}, timeout=30)
        self.assertEqual(r.code, 2, r)
        self.assertIn("without a token", r.err)
        r = run("serve", "--listen", f"127.0.0.1:{port}", self.path("items.yaml"),
                env={"ETL_ADMIN_TOKEN": "short"}, timeout=30)
        self.assertEqual(r.code, 2, r)
        self.assertIn("too short", r.err)
        r = run("serve", "--listen", "nonsense", self.path("items.yaml"), timeout=30)
        self.assertEqual(r.code, 2, r)
        self.assertIn("--listen", r.err)
        # a broken pipeline file stops serve before it starts, naming the place
        self.write("bad.yaml", "version: 1\nname: bad\nsource: {plugin: pgsqlite, url: x}\n"
                   "sink: {plugin: pgsqlite, url: y}\nstreams: [{name: a, batch: lots}]\n")
        r = run("serve", self.path("bad.yaml"), timeout=30)
        self.assertEqual(r.code, 2, r)
        self.assertRegex(r.err, r"bad\.yaml:5:\d+:")
        # two files defining the same pipeline
        self.write("items2.yaml", items_pipeline())
        r = run("serve", self.path("items.yaml"), self.path("items2.yaml"), timeout=30)
        self.assertEqual(r.code, 2, r)
        self.assertIn("defined twice", r.err)

    def test_trigger_inspect_reset(self):
        self.write("items.yaml", items_pipeline())
        s = self.serve("items.yaml")
        started = s.api("POST", "/api/pipelines/items/runs", expect=202)
        self.assertEqual(started["pipeline"], "items")
        rid = started["run_id"]
        self.assertIsInstance(rid, int)
        run_ = s.run_done(rid)
        self.assertEqual(run_["status"], "ok", run_)
        self.assertEqual(run_["triggered_by"], "api")
        self.assertEqual(run_["mode"], "incremental")
        self.assertEqual(run_["counts"]["created"], self.rows)
        self.assertEqual(run_["streams"][0]["stream"], "items")
        self.assertEqual(run_["streams"][0]["created"], self.rows)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items")[0][0], self.rows)
        # the same run in the history and in the pipeline list
        runs = s.api("GET", "/api/runs?pipeline=items&limit=5")["runs"]
        self.assertEqual([r["id"] for r in runs], [rid])
        p = s.api("GET", "/api/pipelines")["pipelines"][0]
        self.assertEqual(p["last_run"]["id"], rid)
        self.assertEqual(p["streams"], ["items"])
        self.assertIsNone(p["running"])
        # its log
        status, log, headers = s.request("GET", f"/api/runs/{rid}/log")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        self.assertIn(f"run {rid} of items", log)
        # checkpoints, then a reset, then a full run re-reads everything
        cps = s.api("GET", "/api/checkpoints?pipeline=items")["checkpoints"]
        self.assertEqual([(c["pipeline"], c["stream"]) for c in cps], [("items", "items")])
        self.assertEqual(s.api("DELETE", "/api/checkpoints/items")["reset"], "items")
        self.assertEqual(s.api("GET", "/api/checkpoints?pipeline=items")["checkpoints"], [])
        rid2 = s.api("POST", "/api/pipelines/items/runs?mode=full", expect=202)["run_id"]
        run2 = s.run_done(rid2)
        self.assertEqual((run2["status"], run2["mode"]), ("ok", "full"))
        self.assertEqual(run2["counts"]["read"], self.rows)
        # the reset forgot the ledger: the rows are written again, never duplicated
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*), count(DISTINCT id) FROM items")[0],
                         (self.rows, self.rows))
        # a stream filter
        rid3 = s.api("POST", "/api/pipelines/items/runs?stream=items", expect=202)["run_id"]
        counts = s.run_done(rid3)["counts"]
        self.assertEqual((counts["created"], counts["updated"]), (0, 0))
        self.assertEqual(s.api("DELETE", "/api/checkpoints/items/items")["stream"], "items")
        self.assertEqual(s.stop(), 0)

    def test_bad_requests(self):
        self.write("items.yaml", items_pipeline())
        s = self.serve("items.yaml")
        cases = [
            ("POST", "/api/pipelines/items/runs?mode=sometimes", 400, "bad mode"),
            ("POST", "/api/pipelines/items/runs?direction=sideways", 400, "bad direction"),
            ("POST", "/api/pipelines/items/runs?stream=nope", 400, "no stream 'nope'"),
            ("POST", "/api/pipelines/nope/runs", 404, "no pipeline 'nope'"),
            ("GET", "/api/pipelines/items/runs", 405, "not allowed"),
            ("GET", "/api/runs/999999", 404, "no run 999999"),
            ("GET", "/api/runs/abc", 400, "bad run id"),
            ("GET", "/api/runs?limit=0", 400, "bad limit"),
            ("GET", "/api/runs?limit=many", 400, "bad limit"),
            ("GET", "/api/runs?pipeline=nope", 404, "no pipeline"),
            ("GET", "/api/runs/999999/log", 404, "no run"),
            ("DELETE", "/api/checkpoints/nope", 404, "no pipeline 'nope'"),
            ("DELETE", "/api/checkpoints/items/nope", 404, "no stream 'nope'"),
            ("PUT", "/api/pipelines", 405, "not allowed"),
            ("GET", "/api/nothing", 404, "no such endpoint"),
            ("GET", "/nothing", 404, "no such page"),
        ]
        for method, path, want, text in cases:
            with self.subTest(path=path, method=method):
                status, body, headers = s.request(method, path)
                self.assertEqual(status, want, body)
                self.assertIn(text, body["error"])
                if want == 405:
                    self.assertTrue(headers["Allow"])
        # nothing ran
        self.assertEqual(query(self.state(), "SELECT count(*) FROM runs")[0][0], 0)
        self.assertEqual(s.stop(), 0)


class Overlap(ServeBase):
    rows = 600

    def test_one_run_at_a_time(self):
        # ~2.5 s per run: long enough to collide with
        self.write("slow.yaml", items_pipeline(name="slow", slow=0.004))
        s = self.serve("slow.yaml")
        rid = s.api("POST", "/api/pipelines/slow/runs", expect=202)["run_id"]
        # a second trigger while it runs
        status, body, _ = s.request("POST", "/api/pipelines/slow/runs")
        self.assertEqual(status, 409, body)
        self.assertIn("already running", body["error"])
        # live progress through the API, and the pipeline shown as running
        p = s.api("GET", "/api/pipelines")["pipelines"][0]
        self.assertEqual(p["running"]["run_id"], rid)
        wait_for(lambda: s.api("GET", f"/api/runs/{rid}")["counts"]["read"] > 0, timeout=30,
                 what="live counts")
        # a hand run of the same pipeline is refused too
        r = run("run", self.path("slow.yaml"), timeout=60)
        self.assertEqual(r.code, 1, r)
        self.assertIn("already running", r.out + r.err)
        # and a reset
        status, body, _ = s.request("DELETE", "/api/checkpoints/slow")
        self.assertEqual(status, 409, body)
        self.assertEqual(s.run_done(rid)["status"], "ok")
        # free again
        rid2 = s.api("POST", "/api/pipelines/slow/runs?mode=full", expect=202)["run_id"]
        self.assertEqual(s.run_done(rid2)["status"], "ok")
        runs = query(self.state("slow"), "SELECT status FROM runs ORDER BY id")
        self.assertEqual(runs, [("ok",), ("ok",)])
        self.assertEqual(s.stop(), 0)


class Schedules(ServeBase):
    rows = 300

    def test_every_runs_repeatedly_never_overlapping(self):
        self.write("tick.yaml", items_pipeline(name="tick", schedule="schedule: {every: 1s}",
                                               slow=0.002))
        s = self.serve("tick.yaml", args=("--tick", "50"))
        state = self.state("tick")
        wait_for(lambda: query(state, "SELECT count(*) FROM runs WHERE status = 'ok'")[0][0] >= 3,
                 timeout=60, what="three scheduled runs")
        self.assertEqual(s.stop(), 0)
        runs = query(state, "SELECT triggered_by, started_at, finished_at, status FROM runs ORDER BY id")
        self.assertTrue(all(r[0] == "schedule" for r in runs), runs)
        for a, b in zip(runs, runs[1:]):
            self.assertIsNotNone(a[2], runs)
            self.assertLessEqual(a[2], b[1], f"runs overlap: {runs}")
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items")[0][0], self.rows)
        # only the first run created rows; the others found nothing new
        self.assertEqual(query(state, "SELECT sum(created) FROM run_streams")[0][0], self.rows)

    def test_cron_next_time_and_api_view(self):
        self.write("cron.yaml", items_pipeline(name="cron", schedule='schedule: {cron: "*/5 * * * *", expires: 10m}'))
        before = datetime.datetime.now(datetime.timezone.utc)
        s = self.serve("cron.yaml")
        after = datetime.datetime.now(datetime.timezone.utc)
        p = s.api("GET", "/api/pipelines")["pipelines"][0]
        self.assertEqual(p["schedule"], {"cron": "*/5 * * * *", "every": None, "expires": 600})

        def next5(t):
            t = t.replace(second=0, microsecond=0)
            return t + datetime.timedelta(minutes=5 - t.minute % 5)
        nxt = datetime.datetime.fromisoformat(p["next_run_at"].replace("Z", "+00:00"))
        self.assertIn(nxt, {next5(before), next5(after)}, p)
        self.assertIsNone(p["last_run"])
        self.assertEqual(s.stop(), 0)

    def test_a_late_run_is_skipped_and_recorded(self):
        self.write("late.yaml", items_pipeline(name="late", schedule="schedule: {every: 1h, expires: 30m}"))
        s = self.serve("late.yaml", args=("--tick", "50"))
        state = self.state("late")
        # `every` runs at once the first time
        wait_for(lambda: query(state, "SELECT count(*) FROM runs WHERE status='ok'")[0][0] == 1,
                 what="the first run")
        self.assertEqual(s.stop(), 0)
        nxt = query(state, "SELECT next_run_at FROM schedules WHERE pipeline='late'")[0][0]
        now_us = int(time.time() * 1e6)
        self.assertAlmostEqual(nxt, now_us + 3600e6, delta=120e6)
        # the machine was off for two hours: the run due then is too late
        due = now_us - 2 * 3600 * 10**6
        with sqlite3.connect(state) as c:
            c.execute("UPDATE schedules SET next_run_at=? WHERE pipeline='late'", (due,))
        s = self.serve("late.yaml", args=("--tick", "50"))
        wait_for(lambda: query(state, "SELECT count(*) FROM runs WHERE status='skipped'")[0][0] == 1,
                 what="the skipped run")
        status, error = query(state, "SELECT status, error FROM runs ORDER BY id DESC LIMIT 1")[0]
        self.assertRegex(error, r"late \(expires after 30m\)")
        nxt = query(state, "SELECT next_run_at FROM schedules WHERE pipeline='late'")[0][0]
        self.assertGreater(nxt, int(time.time() * 1e6))
        self.assertEqual(query(state, "SELECT count(*) FROM runs WHERE status='ok'")[0][0], 1)
        metrics = s.metrics()
        self.assertIn('etl_runs_total{pipeline="late",status="skipped"} 1', metrics)
        self.assertEqual(s.stop(), 0)


class Signals(ServeBase):
    rows = 20_000

    def test_sigterm_mid_run_commits_and_exits(self):
        # ~6 s of work: the signal lands in the middle of it
        self.write("big.yaml", items_pipeline(name="big", slow=0.0003))
        s = self.serve("big.yaml")
        rid = s.api("POST", "/api/pipelines/big/runs", expect=202)["run_id"]
        wait_for(lambda: s.api("GET", f"/api/runs/{rid}")["counts"]["created"] > 0, timeout=60,
                 step=0.02, what="the first batch")
        t0 = time.monotonic()
        self.assertEqual(s.stop(timeout=30), 0, s.output())
        self.assertLess(time.monotonic() - t0, 10)
        state = self.state("big")
        # the run stopped after the batch in flight, and says so
        self.assertEqual(query(state, "SELECT status, error FROM runs WHERE id=?", rid)[0],
                         ("cancelled", "cancelled"))
        done = query(self.path("dst.db"), "SELECT count(*) FROM items")[0][0]
        self.assertGreater(done, 0)
        self.assertLess(done, self.rows)
        # what it wrote is what it counted: the checkpoint committed with it
        self.assertEqual(query(state, "SELECT sum(created) FROM run_streams")[0][0], done)
        # the run stays due: a re-run completes without duplicates
        r = run("-q", "run", self.path("big.yaml"), timeout=300)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*), count(DISTINCT id) FROM items")[0],
                         (self.rows, self.rows))
        self.assertEqual(query(state, "SELECT sum(created), sum(updated) FROM run_streams")[0],
                         (self.rows, 0))


class Reload(ServeBase):
    rows = 50

    def test_sighup_reloads_and_a_broken_file_keeps_the_old(self):
        self.write("a.yaml", items_pipeline(name="a"))
        s = self.serve("a.yaml")
        self.assertEqual(s.api("GET", "/api/pipelines")["pipelines"][0]["schedule"], None)
        self.write("a.yaml", items_pipeline(name="a", schedule="schedule: {every: 6h}"))
        s.signal(signal.SIGHUP)
        wait_for(lambda: s.api("GET", "/api/pipelines")["pipelines"][0]["schedule"], what="reload")
        # broken: the previous definition stays, the error names the place
        self.write("a.yaml", "version: 1\nname: a\nstreams: [\n")
        s.signal(signal.SIGHUP)
        wait_for(lambda: "keeping the version loaded before" in s.output(), what="reload error")
        self.assertRegex(s.output(), r"a\.yaml:\d+:\d+:")
        p = s.api("GET", "/api/pipelines")["pipelines"][0]
        self.assertEqual(p["schedule"]["every"], 6 * 3600)
        rid = s.api("POST", "/api/pipelines/a/runs", expect=202)["run_id"]
        self.assertEqual(s.run_done(rid)["status"], "ok")
        self.assertEqual(s.stop(), 0)


class MatrixAndMetrics(ServeBase):
    rows = 100

    def test_matrix_clients_and_metrics(self):
        make_items_db.build(self.path("src-b.db"), 40)
        self.write("m.yaml", """version: 1
name: shops
matrix:
  - {client: a, src: src.db}
  - {client: b, src: src-b.db}
source: {plugin: pgsqlite, url: "sqlite:${matrix.src}"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: items
    table: "shop_${matrix.client}_items"
  - name: lines
    table: lines
    key: [id]
    fk: {item_id: items}
""")
        with sqlite3.connect(self.path("src.db")) as c:
            c.execute("CREATE TABLE lines (id INTEGER PRIMARY KEY, item_id INTEGER, updated_at TEXT)")
            c.executemany("INSERT INTO lines VALUES (?,?,?)",
                          [(1, 1, "2025-01-01"), (2, 99999, "2025-01-01")])
        with sqlite3.connect(self.path("src-b.db")) as c:
            c.execute("CREATE TABLE lines (id INTEGER PRIMARY KEY, item_id INTEGER, updated_at TEXT)")
        s = self.serve("m.yaml")
        keys = [p["key"] for p in s.api("GET", "/api/pipelines")["pipelines"]]
        self.assertEqual(keys, ["shops@a", "shops@b"])
        # one client
        one = s.api("POST", "/api/pipelines/shops/runs?client=a", expect=202)
        self.assertEqual([r["key"] for r in one["runs"]], ["shops@a"])
        self.assertEqual(s.run_done(one["run_id"], pipeline="shops@a")["status"], "ok")
        # every client
        both = s.api("POST", "/api/pipelines/shops/runs", expect=202)
        self.assertEqual(sorted(r["key"] for r in both["runs"]), ["shops@a", "shops@b"])
        for r in both["runs"]:
            self.assertEqual(s.run_done(r["run_id"], pipeline=r["key"])["status"], "ok")
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM shop_b_items")[0][0], 40)
        status, body, _ = s.request("POST", "/api/pipelines/shops/runs?client=zz")
        self.assertEqual(status, 404, body)
        runs = s.api("GET", "/api/runs?pipeline=shops@b")["runs"]
        self.assertEqual({r["client"] for r in runs}, {"b"})

        m = s.metrics()
        self.assertIn('etl_runs_total{pipeline="shops@a",status="ok"} 2', m)
        self.assertIn('etl_runs_total{pipeline="shops@b",status="ok"} 1', m)
        self.assertIn('etl_records_total{pipeline="shops@a",stream="items",direction="forward",'
                      'outcome="created"} 100', m)
        # the second run re-read the row at the cursor (inclusive), unchanged
        self.assertIn('etl_records_total{pipeline="shops@a",stream="items",direction="forward",'
                      'outcome="unchanged"} 1', m)
        self.assertIn('etl_run_duration_seconds_count{pipeline="shops@a"} 2', m)
        # the line whose item does not exist waits, and the gauge says so
        self.assertIn('etl_deferred_records{pipeline="shops@a",stream="lines",direction="forward"} 1', m)
        last = re.search(r'etl_last_success_timestamp_seconds\{pipeline="shops",client="a"\} (\S+)', m)
        self.assertIsNotNone(last, m)
        self.assertAlmostEqual(float(last.group(1)), time.time(), delta=120)
        self.assertIn("# TYPE etl_http_retries_total counter", m)
        for line in m.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{[^}]*\})? -?[0-9.e+Inf]+$')
        self.assertEqual(s.stop(), 0)


class HttpRetryMetrics(ServeBase):
    rows = 1

    def test_a_429_shows_in_the_retry_counter(self):
        from test_square import Mock, TOKEN as SQ_TOKEN
        mock = Mock()
        try:
            host = mock.url.split("//", 1)[1].rstrip("/")
            self.write("sq.yaml", f"""version: 1
name: sq
source: {{plugin: square, token: "${{SQUARE_TOKEN}}", base_url: "{mock.url}"}}
sink: {{plugin: pgsqlite, url: "sqlite:sq.db"}}
streams:
  - name: locations
""")
            mock.post("/__mock/behave", {"path": "/v2/locations", "status": 429, "retry_after": "1"})
            s = self.serve("sq.yaml", env={"SQUARE_TOKEN": SQ_TOKEN})
            rid = s.api("POST", "/api/pipelines/sq/runs", expect=202)["run_id"]
            self.assertEqual(s.run_done(rid)["status"], "ok")
            statuses = [q["status"] for q in mock.requests("/v2/locations")]
            self.assertEqual(statuses, [429, 200])
            m = s.metrics()
            self.assertIn(f'etl_http_retries_total{{host="{host}",status="429"}} 1', m)
            self.assertIn('etl_records_total{pipeline="sq",stream="locations",direction="forward",'
                          'outcome="created"}', m)
            self.assertEqual(s.stop(), 0)
            self.assertNotIn(SQ_TOKEN, s.output())
        finally:
            mock.stop()


if __name__ == "__main__":
    unittest.main()
