"""The views as immutable built-ins: hashing, equality, copies, errors (PEP 814's frozendict).

FrozenDict follows PEP 814: hashable when its keys and values are, hash(frozenset(items)),
equal to a dict with the same items in any order. FrozenList behaves as a list that cannot change
(unhashable, never equal to a tuple); FrozenSet as a frozenset, whatever it was frozen from.
"""
import collections
import collections.abc
import copy
import datetime
import decimal
import enum
import fractions
import functools
import math
import operator
import string
import types
import unittest
import uuid

import permafrost
from permafrost import FrozenDict, FrozenList, FrozenSet

NAN = float("nan")


class Hashing(unittest.TestCase):
    def test_a_dict_of_hashable_values_hashes_as_pep_814_says(self):
        frozen = permafrost.freeze({"a": 1, "b": "x", "t": (1, "y"), 2: None})
        self.assertEqual(hash(frozen),
                         hash(frozenset({("a", 1), ("b", "x"), ("t", (1, "y")), (2, None)})))

    def test_equal_dicts_in_another_order_hash_equal(self):
        one = permafrost.freeze({"a": 1, "b": {"c": frozenset({1, 2})}, "s": {3}})
        two = permafrost.freeze({"s": {3}, "b": {"c": frozenset({2, 1})}, "a": 1})
        self.assertEqual(one, two)
        self.assertEqual(hash(one), hash(two))
        self.assertEqual({one: "found"}[two], "found")

    def test_an_unhashable_value_raises_naming_its_type(self):
        frozen = permafrost.freeze({"tags": ["a", "b"]})
        with self.assertRaisesRegex(TypeError, r"unhashable type: '(permafrost\.)?FrozenList'"):
            hash(frozen)
        with self.assertRaisesRegex(TypeError, r"unhashable type: '(permafrost\.)?FrozenList'"):
            hash(permafrost.freeze({"deep": ({"x": [1]},)}))

    def test_records_work_with_lru_cache(self):
        calls = []

        @functools.lru_cache(maxsize=None)
        def describe(record):
            calls.append(record)
            return f"{record['name']}#{record['id']}"

        rows = permafrost.freeze([{"name": "ada", "id": 1}, {"name": "bob", "id": 2}])
        self.assertEqual(describe(rows[0]), "ada#1")
        self.assertEqual(describe(rows[0]), "ada#1")  # a new view of the same record: cached
        self.assertEqual(describe(rows[1]), "bob#2")
        self.assertEqual(len(calls), 2)

    def test_collections_abc_hashable(self):
        frozen = permafrost.freeze({"l": [1], "s": {1}, "f": frozenset({1})})
        # A FrozenDict can be hashed when its contents can (as a tuple and PEP 814's frozendict).
        self.assertIsInstance(frozen, collections.abc.Hashable)
        self.assertNotIsInstance(frozen["l"], collections.abc.Hashable)  # as a list
        with self.assertRaisesRegex(TypeError, r"unhashable type: '(permafrost\.)?FrozenList'"):
            hash(frozen["l"])
        # A FrozenSet is immutable whatever it was frozen from: hashable, as a frozenset.
        for key in ("s", "f"):
            with self.subTest(key=key):
                self.assertIsInstance(frozen[key], collections.abc.Hashable)
                self.assertEqual(hash(frozen[key]), hash(frozenset({1})))
                self.assertEqual({frozenset({1}): "found"}[frozen[key]], "found")


