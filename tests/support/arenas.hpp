// Test support: the arena options the suites use, in one place. A test names its arena and says
// which of the few knobs it changes; everything else stays at the library's defaults, so a test
// exercises what a user gets unless it says otherwise.
//
//   arena a(permafrost::test::arena_options_for("trap", {.small_pages = true, .log = true}));
#pragma once

#include <permafrost/arena.hpp>

#include <cstddef>
#include <optional>

namespace permafrost::test {

inline constexpr std::size_t mib = std::size_t{1} << 20;
inline constexpr std::size_t gib = std::size_t{1} << 30;

// True in builds under AddressSanitizer or ThreadSanitizer, whose runtimes own malloc, shadow
// every access and give threads alternate signal stacks: tests whose measurement they distort
// skip with doctest::skip(under_sanitizer) or check a weaker bound and say so with MESSAGE.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool under_sanitizer = true;
#else
inline constexpr bool under_sanitizer = false;
#endif
// True under ThreadSanitizer alone, whose shadow mappings span terabytes and whose every read
// touches shadow memory: a narrower case of under_sanitizer for the tests only TSan distorts.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool under_thread_sanitizer = true;
#else
inline constexpr bool under_thread_sanitizer = false;
#endif

// The knobs tests change; each defaults to what arena_options does (except capacity: tests need
// little, and a small capacity keeps a runaway test from committing gigabytes).
struct arena_knobs {
  std::size_t capacity = 16 * mib;
  // 4 KiB pages (huge_pages = false): a copied page in a sharing measurement is one 4 KiB page,
  // not a whole 2 MiB huge page.
  bool small_pages = false;
  bool log = false;                                  // allocation_log
  std::optional<bool> freeze_checks = std::nullopt;  // unset: the library's default
  permafrost::backing backing = permafrost::backing::anonymous;
};

// Options for an arena named `name` with `knobs` applied.
inline arena_options arena_options_for(const char* name, const arena_knobs& knobs = {}) {
  arena_options o;
  o.capacity = knobs.capacity;
  o.name = name;
  if (knobs.small_pages) o.huge_pages = false;
  o.allocation_log = knobs.log;
  if (knobs.freeze_checks) o.freeze_checks = *knobs.freeze_checks;
  o.backing = knobs.backing;
  return o;
}

}  // namespace permafrost::test
