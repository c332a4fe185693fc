// permafrost for Python — the extension module `permafrost._core` (CPython C API).
//
// Contract: freeze() deep-copies a graph of dict, list, tuple, str, bytes, int, float, bool, None,
// set and frozenset into one frozen permafrost arena in the format of format.hpp, and returns a
// read-only view of it. Views (FrozenDict, FrozenList, FrozenSet) keep their store alive and
// materialise what they are asked for: a str, bytes, int, float or tuple as a new ordinary object,
// a nested dict, list or set as another view. Reading never writes the arena (it is read-only
// after freeze; the write trap names any write), so forked workers share every page of it.
// The Python half of the package (permafrost/__init__.py) adds the collections.abc behaviour,
// repr, equality, pickling and json support on top of these types.
//
// Thread safety: every entry point runs under the GIL. Frozen bytes are immutable, so views of
// one store may be used from any thread.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <malloc.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "format.hpp"
#include "graph_check.hpp"
#include "image_support.hpp"
#include "permafrost/arena.hpp"
#include "permafrost/hash.hpp"
#include "permafrost/memstat.hpp"
#include "permafrost/write_trap.hpp"

namespace pf = permafrost;
using namespace permafrost::python;

namespace {

// Thrown after a Python exception has been set; converted to a NULL return at the boundary.
struct py_error {};

// A new reference released on scope exit.
struct ref {
  PyObject* p = nullptr;
  ref() = default;
  explicit ref(PyObject* o) : p(o) {}
  ref(ref&& o) noexcept : p(o.p) { o.p = nullptr; }
  ref(const ref&) = delete;
  ref& operator=(const ref&) = delete;
  ~ref() { Py_XDECREF(p); }
  PyObject* get() const { return p; }
  PyObject* release() {
    PyObject* o = p;
    p = nullptr;
    return o;
  }
};

PyObject* check(PyObject* o) {
  if (!o) throw py_error{};
  return o;
}

// A type's short name: "datetime", not "datetime.datetime".
std::string short_type_name(PyObject* o) {
  const char* n = Py_TYPE(o)->tp_name;
  const char* dot = std::strrchr(n, '.');
  return dot ? dot + 1 : n;
}

// Converts a C++ exception escaping an entry point into a Python one.
void set_python_error(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) PyErr_NoMemory();
  else PyErr_SetString(PyExc_OSError, e.what());
}

#define PF_ENTRY_BEGIN try {
#define PF_ENTRY_END                            \
  }                                             \
  catch (const py_error&) {                     \
    return nullptr;                             \
  }                                             \
  catch (const std::exception& e) {             \
    if (!PyErr_Occurred()) set_python_error(e); \
    return nullptr;                             \
  }

PyObject* g_int_from_bytes = nullptr;  // int.from_bytes
PyObject* g_str_little = nullptr;      // "little"
PyObject* g_kw_signed = nullptr;       // {"signed": True}

// =============================================================================================
// Stores: who owns the frozen bytes
// =============================================================================================

struct store_object {
  PyObject_HEAD pf::arena* arena;   // owned; null for an image
  pf::python::image_handle* image;  // owned; null for an arena
  const char* base;                 // offset 0 of the frozen graph
  std::size_t size;                 // bytes from base
  PyObject* path;                   // str for an image, None for an arena
  PyObject* image_id;               // str: the id saved with the image; None for an arena
  pf::python::graph_check* check;   // owned; for an image, the walk that accepted it
};

// The flags of every type of this module: none may be called or subclassed from Python. Their
// objects are made only here, with a store behind them (a view made by calling its type pointed
// at nothing and crashed its reader).
constexpr unsigned int made_here_only = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;

PyTypeObject* g_store_type = nullptr;

void store_dealloc(PyObject* self) {
  auto* s = reinterpret_cast<store_object*>(self);
  delete s->arena;
  pf::python::close_image(s->image);
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
PyType_Spec store_spec = {"permafrost._core.Store", sizeof(store_object), 0, made_here_only,
                          store_slots};

store_object* new_store() {
  auto* s = PyObject_New(store_object, g_store_type);
  if (!s) throw py_error{};
  s->arena = nullptr;
  s->image = nullptr;
  s->base = nullptr;
  s->size = 0;
  s->check = nullptr;
  Py_INCREF(Py_None);
  s->path = Py_None;
  Py_INCREF(Py_None);
  s->image_id = Py_None;
  return s;
}

// =============================================================================================
// Views
// =============================================================================================

struct view_object {
  PyObject_HEAD store_object* store;  // strong
  const char* base;                   // store->base, cached
  std::uint64_t off;                  // the node
};

PyTypeObject* g_dict_type = nullptr;
PyTypeObject* g_list_type = nullptr;
PyTypeObject* g_set_type = nullptr;
PyTypeObject* g_iter_type = nullptr;

bool is_view(PyObject* o) {
  PyTypeObject* t = Py_TYPE(o);
  return t == g_dict_type || t == g_list_type || t == g_set_type;
}

template <class T>
const T* node_at(const char* base, std::uint64_t off) {
  return reinterpret_cast<const T*>(base + off);
}
const node_header* view_node(PyObject* self) {
  auto* v = reinterpret_cast<view_object*>(self);
  return node_at<node_header>(v->base, v->off);
}

PyObject* new_view(PyTypeObject* type, store_object* store, const char* base, std::uint64_t off) {
  auto* v = PyObject_New(view_object, type);
  if (!v) return nullptr;
  Py_INCREF(store);
  v->store = store;
  v->base = base;
  v->off = off;
  return reinterpret_cast<PyObject*>(v);
}

void view_dealloc(PyObject* self) {
  auto* v = reinterpret_cast<view_object*>(self);
  Py_DECREF(v->store);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);
}

// =============================================================================================
// Reading frozen values
// =============================================================================================

PyObject* str_from_node(const node_header* n) {
  const char* p = str_bytes(n);
  const auto size = static_cast<Py_ssize_t>(str_size(n));
  if (n->flags & flag_ascii) {
    PyObject* s = PyUnicode_New(size, 127);
    if (s && size) std::memcpy(PyUnicode_1BYTE_DATA(s), p, static_cast<std::size_t>(size));
    return s;
  }
  return PyUnicode_DecodeUTF8(p, size, (n->flags & flag_surrogates) ? "surrogatepass" : nullptr);
}

PyObject* bigint_from_node(const node_header* n) {
  ref b(PyBytes_FromStringAndSize(node_bytes(n), n->count));
  if (!b.get()) return nullptr;
  ref args(PyTuple_Pack(2, b.get(), g_str_little));
  if (!args.get()) return nullptr;
  return PyObject_Call(g_int_from_bytes, args.get(), g_kw_signed);
}

PyObject* scalar(const char* base, word w) {
  switch (w & tag_mask) {
    case tag_int: return PyLong_FromLongLong(static_cast<std::int64_t>(w) >> 3);
    case tag_const:
      if (w == const_none) Py_RETURN_NONE;
      if (w == const_true) Py_RETURN_TRUE;
      Py_RETURN_FALSE;
    case tag_float: {
      double d;
      std::memcpy(&d, base + (w & ~tag_mask), sizeof d);
      return PyFloat_FromDouble(d);
    }
    case tag_inline_float: {
      const word bits = w & ~tag_mask;
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return PyFloat_FromDouble(d);
    }
    case tag_short_str: {
      char b[8];
      short_str_bytes(w, b);
      const std::size_t n = short_str_size(w);
      bool ascii = true;
      for (std::size_t i = 0; i < n; ++i) ascii = ascii && static_cast<unsigned char>(b[i]) < 0x80;
      if (!ascii) return PyUnicode_DecodeUTF8(b, static_cast<Py_ssize_t>(n), nullptr);
      PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
      if (s) std::memcpy(PyUnicode_1BYTE_DATA(s), b, n);
      return s;
    }
  }
  PyErr_SetString(PyExc_SystemError, "permafrost: corrupt frozen value (unknown tag)");
  return nullptr;
}

