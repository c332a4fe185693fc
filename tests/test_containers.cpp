// Frozen containers: string, array, hash_map, hash_set, sorted_map, intern_pool, frozen_json,
// offset_ptr, the duplicate policy, the freeze check, position independence (the data read from a
// copy at another address), and sharing after fork (real pagemap, real SIGSEGV).
#include <doctest/doctest.h>

#include <permafrost/containers.hpp>
#include <permafrost/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <span>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "arenas.hpp"
#include "fork_probe.hpp"

using permafrost::arena;
using permafrost::arena_options;
using permafrost::duplicate_policy;
using pstring = permafrost::string;

namespace {

arena_options opts(const char* name = "containers", bool checks = false) {
  return permafrost::test::arena_options_for(
      name, {.capacity = std::size_t{2} << 30, .freeze_checks = checks});
}

constexpr std::size_t million = 1'000'000;

std::string key_of(std::size_t i) { return "key-" + std::to_string(i * 7919 + 13); }

std::vector<std::string> keys(std::size_t n) {
  std::vector<std::string> k(n);
  for (std::size_t i = 0; i < n; ++i) k[i] = key_of(i);
  return k;
}

bool killed_by(int status, int sig) { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }

}  // namespace

// What may be stored: plain data and permafrost handles, never owners of heap memory.
static_assert(permafrost::frozen_storable_v<int> && permafrost::frozen_storable_v<const char*>);
static_assert(permafrost::frozen_storable_v<pstring> &&
              permafrost::frozen_storable_v<permafrost::array<pstring>>);
static_assert(permafrost::frozen_storable_v<permafrost::frozen_json>);
static_assert(!permafrost::frozen_storable_v<std::string>);
static_assert(!permafrost::frozen_storable_v<std::vector<int>>);
static_assert(!permafrost::frozen_storable_v<std::shared_ptr<int>>);
static_assert(sizeof(pstring) == sizeof(void*) && sizeof(permafrost::frozen_json) == 16);

// ----- string and array ------------------------------------------------------------------------

TEST_CASE("string: the default string is empty and points nowhere") {
  const pstring s;
  CHECK(s.empty());
  CHECK(s.size() == 0);
  CHECK(s.view() == "");
  CHECK(*s.data() == '\0');
  arena a(opts());
  CHECK(s.points_into(a));  // it points at no arena byte
  CHECK_FALSE(a.contains(s.data()));
}

TEST_CASE("string: make_string copies bytes, embedded NULs included, and converts to string_view") {
  arena a(opts());
  const std::string src("a\0b\0c", 5);
  const pstring s = permafrost::make_string(a, src);
  CHECK(s.size() == 5);
  CHECK(std::string_view(s) == src);
  CHECK(s.data()[5] == '\0');
  CHECK(a.contains(s.data()));
  CHECK(s != pstring());
  CHECK(s == std::string_view(src));
}

TEST_CASE("string: a 64 KiB string round-trips") {
  arena a(opts());
  std::string big(64 << 10, 'x');
  big[1000] = '\0';
  const pstring s = permafrost::make_string(a, big);
  CHECK(s.view() == big);
}

TEST_CASE("array: empty, one and many elements; at() checks bounds") {
  arena a(opts());
  const permafrost::array<int> none = permafrost::copy_array<int>(a, std::span<const int>());
  CHECK(none.empty());
  CHECK_THROWS_AS(none.at(0), std::out_of_range);
  const auto one = permafrost::copy_array(a, {42});
  CHECK(one.size() == 1);
  CHECK(one.front() == 42);
  std::vector<double> src(1000);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = i * 0.5;
  const auto many = permafrost::copy_array(a, std::span<const double>(src));
  CHECK(std::equal(many.begin(), many.end(), src.begin(), src.end()));
  CHECK(many.at(999) == 499.5);
  CHECK_THROWS_AS(many.at(1000), std::out_of_range);
  CHECK(a.contains(many.data()));
}

// ----- hash_map ----------------------------------------------------------------------------

TEST_CASE("hash_map: an empty map finds nothing") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  const auto& m = b.finish();
  CHECK(m.size() == 0);
  CHECK(m.empty());
  CHECK(m.find("x") == nullptr);
  CHECK(m.find("x") == m.end());
  CHECK(m.begin() == m.end());
  CHECK_FALSE(m.contains(""));
  CHECK_THROWS_AS(m.at("x"), std::out_of_range);
}

TEST_CASE("hash_map: one entry; present and absent keys; the map lives in the arena") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  CHECK(b.insert("one", 1));
  const auto& m = b.finish();
  CHECK(a.contains(&m));
  REQUIRE(m.size() == 1);
  const auto e = m.find("one");
  REQUIRE(e != nullptr);
  CHECK(e != m.end());
  CHECK(a.contains(&e->value()));
  CHECK(a.contains(e->key().data()));
  CHECK(e->key() == "one");
  CHECK(e->value() == 1);
  CHECK(m.at(std::string("one")) == 1);
  CHECK(m.find("on") == m.end());
  CHECK(m.find(std::string("one\0", 4)) == nullptr);
  CHECK_THROWS_AS(m.at("two"), std::out_of_range);
  CHECK(std::distance(m.begin(), m.end()) == 1);
}

TEST_CASE("hash_map: 1M string keys are all found, absent ones are not, iteration sees each once") {
  arena a(opts());
  const auto k = keys(million);
  permafrost::hash_map_builder<pstring, std::uint64_t> b{a};
  for (std::size_t i = 0; i < k.size(); ++i) REQUIRE(b.insert(k[i], i));
  const auto& m = b.finish();
  a.freeze();  // lookups after freeze would fault if they wrote
  REQUIRE(m.size() == million);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < k.size(); ++i) {
    const auto e = m.find(k[i]);
    wrong += e == nullptr || e->value() != i || e->key() != k[i];
  }
  CHECK(wrong == 0);
  std::size_t found_absent = 0;
  for (std::size_t i = 0; i < 100'000; ++i)
    found_absent += m.contains("nokey-" + std::to_string(i));
  CHECK(found_absent == 0);
  std::vector<bool> seen(million);
  std::size_t n = 0;
  for (const auto& e : m) {
    seen.at(e.value()) = true;
    ++n;
  }
  CHECK(n == million);
  CHECK(std::all_of(seen.begin(), seen.end(), [](bool s) { return s; }));
}

