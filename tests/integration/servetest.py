"""Helpers for the `etl serve` tests: start a server process, talk to its
admin API, wait for conditions. python3 standard library only."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from etltest import ETL

TOKEN = "test-token-0123456789abcdef"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout=30.0, step=0.05, what="condition"):
    """Polls cond() until it returns something truthy; that value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class Serve:
    """An `etl serve` process; its stderr goes to a file the test can read."""

    def __init__(self, workdir, files, *args, token=TOKEN, listen=True, env=None, name="serve"):
        self.port = free_port() if listen else None
        self.token = token
        self.log_path = os.path.join(workdir, f"{name}-{time.monotonic_ns()}.log")
        cmd = [ETL, "serve"]
        if listen:
            cmd += ["--listen", f"127.0.0.1:{self.port}"]
        cmd += list(args) + list(files)
        e = dict(os.environ)
        e.setdefault("NO_COLOR", "1")
        e.setdefault("TZ", "UTC")
        e.pop("ETL_ADMIN_TOKEN", None)
        if token:
            e["ETL_ADMIN_TOKEN"] = token
        if env:
            e.update(env)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=e,
                                     cwd=workdir)
        if listen:
            wait_for(self._up, timeout=30, what=f"etl serve on port {self.port}: {self.output()}")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"etl serve exited with {self.proc.returncode}: {self.output()}")
        try:
            return self.request("GET", "/healthz", token=None)[0] == 200
        except OSError:
            return False

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def request(self, method, path, token="default", timeout=30):
        """(status, body as JSON or text, headers)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, body, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, body, headers = e.code, e.read(), e.headers
        text = body.decode()
        if headers.get("Content-Type", "").startswith("application/json"):
            return status, json.loads(text), headers
        return status, text, headers

    def api(self, method, path, expect=200, **kw):
        status, body, _ = self.request(method, path, **kw)
        if status != expect:
            raise AssertionError(f"{method} {path}: expected {expect}, got {status}: {body}\n"
                                 f"server log:\n{self.output()}")
        return body

    def run_done(self, run_id, pipeline=None, timeout=60):
        """Waits until the run has finished; its JSON."""
        q = f"?pipeline={pipeline}" if pipeline else ""

        def done():
            r = self.api("GET", f"/api/runs/{run_id}{q}")
            return r if r["status"] != "running" else None
        return wait_for(done, timeout=timeout, step=0.1, what=f"run {run_id} to finish")

    def metrics(self, timeout=15):
        """GET /metrics once this worker runs nothing: a run's record is
        finished inside the run, its records are counted just after."""
        def idle():
            m = self.api("GET", "/metrics")
            busy = [ln for ln in m.splitlines() if ln.startswith("etl_running{") and not ln.endswith(" 0")]
            return None if busy else m
        return wait_for(idle, timeout=timeout, step=0.1, what="the worker to be idle")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()
