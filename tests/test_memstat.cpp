// memstat and permafrost-stat against known allocations, on the real kernel.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <pthread.h>
#include <string>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arenas.hpp"
#include "fork_probe.hpp"
#include "permafrost/memstat.hpp"

using namespace permafrost;

namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;

// A child that has exited and been reaped: its pid names no process (until reused, which the
// kernel does only after wrapping around pid_max).
pid_t vanished_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

// Runs a shell command, returns (exit status, stdout+stderr).
std::pair<int, std::string> run(const std::string& cmd) {
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The unsigned number after "key": in the JSON object that starts at `from`.
unsigned long long json_number(const std::string& json, std::size_t from, const std::string& key) {
  const auto at = json.find("\"" + key + "\":", from);
  REQUIRE(at != std::string::npos);
  return std::strtoull(json.c_str() + at + key.size() + 3, nullptr, 10);
}

// Checks that `json` is valid JSON (strict: Python's parser, which rejects invalid UTF-8 too).
void check_parses_as_json(const std::string& json) {
  const std::string file = "/tmp/permafrost-stat-" + std::to_string(::getpid()) + ".json";
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  const auto [parse_rc, parse_out] = run("python3 -m json.tool " + file);
  std::remove(file.c_str());
  CHECK_MESSAGE(parse_rc == 0, parse_out);
}

// A forked child that runs `work` (returns true on success), then stays alive until the test has
// looked at it: release() (or destruction) lets it exit and reaps it.
class held_child {
 public:
  template <class Work>
  explicit held_child(Work work) {
    REQUIRE(::pipe(ready_) == 0);
    REQUIRE(::pipe(go_) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const bool ok = work();
      char c = ok ? 'k' : 'f';
      (void)!::write(ready_[1], &c, 1);
      (void)!::read(go_[0], &c, 1);
      ::_exit(ok ? 0 : 1);
    }
    char c = 0;
    REQUIRE(::read(ready_[0], &c, 1) == 1);
    ok_ = c == 'k';
  }
  ~held_child() { (void)release(); }
  pid_t pid() const { return pid_; }
  bool worked() const { return ok_; }
  // Returns the child's wait status.
  int release() {
    if (pid_ <= 0) return status_;
    (void)!::write(go_[1], "x", 1);
    ::waitpid(pid_, &status_, 0);
    for (int fd : {ready_[0], ready_[1], go_[0], go_[1]}) ::close(fd);
    pid_ = 0;
    return status_;
  }

 private:
  int ready_[2];
  int go_[2];
  pid_t pid_ = 0;
  int status_ = 0;
  bool ok_ = false;
};

// Forks a child that touches `bytes` of its own memory, forks `grandchildren` that read it, and
// keeps all of them alive until release() (or destruction).
class forked_tree {
 public:
  forked_tree(std::size_t bytes, int grandchildren) {
    REQUIRE(::pipe(ready_) == 0);
    REQUIRE(::pipe(go_) == 0);
    root_ = ::fork();
    REQUIRE(root_ >= 0);
    if (root_ == 0) {
      ::close(go_[1]);  // only the test holds the write end: closing it releases everyone
      ::close(ready_[0]);
      auto* data = new char[bytes];
      std::memset(data, 7, bytes);
      for (int i = 0; i < grandchildren; ++i) {
        if (::fork() == 0) {
          unsigned sum = 0;
          for (std::size_t j = 0; j < bytes; j += 4096) sum += static_cast<unsigned char>(data[j]);
          signal_and_wait(sum != 0);
        }
      }
      signal_and_wait(true);
    }
    ::close(ready_[1]);
    ::close(go_[0]);
    for (int i = 0; i < grandchildren + 1; ++i) {
      char c = 0;
      REQUIRE(::read(ready_[0], &c, 1) == 1);
    }
  }
  ~forked_tree() { release(); }
  pid_t root() const { return root_; }
  void release() {
    if (root_ <= 0) return;
    ::close(go_[1]);
    ::close(ready_[0]);
    int status = 0;
    ::waitpid(root_, &status, 0);
    root_ = 0;
  }

 private:
  [[noreturn]] void signal_and_wait(bool ok) {
    char c = ok ? 'k' : 'f';
    (void)!::write(ready_[1], &c, 1);
    (void)!::read(go_[0], &c, 1);  // EOF when the test releases the tree
    while (::wait(nullptr) > 0) {}
    ::_exit(0);
  }
  int ready_[2];
  int go_[2];
  pid_t root_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// process_memory / range_memory
// ---------------------------------------------------------------------------------------------

TEST_CASE("touching 64 MiB of private memory grows uss by at least 64 MiB") {
  const memory_usage before = process_memory();
  constexpr std::size_t n = 64 * MiB;
  std::unique_ptr<char[]> block(new char[n]);
  std::memset(block.get(), 1, n);
  const memory_usage after = process_memory();
  CHECK(after.uss >= before.uss + n);
  CHECK(after.rss >= before.rss + n);
  CHECK(after.anonymous >= before.anonymous + n);
  CHECK(after.uss == after.private_clean + after.private_dirty);
  // The same memory seen through the mapping that holds it.
  const memory_usage range = range_memory(0, block.get(), block.get() + n);
  CHECK(range.uss >= n);
  CHECK(static_cast<unsigned char>(block[n - 1]) == 1);
}

TEST_CASE("after fork, a 64 MiB range both processes map has its pss halved") {
  constexpr std::size_t n = 64 * MiB;
  std::unique_ptr<char[]> block(new char[n]);
  std::memset(block.get(), 3, n);
  const memory_usage alone = range_memory(0, block.get(), block.get() + n);
  REQUIRE(alone.pss >= n);

  held_child child([&] {
    unsigned sum = 0;
    for (std::size_t i = 0; i < n; i += 4096) sum += static_cast<unsigned char>(block[i]);
    return sum != 0;
  });
  REQUIRE(child.worked());
  const memory_usage shared = range_memory(0, block.get(), block.get() + n);
  const memory_usage theirs = range_memory(child.pid(), block.get(), block.get() + n);
  const int status = child.release();

  // The 64 MiB now count half to each process (other pages of the mapping may differ a little).
  const double drop = static_cast<double>(alone.pss) - static_cast<double>(shared.pss);
  if constexpr (permafrost::test::under_sanitizer) {
    // The sanitizer's allocator puts the block inside a larger mapping of its own, which
    // range_memory counts wholly (other blocks, shadow), so the drop is not n / 2 there.
    MESSAGE("pss drop not checked under a sanitizer: " << drop << " bytes");
  } else {
    CHECK(drop == doctest::Approx(static_cast<double>(n) / 2).epsilon(0.05));
  }
  CHECK(shared.shared() >= n);
  CHECK(theirs.pss >= n / 2 - 2 * MiB);
  CHECK(theirs.uss < 2 * MiB);
  CHECK(WIFEXITED(status));
}

TEST_CASE("process_tree lists the children and grandchildren") {
  forked_tree tree(MiB, 2);
  const auto pids = process_tree(tree.root());
  CHECK(pids.size() == 3);
  CHECK(pids.front() == tree.root());
  CHECK(process_tree(0).size() >= 1);
  CHECK(process_name(tree.root()) == process_name());
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

TEST_CASE("a vanished pid raises proc_error naming the file and errno") {
  const pid_t gone = vanished_pid();
  const std::string rollup = "/proc/" + std::to_string(gone) + "/smaps_rollup";
  try {
    (void)process_memory(gone);
    FAIL("process_memory of a vanished pid returned");
  } catch (const proc_error& e) {
    CHECK(e.file() == rollup);
    CHECK((e.code().value() == ENOENT || e.code().value() == ESRCH));
    CHECK(std::string(e.what()).find(rollup) != std::string::npos);
    CHECK(std::string(e.what()).find("errno " + std::to_string(e.code().value())) !=
          std::string::npos);
  }
  CHECK_THROWS_AS((void)mappings(gone), proc_error);
  CHECK_THROWS_AS((void)process_tree(gone), proc_error);
  static const char byte = 0;
  try {
    (void)sharing_audit(gone, 0,
                        std::span<const std::byte>(reinterpret_cast<const std::byte*>(&byte), 1));
    FAIL("sharing_audit of a vanished pid returned");
  } catch (const proc_error& e) {
    CHECK(e.file() == "/proc/" + std::to_string(gone) + "/pagemap");
  }
}

// ---------------------------------------------------------------------------------------------
// sharing_audit
// ---------------------------------------------------------------------------------------------

TEST_CASE("sharing_audit finds the page a child copied and names the allocation on it") {
  arena_options o;
  o.allocation_log = true;
  o.huge_pages = false;  // a write must copy one 4 KiB page, not a 2 MiB one
  o.capacity = 64 * MiB;
  arena a(o);
  char* before = static_cast<char*>(a.allocate(3 * 4096, 4096, "before"));
  char* target = static_cast<char*>(a.allocate(100, 4096, "target"));
  char* after = static_cast<char*>(a.allocate(2 * 4096, 4096, "after"));
  std::memset(before, 1, 3 * 4096);
  std::memset(target, 2, 100);
  std::memset(after, 3, 2 * 4096);

  held_child child([&] {
    target[50] = 9;  // one copy-on-write copy, of the page holding "target"
    return true;
  });
  const sharing_report r = sharing_audit(child.pid(), 0, a);
  CHECK(child.release() == 0);

  INFO(r.method);
  CHECK(r.pages == 6);
  CHECK(r.parent_present == 6);
  CHECK(r.copied == 1);
  CHECK(r.shared == 5);
  CHECK(r.shared_fraction() == doctest::Approx(5.0 / 6.0));
  CHECK(r.method.find(r.frames_compared ? "frames compared" : "fallback") != std::string::npos);
  REQUIRE(r.copies.size() == 1);
  CHECK(r.copies[0].address == target);
  REQUIRE(r.copies[0].allocations.size() == 1);
  CHECK(std::string(r.copies[0].allocations[0].tag) == "target");
  CHECK(r.copies[0].allocations[0].size == 100);
}

TEST_CASE("sharing_audit without an allocation log still counts copies, naming none") {
  arena_options o;
  o.huge_pages = false;
  o.capacity = 64 * MiB;
  arena a(o);
  auto bytes = a.make_array<char>(8 * 4096);
  std::memset(bytes.data(), 1, bytes.size());
  a.freeze();
  const auto result = test::fork_and_compare(2, a.used_bytes(), [] { return 0; });
  for (const auto& s : result) {
    CHECK(s.copied == 0);
    CHECK(s.parent_present == 8);
    CHECK(s.exit_status == 0);
  }
  const sharing_report self = sharing_audit(0, 0, a);  // a process shares every page with itself
  CHECK(self.copied == 0);
  CHECK(self.shared == 8);
  CHECK(self.copies.empty());
}

// ---------------------------------------------------------------------------------------------
// permafrost-stat
// ---------------------------------------------------------------------------------------------

TEST_CASE("permafrost-stat --tree --json totals agree with memstat and parse as JSON") {
  forked_tree tree(32 * MiB, 2);
  const auto [rc, json] =
      run(std::string(PERMAFROST_STAT) + " --tree --json " + std::to_string(tree.root()));
  memory_usage expect;
  const auto pids = process_tree(tree.root());
  for (pid_t p : pids) expect += process_memory(p);
  REQUIRE(rc == 0);
  INFO(json);
  const auto total = json.find("\"total\"");
  REQUIRE(total != std::string::npos);
  CHECK(json_number(json, total, "processes") == 3);
  // Shared library pages can change hands while the tool runs: allow 1 MiB.
  const double slack = static_cast<double>(MiB);
  CHECK(std::fabs(static_cast<double>(json_number(json, total, "rss")) -
                  static_cast<double>(expect.rss)) < slack);
  CHECK(std::fabs(static_cast<double>(json_number(json, total, "pss")) -
                  static_cast<double>(expect.pss)) < slack);
  CHECK(std::fabs(static_cast<double>(json_number(json, total, "uss")) -
                  static_cast<double>(expect.uss)) < slack);
  const auto saved = json_number(json, total, "saved_by_sharing");
  CHECK(saved == json_number(json, total, "rss") - json_number(json, total, "pss"));
  CHECK(saved >= 2 * 32 * MiB * 2 / 3);  // 3 processes map the 32 MiB: RSS counts it 3x, PSS 1x

  check_parses_as_json(json);
}

TEST_CASE("permafrost-stat prints a table with the tree's totals") {
  forked_tree tree(8 * MiB, 1);
  const auto [rc, out] =
      run(std::string(PERMAFROST_STAT) + " --tree " + std::to_string(tree.root()));
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("2 processes") != std::string::npos);
  CHECK(out.find("saved by sharing") != std::string::npos);
  CHECK(out.find(std::to_string(tree.root())) != std::string::npos);
}

TEST_CASE("permafrost-stat exits 2 with a message for a bad pid") {
  const pid_t gone = vanished_pid();
  const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " " + std::to_string(gone));
  CHECK(rc == 2);
  CHECK(out.find("no such process") != std::string::npos);
  const auto [rc2, out2] = run(std::string(PERMAFROST_STAT) + " not-a-pid");
  CHECK(rc2 == 2);
  CHECK(out2.find("not a process id") != std::string::npos);
  const auto [rc3, out3] = run(std::string(PERMAFROST_STAT));
  CHECK(rc3 == 2);
  CHECK(out3.find("usage") != std::string::npos);
}

TEST_CASE("permafrost-stat --json writes a name that is not UTF-8 as U+FFFD plus its hex bytes") {
  // Regression: each such byte was written as \u00XX, i.e. as the Latin-1 character of that
  // value: the bytes ff fe became "\u00ff\u00fe", a name the process never had. Now the string
  // says where bytes were replaced (U+FFFD) and name_hex holds the exact bytes.
  held_child child([] { return ::prctl(PR_SET_NAME, "\xff\xfe-odd\"name", 0, 0, 0) == 0; });
  REQUIRE(child.worked());
  const auto [rc, json] =
      run(std::string(PERMAFROST_STAT) + " --json " + std::to_string(child.pid()));
  REQUIRE(rc == 0);
  INFO(json);
  CHECK(json.find("\"name\": \"\\ufffd\\ufffd-odd\\\"name\", \"name_hex\": "
                  "\"fffe2d6f6464226e616d65\"") != std::string::npos);
  CHECK(json.find("\\u00ff") == std::string::npos);
  check_parses_as_json(json);

  // An arena's name (Latin-1 bytes) the same way; a UTF-8 name has no name_hex.
  arena_options o;
  o.name = "\xe9t\xe9-latin1";
  o.capacity = 64 * MiB;
  o.huge_pages = false;
  arena a(o);
  auto bytes = a.make_array<char>(MiB);
  std::memset(bytes.data(), 5, bytes.size());
  const auto [arc, ajson] =
      run(std::string(PERMAFROST_STAT) + " --json " + std::to_string(::getpid()));
  REQUIRE(arc == 0);
  INFO(ajson);
  CHECK(ajson.find("\"name\": \"[arena:\\ufffdt\\ufffd-latin1]\", \"name_hex\": "
                   "\"5b6172656e613ae974e92d6c6174696e315d\"") != std::string::npos);
  CHECK(ajson.find("\\u00e9") == std::string::npos);
  CHECK(ajson.find("name_hex") == ajson.rfind("name_hex"));  // the arena's only
  check_parses_as_json(ajson);
}

TEST_CASE("permafrost-stat takes digits only as a pid") {
  for (const char* arg : {"' 1'", "+1", "'1 '", "-0", "0x10", "99999999999"}) {
    const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " " + arg);
    INFO(arg << ": " << out);
    CHECK(rc == 2);
    CHECK(out.find("not a process id") != std::string::npos);
  }
}

