"""permafrost.build_dict() and permafrost.build_list(): frozen values from an iterable."""
import collections
import json
import os
import pickle
import subprocess
import sys
import tempfile
import unittest
import uuid
import weakref
from multiprocessing.reduction import ForkingPickler

import permafrost


def records(n):
    for i in range(n):
        yield f"k{i}", {"id": i, "tags": ["a", "b"], "score": i / 2}


class Build(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "built.pf")

    def tearDown(self):
        self.dir.cleanup()

    def test_build_dict_from_a_generator(self):
        built = permafrost.build_dict(records(1000))
        self.assertIsInstance(built, permafrost.FrozenDict)
        self.assertEqual(built, dict(records(1000)))
        self.assertEqual(built["k999"]["tags"], ["a", "b"])

    def test_build_dict_of_mapping_items(self):
        source = {"a": 1, "b": [2, 3]}
        self.assertEqual(permafrost.build_dict(source.items()), source)

    def test_build_dict_of_a_mapping_takes_its_items_as_dict_does(self):
        # Iterating a mapping gives its keys: {"US": 1} was built as {"U": "S"}, each
        # two-character key unpacked as a pair, and longer keys raised ValueError.
        source = {"US": {"name": "United States"}, "FR": {"name": "France"}}
        self.assertEqual(permafrost.build_dict(source), source)
        self.assertEqual(permafrost.build_dict(collections.OrderedDict(source)), source)
        self.assertEqual(permafrost.build_dict(permafrost.freeze(source)), source)
        self.assertEqual(permafrost.build_dict(source, path=self.path), source)

    def test_a_dict_subclass_is_taken_as_dict_takes_it(self):
        # dict(d) copies a subclass that keeps dict's iteration from its storage, whatever its
        # keys() and __getitem__ say; one that iterates otherwise through keys() and d[k].
        class Storage(dict):
            def keys(self):
                return ["a"]

            def __getitem__(self, key):
                return "via getitem"

        class Iterating(Storage):
            def __iter__(self):
                return iter(["a"])

        for cls in (Storage, Iterating):
            with self.subTest(cls.__name__):
                d = cls(a=1, b=2)
                self.assertEqual(permafrost.build_dict(d), dict(d))

    def test_a_repeated_key_keeps_its_last_value(self):
        built = permafrost.build_dict([("a", 1), ("b", 2), ("a", 3)])
        self.assertEqual(built, {"a": 3, "b": 2})
        self.assertEqual(list(built), ["a", "b"])  # first position, last value, as dict(items)

    def test_a_record_holding_its_own_key_stores_the_key_once(self):
        # `python -m permafrost build --key id` keeps the key field in each record: the record's
        # copy of the key (the same str, or an equal one) reuses the key's node, in a build and
        # in freeze() of a large dict alike, instead of a second 16-byte str node per record.
        n = 10000  # above the 4096 items past which freeze() walks a dict live

        def rows(key_field):
            for i in range(n):
                k = "key:%07d" % i
                r = {"name": "name-%d" % i}
                if key_field == "same":
                    r["key"] = k
                elif key_field == "equal":
                    r["key"] = "".join(["key:", "%07d" % i])
                yield k, r

        def size(frozen):
            return permafrost._core._range(frozen)[1]

        for make in (permafrost.build_dict, lambda pairs: permafrost.freeze(dict(pairs))):
            without = size(make(rows(None)))
            for key_field in ("same", "equal"):
                with self.subTest(make=make, key_field=key_field):
                    built = make(rows(key_field))
                    self.assertEqual(built["key:0000042"]["key"], "key:0000042")
                    # One more value word per record (and one more keys node for all of them).
                    self.assertLessEqual(size(built) - without, n * 8 + 4096)

    def test_keys_equal_once_copied_as_their_base_are_refused(self):
        # dict(items) holds both keys (Distinct's __eq__ tells them apart), their copies are one:
        # the build took them for a repeated key and silently dropped one. A subclass's own
        # __eq__ is not run, so two such keys are refused unless they are the same object.
        class Distinct(str):  # equal only to itself, as the default object.__eq__
            __hash__ = str.__hash__

            def __eq__(self, other):
                return self is other

        for pairs in ([(Distinct("x"), 1), (Distinct("x"), 2)], [("x", 1), (Distinct("x"), 2)],
                      [((Distinct("x"),), 1), (("x",), 2)]):
            with self.assertRaisesRegex(TypeError, r"^obj: two keys or elements are equal once "
                                                   r"copied as their base types \((\('x',\)|'x')\) "
                                                   r"and one is of a subclass whose own __eq__"):
                permafrost.build_dict(pairs)
        # The same object twice is one key; so are equal keys of a subclass without an __eq__
        # or __hash__ of its own.
        same = Distinct("x")
        self.assertEqual(permafrost.build_dict([(same, 1), ("y", 2), (same, 3)]), {"x": 3, "y": 2})

        class Plain(str):
            pass

        self.assertEqual(permafrost.build_dict([(Plain("x"), 1), ("x", 2)]), {"x": 2})

    def test_build_list_from_a_generator(self):
        built = permafrost.build_list(i * i for i in range(1000))
        self.assertIsInstance(built, permafrost.FrozenList)
        self.assertEqual(built, [i * i for i in range(1000)])

    def test_empty_iterables(self):
        self.assertEqual(permafrost.build_dict(iter(())), {})
        self.assertEqual(permafrost.build_list(iter(())), [])

    def test_path_saves_an_image(self):
        built = permafrost.build_dict(records(100), path=self.path, name="built-table")
        self.assertEqual(permafrost.open(self.path), built)
        # The result is the image's root, mapped from the file, not the arena it was built in.
        self.assertEqual(built._ref()[0], os.path.abspath(self.path))
        self.assertEqual(permafrost._core._store_info(permafrost._core._store_of(built))[0],
                         "image")
        permafrost.build_list(iter([1, "two", [3]]), path=self.path)
        self.assertEqual(permafrost.open(self.path), [1, "two", [3]])

    def test_a_pair_of_another_length_is_a_value_error(self):
        with self.assertRaises(ValueError):
            permafrost.build_dict([("a", 1), ("b", 2, 3)])
        with self.assertRaises(TypeError):
            permafrost.build_dict([("a", 1), 5])

    def assert_nothing_saved(self, build, exception):
        with self.assertRaises(exception):
            build(self.path)
        self.assertFalse(os.path.exists(self.path))
        # An image already at the path is left as it was.
        permafrost.freeze({"old": 1}).save(self.path)
        with self.assertRaises(exception):
            build(self.path)
        self.assertEqual(permafrost.open(self.path), {"old": 1})
        self.assertEqual(os.listdir(self.dir.name), ["built.pf"])  # no temporary file left
        os.unlink(self.path)

    def test_a_bad_value_midway_saves_nothing(self):
        def items():
            yield from records(500)
            yield "bad", object()
            yield from records(10)

        self.assert_nothing_saved(lambda p: permafrost.build_dict(items(), path=p), TypeError)
        self.assert_nothing_saved(lambda p: permafrost.build_list((v for _, v in items()), path=p),
                                  TypeError)

    def test_an_exception_from_the_iterable_saves_nothing(self):
        class Broken(Exception):
            pass

        def items():
            yield from records(500)
            raise Broken

        self.assert_nothing_saved(lambda p: permafrost.build_dict(items(), path=p), Broken)

    def test_keyboard_interrupt_saves_nothing(self):
        def values():
            yield from range(500)
            raise KeyboardInterrupt

        self.assert_nothing_saved(lambda p: permafrost.build_list(values(), path=p),
                                  KeyboardInterrupt)


