// rss_savings variant (d): the explicit shared-memory peer. The table is a boost::unordered_map
// of interprocess strings inside a Boost.Interprocess managed_shared_memory segment (a MAP_SHARED
// tmpfs mapping), built by the parent; workers look keys up by string_view, then churn 50 MiB on
// their own glibc heap.
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/unordered_map.hpp>
#include <string>

#include "worker_host.hpp"

namespace bip = boost::interprocess;

namespace {

using segment = bip::managed_shared_memory;
using char_alloc = bip::allocator<char, segment::segment_manager>;
using shm_string = bip::basic_string<char, std::char_traits<char>, char_alloc>;

struct Record {
  shm_string name;
  shm_string email;
  shm_string city;
  std::int64_t id;
  double score;
  std::int32_t visits;
  std::int32_t flags;
};

std::string_view view(const shm_string& s) { return {s.data(), s.size()}; }

struct key_hash {
  std::size_t operator()(const shm_string& s) const noexcept { return rss::sv_hash{}(view(s)); }
  std::size_t operator()(std::string_view s) const noexcept { return rss::sv_hash{}(s); }
};
struct key_eq {
  bool operator()(const shm_string& a, const shm_string& b) const noexcept {
    return view(a) == view(b);
  }
  bool operator()(std::string_view a, const shm_string& b) const noexcept { return a == view(b); }
  bool operator()(const shm_string& a, std::string_view b) const noexcept { return view(a) == b; }
};

using value_alloc = bip::allocator<std::pair<const shm_string, Record>, segment::segment_manager>;
using Map = boost::unordered_map<shm_string, Record, key_hash, key_eq, value_alloc>;

}  // namespace

int main(int argc, char** argv) {
  const rss::options o = rss::parse(argc, argv);
  const std::string name = "permafrost_rss_" + std::to_string(::getpid());
  bip::shared_memory_object::remove(name.c_str());
  rss::build_report b;
  const auto t0 = std::chrono::steady_clock::now();
  // Sparse tmpfs: only the pages the table touches are ever backed.
  segment seg(bip::create_only, name.c_str(), 64 * 1024 * 1024 + o.rows * 512);
  // The mapping outlives the name; unlinking now leaves nothing behind in /dev/shm on any exit.
  bip::shared_memory_object::remove(name.c_str());
  char_alloc chars(seg.get_segment_manager());
  Map* map = seg.construct<Map>("table")(o.rows, key_hash{}, key_eq{},
                                         value_alloc(seg.get_segment_manager()));
  rss::row r;
  for (std::size_t i = 0; i < rss::universe(o.rows); ++i) {
    if (!rss::survives(i)) continue;
    rss::make_row(i, r);
    map->emplace(shm_string(r.k().data(), r.k().size(), chars),
                 Record{shm_string(r.n().data(), r.n().size(), chars),
                        shm_string(r.e().data(), r.e().size(), chars),
                        shm_string(r.c().data(), r.c().size(), chars), r.id, r.score, r.visits,
                        r.flags});
  }
  b.build_ms = rss::ms_since(t0);
  b.table_bytes = seg.get_size() - seg.get_free_memory();
  b.table = rss::hex_range(seg.get_address(),
                           static_cast<const char*>(seg.get_address()) + seg.get_size());
  const Map& table = *map;
  return rss::run_workers(o, b, [&] {
    rss::worker_result w = rss::timed_lookups(o.rows, [&](std::string_view key) {
      const Record& rec = table.find(key, key_hash{}, key_eq{})->second;
      return rec.name.size() + rec.email.size() + static_cast<std::uint64_t>(rec.city[0]) +
             static_cast<std::uint64_t>(rec.id) + static_cast<std::uint64_t>(rec.visits);
    });
    w.checksum += rss::churn(
        o.churn_mib << 20, [](std::size_t n) { return static_cast<void*>(new char[n]); },
        [](char* p, std::size_t) { delete[] p; });
    return w;
  });
}
