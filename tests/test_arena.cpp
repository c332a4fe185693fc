// The frozen arena: allocation, freeze, containment, sharing after fork, huge pages.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <memory>
#include <memory_resource>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "arena/arena_registry.hpp"
#include "arenas.hpp"
#include "fork_probe.hpp"
#include "limit_child.hpp"
#include "os/os.hpp"
#include "permafrost/detail/arena_pages.hpp"
#include "permafrost/write_trap.hpp"
#include "proc.hpp"

using permafrost::arena;
using permafrost::arena_options;

namespace {

arena_options small(std::size_t capacity = std::size_t{16} << 20, const char* name = "test") {
  return permafrost::test::arena_options_for(name, {.capacity = capacity});
}

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

bool killed_by(int status, int sig) { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }

}  // namespace

TEST_CASE("every power-of-two alignment from 1 to 4096 is honoured") {
  arena a(small());
  for (std::size_t align = 1; align <= 4096; align *= 2) {
    (void)a.allocate(1, 1);  // knock the bump pointer off any alignment
    void* p = a.allocate(24, align);
    CHECK(aligned(p, align));
    CHECK(a.contains(p));
  }
  a.check_invariants();
}

TEST_CASE("alignments beyond the fast path, up to huge pages, are served exactly") {
  arena a(small(std::size_t{64} << 20));
  for (std::size_t align : {std::size_t{8192}, std::size_t{65536}, std::size_t{2} << 20}) {
    (void)a.allocate(3, 1);
    void* p = a.allocate(100, align);
    CHECK(aligned(p, align));
  }
  a.check_invariants();
}

TEST_CASE("size 0 gives distinct non-null pointers") {
  arena a(small());
  void* p = a.allocate(0);
  void* q = a.allocate(0);
  CHECK(p != nullptr);
  CHECK(q != nullptr);
  CHECK(p != q);
}

TEST_CASE("size + alignment overflow throws bad_alloc and try_allocate returns nullptr") {
  arena a(small());
  const std::size_t huge = std::numeric_limits<std::size_t>::max() - 8;
  CHECK_THROWS_AS((void)a.allocate(huge, 64), std::bad_alloc);
  CHECK(a.try_allocate(huge, 64) == nullptr);
  CHECK(a.try_allocate(std::numeric_limits<std::size_t>::max(), 1) == nullptr);
  // Nothing was lost: the arena still serves.
  CHECK(a.allocate(16) != nullptr);
  a.check_invariants();
}

TEST_CASE("capacity exhaustion throws bad_alloc and leaves the arena usable") {
  const std::size_t capacity = std::size_t{1} << 20;
  arena a(small(capacity));
  void* all = a.allocate(capacity - 4096, 1);
  CHECK(all != nullptr);
  CHECK_THROWS_AS((void)a.allocate(8192, 1), std::bad_alloc);
  CHECK(a.try_allocate(8192, 1) == nullptr);
  void* rest = a.allocate(4096, 1);  // exactly what is left
  CHECK(static_cast<char*>(rest) == static_cast<char*>(all) + (capacity - 4096));
  CHECK_THROWS_AS((void)a.allocate(1, 1), std::bad_alloc);
  CHECK(a.stats().used == capacity);
  a.check_invariants();
}

TEST_CASE("non-power-of-two and oversized alignments are rejected") {
  arena a(small());
  CHECK_THROWS_AS((void)a.allocate(8, 3), std::invalid_argument);
  CHECK_THROWS_AS((void)a.allocate(8, 0), std::invalid_argument);
  CHECK_THROWS_AS((void)a.allocate(8, 24), std::invalid_argument);
  CHECK_THROWS_AS((void)a.allocate(8, std::size_t{1} << 40), std::invalid_argument);
  CHECK(a.try_allocate(8, 48) == nullptr);
  CHECK(a.stats().allocations == 0);
}

TEST_CASE("capacity 0 and capacity beyond the address space are refused") {
  CHECK_THROWS_AS(arena(small(0)), std::invalid_argument);
  CHECK_THROWS_AS(arena(small(std::numeric_limits<std::size_t>::max())), std::bad_alloc);
  CHECK_THROWS_AS(arena(small(std::size_t{1} << 50)), std::bad_alloc);
}

