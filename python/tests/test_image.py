"""Images: frozen.save(path), permafrost.open(path), and views of an image handed to
forkserver/spawn workers as a small pickled reference that maps the same pages."""
import concurrent.futures
import multiprocessing
import ctypes
import gc
import itertools
import os
import pathlib
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
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

    def test_open_with_populate_maps_every_page_and_reads_the_same_values(self):
        # A fresh process opens a 32 MiB image with populate=True: every page is mapped when open()
        # returns and the values read right. (A plain open() also leaves every page mapped, as its
        # checksum reads the whole file: that populate itself takes the faults away is checked in
        # C++, tests/test_populate.cpp, with the checksum off.)
        permafrost.freeze({"blob": b"\x01" * (32 << 20), "n": 7}).save(self.path)
        script = ("import sys, permafrost\n"
                  "view = permafrost.open(sys.argv[1], populate=True)\n"
                  "address, size = permafrost._core._range(view)\n"
                  "rss = inside = None\n"
                  "for line in open('/proc/self/smaps'):\n"
                  "    first = line.split()[0]\n"
                  "    if '-' in first and not first.endswith(':'):\n"
                  "        lo, hi = (int(x, 16) for x in first.split('-'))\n"
                  "        inside = lo <= address < hi\n"
                  "    elif inside and line.startswith('Rss:'):\n"
                  "        rss = int(line.split()[1]) * 1024\n"
                  "print(rss / size, view['n'], len(view['blob']), view['blob'][12345])\n")
        proc = subprocess.run([sys.executable, "-c", script, self.path],
                              capture_output=True, text=True, timeout=120, env=os.environ)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        share, n, blob, byte = proc.stdout.split()
        self.assertEqual((n, blob, byte), ("7", str(32 << 20), "1"))
        self.assertGreaterEqual(float(share), 0.99)

    def test_open_with_populate_returns_an_image_already_open_as_it_is(self):
        permafrost.freeze({"k": [1, 2]}).save(self.path)
        plain = permafrost.open(self.path)
        again = permafrost.open(self.path, populate=True)
        self.assertIs(permafrost._core._store_of(again), permafrost._core._store_of(plain))
        self.assertEqual(again, {"k": [1, 2]})

    def test_another_path_to_an_open_file_maps_nothing_new(self):
        # The file is the image, not the spelling of its path: a bytes path, an os.PathLike, a
        # relative path and a symlink all give the one mapping.
        permafrost.freeze({"k": [1, 2]}).save(self.path)
        link = os.path.join(self.dir.name, "link.pfimg")
        os.symlink(self.path, link)
        first = permafrost.open(self.path)
        store = permafrost._core._store_of(first)
        cwd = os.getcwd()
        os.chdir(self.dir.name)
        try:
            relative = permafrost.open("table.pfimg")
        finally:
            os.chdir(cwd)
        for other in (os.fsencode(self.path), pathlib.Path(self.path), link, os.fsencode(link),
                      pathlib.Path(self.dir.name, ".", "table.pfimg")):
            with self.subTest(path=other):
                self.assertIs(permafrost._core._store_of(permafrost.open(other)), store)
        self.assertIs(permafrost._core._store_of(relative), store)
        # A new image saved at the file's path is a new file: the symlink maps it anew.
        permafrost.freeze({"k": [3]}).save(self.path)
        self.assertEqual(permafrost.open(link)["k"], [3])
        self.assertEqual(first["k"], [1, 2])

    def test_dot_dot_past_a_symlink_names_the_file_the_kernel_opens(self):
        # a/link/../img is b/img for the kernel when a/link is ../b/deep; os.path.abspath made
        # it a/img by its text, so open(), a Reloader and build_dict(path=) mapped another file.
        for sub in ("a", "b", "b/deep"):
            os.mkdir(os.path.join(self.dir.name, sub))
        os.symlink("../b/deep", os.path.join(self.dir.name, "a", "link"))
        for sub in ("a", "b"):
            permafrost.freeze({"in": sub}).save(os.path.join(self.dir.name, sub, "img.pfi"))
        cwd = os.getcwd()
        os.chdir(self.dir.name)
        try:
            path = os.path.join("a", "link", "..", "img.pfi")
            self.assertEqual(permafrost.open(path)["in"], "b")
            self.assertEqual(permafrost.Reloader(path).current()["in"], "b")
            built = permafrost.build_dict({"in": "built"}, path=os.path.join("a", "link", "..",
                                                                            "built.pfi"))
            self.assertEqual(built["in"], "built")
            self.assertTrue(os.path.exists(os.path.join("b", "built.pfi")))
            self.assertEqual(permafrost.open(os.path.join("b", "built.pfi"))["in"], "built")
        finally:
            os.chdir(cwd)

    def test_a_view_pickled_under_another_spelling_of_the_path_finds_the_image(self):
        # A receiver finds an image it maps by (path, id) once a newer one is at the path:
        # ./img.pfi here and img.pfi in the sender must be one path (they were, with abspath;
        # the join that keeps `..` kept `.` too, and the view was refused as replaced).
        self.assertEqual(permafrost._stores.absolute_path("/a//b/./c/."), "/a/b/c/")
        self.assertEqual(permafrost._stores.absolute_path("//a/b"), "/a/b")  # Linux: //a is /a
        self.assertEqual(permafrost._stores.absolute_path("/a/x/../c"), "/a/x/../c")
        permafrost.freeze({"v": [1, 2]}).save(self.path)
        cwd = os.getcwd()
        os.chdir(self.dir.name)
        try:
            root = permafrost.open("./" + os.path.basename(self.path))
            code = ("import sys, pickle, permafrost\n"
                    "sys.stdout.buffer.write(pickle.dumps(permafrost.open(sys.argv[1])['v']))")
            sent = subprocess.run([sys.executable, "-c", code, os.path.basename(self.path)],
                                  check=True, capture_output=True, timeout=60,
                                  env=os.environ).stdout
        finally:
            os.chdir(cwd)
        permafrost.freeze({"v": ["newer"]}).save(self.path)
        self.assertEqual(pickle.loads(sent), [1, 2])
        self.assertEqual(root["v"], [1, 2])

    def test_a_reloader_of_a_bytes_path_names_it_as_a_str(self):
        permafrost.freeze({"k": 1}).save(self.path)
        reloader = permafrost.Reloader(os.fsencode(self.path))
        self.assertEqual(reloader.path, self.path)  # as the stub says, and as open() keeps it
        self.assertEqual(reloader.current(), {"k": 1})

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

    def test_saving_to_a_path_naming_no_file_says_so(self):
        # The error named a random temporary file (".XXXXXX", renamed over nothing).
        frozen = permafrost.freeze([1])
        for save in (lambda p: frozen.save(p), lambda p: permafrost.build_list([1], path=p)):
            for path in ("", self.dir.name + "/"):
                with self.subTest(path=path):
                    with self.assertRaisesRegex(OSError, "the path names no file"):
                        save(path)
        self.assertEqual(os.listdir(self.dir.name), [])

    def test_an_empty_path_names_no_file(self):
        # As for builtins.open. Reloader("") made it the working directory ("not a regular file").
        for make in (permafrost.open, lambda p: permafrost.open(p, populate=True),
                     permafrost.Reloader):
            for path in ("", b""):
                with self.subTest(make=make, path=path):
                    with self.assertRaises(FileNotFoundError):
                        make(path)

    def test_a_bad_file_at_a_path_that_is_not_utf8_raises_naming_it(self):
        # A Linux file name is any bytes: the library's message named the path, decoding it
        # failed, and what reached Python was a bare OSError() with no message at all.
        path = os.path.join(os.fsencode(self.dir.name), b"\xff\xfe-image.pfi")
        with open(path, "wb") as f:
            f.write(b"not an image" * 100)
        with self.assertRaises(OSError) as cm:
            permafrost.open(path)
        self.assertIn(os.fsdecode(path), str(cm.exception))
        self.assertIn("not a permafrost image", str(cm.exception))
        missing_dir = os.path.join(os.fsencode(self.dir.name), b"\xff-missing", b"x.pfi")
        with self.assertRaises(OSError) as cm:
            permafrost.freeze([1]).save(missing_dir)
        self.assertIn(os.fsdecode(missing_dir), str(cm.exception))

    def test_a_fifo_raises_at_once_instead_of_blocking(self):
        os.mkfifo(self.path)
        # In a child with a timeout: an open() that waits for a writer would hang the suite.
        script = ("import sys, permafrost\n"
                  "try:\n    permafrost.open(sys.argv[1])\n"
                  "except OSError as e:\n    print('OSError', e)\nelse:\n    print('opened')\n")
        try:
            proc = subprocess.run([sys.executable, "-c", script, self.path], capture_output=True,
                                  text=True, timeout=30, env=os.environ)
        except subprocess.TimeoutExpired:
            self.fail("permafrost.open() of a FIFO blocked")
        self.assertTrue(proc.stdout.startswith("OSError"), proc.stdout + proc.stderr)
        self.assertIn("not a regular file", proc.stdout)
        self.assertIn(self.path, proc.stdout)

    def test_save_into_a_directory_it_may_write_but_not_read(self):
        # Root reads every directory whatever its mode: the saves run in a child that is nobody.
        nobody = 65534
        box = os.path.join(self.dir.name, "write-only")
        os.mkdir(box, 0o700)
        if os.geteuid() == 0:
            os.chmod(self.dir.name, 0o711)
            os.chown(box, nobody, nobody)
        os.chmod(box, 0o300)  # create and rename, but no listing and no open of the directory
        path = os.path.join(box, "table.pfimg")
        first, second = permafrost.freeze({"v": 1}), permafrost.freeze({"v": 2})
        pid = os.fork()
        if pid == 0:
            code = 9
            try:
                if os.geteuid() == 0:
                    os.setgid(nobody)
                    os.setuid(nobody)
                code = 1
                first.save(path)
                code = 2  # replaces the file the first save made
                second.save(path)
                code = 0
            except BaseException as e:  # the parent reports the exit code
                print(e, file=sys.stderr)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 9:
            self.skipTest("cannot become uid 65534 (a user namespace without it)")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, "save 1 or 2 raised")
        self.assertEqual(permafrost.open(path)["v"], 2)
        os.chmod(box, 0o700)
        self.assertEqual(os.listdir(box), ["table.pfimg"])

    def test_the_arena_slot_limit_is_named_when_open_hits_it(self):
        permafrost.freeze({"a": 1}).save(self.path)
        views = []
        try:
            with self.assertRaises(OSError) as cm:
                for i in range(1100):  # each image takes one of the process's 1024 slots
                    copy = os.path.join(self.dir.name, "copy%d.pfimg" % i)
                    shutil.copyfile(self.path, copy)
                    views.append(permafrost.open(copy))
            self.assertIn("all 1024 arena slots are in use", str(cm.exception))
            self.assertLessEqual(len(views), 1024)
        finally:
            del views[:]
            permafrost._stores.forget()  # their views gone, they unmap: later tests need slots
            gc.collect()

    def test_shared_containers_stay_shared_through_an_image(self):
        shared = {"roles": ["admin", "ops"], "limits": list(range(100))}
        records = [{"id": i, "policy": shared} for i in range(5000)]
        permafrost.freeze(records).save(self.path)
        opened = permafrost.open(self.path)
        self.assertEqual(opened[4999]["policy"], shared)
        thawed = opened.thaw()
        self.assertEqual(thawed, records)
        self.assertTrue(thawed[0]["policy"] is thawed[4999]["policy"])

    def test_opening_a_path_again_after_a_new_save_maps_the_new_image(self):
        # The swap pattern: requests still reading the old table keep it; open() gets the new one.
        permafrost.freeze({"version": 1, "rows": [1, 2]}).save(self.path)
        old = permafrost.open(self.path)
        self.assertIs(permafrost.open(self.path)["rows"] == [1, 2], True)
        permafrost.freeze({"version": 2, "rows": [3]}).save(self.path)
        new = permafrost.open(self.path)
        self.assertEqual(new["version"], 2)
        self.assertEqual(old["version"], 1)
        self.assertEqual(old["rows"], [1, 2])
        self.assertNotEqual(permafrost._core._range(old), permafrost._core._range(new))

    def test_an_unpickled_view_names_the_image_it_came_from(self):
        permafrost.freeze({"version": 1, "rows": [1, 2]}).save(self.path)
        old = permafrost.open(self.path)
        data = pickle.dumps(old["rows"])
        permafrost.freeze({"version": 2, "rows": [3, 4, 5, 6]}).save(self.path)
        # This process still maps the old image: the view comes back from it.
        self.assertEqual(pickle.loads(data), [1, 2])
        # A process that maps only the new file (here: after forgetting the old mapping) must not
        # read the new file at the old view's offset.
        del old
        permafrost._stores.forget()
        with self.assertRaises(ValueError) as cm:
            pickle.loads(data)
        self.assertIn("replaced", str(cm.exception))

    def test_an_image_elsewhere_with_the_same_id_does_not_stand_in_for_a_pickled_view(self):
        # The id is the file's own word: an image saved at another path with a copy of it (or
        # two images without one, as an older version wrote) was found by id alone, so unpickling
        # a view of one read the other.
        permafrost.freeze({"admin": False}).save(self.path)
        trusted = permafrost.open(self.path)
        data = pickle.dumps(trusted)
        image_id = trusted._ref()[2]
        other = os.path.join(self.dir.name, "other.pfimg")
        permafrost._core._save(permafrost.freeze({"admin": True}), other, image_id)
        mapped = permafrost.open(other)  # mapped in this process while the view is unpickled
        self.assertEqual(mapped["admin"], True)
        self.assertEqual(pickle.loads(data)["admin"], False)
        a, b = (os.path.join(self.dir.name, n) for n in ("a.pfimg", "b.pfimg"))
        permafrost._core._save(permafrost.freeze([1]), a, "")
        permafrost._core._save(permafrost.freeze([2]), b, "")
        data = pickle.dumps(permafrost.open(a))
        mapped = permafrost.open(b)
        self.assertEqual(mapped, [2])
        self.assertEqual(pickle.loads(data), [1])

    def test_a_file_renamed_over_the_path_during_open_is_not_taken_for_the_one_before(self):
        # open() stat'ed the path, then opened it: with another image renamed over the path in
        # between (a deploy), the new file's mapping was remembered under the old file's identity,
        # and a later open() of the old file by another name (a hard link) gave the new one.
        a, b, old = (os.path.join(self.dir.name, n) for n in ("a.pfimg", "b.pfimg", "old.pfimg"))
        permafrost.freeze({"which": "A"}).save(a)
        permafrost.freeze({"which": "B"}).save(b)
        os.link(a, old)
        os.link(a, self.path)
        flipper = os.fork()
        if flipper == 0:  # renames A's and B's files over the path, in turn, until killed
            try:
                for i in itertools.count():
                    for source in (b, a):
                        tmp = f"{self.path}.{i % 2}"
                        os.link(source, tmp)
                        os.rename(tmp, self.path)
            finally:
                os._exit(0)
        try:
            deadline = time.monotonic() + 2  # before the fix: wrong within ~100 rounds, 0.5 s
            rounds = 0
            while time.monotonic() < deadline:
                permafrost._stores.forget()
                live = permafrost.open(self.path)
                self.assertEqual(permafrost.open(old)["which"], "A", f"round {rounds}")
                self.assertIn(live["which"], ("A", "B"))
                rounds += 1
        finally:
            os.kill(flipper, signal.SIGKILL)
            os.waitpid(flipper, 0)

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


