"""permafrost.freeze(): round trips, views, errors and mutation attempts (no fork)."""
import collections
import collections.abc
import copy
import ctypes
import json
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import unittest

import permafrost
from permafrost import FrozenDict, FrozenList, FrozenSet

try:
    import numpy
except ImportError:  # Debian's python3-numpy serves /usr/bin/python3 only
    numpy = None

LONE_SURROGATES = "a\ud800b\udfff"


class RoundTrip(unittest.TestCase):
    def check_round_trip(self, value):
        frozen = permafrost.freeze({"v": value})
        self.assertEqual(frozen.thaw(), {"v": value})
        self.assertEqual(frozen["v"], value)
        return frozen["v"]

    def test_scalars(self):
        for v in (0, 1, -1, 2**60 - 1, -2**60, 2**60, -2**60 - 1, True, False, None, 0.5, 0.1, 1e308, 5e-324,
                  float("inf"), float("-inf"), "", "text", b"", b"\x00\xffbytes"):
            with self.subTest(v=v):
                got = self.check_round_trip(v)
                self.assertIs(type(got), type(v))

    def test_big_ints(self):
        for v in (2**64, -2**64, 2**1000 + 12345, -(3**500), 2**63 - 1, -2**63):
            with self.subTest(v=v):
                self.assertEqual(self.check_round_trip(v), v)

    def test_nan_and_negative_zero(self):
        frozen = permafrost.freeze([float("nan"), -0.0])
        self.assertTrue(math.isnan(frozen[0]))
        self.assertEqual(math.copysign(1.0, frozen[1]), -1.0)
        self.assertEqual(math.copysign(1.0, frozen.thaw()[1]), -1.0)

    def test_non_ascii_and_lone_surrogate_strings(self):
        for s in ("héllo", "日本語", "emoji \U0001F600", LONE_SURROGATES, "\udc80"):
            with self.subTest(s=ascii(s)):
                self.assertEqual(self.check_round_trip(s), s)
        frozen = permafrost.freeze({LONE_SURROGATES: 1, "日本": 2})
        self.assertEqual(frozen[LONE_SURROGATES], 1)
        self.assertEqual(frozen["日本"], 2)
        self.assertIn(LONE_SURROGATES, frozen)

    def test_empty_containers(self):
        for v in ({}, [], (), set(), frozenset(), "", b""):
            with self.subTest(v=v):
                self.assertEqual(self.check_round_trip(v), v)
        self.assertEqual(permafrost.freeze({}).thaw(), {})
        self.assertEqual(len(permafrost.freeze([])), 0)

    def test_nesting(self):
        value = {"users": [{"name": "ada", "id": 1, "tags": ("x", ["y", {"z": {1, 2}}]),
                            "groups": frozenset({"a", "b"})}],
                 "matrix": [[1, 2], [3, [4, [5, [6]]]]], 7: {8: 9}, (1, "t"): None}
        frozen = permafrost.freeze(value)
        self.assertEqual(frozen.thaw(), value)
        self.assertEqual(frozen["users"][0]["tags"][1][1]["z"], {1, 2})
        self.assertEqual(frozen["matrix"][1][1][1][1][0], 6)
        self.assertEqual(frozen[7][8], 9)
        self.assertIsNone(frozen[(1, "t")])

    def test_thaw_types(self):
        thawed = permafrost.freeze({"l": [1], "t": (1, [2]), "s": {1}, "f": frozenset({2})}).thaw()
        self.assertIs(type(thawed), dict)
        self.assertIs(type(thawed["l"]), list)
        self.assertIs(type(thawed["t"]), tuple)
        self.assertIs(type(thawed["t"][1]), list)
        self.assertIs(type(thawed["s"]), set)
        self.assertIs(type(thawed["f"]), frozenset)

    def test_scalar_root_is_returned_as_is(self):
        self.assertEqual(permafrost.freeze("text"), "text")
        self.assertEqual(permafrost.freeze(2**100), 2**100)

    def test_subclasses_are_frozen_as_their_base(self):
        Point = collections.namedtuple("Point", "x y")
        frozen = permafrost.freeze({"od": collections.OrderedDict(a=1), "p": Point(1, 2)})
        self.assertEqual(frozen["od"], {"a": 1})
        self.assertEqual(frozen["p"], (1, 2))

    def test_an_ordered_dict_keeps_its_own_order(self):
        for n in (3, 10, 5000):  # a small dict, a larger one, one walked live
            od = collections.OrderedDict((k, k) for k in range(n))
            od.move_to_end(0)  # reorders the OrderedDict, not the dict underneath
            od.move_to_end(n - 1, last=False)
            frozen = permafrost.freeze([od])[0]
            self.assertEqual(list(frozen), list(od))
            self.assertEqual(list(frozen.items()), list(od.items()))

    def test_subclass_hooks_do_not_run_during_freeze(self):
        calls = []

        class Int(int):
            def __hash__(self):
                calls.append("hash")
                return 1

            def bit_length(self):
                calls.append("bit_length")
                return 1

        class Set(set):
            def __iter__(self):
                calls.append("iter")
                return iter(())

        big = Int(2**100)
        frozen = permafrost.freeze({"n": big, "s": Set({1, 2}), "k": {Int(5): "five"}})
        self.assertEqual(frozen["n"], 2**100)
        self.assertEqual(frozen["s"], {1, 2})
        self.assertEqual(frozen["k"][5], "five")
        self.assertNotIn("bit_length", calls)
        self.assertNotIn("iter", calls)
        self.assertEqual(calls.count("hash"), 1)  # building {Int(5): ...} above; not freeze()

    def test_freezing_a_view_copies_it(self):
        first = permafrost.freeze({"a": [1, 2]})
        second = permafrost.freeze({"copy": first["a"]})
        self.assertEqual(second["copy"], [1, 2])


