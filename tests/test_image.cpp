// Frozen images: save, open at any address, share between unrelated processes (exec'd, checked
// through smaps and pagemap), every bad-image case, open_fd from a memfd and over a Unix socket,
// and the write trap on image memory.
#include <doctest/doctest.h>

#include <permafrost/image.hpp>
#include <permafrost/memstat.hpp>
#include <permafrost/write_trap.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <string>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "arena/arena_slot.hpp"
#include "arenas.hpp"
#include "child_process.hpp"
#include "fd_passing.hpp"
#include "fork_probe.hpp"
#include "image_table.hpp"
#include "limit_child.hpp"
#include "proc.hpp"

extern char** environ;

using permafrost::arena;
using permafrost::image;
using permafrost::image_error;
using reason = permafrost::image_error::reason;
namespace fs = std::filesystem;
namespace pt = permafrost::test;

namespace {

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    char tmpl[] = "/tmp/pfi-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const char* name) const { return path / name; }
};

// Builds a frozen arena holding the test table of n keys; returns the root.
const pt::image_table* frozen_table(arena& a, std::uint64_t n) {
  const pt::image_table* root = pt::build_image_table(a, n);
  a.freeze();
  return root;
}

void save_table(const fs::path& path, std::uint64_t n, std::string_view metadata = {}) {
  arena a;
  const pt::image_table* root = frozen_table(a, n);
  permafrost::save_image(a, *root, path, {.metadata = metadata});
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Opens `path` expecting an image_error; returns it (fails the test when open succeeds).
image_error open_error(const fs::path& path, permafrost::open_options options = {}) {
  try {
    (void)image::open(path, options);
  } catch (const image_error& e) {
    return e;
  }
  FAIL("image::open('" << path << "') succeeded");
  return image_error(reason::io, "");
}

// An exec'd image_child with a pipe to its stdin (closed to let it exit) and its report line.
struct spawned_child {
  pid_t pid = -1;
  int stdin_fd = -1;
  std::string report;  // "ok <addr> <bytes> <wrong> <frozen>" or "error ..."
  std::uintptr_t data = 0;
  std::size_t bytes = 0;
  unsigned long long wrong = ~0ull;
  int frozen = 0;

  // Lets the child exit and returns its wait status.
  int finish() {
    if (stdin_fd >= 0) ::close(std::exchange(stdin_fd, -1));
    return pid > 0 ? pt::wait_for(std::exchange(pid, -1)) : 0;
  }
  ~spawned_child() { finish(); }
};

// Spawns image_child with `source` ("-" for a descriptor sent over fd 3: `fd`) and reads its
// report line.
void spawn_child(spawned_child& c, const std::string& source, std::uint64_t n, int fd = -1,
                 const char* root = "table") {
  int in[2], out[2], sv[2] = {-1, -1};
  REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  if (fd >= 0) {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
  }
  char path[] = PERMAFROST_IMAGE_CHILD;
  std::string count = std::to_string(n);
  std::string src = source;
  std::string root_kind = root;
  char* argv[] = {path, src.data(), count.data(), root_kind.data(), nullptr};
  const int rc = ::posix_spawn(&c.pid, path, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  c.stdin_fd = in[1];
  REQUIRE(rc == 0);
  if (fd >= 0) {
    ::close(sv[1]);
    const char byte = 'i';
    CHECK(pt::send_with_fd(sv[0], &byte, 1, fd));
    ::close(sv[0]);
  }
  for (char ch; (ch = pt::read_byte(out[0])) != '\0' && ch != '\n';) c.report += ch;
  ::close(out[0]);
  unsigned long addr = 0;
  if (std::sscanf(c.report.c_str(), "ok %lx %zu %llu %d", &addr, &c.bytes, &c.wrong, &c.frozen) ==
      4)
    c.data = addr;
}

// Flips one byte of the file at `offset`.
void flip_byte(const fs::path& p, std::size_t offset) {
  std::string bytes = read_all(p);
  REQUIRE(offset < bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  write_all(p, bytes);
}

constexpr std::size_t header_bytes = 144;
constexpr std::size_t data_offset = 2 << 20;  // header + metadata (at most 4 KiB), then a hole

struct other_root {
  std::uint64_t x = 0;
};

}  // namespace

PERMAFROST_IMAGE_TYPE(other_root, "permafrost.test.other_root.v1");

TEST_CASE("an image saved and opened in one process answers every lookup and keeps its metadata") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  arena a;
  const pt::image_table* built = frozen_table(a, 5000);
  permafrost::save_image(a, *built, path, {.metadata = "built by test_image"});
  CHECK(fs::file_size(path) == data_offset + a.used_bytes().size());

  const image img = image::open(path);
  const auto& t = img.root<pt::image_table>();
  CHECK(pt::check_image_table(t, 5000) == 0);
  CHECK(img.metadata() == "built by test_image");
  CHECK(img.name() == path.string());
  CHECK(img.root_tag().name == "permafrost.test.image_table.v1");
  CHECK(img.root_tag().size == sizeof(pt::image_table));
  REQUIRE(img.data().size() == a.used_bytes().size());
  CHECK(std::memcmp(img.data().data(), a.used_bytes().data(), img.data().size()) == 0);
  // The root sits at the offset it had in the arena.
  CHECK(reinterpret_cast<const std::byte*>(&t) - img.data().data() ==
        reinterpret_cast<const std::byte*>(built) - a.used_bytes().data());
  CHECK(img.contains(&t));
  CHECK_FALSE(img.contains(built));
}

TEST_CASE("image memory is a read-only shared mapping of the file, frozen for is_frozen()") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 1000);
  const image img = image::open(path);
  const void* p = &img.root<pt::image_table>();
  CHECK(permafrost::is_frozen(p));
  CHECK(permafrost::is_frozen(img.data().data() + img.data().size() - 1));
  CHECK_FALSE(permafrost::is_frozen(img.data().data() + img.data().size()));
  const std::string line = pt::maps_line_of(p);
  MESSAGE(line);
  CHECK(line.find("r--s") != std::string::npos);
  CHECK(line.find(path.string()) != std::string::npos);
}

TEST_CASE("an image closed gives its address range back; is_frozen() no longer answers for it") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  const void* p = nullptr;
  {
    const image img = image::open(path);
    p = img.data().data();
    CHECK(permafrost::is_frozen(p));
  }
  CHECK_FALSE(permafrost::is_frozen(p));
  CHECK(pt::maps_line_of(p).find(path.string()) == std::string::npos);
}

