// Built against the installed package: proves the headers, the library and the package config
// are enough for a user's project.
#include <permafrost/arena.hpp>
#include <permafrost/frozen_allocator.hpp>
#include <permafrost/permafrost.h>

#include <cstdio>
#include <string_view>
#include <vector>

int main() {
  permafrost::arena a({.capacity = 1 << 20, .name = "consumer"});
  std::vector<int, permafrost::frozen_allocator<int>> v{permafrost::frozen_allocator<int>(a)};
  for (int i = 0; i < 100; ++i) v.push_back(i);
  const std::string_view s = a.copy("frozen");
  a.freeze();
  permafrost_arena* c = nullptr;
  if (permafrost_arena_create(nullptr, &c) != 0) return 2;
  permafrost_arena_destroy(c);
  const bool ok = permafrost::is_frozen(s.data()) && permafrost::is_frozen(v.data()) && v[99] == 99;
  std::printf("consumer: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
