// The fork lifecycle (src/fork): the order of the hook stages in prepare, parent and child, the
// fork epoch, and the registry's and memfd arenas' stages seen from a real fork. White-box: it
// installs hooks of its own in the stages this program (linked with permafrost::arena only, so
// no heap) leaves free, or in a child process it forks first so the table it changes dies with it.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "arena/arena_registry.hpp"
#include "arenas.hpp"
#include "child_process.hpp"
#include "fork/fork_lifecycle.hpp"

using permafrost::detail::add_fork_hooks;
using permafrost::detail::fork_epoch;
using permafrost::detail::fork_stage;

namespace {

// What the recording hooks saw, in order: one letter per hook (upper case in prepare).
char g_trace[64];
std::atomic<int> g_trace_len{0};
void record(char c) noexcept {
  const int at = g_trace_len.fetch_add(1);
  if (at < static_cast<int>(sizeof g_trace) - 1) g_trace[at] = c;
}
std::string trace() { return std::string(g_trace, static_cast<std::size_t>(g_trace_len.load())); }

// One prepare/parent/child hook per stage, each recording its stage's letter.
template <char Stage>
struct recorder {
  static void prepare() noexcept { record(Stage); }
  static void parent() noexcept { record(static_cast<char>(Stage - 'A' + 'a')); }
  static void child() noexcept { record(static_cast<char>(Stage - 'A' + 'a')); }
  static permafrost::detail::fork_hooks hooks() { return {&prepare, &parent, &child}; }
};

// Runs `work` in a forked child with a 10 s alarm (a hang fails the test instead of stalling
// it) and returns the child's wait status.
int in_child(int (*work)()) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(10);
    ::_exit(work());
  }
  return permafrost::test::wait_for(pid);
}

bool exited_zero(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

}  // namespace

TEST_CASE("stages prepare upward and finish downward, in the parent and in the child") {
  // In a child of its own: it replaces the registry's stage, which this process keeps.
  const int status = in_child([]() -> int {
    add_fork_hooks(fork_stage::heap, recorder<'H'>::hooks());
    add_fork_hooks(fork_stage::registry, recorder<'R'>::hooks());
    add_fork_hooks(fork_stage::memfd, recorder<'M'>::hooks());
    g_trace_len = 0;
    int fds[2];
    if (::pipe(fds) != 0) return 10;
    const pid_t pid = ::fork();
    if (pid < 0) return 11;
    if (pid == 0) {
      const std::string seen = trace();  // prepare's, then the child's
      (void)!::write(fds[1], seen.data(), seen.size());
      ::_exit(0);
    }
    ::close(fds[1]);
    char buf[64] = {};
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    (void)permafrost::test::wait_for(pid);
    const std::string child(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    const std::string parent = trace();
    if (child != "RMHhmr") return 20;   // prepare R, M, H; child H, M, R
    if (parent != "RMHhmr") return 21;  // prepare R, M, H; parent H, M, R
    return 0;
  });
  CHECK(exited_zero(status));
  CHECK_MESSAGE(WEXITSTATUS(status) != 20, "the child's hooks ran out of order");
  CHECK_MESSAGE(WEXITSTATUS(status) != 21, "the parent's hooks ran out of order");
}

TEST_CASE("a stage installed twice with the same hooks runs once per fork") {
  const int status = in_child([]() -> int {
    add_fork_hooks(fork_stage::heap, recorder<'H'>::hooks());
    add_fork_hooks(fork_stage::heap, recorder<'H'>::hooks());
    g_trace_len = 0;
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    (void)permafrost::test::wait_for(pid);
    return trace() == "Hh" ? 0 : 1;
  });
  CHECK(exited_zero(status));
}

TEST_CASE("the fork epoch is bumped in the child, before its hooks run, and not in the parent") {
  permafrost::detail::register_fork_lifecycle();
  static std::uint64_t before = 0;
  static std::uint64_t seen_by_child_hook = 0;
  before = fork_epoch();
  const int status = in_child([]() -> int {
    add_fork_hooks(fork_stage::heap,
                   {nullptr, nullptr, []() noexcept { seen_by_child_hook = fork_epoch(); }});
    const std::uint64_t mine = fork_epoch();
    if (mine != before + 1) return 1;  // this child is one fork further
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(seen_by_child_hook == mine + 1 && fork_epoch() == mine + 1 ? 0 : 1);
    const int grandchild = permafrost::test::wait_for(pid);
    return exited_zero(grandchild) && fork_epoch() == mine ? 0 : 2;
  });
  CHECK(exited_zero(status));
  CHECK(fork_epoch() == before);
}

namespace {

// Forks while another thread holds `lock`, taken before the fork and held for 200 ms, and runs
// `child` in the child (its result is the exit status; a hang fails after 10 s instead of
// stalling the case). Returns whether the holder had let the lock go when fork() returned in the
// parent (the fork waited for it), and the child's wait status.
template <class Lock, class Child>
std::pair<bool, int> fork_while_held(Lock& lock, Child child) {
  std::atomic<bool> holding{false};
  std::atomic<bool> released{false};
  std::atomic<bool> forked{false};
  std::thread holder([&] {
    {
      std::lock_guard held(lock);
      holding = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      released = true;
    }
    // Still running when fork() copies the process: under TSan a child that inherits a thread
    // which finished but was not joined reports a thread leak at its exit, failing the child.
    while (!forked) std::this_thread::yield();
  });
  while (!holding) std::this_thread::yield();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(10);
    ::_exit(child());
  }
  forked = true;
  const bool released_before_fork_returned = released.load();
  holder.join();
  return {released_before_fork_returned, pid < 0 ? -1 : permafrost::test::wait_for(pid)};
}

}  // namespace

