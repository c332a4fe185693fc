// permafrost for Python — the Store and the module functions about stores and images (see
// store.hpp).
#include "store.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "format.hpp"
#include "graph_check.hpp"
#include "image_support.hpp"
#include "permafrost/arena.hpp"
#include "values.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

void store_dealloc(PyObject* self) {
  auto* s = reinterpret_cast<store_object*>(self);
  delete s->arena;
  close_image(s->image);
  delete s->check;
  Py_XDECREF(s->path);
  Py_XDECREF(s->image_id);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);
}

PyType_Slot store_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(store_dealloc)},
    {Py_tp_doc, const_cast<char*>("The owner of one frozen value graph (an arena or an image).")},
    {0, nullptr}};

// A Store that owns nothing yet (path and image id None).
ref new_store(module_state& state) {
  PyTypeObject* type = live_type(state.store_type);
  auto* s = type ? PyObject_New(store_object, type) : nullptr;
  if (!s) throw py_error{};
  s->state = &state;
  s->arena = nullptr;
  s->image = nullptr;
  s->base = nullptr;
  s->size = 0;
  s->check = nullptr;
  Py_INCREF(Py_None);
  s->path = Py_None;
  Py_INCREF(Py_None);
  s->image_id = Py_None;
  return ref(reinterpret_cast<PyObject*>(s));
}

// A frozen arena holding a copy of data[0, n), starting at its first byte: huge pages only when
// the copy fills them (an arena with huge pages commits 2 MiB for the smallest graph).
std::unique_ptr<permafrost::arena> frozen_copy(const char* data, std::size_t n, const char* name) {
  permafrost::arena_options opt;
  opt.name = name;
  opt.capacity = std::max<std::size_t>(n, 4096);
  opt.huge_pages = opt.huge_pages && n >= (std::size_t{8} << 20);
  auto a = std::make_unique<permafrost::arena>(opt);
  void* p = a->allocate(n, 16);
  if (a->used_bytes().data() != static_cast<const std::byte*>(p)) {
    PyErr_SetString(PyExc_SystemError,
                    "permafrost: the arena's first allocation is not at its start");
    throw py_error{};
  }
  std::memcpy(p, data, n);
  a->freeze();
  return a;
}

}  // namespace

PyType_Spec store_spec = {"permafrost._core.Store", sizeof(store_object), 0, made_here_only,
                          store_slots};

ref store_from_graph(module_state& state, const char* graph, std::size_t size, const char* name) {
  std::unique_ptr<permafrost::arena> a = frozen_copy(graph, size, name);
  ref store = new_store(state);
  auto* s = reinterpret_cast<store_object*>(store.get());
  s->base = reinterpret_cast<const char*>(a->used_bytes().data());
  s->size = size;
  s->arena = a.release();
  return store;
}

PyObject* root_of(store_object* store) {
  const auto* root = reinterpret_cast<const root_header*>(store->base);
  if (store->size < sizeof(root_header) ||
      std::memcmp(root->magic, root_magic, sizeof root_magic)) {
    PyErr_SetString(PyExc_ValueError, "not a permafrost Python image (bad magic)");
    return nullptr;
  }
  return materialise(store, store->base, root->root);
}

store_object* store_of(module_state& state, PyObject* o) {
  if (!is_view(state, o)) {
    PyErr_Format(PyExc_TypeError, "expected a FrozenDict, FrozenList or FrozenSet, not %.200s",
                 Py_TYPE(o)->tp_name);
    throw py_error{};
  }
  return reinterpret_cast<view_object*>(o)->store;
}

// _range(view) -> (address, size) of the frozen bytes the view lives in.
PyObject* py_range(PyObject* module, PyObject* o) {
  PF_ENTRY_BEGIN
  store_object* s = store_of(state_of(module), o);
  return Py_BuildValue("(Kn)",
                       static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(s->base)),
                       static_cast<Py_ssize_t>(s->size));
  PF_ENTRY_END
}

// _save(view, path, image_id): writes the view's whole frozen graph to an image file, with
// image_id (a fresh random id from the caller) in its header; the view must be the root or inside
// it (its offset is what pickles).
PyObject* py_save(PyObject* module, PyObject* args) {
  PyObject* o;
  PyObject* path_obj;
  const char* image_id = nullptr;
  Py_ssize_t id_size = 0;
  if (!PyArg_ParseTuple(args, "OO&s#", &o, PyUnicode_FSConverter, &path_obj, &image_id, &id_size))
    return nullptr;
  ref path(path_obj);
  PF_ENTRY_BEGIN
  store_object* s = store_of(state_of(module), o);
  if (!s->arena) {
    PyErr_SetString(PyExc_ValueError, "this object already lives in an image; copy the image file");
    return nullptr;
  }
  save_image(*s->arena, s->base, PyBytes_AS_STRING(path.get()),
             {image_id, static_cast<std::size_t>(id_size)});
  Py_RETURN_NONE;
  PF_ENTRY_END
}

