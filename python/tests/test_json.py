"""permafrost.dumps, permafrost.JSONEncoder and permafrost.flask.JSONProvider.

Every case compares with the json module on the thawed value: dumps(x) must be
json.dumps(thawed, ensure_ascii=False, separators=(",", ":")).encode() byte for byte.
"""
import collections
import enum
import io
import json
import math
import os
import random
import struct
import sys
import tempfile
import unittest

import permafrost
from permafrost import FrozenDict, FrozenList

try:
    import flask
    from permafrost.flask import JSONProvider
except ImportError:  # Debian's python3-flask serves /usr/bin/python3 only
    flask = None


def reference(value, **kwargs):
    """What dumps(value, **kwargs) must return: json's text of the thawed value, as UTF-8."""
    separators = (",", ": ") if kwargs.get("indent") is not None else (",", ":")
    return json.dumps(value, ensure_ascii=False, separators=separators, **kwargs).encode()


SAMPLES = {
    "scalars": [0, 1, -1, 2**60 - 1, -2**60, 2**60, -2**60 - 1, 2**63, -2**63 - 1, True, False,
                None, 0.0, -0.0, 0.5, 0.1, 1e16, 1e15, 1e-5, 1e-4, 123456789.125, 5e-324,
                1.7976931348623157e308, -2.5e-300, "", "text"],
    "big ints": [2**64, -2**64, 2**1000 + 12345, -(3**500), 10**100, -10**100 + 1],
    "strings": ["\"quoted\" \\ back/slash", "".join(map(chr, range(0x20))) + "\x7f",
                "héllo wörld", "日本語テキスト", "emoji \U0001F600\U0001F9D1\u200d\U0001F4BB",
                "\u2028\u2029 separators", "é" * 100, "x" * 70000],
    "nesting": {"users": [{"name": "ada", "id": 1, "tags": ("x", ["y", {"z": None}])}],
                "matrix": [[1, 2], [3, [4, [5, [6]]]]], "empty": [{}, [], ()]},
    "keys": {1: "int", 2.5: "float", False: "bool", None: "none", -7: "neg", 2**70: "big",
             "s": "str", 1e20: "big float", math.inf: "inf"},
    "records": [{"name": f"user{i}", "id": i, "score": i / 7, "tags": ["a", i % 3, "b"]}
                for i in range(200)],
}


