// permafrost — the entries of the frozen tables (map_entry, set_entry, entry_ref) and the
// builders' duplicate_policy.
//
// Contract: map_entry<K, V> is one entry of a sorted_map or of a hash_map with fixed-size keys,
// set_entry<K> one entry of a hash_set with fixed-size keys, as laid out in the arena:
// [value][key], a string key stored inline (4-byte length + bytes) so that a hit reads one or two
// adjacent cache lines. Such entries are only ever seen by reference (find() returns a pointer,
// iteration yields references); they cannot be copied or made by users. An entry holds no
// absolute address: a string key is inline, and offset-based values (permafrost::string, array,
// offset_ptr) are re-based when laid out.
//
// String-keyed hash_map and hash_set store a line's values apart from its keys (docs/design.md,
// section 3, "Layout"), so there is no one entry to point at: find() and iteration give an
// entry_ref, a small handle holding the key's bytes and the value's address.
//
// Thread safety: entries are read-only; any number of threads may read them at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "permafrost/frozen_storable.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

// What a builder does with a key it already holds; chosen when the builder is made.
enum class duplicate_policy {
  reject,     // insert() returns false and the first value stays (the default)
  last_wins,  // insert() returns false and the new value replaces the old one
};

namespace detail {

// The "value" of a set's entries.
struct no_value {};

template <class K>
inline constexpr bool is_string_key = std::is_same_v<std::remove_cv_t<K>, permafrost::string>;

// What lookups take: std::string_view for string keys (so std::string, const char* and
// permafrost::string all work), the key itself otherwise.
template <class K>
using key_view_t = std::conditional_t<is_string_key<K>, std::string_view, K>;

// How a key is stored in an entry: inline length + bytes for strings, the key otherwise.
template <class K>
using key_slot_t = std::conditional_t<is_string_key<K>, string_rep, K>;

// The one place that knows the entries' byte layout (frozen_table.hpp).
struct entry_access;

template <class K>
void check_key_type() {
  static_assert(is_string_key<K> || (std::is_trivially_copyable_v<K> && frozen_storable_v<K>),
                "frozen container keys are permafrost::string or trivially copyable types");
}

// The key as users see it: a string handle into the entry for string keys, a copy otherwise.
template <class K>
K key_of_slot(const key_slot_t<K>& slot) noexcept {
  if constexpr (is_string_key<K>) return string_access::make(&slot);
  else return slot;
}

}  // namespace detail

// One entry of a hash_map or sorted_map, as laid out in the arena.
template <class K, class V>
class map_entry {
 public:
  // The key: a permafrost::string handle into this entry for string keys, a copy otherwise.
  K key() const noexcept { return detail::key_of_slot<K>(key_); }
  const V& value() const noexcept { return value_; }

  map_entry(const map_entry&) = delete;
  map_entry& operator=(const map_entry&) = delete;

 private:
  friend struct detail::entry_access;
  map_entry(const V& v, const detail::key_slot_t<K>& k) : value_(v), key_(k) {}
  V value_;
  detail::key_slot_t<K> key_;  // for string keys, the bytes follow
};

// One entry of a hash_set, as laid out in the arena.
template <class K>
class set_entry {
 public:
  // The key: a permafrost::string handle into this entry for string keys, a copy otherwise.
  K key() const noexcept { return detail::key_of_slot<K>(key_); }

  set_entry(const set_entry&) = delete;
  set_entry& operator=(const set_entry&) = delete;

 private:
  friend struct detail::entry_access;
  explicit set_entry(const detail::key_slot_t<K>& k) : key_(k) {}
  detail::key_slot_t<K> key_;
};

// What find() and iteration give for a string-keyed hash_map<string, V> (and, with V =
// detail::no_value, hash_set<string>): a handle to one entry, whose key bytes and value lie apart
// in the table. It reads as the pointer it replaces: `if (auto e = m.find(k))`, `e->key()`,
// `e->value()`, `m.find(k) == m.end()` and `m.find(k) == nullptr` all hold. A null handle (an
// absent key) is false and equals nullptr and end(). The handle is valid as long as the table is.
//
// Thread safety: a handle is a value; the bytes it refers to are read-only.
template <class V>
class entry_ref {
 public:
  entry_ref() noexcept = default;

  // The key's bytes, in the table (not NUL-terminated).
  std::string_view key() const noexcept { return {key_, size_}; }
  // The value, in the table (maps only).
  const V& value() const noexcept requires(!std::is_same_v<V, detail::no_value>) { return *value_; }

  explicit operator bool() const noexcept { return key_ != nullptr; }
  const entry_ref* operator->() const noexcept { return this; }

  friend bool operator==(const entry_ref& e, std::nullptr_t) noexcept { return !e; }
  // The same entry of the same table (or both null).
  friend bool operator==(const entry_ref& a, const entry_ref& b) noexcept {
    return a.key_ == b.key_;
  }

 private:
  friend struct detail::entry_access;
  entry_ref(const V* value, std::string_view key) noexcept
      : key_(key.data()), size_(key.size()), value_(value) {}

  const char* key_ = nullptr;  // never null for a found entry, even an empty key
  std::size_t size_ = 0;
  const V* value_ = nullptr;
};

}  // namespace permafrost
