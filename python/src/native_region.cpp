// permafrost for Python — the region and the allocator hooks (contract in native_region.hpp).
#include "native_region.hpp"

#if PF_NATIVE_SUPPORTED

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

namespace permafrost::python::native {

// ----- block_map --------------------------------------------------------------------------------

void block_map::reset(std::size_t granules) {
  // A fresh vector, not assign(): assign keeps the old capacity, and the build-time map of a
  // 560 MB copy (9-13 MB, touched) would stay in the parent's heap after reset(0).
  std::vector<std::uint64_t>((granules + 31) / 32, 0).swap(words_);
  granules_ = granules;
}

void block_map::set(std::size_t granule, unsigned code) {
  if (granule >= granules_) {
    // Blocks are allocated in increasing order, so the map grows at its end (amortised).
    granules_ = std::max(granule + 1, granules_ + granules_ / 2);
    words_.resize((granules_ + 31) / 32, 0);
  }
  const auto shift = static_cast<unsigned>((granule & 31) * 2);
  std::uint64_t& w = words_[granule >> 5];
  w = (w & ~(std::uint64_t{3} << shift)) | (std::uint64_t{code & 3u} << shift);
}

std::size_t block_map::next_start(std::size_t granule, std::size_t end) const noexcept {
  end = std::min(end, granules_);
  std::size_t g = granule + 1;
  while (g < end) {
    const std::size_t word = g >> 5;
    // Codes of granules below g in this word are masked off.
    const std::uint64_t w = words_[word] & (~std::uint64_t{0} << ((g & 31) * 2));
    if (w != 0)
      return std::min(end, (word << 5) + static_cast<std::size_t>(std::countr_zero(w)) / 2);
    g = (word + 1) << 5;
  }
  return end;
}

std::size_t block_map::start_at_or_before(std::size_t granule) const noexcept {
  if (granules_ == 0) return std::numeric_limits<std::size_t>::max();
  std::size_t g = std::min(granule, granules_ - 1);
  for (std::size_t word = g >> 5;; --word) {
    std::uint64_t w = words_[word];
    if (word == (g >> 5)) {
      const auto keep = static_cast<unsigned>(((g & 31) + 1) * 2);  // granules up to g
      if (keep < 64) w &= (std::uint64_t{1} << keep) - 1;
    }
    if (w != 0) return (word << 5) + static_cast<std::size_t>(63 - std::countl_zero(w)) / 2;
    if (word == 0) return std::numeric_limits<std::size_t>::max();
  }
}

// ----- region -----------------------------------------------------------------------------------

namespace {

// The largest arena the reservation gives: the size of what is built is not known beforehand,
// and capacity is only address space until it is used.
permafrost::arena make_arena(const char* name, bool huge_pages) {
  for (std::size_t capacity = std::size_t{64} << 30;; capacity /= 4) {
    permafrost::arena_options opt;
    opt.name = name;
    opt.capacity = capacity;
    opt.huge_pages = huge_pages && permafrost::huge_pages_available();
    try {
      return permafrost::arena(opt);
    } catch (const permafrost::arena_limit_error& e) {
      // A smaller arena fits a fragmented reservation, not a process with every slot taken.
      if (e.which() == permafrost::arena_limit_error::limit::slots ||
          capacity <= (std::size_t{256} << 20))
        throw;
    }
  }
}

}  // namespace

region::region(const char* name, bool huge_pages) : arena_(make_arena(name, huge_pages)) {
  base_ = reinterpret_cast<std::uintptr_t>(arena_.used_bytes().data());
  end_ = base_;
  capacity_ = arena_.stats().reserved;
}

void* region::allocate(std::size_t bytes) noexcept {
  if (bytes > capacity_) return nullptr;
  const std::size_t n =
      (std::max<std::size_t>(bytes, 1) + granule_bytes - 1) & ~(granule_bytes - 1);
  void* p = arena_.try_allocate(n, granule_bytes);
  if (p == nullptr) return nullptr;
  try {
    map_.set(granule_of(p), block_live);
  } catch (...) {
    return nullptr;  // the map could not grow: the block stays unused
  }
  end_ = std::max(end_, reinterpret_cast<std::uintptr_t>(p) + n);
  return p;
}

void region::release(const void* p) noexcept {
  const std::size_t g = granule_of(p);
  if (map_.get(g) == block_live) map_.set(g, block_dead);  // cannot grow: g is in the map
}

std::size_t region::block_bytes(const void* p) const noexcept {
  const std::size_t g = granule_of(p);
  const std::size_t end = (end_ - base_) >> granule_shift;
  return (map_.next_start(g, end) - g) << granule_shift;
}

// ----- the build hooks --------------------------------------------------------------------------

namespace {

constexpr PyMemAllocatorDomain hooked_domains[2] = {PYMEM_DOMAIN_OBJ, PYMEM_DOMAIN_MEM};

struct hook_state {
  region* r = nullptr;
  hook_mode mode = hook_mode::build;
  PyMemAllocatorEx previous[2] = {};
};
hook_state g_hooks;

template <int D>
void* hook_malloc(void*, std::size_t n) {
  if (g_hooks.mode == hook_mode::build) return g_hooks.r->allocate(n);
  const PyMemAllocatorEx& prev = g_hooks.previous[D];
  return prev.malloc(prev.ctx, n);
}

template <int D>
void* hook_calloc(void*, std::size_t count, std::size_t size) {
  if (g_hooks.mode == hook_mode::build) {
    if (size != 0 && count > std::numeric_limits<std::size_t>::max() / size) return nullptr;
    return g_hooks.r->allocate(count * size);  // arena bytes are zero
  }
  const PyMemAllocatorEx& prev = g_hooks.previous[D];
  return prev.calloc(prev.ctx, count, size);
}

template <int D>
void* hook_realloc(void*, void* p, std::size_t n) {
  const PyMemAllocatorEx& prev = g_hooks.previous[D];
  region& r = *g_hooks.r;
  if (p == nullptr) return hook_malloc<D>(nullptr, n);
  if (!r.holds(p)) return prev.realloc(prev.ctx, p, n);
  // A region block: copy it (into the region when building, out of it otherwise); the old
  // block is left where it is, dead.
  void* q = g_hooks.mode == hook_mode::build ? r.allocate(n) : prev.malloc(prev.ctx, n ? n : 1);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, std::min(n, r.block_bytes(p)));
  r.release(p);
  return q;
}

template <int D>
void hook_free(void*, void* p) {
  if (p == nullptr) return;
  if (g_hooks.r->holds(p)) {
    g_hooks.r->release(p);
    return;
  }
  const PyMemAllocatorEx& prev = g_hooks.previous[D];
  prev.free(prev.ctx, p);
}

template <int D>
PyMemAllocatorEx hook_allocator() {
  return PyMemAllocatorEx{nullptr, hook_malloc<D>, hook_calloc<D>, hook_realloc<D>, hook_free<D>};
}

}  // namespace

