// bench/image — the losing variant "tag lines" (docs/design.md section 3, "Choosing the hash
// layout", variant 3): hash_map's layout for string keys until image format version 3, measured
// beside the library's own by `image --variants`. The same 64-byte tag lines and home lines as the
// library's, but each entry is [value][4-byte key length][key bytes], padded to the value's
// alignment, and a line's size bytes count entry units; find() returns a pointer to the entry.
// It is the library's detail::hash_table (which keeps this layout for fixed-size keys)
// instantiated with string-keyed entries, so the variant measures exactly the code that was
// replaced.
//
// Thread safety: a finished map is read-only; a builder is used by one thread.
#pragma once

#include <permafrost/containers.hpp>

#include <string_view>

namespace tagline_layout {

namespace pd = permafrost::detail;

template <class V, class Hash = permafrost::hash<permafrost::string>>
class map : public pd::hash_table<permafrost::map_entry<permafrost::string, V>, Hash> {
 public:
  map() = default;

  // Effects: none (reads only). k's value, or nullptr.
  const V* get(std::string_view k) const noexcept {
    const auto* e = this->find(k);
    return e != nullptr ? &e->value() : nullptr;
  }

  void build_from(const pd::pending_table<permafrost::string, V, Hash>& p) { this->build(p); }
};

template <class V, class Hash = permafrost::hash<permafrost::string>>
class builder {
 public:
  explicit builder(permafrost::arena& a) : pending_(a, permafrost::duplicate_policy::reject) {}
  // As permafrost's builders' reserve(): room for `entries` entries, nothing copied up to there.
  void reserve(std::size_t entries) { pending_.reserve(entries, 0); }
  template <class U>
  bool insert(std::string_view k, U&& v) {
    return pending_.insert_value(k, std::forward<U>(v));
  }
  const map<V, Hash>& finish() {
    permafrost::arena& a = pending_.target();
    auto* m = ::new (a.allocate(sizeof(map<V, Hash>), alignof(map<V, Hash>))) map<V, Hash>();
    m->build_from(pending_);
    pending_.release();
    return *m;
  }

 private:
  pd::pending_table<permafrost::string, V, Hash> pending_;
};

}  // namespace tagline_layout