TEST_CASE("permafrost-stat calls a zombie a zombie, not a missing process") {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(0);
  // Not reaped yet: wait until the kernel shows it as a zombie.
  for (int i = 0; i < 500 && process_state(pid) != 'Z'; ++i) ::usleep(2000);
  REQUIRE(process_state(pid) == 'Z');
  const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " " + std::to_string(pid));
  INFO(out);
  CHECK(rc == 1);
  CHECK(out.find("zombie") != std::string::npos);
  CHECK(out.find("no such process") == std::string::npos);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(process_state(pid) == '\0');
}

TEST_CASE("permafrost-stat calls a kernel thread a kernel thread, not a missing process") {
  // kthreadd (pid 2 where the kernel's threads are visible: not in a container's pid namespace).
  // Its /proc/2/smaps_rollup reads ESRCH, which was reported as "no such process".
  if (process_state(2) == '\0' || process_name(2) != "kthreadd") {
    MESSAGE("no kernel thread visible in this pid namespace: skipped");
    return;
  }
  const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " 2");
  INFO(out);
  CHECK(rc == 1);
  CHECK(out.find("kernel thread") != std::string::npos);
  CHECK(out.find("no such process") == std::string::npos);
}

TEST_CASE("permafrost-stat lists a memfd-backed arena by its name") {
  arena_options o;
  o.backing = backing::memfd;
  o.name = "stat-test";
  o.capacity = 64 * MiB;
  arena a(o);
  auto bytes = a.make_array<char>(4 * MiB);
  std::memset(bytes.data(), 5, bytes.size());
  a.freeze();
  // Freezing a memfd arena maps it afresh: its pages are in this process's RSS once read again.
  unsigned sum = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 4096) sum += static_cast<unsigned char>(bytes[i]);
  REQUIRE(sum == 5 * (bytes.size() / 4096));
  const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " " + std::to_string(::getpid()));
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("memfd:permafrost:stat-test") != std::string::npos);
  const auto [jrc, json] =
      run(std::string(PERMAFROST_STAT) + " --json " + std::to_string(::getpid()));
  CHECK(jrc == 0);
  const auto at = json.find("memfd:permafrost:stat-test");
  REQUIRE(at != std::string::npos);
  CHECK(json_number(json, at, "rss") >= 4 * MiB);
}

