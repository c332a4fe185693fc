"""Values beyond JSON's kinds: datetime (naive and aware), date, time, timedelta, Decimal, UUID
and Enum members (frozen as their value) through freeze(), views, thaw(), images, dumps() and
permafrost.JSONEncoder; lookups with them as keys."""
import datetime as dt
import decimal
import enum
import json
import os
import struct
import tempfile
import unittest
import uuid

import permafrost

try:
    import zoneinfo
    PARIS = zoneinfo.ZoneInfo("Europe/Paris")
except Exception:  # no tzdata on the machine
    PARIS = None

UTC = dt.timezone.utc
MINUS_0530 = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
ODD_OFFSET = dt.timezone(dt.timedelta(hours=2, seconds=7, microseconds=9))


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, [2, 3])


class Level(enum.IntEnum):
    HIGH = 3


class MyDate(dt.date):
    pass


class MyDecimal(decimal.Decimal):
    def __str__(self):
        return "not me"


SAMPLES = [
    dt.datetime(2026, 12, 3, 14, 5, 6, 123),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    dt.datetime(2024, 2, 29, 12, tzinfo=UTC),
    dt.datetime(2020, 1, 1, tzinfo=MINUS_0530),
    dt.datetime(2020, 1, 1, tzinfo=ODD_OFFSET),
    dt.datetime(2021, 11, 7, 1, 30, fold=1),
    dt.date(2026, 2, 28),
    dt.date(1, 1, 1),
    dt.time(),
    dt.time(23, 59, 59, 999999),
    dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=3))),
    dt.timedelta(),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    dt.timedelta(days=999999999, seconds=86399, microseconds=999999),
    dt.timedelta.min,
    dt.timedelta(hours=-1),
    decimal.Decimal("1.50"),
    decimal.Decimal("-0"),
    decimal.Decimal("1E+5"),
    decimal.Decimal("-0.000123"),
    decimal.Decimal("123456789012345678901234567890.123456789"),
    decimal.Decimal("Infinity"),
    decimal.Decimal("-sNaN12"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    uuid.UUID(int=0),
    uuid.UUID(int=2**128 - 1),
]


