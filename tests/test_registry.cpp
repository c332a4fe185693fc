// The arena registry (src/arena/arena_registry.*): quarantine of released granules, slot
// exhaustion at 1024 live arenas, granule exhaustion, and the lock-free lookups at the edges of
// the reservation. White-box where the public API cannot see the registry's choices.
//
// Each case runs in a forked child of a process that never touched the registry, so every case
// starts from an empty registry (no reservation, release clock 0) whatever ran before it; the
// child reports each failed expectation on stderr and exits non-zero.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>

#include <cstdio>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "arena/arena_registry.hpp"
#include "arenas.hpp"
#include "fork_probe.hpp"

namespace registry = permafrost::detail::registry;
using permafrost::arena;
using permafrost::detail::granule_size;
using permafrost::detail::max_arenas;

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what) {
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "FAILED: %s\n", what.c_str());
}

std::size_t reservation_bytes() {
  return permafrost::detail::g_address_space.size.load(std::memory_order_relaxed);
}

// The child's exit status when the reservation is smaller than the case needs.
constexpr int reservation_too_small = 77;

// Runs `body` in a forked child on a fresh registry; passes when it met every expectation. A case
// that needs `granules` granules of reservation (0: the case must start with none) is not run
// where the process got fewer - sanitizer runtimes and `ulimit -v` leave less than 16 TiB - and
// says so.
void in_fresh_registry(std::size_t granules, const std::function<void()>& body) {
  const permafrost::test::child_output out = permafrost::test::run_capturing_stderr([&] {
    g_failures = 0;
    if (granules != 0) {
      std::lock_guard lock(registry::mutex());
      expect(registry::ensure_space() == 0, "the reservation is made");
      if (reservation_bytes() / granule_size < granules) {
        std::fprintf(stderr, "the reservation has %zu granules, the case needs %zu\n",
                     reservation_bytes() / granule_size, granules);
        std::fflush(stderr);
        ::_exit(reservation_too_small);
      }
    }
    body();
    std::fflush(stderr);
    ::_exit(g_failures == 0 ? 0 : 1);
  });
  INFO(out.stderr_text);
  REQUIRE(WIFEXITED(out.status));
  if (WEXITSTATUS(out.status) == reservation_too_small) {
    MESSAGE("not checked in this process: " << out.stderr_text);
    return;
  }
  CHECK(WEXITSTATUS(out.status) == 0);
}

// An owner for granules claimed directly (the registry only stores the pointer).
permafrost::detail::arena_core g_owner;

registry::range claim(std::size_t bytes) {
  std::lock_guard lock(registry::mutex());
  registry::range r;
  if (registry::ensure_space() != 0 || registry::claim(bytes, &g_owner, &r) != 0) return {};
  return r;
}

void release(const registry::range& r) {
  std::lock_guard lock(registry::mutex());
  registry::release(r, 0);
}

arena small_arena(const char* name) {
  return arena(permafrost::test::arena_options_for(name, {.capacity = 1 << 20}));
}

}  // namespace

TEST_CASE("a released run waits out 64 releases, then is reused before fresh address space") {
  in_fresh_registry(66, [] {
    const registry::range first = claim(1);
    expect(first.bytes == granule_size, "a 1-byte claim takes one granule");
    release(first);
    // 64 more claim-and-release rounds: each gets a granule never used before.
    for (int i = 1; i <= 64; ++i) {
      const registry::range r = claim(1);
      expect(r.base != first.base, "round " + std::to_string(i) + " reused the quarantined run");
      expect(r.base == first.base + i * granule_size,
             "round " + std::to_string(i) + " took the lowest fresh granule");
      release(r);
    }
    // The first run has now seen 64 later releases: it is taken again, ahead of fresh granules.
    const registry::range again = claim(1);
    expect(again.base == first.base, "after 64 releases the oldest released run is reused");
    release(again);
  });
}

TEST_CASE("when no other run is free, a quarantined run is reused at once") {
  in_fresh_registry(2, [] {
    // Fill the reservation but for one granule, then release a run and ask for one of its size.
    const registry::range most = claim(reservation_bytes() - granule_size);
    expect(most.bytes == reservation_bytes() - granule_size, "all but one granule claimed");
    const registry::range last = claim(1);
    expect(last.bytes == granule_size, "the last granule claimed");
    release(last);
    const registry::range reused = claim(1);
    expect(reused.base == last.base, "the just-released run is the only one, and is reused");
    release(reused);
    release(most);
  });
}