TEST_CASE("the same image opened twice in one process sits at two addresses and answers the same") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 20000);
  const image first = image::open(path);
  const image second = image::open(path, {.verify_checksum = false});
  CHECK(first.data().data() != second.data().data());
  const auto& t1 = first.root<pt::image_table>();
  const auto& t2 = second.root<pt::image_table>();
  CHECK(pt::check_image_table(t1, 20000) == 0);
  CHECK(pt::check_image_table(t2, 20000) == 0);
  for (std::uint64_t i = 0; i < 20000; i += 997) {
    const auto* r1 = t1.find(pt::image_key(i));
    const auto* r2 = t2.find(pt::image_key(i));
    REQUIRE(r1 != nullptr);
    REQUIRE(r2 != nullptr);
    CHECK(r1 != r2);
    CHECK(r1->id == r2->id);
    CHECK(r1->b == r2->b);
  }
}

TEST_CASE("a moved image keeps its mapping; the moved-from image owns nothing") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  image a = image::open(path);
  const void* data = a.data().data();
  image b = std::move(a);
  CHECK(b.data().data() == data);
  CHECK(a.data().empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(pt::check_image_table(b.root<pt::image_table>(), 100) == 0);
  image c = image::open(path);
  const void* replaced = c.data().data();
  CHECK(permafrost::is_frozen(replaced));
  c = std::move(b);
  CHECK(c.data().data() == data);
  CHECK(permafrost::is_frozen(data));
  CHECK_FALSE(permafrost::is_frozen(replaced));  // the image c held before was unmapped
  CHECK(c.name() == path.string());
  // root() of the moved-from image threw "root type mismatch: the file holds ''": it aborts
  // with a message now, as use of a moved-from arena does.
  const pt::child_output out = pt::run_capturing_stderr([&] {
    std::signal(SIGABRT, SIG_DFL);
    (void)a.root<pt::image_table>();  // NOLINT(bugprone-use-after-move): the misuse tested
  });
  CHECK(WIFSIGNALED(out.status));
  CHECK(WTERMSIG(out.status) == SIGABRT);
  CHECK(out.stderr_text.find("root() of a moved-from permafrost::image") != std::string::npos);
}

TEST_CASE(
    "four exec'd processes open one image: right answers, one copy in memory, no private page") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  constexpr std::uint64_t n = 200000;
  save_table(path, n);
  const std::size_t image_bytes = fs::file_size(path) - data_offset;

  spawned_child children[4];
  for (auto& c : children) spawn_child(c, path.string(), n);
  std::uint64_t mapping_pss = 0;
  std::uint64_t total_pss = 0;
  std::uint64_t total_rss = 0;
  std::uint64_t total_uss = 0;
  for (auto& c : children) {
    INFO("child report: " << c.report);
    REQUIRE(c.data != 0);
    CHECK(c.wrong == 0);
    CHECK(c.frozen == 1);
    CHECK(c.bytes == image_bytes);
    const permafrost::memory_usage m =
        permafrost::range_memory(c.pid, reinterpret_cast<const void*>(c.data),
                                 reinterpret_cast<const void*>(c.data + c.bytes));
    // Checksum verification and the lookups touched every page: all resident, none private.
    CHECK(m.rss >= image_bytes);
    CHECK(m.uss == 0);
    mapping_pss += m.pss;
    const permafrost::memory_usage whole = permafrost::process_memory(c.pid);
    total_pss += whole.pss;
    total_rss += whole.rss;
    total_uss += whole.uss;
    // pagemap: every page present, none exclusively mapped (bit 56).
    const auto entries = pt::pagemap(c.pid, reinterpret_cast<const void*>(c.data), c.bytes);
    std::size_t present = 0, exclusive = 0;
    for (std::uint64_t e : entries) {
      present += (e >> 63) & 1;
      exclusive += (e >> 56) & 1;
    }
    CHECK(present == entries.size());
    CHECK(exclusive == 0);
  }
  MESSAGE("image " << image_bytes << " bytes; PSS of its mappings in 4 processes " << mapping_pss
                   << "; total PSS " << total_pss << ", total RSS " << total_rss << ", total USS "
                   << total_uss);
  // Each page is counted once across the four: PSS sums to the image's size (page-rounded).
  const double ratio = static_cast<double>(mapping_pss) / static_cast<double>(image_bytes);
  CHECK(ratio > 0.95);
  CHECK(ratio < 1.05);
  // The four processes together: the image once, their private memory, and their share of the
  // shared libraries (a few MiB each).
  CHECK(total_pss < image_bytes * 105 / 100 + total_uss + 4 * (std::uint64_t{8} << 20));
  CHECK(total_rss > 4 * image_bytes);
  if constexpr (permafrost::test::under_sanitizer) {
    MESSAGE("not checked under a sanitizer: that each reader's private memory is small (the "
            "sanitizer's shadow memory is private to each process)");
  } else {
    CHECK(total_uss < 4 * (std::uint64_t{16} << 20));
  }
  for (auto& c : children) {
    const int status = c.finish();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}

TEST_CASE("open_fd maps an image held in a memfd") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 3000, "memfd copy");
  const std::string bytes = read_all(path);
  const int fd = ::memfd_create("permafrost-image-test", MFD_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  const off_t position = ::lseek(fd, 0, SEEK_CUR);
  {
    const image img = image::open_fd(fd);
    CHECK(pt::check_image_table(img.root<pt::image_table>(), 3000) == 0);
    CHECK(img.metadata() == "memfd copy");
    CHECK(img.name().find("fd " + std::to_string(fd)) == 0);
    CHECK(img.name().find("/memfd:permafrost-image-test") != std::string::npos);
    CHECK(::lseek(fd, 0, SEEK_CUR) == position);  // only pread: the position is the caller's
  }
  CHECK(::fcntl(fd, F_GETFD) >= 0);  // the caller's descriptor stays open
  ::close(fd);
}

TEST_CASE("open_fd_named maps the file the caller opened, named as the caller says") {
  // A caller that opens the path itself knows which file it maps (fstat), even if another is
  // renamed over the path before the mapping; the name keeps errors and name() readable.
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  const fs::path other = dir / "other.pfi";
  save_table(path, 300, "first");
  save_table(other, 10, "second");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  fs::rename(other, path);  // the path now holds another file; fd still names the first
  {
    const image img = image::open_fd_named(fd, "my table");
    CHECK(img.metadata() == "first");
    CHECK(pt::check_image_table(img.root<pt::image_table>(), 300) == 0);
    CHECK(img.name() == "my table");
  }
  ::close(fd);
  const int empty = ::memfd_create("permafrost-image-empty", MFD_CLOEXEC);
  REQUIRE(empty >= 0);
  try {
    (void)image::open_fd_named(empty, "my table");
    FAIL("an empty file was mapped");
  } catch (const image_error& e) {
    CHECK(e.why() == image_error::reason::truncated);
    CHECK(std::string(e.what()).find("permafrost::image::open('my table')") == 0);
  }
  ::close(empty);
}