class Views(unittest.TestCase):
    def setUp(self):
        self.d = permafrost.freeze({"b": 1, "a": [1, 2, 3, 2], "c": {"x": "y"}, 1: "one"})

    def test_dict_is_a_mapping_in_insertion_order(self):
        d = self.d
        self.assertIsInstance(d, collections.abc.Mapping)
        self.assertEqual(list(d), ["b", "a", "c", 1])
        self.assertEqual(list(d.keys()), ["b", "a", "c", 1])
        self.assertEqual(list(d.values())[0], 1)
        self.assertEqual(list(d.items())[3], (1, "one"))
        self.assertIn("a", d)
        self.assertNotIn("zz", d)
        self.assertIn(("b", 1), d.items())
        self.assertEqual(d.get("b"), 1)
        self.assertIsNone(d.get("zz"))
        self.assertEqual(d.get("zz", 5), 5)
        self.assertEqual(len(d), 4)
        with self.assertRaises(KeyError):
            d["zz"]
        self.assertEqual(d[1.0], "one")  # 1 == 1.0, as in a dict
        self.assertEqual(d[True], "one")

    def test_dict_equality_and_or(self):
        plain = self.d.thaw()
        self.assertEqual(self.d, plain)
        self.assertEqual(plain, self.d)
        self.assertNotEqual(self.d, {"b": 1})
        self.assertEqual(self.d, permafrost.freeze(plain))
        merged = self.d | {"b": 2, "new": 3}
        self.assertIs(type(merged), dict)
        self.assertEqual(merged["b"], 2)
        self.assertEqual(({"new": 3} | self.d)["b"], 1)

    def test_list_is_a_sequence(self):
        a = self.d["a"]
        self.assertIsInstance(a, collections.abc.Sequence)
        self.assertEqual(a[-1], 2)
        self.assertEqual(a[1:3], [2, 3])
        self.assertEqual(a[::-1], [2, 3, 2, 1])
        self.assertEqual(a.index(2), 1)
        self.assertEqual(a.count(2), 2)
        self.assertIn(3, a)
        self.assertEqual(list(reversed(a)), [2, 3, 2, 1])
        self.assertEqual(a, [1, 2, 3, 2])
        self.assertEqual([1, 2, 3, 2], a)
        with self.assertRaises(IndexError):
            a[4]
        with self.assertRaises(IndexError):
            a[-5]

    def test_index_of_an_absent_value_says_so_as_a_list_does(self):
        for args in ((7,), (2, 0, 1)):
            with self.subTest(args=args):
                with self.assertRaises(ValueError) as frozen:
                    self.d["a"].index(*args)
                with self.assertRaises(ValueError) as plain:
                    [1, 2, 3, 2].index(*args)
                self.assertEqual(str(frozen.exception), str(plain.exception))

    def test_index_and_count_take_arguments_as_a_list_does(self):
        # index's bounds may be any object with __index__ (they were compared with ints:
        # TypeError); neither method takes keywords.
        class At:
            def __init__(self, i):
                self.i = i

            def __index__(self):
                return self.i

        plain = [1, 2, 3, 2]
        a = self.d["a"]
        for args in ((2, At(2)), (2, At(-2), At(4)), (2, True), (3, 0, 4)):
            with self.subTest(args=args):
                self.assertEqual(a.index(*args), plain.index(*args))
        for call in (lambda x: x.count(value=2), lambda x: x.index(value=2),
                     lambda x: x.index(2, start=0), lambda x: x.index(2, 0, 1.5)):
            with self.assertRaises(TypeError):
                call(plain)
            with self.assertRaises(TypeError):
                call(a)

    def test_set_is_a_set(self):
        s = permafrost.freeze({"s": {1, "two", (3,)}})["s"]
        self.assertIsInstance(s, collections.abc.Set)
        self.assertIn("two", s)
        self.assertIn((3,), s)
        with self.assertRaises(TypeError):  # unhashable, as for a frozenset
            [] in s
        self.assertEqual(s, {1, "two", (3,)})
        self.assertEqual(s | {4}, {1, "two", (3,), 4})
        self.assertEqual(s & {1}, {1})
        self.assertTrue(s <= {1, "two", (3,), 9})

    def test_repr(self):
        self.assertEqual(repr(permafrost.freeze({"a": [1, {2}]})),
                         "FrozenDict({'a': FrozenList([1, FrozenSet({2})])})")
        # As set() is: FrozenSet({}) read as a set holding an empty dict.
        self.assertEqual(repr(permafrost.freeze(set())), "FrozenSet()")

    def test_pprint_wraps_a_view_as_it_wraps_a_dict_list_or_set(self):
        # pprint printed a view of any size as its one-line repr.
        import pprint
        view = permafrost.freeze({"name": "x" * 10, "tags": ["alpha", "beta", "gamma"],
                                  "ids": {3, 1, 2}})
        self.assertEqual(pprint.pformat(view, width=30).splitlines(), [
            "FrozenDict({'ids': FrozenSet({1,",
            "                              2,",
            "                              3}),",
            "            'name': 'xxxxxxxxxx',",
            "            'tags': FrozenList(['alpha',",
            "                                'beta',",
            "                                'gamma'])})"])
        self.assertEqual(pprint.pformat(view, width=30, sort_dicts=False).splitlines()[:2], [
            "FrozenDict({'name': 'xxxxxxxxxx',",
            "            'tags': FrozenList(['alpha',"])
        small = permafrost.freeze({"b": [1, 2], "a": {3}})
        # Fits the line: as a dict would, keys sorted.
        self.assertEqual(pprint.pformat(small),
                         "FrozenDict({'a': FrozenSet({3}), 'b': FrozenList([1, 2])})")
        view.close()
        self.assertEqual(pprint.pformat(view, width=10), "<FrozenDict of closed frozen data>")

    def test_pprint_depth_and_sort_dicts_apply_to_a_view_on_one_line(self):
        # A view that fits the line was its one-line repr: depth= and sort_dicts were ignored,
        # and isreadable() was True (eval() does not make a view of the text).
        import pprint
        view = permafrost.freeze({"b": {"c": [1, 2]}, "a": 2})
        self.assertEqual(pprint.pformat(view, depth=1),
                         "FrozenDict({'a': 2, 'b': FrozenDict({...})})")
        self.assertEqual(pprint.pformat(view["b"], depth=1),
                         "FrozenDict({'c': FrozenList([...])})")
        self.assertEqual(pprint.pformat(view), "FrozenDict({'a': 2, 'b': FrozenDict({'c': "
                                               "FrozenList([1, 2])})})")
        self.assertEqual(pprint.pformat(view, sort_dicts=False), repr(view))
        self.assertEqual(pprint.pformat(permafrost.freeze([]), depth=1), "FrozenList([])")
        self.assertFalse(pprint.isreadable(view))
        self.assertEqual(pprint.saferepr(permafrost.freeze({"z": 1, "y": 2})),
                         "FrozenDict({'y': 2, 'z': 1})")

    def test_a_printer_subclass_reading_its_own_way_still_does_after_joining(self):
        # Joining gave format() the views' reader, which called pprint's own _safe_repr: a
        # subclass's _safe_repr (a hex printer, a redacting one) was skipped below the top.
        import pprint

        class Hex(pprint.PrettyPrinter):
            def _safe_repr(self, object, context, maxlevels, level):
                if type(object) is int:
                    return hex(object), True, False
                return super()._safe_repr(object, context, maxlevels, level)

        class Short(pprint.PrettyPrinter):  # format(), the documented way
            def format(self, object, context, maxlevels, level):
                if isinstance(object, float):
                    return f"{object:.1f}", True, False
                return super().format(object, context, maxlevels, level)

        repr(permafrost.freeze([1]))  # joined, if it was not
        self.assertTrue(permafrost._pprint.joined)
        view = permafrost.freeze({"a": [255, {"b": 16}]})
        self.assertEqual(Hex().pformat({"a": [255, {"b": 16}]}), "{'a': [0xff, {'b': 0x10}]}")
        self.assertEqual(Hex().pformat(view), "FrozenDict({'a': FrozenList([0xff, "
                                              "FrozenDict({'b': 0x10})])})")
        self.assertEqual(Short().pformat({"x": [1.25, 2]}), "{'x': [1.2, 2]}")
        self.assertEqual(Short().pformat(permafrost.freeze({"x": [1.25, 2]})),
                         "FrozenDict({'x': FrozenList([1.2, 2])})")
        self.assertEqual(pprint.PrettyPrinter().format(object=1, context={}, maxlevels=0,
                                                       level=0), ("1", True, False))

    def test_the_first_view_pprint_prints_obeys_depth(self):
        # The views join pprint at the first repr after it was imported, which pprint's own
        # first read asked for the old way. A half-imported pprint (another thread importing
        # it) made the views give up joining for good.
        code = (
            "import sys, types, permafrost\n"
            "view = permafrost.freeze({'b': {'c': [1]}, 'a': 2})\n"
            "sys.modules['pprint'] = types.ModuleType('pprint')  # no PrettyPrinter yet\n"
            "repr(view)\n"
            "del sys.modules['pprint']\n"
            "import pprint\n"
            "print(pprint.pformat(view, depth=1))\n"
            "print(pprint.pformat(view, width=20).count(chr(10)))\n")
        out = run_python(code)
        self.assertEqual(out.stdout.splitlines(),
                         ["FrozenDict({'a': 2, 'b': FrozenDict({...})})", "1"], out.stderr)

    def test_joining_pprint_works_without_a_caller_frame_and_after_fork(self):
        # The views join pprint at their first repr after it was imported. With no Python
        # caller (print run by a thread started with a builtin, or by atexit) that repr raised
        # "call stack is not deep enough". A fork while another thread was joining left the
        # child's lock held: the child's first repr hung.
        code = (
            "import os, signal, sys, threading, time, _thread, permafrost\n"
            "view = permafrost.freeze({'a': 1})\n"
            "import pprint\n"
            "held, release = threading.Event(), threading.Event()\n"
            "def hold():\n"
            "    with permafrost._pprint._joining:\n"
            "        held.set(); release.wait()\n"
            "threading.Thread(target=hold).start(); held.wait()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    signal.alarm(20)\n"
            "    os._exit(0 if repr(view) == \"FrozenDict({'a': 1})\" else 3)\n"
            "release.set()\n"
            "print('child', os.waitpid(pid, 0)[1])\n"
            "_thread.start_new_thread(print, (view,))\n"
            "time.sleep(1)\n")
        out = run_python(code)
        self.assertEqual(out.stdout.splitlines(), ["child 0", "FrozenDict({'a': 1})"],
                         out.stderr)

    def test_joining_pprint_keeps_the_depth_pprint_reaches_in_plain_data(self):
        # Wrapping _safe_repr alone put a Python call more into every level of pprint's
        # reading, plain data included: RecursionError 332 deep where it was 498.
        code = (
            "import permafrost, pprint, sys\n"
            "permafrost._pprint.joined = True  # as if never joined: measure pprint alone\n"
            "def deepest():\n"
            "    lo, hi = 1, 5000\n"
            "    while lo < hi:\n"
            "        mid, x = (lo + hi + 1) // 2, []\n"
            "        for _ in range(mid): x = [x]\n"
            "        try: pprint.saferepr(x); lo = mid\n"
            "        except RecursionError: hi = mid - 1\n"
            "    return lo\n"
            "before = deepest()\n"
            "permafrost._pprint.joined = False\n"
            "repr(permafrost.freeze([1]))\n"
            "print(permafrost._pprint.joined, before - deepest())\n")
        out = run_python(code)
        joined, lost = out.stdout.split()
        self.assertEqual(joined, "True", out.stderr)
        self.assertLessEqual(int(lost), 1)

    def test_importing_permafrost_or_a_repr_does_not_import_pprint(self):
        code = ("import sys, permafrost; repr(permafrost.freeze({'a': [1]})); "
                "print('pprint' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        self.assertEqual(out.stdout.strip(), "False")

    def test_small_lists_holding_a_nan_are_not_one_node(self):
        # Small lists are stored once by content, and two views of one node are equal without
        # reading: two lists each holding its own NaN compared equal, where they do not.
        a, b = float("nan"), float("nan")
        for made in ({"x": [a], "y": [b]}, {"x": [1, a], "y": [1, b]}, {"x": (a,), "y": (b,)}):
            with self.subTest(made=made):
                frozen = permafrost.freeze(made)
                self.assertEqual(made["x"] == made["y"], False)
                self.assertEqual(frozen["x"] == frozen["y"], False)
                self.assertEqual(frozen["x"] != frozen["y"], True)
        frozen = permafrost.freeze({"x": [1.5], "y": [1.5]})  # still one node without a NaN
        self.assertTrue(permafrost._core._same_node(frozen["x"], frozen["y"]))

    def test_a_value_reached_twice_equals_itself_without_a_walk(self):
        # freeze() keeps a shared sub-value shared; a view of it compared with itself walked every
        # path (2^n nodes for n levels of [a, a]), where the list it came from compares at once.
        a, d = [1.5], {"x": 1}
        for _ in range(16):
            a, d = [a, a], {"l": d, "r": d}
        for cls, root in ((FrozenList, permafrost.freeze(a)), (FrozenDict, permafrost.freeze(d))):
            calls = []
            originals = {name: getattr(cls, name) for name in ("__eq__", "__ne__")}
            for name, original in originals.items():  # a dict's items compare with !=
                setattr(cls, name, lambda self, other, original=original: (
                    calls.append(1), original(self, other))[1])
            try:
                self.assertTrue(root == root)
                first, second = list(root.values() if cls is FrozenDict else root)
                self.assertTrue(first == second)
                self.assertFalse(first != second)
            finally:
                for name, original in originals.items():
                    setattr(cls, name, original)
            self.assertEqual(len(calls), 3, cls)  # the three above: no item compared
        closed = permafrost.freeze(a)
        closed.close()
        with self.assertRaises(ValueError):  # as every read of closed data: not equal to itself
            closed == closed
        self.assertEqual(permafrost.freeze(a), a)  # two graphs: compared item by item, as before
        self.assertNotEqual(permafrost.freeze([[1], [1]])[0], permafrost.freeze([[2]])[0])

    def test_hash(self):
        frozen = permafrost.freeze({"f": frozenset({1, 2}), "t": (1, "x")})
        self.assertEqual(hash(frozen["f"]), hash(frozenset({1, 2})))
        self.assertEqual(hash(frozen["t"]), hash((1, "x")))
        with self.assertRaises(TypeError):  # a FrozenDict is hashable when its values are
            hash(permafrost.freeze({"l": [1]}))
        with self.assertRaises(TypeError):
            hash(permafrost.freeze([1]))

    def test_pickle_by_value(self):
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(self.d, proto))
            self.assertIsInstance(back, FrozenDict)
            self.assertEqual(back, self.d)
        self.assertIsInstance(pickle.loads(pickle.dumps(self.d["a"])), FrozenList)
        self.assertIs(copy.deepcopy(self.d), self.d)

    def test_iterators_pickle_where_the_builtins_do(self):
        # A list's iterator by its position, a dict's or set's by the items still to come, as
        # list_iterator and dict_keyiterator pickle; they raised TypeError.
        frozen = permafrost.freeze({"l": [1, 2, 3], "s": {4, 5}, "d": {"a": 1, "b": 2}})
        makers = {"list": lambda v: iter(v["l"]), "set": lambda v: iter(v["s"]),
                  "dict": lambda v: iter(v["d"]), "keys": lambda v: iter(v["d"].keys()),
                  "values": lambda v: iter(v["d"].values()),
                  "items": lambda v: iter(v["d"].items()),
                  "reversed list": lambda v: reversed(v["l"]),
                  "reversed dict": lambda v: reversed(v["d"])}
        for name, make in makers.items():
            for consumed in (0, 1, 9):
                for proto in (2, pickle.HIGHEST_PROTOCOL):
                    with self.subTest(name, consumed=consumed, proto=proto):
                        it, plain = make(frozen), make(frozen.thaw())
                        for _ in range(consumed):
                            next(it, None)
                            next(plain, None)
                        back = pickle.loads(pickle.dumps(it, proto))
                        self.assertEqual(list(back), list(pickle.loads(pickle.dumps(plain))))
                        self.assertEqual(list(it), list(plain))  # the original did not move
        for make in (iter, reversed):  # __setstate__ as list_iterator's and reversed's
            for state in (-4, -1, 0, 1, 2, 99):
                with self.subTest(make.__name__, state=state):
                    ours, theirs = make(frozen["l"]), make([1, 2, 3])
                    ours.__setstate__(state)
                    theirs.__setstate__(state)
                    self.assertEqual(list(ours), list(theirs))

    def test_repeating_a_list_makes_a_list_as_a_lists_repeat(self):
        view = permafrost.freeze([1, 2])
        for got in (view * 2, 2 * view):
            self.assertEqual((type(got), got), (list, [1, 2, 1, 2]))
        with self.assertRaisesRegex(TypeError, "can't multiply sequence by non-int of type"):
            view * 2.0  # noqa: B018
        if numpy is None:
            self.skipTest(f"numpy is not importable by {sys.executable}: the numpy scalar case "
                          "was not checked")
        # numpy repeats a sequence without a number multiply, and broadcast it over ours.
        for got in (numpy.int64(2) * view, view * numpy.int64(2)):
            self.assertEqual((type(got), got), (list, numpy.int64(2) * [1, 2]))

    def test_json_default(self):
        text = json.dumps(self.d, default=permafrost.json_default)
        self.assertEqual(json.loads(text), {"b": 1, "a": [1, 2, 3, 2], "c": {"x": "y"}, "1": "one"})
        with self.assertRaises(TypeError):
            json.dumps(permafrost.freeze([{1}]), default=permafrost.json_default)

    def test_views_outlive_the_root(self):
        inner = permafrost.freeze({"a": {"b": [1, 2]}})["a"]["b"]
        import gc
        gc.collect()
        self.assertEqual(inner, [1, 2])

    def test_shared_key_tables(self):
        rows = permafrost.freeze([{"name": "n%d" % i, "id": i} for i in range(1000)])
        self.assertEqual(rows[999]["name"], "n999")
        self.assertEqual(list(rows[5]), ["name", "id"])
        _, size = permafrost._core._range(rows)
        self.assertLess(size, 1000 * 80)  # one keys table for all rows, not one per row

    def test_equal_small_values_are_stored_once(self):
        rows = permafrost.freeze([{"tags": ["admin", i % 3], "name": "user-%d" % (i % 10)}
                                  for i in range(3000)])
        self.assertEqual(rows[2999]["tags"], ["admin", 2999 % 3])
        self.assertEqual(rows[1234]["name"], "user-4")
        _, size = permafrost._core._range(rows)
        # 3000 records of 8 + 2 * 8 bytes plus the list of them; the 3 lists and 10 names once.
        self.assertLess(size, 3000 * 24 + 3000 * 8 + 4096)


