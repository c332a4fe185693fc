// permafrost — a standard allocator over a frozen arena.
//
// frozen_allocator<T> lets std::vector, std::basic_string, std::unordered_map ... live wholly in
// an arena: allocate() bumps, deallocate() does nothing (arena bytes are never reused). Build the
// container before freeze(); afterwards only read it — any member that writes (even clear() or a
// lookup that caches) faults on the read-only pages, and growing throws frozen_error.
//
// The allocator holds the arena's stable record, not the arena object, so it stays valid when the
// arena is moved; it must not outlive the arena.
//
// Destroying a container after freeze(): its destructor runs the elements' destructors and
// deallocate() (which does nothing), so it is safe exactly when neither writes the container's
// blocks. With libstdc++, std::vector, std::basic_string, std::deque, std::list,
// std::forward_list, std::map, std::multimap, std::set and std::multiset write nothing and are
// safe to destroy after freeze. The unordered containers (std::unordered_map, unordered_set and
// their multi forms) clear their bucket array in the destructor (libstdc++'s ~_Hashtable memsets
// it), so with libstdc++ the allocator gives that one array - and only it - ordinary memory
// (std::allocator, i.e. operator new) instead of the arena: the destructor then clears writable
// memory, and the nodes (keys and values) stay in the arena. The bucket array is the process's
// (a forked worker shares it copy-on-write like any heap page, and only reads it). Each of these
// is tested in test_frozen_allocator.cpp. With another standard library the unordered containers
// are not known to be safe: make them in the arena (arena::make), which never destroys them.
// Other containers: assume unsafe until tested.
//
// Thread safety: an allocator is a value; copies may be used from any number of threads at once,
// with arena::allocate's guarantee (any number of threads before freeze()). A container using it
// is as thread-safe as the standard says for that container.
#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#if defined(__GLIBCXX__)
#include <unordered_map>  // std::__detail::_Hash_node_base, the unordered containers' bucket type
#endif

#include "permafrost/arena.hpp"
#include "permafrost/detail/asan.hpp"

namespace permafrost {
namespace detail {

// True for the element type of an unordered container's bucket array (libstdc++), which the
// container's destructor clears: frozen_allocator keeps that array out of the arena.
#if defined(__GLIBCXX__)
template <class T>
inline constexpr bool is_hash_bucket_v = std::is_same_v<T, std::__detail::_Hash_node_base*>;
#else
template <class T>
inline constexpr bool is_hash_bucket_v = false;
#endif

}  // namespace detail

template <class T>
class frozen_allocator {
 public:
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  // Effects: an allocator that allocates in `a`.
  frozen_allocator(arena& a) noexcept : core_(a.core()) {}  // NOLINT: implicit, like pmr
  explicit frozen_allocator(detail::arena_core* core) noexcept : core_(core) {}
  template <class U>
  frozen_allocator(const frozen_allocator<U>& other) noexcept : core_(other.core()) {}

  // Effects: n uninitialised T's in the arena.
  // Throws: std::bad_array_new_length when n * sizeof(T) overflows; as arena::allocate otherwise.
  // An unordered container's bucket array comes from std::allocator<T> instead (see above).
  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    if constexpr (detail::is_hash_bucket_v<T>) {
      T* buckets = std::allocator<T>().allocate(n);
      detail::lsan_ignore(buckets);  // referenced from the arena only, which LeakSanitizer skips
      return buckets;
    }
    return static_cast<T*>(detail::allocate(core_, n * sizeof(T), alignof(T)));
  }

  // Effects: none (arena memory is released only with the whole arena); a bucket array goes back
  // to std::allocator<T>.
  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (detail::is_hash_bucket_v<T>) std::allocator<T>().deallocate(p, n);
  }

  detail::arena_core* core() const noexcept { return core_; }

  template <class U>
  friend bool operator==(const frozen_allocator& a, const frozen_allocator<U>& b) noexcept {
    return a.core() == b.core();
  }

 private:
  detail::arena_core* core_;
};

}  // namespace permafrost
