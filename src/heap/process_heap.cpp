// permafrost — the per-process heap: generations, thread heaps, the fork handlers.
//
// Each generation owns one exclusive mimalloc arena over a mapping this library reserved (so its
// range is known and "is this block mine" is two compares). The next generation's arena - the
// spare - is reserved by the parent before it forks and never touched by it: the child inherits
// an untouched mapping and starts allocating there. The forking thread's heap in the spare is
// also made in the parent (mi_heap_new_in_arena takes its mi_heap_t from the calling thread's
// backing heap; made in the child, that allocation dirtied 7-8 inherited pages). Other threads
// make their heap on their first allocation in the new generation. See docs/design.md section 2.
#include "heap/process_heap.hpp"

#include <atomic>
#include <cerrno>
#include <mutex>
#include <pthread.h>
#include <system_error>
#include <unistd.h>
#include <vector>

#include <mimalloc.h>

#include "arena/arena_slot.hpp"
#include "fork/fork_lifecycle.hpp"
#include "os/os.hpp"
#include "permafrost/fork.hpp"
#include "permafrost/heap.hpp"

namespace permafrost::detail {

namespace {

// Address space per arena. A generation starts with one arena; a thread whose arena is exhausted
// adds one twice the size of the newest (or as large as the request): the reservation grows with
// use. Under an address-space limit (RLIMIT_AS) a reservation is cut to what the limit leaves
// (reserve_arena); one the system still refuses is halved until it fits. Reserving costs address
// space only (PROT_NONE, MAP_NORESERVE); mimalloc wants its arenas aligned to its 32 MiB
// segments, 64 MiB leaves room.
constexpr std::size_t arena_align = std::size_t{64} << 20;
constexpr std::size_t min_arena_bytes = arena_align;
constexpr std::size_t max_grow_bytes = std::size_t{64} << 30;
// Under an address-space limit, what a generation's first arena leaves beyond the least kept for
// other mappings (arena_bytes_that_fit): see reserve_arena.
constexpr std::size_t first_arena_headroom = std::size_t{64} << 20;

}  // namespace
}  // namespace permafrost::detail

// Defined by the malloc library (malloc.cpp); absent (null) in a program linking the heap alone.
extern "C" const int permafrost_malloc_library __attribute__((weak));

