// permafrost — the frozen arena.
//
// Contract: an arena is a bump allocator over its own mapping. Objects in it are never
// deallocated one by one and their destructors never run. freeze() makes every used byte
// read-only; from then on no byte of the mapping is written again, by the library or anyone
// else, so after fork() every worker shares those pages with the parent for as long as it lives.
// A write to frozen memory kills the writer with SIGSEGV (see write_trap.hpp for a report that
// names the arena and offset).
//
// The arena's bookkeeping (bump pointer, counters, allocation log, name) lives outside its
// mapping, in process-local memory: reading, copying and counting never touch frozen pages.
//
// Thread safety: allocate()/try_allocate()/make()/copy() may be called from any number of threads
// at once before freeze(). freeze(), destruction and moves must not race any other use of the same
// arena. Readers of frozen data need no synchronisation beyond the happens-before of freeze()
// (fork() gives it to children). frozen(), contains() and is_frozen() are safe at any time.
//
// All arenas of a process are carved out of one process-wide address-space reservation, so
// is_frozen(p) is a range check and one table load: it writes nothing and takes no lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory_resource>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "permafrost/api.h"
#include "permafrost/detail/arena_fast_path.hpp"
#include "permafrost/detail/check.hpp"
#include "permafrost/error.hpp"

namespace permafrost {

// =============================================================================================
// Errors
// =============================================================================================

// Every type below is also a permafrost::error (error.hpp): catch that to take any of them.

// Thrown by allocate() (and everything that allocates) on an arena that is already frozen.
class PERMAFROST_API frozen_error : public std::logic_error, public error {
 public:
  using std::logic_error::logic_error;
  const char* what() const noexcept override { return std::logic_error::what(); }
};

// Thrown by freeze() when a registered freeze check fails (see arena::add_freeze_check); the arena
// is then left unfrozen and unchanged.
class PERMAFROST_API freeze_check_error : public std::logic_error, public error {
 public:
  using std::logic_error::logic_error;
  const char* what() const noexcept override { return std::logic_error::what(); }
};

// Thrown when a process has no room for one more arena (an image, an attached arena): a
// std::bad_alloc, so code that catches that still does, whose what() names the limit hit -
// "all 1024 arena slots are in use ..." or "no room for N bytes in this process's arena
// reservation ..." (naming the address-space limit, RLIMIT_AS, when one cut or refused the
// reservation). The C API returns ENOMEM for both.
class PERMAFROST_API arena_limit_error : public std::bad_alloc, public error {
 public:
  enum class limit {
    slots,          // every one of the 1024 slots holds a live arena, attached arena or image
    address_space,  // the process-wide reservation has no free run of granules that long, or
                    // could not be made (an address-space limit, RLIMIT_AS)
  };
  // NOLINTNEXTLINE(bugprone-throw-keyword-missing): what_ only holds the message (see below)
  arena_limit_error(limit which, const std::string& what) : which_(which), what_(what) {}
  limit which() const noexcept { return which_; }
  const char* what() const noexcept override { return what_.what(); }

 private:
  limit which_;
  std::runtime_error what_;  // holds the message; copying it cannot throw
};

class arena;

// A freeze check: inspects `object` (which lives in `a`) and returns an empty string when it is
// sound, or a description of what is wrong (e.g. a pointer that escapes the arena). Must not
// allocate in `a`.
using freeze_check_fn = std::string (*)(const void* object, const arena& a);

// =============================================================================================
// Options and statistics
// =============================================================================================

// True where transparent huge pages are in `madvise` or `always` mode (read once from /sys).
PERMAFROST_API bool huge_pages_available() noexcept;

// What memory an arena's pages are.
enum class backing {
  // Private anonymous memory (with huge pages where available). fork() copies its page tables:
  // ~13 ms per GiB with 4 KiB pages, ~0.4 ms per GiB with huge pages.
  anonymous,
  // A MAP_SHARED memfd named "permafrost:<name>" (visible in /proc/PID/maps). fork() copies no
  // page table of it, so fork costs the same whatever the arena's size; children build their
  // page tables on first touch (minor faults). freeze() seals the file against writes, growth
  // and shrinking, and arena::fd() can be sent to another process, which maps it with
  // arena::attach(). Huge pages only where the kernel gives shared memory huge pages
  // (/sys/kernel/mm/transparent_hugepage/shmem_enabled `advise`, `within_size` or `always`; the
  // default, `never`, leaves 4 KiB pages).
  // Before freeze() its pages are shared, not copied on write: a forked child must not allocate
  // from it (it would write the parent's memory); it throws std::logic_error if it tries. The
  // child gets a private read-only mapping of the file at fork (it reads what the parent writes
  // and freezes; a store of its own faults), so no process but the creator can write the file.
  memfd,
};

struct arena_options {
  // Virtual bytes reserved for the arena, rounded up to a whole page (a capacity of 1 serves
  // 4096 one-byte allocations); allocation fails with std::bad_alloc beyond that.
  // Nothing is committed up front: pages become writable in 2 MiB steps as the bump pointer
  // reaches them and are backed by memory only when first touched. Must be > 0.
  std::size_t capacity = std::size_t{64} << 30;  // 64 GiB

