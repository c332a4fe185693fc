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
// Nodes start with an 8-byte header {u8 kind, u8 flags, u16 0, u32 count}, except str16 and
// dict16, whose header packs what they need (smaller records):
//   str, bytes:   count bytes follow (str: UTF-8, with surrogatepass when flag_surrogates)
//   str16:        {u8 kind, u8 flags, u16 length}, then the bytes: a str shorter than 64 KiB
//   bigint:       count bytes of little-endian two's complement follow
//   list, tuple:  count value words follow
//   dict:         u64 offset of a keys node, then count value words (values[i] belongs to key i);
//                 dicts with the same keys in the same order share one keys node
//   dict16:       {u8 kind, u8 0, u16 count, u32 keys node offset / 8}, then count value words:
//                 a dict of fewer than 64 Ki keys whose keys node lies below 32 GiB
//   keys, set, frozenset: u32 capacity (power of two), u32 0, then `capacity` index slots, then
//                 count key words in insertion order. A slot is 0 (empty) or
//                 (upper 32 bits of the key's hash) << 32 | (entry index + 1), 8 bytes; with
//                 flag_narrow_index (fewer than 2^24 - 1 keys) 4 bytes: (upper 8 bits of the hash)
//                 << 24 | (entry index + 1). Linear probing from the hash's low bits.
// Nodes of at most 64 bytes with equal bytes may be shared by any number of references.
// Key hashes are key_hash() in module.cpp: seedless (hash_bytes over UTF-8 for str), so an index
// built in one process is valid in every other one, whatever PYTHONHASHSEED says.
//
// Thread safety: plain data; frozen bytes may be read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace permafrost::python {

using word = std::uint64_t;

inline constexpr word tag_mask = 7;
inline constexpr word tag_node = 0;
inline constexpr word tag_int = 1;
inline constexpr word tag_const = 2;
inline constexpr word tag_float = 3;
inline constexpr word tag_short_str = 4;
inline constexpr word tag_inline_float = 5;
inline constexpr std::size_t max_short_str = 7;

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
};

inline constexpr std::uint8_t flag_ascii = 1;         // str: every byte < 0x80
inline constexpr std::uint8_t flag_surrogates = 2;    // str: decode with surrogatepass
inline constexpr std::uint8_t flag_narrow_index = 1;  // keys/set: 4-byte index slots

struct node_header {
  std::uint8_t kind;
  std::uint8_t flags;
  std::uint16_t unused;
  std::uint32_t count;
};
static_assert(sizeof(node_header) == 8);

// keys, set and frozenset nodes.
struct table_header {
  node_header h;
  std::uint32_t capacity;
  std::uint32_t unused;
};
static_assert(sizeof(table_header) == 16);

struct dict_header {
  node_header h;
  std::uint64_t keys;  // offset of the keys node
};
static_assert(sizeof(dict_header) == 16);

// Offset 0 of every frozen graph: identifies the format and names the root value.
struct root_header {
  char magic[8];  // "pfpy\0v1"
  word root;
};
inline constexpr char root_magic[8] = {'p', 'f', 'p', 'y', 0, 'v', '1', 0};

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

inline std::size_t table_slot_size(const table_header* t) noexcept {
  return (t->h.flags & flag_narrow_index) ? 4 : 8;
}
inline const word* table_keys(const table_header* t) noexcept {
  return reinterpret_cast<const word*>(reinterpret_cast<const char*>(t + 1) +
                                       std::size_t{t->capacity} * table_slot_size(t));
}
inline bool is_str(std::uint8_t k) noexcept { return k == kind_str || k == kind_str16; }
inline bool is_dict(std::uint8_t k) noexcept { return k == kind_dict || k == kind_dict16; }
// A str node's UTF-8 bytes.
inline const char* str_bytes(const node_header* n) noexcept {
  return reinterpret_cast<const char*>(n) + (n->kind == kind_str16 ? 4 : 8);
}
inline std::size_t str_size(const node_header* n) noexcept {
  return n->kind == kind_str16 ? n->unused : n->count;
}
inline std::uint32_t dict_count(const node_header* n) noexcept {
  return n->kind == kind_dict16 ? n->unused : n->count;
}
inline std::uint64_t dict_keys_offset(const node_header* n) noexcept {
  return n->kind == kind_dict16 ? std::uint64_t{n->count} * 8
                                : reinterpret_cast<const dict_header*>(n)->keys;
}
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

// Smallest power of two >= n * 4 / 3 + 1 (load factor <= 3/4), at least 4.
inline std::uint32_t table_capacity(std::uint32_t n) noexcept {
  std::uint64_t want = std::uint64_t{n} + n / 3 + 1;
  std::uint64_t c = 4;
  while (c < want) c <<= 1;
  return static_cast<std::uint32_t>(c);
}

}  // namespace permafrost::python
