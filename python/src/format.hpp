// permafrost for Python — the frozen value format.
//
// Contract: a frozen value graph is a run of bytes that refers to itself only by offsets from its
// first byte, so the same bytes work in the arena they were built in, in a saved image mapped at
// any address, and in every forked worker. Nothing in it is ever written after it is built:
// reading it materialises fresh Python objects (or views) in the reader's own heap.
//
// A value is one 64-bit word; its low 3 bits say what it is:
//   tag_node  (0): offset of a node (8-aligned, never 0); the node's header says its kind
//   tag_int   (1): a signed integer in the upper 61 bits
//   tag_const (2): None, False or True in the upper bits
//   tag_float (3): offset (8-aligned) of an IEEE double, OR-ed with 3
//   tag_short_str (4): a str of at most 7 UTF-8 bytes (no lone surrogates) in the word itself:
//                  length in bits 3-5, byte i in bits 8+8i..15+8i
//   tag_inline_float (5): a double whose 3 lowest bits are 0 (0.25, 1.5, most round values),
//                  its bits OR-ed with 5
//   tag_packed_str (6): (format v2) a str of 8 to 255 UTF-8 bytes that is valid UTF-8 without
//                  lone surrogates: byte offset << 3 | 6 of {u8 length, then the bytes}, at any
//                  offset (no alignment, no node header: 11 characters take 12 bytes, not 16).
//                  Readers find ASCII by looking at the bytes. Strs of other sizes, or holding
//                  lone surrogates, are short strs or str nodes, so a str has one encoding in
//                  a v2 graph; a v1 graph (root magic "pfpy\0v1") holds no packed strs.
//   tag_row (7):   never stored: what a reader holds for row i of a table node (see "Tables of
//                  records" below); the graph check refuses it in stored bytes
// Nodes start with an 8-byte header {u8 kind, u8 flags, u16 0, u32 count}, except str16 and
// dict16, whose header packs what they need (smaller records):
//   str, bytes:   count bytes follow (str: UTF-8, with surrogatepass when flag_surrogates)
//   str16:        {u8 kind, u8 flags, u16 length}, then the bytes: a str shorter than 64 KiB
//   bigint:       count bytes of little-endian two's complement follow
//   datetime, date, time, timedelta, Decimal, UUID: count payload bytes follow, laid out as
//                 scalar_format.hpp says
//   list, tuple:  count value words follow
//   dict:         u64 offset of a keys node, then count value words (values[i] belongs to key i);
//                 dicts with the same keys in the same order share one keys node
//   dict16:       {u8 kind, u8 flags, u16 count, u32 keys node offset / 8}, then count value words:
//                 a dict of fewer than 64 Ki keys whose keys node lies below 32 GiB
//   table:        a dict whose values are records with one shape, stored as rows: see "Tables of
//                 records" below
//   keys, set, frozenset: u32 capacity, u32 0, then `capacity` index slots, then
//                 count key words in insertion order. A slot is 0 (empty) or
//                 (upper 32 bits of the key's hash) << 32 | (entry index + 1), 8 bytes; with
//                 flag_narrow_index (fewer than 2^24 - 1 keys) 4 bytes: (upper 8 bits of the hash)
//                 << 24 | (entry index + 1). Linear probing, wrapping at capacity, from
//                 slot (low 32 bits of the hash) * capacity >> 32 with flag_any_capacity (format
//                 v2: any capacity above the count, at most 4/3 of it, plus one), else (v1) from
//                 the hash's low bits masked by the capacity, a power of two. With
//                 flag_narrow_keys (v2) each key word is 4 bytes: the low half of a word that
//                 sign-extends from it (fits_narrow_key: ints below 2^28 in size, node
//                 offsets below 2 GiB, packed strs below 256 MiB, None/True/False, short strs
//                 of 2 bytes or 3 ASCII ones); the writer uses it when every key fits.
// Sharing. A node may be referenced more than once in two ways:
//   - by content: strs, bytes and big ints, and lists and tuples of at most 64 bytes whose items
//     are all scalars or strs/bytes/big ints, with equal bytes are stored once (and keys nodes
//     are shared between dicts). Readers build one object per reference, as for unshared nodes.
//   - by identity: a container (list, tuple, dict, set, frozenset) that was one Python object
//     reached several times is stored once with flag_shared; a read (thaw, a tuple) builds it
//     once and uses that object for every reference, so thaw() gives the same sharing back.
// Read cost. What one read builds is bounded, so a small graph cannot make a reader build an
// exponential tree: see "Read cost" below, which graph_check computes and bounds.
// Key hashes are key_hash() in keys.cpp: seedless (hash_bytes over UTF-8 for str), so an index
// built in one process is valid in every other one, whatever PYTHONHASHSEED says.
//
// This header is the one codec of that format: the writer (freeze.cpp), the readers (values.cpp,
// views.cpp, keys.cpp), the graph check and the fuzzer use its layouts, accessors, slot encoding
// and probe. It needs only the C++ standard library, so code without Python (the graph check,
// the fuzzer, a JSON writer) reads frozen bytes exactly as the extension does.
//
// Thread safety: plain data; frozen bytes may be read from any thread.
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace permafrost::python {

using word = std::uint64_t;

inline constexpr word tag_mask = 7;
inline constexpr word tag_node = 0;
inline constexpr word tag_int = 1;
inline constexpr word tag_const = 2;
inline constexpr word tag_float = 3;
inline constexpr word tag_short_str = 4;
inline constexpr word tag_inline_float = 5;
inline constexpr word tag_packed_str = 6;
inline constexpr std::size_t max_short_str = 7;
inline constexpr std::size_t min_packed_str = max_short_str + 1;
inline constexpr std::size_t max_packed_str = 255;

inline constexpr word const_none = (0 << 3) | tag_const;
inline constexpr word const_false = (1 << 3) | tag_const;
inline constexpr word const_true = (2 << 3) | tag_const;

// Integers with |v| < 2^60 are stored in the word itself.
inline constexpr std::int64_t inline_int_min = -(std::int64_t{1} << 60);
inline constexpr std::int64_t inline_int_max = (std::int64_t{1} << 60) - 1;

enum kind : std::uint8_t {
  kind_str = 1,
  kind_bytes = 2,
  kind_bigint = 3,
  kind_list = 4,
  kind_tuple = 5,
  kind_dict = 6,
  kind_keys = 7,
  kind_set = 8,
  kind_frozenset = 9,
  kind_str16 = 10,
  kind_dict16 = 11,
  // Leaves with a fixed layout (scalar_format.hpp): datetime, date, time, timedelta, Decimal, UUID.
  kind_datetime = 12,
  kind_date = 13,
  kind_time = 14,
  kind_timedelta = 15,
  kind_decimal = 16,
  kind_uuid = 17,
  kind_table = 18,  // a dict of records with one shape, stored by column (table_node)
};

inline constexpr std::uint8_t flag_ascii = 1;         // str: every byte < 0x80
inline constexpr std::uint8_t flag_surrogates = 2;    // str: decode with surrogatepass
inline constexpr std::uint8_t flag_narrow_index = 1;  // keys/set: 4-byte index slots
inline constexpr std::uint8_t flag_any_capacity = 2;  // keys/set: fastrange start (format v2)
inline constexpr std::uint8_t flag_narrow_keys = 4;   // keys/set: 4-byte key words (format v2)
// list, tuple, dict, dict16, set, frozenset: one Python object referenced from several places,
// stored once; readers build it once per read (see "Sharing" above).
inline constexpr std::uint8_t flag_shared = 0x80;

// The first 8 bytes of every node. `small_count` and `count` mean what the kind says:
//   str16:  small_count = the length in bytes; `count` is not there (the bytes start at byte 4)
//   dict16: small_count = the number of entries; count = the keys node's offset / 8
//   others: small_count = 0; count = the items, entries or bytes the node holds
// Read them through the accessors below (str_size, dict_count, dict_keys_offset), which know.
struct node_header {
  std::uint8_t kind;
  std::uint8_t flags;
  std::uint16_t small_count;
  std::uint32_t count;
};
static_assert(sizeof(node_header) == 8);

// keys, set and frozenset nodes.
struct table_header {
  node_header h;
  std::uint32_t capacity;  // index slots, above h.count: any (flag_any_capacity) or a power of 2
  std::uint32_t padding;   // always 0: keeps the index slots after it 8-aligned
};
static_assert(sizeof(table_header) == 16);

struct dict_header {
  node_header h;
  std::uint64_t keys;  // offset of the keys node
};
static_assert(sizeof(dict_header) == 16);

// Offset 0 of every frozen graph: identifies the format and names the root value.
struct root_header {
  char magic[8];  // "pfpy\0v2" (or "pfpy\0v1": a graph without packed strs or v2 tables)
  word root;
};
// v2 added packed strs (tag_packed_str) and tables of any capacity (flag_any_capacity). The
// writer marks a graph v2 only when it uses them, so the others stay readable by older readers;
// every reader reads both.
inline constexpr char root_magic_v1[8] = {'p', 'f', 'p', 'y', 0, 'v', '1', 0};
inline constexpr char root_magic[8] = {'p', 'f', 'p', 'y', 0, 'v', '2', 0};
inline constexpr int newest_version = 2;
// The format version named by a root header's magic "pfpy\0vN\0": N, from 1 to 9 (above
// newest_version: a graph from a newer permafrost, which this one refuses by name), or 0 when
// it is no Python graph.
inline int root_version(const root_header* r) noexcept {
  if (std::memcmp(r->magic, root_magic, 6) != 0 || r->magic[7] != 0) return 0;
  const char digit = r->magic[6];
  return digit >= '1' && digit <= '9' ? digit - '0' : 0;
}

// The word of a str of n <= max_short_str UTF-8 bytes.
inline word short_str_word(const char* s, std::size_t n) noexcept {
  word w = 0;
  std::memcpy(&w, s, n);  // little-endian: byte i in bits 8i..
  return (w << 8) | (static_cast<word>(n) << 3) | tag_short_str;
}
inline std::size_t short_str_size(word w) noexcept { return (w >> 3) & 7; }
// Copies the bytes of a short str word to out[0, 8).
inline void short_str_bytes(word w, char* out) noexcept {
  const word bytes = w >> 8;
  std::memcpy(out, &bytes, 8);
}

// The word of the packed str stored at byte offset `off` ({u8 length, bytes}).
inline word packed_str_word(std::uint64_t off) noexcept { return off << 3 | tag_packed_str; }
inline std::uint64_t packed_str_offset(word w) noexcept { return w >> 3; }
// The UTF-8 bytes of the packed str w of the graph at base.
inline std::string_view packed_str(const char* base, word w) noexcept {
  const char* p = base + packed_str_offset(w);
  return {p + 1, static_cast<unsigned char>(*p)};
}

// Whether every byte of s is below 0x80: 8 bytes at a time (a packed str has at least 8).
inline bool all_ascii(std::string_view s) noexcept {
  std::uint64_t any = 0;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    any |= w;
  }
  if (i < s.size()) {  // the last 8 bytes again (overlapping), or the few there are
    std::uint64_t w = 0;
    const std::size_t start = s.size() >= 8 ? s.size() - 8 : 0;
    std::memcpy(&w, s.data() + start, s.size() - start);
    any |= w;
  }
  return (any & 0x8080808080808080ull) == 0;
}

