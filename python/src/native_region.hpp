// permafrost for Python — the arena freeze_native() builds CPython objects in, and the allocator
// hooks that route CPython's own constructors there (internal).
//
// Contract: a region is one permafrost arena plus a map of its blocks: every block starts on a
// 16-byte granule, and the map keeps 2 bits per granule (block_map). While a build_hooks object
// lives, CPython's OBJ and MEM allocator domains (PyMem_SetAllocator) are hooked:
//   - in build mode, malloc/calloc bump-allocate in the region (zero-filled: arena bytes are
//     never reused), realloc of a region block copies it into a new region block, free of a
//     region block marks it dead and does nothing else;
//   - in pass mode (while code other than the copy runs: interning, signal handlers, draining
//     freelists), malloc/calloc go to the allocator that was installed before, realloc of a region
//     block copies it out there, free of a region block still does nothing;
//   - any other block goes to the allocator installed before, whatever the mode.
// The destructor puts the previous allocators back, on every path (errors, KeyboardInterrupt).
// After the first build, install_guard() wraps the process's allocators for good so that a
// realloc or free of a frozen block (a bypass such as list.append(frozen_list, x) reallocating
// its items) copies out or does nothing instead of handing arena memory to pymalloc or glibc:
// the caller's next store then faults in the frozen object and the write trap names it.
//
// Thread safety: everything here runs under the GIL; one build at a time per process
// (build_hooks refuses a second).
#pragma once

#include "native_layout.hpp"

#if PF_NATIVE_SUPPORTED

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "permafrost/arena.hpp"

namespace permafrost::python::native {

inline constexpr unsigned granule_shift = 4;
inline constexpr std::size_t granule_bytes = std::size_t{1} << granule_shift;

// 2 bits per 16-byte granule. While building, a nonzero code marks where a block starts (live or
// dead); after the audit, what starts there (codes in native_audit.hpp). Reads are
// async-signal-safe once the map no longer changes.
class block_map {
 public:
  void set(std::size_t granule, unsigned code);
  unsigned get(std::size_t granule) const noexcept {
    if (granule >= granules_) return 0;
    return static_cast<unsigned>(words_[granule >> 5] >> ((granule & 31) * 2)) & 3u;
  }
  // The first granule in (granule, end) with a nonzero code, or `end`.
  std::size_t next_start(std::size_t granule, std::size_t end) const noexcept;
  // The last granule at or before `granule` with a nonzero code, or SIZE_MAX.
  std::size_t start_at_or_before(std::size_t granule) const noexcept;
  std::size_t granules() const noexcept { return granules_; }
  // Sizes the map for `granules` granules, all code 0, releasing the memory of the old map.
  void reset(std::size_t granules);
  std::size_t bytes() const noexcept { return words_.size() * sizeof(std::uint64_t); }

 private:
  std::vector<std::uint64_t> words_;
  std::size_t granules_ = 0;
};

// Build-time codes.
inline constexpr unsigned block_live = 1;
inline constexpr unsigned block_dead = 2;

class region {
 public:
  // Effects: makes the arena (nothing committed yet). Throws: std::bad_alloc.
  region(const char* name, bool huge_pages);
  region(const region&) = delete;
  region& operator=(const region&) = delete;

  // A zero-filled block of at least `bytes` (1 if 0), 16-aligned, or nullptr when the arena is
  // full. Never throws (it is called by CPython's allocator).
  void* allocate(std::size_t bytes) noexcept;
  bool holds(const void* p) const noexcept {
    return reinterpret_cast<std::uintptr_t>(p) - base_ < capacity_;
  }
  // Marks the block starting at p dead (CPython freed it). The bytes stay.
  void release(const void* p) noexcept;
  // Bytes from p (a block start) to the next block start or the end of what is allocated.
  std::size_t block_bytes(const void* p) const noexcept;

  std::uintptr_t base() const noexcept { return base_; }
  // Bytes from the first byte to the end of the last block.
  std::size_t used() const noexcept { return end_ - base_; }
  std::size_t granule_of(const void* p) const noexcept {
    return (reinterpret_cast<std::uintptr_t>(p) - base_) >> granule_shift;
  }
  void* address_of(std::size_t granule) const noexcept {
    return reinterpret_cast<void*>(base_ + (granule << granule_shift));
  }
  block_map& map() noexcept { return map_; }
  permafrost::arena& arena() noexcept { return arena_; }

 private:
  permafrost::arena arena_;
  std::uintptr_t base_ = 0;
  std::size_t capacity_ = 0;
  std::uintptr_t end_ = 0;
  block_map map_;
};

enum class hook_mode { build, pass };

// Installs the hooks on construction (build mode), restores the previous allocators on
// destruction. Throws std::runtime_error when a build is already running in this process.
class build_hooks {
 public:
  explicit build_hooks(region& r);
  ~build_hooks();
  build_hooks(const build_hooks&) = delete;
  build_hooks& operator=(const build_hooks&) = delete;
  void set_mode(hook_mode m) noexcept;
  hook_mode mode() const noexcept;
};

// Switches the hooks to pass mode for its lifetime.
class pass_through {
 public:
  explicit pass_through(build_hooks& h) noexcept : h_(h), saved_(h.mode()) {
    h_.set_mode(hook_mode::pass);
  }
  ~pass_through() { h_.set_mode(saved_); }
  pass_through(const pass_through&) = delete;
  pass_through& operator=(const pass_through&) = delete;

 private:
  build_hooks& h_;
  hook_mode saved_;
};

// The frozen regions of this process, for the guard (block sizes) and the sharing helpers.
struct frozen_region {
  std::uintptr_t base;
  std::size_t used;
  const block_map* map;  // the audited map; immutable
};
void add_frozen_region(const frozen_region& r);
// The frozen region holding p, or nullptr.
const frozen_region* frozen_region_of(const void* p) noexcept;

// Effects: wraps the OBJ and MEM allocators once per process (see the contract above).
void install_guard();

// Pulls every object CPython keeps on the free lists freeze_native() can meet (floats, lists,
// dicts, small str-keyed dict tables, tuples of the sizes in `tuple_sizes`, bit n for size n)
// into `held` (new references), so that no constructor hands back a block the caller did not
// just allocate. Pre: pass mode. Throws std::bad_alloc (with a Python error set).
void drain_free_lists(std::vector<PyObject*>& held, std::uint32_t tuple_sizes);

}  // namespace permafrost::python::native

#endif  // PF_NATIVE_SUPPORTED
