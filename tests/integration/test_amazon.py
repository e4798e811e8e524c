"""The amazon source plugin against tests/mock/amazon.py (Login with Amazon +
SP-API): a full sync lands exactly the mock's data; incremental runs send
LastUpdatedAfter / startDateTime and pick up exactly the changes, with
LastUpdatedBefore as the orders' checkpoint; NextToken, nextToken and
pageToken pagination walk every page once, resending the query as each API
wants; 429 QuotaExceeded and expired tokens are survived with nothing lost;
the access token is cached across runs and refreshed before it expires;
bad credentials end the run clearly with unmoved checkpoints; three sellers
in a matrix, one with a bad refresh token, the other two complete."""
import datetime
import json
import os
import sqlite3
import time
import unittest

from etltest import SOURCE, Workdir, last_run_counts, query, run
from test_shopify import MockServer, utc

MOCK = os.path.join(SOURCE, "tests", "mock", "amazon.py")
MKT = "ATVPDKIKX0DER"
CLIENT_ID = "amzn1.application-oa2-client.test"
SECRET = "test-secret"
REFRESH = "Atzr|test-refresh"
INCLUDED = ["summaries", "identifiers", "productTypes", "salesRanks", "classifications", "images",
            "attributes"]
WITHHELD = ("ItemPrice", "ItemTax", "ShippingPrice", "PromotionDiscount", "PromotionDiscountTax")


def base_time(days):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def start_mock(*args):
    # data 60 days old at most: everything is older than "now - 2 minutes"
    # (getOrders) and younger than 18 months (startDateTime); rates x100
    return MockServer(MOCK, "--base-time", base_time(60), "--rate-scale", "100", *args)


STREAMS = """streams:
  - name: orders
  - name: order_items
    fk: { order_id: orders }
  - name: inventory_summaries
  - name: catalog_items
    select: { keywords: "Mug", page_size: "5" }
"""


def pipeline_text(name="amz", streams=STREAMS, matrix="", refresh="${AMZ_REFRESH_TOKEN}", extra=""):
    return f"""version: 1
name: {name}
{matrix}
source: {{ plugin: amazon, client_id: "{CLIENT_ID}", client_secret: "${{AMZ_CLIENT_SECRET}}",
          refresh_token: "{refresh}", token_url: "${{AMZ_BASE_URL}}/auth/o2/token",
          base_url: "${{AMZ_BASE_URL}}", marketplace_ids: [{MKT}]{extra} }}
sink: {{ plugin: pgsqlite, url: "sqlite:var/{name}.db" }}
{streams}"""


