"""Lua hooks in real runs: transform, drop, fan-out, ctx:emit into another
stream, errors (raised, endless loop, forbidden io) going to the dead letters
with their traceback, max_errors, before_run/after_run."""
import sqlite3
import unittest

from etltest import Workdir, execute, last_run_counts, query, rows, run

ORDERS = [
    (1, "ann", "ok", "a=1,b=2", "2025-01-01 10:00:00"),
    (2, "bo", "void", "", "2025-01-01 10:00:01"),
    (3, "cy", "split", "c=3", "2025-01-01 10:00:02"),
    (4, "di", "boom", "", "2025-01-01 10:00:03"),
    (5, "ed", "loop", "", "2025-01-01 10:00:04"),
    (6, "fa", "io", "", "2025-01-01 10:00:05"),
    (7, "gi", "ok", "d=4", "2025-01-01 10:00:06"),
]

HOOK = """local M = {}
function M.transform(rec, ctx)
  if rec.status == 'void' then return nil end
  if rec.status == 'boom' then error('cannot handle order ' .. rec.id) end
  if rec.status == 'loop' then while true do end end
  if rec.status == 'io' then local f = io.open('/etc/passwd') end
  rec.customer = string.upper(rec.customer)
  for sku, n in string.gmatch(rec.items, '(%w+)=(%d+)') do
    ctx:emit('order_lines', {order_id = rec.id, sku = sku, n = tonumber(n)})
  end
  if rec.status == 'split' then
    local b = {}
    for k, v in pairs(rec) do b[k] = v end
    b.id = rec.id + 1000
    return {rec, b}
  end
  return rec
end
return M
"""

HOOKS = """return {
  before_run = function(ctx) ctx:log('before run of ' .. ctx.pipeline .. ' (' .. ctx.mode .. ')') end,
  after_run = function(ctx, stats, status)
    ctx:log('after run: ' .. status .. ', orders created ' .. stats.orders.created ..
            ', lines created ' .. stats.order_lines.created)
  end,
}
"""


def pipeline(max_errors=3, extra=""):
    return f"""version: 1
name: lua
source: {{plugin: pgsqlite, url: "sqlite:src.db"}}
sink: {{plugin: pgsqlite, url: "sqlite:dst.db"}}
hooks: lua/hooks.lua
max_errors: {max_errors}
lua: {{instructions: 200000}}
streams:
  - name: orders
    transform: lua/orders.lua
  - name: order_lines
    key: [order_id, sku]
    columns: {{order_id: int, sku: text, n: int}}
    fk: {{order_id: orders}}
{extra}"""


