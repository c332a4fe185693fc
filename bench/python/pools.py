#!/usr/bin/env python3
"""bench/python/pools.py: a 1M-row table sent to spawn and forkserver pools, three ways.

The table is bench/python's (keys "key:NNNNNNN" -> {"name", "id", "score", "tags"}). For each
start method a pool of WORKERS workers is started and warmed first (each worker's idle USS is
recorded); then, timed:
  first result s   pool.apply(lookup one key, (table, key)): one worker receives the table and
                   answers (what sending the table costs before any work is done)
  pass s           WORKERS tasks, one per worker (a barrier makes sure), each receiving the table
                   and looking up a quarter of the keys, every field read, checksum verified
  USS growth MiB   a worker's USS after its pass minus its idle USS (worst worker): what
                   receiving and reading the table cost it in memory of its own
  total PSS MiB    parent + workers while every worker still holds the table
  lookup ns        a worker's pass time / its keys (median worker; all run at once on the
                   machine's cores, so compare within the table)
Rows:
  dict             a plain dict: pickled by value to every worker
  freeze() view    permafrost.freeze(dict): multiprocessing's pickler sends the sealed memfd that
                   holds the frozen graph; workers map it (the first send moves the arena into
                   the memfd)
  image view       permafrost.open(path) of the same table saved as an image: pickled as
                   (path, offset, id); every worker maps the file (checksum and graph check on
                   its first open)
Goals (issue 17): freeze() view per-worker USS growth <= 16 MiB, first result <= 1 s; printed
per start method as each measure over its goal (<= 1.000x: met).

usage: pools.py [--smoke] [--rows N] [--workers N] [--only TAG] --build BUILD_DIR/python
"""
import argparse
import gc
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

import harness

ROWS = ("dict", "freeze() view", "image view")
METHODS = ("spawn", "forkserver")

_kept = []
_barrier = None


def _init(barrier):
    global _barrier
    _barrier = barrier


def _idle(_):
    import permafrost
    _barrier.wait()  # one call per worker
    return os.getpid(), permafrost.memory().uss


def _first(table, k):
    return table[k]["id"]


def _task(args):
    import permafrost
    table, rows, part, parts = args
    _barrier.wait()  # one task per worker
    total, seconds = harness.lookup_pass(table, rows, part, parts)
    _kept.append(table)  # held until the parent has measured PSS
    return os.getpid(), total, seconds, permafrost.memory().uss


def build(row, rows, tmp):
    import permafrost
    d = {harness.key(i): harness.record(i) for i in range(rows)}
    if row == "dict":
        return d
    frozen = permafrost.freeze(d)
    del d
    gc.collect()
    permafrost.trim()
    if row == "freeze() view":
        return frozen
    path = os.path.join(tmp, "table.pfi")
    frozen.save(path)
    frozen.close()
    return permafrost.open(path)


def run_one(row, method, rows, workers):
    import permafrost
    tmp = tempfile.mkdtemp(prefix="pf-bench-pools-")
    try:
        table = build(row, rows, tmp)
        ctx = multiprocessing.get_context(method)
        barrier = ctx.Barrier(workers)
        with ctx.Pool(workers, initializer=_init, initargs=(barrier,)) as pool:
            idle = dict(pool.map(_idle, range(workers), chunksize=1))
            t = time.perf_counter()
            first_id = pool.apply(_first, (table, harness.key(rows // 2)))
            first_s = time.perf_counter() - t
            assert first_id == rows // 2
            t = time.perf_counter()
            results = pool.map(_task, [(table, rows, p, workers) for p in range(workers)],
                               chunksize=1)
            pass_s = time.perf_counter() - t
            pss = permafrost.memory().pss + sum(permafrost.memory(pid).pss
                                                for pid, _, _, _ in results)
        for p, (pid, total, seconds, uss) in enumerate(results):
            if total != harness.expected_checksum(rows, p, workers):
                raise SystemExit(f"{row}: worker {pid} read a wrong checksum")
        seconds = sorted(r[2] for r in results)
        return {"first_s": first_s, "pass_s": pass_s, "pss": pss,
                "uss_growth": max(uss - idle[pid] for pid, _, _, uss in results),
                "lookup_ns": 1e9 * seconds[len(seconds) // 2] / (rows / workers)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table_text(title, rows, workers, results):
    lines = [f"{title}, {rows} rows, {workers} workers",
             "%-11s %-14s %8s %8s %10s %10s %9s" % ("method", "row", "first s", "pass s",
                                                   "USS+ MiB", "totPSS MiB", "lookup ns")]
    for method in METHODS:
        for row in ROWS:
            r = results.get(f"{method}/{row}")
            if r:
                lines.append("%-11s %-14s %8.2f %8.2f %10.1f %10.1f %9.0f" % (
                    method, row, r["first_s"], r["pass_s"], r["uss_growth"] / harness.MiB,
                    r["pss"] / harness.MiB, r["lookup_ns"]))
        view, d = results.get(f"{method}/freeze() view"), results.get(f"{method}/dict")
        if view:
            growth = view["uss_growth"] / (16 * harness.MiB)
            first = view["first_s"] / 1.0
            lines.append(f"{method}: freeze() view vs goal: USS growth {growth:.3f}x of 16 MiB, "
                         f"first result {first:.3f}x of 1 s: "
                         f"{'met' if growth <= 1 and first <= 1 else 'NOT MET'}")
        if view and d:
            lines.append(f"{method}: freeze() view vs dict: first result "
                         f"{view['first_s'] / d['first_s']:.3f}x, USS growth "
                         f"{view['uss_growth'] / max(d['uss_growth'], 1):.4f}x, total PSS "
                         f"{view['pss'] / d['pss']:.2f}x")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 rows, 2 workers: checks only")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--build", help="the build's python/ directory")
    ap.add_argument("--one", metavar="METHOD/ROW", help="run one row here, print JSON")
    ap.add_argument("--only", metavar="TAG", help="one interpreter of the build (e.g. debian)")
    args = ap.parse_args()
    rows, workers = (20000, 2) if args.smoke else (args.rows, args.workers)
    if args.one:
        method, row = args.one.split("/", 1)
        print(json.dumps(run_one(row, method, rows, workers)))
        return
    if not args.build:
        ap.error("--build BUILD_DIR/python is required")
    harness.header("bench/python/pools.py", sys.argv[1:])
    names = [f"{m}/{r}" for m in METHODS for r in ROWS]
    for tag, interpreter, results in harness.run_rows(
            __file__, args.build, names, ["--rows", str(rows), "--workers", str(workers)]
            + (["--smoke"] if args.smoke else []), only=args.only):
        print()
        print(table_text(f"Python {harness.version_of(interpreter)} ({interpreter})", rows,
                         workers, results))
        sys.stdout.flush()
    sys.exit(1 if harness.run_rows.failed else 0)


if __name__ == "__main__":
    main()
