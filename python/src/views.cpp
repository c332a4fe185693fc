// permafrost for Python — FrozenDict, FrozenList, FrozenSet and their iterator (see views.hpp).
#include "views.hpp"

#include <structmember.h>

#include <cstddef>

#include "keys.hpp"
#include "reading.hpp"
#include "store.hpp"
#include "values.hpp"

namespace permafrost::python {
namespace {

view_object* as_view(PyObject* self) { return reinterpret_cast<view_object*>(self); }

// The value word w of the store being read, materialised.
PyObject* value_of(const reading& r, word w) { return materialise(r.store, r.base, w); }

void view_dealloc(PyObject* self) {
  Py_DECREF(as_view(self)->store);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);
}

PyObject* readonly_error(PyObject* self) {
  PyErr_Format(PyExc_TypeError, "'%.100s' is frozen: use .thaw() for a mutable copy",
               Py_TYPE(self)->tp_name);
  return nullptr;
}

int view_ass_subscript(PyObject* self, PyObject*, PyObject*) {
  readonly_error(self);
  return -1;
}

PyObject* view_thaw(PyObject* self, PyObject*) {
  const reading r(self);
  if (!r) return nullptr;
  return thaw_word(*r.store->state, r.base, r.off);
}

// (image path, offset, image id): what pickling needs to name this view (None, offset, None for a
// view of an arena).
// A closed view raises ValueError, as every other use does: pickling one must not name an image
// that close() let go (the receiver would map it again).
PyObject* view_ref(PyObject* self, PyObject*) {
  const reading r(self);
  if (!r) return nullptr;
  const view_object* v = as_view(self);
  return Py_BuildValue("(OKO)", v->store->path, static_cast<unsigned long long>(v->off),
                       v->store->image_id);
}

#define VIEW_COMMON_METHODS                                                                  \
  {"thaw", view_thaw, METH_NOARGS,                                                           \
   "thaw($self, /)\n--\n\n"                                                                  \
   "An ordinary (mutable) deep copy: dict, list, set, frozenset, tuple, scalars."},          \
  {                                                                                          \
    "_ref", view_ref, METH_NOARGS, "(image path, offset, image id) or None's: for pickling." \
  }

// =============================================================================================
// The iterator (keys, values or items of a dict; items of a list or set)
// =============================================================================================

enum iter_mode { iter_keys, iter_values, iter_items, iter_list, iter_set, iter_list_reversed };

struct iter_object {
  PyObject_HEAD PyObject* owner;  // the view, strong
  std::uint32_t next;
  std::uint32_t count;
  int mode;
};

// The dict being read (a view's word may be a node's or a table row's: format.hpp).
dict_reader dict_of(const reading& r) { return {r.base, r.off}; }

// The keys table of the dict being read.
const table_header* dict_keys_of(const reading& r) {
  return node_at<table_header>(r.base, dict_of(r).keys_offset());
}

PyObject* new_iter(PyObject* owner, int mode) {
  const reading r(owner);
  if (!r) return nullptr;
  PyTypeObject* type = live_type(r.store->state->iter_type);
  auto* it = type ? PyObject_New(iter_object, type) : nullptr;
  if (!it) return nullptr;
  Py_INCREF(owner);
  it->owner = owner;
  it->next = 0;
  it->count = mode == iter_list || mode == iter_set || mode == iter_list_reversed
                  ? r.node()->count
                  : dict_of(r).count();
  it->mode = mode;
  return reinterpret_cast<PyObject*>(it);
}

void iter_dealloc(PyObject* self) {
  Py_DECREF(reinterpret_cast<iter_object*>(self)->owner);
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_Free(self);
  Py_DECREF(tp);
}

// Item i of the iterator's view, made.
PyObject* iter_item(const iter_object* it, const reading& r, std::uint32_t i) {
  switch (it->mode) {
    case iter_list: return value_of(r, seq_items(r.node())[i]);
    case iter_list_reversed: return value_of(r, seq_items(r.node())[it->count - 1 - i]);
    case iter_set:
      return value_of(r, table_keys(reinterpret_cast<const table_header*>(r.node()))[i]);
    case iter_keys: return value_of(r, table_keys(dict_keys_of(r))[i]);
    case iter_values: return value_of(r, dict_of(r).value(i));
    default: {
      ref k(value_of(r, table_keys(dict_keys_of(r))[i]));
      if (!k.get()) return nullptr;
      ref val(value_of(r, dict_of(r).value(i)));
      if (!val.get()) return nullptr;
      return PyTuple_Pack(2, k.get(), val.get());
    }
  }
}

PyObject* iter_next(PyObject* self) {
  auto* it = reinterpret_cast<iter_object*>(self);
  if (it->next >= it->count) return nullptr;
  const reading r(it->owner);
  if (!r) return nullptr;
  return iter_item(it, r, it->next++);
}

PyObject* iter_length_hint(PyObject* self, PyObject*) {
  auto* it = reinterpret_cast<iter_object*>(self);
  return PyLong_FromUnsignedLong(it->count - it->next);
}

// As the built-ins' iterators pickle: a list's as (iter, (list,), position), restored by
// __setstate__; a dict's or set's, and a list's reversed, as an iterator over a list of the items
// still to come.
PyObject* iter_reduce(PyObject* self, PyObject*) {
  auto* it = reinterpret_cast<iter_object*>(self);
  ref builtins(PyImport_ImportModule("builtins"));
  if (!builtins.get()) return nullptr;
  ref iter(PyObject_GetAttrString(builtins.get(), "iter"));
  if (!iter.get()) return nullptr;
  ref owner(Py_NewRef(it->owner));  // the iterator may be freed while an item is made
  if (it->mode == iter_list) return Py_BuildValue("O(O)I", iter.get(), owner.get(), it->next);
  const reading r(owner.get());
  if (!r) return nullptr;
  ref rest(PyList_New(0));
  if (!rest.get()) return nullptr;
  for (std::uint32_t i = it->next; i < it->count; ++i) {
    ref item(iter_item(it, r, i));
    if (!item.get() || PyList_Append(rest.get(), item.get()) < 0) return nullptr;
  }
  return Py_BuildValue("O(O)", iter.get(), rest.get());
}

PyObject* iter_setstate(PyObject* self, PyObject* state) {
  auto* it = reinterpret_cast<iter_object*>(self);
  const Py_ssize_t at = PyLong_AsSsize_t(state);
  if (at == -1 && PyErr_Occurred()) return nullptr;
  const auto count = static_cast<Py_ssize_t>(it->count);
  if (it->mode == iter_list_reversed) {  // as reversed's: the index of the next item, -1 = none
    const Py_ssize_t index = at < -1 ? -1 : at >= count ? count - 1 : at;
    it->next = static_cast<std::uint32_t>(count - 1 - index);
  } else {  // as list_iterator's: the items taken so far
#if PY_VERSION_HEX >= 0x030D0000
    const Py_ssize_t before = count;  // 3.13 takes a negative position for an exhausted iterator
#else
    const Py_ssize_t before = 0;
#endif
    it->next = static_cast<std::uint32_t>(at < 0 ? before : at > count ? count : at);
  }
  Py_RETURN_NONE;
}

PyMethodDef iter_methods[] = {{"__length_hint__", iter_length_hint, METH_NOARGS, nullptr},
                              {"__reduce__", iter_reduce, METH_NOARGS, nullptr},
                              {"__setstate__", iter_setstate, METH_O, nullptr},
                              {nullptr, nullptr, 0, nullptr}};

PyType_Slot iter_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(iter_dealloc)},
                            {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
                            {Py_tp_iternext, reinterpret_cast<void*>(iter_next)},
                            {Py_tp_methods, iter_methods},
                            {0, nullptr}};

