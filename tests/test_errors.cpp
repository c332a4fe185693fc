// Bad input rows of docs/errors.md that no subsystem's own tests cover.
#include <doctest/doctest.h>

#include <permafrost/memstat.hpp>

#include <cerrno>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

TEST_CASE("memstat: a vanished pid raises proc_error naming the file, with ESRCH or ENOENT") {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);  // reaped: the pid names no process now
  bool thrown = false;
  try {
    (void)permafrost::process_memory(pid);
  } catch (const permafrost::proc_error& e) {
    thrown = true;
    CHECK(e.file().find("/proc/" + std::to_string(pid) + "/") == 0);
    CHECK((e.code().value() == ESRCH || e.code().value() == ENOENT));
  }
  CHECK(thrown);
  CHECK_THROWS_AS(permafrost::mappings(pid), permafrost::proc_error);
}
