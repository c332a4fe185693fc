// permafrost — the per-process heap's internals, shared by process_heap.cpp and the malloc
// library (internal).
#pragma once

#include <cstddef>
#include <cstdint>

struct mi_heap_s;

namespace permafrost::detail {

// The calling thread's mimalloc heap of the current generation, made on first use (and made the
// thread's default mimalloc heap, so plain mimalloc malloc lands there too). nullptr while the
// thread is making it (a re-entrant malloc), after its thread-exit hook ran, or when no arena
// could be reserved: the allocation functions then fall back to mimalloc's default heap.
mi_heap_s* thread_heap() noexcept;

// calloc and realloc on the calling thread's heap, which grows like heap_allocate's (heap.hpp):
// nullptr on exhaustion. heap_reallocate pre: p is a block of this generation.
void* heap_zallocate(std::size_t bytes) noexcept;
void* heap_reallocate(void* p, std::size_t bytes) noexcept;

// Who owns a block handed to free().
enum class block_owner {
  none,      // not heap memory: the caller passed a bad pointer
  current,   // this process's current generation: free it
  ancestor,  // another generation (an ancestor's, or this process's before a keep-inherited
             // renewal): leave it in place
  arena,     // a permafrost arena's bytes: never freed one by one
};
block_owner owner_of(const void* p) noexcept;

// Counts `bytes` as abandoned (heap_stats::abandoned).
void note_abandoned(std::size_t bytes) noexcept;

// Sets up the first generation and the fork handlers. Idempotent, thread-safe, cheap after the
// first call; safe to call from inside malloc.
void init_process_heap() noexcept;

// PERMAFROST_KEEP_INHERITED=1: the parent also moves to a new generation at its first fork.
// Set by the malloc library before the first fork.
void set_keep_inherited(bool on) noexcept;

// The first renewal (child's or, with PERMAFROST_KEEP_INHERITED=1, parent's) prepares ahead of
// fork: see fork.hpp. Returns 0 or an errno value.
int prepare_fork() noexcept;

}  // namespace permafrost::detail
