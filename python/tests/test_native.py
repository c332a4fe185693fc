"""permafrost.freeze_native(): real CPython objects in a write-protected arena (3.12 and 3.13).

Forked workers run every read operation on the copy while the parent compares their pagemaps
with its own over the whole arena (permafrost._sharing_audit): 0 pages copied. Writes that get
past the subclasses' raising mutators must end the process with the write trap's line naming the
arena, the offset and the object's type; those run in child processes and are checked from this
one. On other interpreters every test but the last class is skipped, saying why.
"""
import collections
import copy
import ctypes
import dataclasses
import gc
import importlib.util
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import types
import unittest

import permafrost
from permafrost import NativeDict, NativeList, NativeSet

UNSUPPORTED = permafrost._core._native_unsupported()
SUPPORTED = not UNSUPPORTED
WORKERS = 4
HERE = os.path.dirname(os.path.abspath(__file__))


def make_records(n):
    """Records like the benchmark's, with every kind of value freeze_native() copies."""
    return {"key:%07d" % i: {"name": "name-%d" % i, "id": i * 1000003, "score": i / 7.0,
                             "tags": ["t%d" % (i % 7), i % 5, "x"], "city": "Zürich-%d" % (i % 3),
                             "point": (i, -i, None), "flags": frozenset({i % 2, 7}),
                             "blob": b"\x00\x01" * (i % 3), "ok": i % 2 == 0,
                             "big": 2 ** 80 + i, "seen": {"a%d" % (i % 4), "b"}}
            for i in range(n)}


def arena_pages(frozen):
    a = permafrost.native_arena(frozen)
    return (a.size + 4095) // 4096


