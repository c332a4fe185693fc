// heap_churn: what a forked child's malloc does to the pages it shares with its parent.
//
// For each allocator, in its own process: the parent builds a heap of H MiB (16 B - 1 KiB
// blocks), frees every fourth block, forks; the child churns C MiB (8 B - 64 KiB, frees
// interleaved) through plain malloc/free; the parent then counts the pages the child copied out of
// everything it inherited (pagemap frames, root). Reports the median over the runs of pages
// dirtied and of churn throughput, and ratios against the permafrost process heap.
//
// Usage: heap_churn [--runs N] [--heap MiB] [--churn MiB] [--threads N] [--smoke]
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

double field(const std::string& out, const char* key) {
  const std::string k = std::string(key) + "=";
  const auto at = out.find(k);
  return at == std::string::npos ? -1 : std::strtod(out.c_str() + at + k.size(), nullptr);
}

bool run(const std::string& command, double churn_mib, sample* s) {
  FILE* f = ::popen(command.c_str(), "r");
  if (f == nullptr) return false;
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  const int rc = ::pclose(f);
  if (rc != 0 || field(out, "exit") != 0) {
    std::fprintf(stderr, "failed: %s\n%s", command.c_str(), out.c_str());
    return false;
  }
  s->pages = field(out, "dirtied_pages");
  s->mib_per_s = churn_mib / (field(out, "churn_ns") / 1e9);
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
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
  const std::vector<peer> peers = {
      {"glibc", std::string(PEER_GLIBC) + args},
      {"jemalloc", std::string(PEER_JEMALLOC) + args},
      {"mimalloc default heap", std::string(PEER_MIMALLOC) + args},
      {"permafrost process heap", std::string(PEER_PERMAFROST) + args},
      {"glibc program + LD_PRELOAD libpermafrost-malloc", "LD_PRELOAD=" MALLOC_LIBRARY " " + std::string(PEER_GLIBC) + args},
  };
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
  const double base_pages = std::max(1.0, median(pages[3]));
  const double base_speed = median(speed[3]);
  std::printf("heap %zu MiB (1/4 freed before fork), child churn %zu MiB, %zu child threads, median of %zu runs\n\n",
              heap, churn, threads, runs);
  std::printf("| allocator | inherited pages dirtied | KiB | x permafrost | churn MiB/s | x permafrost |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (std::size_t i = 0; i < peers.size(); ++i) {
    const double p = median(pages[i]);
    const double v = median(speed[i]);
    std::printf("| %s | %.0f | %.0f | %.1f | %.0f | %.2f |\n", peers[i].name, p, p * 4, p / base_pages, v,
                v / base_speed);
  }
  return 0;
}
