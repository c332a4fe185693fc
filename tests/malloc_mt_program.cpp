// An ordinary multi-threaded C++ program (it links nothing of permafrost), run under
// LD_PRELOAD=libpermafrost-malloc.so by ctest: four threads (`--threads N`) build and tear down
// maps, strings and vectors, then fork a child that does the same (not with `--no-fork`); prints
// "ok" when every result is as computed. With `--after-exhaustion` it instead fills the address
// space its limit allows, then starts one thread (a small stack) whose first malloc finds no room,
// and prints "ok" with what that malloc returned: such a program must not be aborted. With
// `--thread-forks-without-heap` it forks once, leaves 100 MiB of its limit free, starts a thread
// (which gets no heap of its own there) that forks; in the child that thread allocates and returns,
// and the exit handlers allocate: prints "ok" when the child exits 0. With `--thread-cycle` three
// threads, one after another, build 200 MiB in 1000-byte blocks, free half and exit, the main
// thread freeing the other half after each: prints "ok peak_mib=A,B,C", the peak resident set
// (VmHWM, reset before each thread) of each round.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <pthread.h>
#include <string>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {
long work(int seed) {
  long sum = 0;
  for (int round = 0; round < 20; ++round) {
    std::map<std::string, std::vector<long>> m;
    for (int i = 0; i < 2000; ++i) {
      m["key-" + std::to_string(seed) + "-" + std::to_string(i) + std::string(i % 40, 'x')].assign(
          static_cast<std::size_t>(i % 17 + 1), i);
    }
    for (const auto& [k, v] : m) sum += static_cast<long>(k.size()) + v.back();
  }
  return sum;
}

int thread_count = 4;

void* first_malloc(void* out) {
  void* p = std::malloc(64);
  *static_cast<bool*>(out) = p != nullptr;
  std::free(p);
  return nullptr;
}

// Holds 1 MiB blocks until malloc refuses one, then starts a thread with a 64 KiB stack (which
// fits where no 32 MiB allocator segment does) and reports whether its first malloc succeeded.
void allocate_at_exit() {
  for (std::size_t n : {3000, 9000, 70000, 300000}) {
    void* p = std::malloc(n);
    if (p != nullptr) std::memset(p, 1, n);
    std::free(p);
  }
}

void* fork_from_thread(void* status) {
  std::free(std::malloc(64));
  const pid_t pid = fork();
  if (pid == 0) {
    std::free(std::malloc(100));
    std::atexit(allocate_at_exit);
    return nullptr;  // the child's only thread returns: exit(0), then the handler
  }
  waitpid(pid, static_cast<int*>(status), 0);
  return nullptr;
}

long vm_size_bytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
  std::fclose(f);
  return kib < 0 ? -1 : kib * 1024;
}

// A thread that started with no heap of its own (no room left for one) forks; in the child it
// runs, exits, and exit handlers allocate after it. Needs an address-space limit.
int thread_forks_without_heap() {
  const pid_t first = fork();  // the parent reserves the spare arena at its first fork
  if (first == 0) _exit(0);
  waitpid(first, nullptr, 0);
  rlimit limit{};
  const long used = vm_size_bytes();
  if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY || used < 0) {
    std::puts("needs an address-space limit (ulimit -v)");
    return 7;
  }
  const std::size_t leave = std::size_t{100} << 20;
  if (limit.rlim_cur > used + leave &&
      mmap(nullptr, limit.rlim_cur - used - leave, PROT_NONE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED) {
    std::puts("mmap failed");
    return 8;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, std::size_t{256} << 10);
  int status = -1;
  pthread_t thread;
  if (pthread_create(&thread, &attr, &fork_from_thread, &status) != 0) return 6;
  pthread_attr_destroy(&attr);
  pthread_join(thread, nullptr);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::printf("child status %d\n", status);
    return 9;
  }
  std::puts("ok");
  return 0;
}

