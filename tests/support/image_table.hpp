// Test support: a small position-independent table for image tests, shared by test_image and the
// exec'd image_child. Every reference is an offset from the root object, so the table reads the
// same at any address. Keys "key-<i>" map to records {i, 3i, 7i}.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <permafrost/arena.hpp>
#include <permafrost/hash_map.hpp>
#include <permafrost/image.hpp>

namespace permafrost::test {

struct image_record {
  std::uint64_t id = 0;
  std::uint32_t a = 0;
  std::uint32_t b = 0;
};

struct image_slot {
  std::uint64_t hash = 0;        // 0 = empty
  std::uint32_t key_offset = 0;  // into the key characters
  std::uint32_t key_size = 0;
  image_record value;
};

struct image_table {
  std::uint64_t capacity = 0;  // a power of two
  std::uint64_t count = 0;
  std::int64_t slots_rel = 0;  // slot array, from this object's address
  std::int64_t chars_rel = 0;  // key characters, from this object's address

  const image_slot* slots() const {
    return reinterpret_cast<const image_slot*>(reinterpret_cast<const char*>(this) + slots_rel);
  }
  const char* chars() const { return reinterpret_cast<const char*>(this) + chars_rel; }

  const image_record* find(std::string_view key) const {
    const std::uint64_t h = hash_of(key);
    for (std::uint64_t i = h & (capacity - 1);; i = (i + 1) & (capacity - 1)) {
      const image_slot& s = slots()[i];
      if (s.hash == 0) return nullptr;
      if (s.hash == h && s.key_size == key.size() &&
          std::memcmp(chars() + s.key_offset, key.data(), key.size()) == 0)
        return &s.value;
    }
  }

  static std::uint64_t hash_of(std::string_view key) {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
    return h | 1;  // never 0 (the empty mark)
  }
};

inline std::string image_key(std::uint64_t i) { return "key-" + std::to_string(i); }
inline image_record image_value(std::uint64_t i) {
  return {i, static_cast<std::uint32_t>(3 * i), static_cast<std::uint32_t>(7 * i)};
}

// Builds the table of n keys in `a` (not frozen by this function) and returns its root.
inline image_table* build_image_table(arena& a, std::uint64_t n) {
  std::uint64_t capacity = 16;
  while (capacity < n * 2) capacity *= 2;
  auto* root = a.make<image_table>();
  auto slots = a.make_array<image_slot>(capacity);
  std::size_t char_bytes = 0;
  for (std::uint64_t i = 0; i < n; ++i) char_bytes += image_key(i).size();
  auto chars = a.make_array<char>(char_bytes + 1);
  std::size_t used = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::string k = image_key(i);
    const std::uint64_t h = image_table::hash_of(k);
    std::uint64_t at = h & (capacity - 1);
    while (slots[at].hash != 0) at = (at + 1) & (capacity - 1);
    std::memcpy(chars.data() + used, k.data(), k.size());
    slots[at] = image_slot{h, static_cast<std::uint32_t>(used),
                           static_cast<std::uint32_t>(k.size()), image_value(i)};
    used += k.size();
  }
  root->capacity = capacity;
  root->count = n;
  root->slots_rel = reinterpret_cast<char*>(slots.data()) - reinterpret_cast<char*>(root);
  root->chars_rel = chars.data() - reinterpret_cast<char*>(root);
  return root;
}

// Looks every key up (and n misses); returns the number of wrong answers.
inline std::uint64_t check_image_table(const image_table& t, std::uint64_t n) {
  std::uint64_t wrong = t.count == n ? 0 : 1;
  for (std::uint64_t i = 0; i < n; ++i) {
    const image_record* r = t.find(image_key(i));
    const image_record want = image_value(i);
    if (r == nullptr || r->id != want.id || r->a != want.a || r->b != want.b) ++wrong;
    if (t.find("missing-" + std::to_string(i)) != nullptr) ++wrong;
  }
  return wrong;
}

// The same keys in the library's hash_map<string, string> (values "value-<i>"): a root whose
// references are the containers' own offsets.
using image_map = hash_map<string, string>;

inline const image_map& build_image_map(arena& a, std::uint64_t n) {
  hash_map_builder<string, string> b(a);
  for (std::uint64_t i = 0; i < n; ++i) b.insert(image_key(i), "value-" + std::to_string(i));
  return b.finish();
}

// Looks every key up (and n misses); returns the number of wrong answers.
inline std::uint64_t check_image_map(const image_map& m, std::uint64_t n) {
  std::uint64_t wrong = m.size() == n ? 0 : 1;
  for (std::uint64_t i = 0; i < n; ++i) {
    const string* v = m.get(image_key(i));
    if (v == nullptr || v->view() != "value-" + std::to_string(i)) ++wrong;
    if (m.contains("missing-" + std::to_string(i))) ++wrong;
  }
  return wrong;
}

}  // namespace permafrost::test

PERMAFROST_IMAGE_TYPE(permafrost::test::image_table, "permafrost.test.image_table.v1");
// Relative offsets held as integers: nothing for the position check to look inside.
PERMAFROST_POINTER_FREE(permafrost::test::image_table);
PERMAFROST_IMAGE_TYPE(permafrost::test::image_map, "permafrost.test.hash_map<string,string>.v1");
