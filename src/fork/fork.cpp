// permafrost — the fork lifecycle (contract and handler order in fork_lifecycle.hpp).
#include <atomic>

#include "arena/arena_backing.hpp"
#include "arena/arena_registry.hpp"
#include "fork/fork_lifecycle.hpp"
#include "os/os.hpp"

namespace permafrost::detail {
namespace {

constinit std::atomic<std::uint64_t> g_fork_epoch{0};
constinit std::atomic<fork_hook> g_heap_prepare{nullptr};
constinit std::atomic<fork_hook> g_heap_parent{nullptr};
constinit std::atomic<fork_hook> g_heap_child{nullptr};

// The heap's hooks as prepare saw them: parent and child run exactly the hooks whose prepare
// ran, even if set_heap_fork_hooks() races a fork. Written only between prepare and
// parent/child, under the registry lock.
constinit fork_hook g_active_parent = nullptr;
constinit fork_hook g_active_child = nullptr;

void on_prepare() noexcept {
  registry::mutex().lock();
  memfd_prepare_fork();
  const fork_hook prepare = g_heap_prepare.load(std::memory_order_acquire);
  g_active_parent = prepare != nullptr ? g_heap_parent.load(std::memory_order_acquire) : nullptr;
  g_active_child = prepare != nullptr ? g_heap_child.load(std::memory_order_acquire) : nullptr;
  if (prepare != nullptr) prepare();
}

void on_parent() noexcept {
  if (g_active_parent != nullptr) g_active_parent();
  memfd_after_fork_parent();
  registry::mutex().unlock();
}

void on_child() noexcept {
  g_fork_epoch.fetch_add(1, std::memory_order_relaxed);
  if (g_active_child != nullptr) g_active_child();
  memfd_after_fork_child();
  registry::mutex().unlock();
}

}  // namespace

void register_fork_lifecycle() noexcept {
  // A failure (ENOMEM in pthread_atfork) leaves forks unobserved; nothing better can be done
  // here, and the subsystems degrade as documented (the heap reports it in heap_stats).
  static const int registered = os::register_fork_handlers(&on_prepare, &on_parent, &on_child);
  (void)registered;
}

void set_heap_fork_hooks(fork_hook prepare, fork_hook parent, fork_hook child) noexcept {
  // prepare last: a fork sees either no heap hooks or all three.
  g_heap_parent.store(parent, std::memory_order_release);
  g_heap_child.store(child, std::memory_order_release);
  g_heap_prepare.store(prepare, std::memory_order_release);
  register_fork_lifecycle();
}

std::uint64_t fork_epoch() noexcept { return g_fork_epoch.load(std::memory_order_relaxed); }

}  // namespace permafrost::detail
