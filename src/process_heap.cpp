// permafrost — the per-process heap: generations, thread heaps, the fork handlers.
//
// Each generation owns one exclusive mimalloc arena over a mapping this library reserved (so its
// range is known and "is this block mine" is two compares). The next generation's arena - the
// spare - is reserved by the parent before it forks and never touched by it: the child inherits
// an untouched mapping and starts allocating there. The forking thread's heap in the spare is
// also made in the parent (mi_heap_new_in_arena takes its mi_heap_t from the calling thread's
// backing heap; made in the child, that allocation dirtied 7-8 inherited pages). Other threads
// make their heap on their first allocation in the new generation. See docs/design.md section 2.
#include "process_heap.hpp"

#include <atomic>
#include <cerrno>
#include <mutex>
#include <pthread.h>
#include <system_error>
#include <unistd.h>

#include <mimalloc.h>

#include "arena_slot.hpp"
#include "os.hpp"
#include "permafrost/fork.hpp"
#include "permafrost/heap.hpp"

namespace permafrost::detail {

bool g_malloc_library_active = false;

namespace {

// Virtual bytes per generation. Reserving costs address space only (MAP_NORESERVE); mimalloc
// wants its arenas aligned to its 32 MiB segments, 64 MiB leaves room.
constexpr std::size_t arena_bytes = std::size_t{64} << 30;
constexpr std::size_t arena_align = std::size_t{64} << 20;

struct region {
  std::uintptr_t base = 0;
  std::size_t size = 0;  // 0: none
  mi_arena_id_t id = 0;
};

// The current generation's range is read lock-free by free(); the rest is guarded by heap_mutex.
constinit std::atomic<std::uintptr_t> g_current_base{0};
constinit std::atomic<std::size_t> g_current_size{0};
constinit mi_arena_id_t g_current_id = 0;
constinit region g_spare{};
// Every earlier generation's range this process inherited (its ancestors' arenas, and its own
// from before a freeze-at-fork renewal): blocks there are abandoned, never freed. Append-only;
// readers load the count, then the entries below it.
constexpr std::size_t max_generations = 64;
constinit std::atomic<std::uintptr_t> g_past_base[max_generations] = {};
constinit std::atomic<std::size_t> g_past_size[max_generations] = {};
constinit std::atomic<std::size_t> g_past_count{0};
constinit std::atomic<std::uint64_t> g_generation{0};
constinit std::atomic<std::size_t> g_abandoned{0};
constinit std::atomic<std::uint64_t> g_threads{0};
constinit std::atomic<int> g_last_error{0};
constinit std::atomic<bool> g_initialized{false};
constinit bool g_freeze_at_fork = false;
constinit bool g_parent_renewed = false;

std::mutex& heap_mutex() noexcept {
  static constinit std::mutex mu;
  return mu;
}

struct thread_state {
  std::uint64_t generation = ~std::uint64_t{0};  // of `heap`; never a real generation at first
  mi_heap_t* heap = nullptr;
  mi_heap_t* spare_heap = nullptr;  // this thread's heap in g_spare, made before a fork
  mi_arena_id_t spare_id = 0;
  bool busy = false;     // making a heap: a re-entrant malloc falls back to mimalloc's default
  bool exiting = false;  // thread-exit hook ran: mimalloc is about to delete `heap`
};
constinit thread_local thread_state t_state __attribute__((tls_model("initial-exec")));

// mimalloc deletes a thread's heaps when the thread ends (its pthread key destructor). C++
// thread_local destructors run before pthread key destructors, so this guard tells the malloc
// path to stop using `heap` before it dangles.
struct thread_exit_guard {
  thread_exit_guard() noexcept = default;
  ~thread_exit_guard() {
    t_state.exiting = true;
    t_state.heap = nullptr;
  }
};
thread_local thread_exit_guard t_exit_guard;

int reserve_region(region* out) noexcept {
  void* p = nullptr;
  int err = os::reserve(arena_bytes, arena_align, &p);
  if (err != 0) return err;
  // Registered as not committed: mimalloc then commits (mprotect) what it hands out and
  // decommits what it frees, as with its own OS memory. A committed arena counts as pinned, and
  // mimalloc never gives its pages back (a freed 1 GiB block stayed resident).
  if (!mi_manage_os_memory_ex(p, arena_bytes, /*is_committed=*/false, /*is_large=*/false,
                              /*is_zero=*/true, /*numa_node=*/-1, /*exclusive=*/true, &out->id)) {
    err = ENOMEM;
  }
  if (err != 0) {
    (void)os::release(p, arena_bytes);
    return err;
  }
  (void)os::name_range(p, arena_bytes, "permafrost-heap");
  out->base = reinterpret_cast<std::uintptr_t>(p);
  out->size = arena_bytes;
  return 0;
}

// Pre: heap_mutex held. Makes sure the spare arena and the calling thread's heap in it exist.
int ensure_spare_locked() noexcept {
  if (g_spare.size == 0) {
    const int err = reserve_region(&g_spare);
    if (err != 0) return err;
  }
  thread_state& t = t_state;
  if (t.spare_heap == nullptr || t.spare_id != g_spare.id) {
    t.busy = true;
    t.spare_heap = mi_heap_new_in_arena(g_spare.id);
    t.busy = false;
    t.spare_id = g_spare.id;
    if (t.spare_heap == nullptr) return ENOMEM;
  }
  return 0;
}

// Pre: heap_mutex held; ensure_spare_locked() succeeded on this thread. Starts a generation.
// Pre: heap_mutex held. Remembers the current range as a past generation's.
void retire_current() noexcept {
  const std::size_t n = g_past_count.load(std::memory_order_relaxed);
  const std::size_t size = g_current_size.load(std::memory_order_relaxed);
  if (size == 0 || n == max_generations) return;  // beyond 64: mimalloc's arena table is full anyway
  g_past_base[n].store(g_current_base.load(std::memory_order_relaxed), std::memory_order_relaxed);
  g_past_size[n].store(size, std::memory_order_relaxed);
  g_past_count.store(n + 1, std::memory_order_release);
}

// Pre: heap_mutex held. Makes `r` the current range (the size goes to 0 first, so a concurrent
// free never pairs the new base with the old size).
void set_current(const region& r) noexcept {
  g_current_id = r.id;
  g_current_size.store(0, std::memory_order_relaxed);
  g_current_base.store(r.base, std::memory_order_relaxed);
  g_current_size.store(r.size, std::memory_order_release);
}

void switch_to_spare() noexcept {
  thread_state& t = t_state;
  retire_current();
  set_current(g_spare);
  g_spare = {};
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed) + 1;
  t.heap = t.spare_heap;
  t.generation = generation;
  t.spare_heap = nullptr;
  t.spare_id = 0;
  mi_heap_set_default(t.heap);
  g_abandoned.store(0, std::memory_order_relaxed);
  g_threads.store(1, std::memory_order_relaxed);
  g_generation.store(generation, std::memory_order_release);
}

void on_prepare() noexcept {
  registry_mutex().lock();
  heap_mutex().lock();
  const int err = ensure_spare_locked();
  if (err != 0) g_last_error.store(err, std::memory_order_relaxed);
}

void on_parent() noexcept {
  if (g_freeze_at_fork && !g_parent_renewed && t_state.spare_heap != nullptr &&
      t_state.spare_id == g_spare.id && g_spare.size != 0) {
    g_parent_renewed = true;
    switch_to_spare();
  }
  heap_mutex().unlock();
  registry_mutex().unlock();
}

void on_child() noexcept {
  thread_state& t = t_state;
  if (g_spare.size != 0 && t.spare_heap != nullptr && t.spare_id == g_spare.id) {
    switch_to_spare();
  } else {
    // The parent could not prepare: reserve here. The heap struct then comes from the inherited
    // backing heap (a few inherited pages written) when the thread next allocates.
    region r;
    const int err = reserve_region(&r);
    if (err == 0) {
      retire_current();
      set_current(r);
      g_spare = {};
      g_abandoned.store(0, std::memory_order_relaxed);
      g_threads.store(0, std::memory_order_relaxed);
      g_generation.fetch_add(1, std::memory_order_release);
    } else {
      g_last_error.store(err, std::memory_order_relaxed);
    }
  }
  heap_mutex().unlock();
  registry_mutex().unlock();
}

mi_heap_t* renew_thread_heap() noexcept;

// mimalloc calls this on its allocation slow path in every thread: a thread that started (or
// last allocated) in an earlier generation moves to this generation's heap, so plain malloc of a
// program that merely links permafrost lands in the arena too.
void on_mimalloc_slow_path(bool, unsigned long long, void*) noexcept {
  const thread_state& t = t_state;
  if (t.generation != g_generation.load(std::memory_order_relaxed) && !t.busy && !t.exiting) {
    (void)renew_thread_heap();
  }
}

mi_heap_t* renew_thread_heap() noexcept {
  thread_state& t = t_state;
  if (t.busy || t.exiting) return nullptr;
  t.busy = true;
  init_process_heap();
  (void)&t_exit_guard;  // registers the thread-exit hook on first use
  mi_heap_t* heap = nullptr;
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(heap_mutex());
    generation = g_generation.load(std::memory_order_relaxed);
    if (g_current_size.load(std::memory_order_relaxed) != 0) {
      heap = mi_heap_new_in_arena(g_current_id);
      if (heap == nullptr) g_last_error.store(ENOMEM, std::memory_order_relaxed);
    }
  }
  if (heap != nullptr) {
    mi_heap_set_default(heap);
    g_threads.fetch_add(1, std::memory_order_relaxed);
  }
  t.heap = heap;
  t.generation = generation;
  t.busy = false;
  return heap;
}

}  // namespace