TEST_CASE("hash_map: keys with embedded NULs and 64 KiB keys are distinct and found") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  const std::string nul1("a\0b", 3), nul2("a\0c", 3), nul3("a", 1), nul4("\0", 1);
  std::string big1(64 << 10, 'k'), big2 = big1;
  big2.back() = 'j';
  CHECK(b.insert(nul1, 1));
  CHECK(b.insert(nul2, 2));
  CHECK(b.insert(nul3, 3));
  CHECK(b.insert(nul4, 4));
  CHECK(b.insert(big1, 5));
  CHECK(b.insert(big2, 6));
  CHECK(b.insert("", 7));
  const auto& m = b.finish();
  CHECK(m.at(nul1) == 1);
  CHECK(m.at(nul2) == 2);
  CHECK(m.at(nul3) == 3);
  CHECK(m.at(nul4) == 4);
  CHECK(m.at(big1) == 5);
  CHECK(m.at(big2) == 6);
  CHECK(m.at("") == 7);
  CHECK(m.find(std::string("a\0", 2)) == m.end());
  CHECK(m.find(big1.substr(1)) == m.end());
}

TEST_CASE("hash_map: integer keys and permafrost::string values") {
  arena a(opts());
  permafrost::hash_map_builder<std::uint64_t, pstring> b{a};
  for (std::uint64_t i = 0; i < 1000; ++i) b.insert(i * 3, "v" + std::to_string(i));
  const auto& m = b.finish();
  CHECK(m.size() == 1000);
  CHECK(m.at(300) == "v100");
  CHECK(a.contains(m.at(300).data()));
  CHECK_FALSE(m.contains(301));
}

// Hashes that crowd lines (detail/hash_table.hpp): the high 32 bits pick a key's home line and
// the low 8 bits are its tag, so these put many keys in one home or give them one tag, and the
// key comparison must tell them apart.
struct one_home_hash {  // every key homed in line 0: it spills over 1000 / 56 lines
  std::uint64_t operator()(std::uint64_t k) const noexcept { return k & 0xff; }
};
struct pairs_hash {  // k and k ^ 1 share their high 32 bits, and every tag is 0 or 1
  std::uint64_t operator()(std::uint64_t k) const noexcept {
    return (permafrost::hash<std::uint64_t>{}(k >> 1) & ~std::uint64_t{0xffffffff}) | (k & 1);
  }
};
struct crowded_first_hash {  // keys below 100 homed in line 0; the rest spread as usual
  std::uint64_t operator()(std::uint64_t k) const noexcept {
    return k < 100 ? k : permafrost::hash<std::uint64_t>{}(k);
  }
};

template <class Hash>
void check_crowded(std::uint64_t n, std::uint64_t step) {
  arena a(opts());
  permafrost::hash_map_builder<std::uint64_t, std::uint64_t, Hash> b{a};
  for (std::uint64_t i = 0; i < n; ++i) b.insert(i * step, i);
  const auto& m = b.finish();
  REQUIRE(m.size() == n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto* v = m.find(i * step);
    REQUIRE(v != nullptr);
    CHECK(v->value() == i);
  }
  for (std::uint64_t i = 0; i < n; ++i) CHECK_FALSE(m.contains(i * step + n * step));
}

TEST_CASE("hash_map: 1000 keys with one home line are each found and no other is") {
  check_crowded<one_home_hash>(1000, 1);
}

TEST_CASE("hash_map: keys whose tags and home lines collide are told apart by the key") {
  check_crowded<pairs_hash>(20000, 1);  // absent keys pair with present ones' high bits too
}

TEST_CASE("hash_map: lines holding another home's overflow before their own keys find both") {
  // 100 keys homed in line 0 fill it and spill into lines 1 and 2, which hold their own keys
  // after the spilled ones; a lookup homed in line 1 or 2 must skip the spilled entries, one
  // homed in line 0 must follow them.
  check_crowded<crowded_first_hash>(5000, 1);
}

TEST_CASE("hash_map: keys too long for a size byte, among short ones, are all found") {
  // A key of 256 bytes or more is escaped in its line (size byte 0, its length stored before its
  // bytes) and found by stepping over the keys before it; the short keys after it in the line
  // must be found too.
  arena a(opts());
  permafrost::hash_map_builder<pstring, std::uint64_t> b{a};
  std::vector<std::string> k;
  for (std::size_t i = 0; i < 3000; ++i)
    k.push_back(i % 7 == 3
                    ? std::string(2040 + i, static_cast<char>('a' + i % 26)) + std::to_string(i)
                    : key_of(i));
  for (std::size_t i = 0; i < k.size(); ++i) REQUIRE(b.insert(k[i], i));
  const auto& m = b.finish();
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < k.size(); ++i) {
    const auto e = m.find(k[i]);
    wrong += e == nullptr || e->value() != i || e->key() != k[i];
    wrong += m.contains(k[i] + "x");
  }
  CHECK(wrong == 0);
}

// String hashes that crowd lines (detail/split_table.hpp): every key homed in line 0, with one of
// four tags, so lines spill and keys of one tag are told apart by their length and bytes.
struct one_home_string_hash {
  std::uint64_t operator()(std::string_view k) const noexcept {
    return k.empty() ? 0 : static_cast<unsigned char>(k.back()) & 3;
  }
};

// Keys of every length class of a line's size byte: 0 and >= 256 bytes are escaped.
std::vector<std::string> keys_of_every_size() {
  std::vector<std::string> k = {"", "a", std::string(255, 'x'), std::string(256, 'y'),
                                std::string(64 << 10, 'z')};
  for (int i = 0; i < 200; ++i) k.push_back(key_of(static_cast<std::size_t>(i)));
  k.push_back(std::string(255, 'x') + "w");  // 256 bytes, a prefix of 255 stored too
  return k;
}

template <class Hash>
void check_every_size() {
  arena a(opts());
  permafrost::hash_map_builder<pstring, std::uint64_t, Hash> b{a};
  const std::vector<std::string> k = keys_of_every_size();
  for (std::size_t i = 0; i < k.size(); ++i) REQUIRE(b.insert(k[i], i));
  const auto& m = b.finish();
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < k.size(); ++i) {
    const auto e = m.find(k[i]);
    wrong += !e || e->value() != i || e->key() != k[i] || m.find(k[i]) == m.end();
    wrong += m.contains(k[i] + "q");
  }
  CHECK(wrong == 0);
  for (const std::string& absent : {std::string(255, 'y'), std::string(256, 'x'),
                                    std::string(1, 'b'), std::string(64 << 10, 'y')})
    CHECK(m.find(absent) == nullptr);
  std::vector<int> seen(k.size(), 0);
  for (const auto& e : m) {
    REQUIRE(e.value() < k.size());
    ++seen[e.value()];
    CHECK(e.key() == k[e.value()]);
    CHECK(m.find(e.key()) == e);
  }
  CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<std::ptrdiff_t>(k.size()));

  permafrost::hash_set_builder<pstring, Hash> sb{a};
  for (const auto& key : k) REQUIRE(sb.insert(key));
  const auto& s = sb.finish();
  std::size_t missing = 0, walked = 0;
  for (const auto& key : k) missing += !s.contains(key) || s.find(key)->key() != key;
  for (const auto e : s) walked += s.find(e.key()) == e;
  CHECK(missing == 0);
  CHECK(walked == k.size());
  CHECK_FALSE(s.contains(std::string(256, 'x') + "x"));
}

