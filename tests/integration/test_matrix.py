"""Many clients in one pipeline file (DESIGN.md §4.1a), end to end with the
shopify plugin and tests/mock/shopify.py serving three shops: each client is
its own run with its own state keys (name@client), sink tables
(client_${matrix.client}_orders), checkpoints, counts and history; one
client's bad token fails that client only, named in the output, exit 1;
--client runs one; etl status shows each."""
import json
import os
import sqlite3
import unittest

from etltest import SOURCE, Workdir, query, run
from test_shopify import MOCK, MockServer, utc

SHOPS = ["acme", "bolt", "cora"]
TOKENS = {s: "shpat_%s_secret" % s for s in SHOPS}

PIPELINE = """version: 1
name: shops
matrix:
  - { client: acme, shop: acme, token: "${ACME_TOKEN}" }
  - { client: bolt, shop: bolt, token: "${BOLT_TOKEN}" }
  - { client: cora, shop: cora, token: "${CORA_TOKEN}" }
source: { plugin: shopify, shop: "${matrix.shop}", token: "${matrix.token}", base_url: "${SHOPIFY_BASE_URL}",
          leak_rate: "50" }
sink: { plugin: pgsqlite, url: "sqlite:var/shops.db" }
streams:
  - { name: orders, table: "client_${matrix.client}_orders" }
  - { name: customers, table: "client_${matrix.client}_customers" }
"""


