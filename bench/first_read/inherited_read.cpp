// bench/first_read/inherited_read: the machine's part of a forked worker's first read, with no
// permafrost code. The parent writes a private anonymous mapping (transparent huge pages, or
// 4 KiB pages), forks, and the child reads it twice, one 8-byte word per 64-byte line; in a
// second child, MADV_POPULATE_READ runs first (timed apart). Where the first read of a child
// is several times its second one although it takes no page fault (fork copied the page
// tables), the cost is the machine's (docs/design.md section 5, "A slow first read with no
// fault"), and bench_first_read's arena rows pay it too.
//
// Usage: inherited_read [--smoke] [--mib N] [--rounds R]
//   default 1024 MiB, 3 rounds (each: huge pages, then 4 KiB pages); --smoke: 64 MiB, 1 round.
// Prints, per round and page size: the child's first read, its second, and with populate: the
// populate call and the read after it, in ms (wall time of the child).
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "../common/harness.hpp"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace {

[[gnu::noinline]] std::uint64_t read_lines(const char* p, std::size_t bytes) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < bytes; i += 64) {
    std::uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    sum += w;
  }
  return sum;
}

double ms_since(double t0) { return (bench::now_ns() - t0) / 1e6; }

// A child that reads [p, p + bytes) (after MADV_POPULATE_READ when `populate`); its timings as
// text: "populate_ms first_ms second_ms".
std::string child_reads(const char* p, std::size_t bytes, bool populate) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    double populate_ms = 0;
    if (populate) {
      const double t = bench::now_ns();
      ::madvise(const_cast<char*>(p), bytes, MADV_POPULATE_READ);
      populate_ms = ms_since(t);
    }
    double t = bench::now_ns();
    std::uint64_t sum = read_lines(p, bytes);
    const double first = ms_since(t);
    t = bench::now_ns();
    sum += read_lines(p, bytes);
    const double second = ms_since(t);
    char out[128];
    const int n = std::snprintf(out, sizeof out, "%.1f %.1f %.1f %d", populate_ms, first, second,
                                static_cast<int>(sum & 1));
    const ssize_t written = ::write(fds[1], out, static_cast<std::size_t>(n));
    ::_exit(written == n ? 0 : 1);
  }
  ::close(fds[1]);
  return bench::collect_child(fds[0], pid);
}

}  // namespace

int main(int argc, char** argv) {
  const bool smoke = bench::has_flag(argc, argv, "--smoke");
  const std::size_t mib = std::stoul(bench::flag_value(argc, argv, "--mib", smoke ? "64" : "1024"));
  const int rounds = std::stoi(bench::flag_value(argc, argv, "--rounds", smoke ? "1" : "3"));
  const std::size_t bytes = mib << 20;
  const std::size_t huge = std::size_t{2} << 20;
  std::printf("## bench/first_read/inherited_read (no permafrost code)\n\n%zu MiB, %d rounds; "
              "ms of the child's wall time\n\n",
              mib, rounds);
  std::printf("| round | pages | first read | second read | first / second | populate | read after "
              "populate |\n|---|---|---:|---:|---:|---:|---:|\n");
  for (int r = 1; r <= rounds; ++r) {
    for (const bool huge_pages : {true, false}) {
      void* m =
          ::mmap(nullptr, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) {
        std::perror("inherited_read: mmap");
        return 1;
      }
      auto* p =
          reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(m) + huge - 1) & ~(huge - 1));
      ::madvise(p, bytes, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
      std::memset(p, 1, bytes);
      double populate_ms = 0, first = 0, second = 0, pop_read = 0, unused = 0;
      int odd = 0;
      if (std::sscanf(child_reads(p, bytes, false).c_str(), "%lf %lf %lf %d", &unused, &first,
                      &second, &odd) != 4 ||
          std::sscanf(child_reads(p, bytes, true).c_str(), "%lf %lf %lf %d", &populate_ms,
                      &pop_read, &unused, &odd) != 4) {
        std::fprintf(stderr, "inherited_read: a child failed\n");
        return 1;
      }
      std::printf("| %d | %s | %.1f | %.1f | %.2fx | %.1f | %.1f |\n", r,
                  huge_pages ? "2 MiB (THP)" : "4 KiB", first, second, first / second, populate_ms,
                  pop_read);
      std::fflush(stdout);
      ::munmap(m, bytes + huge);
    }
  }
  return 0;
}
