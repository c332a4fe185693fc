// permafrost for Python — the layout checks run at import (contract in native_layout.hpp).
#include "native_layout.hpp"

#include <cstdio>

namespace permafrost::python::native {

namespace {

std::string g_reason = "the layout checks have not run";

std::string running_version() {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%d.%d.%d", static_cast<int>((Py_Version >> 24) & 0xff),
                static_cast<int>((Py_Version >> 16) & 0xff),
                static_cast<int>((Py_Version >> 8) & 0xff));
  return buf;
}

#if PF_NATIVE_SUPPORTED

// A new reference released on scope exit.
struct owned {
  PyObject* p;
  explicit owned(PyObject* o) : p(o) {}
  owned(const owned&) = delete;
  ~owned() { Py_XDECREF(p); }
};

// The first fact that does not hold, or "". Each check says what it protects.
std::string first_broken_fact() {
  // The module is built per interpreter; a patch release keeps the layout, a minor one does not.
  if (((Py_Version >> 16) & 0xffff) != ((PY_VERSION_HEX >> 16) & 0xffff))
    return "built for a different CPython minor version";
  // PEP 683 (Include/object.h): an immortal object's count is _Py_IMMORTAL_REFCNT, and
  // Py_INCREF/Py_DECREF leave it alone.
  Py_INCREF(Py_None);
  const bool none_kept = Py_None->ob_refcnt == _Py_IMMORTAL_REFCNT;
  Py_DECREF(Py_None);
  if (!none_kept || !_Py_IsImmortal(Py_None) || Py_None->ob_refcnt != _Py_IMMORTAL_REFCNT)
    return "None's reference count is not _Py_IMMORTAL_REFCNT or Py_INCREF changes it";
  {
    owned probe(PyList_New(0));
    if (!probe.p) return "cannot make a probe list";
    make_immortal(probe.p);
    Py_INCREF(probe.p);
    Py_DECREF(probe.p);
    const bool kept = probe.p->ob_refcnt == _Py_IMMORTAL_REFCNT && _Py_IsImmortal(probe.p);
    probe.p->ob_refcnt = 1;  // mortal again, freed by owned
    if (!kept) return "an object given _Py_IMMORTAL_REFCNT does not stay immortal";
  }
  // The GC header in front of GC objects (Include/internal/pycore_gc.h, PyGC_Head).
  {
    owned sys(PyImport_ImportModule("sys"));
    owned l(PyList_New(0));
    owned size(sys.p && l.p ? PyObject_CallMethod(sys.p, "getsizeof", "O", l.p) : nullptr);
    owned inner(l.p ? PyObject_CallMethod(l.p, "__sizeof__", nullptr) : nullptr);
    if (!size.p || !inner.p) return "cannot measure the GC header";
    if (PyLong_AsSsize_t(size.p) - PyLong_AsSsize_t(inner.p) !=
        static_cast<Py_ssize_t>(gc_header_bytes))
      return "the GC header is not 16 bytes";
  }
  // A dict's keys table (Include/internal/pycore_dict.h): str keys inserted one by one into
  // PyDict_New() make a str-keyed table whose entries are (key, value) pairs after 1-byte
  // indices; other keys make a general one of (hash, key, value).
  {
    owned d(PyDict_New());
    owned a(PyUnicode_FromString("permafrost-a"));
    owned b(PyUnicode_FromString("permafrost-b"));
    owned one(PyLong_FromLong(1000001));
    owned two(PyLong_FromLong(1000002));
    if (!d.p || !a.p || !b.p || !one.p || !two.p || PyDict_SetItem(d.p, a.p, one.p) < 0 ||
        PyDict_SetItem(d.p, b.p, two.p) < 0)
      return "cannot make a probe dict";
    dict_keys* k = keys_of(d.p);
    auto* e = reinterpret_cast<dict_entry_unicode*>(entries_of(k));
    if (k->dk_refcnt != 1 || k->dk_kind != dict_keys_unicode || k->dk_log2_size != 3 ||
        k->dk_log2_index_bytes != 3 || k->dk_nentries != 2 || k->dk_usable != 3 ||
        e[0].key != a.p || e[0].value != one.p || e[1].key != b.p || e[1].value != two.p)
      return "a str-keyed dict's keys table does not have the layout of 3.12/3.13";
    owned g(PyDict_New());
    if (!g.p || PyDict_SetItem(g.p, one.p, a.p) < 0) return "cannot make a probe dict";
    dict_keys* gk = keys_of(g.p);
    auto* ge = reinterpret_cast<dict_entry_general*>(entries_of(gk));
    if (gk->dk_kind != dict_keys_general || gk->dk_nentries != 1 ||
        ge[0].hash != PyObject_Hash(one.p) || ge[0].key != one.p || ge[0].value != a.p)
      return "a general dict's keys table does not have the layout of 3.12/3.13";
    int seen = 0;
    for_each_entry(d.p, [&](PyObject* key, PyObject*) { seen += key == a.p || key == b.p; });
    if (seen != 2) return "cannot walk a dict's entries";
    // Growing by inserts keeps the str-keyed kind (what lookups take the fast path on).
    for (int i = 0; i < 100; ++i) {
      owned key(PyUnicode_FromFormat("permafrost-%d", i));
      if (!key.p || PyDict_SetItem(d.p, key.p, Py_None) < 0) return "cannot grow a probe dict";
    }
    if (keys_of(d.p)->dk_kind != dict_keys_unicode)
      return "inserting str keys does not keep a str-keyed table";
  }
  // A str caches its hash in PyASCIIObject.hash and its UTF-8 form in
  // PyCompactUnicodeObject.utf8, a block of its own (Objects/unicodeobject.c).
  {
    owned s(PyUnicode_FromString("permafrost-\xc3\xa9t\xc3\xa9"));
    if (!s.p) return "cannot make a probe str";
    const Py_hash_t h = PyObject_Hash(s.p);
    if (reinterpret_cast<PyASCIIObject*>(s.p)->hash != h)
      return "a str does not cache its hash in PyASCIIObject.hash";
    const char* utf8 = PyUnicode_AsUTF8AndSize(s.p, nullptr);
    if (!utf8 || utf8_buffer_of(s.p) != utf8 || utf8 == PyUnicode_DATA(s.p))
      return "a str does not cache its UTF-8 form in a block of its own";
  }
  // Interning returns a str already marked interned as it is and writes nothing
  // (mark_interned): without it, sys.intern() of a frozen str writes the str.
  {
    owned s(PyUnicode_FromString("permafrost-interning-probe-\xc3\xa9"));
    if (!s.p) return "cannot make a probe str";
    make_immortal(s.p);
    mark_interned(s.p);
    PyObject* p = s.p;
    PyUnicode_InternInPlace(&p);
    const bool kept = p == s.p && PyUnicode_CHECK_INTERNED(s.p) == SSTATE_INTERNED_IMMORTAL &&
                      _Py_IsImmortal(s.p);
    reinterpret_cast<PyASCIIObject*>(s.p)->state.interned = SSTATE_NOT_INTERNED;  // freed by owned
    s.p->ob_refcnt = 1;
    if (!kept) return "interning a str marked interned does not leave it as it is";
  }
  // A frozenset caches its hash in PySetObject.hash; small sets use the inline table.
  {
    owned fs(PyFrozenSet_New(nullptr));
    owned one(PyLong_FromLong(1000001));
    if (!fs.p || !one.p || PySet_Add(fs.p, one.p) < 0) return "cannot make a probe frozenset";
    const Py_hash_t h = PyObject_Hash(fs.p);
    auto* so = reinterpret_cast<PySetObject*>(fs.p);
    if (so->hash != h || so->table != so->smalltable || so->used != 1)
      return "a frozenset does not have the layout of 3.12/3.13";
  }
  // bytes cache their hash in ob_shash (deprecated, still written by bytes_hash).
  {
    owned b(PyBytes_FromString("permafrost-bytes"));
    if (!b.p) return "cannot make probe bytes";
    const Py_hash_t h = PyObject_Hash(b.p);
    _Py_COMP_DIAG_PUSH
        _Py_COMP_DIAG_IGNORE_DEPR_DECLS if (reinterpret_cast<PyBytesObject*>(b.p)->ob_shash !=
                                            h) return "bytes do not cache their hash in ob_shash";
    _Py_COMP_DIAG_POP
  }
  return {};
}

#endif  // PF_NATIVE_SUPPORTED

}  // namespace

const std::string& unsupported_reason() { return g_reason; }

void check_layout() {
  static bool done = false;
  if (done) return;
  done = true;
  const std::string running = "this is CPython " + running_version();
#if PF_NATIVE_SUPPORTED
  g_reason = first_broken_fact();
  if (!g_reason.empty())
    g_reason = "permafrost.freeze_native() cannot run here (" + running +
               "): a CPython layout fact it relies on does not hold: " + g_reason;
  if (PyErr_Occurred()) PyErr_Clear();
#else
  const char* why =
#if PY_VERSION_HEX < 0x030C0000
      " (3.11 and older have no immortal objects: reading writes every reference count)";
#elif defined(Py_GIL_DISABLED)
      ", a free-threaded build (its reference counts and GC work differently; not audited)";
#else
      " (not audited: each version's object layout is checked before it is supported)";
#endif
  g_reason =
      "permafrost.freeze_native() needs CPython 3.12 or 3.13, the default (GIL) build: " + running +
      why + "; permafrost.freeze() works on every version";
#endif
}

}  // namespace permafrost::python::native
