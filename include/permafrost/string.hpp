// permafrost — permafrost::string, an immutable string in an arena.
//
// Contract: a permafrost::string is a handle (one self-relative offset, see offset_ptr.hpp) to
// bytes laid out in an arena as a 4-byte length followed by the bytes and a NUL. It holds no
// absolute address, so a string stored in frozen data stays valid wherever the data is mapped.
// It never owns, copies, counts or frees anything: copying a handle re-bases its offset and
// writes nothing into the arena, and it needs no destructor. The default string is empty and
// points nowhere. Embedded NULs are ordinary bytes.
//
// Thread safety: a handle is a value; any number of threads may read the same bytes at once.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "permafrost/arena.hpp"
#include "permafrost/frozen_storable.hpp"
#include "permafrost/hash.hpp"
#include "permafrost/offset_ptr.hpp"

namespace permafrost {

namespace detail {

// The arena layout a string handle points at: the length, then the bytes right after it.
struct string_rep {
  std::uint32_t size;
  const char* bytes() const noexcept { return reinterpret_cast<const char*>(this + 1); }
};

// The containers' access to a string's layout; not for users.
struct string_access;

inline constexpr std::size_t max_string_size = std::numeric_limits<std::uint32_t>::max();

[[noreturn]] inline void throw_string_too_long() {
  throw std::length_error("permafrost::string: longer than 4 GiB - 1 bytes");
}

}  // namespace detail

// =============================================================================================
// permafrost::string
// =============================================================================================

class string {
 public:
  using value_type = char;
  using size_type = std::size_t;
  using const_iterator = const char*;
  using iterator = const char*;

  constexpr string() noexcept = default;

  std::size_t size() const noexcept { return rep_ ? rep_->size : 0; }
  std::size_t length() const noexcept { return size(); }
  bool empty() const noexcept { return size() == 0; }
  // The bytes; NUL-terminated for strings made by make_string() ("" for the default string).
  const char* data() const noexcept { return rep_ ? rep_->bytes() : ""; }
  const char* begin() const noexcept { return data(); }
  const char* end() const noexcept { return data() + size(); }
  char operator[](std::size_t i) const noexcept { return data()[i]; }

  std::string_view view() const noexcept { return {data(), size()}; }
  operator std::string_view() const noexcept { return view(); }  // NOLINT: meant to be implicit
  std::string str() const { return std::string(view()); }

  // For freeze checks: the bytes lie inside `a` (the default string points nowhere and passes).
  bool points_into(const arena& a) const {
    const detail::string_rep* rep = rep_.get();
    return rep == nullptr || detail::range_in(a, rep, sizeof(detail::string_rep) + rep->size);
  }

  friend bool operator==(const string& a, const string& b) noexcept { return a.view() == b.view(); }
  friend bool operator==(const string& a, std::string_view b) noexcept { return a.view() == b; }
  friend std::strong_ordering operator<=>(const string& a, const string& b) noexcept {
    return a.view() <=> b.view();
  }
  friend std::strong_ordering operator<=>(const string& a, std::string_view b) noexcept {
    return a.view() <=> b;
  }

 private:
  friend struct detail::string_access;
  explicit string(const detail::string_rep* rep) noexcept : rep_(rep) {}

  offset_ptr<const detail::string_rep> rep_;
};

static_assert(std::is_trivially_destructible_v<string>);
static_assert(sizeof(string) == sizeof(void*));

namespace detail {

struct string_access {
  // A handle to bytes already laid out as a string_rep (nullptr: the default string).
  static string make(const string_rep* rep) noexcept { return string(rep); }
  static const string_rep* rep(const string& s) noexcept { return s.rep_.get(); }
};

}  // namespace detail

template <>
struct hash<string> : string_hash {};

template <>
struct is_permafrost_type<string> : std::true_type {};

// Effects: copies s into `a` (length, bytes, NUL) and returns a handle to the copy.
// Throws: std::length_error when s is 4 GiB or longer; as arena::allocate otherwise.
inline string make_string(arena& a, std::string_view s) {
  if (s.size() > detail::max_string_size) detail::throw_string_too_long();
  void* p = a.allocate(sizeof(detail::string_rep) + s.size() + 1, alignof(detail::string_rep));
  auto* rep = ::new (p) detail::string_rep{static_cast<std::uint32_t>(s.size())};
  char* bytes = reinterpret_cast<char*>(rep + 1);
  if (!s.empty()) std::memcpy(bytes, s.data(), s.size());
  bytes[s.size()] = '\0';
  return detail::string_access::make(rep);
}

}  // namespace permafrost
