// Fuzz target: the container builders with random keys. Each input builds a hash_map<string,
// u64> (twice: with the default hash, and with one that crowds keys into a few home lines with
// colliding tags, so lines overflow into their neighbours), a sorted_map<string, u64>, a
// hash_set<string> (crowded), a hash_set<u64> and an intern_pool from the same random keys (empty,
// repeated, with NULs, long enough that a key is escaped in its line's size bytes), under a random
// duplicate policy, and checks them against a std::map model: sizes, every present key found with
// the right value, absent keys not found, sorted order, the hash maps' walks (each entry once, as
// found), the containers' own check(), all still true after freeze() and in a copy
// of the arena's bytes at another address (what a frozen image is: offsets only, no relocation).
// Building after freeze must throw, never corrupt. Any violation aborts.
#include <permafrost/containers.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.hpp"

namespace {

// Homes from the first byte, tags from the length: a handful of home lines, each overflowing, and
// tags that collide (detail/hash_table.hpp).
struct crowding_hash {
  std::uint64_t operator()(std::string_view s) const noexcept {
    return (s.empty() ? 0 : std::uint64_t{static_cast<unsigned char>(s[0])} << 56) | s.size();
  }
};

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_containers: %s\n", what);
    std::abort();
  }
}

std::string next_key(permafrost::fuzz::input& in, const std::vector<std::string>& seen) {
  const std::uint8_t how = in.byte();
  if (how % 4 == 0 && !seen.empty()) return seen[in.byte() % seen.size()];  // a repeat
  std::size_t n = in.byte() % 24;
  if (how % 16 == 1) n = 1000 + in.u16() % 3000;  // long keys
  std::string k;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t b = in.byte();
    k.push_back(static_cast<char>(how % 8 == 2 ? b : 'a' + b % 4));  // raw bytes, NULs included
  }
  return k;
}

template <class Map>
void check_map(const Map& m, const std::map<std::string, std::uint64_t>& model,
               const std::vector<std::string>& absent) {
  require(m.size() == model.size(), "map size differs from the model");
  for (const auto& [k, v] : model) {
    const auto e = m.find(k);
    require(e != nullptr, "present key not found");
    require(e->value() == v, "wrong value");
    require(e->key() == k, "wrong key bytes");
  }
  for (const auto& k : absent) require(m.find(k) == nullptr, "absent key found");
}

// A hash map's walk yields every entry once, each the one find() gives.
template <class Map>
void check_walk(const Map& m, const std::map<std::string, std::uint64_t>& model) {
  std::size_t n = 0;
  for (const auto e : m) {
    const auto it = model.find(std::string(e.key()));
    require(it != model.end() && it->second == e.value(), "the walk yields a wrong entry");
    require(m.find(e.key()) == e, "a walked entry is not the one found");
    ++n;
  }
  require(n == model.size(), "the walk's count differs from the model");
}

