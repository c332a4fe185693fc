#include "heap_probe.hpp"

#include "child_process.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace permafrost::test {
namespace {

constexpr std::uint64_t present_bit = std::uint64_t{1} << 63;
constexpr std::uint64_t exclusive_bit = std::uint64_t{1} << 56;
constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;

// Reads pagemap in bounded chunks (mappings may be gigabytes of mostly absent pages).
void read_entries(pid_t pid, std::uintptr_t begin, std::size_t pages,
                  std::vector<std::uint64_t>& out) {
  out.assign(pages, 0);
  const int err = os::read_pagemap(pid, begin, pages, out.data());
  if (err != 0) out.assign(pages, 0);  // the mapping vanished in the child: nothing shared
}

}  // namespace

std::size_t inherited_dirtied::bytes() const { return pages * os::page_size(); }

std::string inherited_dirtied::summary() const {
  std::string s = std::to_string(pages) + " pages copied (+" + std::to_string(stack_pages) +
                  " stack) of " + std::to_string(inherited) + " inherited\n";
  for (const auto& m : mappings) {
    char range[64];
    std::snprintf(range, sizeof range, "%lx-%lx", static_cast<unsigned long>(m.begin),
                  static_cast<unsigned long>(m.end));
    s += "  " + std::string(range) + " " + std::to_string(m.copied) + " " + m.path + "\n";
  }
  return s;
}

std::vector<os::mapping> writable_private_mappings(pid_t pid) {
  std::vector<os::mapping> all;
  const int err = os::read_mappings(pid, &all);
  if (err != 0)
    throw std::runtime_error("maps of pid " + std::to_string(pid) + ": errno " +
                             std::to_string(err));
  std::vector<os::mapping> out;
  for (auto& m : all) {
    // [vvar]/[vsyscall] are not ordinary memory; pagemap has nothing useful there.
    if (m.writable && m.is_private && m.path != "[vvar]" && m.path != "[vsyscall]")
      out.push_back(m);
  }
  return out;
}

inherited_snapshot snapshot_inherited() {
  const std::size_t page = os::page_size();
  constexpr std::size_t chunk = 1 << 16;  // pages per pagemap read
  inherited_snapshot snap;
  snap.maps = writable_private_mappings();
  std::vector<std::uint64_t> entries;
  for (std::uint32_t m = 0; m < snap.maps.size(); ++m) {
    for (std::uintptr_t at = snap.maps[m].begin; at < snap.maps[m].end; at += chunk * page) {
      const std::size_t n = std::min<std::size_t>(chunk, (snap.maps[m].end - at) / page);
      read_entries(0, at, n, entries);
      for (std::size_t i = 0; i < n; ++i) {
        if ((entries[i] & present_bit) == 0) continue;
        snap.pages.push_back(at + i * page);
        snap.frames.push_back(entries[i] & frame_mask);
        snap.mapping_of.push_back(m);
      }
    }
  }
  return snap;
}

inherited_dirtied compare_inherited(pid_t child, const inherited_snapshot& before) {
  const std::size_t page = os::page_size();
  inherited_dirtied result;
  result.inherited = before.pages.size();
  std::vector<std::size_t> copied(before.maps.size(), 0);
  std::vector<std::uint64_t> theirs;
  // PERMAFROST_PROBE_PAGES=1 lists every copied page on stderr, for finding who wrote it.
  const bool list_pages = std::getenv("PERMAFROST_PROBE_PAGES") != nullptr;
  // Read the child's entries in runs of contiguous snapshot pages.
  for (std::size_t i = 0; i < before.pages.size();) {
    std::size_t j = i + 1;
    while (j < before.pages.size() && before.pages[j] == before.pages[j - 1] + page && j - i < 4096)
      ++j;
    read_entries(child, before.pages[i], j - i, theirs);
    for (std::size_t k = i; k < j; ++k) {
      const std::uint64_t e = theirs[k - i];
      // A copy is a new frame that only the child maps. A frame that changed but is still mapped
      // by another process is not the child's copy: the page got its frame in the parent between
      // the snapshot and the fork (a zero-page or reclaimed page written by the snapshot's own
      // allocations), or the kernel migrated it. Counting those failed CI under load (202 pages
      // of one 96 MiB anonymous mapping, all still shared with the parent).
      if ((e & present_bit) != 0 && (e & frame_mask) != before.frames[k] &&
          (e & exclusive_bit) != 0) {
        ++copied[before.mapping_of[k]];
        if (list_pages) {
          std::fprintf(stderr, "copied page %lx %s\n", static_cast<unsigned long>(before.pages[k]),
                       before.maps[before.mapping_of[k]].path.c_str());
        }
      }
    }
    i = j;
  }
  for (std::size_t m = 0; m < before.maps.size(); ++m) {
    if (copied[m] == 0) continue;
    const auto& map = before.maps[m];
    if (map.path == "[stack]") {
      result.stack_pages += copied[m];
    } else {
      result.pages += copied[m];
    }
    result.mappings.push_back({map.begin, map.end, map.path, copied[m]});
  }
  std::sort(result.mappings.begin(), result.mappings.end(),
            [](const dirtied_mapping& a, const dirtied_mapping& b) { return a.copied > b.copied; });
  return result;
}

measured_child fork_and_measure(const std::function<int()>& work,
                                const std::function<void()>& parent_work) {
  int ready[2];
  int go[2];
  if (::pipe(ready) != 0) throw std::runtime_error("pipe failed");
  if (::pipe(go) != 0) throw std::runtime_error("pipe failed");
  const inherited_snapshot before = snapshot_inherited();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) report_and_hold(work, ready[1], go[0]);
  ::close(ready[1]);  // so a child that dies early reads as EOF, not a hang
  ::close(go[0]);
  (void)read_byte(ready[0]);
  measured_child result;
  if (parent_work) {
    parent_work();
    result.parent_dirtied = compare_inherited(0, before);
  }
  result.dirtied = compare_inherited(pid, before);
  write_byte(go[1], 'x');
  result.exit_status = wait_for(pid);
  ::close(ready[0]);
  ::close(go[1]);
  return result;
}

}  // namespace permafrost::test
