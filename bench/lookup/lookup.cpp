// bench/lookup — lookups per second and bytes per entry of frozen containers and their peers.
//
// One run builds every peer from the same keys (string keys -> uint64 values), then times rounds
// of lookups of all keys in a shuffled order (hits; each key a separate std::string, so no peer
// sees its own key object) and of as many absent keys drawn alike (misses), peers interleaved
// within each round (in reverse order every other round). Reports medians and
// ratios against std::unordered_map. Bytes per entry: for heap peers, the bytes the heap handed
// out for the peer (counted by this program's operator new/delete, as malloc_usable_size of each
// block: the size class's rounding included, the allocator's own headers not); for arena peers,
// the arena bytes used. Keys are included either way.
// Build time is reported separately: it includes first touch of fresh pages (~6.6 us each here).
//
// The frozen hash_map and sorted_map also run in the layout before position independence
// (absolute pointers; bench/lookup/old_layout.hpp) beside the same layout with self-relative
// offsets (so the data works at any address): for the sorted_map that is the library's; for the
// hash_map, whose string-keyed layout has since changed (values apart from keys, image format 3),
// it is the [value][key] tag-line layout of the time (bench/image/tagline_layout.hpp), so the
// comparison still measures the offsets alone. The table built first runs slower on this machine
// whichever layout it is (2-8%, measured by swapping them), so for the closing comparison each
// layout is built twice in A-B-B-A order — offsets, pointers, ..., pointers, offsets — and each
// round's ratio is (offsets + offsets') / (pointers + pointers'); the line reports the median over
// rounds. The second builds are not listed in the table.
//
// Usage: lookup [--smoke] [--keys N] [--rounds R]
//   --smoke   20,000 keys, 3 rounds: seconds, for ctest
#include <permafrost/containers.hpp>

#include "../image/tagline_layout.hpp"
#include "old_layout.hpp"

#include <boost/intrusive/set.hpp>
#include <boost/intrusive/unordered_set.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <malloc.h>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace bi = boost::intrusive;

namespace {
void* counted_alloc(std::size_t n, std::size_t align);
void counted_free(void* p) noexcept;
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// The counting allocator: this program's operator new/delete (every form below) add and subtract
// malloc_usable_size of each block, so heap_in_use() is what the heap has handed out to the
// program and not taken back, whichever malloc the process runs on.
std::atomic<std::size_t> g_heap_bytes{0};

std::size_t heap_in_use() { return g_heap_bytes.load(std::memory_order_relaxed); }

std::size_t heap_growth(std::size_t before, std::size_t exclude) {
  const std::size_t now = heap_in_use();
  return now > before + exclude ? now - before - exclude : 0;
}

void* counted_alloc(std::size_t n, std::size_t align) {
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(n == 0 ? 1 : n)
                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  g_heap_bytes.fetch_add(malloc_usable_size(p), std::memory_order_relaxed);
  return p;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  g_heap_bytes.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
  std::free(p);
}

// Keeps results observable so the compiler cannot drop lookups.
volatile std::uint64_t g_sink;

// ----- key sets ------------------------------------------------------------------------------

std::vector<std::string> make_keys(std::size_t n, std::size_t min_len, std::size_t max_len,
                                   std::uint64_t seed) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> len(min_len, max_len);
  std::unordered_set<std::string> seen;
  std::vector<std::string> keys;
  keys.reserve(n);
  while (keys.size() < n) {
    std::string k(len(rng), ' ');
    for (char& c : k) c = alphabet[rng() % 64];
    if (seen.insert(k).second) keys.push_back(std::move(k));
  }
  return keys;
}

// ----- peers -----------------------------------------------------------------------------------

struct peer {
  const char* name;
  std::function<std::size_t()> build;  // returns bytes used
  // Looks every query up (as std::strings or as views, whichever the peer takes); returns the sum
  // of value + 1 over the hits, so a pass of misses returns 0.
  std::function<std::uint64_t(const std::vector<std::string>&,
                              const std::vector<std::string_view>&)>
      lookup_all;
  std::function<void()> drop;
  // Filled by the run:
  std::size_t bytes = 0;
  double build_s = 0;
  std::vector<double> rates;       // hits per second, one per round
  std::vector<double> miss_rates;  // misses per second, one per round
};

