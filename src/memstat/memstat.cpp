// permafrost — memstat: parsing the kernel's accounting. All reads go through os.hpp.
#include "permafrost/memstat.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "arena/arena_directory.hpp"
#include "arena/arena_slot.hpp"
#include "os/os.hpp"

namespace permafrost {
namespace {

constexpr std::uint64_t present_bit = std::uint64_t{1} << 63;
constexpr std::uint64_t exclusive_bit = std::uint64_t{1} << 56;
constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;

std::string proc_path(pid_t pid, const char* what) {
  char path[96];
  if (os::proc_path(pid, what, path, sizeof path) != 0) return what;
  return path;
}

std::string read_or_throw(pid_t pid, const char* what) {
  std::string text;
  const int err = os::read_proc_file(pid, what, &text);
  if (err != 0) throw proc_error(proc_path(pid, what), err);
  // A process that exits between open and read leaves an empty file behind.
  if (text.empty()) throw proc_error(proc_path(pid, what), ESRCH);
  return text;
}

// Applies one "Name:   123 kB" line to u. Unknown names are ignored.
void apply_field(std::string_view line, memory_usage& u) {
  std::string_view name;
  std::uint64_t bytes = 0;
  if (!os::parse_smaps_field(line, &name, &bytes)) return;
  if (name == "Rss") u.rss = bytes;
  else if (name == "Pss") u.pss = bytes;
  else if (name == "Pss_Anon") u.pss_anon = bytes;
  else if (name == "Pss_File") u.pss_file = bytes;
  else if (name == "Pss_Shmem") u.pss_shmem = bytes;
  else if (name == "Shared_Clean") u.shared_clean = bytes;
  else if (name == "Shared_Dirty") u.shared_dirty = bytes;
  else if (name == "Private_Clean") u.private_clean = bytes;
  else if (name == "Private_Dirty") u.private_dirty = bytes;
  else if (name == "Anonymous") u.anonymous = bytes;
  else if (name == "AnonHugePages") u.anon_huge = bytes;
  else if (name == "Swap") u.swap = bytes;
  u.uss = u.private_clean + u.private_dirty;
}

// Parses a maps/smaps header; false for field lines.
bool parse_header(std::string_view line, mapping_usage& m) {
  os::maps_header h;
  if (!os::parse_maps_header(line, &h)) return false;
  m = mapping_usage{};
  m.begin = h.begin;
  m.end = h.end;
  m.perms = std::string(h.perms);
  m.name = std::string(h.path);
  return true;
}

}  // namespace

proc_error::proc_error(std::string file, int err)
    : std::system_error(err, std::generic_category(),
                        "cannot read " + file + " (errno " + std::to_string(err) + ")"),
      file_(std::move(file)) {}

memory_usage& memory_usage::operator+=(const memory_usage& o) noexcept {
  rss += o.rss;
  pss += o.pss;
  pss_anon += o.pss_anon;
  pss_file += o.pss_file;
  pss_shmem += o.pss_shmem;
  uss += o.uss;
  shared_clean += o.shared_clean;
  shared_dirty += o.shared_dirty;
  private_clean += o.private_clean;
  private_dirty += o.private_dirty;
  anonymous += o.anonymous;
  anon_huge += o.anon_huge;
  swap += o.swap;
  return *this;
}

memory_usage process_memory(pid_t pid) {
  const std::string text = read_or_throw(pid, "smaps_rollup");
  memory_usage u;
  bool header = true;
  os::for_each_line(text, [&](std::string_view line) {
    if (header) {  // "lo-hi ---p 00000000 00:00 0   [rollup]"
      header = false;
      return;
    }
    apply_field(line, u);
  });
  return u;
}

std::vector<mapping_usage> mappings(pid_t pid) {
  const std::string text = read_or_throw(pid, "smaps");
  std::vector<mapping_usage> out;
  os::for_each_line(text, [&](std::string_view line) {
    mapping_usage m;
    if (parse_header(line, m)) {
      out.push_back(std::move(m));
    } else if (!out.empty()) {
      apply_field(line, out.back().usage);
    }
  });
  return out;
}

memory_usage range_memory(pid_t pid, const void* begin, const void* end) {
  const auto lo = reinterpret_cast<std::uintptr_t>(begin);
  const auto hi = reinterpret_cast<std::uintptr_t>(end);
  memory_usage total;
  for (const mapping_usage& m : mappings(pid)) {
    if (m.begin < hi && m.end > lo) total += m.usage;
  }
  return total;
}

namespace {

// One consistent read of the directory (the writer's sequence even and unchanged around the
// entries), or false after a few tries while it keeps changing.
bool read_directory(int fd, std::vector<listed_arena>& out) {
  namespace dir = detail::directory;
  for (int attempt = 0; attempt < 100; ++attempt) {
    dir::header before{}, after{};
    if (os::file_read(fd, &before, sizeof before, 0) != 0) return false;
    if (std::memcmp(before.magic, dir::magic, sizeof dir::magic) != 0 ||
        before.version != dir::format_version || before.entry_size != sizeof(dir::entry) ||
        before.count > detail::max_arenas)
      return false;
    if ((before.sequence & 1) != 0) continue;
    std::vector<dir::entry> entries(before.count);
    if (before.count != 0 &&
        os::file_read(fd, entries.data(), entries.size() * sizeof(dir::entry), sizeof before) != 0)
      continue;  // shrunk meanwhile
    if (os::file_read(fd, &after, sizeof after, 0) != 0) return false;
    if (after.sequence != before.sequence) continue;
    out.clear();
    for (const dir::entry& e : entries)
      out.push_back(
          listed_arena{e.begin, e.end, std::string(e.name, ::strnlen(e.name, sizeof e.name))});
    return true;
  }
  return false;
}

}  // namespace

std::vector<listed_arena> listed_arenas(pid_t pid) {
  const std::string target = std::string("/memfd:") + detail::directory::file_name + " (deleted)";
  int fd = -1;
  const int err = os::open_process_fd(pid, target.c_str(), &fd);
  if (err == ENOENT) {
    // No directory, or no process: tell the two apart as every other reader does.
    (void)read_or_throw(pid, "comm");
    return {};
  }
  if (err != 0) throw proc_error(proc_path(pid, "fd"), err);
  std::vector<listed_arena> out;
  (void)read_directory(fd, out);
  (void)os::close_fd(fd);
  return out;
}

std::string process_name(pid_t pid) {
  std::string name = read_or_throw(pid, "comm");
  while (!name.empty() && name.back() == '\n') name.pop_back();
  return name;
}

namespace {

// The fields of /proc/PID/stat after the command name: "pid (comm) state ppid ..."; comm may
// hold spaces and parentheses, so they start after the last ')'. False when unreadable.
bool read_stat(pid_t pid, char* state, pid_t* ppid) noexcept {
  std::string stat;
  if (os::read_proc_file(pid, "stat", &stat) != 0) return false;
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 4 >= stat.size()) return false;
  *state = stat[close + 2];
  *ppid = static_cast<pid_t>(std::strtol(stat.c_str() + close + 4, nullptr, 10));
  return true;
}

}  // namespace

