// permafrost for Python — key hashing and lookup in frozen tables (see keys.hpp).
#include "keys.hpp"

#include <cmath>
#include <cstring>

#include "permafrost/hash.hpp"
#include "reading.hpp"
#include "store.hpp"
#include "values.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

constexpr std::uint64_t hash_none = 0x6e6f6e65ull;     // "none"
constexpr std::uint64_t hash_nan = 0x6e616e6e616eull;  // "nannan"
constexpr std::uint64_t hash_bytes_seed = 0xb17e5ull;

}  // namespace

bool utf8_of(PyObject* s, std::string_view& out, ref& holder) {
#if PY_VERSION_HEX < 0x030C0000
  if (PyUnicode_READY(s) < 0) return false;  // legacy (wstr) strings; all strs are ready on 3.12+
#endif
  if (PyUnicode_IS_ASCII(s)) {
    out = {static_cast<const char*>(PyUnicode_DATA(s)),
           static_cast<std::size_t>(PyUnicode_GET_LENGTH(s))};
    return true;
  }
  Py_ssize_t n = 0;
  if (const char* p = PyUnicode_AsUTF8AndSize(s, &n)) {
    out = {p, static_cast<std::size_t>(n)};
    return true;
  }
  if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return false;
  PyErr_Clear();
  holder.p = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
  if (!holder.get()) return false;
  out = {PyBytes_AS_STRING(holder.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(holder.get()))};
  return true;
}

bool key_hash(const module_state& state, PyObject* o, std::uint64_t& h, std::size_t depth,
              key_use use) {
  namespace d = permafrost::detail;
  if (depth > max_key_depth) {  // no C stack overflow on absurdly nested tuple keys
    PyErr_SetString(PyExc_TypeError, "key nested deeper than 5000 tuples or frozensets");
    return false;
  }
  if (PyUnicode_Check(o)) {
    std::string_view s;
    ref holder;
    if (!utf8_of(o, s, holder)) return false;
    h = d::hash_bytes(s.data(), s.size());
    return true;
  }
  if (o == Py_None) {
    h = hash_none;
    return true;
  }
  if (PyFloat_Check(o) && std::isnan(PyFloat_AS_DOUBLE(o))) {
    // CPython hashes NaN by identity; no two NaNs are equal keys anyway. The writer files a key
    // holding a NaN under a hash spread by its entry (freeze.cpp, filed_hash): this one only
    // starts a lookup's probe, which finds no NaN key equal.
    h = hash_nan;
    return true;
  }
  if (PyLong_Check(o) || PyFloat_Check(o)) {  // bool is an int; CPython's numeric hash is seedless
    // The base type's hash: a subclass's __hash__ (user code) must not run during freeze().
    const Py_hash_t ph = PyLong_Check(o) ? PyLong_Type.tp_hash(o) : PyFloat_Type.tp_hash(o);
    if (ph == -1 && PyErr_Occurred()) return false;
    h = d::hash_word(static_cast<std::uint64_t>(ph));
    return true;
  }
  if (PyBytes_Check(o)) {
    h = d::hash_bytes(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o))) ^
        hash_bytes_seed;
    return true;
  }
  if (PyTuple_Check(o)) {
    const Py_ssize_t n = PyTuple_GET_SIZE(o);
    std::uint64_t acc = static_cast<std::uint64_t>(n) + 0x7475706cull;
    for (Py_ssize_t i = 0; i < n; ++i) {
      std::uint64_t eh;
      if (!stack_room_at(depth)) return false;  // a small thread stack
      if (!key_hash(state, PyTuple_GET_ITEM(o, i), eh, depth + 1, use)) return false;
      acc = d::hash_word(acc + eh);
    }
    h = acc;
    return true;
  }
  if (PyFrozenSet_Check(o)) {
    std::uint64_t acc = 0;
    ref it(PyFrozenSet_Type.tp_iter(o));  // the base type's iterator: no user __iter__
    if (!it.get()) return false;
    while (PyObject* e = PyIter_Next(it.get())) {
      if (!stack_room_at(depth)) {
        Py_DECREF(e);
        return false;
      }
      std::uint64_t eh;
      const bool ok = key_hash(state, e, eh, depth + 1, use);
      Py_DECREF(e);
      if (!ok) return false;
      acc += d::hash_word(eh);
    }
    if (PyErr_Occurred()) return false;
    h = d::hash_word(acc ^ static_cast<std::uint64_t>(PySet_GET_SIZE(o)));
    return true;
  }
  if (Py_TYPE(o) == state.set_type) {
    // A FrozenSet equals the frozenset of its elements: it hashes as that frozenset.
    const reading r(o);
    if (!r) return false;
    if (r.node()->kind != kind_frozenset && use == key_use::store) {
      // Stored as the set it views, it would thaw unhashable. freeze() stores a key, or a
      // tuple key's item, as its frozenset instead (storable_key); not an element of a
      // frozenset key: building that frozenset anew would run its elements' __hash__.
      PyErr_SetString(PyExc_TypeError,
                      "a FrozenSet frozen from a set cannot be stored in a frozenset key (it would "
                      "thaw as a set, which is unhashable): store frozenset(view) instead");
      return false;
    }
    ref thawed(thaw_word(state, r.base, r.off));
    if (!thawed.get()) return false;
    ref frozen(PyFrozenSet_New(thawed.get()));
    return frozen.get() && key_hash(state, frozen.get(), h, depth, use);
  }
  if (use == key_use::lookup && PyMemoryView_Check(o)) {
    // A hashable memoryview (read-only, of bytes) hashes and compares as the bytes it shows, so
    // a dict finds the bytes key with it: hashed as those bytes, it finds the same entry here.
    if (PyObject_Hash(o) == -1) return false;  // ValueError when writable, as a dict raises
    ref bytes(PyBytes_FromObject(o));
    return bytes.get() && key_hash(state, bytes.get(), h, depth, use);
  }
  if (use == key_use::lookup) {
    const Py_hash_t ph = PyObject_Hash(o);  // user code may run; TypeError when unhashable
    if (ph == -1 && PyErr_Occurred()) return false;
    h = permafrost::detail::hash_word(static_cast<std::uint64_t>(ph));
    return true;
  }
  PyErr_Format(PyExc_TypeError, "unhashable or unsupported key type: '%.200s'",
               Py_TYPE(o)->tp_name);
  return false;
}

