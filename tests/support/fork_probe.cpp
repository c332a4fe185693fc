#include "fork_probe.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "child_process.hpp"
#include "os/os.hpp"
#include "permafrost/memstat.hpp"

namespace permafrost::test {
namespace {

void default_crash_signals() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) ::sigaction(sig, &dfl, nullptr);
}

// In a forked child: runs work with the default crash actions, so neither the test framework's
// crash handler (not async-signal-safe) nor a sanitizer's report runs; exits 0, or 3 on throw.
[[noreturn]] void run_expecting_crash(const std::function<void()>& work) {
  default_crash_signals();
  try {
    work();
  } catch (...) {
    ::_exit(3);
  }
  ::_exit(0);
}

}  // namespace

std::vector<std::uint64_t> pagemap(pid_t pid, const void* begin, std::size_t bytes) {
  const std::size_t page = os::page_size();
  const auto first = reinterpret_cast<std::uintptr_t>(begin) & ~(page - 1);
  const auto last = (reinterpret_cast<std::uintptr_t>(begin) + bytes + page - 1) & ~(page - 1);
  std::vector<std::uint64_t> entries((last - first) / page);
  if (entries.empty()) return entries;
  const int err = os::read_pagemap(pid, first, entries.size(), entries.data());
  if (err != 0)
    throw std::runtime_error("pagemap of pid " + std::to_string(pid) + ": errno " +
                             std::to_string(err));
  return entries;
}

bool frames_visible() { return pagemap_frames_visible(); }

sharing compare_pages(pid_t pid, std::span<const std::byte> range) {
  sharing s;
  try {
    const sharing_report r = sharing_audit(pid, 0, range);
    s.pages = r.pages;
    s.parent_present = r.parent_present;
    s.child_present = r.child_present;
    s.copied = r.copied;
  } catch (const proc_error&) {
    // The child died before we looked; its exit status says why.
    const std::size_t page = os::page_size();
    const auto lo = reinterpret_cast<std::uintptr_t>(range.data()) & ~(page - 1);
    const auto hi = reinterpret_cast<std::uintptr_t>(range.data()) + range.size();
    s.pages = range.empty() ? 0 : (hi - lo + page - 1) / page;
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
    if (pid == 0) report_and_hold(work, ready[1], go[0]);
    pids.push_back(pid);
  }
  for (int i = 0; i < children; ++i) (void)read_byte(ready[0]);

  std::vector<sharing> result;
  for (pid_t pid : pids) result.push_back(compare_pages(pid, range));
  for (int i = 0; i < children; ++i) write_byte(go[1], 'x');
  for (std::size_t i = 0; i < pids.size(); ++i) result[i].exit_status = wait_for(pids[i]);
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
    run_expecting_crash(work);
  }
  return wait_for(pid);
}

child_output run_capturing_stderr(const std::function<void()>& work) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(out[1], STDERR_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    run_expecting_crash(work);
  }
  ::close(out[1]);
  child_output result;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.stderr_text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  result.status = wait_for(pid);
  return result;
}

}  // namespace permafrost::test