// =============================================================================================
// FrozenDict
// =============================================================================================

Py_ssize_t dict_len(PyObject* self) {
  const reading r(self);
  return r ? static_cast<Py_ssize_t>(dict_of(r).count()) : -1;
}

// The entry of `key` in the dict being read: an index, entry_absent or entry_failed (exception
// set).
std::int64_t dict_find(const reading& r, PyObject* key) {
  return table_find(r.store, r.base, dict_keys_of(r), key);
}

PyObject* dict_subscript(PyObject* self, PyObject* key) {
  const reading r(self);
  if (!r) return nullptr;
  const std::int64_t i = dict_find(r, key);
  if (i >= 0) return value_of(r, dict_of(r).value(static_cast<std::uint32_t>(i)));
  if (i == entry_absent) {
    ref args(PyTuple_Pack(1, key));
    if (args.get()) PyErr_SetObject(PyExc_KeyError, args.get());
  }
  return nullptr;
}

int dict_contains(PyObject* self, PyObject* key) {
  const reading r(self);
  if (!r) return -1;
  const std::int64_t i = dict_find(r, key);
  return i >= 0 ? 1 : (i == entry_absent ? 0 : -1);
}

PyObject* dict_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 1 || nargs > 2) {
    PyErr_SetString(PyExc_TypeError, "get expected 1 or 2 arguments");
    return nullptr;
  }
  const reading r(self);
  if (!r) return nullptr;
  const std::int64_t i = dict_find(r, args[0]);
  if (i >= 0) return value_of(r, dict_of(r).value(static_cast<std::uint32_t>(i)));
  if (i == entry_failed) return nullptr;
  PyObject* dflt = nargs == 2 ? args[1] : Py_None;
  Py_INCREF(dflt);
  return dflt;
}