class SameTextAsJson(unittest.TestCase):
    def check(self, value, **kwargs):
        want = reference(value, **kwargs)
        self.assertEqual(permafrost.dumps(value, **kwargs), want, "ordinary value")
        frozen = permafrost.freeze(value)
        self.assertEqual(permafrost.dumps(frozen, **kwargs), want, "frozen value")
        return frozen

    def test_samples(self):
        for name, value in SAMPLES.items():
            with self.subTest(sample=name):
                self.check(value)
                self.check({"v": value})

    def test_indent(self):
        value = {"b": SAMPLES["nesting"], "a": SAMPLES["keys"], "c": [], "d": {}, "e": [[]]}
        for indent in (2, 0, "\t", -1, True):
            with self.subTest(indent=indent):
                self.check(value, indent=indent)

    def test_sort_keys(self):
        value = {"b": SAMPLES["nesting"], "a": {"x": [3, {"z": 1, "y": 2}]}, "c": [], "d": {}}
        self.check(value, sort_keys=True)
        self.check(value, sort_keys=True, indent=4)

    def test_records_sharing_a_keys_table(self):
        rows = permafrost.freeze(SAMPLES["records"])
        for kwargs in ({}, {"sort_keys": True}, {"indent": 1}):
            with self.subTest(**kwargs):
                self.assertEqual(permafrost.dumps(rows, **kwargs),
                                 reference(SAMPLES["records"], **kwargs))
        # Nested records of other shapes between them (the rendered keys are cached per table).
        mixed = [{"a": {"b": {"c": i, "a": [i]}, "z": i}, "b": {"a": 1}} for i in range(50)]
        self.check(mixed)
        self.check(mixed, sort_keys=True)

    def test_sort_keys_orders_as_python_sorts(self):
        # Code points, not UTF-16 or locale; numbers by value (10 after 9), not as text.
        self.check({"é": 1, "z": 2, "\U0001F600": 3, "\uffff": 4, "a": 5, "": 6, "ab": 7},
                   sort_keys=True)
        self.check({10: "a", 9: "b", -3: "c", 2**40: "d", True: "e"}, sort_keys=True)
        self.check({2.5: "a", 1: "b", 2**70: "c", -1.5: "d", False: "e"}, sort_keys=True)
        self.check({"k": [{"y": 1, "x": 2}], "j": {3: 1, 1: 3}}, sort_keys=True)

    def test_sort_keys_of_mixed_types_raises_as_json(self):
        for value in ({"a": 1, 2: "b"}, {None: 1, "a": 2}, {1: 1, "x": {"b": 1, 3: 2}}):
            with self.subTest(value=value):
                with self.assertRaises(TypeError) as want:
                    json.dumps(value, sort_keys=True)
                for obj in (value, permafrost.freeze(value)):
                    with self.assertRaises(TypeError) as got:
                        permafrost.dumps(obj, sort_keys=True)
                    self.assertIn(str(want.exception), str(got.exception))

    def test_keys_json_refuses(self):
        for key in ((1, 2), frozenset({1}), b"bytes"):
            with self.subTest(key=key):
                with self.assertRaises(TypeError) as want:
                    json.dumps({key: 1})
                for obj in ({key: 1}, permafrost.freeze({key: 1})):
                    with self.assertRaises(TypeError) as got:
                        permafrost.dumps(obj)
                    self.assertEqual(str(got.exception), str(want.exception))

    def test_nan_and_infinity(self):
        value = [math.nan, math.inf, -math.inf, {"k": math.nan}, {math.inf: 1}]
        self.check(value)
        for obj in (value, permafrost.freeze(value)):
            with self.assertRaisesRegex(ValueError, "Out of range float values"):
                permafrost._core._encode(obj, None, False, None, False, ",", ":", False, False,
                                         True, False)

    def test_floats_are_written_as_repr(self):
        # The shortest round-trip digits and Python's layout, on random bit patterns (every
        # exponent) and on decimal-looking values, against float.__repr__ through json.
        rng = random.Random(20261203)
        values = []
        for _ in range(100000):
            d = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if math.isfinite(d):
                values.append(d)
        values += [rng.randint(-10**6, 10**6) / 10 ** rng.randint(0, 12) for _ in range(50000)]
        for e in range(-325, 310):
            p = float(f"1e{e}")
            values += [p, math.nextafter(p, 0), math.nextafter(p, math.inf), -p]
        values += [2.0 ** e for e in range(-1074, 1024)]
        self.check(values)

    def test_integer_bounds(self):
        values = [2**e + d for e in (59, 60, 61, 62, 63, 64, 65, 127, 128, 200) for d in (-1, 0, 1)]
        values += [-v for v in values]
        self.check(values)

    def test_big_int_digit_limit_as_int_repr(self):
        big = 10**1500
        frozen = permafrost.freeze([big])
        old = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(1000)
        try:
            with self.assertRaises(ValueError):
                json.dumps([big])
            for obj in ([big], frozen):
                with self.assertRaisesRegex(ValueError, "integer string conversion"):
                    permafrost.dumps(obj)
        finally:
            sys.set_int_max_str_digits(old)
        self.assertEqual(permafrost.dumps(frozen), ("[" + str(big) + "]").encode())

    def test_lone_surrogates_are_escaped_and_read_back(self):
        for s in ("a\ud800b", "\udfff", "x\udc80y\ud83d", "\ud83d\ude00 pair of lone halves"):
            with self.subTest(s=ascii(s)):
                for obj in ([s], permafrost.freeze([s]), {s: 1}, permafrost.freeze({s: 1})):
                    out = permafrost.dumps(obj)
                    out.decode("utf-8")  # valid UTF-8
                    self.assertIn(b"\\ud", out)
                back = json.loads(permafrost.dumps([s]))[0]
                if "\ud83d\ude00" not in s:  # a high then low surrogate read back as one char
                    self.assertEqual(back, s)
        self.assertEqual(permafrost.dumps(["a\ud800b"]), b'["a\\ud800b"]')

    def test_subclasses_as_json_takes_them(self):
        class Color(enum.IntEnum):
            RED = 1

        class Name(str):
            def __str__(self):
                return "not this"

        class Items(dict):
            def items(self):
                return [("only", "this")]

        class Backwards(list):
            def __iter__(self):
                return reversed(list(super().__iter__()))

        class Third(float):
            def __repr__(self):
                return "not this"

        value = {"ordered": collections.OrderedDict([("b", 1), ("a", 2)]), "color": Color.RED,
                 Color.RED: Name("name"), "items": Items(a=1), "back": Backwards([1, 2, 3]),
                 "third": Third(1 / 3), "named": collections.namedtuple("P", "x y")(1, 2)}
        self.assertEqual(permafrost.dumps(value), reference(value))
        del value[Color.RED]  # sorting needs keys of one kind
        self.assertEqual(permafrost.dumps(value, sort_keys=True), reference(value, sort_keys=True))

    def test_views_nested_in_ordinary_values(self):
        rec = permafrost.freeze({"name": "ada", "tags": ["x"]})
        image_dir = tempfile.mkdtemp()
        path = os.path.join(image_dir, "t.pfimg")
        rec.save(path)
        opened = permafrost.open(path)
        value = [rec, {"r": rec["tags"], "o": opened}, (rec, opened["tags"]), {"k": [rec]}]
        thawed = [rec.thaw(), {"r": ["x"], "o": opened.thaw()}, (rec.thaw(), ["x"]),
                  {"k": [rec.thaw()]}]
        for kwargs in ({}, {"indent": 2}, {"sort_keys": True}):
            self.assertEqual(permafrost.dumps(value, **kwargs), reference(thawed, **kwargs))

    def test_frozen_values_are_written_without_python_objects(self):
        # tracemalloc sees every Python object made; the writer's own buffer is plain malloc.
        # Writing a frozen table makes the result bytes and nothing per value, where thawing
        # (json_default's way) makes every dict, str and float again.
        import tracemalloc
        rows = permafrost.freeze({f"key:{i}": {"name": f"name-{i}", "score": i / 3, "tags": [i]}
                                  for i in range(5000)})
        tracemalloc.start()
        try:
            out = permafrost.dumps(rows)
            del out
            tracemalloc.reset_peak()
            out = permafrost.dumps(rows)
            _, dumps_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            rows.thaw()
            _, thaw_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(dumps_peak, len(out) + 64 * 1024)
        self.assertGreater(thaw_peak, 4 * len(out))

    def test_root_scalars_and_empty_containers(self):
        for value in (1, "s", None, 1.5, [], {}, ()):
            self.assertEqual(permafrost.dumps(value), reference(value))
        for value in ([], {}):
            self.assertEqual(permafrost.dumps(permafrost.freeze(value)), reference(value))


