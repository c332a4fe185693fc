#!/usr/bin/env python3
"""bench/python/servers.py: real pre-fork servers over a 500,000-record table, frozen against a
plain dict in one run, against issue 18's goal: per-worker private growth <= 16 MiB over a full
pass of the table for the frozen table.

Rows (the examples under examples/python/ do the work; see their docstrings):
  gunicorn   Flask (flask_app.py) under gunicorn --preload -w 4, jsonify of every record
  uwsgi      wsgi_app.py under uWSGI --master --processes 4 (the table built in the master)
  celery     celery_app.py under `celery worker -P prefork -c 4` (the table loaded when the main
             process imports the app, before it forks the pool); a file-system broker, and each
             pool process reads a quarter of the table in one task (no HTTP)
             Each of the two also runs with the table as an image built beforehand (this script
             freezes and saves it: the offline build step of README's "Deploying") that the
             master opens ("image" rows), and reports for every table its boot time (the server
             command's start to every worker answering, interpreter start-up included) and the
             fleet's total PSS (master + workers) after the pass.
  dl-fork    PyTorch DataLoader, num_workers=4, fork: USS growth over one epoch
  dl-spawn   the same under spawn: USS over a no-table worker's (frozen = an image file)
Columns: the table's bytes; the largest worker's private growth; that over the goal (<= 1.00
meets it); that as a share of the dict table's bytes; frozen growth over dict growth; boot
seconds and total PSS (server rows only).

usage: servers.py [--smoke] [--rows N] [--only ROW...]   (Debian's /usr/bin/python3 with the
       build's package on PYTHONPATH; a row whose packages are missing says so and is skipped)
"""
import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))

import servers  # noqa: E402  (examples/python/servers.py)

MiB = 1 << 20
GOAL = 16 * MiB


def run_row(row, rows, tmp):
    """(frozen result, dict result, frozen growth list, dict growth list), or a skip reason."""
    if row in ("gunicorn", "uwsgi", "celery"):
        why = servers.missing(row)
        if why:
            return why
        image = os.path.join(tmp, "records-%d.pfi" % rows)
        if not os.path.exists(image):  # the offline build, once for both servers
            import records
            table, _ = records.load_table("frozen", rows)
            table.save(image)
            table.close()
        measure = servers.measure_celery if row == "celery" else (
            lambda table, rows, image: servers.measure(row, table, rows, image=image))
        frozen, plain, opened = (measure(t, rows, image=image)
                                 for t in ("frozen", "dict", "prebuilt"))
        return frozen, plain, frozen["growth"], plain["growth"], opened
    if importlib.util.find_spec("torch") is None:
        return "no torch for %s (Debian's python3-torch)" % sys.executable
    import dataloader
    method = row.split("-")[1]
    baseline = dataloader.measure("none", method, rows) if method == "spawn" else None
    frozen = dataloader.measure("frozen" if method == "fork" else "image", method, rows,
                                image_dir=tmp)
    plain = dataloader.measure("dict", method, rows)
    return (frozen, plain, dataloader.private_cost(frozen, baseline),
            dataloader.private_cost(plain, baseline), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20,000 rows: checks, not numbers")
    ap.add_argument("--rows", type=int, default=500000)
    ap.add_argument("--only", nargs="+",
                    choices=["gunicorn", "uwsgi", "celery", "dl-fork", "dl-spawn"])
    args = ap.parse_args()
    # The servers run from examples/python (--chdir): a relative PYTHONPATH entry, as README's
    # `PYTHONPATH=build/python/debian`, must name the same directory there.
    if os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep) if p)
    rows = 20000 if args.smoke else args.rows
    names = args.only or ["gunicorn", "uwsgi", "celery", "dl-fork", "dl-spawn"]
    print("bench/python/servers: %s, %d CPUs, Python %s, %s" % (
        platform.platform(), os.cpu_count(), platform.python_version(),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("command: %s" % " ".join(["bench/python/servers.py"] + sys.argv[1:]))
    print("%d rows, 4 workers; growth = the largest worker's private growth over a full pass, MiB"
          % rows)
    print("%-9s %-7s %9s %9s %8s %9s %10s %7s %11s" % (
        "row", "table", "table MiB", "growth", "vs goal", "of dict%", "vs dict", "boot s",
        "totPSS MiB"))
    failed = False
    with tempfile.TemporaryDirectory(prefix="pf-bench-servers-") as tmp:
        for name in names:
            out = run_row(name, rows, tmp)
            if isinstance(out, str):
                print("%-9s skipped: %s" % (name, out))
                continue
            frozen, plain, frozen_growth, dict_growth, opened = out
            worst_f, worst_d = max(frozen_growth), max(dict_growth)
            lines = [("frozen" if name != "dl-spawn" else "image", frozen, worst_f),
                     ("dict", plain, worst_d)]
            if opened:
                lines.append(("image", opened, max(opened["growth"])))
            for label, r, worst in lines:
                print("%-9s %-7s %9.1f %9.1f %8.2f %9.1f %10s %7s %11s" % (
                    name, label, r["table_bytes"] / MiB, worst / MiB, worst / GOAL,
                    100.0 * worst / plain["table_bytes"],
                    "%.3f" % (worst / worst_d) if label != "dict" and worst_d > 0 else "-",
                    "%.2f" % r["boot_s"] if "boot_s" in r else "-",
                    "%.1f" % (r["total_pss"] / MiB) if "total_pss" in r else "-"))
                if label != "dict" and (worst > GOAL or worst_d <= worst):
                    failed = True
            sys.stdout.flush()
    if failed:
        print("FAILED: a frozen row missed the goal or did not beat its dict peer")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
