#!/usr/bin/env python3
"""bench/python/lookup_ab.py: one worker's lookup + field reads, two builds of permafrost A-B.

Answers "did a change of the frozen encoding make lookups slower?" where frozen_table.py cannot:
its 4 workers share 2 cores and their wall times move with the machine's load. Here each
measurement is a fresh process (one interpreter) that builds bench/python's table as a dict,
freezes it with the build under test (or keeps the dict: the `dict` row), and times full lookup
passes (every key in a scrambled order, every field read, checksum verified) in CPU time, best of
PASSES. Processes of the rows run in turn, ROUNDS times (dict, A, B, dict, A, B, ...); the
medians and B / A are printed. Build A is typically a checkout of the commit before the change,
built with `cmake --build BUILD --target permafrost_python_<tag>`.

usage: lookup_ab.py [--smoke] [--rows N] [--rounds N] --a BUILD_A/python --b BUILD_B/python
                    [--tag pyenv3.12]    (the interpreter both builds have, from interpreters.txt)
       --smoke: 20,000 rows, one round, checks the passes' checksums only
"""
import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import harness

PASSES = 5


def one(rows, frozen):
    d = {harness.key(i): harness.record(i) for i in range(rows)}
    if frozen:
        import permafrost
        table = permafrost.freeze(d)
        del d
        gc.collect()
    else:
        table = d
    expected = harness.expected_checksum(rows)
    best = float("inf")
    for _ in range(PASSES):
        c0 = time.process_time()
        total, _ = harness.lookup_pass(table, rows)
        best = min(best, time.process_time() - c0)
        if total != expected:
            raise SystemExit("lookup_ab: wrong checksum %d, expected %d" % (total, expected))
    return best / rows * 1e9


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        rows, frozen = int(sys.argv[2]), sys.argv[3] == "frozen"
        print(json.dumps({"ns": one(rows, frozen)}))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--a", required=True, help="build A's python/ directory (before)")
    ap.add_argument("--b", required=True, help="build B's python/ directory (after)")
    ap.add_argument("--tag", help="interpreter tag (default: B's first)")
    args = ap.parse_args()
    rows, rounds = (20000, 1) if args.smoke else (args.rows, args.rounds)
    tags = dict(harness.interpreters(args.b))
    tag = args.tag or harness.interpreters(args.b)[0][0]
    if tag not in tags or not os.path.isdir(os.path.join(args.a, tag)):
        raise SystemExit("lookup_ab: both builds need interpreter tag %r" % tag)
    interpreter = tags[tag]
    harness.header("bench/python/lookup_ab.py", sys.argv[1:])
    print("%s (%s), %d rows, %d rounds, CPU time per lookup + 4 field reads, best of %d passes"
          % (harness.version_of(interpreter), tag, rows, rounds, PASSES))
    here = os.path.dirname(os.path.abspath(__file__))
    runs = {"dict": [], "A": [], "B": []}
    for _ in range(rounds):
        for row, build, mode in (("dict", args.b, "dict"), ("A", args.a, "frozen"),
                                 ("B", args.b, "frozen")):
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [os.path.join(os.path.abspath(build), tag), here]))
            out = subprocess.run([interpreter, "-B", os.path.abspath(__file__), "--one",
                                  str(rows), mode], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit("lookup_ab: %s failed:\n%s" % (row, out.stderr))
            runs[row].append(json.loads(out.stdout)["ns"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, label in (("dict", "dict"), ("A", "permafrost A (%s)" % args.a),
                     ("B", "permafrost B (%s)" % args.b)):
        print("%-60s %8.0f ns  (runs: %s)" % (label, med[k], ", ".join("%.0f" % x for x in runs[k])))
    print("B / A: %.2fx; A / dict: %.2fx; B / dict: %.2fx"
          % (med["B"] / med["A"], med["A"] / med["dict"], med["B"] / med["dict"]))


if __name__ == "__main__":
    main()
