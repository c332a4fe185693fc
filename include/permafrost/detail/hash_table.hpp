// permafrost — the frozen hash table behind hash_map and hash_set with fixed-size keys, and the
// index lines every frozen hash table shares (internal). String-keyed tables build on the same
// lines with another entry store (split_table.hpp); bench/image keeps string keys in this one's
// [value][key] entries as the losing "tag lines" layout.
//
// Layout (docs/design.md, section 3): the entries, ordered by their home line, in one block; and
// an index of 64-byte lines (hash_line.hpp), one cache line each. The high 32 bits of a key's
// hash pick its home line (h32 * homes >> 32, about 20 keys per home for string keys, 40 for
// fixed-size ones); its low 8 bits are its tag. A line holds the tags of up to 28 (56) consecutive
// entries, their sizes, and the offset of its first entry. When a home has more keys than fit,
// they continue at the start of the next line (and that line's own entries after them), so every
// key lies at or after its home line and a lookup reads one line almost always: a miss ends there
// unless a tag matches by chance (1 in 256 per entry), a hit goes on to read its one entry.
// The table object refers to its entries and lines by self-relative offsets (offset_ptr), so it
// holds no absolute address.
//
// Thread safety: a finished table is read-only; any number of threads may read it at once.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "permafrost/detail/frozen_table.hpp"
#include "permafrost/detail/hash_line.hpp"
#include "permafrost/offset_ptr.hpp"

