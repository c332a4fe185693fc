// permafrost — fork with heap renewal.
//
// Contract: the library registers pthread_atfork handlers the first time it runs (at program
// start when linked), so a plain fork() renews the child's heap (heap.hpp). permafrost::fork()
// does the same with errors reported: it prepares the child's arena and this thread's heap in it
// before forking, so the renewal in the child cannot fail.
//
// Handler order (one pthread_atfork registration), for libraries that register their own:
// prepare takes the arena registry lock, then waits until no thread holds an arena's or image's
// lock and keeps them out (keeping the writable mappings of unfrozen memfd arenas out of the
// child), then the heap lock, and makes sure
// a spare arena and this thread's heap in it exist; the parent handler releases them in reverse;
// the child handler switches to the spare arena (a new generation), makes its heap the thread's
// default mimalloc heap, maps unfrozen memfd arenas private and read-only, and releases the locks.
// So no child inherits a permafrost lock held by a thread that does not exist in it.
//
// Thread safety: as fork(2). Other threads may allocate while one forks.
#pragma once

#include <sys/types.h>

#include "permafrost/api.h"

namespace permafrost {

// Effects: as fork(2): returns the child's pid in the parent, 0 in the child. The child runs on
// a fresh heap generation.
// Throws: std::system_error when the child's arena cannot be reserved (nothing was forked) or
// when fork(2) fails (EAGAIN, ENOMEM).
PERMAFROST_API pid_t fork();

}  // namespace permafrost