def run_script(body, name="native"):
    """Runs body in a fresh interpreter with a frozen copy `f` of a small graph and the trap."""
    script = textwrap.dedent("""\
        import sys, ctypes, types, permafrost
        permafrost.install_write_trap()
        f = permafrost.freeze_native({"rec": {"name": "ada", "id": 12345678},
                                      "items": [1, 2, 3], "s": {1, 2}, "text": "grüße aus bern",
                                      "fs": frozenset({1})}, name=%r)
        d, l, s = f["rec"], f["items"], f["s"]
        """) % name + textwrap.dedent(body) + '\nprint("survived")\n'
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=os.environ, timeout=120)


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class Copy(unittest.TestCase):
    def test_the_copy_equals_the_original_and_is_made_of_real_objects(self):
        src = make_records(200)
        f = permafrost.freeze_native(src)
        self.assertEqual(f, src)
        self.assertIs(type(f), NativeDict)
        self.assertIsInstance(f, dict)
        rec = f["key:0000003"]
        self.assertIsInstance(rec, dict)
        self.assertIs(type(rec["tags"]), NativeList)
        self.assertIs(type(rec["seen"]), NativeSet)
        for field, kind in (("name", str), ("id", int), ("score", float), ("point", tuple),
                            ("flags", frozenset), ("blob", bytes), ("big", int)):
            self.assertIs(type(rec[field]), kind, field)
        # Sets as sorted lists: a set's iteration order depends on its table's history (a copy
        # may be built at another size), so equal sets may list their items in another order.
        def plain(o):
            return sorted(o) if isinstance(o, (set, frozenset)) else list(o)

        self.assertEqual(json.loads(json.dumps(f["key:0000001"], default=plain)),
                         json.loads(json.dumps(src["key:0000001"], default=plain)))

    def test_every_object_is_immortal_and_in_the_arena(self):
        f = permafrost.freeze_native(make_records(50))
        a = permafrost.native_arena(f)
        immortal = sys.getrefcount(None)
        seen = 0
        for rec in f.values():
            for v in (rec, rec["name"], rec["tags"], rec["score"], rec["big"], rec["seen"]):
                self.assertEqual(sys.getrefcount(v), immortal)
                self.assertTrue(a.address <= id(v) < a.address + a.size)
                self.assertFalse(gc.is_tracked(v))
                seen += 1
        self.assertEqual(seen, 300)

    def test_str_keyed_dicts_keep_cpythons_str_table(self):
        # A general table (what _PyDict_NewPresized makes) takes the slow lookup path.
        f = permafrost.freeze_native({"k%d" % i: i for i in range(1000)})
        keys = ctypes.c_void_p.from_address(id(f) + 32).value  # PyDictObject.ma_keys
        self.assertEqual(ctypes.c_uint8.from_address(keys + 10).value, 1)  # dk_kind: unicode

    def test_a_large_dict_gets_one_table_of_its_size(self):
        # Built by inserts it would leave each outgrown table dead in the arena (about the final
        # table's bytes again); dict.fromkeys sizes it once.
        src = {"key:%07d" % i: None for i in range(100000)}
        f = permafrost.freeze_native(src)
        def block(n):  # the arena hands out 16-byte granules
            return -(-n // 16) * 16
        live = block(sys.getsizeof(f)) + sum(block(sys.getsizeof(k)) for k in f)
        self.assertLess(permafrost.native_arena(f).size, 1.05 * live)
        self.assertEqual(list(f), list(src))

    def test_shared_objects_stay_shared_and_strs_are_copied_once(self):
        row = ["shared"]
        src = json.loads(json.dumps([{"name": "n%d" % i, "where": "x"} for i in range(100)]))
        src.append(row)
        src.append(row)
        f = permafrost.freeze_native(src)
        self.assertIs(f[-1], f[-2])
        keys = {id(k) for rec in f[:100] for k in rec}
        self.assertEqual(len(keys), 2, "json.loads shares its key strs; so does the copy")

    def test_identifier_keys_are_interned_so_setattr_writes_nothing(self):
        f = permafrost.freeze_native({"field_%d_native" % i: i for i in range(10)})
        ns = types.SimpleNamespace()
        for k, v in f.items():
            setattr(ns, k, v)
        key = next(k for k in f if k.startswith("field_3"))
        self.assertIs(sys.intern("field_3_" + "native"), key)

    def test_immortal_values_are_used_as_they_are(self):
        inner = permafrost.freeze_native({"a": [1, 2]})
        outer = permafrost.freeze_native({"inner": inner, "none": None, "small": 5})
        self.assertIs(outer["inner"], inner)
        self.assertIs(permafrost.freeze_native(None), None)
        self.assertIs(permafrost.freeze_native(inner), inner)

    def test_subclasses_are_copied_as_their_base(self):
        Point = collections.namedtuple("Point", "x y")

        class Text(str):
            def __hash__(self):
                raise AssertionError("freeze_native ran a subclass method")

        f = permafrost.freeze_native({"p": Point(1, 2), "o": collections.OrderedDict(a=1),
                                      "t": Text("words"), "d": collections.defaultdict(list)})
        self.assertIs(type(f["p"]), tuple)
        self.assertIs(type(f["o"]), NativeDict)
        self.assertIs(type(f["t"]), str)
        self.assertEqual(f, {"p": (1, 2), "o": {"a": 1}, "t": "words", "d": {}})

    def test_an_ordered_dict_keeps_its_own_order(self):
        for n in (3, 10, 5000):  # a small dict, a larger one
            od = collections.OrderedDict((k, [k]) for k in range(n))
            od.move_to_end(0)  # reorders the OrderedDict, not the dict underneath
            od.move_to_end(n - 1, last=False)
            f = permafrost.freeze_native([od, od])
            self.assertIs(f[0], f[1])
            self.assertEqual(list(f[0]), list(od))
            self.assertEqual(list(f[0].items()), list(od.items()))
        cyclic = collections.OrderedDict(a=1)
        cyclic["self"] = cyclic
        with self.assertRaisesRegex(TypeError, "cycle: this OrderedDict contains itself"):
            permafrost.freeze_native(cyclic)

    def test_subclass_keys_with_a_hash_of_their_own_are_found_by_the_copys_hash(self):
        class Hash42(int):
            def __hash__(self):
                return 42

        class Seven(str):
            def __hash__(self):
                return 7

        for n in (3, 10, 1000):  # a small dict, and large ones (one table made by fromkeys)
            f = permafrost.freeze_native({Hash42(i): i for i in range(n)} |
                                         {(Seven("t%d" % i),): i for i in range(n)})
            self.assertEqual(len(f), 2 * n)
            self.assertEqual([f.get(i) for i in range(n)], list(range(n)))
            self.assertEqual([f.get(("t%d" % i,)) for i in range(n)], list(range(n)))
            self.assertEqual(f, {i: i for i in range(n)} | {("t%d" % i,): i for i in range(n)})

        class Plain(str):
            pass

        # The scratch dict of the str copies grows: its first table goes on CPython's free list
        # of small tables, where the next small dict must not take it (the audit refused it).
        f = permafrost.freeze_native([{Plain("k%d" % i): i for i in range(10)}, {"a": 1}])
        self.assertEqual(f, [{"k%d" % i: i for i in range(10)}, {"a": 1}])

    def test_no_python_code_runs_while_a_large_dict_is_copied(self):
        calls = []

        class Colliding(str):
            def __hash__(self):
                return 5

            def __eq__(self, other):
                calls.append(["made by __eq__", str(self) * 3])  # would land in the arena
                return str.__eq__(self, other)

        src = {Colliding("k%d" % i): i for i in range(8)}
        calls.clear()
        f = permafrost.freeze_native(src)
        self.assertEqual(calls, [])
        self.assertEqual(f, {"k%d" % i: i for i in range(8)})

    def test_scalars_and_empty_containers(self):
        for v in ("", "x", "é", "long string " * 10, "a\ud800b", 0, -5, 2 ** 200, 1.5,
                  float("nan"), b"", b"bytes", (), [], {}, set(), frozenset(), True):
            f = permafrost.freeze_native([v])
            self.assertTrue(f[0] == v or v != v, repr(v))
            self.assertIs(type(f[0]), {list: NativeList, dict: NativeDict,
                                       set: NativeSet}.get(type(v), type(v)))

    def test_thaw_gives_ordinary_mutable_objects(self):
        src = make_records(20)
        t = permafrost.freeze_native(src).thaw()
        self.assertEqual(t, src)
        rec = t["key:0000001"]
        self.assertIs(type(t), dict)
        self.assertIs(type(rec), dict)
        self.assertIs(type(rec["tags"]), list)
        self.assertIs(type(rec["seen"]), set)
        rec["tags"].append(1)
        t["new"] = 1

    def test_pickle_and_copy_give_ordinary_objects_by_value(self):
        src = make_records(10)
        f = permafrost.freeze_native(src)
        for p in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(f, protocol=p))
            self.assertEqual(back, src)
            self.assertIs(type(back), dict)
            self.assertIs(type(back["key:0000001"]["tags"]), list)
        self.assertIs(type(copy.copy(f)), dict)
        self.assertIs(type(copy.deepcopy(f)["key:0000002"]["seen"]), set)
        self.assertIs(type(f.copy()), dict)
        self.assertIs(type(f["key:0000002"]["seen"] | {1}), set)


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class Errors(unittest.TestCase):
    def test_unsupported_values_are_named_by_path(self):
        import datetime
        with self.assertRaisesRegex(TypeError, r'^obj\["users"\]\[1\]\["when"\]: date is not '
                                               r'supported$'):
            permafrost.freeze_native({"users": [{}, {"when": datetime.date.today()}]})
        with self.assertRaisesRegex(TypeError, r"^obj\.keys\(\)\[0\]: object is not supported"):
            permafrost.freeze_native({object(): 1})

    def test_a_permafrost_view_is_refused_naming_thaw(self):
        view = permafrost.freeze({"a": [1, 2]})
        with self.assertRaisesRegex(TypeError, r'^obj\["cfg"\]: FrozenDict is a permafrost\.'
                                               r'freeze\(\) view, which freeze_native\(\) does '
                                               r'not copy: pass view\.thaw\(\)'):
            permafrost.freeze_native({"cfg": view})
        with self.assertRaisesRegex(TypeError, r"^obj: FrozenList is a permafrost\.freeze\(\) "
                                               r"view"):
            permafrost.freeze_native(view["a"])
        self.assertEqual(permafrost.freeze_native({"cfg": view.thaw()}), {"cfg": {"a": [1, 2]}})

    def test_cycles_and_depth(self):
        a = []
        a.append({"back": a})
        with self.assertRaisesRegex(TypeError, r'^obj\[0\]\["back"\]: cycle: this list contains '
                                               r'itself$'):
            permafrost.freeze_native(a)
        deep = []
        for _ in range(6000):
            deep = [deep]
        with self.assertRaisesRegex(TypeError, "nested more than 5000 levels deep"):
            permafrost.freeze_native(deep)

    def test_a_deep_path_shows_its_first_and_last_steps(self):
        # The whole path of 5000 steps made a 30 KB message.
        deep = []
        for _ in range(6000):
            deep = [deep]
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze_native(deep)
        self.assertEqual(str(cm.exception), "obj" + "[0]" * 8 + "...(4984 more)..." + "[0]" * 8 +
                         ": nested more than 5000 levels deep")

    def test_keys_equal_once_copied_as_their_base_are_refused(self):
        class Distinct(str):  # equal only to itself, as the default object.__eq__
            __hash__ = str.__hash__

            def __eq__(self, other):
                return self is other

        for n in (2, 8):  # a small dict, a large one
            with self.assertRaisesRegex(TypeError, r"^obj\[0\]: two keys or elements are equal "
                                                   r"once copied as their base types \('x'\): "
                                                   r"a subclass's __eq__ or __hash__ told them"):
                permafrost.freeze_native([{Distinct("x"): i for i in range(n)}])
        for s in ({Distinct("x"), Distinct("x")}, frozenset({Distinct("x"), "x"}),
                  {(Distinct("x"),), ("x",)}):
            with self.assertRaisesRegex(TypeError, "are equal once copied as their base types"):
                permafrost.freeze_native([s])
        self.assertEqual(permafrost.freeze_native({"ok": [1]}), {"ok": [1]})

    def test_a_thread_with_a_small_stack_gets_a_recursion_error(self):
        # freeze_native() and thaw() recursed once per level with no stack check: SIGSEGV.
        script = textwrap.dedent("""\
            import threading, permafrost
            deep = []
            for i in range(3000):
                deep = {"a": [deep]} if i % 2 else [deep]
            frozen = permafrost.freeze_native(deep)  # the main thread's stack is large enough
            def run():
                for attempt in (lambda: permafrost.freeze_native(deep), frozen.thaw):
                    try:
                        attempt()
                    except RecursionError as e:
                        print(str(e)[-57:])
            threading.stack_size(256 * 1024)
            t = threading.Thread(target=run)
            t.start()
            t.join()
            print(len(frozen.thaw()))
            """)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=os.environ, timeout=120)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout.splitlines(),
                         ["larger stack (threading.stack_size) or in the main thread"] * 2 +
                         ["1"])

    def test_pickling_in_a_thread_with_a_small_stack_raises_recursion_error(self):
        # The pickler takes more C stack per level of a native copy than of a plain list, and
        # counts levels, not bytes: a 256 KiB thread (3.12) or a 1 MiB one (3.13) died of SIGSEGV.
        script = textwrap.dedent("""\
            import pickle, threading, permafrost
            deep = []
            for i in range(4900):
                deep = {"a": deep} if i % 7 == 0 else [deep]
            frozen = permafrost.freeze_native(deep)
            shallow = permafrost.freeze_native({"a": [1, {2}], "b": {"c": []}})
            def run():
                try:
                    pickle.dumps(frozen)
                except RecursionError:  # this check's or, first, the interpreter's (3.12, 1 MiB)
                    print("RecursionError")
                print(pickle.loads(pickle.dumps(shallow)))
            for kib in (256, 1024):
                threading.stack_size(kib * 1024)
                t = threading.Thread(target=run)
                t.start()
                t.join()
            """)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=os.environ, timeout=120)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout.splitlines(),
                         ["RecursionError", "{'a': [1, {2}], 'b': {'c': []}}"] * 2)

    def test_a_failed_copy_leaves_the_interpreter_working(self):
        for _ in range(3):
            with self.assertRaises(TypeError):
                permafrost.freeze_native({"k%d" % i: [float(i), (i,)] for i in range(5000)} |
                                         {"bad": object()})
        x = [float(i) for i in range(1000)] + [(i, i) for i in range(1000)]
        gc.collect()
        self.assertEqual(len(x), 2000)
        self.assertEqual(permafrost.freeze_native({"ok": [1.5]}), {"ok": [1.5]})

    def interrupted(self, handler):
        """freeze_native() of 100k records (1.3M objects) with SIGALRM's handler due 20 ms in."""
        import signal as sig
        src = make_records(100000)
        old = sig.signal(sig.SIGALRM, handler)
        try:
            sig.setitimer(sig.ITIMER_REAL, 0.02)
            return permafrost.freeze_native(src)
        finally:
            sig.setitimer(sig.ITIMER_REAL, 0)
            sig.signal(sig.SIGALRM, old)

    def test_keyboard_interrupt_during_the_copy_restores_the_interpreter(self):
        def interrupt(signum, frame):
            raise KeyboardInterrupt
        with self.assertRaises(KeyboardInterrupt):
            self.interrupted(interrupt)
        junk = [[float(i), (i, str(i))] for i in range(100000)]  # the allocator is CPython's
        gc.collect()
        self.assertEqual(len(junk), 100000)
        self.assertEqual(permafrost.freeze_native({"after": [1.5]}), {"after": [1.5]})

    def test_freeze_native_from_a_signal_handler_during_a_copy_is_refused(self):
        refusals = []

        def nested(signum, frame):
            try:
                permafrost.freeze_native({"nested": 1})
            except RuntimeError as e:
                refusals.append(str(e))
        f = self.interrupted(nested)
        self.assertEqual(len(f), 100000)
        self.assertEqual(refusals, ["permafrost.freeze_native() is already running in this "
                                    "process"])

    def test_a_signal_handler_emptying_the_source_is_a_runtime_error(self):
        # The handler drops the last reference to the record being copied: its finalizer ran in
        # the arena, kept what it made, and the process died freeing it (munmap_chunk()).
        script = textwrap.dedent("""\
            import gc, signal, permafrost
            kept = []
            class Noted(str):
                def __del__(self):
                    kept.append(["finalized", str(self) * 2])
            src = [{"v": Noted("x%d" % i), "n": [i, float(i)]} for i in range(300000)]
            signal.signal(signal.SIGALRM, lambda signum, frame: src.clear())
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            try:
                permafrost.freeze_native(src)
            except RuntimeError as e:
                print(e)
            kept.clear()
            gc.collect()
            print(permafrost.freeze_native({"after": [1.5]}))
            """)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=os.environ, timeout=120)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, "obj: the list changed size while it was being copied\n"
                                   "{'after': [1.5]}\n")

    def test_every_arena_slot_in_use_is_a_memory_error_naming_it(self):
        held = []
        try:
            while len(held) < 2000:  # freeze() of a list makes an arena; 1024 slots at most
                held.append(permafrost.freeze([len(held)]))
        except MemoryError:
            pass
        with self.assertRaisesRegex(MemoryError, r"^permafrost\.freeze_native\(\): .*all 1024 "
                                                 r"arena slots are in use"):
            permafrost.freeze_native({"a": [1.5]})
        del held
        self.assertEqual(permafrost.freeze_native({"a": [1.5]}), {"a": [1.5]})

    def test_a_huge_pages_argument_whose_truth_raises_is_that_error(self):
        class Undecided:
            def __bool__(self):
                raise ValueError("neither")

        # The error was swallowed and the copy made as if huge_pages=False.
        with self.assertRaisesRegex(ValueError, "^neither$"):
            permafrost.freeze_native({"a": [1]}, huge_pages=Undecided())

    def test_calling_a_native_type_makes_an_ordinary_container(self):
        # dataclasses.asdict() rebuilds a container as type(x)(items): it raised TypeError.
        self.assertEqual((NativeDict(a=1), NativeList("ab"), NativeSet([1, 1])),
                         ({"a": 1}, ["a", "b"], {1}))
        self.assertEqual([type(c) for c in (NativeDict(), NativeList(), NativeSet(),
                                            NativeDict.fromkeys("ab"))], [dict, list, set, dict])

        @dataclasses.dataclass
        class Job:
            opts: dict
            steps: list

        job = Job(*permafrost.freeze_native(({"a": {"b": 1}}, [[1], (2, [3])])))
        self.assertEqual(dataclasses.asdict(job), {"opts": {"a": {"b": 1}}, "steps": [[1], (2, [3])]})
        self.assertIs(type(dataclasses.asdict(job)["opts"]["a"]), dict)
        self.assertIs(type(dataclasses.astuple(job)[1][1][1]), list)

    def test_a_subinterpreter_imports_the_package_but_cannot_freeze_native(self):
        from test_module import _interpreters, run_in_subinterpreter
        if _interpreters is None:
            self.skipTest("this interpreter has no _interpreters/_xxsubinterpreters")
        failure = run_in_subinterpreter(
            "import permafrost\n"
            "assert 'runs only in one interpreter' in permafrost._core._native_unsupported()\n"
            "permafrost.freeze_native({'a': 1})\n", own_gil=False)
        self.assertIn("RuntimeError", failure)
        self.assertIn("runs only in one interpreter of a process, the main one once it imported "
                      "permafrost", failure)
        self.assertEqual(permafrost.freeze_native({"main": [1]}), {"main": [1]})

    def test_a_subinterpreter_that_imports_first_leaves_freeze_native_to_the_main_one(self):
        # The first interpreter to import permafrost took freeze_native() for good: a
        # subinterpreter (mod_wsgi's) that imported it first, even one destroyed since, left
        # the main interpreter a RuntimeError. Another process: this one imported it already.
        if importlib.util.find_spec("_testcapi") is None:
            self.skipTest("this interpreter has no _testcapi (its run_in_subinterp)")
        script = textwrap.dedent('''
            import _testcapi  # runs code in a legacy (shared GIL) subinterpreter, as mod_wsgi's
            assert _testcapi.run_in_subinterp("import permafrost") == 0
            import permafrost
            print(permafrost.freeze_native({"main": [1]}), flush=True)
            assert _testcapi.run_in_subinterp("""if 1:
                import permafrost
                try:
                    permafrost.freeze_native({"sub": 1})
                except RuntimeError as e:
                    print("runs only in one interpreter" in str(e), flush=True)
                """) == 0
            ''')
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        self.assertEqual(out.stdout.split(), ["{'main':", "[1]}", "True"], out.stderr)

    def test_a_subinterpreter_made_after_the_owner_is_gone_is_refused(self):
        # The owner of freeze_native() was kept by address, which CPython reuses: a subinterpreter
        # made after the owning one was destroyed passed for it, and its copies got the dead
        # one's types (NameError from their mutators, AttributeError from pickle).
        from test_module import _interpreters, run_fresh
        if _interpreters is None:
            self.skipTest("this interpreter has no _interpreters/_xxsubinterpreters")
        words = run_fresh("""
            for _ in range(4):  # as a server's earlier ones: the owner's address was reused then
                assert run_in_subinterpreter("import permafrost", own_gil=False) is None
            owner = run_in_subinterpreter(
                "import permafrost\\n"
                "x = permafrost.freeze_native({'a': [1]})\\n"
                "assert type(x) is permafrost.NativeDict, type(x)\\n", own_gil=False)
            print("owner:", owner)
            for _ in range(4):
                failure = run_in_subinterpreter(
                    "import permafrost\\npermafrost.freeze_native({'b': 1})\\n", own_gil=False)
                print("refused" if failure and "runs only in one interpreter" in failure else
                      repr(failure))
            """)
        self.assertEqual(words, ["owner:", "None"] + ["refused"] * 4)

    def test_native_arena_of_an_ordinary_object(self):
        with self.assertRaises(TypeError):
            permafrost.native_arena({})


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class Audit(unittest.TestCase):
    def test_a_stray_object_in_the_arena_is_refused(self):
        # test=1 makes a str in the arena while copying and keeps it: what a finalizer or a
        # signal handler running during the copy would leave there.
        with self.assertRaisesRegex(RuntimeError, r"failed its audit: a block of \d+ bytes at "
                                                  r"offset \d+ \(a str object\) was allocated "
                                                  r"while copying but is not part of the result"):
            permafrost._core._freeze_native({"a": [1.5, "x" * 40]}, "stray", None, 1)

    def test_an_outside_reference_into_the_copy_is_refused(self):
        # test=2 keeps a reference to an object of the copy from outside it.
        with self.assertRaisesRegex(RuntimeError, r"failed its audit: .*NativeList object at "
                                                  r"offset \d+ has 1 reference\(s\) from outside "
                                                  r"the result"):
            permafrost._core._freeze_native({"a": [1.5, "x" * 40]}, "outside", None, 2)
        # The interpreter goes on; the refused copy stays alive (immortal, unfrozen).
        self.assertEqual(permafrost.freeze_native({"a": [1]}), {"a": [1]})


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class Mutation(unittest.TestCase):
    def test_every_mutator_raises_naming_thaw(self):
        f = permafrost.freeze_native({"d": {"a": 1}, "l": [3, 1, 2], "s": {1, 2}})
        d, l, s = f["d"], f["l"], f["s"]
        attempts = {
            "d[k] = v": lambda: d.__setitem__("a", 2), "del d[k]": lambda: d.__delitem__("a"),
            "d.update": lambda: d.update(b=1), "d.pop": lambda: d.pop("a"),
            "d.popitem": d.popitem, "d.clear": d.clear, "d.setdefault": lambda: d.setdefault("z"),
            "d |= x": lambda: d.__ior__({"q": 1}), "d.__init__": lambda: d.__init__(x=1),
            "l.append": lambda: l.append(4), "l[0] = x": lambda: l.__setitem__(0, 9),
            "del l[0]": lambda: l.__delitem__(0), "l.extend": lambda: l.extend([1]),
            "l.insert": lambda: l.insert(0, 1), "l.pop": l.pop, "l.remove": lambda: l.remove(3),
            "l.clear": l.clear, "l.sort": l.sort, "l.reverse": l.reverse,
            "l += x": lambda: l.__iadd__([1]), "l *= 2": lambda: l.__imul__(2),
            "s.add": lambda: s.add(3), "s.discard": lambda: s.discard(1),
            "s.remove": lambda: s.remove(1), "s.pop": s.pop, "s.clear": s.clear,
            "s.update": lambda: s.update({5}), "s |= x": lambda: s.__ior__({5}),
            "s -= x": lambda: s.__isub__({1}), "s &= x": lambda: s.__iand__({1}),
            "s ^= x": lambda: s.__ixor__({1}),
            "s.difference_update": lambda: s.difference_update({1}),
            "s.intersection_update": lambda: s.intersection_update({1}),
            "s.symmetric_difference_update": lambda: s.symmetric_difference_update({1}),
        }
        for what, attempt in attempts.items():
            with self.assertRaisesRegex(TypeError, r"is frozen by permafrost.freeze_native\(\).*"
                                                   r"\.thaw\(\) returns a mutable copy", msg=what):
                attempt()
        self.assertEqual(f, {"d": {"a": 1}, "l": [3, 1, 2], "s": {1, 2}})
        with self.assertRaises(TypeError):
            l += [1]  # += on a frozen list raises too (list's in-place add is a mutator)
        with self.assertRaises(AttributeError):
            d.extra = 1

    def test_a_weak_reference_to_a_native_container_is_a_type_error(self):
        # weakref.ref() of a NativeSet wrote its weakref list: the process died (SIGSEGV).
        proc = run_script("""\
            import weakref
            for x in (s, d, l):
                try:
                    weakref.ref(x)
                except TypeError as e:
                    print(e)
            """)
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assertEqual(proc.stdout.splitlines(),
                         ["cannot create weak reference to 'NativeSet' object",
                          "cannot create weak reference to 'NativeDict' object",
                          "cannot create weak reference to 'NativeList' object", "survived"])

    def test_assigning_class_to_a_native_container_is_a_type_error(self):
        # `x.__class__ = C` wrote the frozen object's type pointer: the process died (SIGSEGV).
        # The native classes are immutable types, which CPython refuses it for; they also refuse
        # new attributes, so a mutator cannot be put back on them.
        proc = run_script("""\
            for x, base in ((d, dict), (l, list), (s, set)):
                try:
                    x.__class__ = type("Other", (base,), {"__slots__": ()})
                except TypeError as e:
                    print(type(x).__name__, e)
            try:
                permafrost.NativeDict.update = dict.update
            except TypeError as e:
                print(e)
            """)
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        refused = "__class__ assignment only supported for mutable types or ModuleType subclasses"
        self.assertEqual(proc.stdout.splitlines(),
                         ["NativeDict " + refused, "NativeList " + refused, "NativeSet " + refused,
                          "cannot set 'update' attribute of immutable type 'NativeDict'",
                          "survived"])

    def test_weak_references_to_a_frozen_frozenset_work_and_write_nothing(self):
        # weakref.ref() of a frozen frozenset wrote the head of its weakref list: the process died
        # (SIGSEGV). Each frozen frozenset now has a plain reference at the head, made outside
        # the arena, after which every other reference is linked. The arena is write-protected
        # under the trap, so "survived" shows that none of this wrote it.
        proc = run_script("""\
            import gc, os, weakref
            fs = f["fs"]
            r = weakref.ref(fs)
            assert r() is fs and weakref.ref(fs) is r
            called = []
            with_callback = weakref.ref(fs, called.append)
            proxy = weakref.proxy(fs)
            assert len(proxy) == 1 and 1 in proxy
            kept = (weakref.WeakSet([fs]), weakref.WeakKeyDictionary({fs: 1}),
                    weakref.WeakValueDictionary({"k": fs}))
            assert [len(k) for k in kept] == [1, 1, 1]
            print(weakref.getweakrefcount(fs))
            del with_callback, proxy, kept
            gc.collect()
            print(weakref.getweakrefcount(fs), called)
            pid = os.fork()
            if pid == 0:
                os._exit(len(weakref.WeakSet([fs])) - 1 + len(called))
            print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            """)
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assertEqual(proc.stdout.splitlines(), ["6", "1 []", "0", "survived"])

    def test_a_write_past_the_subclass_dies_with_the_trap_line_naming_the_type(self):
        pythonapi = "ctypes.pythonapi.PyDict_SetItem.argtypes = [ctypes.py_object] * 3\n"
        cases = {
            "dict.__setitem__(d, 'name', 1)": "dict object (NativeDict)",
            "dict.__setitem__(d, 'new', 1)": "dict object (NativeDict)",
            "dict.__delitem__(d, 'name')": "dict object (NativeDict)",
            "dict.clear(d)": "dict object (NativeDict)",
            "dict.update(d, x=1)": "dict object (NativeDict)",
            pythonapi + "ctypes.pythonapi.PyDict_SetItem(d, 'new', 1)": "dict object (NativeDict)",
            "list.append(l, 4)": "list object (NativeList)",
            "list.__setitem__(l, 0, 9)": "list object (NativeList)",
            "list.extend(l, range(100))": "list object (NativeList)",
            "list.__delitem__(l, slice(1, None))": "list object (NativeList)",
            "list.sort(l, reverse=True)": "list object (NativeList)",
            "list.__init__(l, [5])": "list object (NativeList)",
            "import heapq; heapq.heappush(l, 0)": "list object (NativeList)",  # C, past the class
            "set.add(s, 3)": "set object (NativeSet)",
            "set.clear(s)": "set object (NativeSet)",
            "ctypes.memset(id(f['text']) + 24, 0, 1)": "str object",
        }
        for code, type_text in cases.items():
            proc = run_script(code, name="bypass")
            self.assertEqual(proc.returncode, -signal.SIGSEGV, code + "\n" + proc.stderr)
            self.assertNotIn("survived", proc.stdout, code)
            lines = proc.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, code + "\n" + proc.stderr)
            self.assertRegex(lines[0], r'^permafrost: write to frozen arena "bypass" at offset '
                                       r'\d+ \(address 0x[0-9a-f]+\); ', code)
            self.assertIn(type_text + " at offset", lines[0], code)


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class KnownWriters(unittest.TestCase):
    """What CPython itself writes into objects that code only reads, and how each is handled."""

    def test_a_frozen_dict_as_a_functions_globals_writes_nothing(self):
        # LOAD_GLOBAL specialises only on exact dicts (Python/specialize.c), so a NativeDict as
        # globals takes the generic path and never has its keys' dk_version written.
        proc = run_script("""
            g = types.FunctionType(compile("def g():\\n return len(rec) + items[0]", "m",
                                           "exec").co_consts[0], f)
            assert sum(g() for _ in range(5000)) == 5000 * 3
        """)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("survived", proc.stdout)

    def test_exec_with_a_frozen_dict_as_globals_dies_naming_it(self):
        # exec() and eval() insert __builtins__ into their globals: a write, refused loudly.
        proc = run_script("eval('len(rec)', f)", name="globals")
        self.assertEqual(proc.returncode, -signal.SIGSEGV, proc.stderr)
        self.assertIn("dict object (NativeDict) at offset", proc.stderr)
        # As locals (a mapping only read), it works.
        ok = run_script("assert eval('len(rec)', {}, f) == 2")
        self.assertEqual(ok.returncode, 0, ok.stderr)

    def test_interning_a_frozen_str_writes_nothing(self):
        # The standard library interns names it is given (setattr, namedtuple, enum, argparse,
        # attrgetter, compile's file name, a code object's constants), which wrote the interned
        # state of a frozen str that no equal interned str existed for: the process died. Every
        # str of a copy is now marked interned. The strs come from json.loads, since the compiler
        # interns the script's own identifier-like literals (those would be used as they are).
        proc = run_script("""
            import argparse, collections, enum, json, operator
            g = permafrost.freeze_native(json.loads(
                '{"fields": ["alpha_q1", "beta_q1"], "attr": "gamma_q1", "file": "tmpl_q1.py",'
                ' "key with space": 1, "special": "__eq__", "consts": [1, "delta_q1"]}'))
            assert type(g["attr"]) is str and sys.intern(g["attr"]) is g["attr"]
            assert collections.namedtuple("Row", g["fields"])(1, 2).beta_q1 == 2
            ns = types.SimpleNamespace()
            for k in g:
                setattr(ns, k, 1)                 # a key that is no identifier, too
            setattr(ns, g["attr"], 2)
            assert operator.attrgetter(g["attr"])(ns) == 2 and ns.gamma_q1 == 2
            assert [e.name for e in enum.Enum("E", g["fields"])] == ["alpha_q1", "beta_q1"]
            parser = argparse.ArgumentParser()
            parser.add_argument(g["attr"])
            assert parser.parse_args(["x"]).gamma_q1 == "x"
            compile("x = 1", g["file"], "exec")
            compile("x", "m", "eval").replace(co_consts=tuple(g["consts"]))
            # A special method's name is the interpreter's own str: setting it updates the slot.
            class Anything:
                pass
            setattr(Anything, g["special"], lambda self, other: True)
            assert Anything() == 5
        """)
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assertEqual(proc.stdout, "survived\n")

    def test_a_frozen_dict_as_an_objects_dict_reads_but_dies_on_assignment(self):
        # CPython's __dict__ setter takes any dict and its attribute store writes the dict
        # directly, past NativeDict's methods: nothing can refuse it (docs/errors.md).
        proc = run_script('''
            class Config:
                pass
            c = Config()
            c.__dict__ = d
            assert sum(len(c.name) for _ in range(5000)) == 5000 * 3
            print("read")
            c.name = "bob"
        ''', name="as-dict")
        self.assertEqual(proc.returncode, -signal.SIGSEGV)
        self.assertEqual(proc.stdout, "read\n")
        self.assertRegex(proc.stderr, r'^permafrost: write to frozen arena "as-dict" .*'
                                      r'dict object \(NativeDict\) at offset')

    def test_a_normal_exit_writes_nothing(self):
        # 3.13 unmarks interned strs at exit: interned keys must live outside the arena there.
        proc = run_script("""
            g = permafrost.freeze_native({"key_%d" % i: {"field_%d" % i: [i]} for i in range(99)})
            import gc, json; json.dumps(g); gc.collect()
        """)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stderr, "")