TEST_CASE("open_fd of a read-write memfd maps it through a read-only descriptor: no way to write") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  const std::string bytes = read_all(path);
  const int fd = ::memfd_create("permafrost-image-rw", MFD_CLOEXEC);  // O_RDWR, as every memfd
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  const image img = image::open_fd(fd);
  CHECK((::fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);  // the caller's descriptor is untouched
  auto* page = const_cast<std::byte*>(img.data().data());
  // The compromised worker of docs/security.md: neither way around the protection works.
  const int status = pt::wait_status_of([&] {
    if (::mprotect(page, 4096, PROT_READ | PROT_WRITE) == 0) ::_exit(10);
    if (errno != EACCES) ::_exit(11);
    const int mem = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (mem < 0) ::_exit(12);
    const char byte = 'X';
    if (::pwrite(mem, &byte, 1, static_cast<off_t>(reinterpret_cast<std::uintptr_t>(page))) == 1)
      ::_exit(13);
    ::_exit(0);
  });
  INFO("child exit 10: mprotect(PROT_WRITE) succeeded; 13: /proc/self/mem wrote");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  char first = 0;
  REQUIRE(::pread(fd, &first, 1, data_offset) == 1);
  CHECK(first == static_cast<char>(img.data()[0]));
  CHECK(pt::check_image_table(img.root<pt::image_table>(), 100) == 0);
  ::close(fd);
}

TEST_CASE("an image file received over a Unix socket is opened by an exec'd process") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 4000);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  fs::remove(path);  // the receiver has only the descriptor
  spawned_child c;
  spawn_child(c, "-", 4000, fd);
  ::close(fd);
  INFO("child report: " << c.report);
  CHECK(c.report.rfind("ok ", 0) == 0);
  CHECK(c.wrong == 0);
  CHECK(c.frozen == 1);
  const int status = c.finish();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE(
    "with all 1024 slots in use, a new arena, an attach and an image open each name the limit") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 10);
  arena shared(
      {.capacity = 1 << 20, .name = "slot-limit-memfd", .backing = permafrost::backing::memfd});
  (void)shared.make<int>(1);
  shared.freeze();
  std::vector<arena> live;
  const std::string limit_text = "all 1024 arena slots are in use";
  try {
    for (int i = 0; i < 2048; ++i)
      live.emplace_back(permafrost::arena_options{.capacity = 1 << 20});
    FAIL("2048 arenas were made");
  } catch (const permafrost::arena_limit_error& e) {
    CHECK(e.which() == permafrost::arena_limit_error::limit::slots);
    CHECK(std::string(e.what()).find(limit_text) != std::string::npos);
  }
  MESSAGE(live.size() << " arenas made before the limit");
  CHECK(live.size() < 1024);
  try {
    (void)image::open(path);
    FAIL("an image opened with every slot in use");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::no_free_slot);
    CHECK(std::string(e.what()).find(limit_text) != std::string::npos);
    CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
  }
  try {
    (void)arena::attach(shared.fd());
    FAIL("an arena attached with every slot in use");
  } catch (const permafrost::attach_error& e) {
    CHECK(std::string(e.what()).find(limit_text) != std::string::npos);
  }
  // Caught as what it always was: std::bad_alloc.
  try {
    arena one_more({.capacity = 1 << 20});
    FAIL("an arena was made with every slot in use");
  } catch (const std::bad_alloc& e) {
    CHECK(std::string(e.what()).find(limit_text) != std::string::npos);
  }
  live.pop_back();  // one slot free again: the image opens
  const image img = image::open(path);
  CHECK(pt::check_image_table(img.root<pt::image_table>(), 10) == 0);
}

TEST_CASE("a missing file is an io image_error naming the path") {
  temp_dir dir;
  const fs::path path = dir / "absent.pfi";
  const image_error e = open_error(path);
  CHECK(e.why() == reason::io);
  CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
  CHECK(std::string(e.what()).find("No such file") != std::string::npos);
}

TEST_CASE("a truncated file is refused as truncated, wherever it was cut") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 2000);
  const std::string whole = read_all(path);
  for (std::size_t keep : {std::size_t{0}, std::size_t{7}, header_bytes - 1, header_bytes + 3,
                           data_offset, whole.size() - 1}) {
    CAPTURE(keep);
    write_all(path, whole.substr(0, keep));
    const image_error e = open_error(path);
    CHECK(e.why() == reason::truncated);
    CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
    CHECK(std::string(e.what()).find("truncated") != std::string::npos);
  }
}

TEST_CASE("a file longer than its image is refused as bad_header, whatever follows the image") {
  // Regression: bytes after the data were ignored, so an image with another file appended, or
  // one written over a longer file without truncating it, opened as if whole.
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 2000);
  const std::string whole = read_all(path);
  for (const std::string& extra : {std::string(1, '\0'), std::string(4096, 'x'), whole}) {
    CAPTURE(extra.size());
    write_all(path, whole + extra);
    const image_error e = open_error(path);
    CHECK(e.why() == reason::bad_header);
    CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
    CHECK(std::string(e.what()).find(std::to_string(extra.size()) + " bytes after the end") !=
          std::string::npos);
  }
  write_all(path, whole);
  CHECK(image::open(path).root<pt::image_table>().count == 2000);
}

TEST_CASE("a file that holds less than its size says is refused as truncated, not io") {
  // Regression: /sys files claim 4096 bytes and hold fewer; the short read of the
  // header was reported as "reading the header: Input/output error".
  const fs::path path = "/sys/kernel/mm/transparent_hugepage/enabled";
  if (!fs::exists(path)) {
    MESSAGE("skipped: no " << path);
    return;
  }
  const image_error e = open_error(path);
  CHECK(e.why() == reason::truncated);
  CHECK(std::string(e.what()).find("the file ended while reading the header") != std::string::npos);
}

