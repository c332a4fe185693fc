// frozen_allocator<T>: standard containers built wholly in an arena, frozen, read in children.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/frozen_allocator.hpp>

#include <csignal>

#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <set>
#include <string>
#include <sys/wait.h>
#include <unordered_map>
#include <unordered_set>
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
  return permafrost::test::arena_options_for("frozen-allocator",
                                             {.capacity = std::size_t{256} << 20});
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
  CHECK_THROWS_AS(
      (void)frozen_allocator<long>(a).allocate(std::numeric_limits<std::size_t>::max() / 4),
      std::bad_array_new_length);
}

// ----- destroying a container whose memory is frozen --------------------------------------------
//
// The container object lives on the stack (as most do); its blocks live in the arena, frozen. Its
// destructor runs the elements' destructors and deallocate() (a no-op): safe exactly when neither
// writes the arena. Each runs in a child, which must exit normally.

namespace {

template <class Container, class Fill>
int destroy_after_freeze(Fill fill) {
  permafrost::arena a(opts());
  return permafrost::test::wait_status_of([&] {
    {
      Container c{frozen_allocator<typename Container::value_type>(a)};
      fill(c, a);
      a.freeze();
    }  // destroyed here, after freeze
    std::_Exit(0);
  });
}

bool exited_normally(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

fstring long_string(permafrost::arena& a, int i) {
  return fstring("a string long enough to leave the small-string buffer " + std::to_string(i),
                 frozen_allocator<char>(a));
}

}  // namespace

TEST_CASE("after freeze, destroying vector, basic_string and deque writes no frozen byte") {
  CHECK(exited_normally(
      destroy_after_freeze<std::vector<fstring, frozen_allocator<fstring>>>([](auto& c, auto& a) {
        for (int i = 0; i < 100; ++i) c.push_back(long_string(a, i));
      })));
  CHECK(
      exited_normally(destroy_after_freeze<fstring>([](auto& c, auto&) { c.assign(1000, 'x'); })));
  CHECK(exited_normally(
      destroy_after_freeze<std::deque<fstring, frozen_allocator<fstring>>>([](auto& c, auto& a) {
        for (int i = 0; i < 1000; ++i) c.push_back(long_string(a, i));
      })));
}

TEST_CASE("after freeze, destroying list and forward_list writes no frozen byte") {
  CHECK(exited_normally(
      destroy_after_freeze<std::list<fstring, frozen_allocator<fstring>>>([](auto& c, auto& a) {
        for (int i = 0; i < 1000; ++i) c.push_back(long_string(a, i));
      })));
  CHECK(exited_normally(
      destroy_after_freeze<std::forward_list<int, frozen_allocator<int>>>([](auto& c, auto&) {
        for (int i = 0; i < 1000; ++i) c.push_front(i);
      })));
}

TEST_CASE("after freeze, destroying map, multimap, set and multiset writes no frozen byte") {
  using fmap_ordered =
      std::map<int, fstring, std::less<>, frozen_allocator<std::pair<const int, fstring>>>;
  CHECK(exited_normally(destroy_after_freeze<fmap_ordered>([](auto& c, auto& a) {
    for (int i = 0; i < 1000; ++i) c.emplace(i, long_string(a, i));
  })));
  using fmultimap =
      std::multimap<int, int, std::less<>, frozen_allocator<std::pair<const int, int>>>;
  CHECK(exited_normally(destroy_after_freeze<fmultimap>([](auto& c, auto&) {
    for (int i = 0; i < 1000; ++i) c.emplace(i % 10, i);
  })));
  CHECK(exited_normally(
      destroy_after_freeze<std::set<int, std::less<>, frozen_allocator<int>>>([](auto& c, auto&) {
        for (int i = 0; i < 1000; ++i) c.insert(i);
      })));
  CHECK(
      exited_normally(destroy_after_freeze<std::multiset<int, std::less<>, frozen_allocator<int>>>(
          [](auto& c, auto&) {
    for (int i = 0; i < 1000; ++i) c.insert(i % 10);
      })));
}

// The unordered containers clear their bucket array in the destructor (libstdc++'s ~_Hashtable
// memsets it). Before, the array was in the arena and destroying one after freeze died of
// SIGSEGV; frozen_allocator now gives that array ordinary memory, the nodes stay in the arena.
TEST_CASE("after freeze, destroying every unordered container writes no frozen byte") {
  using fumap = std::unordered_map<int, int, std::hash<int>, std::equal_to<>,
                                   frozen_allocator<std::pair<const int, int>>>;
  CHECK(exited_normally(destroy_after_freeze<fumap>([](auto& c, auto&) {
    for (int i = 0; i < 1000; ++i) c.emplace(i, i);
  })));
  using fuset = std::unordered_set<int, std::hash<int>, std::equal_to<>, frozen_allocator<int>>;
  CHECK(exited_normally(destroy_after_freeze<fuset>([](auto& c, auto&) {
    for (int i = 0; i < 1000; ++i) c.insert(i);
  })));
  using fumultimap = std::unordered_multimap<int, int, std::hash<int>, std::equal_to<>,
                                             frozen_allocator<std::pair<const int, int>>>;
  CHECK(exited_normally(destroy_after_freeze<fumultimap>([](auto& c, auto&) {
    for (int i = 0; i < 1000; ++i) c.emplace(i % 10, i);
  })));
  using fumultiset =
      std::unordered_multiset<int, std::hash<int>, std::equal_to<>, frozen_allocator<int>>;
  CHECK(exited_normally(destroy_after_freeze<fumultiset>([](auto& c, auto&) {
    for (int i = 0; i < 1000; ++i) c.insert(i % 10);
  })));
  // The map of strings and vectors: keys and values in the arena, destroyed after freeze.
  CHECK(exited_normally(destroy_after_freeze<fmap>([](auto& c, auto& a) {
    fill(c, 1000, frozen_allocator<char>(a));
    for (const auto& [key, values] : c)
      if (!a.contains(key.data()) || !a.contains(values.data()) || !a.contains(&key)) std::_Exit(3);
  })));
  // The supported way: the map object in the arena, never destroyed; it outlives the test's
  // use and the arena goes with everything in it.
  const int in_arena = permafrost::test::wait_status_of([] {
    permafrost::arena a(opts());
    auto* m = a.make<fumap>(frozen_allocator<std::pair<const int, int>>(a));
    for (int i = 0; i < 1000; ++i) m->emplace(i, i);
    a.freeze();
    std::_Exit(m->at(999) == 999 ? 0 : 1);
  });
  CHECK(exited_normally(in_arena));
}
