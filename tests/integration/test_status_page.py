"""The status page of `etl serve` (GET /, core/ui/status.html embedded in the
binary): served without a token while the API needs one; in headless Chromium
(Debian's chromium, driven by tests/browser/status_page.mjs through
playwright-core) the page asks for the token, shows a wrong one refused, lists
the pipeline, starts a run with "Run now" and follows it live to the end,
shows the API's 409 when a run is already going, starts a full refresh only
after its in-page confirmation, lists recent runs with per-stream details and
the run log, and shows hostile strings as text. The runs are then checked
through the API and in the sink database; the screenshots are checked too.

Needs node, /usr/bin/chromium and tests/browser/node_modules (scripts/deps.sh
installs all three). The screenshots stay in <build>/tests/browser/."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import unittest
import urllib.error
import urllib.request
import zlib

from etltest import BUILD, ETL, SOURCE, Workdir, query
import make_items_db  # noqa: E402  (scripts/ is on the path through etltest)

ROWS = 3000
TOKEN = "s3cret-admin-token"
BROWSER_DIR = os.path.join(SOURCE, "tests", "browser")
SHOTS = os.path.join(BUILD, "tests", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGE = os.path.join(SOURCE, "core", "ui", "status.html")

# about a millisecond per record, so a run of ROWS records lasts a few seconds and the
# page can be seen following it
SLOW = """local M = {}
function M.transform(rec, ctx)
  local t = os.clock() + 0.001
  while os.clock() < t do end
  return rec
