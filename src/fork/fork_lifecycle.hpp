// permafrost — the fork lifecycle (internal): the library's one pthread_atfork registration and
// the ordered table of hooks that subsystems with fork state register into.
//
// Contract: a subsystem registers its prepare, parent and child hooks under its stage
// (fork_stage) when its fork state first exists. Around fork(2) the handlers run:
//   prepare: every stage's prepare hook, in ascending stage order;
//   parent:  every stage's parent hook, in descending order;
//   child:   the fork epoch is bumped, then every stage's child hook, in descending order.
// So each stage prepares with every lower stage prepared, and finishes before any lower stage
// finishes. The stage order is the lock order: registry lock and the arena fork gate, then
// the heap's lock, released in reverse, so no child inherits a permafrost lock held by a thread
// that does not exist in it. Handles (share()) compare their epoch with fork_epoch() and need no
// hook.
//
// This layer depends on the OS layer only: the arena, memfd and heap layers register into it, it
// never calls them by name (scripts/check-layers enforces the direction). A program that links
// only permafrost::arena runs the same lifecycle without the heap's stage.
//
// Thread safety: every function may be called from any thread, also while another thread forks:
// a fork runs either none or all three of a stage's hooks.
#pragma once

#include <cstdint>

namespace permafrost::detail {

using fork_hook = void (*)() noexcept;

// The stages, in lock order; the one place that order is declared.
enum class fork_stage : unsigned {
  registry,  // the arena registry's lock and fork gate (src/arena/arena_registry.cpp)
  memfd,     // unfrozen memfd arenas' writable mappings (src/arena/arena_memfd.cpp)
  heap,      // the process heap's lock, spare arena and generations (src/heap/process_heap.cpp)
};
inline constexpr unsigned fork_stage_count = 3;

// A stage's hooks; any may be null. They run inside fork's atfork handlers: they must not
// allocate with a malloc that is not fork-safe, nor throw.
struct fork_hooks {
  fork_hook prepare = nullptr;
  fork_hook parent = nullptr;
  fork_hook child = nullptr;
};

// Effects: registers the handlers with pthread_atfork once per process (idempotent, thread-safe,
// allocates nothing). A failure (ENOMEM) leaves forks unobserved. Safe to call with any
// permafrost lock held: pthread_atfork is called at most once, before any permafrost hook exists.
void register_fork_lifecycle() noexcept;

// Effects: installs `hooks` as `stage`'s and registers the handlers. Idempotent for the same
// hooks. Each subsystem installs one set, once: changing a stage's hooks while another thread
// forks may run a mix of the old and the new (tests replace them single-threaded).
void add_fork_hooks(fork_stage stage, const fork_hooks& hooks) noexcept;

// Forks this process has gone through since the handlers were registered (0 in the first
// process): a value remembered before a fork differs from the child's.
std::uint64_t fork_epoch() noexcept;

}  // namespace permafrost::detail
