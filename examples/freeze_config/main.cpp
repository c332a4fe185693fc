// examples/freeze_config — freeze a JSON config, fork 4 workers that read it, show 0 pages copied.
//
// The config is parsed with nlohmann::json into ordinary process memory, converted into a frozen
// arena (permafrost/json.hpp: objects become sorted_maps, arrays arrays, strings interned), the
// parse tree is dropped, the arena frozen. Each worker then walks the whole document and looks up
// a few settings; while the workers are alive the parent compares their page frames with its own
// (permafrost::sharing_audit, /proc/PID/pagemap): every arena page a worker read must still be the
// parent's frame.
//
// Usage: freeze_config [CONFIG.json] [--generate N] [--workers W]
//   CONFIG.json   default: config.json next to this source
//   --generate N  add N generated routes, so the document spans many pages
// Exit status 0 when every worker read the right values and copied 0 arena pages.
#include <permafrost/arena.hpp>
#include <permafrost/json.hpp>
#include <permafrost/memstat.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <cerrno>
#include <functional>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

// Counts every value in the document and sums the string bytes: reads every byte of it. An
// explicit stack, not recursion: a config may nest deeper than the thread's stack would allow.
void walk(const permafrost::frozen_json& root, std::size_t& values, std::size_t& string_bytes) {
  std::vector<const permafrost::frozen_json*> todo{&root};
  while (!todo.empty()) {
    const permafrost::frozen_json& v = *todo.back();
    todo.pop_back();
    ++values;
    if (v.is_string()) string_bytes += v.as_string().size();
    if (v.is_array())
      for (const auto& e : v.as_array()) todo.push_back(&e);
    if (v.is_object())
      for (const auto& m : v.as_object()) {
        string_bytes += m.key().size();
        todo.push_back(&m.value());
      }
  }
}

const char* const backends[] = {"web", "api", "cdn", "search", "auth"};

struct worker_result {
  int status = 0;  // wait status
  permafrost::sharing_report sharing;
};

// Forks `n` workers that run `work` and wait; once all have worked, audits each live worker's view
// of `range` against ours (permafrost::sharing_audit reads /proc/PID/pagemap), then lets them exit.
std::vector<worker_result> fork_and_audit(int n, std::span<const std::byte> range,
                                          const std::function<int()>& work) {
  int ready[2], go[2];
  if (::pipe(ready) != 0 || ::pipe(go) != 0) throw std::runtime_error("pipe failed");
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      int rc = 3;
      try {
        rc = work();
      } catch (...) {}
      char c = 'x';
      (void)!::write(ready[1], &c, 1);
      (void)!::read(go[0], &c, 1);
      ::_exit(rc);
    }
    pids.push_back(pid);
  }
  for (int i = 0; i < n; ++i) {
    char c;
    while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {}
  }
  std::vector<worker_result> results(pids.size());
  for (std::size_t i = 0; i < pids.size(); ++i)
    results[i].sharing = permafrost::sharing_audit(pids[i], 0, range);
  const std::vector<char> release(pids.size(), 'x');
  (void)!::write(go[1], release.data(), release.size());
  for (std::size_t i = 0; i < pids.size(); ++i)
    while (::waitpid(pids[i], &results[i].status, 0) < 0 && errno == EINTR) {}
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = PERMAFROST_EXAMPLE_DIR "/config.json";
  long generate = 0;
  int workers = 4;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--generate" && i + 1 < argc) generate = std::atol(argv[++i]);
    else if (arg == "--workers" && i + 1 < argc) workers = std::atoi(argv[++i]);
    else if (!arg.empty() && arg[0] != '-') path = arg;
    else {
      std::fprintf(stderr, "usage: freeze_config [CONFIG.json] [--generate N] [--workers W]\n");
      return 2;
    }
  }

  // 1. Parse into process memory, as any program does.
  nlohmann::json doc;
  try {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    doc = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "freeze_config: %s\n", e.what());
    return 1;
  }
  for (long i = 0; i < generate; ++i) {
    doc["routes"].push_back({{"path", "/generated/" + std::to_string(i)},
                             {"backend", backends[i % 5]},
                             {"methods", {"GET", "HEAD"}},
                             {"timeout_ms", 100 + i % 900}});
  }

  // 2. Convert into an arena, drop the parse tree, freeze.
  permafrost::arena_options options;
  options.name = "config";
  permafrost::arena arena(options);
  permafrost::intern_pool pool(arena);
  const permafrost::frozen_json& config = permafrost::copy_json(arena, doc, &pool);
  doc = nullptr;
  arena.freeze();
  const auto interned = pool.stats();
  pool.clear();

  std::size_t values = 0, string_bytes = 0;
  walk(config, values, string_bytes);
  const std::int64_t port = config["server"]["port"].as_int();
  const std::size_t routes = config["routes"].size();
  std::printf("config: %zu values, %zu routes, %zu arena bytes; %zu strings interned into %zu, "
              "%zu bytes saved\n",
              values, routes, arena.stats().used, interned.requests, interned.unique,
              interned.bytes_saved);

  // 3. Fork the workers; each reads everything and checks what it reads.
  const auto range = arena.used_bytes();
  const auto results = fork_and_audit(workers, range, [&] {
    std::size_t v = 0, sb = 0;
    walk(config, v, sb);
    const auto& server = config["server"];
    const bool ok = v == values && sb == string_bytes && server["port"].as_int() == port &&
                    server["host"].as_string() == "0.0.0.0" && !server["tls"].as_bool() &&
                    config["features"]["new_checkout"].as_bool() &&
                    config["routes"][1]["backend"].as_string() == "api" &&
                    config["routes"].size() == routes && config.find("missing") == nullptr;
    return ok ? 0 : 1;
  });

  bool all_good = true;
  std::printf("%-8s %-6s %11s %13s %12s\n", "worker", "status", "arena pages", "read (present)",
              "copied");
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    const bool ok = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
    std::printf("%-8zu %-6s %11zu %13zu %12zu\n", i + 1, ok ? "ok" : "FAILED", r.sharing.pages,
                r.sharing.child_present, r.sharing.copied);
    all_good = all_good && ok && r.sharing.copied == 0 && r.sharing.child_present > 0;
  }
  if (!results.empty()) std::printf("(%s)\n", results[0].sharing.method.c_str());
  std::printf("%s: %d workers read the frozen config; arena pages copied: %s\n",
              all_good ? "PASS" : "FAIL", workers, all_good ? "0" : "see above");
  return all_good ? 0 : 1;
}
