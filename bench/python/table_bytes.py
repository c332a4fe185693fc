"""Where a frozen table's bytes go, and what a key table's miss costs against a hit (issue 19).

breakdown(frozen) walks the frozen graph of a permafrost.freeze() view once (each node once,
shared nodes too: they are counted where first reached) and sums the bytes of each node kind,
splitting dicts into headers and value words (and value words by what they hold), key tables
into index slots and key words, and strs into keys and values. It reads the layout documented in
python/src/format.hpp (a measurement, not a reader: the extension never uses this code).

miss_cost(frozen, rows, key) times `k in frozen` for rows present keys and rows absent keys of
the same length, each in a scrambled order, against the same loops over a 16-key table that
stays in cache, so the difference is what the table's size costs: memory, not Python; and
cache_miss_ns() measures what one dependent load from memory adds to a Python loop the same way
(a pointer chase through 64 MiB against one through 16 entries), the unit to compare with.

Used by frozen_table.py --breakdown; runs on every interpreter the package is built for.
"""
import ctypes
import struct
import time

# python/src/format.hpp
TAG_NODE, TAG_INT, TAG_CONST, TAG_FLOAT, TAG_SHORT_STR, TAG_INLINE_FLOAT, TAG_PACKED_STR = range(7)
KIND_NAMES = {1: "str", 2: "bytes", 3: "bigint", 4: "list", 5: "tuple", 6: "dict", 7: "keys",
              8: "set", 9: "frozenset", 10: "str16", 11: "dict16", 12: "datetime", 13: "date",
              14: "time", 15: "timedelta", 16: "decimal", 17: "uuid", 18: "table"}
COLUMN_TYPES = {0: "word64", 1: "word32", 2: "float32"}
# Leaves whose header's count is the number of payload bytes after it.
PAYLOAD_KINDS = ("bytes", "bigint", "datetime", "date", "time", "timedelta", "decimal", "uuid")
FLAG_NARROW_INDEX, FLAG_NARROW_KEYS = 1, 4
WORD_KINDS = {TAG_NODE: "node references", TAG_INT: "inline ints", TAG_CONST: "None/True/False",
              TAG_FLOAT: "boxed float references", TAG_SHORT_STR: "short strs (<= 7 bytes)",
              TAG_INLINE_FLOAT: "inline floats", TAG_PACKED_STR: "packed str references"}


def aligned(n):
    return (n + 7) & ~7


