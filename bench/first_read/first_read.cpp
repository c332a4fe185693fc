// bench/first_read: a worker's first full read of a frozen table, for each backing an arena can
// have and for an image, against the same read over an already-faulted huge-page mapping (the
// memory-bandwidth limit). The goal (issue 19): every first read within 1.5x of that.
//
// A worker is a process that did not build the data: for an arena, a child forked after freeze()
// (as a pre-fork server's workers are); for an image, a process that opens the file (any process
// on the host). Rows, each in a process of its own (this program, `--worker ROW`):
//   anon-4k      anonymous arena, 4 KiB pages; fork copies its page tables
//   anon-huge    anonymous arena, transparent huge pages; fork copies one entry per 2 MiB. The
//                child reads twice: its second read is the reference every row is divided by
//   anon-huge-pop  the same; the child calls arena::populate() first (timed with the read): the
//                page tables are already there, but fork made every entry "old", and populate
//                marks them accessed in one call where the CPU would otherwise do it entry by
//                entry during the read (slow on some virtual machines: docs/design.md §5)
//   memfd        memfd arena; fork copies no page table of a shared mapping, the child faults
//                (one fault per 16 pages with 4 KiB pages, one per 2 MiB with shared huge pages)
//   memfd-pop    memfd arena; the child calls arena::populate() first (timed with the read)
//   image        the image file opened (checksum off) and read; the open is timed
//   image-pop    the same, opened with open_options::populate
//   image-cold   image-pop with the file dropped from the page cache first: includes the disk
//                read (no goal: it measures the disk)
// A read touches one 8-byte word per 64-byte line, in order. Times are the worker thread's CPU
// time (user + system: page faults and populate are system time), so other work on the machine
// does not count; the wall time is printed beside it, and how often the worker was preempted during
// the read (on a loaded machine the processes that ran in between evict its caches and TLB).
// Medians of --rounds rounds, the rows taking turns within a round.
//
// Usage: first_read [--smoke] [--mib N] [--rounds R] [--only ROW,...] [--dir DIR]
//   default 1024 MiB, 3 rounds; --smoke: 64 MiB, 1 round (ctest's bench_first_read_smoke);
//   --only: just those rows (anon-huge always runs: its second read is the reference).
// The memfd rows with shared-memory huge pages allowed (root; the setting is restored on exit):
//   bench/first_read/with_shmem_thp.sh build/bench/first_read/bench_first_read --only
//   memfd,memfd-pop
#include <permafrost/arena.hpp>
#include <permafrost/image.hpp>
#include <permafrost/offset_ptr.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/harness.hpp"

namespace fs = std::filesystem;

namespace {

struct table_root {
  permafrost::offset_ptr<const std::uint64_t> words;
  std::size_t count = 0;
  // The position check's hook (save_image): the words lie in the arena.
  bool points_into(const permafrost::arena& a) const { return permafrost::points_into(words, a); }
};

}  // namespace

PERMAFROST_IMAGE_TYPE(table_root, "permafrost.bench.first_read.v1");

namespace {

struct row_kind {
  const char* name;
  const char* label;
  bool goal;  // the 1.5x goal applies (not to a read from disk)
};
const row_kind rows[] = {
    {"anon-4k", "anonymous arena, 4 KiB pages", true},
    {"anon-huge", "anonymous arena, transparent huge pages", true},
    {"anon-huge-pop", "anonymous arena, transparent huge pages, worker calls populate()", true},
    {"memfd", "memfd arena", true},
    {"memfd-pop", "memfd arena, worker calls populate()", true},
    {"image", "image, open + read", true},
    {"image-pop", "image opened with populate", true},
    {"image-cold", "image opened with populate, not in the page cache", false},
};

[[gnu::noinline]] std::uint64_t read_lines(const std::uint64_t* p, std::size_t words) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < words; i += 8) sum += p[i];
  return sum;
}

long faults_now() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt + r.ru_majflt;
}

// Times the worker was preempted (involuntary context switches): on a loaded machine another
// process that ran in between evicted the read's TLB entries and cache lines.
long preempted_now() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return r.ru_nivcsw;
}

// The share of the mappings overlapping [p, p + bytes) mapped with 2 MiB page-table entries:
// (AnonHugePages + ShmemPmdMapped + FilePmdMapped) / Rss, from /proc/self/smaps.
double huge_share(const void* p, std::size_t bytes) {
  std::ifstream smaps("/proc/self/smaps");
  const auto lo = reinterpret_cast<std::uintptr_t>(p), hi = lo + bytes;
  bool in = false;
  double rss = 0, huge = 0;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long b = 0, e = 0;
    char dash = 0;
    if (std::sscanf(line.c_str(), "%lx%c%lx", &b, &dash, &e) == 3 && dash == '-') {
      in = b < hi && e > lo;
      continue;
    }
    if (!in) continue;
    const auto value = [&](const char* key) {
      return line.rfind(key, 0) == 0 ? std::strtod(line.c_str() + std::strlen(key), nullptr) : 0.0;
    };
    rss += value("Rss:");
    huge += value("AnonHugePages:") + value("ShmemPmdMapped:") + value("FilePmdMapped:");
  }
  return rss > 0 ? huge / rss : NAN;
}

