"""The pythonanywhere sink against its mock (tests/mock/pythonanywhere.py),
driven through the real pipeline, pipelines/pythonanywhere.yaml, on the
sample POS database: the three modes, exactly-once delivery of products,
receipts, sales and payments, nothing sent when nothing changed, tokens that
expire, 413, 400, per-item refusals, transient failures and a wrong password.
"""
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

from etltest import SOURCE, Workdir, execute, last_run_counts, norm, query, run

MOCK = os.path.join(SOURCE, "tests", "mock", "pythonanywhere.py")
PIPELINE = os.path.join(SOURCE, "pipelines", "pythonanywhere.yaml")
SYNC = "/api/oem/sync/"
PRODUCT_FIELDS = ["barcode_number", "brand", "size", "color", "location", "name", "category",
                  "cost_price", "selling_price", "quantity", "updated_at"]


def utc(days_ago=0.0):
    """'YYYY-MM-DD HH:MM:SS' UTC, as the sample database writes times."""
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days_ago)
    return t.strftime("%Y-%m-%d %H:%M:%S")


class Mock:
    """One mock server process, reset between tests."""

    def __init__(self, *args):
        self.p = subprocess.Popen([sys.executable, MOCK, "--port", "0", *args],
                                  stdout=subprocess.PIPE, text=True)
        self.base = self.p.stdout.readline().split()[-1]

    def stop(self):
        self.p.terminate()
        self.p.wait(5)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        rq = urllib.request.Request(self.base + path, data=data, method=method,
                                    headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(rq, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def state(self):
        return self.call("GET", "/__mock/state")

    def requests(self, path=""):
        return self.call("GET", "/__mock/requests?path=" + path)["requests"]

    def sync_posts(self):
        return [r for r in self.requests(SYNC) if r["method"] == "POST"]

    def behave(self, *faults):
        self.call("POST", "/__mock/behave", list(faults))


class PaTest(Workdir):
    mock_args = ()

    @classmethod
    def setUpClass(cls):
        cls.mock = Mock(*cls.mock_args)

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        super().setUp()
        self.mock.call("POST", "/__mock/reset", {})
        self.mock.call("POST", "/__mock/pa/config", {"max_batch": 100})
        shutil.copy(PIPELINE, self.path("pythonanywhere.yaml"))
        self.yaml = self.path("pythonanywhere.yaml")
        self.db = self.pos_db(orders=40, seed=11)
        self.state_db = self.path(".etl", "pythonanywhere.state.db")

    def etl(self, *args, check=0, password="secret", env=None):
        e = {"PA_BASE_URL": self.mock.base, "PA_USERNAME": "shop", "PA_PASSWORD": password}
        e.update(env or {})
        return run("run", self.yaml, *args, env=e, check=check)

    def counts(self, stream):
        return last_run_counts(self.state_db, "pythonanywhere")[(stream, "forward")]

    # ------------------------------------------------------------ what was sent
    @staticmethod
    def items(reqs, member):
        out = []
        for r in reqs:
            if r["path"].endswith("/%s/" % member) and r["status"] == 200:
                out.extend(json.loads(r["body"])[member])
        return out

    def sent_receipt_ids(self, reqs):
        return sorted(i["local_receipt_id"] for i in self.items(reqs, "receipts"))

    # ------------------------------------------------------------ the source
    def source(self):
        c = sqlite3.connect(self.db)
        c.row_factory = sqlite3.Row
        try:
            t = {name: [dict(r) for r in c.execute("SELECT * FROM %s" % name)]
                 for name in ("products", "orders", "order_items", "payments")}
        finally:
            c.close()
        return t

    def assert_server_equals_source(self, orders=None):
        """The mock holds every product, receipt, sale and payment of the source
        (or of `orders`) exactly once, under the right receipt, every field."""
        src, st = self.source(), self.mock.state()
        # products: matched by barcode, else brand+size+color+location
        self.assertEqual(len(st["products"]), len(src["products"]))
        by_name = {p["name"]: p for p in st["products"]}
        self.assertEqual(len(by_name), len(st["products"]))
        for p in src["products"]:
            got = by_name[p["name"]]
            want = dict(p, location=p["store_id"], quantity=p["master_stock_quantity"])
            want["barcode_number"] = (p["barcode_number"] or "").strip() or None
            for f in PRODUCT_FIELDS:
                self.assertEqual(norm(got[f]), norm(want[f]), (p["name"], f))
        # receipts with their sales and payments
        orders = {o["id"]: o for o in src["orders"] if orders is None or o["id"] in orders}
        receipts = {r["local_receipt_id"]: r for r in st["receipts"]}
        self.assertEqual(len(receipts), len(st["receipts"]), "a receipt is duplicated")
        self.assertEqual(sorted(receipts), sorted(orders))
        for oid, o in orders.items():
            r = receipts[oid]
            for f in ("receipt_number", "customer_name", "total_amount", "discount_amount",
                      "discount_percentage", "delivery_cost", "created_at"):
                self.assertEqual(norm(r[f]), norm(o[f]), (oid, f))
        sales = [i for i in src["order_items"] if i["order_id"] in orders]
        self.assertEqual(len(st["sales"]), len(sales))
        self.assertEqual(len({s["local_sale_id"] for s in st["sales"]}), len(sales))
        for i in sales:
            got = [s for s in receipts[i["order_id"]]["sales"] if s["local_sale_id"] == i["id"]]
            self.assertEqual(len(got), 1, i["id"])
            for f in ("product_barcode", "quantity", "unit_price", "total_price"):
                self.assertEqual(norm(got[0][f]), norm(i[f]), (i["id"], f))
        pays = [p for p in src["payments"] if p["order_id"] in orders]
        self.assertEqual(len(st["payments"]), len(pays))
        self.assertEqual(len({p["local_payment_id"] for p in st["payments"]}), len(pays))
        for p in pays:
            got = [x for x in receipts[p["order_id"]]["payments"] if x["local_payment_id"] == p["id"]]
            self.assertEqual(len(got), 1, p["id"])
            for f in ("amount", "method", "payment_date"):
                self.assertEqual(norm(got[0][f]), norm(p[f]), (p["id"], f))


class Modes(PaTest):
    def test_full_sends_everything_once_and_unchanged_reruns_send_nothing(self):
        r = self.etl("--full")
        self.assertIn("created 120", r.err)
        self.assert_server_equals_source()
        self.assertEqual(self.counts("products")["created"], 120)
        self.assertEqual(self.counts("orders")["created"], 40)
        # the sample has empty and NULL barcodes: both went as null
        self.assertTrue(any(p["barcode_number"] is None for p in self.mock.state()["products"]))
        before = self.mock.state()
        self.mock.call("DELETE", "/__mock/requests")
        for _ in range(2):
            self.etl("--full")
            c = self.counts("orders")
            self.assertEqual((c["created"], c["updated"], c["unchanged"]), (0, 0, 40))
            self.assertEqual(self.counts("products")["unchanged"], 120)
        # no sync request at all (and no login: there was nothing to send)
        self.assertEqual(self.mock.requests(), [])
        after = self.mock.state()
        for k in ("products", "receipts", "sales", "payments"):
            self.assertEqual(after[k], before[k])

    def test_window_90d_sends_only_the_last_90_days(self):
        # the sample is dated 2025; move a few orders (with their lines and
        # payments) and products into the last 90 days, one just outside
        inside = [o for (o,) in query(self.db, "SELECT id FROM orders ORDER BY id LIMIT 6")]
        outside = query(self.db, "SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET 6")[0][0]
        for n, oid in enumerate(inside):
            t = utc(days_ago=5 + n * 10)
            execute(self.db, "UPDATE orders SET created_at = ?, updated_at = ? WHERE id = ?", t, t, oid)
            execute(self.db, "UPDATE order_items SET updated_at = ? WHERE order_id = ?", t, oid)
            execute(self.db, "UPDATE payments SET payment_date = ?, updated_at = ? WHERE order_id = ?",
                    t, t, oid)
        t = utc(days_ago=95)
        execute(self.db, "UPDATE orders SET created_at = ?, updated_at = ? WHERE id = ?", t, t, outside)
        recent = ["Product 1", "Product 15", "Product 29"]  # with, NULL and empty barcode
        for name in recent:
            execute(self.db, "UPDATE products SET updated_at = ? WHERE name = ?", utc(days_ago=1), name)
        self.etl("--window", "90d")
        posts = self.mock.sync_posts()
        self.assertEqual(self.sent_receipt_ids(posts), sorted(inside))
        self.assertEqual(sorted(p["name"] for p in self.items(posts, "products")), sorted(recent))
        st = self.mock.state()
        self.assertEqual(sorted(r["local_receipt_id"] for r in st["receipts"]), sorted(inside))
        self.assertEqual(sorted(p["name"] for p in st["products"]), sorted(recent))
        sales = query(self.db, "SELECT count(*) FROM order_items WHERE order_id IN (%s)"
                      % ",".join("?" * len(inside)), *inside)[0][0]
        self.assertEqual(len(st["sales"]), sales)
        self.assertEqual(len(st["payments"]), len(inside))
        # then --full brings the rest, once
        self.etl("--full")
        self.assert_server_equals_source()

    def test_incremental_sends_exactly_the_local_changes(self):
        self.etl()  # the first incremental run sends everything
        self.assert_server_equals_source()
        self.mock.call("DELETE", "/__mock/requests")
        now = utc()
        # a changed product with a barcode, and one with an empty barcode
        execute(self.db, "UPDATE products SET selling_price = 99.5, updated_at = ? WHERE name = 'Product 1'", now)
        execute(self.db, "UPDATE products SET master_stock_quantity = 5, updated_at = ? WHERE name = 'Product 29'",
                now)
        # a new receipt with a sale and a payment
        pid, barcode, store = query(self.db, "SELECT id, barcode_number, store_id FROM products"
                                    " WHERE name = 'Product 2'")[0]
        execute(self.db, "INSERT INTO orders VALUES ('new-order', ?, NULL, 'R999999', 'Cy', 12.5, 1.5,"
                " 10, 2.0, 'completed', ?, ?, NULL)", store, now, now)
        execute(self.db, "INSERT INTO order_items VALUES ('new-sale', 'new-order', ?, ?, 1, 12.0, 12.0, ?)",
                pid, barcode, now)
        execute(self.db, "INSERT INTO payments VALUES ('new-pay', 'new-order', 12.5, 'card', ?, ?)", now, now)
        # a second payment on an old receipt
        old = query(self.db, "SELECT id FROM orders WHERE id <> 'new-order' ORDER BY created_at LIMIT 1")[0][0]
        execute(self.db, "INSERT INTO payments VALUES ('late-pay', ?, 3.25, 'cash', ?, ?)", old, now, now)
        self.etl()
        posts = self.mock.sync_posts()
        self.assertEqual(sorted(p["name"] for p in self.items(posts, "products")), ["Product 1", "Product 29"])
        self.assertEqual(self.sent_receipt_ids(posts), sorted(["new-order", old]))
        c = self.counts("orders")
        self.assertEqual((c["created"], c["updated"], c["unchanged"]), (1, 1, 40 - 1))
        st = self.mock.state()
        self.assertEqual(len(st["products"]), 120)  # the empty-barcode one was matched, not duplicated
        self.assertEqual(len(st["receipts"]), 41)
        self.assertEqual(len([p for p in st["payments"] if p["local_receipt_id"] == old]), 2)
        new = [r for r in st["receipts"] if r["local_receipt_id"] == "new-order"][0]
        self.assertEqual((new["discount_amount"], new["discount_percentage"], new["delivery_cost"]),
                         ("1.50", "10.00", "2.00"))
        self.assertEqual([s["local_sale_id"] for s in new["sales"]], ["new-sale"])
        self.assert_server_equals_source()
        # and the next run sends nothing
        self.mock.call("DELETE", "/__mock/requests")
        self.etl()
        self.assertEqual(self.mock.sync_posts(), [])

    def test_dry_run_sends_nothing(self):
        r = self.etl("--dry-run")
        self.assertIn("dry run: 40 item(s) not sent", r.err)
        self.assertEqual(self.mock.requests(), [])


class Faults(PaTest):
    def test_413_halves_the_batch_and_everything_arrives_once(self):
        self.mock.call("POST", "/__mock/pa/config", {"max_batch": 7})
        r = self.etl("--full")
        self.assertIn("status 413", r.err)
        self.assert_server_equals_source()
        posts = self.mock.sync_posts()
        for path, first in (("products", 50), ("receipts", 20)):
            mine = [p for p in posts if p["path"].endswith("/%s/" % path)]
            sizes = [len(json.loads(p["body"])[path]) for p in mine]
            statuses = [p["status"] for p in mine]
            self.assertEqual(sizes[0], first)
            self.assertTrue(all(n <= 7 for n, s in zip(sizes, statuses) if s == 200), sizes)
            # the smaller batch is kept: only the first requests hit the limit
            self.assertEqual(statuses.count(413), {"products": 3, "receipts": 2}[path], sizes)
            self.assertTrue(all(s == 200 for s in statuses[statuses.index(200):]), statuses)

    def test_transient_failures_are_retried_and_a_lost_answer_duplicates_nothing(self):
        self.mock.behave({"path": SYNC + "receipts/", "status": 503, "retry_after": "0"},
                         {"path": SYNC + "products/", "status": 429, "retry_after": "0", "count": 2},
                         {"path": SYNC + "receipts/", "skip": 1, "drop": "after"})
        self.etl("--full")
        self.assert_server_equals_source()
        statuses = [p["status"] for p in self.mock.sync_posts()]
        self.assertEqual(statuses.count(503), 1)
        self.assertEqual(statuses.count(429), 2)
        self.assertEqual(statuses.count(0), 1)  # processed, answer dropped, sent again: skipped

    def test_refused_items_go_to_the_dead_letters_and_the_rest_arrives(self):
        # one the server refuses item by item, one that makes it refuse the batch (400)
        execute(self.db, "UPDATE products SET selling_price = -1 WHERE name = 'Product 7'")
        execute(self.db, "UPDATE products SET name = '' WHERE name = 'Product 8'")
        r = self.etl("--full")
        self.assertIn("status 400", r.err)
        c = self.counts("products")
        self.assertEqual((c["created"], c["failed"]), (118, 2))
        names = sorted(p["name"] for p in self.mock.state()["products"])
        self.assertEqual(len(names), 118)
        self.assertNotIn("Product 7", names)
        dead = dict(query(self.state_db, "SELECT json_extract(record, '$.name'), error FROM dead_letters"))
        self.assertIn("selling_price: Ensure this value is greater than or equal to 0", dead["Product 7"])
        self.assertIn("status 400", dead[""])
        self.assertIn("This field may not be blank", dead[""])
        # the good products of the refused batch arrived once: 400s stored nothing
        posts = [p for p in self.mock.sync_posts() if p["path"].endswith("/products/")]
        self.assertGreater(len(posts), 3)
        self.assertEqual(len({p["name"] for p in self.mock.state()["products"]}), 118)

    def test_wrong_password_fails_the_run_and_sends_nothing(self):
        r = self.etl(password="not-the-password", check=1)
        self.assertIn("login refused: POST %s/api/oem/token/: status 401" % self.mock.base, r.err)
        self.assertIn("No active account found with the given credentials", r.err)
        self.assertNotIn("not-the-password", r.err)
        self.assertEqual(self.mock.sync_posts(), [])
        # one login attempt for the whole run: the second stream knew already
        self.assertEqual(len(self.mock.requests("/api/oem/token/")), 1)
        st = self.mock.state()
        self.assertEqual((st["products"], st["receipts"]), ([], []))
        # etl check tries the credentials too
        env = {"PA_BASE_URL": self.mock.base, "PA_USERNAME": "shop", "PA_PASSWORD": "nope"}
        r = run("check", self.yaml, env=env, check=1)
        self.assertIn("login refused", r.err + r.out)
        env["PA_PASSWORD"] = "secret"
        run("check", self.yaml, env=env, check=0)
        self.assertEqual(self.mock.sync_posts(), [])


class Tokens(PaTest):
    def test_an_expired_token_mid_run_is_renewed_and_the_batch_sent_again(self):
        # the first receipts batch waits 1 s at the server; meanwhile every
        # token, refresh ones included, is revoked: the batch gets a 401, the
        # refresh is refused, the sink logs in again and resends the batch
        self.mock.behave({"path": SYNC + "receipts/", "slow": 1.0})
        done = {}

        def go():
            done["r"] = self.etl(check=None)
        t = threading.Thread(target=go)
        t.start()
        deadline = time.time() + 20
        while time.time() < deadline and not self.mock.requests(SYNC + "receipts/"):
            time.sleep(0.02)
        self.mock.call("POST", "/__mock/pa/expire", {"refresh": True})
        t.join(30)
        self.assertEqual(done["r"].code, 0, done["r"])
        reqs = self.mock.requests()
        rec = [r for r in reqs if r["path"] == SYNC + "receipts/"]
        self.assertEqual(rec[0]["status"], 401)
        self.assertEqual(rec[1]["status"], 200)
        self.assertEqual(rec[0]["body"], rec[1]["body"])  # the same batch again
        paths = [(r["path"], r["status"]) for r in reqs]
        i = paths.index((SYNC + "receipts/", 401))
        self.assertEqual(paths[i + 1:i + 3], [("/api/oem/token/refresh/", 401), ("/api/oem/token/", 200)])
        self.assertEqual(self.mock.state()["stats"]["logins"], 2)
        self.assert_server_equals_source()

    def test_a_401_is_answered_with_a_refresh_and_one_retry(self):
        self.mock.behave({"path": SYNC + "products/", "status": 401, "skip": 1})
        self.etl("--full")
        paths = [(r["path"], r["status"]) for r in self.mock.requests()]
        i = paths.index((SYNC + "products/", 401))
        self.assertEqual(paths[i + 1:i + 3], [("/api/oem/token/refresh/", 200), (SYNC + "products/", 200)])
        st = self.mock.state()["stats"]
        self.assertEqual((st["logins"], st["refreshes"]), (1, 1))
        self.assert_server_equals_source()

    def test_a_second_401_for_the_same_batch_fails_the_stream(self):
        self.mock.behave({"path": SYNC + "receipts/", "status": 401, "count": 2})
        r = self.etl("--full", check=1)
        self.assertIn("status 401 with a new token", r.err)
        self.assertEqual(self.mock.state()["receipts"], [])
        self.assertEqual(len(self.mock.state()["products"]), 120)


class ShortTokens(PaTest):
    # access tokens live 1 s: they run out between batches during the run
    mock_args = ("--access-ttl", "1")

    def test_tokens_that_expire_during_the_run_are_refreshed(self):
        self.mock.behave({"path": SYNC, "slow": 0.4, "count": 6})
        self.etl("--full", env={"PA_BATCH_RECEIPTS": "5", "PA_BATCH_PRODUCTS": "40"})
        st = self.mock.state()["stats"]
        self.assertEqual(st["logins"], 1)
        self.assertGreaterEqual(st["refreshes"], 6)
        # a token may still run out between the client's look at its exp and
        # the server's (1 s, whole seconds): each 401 is followed by the same
        # batch again, accepted
        posts = self.mock.sync_posts()
        self.assertTrue(all(r["status"] in (200, 401) for r in posts))
        for i, r in enumerate(posts):
            if r["status"] == 401:
                self.assertEqual((posts[i + 1]["body"], posts[i + 1]["status"]), (r["body"], 200))
        self.assert_server_equals_source()


if __name__ == "__main__":
    unittest.main()
