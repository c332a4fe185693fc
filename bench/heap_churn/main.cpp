// heap_churn: what a forked child's malloc does to the pages it shares with its parent.
//
// For each allocator, in its own process: the parent builds a heap of H MiB (16 B - 1 KiB
// blocks), frees every fourth block, forks; the child churns C MiB (8 B - 64 KiB, frees
// interleaved) through plain malloc/free; the parent then counts the pages the child copied out of
// everything it inherited (pagemap frames, root). Reports the median over the runs of pages
// dirtied and of churn throughput, and ratios against the permafrost process heap.
//
// Then, once per allocator (resident sizes do not vary between runs): the resident set after one
// touched block of --free MiB is freed, and after the allocator's own collection call (the probe
// finds mi_collect, jemalloc's purge or glibc's malloc_trim in its own process). Target: the
// permafrost heap within 2x of mimalloc's resident set after the free. And the resident set of
// an idle process 300 ms after it freed many 1-64 KiB blocks, with no allocator call since
// (what a server keeps between requests).
//
// Usage: heap_churn [--runs N] [--heap MiB] [--churn MiB] [--threads N] [--free MiB] [--smoke]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "heap_probe.hpp"

namespace {

struct peer {
  const char* name;
  std::string command;
};

struct sample {
  double pages = 0;
  double mib_per_s = 0;
};

// The probe's output for `command`, or empty (and a message) when it failed.
std::string output_of(const std::string& command) {
  FILE* f = ::popen(command.c_str(), "r");
  if (f == nullptr) return {};
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  if (::pclose(f) != 0) {
    std::fprintf(stderr, "failed: %s\n%s", command.c_str(), out.c_str());
    return {};
  }
  return out;
}

double field(const std::string& out, const char* key) {
  const std::string k = std::string(key) + "=";
  const auto at = out.find(k);
  return at == std::string::npos ? -1 : std::strtod(out.c_str() + at + k.size(), nullptr);
}

bool run(const std::string& command, double churn_mib, sample* s) {
  const std::string out = output_of(command);
  if (out.empty()) return false;
  if (field(out, "exit") != 0) {
    std::fprintf(stderr, "failed: %s\n%s", command.c_str(), out.c_str());
    return false;
  }
  s->pages = field(out, "dirtied_pages");
  s->mib_per_s = churn_mib / (field(out, "churn_ns") / 1e9);
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()
             ? 0
             : (v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  for (int i = 1; i < argc; ++i) smoke |= std::strcmp(argv[i], "--smoke") == 0;
  const std::size_t runs = permafrost::test::numeric_option(argc, argv, "--runs", smoke ? 1 : 7);
  const std::size_t heap = permafrost::test::numeric_option(argc, argv, "--heap", smoke ? 16 : 64);
  const std::size_t churn = permafrost::test::numeric_option(argc, argv, "--churn", smoke ? 8 : 50);
  const std::size_t threads = permafrost::test::numeric_option(argc, argv, "--threads", 0);
  const std::string args = " --heap " + std::to_string(heap) + " --churn " + std::to_string(churn) +
                           " --threads " + std::to_string(threads);
  const std::size_t free_mib =
      permafrost::test::numeric_option(argc, argv, "--free", smoke ? 64 : 1024);
  const std::vector<peer> programs = {
      {"glibc", PEER_GLIBC},
      {"jemalloc", PEER_JEMALLOC},
      {"mimalloc default heap", PEER_MIMALLOC},
      {"permafrost process heap", PEER_PERMAFROST},
      {"glibc program + LD_PRELOAD libpermafrost-malloc",
       "LD_PRELOAD=" MALLOC_LIBRARY " " PEER_GLIBC},
  };
  constexpr std::size_t mimalloc_index = 2;
  constexpr std::size_t permafrost_index = 3;
  std::vector<peer> peers;
  for (const peer& p : programs) peers.push_back({p.name, p.command + args});
  std::vector<std::vector<double>> pages(peers.size());
  std::vector<std::vector<double>> speed(peers.size());
  // Interleaved: every allocator once per round, so drift on the machine hits all alike.
  for (std::size_t r = 0; r < runs; ++r) {
    for (std::size_t i = 0; i < peers.size(); ++i) {
      sample s;
      if (!run(peers[i].command, static_cast<double>(churn), &s)) return 1;
      pages[i].push_back(s.pages);
      speed[i].push_back(s.mib_per_s);
    }
  }
  const double base_pages = std::max(1.0, median(pages[permafrost_index]));
  const double base_speed = median(speed[permafrost_index]);
  std::printf("heap %zu MiB (1/4 freed before fork), child churn %zu MiB, %zu child threads, "
              "median of %zu runs\n\n",
              heap, churn, threads, runs);
  std::printf("| allocator | inherited pages dirtied | KiB | x permafrost | churn MiB/s | x "
              "permafrost |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < peers.size(); ++i) {
    const double p = median(pages[i]);
    const double v = median(speed[i]);
    std::printf("| %s | %.0f | %.0f | %.1f | %.0f | %.2f |\n", peers[i].name, p, p * 4,
                p / base_pages, v, v / base_speed);
  }

  // Memory given back: one touched block freed, in each allocator's own process.
  std::vector<std::string> outs;
  for (const peer& p : programs) {
    outs.push_back(output_of(p.command + " --rss-after-free " + std::to_string(free_mib)));
    if (outs.back().empty()) return 1;
  }
  const double mimalloc_freed = field(outs[mimalloc_index], "rss_freed_kib");
  std::printf("\nresident set (MiB) after freeing one touched %zu MiB block\n\n", free_mib);
  std::printf("| allocator | before | touched | after free | x mimalloc | after collect | collect "
              "call |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---|\n");
  for (std::size_t i = 0; i < programs.size(); ++i) {
    const std::string& out = outs[i];
    const auto at = out.find("collect=");
    const std::string how =
        at == std::string::npos ? "?" : out.substr(at + 8, out.find('\n', at) - at - 8);
    std::printf("| %s | %.1f | %.1f | %.1f | %.2f | %.1f | %s |\n", programs[i].name,
                field(out, "rss_before_kib") / 1024, field(out, "rss_touched_kib") / 1024,
                field(out, "rss_freed_kib") / 1024, field(out, "rss_freed_kib") / mimalloc_freed,
                field(out, "rss_collected_kib") / 1024, how.c_str());
  }

  // Memory kept by an idle process: many blocks freed, then no allocator call (a server between
  // requests). mimalloc gives pages back only on a later call unless its decommit delay is 0,
  // which the malloc library leaves to the user (src/malloc/malloc.cpp): the last row sets it.
  std::vector<peer> idle_programs = programs;
  idle_programs.push_back({"glibc program + LD_PRELOAD libpermafrost-malloc, "
                           "MIMALLOC_DECOMMIT_DELAY=0",
                           "MIMALLOC_DECOMMIT_DELAY=0 LD_PRELOAD=" MALLOC_LIBRARY " " PEER_GLIBC});
  const std::size_t idle_mib = smoke ? 32 : 256;
  std::printf("\nresident set (MiB) when idle 300 ms after freeing %zu MiB of 1-64 KiB blocks\n\n",
              idle_mib);
  std::printf("| allocator | before | touched | idle after free | kept (idle - before) |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (const peer& p : idle_programs) {
    const std::string out = output_of(p.command + " --idle-after-free " + std::to_string(idle_mib));
    if (out.empty()) return 1;
    const double before = field(out, "rss_before_kib") / 1024;
    const double idle = field(out, "rss_idle_kib") / 1024;
    std::printf("| %s | %.1f | %.1f | %.1f | %.1f |\n", p.name, before,
                field(out, "rss_touched_kib") / 1024, idle, idle - before);
  }

  const double ratio = field(outs[permafrost_index], "rss_freed_kib") / mimalloc_freed;
  std::printf("\npermafrost heap after free: %.2fx mimalloc's resident set (target <= 2x): %s\n",
              ratio, ratio <= 2.0 ? "met" : "MISSED");
  return ratio <= 2.0 ? 0 : 1;
}
