// permafrost — one 64-byte line of the frozen hash table's index (internal).
//
// Contract: a line describes up to `capacity` consecutive entries of the table's entry block: a
// one-byte tag per entry (8 bits of the key's hash that do not pick the line), for variable-sized
// entries a one-byte size per entry (in units of the entry alignment; 0 = 256 units or more, read
// from the entry), the unit offset of its first entry, and where the entries whose home is this
// line begin. A lookup reads one line: it compares the key's tag with every tag at once (SSE2, or
// eight bytes at a time elsewhere), so a miss is usually answered by the line alone, and a hit
// finds its entry's offset by summing the sizes before it, in the same line. See docs/design.md,
// section 3, "Layout".
//
// Thread safety: plain data, written once by the builder; read from any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace permafrost::detail {

inline constexpr std::size_t hash_line_bytes = 64;

// Tags of sized lines: 28 tags, 28 sizes, 8 header bytes; of fixed-size lines: 56 tags.
template <bool Sized>
inline constexpr std::size_t hash_line_capacity = Sized ? 28 : 56;

// The line's flags.
inline constexpr std::uint8_t line_spills = 1;   // the next line begins with entries homed here or
                                                 // earlier (this line is full)
inline constexpr std::uint8_t line_has_big = 2;  // a size byte is 0: an entry of >= 256 units

// Not alignas(64): the builder allocates lines 64-byte aligned (one cache line each), but a copy of
// a table's bytes at another address (an image read from a buffer) need only keep 4 bytes.
template <bool Sized>
struct hash_line {
  static constexpr std::size_t capacity = hash_line_capacity<Sized>;

  std::uint8_t slots[56];  // tags [0, capacity), then (Sized) sizes [capacity, 2 * capacity)
  std::uint8_t count;      // entries described: tags [0, count)
  std::uint8_t own;        // entries [own, count) have this line as their home; [0, own) spilled in
  std::uint8_t flags;      // line_spills, line_has_big
  std::uint8_t reserved;
  std::uint32_t base;  // unit offset of the first entry in the table's entry block

  const std::uint8_t* tags() const noexcept { return slots; }
  const std::uint8_t* sizes() const noexcept { return slots + capacity; }
};
static_assert(sizeof(hash_line<true>) == hash_line_bytes && offsetof(hash_line<true>, base) == 60);
static_assert(sizeof(hash_line<false>) == hash_line_bytes && 2 * hash_line_capacity<true> == 56 &&
              hash_line_capacity<false> == 56);

// Bit i set: tags[i] == tag, for i < 64 (bits past `count` are noise; the caller masks them).
template <bool Sized>
inline std::uint64_t match_tags_portable(const hash_line<Sized>& l, std::uint8_t tag) noexcept {
  // Eight tags per word: a byte of w ^ broadcast(tag) is zero exactly where the tag matches.
  // ((x & 0x7f) + 0x7f) | x has bit 7 set in every nonzero byte, with no carry between bytes.
  constexpr std::uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
  const std::uint64_t wanted = 0x0101010101010101ull * tag;
  std::uint64_t bits = 0;
  for (std::size_t w = 0; w < (hash_line<Sized>::capacity + 7) / 8; ++w) {
    std::uint64_t x;
    std::memcpy(&x, reinterpret_cast<const unsigned char*>(&l) + 8 * w, 8);
    x ^= wanted;
    const std::uint64_t zero = ~(((x & low7) + low7) | x) & ~low7;  // bit 7 of each zero byte
    // Gather the eight bit-7 flags into one byte (the multiply moves flag k to bit 56 + k).
    bits |= (((zero >> 7) * 0x0102040810204080ull) >> 56) << (8 * w);
  }
  return bits;
}

template <bool Sized>
inline std::uint64_t match_tags(const hash_line<Sized>& l, std::uint8_t tag) noexcept {
#if defined(__SSE2__)
  const __m128i wanted = _mm_set1_epi8(static_cast<char>(tag));
  const auto* p = reinterpret_cast<const __m128i*>(&l);
  std::uint64_t bits = 0;
  for (std::size_t v = 0; v < (hash_line<Sized>::capacity + 15) / 16; ++v)
    bits |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(
                _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(p + v), wanted))))
            << (16 * v);
  return bits;
#else
  return match_tags_portable(l, tag);
#endif
}

// Bits [lo, hi) set; hi <= 63.
inline std::uint64_t bit_range(unsigned lo, unsigned hi) noexcept {
  return ((std::uint64_t{1} << hi) - 1) & ~((std::uint64_t{1} << lo) - 1);
}

// Byte masks for the size sums: 32 bytes of 0xff, then 32 zeros; the 32 bytes from 32 - j on are
// j bytes of 0xff and then zeros.
alignas(64) inline constexpr std::uint8_t first_bytes_mask[64] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0};

inline std::size_t size_prefix_portable(const hash_line<true>& l, std::size_t j) noexcept {
  // Four words of eight sizes, each masked to the sizes before j (no branch on j: a mispredicted
  // loop exit here would also discard the next lookup's speculative loads). The bytes are added
  // pairwise into 16-bit lanes (each <= 510), and the lanes with one multiply.
  const std::uint8_t* mask = first_bytes_mask + 32 - j;
  std::size_t sum = 0;
  for (std::size_t w = 0; w < 4; ++w) {
    std::uint64_t x, m;
    std::memcpy(&x, l.sizes() + 8 * w, 8);  // past the sizes: masked off
    std::memcpy(&m, mask + 8 * w, 8);
    x &= m;
    x = (x & 0x00ff00ff00ff00ffull) + ((x >> 8) & 0x00ff00ff00ff00ffull);
    sum += static_cast<std::size_t>((x * 0x0001000100010001ull) >> 48);
  }
  return sum;
}

// The sum of sizes[0, j) of a sized line (j <= capacity); each size < 256, so the sum fits.
inline std::size_t size_prefix(const hash_line<true>& l, std::size_t j) noexcept {
#if defined(__SSE2__)
  // Two 16-byte loads of sizes (the second reaches into the header: masked off), each masked to
  // the sizes before j, summed by _mm_sad_epu8 into two 64-bit halves.
  const auto* sizes = reinterpret_cast<const __m128i*>(l.sizes());
  const auto* mask = reinterpret_cast<const __m128i*>(first_bytes_mask + 32 - j);
  const __m128i zero = _mm_setzero_si128();
  const __m128i sums = _mm_add_epi64(
      _mm_sad_epu8(_mm_and_si128(_mm_loadu_si128(sizes), _mm_loadu_si128(mask)), zero),
      _mm_sad_epu8(_mm_and_si128(_mm_loadu_si128(sizes + 1), _mm_loadu_si128(mask + 1)), zero));
  return static_cast<std::size_t>(_mm_cvtsi128_si32(sums)) +
         static_cast<std::size_t>(_mm_cvtsi128_si32(_mm_unpackhi_epi64(sums, sums)));
#else
  return size_prefix_portable(l, j);
#endif
}

}  // namespace permafrost::detail