  // Shown in write-trap reports, permafrost-stat and (where the kernel allows naming anonymous
  // mappings) /proc/PID/maps. Cut to at most 47 bytes, never inside a UTF-8 character.
  std::string name = "permafrost";

  // Back the arena with transparent huge pages (MADV_HUGEPAGE) and round the frozen range to
  // 2 MiB so freeze() never splits one. Default: on where THP is `madvise` or `always`. For a
  // memfd arena the advice asks for shared-memory huge pages (see backing::memfd).
  bool huge_pages = huge_pages_available();

  // Keep a log of every allocation (offset, size, tag) outside the mapping, for sharing audits
  // and write-trap reports. Off by default: with it on, every allocation takes the locked path.
  bool allocation_log = false;

  // Run the checks registered with add_freeze_check() (frozen containers register one each, which
  // verifies that they point only inside the arena) in freeze(). Off, registrations are dropped
  // and cost nothing. Unset (the default), the library decides by how it was built: on when the
  // library was built without NDEBUG (a debug build), off otherwise — one answer for every
  // translation unit of a program, whatever NDEBUG each was compiled with.
  std::optional<bool> freeze_checks = std::nullopt;

  // Backing memory; see `backing`.
  permafrost::backing backing = permafrost::backing::anonymous;

  // Pre-fault the frozen range at freeze() (MADV_POPULATE_READ; one read per page before Linux
  // 5.14) so that, for an anonymous arena, forked workers inherit complete page tables and take
  // no page fault on first read — not even for bytes that were allocated but never written.
  // Costs the page-table build at freeze and a slightly slower fork. Default off.
  bool populate = false;
};

// A snapshot of an arena's counters, returned by value. Reading it reads no file (the huge-page
// figure, which comes from /proc, is arena::huge_page_bytes()).
struct arena_stats {
  std::size_t reserved = 0;   // virtual bytes set aside (capacity rounded to the granule;
                              // less under an address-space limit: see arena())
  std::size_t committed = 0;  // bytes made accessible: read-write before freeze, read-only after
  std::size_t used = 0;       // bytes from the start up to the bump pointer, padding included
  std::size_t lost_to_alignment = 0;  // padding skipped for alignment, plus chunk tails that
                                      // threads gave up when another thread's chunk followed theirs
  std::uint64_t allocations = 0;      // successful allocations (exact for the calling thread; other
                                      // threads' counts are added when they refill, exit or freeze)
  bool frozen = false;                // freeze() has completed
};

// Thrown by arena::attach() when the descriptor cannot be attached; why() says which check failed.
class PERMAFROST_API attach_error : public std::runtime_error, public error {
 public:
  enum class reason {
    not_a_memfd,    // the descriptor is not a sealable memory file
    unsealed,       // a memfd without the write/grow/shrink seals (not frozen yet?)
    foreign,        // sealed, but not a permafrost arena (name or trailer do not match)
    truncated,      // a permafrost arena whose size disagrees with its trailer
    address_taken,  // the arena's address range is in use in this process
    system,         // the kernel refused (the message has the errno)
  };
  attach_error(reason why, const std::string& what, int error = 0)
      : std::runtime_error(what), why_(why), error_(error) {}
  const char* what() const noexcept override { return std::runtime_error::what(); }
  reason why() const noexcept { return why_; }
  // The errno value behind a reason::system refusal (ENOMEM when 1024 arenas are live), or 0.
  int error() const noexcept { return error_; }

 private:
  reason why_;
  int error_;
};

// One entry of the optional allocation log (arena_options::allocation_log).
struct allocation_record {
  std::size_t offset = 0;     // from the arena's first byte
  std::size_t size = 0;       // bytes requested
  const char* tag = nullptr;  // the tag given to allocate(), or nullptr; must outlive the arena
};

// =============================================================================================
// The arena
// =============================================================================================

class PERMAFROST_API arena {
 public:
  // Effects: reserves options.capacity bytes of address space (nothing committed). Under an
  // address-space limit (RLIMIT_AS, `ulimit -v`) the process-wide reservation is cut to fit it,
  // and a capacity that does not fit there is cut to the reservation's longest free run
  // (stats().reserved says how much).
  // Throws: std::invalid_argument if capacity is 0; arena_limit_error (a std::bad_alloc) naming
  // the limit when all 1024 arena slots are in use or the arena reservation has no room for the
  // capacity or cannot be made (what() then names RLIMIT_AS when an address-space limit is the
  // cause); std::bad_alloc if the capacity exceeds what any reservation can hold.
  explicit arena(arena_options options = {});

