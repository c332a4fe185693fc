// permafrost for Python — the view types FrozenDict, FrozenList, FrozenSet and their iterator.
//
// Contract: a view is (its Store, the offset of a dict, list or set node). It holds a strong
// reference to the Store, so the bytes stay mapped while it lives (unless the store is closed:
// then every access raises ValueError, see reading.hpp), and it reads them on every access
// without writing: `[]`, `in`, `get`, `len`, iteration and thaw() are C slots here;
// the Python half of the package (permafrost/__init__.py) adds the collections.abc behaviour,
// repr, equality, pickling and the mutation errors to these same types. Views are made only by
// materialise() (values.hpp); Python cannot instantiate or subclass the types.
//
// Thread safety: the bytes are immutable, so views of one store may be used from any thread
// (under the GIL).
#pragma once

#include <cstdint>

#include "format.hpp"
#include "module_state.hpp"

namespace permafrost::python {

struct store_object;

struct view_object {
  PyObject_HEAD store_object* store;  // strong; the bytes' address is the store's (no cache: a
                                      // store may be closed, or its graph moved by share())
  std::uint64_t off;                  // the node
};

// The type specs (module.cpp makes the types from them, into module_state).
extern PyType_Spec dict_spec;
extern PyType_Spec list_spec;
extern PyType_Spec set_spec;
extern PyType_Spec iter_spec;

// Whether o is a FrozenDict, FrozenList or FrozenSet of this module.
inline bool is_view(const module_state& state, PyObject* o) {
  PyTypeObject* t = Py_TYPE(o);
  return t == state.dict_type || t == state.list_type || t == state.set_type;
}

// A new view of type `type` on the node at `off`: a new reference, or NULL with an exception set.
PyObject* new_view(PyTypeObject* type, store_object* store, std::uint64_t off);

// _nested(fn): fn as a method of the views run as one level deeper in a recursive read of nested
// views. The views' repr(), ==, ordering and hash (permafrost/__init__.py) recurse through
// Python code once per level of nesting, each level on the C stack (~1 KiB on 3.12), which a
// thread with a small stack (threading.stack_size) overflowed: SIGSEGV. The levels are counted
// per thread, and every 32 the stack is checked (stack_room_at): RecursionError where it runs
// short. In C (a vectorcall method descriptor), as no Python wrapper would be: a frame more a
// call (repr, ==, hash of a record) cost up to half as much again.
extern PyType_Spec nested_spec;
PyObject* py_nested(PyObject* module, PyObject* fn);

}  // namespace permafrost::python
