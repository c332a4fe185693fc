// permafrost for Python — freeze(): Python objects into the frozen format.
//
// Contract: freeze(obj, name) deep-copies a graph of dict, list, tuple, str, bytes, int, float,
// bool, None, set and frozenset (subclasses as their base type; a view is copied) into one frozen
// permafrost arena in the format of format.hpp, and returns the view of its root — or, for a
// scalar root, the ordinary object. An unsupported value, an unhashable key or a cycle raises
// TypeError naming its path (obj["users"][3]["created"]: datetime is not supported); nothing is
// kept then. The walk hashes and iterates with the base types, never a subclass's methods.
//
// Thread safety: under the GIL.
#pragma once

#include "py_ref.hpp"

namespace permafrost::python {

// _freeze(obj, name=None): the module function (`module` is permafrost._core).
PyObject* py_freeze(PyObject* module, PyObject* args);

}  // namespace permafrost::python
