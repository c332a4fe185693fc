#!/usr/bin/env python3
"""bench/python/scale.py: a 10M-record image (50M with --full) built from JSON Lines with the
command line, then read by 4 forked and 4 spawn workers, against the same for 1M records.

Steps (one run, side by side):
1. A JSON Lines file of N records (bench/python's records, each with its "key"), written once.
2. `python -m permafrost build --jsonl FILE --key key -o OUT.pfi` (the streaming builders): wall
   time and the build process's peak RSS (getrusage of the child). In a build without
   permafrost.build_dict, the child loads the file into a dict and saves freeze() of it instead
   (the output says which), whose peak RSS is the dict's.
3. Readers, for each interpreter the build made a module for: the parent opens the image, then
   WORKERS forked workers (they inherit the mapping) and WORKERS spawn workers (a Pool whose
   initializer receives the root view: multiprocessing passes the image file's descriptor) each
   look up LOOKUPS random keys, every field read, checksum verified.
     lookup ns     a worker's CPU time per lookup (its thread's CPU clock, so time the other
                   workers and the machine's other processes hold the cores is not counted;
                   median worker, all workers run at once); best of --repeat rounds, the 1M and
                   10M rows alternating in each round so that both see the same machine
     wall ns       the same worker's wall-clock time per lookup (inflated by every runnable
                   process on the machine: compare within one run only)
     vs 1M         lookup ns over the 1M-record image's, same interpreter and start method;
                   "vs goal" divides it by the goal's 1.5 (<= 1.00: met)
     private %     a worker's USS growth over its pass as a share of the image (worst worker);
                   "vs goal" divides it by the goal's 0.25%
     2M %          share of the worker's resident image pages mapped as 2 MiB pages
                   (FilePmdMapped / Rss of the mapping in smaps, lowest worker): the image is
                   mapped 2 MiB-aligned with MADV_HUGEPAGE, and on a file system that keeps its
                   page cache in 2 MiB folios (ext4, XFS on Linux 6.x) a random lookup then
                   misses the TLB no more at 10M than at 1M records
Both start methods look up the same key distribution (uniform random keys, a per-worker seed) with
the same loop, on an image opened the same way (permafrost.open in the parent; spawn workers map
the descriptor the pickle carries).
Goals (issue 17), judged on the large image's rows (the 1M rows are the baseline, "base"):
private growth <= 0.25% of the image; lookups within 1.5x of the 1M table's (not judged with
--smoke: at 20,000 records a worker's own few pages are a large share).

--small-pages runs the readers with transparent huge pages disabled for them (prctl
PR_SET_THP_DISABLE, inherited by forked and spawned workers): the image is then mapped 4 KiB at a
time, the comparison that shows what the 2 MiB mappings are worth.

usage: scale.py [--smoke | --full] [--rows N] [--workers N] [--lookups N] [--repeat N]
                [--small-pages] [--only TAG] --build BUILD_DIR/python
"""
import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import harness

_table = None


def _keep(table):
    global _table
    _table = table


def _huge_share(table):
    """FilePmdMapped / Rss of the mapping that holds table's bytes (None without such lines)."""
    import permafrost
    start = permafrost._core._range(table)[0]
    inside, fields = False, {}
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):  # a mapping's first line: "lo-hi perms ..."
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= start < hi
            elif inside and head in ("Rss:", "FilePmdMapped:"):
                fields[head] = int(line.split()[1])
    if "FilePmdMapped:" not in fields or not fields.get("Rss:"):
        return None
    return fields["FilePmdMapped:"] / fields["Rss:"]


def _pass(rows, lookups, seed):
    """Looks up `lookups` random keys of the kept table; returns (ok, CPU seconds, wall
    seconds, USS growth, share of the image's resident pages mapped 2 MiB at a time)."""
    import permafrost
    rng = random.Random(seed)
    picks = [rng.randrange(rows) for _ in range(lookups)]
    expected = sum(len("name-%d" % i) + i + int(i * 0.25) + 3 for i in picks)
    before = permafrost.memory().uss
    cpu, wall = time.thread_time(), time.perf_counter()
    total = 0
    for i in picks:
        r = _table[harness.key(i)]
        total += len(r["name"]) + r["id"] + int(r["score"]) + len(r["tags"])
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return (total == expected, cpu, wall, permafrost.memory().uss - before,
            _huge_share(_table))