int thread_after_exhaustion() {
  std::vector<void*> held;
  held.reserve(1 << 16);
  while (held.size() < held.capacity()) {
    void* p = std::malloc(std::size_t{1} << 20);
    if (p == nullptr) break;
    held.push_back(p);
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, std::size_t{64} << 10);
  bool got = false;
  pthread_t thread;
  const int err = pthread_create(&thread, &attr, &first_malloc, &got);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    std::printf("pthread_create: %s\n", std::strerror(err));
    return 6;
  }
  pthread_join(thread, nullptr);
  for (void* p : held) std::free(p);
  std::printf("ok held_mib=%zu thread_malloc=%s\n", held.size(), got ? "block" : "null");
  return 0;
}

// The process's peak resident set since the last reset_peak_resident(), in MiB (VmHWM).
long peak_resident_mib() {
  long kib = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr)
      if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::atol(line + 6);
    std::fclose(f);
  }
  return kib >> 10;
}

bool reset_peak_resident() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

int thread_cycle() {
  constexpr std::size_t block = 1000;
  std::vector<void*> blocks((std::size_t{200} << 20) / block);
  long peak[3] = {};
  for (long& p : peak) {
    if (!reset_peak_resident()) return 8;
    bool failed = false;
    std::thread([&] {
      for (void*& b : blocks) {
        b = std::malloc(block);
        if (b == nullptr) {
          failed = true;
          return;
        }
        std::memset(b, 1, block);
      }
      for (std::size_t i = 0; i < blocks.size(); i += 2) std::free(blocks[i]);
    }).join();
    if (failed) return 7;
    for (std::size_t i = 1; i < blocks.size(); i += 2) std::free(blocks[i]);
    p = peak_resident_mib();
  }
  std::printf("ok peak_mib=%ld,%ld,%ld\n", peak[0], peak[1], peak[2]);
  return 0;
}

bool all_threads(long* out) {
  std::vector<long> expected(static_cast<std::size_t>(thread_count));
  for (int t = 0; t < thread_count; ++t) expected[t] = work(t);  // the same work on one thread
  std::vector<long> got(static_cast<std::size_t>(thread_count));
  std::vector<std::thread> threads;
  for (int t = 0; t < thread_count; ++t) threads.emplace_back([&, t] { got[t] = work(t); });
  for (auto& th : threads) th.join();
  *out = 0;
  for (int t = 0; t < thread_count; ++t) {
    if (got[t] != expected[t]) return false;
    *out += got[t];
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  bool fork_too = true;
  bool after_exhaustion = false;
  bool without_heap = false;
  bool cycle = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--after-exhaustion") == 0) {
      after_exhaustion = true;
    } else if (std::strcmp(argv[i], "--thread-forks-without-heap") == 0) {
      without_heap = true;
    } else if (std::strcmp(argv[i], "--thread-cycle") == 0) {
      cycle = true;
    } else if (std::strcmp(argv[i], "--no-fork") == 0) {
      fork_too = false;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      thread_count = std::atoi(argv[++i]);
    } else {
      std::puts("usage: malloc_mt_program [--threads N] [--no-fork] [--after-exhaustion] "
                "[--thread-forks-without-heap] [--thread-cycle]");
      return 2;
    }
  }
  if (dlsym(RTLD_DEFAULT, "permafrost_malloc_library") == nullptr) {
    std::puts("libpermafrost-malloc.so is not loaded");
    return 2;
  }
  if (after_exhaustion) return thread_after_exhaustion();
  if (without_heap) return thread_forks_without_heap();
  if (cycle) return thread_cycle();
  long sum = 0;
  if (!all_threads(&sum)) return 3;
  if (!fork_too) {
    std::printf("ok %ld\n", sum);
    return 0;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    long child_sum = 0;
    _exit(all_threads(&child_sum) && child_sum == sum ? 0 : 4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 5;
  std::printf("ok %ld\n", sum);
  return 0;
}