def read_everything(f):
    """Every read operation of issue 21's list, on the whole copy; returns a checksum."""
    total = 0
    keys = list(f)
    for k in keys:  # lookups, in, get, field reads, str methods, hashing
        rec = f[k]
        total += (k in f) + (f.get(k) is rec) + len(rec["name"]) + rec["id"] % 7
        total += int(rec["score"]) + len(rec["tags"]) + len(rec["city"].upper())
        total += hash(rec["name"]) & 1 + hash(rec["point"]) & 1 + len(rec["city"].encode())
        total += rec["name"].startswith("name") + ("-" in rec["name"]) + len(rec["blob"])
        total += len(rec["name"].split("-")) + len(f"{rec['name']}:{rec['score']:.2f}")
        total += len(set(rec["tags"]) | rec["seen"]) + (7 in rec["flags"]) + rec["ok"]
        total += len(sorted(rec["tags"], key=str)) + sum(1 for _ in rec.items())
        total += len(dict(**rec)) + len(types.MappingProxyType(rec)) + (rec == dict(rec))
    total += len(json.dumps(f, default=sorted))  # json.dumps of the whole dict
    total += len(pickle.dumps(f)) + len(repr(f)) + len(copy.copy(f)) + len(copy.deepcopy(
        f[keys[0]]))
    total += len(sorted(f)) + len(sorted(f.values(), key=lambda r: r["score"]))
    total += len({v["name"] for v in f.values()}) + len(dict(f)) + len(f.copy())
    gc.collect()
    gc.freeze()
    gc.collect()
    gc.unfreeze()
    return total


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class ForkedWorkers(unittest.TestCase):
    def test_four_workers_reading_everything_copy_no_arena_page(self):
        from test_fork import check_workers_copy_nothing
        f = permafrost.freeze_native(make_records(20000), name="workers")
        arena = permafrost.native_arena(f)
        # The whole arena is audited; read_everything() reads the copy through f.
        check_workers_copy_nothing(self, arena, lambda a: read_everything(f), arena_pages(f))

    def test_the_same_reads_copy_a_plain_dict(self):
        # The contrast (and a check that the audit sees copies): the plain dict's pages are
        # written by the same pass, through reference counts and GC links.
        from test_fork import uss_growth_of
        src = make_records(20000)
        self.assertGreater(uss_growth_of(lambda: read_everything(src)), 5 << 20)


