// permafrost — sorted_map<K, V, Compare>: an immutable ordered map laid out in an arena.
//
// Contract: built once with sorted_map_builder in an unfrozen arena; finish() lays the entries out
// in key order (keys inline, as in hash_map) plus one 32-bit offset per entry for binary search,
// and returns a const reference valid for the arena's life. Never modified nor destroyed; V must
// be trivially destructible or a permafrost type; lookups and iteration write nothing. The map
// holds no absolute address (self-relative offsets), so it works wherever the arena is mapped.
//
// Compare is called with key views (std::string_view for permafrost::string keys, so lookups take
// any string type). Keys equal under == must be equivalent under Compare and the other way round
// (duplicates are detected with ==).
//
// Thread safety: any number of threads and processes may read a finished map at once. A builder
// is used by one thread at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "permafrost/arena.hpp"
#include "permafrost/detail/frozen_table.hpp"
#include "permafrost/offset_ptr.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

namespace detail {

// The first i in [0, n) for which pred(entry i) is false, where entry i is the E at
// nodes + index[i] units (sorted order); pred must be true on a prefix. Binary search.
template <class E, class Pred>
std::size_t partition_entries(const std::byte* nodes, const std::uint32_t* index, std::size_t n,
                              Pred pred) noexcept {
  std::size_t lo = 0;
  while (n > 0) {
    const std::size_t half = n / 2;
    const E& e = entry_access::at<E>(nodes + std::size_t{index[lo + half]} * entry_access::unit<E>);
    if (pred(e)) {
      lo += half + 1;
      n -= half + 1;
    } else {
      n = half;
    }
  }
  return lo;
}

}  // namespace detail

template <class K, class V, class Compare = std::less<>>
class sorted_map_builder;

template <class K, class V, class Compare = std::less<>>
class sorted_map {
  static_assert(
      frozen_storable_v<V>,
      "permafrost::sorted_map<K, V>: V must be trivially destructible or a permafrost type");
  using access = detail::entry_access;

 public:
  using key_type = K;
  using mapped_type = V;
  using value_type = map_entry<K, V>;
  using key_view = detail::key_view_t<K>;

  // In key order; random access over the offset index.
  class const_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = map_entry<K, V>;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    const_iterator() noexcept = default;
    const value_type& operator*() const noexcept { return map_->entry(i_); }
    const value_type* operator->() const noexcept { return &**this; }
    const value_type& operator[](difference_type n) const noexcept { return *(*this + n); }
    const_iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) noexcept {
      auto o = *this;
      ++i_;
      return o;
    }
    const_iterator& operator--() noexcept {
      --i_;
      return *this;
    }
    const_iterator operator--(int) noexcept {
      auto o = *this;
      --i_;
      return o;
    }
    const_iterator& operator+=(difference_type n) noexcept {
      i_ += n;
      return *this;
    }
    const_iterator& operator-=(difference_type n) noexcept {
      i_ -= n;
      return *this;
    }
    friend const_iterator operator+(const_iterator it, difference_type n) noexcept {
      return it += n;
    }
    friend const_iterator operator+(difference_type n, const_iterator it) noexcept {
      return it += n;
    }
    friend const_iterator operator-(const_iterator it, difference_type n) noexcept {
      return it -= n;
    }
    friend difference_type operator-(const const_iterator& a, const const_iterator& b) noexcept {
      return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) noexcept {
      return a.i_ == b.i_;
    }
    friend auto operator<=>(const const_iterator& a, const const_iterator& b) noexcept {
      return a.i_ <=> b.i_;
    }
    // find() returns a pointer (nullptr when absent); end() equals nullptr.
    friend bool operator==(const const_iterator& a, const value_type* e) noexcept {
      return a.i_ == a.map_->size() ? e == nullptr : &*a == e;
    }

   private:
    friend class sorted_map;
    const_iterator(const sorted_map* m, std::size_t i) noexcept : map_(m), i_(i) {}
    const sorted_map* map_ = nullptr;
    std::size_t i_ = 0;
  };
  using iterator = const_iterator;

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // Arena bytes the map takes: the object, its entries and its offset index.
  std::size_t bytes() const noexcept {
    return sizeof(*this) + bytes_ + size_ * sizeof(std::uint32_t);
  }

  const_iterator begin() const noexcept { return {this, 0}; }
  const_iterator end() const noexcept { return {this, size_}; }

  // The first entry whose key is not less than k.
  const_iterator lower_bound(key_view k) const noexcept {
    return {this, partition([&](const value_type& e) { return comp(access::view_of(e), k); })};
  }
  // The first entry whose key is greater than k.
  const_iterator upper_bound(key_view k) const noexcept {
    return {this, partition([&](const value_type& e) { return !comp(k, access::view_of(e)); })};
  }
  std::pair<const_iterator, const_iterator> equal_range(key_view k) const noexcept {
    return {lower_bound(k), upper_bound(k)};
  }

  // Effects: none (reads only). Returns the entry with key k, or nullptr (== end()).
  const value_type* find(key_view k) const noexcept {
    const const_iterator it = lower_bound(k);
    if (it.i_ == size_ || comp(k, access::view_of(*it))) return nullptr;
    return &*it;
  }
  bool contains(key_view k) const noexcept { return find(k) != nullptr; }
  std::size_t count(key_view k) const noexcept { return contains(k) ? 1 : 0; }

  // Throws: std::out_of_range when k is absent.
  const V& at(key_view k) const {
    if (const value_type* e = find(k)) return e->value();
    throw std::out_of_range("permafrost::sorted_map::at: key not found");
  }

  // For the freeze check: the map object, its entries and its index lie inside `a` (the values
  // are not looked at).
  bool layout_in(const arena& a) const {
    return detail::range_in(a, this, sizeof(*this)) && detail::range_in(a, nodes_.get(), bytes_) &&
           detail::range_in(a, index_.get(), size_ * sizeof(std::uint32_t));
  }

  // For the freeze check: every byte and pointer of the map lies inside `a`.
  std::string check(const arena& a) const {
    if (!layout_in(a)) return "sorted_map: the map itself lies outside the arena";
    std::size_t i = 0;
    for (const value_type& e : *this) {
      std::string why = detail::check_entry(e, a, i++, "sorted_map");
      if (!why.empty()) return why;
    }
    return {};
  }
  bool points_into(const arena& a) const { return check(a).empty(); }

 private:
  friend class sorted_map_builder<K, V, Compare>;
  static constexpr std::size_t unit = access::unit<value_type>;
  sorted_map() = default;

  template <class A, class B>
  bool comp(const A& a, const B& b) const noexcept(noexcept(Compare{}(a, b))) {
    return Compare{}(a, b);
  }

  const value_type& entry(std::size_t i) const noexcept {
    return access::at<value_type>(detail::target_of(nodes_) +
                                  std::size_t{detail::target_of(index_)[i]} * unit);
  }

  // The first index for which pred(entry) is false (pred true on a prefix).
  template <class Pred>
  std::size_t partition(Pred pred) const noexcept {
    if (size_ == 0) return 0;
    // Not null: the map has entries.
    return detail::partition_entries<value_type>(detail::target_of(nodes_),
                                                 detail::target_of(index_), size_, pred);
  }

  offset_ptr<const std::byte> nodes_;
  std::size_t bytes_ = 0;
  offset_ptr<const std::uint32_t> index_;
  std::size_t size_ = 0;
};