struct sv_hash {
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// Boost.Intrusive on the heap: one new'd node per key (std::string key), buckets in a vector.
struct heap_hnode
    : bi::unordered_set_base_hook<bi::link_mode<bi::normal_link>, bi::store_hash<true>> {
  std::string key;
  std::uint64_t value;
};
struct heap_hnode_hash {
  std::size_t operator()(const heap_hnode& n) const noexcept { return sv_hash{}(n.key); }
};
struct heap_hnode_eq {
  bool operator()(const heap_hnode& a, const heap_hnode& b) const noexcept {
    return a.key == b.key;
  }
};
struct key_hnode_eq {
  bool operator()(std::string_view k, const heap_hnode& n) const noexcept { return k == n.key; }
};
using heap_hset = bi::unordered_set<heap_hnode, bi::hash<heap_hnode_hash>, bi::equal<heap_hnode_eq>,
                                    bi::store_hash<true>, bi::constant_time_size<true>>;

struct heap_tnode : bi::set_base_hook<bi::link_mode<bi::normal_link>, bi::optimize_size<true>> {
  std::string key;
  std::uint64_t value;
  friend bool operator<(const heap_tnode& a, const heap_tnode& b) noexcept { return a.key < b.key; }
};
struct key_tnode_less {
  bool operator()(std::string_view k, const heap_tnode& n) const noexcept { return k < n.key; }
  bool operator()(const heap_tnode& n, std::string_view k) const noexcept { return n.key < k; }
};
using heap_tset = bi::set<heap_tnode, bi::constant_time_size<true>>;

// Boost.Intrusive laid out in an arena: nodes contiguous, buckets in the arena, stored hashes,
// normal_link hooks, keys as permafrost::string (bytes in the arena).
struct arena_hnode
    : bi::unordered_set_base_hook<bi::link_mode<bi::normal_link>, bi::store_hash<true>> {
  permafrost::string key;
  std::uint64_t value = 0;
};
struct arena_hnode_hash {
  std::size_t operator()(const arena_hnode& n) const noexcept {
    return permafrost::string_hash{}(n.key);
  }
};
struct arena_hnode_eq {
  bool operator()(const arena_hnode& a, const arena_hnode& b) const noexcept {
    return a.key == b.key;
  }
};
struct key_anode_eq {
  bool operator()(std::string_view k, const arena_hnode& n) const noexcept { return n.key == k; }
};
using arena_hset =
    bi::unordered_set<arena_hnode, bi::hash<arena_hnode_hash>, bi::equal<arena_hnode_eq>,
                      bi::store_hash<true>, bi::constant_time_size<true>>;

permafrost::arena_options arena_opts(const char* name) {
  permafrost::arena_options o;
  o.capacity = std::size_t{8} << 30;
  o.name = name;
  return o;
}

// A standard container filled by emplace and looked up with find(const std::string&).
template <class Map>
peer std_peer(const char* name, const std::vector<std::string>& keys) {
  auto m = std::make_shared<std::unique_ptr<Map>>();
  return peer{name,
              [m, &keys] {
    const std::size_t before = heap_in_use();
    *m = std::make_unique<Map>();
    for (std::size_t i = 0; i < keys.size(); ++i) (*m)->emplace(keys[i], i);
    return heap_growth(before, 0);
              },
              [m](const std::vector<std::string>& qs, const std::vector<std::string_view>&) {
    std::uint64_t s = 0;
    for (const auto& q : qs) {
      const auto it = (*m)->find(q);
      s += it != (*m)->end() ? it->second + 1 : 0;
    }
    return s;
  },
      [m] { m->reset(); }, 0, 0, {}, {}};
}

// A permafrost container built in its own arena, frozen, looked up with find(std::string_view).
template <class Builder>
peer frozen_peer(const char* name, const std::vector<std::string>& keys) {
  using map_type = std::remove_cvref_t<decltype(std::declval<Builder&>().finish())>;
  struct state {
    std::unique_ptr<permafrost::arena> arena;
    const map_type* map = nullptr;
  };
  auto st = std::make_shared<state>();
  return peer{name,
              [st, &keys, name] {
    st->arena = std::make_unique<permafrost::arena>(arena_opts(name));
    Builder b{*st->arena};
    for (std::size_t i = 0; i < keys.size(); ++i) b.insert(keys[i], i);
    st->map = &b.finish();
    st->arena->freeze();
    return st->arena->stats().used;
              },
              [st](const std::vector<std::string>&, const std::vector<std::string_view>& vs) {
    std::uint64_t s = 0;
    for (std::string_view q : vs) {
      const auto e = st->map->find(q);
      s += e != nullptr ? e->value() + 1 : 0;
    }
    return s;
  },
      [st] { st->arena.reset(); }, 0, 0, {}, {}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The median over rounds of a[r] / b[r]: peers run back to back within a round, so the ratio of
// one round cancels what drifts between rounds (frequency, other load).
double round_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) r.push_back(a[i] / b[i]);
  return median(r);
}

const peer& find_peer(const std::vector<peer>& peers, std::string_view name) {
  for (const auto& p : peers)
    if (p.name == name) return p;
  std::fprintf(stderr, "lookup: no peer named %.*s\n", static_cast<int>(name.size()), name.data());
  std::exit(1);
}

std::vector<double> sum_rates(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> s;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) s.push_back(a[i] + b[i]);
  return s;
}