TEST_CASE("hash_map and hash_set: keys of 0, 1, 255, 256 and 64 KiB bytes are found and walked") {
  check_every_size<permafrost::hash<pstring>>();
}

TEST_CASE("hash_map and hash_set: string keys homed in one line with four tags are told apart") {
  check_every_size<one_home_string_hash>();
}

TEST_CASE("hash_map: a string-keyed entry takes its value and its key bytes, nothing more") {
  // Values apart from keys (detail/split_table.hpp): 1000 keys of 16 bytes with 8-byte values
  // take 24 bytes each (no stored length, no padding: each group is a multiple of 8 bytes), plus
  // the table object and its 64-byte lines (50 home lines, and any that spilled past the last).
  arena a(opts());
  permafrost::hash_map_builder<pstring, std::uint64_t> b{a};
  for (std::uint64_t i = 0; i < 1000; ++i) {
    std::string k = "k" + std::to_string(i);
    k.resize(16, '.');
    REQUIRE(b.insert(k, i));
  }
  const auto& m = b.finish();
  REQUIRE(m.bucket_count() == 50);
  const std::size_t lines_bytes = m.bytes() - sizeof(m) - 1000 * 24;
  CHECK(lines_bytes % 64 == 0);
  CHECK(lines_bytes >= 50 * 64);
  CHECK(lines_bytes <= 51 * 64);
}

TEST_CASE(
    "hash_map: a string-keyed find() reads as a pointer: false, nullptr and end() when absent") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  b.insert("k", 1);
  const auto& m = b.finish();
  const permafrost::entry_ref<int> absent = m.find("x");
  CHECK_FALSE(static_cast<bool>(absent));
  CHECK(absent == nullptr);
  CHECK(absent == m.end());
  CHECK(m.end() == absent);
  CHECK(absent == permafrost::entry_ref<int>{});
  int found = 0;
  if (auto e = m.find("k")) found = e->value();
  CHECK(found == 1);
  CHECK(m.find("k") != nullptr);
  CHECK(m.find("k") != m.end());
  CHECK(m.find("k") == m.begin());
  CHECK(m.find("k") == *m.begin());
  CHECK(m.begin()->key() == "k");
  CHECK(&m.begin()->value() == m.get("k"));
  static_assert(std::forward_iterator<permafrost::hash_map<pstring, int>::const_iterator>);
  static_assert(std::forward_iterator<permafrost::hash_set<pstring>::const_iterator>);
}

TEST_CASE("hash_map: the portable tag match and size sum agree with the vector ones") {
  // The lookup compares a line's tags with SSE2 where it exists and eight bytes at a time
  // elsewhere; both must give the same candidates for every tag, including 0 and 0x80.
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    permafrost::detail::hash_line<true> sized{};
    permafrost::detail::hash_line<false> fixed{};
    for (std::size_t i = 0; i < sizeof sized.slots; ++i) {
      sized.slots[i] = static_cast<std::uint8_t>(rng() % (round % 2 == 0 ? 4 : 256));
      fixed.slots[i] = static_cast<std::uint8_t>(rng() % (round % 2 == 0 ? 4 : 256));
    }
    sized.count = fixed.count = static_cast<std::uint8_t>(rng());
    const auto tag = static_cast<std::uint8_t>(round < 256 ? round : rng());
    const std::uint64_t sized_bits = permafrost::detail::match_tags(sized, tag);
    const std::uint64_t fixed_bits = permafrost::detail::match_tags(fixed, tag);
    CHECK((sized_bits & 0xfffffff) ==
          (permafrost::detail::match_tags_portable(sized, tag) & 0xfffffff));
    CHECK((fixed_bits & 0xffffffffffffff) ==
          (permafrost::detail::match_tags_portable(fixed, tag) & 0xffffffffffffff));
    for (std::size_t i = 0; i < 28; ++i) CHECK(((sized_bits >> i) & 1) == (sized.slots[i] == tag));
    std::size_t sum = 0;
    for (std::size_t j = 0; j <= 28; ++j) {
      CHECK(permafrost::detail::size_prefix(sized, j) == sum);
      if (j < 28) sum += sized.sizes()[j];
    }
  }
}

TEST_CASE("hash_map: insert after finish throws and finish is idempotent") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  b.insert("x", 1);
  const auto& m = b.finish();
  CHECK(&b.finish() == &m);
  CHECK_THROWS_AS(b.insert("y", 2), std::logic_error);
  CHECK(m.size() == 1);
}

TEST_CASE("builders: reserve() before and between inserts keeps every key and catches duplicates") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  b.reserve(1000, 8000);
  for (int i = 0; i < 600; ++i) CHECK(b.insert(key_of(i), i));
  b.reserve(5000);  // re-indexes the 600 keys already there
  b.reserve(10);    // never shrinks
  for (int i = 0; i < 600; ++i) CHECK_FALSE(b.insert(key_of(i), -1));
  for (int i = 600; i < 3000; ++i) CHECK(b.insert(key_of(i), i));  // past the first reservation
  permafrost::hash_set_builder<std::uint64_t> s{a};
  s.reserve(100);
  for (std::uint64_t i = 0; i < 200; ++i) CHECK(s.insert(i));
  CHECK_FALSE(s.insert(42));
  // Every key's hash the same in its high 32 bits, which the duplicate index keeps in its slots:
  // keys are told apart by the rest of the hash and the key.
  permafrost::hash_map_builder<std::uint64_t, int, one_home_hash> crowded{a};
  crowded.reserve(300);
  for (std::uint64_t i = 0; i < 300; ++i) CHECK(crowded.insert(i, 1));
  for (std::uint64_t i = 0; i < 300; i += 7) CHECK_FALSE(crowded.insert(i, 2));
  CHECK(crowded.finish().size() == 300);
  const auto& m = b.finish();
  REQUIRE(m.size() == 3000);
  for (int i = 0; i < 3000; ++i) CHECK(m.at(key_of(i)) == i);
  CHECK(s.finish().size() == 200);
  CHECK_THROWS_AS(b.reserve(1), std::logic_error);
}

TEST_CASE("builders: reserve() past what memory holds throws length_error naming reserve()") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a};
  CHECK(b.insert("k", 1));
  try {
    b.reserve(10, SIZE_MAX);
    FAIL("reserve(10, SIZE_MAX) returned");
  } catch (const std::length_error& e) {
    CHECK(std::string(e.what()).find("reserve()") != std::string::npos);
  }
  CHECK_THROWS_AS(b.reserve(SIZE_MAX), std::length_error);
  CHECK(b.insert("l", 2));  // the builder is unchanged
  CHECK(b.finish().size() == 2);
}