// A frozen value as a Python object: views for dict, list and set, new objects for the rest.
PyObject* materialise(store_object* store, const char* base, word w) {
  if ((w & tag_mask) != tag_node) return scalar(base, w);
  const auto* n = node_at<node_header>(base, w);
  switch (n->kind) {
    case kind_str:
    case kind_str16: return str_from_node(n);
    case kind_bytes: return PyBytes_FromStringAndSize(node_bytes(n), n->count);
    case kind_bigint: return bigint_from_node(n);
    case kind_tuple: {
      PyObject* t = PyTuple_New(n->count);
      if (!t) return nullptr;
      const word* items = seq_items(n);
      for (std::uint32_t i = 0; i < n->count; ++i) {
        PyObject* item = materialise(store, base, items[i]);
        if (!item) {
          Py_DECREF(t);
          return nullptr;
        }
        PyTuple_SET_ITEM(t, i, item);
      }
      return t;
    }
    case kind_list: return new_view(g_list_type, store, base, w);
    case kind_dict:
    case kind_dict16: return new_view(g_dict_type, store, base, w);
    case kind_set:
    case kind_frozenset: return new_view(g_set_type, store, base, w);
  }
  PyErr_Format(PyExc_SystemError, "permafrost: corrupt frozen value (kind %d)", int{n->kind});
  return nullptr;
}

// A frozen value as ordinary, mutable-where-Python-is Python objects, recursively.
PyObject* thaw_word(const char* base, word w) {
  if ((w & tag_mask) != tag_node) return scalar(base, w);
  const auto* n = node_at<node_header>(base, w);
  switch (n->kind) {
    case kind_str:
    case kind_str16: return str_from_node(n);
    case kind_bytes: return PyBytes_FromStringAndSize(node_bytes(n), n->count);
    case kind_bigint: return bigint_from_node(n);
    case kind_tuple:
    case kind_list: {
      const bool tuple = n->kind == kind_tuple;
      PyObject* out = tuple ? PyTuple_New(n->count) : PyList_New(n->count);
      if (!out) return nullptr;
      const word* items = seq_items(n);
      for (std::uint32_t i = 0; i < n->count; ++i) {
        PyObject* item = thaw_word(base, items[i]);
        if (!item) {
          Py_DECREF(out);
          return nullptr;
        }
        if (tuple) PyTuple_SET_ITEM(out, i, item);
        else PyList_SET_ITEM(out, i, item);
      }
      return out;
    }
    case kind_dict:
    case kind_dict16: {
      const word* kw = table_keys(node_at<table_header>(base, dict_keys_offset(n)));
      const word* vw = dict_values(n);
      ref out(PyDict_New());
      if (!out.get()) return nullptr;
      for (std::uint32_t i = 0, count = dict_count(n); i < count; ++i) {
        ref k(thaw_word(base, kw[i]));
        if (!k.get()) return nullptr;
        ref v(thaw_word(base, vw[i]));
        if (!v.get() || PyDict_SetItem(out.get(), k.get(), v.get()) < 0) return nullptr;
      }
      return out.release();
    }
    case kind_set:
    case kind_frozenset: {
      const auto* t = reinterpret_cast<const table_header*>(n);
      ref out(n->kind == kind_set ? PySet_New(nullptr) : PyFrozenSet_New(nullptr));
      if (!out.get()) return nullptr;
      const word* kw = table_keys(t);
      for (std::uint32_t i = 0; i < n->count; ++i) {
        ref k(thaw_word(base, kw[i]));
        if (!k.get() || PySet_Add(out.get(), k.get()) < 0) return nullptr;
      }
      return out.release();
    }
  }
  PyErr_Format(PyExc_SystemError, "permafrost: corrupt frozen value (kind %d)", int{n->kind});
  return nullptr;
}

// =============================================================================================
// Key hashing and lookup
// =============================================================================================

// A str's UTF-8 bytes without copying when CPython already has them (ASCII, or a cached UTF-8
// form); lone surrogates are encoded with surrogatepass into `holder`. Returns false with an
// exception set on failure.
bool utf8_of(PyObject* s, std::string_view& out, ref& holder) {
#if PY_VERSION_HEX < 0x030C0000
  if (PyUnicode_READY(s) < 0) return false;  // legacy (wstr) strings; all strs are ready on 3.12+
#endif
  if (PyUnicode_IS_ASCII(s)) {
    out = {static_cast<const char*>(PyUnicode_DATA(s)),
           static_cast<std::size_t>(PyUnicode_GET_LENGTH(s))};
    return true;
  }
  Py_ssize_t n = 0;
  if (const char* p = PyUnicode_AsUTF8AndSize(s, &n)) {
    out = {p, static_cast<std::size_t>(n)};
    return true;
  }
  if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return false;
  PyErr_Clear();
  holder.p = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
  if (!holder.get()) return false;
  out = {PyBytes_AS_STRING(holder.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(holder.get()))};
  return true;
}

constexpr std::size_t max_key_depth = 5000;
constexpr std::uint64_t hash_none = 0x6e6f6e65ull;     // "none"
constexpr std::uint64_t hash_nan = 0x6e616e6e616eull;  // "nannan"
constexpr std::uint64_t hash_bytes_seed = 0xb17e5ull;