// Whether s is UTF-8 as Python's strict decoder accepts it: no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. With `surrogates`, as its
// surrogatepass handler accepts it: lone surrogates allowed (a str node's flag_surrogates).
inline bool valid_utf8(std::string_view s, bool surrogates = false) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xbf;  // the range of the second byte
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;                 // overlong
      if (c == 0xed && !surrogates) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return false;
    }
    if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

// The node (or table, or double) at offset `off` of the graph starting at base.
template <class T>
const T* node_at(const char* base, std::uint64_t off) noexcept {
  return reinterpret_cast<const T*>(base + off);
}

inline std::size_t table_slot_size(const table_header* t) noexcept {
  return (t->h.flags & flag_narrow_index) ? 4 : 8;
}
inline std::size_t table_key_size(const table_header* t) noexcept {
  return (t->h.flags & flag_narrow_keys) ? 4 : 8;
}
// Whether the word w is one a table with flag_narrow_keys can hold: it sign-extends from 32 bits.
inline bool fits_narrow_key(word w) noexcept {
  const auto v = static_cast<std::int64_t>(w);
  return v >= INT32_MIN && v <= INT32_MAX;
}
// A table's key words, 8 or 4 bytes each (flag_narrow_keys): kw[i] is key i's word.
class key_words {
 public:
  key_words(const char* p, bool narrow) noexcept : p_(p), narrow_(narrow) {}
  word operator[](std::size_t i) const noexcept {
    if (narrow_) {
      std::int32_t v;
      std::memcpy(&v, p_ + 4 * i, 4);
      return static_cast<word>(std::int64_t{v});
    }
    word w;
    std::memcpy(&w, p_ + 8 * i, 8);
    return w;
  }

