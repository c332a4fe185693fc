// permafrost for Python — freeze_native()'s module functions (contract in native.hpp).
#define PY_SSIZE_T_CLEAN
#include "native.hpp"

#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "module_state.hpp"
#include "native_layout.hpp"
#include "permafrost/arena.hpp"
#include "permafrost/memstat.hpp"
#include "py_ref.hpp"

#if PF_NATIVE_SUPPORTED
#include "native_audit.hpp"
#include "native_build.hpp"
#include "native_region.hpp"
#include "permafrost/write_trap.hpp"
#endif

namespace permafrost::python {

namespace {

// The interpreter whose NativeDict, NativeList and NativeSet the copies get: the main one when it
// imports permafrost, else the first to call freeze_native(). Frozen objects outlive any module
// object and hold those types, so they are process-wide, not module state; other interpreters
// may import the package but not freeze_native(). Its id, not its address: CPython reuses the
// address of a destroyed interpreter, and a subinterpreter made after the owner's end passed for
// it, giving its copies the dead one's types (whose module was torn down: the mutators raised
// NameError, pickling AttributeError). Ids are never reused; -1: none yet.
std::int64_t g_owner = -1;

std::int64_t this_interpreter() { return PyInterpreterState_GetID(PyInterpreterState_Get()); }

// Why freeze_native() cannot run in this interpreter, or "".
std::string unsupported_reason() {
  if (!native::unsupported_reason().empty()) return native::unsupported_reason();
  if (g_owner != -1 && g_owner != this_interpreter())
    return "permafrost.freeze_native() runs only in one interpreter of a process, the main one "
           "once it imported permafrost, else the first that called it (its copies hold that "
           "interpreter's types); this is another one";
  return {};
}

PyObject* raise_unsupported() {
  PyErr_SetString(PyExc_RuntimeError, unsupported_reason().c_str());
  return nullptr;
}

PyObject* py_native_unsupported(PyObject*, PyObject*) {
  return PyUnicode_FromString(unsupported_reason().c_str());
}

// A pid argument: 0 (this process) up to INT_MAX, else ProcessLookupError.
bool to_pid(long v, pid_t* out) {
  if (v < 0 || v > INT_MAX) {
    PyErr_Format(PyExc_ProcessLookupError, "no process %ld", v);
    return false;
  }
  *out = static_cast<pid_t>(v);
  return true;
}

// _range_sharing_audit(address, size, child, parent) -> (pages, parent_present, child_present,
// shared, copied)
PyObject* py_range_sharing_audit(PyObject*, PyObject* args) {
  unsigned long long address = 0;
  Py_ssize_t size = 0;
  long child = 0, parent = 0;
  pid_t c = 0, p = 0;
  if (!PyArg_ParseTuple(args, "Knll", &address, &size, &child, &parent) || !to_pid(child, &c) ||
      !to_pid(parent, &p))
    return nullptr;
  try {
    const auto* b = reinterpret_cast<const std::byte*>(static_cast<std::uintptr_t>(address));
    const sharing_report r = sharing_audit(c, p, {b, static_cast<std::size_t>(size)});
    return Py_BuildValue("(nnnnn)", static_cast<Py_ssize_t>(r.pages),
                         static_cast<Py_ssize_t>(r.parent_present),
                         static_cast<Py_ssize_t>(r.child_present),
                         static_cast<Py_ssize_t>(r.shared), static_cast<Py_ssize_t>(r.copied));
  } catch (const proc_error& e) {
    set_proc_error(e);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_OSError, e.what());
  }
  return nullptr;
}

// _range_private_pages(address, size, pid) -> copy-on-write copies (Private_Dirty pages) of the
// range in process pid.
PyObject* py_range_private_pages(PyObject*, PyObject* args) {
  unsigned long long address = 0;
  Py_ssize_t size = 0;
  long pid = 0;
  pid_t p = 0;
  if (!PyArg_ParseTuple(args, "Kn|l", &address, &size, &pid) || !to_pid(pid, &p)) return nullptr;
  try {
    const char* b = reinterpret_cast<const char*>(static_cast<std::uintptr_t>(address));
    const memory_usage m = range_memory(p, b, b + size);
    return PyLong_FromUnsignedLongLong(m.private_dirty / 4096);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_OSError, e.what());
  }
  return nullptr;
}