PyObject* dict_iter(PyObject* self) { return new_iter(self, iter_keys); }
PyObject* dict_iter_values(PyObject* self, PyObject*) { return new_iter(self, iter_values); }
PyObject* dict_iter_items(PyObject* self, PyObject*) { return new_iter(self, iter_items); }

PyMethodDef dict_methods[] = {
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(dict_get)), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\n"
     "The value for key if key is in the mapping, else default."},
    {"_iter_values", dict_iter_values, METH_NOARGS, nullptr},
    {"_iter_items", dict_iter_items, METH_NOARGS, nullptr},
    VIEW_COMMON_METHODS,
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot dict_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(view_dealloc)},
                            {Py_mp_length, reinterpret_cast<void*>(dict_len)},
                            {Py_mp_subscript, reinterpret_cast<void*>(dict_subscript)},
                            {Py_mp_ass_subscript, reinterpret_cast<void*>(view_ass_subscript)},
                            {Py_sq_contains, reinterpret_cast<void*>(dict_contains)},
                            {Py_tp_iter, reinterpret_cast<void*>(dict_iter)},
                            {Py_tp_methods, dict_methods},
                            {Py_tp_doc, const_cast<char*>("A read-only view of a frozen dict.")},
                            {0, nullptr}};

// =============================================================================================
// FrozenList
// =============================================================================================

// Lists and sets keep their length in the node header's count.
Py_ssize_t node_len(PyObject* self) {
  const reading r(self);
  return r ? static_cast<Py_ssize_t>(r.node()->count) : -1;
}

// Item i (negative: from the end) of the list being read.
PyObject* list_at(const reading& r, Py_ssize_t i) {
  const node_header* n = r.node();
  if (i < 0) i += n->count;
  if (i < 0 || i >= static_cast<Py_ssize_t>(n->count)) {
    PyErr_SetString(PyExc_IndexError, "FrozenList index out of range");
    return nullptr;
  }
  return value_of(r, seq_items(n)[i]);
}

PyObject* list_item(PyObject* self, Py_ssize_t i) {
  const reading r(self);
  if (!r) return nullptr;
  if (i < 0) {  // sq_item gets indexes already made non-negative; a negative one is out of range
    PyErr_SetString(PyExc_IndexError, "FrozenList index out of range");
    return nullptr;
  }
  return list_at(r, i);
}

