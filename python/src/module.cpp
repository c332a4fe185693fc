// permafrost for Python — the extension module `permafrost._core`: its functions table, its types
// and its initialisation.
//
// Contract: importing permafrost._core makes a module object (PEP 489 multi-phase initialisation)
// whose state (module_state.hpp) holds its types — Store, FrozenDict, FrozenList, FrozenSet and
// the iterator — and the objects cached for the readers; nothing lives in C globals, so every
// interpreter that imports the module gets its own. The work is done in the parts:
//   format.hpp        the frozen value format: the one codec (no Python)
//   freeze.cpp        freeze() and the builders: Python objects into a frozen arena
//   graph_output.cpp  the memfd arena they write into, node by node (no Python)
//   store.cpp         the Store (an arena or an image owns the bytes); saving and opening images
//   values.cpp        frozen values back as Python objects (materialise, thaw)
//   views.cpp         FrozenDict, FrozenList, FrozenSet and their iterator
//   keys.cpp          key hashing and table lookups
//   graph_check.cpp   the check of an image's graph before any view of it exists (no Python)
//   image_support.cpp image files, on the C++ library's images (no Python)
//   diagnostics.cpp   memory measurement, trim(), the write trap
//   scalars.cpp       datetime, date, time, timedelta, Decimal, UUID, Enum: frozen and back
//   dumps.cpp         permafrost.dumps: JSON from frozen bytes (json_output.hpp, json_numbers.cpp)
//   native*.cpp       freeze_native(): real CPython objects in a frozen arena (native.hpp)
// The Python half of the package (permafrost/__init__.py) builds the public API on these.
//
// Thread safety: every entry point runs under the GIL of the interpreter that imported it.
#include "diagnostics.hpp"
#include "dumps.hpp"
#include "freeze.hpp"
#include "module_state.hpp"
#include "native.hpp"
#include "permafrost/write_trap.hpp"
#include "sharing.hpp"
#include "store.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

// os.register_at_fork(after_in_child=...): counts the forks (module_state::forks).
PyObject* py_after_fork_child(PyObject* m, PyObject*) {
  ++state_of(m).forks;
  Py_RETURN_NONE;
}

PyMethodDef module_methods[] = {
    {"_after_fork_child", py_after_fork_child, METH_NOARGS,
     "_after_fork_child(): run by os.register_at_fork in each forked child"},
    {"_freeze", py_freeze, METH_VARARGS, "_freeze(obj, name=None)"},
    {"_build", py_build, METH_VARARGS, "_build(iterable, as_dict, name=None)"},
    {"_writer_reservation", py_writer_reservation, METH_O, "_writer_reservation(bytes)"},
    {"_range", py_range, METH_O, "_range(view) -> (address, size) of its frozen bytes"},
    {"_memory", py_memory, METH_VARARGS, "_memory(pid=0) -> (rss, pss, uss, shared)"},
    {"_sharing_audit", py_sharing_audit, METH_VARARGS,
     "_sharing_audit(view, child_pid, parent_pid) -> (pages, parent_present, child_present, "
     "shared, copied)"},
    {"_private_pages", py_private_pages, METH_VARARGS,
     "_private_pages(view, pid=0) -> copied (Private_Dirty) pages of its frozen bytes"},
    // "name($module, /)\n--\n\n" first: inspect.signature() reads it (__text_signature__).
    {"install_write_trap", py_install_write_trap, METH_NOARGS,
     "install_write_trap($module, /)\n--\n\n"
     "A write into frozen memory prints one line naming the arena and offset, then the process "
     "dies of SIGSEGV."},
    {"write_trap_installed", py_write_trap_installed, METH_NOARGS,
     "write_trap_installed($module, /)\n--\n\n"
     "Whether install_write_trap() ran in this process."},
    {"trim", py_trim, METH_NOARGS,
     "trim($module, /)\n--\n\n"
     "Give the free memory of this process's malloc back to the kernel (glibc malloc_trim); "
     "True if some was. Call it after dropping what you froze, before forking."},
    {"_save", py_save, METH_VARARGS, "_save(view, path, image_id)"},
    {"_save_bytes", py_save_bytes, METH_VARARGS,
     "_save_bytes(data, path, root_type=None): tests only"},
    {"_open_store", py_open_store, METH_VARARGS, "_open_store(path, fd, populate=False) -> store"},
    {"_store_view", py_store_view, METH_VARARGS, "_store_view(store, offset) -> value"},
    {"_store_id", py_store_id, METH_O, "_store_id(store) -> the image id saved with it"},
    {"dumps", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_dumps)),
     METH_FASTCALL | METH_KEYWORDS,
     "dumps($module, obj, *, indent=None, sort_keys=False, default=None)\n--\n\n"
     "JSON text of obj as UTF-8: the text of json.dumps(obj, ensure_ascii=False, "
     "separators=(',', ':')) (with indent: (',', ': ')), frozen views written straight from "
     "their frozen bytes. default(value) is called for values json cannot encode, as in json; "
     "a lone surrogate is written as a \\udXXX escape."},
    {"_encode", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_encode)),
     METH_FASTCALL,
     "_encode(obj, indent, sort_keys, default, ensure_ascii, item_separator, key_separator, "
     "allow_nan, skipkeys, check_circular) -> bytes: for permafrost.JSONEncoder"},
    {"_store_of", py_store_of, METH_O, "_store_of(view) -> its store"},
    {"_same_node", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_same_node)),
     METH_FASTCALL, "_same_node(a, b) -> whether a and b view one node of one graph"},
    {"_nested", py_nested, METH_O,
     "_nested(fn) -> fn as a views' method run one level deeper in a read of nested views"},
    {"_close", py_close, METH_O, "_close(store): unmap it; its views raise ValueError after"},
    {"_closed", py_closed, METH_O, "_closed(store) -> bool"},
    {"_is_root", py_is_root, METH_O, "_is_root(view) -> whether it is its graph's root"},
    {"_open_store_fd", py_open_store_fd, METH_VARARGS,
     "_open_store_fd(fd, name) -> store of an image another process checked and sent"},
    {"_share", py_share, METH_O, "_share(store) -> fd of a sealed memfd holding its graph"},
    {"_mapped_store", py_mapped_store, METH_O, "_mapped_store(buffer_owner) -> store"},
    {"_store_owner", py_store_owner, METH_O, "_store_owner(store) -> its buffer owner or None"},
    {"_store_info", py_store_info, METH_O, "_store_info(store) -> (kind, path, id, size)"},
    {"_pool_write", py_pool_write, METH_VARARGS,
     "_pool_write(mapping, offset, data): copy data into a read-only anonymous mapping"},
    {"_jsonable", py_jsonable, METH_O,
     "_jsonable(o): a datetime's (date's, Decimal's...) JSON string, an Enum member's value"},
    {nullptr, nullptr, 0, nullptr}};

