"""Real pre-fork servers over the records table of examples/python (run by those examples' own
code): Flask under gunicorn --preload, a WSGI app under uWSGI (--master --processes 4, the table
built in the master), Celery's prefork pool (an image opened before it forks), and PyTorch's DataLoader with num_workers=4 under fork and spawn. Each
holds the table frozen and, in the same run, as a plain dict (the peer), makes one full pass of
the table and reads every worker's USS from /proc/PID/smaps_rollup: the frozen table's workers
must stay within the goal (16 MiB each) while the dict's copy a large share of their table.

Debian's /usr/bin/python3 only (Flask, gunicorn, the uWSGI plugin, Celery and torch are Debian's
packages, built for it). The table has PF_TEST_ROWS rows (default 100,000: a few seconds per
server run; the examples and bench/python/servers.py use 500,000)."""
import importlib.util
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "python")
sys.path.insert(0, EXAMPLES)

import servers  # noqa: E402  (examples/python/servers.py)

ROWS = int(os.environ.get("PF_TEST_ROWS", "100000"))
GOAL = 16 << 20  # per-worker private growth allowed for the frozen table (issue 18)
MiB = 1 << 20
DEBIAN = os.path.realpath(sys.executable) == os.path.realpath("/usr/bin/python3")
NOT_DEBIAN = "servers are tested with Debian's /usr/bin/python3, whose packages they use; this is " \
    + sys.executable


class ServerCase:
    def check(self, frozen, plain, frozen_growth, dict_growth):
        """frozen_growth / dict_growth: per-worker private bytes of each table's workers."""
        sys.stderr.write("\n%s: %d rows; per-worker private growth MiB: frozen %s (table %.1f), "
                         "dict %s (table %.1f)\n" % (
                             self.id().rsplit(".", 1)[-1], ROWS,
                             [round(g / MiB, 1) for g in frozen_growth],
                             frozen["table_bytes"] / MiB,
                             [round(g / MiB, 1) for g in dict_growth], plain["table_bytes"] / MiB))
        self.assertEqual(len(frozen_growth), 4)
        for g in frozen_growth:
            self.assertLessEqual(g, GOAL, "a worker serving the frozen table grew past the goal")
        for g in dict_growth:
            self.assertGreater(g, 0.3 * plain["table_bytes"],
                               "the dict's workers were expected to copy much of their table")
            self.assertGreater(g, 4 * max(frozen_growth))

    def check_server(self, server):
        """servers.measure of server with the frozen table, then with the dict."""
        why = servers.missing(server)
        if why:
            self.skipTest(why)
        frozen = servers.measure(server, "frozen", ROWS)
        plain = servers.measure(server, "dict", ROWS)
        self.check(frozen, plain, frozen["growth"], plain["growth"])

    def check_prebuilt(self, server):
        """README's "Deploying": the image built beforehand, the master opens it, every worker
        serves the whole table from the shared mapping without copying it."""
        why = servers.missing(server)
        if why:
            self.skipTest(why)
        import records
        with tempfile.TemporaryDirectory() as tmp:
            image = os.path.join(tmp, "records.pfi")
            table, size = records.load_table("frozen", ROWS)
            table.save(image)
            table.close()
            if server == "celery":
                opened = servers.measure_celery("prebuilt", ROWS, image=image)
            else:
                opened = servers.measure(server, "prebuilt", ROWS, image=image)
        self.assertEqual(opened["table_bytes"], size, "the workers served the image's table")
        self.assertEqual(len(opened["growth"]), 4)
        for g in opened["growth"]:
            self.assertLessEqual(g, GOAL, "a worker serving the opened image grew past the goal")


@unittest.skipUnless(DEBIAN, NOT_DEBIAN)
class Gunicorn(ServerCase, unittest.TestCase):
    def test_flask_jsonify_of_frozen_records_keeps_workers_flat(self):
        self.check_server("gunicorn")

    def test_an_image_opened_in_the_preload_master_keeps_workers_flat(self):
        self.check_prebuilt("gunicorn")


