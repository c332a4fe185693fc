// permafrost — the per-process heap.
//
// Contract: every process allocates its mutable objects in memory that it reserved itself and that
// no ancestor ever touched. The heap is a mimalloc heap in exclusive mimalloc arenas owned by this
// process: 64 GiB of address space at first (1 GiB with the malloc library, whose every
// allocation can grow it), more (doubling) as process_heap() or the malloc library need it, less
// when an address-space limit allows less. Freed memory goes back to the kernel as mimalloc's own
// does. Target permafrost::heap (it links Debian's libmimalloc, which becomes the process malloc),
// or permafrost::malloc. A fork renews it in the child (pthread_atfork, see fork.hpp): the child
// moves to a fresh arena that the parent reserved before the fork and never touched, so after the
// fork no allocation of the child - through process_heap(), or through plain malloc/new, because
// linking permafrost::heap makes Debian's libmimalloc the process malloc - writes a page it
// inherited. Each renewal starts a new *generation*; every thread gets its own heap per generation
// (mimalloc heaps allocate on one thread only), made on the thread's first allocation after the
// renewal.
//
// Objects an ancestor allocated before the fork stay valid and readable. Freeing one through this
// heap writes nothing: in this process it is immortal and counted in heap_stats::abandoned.
// Plain free()/delete of such an object goes to mimalloc and does write its page, unless the
// program uses the malloc library (permafrost::malloc, libpermafrost-malloc.so), which routes
// free() through this heap as well. docs/design.md section 2 lists the few pages mimalloc's own
// bookkeeping still writes after a fork.
//
// Thread safety: process_heap() and process_allocator<T> may be used from any thread at once.
// Memory may be freed by another thread than the one that allocated it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <new>
#include <type_traits>

#include "permafrost/api.h"

namespace permafrost {

// =============================================================================================
// Statistics
// =============================================================================================

// A snapshot of this process's heap, returned by value.
struct heap_stats {
  std::size_t reserved = 0;      // virtual bytes of the current generation's arenas
  std::size_t used = 0;          // bytes of those arenas backed by memory now (their resident set)
  std::uint64_t generation = 0;  // renewals since the process started: 0 in the first process,
                                 // +1 per fork in each child (so a grandchild is at 2), +1 in the
                                 // parent at its first fork under PERMAFROST_KEEP_INHERITED=1
  std::size_t abandoned = 0;     // bytes of ancestors' objects this process was asked to free
                                 // and left in place (their pages are never written)
  std::uint64_t threads = 0;     // thread heaps made in this generation
  int last_error = 0;            // errno of the last failed renewal or arena reservation (the
                                 // process then keeps allocating where it did), or 0
};

// Effects: reads the counters (and the arenas' resident size from /proc/self/smaps).
PERMAFROST_API heap_stats process_heap_stats();

// =============================================================================================
// The heap
// =============================================================================================

// This process's mutable heap as a memory resource. The pointer is the same for the whole life
// of the process and stays valid in children (it always serves the current generation).
// do_allocate throws std::bad_alloc when no arena can serve the request (see Limits in
// docs/design.md section 2); deallocate of an ancestor's
// block abandons it (see above); do_is_equal is identity.
PERMAFROST_API std::pmr::memory_resource* process_heap() noexcept;

namespace detail {
// The calling thread's heap of the current generation: malloc-like, nullptr on exhaustion.
PERMAFROST_API void* heap_allocate(std::size_t bytes, std::size_t align) noexcept;
// Frees a block of this generation; abandons an ancestor's; aborts on a pointer that is not the
// heap's (an arena pointer is not the heap's either).
PERMAFROST_API void heap_free(void* p) noexcept;
}  // namespace detail

// A std::allocator-compatible handle on process_heap(); stateless, all instances equal.
template <class T>
class process_allocator {
  static_assert(!std::is_const_v<T> && !std::is_reference_v<T>,
                "process_allocator<T> needs a non-const object type");

 public:
  using value_type = T;
  using is_always_equal = std::true_type;

  constexpr process_allocator() noexcept = default;
  template <class U>
  constexpr process_allocator(const process_allocator<U>&) noexcept {}

  // Throws: std::bad_array_new_length when n * sizeof(T) overflows; std::bad_alloc when the
  // heap is exhausted.
  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    void* p = detail::heap_allocate(n * sizeof(T), alignof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { detail::heap_free(p); }

  template <class U>
  friend constexpr bool operator==(const process_allocator&, const process_allocator<U>&) noexcept {
    return true;
  }
};

}  // namespace permafrost
