// permafrost for Python — graph_output: where freeze() and the builders write (see
// graph_output.hpp).
#include "graph_output.hpp"

#include <Python.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "permafrost/arena.hpp"
#include "permafrost/hash.hpp"
#include "py_ref.hpp"

namespace permafrost::python {
namespace {

constexpr std::size_t small_capacity = std::size_t{1} << 20;  // the anonymous start: 1 MiB
constexpr std::size_t memfd_capacity = std::size_t{4} << 30;  // 4 GiB of address space
constexpr std::size_t fallback_capacity = std::size_t{256} << 20;
// store_once's adaptive index (graph_output.hpp): nodes indexed before it starts watching, new
// nodes per window, and 1 in how many new nodes it indexes while sampling.
constexpr std::size_t adapt_after = std::size_t{64} << 10;
constexpr std::size_t window = std::size_t{16} << 10;
constexpr std::size_t sample_every = 16;
// store_packed's runs grow to this size (their unused tails are what packed strs waste).
constexpr std::size_t max_packed_run = std::size_t{64} << 10;

std::unique_ptr<permafrost::arena> new_arena(std::string_view name, std::size_t capacity,
                                             bool memfd) {
  permafrost::arena_options opt;
  opt.name = name;
  opt.capacity = capacity;
  if (memfd) opt.backing = permafrost::backing::memfd;
  // A memfd arena (a graph past 1 MiB) asks for huge pages, as every memfd arena may: shared-
  // memory ones follow the administrator's shmem_enabled (`never` by default: the advice changes
  // nothing then); with `advise` a worker's first read faults per 2 MiB, not per 16 pages
  // (docs/design.md "Huge pages and a worker's first read"). The small anonymous arena does not:
  // it would commit 2 MiB for the smallest graph.
  opt.huge_pages = memfd && permafrost::huge_pages_available();
  // Every page of a memfd mapped at freeze, as the writer left them: a process the memfd is sent
  // to then shares each page with this one (smaps counts it shared, not private to it).
  opt.populate = memfd;
  return std::make_unique<permafrost::arena>(opt);
}

// a.allocate(bytes, align), where the kernel's refusal of memory the arena has room for (the
// library's bare std::bad_alloc, once an empty MemoryError that named no limit) is a MemoryError
// naming the arena and the size it needed (`need`). The library's own errors pass through with
// their messages: a forked child that continues a build its parent began (the memfd arena's pages
// are the parent's) gets std::logic_error, an OSError saying so.
char* allocate_named(permafrost::arena& a, std::size_t bytes, std::size_t align, std::size_t need) {
  try {
    return static_cast<char*>(a.allocate(bytes, align));
  } catch (const std::bad_alloc& e) {
    if (std::strcmp(e.what(), std::bad_alloc().what()) != 0) throw;  // a limit the library names
    const std::string name(a.name());
    PyErr_Format(PyExc_MemoryError,
                 "permafrost: the arena '%s' could not grow to %zu bytes: the kernel refused the "
                 "memory (no memory left, a memory cgroup limit, or RLIMIT_FSIZE below that size)",
                 name.c_str(), need);
    throw py_error{};
  }
}

// The first allocation of a new arena: `bytes` at its first byte, or SystemError.
char* first_bytes(permafrost::arena& a, std::size_t bytes) {
  char* p = allocate_named(a, bytes, 16, bytes);
  if (static_cast<const void*>(a.used_bytes().data()) != p) {
    PyErr_SetString(PyExc_SystemError,
                    "permafrost: the arena's first allocation is not at its start");
    throw py_error{};
  }
  return p;
}

}  // namespace

void graph_output::forked() {
  PyErr_SetString(PyExc_RuntimeError,
                  "permafrost: the process forked while freeze(), build_dict() or build_list() "
                  "ran; that work can go on only in the process that began it");
  throw py_error{};
}

graph_output::graph_output(std::string_view name, const std::uint64_t& forks)
    : forks_(&forks), forks_at_start_(forks), capacity_(small_capacity) {
  arena_ = new_arena(name, capacity_, /*memfd=*/false);
  base_ = first_bytes(*arena_, 16);  // the root header (format.hpp), filled in at the end
  end_ = 16;
}

graph_output::~graph_output() = default;

std::uint64_t graph_output::bump(std::size_t rounded) {
  void* p = arena_->try_allocate(rounded, 8);
  if (!p) [[unlikely]]
    return grow(rounded);
  return static_cast<std::uint64_t>(static_cast<char*>(p) - base_);
}

std::uint64_t graph_output::grow(std::size_t rounded) {
  // Well inside the reservation, the arena refused: no new arena would help. Again, throwing
  // (it may succeed now, else its error says why: no memory, or a forked child).
  if (end_ + rounded + capacity_ / 16 <= capacity_)
    return static_cast<std::uint64_t>(allocate_named(*arena_, rounded, 8, end_ + rounded) - base_);
  const bool first_memfd = !memfd_;
  std::size_t capacity =
      memfd_ ? capacity_ * 4 : (first_reservation_ ? first_reservation_ : memfd_capacity);
  while (capacity < end_ + rounded) capacity *= 2;
  using limit = permafrost::arena_limit_error::limit;
  std::unique_ptr<permafrost::arena> next;
  try {
    next = new_arena(arena_->name(), capacity, /*memfd=*/true);
  } catch (const permafrost::arena_limit_error& e) {
    if (e.which() != limit::address_space) throw;
    if (first_memfd) {
      // A small process reservation (sanitizers, ulimit -v): a smaller one, moved again if need
      // be.
      capacity = fallback_capacity;
      while (capacity < end_ + rounded) capacity *= 2;
      try {
        next = new_arena(arena_->name(), capacity, /*memfd=*/true);
      } catch (const permafrost::arena_limit_error& again) {
        if (again.which() != limit::address_space) throw;
      }
    }
  }
  if (!next) {
    replace_arena(capacity);
  } else {
    char* base = first_bytes(*next, end_);
    std::memcpy(base, base_, end_);
    arena_ = std::move(next);
    base_ = base;
  }
  // Under an address-space limit the arena may hold less than asked (arena()): its longest run.
  capacity_ = std::min(capacity, arena_->stats().reserved);
  memfd_ = true;
  return static_cast<std::uint64_t>(allocate_named(*arena_, rounded, 8, end_ + rounded) - base_);
}

void graph_output::replace_arena(std::size_t capacity) {
  // A reservation cut by an address-space limit (RLIMIT_AS, `ulimit -v`) may have room for one
  // arena only, this one (under `ulimit -v 1000000` every freeze() past 1 MiB failed so): its
  // bytes wait in the heap while it is released and the larger one made in its room.
  const std::string name(arena_->name());
  const std::vector<char> bytes(base_, base_ + end_);
  const bool was_memfd = memfd_;
  arena_.reset();
  base_ = nullptr;
  try {
    std::unique_ptr<permafrost::arena> next = new_arena(name, capacity, /*memfd=*/true);
    char* base = first_bytes(*next, end_);
    std::memcpy(base, bytes.data(), end_);
    arena_ = std::move(next);
    base_ = base;
  } catch (...) {
    // Back into an arena like the one released, whose room is free again: the writer stays
    // whole for the caller's error path.
    arena_ = new_arena(name, capacity_, was_memfd);
    base_ = first_bytes(*arena_, end_);
    std::memcpy(base_, bytes.data(), end_);
    throw;
  }
}

std::uint64_t graph_output::store_once(const char* node, std::size_t bytes, bool remember) {
  return store_deduped(nodes_, node, bytes, remember, 8);
}

std::uint64_t graph_output::store_packed(const char* bytes, std::size_t n, bool remember) {
  return store_deduped(packed_, bytes, n, remember, 1);
}

std::uint64_t graph_output::alloc_packed(std::size_t bytes) {
  if (packed_left_ < bytes) {
    // A run of a sixteenth of the packed strs so far (256 bytes to 64 KiB), so that a run's
    // unused tail stays a small part of them; one that directly follows the run continues it.
    const std::size_t run =
        std::clamp<std::size_t>(packed_total_ / 16 & ~std::size_t{7}, 256, max_packed_run);
    const std::uint64_t off = alloc(run);
    if (off == packed_next_ + packed_left_) {
      packed_left_ += run;
    } else {
      packed_next_ = off;
      packed_left_ = run;
    }
  }
  packed_total_ += bytes;
  const std::uint64_t off = packed_next_;
  packed_next_ += bytes;
  packed_left_ -= bytes;
  return off;
}

std::uint64_t graph_output::store_deduped(dedupe_index& ix, const char* data, std::size_t bytes,
                                          bool remember, unsigned unit) {
  check_not_forked();
  if (ix.used * 10 >= ix.slots.size() * 7) grow_index(ix);
  const auto tag =
      static_cast<std::uint32_t>(permafrost::detail::hash_bytes(data, bytes) >> 32) | 1;
  const std::size_t mask = ix.slots.size() - 1;
  for (std::size_t i = tag & mask;; i = (i + 1) & mask) {
    const std::uint64_t slot = ix.slots[i];
    if (slot == 0) {
      const std::uint64_t off = unit == 1 ? alloc_packed(bytes) : alloc(bytes);
      std::memcpy(at(off), data, bytes);
      if (remember && off / unit <= UINT32_MAX) {
        const bool index_it = !ix.sampling || ix.window_new % sample_every == 0;
        if (index_it) {
          ix.slots[i] = std::uint64_t{tag} << 32 | off / unit;
          ++ix.used;
        }
        if (ix.used >= adapt_after && ++ix.window_new == window) end_window(ix);
      }
      return off;
    }
    if (slot >> 32 != tag) continue;
    const std::uint64_t off = (slot & UINT32_MAX) * unit;
    // A node's first 8 bytes (its header), a packed str's first byte (its length), say its size:
    // equal, only then compare the rest (the other value may be shorter, and end the arena).
    const std::size_t head = unit == 1 ? 1 : 8;
    if (std::memcmp(at(off), data, head) == 0 && std::memcmp(at(off), data, bytes) == 0) {
      if (off >= ix.previous_window_start) ++ix.window_recent_hits;
      return off;
    }
  }
}

void graph_output::end_window(dedupe_index& ix) const {
  // Sampling indexes 1 in 16 recent values, so it expects 16 times fewer hits on them.
  const std::size_t needed = ix.sampling ? window / sample_every / sample_every : window / 16;
  ix.sampling = ix.window_recent_hits < needed;
  ix.window_new = ix.window_recent_hits = 0;
  ix.previous_window_start = ix.window_start;
  ix.window_start = end_;
}

void graph_output::grow_index(dedupe_index& ix) {
  std::vector<std::uint64_t> old(std::max<std::size_t>(1024, ix.slots.size() * 2));
  old.swap(ix.slots);
  const std::size_t mask = ix.slots.size() - 1;
  for (const std::uint64_t slot : old) {
    if (slot == 0) continue;
    std::size_t i = (slot >> 32) & mask;
    while (ix.slots[i] != 0) i = (i + 1) & mask;
    ix.slots[i] = slot;
  }
}

std::unique_ptr<permafrost::arena> graph_output::finish() {
  check_not_forked();
  nodes_ = {};
  packed_ = {};
  arena_->freeze();
  return std::move(arena_);
}

}  // namespace permafrost::python