class Breakdown:
    def __init__(self, address, size):
        self.mem = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
        self.size = size
        self.bytes = {}
        self.counts = {}
        self.seen = set()
        self.packed = 0

    def add(self, what, n, count=1):
        self.bytes[what] = self.bytes.get(what, 0) + n
        self.counts[what] = self.counts.get(what, 0) + count

    def word(self, w, role, pending, column=None):
        tag = w & 7
        if role == "value":
            self.add("dict value words: " + WORD_KINDS[tag], 8)
        elif column is not None:
            self.add("table fields (%s): %s" % (column, WORD_KINDS[tag]), 4 if column != "word64"
                     else 8)
        if tag == TAG_NODE:
            pending.append((w, role))
        elif tag == TAG_FLOAT and w not in self.seen:
            self.seen.add(w)
            self.add("float nodes", 8)
        elif tag == TAG_PACKED_STR and w not in self.seen:  # a length byte and the UTF-8
            self.seen.add(w)
            self.packed += 1 + self.mem[w >> 3]
            self.add("packed strs (%s, 1-byte length + UTF-8)" % (
                "keys" if role == "key" else "values"), 1 + self.mem[w >> 3])

    def walk(self):
        unpack = struct.unpack_from
        mem = self.mem
        self.add("root header", 16)
        (root,) = unpack("<Q", mem, 8)
        pending = [(root, "root")]
        while pending:
            w, role = pending.pop()
            if w in self.seen:
                continue
            self.seen.add(w)
            kind, flags, small, count = unpack("<BBHI", mem, w)
            name = KIND_NAMES.get(kind)
            if name is None:
                raise SystemExit("table_bytes: node kind %d at offset %d is not one this walk "
                                 "knows (python/src/format.hpp has a new one)" % (kind, w))
            if name in ("str", "str16"):
                n = small + 4 if name == "str16" else count + 8
                self.add("str nodes (%s)" % ("keys" if role == "key" else "values"), aligned(n))
            elif name in PAYLOAD_KINDS:
                self.add(name + " nodes", aligned(count + 8))
            elif name in ("list", "tuple"):
                self.add(name + " nodes", 8 + 8 * count)
                for i in range(count):
                    self.word(unpack("<Q", mem, w + 8 + 8 * i)[0], "item", pending)
            elif name in ("dict", "dict16"):
                if name == "dict16":
                    n, keys, values = small, count * 8, w + 8
                    self.add("dict headers", 8)
                else:
                    n, keys, values = count, unpack("<Q", mem, w + 8)[0], w + 16
                    self.add("dict headers", 16)
                pending.append((keys, "root keys" if role == "root" else "keys"))
                for i in range(n):
                    self.word(unpack("<Q", mem, values + 8 * i)[0], "value", pending)
            elif name == "table":  # header, keys node, shape, column descriptors, rows
                keys, shape, row_bytes, rows_start = unpack("<QQII", mem, w + 8)
                self.add("table headers (32 B + 8 B a column)", rows_start)
                pending.append((keys, "root keys" if role == "root" else "keys"))
                pending.append((shape, "keys"))
                for j in range(small):
                    (d,) = unpack("<Q", mem, w + 32 + 8 * j)
                    ctype = COLUMN_TYPES[d & 7]
                    start = w + rows_start + (d >> 3)
                    for i in range(count):
                        at = start + row_bytes * i
                        if ctype == "word64":
                            (v,) = unpack("<Q", mem, at)
                        elif ctype == "word32":
                            (v,) = unpack("<i", mem, at)
                            v &= (1 << 64) - 1
                        else:
                            (f,) = unpack("<f", mem, at)
                            v = struct.unpack("<Q", struct.pack("<d", f))[0] | TAG_INLINE_FLOAT
                        self.word(v, "column", pending, ctype)
                self.add("table row padding", aligned(row_bytes * count) - row_bytes * count, 0)
            else:  # keys, set, frozenset: header, index slots, key words
                (capacity,) = unpack("<I", mem, w + 8)
                slot = 4 if flags & FLAG_NARROW_INDEX else 8
                key_size = 4 if flags & FLAG_NARROW_KEYS else 8
                what = {"root keys": "the root dict's key table", "keys": "record key tables"}.get(
                    role, name + " tables")
                self.add(what + ": headers", 16)
                self.add(what + ": index slots", slot * capacity, 0)
                self.add(what + ": key words (%d bytes)" % key_size, aligned(key_size * count), 0)
                start = w + 16 + slot * capacity
                for i in range(count):  # 4-byte key words sign-extend (format.hpp)
                    if key_size == 4:
                        self.word(unpack("<i", mem, start + 4 * i)[0] & (2**64 - 1), "key", pending)
                    else:
                        self.word(unpack("<Q", mem, start + 8 * i)[0], "key", pending)
        counted = sum(self.bytes.values())
        # Packed strs are written into runs whose unused tails nothing reaches (graph_output.hpp:
        # less than a sixteenth of them, and the last run).
        if counted > self.size or counted < self.size - 4096 - (64 << 10) - self.packed // 16:
            # More than the graph holds, or a page's worth not reached: the walk and the
            # format (python/src/format.hpp) disagree.
            raise SystemExit("table_bytes: counted %d bytes of a %d-byte graph" % (counted,
                                                                                    self.size))
        self.add("unreached (alignment, unused tail)", self.size - counted, 0)
        return self