// ---------------------------------------------------------------------------------------------
// The arena directory: arenas found without named anonymous memory
// ---------------------------------------------------------------------------------------------

namespace {

bool lists(const std::vector<listed_arena>& listed, const std::string& name) {
  return std::any_of(listed.begin(), listed.end(),
                     [&](const listed_arena& a) { return a.name == name; });
}

}  // namespace

TEST_CASE("permafrost-stat lists an anonymous arena on any kernel, by the arena directory") {
  // Without CONFIG_ANON_VMA_NAME (prctl PR_SET_VMA_ANON_NAME fails with EINVAL) an anonymous
  // arena is an unnamed mapping in /proc/PID/maps; before the directory permafrost-stat printed
  // "arenas: none found by name". The name holds no "permafrost": found by the directory alone.
  arena_options o;
  o.name = "stat-anon-listed";
  o.capacity = 64 * MiB;
  arena a(o);
  auto bytes = a.make_array<char>(4 * MiB);
  std::memset(bytes.data(), 5, bytes.size());
  a.freeze();
  const std::vector<listed_arena> listed = listed_arenas();
  const auto it = std::find_if(listed.begin(), listed.end(),
                               [](const listed_arena& l) { return l.name == "stat-anon-listed"; });
  REQUIRE(it != listed.end());
  const auto p = reinterpret_cast<std::uintptr_t>(bytes.data());
  CHECK(it->begin <= p);
  CHECK(p + bytes.size() <= it->end);
  CHECK(lists(listed_arenas(::getpid()), "stat-anon-listed"));  // the same, by pid

  const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " " + std::to_string(::getpid()));
  INFO(out);
  CHECK(rc == 0);
  // "[arena:stat-anon-listed]" here, "[anon:stat-anon-listed]" where the kernel names it.
  CHECK(out.find("stat-anon-listed]") != std::string::npos);
  const auto [jrc, json] =
      run(std::string(PERMAFROST_STAT) + " --json " + std::to_string(::getpid()));
  CHECK(jrc == 0);
  const auto at = json.find("stat-anon-listed]");
  REQUIRE(at != std::string::npos);
  CHECK(json_number(json, at, "rss") >= 4 * MiB);
}