TEST_CASE("two threads allocating at once get disjoint, aligned blocks") {
  arena a(small(std::size_t{256} << 20));
  constexpr int per_thread = 100000;
  std::vector<std::pair<char*, std::size_t>> blocks[2];
  auto worker = [&](int id) {
    blocks[id].reserve(per_thread);
    for (int i = 0; i < per_thread; ++i) {
      const std::size_t size = 1 + static_cast<std::size_t>((i * 7 + id) % 200);
      const std::size_t align = std::size_t{1} << ((i + id) % 7);
      auto* p = static_cast<char*>(a.allocate(size, align));
      REQUIRE(aligned(p, align));
      std::memset(p, id + 1, size);
      blocks[id].emplace_back(p, size);
    }
  };
  std::thread t0(worker, 0);
  std::thread t1(worker, 1);
  t0.join();
  t1.join();
  std::vector<std::pair<char*, std::size_t>> all(blocks[0]);
  all.insert(all.end(), blocks[1].begin(), blocks[1].end());
  std::sort(all.begin(), all.end());
  for (std::size_t i = 1; i < all.size(); ++i) {
    REQUIRE(all[i - 1].first + all[i - 1].second <= all[i].first);
  }
  // Every block still holds its owner's mark: nobody wrote over anybody.
  for (int id = 0; id < 2; ++id) {
    for (const auto& [p, size] : blocks[id]) REQUIRE(p[size - 1] == id + 1);
  }
  CHECK(a.stats().allocations == 2 * per_thread);  // both threads ended, so their counts landed
  a.check_invariants();
}

TEST_CASE("freeze is idempotent and allocation afterwards throws frozen_error") {
  arena a(small());
  const std::string_view s = a.copy("hello");
  CHECK_FALSE(a.frozen());
  a.freeze();
  CHECK(a.frozen());
  a.freeze();
  CHECK(a.frozen());
  CHECK(s == "hello");
  CHECK_THROWS_AS((void)a.allocate(8), permafrost::frozen_error);
  CHECK_THROWS_AS((void)a.make<int>(1), permafrost::frozen_error);
  CHECK_THROWS_AS((void)a.copy("x"), permafrost::frozen_error);
  CHECK(a.try_allocate(8) == nullptr);
  CHECK(a.stats().frozen);
  a.check_invariants();
}

TEST_CASE("another thread's open chunk is closed by freeze") {
  arena a(small());
  std::thread([&] { CHECK(a.allocate(64) != nullptr); }).join();
  std::atomic<bool> allocated{false};
  std::atomic<bool> frozen{false};
  void* after = reinterpret_cast<void*>(1);
  std::thread t([&] {
    (void)a.allocate(64);  // opens a chunk with room to spare
    allocated = true;
    while (!frozen) std::this_thread::yield();
    after = a.try_allocate(64);  // the chunk must not serve after freeze
  });
  while (!allocated) std::this_thread::yield();
  a.freeze();
  frozen = true;
  t.join();
  CHECK(after == nullptr);
  CHECK(a.stats().allocations == 2);
}

TEST_CASE("a write to frozen memory kills the writer with SIGSEGV") {
  arena a(small());
  int* x = a.make<int>(41);
  a.freeze();
  const int status = permafrost::test::wait_status_of([&] { *const_cast<volatile int*>(x) = 42; });
  CHECK(killed_by(status, SIGSEGV));
  CHECK(*x == 41);
}

TEST_CASE("contains and is_frozen at the first byte, the last byte and one past the end") {
  arena a(small());
  arena other(small());
  auto* first = static_cast<char*>(a.allocate(100, 1));
  char* last = first + 99;
  int on_stack = 0;
  auto on_heap = std::make_unique<int>(0);
  void* in_other = other.allocate(8);

  CHECK(a.contains(first));
  CHECK(a.contains(last));
  CHECK_FALSE(a.contains(last + 1));
  CHECK_FALSE(permafrost::is_frozen(first));

  a.freeze();
  other.freeze();
  CHECK(permafrost::is_frozen(first));
  CHECK(permafrost::is_frozen(last));
  CHECK_FALSE(permafrost::is_frozen(last + 1));
  CHECK_FALSE(permafrost::is_frozen(first - 1));
  CHECK(a.contains(first));
  CHECK(a.contains(last));
  CHECK_FALSE(a.contains(last + 1));
  CHECK_FALSE(a.contains(first - 1));
  CHECK_FALSE(a.contains(&on_stack));
  CHECK_FALSE(a.contains(on_heap.get()));
  CHECK_FALSE(a.contains(in_other));
  CHECK(permafrost::is_frozen(in_other));
  CHECK_FALSE(permafrost::is_frozen(&on_stack));
  CHECK_FALSE(permafrost::is_frozen(on_heap.get()));
  CHECK_FALSE(permafrost::is_frozen(nullptr));
  CHECK_FALSE(permafrost::is_frozen(reinterpret_cast<void*>(~std::uintptr_t{0})));
}