MAGIC = b"pfpy\0v1\0"
MAGIC_V2 = b"pfpy\0v2\0"  # format v2: packed strs (format.hpp, tag_packed_str)
TAG_PACKED_STR = 6

# A graph freeze() wrote before format v2 (v1: every str of 8+ bytes a str16 node), for
# {"key:0000001": {"name": "name-000001", "id": 1, "tags": {"surrogate\udc80", "\u00e9" * 9}},
#  "key:0000002": {"name": "name-000002", "id": 2, "tags": set()}}.
V1_GRAPH = bytes.fromhex("""
706670790076310060000000000000000701000002000000040000000000000000000000020000b000000000010000da
400000000000000050000000000000000a010b006b65793a30303030303031000a010b006b65793a3030303030303200
0b00020002000000c0000000000000004801000000000000070100000300000008000000000000000000000000000000
00000000030000b00000000002000084010000cb00000000246e616d6500000014696400000000002474616773000000
0b0003000f000000e0000000000000000900000000000000f0000000000000000a010b006e616d652d30303030303100
08010000020000000400000000000000010000d30200002d000000000000000020010000000000003801000000000000
0a001200c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a9c3a900000a020c00737572726f67617465edb2800b0003000f000000
6801000000000000110000000000000078010000000000000a010b006e616d652d303030303032000801000000000000
040000000000000000000000000000000000000000000000""".replace("\n", ""))
V1_VALUE = {"key:0000001": {"name": "name-000001", "id": 1,
                            "tags": {"surrogate\udc80", "\u00e9" * 9}},
            "key:0000002": {"name": "name-000002", "id": 2, "tags": set()}}