 private:
  const char* p_;
  bool narrow_;
};
inline const char* table_key_bytes(const table_header* t) noexcept {
  return reinterpret_cast<const char*>(t + 1) + std::size_t{t->capacity} * table_slot_size(t);
}
inline key_words table_keys(const table_header* t) noexcept {
  return {table_key_bytes(t), (t->h.flags & flag_narrow_keys) != 0};
}
inline bool is_str(std::uint8_t k) noexcept { return k == kind_str || k == kind_str16; }
// str, bytes, big int and the fixed-layout scalar nodes: bytes, no value words inside.
inline bool is_leaf(std::uint8_t k) noexcept {
  return is_str(k) || k == kind_bytes || k == kind_bigint || (k >= kind_datetime && k <= kind_uuid);
}
// Containers a Python object was frozen from (keys nodes are not: they belong to dicts).
inline bool can_be_shared(std::uint8_t k) noexcept {
  return k == kind_list || k == kind_tuple || k == kind_dict || k == kind_dict16 || k == kind_set ||
         k == kind_frozenset || k == kind_table;
}
inline bool is_shared(const node_header* n) noexcept {
  return can_be_shared(n->kind) && (n->flags & flag_shared);
}
// Nodes readers see as a dict (a table too: its values are its rows).
inline bool is_dict(std::uint8_t k) noexcept {
  return k == kind_dict || k == kind_dict16 || k == kind_table;
}
// A str node's UTF-8 bytes.
inline const char* str_bytes(const node_header* n) noexcept {
  return reinterpret_cast<const char*>(n) + (n->kind == kind_str16 ? 4 : 8);
}
inline std::size_t str_size(const node_header* n) noexcept {
  return n->kind == kind_str16 ? n->small_count : n->count;
}
// The UTF-8 bytes of a str stored outside its word (a packed str or a str node) into `out`;
// false (out untouched) for any other word.
inline bool stored_str(const char* base, word w, std::string_view& out) noexcept {
  if ((w & tag_mask) == tag_packed_str) {
    out = packed_str(base, w);
    return true;
  }
  if ((w & tag_mask) != tag_node) return false;
  const auto* n = node_at<node_header>(base, w);
  if (!is_str(n->kind)) return false;
  out = {str_bytes(n), str_size(n)};
  return true;
}
inline std::uint32_t dict_count(const node_header* n) noexcept {
  return n->kind == kind_dict16 ? n->small_count : n->count;
}
// (A table node starts as a dict_header does: its count is its rows, its keys node follows.)
inline std::uint64_t dict_keys_offset(const node_header* n) noexcept {
  return n->kind == kind_dict16 ? std::uint64_t{n->count} * 8
                                : reinterpret_cast<const dict_header*>(n)->keys;
}
// The value words of a dict or dict16 node (not of a table: read any dict through dict_reader).
inline const word* dict_values(const node_header* n) noexcept {
  return reinterpret_cast<const word*>(reinterpret_cast<const char*>(n) +
                                       (n->kind == kind_dict16 ? 8 : 16));
}
inline const word* seq_items(const node_header* n) noexcept {
  return reinterpret_cast<const word*>(n + 1);
}
inline const char* node_bytes(const node_header* n) noexcept {
  return reinterpret_cast<const char*>(n + 1);
}