# Runs in a fresh interpreter: the peak RSS (VmHWM, reset through clear_refs) that building
# ROWS records from a generator adds, with build_dict or with freeze() of the dict, and the
# frozen bytes. Memory counts are exact; no time is measured.
PEAK_SCRIPT = r"""
import gc, json, sys
import permafrost

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

def records(n):
    for i in range(n):
        yield "key:%07d" % i, {"name": "name-%d" % i, "id": i, "score": i * 0.25,
                               "tags": ["t%d" % (i % 7), i % 5, "x"]}

rows, how = int(sys.argv[1]), sys.argv[2]
d = dict(records(rows)) if how == "freeze" else None
gc.collect()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
built = permafrost.freeze(d) if how == "freeze" else permafrost.build_dict(records(rows))
print(json.dumps([status("VmHWM") - before, permafrost._core._range(built)[1]]))
"""


def peak_of(how, rows):
    """(peak RSS growth, frozen bytes) of building `rows` records `how` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(permafrost.__file__)))
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(rows), how], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


class PeakMemory(unittest.TestCase):
    """What a build needs beside the frozen bytes (bench/python/build_memory.py measures 1M)."""

    # What a build keeps beside the frozen bytes is counted per row: the frozen bytes shrank
    # (records stored as tables, issue 19), so a ratio to them measures the wrong thing.
    def test_build_dict_needs_little_beside_the_frozen_bytes(self):
        # The key words (4 bytes) and the records' fields (20 bytes a row here) wait until the
        # end, but the table's rows (16 bytes) are not yet written then, and nothing else is
        # kept per pair: 4-6 bytes a row beside 9.8 MB frozen at 200,000 rows. With a hash,
        # a key word and a row marker kept per pair (8 bytes each) and the fields held while
        # the rows were written it was 42 bytes a row; the dict alone takes ~2.9 KB a row.
        rows = 200000
        peak, frozen = peak_of("build_dict", rows)
        self.assertGreater(frozen, 8 << 20)
        self.assertLess(peak - frozen, 16 * rows, f"peak {peak} for {frozen} frozen bytes")

    def test_freeze_writes_no_buffer_beside_the_arena(self):
        # The arena and little else: the root dict is walked live (no snapshot of its items),
        # the small-node index goes sparse once new nodes stop recurring, and the records'
        # fields wait in their columns (4 bytes each here) until the table is written: 46 bytes
        # a row at 200,000 rows (9.1 MB beside 13.3 MB frozen; before tables 21 bytes a row
        # beside 19.7 MB, a higher peak). A snapshot of the root's items would add 16 bytes a
        # row; the writer that grew a buffer and copied it, the whole graph again.
        rows = 200000
        peak, frozen = peak_of("freeze", rows)
        self.assertLess(peak - frozen, 64 * rows, f"peak {peak} for {frozen} frozen bytes")


class Record(dict):
    """A dict that takes weak references (a plain dict does not): frozen as a dict."""


def arena_mappings(name):
    """Lines of /proc/self/maps that map the memfd arena named `name` (a build's arena)."""
    with open("/proc/self/maps") as f:
        return [line for line in f if f"/memfd:permafrost:{name}" in line]


class Streaming(unittest.TestCase):
    """The builders never hold the source, and an error midway leaves no arena behind."""

    def check_released_before_next(self, build, as_pairs):
        alive = set()
        pulled = []

        def source():
            for i in range(2000):
                # Every record yielded before was released before this one is asked for.
                self.assertEqual(alive, set(), f"item {i - 1} still alive when {i} is pulled")
                record = Record(id=i, tags=["a", i])
                alive.add(i)
                weakref.finalize(record, alive.discard, i)
                pulled.append(i)
                if as_pairs:
                    yield f"k{i}", record
                else:
                    yield record
                del record  # the generator's own reference goes before it resumes the loop

        built = build(source())
        self.assertEqual(len(pulled), 2000)
        self.assertEqual(alive, set())
        return built

    def test_build_dict_releases_each_pair_before_the_next(self):
        built = self.check_released_before_next(permafrost.build_dict, True)
        self.assertEqual(built["k1999"], {"id": 1999, "tags": ["a", 1999]})

    def test_build_list_releases_each_value_before_the_next(self):
        built = self.check_released_before_next(permafrost.build_list, False)
        self.assertEqual(built[5], {"id": 5, "tags": ["a", 5]})

    def check_partial_arena_released(self, build, exception, as_pairs):
        # ~1 KiB an item: past 1 MiB a build writes into a memfd arena, named in /proc/self/maps.
        name = "build-" + uuid.uuid4().hex[:12]
        seen = []

        def source():
            for i in range(3000):
                if i == 2500:
                    # Midway, the partial arena is really there (so the check below can fail)...
                    seen.append(len(arena_mappings(name)))
                    if exception is TypeError:
                        yield ("bad", object()) if as_pairs else object()
                    raise exception("midway")
                record = {"id": i, "text": "x" * 1000}
                yield (f"k{i}", record) if as_pairs else record

        with self.assertRaises(exception):
            build(source(), name=name)
        self.assertGreater(seen[0], 0, "the partial arena was mapped while building")
        # ...and after the error nothing of it is mapped: it was unmapped and closed.
        self.assertEqual(arena_mappings(name), [])

    def test_errors_midway_release_the_partial_arena(self):
        for build, as_pairs in ((permafrost.build_dict, True), (permafrost.build_list, False)):
            for exception in (TypeError, KeyboardInterrupt, LookupError):
                with self.subTest(build=build.__name__, exception=exception.__name__):
                    self.check_partial_arena_released(build, exception, as_pairs)

    def test_freeze_error_midway_releases_the_partial_arena(self):
        name = "freeze-" + uuid.uuid4().hex[:12]
        table = {f"k{i}": {"id": i, "text": "x" * 1000} for i in range(3000)}
        table["k2999"]["bad"] = object()
        with self.assertRaises(TypeError):
            permafrost.freeze(table, name=name)
        self.assertEqual(arena_mappings(name), [])
        del table["k2999"]["bad"]
        frozen = permafrost.freeze(table, name=name)  # the check sees a live arena of that size
        self.assertEqual(len(arena_mappings(name)), 1)
        del frozen

    def test_repeated_keys_equal_across_types_keep_the_first_key(self):
        long_key = "long key " * 20  # stored apart each time: equal by value, not by word
        pairs = [(1, "int"), ("a", 0), (1.0, "float"), (True, "bool"), (long_key, 1),
                 ((1, "t"), "tuple"), (long_key, 2), ((1, "t"), "tuple again")]
        built = permafrost.build_dict(pairs)
        expected = dict(pairs)
        self.assertEqual(built, expected)
        self.assertEqual(list(built.items()), list(expected.items()))
        self.assertIs(type(next(iter(built))), int)  # the first key stays, as dict(items)

    def test_many_repeated_keys(self):
        pairs = [(f"k{i % 1000}", i) for i in range(5000)]
        built = permafrost.build_dict(pairs)
        self.assertEqual(built, dict(pairs))
        self.assertEqual(len(built), 1000)

    def test_builds_that_outgrow_the_reservation_move(self):
        # A 1 MiB reservation: the build outgrows it several times (each time it moves into a
        # reservation four times larger), and the result is the same.
        permafrost._core._writer_reservation(1 << 20)
        try:
            pairs = [(f"key{i:06}", {"id": i, "text": f"value {i} " * 6}) for i in range(60000)]
            built = permafrost.build_dict(iter(pairs))
            frozen = permafrost.freeze(dict(pairs))
        finally:
            permafrost._core._writer_reservation(0)
        self.assertGreater(permafrost._core._range(built)[1], 4 << 20)
        self.assertEqual(built, dict(pairs))
        self.assertEqual(frozen, dict(pairs))
        self.assertEqual(built.thaw(), frozen.thaw())

    def test_a_build_is_sent_to_other_processes_by_reference(self):
        built = permafrost.build_dict((f"k{i}", {"id": i}) for i in range(20000))
        data = ForkingPickler.dumps(built)
        self.assertLess(len(data), 1000, "a reference, not the data")
        self.assertEqual(pickle.loads(data), built)
        address, size = permafrost._core._range(built)
        with open("/proc/self/maps") as f:
            line = next(l for l in f if int(l.split("-")[0], 16) == address)
        self.assertIn("/memfd:permafrost:permafrost-python", line)


def run_child(code):
    """Runs `code` in a new interpreter (a crash is a failed test, not a lost run); its stdout."""
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)
    if child.returncode != 0:
        raise AssertionError(f"child exited with {child.returncode}: {child.stderr[-2000:]}")
    return child.stdout