class Equality(unittest.TestCase):
    def test_equal_to_a_dict_in_any_order(self):
        frozen = permafrost.freeze({"a": 1, "b": [1, 2], "c": {"d": None}})
        self.assertEqual(frozen, {"c": {"d": None}, "b": [1, 2], "a": 1})
        self.assertEqual({"c": {"d": None}, "b": [1, 2], "a": 1}, frozen)
        self.assertNotEqual(frozen, {"a": 1, "b": [1, 2], "c": {"d": 0}})
        self.assertNotEqual(frozen, {"a": 1, "b": [1, 2]})
        self.assertNotEqual(frozen, {"a": 1, "b": [1, 2], "c": {"d": None}, "e": 1})

    def test_a_dict_with_missing_is_compared_by_its_items(self):
        # A defaultdict's or a Counter's __missing__ answers for any key: == must not ask it.
        frozen = permafrost.freeze({"a": 0})
        for other in (collections.defaultdict(int, {"b": 5}), collections.Counter({"b": 5}),
                      collections.ChainMap(collections.defaultdict(int, {"b": 5}))):
            with self.subTest(other=type(other).__name__):
                self.assertEqual(frozen == other, {"a": 0} == other)
                self.assertFalse(other == frozen)
                self.assertTrue(frozen != other)
                self.assertNotIn("a", other)
        self.assertEqual(frozen, collections.defaultdict(int, {"a": 0}))
        self.assertEqual(frozen, collections.ChainMap({"a": 0}))

    def test_a_list_is_never_equal_to_a_tuple(self):
        frozen = permafrost.freeze([1, 2])
        self.assertFalse(frozen == (1, 2))
        self.assertTrue(frozen != (1, 2))
        self.assertFalse((1, 2) == frozen)
        self.assertEqual(frozen, [1, 2])
        self.assertNotEqual(permafrost.freeze({"t": [1]}), {"t": (1,)})

    def test_a_tuple_stays_a_tuple(self):
        frozen = permafrost.freeze({"t": (1, 2)})
        self.assertEqual(frozen["t"], (1, 2))
        self.assertNotEqual(frozen, {"t": [1, 2]})

    def test_nan_is_never_equal_nor_found(self):
        # A dict finds NaN by identity (the same float object); a frozen value is read into a new
        # float each time, and NaN != NaN, so NaN keys and items are never found or equal.
        frozen = permafrost.freeze({"k": {NAN: 1}, "l": [NAN]})
        self.assertNotIn(NAN, frozen["k"])
        self.assertEqual(frozen["k"].get(NAN, "absent"), "absent")
        self.assertTrue(math.isnan(next(iter(frozen["k"]))))
        self.assertNotIn(NAN, frozen["l"])
        self.assertNotEqual(frozen["l"], [NAN])
        self.assertNotEqual(frozen["k"], {NAN: 1})


