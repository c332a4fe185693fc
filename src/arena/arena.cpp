// permafrost — the frozen arena: slow path, freeze, statistics, lifetime.
// The inline fast path and the contract are in include/permafrost/arena.hpp.
#include "permafrost/arena.hpp"

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <system_error>

#include "arena/arena_backing.hpp"
#include "arena/arena_registry.hpp"
#include "os/os.hpp"

namespace permafrost {
namespace detail {

constinit thread_local bump_cache t_bump{};

namespace {

// A thread's chunk is at least this big, so the lock is taken once per 64 KiB, not per object.
constexpr std::size_t chunk_bytes = std::size_t{64} << 10;

// arena_options::freeze_checks when unset: decided here, by the library's own build, so every
// translation unit of a program gets the same answer.
#ifdef NDEBUG
constexpr bool freeze_checks_by_default = false;
#else
constexpr bool freeze_checks_by_default = true;
#endif

arena_slot* checked_slot(arena_core* core) {
  PERMAFROST_CHECK(core != &g_dead_arena, "use of a moved-from or destroyed permafrost::arena");
  return static_cast<arena_slot*>(core);
}

// Hands the calling thread's chunk back to its arena: the unused tail is returned when nothing
// was carved after it, and the counts the thread kept are added. The cache is then empty.
void return_cache(bump_cache& c) noexcept {
  if (c.owner == nullptr) return;
  auto* slot = static_cast<arena_slot*>(c.owner);
  {
    std::lock_guard lock(slot->mu);
    if (slot->in_use && slot->identity == c.identity) {
      if (slot->bump == c.end && !slot->frozen.load(std::memory_order_relaxed)) {
        slot->bump = c.cur;
      } else {
        slot->lost.fetch_add(c.end - c.cur, std::memory_order_relaxed);
      }
      slot->allocations.fetch_add(c.count, std::memory_order_relaxed);
      slot->lost.fetch_add(c.lost, std::memory_order_relaxed);
    }
  }
  c = bump_cache{};
}

// Returns the thread's chunk when the thread ends, so counts are not lost.
struct cache_returner {
  ~cache_returner() { return_cache(t_bump); }
};

void arm_cache_return() {
  static thread_local cache_returner returner;
  (void)returner;
}

bool cache_is_ours(const bump_cache& c, const arena_slot* slot) noexcept {
  return c.owner == slot && c.ticket == slot->ticket.load(std::memory_order_relaxed);
}

// Makes [from, from + bytes) writable: an mprotect of the reservation, or for a memfd arena a
// shared mapping of the file over it.
int commit_range(arena_slot* slot, std::uintptr_t from, std::size_t bytes) noexcept {
  if (slot->fd >= 0) return memfd_commit(slot, from, bytes);
  return os::commit(reinterpret_cast<void*>(from), bytes);
}

// Makes [base, end) accessible, growing geometrically in 2 MiB steps so a large arena needs few
// mprotect calls. Pre: slot->mu held; end <= round_up(limit, commit_step).
int ensure_committed(arena_slot* slot, std::uintptr_t end) noexcept {
  if (end <= slot->committed_end) return 0;
  const std::uintptr_t ceiling =
      std::min<std::uintptr_t>(round_up(slot->limit, commit_step), slot->base + slot->reserved);
  const std::uintptr_t exact = std::min(round_up(end, commit_step), ceiling);
  const std::size_t grown = slot->committed_end - slot->base;
  const std::uintptr_t generous = std::min(
      ceiling, std::max(exact, slot->committed_end + std::min<std::size_t>(grown, 64u << 20)));
  std::uintptr_t target = generous;
  auto* from = reinterpret_cast<void*>(slot->committed_end);
  int err = commit_range(slot, slot->committed_end, target - slot->committed_end);
  if (err != 0 && generous != exact) {
    target = exact;
    err = commit_range(slot, slot->committed_end, target - slot->committed_end);
  }
  if (err != 0) return err;
  if (slot->huge_pages) (void)os::advise_huge_pages(from, target - slot->committed_end);
  (void)os::name_range(from, target - slot->committed_end, slot->name);  // best effort
  asan_poison(from, target - slot->committed_end);  // unpoisoned allocation by allocation
  slot->committed_end = target;
  return 0;
}

void* fail(bool throw_on_failure, const arena_slot* slot, int why) {
  if (!throw_on_failure) return nullptr;
  switch (why) {
    case EINVAL:
      throw std::invalid_argument(
          "permafrost::arena: alignment must be a power of two no larger than 256 MiB");
    case EROFS:
      throw frozen_error(std::string("permafrost::arena '") + slot->name +
                         "': allocation after freeze()");
    case EXDEV:
      throw std::logic_error(std::string("permafrost::arena '") + slot->name +
                             "': a memfd arena's pages are shared with the process that made it; "
                             "a forked child must not allocate from it before freeze()");
    default: throw std::bad_alloc();
  }
}

// The allocation-log path: every allocation under the lock, straight from the shared bump.
void* allocate_logged(arena_slot* slot, std::size_t bytes, std::size_t align, const char* tag,
                      bool throw_on_failure) {
  std::unique_lock lock(slot->mu);
  if (slot->frozen.load(std::memory_order_relaxed)) return fail(throw_on_failure, slot, EROFS);
  const std::uintptr_t p = round_up(slot->bump, align);
  if (p > slot->limit || bytes > slot->limit - p) return fail(throw_on_failure, slot, ENOMEM);
  if (ensure_committed(slot, p + bytes) != 0) return fail(throw_on_failure, slot, ENOMEM);
  try {
    slot->log.push_back(allocation_record{p - slot->base, bytes, tag});
  } catch (const std::bad_alloc&) {
    return fail(throw_on_failure, slot, ENOMEM);
  }
  slot->lost.fetch_add(p - slot->bump, std::memory_order_relaxed);
  slot->allocations.fetch_add(1, std::memory_order_relaxed);
  slot->bump = p + bytes;
  asan_unpoison(reinterpret_cast<void*>(p), bytes);
  return reinterpret_cast<void*>(p);
}

}  // namespace

void* allocate_slow(arena_core* core, std::size_t bytes, std::size_t align, const char* tag,
                    bool throw_on_failure) {
  arena_slot* slot = checked_slot(core);
  internal_memory internal;  // the log and error messages
  if (align == 0 || (align & (align - 1)) != 0 || align > max_alignment)
    return fail(throw_on_failure, slot, EINVAL);
  if (bytes == 0) bytes = 1;
  if (bytes > std::numeric_limits<std::size_t>::max() - (align - 1))
    return fail(throw_on_failure, slot, ENOMEM);
  if (slot->frozen.load(std::memory_order_acquire)) return fail(throw_on_failure, slot, EROFS);
  if (inherited_unfrozen_memfd(slot)) return fail(throw_on_failure, slot, EXDEV);
  if (slot->log_allocations) return allocate_logged(slot, bytes, align, tag, throw_on_failure);

  bump_cache& c = t_bump;
  if (!cache_is_ours(c, slot)) return_cache(c);

  std::unique_lock lock(slot->mu);
  if (slot->frozen.load(std::memory_order_relaxed)) {
    lock.unlock();
    return fail(throw_on_failure, slot, EROFS);
  }
  const bool ours = cache_is_ours(c, slot);
  // Extend the thread's chunk in place when nothing was carved after it; else start a new one.
  const bool extend = ours && c.end == slot->bump;
  const std::uintptr_t start = extend ? c.cur : slot->bump;
  const std::uintptr_t p = round_up(start, align);
  if (p > slot->limit || bytes > slot->limit - p) {
    lock.unlock();
    return fail(throw_on_failure, slot, ENOMEM);
  }
  const std::uintptr_t need_end = p + bytes;
  std::uintptr_t chunk_end = std::min(slot->limit, std::max(need_end, slot->bump + chunk_bytes));
  if (ensure_committed(slot, chunk_end) != 0) {
    chunk_end = need_end;
    if (ensure_committed(slot, chunk_end) != 0) {
      lock.unlock();
      return fail(throw_on_failure, slot, ENOMEM);
    }
  }
  if (!extend) {
    if (ours) {
      slot->lost.fetch_add(c.end - c.cur + c.lost, std::memory_order_relaxed);
      slot->allocations.fetch_add(c.count, std::memory_order_relaxed);
    }
    c = bump_cache{
        slot->ticket.load(std::memory_order_relaxed), start, chunk_end, 0, 0, slot, slot->identity};
  } else {
    c.end = chunk_end;
  }
  slot->bump = chunk_end;
  lock.unlock();
  arm_cache_return();

  c.lost += p - c.cur;
  c.cur = need_end;
  ++c.count;
  asan_unpoison(reinterpret_cast<void*>(p), bytes);
  return reinterpret_cast<void*>(p);
}

void* arena_memory_resource::do_allocate(std::size_t bytes, std::size_t align) {
  return detail::allocate(core_, bytes, align);
}

}  // namespace detail

using detail::arena_slot;

bool huge_pages_available() noexcept {
  static const bool available = [] {
    const auto mode = os::transparent_huge_pages();
    return mode == os::thp_mode::always || mode == os::thp_mode::madvise;
  }();
  return available;
}

arena::arena(arena_options options) : core_(&detail::g_dead_arena) {
  detail::internal_memory internal;
  if (options.capacity == 0)
    throw std::invalid_argument("permafrost::arena: capacity must be greater than 0");
  const std::size_t page = os::page_size();
  if (options.capacity > detail::max_granules * detail::granule_size) throw std::bad_alloc();
  const bool memfd = options.backing == backing::memfd;
  detail::owned_fd file = memfd ? detail::open_arena_memfd(options.name) : detail::owned_fd{};
  std::size_t capacity = detail::round_up(options.capacity, page);

  std::lock_guard registry(detail::registry::mutex());
  using limit = arena_limit_error::limit;
  const auto refuse = [&options](limit which, const std::string& why) {
    return arena_limit_error(which,
                             "permafrost::arena '" + std::string(options.name) + "': " + why);
  };
  if (const int err = detail::registry::ensure_space(); err != 0)
    throw refuse(limit::address_space, detail::registry::reservation_failed(err).what());
  arena_slot* slot = detail::registry::free_slot();
  if (slot == nullptr) throw refuse(limit::slots, detail::registry::no_free_slot_text());
  detail::registry::range r;
  int err = detail::registry::claim(capacity, slot, &r);
  // Under an address-space limit (RLIMIT_AS) the reservation is cut to what the limit leaves, and
  // the default capacity (64 GiB) fits in none: take the longest free run instead. The limit
  // refuses memory beyond it anyway; allocation fails there as it does at the capacity.
  if (const std::size_t longest = detail::registry::longest_free_run_under_limit();
      err != 0 && longest >= page) {
    capacity = longest;
    err = detail::registry::claim(capacity, slot, &r);
  }
  if (err != 0)
    throw refuse(limit::address_space, detail::registry::no_room_text(options.capacity));
  std::lock_guard lock(slot->mu);
  slot->base = r.base;
  slot->reserved = r.bytes;
  slot->limit = r.base + capacity;
  detail::registry::open_slot(slot, options.name);
  // For a memfd arena the advice asks for shared-memory huge pages, which follow
  // /sys/kernel/mm/transparent_hugepage/shmem_enabled (`never` by default: 4 KiB pages then).
  slot->huge_pages = options.huge_pages;
  slot->log_allocations = options.allocation_log;
  slot->run_freeze_checks = options.freeze_checks.value_or(detail::freeze_checks_by_default);
  detail::set_backing_fd(slot, file.release());
  slot->populate = options.populate;
  core_ = slot;
  detail::registry::directory_changed();
}

arena::~arena() {
  if (core_ == &detail::g_dead_arena) return;
  // An arena_scope still routing this thread's malloc here would hand out blocks of the released
  // range (a later malloc returned a pointer into it, and the first write died of SIGSEGV): the
  // routing stops, and the thread's malloc goes to the process heap. No abort here: exit() runs
  // static destructors without unwinding, so a static arena under a live scope is destroyed so
  // in a program that merely exits. A scope that outlives its arena and is then destroyed aborts
  // there (~arena_scope).
  if (detail::t_scope_target == core_) detail::t_scope_target = nullptr;
  auto* slot = static_cast<arena_slot*>(core_);
  detail::internal_memory internal;
  std::lock_guard registry(detail::registry::mutex());
  std::lock_guard lock(slot->mu);
  slot->ticket.store(detail::next_ticket(), std::memory_order_relaxed);
  if (slot->outside_space) {
    // An attached arena mapped outside the reservation: its own mapping, no granules.
    if (slot->committed_end > slot->base)
      (void)os::release(reinterpret_cast<void*>(slot->base), slot->committed_end - slot->base);
  } else {
    detail::registry::release(detail::registry::range_of(slot), slot->committed_end - slot->base);
  }
  detail::release_backing(slot);
  std::vector<allocation_record>().swap(slot->log);
  std::vector<std::pair<freeze_check_fn, const void*>>().swap(slot->freeze_checks);
  slot->in_use = false;
  detail::registry::directory_changed();
  if (detail::t_bump.owner == slot) detail::t_bump = detail::bump_cache{};
}

arena::arena(arena&& other) noexcept : core_(std::exchange(other.core_, &detail::g_dead_arena)) {}

arena& arena::operator=(arena&& other) noexcept {
  if (this != &other) {
    arena doomed(std::move(*this));
    core_ = std::exchange(other.core_, &detail::g_dead_arena);
  }
  return *this;
}

void arena::freeze() {
  arena_slot* slot = detail::checked_slot(core_);
  detail::internal_memory internal;  // the check list copy, the checks' own strings
  if (slot->run_freeze_checks && !slot->frozen.load(std::memory_order_acquire)) {
    // Copied out and run unlocked: the checks call contains(), which takes the lock.
    std::vector<std::pair<freeze_check_fn, const void*>> checks;
    {
      std::lock_guard lock(slot->mu);
      checks = slot->freeze_checks;
    }
    for (const auto& [check, object] : checks) {
      std::string why = check(object, *this);
      if (!why.empty())
        throw freeze_check_error(std::string("permafrost::arena '") + slot->name +
                                 "': freeze check failed: " + why);
    }
  }
  if (detail::cache_is_ours(detail::t_bump, slot)) detail::return_cache(detail::t_bump);
  std::lock_guard lock(slot->mu);
  if (slot->frozen.load(std::memory_order_relaxed)) return;
  if (detail::inherited_unfrozen_memfd(slot))
    throw std::logic_error(std::string("permafrost::arena '") + slot->name +
                           "': only the process that made a memfd arena may freeze it");
  const std::uintptr_t used_end = slot->bump;
  if (slot->fd >= 0) {
    detail::memfd_freeze(slot, used_end);
  } else {
    const std::uintptr_t protect_end =
        detail::round_up(used_end, slot->huge_pages ? detail::commit_step : os::page_size());
    PERMAFROST_ASSERT(protect_end <= slot->committed_end || used_end == slot->base);
    const int err =
        os::protect_read_only(reinterpret_cast<void*>(slot->base), protect_end - slot->base);
    if (err != 0)
      throw std::system_error(err, std::generic_category(), "permafrost::arena::freeze: mprotect");
    if (protect_end < slot->committed_end) {
      // Nothing will be allocated there again: give the pages back. On failure the tail simply
      // stays accessible and unused.
      if (os::decommit(reinterpret_cast<void*>(protect_end), slot->committed_end - protect_end) ==
          0)
        slot->committed_end = protect_end;
    }
  }
  // used_bytes() promises the whole used range is readable (padding and abandoned chunk tails
  // included, all zero): tell ASan so, now that nothing more can be allocated.
  detail::asan_unpoison(reinterpret_cast<void*>(slot->base), used_end - slot->base);
  if (slot->populate)  // best effort: a failure costs page faults later, nothing else
    (void)os::populate_read(reinterpret_cast<void*>(slot->base),
                            detail::round_up(used_end, os::page_size()) - slot->base);
  slot->ticket.store(detail::next_ticket(), std::memory_order_relaxed);
  slot->frozen.store(true, std::memory_order_release);
  detail::registry::publish_frozen(detail::registry::range_of(slot), used_end);
}

void arena::add_freeze_check(freeze_check_fn check, const void* object) {
  arena_slot* slot = detail::checked_slot(core_);
  detail::internal_memory internal;  // the list grows under the arena's lock
  std::lock_guard lock(slot->mu);
  if (slot->frozen.load(std::memory_order_relaxed))
    throw frozen_error(std::string("permafrost::arena '") + slot->name +
                       "': add_freeze_check after freeze()");
  if (slot->run_freeze_checks) slot->freeze_checks.emplace_back(check, object);
}

bool arena::freeze_checks_enabled() const noexcept {
  if (core_ == &detail::g_dead_arena) return false;
  return static_cast<const arena_slot*>(core_)->run_freeze_checks;
}

void arena::prefault(std::size_t bytes) {
  arena_slot* slot = detail::checked_slot(core_);
  detail::internal_memory internal;
  std::lock_guard lock(slot->mu);
  if (slot->frozen.load(std::memory_order_relaxed))
    throw frozen_error(std::string("permafrost::arena '") + slot->name +
                       "': prefault after freeze()");
  if (detail::inherited_unfrozen_memfd(slot))
    return;  // the parent's pages: not this process's to fault
  const std::size_t page = os::page_size();
  const detail::bump_cache& c = detail::t_bump;
  const std::uintptr_t from =
      detail::cache_is_ours(c, slot) && c.end == slot->bump ? c.cur : slot->bump;
  const std::size_t wanted = std::min<std::size_t>(bytes, slot->limit - from);
  // Populating is not lazy: more than the machine's memory (prefault(SIZE_MAX) on a default
  // 64 GiB arena) ends with the OOM killer, not an error. Refused before anything is committed.
  if (std::size_t physical = 0; os::physical_memory(&physical) == 0 && wanted > physical)
    throw std::system_error(ENOMEM, std::generic_category(),
                            std::string("permafrost::arena::prefault of arena '") + slot->name +
                                "': " + std::to_string(wanted) +
                                " bytes (clamped to the capacity) exceed this machine's physical "
                                "memory (" +
                                std::to_string(physical) + " bytes)");
  const std::uintptr_t to = from + wanted;
  int err = detail::ensure_committed(slot, to);
  for (std::uintptr_t p = from & ~(page - 1); err == 0 && p < to; p += std::size_t{64} << 20) {
    const std::size_t n = std::min<std::uintptr_t>(to - p, std::size_t{64} << 20);
    err = os::populate_write(reinterpret_cast<void*>(p), n);
    if (err == EINVAL) {  // before Linux 5.14: touch each page (the bytes are still zero)
      // Only pages wholly beyond `from`: the first may hold other threads' objects.
      for (std::uintptr_t q = std::max(p, detail::round_up(from, page)); q < p + n; q += page)
        *reinterpret_cast<volatile char*>(q) = 0;
      err = 0;
    }
  }
  if (err != 0)
    throw std::system_error(err, std::generic_category(), "permafrost::arena::prefault");
}

bool arena::frozen() const noexcept {
  if (core_ == &detail::g_dead_arena) return false;
  return static_cast<const arena_slot*>(core_)->frozen.load(std::memory_order_acquire);
}

namespace {

// The end of what this arena has handed out, as the calling thread sees it: the bump pointer,
// less the thread's own unused chunk tail when that tail is the last thing carved.
std::uintptr_t handed_out_end(const arena_slot* slot) noexcept {
  const detail::bump_cache& c = detail::t_bump;
  if (detail::cache_is_ours(c, slot) && c.end == slot->bump) return c.cur;
  return slot->bump;
}

}  // namespace

bool arena::contains(const void* p) const noexcept {
  if (core_ == &detail::g_dead_arena) return false;
  const auto* slot = static_cast<const arena_slot*>(core_);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::lock_guard lock(slot->mu);
  return a >= slot->base && a < handed_out_end(slot);
}

std::span<const std::byte> arena::used_bytes() const noexcept {
  if (core_ == &detail::g_dead_arena) return {};
  const auto* slot = static_cast<const arena_slot*>(core_);
  std::lock_guard lock(slot->mu);
  return {reinterpret_cast<const std::byte*>(slot->base), handed_out_end(slot) - slot->base};
}

arena_stats arena::stats() const {
  const arena_slot* slot = detail::checked_slot(core_);
  arena_stats s;
  std::lock_guard lock(slot->mu);
  s.reserved = slot->reserved;
  s.committed = slot->committed_end - slot->base;
  s.used = handed_out_end(slot) - slot->base;
  s.allocations = slot->allocations.load(std::memory_order_relaxed);
  s.lost_to_alignment = slot->lost.load(std::memory_order_relaxed);
  const detail::bump_cache& c = detail::t_bump;
  if (detail::cache_is_ours(c, slot)) {
    s.allocations += c.count;
    s.lost_to_alignment += c.lost;
  }
  s.frozen = slot->frozen.load(std::memory_order_relaxed);
  return s;
}

std::size_t arena::huge_page_bytes() const {
  const arena_slot* slot = detail::checked_slot(core_);
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  {
    std::lock_guard lock(slot->mu);
    begin = slot->base;
    end = slot->committed_end;
  }
  if (end <= begin) return 0;
  detail::internal_memory internal;
  std::uint64_t huge = 0;
  const char* field = slot->fd >= 0 ? "ShmemPmdMapped" : "AnonHugePages";
  if (const int err = os::smaps_field_in_range(0, begin, end, field, &huge); err != 0)
    throw std::system_error(err, std::generic_category(),
                            "permafrost::arena::huge_page_bytes: smaps");
  return static_cast<std::size_t>(huge);
}

std::string_view arena::name() const noexcept {
  if (core_ == &detail::g_dead_arena) return {};
  return static_cast<const arena_slot*>(core_)->name;
}

std::pmr::memory_resource* arena::resource() const noexcept {
  if (core_ == &detail::g_dead_arena) return nullptr;
  return &static_cast<arena_slot*>(core_)->resource;
}

std::vector<allocation_record> arena::allocation_log() const {
  const arena_slot* slot = detail::checked_slot(core_);
  detail::internal_memory internal;  // copied under the arena's lock
  std::lock_guard lock(slot->mu);
  return slot->log;
}

void arena::check_invariants() const {
  const arena_slot* slot = detail::checked_slot(core_);
  std::lock_guard lock(slot->mu);
  const auto& space = detail::g_address_space;
  PERMAFROST_CHECK(slot->in_use, "arena record not in use");
  PERMAFROST_CHECK(slot->base % detail::granule_size == 0, "arena base not granule-aligned");
  PERMAFROST_CHECK(slot->base <= slot->bump && slot->bump <= slot->limit,
                   "bump pointer outside the arena");
  PERMAFROST_CHECK(slot->limit <= slot->base + slot->reserved, "limit beyond the reservation");
  PERMAFROST_CHECK(slot->bump <= slot->committed_end || slot->bump == slot->base,
                   "bump pointer beyond the committed range");
  PERMAFROST_CHECK(slot->committed_end <= slot->base + slot->reserved,
                   "committed range beyond the reservation");
  const std::size_t first =
      (slot->base - space.base.load(std::memory_order_relaxed)) >> detail::granule_shift;
  const bool frozen = slot->frozen.load(std::memory_order_relaxed);
  PERMAFROST_CHECK(!slot->attached || frozen, "an attached arena is not frozen");
  const std::size_t count = slot->outside_space ? 0 : detail::granules_in(slot->reserved);
  for (std::size_t i = first; i < first + count; ++i) {
    PERMAFROST_CHECK(space.granules[i].owner.load() == slot, "granule not owned by its arena");
    PERMAFROST_CHECK(space.granules[i].frozen_end.load() == (frozen ? slot->bump : 0),
                     "granule frozen_end disagrees with the arena");
  }
  const detail::bump_cache& c = detail::t_bump;
  if (detail::cache_is_ours(c, slot)) {
    PERMAFROST_CHECK(!frozen, "a thread cache serves a frozen arena");
    PERMAFROST_CHECK(slot->base <= c.cur && c.cur <= c.end && c.end <= slot->bump,
                     "thread chunk outside the carved range");
  }
  if (slot->log_allocations) {
    std::size_t prev_end = 0;
    for (const auto& r : slot->log) {
      PERMAFROST_CHECK(r.offset >= prev_end, "allocation log out of order or overlapping");
      prev_end = r.offset + r.size;
    }
    PERMAFROST_CHECK(slot->base + prev_end <= slot->bump, "allocation log beyond the bump pointer");
  }
}

}  // namespace permafrost
