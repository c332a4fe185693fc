#!/usr/bin/env python3
"""rss_savings reference row: CPython holding the same table as a dict, after gc.freeze().

Builds a dict of the same rows as bench/rss_savings (key "user:NNNNNNN" -> tuple of three strings
and four numbers, the same survivors), calls gc.freeze() (CPython's own advice for pre-fork
servers), forks workers that each look up every key and read every field, then speaks the
worker_host.hpp protocol: prints one READY line and waits for a line on stdin before releasing the
workers. The driver measures everything from outside. Standard library only.

With --permafrost the dict is frozen with permafrost.freeze() (and dropped) instead of
gc.freeze(): the same lookups then read views of the frozen arena. With --native (CPython 3.12
and 3.13) it is copied with permafrost.freeze_native() (and dropped): the same lookups read a
real dict of immortal objects in a write-protected arena.

usage: cow_dict.py [--rows N] [--workers N] [--churn-mib N (ignored)] [--permafrost | --native]
"""
import argparse
import gc
import os
import sys
import time

MASK = (1 << 64) - 1


def mix(x):  # splitmix64, as worker_host.hpp
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


POOL = "".join(chr(97 + mix(j) % 26) for j in range(65536 + 64))


def universe(rows):
    return rows + rows // 3 + 1


def make_row(i):  # byte for byte as make_row() in worker_host.hpp
    s = mix(i)
    name_len = 8 + (s & 7)
    name_off = (s >> 3) & 0xFFFF
    email_len = 11 + (s >> 19) % 12
    email_off = (s >> 23) & 0xFFFF
    city_len = 5 + (s >> 39) % 8
    city_off = (s >> 42) & 0xFFFF
    return (POOL[name_off:name_off + name_len], POOL[email_off:email_off + email_len] + "@mail.test",
            POOL[city_off:city_off + city_len], i * 7919, (i * 37 % 100000) / 100.0,
            (s >> 20) % 10000, i & 0xFF)


def lookup_order(rows):
    u = universe(rows)
    stride = 7368787 % u
    from math import gcd
    while stride == 0 or gcd(stride, u) != 1:
        stride += 1
    i = 0
    for _ in range(u):
        i = (i + stride) % u
        if i % 4 != 3:
            yield "user:%07d" % i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--churn-mib", type=int, default=0)
    ap.add_argument("--permafrost", action="store_true", help="permafrost.freeze() the table")
    ap.add_argument("--native", action="store_true", help="permafrost.freeze_native() the table")
    args = ap.parse_args()

    t0 = time.perf_counter()
    table = {}
    for i in range(universe(args.rows)):
        if i % 4 != 3:
            table["user:%07d" % i] = make_row(i)
    build_ms = (time.perf_counter() - t0) * 1e3
    t1 = time.perf_counter()
    if args.permafrost:
        import permafrost
        table = permafrost.freeze(table, name="cow_dict")
        gc.collect()
        permafrost.trim()  # the dropped dict's heap goes back to the kernel, not to the workers
    elif args.native:
        import permafrost
        table = permafrost.freeze_native(table, name="cow_dict")
        gc.collect()
        permafrost.trim()
    else:
        gc.freeze()
    freeze_ms = (time.perf_counter() - t1) * 1e3

    results_r, results_w = os.pipe()
    go_r, go_w = os.pipe()
    sys.stdout.flush()
    pids = []
    t2 = time.perf_counter()
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(results_r)
            keys = list(lookup_order(args.rows))  # built first: not part of the lookup time
            s = 0
            for timed in (False, True):  # a warm-up pass, then the steady state, as in C++
                t = time.perf_counter()
                for k in keys:
                    name, email, city, ident, score, visits, flags = table[k]
                    s += len(name) + len(email) + ord(city[0]) + ident + visits
            ns = (time.perf_counter() - t) * 1e9 / max(1, len(keys))
            os.write(results_w, ("%.1f %d\n" % (ns, s & MASK)).encode())
            os.read(go_r, 1)
            os._exit(0)
        pids.append(pid)
    fork_ms = (time.perf_counter() - t2) * 1e3
    os.close(go_r)
    os.close(results_w)
    lines = []
    with os.fdopen(results_r) as rf:
        for _ in range(args.workers):
            lines.append(rf.readline().split())
    lookups = sorted(float(x[0]) for x in lines)
    checksum = sum(int(x[1]) for x in lines) & MASK
    print("READY parent=%d workers=%s build_ms=%.1f freeze_ms=%.2f fork_ms=%.2f lookup_ns=%.1f "
          "table_bytes=0 table=auto checksum=%d" % (os.getpid(), ",".join(map(str, pids)), build_ms,
                                                    freeze_ms, fork_ms, lookups[len(lookups) // 2],
                                                    checksum), flush=True)
    sys.stdin.readline()
    os.close(go_w)
    rc = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        rc |= status != 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