def packed_list(payload, magic=MAGIC_V2, offset=None):
    """A graph whose root is a list of one packed str: its length byte and bytes `payload`,
    at offset 32 unless `offset` says otherwise."""
    at = 32 if offset is None else offset
    return (magic + struct.pack("<Q", 16) + node(KIND_LIST, 1) +
            struct.pack("<Q", at << 3 | TAG_PACKED_STR) + payload)
KIND_LIST, KIND_TUPLE, KIND_KEYS, KIND_STR, KIND_DICT16 = 4, 5, 7, 1, 11
FLAG_SHARED = 0x80


def node(kind, count, flags=0, small_count=0):
    """A node header (format.hpp node_header); small_count: a str16's length, a dict16's count."""
    return struct.pack("<BBHI", kind, flags, small_count, count)


def maps_lines():
    """How many mappings this process has (/proc/self/maps)."""
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def graph_bytes(view):
    """The frozen bytes of a view's whole graph (offset 0 = the root header)."""
    address, size = permafrost._core._range(view)
    return ctypes.string_at(address, size)


# Runs in a child: opens each crafted image and reads everything in it. A crash (a signal) fails
# the test and the last line printed names the file; an exception is the expected outcome.
READ_ALL = r"""
import pickle, sys, permafrost
def walk(v, depth=0):
    if isinstance(v, permafrost.FrozenDict):
        for k in v:
            walk(k, depth + 1); walk(v[k], depth + 1); v.get(k); k in v
        v.get("absent"); ("x", 1) in v; 12345 in v
    elif isinstance(v, (permafrost.FrozenList, permafrost.FrozenSet, tuple)):
        for x in v:
            walk(x, depth + 1)
            if isinstance(v, permafrost.FrozenSet): x in v
        1.5 in v
for path in sys.argv[1:]:
    print(path, flush=True)
    permafrost._stores.forget()
    try:
        root = permafrost.open(path)
        walk(root); repr(root); root.thaw(); root == root
        if not isinstance(root, permafrost.FrozenSet): pickle.loads(pickle.dumps(root))
    except Exception:
        pass
print("done", flush=True)
"""