// _reduce_native(obj): how pickle and copy rebuild a NativeDict, NativeList or NativeSet: as the
// plain base type, its items pickled one by one. Registered in copyreg.dispatch_table (_native.py),
// so the pickler calls it without a Python frame. Pickling a nested copy recurses once per level,
// through more C stack per level than a plain list's (the reduce path), and the interpreter's
// recursion limit counts levels, not bytes: in a thread with a small stack the pickler overflowed
// it (SIGSEGV) where a plain list raised RecursionError. Each call checks the room left instead.
PyObject* py_reduce_native(PyObject*, PyObject* o) {
  constexpr std::size_t min_stack_left = std::size_t{64} << 10;
  if (permafrost::stack_bytes_left() < min_stack_left) {
    PyErr_SetString(PyExc_RecursionError,
                    "pickling a freeze_native() copy nested too deep for this thread's stack: "
                    "pickle it in a thread with a larger stack (threading.stack_size) or in the "
                    "main thread");
    return nullptr;
  }
  if (PyDict_Check(o)) {
    // dict.items, looked up once: by name on every call it took twice as long as a Python
    // reducer. A descriptor of a static type, shared by every interpreter; never released.
    static PyObject* const dict_items =
        PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyDict_Type), "items");
    if (!dict_items) return nullptr;
    ref items{PyObject_CallOneArg(dict_items, o)};
    ref iter{items.get() ? PyObject_GetIter(items.get()) : nullptr};
    if (!iter.get()) return nullptr;
    return Py_BuildValue("(O()OOO)", &PyDict_Type, Py_None, Py_None, iter.get());
  }
  if (PyList_Check(o)) {
    ref iter{PyObject_GetIter(o)};
    if (!iter.get()) return nullptr;
    return Py_BuildValue("(O()OO)", &PyList_Type, Py_None, iter.get());
  }
  if (PyAnySet_Check(o)) {
    ref items{PySequence_List(o)};
    if (!items.get()) return nullptr;
    return Py_BuildValue("(O(O))", &PySet_Type, items.get());
  }
  PyErr_Format(PyExc_TypeError, "_reduce_native: a dict, list or set, not %.200s",
               Py_TYPE(o)->tp_name);
  return nullptr;
}

#if PF_NATIVE_SUPPORTED

using native::build_error;
using native::native_types;

native_types g_types;  // strong references, for the life of the process

// One frozen arena: everything the write trap, the guard and _native_arena read. Never freed.
struct native_arena {
  std::unique_ptr<native::region> region;
  native::block_map layout;
  native::describe_context describe;
  std::string name;
};
std::vector<native_arena*> g_arenas;

// Objects the tests' `test` argument keeps (a stray, an outside reference): never released.
std::vector<PyObject*> g_test_keep;

const native_arena* arena_of(PyObject* o) {
  const auto a = reinterpret_cast<std::uintptr_t>(o);
  for (const native_arena* n : g_arenas)
    if (a - n->describe.base < n->describe.used) return n;
  return nullptr;
}

bool registered_subclass(PyObject* t, PyTypeObject* base, const char* what, PyTypeObject** out) {
  if (!PyType_Check(t) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(t), base)) {
    PyErr_Format(PyExc_TypeError, "_native_setup: the %s type must subclass %s", what,
                 base->tp_name);
    return false;
  }
  auto* sub = reinterpret_cast<PyTypeObject*>(t);
  // The copies are made as the base type and then given the subclass: it may add nothing.
  if (sub->tp_base != base || sub->tp_basicsize != base->tp_basicsize ||
      sub->tp_itemsize != base->tp_itemsize || sub->tp_dictoffset != 0 ||
      sub->tp_weaklistoffset != base->tp_weaklistoffset ||
      (sub->tp_flags & Py_TPFLAGS_PREHEADER) != 0) {
    PyErr_Format(PyExc_TypeError,
                 "_native_setup: %s must add no field to %s (__slots__ = (), no __dict__ or "
                 "__weakref__ of its own)",
                 sub->tp_name, base->tp_name);
    return false;
  }
  Py_INCREF(sub);
  *out = sub;
  return true;
}

