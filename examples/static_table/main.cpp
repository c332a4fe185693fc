// examples/static_table — static lookup tables frozen before fork, served by preforked workers.
//
// Loads the word list of Debian's wamerican package and a generated table of rows into frozen
// hash_maps and sorted_maps, freezes the arena, forks 4 workers that answer queries on a Unix
// socket, then acts as the client: sends queries of every kind, checks each answer against its
// own copy of the source data, and finally compares the workers' page frames with its own
// (permafrost::sharing_audit over /proc/PID/pagemap) to show that serving copied no arena page.
//
// Protocol, one line per query and per answer:
//   W <word>     -> "1 <line number>" | "0"              (hash_map<string, uint32>)
//   P <prefix>   -> "<words with prefix> <first or ->"   (sorted_map<string, uint32>::lower_bound)
//   S <sku>      -> "<id> <stock> <price> <name>" | "0"  (hash_map<string, row>)
//   I <id>       -> "<first id >= id> <stock>" | "-"     (sorted_map<uint64, row>::lower_bound)
//
// With --image PATH the tables outlive the process: the first start builds them and saves the
// arena as a frozen image (permafrost::save_image); every later start opens the image
// (permafrost::image::open, no rebuild) and serves from it. Each start prints its time to ready.
//
// Usage: static_table [--rows N] [--words PATH] [--workers W] [--queries Q] [--image PATH]
//   defaults: 1,000,000 rows, /usr/share/dict/words, 4 workers, 40,000 queries, no image
// Exit status 0 when every answer was right and no worker copied an arena page.
#include <permafrost/containers.hpp>
#include <permafrost/image.hpp>
#include <permafrost/memstat.hpp>
#include <permafrost/offset_ptr.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using pstring = permafrost::string;

struct row {
  std::uint64_t id;
  std::uint32_t stock;
  std::uint32_t price_cents;
  pstring name;
};

// The generated table: every field a function of the row number, so the client can check answers.
std::string sku_of(std::size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "sku-%08zu", i);
  return buf;
}
std::uint64_t id_of(std::size_t i) { return std::uint64_t{i} * 7 + 3; }
std::uint32_t stock_of(std::size_t i) {
  return static_cast<std::uint32_t>((i * 2654435761u) % 1000);
}
std::uint32_t price_of(std::size_t i) {
  return static_cast<std::uint32_t>(99 + (i * 40503u) % 100000);
}

struct tables {
  const permafrost::hash_map<pstring, std::uint32_t>* words;
  const permafrost::sorted_map<pstring, std::uint32_t>* words_sorted;
  const permafrost::hash_map<pstring, row>* rows_by_sku;
  const permafrost::sorted_map<std::uint64_t, row>* rows_by_id;
};

// The image root: the four tables by offset (never by address), so the image reads right
// wherever a later start maps it.
struct table_root {
  permafrost::offset_ptr<const permafrost::hash_map<pstring, std::uint32_t>> words;
  permafrost::offset_ptr<const permafrost::sorted_map<pstring, std::uint32_t>> words_sorted;
  permafrost::offset_ptr<const permafrost::hash_map<pstring, row>> rows_by_sku;
  permafrost::offset_ptr<const permafrost::sorted_map<std::uint64_t, row>> rows_by_id;
  std::uint64_t rows = 0;  // the --rows the image was built with

  // The position check's hook (save_image looks inside a root only through it): each member
  // points into the arena, and each container's own hook checks what it holds.
  bool points_into(const permafrost::arena& a) const {
    return points_into_with_target(words, a) && points_into_with_target(words_sorted, a) &&
           points_into_with_target(rows_by_sku, a) && points_into_with_target(rows_by_id, a);
  }