  // Effects: unmaps the arena. Every reader must be done with its objects by then; pointers into
  // it dangle afterwards. The range stays reserved and inaccessible, and is quarantined: it is
  // not given to a new arena before 64 more arenas (or images) have been destroyed, unless the
  // reservation has no other free range, so a stray read faults rather than reads another arena's
  // data. Frozen arenas are usually simply never destroyed.
  ~arena();

  arena(arena&& other) noexcept;
  arena& operator=(arena&& other) noexcept;
  arena(const arena&) = delete;
  arena& operator=(const arena&) = delete;

  // ----- allocation ---------------------------------------------------------------------------

  // Effects: returns `bytes` bytes aligned to `align`, zero-filled (arena bytes are never reused).
  // Size 0 is served as 1 byte so every result is distinct.
  // Throws: std::bad_alloc when capacity is exhausted or bytes + align overflows;
  // std::invalid_argument when align is not a power of two or exceeds 256 MiB;
  // frozen_error after freeze().
  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t align = alignof(std::max_align_t)) {
    return detail::allocate(core_, bytes, align);
  }

  // As allocate(), and records `tag` in the allocation log when the log is on. `tag` must be a
  // string that outlives the arena (a literal).
  [[nodiscard]] void* allocate(std::size_t bytes, std::size_t align, const char* tag) {
    return detail::allocate_slow(core_, bytes, align, tag, true);
  }

  // As allocate(), but returns nullptr instead of throwing (allocate_slow with `throws` false
  // reports every failure as nullptr; the linter cannot see that flag, hence the NOLINT).
  [[nodiscard]] void* try_allocate(  // NOLINT(bugprone-exception-escape)
      std::size_t bytes, std::size_t align = alignof(std::max_align_t)) noexcept {
    if (void* p = detail::try_bump(core_, bytes, align)) [[likely]]
      return p;
    return detail::allocate_slow(core_, bytes, align, nullptr, false);
  }

  // Effects: constructs a T in the arena. Its destructor never runs.
  // Throws: as allocate(), and whatever T's constructor throws (the bytes are then lost).
  template <class T, class... A>
  [[nodiscard]] T* make(A&&... args) {
    static_assert(!std::is_array_v<T>, "use make_array<T>(n) for arrays");
    void* p = allocate(sizeof(T), alignof(T));
    return ::new (p) T(std::forward<A>(args)...);
  }

  // Effects: n value-initialised T's, contiguous, writable until freeze() (a mutable span; to copy
  // existing elements into an immutable permafrost::array, see copy_array in array.hpp).
  // n == 0 gives an empty span and allocates nothing.
  // Throws: std::bad_alloc when n * sizeof(T) overflows; otherwise as allocate().
  template <class T>
  [[nodiscard]] std::span<T> make_array(std::size_t n) {
    static_assert(std::is_default_constructible_v<T>,
                  "make_array<T> value-initialises its elements");
    if (n == 0) return {};
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
    T* first = static_cast<T*>(allocate(n * sizeof(T), alignof(T)));
    // Arena bytes are never reused, so they are still the kernel's zero pages: value-initialising
    // a trivial type needs no store (and touches no page the caller does not touch itself).
    if constexpr (!std::is_trivially_default_constructible_v<T>) {
      for (std::size_t i = 0; i < n; ++i) ::new (static_cast<void*>(first + i)) T();
    }
    return {first, n};
  }

  // Effects: copies s into the arena, followed by a NUL so .data() is also a C string.
  // Throws: as allocate().
  [[nodiscard]] std::string_view copy(std::string_view s) {
    char* p = static_cast<char*>(allocate(s.size() + 1, 1));
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return {p, s.size()};
  }

  // Effects: makes the next `bytes` bytes after what has been handed out writable and backed
  // now, in one system call per 64 MiB (MADV_POPULATE_WRITE, huge pages where enabled), so the
  // allocations that fill them take no page fault. For loaders that know their size: faulting
  // page by page costs a trap per page. Clamped to the capacity; more than the machine's
  // physical memory after clamping (prefault(SIZE_MAX) on a default 64 GiB arena) is refused
  // before anything is committed: populating it would end with the OOM killer.
  // Throws: frozen_error after freeze(); std::system_error with ENOMEM when the clamped size
  // exceeds physical memory; std::system_error if the kernel refuses the memory.
  void prefault(std::size_t bytes);

