// Fuzz target: the check permafrost.open() runs on a Python image's frozen graph
// (python/src/graph_check.cpp). The input is the graph's bytes, as they would sit in a mapped
// image whose checksums are right. The check must never read outside the bytes (ASan), and a graph
// it accepts must be safe for the readers: this target then reads every accepted node with the
// readers' own codec (format.hpp's accessors, every str byte, find_entry from every slot of every
// table, every row of every table of records through dict_reader) and aborts if a probe would
// not end or names an entry that does not exist, if the JSON
// text of a date, time, Decimal or UUID node is not a plain JSON string, or if the graph nests
// deeper or reads into more objects than the check promises.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "format.hpp"
#include "graph_check.hpp"
#include "scalar_format.hpp"

namespace {

using namespace permafrost::python;

const char* g_base = nullptr;
std::size_t g_size = 0;
std::uint64_t g_sink = 0;  // keeps the reads from being optimised away

// Probes the table the way the readers do (format.hpp's find_entry), from every start position,
// once with the tag of the slot found there and once with its complement: each probe must end
// (graph_check promised an empty slot) and name only entries below the count.
template <class Slot>
void probe_all(const table_header* t) {
  using slot = index_slot<Slot>;
  const Slot* index = table_index<Slot>(t);
  const key_words keys = table_keys(t);
  bool empty_seen = false;
  for (std::uint32_t i = 0; i < t->capacity; ++i) empty_seen = empty_seen || index[i] == 0;
  if (!empty_seen) std::abort();  // find_entry would never end
  constexpr unsigned tag_bits = 8 * sizeof(Slot) - slot::index_bits;
  for (std::uint32_t pos = 0; pos < t->capacity; ++pos) {
    const std::uint64_t tag = slot::tag(index[pos]);
    // Low hash bits that start the probe at pos: pos itself, or (fastrange) the smallest x with
    // x * capacity >> 32 == pos.
    const std::uint64_t low = (t->h.flags & flag_any_capacity)
                                  ? ((std::uint64_t{pos} << 32) + t->capacity - 1) / t->capacity
                                  : pos;
    if (first_slot(t, low) != pos) std::abort();
    for (const std::uint64_t h : {tag << (64 - tag_bits) | low, ~tag << (64 - tag_bits) | low}) {
      std::uint32_t steps = 0;
      const std::int64_t found = find_entry(t, h, [&](std::uint32_t i) {
        if (i >= t->h.count || ++steps > t->capacity) std::abort();
        g_sink += keys[i];
        return 0;
      });
      if (found != entry_absent) std::abort();
    }
  }
}

void read_word(word w) {
  if ((w & tag_mask) == tag_packed_str) {
    // What the readers decode strictly (values.cpp) and the JSON writer copies: UTF-8.
    const std::string_view s = packed_str(g_base, w);
    if (s.size() < min_packed_str || !valid_utf8(s)) std::abort();
    for (const char c : s) g_sink += static_cast<unsigned char>(c);
    return;
  }
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
    case kind_table: {
      // As the readers do, through dict_reader: the table's values are row words, each row's
      // values its column values.
      const auto* t = reinterpret_cast<const table_node*>(n);
      for (const std::uint64_t keys : {t->keys, t->shape}) {
        const auto* k = reinterpret_cast<const table_header*>(g_base + keys);
        if (k->h.kind != kind_keys) std::abort();
      }
      const dict_reader table(g_base, off);
      if (table.count() != n->count) std::abort();
      for (std::uint32_t r = 0; r < table.count(); ++r) {
        const word row = table.value(r);
        const dict_reader d(g_base, row);
        if (!d.is_row() || d.node() != n || d.count() != n->small_count) std::abort();
        const auto* shape = reinterpret_cast<const table_header*>(g_base + d.keys_offset());
        if (shape->h.count != d.count()) std::abort();
        for (std::uint32_t j = 0; j < d.count(); ++j) {
          const word w = d.value(j);
          if ((w & tag_mask) == tag_row) std::abort();  // the check refuses stored rows
          read_word(w);
        }
      }
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
    case kind_datetime:
    case kind_date:
    case kind_time:
    case kind_timedelta:
    case kind_decimal:
    case kind_uuid: {
      // What dumps() writes from the bytes alone (the Python readers build the object from the
      // same fields, which the check bounded): every field read, the text a JSON string.
      std::string text;
      append_scalar_json(n, text);
      if (text.size() < 2 || text.front() != '"' || text.back() != '"') std::abort();
      for (std::size_t i = 1; i + 1 < text.size(); ++i) {
        const char c = text[i];
        if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 ||
            static_cast<unsigned char>(c) >= 0x80)
          std::abort();
      }
      g_sink += text.size();
      return;
    }
    default: std::abort();  // the check accepted a node the readers do not know
  }
}

// An independent computation of what the check bounds (format.hpp, "Read cost"): recursive,
// memoised by node, in the readers' order. Aborts if an accepted graph nests deeper than
// max_nesting or reads into more than read_cost_limit() objects.
struct node_cost {
  std::uint32_t height;
  std::uint64_t objects;
};
std::unordered_map<std::uint64_t, node_cost> g_costs;
std::unordered_set<std::uint64_t> g_shared;

node_cost reference_cost(word w);

node_cost cost_of(std::uint64_t off) {
  if (const auto it = g_costs.find(off); it != g_costs.end()) return it->second;
  const auto* n = node_at<node_header>(g_base, off);
  node_cost c{0, 1};
  if (!is_leaf(n->kind)) {
    std::uint32_t height = 0;
    for (std::size_t i = 0; i < child_count(n); ++i) {
      const node_cost r = reference_cost(child(n, i));
      height = std::max(height, r.height);
      c.objects = add_cost(c.objects, r.objects);
    }
    c.height = height + 1;
    if (n->kind == kind_table) {  // read as a dict of dicts: a row builds a dict and its keys
      const auto* shape =
          node_at<table_header>(g_base, reinterpret_cast<const table_node*>(n)->shape);
      c.height = height + 2;
      c.objects = add_cost(c.objects, std::uint64_t{n->count} * (2 + shape->h.count));
    }
    if (c.height > max_nesting) std::abort();
    if (is_shared(n)) g_shared.insert(off);
  }
  g_costs.emplace(off, c);
  return c;
}

node_cost reference_cost(word w) {
  if ((w & tag_mask) != tag_node) return {0, 1};
  const node_cost c = cost_of(w);
  return is_shared(node_at<node_header>(g_base, w)) ? node_cost{c.height, 1} : c;
}

void check_read_cost(word root) {
  g_costs.clear();
  g_shared.clear();
  std::uint64_t total = reference_cost(root).objects;
  for (const std::uint64_t off : g_shared) total = add_cost(total, g_costs.at(off).objects);
  if (total > read_cost_limit(g_size)) std::abort();
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
  check_read_cost(reinterpret_cast<const root_header*>(g_base)->root);
  for (std::uint64_t off = 0; off + 8 <= g_size; off += 8) {
    if (check.is_node(off)) read_node(off);
  }
  return 0;
}