class Errors(unittest.TestCase):
    def test_unsupported_type_names_it_and_its_path(self):
        value = {"users": [{}, {"created": 1 + 2j}]}
        with self.assertRaises(TypeError) as cm:
            permafrost.dumps(value)
        self.assertEqual(str(cm.exception), "Object of type complex is not JSON serializable "
                                            '(at obj["users"][1]["created"])')
        frozen = permafrost.freeze({"a": [1, {"b": {1, 2}}], "c": b"x"})
        with self.assertRaisesRegex(TypeError, r'type set is not JSON serializable '
                                               r'\(at obj\["a"\]\[1\]\["b"\]\)'):
            permafrost.dumps(frozen)
        with self.assertRaisesRegex(TypeError, r'type bytes is not JSON serializable '
                                               r'\(at obj\["c"\]\)'):
            permafrost.dumps(permafrost.freeze({"c": b"x"}))

    def test_a_deep_path_shows_its_first_and_last_steps(self):
        value = {"k": {1}}
        for _ in range(500):
            value = [value]
        for obj in (value, permafrost.freeze(value)):
            with self.subTest(frozen=obj is not value), self.assertRaises(TypeError) as cm:
                permafrost.dumps(obj)
            self.assertEqual(str(cm.exception), "Object of type set is not JSON serializable "
                             "(at obj" + "[0]" * 8 + "...(485 more)..." + "[0]" * 7 + '["k"])')

    def test_an_error_under_a_lone_surrogate_key_is_raised_not_lost(self):
        # Naming the key in the path encoded it as UTF-8, which failed and cleared the error:
        # SystemError "returned NULL without setting an exception".
        tuple_key = {"\ud800": {(1,): "x"}}
        for obj in (tuple_key, permafrost.freeze(tuple_key), {"a\udc80": [1 + 2j]}):
            with self.subTest(obj=obj), self.assertRaises(TypeError) as cm:
                permafrost.dumps(obj)
            self.assertIn("(at obj['", str(cm.exception))
        frozen = permafrost.freeze({"\ud800": {"b": math.nan}})
        with self.assertRaisesRegex(ValueError, "Out of range float"):
            json.dumps(frozen, cls=permafrost.JSONEncoder, allow_nan=False)

    def test_default_sees_the_thawed_value(self):
        seen = []

        def default(o):
            seen.append(type(o))
            return sorted(o) if isinstance(o, (set, frozenset)) else o.decode()

        value = {"s": {3, 1, 2}, "f": frozenset({"b", "a"}), "b": b"bytes"}
        want = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))
        self.assertEqual(permafrost.dumps(permafrost.freeze(value), default=default),
                         want.encode())
        self.assertEqual(seen[-3:], [set, frozenset, bytes])

    def test_default_may_return_views_and_raise(self):
        rec = permafrost.freeze({"x": [1]})
        self.assertEqual(permafrost.dumps([object()], default=lambda o: rec), b'[{"x":[1]}]')

        def refuse(o):
            raise KeyError("mine")

        with self.assertRaises(KeyError):
            permafrost.dumps([object()], default=refuse)

    def test_a_default_that_empties_the_items_list_of_a_dict_subclass(self):
        # items() may return a list it keeps; a default() that emptied it freed the pair being
        # written, and the error path read its key freed (SIGSEGV).
        pairs = []

        class D(dict):
            def items(self):
                return pairs

        def default(o):
            pairs.clear()
            raise TypeError("refused")

        for i in range(50):
            pairs[:] = [("key-%d-" % i + "x" * 40, object())]
            with self.assertRaisesRegex(TypeError, "refused"):
                permafrost.dumps(D(a=1), default=default)
            pairs[:] = [("key-%d-" % i + "x" * 40, object())]
            with self.assertRaisesRegex(TypeError, "refused"):
                json.dumps(D(a=1), cls=permafrost.JSONEncoder, default=default)

    def test_a_graph_frozen_where_a_closed_one_was_gets_its_own_keys(self):
        # The rendered keys of a records' shared keys table were cached by address for the whole
        # call: a default() that closed a graph already written and froze another at the same
        # address wrote the first one's key names (and with more keys, read past their text).
        def records(*names):
            return {r: {n: i for i, n in enumerate(names)} for r in ("x", "y", "z")}

        first = permafrost.freeze(records("name", "age"))
        address = permafrost._core._range(first)[0]
        reused = []

        def default(o):
            first.close()
            for names in [("NAME", "AGE")] * 300 + [None]:
                if names is None:
                    self.skipTest("no graph was frozen at the closed one's address in 300 tries")
                again = permafrost.freeze(records(*names))
                if permafrost._core._range(again)[0] == address:
                    reused.append(again)
                    return again
                again.close()

        out = permafrost.dumps([first, object()], default=default)
        self.assertEqual(json.loads(out)[1], records("NAME", "AGE"))
        self.assertEqual(json.loads(out)[0], records("name", "age"))

    def test_circular_references(self):
        loop = []
        loop.append(loop)
        d = {}
        d["self"] = [d]
        for value in (loop, d):
            with self.assertRaises(ValueError) as want:
                json.dumps(value)
            with self.assertRaises(ValueError) as got:
                permafrost.dumps(value)
            self.assertIn(str(want.exception), str(got.exception))
        thing = object()
        with self.assertRaisesRegex(ValueError, "Circular reference detected"):
            permafrost.dumps([thing], default=lambda o: [o])

    def test_deep_input_raises_recursion_error_as_json_not_a_crash(self):
        deep, deep_dict = [], {}
        for _ in range(4000):
            deep, deep_dict = [deep], {"k": deep_dict}
        # json's bound is the interpreter's recursion check (Python frames on 3.11, C calls on
        # 3.12+, whose limits differ): dumps raises RecursionError exactly where json does.
        for value in (deep, deep_dict):
            try:
                want = reference(value)
            except RecursionError:
                want = None
            frozen = permafrost.freeze(value)
            for obj, wrapped in ((value, False), (frozen, False), ([frozen], True)):
                if want is None:
                    with self.assertRaisesRegex(RecursionError, "while encoding a JSON object"):
                        permafrost.dumps(obj)
                else:
                    self.assertEqual(permafrost.dumps(obj), b"[" + want + b"]" if wrapped else want)
        deeper = []
        for _ in range(20000):
            deeper = [deeper]
        with self.assertRaises(RecursionError):
            permafrost.dumps(deeper)
        ok = []
        for _ in range(500):
            ok = [ok]
        self.assertEqual(permafrost.dumps(ok), json.dumps(ok).encode())
        self.assertEqual(permafrost.dumps(permafrost.freeze(ok)), json.dumps(ok).encode())

    def test_a_raised_recursion_limit_still_stops_before_the_stack_ends(self):
        # 3.11 counts Python frames only: the writer's own bound (10,000 levels) stops it;
        # 3.12+ count C calls against a limit of their own.
        deep = []
        for _ in range(12000):
            deep = [deep]
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(100000)
        try:
            with self.assertRaisesRegex(RecursionError, "10000 levels|while encoding a JSON"):
                permafrost.dumps(deep)
        finally:
            sys.setrecursionlimit(old)

    def test_user_code_changing_the_input_does_not_crash(self):
        # default() empties the list and dict being written: the writer holds what it reads.
        target = [object(), "a", {"k": [object()]}]
        inner = target[2]

        def wreck(o):
            target.clear()
            inner.clear()
            return "x"

        permafrost.dumps(target, default=wreck)  # whatever the text, no crash
        table = {"a": object(), "b": 1, "c": 2}

        def shrink(o):
            table.clear()
            return None

        permafrost.dumps(table, default=shrink)

    def test_a_damaged_str_in_an_image_raises_not_crashes(self):
        # open() refuses a str node holding bytes that are not UTF-8 (test_image), but an image
        # another process sent is mapped without that check (a trusted pickle, as here): reading
        # the str raises; so does dumps.
        import ctypes
        frozen = permafrost.freeze({"s": ["h\u00e9llo, " + "." * 250 + " long enough for its own node"]})
        address, size = permafrost._core._range(frozen)
        data = ctypes.string_at(address, size)
        at = data.index("h\u00e9llo".encode())
        for damage in (b"\xc3A", b"\xff\xfe", b"\xc3"):  # bad continuation, bad lead, cut short
            with self.subTest(damage=damage):
                bad = data[:at + 1] + damage + data[at + 1 + len(damage):]
                if damage == b"\xc3":  # the str's last byte: a lead byte with nothing after it
                    end = data.index(b"its own node") + len(b"its own node")
                    bad = data[:end - 1] + damage + data[end:]
                path = os.path.join(tempfile.mkdtemp(), "damaged.pfimg")
                permafrost._core._save_bytes(bad, path)
                fd = os.open(path, os.O_RDONLY)
                try:
                    store = permafrost._core._open_store_fd(fd, path)
                finally:
                    os.close(fd)
                opened = permafrost._core._store_view(store, 0)
                with self.assertRaises(UnicodeDecodeError):
                    opened["s"][0]
                for kwargs in ({}, {"ensure_ascii": True}):
                    with self.assertRaisesRegex(ValueError, "not valid UTF-8"):
                        permafrost._core._encode(opened, None, False, None,
                                                 kwargs.get("ensure_ascii", False), ",", ":",
                                                 True, False, True, False)

    def test_a_runaway_document_can_be_interrupted(self):
        # Shared nodes are written at each reference: 2^40 leaves in each document here, far
        # more than the 50 ms before the alarm. freeze() walks every reference, so the frozen
        # one holds 2^16 leaves under ordinary lists that repeat it: nearly every container the
        # writer enters is frozen. A signal handler's exception stops the writer.
        import signal

        def doubled(node, times):
            for _ in range(times):
                node = [node, node]
            return node

        ordinary = doubled([1], 40)
        frozen = doubled(permafrost.freeze(doubled([1], 16)), 24)

        class Stop(Exception):
            pass

        def stop(signum, frame):
            raise Stop

        old = signal.signal(signal.SIGALRM, stop)
        try:
            for name, value in (("ordinary", ordinary), ("frozen", frozen)):
                with self.subTest(name):
                    signal.setitimer(signal.ITIMER_REAL, 0.05)
                    with self.assertRaises(Stop):
                        permafrost.dumps(value)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    def test_bad_arguments(self):
        with self.assertRaises(TypeError):
            permafrost.dumps()
        with self.assertRaises(TypeError):
            permafrost.dumps(1, 2)
        self.assertEqual(permafrost.dumps(obj=[1]), b"[1]")  # as json.dumps(obj=...)
        with self.assertRaisesRegex(TypeError, "multiple values for argument 'obj'"):
            permafrost.dumps([1], obj=[2])
        with self.assertRaisesRegex(TypeError, "missing 1 required argument: 'obj'"):
            permafrost.dumps(indent=2)
        with self.assertRaises(TypeError):
            permafrost.dumps(1, ensure_ascii=True)
        with self.assertRaisesRegex(TypeError, "indent must be"):
            permafrost.dumps([1], indent=1.5)

    def test_a_default_that_is_not_callable_fails_only_when_called(self):
        # As json.dumps: accepted, and json's own TypeError once a value needs it.
        self.assertEqual(permafrost.dumps([1], default=5), json.dumps([1], default=5).encode())
        for dumps in (json.dumps, permafrost.dumps):
            with self.subTest(dumps.__module__), \
                    self.assertRaisesRegex(TypeError, "^'int' object is not callable$"):
                dumps([object()], default=5)