class Errors(unittest.TestCase):
    def test_a_signal_interrupts_a_long_freeze(self):
        # The dict ends in a value freeze() refuses. A freeze that checks for signals stops at
        # the alarm with the handler's KeyboardInterrupt long before that value; one that does
        # not runs to the end and raises TypeError (the handler runs only after it returns).
        value = {i: i for i in range(2_000_000)}
        value["last"] = 1 + 2j
        fired = []

        def handler(signum, frame):
            fired.append(signum)
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, handler)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.002)
            with self.assertRaises(KeyboardInterrupt):
                permafrost.freeze(value)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        self.assertEqual(fired, [signal.SIGALRM])
        # Nothing of the interrupted freeze stays: the same value freezes (and fails) again.
        with self.assertRaises(TypeError):
            permafrost.freeze(value)

    def test_unsupported_type_names_the_path(self):
        value = {"users": [{}, {}, {}, {"created": 1 + 2j}]}
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze(value)
        self.assertEqual(str(cm.exception), 'obj["users"][3]["created"]: complex is not supported')

    def test_unsupported_key_and_element(self):
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze({"a": {object(): 1}})
        self.assertIn('obj["a"].keys()[0]: object is not supported', str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze([{1, 2, 3.5j}])
        self.assertIn("obj[0]{element", str(cm.exception))
        self.assertIn("complex is not supported", str(cm.exception))

    def test_keys_equal_once_copied_as_their_base_are_refused(self):
        # The dict and the set held both keys (Distinct's __eq__ told them apart); their copies,
        # plain strs, are one key: the view held it twice (len 2, thaw() 1 key).
        class Distinct(str):  # equal only to itself, as the default object.__eq__
            __hash__ = str.__hash__

            def __eq__(self, other):
                return self is other

        many = {str(i): i for i in range(5000)}  # above the 4096 keys walked live
        cases = [
            ({Distinct("x"): 1, Distinct("x"): 2}, r"obj"),
            ([{"a": {Distinct("x"): 1, "x": 2}}], r'obj\[0\]\["a"\]'),
            ({**many, Distinct("x"): 1, "x": 2}, r"obj"),
            ({"s": {Distinct("x"), Distinct("x")}}, r'obj\["s"\]'),
            ({"s": frozenset({Distinct("x"), "x"})}, r'obj\["s"\]'),
            ({"s": {(Distinct("x"),), ("x",)}}, r'obj\["s"\]'),
            ({"s": {str(i) for i in range(100)} | {Distinct("x"), "x"}}, r'obj\["s"\]'),
        ]
        for value, path in cases:
            with self.subTest(path=path, size=len(value)):
                with self.assertRaisesRegex(TypeError, "^" + path + r": two keys or elements are "
                                            r"equal once copied as their base types \((\('x',\)|'x')\): "
                                            r"a subclass's __eq__ or __hash__ told them apart"):
                    permafrost.freeze(value)
        # Subclass keys whose copies stay distinct, or equal ones a dict merges, are fine.
        self.assertEqual(permafrost.freeze({Distinct("x"): 1, Distinct("y"): 2}), {"x": 1, "y": 2})
        self.assertEqual(permafrost.freeze({**many, Distinct("x"): 1}), {**many, "x": 1})

    def test_cycle_names_the_path(self):
        inner = []
        value = {"a": [1, inner]}
        inner.append(value)
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze(value)
        self.assertEqual(str(cm.exception), 'obj["a"][1][0]: cycle: this dict contains itself')

    def test_deep_cycle(self):
        head = node = []
        for _ in range(200):
            nxt = []
            node.append(nxt)
            node = nxt
        node.append(head)
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze(head)
        self.assertIn("cycle", str(cm.exception))

    def test_shared_subobject_is_not_a_cycle(self):
        shared = [1, 2]
        self.assertEqual(permafrost.freeze([shared, shared]), [[1, 2], [1, 2]])

    def test_too_deep(self):
        value = []
        for _ in range(6000):
            value = [value]
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze(value)
        self.assertIn("nested deeper than 5000", str(cm.exception))

    def test_a_deep_path_shows_its_first_and_last_steps(self):
        # The whole path of 5000 steps made a 30 KB message.
        value = [{"k": 1 + 2j}]
        for _ in range(6000):
            value = [value]
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze([value])
        self.assertEqual(str(cm.exception), "obj" + "[0]" * 8 + "...(4984 more)..." + "[0]" * 8 +
                         ": nested deeper than 5000 containers")
        value = [{"k": 1 + 2j}]
        for _ in range(100):
            value = [value]
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze(value)
        self.assertEqual(str(cm.exception), "obj" + "[0]" * 8 + "...(86 more)..." + "[0]" * 7 +
                         '["k"]: complex is not supported')

    def test_deeply_nested_tuple_key(self):
        key = ()
        for _ in range(6000):
            key = (key,)
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze({key: 1})
        self.assertIn("obj.keys()[0]", str(cm.exception))
        with self.assertRaises(TypeError):
            permafrost.freeze({"a": 1})[key]

    def test_unhashable_lookup(self):
        d = permafrost.freeze({"a": 1})
        with self.assertRaises(TypeError):
            d[[1]]
        with self.assertRaises(TypeError):
            [1] in d


def run_python(code):
    """Runs code in a fresh interpreter (a crash there is a failure here, not the end of the run)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=os.environ)


# A finalizer run by a GC pass that freeze()'s own allocations trigger mutates the dict being
# frozen: it replaces every value, which held the only references to them.
GC_FINALIZER_MUTATES = r'''
import gc, sys, permafrost
# Values that are views: freezing one thaws it, so the freezer allocates (and keeps) containers,
# and with a threshold of 1 every allocation runs a GC pass.
rows = permafrost.freeze([[i, 2 ** 100 + i, ["v" * 50]] for i in range(2000)])
victim = {"k%d" % i: rows[i] for i in range(2000)}
original = {k: v.thaw() for k, v in victim.items()}
replacement = {"replaced": [1, 2 ** 100, "x"]}
runs = [0]
stop = [False]
class Evil:
    def __del__(self):
        if stop[0]:
            return
        runs[0] += 1
        victim.clear()
        victim.update({k: list(v) for k, v in replacement.items()})
        again = Evil()
        again.me = again  # garbage for the next GC pass
first = Evil()
first.me = first
del first
gc.set_threshold(1)
frozen = permafrost.freeze(victim)
stop[0] = True
gc.set_threshold(700)
print(runs[0], frozen.thaw() == original)
'''

# On the error path freeze() names the path, calling repr() of each non-str key on it; this
# __repr__ empties the dict, dropping the only references to the inner dicts and keys.
REPR_MUTATES = r'''
import gc, permafrost
class K(int):
    def __repr__(self):
        victim.clear()
        gc.collect()
        return "K(%d)" % int(self)
inner = {K(2): {K(3): [1, object()]}}
victim = {K(1): inner}
del inner
try:
    permafrost.freeze(victim)
except TypeError as e:
    print(e)
'''


class ForkedWhileFreezing(unittest.TestCase):
    """User code that forks during freeze() (a tzinfo's utcoffset): the child stops cleanly."""

    def test_a_child_forked_by_a_tzinfo_gets_an_error_not_a_crash(self):
        # 30,000 records of one shape are written in place as rows, into memory allocated before
        # the fork; the child once went on writing there (the parent's pages, read-only in it)
        # and died of SIGSEGV. A record with the tzinfo alone (no table) already failed cleanly.
        code = """if True:
            import datetime, os, permafrost
            calls, child = [], []
            class TZ(datetime.tzinfo):
                def utcoffset(self, dt):
                    calls.append(1)
                    if len(calls) == 15000 and os.fork() == 0:
                        child.append(True)
                    return datetime.timedelta(0)
                def dst(self, dt):
                    return None
            tz = TZ()
            d = {f"k{i}": {"s": "x" * 100 + str(i), "n": i,
                           "when": datetime.datetime(2020, 1, 1, tzinfo=tz)} for i in range(30000)}
            try:
                result = f"built {len(permafrost.freeze(d))}"
            except Exception as e:
                result = f"{type(e).__name__}: {e}"
            print(result, flush=True)
            if child:
                os._exit(0)
            _, status = os.wait()
            print("child signalled" if os.WIFSIGNALED(status) else "child exited")
        """
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        lines = out.stdout.splitlines()
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0],
                         r"^RuntimeError: permafrost: the process forked while freeze\(\)")
        self.assertEqual(lines[1:], ["built 30000", "child exited"])


