// Exit: frozen objects are never destroyed, so a worker that exits normally — running its atexit
// handlers and static destructors — writes no frozen page.
//
// How it is measured: a page's copy-on-write copy can only be seen in pagemap while the process
// still exists. Each child arms a hook that stops it (SIGSTOP) from the executable's last
// destructor, which runs after every atexit handler and every C++ static destructor of the
// executable (those are __cxa_atexit entries registered after libc registered _dl_fini, so they
// run before it; the hook is a priority-101 .fini_array entry that _dl_fini runs last among the
// executable's). While the children are stopped the parent compares their pages with its own,
// then resumes them and checks they exit with status 0. What runs after the hook is the C
// library's own teardown (shared libraries' destructors, stdio flush), which touches no user data.
// A control page of ordinary inherited heap, written by a static destructor in each child, shows
// the measurement sees exit-time writes.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/containers.hpp>
#include <permafrost/frozen_allocator.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "fork_probe.hpp"

using permafrost::arena;
using permafrost::arena_options;
using permafrost::frozen_allocator;

namespace {

volatile sig_atomic_t g_stop_at_exit = 0;

[[gnu::destructor(101)]] void stop_before_teardown() {
  if (g_stop_at_exit != 0) ::raise(SIGSTOP);
}

using fstring = std::basic_string<char, std::char_traits<char>, frozen_allocator<char>>;
using fvector = std::vector<std::uint64_t, frozen_allocator<std::uint64_t>>;
struct fhash {
  std::size_t operator()(const fstring& s) const noexcept {
    return std::hash<std::string_view>()(std::string_view(s));
  }
};
using fmap = std::unordered_map<fstring, fvector, fhash, std::equal_to<fstring>,
                                frozen_allocator<std::pair<const fstring, fvector>>>;

struct frozen_data {
  fmap* map = nullptr;  // std::unordered_map over frozen_allocator, never destroyed
  fvector* numbers = nullptr;
  const permafrost::hash_map<permafrost::string, std::uint64_t>* index = nullptr;
  const permafrost::sorted_map<permafrost::string, std::uint64_t>* ordered = nullptr;
};

frozen_data build(arena& a, int entries) {
  frozen_data d;
  frozen_allocator<char> alloc(a);
  d.map = a.make<fmap>(16, fhash(), std::equal_to<fstring>(), alloc);
  for (int i = 0; i < entries; ++i) {
    fstring key("key-number-" + std::to_string(i) + "-long-enough-to-leave-sso", alloc);
    fvector v(alloc);
    for (int j = 0; j < 8; ++j) v.push_back(static_cast<std::uint64_t>(i) * 8 + j);
    d.map->emplace(std::move(key), std::move(v));
  }
  d.numbers = a.make<fvector>(alloc);
  for (int i = 0; i < 100000; ++i) d.numbers->push_back(static_cast<std::uint64_t>(i) * 3);
  permafrost::hash_map_builder<permafrost::string, std::uint64_t> hb(a);
  permafrost::sorted_map_builder<permafrost::string, std::uint64_t> sb(a);
  for (int i = 0; i < entries; ++i) {
    const std::string key = "entry-" + std::to_string(i);
    hb.insert(key, static_cast<std::uint64_t>(i));
    sb.insert(key, static_cast<std::uint64_t>(i) * 2);
  }
  d.index = &hb.finish();
  d.ordered = &sb.finish();
  return d;
}

std::uint64_t checksum(const frozen_data& d) {
  std::uint64_t sum = 0;
  for (const auto& [k, v] : *d.map) {
    sum += k.size();
    for (auto x : v) sum += x;
  }
  for (auto x : *d.numbers) sum += x;
  for (const auto& e : *d.index) sum += e.value() + e.key().size();
  for (const auto& e : *d.ordered) sum += e.value();
  return sum;
}

// Reads the frozen data when destroyed, as a server's static objects might at exit.
struct exit_reader {
  const frozen_data* data;
  std::uint64_t expected;
  unsigned char* control;
  ~exit_reader() {
    if (checksum(*data) != expected) ::_exit(21);
    control[0] = 1;  // the control write: an ordinary inherited heap page, copied at exit
  }
};

const frozen_data* g_data = nullptr;
std::uint64_t g_expected = 0;

void atexit_reader() {
  if (checksum(*g_data) != g_expected) ::_exit(22);
}

}  // namespace

TEST_CASE("8 workers exit normally with frozen containers alive: 0 frozen pages copied") {
  arena_options o;
  o.capacity = std::size_t{256} << 20;
  o.name = "exit";
  arena a(o);
  const frozen_data data = build(a, 20000);
  const std::uint64_t expected = checksum(data);
  a.freeze();
  const auto range = a.used_bytes();
  REQUIRE(range.size() > (std::size_t{1} << 20));
  auto control = std::make_unique<unsigned char[]>(3 * 4096);
  auto* control_page = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<std::uintptr_t>(control.get()) + 4095) & ~std::uintptr_t{4095});
  std::memset(control_page, 7, 4096);  // present in the parent before the fork
  g_data = &data;
  g_expected = expected;

  std::fflush(nullptr);  // or every child's exit flushes the parent's pending output again
  std::vector<pid_t> pids;
  for (int i = 0; i < 8; ++i) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      g_stop_at_exit = 1;
      if (checksum(data) != expected) ::_exit(20);
      std::atexit(atexit_reader);
      static exit_reader reader{&data, expected, control_page};  // destroyed by exit()
      (void)reader;
      std::exit(0);  // a normal exit: atexit handlers, static destructors, then the hook
    }
    pids.push_back(pid);
  }

  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR) {}
    REQUIRE_MESSAGE(WIFSTOPPED(status), "child ended before its exit hook: status " << status);
    const auto frozen = permafrost::test::compare_pages(pid, range);
    const auto ctl = permafrost::test::compare_pages(
        pid, {reinterpret_cast<const std::byte*>(control_page), 4096});
    CHECK(frozen.child_present > 0);  // the child read the frozen data
    CHECK(frozen.copied == 0);
    CHECK(ctl.copied == 1);  // the measurement does see what the exit path wrote
    ::kill(pid, SIGCONT);
  }
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "status " << status);
  }
}
