// permafrost for Python — the CPython layout facts freeze_native() relies on (internal).
//
// Contract: PF_NATIVE_SUPPORTED is 1 when this translation unit is compiled against a CPython
// whose objects freeze_native() can make immortal and write-protect: 3.12 or 3.13, the default
// (GIL) build. Everything else in this header exists only then. The public object structs
// (PyDictObject, PyListObject, PyTupleObject, PySetObject, PyASCIIObject...) come from the
// headers of the interpreter the module is built for; the one private struct read here — a
// dict's keys object, Include/internal/pycore_dict.h — is mirrored below. check_layout() verifies
// at import, on probe objects built by the running interpreter, every fact of this file and of
// docs/design.md's list (sizes, offsets, the immortal reference count, how CPython's own
// constructors lay out dicts and strs), and returns what does not hold.
//
// Thread safety: check_layout() runs under the GIL at import; the helpers only read.
#pragma once

#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <string>

#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED) && \
    SIZEOF_VOID_P == 8
#define PF_NATIVE_SUPPORTED 1
#else
#define PF_NATIVE_SUPPORTED 0
#endif

namespace permafrost::python::native {

// Why freeze_native() cannot run on this interpreter ("" when it can): the version and build,
// or the first layout fact that does not hold. Computed once, at import.
const std::string& unsupported_reason();

// Runs the checks (once) and stores the answer unsupported_reason() returns. Pre: GIL held.
void check_layout();

#if PF_NATIVE_SUPPORTED

// The GC header in front of every object of a type with Py_TPFLAGS_HAVE_GC (PyGC_Head,
// Include/internal/pycore_gc.h: two words). Checked: sys.getsizeof() - __sizeof__() of a list.
inline constexpr std::size_t gc_header_bytes = 16;

// CPython 3.12/3.13's struct _dictkeysobject (Include/internal/pycore_dict.h) up to its
// variable-size index array (dk_indices, at sizeof(dict_keys)); the entries follow the indices.
struct dict_keys {
  Py_ssize_t dk_refcnt;
  std::uint8_t dk_log2_size;
  std::uint8_t dk_log2_index_bytes;
  std::uint8_t dk_kind;  // 0 general (hash, key, value), 1 unicode (key, value), 2 split
  std::uint32_t dk_version;
  Py_ssize_t dk_usable;
  Py_ssize_t dk_nentries;
};
static_assert(sizeof(dict_keys) == 32);
inline constexpr std::uint8_t dict_keys_general = 0;
inline constexpr std::uint8_t dict_keys_unicode = 1;

struct dict_entry_general {
  Py_hash_t hash;
  PyObject* key;
  PyObject* value;
};
struct dict_entry_unicode {
  PyObject* key;
  PyObject* value;
};

inline dict_keys* keys_of(PyObject* dict) {
  return reinterpret_cast<dict_keys*>(reinterpret_cast<PyDictObject*>(dict)->ma_keys);
}
inline char* entries_of(dict_keys* k) {
  return reinterpret_cast<char*>(k) + sizeof(dict_keys) +
         (std::size_t{1} << k->dk_log2_index_bytes);
}

// Calls f(key, value) for every entry of a combined dict table, in insertion order, reading the
// table directly (no reference taken, no Python code run).
template <class F>
void for_each_entry(PyObject* dict, F&& f) {
  dict_keys* k = keys_of(dict);
  char* e = entries_of(k);
  for (Py_ssize_t i = 0; i < k->dk_nentries; ++i) {
    PyObject* key;
    PyObject* value;
    if (k->dk_kind == dict_keys_general) {
      const auto& ent = reinterpret_cast<dict_entry_general*>(e)[i];
      key = ent.key;
      value = ent.value;
    } else {
      const auto& ent = reinterpret_cast<dict_entry_unicode*>(e)[i];
      key = ent.key;
      value = ent.value;
    }
    if (key != nullptr && value != nullptr) f(key, value);
  }
}

// The separately allocated UTF-8 buffer of a str, or nullptr (compact ASCII strs use their own
// data as UTF-8; the others cache it in a block of its own once asked for it).
inline void* utf8_buffer_of(PyObject* s) {
  if (PyUnicode_IS_COMPACT_ASCII(s)) return nullptr;
  return reinterpret_cast<PyCompactUnicodeObject*>(s)->utf8;
}

inline bool is_immortal(PyObject* o) { return _Py_IsImmortal(o); }
inline void make_immortal(PyObject* o) { o->ob_refcnt = _Py_IMMORTAL_REFCNT; }
// Marks an immortal str interned without putting it in the interpreter's interned table: every
// interning (sys.intern, setattr, namedtuple, compile's names...) then returns it as it is instead
// of writing its state (Objects/unicodeobject.c: the interning functions return at once for a str
// already marked). Only for an immortal str: an interned one that dies aborts the interpreter.
inline void mark_interned(PyObject* s) {
  reinterpret_cast<PyASCIIObject*>(s)->state.interned = SSTATE_INTERNED_IMMORTAL;
}

#endif  // PF_NATIVE_SUPPORTED

}  // namespace permafrost::python::native
