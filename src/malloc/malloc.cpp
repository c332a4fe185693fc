// libpermafrost-malloc.so — permafrost as the program's malloc (by linking or LD_PRELOAD).
//
// Routing, for every entry point below:
//   - on a thread inside a arena_scope: the scope's arena, unless the C runtime itself asks (the
//     C entry points pass their return address; glibc's code gets the heap: c_runtime_callers.hpp);
//   - otherwise: the calling thread's heap of the current generation (heap.hpp);
//   - alignments above 16 MiB (mimalloc 2.0.9's limit) fail: ENOMEM / nullptr / std::bad_alloc;
//   - free/delete: arena memory is left alone; this generation's blocks are freed; blocks of an
//     earlier generation (an ancestor's) are abandoned, never written; anything else aborts with
//     "free(): invalid pointer", as glibc does.
// PERMAFROST_TRAP=1 in the environment at load installs the write trap (write_trap.hpp).
// PERMAFROST_KEEP_INHERITED=1 in the environment at load: the parent also starts a new generation
// at its first fork, so everything allocated before that fork is kept as it is: never written,
// reused or freed by the allocator again, in any process. Nothing is write-protected: the program
// can still write its own objects. (The old name, PERMAFROST_FREEZE_AT_FORK=1, is still read for
// one release; "freeze" now means only write protection.)
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unistd.h>

#include <mimalloc.h>

#include "arena/arena_registry.hpp"
#include "heap/process_heap.hpp"
#include "malloc/c_runtime_callers.hpp"
#include "malloc/malloc_library.hpp"
#include "os/os.hpp"
#include "permafrost/arena_scope.hpp"
#include "permafrost/heap.hpp"
#include "permafrost/write_trap.hpp"