def duration_iso(td):
    """Django's duration_iso_string (django.utils.duration): the reference for timedelta's text."""
    sign = ""
    if td < dt.timedelta(0):
        sign, td = "-", -td
    minutes, seconds = divmod(td.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    ms = ".{:06d}".format(td.microseconds) if td.microseconds else ""
    return "{}P{}DT{:02d}H{:02d}M{:02d}{}S".format(sign, td.days, hours, minutes, seconds, ms)


def expected_text(v):
    """The JSON string dumps() writes for v."""
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return duration_iso(v)
    return str(v)


def same(a, b):
    """Equal, of the same type, and for aware values the same offset (== alone compares
    instants, and a NaN Decimal equals nothing)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.utcoffset() == b.utcoffset() and a.fold == b.fold and \
            (a.tzinfo is None) == (b.tzinfo is None)
    return a == b


class RoundTrip(unittest.TestCase):
    def test_each_kind_through_a_view_and_thaw(self):
        frozen = permafrost.freeze(SAMPLES)
        thawed = frozen.thaw()
        for i, v in enumerate(SAMPLES):
            with self.subTest(v=v):
                self.assertTrue(same(frozen[i], v), frozen[i])
                self.assertTrue(same(thawed[i], v), thawed[i])
                self.assertTrue(same(permafrost.freeze({"v": v})["v"], v))

    def test_in_a_record_and_a_tuple(self):
        rec = {"id": 1, "created": dt.datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
               "price": decimal.Decimal("9.99"), "ids": (uuid.UUID(int=7), dt.date(2026, 1, 2))}
        frozen = permafrost.freeze(rec)
        self.assertEqual(frozen, rec)
        self.assertEqual(frozen.thaw(), rec)
        self.assertIs(type(frozen["ids"]), tuple)
        self.assertEqual(frozen["ids"][0], uuid.UUID(int=7))

    def test_a_scalar_root_comes_back_as_itself(self):
        for v in SAMPLES:
            with self.subTest(v=v):
                self.assertTrue(same(permafrost.freeze(v), v))

    @unittest.skipUnless(PARIS, "zoneinfo has no Europe/Paris (no tzdata)")
    def test_a_named_zone_is_stored_as_its_offset(self):
        summer = dt.datetime(2026, 7, 1, 12, tzinfo=PARIS)
        winter = dt.datetime(2026, 1, 1, 12, tzinfo=PARIS)
        frozen = permafrost.freeze([summer, winter])
        self.assertEqual(frozen[0].tzinfo, dt.timezone(dt.timedelta(hours=2)))
        self.assertEqual(frozen[1].tzinfo, dt.timezone(dt.timedelta(hours=1)))
        self.assertEqual(frozen[0], summer)  # the same instant
        self.assertEqual(frozen[0].isoformat(), summer.isoformat())
        self.assertEqual(frozen.thaw(), [summer, winter])

    def test_utc_comes_back_as_timezone_utc(self):
        self.assertIs(permafrost.freeze([dt.datetime(2020, 1, 1, tzinfo=UTC)])[0].tzinfo, UTC)

    def test_a_tzinfo_without_an_offset_is_naive(self):
        class NoOffset(dt.tzinfo):
            def utcoffset(self, d):
                return None

        got = permafrost.freeze([dt.datetime(2020, 1, 1, tzinfo=NoOffset())])[0]
        self.assertIsNone(got.tzinfo)
        self.assertEqual(got, dt.datetime(2020, 1, 1))

    def test_a_tzinfo_that_raises_is_an_error(self):
        class Broken(dt.tzinfo):
            def utcoffset(self, d):
                raise LookupError("no such zone")

        with self.assertRaisesRegex(LookupError, "no such zone"):
            permafrost.freeze({"t": dt.datetime(2020, 1, 1, tzinfo=Broken())})

    def test_subclasses_come_back_as_the_base_class(self):
        got = permafrost.freeze([MyDate(2020, 5, 6), MyDecimal("2.5")])
        self.assertIs(type(got[0]), dt.date)
        self.assertEqual(got[0], dt.date(2020, 5, 6))
        self.assertIs(type(got[1]), decimal.Decimal)
        self.assertEqual(str(got[1]), "2.5")  # Decimal's own str, not the subclass's

    def test_enum_members_are_frozen_as_their_value(self):
        frozen = permafrost.freeze({"c": Color.RED, "p": Color.PAIR, "l": Level.HIGH})
        self.assertEqual(frozen["c"], "red")
        self.assertIs(type(frozen["c"]), str)
        self.assertEqual(frozen["p"], (1, [2, 3]))
        self.assertIsInstance(frozen["p"][1], permafrost.FrozenList)
        self.assertEqual(frozen["l"], 3)
        self.assertIs(type(frozen["l"]), int)

    def test_an_enum_key_is_stored_as_an_int_or_str_it_is_else_refused(self):
        frozen = permafrost.freeze({Level.HIGH: "h"})
        self.assertEqual(list(frozen), [3])
        self.assertIs(type(next(iter(frozen))), int)
        self.assertEqual(frozen[Level.HIGH], "h")
        with self.assertRaisesRegex(TypeError, "Color is not supported as a dict key"):
            permafrost.freeze({Color.RED: 1})

    def test_an_enum_member_valued_by_members_is_followed_to_the_end_of_the_chain(self):
        # Regression: each member's value was frozen by recursing, so a member whose value was set
        # to itself, two valued by each other, or a chain of 100,000 members killed the process
        # (SIGSEGV: the C stack). Followed in a loop now: a cycle or a chain over 5000 deep is the
        # TypeError a nested container gets.
        def members(n):
            return list(enum.Enum("Chain", [("M%d" % i, i) for i in range(n)]))

        chain = members(3)
        chain[0]._value_, chain[1]._value_ = chain[1], chain[2]
        self.assertEqual(permafrost.freeze([chain[0]]), [2])
        loop = members(2)
        loop[0]._value_, loop[1]._value_ = loop[1], loop[0]
        selfish = members(1)
        selfish[0]._value_ = selfish[0]
        for build in (permafrost.freeze, permafrost.build_list):
            for member in (loop[0], selfish[0]):
                with self.subTest(build=build.__name__, member=member):
                    with self.assertRaisesRegex(TypeError, r"obj\[0\]: cycle: this Enum member"):
                        build([member])
        long_chain = members(100000)
        for a, b in zip(long_chain, long_chain[1:]):
            a._value_ = b
        with self.assertRaisesRegex(TypeError, "more than 5000 deep"):
            permafrost.freeze({"k": long_chain[0]})

    def test_equal_values_are_stored_once(self):
        one = permafrost.freeze([dt.date(2020, 1, 1)])
        many = permafrost.freeze([dt.date(2020, 1, 1)] * 1000)
        _, one_size = permafrost._core._range(one)
        _, many_size = permafrost._core._range(many)
        self.assertLess(many_size, one_size + 1000 * 8 + 64)  # one word per item, one node

    def test_still_unsupported(self):
        for v in (1j, object(), dt.timezone.utc):
            with self.subTest(v=v), self.assertRaisesRegex(TypeError, "is not supported"):
                permafrost.freeze([v])


class Keys(unittest.TestCase):
    """Dict keys and set elements stay json's kinds and tuples of them: these kinds are refused
    there, and looking one up in a FrozenDict finds nothing (as no stored key equals it)."""

    def test_as_dict_keys_or_set_elements_they_are_refused(self):
        for v in (dt.date(2020, 1, 1), decimal.Decimal("1.5"), uuid.UUID(int=1), Color.RED):
            with self.subTest(v=v):
                with self.assertRaisesRegex(TypeError, r"^obj\.keys\(\)\[0\]: \w+ is not supported "
                                                       r"as a dict key or set element"):
                    permafrost.freeze({v: 1})
                with self.assertRaisesRegex(TypeError, r"^obj\[0\]\{element 0\}: .* as a dict key"):
                    permafrost.freeze([{v}])

    def test_inside_a_tuple_key_the_error_names_them_not_the_tuple(self):
        # It said "unhashable (or nested deeper than 5000) key of type tuple".
        with self.assertRaisesRegex(TypeError, r"^obj\.keys\(\)\[0\]: key of type tuple: "
                                               r"unhashable or unsupported key type: 'datetime\.date'"):
            permafrost.freeze({(1, dt.date(2020, 1, 1)): 1})

    def test_a_frozen_set_of_a_set_as_a_key_is_stored_as_its_frozenset(self):
        # Hashable as a view (it hashes as, and equals, its frozenset); stored as the set it
        # views, it would thaw unhashable: it is stored as the frozenset, in a tuple key too.
        view = permafrost.freeze({1, 2})
        as_frozenset = frozenset({1, 2})
        for key, expected in ((view, as_frozenset), ((view, 3), (as_frozenset, 3)),
                              ((1, (view,)), (1, (as_frozenset,)))):
            for how, make in (("freeze", lambda: permafrost.freeze({key: 1})),
                              ("large dict", lambda: permafrost.freeze(
                                  {**{i: 0 for i in range(5000)}, key: 1})),
                              ("set", lambda: permafrost.freeze({key})),
                              ("build_dict", lambda: permafrost.build_dict([(key, 1)]))):
                with self.subTest(key=expected, how=how):
                    frozen = make()
                    thawed = frozen.thaw()
                    self.assertIn(expected, thawed)  # hashable: a set would raise TypeError
                    self.assertIn(expected, frozen)
                    self.assertIn(key, frozen)
                    stored = [k for k in frozen if not isinstance(k, int)]
                    while stored:  # every set node in the key is a frozenset's
                        k = stored.pop()
                        if isinstance(k, permafrost.FrozenSet):
                            self.assertTrue(k._is_frozenset())
                        if isinstance(k, (tuple, permafrost.FrozenSet)):
                            stored.extend(k)
        # As a dict merges them: the view and its frozenset are one key.
        built = permafrost.build_dict([(view, 1), (as_frozenset, 2)])
        self.assertEqual(built.thaw(), {as_frozenset: 2})

    def test_a_frozen_set_of_a_set_in_a_frozenset_key_says_to_store_a_frozenset(self):
        # Building that frozenset anew would hash its other elements (a subclass's __hash__:
        # user code, which freeze() never runs), so it is refused, saying what to store.
        view = permafrost.freeze({1, 2})
        for key in (frozenset([view]), (1, frozenset([view]))):
            with self.subTest(key=key):
                with self.assertRaisesRegex(TypeError, r"^obj\.keys\(\)\[0\]: key of type "
                                            r"(frozenset|tuple): a FrozenSet frozen from a set "
                                            r"cannot be stored in a frozenset key .* store "
                                            r"frozenset\(view\) instead"):
                    permafrost.freeze({key: 1})
                with self.assertRaisesRegex(TypeError, r"store frozenset\(view\) instead"):
                    permafrost.build_dict([(key, 1)])
        self.assertEqual(permafrost.freeze({frozenset([frozenset(view)]): 1}),
                         {frozenset([frozenset({1, 2})]): 1})

    def test_a_closed_view_as_a_key_is_the_closed_value_error(self):
        # As freezing it as a value: it was a TypeError carrying the ValueError's text.
        graph = permafrost.freeze([frozenset({1, 2})])
        key = graph[0]
        keyed = ({key: 1}, {key}, {(1, key): 2})
        graph.close()
        for obj in keyed:
            with self.subTest(obj=type(obj).__name__):
                with self.assertRaisesRegex(ValueError, "is closed"):
                    permafrost.freeze(obj)

    def test_lookups_with_them_are_absent_or_equal_numbers(self):
        frozen = permafrost.freeze({1: "one", 1.5: "x", "red": "r", "2020-01-01": "d"})
        for k in (dt.date(2020, 1, 1), dt.datetime(2020, 1, 1), dt.time(), dt.timedelta(1),
                  uuid.UUID(int=1), Color.RED, decimal.Decimal("NaN")):
            with self.subTest(k=k):
                self.assertNotIn(k, frozen)
                self.assertIsNone(frozen.get(k))
                with self.assertRaises(KeyError):
                    frozen[k]
        self.assertEqual(frozen[decimal.Decimal(1)], "one")
        self.assertEqual(frozen[decimal.Decimal("1.5")], "x")

    def test_values_of_these_kinds_compare_and_are_found_in_lists(self):
        frozen = permafrost.freeze({"when": dt.date(2020, 1, 1), "all": [uuid.UUID(int=3)]})
        self.assertEqual(frozen, {"when": dt.date(2020, 1, 1), "all": [uuid.UUID(int=3)]})
        self.assertIn(uuid.UUID(int=3), frozen["all"])
        self.assertIn(dt.date(2020, 1, 1), frozen.values())


class Json(unittest.TestCase):
    def test_each_kind_as_a_json_string(self):
        for v in SAMPLES:
            with self.subTest(v=v):
                want = json.dumps(expected_text(v)).encode()
                self.assertEqual(permafrost.dumps(v), want)
                self.assertEqual(permafrost.dumps(permafrost.freeze([v])), b"[" + want + b"]")

    def test_frozen_and_ordinary_give_the_same_text(self):
        rec = {"s": SAMPLES, "c": Color.PAIR, "l": Level.HIGH}
        text = permafrost.dumps(rec, indent=2, sort_keys=True)
        self.assertEqual(permafrost.dumps(permafrost.freeze(rec), indent=2, sort_keys=True), text)
        self.assertEqual(json.loads(text)["c"], [1, [2, 3]])
        self.assertEqual(json.dumps(rec, cls=permafrost.JSONEncoder, ensure_ascii=False,
                                    separators=(",", ":")).encode(), permafrost.dumps(rec))

    def test_json_encoder_default_gives_the_same_text(self):
        enc = permafrost.JSONEncoder()
        for v in SAMPLES:
            with self.subTest(v=v):
                self.assertEqual(enc.default(v), expected_text(v))
        self.assertEqual(enc.default(Color.PAIR), (1, [2, 3]))
        with self.assertRaisesRegex(TypeError, "Object of type complex is not JSON serializable"):
            enc.default(1j)

    def test_json_default_gives_the_same_text(self):
        rec = {"s": SAMPLES, "c": Color.PAIR}
        want = json.dumps(json.loads(permafrost.dumps(rec)))
        self.assertEqual(json.dumps(rec, default=permafrost.json_default), want)
        self.assertEqual(json.dumps(permafrost.freeze(rec), default=permafrost.json_default), want)
        with self.assertRaisesRegex(TypeError, "Object of type FrozenSet is not JSON serializable"):
            permafrost.json_default(permafrost.freeze({1}))

    def test_a_subclass_default_can_defer_to_ours(self):
        class Enc(permafrost.JSONEncoder):
            def default(self, o):
                if isinstance(o, dt.date):
                    return "date!"
                return super().default(o)

        rec = {"d": dt.date(2020, 1, 1), "u": uuid.UUID(int=5)}
        want = '{"d": "date!", "u": "%s"}' % uuid.UUID(int=5)
        self.assertEqual(json.dumps(rec, cls=Enc), want)
        self.assertEqual(json.dumps(permafrost.freeze(rec), cls=Enc), want)

    def test_a_given_default_decides_for_frozen_values_too(self):
        # The Flask provider passes Flask's default (RFC 822 dates): a frozen record then gives
        # the text the dict it was frozen from gives.
        rec = {"d": dt.datetime(2020, 1, 1, tzinfo=UTC), "n": decimal.Decimal("1.5")}

        def default(o):
            return "<%s>" % type(o).__name__

        want = b'{"d":"<datetime>","n":"<Decimal>"}'
        self.assertEqual(permafrost.dumps(rec, default=default), want)
        self.assertEqual(permafrost.dumps(permafrost.freeze(rec), default=default), want)


class Images(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "values.pfimg")

    def tearDown(self):
        self.dir.cleanup()
        permafrost._stores.forget()

    def test_save_and_open(self):
        permafrost.freeze({"v": SAMPLES, "c": Color.RED}).save(self.path)
        permafrost._stores.forget()
        opened = permafrost.open(self.path)
        for got, v in zip(opened["v"], SAMPLES):
            with self.subTest(v=v):
                self.assertTrue(same(got, v), got)
        self.assertEqual(opened["c"], "red")
        self.assertEqual(permafrost.dumps(opened), permafrost.dumps({"v": SAMPLES, "c": "red"}))

    # Crafted images: a node of these kinds whose bytes no value has is refused with OSError.
    KIND_DATETIME, KIND_DATE, KIND_TIMEDELTA, KIND_DECIMAL = 12, 13, 15, 16

    def crafted(self, kind, payload, flags=0):
        body = struct.pack("<BBHI", kind, flags, 0, len(payload)) + payload
        body += b"\0" * (-len(body) % 8)
        return b"pfpy\0v1\0" + struct.pack("<Q", 16) + body

    def refused(self, data, why):
        permafrost._core._save_bytes(data, self.path)
        permafrost._stores.forget()
        with self.assertRaises(OSError) as cm:
            permafrost.open(self.path)
        self.assertIn(why, str(cm.exception))

    def test_a_well_formed_crafted_node_opens(self):
        permafrost._core._save_bytes(self.crafted(self.KIND_DATE, struct.pack("<HBB", 2024, 2, 29)),
                                     self.path)
        self.assertEqual(permafrost.open(self.path), dt.date(2024, 2, 29))

    def test_a_date_out_of_range_is_refused(self):
        for y, m, d in ((2023, 2, 29), (0, 1, 1), (2020, 13, 1), (2020, 4, 31)):
            with self.subTest(date=(y, m, d)):
                self.refused(self.crafted(self.KIND_DATE, struct.pack("<HBB", y, m, d)),
                             "out of range")

    def test_a_naive_datetime_with_an_offset_is_refused(self):
        payload = struct.pack("<HBBBBBBIIq", 2020, 1, 1, 0, 0, 0, 0, 0, 0, 3600 * 10**6)
        self.refused(self.crafted(self.KIND_DATETIME, payload), "out of range")
        aware_too_far = struct.pack("<HBBBBBBIIq", 2020, 1, 1, 0, 0, 0, 0, 0, 0, 86400 * 10**6)
        self.refused(self.crafted(self.KIND_DATETIME, aware_too_far, flags=1), "out of range")

    def test_a_wrong_size_or_unknown_flag_is_refused(self):
        self.refused(self.crafted(self.KIND_TIMEDELTA, b"\0" * 8), "wrong size")
        self.refused(self.crafted(self.KIND_DATE, struct.pack("<HBB", 2020, 1, 1), flags=1),
                     "unknown flags")

    def test_a_decimal_that_is_not_a_number_is_refused(self):
        for text in (b"", b"1.", b"1e5", b'1"', b"--1", b"NaNx", b"1E+"):
            with self.subTest(text=text):
                self.refused(self.crafted(self.KIND_DECIMAL, text), "not a number")


if __name__ == "__main__":
    unittest.main()