TEST_CASE("a file with the wrong magic is refused as bad_magic") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  flip_byte(path, 0);
  const image_error e = open_error(path);
  CHECK(e.why() == reason::bad_magic);
  CHECK(std::string(e.what()).find("not a permafrost image") != std::string::npos);
  write_all(path, std::string(4096, 'x'));
  CHECK(open_error(path).why() == reason::bad_magic);
}

namespace {
// Saves an image, writes `version` into its header (checked before the header checksum, so the
// checksum need not match) and returns the error opening it gives.
image_error version_error(std::uint32_t version) {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  std::string bytes = read_all(path);
  std::memcpy(bytes.data() + 8, &version, sizeof version);
  write_all(path, bytes);
  return open_error(path);
}
}  // namespace

TEST_CASE("a newer format version is refused as version") {
  const image_error e = version_error(4);
  CHECK(e.why() == reason::version);
  CHECK(std::string(e.what()).find("format version 4 is newer than this library reads (3)") !=
        std::string::npos);
}

TEST_CASE("a format version 1 image (tables before the tag lines) is refused as version") {
  const image_error e = version_error(1);
  CHECK(e.why() == reason::version);
  CHECK(std::string(e.what()).find("format version 1 is older than this library reads (3)") !=
        std::string::npos);
  CHECK(std::string(e.what()).find("save the image again") != std::string::npos);
}

TEST_CASE("a format version 2 image (string keys beside their values) is refused as version") {
  // Version 2 hash tables with string keys stored [value][length][key] entries; read with the
  // version 3 layout (values apart, keys packed) they would give wrong answers, so the file is
  // refused before anything is mapped, with what to do.
  const image_error e = version_error(2);
  CHECK(e.why() == reason::version);
  const std::string what = e.what();
  CHECK(what.find("format version 2 is older than this library reads (3)") != std::string::npos);
  CHECK(what.find("build and save the image again") != std::string::npos);
}

TEST_CASE("the data starts 2 MiB into the file, after a hole") {
  // So page-cache huge pages map whole (file offset and address agree modulo 2 MiB), while the
  // space between the header and the data takes no disk blocks.
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 1000);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  const auto file_bytes = static_cast<std::size_t>(st.st_size);
  CHECK(file_bytes > data_offset);
  CHECK(static_cast<std::size_t>(st.st_blocks) * 512 < file_bytes - data_offset + (64 << 10));
  const image img = image::open(path);
  CHECK(reinterpret_cast<std::uintptr_t>(img.data().data()) % (2 << 20) == 0);
}

TEST_CASE("another word size or byte order is refused as platform") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  std::string bytes = read_all(path);
  bytes[13] = 2;  // big-endian
  write_all(path, bytes);
  CHECK(open_error(path).why() == reason::platform);
  bytes[13] = 1;
  bytes[12] = 4;  // 32-bit
  write_all(path, bytes);
  const image_error e = open_error(path);
  CHECK(e.why() == reason::platform);
  CHECK(std::string(e.what()).find("32-bit") != std::string::npos);
}

TEST_CASE("one flipped data byte fails the checksum; with verification off the image opens") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 2000);
  flip_byte(path, data_offset + 1234);
  const image_error e = open_error(path);
  CHECK(e.why() == reason::checksum);
  CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
  CHECK(std::string(e.what()).find("checksum") != std::string::npos);
  const image unchecked = image::open(path, {.verify_checksum = false});
  CHECK(unchecked.data().size() > 1234);
}

TEST_CASE("open_options::step runs per open_step_bytes populated and hashed; a throw unmaps") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 1000000);
  std::size_t calls = 0;
  std::size_t size = 0;
  {
    const image img = image::open(path, {.populate = true, .step = [&] { ++calls; }});
    size = img.data().size();
  }
  const std::size_t chunks = (size + permafrost::open_step_bytes - 1) / permafrost::open_step_bytes;
  REQUIRE(chunks >= 2);
  CHECK(calls == 2 * chunks);  // populate, then the checksum
  struct stop {};
  calls = 0;
  CHECK_THROWS_AS(image::open(path, {.step =
                                         [&] {
    if (++calls == 2) throw stop{};
                              }}),
                  stop);
  CHECK(calls == 2);
  CHECK_FALSE(pt::mapped(path.string()));  // nothing of the abandoned open stays mapped
  const image again = image::open(path);   // and the file is as it was
  CHECK(again.data().size() == size);
}

TEST_CASE("one flipped byte in any header field or the metadata is refused as bad_header") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100, "some metadata");
  const std::string original = read_all(path);
  // Past magic (0-7), version (8-11), word size and byte order (12-13): every other header byte.
  for (std::size_t at = 14; at < header_bytes + 13; ++at) {
    CAPTURE(at);
    std::string bytes = original;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
    write_all(path, bytes);
    const image_error e = open_error(path);
    CHECK(e.why() == reason::bad_header);
  }
}

TEST_CASE("root<T>() with another type throws type_mismatch naming both types") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  const image img = image::open(path);
  try {
    (void)img.root<other_root>();
    FAIL("root<other_root>() did not throw");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::type_mismatch);
    const std::string what = e.what();
    CHECK(what.find("permafrost.test.image_table.v1") != std::string::npos);
    CHECK(what.find("permafrost.test.other_root.v1") != std::string::npos);
    CHECK(what.find(path.string()) != std::string::npos);
  }
}

TEST_CASE("what cannot be mapped is refused as not_mappable: a pipe, a device, a directory") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  try {
    (void)image::open_fd(p[0]);
    FAIL("open_fd of a pipe succeeded");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::not_mappable);
    CHECK(std::string(e.what()).find("pipe:") != std::string::npos);
  }
  ::close(p[0]);
  ::close(p[1]);
  CHECK(open_error("/dev/null").why() == reason::not_mappable);
  temp_dir dir;
  CHECK(open_error(dir.path).why() == reason::not_mappable);
}

TEST_CASE("a FIFO with no writer is refused as not_mappable at once; it does not block open") {
  temp_dir dir;
  const fs::path fifo = dir / "table.pfi";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // In a child with an alarm: an open that waits for a writer would hang the suite otherwise.
  const int status = pt::wait_status_of([&] {
    ::alarm(20);
    try {
      (void)image::open(fifo);
    } catch (const image_error& e) {
      const bool named = std::string(e.what()).find(fifo.string()) != std::string::npos;
      ::_exit(e.why() == reason::not_mappable && named ? 0 : 2);
    }
    ::_exit(1);  // opened
  });
  INFO("wait status " << status << " (SIGALRM " << SIGALRM << ": open() blocked)");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("save_image refuses an unfrozen arena and a root outside the arena") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  arena a;
  const pt::image_table* root = pt::build_image_table(a, 10);
  try {
    permafrost::save_image(a, *root, path);
    FAIL("saving an unfrozen arena succeeded");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::not_frozen);
  }
  a.freeze();
  const pt::image_table outside{};
  try {
    permafrost::save_image(a, outside, path);
    FAIL("saving a root outside the arena succeeded");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::root_outside);
  }
  try {
    permafrost::save_image(a, *root, path, {.metadata = std::string(4097, 'm')});
    FAIL("saving 4097 bytes of metadata succeeded");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::bad_header);
  }
  CHECK_FALSE(fs::exists(path));
  CHECK(fs::is_empty(dir.path));  // no temporary file left behind
}