TEST_CASE(
    "from the first arena on, a fork waits for the registry lock: the child can make arenas") {
  // An arena-only program (no heap, no memfd arena): before the registry had a stage of its own,
  // a fork while another thread held the lock gave a child whose first arena hung forever.
  permafrost::arena first(
      permafrost::test::arena_options_for("fork-registry", {.capacity = 1 << 20}));
  const auto [released, status] = fork_while_held(permafrost::detail::registry::mutex(), [] {
    permafrost::arena a(permafrost::test::arena_options_for("in-child", {.capacity = 1 << 20}));
    ::_exit(a.make<int>(7) != nullptr ? 0 : 1);  // as the case always did: no destructor here
    return 1;
  });
  CHECK(released);
  CHECK(exited_zero(status));
}

TEST_CASE("a fork waits for every arena's lock: the child can use an arena another thread held") {
  // A frozen anonymous arena whose lock another thread holds (as contains(), stats(), allocate()
  // or freeze() do, briefly) when main forks: before the registry's stage took every arena's
  // lock, the child inherited it held by a thread that does not exist there, and hung at its
  // first contains() of that arena (or in its destructor at exit).
  permafrost::arena a(
      permafrost::test::arena_options_for("fork-arena-lock", {.capacity = 1 << 20}));
  const int* value = a.make<int>(7);
  a.freeze();
  permafrost::detail::arena_slot* slot = permafrost::detail::slot_of(value);
  REQUIRE(slot != nullptr);
  const auto [released, status] =
      fork_while_held(slot->mu, [&] { return a.contains(value) && a.stats().frozen ? 0 : 1; });
  CHECK(released);
  CHECK(exited_zero(status));
}

TEST_CASE("a fork waits for a free slot's lock too: the child can make an arena in that slot") {
  // A thread that exits returns its chunk under the lock of its arena's slot even after that arena
  // was destroyed; a child forked meanwhile that made a new arena in the slot hung in its
  // constructor. The holder stands in for that thread.
  permafrost::detail::arena_slot* slot = nullptr;
  {
    permafrost::arena gone(
        permafrost::test::arena_options_for("fork-free-slot", {.capacity = 1 << 20}));
    slot = permafrost::detail::slot_of(gone.make<int>(1));
  }
  REQUIRE(slot != nullptr);
  const auto [released, status] = fork_while_held(slot->mu, [slot] {
    std::vector<permafrost::arena> arenas;  // kept alive, so each takes a new slot
    for (std::size_t i = 0; i < permafrost::detail::max_arenas; ++i) {
      arenas.emplace_back(permafrost::test::arena_options_for("in-child", {.capacity = 1 << 20}));
      if (permafrost::detail::slot_of(arenas.back().make<int>(2)) == slot) ::_exit(0);
    }
    return 1;  // (without destroying 1024 arenas in the child)
  });
  CHECK(released);
  CHECK(exited_zero(status));
}

namespace {

// Asks, from another thread, whether the registry lock and one arena's lock are held: the hooks
// below run inside fork's handlers, where they must neither allocate nor block, and a thread may
// not probe a std::mutex it might hold itself. Answer: 2 if the registry lock is held, plus 1 if
// the arena's is.
class lock_prober {
 public:
  explicit lock_prober(permafrost::detail::slot_mutex* arena_lock)
      : arena_lock_(arena_lock), thread_([this] { serve(); }) {}
  ~lock_prober() {
    stop_ = true;
    thread_.join();
  }
  int probe() noexcept {
    answer_ = -1;
    request_ = true;
    while (answer_.load() < 0) {}
    return answer_.load();
  }

 private:
  template <class Mutex>
  static bool held(Mutex& mu) {
    if (!mu.try_lock()) return true;
    mu.unlock();
    return false;
  }
  void serve() {
    while (!stop_) {
      if (request_.exchange(false)) {
        answer_ =
            (held(permafrost::detail::registry::mutex()) ? 2 : 0) + (held(*arena_lock_) ? 1 : 0);
      } else {
        std::this_thread::yield();
      }
    }
  }
  permafrost::detail::slot_mutex* arena_lock_;
  std::atomic<bool> request_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int> answer_{-1};
  std::thread thread_;
};

lock_prober* g_prober = nullptr;
std::atomic<int> g_held_in_prepare{-1};
std::atomic<int> g_held_in_parent{-1};
void heap_stage_prepare() noexcept { g_held_in_prepare = g_prober->probe(); }
void heap_stage_parent() noexcept { g_held_in_parent = g_prober->probe(); }

}  // namespace

TEST_CASE("the heap's stage runs inside the registry's and the memfd arenas' locks") {
  permafrost::arena a(permafrost::test::arena_options_for(
      "fork-memfd", {.capacity = 4 << 20, .backing = permafrost::backing::memfd}));
  int* value = a.make<int>(42);
  permafrost::detail::arena_slot* slot = permafrost::detail::slot_of(value);
  REQUIRE(slot != nullptr);
  lock_prober prober(&slot->mu);
  g_prober = &prober;
  REQUIRE(prober.probe() == 0);
  // The heap's stage is free in this program (it links permafrost::arena only).
  add_fork_hooks(fork_stage::heap, {&heap_stage_prepare, &heap_stage_parent, nullptr});
  const int status = in_child([]() -> int { return 0; });
  add_fork_hooks(fork_stage::heap, {});  // off again for the other cases
  g_prober = nullptr;
  CHECK(exited_zero(status));
  // Prepare: the registry's and the memfd stage's prepare ran first and hold their locks.
  // Parent: the heap's hook runs before either stage below it lets go.
  CHECK(g_held_in_prepare.load() == 3);
  CHECK(g_held_in_parent.load() == 3);
  CHECK(prober.probe() == 0);  // and both let go after the fork
}