 private:
  // An offset_ptr's hook checks where it points, not what its target holds: check both.
  template <class T>
  static bool points_into_with_target(const permafrost::offset_ptr<const T>& p,
                                      const permafrost::arena& a) {
    return permafrost::points_into(p, a) && (p.get() == nullptr || permafrost::points_into(*p, a));
  }
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string answer(const tables& t, std::string_view q) {
  if (q.size() < 2 || q[1] != ' ') return "?";
  const std::string_view arg = q.substr(2);
  switch (q[0]) {
    case 'W': {
      const auto e = t.words->find(arg);
      return e != nullptr ? "1 " + std::to_string(e->value()) : "0";
    }
    case 'P': {
      std::size_t n = 0;
      std::string first = "-";
      for (auto it = t.words_sorted->lower_bound(arg); it != t.words_sorted->end(); ++it) {
        const std::string_view w = it->key();
        if (w.substr(0, arg.size()) != arg) break;
        if (n++ == 0) first = std::string(w);
      }
      return std::to_string(n) + " " + first;
    }
    case 'S': {
      const auto e = t.rows_by_sku->find(arg);
      if (e == nullptr) return "0";
      const row& r = e->value();
      return std::to_string(r.id) + " " + std::to_string(r.stock) + " " +
             std::to_string(r.price_cents) + " " + r.name.str();
    }
    case 'I': {
      const auto it =
          t.rows_by_id->lower_bound(std::strtoull(std::string(arg).c_str(), nullptr, 10));
      if (it == t.rows_by_id->end()) return "-";
      return std::to_string(it->key()) + " " + std::to_string(it->value().stock);
    }
    default: return "?";
  }
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads one '\n'-terminated line from fd through `buf`; false at EOF or error.
bool read_line(int fd, std::string& buf, std::string& line) {
  for (;;) {
    const auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      line.assign(buf, 0, nl);
      buf.erase(0, nl + 1);
      return true;
    }
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf.append(chunk, static_cast<std::size_t>(n));
  }
}

[[noreturn]] void serve(int listener, const tables& t) {
  for (;;) {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) {
      if (errno == EINTR) continue;
      ::_exit(3);
    }
    std::string buf, line;
    while (read_line(c, buf, line)) {
      if (!write_all(c, answer(t, line) + "\n")) break;
    }
    ::close(c);
  }
}

int connect_to(const sockaddr_un& addr) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

PERMAFROST_IMAGE_TYPE(table_root, "permafrost.examples.static_table.v1");

