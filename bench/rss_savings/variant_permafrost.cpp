// rss_savings variant (e): permafrost. The same unordered_map, its nodes, buckets and strings all
// in a frozen arena (frozen_allocator, strings copied into the arena as string_views); the arena
// is frozen before fork, workers look keys up by string_view and churn 50 MiB on this process's
// own heap, which never lies on an inherited page.
#include <memory_resource>
#include <unordered_map>

#include <permafrost/arena.hpp>
#include <permafrost/frozen_allocator.hpp>
#include <permafrost/heap.hpp>

#include "worker_host.hpp"

namespace {

struct Record {
  std::string_view name;
  std::string_view email;
  std::string_view city;
  std::int64_t id;
  double score;
  std::int32_t visits;
  std::int32_t flags;
};

using Map =
    std::unordered_map<std::string_view, Record, rss::sv_hash, std::equal_to<>,
                       permafrost::frozen_allocator<std::pair<const std::string_view, Record>>>;

}  // namespace

int main(int argc, char** argv) {
  const rss::options o = rss::parse(argc, argv);
  rss::build_report b;
  permafrost::arena_options ao;
  ao.name = "rss_savings table";
  permafrost::arena table_arena(ao);
  const auto t0 = std::chrono::steady_clock::now();
  Map* map =
      table_arena.make<Map>(0, rss::sv_hash{}, std::equal_to<>{}, Map::allocator_type(table_arena));
  map->reserve(o.rows);  // grown buckets would be garbage in an arena that never frees
  rss::row r;
  for (std::size_t i = 0; i < rss::universe(o.rows); ++i) {
    if (!rss::survives(i)) continue;
    rss::make_row(i, r);
    map->emplace(table_arena.copy(r.k()),
                 Record{table_arena.copy(r.n()), table_arena.copy(r.e()), table_arena.copy(r.c()),
                        r.id, r.score, r.visits, r.flags});
  }
  b.build_ms = rss::ms_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  table_arena.freeze();
  b.freeze_ms = rss::ms_since(t1);
  b.table_bytes = table_arena.stats().used;
  const auto used = table_arena.used_bytes();
  b.table = rss::hex_range(used.data(), used.data() + used.size());
  const Map& table = *map;
  return rss::run_workers(o, b, [&] {
    rss::worker_result w = rss::timed_lookups(o.rows, [&](std::string_view key) {
      const Record& rec = table.find(key)->second;
      return rec.name.size() + rec.email.size() + static_cast<std::uint64_t>(rec.city[0]) +
             static_cast<std::uint64_t>(rec.id) + static_cast<std::uint64_t>(rec.visits);
    });
    // The per-process heap, renewed by permafrost in every child right after fork.
    std::pmr::memory_resource* heap = permafrost::process_heap();
    w.checksum += rss::churn(
        o.churn_mib << 20, [heap](std::size_t n) { return heap->allocate(n, 16); },
        [heap](char* p, std::size_t n) { heap->deallocate(p, n, 16); });
    return w;
  });
}