class RefusedMemory(unittest.TestCase):
    """Writers whose arena cannot grow (the kernel refuses its memory) fail cleanly."""

    def test_growth_refused_is_a_memory_error_naming_the_arena(self):
        # RLIMIT_FSIZE caps a memfd like any file (Python ignores SIGXFSZ, so the write fails with
        # EFBIG): 512 KiB refuses the move into the first memfd arena, 8 MiB a later growth step.
        code = """if True:
            import os, resource, permafrost
            def open_memfds():
                names = []
                for fd in os.listdir("/proc/self/fd"):
                    try:
                        names.append(os.readlink(f"/proc/self/fd/{fd}"))
                    except OSError:
                        pass
                return [n for n in names if "memfd:permafrost:refused" in n]
            limit = LIMIT_KIB << 10
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            text = ["x" * 1000 + str(i) for i in range(30000)]
            builds = (lambda: permafrost.build_list(iter(text), name="refused"),
                      lambda: permafrost.build_dict(((t, 1) for t in text), name="refused"),
                      lambda: permafrost.freeze(text, name="refused"))
            for build in builds:
                try:
                    build()
                    print("built")
                except MemoryError as e:
                    print(e)
            with open("/proc/self/maps") as f:
                print(sum("permafrost:refused" in line for line in f), len(open_memfds()))
            print(permafrost.build_dict([("after", 1)])["after"])
        """
        for limit_kib in (512, 8192):
            with self.subTest(limit_kib=limit_kib):
                lines = run_child(code.replace("LIMIT_KIB", str(limit_kib))).splitlines()
                self.assertEqual(len(lines), 5, lines)
                for line in lines[:3]:
                    self.assertRegex(line, "^permafrost: the arena 'refused' could not grow to "
                                     r"\d+ bytes: the kernel refused the memory")
                self.assertEqual(lines[3], "0 0", "the partial arena stays mapped or open")
                self.assertEqual(lines[4], "1", "a build after the refusal")


    def test_a_buffer_refused_is_a_memory_error_that_says_why(self):
        # A build's own buffers (a table's columns, here 64 fields a record) grow outside the
        # arena; past the address space left (RLIMIT_AS, the arena's reservation made first)
        # their refusal was an empty MemoryError.
        code = """if True:
            import resource, permafrost
            permafrost.build_dict((i, {"a": i}) for i in range(100000))
            with open("/proc/self/status") as f:
                size = [int(l.split()[1]) << 10 for l in f if l.startswith("VmSize:")][0]
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), hard))
            names = ["f%d" % j for j in range(64)]
            try:
                permafrost.build_dict((i, {f: 2**40 + i for f in names}) for i in range(400000))
                print("built")
            except MemoryError as e:
                print(e)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            print(permafrost.build_dict([("after", 1)])["after"])
        """
        lines = run_child(code).splitlines()
        self.assertEqual(lines, ["permafrost: out of memory: the kernel refused memory (no memory "
                                 "left, a memory cgroup limit, or ulimit -v)", "1"])


