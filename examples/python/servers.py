#!/usr/bin/env python3
"""Runs a real pre-fork server over the records table and measures what a full pass of the table
costs each worker in private memory, frozen table against plain dict, side by side.

    python3 examples/python/servers.py gunicorn     # Flask (flask_app.py) under gunicorn --preload
    python3 examples/python/servers.py uwsgi        # wsgi_app.py under uWSGI, pre-fork
    options: --rows N (default 500,000)  --workers N (4)  --batch N (records per request, 500)
             --table frozen|dict|both (both)

Each run starts the server on a Unix socket (the table is built in the master before fork),
warms every worker up, reads each worker's USS (Private_Clean + Private_Dirty from
/proc/PID/smaps_rollup, via permafrost.memory), then makes one full pass: 4 client threads request
/records for every position of the table, each response checked, and reads USS again. The growth
is what serving the table copied into each worker.
"""
import argparse
import concurrent.futures
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import permafrost  # noqa: E402
import records  # noqa: E402

MiB = 1 << 20
CLIENTS = 4
WARMUP_REQUESTS_PER_WORKER = 8


def http_get(sock_path, target, timeout=120):
    """GET target over the Unix socket; returns the decoded JSON body (HTTP/1.0, one request per
    connection). Raises AssertionError for a status other than 200."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(b"GET " + target.encode() + b" HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.split(b"\r\n", 1)[0].endswith(b" 200 OK"):
        raise AssertionError("GET %s: %r" % (target, head[:200]))
    return json.loads(body)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def server_command(server, sock_path, workers):
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "--preload", "-w", str(workers), "-k", "sync",
                "-b", "unix:" + sock_path, "--chdir", HERE, "--timeout", "300",
                "--log-level", "warning", "flask_app:app"]
    if server == "uwsgi":
        return ["uwsgi", "--plugin", "python3", "--master", "--processes", str(workers),
                "--http-socket", sock_path, "--chdir", HERE, "--pythonpath", HERE,
                "--wsgi-file", os.path.join(HERE, "wsgi_app.py"), "--need-app",
                "--disable-logging", "--die-on-term", "--harakiri", "300"]
    raise ValueError("server must be gunicorn or uwsgi, not %r" % (server,))


def missing(server):
    """Why server cannot run here (None when it can)."""
    import importlib.util
    if server == "gunicorn":
        for module, package in (("gunicorn", "gunicorn"), ("flask", "python3-flask")):
            if importlib.util.find_spec(module) is None:
                return "%s is not importable by %s (Debian's %s)" % (module, sys.executable,
                                                                    package)
        return None
    if server == "celery":
        if importlib.util.find_spec("celery") is None:
            return "celery is not importable by %s (Debian's python3-celery)" % sys.executable
        return None
    if not shutil.which("uwsgi"):
        return "no uwsgi on PATH (Debian's uwsgi-core)"
    if not os.path.exists("/usr/lib/uwsgi/plugins/python3_plugin.so"):
        return "no uWSGI python3 plugin (Debian's uwsgi-plugin-python3)"
    return None


class Server:
    """A running server: start() waits until all workers are forked and answering."""

    def __init__(self, server, table, rows, workers, tmp, image=None):
        self.sock = os.path.join(tmp, "%s-%s.sock" % (server, table))
        self.workers_wanted = workers
        env = dict(os.environ, PF_TABLE=table, PF_ROWS=str(rows),
                   PYTHONPATH=os.pathsep.join(p for p in [HERE, os.environ.get("PYTHONPATH")]
                                              if p))
        if image:
            env["PF_IMAGE"] = image
        self.started = time.monotonic()
        self.log = open(os.path.join(tmp, "%s-%s.log" % (server, table)), "w+")
        self.proc = subprocess.Popen(server_command(server, self.sock, workers), env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def start(self, timeout=300):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("the server exited (%d): %s" % (self.proc.returncode,
                                                                     self.output()))
            if os.path.exists(self.sock) and len(children(self.proc.pid)) == self.workers_wanted:
                try:
                    self.stats = http_get(self.sock, "/stats")
                    break
                except OSError:  # not accepting yet
                    pass
                except AssertionError as e:  # answering, with an error: the app is broken
                    raise AssertionError("%s: %s" % (e, self.output())) from None
            if time.monotonic() > deadline:
                raise AssertionError("the server did not start in %d s: %s" % (timeout,
                                                                               self.output()))
            time.sleep(0.1)
        self.workers = sorted(children(self.proc.pid))
        self.boot_s = time.monotonic() - self.started  # the command to every worker answering
        return self

    def output(self):
        self.log.seek(0)
        return self.log.read()[-3000:]

    def uss(self):
        return {pid: permafrost.memory(pid).uss for pid in self.workers}

    def total_pss(self):
        """The master's PSS plus every worker's: what the fleet holds of the machine's memory."""
        return sum(permafrost.memory(pid).pss for pid in [self.proc.pid] + self.workers)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def full_pass(sock_path, rows, batch):
    """Requests /records for every position of the table, CLIENTS at a time; checks every
    record. Returns the number of requests."""
    starts = list(range(0, rows, batch))
    position = records.scrambled(rows)

    def client(k):
        seen = 0
        for start in starts[k::CLIENTS]:
            got = http_get(sock_path, "/records?start=%d&count=%d" % (start, batch))
            want = range(start, min(start + batch, rows))
            if [r["id"] for r in got] != [position(p) for p in want]:
                raise AssertionError("/records?start=%d: wrong records" % start)
            for r in got:
                if records.checksum(r) != records.checksum(records.record(r["id"])):
                    raise AssertionError("record %d came back changed: %r" % (r["id"], r))
            seen += len(got)
        return seen

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        seen = sum(pool.map(client, range(CLIENTS)))  # re-raises a client's exception
    if seen != rows:
        raise AssertionError("the pass returned %d records of %d" % (seen, rows))
    return len(starts)