// Counts the program's umask(2) calls while a test watches, then makes the call: this definition
// takes the place of the C library's for every caller in this executable, the library included.
// Changing the umask for an instant (umask(0) to read it, then back) is a race no other thread
// could be sure to lose, so the watch is what makes "never changes it" testable.
namespace {
std::atomic<bool> g_watch_umask{false};
std::atomic<int> g_umask_calls{0};
}  // namespace
extern "C" mode_t umask(mode_t mask) noexcept {
  if (g_watch_umask.load()) ++g_umask_calls;
  return static_cast<mode_t>(::syscall(SYS_umask, mask));
}

namespace {
// The process umask as /proc/self/status shows it ("Umask:\t0022"), or -1.
int umask_in_status() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    unsigned mask = 0;
    if (std::sscanf(line.c_str(), "Umask: %o", &mask) == 1) return static_cast<int>(mask);
  }
  return -1;
}
}  // namespace

TEST_CASE("save_image makes the file 0644 less the umask, and never changes the umask") {
  temp_dir dir;
  const mode_t saved = ::umask(027);
  {
    const fs::path path = dir / "masked.pfi";
    save_table(path, 10);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
  }
  ::umask(022);
  // Another thread creates files while this one saves: with the umask changed for even an
  // instant (umask(0) to read it) one of them would be created world-writable.
  arena a;
  const pt::image_table* root = frozen_table(a, 10);
  std::atomic<bool> saving{true};
  std::atomic<int> world_writable{0}, umask_seen_changed{0}, created{0};
  std::thread creator([&] {
    const std::string probe = (dir / "probe").string();
    while (saving.load()) {
      const int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd >= 0) {
        struct stat st {};
        if (::fstat(fd, &st) == 0 && (st.st_mode & 0002) != 0) ++world_writable;
        ::close(fd);
        ::unlink(probe.c_str());
        ++created;
      }
      if (umask_in_status() != 022) ++umask_seen_changed;
    }
  });
  g_umask_calls = 0;
  g_watch_umask = true;
  for (int i = 0; i < 100; ++i) permafrost::save_image(a, *root, dir / "raced.pfi");
  g_watch_umask = false;
  saving = false;
  creator.join();
  ::umask(saved);
  MESSAGE(created.load() << " files created during 100 saves");
  CHECK(g_umask_calls.load() == 0);
  CHECK(created.load() > 0);
  CHECK(world_writable.load() == 0);
  CHECK(umask_seen_changed.load() == 0);
}

namespace {
// The uid that saves into a write-only directory: this process's own, or nobody's when it is
// root (root reads every directory whatever its mode, so it would not show the case).
constexpr uid_t nobody = 65534;

// True when a forked child can take that uid (root in a namespace without it cannot).
bool can_be_an_ordinary_user() {
  if (::geteuid() != 0) return true;
  const int status = pt::wait_status_of([] {
    ::_exit(::setgid(nobody) == 0 && ::setuid(nobody) == 0 && ::geteuid() == nobody ? 0 : 1);
  });
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
}  // namespace

// Skipped only for root in a user namespace that has no uid 65534 to drop to.
TEST_CASE("save_image into a directory it may write but not read succeeds, twice" *
          doctest::skip(!can_be_an_ordinary_user())) {
  temp_dir dir;
  const fs::path box = dir / "write-only";
  REQUIRE(::mkdir(box.c_str(), 0700) == 0);
  if (::geteuid() == 0) {
    REQUIRE(::chmod(dir.path.c_str(), 0711) == 0);  // nobody may pass through
    REQUIRE(::chown(box.c_str(), nobody, nobody) == 0);
  }
  REQUIRE(::chmod(box.c_str(), 0300) == 0);  // -wx: create and rename, but no listing, no open
  const fs::path path = box / "table.pfi";
  arena first_arena, second_arena;
  const pt::image_table* first = frozen_table(first_arena, 10);
  const pt::image_table* second = frozen_table(second_arena, 20);
  // In a child that is an ordinary user: 0 = both saves succeeded, 1-2 = save 1-2 threw.
  const pt::child_output out = pt::run_capturing_stderr([&] {
    if (::geteuid() == 0 && (::setgid(nobody) != 0 || ::setuid(nobody) != 0)) ::_exit(9);
    int step = 1;
    try {
      permafrost::save_image(first_arena, *first, path);
      step = 2;  // the target exists now: this save replaces it
      permafrost::save_image(second_arena, *second, path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      ::_exit(step);
    }
    ::_exit(0);
  });
  INFO("child stderr: " << out.stderr_text);
  REQUIRE(WIFEXITED(out.status));
  CHECK(WEXITSTATUS(out.status) == 0);
  const image img = image::open(path);  // root, or the owner of the -wx directory: both may
  CHECK(pt::check_image_table(img.root<pt::image_table>(), 20) == 0);
  REQUIRE(::chmod(box.c_str(), 0700) == 0);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(box)) ++entries;
  CHECK(entries == 1);  // no temporary file left
}

TEST_CASE("save_image into a missing directory is an io error; nothing is left behind") {
  temp_dir dir;
  arena a;
  const pt::image_table* root = frozen_table(a, 10);
  try {
    permafrost::save_image(a, *root, dir / "no-such-dir/table.pfi");
    FAIL("saving into a missing directory succeeded");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::io);
    CHECK(std::string(e.what()).find("no-such-dir/table.pfi") != std::string::npos);
  }
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("save_image to an empty path or one ending in a slash is an io error naming no temp") {
  // Regression: the error named a temporary file (".XXXXXX" made in the directory, then renamed
  // over nothing) rather than the path.
  temp_dir dir;
  arena a;
  const pt::image_table* root = frozen_table(a, 10);
  for (const fs::path& path : {fs::path{}, fs::path{dir.path.string() + "/"}}) {
    CAPTURE(path);
    try {
      permafrost::save_image(a, *root, path);
      FAIL("saving to a path naming no file succeeded");
    } catch (const image_error& e) {
      CHECK(e.why() == reason::io);
      CHECK(std::string(e.what()).find("names no file") != std::string::npos);
      CHECK(std::string(e.what()).find("XXXXXX") == std::string::npos);
    }
  }
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("a path with a NUL byte is refused by save_image and image::open") {
  // The system sees the path up to its NUL: open("good\0/../other") opened good, and save_image
  // refused the path with a message cut at the NUL.
  temp_dir dir;
  arena a;
  const pt::image_table* root = frozen_table(a, 10);
  const fs::path good = dir.path / "good.pfi";
  permafrost::save_image(a, *root, good);
  const fs::path crafted{good.string() + std::string("\0/../other.pfi", 14)};
  try {
    (void)image::open(crafted);
    FAIL("opened a path with a NUL byte");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::io);
    CHECK(std::string(e.what()).find("good.pfi\\0/../other.pfi'): the path holds a NUL byte") !=
          std::string::npos);
  }
  try {
    permafrost::save_image(a, *root, crafted);
    FAIL("saved to a path with a NUL byte");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::io);
    CHECK(std::string(e.what()).find("\\0/../other.pfi'): the path holds a NUL byte") !=
          std::string::npos);
  }
}