PyObject* py_native_setup(PyObject*, PyObject* args) {
  PyObject *d, *l, *s;
  int calling = 0;
  if (!PyArg_ParseTuple(args, "OOOp", &d, &l, &s, &calling)) return nullptr;
  // The types exist everywhere; freeze_native() raises where it cannot run. The first bound
  // interpreter's types stay (another interpreter, or a reload, keeps its classes unused). At
  // import only the main interpreter binds: a subinterpreter that imported permafrost first
  // (mod_wsgi's) kept the main one from freeze_native() for good; another binds at its first call.
  if (!calling && PyInterpreterState_Get() != PyInterpreterState_Main()) Py_RETURN_NONE;
  if (!unsupported_reason().empty() || g_types.dict != nullptr) Py_RETURN_NONE;
  native_types t;
  if (!registered_subclass(d, &PyDict_Type, "dict", &t.dict) ||
      !registered_subclass(l, &PyList_Type, "list", &t.list) ||
      !registered_subclass(s, &PySet_Type, "set", &t.set))
    return nullptr;
  // weakref.ref() of a set writes its weakref list: of a frozen one, a SIGSEGV. NativeSet takes
  // none, as NativeDict and NativeList (dict and list take none): weakref.ref() raises TypeError.
  // set_dealloc reads the (always empty) list through the struct, not this offset.
  t.set->tp_weaklistoffset = 0;
  // `x.__class__ = C` writes the object's type pointer: of a frozen one, a SIGSEGV. CPython refuses
  // it with TypeError when either type is immutable (Objects/typeobject.c, object_set_class), and
  // an immutable type also refuses new attributes, so nobody puts a mutator back on the class.
  for (PyTypeObject* type : {t.dict, t.list, t.set}) {
    type->tp_flags |= Py_TPFLAGS_IMMUTABLETYPE;
    PyType_Modified(type);
  }
  g_types = t;
  g_owner = this_interpreter();
  Py_RETURN_NONE;
}

