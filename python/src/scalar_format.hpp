// permafrost for Python — the frozen layout of datetime, date, time, timedelta, Decimal and UUID.
//
// Contract: each of these values is one leaf node (format.hpp): the 8-byte node header
// {kind, flags, 0, count = payload bytes}, then the payload below. Nothing in a payload refers
// to anything else, so these nodes are leaves like str and bytes (equal ones may be shared).
//   datetime  (24 bytes): frozen_datetime; flag_aware when it had a UTC offset
//   date       (4 bytes): frozen_date
//   time      (16 bytes): frozen_time; flag_aware when it had a UTC offset
//   timedelta (16 bytes): frozen_timedelta, normalised as timedelta keeps it
//   Decimal   (count bytes): str(Decimal) in ASCII, which Decimal() reads back exactly
//   UUID      (16 bytes): UUID.bytes (big-endian)
// An aware value keeps its UTC offset, not its tzinfo: a named zone (zoneinfo, pytz, dateutil)
// comes back as datetime.timezone(offset), the same instant and the same isoformat().
//
// scalar_node_error() is the graph check's test of one such node (every field in the range its
// Python type accepts, Decimal's text in its grammar), so the readers and the JSON writer can
// trust the bytes. append_scalar_json() writes the JSON text permafrost.dumps gives one (ISO 8601
// strings for the dates and times and for timedelta, str() for Decimal and UUID), without Python.
//
// Thread safety: plain functions over frozen bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "format.hpp"

