// permafrost — where an image's data is mapped (internal).
//
// An image's data is mapped into granules of the process-wide reservation through the arena
// registry's image protocol (arena_registry.hpp: claim_frozen / publish_frozen / release_frozen),
// so is_frozen(), slot_of() and the write trap answer for image memory exactly as for an arena.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string_view>

#include "arena/arena_registry.hpp"
#include "os/os.hpp"
#include "permafrost/detail/asan.hpp"

namespace permafrost::detail {

// Maps `bytes` of the file `fd` from `file_offset` read-only MAP_SHARED into claimed granules and
// publishes the range as a frozen arena named `name`. On success *core is the record (give it
// back with unmap_image) and *base the first byte. Returns 0 or an errno value: EMFILE when all
// arena slots are in use, ENOMEM when no run of granules is long enough, otherwise mmap's
// (ENODEV: the file system cannot map files).
// Pre: file_offset is page-aligned; fd stays valid for the call only (the mapping keeps the file).
inline int map_image(int fd, std::size_t file_offset, std::size_t bytes, std::string_view name,
                     arena_core** core, std::uintptr_t* base) noexcept {
  if (bytes == 0 || bytes > max_granules * granule_size) return ENOMEM;
  const std::size_t mapped = round_up(bytes, os::page_size());
  arena_slot* slot = nullptr;
  try {
    slot = registry::claim_frozen(mapped);
  } catch (const arena_limit_error& e) {
    return e.which() == arena_limit_error::limit::slots ? EMFILE : ENOMEM;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  // Replaces the reservation's PROT_NONE pages with the file, read-only and shared: the page
  // cache's pages, never a private copy.
  if (const int err =
          os::map_file_fixed(fd, reinterpret_cast<void*>(slot->base), mapped, file_offset, false);
      err != 0) {
    registry::release_frozen(slot);
    return err;
  }
  registry::publish_frozen(slot, slot->base + bytes, name);
  // The range may have been poisoned by an arena this process destroyed there earlier.
  asan_unpoison(reinterpret_cast<void*>(slot->base), bytes);
  *core = slot;
  *base = slot->base;
  return 0;
}

// Unmaps an image mapped by map_image (back to inaccessible, quarantined address space).
inline void unmap_image(arena_core* core) noexcept {
  registry::release_frozen(static_cast<arena_slot*>(core));
}

}  // namespace permafrost::detail
