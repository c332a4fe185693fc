// bench/image — a rejected layout for the frozen hash table, kept as a peer (`image --variants`)
// so the choice stays measured: a minimal-perfect-hash family layout (PTHash-style: keys split
// into small buckets, each bucket's "pilot" chosen at build time so that its keys land on free
// slots), with one 8-byte slot record per position: a 16-bit fingerprint of the key's hash and
// the 32-bit offset of its entry. A lookup reads the bucket's pilot (a small array, mostly in
// cache), then one slot record: a miss ends there unless the fingerprint matches (1 in 65536); a
// hit reads its entry next. The entries are the library's own (pending_table, lay_out_entries),
// so only the index differs from permafrost::hash_map. docs/design.md, section 3, has the numbers.
#pragma once

#include <permafrost/containers.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace mph_layout {

namespace pd = permafrost::detail;

struct slot {
  std::uint32_t offset;  // unit offset of the entry; empty_slot for none
  std::uint16_t fingerprint;
  std::uint16_t unused;
};
inline constexpr std::uint32_t empty_slot = std::numeric_limits<std::uint32_t>::max();
inline constexpr std::size_t keys_per_bucket = 5;
inline constexpr double load = 0.97;  // slots = keys / load

inline std::size_t bucket_of(std::uint64_t h, std::size_t buckets) {
  return static_cast<std::size_t>((std::uint64_t{static_cast<std::uint32_t>(h >> 32)} * buckets) >>
                                  32);
}
inline std::size_t position_of(std::uint64_t h, std::uint16_t pilot, std::size_t slots) {
  const std::uint64_t mixed = pd::fold_multiply(h ^ (pilot * 0x9E3779B97F4A7C15ull), pd::hash_k1);
  return static_cast<std::size_t>((static_cast<pd::u128>(mixed) * slots) >> 64);
}
inline std::uint16_t fingerprint_of(std::uint64_t h) { return static_cast<std::uint16_t>(h); }

template <class K, class V, class Hash = permafrost::hash<K>>
class map {
 public:
  using entry = permafrost::map_entry<K, V>;
  using key_view = pd::key_view_t<K>;

  const V* get(key_view k) const noexcept {
    if (size_ == 0) return nullptr;
    const std::uint64_t h = Hash{}(k);
    const std::uint16_t pilot = pilots_.get()[bucket_of(h, buckets_)];
    const slot& s = slots_.get()[position_of(h, pilot, slot_count_)];
    if (s.fingerprint != fingerprint_of(h) || s.offset == empty_slot) return nullptr;
    const entry& e = pd::entry_access::at<entry>(nodes_.get() + std::size_t{s.offset} *
                                                                    pd::entry_access::unit<entry>);
    return pd::key_equals(e, k) ? &e.value() : nullptr;
  }

  std::size_t size() const noexcept { return size_; }

