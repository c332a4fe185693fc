// permafrost for Python — checking a frozen value graph that came from outside (an image file).
//
// Contract: check_graph() walks the graph in [base, base + size) from its root_header and returns
// an empty string when every invariant the readers (values.cpp, views.cpp, keys.cpp) rely on
// holds; otherwise it names the first violation and its offset. The readers do no bounds checks of
// their own (a lookup is a few loads), so a graph built elsewhere is read only after it passed
// here:
//   - every node reference is 8-aligned, past the root header, and its whole node lies inside;
//   - every float reference lies inside; tags and constants are known ones;
//   - every packed str (v2 graphs only) lies inside, holds 8 to 255 bytes and is UTF-8 without
//     surrogates, as Python's strict decoder and the JSON writer take it; every short str (in
//     the word) is too, with no bit set past its bytes;
//   - a str marked ASCII is ASCII (CPython trusts that flag), any other str node is UTF-8 as its
//     decoder accepts it (lone surrogates only with flag_surrogates);
//   - a datetime, date, time, timedelta, Decimal or UUID node holds a value its Python type
//     accepts (scalar_node_error in scalar_format.hpp);
//   - a table's capacity is above its count (and a power of two unless flag_any_capacity, which
//     only v2 graphs use), every index slot is empty or names an entry, and fewer slots are
//     used than it has (so probing, which wraps at the capacity, always ends);
//   - a dict's keys node is a keys table with the dict's count;
//   - a table node's keys node and shape are keys tables with its rows and columns, its shape's
//     keys are scalars or leaves, its columns have known types and are packed in order in its
//     rows (so checking its fields costs no more than its size), it lies below 32 GiB with fewer
//     than 2^29 rows, and no stored word is a row word (tag_row);
//   - a keys table is named only as a dict's or table node's keys (or a table node's shape);
//   - the nodes checked span no more bytes than the graph holds (nodes never overlap), so the
//     check's work is linear in the graph's size;
//   - no node contains itself, and no path from the root nests more than max_nesting nodes
//     (the readers recurse), counted through nodes that are referenced more than once too;
//   - reading the graph builds at most read_cost_limit(size) objects (format.hpp, "Read cost"):
//     nodes shared without flag_shared expand on every reference, so a few hundred bytes of
//     tuples that share children would otherwise build 2^64 of them;
//   - a node referenced more than once is a str/bytes/big int, a keys node, a flag_shared node
//     or a list/tuple of at most 64 bytes (what freeze() shares), else refused.
// The walk visits each node once and records where valid nodes start, so that a node named by
// offset later (unpickling a view of an image) is accepted only if it is one. It keeps two
// bitmaps of one bit per 8 bytes while it runs (nodes on its stack, nodes accepted; the second
// stays with the image), one more for nodes whose height and cost follow from their header, and
// the height and cost of the nodes that may be met again (shared, keys and small list/tuple
// nodes), about 40 bytes each.
// A step hook, when given, runs every check_step_values values the walk checks, so that a long
// check can be abandoned: whatever it throws leaves run() (the Python module checks for Ctrl-C
// there; the fuzzer passes none).
//
// Thread safety: a graph_check is used by one thread at a time; the graph is only read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "format.hpp"

namespace permafrost::python {

// Deeper than any graph freeze() builds: it refuses more than 5000 nested containers, and a
// dict's keys table adds one level per dict.
inline constexpr std::size_t max_nesting = 2 * 5000 + 2;

// Values the walk checks between two calls of its step hook: well under a millisecond.
inline constexpr std::size_t check_step_values = std::size_t{1} << 16;

class graph_check {
 public:
  // Effects: none (the walk runs in run()). Pre: base is 8-aligned.
  graph_check(const char* base, std::size_t size, std::function<void()> step = nullptr) noexcept
      : base_(base), size_(size), step_(std::move(step)) {}

  // Effects: walks the whole graph from its root, calling the step hook every
  // check_step_values values. Returns "" when valid, else what failed.
  // Throws: std::bad_alloc; whatever the step hook throws (the check is then not done).
  std::string run();

  // True when run() succeeded and `off` is the start of a node it validated.
  bool is_node(std::uint64_t off) const noexcept;

 private:
  // What one reference to a value adds to the node that holds it.
  struct reference_cost {
    std::uint32_t height = 0;   // of the referenced value (0: scalars and leaves)
    std::uint64_t objects = 1;  // a read builds this many objects for the reference
  };
  struct frame {
    std::uint64_t off;
    std::size_t next = 0;             // the next child to check
    std::uint32_t child_height = 0;   // the largest height among the children checked
    std::uint64_t child_objects = 0;  // their read costs, summed
  };

  struct node_cost {
    std::uint32_t height;
    std::uint64_t objects;  // the node's own read cost (its references may cost 1: flag_shared)
  };

  // Checks one value word found in the node at offset `at`. A node not seen before is checked
  // and, when it has children, pushed (its cost reaches its parent when it is popped); otherwise
  // `cost` is what the reference costs.
  // keys_slot: the word is a dict's or table node's keys reference (the only place a keys table
  // may be named).
  std::string check_word(word w, std::uint64_t at, reference_cost& cost, bool& pushed,
                         bool keys_slot);
  std::string enter(std::uint64_t off, bool& pushed);
  std::string count_extent(const node_header* n, std::uint64_t off);
  std::string check_short_str(word w, std::uint64_t at) const;
  std::string check_packed_str(word w, std::uint64_t at) const;
  std::string revisit(std::uint64_t off, reference_cost& cost) const;
  std::string pop(reference_cost& cost);
  std::string check_leaf(const node_header* n, std::uint64_t off);
  std::string check_table(const node_header* n, std::uint64_t off);
  std::string check_dict(const node_header* n, std::uint64_t off);
  std::string check_keys_of(std::uint64_t keys, std::uint64_t count, std::uint64_t off) const;
  std::string check_table_node(const node_header* n, std::uint64_t off) const;
  std::string table_cost(const node_header* n, const frame& f, node_cost& own) const;
  void add_to_top(const reference_cost& cost) noexcept;
  bool test(const std::vector<std::uint64_t>& bits, std::uint64_t off) const noexcept {
    return (bits[off / 8 / 64] >> (off / 8 % 64)) & 1;
  }
  void set(std::vector<std::uint64_t>& bits, std::uint64_t off) noexcept {
    bits[off / 8 / 64] |= std::uint64_t{1} << (off / 8 % 64);
  }

  const char* base_;
  std::size_t size_;
  std::function<void()> step_;
  std::vector<std::uint64_t> open_;   // one bit per 8 bytes: a node on the walk's stack
  std::vector<std::uint64_t> valid_;  // one bit per 8 bytes: a node checked with all it contains
  std::vector<std::uint64_t> plain_;  // one bit per 8 bytes: a node whose cost is plain_cost()
  std::unordered_map<std::uint64_t, node_cost> costs_;  // nodes that may be referenced again
  std::vector<frame> stack_;
  std::uint64_t shared_objects_ = 0;  // the read costs of the flag_shared nodes, summed
  std::uint64_t examined_ = 0;        // the bytes the nodes checked span, summed (count_extent)
  int version_ = 0;                   // the graph's format version (root_version)
  bool done_ = false;
};

}  // namespace permafrost::python