// Ends the names of the A-B-B-A comparison's second builds.
constexpr std::string_view second_build = " (second build)";

// keys: the table's keys; absent_keys: as many keys drawn alike that are not in it.
void run(const char* label, const std::vector<std::string>& keys,
         const std::vector<std::string>& absent_keys, int rounds) {
  const std::size_t n = keys.size();
  std::vector<std::string> queries(keys);
  std::shuffle(queries.begin(), queries.end(), std::mt19937_64(7));
  const std::vector<std::string_view> query_views(queries.begin(), queries.end());
  const std::vector<std::string> misses = absent_keys;
  const std::vector<std::string_view> miss_views(misses.begin(), misses.end());

  std::unique_ptr<permafrost::arena> bia_arena;
  std::vector<heap_hnode*> hh_nodes;
  std::unique_ptr<std::vector<heap_hset::bucket_type>> hh_buckets;
  std::unique_ptr<heap_hset> hh;
  std::vector<heap_tnode*> ht_nodes;
  std::unique_ptr<heap_tset> ht;
  const arena_hset* ba = nullptr;

  std::vector<peer> peers;
  auto add = [&](peer p) { peers.push_back(std::move(p)); };
  add(frozen_peer<permafrost::hash_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::hash_map", keys));
  add(frozen_peer<tagline_layout::builder<std::uint64_t>>(
      "permafrost::hash_map, [value][key] entries", keys));
  add(frozen_peer<old_layout::hash_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::hash_map, [value][key] entries, old layout (pointers)", keys));
  add(std_peer<std::unordered_map<std::string, std::uint64_t>>("std::unordered_map<std::string>",
                                                               keys));
  add(std_peer<std::unordered_map<std::string, std::uint64_t, permafrost::string_hash>>(
      "std::unordered_map, permafrost hash", keys));
  add(peer{"Boost.Intrusive unordered_set, heap",
           [&] {
    const std::size_t before = heap_in_use();
    hh_buckets = std::make_unique<std::vector<heap_hset::bucket_type>>(n);
    hh = std::make_unique<heap_hset>(heap_hset::bucket_traits(hh_buckets->data(), n));
    hh_nodes.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto* node = new heap_hnode;
      node->key = keys[i];
      node->value = i;
      hh_nodes.push_back(node);
      hh->insert(*node);
    }
    return heap_growth(before,
                       hh_nodes.capacity() * sizeof(void*));  // the owner list is the bench's
           },
           [&](const std::vector<std::string>& qs, const std::vector<std::string_view>&) {
    std::uint64_t s = 0;
    for (const auto& q : qs) {
      const auto it = hh->find(std::string_view(q), sv_hash{}, key_hnode_eq{});
      s += it != hh->end() ? it->value + 1 : 0;
    }
    return s;
  },
      [&] {
    hh->clear();
    hh.reset();
    hh_buckets.reset();
    for (auto* p : hh_nodes) delete p;
    std::vector<heap_hnode*>().swap(hh_nodes);
  },
      0, 0, {}, {}});
  add(peer{"Boost.Intrusive unordered_set, arena",
           [&] {
    bia_arena = std::make_unique<permafrost::arena>(arena_opts("bench-bi"));
    auto& a = *bia_arena;
    auto buckets = a.make_array<arena_hset::bucket_type>(n);
    auto* set = a.make<arena_hset>(arena_hset::bucket_traits(buckets.data(), n));
    auto nodes = a.make_array<arena_hnode>(n);
    for (std::size_t i = 0; i < n; ++i) {
      nodes[i].key = permafrost::make_string(a, keys[i]);
      nodes[i].value = i;
      set->insert(nodes[i]);
    }
    ba = set;
    a.freeze();
    return a.stats().used;
           },
           [&](const std::vector<std::string>&, const std::vector<std::string_view>& vs) {
    std::uint64_t s = 0;
    for (std::string_view q : vs) {
      const auto it = ba->find(q, permafrost::string_hash{}, key_anode_eq{});
      s += it != ba->end() ? it->value + 1 : 0;
    }
    return s;
  },
      [&] { bia_arena.reset(); }, 0, 0, {}, {}});
  add(frozen_peer<permafrost::sorted_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::sorted_map", keys));
  add(frozen_peer<old_layout::sorted_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::sorted_map, old layout (pointers)", keys));
  add(std_peer<std::map<std::string, std::uint64_t>>("std::map<std::string>", keys));
  add(peer{"Boost.Intrusive set (rbtree), heap",
           [&] {
    const std::size_t before = heap_in_use();
    ht = std::make_unique<heap_tset>();
    ht_nodes.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto* node = new heap_tnode;
      node->key = keys[i];
      node->value = i;
      ht_nodes.push_back(node);
      ht->insert(*node);
    }
    return heap_growth(before, ht_nodes.capacity() * sizeof(void*));
           },
           [&](const std::vector<std::string>& qs, const std::vector<std::string_view>&) {
    std::uint64_t s = 0;
    for (const auto& q : qs) {
      const auto it = ht->find(std::string_view(q), key_tnode_less{});
      s += it != ht->end() ? it->value + 1 : 0;
    }
    return s;
  },
      [&] {
    ht->clear();
    ht.reset();
    for (auto* p : ht_nodes) delete p;
    std::vector<heap_tnode*>().swap(ht_nodes);
  },
      0, 0, {}, {}});

  // The second builds of the A-B-B-A comparison, last: old first, then current.
  add(frozen_peer<old_layout::hash_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::hash_map, [value][key] entries, old layout (pointers) (second build)", keys));
  add(frozen_peer<tagline_layout::builder<std::uint64_t>>(
      "permafrost::hash_map, [value][key] entries (second build)", keys));
  add(frozen_peer<old_layout::sorted_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::sorted_map, old layout (pointers) (second build)", keys));
  add(frozen_peer<permafrost::sorted_map_builder<permafrost::string, std::uint64_t>>(
      "permafrost::sorted_map (second build)", keys));

  const std::uint64_t expect = static_cast<std::uint64_t>(n) * (n + 1) / 2;
  for (auto& p : peers) {
    const auto t0 = clock_type::now();
    p.bytes = p.build();
    p.build_s = seconds_since(t0);
    // Warm-up passes, also the correctness check.
    if (p.lookup_all(queries, query_views) != expect || p.lookup_all(misses, miss_views) != 0) {
      std::fprintf(stderr, "lookup: %s returned wrong values\n", p.name);
      std::exit(1);
    }
  }
  // Odd rounds run the peers in reverse order, so no peer always follows the same one.
  std::vector<peer*> order;
  for (auto& p : peers) order.push_back(&p);
  for (int r = 0; r < rounds; ++r) {
    std::reverse(order.begin(), order.end());
    for (peer* pp : order) {
      peer& p = *pp;
      auto t0 = clock_type::now();
      g_sink = p.lookup_all(queries, query_views);
      p.rates.push_back(static_cast<double>(queries.size()) / seconds_since(t0));
      t0 = clock_type::now();
      g_sink = p.lookup_all(misses, miss_views);
      p.miss_rates.push_back(static_cast<double>(misses.size()) / seconds_since(t0));
    }
  }
  for (auto& p : peers) p.drop();

  double total_len = 0;
  for (const auto& k : keys) total_len += static_cast<double>(k.size());
  std::printf("\n### %s: %zu keys, mean key length %.1f bytes, uint64 values, %d rounds\n\n", label,
              n, total_len / static_cast<double>(n), rounds);
  std::printf(
      "| container | bytes/entry | bytes vs unordered_map | M hits/s | hits vs unordered_map "
      "| M misses/s | misses vs unordered_map | build s |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  const peer& ref = find_peer(peers, "std::unordered_map<std::string>");
  const double ref_rate = median(ref.rates);
  const double ref_miss = median(ref.miss_rates);
  const double ref_bytes = static_cast<double>(ref.bytes) / static_cast<double>(n);
  for (const auto& p : peers) {
    if (std::string_view(p.name).ends_with(second_build)) continue;
    const double bpe = static_cast<double>(p.bytes) / static_cast<double>(n);
    const double rate = median(p.rates);
    const double miss = median(p.miss_rates);
    if (p.bytes == 0 || ref_bytes == 0) {
      std::fprintf(stderr,
                   "lookup: no bytes counted for %s: the counting allocator is not in use\n",
                   p.name);
      std::exit(1);
    }
    std::printf("| %s | %.1f | %.2fx | %.2f | %.2fx | %.2f | %.2fx | %.2f |\n", p.name, bpe,
                bpe / ref_bytes, rate / 1e6, rate / ref_rate, miss / 1e6, miss / ref_miss,
                p.build_s);
  }
  std::printf("\nOffset layout vs old pointer layout (A-B-B-A builds, median of per-round ratios; "
              "> 1 is faster):\n");
  for (const std::string name :
       {"permafrost::hash_map, [value][key] entries", "permafrost::sorted_map"}) {
    const std::string old = name + ", old layout (pointers)";
    const peer* now[2] = {&find_peer(peers, name),
                          &find_peer(peers, name + std::string(second_build))};
    const peer* was[2] = {&find_peer(peers, old),
                          &find_peer(peers, old + std::string(second_build))};
    std::printf("- %s: hits %.3fx, misses %.3fx\n", name.c_str(),
                round_ratio(sum_rates(now[0]->rates, now[1]->rates),
                            sum_rates(was[0]->rates, was[1]->rates)),
                round_ratio(sum_rates(now[0]->miss_rates, now[1]->miss_rates),
                            sum_rates(was[0]->miss_rates, was[1]->miss_rates)));
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 1'000'000;
  int rounds = 7;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--smoke") {
      n = 20'000;
      rounds = 3;
    } else if (arg == "--keys" && i + 1 < argc) {
      n = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: lookup [--smoke] [--keys N] [--rounds R]\n");
      return 2;
    }
  }
  if (n < 2 || rounds < 1) {
    std::fprintf(stderr, "lookup: need at least 2 keys and 1 round\n");
    return 2;
  }
  for (const auto& [label, min_len, max_len] :
       {std::tuple{"mixed keys (8-24 bytes; about half exceed std::string's 15-byte SSO)", 8, 24},
        std::tuple{"short keys (6-14 bytes; all fit std::string's SSO)", 6, 14}}) {
    auto all = make_keys(2 * n, static_cast<std::size_t>(min_len),
                         static_cast<std::size_t>(max_len), static_cast<std::uint64_t>(max_len));
    const std::vector<std::string> absent(
        std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(n)),
        std::make_move_iterator(all.end()));
    all.resize(n);
    run(label, all, absent, rounds);
  }
  return 0;
}
