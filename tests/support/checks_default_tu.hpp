// The body of checks_default_ndebug.cpp and checks_default_debug.cpp: one function, named by
// PERMAFROST_CHECKS_DEFAULT_FN, that makes an arena with default options and says whether it runs
// freeze checks. Each .cpp sets NDEBUG its own way first; the tests compare the two answers.
#include <permafrost/arena.hpp>

namespace permafrost::test {

bool PERMAFROST_CHECKS_DEFAULT_FN() {
  arena_options o;
  o.capacity = std::size_t{16} << 20;
  o.name = "checks-default";
  arena a(o);
  return a.freeze_checks_enabled();
}

}  // namespace permafrost::test
