"""The dedup stage: the last record of a key in a batch wins; the ledger
decides created / updated / unchanged; a changed cursor with identical content
is unchanged; overlap re-reads are unchanged; write modes insert, append and
replace; the state store and the sink in one database commit together."""
import os
import sqlite3
import threading
import time
import unittest

from etltest import Workdir, execute, last_run_counts, query, rows, run

SRC = """
CREATE TABLE events (code TEXT, val TEXT, updated_at TEXT);
INSERT INTO events VALUES ('A', 'first',  '2025-01-01 10:00:00');
INSERT INTO events VALUES ('B', 'only',   '2025-01-01 10:00:01');
INSERT INTO events VALUES ('A', 'second', '2025-01-01 10:00:02');
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, updated_at TEXT);
"""


def pipeline(streams, extra=""):
    return f"""version: 1
name: d
source: {{plugin: pgsqlite, url: "sqlite:src.db"}}
sink: {{plugin: pgsqlite, url: "sqlite:dst.db"}}
{extra}
streams:
{streams}
"""


class Dedup(Workdir):
    def setUp(self):
        super().setUp()
        c = sqlite3.connect(self.path("src.db"))
        c.executescript(SRC)
        c.executemany("INSERT INTO items VALUES (?,?,?,?)",
                      [(i, f"item {i}", i * 1.5, f"2025-02-01 00:{i // 60:02d}:{i % 60:02d}")
                       for i in range(1, 101)])
        c.commit()
        c.close()
        self.state = self.path(".etl", "d.state.db")

    def counts(self, stream):
        return last_run_counts(self.state, "d")[(stream, "forward")]

    def test_last_record_of_a_key_in_a_batch_wins(self):
        self.write("d.yaml", pipeline("  - name: events\n    key: code\n"))
        run("run", self.path("d.yaml"), check=0)
        self.assertEqual(rows(self.path("dst.db"), "events", "code"),
                         [("A", "second", "2025-01-01 10:00:02"),
                          ("B", "only", "2025-01-01 10:00:01")])
        c = self.counts("events")
        self.assertEqual((c["read"], c["created"], c["updated"]), (3, 2, 0))

    def test_changed_cursor_with_identical_content_is_unchanged(self):
        self.write("d.yaml", pipeline("  - name: items\n"))
        run("run", self.path("d.yaml"), check=0)
        execute(self.path("src.db"), "UPDATE items SET updated_at = '2025-03-01 00:00:00' WHERE id = 7")
        run("run", self.path("d.yaml"), check=0)
        c = self.counts("items")
        # the boundary row (the checkpoint's own) is read again with id 7
        self.assertEqual((c["read"], c["created"], c["updated"], c["unchanged"]), (2, 0, 0, 2))
        # a real change to the same row is an update
        execute(self.path("src.db"), "UPDATE items SET price = 1000, updated_at = '2025-03-02 00:00:00'"
                " WHERE id = 7")
        run("run", self.path("d.yaml"), check=0)
        c = self.counts("items")
        self.assertEqual((c["read"], c["updated"], c["unchanged"]), (1, 1, 0))
        self.assertEqual(query(self.path("dst.db"), "SELECT price FROM items WHERE id=7"), [(1000.0,)])

    def test_overlap_rereads_are_unchanged(self):
        self.write("d.yaml", pipeline("  - name: items\n    overlap: 1m\n"))
        run("run", self.path("d.yaml"), check=0)
        run("run", self.path("d.yaml"), check=0)
        c = self.counts("items")
        # the last minute before the checkpoint (01:40) is read again: 00:40..01:40
        self.assertEqual(c["read"], 61)
        self.assertEqual((c["created"], c["updated"], c["unchanged"]), (0, 0, 61))

    def test_write_insert_never_touches_an_existing_key(self):
        self.write("d.yaml", pipeline("  - name: items\n    write: insert\n"))
        run("run", self.path("d.yaml"), check=0)
        execute(self.path("dst.db"), "UPDATE items SET name = 'local edit' WHERE id = 3")
        execute(self.path("src.db"), "UPDATE items SET name = 'office edit', updated_at ="
                " '2025-03-01 00:00:00' WHERE id = 3")
        run("run", self.path("d.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT name FROM items WHERE id=3"),
                         [("local edit",)])
        c = self.counts("items")
        # id 3 kept (counted unchanged), and the re-read boundary row
        self.assertEqual((c["created"], c["updated"], c["unchanged"]), (0, 0, 2))

    def test_write_append_adds_a_row_per_change(self):
        self.write("d.yaml", pipeline("  - name: items\n    table: items_log\n    write: append\n"))
        run("run", self.path("d.yaml"), check=0)
        run("run", self.path("d.yaml"), check=0)  # nothing changed: nothing appended
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items_log"), [(100,)])
        execute(self.path("src.db"), "UPDATE items SET price = 1, updated_at = '2025-03-01 00:00:00'"
                " WHERE id = 5")
        run("run", self.path("d.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT price FROM items_log WHERE id=5 ORDER BY rowid"),
                         [(7.5,), (1.0,)])

    def test_write_append_without_a_key_appends_each_row_once(self):
        """A keyless log table: the rows an incremental run reads again at its
        inclusive boundary are not appended again; a new row identical to
        one already appended (same content, same time) still is."""
        execute(self.path("src.db"), "CREATE TABLE log (kind TEXT, n INTEGER, at TEXT)")
        execute(self.path("src.db"), "INSERT INTO log VALUES ('a', 1, '2025-01-01 00:00:00'),"
                " ('b', 2, '2025-01-01 00:00:01'), ('c', 3, '2025-01-01 00:00:01'),"
                " ('c', 3, '2025-01-01 00:00:01')")
        self.write("e.yaml", pipeline("  - name: log\n    cursor: at\n    write: append\n"))
        for _ in range(3):
            run("run", self.path("e.yaml"), check=0)
        got = query(self.path("dst.db"), "SELECT kind, n FROM log ORDER BY rowid")
        self.assertEqual(got, [("a", 1), ("b", 2), ("c", 3), ("c", 3)])
        c = self.counts("log")
        self.assertEqual((c["read"], c["created"], c["unchanged"]), (3, 0, 3))
        # late rows at the boundary: a third identical 'c' and a new 'd'
        execute(self.path("src.db"), "INSERT INTO log VALUES ('c', 3, '2025-01-01 00:00:01'),"
                " ('d', 4, '2025-01-01 00:00:01'), ('e', 5, '2025-01-01 00:00:02')")
        run("run", self.path("e.yaml"), check=0)
        run("run", self.path("e.yaml"), check=0)
        got = query(self.path("dst.db"), "SELECT kind, count(*) FROM log GROUP BY kind ORDER BY kind")
        self.assertEqual(got, [("a", 1), ("b", 1), ("c", 3), ("d", 1), ("e", 1)])

    def test_keyless_append_row_retried_from_deferred_is_appended_once(self):
        """A keyless append row that waited for its parent is written by the
        retry; the scan that reads it again at the boundary finds it."""
        execute(self.path("src.db"), "CREATE TABLE heads (id INTEGER PRIMARY KEY, updated_at TEXT)")
        execute(self.path("src.db"), "CREATE TABLE notes (head_id INTEGER, body TEXT, at TEXT)")
        execute(self.path("src.db"), "INSERT INTO notes VALUES (9, 'y', '2025-01-01 00:00:00')")
        self.write("n.yaml", pipeline("  - name: heads\n  - name: notes\n    cursor: at\n"
                                      "    write: append\n    fk: {head_id: heads}\n"))
        run("run", self.path("n.yaml"), check=0)
        self.assertEqual(self.counts("notes")["deferred"], 1)
        execute(self.path("src.db"), "INSERT INTO heads VALUES (9, '2025-01-01 00:00:00')")
        run("run", self.path("n.yaml"), check=0)
        run("run", self.path("n.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT head_id, body FROM notes"), [(9, "y")])

    def test_dry_run_creates_no_file_and_no_index(self):
        import os
        self.write("d.yaml", pipeline("  - name: items\n  - name: events\n    write: replace\n")
                   .replace("dst.db", "new.db"))
        run("run", self.path("d.yaml"), "--dry-run", "--stream", "items", check=0)
        self.assertFalse(os.path.exists(self.path("new.db")))
        # an existing table without a key index, and a replace stream's staging table
        execute(self.path("new.db"), "CREATE TABLE items (id INTEGER, name TEXT, price REAL, updated_at TEXT)")
        execute(self.path("new.db"), "CREATE TABLE events__etl_new (x INTEGER)")
        r = run("run", self.path("d.yaml"), "--dry-run", check=0)
        self.assertIn("dry run: table items has no unique index on the key", r.err)
        self.assertEqual(query(self.path("new.db"), "SELECT name FROM sqlite_master ORDER BY name"),
                         [("events__etl_new",), ("items",)])
        self.assertEqual(query(self.path("new.db"), "SELECT count(*) FROM items"), [(0,)])

    def test_write_replace_swaps_the_table_atomically(self):
        self.write("d.yaml", pipeline("  - name: items\n    write: replace\n    batch: 10\n"))
        run("run", self.path("d.yaml"), check=0)
        execute(self.path("dst.db"), "CREATE INDEX items_name ON items(name)")
        execute(self.path("src.db"), "DELETE FROM items WHERE id > 50")
        # a reader on another connection polls the table while it is replaced:
        # it must see 100 rows or 50, never an empty or partial table
        seen, stop = set(), threading.Event()

        def reader():
            c = sqlite3.connect(self.path("dst.db"), timeout=30)
            while not stop.is_set():
                try:
                    seen.add(c.execute("SELECT count(*) FROM items").fetchone()[0])
                except sqlite3.OperationalError:
                    pass  # the table is being swapped: the next read sees it
                time.sleep(0.001)
            c.close()
        t = threading.Thread(target=reader)
        t.start()
        run("run", self.path("d.yaml"), check=0)
        time.sleep(0.05)
        stop.set()
        t.join()
        self.assertTrue(seen <= {100, 50}, seen)
        self.assertIn(50, seen)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items"), [(50,)])
        # the index survived the swap, the staging table is gone
        names = [n for (n,) in query(self.path("dst.db"), "SELECT name FROM sqlite_master")]
        self.assertIn("items_name", names)
        self.assertFalse([n for n in names if "__etl" in n], names)
        c = self.counts("items")
        self.assertEqual((c["read"], c["unchanged"], c["deleted"]), (50, 50, 50))

    def test_failed_replace_leaves_the_old_table(self):
        self.write("d.yaml", pipeline("  - name: items\n    write: replace\n    key: id\n"
                                      "    transform: |\n"
                                      "      if rec.id == 77 then error('boom') end\n"
                                      "      return rec\n"))
        execute(self.path("src.db"), "UPDATE items SET id = id + 1000 WHERE id = 77")
        run("run", self.path("d.yaml"), check=0)
        execute(self.path("src.db"), "UPDATE items SET id = 77 WHERE id = 1077")
        run("run", self.path("d.yaml"), check=1)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items"), [(100,)])
        names = [n for (n,) in query(self.path("dst.db"), "SELECT name FROM sqlite_master")]
        self.assertFalse([n for n in names if "__etl" in n], names)

    def test_state_in_the_sink_database_commits_with_it(self):
        # state and sink are one file: each batch and its checkpoint are one transaction
        self.write("d.yaml", pipeline("  - name: items\n    batch: 10\n", 'state: "sqlite:dst.db"'))
        r = run("-v", "run", self.path("d.yaml"), check=0)
        tables = [n for (n,) in query(self.path("dst.db"), "SELECT name FROM sqlite_master WHERE type='table'")]
        self.assertIn("ledger", tables)
        self.assertIn("items", tables)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM items"), [(100,)])
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM ledger"), [(100,)])
        self.assertEqual(query(self.path("dst.db"), "SELECT cursor FROM checkpoints"),
                         [("2025-02-01 00:01:40",)])
        self.assertFalse(os.path.exists(self.path(".etl")), r)
        run("run", self.path("d.yaml"), check=0)
        c = last_run_counts(self.path("dst.db"), "d")[("items", "forward")]
        self.assertEqual((c["created"], c["updated"]), (0, 0))

    def test_failed_records_go_to_dead_letters_up_to_max_errors(self):
        execute(self.path("src.db"), "CREATE TABLE strict_items (id INTEGER PRIMARY KEY, name TEXT,"
                " updated_at TEXT)")
        execute(self.path("src.db"), "INSERT INTO strict_items VALUES (1, 'ok', '2025-01-01'),"
                " (2, NULL, '2025-01-02'), (3, 'ok', '2025-01-03')")
        execute(self.path("dst.db"), "CREATE TABLE strict_items (id INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, updated_at TEXT)")
        self.write("d.yaml", pipeline("  - name: strict_items\n", "max_errors: 1"))
        r = run("run", self.path("d.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT id FROM strict_items ORDER BY id"),
                         [(1,), (3,)])
        dead = query(self.state, "SELECT stream, key, error FROM dead_letters")
        self.assertEqual(len(dead), 1, r)
        self.assertEqual(dead[0][:2], ("strict_items", "2"))
        self.assertIn("NOT NULL", dead[0][2])
        c = self.counts("strict_items")
        self.assertEqual((c["created"], c["failed"]), (2, 1))
        # with the default max_errors (0) the same failure fails the run
        self.write("d.yaml", pipeline("  - name: strict_items\n"))
        execute(self.path("src.db"), "UPDATE strict_items SET updated_at = '2025-06-01'")
        r = run("run", self.path("d.yaml"), check=1)
        self.assertIn("max_errors", r.out + r.err)


