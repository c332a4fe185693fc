// permafrost — the machinery shared by the frozen hash and sorted containers (internal).
//
// Layout (see docs/design.md section 3): a table is one contiguous block of entries in an arena,
// each entry = [value][key], where a string key is stored inline (4-byte length + bytes), so a hit
// reads one or two adjacent cache lines. Entries are variable-sized for string keys; an index
// finds them:
//  - hash tables order entries by home line and keep 64-byte index lines of 8-bit hash tags,
//    entry sizes and a 32-bit offset per line (hash_table.hpp, hash_line.hpp);
//  - sorted tables keep entries in key order and one 32-bit offset (in units of the entry
//    alignment) per entry for binary search.
// Lookups read the index and the entries and write nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <numeric>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "permafrost/arena.hpp"
#include "permafrost/entry.hpp"
#include "permafrost/frozen_storable.hpp"
#include "permafrost/hash.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

namespace detail {

template <class E>
struct entry_traits;
template <class K, class V>
struct entry_traits<map_entry<K, V>> {
  using key_type = K;
  using mapped_type = V;
};
template <class K>
struct entry_traits<set_entry<K>> {
  using key_type = K;
  using mapped_type = no_value;
};

// Reads and lays out entries; the one place that knows their byte layout.
struct entry_access {
  template <class E>
  static constexpr std::size_t unit = alignof(E);

  template <class E>
  static constexpr std::size_t key_bytes_offset() {
    return offsetof(E, key_) + sizeof(string_rep);
  }

  // Bytes an entry with a key of key_len bytes takes, rounded to the entry alignment.
  template <class E>
  static std::size_t size_for(std::size_t key_len) noexcept {
    if constexpr (is_string_key<typename entry_traits<E>::key_type>) {
      const std::size_t raw = std::max(sizeof(E), key_bytes_offset<E>() + key_len);
      return (raw + unit<E> - 1) & ~(unit<E> - 1);
    } else {
      (void)key_len;
      return sizeof(E);
    }
  }

  template <class E>
  static std::size_t size_of(const E& e) noexcept {
    if constexpr (is_string_key<typename entry_traits<E>::key_type>)
      return size_for<E>(e.key_.size);
    else return sizeof(E);
  }

  // The stored key, by reference (so a freeze check names the field's own address).
  template <class E>
  static const auto& key_slot(const E& e) noexcept {
    return e.key_;
  }

  template <class E>
  static key_view_t<typename entry_traits<E>::key_type> view_of(const E& e) noexcept {
    if constexpr (is_string_key<typename entry_traits<E>::key_type>)
      return {e.key_.bytes(), e.key_.size};
    else return e.key_;
  }

  // Lays an entry out at p (size_for(key) bytes, suitably aligned).
  template <class E, class KV, class V>
  static void construct(void* p, const KV& key, const V& value) {
    using K = typename entry_traits<E>::key_type;
    key_slot_t<K> slot;
    if constexpr (is_string_key<K>) slot = string_rep{static_cast<std::uint32_t>(key.size())};
    else slot = key;
    if constexpr (std::is_same_v<V, no_value>) ::new (p) E(slot);
    else ::new (p) E(value, slot);
    if constexpr (is_string_key<K>) {
      if (!key.empty())
        std::memcpy(static_cast<char*>(p) + key_bytes_offset<E>(), key.data(), key.size());
    }
  }

  template <class E>
  static const E& at(const std::byte* p) noexcept {
    return *reinterpret_cast<const E*>(p);
  }

  // A handle to a string-keyed hash table's entry (split_table.hpp).
  template <class V>
  static entry_ref<V> make_ref(const V* value, std::string_view key) noexcept {
    return entry_ref<V>(value, key);
  }
};

template <class E>
bool key_equals(const E& e, key_view_t<typename entry_traits<E>::key_type> k) noexcept {
  return entry_access::view_of(e) == k;
}

// =============================================================================================
// Building: keys and values gathered in process memory, with duplicates caught on insert
// =============================================================================================

[[noreturn]] inline void throw_table_too_big() {
  throw std::length_error("permafrost: frozen table larger than 2^32 entry units");
}

template <class K, class V, class Hash>
class pending_table {
 public:
  using view = key_view_t<K>;
  struct string_ref {
    std::size_t off;
    std::size_t len;
  };
  using key_store = std::conditional_t<is_string_key<K>, string_ref, K>;
  struct item {
    std::uint64_t hash;
    key_store key;
    V value;
  };

