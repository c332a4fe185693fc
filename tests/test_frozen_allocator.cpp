// frozen_allocator<T>: standard containers built wholly in an arena, frozen, read in children.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/frozen_allocator.hpp>

#include <string>
#include <sys/wait.h>
#include <unordered_map>
#include <vector>

#include "arenas.hpp"
#include "fork_probe.hpp"

using permafrost::frozen_allocator;

namespace {

using fstring = std::basic_string<char, std::char_traits<char>, frozen_allocator<char>>;
using fvector = std::vector<int, frozen_allocator<int>>;
struct fstring_hash {
  std::size_t operator()(const fstring& s) const noexcept {
    return std::hash<std::string_view>{}(std::string_view(s));
  }
};
using fmap = std::unordered_map<fstring, fvector, fstring_hash, std::equal_to<fstring>,
                                frozen_allocator<std::pair<const fstring, fvector>>>;

void fill(fmap& m, int n, frozen_allocator<char> alloc) {
  for (int i = 0; i < n; ++i) {
    fvector values(4, i, alloc);
    m.emplace(fstring("key number " + std::to_string(i), alloc), std::move(values));
  }
}

permafrost::arena_options opts() {
  return permafrost::test::arena_options_for(
      "frozen-allocator", {.capacity = std::size_t{256} << 20});
}

}  // namespace

TEST_CASE("vector, string and unordered_map live wholly in the arena") {
  permafrost::arena a(opts());
  frozen_allocator<char> alloc(a);
  std::vector<int, frozen_allocator<int>> v(alloc);
  for (int i = 0; i < 10000; ++i) v.push_back(i);
  fstring s("a string long enough to leave the small-string buffer behind", alloc);
  CHECK(a.contains(v.data()));
  CHECK(a.contains(s.data()));

  auto* m = a.make<fmap>(alloc);
  fill(*m, 1000, alloc);
  CHECK(m->size() == 1000);
  for (const auto& [key, values] : *m) {
    CHECK(a.contains(key.data()));
    CHECK(a.contains(values.data()));
    CHECK(a.contains(&key));
  }
}

TEST_CASE("frozen containers are read by 4 children with 0 arena pages copied") {
  permafrost::arena a(opts());
  frozen_allocator<char> alloc(a);
  auto* m = a.make<fmap>(alloc);
  fill(*m, 50000, alloc);
  a.freeze();
  const auto results = permafrost::test::fork_and_compare(4, a.used_bytes(), [&] {
    // Lookup keys are built in a scratch arena of the child's own: the frozen one refuses.
    permafrost::arena scratch(opts());
    frozen_allocator<char> scratch_alloc(scratch);
    long total = 0;
    for (int i = 0; i < 50000; ++i) {
      const auto it = m->find(fstring("key number " + std::to_string(i), scratch_alloc));
      if (it == m->end() || it->second[3] != i) return 1;
      total += it->second[0];
    }
    return total > 0 ? 0 : 1;
  });
  for (const auto& r : results) {
    CHECK(r.exit_status == 0);
    CHECK(r.copied == 0);
  }
}

TEST_CASE("growing a frozen container throws frozen_error") {
  permafrost::arena a(opts());
  std::vector<int, frozen_allocator<int>> v{frozen_allocator<int>(a)};
  v.reserve(4);
  v.push_back(1);
  a.freeze();
  CHECK(v[0] == 1);
  // No write reaches the frozen pages: growth asks the allocator first, and it refuses.
  const int status = permafrost::test::wait_status_of([&] {
    try {
      v.resize(1000);
    } catch (const permafrost::frozen_error&) {
      std::_Exit(0);
    }
    std::_Exit(1);
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("allocators compare equal exactly when they share an arena") {
  permafrost::arena a(opts());
  permafrost::arena b(opts());
  CHECK(frozen_allocator<int>(a) == frozen_allocator<long>(a));
  CHECK_FALSE(frozen_allocator<int>(a) == frozen_allocator<int>(b));
  CHECK_THROWS_AS((void)frozen_allocator<long>(a).allocate(std::numeric_limits<std::size_t>::max() / 4),
                  std::bad_array_new_length);
}