// What a worker reports for one read: CPU and wall time, page faults, the share mapped 2 MiB at a
// time, and (anon-huge) the second read.
struct result {
  double cpu_ms = NAN, wall_ms = NAN, faults = NAN, huge = NAN, preempted = NAN;
  double again_cpu_ms = NAN, again_wall_ms = NAN, again_preempted = NAN;
};

// Times setup() (an open, a populate) and the first full read of words[0, n) that follows.
template <class Setup>
result timed_first_read(Setup&& setup, bool read_twice) {
  result r;
  const long f0 = faults_now(), p0 = preempted_now();
  const double c0 = bench::thread_cpu_ns(), w0 = bench::now_ns();
  const auto [words, n] = setup();
  const std::uint64_t sum = read_lines(words, n);
  r.cpu_ms = (bench::thread_cpu_ns() - c0) / 1e6;
  r.wall_ms = (bench::now_ns() - w0) / 1e6;
  r.faults = static_cast<double>(faults_now() - f0);
  r.preempted = static_cast<double>(preempted_now() - p0);
  r.huge = huge_share(words, n * 8);
  if (read_twice) {
    const long p1 = preempted_now();
    const double c1 = bench::thread_cpu_ns(), w1 = bench::now_ns();
    bench::keep(read_lines(words, n));
    r.again_cpu_ms = (bench::thread_cpu_ns() - c1) / 1e6;
    r.again_wall_ms = (bench::now_ns() - w1) / 1e6;
    r.again_preempted = static_cast<double>(preempted_now() - p1);
  }
  bench::keep(sum);
  return r;
}

void print_result(const result& r) {
  std::printf("cpu_ms=%.3f wall_ms=%.3f faults=%.0f huge=%.4f preempted=%.0f again_cpu_ms=%.3f "
              "again_wall_ms=%.3f again_preempted=%.0f\n",
              r.cpu_ms, r.wall_ms, r.faults, r.huge, r.preempted, r.again_cpu_ms, r.again_wall_ms,
              r.again_preempted);
}

// An arena of `bytes` of the given backing, every word written, frozen; a child forked after
// freeze is the worker.
int arena_row(const std::string& row, std::size_t bytes) {
  permafrost::arena_options o;
  o.capacity = bytes + (std::size_t{256} << 20);
  o.name = "bench-first-read";
  o.backing =
      row.rfind("memfd", 0) == 0 ? permafrost::backing::memfd : permafrost::backing::anonymous;
  o.huge_pages = row != "anon-4k" && permafrost::huge_pages_available();
  permafrost::arena a(o);
  auto words = a.make_array<std::uint64_t>(bytes / 8);
  for (std::size_t i = 0; i < words.size(); ++i) words[i] = i;
  a.freeze();
  int fds[2];
  if (::pipe(fds) != 0) return 3;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::dup2(fds[1], 1) < 0) ::_exit(4);
    print_result(timed_first_read(
        [&] {
      if (row.ends_with("-pop")) a.populate();
      return std::pair<const std::uint64_t*, std::size_t>{words.data(), words.size()};
        },
        row == "anon-huge"));
    std::fflush(stdout);
    ::_exit(0);
  }
  ::close(fds[1]);
  const std::string text = bench::collect_child(fds[0], pid);
  if (text.empty()) return 5;
  std::fputs(text.c_str(), stdout);
  return 0;
}

// This process is the worker: it opens the image and reads it.
int image_row(const std::string& row, const fs::path& path) {
  if (row == "image-cold") bench::drop_cache(path);
  std::optional<permafrost::image> img;
  print_result(timed_first_read(
      [&] {
    img.emplace(
        permafrost::image::open(path, {.verify_checksum = false, .populate = row != "image"}));
    const auto& root = img->root<table_root>();
    return std::pair<const std::uint64_t*, std::size_t>{root.words.get(), root.count};
      },
      false));
  return 0;
}

// Saves the image the image rows open: a root and `bytes` of words.
int make_image(const fs::path& path, std::size_t bytes) {
  permafrost::arena a({.capacity = bytes + (std::size_t{256} << 20), .name = "bench-first-read"});
  auto* root = a.make<table_root>();
  auto words = a.make_array<std::uint64_t>(bytes / 8);
  for (std::size_t i = 0; i < words.size(); ++i) words[i] = i;
  root->words = words.data();
  root->count = words.size();
  a.freeze();
  permafrost::save_image(a, *root, path);
  return 0;
}

