// permafrost — the arena record and the process-wide address space (internal).
//
// Every arena's bookkeeping lives in a slot of a static table, outside any arena mapping: the
// bump pointer, counters, name and allocation log are written freely while the arena's own pages
// stay untouched after freeze. Slots live as long as the process, so handles (allocators,
// memory resources, thread caches) that point at them never dangle; a ticket tells stale ones.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <mutex>
#include <utility>
#include <vector>

#include "os/os.hpp"
#include "permafrost/arena.hpp"

namespace permafrost::detail {

inline constexpr std::size_t max_arenas = 1024;
inline constexpr std::size_t commit_step = std::size_t{2} << 20;  // 2 MiB: one huge page

class arena_slot;

// The fork gate (arena_registry.cpp): closed by the registry's fork stage from its prepare until
// its parent or child hook, after waiting until no slot lock is held. So no child inherits a slot
// lock held by a thread that does not exist in it (a child forked while another thread was in
// allocate(), contains(), stats() or freeze() of an arena hung at its first use of that arena),
// and fork holds one lock, not one per arena (ThreadSanitizer aborts a thread holding over 64).
struct fork_gate {
  std::atomic<bool> closed{false};
  std::atomic<std::uint32_t> holders{0};  // slot locks held or being taken, in all threads
};
extern constinit fork_gate g_fork_gate;

// A slot's lock: a std::mutex entered through the fork gate. A thread never holds two slot locks
// at once (it would wait for the gate while holding one, and the fork for it).
class slot_mutex {
 public:
  constexpr slot_mutex() noexcept = default;
  void lock() noexcept {
    while (!enter()) os::yield_cpu();
    mu_.lock();
  }
  bool try_lock() noexcept {
    if (!enter()) return false;
    if (mu_.try_lock()) return true;
    leave();
    return false;
  }
  void unlock() noexcept {
    mu_.unlock();
    leave();
  }

 private:
  // Sequentially consistent, as the fork's close-then-count: either the fork sees this holder,
  // or this thread sees the gate closed.
  static bool enter() noexcept {
    if (g_fork_gate.closed.load()) return false;
    g_fork_gate.holders.fetch_add(1);
    if (!g_fork_gate.closed.load()) return true;
    leave();
    return false;
  }
  static void leave() noexcept { g_fork_gate.holders.fetch_sub(1); }
  std::mutex mu_;
};

// The memory_resource returned by arena::resource(); one per slot, so it survives moves.
class arena_memory_resource final : public std::pmr::memory_resource {
 public:
  constexpr explicit arena_memory_resource(arena_core* core) noexcept : core_(core) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override;
  void do_deallocate(void*, std::size_t, std::size_t) noexcept override {}
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
  arena_core* core_;
};

class arena_slot : public arena_core {
 public:
  constexpr arena_slot() noexcept : resource(this) {}

  // Guards everything below except the atomics.
  mutable slot_mutex mu;
  bool in_use = false;
  std::uintptr_t base = 0;           // first byte; granule-aligned
  std::size_t reserved = 0;          // granules * granule_size (the last partial, see range)
  std::uintptr_t limit = 0;          // base + capacity (page-rounded): allocations end here
  std::uintptr_t bump = 0;           // next free byte for new chunks
  std::uintptr_t committed_end = 0;  // [base, committed_end) is accessible
  bool huge_pages = false;
  bool log_allocations = false;
  std::uint64_t identity = 0;  // unique per arena made in this slot; unlike the ticket it
                               // survives freeze, so thread counts still land after it
  std::atomic<bool> frozen{false};
  // Backing (see arena_memfd.cpp): the memfd, or -1 for anonymous memory.
  int fd = -1;
  os::file_id fd_file;     // the file fd named when the slot got it (set_backing_fd)
  bool inherited = false;  // this process is a forked copy of an unfrozen memfd arena's creator
  bool populate = false;   // pre-fault at freeze
  bool attached = false;  // made by arena::attach(): frozen from birth, mapped from another process
  bool outside_space = false;  // attached outside the process-wide reservation: own mapping
  std::atomic<std::uint64_t> allocations{0};
  std::atomic<std::uint64_t> lost{0};
  char name[48] = {};  // NUL-terminated; read by the write trap, so a fixed array
  // The write trap's describer for this arena and its context (set_write_describer); set before
  // freeze, read by the handler after it. Spelled out rather than named write_describer because
  // the trap sits a layer above the arena; the two types are the same type.
  std::size_t (*describer)(const void* context, std::size_t offset, char* buf,
                           std::size_t size) noexcept = nullptr;
  const void* describer_context = nullptr;
  std::vector<allocation_record> log;
  arena_memory_resource resource;
  // Freeze checks (arena_options::freeze_checks): run by freeze() before mprotect.
  bool run_freeze_checks = false;
  std::vector<std::pair<freeze_check_fn, const void*>> freeze_checks;
};

// A moved-from arena points here; its ticket never matches a cache.
extern constinit arena_core g_dead_arena;

// The static table of max_arenas slots.
arena_slot* slots_begin() noexcept;

// The slot whose reserved range holds p (frozen or not), or nullptr. Lock-free, async-signal-safe.
inline arena_slot* slot_of(const void* p) noexcept {
  bool inside = false;
  const granule_entry& g = granule_of(p, inside);
  return inside ? static_cast<arena_slot*>(g.owner.load(std::memory_order_acquire)) : nullptr;
}

// A fresh ticket, never handed out before in this process (nor in its parent before the fork).
std::uint64_t next_ticket() noexcept;

}  // namespace permafrost::detail