// The seedless hash of a hashable supported value: equal values (1 == 1.0 == True, a tuple and
// its frozen copy) hash equal, and the result is the same in every process. Returns false with
// TypeError set for an unsupported or unhashable value.
bool key_hash(PyObject* o, std::uint64_t& h, std::size_t depth = 0) {
  namespace d = pf::detail;
  if (depth > max_key_depth) {  // no C stack overflow on absurdly nested tuple keys
    PyErr_SetString(PyExc_TypeError, "key nested deeper than 5000 tuples or frozensets");
    return false;
  }
  if (PyUnicode_Check(o)) {
    std::string_view s;
    ref holder;
    if (!utf8_of(o, s, holder)) return false;
    h = d::hash_bytes(s.data(), s.size());
    return true;
  }
  if (o == Py_None) {
    h = hash_none;
    return true;
  }
  if (PyFloat_Check(o) && std::isnan(PyFloat_AS_DOUBLE(o))) {
    h = hash_nan;  // CPython hashes NaN by identity; no two NaNs are equal keys anyway
    return true;
  }
  if (PyLong_Check(o) || PyFloat_Check(o)) {  // bool is an int; CPython's numeric hash is seedless
    // The base type's hash: a subclass's __hash__ (user code) must not run during freeze().
    const Py_hash_t ph = PyLong_Check(o) ? PyLong_Type.tp_hash(o) : PyFloat_Type.tp_hash(o);
    if (ph == -1 && PyErr_Occurred()) return false;
    h = d::hash_word(static_cast<std::uint64_t>(ph));
    return true;
  }
  if (PyBytes_Check(o)) {
    h = d::hash_bytes(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o))) ^
        hash_bytes_seed;
    return true;
  }
  if (PyTuple_Check(o)) {
    const Py_ssize_t n = PyTuple_GET_SIZE(o);
    std::uint64_t acc = static_cast<std::uint64_t>(n) + 0x7475706cull;
    for (Py_ssize_t i = 0; i < n; ++i) {
      std::uint64_t eh;
      if (!key_hash(PyTuple_GET_ITEM(o, i), eh, depth + 1)) return false;
      acc = d::hash_word(acc + eh);
    }
    h = acc;
    return true;
  }
  if (PyFrozenSet_Check(o)) {
    std::uint64_t acc = 0;
    ref it(PyFrozenSet_Type.tp_iter(o));  // the base type's iterator: no user __iter__
    if (!it.get()) return false;
    while (PyObject* e = PyIter_Next(it.get())) {
      std::uint64_t eh;
      const bool ok = key_hash(e, eh, depth + 1);
      Py_DECREF(e);
      if (!ok) return false;
      acc += d::hash_word(eh);
    }
    if (PyErr_Occurred()) return false;
    h = d::hash_word(acc ^ static_cast<std::uint64_t>(PySet_GET_SIZE(o)));
    return true;
  }
  if (Py_TYPE(o) == g_set_type && node_at<node_header>(reinterpret_cast<view_object*>(o)->base,
                                                       reinterpret_cast<view_object*>(o)->off)
                                          ->kind == kind_frozenset) {
    auto* v = reinterpret_cast<view_object*>(o);
    ref thawed(thaw_word(v->base, v->off));
    return thawed.get() && key_hash(thawed.get(), h);
  }
  PyErr_Format(PyExc_TypeError, "unhashable or unsupported key type: '%.200s'",
               Py_TYPE(o)->tp_name);
  return false;
}

// Index of `key` in table `t`, -1 when absent, -2 with an exception set.
std::int64_t table_find(store_object* store, const char* base, const table_header* t,
                        PyObject* key) {
  const word* keys = table_keys(t);
  if (PyUnicode_Check(key)) {
    std::string_view s;
    ref holder;
    if (!utf8_of(key, s, holder)) return -2;
    const std::uint64_t h = pf::detail::hash_bytes(s.data(), s.size());
    if (s.size() <= max_short_str && !holder.get()) {  // stored in the key word itself
      const word want = short_str_word(s.data(), s.size());
      return find_entry(t, h, [&](std::uint32_t i) { return int{keys[i] == want}; });
    }
    return find_entry(t, h, [&](std::uint32_t i) {
      const word kw = keys[i];
      if ((kw & tag_mask) != tag_node) return 0;
      const auto* n = node_at<node_header>(base, kw);
      return int{is_str(n->kind) && str_size(n) == s.size() &&
                 std::memcmp(str_bytes(n), s.data(), s.size()) == 0};
    });
  }
  std::uint64_t h;
  if (!key_hash(key, h)) return -2;
  return find_entry(t, h, [&](std::uint32_t i) {
    const word kw = keys[i];
    if ((kw & tag_mask) == tag_short_str ||
        ((kw & tag_mask) == tag_node && is_str(node_at<node_header>(base, kw)->kind)))
      return 0;  // a str never equals a non-str key
    ref candidate(materialise(store, base, kw));
    if (!candidate.get()) return -1;
    const int eq = PyObject_RichCompareBool(candidate.get(), key, Py_EQ);
    return eq < 0 ? -1 : eq;
  });
}

// =============================================================================================
// FrozenDict
// =============================================================================================

const node_header* dict_of(PyObject* self) { return view_node(self); }
const table_header* dict_keys_of(PyObject* self) {
  auto* v = reinterpret_cast<view_object*>(self);
  return node_at<table_header>(v->base, dict_keys_offset(dict_of(self)));
}

Py_ssize_t dict_len(PyObject* self) { return dict_count(dict_of(self)); }

PyObject* dict_subscript(PyObject* self, PyObject* key) {
  auto* v = reinterpret_cast<view_object*>(self);
  const std::int64_t i = table_find(v->store, v->base, dict_keys_of(self), key);
  if (i >= 0) return materialise(v->store, v->base, dict_values(dict_of(self))[i]);
  if (i == -1) {
    ref args(PyTuple_Pack(1, key));
    if (args.get()) PyErr_SetObject(PyExc_KeyError, args.get());
  }
  return nullptr;
}

int dict_contains(PyObject* self, PyObject* key) {
  auto* v = reinterpret_cast<view_object*>(self);
  const std::int64_t i = table_find(v->store, v->base, dict_keys_of(self), key);
  return i >= 0 ? 1 : (i == -1 ? 0 : -1);
}

PyObject* dict_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1 || nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "get expected 1 or 2 arguments");
    return nullptr;
  }
  auto* v = reinterpret_cast<view_object*>(self);
  const std::int64_t i = table_find(v->store, v->base, dict_keys_of(self), args[0]);
  if (i >= 0) return materialise(v->store, v->base, dict_values(dict_of(self))[i]);
  if (i == -2) return nullptr;
  PyObject* dflt = nargs == 2 ? args[1] : Py_None;
  Py_INCREF(dflt);
  return dflt;
}

enum iter_mode { iter_keys, iter_values, iter_items, iter_list, iter_set };

struct iter_object {
  PyObject_HEAD PyObject* owner;  // the view, strong
  std::uint32_t next;
  std::uint32_t count;
  int mode;
};

PyObject* new_iter(PyObject* owner, int mode) {
  auto* it = PyObject_New(iter_object, g_iter_type);
  if (!it) return nullptr;
  Py_INCREF(owner);
  it->owner = owner;
  it->next = 0;
  const node_header* n = view_node(owner);
  it->count = is_dict(n->kind) ? dict_count(n) : n->count;
  it->mode = mode;
  return reinterpret_cast<PyObject*>(it);
}

void iter_dealloc(PyObject* self) {
  Py_DECREF(reinterpret_cast<iter_object*>(self)->owner);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);
}

PyObject* iter_next(PyObject* self) {
  auto* it = reinterpret_cast<iter_object*>(self);
  if (it->next >= it->count) return nullptr;
  const std::uint32_t i = it->next++;
  auto* v = reinterpret_cast<view_object*>(it->owner);
  const node_header* n = view_node(it->owner);
  switch (it->mode) {
    case iter_list: return materialise(v->store, v->base, seq_items(n)[i]);
    case iter_set:
      return materialise(v->store, v->base,
                         table_keys(reinterpret_cast<const table_header*>(n))[i]);
    case iter_keys: return materialise(v->store, v->base, table_keys(dict_keys_of(it->owner))[i]);
    case iter_values: return materialise(v->store, v->base, dict_values(dict_of(it->owner))[i]);
    default: {
      ref k(materialise(v->store, v->base, table_keys(dict_keys_of(it->owner))[i]));
      if (!k.get()) return nullptr;
      ref val(materialise(v->store, v->base, dict_values(dict_of(it->owner))[i]));
      if (!val.get()) return nullptr;
      return PyTuple_Pack(2, k.get(), val.get());
    }
  }
}

PyObject* iter_length_hint(PyObject* self, PyObject*) {
  auto* it = reinterpret_cast<iter_object*>(self);
  return PyLong_FromUnsignedLong(it->count - it->next);
}