class HeldReferences(unittest.TestCase):
    """freeze() holds a strong reference to every container, key and item it walks."""

    @unittest.skipUnless(sys.version_info < (3, 12), "from 3.12 a GC pass runs only between "
                         "bytecodes, never inside freeze()'s C code")
    def test_a_finalizer_run_by_a_gc_pass_during_freeze(self):
        proc = run_python(GC_FINALIZER_MUTATES)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        runs, same = proc.stdout.split()
        self.assertGreater(int(runs), 100)  # finalizers ran inside freeze(), not just before it
        self.assertEqual(same, "True")      # the dict frozen as it was when freeze() reached it

    def test_a_key_repr_that_mutates_the_dict_on_the_error_path(self):
        proc = run_python(REPR_MUTATES)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertEqual(proc.stdout.strip(), "obj[K(1)][K(2)][K(3)][1]: object is not supported")

    def test_a_list_that_shrinks_while_frozen_is_frozen_as_it_was(self):
        # The items of a list are snapshotted before any is frozen: a finalizer that empties the
        # list midway cannot make freeze() read past its end.
        rows = permafrost.freeze([[i, ["v"]] for i in range(200)])
        victim = [rows[i] for i in range(200)]
        expected = [row.thaw() for row in victim]
        self.assertEqual(permafrost.freeze(victim).thaw(), expected)


