// bench/image — a variant of the frozen hash table for string keys, measured beside hash_map's
// own layout by `image --variants` (docs/design.md section 3, "Bytes at 10M"): the same 64-byte
// tag lines and home lines, but each line's entries are stored as one group, [the values, an
// array][the keys, bytes back to back], and the line's size bytes are the key lengths. So an
// entry costs its value and its key bytes and nothing else: no 4-byte key length, no padding to
// the value's alignment (one pad per group). A hit reads the line, the key (from the sizes before
// it) and the value at its index in the group: two reads after the line instead of one. find()
// here cannot return one contiguous entry (map_entry): get() returns the value.
//
// Bench code, not the library: keys of up to 255 bytes (the builder throws beyond), and V of an
// alignment up to 8.
//
// Thread safety: a finished map is read-only; a builder is used by one thread.
#pragma once

#include <permafrost/containers.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace split_layout {

namespace pd = permafrost::detail;
using line = pd::hash_line<true>;
inline constexpr std::size_t keys_per_home = pd::keys_per_home<true>;

template <class V, class Hash = permafrost::hash<permafrost::string>>
class map {
  static_assert(alignof(V) <= 8 && std::is_trivially_copyable_v<V>);
  static constexpr std::size_t unit = alignof(V);  // a line's base counts these

 public:
  // Effects: none (reads only). k's value, or nullptr.
  const V* get(std::string_view k) const noexcept {
    if (size_ == 0) return nullptr;
    const std::uint64_t h = Hash{}(k);
    const std::uint8_t tag = pd::tag_of(h);
    const line* l = lines_.get() + pd::home_line_of(h, homes_);
    const line* const home = l;
    std::uint64_t candidates = pd::match_tags(*l, tag) & pd::own_entries(*l);
    for (;;) {
      for (; candidates != 0; candidates &= candidates - 1) {
        const auto j = static_cast<unsigned>(std::countr_zero(candidates));
        if (l->sizes()[j] != k.size()) continue;
        const std::byte* group = groups_.get() + std::size_t{l->base} * unit;
        const auto* key = reinterpret_cast<const char*>(group) + std::size_t{l->count} * sizeof(V) +
                          pd::size_prefix(*l, j);
        if (std::memcmp(key, k.data(), k.size()) == 0) return reinterpret_cast<const V*>(group) + j;
      }
      if ((l->flags & pd::line_spills) == 0 || (l != home && l->own < l->count)) return nullptr;
      ++l;
      candidates = pd::match_tags(*l, tag) & pd::spilled_entries(*l);
    }
  }

  std::size_t size() const noexcept { return size_; }

  // Lays out the entries of p in its arena: lines as hash_map's, then one group per line.
  void build(const pd::pending_table<permafrost::string, V, Hash>& p) {
    const std::size_t n = p.size();
    size_ = n;
    if (n == 0) return;
    const auto& items = p.items();
    homes_ = (n + keys_per_home - 1) / keys_per_home;
    auto home_of = [&](std::size_t i) { return pd::home_line_of(items[i].hash, homes_); };
    std::vector<std::size_t> order(n);
    {
      std::vector<std::size_t> next(homes_ + 1, 0);
      for (std::size_t i = 0; i < n; ++i) ++next[home_of(i) + 1];
      for (std::size_t b = 0; b < homes_; ++b) next[b + 1] += next[b];
      for (std::size_t i = 0; i < n; ++i) order[next[home_of(i)]++] = i;
    }
    // Lines filled in home order, as hash_map's; first[l]: the position in `order` of line l's
    // first entry (a line's entries are consecutive there).
    std::vector<line> lines(homes_, line{});
    std::vector<std::size_t> first(homes_, n);
    std::size_t cur = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = order[k];
      const std::size_t home = home_of(i);
      cur = std::max(cur, home);
      while (lines[cur].count == line::capacity)
        if (++cur == lines.size()) {
          lines.push_back(line{});
          first.push_back(n);
        }
      line& l = lines[cur];
      const std::size_t j = l.count++;
      if (j == 0) first[cur] = k;
      if (home < cur) ++l.own;
      l.slots[j] = pd::tag_of(items[i].hash);
      const std::size_t len = p.key_of(items[i]).size();
      if (len > 255) throw std::length_error("split_layout: a key longer than 255 bytes");
      l.slots[line::capacity + j] = static_cast<std::uint8_t>(len);
    }
    for (std::size_t b = 0; b + 1 < lines.size(); ++b)
      if (lines[b + 1].own != 0) lines[b].flags |= pd::line_spills;
    // Group sizes, then the groups.
    std::size_t total = 0;
    std::vector<std::size_t> group_at(lines.size());
    for (std::size_t b = 0; b < lines.size(); ++b) {
      group_at[b] = total;
      std::size_t bytes = std::size_t{lines[b].count} * sizeof(V);
      for (std::size_t j = 0; j < lines[b].count; ++j) bytes += lines[b].slots[line::capacity + j];
      total += (bytes + unit - 1) & ~(unit - 1);
      if (total / unit > UINT32_MAX) throw std::length_error("split_layout: too big");
      lines[b].base = static_cast<std::uint32_t>(group_at[b] / unit);
    }
    permafrost::arena& a = p.target();
    auto* block = static_cast<std::byte*>(a.allocate(std::max<std::size_t>(total, 1), unit));
    for (std::size_t b = 0; b < lines.size(); ++b) {
      std::byte* group = block + group_at[b];
      char* keys = reinterpret_cast<char*>(group) + std::size_t{lines[b].count} * sizeof(V);
      for (std::size_t j = 0; j < lines[b].count; ++j) {
        const auto& it = items[order[first[b] + j]];
        std::memcpy(group + j * sizeof(V), &it.value, sizeof(V));
        const std::string_view key = p.key_of(it);
        if (!key.empty()) std::memcpy(keys, key.data(), key.size());
        keys += key.size();
      }
    }
    groups_ = block;
    auto* out = static_cast<line*>(a.allocate(lines.size() * sizeof(line), pd::hash_line_bytes));
    std::memcpy(static_cast<void*>(out), lines.data(), lines.size() * sizeof(line));
    lines_ = out;
  }

  bool points_into(const permafrost::arena& a) const {
    return permafrost::points_into(groups_, a) && permafrost::points_into(lines_, a);
  }

 private:
  permafrost::offset_ptr<const std::byte> groups_;
  permafrost::offset_ptr<const line> lines_;
  std::size_t homes_ = 0;
  std::size_t size_ = 0;
};

template <class V, class Hash = permafrost::hash<permafrost::string>>
class builder {
 public:
  explicit builder(permafrost::arena& a) : pending_(a, permafrost::duplicate_policy::reject) {}
  template <class U>
  bool insert(std::string_view k, U&& v) {
    return pending_.insert_value(k, std::forward<U>(v));
  }
  const map<V, Hash>& finish() {
    permafrost::arena& a = pending_.target();
    auto* m = ::new (a.allocate(sizeof(map<V, Hash>), alignof(map<V, Hash>))) map<V, Hash>();
    m->build(pending_);
    pending_.release();
    return *m;
  }

 private:
  pd::pending_table<permafrost::string, V, Hash> pending_;
};

}  // namespace split_layout
