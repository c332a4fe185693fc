// Test support: runs the limit_child program (support/limit_child.cpp), which sets an
// address-space limit (RLIMIT_AS) on itself and makes arenas and images under it.
#pragma once

#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "child_process.hpp"

namespace permafrost::test {

// Runs `program` with `args` in a forked and exec'd child (so it starts with no arena
// reservation); returns its stdout, *status its wait status.
inline std::string run_limit_child(const char* program, const std::vector<std::string>& args,
                                   int* status) {
  int out[2];
  if (::pipe(out) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> argv{const_cast<char*>(program)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(program, argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[256];
  ssize_t n = 0;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  *status = wait_for(pid);
  return text;
}

}  // namespace permafrost::test
