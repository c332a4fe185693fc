// bench/alloc: allocation throughput, the arena against mimalloc, jemalloc, glibc malloc and
// std::pmr::monotonic_buffer_resource, on one thread and two.
//
// Every (allocator, workload, threads) measurement runs in a worker process of its own (this
// program again, `--worker ...`), rounds interleaved, medians reported: mimalloc and jemalloc are
// dlopen'ed privately (RTLD_LOCAL; mi_malloc and jemalloc's malloc called explicitly), so glibc
// stays the process malloc and no allocator sees another's heap. jemalloc needs
// GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 to be dlopen'ed; the driver sets it.
//
// Each object gets one 8-byte store (a real program initialises what it allocates). "cold" is
// the first pass in a fresh process: every allocator first-touches its pages (~6.6 us per 4 KiB
// page on this VM). "warm" is a second pass: the malloc family reuses what the first pass freed;
// the arena, which never reuses, gets a new arena whose pages were faulted in (arena::prefault)
// before the timed pass.
//
// Each column measures the allocator it names: before measuring, a worker checks where its
// allocation function comes from (dladdr: glibc's malloc from libc.so, mi_malloc from
// libmimalloc, jemalloc's from libjemalloc). A column that fails the check - e.g. "glibc" in a
// build where another library replaced malloc - is refused with the reason, not printed.
#include <permafrost/arena.hpp>

#include <atomic>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <memory_resource>
#include <thread>

#include "../common/harness.hpp"

namespace {

using malloc_fn = void* (*)(std::size_t);
using free_fn = void (*)(void*);

// "arena-4k" is the arena without huge pages: on this VM, fresh huge pages are expensive to
// fault in cold (the host backs guest memory lazily), recycled 4 KiB frames are not.
const char* const all_allocators[] = {"arena", "arena-4k", "mimalloc", "jemalloc", "glibc", "pmr"};

// The allocation and free functions of a malloc-family peer, or an empty pair (with *why) when
// they cannot be had or are not the named allocator's.
std::pair<malloc_fn, free_fn> malloc_family(const std::string& allocator, std::string* why) {
  malloc_fn m = &::malloc;
  free_fn f = &::free;
  const char* expected_file = "libc.so";
  if (allocator != "glibc") {
    const char* lib = allocator == "mimalloc" ? "libmimalloc.so.2" : "libjemalloc.so.2";
    expected_file = allocator == "mimalloc" ? "libmimalloc" : "libjemalloc";
    void* h = ::dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      *why = std::string("dlopen ") + lib + ": " + ::dlerror();
      return {};
    }
    m = reinterpret_cast<malloc_fn>(::dlsym(h, allocator == "mimalloc" ? "mi_malloc" : "malloc"));
    f = reinterpret_cast<free_fn>(::dlsym(h, allocator == "mimalloc" ? "mi_free" : "free"));
    if (m == nullptr || f == nullptr) {
      *why = std::string("no allocation functions in ") + lib;
      return {};
    }
  }
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(m), &info) == 0 || info.dli_fname == nullptr ||
      std::strstr(info.dli_fname, expected_file) == nullptr) {
    *why = std::string("its malloc comes from ") +
           (info.dli_fname != nullptr ? info.dli_fname : "?") + ", not " + expected_file;
    return {};
  }
  return {m, f};
}

// Sizes for one thread: "small" 16-64 B; "mix" 60% 16-64 B, 30% 65-512 B, 10% 513-4096 B.
std::vector<std::uint16_t> make_sizes(const std::string& workload, std::size_t n,
                                      std::uint64_t seed) {
  std::vector<std::uint16_t> sizes(n);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& s : sizes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const unsigned r = static_cast<unsigned>(x >> 32);
    if (workload == "small" || r % 100 < 60) {
      s = static_cast<std::uint16_t>(16 + r % 49);
    } else if (r % 100 < 90) {
      s = static_cast<std::uint16_t>(65 + (r >> 8) % 448);
    } else {
      s = static_cast<std::uint16_t>(513 + (r >> 8) % 3584);
    }
  }
  return sizes;
}

