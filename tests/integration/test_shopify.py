"""The shopify source plugin against tests/mock/shopify.py: a full sync lands
exactly the mock's data (ids above 2^53 intact), incremental runs send
updated_at_min and pick up exactly the changes, Link/page_info pagination
walks every page once sending only what Shopify allows, the call-limit header
slows the client down before a 429, 429/5xx/truncated answers are survived,
and a refused token ends the run with a clear error and unmoved checkpoints.
(Three shops in a matrix: test_matrix.py.)"""
import datetime
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import unittest
import urllib.request

from etltest import SOURCE, Workdir, last_run_counts, query, run

MOCK = os.path.join(SOURCE, "tests", "mock", "shopify.py")
TOKEN = "shpat_test"
VERSION = "2025-07"
API = "/admin/api/%s/" % VERSION


class MockServer:
    """A mock on a free port, with its control API."""

    def __init__(self, script, *args):
        self.p = subprocess.Popen([sys.executable, script, "--port", "0", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("listening on "):
            self.p.kill()
            raise RuntimeError("mock did not start: %r %s" % (line, self.p.stderr.read()))
        self.base = line.split()[-1]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        rq = urllib.request.Request(self.base + path, data=data, method=method,
                                    headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(rq, timeout=30) as r:
            return json.loads(r.read())

    def requests(self, prefix=None):
        return self.call("GET", "/__mock/requests" + ("?path=" + prefix if prefix else ""))["requests"]

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
            self.p.stdout.close()
            self.p.stderr.close()


def utc(text):
    """Any ISO 8601 form -> aware UTC datetime."""
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.astimezone(datetime.timezone.utc)


STREAMS = """streams:
  - name: orders
  - name: order_line_items
    fk: { order_id: orders }
  - name: products
  - name: product_variants
    fk: { product_id: products }
  - name: customers
  - name: locations
  - name: inventory_levels
"""


class Shopify(Workdir):
    mock = None

    @classmethod
    def setUpClass(cls):
        # 260 orders and 130 products: several pages of 250 for orders, line
        # items and inventory levels.
        cls.mock = MockServer(MOCK, "--orders", "260", "--products", "130", "--customers", "40")

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        super().setUp()
        self.mock.call("POST", "/__mock/reset", {})
        # a fast leak keeps the tests quick; the rate-limit tests set their own
        self.mock.call("POST", "/__mock/shopify/config", {"leak": 50, "throttle": True})
        self.db = self.path("var", "shop.db")
        self.state = self.path(".etl", "shop.state.db")
        self.pipeline(leak=50)

    def pipeline(self, leak=50, extra="", streams=STREAMS, token="${SHOPIFY_TOKEN}"):
        self.write("shop.yaml", f"""version: 1
name: shop
source: {{ plugin: shopify, shop: test-shop, token: "{token}", base_url: "${{SHOPIFY_BASE_URL}}",
          leak_rate: "{leak}"{extra} }}
sink: {{ plugin: pgsqlite, url: "sqlite:var/shop.db" }}
{streams}""")

    def etl(self, *args, token=TOKEN, check=0):
        return run("run", self.path("shop.yaml"), *args, check=check,
                   env={"SHOPIFY_TOKEN": token, "SHOPIFY_BASE_URL": self.mock.base})

    def shop(self):
        return self.mock.call("GET", "/__mock/state")["shops"]["test-shop"]

    def counts(self, stream):
        return last_run_counts(self.state, "shop")[(stream, "forward")]

    def checkpoints(self):
        return query(self.state, "SELECT stream, cursor, cursor_type FROM checkpoints ORDER BY stream")

    def table(self, name):
        c = sqlite3.connect(self.db)
        c.row_factory = sqlite3.Row
        try:
            return {r["id"]: dict(r) for r in c.execute(f'SELECT * FROM "{name}"')}
        finally:
            c.close()

    def assert_equals_mock(self):
        """Every table holds exactly the mock's objects, field for field."""
        shop = self.shop()
        expect = {
            "orders": {str(o["id"]): o for o in shop["orders"]},
            "order_line_items": {str(li["id"]): li for o in shop["orders"] for li in o["line_items"]},
            "products": {str(p["id"]): p for p in shop["products"]},
            "product_variants": {str(v["id"]): v for p in shop["products"] for v in p["variants"]},
            "customers": {str(c["id"]): c for c in shop["customers"]},
            "locations": {str(l["id"]): l for l in shop["locations"]},
            "inventory_levels": {"%d:%d" % (lv["inventory_item_id"], lv["location_id"]): lv
                                 for lv in shop["inventory_levels"]},
        }
        parent = {str(li["id"]): o for o in shop["orders"] for li in o["line_items"]}
        for name, objs in expect.items():
            got = self.table(name)
            self.assertEqual(set(got), set(objs), name)
            for k, obj in objs.items():
                row = got[k]
                # the whole object, every digit of every id
                self.assertEqual(json.loads(row["data"]), obj, (name, k))
                if name == "order_line_items":
                    # the order's updated_at when the line last changed (a line that
                    # came back unchanged is not written again)
                    o = parent[k]
                    self.assertEqual(row["order_id"], str(o["id"]))
                    self.assertLessEqual(utc(row["updated_at"]), utc(o["updated_at"]))
                else:
                    self.assertEqual(utc(row["updated_at"]), utc(obj["updated_at"]), (name, k))
        orders = self.table("orders")
        for o in shop["orders"]:
            row = orders[str(o["id"])]
            self.assertEqual(row["total_price"], o["total_price"])
            self.assertEqual(row["name"], o["name"])
            self.assertEqual(row["customer_id"], str(o["customer"]["id"]) if o.get("customer") else None)
            self.assertEqual(row["closed_at"] and utc(row["closed_at"]), o["closed_at"] and utc(o["closed_at"]))

    # ------------------------------------------------------------ full sync

    def test_full_sync_equals_the_mock(self):
        r = self.etl()
        self.assertIn("run 1: ok", r.out)
        self.assert_equals_mock()
        shop = self.shop()
        lines = self.table("order_line_items")
        for o in shop["orders"]:  # line items have no change time: their order's
            for li in o["line_items"]:
                self.assertEqual(utc(lines[str(li["id"])]["updated_at"]), utc(o["updated_at"]))
        self.assertEqual(self.counts("orders")["created"], len(shop["orders"]))
        self.assertEqual(self.counts("order_line_items")["created"],
                         sum(len(o["line_items"]) for o in shop["orders"]))
        self.assertEqual(self.counts("inventory_levels")["created"], len(shop["inventory_levels"]))
        reqs = self.mock.requests()
        for rq in reqs:
            self.assertEqual(rq["headers"].get("x-shopify-access-token"), TOKEN)
            self.assertTrue(rq["path"].startswith(API), rq["path"])
        first = [rq for rq in reqs if rq["path"] == API + "orders.json" and "page_info" not in rq["query"]]
        self.assertEqual(len(first), 2)  # orders, then order_line_items
        for rq in first:
            self.assertEqual(rq["query"]["status"], ["any"])
            self.assertEqual(rq["query"]["limit"], ["250"])
            self.assertNotIn("updated_at_min", rq["query"])  # a first run reads everything
        # inventory levels were asked for the shop's locations
        lv = [rq for rq in reqs if rq["path"] == API + "inventory_levels.json" and "page_info" not in rq["query"]]
        self.assertEqual(len(lv), 1)
        self.assertEqual(sorted(lv[0]["query"]["location_ids"][0].split(",")),
                         sorted(str(l["id"]) for l in shop["locations"]))

    def test_ids_above_2_53_survive_exactly(self):
        self.etl("--stream", "orders,order_line_items,products,product_variants,inventory_levels")
        shop = self.shop()
        big = 2 ** 53
        ids = query(self.db, "SELECT id, typeof(id) FROM orders")
        self.assertEqual(len(ids), len(shop["orders"]))
        self.assertTrue(all(t == "text" and int(i) > big for i, t in ids))
        self.assertEqual(sorted(int(i) for i, _ in ids), sorted(o["id"] for o in shop["orders"]))
        # neighbours 1..997 apart, all distinct: a double would have merged them (1024 apart near 5e18)
        self.assertEqual(len({int(i) for i, _ in ids}), len(ids))
        lines = {(int(i), int(o)) for i, o in query(self.db, "SELECT id, order_id FROM order_line_items")}
        self.assertEqual(lines, {(li["id"], o["id"]) for o in shop["orders"] for li in o["line_items"]})
        var = {(int(i), int(p), int(ii)) for i, p, ii in
               query(self.db, "SELECT id, product_id, inventory_item_id FROM product_variants")}
        self.assertEqual(var, {(v["id"], p["id"], v["inventory_item_id"])
                               for p in shop["products"] for v in p["variants"]})
        # the ids join, as text, across tables
        self.assertEqual(query(self.db, "SELECT count(*) FROM order_line_items l JOIN orders o ON o.id = l.order_id"),
                         [(len(lines),)])
        # and JSON in the data column keeps them as exact integers
        (data,), = query(self.db, "SELECT data FROM orders ORDER BY id LIMIT 1")
        self.assertIn(str(min(o["id"] for o in shop["orders"])), data)

    # ------------------------------------------------------------ pagination

    def test_pagination_walks_to_the_end_with_no_page_twice(self):
        self.etl()
        reqs = self.mock.requests()
        shop = self.shop()
        walks = {}  # (path, fields) -> requests in order
        for rq in reqs:
            if rq["path"].endswith("locations.json"):
                continue
            walks.setdefault((rq["path"], tuple(rq["query"].get("fields", []))), []).append(rq)
        sizes = {"orders.json": len(shop["orders"]), "products.json": len(shop["products"]),
                 "customers.json": len(shop["customers"]),
                 "inventory_levels.json": len(shop["inventory_levels"])}
        self.assertEqual(len(walks), 6)
        for (path, fields), rqs in walks.items():
            n = sizes[path.rsplit("/", 1)[1]]
            self.assertEqual(len(rqs), -(-n // 250), (path, fields))   # every page, once
            self.assertTrue(all(r["status"] == 200 for r in rqs))
            self.assertNotIn("page_info", rqs[0]["query"])
            infos = [r["query"]["page_info"][0] for r in rqs[1:]]
            self.assertEqual(len(set(infos)), len(infos))                 # no page twice
            for r in rqs[1:]:
                # next to page_info only limit and fields, as Shopify demands
                self.assertLessEqual(set(r["query"]), {"page_info", "limit", "fields"}, r["raw_path"])
                self.assertEqual(r["query"]["limit"], ["250"])
        self.assertGreaterEqual(max(len(w) for w in walks.values()), 3)
        self.assertGreaterEqual(len([w for w in walks.values() if len(w) >= 2]), 3)  # orders, lines, levels
        self.assert_equals_mock()

    def test_small_pages_and_data_changing_during_a_walk(self):
        # page_size 7: dozens of pages of orders; one new order is created while walking
        self.pipeline(extra=", page_size: 7", streams="streams:\n  - name: orders\n")
        self.mock.call("POST", "/__mock/behave", {"path": API + "orders.json", "slow": 0.3, "skip": 3})
        import threading
        t = threading.Timer(0.15, lambda: self.mock.call("POST", "/__mock/shopify/order", {"order": {}}))
        t.start()
        self.etl()
        t.join()
        rqs = self.mock.requests(API + "orders.json")
        self.assertGreater(len(rqs), 35)
        self.assertTrue(all(r["query"]["limit"] == ["7"] for r in rqs))
        infos = [r["query"]["page_info"][0] for r in rqs[1:]]
        self.assertEqual(len(set(infos)), len(infos))
        got = self.table("orders")
        self.assertEqual(set(got), {str(o["id"]) for o in self.shop()["orders"]})  # the new one too (largest id)

    # ------------------------------------------------------------ incremental

    def test_incremental_sends_updated_at_min_and_picks_up_exactly_the_changes(self):
        self.etl()
        before = self.shop()
        cks = {s: c for s, c, _ in self.checkpoints()}
        self.assertEqual(set(cks), {"orders", "order_line_items", "products", "product_variants",
                                    "customers", "locations", "inventory_levels"})
        # the checkpoint is the greatest updated_at the API delivered (the shop's clock)
        self.assertEqual(utc(cks["orders"]), max(utc(o["updated_at"]) for o in before["orders"]))
        at_max = {k: sum(1 for o in v if utc(o["updated_at"]) == utc(cks[s])) for k, v, s in
                  (("orders", before["orders"], "orders"), ("products", before["products"], "products"),
                   ("customers", before["customers"], "customers"))}

        # the cancelled order has no customer: the mock recomputes a customer's
        # total_spent on a cancel without touching the customer's updated_at
        o1 = before["orders"][5]
        o2 = next(o for o in before["orders"][6:] if not o.get("customer"))
        p = before["products"][3]
        v0 = p["variants"][0]
        c = before["customers"][2]
        lv = before["inventory_levels"][10]
        m = self.mock
        m.call("POST", "/__mock/shopify/order", {"orders": [{"id": o1["id"], "note": "gift wrap"},
                                                            {"id": o2["id"], "status": "cancelled"}]})
        new = m.call("POST", "/__mock/shopify/order", {"order": {}})["orders"][0]
        m.call("POST", "/__mock/shopify/product",
               {"product": {"id": p["id"], "title": "Renamed",
                            "variants": [{"id": v0["id"], "price": "1.23"}] +
                                        [{"id": v["id"]} for v in p["variants"][1:]]}})
        m.call("POST", "/__mock/shopify/customer", {"customer": {"id": c["id"], "note": "vip"}})
        m.call("POST", "/__mock/shopify/inventory",
               {"levels": [{"inventory_item_id": lv["inventory_item_id"], "location_id": lv["location_id"],
                            "adjust": -3}]})
        m.call("DELETE", "/__mock/requests")
        self.etl()

        reqs = self.mock.requests()
        for rq in reqs:
            if rq["path"].endswith("locations.json") or "page_info" in rq["query"]:
                continue
            res = rq["path"].rsplit("/", 1)[1].split(".")[0]
            stream = {"orders": "orders", "products": "products", "customers": "customers",
                      "inventory_levels": "inventory_levels"}[res]
            (sent,) = rq["query"]["updated_at_min"]
            self.assertEqual(utc(sent), utc(cks[stream]), rq["raw_path"])
            self.assertRegex(sent, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(len(reqs), 8)  # one page per list (+ locations twice): only the changes came back

        c_ = self.counts("orders")
        self.assertEqual((c_["created"], c_["updated"]), (1, 2))
        self.assertEqual(c_["read"], 3 + at_max["orders"])       # the boundary row is read again...
        self.assertEqual(c_["unchanged"], at_max["orders"])      # ...and recognised
        li = self.counts("order_line_items")
        self.assertEqual(li["created"], len(new["line_items"]))
        self.assertEqual(li["updated"], 0)  # a note and a cancel leave the lines alone
        self.assertEqual(self.counts("products")["updated"], 1)
        pv = self.counts("product_variants")
        self.assertEqual((pv["created"], pv["updated"]), (0, 1))
        self.assertEqual(self.counts("customers")["updated"], 1)
        self.assertEqual(self.counts("inventory_levels")["updated"], 1)
        self.assertEqual(self.counts("locations")["created"] + self.counts("locations")["updated"], 0)
        self.assert_equals_mock()
        # the checkpoints moved to the new changes
        cks2 = {s: c for s, c, _ in self.checkpoints()}
        after = self.shop()
        self.assertEqual(utc(cks2["orders"]), max(utc(o["updated_at"]) for o in after["orders"]))
        self.assertGreater(utc(cks2["orders"]), utc(cks["orders"]))

    # ------------------------------------------------------------ rate limits and failures

    def test_call_limit_header_slows_down_before_a_429(self):
        # a nearly full bucket (38 of 40) leaking 10/s: the client must space its calls
        self.mock.call("POST", "/__mock/shopify/config", {"leak": 10})
        self.pipeline(leak=10, extra=", page_size: 50", streams="streams:\n  - name: orders\n  - name: products\n"
                                       "  - name: customers\n  - name: locations\n  - name: inventory_levels\n")
        self.mock.call("POST", "/__mock/shopify/bucket", {"used": 38})
        t0 = time.time()
        self.etl()
        took = time.time() - t0
        st = self.mock.call("GET", "/__mock/state")
        self.assertEqual(st["stats"]["throttled"], 0)  # never ran into the 429
        reqs = self.mock.requests()
        self.assertGreaterEqual(len(reqs), 12)
        # after the first two calls the bucket is full: one call per 1/10 s
        self.assertGreater(took, (len(reqs) - 3) * 0.1 * 0.8)
        self.assertTrue(all(r["status"] == 200 for r in reqs))

    def test_bucket_overflow_429_waits_retry_after(self):
        self.mock.call("POST", "/__mock/shopify/config", {"leak": 2})
        self.pipeline(leak=2, streams="streams:\n  - name: customers\n")
        self.mock.call("POST", "/__mock/shopify/bucket", {"used": 40})
        t0 = time.time()
        r = self.etl()
        self.assertGreaterEqual(time.time() - t0, 2.0)
        reqs = self.mock.requests()
        self.assertEqual([q["status"] for q in reqs], [429, 200])
        self.assertGreaterEqual(reqs[1]["time"] - reqs[0]["time"], 1.9)  # Retry-After: 2.0
        self.assertIn("429", r.err)
        self.assertEqual(len(self.table("customers")), len(self.shop()["customers"]))

    def test_429_5xx_and_truncated_answers_are_survived_with_nothing_lost(self):
        m = self.mock
        m.call("POST", "/__mock/behave", [
            {"path": API + "orders.json", "status": 429, "retry_after": "0.5", "count": 2, "skip": 1},
            {"path": API + "products.json", "status": 503, "count": 1},
            {"path": API + "inventory_levels.json", "truncate": True, "skip": 2},
            {"path": API + "customers.json", "drop": True},
        ])
        self.etl()
        self.assert_equals_mock()
        statuses = [(r["path"].rsplit("/", 1)[1], r["status"]) for r in m.requests()]
        self.assertEqual(statuses.count(("orders.json", 429)), 2)
        self.assertIn(("products.json", 503), statuses)
        self.assertIn(("customers.json", 0), statuses)
        self.assertEqual(m.call("GET", "/__mock/behave")["pending"], [])

    def test_bad_token_fails_clearly_and_leaves_the_checkpoints(self):
        self.etl()
        cks = self.checkpoints()
        rows = query(self.db, "SELECT count(*) FROM orders")
        self.mock.call("POST", "/__mock/shopify/order", {"order": {}})  # a change nobody will see
        self.mock.call("DELETE", "/__mock/requests")
        r = self.etl(token="shpat_wrong", check=1)
        msg = r.out + r.err
        self.assertIn("shop test-shop refused the access token", msg)
        self.assertIn("401", msg)
        self.assertIn("Invalid API key or access token", msg)
        self.assertNotIn("shpat_wrong", msg)  # a secret option is redacted
        self.assertEqual(self.checkpoints(), cks)
        self.assertEqual(query(self.db, "SELECT count(*) FROM orders"), rows)
        (status, error), = query(self.state, "SELECT status, error FROM runs ORDER BY id DESC LIMIT 1")
        self.assertEqual(status, "failed")
        self.assertIn("refused the access token", error)
        # one refused call: the other streams fail at once instead of asking again
        self.assertEqual([q["status"] for q in self.mock.requests()], [401])
        # with the right token again, the missed change arrives
        self.etl()
        self.assert_equals_mock()

    def test_unsupported_api_version_warns_and_check_tests_the_token(self):
        self.pipeline(extra=', api_version: "2023-01"', streams="streams:\n  - name: locations\n")
        r = self.etl()
        self.assertIn("api_version 2023-01 is not served by shop test-shop", r.err)
        self.assertEqual(self.mock.requests()[0]["path"], "/admin/api/2023-01/locations.json")
        env = {"SHOPIFY_TOKEN": TOKEN, "SHOPIFY_BASE_URL": self.mock.base}
        r = run("check", self.path("shop.yaml"), env=env, check=0)
        self.assertIn("source shopify (0.1.0): ok", r.out)
        env["SHOPIFY_TOKEN"] = "nope"
        r = run("check", self.path("shop.yaml"), env=env, check=1)
        self.assertIn("refused the access token", r.out)
        self.pipeline(extra=', api_version: "v1"')
        r = self.etl(check=1)
        self.assertIn("option api_version: 'v1' is not YYYY-MM", r.out + r.err)


if __name__ == "__main__":
    unittest.main()