  pending_table(arena& a, duplicate_policy policy) : arena_(&a), policy_(policy) {}
  pending_table(const pending_table&) = delete;  // the index points back at this object
  pending_table& operator=(const pending_table&) = delete;

  // Adds (k, v) for a map builder: v converted to V only when stored, and copied into the arena
  // when V is permafrost::string and v is any other string type. Returns true when k was new.
  template <class U>
  bool insert_value(view k, U&& v) {
    return insert(k, [&]() -> V {
      if constexpr (std::is_same_v<V, string> && !std::is_same_v<std::decay_t<U>, string>)
        return make_string(*arena_, std::string_view(v));
      else return V(std::forward<U>(v));
    });
  }

  // Adds k (its value made by make_value() only when stored). Returns true when k was new.
  template <class MakeValue>
  bool insert(view k, MakeValue&& make_value) {
    if (finished_) throw std::logic_error("permafrost builder: insert() after finish()");
    if constexpr (is_string_key<K>) {
      if (k.size() > max_string_size) throw_string_too_long();
    }
    const std::uint64_t h = Hash{}(k);
    const std::size_t bytes_before = bytes_.size();
    if constexpr (is_string_key<K>) {
      bytes_.append(k.data(), k.size());
      items_.push_back(item{h, string_ref{bytes_before, k.size()}, V{}});
    } else {
      items_.push_back(item{h, k, V{}});
    }
    std::uint64_t* slot = nullptr;
    try {
      slot = index_slot_for(items_.size() - 1);
    } catch (...) {
      items_.pop_back();
      bytes_.resize(bytes_before);
      throw;
    }
    if (*slot != empty_slot) {  // a duplicate of the item *slot names
      items_.pop_back();
      bytes_.resize(bytes_before);
      if (policy_ == duplicate_policy::last_wins) items_[item_of(*slot)].value = make_value();
      return false;
    }
    *slot = slot_of(items_.size() - 1);
    ++indexed_;
    try {
      items_.back().value = make_value();
    } catch (...) {
      // The newest entry of a linear-probing index: emptying its slot breaks no other probe.
      *slot = empty_slot;
      --indexed_;
      items_.pop_back();
      bytes_.resize(bytes_before);
      throw;
    }
    return true;
  }

  // Makes room for `entries` items in all (items and the duplicate index sized once, no
  // re-indexing up to there) and key_bytes bytes of keys in all. Never shrinks.
  void reserve(std::size_t entries, std::size_t key_bytes) {
    if (finished_) throw std::logic_error("permafrost builder: reserve() after finish()");
    if (entries >= no_item) throw_table_too_big();
    if (key_bytes > bytes_.max_size())  // said here, not by std::string's own "_M_create"
      throw std::length_error("permafrost builder: reserve(): more key bytes than memory holds");
    items_.reserve(entries);
    bytes_.reserve(key_bytes);
    unsigned bits = std::max(index_bits_, 4u);
    while ((std::size_t{1} << bits) < (entries + 1) * 2) ++bits;
    if (bits != index_bits_) reindex(bits);
  }

  view key_of(const item& it) const noexcept {
    if constexpr (is_string_key<K>) return view(bytes_.data() + it.key.off, it.key.len);
    else return it.key;
  }

  std::size_t size() const noexcept { return items_.size(); }
  const std::vector<item>& items() const noexcept { return items_; }
  arena& target() const noexcept { return *arena_; }
  duplicate_policy policy() const noexcept { return policy_; }
  bool finished() const noexcept { return finished_; }

  // Marks the builder finished and gives its process memory back.
  void release() {
    finished_ = true;
    std::vector<std::uint64_t>().swap(index_);
    indexed_ = 0;
    std::vector<item>().swap(items_);
    std::string().swap(bytes_);
  }