class Lookups(unittest.TestCase):
    """Keys of types freeze() does not store are absent, as in a dict (issue 16 item 8)."""

    def setUp(self):
        self.d = permafrost.freeze({1: "one", 1.5: "one and a half", "s": "str", (1, "a"): "tuple",
                                    frozenset({2}): "frozenset", None: "none"})
        self.s = permafrost.freeze({"s": {1, 1.5, "x", (1, "a")}})["s"]

    def foreign_keys(self):
        class Color(enum.Enum):
            RED = 1

        class Plain:
            pass

        return [datetime.date(2026, 12, 3), datetime.timedelta(1), Color.RED,
                uuid.UUID(int=1), Plain(), 1 + 2j, decimal.Decimal("2.5"), fractions.Fraction(1, 3),
                (1, datetime.date(2026, 1, 1)), frozenset({Plain()}), range(3)]

    def test_a_hashable_key_of_another_type_is_absent(self):
        for key in self.foreign_keys():
            with self.subTest(key=key):
                self.assertNotIn(key, self.d)
                self.assertIsNone(self.d.get(key))
                self.assertEqual(self.d.get(key, "default"), "default")
                with self.assertRaises(KeyError):
                    self.d[key]
                self.assertNotIn(key, self.d.keys())
                self.assertNotIn((key, "one"), self.d.items())
                self.assertNotIn(key, self.s)

    def test_an_unhashable_key_raises_as_in_a_dict(self):
        for key in ([], {}, {1}, ([],), bytearray(b"x")):
            with self.subTest(key=key):
                for probe in (lambda: key in self.d, lambda: self.d.get(key),
                              lambda: self.d[key], lambda: key in self.d.keys(),
                              lambda: (key, 1) in self.d.items()):
                    with self.assertRaisesRegex(TypeError, "unhashable"):
                        probe()
                if not isinstance(key, set):  # a frozenset looks a set up as a frozenset
                    with self.assertRaisesRegex(TypeError, "unhashable"):
                        key in frozenset()  # noqa: B015 (the built-in does the same)
                    with self.assertRaisesRegex(TypeError, "unhashable"):
                        key in self.s  # noqa: B015

    def test_a_memoryview_finds_its_bytes_key_as_in_a_dict(self):
        # A read-only memoryview of bytes hashes and compares as the bytes; a writable one, or
        # one of another format, raises ValueError as a dict's lookup does.
        plain = {b"raw": 1, (b"t", 2): 2}
        frozen = permafrost.freeze(plain)
        for key in (memoryview(b"raw"), memoryview(b"xraw")[1:], (memoryview(b"t"), 2)):
            with self.subTest(key=key):
                self.assertEqual(frozen[key], plain[key])
                self.assertIn(key, frozen.keys())
        self.assertIn(memoryview(b"s"), permafrost.freeze({"s": {b"s"}})["s"])
        self.assertNotIn(memoryview(b"other"), frozen)
        for key in (memoryview(bytearray(b"raw")), memoryview(b"abcd").cast("I")):
            with self.subTest(key=key):
                with self.assertRaises(ValueError) as want:
                    plain.get(key)
                with self.assertRaises(ValueError) as got:
                    frozen.get(key)
                self.assertEqual(str(got.exception), str(want.exception))

    def test_a_set_is_looked_up_in_a_frozen_set_as_its_frozenset(self):
        s = permafrost.freeze({"s": {frozenset({1, 2}), 3}})["s"]
        self.assertIn({1, 2}, s)
        self.assertIn({1, 2}, frozenset({frozenset({1, 2})}))
        self.assertNotIn({1}, s)

    def test_equal_numbers_are_equal_keys(self):
        for key, value in ((fractions.Fraction(1), "one"), (decimal.Decimal(1), "one"),
                           (decimal.Decimal("1.5"), "one and a half"),
                           (fractions.Fraction(3, 2), "one and a half"), (1.0, "one"),
                           (True, "one"), ((fractions.Fraction(1), "a"), "tuple"),
                           ((decimal.Decimal("1.0"), "a"), "tuple"),
                           (frozenset({decimal.Decimal(2)}), "frozenset")):
            with self.subTest(key=key):
                self.assertIn(key, self.d)
                self.assertEqual(self.d[key], value)
                self.assertEqual(self.d.get(key), value)
                self.assertEqual(dict(self.d.thaw())[key], value)  # as the dict it came from
        self.assertIn(decimal.Decimal(1), self.s)
        self.assertIn(fractions.Fraction(3, 2), self.s)
        self.assertIn((fractions.Fraction(1), "a"), self.s)

    def test_a_frozen_set_view_finds_its_frozenset_key(self):
        views = permafrost.freeze({"from a set": {2}, "from a frozenset": frozenset({2})})
        for name, view in views.items():
            with self.subTest(name):
                self.assertEqual(self.d[view], "frozenset")
                self.assertEqual(permafrost.freeze({(1, frozenset({2})): "t"})[(1, view)], "t")

    def test_int_enum_and_str_subclass_keys_find_their_value(self):
        class Level(enum.IntEnum):
            ONE = 1

        class Name(str):
            pass

        self.assertEqual(self.d[Level.ONE], "one")
        self.assertEqual(self.d[Name("s")], "str")


