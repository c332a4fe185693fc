// rss_savings variants on std containers, one binary per allocator:
//   rss_savings_glibc     --variant shared_ptr : (a) unordered_map<string, shared_ptr<Record>>,
//                                                readers copy the handle
//   rss_savings_glibc     --variant std        : (b) unordered_map<string, Record>, a quarter
//   erased
//                                                before fork, readers use const refs, then churn
//   rss_savings_mimalloc  --variant std        : (c) the same, linked with libmimalloc.so (which
//                                                replaces malloc for the whole process)
#include <memory>
#include <string>
#include <unordered_map>

#include "worker_host.hpp"

#ifdef RSS_WITH_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

struct Record {
  std::string name;
  std::string email;
  std::string city;
  std::int64_t id;
  double score;
  std::int32_t visits;
  std::int32_t flags;
};

Record to_record(const rss::row& r) {
  return Record{
      std::string(r.n()), std::string(r.e()), std::string(r.c()), r.id, r.score, r.visits, r.flags};
}

std::uint64_t fold(const Record& r) {
  return r.name.size() + r.email.size() + r.city[0] + static_cast<std::uint64_t>(r.id) +
         static_cast<std::uint64_t>(r.visits);
}

template <class Map>
Map* leak_new_map() {  // the table lives until exit, like a server's
  return new Map();
}

int run_shared_ptr(const rss::options& o) {
  using Map =
      std::unordered_map<std::string, std::shared_ptr<Record>, rss::sv_hash, std::equal_to<>>;
  rss::build_report b;
  const auto t0 = std::chrono::steady_clock::now();
  Map& map = *leak_new_map<Map>();
  rss::row r;
  for (std::size_t i = 0; i < rss::universe(o.rows); ++i) {
    if (!rss::survives(i)) continue;
    rss::make_row(i, r);
    map.emplace(std::string(r.k()), std::make_shared<Record>(to_record(r)));
  }
  b.build_ms = rss::ms_since(t0);
  return rss::run_workers(o, b, [&] {
    return rss::timed_lookups(o.rows, [&](std::string_view key) {
      const std::shared_ptr<Record> rec = map.find(key)->second;  // a handle copy: a refcount write
      return fold(*rec);
    });
  });
}

int run_std(const rss::options& o) {
  using Map = std::unordered_map<std::string, Record, rss::sv_hash, std::equal_to<>>;
  rss::build_report b;
  const auto t0 = std::chrono::steady_clock::now();
  Map& map = *leak_new_map<Map>();
  rss::row r;
  for (std::size_t i = 0; i < rss::universe(o.rows); ++i) {
    rss::make_row(i, r);
    map.emplace(std::string(r.k()), to_record(r));
  }
  for (std::size_t i = 0; i < rss::universe(o.rows); ++i) {  // the history: a quarter erased
    if (rss::survives(i)) continue;
    rss::make_row(i, r);
    map.erase(map.find(r.k()));
  }
  b.build_ms = rss::ms_since(t0);
  return rss::run_workers(o, b, [&] {
    rss::worker_result w = rss::timed_lookups(o.rows, [&](std::string_view key) {
      return fold(map.find(key)->second);  // const ref: no write to the table
    });
    w.checksum += rss::churn(
        o.churn_mib << 20, [](std::size_t n) { return static_cast<void*>(new char[n]); },
        [](char* p, std::size_t) { delete[] p; });
    return w;
  });
}

}  // namespace

int main(int argc, char** argv) {
  const rss::options o = rss::parse(argc, argv);
#ifdef RSS_WITH_MIMALLOC
  // Prove the override is in effect (and keep libmimalloc.so a real dependency).
  void* probe = std::malloc(64);
  if (!mi_is_in_heap_region(probe)) {
    std::fprintf(stderr, "malloc is not mimalloc's in this binary\n");
    return 1;
  }
  std::free(probe);
#endif
  if (o.variant == "shared_ptr") return run_shared_ptr(o);
  if (o.variant == "std") return run_std(o);
  std::fprintf(stderr, "unknown --variant %s (shared_ptr | std)\n", o.variant.c_str());
  return 2;
}
