#!/usr/bin/env python3
"""bench/python/freeze_memory.py: what freeze() costs in memory, and what trim() gives back.

One fresh process per interpreter builds bench/python's table as a dict (ROWS records), freezes
it, drops the dict and trims, reading /proc/self/status at each step:
  dict MiB          anonymous memory the dict took (RssAnon after building it, less before)
  frozen MiB        the frozen bytes (what the arena holds)
  peak extra MiB    the process's peak RSS during freeze() above its RSS just before (VmHWM,
                    reset through /proc/self/clear_refs): what freezing needs beside the dict
  goal              issue 17: peak extra <= 1.1x the frozen bytes
  after del+gc MiB  anonymous memory left of the dict after `del d; gc.collect()`: RssAnon less
                    before, less the frozen arena's own anonymous pages (smaps Anonymous of its
                    range: 0 for a memfd arena, whose pages are shared memory, not RssAnon)
  after trim MiB    the same after permafrost.trim() (glibc malloc_trim): what the allocator keeps
Memory is exact (not timing), so the numbers do not depend on the machine's load.

usage: freeze_memory.py [--smoke] [--rows N] --build BUILD_DIR/python
"""
import gc
import json
import os
import sys

import harness


def arena_anonymous(address, size):
    """Anonymous bytes of the mappings of /proc/self/smaps that overlap [address, address+size)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(" ", 1)[0]
            if "-" in first and ":" not in first:
                lo, hi = (int(x, 16) for x in first.split("-"))
                inside = lo < address + size and address < hi
            elif inside and line.startswith("Anonymous:"):
                total += int(line.split()[1]) * 1024
    return total


def one(rows):
    import permafrost
    gc.collect()
    permafrost.trim()
    base = harness.status()["RssAnon"]
    d = {harness.key(i): harness.record(i) for i in range(rows)}
    gc.collect()
    with_dict = harness.status()
    harness.reset_peak()
    frozen = permafrost.freeze(d)
    peak = harness.status()["VmHWM"]
    address, frozen_bytes = permafrost._core._range(frozen)
    del d
    gc.collect()
    after_gc = harness.status()["RssAnon"] - arena_anonymous(address, frozen_bytes)
    permafrost.trim()
    after_trim = harness.status()["RssAnon"] - arena_anonymous(address, frozen_bytes)
    return {"dict": with_dict["RssAnon"] - base, "frozen": frozen_bytes,
            "peak_extra": peak - with_dict["VmRSS"], "after_gc": after_gc - base,
            "after_trim": after_trim - base}


def main():
    args, rows = harness.parse_args(__doc__)
    if args.one:
        print(json.dumps(one(rows)))
        return
    harness.header(sys.argv[0], sys.argv[1:])
    build = os.path.abspath(args.build)
    mib = harness.MiB
    print(f"{rows:,} rows; MiB; goal (issue 17): peak extra during freeze() <= 1.1x frozen")
    print("%-12s %9s %9s %11s %7s %8s %14s %15s" % (
        "interpreter", "dict", "frozen", "peak extra", "x fro", "goal", "after del+gc",
        "after trim"))
    extra = ["--rows", str(rows)]
    for tag, interpreter, results in harness.run_rows(sys.argv[0], build, ["freeze"], extra):
        r = results.get("freeze")
        if r is None:
            continue
        ratio = r["peak_extra"] / r["frozen"]
        if r["frozen"] <= 0 or r["dict"] <= 0:
            print(f"{tag}: nonsense measurement {r}", file=sys.stderr)
            harness.run_rows.failed = True
        print("%-12s %9.1f %9.1f %11.1f %7.2f %8s %8.1f (%3.0f%%) %8.1f (%3.0f%%)" % (
            tag, r["dict"] / mib, r["frozen"] / mib, r["peak_extra"] / mib, ratio,
            "-" if args.smoke else "met" if ratio <= 1.1 else "NOT MET",
            r["after_gc"] / mib, 100 * r["after_gc"] / r["dict"], r["after_trim"] / mib,
            100 * r["after_trim"] / r["dict"]))
        sys.stdout.flush()
    sys.exit(1 if harness.run_rows.failed else 0)


if __name__ == "__main__":
    main()
