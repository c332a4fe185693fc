// One translation unit compiled with NDEBUG and one without (checks_default_debug.cpp): both
// make an arena with default options, and the tests compare what each got. The default of
// arena_options::freeze_checks must not depend on the consumer's NDEBUG.
#ifndef NDEBUG
#define NDEBUG 1
#endif
#include <permafrost/arena.hpp>

namespace permafrost::test {

bool freeze_checks_default_ndebug() {
  arena_options o;
  o.capacity = std::size_t{16} << 20;
  o.name = "checks-default-ndebug";
  arena a(o);
  return a.freeze_checks_enabled();
}

}  // namespace permafrost::test
