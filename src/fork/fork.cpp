// permafrost — the fork lifecycle (contract and handler order in fork_lifecycle.hpp).
#include <atomic>
#include <mutex>

#include "fork/fork_lifecycle.hpp"
#include "os/os.hpp"

namespace permafrost::detail {
namespace {

constinit std::atomic<std::uint64_t> g_fork_epoch{0};

struct stage_slot {
  std::atomic<fork_hook> prepare{nullptr};
  std::atomic<fork_hook> parent{nullptr};
  std::atomic<fork_hook> child{nullptr};
  std::atomic<bool> installed{false};  // stored last: true means the three above are set
};
constinit stage_slot g_stages[fork_stage_count];

// Held from a fork's prepare to its parent or child handler, so two threads forking at once run
// their hooks one fork after the other (glibc drops its own atfork lock while a handler runs).
// First in the lock order, before every stage's lock.
constinit std::mutex g_fork_mutex;

// The hooks of the stages installed when prepare ran: parent and child run exactly the stages
// whose prepare ran, even if add_fork_hooks() races a fork. Guarded by g_fork_mutex.
constinit fork_hooks g_active[fork_stage_count];

void on_prepare() noexcept {
  g_fork_mutex.lock();
  for (unsigned i = 0; i < fork_stage_count; ++i) {
    const stage_slot& s = g_stages[i];
    g_active[i] = s.installed.load(std::memory_order_acquire)
                      ? fork_hooks{s.prepare.load(std::memory_order_relaxed),
                                   s.parent.load(std::memory_order_relaxed),
                                   s.child.load(std::memory_order_relaxed)}
                      : fork_hooks{};
    if (g_active[i].prepare != nullptr) g_active[i].prepare();
  }
}

void on_parent() noexcept {
  for (unsigned i = fork_stage_count; i-- > 0;) {
    if (g_active[i].parent != nullptr) g_active[i].parent();
  }
  g_fork_mutex.unlock();
}

void on_child() noexcept {
  g_fork_epoch.fetch_add(1, std::memory_order_relaxed);
  for (unsigned i = fork_stage_count; i-- > 0;) {
    if (g_active[i].child != nullptr) g_active[i].child();
  }
  g_fork_mutex.unlock();
}

}  // namespace

void register_fork_lifecycle() noexcept {
  // A failure (ENOMEM in pthread_atfork) leaves forks unobserved; nothing better can be done
  // here, and the subsystems degrade as documented (the heap reports it in heap_stats).
  static const int registered = os::register_fork_handlers(&on_prepare, &on_parent, &on_child);
  (void)registered;
}

void add_fork_hooks(fork_stage stage, const fork_hooks& hooks) noexcept {
  stage_slot& s = g_stages[static_cast<unsigned>(stage)];
  s.prepare.store(hooks.prepare, std::memory_order_relaxed);
  s.parent.store(hooks.parent, std::memory_order_relaxed);
  s.child.store(hooks.child, std::memory_order_relaxed);
  s.installed.store(true, std::memory_order_release);  // a fork that sees it sees all three
  register_fork_lifecycle();
}

std::uint64_t fork_epoch() noexcept { return g_fork_epoch.load(std::memory_order_relaxed); }

}  // namespace permafrost::detail