# A dict or list of more than 4096 items is frozen live (no snapshot of its items): user code
# run midway (here a tzinfo's utcoffset, which freeze() calls for an aware datetime) that
# changes it makes freeze() raise RuntimeError, and the partial arena (past 1 MiB: a memfd) goes.
LIVE_CHANGE = r'''
import datetime, sys, permafrost
how = sys.argv[1]
class Evil(datetime.tzinfo):
    def utcoffset(self, dt):
        if how == "dict_shrinks":
            victim.pop("k0")
        elif how == "dict_grows":
            victim["new"] = 1
        elif how == "dict_keys_change":  # same size: a key behind deleted, a new one appended
            del victim["k0"]
            victim["new"] = 1
        elif how == "list_shrinks":
            victim.pop()
        return datetime.timedelta(0)
aware = datetime.datetime(2026, 12, 3, tzinfo=Evil())
rows = [("v%d" % i) * 20 for i in range(30000)]
rows[20000] = aware
if how.startswith("dict"):
    victim = {"k%d" % i: v for i, v in enumerate(rows)}
else:
    victim = rows
try:
    permafrost.freeze(victim, name="live-change")
except RuntimeError as e:
    print(e)
with open("/proc/self/maps") as f:
    print(sum("permafrost:live-change" in line for line in f))
'''


def longest_index_run(view):
    """The longest run of used slots in the index of the table a dict or set view reads (format.hpp,
    "Tables"): every probe of it, to build it or to look a key up, walks at most that far."""
    address, size = permafrost._core._range(view)
    data = ctypes.string_at(address, size)
    off = struct.unpack_from("<Q", data, 8)[0]  # the root word: a node's offset
    kind = data[off]
    if kind == 6:  # dict: its keys table's offset after the header
        off = struct.unpack_from("<Q", data, off + 8)[0]
    elif kind == 11:  # dict16: the keys table's offset / 8 in the count
        off = 8 * struct.unpack_from("<I", data, off + 4)[0]
    flags, capacity = data[off + 1], struct.unpack_from("<I", data, off + 8)[0]
    width = 4 if flags & 1 else 8  # flag_narrow_index
    slots = struct.unpack_from(f"<{capacity}{'I' if width == 4 else 'Q'}", data, off + 16)
    longest = run = 0
    for slot in slots + slots:  # the index wraps around
        run = run + 1 if slot else 0
        longest = max(longest, min(run, capacity))
    return longest


class ManyNanKeys(unittest.TestCase):
    """Every NaN has one seedless hash, but each NaN object is a key of its own (NaN != NaN): the
    writer files such keys apart, so 50,000 of them make no probe run 50,000 slots long (a
    quadratic freeze: 2.5 s for 10,000 keys of a large dict, a minute for 50,000)."""

    N = 50000

    def check(self, frozen, expected_len):
        self.assertEqual(len(frozen), expected_len)
        self.assertLess(longest_index_run(frozen), 2000)
        self.assertNotIn(math.nan, frozen)
        self.assertNotIn(float("nan"), frozen)
        self.assertNotIn((float("nan"), 1), frozen)
        with tempfile.TemporaryDirectory() as d:  # the graph check accepts what was written
            path = os.path.join(d, "nan.pfi")
            frozen.save(path)
            with permafrost.open(path) as opened:
                self.assertEqual(len(opened), expected_len)
                self.assertNotIn(float("nan"), opened)

    def test_many_nan_keys_are_filed_apart(self):
        n = self.N
        cases = {
            "large dict": lambda: permafrost.freeze({float("nan"): i for i in range(n)}),
            "small dict": lambda: permafrost.freeze({float("nan"): i for i in range(4000)}),
            "set": lambda: permafrost.freeze({float("nan") for _ in range(n)}),
            "tuple keys": lambda: permafrost.freeze({(float("nan"), 1): i for i in range(n)}),
            "build_dict": lambda: permafrost.build_dict((float("nan"), i) for i in range(n)),
        }
        for name, make in cases.items():
            with self.subTest(case=name):
                frozen = make()
                self.check(frozen, 4000 if name == "small dict" else n)

    def test_other_keys_are_still_found_among_them(self):
        source = {float("nan"): i for i in range(self.N)}
        source.update({"a": "x", 1.5: "y", (1, "b"): "z", None: "w"})
        for frozen in (permafrost.freeze(source), permafrost.build_dict(source.items())):
            with self.subTest(kind=type(frozen).__name__):
                self.assertEqual([frozen[k] for k in ("a", 1.5, (1, "b"), None)],
                                 ["x", "y", "z", "w"])
                self.assertEqual(list(frozen.values())[:3], [0, 1, 2])


class LargeContainersLive(unittest.TestCase):
    """Dicts and lists of more than 4096 items are walked live; a change midway is refused."""

    def change(self, how):
        proc = subprocess.run([sys.executable, "-c", LIVE_CHANGE, how], capture_output=True,
                              text=True, timeout=300, env=os.environ)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        message, mapped = proc.stdout.strip().split("\n")
        self.assertEqual(mapped, "0")  # the partial arena is unmapped
        return message

    def test_a_dict_that_shrinks_midway_raises(self):
        self.assertEqual(self.change("dict_shrinks"),
                         'obj: dictionary changed size during freeze()')

    def test_a_dict_that_grows_midway_raises(self):
        self.assertEqual(self.change("dict_grows"), 'obj: dictionary changed size during freeze()')

    def test_a_dict_whose_keys_change_at_the_same_size_raises(self):
        self.assertEqual(self.change("dict_keys_change"),
                         'obj: dictionary keys changed during freeze()')

    def test_a_list_that_shrinks_midway_raises(self):
        self.assertEqual(self.change("list_shrinks"), 'obj: list changed size during freeze()')

    def test_large_containers_round_trip(self):
        d = {("k%d" % i if i % 3 else i): {"n": "name-%d" % i, "t": ["t%d" % (i % 7), i % 5]}
             for i in range(10000)}
        d[(1, "tuple")] = 2.5
        d[frozenset({3})] = None
        # NaN != NaN: these are distinct keys of the dict, and of the frozen one (all but the
        # first two freeze to one word each).
        nan = float("nan")
        d.update({nan: "same nan", float("nan"): "other nan", (nan,): 1, (float("nan"),): 2})
        frozen = permafrost.freeze({"d": d, "l": list(d.values()), "t": tuple(range(5000))})
        self.assertEqual(len(frozen["d"]), len(d))
        self.assertEqual(list(frozen["d"].values()), list(d.values()))
        def no_nan(items):
            def is_nan(x):
                return isinstance(x, float) and math.isnan(x)
            return {k: v for k, v in items
                    if not is_nan(k) and not (isinstance(k, tuple) and any(map(is_nan, k)))}

        thawed = frozen["d"].thaw()
        self.assertEqual(no_nan(thawed.items()), no_nan(d.items()))
        self.assertEqual(len(thawed) - len(no_nan(thawed.items())), 4)  # the four NaN keys
        self.assertEqual(frozen["d"][(1, "tuple")], 2.5)
        self.assertEqual(frozen["d"][9999], d[9999])
        self.assertEqual(frozen["l"].thaw(), list(d.values()))
        self.assertEqual(frozen["t"], tuple(range(5000)))
        # Their nodes come before their items' (written first, filled in as items are frozen):
        # open()'s graph check accepts that, and the image reads back the same.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "large.pfi")
            frozen.save(path)
            image = permafrost.open(path)
            self.assertEqual(no_nan(image["d"].thaw().items()), no_nan(d.items()))
            self.assertEqual(len(image["d"]), len(d))
            self.assertEqual(image["l"].thaw(), frozen["l"].thaw())
            self.assertEqual(image["t"], tuple(range(5000)))

    def test_repeated_small_values_stay_stored_once_among_many_unique_ones(self):
        # The small-node index stops indexing every new node once most are never seen again
        # (200,000 unique names), but values that recur are still stored once or nearly: a
        # record's tags list (35 distinct) and a str first met after the index went sparse.
        def records(late_repeats):
            rows = [{"name": "unique-name-%d" % i, "tags": ["t%d" % (i % 7), i % 5, "x"]}
                    for i in range(200000)]
            rows += [{"name": "a late repeated name", "tags": ["t0", 0, "x"]}] * 1
            rows += [{"name": "a late repeated name", "tags": ["t0", 0, "x"]}
                     for _ in range(late_repeats)]
            return rows

        def size(rows):
            return permafrost._core._range(permafrost.freeze(rows))[1]

        one, many = size(records(0)), size(records(10000))
        # Each further record: a list word and a dict16 node (8 + 2 * 8 bytes); the name and
        # tags nodes (16 and 32 bytes) stored again at most 16 times.
        self.assertLessEqual(many - one, 10000 * (8 + 24) + 16 * (16 + 32))
        # The tags lists: 35 distinct ones, each stored once among the 200,000 unique names.
        self.assertLess(one, 200000 * (8 + 24 + 24) + 35 * 32 + (1 << 20))


