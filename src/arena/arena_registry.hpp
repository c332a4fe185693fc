// permafrost — the arena registry (internal): the one owner of the process-wide address-space
// reservation, the slot table and granule ownership.
//
// All arenas of a process (made, attached, or an image mapped by another subsystem) live in one
// reservation carved into 256 MiB granules. The registry reserves it on first use (never before
// main), hands out runs of granules, publishes a run as frozen (is_frozen() and the write trap
// read that lock-free), and takes runs back. A released run stays reserved and inaccessible
// (PROT_NONE): a stale pointer into it faults. A released run is quarantined: it is not handed
// out again before 64 more runs have been released (or the reservation has no other free run);
// after that it is reused before never-used granules, so churn touches bounded address space
// (see claim()).
//
// Locking: the registry lock guards slot in_use flags and granule ownership. Order: registry
// lock, then an arena's own lock (arena_slot::mu), then the process heap's lock. The lookups
// (slot_of, is_frozen) take no lock. From the first reservation on, the registry's stage of the
// fork lifecycle holds the lock across fork(2), so no child inherits it held by a thread that
// does not exist in the child.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "arena/arena_slot.hpp"

namespace permafrost::detail {

// The innermost arena_scope's arena on this thread, or nullptr: the malloc library routes the
// thread's plain allocations there (src/malloc). Defined here, below the malloc library, because
// internal_memory (next) suspends it in every target.
extern constinit thread_local arena_core* t_scope_target __attribute__((tls_model("initial-exec")));

// x rounded up to a multiple of `to` (a power of two).
constexpr std::uintptr_t round_up(std::uintptr_t x, std::size_t to) noexcept {
  return (x + to - 1) & ~(static_cast<std::uintptr_t>(to) - 1);
}

// Turns off this thread's arena_scope routing for its lifetime: the library's own memory
// (allocation log, freeze-check list, exception messages) must never come from an arena. Every
// public entry point that may allocate while holding a lock makes one.
class internal_memory {
 public:
  internal_memory() noexcept : saved_(t_scope_target) { t_scope_target = nullptr; }
  ~internal_memory() { t_scope_target = saved_; }
  internal_memory(const internal_memory&) = delete;
  internal_memory& operator=(const internal_memory&) = delete;

