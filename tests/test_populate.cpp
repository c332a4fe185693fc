// Huge pages and pre-faulting: freeze splits no huge page; with arena_options::populate a forked
// worker's first full read takes no page fault on the arena; with open_options::populate an image
// reader's first full read takes none either; huge_pages advises arena and image mappings.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/image.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

#include "arenas.hpp"
#include "fork_probe.hpp"

using permafrost::arena;
using permafrost::arena_options;

namespace {

// Sums one byte per 512 (every page, several times) of [p, p + n).
[[gnu::noinline]] std::uint64_t read_all(const unsigned char* p, std::size_t n) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < n; i += 512) sum += p[i];
  return sum;
}

long faults_now() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt + r.ru_majflt;
}

// Forks a child that reads [p, p + n) once and returns the page faults (minor + major) that
// read took; -1 on failure. With `populate_first`, the child calls its populate() before.
long child_faults_reading(const unsigned char* p, std::size_t n,
                          const arena* populate_first = nullptr) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    unsigned char scratch[4096] = {};
    (void)read_all(scratch, sizeof scratch);  // fault in the code and stack this takes first
    if (populate_first != nullptr) populate_first->populate();
    (void)faults_now();
    const long before = faults_now();
    const std::uint64_t sum = read_all(p, n);
    const long after = faults_now();
    const long faults = after - before + static_cast<long>(sum & 0);  // keep the sum observable
    (void)!::write(fds[1], &faults, sizeof faults);
    ::_exit(sum == ~std::uint64_t{0} ? 1 : 0);
  }
  long faults = -1;
  (void)!::read(fds[0], &faults, sizeof faults);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(WIFEXITED(status));
  return faults;
}

// An arena with 32 MiB allocated but never written (zero pages, not present), frozen.
arena untouched_frozen(bool populate, bool huge, permafrost::backing b,
                       std::span<const unsigned char>* out) {
  arena_options o;
  o.capacity = std::size_t{128} << 20;
  o.name = "populate";
  o.huge_pages = huge;
  o.populate = populate;
  o.backing = b;
  arena a(o);
  auto bytes = a.make_array<unsigned char>(std::size_t{32} << 20);
  bytes[1024] = 7;  // one written byte among untouched pages
  a.freeze();
  *out = bytes;
  return a;
}

// Under TSan every read also touches the runtime's shadow memory, which the parent never wrote
// for these pages, so each first touch faults: the arena's own faults cannot be counted there.
// (A macro, so a failure names the caller's line.)
#define CHECK_NO_ARENA_FAULTS(faults)                                                     \
  do {                                                                                    \
    if constexpr (permafrost::test::under_thread_sanitizer) {                             \
      MESSAGE("fault count not checked under TSan (shadow-memory faults): " << (faults)); \
    } else {                                                                              \
      CHECK((faults) == 0);                                                               \
    }                                                                                     \
  } while (false)

// The VmFlags of the mapping holding p, from /proc/self/smaps ("rd mr mw me sd hg ..."), with a
// space on either side so a flag can be searched as " hg ".
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  bool in = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    if (std::sscanf(line.c_str(), "%lx%c%lx", &lo, &dash, &hi) == 3 && dash == '-')
      in = a >= lo && a < hi;
    else if (in && line.rfind("VmFlags:", 0) == 0) return line.substr(8) + " ";
  }
  return {};
}

struct image_root {
  std::size_t bytes = 0;
};

