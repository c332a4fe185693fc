// permafrost — arena_scope: the per-thread routing target read by the malloc library.
#include "permafrost/arena_scope.hpp"

#include <stdexcept>

#include "arena/arena_registry.hpp"
#include "malloc/c_runtime_callers.hpp"
#include "malloc/malloc_library.hpp"

namespace permafrost {

bool malloc_library_active() noexcept { return detail::g_malloc_library_active; }

arena_scope::arena_scope(arena& target)
    : target_(target.core()), previous_(detail::t_scope_target) {
  if (!malloc_library_active()) {
    throw std::logic_error(
        "permafrost::arena_scope needs libpermafrost-malloc.so as the program's malloc "
        "(link permafrost::malloc or LD_PRELOAD it)");
  }
  if (target.frozen()) throw frozen_error("permafrost::arena_scope: the arena is frozen");
  detail::refresh_code_map();  // libraries loaded since the last scope: whose code is the C
                               // runtime's
  detail::t_scope_target = target_;
}

arena_scope::~arena_scope() {
  PERMAFROST_CHECK(detail::t_scope_target == target_,
                   "arena_scope destroyed out of order, on another thread, or after its arena");
  detail::t_scope_target = previous_;
}

}  // namespace permafrost
