// permafrost — the frozen hash table behind string-keyed hash_map and hash_set (internal).
//
// Layout (docs/design.md, section 3, "Layout"): the 64-byte index lines and home lines of
// hash_table.hpp, and for each line one *group* of the entries it describes: their values as an
// array, then their keys' bytes back to back. A line's size bytes are its keys' lengths (1 to 255;
// 0 escapes a key of 0 or of 256 bytes or more, whose 4-byte length then precedes its bytes in the
// group, and sets line_has_big), and its base is the group's offset in units of group_unit<V>
// bytes. So an entry costs its value and its key bytes and nothing else: no stored length, no
// padding to the value's alignment but one per group. A miss is refused by the tag, then by the
// length, before any key byte is read; a hit reads the line, then its key and its value, two
// independent reads. The table object refers to its groups and lines by self-relative offsets.
//
// Thread safety: a finished table is read-only; any number of threads may read it at once.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "permafrost/detail/hash_table.hpp"
#include "permafrost/entry.hpp"
#include "permafrost/offset_ptr.hpp"

namespace permafrost::detail {

using split_line = hash_line<true>;

// Bytes of one value in a group: none for a set.
template <class V>
inline constexpr std::size_t value_bytes = std::is_same_v<V, no_value> ? 0 : sizeof(V);

// Groups start at multiples of this (the unit of a line's base): the value's alignment, at least
// 8, so a table may hold up to 2^32 * 8 bytes (32 GiB) of groups.
template <class V>
inline constexpr std::size_t group_unit = std::max<std::size_t>(alignof(V), 8);

// A key's size byte: its length, or 0 (escape: the length is stored before the key) for the empty
// key and keys of 256 bytes or more.
inline std::uint8_t key_size_byte(std::size_t len) noexcept {
  return len - 1 < 255 ? static_cast<std::uint8_t>(len) : 0;
}

// Bytes a key takes in its group.
inline std::size_t key_footprint(std::size_t len) noexcept {
  return key_size_byte(len) != 0 ? len : sizeof(std::uint32_t) + len;
}

// The key stored at p with size byte `size`.
inline std::string_view stored_key(const char* p, std::uint8_t size) noexcept {
  if (size != 0) return {p, size};
  std::uint32_t len;
  std::memcpy(&len, p, sizeof len);
  return {p + sizeof len, len};
}

// The key after the one stored at p with size byte `size`.
inline const char* next_stored_key(const char* p, std::uint8_t size) noexcept {
  const std::string_view k = stored_key(p, size);
  return k.data() + k.size();
}

// A line with an escaped key: steps over the keys before the j-th one.
[[gnu::noinline]] inline std::string_view walk_to_key(const char* keys, const split_line& l,
                                                      unsigned j) noexcept {
  for (unsigned i = 0; i < j; ++i) keys = next_stored_key(keys, l.sizes()[i]);
  return stored_key(keys, l.sizes()[j]);
}

// Entries a line describes; counts above the capacity (only in a damaged image) are clamped.
inline unsigned line_entries(const split_line& l) noexcept {
  return std::min<unsigned>(l.count, split_line::capacity);
}

template <class V>
const std::byte* group_of(const std::byte* groups, const split_line& l) noexcept {
  return groups + std::size_t{l.base} * group_unit<V>;
}
template <class V>
const char* keys_of(const std::byte* group, const split_line& l) noexcept {
  return reinterpret_cast<const char*>(group) + std::size_t{l.count} * value_bytes<V>;
}
template <class V>
const V* value_in(const std::byte* group, unsigned j) noexcept {
  return reinterpret_cast<const V*>(group + j * value_bytes<V>);
}

// Effects: lays out the entries of p in its arena: lines as hash_table.hpp's, then one group per
// line; values are copy-constructed in place (offset-based values re-base). Empty layout for none.
// Throws: what the arena's allocation throws; std::length_error past 2^32 - 1 entries or 2^32
// units of groups.
template <class V, class Hash>
hashed_layout<true> lay_out_split(const pending_table<string, V, Hash>& p) {
  constexpr std::size_t unit = group_unit<V>;
  const std::size_t n = p.size();
  if (n == 0) return {};
  if (n > std::numeric_limits<std::uint32_t>::max()) throw_table_too_big();
  const auto& items = p.items();
  const std::size_t homes = (n + keys_per_home<true> - 1) / keys_per_home<true>;
  const std::vector<std::size_t> order = home_order(p, homes);
  std::vector<std::size_t> first;
  auto lines = fill_lines<true>(
      p, order, homes, [&](const auto& item) { return key_size_byte(p.key_of(item).size()); },
      first);
  std::vector<std::size_t> group_at(lines.size());
  std::size_t total = 0;
  for (std::size_t b = 0; b < lines.size(); ++b) {
    group_at[b] = total;
    // From the line's size bytes, read in order; only an escaped key's length is read from the
    // gathered items, which are visited in home order, one random access each.
    std::size_t bytes = std::size_t{lines[b].count} * value_bytes<V>;
    for (std::size_t j = 0; j < lines[b].count; ++j) {
      const std::uint8_t size = lines[b].sizes()[j];
      bytes += size != 0 ? size : key_footprint(items[order[first[b] + j]].key.len);
    }
    total += (bytes + unit - 1) & ~(unit - 1);
  }
  if (total / unit > std::numeric_limits<std::uint32_t>::max()) throw_table_too_big();
  auto* block = static_cast<std::byte*>(p.target().allocate(total, unit));
  // Lines hold consecutive runs of `order`, so `next` walks it in step with (b, j): the item
  // 2d positions on and the key bytes of the one d on (its item fetched d entries ago) are
  // prefetched, so the random reads of several entries overlap.
  constexpr std::size_t d = build_prefetch_distance;
  std::size_t next = 0;
  for (std::size_t b = 0; b < lines.size(); ++b) {
    lines[b].base = static_cast<std::uint32_t>(group_at[b] / unit);
    std::byte* group = block + group_at[b];
    char* key = reinterpret_cast<char*>(group) + std::size_t{lines[b].count} * value_bytes<V>;
    for (std::size_t j = 0; j < lines[b].count; ++j, ++next) {
      if (next + 2 * d < n) prefetch_for_read(&items[order[next + 2 * d]]);
      if (next + d < n) prefetch_for_read(p.key_of(items[order[next + d]]).data());
      const auto& item = items[order[first[b] + j]];
      if constexpr (value_bytes<V> != 0) ::new (group + j * sizeof(V)) V(item.value);
      const std::string_view k = p.key_of(item);
      if (key_size_byte(k.size()) == 0) {
        const auto len = static_cast<std::uint32_t>(k.size());
        std::memcpy(key, &len, sizeof len);
        key += sizeof len;
      }
      if (!k.empty()) std::memcpy(key, k.data(), k.size());
      key += k.size();
    }
  }
  return {block, total, store_lines(p.target(), lines), homes, lines.size()};
}

// Effects: none (reads only). The entry with key k in the table of `homes` home lines `lines` over
// `groups`, or a null handle. The table must have entries.
template <class V, class Hash>
entry_ref<V> find_split(const std::byte* groups, const split_line* lines, std::size_t homes,
                        std::string_view k) noexcept {
  const std::uint64_t h = Hash{}(k);
  const std::uint8_t tag = tag_of(h);
  const std::uint8_t size = key_size_byte(k.size());
  const split_line* l = lines + home_line_of(h, homes);
  // The home line's own entries; then, while entries of this home may have spilled on, the
  // entries at the start of the next line that came from earlier homes.
  const split_line* const home = l;
  std::uint64_t candidates = match_tags(*l, tag) & own_entries(*l);
  for (;;) {
    for (; candidates != 0; candidates &= candidates - 1) {
      const auto j = static_cast<unsigned>(std::countr_zero(candidates));
      if (l->sizes()[j] != size) continue;  // refused by the length: no key byte read
      const std::byte* group = group_of<V>(groups, *l);
      const char* keys = keys_of<V>(group, *l);
      std::string_view key;
      if ((l->flags & line_has_big) == 0) [[likely]]
        key = {keys + size_prefix(*l, j), size};
      else key = walk_to_key(keys, *l, j);
      if (key == k) return entry_access::make_ref(value_in<V>(group, j), key);
    }
    // A later line than the home holds this home's entries only if it holds no entry of its own
    // home (those would sort after them).
    if ((l->flags & line_spills) == 0 || (l != home && l->own < l->count)) return {};
    ++l;
    candidates = match_tags(*l, tag) & spilled_entries(*l);
  }
}

// Walks a split table's entries, line by line and within a line in order; yields entry_refs.
template <class V>
class split_iterator {
 public:
  // A forward iterator whose reference is a value (the handle): C++20 ranges see a forward
  // iterator; the legacy category says input, which promises no `reference` that is a real one.
  using iterator_concept = std::forward_iterator_tag;
  using iterator_category = std::input_iterator_tag;
  using value_type = entry_ref<V>;
  using difference_type = std::ptrdiff_t;
  using pointer = entry_ref<V>;  // operator-> returns the handle, whose own -> reaches it
  using reference = entry_ref<V>;

