"""pipelines/pos.yaml against a real PostgreSQL office (started by the test):
the two-way POS scenario, conflicts in both directions, local-only columns,
deferral of children whose parent has not arrived, and Lua conflict resolution."""
import itertools
import os
import shutil
import unittest

import pgserver
from etltest import (POS_TABLES, SOURCE, Workdir, execute, last_run_counts, make_pos_db, office_view,
                     query, run, terminal_view)

_ids = itertools.count(1)

SEED = """version: 1
name: seed
source: {{plugin: pgsqlite, url: "sqlite:seed.db"}}
sink: {{plugin: pgsqlite, url: "{url}", create: false}}
streams:
""" + "".join(f"  - name: {t}\n" for t in POS_TABLES)


def setUpModule():
    pgserver.shared()


def tearDownModule():
    pgserver.stop_shared()


class PgPos(Workdir):
    def setUp(self):
        super().setUp()
        self.pg = pgserver.shared()
        self.db = f"office{next(_ids)}"
        self.url = self.pg.createdb(self.db)
        self.pg.psql_file(os.path.join(SOURCE, "pipelines", "sample", "office_pg.sql"), self.db)
        make_pos_db.build(self.path("seed.db"), 120, 11)
        self.write("seed.yaml", SEED.format(url=self.url))
        run("-q", "run", self.path("seed.yaml"), check=0)
        self.terminal = self.path("var", "terminal.db")
        make_pos_db.terminal(self.terminal)
        shutil.copy(os.path.join(SOURCE, "pipelines", "pos.yaml"), self.path("pos.yaml"))
        self.pipeline = self.path("pos.yaml")
        self.state = self.path(".etl", "pos.state.db")
        self.env = {"OFFICE_URL": self.url}

    def run_pos(self, *args, check=0):
        return run("run", self.pipeline, *args, env=self.env, check=check)

    def office(self, table):
        return self.pg.dicts(f"SELECT * FROM {table}", self.db)

    def assert_same(self):
        office = office_view({t: self.office(t) for t in POS_TABLES})
        term = terminal_view(self.terminal)
        for t in POS_TABLES:
            self.assertEqual(office[t], term[t], t)

    def counts(self):
        return last_run_counts(self.state, "pos")

    def sql(self, q):
        return self.pg.psql(q, self.db)

    def test_two_way_scenario(self):
        r = self.run_pos()
        self.assertIn("pos run 1: ok", r.out)
        self.assert_same()
        # exact values crossed: numeric text, timestamps to the second, UUIDs
        p = self.office("products")[0]
        t = query(self.terminal, "SELECT selling_price, stock_quantity FROM products WHERE server_id=?",
                  p["id"])
        self.assertEqual(t, [(p["selling_price"], int(p["master_stock_quantity"]))])
        self.run_pos()
        self.assertEqual(sum(c["created"] + c["updated"] for c in self.counts().values()), 0)

        # the office: a new product, an updated order, a soft-deleted order
        store, supplier = self.sql("SELECT store_id, supplier_id FROM products LIMIT 1")[0]
        self.sql(f"INSERT INTO products (id, store_id, supplier_id, name, selling_price, updated_at)"
                 f" VALUES ('aaaaaaaa-0000-4000-8000-000000000001', '{store}', '{supplier}',"
                 f" 'New Shoe', 49.90, now())")
        o1, o2 = [x[0] for x in self.sql("SELECT id FROM orders ORDER BY id LIMIT 2")]
        self.sql(f"UPDATE orders SET customer_name = 'Changed', updated_at = now() WHERE id = '{o1}'")
        self.sql(f"UPDATE orders SET deleted_at = now(), updated_at = now() WHERE id = '{o2}'")
        # the terminal: a new order with an item and a payment, a changed user
        t_store, t_shift = query(self.terminal, "SELECT store_id, shift_id FROM orders LIMIT 1")[0]
        t_prod = query(self.terminal, "SELECT local_id FROM products LIMIT 1")[0][0]
        execute(self.terminal, "INSERT INTO orders (store_id, shift_id, receipt_number, total_amount,"
                " discount_amount, discount_percentage, delivery_cost, status, created_at, updated_at)"
                " VALUES (?, ?, 'T1', '12.30', '0', '0', '0', 'completed', '2026-06-01T10:00:00Z',"
                " '2026-06-01T10:00:00Z')", t_store, t_shift)
        new_order = query(self.terminal, "SELECT local_id FROM orders WHERE receipt_number='T1'")[0][0]
        execute(self.terminal, "INSERT INTO order_items (order_id, product_id, quantity, unit_price,"
                " total_price, updated_at) VALUES (?, ?, 1, '12.30', '12.30', '2026-06-01T10:00:00Z')",
                new_order, t_prod)
        execute(self.terminal, "INSERT INTO payments (order_id, amount, method, payment_date, updated_at)"
                " VALUES (?, '12.30', 'card', '2026-06-01T10:00:00Z', '2026-06-01T10:00:00Z')", new_order)
        execute(self.terminal, "UPDATE users SET name = 'Renamed', updated_at = '2026-06-01T11:00:00Z'"
                " WHERE local_id = 2")
        self.run_pos()
        c = self.counts()
        self.assertEqual(c[("products", "forward")]["created"], 1)
        self.assertEqual(c[("orders", "forward")]["updated"], 2)
        self.assertEqual(c[("orders", "reverse")]["created"], 1)
        self.assertEqual(c[("order_items", "reverse")]["created"], 1)
        self.assertEqual(c[("payments", "reverse")]["created"], 1)
        self.assertEqual(c[("users", "reverse")]["updated"], 1)
        self.assert_same()
        # the terminal learned the ids the office now uses for its rows
        sid = query(self.terminal, "SELECT server_id FROM orders WHERE receipt_number='T1'")[0][0]
        self.assertEqual(self.sql(f"SELECT total_amount FROM orders WHERE id = '{sid}'"), [["12.30"]])
        self.assertEqual(self.sql(f"SELECT count(*) FROM payments WHERE order_id = '{sid}'"), [["1"]])
        # the soft delete crossed as the column it is
        self.assertIsNotNone(query(self.terminal, "SELECT deleted_at FROM orders WHERE server_id=?", o2)[0][0])
        # and nothing moves any more
        self.run_pos()
        self.assertEqual(sum(c["created"] + c["updated"] for c in self.counts().values()), 0)
        self.assert_same()

    def conflict(self, office_time, terminal_time):
        """Changes one order on both sides with these update times; returns
        (office name, terminal name) after a both run."""
        self.run_pos()
        oid = self.sql("SELECT id FROM orders ORDER BY id LIMIT 1")[0][0]
        self.sql(f"UPDATE orders SET customer_name = 'office', updated_at = '{office_time}'"
                 f" WHERE id = '{oid}'")
        execute(self.terminal, "UPDATE orders SET customer_name = 'terminal', updated_at = ?"
                " WHERE server_id = ?", terminal_time, oid)
        self.run_pos()
        o = self.sql(f"SELECT customer_name FROM orders WHERE id = '{oid}'")[0][0]
        t = query(self.terminal, "SELECT customer_name FROM orders WHERE server_id = ?", oid)[0][0]
        return o, t

    def test_conflict_newer_office_wins(self):
        self.assertEqual(self.conflict("2026-07-01 12:00:00+00", "2026-07-01T11:00:00Z"),
                         ("office", "office"))
        self.assert_same()

    def test_conflict_newer_terminal_wins(self):
        self.assertEqual(self.conflict("2026-07-01 11:00:00+00", "2026-07-01T12:00:00Z"),
                         ("terminal", "terminal"))
        self.assert_same()

    def test_conflict_tie_keeps_the_sink_end(self):
        self.assertEqual(self.conflict("2026-07-01 12:00:00+00", "2026-07-01T12:00:00Z"),
                         ("terminal", "terminal"))
        self.assert_same()

    def test_conflict_source_and_sink_rules(self):
        with open(self.pipeline) as f:
            text = f.read()
        self.write("pos.yaml", text.replace("conflict: newer", "conflict: source"))
        self.assertEqual(self.conflict("2026-07-01 11:00:00+00", "2026-07-01T12:00:00Z"),
                         ("office", "office"))
        self.write("pos.yaml", text.replace("conflict: newer", "conflict: sink"))
        self.assertEqual(self.conflict("2026-07-02 12:00:00+00", "2026-07-02T11:00:00Z"),
                         ("terminal", "terminal"))

    def test_conflict_lua_resolver(self):
        with open(self.pipeline) as f:
            text = f.read()
        text = text.replace("  - name: orders\n", "  - name: orders\n    conflict: lua\n"
                            "    resolve: |\n"
                            "      incoming.customer_name = existing.customer_name .. '+' ..\n"
                            "                               incoming.customer_name\n"
                            "      return incoming\n")
        self.write("pos.yaml", text)
        o, t = self.conflict("2026-07-01 12:00:00+00", "2026-07-01T11:00:00Z")
        # forward first: the office row met the terminal's; then the merged row went back
        self.assertEqual(t, "terminal+office")
        self.assertEqual(o, "terminal+office")

    def test_local_only_never_sent_never_overwritten(self):
        self.sql("ALTER TABLE stores ADD COLUMN sync_status text")
        self.run_pos()
        execute(self.terminal, "UPDATE stores SET sync_status = 'synced'")
        sid = query(self.terminal, "SELECT server_id FROM stores WHERE local_id = 1")[0][0]
        self.sql(f"UPDATE stores SET name = 'Renamed', sync_status = 'office says',"
                 f" updated_at = now() WHERE id = '{sid}'")
        execute(self.terminal, "UPDATE stores SET address = 'Local St', updated_at ="
                " '2030-01-01T00:00:00Z' WHERE local_id = 2")
        self.run_pos()
        # down: the office's change arrived, the terminal's own column stayed
        self.assertEqual(query(self.terminal, "SELECT name, sync_status FROM stores WHERE local_id = 1"),
                         [("Renamed", "synced")])
        # up: the terminal's change arrived, its sync_status never did
        sid2 = query(self.terminal, "SELECT server_id FROM stores WHERE local_id = 2")[0][0]
        self.assertEqual(self.sql(f"SELECT address, coalesce(sync_status, '-') FROM stores"
                                  f" WHERE id = '{sid2}'"), [["Local St", "-"]])

    def test_children_wait_for_their_parent(self):
        self.run_pos()
        store, shift = self.sql("SELECT store_id, shift_id FROM orders LIMIT 1")[0]
        product = self.sql("SELECT id FROM products LIMIT 1")[0][0]
        oid = "bbbbbbbb-0000-4000-8000-000000000001"
        self.sql(f"INSERT INTO orders (id, store_id, shift_id, receipt_number, total_amount, status,"
                 f" created_at, updated_at) VALUES ('{oid}', '{store}', '{shift}', 'X1', 5, 'completed',"
                 f" now(), now())")
        self.sql(f"INSERT INTO order_items (id, order_id, product_id, quantity, unit_price, total_price,"
                 f" updated_at) VALUES ('bbbbbbbb-0000-4000-8000-000000000002', '{oid}', '{product}',"
                 f" 1, 5, 5, now())")
        # only the items: their order has not reached the terminal
        self.run_pos("--stream", "order_items", "--direction", "forward")
        c = self.counts()[("order_items", "forward")]
        self.assertEqual((c["created"], c["deferred"]), (0, 1))
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM order_items WHERE server_id ="
                               " 'bbbbbbbb-0000-4000-8000-000000000002'"), [(0,)])
        status = run("status", self.pipeline, env=self.env, check=0).out
        self.assertIn(f"order_id->orders[{oid}]", status)
        doc = self.status(self.pipeline)
        self.assertEqual(doc["deferred"][0]["reason"], f"order_id->orders[{oid}]")
        # the parent arrives; the deferred child is retried and written once
        self.run_pos("--direction", "forward")
        c = self.counts()[("order_items", "forward")]
        self.assertEqual(c["created"], 1)
        got = query(self.terminal, "SELECT o.server_id FROM order_items i JOIN orders o ON"
                    " o.local_id = i.order_id WHERE i.server_id = 'bbbbbbbb-0000-4000-8000-000000000002'")
        self.assertEqual(got, [(oid,)])
        self.assertEqual(self.status(self.pipeline)["deferred"], [])
        self.run_pos()
        self.assert_same()


if __name__ == "__main__":
    unittest.main()