SOFT = """version: 1
name: soft
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: variations
    deletes: { mode: soft, column: deleted_at }
  - name: counts
    fk: { variation_id: variations }
"""


class SoftDeletedParents(Workdir):
    """A soft-deleted row stays in the sink: its key stays known to the
    ledger, so children that still point at it are written, not deferred,
    and a later full scan does not delete it again."""

    def test_children_of_a_soft_deleted_parent_are_written(self):
        src = self.path("src.db")
        execute(src, "CREATE TABLE variations (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)")
        execute(src, "CREATE TABLE counts (id INTEGER PRIMARY KEY, variation_id INTEGER, qty INTEGER,"
                " updated_at TEXT)")
        for i in (1, 2, 3):
            execute(src, "INSERT INTO variations VALUES (?, ?, '2026-01-01 00:00:00')", i, f"v{i}")
            execute(src, "INSERT INTO counts VALUES (?, ?, 5, '2026-01-01 00:00:00')", 10 + i, i)
        execute(self.path("dst.db"), "CREATE TABLE variations (id INTEGER PRIMARY KEY, name TEXT,"
                " updated_at TEXT, deleted_at TEXT)")
        self.write("soft.yaml", SOFT)
        state = self.path(".etl", "soft.state.db")
        run("run", self.path("soft.yaml"), check=0)
        # variation 2 goes away at the source; its count stays and changes later
        execute(src, "DELETE FROM variations WHERE id = 2")
        r = run("run", self.path("soft.yaml"), "--full", check=0)
        self.assertEqual(last_run_counts(state, "soft")[("variations", "forward")]["deleted"], 1, r)
        self.assertIsNotNone(query(self.path("dst.db"), "SELECT deleted_at FROM variations WHERE id=2")[0][0])
        execute(src, "UPDATE counts SET qty = 7, updated_at = '2026-02-01 00:00:00' WHERE id = 12")
        r = run("run", self.path("soft.yaml"), check=0)
        c = last_run_counts(state, "soft")[("counts", "forward")]
        self.assertEqual((c["updated"], c["deferred"]), (1, 0), r)
        self.assertEqual(query(self.path("dst.db"), "SELECT qty FROM counts WHERE id = 12"), [(7,)])
        self.assertEqual(query(state, "SELECT count(*) FROM deferred"), [(0,)])
        # a later full scan leaves the soft-deleted row alone
        r = run("run", self.path("soft.yaml"), "--full", check=0)
        self.assertEqual(last_run_counts(state, "soft")[("variations", "forward")]["deleted"], 0, r)
        # and when it comes back it is written again
        execute(src, "INSERT INTO variations VALUES (2, 'v2 again', '2026-03-01 00:00:00')")
        r = run("run", self.path("soft.yaml"), check=0)
        self.assertEqual(last_run_counts(state, "soft")[("variations", "forward")]["updated"], 1, r)
        self.assertEqual(query(self.path("dst.db"), "SELECT name FROM variations WHERE id = 2"),
                         [("v2 again",)])