// Objects the free lists handed over while pulling them (drain_free_lists): those that touch the
// region stay forever as unreferenced immortal objects (their blocks marked dead, so the audit
// ignores them); the others are released.
void settle(std::vector<PyObject*>& held, native::region& r) {
  for (PyObject* o : held) {
    void* keys = PyDict_CheckExact(o) ? reinterpret_cast<PyDictObject*>(o)->ma_keys : nullptr;
    const bool object_inside = r.holds(o);
    const bool keys_inside = keys != nullptr && r.holds(keys);
    if (!object_inside && !keys_inside) {
      Py_DECREF(o);
      continue;
    }
    if (PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
    native::make_immortal(o);
    if (object_inside)
      r.release(reinterpret_cast<char*>(o) -
                (PyType_IS_GC(Py_TYPE(o)) ? native::gc_header_bytes : 0));
    if (keys_inside) r.release(keys);
  }
  held.clear();
}

// True when the region holds no live block (everything built was freed again).
bool all_dead(native::region& r) {
  const native::block_map& m = r.map();
  const std::size_t n = m.granules();
  for (std::size_t g = m.next_start(static_cast<std::size_t>(-1), n); g < n; g = m.next_start(g, n))
    if (m.get(g) == native::block_live) return false;
  return true;
}

// Keeps GC collections out of the copy (none would run inside it anyway: no bytecode runs).
class gc_paused {
 public:
  gc_paused() : was_enabled_(PyGC_Disable()) {}
  ~gc_paused() {
    if (was_enabled_) PyGC_Enable();
  }
  gc_paused(const gc_paused&) = delete;
  gc_paused& operator=(const gc_paused&) = delete;

 private:
  int was_enabled_;
};

bool wants_huge_pages(PyObject* obj, PyObject* huge_pages) {
  if (huge_pages != Py_None) return PyObject_IsTrue(huge_pages) == 1;  // -1: checked before
  // The size of the copy is not known in advance: a container of thousands of items is likely
  // to fill megabytes, where huge pages make fork and reads cheaper; a small one would commit a
  // whole 2 MiB page.
  Py_ssize_t n = 0;
  if (PyDict_Check(obj)) n = PyDict_GET_SIZE(obj);
  else if (PyList_Check(obj)) n = PyList_GET_SIZE(obj);
  else if (PyTuple_Check(obj)) n = PyTuple_GET_SIZE(obj);
  else if (PyAnySet_Check(obj)) n = PySet_GET_SIZE(obj);
  return n >= 4096;
}

// The objects the tests' `test` argument plants (see native.hpp).
void plant_test_fault(int test, PyObject* root) {
  if (test == 1) {
    // A stray: made in the region (build mode), part of nothing, kept alive from outside.
    PyObject* stray = PyUnicode_FromString("a stray str made while freezing, kept by the test");
    if (stray) g_test_keep.push_back(stray);
  } else if (test == 2 && PyDict_Check(root)) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    if (PyDict_Next(root, &pos, &k, &v)) g_test_keep.push_back(Py_NewRef(v));
  }
}

// _freeze_native(obj, name, huge_pages, test)
PyObject* py_freeze_native(PyObject* module, PyObject* args) {
  PyObject* obj;
  const char* name = "permafrost-native";
  PyObject* huge_pages = Py_None;
  int test = 0;
  if (!PyArg_ParseTuple(args, "O|O&Oi", &obj, &arena_name_arg, &name, &huge_pages, &test))
    return nullptr;
  if (!name) name = "permafrost-native";
  if (!unsupported_reason().empty()) return raise_unsupported();
  if (g_types.dict == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "permafrost._native has not registered its types");
    return nullptr;
  }
  // Its truth is asked now, before the copy: a __bool__ that raises is the caller's error.
  if (huge_pages != Py_None && PyObject_IsTrue(huge_pages) < 0) return nullptr;
  if (native::reusable_as_is(obj, g_types)) return Py_NewRef(obj);  // immortal already

  auto arena = std::make_unique<native_arena>();
  arena->name = name;
  PyObject* root = nullptr;
  std::optional<build_error> failure;
  PyObject *err_type = nullptr, *err_value = nullptr, *err_tb = nullptr;
  try {
    arena->region = std::make_unique<native::region>(name, wants_huge_pages(obj, huge_pages));
    native::region& r = *arena->region;
    gc_paused no_gc;
    native::build_hooks hooks(r);
    std::vector<PyObject*> before, during;
    {
      native::pass_through pass(hooks);
      native::drain_free_lists(before, ~std::uint32_t{0});
    }
    try {
      native::builder b(r, hooks, g_types, state_of(module), during);
      root = b.copy(obj);
      if (test != 0) plant_test_fault(test, root);
    } catch (const build_error& e) {
      failure = e;
    } catch (const std::bad_alloc&) {
      failure = build_error{PyExc_MemoryError, "out of memory while copying into the arena"};
    }
    if (failure && failure->type == nullptr) PyErr_Fetch(&err_type, &err_value, &err_tb);
    PyErr_Clear();
    // Take the copy's temporaries off CPython's free lists before anything can reuse them.
    native::pass_through pass(hooks);
    native::drain_free_lists(during, ~std::uint32_t{0});
    settle(during, r);
    for (PyObject* o : before) Py_DECREF(o);
  } catch (const std::runtime_error& e) {  // another freeze_native() is running
    Py_XDECREF(root);
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  } catch (const permafrost::arena_limit_error& e) {  // all 1024 slots, or the reservation
    Py_XDECREF(root);
    PyErr_Format(PyExc_MemoryError, "permafrost.freeze_native(): %s", e.what());
    return nullptr;
  } catch (const std::bad_alloc&) {
    Py_XDECREF(root);
    return PyErr_NoMemory();
  }
  native::region& r = *arena->region;
  if (failure) {
    // Whatever the copy made is dead; an arena that still holds something (a key interned before
    // the failure) stays, unfrozen, for the life of the process.
    if (all_dead(r)) arena.reset();
    else static_cast<void>(arena.release());  // kept on purpose: see above
    if (failure->type == nullptr) {
      PyErr_Restore(err_type, err_value, err_tb);
    } else {
      PyErr_SetString(failure->type, failure->message.c_str());
    }
    return nullptr;
  }
  std::string refused;
  try {
    refused = native::audit(r, root, g_types, arena->layout);
  } catch (const std::bad_alloc&) {
    refused = "out of memory during the audit";
  }
  if (!refused.empty()) {
    // The copy stays, immortal and unfrozen, for the life of the process: something outside may
    // hold part of it.
    static_cast<void>(arena.release());
    PyErr_Format(PyExc_RuntimeError, "permafrost.freeze_native(): the arena failed its audit: %s",
                 refused.c_str());
    return nullptr;
  }
  r.map().reset(0);  // the build-time map is no longer needed
  arena->describe = {r.base(), r.used(), &arena->layout, g_types};
  try {
    permafrost::set_write_describer(r.arena(), native::describe, &arena->describe);
    r.arena().freeze();
    native::add_frozen_region({r.base(), r.used(), &arena->layout});
    native::install_guard();
    g_arenas.push_back(arena.get());
  } catch (const std::exception& e) {
    static_cast<void>(arena.release());
    PyErr_Format(PyExc_OSError, "permafrost.freeze_native(): %s", e.what());
    return nullptr;
  }
  static_cast<void>(arena.release());  // lives as long as the process: its objects do
  return root;                         // the caller's reference (immortal)
}

