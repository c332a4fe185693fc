// permafrost for Python — what a Store needs to reach another process by reference.
//
// Contract: the module functions the package's pickling for multiprocessing (permafrost/
// _stores.py) is built on. _share(store) gives the descriptor of a sealed memfd holding a
// freeze() result's graph, moving the graph into a memfd arena the first time; another process
// maps that memfd read-only (with Python's mmap: the graph holds offsets only, so any address
// does) and wraps the mapping in a Store with _mapped_store(). _store_info and _store_owner tell
// the Python half what a store is; _pool_write fills the read-only pool that small graphs
// unpickled by value are kept in. Why a memfd arena only on demand, and the alternatives
// measured: docs/design.md, "Python", "Sharing with other processes".
//
// Thread safety: under the GIL.
#pragma once

#include "py_ref.hpp"

namespace permafrost::python {

// Module functions (METH_O; `module` is permafrost._core).
PyObject* py_share(PyObject* module, PyObject* store);
PyObject* py_mapped_store(PyObject* module, PyObject* buffer_owner);
PyObject* py_store_owner(PyObject* module, PyObject* store);
PyObject* py_store_info(PyObject* module, PyObject* store);
// METH_VARARGS: (mapping, offset, data).
PyObject* py_pool_write(PyObject* module, PyObject* args);

}  // namespace permafrost::python