class Copies(unittest.TestCase):
    def setUp(self):
        self.frozen = permafrost.freeze({"name": "ada", "tags": ["x", "y"], "s": {1}})

    def test_dict_copy_is_shallow_as_dict_copy(self):
        shallow = self.frozen.copy()
        self.assertIs(type(shallow), dict)
        self.assertEqual(list(shallow), ["name", "tags", "s"])
        self.assertIsInstance(shallow["tags"], FrozenList)  # nested values stay views
        self.assertIsInstance(shallow["s"], FrozenSet)
        shallow["name"] = "bob"
        self.assertEqual(self.frozen["name"], "ada")

    def test_thaw_is_the_deep_copy(self):
        deep = self.frozen.thaw()
        self.assertIs(type(deep["tags"]), list)
        self.assertIs(type(deep["s"]), set)
        deep["tags"].append("z")
        self.assertEqual(self.frozen["tags"], ["x", "y"])

    def test_list_and_set_copies_are_shallow(self):
        frozen = permafrost.freeze({"l": [[1], 2], "s": {(1, 2), 3}})
        lst = frozen["l"].copy()
        self.assertIs(type(lst), list)
        self.assertIsInstance(lst[0], FrozenList)
        st = frozen["s"].copy()
        self.assertIs(type(st), set)
        self.assertEqual(st, {(1, 2), 3})

    def test_copy_module_returns_the_view_itself(self):
        for view in (self.frozen, self.frozen["tags"], self.frozen["s"]):
            with self.subTest(type=type(view).__name__):
                self.assertIs(copy.copy(view), view)
                self.assertIs(copy.deepcopy(view), view)
                self.assertIs(copy.deepcopy({"v": view})["v"], view)