// ----- the duplicate policy --------------------------------------------------------------------

TEST_CASE("duplicate policy reject: insert returns false and the first value stays") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a, duplicate_policy::reject};
  CHECK(b.insert("k", 1));
  CHECK_FALSE(b.insert("k", 2));
  CHECK(b.size() == 1);
  permafrost::sorted_map_builder<pstring, int> s{a, duplicate_policy::reject};
  CHECK(s.insert("k", 1));
  CHECK_FALSE(s.insert(std::string("k"), 2));
  CHECK(b.finish().at("k") == 1);
  CHECK(s.finish().at("k") == 1);
  CHECK(s.finish().size() == 1);
}

TEST_CASE("duplicate policy last_wins: insert returns false and the last value wins") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, int> b{a, duplicate_policy::last_wins};
  CHECK(b.insert("k", 1));
  CHECK(b.insert("j", 5));
  CHECK_FALSE(b.insert("k", 2));
  CHECK_FALSE(b.insert("k", 3));
  permafrost::sorted_map_builder<std::uint32_t, int> s{a, duplicate_policy::last_wins};
  s.insert(7u, 1);
  s.insert(7u, 9);
  const auto& m = b.finish();
  CHECK(m.size() == 2);
  CHECK(m.at("k") == 3);
  CHECK(m.at("j") == 5);
  CHECK(s.finish().size() == 1);
  CHECK(s.finish().at(7) == 9);
}

TEST_CASE("duplicate policy: a rejected string value is not copied into the arena") {
  arena a(opts());
  permafrost::hash_map_builder<pstring, pstring> b{a};
  b.insert("k", std::string(1 << 20, 'v'));
  const std::size_t used = a.stats().used;
  CHECK_FALSE(b.insert("k", std::string(1 << 20, 'w')));
  CHECK(a.stats().used == used);
}

// ----- hash_set ----------------------------------------------------------------------------

TEST_CASE("hash_set: empty, one key, 1M keys") {
  arena a(opts());
  {
    permafrost::hash_set_builder<pstring> b{a};
    const auto& s = b.finish();
    CHECK(s.empty());
    CHECK_FALSE(s.contains("a"));
  }
  {
    permafrost::hash_set_builder<pstring> b{a};
    CHECK(b.insert("a"));
    CHECK_FALSE(b.insert("a"));
    const auto& s = b.finish();
    CHECK(s.size() == 1);
    CHECK(s.contains("a"));
    CHECK(s.find("a")->key() == "a");
    CHECK_FALSE(s.contains("b"));
  }
  const auto k = keys(million);
  permafrost::hash_set_builder<pstring> b{a};
  for (const auto& key : k) b.insert(key);
  const auto& s = b.finish();
  CHECK(s.size() == million);
  std::size_t missing = 0, extra = 0;
  for (const auto& key : k) missing += !s.contains(key);
  for (std::size_t i = 0; i < 100'000; ++i) extra += s.contains(key_of(i) + "!");
  CHECK(missing == 0);
  CHECK(extra == 0);
  std::size_t n = 0;
  for (const auto& e : s) n += e.key().size() > 0;
  CHECK(n == million);
}

TEST_CASE("hash_set: integer keys") {
  arena a(opts());
  permafrost::hash_set_builder<std::int32_t> b{a};
  for (int i = -500; i < 500; i += 2) b.insert(i);
  const auto& s = b.finish();
  CHECK(s.size() == 500);
  CHECK(s.contains(-500));
  CHECK_FALSE(s.contains(-499));
}

// ----- sorted_map --------------------------------------------------------------------------

TEST_CASE("sorted_map: empty") {
  arena a(opts());
  permafrost::sorted_map_builder<pstring, int> b{a};
  const auto& m = b.finish();
  CHECK(m.empty());
  CHECK(m.begin() == m.end());
  CHECK(m.lower_bound("a") == m.end());
  CHECK(m.find("a") == m.end());
  CHECK_THROWS_AS(m.at("a"), std::out_of_range);
}

TEST_CASE("sorted_map: one entry; bounds on either side") {
  arena a(opts());
  permafrost::sorted_map_builder<pstring, int> b{a};
  b.insert("m", 1);
  const auto& m = b.finish();
  CHECK(m.lower_bound("a") == m.begin());
  CHECK(m.lower_bound("m") == m.begin());
  CHECK(m.upper_bound("m") == m.end());
  CHECK(m.lower_bound("z") == m.end());
  auto [lo, hi] = m.equal_range("m");
  CHECK(hi - lo == 1);
  CHECK(lo->value() == 1);
  CHECK(m.equal_range("n").first == m.equal_range("n").second);
}

TEST_CASE("sorted_map: 1M keys iterate in order; lower_bound, upper_bound, equal_range agree with "
          "std::map") {
  arena a(opts());
  const auto k = keys(million);
  permafrost::sorted_map_builder<pstring, std::uint32_t> b{a};
  for (std::size_t i = 0; i < k.size(); ++i) b.insert(k[i], static_cast<std::uint32_t>(i));
  const auto& m = b.finish();
  a.freeze();
  REQUIRE(m.size() == million);
  std::vector<std::string> sorted = k;
  std::sort(sorted.begin(), sorted.end());
  std::size_t i = 0, out_of_order = 0;
  for (const auto& e : m) out_of_order += e.key() != sorted[i++];
  CHECK(out_of_order == 0);
  std::size_t wrong = 0;
  for (std::size_t j = 0; j < k.size(); j += 7) wrong += m.at(k[j]) != j;
  CHECK(wrong == 0);
  // Probes between keys: compare with std::lower_bound over the sorted vector.
  std::size_t bound_errors = 0;
  for (std::size_t j = 0; j < 20'000; ++j) {
    const std::string probe = key_of(j * 31) + "~";
    const auto lb = m.lower_bound(probe) - m.begin();
    const auto ub = m.upper_bound(probe) - m.begin();
    const auto want = std::lower_bound(sorted.begin(), sorted.end(), probe) - sorted.begin();
    bound_errors += lb != want || ub != want || m.contains(probe);
    const auto [lo, hi] = m.equal_range(sorted[j * 3]);
    bound_errors += (hi - lo) != 1 || lo->key() != sorted[j * 3];
  }
  CHECK(bound_errors == 0);
}

TEST_CASE("sorted_map: integer keys with a custom order") {
  arena a(opts());
  permafrost::sorted_map_builder<std::int64_t, int, std::greater<>> b{a};
  for (int i = 0; i < 100; ++i) b.insert(i, i * 10);
  const auto& m = b.finish();
  CHECK(m.begin()->key() == 99);
  CHECK((m.end() - 1)->key() == 0);
  CHECK(m.lower_bound(50)->key() == 50);
  CHECK(m.upper_bound(50)->key() == 49);
}

TEST_CASE("sorted_map and hash_set: keys with embedded NULs and 64 KiB keys keep their order and "
          "identity") {
  arena a(opts());
  const std::string big(64 << 10, 'z');
  const std::vector<std::string> ks = {std::string("a\0", 2),
                                       std::string("a", 1),
                                       std::string("a\0\0", 3),
                                       std::string("\0", 1),
                                       big,
                                       big + std::string("\0", 1),
                                       ""};
  permafrost::sorted_map_builder<pstring, int> sb{a};
  permafrost::hash_set_builder<pstring> hb{a};
  for (std::size_t i = 0; i < ks.size(); ++i) {
    CHECK(sb.insert(ks[i], static_cast<int>(i)));
    CHECK(hb.insert(ks[i]));
  }
  const auto& m = sb.finish();
  const auto& s = hb.finish();
  std::vector<std::string> sorted = ks;
  std::sort(sorted.begin(), sorted.end());
  std::size_t i = 0;
  for (const auto& e : m) CHECK(e.key() == sorted[i++]);
  for (std::size_t j = 0; j < ks.size(); ++j) {
    CHECK(m.at(ks[j]) == static_cast<int>(j));
    CHECK(s.contains(ks[j]));
  }
  CHECK_FALSE(s.contains(std::string("\0\0", 2)));
  CHECK_FALSE(m.contains(big.substr(1)));
}

// ----- frozen JSON -------------------------------------------------------------------------

TEST_CASE("copy_json: every JSON type converts; lookups and type errors behave") {
  arena a(opts());
  const auto doc = nlohmann::json::parse(R"({"s": "text", "i": -5, "u": 18446744073709551615,
      "d": 2.5, "b": true, "n": null, "a": [1, "two", [3]], "o": {"k": "text"}})");
  permafrost::intern_pool pool{a};
  const permafrost::frozen_json& j = permafrost::copy_json(a, doc, &pool);
  a.freeze();
  CHECK(a.contains(&j));
  CHECK(j.is_object());
  CHECK(j.size() == 8);
  CHECK(j["s"].as_string() == "text");
  CHECK(j["i"].as_int() == -5);
  CHECK(j["u"].type() == permafrost::frozen_json::kind::unsigned_integer);
  CHECK(j["d"].as_double() == 2.5);
  CHECK(j["b"].as_bool());
  CHECK(j["n"].is_null());
  CHECK(j["a"].size() == 3);
  CHECK(j["a"][1].as_string() == "two");
  CHECK(j["a"][2][0].as_int() == 3);
  CHECK(j["o"]["k"].as_string() == "text");
  CHECK(j.find("missing") == nullptr);
  CHECK_THROWS_AS(j.at("missing"), std::out_of_range);
  CHECK_THROWS_AS(j["a"].at(3), std::out_of_range);
  CHECK_THROWS_AS(j["s"].as_int(), std::domain_error);
  CHECK_THROWS_AS(j["i"].as_string(), std::domain_error);
  // "text" appears twice: stored once.
  CHECK(j["s"].as_string().data() == j["o"]["k"].as_string().data());
  CHECK(pool.stats().bytes_saved == 4 + 4 + 1);
}