build_hooks::build_hooks(region& r) {
  if (g_hooks.r != nullptr)
    throw std::runtime_error("permafrost.freeze_native() is already running in this process");
  g_hooks.r = &r;
  g_hooks.mode = hook_mode::build;
  PyMem_GetAllocator(hooked_domains[0], &g_hooks.previous[0]);
  PyMem_GetAllocator(hooked_domains[1], &g_hooks.previous[1]);
  PyMemAllocatorEx obj = hook_allocator<0>();
  PyMemAllocatorEx mem = hook_allocator<1>();
  PyMem_SetAllocator(hooked_domains[0], &obj);
  PyMem_SetAllocator(hooked_domains[1], &mem);
}

build_hooks::~build_hooks() {
  PyMem_SetAllocator(hooked_domains[0], &g_hooks.previous[0]);
  PyMem_SetAllocator(hooked_domains[1], &g_hooks.previous[1]);
  g_hooks = hook_state{};
}

void build_hooks::set_mode(hook_mode m) noexcept { g_hooks.mode = m; }
hook_mode build_hooks::mode() const noexcept { return g_hooks.mode; }

// ----- frozen regions and the guard
// ---------------------------------------------------------------

namespace {

std::vector<frozen_region>& frozen_regions() {
  static auto* regions = new std::vector<frozen_region>;  // lives as long as the arenas: forever
  return *regions;
}

PyMemAllocatorEx g_guarded[2] = {};
bool g_guard_installed = false;

// A realloc of a frozen block copies it out: CPython then stores the new pointer into the frozen
// owner, which faults, and the write trap names the owner.
template <int D>
void* guard_realloc(void*, void* p, std::size_t n) {
  const PyMemAllocatorEx& inner = g_guarded[D];
  if (p != nullptr && permafrost::is_frozen(p)) {
    if (const frozen_region* fr = frozen_region_of(p)) {
      const std::size_t g = (reinterpret_cast<std::uintptr_t>(p) - fr->base) >> granule_shift;
      const std::size_t end = fr->used >> granule_shift;
      const std::size_t old = (fr->map->next_start(g, end) - g) << granule_shift;
      void* q = inner.malloc(inner.ctx, n ? n : 1);
      if (q != nullptr) std::memcpy(q, p, std::min(n, old));
      return q;
    }
  }
  return inner.realloc(inner.ctx, p, n);
}

// Frozen blocks are never freed.
template <int D>
void guard_free(void*, void* p) {
  if (p != nullptr && permafrost::is_frozen(p)) return;
  const PyMemAllocatorEx& inner = g_guarded[D];
  inner.free(inner.ctx, p);
}

template <int D>
void install_guard_on(PyMemAllocatorDomain domain) {
  PyMem_GetAllocator(domain, &g_guarded[D]);
  // malloc and calloc are the inner allocator's own, with its context: the guard costs nothing
  // on them.
  PyMemAllocatorEx guard{g_guarded[D].ctx, g_guarded[D].malloc, g_guarded[D].calloc,
                         guard_realloc<D>, guard_free<D>};
  PyMem_SetAllocator(domain, &guard);
}

}  // namespace

