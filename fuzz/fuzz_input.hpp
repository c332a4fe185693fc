// Fuzz support: reads an input as a stream of small integers; past the end everything reads 0.
#pragma once

#include <cstddef>
#include <cstdint>

namespace permafrost::fuzz {

class input {
 public:
  input(const std::uint8_t* data, std::size_t size) noexcept : p_(data), n_(size) {}

  bool empty() const noexcept { return n_ == 0; }

  std::uint8_t byte() noexcept {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }

  // Multi-byte reads are sequenced statement by statement: the order in which operands of `|`
  // or function arguments are evaluated is unspecified, and an input must mean the same program
  // to every compiler (a crash found by clang replays under g++).
  std::uint16_t u16() noexcept {
    const unsigned lo = byte();
    const unsigned hi = byte();
    return static_cast<std::uint16_t>(lo | hi << 8);
  }

  std::uint32_t u32() noexcept {
    const std::uint32_t lo = u16();
    const std::uint32_t hi = u16();
    return lo | hi << 16;
  }

  // A size skewed towards small values: mostly < 256, sometimes up to 64 KiB, rarely up to 16 MiB
  // or one of the extremes (0, SIZE_MAX and its neighbours).
  std::size_t size() noexcept {
    switch (byte() % 16) {
      case 0: return u16();
      case 1: return u32() % (std::size_t{16} << 20);
      case 2: return 0;
      case 3: return SIZE_MAX - (byte() % 4096);
      default: return byte();
    }
  }

  // An alignment: usually a power of two up to 8 KiB, sometimes invalid (0, not a power of
  // two) or beyond the arena's limit.
  std::size_t alignment() noexcept {
    const std::uint8_t b = byte();
    switch (b % 16) {
      case 0: return b / 16;                      // 0..15, mostly not powers of two
      case 1: return std::size_t{1} << (b % 64);  // up to 2^63, beyond max_alignment
      default: return std::size_t{1} << (b % 14);
    }
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

}  // namespace permafrost::fuzz