TEST_CASE("copy_json: a document with an escaped pointer is impossible, and the check passes") {
  arena a(opts("json-checked", true));
  const auto doc = nlohmann::json::parse(R"({"list": [{"x": 1}, {"y": ["z"]}], "name": "n"})");
  const permafrost::frozen_json& j = permafrost::copy_json(a, doc);
  CHECK(j.points_into(a));
  CHECK_NOTHROW(a.freeze());
  CHECK(j["list"][1]["y"][0].as_string() == "z");
}

// ----- intern_pool -------------------------------------------------------------------------

TEST_CASE("intern_pool: a repeated string is stored once and the saving is reported") {
  arena a(opts());
  permafrost::intern_pool pool{a};
  const std::string text(100, 'r');
  const pstring first = pool.intern(text);
  const std::size_t used = a.stats().used;
  for (int i = 0; i < 1000; ++i) {
    const pstring again = pool.intern(text);
    REQUIRE(again.data() == first.data());
  }
  const pstring other = pool.intern("other");
  CHECK(other.data() != first.data());
  CHECK(a.stats().used <= used + 64);  // only "other" was added
  const auto s = pool.stats();
  CHECK(s.requests == 1002);
  CHECK(s.unique == 2);
  CHECK(s.bytes_saved == 1000 * (4 + 100 + 1));
  CHECK(s.bytes_stored == (4 + 100 + 1) + (4 + 5 + 1));
}

// ----- freeze checks -----------------------------------------------------------------------

TEST_CASE("freeze check: a map whose values stay inside the arena freezes") {
  arena a(opts("checked", true));
  REQUIRE(a.freeze_checks_enabled());
  permafrost::hash_map_builder<pstring, pstring> b{a};
  b.insert("k", "v");
  permafrost::sorted_map_builder<pstring, const int*> s{a};
  s.insert("p", a.make<int>(5));
  s.insert("null", static_cast<const int*>(nullptr));
  b.finish();
  s.finish();
  CHECK_NOTHROW(a.freeze());
  CHECK(a.frozen());
}

TEST_CASE("freeze check: a pointer that escaped into the heap stops freeze()") {
  arena a(opts("checked", true));
  auto heap = std::make_unique<int>(7);
  permafrost::hash_map_builder<pstring, const int*> b{a};
  b.insert("fine", a.make<int>(1));
  b.insert("escaped", heap.get());
  b.finish();
  CHECK_THROWS_AS(a.freeze(), permafrost::freeze_check_error);
  CHECK_FALSE(a.frozen());
}

TEST_CASE("freeze check: a string from another arena is an escaped pointer") {
  arena a(opts("checked", true));
  arena other(opts("other"));
  permafrost::sorted_map_builder<std::uint32_t, pstring> b{a};
  b.insert(1u, permafrost::make_string(other, "elsewhere"));
  b.finish();
  try {
    a.freeze();
    FAIL("freeze() should have thrown");
  } catch (const permafrost::freeze_check_error& e) {
    CHECK(std::string(e.what()).find("sorted_map") != std::string::npos);
  }
  CHECK_FALSE(a.frozen());
}

TEST_CASE("freeze check: off, nothing is checked") {
  arena a(opts("unchecked", false));
  auto heap = std::make_unique<int>(7);
  permafrost::hash_map_builder<pstring, const int*> b{a};
  b.insert("escaped", heap.get());
  b.finish();
  CHECK_NOTHROW(a.freeze());
}

