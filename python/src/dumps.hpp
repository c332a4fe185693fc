// permafrost for Python — JSON text straight from frozen bytes: permafrost.dumps.
//
// Contract: dumps(obj) returns the UTF-8 bytes of
// json.dumps(thawed, ensure_ascii=False, separators=(",", ":")) — with indent, json.dumps's
// (",", ": ") — where `thawed` is obj with every view replaced by its thaw(). Frozen values are
// written from their bytes (format.hpp) without a Python object being made for them; ordinary
// values (dict, list, tuple, str, int, float, bool, None and their subclasses, as json takes
// them) may hold views anywhere. The differences from json, all documented in docs/python.md:
// a lone surrogate is written as a \udXXX escape (UTF-8 cannot hold it; json.loads reads it
// back; _encode's for_str writes it raw); nesting raises RecursionError where json's does (the
// interpreter's recursion check) and at 10,000 levels at most; errors name the path of the value
// that failed.
//
// Thread safety: runs under the GIL; frozen bytes are immutable.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace permafrost::python {

// permafrost.dumps(obj, *, indent=None, sort_keys=False, default=None) -> bytes.
// Effects: none beyond the bytes returned (and whatever `default` does). Throws (sets): TypeError
// naming an unsupported type or key and its path; ValueError for a circular reference;
// RecursionError past the recursion limit (10,000 levels at most); whatever `default` raises.
PyObject* py_dumps(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);

// _core._encode(obj, indent, sort_keys, default, ensure_ascii, item_separator, key_separator,
// allow_nan, skipkeys, check_circular, for_str) -> bytes: every json.JSONEncoder option, for
// permafrost.JSONEncoder and the Flask provider. indent: None, an int or a str; default: None or
// a callable. for_str (with ensure_ascii false): a lone surrogate is written raw, as
// surrogatepass encodes it, for the caller to decode the bytes with surrogatepass into json's
// str; otherwise the bytes are UTF-8, a lone surrogate escaped.
PyObject* py_encode(PyObject* module, PyObject* const* args, Py_ssize_t nargs);

// _core._jsonable(o): what permafrost.JSONEncoder.default() gives for a value dumps() writes
// itself beyond json's kinds: the str of its JSON text for a datetime, date, time, timedelta,
// Decimal or UUID, an Enum member's value. Throws (sets): TypeError as json.JSONEncoder.default.
PyObject* py_jsonable(PyObject* module, PyObject* o);

}  // namespace permafrost::python
