"""Tables of records: a dict of at least 8 records with one shape (the same str keys in the same
order) is frozen by column (python/src/format.hpp, "Tables of records"), and every reader sees
it, and each of its rows, as the dict it was frozen from."""
import collections.abc
import ctypes
import datetime
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import unittest

import permafrost

KIND_DICT, KIND_DICT16, KIND_TABLE = 6, 11, 18
WORD64, WORD32, FLOAT32 = 0, 1, 2


def graph_bytes(view):
    address, size = permafrost._core._range(view)
    return ctypes.string_at(address, size)


def root_offset(data):
    return struct.unpack_from("<Q", data, 8)[0]


def kind_at(data, off):
    return data[off]


def column_types(data, off):
    """The column types of the table node at `off`."""
    assert data[off] == KIND_TABLE
    columns = struct.unpack_from("<H", data, off + 2)[0]
    return [struct.unpack_from("<Q", data, off + 32 + 8 * j)[0] & 7 for j in range(columns)]


def field_at(data, off, row, column):
    """Where field `column` of row `row` of the table node at `off` lies."""
    row_bytes, rows_start = struct.unpack_from("<II", data, off + 24)
    d = struct.unpack_from("<Q", data, off + 32 + 8 * column)[0]
    return off + rows_start + row_bytes * row + (d >> 3)


def records(n=20, make=None):
    make = make or (lambda i: {"name": "name-%d" % (i * 100), "id": i, "score": i * 0.25,
                               "tags": ["t%d" % (i % 3), i % 5]})
    return {"k%d" % i: make(i) for i in range(n)}


