// permafrost — the old name of arena_scope (arena_scope.hpp), kept for one release.
//
// freeze_scope routed a thread's plain allocations into an arena; it never froze (write-protected)
// anything, so it is now arena_scope, and "freeze" means only arena::freeze().
#pragma once

#include "permafrost/arena_scope.hpp"

namespace permafrost {

using freeze_scope [[deprecated("use permafrost::arena_scope (<permafrost/arena_scope.hpp>)")]] =
    arena_scope;

}  // namespace permafrost