template <class K, class V, class C>
struct is_permafrost_type<sorted_map<K, V, C>> : std::true_type {};

// Gathers entries in process memory and lays the map out in key order on finish(). Not copyable
// or movable.
template <class K, class V, class Compare>
class sorted_map_builder : public detail::table_builder<sorted_map<K, V, Compare>, K, V, hash<K>> {
  static_assert(
      frozen_storable_v<V>,
      "permafrost::sorted_map<K, V>: V must be trivially destructible or a permafrost type");
  static_assert(std::is_default_constructible_v<V> && std::is_copy_assignable_v<V>);
  using map = sorted_map<K, V, Compare>;
  using base = detail::table_builder<map, K, V, hash<K>>;

 public:
  using key_view = detail::key_view_t<K>;

  // Effects: a builder for a map in `a` (which must stay unfrozen until finish()).
  explicit sorted_map_builder(arena& a, duplicate_policy policy = duplicate_policy::reject)
      : base(a, policy) {}
  // Internal: a map checked as part of an enclosing structure (registers no check of its own).
  sorted_map_builder(arena& a, duplicate_policy policy, detail::no_freeze_check_t tag)
      : base(a, policy, tag) {}

  // Effects, Returns, Throws: as hash_map_builder::insert().
  template <class U>
  bool insert(key_view k, U&& v) {
    return this->pending_.insert_value(k, std::forward<U>(v));
  }

  // Effects, Throws: as hash_map_builder::finish().
  const map& finish() {
    const auto& pending = this->pending_;
    const std::size_t n = pending.size();
    if (n > std::numeric_limits<std::uint32_t>::max()) detail::throw_table_too_big();
    return this->finish_with([&](void* memory) {
      std::vector<std::size_t> order(n);
      for (std::size_t i = 0; i < n; ++i) order[i] = i;
      const auto& items = pending.items();
      std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
        return Compare{}(pending.key_of(items[x]), pending.key_of(items[y]));
      });
      auto* m = ::new (memory) map();
      if (n > 0) {
        std::uint32_t* index = pending.target().template make_array<std::uint32_t>(n).data();
        auto [block, bytes] = detail::lay_out_entries<map_entry<K, V>>(pending, order, index);
        m->nodes_ = block;
        m->bytes_ = bytes;
        m->index_ = index;
        m->size_ = n;
      }
      return m;
    });
  }
};

}  // namespace permafrost