  // Effects: lays out the builder's entries and this index in its arena.
  // Throws: std::runtime_error when no pilot below 2^16 places a bucket (never seen here).
  void build(const pd::pending_table<K, V, Hash>& p) {
    const std::size_t n = p.size();
    size_ = n;
    if (n == 0) return;
    const auto& items = p.items();
    buckets_ = (n + keys_per_bucket - 1) / keys_per_bucket;
    slot_count_ = static_cast<std::size_t>(static_cast<double>(n) / load) + 1;
    // Buckets, largest first (the hardest to place go while the slots are emptiest).
    std::vector<std::vector<std::uint32_t>> members(buckets_);
    for (std::size_t i = 0; i < n; ++i)
      members[bucket_of(items[i].hash, buckets_)].push_back(static_cast<std::uint32_t>(i));
    std::vector<std::uint32_t> by_size(buckets_);
    for (std::size_t b = 0; b < buckets_; ++b) by_size[b] = static_cast<std::uint32_t>(b);
    std::stable_sort(by_size.begin(), by_size.end(), [&](std::uint32_t x, std::uint32_t y) {
      return members[x].size() > members[y].size();
    });
    std::vector<std::uint16_t> pilots(buckets_, 0);
    std::vector<std::uint32_t> slot_item(slot_count_, empty_slot);
    std::vector<std::size_t> taken;
    for (const std::uint32_t b : by_size) {
      if (members[b].empty()) break;
      bool placed = false;
      for (std::uint32_t pilot = 0; pilot <= 0xffff && !placed; ++pilot) {
        taken.clear();
        placed = true;
        for (const std::uint32_t i : members[b]) {
          const std::size_t pos =
              position_of(items[i].hash, static_cast<std::uint16_t>(pilot), slot_count_);
          if (slot_item[pos] != empty_slot ||
              std::find(taken.begin(), taken.end(), pos) != taken.end()) {
            placed = false;
            break;
          }
          taken.push_back(pos);
        }
        if (placed) {
          pilots[b] = static_cast<std::uint16_t>(pilot);
          for (std::size_t m = 0; m < taken.size(); ++m) slot_item[taken[m]] = members[b][m];
        }
      }
      if (!placed) throw std::runtime_error("mph_layout: no pilot places a bucket");
    }
    // Entries in slot order.
    std::vector<std::size_t> order;
    order.reserve(n);
    for (const std::uint32_t i : slot_item)
      if (i != empty_slot) order.push_back(i);
    std::vector<std::uint32_t> offsets(n);
    auto [block, bytes] = pd::lay_out_entries<entry>(p, order, offsets.data());
    nodes_ = block;
    permafrost::arena& a = p.target();
    std::uint16_t* pilot_out = a.make_array<std::uint16_t>(buckets_).data();
    std::copy(pilots.begin(), pilots.end(), pilot_out);
    pilots_ = pilot_out;
    slot* slot_out = a.make_array<slot>(slot_count_).data();
    for (std::size_t pos = 0, k = 0; pos < slot_count_; ++pos) {
      if (slot_item[pos] == empty_slot) {
        slot_out[pos] = {empty_slot, 0, 0};
      } else {
        slot_out[pos] = {offsets[k++], fingerprint_of(items[slot_item[pos]].hash), 0};
      }
    }
    slots_ = slot_out;
  }

  // The position check's hook (save_image): the three arrays lie in the arena. The entries hold
  // offsets and plain records only, so the arrays' bounds are all there is to check.
  bool points_into(const permafrost::arena& a) const {
    return permafrost::points_into(nodes_, a) && permafrost::points_into(pilots_, a) &&
           permafrost::points_into(slots_, a);
  }

 private:
  permafrost::offset_ptr<const std::byte> nodes_;
  permafrost::offset_ptr<const std::uint16_t> pilots_;
  permafrost::offset_ptr<const slot> slots_;
  std::size_t buckets_ = 0;
  std::size_t slot_count_ = 0;
  std::size_t size_ = 0;
};

// Gathers keys like the library's builders and lays the map out in the arena on finish().
template <class K, class V, class Hash = permafrost::hash<K>>
class builder {
 public:
  explicit builder(permafrost::arena& a) : pending_(a, permafrost::duplicate_policy::reject) {}
  // As permafrost's builders' reserve(): room for `entries` entries, nothing copied up to there.
  void reserve(std::size_t entries) { pending_.reserve(entries, 0); }
  template <class U>
  bool insert(pd::key_view_t<K> k, U&& v) {
    return pending_.insert_value(k, std::forward<U>(v));
  }
  const map<K, V, Hash>& finish() {
    permafrost::arena& a = pending_.target();
    auto* m =
        ::new (a.allocate(sizeof(map<K, V, Hash>), alignof(map<K, V, Hash>))) map<K, V, Hash>();
    m->build(pending_);
    pending_.release();
    return *m;
  }

 private:
  pd::pending_table<K, V, Hash> pending_;
};

}  // namespace mph_layout
