#!/usr/bin/env python3
"""bench/python: a 1M-row read-only table held seven ways, side by side, on every interpreter.

Table: string keys "key:NNNNNNN" -> records {"name": str, "id": int, "score": float,
"tags": [str, int, str]}. Each row of the output builds the table one way in the parent, forks
WORKERS workers that each do one full lookup pass (every key, in a scrambled order, touching
every field, checksum verified), and measures while all workers are alive:

  copied/worker %   the worker's USS growth during its pass, as a share of the table's bytes
                    (what its reads copied; the query keys are made one at a time and freed)
  total PSS MiB     PSS of the parent + all workers (smaps_rollup)
  lookup ns         wall time of a worker's pass / rows (median worker; workers run at once)
  lookup vs dict    that, over the dict row's
  data MiB          the table's bytes: dict = the parent's RSS growth while building it;
                    permafrost = the frozen bytes; lmdb/sqlite3 = the file; marisa = trie + value
                    blob + offsets; numpy = the arrays
  data vs dict      that, over the dict row's
  build s, vs dict  time to build the structure from the rows (permafrost: freeze() of the
                    built dict; freeze_native: freeze_native() of it), and that over the time to
                    build the dict

Rows: dict; dict + gc.freeze(); lmdb, marisa (marisa-trie), numpy (sorted keys, searchsorted),
sqlite3 (file, mmap) where the module exists for the interpreter; permafrost.freeze();
permafrost.freeze_native() where the interpreter has it (CPython 3.12 and 3.13): the same dict
code reads a real dict whose objects are immortal and write-protected (data = the arena's bytes).
Memory figures come from permafrost.memory() (the library's memstat). The header gives what a
4 KiB page fault costs the machine at the time (harness.fault_cost): the dict rows' workers pay
a copy-on-write fault per page their reads copy, so their lookup ns, and every ratio to them,
move with it from machine to machine. Under each interpreter's
table: the permafrost row against issue 19's goals (frozen bytes vs the dict's heap and
marisa-trie's, lookup and freeze() vs the dict's), and the freeze_native row against issue 21's
(arena pages copied, total PSS vs the arena + idle workers, lookup and freeze_native() vs the
dict's), each ratio beside its goal.

usage: frozen_table.py [--smoke] [--rows N] [--workers N] --build BUILD_DIR/python
       (runs itself once per interpreter built there; --one runs one interpreter's rows)
       frozen_table.py --breakdown [--rows N] [--build BUILD_DIR/python]: where the freeze()
       table's bytes go, per node kind, and a key table miss's cost against a hit
       (table_bytes.py), instead of the rows
"""
import argparse
import gc
import json
import marshal
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20


def key(i):
    return "key:%07d" % i


def record(i):
    return {"name": "name-%d" % i, "id": i, "score": i * 0.25, "tags": ["t%d" % (i % 7), i % 5, "x"]}


def expected_checksum(rows):
    total = 0
    for i in range(rows):
        total += len("name-%d" % i) + i + int(i * 0.25) + 3
    return total


def stride_for(n):
    from math import gcd
    s = 7368787 % n or 1
    while gcd(s, n) != 1:
        s += 1
    return s


# ----- the peers: build(rows) -> (structure, data bytes); lookup pass(structure, rows) -> checksum

def build_dict(rows):
    import permafrost
    before = permafrost.memory().rss
    d = {key(i): record(i) for i in range(rows)}
    return d, permafrost.memory().rss - before


def pass_dict(d, rows):
    total, i, s = 0, 0, stride_for(rows)
    for _ in range(rows):
        i = (i + s) % rows
        r = d[key(i)]
        total += len(r["name"]) + r["id"] + int(r["score"]) + len(r["tags"])
    return total


def build_dict_gc_freeze(rows):
    d, size = build_dict(rows)
    gc.freeze()
    return d, size


def build_permafrost(rows):
    """Builds the dict (not timed), freezes it (timed), drops the dict before the workers fork."""
    import permafrost
    d = {key(i): record(i) for i in range(rows)}
    t = time.perf_counter()
    frozen = permafrost.freeze(d)
    elapsed = time.perf_counter() - t
    del d
    gc.collect()
    return frozen, None, elapsed


def build_native(rows):
    """Builds the dict (not timed), freeze_native()s it (timed), drops the dict before fork."""
    import permafrost
    d = {key(i): record(i) for i in range(rows)}
    t = time.perf_counter()
    frozen = permafrost.freeze_native(d, name="bench-native")
    elapsed = time.perf_counter() - t
    del d
    gc.collect()
    return frozen, permafrost.native_arena(frozen).size, elapsed


def encode(i):
    r = record(i)
    return marshal.dumps((r["name"], r["id"], r["score"], r["tags"]))


