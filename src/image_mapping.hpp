// permafrost — the arena registry's side of images (internal).
//
// An image's data is mapped into granules of the process-wide reservation and recorded in an
// arena slot that is frozen from birth, so is_frozen(), slot_of() and the write trap answer for
// image memory exactly as for an arena. Implemented in arena.cpp (which owns the slots and the
// granule table); image.cpp calls nothing else of the registry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "arena_slot.hpp"

namespace permafrost::detail {

// Maps `bytes` of the file `fd` from `file_offset` read-only MAP_SHARED into free granules of the
// reservation and publishes the range as a frozen arena named `name` (truncated to the slot's
// 47 bytes). On success *core is the record (release it with release_slot) and *base the first
// byte. Returns 0 or an errno value: ENOMEM when no slot or no run of free granules is left,
// otherwise mmap's (ENODEV: the file system cannot map files). Takes the registry lock.
// Pre: file_offset is page-aligned; fd stays valid for the call only (the mapping keeps the file).
int map_image(int fd, std::size_t file_offset, std::size_t bytes, std::string_view name,
              arena_core** core, std::uintptr_t* base) noexcept;

// Unmaps a slot's range (back to reserved, inaccessible address space), frees its granules and
// the slot. Used by ~arena and by ~image. Takes the registry lock.
void release_slot(arena_slot* slot) noexcept;

}  // namespace permafrost::detail