namespace permafrost::detail {
namespace {

// Growth happens on the paths this library owns (process_heap(), the malloc library). Where
// plain malloc is mimalloc's own (the heap without the malloc library), a request the thread's
// arena cannot serve just fails in mimalloc, so a generation starts as large as it may: 64 GiB,
// halved to fit. With the malloc library every allocation can grow, so a generation starts with
// the least arena and doubles as it is used: a program may lower its address-space limit after
// its first allocation (uWSGI's --limit-as does, before it loads the application), and a 1 GiB
// first arena left every later mapping refused under a limit of 1 GiB.
std::size_t first_arena_bytes() noexcept {
  return &permafrost_malloc_library != nullptr ? min_arena_bytes : std::size_t{64} << 30;
}

// Every arena this process reserved or inherited, with the generation it serves: blocks of an
// arena of another generation (an ancestor's, or this process's before a keep-inherited renewal,
// or the spare a child will use) are never freed here. Append-only, like mimalloc's own arena
// table (64 entries, never released). free() reads it lock-free: the count, then the entries
// below it; the rest is guarded by heap_mutex.
constexpr std::size_t max_arenas = 64;
constexpr std::size_t no_arena = max_arenas;
struct arena_range {
  std::atomic<std::uintptr_t> base{0};
  std::atomic<std::size_t> size{0};
  std::atomic<std::uint64_t> generation{0};
  mi_arena_id_t id = 0;
};
constinit arena_range g_arenas[max_arenas];
constinit std::atomic<std::size_t> g_arena_count{0};
constinit std::size_t g_newest = no_arena;  // the current generation's newest arena
constinit std::size_t g_spare = no_arena;   // the next generation's first arena, made before a fork
constinit std::atomic<std::uint64_t> g_generation{0};
// Set when a thread of this generation exits with a heap in an arena other than the newest: the
// next thread to make its heap collects (see renew_thread_heap).
constinit std::atomic<bool> g_collect_for_new_thread{false};
constinit std::atomic<std::size_t> g_abandoned{0};
constinit std::atomic<std::uint64_t> g_threads{0};
constinit std::atomic<int> g_last_error{0};
constinit std::atomic<bool> g_initialized{false};
constinit bool g_keep_inherited = false;
constinit bool g_parent_renewed = false;

// The segments of mimalloc's own heap (outside every arena) that served an allocation of this
// generation when no arena could (see allocate_outside_arenas). A block outside every arena is
// this process's own in generation 0; after a renewal it is an ancestor's - and never freed -
// unless its segment is listed here with the current generation. An entry of another generation
// means what no entry means, so a full table reuses one. Lock-free (list_outside_block). In a
// child, a listed segment may be one it inherited (the forking thread's own mimalloc segment):
// free() then frees an ancestor's block there too, writing its page, as plain mimalloc would.
constexpr std::size_t mimalloc_segment_bytes = std::size_t{32} << 20;  // mimalloc 2.0.9, aligned
constexpr std::size_t max_outside_segments = 64;
struct outside_segment {
  std::atomic<std::uintptr_t> base{0};
  std::atomic<std::uint64_t> generation{0};
};
constinit outside_segment g_outside[max_outside_segments];

// The parts of ancestors' arenas this process or an ancestor gave back (release_unreachable),
// each with the arena it was part of. The kernel may place any later mapping there - another
// arena, a thread stack, a mimalloc segment - so such a part is no longer that arena's: a
// grandchild took a range of its parent's arena, placed in a part its grandparent's arena had
// given back, for the grandparent's, and unmapped it under the parent's live heap (uWSGI's
// workers died of SIGSEGV). Append-only and inherited like g_arenas; a part that
// does not fit here is not given back. Written under heap_mutex, read lock-free.
constexpr std::size_t max_released = 256;
struct released_range {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};
  std::atomic<std::size_t> arena{0};
};
constinit released_range g_released[max_released];
constinit std::atomic<std::size_t> g_released_count{0};

// Whether arena `i` gave back the address `a` (so `a`, if mapped, is someone else's).
bool released_from(std::size_t i, std::uintptr_t a) noexcept {
  for (std::size_t k = g_released_count.load(std::memory_order_acquire); k-- > 0;) {
    const released_range& r = g_released[k];
    if (r.arena.load(std::memory_order_relaxed) == i &&
        a - r.begin.load(std::memory_order_relaxed) <
            r.end.load(std::memory_order_relaxed) - r.begin.load(std::memory_order_relaxed))
      return true;
  }
  return false;
}

// The arena (index into g_arenas) whose range holds `a`; no_arena when none does. Lock-free.
// Newest first: a newer arena may lie where an older one gave its range back.
std::size_t arena_holding(std::uintptr_t a) noexcept {
  for (std::size_t i = g_arena_count.load(std::memory_order_acquire); i-- > 0;) {
    const arena_range& r = g_arenas[i];
    if (a - r.base.load(std::memory_order_relaxed) >= r.size.load(std::memory_order_relaxed))
      continue;
    // Only ancestors' arenas give parts back: the current generation's are looked up at once.
    if (g_released_count.load(std::memory_order_relaxed) == 0 ||
        r.generation.load(std::memory_order_relaxed) ==
            g_generation.load(std::memory_order_relaxed) ||
        !released_from(i, a))
      return i;
  }
  return no_arena;
}

// Lists the segment of `p`, a block the calling thread had outside every arena, as this
// generation's (g_outside). Lock-free: mimalloc allocates in a segment only on the thread that owns
// it, so each segment has one writer; a thread that frees a block got it after it was listed.
void list_outside_block(const void* p) noexcept {
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  if (generation == 0 || arena_holding(a) != no_arena) return;  // owner_of knows it already
  const std::uintptr_t segment = a & ~(mimalloc_segment_bytes - 1);
  for (outside_segment& e : g_outside) {
    if (e.base.load(std::memory_order_acquire) == segment) {
      e.generation.store(generation, std::memory_order_release);
      return;
    }
  }
  for (outside_segment& e : g_outside) {
    std::uintptr_t old = e.base.load(std::memory_order_acquire);
    if ((old == 0 || e.generation.load(std::memory_order_relaxed) != generation) &&
        e.base.compare_exchange_strong(old, segment, std::memory_order_acq_rel)) {
      e.generation.store(generation, std::memory_order_release);
      return;
    }
  }
  // Full of this generation's segments (64 of them, 2 GiB): the block stays an ancestor's for
  // free(), which leaves it in place; nothing is lost but its room.
}

std::mutex& heap_mutex() noexcept {
  static constinit std::mutex mu;
  return mu;
}

struct thread_state {
  std::uint64_t generation = ~std::uint64_t{0};  // of `heap`; never a real generation at first
  int errno_at_slow_path = 0;  // errno when mimalloc's allocation slow path last began
  mi_heap_t* heap = nullptr;
  std::size_t arena = no_arena;     // the arena `heap` allocates in
  mi_heap_t* spare_heap = nullptr;  // this thread's heap in g_spare, made before a fork
  std::size_t spare_arena = no_arena;
  bool busy = false;     // making a heap: a re-entrant malloc falls back to mimalloc's default
  bool exiting = false;  // thread-exit hook ran: mimalloc is about to delete `heap`
  bool guarded = false;  // the thread-exit hook is registered: only then may `heap` be set
  // The heaps this thread left behind in earlier arenas of generation `earlier_generation` when
  // it grew (newest last; see allocate_in_earlier_heap). Each stays the thread's until it exits.
  static constexpr std::size_t max_earlier = 8;
  std::uint64_t earlier_generation = ~std::uint64_t{0};
  std::size_t earlier_count = 0;
  mi_heap_t* earlier_heap[max_earlier] = {};
  std::size_t earlier_arena[max_earlier] = {};
};
constinit thread_local thread_state t_state __attribute__((tls_model("initial-exec")));

// mimalloc deletes a thread's heaps when the thread ends (its pthread key destructor). C++
// thread_local destructors run before pthread key destructors, so this guard tells the malloc
// path to stop using `heap` before it dangles.
struct thread_exit_guard {
  thread_exit_guard() noexcept = default;
  ~thread_exit_guard();
};
thread_local thread_exit_guard t_exit_guard;

// A thread that exits with a heap in an arena other than the newest (it grew, or another thread
// did after it started) leaves segments there that a new thread cannot reuse: see
// renew_thread_heap.
thread_exit_guard::~thread_exit_guard() {
  thread_state& t = t_state;
  t.exiting = true;
  t.heap = nullptr;
  std::lock_guard lock(heap_mutex());
  if (t.arena == no_arena || t.generation != g_generation.load(std::memory_order_relaxed)) return;
  if (t.arena != g_newest || (t.earlier_generation == t.generation && t.earlier_count != 0))
    g_collect_for_new_thread.store(true, std::memory_order_relaxed);
}

// Keeps the caller's errno across one of the heap's slow paths. Their system calls may fail and
// be retried or ignored (a reservation halved under RLIMIT_AS, a name the kernel refuses), and an
// allocation that succeeds must leave errno as it was, as glibc's malloc does: programs
// (PostgreSQL among them) read errno after calls that may allocate.
struct errno_kept {
  int saved = errno;
  errno_kept() noexcept = default;
  errno_kept(const errno_kept&) = delete;
  errno_kept& operator=(const errno_kept&) = delete;
  ~errno_kept() { errno = saved; }
};

constexpr std::size_t round_to_arena(std::size_t bytes) noexcept {
  return bytes < min_arena_bytes ? min_arena_bytes : (bytes + arena_align - 1) & ~(arena_align - 1);
}

// The largest arena an address-space limit (RLIMIT_AS, `ulimit -v`) leaves room for: what is
// left, less a sixteenth kept for the program's other mappings (thread stacks, files, libraries),
// and never less than 64 MiB: mimalloc's own heap, which holds the thread heaps' structs, maps
// 32 MiB segments outside every arena, and with only a sixteenth kept (18 MiB under a 290 MiB
// limit) its first one failed and every preloaded program aborted at its first allocation
// ("failed to register TLS destructor"). In whole arena_align units; SIZE_MAX without a limit.
std::size_t arena_bytes_that_fit() noexcept {
  std::size_t left = 0;
  if (os::address_space_left(&left) != 0) return SIZE_MAX;
  constexpr std::size_t least_kept = std::size_t{64} << 20;
  const std::size_t keep = left / 16 > least_kept ? left / 16 : least_kept;
  return left > keep ? (left - keep) & ~(arena_align - 1) : 0;
}

// With the malloc library under an address-space limit, the most a growth may reserve: a quarter
// of what the limit leaves for arenas (`fit`, from arena_bytes_that_fit), in whole arena_align
// units.
constexpr std::size_t growth_bytes(std::size_t fit) noexcept {
  return fit / 4 & ~(arena_align - 1);
}

// Whether the heap has room to add an arena: false with the malloc library under an
// address-space limit that leaves less than the least arena for a growth (reserve_arena).
bool room_to_grow() noexcept {
  if (&permafrost_malloc_library == nullptr) return true;
  const std::size_t fit = arena_bytes_that_fit();
  return fit == SIZE_MAX || growth_bytes(fit) >= min_arena_bytes;
}

// What a reservation is for. A thread heap's growth has somewhere else to go under an
// address-space limit (allocate_outside_arenas); a generation's first arena and the spare do not.
enum class reservation { required, growth };

// Pre: heap_mutex held (or the process single-threaded). Reserves an arena of `want` bytes, or
// if that does not fit, of the largest halving of it down to `least`, for `generation`, and
// appends it to g_arenas; *index is its entry.
int reserve_arena(std::size_t want, std::size_t least, std::uint64_t generation, std::size_t* index,
                  reservation kind = reservation::required) noexcept {
  const std::size_t n = g_arena_count.load(std::memory_order_relaxed);
  if (n == max_arenas) return ENOMEM;
  if (want > SIZE_MAX / 2 || least > want) return ENOMEM;
  least = round_to_arena(least);
  std::size_t size = round_to_arena(want);
  // Under an address-space limit take no more than what is left (arena_bytes_that_fit): halving
  // from `want` alone left up to half of the limit unreserved (a 1 GiB limit held 758 MiB).
  // With the malloc library every allocation can grow the heap: take a quarter of that, and for
  // a growth nothing where that is less than the least arena (a growth forced to the least took
  // the room left for what the program maps later: each thread's 8 MiB stack and the 32 MiB
  // mimalloc segment for its heap structs; under `ulimit -v 600000` eight threads aborted with
  // "failed to register TLS destructor" where plain mimalloc ran them). The thread then allocates
  // outside the arenas (allocate_outside_arenas), as plain mimalloc does.
  std::size_t fit = arena_bytes_that_fit();
  // Not even the least arena beside what is kept for the rest (mimalloc's own 32 MiB segments
  // above all): none at all. The heap then allocates where plain mimalloc would. A least arena
  // forced in took that room: under `ulimit -v` of 72 to 104 MiB every preloaded program aborted
  // at its first allocation ("failed to register TLS destructor"), where plain mimalloc ran. A
  // generation's first arena (or the spare) with the malloc library also leaves room for what a
  // program maps once it runs (an 8 MiB stack and a 32 MiB mimalloc segment per thread): under
  // 150 MiB Python aborted when it started a thread, where plain mimalloc ran it.
  const std::size_t headroom =
      kind == reservation::required && &permafrost_malloc_library != nullptr && fit != SIZE_MAX
          ? first_arena_headroom
          : 0;
  if (fit < least || fit - least < headroom) return ENOMEM;
  if (fit != SIZE_MAX && &permafrost_malloc_library != nullptr) {
    fit = growth_bytes(fit);
    if (fit < least && kind == reservation::growth) return ENOMEM;
  }
  if (fit < size) size = fit < least ? least : fit;
  void* p = nullptr;
  for (;;) {
    const int err = os::reserve(size, arena_align, &p);
    if (err == 0) break;
    if (err != ENOMEM || size == least) return err;
    size = size / 2 < least ? least : round_to_arena(size / 2);
  }
  // Registered as not committed: mimalloc then commits (mprotect) what it hands out and
  // decommits what it frees, as with its own OS memory. A committed arena counts as pinned, and
  // mimalloc never gives its pages back (a freed 1 GiB block stayed resident).
  arena_range& r = g_arenas[n];
  if (!mi_manage_os_memory_ex(p, size, /*is_committed=*/false, /*is_large=*/false, /*is_zero=*/true,
                              /*numa_node=*/-1, /*exclusive=*/true, &r.id)) {
    (void)os::release(p, size);
    return ENOMEM;
  }
  (void)os::name_range(p, size, "permafrost-heap");
  r.base.store(reinterpret_cast<std::uintptr_t>(p), std::memory_order_relaxed);
  r.size.store(size, std::memory_order_relaxed);
  r.generation.store(generation, std::memory_order_relaxed);
  g_arena_count.store(n + 1, std::memory_order_release);
  *index = n;
  return 0;
}

// The size of the spare arena. The parent keeps the spare reserved, untouched, for as long as it
// forks, so under an address-space limit (RLIMIT_AS) its address space is lost to the parent: a
// spare of the first arena's size, cut to what the limit left, took half of a 2 GiB limit (the
// parent then held 1054 MiB live after its first fork, 1922 MiB before). Where every allocation
// can grow the heap (the malloc library), the spare under a limit is the least arena: the child's
// heap grows as it is used. Without the malloc library plain malloc cannot grow, so the spare keeps
// the first arena's size.
std::size_t spare_arena_bytes() noexcept {
  std::size_t left = 0;
  if (&permafrost_malloc_library != nullptr && os::address_space_left(&left) == 0)
    return min_arena_bytes;
  return first_arena_bytes();
}

// Pre: heap_mutex held. Makes sure the spare arena and the calling thread's heap in it exist.
int ensure_spare_locked() noexcept {
  if (g_spare == no_arena) {
    const int err = reserve_arena(spare_arena_bytes(), min_arena_bytes,
                                  g_generation.load(std::memory_order_relaxed) + 1, &g_spare);
    if (err != 0) return err;
  }
  thread_state& t = t_state;
  if (t.spare_heap == nullptr || t.spare_arena != g_spare) {
    t.busy = true;
    t.spare_heap = mi_heap_new_in_arena(g_arenas[g_spare].id);
    t.busy = false;
    t.spare_arena = g_spare;
    if (t.spare_heap == nullptr) return ENOMEM;
  }
  return 0;
}

// Pre: heap_mutex held. Starts the next generation in `arena` (the spare, or one reserved in the
// child); the calling thread moves to `heap` (may be nullptr: made on its next allocation).
void start_generation(std::size_t arena, mi_heap_t* heap) noexcept {
  thread_state& t = t_state;
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed) + 1;
  g_newest = arena;
  g_collect_for_new_thread.store(false, std::memory_order_relaxed);
  if (arena == g_spare) g_spare = no_arena;
  t.heap = heap;
  t.arena = arena;
  t.generation = heap != nullptr ? generation : ~std::uint64_t{0};
  t.spare_heap = nullptr;
  t.spare_arena = no_arena;
  if (heap != nullptr) mi_heap_set_default(heap);
  g_abandoned.store(0, std::memory_order_relaxed);
  g_threads.store(heap != nullptr ? 1 : 0, std::memory_order_relaxed);
  g_generation.store(generation, std::memory_order_release);
}