class Layout(unittest.TestCase):
    """Which dicts become tables, and which column types they get."""

    def frozen_root(self, value):
        frozen = permafrost.freeze(value)
        data = graph_bytes(frozen)
        return frozen, data, root_offset(data)

    def test_a_dict_of_records_is_a_table_with_narrow_columns(self):
        frozen, data, root = self.frozen_root(records())
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        # name: str nodes (and short strs stored as nodes), id: small ints, score: singles,
        # tags: list nodes.
        self.assertEqual(column_types(data, root), [WORD32, WORD32, FLOAT32, WORD32])
        self.assertEqual(frozen, records())

    def test_each_column_type_reads_back_exactly(self):
        def make(i):
            # double: a boxed float, referenced by offset; short7: 7-byte short strs, too many
            # to store as nodes instead.
            return {"small": i - 10, "const": [None, True, False][i % 3], "s3": "ab%d" % (i % 9),
                    "single": i * 1.5 - 7, "big": (1 << 40) + i, "double": i + 0.1,
                    "short7": "abcde%02d" % i, "neg": -(1 << 27) + i, "inf": float("-inf")}
        source = records(30, make)
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(column_types(data, root),
                         [WORD32, WORD32, WORD32, FLOAT32, WORD64, WORD32, WORD64, WORD32, FLOAT32])
        self.assertEqual(frozen.thaw(), source)
        for k, rec in source.items():
            self.assertEqual(dict(frozen[k]), rec)

    def test_a_column_of_mixed_types_falls_back_to_full_words(self):
        source = records(10, lambda i: {"v": [i, 0.1 * i, "x" * i, None][i % 4]})
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(column_types(data, root), [WORD64])
        self.assertEqual(frozen.thaw(), source)

    def test_a_float_that_is_no_single_is_not_narrowed(self):
        source = records(10, lambda i: {"v": 1.0 + 2.0 ** -40 * (i + 1)})
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(column_types(data, root), [WORD64])
        self.assertEqual(frozen.thaw(), source)

    def test_a_few_short_strs_in_a_column_of_str_nodes_become_nodes(self):
        source = records(200, lambda i: {"name": "name-%d" % (i * 10)})  # 10 are short strs
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(column_types(data, root), [WORD32])
        self.assertEqual(frozen["k3"]["name"], "name-30")
        self.assertEqual(frozen.thaw(), source)
        source = records(20, lambda i: {"name": "name-%d" % (i * 10)})  # 10 of 20: too many
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(column_types(data, root), [WORD64])
        self.assertEqual(frozen.thaw(), source)

    def test_one_record_of_another_shape_makes_a_plain_dict(self):
        for odd in ({"id": 1}, {"id": 1, "name": "x", "score": 0.5, "tags": [], "more": 1},
                    {"name": "x", "id": 1, "tags": [], "score": 0.5}, [1, 2], 7):
            source = records()
            source["k13"] = odd
            frozen, data, root = self.frozen_root(source)
            self.assertIn(kind_at(data, root), (KIND_DICT, KIND_DICT16), odd)
            self.assertEqual(frozen.thaw(), source)
            self.assertEqual(frozen, source)

    def test_fewer_than_eight_records_stay_a_dict(self):
        frozen, data, root = self.frozen_root(records(7))
        self.assertEqual(kind_at(data, root), KIND_DICT16)
        frozen, data, root = self.frozen_root(records(8))
        self.assertEqual(kind_at(data, root), KIND_TABLE)

    def test_records_with_non_str_keys_stay_dicts(self):
        source = records(10, lambda i: {1: i, "a": i})
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(kind_at(data, root), KIND_DICT16)
        self.assertEqual(frozen.thaw(), source)

    def test_empty_records_and_an_empty_dict(self):
        source = {"k%d" % i: {} for i in range(10)}
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        self.assertEqual(column_types(data, root), [])
        self.assertEqual(frozen.thaw(), source)
        self.assertEqual(dict(frozen["k3"]), {})
        self.assertEqual(len(frozen["k3"]), 0)
        self.assertEqual(permafrost.dumps(frozen), permafrost.dumps(source))
        self.assertEqual(permafrost.freeze({"a": {}}).thaw(), {"a": {}})

    def test_a_table_whose_rows_hold_tables(self):
        source = {"t%d" % i: {"inner": records(9 + i), "n": i} for i in range(10)}
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        self.assertEqual(column_types(data, root), [WORD32, WORD32])
        inner_off = struct.unpack_from("<i", data, field_at(data, root, 0, 0))[0]
        self.assertEqual(kind_at(data, inner_off), KIND_TABLE)
        self.assertEqual(frozen.thaw(), source)
        self.assertEqual(frozen["t4"]["inner"]["k3"]["score"], 0.75)
        self.assertEqual(json.loads(permafrost.dumps(frozen)), source)

    def test_a_large_dict_and_build_dict_make_tables_too(self):
        source = records(5000)
        frozen, data, root = self.frozen_root(source)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        self.assertEqual(frozen.thaw(), source)
        built = permafrost.build_dict(source.items())
        data = graph_bytes(built)
        self.assertEqual(kind_at(data, root_offset(data)), KIND_TABLE)
        self.assertEqual(built, source)

    def test_build_dict_writes_its_rows_a_block_at_a_time(self):
        # 40,000 rows: three blocks of 16 Ki rows written in turn, each block's fields handed
        # back as it is written; "name-0" is a short str in a column of packed strs, kept in
        # full words until the table stores it as a node (a word32 column from a word64 buffer).
        source = records(40000, lambda i: {"name": "name-%d" % (i * 100), "id": i - 7,
                                           "score": i * 0.25, "n": i % 1000})
        built = permafrost.build_dict(iter(source.items()))
        data = graph_bytes(built)
        root = root_offset(data)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        self.assertEqual(column_types(data, root), [WORD32, WORD32, FLOAT32, WORD32])
        self.assertEqual(built.thaw(), source)
        self.assertEqual(list(built), list(source))
        self.assertEqual(built["k0"]["name"], "name-0")
        self.assertEqual(dict(built["k39999"]), source["k39999"])

    def test_build_dict_with_a_repeated_key_keeps_its_last_record(self):
        pairs = list(records(12).items()) + [("k3", {"name": "again", "id": -1, "score": 2.0,
                                                     "tags": []})]
        built = permafrost.build_dict(pairs)
        self.assertEqual(built, dict(pairs))
        self.assertEqual(list(built), list(dict(pairs)))
        data = graph_bytes(built)
        self.assertEqual(kind_at(data, root_offset(data)), KIND_TABLE)

    def test_a_record_shared_with_another_place_is_no_row(self):
        # Rows are not nodes: a record reached twice keeps its identity by staying a dict.
        source = records()
        shared = source["k2"]
        value = {"table": source, "again": shared}
        frozen = permafrost.freeze(value)
        data = graph_bytes(frozen)
        root = root_offset(data)
        self.assertEqual(kind_at(data, root), KIND_DICT16)
        table = struct.unpack_from("<Q", data, root + 8)[0]  # the value of "table"
        self.assertEqual(kind_at(data, table), KIND_DICT16)  # not a table
        thawed = frozen.thaw()
        self.assertIs(thawed["table"]["k2"], thawed["again"])
        self.assertEqual(thawed, value)
        self.assertEqual(frozen["table"]["k3"], source["k3"])


