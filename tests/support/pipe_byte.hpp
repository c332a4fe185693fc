// Test support: one byte through a pipe, retrying on EINTR, for parent/child handshakes.
#pragma once

#include <cerrno>
#include <unistd.h>

namespace permafrost::test {

inline void write_byte(int fd, char c) {
  while (::write(fd, &c, 1) < 0 && errno == EINTR) {
  }
}

// Returns '\0' at end of file (the writer died or closed its end).
inline char read_byte(int fd) {
  char c = 0;
  ssize_t n;
  while ((n = ::read(fd, &c, 1)) < 0 && errno == EINTR) {
  }
  return n == 1 ? c : '\0';
}

}  // namespace permafrost::test