namespace {
// permafrost-stat's table of this process while it holds a frozen arena named `name`.
std::string stat_table_with_arena_named(const char* name) {
  arena_options o;
  o.name = name;
  o.capacity = 64 * MiB;
  arena a(o);
  (void)a.allocate(64);
  a.freeze();
  const auto [rc, out] = run(std::string(PERMAFROST_STAT) + " " + std::to_string(::getpid()));
  INFO(out);
  CHECK(rc == 0);
  return out;
}
}  // namespace

TEST_CASE("permafrost-stat's table shows a newline in an arena name as \\012, never a line") {
  // Names come from the processes read: a raw newline let one print rows of its own.
  const std::string out = stat_table_with_arena_named("stat-ctl\n   total  forged\x1b[2J");
  INFO(out);
  CHECK(out.find("stat-ctl\\012   total  forged\\033[2J") != std::string::npos);
  CHECK(out.find("\n   total  forged") == std::string::npos);
  CHECK(out.find('\x1b') == std::string::npos);
}

TEST_CASE("permafrost-stat's table escapes a backslash, so a literal \\012 is not a newline") {
  // The name holds the four characters \012 and a real newline: before, both printed as "\012".
  const std::string out = stat_table_with_arena_named("stat-bs\\012|\n|");
  INFO(out);
  CHECK(out.find("stat-bs\\134012|\\012|") != std::string::npos);
  CHECK(out.find("stat-bs\\012") == std::string::npos);
}