void init_process_heap() noexcept {
  if (g_initialized.load(std::memory_order_acquire)) return;
  std::lock_guard lock(heap_mutex());
  if (g_initialized.load(std::memory_order_relaxed)) return;
  const bool was_busy = t_state.busy;
  t_state.busy = true;
  region r;
  const int err = reserve_region(&r);
  if (err == 0) {
    set_current(r);
  } else {
    g_last_error.store(err, std::memory_order_relaxed);
  }
  (void)::pthread_atfork(&on_prepare, &on_parent, &on_child);
  mi_register_deferred_free(&on_mimalloc_slow_path, nullptr);
  t_state.busy = was_busy;
  g_initialized.store(true, std::memory_order_release);
}

mi_heap_s* thread_heap() noexcept {
  const thread_state& t = t_state;
  if (t.generation == g_generation.load(std::memory_order_acquire)) [[likely]]
    return t.heap;
  return renew_thread_heap();
}

block_owner owner_of(const void* p) noexcept {
  if (slot_of(p) != nullptr) return block_owner::arena;
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  if (a - g_current_base.load(std::memory_order_relaxed) <
      g_current_size.load(std::memory_order_acquire)) {
    return block_owner::current;
  }
  const std::size_t n = g_past_count.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    if (a - g_past_base[i].load(std::memory_order_relaxed) < g_past_size[i].load(std::memory_order_relaxed)) {
      return block_owner::ancestor;
    }
  }
  // Outside every arena: mimalloc's own segments (a re-entrant malloc while a thread made its
  // heap fell back to mimalloc's default heap). Those are left in place too.
  if (mi_is_in_heap_region(p)) return block_owner::ancestor;
  return block_owner::none;
}