class CraftedImages(unittest.TestCase):
    """An image whose checksums are right but whose graph is not: a clear OSError, never a crash
    (the checksum detects damage, not a crafted file)."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "crafted.pfimg")

    def tearDown(self):
        self.dir.cleanup()
        permafrost._stores.forget()

    def refused(self, data, why):
        permafrost._core._save_bytes(data, self.path)
        permafrost._stores.forget()
        with self.assertRaises(OSError) as cm:
            permafrost.open(self.path)
        self.assertIn(self.path, str(cm.exception))
        self.assertIn(why, str(cm.exception))

    def test_a_real_graph_saved_as_bytes_opens(self):
        frozen = permafrost.freeze(make_table(100))
        permafrost._core._save_bytes(graph_bytes(frozen), self.path)
        self.assertEqual(permafrost.open(self.path), frozen)

    def test_a_v1_image_from_before_packed_strs_opens(self):
        # Images saved before format v2 hold str16 nodes where freeze() now packs strs: lookups
        # compare a str key with either encoding.
        permafrost._core._save_bytes(V1_GRAPH, self.path)
        opened = permafrost.open(self.path)
        self.assertEqual(opened, V1_VALUE)
        self.assertEqual(opened.thaw(), V1_VALUE)
        self.assertEqual(opened["key:0000002"]["name"], "name-000002")
        self.assertIn("\u00e9" * 9, opened["key:0000001"]["tags"])
        self.assertNotIn("key:0000003", opened)
        self.assertEqual(pickle.loads(pickle.dumps(opened["key:0000001"])),
                         V1_VALUE["key:0000001"])

    def test_a_well_formed_packed_str_opens(self):
        permafrost._core._save_bytes(packed_list(b"\x0b" + "h\u00e9llo worl".encode()), self.path)
        self.assertEqual(permafrost.open(self.path), ["h\u00e9llo worl"])

    def test_a_bad_packed_str_is_refused(self):
        for data, why in (
                (packed_list(b"\x0bhello world", magic=MAGIC), "packed str in a v1 graph"),
                (packed_list(b"\x0bhello world", offset=1 << 40), "packed str outside the graph"),
                (packed_list(b"\x0bhello world", offset=8), "packed str outside the graph"),
                (packed_list(b"\x0chello world"), "packed str outside the graph"),
                (packed_list(b"\x03abc"), "packed str shorter than 8 bytes"),
                (packed_list(b"\x0bhello w\xc3Ald"), "not UTF-8"),
                (packed_list(b"\x0bhello worl\xc3"), "not UTF-8"),
                (packed_list(b"\x0bhello \xed\xa0\x80ld"), "not UTF-8"),  # a surrogate
                (packed_list(b"\x0bhello \xc0\xafrld"), "not UTF-8"),  # overlong
                (packed_list(b"\x0bhello\xf4\x90\x80\x80ld"), "not UTF-8")):  # > U+10FFFF
            with self.subTest(data=data[24:]):
                self.refused(data, why)

    def test_a_bad_short_str_is_refused(self):
        # A str of up to 7 bytes lives in its word, unchecked: a root of bytes fe ff made open()
        # raise UnicodeDecodeError, and as an item every read of it raised.
        def short(raw, extra=0):
            return int.from_bytes(raw, "little") << 8 | len(raw) << 3 | 4 | extra

        def as_root(w):
            return MAGIC + struct.pack("<Q", w)

        def as_item(w):
            return MAGIC + struct.pack("<Q", 16) + node(KIND_LIST, 1) + struct.pack("<Q", w)

        for w, why in ((short(b"\xfe\xff"), "a short str that is not UTF-8"),
                       (short(b"a\xed\xa0\x80"), "a short str that is not UTF-8"),  # surrogate
                       (short(b"ab") | 1 << 40, "a short str with bits set past its bytes"),
                       (short(b"ab", extra=0x40), "a short str with bits set past its bytes")):
            for data in (as_root(w), as_item(w)):
                with self.subTest(word=hex(w), root=len(data) == 16):
                    self.refused(data, why)
        permafrost._core._save_bytes(as_item(short("h\u00e9".encode())), self.path)
        permafrost._stores.forget()
        self.assertEqual(permafrost.open(self.path), ["h\u00e9"])

    def test_a_str_node_that_is_not_utf8_is_refused(self):
        # Only ASCII flags were checked: open() of an image whose root is such a str raised
        # UnicodeDecodeError (no OSError, no path), and a deeper one raised when read.
        def str16(raw, flags=0):
            node = struct.pack("<BBH", 10, flags, len(raw)) + raw
            return b"pfpy\0v2\0" + struct.pack("<Q", 16) + node + b"\0" * (-len(node) % 8)

        why = "a str that is not UTF-8 (or holds a surrogate it is not flagged for) at offset 16"
        for raw in (b"\xe8\x80", b"h\xc3A", b"\xff\xfe", b"a\xed\xa0\x80", b"\xc0\xaf"):
            with self.subTest(raw=raw):
                self.refused(str16(raw), why)
        frozen = permafrost.freeze({"s": ["h\u00e9llo, " + "." * 250 + " long enough for a node"]})
        data = graph_bytes(frozen)
        at = data.index("h\u00e9llo".encode())
        self.refused(data[:at + 1] + b"\xc3A" + data[at + 3:], "a str that is not UTF-8")
        # A lone surrogate in a str flagged for them (freeze() writes those) opens.
        permafrost._core._save_bytes(str16(b"a\xed\xa0\x80", flags=2), self.path)
        permafrost._stores.forget()
        self.assertEqual(permafrost.open(self.path), "a\ud800")

    def test_a_graph_of_a_newer_format_is_refused_by_name(self):
        # A later permafrost may write "pfpy\0v3\0"...: the error says to upgrade, not "bad magic".
        for digit in b"39":
            graph = b"pfpy\0v" + bytes([digit]) + b"\0" + struct.pack("<Q", 1 << 3 | 1)
            with self.subTest(version=chr(digit)):
                self.refused(graph, "format v%s, newer than this permafrost reads" % chr(digit))
        for magic in (b"pfpy\0v0\0", b"pfpy\0vx\0", b"pfpy\0v22"):
            with self.subTest(magic=magic):
                self.refused(magic + struct.pack("<Q", 1 << 3 | 1), "bad magic")

    def test_a_list_that_contains_itself_is_refused(self):
        self.refused(MAGIC + struct.pack("<Q", 16) + node(KIND_LIST, 1) + struct.pack("<Q", 16),
                     "contains itself")

    def test_a_keys_table_referenced_as_a_value_is_refused(self):
        # Only a dict names its keys table; as a list item or the root it was accepted, and every
        # read raised SystemError ("corrupt frozen value (kind 7)").
        keys = node(KIND_KEYS, 1) + struct.pack("<II", 4, 0) + bytes(32) + \
            struct.pack("<Q", (ord("a") << 8) | (1 << 3) | 4)
        self.refused(MAGIC + struct.pack("<Q", 32) + node(KIND_LIST, 1) +
                     struct.pack("<Q", 32) + keys, "a keys table referenced as a value at offset 32")
        self.refused(MAGIC + struct.pack("<Q", 16) + keys, "a keys table referenced as a value")

    def test_nodes_that_overlap_are_refused(self):
        # Each node is checked once, but nodes over the same bytes made the check's work grow
        # with the square of the graph's size (a crafted 17.7 MB image of overlapping table nodes
        # kept open() busy for about 40 minutes). Here: 40 bytes nodes, each starting 8 bytes
        # into the one before, all running to the end of the same 16000 bytes.
        size, count = 16000, 40
        body = bytearray(8 + size)
        for k in range(count):
            struct.pack_into("<BBHI", body, 8 * k, 2, 0, 0, size - 8 * k)  # kind 2: bytes
        root = node(KIND_LIST, count) + struct.pack("<%dQ" % count,
                                                    *[16 + 8 * k for k in range(count)])
        data = MAGIC + struct.pack("<Q", 16 + len(body)) + bytes(body) + root
        self.refused(data, "a node that overlaps others")
        one = node(KIND_LIST, 1) + struct.pack("<Q", 16)  # the first alone is a valid graph
        permafrost._core._save_bytes(MAGIC + struct.pack("<Q", 16 + len(body)) + bytes(body) + one,
                                     self.path)
        self.assertEqual(len(permafrost.open(self.path)[0]), size)

    def test_a_reference_past_the_end_is_refused(self):
        self.refused(MAGIC + struct.pack("<Q", 16) + node(KIND_LIST, 1) +
                     struct.pack("<Q", 1 << 40), "outside the graph")

    def test_a_count_past_the_end_is_refused(self):
        self.refused(MAGIC + struct.pack("<Q", 16) + node(KIND_LIST, 1 << 30), "past the end")

    def test_a_table_with_no_free_slot_is_refused(self):
        # keys table of capacity 4 holding 4 keys: probing for an absent key would never end.
        keys = node(KIND_KEYS, 4, flags=1) + struct.pack("<II", 4, 0) + struct.pack(
            "<4I", 1, 2, 3, 4) + struct.pack("<4Q", *[(i << 3) | 1 for i in range(4)])
        dict16 = node(KIND_DICT16, 16 // 8, small_count=4) + struct.pack("<4Q", 9, 9, 9, 9)
        self.refused(MAGIC + struct.pack("<Q", 16 + len(keys)) + keys + dict16,
                     "capacity is not above its count")

    def keys_and_dict(self, flags, capacity):
        """A keys table of 4 int keys (index slots naming entries 1..4) and a dict16 over it."""
        slots = [1, 2, 3, 4] + [0] * (capacity - 4)
        keys = node(KIND_KEYS, 4, flags=flags) + struct.pack("<II", capacity, 0) + struct.pack(
            "<%dI" % capacity, *slots) + struct.pack("<4Q", *[(i << 3) | 1 for i in range(4)])
        keys += b"\0" * (-len(keys) % 8)
        dict16 = node(KIND_DICT16, 16 // 8, small_count=4) + struct.pack("<4Q", 9, 9, 9, 9)
        return struct.pack("<Q", 16 + len(keys)) + keys + dict16

    def test_a_fastrange_table_opens_in_a_v2_graph_only(self):
        # flag_any_capacity (2, with 4-byte slots 1): any capacity above the count (format v2).
        permafrost._core._save_bytes(MAGIC_V2 + self.keys_and_dict(1 | 2, 5), self.path)
        self.assertEqual(permafrost.open(self.path).thaw(), {0: 1, 1: 1, 2: 1, 3: 1})
        permafrost._stores.forget()
        self.refused(MAGIC + self.keys_and_dict(1 | 2, 5), "flagged any capacity or narrow keys")

    def narrow_keys_and_dict(self, key_words):
        """A v2 keys table (4-byte slots, any capacity, 4-byte key words: flags 1|2|4) of 4
        keys, the given 4-byte key words (sign-extended by readers), and a dict16 over it."""
        keys = node(KIND_KEYS, 4, flags=1 | 2 | 4) + struct.pack("<II", 5, 0) + struct.pack(
            "<5I", 1, 2, 3, 4, 0) + struct.pack("<4i", *key_words)
        keys += b"\0" * (-len(keys) % 8)
        dict16 = node(KIND_DICT16, 16 // 8, small_count=4) + struct.pack("<4Q", 9, 9, 9, 9)
        return MAGIC_V2 + struct.pack("<Q", 16 + len(keys)) + keys + dict16

    def test_a_table_of_4_byte_key_words_opens(self):
        # Ints -1, 0, 5 and None (2): 4-byte words that sign-extend to their 8-byte ones.
        permafrost._core._save_bytes(self.narrow_keys_and_dict([(-1 << 3) | 1, 1, (5 << 3) | 1, 2]),
                                     self.path)
        self.assertEqual(permafrost.open(self.path).thaw(), {-1: 1, 0: 1, 5: 1, None: 1})

    def test_a_bad_4_byte_key_word_is_refused(self):
        for word, why in ((0x7ffffff0, "a reference outside the graph"),
                          ((0x7fffff << 3) | 6, "packed str outside the graph"),
                          (5 << 3 | 2, "unknown constant"), (7, "a row word (never stored)")):
            with self.subTest(word=hex(word)):
                self.refused(self.narrow_keys_and_dict([1, 9, 17, word]), why)
        self.refused(MAGIC + self.narrow_keys_and_dict([1, 9, 17, 25])[8:], "narrow keys in a v1")

    def test_a_capacity_neither_flagged_nor_a_power_of_two_is_refused(self):
        self.refused(MAGIC_V2 + self.keys_and_dict(1, 5), "no power of two")

    def test_a_str_that_lies_about_being_ascii_is_refused(self):
        text = "caf\u00e9 au lait".encode()
        data = node(KIND_STR, len(text), flags=1) + text
        data += b"\0" * (-len(data) % 8)
        self.refused(MAGIC + struct.pack("<Q", 16) + node(KIND_LIST, 1) + struct.pack("<Q", 32) +
                     data, "non-ASCII")

    def test_nesting_deeper_than_freeze_builds_is_refused(self):
        depth = 20000
        body = bytearray()
        for i in range(depth):  # list i holds list i + 1; the last one is empty
            at = 16 + 16 * i
            body += node(KIND_LIST, 1) + struct.pack("<Q", at + 16)
        body += node(KIND_LIST, 0)
        self.refused(MAGIC + struct.pack("<Q", 16) + bytes(body), "nesting deeper")

    def test_a_cpp_image_is_refused_and_leaves_nothing_mapped(self):
        # An image whose root is a C++ type, not the Python root: refused by its type tag. Each
        # refusal used to leak the mapping and its registry slot: after 1024 of them no image (and
        # no freeze()) had a slot left.
        graph = graph_bytes(permafrost.freeze({"k": [1, 2]}))
        permafrost._core._save_bytes(graph, self.path, "myapp.routes.v1")
        maps_before = maps_lines()
        for _ in range(1100):
            permafrost._stores.forget()
            with self.assertRaises(OSError) as cm:
                permafrost.open(self.path)
        self.assertIn("myapp.routes.v1", str(cm.exception))
        self.assertIn(self.path, str(cm.exception))
        self.assertLessEqual(maps_lines(), maps_before + 2)  # what the refusals left mapped
        permafrost._core._save_bytes(graph, self.path)
        self.assertEqual(permafrost.open(self.path), {"k": [1, 2]})
        self.assertEqual(permafrost.freeze({"x": [3]})["x"], [3])

    def test_a_chain_through_shared_nodes_counts_its_whole_depth(self):
        # Lists C_0 -> C_1 -> ... -> C_29999; the root names C_25000, C_20000, ..., C_0 in that
        # order, so the walk meets each segment's end already accepted: its depth must still
        # count (thaw() of it would recurse 30,000 levels deep in C).
        n = 30000
        body = bytearray(16 * n)
        for i in range(n):
            child = struct.pack("<Q", 16 + 16 * (i + 1)) if i + 1 < n else b"\0" * 8
            struct.pack_into("<8s8s", body, 16 * i,
                             node(KIND_LIST, 1 if i + 1 < n else 0), child)
        starts = list(range(n - 5000, -1, -5000))
        root = node(KIND_LIST, len(starts)) + b"".join(struct.pack("<Q", 16 + 16 * i)
                                                       for i in starts)
        self.refused(MAGIC + struct.pack("<Q", 16 + len(body)) + bytes(body) + root,
                     "nesting deeper than 10002 levels")

    def tuples_sharing_children(self, flags):
        # t_0 = (), t_i = (t_(i-1), t_(i-1)): 1.5 KiB that reads as 2^64 tuples unless each t_i
        # is built once per read (flag_shared).
        body = node(KIND_TUPLE, 0, flags)
        for i in range(1, 65):
            prev = 16 + (0 if i == 1 else 8 + 24 * (i - 2))
            body += node(KIND_TUPLE, 2, flags) + struct.pack("<QQ", prev, prev)
        root_at = 16 + len(body)
        return (MAGIC + struct.pack("<Q", root_at) + body + node(KIND_LIST, 1) +
                struct.pack("<Q", root_at - 24))

    def test_tuples_sharing_children_unmarked_are_refused(self):
        data = self.tuples_sharing_children(0)
        self.assertLess(len(data), 1600)
        self.refused(data, "would build more than 16777216 objects")

    def test_tuples_marked_shared_read_as_a_dag(self):
        permafrost._core._save_bytes(self.tuples_sharing_children(FLAG_SHARED), self.path)
        top = permafrost.open(self.path)[0]
        self.assertTrue(top[0] is top[1])  # assertIs would repr 2^63 tuples on failure
        self.assertEqual(len(top[0][0]), 2)

    def test_a_large_node_referenced_twice_unmarked_is_refused(self):
        # freeze() stores a container reached twice once, marked shared; unmarked, only small
        # lists and tuples (stored once by content) may be referenced twice.
        inner = node(KIND_LIST, 0)
        big = node(KIND_LIST, 9) + struct.pack("<Q", 16) + struct.pack("<8Q", *[(i << 3) | 1
                                                                             for i in range(8)])
        root = node(KIND_LIST, 2) + struct.pack("<QQ", 24, 24)
        self.refused(MAGIC + struct.pack("<Q", 24 + len(big)) + inner + big + root,
                     "referenced twice that is neither marked shared nor shared by content")

    def test_an_unpickled_offset_must_name_a_value(self):
        frozen = permafrost.freeze({"rows": make_table(10), "d": {"a": 1, "b": [2]}})
        frozen.save(self.path)
        path = os.path.abspath(self.path)
        data = graph_bytes(frozen)
        root = struct.unpack_from("<Q", data, 8)[0]
        self.assertEqual(permafrost._image_value(path, root), frozen)
        # 2^64 + the root's offset was read as the root (the offset wrapped).
        for offset in (8, 1 << 40, -1, (1 << 64) + root, 1 << 100):
            with self.subTest(offset=offset):
                with self.assertRaisesRegex(ValueError, "is no value of the image"):
                    permafrost._image_value(path, offset)
        # Every offset names a value or is refused: a dict's keys table (a node, but no value)
        # raised SystemError ("corrupt frozen value (kind 7)") when read.
        for offset in range(16, len(data), 8):
            try:
                repr(permafrost._image_value(path, offset))
            except ValueError:
                pass
        keys = 0
        for offset in range(16, len(data), 8):
            if data[offset] == KIND_KEYS:
                keys += 1
                with self.assertRaisesRegex(ValueError, "is no value of the image"):
                    permafrost._image_value(path, offset)
        self.assertGreater(keys, 0)

    def test_random_damage_with_valid_checksums_never_crashes(self):
        value = {"rows": make_table(40), "set": {1, 2.5, "x", (1, "y")}, "fs": frozenset({3}),
                 "big": 10 ** 40, "bytes": b"\x00\xff" * 20, "nested": [[[[1]]]],
                 "text": "\u00e9t\u00e9 " * 30, "tuple": (None, True, 0.1)}
        good = graph_bytes(permafrost.freeze(value))
        rng = random.Random(1234)
        paths = []
        for n in range(300):
            data = bytearray(good)
            for _ in range(rng.choice((1, 1, 2, 4))):
                at = rng.randrange(16, len(data) - 8) & ~7
                choice = rng.randrange(4)
                if choice == 0:  # one flipped bit
                    data[at + rng.randrange(8)] ^= 1 << rng.randrange(8)
                elif choice == 1:  # a reference to somewhere else in the graph, any tag
                    data[at:at + 8] = struct.pack("<Q", rng.randrange(len(data) + 64) & ~7 |
                                                  rng.randrange(8))
                elif choice == 2:  # a count or capacity
                    data[at + 4:at + 8] = struct.pack("<I", rng.choice(
                        (0, 1, 3, 255, 65535, 1 << 24, 1 << 31, 0xFFFFFFFF)))
                else:  # a kind
                    data[at] = rng.randrange(13)
            path = os.path.join(self.dir.name, "damaged-%03d.pfimg" % n)
            permafrost._core._save_bytes(bytes(data), path)
            paths.append(path)
        proc = subprocess.run([sys.executable, "-c", READ_ALL] + paths, capture_output=True,
                              text=True, timeout=600, env=os.environ)
        last = proc.stdout.strip().splitlines()[-1:] or ["(nothing)"]
        self.assertEqual(proc.returncode, 0, "crashed on %s\n%s" % (last[0], proc.stderr[-2000:]))
        self.assertEqual(last[0], "done")


def int_list_graph(n):
    """The frozen bytes of a list of n ints (each 1), laid out by hand: the root header ("pfpy\\0v1"
    and the root word: offset 16), then the list node (kind 4, count n) and its n tag_int
    words."""
    return (b"pfpy\0v1\0" + struct.pack("<Q", 16) + struct.pack("<BBHI", 4, 0, 0, n) +
            struct.pack("<Q", 1 << 3 | 1) * n)


@unittest.skipUnless(hasattr(signal, "setitimer"), "needs signal.setitimer (POSIX)")
class InterruptedOpens(unittest.TestCase):
    """permafrost.open() of a 128 MiB image runs signal handlers while it hashes the data and
    while it walks the graph: Ctrl-C (here a real SIGINT, sent from a SIGALRM handler that an
    interval timer runs every 2 ms) raises KeyboardInterrupt out of open(), nothing of the image
    stays mapped and the file opens afterwards as before.

    Python runs a handler only when C code checks for signals, and runs it once per check however
    many times the signal arrived: open() without checks runs the SIGALRM handler once, after it
    returned. So a handler that sends SIGINT on its Nth run can only interrupt open() if open()
    checked at least N times, and at least N - 16 of them in the graph check when the checksum
    has at most CHECKSUM_STEPS steps of 16 MiB to check in."""

    ITEMS = 16 << 20  # 8-byte words: 128 MiB of data
    CHECKSUM_STEPS = (ITEMS * 8 + 24) // (16 << 20) + 1  # open_step_bytes = 16 MiB

    @classmethod
    def setUpClass(cls):
        # In memory where there is a tmpfs: saving fsyncs, and 256 MiB to a disk takes seconds.
        cls.dir = tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        cls.valid = os.path.join(cls.dir.name, "ints.pfi")
        cls.invalid = os.path.join(cls.dir.name, "bad-root.pfi")
        graph = int_list_graph(cls.ITEMS)
        permafrost._core._save_bytes(graph, cls.valid)
        graph = bytearray(graph)
        graph[8:16] = struct.pack("<Q", 8)  # the root names the root header: refused at once
        permafrost._core._save_bytes(graph, cls.invalid)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def open_interrupted(self, path, sigint_on_run):
        """open(path) while SIGALRM runs every 2 ms; its handler sends SIGINT on its
        sigint_on_run-th run. Returns how many times it ran."""
        runs = 0

        def on_alarm(signum, frame):
            nonlocal runs
            runs += 1
            if runs == sigint_on_run:
                os.kill(os.getpid(), signal.SIGINT)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.siginterrupt(signal.SIGALRM, False)  # system calls restart: only handlers run
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
            with self.assertRaises(KeyboardInterrupt):
                permafrost.open(path)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return runs

    def assert_gone_and_untouched(self, path, stat):
        with open("/proc/self/maps") as f:
            self.assertNotIn(path, f.read())  # no mapping of the file left behind
        after = os.stat(path)
        self.assertEqual((after.st_size, after.st_mtime_ns, after.st_ino),
                         (stat.st_size, stat.st_mtime_ns, stat.st_ino))

    def test_ctrl_c_while_hashing_the_data_raises_keyboard_interrupt(self):
        # The graph of this image fails the graph check at its first word (OSError): only the
        # checksum can take the three checks that lead to KeyboardInterrupt.
        stat = os.stat(self.invalid)
        self.assertGreaterEqual(self.open_interrupted(self.invalid, 3), 3)
        self.assert_gone_and_untouched(self.invalid, stat)
        with self.assertRaisesRegex(OSError, "not a valid permafrost Python image"):
            permafrost.open(self.invalid)  # the checksum still matches: the file is as it was

    def test_ctrl_c_while_checking_the_graph_raises_keyboard_interrupt(self):
        stat = os.stat(self.valid)
        self.assertGreater(self.open_interrupted(self.valid, self.CHECKSUM_STEPS + 3),
                           self.CHECKSUM_STEPS)
        self.assert_gone_and_untouched(self.valid, stat)
        with permafrost.open(self.valid) as root:  # opens as before, every word intact
            self.assertEqual((len(root), root[0], root[-1]), (self.ITEMS, 1, 1))


if __name__ == "__main__":
    unittest.main()