TEST_CASE("a destroyed arena leaves the arena directory") {
  {
    arena_options o;
    o.name = "stat-destroyed";
    arena a(o);
    CHECK(lists(listed_arenas(), "stat-destroyed"));
  }
  CHECK_FALSE(lists(listed_arenas(), "stat-destroyed"));
}

TEST_CASE("a forked child keeps an arena directory of its own") {
  // Parent and child share the directory's memfd after fork unless the child gets its own: then
  // each would list the other's later arenas.
  arena_options before;
  before.name = "dir-parent-before";
  arena inherited(before);
  held_child child([] {
    arena_options o;
    o.name = "dir-child-after";
    new arena(o);  // lives until the child exits
    return true;
  });
  REQUIRE(child.worked());
  arena_options after;
  after.name = "dir-parent-after";
  arena own(after);
  const std::vector<listed_arena> in_child = listed_arenas(child.pid());
  CHECK(lists(in_child, "dir-parent-before"));  // inherited: mapped in the child too
  CHECK(lists(in_child, "dir-child-after"));
  CHECK_FALSE(lists(in_child, "dir-parent-after"));
  const std::vector<listed_arena> in_parent = listed_arenas();
  CHECK(lists(in_parent, "dir-parent-before"));
  CHECK(lists(in_parent, "dir-parent-after"));
  CHECK_FALSE(lists(in_parent, "dir-child-after"));
  CHECK(child.release() == 0);
}