class Matrix(Workdir):
    mock = None

    @classmethod
    def setUpClass(cls):
        args = ["--shops", ",".join(SHOPS), "--orders", "30", "--customers", "12", "--products", "6"]
        for s in SHOPS:
            args += ["--token", "%s=%s" % (s, TOKENS[s])]
        cls.mock = MockServer(MOCK, *args)

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def setUp(self):
        super().setUp()
        self.mock.call("POST", "/__mock/reset", {})
        self.mock.call("POST", "/__mock/shopify/config", {"leak": 50})
        self.write("shops.yaml", PIPELINE)
        self.db = self.path("var", "shops.db")
        self.state = self.path(".etl", "shops.state.db")
        # bolt's token is wrong: its shop refuses it
        self.env = {"ACME_TOKEN": TOKENS["acme"], "BOLT_TOKEN": "shpat_bolt_revoked",
                    "CORA_TOKEN": TOKENS["cora"], "SHOPIFY_BASE_URL": self.mock.base}

    def etl(self, *args, check):
        return run("run", self.path("shops.yaml"), *args, env=self.env, check=check)

    def shop(self, name):
        return self.mock.call("GET", "/__mock/state")["shops"][name]

    def tables(self):
        return {r[0] for r in query(self.db, "SELECT name FROM sqlite_master WHERE type='table'")}

    def assert_client_complete(self, client):
        shop = self.shop(client)
        c = sqlite3.connect(self.db)
        try:
            got = {i: json.loads(d) for i, d in c.execute(f'SELECT id, data FROM "client_{client}_orders"')}
            cust = {i for (i,) in c.execute(f'SELECT id FROM "client_{client}_customers"')}
        finally:
            c.close()
        self.assertEqual(got, {str(o["id"]): o for o in shop["orders"]})
        self.assertEqual(cust, {str(x["id"]) for x in shop["customers"]})

    def runs(self):
        return query(self.state, "SELECT id, pipeline, client, status, error FROM runs ORDER BY id")

    def test_three_clients_one_bad_token_the_others_complete(self):
        r = self.etl(check=1)  # the worst of the three
        out = r.out + r.err
        # the failing client is named, with why
        self.assertIn("shops@bolt run 2: failed", r.out)
        self.assertIn("shop bolt refused the access token", out)
        self.assertNotIn("shpat_bolt_revoked", out)
        self.assertIn("shops@acme run 1: ok", r.out)
        self.assertIn("shops@cora run 3: ok", r.out)  # ran after bolt failed
        self.assert_client_complete("acme")
        self.assert_client_complete("cora")
        self.assertTrue({"client_acme_orders", "client_cora_orders"} <= self.tables())
        self.assertFalse(any(t.startswith("client_bolt") and
                             query(self.db, f'SELECT count(*) FROM "{t}"')[0][0] for t in self.tables()))
        # history: one run per client, under its own key
        runs = self.runs()
        self.assertEqual([(p, c, s) for _, p, c, s, _ in runs],
                         [("shops", "acme", "ok"), ("shops", "bolt", "failed"), ("shops", "cora", "ok")])
        self.assertIn("refused the access token", runs[1][4])
        # own counts per client
        counts = {"shops@" + c: (s, rd, cr) for c, s, rd, cr in query(
            self.state, "SELECT r.client, s.stream, s.read, s.created FROM run_streams s "
                        "JOIN runs r ON r.id = s.run_id WHERE s.stream = 'orders'")}
        acme, cora = self.shop("acme"), self.shop("cora")
        self.assertEqual(counts["shops@acme"][1:], (len(acme["orders"]), len(acme["orders"])))
        self.assertEqual(counts["shops@cora"][1:], (len(cora["orders"]), len(cora["orders"])))
        self.assertEqual(counts["shops@bolt"][1:], (0, 0))
        # own checkpoints; none for the client that failed
        cks = {(p, s): c for p, s, c in query(self.state, "SELECT pipeline, stream, cursor FROM checkpoints")}
        self.assertEqual(set(cks), {("shops@acme", "orders"), ("shops@acme", "customers"),
                                    ("shops@cora", "orders"), ("shops@cora", "customers")})
        self.assertEqual(utc(cks[("shops@acme", "orders")]),
                         max(utc(o["updated_at"]) for o in acme["orders"]))
        self.assertEqual(utc(cks[("shops@cora", "orders")]),
                         max(utc(o["updated_at"]) for o in cora["orders"]))
        # each shop was asked with its own token only
        for rq in self.mock.requests():
            self.assertIn(rq["headers"]["x-shopify-access-token"],
                          (TOKENS["acme"], "shpat_bolt_revoked", TOKENS["cora"]))

        # status: one document per client
        st = json.loads(run("status", self.path("shops.yaml"), "--json", env=self.env, check=0).out)
        self.assertEqual([d["client"] for d in st], SHOPS)
        self.assertEqual([d["last_run"]["status"] for d in st], ["ok", "failed", "ok"])

    def test_client_runs_one_and_each_keeps_its_own_checkpoint(self):
        self.etl(check=1)
        cks = dict(((p, s), c) for p, s, c in query(self.state, "SELECT pipeline, stream, cursor FROM checkpoints"))
        # a change in acme only
        self.mock.call("POST", "/__mock/shopify/order", {"shop": "acme", "order": {}})
        self.mock.call("DELETE", "/__mock/requests")
        r = self.etl("--client", "acme", check=0)
        self.assertIn("shops@acme run 4: ok", r.out)
        self.assertNotIn("cora", r.out)
        self.assertNotIn("bolt", r.out)
        self.assertEqual({rq["headers"]["x-shopify-access-token"] for rq in self.mock.requests()},
                         {TOKENS["acme"]})
        self.assert_client_complete("acme")
        c2 = dict(((p, s), c) for p, s, c in query(self.state, "SELECT pipeline, stream, cursor FROM checkpoints"))
        self.assertGreater(utc(c2[("shops@acme", "orders")]), utc(cks[("shops@acme", "orders")]))
        self.assertEqual(c2[("shops@cora", "orders")], cks[("shops@cora", "orders")])
        (created,), = query(self.state, "SELECT created FROM run_streams WHERE run_id = 4 AND stream = 'orders'")
        self.assertEqual(created, 1)
        # the bad client alone fails alone
        r = self.etl("--client", "bolt", check=1)
        self.assertIn("shops@bolt run 5: failed", r.out)
        # fixed credentials: bolt completes too, into its own tables
        self.env["BOLT_TOKEN"] = TOKENS["bolt"]
        self.etl("--client", "bolt", check=0)
        self.assert_client_complete("bolt")
        self.assertEqual([c for _, _, c, _, _ in self.runs()], ["acme", "bolt", "cora", "acme", "bolt", "bolt"])
        # an unknown client is a usage error listing the clients
        r = self.etl("--client", "nope", check=2)
        self.assertIn("nope", r.err)
        self.assertIn("acme", r.err)

    def test_shipped_pipeline_runs_each_shop_and_an_unset_token_fails_that_shop_only(self):
        """pipelines/shopify.yaml as shipped: SQLite by default, one table set per client;
        its tokens use ${VAR:-} so an unset one fails that client alone (empty token)."""
        with open(os.path.join(SOURCE, "pipelines", "shopify.yaml")) as f:
            self.write("shopify.yaml", f.read())
        args = ["--shops", "acme-store,bolt-shop", "--orders", "12", "--products", "4", "--customers", "5",
                "--token", "acme-store=tok_a", "--token", "bolt-shop=tok_b"]
        m = MockServer(MOCK, *args)
        try:
            env = {"SHOPIFY_BASE_URL": m.base, "ACME_SHOPIFY_TOKEN": "tok_a", "SHOPIFY_LEAK_RATE": "20"}
            r = run("run", self.path("shopify.yaml"), env=env, check=1)
            self.assertIn("shopify@acme run 1: ok", r.out)
            self.assertIn("shopify@bolt run 2: failed", r.out)
            self.assertIn("option token is empty", r.out)
            env["BOLT_SHOPIFY_TOKEN"] = "tok_b"
            r = run("run", self.path("shopify.yaml"), env=env, check=0)
            db = self.path("var", "shopify.db")
            for client, shop in (("acme", "acme-store"), ("bolt", "bolt-shop")):
                data = m.call("GET", "/__mock/state")["shops"][shop]
                for stream in ("orders", "products", "customers", "locations", "inventory_levels"):
                    (n,), = query(db, f'SELECT count(*) FROM "client_{client}_{stream}"')
                    self.assertEqual(n, len(data[stream]), (client, stream))
                (n,), = query(db, f'SELECT count(*) FROM "client_{client}_order_line_items"')
                self.assertEqual(n, sum(len(o["line_items"]) for o in data["orders"]))
            self.assertIn("shopify@bolt run 4: ok", r.out)
        finally:
            m.stop()


