#!/usr/bin/env python3
"""bench/python/sharing.py: what sending frozen views to other processes costs, and the
alternatives docs/design.md weighed (section "Python", "Sharing with other processes").

1. Lookups in an anonymous arena (huge pages where THP allows) against the same graph in a memfd
   arena (4 KiB pages: shared memory gets no huge pages by default), in one process, interleaved
   rounds, median. A freeze() result stays anonymous until it is first sent to another process.
2. One round trip to a warm spawn worker (pool.apply) carrying: a plain int; a view of a freeze()
   result (multiprocessing.reduction.DupFd: the resource sharer passes the memfd); the same view
   by reopening /proc/SENDER/fd/N (the alternative not taken); a view of an image (DupFd of a
   read-only descriptor of its file).
   Median over ROUNDS round trips, milliseconds.

usage: sharing.py [--smoke] [--rows N] [--rounds N] --build BUILD_DIR/python
"""
import argparse
import gc
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

import harness


class ByProcFd:
    """The /proc/PID/fd alternative: the receiver opens the sender's descriptor by path."""

    def __init__(self, view):
        import permafrost
        from permafrost import _stores
        self.fd = _stores._memfd_descriptor(permafrost._core._store_of(view))
        self.size = permafrost._core._range(view)[1]

    def __reduce__(self):
        return (_reopen, (os.getpid(), self.fd, self.size))


def _reopen(pid, fd, size):
    from permafrost import _stores
    mine = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _stores._map_shared(mine, size)
    finally:
        os.close(mine)


def _echo(x):
    return 0


def lookups(rows, rounds):
    import permafrost
    d = {harness.key(i): harness.record(i) for i in range(rows)}
    anonymous, shared = permafrost.freeze(d), permafrost.freeze(d)
    del d
    gc.collect()
    permafrost._core._share(permafrost._core._store_of(shared))  # moved into a memfd arena
    keys = [harness.key(i) for i in range(rows)]
    random.Random(1).shuffle(keys)

    def one(table):
        t = time.perf_counter()
        for k in keys:
            table[k]["id"]
        return (time.perf_counter() - t) / rows * 1e9

    times = {"anonymous": [], "memfd": []}
    for _ in range(rounds):
        times["anonymous"].append(one(anonymous))
        times["memfd"].append(one(shared))
    return {k: statistics.median(v) for k, v in times.items()}


def round_trips(rows, rounds):
    import permafrost
    tmp = tempfile.mkdtemp(prefix="pf-bench-sharing-")
    try:
        table = permafrost.freeze({harness.key(i): harness.record(i) for i in range(rows)})
        path = os.path.join(tmp, "t.pfi")
        table.save(path)
        image = permafrost.open(path)
        payloads = {"plain int": 1, "view, DupFd (memfd)": table,
                    "view, /proc/PID/fd": ByProcFd(table), "view of an image, DupFd (its file)": image}
        out = {name: [] for name in payloads}
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            for name, payload in payloads.items():  # warm: the worker maps each graph once
                pool.apply(_echo, (payload,))
            for _ in range(rounds):
                for name, payload in payloads.items():
                    t = time.perf_counter()
                    pool.apply(_echo, (payload,))
                    out[name].append((time.perf_counter() - t) * 1e3)
        return {name: statistics.median(v) for name, v in out.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 rows, 3 rounds: checks only")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--build", help="the build's python/ directory")
    ap.add_argument("--one", metavar="PART", help="run one part here, print JSON")
    args = ap.parse_args()
    rows, rounds = (20000, 3) if args.smoke else (args.rows, args.rounds)
    if args.one:
        run = lookups if args.one == "lookups" else round_trips
        print(json.dumps(run(rows, rounds if args.one == "lookups" else rounds * 30)))
        return
    if not args.build:
        ap.error("--build BUILD_DIR/python is required")
    harness.header("bench/python/sharing.py", sys.argv[1:])
    for tag, interpreter, r in harness.run_rows(
            __file__, args.build, ["lookups", "round trips"],
            ["--rows", str(rows), "--rounds", str(rounds)]):
        print(f"\nPython {harness.version_of(interpreter)} ({interpreter}), {rows} rows")
        if "lookups" in r:
            a, m = r["lookups"]["anonymous"], r["lookups"]["memfd"]
            print(f"lookup + field, ns: anonymous arena {a:.0f}, memfd arena {m:.0f} "
                  f"({m / a:.2f}x)")
        if "round trips" in r:
            base = r["round trips"]["plain int"]
            print("round trip to a warm spawn worker, ms (median): " + ", ".join(
                f"{name} {ms:.2f} ({ms / base:.1f}x)" for name, ms in r["round trips"].items()))
        sys.stdout.flush()
    sys.exit(1 if harness.run_rows.failed else 0)


if __name__ == "__main__":
    main()
