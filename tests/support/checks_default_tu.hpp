// The body of checks_default_ndebug.cpp and checks_default_debug.cpp: one function, named by
// PERMAFROST_CHECKS_DEFAULT_FN, that makes an arena with default options and says whether it runs
// freeze checks. Each .cpp sets NDEBUG its own way first; the tests compare the two answers.
#include <permafrost/arena.hpp>

#include "arenas.hpp"

namespace permafrost::test {

bool PERMAFROST_CHECKS_DEFAULT_FN() {
  arena a(arena_options_for("checks-default"));  // freeze_checks left unset
  return a.freeze_checks_enabled();
}

}  // namespace permafrost::test
