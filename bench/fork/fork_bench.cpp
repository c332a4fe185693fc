// bench/fork: what a frozen arena costs at fork, at freeze and on a worker's first read, for
// each backing (anonymous 4 KiB pages, anonymous huge pages, memfd) and arena size.
//
// Each (backing, size) runs in a worker process of its own (this program, `--worker ...`), which
// first times fork() with no arena (the baseline: this small process alone), then builds the
// arena (every page written), freezes it (timed), times fork() again, and forks one child that
// reads every cache line once and reports its time, page faults and VmPTE. Fork latency is the
// parent's fork() call, median of --forks calls.
#include <permafrost/arena.hpp>

#include <cstring>
#include <fstream>
#include <map>
#include <sys/resource.h>

#include "../common/harness.hpp"

namespace {

struct backing_kind {
  const char* name;
  permafrost::backing backing;
  bool huge;
};
const backing_kind kinds[] = {{"anon-4k", permafrost::backing::anonymous, false},
                              {"anon-huge", permafrost::backing::anonymous, true},
                              {"memfd", permafrost::backing::memfd, false}};

double fork_ms(int forks) {
  std::vector<double> v;
  for (int i = 0; i < forks; ++i) {
    const double t0 = bench::now_ns();
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    const double t1 = bench::now_ns();
    int status = 0;
    ::waitpid(pid, &status, 0);
    v.push_back((t1 - t0) / 1e6);
  }
  return bench::median(v);
}

long status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key) + 1);
  return -1;
}

[[gnu::noinline]] std::uint64_t read_lines(const std::uint64_t* p, std::size_t words) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < words; i += 8) sum += p[i];
  return sum;
}

int worker(const std::string& kind_name, std::size_t bytes, int forks) {
  const backing_kind* kind = nullptr;
  for (const auto& k : kinds)
    if (kind_name == k.name) kind = &k;
  if (kind == nullptr) return 2;
  const double base_ms = fork_ms(forks);

  permafrost::arena_options o;
  o.capacity = bytes + (std::size_t{256} << 20);
  o.name = "bench-fork";
  o.backing = kind->backing;
  o.huge_pages = kind->huge && permafrost::huge_pages_available();
  permafrost::arena a(o);
  const double b0 = bench::now_ns();
  auto words = a.make_array<std::uint64_t>(bytes / 8);
  for (std::size_t i = 0; i < words.size(); i += 512) words[i] = i;  // every 4 KiB page written
  const double build_ms = (bench::now_ns() - b0) / 1e6;
  const double f0 = bench::now_ns();
  a.freeze();
  const double freeze_ms = (bench::now_ns() - f0) / 1e6;
  const std::size_t huge_bytes = a.huge_page_bytes();
  const double arena_ms = fork_ms(forks);

  int fds[2];
  if (::pipe(fds) != 0) return 3;
  const pid_t pid = ::fork();
  if (pid == 0) {
    rusage r0{}, r1{};
    ::getrusage(RUSAGE_SELF, &r0);
    const double t0 = bench::now_ns();
    const std::uint64_t sum = read_lines(words.data(), words.size());
    const double read_ms = (bench::now_ns() - t0) / 1e6;
    ::getrusage(RUSAGE_SELF, &r1);
    double out[3] = {
        read_ms, static_cast<double>(status_kib("VmPTE:")),
        static_cast<double>(r1.ru_minflt - r0.ru_minflt + r1.ru_majflt - r0.ru_majflt)};
    bench::keep(sum);
    (void)!::write(fds[1], out, sizeof out);
    ::_exit(0);
  }
  double child[3] = {0, 0, 0};
  (void)!::read(fds[0], child, sizeof child);
  int status = 0;
  ::waitpid(pid, &status, 0);
  // A second child populates its page tables first (arena::populate), then reads: the way a
  // memfd worker avoids a fault per 16 pages.
  const pid_t pid2 = ::fork();
  if (pid2 == 0) {
    const double t0 = bench::now_ns();
    a.populate();
    const std::uint64_t sum = read_lines(words.data(), words.size());
    const double ms = (bench::now_ns() - t0) / 1e6;
    bench::keep(sum);
    (void)!::write(fds[1], &ms, sizeof ms);
    ::_exit(0);
  }
  double populated_read_ms = 0;
  (void)!::read(fds[0], &populated_read_ms, sizeof populated_read_ms);
  ::waitpid(pid2, &status, 0);
  std::printf("base_ms=%.4f arena_ms=%.4f freeze_ms=%.3f build_ms=%.1f read_ms=%.1f pte_kib=%.0f "
              "faults=%.0f huge_mib=%.0f populated_read_ms=%.1f\n",
              base_ms, arena_ms, freeze_ms, build_ms, child[0], child[1], child[2],
              static_cast<double>(huge_bytes) / (1 << 20), populated_read_ms);
  return 0;
}