namespace permafrost::python {

inline constexpr std::uint8_t flag_aware = 1;  // datetime, time: utc_offset_us is meaningful

struct frozen_datetime {
  std::uint16_t year;  // 1..9999
  std::uint8_t month, day, hour, minute, second, fold;
  std::uint32_t microsecond;
  std::uint32_t reserved;      // 0
  std::int64_t utc_offset_us;  // strictly inside +-24 h; 0 when naive
};
static_assert(sizeof(frozen_datetime) == 24);

struct frozen_date {
  std::uint16_t year;
  std::uint8_t month, day;
};
static_assert(sizeof(frozen_date) == 4);

struct frozen_time {
  std::uint8_t hour, minute, second, fold;
  std::uint32_t microsecond;
  std::int64_t utc_offset_us;
};
static_assert(sizeof(frozen_time) == 16);

struct frozen_timedelta {
  std::int32_t days;          // -999999999..999999999
  std::int32_t seconds;       // 0..86399
  std::int32_t microseconds;  // 0..999999
  std::uint32_t reserved;     // 0
};
static_assert(sizeof(frozen_timedelta) == 16);

inline constexpr std::size_t uuid_bytes = 16;

inline bool is_scalar_kind(std::uint8_t k) noexcept { return k >= kind_datetime && k <= kind_uuid; }

// The payload of a scalar node, as T (copied: the payload is 8-aligned, but a copy is free).
template <class T>
T scalar_payload(const node_header* n) noexcept {
  T t;
  std::memcpy(&t, node_bytes(n), sizeof t);
  return t;
}

namespace scalar_detail {

inline bool leap_year(unsigned y) noexcept { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }
inline unsigned days_in_month(unsigned y, unsigned m) noexcept {
  static constexpr unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap_year(y) ? 29 : days[m - 1];
}
inline bool valid_date(unsigned y, unsigned m, unsigned d) noexcept {
  return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}
inline bool valid_time(unsigned h, unsigned mi, unsigned s, unsigned fold, std::uint32_t us) {
  return h < 24 && mi < 60 && s < 60 && fold <= 1 && us < 1000000;
}
inline constexpr std::int64_t day_us = std::int64_t{86400} * 1000000;
inline bool valid_offset(std::uint8_t flags, std::int64_t off) noexcept {
  return (flags & flag_aware) ? off > -day_us && off < day_us : off == 0;
}

// str(Decimal): [-] then digits [. digits] [E (+|-) digits], or Infinity, NaN[digits],
// sNaN[digits].
inline bool decimal_text(const char* p, std::size_t n) noexcept {
  std::size_t i = 0;
  auto digits = [&] {
    const std::size_t start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') ++i;
    return i > start;
  };
  auto word = [&](const char* w) {
    const std::size_t len = std::strlen(w);
    if (n - i < len || std::memcmp(p + i, w, len) != 0) return false;
    i += len;
    return true;
  };
  if (i < n && p[i] == '-') ++i;
  if (word("Infinity")) return i == n;
  if (word("NaN") || word("sNaN")) {
    digits();
    return i == n;
  }
  if (!digits()) return false;
  if (i < n && p[i] == '.' && (++i, !digits())) return false;
  if (i < n && p[i] == 'E') {
    ++i;
    if (i == n || (p[i] != '+' && p[i] != '-')) return false;
    ++i;
    if (!digits()) return false;
  }
  return i == n;
}

inline void two(std::string& out, unsigned v) {
  out += static_cast<char>('0' + v / 10 % 10);
  out += static_cast<char>('0' + v % 10);
}
inline void micro(std::string& out, std::uint32_t us) {  // .ffffff when not 0
  if (!us) return;
  char b[8];
  b[0] = '.';
  for (int i = 6; i >= 1; --i, us /= 10) b[i] = static_cast<char>('0' + us % 10);
  out.append(b, 7);
}
inline void clock(std::string& out, unsigned h, unsigned m, unsigned s, std::uint32_t us) {
  two(out, h), out += ':', two(out, m), out += ':', two(out, s), micro(out, us);
}
// isoformat()'s offset: +HH:MM, then :SS and .ffffff when not 0.
inline void offset(std::string& out, std::int64_t off) {
  out += off < 0 ? '-' : '+';
  const std::uint64_t a =
      off < 0 ? 0 - static_cast<std::uint64_t>(off) : static_cast<std::uint64_t>(off);
  const auto us = static_cast<std::uint32_t>(a % 1000000);
  const auto s = static_cast<unsigned>(a / 1000000);  // < 86400: the offset is inside a day
  two(out, s / 3600), out += ':', two(out, s / 60 % 60);
  if (s % 60 || us) out += ':', two(out, s % 60);
  micro(out, us);
}
inline void date_text(std::string& out, unsigned y, unsigned m, unsigned d) {
  two(out, y / 100), two(out, y % 100), out += '-', two(out, m), out += '-', two(out, d);
}

}  // namespace scalar_detail

// Why the scalar node n (is_scalar_kind, `avail` bytes from its start to the graph's end) cannot
// be read, or nullptr when it can.
inline const char* scalar_node_error(const node_header* n, std::uint64_t avail) noexcept {
  using namespace scalar_detail;
  if (8 + std::uint64_t{n->count} > avail) return "a date, time, Decimal or UUID past the end";
  const std::uint8_t aware_ok = (n->kind == kind_datetime || n->kind == kind_time) ? flag_aware : 0;
  if (n->small_count != 0 || (n->flags & ~aware_ok) != 0)
    return "a date, time, Decimal or UUID with unknown flags";
  std::size_t want = 0;
  switch (n->kind) {
    case kind_datetime: want = sizeof(frozen_datetime); break;
    case kind_date: want = sizeof(frozen_date); break;
    case kind_time: want = sizeof(frozen_time); break;
    case kind_timedelta: want = sizeof(frozen_timedelta); break;
    case kind_uuid: want = uuid_bytes; break;
    case kind_decimal:
      return decimal_text(node_bytes(n), n->count) ? nullptr : "a Decimal that is not a number";
    default: return "a node of unknown kind";
  }
  if (n->count != want) return "a date, time or UUID of the wrong size";
  bool ok = true;
  switch (n->kind) {
    case kind_datetime: {
      const auto v = scalar_payload<frozen_datetime>(n);
      ok = valid_date(v.year, v.month, v.day) &&
           valid_time(v.hour, v.minute, v.second, v.fold, v.microsecond) && v.reserved == 0 &&
           valid_offset(n->flags, v.utc_offset_us);
      break;
    }
    case kind_date: {
      const auto v = scalar_payload<frozen_date>(n);
      ok = valid_date(v.year, v.month, v.day);
      break;
    }
    case kind_time: {
      const auto v = scalar_payload<frozen_time>(n);
      ok = valid_time(v.hour, v.minute, v.second, v.fold, v.microsecond) &&
           valid_offset(n->flags, v.utc_offset_us);
      break;
    }
    case kind_timedelta: {
      const auto v = scalar_payload<frozen_timedelta>(n);
      ok = v.days >= -999999999 && v.days <= 999999999 && v.seconds >= 0 && v.seconds < 86400 &&
           v.microseconds >= 0 && v.microseconds < 1000000 && v.reserved == 0;
      break;
    }
    default: break;  // UUID: any 16 bytes
  }
  return ok ? nullptr : "a date or time out of range";
}

// Appends the JSON text of scalar node n (which passed scalar_node_error) to out: a JSON string.
//   datetime, date, time: isoformat() (YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM[:SS[.ffffff]]])
//   timedelta: ISO 8601 duration [-]P<d>DT<hh>H<mm>M<ss>[.ffffff]S of its absolute value, as
//              Django's DjangoJSONEncoder writes it
//   Decimal: str(); UUID: str() (8-4-4-4-12 lowercase hex)
inline void append_scalar_json(const node_header* n, std::string& out) {
  using namespace scalar_detail;
  out += '"';
  switch (n->kind) {
    case kind_datetime: {
      const auto v = scalar_payload<frozen_datetime>(n);
      date_text(out, v.year, v.month, v.day);
      out += 'T';
      clock(out, v.hour, v.minute, v.second, v.microsecond);
      if (n->flags & flag_aware) offset(out, v.utc_offset_us);
      break;
    }
    case kind_date: {
      const auto v = scalar_payload<frozen_date>(n);
      date_text(out, v.year, v.month, v.day);
      break;
    }
    case kind_time: {
      const auto v = scalar_payload<frozen_time>(n);
      clock(out, v.hour, v.minute, v.second, v.microsecond);
      if (n->flags & flag_aware) offset(out, v.utc_offset_us);
      break;
    }
    case kind_timedelta: {
      const auto v = scalar_payload<frozen_timedelta>(n);
      // |td| as whole seconds and microseconds (in microseconds alone it may pass 2^63).
      std::int64_t s = std::int64_t{v.days} * 86400 + v.seconds;
      auto us = static_cast<std::uint32_t>(v.microseconds);
      if (s < 0) {
        out += '-';
        s = us ? -s - 1 : -s;
        us = us ? 1000000 - us : 0;
      }
      out += 'P', out += std::to_string(s / 86400), out += "DT";
      two(out, static_cast<unsigned>(s / 3600 % 24)), out += 'H';
      two(out, static_cast<unsigned>(s / 60 % 60)), out += 'M';
      two(out, static_cast<unsigned>(s % 60)), micro(out, us), out += 'S';
      break;
    }
    case kind_decimal: out.append(node_bytes(n), n->count); break;
    case kind_uuid: {
      static constexpr char hex[] = "0123456789abcdef";
      const auto* b = reinterpret_cast<const unsigned char*>(node_bytes(n));
      for (std::size_t i = 0; i < uuid_bytes; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
        out += hex[b[i] >> 4], out += hex[b[i] & 15];
      }
      break;
    }
    default: break;
  }
  out += '"';
}

}  // namespace permafrost::python
