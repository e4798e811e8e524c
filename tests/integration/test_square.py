"""pipelines/square.yaml against the Square mock (tests/mock/square.py): a full
sync equals the mock stream by stream; an incremental run sends the right
filters and picks up exactly the changes; deleted catalog objects become soft
deletes and vanished locations INACTIVE; 429 waits for Retry-After; a 401
fails with the status and the endpoint and leaves the state store alone;
truncated and malformed answers; three runs leave no duplicates; a failed
parent step skips its children; more than ten locations are read in groups."""
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import unittest
import urllib.request

from etltest import SOURCE, Workdir, last_run_counts, query, run

MOCK = os.path.join(SOURCE, "tests", "mock", "square.py")
PIPELINE = os.path.join(SOURCE, "pipelines", "square.yaml")
TOKEN = "sq-test-token"
NOW = "2026-03-01T00:00:00Z"  # after every generated stamp (base time + 30 days)
CATALOG = {"catalog_categories": "CATEGORY", "catalog_items": "ITEM",
           "catalog_variations": "ITEM_VARIATION"}
STREAMS = ["locations", "catalog_categories", "catalog_items", "catalog_variations",
           "inventory_counts", "orders", "order_line_items"]
UNTRACKED = {"NONE", "SOLD", "UNLINKED_RETURN"}


