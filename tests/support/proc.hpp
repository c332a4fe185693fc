// Test support: the /proc readers the tests use, in one place. Header-only and written against
// the C and C++ standard libraries and POSIX alone, so the consumer test (built against the
// installed package, without src/) uses it too, and so the tests' reading of /proc stays
// independent of the library's own parsers in src/os, which test_os.cpp tests.
//
// Every reader returns an "absent" value (empty string, -1, nullopt, false) when the file or
// field is missing; none throws or aborts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <unistd.h>

namespace permafrost::test {

// "/proc/self/<what>" or "/proc/<pid>/<what>".
inline std::string proc_file(const char* what, pid_t pid = 0) {
  return (pid == 0 ? std::string("/proc/self/") : "/proc/" + std::to_string(pid) + "/") + what;
}

// The whole of /proc/<pid>/<what> (pid 0: self), or "" when it cannot be read.
inline std::string proc_text(const char* what, pid_t pid = 0) {
  std::string text;
  const int fd = ::open(proc_file(what, pid).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

// The value of the first line of `text` that starts with "<field>:", parsed as a decimal
// number (units such as "kB" are ignored), or nullopt.
inline std::optional<std::uint64_t> field_value(std::string_view text, std::string_view field) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = std::min(text.find('\n', at), text.size());
    const std::string_view line = text.substr(at, nl - at);
    if (line.size() > field.size() && line.substr(0, field.size()) == field &&
        line[field.size()] == ':') {
      const std::string value(line.substr(field.size() + 1));
      char* end = nullptr;
      const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
      if (end != value.c_str()) return v;
      return std::nullopt;
    }
    at = nl + 1;
  }
  return std::nullopt;
}

// A field of /proc/self/status in KiB ("VmRSS", "VmPTE", "VmSize"), or -1. Allocates nothing
// (it may run in a forked child that must touch as little as possible).
inline long status_kib(const char* field) {
  char buf[8192];
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  const std::size_t len = std::strlen(field);
  for (const char* line = buf; line < buf + n;) {
    const char* nl = static_cast<const char*>(std::memchr(line, '\n', buf + n - line));
    if (nl == nullptr) nl = buf + n;
    if (nl - line > static_cast<long>(len) && std::strncmp(line, field, len) == 0 &&
        line[len] == ':') {
      char* end = nullptr;
      const long v = std::strtol(line + len + 1, &end, 10);
      return end != line + len + 1 ? v : -1;
    }
    line = nl + 1;
  }
  return -1;
}

// A counter of /proc/self/io ("syscr", "rchar"), or nullopt where the kernel has no task I/O
// accounting.
inline std::optional<std::uint64_t> io_counter(const char* field) {
  return field_value(proc_text("io"), field);
}

// Calls f(line, lo, hi) for each mapping line of /proc/<pid>/maps or smaps text; f returns true
// to stop. Field lines of smaps (no "lo-hi" range) are passed with lo = hi = 0.
template <class F>
void for_each_mapping_line(const std::string& text, F&& f) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = std::min(text.find('\n', at), text.size());
    const std::string line = text.substr(at, nl - at);
    unsigned long lo = 0, hi = 0;
    char dash = 0;
    if (std::sscanf(line.c_str(), "%lx%c%lx", &lo, &dash, &hi) != 3 || dash != '-') lo = hi = 0;
    if (f(line, std::uintptr_t{lo}, std::uintptr_t{hi})) return;
    at = nl + 1;
  }
}

// The /proc/self/maps line of the mapping holding p, or "".
inline std::string maps_line_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::string found;
  for_each_mapping_line(proc_text("maps"),
                        [&](const std::string& line, std::uintptr_t lo, std::uintptr_t hi) {
    if (lo <= a && a < hi) found = line;
    return !found.empty();
  });
  return found;
}

// The VmFlags of the smaps entry holding p (e.g. "rd wr sh mr mw me ms dc sd"), or "".
inline std::string vm_flags_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  bool inside = false;
  std::string flags;
  for_each_mapping_line(proc_text("smaps"),
                        [&](const std::string& line, std::uintptr_t lo, std::uintptr_t hi) {
    if (hi != 0) inside = lo <= a && a < hi;
    if (inside && line.rfind("VmFlags:", 0) == 0) flags = line.substr(8);
    return !flags.empty();
  });
  return flags;
}

// True when a line of /proc/self/maps mentions `name` (a file or a named mapping).
inline bool mapped(std::string_view name) {
  bool found = false;
  for_each_mapping_line(proc_text("maps"),
                        [&](const std::string& line, std::uintptr_t, std::uintptr_t) {
    found = line.find(name) != std::string::npos;
    return found;
  });
  return found;
}

}  // namespace permafrost::test
