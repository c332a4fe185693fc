// permafrost for Python — the Store and the module functions about stores and images (see
// store.hpp).
#include "store.hpp"

#include <structmember.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "format.hpp"
#include "graph_check.hpp"
#include "image_support.hpp"
#include "permafrost/arena.hpp"
#include "reading.hpp"
#include "values.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

void store_dealloc(PyObject* self) {
  auto* s = reinterpret_cast<store_object*>(self);
  if (s->weakrefs) PyObject_ClearWeakRefs(self);
  s->owner.release();
  release_retired(s);
  delete s->check;
  Py_XDECREF(s->path);
  Py_XDECREF(s->image_id);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);
}

PyMemberDef store_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(store_object, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyType_Slot store_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(store_dealloc)},
    {Py_tp_members, store_members},
    {Py_tp_doc, const_cast<char*>("The owner of one frozen value graph (an arena or an image).")},
    {0, nullptr}};

}  // namespace

PyType_Spec store_spec = {"permafrost._core.Store", sizeof(store_object), 0, made_here_only,
                          store_slots};

void store_owner::release() noexcept {
  delete arena;
  arena = nullptr;
  close_image(image);
  image = nullptr;
  if (mapped) {
    PyBuffer_Release(&buffer);
    Py_CLEAR(mapped);
  }
}

ref new_store(module_state& state) {
  PyTypeObject* type = live_type(state.store_type);
  auto* s = type ? PyObject_New(store_object, type) : nullptr;
  if (!s) throw py_error{};
  s->state = &state;
  s->base = nullptr;
  s->size = 0;
  new (&s->owner) store_owner();
  s->readers = 0;
  s->retired = nullptr;
  s->check = nullptr;
  s->weakrefs = nullptr;
  Py_INCREF(Py_None);
  s->path = Py_None;
  Py_INCREF(Py_None);
  s->image_id = Py_None;
  return ref(reinterpret_cast<PyObject*>(s));
}

std::unique_ptr<permafrost::arena> frozen_copy(const char* data, std::size_t n,
                                               std::string_view name, bool memfd) {
  permafrost::arena_options opt;
  opt.name = name;
  opt.capacity = std::max<std::size_t>(n, 4096);
  opt.huge_pages = opt.huge_pages && !memfd && n >= (std::size_t{8} << 20);
  if (memfd) opt.backing = permafrost::backing::memfd;
  auto a = std::make_unique<permafrost::arena>(opt);
  if (memfd) a->prefault(n);  // one system call per 64 MiB instead of a fault per 4 KiB page
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

ref store_from_arena(module_state& state, std::unique_ptr<permafrost::arena> a, std::size_t size) {
  ref store = new_store(state);
  auto* s = reinterpret_cast<store_object*>(store.get());
  s->base = reinterpret_cast<const char*>(a->used_bytes().data());
  s->size = size;
  s->owner.arena = a.release();
  return store;
}

void release_retired(store_object* s) noexcept {
  if (!s->retired) return;
  for (store_owner& o : *s->retired) o.release();
  delete s->retired;
  s->retired = nullptr;
}

void replace_owner(store_object* s, store_owner next) {
  if (s->readers == 0) {
    s->owner.release();
  } else {
    if (!s->retired) s->retired = new std::vector<store_owner>;
    s->retired->push_back(s->owner);
  }
  s->owner = next;
}

[[gnu::noinline]] PyObject* closed_error(const store_object* s) {
  if (PyUnicode_Check(s->path))
    PyErr_Format(PyExc_ValueError, "permafrost: the image %U is closed", s->path);
  else
    PyErr_SetString(PyExc_ValueError,
                    "permafrost: this frozen data is closed (close() was called)");
  return nullptr;
}

PyObject* root_of(store_object* store) {
  const auto* root = reinterpret_cast<const root_header*>(store->base);
  const auto version = store->size < sizeof(root_header) ? 0 : root_version(root);
  if (version == 0 || version > newest_version) {
    PyErr_SetString(PyExc_ValueError, "not a permafrost Python image (bad magic)");
    return nullptr;
  }
  return materialise(store, store->base, root->root);
}

store_object* store_of(module_state& state, PyObject* o) {
  store_object* s;
  if (is_view(state, o)) {
    s = reinterpret_cast<view_object*>(o)->store;
  } else if (Py_TYPE(o) == state.store_type) {
    s = reinterpret_cast<store_object*>(o);
  } else {
    PyErr_Format(PyExc_TypeError, "expected a FrozenDict, FrozenList or FrozenSet, not %.200s",
                 Py_TYPE(o)->tp_name);
    throw py_error{};
  }
  if (!s->base) {
    closed_error(s);
    throw py_error{};
  }
  return s;
}

store_object* as_store(module_state& state, PyObject* o) {
  PyTypeObject* type = live_type(state.store_type);
  if (!type) return nullptr;
  if (Py_TYPE(o) != type) {
    PyErr_Format(PyExc_TypeError, "expected a permafrost._core.Store, not %.200s",
                 Py_TYPE(o)->tp_name);
    return nullptr;
  }
  return reinterpret_cast<store_object*>(o);
}

PyObject* image_id_str(const std::string& id) {
  return PyUnicode_DecodeUTF8(id.data(), static_cast<Py_ssize_t>(id.size()), "replace");
}

// _range(view or store) -> (address, size) of the frozen bytes the view lives in.
PyObject* py_range(PyObject* module, PyObject* o) {
  PF_ENTRY_BEGIN
  store_object* s = store_of(state_of(module), o);
  return Py_BuildValue("(Kn)",
                       static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(s->base)),
                       static_cast<Py_ssize_t>(s->size));
  PF_ENTRY_END
}

