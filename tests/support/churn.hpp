// Test support: the allocation workloads of the heap tests and the heap_churn benchmark, written
// against any malloc/free pair so the same code runs on glibc, jemalloc, mimalloc and permafrost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace permafrost::test {

// A small deterministic generator (xorshift64*), so every allocator sees the same sequence.
struct rng {
  std::uint64_t state;
  std::uint64_t next() noexcept {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
  }
};

// A size between 8 B and 64 KiB, log-uniform (most requests small, as in real programs).
inline std::size_t churn_size(rng& r) noexcept {
  const unsigned shift = static_cast<unsigned>(r.next() % 14);  // 8 << 13 = 64 KiB
  const std::size_t lo = std::size_t{8} << shift;
  return lo + (shift == 13 ? 0 : r.next() % lo);
}

// Allocates `total` bytes in blocks of churn_size(), keeping a ring of `live` blocks: each step
// frees the ring's oldest block, so frees are interleaved with allocations throughout. Touches
// the first and last byte of every block. Returns a checksum that depends on every block's
// contents (keeps the work observable, and a corrupted heap shows as a wrong sum).
template <class Alloc, class Free>
std::uint64_t churn(std::size_t total, std::uint64_t seed, Alloc alloc, Free release,
                    std::size_t live = 2048) {
  rng r{seed | 1};
  auto** ring = static_cast<unsigned char**>(alloc(live * sizeof(unsigned char*)));
  auto* sizes = static_cast<std::size_t*>(alloc(live * sizeof(std::size_t)));
  std::memset(ring, 0, live * sizeof(unsigned char*));
  std::uint64_t sum = 0;
  std::size_t done = 0;
  for (std::size_t i = 0; done < total; ++i) {
    const std::size_t slot = i % live;
    if (ring[slot] != nullptr) {
      sum += ring[slot][0] + ring[slot][sizes[slot] - 1];
      release(ring[slot]);
    }
    const std::size_t n = churn_size(r);
    auto* p = static_cast<unsigned char*>(alloc(n));
    if (p == nullptr) return 0;
    p[0] = static_cast<unsigned char>(i);
    p[n - 1] = static_cast<unsigned char>(i >> 8);
    ring[slot] = p;
    sizes[slot] = n;
    done += n;
  }
  for (std::size_t slot = 0; slot < live; ++slot) {
    if (ring[slot] == nullptr) continue;
    sum += ring[slot][0] + ring[slot][sizes[slot] - 1];
    release(ring[slot]);
  }
  release(sizes);
  release(ring);
  return sum;
}

// The parent's long-lived heap: blocks of 16 B to 1 KiB totalling `total` bytes, each filled
// with a pattern, then every fourth one freed (the holes glibc's bins and mimalloc's free lists
// keep). The survivors stay in `blocks` (freed ones are nullptr).
template <class Alloc, class Free>
void build_parent_heap(std::size_t total, std::vector<unsigned char*>& blocks,
                       std::vector<std::size_t>& sizes, Alloc alloc, Free release) {
  rng r{42};
  std::size_t done = 0;
  while (done < total) {
    const std::size_t n = 16 + r.next() % 1009;
    auto* p = static_cast<unsigned char*>(alloc(n));
    std::memset(p, static_cast<int>(blocks.size() & 0xff), n);
    blocks.push_back(p);
    sizes.push_back(n);
    done += n;
  }
  for (std::size_t i = 0; i < blocks.size(); i += 4) {
    release(blocks[i]);
    blocks[i] = nullptr;
  }
}

// Checks the survivors still hold their pattern. Reads only.
inline bool parent_heap_intact(const std::vector<unsigned char*>& blocks,
                               const std::vector<std::size_t>& sizes) {
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] == nullptr) continue;
    const auto want = static_cast<unsigned char>(i & 0xff);
    if (blocks[i][0] != want || blocks[i][sizes[i] - 1] != want) return false;
  }
  return true;
}

}  // namespace permafrost::test
