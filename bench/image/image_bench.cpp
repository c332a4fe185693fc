// bench/image — a table of string keys -> small records that a fresh process needs: open a saved
// permafrost image, or rebuild from the source data, against LMDB, tinycdb and marisa-trie files
// and in-memory absl::flat_hash_map / std::unordered_map, side by side in one run.
//
// The source data is a TSV file (key, id, a, b per line) written once per run. Every peer is
// measured in processes of its own (this program re-executed as a worker), so no peer inherits
// another's heap or page tables:
//   build       from the parsed keys to the finished structure (sorting for LMDB included), then
//               saving it (files) — reported apart; bytes on disk, or resident bytes for the
//               in-memory peers (RSS growth while building, keys included)
//   first       spawn -> the first lookup answered, in a fresh process: open the file (persistent
//               peers) or parse the TSV and build (in-memory peers); warm page cache, and cold
//               (the files dropped from the page cache with POSIX_FADV_DONTNEED first)
//   lookups     hits (every key, shuffled, each a separate std::string) and as many misses, per
//               second; median of the rounds
// Ratios: permafrost's lookups/s against LMDB, tinycdb and absl; its image bytes against absl's
// resident bytes; its build time against std::unordered_map's.
//
// Usage: image [--smoke] [--keys N] [--10m] [--rounds R] [--repeat P] [--variants] [--dir DIR]
//   default 1,000,000 keys, 3 rounds; --10m: 10,000,000 keys; --smoke: 20,000 keys, 1 round;
//   --repeat P: P lookup processes per peer, the peers taking turns (medians; default 1);
//   --variants: also the losing hash-table layouts (mph_layout.hpp, tagline_layout.hpp), as
//   image files.
// Progress goes to stderr, the markdown table to stdout.
#include <permafrost/containers.hpp>
#include <permafrost/image.hpp>

#include <absl/container/flat_hash_map.h>
#include <cdb.h>
#include <lmdb.h>
#include <marisa.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

#include "../common/harness.hpp"
#include "mph_layout.hpp"
#include "tagline_layout.hpp"

namespace fs = std::filesystem;

namespace {

struct record {
  std::uint64_t id;
  std::uint32_t a;
  std::uint32_t b;
};

using pf_map = permafrost::hash_map<permafrost::string, record>;
using mph_map = mph_layout::map<permafrost::string, record>;
using tagline_map = tagline_layout::map<record>;

}  // namespace

PERMAFROST_IMAGE_TYPE(pf_map, "permafrost.bench.image.map.v1");
PERMAFROST_IMAGE_TYPE(mph_map, "permafrost.bench.image.mph.v1");
PERMAFROST_IMAGE_TYPE(tagline_map, "permafrost.bench.image.tagline.v1");

namespace {

// ----- the data ---------------------------------------------------------------------------------

// Key i: "key:" and a scrambled decimal (multiplication by an odd number mod 2^40 is a bijection,
// so keys are distinct); 9 to 17 bytes, most 16-17 (past std::string's inline buffer).
std::string key_of(std::uint64_t i) {
  return "key:" + std::to_string((i * 0x9E3779B97Full) & ((std::uint64_t{1} << 40) - 1));
}
std::string miss_of(std::uint64_t i) {
  return "miss" + std::to_string((i * 0x9E3779B97Full) & ((std::uint64_t{1} << 40) - 1));
}
record value_of(std::uint64_t i) {
  return {i, static_cast<std::uint32_t>(i * 3), static_cast<std::uint32_t>(i ^ 0x5a5a)};
}

struct source {
  std::vector<std::string> keys;
  std::vector<record> values;
};

void write_source(const fs::path& path, std::uint64_t n) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + path.string());
  for (std::uint64_t i = 0; i < n; ++i) {
    const record r = value_of(i);
    std::fprintf(f, "%s\t%llu\t%u\t%u\n", key_of(i).c_str(), static_cast<unsigned long long>(r.id),
                 r.a, r.b);
  }
  // On disk before any peer runs: otherwise its writeback lands in the first peer's build.
  std::fflush(f);
  ::fsync(::fileno(f));
  std::fclose(f);
}

source read_source(const fs::path& path) {
  source s;
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error("cannot read " + path.string());
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    char* tab = std::strchr(line, '\t');
    if (tab == nullptr) continue;
    s.keys.emplace_back(line, tab);
    record r{};
    char* p = tab + 1;
    r.id = std::strtoull(p, &p, 10);
    r.a = static_cast<std::uint32_t>(std::strtoul(p, &p, 10));
    r.b = static_cast<std::uint32_t>(std::strtoul(p, &p, 10));
    s.values.push_back(r);
  }
  std::fclose(f);
  return s;
}

