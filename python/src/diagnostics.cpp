// permafrost for Python — the module functions that measure and guard memory (see
// diagnostics.hpp).
#include "diagnostics.hpp"

#include <malloc.h>

#include <climits>

#include "permafrost/memstat.hpp"
#include "permafrost/write_trap.hpp"
#include "store.hpp"

namespace permafrost::python {
namespace {

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

}  // namespace

// _memory(pid) -> (rss, pss, uss, shared) in bytes.
PyObject* py_memory(PyObject*, PyObject* args) {
  long pid = 0;
  pid_t p = 0;
  if (!PyArg_ParseTuple(args, "|l", &pid) || !to_pid(pid, &p)) return nullptr;
  PF_ENTRY_BEGIN
  try {
    const permafrost::memory_usage m = permafrost::process_memory(p);
    return Py_BuildValue(
        "(KKKK)", static_cast<unsigned long long>(m.rss), static_cast<unsigned long long>(m.pss),
        static_cast<unsigned long long>(m.uss), static_cast<unsigned long long>(m.shared()));
  } catch (const permafrost::proc_error& e) {
    set_proc_error(e);
    return nullptr;
  }
  PF_ENTRY_END
}

// _sharing_audit(view, child, parent) -> (pages, parent_present, child_present, shared, copied)
PyObject* py_sharing_audit(PyObject* module, PyObject* args) {
  PyObject* o;
  long child = 0, parent = 0;
  pid_t c = 0, p = 0;
  if (!PyArg_ParseTuple(args, "Oll", &o, &child, &parent) || !to_pid(child, &c) ||
      !to_pid(parent, &p))
    return nullptr;
  PF_ENTRY_BEGIN
  store_object* s = store_of(state_of(module), o);
  try {
    const auto* b = reinterpret_cast<const std::byte*>(s->base);
    const permafrost::sharing_report r = permafrost::sharing_audit(c, p, {b, s->size});
    return Py_BuildValue("(nnnnn)", static_cast<Py_ssize_t>(r.pages),
                         static_cast<Py_ssize_t>(r.parent_present),
                         static_cast<Py_ssize_t>(r.child_present),
                         static_cast<Py_ssize_t>(r.shared), static_cast<Py_ssize_t>(r.copied));
  } catch (const permafrost::proc_error& e) {
    set_proc_error(e);
    return nullptr;
  }
  PF_ENTRY_END
}

// _private_pages(view, pid=0) -> pages of the view's frozen bytes that only `pid` maps and has
// modified (Private_Dirty): copy-on-write copies. 0 in a forked worker that only read.
PyObject* py_private_pages(PyObject* module, PyObject* args) {
  PyObject* o;
  long pid = 0;
  pid_t p = 0;
  if (!PyArg_ParseTuple(args, "O|l", &o, &pid) || !to_pid(pid, &p)) return nullptr;
  PF_ENTRY_BEGIN
  store_object* s = store_of(state_of(module), o);
  const permafrost::memory_usage m = permafrost::range_memory(p, s->base, s->base + s->size);
  return PyLong_FromUnsignedLongLong(m.private_dirty / 4096);
  PF_ENTRY_END
}

// trim(): glibc's malloc_trim(0). Returns True when memory went back to the kernel.
PyObject* py_trim(PyObject*, PyObject*) { return PyBool_FromLong(::malloc_trim(0)); }

PyObject* py_install_write_trap(PyObject*, PyObject*) {
  PF_ENTRY_BEGIN
  permafrost::install_write_trap();
  Py_RETURN_NONE;
  PF_ENTRY_END
}

PyObject* py_write_trap_installed(PyObject*, PyObject*) {
  return PyBool_FromLong(permafrost::write_trap_installed());
}

}  // namespace permafrost::python