TEST_CASE("after freeze, 4 forked readers of every byte copy 0 arena pages") {
  arena a(small(std::size_t{128} << 20));
  const std::size_t bytes = std::size_t{32} << 20;
  auto block = a.make_array<std::uint64_t>(bytes / sizeof(std::uint64_t));
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = i * 2654435761u;
  a.freeze();
  const auto range = a.used_bytes();
  const auto results = permafrost::test::fork_and_compare(4, range, [&] {
    std::uint64_t sum = 0;
    for (std::byte b : range) sum += static_cast<std::uint64_t>(b);
    // The arena's own bookkeeping is not in the mapping: using it writes no arena page.
    const auto s = a.stats();
    const bool ok = a.contains(range.data()) && permafrost::is_frozen(range.data()) &&
                    a.try_allocate(8) == nullptr && s.frozen && sum != 0;
    return ok ? 0 : 1;
  });
  for (const auto& r : results) {
    CHECK(r.exit_status == 0);
    CHECK(r.child_present == r.pages);
    CHECK(r.copied == 0);
  }
}

// Skipped (doctest::skip) where transparent huge pages are `never` or absent.
TEST_CASE("huge pages back the arena after 64 MiB are touched" *
          doctest::skip(!permafrost::huge_pages_available())) {
  arena_options o = small(std::size_t{256} << 20, "huge");
  o.huge_pages = true;
  arena a(o);
  auto block = a.make_array<char>(std::size_t{64} << 20);
  std::memset(block.data(), 1, block.size());
  const std::size_t before_huge = a.huge_page_bytes();
  CHECK(before_huge > 0);
  a.freeze();
  const auto after = a.stats();
  const std::size_t after_huge = a.huge_page_bytes();
  // The frozen range is rounded to 2 MiB, so freezing splits no huge page.
  CHECK(after.committed % (std::size_t{2} << 20) == 0);
  CHECK(after_huge >= before_huge);
}

TEST_CASE("stats count allocations, used bytes and alignment padding") {
  arena a(small());
  auto s0 = a.stats();
  CHECK(s0.allocations == 0);
  CHECK(s0.used == 0);
  CHECK(s0.committed == 0);  // nothing committed up front
  CHECK(s0.reserved >= std::size_t{16} << 20);
  (void)a.allocate(1, 1);
  (void)a.allocate(8, 8);  // 7 bytes of padding
  (void)a.allocate(3, 1);
  (void)a.allocate(16, 16);  // 13 bytes of padding (offset 19 -> 32)
  const auto s = a.stats();
  CHECK(s.allocations == 4);
  CHECK(s.used == 48);
  CHECK(s.lost_to_alignment == 20);
  CHECK(s.committed >= s.used);
  CHECK_FALSE(s.frozen);
}

TEST_CASE("make, make_array and copy construct objects in the arena") {
  struct point {
    int x, y;
    point(int a, int b) : x(a), y(b) {}
  };
  arena a(small());
  point* p = a.make<point>(3, 4);
  CHECK(p->x == 3);
  CHECK(a.contains(p));
  auto zeros = a.make_array<long>(1000);
  CHECK(std::all_of(zeros.begin(), zeros.end(), [](long v) { return v == 0; }));
  CHECK(a.make_array<long>(0).empty());
  CHECK_THROWS_AS((void)a.make_array<long>(std::numeric_limits<std::size_t>::max() / 2),
                  std::bad_alloc);
  const std::string_view with_nul("a\0b", 3);
  const std::string_view c = a.copy(with_nul);
  CHECK(c == with_nul);
  CHECK(c.data()[3] == '\0');
  CHECK(a.contains(c.data()));
}