class SmallAddressSpace(unittest.TestCase):
    """Writers under an address-space limit (RLIMIT_AS, `ulimit -v`)."""

    def test_a_graph_past_1_mib_is_written_where_one_arena_fits(self):
        # Under such a limit the arena reservation may hold a single 256 MiB granule, and a graph
        # past its first 1 MiB moved into a second arena made beside the first: every freeze()
        # or build of more than 1 MiB under `ulimit -v 1000000` raised MemoryError ("no room
        # for 268435456 bytes in this process's arena reservation").
        code = """if True:
            import resource, permafrost
            with open("/proc/self/status") as f:
                size = [int(l.split()[1]) << 10 for l in f if l.startswith("VmSize:")][0]
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (size + (700 << 20), hard))
            data = {str(i): [i, "x"] for i in range(100000)}
            for build, expected in ((lambda: permafrost.freeze(data), data),
                                    (lambda: permafrost.build_dict(data.items()), data),
                                    (lambda: permafrost.build_list(iter(data.items())),
                                     list(data.items()))):
                try:
                    frozen = build()
                except MemoryError as e:
                    print(e)
                    continue
                print(permafrost._core._range(frozen)[1] > 1 << 20, frozen == expected)
                frozen.close()
        """
        self.assertEqual(run_child(code).splitlines(), ["True True"] * 3)