class SetOperators(unittest.TestCase):
    def test_a_set_on_the_left_keeps_its_type(self):
        # As set | frozenset gives a set: `s |= view` must leave s a set that can still change.
        view = permafrost.freeze({"roles": {"a", "b"}})["roles"]
        s = {"c"}
        s |= view
        s.add("d")
        self.assertEqual(s, {"a", "b", "c", "d"})
        for op in (operator.or_, operator.and_, operator.sub, operator.xor):
            with self.subTest(op=op.__name__):
                self.assertIs(type(op({"a", "c"}, view)), set)
                self.assertEqual(op({"a", "c"}, view), op({"a", "c"}, {"a", "b"}))
                self.assertIs(type(op(frozenset({"a"}), view)), frozenset)
                self.assertIs(type(op(view, {"a"})), frozenset)

    def test_another_set_type_on_the_right_decides_as_with_a_frozenset(self):
        # frozenset's operators take a set or frozenset only; dict_keys' reflected operator makes
        # a set of `frozenset() & d.keys()`, and so of `view & d.keys()`.
        view = permafrost.freeze({"roles": {1, 2}})["roles"]
        for op in (operator.or_, operator.and_, operator.sub, operator.xor):
            for other in ({1: 0}.keys(), {(1, 0): 0}.items(), permafrost.freeze({1: 0}).keys()):
                with self.subTest(op=op.__name__, other=type(other).__name__):
                    want = op(frozenset({1, 2}), other)
                    got = op(view, other)
                    self.assertEqual((type(got), got), (type(want), want))

    def test_the_operators_take_a_set_and_the_methods_any_iterable(self):
        # As a frozenset's: `frozenset() & [1]` and `[1] & frozenset()` raise TypeError.
        view = permafrost.freeze({"roles": {"a", "b"}})["roles"]
        for op in (operator.or_, operator.and_, operator.sub, operator.xor):
            for other in (["a"], ("a",), "a", iter(["a"]), {"a": 1}):
                with self.subTest(op=op.__name__, other=type(other).__name__):
                    with self.assertRaises(TypeError):
                        op(view, other)
                    with self.assertRaises(TypeError):
                        op(other, view)
            with self.subTest(op=op.__name__, other="a Set"):
                self.assertEqual(op(view, {"a": 1}.keys()), op(frozenset({"a", "b"}), {"a"}))
                self.assertEqual(op(view, view), op(frozenset({"a", "b"}), {"a", "b"}))
        self.assertEqual(view.intersection(["a"]), {"a"})
        self.assertEqual(view.union(("c",)), {"a", "b", "c"})
        self.assertEqual(view.difference("a"), {"b"})
        self.assertEqual(view.symmetric_difference(iter(["a", "c"])), {"b", "c"})
        self.assertFalse(view.isdisjoint(["a"]))


    @staticmethod
    def outcome(f):
        try:
            return f()
        except Exception as e:  # noqa: BLE001 (the type is what is compared)
            return type(e)

    def assert_as_a_dicts_views(self, source, others):
        frozen, plain = permafrost.freeze(source), dict(source)
        binary = (operator.and_, operator.or_, operator.sub, operator.xor, operator.le,
                  operator.lt, operator.ge, operator.gt, operator.eq, operator.ne)
        for name in ("keys", "items"):
            ours, theirs = getattr(frozen, name)(), getattr(plain, name)()
            for other in others:
                for op in binary:
                    with self.subTest(view=name, op=op.__name__, other=other):
                        self.assertEqual(self.outcome(lambda: op(ours, other)),
                                         self.outcome(lambda: op(theirs, other)))
                        if isinstance(other, (type({}.keys()), type({}.items()))):
                            continue  # dict's own operator runs, and takes ours as an iterable
                        self.assertEqual(self.outcome(lambda: op(other, ours)),
                                         self.outcome(lambda: op(other, theirs)))
                with self.subTest(view=name, other=other):
                    self.assertEqual(self.outcome(lambda: ours.isdisjoint(other)),
                                     self.outcome(lambda: theirs.isdisjoint(other)))
                    self.assertEqual(self.outcome(lambda: other in ours),
                                     self.outcome(lambda: other in theirs))

    def test_items_views_take_what_is_no_pair_as_no_item(self):
        # dict_items' __contains__ says False for anything but a 2-tuple (and asks the dict only
        # for a tuple's key); collections.abc's unpacked it: `fd.items() & {"a": 1}` raised
        # ValueError where dict's gives set().
        self.assertEqual(permafrost.freeze({"a": 1}).items() & {"a": 1}, set())
        self.assertIn(("a", 1), permafrost.freeze({"a": 1}).items())
        self.assert_as_a_dicts_views(
            {"a": 1, "b": (1, 2), "c": "x"},
            [{"a": 1}, [1], ["a"], [("a", 1)], [["a", 1]], ("a", 1), "ab", set(), {("a", 1)}, 1,
             None, frozenset({"a"}), {"a": 1}.keys(), {"a": 1}.items(), [("a", 1, 2)],
             [([], 1)], ("a", [1]), [("b", [1, 2])]])
        with self.assertRaisesRegex(TypeError, "unhashable"):
            ([], 1) in permafrost.freeze({"a": 1}).items()  # noqa: B015 (as in a dict's)

    def test_differences_hash_every_item_as_a_dicts_views_do(self):
        # dict's - and ^ hash every item, so an unhashable value is a TypeError in `x - items`
        # and `keys - x` takes x's elements as a set would; collections.abc's computed a result.
        self.assert_as_a_dicts_views(
            {"a": 1, "b": [1, 2], "c": "x"},
            [[("a", 1)], set(), {"a": 1}, "ab", {"b": [1, 2]}.items(), {"a": 1}.items(),
             [("b", [1, 2])], ("a", 1)])

