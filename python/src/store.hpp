// permafrost for Python — the Store: who owns a frozen value graph's bytes.
//
// Contract: a Store (permafrost._core.Store) owns one frozen value graph (format.hpp) and keeps
// its bytes mapped while it lives: either a frozen permafrost arena made by freeze(), or an image
// file mapped by open(). Every view holds a strong reference to its Store, so the bytes outlive
// every view of them. For an image, the Store also keeps the graph_check that accepted it, so an
// offset arriving in a pickle is read only if it starts an accepted node. The Store carries a
// pointer to its module's state (module_state.hpp), which is how views reach the types and cached
// objects on their hot paths.
//
// This file also holds the module functions about stores and images: _range, _save, _save_bytes,
// _open_store, _store_view, _store_id (see their comments in store.cpp).
//
// Thread safety: a Store is immutable once made; used under the GIL.
#pragma once

#include <cstddef>
#include <memory>

#include "module_state.hpp"
#include "py_ref.hpp"

namespace permafrost {
class arena;
}

namespace permafrost::python {

class graph_check;
struct image_handle;

struct store_object {
  PyObject_HEAD module_state* state;  // the module's state; outlives the store
  permafrost::arena* arena;           // owned; null for an image
  image_handle* image;                // owned; null for an arena
  const char* base;                   // offset 0 of the frozen graph
  std::size_t size;                   // bytes from base
  PyObject* path;                     // str for an image, None for an arena
  PyObject* image_id;                 // str: the id saved with the image; None for an arena
  graph_check* check;                 // owned; for an image, the walk that accepted it
};

// The type spec of permafrost._core.Store (module.cpp makes the type from it).
extern PyType_Spec store_spec;

// Effects: a new Store that owns a frozen arena holding a copy of graph[0, size), the arena named
// `name` (write-trap reports, /proc/PID/maps). Throws: py_error, std::bad_alloc, the library's
// arena errors.
ref store_from_graph(module_state& state, const char* graph, std::size_t size, const char* name);

// The view (or plain object, for a scalar root) of the root of a store. NULL with an exception
// set when the bytes are not a Python graph.
PyObject* root_of(store_object* store);

// The Store behind a view. Throws: py_error (TypeError) when `o` is not a view.
store_object* store_of(module_state& state, PyObject* o);

// Module functions (METH_VARARGS or METH_O; `module` is permafrost._core).
PyObject* py_range(PyObject* module, PyObject* view);
PyObject* py_save(PyObject* module, PyObject* args);
PyObject* py_save_bytes(PyObject* module, PyObject* args);
PyObject* py_open_store(PyObject* module, PyObject* args);
PyObject* py_store_view(PyObject* module, PyObject* args);
PyObject* py_store_id(PyObject* module, PyObject* store);

}  // namespace permafrost::python