namespace permafrost::detail {

// Entries of string keys vary in size, so their lines carry sizes; fixed-size entries need none.
template <class E>
inline constexpr bool sized_entries = is_string_key<typename entry_traits<E>::key_type>;

// Keys per home line: 71% of a line's capacity, so that 96% of homes fit in their own line
// (Poisson-distributed counts) and one lookup in 25 reads a second, adjacent, line.
template <bool Sized>
inline constexpr std::size_t keys_per_home = Sized ? 20 : 40;

inline std::size_t home_line_of(std::uint64_t h, std::size_t homes) noexcept {
  return static_cast<std::size_t>((std::uint64_t{static_cast<std::uint32_t>(h >> 32)} * homes) >>
                                  32);
}
inline std::uint8_t tag_of(std::uint64_t h) noexcept { return static_cast<std::uint8_t>(h); }

// Where lay_out_hashed() put a table: the entries in `block` (`bytes` long) and `line_count`
// index lines, of which the first `homes` are home lines. All in the pending table's arena.
template <bool Sized>
struct hashed_layout {
  const std::byte* block = nullptr;
  std::size_t bytes = 0;
  const hash_line<Sized>* lines = nullptr;
  std::size_t homes = 0;
  std::size_t line_count = 0;
};

// The items of p in the order of their home line (a stable counting sort: O(n), no comparisons).
template <class K, class V, class Hash>
std::vector<std::size_t> home_order(const pending_table<K, V, Hash>& p, std::size_t homes) {
  const auto& items = p.items();
  const std::size_t n = items.size();
  std::vector<std::size_t> order(n);
  std::vector<std::size_t> next(homes + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++next[home_line_of(items[i].hash, homes) + 1];
  for (std::size_t b = 0; b < homes; ++b) next[b + 1] += next[b];
  for (std::size_t i = 0; i < n; ++i) order[next[home_line_of(items[i].hash, homes)]++] = i;
  return order;
}

// Positions ahead in `order` whose item the passes in home order prefetch: each item is a random
// read into the gathered items (and its key one into their bytes), so without it a 10M-key build
// waits out one DRAM miss per entry and pass; with it the misses of 16 entries overlap.
inline constexpr std::size_t build_prefetch_distance = 16;

inline void prefetch_for_read(const void* p) noexcept { __builtin_prefetch(p, 0, 0); }

// The index lines of the items of p laid out in `order` (home order): each entry goes to its home
// line, or to the first line after it with room, so a line holds the overflow of earlier homes
// first, then its own entries. size_byte(item) is an entry's size byte (sized lines; 0 sets
// line_has_big). first[b] receives the position in `order` of line b's first entry (a line's
// entries are consecutive there; n for a line with none). Bases are left 0.
template <bool Sized, class K, class V, class Hash, class SizeByte>
std::vector<hash_line<Sized>> fill_lines(const pending_table<K, V, Hash>& p,
                                         const std::vector<std::size_t>& order, std::size_t homes,
                                         SizeByte&& size_byte, std::vector<std::size_t>& first) {
  using line = hash_line<Sized>;
  const auto& items = p.items();
  const std::size_t n = items.size();
  std::vector<line> lines(homes, line{});
  first.assign(homes, n);
  std::size_t cur = 0;
  for (std::size_t k = 0; k < n; ++k) {
    if (k + build_prefetch_distance < n)
      prefetch_for_read(&items[order[k + build_prefetch_distance]]);
    const auto& item = items[order[k]];
    const std::size_t home = home_line_of(item.hash, homes);
    cur = std::max(cur, home);
    while (lines[cur].count == line::capacity)
      if (++cur == lines.size()) {
        lines.push_back(line{});
        first.push_back(n);
      }
    line& l = lines[cur];
    const std::size_t j = l.count++;
    if (j == 0) first[cur] = k;
    if (home < cur) ++l.own;
    l.slots[j] = tag_of(item.hash);
    if constexpr (Sized) {
      const std::uint8_t size = size_byte(item);
      l.slots[line::capacity + j] = size;
      if (size == 0) l.flags |= line_has_big;
    }
  }
  for (std::size_t b = 0; b + 1 < lines.size(); ++b)
    if (lines[b + 1].own != 0) lines[b].flags |= line_spills;
  return lines;
}

// Copies the lines into the arena, one cache line each.
template <bool Sized>
const hash_line<Sized>* store_lines(arena& a, const std::vector<hash_line<Sized>>& lines) {
  auto* out = static_cast<hash_line<Sized>*>(
      a.allocate(lines.size() * sizeof(hash_line<Sized>), hash_line_bytes));
  std::memcpy(static_cast<void*>(out), lines.data(), lines.size() * sizeof(hash_line<Sized>));
  return out;
}

// Effects: lays out the entries of p in its arena as one hash table of [value][key] entries (empty
// layout for none). The library uses it for fixed-size keys; bench/image keeps string keys in it
// as the losing "tag lines" variant (docs/design.md, section 3).
// Throws: what the arena's allocation throws; std::length_error past 2^32 - 1 entries.
template <class E, class K, class V, class Hash>
hashed_layout<sized_entries<E>> lay_out_hashed(const pending_table<K, V, Hash>& p) {
  constexpr bool sized = sized_entries<E>;
  constexpr std::size_t unit = entry_access::unit<E>;
  const std::size_t n = p.size();
  if (n == 0) return {};
  if (n > std::numeric_limits<std::uint32_t>::max()) throw_table_too_big();
  const std::size_t homes = (n + keys_per_home<sized> - 1) / keys_per_home<sized>;
  const std::vector<std::size_t> order = home_order(p, homes);
  std::vector<std::uint32_t> offsets(n);
  auto [block, bytes] = lay_out_entries<E>(p, order, offsets.data());
  std::vector<std::size_t> first;
  auto lines = fill_lines<sized>(
      p, order, homes,
      [&](const auto& item) {
    const std::size_t size = entry_access::size_for<E>(p.key_of(item).size()) / unit;
    return static_cast<std::uint8_t>(size <= 255 ? size : 0);
      },
      first);
  for (std::size_t b = 0; b < lines.size(); ++b)
    if (lines[b].count != 0) lines[b].base = offsets[first[b]];
  return {block, bytes, store_lines(p.target(), lines), homes, lines.size()};
}

// Entry counts above the capacity (only in a damaged image) are clamped, so a lookup never reads
// past its line.
template <bool Sized>
std::uint64_t own_entries(const hash_line<Sized>& l) noexcept {
  constexpr unsigned capacity = hash_line<Sized>::capacity;
  return bit_range(std::min<unsigned>(l.own, capacity), std::min<unsigned>(l.count, capacity));
}
template <bool Sized>
std::uint64_t spilled_entries(const hash_line<Sized>& l) noexcept {
  return bit_range(0, std::min<unsigned>(l.own, hash_line<Sized>::capacity));
}

// A line with an entry too big for its size byte: steps over the entries before the j-th one.
template <class E>
[[gnu::noinline]] const E& walk_to_entry(const std::byte* p, unsigned j) noexcept {
  for (unsigned i = 0; i < j; ++i) p += entry_access::size_of(entry_access::at<E>(p));
  return entry_access::at<E>(p);
}

// The j-th entry a line describes.
template <class E>
const E& entry_at(const std::byte* nodes, const hash_line<sized_entries<E>>& l,
                  unsigned j) noexcept {
  const std::byte* first = nodes + std::size_t{l.base} * entry_access::unit<E>;
  if constexpr (!sized_entries<E>) {
    return entry_access::at<E>(first + j * sizeof(E));
  } else {
    if ((l.flags & line_has_big) != 0) [[unlikely]]
      return walk_to_entry<E>(first, j);
    return entry_access::at<E>(first + size_prefix(l, j) * entry_access::unit<E>);
  }
}

// Effects: none (reads only). The entry with key k in the table of `homes` home lines `lines`
// over the entry block `nodes`, or nullptr. The table must have entries.
template <class E, class Hash>
const E* find_hashed(const std::byte* nodes, const hash_line<sized_entries<E>>* lines,
                     std::size_t homes, key_view_t<typename entry_traits<E>::key_type> k) noexcept {
  const std::uint64_t h = Hash{}(k);
  const std::uint8_t tag = tag_of(h);
  const auto* l = lines + home_line_of(h, homes);
  // The home line's own entries; then, while entries of this home may have spilled on, the
  // entries at the start of the next line that came from earlier homes.
  const auto* const home = l;
  std::uint64_t candidates = match_tags(*l, tag) & own_entries(*l);
  for (;;) {
    for (; candidates != 0; candidates &= candidates - 1) {
      const E& e = entry_at<E>(nodes, *l, static_cast<unsigned>(std::countr_zero(candidates)));
      if (key_equals(e, k)) return &e;
    }
    // A later line than the home holds this home's entries only if it holds no entry of its own
    // home (those would sort after them).
    if ((l->flags & line_spills) == 0 || (l != home && l->own < l->count)) return nullptr;
    ++l;
    candidates = match_tags(*l, tag) & spilled_entries(*l);
  }
}

// What both frozen hash tables hold (hash_table here, split_table for string keys): their entry
// block (string keys: groups) and index lines, by self-relative offsets, and their counts.
template <bool Sized>
class hashed_storage {
 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // The home lines: the index lines a lookup starts at.
  std::size_t bucket_count() const noexcept { return homes_; }
  // Arena bytes the table takes: the object, its entries and its index lines.
  std::size_t bytes() const noexcept {
    return sizeof(*this) + bytes_ + line_count_ * sizeof(hash_line<Sized>);
  }

 protected:
  hashed_storage() = default;

  void adopt(const hashed_layout<Sized>& laid, std::size_t size) noexcept {
    nodes_ = laid.block;
    bytes_ = laid.bytes;
    lines_ = laid.lines;
    homes_ = laid.homes;
    line_count_ = laid.line_count;
    size_ = size;
  }

  // The object, its entries and its lines all lie in `a`.
  bool storage_in(const arena& a) const {
    return range_in(a, this, sizeof(*this)) && range_in(a, nodes_.get(), bytes_) &&
           (line_count_ == 0 || range_in(a, lines_.get(), line_count_ * sizeof(hash_line<Sized>)));
  }

  offset_ptr<const std::byte> nodes_;
  std::size_t bytes_ = 0;
  offset_ptr<const hash_line<Sized>> lines_;
  std::size_t homes_ = 0;
  std::size_t line_count_ = 0;
  std::size_t size_ = 0;
};

template <class E, class Hash>
class hash_table : public hashed_storage<sized_entries<E>> {
 public:
  using key_type = typename entry_traits<E>::key_type;
  using value_type = E;
  using key_view = key_view_t<key_type>;
  using const_iterator = block_iterator<E>;
  using iterator = const_iterator;

  // size, empty, bucket_count, bytes: see hashed_storage.

  const_iterator begin() const noexcept {
    return {this->nodes_.get(), this->nodes_.get() + this->bytes_};
  }
  const_iterator end() const noexcept {
    return {this->nodes_.get() + this->bytes_, this->nodes_.get() + this->bytes_};
  }

  // Effects: none (reads only). Returns the entry with key k, or nullptr (== end()).
  const E* find(key_view k) const noexcept {
    if (this->size_ == 0) return nullptr;
    return find_hashed<E, Hash>(target_of(this->nodes_), target_of(this->lines_), this->homes_, k);
  }

  bool contains(key_view k) const noexcept { return find(k) != nullptr; }
  std::size_t count(key_view k) const noexcept { return contains(k) ? 1 : 0; }

  // For the freeze check: every byte and pointer of the table lies inside `a`.
  std::string check(const arena& a, const char* what) const {
    if (!this->storage_in(a))
      return std::string(what) + ": the table itself lies outside the arena";
    std::size_t i = 0;
    for (const E& e : *this) {
      std::string why = check_entry(e, a, i++, what);
      if (!why.empty()) return why;
    }
    return {};
  }

  bool points_into(const arena& a) const { return check(a, "hash table").empty(); }

 protected:
  hash_table() = default;

  // Lays out the entries of p in the arena and points this table at them.
  template <class K, class V>
  void build(const pending_table<K, V, Hash>& p) {
    this->adopt(lay_out_hashed<E>(p), p.size());
  }
};

}  // namespace permafrost::detail