class AmazonBase(Workdir):
    mock = None
    args = ()

    @classmethod
    def setUpClass(cls):
        cls.mock = start_mock(*cls.args)

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        super().setUp()
        self.mock.call("POST", "/__mock/reset", {})
        self.write("amz.yaml", pipeline_text())
        self.db = self.path("var", "amz.db")
        self.state = self.path(".etl", "amz.state.db")
        self.env = {"AMZ_CLIENT_SECRET": SECRET, "AMZ_REFRESH_TOKEN": REFRESH,
                    "AMZ_BASE_URL": self.mock.base}

    def etl(self, *args, check=0, pipeline="amz.yaml"):
        return run("run", self.path(pipeline), *args, env=self.env, check=check)

    def state_of_mock(self):
        return self.mock.call("GET", "/__mock/state")

    def stats(self):
        return self.state_of_mock()["stats"]

    def counts(self, stream):
        return last_run_counts(self.state, "amz")[(stream, "forward")]

    def checkpoints(self):
        return {s: c for s, c in query(self.state, "SELECT stream, cursor FROM checkpoints")}

    def table(self, name, db=None):
        c = sqlite3.connect(db or self.db)
        c.row_factory = sqlite3.Row
        try:
            return {r["id"]: dict(r) for r in c.execute(f'SELECT * FROM "{name}"')}
        finally:
            c.close()

    def ops(self, prefix):
        return self.mock.requests(prefix)

    def assert_equals_mock(self, streams=("orders", "order_items", "inventory_summaries", "catalog_items"),
                           db=None):
        st = self.state_of_mock()
        if "orders" in streams:
            got = self.table("orders", db)
            want = {o["AmazonOrderId"]: {k: v for k, v in o.items() if k != "OrderItems"} for o in st["orders"]}
            self.assertEqual(set(got), set(want))
            for k, o in want.items():
                row = got[k]
                self.assertEqual(json.loads(row["data"]), o)
                self.assertEqual(utc(row["LastUpdateDate"]), utc(o["LastUpdateDate"]))
                self.assertEqual(row["updated_at"], row["LastUpdateDate"])
                self.assertEqual(row["OrderStatus"], o["OrderStatus"])
                self.assertEqual(row["OrderTotalAmount"], (o.get("OrderTotal") or {}).get("Amount"))
        if "order_items" in streams:
            got = self.table("order_items", db)
            want = {}
            for o in st["orders"]:
                for it in o["OrderItems"]:
                    it = dict(it)
                    if o["OrderStatus"] in ("Pending", "PendingAvailability"):
                        for k in WITHHELD:  # pricing withheld until payment is authorised
                            it.pop(k, None)
                    want[it["OrderItemId"]] = (o, it)
            self.assertEqual(set(got), set(want))
            for k, (o, it) in want.items():
                row = got[k]
                self.assertEqual(json.loads(row["data"]), it)
                self.assertEqual(row["order_id"], o["AmazonOrderId"])
                self.assertEqual(row["QuantityOrdered"], it["QuantityOrdered"])
                self.assertEqual(row["ItemPriceAmount"], (it.get("ItemPrice") or {}).get("Amount"))
                self.assertLessEqual(utc(row["LastUpdateDate"]), utc(o["LastUpdateDate"]))
        if "inventory_summaries" in streams:
            got = self.table("inventory_summaries", db)
            want = {s["sellerSku"]: s for s in st["inventory"]}
            self.assertEqual(set(got), set(want))
            for k, s in want.items():
                row = got[k]
                self.assertEqual(json.loads(row["data"]), s)
                self.assertEqual(row["totalQuantity"], s["totalQuantity"])
                self.assertEqual(row["fulfillableQuantity"], s["inventoryDetails"]["fulfillableQuantity"])
                self.assertEqual(row["marketplace_id"], MKT)
                self.assertEqual(utc(row["lastUpdatedTime"]), utc(s["lastUpdatedTime"]))
        if "catalog_items" in streams:
            got = self.table("catalog_items", db)
            want = {}
            for it in st["catalog"]:
                s = next(x for x in it["summaries"] if x["marketplaceId"] == MKT)
                if "mug" not in " ".join(str(s.get(k, "")) for k in ("itemName", "brand", "manufacturer")).lower():
                    continue
                out = {"asin": it["asin"]}
                for ds in INCLUDED:
                    v = it.get(ds)
                    if ds == "attributes":
                        out[ds] = {a: [x for x in vals if x.get("marketplace_id") == MKT] for a, vals in v.items()}
                    else:
                        out[ds] = [x for x in v if x.get("marketplaceId") == MKT]
                want[it["asin"]] = (s, out)
            self.assertGreater(len(want), 5)
            self.assertEqual(set(got), set(want))
            for k, (s, out) in want.items():
                self.assertEqual(json.loads(got[k]["data"]), out)
                self.assertEqual(got[k]["itemName"], s["itemName"])
                self.assertEqual(got[k]["brand"], s["brand"])


