// permafrost for Python — checking a frozen value graph (see graph_check.hpp).
#include "graph_check.hpp"

#include "scalar_format.hpp"

namespace permafrost::python {
namespace {

std::string at_offset(const char* what, std::uint64_t off) {
  return std::string(what) + " at offset " + std::to_string(off);
}

bool power_of_two(std::uint32_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

template <class Slot>
std::string check_slots(const table_header* t, std::uint64_t off) {
  const Slot* index = table_index<Slot>(t);
  std::uint64_t used = 0;
  for (std::uint32_t i = 0; i < t->capacity; ++i) {
    if (index[i] == 0) continue;
    const std::uint64_t entry = index_slot<Slot>::entry_plus_one(index[i]);
    if (entry == 0 || entry > t->h.count)
      return at_offset("an index slot names no entry in the table", off);
    ++used;
  }
  if (used > t->h.count) return at_offset("more index slots used than entries in the table", off);
  return {};
}

}  // namespace

bool graph_check::is_node(std::uint64_t off) const noexcept {
  return done_ && off % 8 == 0 && off < size_ && test(valid_, off);
}

std::string graph_check::run() {
  if (size_ < sizeof(root_header)) return "smaller than the 16-byte root header";
  const auto* root = reinterpret_cast<const root_header*>(base_);
  for (std::size_t i = 0; i < sizeof root_magic; ++i) {
    if (root->magic[i] != root_magic[i]) return "not a permafrost Python graph (bad magic)";
  }
  const std::size_t words = (size_ / 8 + 63) / 64;
  open_.assign(words, 0);
  valid_.assign(words, 0);
  stack_.clear();
  if (std::string err = check_word(root->root, offsetof(root_header, root)); !err.empty())
    return err;
  while (!stack_.empty()) {
    const std::size_t top = stack_.size() - 1;
    const std::uint64_t off = stack_[top].off;
    const auto* n = reinterpret_cast<const node_header*>(base_ + off);
    if (stack_[top].next == child_count(n)) {
      open_[off / 8 / 64] &= ~(std::uint64_t{1} << (off / 8 % 64));
      set(valid_, off);
      stack_.pop_back();
      continue;
    }
    const word w = child(n, stack_[top].next++);
    if (std::string err = check_word(w, off); !err.empty()) return err;  // may push
  }
  done_ = true;
  std::vector<std::uint64_t>().swap(open_);  // all clear now; valid_ is what is_node() reads
  std::vector<frame>().swap(stack_);
  return {};
}

std::string graph_check::check_word(word w, std::uint64_t at) {
  switch (w & tag_mask) {
    case tag_node: return enter(w);
    case tag_int:
    case tag_short_str:
    case tag_inline_float: return {};
    case tag_const:
      if (w == const_none || w == const_false || w == const_true) return {};
      return at_offset("an unknown constant in the node", at);
    case tag_float: {
      const std::uint64_t off = w & ~tag_mask;
      if (off < sizeof(root_header) || off > size_ - 8)
        return at_offset("a float outside the graph, referenced from the node", at);
      return {};
    }
  }
  return at_offset("an unknown value tag in the node", at);
}

std::string graph_check::enter(std::uint64_t off) {
  // Every node is at least 8 bytes at an 8-aligned offset (freeze() rounds them up).
  if (off < sizeof(root_header) || off > size_ - 8)
    return at_offset("a reference outside the graph", off);
  if (test(valid_, off)) return {};
  if (test(open_, off)) return at_offset("a node that contains itself", off);
  const auto* n = reinterpret_cast<const node_header*>(base_ + off);
  const std::uint64_t avail = size_ - off;
  switch (n->kind) {
    case kind_str:
    case kind_str16:
    case kind_bytes:
    case kind_bigint: {
      if (std::string err = check_leaf(n, off); !err.empty()) return err;
      set(valid_, off);
      return {};
    }
    case kind_list:
    case kind_tuple:
      if (8 + 8 * std::uint64_t{n->count} > avail) return at_offset("a list past the end", off);
      break;
    case kind_dict:
    case kind_dict16:
      if (std::string err = check_dict(n, off); !err.empty()) return err;
      break;
    case kind_keys:
    case kind_set:
    case kind_frozenset:
      if (std::string err = check_table(n, off); !err.empty()) return err;
      break;
    case kind_datetime:
    case kind_date:
    case kind_time:
    case kind_timedelta:
    case kind_decimal:
    case kind_uuid:
      if (const char* err = scalar_node_error(n, avail)) return at_offset(err, off);
      set(valid_, off);
      return {};
    default: return at_offset("a node of unknown kind", off);
  }
  if (stack_.size() >= max_nesting) return at_offset("nesting deeper than 10002 levels", off);
  set(open_, off);
  stack_.push_back({off, 0});
  return {};
}

std::string graph_check::check_leaf(const node_header* n, std::uint64_t off) {
  const std::uint64_t avail = size_ - off;
  const bool str = is_str(n->kind);
  const std::uint64_t header = n->kind == kind_str16 ? 4 : 8;
  const std::uint64_t bytes = str ? str_size(n) : n->count;
  if (header + bytes > avail) return at_offset("a str, bytes or int past the end", off);
  if (str && (n->flags & flag_ascii)) {
    const char* p = str_bytes(n);
    for (std::uint64_t i = 0; i < bytes; ++i) {
      if (static_cast<unsigned char>(p[i]) >= 0x80)
        return at_offset("a str marked ASCII holds a non-ASCII byte", off);
    }
  }
  return {};
}

std::string graph_check::check_table(const node_header* n, std::uint64_t off) {
  const std::uint64_t avail = size_ - off;
  if (sizeof(table_header) > avail) return at_offset("a table past the end", off);
  const auto* t = reinterpret_cast<const table_header*>(n);
  if (!power_of_two(t->capacity) || t->capacity <= n->count)
    return at_offset("a table whose capacity is no power of two above its count", off);
  const std::uint64_t slots = std::uint64_t{t->capacity} * table_slot_size(t);
  if (sizeof(table_header) + slots + 8 * std::uint64_t{n->count} > avail)
    return at_offset("a table past the end", off);
  return table_slot_size(t) == 4 ? check_slots<std::uint32_t>(t, off)
                                 : check_slots<std::uint64_t>(t, off);
}

std::string graph_check::check_dict(const node_header* n, std::uint64_t off) {
  const std::uint64_t avail = size_ - off;
  const std::uint64_t header = n->kind == kind_dict16 ? 8 : sizeof(dict_header);
  if (header > avail || header + 8 * std::uint64_t{dict_count(n)} > avail)
    return at_offset("a dict past the end", off);
  // The keys table is checked in full when the walk enters it (its first child); here only what
  // the dict itself relies on: that it is a keys table with as many entries.
  const std::uint64_t keys = dict_keys_offset(n);
  if (keys % 8 || keys < sizeof(root_header) || keys > size_ - sizeof(table_header))
    return at_offset("a dict whose keys table is outside the graph", off);
  const auto* t = reinterpret_cast<const table_header*>(base_ + keys);
  if (t->h.kind != kind_keys || t->h.count != dict_count(n))
    return at_offset("a dict whose keys table does not match it", off);
  return {};
}

std::size_t graph_check::child_count(const node_header* n) const noexcept {
  if (is_dict(n->kind)) return 1 + dict_count(n);  // the keys table, then the values
  return n->count;                                 // items, or a table's keys
}

word graph_check::child(const node_header* n, std::size_t i) const noexcept {
  if (is_dict(n->kind)) return i == 0 ? dict_keys_offset(n) : dict_values(n)[i - 1];
  if (n->kind == kind_list || n->kind == kind_tuple) return seq_items(n)[i];
  return table_keys(reinterpret_cast<const table_header*>(n))[i];
}

}  // namespace permafrost::python
