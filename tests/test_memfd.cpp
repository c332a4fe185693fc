// memfd-backed arenas: the shared mapping, sealing at freeze, the fork guard, and attach() in
// another process (posix_spawn, descriptor passed over a Unix socket).
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <spawn.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arenas.hpp"
#include "fd_passing.hpp"
#include "fork_probe.hpp"
#include "proc.hpp"

using permafrost::arena;
using permafrost::arena_options;
using permafrost::attach_error;

extern char** environ;

namespace {

arena_options memfd_options(const char* name, std::size_t capacity = std::size_t{64} << 20) {
  return permafrost::test::arena_options_for(
      name, {.capacity = capacity, .backing = permafrost::backing::memfd});
}

// Fills `n` words with a pattern and returns them.
std::span<std::uint64_t> fill(arena& a, std::size_t n) {
  auto words = a.make_array<std::uint64_t>(n);
  for (std::size_t i = 0; i < n; ++i) words[i] = i * 0x9e3779b97f4a7c15ull;
  return words;
}

attach_error::reason attach_failure(int fd) {
  try {
    (void)arena::attach(fd);
  } catch (const attach_error& e) {
    MESSAGE(std::string(e.what()));
    return e.why();
  }
  FAIL("attach succeeded");
  return attach_error::reason::system;
}

// An 8 KiB memfd that is not a permafrost arena, sealed like a frozen one.
int sealed_memfd(const char* name) {
  const int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, 8192) == 0);
  REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW) == 0);
  return fd;
}

// Spawns the attach helper (not a fork: a fresh program), sends it fd and the range to read.
permafrost::test::attach_reply attach_in_spawned_process(int fd, const void* p, std::size_t n) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
  pid_t pid = 0;
  char path[] = PERMAFROST_ATTACH_CHILD;
  char* argv[] = {path, nullptr};
  const int rc = ::posix_spawn(&pid, path, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  REQUIRE(rc == 0);
  permafrost::test::attach_request req{reinterpret_cast<std::uint64_t>(p), n};
  permafrost::test::attach_reply reply;
  int none = -1;
  CHECK(permafrost::test::send_with_fd(sv[0], &req, sizeof req, fd));
  CHECK(permafrost::test::receive_with_fd(sv[0], &reply, sizeof reply, &none));
  ::close(sv[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return reply;
}

}  // namespace

TEST_CASE("a memfd arena is a shared mapping named after the arena in /proc/PID/maps") {
  arena a(memfd_options("tables"));
  auto words = fill(a, 1000);
  CHECK(a.fd() >= 0);
  const std::string line = permafrost::test::maps_line_of(words.data());
  MESSAGE(line);
  CHECK(line.find("/memfd:permafrost:tables") != std::string::npos);
  CHECK(line.find("rw-s") != std::string::npos);
  a.freeze();
  CHECK(permafrost::test::maps_line_of(words.data()).find("r--s") != std::string::npos);
  CHECK(permafrost::is_frozen(words.data()));
  CHECK(words[999] == 999 * 0x9e3779b97f4a7c15ull);
  a.check_invariants();
  arena anon(arena_options{});
  CHECK(anon.fd() == -1);
}

TEST_CASE("after freeze a memfd arena is sealed: no writable mapping, write or resize anywhere") {
  arena a(memfd_options("sealed"));
  auto words = fill(a, 4096);
  a.freeze();
  const int fd = a.fd();
  const int seals = ::fcntl(fd, F_GET_SEALS);
  CHECK((seals & F_SEAL_WRITE) != 0);
  CHECK((seals & F_SEAL_FUTURE_WRITE) != 0);
  CHECK((seals & F_SEAL_SHRINK) != 0);
  CHECK((seals & F_SEAL_GROW) != 0);
  // A new writable mapping of the file is refused.
  errno = 0;
  CHECK(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
  CHECK(errno == EPERM);
  // So are write(2), shrinking and growing.
  const char byte = 1;
  CHECK(::pwrite(fd, &byte, 1, 0) == -1);
  CHECK(::ftruncate(fd, 0) == -1);
  CHECK(errno == EPERM);
  CHECK(::ftruncate(fd, std::int64_t{1} << 30) == -1);
  // The arena's own mapping cannot be made writable again.
  CHECK(::mprotect(words.data(), 4096, PROT_READ | PROT_WRITE) == -1);
  CHECK(errno == EACCES);
  // A plain store faults.
  const int status = permafrost::test::wait_status_of(
      [&] { *const_cast<volatile std::uint64_t*>(&words[5]) = 0; });
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV));
  CHECK(words[5] == 5 * 0x9e3779b97f4a7c15ull);
}

