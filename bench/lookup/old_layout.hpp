// bench/lookup — the frozen hash_map and sorted_map as they were before position independence:
// the table object held absolute pointers to its entries and index. A bench-only peer, so one run
// shows what the self-relative offsets cost a lookup (the goal: at most 5% slower). The entries,
// the builders' gathering, the lay-out and the hash table's lookup are the library's own; only the
// table objects (and the sorted map's lookup, copied as it was) hold raw pointers.
#pragma once

#include <permafrost/containers.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <tuple>
#include <vector>

namespace old_layout {

namespace pd = permafrost::detail;

// detail::hash_table with raw pointers: the same layout and lookup (find_hashed), only the
// references to the entries and index lines are absolute.
template <class E, class Hash>
class hash_table {
 public:
  using key_view = pd::key_view_t<typename pd::entry_traits<E>::key_type>;

  std::size_t size() const noexcept { return size_; }

  const E* find(key_view k) const noexcept {
    if (size_ == 0) return nullptr;
    return pd::find_hashed<E, Hash>(nodes_, lines_, homes_, k);
  }

  template <class K, class V>
  void build(const pd::pending_table<K, V, Hash>& p) {
    const auto laid = pd::lay_out_hashed<E>(p);
    std::tie(nodes_, bytes_, lines_, homes_) =
        std::tie(laid.block, laid.bytes, laid.lines, laid.homes);
    size_ = p.size();
  }

 private:
  const std::byte* nodes_ = nullptr;
  std::size_t bytes_ = 0;
  const pd::hash_line<pd::sized_entries<E>>* lines_ = nullptr;
  std::size_t homes_ = 0;
  std::size_t size_ = 0;
};

template <class K, class V, class Hash = permafrost::hash<K>>
using hash_map = hash_table<permafrost::map_entry<K, V>, Hash>;

template <class K, class V, class Hash = permafrost::hash<K>>
class hash_map_builder {
 public:
  explicit hash_map_builder(permafrost::arena& a)
      : pending_(a, permafrost::duplicate_policy::reject) {}
  template <class U>
  bool insert(pd::key_view_t<K> k, U&& v) {
    return pending_.insert_value(k, std::forward<U>(v));
  }
  const hash_map<K, V, Hash>& finish() {
    permafrost::arena& a = pending_.target();
    auto* m = ::new (a.allocate(sizeof(hash_map<K, V, Hash>), alignof(hash_map<K, V, Hash>)))
        hash_map<K, V, Hash>();
    m->build(pending_);
    pending_.release();
    return *m;
  }

 private:
  pd::pending_table<K, V, Hash> pending_;
};

// The old sorted_map's lookup path, with raw pointers.
template <class K, class V, class Compare = std::less<>>
class sorted_map {
 public:
  using value_type = permafrost::map_entry<K, V>;
  using key_view = pd::key_view_t<K>;

  const value_type* find(key_view k) const noexcept {
    const std::size_t i =
        partition([&](const value_type& e) { return Compare{}(pd::entry_access::view_of(e), k); });
    if (i == size_) return nullptr;
    const value_type& e = at(i);
    if (Compare{}(k, pd::entry_access::view_of(e))) return nullptr;
    return &e;
  }

 private:
  template <class, class, class>
  friend class sorted_map_builder;
  static constexpr std::size_t unit = pd::entry_access::unit<value_type>;

  const value_type& at(std::size_t i) const noexcept {
    return pd::entry_access::at<value_type>(nodes_ + std::size_t{index_[i]} * unit);
  }
  template <class Pred>
  std::size_t partition(Pred pred) const noexcept {
    return pd::partition_entries<value_type>(nodes_, index_, size_, pred);
  }

  const std::byte* nodes_ = nullptr;
  std::size_t bytes_ = 0;
  const std::uint32_t* index_ = nullptr;
  std::size_t size_ = 0;
};

template <class K, class V, class Compare = std::less<>>
class sorted_map_builder {
 public:
  explicit sorted_map_builder(permafrost::arena& a)
      : pending_(a, permafrost::duplicate_policy::reject) {}
  template <class U>
  bool insert(pd::key_view_t<K> k, U&& v) {
    return pending_.insert_value(k, std::forward<U>(v));
  }
  const sorted_map<K, V, Compare>& finish() {
    using map = sorted_map<K, V, Compare>;
    permafrost::arena& a = pending_.target();
    const std::size_t n = pending_.size();
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    const auto& items = pending_.items();
    std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
      return Compare{}(pending_.key_of(items[x]), pending_.key_of(items[y]));
    });
    auto* m = ::new (a.allocate(sizeof(map), alignof(map))) map();
    if (n > 0) {
      std::uint32_t* index = a.make_array<std::uint32_t>(n).data();
      auto [block, bytes] =
          pd::lay_out_entries<permafrost::map_entry<K, V>>(pending_, order, index);
      m->nodes_ = block;
      m->bytes_ = bytes;
      m->index_ = index;
      m->size_ = n;
    }
    pending_.release();
    return *m;
  }

 private:
  pd::pending_table<K, V, permafrost::hash<K>> pending_;
};

}  // namespace old_layout
