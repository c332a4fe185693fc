// permafrost — the fork lifecycle (internal): the library's one pthread_atfork registration.
//
// Around fork(2) the handlers run, in this order:
//   prepare: take the arena registry lock; memfd hooks (lock each memfd arena, keep writable
//            shared mappings out of the child); the heap's prepare hook (its lock, the spare).
//   parent:  the heap's parent hook; memfd hooks (undo, unlock); release the registry lock.
//   child:   bump the fork epoch; the heap's child hook (switch generation, unlock); memfd hooks
//            (map unfrozen memfd arenas private and read-only, unlock); release the registry
//            lock. Handles (share()) compare their epoch with fork_epoch() and need no hook.
// Locks are taken registry -> arena -> heap and released in reverse, so no child inherits a
// permafrost lock held by a thread that does not exist in it.
//
// The arena part never depends on the heap: the heap installs its hooks with set_heap_hooks()
// when it starts; a program without the heap runs the rest.
#pragma once

#include <cstdint>

namespace permafrost::detail {

using fork_hook = void (*)() noexcept;

// Effects: registers the handlers with pthread_atfork once per process (idempotent, thread-safe,
// allocates nothing). Every subsystem with fork state calls it before that state exists.
void register_fork_lifecycle() noexcept;

// Effects: installs the heap's hooks (called from the heap's start-up) and registers the
// handlers. Pre: called once, before the heap's state can need them.
void set_heap_fork_hooks(fork_hook prepare, fork_hook parent, fork_hook child) noexcept;

// Forks this process has gone through since the handlers were registered (0 in the first
// process): a value remembered before a fork differs from the child's.
std::uint64_t fork_epoch() noexcept;

}  // namespace permafrost::detail
