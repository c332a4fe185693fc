"""Stores: how long a frozen graph stays mapped. close() and `with`, unmapping when the last view
goes (no image kept mapped for nothing), images found by their id, saving a sub-view, and
permafrost.Reloader swapping in a newer image under real forked workers."""
import gc
import inspect
import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
import traceback
import unittest
import unittest.mock
import weakref

import permafrost
from permafrost import _stores


def mapped_files():
    """Paths of the file mappings of this process (from /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        return [line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6]


def perms_at(address):
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line.split()[1]
    return None


class Closing(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.pfi")
        permafrost.freeze({"a": {"x": [1, 2]}, "b": [3, 4], "s": {5}}).save(self.path)

    def tearDown(self):
        _stores.forget()
        self.dir.cleanup()

    def test_an_image_closed_by_another_thread_during_open_is_mapped_anew(self):
        # open() checked that the mapping it had was live, then stat()ed the path, which let
        # other threads run: one that closed the image there made open() itself raise "closed".
        first = permafrost.open(self.path)
        identity = _stores._identity

        def stat_while_another_thread_closes(path):
            first.close()
            return identity(path)

        with unittest.mock.patch.object(_stores, "_identity", stat_while_another_thread_closes):
            again = permafrost.open(self.path)
        self.assertFalse(again.closed)
        self.assertEqual(again["b"], [3, 4])

    def test_forgetting_a_path_whose_entry_went_meanwhile_is_quiet(self):
        # The weakref callback that drops a dead image's entry may run between two bytecodes of
        # another (a signal handler's open and close): its del raised KeyError, printed as
        # "Exception ignored in forget_path" on stderr.
        class Vanishing(dict):
            def get(self, key, default=None):
                entry = super().get(key, default)
                self.pop(key, None)  # as another callback would, right after this lookup
                return entry

        image = permafrost.open(self.path)
        self.assertIn(self.path, _stores._images)
        _stores._images = Vanishing(_stores._images)
        unraisable = []
        hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
        try:
            del image  # the store dies: its callback runs
            gc.collect()
        finally:
            sys.unraisablehook = hook
            _stores._images = dict(_stores._images)
        self.assertEqual(unraisable, [])

    def test_the_repr_of_a_closed_view_says_so(self):
        # repr() raised ValueError: logging a view, a traceback with locals failed after close().
        image = permafrost.open(self.path)
        views = (image, image["a"]["x"], image["s"])
        frozen = permafrost.freeze({"k": [1]})
        inner = frozen["k"]
        image.close()
        frozen.close()
        self.assertEqual([repr(v) for v in views + (frozen, inner)],
                         ["<%s of closed frozen data>" % name for name in
                          ("FrozenDict", "FrozenList", "FrozenSet", "FrozenDict", "FrozenList")])
        self.assert_closed(lambda: len(inner))  # everything else still raises

    def assert_closed(self, call):
        with self.assertRaises(ValueError) as cm:
            call()
        self.assertIn("is closed", str(cm.exception))

    def test_pickling_a_view_of_a_closed_image_raises(self):
        # Plain pickle wrote (path, offset, id) and unpickling mapped the image again.
        root = permafrost.open(self.path)
        a = root["a"]
        root.close()
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            self.assert_closed(lambda: pickle.dumps(a, protocol))
        self.assertNotIn(self.path, mapped_files())

    def test_opening_an_empty_path_is_file_not_found(self):
        # abspath("") is the working directory: it was opened and refused as a directory.
        for empty in ("", b""):
            with self.assertRaises(FileNotFoundError) as cm:
                permafrost.open(empty)
            self.assertEqual(cm.exception.filename, empty)

    def test_with_closes_the_image_and_every_view_then_raises(self):
        with permafrost.open(self.path) as root:
            a, b, s = root["a"], root["b"], root["s"]
            items = iter(root)
            self.assertEqual(root["a"]["x"], [1, 2])
            self.assertFalse(root.closed)
        self.assertTrue(root.closed and a.closed)
        self.assertNotIn(self.path, mapped_files())
        for call in (lambda: root["a"], lambda: len(root), lambda: "a" in root,
                     lambda: root.get("a"), lambda: list(root), lambda: next(items),
                     lambda: root.thaw(), lambda: a["x"], lambda: b[0], lambda: b[0:1],
                     lambda: len(b), lambda: 5 in s, lambda: list(s), lambda: root == {},
                     lambda: permafrost.freeze([a]), lambda: a.save(self.path + "2")):
            self.assert_closed(call)
        with self.assertRaises(ValueError) as cm:
            root["a"]
        self.assertEqual(str(cm.exception), f"permafrost: the image {self.path} is closed")
        root.close()  # idempotent

    def test_close_of_a_freeze_result_unmaps_its_arena(self):
        frozen = permafrost.freeze({"k": list(range(1000))})
        address, _ = permafrost._core._range(frozen)
        self.assertEqual(perms_at(address)[:3], "r--")
        frozen.close()
        self.assertEqual(perms_at(address)[:3], "---", "the range is reserved, inaccessible")
        with self.assertRaises(ValueError) as cm:
            frozen["k"]
        self.assertIn("close() was called", str(cm.exception))

    def test_open_after_close_maps_the_image_again(self):
        root = permafrost.open(self.path)
        root.close()
        again = permafrost.open(self.path)
        self.assertEqual(again["b"], [3, 4])
        self.assertTrue(root.closed)

    def test_a_key_whose_eq_closes_the_image_mid_lookup_does_not_crash(self):
        frozen = permafrost.freeze({1: "one", 2: ["two"]})

        class Closer(int):
            __hash__ = int.__hash__

            def __eq__(self, other):
                frozen.close()  # runs inside the lookup, which is still reading the arena
                return int.__eq__(self, other)

        found = frozen[Closer(2)]  # the lookup finishes on the bytes it was reading
        self.assertTrue(frozen.closed and found.closed)
        with self.assertRaises(ValueError):
            found[0]
        with self.assertRaises(ValueError):
            frozen[1]


class NothingMappedForNothing(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        _stores.forget()
        self.dir.cleanup()

    def test_an_image_is_unmapped_when_its_last_view_goes(self):
        path = os.path.join(self.dir.name, "one.pfi")
        permafrost.freeze({"rows": [1, 2, 3]}).save(path)
        root = permafrost.open(path)
        rows = root["rows"]
        del root
        self.assertIn(path, mapped_files(), "a view of it is alive")
        self.assertEqual(permafrost.open(path)["rows"], rows)
        del rows
        self.assertNotIn(path, mapped_files())

    def test_opening_1100_images_one_after_another_keeps_none_mapped(self):
        # Issue 16 item 10: every image opened stayed mapped; the 1025th failed.
        for i in range(1100):
            path = os.path.join(self.dir.name, "img-%04d.pfi" % i)
            permafrost.freeze({"i": i, "pad": [i]}).save(path)
            self.assertEqual(permafrost.open(path)["i"], i)
            os.unlink(path)
        self.assertEqual([m for m in mapped_files() if m.endswith(".pfi (deleted)")], [])

    def test_the_slot_limit_is_named_when_freeze_hits_it(self):
        # Issue 16 item 10: the 1025th arena failed with a bare MemoryError('').
        kept = []
        try:
            with self.assertRaises(MemoryError) as cm:
                for i in range(1100):  # each freeze() result holds one of the 1024 slots
                    kept.append(permafrost.freeze([i]))
            self.assertIn("all 1024 arena slots are in use", str(cm.exception))
            self.assertLessEqual(len(kept), 1024)
        finally:
            del kept[:]
        self.assertEqual(permafrost.freeze([1]), [1], "the slots are free again")

    def test_a_view_of_an_image_still_mapped_unpickles_from_it_after_a_newer_save(self):
        # Issue 16 item 11: reopening the path after a newer save hid the old mapping.
        path = os.path.join(self.dir.name, "t.pfi")
        permafrost.freeze({"version": 1, "rows": [1, 2]}).save(path)
        old = permafrost.open(path)
        data = pickle.dumps(old["rows"])
        permafrost.freeze({"version": 2, "rows": [3, 4, 5]}).save(path)
        new = permafrost.open(path)
        self.assertEqual(new["version"], 2)
        back = pickle.loads(data)
        self.assertEqual(back, [1, 2])
        self.assertIs(permafrost._core._store_of(back), permafrost._core._store_of(old))


class SavingASubView(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "sub.pfi")

    def tearDown(self):
        _stores.forget()
        self.dir.cleanup()

    def test_a_sub_view_saves_its_own_sub_graph_only(self):
        big = permafrost.freeze({"a": {"x": 1, "y": ["z"]}, "pad": ["%08d" % i for i in range(200000)]})
        self.assertGreater(permafrost._core._range(big)[1], 2 << 20)
        big["a"].save(self.path)
        # Image format 2: the header, a hole up to the data at 2 MiB, then the data.
        self.assertLess(os.path.getsize(self.path), (2 << 20) + 4096,
                        "header + hole + a few bytes of data")
        self.assertEqual(permafrost.open(self.path), {"x": 1, "y": ["z"]})

    def test_a_view_of_an_image_saves_a_copy(self):
        permafrost.freeze({"a": [1, {"b": 2}], "c": "d"}).save(self.path)
        opened = permafrost.open(self.path)
        opened.save(self.path + ".whole")
        opened["a"].save(self.path + ".part")
        self.assertEqual(permafrost.open(self.path + ".whole"), opened)
        self.assertEqual(permafrost.open(self.path + ".part"), [1, {"b": 2}])


def serve(reloader, requests_w, stop_r):
    """A forked worker: serve requests until told to stop; report each request's version."""
    versions = []
    failures = 0
    os.set_blocking(stop_r, False)
    while True:
        try:
            if os.read(stop_r, 1):
                break
        except BlockingIOError:
            pass
        try:
            root = reloader.current()
            version = root["version"]
            if sum(root["rows"]) != version * 1000:
                failures += 1
            del root
        except Exception:
            failures += 1
            version = -1
        if not versions or versions[-1] != version:
            versions.append(version)
            os.write(requests_w, b"%d %d\n" % (os.getpid(), version))
        time.sleep(0.001)
    deleted = [m for m in mapped_files() if m.endswith(".pfi (deleted)")]
    live = [m for m in mapped_files() if m.endswith(".pfi")]
    os.write(requests_w, b"done %d %d %d %d %s\n" % (
        os.getpid(), failures, len(deleted), len(live), ",".join(map(str, versions)).encode()))