class Encoder(unittest.TestCase):
    value = {"b": [1, 2.5, None, "é"], "a": {"x": (True, False)}, 3: "three", "n": math.nan}

    def test_json_dumps_with_cls_matches_json_on_the_thawed_value(self):
        frozen = permafrost.freeze(self.value)
        for kwargs in ({}, {"indent": 2}, {"sort_keys": False, "ensure_ascii": False},
                       {"separators": (";", "=")}, {"indent": "--", "ensure_ascii": True}):
            with self.subTest(**kwargs):
                self.assertEqual(json.dumps(frozen, cls=permafrost.JSONEncoder, **kwargs),
                                 json.dumps(self.value, **kwargs))

    def test_options(self):
        frozen = permafrost.freeze({"k": math.inf, (1, 2): "tuple key", "z": 1})
        with self.assertRaises(ValueError):
            json.dumps(frozen, cls=permafrost.JSONEncoder, allow_nan=False)
        self.assertEqual(json.dumps(frozen, cls=permafrost.JSONEncoder, skipkeys=True),
                         json.dumps({"k": math.inf, (1, 2): "x", "z": 1}, skipkeys=True))
        with self.assertRaises(TypeError):
            json.dumps(frozen, cls=permafrost.JSONEncoder)

    def test_ensure_ascii_escapes_del_as_json_does(self):
        # json's ASCII range is ' ' to '~': DEL (0x7f) is written \u007f, in str keys too.
        value = {"a\x7fb": ["\x7f", "\x00\x1f\x7f\x80é", "x\x7f" * 40]}
        frozen = permafrost.freeze(value)
        for obj in (frozen, value):
            with self.subTest(frozen=obj is frozen):
                self.assertEqual(json.dumps(obj, cls=permafrost.JSONEncoder), json.dumps(value))
                self.assertEqual(json.dumps(obj, cls=permafrost.JSONEncoder, ensure_ascii=False),
                                 json.dumps(value, ensure_ascii=False))

    def test_a_lone_surrogate_is_written_as_json_writes_it(self):
        # json leaves it raw in the str with ensure_ascii=False (it escaped it here, as the
        # bytes of dumps() must).
        for s in ("a\ud800b", "\udfff", "\ud83d\ude00 halves", "x" * 20 + "\udc80"):
            value = {s: [s, {"k": s}]}
            for obj in (value, permafrost.freeze(value)):
                for ensure_ascii in (False, True):
                    with self.subTest(s=ascii(s), frozen=obj is not value, ascii=ensure_ascii):
                        self.assertEqual(json.dumps(obj, cls=permafrost.JSONEncoder,
                                                    ensure_ascii=ensure_ascii),
                                         json.dumps(value, ensure_ascii=ensure_ascii))

    def test_json_dump_to_a_file(self):
        out = io.StringIO()
        json.dump(permafrost.freeze(self.value), out, cls=permafrost.JSONEncoder, indent=1)
        self.assertEqual(out.getvalue(), json.dumps(self.value, indent=1))

    def test_subclass_default_and_iterencode(self):
        import datetime

        class Dates(permafrost.JSONEncoder):
            def default(self, o):
                if isinstance(o, datetime.date):
                    return o.isoformat()
                return super().default(o)

        value = {"when": datetime.date(2026, 12, 3), "rec": permafrost.freeze({"a": [1]})}
        self.assertEqual(json.dumps(value, cls=Dates), '{"when": "2026-12-03", "rec": {"a": [1]}}')

        class Chunks(permafrost.JSONEncoder):
            def iterencode(self, o, _one_shot=False):
                return json.JSONEncoder.iterencode(self, o, _one_shot)

        self.assertEqual(json.dumps(value["rec"], cls=Chunks), '{"a": [1]}')

    def test_json_default_is_kept(self):
        frozen = permafrost.freeze(self.value)
        self.assertEqual(json.dumps(frozen, default=permafrost.json_default), json.dumps(self.value))


