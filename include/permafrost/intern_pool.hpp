// permafrost — intern_pool: one arena copy per distinct string.
//
// Contract: intern(s) returns a permafrost::string equal to s; equal inputs get the same handle
// (the same arena bytes), so a value repeated a million times is stored once. The pool's index
// lives in process memory and points at the arena copies, which never move; drop the pool (or
// call clear()) once building is done — the strings stay valid for the arena's life.
//
// Thread safety: none; one thread at a time per pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <unordered_set>

#include "permafrost/arena.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

struct intern_stats {
  std::size_t requests = 0;      // intern() calls
  std::size_t unique = 0;        // distinct strings copied into the arena
  std::size_t bytes_stored = 0;  // arena bytes the unique copies take (length, bytes and NUL)
  std::size_t bytes_saved = 0;   // arena bytes the repeated requests would have taken
};

class intern_pool {
 public:
  // Effects: a pool that copies into `a` (which must stay unfrozen while the pool interns).
  explicit intern_pool(arena& a) : arena_(&a) {}

  // Effects: returns the arena copy of s, copying it on first sight.
  // Throws: std::length_error for 4 GiB or more; as arena::allocate. The pool, its stats
  // included, is unchanged (a copy made before the index failed to grow stays in the arena,
  // unreachable).
  string intern(std::string_view s) {
    if (auto it = index_.find(s); it != index_.end()) {
      ++stats_.requests;
      stats_.bytes_saved += footprint(s.size());
      return detail::string_access::make(rep_of(*it));
    }
    string copy = make_string(*arena_, s);  // not const: returned by move
    index_.insert(copy.view());
    ++stats_.requests;
    ++stats_.unique;
    stats_.bytes_stored += footprint(s.size());
    return copy;
  }

  intern_stats stats() const noexcept { return stats_; }

  // Effects: frees the index (the interned strings stay in the arena).
  void clear() noexcept {
    index_ = {};
    stats_ = {};
  }

 private:
  static std::size_t footprint(std::size_t n) noexcept {
    return sizeof(detail::string_rep) + n + 1;
  }
  static const detail::string_rep* rep_of(std::string_view arena_copy) noexcept {
    return reinterpret_cast<const detail::string_rep*>(arena_copy.data()) - 1;
  }

  arena* arena_;
  std::unordered_set<std::string_view, string_hash> index_;
  intern_stats stats_;
};

}  // namespace permafrost