TEST_CASE("save_image refuses to replace a FIFO or a directory, or a symlink to one") {
  // The rename replaced whatever the path named: save_image to /dev/null (as root) turned the
  // device into a regular file. Here a FIFO stands in for the device.
  temp_dir dir;
  arena a;
  const pt::image_table* root = frozen_table(a, 10);
  const fs::path fifo = dir / "fifo.pfi";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  fs::create_directory(dir / "subdir.pfi");
  const auto check_refused = [&](const char* name, std::string_view why) {
    try {
      permafrost::save_image(a, *root, dir / name);
      FAIL("save_image replaced " << std::string(name));
    } catch (const image_error& e) {
      CHECK(e.why() == reason::io);
      CHECK(std::string_view(e.what()).find(why) != std::string_view::npos);
    }
  };
  for (const char* name : {"fifo.pfi", "subdir.pfi"}) check_refused(name, "not a regular file");
  CHECK(fs::is_fifo(fs::symlink_status(fifo)));
  CHECK(fs::is_directory(fs::symlink_status(dir / "subdir.pfi")));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 2);  // no temporary file left behind
  // A symlink to either is refused too, and left as it is: one to a device was replaced by the
  // image (save_image to /dev/stdout, a symlink to /proc/self/fd/1, as root).
  fs::create_symlink(fifo, dir / "to_fifo.pfi");
  fs::create_directory_symlink(dir / "subdir.pfi", dir / "to_dir.pfi");
  for (const char* name : {"to_fifo.pfi", "to_dir.pfi"}) {
    check_refused(name, "it is a symlink to a");
    CHECK(fs::is_symlink(fs::symlink_status(dir / name)));
  }
  // A symlink into /proc or /dev is the system's, whatever it names: /dev/stdout links to
  // /proc/self/fd/1, a regular file when output is redirected to one, and was replaced.
  save_table(dir / "output.log", 3);
  const int fd = ::open((dir / "output.log").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  fs::create_symlink("/proc/self/fd/" + std::to_string(fd), dir / "stdout.pfi");
  fs::create_symlink("stdout.pfi", dir / "to_stdout.pfi");  // relative, two links
  // Through a directory symlink, and by "..": the kernel's lookup, not the link's text.
  fs::create_directory_symlink("/proc/self/fd", dir / "fds");
  fs::create_symlink("fds/" + std::to_string(fd), dir / "via_dir.pfi");
  std::string up;
  for (const auto& part : dir.path.relative_path()) up += part.empty() ? "" : "../";
  fs::create_symlink(up + "proc/self/fd/" + std::to_string(fd), dir / "up.pfi");
  for (const char* name : {"stdout.pfi", "to_stdout.pfi", "via_dir.pfi", "up.pfi"}) {
    check_refused(name, "it is a symlink into /proc or /dev");
    CHECK(fs::is_symlink(fs::symlink_status(dir / name)));
  }
  // The caller's own link, named through /proc (the directory's descriptor), is the caller's.
  const int dir_fd = ::open(dir.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dir_fd >= 0);
  fs::create_symlink("output.log", dir / "own.pfi");
  permafrost::save_image(a, *root, "/proc/self/fd/" + std::to_string(dir_fd) + "/own.pfi");
  CHECK(fs::is_regular_file(fs::symlink_status(dir / "own.pfi")));
  CHECK(pt::check_image_table(image::open(dir / "output.log").root<pt::image_table>(), 3) == 0);
  ::close(dir_fd);
  ::close(fd);
  // A symlink to a regular file, or to nothing, is replaced by the image; its target is left
  // alone.
  save_table(dir / "target.pfi", 5);
  fs::create_symlink(dir / "target.pfi", dir / "link.pfi");
  fs::create_symlink(dir / "nothing.pfi", dir / "dangling.pfi");
  for (const char* name : {"link.pfi", "dangling.pfi"}) {
    permafrost::save_image(a, *root, dir / name);
    CHECK(fs::is_regular_file(fs::symlink_status(dir / name)));
    CHECK(pt::check_image_table(image::open(dir / name).root<pt::image_table>(), 10) == 0);
  }
  CHECK(pt::check_image_table(image::open(dir / "target.pfi").root<pt::image_table>(), 5) == 0);
  CHECK(!fs::exists(fs::symlink_status(dir / "nothing.pfi")));
}

TEST_CASE("save_image to a file name of 255 bytes saves; nothing else is left behind") {
  // The temporary file was the name plus ".XXXXXX": over NAME_MAX for a name of 249 bytes or
  // more, so a valid target could not be saved (ENAMETOOLONG).
  temp_dir dir;
  const fs::path path = dir.path / (std::string(251, 'n') + ".pfi");
  save_table(path, 100);
  const image img = image::open(path);
  CHECK(pt::check_image_table(img.root<pt::image_table>(), 100) == 0);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);
}

