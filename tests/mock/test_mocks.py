#!/usr/bin/env python3
"""Self-test of the mock API servers (python3 standard library only).

Starts each mock as a subprocess on a free port and checks, over real HTTP,
that it behaves as tests/mock/README.md says. Run: python3 tests/mock/test_mocks.py
"""
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "square")
TOKEN = "sq-test-token"


def start(script, *args):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, script), "--port", "0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on http://127.0.0.1:"):
        p.kill()
        raise RuntimeError("mock %s did not start: %r %s" % (script, line, p.stderr.read()))
    return p, line.strip().split()[-1]


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
        p.stderr.close()


class Client:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if data is not None and "Content-Type" not in (headers or {}):
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method, path, body=None, headers=None, raw=None):
        st, h, b = self.call(method, path, body, headers, raw)
        try:
            return st, h, json.loads(b) if b else None
        except ValueError:
            return st, h, b.decode("utf-8", "replace")

    def ctl(self, path, body=None):
        st, _, b = self.json("POST" if body is not None else "GET", "/__mock/" + path, body)
        assert st == 200, (path, st, b)
        return b


# ==========================================================================
class SquareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc, base = start("square.py", "--seed", "7", "--items", "30", "--orders", "33")
        cls.c = Client(base)
        cls.base = base

    @classmethod
    def tearDownClass(cls):
        stop(cls.proc)

    def setUp(self):
        self.c.ctl("reset", {})

    def sq(self, method, path, body=None, **kw):
        h = {"Authorization": "Bearer " + TOKEN, "Square-Version": "2025-08-20"}
        h.update(kw.get("headers") or {})
        return self.c.json(method, path, body, h)

    def state(self):
        return self.c.ctl("state")

    def walk(self, path, body, key, limit_field="limit"):
        pages, seen = [], []
        cursor = None
        for _ in range(1000):
            b = dict(body)
            if cursor:
                b["cursor"] = cursor
            st, _, r = self.sq("POST", path, b)
            self.assertEqual(st, 200, r)
            items = r.get(key, [])
            if limit_field in body:
                self.assertLessEqual(len(items), body[limit_field])
            pages.append(r)
            seen.extend(items)
            cursor = r.get("cursor")
            if not cursor:
                break
        return pages, seen

    # ---------------------------------------------------------------- auth
    def test_auth_and_version(self):
        st, _, r = self.c.json("GET", "/v2/locations")
        self.assertEqual(st, 401)
        self.assertEqual(r["errors"][0]["category"], "AUTHENTICATION_ERROR")
        self.assertEqual(r["errors"][0]["code"], "UNAUTHORIZED")
        self.assertIn("detail", r["errors"][0])
        st, _, r = self.c.json("GET", "/v2/locations", headers={"Authorization": "Bearer nope"})
        self.assertEqual((st, r["errors"][0]["code"]), (401, "UNAUTHORIZED"))
        st, _, r = self.sq("GET", "/v2/locations", headers={"Square-Version": "2025-8-1"})
        self.assertEqual((st, r["errors"][0]["code"]), (400, "INVALID_SQUARE_VERSION_FORMAT"))
        st, _, r = self.sq("GET", "/v2/nope")
        self.assertEqual((st, r["errors"][0]["code"]), (404, "NOT_FOUND"))
        st, _, r = self.c.json("POST", "/v2/catalog/search", raw=b"{not json",
                               headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(st, 400)
        self.assertEqual(r["errors"][0]["category"], "INVALID_REQUEST_ERROR")
        log = self.c.ctl("requests?path=/v2/locations")["requests"]
        self.assertEqual([e["status"] for e in log], [401, 401, 400])
        self.assertEqual(log[2]["headers"]["square-version"], "2025-8-1")

    # ---------------------------------------------------------------- locations
    def test_locations(self):
        st, _, r = self.sq("GET", "/v2/locations")
        self.assertEqual(st, 200)
        locs = r["locations"]
        self.assertEqual(len(locs), 3)
        self.assertNotIn("cursor", r)
        self.assertEqual([l["name"] for l in locs], sorted(l["name"] for l in locs))
        self.assertEqual(sorted(l["status"] for l in locs), ["ACTIVE", "ACTIVE", "INACTIVE"])
        for l in locs:
            for f in ("id", "name", "status", "timezone", "currency", "created_at", "merchant_id", "address"):
                self.assertIn(f, l)
        active = [l for l in locs if l["status"] == "ACTIVE"][0]
        self.c.ctl("square/deactivate_location", {"location_id": active["id"]})
        st, _, r = self.sq("GET", "/v2/locations")
        self.assertEqual(sum(l["status"] == "INACTIVE" for l in r["locations"]), 2)
        st, _, r = self.sq("GET", "/v2/locations/" + active["id"])
        self.assertEqual(r["location"]["status"], "INACTIVE")

    # ---------------------------------------------------------------- catalog
    def test_catalog_pagination_walks_everything_once(self):
        st = self.state()
        types = {"ITEM", "ITEM_VARIATION", "CATEGORY"}
        everything = {o["id"] for o in st["catalog"] if o["type"] in types}
        live = {o["id"] for o in st["catalog"] if o["type"] in types and not o["is_deleted"]}
        self.assertTrue(everything - live, "the generated catalog has tombstones")
        body = {"object_types": sorted(types), "include_deleted_objects": True, "limit": 7}
        pages, objs = self.walk("/v2/catalog/search", body, "objects")
        ids = [o["id"] for o in objs]
        self.assertEqual(len(ids), len(set(ids)), "no object twice")
        self.assertEqual(set(ids), everything)
        self.assertGreater(len(pages), 5)
        self.assertNotIn("cursor", pages[-1])
        self.assertTrue(all(p["latest_time"] == st["latest_time"] for p in pages))
        # the same walk twice gives the same pages (stable)
        pages2, objs2 = self.walk("/v2/catalog/search", body, "objects")
        self.assertEqual([o["id"] for o in objs2], ids)
        self.assertEqual([p.get("cursor") for p in pages2], [p.get("cursor") for p in pages])
        # without include_deleted_objects: no tombstones
        body = {"object_types": sorted(types), "limit": 1000}
        _, objs = self.walk("/v2/catalog/search", body, "objects")
        self.assertEqual({o["id"] for o in objs}, live)
        self.assertFalse(any(o["is_deleted"] for o in objs))
        # shapes
        item = next(o for o in objs if o["type"] == "ITEM")
        self.assertIsInstance(item["version"], int)
        self.assertRegex(item["updated_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertTrue(item["item_data"]["variations"])
        var = next(o for o in objs if o["type"] == "ITEM_VARIATION" and "price_money" in o["item_variation_data"])
        self.assertIn(var["item_variation_data"]["item_id"], everything)
        self.assertIsInstance(var["item_variation_data"]["price_money"]["amount"], int)
        # ragged pages: shorter than limit while more remain; still everything once
        self.c.ctl("square/config", {"ragged_pages": True})
        body = {"object_types": sorted(types), "include_deleted_objects": True, "limit": 10}
        pages, objs = self.walk("/v2/catalog/search", body, "objects")
        self.assertEqual(sorted(o["id"] for o in objs), sorted(everything))
        self.assertTrue(any(len(p["objects"]) < 10 and "cursor" in p for p in pages))
        self.c.ctl("square/config", {"ragged_pages": False})
        # default object_types: top-level only (no variations)
        _, objs = self.walk("/v2/catalog/search", {"limit": 1000}, "objects")
        self.assertEqual({o["type"] for o in objs}, {"ITEM", "CATEGORY"})

    def test_catalog_cursor_and_limit_errors(self):
        st, _, r = self.sq("POST", "/v2/catalog/search", {"cursor": "garbage!!"})
        self.assertEqual((st, r["errors"][0]["code"]), (400, "INVALID_CURSOR"))
        st, _, r = self.sq("POST", "/v2/catalog/search", {"object_types": ["ITEM"], "limit": 2})
        cur = r["cursor"]
        st, _, r = self.sq("POST", "/v2/catalog/search", {"object_types": ["ITEM"], "limit": 2, "cursor": cur[:-3] + "AAA"})
        self.assertEqual((st, r["errors"][0]["code"]), (400, "INVALID_CURSOR"))
        st, _, r = self.sq("POST", "/v2/catalog/search", {"object_types": ["CATEGORY"], "cursor": cur})
        self.assertEqual((st, r["errors"][0]["code"]), (400, "INVALID_CURSOR"))
        st, _, r = self.sq("POST", "/v2/catalog/search", {"object_types": ["BOGUS"]})
        self.assertEqual((st, r["errors"][0]["code"]), (400, "INVALID_ENUM_VALUE"))
        st, _, r = self.sq("POST", "/v2/catalog/search", {"begin_time": "yesterday"})
        self.assertEqual((st, r["errors"][0]["code"]), (400, "INVALID_TIME"))
        # spec: a limit above 1000 is ignored (default page 100) ...
        st, _, r = self.sq("POST", "/v2/catalog/search", {"object_types": ["ITEM_VARIATION"], "limit": 5000})
        self.assertEqual((st, len(r["objects"])), (200, 60 - sum(1 for o in self.state()["catalog"]
                                                                  if o["type"] == "ITEM_VARIATION"
                                                                  and o["is_deleted"])))
        # ... unless the strict switch is on
        self.c.ctl("square/config", {"strict_catalog_limit": True})
        st, _, r = self.sq("POST", "/v2/catalog/search", {"limit": 5000})
        self.assertEqual((st, r["errors"][0]["code"], r["errors"][0]["field"]), (400, "INVALID_VALUE", "limit"))

    def test_catalog_incremental(self):
        st = self.state()
        lt = st["latest_time"]
        items = [o for o in st["catalog"] if o["type"] == "ITEM" and not o["is_deleted"]]
        # begin_time is exclusive
        pivot = sorted(o["updated_at"] for o in st["catalog"])[40]
        _, objs = self.walk("/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"],
                                                   "begin_time": pivot}, "objects")
        want = {o["id"] for o in st["catalog"] if o["updated_at"] > pivot}
        self.assertEqual({o["id"] for o in objs}, want)
        self.assertTrue(any(o["is_deleted"] for o in objs), "begin_time returns tombstones")
        # nothing after latest_time
        st_, _, r = self.sq("POST", "/v2/catalog/search", {"begin_time": lt, "object_types": ["ITEM"]})
        self.assertEqual(st_, 200)
        self.assertNotIn("objects", r)
        self.assertEqual(r["latest_time"], lt)
        # change something at a controlled time
        self.c.ctl("clock", {"now": "2026-03-01T12:00:00Z"})
        it = items[0]
        up = self.c.ctl("square/upsert", {"objects": [{"id": it["id"], "item_data": {"name": "Renamed"}}]})
        self.assertEqual(up["objects"][0]["updated_at"], "2026-03-01T12:00:00.000Z")
        self.assertGreater(up["objects"][0]["version"], it["version"])
        self.c.ctl("clock", {"advance": 60})
        victim = items[1]
        d = self.c.ctl("square/delete", {"object_ids": [victim["id"]]})
        self.assertGreater(len(d["deleted_object_ids"]), 1, "deleting an item cascades to its variations")
        _, objs = self.walk("/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION"], "begin_time": lt},
                            "objects")
        by = {o["id"]: o for o in objs}
        self.assertEqual(by[it["id"]]["item_data"]["name"], "Renamed")
        self.assertTrue(by[victim["id"]]["is_deleted"])
        self.assertEqual(by[victim["id"]]["updated_at"], "2026-03-01T12:01:00.000Z")
        for vid in d["deleted_object_ids"]:
            self.assertTrue(by[vid]["is_deleted"])
        self.assertEqual(set(by), {it["id"]} | set(d["deleted_object_ids"]))
        # new object with a client id, and a new variation of it
        up = self.c.ctl("square/upsert", {"objects": [{"type": "ITEM", "id": "#new", "item_data": {
            "name": "Fresh", "variations": [{"id": "#newv", "item_variation_data": {
                "name": "Only", "price_money": {"amount": 500, "currency": "USD"}}}]}}]})
        self.assertEqual(len(up["id_mappings"]), 2)
        self.assertEqual(len(up["objects"][0]["item_data"]["variations"]), 1)

    # ---------------------------------------------------------------- inventory
    def test_inventory(self):
        st = self.state()
        counts = [c for c in st["counts"] if c["state"] not in ("NONE", "SOLD", "UNLINKED_RETURN")]
        pages, seen = self.walk("/v2/inventory/counts/batch-retrieve", {"limit": 13}, "counts")
        keys = [(c["catalog_object_id"], c["location_id"], c["state"]) for c in seen]
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual(len(keys), len(counts))
        stamps = [c["calculated_at"] for c in seen]
        self.assertEqual(stamps, sorted(stamps, reverse=True), "newest first across pages")
        self.assertTrue(all(isinstance(c["quantity"], str) for c in seen))
        self.assertNotIn("cursor", pages[-1])
        # filters
        pivot = sorted(stamps)[len(stamps) // 2]
        _, after = self.walk("/v2/inventory/counts/batch-retrieve", {"updated_after": pivot}, "counts")
        self.assertEqual(len(after), sum(1 for s in stamps if s > pivot))
        lid = seen[0]["location_id"]
        _, one = self.walk("/v2/inventory/counts/batch-retrieve",
                           {"location_ids": [lid], "states": ["IN_STOCK"], "limit": 1000}, "counts")
        self.assertTrue(one)
        self.assertTrue(all(c["location_id"] == lid and c["state"] == "IN_STOCK" for c in one))
        for bad, code in ((0, "VALUE_TOO_LOW"), (1001, "VALUE_TOO_HIGH")):
            s, _, r = self.sq("POST", "/v2/inventory/counts/batch-retrieve", {"limit": bad})
            self.assertEqual((s, r["errors"][0]["code"]), (400, code))
        # a control count change appears with a fresh calculated_at
        self.c.ctl("clock", {"now": "2026-06-01T00:00:00Z"})
        c0 = seen[-1]
        self.c.ctl("square/upsert", {"counts": [{"catalog_object_id": c0["catalog_object_id"],
                                                 "location_id": c0["location_id"], "quantity": "7.50"}]})
        _, after = self.walk("/v2/inventory/counts/batch-retrieve", {"updated_after": max(stamps)}, "counts")
        self.assertEqual([(c["quantity"], c["calculated_at"]) for c in after], [("7.5", "2026-06-01T00:00:00.000Z")])

    # ---------------------------------------------------------------- orders
    def test_orders(self):
        st = self.state()
        lids = [l["id"] for l in st["locations"]]
        s, _, r = self.sq("POST", "/v2/orders/search", {})
        self.assertEqual((s, r["errors"][0]["code"]), (400, "MISSING_REQUIRED_PARAMETER"))
        s, _, r = self.sq("POST", "/v2/orders/search", {"location_ids": lids * 4})
        self.assertEqual(s, 400)
        q = {"filter": {"date_time_filter": {"updated_at": {"start_at": "2020-01-01T00:00:00Z"}}},
             "sort": {"sort_field": "CREATED_AT", "sort_order": "ASC"}}
        s, _, r = self.sq("POST", "/v2/orders/search", {"location_ids": lids, "query": q})
        self.assertEqual((s, r["errors"][0]["code"]), (400, "INVALID_VALUE"))
        q["sort"]["sort_field"] = "UPDATED_AT"
        body = {"location_ids": lids, "query": q, "limit": 7}
        pages, orders = self.walk("/v2/orders/search", body, "orders")
        self.assertEqual(len(orders), 33)
        self.assertEqual(len({o["id"] for o in orders}), 33)
        ups = [o["updated_at"] for o in orders]
        self.assertEqual(ups, sorted(ups))
        o = orders[0]
        for f in ("id", "location_id", "state", "version", "created_at", "updated_at", "line_items", "total_money"):
            self.assertIn(f, o)
        li = o["line_items"][0]
        self.assertIsInstance(li["quantity"], str)
        self.assertIsInstance(li["base_price_money"]["amount"], int)
        # the cursor needs the original query
        s, _, r = self.sq("POST", "/v2/orders/search", body)
        changed = json.loads(json.dumps(body))
        changed["query"]["filter"]["date_time_filter"]["updated_at"]["start_at"] = "2021-01-01T00:00:00Z"
        changed["cursor"] = r["cursor"]
        s, _, r2 = self.sq("POST", "/v2/orders/search", changed)
        self.assertEqual(s, 400)
        # a new order after the watermark is found incrementally
        wm = max(ups)
        self.c.ctl("clock", {"now": "2026-07-01T00:00:00Z"})
        new = self.c.ctl("square/order", {"order": {"location_id": lids[0], "state": "COMPLETED", "line_items": [
            {"catalog_object_id": li["catalog_object_id"], "quantity": "2"}]}})["orders"][0]
        self.assertEqual(new["total_money"]["amount"], 2 * li["base_price_money"]["amount"])
        q2 = {"filter": {"date_time_filter": {"updated_at": {"start_at": wm}}},
              "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}
        _, inc = self.walk("/v2/orders/search", {"location_ids": lids, "query": q2}, "orders")
        self.assertEqual(inc[-1]["id"], new["id"])
        self.assertTrue(all(x["updated_at"] >= wm for x in inc))
        upd = self.c.ctl("square/order", {"order": {"id": new["id"], "state": "CANCELED"}})["orders"][0]
        self.assertEqual(upd["version"], 2)

    # ---------------------------------------------------------------- faults
    def test_faults(self):
        self.c.ctl("behave", {"path": "/v2/catalog/search", "status": 429, "count": 2, "retry_after": "2"})
        self.c.ctl("behave", {"path": "/v2/catalog/search", "status": 503})
        s, _, r = self.sq("GET", "/v2/locations")
        self.assertEqual(s, 200, "a fault for another path does not fire")
        for _ in range(2):
            s, h, r = self.sq("POST", "/v2/catalog/search", {})
            self.assertEqual(s, 429)
            self.assertEqual(h.get("Retry-After"), "2")
            self.assertEqual(r["errors"][0], {"code": "RATE_LIMITED", "category": "RATE_LIMIT_ERROR",
                                              "detail": r["errors"][0]["detail"]})
        s, h, r = self.sq("POST", "/v2/catalog/search", {})
        self.assertEqual((s, r["errors"][0]["category"]), (503, "API_ERROR"))
        self.assertNotIn("Retry-After", h)
        s, _, _ = self.sq("POST", "/v2/catalog/search", {})
        self.assertEqual(s, 200)
        log = self.c.ctl("requests?path=/v2/catalog")["requests"]
        self.assertEqual([e["status"] for e in log], [429, 429, 503, 200])
        self.assertEqual(log[0]["fault"]["status"], 429)
        # slow
        self.c.ctl("behave", {"slow": 0.6})
        t = time.time()
        s, _, _ = self.sq("GET", "/v2/locations")
        self.assertEqual(s, 200)
        self.assertGreaterEqual(time.time() - t, 0.55)
        # skip: the 2nd matching request fails
        self.c.ctl("behave", {"path": "/v2/locations", "status": 500, "skip": 1})
        self.assertEqual(self.sq("GET", "/v2/locations")[0], 200)
        self.assertEqual(self.sq("GET", "/v2/locations")[0], 500)
        self.assertEqual(self.sq("GET", "/v2/locations")[0], 200)

    def raw(self, method, path, body=b""):
        host, port = self.base.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(method, path, body=body, headers={"Authorization": "Bearer " + TOKEN,
                                                       "Content-Type": "application/json"})
        return conn

    def test_truncate_and_drop(self):
        self.c.ctl("behave", {"truncate": True})
        conn = self.raw("POST", "/v2/catalog/search", b"{}")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        full = int(resp.getheader("Content-Length"))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            resp.read()
        self.assertEqual(len(cm.exception.partial), full // 2)
        with self.assertRaises(ValueError):
            json.loads(cm.exception.partial)
        conn.close()
        self.c.ctl("behave", {"drop": True, "path": "/v2/locations"})
        conn = self.raw("GET", "/v2/locations")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
        conn.close()
        log = self.c.ctl("requests")["requests"]
        self.assertEqual(log[-1]["status"], 0)
        self.assertEqual(self.sq("GET", "/v2/locations")[0], 200)

    def test_keep_alive_and_log(self):
        conn = self.raw("GET", "/v2/locations?a=1&a=2&b=")
        r1 = conn.getresponse()
        r1.read()
        sock = conn.sock
        conn.request("POST", "/v2/catalog/search", body=b'{"limit": 1}',
                     headers={"Authorization": "Bearer " + TOKEN, "X-Custom": "Yes"})
        r2 = conn.getresponse()
        self.assertEqual(json.loads(r2.read())["objects"].__len__(), 1)
        self.assertIs(conn.sock, sock, "the connection was reused")
        conn.close()
        log = self.c.ctl("requests")["requests"]
        self.assertEqual(len(log), 2, "control calls are not logged")
        a, b = log
        self.assertEqual((a["method"], a["path"], a["query"]), ("GET", "/v2/locations", {"a": ["1", "2"], "b": [""]}))
        self.assertEqual(a["headers"]["authorization"], "Bearer " + TOKEN)
        self.assertEqual(b["body"], '{"limit": 1}')
        self.assertEqual(b["headers"]["x-custom"], "Yes")
        self.assertLessEqual(a["time"], b["time"])
        self.assertAlmostEqual(a["time"], time.time(), delta=30)
        self.assertEqual((a["status"], b["status"]), (200, 200))
        self.assertEqual(self.c.ctl("requests?path=/v2/catalog")["count"], 1)

    def test_data_file(self):
        path = os.path.join(FIXTURES, "small.json")
        p, base = start("square.py", "--data", path, "--token", "other")
        try:
            c = Client(base)
            s, _, r = c.json("GET", "/v2/locations", headers={"Authorization": "Bearer other"})
            self.assertEqual(s, 200)
            with open(path) as f:
                data = json.load(f)
            self.assertEqual(len(r["locations"]), len(data["locations"]))
            self.assertEqual(c.ctl("state")["catalog"], data["catalog"])
        finally:
            self.assertEqual(stop(p), 0)


# ==========================================================================
class PythonAnywhereTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc, base = start("pythonanywhere.py", "--max-batch", "5")
        cls.c = Client(base)

    @classmethod
    def tearDownClass(cls):
        stop(cls.proc)

    def setUp(self):
        self.c.ctl("reset", {})

    def login(self):
        s, _, r = self.c.json("POST", "/api/oem/token/", {"username": "shop", "password": "secret"})
        self.assertEqual(s, 200, r)
        return r

    def post(self, path, body, token=None, raw=None):
        token = token or self.login()["access"]
        return self.c.json("POST", path, body, {"Authorization": "Bearer " + token}, raw=raw)

    def state(self):
        return self.c.ctl("state")

    def test_tokens(self):
        s, _, r = self.c.json("POST", "/api/oem/token/", {"username": "shop", "password": "nope"})
        self.assertEqual((s, r), (401, {"detail": "No active account found with the given credentials"}))
        tok = self.login()
        for t in (tok["access"], tok["refresh"]):
            parts = t.split(".")
            self.assertEqual(len(parts), 3)
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            self.assertIn("exp", payload)
        self.assertEqual(payload["exp"] - payload["iat"], 86400)
        s, _, r = self.c.json("POST", "/api/oem/sync/products/", {"products": []})
        self.assertEqual(s, 401)
        bad = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}
        s, _, r = self.post("/api/oem/sync/products/", {"products": []}, token="a.b.c")
        self.assertEqual((s, r), (401, bad))
        s, _, r = self.post("/api/oem/sync/products/", {"products": []}, token=tok["access"])
        self.assertEqual(s, 200)
        self.c.ctl("pa/expire", {})
        s, _, r = self.post("/api/oem/sync/products/", {"products": []}, token=tok["access"])
        self.assertEqual((s, r), (401, bad))
        s, _, r = self.c.json("POST", "/api/oem/token/refresh/", {"refresh": tok["refresh"]})
        self.assertEqual(s, 200)
        self.assertEqual(list(r), ["access"])
        s, _, _ = self.post("/api/oem/sync/products/", {"products": []}, token=r["access"])
        self.assertEqual(s, 200)
        # lifetime: 300 s by default
        self.c.ctl("clock", {"advance": 301})
        s, _, r2 = self.post("/api/oem/sync/products/", {"products": []}, token=r["access"])
        self.assertEqual((s, r2), (401, bad))
        s, _, r = self.c.json("POST", "/api/oem/token/refresh/", {"refresh": "x.y.z"})
        self.assertEqual((s, r), (401, {"detail": "Token is invalid or expired", "code": "token_not_valid"}))

    def test_products(self):
        P = "/api/oem/sync/products/"
        batch = [
            {"barcode_number": "111", "brand": "B", "size": "M", "color": "red", "location": "A", "name": "Shirt",
             "selling_price": "10.00", "cost_price": 4, "quantity": 3},
            {"barcode_number": "", "brand": "B", "size": "L", "color": "red", "location": "A", "name": "Shirt L",
             "selling_price": 12, "quantity": 1},
            {"barcode_number": None, "brand": "C", "size": "S", "color": "blue", "location": "A", "name": "Cap",
             "selling_price": -1},
            {"brand": "D", "name": "Odd", "quantity": "many"},
        ]
        s, _, r = self.post(P, {"products": batch})
        self.assertEqual(s, 200, r)
        self.assertEqual((r["created"], r["updated"], r["skipped"], r["errors"]), (2, 0, 0, 2))
        self.assertEqual([x["index"] for x in r["results"]], [0, 1, 2, 3])
        self.assertEqual([x["status"] for x in r["results"]], ["created", "created", "error", "error"])
        self.assertIn("selling_price", r["results"][2]["error"])
        self.assertIn("quantity", r["results"][3]["error"])
        ids = [x["id"] for x in r["results"][:2]]
        # same again: skipped; changed: updated (by barcode, and by brand+size+color+location)
        s, _, r = self.post(P, {"products": batch[:2]})
        self.assertEqual([x["status"] for x in r["results"]], ["skipped", "skipped"])
        changed = [dict(batch[0], selling_price="11.5", name="Shirt v2"), dict(batch[1], barcode_number=None, quantity=9)]
        s, _, r = self.post(P, {"products": changed})
        self.assertEqual([(x["status"], x["id"]) for x in r["results"]], [("updated", ids[0]), ("updated", ids[1])])
        prods = {p["id"]: p for p in self.state()["products"]}
        self.assertEqual(len(prods), 2)
        self.assertEqual((prods[ids[0]]["selling_price"], prods[ids[0]]["name"]), ("11.50", "Shirt v2"))
        self.assertEqual(prods[ids[1]]["quantity"], 9)
        # a missing name refuses the whole batch; malformed JSON too; >max-batch is 413
        s, _, r = self.post(P, {"products": [dict(batch[0], barcode_number="222"), {"brand": "X"}]})
        self.assertEqual(s, 400)
        self.assertIn("detail", r)
        self.assertEqual(r["errors"]["products"]["1"]["name"], ["This field is required."])
        s, _, r = self.post(P, None, raw=b'{"products": [{"name": "x"')
        self.assertEqual(s, 400)
        s, _, r = self.post(P, {"products": [{"name": "n%d" % i} for i in range(6)]})
        self.assertEqual(s, 413)
        self.assertEqual(len(self.state()["products"]), 2, "nothing stored by refused batches")

    def test_receipts_dedup(self):
        R = "/api/oem/sync/receipts/"

        def receipt(n, sales=2, pays=1):
            return {"local_receipt_id": "r%d" % n, "receipt_number": "N-%d" % n, "customer_name": "Ann",
                    "total_amount": "20.00", "discount_amount": 0, "discount_percentage": 0, "delivery_cost": 0,
                    "created_at": "2026-01-02T10:00:00Z",
                    "sales": [{"local_sale_id": "r%d-s%d" % (n, k), "product_barcode": "111", "quantity": 1,
                               "unit_price": "10.00", "total_price": "10.00"} for k in range(sales)],
                    "payments": [{"local_payment_id": "r%d-p%d" % (n, k), "amount": "20.00", "method": "cash",
                                  "payment_date": "2026-01-02T10:00:00Z"} for k in range(pays)]}
        bad = receipt(3)
        bad["sales"][0]["quantity"] = "abc"
        s, _, r = self.post(R, {"receipts": [receipt(1), receipt(2), bad]})
        self.assertEqual(s, 200, r)
        self.assertEqual([x["status"] for x in r["results"]], ["created", "created", "error"])
        st = self.state()
        self.assertEqual((len(st["receipts"]), len(st["sales"]), len(st["payments"])), (2, 4, 2))
        # resend: skipped, never duplicated; a new sale on an old receipt is created
        more = receipt(1, sales=3)
        s, _, r = self.post(R, {"receipts": [receipt(2), more]})
        self.assertEqual([x["status"] for x in r["results"]], ["skipped", "updated"])
        self.assertEqual(r["results"][1]["sales"], {"created": 1, "skipped": 2})
        st = self.state()
        self.assertEqual((len(st["receipts"]), len(st["sales"]), len(st["payments"])), (2, 5, 2))
        r1 = next(x for x in st["receipts"] if x["local_receipt_id"] == "r1")
        self.assertEqual(len(r1["sales"]), 3)
        self.assertTrue(all(isinstance(x["id"], int) for x in r1["sales"] + r1["payments"]))
        # a missing local_sale_id refuses the whole batch
        missing = receipt(4)
        del missing["sales"][1]["local_sale_id"]
        s, _, r = self.post(R, {"receipts": [receipt(5), missing]})
        self.assertEqual(s, 400)
        self.assertIn("local_sale_id", r["errors"]["receipts"]["1"]["sales"]["1"])
        self.assertEqual(len(self.state()["receipts"]), 2)
        # the response was lost after the server stored the batch: the retry is skipped
        tok = self.login()["access"]
        self.c.ctl("behave", {"path": R, "drop": "after"})
        with self.assertRaises(Exception):
            self.post(R, {"receipts": [receipt(6)]}, token=tok)
        s, _, r = self.post(R, {"receipts": [receipt(6)]}, token=tok)
        self.assertEqual(r["results"][0]["status"], "skipped")
        self.assertEqual(len(self.state()["receipts"]), 3)
        # 429 with Retry-After in DRF's shape
        self.c.ctl("behave", {"path": R, "status": 429, "retry_after": "3"})
        s, h, r = self.post(R, {"receipts": []}, token=tok)
        self.assertEqual((s, h.get("Retry-After")), (429, "3"))
        self.assertIn("throttled", r["detail"])

    def test_sigterm(self):
        p, base = start("pythonanywhere.py")
        t = time.time()
        self.assertEqual(stop(p), 0)
        self.assertLess(time.time() - t, 5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
