// Refcount-free handles: refcounted<T> with boost::intrusive_ptr, and share() -> shared_ptr.
#include <doctest/doctest.h>

#include <permafrost/ref.hpp>

#include <boost/intrusive_ptr.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "arenas.hpp"
#include "fork_probe.hpp"

using permafrost::arena;
using permafrost::arena_options;

namespace {

struct node : permafrost::refcounted<node> {
  explicit node(std::uint64_t v, bool* destroyed = nullptr) : value(v), gone(destroyed) {}
  ~node() {
    if (gone != nullptr) *gone = true;
  }
  std::uint64_t value;
  bool* gone;
};

constexpr std::size_t node_count = 200'000;  // ~6 MiB of nodes

arena_options options(const char* name) {
  return permafrost::test::arena_options_for(
      name, {.capacity = std::size_t{64} << 20, .small_pages = true});
}

// Nodes built in `a`, each already held by one intrusive_ptr made before any freeze.
std::vector<boost::intrusive_ptr<node>> build(arena& a) {
  std::vector<boost::intrusive_ptr<node>> held;
  held.reserve(node_count);
  for (std::size_t i = 0; i < node_count; ++i) held.emplace_back(a.make<node>(i));
  return held;
}

// What a worker does with handles: copies each several times, reads through the copies.
int copy_handles(const std::vector<boost::intrusive_ptr<node>>& held) {
  std::uint64_t sum = 0;
  for (const auto& h : held) {
    boost::intrusive_ptr<node> a = h;
    boost::intrusive_ptr<node> b = a;
    std::vector<boost::intrusive_ptr<node>> more(3, b);
    sum += more[2]->value;
  }
  return sum == node_count * (node_count - 1) / 2 ? 0 : 1;
}

int copy_shared(const std::vector<boost::intrusive_ptr<node>>& held) {
  std::uint64_t sum = 0;
  for (const auto& h : held) {
    std::shared_ptr<const node> s = permafrost::share(h.get());
    std::shared_ptr<const node> t = s;
    std::weak_ptr<const node> w = t;
    sum += w.lock()->value;
  }
  return sum == node_count * (node_count - 1) / 2 ? 0 : 1;
}

}  // namespace

TEST_CASE("4 children copying intrusive_ptrs to frozen objects copy 0 arena pages") {
  arena a(options("ref-frozen"));
  const auto held = build(a);
  CHECK(held[7]->use_count() == 1);
  a.freeze();
  const auto results = permafrost::test::fork_and_compare(4, a.used_bytes(), [&] {
    const int rc = copy_handles(held);
    return rc == 0 && held[7]->use_count() == 1 ? 0 : 1;  // the count no longer moves
  });
  for (const auto& r : results) {
    CHECK(r.exit_status == 0);
    CHECK(r.copied == 0);
  }
}

TEST_CASE("control: the same copies on an unfrozen arena do copy its pages") {
  arena a(options("ref-mutable"));
  const auto held = build(a);
  const auto results =
      permafrost::test::fork_and_compare(1, a.used_bytes(), [&] { return copy_handles(held); });
  REQUIRE(results.size() == 1);
  CHECK(results[0].exit_status == 0);
  MESSAGE("pages copied by counting on an unfrozen arena: " << results[0].copied << " of "
                                                            << results[0].pages);
  CHECK(results[0].copied > results[0].pages / 2);
}

TEST_CASE("4 children copying share() handles to frozen objects copy 0 arena pages") {
  arena a(options("share-frozen"));
  const auto held = build(a);
  a.freeze();
  const auto results =
      permafrost::test::fork_and_compare(4, a.used_bytes(), [&] { return copy_shared(held); });
  for (const auto& r : results) {
    CHECK(r.exit_status == 0);
    CHECK(r.copied == 0);
  }
}

TEST_CASE("a mutable refcounted object is freed when its count reaches zero") {
  bool destroyed = false;
  {
    boost::intrusive_ptr<node> p(new node(5, &destroyed));
    CHECK(p->use_count() == 1);
    {
      boost::intrusive_ptr<node> q = p;
      CHECK(p->use_count() == 2);
    }
    CHECK(p->use_count() == 1);
    CHECK_FALSE(destroyed);
  }
  CHECK(destroyed);
}

TEST_CASE("an object in an arena not yet frozen is counted but never deleted") {
  bool destroyed = false;
  arena a(options("ref-unfrozen"));
  node* n = a.make<node>(9, &destroyed);
  { boost::intrusive_ptr<node> p(n); }
  CHECK(n->use_count() == 0);
  CHECK_FALSE(destroyed);
  CHECK(n->value == 9);
}

TEST_CASE("share() rejects a pointer that is not frozen; nullptr gives an empty handle") {
  arena a(options("share-reject"));
  const node* in_arena = a.make<node>(1);
  const node on_stack(2);
  CHECK_THROWS_AS(permafrost::share(in_arena), std::invalid_argument);
  CHECK_THROWS_AS(permafrost::share(&on_stack), std::invalid_argument);
  CHECK(permafrost::share(static_cast<const node*>(nullptr)) == nullptr);
  a.freeze();
  const auto h = permafrost::share(in_arena);
  CHECK(h.get() == in_arena);
  CHECK(h->value == 1);
}

TEST_CASE("a forked child's share() handles use an anchor of its own") {
  arena a(options("share-fork"));
  const node* n = a.make<node>(3);
  a.freeze();
  const auto parent_handle = permafrost::share(n);
  const int status = permafrost::test::wait_status_of([&] {
    const auto child_handle = permafrost::share(n);
    const bool same_owner =
        !child_handle.owner_before(parent_handle) && !parent_handle.owner_before(child_handle);
    ::_exit(!same_owner && child_handle.get() == n ? 0 : 1);
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // In the parent, handles share the thread's anchor.
  const auto again = permafrost::share(n);
  CHECK_FALSE(again.owner_before(parent_handle));
  CHECK_FALSE(parent_handle.owner_before(again));
}