class Merging(unittest.TestCase):
    def test_or_gives_what_it_gives_with_a_dict_in_place_of_the_view(self):
        # dict.__or__ takes only a dict, so `{} | UserDict()` is UserDict.__ror__'s UserDict;
        # the view merged any Mapping into a dict itself, and `rec | UserDict()` was a dict.
        class Plain(collections.abc.Mapping):  # a Mapping without | (a dict refuses it)
            def __getitem__(self, key):
                return {"b": 2}[key]

            def __iter__(self):
                return iter(["b"])

            def __len__(self):
                return 1

        rec = permafrost.freeze({"a": 1, "b": 0})
        plain = dict(rec)
        others = [collections.UserDict({"b": 2}), {"b": 2}, collections.OrderedDict(b=2),
                  collections.defaultdict(int, b=2), collections.Counter(b=2),
                  types.MappingProxyType({"b": 2}), Plain(), {"b"}, [("b", 2)], 1, None]

        def outcome(f):
            try:
                got = f()
            except TypeError:
                return TypeError
            return type(got), dict(got)

        for other in others:
            with self.subTest(other=type(other).__name__):
                self.assertEqual(outcome(lambda: rec | other), outcome(lambda: plain | other))
                self.assertEqual(outcome(lambda: other | rec), outcome(lambda: other | plain))
        self.assertIs(type(rec | collections.UserDict()), collections.UserDict)
        self.assertEqual(rec | permafrost.freeze({"b": 2}), {"a": 1, "b": 2})
        self.assertIs(type(rec | permafrost.freeze({"b": 2})), dict)

    def test_or_of_a_keys_or_items_view_on_the_right_keeps_the_lefts_equal_elements(self):
        # `x | d.keys()` starts from x's elements, so x's 1 stays where the view holds 1.0.
        plain = {1.0: "a", (1.0, 2): "b"}
        frozen = permafrost.freeze(plain)
        for name, left in (("keys", {1: 0}), ("keys", [(1, 2)]), ("items", [(1, "a")])):
            with self.subTest(view=name, left=left):
                want = left | getattr(plain, name)()
                got = left | getattr(frozen, name)()
                self.assertEqual(sorted(map(repr, got)), sorted(map(repr, want)))

    def test_or_with_an_operand_it_refuses_says_so_as_a_dicts_does(self):
        # type.__ror__ (for `int | None`) was taken for the operand's own: `rec | [1]` raised
        # `TypeError: expected 1 argument, got 2`, which names neither | nor the operands.
        class Plain(collections.abc.Mapping):  # its metaclass, ABCMeta, has type's | too
            def __getitem__(self, key):
                raise KeyError(key)

            def __iter__(self):
                return iter(())

            def __len__(self):
                return 0

        rec = permafrost.freeze({"a": 1})
        for other in ([1], (1,), Plain(), "ab", {"b"}, 1):
            for name, f in (("rec | other", lambda: rec | other),
                            ("other | rec", lambda: other | rec)):
                with self.subTest(other=type(other).__name__, op=name):
                    with self.assertRaises(TypeError) as caught:
                        f()
                    self.assertIn("unsupported operand type(s) for |", str(caught.exception))
                    self.assertIn("'permafrost.FrozenDict'", str(caught.exception))

    def test_an_operands_refusing_ror_is_asked_once_as_with_a_dict(self):
        # `{} | other` asks other.__ror__ once; `rec | other` asked it with the dict, returned
        # NotImplemented, and Python asked it again with the view.
        calls = []

        class Refuses:
            def __ror__(self, left):
                calls.append(type(left))
                return NotImplemented

        rec = permafrost.freeze({"a": 1})
        for left, asked in (({"a": 1}, [dict]), (rec, [dict])):
            calls.clear()
            with self.assertRaises(TypeError) as caught:
                left | Refuses()
            self.assertEqual(calls, asked)
            self.assertIn("unsupported operand type(s) for |", str(caught.exception))
            self.assertIn("'Refuses'", str(caught.exception))
        with self.assertRaises(TypeError) as caught:
            rec | {"b"}  # set.__ror__ refuses a dict: the message names set as Python's does
        self.assertIn("'permafrost.FrozenDict' and 'set'", str(caught.exception))


class Errors(unittest.TestCase):
    def test_mutation_errors_name_thaw(self):
        d = permafrost.freeze({"a": [1], "s": {1}})
        attempts = {
            "d[k] = v": lambda: d.__setitem__("a", 2),
            "del d[k]": lambda: d.__delitem__("a"),
            "d.update": lambda: d.update(b=1),
            "d |= x": lambda: d.__ior__({"b": 1}),
            "list.append": lambda: d["a"].append(2),
            "list[i] = v": lambda: d["a"].__setitem__(0, 2),
            "set.add": lambda: d["s"].add(2),
        }
        for what, attempt in attempts.items():
            with self.subTest(what=what):
                with self.assertRaisesRegex(TypeError, r"is frozen: use \.thaw\(\) for a mutable copy"):
                    attempt()

    def test_item_assignment_statement(self):
        d = permafrost.freeze({"a": 1})
        with self.assertRaisesRegex(TypeError, r"'FrozenDict' is frozen: use \.thaw\(\)"):
            d["a"] = 2
        self.assertEqual(d["a"], 1)