 private:
  arena_core* saved_;
};

// The length of the longest prefix of `s` of at most `max` bytes that does not end inside a UTF-8
// character: a name cut to fit its slot (or a memfd name) stays valid UTF-8 when it was. Bytes
// that are not UTF-8 are cut at `max`.
constexpr std::size_t utf8_prefix_length(std::string_view s, std::size_t max) noexcept {
  if (s.size() <= max) return s.size();
  const auto byte = [&s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  if ((byte(max) & 0xc0) != 0x80) return max;  // the first byte cut off starts a character
  for (std::size_t k = max; k > 0 && max - k < 3;) {
    const unsigned char b = byte(--k);
    if ((b & 0xc0) == 0x80) continue;
    if (b < 0xc0) return max;  // a continuation byte after ASCII: not UTF-8
    const std::size_t length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
    return k + length > max ? k : max;  // the character at k would be split: cut before it
  }
  return max;
}

// Where the longest suffix of `s` of at most `max` bytes that does not start inside a UTF-8
// character begins (as utf8_prefix_length, from the other end).
constexpr std::size_t utf8_suffix_start(std::string_view s, std::size_t max) noexcept {
  if (s.size() <= max) return 0;
  std::size_t start = s.size() - max;
  for (std::size_t skipped = 0;
       skipped < 3 && start < s.size() && (static_cast<unsigned char>(s[start]) & 0xc0) == 0x80;
       ++skipped)
    ++start;
  return start;
}

// How many granules `bytes` spans (a partial one counted).
constexpr std::size_t granules_in(std::size_t bytes) noexcept {
  return (bytes >> granule_shift) + ((bytes & (granule_size - 1)) != 0 ? 1 : 0);
}

namespace registry {

// A run of granules claimed from the reservation: [base, base + bytes), bytes a multiple of
// granule_size, except for a run that ends in the partial last granule of a reservation cut by
// an address-space limit.
struct range {
  std::uintptr_t base = 0;
  std::size_t bytes = 0;
};

// The registry lock.
std::mutex& mutex() noexcept;

// Effects: installs the registry's stage of the fork lifecycle (take the lock before fork,
// release it after, in parent and child). Idempotent; safe with the lock held. Called at the
// first reservation and by every stage above that relies on the lock being held (memfd).
void join_fork_lifecycle() noexcept;

// ----- primitives (Pre: mutex() held) ----------------------------------------------------------

// Reserves the process-wide range on first use, the largest that fits (16 TiB, halved on each
// refusal down to 16 MiB; sanitizer runtimes and `ulimit -v` leave less). Under an address-space
// limit (RLIMIT_AS) at most half of what the limit leaves, in whole granules or, below one
// granule, in 2 MiB steps (the last granule then partial). With `at` != 0 it is
// placed at exactly `at` (attach() as the first arena operation of a process) and must hold at
// least `min_bytes`. Returns 0 (also when the range already exists) or an errno value.
int ensure_space(std::uintptr_t at = 0, std::size_t min_bytes = 0) noexcept;

// The error for an ensure_space() that failed with `err`; under an address-space limit its text
// names the limit (RLIMIT_AS) as the cause.
arena_limit_error reservation_failed(int err);

// A slot not in use, or nullptr when max_arenas are live.
arena_slot* free_slot() noexcept;

// The texts every error that hits a limit carries (arena_limit_error, attach_error, image_error),
// after the caller's own prefix: "all 1024 arena slots are in use (...)" and "no room for N bytes
// in this process's arena reservation (...)". Allocate (the caller holds internal_memory).
std::string no_free_slot_text();
std::string no_room_text(std::size_t bytes);
// no_room_text, or the text of reservation_failed(ENOMEM) when there is no reservation: what a
// caller that got ENOMEM from claim_frozen says. Both name an address-space limit that cut or
// refused the reservation.
std::string no_space_text(std::size_t bytes);

// When the reservation was cut by an address-space limit, the bytes of its longest free run
// (what an arena whose capacity does not fit may take instead); else 0.
std::size_t longest_free_run_under_limit() noexcept;

// Claims granules for `bytes` (> 0) and gives them to `owner`: the free run whose most recent
// release is oldest (never-used granules first; lowest address on ties). Returns 0, or ENOMEM
// when no run is long enough.
int claim(std::size_t bytes, arena_core* owner, range* out) noexcept;

// Claims the granules holding [base, base + bytes) for `owner` (base granule-aligned). Returns 0;
// ERANGE when the range lies wholly outside the reservation (the caller may map it there on its
// own); EXDEV when it straddles the reservation's edge; EEXIST when a granule is taken.
int claim_at(std::uintptr_t base, std::size_t bytes, arena_core* owner, range* out) noexcept;

// Records [r.base, end) as frozen: is_frozen() answers true for it from now on.
void publish_frozen(const range& r, std::uintptr_t end) noexcept;

// Takes a claimed run back: unpublishes it, makes it inaccessible (PROT_NONE, pages dropped)
// and quarantines it (see claim()). `used` is how many bytes from its start were ever
// accessible (under ASan they are handed back unpoisoned). Should the kernel refuse (out of
// mappings), the run stays owned by a dead record and is never handed out again with stale pages.
void release(const range& r, std::size_t used) noexcept;

// Fills a free slot for a new arena: resets counters, log, checks and tickets, copies the name
// (cut to at most 47 bytes, never inside a UTF-8 character) and marks it in use. Pre: also slot->mu
// held.
void open_slot(arena_slot* slot, std::string_view name) noexcept;

// Effects: lists the slots in use in the process's arena directory (arena_directory.hpp), so
// permafrost-stat finds them without named anonymous memory; joins the fork lifecycle, whose child
// hook gives a child a directory of its own. Call after a slot was filled or freed. Best effort,
// allocates nothing.
void directory_changed() noexcept;

// The run of granules a slot holds (empty for an arena attached outside the reservation).
range range_of(const arena_slot* slot) noexcept;

// ----- for subsystems that map their own read-only file inside the reservation (images) --------
//
// Protocol: claim_frozen(bytes) -> a slot and granules, reserved and inaccessible; the caller
// maps its file read-only with MAP_FIXED over [r.base, r.base + bytes) (os::map_file_fixed);
// publish_frozen(slot, end, name) -> is_frozen() is true for [r.base, end), the write trap names
// `name`, contains() and friends see a frozen arena; release_frozen(slot) when done (the range
// goes back to PROT_NONE, quarantined). Each takes the registry lock itself.

// Effects: claims a slot and granules for `bytes` (> 0). Returns the slot (its base is the
// range's first byte, its reserved the run's size). Throws: arena_limit_error naming the limit
// when no slot or no run of granules is free.
arena_slot* claim_frozen(std::size_t bytes);

// Effects: marks the slot frozen with [base, end) used and readable, named `name`.
// Pre: slot came from claim_frozen(); end <= base + reserved; the caller mapped [base, end).
void publish_frozen(arena_slot* slot, std::uintptr_t end, std::string_view name) noexcept;

// Effects: returns the slot's range (PROT_NONE, quarantined) and frees the slot.
// Pre: slot came from claim_frozen(); nothing uses its range any more.
void release_frozen(arena_slot* slot) noexcept;

}  // namespace registry
}  // namespace permafrost::detail