PyMethodDef iter_methods[] = {{"__length_hint__", iter_length_hint, METH_NOARGS, nullptr},
                              {nullptr, nullptr, 0, nullptr}};

PyType_Slot iter_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(iter_dealloc)},
                            {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
                            {Py_tp_iternext, reinterpret_cast<void*>(iter_next)},
                            {Py_tp_methods, iter_methods},
                            {0, nullptr}};
PyType_Spec iter_spec = {"permafrost._core.iterator", sizeof(iter_object), 0, made_here_only,
                         iter_slots};

PyObject* dict_iter(PyObject* self) { return new_iter(self, iter_keys); }
PyObject* dict_iter_values(PyObject* self, PyObject*) { return new_iter(self, iter_values); }
PyObject* dict_iter_items(PyObject* self, PyObject*) { return new_iter(self, iter_items); }

PyObject* view_thaw(PyObject* self, PyObject*) {
  auto* v = reinterpret_cast<view_object*>(self);
  return thaw_word(v->base, v->off);
}

// (image path, offset, image id): what pickling needs to name this view (None, offset, None for a
// view of an arena).
PyObject* view_ref(PyObject* self, PyObject*) {
  auto* v = reinterpret_cast<view_object*>(self);
  return Py_BuildValue("(OKO)", v->store->path, static_cast<unsigned long long>(v->off),
                       v->store->image_id);
}

PyObject* readonly_error(PyObject* self) {
  PyErr_Format(PyExc_TypeError, "'%.100s' is frozen: it cannot be modified",
               Py_TYPE(self)->tp_name);
  return nullptr;
}
int dict_ass_subscript(PyObject* self, PyObject*, PyObject*) {
  readonly_error(self);
  return -1;
}

#define VIEW_COMMON_METHODS                                                                   \
  {"thaw", view_thaw, METH_NOARGS,                                                            \
   "thaw() -> an ordinary (mutable) deep copy: dict, list, set, frozenset, tuple, scalars."}, \
  {                                                                                           \
    "_ref", view_ref, METH_NOARGS, "(image path, offset, image id) or None's: for pickling."  \
  }

PyMethodDef dict_methods[] = {
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(dict_get)), METH_FASTCALL,
     "get(key, default=None)"},
    {"_iter_values", dict_iter_values, METH_NOARGS, nullptr},
    {"_iter_items", dict_iter_items, METH_NOARGS, nullptr},
    VIEW_COMMON_METHODS,
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot dict_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(view_dealloc)},
                            {Py_mp_length, reinterpret_cast<void*>(dict_len)},
                            {Py_mp_subscript, reinterpret_cast<void*>(dict_subscript)},
                            {Py_mp_ass_subscript, reinterpret_cast<void*>(dict_ass_subscript)},
                            {Py_sq_contains, reinterpret_cast<void*>(dict_contains)},
                            {Py_tp_iter, reinterpret_cast<void*>(dict_iter)},
                            {Py_tp_methods, dict_methods},
                            {Py_tp_doc, const_cast<char*>("A read-only view of a frozen dict.")},
                            {0, nullptr}};
PyType_Spec dict_spec = {"permafrost.FrozenDict", sizeof(view_object), 0, made_here_only,
                         dict_slots};

// =============================================================================================
// FrozenList
// =============================================================================================

// Lists and sets keep their length in the node header's count.
Py_ssize_t node_len(PyObject* self) { return view_node(self)->count; }

PyObject* list_item(PyObject* self, Py_ssize_t i) {
  const node_header* n = view_node(self);
  if (i < 0 || i >= static_cast<Py_ssize_t>(n->count)) {
    PyErr_SetString(PyExc_IndexError, "FrozenList index out of range");
    return nullptr;
  }
  auto* v = reinterpret_cast<view_object*>(self);
  return materialise(v->store, v->base, seq_items(n)[i]);
}

PyObject* list_subscript(PyObject* self, PyObject* key) {
  const node_header* n = view_node(self);
  if (PyIndex_Check(key)) {
    Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    if (i < 0) i += n->count;
    return list_item(self, i);
  }
  if (PySlice_Check(key)) {
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) return nullptr;
    const Py_ssize_t len = PySlice_AdjustIndices(n->count, &start, &stop, step);
    PyObject* out = PyList_New(len);
    if (!out) return nullptr;
    auto* v = reinterpret_cast<view_object*>(self);
    for (Py_ssize_t k = 0, i = start; k < len; ++k, i += step) {
      PyObject* item = materialise(v->store, v->base, seq_items(n)[i]);
      if (!item) {
        Py_DECREF(out);
        return nullptr;
      }
      PyList_SET_ITEM(out, k, item);
    }
    return out;
  }
  PyErr_Format(PyExc_TypeError, "FrozenList indices must be integers or slices, not %.200s",
               Py_TYPE(key)->tp_name);
  return nullptr;
}

PyObject* list_iter(PyObject* self) { return new_iter(self, iter_list); }

PyMethodDef list_methods[] = {VIEW_COMMON_METHODS, {nullptr, nullptr, 0, nullptr}};

PyType_Slot list_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(view_dealloc)},
                            {Py_sq_length, reinterpret_cast<void*>(node_len)},
                            {Py_sq_item, reinterpret_cast<void*>(list_item)},
                            {Py_mp_length, reinterpret_cast<void*>(node_len)},
                            {Py_mp_subscript, reinterpret_cast<void*>(list_subscript)},
                            {Py_mp_ass_subscript, reinterpret_cast<void*>(dict_ass_subscript)},
                            {Py_tp_iter, reinterpret_cast<void*>(list_iter)},
                            {Py_tp_methods, list_methods},
                            {Py_tp_doc, const_cast<char*>("A read-only view of a frozen list.")},
                            {0, nullptr}};
PyType_Spec list_spec = {"permafrost.FrozenList", sizeof(view_object), 0, made_here_only,
                         list_slots};

// =============================================================================================
// FrozenSet
// =============================================================================================

int set_contains(PyObject* self, PyObject* key) {
  auto* v = reinterpret_cast<view_object*>(self);
  const std::int64_t i =
      table_find(v->store, v->base, reinterpret_cast<const table_header*>(view_node(self)), key);
  if (i == -2 && PyErr_ExceptionMatches(PyExc_TypeError)) {  // `[] in s` is False, as for frozenset
    PyErr_Clear();
    return 0;
  }
  return i >= 0 ? 1 : (i == -1 ? 0 : -1);
}

PyObject* set_iter(PyObject* self) { return new_iter(self, iter_set); }

PyObject* set_is_frozenset(PyObject* self, PyObject*) {
  return PyBool_FromLong(view_node(self)->kind == kind_frozenset);
}

PyMethodDef set_methods[] = {{"_is_frozenset", set_is_frozenset, METH_NOARGS, nullptr},
                             VIEW_COMMON_METHODS,
                             {nullptr, nullptr, 0, nullptr}};

PyType_Slot set_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(view_dealloc)},
                           {Py_sq_length, reinterpret_cast<void*>(node_len)},
                           {Py_sq_contains, reinterpret_cast<void*>(set_contains)},
                           {Py_tp_iter, reinterpret_cast<void*>(set_iter)},
                           {Py_tp_methods, set_methods},
                           {Py_tp_doc, const_cast<char*>("A read-only view of a frozen set.")},
                           {0, nullptr}};
PyType_Spec set_spec = {"permafrost.FrozenSet", sizeof(view_object), 0, made_here_only, set_slots};

