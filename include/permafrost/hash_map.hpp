// permafrost — hash_map<K, V, Hash>: an immutable hash map laid out in an arena.
//
// Contract: built once with hash_map_builder in an unfrozen arena; finish() lays every entry, the
// index lines and the map object itself out in the arena and returns a const reference that is
// valid for the arena's life. The map holds no absolute address (its references are self-relative
// offsets), so its bytes work wherever the arena is mapped (a frozen image). The map is never
// modified nor destroyed: V must be trivially destructible or a permafrost type. Lookups read and
// never write (no cache, no mutable member, no refcount), so workers forked after arena.freeze()
// share every page of it.
//
// Keys: permafrost::string (find() takes std::string_view, so std::string, const char* and
// permafrost::string look up without a copy) or any trivially copyable type. Hash maps a key view
// to 64 bits (default permafrost::hash<K>).
//
// find() and iteration: for string keys the values are stored apart from the keys
// (detail/split_table.hpp), so find() returns an entry_ref (key() as a std::string_view,
// value()), null when absent, and iteration yields entry_refs; for fixed-size keys find() returns
// a pointer to the map_entry<K, V> (key(), value()), nullptr when absent, and iteration yields
// references to them. Both read the same way: `if (auto e = m.find(k)) use(e->value());`,
// `m.find(k) == m.end()`, `m.find(k) == nullptr`.
//
// Thread safety: any number of threads and processes may read a finished map at once. A builder
// is used by one thread at a time.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

#include "permafrost/arena.hpp"
#include "permafrost/detail/split_table.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

template <class K, class V, class Hash = hash<K>>
class hash_map_builder;

// =============================================================================================
// The map
// =============================================================================================

template <class K, class V, class Hash = hash<K>>
class hash_map : public detail::hash_table_for<K, V, map_entry<K, V>, Hash> {
  static_assert(
      frozen_storable_v<V>,
      "permafrost::hash_map<K, V>: V must be trivially destructible or a permafrost type");
  using base = detail::hash_table_for<K, V, map_entry<K, V>, Hash>;

 public:
  using key_type = K;
  using mapped_type = V;
  // entry_ref<V> for string keys, map_entry<K, V> otherwise.
  using value_type = typename base::value_type;
  using key_view = typename base::key_view;

  // find, contains, count, size, empty, begin, end, bytes: see detail/split_table.hpp (string
  // keys) and detail/hash_table.hpp. find(k): Effects: none (reads only); returns k's entry (an
  // entry_ref or a pointer), null (== end(), == nullptr) when absent. Throws: nothing.

  // Effects: returns k's value.
  // Throws: std::out_of_range when k is absent.
  const V& at(key_view k) const {
    if (const auto e = this->find(k)) return e->value();
    throw std::out_of_range("permafrost::hash_map::at: key not found");
  }

  // Effects: returns a pointer to k's value, or `fallback` when k is absent.
  const V* get(key_view k, const V* fallback = nullptr) const noexcept {
    const auto e = this->find(k);
    return e ? &e->value() : fallback;
  }

  std::string check(const arena& a) const { return base::check(a, "hash_map"); }

 private:
  friend class hash_map_builder<K, V, Hash>;
  hash_map() = default;
};

template <class K, class V, class H>
struct is_permafrost_type<hash_map<K, V, H>> : std::true_type {};

// =============================================================================================
// The builder
// =============================================================================================

// Gathers entries in process memory (one copy of each key) and lays the map out in the arena on
// finish(). Not copyable or movable.
template <class K, class V, class Hash>
class hash_map_builder : public detail::table_builder<hash_map<K, V, Hash>, K, V, Hash> {
  static_assert(
      frozen_storable_v<V>,
      "permafrost::hash_map<K, V>: V must be trivially destructible or a permafrost type");
  static_assert(std::is_default_constructible_v<V> && std::is_copy_assignable_v<V>);
  using base = detail::table_builder<hash_map<K, V, Hash>, K, V, Hash>;

 public:
  using key_view = detail::key_view_t<K>;

  // Effects: a builder for a map in `a` (which must stay unfrozen until finish()).
  explicit hash_map_builder(arena& a, duplicate_policy policy = duplicate_policy::reject)
      : base(a, policy) {}

  // Effects: adds (k, v); a key already present is handled by the builder's duplicate_policy.
  // Returns true when k was new. String keys are copied; so is v when V is permafrost::string and
  // v is any other string type (into the arena, only when it is stored).
  // Throws: std::logic_error after finish(); std::length_error for a key of 4 GiB or more;
  // std::bad_alloc. The builder is unchanged when it throws.
  template <class U>
  bool insert(key_view k, U&& v) {
    return this->pending_.insert_value(k, std::forward<U>(v));
  }

  // size(): the number of distinct keys inserted so far.
  // reserve(entries, key_bytes = 0): room for that many entries and bytes of string keys in all,
  // so that inserting them copies and re-indexes nothing (detail::table_builder).

  // Effects: lays the map out in the arena, frees the builder's process memory and registers the
  // map's freeze check. Later calls return the same map.
  // Throws: std::length_error for 2^32 entries or more, or when the entries exceed 2^32 units of
  // alignof(entry) bytes (string keys: the groups exceed 2^32 units of max(alignof(V), 8) bytes);
  // as arena::allocate (the arena then holds unreachable bytes; the builder is unchanged).
  const hash_map<K, V, Hash>& finish() {
    return this->finish_with([this](void* memory) {
      auto* m = ::new (memory) hash_map<K, V, Hash>();
      m->build(this->pending_);
      return m;
    });
  }
};

}  // namespace permafrost
