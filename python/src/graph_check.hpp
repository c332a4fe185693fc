// permafrost for Python — checking a frozen value graph that came from outside (an image file).
//
// Contract: check_graph() walks the graph in [base, base + size) from its root_header and returns
// an empty string when every invariant the readers (values.cpp, views.cpp, keys.cpp) rely on
// holds; otherwise it names the first violation and its offset. The readers do no bounds checks of
// their own (a lookup is a few loads), so a graph built elsewhere is read only after it passed
// here:
//   - every node reference is 8-aligned, past the root header, and its whole node lies inside;
//   - every float reference lies inside; tags and constants are known ones;
//   - a str marked ASCII is ASCII (CPython trusts that flag);
//   - a datetime, date, time, timedelta, Decimal or UUID node holds a value its Python type
//     accepts (scalar_node_error in scalar_format.hpp);
//   - a table's capacity is a power of two above its count, every index slot is empty or names
//     an entry, and fewer slots are used than it has (so probing always ends);
//   - a dict's keys node is a keys table with the dict's count;
//   - no node contains itself, and nesting is at most max_nesting deep (the readers recurse).
// The walk visits each node once (shared nodes too) and records where valid nodes start, so that
// a node named by offset later (unpickling a view of an image) is accepted only if it is one.
//
// Thread safety: a graph_check is used by one thread at a time; the graph is only read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "format.hpp"

namespace permafrost::python {

// Deeper than any graph freeze() builds: it refuses more than 5000 nested containers, and a
// dict's keys table adds one level per dict.
inline constexpr std::size_t max_nesting = 2 * 5000 + 2;

class graph_check {
 public:
  // Effects: none (the walk runs in run()). Pre: base is 8-aligned.
  graph_check(const char* base, std::size_t size) noexcept : base_(base), size_(size) {}

  // Effects: walks the whole graph from its root. Returns "" when valid, else what failed.
  // Throws: std::bad_alloc.
  std::string run();

  // True when run() succeeded and `off` is the start of a node it validated.
  bool is_node(std::uint64_t off) const noexcept;

 private:
  std::string check_word(word w, std::uint64_t at);
  std::string enter(std::uint64_t off);
  std::string check_leaf(const node_header* n, std::uint64_t off);
  std::string check_table(const node_header* n, std::uint64_t off);
  std::string check_dict(const node_header* n, std::uint64_t off);
  std::size_t child_count(const node_header* n) const noexcept;
  word child(const node_header* n, std::size_t i) const noexcept;
  bool test(const std::vector<std::uint64_t>& bits, std::uint64_t off) const noexcept {
    return (bits[off / 8 / 64] >> (off / 8 % 64)) & 1;
  }
  void set(std::vector<std::uint64_t>& bits, std::uint64_t off) noexcept {
    bits[off / 8 / 64] |= std::uint64_t{1} << (off / 8 % 64);
  }

  struct frame {
    std::uint64_t off;
    std::size_t next;  // the next child to check
  };

  const char* base_;
  std::size_t size_;
  std::vector<std::uint64_t> open_;   // one bit per 8 bytes: a node on the walk's stack
  std::vector<std::uint64_t> valid_;  // one bit per 8 bytes: a node checked with all it contains
  std::vector<frame> stack_;
  bool done_ = false;
};

}  // namespace permafrost::python
