"""A real gunicorn --preload app (4 sync workers on a Unix socket) serving lookups from a table
loaded before fork: per-worker USS (permafrost.memory) stays flat over 10,000 requests with a
frozen table and grows with a plain dict."""
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import permafrost

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 4
REQUESTS = 10000
CLIENTS = 4


def request(sock_path, target):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(b"GET " + target.encode() + b" HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError("bad response: %r" % head[:100])
    return body


def worker_pids(master):
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        return [int(p) for p in f.read().split()]


class Server:
    """gunicorn --preload, WORKERS sync workers on a Unix socket, serving `app` (a module of
    apps/) with PF_APP_MODE=mode; extra_path is appended to the workers' PYTHONPATH."""

    def __init__(self, mode, tmp, app="apps.lookup_app:app", extra_path=()):
        self.sock = os.path.join(tmp, mode + ".sock")
        path = [HERE] + sys.path[:1] + [os.environ.get("PYTHONPATH", "")] + list(extra_path)
        env = dict(os.environ, PF_APP_MODE=mode, PYTHONPATH=os.pathsep.join(path))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "-w", str(WORKERS), "-k", "sync",
             "-b", "unix:" + self.sock, "--log-level", "warning", "--timeout", "60", app],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("gunicorn exited: " + self.proc.stderr.read().decode())
            if os.path.exists(self.sock) and len(worker_pids(self.proc.pid)) == WORKERS:
                try:
                    request(self.sock, "/pid")
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError("gunicorn did not start within 60 s")
            time.sleep(0.05)
        self.workers = worker_pids(self.proc.pid)

    def uss(self):
        return {pid: permafrost.memory(pid).uss for pid in self.workers}

    def run(self, first, count):
        errors = []

        def client(k):
            try:
                for n in range(first + k, first + count, CLIENTS):
                    request(self.sock, "/lookup?seed=%d" % n)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def stop(self):
        """Stops gunicorn; returns what it wrote on stderr."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return err


def uss_growth(mode):
    """Per-worker USS growth in bytes over REQUESTS requests, after a warm-up."""
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(mode, tmp)
        try:
            server.run(10**6, 400)  # warm-up: code paths, pymalloc pools, the interpreter's caches
            before = server.uss()
            server.run(0, REQUESTS)
            after = server.uss()
            if worker_pids(server.proc.pid) != server.workers:
                raise AssertionError("a worker was replaced during the run")
        finally:
            server.stop()
    return [after[p] - before[p] for p in before]


@unittest.skipUnless(importlib.util.find_spec("gunicorn"),
                     "gunicorn is not installed for this interpreter (Debian's gunicorn serves "
                     "/usr/bin/python3; this test runs there)")
class Gunicorn(unittest.TestCase):
    def test_frozen_table_keeps_worker_uss_flat_while_a_dict_grows(self):
        frozen = uss_growth("frozen")
        plain = uss_growth("dict")
        mib = 1 << 20
        sys.stderr.write("\nUSS growth per worker over %d requests, MiB: frozen %s, dict %s\n" % (
            REQUESTS, [round(g / mib, 2) for g in frozen], [round(g / mib, 2) for g in plain]))
        for g in frozen:
            self.assertLess(g, 1 * mib, "a worker serving the frozen table grew")
        self.assertGreater(min(plain), 8 * mib, "the dict app's workers were expected to copy pages")


if __name__ == "__main__":
    unittest.main()
