// permafrost — telling AddressSanitizer which arena bytes are handed out (internal).
//
// Under ASan an arena's committed but unallocated bytes are poisoned, and each allocation
// unpoisons exactly its own bytes, so an overflow into padding or into the unused tail of a
// thread's chunk is reported like a heap overflow. Without ASan these are empty inline functions.
// Build the library and its users with the same sanitizer flags: the inline fast path unpoisons
// in the caller's translation unit.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define PERMAFROST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PERMAFROST_ASAN 1
#endif
#endif

#ifdef PERMAFROST_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#endif

namespace permafrost::detail {

inline void asan_poison(const void* p, std::size_t bytes) noexcept {
#ifdef PERMAFROST_ASAN
  __asan_poison_memory_region(p, bytes);
#else
  (void)p;
  (void)bytes;
#endif
}

// Tells LeakSanitizer that the heap block at p is not a leak although no scanned memory may point
// to it: its only reference can live in an arena, which LeakSanitizer does not scan (an
// unordered container's bucket array, frozen_allocator.hpp).
inline void lsan_ignore(const void* p) noexcept {
#ifdef PERMAFROST_ASAN
  __lsan_ignore_object(p);
#else
  (void)p;
#endif
}

inline void asan_unpoison(const void* p, std::size_t bytes) noexcept {
#ifdef PERMAFROST_ASAN
  __asan_unpoison_memory_region(p, bytes);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace permafrost::detail
