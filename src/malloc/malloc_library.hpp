// permafrost — the malloc library's own state, shared by its entry points (malloc.cpp) and
// arena_scope (arena_scope.cpp) (internal; compiled only into libpermafrost-malloc.so).
#pragma once

namespace permafrost::detail {

// True once the malloc library routes this process's malloc/free: set by its load-time
// constructor, before main. Written once, then only read.
extern bool g_malloc_library_active;

}  // namespace permafrost::detail