// ---------------------------------------------------------------------------------------------
// Tables of records (kind_table)
// ---------------------------------------------------------------------------------------------
// A dict of at least min_table_rows values that are all dicts with one keys node (the shape:
// records with the same str keys in the same order) is stored as a table: a table_node header,
// one descriptor word per shape key (a column), then the rows, each a fixed-size record of its
// fields, each field in the narrowest column_type that holds every row's value word for that key:
//   column_word64:  8-byte value words as stored anywhere;
//   column_word32:  4-byte words whose sign extension is the value word (small ints, constants,
//                   short strs of up to 3 bytes, node references below 2 GiB);
//   column_float32: 4-byte IEEE singles: every value is an inline float exactly representable
//                   as a single; read back as the tag_inline_float word of the double.
// A descriptor is (the field's byte offset in a row) << 3 | its column_type; fields are packed
// in column order, unaligned (read with memcpy), and a row takes row_bytes (the sum of their
// widths). Rows rather than column arrays: a reader reads a record's fields together, and a
// row's fields share a cache line where columns would cost a cache miss each.
// Row i is the dict {shape key j: field j of row i}; readers see the table as a dict (its keys
// node, count = rows) whose value i is the row word of row i: rows are not nodes, so no stored
// word references a row, and a row cannot be flag_shared.
inline constexpr word tag_row = 7;
inline constexpr std::uint32_t min_table_rows = 8;