// One pass: `threads` threads each allocate their sizes, store into every object, and keep the
// pointers. Returns wall nanoseconds from the common start to the last thread's end.
template <class Alloc>
double pass(int threads, const std::vector<std::vector<std::uint16_t>>& sizes,
            std::vector<std::vector<void*>>& ptrs, Alloc&& alloc) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> ends(static_cast<std::size_t>(threads));
  auto body = [&](int t) {
    const auto& sz = sizes[static_cast<std::size_t>(t)];
    auto& out = ptrs[static_cast<std::size_t>(t)];
    auto&& a = alloc(t);
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {}
    for (std::size_t i = 0; i < sz.size(); ++i) {
      void* p = a(sz[i]);
      *static_cast<std::uint64_t*>(p) = i;
      out[i] = p;
    }
    ends[static_cast<std::size_t>(t)] = bench::now_ns();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  while (ready.load() != threads - 1) {}
  ready.fetch_add(1);
  const double start = bench::now_ns();
  go.store(true, std::memory_order_release);
  // Thread 0 is this thread.
  {
    const auto& sz = sizes[0];
    auto& out = ptrs[0];
    auto&& a = alloc(0);
    for (std::size_t i = 0; i < sz.size(); ++i) {
      void* p = a(sz[i]);
      *static_cast<std::uint64_t*>(p) = i;
      out[i] = p;
    }
    ends[0] = bench::now_ns();
  }
  for (auto& th : pool) th.join();
  double end = 0;
  for (double e : ends) end = std::max(end, e);
  std::uint64_t check = 0;
  for (auto& v : ptrs) check += *static_cast<std::uint64_t*>(v.back());
  bench::keep(check);
  return end - start;
}