// `heap` for a thread whose exit hook is registered, else nullptr: the thread then makes its heap
// at its next allocation (renew_thread_heap, which registers the hook). A thread that started
// where the limit left no room for a heap registered none; handed the spare heap in a child, it
// left that heap dangling at its exit, and an atexit handler's malloc used it (SIGSEGV).
mi_heap_t* guarded_heap(mi_heap_t* heap) noexcept { return t_state.guarded ? heap : nullptr; }

bool spare_ready() noexcept {
  return g_spare != no_arena && t_state.spare_heap != nullptr && t_state.spare_arena == g_spare;
}

void on_prepare() noexcept {
  const errno_kept kept;
  heap_mutex().lock();
  const int err = ensure_spare_locked();
  if (err != 0) g_last_error.store(err, std::memory_order_relaxed);
}

void on_parent() noexcept {
  if (g_keep_inherited && !g_parent_renewed && spare_ready()) {
    g_parent_renewed = true;
    start_generation(g_spare, guarded_heap(t_state.spare_heap));
  }
  heap_mutex().unlock();
}

// In a child after its renewal: the 64 MiB chunks of ancestors' arenas that are not committed
// (never handed out, or given back) hold nothing the child can reach, and the child never allocates
// in an ancestor's arena, so their address space is returned (VmSize, ulimit -v). Committed parts
// stay: ancestors' objects live there. Allocates (reads /proc/self/maps), so it does not run in
// the fork handler, where malloc may not be fork-safe (a sanitizer's is not): the child handler
// sets g_release_pending and mimalloc's next allocation slow path does it.
constinit std::atomic<bool> g_release_pending{false};

