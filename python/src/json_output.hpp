// permafrost for Python — JSON output: the growing buffer and JSON strings, without Python.
//
// Contract: write_json_string_utf8/_units write a string exactly as json.dumps does
// (c_encode_basestring and its _ascii twin): the quote, the backslash and the controls below 0x20
// escaped (\n, \t... where JSON has a letter, else \u00XX in lowercase hex), everything else raw
// UTF-8, or with text_form::ascii \uXXXX (a surrogate pair above U+FFFF) for everything outside
// the printable ASCII range, DEL (0x7f) included as json escapes it. A lone surrogate, which
// UTF-8 cannot hold, is written as its \udXXX escape in text_form::utf8 (bytes for the wire:
// json.loads reads it back), and raw, as CPython's surrogatepass encodes it, in
// text_form::surrogatepass (text decoded with surrogatepass into a str: json.dumps's str).
//
// Thread safety: plain functions over a caller-owned buffer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace permafrost::python {

// The growing output, copied once into the bytes object at the end. A response-sized document
// stays in the inline block: no allocation at all.
class out_buffer {
 public:
  out_buffer() = default;
  out_buffer(const out_buffer&) = delete;
  out_buffer& operator=(const out_buffer&) = delete;
  ~out_buffer() {
    if (data_ != inline_) std::free(data_);
  }

  // Room for n more bytes; returns where they go. Write, then commit(end).
  char* room(std::size_t n) {
    if (cap_ - size_ < n) grow(n);
    return data_ + size_;
  }
  void commit(char* end) { size_ = static_cast<std::size_t>(end - data_); }
  void put(char c) { *room(1) = c, ++size_; }
  void put(const char* s, std::size_t n) {
    std::memcpy(room(n), s, n);
    size_ += n;
  }
  void put(std::string_view s) { put(s.data(), s.size()); }
  std::size_t size() const { return size_; }
  const char* data() const { return data_; }

 private:
  [[gnu::noinline]] void grow(std::size_t n) {
    const std::size_t cap = std::max<std::size_t>(cap_ * 2, size_ + n);
    void* p = data_ == inline_ ? std::malloc(cap) : std::realloc(data_, cap);
    if (!p) throw std::bad_alloc();
    if (data_ == inline_) std::memcpy(p, inline_, size_);
    data_ = static_cast<char*>(p);
    cap_ = cap;
  }
  char inline_[1024];
  char* data_ = inline_;
  std::size_t size_ = 0;
  std::size_t cap_ = sizeof inline_;
};

// What the JSON text is made for: json's ensure_ascii, UTF-8 bytes, or UTF-8 (surrogatepass) to
// be decoded into a str holding any lone surrogate raw, as json.dumps(ensure_ascii=False) does.
enum class text_form { ascii, utf8, surrogatepass };

inline constexpr char hex_digits[] = "0123456789abcdef";

// What each ASCII byte needs inside a JSON string: 0 = itself, else its escape letter or 'u'.
struct escape_table {
  char esc[128];
  constexpr escape_table() : esc{} {
    for (int c = 0; c < 0x20; ++c) esc[c] = 'u';
    esc['"'] = '"';
    esc['\\'] = '\\';
    esc['\n'] = 'n';
    esc['\r'] = 'r';
    esc['\t'] = 't';
    esc['\b'] = 'b';
    esc['\f'] = 'f';
  }
};
inline constexpr escape_table ascii_escapes;

inline char* put_u_escape(char* o, unsigned cp) {  // \uXXXX, lowercase as json writes it
  *o++ = '\\';
  *o++ = 'u';
  *o++ = hex_digits[(cp >> 12) & 15];
  *o++ = hex_digits[(cp >> 8) & 15];
  *o++ = hex_digits[(cp >> 4) & 15];
  *o++ = hex_digits[cp & 15];
  return o;
}

// Whether the ASCII byte c is escaped: json's ensure_ascii escapes DEL too (its printable range is
// ' ' to '~'), as \u007f.
inline bool ascii_needs_escape(unsigned char c, text_form form) {
  return ascii_escapes.esc[c] || (form == text_form::ascii && c == 0x7f);
}

inline char* put_ascii_escaped(char* o, unsigned char c) {
  const char e = ascii_escapes.esc[c];
  if (e == 'u' || e == 0) return put_u_escape(o, c);
  *o++ = '\\';
  *o++ = e;
  return o;
}