TEST_CASE("listed_arenas of a process without arenas is empty; of a vanished one throws") {
  // This process's arenas (and so its directory) are inherited by a fork: exec a clean program.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 500 && process_name(pid) != "sleep"; ++i) ::usleep(10000);
  REQUIRE(process_name(pid) == "sleep");
  CHECK(listed_arenas(pid).empty());
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  const pid_t gone = vanished_pid();
  CHECK_THROWS_AS(listed_arenas(gone), proc_error);
}

TEST_CASE("listed_arenas never blocks on a FIFO a process swaps in for its directory") {
  // A hostile process keeps swapping (dup2) one descriptor between a memfd named like the
  // directory and a FIFO without a writer. Between the reader's readlink (the memfd) and its open
  // (the FIFO), a blocking open waited forever for a writer: permafrost-stat hung.
  const std::string fifo = "/tmp/permafrost-dir-fifo-" + std::to_string(::getpid());
  (void)::unlink(fifo.c_str());
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t hostile = ::fork();
  REQUIRE(hostile >= 0);
  if (hostile == 0) {
    for (int fd = 3; fd < 1024; ++fd)  // the inherited directory would be found first
      if (fd != ready[1]) (void)::close(fd);
    const int memfd = ::memfd_create("permafrost-arenas", MFD_CLOEXEC);
    const int pipe_end = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // a reader, no writer
    if (memfd < 0 || pipe_end < 0 || ::dup2(memfd, 900) < 0 || ::dup2(pipe_end, 901) < 0)
      ::_exit(1);
    ::close(memfd);
    ::close(pipe_end);
    (void)::write(ready[1], "x", 1);
    for (;;) {  // fd 200, below the memfd at 900, is the one the reader finds first
      (void)::dup2(900, 200);
      (void)::dup2(901, 200);
    }
  }
  ::close(ready[1]);
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  ::close(ready[0]);
  const int status = permafrost::test::wait_status_of([hostile] {
    ::alarm(20);  // a blocked open ends the reader by SIGALRM
    for (int i = 0; i < 2000; ++i) {
      try {
        (void)listed_arenas(hostile);
      } catch (const proc_error&) {}
    }
    ::_exit(0);
  });
  ::kill(hostile, SIGKILL);
  ::waitpid(hostile, nullptr, 0);
  (void)::unlink(fifo.c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

namespace {
// Recurses `depth` frames of 1 KiB each and returns stack_bytes_left() at the bottom.
[[gnu::noinline]] std::size_t stack_left_at_depth(int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (depth == 0) return permafrost::stack_bytes_left();
  const std::size_t left = stack_left_at_depth(depth - 1);
  return left + static_cast<std::size_t>(frame[0] - depth);  // keeps the frame alive
}
}  // namespace

TEST_CASE("stack_bytes_left: within a thread's stack, smaller deeper down") {
  std::size_t top = 0;
  std::size_t deep = 0;
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  // 4 MiB, not 1: glibc carves the thread's static TLS out of the top of its stack, and under
  // TSan that TLS holds the sanitizer's per-thread state (about 750 KiB here).
  REQUIRE(pthread_attr_setstacksize(&attr, std::size_t{4} << 20) == 0);
  struct results {
    std::size_t* top;
    std::size_t* deep;
  } r{&top, &deep};
  pthread_t thread;
  REQUIRE(pthread_create(
              &thread, &attr,
              [](void* p) -> void* {
                auto* out = static_cast<results*>(p);
                *out->top = permafrost::stack_bytes_left();
                *out->deep = stack_left_at_depth(200);
                return nullptr;
              },
              &r) == 0);
  REQUIRE(pthread_join(thread, nullptr) == 0);
  pthread_attr_destroy(&attr);
  CHECK(top <= std::size_t{4} << 20);
  CHECK(top > std::size_t{3} << 20);  // a thread starts near the top of its stack
  CHECK(deep + 200 * 1024 <= top);    // 200 frames of 1 KiB used at least that much
  CHECK(permafrost::stack_bytes_left() > 0);
}