 private:
  // Duplicates are caught with an open-addressing index of item numbers (linear probing, at most
  // half full), not a node-based set: one allocation per doubling instead of one per key, which
  // keeps a build close to the cost of filling a std::unordered_map.
  // A slot holds an item number (< no_item) in its low 32 bits and the high 32 bits of that
  // item's hash above them, so a probe that meets another key's slot is refused by the slot
  // alone: without them each such slot cost a random read of the item (a DRAM miss at 10M).
  static constexpr std::uint32_t no_item = std::numeric_limits<std::uint32_t>::max();
  static constexpr std::uint64_t empty_slot = std::numeric_limits<std::uint64_t>::max();
  static constexpr std::uint64_t hash_bits_of_slot = ~std::uint64_t{no_item};

  static std::size_t item_of(std::uint64_t slot) noexcept { return slot & no_item; }
  std::uint64_t slot_of(std::size_t i) const noexcept {
    return (items_[i].hash & hash_bits_of_slot) | i;
  }

  std::size_t home_of(std::uint64_t h) const noexcept {
    // Fibonacci hashing: spreads a weak user Hash too.
    return static_cast<std::size_t>((h * 0x9E3779B97F4A7C15ull) >> (64 - index_bits_));
  }

  // The slot holding an item whose key equals item i's, or the empty slot where i belongs.
  std::uint64_t* find_slot(std::size_t i) noexcept {
    const item& it = items_[i];
    const std::uint64_t hash_bits = it.hash & hash_bits_of_slot;
    const std::size_t mask = index_.size() - 1;
    for (std::size_t pos = home_of(it.hash);; pos = (pos + 1) & mask) {
      std::uint64_t& s = index_[pos];
      if (s == empty_slot) return &s;
      if ((s & hash_bits_of_slot) != hash_bits) continue;
      const item& other = items_[item_of(s)];
      if (other.hash == it.hash && key_of(other) == key_of(it)) return &s;
    }
  }

  // find_slot(i), after growing the index if one more item would make it over half full.
  std::uint64_t* index_slot_for(std::size_t i) {
    if (i >= no_item) throw_table_too_big();
    if ((indexed_ + 1) * 2 > index_.size()) reindex(index_.empty() ? 4 : index_bits_ + 1);
    return find_slot(i);
  }

  // An index of 2^bits slots holding every indexed item (all items but a newest one not yet
  // indexed). Re-inserted in item order, so the newest item stays last in every probe sequence.
  void reindex(unsigned bits) {
    std::vector<std::uint64_t> grown(std::size_t{1} << bits, empty_slot);
    index_.swap(grown);
    index_bits_ = bits;
    for (std::size_t k = 0; k < indexed_; ++k) *find_slot(k) = slot_of(k);
  }

  arena* arena_;
  duplicate_policy policy_;
  std::vector<item> items_;
  std::string bytes_;                 // string keys, back to back
  std::vector<std::uint64_t> index_;  // slot_of(item); empty_slot where free
  unsigned index_bits_ = 0;
  std::size_t indexed_ = 0;
  bool finished_ = false;
};

// Lays out `order` (indices into p.items()) as consecutive entries in the arena. Returns the block
// and its size; offsets[i] receives the unit offset of the i-th entry laid out when non-null.
template <class E, class K, class V, class Hash>
std::pair<const std::byte*, std::size_t> lay_out_entries(const pending_table<K, V, Hash>& p,
                                                         const std::vector<std::size_t>& order,
                                                         std::uint32_t* offsets) {
  constexpr std::size_t unit = entry_access::unit<E>;
  std::size_t total = 0;
  for (std::size_t i : order) {
    std::size_t len = 0;
    if constexpr (is_string_key<K>) len = p.items()[i].key.len;
    total += entry_access::size_for<E>(len);
  }
  if (total / unit > std::numeric_limits<std::uint32_t>::max()) throw_table_too_big();
  if (total == 0) return {nullptr, 0};
  auto* block = static_cast<std::byte*>(p.target().allocate(total, unit));
  std::size_t off = 0;
  for (std::size_t j = 0; j < order.size(); ++j) {
    const auto& it = p.items()[order[j]];
    if (offsets != nullptr) offsets[j] = static_cast<std::uint32_t>(off / unit);
    const auto k = p.key_of(it);
    entry_access::construct<E>(block + off, k, it.value);
    std::size_t len = 0;
    if constexpr (is_string_key<K>) len = k.size();
    off += entry_access::size_for<E>(len);
  }
  return {block, total};
}

// Walks a block of consecutive entries.
template <class E>
class block_iterator {
 public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = E;
  using difference_type = std::ptrdiff_t;
  using pointer = const E*;
  using reference = const E&;