PyObject* list_subscript(PyObject* self, PyObject* key) {
  if (PyIndex_Check(key)) {
    const Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    const reading r(self);
    return r ? list_at(r, i) : nullptr;
  }
  if (PySlice_Check(key)) {
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) return nullptr;
    const reading r(self);
    if (!r) return nullptr;
    const node_header* n = r.node();
    const Py_ssize_t len = PySlice_AdjustIndices(n->count, &start, &stop, step);
    PyObject* out = PyList_New(len);
    if (!out) return nullptr;
    for (Py_ssize_t k = 0, i = start; k < len; ++k, i += step) {
      PyObject* item = value_of(r, seq_items(n)[i]);
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

// reversed(view): this iterator, which pickles (collections.abc's __reversed__ is a generator).
PyObject* list_reversed(PyObject* self, PyObject*) { return new_iter(self, iter_list_reversed); }

// view * n and n * view: a list, as list(view) * n. A sequence's repeat, not a number's multiply
// (as list has it): numpy's scalars repeat a sequence that has no nb_multiply, and broadcast one
// that has (np.int64(2) * view was [2, 4] for [1, 2]).
PyObject* list_repeat(PyObject* self, Py_ssize_t n) {
  ref items(PySequence_List(self));
  return items.get() ? PySequence_Repeat(items.get(), n) : nullptr;
}

PyMethodDef list_methods[] = {
    VIEW_COMMON_METHODS,
    {"__reversed__", list_reversed, METH_NOARGS, "An iterator over the items, last first."},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot list_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(view_dealloc)},
                            {Py_sq_length, reinterpret_cast<void*>(node_len)},
                            {Py_sq_item, reinterpret_cast<void*>(list_item)},
                            {Py_sq_repeat, reinterpret_cast<void*>(list_repeat)},
                            {Py_mp_length, reinterpret_cast<void*>(node_len)},
                            {Py_mp_subscript, reinterpret_cast<void*>(list_subscript)},
                            {Py_mp_ass_subscript, reinterpret_cast<void*>(view_ass_subscript)},
                            {Py_tp_iter, reinterpret_cast<void*>(list_iter)},
                            {Py_tp_methods, list_methods},
                            {Py_tp_doc, const_cast<char*>("A read-only view of a frozen list.")},
                            {0, nullptr}};

// =============================================================================================
// FrozenSet
// =============================================================================================

int set_contains(PyObject* self, PyObject* key) {
  // As for a frozenset: `[] in s` raises TypeError, and a set is looked up as its frozenset.
  ref as_frozenset;
  if (PySet_Check(key)) {
    as_frozenset.p = PyFrozenSet_New(key);
    if (!as_frozenset.get()) return -1;
    key = as_frozenset.get();
  }
  const reading r(self);
  if (!r) return -1;
  const std::int64_t i =
      table_find(r.store, r.base, reinterpret_cast<const table_header*>(r.node()), key);
  return i >= 0 ? 1 : (i == entry_absent ? 0 : -1);
}

PyObject* set_iter(PyObject* self) { return new_iter(self, iter_set); }

PyObject* set_is_frozenset(PyObject* self, PyObject*) {
  const reading r(self);
  return r ? PyBool_FromLong(r.node()->kind == kind_frozenset) : nullptr;
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

}  // namespace

PyType_Spec dict_spec = {"permafrost.FrozenDict", sizeof(view_object), 0, made_here_only,
                         dict_slots};
PyType_Spec list_spec = {"permafrost.FrozenList", sizeof(view_object), 0, made_here_only,
                         list_slots};
PyType_Spec set_spec = {"permafrost.FrozenSet", sizeof(view_object), 0, made_here_only, set_slots};
PyType_Spec iter_spec = {"permafrost._core.iterator", sizeof(iter_object), 0, made_here_only,
                         iter_slots};

PyObject* new_view(PyTypeObject* type, store_object* store, std::uint64_t off) {
  if (!live_type(type)) return nullptr;
  auto* v = PyObject_New(view_object, type);
  if (!v) return nullptr;
  Py_INCREF(store);
  v->store = store;
  v->off = off;
  return reinterpret_cast<PyObject*>(v);
}

namespace {

// A method run as one level of a recursive read (views.hpp, py_nested): fn, called with the
// same arguments once the stack is checked.
struct nested_object {
  PyObject_HEAD PyObject* fn;  // strong
  vectorcallfunc vectorcall;
};

PyObject* nested_call(PyObject* self, PyObject* const* args, std::size_t nargsf,
                      PyObject* kwnames) {
  thread_local std::size_t depth = 0;  // the levels this thread is inside
  if (!stack_room_at(depth)) return nullptr;
  PyObject* held = reinterpret_cast<nested_object*>(self)->fn;
  if (held == nullptr) {  // cleared by the garbage collector (a cycle broken at teardown)
    PyErr_SetString(PyExc_RuntimeError, "permafrost: this view method was already torn down");
    return nullptr;
  }
  const ref fn(Py_NewRef(held));  // held for the call
  ++depth;
  PyObject* r = PyObject_Vectorcall(fn.get(), args, nargsf, kwnames);
  --depth;
  return r;
}

// A method: bound to the instance it is read from (a class gives the method itself).
PyObject* nested_get(PyObject* self, PyObject* obj, PyObject*) {
  if (obj == nullptr || obj == Py_None) return Py_NewRef(self);
  return PyMethod_New(self, obj);
}

int nested_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(reinterpret_cast<nested_object*>(self)->fn);
  return 0;
}

int nested_clear(PyObject* self) {
  Py_CLEAR(reinterpret_cast<nested_object*>(self)->fn);
  return 0;
}

void nested_dealloc(PyObject* self) {
  PyTypeObject* type = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  nested_clear(self);
  type->tp_free(self);
  Py_DECREF(type);
}

// __name__, __qualname__ and __doc__: the wrapped function's, as the function itself gave them
// when it was the method (FrozenDict.__eq__.__name__ raised AttributeError).
PyObject* nested_attr(PyObject* self, void* name) {
  PyObject* fn = reinterpret_cast<nested_object*>(self)->fn;
  if (!fn) {
    PyErr_SetString(PyExc_AttributeError, static_cast<const char*>(name));
    return nullptr;
  }
  return PyObject_GetAttrString(fn, static_cast<const char*>(name));
}

// Whether fn's module and qualified name lead to `self` (a method defined as a lambda or local
// function and named after its class attribute: FrozenDict.__ne__). Any lookup error is cleared.
bool found_by_name(PyObject* self, PyObject* fn) {
  ref module_name(PyObject_GetAttrString(fn, "__module__"));
  ref qualname(module_name.get() ? PyObject_GetAttrString(fn, "__qualname__") : nullptr);
  ref at(qualname.get() && PyUnicode_Check(module_name.get()) && PyUnicode_Check(qualname.get())
             ? PyImport_GetModule(module_name.get())
             : nullptr);
  ref dot(PyUnicode_FromString("."));
  ref parts(at.get() && dot.get() ? PyUnicode_Split(qualname.get(), dot.get(), -1) : nullptr);
  for (Py_ssize_t i = 0; parts.get() && at.get() && i < PyList_GET_SIZE(parts.get()); ++i)
    at = ref(PyObject_GetAttr(at.get(), PyList_GET_ITEM(parts.get(), i)));
  PyErr_Clear();
  return at.get() == self;
}

// Pickled by name where its function's qualified name finds it (FrozenDict.__ne__, a lambda
// named after its attribute: pickle then checked the name against the function and refused "not
// the same object"); else as _nested(fn) (permafrost._core._nested, found by name), so a method
// whose function pickles does: pickle.dumps(FrozenDict.__eq__) raised "cannot pickle
// '_nested_method' object".
PyObject* nested_reduce(PyObject* self, PyObject*) {
  PyObject* fn = reinterpret_cast<nested_object*>(self)->fn;
  if (!fn) return PyErr_Format(PyExc_TypeError, "cannot pickle a cleared _nested_method");
  if (found_by_name(self, fn)) return PyObject_GetAttrString(fn, "__qualname__");
  PyObject* module = PyType_GetModule(Py_TYPE(self));  // borrowed
  if (!module) return nullptr;
  ref nested(PyObject_GetAttrString(module, "_nested"));
  if (!nested.get()) return nullptr;
  return Py_BuildValue("(O(O))", nested.get(), fn);
}

PyGetSetDef nested_getset[] = {
    {"__name__", nested_attr, nullptr, nullptr, const_cast<char*>("__name__")},
    {"__qualname__", nested_attr, nullptr, nullptr, const_cast<char*>("__qualname__")},
    {"__doc__", nested_attr, nullptr, nullptr, const_cast<char*>("__doc__")},
    // pickle looks up a method pickled by name in its __module__.
    {"__module__", nested_attr, nullptr, nullptr, const_cast<char*>("__module__")},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyMethodDef nested_methods[] = {{"__reduce__", nested_reduce, METH_NOARGS, nullptr},
                                {nullptr, nullptr, 0, nullptr}};

PyMemberDef nested_members[] = {
    // inspect.signature (and stubtest) read the wrapped method's signature.
    {"__wrapped__", T_OBJECT_EX, offsetof(nested_object, fn), READONLY, nullptr},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(nested_object, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyType_Slot nested_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(nested_dealloc)},
                              {Py_tp_traverse, reinterpret_cast<void*>(nested_traverse)},
                              {Py_tp_clear, reinterpret_cast<void*>(nested_clear)},
                              {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
                              {Py_tp_descr_get, reinterpret_cast<void*>(nested_get)},
                              {Py_tp_members, nested_members},
                              {Py_tp_getset, nested_getset},
                              {Py_tp_methods, nested_methods},
                              {0, nullptr}};

}  // namespace

// Called unbound by the slots that run it (Py_TPFLAGS_METHOD_DESCRIPTOR): no bound method is made.
PyType_Spec nested_spec = {"permafrost._core._nested_method", sizeof(nested_object), 0,
                           made_here_only | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                               Py_TPFLAGS_METHOD_DESCRIPTOR,
                           nested_slots};

PyObject* py_nested(PyObject* module, PyObject* fn) {
  PyTypeObject* type = live_type(state_of(module).nested_type);
  if (!type) return nullptr;
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "_nested(fn): fn must be callable");
    return nullptr;
  }
  auto* self = PyObject_GC_New(nested_object, type);
  if (!self) return nullptr;
  self->fn = Py_NewRef(fn);
  self->vectorcall = nested_call;
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

}  // namespace permafrost::python