TEST_CASE("a moved arena keeps its memory; use of the moved-from one aborts with a message") {
  arena a(small());
  int* x = a.make<int>(7);
  arena b(std::move(a));
  CHECK(b.contains(x));
  CHECK_FALSE(a.contains(x));  // NOLINT(bugprone-use-after-move): defined, and the point
  CHECK(*b.make<int>(8) == 8);
  const int status = permafrost::test::wait_status_of([&] { (void)a.allocate(8); });
  CHECK(killed_by(status, SIGABRT));
}

TEST_CASE("a destroyed arena's range is quarantined: a stale pointer faults, never reads the next "
          "arena") {
  const char* stale = nullptr;
  {
    arena a(small());
    stale = a.copy("old arena's bytes").data();
    a.freeze();
    CHECK(permafrost::is_frozen(stale));
  }
  CHECK_FALSE(permafrost::is_frozen(stale));
  // The next arenas get granules never used (or released longest ago), not the one just freed.
  arena b(small());
  const char* fresh = b.copy("new arena's bytes").data();
  b.freeze();
  arena c(small());
  (void)c.allocate(64);
  CHECK(fresh != stale);
  CHECK_FALSE(b.contains(stale));
  CHECK_FALSE(c.contains(stale));
  CHECK_FALSE(permafrost::is_frozen(stale));
  // The range stays reserved and inaccessible: a stray read dies of SIGSEGV.
  const int status = permafrost::test::wait_status_of([&] {
    const char seen = *static_cast<const volatile char*>(stale);
    ::_exit(seen == 'n' ? 3 : 0);
  });
  CHECK(killed_by(status, SIGSEGV));
  b.check_invariants();
  c.check_invariants();
}

// VmPTE of this process in kB (page-table memory), from /proc/self/status.
long page_table_kib() { return permafrost::test::status_kib("VmPTE"); }

TEST_CASE("creating and destroying arenas keeps page tables bounded") {
  // Each never-used GiB of the reservation that an arena touches keeps a page-table page for the
  // life of the process; a quarantine that always preferred never-used granules grew VmPTE by
  // ~1 KiB per arena (and ASan's shadow by far more) in a loop like this one.
  auto churn = [](int n) {
    for (int i = 0; i < n; ++i) {
      arena a(small(std::size_t{1} << 20));
      std::memset(a.allocate(4096), 1, 4096);
      a.freeze();
    }
  };
  churn(200);  // past the quarantine depth: from here on released runs are reused
  const long before = page_table_kib();
  REQUIRE(before >= 0);
  churn(4000);
  const long grown = page_table_kib() - before;
  MESSAGE("VmPTE grew by " << grown << " kB over 4000 arenas");
  CHECK(grown < 256);
}

TEST_CASE("many arenas live at once, each in its own range") {
  std::vector<arena> arenas;
  for (int i = 0; i < 64; ++i) arenas.emplace_back(small(std::size_t{1} << 20));
  std::vector<void*> firsts;
  for (auto& a : arenas) firsts.push_back(a.allocate(8));
  for (std::size_t i = 0; i < arenas.size(); ++i) {
    for (std::size_t j = 0; j < firsts.size(); ++j)
      CHECK(arenas[i].contains(firsts[j]) == (i == j));
  }
}

TEST_CASE("the allocation log records offset, size and tag outside the mapping") {
  arena_options o = small();
  o.allocation_log = true;
  arena a(o);
  void* p = a.allocate(10, 1, "config");
  void* q = a.allocate(100, 64, "table");
  (void)a.allocate(5);
  const auto log = a.allocation_log();
  REQUIRE(log.size() == 3);
  CHECK(log[0].offset == 0);
  CHECK(log[0].size == 10);
  CHECK(std::string_view(log[0].tag) == "config");
  CHECK(static_cast<char*>(q) - static_cast<char*>(p) ==
        static_cast<std::ptrdiff_t>(log[1].offset));
  CHECK(log[1].offset % 64 == 0);
  CHECK(log[2].tag == nullptr);
  CHECK(a.stats().allocations == 3);
  a.check_invariants();
  arena plain(small());
  (void)plain.allocate(10, 1, "ignored");
  CHECK(plain.allocation_log().empty());
}

TEST_CASE("resource() serves pmr containers and survives moving the arena") {
  arena a(small());
  std::pmr::memory_resource* r = a.resource();
  std::pmr::vector<int> v(r);
  for (int i = 0; i < 1000; ++i) v.push_back(i);
  CHECK(a.contains(v.data()));
  arena b(std::move(a));
  CHECK(b.resource() == r);
  v.push_back(1000);
  CHECK(b.contains(v.data()));
  CHECK(r->is_equal(*b.resource()));
}

