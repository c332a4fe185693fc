// permafrost — hash_set<K, Hash>: an immutable hash set laid out in an arena.
//
// Contract: as hash_map (see hash_map.hpp) without values: built once with hash_set_builder,
// never modified nor destroyed, lookups write nothing, no absolute address inside. For string
// keys find() returns an entry_ref<detail::no_value> (key() as a std::string_view; null when
// absent) and iteration yields them; for fixed-size keys find() returns a pointer to the
// set_entry<K> (key()) and iteration yields references to them.
//
// Thread safety: any number of threads and processes may read a finished set at once. A builder
// is used by one thread at a time.
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>

#include "permafrost/arena.hpp"
#include "permafrost/detail/split_table.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

template <class K, class Hash = hash<K>>
class hash_set_builder;

template <class K, class Hash = hash<K>>
class hash_set : public detail::hash_table_for<K, detail::no_value, set_entry<K>, Hash> {
  using base = detail::hash_table_for<K, detail::no_value, set_entry<K>, Hash>;

 public:
  using key_type = K;
  // entry_ref<detail::no_value> for string keys, set_entry<K> otherwise.
  using value_type = typename base::value_type;
  using key_view = typename base::key_view;

  // find, contains, count, size, empty, begin, end, bytes: as hash_map's (see hash_map.hpp).

  std::string check(const arena& a) const { return base::check(a, "hash_set"); }

 private:
  friend class hash_set_builder<K, Hash>;
  hash_set() = default;
};

template <class K, class H>
struct is_permafrost_type<hash_set<K, H>> : std::true_type {};

// Gathers keys in process memory and lays the set out in the arena on finish(). The duplicate
// policy makes no observable difference for a set (both keep one copy); insert() still reports
// whether the key was new. Not copyable or movable.
template <class K, class Hash>
class hash_set_builder
    : public detail::table_builder<hash_set<K, Hash>, K, detail::no_value, Hash> {
  using base = detail::table_builder<hash_set<K, Hash>, K, detail::no_value, Hash>;

 public:
  using key_view = detail::key_view_t<K>;

  // Effects: a builder for a set in `a` (which must stay unfrozen until finish()).
  explicit hash_set_builder(arena& a, duplicate_policy policy = duplicate_policy::reject)
      : base(a, policy) {}

  // Effects: adds k. Returns true when k was new.
  // Throws: std::logic_error after finish(); std::length_error for a key of 4 GiB or more;
  // std::bad_alloc. The builder is unchanged when it throws.
  bool insert(key_view k) {
    return this->pending_.insert(k, [] { return detail::no_value{}; });
  }

  // Effects, Throws: as hash_map_builder::finish().
  const hash_set<K, Hash>& finish() {
    return this->finish_with([this](void* memory) {
      auto* s = ::new (memory) hash_set<K, Hash>();
      s->build(this->pending_);
      return s;
    });
  }
};

}  // namespace permafrost