class UnsetVariables(Matrix):
    """A client whose own ${VAR} is not set fails alone: the file still loads,
    the other clients run, and --client of another client does not need it."""

    def test_an_unset_variable_of_one_client_does_not_stop_the_others(self):
        env = dict(self.env)
        del env["BOLT_TOKEN"]
        r = run("run", self.path("shops.yaml"), env=env)
        self.assertEqual(r.code, 1, r)
        # bolt fails naming the place and the variable; acme and cora completed
        self.assertRegex(r.out + r.err, r"shops\.yaml:5:\d+: .*BOLT_TOKEN")
        for shop in ("acme", "cora"):
            self.assertIn(f"shops@{shop} run", r.out)
            n = query(self.db, f"SELECT count(*) FROM client_{shop}_orders")[0][0]
            self.assertEqual(n, 30, shop)
        self.assertEqual(query(self.db, "SELECT count(*) FROM sqlite_master"
                                        " WHERE name LIKE 'client_bolt_%'")[0][0], 0)

    def test_client_needs_only_its_own_variables(self):
        env = {"ACME_TOKEN": TOKENS["acme"], "SHOPIFY_BASE_URL": self.mock.base}
        r = run("check", self.path("shops.yaml"), "--client", "acme", env=env)
        self.assertEqual(r.code, 0, r)
        self.assertNotIn("BOLT_TOKEN", r.out + r.err)
        r = run("run", self.path("shops.yaml"), "--client", "acme", env=env)
        self.assertEqual(r.code, 0, r)
        # asking for the client that lacks its variable is a configuration error
        r = run("run", self.path("shops.yaml"), "--client", "bolt", env=env)
        self.assertEqual(r.code, 2, r)
        self.assertRegex(r.err, r"shops\.yaml:5:\d+: .*BOLT_TOKEN")
        # and so is checking the whole file
        r = run("check", self.path("shops.yaml"), env=env)
        self.assertEqual(r.code, 2, r)
        self.assertIn("BOLT_TOKEN", r.err)


if __name__ == "__main__":
    unittest.main()
