// permafrost for Python — numbers written as Python writes them (json_numbers.hpp).
#include "json_numbers.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

namespace permafrost::python {

std::size_t float_repr(double d, char* out) noexcept {
  // The shortest round-trip digits, as CPython's repr (dtoa mode 0) finds them, in scientific
  // form "-d.ddde+XX"; then laid out by CPython's rule for 'r' (Python/pystrtod.c,
  // format_float_short): exponent notation when the decimal point falls before the 4th zero
  // after it or more than 16 digits after the first digit.
  char sci[max_float_repr];
  const auto res = std::to_chars(sci, sci + sizeof sci, d, std::chars_format::scientific);
  const char* p = sci;
  char* o = out;
  if (*p == '-') *o++ = *p++;
  char digits[20];
  std::size_t nd = 0;
  for (; *p != 'e'; ++p)
    if (*p != '.') digits[nd++] = *p;
  ++p;  // 'e'
  int exp10 = 0;
  std::from_chars(p + (*p == '+'), res.ptr, exp10);
  const int decpt = exp10 + 1;  // digits[0] sits just before the decimal point when decpt == 1
  if (decpt <= -4 || decpt > 16) {
    *o++ = digits[0];
    if (nd > 1) {
      *o++ = '.';
      std::memcpy(o, digits + 1, nd - 1);
      o += nd - 1;
    }
    *o++ = 'e';
    *o++ = exp10 < 0 ? '-' : '+';
    const int e = exp10 < 0 ? -exp10 : exp10;
    if (e < 10) *o++ = '0';  // at least two exponent digits: 1e-05, 1e+16
    o = std::to_chars(o, o + 4, e).ptr;
    return static_cast<std::size_t>(o - out);
  }
  if (decpt <= 0) {  // 0.000ddd
    *o++ = '0';
    *o++ = '.';
    for (int i = decpt; i < 0; ++i) *o++ = '0';
    std::memcpy(o, digits, nd);
    o += nd;
  } else if (static_cast<std::size_t>(decpt) >= nd) {  // ddd000.0
    std::memcpy(o, digits, nd);
    o += nd;
    for (std::size_t i = nd; i < static_cast<std::size_t>(decpt); ++i) *o++ = '0';
    *o++ = '.';
    *o++ = '0';
  } else {  // dd.ddd
    std::memcpy(o, digits, static_cast<std::size_t>(decpt));
    o += decpt;
    *o++ = '.';
    std::memcpy(o, digits + decpt, nd - static_cast<std::size_t>(decpt));
    o += nd - static_cast<std::size_t>(decpt);
  }
  return static_cast<std::size_t>(o - out);
}

namespace {

// The magnitude of a two's complement integer as 32-bit limbs, least significant first, with
// no leading zero limbs. Sets negative.
std::vector<std::uint32_t> magnitude_limbs(const unsigned char* bytes, std::size_t n,
                                           bool& negative) {
  negative = n > 0 && (bytes[n - 1] & 0x80);
  std::vector<std::uint32_t> limbs((n + 3) / 4, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t b = negative ? static_cast<std::uint8_t>(~bytes[i]) : bytes[i];
    limbs[i / 4] |= b << (8 * (i % 4));
  }
  if (negative) {  // ~x + 1 (the sign's 0xff bytes past n invert to the zeros already there)
    bool carry = true;
    for (std::uint32_t& limb : limbs)
      if (++limb != 0) {
        carry = false;
        break;
      }
    if (carry) limbs.push_back(1);
  }
  while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  return limbs;
}

}  // namespace

std::size_t min_decimal_digits(const unsigned char* bytes, std::size_t n) noexcept {
  // Bits of the magnitude >= bits of the two's complement value minus one; digits >=
  // floor((bits - 1) * log10(2)) + 1. 0.30102999 < log10(2).
  std::size_t top = n;
  const unsigned char sign_fill = (n > 0 && (bytes[n - 1] & 0x80)) ? 0xff : 0x00;
  while (top > 0 && bytes[top - 1] == sign_fill) --top;
  if (top < 2) return 1;
  const std::size_t bits = 8 * (top - 1);
  return static_cast<std::size_t>(static_cast<double>(bits - 1) * 0.30102999) + 1;
}

std::size_t decimal_of_twos_complement(const unsigned char* bytes, std::size_t n,
                                       std::string& out) {
  bool negative = false;
  std::vector<std::uint32_t> limbs = magnitude_limbs(bytes, n, negative);
  // Repeated division by 10^9, chunks least significant first.
  std::vector<std::uint32_t> chunks;
  while (!limbs.empty()) {
    std::uint64_t rem = 0;
    for (std::size_t i = limbs.size(); i-- > 0;) {
      const std::uint64_t cur = (rem << 32) | limbs[i];
      limbs[i] = static_cast<std::uint32_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    chunks.push_back(static_cast<std::uint32_t>(rem));
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  }
  if (chunks.empty()) chunks.push_back(0);
  if (negative) out += '-';
  char buf[16];
  const std::size_t start = out.size();
  char* end = std::to_chars(buf, buf + sizeof buf, chunks.back()).ptr;
  out.append(buf, static_cast<std::size_t>(end - buf));
  for (std::size_t i = chunks.size() - 1; i-- > 0;) {
    char* e = std::to_chars(buf, buf + sizeof buf, chunks[i]).ptr;
    out.append(9 - static_cast<std::size_t>(e - buf), '0');
    out.append(buf, static_cast<std::size_t>(e - buf));
  }
  return out.size() - start;
}

}  // namespace permafrost::python