TEST_CASE("a child forked before freeze cannot write a memfd arena; freeze adds F_SEAL_WRITE") {
  arena a(memfd_options("early-fork"));
  auto words = fill(a, 100);
  // A child that writes at once: the store faults, the parent's bytes stay.
  const int eager = permafrost::test::wait_status_of([&] { words[5] = 0; });
  CHECK((WIFSIGNALED(eager) && WTERMSIG(eager) == SIGSEGV));
  CHECK(words[5] == 5 * 0x9e3779b97f4a7c15ull);
  // A child alive across the parent's freeze reads what the parent wrote after the fork, then
  // tries to rewrite the frozen data: the store faults.
  int go[2];
  REQUIRE(::pipe(go) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &dfl, nullptr);  // die of the fault, no test-framework report
    char c;
    (void)!::read(go[0], &c, 1);
    if (*static_cast<volatile std::uint64_t*>(&words[6]) != 42) ::_exit(3);
    *static_cast<volatile std::uint64_t*>(&words[7]) = 0;
    ::_exit(0);
  }
  words[6] = 42;
  a.freeze();
  const int seals = ::fcntl(a.fd(), F_GET_SEALS);
  CHECK((seals & F_SEAL_WRITE) != 0);
  CHECK((seals & F_SEAL_SHRINK) != 0);
  CHECK((seals & F_SEAL_GROW) != 0);
  CHECK(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd(), 0) == MAP_FAILED);
  (void)!::write(go[1], "x", 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV));
  CHECK(words[7] == 7 * 0x9e3779b97f4a7c15ull);
  ::close(go[0]);
  ::close(go[1]);
  // And the file is attachable: no process holds a writable mapping of it.
  const auto reply = attach_in_spawned_process(a.fd(), words.data(), words.size_bytes());
  CHECK(std::string(reply.error).empty());
  CHECK(reply.frozen == 1);
}

TEST_CASE("attach refuses a memfd sealed only against future writes: older mappings could write") {
  const int fd = ::memfd_create("permafrost:future-only", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, 8192) == 0);
  REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW) == 0);
  CHECK(attach_failure(fd) == attach_error::reason::unsealed);
  ::close(fd);
}

TEST_CASE("a forked child may neither allocate from nor freeze an unfrozen memfd arena") {
  arena a(memfd_options("guarded"));
  int* x = a.make<int>(1);  // the parent's thread chunk is open
  const int status = permafrost::test::wait_status_of([&] {
    bool refused_alloc = false, refused_freeze = false;
    try {
      (void)a.allocate(8);
    } catch (const std::logic_error& e) {
      refused_alloc = std::string(e.what()).find("forked child") != std::string::npos;
    }
    try {
      a.freeze();
    } catch (const std::logic_error&) {
      refused_freeze = true;
    }
    ::_exit(refused_alloc && refused_freeze && a.try_allocate(8) == nullptr ? 0 : 1);
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent is unaffected.
  CHECK(*x == 1);
  int* y = a.make<int>(2);
  CHECK(y == x + 1);
  a.freeze();
  CHECK(permafrost::is_frozen(y));
}

TEST_CASE("forked readers of a frozen memfd arena copy 0 pages") {
  arena a(memfd_options("readers", std::size_t{256} << 20));
  fill(a, (std::size_t{16} << 20) / 8);
  a.freeze();
  const auto range = a.used_bytes();
  const auto results = permafrost::test::fork_and_compare(4, range, [&] {
    std::uint64_t sum = 0;
    for (std::byte b : range) sum += static_cast<std::uint64_t>(b);
    return sum != 0 && permafrost::is_frozen(range.data()) ? 0 : 1;
  });
  for (const auto& r : results) {
    CHECK(r.exit_status == 0);
    CHECK(r.child_present == r.pages);
    CHECK(r.copied == 0);
  }
}

TEST_CASE("attach in a posix_spawned process reads the same data at the same address") {
  arena a(memfd_options("spawned", std::size_t{64} << 20));
  auto words = fill(a, (std::size_t{8} << 20) / 8 + 3);  // an unaligned end
  a.freeze();
  const std::size_t bytes = words.size_bytes();
  const auto reply = attach_in_spawned_process(a.fd(), words.data(), bytes);
  INFO(reply.error);
  CHECK(reply.error[0] == '\0');
  CHECK(reply.hash == permafrost::test::fnv1a(words.data(), bytes));
  CHECK(reply.contains == 1);
  CHECK(reply.frozen == 1);
  if constexpr (permafrost::test::under_sanitizer) {
    // The helper's instrumented reads touch its sanitizer shadow memory for the first time: those
    // are page faults too, and nothing an arena can populate.
    MESSAGE("fault count not checked under a sanitizer: the reads fault in shadow memory ("
            << reply.faults << " faults)");
  } else {
    CHECK(reply.faults == 0);  // attached with populate
  }
}

TEST_CASE("attach after the creator's arena is gone maps it again, frozen, at the same address") {
  int fd = -1;
  std::uint64_t* first = nullptr;
  std::size_t n = 5000;
  {
    arena a(memfd_options("again"));
    first = fill(a, n).data();
    a.freeze();
    fd = ::fcntl(a.fd(), F_DUPFD_CLOEXEC, 0);
  }
  CHECK_FALSE(permafrost::is_frozen(first));
  {
    arena b = arena::attach(fd);
    ::close(fd);
    CHECK(b.frozen());
    CHECK(b.contains(first));
    CHECK(b.contains(first + n - 1));
    CHECK_FALSE(b.contains(first + n));
    CHECK(permafrost::is_frozen(first + n - 1));
    CHECK_FALSE(permafrost::is_frozen(first + n));
    CHECK(first[4999] == 4999 * 0x9e3779b97f4a7c15ull);
    CHECK(b.name() == "again");
    CHECK(b.stats().used == n * 8);
    CHECK_THROWS_AS((void)b.allocate(8), permafrost::frozen_error);
    b.check_invariants();
    // Sent on again: the attached arena's own descriptor is as good as the creator's.
    CHECK(attach_failure(b.fd()) == attach_error::reason::address_taken);
  }
  CHECK_FALSE(permafrost::is_frozen(first));
}

TEST_CASE("attach refuses an unsealed arena, a foreign memfd, a non-memfd and a taken address") {
  arena unfrozen(memfd_options("unfrozen"));
  fill(unfrozen, 10);
  CHECK(attach_failure(unfrozen.fd()) == attach_error::reason::unsealed);

  const int foreign = sealed_memfd("someone-else");
  CHECK(attach_failure(foreign) == attach_error::reason::foreign);
  ::close(foreign);

  // Named like an arena, sealed, but no trailer: what a truncated arena looks like.
  const int impostor = sealed_memfd("permafrost:impostor");
  CHECK(attach_failure(impostor) == attach_error::reason::truncated);
  ::close(impostor);

  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  CHECK(attach_failure(pipe_fds[0]) == attach_error::reason::not_a_memfd);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);

  arena live(memfd_options("live"));
  fill(live, 10);
  live.freeze();
  CHECK(attach_failure(live.fd()) == attach_error::reason::address_taken);
}

namespace {

// VmPTE (KiB) of a child right after fork, before it touches anything.
long child_vmpte_kib() {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const long kib = permafrost::test::status_kib("VmPTE");  // allocates nothing
    (void)!::write(fds[1], &kib, sizeof kib);
    ::_exit(0);
  }
  long kib = -1;
  (void)!::read(fds[0], &kib, sizeof kib);
  ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  return kib;
}

long vmpte_with_frozen_arena(permafrost::backing b) {
  arena_options o = memfd_options("vmpte", std::size_t{256} << 20);
  o.backing = b;
  o.huge_pages = false;
  arena a(o);
  auto bytes = a.make_array<char>(std::size_t{128} << 20);
  for (std::size_t i = 0; i < bytes.size(); i += 4096) bytes[i] = 1;  // every page present
  a.freeze();
  return child_vmpte_kib();
}

}  // namespace

