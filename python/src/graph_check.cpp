// permafrost for Python — checking a frozen value graph (see graph_check.hpp).
#include "graph_check.hpp"

#include <algorithm>

#include "scalar_format.hpp"

namespace permafrost::python {
namespace {

std::string at_offset(const std::string& what, std::uint64_t off) {
  return what + " at offset " + std::to_string(off);
}

bool power_of_two(std::uint32_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

// The height and read cost of a node whose children are all scalars and leaves (a dict: with
// such a keys node), computed from its header alone.
std::uint32_t plain_height(const node_header* n) noexcept { return is_dict(n->kind) ? 2 : 1; }
std::uint64_t plain_objects(const node_header* n) noexcept {
  const std::uint64_t count = is_dict(n->kind) ? dict_count(n) : n->count;
  return is_dict(n->kind) ? 2 + 2 * count : 1 + count;
}

// Nodes a graph from freeze() may reference more than once without flag_shared, besides leaves:
// keys nodes (dicts with the same keys) and lists and tuples of at most 64 bytes (stored once by
// content).
bool shared_by_content(const node_header* n) noexcept {
  if (n->kind == kind_keys) return true;
  return (n->kind == kind_list || n->kind == kind_tuple) && 8 + 8 * std::uint64_t{n->count} <= 64;
}

// The bytes a node checked by enter() spans (its header and everything its check reads, each
// check costing about one step per 4 bytes or more). A scalar node (datetime...) counts 8: its
// check reads a fixed few bytes.
std::uint64_t node_extent(const node_header* n) noexcept {
  switch (n->kind) {
    case kind_str:
    case kind_str16: return (n->kind == kind_str16 ? 4 : 8) + std::uint64_t{str_size(n)};
    case kind_bytes:
    case kind_bigint: return 8 + std::uint64_t{n->count};
    case kind_list:
    case kind_tuple: return 8 + 8 * std::uint64_t{n->count};
    case kind_dict:
    case kind_dict16:
      return (n->kind == kind_dict16 ? 8 : sizeof(dict_header)) + 8 * std::uint64_t{dict_count(n)};
    case kind_table: {
      const auto* t = reinterpret_cast<const table_node*>(n);
      return t->rows_start + std::uint64_t{t->row_bytes} * n->count;
    }
    case kind_keys:
    case kind_set:
    case kind_frozenset: {
      const auto* t = reinterpret_cast<const table_header*>(n);
      return sizeof(table_header) + std::uint64_t{t->capacity} * table_slot_size(t) +
             table_key_size(t) * std::uint64_t{n->count};
    }
    default: return 8;
  }
}

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
  version_ = root_version(root);
  if (version_ == 0) return "not a permafrost Python graph (bad magic)";
  if (version_ > newest_version)
    return "a permafrost Python graph of format v" + std::to_string(version_) +
           ", newer than this permafrost reads (v1 to v" + std::to_string(newest_version) +
           "): read it with a newer permafrost";
  const std::size_t words = (size_ / 8 + 63) / 64;
  open_.assign(words, 0);
  valid_.assign(words, 0);
  plain_.assign(words, 0);
  costs_.clear();
  stack_.clear();
  shared_objects_ = 0;
  examined_ = 0;
  reference_cost root_cost;
  bool pushed = false;
  if (std::string err =
          check_word(root->root, offsetof(root_header, root), root_cost, pushed, false);
      !err.empty())
    return err;
  std::size_t until_step = check_step_values;
  while (!stack_.empty()) {
    if (--until_step == 0) {
      until_step = check_step_values;
      if (step_) step_();
    }
    frame& top = stack_.back();
    const auto* n = node_at<node_header>(base_, top.off);
    reference_cost cost;
    if (top.next == child_count(n)) {
      if (std::string err = pop(cost); !err.empty()) return err;
      if (stack_.empty()) root_cost = cost;
      else add_to_top(cost);
      continue;
    }
    const std::uint64_t off = top.off;
    // A dict's first child, and a table node's first two, name keys tables; no other word may.
    const bool keys_slot = top.next < (n->kind == kind_table ? 2u : is_dict(n->kind) ? 1u : 0u);
    const word w = child(n, top.next++);
    if (std::string err = check_word(w, off, cost, pushed, keys_slot); !err.empty())
      return err;  // may push
    if (!pushed) add_to_top(cost);
  }
  const std::uint64_t limit = read_cost_limit(size_);
  if (add_cost(shared_objects_, root_cost.objects) > limit)
    return "reading it would build more than " + std::to_string(limit) + " objects";
  done_ = true;
  // All clear now; valid_ is what is_node() reads.
  std::vector<std::uint64_t>().swap(open_);
  std::vector<std::uint64_t>().swap(plain_);
  std::unordered_map<std::uint64_t, node_cost>().swap(costs_);
  std::vector<frame>().swap(stack_);
  return {};
}

void graph_check::add_to_top(const reference_cost& cost) noexcept {
  frame& top = stack_.back();
  top.child_height = std::max(top.child_height, cost.height);
  top.child_objects = add_cost(top.child_objects, cost.objects);
}

std::string graph_check::check_word(word w, std::uint64_t at, reference_cost& cost, bool& pushed,
                                    bool keys_slot) {
  pushed = false;
  cost = {};
  switch (w & tag_mask) {
    case tag_node:
      // Every node is at least 8 bytes at an 8-aligned offset (freeze() rounds them up).
      if (w < sizeof(root_header) || w > size_ - 8)
        return at_offset("a reference outside the graph", w);
      // Readers build no value of a keys table: reading one where a value goes raised
      // SystemError ("corrupt frozen value") at every read of a graph the check had accepted.
      if (!keys_slot && node_at<node_header>(base_, w)->kind == kind_keys)
        return at_offset("a keys table referenced as a value", w);
      return test(valid_, w) ? revisit(w, cost) : enter(w, pushed);
    case tag_int:
    case tag_inline_float: return {};
    case tag_short_str: return check_short_str(w, at);
    case tag_packed_str: return check_packed_str(w, at);
    case tag_row: return at_offset("a row word (never stored) in the node", at);
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

std::string graph_check::check_short_str(word w, std::uint64_t at) const {
  // As short_str_word writes it: bits 6-7 clear, no byte past the length (such a key is never
  // found: lookups compare whole words), and UTF-8 as the decoder takes it (a root of bytes
  // fe ff made open() itself raise UnicodeDecodeError, a deeper one every read of it).
  const std::size_t n = short_str_size(w);
  if ((w & 0xC0) != 0 || (n < max_short_str && (w >> (8 + 8 * n)) != 0))
    return at_offset("a short str with bits set past its bytes, in the node", at);
  char bytes[8];
  short_str_bytes(w, bytes);
  if (!valid_utf8(std::string_view(bytes, n)))
    return at_offset("a short str that is not UTF-8 (or holds a surrogate), in the node", at);
  return {};
}

std::string graph_check::check_packed_str(word w, std::uint64_t at) const {
  if (version_ < 2) return at_offset("a packed str in a v1 graph, referenced from the node", at);
  // Not a node: any byte offset, checked at every reference (at most 256 bytes for 8 of word).
  const std::uint64_t off = packed_str_offset(w);
  if (off < sizeof(root_header) || off >= size_ ||
      1 + std::uint64_t{static_cast<unsigned char>(base_[off])} > size_ - off)
    return at_offset("a packed str outside the graph, referenced from the node", at);
  const std::string_view s = packed_str(base_, w);
  if (s.size() < min_packed_str)
    return at_offset("a packed str shorter than 8 bytes, referenced from the node", at);
  if (!valid_utf8(s))
    return at_offset(
        "a packed str that is not UTF-8 (or holds a surrogate), referenced from the node", at);
  return {};
}

std::string graph_check::revisit(std::uint64_t off, reference_cost& cost) const {
  const auto* n = node_at<node_header>(base_, off);
  if (is_leaf(n->kind)) return {};  // {0, 1}
  if (is_shared(n)) {  // built once per read: its own cost is counted once, in shared_objects_
    cost = {costs_.at(off).height, 1};
    return {};
  }
  if (test(plain_, off)) {
    cost = {plain_height(n), plain_objects(n)};
    return {};
  }
  if (const auto it = costs_.find(off); it != costs_.end()) {
    cost = {it->second.height, it->second.objects};
    return {};
  }
  return at_offset("a node referenced twice that is neither marked shared nor shared by content",
                   off);
}

// Pre: n's kind-specific check passed (its extent lies inside the graph).
std::string graph_check::count_extent(const node_header* n, std::uint64_t off) {
  // Nodes never overlap in a graph freeze() wrote, so the nodes checked span at most its size.
  // Overlapping ones (many nodes whose bodies are the same bytes) multiplied the check's work:
  // 20,000 crafted table nodes over one block of rows (17.7 MB) kept open() busy ~40 minutes.
  examined_ += node_extent(n);
  if (examined_ > size_)
    return at_offset("a node that overlaps others (the nodes span more "
                     "bytes than the graph holds)",
                     off);
  return {};
}

std::string graph_check::enter(std::uint64_t off, bool& pushed) {
  if (test(open_, off)) return at_offset("a node that contains itself", off);
  const auto* n = node_at<node_header>(base_, off);
  const std::uint64_t avail = size_ - off;
  switch (n->kind) {
    case kind_str:
    case kind_str16:
    case kind_bytes:
    case kind_bigint: {
      if (std::string err = check_leaf(n, off); !err.empty()) return err;
      if (std::string err = count_extent(n, off); !err.empty()) return err;
      set(valid_, off);
      return {};  // cost {0, 1}
    }
    case kind_list:
    case kind_tuple:
      if (8 + 8 * std::uint64_t{n->count} > avail) return at_offset("a list past the end", off);
      break;
    case kind_dict:
    case kind_dict16:
      if (std::string err = check_dict(n, off); !err.empty()) return err;
      break;
    case kind_table:
      if (std::string err = check_table_node(n, off); !err.empty()) return err;
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
      if (std::string err = count_extent(n, off); !err.empty()) return err;
      set(valid_, off);
      return {};
    default: return at_offset("a node of unknown kind", off);
  }
  if (std::string err = count_extent(n, off); !err.empty()) return err;
  if (stack_.size() >= max_nesting) return at_offset("nesting deeper than 10002 levels", off);
  set(open_, off);
  stack_.push_back({off});
  pushed = true;
  return {};
}

std::string graph_check::pop(reference_cost& cost) {
  const frame f = stack_.back();
  stack_.pop_back();
  const auto* n = node_at<node_header>(base_, f.off);
  node_cost own{f.child_height + 1, add_cost(f.child_objects, 1)};
  if (n->kind == kind_table) {
    if (std::string err = table_cost(n, f, own); !err.empty()) return err;
  }
  if (own.height > max_nesting) return at_offset("nesting deeper than 10002 levels", f.off);
  const std::uint64_t limit = read_cost_limit(size_);
  if (own.objects > limit)
    return at_offset(
        "a node whose reading would build more than " + std::to_string(limit) + " objects", f.off);
  open_[f.off / 8 / 64] &= ~(std::uint64_t{1} << (f.off / 8 % 64));
  set(valid_, f.off);
  const bool plain =
      n->kind != kind_table && own.height == plain_height(n) && own.objects == plain_objects(n);
  if (plain) set(plain_, f.off);
  if (is_shared(n)) {
    costs_.emplace(f.off, own);
    shared_objects_ = add_cost(shared_objects_, own.objects);
    cost = {own.height, 1};
    return {};
  }
  if (!plain && shared_by_content(n)) costs_.emplace(f.off, own);
  cost = {own.height, own.objects};
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
  } else if (str && !valid_utf8(std::string_view(str_bytes(n), bytes),
                                (n->flags & flag_surrogates) != 0)) {
    // Reading it would raise UnicodeDecodeError wherever it is reached (open() itself, for a
    // root str), and dumps() ValueError.
    return at_offset("a str that is not UTF-8 (or holds a surrogate it is not flagged for)", off);
  }
  return {};
}

std::string graph_check::check_table(const node_header* n, std::uint64_t off) {
  const std::uint64_t avail = size_ - off;
  if (sizeof(table_header) > avail) return at_offset("a table past the end", off);
  const auto* t = reinterpret_cast<const table_header*>(n);
  if (t->capacity <= n->count)
    return at_offset("a table whose capacity is not above its count", off);
  if (!(n->flags & flag_any_capacity) && !power_of_two(t->capacity))
    return at_offset("a table whose capacity is no power of two (and not flagged any)", off);
  if ((n->flags & (flag_any_capacity | flag_narrow_keys)) && version_ < 2)
    return at_offset("a table flagged any capacity or narrow keys in a v1 graph", off);
  const std::uint64_t slots = std::uint64_t{t->capacity} * table_slot_size(t);
  if (sizeof(table_header) + slots + table_key_size(t) * std::uint64_t{n->count} > avail)
    return at_offset("a table past the end", off);
  return table_slot_size(t) == 4 ? check_slots<std::uint32_t>(t, off)
                                 : check_slots<std::uint64_t>(t, off);
}

std::string graph_check::check_keys_of(std::uint64_t keys, std::uint64_t count,
                                       std::uint64_t off) const {
  if (keys % 8 || keys < sizeof(root_header) || keys > size_ - sizeof(table_header))
    return at_offset("a dict whose keys table is outside the graph", off);
  const auto* t = reinterpret_cast<const table_header*>(base_ + keys);
  if (t->h.kind != kind_keys || t->h.count != count)
    return at_offset("a dict whose keys table does not match it", off);
  return {};
}

std::string graph_check::check_table_node(const node_header* n, std::uint64_t off) const {
  const std::uint64_t avail = size_ - off;
  const auto* t = reinterpret_cast<const table_node*>(n);
  const std::uint64_t columns = n->small_count;
  const std::uint64_t header = sizeof(table_node) + 8 * columns;
  if (header > avail) return at_offset("a table node past the end", off);
  // Row words name the table by offset / 8 in 32 bits and the row in 29.
  if (off > max_table_offset || n->count >= max_table_rows)
    return at_offset("a table node beyond 32 GiB or with 2^29 rows or more", off);
  if (std::string err = check_keys_of(t->keys, n->count, off); !err.empty()) return err;
  if (std::string err = check_keys_of(t->shape, columns, off); !err.empty()) return err;
  if (t->rows_start < header || t->rows_start > avail ||
      std::uint64_t{t->row_bytes} * n->count > avail - t->rows_start)
    return at_offset("a table's rows outside the table node or the graph", off);
  // Fields packed one after another in column order, as the writers lay them out: the walk
  // checks rows x columns fields, so columns that overlapped (all reading the same 4 bytes) made a
  // 1 MB graph cost 10^9 checks, and open() ran for minutes; packed, a field is 4 bytes or more.
  std::uint64_t field = 0;
  for (std::uint64_t j = 0; j < columns; ++j) {
    const word d = table_columns(t)[j];
    const word type = d & tag_mask;
    if (type != column_word64 && type != column_word32 && type != column_float32)
      return at_offset("a table column of unknown type", off);
    if ((d >> 3) > t->row_bytes || column_width(d) > t->row_bytes - (d >> 3))
      return at_offset("a table column outside its row", off);
    if ((d >> 3) != field)
      return at_offset("a table column that does not follow the one before it in its row", off);
    field += column_width(d);
  }
  if (field != t->row_bytes) return at_offset("a table row longer than its columns", off);
  return {};
}

// A table's cost and height as the dict of dicts it reads as (format.hpp, "Read cost"): every
// row builds a dict and its shape's keys again. The shape's keys must be scalars or leaves.
std::string graph_check::table_cost(const node_header* n, const frame& f, node_cost& own) const {
  const auto* t = reinterpret_cast<const table_node*>(n);
  const auto* shape = reinterpret_cast<const table_header*>(base_ + t->shape);
  const auto kw = table_keys(shape);
  for (std::uint32_t j = 0; j < shape->h.count; ++j) {
    if ((kw[j] & tag_mask) == tag_node && !is_leaf(node_at<node_header>(base_, kw[j])->kind))
      return at_offset("a table whose shape has a container key", f.off);
  }
  const std::uint64_t per_row = 2 + std::uint64_t{shape->h.count};
  own.height = f.child_height + 2;
  own.objects = add_cost(own.objects, std::uint64_t{n->count} * per_row);
  return {};
}

std::string graph_check::check_dict(const node_header* n, std::uint64_t off) {
  const std::uint64_t avail = size_ - off;
  const std::uint64_t header = n->kind == kind_dict16 ? 8 : sizeof(dict_header);
  if (header > avail || header + 8 * std::uint64_t{dict_count(n)} > avail)
    return at_offset("a dict past the end", off);
  // The keys table is checked in full when the walk enters it (its first child); here only what
  // the dict itself relies on: that it is a keys table with as many entries.
  return check_keys_of(dict_keys_offset(n), dict_count(n), off);
}

}  // namespace permafrost::python