// ----- after fork --------------------------------------------------------------------------

TEST_CASE("fork: 4 children reading 1M entries of every container copy 0 arena pages") {
  arena a(opts("shared"));
  const auto k = keys(million);
  permafrost::hash_map_builder<pstring, std::uint64_t> hb{a};
  permafrost::sorted_map_builder<pstring, std::uint64_t> sb{a};
  permafrost::hash_set_builder<pstring> setb{a};
  for (std::size_t i = 0; i < k.size(); ++i) {
    hb.insert(k[i], i);
    sb.insert(k[i], i);
    setb.insert(k[i]);
  }
  const auto& hm = hb.finish();
  const auto& sm = sb.finish();
  const auto& hs = setb.finish();
  a.freeze();
  const auto range = a.used_bytes();
  const auto results = permafrost::test::fork_and_compare(4, range, [&] {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < k.size(); ++i) {
      bad += hm.at(k[i]) != i;
      bad += sm.at(k[i]) != i;
      bad += !hs.contains(k[i]);
    }
    std::uint64_t sum = 0;
    for (const auto& e : sm) sum += e.value();  // in-order walk touches every entry
    return bad == 0 && sum == std::uint64_t{million} * (million - 1) / 2 ? 0 : 1;
  });
  for (const auto& r : results) {
    CHECK(r.exit_status == 0);
    CHECK(r.child_present > r.pages / 2);  // the children really read the tables
    CHECK(r.copied == 0);
  }
}

TEST_CASE("fork: a child that writes through const_cast dies of SIGSEGV") {
  arena a(opts("trap"));
  permafrost::hash_map_builder<pstring, std::uint64_t> b{a};
  b.insert("victim", 1);
  const auto& m = b.finish();
  a.freeze();
  const int status = permafrost::test::wait_status_of([&] {
    auto& v = const_cast<std::uint64_t&>(m.at("victim"));
    v = 2;
  });
  CHECK(killed_by(status, SIGSEGV));
  CHECK(m.at("victim") == 1);
}

// ----- position independence ---------------------------------------------------------------
//
// What a frozen image does to the data: the arena's bytes copied elsewhere and read there. The
// arena is destroyed first, so any absolute address left in the data would read an inaccessible
// range (SIGSEGV) instead of quietly reading the original.

namespace {

class relocated_copy {
 public:
  // Copies the used bytes of `a` to a fresh block and destroys `a`.
  explicit relocated_copy(std::unique_ptr<arena>& a)
      : size_(a->used_bytes().size()),
        old_base_(reinterpret_cast<std::uintptr_t>(a->used_bytes().data())),
        copy_(static_cast<std::byte*>(::operator new (size_ + 1, std::align_val_t{4096}))) {
    std::memcpy(copy_, a->used_bytes().data(), size_);
    a.reset();
  }
  ~relocated_copy() { ::operator delete (copy_, std::align_val_t{4096}); }
  relocated_copy(const relocated_copy&) = delete;
  relocated_copy& operator=(const relocated_copy&) = delete;

  // The object that was at `old` in the arena, in the copy.
  template <class T>
  const T& at(const T* old) const {
    return *reinterpret_cast<const T*>(copy_ + (reinterpret_cast<std::uintptr_t>(old) - old_base_));
  }
  std::span<const std::byte> bytes() const { return {copy_, size_}; }

  // Offsets of the aligned words of the copy whose value is an address in the old arena's range.
  // (Data can look like one: two adjacent 32-bit offsets whose upper one equals the upper half of
  // the arena's base. For big tables, compare two builds with absolute_addresses().)
  std::vector<std::size_t> words_holding_old_addresses() const {
    std::vector<std::size_t> offsets;
    for (std::size_t off = 0; off + 8 <= size_; off += 8)
      if (const std::uint64_t w = word_at(off); w >= old_base_ && w < old_base_ + size_)
        offsets.push_back(off);
    return offsets;
  }

  // Words holding an address in both copies of the same data built in two arenas: at the same
  // offset, each pointing at the same offset of its own old arena. A real absolute address does
  // that; data that happens to look like an address in one arena does not in the other, whose
  // base differs.
  friend std::size_t absolute_addresses(const relocated_copy& x, const relocated_copy& y) {
    std::size_t n = 0;
    if (x.size_ != y.size_) return ~std::size_t{0};  // not the same data
    for (const std::size_t off : x.words_holding_old_addresses())
      n += y.word_at(off) - y.old_base_ == x.word_at(off) - x.old_base_;
    return n;
  }

 private:
  std::uint64_t word_at(std::size_t off) const {
    std::uint64_t w;
    std::memcpy(&w, copy_ + off, 8);
    return w;
  }

  std::size_t size_;
  std::uintptr_t old_base_;
  std::byte* copy_;
};

struct keyed_record {
  std::uint64_t id;
  pstring name;
  permafrost::array<pstring> tags;
};

}  // namespace

namespace {

// The four tables the next test reads from a copy.
struct four_tables {
  const permafrost::hash_map<pstring, pstring>* hm;
  const permafrost::hash_set<pstring>* hs;
  const permafrost::sorted_map<pstring, std::uint64_t>* om;
  const permafrost::hash_map<std::uint64_t, pstring>* im;
};

four_tables build_four_tables(arena& a, const std::vector<std::string>& ks) {
  permafrost::hash_map_builder<pstring, pstring> hb{a};
  permafrost::hash_set_builder<pstring> sb{a};
  permafrost::sorted_map_builder<pstring, std::uint64_t> ob{a};
  permafrost::hash_map_builder<std::uint64_t, pstring> ib{a};
  for (std::size_t i = 0; i < ks.size(); ++i) {
    hb.insert(ks[i], "value of " + ks[i]);
    sb.insert(ks[i]);
    ob.insert(ks[i], i);
    ib.insert(i, ks[i]);
  }
  four_tables t{&hb.finish(), &sb.finish(), &ob.finish(), &ib.finish()};
  a.freeze();
  return t;
}

}  // namespace