std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// What the file takes on disk (du): its allocated blocks, so a hole (the space before an image's
// data) counts nothing.
std::uint64_t disk_bytes(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

std::uint64_t file_bytes(const fs::path& p) {
  std::error_code ec;
  const auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// ----- the peers --------------------------------------------------------------------------------

// A lookup function: the record for a key, or nullptr.
using finder = std::function<const record*(std::string_view)>;

struct sv_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

struct peer_state {
  // Whatever the peer keeps alive while it is looked up.
  std::unique_ptr<permafrost::image> img;
  std::unique_ptr<permafrost::arena> arena;
  const pf_map* map = nullptr;
  const mph_map* mph = nullptr;
  const tagline_map* tagline = nullptr;
  std::unordered_map<std::string, record, sv_hash, std::equal_to<>> std_map;
  absl::flat_hash_map<std::string, record> absl_map;
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
  struct cdb cdb {};
  int cdb_fd = -1;
  marisa::Trie trie;
  const record* marisa_records = nullptr;
  std::size_t marisa_records_bytes = 0;
  ~peer_state() {
    if (txn != nullptr) mdb_txn_abort(txn);
    if (env != nullptr) mdb_env_close(env);
    if (cdb_fd >= 0) {
      cdb_free(&cdb);
      ::close(cdb_fd);
    }
    if (marisa_records != nullptr)
      ::munmap(const_cast<record*>(marisa_records), marisa_records_bytes);
  }
};

struct files {
  fs::path dir;
  fs::path tsv() const { return dir / "source.tsv"; }
  fs::path image() const { return dir / "table.pfi"; }
  fs::path mph_image() const { return dir / "table-mph.pfi"; }
  fs::path tagline_image() const { return dir / "table-tagline.pfi"; }
  fs::path lmdb() const { return dir / "table.mdb"; }
  fs::path cdb() const { return dir / "table.cdb"; }
  fs::path marisa() const { return dir / "table.marisa"; }
  fs::path marisa_values() const { return dir / "table.marisa.values"; }
};

void check_lmdb(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string("lmdb ") + what + ": " + mdb_strerror(rc));
}

// Builds a table of `s` with Builder in a fresh arena (kept in st), freezes it, returns it.
template <class Builder>
const auto* build_frozen(const char* name, const source& s, peer_state& st) {
  st.arena = std::make_unique<permafrost::arena>(
      permafrost::arena_options{.capacity = std::size_t{64} << 30, .name = name});
  Builder b(*st.arena);
  b.reserve(s.keys.size());  // as the std and absl peers reserve theirs
  for (std::size_t i = 0; i < s.keys.size(); ++i) b.insert(s.keys[i], s.values[i]);
  const auto* table = &b.finish();
  st.arena->freeze();
  return table;
}

// Builds `peer` from `s` in this process; for the file peers also writes the file. Returns the
// CPU seconds of the build proper in *build_s and the wall seconds of the save in *save_s.
void build(const std::string& peer, const source& s, const files& f, peer_state& st,
           double* build_s, double* save_s) {
  const std::size_t n = s.keys.size();
  *save_s = 0;
  double t0 = bench::now_ns();
  const double cpu0 = bench::thread_cpu_ns();  // the build in CPU time, the save in wall time
  if (peer == "permafrost" || peer == "permafrost-rebuild") {
    st.map = build_frozen<permafrost::hash_map_builder<permafrost::string, record>>("bench-image",
                                                                                    s, st);
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
    if (peer == "permafrost") {
      t0 = bench::now_ns();
      permafrost::save_image(*st.arena, *st.map, f.image());
      *save_s = (bench::now_ns() - t0) / 1e9;
    }
  } else if (peer == "permafrost-mph") {
    st.mph =
        build_frozen<mph_layout::builder<permafrost::string, record>>("bench-image-mph", s, st);
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
    t0 = bench::now_ns();
    permafrost::save_image(*st.arena, *st.mph, f.mph_image());
    *save_s = (bench::now_ns() - t0) / 1e9;
  } else if (peer == "permafrost-tagline") {
    st.tagline = build_frozen<tagline_layout::builder<record>>("bench-image-tagline", s, st);
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
    t0 = bench::now_ns();
    permafrost::save_image(*st.arena, *st.tagline, f.tagline_image());
    *save_s = (bench::now_ns() - t0) / 1e9;
  } else if (peer == "std") {
    st.std_map.reserve(n);
    for (std::size_t i = 0; i < n; ++i) st.std_map.emplace(s.keys[i], s.values[i]);
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
  } else if (peer == "absl") {
    st.absl_map.reserve(n);
    for (std::size_t i = 0; i < n; ++i) st.absl_map.emplace(s.keys[i], s.values[i]);
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
  } else if (peer == "lmdb") {
    // LMDB's fastest bulk load: keys in order, appended in one transaction.
    std::vector<std::uint32_t> order(n);
    for (std::uint32_t i = 0; i < n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::uint32_t x, std::uint32_t y) { return s.keys[x] < s.keys[y]; });
    fs::remove(f.lmdb());
    fs::remove(f.lmdb().string() + "-lock");
    check_lmdb(mdb_env_create(&st.env), "env_create");
    check_lmdb(mdb_env_set_mapsize(st.env, std::max<std::size_t>(n * 256, std::size_t{64} << 20)),
               "set_mapsize");
    check_lmdb(mdb_env_open(st.env, f.lmdb().c_str(), MDB_NOSUBDIR | MDB_NOSYNC, 0644), "env_open");
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(st.env, nullptr, 0, &txn), "txn_begin");
    MDB_dbi dbi = 0;
    check_lmdb(mdb_dbi_open(txn, nullptr, 0, &dbi), "dbi_open");
    for (std::uint32_t i : order) {
      MDB_val k{s.keys[i].size(), const_cast<char*>(s.keys[i].data())};
      MDB_val v{sizeof(record), const_cast<record*>(&s.values[i])};
      check_lmdb(mdb_put(txn, dbi, &k, &v, MDB_APPEND), "put");
    }
    check_lmdb(mdb_txn_commit(txn), "commit");
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
    t0 = bench::now_ns();
    check_lmdb(mdb_env_sync(st.env, 1), "sync");
    *save_s = (bench::now_ns() - t0) / 1e9;
  } else if (peer == "cdb") {
    // tinycdb writes as it builds: the build is the save (fsync apart).
    const int fd = ::open(f.cdb().c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot create " + f.cdb().string());
    struct cdb_make m {};
    cdb_make_start(&m, fd);
    for (std::size_t i = 0; i < n; ++i)
      if (cdb_make_add(&m, s.keys[i].data(), static_cast<unsigned>(s.keys[i].size()), &s.values[i],
                       sizeof(record)) != 0)
        throw std::runtime_error("cdb_make_add");
    if (cdb_make_finish(&m) != 0) throw std::runtime_error("cdb_make_finish");
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
    t0 = bench::now_ns();
    ::fsync(fd);
    ::close(fd);
    *save_s = (bench::now_ns() - t0) / 1e9;
  } else if (peer == "marisa") {
    // A trie maps each key to a dense id; the records sit in an array indexed by it.
    marisa::Keyset ks;
    for (const auto& k : s.keys) ks.push_back(k.data(), k.size());
    st.trie.build(ks);
    std::vector<record> by_id(st.trie.num_keys());
    for (std::size_t i = 0; i < ks.size(); ++i) by_id[ks[i].id()] = s.values[i];
    *build_s = (bench::thread_cpu_ns() - cpu0) / 1e9;
    t0 = bench::now_ns();
    st.trie.save(f.marisa().c_str());
    std::FILE* out = std::fopen(f.marisa_values().c_str(), "w");
    if (out == nullptr ||
        std::fwrite(by_id.data(), sizeof(record), by_id.size(), out) != by_id.size())
      throw std::runtime_error("cannot write " + f.marisa_values().string());
    std::fflush(out);
    ::fsync(::fileno(out));
    std::fclose(out);
    *save_s = (bench::now_ns() - t0) / 1e9;
  } else {
    throw std::runtime_error("unknown peer " + peer);
  }
}