// Makes the type of `spec` for module m, stores it in `slot` and adds it as m.<attr>.
bool add_type(PyObject* m, PyType_Spec* spec, const char* attr, PyTypeObject*& slot) {
  auto* t = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(m, spec, nullptr));
  if (!t) return false;
  slot = t;  // the state's reference
  return PyModule_AddObjectRef(m, attr, reinterpret_cast<PyObject*>(t)) == 0;
}

// Registers m._after_fork_child to run in every child os.fork() makes. 0, or -1 with an
// exception set.
int register_fork_hook(PyObject* m) {
  ref hook(PyObject_GetAttrString(m, "_after_fork_child"));
  ref os(PyImport_ImportModule("os"));
  if (!hook.get() || !os.get()) return -1;
  ref reg(PyObject_GetAttrString(os.get(), "register_at_fork"));
  ref args(PyTuple_New(0));
  ref kwargs(Py_BuildValue("{s:O}", "after_in_child", hook.get()));
  if (!reg.get() || !args.get() || !kwargs.get()) return -1;
  ref done(PyObject_Call(reg.get(), args.get(), kwargs.get()));
  return done.get() ? 0 : -1;
}

// Py_mod_exec: fills the module's state (module_state.hpp) and attributes.
int module_exec(PyObject* m) {
  module_state& st = state_of(m);
  if (!add_type(m, &store_spec, "Store", st.store_type) ||
      !add_type(m, &dict_spec, "FrozenDict", st.dict_type) ||
      !add_type(m, &list_spec, "FrozenList", st.list_type) ||
      !add_type(m, &set_spec, "FrozenSet", st.set_type) ||
      !add_type(m, &iter_spec, "_iterator", st.iter_type) ||
      !add_type(m, &nested_spec, "_nested_method", st.nested_type))
    return -1;
  st.int_from_bytes =
      PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyLong_Type), "from_bytes");
  st.str_little = PyUnicode_InternFromString("little");
  st.kw_signed = Py_BuildValue("{s:O}", "signed", Py_True);
  if (!st.int_from_bytes || !st.str_little || !st.kw_signed) return -1;
  if (register_native(m) < 0) return -1;  // freeze_native()'s functions
  if (register_fork_hook(m) < 0) return -1;
  // PERMAFROST_TRAP=1 installs the write trap at import (as it does for the malloc library).
  permafrost::install_write_trap_from_env();  // noexcept: reports its own errors on stderr
  return 0;
}

int module_traverse(PyObject* m, visitproc visit, void* arg) {
  const module_state& st = state_of(m);
  Py_VISIT(st.store_type);
  Py_VISIT(st.dict_type);
  Py_VISIT(st.list_type);
  Py_VISIT(st.set_type);
  Py_VISIT(st.iter_type);
  Py_VISIT(st.nested_type);
  Py_VISIT(st.int_from_bytes);
  Py_VISIT(st.str_little);
  Py_VISIT(st.kw_signed);
  return 0;
}

int module_clear(PyObject* m) {
  module_state& st = state_of(m);
  Py_CLEAR(st.store_type);
  Py_CLEAR(st.dict_type);
  Py_CLEAR(st.list_type);
  Py_CLEAR(st.set_type);
  Py_CLEAR(st.iter_type);
  Py_CLEAR(st.nested_type);
  Py_CLEAR(st.int_from_bytes);
  Py_CLEAR(st.str_little);
  Py_CLEAR(st.kw_signed);
  return 0;
}

void module_free(void* m) { module_clear(static_cast<PyObject*>(m)); }

PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(module_exec)},
#ifdef Py_mod_multiple_interpreters
    // 3.12+: importable in subinterpreters that share the main GIL (all state is per module
    // object), but not in ones with their own GIL: see docs/design.md, "Python", on the arena
    // library's process-wide state.
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#ifdef Py_mod_gil
    // 3.13+: the free-threaded build has not been audited; it re-enables the GIL on import.
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "permafrost._core",
                          "permafrost's CPython extension: frozen value graphs.",
                          sizeof(module_state),
                          module_methods,
                          module_slots,
                          module_traverse,
                          module_clear,
                          module_free};

}  // namespace
}  // namespace permafrost::python

PyMODINIT_FUNC PyInit__core() { return PyModuleDef_Init(&permafrost::python::module_def); }
