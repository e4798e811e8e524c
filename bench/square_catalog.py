#!/usr/bin/env python3
"""Square catalog -> SQLite through the square plugin, against the mock on
loopback (tests/mock/square.py): categories, items (each with its variations
nested, as Square sends them) and variations, pages of 1000.

Measures, at N/2 and N catalog objects (default N = 200,000):
  - etl's wall time and objects/s: fetch, JSON parse, map, upsert into SQLite;
  - the time the mock spent serving: its CPU time during the run (the mock is
    single-threaded Python, so this is its serving time even on a busy
    machine); with --replay also a bare keep-alive HTTP loop replaying the
    same requests from the mock's log (wall time, mock + loopback);
  - the framework's own share: etl's CPU time per object, split between the
    reader threads (fetch, validate, map, emit: in line with the requests)
    and the main thread (dedup, ledger, SQLite upsert: overlapped with the
    next fetch), sampled from /proc; and etl's wall time less the mock's;
  - etl's peak memory (flat when it does not grow with N).
usage: bench/square_catalog.py [--objects N] [--replay]
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from benchlib import ETL, SOURCE, report

MOCK = os.path.join(SOURCE, "tests", "mock", "square.py")
TOKEN = "sq-test-token"
PIPELINE = """version: 1
name: bench
source: {plugin: square, token: "%s", base_url: "%s", page_size: 1000}
sink: {plugin: pgsqlite, url: "sqlite:dst.db"}
defaults: {batch: 1000}
streams:
  - name: catalog_categories
  - name: catalog_items
  - name: catalog_variations