  split_iterator() noexcept = default;
  split_iterator(const std::byte* groups, const split_line* l, const split_line* end) noexcept
      : groups_(groups), line_(l), end_(end) {
    settle();
  }

  entry_ref<V> operator*() const noexcept {
    return entry_access::make_ref(value_in<V>(group_of<V>(groups_, *line_), j_),
                                  stored_key(key_, line_->sizes()[j_]));
  }
  entry_ref<V> operator->() const noexcept { return **this; }

  split_iterator& operator++() noexcept {
    key_ = next_stored_key(key_, line_->sizes()[j_]);
    if (++j_ == line_entries(*line_)) {
      ++line_;
      settle();
    }
    return *this;
  }
  split_iterator operator++(int) noexcept {
    auto old = *this;
    ++*this;
    return old;
  }

  friend bool operator==(const split_iterator& a, const split_iterator& b) noexcept {
    return a.line_ == b.line_ && a.j_ == b.j_;
  }
  // So `m.find(k) == m.end()` reads as with the standard containers.
  friend bool operator==(const split_iterator& a, const entry_ref<V>& e) noexcept {
    return a.line_ == a.end_ ? !e : *a == e;
  }

 private:
  // Moves to the first entry of the first line from line_ on that has one.
  void settle() noexcept {
    while (line_ != end_ && line_entries(*line_) == 0) ++line_;
    j_ = 0;
    if (line_ != end_) key_ = keys_of<V>(group_of<V>(groups_, *line_), *line_);
  }

