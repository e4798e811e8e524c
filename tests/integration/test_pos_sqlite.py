"""End to end on SQLite: pipelines/pos.yaml syncs the sample office database and
a terminal database both ways. The two hold the same rows (foreign keys
compared through the ids: the terminal keeps its own integer ids); a second
run writes nothing; changes made on either side between runs arrive exactly
once; deletes are detected on full runs; status and reset tell the truth."""
import json
import os
import shutil
import unittest

from etltest import (POS_TABLES, SOURCE, Workdir, execute, last_run_counts, make_pos_db, office_view,
                     query, run, sqlite_dicts, terminal_view)


class PosPipeline(Workdir):
    def setUp(self):
        super().setUp()
        self.office = self.pos_db(orders=300)
        self.terminal = self.path("var", "terminal.db")
        make_pos_db.terminal(self.terminal)
        shutil.copy(os.path.join(SOURCE, "pipelines", "pos.yaml"), self.path("pos.yaml"))
        self.pipeline = self.path("pos.yaml")
        self.state = self.path(".etl", "pos.state.db")

    def assert_same(self):
        office = office_view({t: sqlite_dicts(self.office, t) for t in POS_TABLES})
        term = terminal_view(self.terminal)
        for t in POS_TABLES:
            self.assertEqual(office[t], term[t], t)

    def counts(self):
        return last_run_counts(self.state, "pos")

    def test_first_run_copies_everything_and_second_writes_nothing(self):
        r = run("run", self.pipeline, check=0)
        self.assertIn("pos run 1: ok", r.out)
        self.assert_same()
        c = self.counts()
        self.assertEqual(c[("orders", "forward")]["created"], 300)
        # what the forward pass wrote is not sent back
        self.assertEqual(c[("orders", "reverse")]["created"], 0)
        self.assertEqual(c[("orders", "reverse")]["updated"], 0)
        # the terminal rows have their own ids and the office's in server_id
        local = query(self.terminal, "SELECT min(local_id), max(local_id), count(server_id) FROM orders")
        self.assertEqual(local, [(1, 300, 300)])

        run("run", self.pipeline, check=0)
        for (t, d), c in self.counts().items():
            self.assertEqual((c["created"], c["updated"], c["failed"]), (0, 0, 0), (t, d))
            # the overlap re-reads the boundary rows: they count as unchanged
            self.assertEqual(c["unchanged"], c["read"], (t, d))
        self.assert_same()

    def test_changes_on_either_side_arrive_exactly_once(self):
        run("run", self.pipeline, check=0)
        # the office: a new order with an item, a price change
        store, shift = query(self.office, "SELECT store_id, shift_id FROM orders LIMIT 1")[0]
        product = query(self.office, "SELECT id FROM products ORDER BY id LIMIT 1")[0][0]
        execute(self.office, "INSERT INTO orders VALUES ('11111111-1111-4111-8111-111111111111',"
                " ?, ?, 'R999999', 'Zed', 10.5, 0, 0, 0, 'completed', '2026-01-02 10:00:00',"
                " '2026-01-02 10:00:00', NULL)", store, shift)
        execute(self.office, "INSERT INTO order_items VALUES ('22222222-2222-4222-8222-222222222222',"
                " '11111111-1111-4111-8111-111111111111', ?, NULL, 1, 10.5, 10.5,"
                " '2026-01-02 10:00:00')", product)
        execute(self.office, "UPDATE products SET selling_price = 99.99, updated_at ="
                " '2026-01-02 11:00:00' WHERE id = ?", product)
        # the terminal: a new order born there (no server id yet) and a changed user
        t_store, t_shift = query(self.terminal, "SELECT store_id, shift_id FROM orders LIMIT 1")[0]
        execute(self.terminal, "INSERT INTO orders (store_id, shift_id, receipt_number, customer_name,"
                " total_amount, discount_amount, discount_percentage, delivery_cost, status, created_at,"
                " updated_at) VALUES (?, ?, 'T000001', 'Walk-in', '5.25', '0', '0', '0', 'completed',"
                " '2026-01-03 09:00:00', '2026-01-03 09:00:00')", t_store, t_shift)
        execute(self.terminal, "UPDATE users SET email = 'new@shop.example', updated_at ="
                " '2026-01-03 09:30:00' WHERE local_id = 1")
        run("run", self.pipeline, check=0)
        c = self.counts()
        self.assertEqual(c[("orders", "forward")]["created"], 1)
        self.assertEqual(c[("order_items", "forward")]["created"], 1)
        self.assertEqual(c[("products", "forward")]["updated"], 1)
        self.assertEqual(c[("orders", "reverse")]["created"], 1)
        self.assertEqual(c[("users", "reverse")]["updated"], 1)
        for key in [("orders", "forward"), ("orders", "reverse"), ("users", "forward")]:
            self.assertEqual(c[key]["updated"] + c[key]["created"],
                             {("orders", "forward"): 1, ("orders", "reverse"): 1,
                              ("users", "forward"): 0}[key], key)
        # the terminal's new order got a server id, and the office has it under that id
        sid = query(self.terminal, "SELECT server_id FROM orders WHERE receipt_number='T000001'")[0][0]
        self.assertEqual(len(sid), 36)
        self.assertEqual(query(self.office, "SELECT customer_name FROM orders WHERE id=?", sid),
                         [("Walk-in",)])
        self.assert_same()
        run("run", self.pipeline, check=0)
        self.assertEqual(sum(x["created"] + x["updated"] for x in self.counts().values()), 0)

    def test_full_run_with_deletes_removes_what_the_office_lost(self):
        with open(self.pipeline) as f:
            text = f.read()
        text = text.replace("  - name: suppliers\n", "  - name: suppliers\n    deletes: hard\n")
        text = text.replace("  - name: payments\n",
                            "  - name: payments\n    deletes: { mode: soft, column: deleted_at }\n")
        self.write("pos.yaml", text)
        execute(self.terminal, "ALTER TABLE payments ADD COLUMN deleted_at TEXT")
        run("run", self.pipeline, check=0)
        sup = query(self.office, "SELECT id FROM suppliers ORDER BY id LIMIT 1")[0][0]
        execute(self.office, "UPDATE products SET supplier_id = NULL, updated_at ="
                " '2026-02-01 00:00:00' WHERE supplier_id = ?", sup)
        execute(self.office, "DELETE FROM suppliers WHERE id = ?", sup)
        pay = query(self.office, "SELECT id FROM payments ORDER BY id LIMIT 1")[0][0]
        execute(self.office, "DELETE FROM payments WHERE id = ?", pay)
        # incremental runs cannot see deletes
        run("run", self.pipeline, check=0)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM suppliers WHERE server_id=?", sup),
                         [(1,)])
        r = run("run", self.pipeline, "--full", "--direction", "forward", check=0)
        c = self.counts()
        self.assertEqual(c[("suppliers", "forward")]["deleted"], 1, r)
        self.assertEqual(c[("payments", "forward")]["deleted"], 1, r)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM suppliers WHERE server_id=?", sup),
                         [(0,)])
        soft = query(self.terminal, "SELECT deleted_at FROM payments WHERE server_id=?", pay)
        self.assertEqual(len(soft), 1)
        self.assertIsNotNone(soft[0][0])
        # a second full run deletes nothing more
        run("run", self.pipeline, "--full", "--direction", "forward", check=0)
        c = self.counts()
        self.assertEqual(c[("suppliers", "forward")]["deleted"], 0)
        self.assertEqual(c[("payments", "forward")]["deleted"], 0)

    def test_window_reads_only_recent_rows(self):
        execute(self.office, "UPDATE orders SET updated_at = '2020-01-01 00:00:00'")
        execute(self.office, "UPDATE orders SET updated_at = strftime('%Y-%m-%d %H:%M:%S', 'now',"
                " '-1 day') WHERE rowid IN (SELECT rowid FROM orders LIMIT 7)")
        run("run", self.pipeline, "--stream", "stores,shifts,terminals,users", check=0)
        run("run", self.pipeline, "--stream", "orders", "--window", "30d", "--direction", "forward",
            check=0)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM orders"), [(7,)])

    def test_dry_run_commits_nothing(self):
        r = run("run", self.pipeline, "--dry-run", check=0)
        self.assertIn("created", r.out)
        for t in POS_TABLES:
            self.assertEqual(query(self.terminal, f"SELECT count(*) FROM {t}"), [(0,)], t)
        # no state store, lock file or lease: nothing to find afterwards
        self.assertFalse(os.path.exists(self.path(".etl")) and os.listdir(self.path(".etl")))
        # into a terminal database that does not have the tables yet: it
        # counts what it would create and leaves the file without tables
        fresh = self.path("var", "fresh.db")
        execute(fresh, "CREATE TABLE keep_me (x INTEGER)")
        r = run("run", self.pipeline, "--dry-run", "--direction", "forward",
                env={"TERMINAL_URL": "sqlite:" + fresh}, check=0)
        self.assertIn("pos: ok", r.out)
        self.assertRegex(r.out, r"stores +forward +3 +3 ")
        self.assertEqual(query(fresh, "SELECT name FROM sqlite_master WHERE type='table'"),
                         [("keep_me",)])
        self.assertIn("dry run: a temporary table orders", r.err)
        self.assertFalse(os.path.exists(self.path(".etl")) and os.listdir(self.path(".etl")))
        # a real run afterwards starts from nothing: it creates every row
        run("run", self.pipeline, "--direction", "forward", check=0)
        self.assertEqual(self.counts()[("orders", "forward")]["created"], 300)

    def test_status_and_reset(self):
        run("run", self.pipeline, check=0)
        doc = self.status(self.pipeline)
        self.assertEqual(doc["pipeline"], "pos")
        self.assertEqual(doc["last_run"]["status"], "ok")
        fwd = [s["stream"] for s in doc["streams"] if s["direction"] == "forward"]
        self.assertEqual(fwd, POS_TABLES)
        orders = [s for s in doc["streams"] if s["stream"] == "orders" and s["direction"] == "forward"][0]
        self.assertEqual(orders["cursor"][:19].replace("T", " "),
                         query(self.office, "SELECT max(updated_at) FROM orders")[0][0])
        self.assertEqual(orders["created"], 300)
        text = run("status", self.pipeline, check=0).out
        self.assertIn("orders", text)
        self.assertIn("last run 1: ok", text)

        run("reset", self.pipeline, "--stream", "orders", check=0)
        doc = self.status(self.pipeline)
        orders = [s for s in doc["streams"] if s["stream"] == "orders" and s["direction"] == "forward"][0]
        self.assertIsNone(orders["cursor"])
        # a reset stream reads everything again and, its ledger forgotten,
        # counts it as created; the terminal already had every row: no duplicate
        run("run", self.pipeline, "--stream", "orders", "--direction", "forward", check=0)
        c = self.counts()[("orders", "forward")]
        self.assertEqual((c["read"], c["created"], c["updated"]), (300, 300, 0))
        self.assertEqual(query(self.terminal, "SELECT count(*), count(DISTINCT server_id) FROM orders"),
                         [(300, 300)])
        r = run("reset", self.pipeline, "--stream", "nope", check=2)
        self.assertIn("unknown stream 'nope'", r.err)

    def test_reset_waits_for_no_run(self):
        """A reset while a run holds the pipeline's lock is refused: it would
        pull the ledger and checkpoints from under the run."""
        import fcntl
        run("run", self.pipeline, check=0)
        before = query(self.state, "SELECT count(*) FROM ledger")
        with open(self.path(".etl", "pos.lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running `etl run` holds
            r = run("reset", self.pipeline, check=1)
            self.assertIn("reset pos: pipeline pos is already running", r.err)
            self.assertEqual(query(self.state, "SELECT count(*) FROM ledger"), before)
        run("reset", self.pipeline, check=0)
        self.assertEqual(query(self.state, "SELECT count(*) FROM ledger"), [(0,)])
        self.assertEqual(query(self.state, "SELECT count(*) FROM checkpoints WHERE cursor IS NOT NULL"),
                         [(0,)])

    def test_logs_go_to_files_with_the_run(self):
        run("run", self.pipeline, check=0)
        logs = os.listdir(self.path("var", "logs"))
        self.assertEqual(len(logs), 1)
        with open(self.path("var", "logs", logs[0])) as f:
            self.assertIn("orders", f.read())
        run("--log-format", "json", "run", self.pipeline, check=0)
        self.assertEqual(len(os.listdir(self.path("var", "logs"))), 2)

    def test_json_log_lines(self):
        r = run("--log-format", "json", "run", self.pipeline, check=0)
        lines = [json.loads(x) for x in r.err.splitlines() if x.strip()]
        self.assertTrue(lines)
        self.assertTrue(all({"time", "level", "msg"} <= set(x) for x in lines))
        self.assertTrue(any(x.get("stream") == "orders" for x in lines))

    def test_quiet_and_exit_codes(self):
        r = run("-q", "run", self.pipeline, check=0)
        self.assertEqual(r.out, "")
        self.assertEqual(r.err, "")
        r = run("run", self.path("missing.yaml"), check=2)
        self.assertIn("missing.yaml", r.err)
        r = run("run", self.pipeline, "--direction", "sideways", check=2)
        self.assertIn("--direction", r.err)
        r = run("run", self.pipeline, "--stream", "orderz", check=2)
        self.assertIn("unknown stream 'orderz'", r.err)
        r = run("frobnicate", check=2)
        self.assertIn("unknown command", r.err)

    def test_source_missing_is_a_run_failure_naming_it(self):
        os.remove(self.office)
        r = run("run", self.pipeline, check=1)
        self.assertIn("office.db", r.out + r.err)


if __name__ == "__main__":
    unittest.main()
