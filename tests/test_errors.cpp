// The library's exception types (include/permafrost/error.hpp): each is a permafrost::error and
// still the standard exception it always was, so every catch that worked before still works and
// `catch (const std::exception&)` is never ambiguous. Each is thrown here by the library itself.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/error.hpp>
#include <permafrost/image.hpp>
#include <permafrost/memstat.hpp>

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

#include "arenas.hpp"

using namespace permafrost;

// The bases, at compile time.
static_assert(!std::is_base_of_v<std::exception, error>,
              "permafrost::error must not add a second std::exception base");
static_assert(std::is_base_of_v<error, frozen_error> &&
              std::is_base_of_v<std::logic_error, frozen_error>);
static_assert(std::is_base_of_v<error, freeze_check_error> &&
              std::is_base_of_v<std::logic_error, freeze_check_error>);
static_assert(std::is_base_of_v<error, attach_error> &&
              std::is_base_of_v<std::runtime_error, attach_error>);
static_assert(std::is_base_of_v<error, image_error> &&
              std::is_base_of_v<std::runtime_error, image_error>);
static_assert(std::is_base_of_v<error, proc_error> &&
              std::is_base_of_v<std::system_error, proc_error>);

namespace {

// Runs `throws` and catches what it throws as permafrost::error, as the standard base `Std` and
// as std::exception; each must catch it, with the same message.
template <class Std, class F>
void caught_three_ways(F&& throws) {
  std::string as_error, as_std, as_exception;
  try {
    throws();
  } catch (const error& e) {
    as_error = e.what();
  }
  try {
    throws();
  } catch (const Std& e) {
    as_std = e.what();
  }
  try {
    throws();
  } catch (const std::exception& e) {
    as_exception = e.what();
  }
  CHECK_FALSE(as_error.empty());
  CHECK(as_std == as_error);
  CHECK(as_exception == as_error);
}

arena_options small(const char* name) {
  return permafrost::test::arena_options_for(name, {.capacity = 1 << 20});
}

}  // namespace

TEST_CASE("frozen_error: a permafrost::error and a std::logic_error") {
  arena a(small("errors-frozen"));
  a.freeze();
  caught_three_ways<std::logic_error>([&] { (void)a.allocate(8); });
  caught_three_ways<frozen_error>([&] { (void)a.allocate(8); });
}

TEST_CASE("freeze_check_error: a permafrost::error and a std::logic_error") {
  arena_options o = small("errors-check");
  o.freeze_checks = true;
  arena a(std::move(o));
  static int object = 0;
  a.add_freeze_check([](const void*, const arena&) { return std::string("always wrong"); },
                     &object);
  caught_three_ways<std::logic_error>([&] { a.freeze(); });
  CHECK_FALSE(a.frozen());
}

TEST_CASE("attach_error: a permafrost::error and a std::runtime_error") {
  caught_three_ways<std::runtime_error>([] { (void)arena::attach(-1); });
  try {
    (void)arena::attach(-1);
  } catch (const error& e) {
    // The type's own interface is one dynamic_cast away.
    const auto* attach = dynamic_cast<const attach_error*>(&e);
    REQUIRE(attach != nullptr);
    CHECK(attach->why() == attach_error::reason::not_a_memfd);
  }
}

TEST_CASE("image_error: a permafrost::error and a std::runtime_error") {
  caught_three_ways<std::runtime_error>(
      [] { (void)image::open("/nonexistent/permafrost-test-errors.img"); });
}

TEST_CASE("proc_error: a permafrost::error and a std::system_error with its code") {
  constexpr pid_t vanished = 1 << 30;  // above any pid_max
  caught_three_ways<std::system_error>([] { (void)process_memory(vanished); });
  try {
    (void)process_memory(vanished);
  } catch (const std::system_error& e) {
    CHECK((e.code().value() == ENOENT || e.code().value() == ESRCH));
  }
}