class Mapping(unittest.TestCase):
    """What works unchanged on a FrozenDict, as README's "FrozenDict is a Mapping, not a dict" says."""

    def test_what_works_unchanged(self):
        frozen = permafrost.freeze({"a": 1, "b": {"c": 2}})
        self.assertIsInstance(frozen, collections.abc.Mapping)
        self.assertNotIsInstance(frozen, dict)
        self.assertEqual(dict(frozen), {"a": 1, "b": frozen["b"]})
        self.assertEqual({**frozen}["a"], 1)
        self.assertEqual((lambda **kw: kw)(**frozen)["a"], 1)
        self.assertEqual(frozen | {"z": 0}, {"a": 1, "b": {"c": 2}, "z": 0})
        self.assertEqual(sorted(frozen.items(), key=lambda kv: kv[0])[0], ("a", 1))
        self.assertEqual(list(reversed(frozen)), ["b", "a"])
        self.assertEqual(string.Template("$a").substitute(frozen), "1")
        self.assertEqual("{a}".format_map(frozen), "1")
        self.assertEqual(types.MappingProxyType(frozen)["a"], 1)
        self.assertEqual(collections.ChainMap({}, frozen)["a"], 1)

    def test_or_with_a_dict_subclass_gives_what_the_dict_operation_gives(self):
        # Python asks a right operand's subclass first: {} | OrderedDict() is an OrderedDict.
        class Tagged(dict):
            def __or__(self, other):
                return ("or", dict(self), dict(other))

            def __ror__(self, other):
                return ("ror", dict(other), dict(self))

        frozen = permafrost.freeze({"a": 1, "b": 2})
        plain = {"a": 1, "b": 2}
        for other in (collections.OrderedDict(b=3, c=4), collections.defaultdict(int, c=4),
                      collections.Counter(c=4), Tagged(c=4), {"c": 4}):
            for name, op in (("fd | x", lambda d: d | other), ("x | fd", lambda d: other | d)):
                with self.subTest(other=type(other).__name__, op=name):
                    got, expected = op(frozen), op(plain)
                    self.assertIs(type(got), type(expected))
                    self.assertEqual(got, expected)
                    if isinstance(expected, dict):
                        self.assertEqual(list(got.items()), list(expected.items()))
        self.assertEqual((frozen | collections.defaultdict(int))["missing"], 0)

    def test_keys_values_and_items_have_the_mapping_as_a_dicts(self):
        # A dict view's .mapping is a read-only mappingproxy of the dict; a FrozenDict is
        # read-only already, so its views give the FrozenDict itself.
        frozen = permafrost.freeze({"a": 1, "b": [2]})
        for view in (frozen.keys(), frozen.values(), frozen.items()):
            with self.subTest(view=type(view).__name__):
                self.assertIs(view.mapping, frozen)
                self.assertEqual(view.mapping, {"a": 1, "b": [2]})
                with self.assertRaises(TypeError):
                    view.mapping["a"] = 2
                with self.assertRaises(AttributeError):
                    view.mapping = {}

    def test_keys_values_and_items_are_reversible_as_a_dicts(self):
        frozen = permafrost.freeze({"a": 1, "b": 2, "c": 3})
        self.assertEqual(list(reversed(frozen.keys())), ["c", "b", "a"])
        self.assertEqual(list(reversed(frozen.values())), [3, 2, 1])
        self.assertEqual(list(reversed(frozen.items())), [("c", 3), ("b", 2), ("a", 1)])


if __name__ == "__main__":
    unittest.main()