class Sharing(unittest.TestCase):
    """An identity memo: each distinct container is stored once, however often it is reached."""

    def test_records_sharing_one_list_store_it_once(self):
        shared = list(range(1000))
        records = [{"id": i, "tags": shared} for i in range(10000)]
        frozen = permafrost.freeze(records)
        _, size = permafrost._core._range(frozen)
        # One copy of the list (8 KiB) and per record a 24-byte dict: ~330 KB, not 10,000 copies.
        self.assertLess(size, 8 * 1000 + 10000 * (24 + 8) + 4096)
        self.assertEqual(frozen[9999]["tags"], shared)
        self.assertEqual(frozen.thaw(), records)

    def test_views_of_a_shared_container_are_equal_but_distinct(self):
        shared = {"a": [1, 2]}
        frozen = permafrost.freeze([shared, shared])
        self.assertEqual(frozen[0], frozen[1])
        self.assertIsNot(frozen[0], frozen[1])

    def test_thaw_gives_the_sharing_back(self):
        shared = [1, {"x": 2}]
        thawed = permafrost.freeze({"a": shared, "b": [shared, shared]}).thaw()
        self.assertIs(thawed["a"], thawed["b"][0])
        self.assertIs(thawed["b"][0], thawed["b"][1])
        thawed["a"].append(3)
        self.assertEqual(thawed["b"][1], [1, {"x": 2}, 3])

    def test_equal_but_distinct_lists_stay_distinct_after_thaw(self):
        thawed = permafrost.freeze([[1, 2], [1, 2]]).thaw()
        self.assertIsNot(thawed[0], thawed[1])  # stored once by content, built once per reference

    def test_a_dag_of_lists_is_linear(self):
        level = []
        for _ in range(23):  # 2^23 paths to the innermost list
            level = [level, level]
        frozen = permafrost.freeze(level)
        _, size = permafrost._core._range(frozen)
        self.assertLess(size, 4096)
        thawed = frozen.thaw()
        self.assertTrue(thawed[0] is thawed[1])  # (a failure message would repr 2^23 lists)

    def test_a_dag_of_tuples_reads_as_a_dag(self):
        # Tuples are built eagerly on every read: each shared one is built once per read.
        t = ()
        for _ in range(64):
            t = (t, t)
        frozen = permafrost.freeze([t])
        read = frozen[0]
        # assertTrue, not assertIs: a failure message would repr 2^64 tuples.
        self.assertTrue(read[0] is read[1])
        self.assertEqual(len(read[0][0][0]), 2)
        thawed = frozen.thaw()
        self.assertTrue(thawed[0][1][0] is thawed[0][1][1])

    def test_depth_counts_through_shared_containers(self):
        deep = []
        for _ in range(4000):
            deep = [deep]
        outer = [deep, deep]  # deep is shared: its 4000 levels count wherever it is reached
        for _ in range(1500):
            outer = [outer]
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze([deep, outer])
        self.assertIn("nested deeper than 5000", str(cm.exception))


class Mutation(unittest.TestCase):
    def test_every_mutation_raises(self):
        d = permafrost.freeze({"a": [1], "s": {1}})
        attempts = [
            lambda: d.__setitem__("a", 2), lambda: d.__delitem__("a"), lambda: d.update(b=1),
            lambda: d.pop("a"), lambda: d.popitem(), lambda: d.clear(),
            lambda: d.setdefault("z", 1),
            lambda: d["a"].append(2), lambda: d["a"].__setitem__(0, 5), lambda: d["a"].sort(),
            lambda: d["a"].extend([1]), lambda: d["a"].insert(0, 1), lambda: d["a"].pop(),
            lambda: d["a"].__delitem__(0),
            lambda: d["s"].add(2), lambda: d["s"].discard(1), lambda: d["s"].remove(1),
            lambda: d["s"].clear(),
        ]
        for attempt in attempts:
            with self.assertRaises(TypeError) as cm:
                attempt()
            self.assertIn("is frozen", str(cm.exception))
        self.assertEqual(d.thaw(), {"a": [1], "s": {1}})

    def test_the_types_cannot_be_instantiated_or_subclassed(self):
        # A view made by calling its type would point at no store: reading it crashed.
        d = permafrost.freeze({"l": [1], "s": {1}})
        for view in (d, d["l"], d["s"], iter(d)):
            with self.assertRaises(TypeError, msg=type(view)):
                type(view)()
            with self.assertRaises(TypeError, msg=type(view)):
                type("Sub", (type(view),), {})
        with self.assertRaises(TypeError):
            permafrost._core.Store()

    def test_no_attribute_can_be_added(self):
        d = permafrost.freeze({"a": 1})
        with self.assertRaises(AttributeError):
            d.extra = 1

    def test_augmented_assignment_rebinds_to_a_plain_object(self):
        d = permafrost.freeze({"a": [1]})
        lst = d["a"]
        with self.assertRaises(TypeError):
            lst += [2]
        self.assertEqual(d["a"], [1])


class Process(unittest.TestCase):
    def test_importing_permafrost_loads_no_second_malloc(self):
        # The module links the library's archive without its mimalloc heap: a libmimalloc loaded
        # by dlopen freed glibc memory of later extensions (Debian's marisa crashed in mi_free).
        with open("/proc/self/maps") as f:
            self.assertNotIn("mimalloc", f.read())


# Strs stored as packed strs (format v2: a length byte and the UTF-8, no node) and, beside them,
# the sizes and kinds that stay short strs or str nodes.
PACKED_STRS = ["abcdefgh", "key:0000001", "x" * 255, "\u00e9" * 100, "\u20ac\U0001f600 mixed text",
               "\u00e9" * 127 + "a"]  # 8, 11, 255 bytes; non-ASCII; 255 bytes of 2-byte chars
NOT_PACKED_STRS = ["abcdefg", "x" * 256, "\u00e9" * 128, "abcdefg\udc80", "surrogate " + LONE_SURROGATES]


def graph_magic(frozen):
    import ctypes
    address, _ = permafrost._core._range(frozen)
    return ctypes.string_at(address, 8)


