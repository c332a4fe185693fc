// permafrost for Python — reading frozen values as Python objects.
//
// Contract: materialise() turns one value word of a store's graph into what a reader gets: a new
// str, bytes, int, float, bool, None or tuple (tuples eagerly, item by item), and a view
// (views.hpp) for a dict, list or set, which reads its items only when asked. thaw_word() turns
// it into ordinary Python objects all the way down (dict, list, set, frozenset, tuple). A node
// marked flag_shared (one object reached several times when frozen) is built once per call and
// used for each of its references, so both build at most the graph's read cost (format.hpp) and
// thaw() gives the original sharing back. Both only read the frozen bytes, so they never dirty a
// shared page. Pre: the graph was built by freeze() or passed graph_check (no bounds checks).
//
// Thread safety: under the GIL.
#pragma once

#include "format.hpp"
#include "module_state.hpp"

namespace permafrost::python {

struct store_object;

// The value word w of `store` (whose bytes start at base) as a Python object: a new reference,
// or NULL with an exception set.
PyObject* materialise(store_object* store, const char* base, word w);

// The value word w as ordinary Python objects, recursively: a new reference, or NULL with an
// exception set. `state` supplies int.from_bytes for big ints.
PyObject* thaw_word(const module_state& state, const char* base, word w);

// Whether the calling thread's stack has the room a recursive walk of nested values keeps free
// (256 KiB): false, with RecursionError set, where it has not (a thread with a small stack:
// threading.stack_size). freeze() checks the same.
bool stack_room();

// stack_room() for a recursive walk `depth` levels deep, asked every 32 levels (a level takes
// ~1 KiB at most, so 32 stay well inside the 256 KiB kept free): a shallow walk never fails in
// a thread with a small stack. The one check of the walks that keep no path: thaw and tuples
// (values.cpp), key hashes (keys.cpp), dumps(), and the views' repr(), ==, ordering and hash
// (views.cpp, py_nested).
bool stack_room_at(std::size_t depth);

}  // namespace permafrost::python
