"""The plugin SDK as an author meets it.

`cmake --install` of the build under test (ETL_BUILD) into a fresh prefix lays
out bin/etl, libetl, the pgsqlite plugin, the headers and etl.pc; the copy-me
template in docs/plugin-template/ builds out of tree with `make` (and with
CMake) against the installed headers only; the INSTALLED etl lists it from
ETL_PLUGIN_PATH and runs real pipelines through it in both directions, a
second run writing nothing; and the installed etl finds libetl through its
RPATH and its own plugins without ETL_PLUGIN_PATH.

The installed tree is relocatable: etl.pc and the plugin folder are found
relative to where they were installed.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

import etltest
from etltest import Result, Workdir, last_run_counts, query, rows

TEMPLATE = os.path.join(etltest.SOURCE, "docs", "plugin-template")


def normflags(text):
    """-I/-L flags with their paths normalised (etl.pc's paths are relative to itself)."""
    out = []
    for f in text.split():
        out.append(f[:2] + os.path.normpath(f[2:]) if f[:2] in ("-I", "-L") else f)
    return out


def sh(args, env=None, cwd=None, check=True, timeout=120):
    e = dict(os.environ)
    for k in ("ETL_PLUGIN_PATH", "LD_LIBRARY_PATH", "PKG_CONFIG_PATH"):
        e.pop(k, None)
    e.update(env or {})
    p = subprocess.run(args, capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout)
    r = Result(p)
    if check and r.code != 0:
        raise AssertionError(f"{' '.join(args)}: {r!r}")
    return r


def setUpModule():
    Sdk.prepare()


def tearDownModule():
    if os.environ.get("ETL_KEEP_TMP"):
        print("kept", Sdk.root)
    else:
        shutil.rmtree(Sdk.root, ignore_errors=True)


class Sdk(Workdir):
    """The install and the template build, made once for the module; each
    test has its own folder (Workdir) for pipelines and data."""

    @classmethod
    def prepare(cls):
        cls.root = tempfile.mkdtemp(prefix="etl-sdk-")
        cls.prefix = os.path.join(cls.root, "prefix")
        cls.install = sh(["cmake", "--install", etltest.BUILD, "--prefix", cls.prefix])
        cls.etl_bin = os.path.join(cls.prefix, "bin", "etl")
        cls.pcdir = os.path.join(cls.prefix, "lib", "pkgconfig")
        cls.plugins = os.path.join(cls.prefix, "lib", "etl", "plugins")

        cls.pc_cflags = sh(["pkg-config", "--cflags", "etl"], env={"PKG_CONFIG_PATH": cls.pcdir}).out
        cls.build_env = {"PKG_CONFIG_PATH": cls.pcdir}
        cls.tpl = os.path.join(cls.root, "template")
        shutil.copytree(TEMPLATE, cls.tpl,
                        ignore=shutil.ignore_patterns("*.so", "out", ".etl", "build"))
        cls.make = sh(["make"], env=cls.build_env, cwd=cls.tpl)

        cls.plugin_path = cls.tpl

    @classmethod
    def etl(cls, *args, path="default", check=None, env=None):
        """Runs the INSTALLED etl; path: ETL_PLUGIN_PATH, None for none."""
        e = {"NO_COLOR": "1"}
        if path is not None:
            e["ETL_PLUGIN_PATH"] = cls.plugin_path if path == "default" else path
        e.update(env or {})
        r = sh([cls.etl_bin, *args], env=e, check=False)
        if check is not None and r.code != check:
            raise AssertionError(f"etl {' '.join(args)}: expected exit {check}, got {r!r}")
        return r

    def pipeline(self, name, source, sink, streams, extra=""):
        return self.write(f"{name}.yaml", f"""version: 1
name: {name}
source: {source}
sink: {sink}
{extra}
streams:
{streams}
""")

    def counts(self, pipeline, stream):
        c = last_run_counts(self.path(".etl", f"{pipeline}.state.db"), pipeline)[(stream, "forward")]
        return {k: c[k] for k in ("read", "created", "updated", "unchanged", "deleted", "failed")}

    def jsonl(self, *p):
        with open(self.path(*p)) as f:
            return [json.loads(line) for line in f if line.strip()]


class Install(Sdk):
    def test_install_lays_out_binary_library_plugin_headers_and_pkg_config(self):
        p = self.prefix
        self.assertTrue(os.access(os.path.join(p, "bin", "etl"), os.X_OK))
        libs = sorted(f for f in os.listdir(os.path.join(p, "lib")) if f.startswith("libetl.so"))
        self.assertIn("libetl.so", libs)
        self.assertTrue(any(f.startswith("libetl.so.") for f in libs), libs)
        self.assertTrue(os.path.isfile(os.path.join(self.plugins, "etl-pgsqlite.so")))
        self.assertTrue(os.path.isfile(os.path.join(self.pcdir, "etl.pc")))
        for h in ("etl.h", "record.h"):
            with open(os.path.join(p, "include", "etl", h), "rb") as a, \
                    open(os.path.join(etltest.SOURCE, "include", "etl", h), "rb") as b:
                self.assertEqual(a.read(), b.read(), f"installed {h} differs from include/etl/{h}")

    def test_installed_etl_finds_libetl_through_its_rpath(self):
        r = self.etl("version", path=None, check=0)
        self.assertTrue(r.out.strip())
        runpath = sh(["readelf", "-d", self.etl_bin]).out
        self.assertIn("$ORIGIN/../lib", runpath)
        line = [l for l in sh(["ldd", self.etl_bin]).out.splitlines() if "libetl.so" in l]
        self.assertEqual(len(line), 1, line)
        resolved = os.path.realpath(line[0].split("=>")[1].split("(")[0].strip())
        self.assertTrue(resolved.startswith(os.path.realpath(self.prefix) + os.sep), line[0])

    def test_pkg_config_points_into_the_prefix(self):
        """etl.pc finds its prefix from where it is installed."""
        env = {"PKG_CONFIG_PATH": self.pcdir}
        self.assertIn("-I" + os.path.join(self.prefix, "include"), normflags(self.pc_cflags))
        libs = normflags(sh(["pkg-config", "--libs", "etl"], env=env).out)
        self.assertIn("-L" + os.path.join(self.prefix, "lib"), libs)
        self.assertEqual(os.path.normpath(sh(["pkg-config", "--variable=plugindir", "etl"],
                                             env=env).out.strip()), self.plugins)

    def test_installed_etl_finds_its_plugins_without_ETL_PLUGIN_PATH(self):
        """The loader looks beside libetl: <libdir>/etl/plugins."""
        r = self.etl("plugins", path=None, check=0)
        self.assertRegex(r.out, r"(?m)^pgsqlite\s")
        r = self.etl("plugins", "pgsqlite", path=None, check=0)
        self.assertIn("file: " + os.path.join(self.plugins, "etl-pgsqlite.so"), r.out)


class Template(Sdk):
    def test_make_builds_it_against_the_installed_headers_only(self):
        so = os.path.join(self.tpl, "etl-jsonl.so")
        self.assertTrue(os.path.isfile(so), self.make)
        for flag in ("-std=c11", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror",
                     "-shared"):
            self.assertIn(flag, self.make.out.split())
        # the flags pkg-config gave name the prefix, never the source tree
        flags = sh(["pkg-config", "--cflags", "--libs", "etl"], env=self.build_env).out
        self.assertIn("-I" + os.path.join(self.prefix, "include"), normflags(flags))
        self.assertNotIn(etltest.SOURCE, flags)
        exported = sh(["nm", "-D", "--defined-only", so]).out.split()
        self.assertEqual([s for s in exported if s.startswith("etl")], ["etl_plugin_entry"])

    def test_cmake_builds_it_too(self):
        b = os.path.join(self.root, "cmake-build")
        sh(["cmake", "-S", self.tpl, "-B", b], env=self.build_env)
        sh(["cmake", "--build", b], env=self.build_env)
        so = os.path.join(b, "etl-jsonl.so")
        self.assertTrue(os.path.isfile(so))
        exported = sh(["nm", "-D", "--defined-only", so]).out.split()
        self.assertEqual([s for s in exported if s.startswith("etl")], ["etl_plugin_entry"])

    def test_installed_etl_lists_it_with_its_options(self):
        r = self.etl("plugins", path=self.tpl, check=0)
        self.assertRegex(r.out, r"(?m)^jsonl\s+0\.1\.0\s+source, sink\s+\S")
        opts, current = {}, None
        for line in r.out.splitlines():
            if line and not line.startswith(" "):
                current = line.split()[0]  # a plugin's heading line
            elif line.startswith("    ") and current == "jsonl":
                name, rest = line.split(None, 1)
                opts[name] = rest
        self.assertEqual(list(opts), ["dir", "columns", "key", "cursor", "ordered", "bad_lines"])
        self.assertRegex(opts["dir"], r"^path\s+required\. ")
        self.assertRegex(opts["columns"], r"^list\s")
        self.assertRegex(opts["key"], r"^list\s.*\(default id\)$")
        self.assertRegex(opts["cursor"], r"^string\s.*\(default updated_at\)$")
        self.assertRegex(opts["ordered"], r"^bool\s.*\(default false\)$")
        self.assertRegex(opts["bad_lines"], r"^fail\|skip\s.*\(default fail\)$")
        r = self.etl("plugins", "jsonl", path=self.tpl, check=0)
        self.assertIn("file: " + os.path.join(self.tpl, "etl-jsonl.so"), r.out)

    def test_make_check_runs_the_example(self):
        r = sh(["make", "check", "ETL=" + self.etl_bin], env=self.build_env, cwd=self.tpl)
        self.assertIn("jsonl-example run 1: ok", r.out)
        with open(os.path.join(self.tpl, "example", "out", "items.jsonl")) as f:
            out = [json.loads(l) for l in f]
        with open(os.path.join(self.tpl, "example", "in", "items.jsonl")) as f:
            self.assertEqual(out, [json.loads(l) for l in f])


SRC = """
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, active BOOLEAN,
                    tags JSON, updated_at TEXT);
INSERT INTO items VALUES (1, 'apple', 0.5, 1, '["fruit"]', '2025-01-01 10:00:00');
INSERT INTO items VALUES (2, 'pear "green"', NULL, 0, NULL, '2025-01-01 10:00:02');
INSERT INTO items VALUES (3, 'fig', 1.25, 1, '{"dried": true}', '2025-01-01 10:00:01');
"""

ITEMS = [
    {"id": 1, "name": "apple", "price": 0.5, "active": True, "tags": ["fruit"],
     "updated_at": "2025-01-01 10:00:00"},
    {"id": 3, "name": "fig", "price": 1.25, "active": True, "tags": {"dried": True},
     "updated_at": "2025-01-01 10:00:01"},
    {"id": 2, "name": 'pear "green"', "price": None, "active": False, "tags": None,
     "updated_at": "2025-01-01 10:00:02"},
]


class Pipelines(Sdk):
    def setUp(self):
        super().setUp()
        c = sqlite3.connect(self.path("src.db"))
        c.executescript(SRC)
        c.commit()
        c.close()

    def test_sqlite_to_jsonl_lands_every_row_and_a_second_run_writes_nothing(self):
        y = self.pipeline("out", '{plugin: pgsqlite, url: "sqlite:src.db"}',
                          "{plugin: jsonl, dir: out}", "  - name: items\n")
        self.etl("run", y, check=0)
        # a first run reads the whole table in key order
        self.assertEqual(sorted(self.jsonl("out", "items.jsonl"), key=lambda r: r["id"]),
                         sorted(ITEMS, key=lambda r: r["id"]))
        self.assertEqual(self.counts("out", "items")["created"], 3)
        before = os.stat(self.path("out", "items.jsonl"))

        self.etl("run", y, check=0)
        c = self.counts("out", "items")
        self.assertEqual((c["read"], c["created"], c["updated"], c["unchanged"]), (1, 0, 0, 1))
        after = os.stat(self.path("out", "items.jsonl"))
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))

        etltest.execute(self.path("src.db"),
                        "UPDATE items SET price = 0.75, updated_at = '2025-01-02 00:00:00' WHERE id = 1")
        etltest.execute(self.path("src.db"),
                        "INSERT INTO items VALUES (4, 'kiwi', 2, 1, NULL, '2025-01-02 00:00:01')")
        self.etl("run", y, check=0)
        c = self.counts("out", "items")
        self.assertEqual((c["created"], c["updated"]), (1, 1))
        want = [dict(ITEMS[0], price=0.75, updated_at="2025-01-02 00:00:00"), ITEMS[1], ITEMS[2],
                {"id": 4, "name": "kiwi", "price": 2.0, "active": True, "tags": None,
                 "updated_at": "2025-01-02 00:00:01"}]
        self.assertEqual(sorted(self.jsonl("out", "items.jsonl"), key=lambda r: r["id"]),
                         sorted(want, key=lambda r: r["id"]))
        self.assertFalse(os.path.exists(self.path("out", "items.jsonl.tmp")))

    def test_jsonl_to_sqlite_lands_every_row_and_a_second_run_writes_nothing(self):
        os.makedirs(self.path("in"))
        lines = [
            {"id": 1, "kind": "sale", "amount": 9.5, "ok": True, "meta": {"till": 2},
             "updated_at": "2025-01-01T10:00:00Z"},
            {"id": 2, "kind": "refund", "amount": -2, "ok": False, "meta": None,
             "updated_at": "2025-01-01T10:00:05Z"},
            {"id": 3, "kind": None, "amount": 0.25, "ok": True, "meta": [1, "x"],
             "updated_at": "2025-01-01T10:00:03Z"},
        ]
        with open(self.path("in", "events.jsonl"), "w") as f:
            f.write("\n".join(json.dumps(l) for l in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
        y = self.pipeline("back", "{plugin: jsonl, dir: in}",
                          '{plugin: pgsqlite, url: "sqlite:dst.db"}', "  - name: events\n")
        self.etl("run", y, check=0)
        want = [(1, "sale", 9.5, 1, '{"till":2}', "2025-01-01T10:00:00Z"),
                (2, "refund", -2.0, 0, None, "2025-01-01T10:00:05Z"),
                (3, None, 0.25, 1, '[1,"x"]', "2025-01-01T10:00:03Z")]
        self.assertEqual(rows(self.path("dst.db"), "events", "id"), want)
        # discovery: the first line's fields, key `id`, cursor `updated_at`
        self.assertEqual(query(self.path("dst.db"), "SELECT name, pk FROM pragma_table_info('events')"),
                         [("id", 1), ("kind", 0), ("amount", 0), ("ok", 0), ("meta", 0),
                          ("updated_at", 0)])

        self.etl("run", y, check=0)
        c = self.counts("back", "events")
        # since is inclusive: the checkpoint's own row is read again, and is unchanged
        self.assertEqual((c["read"], c["created"], c["updated"], c["unchanged"]), (1, 0, 0, 1))
        self.assertEqual(rows(self.path("dst.db"), "events", "id"), want)

        with open(self.path("in", "events.jsonl"), "a") as f:
            f.write(json.dumps(dict(lines[0], amount=10, updated_at="2025-01-01T10:00:07Z")) + "\n")
            f.write(json.dumps({"id": 4, "kind": "sale", "amount": 1, "ok": True, "meta": {},
                                "updated_at": "2025-01-01T10:00:06Z"}) + "\n")
            f.write(json.dumps(dict(lines[2], kind="old", updated_at="2025-01-01T09:00:00Z")) + "\n")
        self.etl("run", y, check=0)
        c = self.counts("back", "events")
        # rows before the checkpoint (10:00:05) are not read: 2 (boundary), 1, 4
        self.assertEqual((c["read"], c["created"], c["updated"], c["unchanged"]), (3, 1, 1, 1))
        self.assertEqual(rows(self.path("dst.db"), "events", "id"),
                         [(1, "sale", 10.0, 1, '{"till":2}', "2025-01-01T10:00:07Z")] + want[1:]
                         + [(4, "sale", 1.0, 1, "{}", "2025-01-01T10:00:06Z")])

    def test_full_scan_deletes_reach_the_jsonl_file(self):
        y = self.pipeline("del", '{plugin: pgsqlite, url: "sqlite:src.db"}',
                          "{plugin: jsonl, dir: out}",
                          "  - name: items\n    mode: full\n    deletes: {mode: hard}\n")
        self.etl("run", y, check=0)
        etltest.execute(self.path("src.db"), "DELETE FROM items WHERE id = 3")
        self.etl("run", y, check=0)
        self.assertEqual(self.counts("del", "items")["deleted"], 1)
        self.assertEqual([r["id"] for r in self.jsonl("out", "items.jsonl")], [1, 2])

    def test_a_value_json_cannot_carry_fails_that_row_alone(self):
        etltest.execute(self.path("src.db"), "CREATE TABLE bin (id INTEGER PRIMARY KEY, b BLOB)")
        etltest.execute(self.path("src.db"), "INSERT INTO bin VALUES (1, x'ff00'), (2, x'6869')")
        y = self.pipeline("bin", '{plugin: pgsqlite, url: "sqlite:src.db"}',
                          "{plugin: jsonl, dir: out}", "  - name: bin\n", "max_errors: 1")
        self.etl("run", y, check=0)
        self.assertEqual(self.jsonl("out", "bin.jsonl"), [{"id": 2, "b": "hi"}])
        self.assertEqual(self.counts("bin", "bin")["failed"], 1)
        dead = query(self.path(".etl", "bin.state.db"), "SELECT key, error FROM dead_letters")
        self.assertEqual(dead, [("1", "column b: not UTF-8 text")])

    def test_a_bad_line_fails_the_read_naming_file_and_line_unless_skipped(self):
        os.makedirs(self.path("in"))
        with open(self.path("in", "bad.jsonl"), "w") as f:
            f.write('{"id": 1, "updated_at": "2025-01-01"}\nnot json\n'
                    '{"id": "two", "updated_at": "2025-01-02"}\n{"id": 4, "updated_at": "2025-01-03"}\n')
        y = self.pipeline("bad", '{plugin: jsonl, dir: in, bad_lines: "${BAD:-fail}"}',
                          '{plugin: pgsqlite, url: "sqlite:dst.db"}', "  - name: bad\n")
        r = self.etl("run", y, check=1)
        self.assertIn(self.path("in", "bad.jsonl") + ":2: not JSON", r.err)
        r = self.etl("run", y, env={"BAD": "skip"}, check=0)
        self.assertIn("bad.jsonl:3: skipped: field \"id\" does not fit column type int", r.err)
        self.assertEqual(rows(self.path("dst.db"), "bad", "id"),
                         [(1, "2025-01-01"), (4, "2025-01-03")])

    def test_option_errors_name_the_pipeline_line_before_anything_runs(self):
        y = self.pipeline("opt", '{plugin: jsonl, dir: in, bad_lines: maybe}',
                          '{plugin: pgsqlite, url: "sqlite:dst.db"}', "  - name: x\n")
        r = self.etl("run", y, check=2)
        self.assertIn("opt.yaml:3:45: bad value 'maybe' for option 'bad_lines' of plugin 'jsonl' "
                      "(expected one of fail|skip)", r.err)
        y = self.pipeline("opt", "{plugin: jsonl, dri: in}",
                          '{plugin: pgsqlite, url: "sqlite:dst.db"}', "  - name: x\n")
        r = self.etl("run", y, check=2)
        self.assertIn("unknown option 'dri' for plugin 'jsonl' (expected one of: dir, columns, key, "
                      "cursor, ordered, bad_lines)", r.err)
        self.assertFalse(os.path.exists(self.path(".etl")))


if __name__ == "__main__":
    unittest.main()