// Saves an image whose data is 32 MiB of bytes (root first) in a fresh temporary directory.
struct saved_image {
  std::filesystem::path dir;
  std::filesystem::path path;
  saved_image() {
    char tmpl[] = "/tmp/pfpop-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir / "bytes.pfi";
    arena a({.capacity = std::size_t{64} << 20, .name = "image-populate"});
    auto* root = a.make<image_root>();
    auto bytes = a.make_array<unsigned char>(std::size_t{32} << 20);
    for (std::size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<unsigned char>(1 + (i >> 12));
    root->bytes = bytes.size();
    a.freeze();
    permafrost::save_image(a, *root, path);
  }
  ~saved_image() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// Page faults (minor + major) this process takes reading all of an image opened with `options`.
long faults_reading(const std::filesystem::path& path, permafrost::open_options options) {
  const permafrost::image img = permafrost::image::open(path, options);
  const auto* p = reinterpret_cast<const unsigned char*>(img.data().data());
  (void)faults_now();
  const long before = faults_now();
  const std::uint64_t sum = read_all(p, img.data().size());
  const long faults = faults_now() - before;
  CHECK(sum > 0);  // the read happened (and the compiler may not drop it)
  return faults;
}

}  // namespace

PERMAFROST_IMAGE_TYPE(image_root, "permafrost.test.populate.v1");
PERMAFROST_POINTER_FREE(image_root);  // one size_t

TEST_CASE("populate: a forked child's first full read takes no page fault on the arena") {
  std::span<const unsigned char> bytes;
  const arena a = untouched_frozen(true, false, permafrost::backing::anonymous, &bytes);
  CHECK_NO_ARENA_FAULTS(child_faults_reading(bytes.data(), bytes.size()));
  CHECK(bytes[1024] == 7);
}

TEST_CASE("populate: without it the same read faults once per page, so the test measures") {
  std::span<const unsigned char> bytes;
  const arena a = untouched_frozen(false, false, permafrost::backing::anonymous, &bytes);
  const long faults = child_faults_reading(bytes.data(), bytes.size());
  MESSAGE("faults without populate: " << faults);
  CHECK(faults >= static_cast<long>(bytes.size() / 4096) - 1);
}

// Skipped (doctest::skip) where transparent huge pages are `never` or absent.
TEST_CASE("populate with huge pages: no page fault either" *
          doctest::skip(!permafrost::huge_pages_available())) {
  std::span<const unsigned char> bytes;
  const arena a = untouched_frozen(true, true, permafrost::backing::anonymous, &bytes);
  CHECK_NO_ARENA_FAULTS(child_faults_reading(bytes.data(), bytes.size()));
}

TEST_CASE("memfd workers build their page tables lazily; arena::populate() pre-faults them") {
  std::span<const unsigned char> bytes;
  const arena a = untouched_frozen(true, false, permafrost::backing::memfd, &bytes);
  // fork copies no page table of a shared mapping: the child faults (fault-around maps 16
  // pages per fault), by design — that is what makes the fork O(1).
  const long lazy = child_faults_reading(bytes.data(), bytes.size());
  MESSAGE("memfd child faults on first read: " << lazy);
  CHECK(lazy > 0);
  // A worker that wants no faults populates its own page tables first.
  CHECK_NO_ARENA_FAULTS(child_faults_reading(bytes.data(), bytes.size(), &a));
}

// Skipped (doctest::skip) where transparent huge pages are `never` or absent.
TEST_CASE("huge pages survive freeze: AnonHugePages unchanged with an unaligned end" *
          doctest::skip(!permafrost::huge_pages_available())) {
  arena_options o;
  o.capacity = std::size_t{256} << 20;
  o.name = "huge-freeze";
  o.huge_pages = true;
  arena a(o);
  // 63 MiB + 17 bytes: the used end falls inside a huge page.
  auto block = a.make_array<char>((std::size_t{63} << 20) + 17);
  std::memset(block.data(), 1, block.size());
  const std::size_t before_huge = a.huge_page_bytes();
  REQUIRE(before_huge >= std::size_t{32} << 20);
  a.freeze();
  const auto after = a.stats();
  const std::size_t after_huge = a.huge_page_bytes();
  MESSAGE("AnonHugePages before " << before_huge << ", after " << after_huge);
  CHECK(after_huge == before_huge);
  CHECK(after.committed % (std::size_t{2} << 20) == 0);
  CHECK(block[block.size() - 1] == 1);
}

TEST_CASE("prefault: filling a prefaulted range takes no page fault, and clamps to capacity") {
  arena_options o;
  o.capacity = std::size_t{64} << 20;
  o.name = "prefault";
  o.huge_pages = false;
  arena a(o);
  (void)a.allocate(100);  // the thread's chunk is open: prefault starts after it
  const std::size_t bytes = std::size_t{16} << 20;
  a.prefault(bytes);
  const long before = faults_now();
  std::uint64_t last = 0;
  for (std::size_t done = 0; done + 64 <= bytes - 4096; done += 64) {
    auto* p = static_cast<std::uint64_t*>(a.allocate(64));
    *p = done;
    last = *p;
  }
  const long faults = faults_now() - before;
  MESSAGE("faults while filling 16 MiB after prefault: " << faults);
  CHECK_NO_ARENA_FAULTS(faults);
  CHECK(last > 0);
  a.prefault(std::size_t{1} << 40);  // far beyond the capacity: clamped, no throw
  CHECK(a.stats().committed <= std::size_t{64} << 20);
  a.freeze();
  CHECK_THROWS_AS(a.prefault(4096), permafrost::frozen_error);
}

// Skipped under a sanitizer: its runtime's own mappings count against the child's RLIMIT_DATA
// ("Failed to mmap" in the sanitizer, not in the code under test).
TEST_CASE("prefault: more than physical memory is refused before anything is committed" *
          doctest::skip(permafrost::test::under_sanitizer)) {
  // Regression: prefault(SIZE_MAX) clamped to the default 64 GiB capacity and populated it all:
  // the OOM killer ended the process. The capacity is twice the machine's memory, so the clamp
  // alone never saves the case, whatever the machine. In a child under RLIMIT_DATA (which
  // mprotect to writable counts), so a regression fails to commit instead of waking the OOM killer.
  const std::size_t physical = static_cast<std::size_t>(::sysconf(_SC_PHYS_PAGES)) *
                               static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const auto out = permafrost::test::run_capturing_stderr([&] {
    const rlimit data{std::size_t{2} << 30, std::size_t{2} << 30};
    if (::setrlimit(RLIMIT_DATA, &data) != 0) ::_exit(90);
    arena_options o;
    o.capacity = std::max(std::size_t{64} << 30, 2 * physical);
    o.name = "prefault-huge";
    o.huge_pages = false;
    arena a(o);
    (void)a.allocate(100);
    const std::size_t committed = a.stats().committed;
    int failures = 0;
    for (const std::size_t bytes : {std::numeric_limits<std::size_t>::max(), physical + 1}) {
      try {
        a.prefault(bytes);
        std::fprintf(stderr, "prefault(%zu) returned\n", bytes);
        ++failures;
      } catch (const std::system_error& e) {
        if (e.code().value() != ENOMEM ||
            std::string(e.what()).find("physical memory") == std::string::npos) {
          std::fprintf(stderr, "prefault(%zu): %s\n", bytes, e.what());
          ++failures;
        }
      }
      if (a.stats().committed != committed) {  // nothing committed, let alone populated
        std::fprintf(stderr, "prefault(%zu) committed memory\n", bytes);
        ++failures;
      }
    }
    std::fflush(stderr);
    ::_exit(failures == 0 ? 0 : 1);
  });
  INFO(out.stderr_text);
  REQUIRE(WIFEXITED(out.status));
  CHECK(WEXITSTATUS(out.status) == 0);
  // What fits is still served: capacity + 1 on a small arena is clamped, as before.
  arena_options small;
  small.capacity = std::size_t{8} << 20;
  small.huge_pages = false;
  arena b(small);
  b.prefault(small.capacity + 1);
  CHECK(b.stats().committed == small.capacity);
}

TEST_CASE("image populate: reading the whole image after open takes no page fault") {
  const saved_image saved;
  // 4 KiB pages, no checksum: without populate every 16th page or so would fault (the control).
  const long lazy = faults_reading(saved.path, {.verify_checksum = false, .huge_pages = false});
  MESSAGE("faults reading 32 MiB of image without populate: " << lazy);
  CHECK(lazy > 0);
  CHECK_NO_ARENA_FAULTS(faults_reading(
      saved.path, {.verify_checksum = false, .populate = true, .huge_pages = false}));
}

// Skipped (doctest::skip) where transparent huge pages are `never` or absent.
TEST_CASE("image huge_pages: the mapping is advised for huge pages (VmFlags hg); off, it is not" *
          doctest::skip(!permafrost::huge_pages_available())) {
  const saved_image saved;
  const permafrost::image huge = permafrost::image::open(saved.path, {.huge_pages = true});
  const permafrost::image plain = permafrost::image::open(saved.path, {.huge_pages = false});
  CHECK(vm_flags_of(huge.data().data()).find(" hg ") != std::string::npos);
  CHECK(vm_flags_of(plain.data().data()).find(" hg ") == std::string::npos);
  CHECK(huge.root<image_root>().bytes == std::size_t{32} << 20);
}

// Skipped (doctest::skip) where transparent huge pages are `never` or absent.
TEST_CASE("memfd huge_pages: the shared mapping is advised for huge pages before and after freeze" *
          doctest::skip(!permafrost::huge_pages_available())) {
  // Shared-memory huge pages then follow /sys/kernel/mm/transparent_hugepage/shmem_enabled
  // (`never` by default: the advice is kept, the pages stay 4 KiB).
  arena_options o;
  o.capacity = std::size_t{64} << 20;
  o.name = "memfd-huge";
  o.huge_pages = true;
  o.backing = permafrost::backing::memfd;
  arena a(o);
  auto bytes = a.make_array<unsigned char>(std::size_t{8} << 20);
  bytes[0] = 1;
  CHECK(vm_flags_of(bytes.data()).find(" hg ") != std::string::npos);
  a.freeze();  // replaces the mapping with a read-only one: the advice must be given again
  CHECK(vm_flags_of(bytes.data()).find(" hg ") != std::string::npos);
  o.huge_pages = false;
  o.name = "memfd-plain";
  arena plain(o);
  auto other = plain.make_array<unsigned char>(4096);
  other[0] = 1;
  CHECK(vm_flags_of(other.data()).find(" hg ") == std::string::npos);
}
