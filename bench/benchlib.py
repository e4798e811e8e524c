"""Shared by the benchmarks: timing a command with its own peak memory."""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
BUILD = os.environ.get("ETL_BUILD", os.path.join(SOURCE, "build"))
ETL = os.path.join(BUILD, "etl")
sys.path.insert(0, os.path.join(SOURCE, "scripts"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))


def measure(args, env=None, cwd=None):
    """(seconds, peak RSS in MiB) of one run of args; raises on failure."""
    secs, rss, _ = measure_cpu(args, env, cwd)
    return secs, rss


def measure_cpu(args, env=None, cwd=None, stdout=None):
    """(seconds, peak RSS in MiB, CPU seconds) of one run of args."""
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(args, env=e, cwd=cwd, stdout=stdout if stdout is not None else out,
                             stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        secs = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            out.seek(0)
            err.seek(0)
            raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{out.read().decode()}\n"
                               f"{err.read().decode()}")
    return secs, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def realistic_items(path, rows):
    """The items table of scripts/make_items_db.py, updated_at like a live
    table's: mostly in insertion order, one row in ten changed later."""
    import make_items_db
    import sqlite3
    make_items_db.build(path, rows)
    c = sqlite3.connect(path)
    c.execute("UPDATE items SET updated_at = created_at")
    c.execute("UPDATE items SET updated_at = datetime(1790000000 + (id * 7919) % 3153600,"
              " 'unixepoch') WHERE id % 10 = 0")
    c.commit()
    c.close()


def report(name, rows, results):
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", f"{name}.json"), "w") as f:
        json.dump(results, f, indent=2)
    width = max(len(r["what"]) for r in results)
    for r in results:
        rate = f"{r['rows'] / r['seconds']:>12,.0f} rows/s" if r.get("rows") else " " * 19
        print(f"  {r['what']:<{width}}  {r['seconds']:8.2f} s  {rate}  peak {r['rss_mib']:7.1f} MiB"
              + (f"  cpu {r['cpu']:6.2f} s" if "cpu" in r else "")
              + (f"  ({r['ratio']:.2f}x the raw limit)" if "ratio" in r else ""))
