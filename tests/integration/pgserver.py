"""A throw-away PostgreSQL 15 server for the integration tests.

initdb + pg_ctl in a temporary folder, listening on 127.0.0.1 at a free port,
stopped and removed afterwards. PostgreSQL refuses to run as root, so as root
the server runs as the `postgres` user through runuser.
"""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    raise RuntimeError("no PostgreSQL server binaries (scripts/deps.sh installs postgresql-15)")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self):
        self.bin = _bindir()
        self.dir = tempfile.mkdtemp(prefix="etl-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir, 0o755)

    def _cmd(self, *args):
        return (["runuser", "-u", "postgres", "--"] if self.as_root else []) + list(args)

    def start(self):
        subprocess.run(self._cmd(os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust",
                                 "-U", "postgres", "-E", "UTF8", "--no-sync", "--locale=C"),
                       check=True, capture_output=True)
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        subprocess.run(self._cmd(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", opts,
                                 "-l", os.path.join(self.dir, "log"), "-w", "-t", "60", "start"),
                       check=True, capture_output=True)
        return self

    def stop(self):
        subprocess.run(self._cmd(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate",
                                 "-w", "stop"), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db="postgres", user="postgres"):
        return f"postgres://{user}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql, db="postgres", check=True):
        """Runs SQL through psql; returns rows as lists of strings (unaligned, tab separated)."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                            "-c", sql], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}\n{sql}")
        return [line.split("\t") for line in p.stdout.splitlines() if line != ""]

    def dicts(self, sql, db="postgres"):
        """Rows as dicts of strings (None for NULL)."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-F", "\x1f", "-P", "null=\x1e",
                            "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "-d", db, "-c", sql],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}\n{sql}")
        lines = p.stdout.split("\n")
        head = lines[0].split("\x1f")
        out = []
        for line in lines[1:]:
            if not line or (line.startswith("(") and line.endswith(")")):
                continue
            vals = line.split("\x1f")
            out.append({h: (None if v == "\x1e" else v) for h, v in zip(head, vals)})
        return out

    def psql_file(self, path, db="postgres"):
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "postgres", "-d", db, "-f", path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"psql -f {path} failed: {p.stderr[-2000:]}")

    def createdb(self, name):
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


_server = None


def shared():
    """One server for the whole test module; stopped by stop_shared()."""
    global _server
    if _server is None:
        _server = PgServer().start()
    return _server


def stop_shared():
    global _server
    if _server is not None:
        _server.stop()
        _server = None


if __name__ == "__main__":
    s = PgServer().start()
    print(s.url())
    print(s.psql("SELECT version()"))
    time.sleep(0.1)
    s.stop()