// _save_bytes(data, path, root_type=None): writes `data` as the frozen graph of a Python image,
// with correct checksums, whatever it holds; with root_type, under that root type tag instead of
// the Python root's (a C++ image). For tests that hand crafted files to permafrost.open().
PyObject* py_save_bytes(PyObject*, PyObject* args) {
  Py_buffer data;
  PyObject* path_obj;
  const char* root_type = nullptr;
  if (!PyArg_ParseTuple(args, "y*O&|z", &data, PyUnicode_FSConverter, &path_obj, &root_type))
    return nullptr;
  ref path(path_obj);
  struct release_buffer {
    Py_buffer* b;
    ~release_buffer() { PyBuffer_Release(b); }
  } guard{&data};
  PF_ENTRY_BEGIN
  const auto n = static_cast<std::size_t>(data.len);
  if (n < sizeof(root_header)) {
    PyErr_SetString(PyExc_ValueError, "at least the 16-byte root header is needed");
    return nullptr;
  }
  const std::unique_ptr<permafrost::arena> a =
      frozen_copy(static_cast<const char*>(data.buf), n, "permafrost-python-bytes");
  const auto* graph = reinterpret_cast<const char*>(a->used_bytes().data());
  if (root_type) save_image_with_root_type(*a, graph, PyBytes_AS_STRING(path.get()), root_type);
  else save_image(*a, graph, PyBytes_AS_STRING(path.get()), "");
  Py_RETURN_NONE;
  PF_ENTRY_END
}

// _open(path) -> the store's root view.
PyObject* py_open_store(PyObject* module, PyObject* args) {
  PyObject* path_obj;
  if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &path_obj)) return nullptr;
  ref path(path_obj);
  PF_ENTRY_BEGIN
  const char* p = PyBytes_AS_STRING(path.get());
  ref store = new_store(state_of(module));
  auto* s = reinterpret_cast<store_object*>(store.get());
  std::string image_id;
  s->image = open_image(p, s->base, s->size, image_id);
  Py_DECREF(s->path);
  s->path = PyUnicode_DecodeFSDefault(p);
  if (!s->path) return nullptr;
  Py_DECREF(s->image_id);
  s->image_id =
      PyUnicode_DecodeUTF8(image_id.data(), static_cast<Py_ssize_t>(image_id.size()), "replace");
  if (!s->image_id) return nullptr;
  // The checksum tells damage, not a crafted file: the readers trust every offset, so the whole
  // graph is checked once here (graph_check.hpp) before any view of it exists.
  s->check = new graph_check(s->base, s->size);
  if (const std::string err = s->check->run(); !err.empty()) {
    PyErr_Format(PyExc_OSError, "%s: not a valid permafrost Python image: %s", p, err.c_str());
    return nullptr;
  }
  return store.release();
  PF_ENTRY_END
}

// _store_view(store, offset) -> the value at `offset` of an opened store (offset 0: the root).
PyObject* py_store_view(PyObject* module, PyObject* args) {
  PyObject* st;
  unsigned long long off;
  PyTypeObject* type = live_type(state_of(module).store_type);
  if (!type || !PyArg_ParseTuple(args, "O!K", type, &st, &off)) return nullptr;
  auto* s = reinterpret_cast<store_object*>(st);
  if (off == 0) return root_of(s);
  // Offsets come from pickles: only the start of a node the open-time walk accepted is read.
  if (!s->check || !s->check->is_node(off)) {
    PyErr_Format(PyExc_ValueError, "offset %llu is no value of the image", off);
    return nullptr;
  }
  return materialise(s, s->base, off);
}

// _store_id(store) -> the id saved with the image ("" for a file without one).
PyObject* py_store_id(PyObject* module, PyObject* st) {
  PyTypeObject* type = live_type(state_of(module).store_type);
  if (!type) return nullptr;
  if (!PyObject_TypeCheck(st, type)) {
    PyErr_SetString(PyExc_TypeError, "expected a permafrost._core.Store");
    return nullptr;
  }
  PyObject* id = reinterpret_cast<store_object*>(st)->image_id;
  Py_INCREF(id);
  return id;
}

}  // namespace permafrost::python
