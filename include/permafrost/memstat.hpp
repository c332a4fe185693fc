// permafrost — measuring what processes share.
//
// Contract: every function reads the kernel's own accounting (/proc/PID/smaps_rollup, smaps,
// maps, pagemap) at the moment of the call; nothing is estimated or cached. Sizes are bytes.
//
// Vocabulary (docs/design.md section 4):
// - RSS counts every resident page mapped by a process, shared or not; summing it over workers
//   counts each shared page once per worker.
// - PSS divides each page by the number of processes mapping it; summing it over a process tree
//   gives the tree's real footprint.
// - USS ("unique set size") = Private_Clean + Private_Dirty: pages only this process maps, the
//   memory that would come back if it exited.
//
// Errors: a vanished pid, missing permission or a kernel without smaps_rollup raise proc_error,
// which names the file and carries its errno. Nothing here aborts.
//
// Thread safety: every function is safe to call from any thread; results are plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <sys/types.h>
#include <system_error>
#include <vector>

#include "permafrost/api.h"
#include "permafrost/arena.hpp"
#include "permafrost/error.hpp"

namespace permafrost {

// =============================================================================================
// Errors
// =============================================================================================

// A /proc file could not be read. code() holds the errno (ENOENT/ESRCH: the process is gone or
// the kernel lacks the file; EACCES/EPERM: no permission); what() names the file and the errno.
class PERMAFROST_API proc_error : public std::system_error, public error {
 public:
  proc_error(std::string file, int err);
  const char* what() const noexcept override { return std::system_error::what(); }
  // The file that could not be read, e.g. "/proc/1234/smaps_rollup".
  const std::string& file() const noexcept { return file_; }

 private:
  std::string file_;
};

// =============================================================================================
// Memory of a process or of a range
// =============================================================================================

// Fields of smaps / smaps_rollup, in bytes.
struct PERMAFROST_API memory_usage {
  std::uint64_t rss = 0;            // resident pages, shared ones counted wholly
  std::uint64_t pss = 0;            // resident pages, each divided by the processes mapping it
  std::uint64_t pss_anon = 0;       // the part of pss in anonymous pages  } smaps_rollup only
  std::uint64_t pss_file = 0;       // ... in file pages                   } (Linux 5.13+);
  std::uint64_t pss_shmem = 0;      // ... in shared memory (tmpfs, memfd) } 0 per mapping
  std::uint64_t uss = 0;            // private_clean + private_dirty: only this process maps them
  std::uint64_t shared_clean = 0;   // mapped by others too, unmodified since read or fork
  std::uint64_t shared_dirty = 0;   // mapped by others too, modified (e.g. shared memory)
  std::uint64_t private_clean = 0;  // only this process, unmodified
  std::uint64_t private_dirty = 0;  // only this process, modified (includes copy-on-write copies)
  std::uint64_t anonymous = 0;      // not backed by a file
  std::uint64_t anon_huge = 0;      // in transparent huge pages
  std::uint64_t swap = 0;           // swapped out (not part of rss)

