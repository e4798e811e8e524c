"""End to end on SQLite: pipelines/pos.yaml copies the sample POS database into
a replica; the replica equals the source row for row; a second run writes
nothing; changes made between runs arrive exactly once; deletes are detected
on full runs; status and reset tell the truth."""
import os
import shutil
import unittest

from etltest import POS_TABLES, SOURCE, Workdir, execute, last_run_counts, query, rows, run


class PosPipeline(Workdir):
    def setUp(self):
        super().setUp()
        self.office = self.pos_db(orders=300)
        shutil.copy(os.path.join(SOURCE, "pipelines", "pos.yaml"), self.path("pos.yaml"))
        self.pipeline = self.path("pos.yaml")
        self.terminal = self.path("var", "terminal.db")
        self.state = self.path(".etl", "pos.state.db")

    def assert_replica_equal(self):
        for t in POS_TABLES:
            self.assertEqual(rows(self.office, t, "id"), rows(self.terminal, t, "id"), t)

    def test_first_run_copies_everything_and_second_writes_nothing(self):
        r = run("run", self.pipeline, check=0)
        self.assertIn("pos run 1: ok", r.out)
        self.assert_replica_equal()
        counts = last_run_counts(self.state, "pos")
        n_orders = query(self.office, "SELECT count(*) FROM orders")[0][0]
        self.assertEqual(counts[("orders", "forward")]["created"], n_orders)
        self.assertEqual(counts[("orders", "forward")]["status"], "ok")

        run("run", self.pipeline, check=0)
        counts = last_run_counts(self.state, "pos")
        for t in POS_TABLES:
            c = counts[(t, "forward")]
            self.assertEqual((c["created"], c["updated"], c["failed"]), (0, 0, 0), t)
            # the overlap re-reads the boundary rows: they count as unchanged
            self.assertGreaterEqual(c["read"], 1, t)
            self.assertEqual(c["unchanged"], c["read"], t)
        self.assert_replica_equal()

    def test_changes_between_runs_arrive_exactly_once(self):
        run("run", self.pipeline, check=0)
        # an insert, an update and a changed child, all later than the checkpoint
        store = query(self.office, "SELECT id FROM stores LIMIT 1")[0][0]
        shift = query(self.office, "SELECT id FROM shifts LIMIT 1")[0][0]
        execute(self.office, "INSERT INTO orders VALUES ('new-order', ?, ?, 'R999999', 'Zed',"
                " 10.5, 0, 0, 0, 'completed', '2026-01-02 10:00:00', '2026-01-02 10:00:00')",
                store, shift)
        victim = query(self.office, "SELECT id FROM products ORDER BY id LIMIT 1")[0][0]
        execute(self.office, "UPDATE products SET selling_price = 99.99, updated_at ="
                " '2026-01-02 11:00:00' WHERE id = ?", victim)
        run("run", self.pipeline, check=0)
        counts = last_run_counts(self.state, "pos")
        self.assertEqual(counts[("orders", "forward")]["created"], 1)
        self.assertEqual(counts[("orders", "forward")]["updated"], 0)
        self.assertEqual(counts[("products", "forward")]["updated"], 1)
        self.assertEqual(counts[("products", "forward")]["created"], 0)
        self.assert_replica_equal()
        # and a third run sees none of it again
        run("run", self.pipeline, check=0)
        counts = last_run_counts(self.state, "pos")
        self.assertEqual(sum(c["created"] + c["updated"] for c in counts.values()), 0)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM orders WHERE id='new-order'"),
                         [(1,)])

    def test_full_run_with_deletes_removes_what_the_source_lost(self):
        with open(self.pipeline) as f:
            text = f.read()
        text = text.replace("  - name: suppliers\n",
                            "  - name: suppliers\n    deletes: hard\n")
        text = text.replace("  - name: payments\n",
                            "  - name: payments\n    deletes: { mode: soft, column: deleted_at }\n")
        self.write("pos.yaml", text)
        run("run", self.pipeline, check=0)
        sup = query(self.office, "SELECT id FROM suppliers ORDER BY id LIMIT 1")[0][0]
        execute(self.office, "UPDATE products SET supplier_id = NULL WHERE supplier_id = ?", sup)
        execute(self.office, "DELETE FROM suppliers WHERE id = ?", sup)
        pay = query(self.office, "SELECT id FROM payments ORDER BY id LIMIT 1")[0][0]
        execute(self.office, "DELETE FROM payments WHERE id = ?", pay)
        # incremental runs cannot see deletes
        run("run", self.pipeline, check=0)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM suppliers WHERE id=?", sup),
                         [(1,)])
        r = run("run", self.pipeline, "--full", check=0)
        counts = last_run_counts(self.state, "pos")
        self.assertEqual(counts[("suppliers", "forward")]["deleted"], 1, r)
        self.assertEqual(counts[("payments", "forward")]["deleted"], 1, r)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM suppliers WHERE id=?", sup),
                         [(0,)])
        soft = query(self.terminal, "SELECT deleted_at FROM payments WHERE id=?", pay)
        self.assertEqual(len(soft), 1)
        self.assertIsNotNone(soft[0][0])
        live = query(self.terminal, "SELECT count(*) FROM payments WHERE deleted_at IS NULL")[0][0]
        self.assertEqual(live, query(self.office, "SELECT count(*) FROM payments")[0][0])
        # a second full run deletes nothing more
        run("run", self.pipeline, "--full", check=0)
        counts = last_run_counts(self.state, "pos")
        self.assertEqual(counts[("suppliers", "forward")]["deleted"], 0)
        self.assertEqual(counts[("payments", "forward")]["deleted"], 0)

    def test_window_reads_only_recent_rows(self):
        execute(self.office, "UPDATE orders SET updated_at = '2020-01-01 00:00:00'")
        execute(self.office, "UPDATE orders SET updated_at = strftime('%Y-%m-%d %H:%M:%S', 'now',"
                " '-1 day') WHERE rowid IN (SELECT rowid FROM orders LIMIT 7)")
        run("run", self.pipeline, "--stream", "stores,shifts,terminals,users", check=0)
        run("run", self.pipeline, "--stream", "orders", "--window", "30d", check=0)
        self.assertEqual(query(self.terminal, "SELECT count(*) FROM orders"), [(7,)])

    def test_dry_run_commits_nothing(self):
        r = run("run", self.pipeline, "--dry-run", check=0)
        self.assertIn("created", r.out)
        for t in POS_TABLES:
            n = query(self.terminal, f"SELECT count(*) FROM sqlite_master WHERE name='{t}'")[0][0]
            if n:
                self.assertEqual(query(self.terminal, f"SELECT count(*) FROM {t}"), [(0,)], t)
        self.assertFalse(os.path.exists(self.state) and
                         query(self.state, "SELECT count(*) FROM runs")[0][0])

    def test_status_and_reset(self):
        run("run", self.pipeline, check=0)
        doc = self.status(self.pipeline)
        self.assertEqual(doc["pipeline"], "pos")
        self.assertEqual(doc["last_run"]["status"], "ok")
        names = [s["stream"] for s in doc["streams"]]
        self.assertEqual(names, POS_TABLES)
        orders = [s for s in doc["streams"] if s["stream"] == "orders"][0]
        self.assertEqual(orders["cursor"], query(self.office, "SELECT max(updated_at) FROM orders")[0][0])
        self.assertEqual(orders["created"], 300)
        text = run("status", self.pipeline, check=0).out
        self.assertIn("orders", text)
        self.assertIn("last run 1: ok", text)

        run("reset", self.pipeline, "--stream", "orders", check=0)
        doc = self.status(self.pipeline)
        orders = [s for s in doc["streams"] if s["stream"] == "orders"][0]
        self.assertIsNone(orders["cursor"])
        # a reset stream reads everything again and, its ledger forgotten,
        # counts it as created; the sink already had every row: no duplicate
        run("run", self.pipeline, "--stream", "orders", check=0)
        c = last_run_counts(self.state, "pos")[("orders", "forward")]
        self.assertEqual((c["read"], c["created"], c["updated"], c["unchanged"]), (300, 300, 0, 0))
        self.assertEqual(query(self.terminal, "SELECT count(*), count(DISTINCT id) FROM orders"),
                         [(300, 300)])
        run("run", self.pipeline, "--stream", "orders", check=0)
        c = last_run_counts(self.state, "pos")[("orders", "forward")]
        self.assertEqual((c["created"], c["updated"]), (0, 0))
        r = run("reset", self.pipeline, "--stream", "nope", check=2)
        self.assertIn("unknown stream 'nope'", r.err)

    def test_logs_go_to_files_with_the_run(self):
        run("run", self.pipeline, check=0)
        logs = os.listdir(self.path("var", "logs"))
        self.assertEqual(len(logs), 1)
        with open(self.path("var", "logs", logs[0])) as f:
            text = f.read()
        self.assertIn("orders", text)
        run("--log-format", "json", "run", self.pipeline, check=0)
        self.assertEqual(len(os.listdir(self.path("var", "logs"))), 2)

    def test_json_log_lines(self):
        r = run("--log-format", "json", "run", self.pipeline, check=0)
        import json
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
