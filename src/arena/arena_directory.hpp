// permafrost — the arena directory (internal): a small memfd that lists a process's arenas, so
// permafrost-stat finds them on every kernel.
//
// Why: an anonymous arena is named in /proc/PID/maps only where the kernel was built with
// CONFIG_ANON_VMA_NAME (prctl PR_SET_VMA_ANON_NAME fails with EINVAL elsewhere, and the arena then
// shows as an unnamed mapping). So from its first arena on, a process keeps a close-on-exec memfd
// named "permafrost-arenas" open (never mapped) holding the range and name of every live slot
// (arena, attached arena, open image). Another process with the right to read its smaps (ptrace
// read access) finds the descriptor by its link in /proc/PID/fd ("/memfd:permafrost-arenas
// (deleted)") and reads it (memstat's listed_arenas()).
//
// File format (host byte order; version 1): a header, then `count` entries.
//   header: magic "PFARENAS" (8 bytes), version (u32), entry size (u32), writer pid (u64),
//           sequence (u64: odd while a rewrite is in progress), count (u64)        = 40 bytes
//   entry:  begin (u64), end (u64: the slot's reserved range), name (48 bytes, NUL-padded)
// A reader takes the entries when the sequence is even and the same before and after it read
// them.
//
// A forked child gets a directory of its own (the child hook of the registry's fork stage copies
// the slot table into a new memfd and closes the inherited one), so a parent's later arenas never
// show in its children's listing nor the other way round. Everything is best effort: without a
// memfd (EMFILE, seccomp) the process simply has no directory and permafrost-stat falls back to
// names in /proc/PID/maps.
//
// Thread safety: every function requires the registry lock.
#pragma once

#include <cstddef>
#include <cstdint>

namespace permafrost::detail::directory {

inline constexpr char file_name[] = "permafrost-arenas";
inline constexpr char magic[8] = {'P', 'F', 'A', 'R', 'E', 'N', 'A', 'S'};
inline constexpr std::uint32_t format_version = 1;

struct header {
  char magic[8];
  std::uint32_t version;
  std::uint32_t entry_size;
  std::uint64_t pid;
  std::uint64_t sequence;
  std::uint64_t count;
};
static_assert(sizeof(header) == 40);

struct entry {
  std::uint64_t begin;
  std::uint64_t end;
  char name[48];
};
static_assert(sizeof(entry) == 64);

// Effects: rewrites the directory from the slot table, creating it on first use. Allocates
// nothing. Pre: the registry lock held.
void update() noexcept;

// Effects: in a forked child, replaces the inherited directory with a copy of its own (or drops
// it when no memfd can be made). Async-signal-safe apart from the registry lock the caller holds.
void renew_in_child() noexcept;

}  // namespace permafrost::detail::directory
