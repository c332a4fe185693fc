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
     lookup ns     a worker's time per lookup (median worker; all workers run at once)
     vs 1M         that over the 1M-record image's, same interpreter and start method
     private %     a worker's USS growth over its pass as a share of the image (worst worker)
Goals (issue 17): private growth <= 0.25% of the image; lookups within 1.5x of the 1M table's
(not judged with --smoke: at 20,000 records a worker's own few pages are a large share).

usage: scale.py [--smoke | --full] [--rows N] [--workers N] [--lookups N] [--only TAG]
                --build BUILD_DIR/python
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


def _pass(rows, lookups, seed):
    """Looks up `lookups` random keys of the kept table; returns (ok, seconds, USS growth)."""
    import permafrost
    rng = random.Random(seed)
    picks = [rng.randrange(rows) for _ in range(lookups)]
    expected = sum(len("name-%d" % i) + i + int(i * 0.25) + 3 for i in picks)
    before = permafrost.memory().uss
    t = time.perf_counter()
    total = 0
    for i in picks:
        r = _table[harness.key(i)]
        total += len(r["name"]) + r["id"] + int(r["score"]) + len(r["tags"])
    seconds = time.perf_counter() - t
    return total == expected, seconds, permafrost.memory().uss - before


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
    if not all(ok for ok, _, _ in results):
        raise SystemExit(f"{how}: a worker read wrong values")
    seconds = sorted(s for _, s, _ in results)
    return {"lookup_ns": 1e9 * seconds[len(seconds) // 2] / lookups,
            "private": max(g for _, _, g in results), "image": os.path.getsize(image)}


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
    ap.add_argument("--only", metavar="TAG", help="one interpreter of the build (e.g. debian)")
    ap.add_argument("--build", help="the build's python/ directory")
    ap.add_argument("--one", nargs=2, metavar=("HOW", "IMAGE"), help="run one reader row here")
    ap.add_argument("--image-rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    big = 20000 if args.smoke else args.rows or (50000000 if args.full else 10000000)
    small = 2000 if args.smoke else 1000000
    workers, lookups = (2, 2000) if args.smoke else (args.workers, args.lookups)
    if args.one:
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
            for rows in (small, big):
                for how in ("fork", "spawn"):
                    proc = subprocess.run(
                        [interpreter, os.path.abspath(__file__), "--one", how, images[rows],
                         "--image-rows", str(rows), "--workers", str(workers), "--lookups",
                         str(lookups)] + (["--smoke"] if args.smoke else []),
                        env=env, capture_output=True, text=True, timeout=7200)
                    if proc.returncode != 0:
                        print(f"{tag} {how} {rows}: FAILED\n{proc.stderr[-4000:]}",
                              file=sys.stderr)
                        failed = True
                        continue
                    results[(rows, how)] = json.loads(proc.stdout.splitlines()[-1])
            print(f"\nPython {harness.version_of(interpreter)} ({interpreter}), {workers} workers "
                  f"per start method, {lookups:,} random lookups each")
            print("%-12s %-6s %10s %9s %6s %10s %6s" % ("records", "start", "image MiB",
                                                       "lookup ns", "vs 1M", "private %", "goal"))
            for (rows, how), r in sorted(results.items()):
                base = results.get((small, how))
                ratio = r["lookup_ns"] / base["lookup_ns"] if base else float("nan")
                share = 100.0 * max(r["private"], 0) / r["image"]
                ok = share <= 0.25 and (rows == small or ratio <= 1.5)
                print("%-12s %-6s %10.1f %9.0f %6.2f %10.3f %6s" % (
                    f"{rows:,}", how, r["image"] / harness.MiB, r["lookup_ns"], ratio, share,
                    "-" if args.smoke else "met" if ok else "NOT MET"))
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