@unittest.skipUnless(DEBIAN, NOT_DEBIAN)
class UWSGI(ServerCase, unittest.TestCase):
    def test_prefork_workers_keep_the_frozen_table_shared(self):
        self.check_server("uwsgi")

    def test_an_image_opened_in_the_master_keeps_workers_flat(self):
        self.check_prebuilt("uwsgi")


@unittest.skipUnless(DEBIAN, NOT_DEBIAN)
class Celery(ServerCase, unittest.TestCase):
    def test_an_image_opened_before_the_pool_forks_keeps_workers_flat(self):
        self.check_prebuilt("celery")


@unittest.skipUnless(DEBIAN, NOT_DEBIAN)
@unittest.skipUnless(importlib.util.find_spec("torch"), "no torch (Debian's python3-torch)")
class DataLoaderWorkers(ServerCase, unittest.TestCase):
    def test_fork_workers_read_frozen_records_without_copying(self):
        import dataloader
        frozen = dataloader.measure("frozen", "fork", ROWS)
        plain = dataloader.measure("dict", "fork", ROWS)
        self.check(frozen, plain, dataloader.private_cost(frozen, None),
                   dataloader.private_cost(plain, None))

    _spawn_baseline = None

    def spawn_baseline(self):
        """A spawned worker whose Dataset holds no table, measured once for the spawn cases."""
        import dataloader
        if DataLoaderWorkers._spawn_baseline is None:
            DataLoaderWorkers._spawn_baseline = dataloader.measure("none", "spawn", ROWS)
        return DataLoaderWorkers._spawn_baseline

    def test_spawn_workers_map_an_image_instead_of_unpickling_a_copy(self):
        import dataloader
        baseline = self.spawn_baseline()
        with tempfile.TemporaryDirectory() as tmp:
            frozen = dataloader.measure("image", "spawn", ROWS, image_dir=tmp)
        plain = dataloader.measure("dict", "spawn", ROWS)
        self.check(frozen, plain, dataloader.private_cost(frozen, baseline),
                   dataloader.private_cost(plain, baseline))

    def test_spawn_workers_share_a_freeze_view(self):
        import dataloader
        if not dataloader.freeze_views_go_by_reference():
            self.skipTest("this permafrost sends freeze() views to spawned workers by value "
                          "(only image views go by reference)")
        frozen = dataloader.measure("frozen", "spawn", ROWS)
        cost = dataloader.private_cost(frozen, self.spawn_baseline())
        sys.stderr.write("\nspawn, freeze() view: per-worker private MiB %s (table %.1f)\n" % (
            [round(c / MiB, 1) for c in cost], frozen["table_bytes"] / MiB))
        for c in cost:
            self.assertLessEqual(c, GOAL)
            # By value each worker would hold its own copy: the whole frozen table.
            self.assertLess(c, 0.25 * frozen["table_bytes"], "the worker got a copy")

    def test_leaving_an_epoch_early_lets_the_workers_exit_at_once(self):
        # A worker waited at its exit (up to 30 s) for the parent to take the descriptors of the
        # batches it had sent, which the parent dropped unread: every `break` out of an epoch
        # stalled until torch killed the workers with SIGTERM 5 s later.
        script = textwrap.dedent('''
            import permafrost
            from torch.utils.data import DataLoader
            if __name__ == "__main__":
                table = permafrost.freeze([{"id": i, "pad": "x" * 100} for i in range(10000)])
                for context in ("fork", "forkserver"):
                    loader = DataLoader(table, batch_size=8, num_workers=2, collate_fn=list,
                                        multiprocessing_context=context)
                    it = iter(loader)
                    assert next(it)[0]["id"] == 0
                    workers = list(it._workers)
                    del it  # what `break` out of `for batch in loader:` does
                    print(context, [w.exitcode for w in workers])
            ''')
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split("\n")[:2], ["fork [0, 0]", "forkserver [0, 0]"],
                         "a worker killed by torch has exit code -15")


if __name__ == "__main__":
    unittest.main()