  const std::byte* groups_ = nullptr;
  const split_line* line_ = nullptr;
  const split_line* end_ = nullptr;
  unsigned j_ = 0;
  const char* key_ = nullptr;
};

// The table of a hash_map<string, V> (hash_set<string> with V = no_value); nodes_ are its groups.
template <class V, class Hash>
class split_table : public hashed_storage<true> {
 public:
  using key_type = string;
  using value_type = entry_ref<V>;
  using key_view = std::string_view;
  using const_iterator = split_iterator<V>;
  using iterator = const_iterator;

  // size, empty, bucket_count, bytes: see hashed_storage (hash_table.hpp).

  const_iterator begin() const noexcept {
    return {nodes_.get(), lines_.get(), lines_.get() + line_count_};
  }
  const_iterator end() const noexcept {
    return {nodes_.get(), lines_.get() + line_count_, lines_.get() + line_count_};
  }

  // Effects: none (reads only). Returns a handle to k's entry, or a null one (== end(), ==
  // nullptr, false).
  entry_ref<V> find(std::string_view k) const noexcept {
    if (size_ == 0) return {};
    return find_split<V, Hash>(target_of(nodes_), target_of(lines_), homes_, k);
  }

  bool contains(std::string_view k) const noexcept { return static_cast<bool>(find(k)); }
  std::size_t count(std::string_view k) const noexcept { return contains(k) ? 1 : 0; }

  // For the freeze check: every byte and pointer of the table lies inside `a`.
  std::string check(const arena& a, const char* what) const {
    if (!storage_in(a)) return std::string(what) + ": the table itself lies outside the arena";
    if constexpr (value_bytes<V> != 0) {
      std::size_t i = 0;
      for (const auto e : *this) {
        if (!permafrost::points_into(e.value(), a))
          return std::string(what) + ": the value of entry " + std::to_string(i) +
                 " points outside the arena";
        ++i;
      }
    }
    return {};
  }

  bool points_into(const arena& a) const { return check(a, "hash table").empty(); }

 protected:
  split_table() = default;

  // Lays out the entries of p in the arena and points this table at them.
  void build(const pending_table<string, V, Hash>& p) { adopt(lay_out_split(p), p.size()); }
};

// The table behind hash_map<K, V> (E = map_entry<K, V>) and hash_set<K> (E = set_entry<K>, V =
// no_value): split for string keys, [value][key] entries for fixed-size ones.
template <class K, class V, class E, class Hash>
using hash_table_for =
    std::conditional_t<is_string_key<K>, split_table<V, Hash>, hash_table<E, Hash>>;

}  // namespace permafrost::detail
