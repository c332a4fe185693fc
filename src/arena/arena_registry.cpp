// permafrost — the arena registry (contract in arena_registry.hpp).
#include "arena/arena_registry.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <system_error>

#include "arena/arena_directory.hpp"
#include "fork/fork_lifecycle.hpp"
#include "os/os.hpp"
#include "permafrost/detail/asan.hpp"

namespace permafrost::detail {

constinit address_space g_address_space{};
constinit arena_core g_dead_arena{std::numeric_limits<std::uint64_t>::max()};
constinit thread_local arena_core* t_scope_target __attribute__((tls_model("initial-exec"))) =
    nullptr;

namespace {

// Slots are never destroyed: an arena destroyed by a static destructor after this table would
// otherwise touch a dead object, and nothing needs tearing down at exit anyway.
union slot_table {
  constexpr slot_table() : slots() {}
  ~slot_table() {}
  arena_slot slots[max_arenas];
};
constinit slot_table g_table;

constinit std::atomic<std::uint64_t> g_next_ticket{1};

// Sequence of releases, for the quarantine order (guarded by the registry lock).
constinit std::uint64_t g_release_clock = 0;

// The least reservation: the halving stops here. Under an address-space limit (RLIMIT_AS,
// `ulimit -v`) a reservation may be smaller than a granule; its last granule is then partial.
constexpr std::size_t least_space = 8 * commit_step;  // 16 MiB

// What the address-space limit left when the reservation was made, when one was in force and
// the reservation was cut below the largest for it (the error texts name it); else 0.
constinit std::size_t g_cut_by_limit_left = 0;

std::size_t space_bytes() noexcept { return g_address_space.size.load(std::memory_order_relaxed); }

std::size_t total_granules() noexcept { return granules_in(space_bytes()); }

// The bytes of `count` granules from granule `first`: less than count * granule_size when the run
// ends at a partial last granule.
std::size_t run_bytes(std::size_t first, std::size_t count) noexcept {
  return std::min(count << granule_shift, space_bytes() - (first << granule_shift));
}

// `want` halved and rounded down to whole granules (whole 2 MiB steps below one granule).
std::size_t round_space(std::size_t want) noexcept {
  return want >= granule_size ? want & ~(granule_size - 1) : want & ~(commit_step - 1);
}

// ", cut to N bytes by the address-space limit (RLIMIT_AS, `ulimit -v`: M bytes were left)" when
// the reservation was cut by one; else empty.
std::string limit_note() {
  if (g_cut_by_limit_left == 0) return {};
  return ", cut by the address-space limit (RLIMIT_AS, `ulimit -v`), which left " +
         std::to_string(g_cut_by_limit_left) + " bytes when it was made";
}

std::size_t first_granule(std::uintptr_t base) noexcept {
  return (base - g_address_space.base.load(std::memory_order_relaxed)) >> granule_shift;
}

// How many later releases a released run waits out before claim() may reuse it (see claim()).
constexpr std::uint64_t quarantine_releases = 64;

// First free run of `count` granules holding `bytes` none of which was released after
// `threshold`, or `npos`.
constexpr std::size_t npos = ~std::size_t{0};
std::size_t first_fit(std::size_t count, std::size_t bytes, std::uint64_t threshold) noexcept {
  std::size_t run = 0;
  for (std::size_t i = 0, total = total_granules(); i < total; ++i) {
    const granule_entry& g = g_address_space.granules[i];
    if (g.owner.load(std::memory_order_relaxed) == nullptr && g.released <= threshold) {
      if (++run == count && run_bytes(i + 1 - count, count) >= bytes) return i + 1 - count;
    } else {
      run = 0;
    }
  }
  return npos;
}

void give(std::size_t first, std::size_t count, arena_core* owner) noexcept {
  for (std::size_t i = first; i < first + count; ++i) {
    g_address_space.granules[i].frozen_end.store(0, std::memory_order_relaxed);
    g_address_space.granules[i].owner.store(owner, std::memory_order_release);
  }
}

}  // namespace

constinit fork_gate g_fork_gate;

arena_slot* slots_begin() noexcept { return g_table.slots; }

std::uint64_t next_ticket() noexcept {
  return g_next_ticket.fetch_add(1, std::memory_order_relaxed);
}

namespace registry {

std::mutex& mutex() noexcept {
  static constinit std::mutex mu;
  return mu;
}

namespace {
// Around fork(2): the registry lock, then the fork gate closed once no slot lock is held
// (arena_slot.hpp); both opened again in parent and child.
void lock_for_fork() noexcept {
  mutex().lock();
  g_fork_gate.closed.store(true);
  while (g_fork_gate.holders.load() != 0) os::yield_cpu();
}
void unlock_after_fork() noexcept {
  g_fork_gate.closed.store(false);
  mutex().unlock();
}
void unlock_in_child() noexcept {
  directory::renew_in_child();  // the parent's directory is the parent's
  g_fork_gate.closed.store(false);
  mutex().unlock();
}
}  // namespace

void join_fork_lifecycle() noexcept {
  add_fork_hooks(fork_stage::registry, {&lock_for_fork, &unlock_after_fork, &unlock_in_child});
}

void directory_changed() noexcept {
  join_fork_lifecycle();
  directory::update();
}

std::string reservation_failed_text(int err) {
  std::string text = "the process-wide arena reservation could not be made (at least " +
                     std::to_string(least_space) + " bytes of address space): ";
  if (std::size_t left = 0; err == ENOMEM && os::address_space_left(&left) == 0)
    return text + "the address-space limit (RLIMIT_AS, `ulimit -v`) leaves this process " +
           std::to_string(left) + " bytes; raise the limit";
  return text + std::system_category().message(err);
}

arena_limit_error reservation_failed(int err) {
  return arena_limit_error(arena_limit_error::limit::address_space, reservation_failed_text(err));
}

int ensure_space(std::uintptr_t at, std::size_t min_bytes) noexcept {
  if (space_bytes() != 0) return 0;
  // Ask for the most and halve on refusal. Reserving costs no memory, only address space; but
  // under an address-space limit it costs the limit: take at most half of what the limit leaves,
  // so the program keeps room for its heap, stacks and files (a 1 GiB floor refused every arena
  // under `ulimit -v 300000`).
  std::size_t most = max_granules * granule_size;
  std::size_t left = 0;
  const bool limited = os::address_space_left(&left) == 0 && round_space(left / 2) < most;
  if (limited) most = round_space(left / 2);
  int err = ENOMEM;
  for (std::size_t want = most; want >= std::max(least_space, min_bytes);
       want = round_space(want / 2)) {
    void* p = reinterpret_cast<void*>(at);
    if (at != 0) {
      if (at + want < at) continue;
      err = os::reserve_at(p, want);
    } else {
      err = os::reserve(want, granule_size, &p);
    }
    if (err == 0) {
      g_address_space.base.store(reinterpret_cast<std::uintptr_t>(p), std::memory_order_relaxed);
      g_address_space.size.store(want, std::memory_order_release);
      g_cut_by_limit_left = limited ? left : 0;
      join_fork_lifecycle();
      return 0;
    }
  }
  return err;
}

arena_slot* free_slot() noexcept {
  for (std::size_t i = 0; i < max_arenas; ++i) {
    if (!g_table.slots[i].in_use) return &g_table.slots[i];
  }
  return nullptr;
}

std::string no_free_slot_text() {
  return "all " + std::to_string(max_arenas) + " arena slots are in use (a process holds at most " +
         std::to_string(max_arenas) +
         " arenas, attached arenas and open images together): destroy an arena or close an image "
         "first";
}

namespace {
// The free bytes of the reservation and its longest free run of granules, in bytes.
void free_space(std::size_t* free_bytes, std::size_t* longest) noexcept {
  *free_bytes = 0;
  *longest = 0;
  std::size_t run = 0;
  for (std::size_t i = 0, total = total_granules(); i < total; ++i) {
    const bool taken = g_address_space.granules[i].owner.load(std::memory_order_relaxed) != nullptr;
    run = taken ? 0 : run + 1;
    if (!taken) *free_bytes += run_bytes(i, 1);
    if (run != 0) *longest = std::max(*longest, run_bytes(i + 1 - run, run));
  }
}
}  // namespace

std::string no_room_text(std::size_t bytes) {
  std::size_t free_bytes = 0;
  std::size_t longest = 0;
  free_space(&free_bytes, &longest);
  return "no room for " + std::to_string(bytes) + " bytes in this process's arena reservation (" +
         std::to_string(space_bytes()) + " bytes" + limit_note() + "; " +
         std::to_string(free_bytes) + " free, the longest free run " + std::to_string(longest) +
         " bytes)";
}

std::string no_space_text(std::size_t bytes) {
  if (space_bytes() == 0) return reservation_failed_text(ENOMEM);
  return no_room_text(bytes);
}

std::size_t longest_free_run_under_limit() noexcept {
  if (g_cut_by_limit_left == 0) return 0;
  std::size_t free_bytes = 0;
  std::size_t longest = 0;
  free_space(&free_bytes, &longest);
  return longest;
}

int claim(std::size_t bytes, arena_core* owner, range* out) noexcept {
  const std::size_t count = std::max<std::size_t>(1, (bytes + granule_size - 1) >> granule_shift);
  // Quarantine: a released run is not handed out again until quarantine_releases more runs have
  // been released after it. Past that it is taken before never-used granules: a process that
  // keeps making and destroying arenas then cycles through a bounded set of granules, instead of
  // touching ever-new address space (each fresh GiB costs a page-table page that is never freed,
  // and under ASan fresh shadow memory: fuzz_arena grew by ~270 KiB a run and ran out of memory).
  // Then never-used granules; then the smallest release time that still leaves a long enough run
  // (binary search: a run that fits under a threshold fits under any larger one).
  std::size_t first = g_release_clock > quarantine_releases
                          ? first_fit(count, bytes, g_release_clock - quarantine_releases)
                          : npos;
  if (first == npos) first = first_fit(count, bytes, 0);
  if (first == npos) {
    if (first_fit(count, bytes, g_release_clock) == npos) return ENOMEM;
    std::uint64_t lo = 0;                // no fit
    std::uint64_t hi = g_release_clock;  // fits
    while (hi - lo > 1) {
      const std::uint64_t mid = lo + (hi - lo) / 2;
      (first_fit(count, bytes, mid) == npos ? lo : hi) = mid;
    }
    first = first_fit(count, bytes, hi);
  }
  give(first, count, owner);
  out->base = g_address_space.base.load(std::memory_order_relaxed) + (first << granule_shift);
  out->bytes = run_bytes(first, count);
  return 0;
}

int claim_at(std::uintptr_t base, std::size_t bytes, arena_core* owner, range* out) noexcept {
  const std::size_t count = std::max<std::size_t>(1, granules_in(bytes));
  const std::uintptr_t space_base = g_address_space.base.load(std::memory_order_relaxed);
  const std::uintptr_t space_end = space_base + space_bytes();
  // A reservation cut by an address-space limit ends in a partial granule: the run is cut there.
  const std::size_t span =
      std::min<std::size_t>(count << granule_shift, base < space_end ? space_end - base : 0);
  const bool inside =
      space_end != space_base && base >= space_base && span >= bytes && base + span <= space_end;
  if (!inside)
    return base < space_end && base + (count << granule_shift) > space_base ? EXDEV : ERANGE;
  const std::size_t first = first_granule(base);
  for (std::size_t i = first; i < first + count; ++i) {
    if (g_address_space.granules[i].owner.load(std::memory_order_relaxed) != nullptr) return EEXIST;
  }
  give(first, count, owner);
  *out = range{base, span};
  return 0;
}

void publish_frozen(const range& r, std::uintptr_t end) noexcept {
  const std::size_t first = first_granule(r.base);
  for (std::size_t i = first; i < first + granules_in(r.bytes); ++i)
    g_address_space.granules[i].frozen_end.store(end, std::memory_order_release);
}

void release(const range& r, std::size_t used) noexcept {
  const std::size_t first = first_granule(r.base);
  const std::size_t count = granules_in(r.bytes);
  for (std::size_t i = first; i < first + count; ++i)
    g_address_space.granules[i].frozen_end.store(0, std::memory_order_release);
  // Hand the range back to ASan clean: it becomes inaccessible (a stray access is a SEGV that
  // ASan reports), and attach() may map an arena's file at this very address again.
  asan_unpoison(reinterpret_cast<void*>(r.base), std::min(used, r.bytes));
  const int err = os::decommit(reinterpret_cast<void*>(r.base), r.bytes);
  const std::uint64_t now = ++g_release_clock;
  for (std::size_t i = first; i < first + count; ++i) {
    g_address_space.granules[i].released = now;
    g_address_space.granules[i].owner.store(err == 0 ? nullptr : &g_dead_arena,
                                            std::memory_order_release);
  }
}

void open_slot(arena_slot* slot, std::string_view name) noexcept {
  slot->in_use = true;
  slot->bump = slot->base;
  slot->committed_end = slot->base;
  slot->huge_pages = false;
  slot->log_allocations = false;
  slot->frozen.store(false, std::memory_order_relaxed);
  slot->allocations.store(0, std::memory_order_relaxed);
  slot->lost.store(0, std::memory_order_relaxed);
  const std::size_t n = utf8_prefix_length(name, sizeof slot->name - 1);
  std::memcpy(slot->name, name.data(), n);
  slot->name[n] = '\0';
  slot->log.clear();
  slot->describer = nullptr;
  slot->describer_context = nullptr;
  slot->run_freeze_checks = false;
  slot->freeze_checks.clear();
  slot->ticket.store(next_ticket(), std::memory_order_relaxed);
  slot->identity = next_ticket();
  slot->fd = -1;
  slot->inherited = false;
  slot->attached = false;
  slot->outside_space = false;
  slot->populate = false;
}

range range_of(const arena_slot* slot) noexcept {
  if (slot->outside_space) return {};
  return range{slot->base, slot->reserved};
}

arena_slot* claim_frozen(std::size_t bytes) {
  internal_memory internal;
  std::lock_guard lock(mutex());
  using limit = arena_limit_error::limit;
  if (bytes == 0) throw std::bad_alloc();
  if (const int err = ensure_space(); err != 0) throw reservation_failed(err);
  arena_slot* slot = free_slot();
  if (slot == nullptr) throw arena_limit_error(limit::slots, no_free_slot_text());
  range r;
  if (claim(bytes, slot, &r) != 0)
    throw arena_limit_error(limit::address_space, no_room_text(bytes));
  std::lock_guard slot_lock(slot->mu);
  slot->base = r.base;
  slot->reserved = r.bytes;
  slot->limit = r.base;
  open_slot(slot, "");
  return slot;
}

void publish_frozen(arena_slot* slot, std::uintptr_t end, std::string_view name) noexcept {
  std::lock_guard lock(mutex());
  {
    std::lock_guard slot_lock(slot->mu);
    open_slot(slot, name);
    slot->limit = end;
    slot->bump = end;
    slot->committed_end = round_up(end, os::page_size());
    slot->attached = true;  // frozen from birth, mapped by its owner
    slot->frozen.store(true, std::memory_order_release);
  }
  publish_frozen(range_of(slot), end);
  directory_changed();
}

void release_frozen(arena_slot* slot) noexcept {
  std::lock_guard lock(mutex());
  std::lock_guard slot_lock(slot->mu);
  slot->ticket.store(next_ticket(), std::memory_order_relaxed);
  release(range_of(slot), slot->committed_end - slot->base);
  slot->in_use = false;
  directory_changed();
}

}  // namespace registry
}  // namespace permafrost::detail