// =============================================================================================
// freeze(): Python objects -> the frozen format, in a process-local buffer
// =============================================================================================

constexpr std::size_t max_depth = 5000;

class freezer {
 public:
  freezer() { buf_.reserve(1 << 16); }

  word value(PyObject* o) {
    if (o == Py_None) return const_none;
    if (o == Py_True) return const_true;
    if (o == Py_False) return const_false;
    if (PyLong_Check(o)) return integer(o);
    if (PyFloat_Check(o)) {
      const double d = PyFloat_AS_DOUBLE(o);
      word bits;
      std::memcpy(&bits, &d, sizeof bits);
      if ((bits & tag_mask) == 0) return bits | tag_inline_float;
      const std::uint64_t off = alloc(8);
      std::memcpy(at(off), &d, 8);
      return off | tag_float;
    }
    if (PyUnicode_Check(o)) return str(o);
    if (PyBytes_Check(o)) {
      return blob(kind_bytes, 0, PyBytes_AS_STRING(o),
                  static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
    }
    if (PyDict_Check(o)) return container(o, &freezer::dict);
    if (PyList_Check(o) || PyTuple_Check(o)) return container(o, &freezer::sequence);
    if (PyAnySet_Check(o)) return container(o, &freezer::set);
    if (is_view(o)) {  // freezing a view copies it
      auto* v = reinterpret_cast<view_object*>(o);
      PyObject* thawed = check(thaw_word(v->base, v->off));
      keep_.emplace_back(thawed);
      return value(thawed);
    }
    fail(PyExc_TypeError, short_type_name(o) + " is not supported");
  }

  std::vector<char>& bytes() { return buf_; }

 private:
  enum step_kind { value_of, at_index, key_of, element };
  struct step {
    step_kind kind;
    PyObject* key;  // value_of: the dict key
    Py_ssize_t index;
  };

  [[noreturn]] void fail(PyObject* type, const std::string& what) {
    std::string msg = path() + ": " + what;
    PyErr_SetString(type, msg.c_str());
    throw py_error{};
  }

  std::string path() {
    std::string p = "obj";
    for (const step& s : path_) {
      switch (s.kind) {
        case value_of: p += "[" + key_text(s.key) + "]"; break;
        case at_index: p += "[" + std::to_string(s.index) + "]"; break;
        case key_of: p += ".keys()[" + std::to_string(s.index) + "]"; break;
        case element: p += "{element " + std::to_string(s.index) + "}"; break;
      }
    }
    return p;
  }

  static std::string key_text(PyObject* k) {
    if (PyUnicode_Check(k)) {
      std::string_view s;
      ref holder;
      if (utf8_of(k, s, holder)) {
        std::string out = "\"";
        for (char c : s) {
          if (c == '"' || c == '\\') out += '\\';
          out += c;
        }
        return out + "\"";
      }
      PyErr_Clear();
    }
    ref r(PyObject_Repr(k));
    const char* text = r.get() ? PyUnicode_AsUTF8(r.get()) : nullptr;
    if (!text) {
      PyErr_Clear();
      return "?";
    }
    return text;
  }

  std::uint64_t alloc(std::size_t bytes) {
    const std::size_t off = buf_.size();
    const std::size_t rounded = (bytes + 7) & ~std::size_t{7};
    if (buf_.capacity() < off + rounded) buf_.reserve(std::max(buf_.capacity() * 2, off + rounded));
    buf_.resize(off + rounded);
    return off;
  }
  char* at(std::uint64_t off) { return buf_.data() + off; }
  void put_word(std::uint64_t off, word w) { std::memcpy(at(off), &w, sizeof w); }
  void put_header(std::uint64_t off, kind k, std::uint8_t flags, std::size_t count) {
    if (count > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const node_header h{k, flags, 0, static_cast<std::uint32_t>(count)};
    std::memcpy(at(off), &h, sizeof h);
  }

  word blob(kind k, std::uint8_t flags, const char* data, std::size_t n) {
    if (n > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const std::uint64_t off = alloc(sizeof(node_header) + n);
    put_header(off, k, flags, n);
    if (n) std::memcpy(at(off) + sizeof(node_header), data, n);
    return dedupe(off);
  }

  // Small immutable nodes (strs, bytes, lists, tuples of at most 64 bytes) with equal bytes are
  // stored once: frozen data is never written, so sharing them is invisible to readers, and
  // records repeat small values (tags, enums, short lists) a lot. `off` must be the last node
  // in the buffer; it is dropped when an equal node exists.
  std::uint64_t dedupe(std::uint64_t off) {
    const std::size_t size = buf_.size() - off;
    if (size > 64) return off;
    if (dedupe_used_ * 2 >= dedupe_.size()) grow_dedupe();
    const std::uint64_t h = pf::detail::hash_bytes(at(off), size) | 1;  // 0 marks an empty slot
    const std::size_t mask = dedupe_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      dedupe_entry& e = dedupe_[i];
      if (e.hash == 0) {
        e = {h, off, size};
        ++dedupe_used_;
        return off;
      }
      if (e.hash == h && e.size == size && std::memcmp(at(e.off), at(off), size) == 0) {
        buf_.resize(off);
        return e.off;
      }
    }
  }

  void grow_dedupe() {
    std::vector<dedupe_entry> old(std::max<std::size_t>(1024, dedupe_.size() * 2));
    old.swap(dedupe_);
    const std::size_t mask = dedupe_.size() - 1;
    for (const dedupe_entry& e : old) {
      if (e.hash == 0) continue;
      std::size_t i = e.hash & mask;
      while (dedupe_[i].hash != 0) i = (i + 1) & mask;
      dedupe_[i] = e;
    }
  }

  word str(PyObject* o) {
    std::string_view s;
    ref holder;
    if (!utf8_of(o, s, holder)) throw py_error{};
    if (s.size() <= max_short_str && !holder.get()) return short_str_word(s.data(), s.size());
    std::uint8_t flags = PyUnicode_IS_ASCII(o) ? flag_ascii : 0;
    if (holder.get()) flags |= flag_surrogates;
    if (s.size() < 65536) {  // a 4-byte header
      const std::uint64_t off = alloc(4 + s.size());
      const node_header h{kind_str16, flags, static_cast<std::uint16_t>(s.size()), 0};
      std::memcpy(at(off), &h, 4);
      std::memcpy(at(off) + 4, s.data(), s.size());
      return dedupe(off);
    }
    return blob(kind_str, flags, s.data(), s.size());
  }

  word integer(PyObject* o) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) throw py_error{};
    if (!overflow && v >= inline_int_min && v <= inline_int_max)
      return (static_cast<word>(v) << 3) | tag_int;
    // Big: int.to_bytes(bit_length // 8 + 1, "little", signed=True).
    // int's own methods, called unbound: an int subclass's overrides (user code) do not run.
    auto* int_type = reinterpret_cast<PyObject*>(&PyLong_Type);
    ref bits(check(PyObject_CallMethod(int_type, "bit_length", "O", o)));
    const Py_ssize_t nbits = PyLong_AsSsize_t(bits.get());
    if (nbits < 0) throw py_error{};
    ref to_bytes(check(PyObject_GetAttrString(int_type, "to_bytes")));
    ref args(check(Py_BuildValue("(OnO)", o, nbits / 8 + 1, g_str_little)));
    ref b(check(PyObject_Call(to_bytes.get(), args.get(), g_kw_signed)));
    return blob(kind_bigint, 0, PyBytes_AS_STRING(b.get()),
                static_cast<std::size_t>(PyBytes_GET_SIZE(b.get())));
  }