TEST_CASE(
    "fork copies no page table of a frozen memfd arena (child VmPTE), unlike 4 KiB anonymous") {
  const long none = child_vmpte_kib();
  const long anonymous = vmpte_with_frozen_arena(permafrost::backing::anonymous);
  const long memfd = vmpte_with_frozen_arena(permafrost::backing::memfd);
  MESSAGE("child VmPTE KiB right after fork: no arena "
          << none << ", 128 MiB anonymous 4 KiB " << anonymous << ", 128 MiB memfd " << memfd);
  CHECK(anonymous >= none + 200);  // 128 MiB of 4 KiB pages is 256 KiB of page tables
  if constexpr (permafrost::test::under_sanitizer) {
    // The sanitizer's shadow of the 128 MiB (written by ASan poisoning / TSan accesses) is
    // private anonymous memory whose page tables fork does copy: the memfd bound cannot hold here.
    MESSAGE("memfd VmPTE bound not checked under a sanitizer (shadow memory page tables)");
  } else {
    CHECK(memfd <= none + 16);
  }
}

TEST_CASE("an empty memfd arena freezes, seals and attaches as an empty arena") {
  int fd = -1;
  {
    arena a(memfd_options("empty"));
    a.freeze();
    CHECK(a.stats().used == 0);
    CHECK(((::fcntl(a.fd(), F_GET_SEALS) & F_SEAL_GROW) != 0));
    fd = ::fcntl(a.fd(), F_DUPFD_CLOEXEC, 0);
  }
  arena b = arena::attach(fd);
  ::close(fd);
  CHECK(b.frozen());
  CHECK(b.used_bytes().empty());
  CHECK(b.name() == "empty");
  b.check_invariants();
}

TEST_CASE(
    "fd() is -1 once the memfd was closed behind the arena's back, and its number is spared") {
  arena a(memfd_options("closed-behind"));
  fill(a, 1000);
  a.freeze();
  const int number = a.fd();
  REQUIRE(number >= 0);
  // The program closes it and the number goes to another file: fd() named that file before, and
  // a receiver attached to it; the arena's destruction closed it.
  REQUIRE(::close(number) == 0);
  CHECK(a.fd() == -1);
  const int other = ::memfd_create("not-the-arena", MFD_CLOEXEC);
  REQUIRE(other >= 0);
  if (other != number) {
    REQUIRE(::dup2(other, number) == number);
    ::close(other);
  }
  CHECK(a.fd() == -1);
  CHECK(a.frozen());  // the data stays readable: it is mapped, not read through the descriptor
  a = arena(memfd_options("closed-behind-next"));  // destroys the first arena
  CHECK(::fcntl(number, F_GETFD) != -1);           // the other file stays open
  ::close(number);
}