# Debian's Flask and gunicorn are installed for /usr/bin/python3 (3.11), where freeze_native()
# is not available; they are pure Python, so pyenv's 3.12 and 3.13 import them from Debian's
# dist-packages (markupsafe without its C speedups, which are built for 3.11).
DEBIAN_PACKAGES = "/usr/lib/python3/dist-packages"


def debian_module_imports(module):
    """True when this interpreter imports module from Debian's dist-packages (pure Python)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path[:1] + [DEBIAN_PACKAGES]))
    try:
        return subprocess.run([sys.executable, "-c", "import " + module], env=env,
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def flask_and_gunicorn_import():
    return debian_module_imports("flask, werkzeug, jinja2, markupsafe, itsdangerous, click, "
                                 "gunicorn.app.wsgiapp")


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class ExactTypeChecks(unittest.TestCase):
    """What README and docs/python.md say still needs .thaw(): code that wants the exact type."""

    def test_type_is_dict_is_false_for_the_subclass(self):
        f = permafrost.freeze_native({"a": [1]})
        self.assertIsNot(type(f), dict)
        self.assertIsNot(type(f["a"]), list)
        self.assertIs(type(f.thaw()), dict)

    @unittest.skipUnless(debian_module_imports("yaml"),
                         "Debian's PyYAML (python3-yaml) does not import from " + DEBIAN_PACKAGES +
                         " with this interpreter")
    def test_yaml_safe_dump_needs_thaw(self):
        script = textwrap.dedent("""\
            import permafrost, yaml
            f = permafrost.freeze_native({"a": {"b": [1, 2]}})
            try:
                yaml.safe_dump(f)
            except yaml.representer.RepresenterError:
                print(yaml.safe_dump(f.thaw()).strip())
            """)
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(permafrost.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_dir, DEBIAN_PACKAGES]))
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.split(), ["a:", "b:", "-", "1", "-", "2"])


@unittest.skipUnless(SUPPORTED, UNSUPPORTED or "supported")
class GunicornFlask(unittest.TestCase):
    TARGETS = ["/user/user:%07d" % i for i in range(0, 20000, 97)] + \
              ["/raw/user:%07d" % i for i in range(5, 20000, 89)] + \
              ["/scan/%d" % i for i in range(0, 20000, 997)]

    def serve(self, mode, tmp):
        """The app's answers to TARGETS (JSON), and with mode "native" each worker's audit of
        the frozen table's arena against the gunicorn master's pages."""
        from test_gunicorn import Server, request, worker_pids
        server = Server(mode, tmp, app="apps.flask_native_app:app", extra_path=[DEBIAN_PACKAGES])
        try:
            bodies = [json.loads(request(server.sock, t)) for t in self.TARGETS]
            for t in self.TARGETS:  # every worker takes a share of a second round
                request(server.sock, t)
            audits = []
            if mode == "native":
                address, size = json.loads(request(server.sock, "/arena"))
                audits = [permafrost._core._range_sharing_audit(address, size, pid,
                                                                server.proc.pid)
                          for pid in server.workers]
            self.assertEqual(worker_pids(server.proc.pid), server.workers, "a worker died")
        finally:
            err = server.stop()
        self.assertNotIn("Traceback", err)
        self.assertNotIn("permafrost:", err)
        return bodies, audits

    @unittest.skipUnless(flask_and_gunicorn_import(),
                         "Debian's Flask and gunicorn (python3-flask, gunicorn) do not import "
                         "from " + DEBIAN_PACKAGES + " with this interpreter")
    def test_an_unchanged_flask_app_serves_the_native_table_without_copying_it(self):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            plain, _ = self.serve("dict", tmp)
            native, audits = self.serve("native", tmp)
        self.assertEqual(native, plain, "the same app answers the same with either table")
        self.assertEqual(len(audits), WORKERS)
        for pages, parent_present, child_present, shared, copied in audits:
            self.assertGreater(child_present, 0, "the worker read the table")
            self.assertEqual(copied, 0, "a worker copied pages of the frozen table")


class Unsupported(unittest.TestCase):
    @unittest.skipIf(SUPPORTED, "freeze_native() is supported on this interpreter (%s)" %
                     sys.version.split()[0])
    def test_other_interpreters_get_a_clear_error_at_call_time(self):
        with self.assertRaisesRegex(RuntimeError, r"needs CPython 3\.12 or 3\.13, the default "
                                                  r"\(GIL\) build: this is CPython 3\.\d+"):
            permafrost.freeze_native({"a": 1})
        self.assertIn("permafrost.freeze()", UNSUPPORTED)
        self.assertTrue(issubclass(NativeDict, dict))  # the names exist everywhere

    def test_the_layout_checks_passed_where_supported(self):
        if sys.version_info[:2] in ((3, 12), (3, 13)) and not sysconfig_free_threaded():
            self.assertEqual(UNSUPPORTED, "")
        else:
            self.assertNotEqual(UNSUPPORTED, "")


def sysconfig_free_threaded():
    import sysconfig
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


if __name__ == "__main__":
    unittest.main()
