// rss_savings — what every variant process shares: the rows, the options, and the fork/report
// protocol with the driver. Header-only and allocator-neutral (no permafrost, no mimalloc), so
// the glibc variants can include it without linking anything that replaces malloc.
//
// Protocol (driver <-> variant process, one line each way):
//   variant -> stdout: "READY parent=P workers=W1,W2,... build_ms=.. freeze_ms=.. fork_ms=..
//                       lookup_ns=.. table_bytes=.. table=B-E[,B-E] checksum=.." once every
//                       worker has done its lookups and churn and is waiting;
//                       table=auto when the table lies in the allocator's heap (the driver then
//                       audits all of the parent's anonymous mappings).
//   driver -> stdin:   any line (or EOF) once it has measured; the variant releases its workers,
//                      reaps them and exits 0.
// bench/python/cow_dict.py speaks the same protocol.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace rss {

struct options {
  std::size_t rows = 1'000'000;  // rows kept in the table
  std::size_t churn_mib = 50;    // bytes each worker allocates and frees after its lookups
  int workers = 4;
  std::string variant;  // for variants sharing one binary
};

inline options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--rows") o.rows = std::strtoull(next(), nullptr, 10);
    else if (a == "--workers") o.workers = std::atoi(next());
    else if (a == "--churn-mib") o.churn_mib = std::strtoull(next(), nullptr, 10);
    else if (a == "--variant") o.variant = next();
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      std::exit(2);
    }
  }
  if (o.rows == 0 || o.workers < 1) {
    std::fprintf(stderr, "--rows and --workers must be positive\n");
    std::exit(2);
  }
  return o;
}

// ----- the rows --------------------------------------------------------------------------------
// Row i exists for i in [0, universe(rows)) with i % 4 != 3: variants with a "realistic history"
// insert every i and erase the quarter with i % 4 == 3; the others insert only the survivors, so
// every variant ends with the same keys.

inline std::size_t universe(std::size_t rows) { return rows + rows / 3 + 1; }
inline bool survives(std::size_t i) { return i % 4 != 3; }

struct row {
  char key[16];  // "user:0000123"
  std::size_t key_len;
  char name[32];  // 8-15 letters
  std::size_t name_len;
  char email[48];  // 21-32 characters
  std::size_t email_len;
  char city[16];  // 5-12 letters
  std::size_t city_len;
  std::int64_t id;
  double score;
  std::int32_t visits;
  std::int32_t flags;

  std::string_view k() const { return {key, key_len}; }
  std::string_view n() const { return {name, name_len}; }
  std::string_view e() const { return {email, email_len}; }
  std::string_view c() const { return {city, city_len}; }
};

inline std::uint64_t mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Strings are slices of one pseudo-random lowercase pool, so bench/python/cow_dict.py can make
// byte-identical rows quickly (one mix() per row).
inline constexpr std::size_t pool_size = 65536;

inline const char* letter_pool() {
  static const std::string pool = [] {
    std::string p(pool_size + 64, 'a');
    for (std::size_t j = 0; j < p.size(); ++j) p[j] = static_cast<char>('a' + mix(j) % 26);
    return p;
  }();
  return pool.data();
}

inline void make_row(std::size_t i, row& r) {
  const char* pool = letter_pool();
  const std::uint64_t s = mix(i);
  r.key_len = static_cast<std::size_t>(std::snprintf(r.key, sizeof r.key, "user:%07zu", i));
  r.name_len = 8 + (s & 7);  // 8-15: inline in std::string
  std::memcpy(r.name, pool + ((s >> 3) & 0xffff), r.name_len);
  r.email_len = 11 + (s >> 19) % 12;  // 11-22, then the domain:
  std::memcpy(r.email, pool + ((s >> 23) & 0xffff), r.email_len);
  std::memcpy(r.email + r.email_len, "@mail.test", 10);  // 21-32 characters in all
  r.email_len += 10;
  r.city_len = 5 + (s >> 39) % 8;  // 5-12
  std::memcpy(r.city, pool + ((s >> 42) & 0xffff), r.city_len);
  r.id = static_cast<std::int64_t>(i) * 7919;
  r.score = static_cast<double>(i * 37 % 100000) / 100.0;
  r.visits = static_cast<std::int32_t>((s >> 20) % 10000);
  r.flags = static_cast<std::int32_t>(i & 0xff);
}

// Lookup order: every surviving key once, in a scattered order (a stride coprime with the
// universe), as requests would arrive.
template <class F>
void for_each_lookup(std::size_t rows, F f) {
  const std::size_t u = universe(rows);
  std::size_t stride = 7'368'787 % u;
  while (stride == 0 || std::__gcd(stride, u) != 1) ++stride;
  std::size_t i = 0;
  char key[16];
  for (std::size_t n = 0; n < u; ++n) {
    i = (i + stride) % u;
    if (!survives(i)) continue;
    const auto len = static_cast<std::size_t>(std::snprintf(key, sizeof key, "user:%07zu", i));
    f(std::string_view(key, len));
  }
}

