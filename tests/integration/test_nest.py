"""nest: child rows embedded as arrays in their parent's document, renamed and
trimmed as the pipeline says; a family is unchanged until the parent or any of
its children changes; children are not synced on their own."""
import json
import unittest

from etltest import Workdir, execute, last_run_counts, make_pos_db, query, run

PIPELINE = """version: 1
name: n
source: {plugin: pgsqlite, url: "sqlite:office.db"}
sink: {plugin: pgsqlite, url: "sqlite:docs.db"}
streams:
  - name: orders
    rename: { id: local_receipt_id }
    exclude: [store_id, shift_id]
    nest:
      sales:    { stream: order_items, fk: order_id, rename: { id: local_sale_id }, exclude: [updated_at] }
      payments: { stream: payments, fk: order_id, rename: { id: local_payment_id } }
  - name: order_items
  - name: payments
"""


class Nest(Workdir):
    def setUp(self):
        super().setUp()
        make_pos_db.build(self.path("office.db"), 40, 5)
        self.write("n.yaml", PIPELINE)
        self.state = self.path(".etl", "n.state.db")

    def docs(self):
        out = {}
        for rid, sales, pays in query(self.path("docs.db"),
                                      "SELECT local_receipt_id, sales, payments FROM orders"):
            out[rid] = (json.loads(sales), json.loads(pays))
        return out

    def counts(self):
        return last_run_counts(self.state, "n")[("orders", "forward")]

    def test_documents_carry_their_children(self):
        run("run", self.path("n.yaml"), check=0)
        docs = self.docs()
        self.assertEqual(len(docs), 40)
        items = query(self.path("office.db"), "SELECT order_id, id, quantity, unit_price FROM order_items")
        pays = query(self.path("office.db"), "SELECT order_id, id, amount, method FROM payments")
        for oid, iid, qty, price in items:
            sale = [s for s in docs[oid][0] if s["local_sale_id"] == iid]
            self.assertEqual(len(sale), 1)
            self.assertEqual((sale[0]["quantity"], sale[0]["unit_price"]), (qty, price))
            self.assertNotIn("updated_at", sale[0])
            self.assertNotIn("id", sale[0])
        self.assertEqual(sum(len(d[0]) for d in docs.values()), len(items))
        for oid, pid, amount, method in pays:
            self.assertEqual([(p["local_payment_id"], p["amount"], p["method"]) for p in docs[oid][1]],
                             [(pid, amount, method)])
        # the children were not synced on their own, the excluded columns stayed home
        tables = [t for (t,) in query(self.path("docs.db"), "SELECT name FROM sqlite_master WHERE type='table'")]
        self.assertEqual(tables, ["orders"])
        cols = [c for (c,) in query(self.path("docs.db"), "SELECT name FROM pragma_table_info('orders')")]
        self.assertNotIn("store_id", cols)

    def test_a_family_changes_with_any_of_its_members(self):
        run("run", self.path("n.yaml"), check=0)
        run("run", self.path("n.yaml"), check=0)
        c = self.counts()
        self.assertEqual((c["created"], c["updated"], c["unchanged"]), (0, 0, 40))
        oid = query(self.path("office.db"), "SELECT order_id FROM payments ORDER BY id LIMIT 1")[0][0]
        execute(self.path("office.db"), "UPDATE payments SET method = 'voucher' WHERE order_id = ?", oid)
        run("run", self.path("n.yaml"), check=0)
        self.assertEqual((self.counts()["updated"], self.counts()["unchanged"]), (1, 39))
        self.assertEqual(self.docs()[oid][1][0]["method"], "voucher")
        # a new child of another order
        other, prod = query(self.path("office.db"), "SELECT order_id, product_id FROM order_items"
                            " WHERE order_id <> ? LIMIT 1", oid)[0]
        execute(self.path("office.db"), "INSERT INTO order_items VALUES ('new-sale', ?, ?, NULL, 2, 1.5,"
                " 3.0, '2026-01-01 00:00:00')", other, prod)
        run("run", self.path("n.yaml"), check=0)
        self.assertEqual(self.counts()["updated"], 1)
        self.assertIn("new-sale", [s["local_sale_id"] for s in self.docs()[other][0]])
        run("run", self.path("n.yaml"), check=0)
        self.assertEqual(self.counts()["updated"], 0)


if __name__ == "__main__":
    unittest.main()
