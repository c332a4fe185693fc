// permafrost — the process-local anchors behind share() handles (see include/permafrost/ref.hpp).
#include "permafrost/ref.hpp"

#include <new>
#include <pthread.h>

namespace permafrost::detail {
namespace {

// Bumped in every forked child: a thread's anchor from an older generation belongs to the parent.
constinit std::atomic<std::uint64_t> g_generation{0};

void on_fork_child() noexcept { g_generation.fetch_add(1, std::memory_order_relaxed); }

struct anchor_holder {
  using anchor = std::shared_ptr<const void>;
  std::uint64_t generation = 0;
  bool live = false;
  alignas(anchor) unsigned char storage[sizeof(anchor)];

  anchor& get() noexcept { return *std::launder(reinterpret_cast<anchor*>(storage)); }
  ~anchor_holder() {
    // Only this process's own anchor is released; an inherited one is left alone.
    if (live && generation == g_generation.load(std::memory_order_relaxed)) get().~anchor();
  }
};

thread_local anchor_holder t_anchor;

}  // namespace

const std::shared_ptr<const void>& share_anchor() {
  static const bool registered = ::pthread_atfork(nullptr, nullptr, on_fork_child) == 0;
  (void)registered;
  anchor_holder& h = t_anchor;
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  if (!h.live || h.generation != generation) {
    // After a fork the old anchor's control block sits on a page inherited from the parent:
    // it is deliberately leaked, not released, so this process never writes it.
    ::new (static_cast<void*>(h.storage)) anchor_holder::anchor(std::make_shared<const char>('\0'));
    h.live = true;
    h.generation = generation;
  }
  return h.get();
}

}  // namespace permafrost::detail