std::string thp_setting(const char* file) {
  std::ifstream f(file);
  std::string all;
  std::getline(f, all);
  const auto a = all.find('['), b = all.find(']');
  return a == std::string::npos || b == std::string::npos ? "absent" : all.substr(a + 1, b - a - 1);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 5 && std::strcmp(argv[1], "--worker") == 0) {
      const std::string row = argv[2];
      const std::size_t bytes = std::strtoull(argv[3], nullptr, 10);
      const fs::path image = argv[4];
      if (row == "make-image") return make_image(image, bytes);
      if (row.rfind("image", 0) == 0) return image_row(row, image);
      return arena_row(row, bytes);
    }
    const bool smoke = bench::has_flag(argc, argv, "--smoke");
    const std::size_t mib =
        std::strtoull(bench::flag_value(argc, argv, "--mib", smoke ? "64" : "1024"), nullptr, 10);
    const int rounds = std::atoi(bench::flag_value(argc, argv, "--rounds", smoke ? "1" : "3"));
    const std::size_t bytes = mib << 20;
    char tmpl[] = "/var/tmp/permafrost-bench-first-read-XXXXXX";  // a disk: cold reads are real
    const char* dir_flag = bench::flag_value(argc, argv, "--dir", nullptr);
    const fs::path dir = dir_flag != nullptr ? fs::path(dir_flag) : fs::path(::mkdtemp(tmpl));
    fs::create_directories(dir);
    const fs::path image = dir / "first_read.pfi";

    bench::print_header("bench/first_read", argc, argv);
    std::printf("%zu MiB, %d rounds (medians); THP enabled \"%s\", shmem_enabled \"%s\"; the "
                "image on %s\n\n",
                mib, rounds, thp_setting("/sys/kernel/mm/transparent_hugepage/enabled").c_str(),
                thp_setting("/sys/kernel/mm/transparent_hugepage/shmem_enabled").c_str(),
                dir.c_str());

    // --only a,b: just those rows (and anon-huge, whose second read is the reference).
    const std::string only =
        std::string(",") + bench::flag_value(argc, argv, "--only", "") + ",anon-huge,";
    const auto wanted = [&](const row_kind& k) {
      return only == ",,anon-huge," ||
             only.find(std::string(",") + k.name + ",") != std::string::npos;
    };
    const std::size_t n = std::size(rows);
    if (std::any_of(std::begin(rows), std::end(rows), [&](const row_kind& k) {
          return wanted(k) && std::strncmp(k.name, "image", 5) == 0;
        })) {
      std::fprintf(stderr, "first_read: saving the image\n");
      bench::run_worker({"--worker", "make-image", std::to_string(bytes), image.string()});
    }
    std::vector<std::vector<double>> cpu(n), wall(n), faults(n), huge(n), preempted(n);
    std::vector<double> reference, reference_preempted;
    for (int r = 0; r < rounds; ++r)
      for (std::size_t i = 0; i < n; ++i) {
        if (!wanted(rows[i])) continue;
        std::fprintf(stderr, "first_read: %s (round %d of %d)\n", rows[i].name, r + 1, rounds);
        const std::string out =
            bench::run_worker({"--worker", rows[i].name, std::to_string(bytes), image.string()});
        cpu[i].push_back(bench::field(out, "cpu_ms"));
        wall[i].push_back(bench::field(out, "wall_ms"));
        faults[i].push_back(bench::field(out, "faults"));
        huge[i].push_back(bench::field(out, "huge"));
        preempted[i].push_back(bench::field(out, "preempted"));
        const double again = bench::field(out, "again_cpu_ms");
        if (!std::isnan(again)) {
          reference.push_back(again);
          reference_preempted.push_back(bench::field(out, "again_preempted"));
          std::fprintf(stderr,
                       "first_read: %s: first read %.1f ms CPU (preempted %.0f times), "
                       "second %.1f ms (%.0f)\n",
                       rows[i].name, cpu[i].back(), preempted[i].back(), again,
                       reference_preempted.back());
        }
      }
    const double ref = bench::median(reference);
    std::printf("reference: the same read over an already-faulted mapping with transparent huge "
                "pages (an anon-huge worker's second read): %.1f ms CPU, %.2f GB/s, preempted "
                "%.0f times\n\n",
                ref, static_cast<double>(bytes) / ref / 1e6, bench::median(reference_preempted));
    std::printf("| worker's first full read | CPU ms | wall ms | page faults | mapped 2 MiB at a "
                "time | preempted | vs reference | goal | |\n"
                "|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for (std::size_t i = 0; i < n; ++i) {
      if (!wanted(rows[i])) continue;
      const double x = bench::median(cpu[i]) / ref;
      std::printf("| %s | %.1f | %.1f | %.0f | %.0f%% | %.0f | %.2fx | %s | %s |\n", rows[i].label,
                  bench::median(cpu[i]), bench::median(wall[i]), bench::median(faults[i]),
                  bench::median(huge[i]) * 100, bench::median(preempted[i]), x,
                  rows[i].goal ? "<= 1.5x" : "",
                  rows[i].goal ? (x <= 1.5 ? "met" : "NOT MET") : "");
    }
    std::fflush(stdout);
    if (dir_flag == nullptr) fs::remove_all(dir);
    else fs::remove(image);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "first_read: %s\n", e.what());
    return 1;
  }
}
