/* permafrost — the C API of the frozen arena.
 *
 * The same contract as include/permafrost/arena.hpp: an arena is a bump allocator over its own
 * mapping; nothing in it is freed one by one; permafrost_arena_freeze() makes every used byte
 * read-only, so forked workers share its pages forever.
 *
 * Functions that can fail return 0 or an errno value and never abort on bad input (a handle
 * that permafrost_arena_destroy freed is not input but a dangling pointer: see there):
 *   EINVAL  a null argument, capacity 0, or an alignment that is not a power of two (or > 256 MiB)
 *   ENOMEM  capacity exhausted, size + alignment overflows, or no address space for the arena
 *           (also when an address-space limit, RLIMIT_AS, leaves too little for any)
 *   EROFS   allocation from a frozen arena
 *   EPERM   allocation from or freeze of an unfrozen memfd arena in a child forked from the
 *           process that made it (only that process may write or freeze it)
 *   other   the errno of a failed mprotect in permafrost_arena_freeze (the arena stays unfrozen)
 * permafrost_arena_attach has its own codes, listed at the function.
 * Predicates return 1 or 0. Thread safety is that of the C++ class.
 */
#ifndef PERMAFROST_PERMAFROST_H
#define PERMAFROST_PERMAFROST_H

#include <stddef.h>
#include <stdint.h>

#include "permafrost/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct permafrost_arena permafrost_arena;

typedef struct permafrost_arena_options {
  size_t capacity;    /* virtual bytes reserved; default 64 GiB */
  const char* name;   /* default "permafrost"; copied */
  int huge_pages;     /* 1 on, 0 off; default on where THP is `madvise` or `always` */
  int allocation_log; /* 1 keeps an allocation log; default 0 */
  int memfd;          /* 1 backs the arena with a sealed memfd (fork cost independent of size,
                         shareable with attach); default 0: private anonymous memory */
  int populate;       /* 1 pre-faults the frozen range at freeze; default 0 */
} permafrost_arena_options;

typedef struct permafrost_arena_stats {
  size_t reserved;
  size_t committed;
  size_t used;
  size_t lost_to_alignment;
  uint64_t allocations;
  size_t huge_page_bytes; /* read from /proc/self/smaps by permafrost_arena_stats_get; 0 when
                             smaps cannot be read */
  int frozen;
} permafrost_arena_stats;

/* Fills *options with the defaults. */
PERMAFROST_API void permafrost_arena_options_init(permafrost_arena_options* options);

/* Creates an arena. options may be NULL for the defaults. Errors: EINVAL, ENOMEM. */
PERMAFROST_API int permafrost_arena_create(const permafrost_arena_options* options,
                                           permafrost_arena** out);

/* Allocates size bytes aligned to align into *out. Errors: EINVAL, ENOMEM, EROFS, EPERM; *out is
 * then set to NULL. */
PERMAFROST_API int permafrost_arena_allocate(permafrost_arena* arena, size_t size, size_t align,
                                             void** out);

/* Makes the used bytes read-only; idempotent. Errors: EINVAL, EPERM, or the errno of mprotect. */
PERMAFROST_API int permafrost_arena_freeze(permafrost_arena* arena);

/* 1 when p lies in the bytes the arena has handed out. */
PERMAFROST_API int permafrost_arena_contains(const permafrost_arena* arena, const void* p);

/* 1 when the arena is frozen. */
PERMAFROST_API int permafrost_arena_frozen(const permafrost_arena* arena);

/* Errors: EINVAL (a null argument). An unreadable /proc/self/smaps is no error: huge_page_bytes
 * is then 0 and the other counters stand. */
PERMAFROST_API int permafrost_arena_stats_get(const permafrost_arena* arena,
                                              permafrost_arena_stats* out);

/* Unmaps the arena and frees the handle; every reader must be done with it. NULL is ignored.
 * The handle is then a dangling pointer, as after free(): destroying it again or passing it to
 * any function is undefined (a crash, not an error code). */
PERMAFROST_API void permafrost_arena_destroy(permafrost_arena* arena);

/* The memfd behind a memfd-backed arena (owned by the arena), or -1 (also when the program closed
 * it behind the arena's back: the number may name another file by now). After freeze it can be
 * sent to another process (SCM_RIGHTS) for permafrost_arena_attach. */
PERMAFROST_API int permafrost_arena_fd(const permafrost_arena* arena);

/* Maps the frozen memfd arena `fd` read-only at its creator's address (the fd is duplicated).
 * Errors: EINVAL (null out), EBADF (not a memfd), EPERM (not sealed: not frozen yet),
 * EPROTO (sealed but not a permafrost arena), EIO (truncated), EEXIST (the address range is in
 * use in this process), or the errno the kernel gave. */
PERMAFROST_API int permafrost_arena_attach(int fd, int populate, permafrost_arena** out);

/* 1 when p lies in the used range of a frozen arena of this process. Lock-free, writes nothing. */
PERMAFROST_API int permafrost_is_frozen(const void* p);

/* The write trap (include/permafrost/write_trap.hpp): a one-line report naming the arena, offset
 * and logged allocation when code writes to a frozen arena, then death by SIGSEGV.
 * Installs it once per process; returns 0 or the errno of sigaction. */
PERMAFROST_API int permafrost_install_write_trap(void);

/* Installs the trap when the environment variable PERMAFROST_TRAP is "1". Returns 1 when the trap
 * is installed after the call, 0 otherwise. */
PERMAFROST_API int permafrost_install_write_trap_from_env(void);

#ifdef __cplusplus
}
#endif

#endif /* PERMAFROST_PERMAFROST_H */