enum column_type : std::uint8_t { column_word64 = 0, column_word32 = 1, column_float32 = 2 };

struct table_node {
  node_header h;             // kind_table; flags: flag_shared; small_count: columns; count: rows
  std::uint64_t keys;        // the table's own keys node (h.count keys), as in a dict_header
  std::uint64_t shape;       // every row's keys node (small_count keys)
  std::uint32_t row_bytes;   // one row's size: the sum of its fields' widths
  std::uint32_t rows_start;  // row 0's offset from the node: after the descriptors
  // then small_count column descriptors, then the rows
};
static_assert(sizeof(table_node) == 32);

inline const word* table_columns(const table_node* t) noexcept {
  return reinterpret_cast<const word*>(t + 1);
}
inline std::size_t column_width(word descriptor) noexcept {
  return (descriptor & tag_mask) == column_word64 ? 8 : 4;
}
// The first byte of row `row` of table t.
inline const char* row_bytes_of(const table_node* t, std::uint32_t row) noexcept {
  return reinterpret_cast<const char*>(t) + t->rows_start + std::size_t{row} * t->row_bytes;
}

// Value word `row` of a column array `a` of type c.
inline word column_word(const char* a, word c, std::size_t row) noexcept {
  switch (c) {
    case column_word32: {
      std::int32_t v;
      std::memcpy(&v, a + 4 * row, 4);
      return static_cast<word>(static_cast<std::int64_t>(v));
    }
    case column_float32: {
      float f;
      std::memcpy(&f, a + 4 * row, 4);
      const double x = f;
      word bits;
      std::memcpy(&bits, &x, 8);
      return bits | tag_inline_float;
    }
    default: {
      word v;
      std::memcpy(&v, a + 8 * row, 8);
      return v;
    }
  }
}
// Value word `row` of column `col` of table t.
inline word column_value(const table_node* t, std::uint32_t col, std::uint32_t row) noexcept {
  const word d = table_columns(t)[col];
  return column_word(row_bytes_of(t, row) + (d >> 3), d & tag_mask, 0);
}
// Whether value word w fits column type c (the writer picks the narrowest that fits them all).
inline bool fits_column(word w, column_type c) noexcept {
  if (c == column_word32)
    return static_cast<word>(static_cast<std::int64_t>(static_cast<std::int32_t>(w))) == w;
  if (c == column_float32) {
    if ((w & tag_mask) != tag_inline_float) return false;
    const word bits = w & ~tag_mask;
    double d;
    std::memcpy(&d, &bits, 8);
    const float f = static_cast<float>(d);
    const double back = f;
    word back_bits;
    std::memcpy(&back_bits, &back, 8);
    return back_bits == bits;
  }
  return true;
}
// Writes w into column array `a` of type c at `row` (fits_column(w, c)).
inline void put_column_value(char* a, column_type c, std::size_t row, word w) noexcept {
  if (c == column_word32) {
    const auto v = static_cast<std::int32_t>(w);
    std::memcpy(a + 4 * row, &v, 4);
  } else if (c == column_float32) {
    const word bits = w & ~tag_mask;
    double d;
    std::memcpy(&d, &bits, 8);
    const auto f = static_cast<float>(d);
    std::memcpy(a + 4 * row, &f, 4);
  } else {
    std::memcpy(a + 8 * row, &w, 8);
  }
}

