// permafrost for Python — numbers written as Python writes them, without Python objects.
//
// Contract: the text each function produces is exactly CPython's for the same value:
// float_repr(d) is repr(float) (the shortest digits that read back to d, fixed notation for
// decimal exponents -4 < e <= 16 with ".0" on integral values, else "1.5e+16" / "1e-05"), and
// decimal_of_twos_complement() is int.__repr__ of a little-endian two's complement integer.
// permafrost.dumps writes frozen numbers with them, so a frozen float or big int becomes JSON text
// without a PyFloat or PyLong being made; python/tests/test_json.py compares them with repr() on
// hundreds of thousands of values.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace permafrost::python {

// Longest float_repr() output: "-" + 17 digits + "e-324" or "0." + 4 zeros + 17 digits.
inline constexpr std::size_t max_float_repr = 32;

// Writes repr(d) of a finite double to out (at least max_float_repr bytes); returns its length.
// Effects: none. Throws: nothing. NaN and infinities are the caller's (JSON spells them NaN,
// Infinity, -Infinity).
std::size_t float_repr(double d, char* out) noexcept;

// The number of decimal digits of the magnitude of a little-endian two's complement integer of
// n bytes, at least: a lower bound from its bit length (a cheap "too long to print" check).
std::size_t min_decimal_digits(const unsigned char* bytes, std::size_t n) noexcept;

// Appends the decimal text of the little-endian two's complement integer bytes[0, n) to out
// ("-" first when negative; "0" for n == 0). Returns the number of digits written.
// Effects: appends to out. Throws: std::bad_alloc. Quadratic in n (as CPython's own conversion
// is below its huge-number threshold); callers bound n.
std::size_t decimal_of_twos_complement(const unsigned char* bytes, std::size_t n, std::string& out);

}  // namespace permafrost::python