TEST_CASE(
    "registry: a read-only file mapped into claimed granules is frozen, trapped and released") {
  namespace registry = permafrost::detail::registry;
  const std::size_t bytes = std::size_t{64} << 10;
  int fd = -1;
  REQUIRE(permafrost::os::memfd_open("registry-test", &fd) == 0);
  REQUIRE(permafrost::os::file_resize(fd, bytes) == 0);
  REQUIRE(permafrost::os::file_write(fd, "image bytes", 12, 100) == 0);
  permafrost::detail::arena_slot* slot = registry::claim_frozen(bytes);
  REQUIRE(slot != nullptr);
  const auto base = slot->base;
  auto* data = reinterpret_cast<const char*>(base);
  CHECK_FALSE(permafrost::is_frozen(data));
  REQUIRE(permafrost::os::map_file_fixed(fd, const_cast<char*>(data), bytes, 0, false) == 0);
  registry::publish_frozen(slot, base + bytes, "image-test");
  CHECK(permafrost::is_frozen(data + 100));
  CHECK(std::strcmp(data + 100, "image bytes") == 0);
  CHECK_FALSE(permafrost::is_frozen(data + bytes));
  CHECK(permafrost::detail::slot_of(data) == slot);
  char line[320];
  const std::size_t n = permafrost::describe_frozen_write(data + 100, line, sizeof line);
  CHECK(std::string(line, n).rfind(
            "permafrost: write to frozen arena \"image-test\" at offset 100 ", 0) == 0);
  const int wrote =
      permafrost::test::wait_status_of([&] { *const_cast<volatile char*>(data + 100) = 'X'; });
  CHECK(killed_by(wrote, SIGSEGV));
  registry::release_frozen(slot);
  CHECK_FALSE(permafrost::is_frozen(data + 100));
  CHECK(permafrost::detail::slot_of(data) == nullptr);
  const int read =
      permafrost::test::wait_status_of([&] { (void)*static_cast<const volatile char*>(data); });
  CHECK(killed_by(read, SIGSEGV));
  (void)permafrost::os::close_fd(fd);
}

namespace {
// read(2) calls this process has made so far (syscr in /proc/self/io), or -1 where the kernel does
// not account them.
long long read_syscalls() {
  const auto syscr = permafrost::test::io_counter("syscr");
  return syscr ? static_cast<long long>(*syscr) : -1;
}
}  // namespace

TEST_CASE("stats() is a plain getter: 1000 calls read no file; huge_page_bytes() reads smaps") {
  arena a(small());
  (void)a.make_array<char>(std::size_t{1} << 20);  // committed, so the old stats() read smaps
  const long long base0 = read_syscalls();
  const long long base1 = read_syscalls();
  if (base0 < 0) {
    MESSAGE("skipped: /proc/self/io is missing (no task I/O accounting in this kernel)");
    CHECK(base1 < 0);
    return;
  }
  const long long per_probe = base1 - base0;  // the reads one read_syscalls() makes
  std::size_t used = 0;
  for (int i = 0; i < 1000; ++i) used += a.stats().used;
  const long long after = read_syscalls();
  CHECK(used >= 1000 * (std::size_t{1} << 20));
  CHECK(after - base1 == per_probe);
  (void)a.huge_page_bytes();
  CHECK(read_syscalls() - after > per_probe);
}

// The pages of [p, p + bytes) that are resident (mincore).
static std::size_t resident_pages(const char* p, std::size_t bytes) {
  const std::size_t page = permafrost::os::page_size();
  std::vector<unsigned char> in((bytes + page - 1) / page);
  REQUIRE(::mincore(const_cast<char*>(p), bytes, in.data()) == 0);
  return static_cast<std::size_t>(
      std::count_if(in.begin(), in.end(), [](unsigned char c) { return (c & 1) != 0; }));
}