// Opens the file peer `peer` (built earlier) in this process.
void open_file(const std::string& peer, const files& f, peer_state& st) {
  if (peer == "permafrost" || peer == "permafrost-checked") {
    st.img = std::make_unique<permafrost::image>(
        permafrost::image::open(f.image(), {.verify_checksum = peer == "permafrost-checked"}));
    st.map = &st.img->root<pf_map>();
  } else if (peer == "permafrost-mph") {
    st.img = std::make_unique<permafrost::image>(
        permafrost::image::open(f.mph_image(), {.verify_checksum = false}));
    st.mph = &st.img->root<mph_map>();
  } else if (peer == "permafrost-tagline") {
    st.img = std::make_unique<permafrost::image>(
        permafrost::image::open(f.tagline_image(), {.verify_checksum = false}));
    st.tagline = &st.img->root<tagline_map>();
  } else if (peer == "lmdb") {
    check_lmdb(mdb_env_create(&st.env), "env_create");
    check_lmdb(mdb_env_open(st.env, f.lmdb().c_str(), MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0644),
               "env_open");
    check_lmdb(mdb_txn_begin(st.env, nullptr, MDB_RDONLY, &st.txn), "txn_begin");
    check_lmdb(mdb_dbi_open(st.txn, nullptr, 0, &st.dbi), "dbi_open");
  } else if (peer == "cdb") {
    st.cdb_fd = ::open(f.cdb().c_str(), O_RDONLY | O_CLOEXEC);
    if (st.cdb_fd < 0 || cdb_init(&st.cdb, st.cdb_fd) != 0) throw std::runtime_error("cdb_init");
  } else if (peer == "marisa") {
    st.trie.mmap(f.marisa().c_str());
    const int fd = ::open(f.marisa_values().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open " + f.marisa_values().string());
    st.marisa_records_bytes = static_cast<std::size_t>(file_bytes(f.marisa_values()));
    void* p = ::mmap(nullptr, st.marisa_records_bytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw std::runtime_error("mmap " + f.marisa_values().string());
    st.marisa_records = static_cast<const record*>(p);
  } else {
    throw std::runtime_error("not a file peer: " + peer);
  }
}

finder finder_of(const std::string& peer, peer_state& st) {
  if (st.map != nullptr) return [&st](std::string_view k) { return st.map->get(k); };
  if (st.mph != nullptr) return [&st](std::string_view k) { return st.mph->get(k); };
  if (st.tagline != nullptr) return [&st](std::string_view k) { return st.tagline->get(k); };
  if (peer == "std")
    return [&st](std::string_view k) -> const record* {
      const auto it = st.std_map.find(k);
      return it == st.std_map.end() ? nullptr : &it->second;
    };
  if (peer == "absl")
    return [&st](std::string_view k) -> const record* {
      const auto it = st.absl_map.find(absl::string_view(k.data(), k.size()));
      return it == st.absl_map.end() ? nullptr : &it->second;
    };
  if (peer == "lmdb")
    return [&st](std::string_view k) -> const record* {
      MDB_val key{k.size(), const_cast<char*>(k.data())};
      MDB_val v{};
      if (mdb_get(st.txn, st.dbi, &key, &v) != 0) return nullptr;
      return static_cast<const record*>(v.mv_data);
    };
  if (peer == "cdb")
    return [&st](std::string_view k) -> const record* {
      if (cdb_find(&st.cdb, k.data(), static_cast<unsigned>(k.size())) <= 0) return nullptr;
      return static_cast<const record*>(
          cdb_get(&st.cdb, cdb_datalen(&st.cdb), cdb_datapos(&st.cdb)));
    };
  if (peer == "marisa")
    return [&st](std::string_view k) -> const record* {
      marisa::Agent agent;
      agent.set_query(k.data(), k.size());
      if (!st.trie.lookup(agent)) return nullptr;
      return st.marisa_records + agent.key().id();
    };
  throw std::runtime_error("no finder for " + peer);
}

bool is_file_peer(const std::string& peer) {
  return peer == "permafrost" || peer == "permafrost-checked" || peer == "permafrost-mph" ||
         peer == "permafrost-tagline" || peer == "lmdb" || peer == "cdb" || peer == "marisa";
}

std::vector<fs::path> files_of(const std::string& peer, const files& f) {
  if (peer == "permafrost" || peer == "permafrost-checked") return {f.image()};
  if (peer == "permafrost-mph") return {f.mph_image()};
  if (peer == "permafrost-tagline") return {f.tagline_image()};
  if (peer == "lmdb") return {f.lmdb()};
  if (peer == "cdb") return {f.cdb()};
  if (peer == "marisa") return {f.marisa(), f.marisa_values()};
  return {f.tsv()};  // the in-memory peers rebuild from the source
}

// The share of the file mapping that starts at `p` mapped with 2 MiB page-table entries
// (FilePmdMapped / Rss in /proc/self/smaps): an image whose page-cache pages are 2 MiB folios
// costs a TLB entry per 2 MiB.
double huge_share(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  char start[32];
  std::snprintf(start, sizeof start, "%lx-", reinterpret_cast<unsigned long>(p));
  bool in = false;
  double rss = 0, pmd = 0;
  for (std::string line; std::getline(smaps, line);) {
    if (line.rfind(start, 0) == 0) in = true;
    else if (in && line.rfind("VmFlags", 0) == 0) break;
    else if (in && line.rfind("Rss:", 0) == 0) rss = std::strtod(line.c_str() + 4, nullptr);
    else if (in && line.rfind("FilePmdMapped:", 0) == 0)
      pmd = std::strtod(line.c_str() + 14, nullptr);
  }
  return rss > 0 ? pmd / rss : NAN;
}

// ----- worker modes (this program re-executed) ---------------------------------------------------

int worker_build(const std::string& peer, const files& f) {
  const source s = read_source(f.tsv());
  auto st = std::make_unique<peer_state>();
  const std::uint64_t before = resident_bytes();
  double build_s = 0, save_s = 0;
  build(peer, s, f, *st, &build_s, &save_s);
  const std::uint64_t grown = resident_bytes() - before;
  std::uint64_t disk = 0;
  if (is_file_peer(peer)) {
    for (const auto& p : files_of(peer, f)) disk += disk_bytes(p);
    st = std::make_unique<peer_state>();  // check what was saved, as a reader opens it
    open_file(peer, f, *st);
  }
  // A check that the structure answers, so a broken peer cannot post a good time.
  const finder find = finder_of(peer, *st);
  for (std::size_t i = 0; i < s.keys.size(); i += 97) {
    const record* r = find(s.keys[i]);
    if (r == nullptr || r->id != s.values[i].id)
      throw std::runtime_error(peer + ": wrong answer after build");
  }
  std::printf("build_s=%.6f save_s=%.6f disk=%llu resident=%llu\n", build_s, save_s,
              static_cast<unsigned long long>(disk), static_cast<unsigned long long>(grown));
  return 0;
}

// What a fresh process does before its first lookup: open the file, or rebuild from the source.
void open_or_rebuild(const std::string& peer, const files& f, peer_state& st) {
  if (is_file_peer(peer)) {
    open_file(peer, f, st);
  } else {
    const source s = read_source(f.tsv());
    double build_s = 0, save_s = 0;
    build(peer, s, f, st, &build_s, &save_s);
  }
}

// Spawned fresh: opens (or rebuilds) and answers one lookup; prints the clock at that moment.
int worker_first(const std::string& peer, const files& f, std::uint64_t probe) {
  const double t0 = bench::now_ns();
  peer_state st;
  open_or_rebuild(peer, f, st);
  const record* r = finder_of(peer, st)(key_of(probe));
  const double t1 = bench::now_ns();
  if (r == nullptr || r->id != probe) throw std::runtime_error(peer + ": wrong first answer");
  std::printf("first_ns=%.0f in_process_s=%.9f\n", t1, (t1 - t0) / 1e9);
  return 0;
}

int worker_lookups(const std::string& peer, const files& f, std::uint64_t n, int rounds) {
  peer_state st;
  open_or_rebuild(peer, f, st);
  const finder find = finder_of(peer, st);
  std::vector<std::uint64_t> order(n);
  for (std::uint64_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  std::vector<std::string> hits, misses;
  hits.reserve(n);
  misses.reserve(n);
  for (std::uint64_t i : order) {
    hits.push_back(key_of(i));
    misses.push_back(miss_of(i));
  }
  std::vector<double> hit_rate, miss_rate;
  std::uint64_t sum = 0;
  // Timed in CPU time (bench::thread_cpu_ns): other work on the machine is not charged to the peer.
  for (int r = 0; r < rounds + 1; ++r) {  // round 0 warms the pages and caches; not counted
    double t0 = bench::thread_cpu_ns();
    for (std::size_t i = 0; i < n; ++i) {
      const record* rec = find(hits[i]);
      if (rec == nullptr) throw std::runtime_error(peer + ": a hit was missed");
      sum += rec->a;
    }
    const double hit_s = (bench::thread_cpu_ns() - t0) / 1e9;
    t0 = bench::thread_cpu_ns();
    for (std::size_t i = 0; i < n; ++i)
      if (find(misses[i]) != nullptr) throw std::runtime_error(peer + ": a miss was found");
    const double miss_s = (bench::thread_cpu_ns() - t0) / 1e9;
    if (r > 0) {
      hit_rate.push_back(static_cast<double>(n) / hit_s);
      miss_rate.push_back(static_cast<double>(n) / miss_s);
    }
  }
  bench::keep(sum);
  std::printf("hits_per_s=%.0f misses_per_s=%.0f huge_share=%.3f\n", bench::median(hit_rate),
              bench::median(miss_rate), st.img ? huge_share(st.img->data().data()) : NAN);
  return 0;
}

// ----- the driver -------------------------------------------------------------------------------

// The selected word of /sys/kernel/mm/transparent_hugepage/enabled ("madvise": malloc'd memory
// gets no huge pages unless asked).
std::string thp_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string all;
  std::getline(f, all);
  const auto a = all.find('['), b = all.find(']');
  return a == std::string::npos || b == std::string::npos ? "unknown"
                                                          : all.substr(a + 1, b - a - 1);
}

struct row {
  std::string peer, label;
  double build_s = NAN, save_s = NAN, disk = NAN, resident = NAN;
  double first_warm = NAN, first_cold = NAN, in_process_warm = NAN;
  double hits = NAN, misses = NAN;
  double huge_share = NAN;  // of an image's resident pages, mapped 2 MiB at a time
};

double first_lookup(const std::string& peer, const files& f, std::uint64_t n, int runs, bool cold,
                    double* in_process) {
  std::vector<double> total, inside;
  for (int r = 0; r < runs; ++r) {
    if (cold)
      for (const auto& p : files_of(peer, f)) bench::drop_cache(p);
    const std::uint64_t probe = (static_cast<std::uint64_t>(r) * 7919) % n;
    const double t0 = bench::now_ns();
    const std::string out =
        bench::run_worker({"--worker", "first", peer, f.dir.string(), std::to_string(probe)});
    total.push_back((bench::field(out, "first_ns") - t0) / 1e9);
    inside.push_back(bench::field(out, "in_process_s"));
  }
  if (in_process != nullptr) *in_process = bench::median(inside);
  return bench::median(total);
}

std::string fmt_time(double s) {
  if (std::isnan(s)) return "—";
  char buf[32];
  if (s < 1e-3) std::snprintf(buf, sizeof buf, "%.0f µs", s * 1e6);
  else if (s < 1) std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  else std::snprintf(buf, sizeof buf, "%.2f s", s);
  return buf;
}
std::string fmt_bytes(double b) {
  if (std::isnan(b) || b == 0) return "—";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1 << 20));
  return buf;
}
std::string fmt_rate(double r) {
  if (std::isnan(r)) return "—";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f M/s", r / 1e6);
  return buf;
}

