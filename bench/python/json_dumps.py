#!/usr/bin/env python3
"""bench/python/json_dumps.py: JSON out of frozen records, permafrost.dumps against json and ujson.

The records are bench/python's ({"name": str, "id": int, "score": float, "tags": [str, int, str]},
keys "key:NNNNNNN"). Two workloads, each timed in interleaved rounds (median of the rounds) in one
process per interpreter:

  one record   the mean time of one call over every record of the table in turn: what a server
               spends per response body
  whole table  one call on the whole table (ROWS records in a dict): an export or a bulk response

Rows (seconds per call; "x json" = the faster json row's time / this row's time, so > 1 is faster):
  json.dumps(dict)                      the stdlib, default arguments (its cached encoder)
  json.dumps(dict, same text)           ensure_ascii=False, separators=(",", ":"): dumps's text
  ujson.dumps(dict)                     Debian's python3-ujson (/usr/bin/python3 only), its
                                        default options and ensure_ascii=False, the faster
  json.dumps(frozen, default=thaw)      the way before permafrost.dumps: json_default thaws
  json.dumps(frozen, cls=JSONEncoder)   permafrost.JSONEncoder, json's default options
  permafrost.dumps(dict)                the C++ writer on the ordinary dict
  permafrost.dumps(frozen)              the C++ writer on the frozen view (bytes, no objects made)

The json and ujson rows return str; permafrost.dumps returns the UTF-8 bytes a response sends.
Goals (issue 18): permafrost.dumps(frozen) >= 2x json.dumps of the equal dict and >= ujson, for
one record and for the whole table. --smoke checks that every row's output decodes to the same
value and that permafrost.dumps's bytes are json's same-text output, on 2,000 rows.

usage: json_dumps.py [--smoke] [--rows N] [--rounds N] --build BUILD_DIR/python
       (runs itself once per interpreter built there; --one runs this interpreter)
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

GOAL_VS_JSON = 2.0
GOAL_VS_UJSON = 1.0


def key(i):
    return "key:%07d" % i


def record(i):
    return {"name": "name-%d" % i, "id": i, "score": i * 0.25, "tags": ["t%d" % (i % 7), i % 5, "x"]}


def peers(table, frozen):
    """name -> (one-record callable, whole-table callable); None where the module is missing."""
    import permafrost
    same_text = {"ensure_ascii": False, "separators": (",", ":")}
    out = {
        "json.dumps(dict)": (json.dumps, json.dumps),
        "json.dumps(dict, same text)": (lambda r: json.dumps(r, **same_text),
                                        lambda t: json.dumps(t, **same_text)),
    }
    try:
        import ujson
        out["ujson.dumps(dict)"] = (ujson.dumps, ujson.dumps)
        out["ujson.dumps(dict, ensure_ascii=False)"] = (
            lambda r: ujson.dumps(r, ensure_ascii=False),
            lambda t: ujson.dumps(t, ensure_ascii=False))
    except ImportError:
        pass
    thaw = permafrost.json_default
    out.update({
        "json.dumps(frozen, default=thaw)": (lambda r: json.dumps(r, default=thaw),
                                             lambda t: json.dumps(t, default=thaw)),
        "json.dumps(frozen, cls=JSONEncoder)": (
            lambda r: json.dumps(r, cls=permafrost.JSONEncoder),
            lambda t: json.dumps(t, cls=permafrost.JSONEncoder)),
        "permafrost.dumps(dict)": (permafrost.dumps, permafrost.dumps),
        "permafrost.dumps(frozen)": (permafrost.dumps, permafrost.dumps),
    })
    frozen_rows = {n for n in out if "frozen" in n}
    return out, frozen_rows


def check(table, frozen, callables, frozen_rows):
    """Every row encodes the same value; permafrost.dumps writes json's same-text bytes."""
    import permafrost
    want = json.loads(json.dumps(table))
    for name, (_, whole) in callables.items():
        got = whole(frozen if name in frozen_rows else table)
        if json.loads(got) != want:
            raise SystemExit("%s: encodes another value" % name)
    same = json.dumps(table, ensure_ascii=False, separators=(",", ":")).encode()
    if permafrost.dumps(frozen) != same or permafrost.dumps(table) != same:
        raise SystemExit("permafrost.dumps: not json's text")