class ForkedMidBuild(unittest.TestCase):
    """A generator that forks: the child cannot go on writing its parent's arena."""

    def test_a_child_forked_midway_gets_an_error_and_the_parent_its_build(self):
        # Forked at item 3000 (~3 MiB: the build is in its memfd arena, whose pages the child
        # shares with the parent until freeze): the child's next allocation must fail clearly
        # (it once was an empty MemoryError), and nothing it did may touch the parent's build.
        code = """if True:
            import os, permafrost
            child = []
            def items():
                for i in range(5000):
                    if i == 3000 and os.fork() != 0:
                        child.append(True)
                    yield f"k{i}", "x" * 1000 + str(i)
            try:
                built = permafrost.build_dict(items())
                result = f"built {len(built)}"
            except Exception as e:
                result = f"{type(e).__name__}: {e}"
            if not child:  # the forked child
                print(result, flush=True)
                os._exit(0)
            os.wait()
            print(result)
            print(built == {f"k{i}": "x" * 1000 + str(i) for i in range(5000)})
        """
        lines = run_child(code).splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0], "^RuntimeError: permafrost: the process forked while "
                                   r"freeze\(\), build_dict\(\)")
        self.assertEqual(lines[1:], ["built 5000", "True"])

    def test_a_child_forked_midway_through_records_gets_an_error_not_a_crash(self):
        # Records of one shape are written in place as rows, into memory allocated before the
        # fork: the child once went on writing there, into the parent's read-only pages, and
        # died of SIGSEGV. It now gets RuntimeError at its next item, as early as item 100 (the
        # first, anonymous arena) or past 1 MiB (the memfd arena), for build_dict and build_list.
        for builder, at in (("build_dict", 100), ("build_dict", 50000), ("build_list", 50000)):
            with self.subTest(builder=builder, at=at):
                code = f"""if True:
                    import os, permafrost
                    def items():
                        for i in range(100000):
                            if i == {at} and os.fork() == 0:
                                print("child", flush=True)
                            record = {{"who": "x" * 20 + str(i), "n": i}}
                            yield (f"key{{i}}", record) if "{builder}" == "build_dict" else record
                    parent = os.getpid()
                    try:
                        built = permafrost.{builder}(items())
                        result = f"built {{len(built)}}"
                    except Exception as e:
                        result = f"{{type(e).__name__}}: {{e}}"
                    print(result, flush=True)
                    if os.getpid() != parent:
                        os._exit(0)
                    _, status = os.wait()
                    print("child signalled" if os.WIFSIGNALED(status) else "child exited")
                """
                lines = run_child(code).splitlines()
                self.assertEqual(len(lines), 4, lines)
                self.assertEqual(lines[0], "child")
                self.assertRegex(lines[1], "^RuntimeError: permafrost: the process forked")
                self.assertEqual(lines[2:], ["built 100000", "child exited"])


