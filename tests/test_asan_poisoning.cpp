// Under AddressSanitizer the arena tells ASan which bytes are handed out: committed but
// unallocated bytes are poisoned, each allocation unpoisons its own bytes, and freeze unpoisons
// the used range (used_bytes() promises it is readable). Built only under ASan
// (tests/CMakeLists.txt): without it there is nothing to check.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>

#include <thread>

#include "arenas.hpp"
#include "fork_probe.hpp"

#ifndef PERMAFROST_ASAN
#error "test_asan_poisoning checks ASan's shadow memory: build it with -fsanitize=address"
#endif

#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sys/wait.h>

using permafrost::arena;

namespace {

arena arena_for_test() {
  return arena(permafrost::test::arena_options_for("asan", {.small_pages = true}));
}

bool poisoned(const void* p) { return __asan_address_is_poisoned(p) != 0; }

}  // namespace

TEST_CASE("ASan: an allocation is addressable, the bytes after it are poisoned") {
  arena a = arena_for_test();
  auto* p = static_cast<char*>(a.allocate(24, 16));  // fast path after the first refill
  auto* q = static_cast<char*>(a.allocate(40, 16));
  CHECK_FALSE(poisoned(p));
  CHECK_FALSE(poisoned(p + 23));
  CHECK(poisoned(p + 24));  // alignment padding between p and q
  CHECK_FALSE(poisoned(q + 39));
  CHECK(poisoned(q + 40));  // the unused rest of this thread's chunk
  CHECK(poisoned(q + 4096));
  auto* logged = static_cast<char*>(a.allocate(8, 8, "tagged"));  // the slow path
  CHECK_FALSE(poisoned(logged + 7));
}

TEST_CASE("ASan: a read past an allocation is reported as use-after-poison") {
  arena a = arena_for_test();
  auto* p = static_cast<volatile char*>(a.allocate(32, 16));
  const auto out = permafrost::test::run_capturing_stderr([&] {
    // This report is the expected outcome: send it to the captured stderr, not to the log files
    // that .ci/run requires to stay empty.
    __sanitizer_set_report_path("stderr");
    (void)p[40];
  });
  CHECK(WIFEXITED(out.status) != 0);
  CHECK(WEXITSTATUS(out.status) != 0);
  CHECK(out.stderr_text.find("use-after-poison") != std::string::npos);
}

TEST_CASE("ASan: another thread's chunk tail stays poisoned; freeze unpoisons the used range") {
  arena a = arena_for_test();
  char* theirs = nullptr;
  std::thread([&] { theirs = static_cast<char*>(a.allocate(100, 16)); }).join();
  auto* mine = static_cast<char*>(a.allocate(100, 16));
  CHECK(poisoned(theirs + 100));
  CHECK(poisoned(mine + 100));
  a.freeze();
  const auto used = a.used_bytes();
  CHECK_FALSE(poisoned(theirs + 100));
  CHECK_FALSE(poisoned(used.data() + used.size() - 1));
  CHECK(poisoned(used.data() + used.size()));
}