// Pre: heap_mutex held. Unmaps [begin, end) of arena `i` and records it in g_released; false
// (and nothing unmapped) when the table is full: an unrecorded part could not be told from a
// later mapping there.
bool give_back(std::size_t i, std::uintptr_t begin, std::uintptr_t end) noexcept {
  const std::size_t k = g_released_count.load(std::memory_order_relaxed);
  if (k == max_released) return false;
  g_released[k].begin.store(begin, std::memory_order_relaxed);
  g_released[k].end.store(end, std::memory_order_relaxed);
  g_released[k].arena.store(i, std::memory_order_relaxed);
  g_released_count.store(k + 1, std::memory_order_release);
  (void)os::release(reinterpret_cast<void*>(begin), end - begin);
  return true;
}

void release_unreachable() noexcept {
  std::vector<os::mapping> maps;
  if (os::read_mappings(0, &maps) != 0) return;
  // Held while giving back, so that no arena is reserved meanwhile (it could land in a part
  // just given back); nothing below allocates.
  std::lock_guard lock(heap_mutex());
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < g_arena_count.load(std::memory_order_acquire); ++i) {
    const arena_range& r = g_arenas[i];
    if (r.generation.load(std::memory_order_relaxed) >= generation) continue;  // current or spare
    const std::uintptr_t begin = r.base.load(std::memory_order_relaxed);
    const std::uintptr_t end = begin + r.size.load(std::memory_order_relaxed);
    for (const os::mapping& m : maps) {
      if (m.readable || m.writable || m.end <= begin || m.begin >= end) continue;
      // Whole aligned chunks only: a live mimalloc segment always has its first slice committed,
      // so a chunk wholly inaccessible is no live segment's, and mimalloc never maps over it
      // again (it decommits a freed segment with MAP_FIXED, which would clobber whatever the
      // kernel later placed in a hole inside one).
      const std::uintptr_t from =
          begin +
          ((m.begin < begin ? 0 : m.begin - begin) + arena_align - 1) / arena_align * arena_align;
      const std::uintptr_t to =
          begin + ((m.end > end ? end : m.end) - begin) / arena_align * arena_align;
      // Chunk by chunk: a part an earlier generation gave back may now hold a later mapping,
      // merged by the kernel with the arena's own inaccessible chunks beside it.
      for (std::uintptr_t run = from; run < to;) {
        std::uintptr_t run_end = run;
        while (run_end < to && !released_from(i, run_end)) run_end += arena_align;
        if (run_end > run && !give_back(i, run, run_end)) return;
        run = run_end + arena_align;
      }
    }
  }
}