// _save(view, path, image_id): writes the view's whole frozen graph to an image file, with
// image_id (a fresh random id from the caller) in its header (the Python half saves a view that
// is not the root by freezing it first). An image's or a shared graph's bytes are copied into an
// arena first: save_image writes arenas.
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
  const std::string_view id{image_id, static_cast<std::size_t>(id_size)};
  if (s->owner.arena) {
    save_image(*s->owner.arena, s->base, PyBytes_AS_STRING(path.get()), id);
    Py_RETURN_NONE;
  }
  const reading r(s);
  const std::unique_ptr<permafrost::arena> a =
      frozen_copy(r.base, s->size, "permafrost-python-save");
  save_image(*a, reinterpret_cast<const char*>(a->used_bytes().data()),
             PyBytes_AS_STRING(path.get()), id);
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

namespace {
// Throws py_error when a signal handler raised (Ctrl-C: KeyboardInterrupt): the step hook of a
// long open, so that it can be abandoned.
void check_signals() {
  if (PyErr_CheckSignals() < 0) throw py_error{};
}
}  // namespace

// _open_store(path, fd, populate=False) -> the Store of the image file the caller opened at path
// as fd (and keeps and closes), its checksum verified and its graph checked; with populate,
// every page mapped first. Signal handlers run every few milliseconds meanwhile; one that raises
// (Ctrl-C) abandons the open, and nothing stays mapped.
PyObject* py_open_store(PyObject* module, PyObject* args) {
  PyObject* path_obj;
  int fd;
  int populate = 0;
  if (!PyArg_ParseTuple(args, "O&i|p", PyUnicode_FSConverter, &path_obj, &fd, &populate))
    return nullptr;
  ref path(path_obj);
  PF_ENTRY_BEGIN
  const char* p = PyBytes_AS_STRING(path.get());
  ref store = new_store(state_of(module));
  auto* s = reinterpret_cast<store_object*>(store.get());
  std::string image_id;
  s->owner.image = open_image(fd, p, s->base, s->size, image_id, populate != 0, check_signals);
  Py_SETREF(s->path, PyUnicode_DecodeFSDefault(p));
  if (!s->path) return nullptr;
  Py_SETREF(s->image_id, image_id_str(image_id));
  if (!s->image_id) return nullptr;
  // The checksum tells damage, not a crafted file: the readers trust every offset, so the whole
  // graph is checked once here (graph_check.hpp) before any view of it exists.
  s->check = new graph_check(s->base, s->size, check_signals);
  if (const std::string err = s->check->run(); !err.empty()) {
    PyErr_Format(PyExc_OSError, "%s: not a valid permafrost Python image: %s", p, err.c_str());
    return nullptr;
  }
  return store.release();
  PF_ENTRY_END
}

// _open_store_fd(fd, name) -> the Store of the image file open as fd, which another process
// sent after opening and checking it (a trusted pickle): mapped without verifying the checksum
// or walking the graph, so offsets are bounds-checked only. `name` (the sender's path) names it
// in errors and plain pickles. The caller keeps and closes fd.
PyObject* py_open_store_fd(PyObject* module, PyObject* args) {
  int fd;
  PyObject* name;
  if (!PyArg_ParseTuple(args, "iU", &fd, &name)) return nullptr;
  PF_ENTRY_BEGIN
  ref store = new_store(state_of(module));
  auto* s = reinterpret_cast<store_object*>(store.get());
  std::string image_id;
  s->owner.image = open_image_fd(fd, s->base, s->size, image_id);
  Py_INCREF(name);
  Py_SETREF(s->path, name);
  Py_SETREF(s->image_id, image_id_str(image_id));
  if (!s->image_id) return nullptr;
  return store.release();
  PF_ENTRY_END
}

