// permafrost — the frozen hash table behind hash_map and hash_set (internal).
//
// Entries sorted by the high 32 bits of their hash, which also pick the bucket (b = h32 * B >> 32,
// monotone in h32), so each bucket's entries are one contiguous run [start[b], start[b+1]) and
// the bucket array is just B + 1 offsets. B = number of entries (load factor 1): a hit reads the
// bucket offsets (one line) and then walks a run of ~1.5 adjacent entries; a miss usually stops
// at a hash mismatch without reading a key. The table object refers to its entries and bucket
// offsets by self-relative offsets (offset_ptr), so it holds no absolute address.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "permafrost/detail/frozen_table.hpp"
#include "permafrost/offset_ptr.hpp"

namespace permafrost::detail {

// Where lay_out_hashed() put a table: the entries, sorted by the top 32 bits of their hash, in
// `block` (`bytes` long), and bucket b's entries from starts[b] up to starts[b + 1], in units of
// entry_access::unit<E>; one bucket per entry. All in the pending table's arena.
struct hashed_layout {
  const std::byte* block = nullptr;
  std::size_t bytes = 0;
  const std::uint32_t* starts = nullptr;
  std::size_t buckets = 0;
};

// Effects: lays out the entries of p in its arena as one hash table (empty layout for none).
// Throws: what the arena's allocation throws; std::length_error past 2^32 - 1 entries.
template <class E, class K, class V, class Hash>
hashed_layout lay_out_hashed(const pending_table<K, V, Hash>& p) {
  const std::size_t n = p.size();
  if (n == 0) return {};
  if (n > std::numeric_limits<std::uint32_t>::max()) throw_table_too_big();
  const auto& items = p.items();
  auto h32 = [&](std::size_t i) { return static_cast<std::uint32_t>(items[i].hash >> 32); };
  auto bucket_of = [&](std::size_t i) {
    return static_cast<std::size_t>((std::uint64_t{h32(i)} * n) >> 32);
  };
  // The entries in (h32, insertion) order. The bucket is monotonic in h32, so a stable counting
  // sort by bucket (O(n), no comparisons) and then a sort within each bucket (one entry on
  // average) give that order; first[b] is where bucket b's entries begin.
  std::vector<std::size_t> first(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++first[bucket_of(i) + 1];
  for (std::size_t b = 0; b < n; ++b) first[b + 1] += first[b];
  std::vector<std::size_t> order(n);
  {
    std::vector<std::size_t> next(first.begin(), first.end() - 1);
    for (std::size_t i = 0; i < n; ++i) order[next[bucket_of(i)]++] = i;
  }
  const auto by_hash = [&](std::size_t x, std::size_t y) {
    return h32(x) != h32(y) ? h32(x) < h32(y) : x < y;
  };
  for (std::size_t b = 0; b < n; ++b) {
    if (first[b + 1] - first[b] > 1)
      std::sort(order.begin() + static_cast<std::ptrdiff_t>(first[b]),
                order.begin() + static_cast<std::ptrdiff_t>(first[b + 1]), by_hash);
  }
  std::vector<std::uint32_t> offsets(n);
  auto [block, bytes] = lay_out_entries<E>(p, order, offsets.data());
  std::uint32_t* starts = p.target().template make_array<std::uint32_t>(n + 1).data();
  const auto end_unit = static_cast<std::uint32_t>(bytes / entry_access::unit<E>);
  for (std::size_t b = 0; b < n; ++b) starts[b] = first[b] < n ? offsets[first[b]] : end_unit;
  starts[n] = end_unit;
  return {block, bytes, starts, n};
}

template <class E, class Hash>
class hash_table {
 public:
  using key_type = typename entry_traits<E>::key_type;
  using value_type = E;
  using key_view = key_view_t<key_type>;
  using const_iterator = block_iterator<E>;
  using iterator = const_iterator;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t bucket_count() const noexcept { return buckets_; }
  // Arena bytes the table takes: the object, its entries and its bucket offsets.
  std::size_t bytes() const noexcept {
    return sizeof(*this) + bytes_ + (buckets_ == 0 ? 0 : (buckets_ + 1) * sizeof(std::uint32_t));
  }

  const_iterator begin() const noexcept { return {nodes_.get(), nodes_.get() + bytes_}; }
  const_iterator end() const noexcept { return {nodes_.get() + bytes_, nodes_.get() + bytes_}; }

  // Effects: none (reads only). Returns the entry with key k, or nullptr (== end()).
  const E* find(key_view k) const noexcept {
    if (size_ == 0) return nullptr;
    const auto h32 = static_cast<std::uint32_t>(Hash{}(k) >> 32);
    const std::size_t b = static_cast<std::size_t>((std::uint64_t{h32} * buckets_) >> 32);
    constexpr std::size_t unit = entry_access::unit<E>;
    const std::byte* nodes = target_of(nodes_);  // not null: the table has entries
    const std::uint32_t* starts = target_of(starts_);
    const std::byte* p = nodes + std::size_t{starts[b]} * unit;
    const std::byte* last = nodes + std::size_t{starts[b + 1]} * unit;
    while (p < last) {
      const E& e = entry_access::at<E>(p);
      const std::uint32_t eh = entry_access::hash_of(e);
      if (eh == h32) {
        if (key_equals(e, k)) return &e;
      } else if (eh > h32) {
        return nullptr;
      }
      p += entry_access::size_of(e);
    }
    return nullptr;
  }

  bool contains(key_view k) const noexcept { return find(k) != nullptr; }
  std::size_t count(key_view k) const noexcept { return contains(k) ? 1 : 0; }

  // For the freeze check: every byte and pointer of the table lies inside `a`.
  std::string check(const arena& a, const char* what) const {
    if (!range_in(a, this, sizeof(*this)) || !range_in(a, nodes_.get(), bytes_) ||
        (buckets_ != 0 && !range_in(a, starts_.get(), (buckets_ + 1) * sizeof(std::uint32_t))))
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
    const hashed_layout laid = lay_out_hashed<E>(p);
    nodes_ = laid.block;
    bytes_ = laid.bytes;
    starts_ = laid.starts;
    buckets_ = laid.buckets;
    size_ = laid.buckets;
  }

 private:
  offset_ptr<const std::byte> nodes_;
  std::size_t bytes_ = 0;
  offset_ptr<const std::uint32_t> starts_;
  std::size_t buckets_ = 0;
  std::size_t size_ = 0;
};

}  // namespace permafrost::detail
