// Test support: the pieces every forking helper shares — one-byte pipe handshakes, running a
// child's work and reporting, and waiting for a child — each retrying on EINTR.
#pragma once

#include <cerrno>
#include <functional>
#include <sys/wait.h>
#include <unistd.h>

namespace permafrost::test {

inline void write_byte(int fd, char c) {
  while (::write(fd, &c, 1) < 0 && errno == EINTR) {}
}

// Returns '\0' at end of file (the writer died or closed its end).
inline char read_byte(int fd) {
  char c = 0;
  ssize_t n;
  while ((n = ::read(fd, &c, 1)) < 0 && errno == EINTR) {}
  return n == 1 ? c : '\0';
}

// In a forked child: runs `work` (an exception counts as exit code 3), tells the parent through
// `ready_fd` that it is done, waits for the parent's byte on `go_fd` (so the parent can inspect
// it alive), then exits with work's result.
[[noreturn]] inline void report_and_hold(const std::function<int()>& work, int ready_fd,
                                         int go_fd) {
  int rc = 1;
  try {
    rc = work();
  } catch (...) {
    rc = 3;
  }
  write_byte(ready_fd, rc == 0 ? 'k' : 'f');
  (void)read_byte(go_fd);
  ::_exit(rc);
}

// The wait status of child `pid`.
inline int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return status;
}

}  // namespace permafrost::test