TEST_CASE("position independence: hash_map, hash_set and sorted_map read right from a copy at "
          "another address") {
  const auto ks = keys(20'000);
  auto a = std::make_unique<arena>(opts("relocate-maps"));
  const four_tables t = build_four_tables(*a, ks);
  const relocated_copy first(a);
  // The same tables built at another address: an absolute address would show in both copies.
  auto again = std::make_unique<arena>(opts("relocate-maps-again"));
  (void)build_four_tables(*again, ks);
  const relocated_copy second(again);
  CHECK(absolute_addresses(first, second) == 0);
  const auto& m = first.at(t.hm);
  const auto& s = first.at(t.hs);
  const auto& o = first.at(t.om);
  const auto& byid = first.at(t.im);
  REQUIRE(m.size() == ks.size());
  for (std::size_t i = 0; i < ks.size(); ++i) {
    REQUIRE(m.at(ks[i]) == "value of " + ks[i]);
    REQUIRE(s.contains(ks[i]));
    REQUIRE(o.at(ks[i]) == i);
    REQUIRE(byid.at(i) == ks[i]);
  }
  CHECK_FALSE(m.contains("absent"));
  CHECK_FALSE(s.contains("absent"));
  std::vector<std::string> sorted = ks;
  std::sort(sorted.begin(), sorted.end());
  std::size_t i = 0;
  for (const auto& e : o) REQUIRE(e.key() == sorted[i++]);
  CHECK(o.lower_bound(sorted[7])->key() == sorted[7]);
  std::size_t walked = 0;
  for (const auto& e : m) walked += e.value().view() == "value of " + std::string(e.key());
  CHECK(walked == ks.size());
}

TEST_CASE("position independence: two copies at different addresses give the same answers") {
  auto a = std::make_unique<arena>(opts("relocate-twice"));
  permafrost::intern_pool pool{*a};
  permafrost::hash_map_builder<pstring, keyed_record> b{*a};
  std::vector<pstring> tags{pool.intern("red"), pool.intern("green"), pool.intern("red")};
  for (std::uint64_t i = 0; i < 1000; ++i)
    b.insert(key_of(i), keyed_record{i, pool.intern("name-" + std::to_string(i % 10)),
                                     permafrost::copy_array(*a, std::span<const pstring>(tags))});
  const auto* root = &b.finish();
  a->freeze();
  const relocated_copy one(a);
  std::vector<std::byte> second_bytes(one.bytes().begin(), one.bytes().end());
  const auto& m1 = one.at(root);
  // A second image of the same bytes, at a third address.
  const auto* m2 = reinterpret_cast<const std::remove_cvref_t<decltype(m1)>*>(
      second_bytes.data() + (reinterpret_cast<const std::byte*>(&m1) - one.bytes().data()));
  REQUIRE(static_cast<const void*>(m2) != static_cast<const void*>(&m1));
  for (std::uint64_t i = 0; i < 1000; ++i) {
    const keyed_record& r1 = m1.at(key_of(i));
    const keyed_record& r2 = m2->at(key_of(i));
    REQUIRE(r1.id == i);
    REQUIRE(r2.id == i);
    REQUIRE(r1.name == "name-" + std::to_string(i % 10));
    REQUIRE(r2.name == r1.name.view());
    REQUIRE(r1.tags.size() == 3);
    REQUIRE(r2.tags[1] == "green");
    REQUIRE(r1.tags[0].data() == r1.tags[2].data());  // interned: one copy
    REQUIRE(r2.tags[0].data() == r2.tags[2].data());
  }
}

TEST_CASE(
    "position independence: a copy_json document reads right from a copy at another address") {
  auto a = std::make_unique<arena>(opts("relocate-json"));
  const auto doc = nlohmann::json::parse(R"({"s": "text", "a": [1, "two", [3, {"deep": "yes"}], []],
      "o": {"k": "text", "n": null}, "e": {}})");
  const permafrost::frozen_json* root = &permafrost::copy_json(*a, doc);
  a->freeze();
  const relocated_copy copy(a);
  CHECK(copy.words_holding_old_addresses().empty());
  const permafrost::frozen_json& j = copy.at(root);
  CHECK(j["s"].as_string() == "text");
  CHECK(j["a"][1].as_string() == "two");
  CHECK(j["a"][2][1]["deep"].as_string() == "yes");
  CHECK(j["a"][3].size() == 0);
  CHECK(j["o"]["n"].is_null());
  CHECK(j["e"].size() == 0);
  // A frozen_json copied out of the document still refers to the same data.
  const permafrost::frozen_json inner = j["a"][2];
  CHECK(inner[0].as_int() == 3);
}

TEST_CASE("offset_ptr: null, dereference, self, and a copy at another address re-bases") {
  permafrost::offset_ptr<int> null;
  CHECK_FALSE(null);
  CHECK(null.get() == nullptr);
  CHECK(null == nullptr);
  int values[2] = {7, 8};
  permafrost::offset_ptr<int> p(&values[1]);
  CHECK(*p == 8);
  CHECK(p.get() == &values[1]);
  // Copies at other addresses point at the same int, with other offsets.
  auto copy = std::make_unique<permafrost::offset_ptr<int>>(p);
  CHECK(copy->get() == &values[1]);
  CHECK(copy->offset() != p.offset());
  permafrost::offset_ptr<int> assigned;
  assigned = *copy;
  CHECK(assigned == p);
  assigned = nullptr;
  CHECK_FALSE(assigned);
  // A pointer to itself (offset 0) is not null.
  struct node {
    permafrost::offset_ptr<node> next;
  } n;
  n.next = &n;
  CHECK(n.next.get() == &n);
  CHECK(n.next.offset() == 0);
  static_assert(std::is_trivially_destructible_v<permafrost::offset_ptr<int>>);
  static_assert(permafrost::frozen_storable_v<node>);
}

TEST_CASE("offset_ptr: a user struct in a map works from a copy at another address") {
  struct record {
    std::uint64_t id;
    permafrost::offset_ptr<const record> parent;
  };
  auto a = std::make_unique<arena>(opts("relocate-offset-ptr"));
  auto records = a->make_array<record>(100);
  for (std::size_t i = 0; i < records.size(); ++i) {
    records[i].id = i;
    records[i].parent = i == 0 ? nullptr : &records[i - 1];
  }
  permafrost::hash_map_builder<std::uint64_t, permafrost::offset_ptr<const record>> b{*a};
  for (std::size_t i = 0; i < records.size(); ++i) b.insert(i, &records[i]);
  const auto* root = &b.finish();
  CHECK(permafrost::check_position_independent(*a, *root).empty());
  a->freeze();
  const relocated_copy copy(a);
  CHECK(copy.words_holding_old_addresses().empty());
  const auto& m = copy.at(root);
  const record* r = m.at(57).get();
  REQUIRE(r != nullptr);
  CHECK(r->id == 57);
  CHECK(r->parent->id == 56);
  CHECK(r->parent->parent->id == 55);
  CHECK_FALSE(m.at(0)->parent);
}

TEST_CASE("freeze check: an offset_ptr to the heap stops freeze()") {
  arena a(opts("offset-ptr-checked", true));
  static int outside = 1;
  permafrost::hash_map_builder<std::uint64_t, permafrost::offset_ptr<const int>> b{a};
  b.insert(1, a.make<int>(2));
  b.insert(2, &outside);
  const auto& m = b.finish();
  CHECK_FALSE(m.check(a).empty());
  CHECK_THROWS_AS(a.freeze(), permafrost::freeze_check_error);
}

