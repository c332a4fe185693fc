// permafrost — memfd backing of an arena (internal): creation, commit, freeze-and-seal, the fork
// guard and the trailer that lets another process attach a frozen arena. The anonymous backing
// needs none of this; arena.cpp calls in here only for slots whose fd is >= 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "arena/arena_slot.hpp"

namespace permafrost::detail {

// A descriptor closed on scope exit unless released.
struct owned_fd {
  int fd = -1;
  owned_fd() = default;
  explicit owned_fd(int f) : fd(f) {}
  owned_fd(owned_fd&& other) noexcept : fd(other.release()) {}
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd();
  int release() noexcept {
    const int f = fd;
    fd = -1;
    return f;
  }
};

// Creates the memfd "permafrost:<name>" for a new arena and installs the memfd stage of the fork
// lifecycle (the fork guard) with the registry's below it.
// Throws: std::system_error when the kernel refuses.
owned_fd open_arena_memfd(std::string_view name);

// Makes [from, from + bytes) of a memfd arena writable: grows the file and maps that part of it
// MAP_SHARED over the reservation. Returns 0 or an errno value. Pre: slot->mu held, fd >= 0,
// from and bytes page-aligned, from >= base.
int memfd_commit(arena_slot* slot, std::uintptr_t from, std::size_t bytes) noexcept;

// The memfd part of freeze(): drops the committed tail, writes the trailer after the data,
// makes [base, round_up(used_end, page)) read-only and seals the file (write, grow, shrink).
// Throws: std::system_error; the arena then stays unfrozen (and, if the failure came after the
// seals, unable to grow: allocation beyond its committed range fails with bad_alloc).
// Pre: slot->mu held, fd >= 0, not frozen, not a forked copy.
void memfd_freeze(arena_slot* slot, std::uintptr_t used_end);

// True in a process forked from the creator of an unfrozen memfd arena: its pages are the
// parent's (MAP_SHARED), so this process must neither allocate from it nor freeze it.
bool inherited_unfrozen_memfd(const arena_slot* slot) noexcept;

// Sets the slot's memfd to `fd` (an open memfd, or -1) and records which file it is.
void set_backing_fd(arena_slot* slot, int fd) noexcept;

// True when the slot's memfd number still names the memfd it was given: a program may close
// it behind the arena's back, and the number may then name another file.
bool owns_backing_fd(const arena_slot* slot) noexcept;

// Closes the slot's memfd, if any and still its own, and resets the backing fields.
// Pre: slot->mu held.
void release_backing(arena_slot* slot) noexcept;

}  // namespace permafrost::detail
