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

// _build(iterable, as_dict, name=None): the streaming builders' module function: the pairs
// (as_dict) or values of the iterable, frozen one at a time into the arena, each released before
// the next is pulled, then the root dict or list. A key given again keeps its first position
// and its last value. Errors as freeze()'s, plus dict(items)'s for a pair that is not a pair;
// an exception from the iterable (KeyboardInterrupt too) propagates; the partial arena is
// released then.
PyObject* py_build(PyObject* module, PyObject* args);

// _writer_reservation(bytes): for tests, the address space the next writers reserve first (0:
// the default), so a small graph outgrows it and moves (graph_output.hpp).
PyObject* py_writer_reservation(PyObject* module, PyObject* bytes);

}  // namespace permafrost::python
