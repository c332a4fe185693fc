// permafrost — the process-local anchors behind share() handles (see include/permafrost/ref.hpp).
#include "permafrost/ref.hpp"

#include <new>

#include "fork/fork_lifecycle.hpp"

namespace permafrost::detail {
namespace {

// A thread's anchor made before a fork (an older fork epoch) belongs to the parent.
struct anchor_holder {
  using anchor = std::shared_ptr<const void>;
  std::uint64_t epoch = 0;
  bool live = false;
  alignas(anchor) unsigned char storage[sizeof(anchor)];

  anchor& get() noexcept { return *std::launder(reinterpret_cast<anchor*>(storage)); }
  ~anchor_holder() {
    // Only this process's own anchor is released; an inherited one is left alone.
    if (live && epoch == fork_epoch()) get().~anchor();
  }
};

thread_local anchor_holder t_anchor;

}  // namespace

const std::shared_ptr<const void>& share_anchor() {
  register_fork_lifecycle();
  anchor_holder& h = t_anchor;
  const std::uint64_t epoch = fork_epoch();
  if (!h.live || h.epoch != epoch) {
    // After a fork the old anchor's control block sits on a page inherited from the parent:
    // it is deliberately leaked, not released, so this process never writes it.
    ::new (static_cast<void*>(h.storage)) anchor_holder::anchor(std::make_shared<const char>('\0'));
    h.live = true;
    h.epoch = epoch;
  }
  return h.get();
}

}  // namespace permafrost::detail