  // Bytes counted in rss that other processes also map.
  std::uint64_t shared() const noexcept { return shared_clean + shared_dirty; }
  memory_usage& operator+=(const memory_usage& o) noexcept;
};

// Effects: reads /proc/PID/smaps_rollup (pid 0 = the calling process).
// Throws: proc_error (the process vanished, no permission, kernel older than 4.14).
PERMAFROST_API memory_usage process_memory(pid_t pid = 0);

// One mapping of a process with its memory usage (a block of /proc/PID/smaps). (Named apart from
// the OS layer's internal os::mapping, a line of /proc/PID/maps without the memory.)
struct mapping_usage {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::string perms;  // "rw-p", "r--s", ...
  std::string name;   // path, "[heap]", "[anon:NAME]", "/memfd:NAME (deleted)", or empty
  memory_usage usage;
};

// The former name of mapping_usage, kept for one release.
using mapping [[deprecated("use permafrost::mapping_usage")]] = mapping_usage;

// Effects: reads /proc/PID/smaps. Throws: proc_error.
PERMAFROST_API std::vector<mapping_usage> mappings(pid_t pid = 0);

// Effects: the memory of the mappings of `pid` that overlap [begin, end), each counted wholly
// (smaps accounts per mapping; an arena's committed range is its own mapping).
// Throws: proc_error.
PERMAFROST_API memory_usage range_memory(pid_t pid, const void* begin, const void* end);

// An arena (or attached arena, or open image) a process lists in its arena directory: a memfd
// named "permafrost-arenas" that every process keeps open from its first arena on, so its arenas
// are found on every kernel (naming anonymous memory in /proc/PID/maps needs
// CONFIG_ANON_VMA_NAME). [begin, end) is the address range the arena reserves; the mappings of
// smaps that overlap it and are accessible hold its memory.
struct listed_arena {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::string name;  // the arena's name (arena_options::name), possibly empty
};

// Effects: reads the arena directory of `pid` (0 = the calling process) through /proc/PID/fd.
// Empty when the process has none (no arena ever made, or a permafrost older than the directory).
// Throws: proc_error (the process vanished; no permission: the same right as reading its smaps).
std::vector<listed_arena> listed_arenas(pid_t pid = 0);

// The command name of a process (/proc/PID/comm, without the newline). Throws: proc_error.
PERMAFROST_API std::string process_name(pid_t pid = 0);

// The state letter of a process from /proc/PID/stat ('R', 'S', 'D', 'Z' for a zombie, ...), or
// '\0' when the process does not exist (or its stat cannot be read). Never throws.
PERMAFROST_API char process_state(pid_t pid) noexcept;

// The process and all its descendants (children, grandchildren, ...), the root first. Processes
// that exit during the scan are left out. Throws: proc_error if `root` itself is gone.
PERMAFROST_API std::vector<pid_t> process_tree(pid_t root);

// Bytes of the calling thread's stack still free below the caller's frame (stacks grow down),
// or SIZE_MAX when the thread's bounds cannot be read. The bounds are read once per thread
// (they never change), unlike everything else here. For code whose recursion follows its input
// (the Python freezer), to refuse an input that would overflow a small thread stack instead of
// crashing. Effects: none. Throws: nothing.
PERMAFROST_API std::size_t stack_bytes_left() noexcept;

// =============================================================================================
// Sharing audit: which pages of a range has a forked child copied?
// =============================================================================================

// A page the child no longer shares with the parent, and what lives on it.
struct copied_page {
  const void* address = nullptr;               // page-aligned, in the audited range
  std::vector<allocation_record> allocations;  // log entries overlapping the page (if a log
                                               // was given); offsets as in the arena's log
};

struct PERMAFROST_API sharing_report {
  std::size_t pages = 0;           // pages in the range (rounded out to whole pages)
  std::size_t parent_present = 0;  // resident in the parent
  std::size_t child_present = 0;   // resident (mapped) in the child
  std::size_t shared = 0;          // present in the child on the parent's frame
  std::size_t copied = 0;          // present in both, no longer shared: copy-on-write copies
  // true: frames compared (CAP_SYS_ADMIN shows frame numbers). false: the fallback — a page
  // counts as copied when the parent has it and the child maps it exclusively (pagemap bit 56);
  // a page shared with a third process but not with the parent is then still "shared".
  bool frames_compared = false;
  std::string method;               // one line saying which of the two was used and why
  std::vector<copied_page> copies;  // one entry per copied page, in address order

  // Pages of the parent's resident set the child has not copied, as a fraction (1 when empty).
  double shared_fraction() const noexcept;
};

// True when this process can see page frame numbers in pagemap (CAP_SYS_ADMIN).
PERMAFROST_API bool pagemap_frames_visible();

// Effects: compares the pages of `range` in `child` with the same addresses in `parent` through
// /proc/PID/pagemap. When `log_source` is given (an arena with arena_options::allocation_log on,
// whose used bytes the range lies in), each copied page lists the allocations that overlap it.
// Both processes must be alive. pid 0 = the calling process.
// Throws: proc_error (a process vanished, or no permission to read its pagemap).
PERMAFROST_API sharing_report sharing_audit(pid_t child, pid_t parent,
                                            std::span<const std::byte> range,
                                            const arena* log_source = nullptr);

// As above for the arena's used bytes, naming allocations from its log when it keeps one.
PERMAFROST_API sharing_report sharing_audit(pid_t child, pid_t parent, const arena& a);

}  // namespace permafrost
