"""Shared machinery for the mock API servers (python3 standard library only).

A mock is a subclass of `Mock` (the application: data, routes, auth, error
bodies) served by `MockHandler` on a `ThreadingHTTPServer`. This module gives
every mock, for free:

* HTTP/1.1 with keep-alive, Content-Length on every response, chunked and
  `Expect: 100-continue` request bodies;
* a request log (everything except `/__mock/` control calls);
* fault injection queued through `POST /__mock/behave` (status codes with
  `Retry-After`, slow answers, truncated bodies, dropped connections);
* a controllable clock (`POST /__mock/clock`);
* the control API `/__mock/requests`, `/__mock/reset`, `/__mock/behave`,
  `/__mock/state`, `/__mock/clock`, plus the mock's own `/__mock/<name>/...`;
* `main(MockClass)`: argument parsing, the `listening on http://127.0.0.1:PORT`
  line, clean stop on SIGTERM/SIGINT.

See tests/mock/README.md for the control API shapes.
"""
import argparse
import base64
import calendar
import copy
import datetime as _dt
import json
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------
# time helpers


def iso_ms(ts):
    """Seconds since the epoch -> RFC 3339 UTC with milliseconds and Z."""
    ms = int(round(ts * 1000))
    sec, msec = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%03dZ" % msec


def iso_s(ts):
    """Seconds since the epoch -> RFC 3339 UTC, whole seconds, Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$")


def parse_time_us(text, require_offset=True):
    """RFC 3339 text -> integer microseconds since the epoch (UTC).

    Raises ValueError on anything malformed. Without `require_offset`, a
    timestamp with no zone is taken as UTC.
    """
    if not isinstance(text, str):
        raise ValueError("not a string")
    if len(text) == 24 and text[23] == "Z" and text[19] == "." and text[10] == "T":
        # fast path for our own stamps: YYYY-MM-DDTHH:MM:SS.mmmZ
        try:
            y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
            h, mi, se, ms = int(text[11:13]), int(text[14:16]), int(text[17:19]), int(text[20:23])
            if text[4] == "-" and text[7] == "-" and text[13] == ":" and text[16] == ":" \
                    and 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h < 24 and mi < 60 and se < 61:
                return calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0)) * 1_000_000 + ms * 1000
        except ValueError:
            pass
    s = text.strip()
    m = _RFC3339.match(s)
    if not m and not require_offset:
        m = _RFC3339.match(s + "Z")
    if not m:
        raise ValueError("not an RFC 3339 timestamp: %r" % text)
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    us = int((frac[1:] + "000000")[:6]) if frac else 0
    # validate the calendar fields
    _dt.datetime(y, mo, d, h, mi, min(se, 59))
    z = m.group(8)
    off = 0
    if z not in ("Z", "z"):
        sign = -1 if z[0] == "-" else 1
        zz = z[1:].replace(":", "")
        off = sign * (int(zz[:2]) * 3600 + int(zz[2:]) * 60)
    secs = calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0)) - off
    return secs * 1_000_000 + us


def parse_time(text, require_offset=True):
    """RFC 3339 text -> float seconds since the epoch."""
    return parse_time_us(text, require_offset) / 1e6


class Clock:
    """Real time by default; tests can freeze it, set it, or move it.

    * `set(ts)` freezes the clock at ts (it then only moves by `advance`);
    * `set(ts, running=True)` jumps to ts and keeps ticking;
    * `advance(s)` moves it forward (frozen or running);
    * `real()` goes back to wall-clock time.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.real()

    def real(self):
        with self._lock:
            self._frozen = None
            self._offset = 0.0

    def set(self, ts, running=False):
        with self._lock:
            if running:
                self._frozen = None
                self._offset = ts - time.time()
            else:
                self._frozen = float(ts)
                self._offset = 0.0

    def advance(self, seconds):
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds

    def now(self):
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return time.time() + self._offset

    def describe(self):
        n = self.now()
        return {"now": iso_ms(n), "epoch": n,
                "mode": "frozen" if self._frozen is not None else "running",
                "offset": self._offset}


# --------------------------------------------------------------------------
# request / response