// _store_view(store, offset) -> the value at `offset` of an opened store (offset 0: the root).
PyObject* py_store_view(PyObject* module, PyObject* args) {
  PyObject* st;
  PyObject* offset;
  PyTypeObject* type = live_type(state_of(module).store_type);
  if (!type || !PyArg_ParseTuple(args, "O!O!", type, &st, &PyLong_Type, &offset)) return nullptr;
  auto* s = reinterpret_cast<store_object*>(st);
  if (!s->base) return closed_error(s);
  // Checked, not masked ("K" wrapped 2^64 + the root's offset onto the root).
  const unsigned long long off = PyLong_AsUnsignedLongLong(offset);
  if (off == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError, "offset %R is no value of the image", offset);
    return nullptr;
  }
  if (off == 0) return root_of(s);
  // Offsets come from pickles: in an image only the start of a node the open-time walk accepted
  // is read. Other graphs were written by freeze() here, or by the process that sent this one
  // (sealed, or an image it checked); that pickle is trusted as every pickle is (unpickling runs
  // code), so only the bounds are checked.
  // A row of a table (format.hpp) is named by its row word: its table and row must be real.
  const bool row = (off & tag_mask) == tag_row;
  const std::uint64_t node_off = row ? row_table_offset(off) : off;
  bool known = s->check
                   ? s->check->is_node(node_off)
                   : node_off % 8 == 0 && node_off >= sizeof(root_header) && node_off < s->size;
  if (known && row) {
    const auto* t = node_at<node_header>(s->base, node_off);
    known = t->kind == kind_table && row_of(off) < t->count;
  } else if (known) {  // a dict's keys table is a node, but no value (SystemError when read)
    known = node_at<node_header>(s->base, node_off)->kind != kind_keys;
  }
  if (!known) {
    PyErr_Format(PyExc_ValueError, "offset %llu is no value of the image", off);
    return nullptr;
  }
  return materialise(s, s->base, off);
}

// _store_id(store) -> the id saved with the image ("" for a file without one).
PyObject* py_store_id(PyObject* module, PyObject* st) {
  store_object* s = as_store(state_of(module), st);
  if (!s) return nullptr;
  Py_INCREF(s->image_id);
  return s->image_id;
}

// _store_of(view) -> its Store.
PyObject* py_store_of(PyObject* module, PyObject* o) {
  if (!is_view(state_of(module), o)) {
    PyErr_Format(PyExc_TypeError, "expected a FrozenDict, FrozenList or FrozenSet, not %.200s",
                 Py_TYPE(o)->tp_name);
    return nullptr;
  }
  PyObject* s = reinterpret_cast<PyObject*>(reinterpret_cast<view_object*>(o)->store);
  Py_INCREF(s);
  return s;
}

// _same_node(a, b) -> whether a and b are views of one type on one node of one graph: a value
// freeze() stored once and reached twice (it keeps shared sub-values shared). == and != take it
// for equality with nothing read, as Python's own containers take an object for equal to itself:
// a view of a graph shared n levels deep compared with itself read 2^n nodes.
PyObject* py_same_node(PyObject* module, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "_same_node() takes 2 arguments");
    return nullptr;
  }
  const module_state& state = state_of(module);
  PyObject* a = args[0];
  PyObject* b = args[1];
  if (!is_view(state, a) || Py_TYPE(a) != Py_TYPE(b)) Py_RETURN_FALSE;
  const auto* va = reinterpret_cast<const view_object*>(a);
  const auto* vb = reinterpret_cast<const view_object*>(b);
  // A closed graph's views raise ValueError on every read, == included: never equal here.
  return PyBool_FromLong(va->store == vb->store && va->off == vb->off && va->store->base);
}

// _close(store): unmaps the store's bytes (after the last reader in flight); its views raise
// ValueError from then on. Idempotent.
PyObject* py_close(PyObject* module, PyObject* o) {
  store_object* s = as_store(state_of(module), o);
  if (!s) return nullptr;
  PF_ENTRY_BEGIN
  if (s->base) {
    s->base = nullptr;
    replace_owner(s, store_owner{});
  }
  Py_RETURN_NONE;
  PF_ENTRY_END
}

// _closed(store) -> bool
PyObject* py_closed(PyObject* module, PyObject* o) {
  store_object* s = as_store(state_of(module), o);
  return s ? PyBool_FromLong(s->base == nullptr) : nullptr;
}

// _is_root(view) -> whether the view is its graph's root (save() writes such a graph as it is).
PyObject* py_is_root(PyObject* module, PyObject* o) {
  PF_ENTRY_BEGIN
  module_state& state = state_of(module);
  store_object* s = store_of(state, o);
  const std::uint64_t root = reinterpret_cast<const root_header*>(s->base)->root;
  return PyBool_FromLong(is_view(state, o) && root == reinterpret_cast<view_object*>(o)->off);
  PF_ENTRY_END
}

}  // namespace permafrost::python
