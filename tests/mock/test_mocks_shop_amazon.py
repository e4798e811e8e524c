#!/usr/bin/env python3
"""Self-test of the Shopify and Amazon mock servers (python3 standard library only).

Starts each mock as a subprocess on a free port and checks, over real HTTP,
that it behaves as tests/mock/README.md says.
Run: python3 tests/mock/test_mocks_shop_amazon.py
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
SHOP_TOKEN = "shpat_test"
MKT = "ATVPDKIKX0DER"
CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "test-secret"
REFRESH = "Atzr|test-refresh"


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
    """Keep-alive HTTP client (one connection, like libcurl would use)."""

    def __init__(self, base):
        self.base = base
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def raw(self, method, url, body=None, headers=None):
        """url: a path or a full URL (Link headers). Returns (status, headers dict, bytes)."""
        if url.startswith("http"):
            u = urllib.parse.urlsplit(url)
            assert (u.hostname, u.port) == (self.host, self.port), url
            url = u.path + ("?" + u.query if u.query else "")
        h = dict(headers or {})
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
            try:
                self.conn.request(method, url, body=data, headers=h)
                r = self.conn.getresponse()
                b = r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, b
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def json(self, method, url, body=None, headers=None):
        st, h, b = self.raw(method, url, body, headers)
        try:
            return st, h, json.loads(b) if b else None
        except ValueError:
            return st, h, b.decode("utf-8", "replace")

    def ctl(self, path, body=None):
        st, _, b = self.json("POST" if body is not None else "GET", "/__mock/" + path, body)
        assert st == 200, (path, st, b)
        return b

    def close(self):
        if self.conn:
            self.conn.close()


def parse_link(h):
    return {rel: url for url, rel in re.findall(r'<([^>]*)>;\s*rel="(\w+)"', h or "")}


# ==========================================================================
class ShopifyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc, cls.base = start("shopify.py", "--seed", "3", "--orders", "57", "--products", "23",
                                   "--customers", "12")
        cls.c = Client(cls.base)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        stop(cls.proc)

    def setUp(self):
        self.c.ctl("reset", {})

    def get(self, path, token=SHOP_TOKEN, headers=None):
        h = {"X-Shopify-Access-Token": token} if token else {}
        h.update(headers or {})
        return self.c.json("GET", path, headers=h)

    def state(self, shop="test-shop"):
        return self.c.ctl("state")["shops"][shop]

    def walk(self, first):
        pages, seen = [], []
        url = first
        for _ in range(500):
            st, h, r = self.get(url)
            self.assertEqual(st, 200, r)
            pages.append((h, r))
            key = next(iter(r))
            seen.extend(r[key])
            nxt = parse_link(h.get("link")).get("next")
            if not nxt:
                break
            url = nxt
        return pages, seen

    # ---------------------------------------------------------------- auth, versions
    def test_auth_and_versions(self):
        st, h, r = self.get("/admin/api/2025-01/orders.json", token=None)
        self.assertEqual(st, 401)
        self.assertEqual(r, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})
        st, _, r = self.get("/admin/api/2025-01/orders.json", token="shpat_wrong")
        self.assertEqual(st, 401)
        st, h, _ = self.get("/admin/api/2025-01/orders.json")
        self.assertEqual((st, h["x-shopify-api-version"]), (200, "2025-01"))
        self.assertEqual(h["x-shopify-shop-api-call-limit"], "1/40")
        st, h, _ = self.get("/admin/api/2019-07/orders.json")      # long gone: falls forward
        self.assertEqual((st, h["x-shopify-api-version"]), (200, "2024-10"))
        st, h, _ = self.get("/admin/api/unstable/products.json")
        self.assertEqual(h["x-shopify-api-version"], "unstable")
        st, _, r = self.get("/admin/api/2025-13/orders.json")
        self.assertEqual((st, r), (404, {"errors": "Not Found"}))
        self.c.ctl("shopify/config", {"versions": ["2025-04", "2025-07"]})
        st, h, _ = self.get("/admin/api/2025-01/orders.json")
        self.assertEqual(h["x-shopify-api-version"], "2025-04")
        # tokens added through the control API
        self.c.ctl("shopify/tokens", {"add": ["shpat_second"]})
        self.assertEqual(self.get("/admin/api/2025-04/shop.json", token="shpat_second")[0], 200)
        self.c.ctl("shopify/tokens", {"remove": ["shpat_second"]})
        self.assertEqual(self.get("/admin/api/2025-04/shop.json", token="shpat_second")[0], 401)

    # ---------------------------------------------------------------- pagination
    def test_pagination_walks_every_page_once(self):
        everything = {o["id"] for o in self.state()["orders"]}
        self.assertEqual(len(everything), 57)
        pages, seen = self.walk("/admin/api/2025-01/orders.json?status=any&limit=7")
        ids = [o["id"] for o in seen]
        self.assertEqual(len(ids), len(set(ids)), "no order twice")
        self.assertEqual(set(ids), everything)
        self.assertEqual(ids, sorted(ids), "sorted by id")
        self.assertEqual(len(pages), 9)
        self.assertTrue(all(len(r["orders"]) == 7 for _, r in pages[:-1]))
        first, last = parse_link(pages[0][0].get("link")), parse_link(pages[-1][0].get("link"))
        self.assertNotIn("previous", first)
        self.assertNotIn("next", last)
        self.assertIn("previous", last)
        # the Link URL points at the address the client used, keeps limit, carries only limit+page_info
        u = urllib.parse.urlsplit(first["next"])
        self.assertEqual("%s://%s" % (u.scheme, u.netloc), self.base)
        self.assertEqual(u.path, "/admin/api/2025-01/orders.json")
        q = urllib.parse.parse_qs(u.query)
        self.assertEqual(sorted(q), ["limit", "page_info"])
        self.assertEqual(q["limit"], ["7"])
        # rel="previous" from page 2 gives page 1 again
        prev = parse_link(pages[1][0]["link"])["previous"]
        st, _, r = self.get(prev)
        self.assertEqual([o["id"] for o in r["orders"]], [o["id"] for o in pages[0][1]["orders"]])
        # default status is open; default limit 50; max 250
        st, h, r = self.get("/admin/api/2025-01/orders.json")
        open_ids = {o["id"] for o in self.state()["orders"] if not o["closed_at"] and not o["cancelled_at"]}
        self.assertTrue(0 < len(open_ids) < 50)
        self.assertEqual({o["id"] for o in r["orders"]}, open_ids)
        self.assertNotIn("link", h)
        st, h, r = self.get("/admin/api/2025-01/orders.json?status=any")
        self.assertEqual(len(r["orders"]), 50)
        self.assertIn("next", parse_link(h["link"]))
        st, _, r = self.get("/admin/api/2025-01/orders.json?status=any&limit=250")
        self.assertEqual(len(r["orders"]), 57)
        st, _, r = self.get("/admin/api/2025-01/orders.json?limit=251")
        self.assertEqual(st, 400)
        self.assertIn("limit", r["errors"])
        self.assertEqual(self.get("/admin/api/2025-01/orders.json?limit=0")[0], 400)
        self.c.ctl("shopify/config", {"limit_over_max": "clamp"})
        st, _, r = self.get("/admin/api/2025-01/orders.json?limit=999&status=any")
        self.assertEqual((st, len(r["orders"])), (200, 57))
        # fields are kept through the walk
        _, seen = self.walk("/admin/api/2025-01/customers.json?limit=5&fields=id,email")
        self.assertEqual(len(seen), 12)
        self.assertTrue(all(set(c) == {"id", "email"} for c in seen))
        # locations: one page, no Link
        st, h, r = self.get("/admin/api/2025-01/locations.json?limit=1")
        self.assertEqual(len(r["locations"]), 3)
        self.assertNotIn("link", h)

    def test_page_info_rules(self):
        st, h, r = self.get("/admin/api/2025-01/orders.json?status=any&limit=5")
        nxt = parse_link(h["link"])["next"]
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(nxt).query)["page_info"][0]
        # a filter next to page_info: 400, even the same one
        for extra in ("status=any", "updated_at_min=2024-01-01T00:00:00-04:00", "since_id=1"):
            st, _, r = self.get("/admin/api/2025-01/orders.json?limit=5&page_info=%s&%s" % (token, extra))
            self.assertEqual(st, 400, extra)
            self.assertIn("cannot be passed when page_info is present", r["errors"]["page_info"])
        # limit and fields are allowed, and the filters stay those of the first request
        st, _, r = self.get("/admin/api/2025-01/orders.json?limit=3&fields=id,closed_at&page_info=" + token)
        self.assertEqual(st, 200)
        self.assertEqual(len(r["orders"]), 3)
        self.assertEqual(set(r["orders"][0]), {"id", "closed_at"})
        # garbled, truncated or foreign page_info: 400
        for bad in (token[:-3] + "AAA", token[:20], "not-a-cursor", ""):
            st, _, r = self.get("/admin/api/2025-01/orders.json?page_info=" + bad)
            self.assertEqual(st, 400, bad)
            self.assertIn("page_info", r["errors"])
        st, _, r = self.get("/admin/api/2025-01/products.json?page_info=" + token)
        self.assertEqual(st, 400)
        # the open-orders filter is baked into the cursor
        st, h, r = self.get("/admin/api/2025-01/orders.json?limit=3")
        _, seen = self.walk(parse_link(h["link"])["next"])
        self.assertTrue(all(not o["closed_at"] and not o["cancelled_at"] for o in seen))

    def test_big_ids_survive_in_json_text(self):
        st, _, body = self.c.raw("GET", "/admin/api/2025-01/orders.json?status=any&limit=3",
                                 headers={"X-Shopify-Access-Token": SHOP_TOKEN})
        text = body.decode()
        orders = json.loads(text)["orders"]
        for o in orders:
            self.assertGreater(o["id"], 2 ** 53)
            self.assertIn('"id":%d' % o["id"], text)
            self.assertNotEqual(int(float(o["id"])), o["id"], "a double cannot hold this id")
            for li in o["line_items"]:
                self.assertGreater(li["id"], 2 ** 53)
                self.assertGreater(li["variant_id"], 2 ** 53)
            self.assertRegex(o["updated_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-04:00$")
            self.assertRegex(o["total_price"], r"^\d+\.\d\d$")
        # two ids that collapse to the same double are different orders
        as_float = json.loads(text, parse_int=float)["orders"]
        self.assertTrue(any(int(a["id"]) != b["id"] for a, b in zip(as_float, orders)))
        st, _, r = self.get("/admin/api/2025-01/products.json?limit=2")
        v = r["products"][0]["variants"][0]
        self.assertGreater(v["id"], 2 ** 53)
        self.assertGreater(v["inventory_item_id"], 2 ** 53)
        self.assertIsInstance(v["price"], str)

    # ---------------------------------------------------------------- rate limit
    def test_leaky_bucket_counts_and_429(self):
        self.c.ctl("clock", {"now": "2026-01-01T00:00:00Z"})         # frozen: no leaking
        path = "/admin/api/2025-01/customers.json?limit=1"
        for n in range(1, 41):
            st, h, _ = self.get(path)
            self.assertEqual(st, 200)
            self.assertEqual(h["x-shopify-shop-api-call-limit"], "%d/40" % n)
        st, h, r = self.get(path)
        self.assertEqual(st, 429)
        self.assertEqual(h["retry-after"], "2.0")
        self.assertEqual(h["x-shopify-shop-api-call-limit"], "40/40")
        self.assertEqual(r, {"errors": "Exceeded 2 calls per second for api client. "
                                       "Reduce request rates to resume uninterrupted service."})
        self.c.ctl("clock", {"advance": 2.0})                         # 4 calls leaked out
        st, h, _ = self.get(path)
        self.assertEqual((st, h["x-shopify-shop-api-call-limit"]), (200, "37/40"))
        self.assertEqual(self.c.ctl("shopify/bucket")["shops"]["test-shop"]["used"], 37)
        self.c.ctl("shopify/bucket", {"used": 0})
        self.assertEqual(self.get(path)[1]["x-shopify-shop-api-call-limit"], "1/40")

    def test_hammering_gets_429_and_a_polite_client_does_not(self):
        self.c.ctl("shopify/config", {"bucket": 8, "leak": 10})
        path = "/admin/api/2025-01/products.json?limit=1"
        statuses = [self.get(path)[0] for _ in range(30)]
        self.assertIn(429, statuses)
        self.assertEqual(statuses[:8], [200] * 8)
        self.c.ctl("shopify/bucket", {"used": 0})
        polite = []
        for _ in range(30):
            st, h, _ = self.get(path)
            polite.append(st)
            used, size = map(int, h["x-shopify-shop-api-call-limit"].split("/"))
            if used >= size - 1:
                time.sleep(2 / 10.0)            # let two calls leak out
        self.assertEqual(set(polite), {200})

    # ---------------------------------------------------------------- filters, control
    def test_updated_at_min_inclusive_with_offsets(self):
        orders = self.state()["orders"]
        stamps = sorted(o["updated_at"] for o in orders)
        pivot = stamps[len(stamps) // 2]
        expect = {o["id"] for o in orders if o["updated_at"] >= pivot}   # same offset: text order = time order
        q = urllib.parse.quote(pivot)
        _, seen = self.walk("/admin/api/2025-01/orders.json?status=any&limit=9&updated_at_min=" + q)
        self.assertEqual({o["id"] for o in seen}, expect)
        self.assertIn(pivot, [o["updated_at"] for o in seen], "inclusive")
        # the same instant written in UTC
        t = time.strptime(pivot[:19], "%Y-%m-%dT%H:%M:%S")
        utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.mktime(t) - time.timezone + 4 * 3600))
        _, seen = self.walk("/admin/api/2025-01/orders.json?status=any&limit=250&updated_at_min=" + utc)
        self.assertEqual({o["id"] for o in seen}, expect)
        st, _, r = self.get("/admin/api/2025-01/orders.json?updated_at_min=yesterday")
        self.assertEqual(st, 400)

    def test_control_updates_and_deletes(self):
        self.c.ctl("clock", {"now": "2026-01-01T00:00:00Z"})
        o = self.state()["orders"][5]
        r = self.c.ctl("shopify/order", {"order": {"id": o["id"], "note": "changed"}})
        self.assertEqual(r["orders"][0]["updated_at"], "2025-12-31T20:00:00-04:00")
        st, _, r = self.get("/admin/api/2025-01/orders.json?status=any&updated_at_min=2025-12-31T20:00:00-04:00")
        self.assertEqual([x["id"] for x in r["orders"]], [o["id"]])
        self.assertEqual(r["orders"][0]["note"], "changed")
        # a new order gets a larger id and comes last
        r = self.c.ctl("shopify/order", {"order": {"line_items": [{"variant_id": self.state()["products"][0]["variants"][0]["id"],
                                                                   "quantity": 2}]}})
        new = r["orders"][0]
        self.assertGreater(new["id"], max(x["id"] for x in self.state()["orders"] if x["id"] != new["id"]))
        self.assertEqual(new["created_at"], "2025-12-31T20:00:00-04:00")
        # cancel it: it leaves the open list, stays in any
        self.c.ctl("shopify/order", {"order": {"id": new["id"], "status": "cancelled"}})
        st, _, r = self.get("/admin/api/2025-01/orders.json?ids=%d" % new["id"])
        self.assertEqual(r["orders"], [])
        st, _, r = self.get("/admin/api/2025-01/orders.json?status=cancelled&ids=%d" % new["id"])
        self.assertEqual(r["orders"][0]["cancel_reason"], "other")
        # a deleted product vanishes, with its inventory levels
        p = self.state()["products"][0]
        iid = p["variants"][0]["inventory_item_id"]
        self.c.ctl("shopify/delete", {"products": [p["id"]]})
        _, seen = self.walk("/admin/api/2025-01/products.json?limit=250")
        self.assertNotIn(p["id"], [x["id"] for x in seen])
        self.assertEqual(len(seen), 22)
        self.assertEqual(self.get("/admin/api/2025-01/products/%d.json" % p["id"])[0], 404)
        st, _, r = self.get("/admin/api/2025-01/inventory_levels.json?inventory_item_ids=%d" % iid)
        self.assertEqual(r["inventory_levels"], [])
        # product update and status filter
        q = self.state()["products"][1]
        self.c.ctl("shopify/product", {"product": {"id": q["id"], "status": "archived", "title": "Gone soon"}})
        st, _, r = self.get("/admin/api/2025-01/products.json?status=archived&limit=250")
        self.assertIn(q["id"], [x["id"] for x in r["products"]])
        self.assertTrue(all(x["status"] == "archived" for x in r["products"]))
        st, _, r = self.get("/admin/api/2025-01/products/count.json")
        self.assertEqual(r, {"count": 22})

    def test_inventory_levels(self):
        st, _, r = self.get("/admin/api/2025-01/inventory_levels.json")
        self.assertEqual(st, 422)
        self.assertIn("errors", r)
        state = self.state()
        loc = state["locations"][0]["id"]
        expect = {(l["inventory_item_id"], l["location_id"]) for l in state["inventory_levels"]
                  if l["location_id"] == loc}
        _, seen = self.walk("/admin/api/2025-01/inventory_levels.json?location_ids=%d&limit=4" % loc)
        got = [(l["inventory_item_id"], l["location_id"]) for l in seen]
        self.assertEqual(len(got), len(set(got)))
        self.assertEqual(set(got), expect)
        self.assertEqual(set(seen[0]), {"inventory_item_id", "location_id", "available", "updated_at",
                                        "admin_graphql_api_id"})
        self.c.ctl("clock", {"now": "2026-02-01T12:00:00Z"})
        iid, lid = got[0]
        self.c.ctl("shopify/inventory", {"levels": [{"inventory_item_id": iid, "location_id": lid, "available": 99}]})
        st, _, r = self.get("/admin/api/2025-01/inventory_levels.json?location_ids=%d&updated_at_min=2026-02-01" % lid)
        self.assertEqual([(l["inventory_item_id"], l["available"]) for l in r["inventory_levels"]], [(iid, 99)])

    def test_injected_fault_has_shopify_body(self):
        self.c.ctl("behave", {"path": "/admin/api/2025-01/orders.json", "status": 429})
        st, h, r = self.get("/admin/api/2025-01/orders.json")
        self.assertEqual((st, h.get("retry-after")), (429, "2.0"))
        self.assertIn("Exceeded", r["errors"])
        self.c.ctl("behave", {"path": "/admin/api/2025-01/orders.json", "status": 503})
        st, _, r = self.get("/admin/api/2025-01/orders.json")
        self.assertEqual((st, r), (503, {"errors": "Service Unavailable"}))

    def test_several_shops_and_fixture(self):
        p, base = start("shopify.py", "--shops", "alpha,beta", "--orders", "5", "--products", "3",
                        "--customers", "2")
        c = Client(base)
        try:
            h = lambda tok, host=None: dict({"X-Shopify-Access-Token": tok}, **({"Host": host} if host else {}))
            st, _, a = c.json("GET", "/admin/api/2025-01/orders.json?status=any", headers=h("shpat_test_alpha"))
            st, _, b = c.json("GET", "/admin/api/2025-01/orders.json?status=any", headers=h("shpat_test_beta"))
            self.assertEqual(len(a["orders"]), 5)
            self.assertFalse({o["id"] for o in a["orders"]} & {o["id"] for o in b["orders"]})
            st, _, _ = c.json("GET", "/admin/api/2025-01/orders.json", headers=h("shpat_test_alpha",
                                                                                 "beta.myshopify.com"))
            self.assertEqual(st, 401)
            st, hh, _ = c.json("GET", "/admin/api/2025-01/orders.json", headers=h("shpat_test_beta",
                                                                                  "beta.myshopify.com"))
            self.assertEqual((st, hh["x-shopify-shop-api-call-limit"]), (200, "2/40"))   # its own bucket (the 401 did not count)
        finally:
            c.close()
            stop(p)
        # the fixture loads and serves the same data
        fx = os.path.join(FIXTURES, "shopify", "small.json")
        with open(fx, encoding="utf-8") as f:
            data = json.load(f)
        p, base = start("shopify.py", "--data", fx)
        c = Client(base)
        try:
            st = c.ctl("state")["shops"]
            name = next(iter(data["shops"]))
            for k in ("orders", "products", "customers", "locations", "inventory_levels"):
                self.assertEqual(st[name][k], data["shops"][name][k], k)
        finally:
            c.close()
            stop(p)


# ==========================================================================
class AmazonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc, cls.base = start("amazon.py", "--seed", "5", "--orders", "45", "--rate-scale", "100")
        cls.c = Client(cls.base)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        stop(cls.proc)

    def setUp(self):
        self.c.ctl("reset", {})
        self._tok = None

    def lwa(self, **over):
        form = {"grant_type": "refresh_token", "refresh_token": REFRESH, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET}
        form.update(over)
        form = {k: v for k, v in form.items() if v is not None}
        return self.c.json("POST", "/auth/o2/token", urllib.parse.urlencode(form),
                           {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"})

    def token(self):
        if self._tok is None:
            st, _, r = self.lwa()
            self.assertEqual(st, 200, r)
            self._tok = r["access_token"]
        return self._tok

    def sp(self, path, params=None, token=True):
        url = path + ("?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote) if params else "")
        h = {"x-amz-access-token": self.token()} if token is True else ({"x-amz-access-token": token} if token else {})
        return self.c.json("GET", url, headers=h)

    def state(self):
        return self.c.ctl("state")

    # ---------------------------------------------------------------- LWA
    def test_token_exchange(self):
        st, h, r = self.lwa()
        self.assertEqual(st, 200)
        self.assertTrue(r["access_token"].startswith("Atza|"))
        self.assertEqual((r["token_type"], r["expires_in"], r["refresh_token"]), ("bearer", 3600, REFRESH))
        st, _, r = self.lwa(client_secret="wrong")
        self.assertEqual((st, r["error"]), (401, "invalid_client"))
        self.assertIn("error_description", r)
        st, _, r = self.lwa(client_id="amzn1.application-oa2-client.other")
        self.assertEqual((st, r["error"]), (401, "invalid_client"))
        st, _, r = self.lwa(refresh_token="Atzr|revoked")
        self.assertEqual((st, r["error"]), (400, "invalid_grant"))
        st, _, r = self.lwa(grant_type=None)
        self.assertEqual((st, r["error"]), (400, "invalid_request"))
        # JSON bodies (as Amazon's Java helper sends) work too
        st, _, r = self.c.json("POST", "/auth/o2/token", {"grant_type": "refresh_token", "refresh_token": REFRESH,
                                                          "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        self.assertEqual(st, 200)
        stats = self.state()["stats"]
        self.assertEqual((stats["token_exchanges"], stats["token_requests"], stats["token_failures"]), (2, 6, 4))

    def test_403_on_missing_bad_and_expired_tokens(self):
        p = {"MarketplaceIds": MKT, "CreatedAfter": "2024-01-01T00:00:00Z"}
        st, h, r = self.sp("/orders/v0/orders", p, token=None)
        self.assertEqual(st, 403)
        self.assertEqual(r["errors"][0]["code"], "Unauthorized")
        self.assertEqual(r["errors"][0]["message"], "Access to requested resource is denied.")
        self.assertIn("x-amzn-requestid", h)
        self.assertNotIn("x-amzn-ratelimit-limit", h)
        st, _, r = self.sp("/orders/v0/orders", p, token="Atza|forged")
        self.assertEqual(st, 403)
        self.assertIn("invalid", r["errors"][0]["details"])
        self.assertEqual(self.sp("/orders/v0/orders", p)[0], 200)
        self.assertEqual(self.c.ctl("amazon/expire", {})["expired"], 1)
        st, _, r = self.sp("/orders/v0/orders", p)
        self.assertEqual(st, 403)
        self.assertEqual(r["errors"][0]["details"], "The access token you provided has expired.")
        # the lifetime runs on the mock clock
        self.c.ctl("clock", {"now": "2026-03-01T00:00:00Z"})
        self._tok = None
        self.assertEqual(self.sp("/orders/v0/orders", p)[0], 200)
        self.c.ctl("clock", {"advance": 3599})
        self.assertEqual(self.sp("/orders/v0/orders", p)[0], 200)
        self.c.ctl("clock", {"advance": 1})
        st, _, r = self.sp("/orders/v0/orders", p)
        self.assertEqual((st, r["errors"][0]["details"]), (403, "The access token you provided has expired."))
        self.assertEqual(self.state()["stats"]["token_exchanges"], 2)

    # ---------------------------------------------------------------- orders
    def test_orders_next_token_paging(self):
        q = {"MarketplaceIds": MKT, "LastUpdatedAfter": "2024-01-01T00:00:00Z", "MaxResultsPerPage": 7}
        seen, pages, nt = [], 0, None
        while True:
            st, h, r = self.sp("/orders/v0/orders", dict(q, NextToken=nt) if nt else q)
            self.assertEqual(st, 200, r)
            self.assertEqual(h["x-amzn-ratelimit-limit"], "1.67")
            pl = r["payload"]
            self.assertLessEqual(len(pl["Orders"]), 7)
            self.assertIn("LastUpdatedBefore", pl)
            seen.extend(pl["Orders"])
            pages += 1
            nt = pl.get("NextToken")
            if not nt:
                break
            if pages == 2:
                # changed filters with a NextToken: 400 InvalidInput
                for change in ({"MaxResultsPerPage": 8}, {"LastUpdatedAfter": "2024-02-01T00:00:00Z"},
                               {"OrderStatuses": "Shipped"}):
                    st, _, e = self.sp("/orders/v0/orders", dict(q, NextToken=nt, **change))
                    self.assertEqual((st, e["errors"][0]["code"]), (400, "InvalidInput"), change)
                st, _, e = self.sp("/orders/v0/orders", {"MarketplaceIds": MKT, "NextToken": nt})
                self.assertEqual(st, 400)
                st, _, e = self.sp("/orders/v0/orders", dict(q, NextToken=nt[:-4] + "AAAA"))
                self.assertEqual(st, 400)
        ids = [o["AmazonOrderId"] for o in seen]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(set(ids), {o["AmazonOrderId"] for o in self.state()["orders"]})
        self.assertEqual(pages, 7)
        self.assertEqual([o["LastUpdateDate"] for o in seen], sorted(o["LastUpdateDate"] for o in seen))
        o = seen[0]
        self.assertRegex(o["AmazonOrderId"], r"^\d{3}-\d{7}-\d{7}$")
        for k in ("PurchaseDate", "LastUpdateDate", "OrderStatus", "FulfillmentChannel", "MarketplaceId",
                  "NumberOfItemsShipped", "NumberOfItemsUnshipped"):
            self.assertIn(k, o)
        priced = [x for x in seen if "OrderTotal" in x]
        self.assertTrue(priced)
        self.assertIsInstance(priced[0]["OrderTotal"]["Amount"], str)
        # the lenient mode accepts NextToken with the filters left out
        self.c.ctl("amazon/config", {"lenient_next_token": True})
        st, _, r = self.sp("/orders/v0/orders", q)
        st, _, r = self.sp("/orders/v0/orders", {"MarketplaceIds": MKT, "NextToken": r["payload"]["NextToken"]})
        self.assertEqual(st, 200)

    def test_orders_validation(self):
        after = "2024-01-01T00:00:00Z"
        cases = [({"LastUpdatedAfter": after}, "MarketplaceIds"),
                 ({"MarketplaceIds": MKT}, "Either"),
                 ({"MarketplaceIds": MKT, "LastUpdatedAfter": after, "CreatedAfter": after}, "both"),
                 ({"MarketplaceIds": "XXXX", "LastUpdatedAfter": after}, "MarketplaceId"),
                 ({"MarketplaceIds": MKT, "LastUpdatedAfter": after, "MaxResultsPerPage": 101}, "MaxResultsPerPage"),
                 ({"MarketplaceIds": MKT, "LastUpdatedAfter": after, "MaxResultsPerPage": 0}, "MaxResultsPerPage"),
                 ({"MarketplaceIds": MKT, "LastUpdatedAfter": "not a date"}, "LastUpdatedAfter"),
                 ({"MarketplaceIds": MKT, "LastUpdatedAfter": after, "LastUpdatedBefore": "2023-12-31T00:00:00Z"},
                  "equal to or after"),
                 ({"MarketplaceIds": MKT, "LastUpdatedAfter": after, "OrderStatuses": "Lost"}, "OrderStatuses")]
        for params, word in cases:
            st, h, r = self.sp("/orders/v0/orders", params)
            self.assertEqual(st, 400, params)
            self.assertEqual(r["errors"][0]["code"], "InvalidInput")
            self.assertIn(word, r["errors"][0]["details"])
            self.assertIn("x-amzn-ratelimit-limit", h)
        # LastUpdatedBefore less than two minutes ago
        now = self.c.ctl("clock")["epoch"]
        recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
        st, _, r = self.sp("/orders/v0/orders", {"MarketplaceIds": MKT, "LastUpdatedAfter": after,
                                                 "LastUpdatedBefore": recent})
        self.assertEqual(st, 400)
        self.assertIn("two minutes", r["errors"][0]["details"])
        # CreatedAfter queries answer CreatedBefore
        st, _, r = self.sp("/orders/v0/orders", {"MarketplaceIds": MKT, "CreatedAfter": after})
        self.assertIn("CreatedBefore", r["payload"])

    def test_last_updated_before_watermark(self):
        self.c.ctl("clock", {"now": "2026-01-10T12:00:00Z"})
        q = {"MarketplaceIds": MKT, "LastUpdatedAfter": "2024-01-01T00:00:00Z"}
        st, _, r = self.sp("/orders/v0/orders", q)
        mark = r["payload"]["LastUpdatedBefore"]
        self.assertEqual(mark, "2026-01-10T11:58:00Z")
        # an order changes now: not visible until it is two minutes old
        oid = self.state()["orders"][3]["AmazonOrderId"]
        r = self.c.ctl("amazon/order", {"order": {"AmazonOrderId": oid, "OrderStatus": "Shipped"}})
        self.assertEqual(r["orders"][0]["LastUpdateDate"], "2026-01-10T12:00:00Z")
        new = self.c.ctl("amazon/order", {"order": {"OrderItems": [{"ASIN": self.state()["catalog"][0]["asin"],
                                                                      "QuantityOrdered": 2}]}})["orders"][0]
        st, _, r = self.sp("/orders/v0/orders", dict(q, LastUpdatedAfter=mark))
        self.assertEqual(r["payload"]["Orders"], [])
        self.c.ctl("clock", {"advance": 180})
        st, _, r = self.sp("/orders/v0/orders", dict(q, LastUpdatedAfter=mark))
        self.assertEqual(sorted(o["AmazonOrderId"] for o in r["payload"]["Orders"]),
                         sorted([oid, new["AmazonOrderId"]]))
        self.assertEqual(r["payload"]["LastUpdatedBefore"], "2026-01-10T12:01:00Z")
        self.assertEqual(new["OrderStatus"], "Unshipped")
        self.assertEqual(new["NumberOfItemsUnshipped"], 2)

    def test_order_items_paging(self):
        self.c.ctl("amazon/config", {"items_page_size": 3})
        orders = self.state()["orders"]
        big = next(o for o in orders if len(o["OrderItems"]) == 7)
        seen, nt = [], None
        while True:
            st, _, r = self.sp("/orders/v0/orders/%s/orderItems" % big["AmazonOrderId"],
                               {"NextToken": nt} if nt else None)
            self.assertEqual(st, 200, r)
            self.assertEqual(r["payload"]["AmazonOrderId"], big["AmazonOrderId"])
            seen.extend(r["payload"]["OrderItems"])
            nt = r["payload"].get("NextToken")
            if not nt:
                break
            other = next(o for o in orders if o is not big)
            st, _, e = self.sp("/orders/v0/orders/%s/orderItems" % other["AmazonOrderId"], {"NextToken": nt})
            self.assertEqual(st, 400)
        self.assertEqual([i["OrderItemId"] for i in seen], [i["OrderItemId"] for i in big["OrderItems"]])
        self.assertTrue(all(set(i) >= {"ASIN", "SellerSKU", "OrderItemId", "Title", "QuantityOrdered"}
                            for i in seen))
        pending = next((o for o in orders if o["OrderStatus"] == "Pending"), None)
        if pending:
            st, _, r = self.sp("/orders/v0/orders/%s/orderItems" % pending["AmazonOrderId"])
            self.assertTrue(all("ItemPrice" not in i for i in r["payload"]["OrderItems"]))
            self.assertNotIn("OrderTotal", pending)
        self.assertEqual(self.sp("/orders/v0/orders/999-0000000-0000000/orderItems")[0], 404)

    # ---------------------------------------------------------------- FBA inventory
    def test_fba_inventory_next_token(self):
        self.c.ctl("clock", {"now": "2024-07-01T00:00:00Z"})
        # a frozen clock refills no token bucket either: turn throttling off for this test
        self.c.ctl("amazon/config", {"inventory_page_size": 10, "throttle": False})
        base = {"granularityType": "Marketplace", "granularityId": MKT, "marketplaceIds": MKT, "details": "true"}
        seen, nt, pages = [], None, 0
        while True:
            st, h, r = self.sp("/fba/inventory/v1/summaries", dict(base, nextToken=nt) if nt else base)
            self.assertEqual(st, 200, r)
            self.assertEqual(r["payload"]["granularity"], {"granularityType": "Marketplace", "granularityId": MKT})
            seen.extend(r["payload"]["inventorySummaries"])
            pages += 1
            nt = (r.get("pagination") or {}).get("nextToken")
            if not nt:
                break
        skus = [s["sellerSku"] for s in seen]
        self.assertEqual(len(skus), len(set(skus)))
        self.assertEqual(set(skus), {s["sellerSku"] for s in self.state()["inventory"]})
        self.assertEqual(pages, 4)
        self.assertTrue(all("inventoryDetails" in s and isinstance(s["totalQuantity"], int) for s in seen))
        odd = next(s for s in skus if " " in s)
        st, _, r = self.sp("/fba/inventory/v1/summaries", dict(base, sellerSku=odd, details="false"))
        self.assertEqual([s["sellerSku"] for s in r["payload"]["inventorySummaries"]], [odd])
        self.assertNotIn("inventoryDetails", r["payload"]["inventorySummaries"][0])
        # the nextToken lives 30 s on the mock clock
        st, _, r = self.sp("/fba/inventory/v1/summaries", base)
        nt = r["pagination"]["nextToken"]
        self.c.ctl("clock", {"advance": 29})
        self.assertEqual(self.sp("/fba/inventory/v1/summaries", dict(base, nextToken=nt))[0], 200)
        self.c.ctl("clock", {"advance": 2})
        st, _, r = self.sp("/fba/inventory/v1/summaries", dict(base, nextToken=nt))
        self.assertEqual(st, 400)
        self.assertEqual(r["errors"][0]["code"], "InvalidInput")
        self.assertIn("expired", r["errors"][0]["details"])
        # startDateTime must be sent again with nextToken
        for s in skus[:12]:
            self.c.ctl("amazon/inventory", {"summary": {"sellerSku": s, "fulfillableQuantity": 7}})
        q = dict(base, startDateTime="2024-07-01T00:00:00Z")
        st, _, r = self.sp("/fba/inventory/v1/summaries", q)
        self.assertEqual(len(r["payload"]["inventorySummaries"]), 10)
        nt = r["pagination"]["nextToken"]
        st, _, r = self.sp("/fba/inventory/v1/summaries", dict(base, nextToken=nt))
        self.assertEqual(st, 400)
        st, _, r = self.sp("/fba/inventory/v1/summaries", dict(q, nextToken=nt))
        self.assertEqual((st, len(r["payload"]["inventorySummaries"])), (200, 2))
        self.assertNotIn("pagination", r)
        self.assertEqual(self.sp("/fba/inventory/v1/summaries", dict(base, granularityType="Seller"))[0], 400)

    # ---------------------------------------------------------------- catalog
    def test_catalog_page_token(self):
        q = {"marketplaceIds": MKT, "keywords": "mug", "includedData": "summaries,identifiers", "pageSize": 2}
        seen, pt, pages = [], None, []
        while True:
            st, _, r = self.sp("/catalog/2022-04-01/items", dict(q, pageToken=pt) if pt else q)
            self.assertEqual(st, 200, r)
            self.assertNotIn("payload", r)
            pages.append(r)
            seen.extend(r["items"])
            pt = (r.get("pagination") or {}).get("nextToken")
            if not pt:
                break
        asins = [i["asin"] for i in seen]
        self.assertEqual(len(asins), len(set(asins)))
        self.assertEqual(len(asins), pages[0]["numberOfResults"])
        self.assertGreater(len(pages), 2)
        self.assertIn("previousToken", pages[1]["pagination"])
        self.assertNotIn("previousToken", pages[0].get("pagination", {}))
        self.assertTrue(all("mug" in i["summaries"][0]["itemName"].lower() for i in seen))
        self.assertEqual(set(seen[0]), {"asin", "summaries", "identifiers"})
        self.assertTrue(pages[0]["refinements"]["brands"])
        # a pageToken with another query, a bad page size, both keywords and identifiers: 400
        st, _, r = self.sp("/catalog/2022-04-01/items", dict(q, keywords="candle",
                                                             pageToken=pages[0]["pagination"]["nextToken"]))
        self.assertEqual(st, 400)
        self.assertEqual(self.sp("/catalog/2022-04-01/items", dict(q, pageSize=21))[0], 400)
        self.assertEqual(self.sp("/catalog/2022-04-01/items", dict(q, identifiers="B000000000",
                                                                   identifiersType="ASIN"))[0], 400)
        # identifiers
        st, _, r = self.sp("/catalog/2022-04-01/items", {"marketplaceIds": MKT, "identifiers": ",".join(asins[:2]),
                                                         "identifiersType": "ASIN"})
        self.assertEqual([i["asin"] for i in r["items"]], asins[:2])
        # at most catalog_max_results are reachable
        self.c.ctl("amazon/config", {"catalog_max_results": 3})
        st, _, r1 = self.sp("/catalog/2022-04-01/items", q)
        st, _, r2 = self.sp("/catalog/2022-04-01/items", dict(q, pageToken=r1["pagination"]["nextToken"]))
        self.assertEqual(len(r2["items"]), 1)
        self.assertNotIn("nextToken", r2["pagination"])
        self.assertEqual(r2["numberOfResults"], len(asins))
        st, _, r = self.sp("/catalog/2022-04-01/items/" + asins[0], {"marketplaceIds": MKT})
        self.assertEqual(r["asin"], asins[0])
        self.assertEqual(self.sp("/catalog/2022-04-01/items/B0NOPE0000", {"marketplaceIds": MKT})[0], 404)

    # ---------------------------------------------------------------- throttling
    def test_quota_exceeded(self):
        self.c.ctl("clock", {"now": "2026-01-10T12:00:00Z"})
        self.c.ctl("amazon/config", {"rate_scale": 1, "rates": {"getOrders": {"burst": 3}}})
        q = {"MarketplaceIds": MKT, "CreatedAfter": "2024-01-01T00:00:00Z"}
        res = [self.sp("/orders/v0/orders", q) for _ in range(4)]
        self.assertEqual([r[0] for r in res], [200, 200, 200, 429])
        self.assertEqual(res[0][1]["x-amzn-ratelimit-limit"], "0.0167")
        st, h, r = res[3]
        self.assertEqual(r, {"errors": [{"code": "QuotaExceeded",
                                         "message": "You exceeded your quota for the requested resource."}]})
        self.assertNotIn("x-amzn-ratelimit-limit", h)
        self.assertIn("x-amzn-requestid", h)
        self.c.ctl("clock", {"advance": 60})        # 60 s * 0.0167/s = one token
        self.assertEqual(self.sp("/orders/v0/orders", q)[0], 200)
        self.assertEqual(self.sp("/orders/v0/orders", q)[0], 429)
        # other operations have their own buckets
        self.assertEqual(self.sp("/catalog/2022-04-01/items", {"marketplaceIds": MKT, "keywords": "mug"})[0], 200)
        st = self.state()["stats"]
        self.assertEqual((st["calls"]["getOrders"], st["throttled"]["getOrders"]), (6, 2))
        self.c.ctl("amazon/buckets", {"set": {"getInventorySummaries": 0}})
        st, _, r = self.sp("/fba/inventory/v1/summaries", {"granularityType": "Marketplace", "granularityId": MKT,
                                                           "marketplaceIds": MKT})
        self.assertEqual((st, r["errors"][0]["code"]), (429, "QuotaExceeded"))
        # injected faults use the SP-API envelope
        self.c.ctl("behave", {"path": "/catalog/", "status": 503})
        st, _, r = self.sp("/catalog/2022-04-01/items", {"marketplaceIds": MKT, "keywords": "mug"})
        self.assertEqual((st, r["errors"][0]["code"]), (503, "ServiceUnavailable"))

    def test_fixture_round_trip(self):
        fx = os.path.join(FIXTURES, "amazon", "small.json")
        with open(fx, encoding="utf-8") as f:
            data = json.load(f)
        p, base = start("amazon.py", "--data", fx)
        c = Client(base)
        try:
            st = c.ctl("state")
            for k in ("orders", "inventory", "catalog"):
                self.assertEqual(st[k], data[k], k)
        finally:
            c.close()
            stop(p)


if __name__ == "__main__":
    unittest.main(verbosity=2)
