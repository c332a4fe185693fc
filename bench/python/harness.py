"""Shared by bench/python's pools.py, deploy.py, scale.py, freeze_memory.py and build_memory.py,
and by frozen_table.py (fault_cost): the table's rows, the lookup pass, /proc/self/status and its
peak, what a page fault costs, and running one bench's rows on every interpreter the build made a
module for.

Each row runs in a fresh process of its interpreter (`SCRIPT --one ROW ...`, printing one JSON
object), so no row inherits another's heap; the driver prints one table per interpreter.
"""
import json
import os
import platform
import subprocess
import sys
import time
from math import gcd

MiB = 1 << 20


def status():
    """{field: bytes} of /proc/self/status's kB fields."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0]) * 1024
    return fields


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)


def parse_args(doc):
    """(args, rows) of a memory bench's command line: --smoke (20,000 rows), --rows, --build,
    --one ROW (run one row in this process and print its JSON)."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 rows: checks only")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--build", help="the build's python/ directory")
    ap.add_argument("--one", metavar="ROW", help="run one row here, print JSON")
    args = ap.parse_args()
    return args, 20000 if args.smoke else args.rows


def key(i):
    return "key:%07d" % i


def record(i):
    return {"name": "name-%d" % i, "id": i, "score": i * 0.25,
            "tags": ["t%d" % (i % 7), i % 5, "x"]}


def write_jsonl(path, rows):
    """The table as JSON Lines at path: one record per line, its key in "key" (deploy.py and
    scale.py build their images from it, as a pipeline's hand-off would be)."""
    with open(path, "w") as f:
        for i in range(rows):
            r = record(i)
            r["key"] = key(i)
            f.write(json.dumps(r) + "\n")


def stride_for(n):
    """A step coprime with n: i -> (i + s) % n visits every row once, in a scrambled order."""
    s = 7368787 % n or 1
    while gcd(s, n) != 1:
        s += 1
    return s


def lookup_pass(table, rows, part=0, parts=1):
    """Looks up rows part, part + parts, ... (scrambled order), reading every field; returns
    (checksum, seconds)."""
    total, s = 0, stride_for(rows)
    t = time.perf_counter()
    for j in range(part, rows, parts):
        r = table[key(j * s % rows)]
        total += len(r["name"]) + r["id"] + int(r["score"]) + len(r["tags"])
    return total, time.perf_counter() - t


def expected_checksum(rows, part=0, parts=1):
    s = stride_for(rows)
    return sum(len("name-%d" % i) + i + int(i * 0.25) + 3
               for i in (j * s % rows for j in range(part, rows, parts)))


def header(script, argv):
    print("bench/python: %s, %d CPUs, %s" % (platform.platform(), os.cpu_count(),
                                             time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("command: %s" % " ".join([script] + argv))


def fault_cost(size=64 * MiB):
    """(first touch, copy-on-write): microseconds one 4 KiB page fault costs this machine now,
    each the median of 3 sweeps of a private anonymous mapping of `size` without huge pages (one
    process, nothing else faulting). A dict's forked worker pays the copy-on-write one for every
    page its reads write (refcounts), so the lookup ratios of the fork benches move with it: a
    VM that hands guest pages back to its host (free page reporting) charges the host's fault
    too. A frozen table's workers pay neither."""
    import mmap
    import statistics
    pages = size // mmap.PAGESIZE
    first, cow = [], []
    for _ in range(3):
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            m.madvise(mmap.MADV_NOHUGEPAGE)
        t = time.perf_counter()
        for off in range(0, size, mmap.PAGESIZE):
            m[off] = 1
        first.append((time.perf_counter() - t) / pages * 1e6)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                t = time.perf_counter()
                for off in range(0, size, mmap.PAGESIZE):
                    m[off] = 2
                os.write(w, repr(time.perf_counter() - t).encode())
            finally:
                os._exit(0)
        os.close(w)
        elapsed = float(os.read(r, 64))
        os.close(r)
        os.waitpid(pid, 0)
        cow.append(elapsed / pages * 1e6)
        m.close()
    return statistics.median(first), statistics.median(cow)


def interpreters(build):
    """[(tag, interpreter)] from the build's python/interpreters.txt."""
    with open(os.path.join(build, "interpreters.txt")) as f:
        return [tuple(line.split("=", 1)) for line in f.read().split()]


def version_of(interpreter):
    return subprocess.run([interpreter, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True).stdout.strip()


def run_rows(script, build, rows, args, timeout=3600, only=None):
    """Runs `script --one ROW ARGS...` for each row on every interpreter (only: the one with
    that tag); yields (tag, interpreter, {row: result}); prints failures to stderr and sets
    run_rows.failed."""
    run_rows.failed = False
    for tag, interpreter in interpreters(build):
        if only and tag != only:
            continue
        env = dict(os.environ, PYTHONPATH=os.path.join(build, tag))
        results = {}
        for row in rows:
            proc = subprocess.run([interpreter, os.path.abspath(script), "--one", row, *args],
                                  env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                print("%s (%s), %s: FAILED\n%s" % (tag, interpreter, row, proc.stderr[-4000:]),
                      file=sys.stderr)
                run_rows.failed = True
                continue
            result = json.loads(proc.stdout.splitlines()[-1])
            if result is not None:
                results[row] = result
        yield tag, interpreter, results
