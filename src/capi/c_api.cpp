// permafrost — the C API: exceptions turned into errno values at the boundary.
#include "permafrost/permafrost.h"

#include <cerrno>
#include <new>
#include <stdexcept>
#include <system_error>

#include "permafrost/arena.hpp"
#include "permafrost/write_trap.hpp"

struct permafrost_arena {
  permafrost::arena impl;
};

namespace {

template <class F>
int guarded(F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const permafrost::frozen_error&) {
    return EROFS;
  } catch (const permafrost::attach_error& e) {
    using reason = permafrost::attach_error::reason;
    switch (e.why()) {
      case reason::not_a_memfd: return EBADF;
      case reason::unsealed: return EPERM;
      case reason::foreign: return EPROTO;
      case reason::truncated: return EIO;
      case reason::address_taken: return EEXIST;
      case reason::system: break;
    }
    return e.error() != 0 ? e.error() : EIO;
  } catch (const std::invalid_argument&) {
    return EINVAL;
  } catch (const std::logic_error&) {
    // The one left the C API can meet: a forked child allocating from or freezing an unfrozen
    // memfd arena, which only its creator may do.
    return EPERM;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const std::system_error& e) {
    return e.code().value() != 0 ? e.code().value() : EIO;
  } catch (...) {
    return EIO;
  }
}

}  // namespace

extern "C" {

void permafrost_arena_options_init(permafrost_arena_options* options) {
  if (options == nullptr) return;
  const permafrost::arena_options defaults;
  options->capacity = defaults.capacity;
  options->name = nullptr;
  options->huge_pages = defaults.huge_pages ? 1 : 0;
  options->allocation_log = 0;
  options->memfd = defaults.backing == permafrost::backing::memfd ? 1 : 0;
  options->populate = defaults.populate ? 1 : 0;
}

int permafrost_arena_create(const permafrost_arena_options* options, permafrost_arena** out) {
  if (out == nullptr) return EINVAL;
  *out = nullptr;
  return guarded([&] {
    permafrost::arena_options o;
    if (options != nullptr) {
      o.capacity = options->capacity;
      if (options->name != nullptr) o.name = options->name;
      o.huge_pages = options->huge_pages != 0;
      o.allocation_log = options->allocation_log != 0;
      o.backing = options->memfd != 0 ? permafrost::backing::memfd : permafrost::backing::anonymous;
      o.populate = options->populate != 0;
    }
    *out = new permafrost_arena{permafrost::arena(std::move(o))};
  });
}

int permafrost_arena_allocate(permafrost_arena* arena, size_t size, size_t align, void** out) {
  if (out == nullptr) return EINVAL;
  *out = nullptr;
  if (arena == nullptr) return EINVAL;
  return guarded([&] { *out = arena->impl.allocate(size, align); });
}

int permafrost_arena_freeze(permafrost_arena* arena) {
  if (arena == nullptr) return EINVAL;
  return guarded([&] { arena->impl.freeze(); });
}

int permafrost_arena_contains(const permafrost_arena* arena, const void* p) {
  return arena != nullptr && arena->impl.contains(p) ? 1 : 0;
}

int permafrost_arena_frozen(const permafrost_arena* arena) {
  return arena != nullptr && arena->impl.frozen() ? 1 : 0;
}

int permafrost_arena_stats_get(const permafrost_arena* arena, permafrost_arena_stats* out) {
  if (arena == nullptr || out == nullptr) return EINVAL;
  return guarded([&] {
    const permafrost::arena_stats s = arena->impl.stats();
    out->reserved = s.reserved;
    out->committed = s.committed;
    out->used = s.used;
    out->lost_to_alignment = s.lost_to_alignment;
    out->allocations = s.allocations;
    try {
      out->huge_page_bytes = arena->impl.huge_page_bytes();
    } catch (const std::system_error&) {
      out->huge_page_bytes = 0;  // smaps unreadable (hidepid, no /proc): the counters still stand
    }
    out->frozen = s.frozen ? 1 : 0;
  });
}

void permafrost_arena_destroy(permafrost_arena* arena) { delete arena; }

int permafrost_arena_fd(const permafrost_arena* arena) {
  return arena != nullptr ? arena->impl.fd() : -1;
}

int permafrost_arena_attach(int fd, int populate, permafrost_arena** out) {
  if (out == nullptr) return EINVAL;
  *out = nullptr;
  return guarded(
      [&] { *out = new permafrost_arena{permafrost::arena::attach(fd, populate != 0)}; });
}

int permafrost_is_frozen(const void* p) { return permafrost::is_frozen(p) ? 1 : 0; }

int permafrost_install_write_trap(void) {
  try {
    permafrost::install_write_trap();
    return 0;
  } catch (const std::system_error& e) {
    return e.code().value() != 0 ? e.code().value() : EIO;
  }
}

int permafrost_install_write_trap_from_env(void) {
  return permafrost::install_write_trap_from_env() ? 1 : 0;
}

}  // extern "C"
