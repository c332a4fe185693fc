// permafrost — the arena directory (contract and file format in arena_directory.hpp).
#include "arena/arena_directory.hpp"

#include <cstring>

#include "arena/arena_slot.hpp"
#include "os/os.hpp"

namespace permafrost::detail::directory {
namespace {

// The whole file as written: built in place, so neither update() nor the fork hook allocates.
struct image {
  header head;
  entry entries[max_arenas];
};
constinit image g_image{};
constinit int g_fd = -1;  // the directory's memfd, or -1 before the first arena (or without one)

std::size_t fill_entries() noexcept {
  std::size_t n = 0;
  arena_slot* slots = slots_begin();
  for (std::size_t i = 0; i < max_arenas; ++i) {
    const arena_slot& s = slots[i];
    if (!s.in_use) continue;
    entry& e = g_image.entries[n++];
    e.begin = s.base;
    e.end = s.outside_space ? s.committed_end : s.base + s.reserved;
    std::memset(e.name, 0, sizeof e.name);
    std::memcpy(e.name, s.name, sizeof s.name);
    e.name[sizeof e.name - 1] = '\0';
  }
  return n;
}

// Writes the header with `sequence`, and when `entries` the entries and the file's final size.
int write_out(std::uint64_t sequence, std::size_t count, bool entries) noexcept {
  std::memcpy(g_image.head.magic, magic, sizeof magic);
  g_image.head.version = format_version;
  g_image.head.entry_size = sizeof(entry);
  g_image.head.pid = static_cast<std::uint64_t>(os::process_id());
  g_image.head.sequence = sequence;
  g_image.head.count = count;
  const std::size_t bytes = sizeof(header) + (entries ? count * sizeof(entry) : 0);
  if (const int err = os::file_write(g_fd, &g_image, bytes, 0); err != 0) return err;
  return entries ? os::file_resize(g_fd, sizeof(header) + count * sizeof(entry)) : 0;
}

// The whole directory: odd sequence (a reader retries), entries, even sequence.
void rewrite() noexcept {
  const std::uint64_t next = (g_image.head.sequence | 1) + 1;  // the next even number
  const std::size_t count = fill_entries();
  if (write_out(next - 1, g_image.head.count, false) != 0) return;
  if (write_out(next - 1, count, true) != 0) return;
  (void)write_out(next, count, false);
}

}  // namespace

void update() noexcept {
  if (g_fd < 0 && os::memfd_open(file_name, &g_fd) != 0) {
    g_fd = -1;  // best effort: permafrost-stat falls back to names
    return;
  }
  rewrite();
}

void renew_in_child() noexcept {
  if (g_fd < 0) return;
  const int inherited = g_fd;
  if (os::memfd_open(file_name, &g_fd) != 0) g_fd = -1;
  (void)os::close_fd(inherited);  // shared with the parent: never written from here again
  g_image.head.sequence = 0;
  if (g_fd >= 0) rewrite();
}

}  // namespace permafrost::detail::directory