def forked(image, rows, workers, lookups):
    import permafrost
    _keep(permafrost.open(image))
    out_r, out_w = os.pipe()
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.write(out_w, (json.dumps(_pass(rows, lookups, w)) + "\n").encode())
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(out_w)
    buf = b""
    while buf.count(b"\n") < workers:
        chunk = os.read(out_r, 65536)
        if not chunk:
            raise SystemExit("a forked worker died")
        buf += chunk
    for pid in pids:
        os.waitpid(pid, 0)
    return [json.loads(line) for line in buf.splitlines()]


def spawned(image, rows, workers, lookups):
    import permafrost
    root = permafrost.open(image)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_keep, initargs=(root,)) as pool:
        return pool.starmap(_pass, [(rows, lookups, 100 + w) for w in range(workers)],
                            chunksize=1)


def run_one(how, image, rows, workers, lookups):
    results = (forked if how == "fork" else spawned)(image, rows, workers, lookups)
    if not all(r[0] for r in results):
        raise SystemExit(f"{how}: a worker read wrong values")
    median = sorted(results, key=lambda r: r[1])[len(results) // 2]
    huge = [r[4] for r in results if r[4] is not None]
    return {"lookup_ns": 1e9 * median[1] / lookups, "wall_ns": 1e9 * median[2] / lookups,
            "private": max(r[3] for r in results), "image": os.path.getsize(image),
            "huge": min(huge) if huge else None}


def best(a, b):
    """Two rounds of one row: the faster median worker, the larger private growth."""
    if a is None:
        return b
    keep = dict(min(a, b, key=lambda r: r["lookup_ns"]))
    keep["private"] = max(a["private"], b["private"])
    return keep


# Builds the image in a fresh interpreter; prints how and that process's peak RSS in KiB.
BUILD = """
import json, resource, runpy, sys, permafrost
if hasattr(permafrost, "build_dict"):
    how = "`python -m permafrost build`"
    sys.argv = ["permafrost", "build", "--jsonl", sys.argv[1], "--key", "key", "-o", sys.argv[2],
                "-q"]
    try:
        runpy.run_module("permafrost", run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
else:
    how = "freeze() of the loaded dict (no build_dict in this build)"
    with open(sys.argv[1], "rb") as f:
        table = {r["key"]: r for r in map(json.loads, f)}
    permafrost.freeze(table).save(sys.argv[2])
print(how)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def build(interpreter, env, data, image):
    """(how, seconds, peak RSS bytes) of building the image from data."""
    t = time.perf_counter()
    proc = subprocess.run([interpreter, "-c", BUILD, data, image], env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    how, peak = proc.stdout.splitlines()[-2:]
    return how, time.perf_counter() - t, int(peak) * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 and 2,000 records: checks only")
    ap.add_argument("--full", action="store_true", help="50M records instead of 10M")
    ap.add_argument("--rows", type=int, help="records of the large image (default 10M)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--lookups", type=int, default=1000000, help="per worker")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of reader rows (1M and 10M alternating); the best is kept")
    ap.add_argument("--small-pages", action="store_true",
                    help="readers with transparent huge pages off (4 KiB mappings)")
    ap.add_argument("--only", metavar="TAG", help="one interpreter of the build (e.g. debian)")
    ap.add_argument("--build", help="the build's python/ directory")
    ap.add_argument("--one", nargs=2, metavar=("HOW", "IMAGE"), help="run one reader row here")
    ap.add_argument("--image-rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    big = 20000 if args.smoke else args.rows or (50000000 if args.full else 10000000)
    small = 2000 if args.smoke else 1000000
    workers, lookups = (2, 2000) if args.smoke else (args.workers, args.lookups)
    if args.one:
        if args.small_pages:
            import ctypes
            pr_set_thp_disable = 41
            if ctypes.CDLL(None, use_errno=True).prctl(pr_set_thp_disable, 1, 0, 0, 0) != 0:
                raise SystemExit("prctl(PR_SET_THP_DISABLE) failed: errno %d" % ctypes.get_errno())
        print(json.dumps(run_one(args.one[0], args.one[1], args.image_rows, workers, lookups)))
        return
    if not args.build:
        ap.error("--build BUILD_DIR/python is required")
    harness.header("bench/python/scale.py", sys.argv[1:])
    builds = [(t, i) for t, i in harness.interpreters(args.build)
              if not args.only or t == args.only]
    tmp = tempfile.mkdtemp(prefix="pf-bench-scale-")
    failed = False
    try:
        images = {}
        for rows in (small, big):
            data = os.path.join(tmp, f"records-{rows}.jsonl")
            t = time.perf_counter()
            harness.write_jsonl(data, rows)
            print(f"{rows:,} records: {os.path.getsize(data) / harness.MiB:,.0f} MiB of JSON Lines "
                  f"written in {time.perf_counter() - t:.0f} s")
            tag, interpreter = builds[0]
            env = dict(os.environ, PYTHONPATH=os.path.join(args.build, tag))
            image = os.path.join(tmp, f"records-{rows}.pfi")
            how, seconds, peak = build(interpreter, env, data, image)
            os.unlink(data)
            images[rows] = image
            print(f"{rows:,} records: built with {tag}'s {how} in "
                  f"{seconds:.1f} s, peak RSS {peak / harness.MiB:,.0f} MiB; image "
                  f"{os.path.getsize(image) / harness.MiB:,.1f} MiB")
            sys.stdout.flush()
        for tag, interpreter in builds:
            env = dict(os.environ, PYTHONPATH=os.path.join(args.build, tag))
            results = {}
            for _ in range(1 if args.smoke else args.repeat):
                for rows in (small, big):
                    for how in ("fork", "spawn"):
                        proc = subprocess.run(
                            [interpreter, os.path.abspath(__file__), "--one", how, images[rows],
                             "--image-rows", str(rows), "--workers", str(workers), "--lookups",
                             str(lookups)] + (["--smoke"] if args.smoke else []) +
                            (["--small-pages"] if args.small_pages else []),
                            env=env, capture_output=True, text=True, timeout=7200)
                        if proc.returncode != 0:
                            print(f"{tag} {how} {rows}: FAILED\n{proc.stderr[-4000:]}",
                                  file=sys.stderr)
                            failed = True
                            continue
                        results[(rows, how)] = best(results.get((rows, how)),
                                                    json.loads(proc.stdout.splitlines()[-1]))
            print(f"\nPython {harness.version_of(interpreter)} ({interpreter}), {workers} workers "
                  f"per start method, {lookups:,} random lookups each")
            print("%-12s %-6s %9s %9s %8s %6s %7s %9s %7s %5s %7s" % (
                "records", "start", "image MiB", "lookup ns", "wall ns", "vs 1M", "vs goal",
                "private %", "vs goal", "2M %", "goal"))
            for (rows, how), r in sorted(results.items()):
                base = results.get((small, how))
                ratio = r["lookup_ns"] / base["lookup_ns"] if base else float("nan")
                share = 100.0 * max(r["private"], 0) / r["image"]
                ok = share <= 0.25 and ratio <= 1.5
                huge = "-" if r["huge"] is None else "%.0f" % (100.0 * r["huge"])
                print("%-12s %-6s %9.1f %9.0f %8.0f %6.2f %7.2f %9.3f %7.2f %5s %7s" % (
                    f"{rows:,}", how, r["image"] / harness.MiB, r["lookup_ns"], r["wall_ns"],
                    ratio, ratio / 1.5, share, share / 0.25, huge,
                    "-" if args.smoke else "base" if rows == small else
                    "met" if ok else "NOT MET"))
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