// Without the malloc library plain malloc is mimalloc's and cannot grow the heap: a request the
// thread's arena cannot serve fails. A child's arena is the spare its parent reserved, and under
// an address-space limit that was cut to what the parent's own arenas left (a child held 62 MiB
// under a 2 GiB limit where its parent held 1788 MiB). Once release_unreachable has given the
// ancestors' address space back, a larger arena fits: reserve one as large as a first arena may
// be, and move the calling thread's heap there. Its heap struct comes from the inherited backing
// heap (a few inherited pages written, as when the heap grows), so this happens only when the
// new arena is larger than the current one. Threads that made their heap in the spare before
// this keep it; threads started later make theirs in the new arena.
void widen_after_release() noexcept {
  if (&permafrost_malloc_library != nullptr) return;  // there every allocation can grow the heap
  thread_state& t = t_state;
  std::lock_guard lock(heap_mutex());
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  // A thread without its exit hook stays without a heap (guarded_heap).
  if (g_newest == no_arena || t.generation != generation || !t.guarded) return;
  const std::size_t current = g_arenas[g_newest].size.load(std::memory_order_relaxed);
  const std::size_t fit = arena_bytes_that_fit();
  if (fit == SIZE_MAX || fit <= current) return;  // no limit (the spare was full size), or no gain
  std::size_t index = no_arena;
  t.busy = true;
  int err = reserve_arena(first_arena_bytes(), min_arena_bytes, generation, &index);
  mi_heap_t* heap = err == 0 ? mi_heap_new_in_arena(g_arenas[index].id) : nullptr;
  t.busy = false;
  if (err == 0) g_newest = index;  // threads that make their heap from now on use it
  if (heap == nullptr) {
    g_last_error.store(err != 0 ? err : ENOMEM, std::memory_order_relaxed);
    return;
  }
  // The old heap stays with the thread (mimalloc deletes it at thread exit); its blocks are
  // this generation's and freed as any.
  mi_heap_set_default(heap);
  t.heap = heap;
  t.arena = index;
}

void on_child() noexcept {
  const errno_kept kept;
  // Only after a renewal onto the pre-made heap: otherwise the thread's default mimalloc heap is
  // still the ancestor's until its next allocation, and it may allocate in an ancestor's arena.
  const bool renewed = spare_ready() && t_state.guarded;
  if (renewed) {
    start_generation(g_spare, t_state.spare_heap);
  } else if (spare_ready()) {
    start_generation(g_spare, nullptr);  // see guarded_heap
  } else {
    // The parent could not prepare: reserve here. The heap struct then comes from the inherited
    // backing heap (a few inherited pages written) when the thread next allocates.
    std::size_t index = no_arena;
    const int err = reserve_arena(first_arena_bytes(), min_arena_bytes,
                                  g_generation.load(std::memory_order_relaxed) + 1, &index);
    if (err == 0) {
      start_generation(index, nullptr);
    } else {
      g_last_error.store(err, std::memory_order_relaxed);
    }
  }
  if (renewed) g_release_pending.store(true, std::memory_order_relaxed);
  heap_mutex().unlock();
}

mi_heap_t* renew_thread_heap() noexcept;

// mimalloc calls this on its allocation slow path in every thread: a thread that started (or
// last allocated) in an earlier generation moves to this generation's heap, so plain malloc of a
// program that merely links permafrost lands in the arena too.
void on_mimalloc_slow_path(bool force, unsigned long long, void*) noexcept {
  thread_state& t = t_state;
  // mimalloc 2.0.9 calls this first thing on its allocation slow path (force false), before any
  // of its own system calls, and again with force true when it collects and retries after finding
  // no page. A request the thread's exclusive arena cannot serve returns with errno ENOMEM: the
  // caller's errno is kept here for allocate_growing to put back once it has grown the heap.
  if (!force) t.errno_at_slow_path = errno;
  const errno_kept kept;
  if (t.generation != g_generation.load(std::memory_order_relaxed) && !t.busy && !t.exiting) {
    (void)renew_thread_heap();
  }
  // mimalloc does not call this hook again while it runs, so the allocations in it are safe.
  if (g_release_pending.load(std::memory_order_relaxed) && !t.busy &&
      g_release_pending.exchange(false, std::memory_order_relaxed)) {
    release_unreachable();
    widen_after_release();
  }
}

// Whether the thread has a heap of this generation in `arena` among its earlier ones.
bool has_earlier_heap_in(const thread_state& t, std::size_t arena) noexcept {
  if (t.earlier_generation != t.generation) return false;
  for (std::size_t i = 0; i < t.earlier_count; ++i)
    if (t.earlier_arena[i] == arena) return true;
  return false;
}

// Pre: heap_mutex held; t.busy set. A new heap for the calling thread in the current generation's
// newest arena; when `grow` and that arena is the thread's own (it is exhausted), first adds an
// arena that fits `need` bytes and sets *reserved (when given).
mi_heap_t* make_thread_heap_locked(bool grow, std::size_t need, bool* reserved = nullptr) noexcept {
  thread_state& t = t_state;
  std::size_t index = g_newest;
  if (index == no_arena) return nullptr;
  // The thread's own heap in the newest arena, current or earlier, could not serve (earlier ones
  // are tried first, allocate_in_earlier_heap): another heap there would fail as well.
  if (grow && (index == t.arena || has_earlier_heap_in(t, index))) {
    if (need > SIZE_MAX / 4) return nullptr;
    // The arenas are reserved MAP_NORESERVE, so the kernel never applies its overcommit heuristic
    // to them: a request larger than RAM plus swap, for which glibc's mmap is refused, was served
    // (a process that malloc'd 2^40 bytes got them; Python's bytearray(2**40) was OOM-killed where
    // glibc raises MemoryError), and its address space stayed reserved. Refused here instead.
    if (std::size_t most = 0; os::heuristic_commit_limit(&most) == 0 && need > most) return nullptr;
    const std::size_t least = need + arena_align / 2;  // a mimalloc segment's header and alignment
    std::size_t want = 2 * g_arenas[index].size.load(std::memory_order_relaxed);
    if (want > max_grow_bytes) want = max_grow_bytes;
    if (want < least) want = least;
    const int err = reserve_arena(want, least, g_generation.load(std::memory_order_relaxed), &index,
                                  reservation::growth);
    if (err != 0) {
      g_last_error.store(err, std::memory_order_relaxed);
      return nullptr;
    }
    g_newest = index;
    if (reserved != nullptr) *reserved = true;
  }
  mi_heap_t* heap = mi_heap_new_in_arena(g_arenas[index].id);
  if (heap == nullptr) {
    g_last_error.store(ENOMEM, std::memory_order_relaxed);
    return nullptr;
  }
  t.arena = index;
  return heap;
}