// A row word: the table's offset / 8 in bits 3-34, the row in bits 35-63. So a table lies
// below 32 GiB and has fewer than 2^29 rows (the writer makes a plain dict otherwise).
inline constexpr std::uint64_t max_table_offset = (std::uint64_t{1} << 35) - 8;
inline constexpr std::uint64_t max_table_rows = std::uint64_t{1} << 29;
inline word row_word(std::uint64_t table_off, std::uint32_t row) noexcept {
  return (word{row} << 35) | ((table_off / 8) << 3) | tag_row;
}
inline std::uint64_t row_table_offset(word w) noexcept { return ((w >> 3) & 0xffffffff) * 8; }
inline std::uint32_t row_of(word w) noexcept { return static_cast<std::uint32_t>(w >> 35); }

// Any dict as readers see it, from its word: a dict, dict16 or table node, or a row of a table.
// Every reader of dict values goes through it.
class dict_reader {
 public:
  // Pre: w is a tag_row word of a checked graph, or a node word of a node with is_dict(kind).
  dict_reader(const char* base, word w) noexcept {
    if ((w & tag_mask) == tag_row) {
      off_ = row_table_offset(w);
      row_ = row_of(w);
      is_row_ = true;
    } else {
      off_ = w;
    }
    n_ = node_at<node_header>(base, off_);
  }
  bool is_row() const noexcept { return is_row_; }
  // The table a row belongs to, or the dict node.
  const node_header* node() const noexcept { return n_; }
  std::uint32_t count() const noexcept { return is_row_ ? n_->small_count : dict_count(n_); }
  std::uint64_t keys_offset() const noexcept {
    return is_row_ ? reinterpret_cast<const table_node*>(n_)->shape : dict_keys_offset(n_);
  }
  word value(std::uint32_t i) const noexcept {
    if (is_row_) return column_value(reinterpret_cast<const table_node*>(n_), i, row_);
    if (n_->kind == kind_table) return row_word(off_, i);
    return dict_values(n_)[i];
  }

 private:
  const node_header* n_;
  std::uint64_t off_;
  std::uint32_t row_ = 0;
  bool is_row_ = false;
};

// The value words inside a non-leaf node, in the order readers meet them: a dict's keys node
// first (as a node reference), then its values; a list's or tuple's items; a table's keys.
// A table node's: its keys node, its shape, then every stored field, column by column.
inline std::size_t child_count(const node_header* n) noexcept {
  if (n->kind == kind_table) return 2 + std::size_t{n->count} * n->small_count;
  if (is_dict(n->kind)) return 1 + std::size_t{dict_count(n)};
  return n->count;
}
inline word child(const node_header* n, std::size_t i) noexcept {
  if (n->kind == kind_table) {
    const auto* t = reinterpret_cast<const table_node*>(n);
    if (i < 2) return i == 0 ? t->keys : t->shape;
    return column_value(t, static_cast<std::uint32_t>((i - 2) / n->count),
                        static_cast<std::uint32_t>((i - 2) % n->count));
  }
  if (is_dict(n->kind)) return i == 0 ? dict_keys_offset(n) : dict_values(n)[i - 1];
  if (n->kind == kind_list || n->kind == kind_tuple) return seq_items(n)[i];
  return table_keys(reinterpret_cast<const table_header*>(n))[i];
}