// ----- thaw -------------------------------------------------------------------------------------

class thawer {
 public:
  PyObject* thaw(PyObject* o) {
    PyTypeObject* t = Py_TYPE(o);
    const bool container =
        t == g_types.dict || t == g_types.list || t == g_types.set || t == &PyTuple_Type;
    if (!container) return Py_NewRef(o);  // immutable: shared with the frozen copy
    if (auto it = memo_.find(o); it != memo_.end()) return Py_NewRef(it->second);
    if (++depth_ > 10000) {
      PyErr_SetString(PyExc_RecursionError, "thaw(): nested too deep");
      return nullptr;
    }
    // Recursing once per level: a thread with a small stack would overflow long before that.
    if ((depth_ & 31) == 31 && permafrost::stack_bytes_left() < (std::size_t{256} << 10)) {
      PyErr_SetString(PyExc_RecursionError,
                      "thaw(): nested too deep for this thread's stack: thaw it in a thread "
                      "with a larger stack (threading.stack_size) or in the main thread");
      --depth_;
      return nullptr;
    }
    PyObject* out = t == g_types.dict   ? dict(o)
                    : t == g_types.list ? list(o)
                    : t == g_types.set  ? set(o)
                                        : tuple(o);
    --depth_;
    if (out != nullptr && Py_REFCNT(o) > 0) memo_[o] = out;  // borrowed: held by its parent
    return out;
  }