const row& find_row(const std::vector<row>& rows, const std::string& peer) {
  for (const auto& r : rows)
    if (r.peer == peer) return r;
  throw std::runtime_error("no row " + peer);
}

int driver(int argc, char** argv) {
  const bool smoke = bench::has_flag(argc, argv, "--smoke");
  std::uint64_t n = smoke ? 20000 : 1000000;
  if (bench::has_flag(argc, argv, "--10m")) n = 10000000;
  n = std::strtoull(bench::flag_value(argc, argv, "--keys", std::to_string(n).c_str()), nullptr,
                    10);
  const int rounds = std::atoi(bench::flag_value(argc, argv, "--rounds", smoke ? "1" : "3"));
  const int first_runs = smoke ? 1 : 5;
  // Lookups (and the build times the build goal compares) are measured `repeat` times, the peers
  // taking turns, and the medians reported: load from other work then hits every peer alike.
  const int repeat = std::max(1, std::atoi(bench::flag_value(argc, argv, "--repeat", "1")));
  const bool variants = bench::has_flag(argc, argv, "--variants");
  files f;
  const char* dir_flag = bench::flag_value(argc, argv, "--dir", nullptr);
  std::string made_dir;
  if (dir_flag != nullptr) {
    f.dir = dir_flag;
    fs::create_directories(f.dir);
  } else {
    char tmpl[] =
        "/var/tmp/permafrost-bench-image-XXXXXX";  // a disk, not tmpfs: cold reads are real
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    f.dir = made_dir = tmpl;
  }

  bench::print_header("bench/image", argc, argv);
  std::fprintf(stderr, "image: %llu keys in %s\n", static_cast<unsigned long long>(n),
               f.dir.c_str());
  write_source(f.tsv(), n);
  std::printf(
      "%llu string keys -> 16-byte records; source TSV %.1f MiB; %d lookup rounds of %llu hits and "
      "%llu misses per process, median of %d processes per peer taking turns; first lookup: "
      "median of %d fresh processes\n\n",
      static_cast<unsigned long long>(n), static_cast<double>(file_bytes(f.tsv())) / (1 << 20),
      rounds, static_cast<unsigned long long>(n), static_cast<unsigned long long>(n), repeat,
      first_runs);

  std::vector<row> rows = {
      {"permafrost", "permafrost image (checksum off)"},
      {"permafrost-checked", "permafrost image (checksum on)"},
      {"permafrost-rebuild", "permafrost hash_map, rebuilt"},
      {"lmdb", "LMDB"},
      {"cdb", "tinycdb"},
      {"marisa", "marisa-trie + record array"},
      {"absl", "absl::flat_hash_map, rebuilt"},
      {"std", "std::unordered_map, rebuilt"},
  };
  if (variants) {
    rows.push_back({"permafrost-mph", "permafrost image, rejected layout: MPH + slots"});
    rows.push_back(
        {"permafrost-tagline", "permafrost image, losing layout: tag lines, [value][key]"});
  }
  std::vector<std::vector<double>> builds(rows.size());
  for (auto& r : rows) {
    if (r.peer == "permafrost-checked") continue;  // same file as "permafrost"
    std::fprintf(stderr, "image: build %s\n", r.peer.c_str());
    const std::string out = bench::run_worker({"--worker", "build", r.peer, f.dir.string()});
    builds[static_cast<std::size_t>(&r - rows.data())].push_back(bench::field(out, "build_s"));
    r.save_s = bench::field(out, "save_s");
    r.disk = bench::field(out, "disk");
    r.resident = bench::field(out, "resident");
  }
  // The build goal's two sides again (the image's build in memory, without writing the file).
  for (int rep = 1; rep < repeat; ++rep)
    for (auto& r : rows) {
      if (r.peer != "permafrost" && r.peer != "std") continue;
      const std::string as = r.peer == "permafrost" ? "permafrost-rebuild" : r.peer;
      std::fprintf(stderr, "image: build %s (%d of %d)\n", as.c_str(), rep + 1, repeat);
      const std::string out = bench::run_worker({"--worker", "build", as, f.dir.string()});
      builds[static_cast<std::size_t>(&r - rows.data())].push_back(bench::field(out, "build_s"));
    }
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (!builds[i].empty()) rows[i].build_s = bench::median(builds[i]);
  {
    row& checked = rows[1];
    const row& plain = rows[0];
    checked.build_s = plain.build_s;
    checked.save_s = plain.save_s;
    checked.disk = plain.disk;
  }
  for (auto& r : rows) {
    std::fprintf(stderr, "image: first lookup %s (warm)\n", r.peer.c_str());
    r.first_warm = first_lookup(r.peer, f, n, first_runs, false, &r.in_process_warm);
    if (is_file_peer(r.peer)) {
      std::fprintf(stderr, "image: first lookup %s (cold)\n", r.peer.c_str());
      r.first_cold = first_lookup(r.peer, f, n, first_runs, true, nullptr);
    }
  }
  std::vector<std::vector<double>> hits(rows.size()), misses(rows.size());
  for (int rep = 0; rep < repeat; ++rep)
    for (auto& r : rows) {
      if (r.peer == "permafrost-checked" || r.peer == "permafrost-rebuild") continue;  // same
      std::fprintf(stderr, "image: lookups %s (%d of %d)\n", r.peer.c_str(), rep + 1, repeat);
      const std::string out = bench::run_worker({"--worker", "lookups", r.peer, f.dir.string(),
                                                 std::to_string(n), std::to_string(rounds)});
      const auto i = static_cast<std::size_t>(&r - rows.data());
      hits[i].push_back(bench::field(out, "hits_per_s"));
      misses[i].push_back(bench::field(out, "misses_per_s"));
      r.huge_share = bench::field(out, "huge_share");
    }
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (!hits[i].empty()) {
      rows[i].hits = bench::median(hits[i]);
      rows[i].misses = bench::median(misses[i]);
    }

  std::printf(
      "| peer | build | save | bytes on disk | resident after build | fresh process → first "
      "lookup, warm | (of which in the process) | cold cache | hits/s | misses/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows)
    std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.label.c_str(),
                fmt_time(r.build_s).c_str(), fmt_time(r.save_s).c_str(), fmt_bytes(r.disk).c_str(),
                fmt_bytes(r.resident).c_str(), fmt_time(r.first_warm).c_str(),
                fmt_time(r.in_process_warm).c_str(), fmt_time(r.first_cold).c_str(),
                fmt_rate(r.hits).c_str(), fmt_rate(r.misses).c_str());

  const row& pf = find_row(rows, "permafrost");
  const row& checked = find_row(rows, "permafrost-checked");
  const row& rebuild = find_row(rows, "permafrost-rebuild");
  const row& lmdb = find_row(rows, "lmdb");
  const row& cdb = find_row(rows, "cdb");
  const row& absl = find_row(rows, "absl");
  const row& stdm = find_row(rows, "std");
  // A goal is ">= x" or "<= x" (met or not), or empty (no goal: the ratio is for reading).
  auto ratio_line = [](const std::string& what, double x, const char* goal) {
    const char* verdict = "";
    if (goal[0] != '\0') {
      const double limit = std::strtod(goal + 3, nullptr);
      verdict = (goal[0] == '>' ? x >= limit : x <= limit) ? "met" : "NOT MET";
    }
    std::printf("| %s | %.2fx | %s | %s |\n", what.c_str(), x, goal, verdict);
  };
  std::printf("\n| ratio | measured | goal | |\n|---|---|---|---|\n");
  ratio_line("hits/s: permafrost image / LMDB", pf.hits / lmdb.hits, ">= 3x");
  ratio_line("hits/s: permafrost image / tinycdb", pf.hits / cdb.hits, ">= 2x");
  ratio_line("hits/s: permafrost image / absl::flat_hash_map", pf.hits / absl.hits, ">= 1.5x");
  ratio_line("misses/s: permafrost image / absl::flat_hash_map", pf.misses / absl.misses, ">= 1x");
  ratio_line("bytes: permafrost image on disk / absl resident", pf.disk / absl.resident,
             "<= 0.35x");
  ratio_line("build: permafrost hash_map / std::unordered_map", pf.build_s / stdm.build_s, "<= 1x");
  for (const auto& r : rows) {
    if (r.peer.rfind("permafrost-", 0) != 0 || std::isnan(r.hits)) continue;  // a rejected layout
    const std::string name = r.peer.substr(std::strlen("permafrost-"));
    ratio_line("hits/s: " + name + " layout / absl::flat_hash_map", r.hits / absl.hits, "");
    ratio_line("misses/s: " + name + " layout / absl::flat_hash_map", r.misses / absl.misses, "");
    ratio_line("bytes: " + name + " layout / absl resident", r.disk / absl.resident, "");
    ratio_line("build: " + name + " layout / std::unordered_map", r.build_s / stdm.build_s, "");
  }
  ratio_line("first lookup, in process: rebuild / open image",
             rebuild.in_process_warm / pf.in_process_warm, "");
  std::printf("\nopen + first lookup in the process, warm, checksum off: %s for a %.1f MiB image "
              "(goal for 1 GiB: <= 1 ms); checksum on: %s (%.1f GB/s)\n",
              fmt_time(pf.in_process_warm).c_str(), pf.disk / (1 << 20),
              fmt_time(checked.in_process_warm).c_str(), pf.disk / checked.in_process_warm / 1e9);
  std::printf(
      "image pages mapped 2 MiB at a time (FilePmdMapped / Rss) during the lookups: %.0f%%; "
      "the in-memory peers' heaps: 4 KiB pages (THP is \"%s\")\n",
      pf.huge_share * 100, thp_mode().c_str());
  std::fflush(stdout);
  if (!made_dir.empty()) fs::remove_all(made_dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 4 && std::strcmp(argv[1], "--worker") == 0) {
      files f;
      const std::string mode = argv[2], peer = argv[3];
      f.dir = argc > 4 ? argv[4] : ".";
      if (mode == "build") return worker_build(peer, f);
      if (mode == "first" && argc > 5)
        return worker_first(peer, f, std::strtoull(argv[5], nullptr, 10));
      if (mode == "lookups" && argc > 6)
        return worker_lookups(peer, f, std::strtoull(argv[5], nullptr, 10), std::atoi(argv[6]));
      std::fprintf(stderr, "image: bad worker arguments\n");
      return 2;
    }
    return driver(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "image: %s\n", e.what());
    return 1;
  }
}