// ---------------------------------------------------------------------------------------------
// Read cost: how many objects one read (thaw(), a tuple) builds at most
// ---------------------------------------------------------------------------------------------
// A reference costs 1 when it is a scalar, a str/bytes/big int or a shared (flag_shared) node
// (built once per read: its own cost is counted once for the whole graph), and cost(node) for
// any other node, where cost(node) = 1 + the sum over its child words (for a dict: its keys node
// and its values). A graph's read cost is the sum of cost() over its shared nodes plus what its
// root reference costs; no read of any part of it builds more objects than that. Nesting is
// bounded the same way: height(node) = 1 + the largest height among its children (0 for
// scalars and leaves), counted through shared nodes too. A table counts as the dict of dicts
// it reads as: cost(table) = 1 + cost(its keys node) + the sum over rows of (1 + cost(shape) +
// its values' costs), height(table) = 2 + the largest height among its keys node, its shape
// and its values.

// Objects a read of a graph of `graph_bytes` may build: 2 per byte, at least 16 Mi. Every graph
// freeze() builds stays below it (a reference costs at most what its 8-byte word allows, since
// content-shared lists and tuples hold only scalars and leaves); a crafted one beyond is refused.
inline std::uint64_t read_cost_limit(std::size_t graph_bytes) noexcept {
  return std::max<std::uint64_t>(std::uint64_t{1} << 24, 2 * std::uint64_t{graph_bytes});
}

// a + b, stopping at 2^62 (costs of crafted graphs can overflow; any limit is far below).
inline std::uint64_t add_cost(std::uint64_t a, std::uint64_t b) noexcept {
  constexpr std::uint64_t cap = std::uint64_t{1} << 62;
  return a >= cap || b >= cap - a ? cap : a + b;
}

// ---------------------------------------------------------------------------------------------
// Tables (keys, set, frozenset): index slots, the probe, and building one
// ---------------------------------------------------------------------------------------------

// One index slot: 0 (empty) or tag << index_bits | (entry + 1), the tag being the upper bits of
// the key's hash. Slot is std::uint32_t in a table with flag_narrow_index (8 tag bits, 24 index
// bits), std::uint64_t otherwise (32 and 32).
template <class Slot>
struct index_slot {
  static constexpr unsigned index_bits = sizeof(Slot) == 4 ? 24 : 32;
  static constexpr Slot index_mask = (Slot{1} << index_bits) - 1;

  static constexpr Slot tag_of_hash(std::uint64_t h) noexcept {
    return static_cast<Slot>(h >> (64 - (8 * sizeof(Slot) - index_bits)));
  }
  static constexpr Slot make(std::uint64_t h, std::uint32_t entry) noexcept {
    return static_cast<Slot>(tag_of_hash(h) << index_bits | (Slot{entry} + 1));
  }
  static constexpr Slot tag(Slot s) noexcept { return s >> index_bits; }
  // The slot's entry + 1: 0 in an empty slot (and in a crafted one; the graph check refuses it).
  static constexpr std::uint64_t entry_plus_one(Slot s) noexcept { return s & index_mask; }
};

template <class Slot>
const Slot* table_index(const table_header* t) noexcept {
  return reinterpret_cast<const Slot*>(t + 1);
}

// find_entry's answers besides an entry index.
inline constexpr std::int64_t entry_absent = -1;
inline constexpr std::int64_t entry_failed = -2;

// The slot a probe for hash h starts at, and the one after pos (wrapping at the capacity).
inline std::uint32_t first_slot(const table_header* t, std::uint64_t h) noexcept {
  if (t->h.flags & flag_any_capacity)  // fastrange: no power of two needed
    return static_cast<std::uint32_t>((h & UINT32_MAX) * t->capacity >> 32);
  return static_cast<std::uint32_t>(h) & (t->capacity - 1);
}
inline std::uint32_t next_slot(const table_header* t, std::uint32_t pos) noexcept {
  return pos + 1 == t->capacity ? 0 : pos + 1;
}

// Probes table `t` for hash h, linearly from first_slot(): match(i) says whether entry i
// (whose slot carries h's tag) is the key: 1 yes, 0 no, -1 failed. Returns the entry, or
// entry_absent at the first empty slot, or entry_failed when match failed.
// Pre: the table passed graph_check (or was built by build_table_index): an empty slot exists.
template <class Slot, class Match>
std::int64_t probe(const table_header* t, std::uint64_t h, Match&& match) {
  using slot = index_slot<Slot>;
  const Slot tag = slot::tag_of_hash(h);
  const Slot* index = table_index<Slot>(t);
  for (std::uint32_t pos = first_slot(t, h);; pos = next_slot(t, pos)) {
    const Slot e = index[pos];
    if (e == 0) return entry_absent;
    if (slot::tag(e) != tag) continue;
    const auto i = static_cast<std::uint32_t>(slot::entry_plus_one(e) - 1);
    const int r = match(i);
    if (r) return r > 0 ? std::int64_t{i} : entry_failed;
  }
}