// A code point >= 0x80 of a string: raw UTF-8, or escaped (text_form::ascii, and a lone
// surrogate in text_form::utf8, which UTF-8 cannot hold).
inline char* put_code_point(char* o, char32_t cp, text_form form) {
  if (cp >= 0xd800 && cp <= 0xdfff && form == text_form::utf8) return put_u_escape(o, cp);
  if (form == text_form::ascii) {
    if (cp < 0x10000) return put_u_escape(o, cp);
    const char32_t v = cp - 0x10000;
    o = put_u_escape(o, 0xd800 | (v >> 10));
    return put_u_escape(o, 0xdc00 | (v & 0x3ff));
  }
  if (cp < 0x800) {
    *o++ = static_cast<char>(0xc0 | (cp >> 6));
  } else if (cp < 0x10000) {
    *o++ = static_cast<char>(0xe0 | (cp >> 12));
    *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
  } else {
    *o++ = static_cast<char>(0xf0 | (cp >> 18));
    *o++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
  }
  *o++ = static_cast<char>(0x80 | (cp & 0x3f));
  return o;
}

// The length of the well-formed UTF-8 sequence (surrogates allowed, as CPython's surrogatepass
// writes them) at p[0, avail), p[0] >= 0x80; 0 when it is not one (a damaged image's str, mapped
// without open()'s check: one another process sent).
inline std::size_t utf8_sequence(const unsigned char* p, std::size_t avail) {
  const unsigned char c = p[0];
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) len = 3, lo = c == 0xe0 ? 0xa0 : 0x80;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
  else return 0;
  if (avail < len || p[1] < lo || p[1] > hi) return 0;
  for (std::size_t i = 2; i < len; ++i)
    if ((p[i] & 0xc0) != 0x80) return 0;
  return len;
}

inline char32_t utf8_decode(const unsigned char* s, std::size_t len) {
  if (len == 2) return (char32_t{s[0] & 0x1fu} << 6) | (s[1] & 0x3fu);
  if (len == 3)
    return (char32_t{s[0] & 0x0fu} << 12) | (char32_t{s[1] & 0x3fu} << 6) | (s[2] & 0x3fu);
  return (char32_t{s[0] & 0x07u} << 18) | (char32_t{s[1] & 0x3fu} << 12) |
         (char32_t{s[2] & 0x3fu} << 6) | (s[3] & 0x3fu);
}

// Writes the UTF-8 bytes s[0, n) (lone surrogates encoded as CPython's surrogatepass does) as a
// JSON string, quotes included. Returns false, having written part of it, when the bytes are not
// well-formed UTF-8.
[[nodiscard]] inline bool write_json_string_utf8(out_buffer& out, const char* s, std::size_t n,
                                                 text_form form) {
  char* o = out.room(6 * n + 2);  // \u00XX is the longest output per input byte
  *o++ = '"';
  const auto* p = reinterpret_cast<const unsigned char*>(s);
  const unsigned char* end = p + n;
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      if (ascii_needs_escape(c, form)) o = put_ascii_escaped(o, c);
      else *o++ = static_cast<char>(c);
      ++p;
      continue;
    }
    const std::size_t len = utf8_sequence(p, static_cast<std::size_t>(end - p));
    if (len == 0) {
      out.commit(o);
      return false;
    }
    // Raw UTF-8 is copied as is, except in text_form::ascii, and a surrogate (ED A0..BF xx) in
    // text_form::utf8.
    const bool surrogate = c == 0xed && len == 3 && p[1] >= 0xa0;
    if (form == text_form::surrogatepass || (form == text_form::utf8 && !surrogate)) {
      std::memcpy(o, p, len);
      o += len;
    } else {
      o = put_code_point(o, utf8_decode(p, len), form);
    }
    p += len;
  }
  *o++ = '"';
  out.commit(o);
  return true;
}

// Writes the code units s[0, n) of a CPython str (Py_UCS1, Py_UCS2 or Py_UCS4) as a JSON string.
template <class Ch>
void write_json_string_units(out_buffer& out, const Ch* s, std::size_t n, text_form form) {
  char* o = out.room(12 * n + 2);  // an astral code point in text_form::ascii: two \uXXXX
  *o++ = '"';
  for (std::size_t i = 0; i < n; ++i) {
    const char32_t c = s[i];
    if (c < 0x80) {
      if (ascii_needs_escape(static_cast<unsigned char>(c), form))
        o = put_ascii_escaped(o, static_cast<unsigned char>(c));
      else *o++ = static_cast<char>(c);
    } else {
      o = put_code_point(o, c, form);
    }
  }
  *o++ = '"';
  out.commit(o);
}

}  // namespace permafrost::python