if __name__ == "__main__":
    unittest.main()


class DeferredThenScanned(Workdir):
    """Records retried from the deferred list at the start of a run are not
    counted again by the scan that follows, even when the stream's ledger
    was empty before the retry."""

    def test_retried_records_count_once(self):
        src = self.path("src.db")
        execute(src, "CREATE TABLE variations (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)")
        execute(src, "CREATE TABLE counts (id INTEGER PRIMARY KEY, variation_id INTEGER, qty INTEGER,"
                " updated_at TEXT)")
        for i in (1, 2, 3):
            execute(src, "INSERT INTO variations VALUES (?, ?, '2026-01-01 00:00:00')", i, f"v{i}")
            execute(src, "INSERT INTO counts VALUES (?, ?, 5, '2026-01-01 00:00:00')", 10 + i, i)
        self.write("soft.yaml", SOFT)
        state = self.path(".etl", "soft.state.db")
        # the children alone: every one waits for its parent
        run("run", self.path("soft.yaml"), "--stream", "counts", check=0)
        c = last_run_counts(state, "soft")[("counts", "forward")]
        self.assertEqual((c["read"], c["created"], c["deferred"]), (3, 0, 3))
        r = run("run", self.path("soft.yaml"), "--full", check=0)
        c = last_run_counts(state, "soft")[("counts", "forward")]
        self.assertEqual((c["read"], c["created"], c["unchanged"], c["deferred"]), (3, 3, 3, 0), r)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM counts"), [(3,)])
        synced = query(state, "SELECT records_synced FROM checkpoints WHERE stream='counts'")
        self.assertEqual(synced, [(3,)])


class FallbackKeyInDatabaseSinks(Workdir):
    """fallback_key names records whose key is NULL for sinks that match on
    it (pythonanywhere); a database sink cannot, and refuses the stream
    rather than add a row for each change."""

    def test_pgsqlite_refuses_fallback_key(self):
        src = self.path("src.db")
        execute(src, "CREATE TABLE products (barcode TEXT PRIMARY KEY, brand TEXT, size TEXT,"
                " price TEXT, updated_at TEXT)")
        execute(src, "INSERT INTO products VALUES (NULL, 'acme', 'L', '9.99', '2026-01-01 00:00:00')")
        self.write("fb.yaml", """version: 1
name: fb
source: {plugin: pgsqlite, url: "sqlite:src.db"}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
streams:
  - name: products
    fallback_key: [brand, size]
""")
        r = run("run", self.path("fb.yaml"), check=1)
        self.assertIn("stream products: fallback_key is not supported by a database sink", r.out + r.err)
        self.assertEqual(query(self.path("dst.db"), "SELECT count(*) FROM sqlite_master WHERE name='products'"),
                         [(0,)])
