// permafrost for Python — owned references and errors across the C++/CPython boundary.
//
// Contract: `ref` owns one strong reference and releases it on scope exit, so no early return
// leaks one. C++ code below an entry point reports a Python error by setting it and throwing
// py_error; PF_ENTRY_BEGIN/PF_ENTRY_END around an entry point's body turn py_error, and any other
// C++ exception (bad_alloc -> MemoryError, with its message when it has one; the library's errors
// -> OSError), into a NULL return
// with the Python exception set, so no C++ exception crosses into the interpreter.
//
// Thread safety: as the C API: call with the GIL held.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <system_error>

namespace permafrost::python {

// Thrown after a Python exception has been set; converted to a NULL return at the boundary.
struct py_error {};

// A strong reference released on scope exit.
struct ref {
  PyObject* p = nullptr;
  ref() = default;
  explicit ref(PyObject* o) : p(o) {}
  ref(ref&& o) noexcept : p(o.p) { o.p = nullptr; }
  ref(const ref&) = delete;
  ref& operator=(const ref&) = delete;
  ref& operator=(ref&& o) noexcept {
    PyObject* old = p;
    p = o.p;
    o.p = nullptr;
    Py_XDECREF(old);
    return *this;
  }
  ~ref() { Py_XDECREF(p); }
  PyObject* get() const { return p; }
  PyObject* release() {
    PyObject* o = p;
    p = nullptr;
    return o;
  }
};

// For an OrderedDict o: 1 when it iterates in the order PyDict_Next walks the dict underneath
// (move_to_end() changes only the former), 0 when not, -1 with an exception set when its
// iteration raised. May run Python code (a key's __hash__, a subclass's __iter__).
inline int odict_in_dict_order(PyObject* o) {
  ref it(PyObject_GetIter(o));
  if (!it.p) return -1;
  Py_ssize_t pos = 0;
  PyObject *k, *v;
  while (PyDict_Next(o, &pos, &k, &v)) {  // k is only compared, never read
    ref next(PyIter_Next(it.p));
    if (!next.p) return PyErr_Occurred() ? -1 : 0;
    if (next.p != k) return 0;
  }
  ref extra(PyIter_Next(it.p));
  if (extra.p) return 0;
  return PyErr_Occurred() ? -1 : 1;
}

// Returns o; throws py_error when o is NULL (the call that made it set the exception).
inline PyObject* check(PyObject* o) {
  if (!o) throw py_error{};
  return o;
}

// A PyArg_ParseTuple "O&" converter for an arena's `name` argument (const char** out): None
// leaves *out as it was; a str sets it to the str's UTF-8, valid while the argument is. A str with
// a lone surrogate or a NUL raises ValueError naming it, where "z" raised a bare
// UnicodeEncodeError that did not say which argument was wrong.
inline int arena_name_arg(PyObject* o, void* out) {
  if (o == Py_None) return 1;
  if (!PyUnicode_Check(o)) {
    PyErr_Format(PyExc_TypeError, "name must be a str or None, not %.100s", Py_TYPE(o)->tp_name);
    return 0;
  }
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o, &n);
  if (!s || std::strlen(s) != static_cast<std::size_t>(n)) {
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError,
                 "name %R: an arena's name must be text without NUL characters or lone surrogates",
                 o);
    return 0;
  }
  *static_cast<const char**>(out) = s;
  return 1;
}

// A type's short name: "datetime", not "datetime.datetime".
inline std::string short_type_name(PyObject* o) {
  const char* n = Py_TYPE(o)->tp_name;
  const char* dot = std::strrchr(n, '.');
  return dot ? dot + 1 : n;
}

// Sets an exception of type with the library's message text. The text may name a path that is
// not UTF-8 (a Linux file name is any bytes): PyErr_SetString decodes it strictly, and its
// UnicodeDecodeError left a bare OSError() without a word of the message. Undecodable bytes
// become lone surrogates, as os.fsdecode() gives such a path to Python.
inline void set_error_text(PyObject* type, const char* text) {
  PyObject* message =
      PyUnicode_DecodeUTF8(text, static_cast<Py_ssize_t>(std::strlen(text)), "surrogateescape");
  if (!message) return;  // MemoryError
  PyErr_SetObject(type, message);
  Py_DECREF(message);
}

// A /proc read that failed (permafrost::proc_error): ProcessLookupError when the process is gone
// (ESRCH, ENOENT), PermissionError for EACCES or EPERM (a process this one may not read was a
// ProcessLookupError, as if it did not exist), else OSError (a /proc read fails with no other
// errno that has a subclass of its own but EINTR, which the library retries).
// The exception's text is the library's message alone (it names the errno already); its errno
// attribute is set.
inline void set_proc_error(const std::system_error& e) {
  const int err = e.code().value();
  PyObject* type = err == ESRCH || err == ENOENT   ? PyExc_ProcessLookupError
                   : err == EACCES || err == EPERM ? PyExc_PermissionError
                                                   : PyExc_OSError;
  PyObject* message = PyUnicode_DecodeUTF8(e.what(), static_cast<Py_ssize_t>(std::strlen(e.what())),
                                           "surrogateescape");
  if (!message) return;
  PyObject* exc = PyObject_CallOneArg(type, message);
  Py_DECREF(message);
  if (!exc) return;
  PyObject* number = PyLong_FromLong(err);
  if (number && PyObject_SetAttrString(exc, "errno", number) == 0) PyErr_SetObject(type, exc);
  Py_XDECREF(number);
  Py_DECREF(exc);
}

// Converts a C++ exception escaping an entry point into a Python one: a std::bad_alloc into
// MemoryError, with the library's message when it has one (arena_limit_error names the limit a
// new arena hit: "all 1024 arena slots are in use ..."), else saying what refused (a bare one,
// from a build's buffers, was an empty MemoryError); anything else into OSError.
inline void set_python_error(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) {
    if (std::strcmp(e.what(), std::bad_alloc().what()) == 0)
      PyErr_SetString(PyExc_MemoryError,
                      "permafrost: out of memory: the kernel refused memory (no memory left, a "
                      "memory cgroup limit, or ulimit -v)");
    else set_error_text(PyExc_MemoryError, e.what());
  } else {
    set_error_text(PyExc_OSError, e.what());
  }
}

}  // namespace permafrost::python

#define PF_ENTRY_BEGIN try {
#define PF_ENTRY_END                                                \
  }                                                                 \
  catch (const permafrost::python::py_error&) {                     \
    return nullptr;                                                 \
  }                                                                 \
  catch (const std::exception& e) {                                 \
    if (!PyErr_Occurred()) permafrost::python::set_python_error(e); \
    return nullptr;                                                 \
  }