TEST_CASE("page_buffer: growing keeps the bytes; only written pages and undiscarded ones count") {
  const std::size_t page = permafrost::os::page_size();
  permafrost::detail::page_buffer b;
  b.reserve(10 * page);
  REQUIRE(b.capacity() == 10 * page);
  for (std::size_t i = 0; i < 4 * page; ++i) b.data()[i] = static_cast<char>(i % 251);
  CHECK(resident_pages(b.data(), b.capacity()) == 4);  // the capacity costs nothing unwritten
  b.reserve(1000 * page);                              // moves the pages, copies nothing
  REQUIRE(b.capacity() == 1000 * page);
  bool same = true;
  for (std::size_t i = 0; i < 4 * page; ++i)
    same = same && b.data()[i] == static_cast<char>(i % 251);
  CHECK(same);
  CHECK(resident_pages(b.data(), b.capacity()) == 4);  // the 4 pages moved with the mapping
  b.discard_prefix(2 * page + 1);                      // whole pages only
  CHECK(resident_pages(b.data(), b.capacity()) == 2);
  CHECK(b.data()[2 * page] == static_cast<char>((2 * page) % 251));
  CHECK(b.data()[999 * page] == 0);  // never written: zero
  b.clear();
  CHECK(b.data() == nullptr);
  CHECK(b.capacity() == 0);
}

// Skipped under a sanitizer: its runtime maps terabytes of shadow memory, which no small
// RLIMIT_AS allows ("Failed to mmap" before the program's own code runs).
TEST_CASE("under a small address-space limit an arena is made; below it the error names RLIMIT_AS" *
          doctest::skip(permafrost::test::under_sanitizer)) {
  // Regression: under `ulimit -v 300000` no arena could be made (the reservation needed 1 GiB),
  // and the error read as if the reservation were full. The program sets RLIMIT_AS on itself,
  // exec'd so it starts with no reservation; then a default arena holds 32 MiB.
  int status = 0;
  std::string out =
      permafrost::test::run_limit_child(PERMAFROST_LIMIT_CHILD, {"300000", "arena"}, &status);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("ok arena reserved") != std::string::npos);
  CHECK(out.find("ok C API arena") != std::string::npos);
  // 8 MiB more than the program maps: no reservation fits; every error says why.
  out = permafrost::test::run_limit_child(PERMAFROST_LIMIT_CHILD, {"+8192", "none", "-"}, &status);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("ok arena refused") != std::string::npos);
  CHECK(out.find("ok C API arena refused: 12") != std::string::npos);
}

namespace {
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const std::size_t n = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += n;
  }
  return true;
}
}  // namespace

TEST_CASE("a name cut to 47 bytes is cut at a UTF-8 character boundary, not inside one") {
  // Regression: the name was cut at byte 47 whatever it held, so a 2-, 3- or 4-byte character
  // across the boundary left a stray lead byte in write-trap reports, permafrost-stat and the
  // memfd's name in /proc/PID/maps.
  struct name_case {
    std::string name;
    std::string kept;
  };
  const std::string e_acute = "\xc3\xa9", euro = "\xe2\x82\xac", grin = "\xf0\x9f\x98\x80";
  const std::vector<name_case> cases = {
      {std::string(46, 'a') + e_acute, std::string(46, 'a')},
      {std::string(45, 'a') + euro, std::string(45, 'a')},
      {std::string(46, 'a') + euro, std::string(46, 'a')},
      {std::string(44, 'a') + grin + "z", std::string(44, 'a')},
      {std::string(45, 'a') + e_acute + "xyz", std::string(45, 'a') + e_acute},  // 47: whole
      {std::string(44, 'a') + euro + "b", std::string(44, 'a') + euro},          // ends at 47
  };
  for (const auto& c : cases) {
    for (const permafrost::backing backing :
         {permafrost::backing::anonymous, permafrost::backing::memfd}) {
      arena_options o;
      o.capacity = std::size_t{1} << 20;
      o.name = c.name;
      o.backing = backing;
      arena a(o);
      INFO("name of " << c.name.size() << " bytes, memfd " << (a.fd() >= 0));
      CHECK(std::string(a.name()) == c.kept);
      CHECK(valid_utf8(a.name()));
      if (a.fd() >= 0) {  // the memfd's own name, as /proc/PID/maps shows it
        char target[256] = {};
        const std::string link = "/proc/self/fd/" + std::to_string(a.fd());
        REQUIRE(::readlink(link.c_str(), target, sizeof target - 1) > 0);
        CHECK(std::string(target).find("permafrost:" + c.kept) != std::string::npos);
        CHECK(valid_utf8(target));
      }
    }
  }
}
