// permafrost for Python — freeze_native(): real CPython objects in a write-protected arena
// (the module functions; internal).
//
// Contract: register_native(module) adds the functions below to permafrost._core and runs the
// layout checks (native_layout.hpp). On an interpreter freeze_native() does not support, every
// function raises RuntimeError saying why (version, build, or the layout fact that failed), and
// so does every interpreter but the first to import permafrost (the copies hold that one's
// types, which live as long as the process: this state is process-wide, not module state).
//
//   _native_setup(dict_type, list_type, set_type)  the package's subclasses the copies get; each
//        must add no field to its base (same size, no __dict__, no weakref slot of its own)
//   _freeze_native(obj, name, huge_pages, test)  the frozen deep copy (native_build.hpp), after
//        the audit (native_audit.hpp), in a frozen arena whose write-trap reports name the
//        object at the offset; `test` (tests only): 1 leaves a stray object in the arena, 2
//        keeps an outside reference to an object of the copy, so the audit must refuse
//   _thaw_native(obj)  an ordinary mutable deep copy (dicts, lists, sets; tuples rebuilt only
//        when they hold one of those)
//   _native_arena(obj)  (name, address, size) of the frozen arena obj lives in; TypeError when
//        it lives in none
//   _native_unsupported()  why freeze_native() cannot run here, or ""
//   _range_sharing_audit(address, size, child, parent), _range_private_pages(address, size,
//        pid)  the sharing helpers of permafrost.__init__ over a byte range
//
// Thread safety: every function runs under the GIL. Frozen arenas, their block maps and the
// types registered live until the process exits: frozen objects point at them.
#pragma once

#include <Python.h>

namespace permafrost::python {

// Effects: adds the functions to `module` and runs the layout checks. Returns 0, or -1 with a
// Python error set.
int register_native(PyObject* module);

}  // namespace permafrost::python