def build_lmdb(rows, tmp):
    import lmdb
    path = os.path.join(tmp, "lmdb")
    env = lmdb.open(path, map_size=8 << 30, subdir=True, lock=False, sync=False)
    with env.begin(write=True) as txn:
        for i in range(rows):
            txn.put(key(i).encode(), encode(i), append=True)
    env.sync(True)
    env.close()
    return path, os.path.getsize(os.path.join(path, "data.mdb"))


def pass_lmdb(path, rows):
    import lmdb
    env = lmdb.open(path, subdir=True, readonly=True, lock=False)
    total, i, s = 0, 0, stride_for(rows)
    with env.begin(buffers=True) as txn:
        get = txn.get
        for _ in range(rows):
            i = (i + s) % rows
            name, ident, score, tags = marshal.loads(get(key(i).encode()))
            total += len(name) + ident + int(score) + len(tags)
    _keep.append(env)  # stays mapped until the worker exits: its pages count in PSS
    return total


def build_marisa(rows, tmp):
    import array
    import marisa
    ks = marisa.Keyset()
    for i in range(rows):
        ks.push_back(key(i))
    trie = marisa.Trie()
    trie.build(ks)
    blobs = [b""] * rows
    for i in range(rows):
        blobs[ks.key_id(i)] = encode(i)
    offsets = array.array("Q", [0])
    for b in blobs:
        offsets.append(offsets[-1] + len(b))
    blob = b"".join(blobs)
    del blobs
    return (trie, blob, offsets), trie.io_size() + len(blob) + offsets.itemsize * len(offsets)


def pass_marisa(s3, rows):
    import marisa
    trie, blob, offsets = s3
    view = memoryview(blob)
    agent = marisa.Agent()
    total, i, s = 0, 0, stride_for(rows)
    for _ in range(rows):
        i = (i + s) % rows
        agent.set_query(key(i))
        trie.lookup(agent)
        k = agent.key_id()
        name, ident, score, tags = marshal.loads(view[offsets[k]:offsets[k + 1]])
        total += len(name) + ident + int(score) + len(tags)
    return total


def build_numpy(rows, tmp):
    import numpy as np
    keys = np.array([key(i).encode() for i in range(rows)], dtype="S11")
    arr = np.zeros(rows, dtype=[("name", "U16"), ("id", "i8"), ("score", "f8"), ("tag0", "U4"),
                                ("tag1", "i8"), ("tag2", "U4")])
    for i in range(rows):
        r = record(i)
        arr[i] = (r["name"], r["id"], r["score"], r["tags"][0], r["tags"][1], r["tags"][2])
    return (keys, arr), keys.nbytes + arr.nbytes


def pass_numpy(s2, rows):
    keys, arr = s2
    search = keys.searchsorted
    total, i, s = 0, 0, stride_for(rows)
    for _ in range(rows):
        i = (i + s) % rows
        r = arr[search(key(i).encode())]
        total += len(r["name"]) + int(r["id"]) + int(r["score"]) + len((r["tag0"], r["tag1"], r["tag2"]))
    return total


def build_sqlite(rows, tmp):
    import sqlite3
    path = os.path.join(tmp, "table.db")
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, name TEXT, id INTEGER, score REAL, tags BLOB)"
               " WITHOUT ROWID")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                   ((key(i), "name-%d" % i, i, i * 0.25, marshal.dumps(record(i)["tags"]))
                    for i in range(rows)))
    db.commit()
    db.close()
    return path, os.path.getsize(path)


def pass_sqlite(path, rows):
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    db.execute("PRAGMA mmap_size=%d" % (8 << 30))
    q = "SELECT name, id, score, tags FROM t WHERE k = ?"
    execute = db.execute
    total, i, s = 0, 0, stride_for(rows)
    for _ in range(rows):
        i = (i + s) % rows
        name, ident, score, tags = execute(q, (key(i),)).fetchone()
        total += len(name) + ident + int(score) + len(marshal.loads(tags))
    _keep.append(db)  # stays open (and mapped) until the worker exits: its pages count in PSS
    return total


_keep = []  # a worker's open environments and connections


def build_nothing(rows, tmp):
    return None, 0


def pass_nothing(structure, rows):
    return _expected[rows]


def have(module):
    import importlib.util
    if module == "permafrost.freeze_native":  # CPython 3.12 and 3.13 only
        import permafrost
        return not permafrost._core._native_unsupported()
    return importlib.util.find_spec(module) is not None


# ----- one row: build, fork, measure ----------------------------------------------------------

