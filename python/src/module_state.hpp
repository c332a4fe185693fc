// permafrost for Python — the state of one `permafrost._core` module object.
//
// Contract: everything the extension would otherwise keep in C globals lives here, in the module
// object's state (PEP 489 multi-phase initialisation, PEP 573 module state access): the heap types
// and the objects cached at import. Each interpreter that imports the module gets its own module
// object, types and cache, so nothing is shared across interpreters. Code reaches the state
// through the Store a view belongs to (store_object::state, one load on the hot paths) or, in a
// module function, through the module object (state_of).
//
// Lifetime: the types are created with PyType_FromModuleAndSpec and hold a strong reference to
// the module, and every Store holds one to its type, so the state outlives every Store and view.
// The module's m_clear (a GC pass over the module, interpreter shutdown) may empty the fields
// first: code that makes objects of its types checks for NULL with live_type().
//
// Thread safety: as the interpreter that owns the module (under its GIL).
#pragma once

#include <cstdint>

#include "py_ref.hpp"

namespace permafrost::python {

struct module_state {
  PyTypeObject* store_type = nullptr;   // permafrost._core.Store
  PyTypeObject* dict_type = nullptr;    // permafrost.FrozenDict
  PyTypeObject* list_type = nullptr;    // permafrost.FrozenList
  PyTypeObject* set_type = nullptr;     // permafrost.FrozenSet
  PyTypeObject* iter_type = nullptr;    // permafrost._core._iterator
  PyTypeObject* nested_type = nullptr;  // permafrost._core._nested_method (views.hpp, py_nested)
  PyObject* int_from_bytes = nullptr;   // int.from_bytes
  PyObject* str_little = nullptr;       // "little"
  PyObject* kw_signed = nullptr;        // {"signed": True}
  // Forks this process is a child of, counted by the os.register_at_fork hook module_exec
  // registers: a build begun before a fork must not go on in the child (its memfd arena's pages
  // are the parent's, mapped read-only in the child), so the writer compares it between items.
  std::uint64_t forks = 0;
};

// The flags of every type of this module: none may be called or subclassed from Python. Their
// objects are made only here, with a store behind them (a view made by calling its type pointed
// at nothing and crashed its reader).
inline constexpr unsigned int made_here_only =
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;

// t, or NULL with RuntimeError set when the module's state was cleared (m_clear runs at
// interpreter exit, while finalizers may still hold views).
inline PyTypeObject* live_type(PyTypeObject* t) {
  if (!t) PyErr_SetString(PyExc_RuntimeError, "permafrost: the module was cleared");
  return t;
}

// The state of a permafrost._core module object (the `self` of its module functions).
inline module_state& state_of(PyObject* module) {
  return *static_cast<module_state*>(PyModule_GetState(module));
}

}  // namespace permafrost::python
