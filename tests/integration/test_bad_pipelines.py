"""Every malformed pipeline is refused by the CLI with exit code 2 and a message
that names the file, line and column, before anything is touched.

The fixtures carry their expectation on the first line:
    # expect: LINE:COL: message substring
tests/fixtures/pipelines/bad/ holds DSL errors (the loader),
tests/fixtures/pipelines/bad_plugin/ plugin and option errors (the loader of
plugins, which needs the plugin's option table)."""
import glob
import os
import re
import unittest

from etltest import FIXTURES, Workdir, run


def cases(folder):
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "pipelines", folder, "*.yaml"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
        m = re.match(r"#\s*expect:\s*(\d+):(\d+):\s*(.*\S)", first)
        if m:
            out.append((path, int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


class BadPipelines(Workdir):
    def check_all(self, folder, minimum):
        found = cases(folder)
        self.assertGreaterEqual(len(found), minimum, folder)
        for path, line, col, msg in found:
            with self.subTest(os.path.basename(path)):
                for cmd in ("check", "run"):
                    r = run(cmd, path, env={"ETL_TEST_UNSET": ""}, cwd=self.dir)
                    self.assertEqual(r.code, 2, r)
                    self.assertIn(f"{path}:{line}:{col}: ", r.err, r)
                    self.assertIn(msg, r.err, r)
        # nothing was created beside any of them: no state store, no database
        for folder_path in {os.path.dirname(c[0]) for c in found}:
            self.assertFalse(os.path.exists(os.path.join(folder_path, ".etl")))
            self.assertFalse(glob.glob(os.path.join(folder_path, "*.db")))

    def test_dsl_errors(self):
        self.check_all("bad", 30)

    def test_plugin_and_option_errors(self):
        self.check_all("bad_plugin", 5)

    def test_secret_values_stay_out_of_errors(self):
        p = self.write("p.yaml", """version: 1
name: t
source: {plugin: pgsqlite, url: "postgres://shop:hunter2secret@db.example/x"}
sink: {plugin: pgsqlite, url: "sqlite:b.db", create: maybe}
streams:
  - name: items
""")
        r = run("run", p, check=2)
        self.assertIn("create", r.err)
        self.assertNotIn("hunter2secret", r.err + r.out)


if __name__ == "__main__":
    unittest.main()