TEST_CASE("save_image to a long UTF-8 name names its temporary file with whole characters") {
  // NAME was cut at 248 bytes, inside a 3-byte character here: the temporary name was not valid
  // UTF-8, which a file system that checks names refuses. Seen by inotify as it is created.
  temp_dir dir;
  std::string name;
  while (name.size() + 3 <= 251) name += "\xe2\x82\xac";  // U+20AC, 83 of them: 249 bytes
  name += ".pfi";
  const int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  REQUIRE(in >= 0);
  REQUIRE(inotify_add_watch(in, dir.path.c_str(), IN_CREATE) >= 0);
  save_table(dir.path / name, 10);
  alignas(inotify_event) char events[8192];
  const ssize_t got = ::read(in, events, sizeof events);
  ::close(in);
  REQUIRE(got > 0);
  std::vector<std::string> created;
  for (ssize_t at = 0; at < got;) {
    const auto* e = reinterpret_cast<const inotify_event*>(events + at);
    if (e->len > 0) created.emplace_back(e->name);
    at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
  }
  REQUIRE(!created.empty());
  for (const std::string& c : created) {
    CAPTURE(c.size());
    const std::size_t dot = c.rfind('.');
    REQUIRE(dot != std::string::npos);
    CHECK(dot % 3 == 0);  // whole 3-byte characters before ".XXXXXX"
    CHECK(name.compare(0, dot, c, 0, dot) == 0);
  }
  CHECK(fs::exists(dir.path / name));
}

TEST_CASE("saving over an open image replaces the file; the open image still reads the old data") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 1000);
  const image old_image = image::open(path);
  save_table(path, 3000);
  const image new_image = image::open(path);
  CHECK(old_image.root<pt::image_table>().count == 1000);
  CHECK(pt::check_image_table(old_image.root<pt::image_table>(), 1000) == 0);
  CHECK(pt::check_image_table(new_image.root<pt::image_table>(), 3000) == 0);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);  // the temporary file was renamed, not left beside it
}

TEST_CASE("a write to image memory is stopped by the trap, naming the image and the offset") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  const image img = image::open(path);
  const auto& t = img.root<pt::image_table>();
  const std::size_t offset =
      static_cast<std::size_t>(reinterpret_cast<const std::byte*>(&t.count) - img.data().data());
  const auto child = pt::run_capturing_stderr([&] {
    permafrost::install_write_trap();
    *const_cast<std::uint64_t*>(&t.count) = 7;  // the bug the trap reports
  });
  CHECK(WIFSIGNALED(child.status));
  CHECK(WTERMSIG(child.status) == SIGSEGV);
  MESSAGE(child.stderr_text);
  CHECK(child.stderr_text.find("\"image " + path.string() + "\"") != std::string::npos);
  CHECK(child.stderr_text.find("at offset " + std::to_string(offset) + " ") != std::string::npos);
  CHECK(t.count == 100);
}

// What permafrost-stat prints for the two processes; checks that it exits 0.
std::string stat_output(pid_t a, pid_t b) {
  const std::string command =
      std::string(PERMAFROST_STAT) + " " + std::to_string(a) + " " + std::to_string(b);
  FILE* out = ::popen(command.c_str(), "r");
  REQUIRE(out != nullptr);
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, out)) > 0;) text.append(buf, n);
  CHECK(::pclose(out) == 0);
  MESSAGE(text);
  return text;
}

TEST_CASE("permafrost-stat lists each process's images and how many processes map each") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 20000);
  spawned_child children[2];
  for (auto& c : children) spawn_child(c, path.string(), 20000);
  for (auto& c : children) REQUIRE(c.data != 0);
  const std::string text = stat_output(children[0].pid, children[1].pid);
  const std::size_t per_image = text.find("per image:");
  REQUIRE(per_image != std::string::npos);
  // One row per process under "images:", then the image once with its process count.
  CHECK(text.find(std::to_string(children[0].pid) + "  " + path.string()) != std::string::npos);
  CHECK(text.find(std::to_string(children[1].pid) + "  " + path.string()) != std::string::npos);
  const std::size_t row = text.find(path.string(), per_image);
  REQUIRE(row != std::string::npos);
  unsigned processes = 0;
  CHECK(std::sscanf(text.c_str() + row + path.string().size(), "%u", &processes) == 1);
  CHECK(processes == 2);
}

TEST_CASE("permafrost-stat lists an image replaced at its path apart from the new one") {
  // Regression: " (deleted)" was dropped, so the old mapping and the new image at the same path
  // were one row under "per image", with one size and two processes.
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 20000);
  spawned_child children[2];
  spawn_child(children[0], path.string(), 20000);
  REQUIRE(children[0].data != 0);
  save_table(path, 100);  // the swap: a newer image renamed over the path
  spawn_child(children[1], path.string(), 100);
  REQUIRE(children[1].data != 0);
  const std::string text = stat_output(children[0].pid, children[1].pid);
  const std::size_t per_image = text.find("per image:");
  REQUIRE(per_image != std::string::npos);
  CHECK(text.find(std::to_string(children[0].pid) + "  " + path.string() + " (deleted)") !=
        std::string::npos);
  for (const std::string& name : {path.string() + " (deleted)", path.string() + "  "}) {
    CAPTURE(name);
    const std::size_t row = text.find("\n" + name, per_image);
    REQUIRE(row != std::string::npos);
    unsigned processes = 0;
    CHECK(std::sscanf(text.c_str() + row + 1 + name.size(), "%u", &processes) == 1);
    CHECK(processes == 1);
  }
}