class Request:
    def __init__(self, method, raw_path, headers, body):
        self.method = method
        self.raw_path = raw_path
        u = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(u.path)
        self.query_string = u.query
        self.query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.headers = headers            # dict, lower-cased names
        self.body = body                  # bytes
        self.params = {}                  # route groups
        self.time = time.time()
        self._json = None
        self._json_done = False

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def arg(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        """The body as JSON (None when empty). Raises BadJSON."""
        if not self._json_done:
            self._json_done = True
            self._json_error = None
            if self.body.strip():
                try:
                    self._json = json.loads(self.body.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    self._json_error = str(e)
        if self._json_error is not None:
            raise BadJSON(self._json_error)
        return self._json

    def bearer(self):
        """The token of `Authorization: Bearer <token>`, or None."""
        h = self.header("authorization")
        if not h:
            return None
        parts = h.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        return parts[1].strip()


class BadJSON(Exception):
    pass


class Response:
    def __init__(self, status, body=b"", content_type="application/json", headers=None):
        self.status = int(status)
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


def json_response(status, obj, headers=None):
    return Response(status, json.dumps(obj, separators=(",", ":")).encode("utf-8"),
                    "application/json", headers)


def text_response(status, text, content_type="text/plain; charset=utf-8", headers=None):
    return Response(status, text, content_type, headers)


class HTTPError(Exception):
    """Raise from a route to answer with `response`."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


# --------------------------------------------------------------------------
# the application base class


class Route:
    def __init__(self, method, pattern, func, auth=True):
        self.method = method
        self.regex = re.compile("^" + pattern + "$")
        self.func = func
        self.auth = auth


class Mock:
    """Base class of a mock API. Subclasses set `name`, fill `routes` and
    `control_routes` in `setup_routes`, and override `load`, `state`,
    `check_auth`, `error_response`, `fault_response`, `add_arguments`.

    All route functions take (req) and return a Response; they run under
    `self.lock`, so they may mutate the data freely.
    """
    name = "base"

    def __init__(self, args):
        self.args = args
        self.clock = Clock()
        self.lock = threading.RLock()
        self.routes = []
        self.control_routes = []
        self.setup_routes()
        self.load()

    # --- to override -----------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        pass

    def setup_routes(self):
        pass

    def load(self):
        """(Re)build the initial data. Called at start and on reset."""

    def state(self):
        return {}

    def before_serve(self):
        """Return an exit code to stop before serving (e.g. a --dump option)."""
        return None

    def check_auth(self, req):
        """Return None when authorised, else a Response (usually 401)."""
        return None

    def error_response(self, status, detail, code=None):
        """The API's own error envelope for `status`."""
        return json_response(status, {"error": {"status": status, "code": code, "message": detail}})

    def fault_response(self, status, fault):
        """Body the API sends for an injected fault status (5xx, 429, 401...)."""
        return self.error_response(status, "injected fault")

    def not_found(self, req):
        return self.error_response(404, "no route for %s %s" % (req.method, req.path), "NOT_FOUND")

    def bad_json(self, req, err):
        return self.error_response(400, "malformed JSON body: %s" % err, "BAD_REQUEST")

    # --- helpers -------------------------------------------------------------
    def route(self, method, pattern, func, auth=True):
        self.routes.append(Route(method, pattern, func, auth))

    def control(self, method, pattern, func):
        """A control route under /__mock/<name>/ (pattern is the rest)."""
        self.control_routes.append(Route(method, "/__mock/" + self.name + "/" + pattern, func, False))

    def now(self):
        return self.clock.now()

    def dispatch(self, req, routes):
        allowed = []
        for r in routes:
            m = r.regex.match(req.path)
            if not m:
                continue
            if r.method != req.method:
                allowed.append(r.method)
                continue
            req.params = m.groupdict()
            if r.auth:
                denied = self.check_auth(req)
                if denied is not None:
                    return denied
            try:
                with self.lock:
                    return r.func(req)
            except HTTPError as e:
                return e.response
            except BadJSON as e:
                return self.bad_json(req, e)
        if allowed:
            resp = self.error_response(405, "Method \"%s\" not allowed." % req.method, "METHOD_NOT_ALLOWED")
            resp.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return resp
        return None


# --------------------------------------------------------------------------
# faults


class Fault:
    KEYS = {"path", "method", "status", "count", "skip", "retry_after", "body",
            "content_type", "headers", "slow", "truncate", "drop"}

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("a behaviour is a JSON object")
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ValueError("unknown behaviour keys: %s" % ", ".join(sorted(unknown)))
        self.spec = dict(spec)
        self.path = spec.get("path") or ""
        self.method = (spec.get("method") or "").upper()
        self.status = spec.get("status")
        self.count = int(spec.get("count", 1))
        self.skip = int(spec.get("skip", 0))
        self.retry_after = spec.get("retry_after")
        self.body = spec.get("body")
        self.content_type = spec.get("content_type")
        self.headers = spec.get("headers") or {}
        self.slow = float(spec.get("slow") or 0)
        self.truncate = bool(spec.get("truncate"))
        drop = spec.get("drop")
        self.drop = "after" if drop == "after" else ("before" if drop else None)
        if self.status is not None:
            self.status = int(self.status)
            if not 100 <= self.status <= 599:
                raise ValueError("status out of range")
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if not (self.status or self.slow or self.truncate or self.drop):
            raise ValueError("a behaviour needs one of status, slow, truncate, drop")
        if self.retry_after is not None and not isinstance(self.retry_after, str):
            self.retry_after = str(self.retry_after)

    def matches(self, req):
        return req.path.startswith(self.path) and (not self.method or self.method == req.method)

    def describe(self):
        d = dict(self.spec)
        d["count"] = self.count
        d["skip"] = self.skip
        return d


# --------------------------------------------------------------------------
# server and handler


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, mock):
        self.mock = mock
        self.log = []
        self.log_lock = threading.Lock()
        self.faults = []
        self.fault_lock = threading.Lock()
        self.stopping = threading.Event()
        self.seq = 0
        super().__init__(addr, MockHandler)

    def record(self, req):
        with self.log_lock:
            self.seq += 1
            entry = {"seq": self.seq, "method": req.method, "path": req.path,
                     "raw_path": req.raw_path, "query": req.query,
                     "headers": req.headers, "body": req.text(), "time": req.time,
                     "status": None, "fault": None}
            self.log.append(entry)
            return entry

    def take_fault(self, req):
        with self.fault_lock:
            for f in self.faults:
                if not f.matches(req):
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    return None
                f.count -= 1
                if f.count <= 0:
                    self.faults.remove(f)
                return f
        return None

    def reset(self):
        with self.log_lock:
            self.log = []
        with self.fault_lock:
            self.faults = []
        self.mock.clock.real()
        with self.mock.lock:
            self.mock.load()


class MockHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "etl-mock/1"
    timeout = 120  # idle keep-alive connections are closed after this

    def setup(self):
        super().setup()
        # headers and body leave in separate writes: without this, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every reuse
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # quiet
        pass

    # every method goes through _handle
    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self):
        server = self.server
        mock = server.mock
        arrived = time.time()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, self.path, headers, body)
        req.time = arrived

        if req.path.startswith("/__mock/") or req.path == "/__mock":
            resp = self._control(req)
            self._send(resp, None)
            return

        entry = server.record(req)
        fault = server.take_fault(req)
        if fault is not None:
            entry["fault"] = fault.describe()
            if fault.slow:
                server.stopping.wait(fault.slow)
            if fault.drop == "before":
                entry["status"] = 0
                self._drop()
                return
        resp = None
        if fault is not None and fault.status:
            if fault.body is not None:
                resp = Response(fault.status, fault.body,
                                fault.content_type or "application/json")
            else:
                resp = mock.fault_response(fault.status, fault)
            if fault.retry_after is not None:
                resp.headers["Retry-After"] = fault.retry_after
        if resp is None:
            try:
                resp = mock.dispatch(req, mock.routes)
                if resp is None:
                    resp = mock.not_found(req)
            except Exception as e:  # a bug in the mock: say so loudly
                import traceback
                traceback.print_exc(file=sys.stderr)
                resp = mock.error_response(500, "mock crashed: %r" % e, "INTERNAL_SERVER_ERROR")
        if fault is not None:
            for k, v in fault.headers.items():
                resp.headers[k] = str(v)
        entry["status"] = resp.status
        if fault is not None and fault.drop == "after":
            entry["status"] = 0
            self._drop()
            return
        self._send(resp, fault)

    def _drop(self):
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, resp, fault):
        body = resp.body if self.command != "HEAD" else b""
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if fault is not None and fault.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            if fault is not None and fault.truncate:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self._drop()
                return
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    # --- control API -----------------------------------------------------
    def _control(self, req):
        server = self.server
        mock = server.mock
        p = req.path.rstrip("/")
        try:
            if p == "/__mock/requests" and req.method == "GET":
                prefix = req.arg("path", "")
                method = (req.arg("method", "") or "").upper()
                since = int(req.arg("since", "0") or 0)
                with server.log_lock:
                    out = [copy.deepcopy(e) for e in server.log
                           if e["path"].startswith(prefix) and e["seq"] > since
                           and (not method or e["method"] == method)]
                return json_response(200, {"requests": out, "count": len(out)})
            if p == "/__mock/requests" and req.method == "DELETE":
                with server.log_lock:
                    server.log = []
                return json_response(200, {"ok": True})
            if p == "/__mock/reset" and req.method == "POST":
                server.reset()
                return json_response(200, {"ok": True})
            if p == "/__mock/behave" and req.method == "POST":
                spec = req.json()
                specs = spec if isinstance(spec, list) else [spec]
                faults = [Fault(s) for s in specs]
                with server.fault_lock:
                    server.faults.extend(faults)
                    pending = [f.describe() for f in server.faults]
                return json_response(200, {"ok": True, "pending": pending})
            if p == "/__mock/behave" and req.method == "GET":
                with server.fault_lock:
                    pending = [f.describe() for f in server.faults]
                return json_response(200, {"pending": pending})
            if p == "/__mock/behave" and req.method == "DELETE":
                with server.fault_lock:
                    server.faults = []
                return json_response(200, {"ok": True})
            if p == "/__mock/state" and req.method == "GET":
                with mock.lock:
                    st = copy.deepcopy(mock.state())
                st.setdefault("clock", mock.clock.describe()["now"])
                return json_response(200, st)
            if p == "/__mock/clock" and req.method == "GET":
                return json_response(200, mock.clock.describe())
            if p == "/__mock/clock" and req.method == "POST":
                spec = req.json() or {}
                if not isinstance(spec, dict):
                    raise ValueError("clock wants a JSON object")
                if spec.get("real"):
                    mock.clock.real()
                if "now" in spec:
                    v = spec["now"]
                    ts = float(v) if isinstance(v, (int, float)) else parse_time(v)
                    mock.clock.set(ts, running=bool(spec.get("running")))
                if "advance" in spec:
                    mock.clock.advance(float(spec["advance"]))
                return json_response(200, mock.clock.describe())
            resp = mock.dispatch(req, mock.control_routes)
            if resp is not None:
                return resp
            return json_response(404, {"error": "unknown control endpoint %s %s" % (req.method, req.path)})
        except BadJSON as e:
            return json_response(400, {"error": "malformed JSON: %s" % e})
        except (ValueError, TypeError, KeyError) as e:
            return json_response(400, {"error": str(e)})


# --------------------------------------------------------------------------
# small shared helpers for mocks


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def deep_merge(dst, src):
    """Merge dict `src` into dict `dst` in place (dicts merge, the rest replaces)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


# --------------------------------------------------------------------------
# entry point


def build_parser(mock_class):
    p = argparse.ArgumentParser(description="%s mock API server" % mock_class.name)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    mock_class.add_arguments(p)
    return p


def main(mock_class, argv=None):
    args = build_parser(mock_class).parse_args(argv)
    mock = mock_class(args)
    rc = mock.before_serve()
    if rc is not None:
        return rc
    server = MockServer((args.host, args.port), mock)
    port = server.server_address[1]
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    sys.stdout.write("listening on http://%s:%d\n" % (args.host, port))
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
    return 0