class Rows(unittest.TestCase):
    """A row reads as a FrozenDict, everywhere a dict16 record does."""

    def setUp(self):
        self.source = records()
        self.frozen = permafrost.freeze(self.source)
        self.row = self.frozen["k5"]

    def test_a_row_is_a_read_only_mapping(self):
        row, rec = self.row, self.source["k5"]
        self.assertIsInstance(row, permafrost.FrozenDict)
        self.assertIsInstance(row, collections.abc.Mapping)
        self.assertEqual(len(row), 4)
        self.assertEqual(list(row), list(rec))
        self.assertEqual(list(row.keys()), list(rec.keys()))
        self.assertEqual([v for v in row.values()], [row["name"], 5, 1.25, row["tags"]])
        self.assertEqual(dict(row.items()), {k: row[k] for k in rec})
        self.assertEqual(row, rec)
        self.assertEqual(row, self.frozen["k5"])
        self.assertNotEqual(row, self.frozen["k6"])
        self.assertIn("score", row)
        self.assertNotIn("absent", row)
        self.assertEqual(row.get("id"), 5)
        self.assertEqual(row.get("absent", "d"), "d")
        with self.assertRaises(KeyError):
            row["absent"]
        with self.assertRaises(TypeError):
            row["id"] = 1
        self.assertEqual(row.thaw(), rec)
        self.assertEqual(repr(row), "FrozenDict(%r)" % {k: row[k] for k in rec})

    def test_the_table_iterates_its_rows(self):
        self.assertEqual(len(self.frozen), 20)
        self.assertEqual([dict(r) for r in self.frozen.values()],
                         [{k: (permafrost.freeze(v) if isinstance(v, list) else v)
                           for k, v in rec.items()} for rec in self.source.values()])
        self.assertEqual(dict((k, v.thaw()) for k, v in self.frozen.items()), self.source)
        self.assertEqual(self.frozen.thaw(), self.source)

    def test_json_dumps_of_a_table_and_a_row(self):
        self.assertEqual(permafrost.dumps(self.frozen), permafrost.dumps(self.source))
        self.assertEqual(json.loads(permafrost.dumps(self.frozen)), self.source)
        self.assertEqual(permafrost.dumps(self.row), permafrost.dumps(self.source["k5"]))
        self.assertEqual(permafrost.dumps(self.frozen, sort_keys=True, indent=1),
                         permafrost.dumps(self.source, sort_keys=True, indent=1))
        self.assertEqual(json.dumps(self.row, cls=permafrost.JSONEncoder),
                         json.dumps(self.source["k5"]))

    def test_a_json_error_in_a_row_names_its_path(self):
        source = records(10, lambda i: {"v": float("nan") if i == 4 else 1.0, "w": b"x"})
        with self.assertRaisesRegex(TypeError, r'type bytes is not JSON serializable '
                                               r'\(at obj\["k0"\]\["w"\]\)'):
            permafrost.dumps(permafrost.freeze(source))

    def test_a_freeze_error_in_a_record_names_its_path(self):
        source = records()
        source["k11"]["tags"] = [1, 1j]
        with self.assertRaises(TypeError) as cm:
            permafrost.freeze(source)
        self.assertEqual(str(cm.exception), 'obj["k11"]["tags"][1]: complex is not supported')

    def test_pickle_by_value_and_freezing_a_row_again(self):
        self.assertEqual(pickle.loads(pickle.dumps(self.frozen)), self.source)
        self.assertEqual(pickle.loads(pickle.dumps(self.row)), self.source["k5"])
        self.assertEqual(permafrost.freeze(self.row), self.source["k5"])
        self.assertEqual(permafrost.freeze({"r": self.row})["r"], self.source["k5"])

    def test_save_open_and_pickle_by_reference(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.pfimg")
            self.frozen.save(path)
            opened = permafrost.open(path)
            self.assertEqual(opened, self.source)
            row = opened["k7"]
            blob = pickle.dumps(row)
            self.assertLess(len(blob), 300)  # a reference, not the record
            self.assertEqual(pickle.loads(blob), self.source["k7"])
            self.row.save(os.path.join(d, "row.pfimg"))  # a sub-view: saved as its copy
            self.assertEqual(permafrost.open(os.path.join(d, "row.pfimg")), self.source["k5"])
            _, offset, _ = row._ref()
            with self.assertRaises(ValueError):  # a row past the table's end
                permafrost._image_value(os.path.abspath(path), offset + (100 << 35))
            with self.assertRaises(ValueError):  # a row word naming no table
                permafrost._image_value(os.path.abspath(path), (offset & ((1 << 35) - 1)) + 8)
            permafrost._stores.forget()


LIVE_CHANGE = r'''
import datetime, sys, permafrost
class Evil(datetime.tzinfo):
    def utcoffset(self, dt):
        victim.pop("k0")
        return datetime.timedelta(0)
victim = {"k%d" % i: {"a": i, "b": "v%d" % i} for i in range(6000)}
victim["k5000"]["b"] = datetime.datetime(2026, 12, 3, tzinfo=Evil())
try:
    permafrost.freeze(victim, name="live-change")
except RuntimeError as e:
    print(e)
'''


class LargeTableLive(unittest.TestCase):
    def test_a_large_dict_of_records_that_shrinks_midway_raises(self):
        proc = subprocess.run([sys.executable, "-c", LIVE_CHANGE], capture_output=True, text=True,
                              timeout=300, env=os.environ)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertEqual(proc.stdout.strip(), "obj: dictionary changed size during freeze()")


class ChangeOnce(datetime.tzinfo):
    """A tzinfo whose utcoffset (run by freeze() mid-walk) calls `change` the first time."""

    def __init__(self, change):
        super().__init__()
        self.change = change

    def utcoffset(self, dt):
        change, self.change = self.change, None
        if change:
            change()
        return datetime.timedelta(0)


class InPlace(unittest.TestCase):
    """freeze() of a large dict of records writes its rows straight into the arena, in columns
    of predicted types; a value that then does not fit widens them, one that is no row turns the
    rows so far into dicts."""

    def changed_midway(self, change):
        source = records(5000, lambda i: {"a": i, "b": None, "c": "value-%04d" % i})
        source["k10"]["b"] = datetime.datetime(2026, 12, 3, tzinfo=ChangeOnce(
            lambda: change(source)))
        frozen = permafrost.freeze(source)
        data = graph_bytes(frozen)
        self.assertEqual(frozen.thaw(), source)
        self.assertEqual(frozen, source)
        return data, root_offset(data)

    def test_the_rows_are_reserved_before_their_values(self):
        source = records(5000)
        frozen = permafrost.freeze(source)
        data = graph_bytes(frozen)
        root = root_offset(data)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        # As the buffered writer chose: a few short names as nodes, small ints, singles, lists.
        self.assertEqual(column_types(data, root), [WORD32, WORD32, FLOAT32, WORD32])
        # The last row's name (a packed str, tag 6) was stored after the table node was.
        name = struct.unpack_from("<i", data, field_at(data, root, 4999, 0))[0]
        self.assertEqual(name & 7, 6)
        self.assertGreater(name >> 3, root)
        self.assertEqual(frozen.thaw(), source)

    def test_an_int_that_no_longer_fits_widens_its_column(self):
        def change(source):
            source["k4000"]["a"] = 2 ** 40  # an inline int past word32, in a word32 column
        data, root = self.changed_midway(change)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        self.assertEqual(column_types(data, root), [WORD64, WORD32, WORD32])

    def test_a_float_that_is_no_single_widens_its_column(self):
        def change(source):
            source["k4999"]["c"] = 1 + 2 ** -30  # an inline float, no single
        data, root = self.changed_midway(change)
        self.assertEqual(kind_at(data, root), KIND_TABLE)
        self.assertEqual(column_types(data, root), [WORD32, WORD32, WORD64])

    def test_a_record_that_changes_shape_makes_a_plain_dict(self):
        def change(source):
            source["k4000"] = {"a": 1, "other": 2}
        data, root = self.changed_midway(change)
        self.assertEqual(kind_at(data, root), KIND_DICT16)

    def test_a_record_that_gains_a_reference_makes_a_plain_dict(self):
        held = []

        def change(source):
            held.append(source["k3000"])
        data, root = self.changed_midway(change)
        self.assertEqual(kind_at(data, root), KIND_DICT16)
        self.assertIs(held[0], held[0])

    def test_a_dict_predicted_no_table_still_becomes_one(self):
        # A record referenced twice (by a local) is no row when predicted; freed before the
        # walk reaches it, it is one: the table is made from the column buffers.
        source = records(5000)
        extra = source["k4000"]

        def change(_):
            nonlocal extra
            extra = None
        source["k10"]["name"] = datetime.datetime(2026, 12, 3, tzinfo=ChangeOnce(
            lambda: change(source)))
        frozen = permafrost.freeze(source)
        data = graph_bytes(frozen)
        self.assertEqual(kind_at(data, root_offset(data)), KIND_TABLE)
        self.assertEqual(frozen.thaw(), source)


class CraftedTables(unittest.TestCase):
    """A table node that lies is refused by the graph check when its image is opened."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "crafted.pfimg")
        self.data = bytearray(graph_bytes(permafrost.freeze(records(10))))
        self.root = root_offset(self.data)
        self.assertEqual(self.data[self.root], KIND_TABLE)

    def tearDown(self):
        self.dir.cleanup()
        permafrost._stores.forget()

    def descriptor(self, j):
        return self.root + 32 + 8 * j

    def refused(self, why):
        permafrost._core._save_bytes(bytes(self.data), self.path)
        permafrost._stores.forget()
        with self.assertRaises(OSError) as cm:
            permafrost.open(self.path)
        self.assertIn(why, str(cm.exception))

    def test_the_untouched_table_opens(self):
        permafrost._core._save_bytes(bytes(self.data), self.path)
        self.assertEqual(permafrost.open(self.path), records(10))

    def test_an_unknown_column_type_is_refused(self):
        self.data[self.descriptor(1)] = (self.data[self.descriptor(1)] & ~7) | 5
        self.refused("a table column of unknown type")

    def test_a_column_outside_its_row_is_refused(self):
        struct.pack_into("<Q", self.data, self.descriptor(0), (14 << 3) | WORD32)  # 16-byte rows
        self.refused("a table column outside its row")
        struct.pack_into("<Q", self.data, self.descriptor(0), (12 << 3) | WORD64)
        self.refused("a table column outside its row")

    def test_rows_outside_the_node_are_refused(self):
        struct.pack_into("<I", self.data, self.root + 28, len(self.data))
        self.refused("a table's rows outside the table node or the graph")
        struct.pack_into("<I", self.data, self.root + 28, 8)  # over the header
        self.refused("a table's rows outside the table node or the graph")
        struct.pack_into("<I", self.data, self.root + 28, 64)  # its place
        struct.pack_into("<I", self.data, self.root + 24, 1 << 20)  # rows too long
        self.refused("a table's rows outside the table node or the graph")

    def test_more_rows_than_its_keys_is_refused(self):
        struct.pack_into("<I", self.data, self.root + 4, 11)
        self.refused("a dict whose keys table does not match it")

    def test_more_columns_than_its_shape_is_refused(self):
        struct.pack_into("<H", self.data, self.root + 2, 5)
        self.refused("a dict whose keys table does not match it")

    def test_overlapping_or_loose_columns_are_refused(self):
        # Columns that all read the same bytes made the check visit rows x columns fields: a 1 MB
        # crafted image kept open() busy for minutes.
        self.assertEqual(column_types(self.data, self.root)[:2], [WORD32, WORD32])
        struct.pack_into("<Q", self.data, self.descriptor(1), (0 << 3) | WORD32)  # over column 0
        self.refused("a table column that does not follow the one before it in its row")
        struct.pack_into("<Q", self.data, self.descriptor(1), (8 << 3) | WORD32)  # a gap
        self.refused("a table column that does not follow the one before it in its row")
        struct.pack_into("<Q", self.data, self.descriptor(1), (4 << 3) | WORD32)  # its place
        row_bytes = struct.unpack_from("<I", self.data, self.root + 24)[0]
        struct.pack_into("<I", self.data, self.root + 24, row_bytes + 4)  # bytes no column reads
        self.data += bytes(8 * 10)  # room for the longer rows
        self.refused("a table row longer than its columns")

    def test_a_stored_row_word_is_refused(self):
        # Row 0's name (a word32 column) made a row word.
        self.assertEqual(column_types(self.data, self.root)[0], WORD32)
        struct.pack_into("<i", self.data, field_at(self.data, self.root, 0, 0),
                         (self.root // 8) << 3 | 7)
        self.refused("a row word (never stored)")

    def test_a_shape_with_a_container_key_is_refused(self):
        # The shape's first key word made a reference to the table's tags list node.
        shape = struct.unpack_from("<Q", self.data, self.root + 16)[0]
        capacity = struct.unpack_from("<I", self.data, shape + 8)[0]
        slot = 4 if self.data[shape + 1] & 1 else 8
        list_off = struct.unpack_from("<i", self.data, field_at(self.data, self.root, 0, 3))[0]
        struct.pack_into("<Q", self.data, shape + 16 + slot * capacity, list_off)
        self.refused("a table whose shape has a container key")


if __name__ == "__main__":
    unittest.main()
