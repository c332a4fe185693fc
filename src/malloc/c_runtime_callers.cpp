// permafrost — which code is the C runtime's (contract in c_runtime_callers.hpp).
//
// The map is a sorted table of every loaded object's executable segments, each marked C runtime or
// not, published under a sequence lock: readers (malloc inside a scope) never block and never
// allocate; the one writer (under a mutex) bumps the sequence to odd, rewrites, bumps it to even.
// A thread remembers the segment its last lookup hit, so a scope's stream of allocations from
// one place (the program's code, libstdc++) costs two compares each.
#include "malloc/c_runtime_callers.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>

#include "os/os.hpp"

namespace permafrost::detail {
namespace {

constexpr std::size_t max_segments = 512;

struct published_segment {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};
  std::atomic<bool> c_runtime{false};
};

constinit std::atomic<std::uint64_t> g_sequence{0};  // odd while the table is being rewritten
constinit std::atomic<std::size_t> g_count{0};
constinit published_segment g_segments[max_segments];
constinit std::atomic<std::uint64_t> g_loaded_generation{~std::uint64_t{0}};

std::mutex& refresh_mutex() noexcept {
  static constinit std::mutex mu;
  return mu;
}

// The segment the calling thread's last lookup found.
struct last_hit {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool c_runtime = false;
};
constinit thread_local last_hit t_last __attribute__((tls_model("initial-exec")));

enum class found { program, c_runtime, unknown };

// One consistent lookup in the published table (retried while a writer is active).
found look_up(std::uintptr_t address) noexcept {
  // Bounded: a writer that never finishes (the process forked while another thread refreshed)
  // must not make malloc spin for ever in the child.
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const std::uint64_t before = g_sequence.load(std::memory_order_acquire);
    if ((before & 1) != 0) continue;
    std::size_t lo = 0;
    std::size_t hi = std::min(g_count.load(std::memory_order_relaxed), max_segments);
    last_hit hit;
    bool inside = false;
    while (lo < hi) {  // the last segment whose begin <= address
      const std::size_t mid = lo + (hi - lo) / 2;
      if (g_segments[mid].begin.load(std::memory_order_relaxed) <= address) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo > 0) {
      const published_segment& s = g_segments[lo - 1];
      hit = {s.begin.load(std::memory_order_relaxed), s.end.load(std::memory_order_relaxed),
             s.c_runtime.load(std::memory_order_relaxed)};
      inside = address < hit.end;
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (g_sequence.load(std::memory_order_relaxed) != before) continue;
    if (!inside) return found::unknown;
    t_last = hit;
    return hit.c_runtime ? found::c_runtime : found::program;
  }
  return found::unknown;
}

void refresh(bool always) noexcept {
  // Never waits: a thread that finds another refreshing looks up the table as it is, and a child
  // forked while the lock was held simply keeps the inherited table.
  std::unique_lock lock(refresh_mutex(), std::try_to_lock);
  if (!lock.owns_lock()) return;
  // Odd with the lock free: a writer in the parent was cut off by fork. Even it up first.
  if ((g_sequence.load(std::memory_order_relaxed) & 1) != 0)
    g_sequence.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t generation = 0;
  if (os::loaded_code_generation(&generation) == 0 && !always &&
      generation == g_loaded_generation.load(std::memory_order_relaxed))
    return;
  os::code_segment found_segments[max_segments];
  std::size_t n = 0;
  if (os::list_code_segments(found_segments, max_segments, &n, &generation) != 0) return;
  std::sort(found_segments, found_segments + n,
            [](const os::code_segment& a, const os::code_segment& b) { return a.begin < b.begin; });
  g_sequence.fetch_add(1, std::memory_order_acq_rel);  // odd: readers retry
  std::atomic_thread_fence(std::memory_order_release);
  for (std::size_t i = 0; i < n; ++i) {
    g_segments[i].begin.store(found_segments[i].begin, std::memory_order_relaxed);
    g_segments[i].end.store(found_segments[i].end, std::memory_order_relaxed);
    g_segments[i].c_runtime.store(found_segments[i].c_runtime, std::memory_order_relaxed);
  }
  g_count.store(n, std::memory_order_relaxed);
  g_sequence.fetch_add(1, std::memory_order_release);  // even: published
  g_loaded_generation.store(generation, std::memory_order_relaxed);
}

}  // namespace

bool is_c_runtime_code(std::uintptr_t address) noexcept {
  const last_hit& last = t_last;
  if (address - last.begin < last.end - last.begin) return last.c_runtime;
  found f = look_up(address);
  if (f == found::unknown) {
    refresh(false);  // a library loaded since: read the objects again, once per change
    f = look_up(address);
  }
  return f == found::c_runtime;
}

void refresh_code_map() noexcept { refresh(false); }

}  // namespace permafrost::detail
