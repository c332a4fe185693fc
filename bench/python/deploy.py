#!/usr/bin/env python3
"""bench/python/deploy.py: booting a pre-fork server fleet over a 1M-row table, five ways.

The table is bench/python's, as a JSON Lines file (one record per line, its key in "key"), the
usual hand-off from a data pipeline. Each row starts a master process (as `gunicorn --preload`
does) that loads the table one way and forks WORKERS workers; each worker answers one lookup
("ready"), then reads every record once (steady state, as after serving a while).
  boot s          from the master's first line of code (interpreter start-up excluded) to the
                  last worker's first answer
  load s          what the master (or, without preload, each worker) spent loading the table
  total PSS MiB   master + workers after every worker's full pass (smaps_rollup)
  per worker MiB  a worker's USS after its pass (worst worker): its own memory
Rows:
  dict in master            json.loads of every line into a dict, then fork (gunicorn --preload)
  freeze() in master        the same dict, frozen, the dict dropped and trimmed, then fork
  image in master           permafrost.open() of the image built offline, then fork
  image in each worker      fork first; each worker opens the image itself (no --preload; also
                            what spawn/forkserver workers do)
  dict in each worker       fork first; each worker loads the JSON Lines itself
The image is built once, offline, by a separate process (the build step of a deploy: CI or cron)
that loads the JSON Lines into a dict, freezes it and saves it; its time is printed on its own
line and counts in no row's boot time.

usage: deploy.py [--smoke] [--rows N] [--workers N] [--only TAG] --build BUILD_DIR/python
"""
import time

T0 = time.time()  # noqa: E402  the master's start, for boot time

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import harness  # noqa: E402

ROWS = ("dict in master", "freeze() in master", "image in master", "image in each worker",
        "dict in each worker")


def load_dict(path):
    with open(path, "rb") as f:
        return {r["key"]: r for r in map(json.loads, f)}


def load(how, data, image):
    import permafrost
    if how == "dict":
        return load_dict(data)
    if how == "freeze":
        frozen = permafrost.freeze(load_dict(data))
        gc.collect()
        permafrost.trim()
        return frozen
    return permafrost.open(image)


def master(row, data, image, rows, workers):
    """This process is the master: load, fork, collect the workers' reports."""
    import permafrost
    how = {"dict": "dict", "freeze()": "freeze", "image": "image"}[row.split(" in ")[0]]
    preload = row.endswith("in master")
    t = time.perf_counter()
    table = load(how, data, image) if preload else None
    load_s = time.perf_counter() - t if preload else None
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(report_r)
                os.close(go_w)
                t = time.perf_counter()
                mine = table if preload else load(how, data, image)
                my_load = time.perf_counter() - t
                first = mine[harness.key(rows // 2)]["id"]
                ready = time.time()
                total, _ = harness.lookup_pass(mine, rows)
                line = json.dumps([ready, my_load, first, total, permafrost.memory().uss])
                os.write(report_w, line.encode() + b"\n")
                os.read(go_r, 1)  # stay alive (holding the table) until measured
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(report_w)
    os.close(go_r)
    buf = b""
    while buf.count(b"\n") < workers:
        chunk = os.read(report_r, 65536)
        if not chunk:
            raise SystemExit(f"{row}: a worker died")
        buf += chunk
    reports = [json.loads(line) for line in buf.splitlines()]
    pss = permafrost.memory().pss + sum(permafrost.memory(p).pss for p in pids)
    os.close(go_w)
    for p in pids:
        os.waitpid(p, 0)
    expected = harness.expected_checksum(rows)
    for ready, my_load, first, total, uss in reports:
        if first != rows // 2 or total != expected:
            raise SystemExit(f"{row}: a worker read wrong values")
    return {"boot_s": max(r[0] for r in reports) - T0,
            "load_s": load_s if preload else max(r[1] for r in reports),
            "pss": pss, "worker_uss": max(r[4] for r in reports)}


# The offline build step: its own process, as a CI job or cron script would be.
BUILD = """
import sys, permafrost, deploy
permafrost.freeze(deploy.load_dict(sys.argv[1])).save(sys.argv[2])
"""


def build_image(interpreter, env, data, image):
    t = time.perf_counter()
    env = dict(env, PYTHONPATH=env["PYTHONPATH"] + os.pathsep + os.path.dirname(__file__))
    subprocess.run([interpreter, "-c", BUILD, data, image], env=env, check=True)
    return time.perf_counter() - t


def table_text(title, rows, workers, image_s, image_bytes, results):
    lines = [f"{title}, {rows} rows, {workers} workers",
             f"image built offline (a separate process: load, freeze(), save()): {image_s:.1f} s, "
             f"{image_bytes / harness.MiB:.1f} MiB",
             "%-22s %7s %7s %12s %15s" % ("row", "boot s", "load s", "totPSS MiB",
                                          "per worker MiB")]
    for row in ROWS:
        r = results.get(row)
        if r:
            lines.append("%-22s %7.2f %7.2f %12.1f %15.1f" % (
                row, r["boot_s"], r["load_s"], r["pss"] / harness.MiB,
                r["worker_uss"] / harness.MiB))
    img, d = results.get("image in master"), results.get("dict in master")
    if img and d:
        lines.append(f"image in master vs dict in master: boot {img['boot_s'] / d['boot_s']:.3f}x,"
                     f" total PSS {img['pss'] / d['pss']:.3f}x")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 rows, 2 workers: checks only")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--build", help="the build's python/ directory")
    ap.add_argument("--only", metavar="TAG", help="one interpreter of the build (e.g. debian)")
    ap.add_argument("--one", metavar="ROW", help="be the master of one row, print JSON")
    ap.add_argument("--data", help="(--one) the JSON Lines file")
    ap.add_argument("--image", help="(--one) the image built from it")
    args = ap.parse_args()
    rows, workers = (20000, 2) if args.smoke else (args.rows, args.workers)
    if args.one:
        print(json.dumps(master(args.one, args.data, args.image, rows, workers)))
        return
    if not args.build:
        ap.error("--build BUILD_DIR/python is required")
    harness.header("bench/python/deploy.py", sys.argv[1:])
    tmp = tempfile.mkdtemp(prefix="pf-bench-deploy-")
    try:
        data = os.path.join(tmp, "table.jsonl")
        harness.write_jsonl(data, rows)
        failed = False
        for tag, interpreter in harness.interpreters(args.build):
            if args.only and tag != args.only:
                continue
            env = dict(os.environ, PYTHONPATH=os.path.join(args.build, tag))
            image = os.path.join(tmp, f"table-{tag}.pfi")
            image_s = build_image(interpreter, env, data, image)
            one = ["--rows", str(rows), "--workers", str(workers), "--data", data,
                   "--image", image]
            results = {}
            for row in ROWS:
                proc = subprocess.run([interpreter, os.path.abspath(__file__), "--one", row, *one],
                                      env=env, capture_output=True, text=True, timeout=3600)
                if proc.returncode != 0:
                    print(f"{tag}, {row}: FAILED\n{proc.stderr[-4000:]}", file=sys.stderr)
                    failed = True
                    continue
                results[row] = json.loads(proc.stdout.splitlines()[-1])
            print()
            print(table_text(f"Python {harness.version_of(interpreter)} ({interpreter})", rows,
                             workers, image_s, os.path.getsize(image), results))
            sys.stdout.flush()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