class LuaHooks(Workdir):
    def setUp(self):
        super().setUp()
        c = sqlite3.connect(self.path("src.db"))
        c.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, status TEXT,"
                  " items TEXT, updated_at TEXT)")
        c.executemany("INSERT INTO orders VALUES (?,?,?,?,?)", ORDERS)
        c.commit()
        c.close()
        self.write("lua/orders.lua", HOOK)
        self.write("lua/hooks.lua", HOOKS)
        self.state = self.path(".etl", "lua.state.db")

    def test_transform_drop_fanout_emit_and_dead_letters(self):
        self.write("lua.yaml", pipeline())
        r = run("run", self.path("lua.yaml"), check=0)
        got = rows(self.path("dst.db"), "orders", "id")
        self.assertEqual([(g[0], g[1]) for g in got],
                         [(1, "ANN"), (3, "CY"), (7, "GI"), (1003, "CY")])
        self.assertEqual(rows(self.path("dst.db"), "order_lines", "order_id, sku"),
                         [(1, "a", 1), (1, "b", 2), (3, "c", 3), (7, "d", 4)])
        dead = {k: e for k, e in query(self.state, "SELECT key, error FROM dead_letters")}
        self.assertEqual(set(dead), {"4", "5", "6"}, r)
        self.assertIn("cannot handle order 4", dead["4"])
        self.assertIn("stack traceback", dead["4"])
        self.assertIn("instruction budget", dead["5"])
        self.assertIn("io", dead["6"])
        record = query(self.state, "SELECT record FROM dead_letters WHERE key='4'")[0][0]
        self.assertIn('"customer":"di"', record)
        counts = last_run_counts(self.state, "lua")
        self.assertEqual(counts[("orders", "forward")]["read"], 7)
        self.assertEqual(counts[("orders", "forward")]["created"], 4)
        self.assertEqual(counts[("orders", "forward")]["failed"], 3)
        self.assertEqual(counts[("order_lines", "forward")]["created"], 4)
        self.assertIn("before run of lua (incremental)", r.err)
        self.assertIn("after run: ok, orders created 4, lines created 4", r.err)

    def test_full_scan_deletes_only_what_the_source_lost(self):
        """A row the transform drops or fails on is still in the source: a full
        scan with deletes must not delete it from the sink."""
        self.write("lua/hooks.lua", "return {}")
        keep = "transform: |\n      return rec\n    mode: full\n    deletes: hard"
        self.write("lua.yaml", pipeline().replace("transform: lua/orders.lua", keep))
        run("run", self.path("lua.yaml"), "--stream", "orders", check=0)
        self.assertEqual(len(rows(self.path("dst.db"), "orders", "id")), 7)
        picky = ("transform: |\n      if rec.id == 2 then return nil end\n"
                 "      if rec.id == 4 then error('no') end\n      return rec\n"
                 "    mode: full\n    deletes: hard")
        self.write("lua.yaml", pipeline().replace("transform: lua/orders.lua", picky))
        c = sqlite3.connect(self.path("src.db"))
        c.execute("DELETE FROM orders WHERE id = 7")
        c.commit()
        c.close()
        run("run", self.path("lua.yaml"), "--stream", "orders", check=0)
        self.assertEqual([g[0] for g in rows(self.path("dst.db"), "orders", "id")], [1, 2, 3, 4, 5, 6])
        counts = last_run_counts(self.state, "lua")[("orders", "forward")]
        self.assertEqual((counts["read"], counts["deleted"], counts["failed"]), (6, 1, 1))
        # the next scan still knows the dropped and failed keys: nothing more goes
        run("run", self.path("lua.yaml"), "--stream", "orders", check=0)
        self.assertEqual(len(rows(self.path("dst.db"), "orders", "id")), 6)
        self.assertEqual(last_run_counts(self.state, "lua")[("orders", "forward")]["deleted"], 0)

    def replace_fed_by_emits(self, table, create, rows, emitted):
        """`table` (write: replace) runs before orders (mode: full), whose
        transform emits `emitted` (Lua table text) into it for orders 1 and 2."""
        self.write("lua/hooks.lua", "return {}")
        c = sqlite3.connect(self.path("src.db"))
        c.execute(create)
        c.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        c.commit()
        c.close()
        self.write("lua.yaml", f"""version: 1
name: lua
source: {{plugin: pgsqlite, url: "sqlite:src.db"}}
sink: {{plugin: pgsqlite, url: "sqlite:dst.db"}}
streams:
  - name: {table}
    write: replace
  - name: orders
    mode: full
    transform: |
      if rec.id <= 2 then ctx:emit('{table}', {emitted}) end
      return rec
""")

    def test_rows_emitted_into_a_replace_stream_that_already_ran_join_its_table(self):
        """The second pass adds them to the swapped-in table."""
        self.replace_fed_by_emits(
            "notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)",
            [(1, "a", "2025-01-01"), (2, "b", "2025-01-01"), (3, "c", "2025-01-01")],
            "{id = 100 + rec.id, body = 'from order ' .. rec.id, updated_at = rec.updated_at}")
        for _ in range(2):  # the next run replaces again, and orders (full) emits again
            r = run("run", self.path("lua.yaml"), check=0)
            self.assertEqual([g[0] for g in rows(self.path("dst.db"), "notes", "id")], [1, 2, 3, 101, 102], r)
            self.assertEqual(query(self.state, "SELECT count(*) FROM ledger l JOIN etl_streams s ON s.id = l.sid"
                                   " WHERE s.stream = 'notes'"), [(5,)])

    def test_keyless_replace_stream_keeps_the_rows_emitted_into_it(self):
        self.replace_fed_by_emits(
            "memo", "CREATE TABLE memo (body TEXT, updated_at TEXT)",  # no key
            [("a", "2025-01-01"), ("b", "2025-01-01")],
            "{body = 'order ' .. rec.id, updated_at = rec.updated_at}")
        for _ in range(3):
            r = run("run", self.path("lua.yaml"), check=0)
            self.assertEqual(sorted(query(self.path("dst.db"), "SELECT body FROM memo")),
                             [("a",), ("b",), ("order 1",), ("order 2",)], r)

    def test_emitting_stream_keeps_its_checkpoint_until_the_emitted_rows_are_written(self):
        """orders emits order_lines; when order_lines cannot be written, the
        orders checkpoint stays, so the next run emits every line again."""
        self.write("lua/hooks.lua", "return {}")
        self.write("lua.yaml", pipeline())
        execute(self.path("dst.db"), "CREATE VIEW order_lines AS SELECT 1 AS order_id, 'x' AS sku, 1 AS n")
        r = run("run", self.path("lua.yaml"), check=1)
        self.assertIn("the checkpoint stays", r.err)
        self.assertEqual(query(self.state, "SELECT count(*) FROM checkpoints WHERE stream='orders'"
                               " AND cursor IS NOT NULL"), [(0,)])
        self.assertEqual(len(rows(self.path("dst.db"), "orders", "id")), 4)
        execute(self.path("dst.db"), "DROP VIEW order_lines")
        run("run", self.path("lua.yaml"), check=0)
        self.assertEqual(rows(self.path("dst.db"), "order_lines", "order_id, sku"),
                         [(1, "a", 1), (1, "b", 2), (3, "c", 3), (7, "d", 4)])
        # now the orders checkpoint moved: a third run reads from the last order on
        ck = query(self.state, "SELECT cursor FROM checkpoints WHERE stream='orders'")
        self.assertEqual(ck, [("2025-01-01 10:00:06",)])
        run("run", self.path("lua.yaml"), check=0)
        self.assertEqual(last_run_counts(self.state, "lua")[("orders", "forward")]["read"], 1)

    def test_a_failing_stream_that_was_not_emitted_into_does_not_hold_the_checkpoint(self):
        self.write("lua/hooks.lua", "return {}")
        self.write("lua.yaml", pipeline(extra="  - name: ghost\n"))  # no such table: fails
        r = run("run", self.path("lua.yaml"), check=1)
        self.assertIn("ghost", r.out)
        self.assertNotIn("the checkpoint stays", r.err)
        self.assertEqual(query(self.state, "SELECT cursor FROM checkpoints WHERE stream='orders'"),
                         [("2025-01-01 10:00:06",)])
        self.assertEqual(len(rows(self.path("dst.db"), "order_lines", "order_id")), 4)

    def test_more_errors_than_max_errors_fail_the_run(self):
        self.write("lua.yaml", pipeline(max_errors=2))
        r = run("run", self.path("lua.yaml"), check=1)
        self.assertIn("max_errors", r.out)
        # the failed stream's checkpoint did not move past the batch
        self.assertEqual(query(self.state, "SELECT count(*) FROM checkpoints WHERE stream='orders'"
                               " AND cursor IS NOT NULL"), [(0,)])
        # and order_lines, whose parent failed, was skipped
        self.assertIn("skipped", r.out)

    def test_inline_transform_and_syntax_error_is_a_config_error(self):
        self.write("lua.yaml", pipeline().replace(
            "transform: lua/orders.lua",
            "transform: |\n      rec.customer = rec.customer .. '!'\n      return rec"))
        run("run", self.path("lua.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT customer FROM orders WHERE id=1"),
                         [("ann!",)])
        self.write("lua.yaml", pipeline().replace(
            "transform: lua/orders.lua", "transform: |\n      return rec +* 1"))
        r = run("run", self.path("lua.yaml"), check=2)
        self.assertIn("orders", r.err)
        # etl check compiles the hooks as a run would, and says where
        r = run("check", self.path("lua.yaml"), check=2)
        self.assertIn("stream orders: transform: [orders transform]:1: unexpected symbol", r.err)
        self.assertNotIn("configuration ok", r.out)
        self.write("lua.yaml", pipeline())
        run("check", self.path("lua.yaml"), check=0)
        self.write("lua/hooks.lua", "return { after_run = function( }")
        r = run("check", self.path("lua.yaml"), check=2)
        self.assertIn("hooks.lua:1:", r.err)

    def test_require_is_confined_to_the_lua_folder(self):
        self.write("lua/util.lua", "return { shout = function(s) return s .. '!!' end }")
        self.write("secret.lua", "return { leak = true }")
        self.write("lua.yaml", pipeline().replace(
            "transform: lua/orders.lua",
            "transform: |\n      local u = require('util')\n"
            "      if rec.id == 7 then require('../secret') end\n"
            "      rec.customer = u.shout(rec.customer)\n      return rec"))
        run("run", self.path("lua.yaml"), check=0)
        self.assertEqual(query(self.path("dst.db"), "SELECT customer FROM orders WHERE id=1"),
                         [("ann!!",)])
        dead = query(self.state, "SELECT key FROM dead_letters")
        self.assertIn(("7",), dead)


if __name__ == "__main__":
    unittest.main()