// ----- churn: a worker's own allocations -----------------------------------------------------
// `bytes` in all, 16 B - 4 KiB each, a window of 2048 live blocks, each written so its pages are
// real. alloc/release are the variant's allocator. Returns a checksum so nothing is elided.
template <class Alloc, class Release>
std::uint64_t churn(std::size_t bytes, Alloc alloc, Release release) {
  constexpr std::size_t window = 2048;
  std::vector<std::pair<char*, std::size_t>> live(window, {nullptr, 0});
  std::uint64_t sum = 0;
  std::size_t done = 0;
  for (std::uint64_t n = 0; done < bytes; ++n) {
    const std::uint64_t r = mix(n);
    const std::size_t size = (r % 8 == 0) ? 1024 + r % 3072 : 16 + r % 240;
    auto& slot = live[n % window];
    if (slot.first != nullptr) {
      sum += static_cast<unsigned char>(slot.first[slot.second - 1]);
      release(slot.first, slot.second);
    }
    char* p = static_cast<char*>(alloc(size));
    std::memset(p, static_cast<int>(n), size);
    slot = {p, size};
    done += size;
  }
  for (auto& [p, size] : live)
    if (p != nullptr) release(p, size);
  return sum;
}

// ----- the fork/report protocol ----------------------------------------------------------------

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct build_report {
  double build_ms = 0;
  double freeze_ms = -1;        // -1: the variant has no freeze step
  std::size_t table_bytes = 0;  // the table's own bytes as the variant counts them (0: unknown)
  std::string table = "auto";   // "B-E[,B-E]" in hex, or auto
};

struct worker_result {
  double lookup_ns = 0;
  std::uint64_t checksum = 0;
};

inline void write_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) std::_Exit(4);
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

inline bool read_all(int fd, void* p, std::size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// Forks o.workers workers that each run `work` (lookups, then churn), reports READY, waits for
// the driver, releases and reaps the workers. Returns the process exit code.
inline int run_workers(const options& o, const build_report& b,
                       const std::function<worker_result()>& work) {
  int results[2];
  int go[2];
  if (::pipe(results) != 0 || ::pipe(go) != 0) {
    std::perror("pipe");
    return 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  const auto t_fork = std::chrono::steady_clock::now();
  for (int w = 0; w < o.workers; ++w) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    if (pid == 0) {
      ::close(go[1]);
      ::close(results[0]);
      const worker_result r = work();
      write_all(results[1], &r, sizeof r);
      char c;
      while (::read(go[0], &c, 1) < 0 && errno == EINTR) {}
      std::_Exit(0);  // no destructors, no atexit: the worker's measured state is its last
    }
    pids.push_back(pid);
  }
  const double fork_ms = ms_since(t_fork);
  ::close(go[0]);
  ::close(results[1]);
  std::vector<double> lookups;
  std::uint64_t checksum = 0;
  for (int w = 0; w < o.workers; ++w) {
    worker_result r;
    if (!read_all(results[0], &r, sizeof r)) {
      std::fprintf(stderr, "a worker died before reporting\n");
      return 1;
    }
    lookups.push_back(r.lookup_ns);
    checksum += r.checksum;
  }
  std::sort(lookups.begin(), lookups.end());
  std::string pid_list;
  for (pid_t p : pids) pid_list += (pid_list.empty() ? "" : ",") + std::to_string(p);
  std::printf("READY parent=%d workers=%s build_ms=%.1f freeze_ms=%.2f fork_ms=%.2f lookup_ns=%.1f "
              "table_bytes=%zu table=%s checksum=%llu\n",
              static_cast<int>(::getpid()), pid_list.c_str(), b.build_ms, b.freeze_ms, fork_ms,
              lookups[lookups.size() / 2], b.table_bytes, b.table.c_str(),
              static_cast<unsigned long long>(checksum));
  std::fflush(stdout);
  char line[64];
  (void)!std::fgets(line, sizeof line, stdin);  // the driver has measured (or gone away)
  ::close(go[1]);                               // EOF releases every worker
  int rc = 0;
  for (pid_t p : pids) {
    int status = 0;
    while (::waitpid(p, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
  }
  return rc;
}

// One untimed pass (it pays the first touches and, for variants that write, the copies), then
// a timed pass: steady-state lookup time. `lookup(key)` returns something for the checksum.
template <class Lookup>
worker_result timed_lookups(std::size_t rows, Lookup lookup) {
  worker_result r;
  for_each_lookup(rows, [&](std::string_view key) { r.checksum += lookup(key); });
  std::size_t n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for_each_lookup(rows, [&](std::string_view key) {
    r.checksum += lookup(key);
    ++n;
  });
  r.lookup_ns = ms_since(t0) * 1e6 / static_cast<double>(n ? n : 1);
  return r;
}

inline std::string hex_range(const void* b, const void* e) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lx-%lx", reinterpret_cast<unsigned long>(b),
                reinterpret_cast<unsigned long>(e));
  return buf;
}

// Transparent hashing so lookups by string_view build no key string.
struct sv_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

}  // namespace rss
