// The OS layer (src/os): the /proc parsers on the lines the kernel really writes, including the
// awkward ones (paths with spaces, escaped newlines, bytes that are not UTF-8, missing fields,
// numbers too large for 64 bits), and the readers on this process's own /proc files, with
// mappings of files named to break a careless parser.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "fork_probe.hpp"
#include "os/os.hpp"

namespace os = permafrost::os;

namespace {

std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  os::for_each_line(text, [&](std::string_view line) { out.emplace_back(line); });
  return out;
}

// A file of one page named `name` in a scratch directory, mapped read-only; unmapped and removed
// on destruction.
class mapped_file {
 public:
  explicit mapped_file(const std::string& name) {
    static int count = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("permafrost-test-os-" + std::to_string(::getpid()) + "-" + std::to_string(++count));
    std::filesystem::create_directories(dir_);
    path_ = dir_ / name;
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    const std::string data(4096, 'x');  // a real page of data, not a hole
    REQUIRE(::write(fd, data.data(), data.size()) == 4096);
    p_ = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    REQUIRE(p_ != MAP_FAILED);
    (void)*static_cast<const volatile char*>(p_);  // resident, so smaps counts it
  }
  ~mapped_file() {
    ::munmap(p_, 4096);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(p_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path dir_;
  std::filesystem::path path_;
  void* p_ = nullptr;
};

// This process's mapping that starts at `begin`, or one with begin == 0.
os::mapping mapping_at(std::uintptr_t begin) {
  std::vector<os::mapping> maps;
  REQUIRE(os::read_mappings(0, &maps) == 0);
  for (const os::mapping& m : maps) {
    if (m.begin == begin) return m;
  }
  return {};
}

}  // namespace

// ----- for_each_line --------------------------------------------------------------------------

TEST_CASE("for_each_line: no phantom line after the last newline; empty lines kept") {
  CHECK(lines_of("").empty());
  CHECK(lines_of("a") == std::vector<std::string>{"a"});
  CHECK(lines_of("a\n") == std::vector<std::string>{"a"});
  CHECK(lines_of("a\n\nb") == std::vector<std::string>{"a", "", "b"});
  CHECK(lines_of("\n\n") == std::vector<std::string>{"", ""});
}

// ----- parse_maps_header -------------------------------------------------------------------------

TEST_CASE("parse_maps_header: a file mapping, an anonymous one and a named one") {
  os::maps_header h;
  REQUIRE(os::parse_maps_header(
      "7f1c2a000000-7f1c2a021000 r-xp 00002000 08:01 1311 /usr/lib/libc.so.6", &h));
  CHECK(h.begin == 0x7f1c2a000000u);
  CHECK(h.end == 0x7f1c2a021000u);
  CHECK(h.perms == "r-xp");
  CHECK(h.path == "/usr/lib/libc.so.6");

  REQUIRE(os::parse_maps_header("7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ", &h));
  CHECK(h.path.empty());
  REQUIRE(os::parse_maps_header("7f0000000000-7f0000001000 ---p 00000000 00:00 0", &h));
  CHECK(h.perms == "---p");
  CHECK(h.path.empty());

  REQUIRE(os::parse_maps_header(
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0                          [anon:routes]",
      &h));
  CHECK(h.path == "[anon:routes]");
}

TEST_CASE("parse_maps_header: paths keep their spaces, escapes and non-UTF-8 bytes verbatim") {
  os::maps_header h;
  REQUIRE(os::parse_maps_header(
      "7f0000000000-7f0000001000 r--s 00000000 00:05 42   /tmp/a b  c (deleted)", &h));
  CHECK(h.path == "/tmp/a b  c (deleted)");
  // The kernel writes a newline in a path as \012, so a line never breaks inside a path.
  REQUIRE(os::parse_maps_header(
      "7f0000000000-7f0000001000 r--p 00000000 08:01 7 /tmp/one\\012Rss: 9 kB", &h));
  CHECK(h.path == "/tmp/one\\012Rss: 9 kB");
  REQUIRE(os::parse_maps_header(
      "7f0000000000-7f0000001000 r--p 00000000 08:01 7 /tmp/\xff\xfe\x80.bin", &h));
  CHECK(h.path == "/tmp/\xff\xfe\x80.bin");
}

TEST_CASE("parse_maps_header: the top of the address space parses; 17 hex digits do not") {
  os::maps_header h;
  REQUIRE(os::parse_maps_header(
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]", &h));
  CHECK(h.begin == 0xffffffffff600000u);
  CHECK(h.end == 0xffffffffff601000u);
  // Wider than 64 bits: refused, not wrapped around to a small address.
  CHECK_FALSE(os::parse_maps_header(
      "1ffffffffff600000-1ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]", &h));
  CHECK_FALSE(os::parse_maps_header("1000-10000000000000000 rw-p 00000000 00:00 0", &h));
}

TEST_CASE("parse_maps_header: lines that are not headers, or lack the fields, are refused") {
  os::maps_header h;
  CHECK_FALSE(os::parse_maps_header("", &h));
  CHECK_FALSE(os::parse_maps_header("Rss:                   4 kB", &h));
  CHECK_FALSE(os::parse_maps_header("VmFlags: rd wr mr mw me ac sd", &h));
  CHECK_FALSE(os::parse_maps_header("7f0000000000", &h));
  CHECK_FALSE(os::parse_maps_header("7f0000000000-", &h));
  CHECK_FALSE(os::parse_maps_header("7f0000000000-7f0000001000", &h));   // no perms
  CHECK_FALSE(os::parse_maps_header("7f0000000000-7f0000001000 ", &h));  // empty perms
  CHECK_FALSE(os::parse_maps_header("7f0000000000-7f0000001000 rw", &h));
  CHECK_FALSE(os::parse_maps_header("-7f0000001000 rw-p 0 00:00 0", &h));
  CHECK_FALSE(os::parse_maps_header("7F0000000000-7F0000001000 rw-p 0 00:00 0", &h));
  // Only perms: the kernel always writes the rest, but a truncated read may not; the range and
  // permissions are still right.
  REQUIRE(os::parse_maps_header("7f0000000000-7f0000001000 rw-p", &h));
  CHECK(h.perms == "rw-p");
  CHECK(h.path.empty());
}

// ----- parse_smaps_field -------------------------------------------------------------------------

TEST_CASE("parse_smaps_field: kB values in bytes, plain numbers as they are") {
  std::string_view name;
  std::uint64_t bytes = 0;
  REQUIRE(os::parse_smaps_field("Rss:                 123 kB", &name, &bytes));
  CHECK(name == "Rss");
  CHECK(bytes == 123u * 1024);
  REQUIRE(os::parse_smaps_field("THPeligible:    1", &name, &bytes));
  CHECK(name == "THPeligible");
  CHECK(bytes == 1);
  REQUIRE(os::parse_smaps_field("Private_Dirty:0 kB", &name, &bytes));
  CHECK(bytes == 0);
}

TEST_CASE("parse_smaps_field: no number, no name or a header line is not a field") {
  std::string_view name;
  std::uint64_t bytes = 0;
  CHECK_FALSE(os::parse_smaps_field("", &name, &bytes));
  CHECK_FALSE(os::parse_smaps_field("Rss:", &name, &bytes));
  CHECK_FALSE(os::parse_smaps_field("Rss:      kB", &name, &bytes));
  CHECK_FALSE(os::parse_smaps_field(": 12 kB", &name, &bytes));
  CHECK_FALSE(os::parse_smaps_field("VmFlags: rd wr mr mw me", &name, &bytes));
  CHECK_FALSE(os::parse_smaps_field("Rss -12 kB", &name, &bytes));
}

TEST_CASE("parse_smaps_field: a value beyond 64 bits is refused, not wrapped") {
  std::string_view name;
  std::uint64_t bytes = 0;
  REQUIRE(os::parse_smaps_field("Swap: 18446744073709551615", &name, &bytes));
  CHECK(bytes == UINT64_MAX);
  CHECK_FALSE(os::parse_smaps_field("Swap: 18446744073709551616", &name, &bytes));
  CHECK_FALSE(os::parse_smaps_field("Rss: 99999999999999999999999 kB", &name, &bytes));
  // Fits as kB, not as bytes.
  CHECK_FALSE(os::parse_smaps_field("Rss: 18014398509481984 kB", &name, &bytes));
  REQUIRE(os::parse_smaps_field("Rss: 18014398509481983 kB", &name, &bytes));
  CHECK(bytes == 18014398509481983ull * 1024);
}

// ----- proc_path -----------------------------------------------------------------------------

TEST_CASE("proc_path: self, a pid, and a buffer one byte too small") {
  char out[32];
  REQUIRE(os::proc_path(0, "maps", out, sizeof out) == 0);
  CHECK(std::string(out) == "/proc/self/maps");
  REQUIRE(os::proc_path(123, "task/7/children", out, sizeof out) == 0);
  CHECK(std::string(out) == "/proc/123/task/7/children");
  char exact[sizeof "/proc/self/maps"];
  CHECK(os::proc_path(0, "maps", exact, sizeof exact) == 0);
  CHECK(os::proc_path(0, "maps", exact, sizeof exact - 1) == ENAMETOOLONG);
  CHECK(os::proc_path(INT_MAX, "smaps_rollup", out, 8) == ENAMETOOLONG);
}

// ----- the readers, on this process
// ----------------------------------------------------------------

TEST_CASE("read_mappings: files named with spaces, a newline and non-UTF-8 bytes read back exact") {
  const mapped_file spaces("name with  spaces.bin");
  const mapped_file newline("evil\nRss: 999999999 kB");
  const mapped_file bytes("\xff\xfe not utf-8 \x80");

  const os::mapping a = mapping_at(spaces.address());
  CHECK(a.path == spaces.path());
  CHECK(a.readable);
  CHECK_FALSE(a.writable);
  CHECK(a.is_private);
  // The kernel escapes the newline (\012): the mapping stays one line, named as the kernel shows
  // it, and no field is forged.
  const os::mapping b = mapping_at(newline.address());
  std::string escaped = newline.path();
  escaped.replace(escaped.find('\n'), 1, "\\012");
  CHECK(b.path == escaped);
  const os::mapping c = mapping_at(bytes.address());
  CHECK(c.path == bytes.path());

  // smaps stays in step too: the resident page of each file counts once, the forged field never.
  for (const mapped_file* f : {&spaces, &newline, &bytes}) {
    std::uint64_t rss = 0;
    REQUIRE(os::smaps_field_in_range(0, f->address(), f->address() + 4096, "Rss", &rss) == 0);
    CHECK(rss == 4096);
  }
}

TEST_CASE("smaps_field_in_range: a range no mapping overlaps sums to 0; a missing pid fails") {
  std::uint64_t bytes = 1;
  REQUIRE(os::smaps_field_in_range(0, 0, 4096, "Rss", &bytes) == 0);
  CHECK(bytes == 0);
  // pid_max is at most 2^22: this pid never exists.
  const int err = os::smaps_field_in_range(1 << 30, 0, 4096, "Rss", &bytes);
  CHECK((err == ENOENT || err == ESRCH));
}

TEST_CASE("read_proc_file: a whole file, an empty one, and a vanished process") {
  std::string text;
  REQUIRE(os::read_proc_file(0, "status", &text) == 0);
  CHECK(text.find("\nVmRSS:") != std::string::npos);
  // Larger than one read (16 KiB): smaps of a process with a few dozen mappings.
  REQUIRE(os::read_proc_file(0, "smaps", &text) == 0);
  CHECK(text.size() > 16384);
  CHECK(text.back() == '\n');
  const int err = os::read_proc_file(1 << 30, "status", &text);
  CHECK((err == ENOENT || err == ESRCH));
}

TEST_CASE("list_processes includes this process; read_pagemap reads a resident page as present") {
  std::vector<pid_t> pids;
  REQUIRE(os::list_processes(&pids) == 0);
  CHECK(std::find(pids.begin(), pids.end(), ::getpid()) != pids.end());

  static char page[2 * 4096];
  page[4096] = 1;  // resident
  const auto at = (reinterpret_cast<std::uintptr_t>(page) + 4095) & ~std::uintptr_t{4095};
  *reinterpret_cast<volatile char*>(at) = 1;
  std::uint64_t entry = 0;
  REQUIRE(os::read_pagemap(0, at, 1, &entry) == 0);
  CHECK((entry >> 63) == 1);  // present
}

TEST_CASE("reserve: aligned under an address-space limit when a mapping sits just below") {
  // Regression: where the kernel's placement of the exact size was unaligned, reserve() tried
  // the aligned address just below it and then over-reserved by the alignment. With a mapping in
  // the way (mimalloc's segments, in a program linked with the permafrost heap) and a limit that
  // leaves less than size + alignment, it failed: under `ulimit -v 300000` such a program could
  // make no arena. Now it steps further down. In a child: the limit is the child's.
  const auto out = permafrost::test::run_capturing_stderr([] {
    constexpr std::size_t bytes = std::size_t{16} << 20;
    constexpr std::size_t align = std::size_t{64} << 20;
    const auto fail = [](const char* what, int code) {
      std::fprintf(stderr, "%s\n", what);
      std::fflush(stderr);
      ::_exit(code);
    };
    // Where the kernel puts `bytes` now; shifted by a page until that is unaligned. The page goes
    // at the top of where the probe was, so the next probe cannot land there again (a page mapped
    // anywhere fell into some other hole under TSan, whose shadow leaves many, and 64 tries found
    // no unaligned placement).
    std::uintptr_t exact = 0;
    for (int i = 0; i < 64; ++i) {
      void* probe =
          ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (probe == MAP_FAILED) fail("mmap probe", 2);
      ::munmap(probe, bytes);
      exact = reinterpret_cast<std::uintptr_t>(probe);
      if (exact % align != 0) break;
      void* top = reinterpret_cast<void*>(exact + bytes - 4096);
      if (::mmap(top, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) !=
          top)
        fail("mmap shift", 2);
    }
    if (exact % align == 0) fail("no unaligned placement found", 2);
    // A page in the way at the aligned address just below, as a neighbour mapping would be.
    void* in_way = reinterpret_cast<void*>(exact & ~(align - 1));
    if (::mmap(in_way, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) !=
        in_way)
      fail("mmap in the way", 2);
    // Room for `bytes` and 8 MiB more, not for bytes + align.
    std::size_t left = 0;
    std::FILE* status = std::fopen("/proc/self/status", "r");
    char line[256];
    std::size_t vm_kib = 0;
    while (status != nullptr && std::fgets(line, sizeof line, status) != nullptr)
      if (std::strncmp(line, "VmSize:", 7) == 0) vm_kib = std::strtoull(line + 7, nullptr, 10);
    if (status != nullptr) std::fclose(status);
    const rlim_t limit = (vm_kib << 10) + bytes + (std::size_t{8} << 20);
    const rlimit rl{limit, limit};
    if (::setrlimit(RLIMIT_AS, &rl) != 0) fail("setrlimit", 2);
    if (permafrost::os::address_space_left(&left) != 0 || left >= bytes + align)
      fail("the limit leaves room for the over-reservation", 2);
    void* p = nullptr;
    const int err = permafrost::os::reserve(bytes, align, &p);
    if (err != 0) fail("reserve failed", 1);
    if (reinterpret_cast<std::uintptr_t>(p) % align != 0) fail("reserve is not aligned", 1);
    ::_exit(0);
  });
  INFO(out.stderr_text);
  REQUIRE(WIFEXITED(out.status));
  CHECK(WEXITSTATUS(out.status) == 0);
}

TEST_CASE("reserve_at: a range over the top of the address space is refused, not moved to 0") {
  // Regression: under ThreadSanitizer, whose mmap wrapper swaps such an address for 0, the range
  // was mapped at address 0 and TSan killed the process (an attach child did, at 512 GiB). The
  // kernel's own answer is a refusal, unless it has 5-level page tables and grants the range.
  constexpr std::uintptr_t top = std::uintptr_t{1} << 47;  // x86-64's usual top, 128 TiB
  constexpr std::size_t bytes = std::size_t{1} << 39;      // 512 GiB, half of it past the top
  void* p = reinterpret_cast<void*>(top - bytes / 2);
  const int err = os::reserve_at(p, bytes);
  if (err == 0) {
    CHECK(os::release(p, bytes) == 0);
  } else {
    CHECK((err == ENOMEM || err == EEXIST));
  }
}