class PackedStrs(unittest.TestCase):
    def test_sizes_encode_as_documented(self):
        # 8..255 UTF-8 bytes without surrogates are packed; 255 bytes is the last: the length
        # is one byte. A graph holding one is marked v2, one without stays v1.
        for s in PACKED_STRS:
            self.assertTrue(8 <= len(s.encode()) <= 255, s)
            self.assertEqual(graph_magic(permafrost.freeze([s])), b"pfpy\0v2\0")
        for s in NOT_PACKED_STRS:
            self.assertEqual(graph_magic(permafrost.freeze([s])), b"pfpy\0v1\0", s[:20])

    def test_as_values_keys_and_set_elements(self):
        strs = PACKED_STRS + NOT_PACKED_STRS
        record = {s: s for s in strs}
        frozen = permafrost.freeze({"d": record, "l": strs, "s": set(strs), "f": frozenset(strs),
                                    "t": tuple(strs)})
        self.assertEqual(frozen.thaw(), {"d": record, "l": strs, "s": set(strs),
                                         "f": frozenset(strs), "t": tuple(strs)})
        for s in strs:
            with self.subTest(s=s[:20]):
                self.assertEqual(frozen["d"][s], s)
                self.assertIs(type(frozen["d"][s]), str)
                self.assertIn(s, frozen["s"])
                self.assertIn(s, frozen["f"])
                self.assertIn(s, frozen["l"])
                self.assertNotIn(s + "!", frozen["d"])
                self.assertNotIn(s[:-1] + "?", frozen["s"])
        self.assertEqual(list(frozen["d"]), strs)
        self.assertEqual(hash(frozen["f"]), hash(frozenset(strs)))
        self.assertEqual(hash(frozen["t"]), hash(tuple(strs)))
        self.assertEqual(frozen["d"], record)

    def test_json_and_pickle(self):
        strs = [s for s in PACKED_STRS + NOT_PACKED_STRS if "\udc80" not in s and
                not any(0xd800 <= ord(c) <= 0xdfff for c in s)]  # JSON has no lone surrogates
        value = {s: [s, {s: s}] for s in strs}
        frozen = permafrost.freeze(value)
        for kwargs in ({}, {"sort_keys": True}):
            with self.subTest(kwargs=kwargs):
                self.assertEqual(permafrost.dumps(frozen, **kwargs),
                                 json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                            **kwargs).encode())
        self.assertEqual(json.dumps(frozen, cls=permafrost.JSONEncoder), json.dumps(value))
        self.assertEqual(pickle.loads(pickle.dumps(frozen)), value)

    def test_save_and_open(self):
        strs = PACKED_STRS + NOT_PACKED_STRS
        frozen = permafrost.freeze({s: {"name": s, "set": {s}} for s in strs})
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "packed.pfimg")
            frozen.save(path)
            opened = permafrost.open(path)
            try:
                self.assertEqual(opened, frozen)
                for s in strs:
                    self.assertEqual(opened[s]["name"], s)
                    self.assertIn(s, opened[s]["set"])
            finally:
                opened.close()
                permafrost._stores.forget()

    def test_tables_with_4_byte_key_words(self):
        # Key words that sign-extend from 32 bits (small ints, packed strs and nodes low in the
        # graph, None/True/False) are stored in 4 bytes when every key of a table fits; one key
        # that does not (a big int, a 4..7-byte short str) keeps the table's words 8 bytes.
        # Large dicts (> 4096 keys, frozen live) and small ones, sets and frozensets alike.
        cases = {
            "small ints": list(range(-50, 50)) + [2**27 - 1, -2**27],
            "packed strs": [f"key:{i:07d}" for i in range(100)],
            "mixed": [None, True, 0, -1, "ab", "key:0000001", "\u00e9" * 9],
            "one wide": list(range(100)) + [2**40],
            "short strs": ["abcd", "efgh", 1],
        }
        for what, keys in cases.items():
            for n in (1, 5000):  # small, and large (frozen live)
                ks = keys if n == 1 else [k for k in keys] + [f"extra:{i:06d}" for i in range(5000)]
                with self.subTest(what=what, large=n > 1):
                    value = {"d": {k: i for i, k in enumerate(ks)}, "s": set(ks),
                             "f": frozenset(ks)}
                    frozen = permafrost.freeze(value)
                    self.assertEqual(frozen.thaw(), value)
                    for i, k in enumerate(ks):
                        self.assertEqual(frozen["d"][k], i)
                        self.assertIn(k, frozen["s"])
                        self.assertIn(k, frozen["f"])
                    self.assertNotIn(2**41, frozen["d"])
                    self.assertNotIn("key:9999999", frozen["s"])
                    self.assertEqual(list(frozen["d"]), ks)
                    built = permafrost.build_dict((k, i) for i, k in enumerate(ks))
                    self.assertEqual(built, value["d"])

    def test_a_large_dict_whose_keys_outgrow_4_byte_words_moves_its_table(self):
        # Packed-str keys, predicted to fit in 4 bytes (the graph starts small), stop fitting
        # once the graph passes 256 MiB (56 KB a value, 280 MB in all): the table moves to
        # 8-byte key words midway (widen_table) and every key is still found.
        blob = bytes(56000)
        keys = [f"key:{i:07d}" for i in range(5000)]
        frozen = permafrost.freeze(dict.fromkeys(keys, blob))
        try:
            self.assertGreater(permafrost._core._range(frozen)[1], 1 << 28)
            self.assertEqual(list(frozen), keys)
            for k in keys[::97] + keys[-3:]:
                self.assertEqual(len(frozen[k]), 56000)
            self.assertNotIn("key:0005000", frozen)
        finally:
            frozen.close()

    def test_a_large_dict_keeps_its_nan_keys_apart(self):
        # NaN keys are never equal: a large dict's table (narrow or not) holds each.
        nan = float("nan")
        d = {i: i for i in range(5000)}
        d[nan] = "nan"
        d[float("nan")] = "other nan"
        frozen = permafrost.freeze(d)
        self.assertEqual(len(frozen), 5002)
        self.assertEqual(frozen[4999], 4999)

    def test_equal_strs_are_stored_once(self):
        # Records repeating a packed str (a category, a status) keep one copy of it: 1000 copies
        # of one 40-byte str add its 8-byte words, not 1000 strs.
        one = permafrost.freeze([str(i % 2) * 40 for i in range(1000)])
        many = permafrost.freeze([f"{i:040d}" for i in range(1000)])
        self.assertLess(permafrost._core._range(one)[1] + 30000, permafrost._core._range(many)[1])


# A fixed input covering every node kind, records sharing keys tables, small nodes stored once
# and containers reached twice; run with PYTHONHASHSEED=0 so its sets iterate in one order.
FIXED_INPUT_SCRIPT = r"""
import ctypes, datetime, decimal, hashlib, uuid
import permafrost

def fixed_input():
    shared = ["shared", 1, 2.5]
    big = {f"key{i}": {"id": i, "name": f"name-{i}", "tags": ["t%d" % (i % 7), i % 5, "x"],
                       "score": i * 0.25, "blob": b"\x00\x01" * (i % 40)} for i in range(300)}
    return {
        "records": big,
        "scalars": [None, True, False, 0, -1, 2 ** 40, -(2 ** 80), 1.5, float("inf"), 1e-300,
                    "", "short", "é" * 30, "x" * 70, "y" * 70000, b"", b"bytes" * 20],
        "sets": [{1, 2, 3}, frozenset({"a", "b"}), set()],
        "tuples": [(1, 2), (), ("a", (1, 2))],
        "sharing": [shared, shared, {"s": shared}],
        "keys": {1: "int", 2.5: "float", "s": "str", b"b": "bytes", (1, "t"): "tuple",
                 None: "none", frozenset({1}): "fs"},
        "dates": [datetime.date(2026, 12, 3), decimal.Decimal("1.25"),
                  uuid.UUID(int=12345)],
        "surrogate": "a\udc80b",
    }

def digest(frozen):
    addr, size = permafrost._core._range(frozen)
    return hashlib.sha256(ctypes.string_at(addr, size)).hexdigest(), size


print(*digest(permafrost.freeze(fixed_input())))
"""


