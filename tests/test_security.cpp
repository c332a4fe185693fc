// The threat model of docs/security.md: a compromised worker cannot change what other workers
// read. Frozen pages are never executable; an anonymous arena is private, so a worker that
// re-enables writing only changes its own copy; a memfd arena is sealed, so nobody can write it.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/memstat.hpp>

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arenas.hpp"
#include "fork_probe.hpp"

using permafrost::arena;
using permafrost::arena_options;

namespace {

arena_options options(const char* name, permafrost::backing backing) {
  return permafrost::test::arena_options_for(name, {.small_pages = true, .backing = backing});
}

std::string perms_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (const auto& m : permafrost::mappings(0))
    if (m.begin <= a && a < m.end) return m.perms;
  return "";
}

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

// Writes `value` at p through /proc/self/mem, which ignores page protections of private
// mappings (FOLL_FORCE) but not the seals of a shared file. Returns 0 or the errno.
int write_through_proc_mem(void* p, std::uint64_t value) {
  const int fd = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno;
  const ssize_t n =
      ::pwrite(fd, &value, sizeof value, static_cast<off_t>(reinterpret_cast<std::uintptr_t>(p)));
  const int err = n == static_cast<ssize_t>(sizeof value) ? 0 : (n < 0 ? errno : EIO);
  ::close(fd);
  return err;
}

}  // namespace

TEST_CASE("frozen pages are never executable: rw- before freeze, r-- after, anonymous and memfd") {
  for (auto backing : {permafrost::backing::anonymous, permafrost::backing::memfd}) {
    arena a(options("noexec", backing));
    auto* p = a.make<std::uint64_t>(42);
    const std::string before = perms_of(p);
    REQUIRE(before.size() == 4);
    CHECK(before.substr(0, 3) == "rw-");
    a.freeze();
    const std::string after = perms_of(p);
    REQUIRE(after.size() == 4);
    CHECK(after.substr(0, 3) == "r--");
    CHECK(after[3] == (backing == permafrost::backing::memfd ? 's' : 'p'));
  }
}

TEST_CASE(
    "anonymous arena: a worker that makes its frozen pages writable changes only its own copy") {
  arena a(options("private", permafrost::backing::anonymous));
  auto* value = a.make<std::uint64_t>(1234);
  a.freeze();
  const std::uintptr_t page = reinterpret_cast<std::uintptr_t>(value) & ~std::uintptr_t{4095};
  const int attacker = permafrost::test::wait_status_of([&] {
    // Both ways around the protection work on a private mapping, and both write a private copy.
    if (::mprotect(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE) != 0) ::_exit(10);
    *value = 666;
    if (*value != 666) ::_exit(11);
    if (write_through_proc_mem(value, 777) != 0) ::_exit(12);
    ::_exit(*value == 777 ? 0 : 13);
  });
  CHECK(exited_with(attacker, 0));
  CHECK(*value == 1234);  // the parent
  const int sibling = permafrost::test::wait_status_of([&] { ::_exit(*value == 1234 ? 0 : 1); });
  CHECK(exited_with(sibling, 0));  // a worker forked afterwards
}

TEST_CASE("memfd arena: a worker can neither re-enable writing nor write through /proc/self/mem") {
  arena a(options("sealed", permafrost::backing::memfd));
  auto* value = a.make<std::uint64_t>(1234);
  a.freeze();
  const std::uintptr_t page = reinterpret_cast<std::uintptr_t>(value) & ~std::uintptr_t{4095};
  const int fd = a.fd();
  const int attacker = permafrost::test::wait_status_of([&] {
    if (::mprotect(reinterpret_cast<void*>(page), 4096, PROT_READ | PROT_WRITE) == 0) ::_exit(10);
    if (::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) != MAP_FAILED) ::_exit(11);
    const std::uint64_t evil = 666;
    if (::pwrite(fd, &evil, sizeof evil, 0) >= 0) ::_exit(12);
    if (write_through_proc_mem(value, 777) == 0) ::_exit(13);
    ::_exit(*value == 1234 ? 0 : 14);
  });
  CHECK(exited_with(attacker, 0));
  CHECK(*value == 1234);
  const int seals = ::fcntl(fd, F_GET_SEALS);
  CHECK((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)) ==
        (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW));
}
