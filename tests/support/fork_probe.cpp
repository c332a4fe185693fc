#include "fork_probe.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "os.hpp"

namespace permafrost::test {
namespace {

constexpr std::uint64_t present_bit = std::uint64_t{1} << 63;
constexpr std::uint64_t exclusive_bit = std::uint64_t{1} << 56;
constexpr std::uint64_t frame_mask = (std::uint64_t{1} << 55) - 1;

void write_byte(int fd, char c) {
  while (::write(fd, &c, 1) < 0 && errno == EINTR) {
  }
}

char read_byte(int fd) {
  char c = 0;
  ssize_t n;
  while ((n = ::read(fd, &c, 1)) < 0 && errno == EINTR) {
  }
  return n == 1 ? c : '\0';
}

}  // namespace

std::vector<std::uint64_t> pagemap(pid_t pid, const void* begin, std::size_t bytes) {
  const std::size_t page = os::page_size();
  const auto first = reinterpret_cast<std::uintptr_t>(begin) & ~(page - 1);
  const auto last = (reinterpret_cast<std::uintptr_t>(begin) + bytes + page - 1) & ~(page - 1);
  std::vector<std::uint64_t> entries((last - first) / page);
  if (entries.empty()) return entries;
  const int err = os::read_pagemap(pid, first, entries.size(), entries.data());
  if (err != 0) throw std::runtime_error("pagemap of pid " + std::to_string(pid) + ": errno " +
                                         std::to_string(err));
  return entries;
}

bool frames_visible() {
  static int probe = 0;
  const auto entries = pagemap(0, &probe, sizeof probe);
  return (entries.at(0) & frame_mask) != 0;
}

sharing compare_with(pid_t pid, std::span<const std::byte> range) {
  const bool frames = frames_visible();
  const auto mine = pagemap(0, range.data(), range.size());
  sharing s;
  s.pages = mine.size();
  std::vector<std::uint64_t> theirs;
  try {
    theirs = pagemap(pid, range.data(), range.size());
  } catch (...) {
    theirs.assign(mine.size(), 0);  // the child died before we looked; its status says why
  }
  for (std::size_t i = 0; i < mine.size(); ++i) {
    const bool in_parent = (mine[i] & present_bit) != 0;
    const bool in_child = (theirs[i] & present_bit) != 0;
    s.parent_present += in_parent;
    s.child_present += in_child;
    if (frames) {
      s.copied += in_parent && in_child && (mine[i] & frame_mask) != (theirs[i] & frame_mask);
    } else {
      s.copied += in_child && (theirs[i] & exclusive_bit) != 0;
    }
  }
  return s;
}

std::vector<sharing> fork_and_compare(int children, std::span<const std::byte> range,
                                      const std::function<int()>& work) {
  int ready[2];
  int go[2];
  if (::pipe(ready) != 0 || ::pipe(go) != 0) throw std::runtime_error("pipe failed");
  std::vector<pid_t> pids;
  for (int i = 0; i < children; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      int rc = 1;
      try {
        rc = work();
      } catch (...) {
        rc = 3;
      }
      write_byte(ready[1], rc == 0 ? 'k' : 'f');
      (void)read_byte(go[0]);
      ::_exit(rc);
    }
    pids.push_back(pid);
  }
  for (int i = 0; i < children; ++i) (void)read_byte(ready[0]);

  std::vector<sharing> result;
  for (pid_t pid : pids) result.push_back(compare_with(pid, range));
  for (int i = 0; i < children; ++i) write_byte(go[1], 'x');
  for (std::size_t i = 0; i < pids.size(); ++i) {
    int status = 0;
    while (::waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {
    }
    result[i].exit_status = status;
  }
  ::close(ready[0]);
  ::close(ready[1]);
  ::close(go[0]);
  ::close(go[1]);
  return result;
}

int wait_status_of(const std::function<void()>& work) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // A crash is the expected outcome: keep the core dump and the report out of the way.
    struct sigaction quiet {};
    quiet.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &quiet, nullptr);
    try {
      work();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace permafrost::test
