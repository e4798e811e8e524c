#!/usr/bin/env python3
"""A generic local HTTP test server (in the spirit of httpbin.org) for the
HTTP toolkit's unit tests (tests/unit/test_http.c), built on mockbase: it has
the request log, fault injection (/__mock/behave: status + Retry-After, slow,
truncate, drop), the clock and the control API of every mock.

    python3 tests/mock/httpbin.py --port 0 [--tls-cert C --tls-key K]

Prints `listening on http://127.0.0.1:PORT` (https with --tls-cert).

Routes (every method unless said):
  /anything[/...]          200, echoes the request as JSON: method, path,
                           raw_path, query, headers, body, connection
  /status/CODE             answers CODE; every query parameter becomes a
                           response header (e.g. ?Retry-After=2&Link=...),
                           except `body` (the body instead of {"status": CODE})
  /response-headers        200 with every query parameter as a header
  /bytes/N                 N bytes of a-z
  /gzip                    a gzip-encoded JSON body (Content-Encoding: gzip)
  /delay/SECONDS           waits, then echoes like /anything
  /drip?numbytes=N&duration=S&delay=D
                           headers at once (Content-Length: N), then after D
                           seconds the N bytes spread over S seconds
  /redirect?to=URL&code=302   (loop=1: to itself)
  /leaky?size=S&leak=L&key=K
                           a leaky bucket like Shopify's: S requests deep,
                           draining L per second; answers 200 with
                           X-Shopify-Shop-Api-Call-Limit: USED/S, or 429 with
                           Retry-After: 1 when the bucket would overflow

Every request is in the log with its `connection` (a number per TCP
connection, in order of acceptance).

Control: GET /__mock/httpbin/connections -> {"opened": N} (TCP connections
accepted since the start).
"""
import gzip
import json
import math
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mockbase import (Mock, MockHandler, MockServer, Request, Response,  # noqa: E402
                      build_parser, json_response)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

_tls = threading.local()  # the handler thread's connection number


class HttpbinMock(Mock):
    name = "httpbin"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate")
        parser.add_argument("--tls-key", help="the certificate's PEM private key")

    def setup_routes(self):
        for m in METHODS:
            self.route(m, r"/anything(?P<rest>/.*)?", self.anything, auth=False)
            self.route(m, r"/status/(?P<code>\d{3})", self.status, auth=False)
            self.route(m, r"/response-headers", self.response_headers, auth=False)
            self.route(m, r"/delay/(?P<secs>[0-9.]+)", self.delay, auth=False)
            self.route(m, r"/redirect", self.redirect, auth=False)
        self.route("GET", r"/bytes/(?P<n>\d+)", self.nbytes, auth=False)
        self.route("GET", r"/gzip", self.gzipped, auth=False)
        self.route("GET", r"/leaky", self.leaky, auth=False)
        self.control("GET", "connections", self.connections)

    def load(self):
        self.buckets = {}

    def state(self):
        return {"buckets": {k: {"level": v[0]} for k, v in self.buckets.items()}}

    def error_response(self, status, detail, code=None):
        return json_response(status, {"status": status, "error": detail, "code": code})

    # --- routes --------------------------------------------------------------
    def echo(self, req):
        return {"method": req.method, "path": req.path, "raw_path": req.raw_path,
                "query": req.query, "headers": req.headers, "body": req.text(),
                "connection": getattr(_tls, "conn", None)}

    def anything(self, req):
        return json_response(200, self.echo(req))

    def status(self, req):
        code = int(req.params["code"])
        headers = {k: v[-1] for k, v in req.query.items() if k != "body"}
        body = req.arg("body")
        if body is not None:
            return Response(code, body, "application/json", headers)
        return json_response(code, {"status": code}, headers)

    def response_headers(self, req):
        headers = {k: v[-1] for k, v in req.query.items()}
        return json_response(200, {"headers": headers}, headers)

    def delay(self, req):
        secs = min(float(req.params["secs"]), 60.0)
        # sleep outside the mock's lock so other connections go on
        self.lock.release()
        try:
            time.sleep(secs)
        finally:
            self.lock.acquire()
        return json_response(200, self.echo(req))

    def nbytes(self, req):
        n = int(req.params["n"])
        body = bytes(97 + i % 26 for i in range(n))
        return Response(200, body, "application/octet-stream")

    def gzipped(self, req):
        doc = {"gzipped": True, "pad": "x" * 2000, "method": req.method}
        body = gzip.compress(json.dumps(doc).encode("utf-8"))
        return Response(200, body, "application/json", {"Content-Encoding": "gzip"})

    def redirect(self, req):
        code = int(req.arg("code", "302"))
        to = req.raw_path if req.arg("loop") else req.arg("to", "/anything")
        return json_response(code, {"location": to}, {"Location": to})

    def leaky(self, req):
        key = req.arg("key", "default")
        size = float(req.arg("size", "40"))
        leak = float(req.arg("leak", "2"))
        now = time.monotonic()
        level, last = self.buckets.get(key, (0.0, now))
        level = max(0.0, level - (now - last) * leak)
        used_hdr = "X-Shopify-Shop-Api-Call-Limit"
        if level + 1 > size + 0.05:
            self.buckets[key] = (level, now)
            return json_response(429, {"errors": "Exceeded %d calls per second for api client. "
                                                 "Reduce request rates to resume uninterrupted "
                                                 "service." % leak},
                                 {used_hdr: "%d/%d" % (math.ceil(level), size),
                                  "Retry-After": "1.0"})
        level += 1
        self.buckets[key] = (level, now)
        return json_response(200, {"level": level},
                             {used_hdr: "%d/%d" % (math.ceil(level - 1e-9), size)})

    def connections(self, req):
        return json_response(200, {"opened": self.server.conn_seq})


class HttpbinHandler(MockHandler):
    def setup(self):
        super().setup()
        _tls.conn = self.server.next_conn()

    def _handle(self):
        if urllib.parse.urlsplit(self.path).path == "/drip":
            self._drip()
            return
        super()._handle()

    def _drip(self):
        """Headers at once, then the body a byte at a time (low-speed tests)."""
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, self.path, headers, body)
        entry = self.server.record(req)
        n = max(0, min(int(req.arg("numbytes", "10")), 100000))
        duration = float(req.arg("duration", "2"))
        delay = float(req.arg("delay", "0"))
        entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        try:
            self.wfile.flush()
            if delay and self.server.stopping.wait(delay):
                return
            step = duration / n if n else 0
            for _ in range(n):
                self.wfile.write(b"*")
                self.wfile.flush()
                if step and self.server.stopping.wait(step):
                    return
        except OSError:
            self.close_connection = True


class HttpbinServer(MockServer):
    def __init__(self, addr, mock):
        super().__init__(addr, mock)
        self.RequestHandlerClass = HttpbinHandler
        self.conn_seq = 0
        self.conn_lock = threading.Lock()
        mock.server = self

    def next_conn(self):
        with self.conn_lock:
            self.conn_seq += 1
            return self.conn_seq

    def record(self, req):
        entry = super().record(req)
        entry["connection"] = getattr(_tls, "conn", None)
        return entry


def main(argv=None):
    args = build_parser(HttpbinMock).parse_args(argv)
    mock = HttpbinMock(args)
    server = HttpbinServer((args.host, args.port), mock)
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    sys.stdout.write("listening on %s://%s:%d\n" % (scheme, args.host, port))
    sys.stdout.flush()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