void note_abandoned(std::size_t bytes) noexcept {
  g_abandoned.fetch_add(bytes, std::memory_order_relaxed);
}

void set_freeze_at_fork(bool on) noexcept {
  std::lock_guard lock(heap_mutex());
  g_freeze_at_fork = on;
}

int prepare_fork() noexcept {
  init_process_heap();
  std::lock_guard lock(heap_mutex());
  return ensure_spare_locked();
}

void* heap_allocate(std::size_t bytes, std::size_t align) noexcept {
  mi_heap_t* heap = thread_heap();
  // mimalloc serves requests of <= 8 bytes from 8-byte blocks; malloc promises
  // alignof(max_align_t) (16) like glibc, so they are asked as 16.
  if (bytes < alignof(std::max_align_t)) bytes = alignof(std::max_align_t);
  if (align <= alignof(std::max_align_t)) {
    // mimalloc serves 1..8 bytes from its 8-byte class, whose blocks are only 8-aligned; a block
    // of at least `align` bytes comes from a class whose blocks are aligned to it (fuzz_malloc:
    // posix_memalign(16, 0) returned an 8-aligned pointer).
    if (bytes < align) bytes = align;
    return heap != nullptr ? mi_heap_malloc(heap, bytes) : mi_malloc(bytes);
  }
  // mimalloc 2.0.9 returns misaligned small blocks for some size/alignment pairs (its fast path
  // compares against the small-size limit in bytes, not words: microsoft/mimalloc#700, fixed
  // later). Requests above that limit take the correct general path.
  constexpr std::size_t small_size_max = 1024;
  if (bytes <= small_size_max) bytes = small_size_max + 1;
  return heap != nullptr ? mi_heap_malloc_aligned(heap, bytes, align) : mi_malloc_aligned(bytes, align);
}