char process_state(pid_t pid) noexcept {
  char state = '\0';
  pid_t ppid = 0;
  return read_stat(pid, &state, &ppid) ? state : '\0';
}

std::size_t stack_bytes_left() noexcept {
  // 0: not read yet in this thread; UINTPTR_MAX: unreadable.
  thread_local std::uintptr_t stack_low = 0;
  if (stack_low == 0) {
    std::uintptr_t low = 0;
    std::size_t bytes = 0;
    stack_low = os::thread_stack(&low, &bytes) == 0 && low != 0 ? low : UINTPTR_MAX;
  }
  if (stack_low == UINTPTR_MAX) return SIZE_MAX;
  // The machine frame, not a local's address: ASan's fake stacks (detect_stack_use_after_return)
  // put locals on the heap.
  const auto frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  return frame > stack_low ? frame - stack_low : 0;
}

std::vector<pid_t> process_tree(pid_t root) {
  (void)read_or_throw(root, "stat");  // the root must exist
  std::vector<pid_t> all;
  if (const int err = os::list_processes(&all); err != 0) throw proc_error("/proc", err);
  std::vector<std::pair<pid_t, pid_t>> parent_of;  // (ppid, pid)
  for (pid_t pid : all) {
    char state = '\0';
    pid_t ppid = 0;
    if (!read_stat(pid, &state, &ppid)) continue;  // exited meanwhile
    parent_of.emplace_back(ppid, pid);
  }
  std::sort(parent_of.begin(), parent_of.end());
  std::vector<pid_t> tree{root};
  for (std::size_t i = 0; i < tree.size(); ++i) {  // breadth first
    auto it =
        std::lower_bound(parent_of.begin(), parent_of.end(), std::pair<pid_t, pid_t>{tree[i], 0});
    for (; it != parent_of.end() && it->first == tree[i]; ++it) tree.push_back(it->second);
  }
  return tree;
}

// ---------------------------------------------------------------------------------------------
// Sharing audit
// ---------------------------------------------------------------------------------------------