namespace {

using permafrost::detail::arena_core;
using permafrost::detail::block_owner;

constexpr std::size_t min_align = alignof(std::max_align_t);

// The arena's slow path may allocate (its log): route such nested allocations to the heap. Its
// system calls may fail and be retried (a smaller commit): a block it returns comes with the
// caller's errno, as from the heap (process_heap.cpp), and no block with ENOMEM.
void* arena_alloc(arena_core* core, std::size_t n, std::size_t align) noexcept {
  if (void* p = permafrost::detail::try_bump(core, n == 0 ? 1 : n, align)) return p;
  const int caller_errno = errno;
  permafrost::detail::t_scope_target = nullptr;
  void* p = nullptr;
  try {
    p = permafrost::detail::allocate_slow(core, n, align, nullptr, false);
  } catch (...) {
    p = nullptr;
  }
  permafrost::detail::t_scope_target = core;
  errno = p != nullptr ? caller_errno : ENOMEM;
  return p;
}

// The arena a request goes to: the thread's scope's, unless the C runtime itself is asking (its
// stdio buffers, exit handlers, key tables, locale, NSS and loader records are process-wide
// state that must outlive the scope's arena: c_runtime_callers.hpp). `caller` is the return
// address of the allocation call; operator new passes 0 (the C runtime never calls it).
arena_core* scope_arena_for(std::uintptr_t caller) noexcept {
  arena_core* core = permafrost::detail::t_scope_target;
  if (core == nullptr || caller == 0) return core;
  return permafrost::detail::is_c_runtime_code(caller) ? nullptr : core;
}

void* route_alloc(std::size_t n, std::size_t align, std::uintptr_t caller = 0) noexcept {
  if (permafrost::detail::t_scope_target != nullptr) [[unlikely]] {
    if (arena_core* core = scope_arena_for(caller)) return arena_alloc(core, n, align);
  }
  void* p = permafrost::detail::heap_allocate(n, align);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

void* route_zalloc(std::size_t n, std::uintptr_t caller) noexcept {
  if (permafrost::detail::t_scope_target != nullptr) [[unlikely]] {
    if (arena_core* core = scope_arena_for(caller))
      return arena_alloc(core, n, min_align);  // arena bytes are never reused: still zero
  }
  void* p = permafrost::detail::heap_zallocate(n);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

// The return address of the entry point it is used in: who asked for the memory.
#define PERMAFROST_CALLER() reinterpret_cast<std::uintptr_t>(__builtin_return_address(0))

[[noreturn]] void invalid(const char* what) noexcept {
  permafrost::detail::check_failed(what, __FILE__, __LINE__);
}

bool is_power_of_two(std::size_t a) noexcept { return a != 0 && (a & (a - 1)) == 0; }

// Bytes readable from p inside its arena: up to the arena's used end.
std::size_t arena_readable(const void* p) noexcept {
  auto* slot = permafrost::detail::slot_of(p);
  std::lock_guard lock(slot->mu);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return slot->bump > a ? slot->bump - a : 0;
}

void* route_realloc(void* p, std::size_t n, std::uintptr_t caller) noexcept {
  if (p == nullptr) return route_alloc(n, min_align, caller);
  if (n == 0) {  // glibc: frees and returns nullptr
    permafrost::detail::heap_free(p);
    return nullptr;
  }
  const block_owner owner = permafrost::detail::owner_of(p);
  if (owner == block_owner::none) invalid("realloc(): invalid pointer");
  const bool into_scope =
      permafrost::detail::t_scope_target != nullptr && scope_arena_for(caller) != nullptr;
  if (owner == block_owner::current && !into_scope) {
    void* q = permafrost::detail::heap_reallocate(p, n);
    if (q == nullptr) errno = ENOMEM;
    return q;
  }
  // Moves: out of the arena, out of an ancestor's generation, or into the scope's arena.
  const std::size_t old = owner == block_owner::arena ? arena_readable(p) : mi_usable_size(p);
  void* q = route_alloc(n, min_align, caller);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old < n ? old : n);
  permafrost::detail::heap_free(p);
  return q;
}

void* route_aligned(std::size_t align, std::size_t n, std::uintptr_t caller) noexcept {
  return route_alloc(n, align < min_align ? min_align : align, caller);
}

// operator new: the new-handler loop of [new.delete.single].
void* new_or_throw(std::size_t n, std::size_t align) {
  for (;;) {
    if (void* p = route_alloc(n == 0 ? 1 : n, align)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* new_nothrow(std::size_t n, std::size_t align) noexcept {
  try {
    return new_or_throw(n, align);
  } catch (...) {
    return nullptr;
  }
}

// True when the environment variable `name` is exactly "1".
bool env_is_1(const char* name) noexcept {
  const char* value = nullptr;
  return permafrost::os::environment(name, &value) == 0 && std::strcmp(value, "1") == 0;
}

}  // namespace

bool permafrost::detail::g_malloc_library_active = false;

namespace {

// The library leaves mimalloc's options as mimalloc and its MIMALLOC_* variables set them. Until
// 2026-12-05 it set mi_option_decommit_delay to 0, so that an idle process gave freed pages back
// at once (mimalloc decommits them only 25 ms after the free and on a later call); but every page
// emptied and refilled was then given back and faulted in again: a buffer above 128 KiB allocated
// and freed in a loop, and pages of medium blocks that a program's churn empties and refills,
// which made ordinary programs (sqlite, Python parsing JSON) run much slower
// (test_malloc: "a block freed and allocated again is not faulted in again each time").
// MIMALLOC_DECOMMIT_DELAY=0 still gives that behaviour to a program that wants it.
__attribute__((constructor)) void permafrost_malloc_at_load() {
  permafrost::detail::g_malloc_library_active = true;
  permafrost::detail::init_process_heap();
  if (env_is_1("PERMAFROST_KEEP_INHERITED") || env_is_1("PERMAFROST_FREEZE_AT_FORK"))
    permafrost::detail::set_keep_inherited(true);
  (void)permafrost::install_write_trap_from_env();  // PERMAFROST_TRAP=1; reports its own failure
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The C allocation API
// ---------------------------------------------------------------------------------------------
// The library is compiled with hidden visibility (permafrost/api.h): the entry points it replaces
// are exported explicitly, from here to the end of the file (libpermafrost-malloc.map lists them).
#pragma GCC visibility push(default)
extern "C" {

// Present when the malloc library is loaded; tests and tools look it up with dlsym.
extern const int permafrost_malloc_library;
const int permafrost_malloc_library = 1;

void* malloc(std::size_t n) noexcept { return route_alloc(n, min_align, PERMAFROST_CALLER()); }

void free(void* p) noexcept { permafrost::detail::heap_free(p); }

void* calloc(std::size_t count, std::size_t size) noexcept {
  std::size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return route_zalloc(n, PERMAFROST_CALLER());
}

void* realloc(void* p, std::size_t n) noexcept { return route_realloc(p, n, PERMAFROST_CALLER()); }

void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept {
  std::size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return route_realloc(p, n, PERMAFROST_CALLER());
}

void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
  if (!is_power_of_two(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return route_aligned(align, n, PERMAFROST_CALLER());
}

int posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
  if (!is_power_of_two(align) || align % sizeof(void*) != 0) return EINVAL;
  void* p = route_aligned(align, n, PERMAFROST_CALLER());
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* memalign(std::size_t align, std::size_t n) noexcept {
  // glibc rounds an alignment that is not a power of two up to the next one.
  if (!is_power_of_two(align)) {
    if (align > SIZE_MAX / 2 + 1) {
      errno = EINVAL;
      return nullptr;
    }
    align = std::bit_ceil(align);
  }
  return route_aligned(align, n, PERMAFROST_CALLER());
}

void* valloc(std::size_t n) noexcept {
  return route_aligned(permafrost::os::page_size(), n, PERMAFROST_CALLER());
}

void* pvalloc(std::size_t n) noexcept {
  const auto page = permafrost::os::page_size();
  if (n > SIZE_MAX - page) {
    errno = ENOMEM;
    return nullptr;
  }
  return route_aligned(page, (n + page - 1) / page * page + (n == 0 ? page : 0),
                       PERMAFROST_CALLER());
}

std::size_t malloc_usable_size(void* p) noexcept {
  if (p == nullptr) return 0;
  switch (permafrost::detail::owner_of(p)) {
    case block_owner::current:
    case block_owner::ancestor: return mi_usable_size(p);
    case block_owner::arena:  // no sizes are kept for arena blocks
    case block_owner::none: return 0;
  }
  return 0;
}

// ----- other names of the same calls --------------------------------------------------------
// glibc's own names for its allocator (__libc_malloc...; glibc's malloc debugging library and
// profilers call them), and the BSD and compatibility names Debian's libmimalloc.so exports
// (cfree, reallocf, malloc_size...). Unexported here, the first resolved to glibc's allocator
// and the others straight to mimalloc, past this library's routing: a block from one freed by
// the other aborted with "free(): invalid pointer". Each is the entry point above it names.

void* __libc_malloc(std::size_t n) noexcept {
  return route_alloc(n, min_align, PERMAFROST_CALLER());
}
void* __libc_calloc(std::size_t count, std::size_t size) noexcept { return calloc(count, size); }
void* __libc_realloc(void* p, std::size_t n) noexcept {
  return route_realloc(p, n, PERMAFROST_CALLER());
}
void __libc_free(void* p) noexcept { permafrost::detail::heap_free(p); }
void __libc_cfree(void* p) noexcept { permafrost::detail::heap_free(p); }
void cfree(void* p) noexcept { permafrost::detail::heap_free(p); }
void vfree(void* p) noexcept { permafrost::detail::heap_free(p); }
void* __libc_memalign(std::size_t align, std::size_t n) noexcept { return memalign(align, n); }
void* __libc_valloc(std::size_t n) noexcept { return valloc(n); }
void* __libc_pvalloc(std::size_t n) noexcept { return pvalloc(n); }
int __posix_memalign(void** out, std::size_t align, std::size_t n) noexcept {
  return posix_memalign(out, align, n);
}
// mimalloc's argument order (alignment first), which its export gave programs here.
void* _aligned_malloc(std::size_t align, std::size_t n) noexcept { return aligned_alloc(align, n); }

// BSD: realloc that frees the block when it fails (not for a size of 0, which frees it anyway).
void* reallocf(void* p, std::size_t n) noexcept {
  void* q = route_realloc(p, n, PERMAFROST_CALLER());
  if (q == nullptr && p != nullptr && n != 0) permafrost::detail::heap_free(p);
  return q;
}

// NetBSD: *p = realloc(*p, count * size); 0 or an errno value, *p unchanged on failure.
int reallocarr(void* p, std::size_t count, std::size_t size) noexcept {
  std::size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) return EOVERFLOW;
  void** slot = static_cast<void**>(p);
  const int caller_errno = errno;
  void* q = route_realloc(*slot, n, PERMAFROST_CALLER());
  if (q == nullptr && n != 0) {
    const int err = errno;
    errno = caller_errno;
    return err;
  }
  *slot = q;
  return 0;
}

std::size_t malloc_size(const void* p) noexcept { return malloc_usable_size(const_cast<void*>(p)); }
std::size_t malloc_good_size(std::size_t n) noexcept { return mi_good_size(n); }

}  // extern "C"

// ---------------------------------------------------------------------------------------------
// operator new / delete, every form
// ---------------------------------------------------------------------------------------------
void* operator new(std::size_t n) { return new_or_throw(n, min_align); }
void* operator new[](std::size_t n) { return new_or_throw(n, min_align); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n, min_align);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n, min_align);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return new_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return new_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a));
}

void operator delete(void* p) noexcept { permafrost::detail::heap_free(p); }
void operator delete[](void* p) noexcept { permafrost::detail::heap_free(p); }
void operator delete(void* p, std::size_t) noexcept { permafrost::detail::heap_free(p); }
void operator delete[](void* p, std::size_t) noexcept { permafrost::detail::heap_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { permafrost::detail::heap_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  permafrost::detail::heap_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept { permafrost::detail::heap_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { permafrost::detail::heap_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  permafrost::detail::heap_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  permafrost::detail::heap_free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  permafrost::detail::heap_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  permafrost::detail::heap_free(p);
}
#pragma GCC visibility pop