void add_frozen_region(const frozen_region& r) { frozen_regions().push_back(r); }

const frozen_region* frozen_region_of(const void* p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (const frozen_region& r : frozen_regions())
    if (a - r.base < r.used) return &r;
  return nullptr;
}

void install_guard() {
  if (g_guard_installed) return;
  install_guard_on<0>(hooked_domains[0]);
  install_guard_on<1>(hooked_domains[1]);
  g_guard_installed = true;
}

// ----- free lists -------------------------------------------------------------------------------

void drain_free_lists(std::vector<PyObject*>& held, std::uint32_t tuple_sizes) {
  // More than CPython 3.12/3.13 keep on each list: 100 floats, 80 lists, 80 dicts, 80 small
  // str-keyed tables, 2000 tuples of each size below 20 (Objects/floatobject.c, listobject.c,
  // dictobject.c, tupleobject.c; Include/internal/pycore_freelist.h in 3.13).
  constexpr int small_lists = 256;
  constexpr int tuples_per_size = 2048;
  auto keep = [&](PyObject* o) {
    if (o == nullptr) throw std::bad_alloc();
    held.push_back(o);
  };
  static PyObject* probe_key = PyUnicode_InternFromString("permafrost.drain");
  if (probe_key == nullptr) throw std::bad_alloc();
  held.reserve(held.size() + std::size_t{4} * small_lists);
  for (int i = 0; i < small_lists; ++i) keep(PyFloat_FromDouble(0.5));
  for (int i = 0; i < small_lists; ++i) keep(PyList_New(0));
  for (int i = 0; i < small_lists; ++i) {
    PyObject* d = PyDict_New();
    keep(d);
    if (PyDict_SetItem(d, probe_key, Py_None) < 0) throw std::bad_alloc();  // a keys table
  }
  for (int size = 1; size <= 20; ++size) {
    if ((tuple_sizes & (std::uint32_t{1} << size)) == 0) continue;
    for (int i = 0; i < tuples_per_size; ++i) keep(PyTuple_New(size));
  }
}

}  // namespace permafrost::python::native

#endif  // PF_NATIVE_SUPPORTED