PyObject* storable_key(const module_state& state, PyObject* o, std::size_t depth) {
  if (depth > max_key_depth) return Py_NewRef(o);  // key_hash refuses it, naming the depth
  if (Py_TYPE(o) == state.set_type) {
    const reading r(o);
    if (!r) return nullptr;
    if (r.node()->kind == kind_frozenset) return Py_NewRef(o);  // stored as it is
    ref thawed(thaw_word(state, r.base, r.off));
    return thawed.get() ? PyFrozenSet_New(thawed.get()) : nullptr;
  }
  if (!PyTuple_Check(o)) return Py_NewRef(o);
  if (!stack_room_at(depth)) return nullptr;  // a small thread stack
  // A copy only from the first item that changes: most keys hold no view.
  const Py_ssize_t n = PyTuple_GET_SIZE(o);
  ref copy;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyTuple_GET_ITEM(o, i);
    if (!copy.get() && !PyTuple_Check(item) && Py_TYPE(item) != state.set_type)
      continue;  // as it is (the usual tuple key, without a call per item)
    ref stored(storable_key(state, item, depth + 1));
    if (!stored.get()) return nullptr;
    if (!copy.get() && stored.get() == item) continue;
    if (!copy.get()) {
      copy.p = PyTuple_New(n);
      if (!copy.get()) return nullptr;
      for (Py_ssize_t j = 0; j < i; ++j)
        PyTuple_SET_ITEM(copy.get(), j, Py_NewRef(PyTuple_GET_ITEM(o, j)));
    }
    PyTuple_SET_ITEM(copy.get(), i, stored.release());
  }
  return copy.get() ? copy.release() : Py_NewRef(o);
}

std::int64_t table_find(store_object* store, const char* base, const table_header* t,
                        PyObject* key) {
  const key_words keys = table_keys(t);
  if (PyUnicode_Check(key)) {
    std::string_view s;
    ref holder;
    if (!utf8_of(key, s, holder)) return entry_failed;
    const std::uint64_t h = permafrost::detail::hash_bytes(s.data(), s.size());
    if (s.size() <= max_short_str && !holder.get()) {  // stored in the key word itself
      const word want = short_str_word(s.data(), s.size());
      return find_entry(t, h, [&](std::uint32_t i) { return int{keys[i] == want}; });
    }
    // A packed str, or a str node (every str of a v1 graph, long strs, lone surrogates).
    return find_entry(t, h, [&](std::uint32_t i) {
      std::string_view stored;
      return int{stored_str(base, keys[i], stored) && stored == s};
    });
  }
  std::uint64_t h;
  if (!key_hash(*store->state, key, h, 0, key_use::lookup)) return entry_failed;
  return find_entry(t, h, [&](std::uint32_t i) {
    const word kw = keys[i];
    std::string_view stored;
    if ((kw & tag_mask) == tag_short_str || stored_str(base, kw, stored))
      return 0;  // a str never equals a non-str key
    ref candidate(materialise(store, base, kw));
    if (!candidate.get()) return -1;
    const int eq = PyObject_RichCompareBool(candidate.get(), key, Py_EQ);
    return eq < 0 ? -1 : eq;
  });
}

}  // namespace permafrost::python
