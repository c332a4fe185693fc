// The other half of checks_default_ndebug.cpp: this translation unit is compiled without NDEBUG.
#undef NDEBUG
#include <permafrost/arena.hpp>

namespace permafrost::test {

bool freeze_checks_default_debug() {
  arena_options o;
  o.capacity = std::size_t{16} << 20;
  o.name = "checks-default-debug";
  arena a(o);
  return a.freeze_checks_enabled();
}

}  // namespace permafrost::test
