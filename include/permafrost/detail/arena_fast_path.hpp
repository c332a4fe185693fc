// permafrost — the arena's inline fast paths (internal, not API): the process-wide granule table
// behind is_frozen(), each thread's bump chunk, and the bump itself. arena.hpp includes this
// header so that allocate() and is_frozen() inline into the caller; nothing here is for users to
// call, and names may change in any release. The library exports exactly the internals these
// inline functions reach (t_bump, g_address_space, allocate_slow: marked PERMAFROST_API) and hides
// the rest (docs/design.md, "The binary surface").
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "permafrost/api.h"
#include "permafrost/detail/asan.hpp"

namespace permafrost::detail {

// Arenas are carved from one reservation in granules of this size; granule-aligned bases let
// every alignment up to max_alignment be served exactly.
inline constexpr unsigned granule_shift = 28;  // 256 MiB
inline constexpr std::size_t granule_size = std::size_t{1} << granule_shift;
inline constexpr std::size_t max_granules = std::size_t{1} << 16;  // up to 16 TiB of arenas
inline constexpr std::size_t max_alignment = granule_size;
// Alignments above this skip the inline fast path (rare; the slow path handles them).
inline constexpr std::size_t max_fast_alignment = 4096;

// The part of an arena's record the inline fast path reads. The record lives in static storage
// for the life of the process, so handles to it never dangle.
struct arena_core {
  // Changes whenever thread caches must stop serving this arena (freeze, destruction).
  std::atomic<std::uint64_t> ticket{0};
};

// One thread's current bump chunk. A thread serves allocations from its chunk without atomics
// while `ticket` matches the arena's; the slow path refills it under the arena's lock.
struct bump_cache {
  std::uint64_t ticket = 0;
  std::uintptr_t cur = 0;
  std::uintptr_t end = 0;
  std::uint64_t count = 0;  // allocations served from the chunk, not yet added to the arena
  std::uint64_t lost = 0;   // alignment padding in the chunk, not yet added to the arena
  arena_core* owner = nullptr;
  std::uint64_t identity = 0;  // the owner's identity when the chunk was carved (see arena_slot)
};
PERMAFROST_API extern constinit thread_local bump_cache t_bump
    __attribute__((tls_model("initial-exec")));

struct granule_entry {
  // One past the last frozen byte of the arena that owns this granule; 0 when unfrozen or free.
  std::atomic<std::uintptr_t> frozen_end{0};
  // The owning arena's record, or nullptr.
  std::atomic<arena_core*> owner{nullptr};
  // When the granule was last released (a registry sequence number), 0 if never: the registry
  // reuses long-released granules first. Guarded by the registry lock.
  std::uint64_t released = 0;
};

struct address_space {
  std::atomic<std::uintptr_t> base{0};
  std::atomic<std::uintptr_t> size{0};  // 0 until the first arena is made
  granule_entry granules[max_granules];
};
PERMAFROST_API extern constinit address_space g_address_space;

// The one granule lookup: the entry for the granule holding p, and whether p lies in the
// reservation at all. Branch-free: an address outside reads granule 0, which the caller must
// then discard (`inside` false). Lock-free, writes nothing, async-signal-safe.
inline const granule_entry& granule_of(const void* p, bool& inside) noexcept {
  const std::uintptr_t offset =
      reinterpret_cast<std::uintptr_t>(p) - g_address_space.base.load(std::memory_order_relaxed);
  inside = offset < g_address_space.size.load(std::memory_order_relaxed);
  return g_address_space.granules[(offset >> granule_shift) & (0 - std::uintptr_t{inside})];
}

// The slow path: argument checks, refills, commit growth, logging, errors.
[[gnu::noinline]] PERMAFROST_API void* allocate_slow(arena_core* core, std::size_t bytes,
                                                     std::size_t align, const char* tag,
                                                     bool throw_on_failure);

// The fast path: an aligned bump inside the calling thread's chunk. Returns nullptr when the
// slow path must decide (no chunk for this arena, chunk exhausted, unusual size or alignment).
inline void* try_bump(arena_core* core, std::size_t bytes, std::size_t align) noexcept {
  bump_cache& c = t_bump;
  const bool plain_align = align != 0 && (align & (align - 1)) == 0 && align <= max_fast_alignment;
  if (c.ticket == core->ticket.load(std::memory_order_relaxed) && plain_align && bytes != 0 &&
      bytes <= c.end - c.cur) [[likely]] {
    const std::uintptr_t p = (c.cur + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
    if (p + bytes <= c.end) [[likely]] {
      c.lost += p - c.cur;
      c.cur = p + bytes;
      ++c.count;
      asan_unpoison(reinterpret_cast<void*>(p), bytes);
      return reinterpret_cast<void*>(p);
    }
  }
  return nullptr;
}

inline void* allocate(arena_core* core, std::size_t bytes, std::size_t align) {
  if (void* p = try_bump(core, bytes, align)) [[likely]]
    return p;
  return allocate_slow(core, bytes, align, nullptr, true);
}

}  // namespace permafrost::detail