@unittest.skipUnless(flask, f"Flask is not importable by {sys.executable} (Debian's python3-flask "
                            "serves /usr/bin/python3)")
class FlaskProvider(unittest.TestCase):
    record = {"name": "ada", "id": 7, "score": 0.5, "tags": ["x", "é"], "meta": {"b": 1, "a": None}}

    def make_app(self, **config):
        app = flask.Flask("permafrost_json_test")
        app.config.update(config)
        app.json = JSONProvider(app)
        frozen = permafrost.freeze({"rec": self.record, "rows": [self.record, self.record]})
        plain = flask.Flask("permafrost_json_plain")  # Flask's own provider, for the same bytes
        plain.config.update(config)

        @app.get("/jsonify")
        def jsonify_view():
            return flask.jsonify(frozen["rec"])

        @app.get("/return")
        def return_view():
            return frozen["rec"]

        @app.get("/list")
        def list_view():
            return frozen["rows"]

        @app.get("/status")
        def status_view():
            return frozen["rec"], 201, {"X-Frozen": "yes"}

        return app, plain

    def expected(self, plain, value):
        with plain.test_request_context():
            return plain.json.response(value).get_data()

    def test_jsonify_and_return_give_flask_s_own_bytes(self):
        app, plain = self.make_app()
        client = app.test_client()
        for url, value in (("/jsonify", self.record), ("/return", self.record),
                           ("/list", [self.record, self.record])):
            with self.subTest(url=url):
                response = client.get(url)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.mimetype, "application/json")
                self.assertEqual(response.get_data(), self.expected(plain, value))
        response = client.get("/status")
        self.assertEqual((response.status_code, response.headers["X-Frozen"]), (201, "yes"))
        self.assertEqual(response.get_json(), self.record)

    def test_provider_options(self):
        app, plain = self.make_app()
        for attr, value in (("sort_keys", False), ("ensure_ascii", False), ("compact", False)):
            with self.subTest(**{attr: value}):
                setattr(app.json, attr, value)
                setattr(plain.json, attr, value)
                self.assertEqual(app.test_client().get("/return").get_data(),
                                 self.expected(plain, self.record))

    def test_a_lone_surrogate_is_raw_in_dumps_and_escaped_in_a_body(self):
        app, plain = self.make_app()
        value = {"s": "a\ud800b"}
        app.json.ensure_ascii = plain.json.ensure_ascii = False
        with app.app_context(), plain.app_context():
            self.assertEqual(app.json.dumps(permafrost.freeze(value)), plain.json.dumps(value))
            body = app.json.response(permafrost.freeze(value)).get_data()
        self.assertEqual(body, b'{"s":"a\\ud800b"}\n')  # UTF-8 cannot hold it: escaped

    def test_debug_mode_indents(self):
        app, plain = self.make_app()
        app.debug = plain.debug = True
        body = app.test_client().get("/return").get_data()
        self.assertIn(b'\n  "id": 7', body)
        self.assertEqual(body, self.expected(plain, self.record))

    def test_tojson_filter_and_flask_default(self):
        import datetime
        import uuid
        app, plain = self.make_app()
        template = "<script>var rec = {{ rec|tojson }};</script>"
        with app.app_context():
            got = flask.render_template_string(template, rec=permafrost.freeze(self.record))
        with plain.app_context():
            self.assertEqual(got, flask.render_template_string(template, rec=self.record))
        value = {"when": datetime.date(2026, 12, 3), "id": uuid.UUID(int=1),
                 "rec": permafrost.freeze(self.record)}
        with app.app_context():
            self.assertEqual(app.json.dumps(value),
                             plain.json.dumps({**value, "rec": self.record}))
            # Frozen dates and UUIDs go through Flask's default too: the dict's text.
            frozen = permafrost.freeze({"when": value["when"], "id": value["id"]})
            self.assertEqual(app.json.dumps(frozen), plain.json.dumps(frozen.thaw()))

    def test_control_and_del_characters_give_flask_s_own_bytes(self):
        app, plain = self.make_app()
        value = {"note": "tab\there, del\x7f, nul\x00, é"}
        frozen = permafrost.freeze(value)
        with app.test_request_context():
            self.assertEqual(app.json.response(frozen).get_data(), self.expected(plain, value))

    def test_a_view_stored_in_the_session_reads_back_as_its_dict(self):
        # Flask's session serializer tags tuples, bytes and datetimes inside dicts and lists; a
        # view went to app.json untagged: its tuples came back as lists, its datetimes as strs,
        # and one holding bytes failed the response (bytes is not JSON serializable).
        import datetime
        value = {"pair": (1, "a"), "raw": b"\x00\xff", "when": datetime.datetime(2026, 12, 4, 5, 6),
                 "rows": [{"t": (2, 3)}]}
        app, _ = self.make_app(SECRET_KEY="test")

        @app.get("/store")
        def store():
            flask.session["dict"] = value
            flask.session["rec"] = permafrost.freeze(value)
            flask.session["rows"] = permafrost.freeze(value)["rows"]
            return "stored"

        @app.get("/read")
        def read():  # what the session gives back for the dict (its keys sorted, dates in UTC)
            return [repr((flask.session["dict"], flask.session["dict"]["rows"])),
                    repr((flask.session["rec"], flask.session["rows"]))]

        client = app.test_client()
        self.assertEqual(client.get("/store").status_code, 200)
        dict_text, views_text = client.get("/read").get_json()
        self.assertEqual(views_text, dict_text)

    @unittest.skipUnless(hasattr(flask.Flask, "json_encoder") if flask else False,
                         "app.json_encoder was removed in Flask 2.3")
    def test_a_legacy_json_encoder_of_the_app_or_a_blueprint_is_used_as_flask_uses_it(self):
        # Flask 2.2's deprecated json_encoder: every response holding a view was a 500 (the
        # user's encoder knew no views), and a blueprint's encoder was ignored.
        import datetime
        import warnings

        class Dates(flask.json.JSONEncoder):
            def default(self, o):
                if isinstance(o, datetime.date):
                    return o.isoformat()
                return super().default(o)

        class Plain(flask.json.JSONEncoder):
            pass

        when = datetime.date(2020, 1, 2)
        frozen = permafrost.freeze({"rec": self.record})
        bodies = {}
        for provider in (flask.json.provider.DefaultJSONProvider, JSONProvider):
            app = flask.Flask("permafrost_legacy_" + provider.__name__)
            app.json = provider(app)
            blueprint = flask.Blueprint("bp", "permafrost_legacy_bp")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                app.json_encoder = Plain
                blueprint.json_encoder = Dates

            @app.get("/app")
            def from_app():
                return flask.jsonify({"when": when, "rec": self.record})

            @blueprint.get("/blueprint")
            def from_blueprint():
                return flask.jsonify({"when": when, "rec": self.record})

            app.register_blueprint(blueprint)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                client = app.test_client()
                bodies[provider] = [client.get(url).get_data() for url in ("/app", "/blueprint")]
                if provider is JSONProvider:
                    app.view_functions["from_app"] = lambda: frozen["rec"]
                    app.view_functions["bp.from_blueprint"] = lambda: flask.jsonify(
                        {"when": when, "rec": frozen["rec"]})
                    views = [client.get(url) for url in ("/app", "/blueprint")]
        self.assertEqual(bodies[JSONProvider], bodies[flask.json.provider.DefaultJSONProvider])
        self.assertIn(b'"when":"2020-01-02"', bodies[JSONProvider][1])
        self.assertEqual([r.status_code for r in views], [200, 200])
        self.assertEqual(views[0].get_json(), self.record)
        self.assertEqual(views[1].get_data(), bodies[JSONProvider][1])

    def test_json_provider_class_on_a_flask_subclass(self):
        class App(flask.Flask):
            json_provider_class = JSONProvider

        app = App("permafrost_json_subclass")
        rec = permafrost.freeze(self.record)
        app.add_url_rule("/r", "r", lambda: rec)
        self.assertEqual(app.test_client().get("/r").get_json(), self.record)


if __name__ == "__main__":
    unittest.main()