template <class Set>
void check_string_set(const Set& s, const std::map<std::string, std::uint64_t>& model,
                      const std::vector<std::string>& absent) {
  require(s.size() == model.size(), "hash_set<string> size");
  for (const auto& [k, v] : model) require(s.find(k)->key() == k, "hash_set<string> lost a key");
  for (const auto& k : absent) require(!s.contains(k), "hash_set<string> found an absent key");
  std::size_t n = 0;
  for (const auto e : s) n += s.find(e.key()) == e;
  require(n == model.size(), "hash_set<string> walk");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  permafrost::fuzz::input in(data, size);
  const auto policy = (in.byte() & 1) != 0 ? permafrost::duplicate_policy::last_wins
                                           : permafrost::duplicate_policy::reject;
  permafrost::arena_options o;
  o.capacity = std::size_t{64} << 20;
  o.name = "fuzz-containers";
  o.huge_pages = false;
  permafrost::arena a(o);

  permafrost::hash_map_builder<permafrost::string, std::uint64_t> hb(a, policy);
  permafrost::hash_map_builder<permafrost::string, std::uint64_t, crowding_hash> cb(a, policy);
  permafrost::sorted_map_builder<permafrost::string, std::uint64_t> sb(a, policy);
  permafrost::hash_set_builder<std::uint64_t> setb(a, policy);
  permafrost::hash_set_builder<permafrost::string, crowding_hash> ssb(a, policy);
  permafrost::intern_pool pool(a);
  std::map<std::string, std::uint64_t> model;
  std::set<std::uint64_t> set_model;
  std::vector<std::string> keys;
  std::vector<permafrost::string> interned;

  for (int i = 0; i < 512 && !in.empty(); ++i) {
    std::string k = next_key(in, keys);
    const std::uint64_t v = in.u32();
    const bool fresh = model.find(k) == model.end();
    require(hb.insert(k, v) == fresh, "hash_map insert result");
    require(cb.insert(k, v) == fresh, "crowded hash_map insert result");
    require(sb.insert(k, v) == fresh, "sorted_map insert result");
    require(ssb.insert(k) == fresh, "hash_set<string> insert result");
    if (fresh || policy == permafrost::duplicate_policy::last_wins) model[k] = v;
    require(setb.insert(v) == set_model.insert(v).second, "hash_set insert result");
    interned.push_back(pool.intern(k));
    require(interned.back().view() == k, "interned copy differs");
    keys.push_back(std::move(k));
  }
  std::vector<std::string> absent;
  for (int i = 0; i < 16; ++i) {
    std::string k = next_key(in, {});
    if (model.find(k) == model.end()) absent.push_back(std::move(k));
  }

  const auto& hm = hb.finish();
  const auto& cm = cb.finish();
  const auto& sm = sb.finish();
  const auto& hs = setb.finish();
  const auto& ss = ssb.finish();
  require(&hb.finish() == &hm, "finish is not idempotent");
  check_map(hm, model, absent);
  check_map(cm, model, absent);
  check_map(sm, model, absent);
  check_walk(hm, model);
  check_walk(cm, model);
  check_string_set(ss, model, absent);
  auto it = model.begin();
  for (const auto& e : sm) {
    require(it != model.end() && e.key().view() == it->first, "sorted_map out of order");
    ++it;
  }
  require(hs.size() == set_model.size(), "hash_set size");
  for (auto v : set_model) require(hs.contains(v), "hash_set lost a key");
  require(hm.check(a).empty() && cm.check(a).empty() && sm.check(a).empty() &&
              hs.check(a).empty() && ss.check(a).empty(),
          "check() failed");

  a.freeze();
  check_map(hm, model, absent);
  check_map(cm, model, absent);
  check_map(sm, model, absent);
  for (std::size_t i = 0; i < interned.size(); ++i)
    require(interned[i].view() == keys[i], "interned string changed after freeze");
  require(permafrost::is_frozen(&hm) && permafrost::is_frozen(&sm), "maps not frozen");
  require(permafrost::check_position_independent(a, hm).empty() &&
              permafrost::check_position_independent(a, sm).empty() &&
              permafrost::check_position_independent(a, hs).empty(),
          "a container holds a raw pointer");

  // The same bytes at another address read the same.
  const auto used = a.used_bytes();
  const auto copy =
      std::make_unique<std::max_align_t[]>(used.size() / sizeof(std::max_align_t) + 1);
  std::memcpy(copy.get(), used.data(), used.size());
  const auto moved = [&](const auto* p) {
    const auto off = reinterpret_cast<const std::byte*>(p) - used.data();
    return reinterpret_cast<decltype(p)>(reinterpret_cast<const std::byte*>(copy.get()) + off);
  };
  check_map(*moved(&hm), model, absent);
  check_map(*moved(&cm), model, absent);
  check_map(*moved(&sm), model, absent);
  check_walk(*moved(&cm), model);
  check_string_set(*moved(&ss), model, absent);
  for (auto v : set_model) require(moved(&hs)->contains(v), "hash_set copy lost a key");

  // After freeze nothing more can be built: a clean error, never a write.
  permafrost::hash_map_builder<permafrost::string, std::uint64_t> late(a, policy);
  bool refused = false;
  try {
    late.insert("late", 1);
    (void)late.finish();
  } catch (const permafrost::frozen_error&) {
    refused = true;
  }
  require(refused, "a builder finished into a frozen arena");
  return 0;
}