 private:
  PyObject* dict(PyObject* o) {
    PyObject* d = PyDict_New();
    if (!d) return nullptr;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {
      PyObject* tv = thaw(v);
      if (!tv || PyDict_SetItem(d, k, tv) < 0) {
        Py_XDECREF(tv);
        Py_DECREF(d);
        return nullptr;
      }
      Py_DECREF(tv);
    }
    return d;
  }
  PyObject* list(PyObject* o) {
    const Py_ssize_t n = PyList_GET_SIZE(o);
    PyObject* l = PyList_New(n);
    if (!l) return nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* item = thaw(PyList_GET_ITEM(o, i));
      if (!item) {
        Py_DECREF(l);
        return nullptr;
      }
      PyList_SET_ITEM(l, i, item);
    }
    return l;
  }
  PyObject* set(PyObject* o) { return PySet_New(o); }  // elements are hashable, so immutable
  PyObject* tuple(PyObject* o) {
    const Py_ssize_t n = PyTuple_GET_SIZE(o);
    PyObject* t = PyTuple_New(n);
    if (!t) return nullptr;
    bool changed = false;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* item = thaw(PyTuple_GET_ITEM(o, i));
      if (!item) {
        Py_DECREF(t);
        return nullptr;
      }
      changed = changed || item != PyTuple_GET_ITEM(o, i);
      PyTuple_SET_ITEM(t, i, item);
    }
    if (changed) return t;
    Py_DECREF(t);
    return Py_NewRef(o);
  }

  std::unordered_map<PyObject*, PyObject*> memo_;
  int depth_ = 0;
};

PyObject* py_thaw_native(PyObject*, PyObject* o) {
  if (!unsupported_reason().empty()) return raise_unsupported();
  try {
    thawer t;
    return t.thaw(o);
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  }
}

// _native_arena(obj) -> (name, address, size)
PyObject* py_native_arena(PyObject*, PyObject* o) {
  if (!unsupported_reason().empty()) return raise_unsupported();
  const native_arena* a = arena_of(o);
  if (a == nullptr) {
    PyErr_Format(PyExc_TypeError, "a %.200s object that freeze_native() did not make",
                 Py_TYPE(o)->tp_name);
    return nullptr;
  }
  return Py_BuildValue("(sKn)", a->name.c_str(), static_cast<unsigned long long>(a->describe.base),
                       static_cast<Py_ssize_t>(a->describe.used));
}

#else  // !PF_NATIVE_SUPPORTED

PyObject* py_native_setup(PyObject*, PyObject*) { Py_RETURN_NONE; }
PyObject* py_freeze_native(PyObject*, PyObject*) { return raise_unsupported(); }
PyObject* py_thaw_native(PyObject*, PyObject*) { return raise_unsupported(); }
PyObject* py_native_arena(PyObject*, PyObject*) { return raise_unsupported(); }

#endif  // PF_NATIVE_SUPPORTED

PyMethodDef native_methods[] = {
    {"_native_setup", py_native_setup, METH_VARARGS,
     "_native_setup(dict_type, list_type, set_type, calling): the types freeze_native() gives "
     "copies (calling: from freeze_native(), which binds any interpreter; else the main one)"},
    {"_freeze_native", py_freeze_native, METH_VARARGS,
     "_freeze_native(obj, name=None, huge_pages=None, test=0)"},
    {"_thaw_native", py_thaw_native, METH_O, "_thaw_native(obj) -> a mutable deep copy"},
    {"_reduce_native", py_reduce_native, METH_O,
     "_reduce_native(obj) -> how pickle rebuilds a native dict, list or set (as the base type)"},
    {"_native_arena", py_native_arena, METH_O,
     "_native_arena(obj) -> (name, address, size) of the frozen arena obj lives in"},
    {"_native_unsupported", py_native_unsupported, METH_NOARGS,
     "_native_unsupported() -> why freeze_native() cannot run here, or ''"},
    {"_range_sharing_audit", py_range_sharing_audit, METH_VARARGS,
     "_range_sharing_audit(address, size, child, parent) -> (pages, parent_present, "
     "child_present, shared, copied)"},
    {"_range_private_pages", py_range_private_pages, METH_VARARGS,
     "_range_private_pages(address, size, pid=0) -> copied (Private_Dirty) pages of the range"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

int register_native(PyObject* module) {
  native::check_layout();
  return PyModule_AddFunctions(module, native_methods);
}

}  // namespace permafrost::python
