// The heap-churn scenario as a program, so it can run under any malloc: linked plain (glibc),
// with jemalloc or mimalloc, or with permafrost. The parent builds a heap of --heap MiB and frees
// a quarter of it, forks; the child churns --churn MiB through plain malloc/free (in --threads
// threads it starts, or on its main thread) and checks the parent's blocks; the parent then
// counts the pages the child copied out of everything it inherited. Prints one line:
//   dirtied_pages=N stack_pages=N inherited_pages=N churn_ns=N exit=N parent_dirtied_pages=N
// With --parent-churn MiB the parent churns too after the fork, and parent_dirtied_pages counts the
// pages the parent copied itself (the PERMAFROST_KEEP_INHERITED=1 promise).
// With --rss-after-free MiB the program instead allocates one block of that size, touches every
// page, frees it and prints the resident set before and after the free and after the allocator's
// own collection call (the first present of mi_collect(true), jemalloc's "arena.<all>.purge",
// glibc's malloc_trim(0)), found with dlsym so each build calls its own allocator's:
//   rss_before_kib=N rss_touched_kib=N rss_freed_kib=N rss_collected_kib=N collect=NAME
// With --idle-after-free MiB the program allocates that many MiB in blocks of 1 - 64 KiB (a sort's
// or a parser's working set), touches them, frees them all, makes no further malloc call for
// 300 ms (an idle server process) and prints the resident set before, touched and then:
//   rss_before_kib=N rss_touched_kib=N rss_idle_kib=N
// An allocator that gives memory back only on a later call (mimalloc's decommit delay) keeps it.
// With --reuse-block KiB the program allocates a block of that size, writes every byte and frees
// it, 500 times, and prints the page faults a cycle took (getrusage), rounded up:
//   faults_per_cycle=N
// An allocator that gives the block's pages back at each free faults every page in again.
// With --hold-total MiB the program allocates that many MiB in blocks of 1 KiB - 1 MiB and keeps
// them all live (a sort's working set), touching each; prints "held_mib=N" with N the MiB it got
// before malloc failed (test_malloc runs it under an address-space limit just above the total).
// With --fork-first 1 as well it first forks a child that exits at once (a pre-fork server's
// first worker), so the parent holds with its heap prepared for forks. With --hold-in-child 1
// instead, a forked child holds (a pre-fork server's worker) and the parent exits with its status.
// With --churn-total MiB the program only churns: it allocates that many MiB in 1 MiB blocks,
// 16 live at a time, and prints "churned_mib=N" with N the MiB it got before malloc failed
// (test_malloc runs it under an address-space limit far below the total).
// Used by test_heap (the glibc collapse), test_malloc and bench/heap_churn.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "churn.hpp"
#include "heap_probe.hpp"