class Amazon(AmazonBase):
    # 120 inventory summaries: 3 pages of 50; the 3rd order has 7 items: 3 pages of 3
    args = ("--orders", "30", "--catalog", "130", "--inventory", "120", "--items-page-size", "3")

    # ------------------------------------------------------------ full sync

    def test_full_sync_equals_the_mock(self):
        r = self.etl()
        self.assertIn("run 1: ok", r.out)
        self.assert_equals_mock()
        st = self.stats()
        self.assertEqual(st["token_exchanges"], 1)
        for rq in self.mock.requests():
            if not rq["path"].startswith("/auth/"):
                self.assertTrue(rq["headers"]["x-amz-access-token"].startswith("Atza|"))
        # the token exchange: a form POST, and no SP-API header sent to LWA
        (tok,) = self.ops("/auth/o2/token")
        self.assertEqual(tok["method"], "POST")
        self.assertIn("application/x-www-form-urlencoded", tok["headers"]["content-type"])
        self.assertIn("grant_type=refresh_token", tok["body"])
        self.assertNotIn("x-amz-access-token", tok["headers"])
        # a first run asks from option start (730 days back) and for every summary
        first = [q for q in self.ops("/orders/v0/orders") if q["path"] == "/orders/v0/orders"][0]
        self.assertEqual(first["query"]["MarketplaceIds"], [MKT])
        self.assertEqual(first["query"]["MaxResultsPerPage"], ["100"])
        after = utc(first["query"]["LastUpdatedAfter"][0])
        self.assertAlmostEqual((datetime.datetime.now(datetime.timezone.utc) - after).days, 730, delta=1)
        inv = self.ops("/fba/inventory/v1/summaries")
        self.assertEqual(len(inv), 3)
        for q in inv:
            self.assertEqual(q["query"]["granularityType"], ["Marketplace"])
            self.assertEqual(q["query"]["granularityId"], [MKT])
            self.assertEqual(q["query"]["details"], ["true"])
            self.assertNotIn("startDateTime", q["query"])
        # counts in the run history
        st = self.state_of_mock()
        self.assertEqual(self.counts("orders")["created"], len(st["orders"]))
        self.assertEqual(self.counts("order_items")["created"], sum(len(o["OrderItems"]) for o in st["orders"]))
        # the orders' checkpoint is the answer's LastUpdatedBefore: now - 2 minutes on Amazon's clock
        ck = utc(self.checkpoints()["orders"])
        now = utc(self.mock.call("GET", "/__mock/clock")["now"])
        self.assertLess(abs((now - ck).total_seconds() - 120), 10)
        # order_items walks getOrders again, later: its own answer's bound (a slow run, e.g. under
        # ASan, can cross a second between the two walks)
        ck_items = utc(self.checkpoints()["order_items"])
        self.assertGreaterEqual(ck_items, ck)
        self.assertLess((ck_items - ck).total_seconds(), 10)

    def test_pagination_walks_every_page_once_as_each_api_wants(self):
        self.etl()
        st = self.state_of_mock()
        # getOrderItems: the 7-item order takes 3 pages; later pages send NextToken alone
        seven = [o for o in st["orders"] if len(o["OrderItems"]) == 7]
        self.assertEqual(len(seven), 1)
        path = "/orders/v0/orders/%s/orderItems" % seven[0]["AmazonOrderId"]
        rqs = [q for q in self.ops(path) if q["path"] == path]
        self.assertEqual(len(rqs), 3)
        self.assertEqual(rqs[0]["query"], {})
        tokens = [q["query"]["NextToken"][0] for q in rqs[1:]]
        self.assertEqual(len(set(tokens)), 2)
        self.assertTrue(all(set(q["query"]) == {"NextToken"} for q in rqs[1:]))
        # every order's items asked once (one page each, but for the 7-item one)
        items = [q for q in self.ops("/orders/v0/orders/") if q["path"].endswith("/orderItems")]
        self.assertEqual(len(items), len(st["orders"]) + 2)
        # FBA: 3 pages, nextToken at the top level, sent back with the same query
        inv = self.ops("/fba/inventory/v1/summaries")
        base = {k: v for k, v in inv[0]["query"].items()}
        for q in inv[1:]:
            self.assertEqual({k: v for k, v in q["query"].items() if k != "nextToken"}, base)
        self.assertEqual(len({q["query"]["nextToken"][0] for q in inv[1:]}), 2)
        # catalog: pageToken with the same query; pageSize from select
        cat = self.ops("/catalog/2022-04-01/items")
        self.assertGreaterEqual(len(cat), 3)
        q0 = cat[0]["query"]
        self.assertEqual(q0["keywords"], ["Mug"])
        self.assertEqual(q0["pageSize"], ["5"])
        self.assertEqual(q0["marketplaceIds"], [MKT])
        for q in cat[1:]:
            self.assertEqual({k: v for k, v in q["query"].items() if k != "pageToken"}, q0)
        self.assertEqual(len({q["query"]["pageToken"][0] for q in cat[1:]}), len(cat) - 1)
        self.assertTrue(all(q["status"] == 200 for q in self.mock.requests()))
        self.assert_equals_mock()

    # ------------------------------------------------------------ incremental

    def test_incremental_sends_the_filters_and_picks_up_exactly_the_changes(self):
        self.etl()
        cks = self.checkpoints()
        before = self.state_of_mock()
        inv_at_max = sum(1 for s in before["inventory"]
                         if utc(s["lastUpdatedTime"]) == utc(cks["inventory_summaries"]))
        unshipped = [o for o in before["orders"] if o["OrderStatus"] == "Unshipped"]
        o1, o2 = unshipped[0], unshipped[1]
        m = self.mock
        m.call("POST", "/__mock/amazon/order", {"orders": [{"AmazonOrderId": o1["AmazonOrderId"], "OrderStatus": "Shipped"},
                                                           {"AmazonOrderId": o2["AmazonOrderId"], "OrderStatus": "Canceled"}]})
        new = m.call("POST", "/__mock/amazon/order", {"order": {}})["orders"][0]
        sku = before["inventory"][7]["sellerSku"]
        m.call("POST", "/__mock/amazon/inventory", {"summary": {"sellerSku": sku, "fulfillableQuantity": 999}})
        # getOrders only sees changes older than two minutes
        m.call("POST", "/__mock/clock", {"advance": 180})
        m.call("DELETE", "/__mock/requests")
        self.etl()

        gets = [q for q in self.ops("/orders/v0/orders") if q["path"] == "/orders/v0/orders"]
        self.assertEqual(len(gets), 2)  # orders, order_items: one page each
        for q in gets:
            self.assertEqual(utc(q["query"]["LastUpdatedAfter"][0]), utc(cks["orders"]))
            self.assertEqual(q["query"]["MarketplaceIds"], [MKT])
            self.assertNotIn("CreatedAfter", q["query"])
        (inv,) = self.ops("/fba/inventory/v1/summaries")
        self.assertEqual(utc(inv["query"]["startDateTime"][0]), utc(cks["inventory_summaries"]))

        c = self.counts("orders")
        self.assertEqual((c["read"], c["created"], c["updated"], c["unchanged"]), (3, 1, 2, 0))
        after = self.state_of_mock()
        items3 = sum(len(o["OrderItems"]) for o in after["orders"]
                     if o["AmazonOrderId"] in (o1["AmazonOrderId"], o2["AmazonOrderId"], new["AmazonOrderId"]))
        ci = self.counts("order_items")
        self.assertEqual(ci["read"], items3)  # only the items of the three changed orders
        self.assertEqual(ci["created"], len(new["OrderItems"]))
        c = self.counts("inventory_summaries")
        self.assertEqual((c["read"], c["updated"], c["unchanged"]), (1 + inv_at_max, 1, inv_at_max))
        self.assertEqual(self.table("inventory_summaries")[sku]["fulfillableQuantity"], 999)
        self.assert_equals_mock()
        cks2 = self.checkpoints()
        self.assertGreater(utc(cks2["orders"]), utc(cks["orders"]))
        self.assertGreater(utc(cks2["orders"]), utc(new["LastUpdateDate"]))  # LastUpdatedBefore, not the last row

    def test_fba_pages_resend_startDateTime_and_an_expired_nextToken_restarts_the_walk(self):
        self.write("amz.yaml", pipeline_text(streams="streams:\n  - name: inventory_summaries\n"))
        self.etl()
        ck = self.checkpoints()["inventory_summaries"]
        m = self.mock
        m.call("POST", "/__mock/amazon/config", {"inventory_page_size": 2, "next_token_ttl": 0.5})
        inv = self.state_of_mock()["inventory"]
        m.call("POST", "/__mock/amazon/inventory",
               {"summaries": [{"sellerSku": s["sellerSku"], "fulfillableQuantity": 7} for s in inv[:5]]})
        m.call("DELETE", "/__mock/requests")
        # the third page arrives late: its nextToken (0.5 s) has expired by then
        m.call("POST", "/__mock/behave", {"path": "/fba/inventory/v1/summaries", "slow": 1.0, "skip": 2})
        r = self.etl()
        self.assertIn("nextToken expired", r.err)
        # a 429 of the mock's own rate bucket may come in between: it is retried
        rqs = [q for q in self.ops("/fba/inventory/v1/summaries") if q["status"] != 429]
        self.assertEqual([q["status"] for q in rqs], [200, 200, 400, 200, 200, 200])
        for q in rqs:  # startDateTime on every page, nextToken on all but the first of a walk
            self.assertEqual(utc(q["query"]["startDateTime"][0]), utc(ck))
        self.assertEqual(["nextToken" in q["query"] for q in rqs], [False, True, True, False, True, True])
        c = self.counts("inventory_summaries")
        self.assertEqual(c["updated"], 5)
        self.assert_equals_mock(streams=("inventory_summaries",))

    # ------------------------------------------------------------ rate limits and failures

    def test_quota_exceeded_and_5xx_are_survived_with_nothing_lost(self):
        m = self.mock
        # slower FBA and catalog plans (1/s after the x100 scale), so the mock's buckets run dry even when
        # the client is slow (under ASan a page takes longer than 0.2 s to parse)
        m.call("POST", "/__mock/amazon/config", {"rates": {"getInventorySummaries": {"rate": 0.01, "burst": 2},
                                                           "searchCatalogItems": {"rate": 0.01, "burst": 2}}})
        m.call("POST", "/__mock/behave", [{"path": "/fba/inventory/v1/summaries", "status": 503, "skip": 2},
                                         {"path": "/catalog/", "truncate": True, "skip": 2}])
        # the operation's bucket holds one call: the second is a real 429 QuotaExceeded
        for op, streams in (("getOrders", "orders,order_items"), ("getInventorySummaries", "inventory_summaries"),
                            ("searchCatalogItems", "catalog_items")):
            m.call("POST", "/__mock/amazon/buckets", {"set": {op: 1}})
            self.etl("--stream", streams)
            self.assertGreaterEqual(self.stats()["throttled"][op], 1, op)
        self.assert_equals_mock()
        statuses = [q["status"] for q in m.requests()]
        self.assertIn(429, statuses)
        self.assertIn(503, statuses)
        self.assertEqual(self.stats()["token_exchanges"], 1)
        for rq in m.requests():
            if rq["status"] == 429:
                self.assertEqual(rq["fault"], None)  # the mock's own buckets ran dry

    def test_token_cached_across_runs_and_refreshed_before_it_expires(self):
        self.etl("--stream", "inventory_summaries")
        self.etl("--stream", "inventory_summaries")
        self.assertEqual(self.stats()["token_exchanges"], 1)  # the second run reused it
        (scope, value), = query(self.state, "SELECT scope, value FROM kv WHERE key = 'lwa_access_token'")
        self.assertEqual(scope, "amazon@amz")
        cached = json.loads(value)
        self.assertIn(cached["access_token"], [a["access_token"] for a in self.state_of_mock()["tokens"]["access"]])
        # it expires in 30 s: inside the one-minute margin, so the next run gets a new one first
        cached["expires_at"] = int(time.time()) + 30
        c = sqlite3.connect(self.state)
        c.execute("UPDATE kv SET value = ? WHERE key = 'lwa_access_token'", (json.dumps(cached),))
        c.commit()
        c.close()
        self.mock.call("DELETE", "/__mock/requests")
        r = self.etl("--stream", "inventory_summaries")
        self.assertEqual(self.stats()["token_exchanges"], 2)
        self.assertNotIn(403, [q["status"] for q in self.mock.requests()])
        self.assertEqual(self.mock.requests()[0]["path"], "/auth/o2/token")
        self.assertIn("getting a new one", r.err)
        self.assertNotIn(cached["access_token"], r.out + r.err)  # tokens are redacted

    def test_token_expiring_during_a_run_is_replaced_before_it_is_refused(self):
        # tokens live 2 s: a run made to last over 3 s (slow answers) needs a new one on
        # the way, asked before expiry
        self.mock.call("POST", "/__mock/amazon/config", {"token_ttl": 2})
        self.mock.call("POST", "/__mock/behave", {"path": "/orders/v0/orders", "slow": 0.8, "count": 4})
        self.etl()
        st = self.stats()
        self.assertGreaterEqual(st["token_exchanges"], 2)
        self.assertNotIn(403, [q["status"] for q in self.mock.requests()])
        self.assert_equals_mock()

    def test_token_refused_by_the_api_is_refreshed_once(self):
        self.etl()
        self.mock.call("POST", "/__mock/amazon/expire", {})  # Amazon says expired; the cache does not know
        self.mock.call("POST", "/__mock/amazon/order", {"order": {}})
        self.mock.call("POST", "/__mock/clock", {"advance": 180})
        self.mock.call("DELETE", "/__mock/requests")
        r = self.etl()
        reqs = self.mock.requests()
        self.assertEqual([q["status"] for q in reqs].count(403), 1)
        i = [q["status"] for q in reqs].index(403)
        self.assertEqual(reqs[i + 1]["path"], "/auth/o2/token")     # a new token at once...
        self.assertEqual(reqs[i + 2]["raw_path"], reqs[i]["raw_path"])  # ...and the same call again
        self.assertIn("access token was refused", r.err)
        self.assertEqual(self.stats()["token_exchanges"], 2)
        self.assert_equals_mock()

    def test_bad_credentials_fail_clearly_and_leave_the_checkpoints(self):
        self.etl()
        cks = self.checkpoints()
        rows = {t: query(self.db, f"SELECT count(*) FROM {t}") for t in ("orders", "order_items")}
        self.mock.call("POST", "/__mock/amazon/order", {"order": {}})
        self.mock.call("POST", "/__mock/clock", {"advance": 180})
        # 1. a wrong refresh token (the cached access token was not issued for it)
        self.env["AMZ_REFRESH_TOKEN"] = "Atzr|wrong-one"
        r = self.etl(check=1)
        msg = r.out + r.err
        self.assertIn("Login with Amazon refused the credentials", msg)
        self.assertIn("invalid_grant", msg)
        self.assertNotIn("Atzr|wrong-one", msg)
        self.assertEqual(self.stats()["token_failures"], 1)  # asked once for the four streams
        self.assertEqual(self.checkpoints(), cks)
        # 2. a wrong client secret
        self.env["AMZ_REFRESH_TOKEN"] = REFRESH
        self.env["AMZ_CLIENT_SECRET"] = "not-the-secret"
        r = self.etl(check=1)
        self.assertIn("invalid_client", r.out)
        self.assertIn("check client_id and client_secret", r.out)
        self.assertEqual(self.checkpoints(), cks)
        # 3. the seller revoked the app: the cached access token is refused, then the refresh token
        self.env["AMZ_CLIENT_SECRET"] = SECRET
        self.mock.call("POST", "/__mock/amazon/expire", {"refresh": True})
        r = self.etl(check=1)
        self.assertIn("invalid_grant", r.out)
        self.assertEqual(self.checkpoints(), cks)
        for t, n in rows.items():
            self.assertEqual(query(self.db, f"SELECT count(*) FROM {t}"), n)
        (status, error), = query(self.state, "SELECT status, error FROM runs ORDER BY id DESC LIMIT 1")
        self.assertEqual(status, "failed")
        self.assertIn("Login with Amazon refused", error)

    def test_catalog_needs_a_query_in_select(self):
        self.write("amz.yaml", pipeline_text(streams="streams:\n  - name: catalog_items\n"))
        r = self.etl(check=1)
        self.assertIn("needs one of select: keywords", r.out)
        self.write("amz.yaml", pipeline_text(
            streams="streams:\n  - name: catalog_items\n    select: { identifiers: \"%s\" }\n"
                    % ",".join(i["asin"] for i in self.state_of_mock()["catalog"][:23])))
        self.etl()
        self.assertEqual(len(self.table("catalog_items")), 23)
        cat = self.ops("/catalog/2022-04-01/items")
        self.assertEqual([len(q["query"]["identifiers"][0].split(",")) for q in cat], [20, 3])
        self.assertTrue(all(q["query"]["identifiersType"] == ["ASIN"] for q in cat))

    def test_shipped_pipeline_lands_in_sqlite(self):
        with open(os.path.join(SOURCE, "pipelines", "amazon.yaml")) as f:
            self.write("amazon.yaml", f.read())
        self.env = {"AMAZON_CLIENT_ID": CLIENT_ID, "AMAZON_CLIENT_SECRET": SECRET, "AMAZON_REFRESH_TOKEN": REFRESH,
                    "AMAZON_BASE_URL": self.mock.base, "AMAZON_TOKEN_URL": self.mock.base + "/auth/o2/token"}
        r = self.etl(pipeline="amazon.yaml")
        self.assertIn("amazon run 1: ok", r.out)
        db = self.path("var", "amazon.db")
        st = self.state_of_mock()
        self.assertEqual(query(db, "SELECT count(*) FROM orders"), [(len(st["orders"]),)])
        self.assertEqual(query(db, "SELECT count(*) FROM order_items"),
                         [(sum(len(o["OrderItems"]) for o in st["orders"]),)])
        self.assertEqual(query(db, "SELECT count(*) FROM inventory_summaries"), [(len(st["inventory"]),)])
        (n,), = query(db, "SELECT count(*) FROM catalog_items WHERE lower(itemName) LIKE '%candle%'")
        self.assertGreater(n, 0)
        self.assertEqual(query(db, "SELECT count(*) FROM catalog_items"), [(n,)])
        self.etl(pipeline="amazon.yaml")
        self.assertEqual(self.stats()["token_exchanges"], 1)