def measure(server, table, rows, workers=4, batch=500, image=None):
    """One server run with the table held as table ("frozen", "dict", or "prebuilt": the image
    file `image`, opened in the master). Returns a dict: table bytes, boot seconds (the server
    command's start to every worker answering), per-worker USS growth over the full pass
    (bytes), the master's and workers' total PSS after it, the pass's seconds and requests."""
    tmp = tempfile.mkdtemp(prefix="pf-servers-")
    srv = Server(server, table, rows, workers, tmp, image)
    try:
        srv.start()
        for i in range(WARMUP_REQUESTS_PER_WORKER * workers):  # code paths, pools, caches
            http_get(srv.sock, "/records?start=%d&count=10" % (i * 10))
        before = srv.uss()
        t = time.perf_counter()
        requests = full_pass(srv.sock, rows, batch)
        elapsed = time.perf_counter() - t
        after = srv.uss()
        pss = srv.total_pss()
        if sorted(children(srv.proc.pid)) != srv.workers:
            raise AssertionError("a worker was replaced during the pass: " + srv.output())
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"server": server, "table": table, "rows": rows, "workers": workers,
            "table_bytes": srv.stats["table_bytes"], "pass_s": elapsed, "requests": requests,
            "growth": [after[p] - before[p] for p in srv.workers], "boot_s": srv.boot_s,
            "total_pss": pss}


def measure_celery(table, rows, workers=4, image=None):
    """The same measures as measure(), for Celery's prefork pool (celery_app.py): boot = the
    worker command's start to every pool process answering a task; the pass = each pool process
    reading 1/workers of the table (a rendezvous first, so that each takes one part)."""
    import celery_config
    tmp = tempfile.mkdtemp(prefix="pf-celery-")
    env = dict(os.environ, PF_TABLE=table, PF_ROWS=str(rows), PF_CELERY_DIR=tmp,
               PYTHONPATH=os.pathsep.join(p for p in [HERE, os.environ.get("PYTHONPATH")] if p))
    if image:
        env["PF_IMAGE"] = image
    log = open(os.path.join(tmp, "celery.log"), "w+")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P",
                             "prefork", "-c", str(workers), "-O", "fair", "--without-heartbeat",
                             "--without-gossip", "--without-mingle", "-l", "warning"],
                            cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    client = celery_config.make_app(tmp)

    def run(name, calls, timeout=600):
        pending = [client.send_task("celery_app." + name, args=a) for a in calls]
        try:
            return [r.get(timeout=timeout) for r in pending]
        except Exception:
            log.seek(0)
            raise AssertionError("celery %s failed: %s" % (name, log.read()[-3000:])) from None

    try:
        pids = run("rendezvous", [(workers, "boot")] * workers)
        boot_s = time.monotonic() - started
        stats = run("stats", [()])[0]
        pool = sorted(children(proc.pid))
        if sorted(pids) != pool:
            raise AssertionError("the boot tasks ran in %s, the pool is %s" % (pids, pool))
        before = {pid: permafrost.memory(pid).uss for pid in pool}
        t = time.perf_counter()
        parts = run("read_part", [(workers, "pass", p, workers) for p in range(workers)])
        elapsed = time.perf_counter() - t
        after = {pid: permafrost.memory(pid).uss for pid in pool}
        pss = sum(permafrost.memory(pid).pss for pid in [proc.pid] + pool)
        position = records.scrambled(rows)
        want = sum(records.checksum(records.record(position(p))) for p in range(rows))
        if sum(total for _, total in parts) != want or sorted(pid for pid, _ in parts) != pool:
            raise AssertionError("the pass read wrong records or not in every pool process")
    finally:
        if proc.poll() is None:
            # Measured: nothing left to keep. Celery's warm (SIGTERM) and cold (SIGQUIT)
            # shutdowns both outlast 30 s with the file-system broker here.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"server": "celery", "table": table, "rows": rows, "workers": workers,
            "table_bytes": stats["table_bytes"], "pass_s": elapsed, "requests": workers,
            "growth": [after[p] - before[p] for p in pool], "boot_s": boot_s, "total_pss": pss}


def report(results, dict_table_bytes):
    lines = ["%-9s %-7s %9s %26s %10s %8s" % ("server", "table", "table MiB",
                                               "USS growth/worker MiB", "max/dict", "pass s")]
    for r in results:
        growth = r["growth"]
        lines.append("%-9s %-7s %9.1f %26s %9.1f%% %8.1f" % (
            r["server"], r["table"], r["table_bytes"] / MiB,
            " ".join("%.1f" % (g / MiB) for g in growth),
            100.0 * max(growth) / dict_table_bytes if dict_table_bytes else 0.0, r["pass_s"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("server", choices=["gunicorn", "uwsgi"])
    ap.add_argument("--rows", type=int, default=records.ROWS)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--table", choices=["frozen", "dict", "both"], default="both")
    args = ap.parse_args()
    why = missing(args.server)
    if why:
        raise SystemExit("%s: cannot run: %s" % (args.server, why))
    tables = ["frozen", "dict"] if args.table == "both" else [args.table]
    results = [measure(args.server, t, args.rows, args.workers, args.batch) for t in tables]
    dict_bytes = max([r["table_bytes"] for r in results if r["table"] == "dict"] or [0])
    print("%s, %d rows, %d workers, batches of %d records; max/dict = the largest worker's "
          "growth over the dict table's bytes" % (args.server, args.rows, args.workers,
                                                 args.batch))
    print(report(results, dict_bytes))


if __name__ == "__main__":
    main()