TEST_CASE(
    "check_position_independent: a raw pointer into the arena is refused, naming its offset") {
  arena a(opts());
  const int* target = a.make<int>(5);
  permafrost::hash_map_builder<pstring, const int*> b{a};
  b.insert("p", target);
  const auto& m = b.finish();
  // The freeze check is content: the pointer points into the arena.
  CHECK(m.check(a).empty());
  const std::string why = permafrost::check_position_independent(a, m);
  const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(&m.find("p")->value()) -
                                reinterpret_cast<std::uintptr_t>(a.used_bytes().data());
  CHECK(why.find("raw pointer at arena offset " + std::to_string(offset)) != std::string::npos);
  CHECK(why.find("offset_ptr") != std::string::npos);
  // A null raw pointer holds no address and passes; so do offset-based containers.
  permafrost::hash_map_builder<pstring, const int*> nb{a};
  nb.insert("null", nullptr);
  CHECK(permafrost::check_position_independent(a, nb.finish()).empty());
  permafrost::sorted_map_builder<pstring, permafrost::array<pstring>> sb{a};
  const pstring s = permafrost::make_string(a, "x");
  sb.insert("k", permafrost::copy_array(a, {s, s}));
  CHECK(permafrost::check_position_independent(a, sb.finish()).empty());
  // A root outside the arena is refused; the mode ends with the check.
  const int outside = 3;
  CHECK_FALSE(permafrost::check_position_independent(a, outside).empty());
  CHECK(permafrost::points_into(target, a));
}

TEST_CASE("check_position_independent: a user type's hook sees raw pointers among its members") {
  struct node {
    const node* raw = nullptr;
    permafrost::offset_ptr<const node> rel;
    bool points_into(const arena& a) const {
      return permafrost::points_into(raw, a) && permafrost::points_into(rel, a);
    }
  };
  arena a(opts());
  auto nodes = a.make_array<node>(3);
  nodes[1].rel = &nodes[0];
  CHECK(permafrost::check_position_independent(a, nodes[1]).empty());
  nodes[2].raw = &nodes[0];
  const std::string why = permafrost::check_position_independent(a, nodes[2]);
  const std::uintptr_t offset = reinterpret_cast<std::uintptr_t>(&nodes[2].raw) -
                                reinterpret_cast<std::uintptr_t>(a.used_bytes().data());
  CHECK(why.find("arena offset " + std::to_string(offset)) != std::string::npos);
}

// ----- frozen JSON: depth and numbers ------------------------------------------------------

TEST_CASE("copy_json: 100,000 nested arrays and objects convert and check without recursion") {
  constexpr int depth = 100'000;
  std::string text;
  for (int i = 0; i < depth; ++i) text += i % 2 == 0 ? "[" : "{\"k\":";
  text += "\"leaf\"";
  for (int i = depth - 1; i >= 0; --i) text += i % 2 == 0 ? "]" : "}";
  const auto doc = nlohmann::json::parse(text);
  arena a(opts("json-deep", true));
  const permafrost::frozen_json& j = permafrost::copy_json(a, doc);
  CHECK(j.points_into(a));
  CHECK_NOTHROW(a.freeze());
  const permafrost::frozen_json* v = &j;
  for (int i = 0; i < depth; ++i) v = i % 2 == 0 ? &(*v)[0] : &(*v)["k"];
  CHECK(v->as_string() == "leaf");
}

TEST_CASE("frozen_json: as_int and as_uint throw out_of_range for numbers they cannot hold") {
  arena a(opts());
  const auto doc = nlohmann::json::parse(
      R"({"big": 1e300, "neg": -1e300, "edge": 9223372036854775808.0, "low": -9223372036854775808.0,
          "u": 18446744073709551615, "m": -1, "f": -0.5, "two64": 18446744073709551616.0, "x": 42.9})");
  const permafrost::frozen_json& j = permafrost::copy_json(a, doc);
  CHECK_THROWS_AS(j["big"].as_int(), std::out_of_range);
  CHECK_THROWS_AS(j["neg"].as_int(), std::out_of_range);
  CHECK_THROWS_AS(j["edge"].as_int(), std::out_of_range);  // 2^63
  CHECK(j["low"].as_int() == std::numeric_limits<std::int64_t>::min());
  CHECK_THROWS_AS(j["u"].as_int(), std::out_of_range);
  CHECK(j["u"].as_uint() == std::numeric_limits<std::uint64_t>::max());
  CHECK_THROWS_AS(j["m"].as_uint(), std::out_of_range);
  CHECK(j["m"].as_int() == -1);
  CHECK(j["f"].as_uint() == 0);
  CHECK(j["edge"].as_uint() == (std::uint64_t{1} << 63));
  CHECK_THROWS_AS(j["two64"].as_uint(), std::out_of_range);
  CHECK_THROWS_AS(j["big"].as_uint(), std::out_of_range);
  CHECK(j["x"].as_int() == 42);
  CHECK(j["x"].as_uint() == 42);
  const auto nan = nlohmann::json(std::numeric_limits<double>::quiet_NaN());
  permafrost::intern_pool pool{a};
  const permafrost::frozen_json n = permafrost::copy_json_value(a, pool, nan);
  CHECK_THROWS_AS(n.as_int(), std::out_of_range);
  CHECK_THROWS_AS(n.as_uint(), std::out_of_range);
  CHECK_THROWS_AS(j["m"].as_bool(), std::domain_error);
  CHECK_THROWS_AS(j.as_uint(), std::domain_error);
}

TEST_CASE("intern_pool: a request that throws is not counted") {
  arena a(opts());
  permafrost::intern_pool pool{a};
  (void)pool.intern("kept");
  a.freeze();
  CHECK_THROWS_AS(pool.intern("new after freeze"), permafrost::frozen_error);
  const auto s = pool.stats();
  CHECK(s.requests == 1);
  CHECK(s.unique == 1);
  CHECK(s.bytes_stored == 4 + 4 + 1);
  CHECK(pool.intern("kept") == "kept");  // a repeat needs no arena byte
  CHECK(pool.stats().requests == 2);
}

// ----- freeze check default ----------------------------------------------------------------

namespace permafrost::test {
bool freeze_checks_default_ndebug();
bool freeze_checks_default_debug();
}  // namespace permafrost::test

TEST_CASE(
    "freeze check: the default is the library's, the same with and without the consumer's NDEBUG") {
  CHECK_FALSE(arena_options{}.freeze_checks.has_value());
  CHECK(permafrost::test::freeze_checks_default_ndebug() ==
        permafrost::test::freeze_checks_default_debug());
  arena on(opts("checks-on", true));
  CHECK(on.freeze_checks_enabled());
  arena off(opts("checks-off", false));
  CHECK_FALSE(off.freeze_checks_enabled());
}