def run_row(name, build, lookup, rows, workers, expected):
    import permafrost
    gc.collect()
    t0 = time.perf_counter()
    built = build()
    build_s = time.perf_counter() - t0
    structure, size = built[:2]
    if len(built) == 3:  # the builder timed the part that counts
        build_s = built[2]
    gc.collect()
    permafrost.trim()  # every row: what building freed goes back to the kernel before fork
    if size is None:  # permafrost: the frozen bytes
        size = permafrost._core._range(structure)[1]
    children = []
    for _ in range(workers):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                before = permafrost.memory().uss
                t = time.perf_counter()
                total = lookup(structure, rows)
                elapsed = time.perf_counter() - t
                grown = permafrost.memory().uss - before
                os.write(ready_w, json.dumps([total, elapsed, grown]).encode())
                os.read(go_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        children.append((pid, ready_r, go_w))
    results = []
    for pid, ready_r, _ in children:
        data = b""
        while not data.endswith(b"]"):
            chunk = os.read(ready_r, 4096)
            if not chunk:
                raise SystemExit("%s: worker %d died" % (name, pid))
            data += chunk
        results.append(json.loads(data))
    arena_copied = None
    if name in ("permafrost", "freeze_native"):
        frozen = permafrost.native_arena(structure) if name == "freeze_native" else structure
        arena_copied = max(permafrost._sharing_audit(frozen, pid, os.getpid())[4]
                           for pid, _, _ in children)
    pss = permafrost.memory().pss + sum(permafrost.memory(pid).pss for pid, _, _ in children)
    for pid, ready_r, go_w in children:
        os.write(go_w, b"x")
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
    for total, _, _ in results:
        if total != expected:
            raise SystemExit("%s: wrong checksum %d (expected %d)" % (name, total, expected))
    times = sorted(r[1] for r in results)
    copied = max(r[2] for r in results)
    return {"row": name, "copied_pct": 100.0 * max(copied, 0) / size if size else 0.0, "pss": pss,
            "lookup_ns": 1e9 * times[len(times) // 2] / rows, "data": size, "build_s": build_s,
            "arena_pages_copied": arena_copied}, structure


ROWS_BY_NAME = {
    "dict": (None, lambda rows, tmp: build_dict(rows), pass_dict),
    "dict + gc.freeze()": (None, lambda rows, tmp: build_dict_gc_freeze(rows), pass_dict),
    "lmdb": ("lmdb", build_lmdb, pass_lmdb),
    "marisa-trie": ("marisa", build_marisa, pass_marisa),
    "numpy": ("numpy", build_numpy, pass_numpy),
    "sqlite3": ("sqlite3", build_sqlite, pass_sqlite),
    "permafrost": (None, lambda rows, tmp: build_permafrost(rows), pass_dict),
    "freeze_native": ("permafrost.freeze_native", lambda rows, tmp: build_native(rows),
                      pass_dict),
    "no table (baseline)": (None, build_nothing, pass_nothing),
}


_expected = {}


def run_one(name, rows, workers):
    """One row in this (fresh) process, so no row inherits another's heap. None: no module."""
    module, build, lookup = ROWS_BY_NAME[name]
    if module and not have(module):
        return None
    _expected[rows] = expected_checksum(rows)
    tmp = tempfile.mkdtemp(prefix="pf-bench-python-")
    try:
        result, structure = run_row(name, lambda: build(rows, tmp), lookup, rows, workers,
                                    _expected[rows])
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(version, rows, workers, results):
    base = results[0]
    lines = ["%s, %d rows, %d workers" % (version, rows, workers),
             "%-20s %10s %10s %9s %7s %9s %7s %8s %7s" % (
                 "row", "copied/w%", "totPSS MiB", "lookup ns", "vs dict", "data MiB", "vs dict",
                 "build s", "vs dict")]
    for r in results:
        if r["row"] == "no table (baseline)":
            lines.append("%-20s %10s %10.1f  (parent + %d idle workers, no table)" % (
                r["row"], "-", r["pss"] / MiB, workers))
            continue
        lines.append("%-20s %10.2f %10.1f %9.0f %7.2f %9.1f %7.2f %8.2f %7.2f" % (
            r["row"], r["copied_pct"], r["pss"] / MiB, r["lookup_ns"],
            r["lookup_ns"] / base["lookup_ns"], r["data"] / MiB, r["data"] / base["data"],
            r["build_s"], r["build_s"] / base["build_s"]))
    pf = [r for r in results if r["row"] == "permafrost"][0]
    idle = [r for r in results if r["row"] == "no table (baseline)"][0]
    lines.append("permafrost: %d arena pages copied by the worst worker (pagemap); total PSS %.2fx "
                 "dict's, %.2fx (frozen bytes + the baseline's parent and %d idle workers)" % (
                     pf["arena_pages_copied"], pf["pss"] / base["pss"],
                     pf["pss"] / (pf["data"] + idle["pss"]), workers))
    marisa = [r for r in results if r["row"] == "marisa-trie"]
    lines.append("issue 19 goals, permafrost: frozen bytes %.3fx the dict's heap (goal <= "
                 "0.10x)%s; lookup + field access %.2fx dict's (goal <= 0.3x); freeze() %.2fx "
                 "building the dict (goal <= 0.5x)" % (
                     pf["data"] / base["data"],
                     ", %.2fx marisa-trie's (goal <= 1.0x)" % (pf["data"] / marisa[0]["data"])
                     if marisa else "", pf["lookup_ns"] / base["lookup_ns"],
                     pf["build_s"] / base["build_s"]))
    for nat in (r for r in results if r["row"] == "freeze_native"):
        lines.append("freeze_native (issue 21 goals): %d arena pages copied by the worst worker "
                     "(pagemap; goal 0); total PSS %.2fx dict's, %.2fx (arena bytes + the "
                     "baseline's parent and %d idle workers; goal <= 1.05x); lookup %.2fx dict's "
                     "(goal <= 1.0x); freeze_native() %.2fx building the dict (goal <= 1.0x)" % (
                         nat["arena_pages_copied"], nat["pss"] / base["pss"],
                         nat["pss"] / (nat["data"] + idle["pss"]), workers,
                         nat["lookup_ns"] / base["lookup_ns"], nat["build_s"] / base["build_s"]))
    return "\n".join(lines)


def print_breakdown(rows):
    """--breakdown: where the 1M-row freeze() table's bytes go, and a key table miss's cost."""
    import permafrost
    import table_bytes
    d, heap = build_dict(rows)
    frozen = permafrost.freeze(d)
    del d
    gc.collect()
    parts, size = table_bytes.breakdown(frozen)
    print("Python %s, %d rows: permafrost.freeze() of bench/python's table" % (
        sys.version.split()[0], rows))
    print(table_bytes.format_breakdown(parts, size, heap))
    s = stride_for(rows)
    order = [(j * s) % rows for j in range(rows)]
    present = [key(i) for i in order]
    absent = ["kez:%07d" % i for i in order]  # same length, never a key
    small = permafrost.freeze({key(i): record(i) for i in range(16)})
    small_present = [key(i % 16) for i in order]
    small_absent = ["kez:%07d" % (i % 16) for i in order]
    print(table_bytes.format_miss_cost(table_bytes.miss_cost(frozen, present, absent, small,
                                                             small_present, small_absent)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 rows: checks, not numbers")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--build", help="the build's python/ directory (one package dir per interpreter)")
    ap.add_argument("--one", metavar="ROW", help="run one row in this interpreter, print JSON")
    ap.add_argument("--breakdown", action="store_true",
                    help="instead of the rows: where the freeze() table's bytes go (per node "
                         "kind) and a key table miss's cost against a hit")
    args = ap.parse_args()
    rows = 20000 if args.smoke else args.rows
    if args.breakdown and not args.build:
        print_breakdown(rows)
        return
    if args.one:
        print(json.dumps(run_one(args.one, rows, args.workers)))
        return
    if not args.build:
        ap.error("--build BUILD_DIR/python is required")
    manifest = os.path.join(args.build, "interpreters.txt")
    with open(manifest) as f:
        builds = [line.split("=", 1) for line in f.read().split()]
    print("bench/python: %s, %s, %d CPUs, %s" % (
        platform.node() and "host", platform.platform(), os.cpu_count(),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("command: %s" % " ".join(["bench/python/frozen_table.py"] + sys.argv[1:]))
    if not args.breakdown:  # the dict rows' workers pay one copy-on-write fault per page copied
        import harness
        first, cow = harness.fault_cost(4 * MiB if args.smoke else 64 * MiB)
        print("page faults here now: %.1f us a first touch, %.1f us a copy-on-write (4 KiB "
              "pages, harness.fault_cost): the dict rows' lookup ns include the second for "
              "every page their workers copy" % (first, cow))
    failed = False
    for tag, interpreter in builds:
        env = dict(os.environ, PYTHONPATH=os.path.join(args.build, tag))
        if args.breakdown:
            print()
            sys.stdout.flush()
            failed |= subprocess.run([interpreter, os.path.abspath(__file__), "--breakdown",
                                      "--rows", str(rows)], env=env).returncode != 0
            continue
        results = []
        for name in ROWS_BY_NAME:
            proc = subprocess.run([interpreter, os.path.abspath(__file__), "--one", name, "--rows",
                                   str(rows), "--workers", str(args.workers)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print("%s (%s), %s: FAILED\n%s" % (tag, interpreter, name, proc.stderr),
                      file=sys.stderr)
                failed = True
                continue
            row = json.loads(proc.stdout)
            if row:
                results.append(row)
        if not results or results[0]["row"] != "dict":
            continue
        version = subprocess.run([interpreter, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True).stdout.strip()
        print()
        print(table("Python %s (%s)" % (version, interpreter), rows, args.workers,
                    results))
        sys.stdout.flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