class AmazonManyOrders(AmazonBase):
    args = ("--orders", "230", "--catalog", "20", "--inventory", "10")

    def test_orders_next_token_resends_the_same_query(self):
        self.write("amz.yaml", pipeline_text(streams="streams:\n  - name: orders\n"))
        self.etl()
        rqs = self.ops("/orders/v0/orders")
        self.assertEqual(len(rqs), 3)  # 230 orders, 100 a page
        q0 = rqs[0]["query"]
        self.assertNotIn("NextToken", q0)
        for q in rqs[1:]:
            self.assertEqual({k: v for k, v in q["query"].items() if k != "NextToken"}, q0)
        self.assertEqual(len({q["query"]["NextToken"][0] for q in rqs[1:]}), 2)
        self.assertEqual(len(self.table("orders")), 230)
        self.assert_equals_mock(streams=("orders",))

    def test_three_sellers_one_bad_refresh_token_the_others_complete(self):
        self.mock.call("POST", "/__mock/amazon/credentials",
                       {"refresh_tokens": ["Atzr|acme", "Atzr|cora"]})
        self.write("sellers.yaml", pipeline_text(
            name="sellers", refresh="${matrix.refresh}",
            matrix="""matrix:
  - { client: acme, refresh: "${ACME_REFRESH}" }
  - { client: bolt, refresh: "${BOLT_REFRESH}" }
  - { client: cora, refresh: "${CORA_REFRESH}" }""",
            streams="""streams:
  - { name: orders, table: "seller_${matrix.client}_orders" }
  - { name: inventory_summaries, table: "seller_${matrix.client}_inventory" }
"""))
        self.env.update({"ACME_REFRESH": "Atzr|acme", "BOLT_REFRESH": "Atzr|revoked", "CORA_REFRESH": "Atzr|cora"})
        r = self.etl(pipeline="sellers.yaml", check=1)
        self.assertIn("sellers@acme run 1: ok", r.out)
        self.assertIn("sellers@bolt run 2: failed", r.out)
        self.assertIn("sellers@cora run 3: ok", r.out)
        self.assertIn("invalid_grant", r.out)
        self.assertNotIn("Atzr|revoked", r.out + r.err)
        db = self.path("var", "sellers.db")
        st = self.state_of_mock()
        for client in ("acme", "cora"):
            self.assertEqual(set(self.table("seller_%s_orders" % client, db)), {o["AmazonOrderId"] for o in st["orders"]})
            self.assertEqual(set(self.table("seller_%s_inventory" % client, db)),
                             {s["sellerSku"] for s in st["inventory"]})
        state = self.path(".etl", "sellers.state.db")
        # one token each, cached under each client's own scope
        self.assertEqual(st["stats"]["token_exchanges"], 2)
        self.assertEqual(st["stats"]["token_failures"], 1)
        self.assertEqual(sorted(s for (s,) in query(state, "SELECT scope FROM kv")),
                         ["amazon@sellers@acme", "amazon@sellers@cora"])
        self.assertEqual(sorted(p for (p,) in query(state, "SELECT DISTINCT pipeline FROM checkpoints")),
                         ["sellers@acme", "sellers@cora"])
        runs = query(state, "SELECT client, status FROM runs ORDER BY id")
        self.assertEqual(runs, [("acme", "ok"), ("bolt", "failed"), ("cora", "ok")])
        # each seller's calls were its own: per-seller buckets on the mock
        buckets = st["buckets"]["getOrders"]
        self.assertEqual(set(buckets), {"Atzr|acme", "Atzr|cora"})


if __name__ == "__main__":
    unittest.main()