TEST_CASE("a worker cannot write image memory: mprotect(PROT_WRITE) and /proc/self/mem both fail") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  save_table(path, 100);
  const image img = image::open(path);
  auto* page = const_cast<std::byte*>(img.data().data());
  const int status = pt::wait_status_of([&] {
    // The compromised worker: both ways around the read-only protection are refused.
    if (::mprotect(page, 4096, PROT_READ | PROT_WRITE) == 0 || errno != EACCES) ::_exit(10);
    const int mem = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (mem < 0) ::_exit(11);
    const char byte = 'X';
    if (::pwrite(mem, &byte, 1, static_cast<off_t>(reinterpret_cast<std::uintptr_t>(page))) == 1)
      ::_exit(12);
    ::_exit(0);
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(read_all(path)[data_offset] == static_cast<char>(img.data()[0]));
  CHECK(img.root<pt::image_table>().count == 100);
}

namespace {
// A user struct that stores a raw pointer: not position independent.
struct raw_pointer_root {
  const std::uint64_t* value = nullptr;
  bool points_into(const arena& a) const { return permafrost::points_into(value, a); }
};
}  // namespace
PERMAFROST_IMAGE_TYPE(raw_pointer_root, "permafrost.test.raw_pointer_root.v1");

namespace {
// A struct the position check cannot look into: no hook, not declared pointer-free. Saving it
// as a root would write its pointer as it is, so save_image refuses to compile for it.
struct opaque_root {
  const std::uint64_t* value = nullptr;
};
// A struct of plain numbers, vouched for by its author: the declaration lets it compile (a
// pointer added later would be the author's risk, as the check cannot see inside).
struct declared_root {
  std::uint64_t count = 0;
};
}  // namespace
PERMAFROST_POINTER_FREE(declared_root);

TEST_CASE("save_image compiles only for roots the position check can vouch for") {
  // Hooked types (the check asks them), non-class types and declared types compile ...
  static_assert(permafrost::position_checkable_v<raw_pointer_root>);
  static_assert(permafrost::position_checkable_v<pt::image_table>);
  static_assert(permafrost::position_checkable_v<pt::image_map>);
  static_assert(permafrost::position_checkable_v<std::uint64_t>);
  static_assert(permafrost::position_checkable_v<declared_root>);
  static_assert(permafrost::position_checkable_v<const declared_root>);
  // ... a class without a hook is a compile error in check_position_independent/save_image.
  static_assert(!permafrost::position_checkable_v<opaque_root>);
  CHECK(permafrost::declared_pointer_free<declared_root>::value);
  CHECK_FALSE(permafrost::declared_pointer_free<opaque_root>::value);
}

TEST_CASE("save_image refuses data holding a raw pointer, naming its arena offset") {
  temp_dir dir;
  const fs::path path = dir / "table.pfi";
  arena a;
  auto* value = a.make<std::uint64_t>(42);
  auto* root = a.make<raw_pointer_root>();
  root->value = value;
  a.freeze();
  const auto offset = reinterpret_cast<const std::byte*>(&root->value) - a.used_bytes().data();
  try {
    permafrost::save_image(a, *root, path);
    FAIL("saving a raw pointer succeeded");
  } catch (const image_error& e) {
    CHECK(e.why() == reason::not_position_independent);
    CHECK(std::string(e.what()).find("arena offset " + std::to_string(offset)) !=
          std::string::npos);
    CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
  }
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("a hash_map<string, string> root opened twice in one process, at two addresses, answers "
          "the same") {
  temp_dir dir;
  const fs::path path = dir / "map.pfi";
  {
    arena a;
    const pt::image_map& m = pt::build_image_map(a, 10000);
    a.freeze();
    permafrost::save_image(a, m, path);
  }  // the building arena is gone: nothing of it can be read by accident
  const image first = image::open(path);
  const image second = image::open(path);
  REQUIRE(first.data().data() != second.data().data());
  const auto& m1 = first.root<pt::image_map>();
  const auto& m2 = second.root<pt::image_map>();
  CHECK(pt::check_image_map(m1, 10000) == 0);
  CHECK(pt::check_image_map(m2, 10000) == 0);
  for (std::uint64_t i = 0; i < 10000; i += 101) {
    const auto* v1 = m1.get(pt::image_key(i));
    const auto* v2 = m2.get(pt::image_key(i));
    REQUIRE(v1 != nullptr);
    REQUIRE(v2 != nullptr);
    CHECK(first.contains(v1));
    CHECK(second.contains(v2));
    CHECK(v1->view() == v2->view());
  }
}

TEST_CASE(
    "a hash_map<string, string> image is read right by exec'd processes at their own addresses") {
  temp_dir dir;
  const fs::path path = dir / "map.pfi";
  std::uintptr_t built_at = 0;
  {
    arena a;
    const pt::image_map& m = pt::build_image_map(a, 50000);
    a.freeze();
    built_at = reinterpret_cast<std::uintptr_t>(a.used_bytes().data());
    permafrost::save_image(a, m, path);
  }
  spawned_child children[2];
  for (auto& c : children) spawn_child(c, path.string(), 50000, -1, "map");
  for (auto& c : children) {
    INFO("child report: " << c.report);
    REQUIRE(c.data != 0);
    CHECK(c.wrong == 0);
    CHECK(c.frozen == 1);
    char where[96];
    std::snprintf(where, sizeof where, "built at %#lx, read at %#lx",
                  static_cast<unsigned long>(built_at), static_cast<unsigned long>(c.data));
    MESSAGE(where);
    const int status = c.finish();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  // Address-space layout randomisation puts each process's reservation elsewhere.
  CHECK((children[0].data != built_at || children[1].data != built_at));
}

// Skipped under a sanitizer: its runtime maps terabytes of shadow memory, which no small
// RLIMIT_AS allows ("Failed to mmap" before the program's own code runs).
TEST_CASE("under a small address-space limit an image is saved and opened; below it, RLIMIT_AS" *
          doctest::skip(permafrost::test::under_sanitizer)) {
  // Regression: under `ulimit -v 300000` no image could be opened (the reservation needed
  // 1 GiB), and the error read as if the reservation were full. The program sets RLIMIT_AS on
  // itself, exec'd so it starts with no reservation.
  temp_dir dir;
  const std::string path = (dir / "limited.pfi").string();
  int status = 0;
  std::string out = pt::run_limit_child(PERMAFROST_LIMIT_CHILD, {"300000", "image", path}, &status);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("ok image saved") != std::string::npos);
  CHECK(out.find("ok image opened") != std::string::npos);
  REQUIRE(fs::exists(path));
  // 8 MiB more than the program maps: the image cannot be mapped, and the error says why.
  out = pt::run_limit_child(PERMAFROST_LIMIT_CHILD, {"+8192", "none", path}, &status);
  INFO(out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("ok image refused") != std::string::npos);
}

TEST_CASE("an image's slot name, shortened from the left, starts at a UTF-8 character") {
  // Regression: a long path was shortened to its last 38 bytes whatever they began with, so the
  // write trap and permafrost-stat showed "image ..." followed by a stray continuation byte.
  temp_dir dir;
  std::string file;
  for (int i = 0; i < 30; ++i) file += "\xc3\xa9";  // e acute, 2 bytes
  file += "x.pfi";  // the last 38 bytes of the path now start inside an e acute
  const fs::path path = dir.path / file;
  save_table(path, 10);
  const permafrost::image img = permafrost::image::open(path);
  const auto* slot = permafrost::detail::slot_of(img.data().data());
  REQUIRE(slot != nullptr);
  const std::string name = slot->name;
  INFO(name);
  std::string expected = "image ...";
  for (int i = 0; i < 16; ++i) expected += "\xc3\xa9";
  expected += "x.pfi";
  CHECK(name == expected);
}