end
return M
"""

PIPELINE = """version: 1
name: items
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
schedule: {cron: "0 3 1 1 *", expires: 30m}
log: {dir: logs}
streams:
  - name: items
    batch: 100
    transform: lua/slow.lua
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, method="GET", token=None):
    """(status, headers, body bytes) without raising on HTTP errors."""
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def png_pixels(path):
    """(width, height, distinct colours, share of the commonest colour) of an
    8-bit RGB or RGBA PNG, decoded with the standard library."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    width, height, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    counts = {}
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 2 == 0:         # every other row is plenty to tell a blank image
            for x in range(0, stride, bpp * 2):
                px = bytes(line[x:x + 3])
                counts[px] = counts.get(px, 0) + 1
        prev = line
    top = max(counts.values()) / sum(counts.values())
    return width, height, len(counts), top


class Server:
    """`etl serve` on a free port of 127.0.0.1, with ETL_ADMIN_TOKEN set."""

    def __init__(self, workdir, pipeline):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, "serve.log")
        env = dict(os.environ, ETL_ADMIN_TOKEN=TOKEN, NO_COLOR="1")
        env.pop("OFFICE_URL", None)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([ETL, "serve", "--listen", f"127.0.0.1:{self.port}", pipeline],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"etl serve exited with {self.proc.returncode} before it listened:\n"
                                     + self.output())
            try:
                if http(self.url + "/")[0] == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise AssertionError("etl serve did not answer GET / within 30 s:\n" + self.output())
            time.sleep(0.1)

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-6000:]

    def api(self, path, method="GET", token=TOKEN):
        status, _, body = http(self.url + path, method, token)
        return status, json.loads(body) if body else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class StatusPage(Workdir):
    def setUp(self):
        super().setUp()
        make_items_db.build(self.path("src.db"), ROWS)
        self.write("lua/slow.lua", SLOW)
        self.pipeline = self.write("items.yaml", PIPELINE)
        self.server = None

    def tearDown(self):
        if self.server:
            self.server.stop()
        super().tearDown()

    def serve(self):
        self.server = Server(self.dir, self.pipeline)
        return self.server

    def test_page_is_served_without_token_and_the_api_needs_one(self):
        s = self.serve()
        status, headers, body = http(s.url + "/")
        self.assertEqual(status, 200)
        self.assertIn("text/html", headers.get("Content-Type", ""))
        with open(PAGE, "rb") as f:
            self.assertEqual(body, f.read(), "GET / is not core/ui/status.html as built in")
        html = body.decode()
        # self-contained: no external script, style, font or image, no framework
        for bad in ('src="http', "src='http", 'href="http', "href='http", "src=\"//", "href=\"//",
                    "@import", "url(http", "<script src", "<link rel=\"stylesheet\""):
            self.assertNotIn(bad, html)
        # data from the API never goes through the HTML parser
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            self.assertNotIn(bad, html)
        status, headers, body = http(s.url + "/api/pipelines")
        self.assertEqual(status, 401)
        self.assertTrue(headers.get("WWW-Authenticate", "").startswith("Bearer"), dict(headers))
        self.assertIn("error", json.loads(body))
        self.assertEqual(http(s.url + "/api/pipelines", token="wrong")[0], 401)
        status, data = s.api("/api/pipelines")
        self.assertEqual(status, 200)
        self.assertEqual([p["key"] for p in data["pipelines"]], ["items"])
        self.assertEqual(data["pipelines"][0]["streams"], ["items"])

    def test_run_now_and_full_refresh_in_headless_chromium(self):
        for what, ok in (("node", shutil.which("node")), (CHROMIUM, os.access(CHROMIUM, os.X_OK)),
                         ("tests/browser/node_modules",
                          os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")))):
            if not ok:
                self.fail(f"{what} is missing: run scripts/deps.sh")
        s = self.serve()
        os.makedirs(SHOTS, exist_ok=True)
        for name in ("status_page.png", "status_page_narrow.png", "status_page_running.png",
                     "status_page-failure.png"):
            if os.path.exists(os.path.join(SHOTS, name)):
                os.remove(os.path.join(SHOTS, name))
        report_path = self.path("report.json")
        p = subprocess.run(["node", os.path.join(BROWSER_DIR, "status_page.mjs"), "--url", s.url,
                            "--token", TOKEN, "--pipeline", "items", "--rows", str(ROWS),
                            "--shots", SHOTS, "--report", report_path, "--chromium", CHROMIUM],
                           cwd=BROWSER_DIR, capture_output=True, text=True, timeout=600)
        report = {}
        if os.path.exists(report_path):
            with open(report_path) as f:
                report = json.load(f)
        if p.returncode != 0 or not report.get("ok"):
            self.fail(f"the browser script failed (exit {p.returncode}) in step "
                      f"{report.get('failed_step')!r}:\n{report.get('error')}\n--- node stderr:\n{p.stderr[-4000:]}"
                      f"\n--- etl serve:\n{s.output()}\n(failure screenshot: {SHOTS}/status_page-failure.png)")

        # what the page showed
        self.assertTrue(report["name"].startswith("items"))
        self.assertIn("0 3 1 1 *", report["schedule"])
        self.assertIn("never ran", report["first_last_run"])
        self.assertIn("already running", report["conflict_error"])
        self.assertIn("re-reads everything", report["confirm_text"])
        self.assertTrue(report["live_read_counts"], "no live count was seen")
        self.assertTrue(any(v < ROWS for v in report["live_read_counts"]),
                        f"no count below {ROWS} was seen while running: {report['live_read_counts']}")
        self.assertIn("items", report["log_excerpt"])
        self.assertEqual(report["page_errors"], [])
        self.assertEqual(report["external_requests"], [])
        self.assertEqual((report["details_read"], report["details_created"]), (ROWS, ROWS))

        # the runs, through the API
        run_now, api_run, full = report["run_now_id"], report["api_run_id"], report["full_run_id"]
        self.assertEqual(len({run_now, api_run, full}), 3)
        status, runs = s.api("/api/runs?pipeline=items&limit=20")
        self.assertEqual(status, 200)
        by_id = {r["id"]: r for r in runs["runs"]}
        # exactly three runs: the 409 and the cancelled confirmation started none
        self.assertEqual(sorted(by_id), sorted([run_now, api_run, full]))
        self.assertEqual([r["id"] for r in runs["runs"]], sorted(by_id, reverse=True))
        for rid, mode in ((run_now, "incremental"), (api_run, "full"), (full, "full")):
            r = by_id[rid]
            self.assertEqual((r["status"], r["mode"], r["triggered_by"]), ("ok", mode, "api"), r)
            self.assertEqual(r["counts"]["read"], ROWS, r)
            self.assertIsNotNone(r["finished_at"])
        self.assertEqual(by_id[run_now]["counts"]["created"], ROWS)
        self.assertEqual(by_id[full]["counts"]["unchanged"], ROWS)
        status, detail = s.api(f"/api/runs/{run_now}?pipeline=items")
        self.assertEqual(status, 200)
        items = [x for x in detail["streams"] if x["stream"] == "items"]
        self.assertEqual([(x["status"], x["read"], x["created"]) for x in items], [("ok", ROWS, ROWS)])
        status, pipes = s.api("/api/pipelines")
        self.assertIsNone(pipes["pipelines"][0]["running"])
        self.assertEqual(pipes["pipelines"][0]["last_run"]["id"], full)

        # the rows arrived
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items"), [(ROWS,)])
        self.assertEqual(query(self.path("dst.db"), "SELECT id, code, qty, updated_at FROM items ORDER BY id"),
                         query(self.path("src.db"), "SELECT id, code, qty, updated_at FROM items ORDER BY id"))

        # the screenshots show a page, not a blank
        for name, min_width in (("status_page.png", 1280), ("status_page_narrow.png", 390),
                                ("status_page_running.png", 1280)):
            path = os.path.join(SHOTS, name)
            self.assertGreater(os.path.getsize(path), 20000, path)
            width, height, colours, top = png_pixels(path)
            self.assertEqual(width, min_width, path)
            self.assertGreater(height, 300, path)
            self.assertGreater(colours, 20, path)
            self.assertLess(top, 0.97, path)
        print(f"\nscreenshots: {SHOTS}/status_page.png, status_page_narrow.png, status_page_running.png")


if __name__ == "__main__":
    unittest.main()
