// permafrost for Python — the audit of a built region before it is write-protected, and the
// write trap's description of an offset in it (internal).
//
// Contract: audit() walks the graph from the root and checks, before anything is protected:
//   - every object of the graph that lies in the region starts a live block (or, for a type
//     with a GC header, sits right after one), is of a type freeze_native() makes (the
//     package's dict, list and set subclasses, tuple, frozenset, str, int, float, bytes), and
//     every buffer it owns (a dict's keys table, a list's items, a set's table, a str's UTF-8
//     form) starts a live block of the region;
//   - every object of the graph outside the region is immortal (None, small ints, interned
//     strs...), so nothing ever writes or frees it on the graph's behalf;
//   - nothing outside the graph refers to an object in it, except the caller's one reference to
//     the root: each object's reference count equals the references the graph itself holds;
//   - every live block of the region is one of those objects or buffers (no stray object, such
//     as one made by a finalizer or signal handler during the copy).
// Then it makes every object immortal and untracked by the GC and checks that they are. On
// failure it returns what is wrong (naming the offset and, where it can, the type) and makes
// every object of the graph immortal so that nothing, inside or outside, ever frees it. On
// success `layout` holds the final block map (codes below), which the write trap's describer and
// the allocator guard read.
//
// Thread safety: under the GIL, before freeze. describe() is async-signal-safe.
#pragma once

#include "native_layout.hpp"

#if PF_NATIVE_SUPPORTED

#include <string>

#include "native_build.hpp"
#include "native_region.hpp"

namespace permafrost::python::native {

// Final codes: what starts at a granule. Granules inside a block, and dead blocks, are 0.
inline constexpr unsigned starts_object = 1;     // an object without a GC header
inline constexpr unsigned starts_buffer = 2;     // a buffer of an object of the graph
inline constexpr unsigned starts_gc_header = 3;  // a GC header; its object follows it

// Effects: see the contract. Returns "" when the region is sound. Throws std::bad_alloc.
std::string audit(region& r, PyObject* root, const native_types& types, block_map& layout);

// What the write trap needs to name the object at an offset of a frozen region; lives as long as
// the region (forever).
struct describe_context {
  std::uintptr_t base = 0;
  std::size_t used = 0;
  const block_map* layout = nullptr;
  native_types types;
};

// A permafrost::write_describer: "dict object (NativeDict) at offset 4096 (+24 of 48 bytes)",
// "keys table of dict object (NativeDict) at offset 4096", "the GC header of ...", "UTF-8 form of
// str object at offset ...".
std::size_t describe(const void* context, std::size_t offset, char* buf, std::size_t size) noexcept;

}  // namespace permafrost::python::native

#endif  // PF_NATIVE_SUPPORTED