namespace {

// Calls the allocator's "give memory back now" entry point; returns its name.
const char* collect_allocator() {
  if (void* f = ::dlsym(RTLD_DEFAULT, "mi_collect")) {
    reinterpret_cast<void (*)(bool)>(f)(true);
    return "mi_collect";
  }
  if (void* f = ::dlsym(RTLD_DEFAULT, "mallctl")) {
    // MALLCTL_ARENAS_ALL is 4096 in jemalloc 5.
    reinterpret_cast<int (*)(const char*, void*, std::size_t*, void*, std::size_t)>(f)(
        "arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return "mallctl_purge";
  }
  if (void* f = ::dlsym(RTLD_DEFAULT, "malloc_trim")) {
    reinterpret_cast<int (*)(std::size_t)>(f)(0);
    return "malloc_trim";
  }
  return "none";
}

int rss_after_free(std::size_t mib) {
  using permafrost::test::resident_bytes;
  const std::size_t before = resident_bytes();
  auto* block = static_cast<unsigned char*>(std::malloc(mib << 20));
  if (block == nullptr) return 2;
  std::memset(block, 1, mib << 20);
  asm volatile("" : : "r"(block) : "memory");  // the stores must happen: the compiler may drop them
  const std::size_t touched = resident_bytes();
  std::free(block);
  const std::size_t freed = resident_bytes();
  const char* how = collect_allocator();
  const std::size_t collected = resident_bytes();
  std::printf(
      "rss_before_kib=%zu rss_touched_kib=%zu rss_freed_kib=%zu rss_collected_kib=%zu collect=%s\n",
      before >> 10, touched >> 10, freed >> 10, collected >> 10, how);
  return 0;
}

int idle_after_free(std::size_t mib) {
  using permafrost::test::resident_bytes;
  const std::size_t before = resident_bytes();
  std::vector<unsigned char*> blocks;
  blocks.reserve((mib << 20) / 1024);
  std::size_t total = 0;
  for (std::size_t i = 0; total < (mib << 20); ++i) {
    const std::size_t size = std::size_t{1024} << (i % 7);  // 1, 2, 4 ... 64 KiB
    auto* p = static_cast<unsigned char*>(std::malloc(size));
    if (p == nullptr) return 2;
    std::memset(p, 1, size);
    blocks.push_back(p);
    total += size;
  }
  asm volatile("" : : "r"(blocks.data()) : "memory");
  const std::size_t touched = resident_bytes();
  for (unsigned char* p : blocks) std::free(p);
  std::vector<unsigned char*>().swap(blocks);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::size_t idle = resident_bytes();
  std::printf("rss_before_kib=%zu rss_touched_kib=%zu rss_idle_kib=%zu\n", before >> 10,
              touched >> 10, idle >> 10);
  return 0;
}

long minor_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

int reuse_block(std::size_t kib) {
  constexpr long cycles = 500;
  const std::size_t size = kib << 10;
  const long before = minor_faults();
  for (long i = 0; i < cycles; ++i) {
    auto* p = static_cast<unsigned char*>(std::malloc(size));
    if (p == nullptr) return 1;
    std::memset(p, static_cast<int>(i), size);
    asm volatile("" : : "r"(p) : "memory");
    std::free(p);
  }
  std::printf("faults_per_cycle=%ld\n", (minor_faults() - before + cycles - 1) / cycles);
  return 0;
}

int hold_total(std::size_t mib) {
  std::vector<void*> blocks;
  blocks.reserve((mib << 20) / 1024);
  std::size_t held = 0;
  for (std::size_t i = 0; held < (mib << 20); ++i) {
    const std::size_t size = std::size_t{1024} << (i % 11);  // 1 KiB ... 1 MiB
    auto* p = static_cast<unsigned char*>(std::malloc(size));
    if (p == nullptr) break;
    p[0] = 1;
    p[size - 1] = 1;
    blocks.push_back(p);
    held += size;
  }
  asm volatile("" : : "r"(blocks.data()) : "memory");
  for (void* p : blocks) std::free(p);
  std::printf("held_mib=%zu\n", held >> 20);
  return held >= (mib << 20) ? 0 : 1;
}

int churn_total(std::size_t mib) {
  constexpr std::size_t live = 16;
  void* blocks[live] = {};
  std::size_t done = 0;
  for (; done < mib; ++done) {
    std::free(blocks[done % live]);
    auto* p = static_cast<unsigned char*>(std::malloc(std::size_t{1} << 20));
    blocks[done % live] = p;
    if (p == nullptr) break;
    p[done % 4096] = 1;
    asm volatile("" : : "r"(p) : "memory");
  }
  for (void* p : blocks) std::free(p);
  std::printf("churned_mib=%zu\n", done);
  return done == mib ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace permafrost::test;
  if (const std::size_t mib = numeric_option(argc, argv, "--rss-after-free", 0); mib != 0) {
    return rss_after_free(mib);
  }
  if (const std::size_t mib = numeric_option(argc, argv, "--idle-after-free", 0); mib != 0)
    return idle_after_free(mib);
  if (const std::size_t kib = numeric_option(argc, argv, "--reuse-block", 0); kib != 0)
    return reuse_block(kib);
  if (const std::size_t mib = numeric_option(argc, argv, "--hold-total", 0); mib != 0) {
    if (numeric_option(argc, argv, "--fork-first", 0) != 0) {
      const pid_t pid = ::fork();
      if (pid == 0) ::_exit(0);
      if (pid < 0 || ::waitpid(pid, nullptr, 0) != pid) return 2;
    }
    if (numeric_option(argc, argv, "--hold-in-child", 0) != 0) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        const int rc = hold_total(mib);
        std::fflush(stdout);
        ::_exit(rc);
      }
      int status = 0;
      if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return 2;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
    }
    return hold_total(mib);
  }
  if (const std::size_t mib = numeric_option(argc, argv, "--churn-total", 0); mib != 0)
    return churn_total(mib);
  const std::size_t heap_mib = permafrost::test::numeric_option(argc, argv, "--heap", 64);
  const std::size_t churn_mib = permafrost::test::numeric_option(argc, argv, "--churn", 50);
  const std::size_t threads = permafrost::test::numeric_option(argc, argv, "--threads", 0);
  const std::size_t parent_churn_mib =
      permafrost::test::numeric_option(argc, argv, "--parent-churn", 0);
  auto alloc = [](std::size_t n) { return std::malloc(n); };
  auto release = [](void* p) { std::free(p); };

  std::vector<unsigned char*> blocks;
  std::vector<std::size_t> sizes;
  blocks.reserve(heap_mib << 11);
  sizes.reserve(heap_mib << 11);
  build_parent_heap(heap_mib << 20, blocks, sizes, alloc, release);
  // A printf after the frees, as any real program would do (it mallocs its buffer on glibc).
  std::printf("parent heap built: %zu blocks\n", blocks.size());
  std::fflush(stdout);

  // The child reports its churn time through a pipe (its stdout is the parent's).
  int times[2];
  if (::pipe(times) != 0) return 2;
  const auto result = fork_and_measure(
      [&]() -> int {
        const auto start = std::chrono::steady_clock::now();
        std::uint64_t sum = 0;
        if (threads == 0) {
          sum = churn(churn_mib << 20, 7, alloc, release);
        } else {
          std::vector<std::thread> workers;
          std::vector<std::uint64_t> sums(threads);
          for (std::size_t t = 0; t < threads; ++t) {
            workers.emplace_back(
                [&, t] { sums[t] = churn((churn_mib << 20) / threads, 7 + t, alloc, release); });
          }
          for (auto& w : workers) w.join();
          for (auto s : sums) sum += s;
        }
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
        long long v = static_cast<long long>(ns);
        if (::write(times[1], &v, sizeof v) != sizeof v) return 4;
        if (sum == 0) return 5;
        return parent_heap_intact(blocks, sizes) ? 0 : 6;
      },
      [&] {
    if (parent_churn_mib != 0 && churn(parent_churn_mib << 20, 13, alloc, release) == 0)
      std::abort();
      });
  long long churn_ns = -1;
  if (::read(times[0], &churn_ns, sizeof churn_ns) != sizeof churn_ns) churn_ns = -1;
  std::printf("dirtied_pages=%zu stack_pages=%zu inherited_pages=%zu churn_ns=%lld exit=%d "
              "parent_dirtied_pages=%zu\n",
              result.dirtied.pages, result.dirtied.stack_pages, result.dirtied.inherited, churn_ns,
              result.exit_status, result.parent_dirtied.pages);
  if (std::getenv("HEAP_PROBE_VERBOSE") != nullptr)
    std::fputs(result.dirtied.summary().c_str(), stdout);
  return result.exit_status == 0 ? 0 : 1;
}