mi_heap_t* renew_thread_heap() noexcept {
  thread_state& t = t_state;
  if (t.busy || t.exiting) return nullptr;
  const errno_kept kept;
  t.busy = true;
  init_process_heap();
  mi_heap_t* heap = nullptr;
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(heap_mutex());
    generation = g_generation.load(std::memory_order_relaxed);
    // A thread's heap in an arena takes a 32 MiB mimalloc segment there besides the one mimalloc
    // maps for its mi_heap_t (mi_heap_new_in_arena takes it from the thread's backing heap,
    // which cannot use an exclusive arena): twice plain mimalloc's address space per thread. So
    // where the limit has no room left for an arena, a thread started after the generation's
    // first allocates in its backing heap alone, as under plain mimalloc (allocate_growing).
    // tests/python_threads_under_limit.sh (12 Python threads, a fork and 12 more) failed 19 runs
    // in 30 under 500 MiB without this, 2 with it; glibc and plain mimalloc ran every run.
    if (g_threads.load(std::memory_order_relaxed) == 0 || room_to_grow())
      heap = make_thread_heap_locked(false, 0);
  }
  if (heap != nullptr) {
    mi_heap_set_default(heap);
    g_threads.fetch_add(1, std::memory_order_relaxed);
    // A thread that exited with heaps in earlier arenas left segments there that become free as
    // its blocks are freed. mimalloc 2.0.9 gives a heap of an exclusive arena only segments of
    // that arena (its bitmap; its segment cache, mi_arena_memid_is_suitable; abandoned segments,
    // _mi_heap_memid_is_suitable), and this heap is in the newest: it commits fresh segments
    // while those stay committed - abandoned until some thread's segment allocation visits them,
    // then in mimalloc's segment cache for mi_option_segment_decommit_delay (500 ms). A program
    // whose threads one after another build 200 MiB, free it and exit peaked at twice plain
    // mimalloc's RSS. A forced collect frees the abandoned segments that are empty and decommits
    // the cached ones now. (Cached segments of the newest arena are decommitted too: this heap
    // faults in what it would have reused warm. Only after such an exit, not at every thread.)
    if (g_collect_for_new_thread.load(std::memory_order_relaxed) &&
        g_collect_for_new_thread.exchange(false, std::memory_order_relaxed))
      mi_heap_collect(heap, true);
  } else {
    // Whatever the thread's default heap was (a heap of an earlier generation, after a renewal
    // in the parent), it now allocates in its backing heap, which never uses an arena.
    mi_heap_set_default(mi_heap_get_backing());
  }
  t.heap = heap;
  t.generation = generation;
  t.busy = false;
  // Registers the thread-exit hook on first use. Only now: glibc allocates its record with
  // malloc, which must land in the heap just made, not in mimalloc's default heap. That malloc
  // grows the heap when the arena is full, moving the thread to a heap in a newer arena: the
  // caller must get that one, or its allocation fails in the full arena and grows again (each
  // thread that started with its arena full reserved two arenas, not one). GCC takes the
  // registration call for a leaf that cannot reach t_state and keeps t.heap in a register
  // across it; the barrier makes it read t.heap again. A thread with no heap of its own has none
  // to leave dangling, and registers nothing: where the limit left no room for a heap, glibc's
  // record could not be had either, and glibc aborts the process when it cannot register (under
  // `ulimit -v` of 70 to 90 MiB, a Python program starting a thread died with "failed to register
  // TLS destructor", where plain mimalloc raised an exception in Python).
  if (heap != nullptr) {
    (void)&t_exit_guard;
    t.guarded = true;
  }
  asm volatile("" ::: "memory");
  return t.heap;
}

// Records the calling thread's current heap (in `arena`) among its earlier ones, before the
// thread moves to another; the oldest is forgotten when all max_earlier are taken.
void remember_earlier_heap(thread_state& t, mi_heap_t* heap, std::size_t arena) noexcept {
  if (heap == nullptr) return;
  if (t.earlier_generation != t.generation) {
    t.earlier_generation = t.generation;
    t.earlier_count = 0;
  }
  if (t.earlier_count == thread_state::max_earlier) {
    for (std::size_t i = 1; i < thread_state::max_earlier; ++i) {
      t.earlier_heap[i - 1] = t.earlier_heap[i];
      t.earlier_arena[i - 1] = t.earlier_arena[i];
    }
    --t.earlier_count;
  }
  t.earlier_heap[t.earlier_count] = heap;
  t.earlier_arena[t.earlier_count] = arena;
  ++t.earlier_count;
}

// The calling thread's heap could not serve `need` bytes: moves the thread to a heap in a newer
// (if need be, new) arena of this generation; *reserved tells whether it reserved one. nullptr
// when none can be had.
mi_heap_t* grow_thread_heap(std::size_t need, bool* reserved) noexcept {
  *reserved = false;
  thread_state& t = t_state;
  if (t.busy || t.exiting) return nullptr;
  const errno_kept kept;
  t.busy = true;
  mi_heap_t* const old_heap = t.heap;
  const std::size_t old_arena = t.arena;
  mi_heap_t* heap = nullptr;
  {
    std::lock_guard lock(heap_mutex());
    if (t.generation == g_generation.load(std::memory_order_relaxed))
      heap = make_thread_heap_locked(true, need, reserved);
  }
  if (heap != nullptr) {
    // The old heap stays with the thread (mimalloc deletes it at thread exit); its blocks are
    // freed as any of this generation's, and reused through allocate_in_earlier_heap.
    remember_earlier_heap(t, old_heap, old_arena);
    mi_heap_set_default(heap);
    t.heap = heap;
  }
  t.busy = false;
  return heap;
}

