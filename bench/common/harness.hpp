// A small benchmark harness shared by the speed benchmarks: a monotonic clock, medians, running
// this same program again as a worker process (so allocators that replace malloc, or big arenas,
// never share a process with their peers), and a markdown table printer.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace bench {

inline double now_ns() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

// The calling thread's CPU time (user + system), in ns. For loops that only compute and read
// memory, it is their wall time on an idle machine, and on a busy one it leaves out the time the
// thread waited for a core: a peer measured while other work ran is not charged for it.
inline double thread_cpu_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

// Drops a file's pages from the page cache, for cold-cache rows (nobody may map it then: mapped
// pages stay). Best effort: a file that cannot be opened is left as it is.
inline void drop_cache(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fdatasync(fd);
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Keeps a value observable so the compiler cannot delete the work that produced it.
template <class T>
inline void keep(const T& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

// Runs /proc/self/exe with `args` (and extra environment entries), returns its stdout.
// Throws std::runtime_error when the worker fails.
inline std::string run_worker(const std::vector<std::string>& args,
                              const std::vector<std::string>& extra_env = {}) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::vector<std::string> argv_s{"/proc/self/exe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s(extra_env);
  for (char** e = environ; *e != nullptr; ++e) env_s.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    throw std::runtime_error(std::string("posix_spawn: ") + std::strerror(rc));
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd;
    for (auto& a : args) cmd += " " + a;
    throw std::runtime_error("worker failed:" + cmd);
  }
  return text;
}

// Effects: reads what a forked child writes into the pipe end `fd` (the parent closed its write
// end) until the child closes it, closes `fd`, and waits for the child. Returns the text, or an
// empty string when the child did not exit with status 0.
inline std::string collect_child(int fd, pid_t pid) {
  std::string text;
  char buf[512];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? text : std::string();
}

// Reads "key=value" (a double) from a worker's output; NaN when absent.
inline double field(const std::string& text, const std::string& key) {
  const std::string k = key + "=";
  std::size_t pos = 0;
  while ((pos = text.find(k, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == ' ' || text[pos - 1] == '\n')
      return std::strtod(text.c_str() + pos + k.size(), nullptr);
    pos += k.size();
  }
  return __builtin_nan("");
}

inline bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return true;
  return false;
}

inline const char* flag_value(int argc, char** argv, const char* flag, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
  return fallback;
}

inline void print_header(const char* title, int argc, char** argv) {
  std::printf("## %s\n\ncommand:", title);
  for (int i = 0; i < argc; ++i) std::printf(" %s", argv[i]);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::time_t t = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  std::printf("\ndate: %s, %ld cores online\n\n", date, ::sysconf(_SC_NPROCESSORS_ONLN));
}

}  // namespace bench