  // Cycle and depth checks around one container.
  word container(PyObject* o, word (freezer::*build)(PyObject*)) {
    const bool seen = open_.size() <= 64 ? std::find(open_.begin(), open_.end(), o) != open_.end()
                                         : open_set_.count(o) != 0;
    if (seen) fail(PyExc_TypeError, "cycle: this " + short_type_name(o) + " contains itself");
    if (open_.size() >= max_depth) fail(PyExc_TypeError, "nested deeper than 5000 containers");
    if (open_.size() == 64) open_set_.insert(open_.begin(), open_.end());
    open_.push_back(o);
    if (open_.size() > 64) open_set_.insert(o);
    const word w = (this->*build)(o);
    if (open_.size() > 64) open_set_.erase(o);
    open_.pop_back();
    if (open_.size() == 64) open_set_.clear();
    return w;
  }

  word sequence(PyObject* o) {
    const bool tuple = PyTuple_Check(o);
    const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
    // The items first (on a shared stack), then the node, so the node is last and can be deduped.
    const std::size_t mark = scratch_.size();
    path_.push_back({at_index, nullptr, 0});
    for (Py_ssize_t i = 0; i < n; ++i) {
      path_.back().index = i;
      // Freezing runs no Python code, so the list cannot change under us.
      PyObject* item = tuple ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i);
      const word w = value(item);
      scratch_.push_back(w);
    }
    path_.pop_back();
    const std::size_t bytes = 8 * static_cast<std::size_t>(n);
    const std::uint64_t off = alloc(sizeof(node_header) + bytes);
    put_header(off, tuple ? kind_tuple : kind_list, 0, static_cast<std::size_t>(n));
    if (bytes) std::memcpy(at(off) + sizeof(node_header), scratch_.data() + mark, bytes);
    scratch_.resize(mark);
    return dedupe(off);
  }

  // A keys/set table over `keys` (borrowed), whose hashes are given.
  std::uint64_t table(kind k, const std::vector<PyObject*>& keys,
                      const std::vector<std::uint64_t>& hashes, step_kind how) {
    const std::size_t n = keys.size();
    if (n > max_table_keys) fail(PyExc_ValueError, "too large (at most 2**31 - 1 keys)");
    const auto count = static_cast<std::uint32_t>(n);
    const std::size_t bytes = table_bytes(n, table_capacity(count));
    const std::uint64_t off = alloc(bytes);
    write_table_header(at(off), k, count);
    const std::uint64_t keys_off = off + bytes - 8 * n;  // the key words end the table
    path_.push_back({how, nullptr, 0});
    for (std::size_t i = 0; i < n; ++i) {
      path_.back().index = static_cast<Py_ssize_t>(i);
      put_word(keys_off + 8 * i, value(keys[i]));
    }
    path_.pop_back();
    build_table_index(reinterpret_cast<table_header*>(at(off)), hashes.data());
    return off;
  }

  std::uint64_t hash_of(PyObject* key, Py_ssize_t i, step_kind how) {
    std::uint64_t h;
    if (key_hash(key, h)) return h;
    PyErr_Clear();
    path_.push_back({how, nullptr, i});
    if (!PyUnicode_Check(key) && !PyLong_Check(key) && !PyFloat_Check(key) && !PyBytes_Check(key) &&
        !PyTuple_Check(key) && !PyFrozenSet_Check(key) && key != Py_None)
      fail(PyExc_TypeError, short_type_name(key) + " is not supported");
    fail(PyExc_TypeError,
         "unhashable (or nested deeper than 5000) key of type " + short_type_name(key));
  }

  word dict(PyObject* o) {
    std::vector<PyObject*> keys, values;
    std::vector<std::uint64_t> hashes;
    const Py_ssize_t n = PyDict_Size(o);
    keys.reserve(static_cast<std::size_t>(n));
    values.reserve(static_cast<std::size_t>(n));
    hashes.reserve(static_cast<std::size_t>(n));
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    bool all_str = true;
    std::uint64_t sig = static_cast<std::uint64_t>(n);
    while (PyDict_Next(o, &pos, &k, &v)) {
      const std::uint64_t h = hash_of(k, static_cast<Py_ssize_t>(keys.size()), key_of);
      keys.push_back(k);
      values.push_back(v);
      hashes.push_back(h);
      all_str = all_str && PyUnicode_CheckExact(k);
      sig = pf::detail::hash_word(sig + h);
    }
    // Dicts with the same str keys in the same order (records) share one keys table.
    std::uint64_t keys_off = 0;
    const bool shareable = all_str && n <= 64;
    if (shareable) {
      auto it = shared_keys_.find(sig);
      if (it != shared_keys_.end() && same_keys(it->second, keys)) keys_off = it->second;
    }
    if (keys_off == 0) {
      keys_off = table(kind_keys, keys, hashes, key_of);
      if (shareable) shared_keys_.emplace(sig, keys_off);
    }
    // Records are small: a 8-byte header when the count and the keys' offset fit.
    const bool small = values.size() < 65536 && keys_off / 8 <= UINT32_MAX;
    const std::size_t header = small ? 8 : sizeof(dict_header);
    const std::uint64_t off = alloc(header + 8 * values.size());
    if (small) {
      const node_header h{kind_dict16, 0, static_cast<std::uint16_t>(values.size()),
                          static_cast<std::uint32_t>(keys_off / 8)};
      std::memcpy(at(off), &h, sizeof h);
    } else {
      put_header(off, kind_dict, 0, values.size());
      std::memcpy(at(off) + 8, &keys_off, 8);
    }
    path_.push_back({value_of, nullptr, 0});
    for (std::size_t i = 0; i < values.size(); ++i) {
      path_.back().key = keys[i];
      put_word(off + header + 8 * i, value(values[i]));
    }
    path_.pop_back();
    return off;
  }

  bool same_keys(std::uint64_t table_off, const std::vector<PyObject*>& keys) {
    const auto* t = reinterpret_cast<const table_header*>(at(table_off));
    if (t->h.count != keys.size()) return false;
    const word* kw = table_keys(t);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::string_view s;
      ref holder;
      if (!utf8_of(keys[i], s, holder)) throw py_error{};
      if ((kw[i] & tag_mask) == tag_short_str) {
        if (holder.get() || s.size() > max_short_str || kw[i] != short_str_word(s.data(), s.size()))
          return false;
        continue;
      }
      if ((kw[i] & tag_mask) != tag_node) return false;
      const auto* n = reinterpret_cast<const node_header*>(at(kw[i]));
      if (!is_str(n->kind) || str_size(n) != s.size() ||
          std::memcmp(str_bytes(n), s.data(), s.size()))
        return false;
    }
    return true;
  }

  word set(PyObject* o) {
    std::vector<ref> held;
    std::vector<PyObject*> keys;
    std::vector<std::uint64_t> hashes;
    // The base type's iterator: a subclass's __iter__ (user code) does not run.
    ref it(check(PyFrozenSet_Check(o) ? PyFrozenSet_Type.tp_iter(o) : PySet_Type.tp_iter(o)));
    while (PyObject* e = PyIter_Next(it.get())) {
      held.emplace_back(e);
      hashes.push_back(hash_of(e, static_cast<Py_ssize_t>(keys.size()), element));
      keys.push_back(e);
    }
    if (PyErr_Occurred()) throw py_error{};
    return table(PyFrozenSet_Check(o) ? kind_frozenset : kind_set, keys, hashes, element);
  }

  struct dedupe_entry {
    std::uint64_t hash = 0;
    std::uint64_t off = 0;
    std::size_t size = 0;
  };

  std::vector<char> buf_;
  std::vector<word> scratch_;
  std::vector<dedupe_entry> dedupe_;
  std::size_t dedupe_used_ = 0;
  std::vector<step> path_;
  std::vector<PyObject*> open_;
  std::unordered_set<PyObject*> open_set_;
  std::unordered_map<std::uint64_t, std::uint64_t> shared_keys_;
  std::vector<ref> keep_;
};

