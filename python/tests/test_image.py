"""Images: frozen.save(path), permafrost.open(path), and views of an image handed to
forkserver/spawn workers as a small pickled reference that maps the same pages."""
import concurrent.futures
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
import unittest

import permafrost

ROWS = 20000


def make_table(n=ROWS):
    return {"user:%06d" % i: {"name": "name-%d" % i, "id": i, "score": i / 4.0,
                              "tags": ["a", i % 7]} for i in range(n)}


def worker_lookup(args):
    """Runs in a pool worker: the table arrives pickled (a reference to the image)."""
    table, keys = args
    values = [table[k]["id"] for k in keys]
    address, size = permafrost._core._range(table)
    return values, permafrost._core._private_pages(table), size, os.getpid()


class Images(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "table.pfimg")

    def tearDown(self):
        self.dir.cleanup()

    def test_save_and_open_round_trip(self):
        table = make_table(1000)
        frozen = permafrost.freeze(table)
        frozen.save(self.path)
        opened = permafrost.open(self.path)
        self.assertIsInstance(opened, permafrost.FrozenDict)
        self.assertEqual(opened, table)
        self.assertEqual(opened.thaw(), table)
        self.assertEqual(opened["user:000999"]["tags"], ["a", 999 % 7])

    def test_open_in_another_process(self):
        permafrost.freeze({"k": [1, "two", 3.0, {4}]}).save(self.path)
        proc = subprocess.run([sys.executable, "-c", "import sys, permafrost; "
                               "print(permafrost.open(sys.argv[1])['k'].thaw())", self.path],
                              capture_output=True, text=True, timeout=60, env=os.environ)
        self.assertEqual(proc.stdout.strip(), "[1, 'two', 3.0, {4}]", proc.stderr)

    def test_a_view_of_an_image_pickles_as_a_small_reference(self):
        permafrost.freeze(make_table()).save(self.path)
        opened = permafrost.open(self.path)
        record = opened["user:000042"]
        for view in (opened, record, record["tags"]):
            data = pickle.dumps(view)
            self.assertLess(len(data), 200 + len(self.path))
            back = pickle.loads(data)
            self.assertEqual(back, view)
            self.assertEqual(permafrost._core._range(back), permafrost._core._range(view))

    def test_a_bad_file_raises_naming_it(self):
        with open(self.path, "wb") as f:
            f.write(b"not an image" * 100)
        with self.assertRaises(OSError) as cm:
            permafrost.open(self.path)
        self.assertIn(self.path, str(cm.exception))
        with self.assertRaises(OSError):
            permafrost.open(self.path + ".missing")

    def test_saving_a_view_of_an_image_is_refused(self):
        permafrost.freeze({"a": 1}).save(self.path)
        with self.assertRaises(ValueError):
            permafrost.open(self.path).save(self.path + "2")

    def check_pool_workers(self, make_pool):
        table = make_table()
        permafrost.freeze(table).save(self.path)
        opened = permafrost.open(self.path)
        keys = list(table)
        chunks = [(opened, keys[i::4]) for i in range(4)]
        with make_pool() as pool:
            results = list(pool.map(worker_lookup, chunks))
        _, size = permafrost._core._range(opened)
        pids = set()
        for (values, private_pages, mapped_size, pid), (_, chunk) in zip(results, chunks):
            self.assertEqual(values, [table[k]["id"] for k in chunk])
            self.assertEqual(private_pages, 0, "a worker copied image pages")
            self.assertEqual(mapped_size, size)
            pids.add(pid)
        self.assertNotIn(os.getpid(), pids)

    def test_forkserver_pool_over_an_image(self):
        ctx = multiprocessing.get_context("forkserver")
        self.check_pool_workers(lambda: ctx.Pool(4))

    def test_process_pool_executor_spawn_over_an_image(self):
        ctx = multiprocessing.get_context("spawn")
        self.check_pool_workers(
            lambda: concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx))


if __name__ == "__main__":
    unittest.main()