class Output(unittest.TestCase):
    def test_freeze_output_is_unchanged_byte_for_byte(self):
        # The digest of the bytes freeze() writes for FIXED_INPUT_SCRIPT's input: the format,
        # offsets and dedupe choices stay the same unless changed on purpose. Last changed by
        # format v2 (packed strs: strs of 8..255 bytes are no longer str16 nodes; tables' index
        # capacity n * 4 / 3 + 1, no longer a power of two).
        # Then by tables of records (dicts of same-shape records: issue 19, item 2 part B).
        env = dict(os.environ, PYTHONHASHSEED="0",
                   PYTHONPATH=os.path.dirname(os.path.dirname(permafrost.__file__)))
        out = subprocess.run([sys.executable, "-c", FIXED_INPUT_SCRIPT], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        self.assertEqual(out, ["d97e6378ec9de5dbf53e4d385eea89c28e7526ebf0d9f426c85856f757f770c6",
                               "93016"])


class SmallThreadStacks(unittest.TestCase):
    """The walk recurses per level: in a thread with a small stack, deep nesting is refused."""

    def words_of(self, code, stack_size, after=""):
        """The words printed by a child that runs `code` (which defines work() and the list
        `out`), then work() in a thread of stack_size bytes, prints `out`, then runs `after`. In
        a child, so that a crash fails the test."""
        code = textwrap.dedent(code) + textwrap.dedent(f"""
            import threading
            threading.stack_size({stack_size})
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            print(*out)
            """) + textwrap.dedent(after)
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=300)
        self.assertEqual(child.returncode, 0, child.stderr[-2000:])
        return child.stdout.split()

    def test_deep_nesting_in_a_small_stack_thread_is_a_recursion_error(self):
        # 4,000 nested dicts need ~3 MiB of stack: in a 1 MiB thread freeze() and build_list()
        # once died of SIGSEGV. In a child, so that a crash fails the test.
        code = """
            import permafrost
            deep = {}
            for _ in range(4000):
                deep = {"a": deep}
            shallow = [[[1]]] * 3
            out = []
            def work():
                for build in (permafrost.freeze, lambda v: permafrost.build_list([v])):
                    try:
                        build(deep)
                        out.append("built")
                    except RecursionError as e:
                        out.append("RecursionError" if "thread's stack" in str(e) else str(e))
                    out.append(len(build(shallow)))
        """
        after = """
            print(len(permafrost.freeze(deep)) == 1)  # the main thread's stack is enough
        """
        self.assertEqual(self.words_of(code, 1 << 20, after),
                         ["RecursionError", "3", "RecursionError", "1", "True"])

    def test_deep_reads_and_keys_in_a_small_stack_thread_are_recursion_errors(self):
        # thaw() and tuples (built eagerly when read) recurse per level, and so does hashing a
        # tuple key: 4,900 levels in a 256 KiB thread once died of SIGSEGV.
        code = """
            import permafrost
            nested_list, nested_tuple = [], ()
            for _ in range(4900):
                nested_list, nested_tuple = [nested_list], (nested_tuple,)
            frozen = permafrost.freeze([nested_list, nested_tuple])  # in the main thread
            out = []
            def attempt(read):
                try:
                    read()
                    out.append("read")
                except RecursionError as e:
                    out.append("RecursionError" if "thread's stack" in str(e) else str(e))
            def work():
                attempt(frozen.thaw)
                attempt(lambda: frozen[1])
                attempt(lambda: permafrost.build_dict([(nested_tuple, 1)]))
                out.append(len(frozen[0][0][0]))  # shallow reads still work
        """
        self.assertEqual(self.words_of(code, 256 << 10), ["RecursionError"] * 3 + ["1"])


    def test_the_views_counted_methods_keep_their_functions_names_and_pickle(self):
        # The views' repr, ==, ordering and hash count their levels through a wrapper, which
        # had no __name__, __qualname__ or __doc__ (FrozenDict.__eq__.__name__ raised
        # AttributeError, as the function it replaced did not) and did not pickle.
        for method, function in ((permafrost.FrozenDict.__eq__, permafrost._dict_eq),
                                 (permafrost.FrozenDict.__hash__, permafrost._dict_hash)):
            self.assertEqual(method.__name__, function.__name__)
            self.assertEqual(method.__qualname__, function.__qualname__)
            self.assertEqual(method.__doc__, function.__doc__)
            self.assertIs(pickle.loads(pickle.dumps(method)).__wrapped__, function)
        self.assertEqual(permafrost.FrozenList.__repr__.__name__, "__repr__")
        eq = pickle.loads(pickle.dumps(permafrost.FrozenDict.__eq__))
        self.assertTrue(eq(permafrost.freeze({"a": [1]}), {"a": [1]}))
        # Methods defined as lambdas or local functions failed: "it's not the same object as
        # permafrost.FrozenDict.__ne__", "Can't pickle local object '_open_repr.<locals>...'".
        for cls in (permafrost.FrozenDict, permafrost.FrozenList, permafrost.FrozenSet):
            for name in ("__ne__", "__repr__", "__lt__", "__or__"):
                method = getattr(cls, name)
                if type(method).__name__ != "_nested_method":
                    continue
                with self.subTest(cls=cls, name=name):
                    back = pickle.loads(pickle.dumps(method))
                    if getattr(method, "__module__", None) == "permafrost":
                        self.assertIs(back, method)
                    else:  # FrozenSet's of collections.abc.Set: a wrapper of the same function
                        self.assertIs(back.__wrapped__, method.__wrapped__)

    def test_the_views_methods_given_as_lambdas_are_named_after_their_attribute(self):
        # A wrong call named "<lambda>": `L.count()` raised "<lambda>() missing 1 required
        # positional argument: 'value'".
        frozen = permafrost.freeze([1, 2])
        for call, name in ((lambda: frozen.count(), "FrozenList.count()"),
                           (lambda: frozen.copy(1), "FrozenList.copy()"),
                           (lambda: permafrost.freeze({"a": 1}).keys(1), "FrozenDict.keys()"),
                           (lambda: permafrost.freeze({1}).symmetric_difference(),
                            "FrozenSet.symmetric_difference()"),
                           # Private functions given to all three named them: "_save() takes".
                           (lambda: frozen.save("a.pfi", "b"), "FrozenList.save()"),
                           (lambda: permafrost.freeze({1}).close(1), "FrozenSet.close()"),
                           (lambda: frozen.index(1, start=0), "FrozenList.index()")):
            with self.subTest(name=name):
                with self.assertRaises(TypeError) as cm:
                    call()
                self.assertTrue(str(cm.exception).startswith(name), str(cm.exception))
        for cls in (permafrost.FrozenDict, permafrost.FrozenList, permafrost.FrozenSet):
            for attr, member in vars(cls).items():
                f = member.fget if isinstance(member, property) else member
                while f is not None:  # through wrappers: a traceback shows every level
                    self.assertNotEqual(getattr(f, "__name__", attr), "<lambda>", (cls, attr))
                    self.assertNotIn("<locals>", getattr(f, "__qualname__", ""), (cls, attr))
                    f = getattr(f, "__wrapped__", None)

    def test_every_public_function_and_method_has_a_signature(self):
        # inspect.signature() raised ValueError for trim, install_write_trap,
        # write_trap_installed, FrozenDict.get and thaw() (no __text_signature__): help() and
        # IDEs showed no arguments.
        import inspect
        callables = [getattr(permafrost, name) for name in permafrost.__all__]
        for cls in (permafrost.FrozenDict, permafrost.FrozenList, permafrost.FrozenSet):
            callables += [getattr(cls, attr) for attr in dir(cls) if not attr.startswith("_")]
        for f in callables:
            if callable(f) and not isinstance(f, type):
                with self.subTest(f=f):
                    inspect.signature(f)
        self.assertEqual(str(inspect.signature(permafrost.FrozenDict.get)),
                         "(self, key, default=None, /)")

    def test_a_name_that_is_not_text_is_a_value_error_naming_it(self):
        # "z" parsing gave a bare UnicodeEncodeError for a lone surrogate, naming no argument.
        builds = (lambda name: permafrost.freeze([1], name=name),
                  lambda name: permafrost.build_list([1], name=name),
                  lambda name: permafrost.build_dict([("a", 1)], name=name))
        for build in builds:
            for name in ("\ud800", "a\0b"):
                with self.subTest(name=name):
                    with self.assertRaisesRegex(ValueError, "an arena's name must be text"):
                        build(name)
            with self.assertRaisesRegex(TypeError, "name must be a str or None, not int"):
                build(5)
            self.assertEqual(build("fine"), build(None))

    def test_deep_repr_eq_and_dumps_in_a_small_stack_thread_are_recursion_errors(self):
        # repr(), == and dumps() of a view recurse per level (repr and == through Python code,
        # ~1 KiB of C stack a level on 3.12): 300 levels in a 256 KiB thread died of SIGSEGV.
        code = """
            import permafrost
            views = []
            for depth in (20, 300, 4000):
                for make in (lambda v: [v], lambda v: {"a": v}):
                    value = []
                    for _ in range(depth):
                        value = make(value)
                    views.append((depth, permafrost.freeze(value), permafrost.freeze(value)))
            out = []
            def attempt(depth, read):
                try:
                    read()
                    out.append(depth)
                except RecursionError:
                    out.append("RecursionError")
            def work():
                for depth, a, b in views:
                    attempt(depth, lambda: repr(a))
                    attempt(depth, lambda: a == b)
                    attempt(depth, lambda: a != b)
                    attempt(depth, lambda: permafrost.dumps(a))
        """
        self.assertEqual(self.words_of(code, 256 << 10), ["20"] * 8 + ["RecursionError"] * 16)

    def test_shallow_reads_in_a_small_stack_thread_work(self):
        # thaw() and tuple reads checked the stack at every level for 256 KiB free, more than a
        # 256 KiB thread ever has: even a flat value's thaw() was a RecursionError there.
        code = """
            import permafrost
            frozen = permafrost.freeze({"t": (1, (2, 3)), "l": [1, {"a": 2}]})
            out = []
            def work():
                out.append(frozen.thaw() == {"t": (1, (2, 3)), "l": [1, {"a": 2}]})
                out.append(frozen["t"] == (1, (2, 3)))
                out.append(permafrost.freeze((1, 2)) == (1, 2))  # a scalar root is read back
        """
        self.assertEqual(self.words_of(code, 256 << 10), ["True"] * 3)

if __name__ == "__main__":
    unittest.main()
