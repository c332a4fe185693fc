// permafrost — freeze_scope: the per-thread routing target read by the malloc library.
#include "permafrost/freeze_scope.hpp"

#include <stdexcept>

#include "heap/process_heap.hpp"

namespace permafrost {

bool malloc_library_active() noexcept { return detail::g_malloc_library_active; }

freeze_scope::freeze_scope(arena& target)
    : target_(target.core()), previous_(detail::t_freeze_target) {
  if (!malloc_library_active()) {
    throw std::logic_error(
        "permafrost::freeze_scope needs libpermafrost-malloc.so as the program's malloc "
        "(link permafrost::malloc or LD_PRELOAD it)");
  }
  if (target.frozen()) throw frozen_error("permafrost::freeze_scope: the arena is frozen");
  detail::t_freeze_target = target_;
}

freeze_scope::~freeze_scope() {
  PERMAFROST_CHECK(detail::t_freeze_target == target_,
                   "freeze_scope destroyed out of order (or on another thread)");
  detail::t_freeze_target = previous_;
}

}  // namespace permafrost
