#!/usr/bin/env python3
"""PyTorch DataLoader workers over a Dataset of records (records.py): the complaint of pytorch
issue 13246 ("memory grows in DataLoader workers with a Python list/dict dataset"), measured with
a plain list of dicts and with frozen records side by side.

    python3 examples/python/dataloader.py                    # fork and spawn, 500,000 records
    options: --rows N  --workers N (4)  --batch N (256)  --start-method fork|spawn|both
             --table dict|frozen|image|all

The Dataset holds the table and builds one training sample per record (a feature tensor and a
label). Tables: "dict" a list of dicts (the peer); "frozen" permafrost.freeze() of it; "image" the
frozen table saved to a file and mapped with permafrost.open(). A spawned worker receives the
Dataset by pickle: a list of dicts arrives as a full private copy, a view of an image as a small
reference that maps the same page-cache pages. A view made by freeze() goes by reference too where
permafrost registers its views with multiprocessing's pickler (freeze_views_go_by_reference());
otherwise it arrives by value, so spawn runs use the image and add "frozen" only then.

Per worker, from /proc/PID/smaps_rollup (permafrost.memory):
  fork   USS growth over one full pass (epoch): what reading the records copied.
  spawn  USS at the end of the pass minus that of a worker whose Dataset holds no table (it makes
         each record on the fly): the private memory the table costs a spawned worker, most of
         which arrives when the pickled Dataset is unpacked, before the first batch.
"""
import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import permafrost  # noqa: E402
import records  # noqa: E402

MiB = 1 << 20


class RecordsDataset:
    """Index -> (features, label) from a table of records, or from records made on demand when
    table is None (the no-table baseline)."""

    def __init__(self, table, rows):
        self.table = table
        self.rows = rows

    def __len__(self):
        return self.rows

    def __getitem__(self, i):
        import torch
        rec = self.table[i] if self.table is not None else records.record(i)
        features = torch.tensor([rec["score"], float(rec["id"] % 1000), len(rec["name"]),
                                 len(rec["email"]), len(rec["tags"]), len(rec["address"]["city"])],
                                dtype=torch.float32)
        return features, int(rec["active"])


def freeze_views_go_by_reference():
    """Whether multiprocessing sends a view made by freeze() to a spawned worker as a reference
    (the worker maps the same memory) rather than by value (it freezes its own copy): true when
    permafrost registers its views with multiprocessing's pickler."""
    from multiprocessing.reduction import ForkingPickler
    return permafrost.FrozenList in getattr(ForkingPickler, "_extra_reducers", {})


def measure(table_kind, start_method, rows, workers=4, batch=256, image_dir=None):
    """One pass of a DataLoader (num_workers=workers, persistent workers, shuffled with a fixed
    seed) over the table held as table_kind ("dict", "frozen", "image" or "none"). Returns a
    dict: table bytes, per-worker USS at the first batch and at the end of the pass (bytes)."""
    import warnings

    import torch
    from torch.utils.data import DataLoader
    # More workers than this machine's cores is the point of the measurement, not a mistake.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    if table_kind == "none":
        table, table_bytes = None, 0
    else:
        table, table_bytes = records.load_table(table_kind, rows, keyed=False,
                                                image_dir=image_dir)
    loader = DataLoader(RecordsDataset(table, rows), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(0), num_workers=workers,
                        multiprocessing_context=start_method, persistent_workers=True)
    it = iter(loader)
    seen = labels = 0
    # Batches arrive in order and worker k makes batches k, k + workers, ...: once `workers`
    # batches are in, every worker has started and made one.
    for _ in range(workers):
        features, label = next(it)
        seen += len(label)
        labels += int(label.sum())
    pids = [w.pid for w in it._workers]
    first = {pid: permafrost.memory(pid).uss for pid in pids}
    for features, label in it:
        seen += len(label)
        labels += int(label.sum())
    last = {pid: permafrost.memory(pid).uss for pid in pids}  # persistent: still alive
    it._shutdown_workers()
    expected = sum(1 for i in range(rows) if i % 3 != 0)
    if seen != rows or labels != expected:
        raise AssertionError("the pass gave %d samples, %d labels (expected %d, %d)" % (
            seen, labels, rows, expected))
    return {"table": table_kind, "start_method": start_method, "rows": rows,
            "table_bytes": table_bytes, "first": [first[p] for p in pids],
            "last": [last[p] for p in pids]}


def private_cost(result, baseline):
    """Per-worker bytes the table cost: growth over the pass (fork), or USS at the end over the
    no-table baseline's (spawn; baseline is measure("none", "spawn", ...))."""
    if result["start_method"] == "fork":
        return [b - a for a, b in zip(result["first"], result["last"])]
    base = sorted(baseline["last"])[len(baseline["last"]) // 2]
    return [u - base for u in result["last"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=records.ROWS)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--start-method", choices=["fork", "spawn", "both"], default="both")
    ap.add_argument("--table", choices=["dict", "frozen", "image", "all"], default="all")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("dataloader.py: cannot run: no torch for %s (Debian's python3-torch)"
                         % sys.executable)
    methods = ["fork", "spawn"] if args.start_method == "both" else [args.start_method]
    print("DataLoader, %d records, num_workers=%d, batch %d; MiB per worker (fork: USS growth "
          "over the pass; spawn: USS over a no-table worker's)" % (args.rows, args.workers,
                                                                 args.batch))
    print("%-6s %-7s %9s %30s" % ("start", "table", "table MiB", "private per worker MiB"))
    with tempfile.TemporaryDirectory(prefix="pf-dataloader-") as tmp:
        for method in methods:
            baseline = (measure("none", method, args.rows, args.workers, args.batch)
                        if method == "spawn" else None)
            spawn_kinds = ["dict", "image"] + (["frozen"] if freeze_views_go_by_reference()
                                               else [])
            kinds = ({"fork": ["dict", "frozen"], "spawn": spawn_kinds}[method]
                     if args.table == "all" else [args.table])
            for kind in kinds:
                r = measure(kind, method, args.rows, args.workers, args.batch, image_dir=tmp)
                cost = private_cost(r, baseline)
                print("%-6s %-7s %9.1f %30s" % (method, kind, r["table_bytes"] / MiB,
                                                " ".join("%.1f" % (c / MiB) for c in cost)))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
