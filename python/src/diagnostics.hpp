// permafrost for Python — the module functions that measure and guard memory.
//
// Contract: _memory(pid) reads a process's RSS, PSS, USS and shared bytes; _sharing_audit and
// _private_pages compare the pages of a view's frozen bytes between processes (pagemap, smaps),
// for tests and benchmarks; trim() gives free malloc memory back to the kernel (glibc
// malloc_trim); install_write_trap() / write_trap_installed() expose the library's write trap.
// A pid that names no process (negative, above INT_MAX, gone, unreadable) raises
// ProcessLookupError. All of it is the C++ library's memstat and write_trap, called as is.
//
// Thread safety: under the GIL; the library calls are thread-safe.
#pragma once

#include "py_ref.hpp"

namespace permafrost::python {

// Module functions (`module` is permafrost._core).
PyObject* py_memory(PyObject* module, PyObject* args);
PyObject* py_sharing_audit(PyObject* module, PyObject* args);
PyObject* py_private_pages(PyObject* module, PyObject* args);
PyObject* py_trim(PyObject* module, PyObject* unused);
PyObject* py_install_write_trap(PyObject* module, PyObject* unused);
PyObject* py_write_trap_installed(PyObject* module, PyObject* unused);

}  // namespace permafrost::python