  // ----- freezing -----------------------------------------------------------------------------

  // Effects: makes every used byte read-only (the range rounded up to 2 MiB with huge pages, to
  // the page otherwise) and returns the committed tail beyond it to the kernel. Idempotent.
  // Afterwards allocate() throws frozen_error and try_allocate() returns nullptr.
  // Throws: std::system_error if the kernel refuses mprotect (the arena stays unfrozen);
  // freeze_check_error if a registered freeze check fails (the arena stays unfrozen).
  void freeze();

  // Effects: when arena_options::freeze_checks is on, freeze() will call check(object, *this)
  // before protecting the arena; otherwise nothing. `object` must live as long as the arena.
  // Throws: std::bad_alloc; frozen_error after freeze().
  void add_freeze_check(freeze_check_fn check, const void* object);

  // True when this arena runs freeze checks (arena_options::freeze_checks).
  bool freeze_checks_enabled() const noexcept;

  bool frozen() const noexcept;

  // True when p lies in [first byte, bump pointer): memory this arena has handed out.
  bool contains(const void* p) const noexcept;

  // ----- sharing with other processes ---------------------------------------------------------

  // The memfd behind a memfd-backed arena (owned by the arena, close-on-exec), or -1 for an
  // anonymous arena. After freeze() it may be sent to any process (SCM_RIGHTS) for attach().
  // Also -1 when the program closed the descriptor behind the arena's back: the number is
  // checked (fstat: device and inode) against the memfd the arena made, since it may name
  // another file by now, which a receiver would otherwise attach to (and the arena's
  // destruction then leaves that file open).
  int fd() const noexcept;

  // Effects: maps the frozen memfd arena `fd` read-only at the address it has in its creator, so
  // its pointers are valid here. The descriptor is duplicated; the caller keeps its own.
  // The result is frozen; contains() answers for its bytes; is_frozen() answers for them too
  // when the range could be placed in this process's arena reservation (always when attach() is
  // the first arena operation of the process, or when that range is free in its reservation).
  // With populate, pre-faults the whole range (no page fault on first read).
  // Throws: attach_error naming the cause: not a memfd, unsealed (F_SEAL_WRITE missing: not
  // frozen, or a process still maps it writable), not a permafrost arena, truncated, the address
  // range is taken in this process, or a system refusal (error() has the errno; ENOMEM with 1024
  // arenas live).
  static arena attach(int fd, bool populate = false);

  // Effects: pre-faults this process's page tables for the used range (see
  // arena_options::populate). For workers of a memfd arena, whose page tables fork does not
  // copy. In a worker of an anonymous huge-page arena it also marks the entries fork copied as
  // accessed (0.1-0.3 ms per GiB), which on some virtual machines makes the first full read
  // several times faster (docs/design.md, "A slow first read with no fault"). Best effort:
  // never fails.
  void populate() const noexcept;

  // ----- inspection ---------------------------------------------------------------------------

  // Effects: a snapshot of the counters. Reads no file, makes no system call.
  arena_stats stats() const;
  // Effects: bytes of the arena's mapping backed by transparent huge pages (AnonHugePages, or
  // ShmemPmdMapped for a memfd arena, read from /proc/self/smaps: a file read per call,
  // O(mappings)).
  // Throws: std::system_error when smaps cannot be read.
  std::size_t huge_page_bytes() const;
  std::string_view name() const noexcept;
  // The bytes handed out so far: [first byte, bump pointer).
  std::span<const std::byte> used_bytes() const noexcept;
  // A std::pmr::memory_resource over this arena (deallocate does nothing). Stays valid when the
  // arena object is moved; dies with the arena.
  std::pmr::memory_resource* resource() const noexcept;
  // A copy of the allocation log (empty unless arena_options::allocation_log).
  std::vector<allocation_record> allocation_log() const;

  // Checks the arena's internal invariants; aborts with a message when one is broken. For tests.
  void check_invariants() const;

  // The stable record behind this handle (for allocators and resources that must survive moves).
  detail::arena_core* core() const noexcept { return core_; }

 private:
  explicit arena(detail::arena_core* core) noexcept : core_(core) {}
  detail::arena_core* core_;
};

// True when p lies in the used range of a frozen arena of this process. O(1), lock-free, writes
// nothing; safe in signal handlers and from any thread.
inline bool is_frozen(const void* p) noexcept {
  // Branch-free, so a mix of frozen and other pointers costs no branch mispredictions.
  bool inside = false;
  const detail::granule_entry& g = detail::granule_of(p, inside);
  return inside &
         (reinterpret_cast<std::uintptr_t>(p) < g.frozen_end.load(std::memory_order_acquire));
}

}  // namespace permafrost