"""
CATEGORIES = 10
PER_ITEM = 2  # variations per item: an item is 1 + PER_ITEM catalog objects


class Mock:
    def __init__(self, items):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, MOCK, "--port", "0", "--locations", "0", "--orders", "0",
             "--categories", str(CATEGORIES), "--items", str(items),
             "--variations-per-item", str(PER_ITEM)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"mock did not start: {line!r}")
        self.url = line.split()[-1]
        self.started = time.monotonic() - t0

    def call(self, method, path):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"{}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.proc.stdout.close()


def cpu_of(stat_path):
    """utime + stime in seconds from a /proc .../stat file, or None."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_etl(d, mock_pid):
    """etl run in d: wall seconds, peak RSS MiB, CPU seconds, the main
    thread's and the other threads' CPU seconds, the mock's CPU seconds."""
    mock0 = cpu_of(f"/proc/{mock_pid}/stat")
    t0 = time.monotonic()
    p = subprocess.Popen([ETL, "-q", "run", os.path.join(d, "p.yaml")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    threads = {}
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        try:
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                c = cpu_of(f"/proc/{p.pid}/task/{tid}/stat")
                if c is not None:
                    threads[int(tid)] = c
        except OSError:
            pass
        time.sleep(0.02)
    secs = time.monotonic() - t0
    mock_cpu = cpu_of(f"/proc/{mock_pid}/stat") - mock0
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"etl failed:\n{out.decode()}\n{err.decode()}")
    cpu = usage.ru_utime + usage.ru_stime
    main = threads.get(p.pid, 0.0)
    return secs, usage.ru_maxrss / 1024.0, cpu, main, cpu - main, mock_cpu


def replay(mock):
    """Seconds a bare client spends on the requests etl made (mock + loopback)."""
    log = mock.call("GET", "/__mock/requests?path=/v2/")["requests"]
    mock.call("DELETE", "/__mock/requests")
    u = urllib.parse.urlsplit(mock.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    total, nbytes = 0.0, 0
    for r in log:
        headers = {"Authorization": "Bearer " + TOKEN, "Square-Version": "2025-08-20",
                   "Content-Type": "application/json"}
        t0 = time.monotonic()
        conn.request(r["method"], r["raw_path"], body=r["body"].encode(), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        total += time.monotonic() - t0
        nbytes += len(body)
        if resp.status != 200:
            raise RuntimeError(f"replay: {r['path']}: {resp.status}")
    conn.close()
    return total, len(log), nbytes


def one(n_objects, with_replay):
    items = max(1, (n_objects - CATEGORIES) // (1 + PER_ITEM))
    n = CATEGORIES + items * (1 + PER_ITEM)
    d = tempfile.mkdtemp(prefix="etl-bench-square-")
    mock = Mock(items)
    try:
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(PIPELINE % (TOKEN, mock.url))
        mock.call("DELETE", "/__mock/requests")
        secs, rss, cpu, main_cpu, read_cpu, mock_cpu = run_etl(d, mock.proc.pid)
        log = mock.call("GET", "/__mock/requests?path=/v2/")["requests"]
        served = replay(mock)[0] if with_replay else None
        import sqlite3
        c = sqlite3.connect(os.path.join(d, "dst.db"))
        rows = sum(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                   for t in ("catalog_categories", "catalog_items", "catalog_variations"))
        c.close()
        return {"objects": n, "rows": rows, "seconds": secs, "rss_mib": rss, "cpu": cpu,
                "main_cpu": main_cpu, "reader_cpu": read_cpu, "mock_cpu": mock_cpu,
                "replay_seconds": served, "requests": len(log), "mock_start": mock.started}
    finally:
        mock.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=200_000)
    ap.add_argument("--replay", action="store_true",
                    help="also time a bare client replaying etl's requests")
    a = ap.parse_args()
    small, big = one(a.objects // 2, a.replay), one(a.objects, a.replay)
    results = []
    for r in (small, big):
        results.append({"what": f"etl, {r['objects']:,} catalog objects", "rows": r["objects"],
                        "seconds": r["seconds"], "rss_mib": r["rss_mib"]})
        per = 1e6 / r["objects"]
        r["us_mock"] = r["mock_cpu"] * per
        r["us_reader"] = r["reader_cpu"] * per
        r["us_main"] = r["main_cpu"] * per
        r["us_cpu"] = r["cpu"] * per
        r["us_wall_less_mock"] = (r["seconds"] - r["mock_cpu"]) * per
    print(f"Square catalog -> SQLite through the mock ({os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; items carry {PER_ITEM} nested variations; pages of 1000)")
    report("square_catalog", a.objects, results)
    for r in (small, big):
        print(f"  {r['objects']:>9,} objects, {r['requests']} requests, {r['rows']:,} rows "
              f"(objects deleted before the first sync have no row)")
        print(f"      mock serving (its CPU) {r['mock_cpu']:7.1f} s = {r['us_mock']:6.1f} us/object"
              + (f"; a bare client replaying the requests: {r['replay_seconds']:.1f} s"
                 if r["replay_seconds"] is not None else ""))
        print(f"      etl reader threads     {r['reader_cpu']:7.2f} s = {r['us_reader']:6.1f} us/object"
              f"  (fetch, validate, map, emit: in line with the requests)")
        print(f"      etl main thread        {r['main_cpu']:7.2f} s = {r['us_main']:6.1f} us/object"
              f"  (dedup, ledger, SQLite upsert: overlaps the fetching)")
        print(f"      etl CPU in all         {r['cpu']:7.2f} s = {r['us_cpu']:6.1f} us/object")
        print(f"      etl wall less the mock {r['seconds'] - r['mock_cpu']:7.2f} s = "
              f"{r['us_wall_less_mock']:6.1f} us/object")
    print(f"  peak memory {small['rss_mib']:.1f} MiB at {small['objects']:,} objects, "
          f"{big['rss_mib']:.1f} MiB at {big['objects']:,} "
          f"({big['rss_mib'] / small['rss_mib']:.2f}x)")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out",
                           "square_catalog_detail.json"), "w") as f:
        json.dump([small, big], f, indent=2)


if __name__ == "__main__":
    main()