void heap_free(void* p) noexcept {
  if (p == nullptr) return;
  switch (owner_of(p)) {
    case block_owner::current:
      mi_free(p);
      return;
    case block_owner::ancestor:
      note_abandoned(mi_usable_size(p));
      return;
    case block_owner::arena:
      return;
    case block_owner::none:
      break;
  }
  check_failed("free(): invalid pointer (not allocated by this heap)", __FILE__, __LINE__);
}

}  // namespace permafrost::detail

// Linking permafrost pulls this object in (the target passes -u permafrost_process_heap_anchor),
// so the first generation and the fork handlers exist before main() in every program.
extern "C" {
extern int permafrost_process_heap_anchor;
int permafrost_process_heap_anchor = 0;
}

namespace {
__attribute__((constructor)) void permafrost_process_heap_at_load() {
  (void)permafrost::detail::thread_heap();
}
}  // namespace

namespace permafrost {

namespace {
class process_heap_resource final : public std::pmr::memory_resource {
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = detail::heap_allocate(bytes, align);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t, std::size_t) noexcept override { detail::heap_free(p); }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
};
constinit process_heap_resource g_resource;
}  // namespace

std::pmr::memory_resource* process_heap() noexcept { return &g_resource; }

heap_stats process_heap_stats() {
  detail::init_process_heap();
  heap_stats s;
  const std::uintptr_t base = detail::g_current_base.load(std::memory_order_relaxed);
  s.reserved = detail::g_current_size.load(std::memory_order_acquire);
  std::uint64_t rss = 0;
  if (s.reserved != 0 && os::smaps_field_in_range(0, base, base + s.reserved, "Rss", &rss) == 0) {
    s.used = static_cast<std::size_t>(rss);
  }
  s.generation = detail::g_generation.load(std::memory_order_acquire);
  s.abandoned = detail::g_abandoned.load(std::memory_order_relaxed);
  s.threads = detail::g_threads.load(std::memory_order_relaxed);
  s.last_error = detail::g_last_error.load(std::memory_order_relaxed);
  return s;
}

pid_t fork() {
  const int err = detail::prepare_fork();
  if (err != 0) throw std::system_error(err, std::generic_category(), "permafrost::fork: reserving the child's heap");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "permafrost::fork");
  return pid;
}

}  // namespace permafrost