// Runs `attempt` on the calling thread's earlier heaps (newest first) once its current heap is
// exhausted, and moves the thread to the first that serves it. A mimalloc heap takes segments
// from its own arena only, and mimalloc caches a freed segment for a heap of that arena: a program
// that built a working set across several arenas, freed it and built it again grew into a new
// arena each time instead of reusing the freed ones (peak RSS 2-3x plain mimalloc's, and under an
// address-space limit every later fill got about a third of the first).
template <class Attempt>
void* allocate_in_earlier_heap(Attempt attempt) noexcept {
  thread_state& t = t_state;
  if (t.busy || t.exiting || t.earlier_count == 0 || t.earlier_generation != t.generation ||
      t.generation != g_generation.load(std::memory_order_relaxed))
    return nullptr;
  const std::uint64_t generation = t.generation;
  mi_heap_t* const current = t.heap;
  for (std::size_t i = t.earlier_count; i-- > 0;) {
    mi_heap_t* const earlier = t.earlier_heap[i];
    const std::size_t arena = t.earlier_arena[i];
    if (void* p = attempt(earlier)) {
      // The attempt's slow path may have renewed the thread's heap (a new generation, begun by
      // another thread's fork with PERMAFROST_KEEP_INHERITED): the thread stays on the new one.
      if (t.generation != generation || t.heap != current) return p;
      t.earlier_heap[i] = t.heap;  // the exhausted one takes its place
      t.earlier_arena[i] = t.arena;
      t.heap = earlier;
      t.arena = arena;
      mi_heap_set_default(earlier);
      return p;
    }
    if (t.generation != generation) return nullptr;  // renewed meanwhile: the list is stale
  }
  return nullptr;
}

// How often one allocation may grow the thread's heap. A growth either moves the thread to the
// newest arena, which another thread reserved, or reserves a new one; either may be filled by
// other threads moving there before this thread's attempt runs, so one growth was not enough:
// under `ulimit -v 800000`, where a new arena is the least (two mimalloc segments), the four
// threads of a forked child grew at once and one run in four aborted ("failed to register TLS
// destructor: out of memory") with no system call refused. An attempt that fails in an arena
// this call reserved twice fails for another reason than room: it is not retried further, as
// each retry would reserve one more (and larger) arena.
constexpr int max_growths_per_allocation = 8;
constexpr int max_reservations_per_allocation = 2;

// The last resort of an allocation no arena can serve because the address-space limit
// (`ulimit -v`) leaves no room for another: mimalloc's backing heap for the calling thread serves
// it, as plain mimalloc would. The thread has a segment there already (mimalloc mapped it for the
// thread's heap structs, outside every arena), mostly empty; each thread's heap also takes a
// 32 MiB segment of an arena, so under `ulimit -v 300000` four threads aborted where plain
// mimalloc ran them (and Python starting twelve hung in Thread.start() after a MemoryError in a
// new thread). Such blocks are listed by segment, so that free() in a child frees them. Without a
// limit a failed growth is a request no arena may serve (more than RAM plus swap): it fails.
template <class Attempt>
void* allocate_outside_arenas(std::size_t need, Attempt attempt) noexcept {
  std::size_t left = 0;
  if (os::address_space_left(&left) != 0) return nullptr;
  if (std::size_t most = 0; os::heuristic_commit_limit(&most) == 0 && need > most) return nullptr;
  void* p = attempt(mi_heap_get_backing());
  if (p != nullptr) list_outside_block(p);
  return p;
}

// Runs `attempt(heap)` on the calling thread's heap, growing it when it is exhausted, and outside
// every arena when it cannot grow; mimalloc's default heap serves while the thread has none (see
// thread_heap()). A block had after growing comes with the caller's errno, not the ENOMEM of the
// attempt that failed.
template <class Attempt>
void* allocate_growing(std::size_t need, Attempt attempt) noexcept {
  mi_heap_t* heap = thread_heap();
  if (heap == nullptr) {
    void* p = attempt(mi_heap_get_default());
    if (p != nullptr) list_outside_block(p);
    return p;
  }
  if (void* p = attempt(heap)) return p;
  // The slow path: the failed attempt went through mimalloc's, which kept the caller's errno.
  const int caller_errno = t_state.errno_at_slow_path;
  if (void* p = allocate_in_earlier_heap(attempt)) {
    errno = caller_errno;
    return p;
  }
  int reservations = 0;
  for (int growths = 0;
       growths < max_growths_per_allocation && reservations < max_reservations_per_allocation;
       ++growths) {
    bool reserved = false;
    heap = grow_thread_heap(need, &reserved);
    if (heap == nullptr) break;
    if (void* p = attempt(heap)) {
      errno = caller_errno;
      return p;
    }
    reservations += reserved ? 1 : 0;
  }
  void* p = allocate_outside_arenas(need, attempt);
  if (p != nullptr) errno = caller_errno;
  return p;
}

}  // namespace

void init_process_heap() noexcept {
  if (g_initialized.load(std::memory_order_acquire)) return;
  const errno_kept kept;
  std::lock_guard lock(heap_mutex());
  if (g_initialized.load(std::memory_order_relaxed)) return;
  const bool was_busy = t_state.busy;
  t_state.busy = true;
  std::size_t index = no_arena;
  const int err = reserve_arena(first_arena_bytes(), min_arena_bytes, 0, &index);
  if (err == 0) {
    g_newest = index;
  } else {
    g_last_error.store(err, std::memory_order_relaxed);
  }
  add_fork_hooks(fork_stage::heap, {&on_prepare, &on_parent, &on_child});
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
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  if (const std::size_t i = arena_holding(a); i != no_arena) {
    return g_arenas[i].generation.load(std::memory_order_relaxed) == generation
               ? block_owner::current
               : block_owner::ancestor;
  }
  // Outside every arena: mimalloc's own segments (its default heap served a re-entrant malloc
  // while a thread made its heap, or no arena had room: allocate_outside_arenas). In generation
  // 0 there is no ancestor, so they are this process's own; after a renewal they may be an
  // ancestor's and are left in place, unless this generation listed their segment.
  if (mi_is_in_heap_region(p)) {
    if (generation == 0) return block_owner::current;
    const std::uintptr_t segment = a & ~(mimalloc_segment_bytes - 1);
    for (const outside_segment& e : g_outside) {
      if (e.base.load(std::memory_order_acquire) == segment)
        return e.generation.load(std::memory_order_relaxed) == generation ? block_owner::current
                                                                          : block_owner::ancestor;
    }
    return block_owner::ancestor;
  }
  return block_owner::none;
}

