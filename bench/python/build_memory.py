#!/usr/bin/env python3
"""bench/python/build_memory.py: build_dict() from a generator against dict() from the same one.

One fresh process per row and interpreter pulls bench/python's table (ROWS records, harness.key
and harness.record) from a generator, either into dict(gen) or into permafrost.build_dict(gen),
reading /proc/self/status around it:
  idle MiB     the process's RSS before the build (interpreter, permafrost, harness imported)
  peak MiB     its peak RSS during the build above that (VmHWM, reset through
               /proc/self/clear_refs just before): what the build needs
  frozen MiB   the frozen bytes build_dict() wrote (its arena)
  x frozen     peak / frozen; goal (issue 17): build_dict <= 1.3x
  s            wall time of the build; goal: build_dict <= 1.0x dict(gen), in the same run
Memory is exact; the times depend on the machine's load (both rows run under the same load).

usage: build_memory.py [--smoke] [--rows N] --build BUILD_DIR/python
"""
import gc
import json
import os
import sys
import time

import harness


def one(row, rows):
    import permafrost
    source = ((harness.key(i), harness.record(i)) for i in range(rows))
    gc.collect()
    permafrost.trim()
    idle = harness.status()["VmRSS"]
    harness.reset_peak()
    start = time.perf_counter()
    built = dict(source) if row == "dict" else permafrost.build_dict(source)
    seconds = time.perf_counter() - start
    peak = harness.status()["VmHWM"]
    frozen = permafrost._core._range(built)[1] if row == "build_dict" else 0
    if row == "build_dict" and len(built) != rows:
        raise SystemExit(f"build_dict made {len(built)} rows, not {rows}")
    return {"idle": idle, "peak": peak - idle, "frozen": frozen, "seconds": seconds}


def main():
    args, rows = harness.parse_args(__doc__)
    if args.one:
        print(json.dumps(one(args.one, rows)))
        return
    harness.header(sys.argv[0], sys.argv[1:])
    build = os.path.abspath(args.build)
    mib = harness.MiB
    print(f"{rows:,} rows from a generator; MiB; goals (issue 17): build_dict peak <= 1.3x "
          "frozen, time <= 1.0x dict(gen)")
    print("%-12s %-11s %7s %9s %9s %8s %8s %8s %8s" % (
        "interpreter", "row", "idle", "peak", "frozen", "x fro", "s", "x dict", "goals"))
    extra = ["--rows", str(rows)]
    for tag, _, results in harness.run_rows(sys.argv[0], build, ["dict", "build_dict"], extra):
        d, b = results.get("dict"), results.get("build_dict")
        if d is None or b is None:
            continue
        if b["frozen"] <= 0 or b["peak"] <= 0 or d["peak"] <= 0:
            print(f"{tag}: nonsense measurement {results}", file=sys.stderr)
            harness.run_rows.failed = True
            continue
        memory = b["peak"] / b["frozen"]
        speed = b["seconds"] / d["seconds"]
        goals = "-" if args.smoke else "/".join(
            ["met" if memory <= 1.3 else "NOT MET", "met" if speed <= 1.0 else "NOT MET"])
        print("%-12s %-11s %7.1f %9.1f %9s %8s %8.2f %8s %8s" % (
            tag, "dict(gen)", d["idle"] / mib, d["peak"] / mib, "-", "-", d["seconds"], "1.00",
            ""))
        print("%-12s %-11s %7.1f %9.1f %9.1f %8.2f %8.2f %8.2f %8s" % (
            tag, "build_dict", b["idle"] / mib, b["peak"] / mib, b["frozen"] / mib, memory,
            b["seconds"], speed, goals))
        sys.stdout.flush()
    sys.exit(1 if harness.run_rows.failed else 0)


if __name__ == "__main__":
    main()
