// permafrost — the memfd backing: a MAP_SHARED memory file mapped inside the arena's granules,
// sealed at freeze, attachable at the same address by any process that receives its descriptor.
//
// File layout: [data: the frozen range, page-rounded][trailer page]. The data sits at file
// offset (address - base), so the creator maps the file over its own reservation piece by piece
// as it commits. The trailer, written at freeze just before sealing, records where the data
// lives (base address), how much of it is used, and the name; an attacher reads it with pread,
// never maps it. The creator's mapping ends at the data, so the trailer is never in the arena.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <pthread.h>
#include <string>
#include <system_error>

#include "arena/arena_backing.hpp"
#include "arena/arena_registry.hpp"
#include "fork/fork_lifecycle.hpp"
#include "os/os.hpp"
#include "permafrost/detail/asan.hpp"

namespace permafrost {
namespace detail {
namespace {

constexpr char memfd_prefix[] = "permafrost:";
constexpr char path_prefix[] = "/memfd:permafrost:";
constexpr char trailer_magic[16] = {'p', 'e', 'r', 'm', 'a', 'f', 'r', 'o',
                                    's', 't', '-', 'a', 'r', 'e', 'n', 'a'};
constexpr std::uint32_t trailer_version = 1;

struct trailer {
  char magic[16];
  std::uint32_t version;
  std::uint32_t page_size;
  std::uint64_t base;        // the creator's address of file offset 0
  std::uint64_t used;        // bytes handed out: [base, base + used) is the frozen range
  std::uint64_t data_bytes;  // mapped bytes (used, page-rounded); the trailer sits at this offset
  char name[48];
};
static_assert(sizeof(trailer) <= 4096, "the trailer fits one page");

std::string hex(std::uintptr_t a) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%#lx", static_cast<unsigned long>(a));
  return buf;
}

[[noreturn]] void fail_system(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// The memfd stage of the fork lifecycle (fork_lifecycle.hpp), installed with the first memfd
// arena; around fork(2) it runs with the registry lock held and the fork gate closed, so no slot
// lock is held anywhere (the registry's stage is lower; arena_slot.hpp): prepare keeps the
// writable mappings of unfrozen memfd arenas out of the child; parent undoes that; child maps those
// ranges MAP_PRIVATE read-only and marks the arenas inherited.
//
// The arenas the fork hooks below act on: this process's own memfd arenas (stable while the
// registry lock is held: making and destroying take it, and `inherited` changes only in a
// child). Of those, the hooks act on the unfrozen ones, whose writable MAP_SHARED mapping a
// child must not inherit; `frozen` is stable while the gate is closed.
template <class F>
void for_each_own_memfd(F&& f) noexcept {
  arena_slot* slots = slots_begin();
  for (std::size_t i = 0; i < max_arenas; ++i) {
    arena_slot& s = slots[i];
    if (s.in_use && s.fd >= 0 && !s.inherited)
      f(s, !s.frozen.load(std::memory_order_relaxed) && s.committed_end > s.base);
  }
}

// Before fork, with every arena held still by the closed gate (no commit, no freeze): keep the
// writable mapping of the unfrozen memfd arenas out of the child (MADV_DONTFORK), so no child ever
// holds a writable mapping of such a file and freeze() can always add F_SEAL_WRITE.
void memfd_prepare_fork() noexcept {
  for_each_own_memfd([](arena_slot& s, bool writable) {
    if (writable)
      (void)os::set_fork_inherit(reinterpret_cast<void*>(s.base), s.committed_end - s.base, false);
  });
}

void memfd_after_fork_parent() noexcept {
  for_each_own_memfd([](arena_slot& s, bool writable) {
    if (writable)
      (void)os::set_fork_inherit(reinterpret_cast<void*>(s.base), s.committed_end - s.base, true);
  });
}

// In the child the unfrozen arenas' ranges are holes: map each file there privately and
// read-only, so the child reads what the parent writes and freezes but can never write the file
// (a write faults; even after mprotect it would only change a private copy). Stop every thread
// cache (new ticket) and mark the arena, so allocate and freeze refuse instead of writing the
// parent's pages.
void memfd_after_fork_child() noexcept {
  for_each_own_memfd([](arena_slot& s, bool writable) {
    if (!s.frozen.load(std::memory_order_relaxed)) {
      if (writable) {
        void* base = reinterpret_cast<void*>(s.base);
        const std::size_t bytes = s.committed_end - s.base;
        if (os::map_file_private(s.fd, base, bytes) != 0) (void)os::reserve_at(base, bytes);
      }
      s.inherited = true;
      s.ticket.store(next_ticket(), std::memory_order_relaxed);
    }
  });
}

}  // namespace

owned_fd::~owned_fd() {
  if (fd >= 0) (void)os::close_fd(fd);
}

owned_fd open_arena_memfd(std::string_view name) {
  // The memfd hooks run with the registry lock held (for_each_own_memfd), so the registry's
  // stage is installed first.
  registry::join_fork_lifecycle();
  add_fork_hooks(fork_stage::memfd,
                 {&memfd_prepare_fork, &memfd_after_fork_parent, &memfd_after_fork_child});
  char full[sizeof memfd_prefix + 48] = {};
  std::snprintf(full, sizeof full, "%s%.*s", memfd_prefix,
                static_cast<int>(utf8_prefix_length(name, 47)), name.data());
  owned_fd out;
  const int err = os::memfd_open(full, &out.fd);
  if (err != 0) fail_system(err, "permafrost::arena: memfd_create");
  return out;
}

int memfd_commit(arena_slot* slot, std::uintptr_t from, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  const std::size_t offset = from - slot->base;
  if (const int err = os::file_resize(slot->fd, offset + bytes); err != 0) return err;
  return os::map_file_fixed(slot->fd, reinterpret_cast<void*>(from), bytes, offset, true);
}

bool inherited_unfrozen_memfd(const arena_slot* slot) noexcept { return slot->inherited; }

void memfd_freeze(arena_slot* slot, std::uintptr_t used_end) {
  const std::size_t page = os::page_size();
  const std::uintptr_t data_end = round_up(used_end, page);
  // 1. Nothing will be allocated beyond the data: unmap the tail (back to reserved) and shrink
  //    the file to the data plus one trailer page.
  if (data_end < slot->committed_end) {
    const int err = os::decommit(reinterpret_cast<void*>(data_end), slot->committed_end - data_end);
    if (err != 0) fail_system(err, "permafrost::arena::freeze: unmapping the memfd tail");
    slot->committed_end = data_end;
  }
  const std::size_t data_bytes = data_end - slot->base;
  trailer t{};
  std::memcpy(t.magic, trailer_magic, sizeof t.magic);
  t.version = trailer_version;
  t.page_size = static_cast<std::uint32_t>(page);
  t.base = slot->base;
  t.used = used_end - slot->base;
  t.data_bytes = data_bytes;
  std::memcpy(t.name, slot->name, sizeof t.name);
  if (const int err = os::file_resize(slot->fd, data_bytes + page); err != 0)
    fail_system(err, "permafrost::arena::freeze: sizing the memfd");
  if (const int err = os::file_write(slot->fd, &t, sizeof t, data_bytes); err != 0)
    fail_system(err, "permafrost::arena::freeze: writing the memfd trailer");
  // 2. Sealed, then read-only: no new writable mapping, no write(2), no resize, anywhere. The
  //    future-write seal waits for nothing (F_SEAL_WRITE scans the file for pinned pages and
  //    needs every writable mapping gone first), so it goes first.
  void* base = reinterpret_cast<void*>(slot->base);
  if (const int err =
          os::add_seals(slot->fd, os::seal_future_write | os::seal_shrink | os::seal_grow);
      err != 0)
    fail_system(err, "permafrost::arena::freeze: sealing the memfd");
  // 3. The creator's mapping was made writable, so mprotect could make it writable again.
  //    Replace it with a read-only mapping made after the seal, which the kernel never lets
  //    become writable; then no writable mapping is left and F_SEAL_WRITE can be added too. This
  //    costs about what the mprotect it replaces would (the old page-table entries are dropped;
  //    the creator refaults on its next read, or populates). Children forked before freeze hold
  //    no mapping of the file that can write (see memfd_prepare_fork). A process that was sent
  //    the descriptor before freeze and mapped it writable makes F_SEAL_WRITE fail (EBUSY): the
  //    future-write seal then stands alone, and attach() refuses the file. Should the remap
  //    fail, mprotect makes the old mapping read-only instead.
  if (os::map_file_fixed(slot->fd, base, data_bytes, 0, false) == 0) {
    (void)os::add_seals(slot->fd, os::seal_write);
    if (slot->huge_pages) (void)os::advise_huge_pages(base, data_bytes);  // the new mapping's
  } else if (const int err = os::protect_read_only(base, data_bytes); err != 0) {
    // Sealed against growth: the arena cannot allocate any more, and is not frozen either.
    fail_system(err, "permafrost::arena::freeze: mprotect");
  }
}

void set_backing_fd(arena_slot* slot, int fd) noexcept {
  slot->fd = fd;
  slot->fd_file = {};
  if (fd >= 0) (void)os::file_identity(fd, &slot->fd_file);
}

bool owns_backing_fd(const arena_slot* slot) noexcept {
  os::file_id now;
  return slot->fd >= 0 && os::file_identity(slot->fd, &now) == 0 && now == slot->fd_file;
}

void release_backing(arena_slot* slot) noexcept {
  // A number closed behind the arena's back may name another file now: never close that one.
  if (owns_backing_fd(slot)) (void)os::close_fd(slot->fd);
  slot->fd = -1;
  slot->inherited = false;
  slot->attached = false;
  slot->outside_space = false;
  slot->populate = false;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// attach
// ---------------------------------------------------------------------------------------------

namespace {

using reason = attach_error::reason;

[[noreturn]] void refuse(reason why, int fd, const std::string& what, int error = 0) {
  throw attach_error(why, "permafrost::arena::attach(fd " + std::to_string(fd) + "): " + what,
                     error);
}

// Reads and checks the trailer of a sealed permafrost memfd.
detail::trailer read_trailer(int fd) {
  int seals = 0;
  if (const int err = os::get_seals(fd, &seals); err != 0)
    refuse(reason::not_a_memfd, fd,
           "not a sealable memory file (memfd): " + std::system_category().message(err));
  // F_SEAL_WRITE, not only the future-write seal: the latter leaves writable mappings made
  // before it in place, so some process could still change the bytes.
  if ((seals & os::seal_write) == 0 || (seals & os::seal_shrink) == 0 ||
      (seals & os::seal_grow) == 0)
    refuse(reason::unsealed, fd,
           "the memfd is not sealed against writes (F_SEAL_WRITE), growth and shrinking: not "
           "frozen yet, or a process still holds a writable mapping of it");
  char path[320];
  if (const int err = os::fd_path(fd, path, sizeof path); err != 0)
    refuse(reason::system, fd, "reading its name: " + std::system_category().message(err), err);
  if (std::strncmp(path, detail::path_prefix, sizeof detail::path_prefix - 1) != 0)
    refuse(reason::foreign, fd, std::string("'") + path + "' is not a permafrost arena");
  const std::size_t page = os::page_size();
  std::size_t size = 0;
  if (const int err = os::file_size(fd, &size); err != 0)
    refuse(reason::system, fd, "fstat: " + std::system_category().message(err), err);
  detail::trailer t{};
  if (size < page || size % page != 0 || os::file_read(fd, &t, sizeof t, size - page) != 0 ||
      std::memcmp(t.magic, detail::trailer_magic, sizeof t.magic) != 0)
    refuse(reason::truncated, fd,
           std::string("'") + path + "' has no permafrost trailer at its end (" +
               std::to_string(size) + " bytes): truncated, or frozen by no permafrost arena");
  if (t.version != detail::trailer_version || t.page_size != page)
    refuse(reason::foreign, fd,
           "made by an incompatible permafrost (trailer version " + std::to_string(t.version) +
               ", page size " + std::to_string(t.page_size) + ")");
  if (t.data_bytes + page != size || t.used > t.data_bytes || t.data_bytes - t.used >= page)
    refuse(reason::truncated, fd,
           "its size (" + std::to_string(size) + " bytes) disagrees with its trailer (" +
               std::to_string(t.data_bytes) + " data bytes + 1 page)");
  if (t.base == 0 || t.base % detail::granule_size != 0 || t.base + t.data_bytes < t.base)
    refuse(reason::foreign, fd, "its trailer records an impossible address " + detail::hex(t.base));
  t.name[sizeof t.name - 1] = '\0';
  return t;
}

}  // namespace

arena arena::attach(int fd, bool populate) {
  using detail::arena_slot;
  detail::internal_memory internal;
  const detail::trailer t = read_trailer(fd);
  detail::owned_fd own;
  if (const int err = os::dup_fd(fd, &own.fd); err != 0)
    refuse(reason::system, fd, "dup: " + std::system_category().message(err), err);

  const std::uintptr_t base = t.base;
  const std::size_t data_bytes = t.data_bytes;
  const std::string range = "[" + detail::hex(base) + ", " + detail::hex(base + data_bytes) + ")";

  std::lock_guard registry(detail::registry::mutex());
  arena_slot* slot = detail::registry::free_slot();
  if (slot == nullptr) refuse(reason::system, fd, detail::registry::no_free_slot_text(), ENOMEM);
  // The first arena operation of a process: put its reservation where the arena must go, so
  // is_frozen() covers the attached range.
  (void)detail::registry::ensure_space(base, data_bytes);
  detail::registry::range claimed;
  const int where = detail::registry::claim_at(base, data_bytes, slot, &claimed);
  if (where == EEXIST)
    refuse(reason::address_taken, fd,
           "its address range " + range + " is taken by an arena of this process");
  if (where == EXDEV)
    refuse(reason::address_taken, fd,
           "its address range " + range + " straddles this process's arena reservation");
  const bool inside = where == 0;
  if (inside) {
    if (const int err =
            os::map_file_fixed(own.fd, reinterpret_cast<void*>(base), data_bytes, 0, false);
        err != 0) {
      detail::registry::release(claimed, 0);
      refuse(reason::system, fd, "mmap " + range + ": " + std::system_category().message(err), err);
    }
  } else if (data_bytes > 0) {
    const int err = os::map_file_noreplace(own.fd, reinterpret_cast<void*>(base), data_bytes);
    if (err == EEXIST)
      refuse(reason::address_taken, fd,
             "its address range " + range + " is already mapped in this process");
    if (err != 0)
      refuse(reason::system, fd, "mmap " + range + ": " + std::system_category().message(err), err);
  }

  {
    std::lock_guard lock(slot->mu);
    slot->base = base;
    slot->reserved = inside ? claimed.bytes : data_bytes;
    detail::registry::open_slot(slot, std::string_view(t.name, ::strnlen(t.name, sizeof t.name)));
    slot->limit = base + data_bytes;
    slot->bump = base + t.used;
    slot->committed_end = base + data_bytes;
    slot->frozen.store(true, std::memory_order_relaxed);
    set_backing_fd(slot, own.release());
    slot->attached = true;
    slot->outside_space = !inside;
    slot->populate = populate;
  }
  if (inside) detail::registry::publish_frozen(claimed, base + t.used);
  detail::registry::directory_changed();
  // The range may have been poisoned by an arena this process destroyed there earlier.
  detail::asan_unpoison(reinterpret_cast<void*>(base), t.used);
  // Shared-memory huge pages, where shmem_enabled allows them (as for the creator's mapping).
  if (huge_pages_available())
    (void)os::advise_huge_pages(reinterpret_cast<void*>(base), data_bytes);
  if (populate) (void)os::populate_read(reinterpret_cast<void*>(base), data_bytes);
  return arena(static_cast<detail::arena_core*>(slot));
}

int arena::fd() const noexcept {
  if (core_ == &detail::g_dead_arena) return -1;
  const auto* slot = static_cast<const detail::arena_slot*>(core_);
  return detail::owns_backing_fd(slot) ? slot->fd : -1;
}

void arena::populate() const noexcept {
  if (core_ == &detail::g_dead_arena) return;
  const auto* slot = static_cast<const detail::arena_slot*>(core_);
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  {
    std::lock_guard lock(slot->mu);
    begin = slot->base;
    end = std::min(detail::round_up(slot->bump, os::page_size()), slot->committed_end);
  }
  (void)os::populate_read(reinterpret_cast<void*>(begin), end - begin);
}

}  // namespace permafrost