class PairsChangedWhileFrozen(unittest.TestCase):
    """A pair given as a list can be changed by user code that freezing its value runs."""

    def test_a_list_pair_emptied_while_its_value_is_frozen_keeps_its_key(self):
        # A tzinfo's utcoffset() empties the list that held the only reference to the key. The
        # builder once held the key borrowed and read it freed: a SIGSEGV under -X dev (freed
        # memory poisoned), or a new str at the same address frozen as the key's text.
        code = """if True:
            import datetime, permafrost
            held = []
            class TZ(datetime.tzinfo):
                def utcoffset(self, dt):
                    if held:
                        held.pop().clear()
                    return datetime.timedelta(0)
                def dst(self, dt):
                    return None
            def items():
                key = "".join(["key-", "-" * 40])
                pair = [key, {"when": datetime.datetime(2020, 1, 1, tzinfo=TZ()), "bad": object()}]
                del key
                held.append(pair)
                yield pair
            try:
                permafrost.build_dict(items())
            except TypeError as e:
                print(e)
            held.append(None)
            def good():
                key = "".join(["key-", "+" * 40])
                pair = [key, {"when": datetime.datetime(2020, 1, 1, tzinfo=TZ()), "n": 2}]
                del key
                held[:] = [pair]
                yield pair
            print(sorted(permafrost.build_dict(good()).thaw()))
        """
        child = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True,
                               text=True, timeout=300)
        self.assertEqual(child.returncode, 0, child.stderr[-2000:])
        lines = child.stdout.splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn('["key-' + "-" * 40 + '"]["bad"]', lines[0])
        self.assertEqual(lines[1], "['key-" + "+" * 40 + "']")