template <class Match>
std::int64_t find_entry(const table_header* t, std::uint64_t h, Match&& match) {
  if (t->h.flags & flag_narrow_index) return probe<std::uint32_t>(t, h, match);
  return probe<std::uint64_t>(t, h, match);
}

// Index slots of a table of n keys (flag_any_capacity): n * 4 / 3 + 1 (load factor <= 3/4, a
// free slot), at least 4. 1M keys take 5.3 bytes of 4-byte slots each, where the smallest power
// of two took 8.
inline std::uint32_t table_capacity(std::uint32_t n) noexcept {
  return static_cast<std::uint32_t>(std::max<std::uint64_t>(4, std::uint64_t{n} + n / 3 + 1));
}

// Most keys a table may hold (the writer refuses more).
inline constexpr std::size_t max_table_keys = UINT32_MAX / 2;

// Whether a table of n keys uses 4-byte slots (every entry + 1 fits in 24 bits).
inline bool narrow_table(std::size_t n) noexcept { return n < (std::size_t{1} << 24) - 1; }

// Bytes of a table of n keys with `capacity` slots: header, index, key words (4 bytes each with
// narrow_keys).
inline std::size_t table_bytes(std::size_t n, std::uint32_t capacity,
                               bool narrow_keys = false) noexcept {
  return sizeof(table_header) + (narrow_table(n) ? 4 : 8) * std::size_t{capacity} +
         (narrow_keys ? 4 : 8) * n;
}

// Writes a table header for n keys (n <= max_table_keys) at `out`, which holds
// table_bytes(n, table_capacity(n), narrow_keys) zero bytes. The key words are the caller's
// (put_table_key).
inline void write_table_header(void* out, kind k, std::uint32_t n,
                               bool narrow_keys = false) noexcept {
  table_header t{};
  t.h = {k,
         static_cast<std::uint8_t>((narrow_table(n) ? flag_narrow_index : 0) | flag_any_capacity |
                                   (narrow_keys ? flag_narrow_keys : 0)),
         0, n};
  t.capacity = table_capacity(n);
  std::memcpy(out, &t, sizeof t);
}

// Writes key i's word w into the table at t (header written; w fits_narrow_key in a table with
// flag_narrow_keys).
inline void put_table_key(table_header* t, std::size_t i, word w) noexcept {
  char* p = reinterpret_cast<char*>(t + 1) + std::size_t{t->capacity} * table_slot_size(t);
  if (t->h.flags & flag_narrow_keys) {
    const auto v = static_cast<std::int32_t>(static_cast<std::int64_t>(w));
    std::memcpy(p + 4 * i, &v, 4);
  } else {
    std::memcpy(p + 8 * i, &w, 8);
  }
}

// Adds entry i, whose key hashes to h, to the index of the table at `t` (header written):
// entries go in one at a time, in order, as build_table_index puts them.
inline void add_table_entry(table_header* t, std::uint32_t i, std::uint64_t h) noexcept {
  auto put = [&](auto* index) {
    using Slot = std::remove_reference_t<decltype(*index)>;
    std::uint32_t pos = first_slot(t, h);
    while (index[pos] != 0) pos = next_slot(t, pos);
    index[pos] = index_slot<Slot>::make(h, i);
  };
  if (t->h.flags & flag_narrow_index) put(reinterpret_cast<std::uint32_t*>(t + 1));
  else put(reinterpret_cast<std::uint64_t*>(t + 1));
}

// Fills the index of the table at `t` (header written, index still zero): entry i has hash
// hashes[i], i < t->h.count.
inline void build_table_index(table_header* t, const std::uint64_t* hashes) noexcept {
  for (std::uint32_t i = 0; i < t->h.count; ++i) add_table_entry(t, i, hashes[i]);
}

}  // namespace permafrost::python
