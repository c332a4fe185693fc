// Test support: pass a descriptor and a small payload over a Unix socket (SCM_RIGHTS), as an
// unrelated process would receive a frozen arena's memfd.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sys/socket.h>
#include <sys/uio.h>

namespace permafrost::test {

// Sends `bytes` of `data`, with `fd` attached when fd >= 0. Returns true on success.
inline bool send_with_fd(int sock, const void* data, std::size_t bytes, int fd) {
  iovec iov{const_cast<void*>(data), bytes};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  while ((n = ::sendmsg(sock, &msg, 0)) < 0 && errno == EINTR) {}
  return n == static_cast<ssize_t>(bytes);
}

// Receives exactly `bytes` into `data` (one message) and the attached descriptor into *fd
// (-1 when none). Returns true on success.
inline bool receive_with_fd(int sock, void* data, std::size_t bytes, int* fd) {
  iovec iov{data, bytes};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  while ((n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
  *fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
  }
  return n == static_cast<ssize_t>(bytes);
}

// The request the attach test sends its spawned helper, and the helper's answer.
struct attach_request {
  std::uint64_t address = 0;  // first byte to read
  std::uint64_t bytes = 0;    // how many
};
struct attach_reply {
  std::uint64_t hash = 0;      // FNV-1a of the bytes read
  std::uint32_t contains = 0;  // arena::contains(first byte)
  std::uint32_t frozen = 0;    // permafrost::is_frozen(first byte) and arena.frozen()
  std::uint32_t faults = 0;    // minor faults taken while reading (populated attach: 0)
  char error[236] = {};        // what() of an exception, else empty
};

inline std::uint64_t fnv1a(const void* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

}  // namespace permafrost::test