def image_of_the_reloader(reloader):
    """What a worker received: the version of the Reloader's image, and whether the Reloader's
    root is a mapped image file (a reference) rather than a copy frozen in the worker."""
    root = reloader._root
    kind = permafrost._core._store_info(permafrost._core._store_of(root))[0]
    return root["version"], "mapped file" if kind == "image" else kind


def current_version(reloader):
    """A spawn worker's request: the version its copy of the Reloader serves."""
    return reloader.current()["version"]


class ReloadingUnderForkedWorkers(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "live.pfi")

    def tearDown(self):
        # Whatever a test left in a cycle is collected now: its image is not mapped into the next
        # tests' forked workers.
        gc.collect()
        _stores.forget()
        self.dir.cleanup()

    def save(self, version):
        permafrost.freeze({"version": version, "rows": [version] * 1000}).save(self.path)

    def test_reloader_maps_a_new_image_and_keeps_the_old_one_for_its_readers(self):
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=0)
        old = reloader.current()
        self.save(2)
        self.assertEqual(reloader.current()["version"], 2)
        self.assertEqual(old["version"], 1, "a request holding the old image still reads it")
        replaced = [m for m in mapped_files() if m == self.path + " (deleted)"]
        self.assertEqual(len(replaced), 1, "the old image stays mapped while a view holds it")
        del old
        self.assertNotIn(self.path + " (deleted)", mapped_files(),
                         "the old image is unmapped when its last view goes")
        self.assertIn(self.path, mapped_files())
        with open(self.path + ".tmp", "wb") as f:
            f.write(b"not an image" * 1000)
        os.rename(self.path + ".tmp", self.path)
        self.assertEqual(reloader.current()["version"], 2, "a bad file changes nothing")
        self.assertIsInstance(reloader.error, OSError)
        self.save(3)
        self.assertEqual(reloader.current()["version"], 3)
        self.assertIsNone(reloader.error)

    def test_a_path_that_names_no_file_is_the_error_until_one_is_there(self):
        # The image in service stayed, silently: .error was None with the path gone.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=0)
        os.unlink(self.path)
        self.assertEqual(reloader.current()["version"], 1)
        self.assertIsInstance(reloader.error, FileNotFoundError)
        self.assertEqual(reloader.error.filename, self.path)
        self.assertIsNone(reloader.error.__traceback__)
        first = reloader.error
        reloader.current()
        self.assertIs(reloader.error, first)  # one error while it lasts: logged once
        self.save(2)
        self.assertEqual(reloader.current()["version"], 2)
        self.assertIsNone(reloader.error)
        # The same file back at the path (a hard link kept elsewhere): nothing to reopen, and
        # the path's error is gone too.
        os.link(self.path, self.path + ".kept")
        os.unlink(self.path)
        reloader.current()
        self.assertIsInstance(reloader.error, FileNotFoundError)
        os.link(self.path + ".kept", self.path)
        self.assertEqual(reloader.current()["version"], 2)
        self.assertIsNone(reloader.error)
        # A custom opener's path that never named a file is no error.
        custom = permafrost.Reloader("config://routes", interval=0,
                                     opener=lambda _: permafrost.open(self.path))
        self.assertEqual(custom.current()["version"], 2)
        self.assertIsNone(custom.error)

    def test_a_worker_forked_while_the_parent_was_checking_still_reloads(self):
        # The lock a parent thread held at fork stayed held in the child: it never reloaded.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=0)
        reloader._lock.acquire()  # as another thread of the parent, mid-check, at the fork
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.save(2)
                code = 0 if reloader.current()["version"] == 2 else 3
            finally:
                os._exit(code)
        reloader._lock.release()
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, "the worker did not reload")

    def test_a_check_releases_the_lock_it_took_when_another_thread_replaced_it(self):
        # In a new child two threads may each give the Reloader a fresh lock; the one that
        # checked released the other's, which then raised RuntimeError releasing its own.
        self.save(1)
        reloaders = []
        def opener(path):
            for reloader in reloaders:
                reloader._lock = threading.RLock()  # the other thread's fresh lock, meanwhile
            return permafrost.open(path)

        def held(lock):  # asked from another thread: this one would take the RLock again
            free = []

            def ask():
                free.append(lock.acquire(blocking=False))
                if free[0]:
                    lock.release()
            asker = threading.Thread(target=ask)
            asker.start()
            asker.join()
            return not free[0]
        reloader = permafrost.Reloader(self.path, interval=0, opener=opener)
        reloaders.append(reloader)
        taken = reloader._lock
        self.save(2)
        self.assertEqual(reloader.current()["version"], 2)
        self.assertFalse(held(taken))
        self.assertFalse(held(reloader._lock))
        reloaders.clear()  # no cycle keeping the image mapped into the next tests' forks

    def test_a_file_made_readable_after_a_failed_open_is_tried_again(self):
        # A chmod changes only the ctime: the identity (device, inode, size, mtime) did not
        # change, and the image that now opens was never tried again.
        def opener(path):  # as open() by a worker's user that may not read a 0600 file
            if not os.stat(path).st_mode & 0o004:
                raise PermissionError(13, "Permission denied", path)
            return permafrost.open(path)
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=0, opener=opener)
        permafrost.freeze({"version": 2}).save(self.path + ".new")
        os.chmod(self.path + ".new", 0o600)
        os.rename(self.path + ".new", self.path)
        self.assertEqual(reloader.current()["version"], 1)
        self.assertIsInstance(reloader.error, PermissionError)
        os.chmod(self.path, 0o644)
        self.assertEqual(reloader.current()["version"], 2)
        self.assertIsNone(reloader.error)

    def test_a_failed_file_is_tried_once_more_later_though_it_seems_unchanged(self):
        # Completed in place within one tick of a coarse file-system clock, a file keeps the
        # size and mtime it had when it failed: it was never tried again.
        self.save(1)
        opened = []
        def opener(path):
            opened.append(path)
            return permafrost.open(path)
        reloader = permafrost.Reloader(self.path, interval=0, opener=opener)
        permafrost.freeze({"version": 2}).save(self.path + ".new")
        with open(self.path + ".new", "rb") as f:
            image = f.read()
        with open(self.path + ".new", "r+b") as f:
            f.write(b"\0" * len(image))  # the new file, not yet written
        os.rename(self.path + ".new", self.path)
        self.assertEqual(reloader.current()["version"], 1)
        self.assertIsNotNone(reloader.error)
        seen = reloader._stat()
        reloader._stat = lambda: seen  # the clock did not tick while it was completed
        with open(self.path, "r+b") as f:
            f.write(image)
        self.assertEqual(reloader.current()["version"], 1, "retried at once")
        reloader._failed_at -= 2.0  # two seconds later
        self.assertEqual(reloader.current()["version"], 2)
        self.assertIsNone(reloader.error)
        self.assertEqual(len(opened), 3)

    def test_a_file_that_still_fails_is_tried_once_more_only(self):
        self.save(1)
        opened = []
        def opener(path):
            opened.append(path)
            return permafrost.open(path)
        reloader = permafrost.Reloader(self.path, interval=0, opener=opener)
        with open(self.path + ".new", "wb") as f:
            f.write(b"not an image" * 1000)
        os.rename(self.path + ".new", self.path)
        for _ in range(3):
            self.assertEqual(reloader.current()["version"], 1)
            if reloader._failed_at is not None:
                reloader._failed_at -= 2.0
        self.assertEqual(len(opened), 3, "the first open, the failure and one retry")
        self.assertIsInstance(reloader.error, OSError)

    def test_error_keeps_where_the_open_failed_but_no_frame_or_cycle(self):
        # .error's traceback held the check's frame, whose `self` holds .error: that cycle kept
        # every frame up to the request, their locals and the Reloader alive until gc ran.
        class Local:
            pass
        alive = []
        def opener(path):
            if alive:
                made_by_the_open = Local()
                alive.append(weakref.ref(made_by_the_open))
                raise ValueError("not this one")
            alive.append(None)
            return permafrost.open(path)
        def request(reloader):
            held_by_the_request = Local()
            alive.append(weakref.ref(held_by_the_request))
            return reloader.current()["version"]
        self.save(1)
        gc.disable()
        try:
            reloader = permafrost.Reloader(self.path, interval=0, opener=opener)
            self.save(2)
            self.assertEqual(request(reloader), 1)
            text = "".join(traceback.format_exception(reloader.error))
            self.assertRegex(text, r'line \d+, in opener\n +raise ValueError\("not this one"\)')
            self.assertIn("ValueError: not this one\n", text)
            self.assertEqual([r() for r in alive[1:]], [None, None])
            gone = weakref.ref(reloader)
            del reloader
            self.assertIsNone(gone(), "the Reloader is in a cycle")
        finally:
            gc.enable()

    def test_an_image_closed_by_other_code_is_opened_again(self):
        # open() of a path already open maps nothing new, so code that ran `with
        # permafrost.open(path) as root:` (a health check, a script) closed the image in
        # service: every request raised ValueError until a new file was saved there.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        with permafrost.open(self.path) as root:
            self.assertEqual(root["version"], 1)
        self.assertEqual(reloader.current()["version"], 1)
        reloader.current().close()
        self.assertEqual(reloader.current()["version"], 1)
        self.assertIsNone(reloader.error)

    def test_threads_wait_for_the_reopen_of_a_closed_image(self):
        # One thread reopens a closed image; the others returned the closed root meanwhile, and
        # their requests raised ValueError ("is closed").
        self.save(1)
        gate, entered = threading.Event(), threading.Event()
        gate.set()

        def opener(path):
            entered.set()
            gate.wait(30)
            return permafrost.open(path)

        reloader = permafrost.Reloader(self.path, interval=3600, opener=opener)
        gate.clear()
        entered.clear()
        reloader.current().close()
        got = {}
        reopening = threading.Thread(target=lambda: got.setdefault("a", reloader.current()))
        reopening.start()
        self.assertTrue(entered.wait(30))  # the first thread is in the opener
        waiting = threading.Thread(target=lambda: got.setdefault("b", reloader.current()))
        waiting.start()
        waiting.join(0.3)
        self.assertNotIn("b", got, "a thread returned while the image was being reopened")
        gate.set()
        reopening.join(30)
        waiting.join(30)
        self.assertFalse(got["a"].closed)
        self.assertIs(got["b"], got["a"])
        self.assertEqual(got["b"]["version"], 1)

    def test_current_called_within_the_checking_thread_never_waits_for_itself(self):
        # A signal handler, finalizer or trace hook may call current() in the thread that holds
        # the check's lock, at any bytecode, while the closed image cannot be opened again: it
        # waited for itself for ever (the check's lock was not reentrant).
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600, opener=lambda p:
                                       permafrost.open(p))
        reloader.current().close()
        with open(self.path + ".new", "wb") as bad:
            bad.write(b"not an image" * 50)
        os.rename(self.path + ".new", self.path)
        lines, first = inspect.getsourcelines(permafrost.Reloader._check)
        release = first + max(i for i, line in enumerate(lines) if "lock.release()" in line)
        inner = []

        def tracer(frame, event, arg):
            if frame.f_code is permafrost.Reloader._check.__code__:
                return local
            return None

        def local(frame, event, arg):
            if event == "line" and frame.f_lineno == release and not inner:
                inner.append(reloader.current())  # inside the window before the release
            return local

        def run():
            sys.settrace(tracer)
            try:
                reloader.current()
            finally:
                sys.settrace(None)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(30)
        self.assertFalse(thread.is_alive(), "current() waited for its own thread")
        self.assertEqual(len(inner), 1)
        self.assertTrue(inner[0].closed)  # no image to open: the closed root, served

    def test_an_image_closed_while_the_path_holds_no_image_comes_back_from_its_file(self):
        # A bad deploy left a file that fails at the path (or none), then the image in service
        # was closed: it could not be opened from the path, and every request raised ValueError
        # until a good file was saved. The Reloader holds the image's file open for this.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        with open(self.path + ".new", "wb") as bad:
            bad.write(b"not an image" * 50)
        os.rename(self.path + ".new", self.path)
        reloader.interval = 0
        self.assertEqual(reloader.current()["version"], 1)
        self.assertIsInstance(reloader.error, OSError)
        reloader.current().close()
        self.assertEqual(reloader.current()["version"], 1)
        os.unlink(self.path)
        reloader.current().close()
        self.assertEqual(reloader.current()["version"], 1)
        self.save(2)
        self.assertEqual(reloader.current()["version"], 2)
        self.assertIsNone(reloader.error)

    def test_holding_the_file_does_not_block_on_a_fifo_put_at_the_path(self):
        # The Reloader opens the path again to hold the image's file; a FIFO with no writer put
        # there in between would have blocked the request thread for good.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        identity = reloader._identity
        os.unlink(self.path)
        os.mkfifo(self.path)
        done = threading.Event()
        worker = threading.Thread(target=lambda: (reloader._hold_file(identity), done.set()),
                                  daemon=True)
        worker.start()
        self.assertTrue(done.wait(10), "blocked opening the FIFO")
        self.assertIsNone(reloader._file)
        self.assertEqual(reloader.current()["version"], 1)

    def test_a_reloader_whose_image_was_closed_pickles_with_it_opened_again(self):
        # __getstate__ sent the closed view as it was: pickling raised ValueError ("closed")
        # until current() had run once and opened the image again.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        reloader.current().close()
        copy = pickle.loads(pickle.dumps(reloader))
        self.assertEqual(copy.current()["version"], 1)
        self.assertFalse(reloader.current().closed)

    def test_an_interval_that_is_nan_or_negative_is_refused(self):
        self.save(1)
        for interval in (float("nan"), -1):
            with self.subTest(interval=interval), self.assertRaises(ValueError):
                permafrost.Reloader(self.path, interval=interval)

    def test_a_reloader_pickles_for_spawn_workers_and_reloads_there(self):
        # A dataset or task holding one failed to pickle: "cannot pickle '_thread.lock' object".
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=0)
        copy = pickle.loads(pickle.dumps(reloader))
        self.assertIsNot(copy._lock, reloader._lock)
        self.assertEqual(copy.current()["version"], 1)
        self.save(2)
        self.assertEqual(copy.current()["version"], 2)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            self.assertEqual(pool.apply(current_version, (reloader,)), 2)
            self.save(3)
            self.assertEqual(pool.apply(current_version, (reloader,)), 3)

    def test_a_reloader_first_sent_after_a_newer_save_goes_by_reference(self):
        # Its image's path held another file by then, so the image went by value: a thawed copy
        # in every worker. The file the Reloader holds open is the image's descriptor.
        from multiprocessing.reduction import ForkingPickler
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        self.save(2)  # not picked up: the interval is an hour
        sent = bytes(ForkingPickler.dumps(reloader))
        self.assertNotIn(b"frozen_value", sent)  # no copy by value
        self.assertIn(b"_attach_image", sent)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            self.assertEqual(pool.apply(image_of_the_reloader, (reloader,)), (1, "mapped file"))

    def test_an_unpickled_reloader_checks_at_once_whatever_the_sender_s_clock(self):
        # The sender's monotonic clock was compared with the receiver's: a receiver whose clock
        # was behind (another host, a reboot) never reloaded until it caught up.
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        reloader._checked += 10 * 86400  # a sender 10 days ahead of this process
        copy = pickle.loads(pickle.dumps(reloader))
        self.save(2)
        self.assertEqual(copy.current()["version"], 2)
        self.assertEqual(copy.current()["version"], 2)

    def test_reloader_checks_the_file_once_per_interval(self):
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=3600)
        self.save(2)
        self.assertEqual(reloader.current()["version"], 1)

    def test_forked_workers_switch_on_their_next_request_and_no_request_fails(self):
        self.save(1)
        reloader = permafrost.Reloader(self.path, interval=0)
        reloader.current()
        requests_r, requests_w = os.pipe()
        workers = []
        for _ in range(3):
            stop_r, stop_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(requests_r)
                    serve(reloader, requests_w, stop_r)
                    code = 0
                finally:
                    os._exit(code)
            os.close(stop_r)
            workers.append((pid, stop_w))
        os.close(requests_w)
        seen = {}
        reports = []
        buffer = b""

        def wait_for(version):
            nonlocal buffer
            deadline = time.monotonic() + 60
            while any(seen.get(pid, 0) < version for pid, _ in workers):
                self.assertLess(time.monotonic(), deadline, "workers did not switch: %r" % seen)
                buffer += os.read(requests_r, 4096)
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    pid, v = map(int, line.split())
                    seen[pid] = v

        try:
            wait_for(1)
            for version in (2, 3):
                self.save(version)
                wait_for(version)
        finally:
            for pid, stop_w in workers:
                os.write(stop_w, b"x")
                os.close(stop_w)
            while buffer.count(b"done") < len(workers):
                chunk = os.read(requests_r, 4096)
                if not chunk:
                    break
                buffer += chunk
            for pid, _ in workers:
                _, status = os.waitpid(pid, 0)
                self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        for line in buffer.split(b"\n"):
            if line.startswith(b"done"):
                reports.append(line.split())
        self.assertEqual(len(reports), 3)
        for _, pid, failures, deleted, live, versions in reports:
            self.assertEqual(int(failures), 0, "a request failed")
            self.assertEqual(versions, b"1,2,3")
            self.assertEqual((int(deleted), int(live)), (0, 1),
                             "only the newest image is mapped: the old ones went with their views")


if __name__ == "__main__":
    unittest.main()