// The view (or plain object, for a scalar root) of the root of a store.
PyObject* root_of(store_object* store) {
  const auto* root = reinterpret_cast<const root_header*>(store->base);
  if (store->size < sizeof(root_header) ||
      std::memcmp(root->magic, root_magic, sizeof root_magic)) {
    PyErr_SetString(PyExc_ValueError, "not a permafrost Python image (bad magic)");
    return nullptr;
  }
  return materialise(store, store->base, root->root);
}

// freeze(obj, name)
PyObject* py_freeze(PyObject*, PyObject* args) {
  PyObject* obj;
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "O|z", &obj, &name)) return nullptr;
  PF_ENTRY_BEGIN
  freezer f;
  std::vector<char>& buf = f.bytes();
  buf.resize(sizeof(root_header));
  const word root = f.value(obj);
  root_header rh{};
  std::memcpy(rh.magic, root_magic, sizeof root_magic);
  rh.root = root;
  std::memcpy(buf.data(), &rh, sizeof rh);
  const std::uint8_t root_kind =
      (root & tag_mask) == tag_node ? node_at<node_header>(buf.data(), root)->kind : 0;
  if (root_kind != kind_list && root_kind != kind_tuple && !is_dict(root_kind) &&
      root_kind != kind_set && root_kind != kind_frozenset) {
    // A scalar root: an ordinary (immutable) object says it all; no arena needed.
    return thaw_word(buf.data(), root);
  }
  // Copy the graph into an arena of exactly its size: huge pages only when it fills them.
  pf::arena_options opt;
  opt.name = name ? name : "permafrost-python";
  opt.capacity = std::max<std::size_t>(buf.size(), 4096);
  opt.huge_pages = opt.huge_pages && buf.size() >= (std::size_t{8} << 20);
  auto a = std::make_unique<pf::arena>(opt);
  void* p = a->allocate(buf.size(), 16);
  if (a->used_bytes().data() != static_cast<const std::byte*>(p)) {
    PyErr_SetString(PyExc_SystemError,
                    "permafrost: the arena's first allocation is not at its start");
    return nullptr;
  }
  std::memcpy(p, buf.data(), buf.size());
  a->freeze();
  ref store(reinterpret_cast<PyObject*>(new_store()));
  auto* s = reinterpret_cast<store_object*>(store.get());
  s->base = static_cast<const char*>(p);
  s->size = buf.size();
  s->arena = a.release();
  return root_of(s);
  PF_ENTRY_END
}

store_object* store_of(PyObject* o) {
  if (!is_view(o)) {
    PyErr_Format(PyExc_TypeError, "expected a FrozenDict, FrozenList or FrozenSet, not %.200s",
                 Py_TYPE(o)->tp_name);
    throw py_error{};
  }
  return reinterpret_cast<view_object*>(o)->store;
}

// _range(view) -> (address, size) of the frozen bytes the view lives in.
PyObject* py_range(PyObject*, PyObject* o) {
  PF_ENTRY_BEGIN
  store_object* s = store_of(o);
  return Py_BuildValue("(Kn)",
                       static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(s->base)),
                       static_cast<Py_ssize_t>(s->size));
  PF_ENTRY_END
}

// A pid argument as pid_t: 0 (this process) up to INT_MAX; anything else names no process (a
// plain cast would wrap 2**32 to 0, this process). Returns false with ProcessLookupError set.
bool to_pid(long v, pid_t* out) {
  if (v < 0 || v > INT_MAX) {
    PyErr_Format(PyExc_ProcessLookupError, "no process %ld", v);
    return false;
  }
  *out = static_cast<pid_t>(v);
  return true;
}

// _memory(pid) -> (rss, pss, uss, shared) in bytes.
PyObject* py_memory(PyObject*, PyObject* args) {
  long pid = 0;
  pid_t p = 0;
  if (!PyArg_ParseTuple(args, "|l", &pid) || !to_pid(pid, &p)) return nullptr;
  PF_ENTRY_BEGIN
  try {
    const pf::memory_usage m = pf::process_memory(p);
    return Py_BuildValue(
        "(KKKK)", static_cast<unsigned long long>(m.rss), static_cast<unsigned long long>(m.pss),
        static_cast<unsigned long long>(m.uss), static_cast<unsigned long long>(m.shared()));
  } catch (const pf::proc_error& e) {
    PyErr_SetString(PyExc_ProcessLookupError, e.what());
    return nullptr;
  }
  PF_ENTRY_END
}

// _sharing_audit(view, child, parent) -> (pages, parent_present, child_present, shared, copied)
PyObject* py_sharing_audit(PyObject*, PyObject* args) {
  PyObject* o;
  long child = 0, parent = 0;
  pid_t c = 0, p = 0;
  if (!PyArg_ParseTuple(args, "Oll", &o, &child, &parent) || !to_pid(child, &c) ||
      !to_pid(parent, &p))
    return nullptr;
  PF_ENTRY_BEGIN
  store_object* s = store_of(o);
  try {
    const auto* b = reinterpret_cast<const std::byte*>(s->base);
    const pf::sharing_report r = pf::sharing_audit(c, p, {b, s->size});
    return Py_BuildValue("(nnnnn)", static_cast<Py_ssize_t>(r.pages),
                         static_cast<Py_ssize_t>(r.parent_present),
                         static_cast<Py_ssize_t>(r.child_present),
                         static_cast<Py_ssize_t>(r.shared), static_cast<Py_ssize_t>(r.copied));
  } catch (const pf::proc_error& e) {
    PyErr_SetString(PyExc_ProcessLookupError, e.what());
    return nullptr;
  }
  PF_ENTRY_END
}

// _private_pages(view, pid=0) -> pages of the view's frozen bytes that only `pid` maps and has
// modified (Private_Dirty): copy-on-write copies. 0 in a forked worker that only read.
PyObject* py_private_pages(PyObject*, PyObject* args) {
  PyObject* o;
  long pid = 0;
  pid_t p = 0;
  if (!PyArg_ParseTuple(args, "O|l", &o, &pid) || !to_pid(pid, &p)) return nullptr;
  PF_ENTRY_BEGIN
  store_object* s = store_of(o);
  const pf::memory_usage m = pf::range_memory(p, s->base, s->base + s->size);
  return PyLong_FromUnsignedLongLong(m.private_dirty / 4096);
  PF_ENTRY_END
}

// trim(): glibc's malloc_trim(0). Returns True when memory went back to the kernel.
PyObject* py_trim(PyObject*, PyObject*) { return PyBool_FromLong(::malloc_trim(0)); }

PyObject* py_install_write_trap(PyObject*, PyObject*) {
  PF_ENTRY_BEGIN
  pf::install_write_trap();
  Py_RETURN_NONE;
  PF_ENTRY_END
}