int main(int argc, char** argv) {
  const auto started = std::chrono::steady_clock::now();
  std::size_t rows = 1'000'000;
  std::size_t queries = 40'000;
  int workers = 4;
  std::string words_path = "/usr/share/dict/words";
  std::string image_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--rows" && i + 1 < argc) rows = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--queries" && i + 1 < argc) queries = std::strtoull(argv[++i], nullptr, 10);
    else if (arg == "--workers" && i + 1 < argc) workers = std::atoi(argv[++i]);
    else if (arg == "--words" && i + 1 < argc) words_path = argv[++i];
    else if (arg == "--image" && i + 1 < argc) image_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: static_table [--rows N] [--words PATH] [--workers W] [--queries "
                           "Q] [--image PATH]\n");
      return 2;
    }
  }
  if (workers < 1 || rows < 1) {
    std::fprintf(stderr, "static_table: need at least one worker and one row\n");
    return 2;
  }

  // ----- a later start: open the image instead of building ------------------------------------
  std::optional<permafrost::image> img;
  std::optional<tables> opened;
  if (!image_path.empty() && std::filesystem::exists(image_path)) {
    try {
      img.emplace(permafrost::image::open(image_path));
      const table_root& root = img->root<table_root>();
      if (root.rows != rows) {
        std::fprintf(stderr, "static_table: %s holds %llu rows, not %zu: remove it to rebuild\n",
                     image_path.c_str(), static_cast<unsigned long long>(root.rows), rows);
        return 2;
      }
      opened = tables{root.words.get(), root.words_sorted.get(), root.rows_by_sku.get(),
                      root.rows_by_id.get()};
    } catch (const permafrost::image_error& e) {
      std::fprintf(stderr, "static_table: %s\n", e.what());
      return 1;
    }
    std::printf("start: opened image %s (%.1f MiB) in %.1f ms; ready to serve\n",
                image_path.c_str(), static_cast<double>(img->data().size()) / (1 << 20),
                ms_since(started));
  }

  // ----- the source data, kept in process memory as the client's reference ---------------------
  std::vector<std::string> words;
  {
    std::ifstream in(words_path);
    if (!in) {
      std::fprintf(stderr, "static_table: cannot read %s (Debian package wamerican)\n",
                   words_path.c_str());
      return 1;
    }
    for (std::string w; std::getline(in, w);)
      if (!w.empty()) words.push_back(w);
  }
  if (words.empty()) {
    std::fprintf(stderr, "static_table: %s has no words\n", words_path.c_str());
    return 1;
  }

  // ----- build and freeze (skipped when an image was opened) -----------------------------------
  std::unordered_map<std::string_view, std::uint32_t> word_line;  // the client's truth
  for (std::size_t i = 0; i < words.size(); ++i)
    word_line.emplace(words[i], static_cast<std::uint32_t>(i + 1));
  permafrost::arena_options options;
  options.name = "static_table";
  permafrost::arena arena(options);
  const tables t = opened ? *opened : [&] {
    permafrost::intern_pool pool(arena);
    permafrost::hash_map_builder<pstring, std::uint32_t> wb{arena};
    permafrost::sorted_map_builder<pstring, std::uint32_t> wsb{arena};
    for (std::size_t i = 0; i < words.size(); ++i) {
      const auto line = static_cast<std::uint32_t>(i + 1);
      wb.insert(words[i], line);  // duplicate_policy::reject: the first line of a word wins
      wsb.insert(words[i], line);
    }
    permafrost::hash_map_builder<pstring, row> rb{arena};
    permafrost::sorted_map_builder<std::uint64_t, row> rib{arena};
    for (std::size_t i = 0; i < rows; ++i) {
      const row r{id_of(i), stock_of(i), price_of(i),
                  pool.intern("product-" + words[i % words.size()])};
      rb.insert(sku_of(i), r);
      rib.insert(id_of(i), r);
    }
    const tables built{&wb.finish(), &wsb.finish(), &rb.finish(), &rib.finish()};
    table_root* root = image_path.empty() ? nullptr : arena.make<table_root>();
    if (root != nullptr)
      *root =
          table_root{built.words, built.words_sorted, built.rows_by_sku, built.rows_by_id, rows};
    arena.freeze();
    const auto interned = pool.stats();
    pool.clear();
    std::printf("frozen: %zu words, %zu rows, %.1f MiB in the arena (names: %zu interned into %zu, "
                "%.1f MiB saved)\n",
                built.words->size(), built.rows_by_sku->size(),
                static_cast<double>(arena.stats().used) / (1 << 20), interned.requests,
                interned.unique, static_cast<double>(interned.bytes_saved) / (1 << 20));
    if (root != nullptr) {
      const double built_ms = ms_since(started);
      permafrost::save_image(arena, *root, image_path);
      std::printf("start: built in %.1f ms, saved image %s in %.1f ms; later starts open it\n",
                  built_ms, image_path.c_str(), ms_since(started) - built_ms);
    } else {
      std::printf("start: built in %.1f ms; ready to serve\n", ms_since(started));
    }
    return built;
  }();

  // ----- prefork the workers -------------------------------------------------------------------
  char dir[] = "/tmp/permafrost-static-table-XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s/socket", dir);
  const int listener = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 64) != 0) {
    std::perror("static_table: socket");
    return 1;
  }
  std::fflush(stdout);
  std::vector<pid_t> pids;
  for (int w = 0; w < workers; ++w) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    if (pid == 0) serve(listener, t);
    pids.push_back(pid);
  }

  // ----- the client: one connection per worker, queries round-robin ----------------------------
  std::vector<int> conns;
  for (int w = 0; w < workers; ++w) {
    const int fd = connect_to(addr);
    if (fd < 0) {
      std::perror("static_table: connect");
      return 1;
    }
    conns.push_back(fd);
  }
  std::set<std::string_view> sorted_words(words.begin(), words.end());
  std::mt19937_64 rng(2026);
  std::size_t wrong = 0, asked = 0;
  std::vector<std::string> bufs(conns.size());
  for (std::size_t q = 0; q < queries; ++q) {
    const std::string& word = words[rng() % words.size()];
    const std::size_t i = rng() % (rows + rows / 10);  // ~9% absent skus and ids past the end
    std::string query, expect;
    switch (q % 4) {
      case 0:
        if (rng() % 4 == 0) {
          query = "W " + word + "-not-a-word";
          expect = "0";
        } else {
          query = "W " + word;
          expect = "1 " + std::to_string(word_line.at(word));
        }
        break;
      case 1: {
        const std::string prefix = word.substr(0, 1 + rng() % 3);
        std::size_t n = 0;
        std::string first = "-";
        for (auto it = sorted_words.lower_bound(prefix);
             it != sorted_words.end() && it->substr(0, prefix.size()) == prefix; ++it)
          if (n++ == 0) first = std::string(*it);
        query = "P " + prefix;
        expect = std::to_string(n) + " " + first;
        break;
      }
      case 2:
        query = "S " + sku_of(i);
        expect = i < rows ? std::to_string(id_of(i)) + " " + std::to_string(stock_of(i)) + " " +
                                std::to_string(price_of(i)) + " product-" + words[i % words.size()]
                          : "0";
        break;
      default: {
        const std::uint64_t probe = id_of(i) - (i % 3);  // exact ids and ids between rows
        query = "I " + std::to_string(probe);
        expect = i < rows ? std::to_string(id_of(i)) + " " + std::to_string(stock_of(i)) : "-";
        break;
      }
    }
    const std::size_t c = q % conns.size();
    std::string reply;
    if (!write_all(conns[c], query + "\n") || !read_line(conns[c], bufs[c], reply)) {
      std::fprintf(stderr, "static_table: connection %zu failed\n", c);
      return 1;
    }
    ++asked;
    if (reply != expect) {
      if (++wrong <= 5)
        std::fprintf(stderr, "wrong answer: %s -> %s (expected %s)\n", query.c_str(), reply.c_str(),
                     expect.c_str());
    }
  }

  // ----- sharing: compare the live workers' frames with ours, then stop them -------------------
  const auto range = img ? img->data() : arena.used_bytes();
  bool shared = true;
  std::string method;
  std::printf("%-8s %11s %13s %8s\n", "worker", "arena pages", "read (present)", "copied");
  for (std::size_t w = 0; w < pids.size(); ++w) {
    const auto s = permafrost::sharing_audit(pids[w], 0, range);
    std::printf("%-8zu %11zu %13zu %8zu\n", w + 1, s.pages, s.child_present, s.copied);
    shared = shared && s.copied == 0 && s.child_present > 0;
    method = s.method;
  }
  std::printf("(%s)\n", method.c_str());
  for (int fd : conns) ::close(fd);
  for (pid_t pid : pids) ::kill(pid, SIGTERM);
  bool workers_ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    workers_ok = workers_ok && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
  }
  ::unlink(addr.sun_path);
  ::rmdir(dir);

  const bool pass = wrong == 0 && asked == queries && shared && workers_ok;
  std::printf("%s: %zu queries over %d workers, %zu wrong answers; arena pages copied: %s\n",
              pass ? "PASS" : "FAIL", asked, workers, wrong, shared ? "0" : "see above");
  return pass ? 0 : 1;
}