def run_one(rows, rounds):
    import permafrost
    table = {key(i): record(i) for i in range(rows)}
    frozen = permafrost.freeze(table)
    callables, frozen_rows = peers(table, frozen)
    check({k: table[k] for k in list(table)[:200]}, permafrost.freeze(
        {k: table[k] for k in list(table)[:200]}), callables, frozen_rows)
    keys = list(table)
    plain_records = [table[k] for k in keys]
    frozen_records = [frozen[k] for k in keys]  # views made once, outside the timing
    times = {name: ([], []) for name in callables}
    for _ in range(rounds):
        for name, (one, whole) in callables.items():
            records = frozen_records if name in frozen_rows else plain_records
            t = time.perf_counter()
            for r in records:
                one(r)
            times[name][0].append((time.perf_counter() - t) / rows)
            t = time.perf_counter()
            whole(frozen if name in frozen_rows else table)
            times[name][1].append(time.perf_counter() - t)
    return {name: (statistics.median(a), statistics.median(b)) for name, (a, b) in times.items()}


def report(version, rows, rounds, medians):
    json_best = [min(medians[n][i] for n in medians if n.startswith("json.dumps(dict")) for i in (0, 1)]
    ujson_names = [n for n in medians if n.startswith("ujson")]
    lines = ["%s, %d rows, median of %d interleaved rounds" % (version, rows, rounds),
             "%-40s %12s %8s %12s %8s" % ("row", "1 record us", "x json", "table s", "x json")]
    for name, (one, whole) in medians.items():
        lines.append("%-40s %12.3f %8.2f %12.3f %8.2f" % (
            name, one * 1e6, json_best[0] / one, whole, json_best[1] / whole))
    pf = medians["permafrost.dumps(frozen)"]
    for i, what in ((0, "one record"), (1, "whole table")):
        vs_json = json_best[i] / pf[i]
        line = "goal, %s: permafrost.dumps(frozen) %.2fx the faster json.dumps (goal >= %.1fx: %s)" % (
            what, vs_json, GOAL_VS_JSON, "met" if vs_json >= GOAL_VS_JSON else "NOT met")
        if ujson_names:
            vs_ujson = min(medians[n][i] for n in ujson_names) / pf[i]
            line += "; %.2fx the faster ujson (goal >= %.1fx: %s)" % (
                vs_ujson, GOAL_VS_UJSON, "met" if vs_ujson >= GOAL_VS_UJSON else "NOT met")
        else:
            line += "; no ujson for this interpreter"
        lines.append(line)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="2,000 rows, 1 round: checks, not numbers")
    ap.add_argument("--rows", type=int, default=500000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--build", help="the build's python/ directory (one package dir per interpreter)")
    ap.add_argument("--one", action="store_true", help="run in this interpreter, print JSON")
    args = ap.parse_args()
    rows, rounds = (2000, 1) if args.smoke else (args.rows, args.rounds)
    if args.one:
        print(json.dumps(run_one(rows, rounds)))
        return
    if not args.build:
        ap.error("--build BUILD_DIR/python is required")
    with open(os.path.join(args.build, "interpreters.txt")) as f:
        builds = [line.split("=", 1) for line in f.read().split()]
    print("bench/python/json_dumps: %s, %d CPUs, %s" % (
        platform.platform(), os.cpu_count(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("command: %s" % " ".join(["bench/python/json_dumps.py"] + sys.argv[1:]))
    failed = False
    for tag, interpreter in builds:
        env = dict(os.environ, PYTHONPATH=os.path.join(args.build, tag))
        proc = subprocess.run([interpreter, os.path.abspath(__file__), "--one", "--rows",
                               str(rows), "--rounds", str(rounds)], env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            print("%s (%s): FAILED\n%s" % (tag, interpreter, proc.stderr), file=sys.stderr)
            failed = True
            continue
        version = subprocess.run([interpreter, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True).stdout.strip()
        print()
        print(report("Python %s (%s)" % (version, interpreter), rows, rounds,
                     json.loads(proc.stdout)))
        sys.stdout.flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
