// permafrost for Python — the Store: who owns a frozen value graph's bytes, and for how long.
//
// Contract: a Store (permafrost._core.Store) owns one frozen value graph (format.hpp) and keeps
// its bytes mapped until it is closed or dies: a frozen permafrost arena made by freeze() or a
// builder (a memfd arena, whose descriptor is sent to other processes), an image file mapped by
// open(), or a read-only buffer mapping a graph another process shared (a memfd, mapped by the
// Python half of the package). Every view holds a strong reference to its Store. close() unmaps
// the bytes early: from then on `base` is null and every reader entry point raises ValueError
// (reading.hpp checks and pins). For an image, the Store also keeps the graph_check that accepted
// it, so an offset arriving in a pickle is read only if it starts an accepted node. The Store
// carries a pointer to its module's state (module_state.hpp), which is how views reach the types
// and cached objects on their hot paths. Stores support weak references: the package's caches
// (permafrost/_stores.py) hold them weakly.
//
// This file also holds the module functions about stores and images: _range, _save, _save_bytes,
// _open_store, _store_view, _store_id, _store_of, _close, _closed, _is_root (see store.cpp);
// sharing.hpp has those that send a store to another process.
//
// Thread safety: under the GIL. A Store's bytes are immutable; close() and share() change which
// bytes it points at, never the bytes a reader in flight is reading.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "module_state.hpp"
#include "py_ref.hpp"

namespace permafrost {
class arena;
}

namespace permafrost::python {

class graph_check;
struct image_handle;

// What holds a store's bytes: at most one of an arena, an image or a mapped buffer.
struct store_owner {
  permafrost::arena* arena = nullptr;  // owned
  image_handle* image = nullptr;       // owned
  PyObject* mapped = nullptr;          // strong: an object exporting a read-only buffer...
  Py_buffer buffer{};                  // ...this one, held while the store uses it
  // Effects: unmaps what it holds (under the GIL: a mapped buffer is a Python object). Never
  // throws.
  void release() noexcept;
};

struct store_object {
  PyObject_HEAD module_state* state;  // the module's state; outlives the store
  const char* base;                   // offset 0 of the frozen graph; null once closed
  std::size_t size;                   // bytes from base
  store_owner owner;
  // Reader entry points in flight (reading.hpp). Any of them may run Python code (a key's
  // __eq__, a finalizer run by a GC pass) that closes the store or moves its bytes; the owners
  // replaced meanwhile wait in `retired` until the last reader returns.
  int readers;
  std::vector<store_owner>* retired;  // owned; null when none waits
  PyObject* path;                     // str for an image, None for an arena
  PyObject* image_id;                 // str: the id saved with the image; None for an arena
  graph_check* check;                 // owned; for an image, the walk that accepted it
  PyObject* weakrefs;                 // for weak references (the package's caches)
};

// The type spec of permafrost._core.Store (module.cpp makes the type from it).
extern PyType_Spec store_spec;

// Effects: a new Store that owns the frozen arena `a`, whose first `size` bytes are the graph.
// Throws: py_error (the arena is released then).
ref store_from_arena(module_state& state, std::unique_ptr<permafrost::arena> a, std::size_t size);

// Effects: a Store that owns nothing yet (path and image id None). Throws: py_error.
ref new_store(module_state& state);

// Effects: a frozen arena holding a copy of data[0, n), its first byte at the arena's start: the
// one way this package makes an arena. Anonymous arenas get huge pages only when the copy fills
// them (an arena with huge pages commits 2 MiB for the smallest graph). Throws: py_error
// (SystemError), std::bad_alloc, the library's arena errors.
std::unique_ptr<permafrost::arena> frozen_copy(const char* data, std::size_t n,
                                               std::string_view name, bool memfd = false);

// Effects: makes `next` the store's owner; the old one is released now, or when the last reader
// in flight returns. Never throws (but may allocate the retired list: std::bad_alloc).
void replace_owner(store_object* s, store_owner next);

// Effects: unmaps the owners that waited for readers in flight. Never throws.
void release_retired(store_object* s) noexcept;

// Effects: sets ValueError ("... is closed") for a closed store; returns nullptr.
PyObject* closed_error(const store_object* s);

// s as a Store, or nullptr with TypeError set when it is not one.
store_object* as_store(module_state& state, PyObject* s);

// The image id `id` as a str: a new reference, or NULL with an exception set.
PyObject* image_id_str(const std::string& id);

// The view (or plain object, for a scalar root) of the root of a store. NULL with an exception
// set when the bytes are not a Python graph.
PyObject* root_of(store_object* store);

// The Store behind a view, or `o` itself when it is a Store. Throws: py_error with TypeError set
// for anything else, with ValueError set when the store is closed.
store_object* store_of(module_state& state, PyObject* o);

// Module functions (METH_VARARGS or METH_O; `module` is permafrost._core).
PyObject* py_range(PyObject* module, PyObject* view);
PyObject* py_save(PyObject* module, PyObject* args);
PyObject* py_save_bytes(PyObject* module, PyObject* args);
PyObject* py_open_store(PyObject* module, PyObject* args);
PyObject* py_open_store_fd(PyObject* module, PyObject* args);
PyObject* py_store_view(PyObject* module, PyObject* args);
PyObject* py_store_id(PyObject* module, PyObject* store);
PyObject* py_store_of(PyObject* module, PyObject* view);
PyObject* py_same_node(PyObject* module, PyObject* const* args, Py_ssize_t nargs);
PyObject* py_close(PyObject* module, PyObject* store);
PyObject* py_closed(PyObject* module, PyObject* store);
PyObject* py_is_root(PyObject* module, PyObject* view);

}  // namespace permafrost::python