  block_iterator() noexcept = default;
  block_iterator(const std::byte* p, const std::byte* end) noexcept : p_(p), end_(end) {}
  const E& operator*() const noexcept { return entry_access::at<E>(p_); }
  const E* operator->() const noexcept { return &**this; }
  block_iterator& operator++() noexcept {
    p_ += entry_access::size_of(**this);
    return *this;
  }
  block_iterator operator++(int) noexcept {
    auto old = *this;
    ++*this;
    return old;
  }
  friend bool operator==(const block_iterator& a, const block_iterator& b) noexcept {
    return a.p_ == b.p_;
  }
  // So `m.find(k) == m.end()` reads as with the standard containers: find() returns a pointer,
  // nullptr when absent, and the end iterator equals nullptr.
  friend bool operator==(const block_iterator& a, const E* e) noexcept {
    return a.p_ == a.end_ ? e == nullptr : &*a == e;
  }

 private:
  const std::byte* p_ = nullptr;
  const std::byte* end_ = nullptr;
};

// The freeze check every frozen container registers: the object's own check(arena).
template <class C>
std::string run_container_check(const void* object, const arena& a) {
  return static_cast<const C*>(object)->check(a);
}

template <class C>
void register_check(arena& a, const C* c) {
  a.add_freeze_check(&run_container_check<C>, c);
}

// Passed to a builder whose container is checked as part of an enclosing structure (frozen_json
// objects, which the document's own check walks): finish() then registers no check of its own.
struct no_freeze_check_t {};
inline constexpr no_freeze_check_t no_freeze_check{};

// What every builder shares: the pending entries and the one finish() sequence.
template <class C, class K, class V, class Hash>
class table_builder {
 public:
  using key_view = key_view_t<K>;

  table_builder(arena& a, duplicate_policy policy) : pending_(a, policy) { check_key_type<K>(); }
  table_builder(arena& a, duplicate_policy policy, no_freeze_check_t) : table_builder(a, policy) {
    register_check_ = false;
  }

  std::size_t size() const noexcept { return pending_.size(); }

  // Effects: makes room in process memory for `entries` entries in all, and for string keys
  // `key_bytes` bytes of keys in all, so that inserting up to that many copies nothing and
  // re-indexes nothing (as std::unordered_map::reserve; a hint: more may be inserted).
  // Throws: std::logic_error after finish(); std::length_error for 2^32 - 1 entries or more, or
  // more key bytes than a std::string can hold; std::bad_alloc (the builder is then unchanged
  // but for capacity).
  void reserve(std::size_t entries, std::size_t key_bytes = 0) {
    pending_.reserve(entries, key_bytes);
  }

 protected:
  // Makes the container object in the arena; make(memory) constructs it there and lays the
  // pending entries out for it. Then registers its freeze check and frees the builder's process
  // memory. Later calls return the same container. When make() throws, the arena keeps the
  // unreachable bytes and the builder is unchanged.
  template <class Make>
  const C& finish_with(Make&& make) {
    if (result_ != nullptr) return *result_;
    arena& a = pending_.target();
    const C* c = make(a.allocate(sizeof(C), alignof(C)));
    if (register_check_) register_check(a, c);
    pending_.release();
    result_ = c;
    return *c;
  }

  pending_table<K, V, Hash> pending_;

 private:
  const C* result_ = nullptr;
  bool register_check_ = true;
};

template <class E>
std::string check_entry(const E& e, const arena& a, std::size_t i, const char* what) {
  using K = typename entry_traits<E>::key_type;
  using V = typename entry_traits<E>::mapped_type;
  if constexpr (!is_string_key<K>) {
    if (!permafrost::points_into(entry_access::key_slot(e), a))
      return std::string(what) + ": the key of entry " + std::to_string(i) +
             " points outside the arena";
  }
  if constexpr (!std::is_same_v<V, no_value>) {
    if (!permafrost::points_into(e.value(), a))
      return std::string(what) + ": the value of entry " + std::to_string(i) +
             " points outside the arena";
  }
  return {};
}

}  // namespace detail
}  // namespace permafrost
