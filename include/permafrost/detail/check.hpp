// permafrost — the two check levels.
//
// PERMAFROST_CHECK(cond, message): always on. For misuse that cannot be reported through the API
// (use of a moved-from arena, a corrupted argument); prints "permafrost: <message>" with the source
// location and aborts. Never compiled out.
//
// PERMAFROST_ASSERT(cond): debug builds only (compiled out under NDEBUG). For the library's own
// internal invariants; a failure is a permafrost bug.
#pragma once

#include "permafrost/api.h"

namespace permafrost::detail {

// Writes one line to stderr with async-signal-safe calls only, then aborts.
[[noreturn]] PERMAFROST_API void check_failed(const char* message, const char* file,
                                              int line) noexcept;

}  // namespace permafrost::detail

#define PERMAFROST_CHECK(cond, message)                                  \
  do {                                                                   \
    if (!(cond)) [[unlikely]]                                            \
      ::permafrost::detail::check_failed((message), __FILE__, __LINE__); \
  } while (false)

#ifdef NDEBUG
#define PERMAFROST_ASSERT(cond) static_cast<void>(0)
#else
#define PERMAFROST_ASSERT(cond) PERMAFROST_CHECK((cond), "internal invariant failed: " #cond)
#endif