TEST_CASE("granule exhaustion: an arena larger than any free run is refused and claims nothing") {
  in_fresh_registry(8, [] {
    arena first = small_arena("registry-first");  // makes the reservation
    // Leave two granules free, not next to each other: no run of two exists.
    const std::size_t free_granules = reservation_bytes() / granule_size - 1;
    const std::size_t low_granules = (free_granules - 2) / 2;
    const registry::range low = claim(low_granules * granule_size);
    const registry::range hole1 = claim(1);
    const registry::range high = claim((free_granules - 2 - low_granules) * granule_size);
    const registry::range hole2 = claim(1);
    expect(hole1.bytes == granule_size && hole2.bytes == granule_size && low.bytes != 0 &&
               high.bytes != 0,
           "the reservation is laid out as planned");
    release(hole1);
    release(hole2);
    bool refused = false;
    try {
      arena two(
          permafrost::test::arena_options_for("registry-two", {.capacity = 2 * granule_size}));
    } catch (const std::bad_alloc&) {
      refused = true;
    }
    expect(refused, "an arena of two granules is refused with std::bad_alloc");
    // Nothing was claimed by the refusal: both single granules still serve an arena each.
    arena a = small_arena("registry-a");
    arena b = small_arena("registry-b");
    expect(a.allocate(8) != nullptr && b.allocate(8) != nullptr, "both free granules serve");
    bool full = false;
    try {
      arena c = small_arena("registry-c");
    } catch (const std::bad_alloc&) {
      full = true;
    }
    expect(full, "with every granule taken, the next arena is refused");
  });
}

TEST_CASE("slot exhaustion: the 1025th live arena is refused; destroying one makes room") {
  in_fresh_registry(max_arenas + 2, [] {
    std::vector<arena> live;
    live.reserve(max_arenas);
    for (std::size_t i = 0; i < max_arenas; ++i) live.push_back(small_arena("registry-slot"));
    bool refused = false;
    try {
      arena extra = small_arena("registry-extra");
    } catch (const std::bad_alloc&) {
      refused = true;
    }
    expect(refused, "arena 1025 is refused with std::bad_alloc");
    // Images share the slot table.
    bool image_refused = false;
    try {
      (void)registry::claim_frozen(1);
    } catch (const std::bad_alloc&) {
      image_refused = true;
    }
    expect(image_refused, "a frozen mapping (an image) finds no slot either");
    live.pop_back();
    arena again = small_arena("registry-again");
    expect(again.allocate(8) != nullptr, "a destroyed arena's slot serves a new one");
  });
}

TEST_CASE("lookups at the edges: outside the reservation nothing is frozen or owned") {
  in_fresh_registry(0, [] {
    // Before the first arena there is no reservation: every address is outside.
    static int local = 0;
    expect(!permafrost::is_frozen(&local), "no reservation yet: not frozen");
    expect(permafrost::detail::slot_of(&local) == nullptr, "no reservation yet: no slot");

    arena a = small_arena("registry-edges");
    char* p = static_cast<char*>(a.allocate(4096, 4096));
    a.freeze();
    const std::uintptr_t base = permafrost::detail::g_address_space.base.load();
    const std::uintptr_t end = base + reservation_bytes();
    expect(permafrost::is_frozen(p) && permafrost::is_frozen(p + 4095),
           "the used bytes are frozen");
    expect(!permafrost::is_frozen(p + 4096), "one past the used bytes is not");
    expect(permafrost::detail::slot_of(p + 4096) != nullptr, "but still in the arena's slot");
    for (std::uintptr_t q :
         {base - 1, end, end + granule_size, std::uintptr_t{0}, ~std::uintptr_t{0}}) {
      const void* ptr = reinterpret_cast<const void*>(q);
      expect(!permafrost::is_frozen(ptr), "outside the reservation: not frozen");
      expect(permafrost::detail::slot_of(ptr) == nullptr, "outside the reservation: no slot");
    }
  });
}

TEST_CASE("claim_frozen, publish_frozen, release_frozen: frozen exactly up to the published end") {
  in_fresh_registry(1, [] {
    permafrost::detail::arena_slot* slot = registry::claim_frozen(3 * 4096);
    const std::uintptr_t base = slot->base;
    expect(!permafrost::is_frozen(reinterpret_cast<void*>(base)), "claimed, not yet published");
    registry::publish_frozen(slot, base + 4096 + 100, "registry-image");
    expect(permafrost::is_frozen(reinterpret_cast<void*>(base + 4096 + 99)), "last published byte");
    expect(!permafrost::is_frozen(reinterpret_cast<void*>(base + 4096 + 100)), "one past the end");
    expect(std::string(slot->name) == "registry-image", "the write trap's name is set");
    registry::release_frozen(slot);
    expect(!permafrost::is_frozen(reinterpret_cast<void*>(base)), "released: not frozen");
    expect(permafrost::detail::slot_of(reinterpret_cast<void*>(base)) == nullptr,
           "released: no owner");
  });
}