def breakdown(frozen):
    """{what: (bytes, count)} for the whole frozen graph of the view `frozen`."""
    import permafrost
    address, size = permafrost._core._range(frozen)
    b = Breakdown(address, size).walk()
    return {k: (b.bytes[k], b.counts[k]) for k in b.bytes}, size


def format_breakdown(parts, size, dict_heap=None):
    lines = ["%-52s %10s %7s %10s" % ("where the frozen bytes go", "MiB", "share", "items")]
    for what, (n, count) in sorted(parts.items(), key=lambda kv: -kv[1][0]):
        lines.append("%-52s %10.2f %6.1f%% %10s" % (what, n / (1 << 20), 100.0 * n / size,
                                                     count or ""))
    lines.append("%-52s %10.2f" % ("total frozen bytes", size / (1 << 20)))
    if dict_heap:
        lines.append("%-52s %10.2f (%.3fx)" % ("the dict's heap (RSS growth while building it)",
                                               dict_heap / (1 << 20), size / dict_heap))
    return "\n".join(lines)


def _timed_membership(table, keys):
    # CPU time, not wall time: on a shared machine the loop is descheduled for whole time slices.
    t = time.process_time()
    found = 0
    for k in keys:
        found += k in table
    return time.process_time() - t, found


def miss_cost(frozen, present, absent, small, small_present, small_absent, rounds=3):
    """ns per `in` for hits and misses on `frozen` and on the in-cache `small` table (best of
    rounds: the noise on a shared machine only adds)."""
    best = {}
    for _ in range(rounds):
        for name, table, keys, expect in (("hit", frozen, present, len(present)),
                                          ("miss", frozen, absent, 0),
                                          ("cached hit", small, small_present, len(small_present)),
                                          ("cached miss", small, small_absent, 0)):
            elapsed, found = _timed_membership(table, keys)
            if found != expect:
                raise SystemExit("miss_cost: %s found %d of %d keys" % (name, found, len(keys)))
            ns = 1e9 * elapsed / len(keys)
            best[name] = min(best.get(name, ns), ns)
    best["load"] = cache_miss_ns(rounds=rounds)
    return best


def _timed_chase(chain, steps):
    t = time.process_time()
    i = 0
    for _ in range(steps):
        i = chain[i]
    return time.process_time() - t


def _chain(n):
    """An array of n (a power of two) indexes forming one cycle, i -> (a * i + c) mod n: each
    step's address depends on the last load and jumps across the array (no stride to prefetch)."""
    import array
    mask = n - 1
    return array.array("Q", ((2862933555777941757 * i + 3037000493) & mask for i in range(n)))


def cache_miss_ns(steps=1000000, rounds=3):
    """What one dependent load from memory adds to a Python loop step: a chase through a 64 MiB
    array (twice this machine's L3) against the same chase through 16 entries (best of rounds)."""
    big, small = _chain(1 << 23), _chain(16)
    best = float("inf")
    for _ in range(rounds):
        best = min(best, 1e9 * (_timed_chase(big, steps) - _timed_chase(small, steps)) / steps)
    return best


def format_miss_cost(ns):
    hit = ns["hit"] - ns["cached hit"]
    miss = ns["miss"] - ns["cached miss"]
    return ("key table, `k in table`, CPU ns per lookup (best of 3): hit %.0f, miss %.0f; "
            "the same on a 16-key table in cache: hit %.0f, miss %.0f\n"
            "what the table's size adds (memory): hit %.0f ns, miss %.0f ns (miss %.2fx hit); "
            "one dependent load from memory (64 MiB pointer chase) adds %.0f ns: a miss costs "
            "%.2f of them, a hit %.2f" % (
                ns["hit"], ns["miss"], ns["cached hit"], ns["cached miss"], hit, miss,
                miss / hit if hit > 0 else float("nan"), ns["load"], miss / ns["load"],
                hit / ns["load"]))