class NanKeys(unittest.TestCase):
    """Keys holding a NaN are one key only when they are the same object, as a dict tells NaNs
    apart; their frozen words are equal, so the builder keeps the objects, runs none of their
    methods, and files them by address."""

    def test_two_nans_are_two_keys_and_one_nan_twice_is_one(self):
        a, b = float("nan"), float("nan")
        t = (a, 1)
        for items in ([(a, 1), (b, 2)], [(a, 1), (a, 2)], [((a, 1), 1), ((b, 1), 2)],
                      [(t, 1), (t, 2), (b, 3)], [(frozenset([a]), 1), (frozenset([b]), 2)],
                      [(a, 1), (1.5, 2), (a, 3), ("x", 4)]):
            with self.subTest(items=items):
                expected = dict(items)
                built = permafrost.build_dict(items)
                self.assertEqual(len(built), len(expected))
                thawed = built.thaw()
                self.assertEqual([repr(k) for k in thawed], [repr(k) for k in expected])
                self.assertEqual(list(thawed.values()), list(expected.values()))

    def test_no_method_of_a_nan_key_runs(self):
        class Loud(float):
            def __eq__(self, other):
                raise AssertionError("__eq__ ran")
            __hash__ = float.__hash__
        a, b = Loud("nan"), Loud("nan")
        built = permafrost.build_dict([(a, 1), (b, 2), (a, 3)])
        self.assertEqual(list(built.values()), [3, 2])

    def test_two_tuples_holding_one_nan_object_stay_two_keys(self):
        # A dict merges them (tuple == compares items by identity first); the builder would
        # have to run the items' __eq__ to say so, so it keeps them apart (docs/python.md).
        a = float("nan")
        built = permafrost.build_dict([((a, 1), 1), ((a, 1), 2)])
        self.assertEqual(list(built.values()), [1, 2])



class CollidingKeys(unittest.TestCase):
    """Keys whose hashes collide (an int hashes to itself modulo 2**61 - 1): repeated keys are
    still found as dict(items) finds them, and the build stays interruptible."""

    def test_repeats_among_colliding_and_long_keys_are_found_as_dict_does(self):
        modulus = sys.hash_info.modulus
        long_str = "long key " * 20
        pairs = [(i * modulus, i) for i in range(1, 300)]  # one hash, big ints
        pairs += [(long_str, "s"), (b"xy" * 40, "b"), (2 ** 100, "big"), ("\udc80" * 30, "sur"),
                  (modulus * 7, "again"), (long_str, "s2"), (b"xy" * 40, "b2"),
                  (float(2 ** 100), "float"), ("\udc80" * 30, "sur2"), (long_str[:-1], "shorter"),
                  (-(2 ** 100), "negative"), (b"xy" * 39, "fewer bytes")]
        built = permafrost.build_dict(iter(pairs))
        expected = dict(pairs)
        self.assertEqual(list(built.items()), list(expected.items()))
        self.assertEqual(built[modulus * 7], "again")
        self.assertIs(type(list(built)[301]), int)  # 2**100 stays an int key, as in dict(items)

    def test_ctrl_c_while_colliding_keys_are_compared(self):
        # 200,000 tuple keys of one hash, each compared with the ones before it once all are
        # read: an hour of work. A SIGALRM handler raising KeyboardInterrupt, armed when the last
        # pair is pulled, must stop it (in a child: without the signal check it would not return).
        code = """if True:
            import signal, sys, permafrost
            def interrupt(signum, frame):
                raise KeyboardInterrupt
            signal.signal(signal.SIGALRM, interrupt)
            modulus = sys.hash_info.modulus
            def pairs():
                for i in range(1, 200001):
                    yield (i * modulus,), i
                signal.setitimer(signal.ITIMER_REAL, 0.5)
            try:
                permafrost.build_dict(pairs())
                print("built")
            except KeyboardInterrupt:
                print("interrupted")
        """
        self.assertEqual(run_child(code).split(), ["interrupted"])


if __name__ == "__main__":
    unittest.main()
