// Test support: how many pages a forked child copied out of everything it inherited writable -
// every private writable mapping of the parent (heap, arenas, .data/.bss of every library, TLS,
// stack) - by comparing the child's page frames with the parent's through /proc/PID/pagemap.
// Needs frame numbers (root). Depends on src/os/os_linux.cpp only, so programs that must not link
// permafrost (a glibc-malloc helper, the heap_churn peers) can use it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "os/os.hpp"
#include "proc.hpp"

namespace permafrost::test {

// Pages copied in one mapping.
struct dirtied_mapping {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::string path;        // as in /proc/PID/maps; empty for anonymous memory
  std::size_t copied = 0;  // pages present in both, on different frames
};

struct inherited_dirtied {
  std::size_t pages = 0;                  // copied pages outside the stack
  std::size_t stack_pages = 0;            // copied pages of [stack] (the program's own call frames)
  std::size_t inherited = 0;              // pages the parent had present in those mappings
  std::vector<dirtied_mapping> mappings;  // the mappings with copies, most first
  std::size_t bytes() const;              // pages * page size
  std::string summary() const;            // one line per mapping, for failure messages
};

// The writable private mappings of pid (0 = self): what a child inherits copy-on-write.
std::vector<os::mapping> writable_private_mappings(pid_t pid = 0);

// The frames of every present page of this process's writable private mappings, taken just
// before a fork. Comparing a child against this snapshot (rather than against the parent's
// pages after the fork) counts only the child's copies: a page the parent writes after the fork
// is copied into the parent, and the child keeps the snapshot's frame.
struct inherited_snapshot {
  std::vector<os::mapping> maps;
  std::vector<std::uintptr_t> pages;      // present pages, ascending
  std::vector<std::uint64_t> frames;      // their frame numbers
  std::vector<std::uint32_t> mapping_of;  // index into maps
};
inherited_snapshot snapshot_inherited();

// Counts the snapshot's pages that `child` has on a different frame (its copy-on-write copies).
inherited_dirtied compare_inherited(pid_t child, const inherited_snapshot& before);

struct measured_child {
  inherited_dirtied dirtied;         // the child's copies
  inherited_dirtied parent_dirtied;  // the parent's own copies, when parent_work was given
  int exit_status = 0;               // the child's wait status
};

// Forks with plain fork(); the child runs `work` (non-zero or an exception fails it) and waits;
// the parent compares all it inherited, then lets the child exit and reaps it. With parent_work,
// the parent runs it once the child is done and also counts the pages it copied itself (pages it
// wrote that the child still shared).
measured_child fork_and_measure(const std::function<int()>& work,
                                const std::function<void()>& parent_work = {});

// This process's resident set in bytes (VmRSS of /proc/self/status), or 0 when unreadable.
inline std::size_t resident_bytes() {
  const long kib = status_kib("VmRSS");
  return kib < 0 ? 0 : static_cast<std::size_t>(kib) << 10;
}

// The value of "--name N" in argv, or `fallback` (the probe programs' and heap_churn's options).
inline std::size_t numeric_option(int argc, char** argv, const char* name, std::size_t fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtoull(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

}  // namespace permafrost::test
