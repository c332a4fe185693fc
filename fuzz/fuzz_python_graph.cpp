// Fuzz target: the check permafrost.open() runs on a Python image's frozen graph
// (python/src/graph_check.cpp). The input is the graph's bytes, as they would sit in a mapped
// image whose checksums are right. The check must never read outside the bytes (ASan), and a graph
// it accepts must be safe for the readers: this target then reads every accepted node the way
// module.cpp does (format.hpp's accessors, every str byte, a probe of every table) and aborts if a
// probe would not end.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "format.hpp"
#include "graph_check.hpp"

namespace {

using namespace permafrost::python;

const char* g_base = nullptr;
std::size_t g_size = 0;
std::uint64_t g_sink = 0;  // keeps the reads from being optimised away

template <class Slot>
void probe_all(const table_header* t) {
  // As module.cpp's probe(): from every start position, the walk meets an empty slot within
  // `capacity` steps, and every used slot names an entry below the count.
  constexpr unsigned index_bits = sizeof(Slot) == 4 ? 24 : 32;
  constexpr Slot index_mask = (Slot{1} << index_bits) - 1;
  const auto* index = reinterpret_cast<const Slot*>(t + 1);
  const word* keys = table_keys(t);
  bool empty_seen = false;
  for (std::uint32_t i = 0; i < t->capacity; ++i) {
    if (index[i] == 0) {
      empty_seen = true;
      continue;
    }
    const auto entry = static_cast<std::uint32_t>((index[i] & index_mask) - 1);
    if (entry >= t->h.count) std::abort();
    g_sink += keys[entry];
  }
  if (!empty_seen) std::abort();
}

void read_word(word w) {
  if ((w & tag_mask) == tag_float) {
    double d;
    std::memcpy(&d, g_base + (w & ~tag_mask), sizeof d);
    g_sink += static_cast<std::uint64_t>(d != d);
  }
}

void read_node(std::uint64_t off) {
  const auto* n = reinterpret_cast<const node_header*>(g_base + off);
  switch (n->kind) {
    case kind_str:
    case kind_str16:
      for (std::size_t i = 0; i < str_size(n); ++i)
        g_sink += static_cast<unsigned char>(str_bytes(n)[i]);
      return;
    case kind_bytes:
    case kind_bigint:
      for (std::size_t i = 0; i < n->count; ++i)
        g_sink += static_cast<unsigned char>(node_bytes(n)[i]);
      return;
    case kind_list:
    case kind_tuple:
      for (std::uint32_t i = 0; i < n->count; ++i) read_word(seq_items(n)[i]);
      return;
    case kind_dict:
    case kind_dict16: {
      const auto* t = reinterpret_cast<const table_header*>(g_base + dict_keys_offset(n));
      if (t->h.kind != kind_keys || t->h.count != dict_count(n)) std::abort();
      for (std::uint32_t i = 0; i < dict_count(n); ++i) read_word(dict_values(n)[i]);
      return;
    }
    case kind_keys:
    case kind_set:
    case kind_frozenset: {
      const auto* t = reinterpret_cast<const table_header*>(n);
      if (table_slot_size(t) == 4) probe_all<std::uint32_t>(t);
      else probe_all<std::uint64_t>(t);
      for (std::uint32_t i = 0; i < n->count; ++i) read_word(table_keys(t)[i]);
      return;
    }
    default: std::abort();  // the check accepted a node the readers do not know
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Exactly `size` bytes, so that ASan sees any read past them; operator new aligns to 16 (an
  // image's data is 64 KiB-aligned, the check needs 8).
  std::vector<char> exact(data, data + size);
  g_base = exact.data();
  g_size = size;
  graph_check check(g_base, g_size);
  if (!check.run().empty()) return 0;
  for (std::uint64_t off = 0; off + 8 <= g_size; off += 8) {
    if (check.is_node(off)) read_node(off);
  }
  return 0;
}
