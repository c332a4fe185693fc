// permafrost — the OS contract.
//
// Every system call the library makes (mmap, mprotect, madvise, prctl, reads of /proc and /sys)
// goes through this header; src/os_linux.cpp is its only implementation. In the style of
// mimalloc's prim.h, each function returns 0 on success or an errno value, never throws, never
// allocates unless it says so, and states its preconditions. Callers turn errors into exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace permafrost::os {

// ---------------------------------------------------------------------------------------------
// Pages and address space
// ---------------------------------------------------------------------------------------------

// The base page size (sysconf(_SC_PAGESIZE)). Never fails.
std::size_t page_size() noexcept;

// Reserves `bytes` of address space, inaccessible (PROT_NONE) and uncharged (MAP_NORESERVE).
// Pre: bytes > 0. On success *out is the start of the range, aligned to `align` (a power of two
// multiple of the page size); the over-reserved head and tail are returned to the kernel.
int reserve(std::size_t bytes, std::size_t align, void** out) noexcept;

// Returns a reserved range to the kernel. Pre: [p, p+bytes) came from reserve().
int release(void* p, std::size_t bytes) noexcept;

// Makes [p, p+bytes) readable and writable. Pages are still only backed on first touch.
// Pre: p and bytes page-aligned; the range lies in a reservation.
int commit(void* p, std::size_t bytes) noexcept;

// Drops the pages of [p, p+bytes) and makes the range inaccessible again, keeping it reserved
// (an atomic MAP_FIXED replacement, so no other mapping can slip into the hole).
// Pre: p and bytes page-aligned; the range lies in a reservation.
int decommit(void* p, std::size_t bytes) noexcept;

// Makes [p, p+bytes) read-only. Pre: p and bytes page-aligned; range committed.
int protect_read_only(void* p, std::size_t bytes) noexcept;

// Asks for transparent huge pages on [p, p+bytes) (MADV_HUGEPAGE).
// Pre: p and bytes page-aligned. Returns EINVAL where the kernel has no THP.
int advise_huge_pages(void* p, std::size_t bytes) noexcept;

// Names an anonymous range in /proc/PID/maps (PR_SET_VMA_ANON_NAME). Best effort: kernels
// without CONFIG_ANON_VMA_NAME return EINVAL, which callers ignore.
int name_range(void* p, std::size_t bytes, const char* name) noexcept;

// ---------------------------------------------------------------------------------------------
// Transparent huge pages
// ---------------------------------------------------------------------------------------------

enum class thp_mode { always, madvise, never, unavailable };

// The system's THP mode, from /sys/kernel/mm/transparent_hugepage/enabled. Never fails:
// a missing file reads as `unavailable`.
thp_mode transparent_huge_pages() noexcept;

// ---------------------------------------------------------------------------------------------
// /proc readers
// ---------------------------------------------------------------------------------------------

// Sums the named smaps field (e.g. "AnonHugePages", "Rss", "Private_Dirty") in bytes over the
// mappings of `pid` (0 = self) that overlap [begin, end), counting each mapping wholly.
// Allocates (reads a file). Returns the errno of the failed open or read.
int smaps_field_in_range(pid_t pid, std::uintptr_t begin, std::uintptr_t end, const char* field,
                         std::uint64_t* bytes) noexcept;

// Reads `count` raw 64-bit pagemap entries of `pid` (0 = self) for the pages starting at the
// page-aligned address `begin` (bit 63 present, bit 56 exclusively mapped, bits 0-54 the frame
// number, zero unless the caller has CAP_SYS_ADMIN). Returns the errno of the failed open/pread.
int read_pagemap(pid_t pid, std::uintptr_t begin, std::size_t count, std::uint64_t* out) noexcept;

// Reads the whole of /proc/<pid>/<what> (pid 0 = self; `what` may name a nested file such as
// "task/12/children") into *out. Allocates. Returns the errno of the failed open or read: ENOENT
// or ESRCH for a vanished process, EACCES/EPERM without permission, ENOENT for a file this kernel
// lacks (smaps_rollup before 4.14). An empty file reads as an empty string.
int read_proc_file(pid_t pid, const char* what, std::string* out) noexcept;

// Appends the id of every process visible in /proc to *out. Allocates. Returns the errno of the
// failed opendir/readdir.
int list_processes(std::vector<pid_t>* out) noexcept;

}  // namespace permafrost::os