int worker(const std::string& allocator, const std::string& workload, int threads,
           std::size_t count) {
  std::vector<std::vector<std::uint16_t>> sizes;
  std::vector<std::vector<void*>> ptrs;
  for (int t = 0; t < threads; ++t) {
    sizes.push_back(make_sizes(workload, count / static_cast<std::size_t>(threads),
                               static_cast<std::uint64_t>(t + 1)));
    ptrs.emplace_back(sizes.back().size(), nullptr);
  }
  double cold = 0;
  double warm = 0;
  if (allocator == "arena" || allocator == "arena-4k") {
    permafrost::arena_options options;
    options.huge_pages = allocator == "arena" && permafrost::huge_pages_available();
    // The bytes the pass will use (16-byte rounding), plus room for two threads' chunk tails.
    std::size_t need = std::size_t{4} << 20;
    for (auto& v : sizes)
      for (auto s : v) need += (s + 15u) & ~std::size_t{15};
    bool prefault = false;
    auto run = [&] {
      permafrost::arena a(options);
      if (prefault) a.prefault(need + need / 8);
      return pass(threads, sizes, ptrs,
                  [&](int) { return [&a](std::size_t n) { return a.allocate(n); }; });
    };
    cold = run();
    // Steady state for an arena: its pages faulted in beforehand (arena::prefault), as the
    // malloc family's second pass reuses pages it has faulted already.
    prefault = true;
    warm = run();
  } else if (allocator == "pmr") {
    auto run = [&] {
      std::vector<std::unique_ptr<std::pmr::monotonic_buffer_resource>> res;
      for (int t = 0; t < threads; ++t)
        res.push_back(std::make_unique<std::pmr::monotonic_buffer_resource>());
      return pass(threads, sizes, ptrs, [&](int t) {
        auto* r = res[static_cast<std::size_t>(t)].get();
        return [r](std::size_t n) { return r->allocate(n, alignof(std::max_align_t)); };
      });
    };
    cold = run();
    warm = run();
  } else {
    std::string why;
    const auto [m, f] = malloc_family(allocator, &why);
    if (m == nullptr) {
      std::fprintf(stderr, "%s: %s\n", allocator.c_str(), why.c_str());
      return 1;
    }
    auto run = [&] {
      const double ns =
          pass(threads, sizes, ptrs, [m](int) { return [m](std::size_t n) { return m(n); }; });
      for (auto& v : ptrs)
        for (void* p : v) f(p);
      return ns;
    };
    cold = run();
    warm = run();
  }
  std::printf("cold_ns=%.3f warm_ns=%.3f\n", cold / static_cast<double>(count),
              warm / static_cast<double>(count));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 6 && std::string(argv[1]) == "--worker")
    return worker(argv[2], argv[3], std::atoi(argv[4]), std::strtoull(argv[5], nullptr, 10));
  if (argc >= 3 && std::string(argv[1]) == "--check") {
    // Prints "genuine=1", or "genuine=0" and the reason.
    std::string why;
    const bool genuine = std::string(argv[2]).rfind("arena", 0) == 0 ||
                         std::string(argv[2]) == "pmr" ||
                         malloc_family(argv[2], &why).first != nullptr;
    std::printf("genuine=%d %s\n", genuine ? 1 : 0, why.c_str());
    return 0;
  }

  const bool smoke = bench::has_flag(argc, argv, "--smoke");
  const int rounds = std::atoi(bench::flag_value(argc, argv, "--rounds", smoke ? "1" : "5"));
  const std::size_t small_n = smoke ? 200'000 : 10'000'000;
  const std::size_t mix_n = smoke ? 50'000 : 2'000'000;
  const std::vector<std::string> env{"GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384"};
  std::vector<const char*> allocators;
  for (const char* a : all_allocators) {
    const std::string out = bench::run_worker({"--check", a}, env);
    if (bench::field(out, "genuine") == 1) {
      allocators.push_back(a);
    } else {
      std::printf("refused: the %s column (%s)\n", a, out.c_str() + out.find(' ') + 1);
    }
  }
  if (allocators.empty() || std::string(allocators[0]) != "arena") {
    std::fprintf(stderr, "alloc: the arena column cannot be measured\n");
    return 1;
  }

  bench::print_header("alloc: ns per allocation (median of interleaved runs, lower is better)",
                      argc, argv);
  std::printf("small = %zu objects of 16-64 B; mix = %zu objects, 60%% 16-64 B, 30%% 65-512 B, "
              "10%% 513-4096 B; one 8-byte store per object; %d rounds\n\n",
              small_n, mix_n, rounds);
  // results[workload/threads][allocator] = {cold samples, warm samples}
  std::map<std::string, std::map<std::string, std::pair<std::vector<double>, std::vector<double>>>>
      results;
  const std::vector<std::pair<std::string, int>> configs{
      {"small", 1}, {"small", 2}, {"mix", 1}, {"mix", 2}};
  for (int r = 0; r < rounds; ++r) {
    for (const auto& [workload, threads] : configs) {
      for (const char* alloc : allocators) {
        const std::size_t n = workload == "small" ? small_n : mix_n;
        const std::string out = bench::run_worker(
            {"--worker", alloc, workload, std::to_string(threads), std::to_string(n)}, env);
        auto& cell = results[workload + "/" + std::to_string(threads)][alloc];
        cell.first.push_back(bench::field(out, "cold_ns"));
        cell.second.push_back(bench::field(out, "warm_ns"));
      }
    }
  }
  for (const char* phase : {"warm", "cold"}) {
    std::printf("### %s\n\n| workload | threads |", phase);
    for (const char* a : allocators) std::printf(" %s ns |", a);
    for (std::size_t i = 1; i < allocators.size(); ++i) std::printf(" %s/arena |", allocators[i]);
    std::printf("\n|---|---|");
    for (std::size_t i = 0; i < 2 * allocators.size() - 1; ++i) std::printf("---|");
    std::printf("\n");
    for (const auto& [workload, threads] : configs) {
      auto& row = results[workload + "/" + std::to_string(threads)];
      std::map<std::string, double> med;
      for (const char* a : allocators)
        med[a] = bench::median(std::string(phase) == "warm" ? row[a].second : row[a].first);
      std::printf("| %s | %d |", workload.c_str(), threads);
      for (const char* a : allocators) std::printf(" %.2f |", med[a]);
      for (std::size_t i = 1; i < allocators.size(); ++i)
        std::printf(" %.1fx |", med[allocators[i]] / med["arena"]);
      std::printf("\n");
    }
    std::printf("\n");
  }
  return 0;
}