PyObject* py_write_trap_installed(PyObject*, PyObject*) {
  return PyBool_FromLong(pf::write_trap_installed());
}

// _save(view, path, image_id): writes the view's whole frozen graph to an image file, with
// image_id (a fresh random id from the caller) in its header; the view must be the root or inside
// it (its offset is what pickles).
PyObject* py_save(PyObject*, PyObject* args) {
  PyObject* o;
  PyObject* path_obj;
  const char* image_id = nullptr;
  Py_ssize_t id_size = 0;
  if (!PyArg_ParseTuple(args, "OO&s#", &o, PyUnicode_FSConverter, &path_obj, &image_id, &id_size))
    return nullptr;
  ref path(path_obj);
  PF_ENTRY_BEGIN
  store_object* s = store_of(o);
  if (!s->arena) {
    PyErr_SetString(PyExc_ValueError, "this object already lives in an image; copy the image file");
    return nullptr;
  }
  pf::python::save_image(*s->arena, s->base, PyBytes_AS_STRING(path.get()),
                         {image_id, static_cast<std::size_t>(id_size)});
  Py_RETURN_NONE;
  PF_ENTRY_END
}

// _save_bytes(data, path): writes `data` as the frozen graph of a Python image, with correct
// checksums, whatever it holds. For tests that hand crafted graphs to permafrost.open().
PyObject* py_save_bytes(PyObject*, PyObject* args) {
  Py_buffer data;
  PyObject* path_obj;
  if (!PyArg_ParseTuple(args, "y*O&", &data, PyUnicode_FSConverter, &path_obj)) return nullptr;
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
  pf::arena_options opt;
  opt.name = "permafrost-python-bytes";
  opt.capacity = std::max<std::size_t>(n, 4096);
  pf::arena a(opt);
  void* p = a.allocate(n, 16);
  std::memcpy(p, data.buf, n);
  a.freeze();
  pf::python::save_image(a, static_cast<const char*>(p), PyBytes_AS_STRING(path.get()), "");
  Py_RETURN_NONE;
  PF_ENTRY_END
}

// _open(path) -> the store's root view.
PyObject* py_open_store(PyObject*, PyObject* args) {
  PyObject* path_obj;
  if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &path_obj)) return nullptr;
  ref path(path_obj);
  PF_ENTRY_BEGIN
  const char* p = PyBytes_AS_STRING(path.get());
  ref store(reinterpret_cast<PyObject*>(new_store()));
  auto* s = reinterpret_cast<store_object*>(store.get());
  std::string image_id;
  s->image = pf::python::open_image(p, s->base, s->size, image_id);
  Py_DECREF(s->path);
  s->path = PyUnicode_DecodeFSDefault(p);
  if (!s->path) return nullptr;
  Py_DECREF(s->image_id);
  s->image_id =
      PyUnicode_DecodeUTF8(image_id.data(), static_cast<Py_ssize_t>(image_id.size()), "replace");
  if (!s->image_id) return nullptr;
  // The checksum tells damage, not a crafted file: the readers trust every offset, so the whole
  // graph is checked once here (graph_check.hpp) before any view of it exists.
  s->check = new pf::python::graph_check(s->base, s->size);
  if (const std::string err = s->check->run(); !err.empty()) {
    PyErr_Format(PyExc_OSError, "%s: not a valid permafrost Python image: %s", p, err.c_str());
    return nullptr;
  }
  return store.release();
  PF_ENTRY_END
}

// _store_view(store, offset) -> the value at `offset` of an opened store (offset 0: the root).
PyObject* py_store_view(PyObject*, PyObject* args) {
  PyObject* st;
  unsigned long long off;
  if (!PyArg_ParseTuple(args, "O!K", g_store_type, &st, &off)) return nullptr;
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
PyObject* py_store_id(PyObject*, PyObject* st) {
  if (!PyObject_TypeCheck(st, g_store_type)) {
    PyErr_SetString(PyExc_TypeError, "expected a permafrost._core.Store");
    return nullptr;
  }
  PyObject* id = reinterpret_cast<store_object*>(st)->image_id;
  Py_INCREF(id);
  return id;
}

PyMethodDef module_methods[] = {
    {"_freeze", py_freeze, METH_VARARGS, "_freeze(obj, name=None)"},
    {"_range", py_range, METH_O, "_range(view) -> (address, size) of its frozen bytes"},
    {"_memory", py_memory, METH_VARARGS, "_memory(pid=0) -> (rss, pss, uss, shared)"},
    {"_sharing_audit", py_sharing_audit, METH_VARARGS,
     "_sharing_audit(view, child_pid, parent_pid) -> (pages, parent_present, child_present, "
     "shared, copied)"},
    {"_private_pages", py_private_pages, METH_VARARGS,
     "_private_pages(view, pid=0) -> copied (Private_Dirty) pages of its frozen bytes"},
    {"install_write_trap", py_install_write_trap, METH_NOARGS,
     "install_write_trap(): a write into frozen memory prints one line naming the arena and "
     "offset, "
     "then the process dies of SIGSEGV."},
    {"write_trap_installed", py_write_trap_installed, METH_NOARGS, nullptr},
    {"trim", py_trim, METH_NOARGS,
     "trim() -> bool: give the free memory of this process's malloc back to the kernel "
     "(glibc malloc_trim). Call it after dropping what you froze, before forking."},
    {"_save", py_save, METH_VARARGS, "_save(view, path, image_id)"},
    {"_save_bytes", py_save_bytes, METH_VARARGS, "_save_bytes(data, path): tests only"},
    {"_open_store", py_open_store, METH_VARARGS, "_open_store(path) -> store"},
    {"_store_view", py_store_view, METH_VARARGS, "_store_view(store, offset) -> value"},
    {"_store_id", py_store_id, METH_O, "_store_id(store) -> the image id saved with it"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "permafrost._core",
                          "permafrost's CPython extension: frozen value graphs.",
                          -1,
                          module_methods,
                          nullptr,
                          nullptr,
                          nullptr,
                          nullptr};

PyTypeObject* make_type(PyObject* m, PyType_Spec* spec, const char* attr) {
  auto* t = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(spec));
  if (!t) return nullptr;
  Py_INCREF(t);
  if (PyModule_AddObject(m, attr, reinterpret_cast<PyObject*>(t)) < 0) {
    Py_DECREF(t);
    return nullptr;
  }
  return t;
}

}  // namespace

PyMODINIT_FUNC PyInit__core() {
  PyObject* m = PyModule_Create(&module_def);
  if (!m) return nullptr;
  if (!(g_store_type = make_type(m, &store_spec, "Store")) ||
      !(g_dict_type = make_type(m, &dict_spec, "FrozenDict")) ||
      !(g_list_type = make_type(m, &list_spec, "FrozenList")) ||
      !(g_set_type = make_type(m, &set_spec, "FrozenSet")) ||
      !(g_iter_type = make_type(m, &iter_spec, "_iterator")))
    return nullptr;
  g_int_from_bytes =
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyLong_Type), "from_bytes");
  g_str_little = PyUnicode_InternFromString("little");
  g_kw_signed = Py_BuildValue("{s:O}", "signed", Py_True);
  if (!g_int_from_bytes || !g_str_little || !g_kw_signed) return nullptr;
  // PERMAFROST_TRAP=1 installs the write trap at import (as it does for the malloc library).
  pf::install_write_trap_from_env();
  return m;
}