std::string size_label(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::string(argv[1]) == "--worker")
    return worker(argv[2], std::strtoull(argv[3], nullptr, 10), std::atoi(argv[4]));

  const bool smoke = bench::has_flag(argc, argv, "--smoke");
  const int rounds = std::atoi(bench::flag_value(argc, argv, "--rounds", "1"));
  const int forks = std::atoi(bench::flag_value(argc, argv, "--forks", smoke ? "3" : "15"));
  std::vector<std::size_t> sizes;
  if (smoke) {
    sizes = {std::size_t{16} << 20};
  } else {
    sizes = {std::size_t{256} << 20, std::size_t{1} << 30, std::size_t{4} << 30};
  }
  bench::print_header("fork, freeze and first read with a populated frozen arena", argc, argv);
  std::printf(
      "every page written before freeze; fork ms = median of %d fork() calls in the parent; "
      "%d round(s), medians across rounds; 'no arena' = the same worker process before "
      "it made the arena\n\n",
      forks, rounds);
  const char* keys[] = {"base_ms", "arena_ms", "freeze_ms", "build_ms",         "read_ms",
                        "pte_kib", "faults",   "huge_mib",  "populated_read_ms"};
  std::map<std::string, std::map<std::string, std::vector<double>>>
      res;  // "kind/size" -> key -> samples
  for (int r = 0; r < rounds; ++r)
    for (std::size_t size : sizes)
      for (const auto& k : kinds) {
        const std::string out =
            bench::run_worker({"--worker", k.name, std::to_string(size), std::to_string(forks)});
        for (const char* key : keys)
          res[std::string(k.name) + "/" + std::to_string(size)][key].push_back(
              bench::field(out, key));
      }
  auto med = [&](const backing_kind& k, std::size_t size, const char* key) {
    return bench::median(res[std::string(k.name) + "/" + std::to_string(size)][key]);
  };
  std::printf(
      "### fork latency and a child's first full read\n\n"
      "| arena | backing | fork ms, no arena | fork ms | fork / no arena | anon-4k fork / this | "
      "child VmPTE KiB | child full read ms | child page faults | child populate() + read ms | "
      "huge MiB |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (std::size_t size : sizes)
    for (const auto& k : kinds) {
      const double f = med(k, size, "arena_ms");
      std::printf("| %s | %s | %.3f | %.3f | %.1fx | %.1fx | %.0f | %.1f | %.0f | %.1f | %.0f |\n",
                  size_label(size).c_str(), k.name, med(k, size, "base_ms"), f,
                  f / med(k, size, "base_ms"), med(kinds[0], size, "arena_ms") / f,
                  med(k, size, "pte_kib"), med(k, size, "read_ms"), med(k, size, "faults"),
                  med(k, size, "populated_read_ms"), med(k, size, "huge_mib"));
    }
  std::printf("\n### freeze\n\n| arena | backing | freeze ms | ms per GiB | build ms (first touch) "
              "|\n|---|---|---|---|---|\n");
  for (std::size_t size : sizes)
    for (const auto& k : kinds) {
      const double ms = med(k, size, "freeze_ms");
      std::printf("| %s | %s | %.3f | %.3f | %.0f |\n", size_label(size).c_str(), k.name, ms,
                  ms / (static_cast<double>(size) / (1ull << 30)), med(k, size, "build_ms"));
    }
  return 0;
}