void note_abandoned(std::size_t bytes) noexcept {
  g_abandoned.fetch_add(bytes, std::memory_order_relaxed);
}

void set_keep_inherited(bool on) noexcept {
  std::lock_guard lock(heap_mutex());
  g_keep_inherited = on;
}

int prepare_fork() noexcept {
  init_process_heap();
  std::lock_guard lock(heap_mutex());
  return ensure_spare_locked();
}

void* heap_allocate(std::size_t bytes, std::size_t align) noexcept {
  // mimalloc serves requests of <= 8 bytes from 8-byte blocks; malloc promises
  // alignof(max_align_t) (16) like glibc, so they are asked as 16.
  if (bytes < alignof(std::max_align_t)) bytes = alignof(std::max_align_t);
  if (align <= alignof(std::max_align_t)) {
    // mimalloc serves 1..8 bytes from its 8-byte class, whose blocks are only 8-aligned; a block
    // of at least `align` bytes comes from a class whose blocks are aligned to it (fuzz_malloc:
    // posix_memalign(16, 0) returned an 8-aligned pointer).
    if (bytes < align) bytes = align;
    return allocate_growing(bytes, [bytes](mi_heap_t* h) { return mi_heap_malloc(h, bytes); });
  }
  // Up to the page size, a multiple of the alignment is asked for plainly: mimalloc's size
  // classes for such sizes are multiples of the alignment too, and its pages start 64 KiB-aligned,
  // so every block is aligned - at the cost of rounding the size up, nothing more. (mimalloc
  // 2.0.9's aligned fast path returns misaligned small blocks for some size/alignment pairs,
  // microsoft/mimalloc#700, so its aligned call is kept for what the size classes cannot give.)
  constexpr std::size_t size_class_align_max = 4096;
  if (align <= size_class_align_max && bytes <= SIZE_MAX - align) {
    const std::size_t rounded = (bytes + align - 1) & ~(align - 1);
    void* p =
        allocate_growing(rounded, [rounded](mi_heap_t* h) { return mi_heap_malloc(h, rounded); });
    if (p == nullptr || (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) == 0) [[likely]]
      return p;
    mi_free(p);  // not a size class this reasoning covers: take the general path
  }
  // mimalloc 2.0.9 serves no alignment above half its 32 MiB segment, whatever the arena's room:
  // refused before growing, as every growth for it would reserve an arena in vain.
  constexpr std::size_t mimalloc_align_max = std::size_t{16} << 20;
  if (align > mimalloc_align_max) return nullptr;
  // The general path is correct above mimalloc's small-size limit.
  constexpr std::size_t small_size_max = 1024;
  if (bytes <= small_size_max) bytes = small_size_max + 1;
  return allocate_growing(bytes + align, [bytes, align](mi_heap_t* h) {
    return mi_heap_malloc_aligned(h, bytes, align);
  });
}

void* heap_zallocate(std::size_t bytes) noexcept {
  return allocate_growing(bytes, [bytes](mi_heap_t* h) { return mi_heap_zalloc(h, bytes); });
}

void* heap_reallocate(void* p, std::size_t bytes) noexcept {
  return allocate_growing(bytes, [p, bytes](mi_heap_t* h) { return mi_heap_realloc(h, p, bytes); });
}

void heap_free(void* p) noexcept {
  if (p == nullptr) return;
  switch (owner_of(p)) {
    case block_owner::current: mi_free(p); return;
    case block_owner::ancestor: note_abandoned(mi_usable_size(p)); return;
    case block_owner::arena: return;
    case block_owner::none: break;
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

// Identifies this copy of the heap: see permafrost_process_heap_at_load.
extern "C" {
PERMAFROST_API extern const void* permafrost_heap_instance() noexcept;
PERMAFROST_API const void* permafrost_heap_instance() noexcept {
  return &permafrost::detail::g_arenas;
}
}

namespace {
__attribute__((constructor)) void permafrost_process_heap_at_load() {
  // Two copies of the heap - a program linked with libpermafrost-heap.a that also loads
  // libpermafrost-malloc.so - would each own arenas and take the other's blocks for invalid
  // pointers. The first definition in the global scope is the one every lookup finds; a copy
  // that is not it refuses to run.
  using instance_fn = const void* (*)() noexcept;
  const auto first =
      reinterpret_cast<instance_fn>(permafrost::os::global_symbol("permafrost_heap_instance"));
  if (first != nullptr && first() != &permafrost::detail::g_arenas) {
    permafrost::detail::check_failed(
        "two copies of the permafrost heap in one process: libpermafrost-malloc.so is loaded into "
        "a program linked with permafrost::heap; link permafrost::malloc (or "
        "permafrost::permafrost) "
        "instead, or do not preload the malloc library",
        __FILE__, __LINE__);
  }
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
  s.generation = detail::g_generation.load(std::memory_order_acquire);
  for (std::size_t i = detail::g_arena_count.load(std::memory_order_acquire); i-- > 0;) {
    const detail::arena_range& r = detail::g_arenas[i];
    if (r.generation.load(std::memory_order_relaxed) != s.generation) continue;
    const std::uintptr_t base = r.base.load(std::memory_order_relaxed);
    const std::size_t size = r.size.load(std::memory_order_relaxed);
    s.reserved += size;
    std::uint64_t rss = 0;
    if (os::smaps_field_in_range(0, base, base + size, "Rss", &rss) == 0)
      s.used += static_cast<std::size_t>(rss);
  }
  s.abandoned = detail::g_abandoned.load(std::memory_order_relaxed);
  s.threads = detail::g_threads.load(std::memory_order_relaxed);
  s.last_error = detail::g_last_error.load(std::memory_order_relaxed);
  return s;
}

pid_t fork() {
  const int err = detail::prepare_fork();
  if (err != 0)
    throw std::system_error(err, std::generic_category(),
                            "permafrost::fork: reserving the child's heap");
  pid_t pid = -1;
  if (const int fork_err = os::fork_process(&pid); fork_err != 0)
    throw std::system_error(fork_err, std::generic_category(), "permafrost::fork");
  return pid;
}

}  // namespace permafrost
