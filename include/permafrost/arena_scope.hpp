// permafrost — arena_scope: routing a thread's plain allocations into an arena (formerly
// freeze_scope; the name said "freeze", but a scope write-protects nothing).
//
// Contract: while an arena_scope lives, every plain allocation of the calling thread - malloc,
// calloc, realloc, aligned_alloc, posix_memalign, operator new in all its forms, and so whatever
// std::string, std::map, nlohmann::json and other third-party code allocate - is served by the
// scope's arena. free()/delete of arena memory does nothing (arena bytes are never reused). realloc
// of arena memory copies the block: into the scope's arena while a scope is active, otherwise into
// the process heap (heap.hpp). Scopes nest (the innermost wins, and must be destroyed first); other
// threads are unaffected. An allocation that the arena cannot serve (capacity exhausted, arena
// frozen while the scope lives) fails as malloc/new fail: nullptr / std::bad_alloc.
//
// THE RULE: arena_scope needs the program's malloc to be permafrost's, so it exists only in the
// malloc library: link permafrost::malloc or permafrost::permafrost (libpermafrost-malloc.so,
// before any other malloc). The other targets do not define it (a link error, not a scope that
// routes nothing). Should another malloc still come first, the constructor throws
// std::logic_error rather than silently allocating elsewhere.
//
// What the C runtime allocates for itself is never routed: an allocation whose caller is glibc's
// code (libc.so.6, the dynamic loader, glibc's other libraries and gconv modules) goes to the
// process heap even inside a scope - a stdio buffer made by the first printf, atexit and pthread
// key tables, locale, iconv and NSS data, the records of dlopen and of a thread created in the
// scope - so the arena may be frozen or destroyed while the C library keeps using them, and no
// buffered output is lost. The same holds for glibc functions that allocate for their caller
// (strdup, asprintf, getline): their result is heap memory. libstdc++ counts as the program
// (std::string grows there): what it keeps process-wide when first used inside a scope (cout's
// buffer after sync_with_stdio(false), a locale's facets) lands in the arena, as does the static
// state of a non-glibc library loaded while the scope is active. docs/design.md, "arena_scope".
//
// The library's own bookkeeping (an arena's allocation log and freeze-check list, exception
// messages) is never routed: its entry points suspend the scope while they allocate, so a scope
// over an arena may use every arena feature, allocation log and freeze checks included.
//
// The arena keeps no size per block (no allocator metadata in the mapping), so malloc_usable_size
// of arena memory returns 0 and realloc copies up to the arena's used end (the bytes past the old
// block are unspecified, as realloc allows).
//
// Thread safety: a scope belongs to the thread that made it. The arena may be used by other
// threads meanwhile under its own rules (arena.hpp).
#pragma once

#include "permafrost/api.h"
#include "permafrost/arena.hpp"

namespace permafrost {

class PERMAFROST_API arena_scope {
 public:
  // Effects: routes this thread's plain allocations to `target` until destruction.
  // Pre: `target` outlives the scope. Where it is destroyed first on the calling thread while
  // this scope is the innermost, the thread's allocations go to the process heap from then on,
  // and the scope's destructor aborts with a message (exit() with the scope alive is fine: it
  // never runs). Destroying it from another thread, or while an inner scope is the innermost,
  // is not detected.
  // Throws: std::logic_error when the malloc library is not the program's malloc (see above);
  // frozen_error when `target` is already frozen.
  explicit arena_scope(arena& target);

  // Effects: restores the enclosing scope (or none). Pre: this is the innermost live scope of
  // the calling thread, and its arena is alive; otherwise aborts with a message.
  ~arena_scope();

  arena_scope(const arena_scope&) = delete;
  arena_scope& operator=(const arena_scope&) = delete;

 private:
  detail::arena_core* target_;
  detail::arena_core* previous_;
};

// True when the malloc library (libpermafrost-malloc.so) serves this program's malloc.
PERMAFROST_API bool malloc_library_active() noexcept;

}  // namespace permafrost
