// Test helper, started with posix_spawn (not forked): receives a frozen memfd arena over the
// Unix socket on fd 3, attaches it (populated), reads the requested bytes and answers with a hash.
#include <permafrost/arena.hpp>

#include <cstring>
#include <exception>
#include <sys/resource.h>
#include <unistd.h>

#include "fd_passing.hpp"

int main() {
  using namespace permafrost::test;
  constexpr int sock = 3;
  attach_request req;
  int fd = -1;
  if (!receive_with_fd(sock, &req, sizeof req, &fd)) return 2;
  attach_reply reply;
  try {
    const permafrost::arena a = permafrost::arena::attach(fd, /*populate=*/true);
    ::close(fd);
    const void* first = reinterpret_cast<const void*>(req.address);
    reply.contains = a.contains(first) ? 1 : 0;
    reply.frozen = permafrost::is_frozen(first) && a.frozen() ? 1 : 0;
    rusage before{};
    rusage after{};
    ::getrusage(RUSAGE_SELF, &before);
    ::getrusage(RUSAGE_SELF, &before);
    reply.hash = fnv1a(first, req.bytes);
    ::getrusage(RUSAGE_SELF, &after);
    reply.faults = static_cast<std::uint32_t>(after.ru_minflt - before.ru_minflt + after.ru_majflt -
                                              before.ru_majflt);
  } catch (const std::exception& e) {
    std::strncpy(reply.error, e.what(), sizeof reply.error - 1);
  }
  return send_with_fd(sock, &reply, sizeof reply, -1) ? 0 : 3;
}
