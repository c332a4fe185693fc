// permafrost — the default hash of frozen containers.
//
// Contract: permafrost::hash<K> maps a key to 64 bits, the same value in every process of a run
// and in every run (no per-process seed: a table built before fork is read after it, and the
// home lines and tags derived from the hash must still match). String keys hash their bytes, so
// std::string_view, std::string, const char* and permafrost::string hash alike (heterogeneous
// lookup). Not hardened against chosen-key flooding: frozen tables are built once, from the
// server's own data.
//
// Thread safety: stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string_view>
#include <type_traits>

namespace permafrost {

namespace detail {

__extension__ typedef unsigned __int128 u128;

inline constexpr std::uint64_t hash_k0 = 0xa0761d6478bd642fULL;
inline constexpr std::uint64_t hash_k1 = 0xe7037ed1a0b428dbULL;
inline constexpr std::uint64_t hash_k2 = 0x8ebc6af09c88c6e3ULL;

// Multiply to 128 bits and fold: every input bit reaches every output bit.
inline std::uint64_t fold_multiply(std::uint64_t a, std::uint64_t b) noexcept {
  const u128 r = static_cast<u128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

inline std::uint64_t load64(const unsigned char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// 8 bytes at a time; the tail is read as (up to) two overlapping words, so short keys cost one
// or two multiplies and no byte loop.
inline std::uint64_t hash_bytes(const void* data, std::size_t n) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = hash_k0 ^ (n * hash_k2);
  if (n >= 8) {
    while (n > 8) {
      h = fold_multiply(load64(p) ^ hash_k1, h ^ hash_k0);
      p += 8;
      n -= 8;
    }
    h = fold_multiply(load64(p + n - 8) ^ hash_k2, h ^ hash_k1);
  } else if (n >= 4) {
    std::uint32_t a, b;
    std::memcpy(&a, p, 4);
    std::memcpy(&b, p + n - 4, 4);
    h = fold_multiply((static_cast<std::uint64_t>(a) << 32 | b) ^ hash_k1, h ^ hash_k0);
  } else if (n > 0) {
    const std::uint64_t w = static_cast<std::uint64_t>(p[0]) << 16 |
                            static_cast<std::uint64_t>(p[n >> 1]) << 8 | p[n - 1];
    h = fold_multiply(w ^ hash_k1, h ^ hash_k0);
  }
  return fold_multiply(h ^ hash_k2, n ^ hash_k1 ^ h);
}

inline std::uint64_t hash_word(std::uint64_t x) noexcept {
  return fold_multiply(x ^ hash_k0, hash_k1) ^ x;
}

}  // namespace detail

// The default Hash. Specialised below for strings and integers; anything else falls back to
// std::hash, remixed so the high bits (which pick the home line) are as good as the low ones
// (which are the tag).
template <class K, class = void>
struct hash {
  std::uint64_t operator()(const K& k) const noexcept {
    return detail::hash_word(static_cast<std::uint64_t>(std::hash<K>{}(k)));
  }
};

template <class K>
struct hash<K, std::enable_if_t<std::is_integral_v<K> || std::is_enum_v<K>>> {
  std::uint64_t operator()(K k) const noexcept {
    return detail::hash_word(static_cast<std::uint64_t>(k));
  }
};

// String keys: every type convertible to std::string_view hashes its bytes.
struct string_hash {
  using is_transparent = void;
  std::uint64_t operator()(std::string_view s) const noexcept {
    return detail::hash_bytes(s.data(), s.size());
  }
};

}  // namespace permafrost