class Mock:
    """One tests/mock/square.py process and its control API."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, MOCK, "--port", "0", *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"mock did not start: {line!r}")
        self.url = line.split()[-1]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    def post(self, path, body=None):
        return self.call("POST", path, body if body is not None else {})

    def get(self, path):
        return self.call("GET", path)

    def requests(self, prefix=""):
        return self.get("/__mock/requests?path=" + prefix)["requests"]

    def api(self, path, body):
        """An API call as a client would make it (for expected cursors)."""
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": "Bearer " + TOKEN,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


def us(text):
    """RFC 3339 -> microseconds since the epoch."""
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(d.timestamp() * 1_000_000)


def ms_text(micros):
    """Microseconds -> RFC 3339 with milliseconds, floored, as Square writes times."""
    ms = micros // 1000
    d = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


class SquareTest(Workdir):
    mock_args = ()

    @classmethod
    def setUpClass(cls):
        cls.mock = Mock(*cls.mock_args)

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        super().setUp()
        self.mock.post("/__mock/reset")
        self.mock.post("/__mock/clock", {"now": NOW})
        self.pipeline = self.path("square.yaml")
        self.use_pipeline()
        self.db = self.path("var", "square.db")
        self.state = self.path(".etl", "square.state.db")
        self.env = {"SQUARE_TOKEN": TOKEN, "SQUARE_BASE_URL": self.mock.url}

    def use_pipeline(self, source_extra="", stream_extra=None):
        """pipelines/square.yaml, with options added to source: and streams."""
        with open(PIPELINE) as f:
            text = f.read()
        anchor = '  base_url: "${SQUARE_BASE_URL:-}"\n'
        self.assertIn(anchor, text)
        text = text.replace(anchor, anchor + source_extra)
        for stream, extra in (stream_extra or {}).items():
            text = text.replace(f"  - name: {stream}\n", f"  - name: {stream}\n{extra}")
        self.write("square.yaml", text)

    def sync(self, *args, check=0, env=None):
        e = dict(self.env)
        e.update(env or {})
        return run("run", self.pipeline, *args, env=e, check=check)

    def counts(self):
        return {s: c for (s, d), c in last_run_counts(self.state, "square").items()}

    def state_rows(self):
        return {t: query(self.state, f"SELECT * FROM {t} ORDER BY 1, 2")
                for t in ("checkpoints", "ledger", "deferred", "dead_letters")}

    def checkpoint(self, stream):
        return query(self.state, "SELECT cursor FROM checkpoints WHERE stream=?", stream)[0][0]

    def sink(self, table, cols="*", where=""):
        c = sqlite3.connect(self.db)
        c.row_factory = sqlite3.Row
        try:
            return {r["id"]: dict(r) for r in c.execute(f'SELECT {cols} FROM "{table}" {where}')}
        finally:
            c.close()

    def advance(self, seconds):
        self.mock.post("/__mock/clock", {"advance": seconds})

    def bodies(self, path):
        return [json.loads(r["body"]) for r in self.mock.requests(path)]


class FullAndIncremental(SquareTest):
    def test_full_sync_equals_the_mock_stream_by_stream(self):
        self.sync()
        st = self.mock.get("/__mock/state")
        # locations: every one, INACTIVE included, field by field
        locs = self.sink("locations")
        self.assertEqual(set(locs), {l["id"] for l in st["locations"]})
        for l in st["locations"]:
            row = locs[l["id"]]
            self.assertEqual(json.loads(row["data"]), l)
            for k in ("name", "status", "timezone", "currency", "merchant_id"):
                self.assertEqual(row[k], l[k])
            self.assertEqual(row["locality"], l["address"]["locality"])
        # catalog: the live objects of each type, as the API shows them;
        # objects already deleted when first seen have nothing to mark
        for stream, typ in CATALOG.items():
            rows = self.sink(stream)
            live = {o["id"]: o for o in st["catalog"] if o["type"] == typ and not o["is_deleted"]}
            self.assertEqual(set(rows), set(live), stream)
            for oid, o in live.items():
                data = json.loads(rows[oid]["data"])
                data.get("item_data", {}).pop("variations", None)  # the API nests them
                self.assertEqual(data, o, stream)
                self.assertEqual(us(rows[oid]["updated_at"]), us(o["updated_at"]))
                self.assertEqual(rows[oid]["version"], o["version"])
                self.assertIsNone(rows[oid]["deleted_at"])
        vars_ = self.sink("catalog_variations")
        for o in st["catalog"]:
            if o["type"] == "ITEM_VARIATION" and not o["is_deleted"]:
                vd = o["item_variation_data"]
                self.assertEqual(vars_[o["id"]]["item_id"], vd["item_id"])
                self.assertEqual(vars_[o["id"]]["sku"], vd["sku"])
                self.assertEqual(vars_[o["id"]]["price_amount"],
                                 vd.get("price_money", {}).get("amount"))
        items = self.sink("catalog_items")
        for o in st["catalog"]:
            if o["type"] == "ITEM" and not o["is_deleted"]:
                self.assertEqual(items[o["id"]]["name"], o["item_data"]["name"])
        # inventory counts: every tracked count, quantities exact
        counts = self.sink("inventory_counts")
        want = {f'{c["catalog_object_id"]}:{c["location_id"]}:{c["state"]}': c
                for c in st["counts"] if c["state"] not in UNTRACKED}
        self.assertEqual(set(counts), set(want))
        for k, c in want.items():
            self.assertEqual(counts[k]["quantity"], c["quantity"])
            self.assertEqual(us(counts[k]["calculated_at"]), us(c["calculated_at"]))
            self.assertEqual(json.loads(counts[k]["data"]), c)
        self.assertTrue(any("." in c["quantity"] or c["quantity"].startswith("-")
                            for c in want.values()))
        # orders and their line items
        orders = self.sink("orders")
        self.assertEqual(set(orders), {o["id"] for o in st["orders"]})
        lines = self.sink("order_line_items")
        want_lines = {li["uid"]: (o, li) for o in st["orders"] for li in o["line_items"]}
        self.assertEqual(set(lines), set(want_lines))
        for o in st["orders"]:
            self.assertEqual(json.loads(orders[o["id"]]["data"]), o)
            self.assertEqual(orders[o["id"]]["total_amount"], o["total_money"]["amount"])
            self.assertEqual(us(orders[o["id"]]["updated_at"]), us(o["updated_at"]))
        for uid, (o, li) in want_lines.items():
            self.assertEqual(lines[uid]["order_id"], o["id"])
            self.assertEqual(lines[uid]["quantity"], li["quantity"])
            self.assertEqual(lines[uid]["total_amount"], li["total_money"]["amount"])
            self.assertEqual(json.loads(lines[uid]["data"]), li)
        # every request carried the pinned Square-Version and the bearer token
        reqs = self.mock.requests("/v2/")
        self.assertTrue(reqs)
        for r in reqs:
            self.assertEqual(r["headers"].get("square-version"), "2025-08-20")
            self.assertEqual(r["headers"].get("authorization"), "Bearer " + TOKEN)
        # the token never reaches the logs
        log_dir = self.path("var", "logs")
        for name in os.listdir(log_dir):
            with open(os.path.join(log_dir, name)) as f:
                self.assertNotIn(TOKEN, f.read())

    def test_pages_follow_the_cursor_with_the_query_unchanged(self):
        self.use_pipeline("  page_size: 20\n")
        self.sync()
        for path, kind in (("/v2/catalog/search", "objects"),
                           ("/v2/inventory/counts/batch-retrieve", "counts"),
                           ("/v2/orders/search", "orders")):
            walks = []
            for b in self.bodies(path):  # a walk starts without a cursor
                if "cursor" not in b:
                    walks.append([])
                walks[-1].append(b)
            self.assertTrue([w for w in walks if len(w) > 1], f"{path}: one page only")
            for walk in walks:
                first = walk[0]
                for prev, cur in zip(walk, walk[1:]):
                    # the cursor the previous page returned, with the same query
                    answer = self.mock.api(path, prev)
                    self.assertEqual(cur["cursor"], answer["cursor"])
                    self.assertEqual({k: v for k, v in cur.items() if k != "cursor"}, first)
                self.assertNotIn("cursor", self.mock.api(path, walk[-1]))
                self.assertEqual(first["limit"], 20)
        st = self.mock.get("/__mock/state")
        self.assertEqual(len(self.sink("inventory_counts")),
                         len([c for c in st["counts"] if c["state"] not in UNTRACKED]))
        self.assertEqual(len(self.sink("orders")), len(st["orders"]))

    def test_incremental_run_sends_the_filters_and_picks_up_exactly_the_changes(self):
        self.sync()
        ck = {s: self.checkpoint(s) for s in STREAMS if s != "locations"}
        st = self.mock.get("/__mock/state")
        # the catalog's checkpoint is its latest_time
        for s in CATALOG:
            self.assertEqual(us(ck[s]), us(st["latest_time"]))
        self.advance(3600)
        items = sorted((o for o in st["catalog"] if o["type"] == "ITEM" and not o["is_deleted"]),
                       key=lambda o: o["id"])
        renamed = items[0]
        locs = [l["id"] for l in st["locations"]]
        count = next(c for c in st["counts"] if c["state"] == "IN_STOCK")
        order = st["orders"][0]
        new = self.mock.post("/__mock/square/upsert", {
            "objects": [
                {"id": renamed["id"], "type": "ITEM", "item_data": {"name": "Renamed Thing"}},
                {"id": "#cat", "type": "CATEGORY", "category_data": {"name": "Gifts"}},
                {"id": "#item", "type": "ITEM", "item_data": {
                    "name": "Gift Card", "categories": [{"id": "#cat"}],
                    "variations": [
                        {"id": "#v1", "type": "ITEM_VARIATION", "item_variation_data": {
                            "name": "Small", "sku": "GIFT-S", "pricing_type": "FIXED_PRICING",
                            "price_money": {"amount": 2500, "currency": "USD"}}},
                        {"id": "#v2", "type": "ITEM_VARIATION", "item_variation_data": {
                            "name": "Large", "sku": "GIFT-L", "pricing_type": "FIXED_PRICING",
                            "price_money": {"amount": 5000, "currency": "USD"}}}]}}],
            "counts": [{"catalog_object_id": count["catalog_object_id"],
                        "location_id": count["location_id"], "state": "IN_STOCK",
                        "quantity": "7.5"},
                       {"catalog_object_id": "#v1", "location_id": locs[0], "quantity": "3"}]})
        ids = {m["client_object_id"]: m["object_id"] for m in new["id_mappings"]}
        self.mock.post("/__mock/square/order", {"orders": [
            {"id": order["id"], "state": "CANCELED"},
            {"location_id": locs[0], "line_items": [{"catalog_object_id": ids["#v1"],
                                                     "quantity": "2"}]}]})
        self.mock.call("DELETE", "/__mock/requests")
        self.sync()
        c = self.counts()
        got = {s: (c[s]["created"], c[s]["updated"], c[s]["deleted"]) for s in STREAMS}
        self.assertEqual(got, {
            "locations": (0, 0, 0),
            "catalog_categories": (1, 0, 0),
            "catalog_items": (1, 1, 0),
            "catalog_variations": (2, 0, 0),
            "inventory_counts": (1, 1, 0),
            "orders": (1, 1, 0),
            "order_line_items": (1, 0, 0)})
        # the filters: the checkpoint minus the 5 minutes of overlap; begin_time
        # and updated_after are exclusive, so one millisecond less again
        overlap = 300 * 1_000_000
        for s, typ in CATALOG.items():
            body = [b for b in self.bodies("/v2/catalog/search") if b["object_types"] == [typ]]
            self.assertEqual(len(body), 1)
            self.assertEqual(body[0]["begin_time"], ms_text(us(ck[s]) - overlap - 1000))
            self.assertIs(body[0]["include_deleted_objects"], True)
        inv = self.bodies("/v2/inventory/counts/batch-retrieve")
        self.assertEqual([b["updated_after"] for b in inv],
                         [ms_text(us(ck["inventory_counts"]) - overlap - 1000)])
        orders = self.bodies("/v2/orders/search")
        self.assertEqual(len(orders), 2)  # one walk for orders, one for line items
        for b in orders:
            q = b["query"]
            self.assertEqual(q["filter"]["date_time_filter"]["updated_at"]["start_at"],
                             ms_text(us(ck["orders"]) - overlap))
            self.assertEqual(q["sort"], {"sort_field": "UPDATED_AT", "sort_order": "ASC"})
            self.assertEqual(sorted(b["location_ids"]), sorted(locs))
        self.assertEqual(self.sink("catalog_items")[renamed["id"]]["name"], "Renamed Thing")
        self.assertEqual(self.sink("inventory_counts")[
            f'{count["catalog_object_id"]}:{count["location_id"]}:IN_STOCK']["quantity"], "7.5")
        self.assertEqual(self.sink("orders")[order["id"]]["state"], "CANCELED")
        self.assertEqual(self.sink("catalog_variations")[ids["#v2"]]["item_id"], ids["#item"])

    def test_deleted_catalog_objects_become_soft_deletes(self):
        self.sync()
        st = self.mock.get("/__mock/state")
        cat = next(o for o in st["catalog"] if o["type"] == "CATEGORY")
        item = next(o for o in st["catalog"] if o["type"] == "ITEM" and not o["is_deleted"])
        variations = [o["id"] for o in st["catalog"] if o["type"] == "ITEM_VARIATION"
                      and o["item_variation_data"]["item_id"] == item["id"]]
        self.advance(60)
        self.mock.post("/__mock/square/delete", {"object_ids": [item["id"], cat["id"]]})
        self.sync()
        c = self.counts()
        self.assertEqual(c["catalog_items"]["deleted"], 1)
        self.assertEqual(c["catalog_categories"]["deleted"], 1)
        self.assertEqual(c["catalog_variations"]["deleted"], len(variations))
        # the rows stay, marked
        self.assertIsNotNone(self.sink("catalog_items")[item["id"]]["deleted_at"])
        self.assertIsNotNone(self.sink("catalog_categories")[cat["id"]]["deleted_at"])
        rows = self.sink("catalog_variations")
        for v in variations:
            self.assertIsNotNone(rows[v]["deleted_at"])
        live = [r for r in self.sink("catalog_items").values() if r["deleted_at"] is None]
        self.assertEqual(len(live), len([o for o in st["catalog"] if o["type"] == "ITEM"
                                         and not o["is_deleted"]]) - 1)
        # a later run does not delete them again
        self.advance(60)
        self.sync()
        c = self.counts()
        self.assertEqual(sum(c[s]["deleted"] for s in CATALOG), 0)

    def test_three_runs_in_a_row_leave_no_duplicates(self):
        for i in range(3):
            self.sync()
            c = self.counts()
            if i:
                for s in STREAMS:
                    self.assertEqual((c[s]["created"], c[s]["updated"], c[s]["deleted"]),
                                     (0, 0, 0), s)
        st = self.mock.get("/__mock/state")
        want = {"locations": len(st["locations"]),
                "catalog_items": len([o for o in st["catalog"] if o["type"] == "ITEM"
                                      and not o["is_deleted"]]),
                "orders": len(st["orders"]),
                "order_line_items": sum(len(o["line_items"]) for o in st["orders"])}
        for table in STREAMS:
            n, distinct = query(self.db, f'SELECT count(*), count(DISTINCT id) FROM "{table}"')[0]
            self.assertEqual(n, distinct, table)
            if table in want:
                self.assertEqual(n, want[table], table)


class Json(SquareTest):
    def test_escapes_and_unicode_arrive_as_text(self):
        name = 'Cr\u00e8me "br\u00fbl\u00e9e" \\ / \u2603 \U0001F600\ttab'
        new = self.mock.post("/__mock/square/upsert", {"objects": [
            {"id": "#i", "type": "ITEM", "item_data": {"name": name, "description": ""}}]})
        iid = new["id_mappings"][0]["object_id"]
        self.sync("--stream", "catalog_items")
        row = self.sink("catalog_items")[iid]
        self.assertEqual(row["name"], name)
        self.assertEqual(row["description"], "")  # "" stays text
        self.assertEqual(json.loads(row["data"])["item_data"]["name"], name)
        # generated names hold non-ASCII too (the mock escapes it as \uXXXX)
        st = self.mock.get("/__mock/state")
        rows = self.sink("catalog_items")
        for o in st["catalog"]:
            if o["type"] == "ITEM" and not o["is_deleted"]:
                self.assertEqual(rows[o["id"]]["name"], o["item_data"]["name"])

    def test_an_answer_with_whitespace_lands_as_compact_json(self):
        req = urllib.request.Request(self.mock.url + "/v2/locations",
                                     headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req) as r:
            answer = json.loads(r.read())
        pretty = json.dumps(answer, indent=2, ensure_ascii=False)
        self.mock.post("/__mock/behave", {"path": "/v2/locations", "status": 200,
                                          "body": "\n  " + pretty + "\n", "count": 1})
        self.sync("--stream", "locations")
        rows = self.sink("locations")
        for loc in answer["locations"]:
            data = rows[loc["id"]]["data"]
            self.assertEqual(json.loads(data), loc)
            self.assertNotIn("\n", data)
            self.assertEqual(data, json.dumps(loc, separators=(",", ":"), ensure_ascii=False))
            self.assertEqual(rows[loc["id"]]["name"], loc["name"])

    def test_a_value_of_the_wrong_kind_is_a_data_error_naming_it(self):
        st = self.mock.get("/__mock/state")
        var = next(o for o in st["catalog"] if o["type"] == "ITEM_VARIATION"
                   and not o["is_deleted"])
        self.mock.post("/__mock/square/upsert", {"objects": [
            {"id": var["id"], "item_variation_data": {"price_money": {"amount": "12.5"}}}]})
        self.sync("--stream", "catalog_items,catalog_variations", check=1)
        err = query(self.state, "SELECT error FROM run_streams WHERE stream='catalog_variations'")
        self.assertIn(var["id"], err[0][0])
        self.assertIn("item_variation_data.price_money.amount", err[0][0])
        self.assertIn("not a whole number", err[0][0])


class Failures(SquareTest):
    def test_429_is_retried_after_the_time_it_asked_for(self):
        self.mock.post("/__mock/behave", {"path": "/v2/catalog/search", "status": 429,
                                          "retry_after": "1.2", "count": 1})
        self.sync("--stream", "catalog_categories")
        reqs = self.mock.requests("/v2/catalog/search")
        self.assertEqual([r["status"] for r in reqs], [429, 200])
        self.assertEqual(reqs[0]["body"], reqs[1]["body"])
        gap = reqs[1]["time"] - reqs[0]["time"]
        self.assertGreaterEqual(gap, 1.2)
        self.assertLess(gap, 2.5)
        self.assertEqual(self.counts()["catalog_categories"]["created"], 5)

    def test_401_fails_naming_the_status_and_endpoint_and_the_checkpoint_stays(self):
        self.sync()
        before = self.state_rows()
        self.advance(60)
        self.mock.post("/__mock/square/upsert", {"objects": [
            {"id": "#c", "type": "CATEGORY", "category_data": {"name": "Late"}}]})
        self.mock.post("/__mock/square/tokens", {"tokens": ["another-token"]})
        r = self.sync(check=1)
        self.assertIn("401", r.err)
        errors = dict(query(self.state, "SELECT stream, error FROM run_streams WHERE run_id ="
                                        " (SELECT max(id) FROM runs)"))
        endpoints = {"locations": "/v2/locations", "catalog_categories": "/v2/catalog/search",
                     "catalog_items": "/v2/catalog/search"}
        for stream, endpoint in endpoints.items():
            self.assertIn("401", errors[stream])
            self.assertIn(self.mock.url + endpoint, errors[stream])
            self.assertIn("UNAUTHORIZED", errors[stream])
        # the steps that need the locations (or the items) do not run
        for stream in ("catalog_variations", "inventory_counts", "orders", "order_line_items"):
            self.assertRegex(errors[stream], r"^skipped: parent stream \w+ failed$")
            self.assertRegex(r.out + r.err, stream + r"\s+forward\s.*skipped")
        self.assertNotIn(TOKEN, r.err)
        # nothing moved: checkpoints, ledger, deferred, dead letters
        self.assertEqual(self.state_rows(), before)
        self.assertEqual(query(self.state, "SELECT status FROM runs ORDER BY id DESC LIMIT 1"),
                         [("failed",)])

    def test_a_truncated_body_is_retried_then_fails_clearly(self):
        self.mock.post("/__mock/behave", {"path": "/v2/inventory/", "truncate": True, "count": 1})
        self.sync("--stream", "locations,inventory_counts")
        reqs = self.mock.requests("/v2/inventory/")
        self.assertEqual(len(reqs), 2)
        self.assertTrue(reqs[0]["fault"]["truncate"])
        self.assertGreater(self.counts()["inventory_counts"]["created"], 0)
        # every time: the retries run out and the error says what happened where
        self.use_pipeline("  max_retries: 2\n")
        self.mock.post("/__mock/behave", {"path": "/v2/inventory/", "truncate": True,
                                          "count": 10})
        before = self.state_rows()["checkpoints"]
        r = self.sync("--stream", "inventory_counts", "--full", check=1)
        err = query(self.state, "SELECT error FROM run_streams WHERE stream='inventory_counts'"
                                " ORDER BY run_id DESC LIMIT 1")[0][0]
        self.assertIn("/v2/inventory/counts/batch-retrieve", err)
        self.assertIn("truncated", err)
        self.assertIn("3 attempts", err)
        self.assertIn("truncated", r.err)
        self.assertEqual(self.state_rows()["checkpoints"], before)

    def test_malformed_json_is_a_data_error_naming_the_endpoint(self):
        self.mock.post("/__mock/behave", {"path": "/v2/orders/search", "status": 200,
                                          "body": '{"orders": [{"id": "x", }]}', "count": 1})
        r = self.sync("--stream", "locations,orders", check=1)
        err = query(self.state, "SELECT error FROM run_streams WHERE stream='orders'")[0][0]
        self.assertIn("POST " + self.mock.url + "/v2/orders/search", err)
        self.assertIn("not valid JSON", err)
        self.assertIn("orders", r.err)
        self.assertEqual(query(self.state, "SELECT count(*) FROM checkpoints WHERE stream='orders'"
                                           " AND cursor IS NOT NULL"), [(0,)])

    def test_a_failed_step_skips_the_steps_that_depend_on_it(self):
        # catalog_categories' one request passes; catalog_items gets 500s past its retries
        self.use_pipeline("  max_retries: 2\n")
        self.mock.post("/__mock/behave", {"path": "/v2/catalog/search", "status": 500,
                                          "skip": 1, "count": 3})
        r = self.sync(check=1)
        rows = {s: (st, e) for s, st, e in query(
            self.state, "SELECT stream, status, error FROM run_streams")}
        self.assertEqual(rows["catalog_categories"][0], "ok")
        self.assertEqual(rows["catalog_items"][0], "failed")
        self.assertIn("/v2/catalog/search", rows["catalog_items"][1])
        self.assertIn("500", rows["catalog_items"][1])
        self.assertIn("3 attempts", rows["catalog_items"][1])
        # skipped, with the reason in the run history and the log
        self.assertEqual(rows["catalog_variations"],
                         ("skipped", "skipped: parent stream catalog_items failed"))
        self.assertRegex(r.out + r.err, r"catalog_variations\s+forward\s.*skipped")
        self.assertIn("forward skipped: parent stream catalog_items failed", r.err)
        for s in ("locations", "inventory_counts", "orders", "order_line_items"):
            self.assertEqual(rows[s][0], "ok", s)
        self.assertIn("catalog_items", r.err)
        # the variations were never asked for
        self.assertFalse([b for b in self.bodies("/v2/catalog/search")
                          if b["object_types"] == ["ITEM_VARIATION"]])
        self.assertNotIn(("catalog_variations",), query(self.state,
                                                        "SELECT stream FROM checkpoints"))


class Locations(SquareTest):
    def test_locations_that_disappear_become_inactive_on_a_full_run(self):
        self.mock.post("/__mock/square/upsert", {"locations": [
            {"id": "LPOPUP0000001", "name": "Summer Pop-up", "status": "ACTIVE"}]})
        self.sync()
        self.assertEqual(self.sink("locations")["LPOPUP0000001"]["status"], "ACTIVE")
        # Square stops listing it: a mock started from its data without it
        st = self.mock.get("/__mock/state")
        for k in ("config", "latest_time", "clock"):
            st.pop(k, None)
        st["locations"] = [l for l in st["locations"] if l["id"] != "LPOPUP0000001"]
        data = self.write("gone.json", json.dumps(st))
        other = Mock("--data", data)
        try:
            other.post("/__mock/clock", {"now": NOW})
            self.sync(env={"SQUARE_BASE_URL": other.url})
            self.assertEqual(self.counts()["locations"]["deleted"], 1)
            locs = self.sink("locations")
            self.assertEqual(locs["LPOPUP0000001"]["status"], "INACTIVE")
            self.assertEqual(len(locs), len(st["locations"]) + 1)
            for l in st["locations"]:
                self.assertEqual(locs[l["id"]]["status"], l["status"])
            self.sync(env={"SQUARE_BASE_URL": other.url})
            self.assertEqual(self.counts()["locations"]["deleted"], 0)
        finally:
            other.stop()


class PostgresSink(SquareTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        import pgserver
        cls.pg = pgserver.PgServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        super().tearDownClass()

    def test_square_to_postgresql_by_url(self):
        url = self.pg.createdb("square")
        self.sync(env={"SQUARE_SINK_URL": url})
        self.assertFalse(os.path.exists(self.db))  # nothing went to the SQLite default
        st = self.mock.get("/__mock/state")
        n = {r[0]: int(r[1]) for r in self.pg.psql(
            "SELECT 'orders', count(*) FROM orders UNION ALL SELECT 'counts', count(*) FROM"
            " inventory_counts UNION ALL SELECT 'lines', count(*) FROM order_line_items"
            " UNION ALL SELECT 'variations', count(*) FROM catalog_variations", "square")}
        self.assertEqual(n["orders"], len(st["orders"]))
        self.assertEqual(n["lines"], sum(len(o["line_items"]) for o in st["orders"]))
        self.assertEqual(n["counts"], len([c for c in st["counts"] if c["state"] not in UNTRACKED]))
        self.assertEqual(n["variations"], len([o for o in st["catalog"] if not o["is_deleted"]
                                               and o["type"] == "ITEM_VARIATION"]))
        types = dict(self.pg.psql("SELECT column_name, data_type FROM information_schema.columns"
                                  " WHERE table_name = 'inventory_counts'", "square"))
        self.assertEqual(types["quantity"], "numeric")
        self.assertIn("timestamp", types["updated_at"])
        half = [c for c in st["counts"] if c["quantity"].endswith(".5")][0]
        got = self.pg.psql("SELECT quantity FROM inventory_counts WHERE id = '%s:%s:%s'" % (
            half["catalog_object_id"], half["location_id"], half["state"]), "square")
        self.assertEqual(got, [[half["quantity"]]])
        self.sync(env={"SQUARE_SINK_URL": url})
        c = self.counts()
        self.assertEqual(sum(c[s]["created"] + c[s]["updated"] for s in STREAMS), 0)


class ManyLocations(SquareTest):
    mock_args = ("--locations", "12", "--orders", "30", "--items", "6")

    def test_more_than_ten_locations_are_read_in_groups(self):
        self.sync()
        st = self.mock.get("/__mock/state")
        locs = {l["id"] for l in st["locations"]}
        self.assertEqual(set(self.sink("orders")), {o["id"] for o in st["orders"]})
        bodies = self.bodies("/v2/orders/search")
        for b in bodies:
            self.assertLessEqual(len(b["location_ids"]), 10)
        probes = [b for b in bodies if b["limit"] == 1]
        walks = [b for b in bodies if b["limit"] != 1]
        # per stream: a probe per group for the newest order, then a walk per group up to it
        self.assertEqual(len(probes), 4)
        self.assertEqual(len(walks), 4)
        for b in probes:
            self.assertEqual(b["query"]["sort"]["sort_order"], "DESC")
        newest = max(us(o["updated_at"]) for o in st["orders"])
        for b in walks:
            self.assertEqual(b["query"]["filter"]["date_time_filter"]["updated_at"]["end_at"],
                             ms_text(newest + 1000))
        self.assertEqual({i for b in walks[:2] for i in b["location_ids"]}, locs)


if __name__ == "__main__":
    unittest.main()