namespace {

std::vector<std::uint64_t> pagemap_or_throw(pid_t pid, std::uintptr_t first, std::size_t count) {
  std::vector<std::uint64_t> entries(count);
  if (count == 0) return entries;
  const int err = os::read_pagemap(pid, first, count, entries.data());
  if (err != 0) throw proc_error(proc_path(pid, "pagemap"), err);
  return entries;
}

}  // namespace

double sharing_report::shared_fraction() const noexcept {
  if (parent_present == 0) return 1.0;
  return 1.0 - static_cast<double>(copied) / static_cast<double>(parent_present);
}

bool pagemap_frames_visible() {
  // A written stack slot: its page is certainly present. (A `static const` sat in .rodata, whose
  // page may never have been faulted in, and then the probe saw no frame even as root.)
  volatile int probe = 1;
  probe = probe + 1;
  const auto page = os::page_size();
  const auto entry = pagemap_or_throw(
      0, reinterpret_cast<std::uintptr_t>(const_cast<int*>(&probe)) & ~(page - 1), 1);
  return (entry[0] & frame_mask) != 0;
}

sharing_report sharing_audit(pid_t child, pid_t parent, std::span<const std::byte> range,
                             const arena* log_source) {
  const std::size_t page = os::page_size();
  const auto begin = reinterpret_cast<std::uintptr_t>(range.data());
  const std::uintptr_t first = begin & ~(page - 1);
  const std::uintptr_t last = (begin + range.size() + page - 1) & ~(page - 1);
  const std::size_t count = range.empty() ? 0 : (last - first) / page;

  sharing_report r;
  r.pages = count;
  r.frames_compared = pagemap_frames_visible();
  r.method = r.frames_compared
                 ? "page frames compared (pagemap with CAP_SYS_ADMIN)"
                 : "fallback: no CAP_SYS_ADMIN, frame numbers hidden; a page counts as copied when "
                   "the parent has it and the child maps it exclusively (pagemap bit 56)";
  std::vector<allocation_record> log;
  std::uintptr_t log_base = 0;
  if (log_source != nullptr) {
    log = log_source->allocation_log();
    log_base = reinterpret_cast<std::uintptr_t>(log_source->used_bytes().data());
  }

  // Ranges can be gigabytes of mostly absent pages (allocator reservations): read in chunks.
  constexpr std::size_t chunk = 65536;  // pages: 512 KiB of entries per process
  std::vector<std::uint64_t> mine(std::min(count, chunk));
  std::vector<std::uint64_t> theirs(mine.size());
  for (std::size_t base = 0; base < count; base += chunk) {
    const std::size_t n = std::min(chunk, count - base);
    const std::uintptr_t at = first + base * page;
    if (const int err = os::read_pagemap(parent, at, n, mine.data()); err != 0)
      throw proc_error(proc_path(parent, "pagemap"), err);
    if (const int err = os::read_pagemap(child, at, n, theirs.data()); err != 0)
      throw proc_error(proc_path(child, "pagemap"), err);
    for (std::size_t i = 0; i < n; ++i) {
      const bool in_parent = (mine[i] & present_bit) != 0;
      const bool in_child = (theirs[i] & present_bit) != 0;
      r.parent_present += in_parent;
      r.child_present += in_child;
      if (!in_parent || !in_child) continue;
      const bool copied = r.frames_compared ? (mine[i] & frame_mask) != (theirs[i] & frame_mask)
                                            : (theirs[i] & exclusive_bit) != 0;
      if (!copied) {
        ++r.shared;
        continue;
      }
      ++r.copied;
      r.copies.push_back(copied_page{reinterpret_cast<const void*>(at + i * page), {}});
    }
  }
  // Name what lies on each copied page. The log is in address order without overlaps.
  for (copied_page& c : r.copies) {
    const auto lo = reinterpret_cast<std::uintptr_t>(c.address);
    if (log.empty() || lo + page <= log_base) continue;
    const std::size_t off_lo = lo > log_base ? lo - log_base : 0;
    const std::size_t off_hi = lo + page - log_base;
    auto it = std::partition_point(log.begin(), log.end(), [&](const allocation_record& a) {
      return a.offset + std::max<std::size_t>(a.size, 1) <= off_lo;
    });
    for (; it != log.end() && it->offset < off_hi; ++it) c.allocations.push_back(*it);
  }
  return r;
}

sharing_report sharing_audit(pid_t child, pid_t parent, const arena& a) {
  return sharing_audit(child, parent, a.used_bytes(), &a);
}

}  // namespace permafrost
