// permafrost for Python — the deep copy (contract in native_build.hpp).
#include "native_build.hpp"
#include "permafrost/memstat.hpp"
#include "py_ref.hpp"
#include "views.hpp"

#if PF_NATIVE_SUPPORTED

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#if PY_VERSION_HEX >= 0x030D0000
// Exported by libpython 3.13 (PyAPI_FUNC) but declared only in its internal headers
// (Include/internal/pycore_unicodeobject.h, pycore_setobject.h).
extern "C" void _PyUnicode_InternImmortal(PyInterpreterState* interp, PyObject** p);
extern "C" int _PySet_NextEntry(PyObject* set, Py_ssize_t* pos, PyObject** key, Py_hash_t* hash);
#endif

namespace permafrost::python::native {

namespace {

// Calls make() until it returns an object (see builder::checked).
template <class Make>
PyObject* made_in_region(Make&& make) {
  for (;;)
    if (PyObject* o = make()) return o;
}

constexpr std::size_t max_depth = 5000;
// Stack the copy keeps free (see builder::copy_container).
constexpr std::size_t min_stack_left = std::size_t{256} << 10;
// Items of CPython's smallest dict table (USABLE_FRACTION(PyDict_MINSIZE)): larger dicts would
// grow while built by inserts.
constexpr Py_ssize_t small_dict = 5;
constexpr std::size_t signal_check_every = 65536;

// "__x__": the shape of a special method's name.
bool is_dunder(PyObject* s) {
  const Py_ssize_t n = PyUnicode_GET_LENGTH(s);
  return n > 4 && PyUnicode_READ_CHAR(s, 0) == '_' && PyUnicode_READ_CHAR(s, 1) == '_' &&
         PyUnicode_READ_CHAR(s, n - 2) == '_' && PyUnicode_READ_CHAR(s, n - 1) == '_';
}

std::string short_type_name(PyObject* o) {
  const char* n = Py_TYPE(o)->tp_name;
  const char* dot = std::strrchr(n, '.');
  return dot ? dot + 1 : n;
}

}  // namespace

bool reusable_as_is(PyObject* o, const native_types& t) {
  if (!is_immortal(o)) return false;
  PyTypeObject* type = Py_TYPE(o);
  return o == Py_None || type == &PyBool_Type || type == &PyLong_Type || type == &PyFloat_Type ||
         type == &PyUnicode_Type || type == &PyBytes_Type || type == &PyTuple_Type ||
         type == &PyFrozenSet_Type || type == t.dict || type == t.list || type == t.set;
}

// Pushes a path step for the life of the object, holding its key.
class builder::path_step {
 public:
  path_step(builder& b, value_path_kind kind, PyObject* key, Py_ssize_t index) : b_(b) {
    Py_XINCREF(key);
    b_.path_.push_back({kind, key, index});
  }
  ~path_step() {
    Py_XDECREF(b_.path_.back().key);
    b_.path_.pop_back();
  }
  path_step(const path_step&) = delete;
  path_step& operator=(const path_step&) = delete;

 private:
  builder& b_;
};

// A strong reference to a source object. Released in pass mode when it is the last one (a signal
// handler changed the source meanwhile): the object's finalizer then runs as ordinary code, and
// what it makes or keeps is not allocated in the region.
class builder::source_ref {
 public:
  source_ref(builder& b, PyObject* o) noexcept : b_(b), p(Py_NewRef(o)) {}
  ~source_ref() {
    if (Py_REFCNT(p) > 1) {
      Py_DECREF(p);
      return;
    }
    pass_through pass(b_.hooks_);
    Py_DECREF(p);
  }
  source_ref(const source_ref&) = delete;
  source_ref& operator=(const source_ref&) = delete;

 private:
  builder& b_;

 public:
  PyObject* const p;
};

builder::~builder() {
  for (PyObject* o : rejected_) Py_DECREF(o);
  Py_XDECREF(fromkeys_);
}

PyObject* builder::copy(PyObject* obj) { return copy_value(obj, false, false); }

void builder::count_object() {
  if (++objects_ % signal_check_every != 0) return;
  pass_through pass(hooks_);
  if (PyErr_CheckSignals() < 0) throw build_error{nullptr, {}};
  // A handler may have freed objects of its own onto the free lists: take them off again.
  drain_free_lists(held_, tuple_sizes_);
}

// A constructor's result, or nullptr when a free list handed back an object allocated outside the
// region: that one is set aside (held, so the list cannot hand it out again) and the caller makes
// another. Immortal results are CPython's singletons (the empty tuple, one-character strs).
PyObject* builder::checked(PyObject* made) {
  if (made == nullptr) throw std::bad_alloc();
  if (!region_.holds(made) && !is_immortal(made)) {
    rejected_.push_back(made);
    return nullptr;
  }
  return made;
}

void builder::switch_type(PyObject* o, PyTypeObject* t) {
  // The subclasses add no fields (checked when they are registered), so only the type pointer
  // changes; instances of a heap type hold a reference to it.
  Py_INCREF(t);
  Py_SET_TYPE(o, t);
}

PyObject* builder::copy_value(PyObject* o, bool key, bool held) {
  if (reusable_as_is(o, types_)) return Py_NewRef(o);
  // Referenced more than once by the source (not counting the caller's own hold on it): it may
  // be reached again, so its copy is remembered. json.loads reuses one str per key name.
  const bool shared = Py_REFCNT(o) - (held ? 1 : 0) > 1;
  if (PyTuple_Check(o) || PyList_Check(o) || PyDict_Check(o) || PyAnySet_Check(o))
    return copy_container(o, shared);
  if (shared) {
    if (auto it = memo_.find(o); it != memo_.end()) {
      // A key wants the interned copy; the value's copy may not be one.
      if (!key || !PyUnicode_Check(o) || PyUnicode_CHECK_INTERNED(it->second))
        return Py_NewRef(it->second);
    }
  }
  PyObject* c = copy_scalar(o, key);
  if (shared) memo_[o] = c;  // borrowed: held by whatever holds the copy
  return c;
}

PyObject* builder::copy_scalar(PyObject* o, bool key) {
  count_object();
  if (PyUnicode_Check(o)) return copy_str(o, key);
  if (PyLong_Check(o)) {
    return made_in_region(
        [&] { return checked(_PyLong_Copy(reinterpret_cast<PyLongObject*>(o))); });
  }
  if (PyFloat_Check(o))
    return made_in_region([&] { return checked(PyFloat_FromDouble(PyFloat_AS_DOUBLE(o))); });
  if (PyBytes_Check(o)) {
    owned c(made_in_region([&] {
      return checked(PyBytes_FromStringAndSize(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o)));
    }));
    if (PyObject_Hash(c.p) == -1) throw std::bad_alloc();  // caches ob_shash
    return c.release();
  }
  if (is_view(views_, o)) {
    fail(PyExc_TypeError, short_type_name(o) +
                              " is a permafrost.freeze() view, which freeze_native() does not "
                              "copy: pass view.thaw() (its plain dicts and lists) instead");
  }
  fail(PyExc_TypeError, short_type_name(o) + " is not supported");
}

// An exact str equal to o, allocated wherever the hooks' mode says, with the caches CPython
// would otherwise fill on first use (Objects/unicodeobject.c: unicode_hash, unicode_fill_utf8).
PyObject* builder::new_str(PyObject* o) {
  const Py_ssize_t n = PyUnicode_GET_LENGTH(o);
  const int kind = PyUnicode_KIND(o);
  const Py_UCS4 max_char = PyUnicode_MAX_CHAR_VALUE(o);
  owned c(hooks_.mode() == hook_mode::pass ? PyUnicode_New(n, max_char) : made_in_region([&] {
    return checked(PyUnicode_New(n, max_char));
  }));
  if (c.p == nullptr) throw std::bad_alloc();
  std::memcpy(PyUnicode_DATA(c.p), PyUnicode_DATA(o), static_cast<std::size_t>(n) * kind);
  if (PyObject_Hash(c.p) == -1) throw std::bad_alloc();
  if (!PyUnicode_IS_ASCII(c.p) && PyUnicode_AsUTF8AndSize(c.p, nullptr) == nullptr)
    PyErr_Clear();  // lone surrogates have no UTF-8 form: nothing is cached, nothing written
  return c.release();
}

PyObject* builder::copy_str(PyObject* o, bool intern) {
  if (PyUnicode_GET_LENGTH(o) == 1 && PyUnicode_MAX_CHAR_VALUE(o) <= 0xff) {
    // CPython's own one-character strs (immortal singletons).
    PyObject* c = PyUnicode_FromOrdinal(PyUnicode_READ_CHAR(o, 0));
    if (c == nullptr) throw std::bad_alloc();
    return c;
  }
  // Every str of the copy is marked interned at the end (mark_interned), but only those in the
  // interpreter's interned table are the str interning returns for an equal one. Names compared
  // by identity to CPython's own must be those: a special method's name set on a class
  // (Objects/typeobject.c, update_slot compares it with the slot names), so dunder values too.
  if ((intern || is_dunder(o)) && PyUnicode_IsIdentifier(o) == 1) return interned(o);
  return new_str(o);
}

// Names (setattr, namedtuple fields, **kwargs of a type) get interned by CPython, which writes the
// str's interned state: dict keys that are identifiers are interned now, before anything is
// write-protected. The interned table itself is the interpreter's, outside the region.
PyObject* builder::interned(PyObject* o) {
#if PY_VERSION_HEX >= 0x030D0000
  // 3.13 unmarks every interned str at exit (_PyUnicode_ClearInterned, Objects/unicodeobject.c),
  // a write a frozen str cannot take: the interned str lives outside the region, immortal (an
  // equal one the interpreter already interned, or a copy made here).
  pass_through pass(hooks_);
  PyObject* s = new_str(o);
  _PyUnicode_InternImmortal(PyInterpreterState_Get(), &s);
  return s;
#else
  // 3.12 makes every interned str immortal and never writes it again, not even at exit.
  PyObject* s = new_str(o);
  pass_through pass(hooks_);
  PyUnicode_InternInPlace(&s);
  return s;
#endif
}

PyObject* builder::copy_container(PyObject* o, bool shared) {
  // Only a container referenced more than once can be shared or part of a cycle.
  if (shared) {
    auto [it, fresh] = memo_.try_emplace(o, nullptr);
    if (!fresh) {
      if (it->second == nullptr)
        fail(PyExc_TypeError, "cycle: this " + short_type_name(o) + " contains itself");
      return Py_NewRef(it->second);
    }
  }
  if (depth_ >= max_depth)
    fail(PyExc_TypeError, "nested more than " + std::to_string(max_depth) + " levels deep");
  // The copy recurses once per level: a thread with a small stack (threading.stack_size) would
  // overflow it long before max_depth. Checked every 32 levels, as freeze() does.
  if ((depth_ & 31) == 31 && permafrost::stack_bytes_left() < min_stack_left) {
    fail(PyExc_RecursionError, "nested too deep for this thread's stack (" +
                                   std::to_string(depth_) +
                                   " containers): freeze it in a thread with a larger stack "
                                   "(threading.stack_size) or in the main thread");
  }
  source_ref hold(*this, o);
  ++depth_;
  PyObject* c;
  try {
    c = PyTuple_Check(o)  ? copy_tuple(o)
        : PyList_Check(o) ? copy_list(o)
        : PyDict_Check(o) ? copy_dict(o)
                          : copy_set(o);
  } catch (...) {
    --depth_;
    if (shared) memo_.erase(o);
    throw;
  }
  --depth_;
  if (shared) memo_[o] = c;
  return c;
}

PyObject* builder::copy_tuple(PyObject* o) {
  const Py_ssize_t n = PyTuple_GET_SIZE(o);
  std::vector<owned> items;
  items.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    path_step at(*this, value_path_kind::at_index, nullptr, i);
    items.emplace_back(copy_value(PyTuple_GET_ITEM(o, i), false, false));
  }
  if (n <= 20) tuple_sizes_ |= std::uint32_t{1} << n;
  PyObject* t = made_in_region([&] { return checked(PyTuple_New(n)); });
  for (Py_ssize_t i = 0; i < n; ++i) PyTuple_SET_ITEM(t, i, items[i].release());
  return t;
}

PyObject* builder::copy_list(PyObject* o) {
  std::vector<owned> items;
  const Py_ssize_t size = PyList_GET_SIZE(o);
  items.reserve(static_cast<std::size_t>(size));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); ++i) {
    source_ref item(*this, PyList_GET_ITEM(o, i));
    path_step at(*this, value_path_kind::at_index, nullptr, i);
    items.emplace_back(copy_value(item.p, false, true));
  }
  // A signal handler changed the list meanwhile: the copy would silently miss items.
  if (PyList_GET_SIZE(o) != size)
    fail(PyExc_RuntimeError, "the list changed size while it was being copied");
  const auto n = static_cast<Py_ssize_t>(items.size());
  PyObject* l = made_in_region([&] { return checked(PyList_New(n)); });
  for (Py_ssize_t i = 0; i < n; ++i) PyList_SET_ITEM(l, i, items[i].release());
  switch_type(l, types_.list);
  return l;
}

namespace {

// True when every key of o is an exact str, int, float, bytes, bool or None: types whose hash
// and == are CPython's own, so dict.fromkeys(o) runs no Python code and each key's copy hashes
// and compares as the key itself.
bool builtin_scalar_keys(PyObject* o) {
  if (keys_of(o)->dk_kind != dict_keys_general) return true;  // a str table: exact strs only
  Py_ssize_t pos = 0;
  PyObject* key;
  PyObject* value;
  while (PyDict_Next(o, &pos, &key, &value)) {
    PyTypeObject* t = Py_TYPE(key);
    if (t != &PyUnicode_Type && t != &PyLong_Type && t != &PyFloat_Type && t != &PyBytes_Type &&
        t != &PyBool_Type && key != Py_None)
      return false;
  }
  return true;
}

}  // namespace

// True when PyDict_Next walks the OrderedDict o in its own order (an exact one whose order
// move_to_end() did not change).
bool builder::odict_walked_in_order(PyObject* o) {
  if (!PyODict_CheckExact(o)) return false;  // a subclass may iterate as it likes
  pass_through pass(hooks_);
  const int same = odict_in_dict_order(o);
  if (same < 0) throw build_error{nullptr, {}};
  return same == 1;
}

PyObject* builder::copy_dict(PyObject* o) {
  if (PyODict_Check(o) && !odict_walked_in_order(o)) {
    // An OrderedDict's order is its own: move_to_end() does not reorder the dict underneath,
    // which PyDict_Next walks. A plain dict of its items in its order is copied instead, made
    // outside the region (its keys' __hash__, a subclass's keys() and __getitem__ may run).
    PyObject* ordered;
    {
      pass_through pass(hooks_);
      ordered = PyDict_New();
      if (ordered == nullptr) throw std::bad_alloc();
      if (PyDict_Merge(ordered, o, 1) < 0) {
        Py_DECREF(ordered);
        throw build_error{nullptr, {}};
      }
    }
    source_ref hold(*this, ordered);
    {
      pass_through pass(hooks_);
      Py_DECREF(ordered);
    }
    return copy_dict(hold.p);
  }
  if (PyDict_CheckExact(o) && PyDict_GET_SIZE(o) > small_dict && builtin_scalar_keys(o))
    return copy_large_dict(o);
  // Keys and values first, so that the dict and its table follow them in the region.
  std::vector<owned> copies;
  const Py_ssize_t size = PyDict_GET_SIZE(o);
  copies.reserve(2 * static_cast<std::size_t>(size));
  Py_ssize_t pos = 0;
  PyObject* key;
  PyObject* value;
  for (Py_ssize_t i = 0; PyDict_Next(o, &pos, &key, &value); ++i) {
    source_ref k(*this, key);
    source_ref v(*this, value);
    {
      path_step at(*this, value_path_kind::key_of, nullptr, i);
      copies.emplace_back(copy_value(k.p, true, true));
    }
    path_step at(*this, value_path_kind::value_of, k.p, 0);
    copies.emplace_back(copy_value(v.p, false, true));
  }
  const auto n = static_cast<Py_ssize_t>(copies.size() / 2);
  if (n != size || PyDict_GET_SIZE(o) != size)  // a signal handler changed the dict meanwhile
    fail(PyExc_RuntimeError, "the dict changed while it was being copied");
  if (n > small_dict) return dict_of_copies(copies);
  // CPython's own insert: a table whose keys are all exact strs stays the str-keyed kind, which
  // lookups take the fast path on (_PyDict_NewPresized would make a general table).
  PyObject* d = made_in_region([&]() -> PyObject* {
    PyObject* e = checked(PyDict_New());
    if (e == nullptr || copies.empty()) return e;
    owned fresh(e);
    if (PyDict_SetItem(e, copies[0].p, copies[1].p) < 0) throw std::bad_alloc();
    // The first insert takes its table from CPython's free list of small str-keyed tables when
    // it has one, which may hold a table from outside the region (the first table of
    // dict_of_copies()'s scratch dict, dropped as it grew in pass mode, or an OrderedDict's
    // scratch dict, freed): set it aside.
    if (region_.holds(keys_of(e))) return fresh.release();
    rejected_.push_back(fresh.release());
    return nullptr;
  });
  owned made(d);
  for (std::size_t i = 2; i < copies.size(); i += 2) {
    if (PyDict_SetItem(d, copies[i].p, copies[i + 1].p) < 0) throw std::bad_alloc();
    if (PyDict_GET_SIZE(d) != static_cast<Py_ssize_t>(i / 2 + 1)) equal_copies(copies[i].p);
  }
  switch_type(d, types_.dict);
  return made.release();
}

// A dict of more than small_dict items whose keys are not all builtin scalars (tuples,
// frozensets, subclasses): the keys' copies, exact types whose hash and == run no Python code,
// are first inserted into a scratch dict outside the region, which sizes the table and finds
// keys that are equal once copied; dict.fromkeys(scratch) then makes the table once, in the
// region (as copy_large_dict does), and each value (None) is replaced by its copy.
PyObject* builder::dict_of_copies(std::vector<owned>& copies) {
  fromkeys();
  owned scratch;
  {
    pass_through pass(hooks_);
    scratch = owned(PyDict_New());
    if (scratch.p == nullptr) throw std::bad_alloc();
    for (std::size_t i = 0; i < copies.size(); i += 2) {
      if (PyDict_SetItem(scratch.p, copies[i].p, Py_None) < 0) throw std::bad_alloc();
      if (PyDict_GET_SIZE(scratch.p) != static_cast<Py_ssize_t>(i / 2 + 1))
        equal_copies(copies[i].p);
    }
  }
  owned made(made_in_region([&] { return checked(PyObject_CallOneArg(fromkeys_, scratch.p)); }));
  dict_keys* k = keys_of(made.p);
  char* entries = entries_of(k);
  const bool general = k->dk_kind == dict_keys_general;
  if (k->dk_nentries != static_cast<Py_ssize_t>(copies.size() / 2))
    fail(PyExc_RuntimeError, "the dict changed while it was being copied");
  for (std::size_t i = 0; i < copies.size(); i += 2) {
    PyObject** key_slot;
    PyObject** value_slot;
    if (general) {
      auto& e = reinterpret_cast<dict_entry_general*>(entries)[i / 2];
      key_slot = &e.key;
      value_slot = &e.value;
    } else {
      auto& e = reinterpret_cast<dict_entry_unicode*>(entries)[i / 2];
      key_slot = &e.key;
      value_slot = &e.value;
    }
    if (*key_slot != copies[i].p)
      fail(PyExc_RuntimeError, "the dict changed while it was being copied");
    Py_DECREF(std::exchange(*value_slot, copies[i + 1].release()));
  }
  {
    pass_through pass(hooks_);
    Py_CLEAR(scratch.p);
  }
  switch_type(made.p, types_.dict);
  return made.release();
}

void builder::fromkeys() {
  if (fromkeys_ != nullptr) return;
  pass_through pass(hooks_);
  fromkeys_ = PyObject_GetAttrString(reinterpret_cast<PyObject*>(&PyDict_Type), "fromkeys");
  if (fromkeys_ == nullptr) throw std::bad_alloc();
}

// Two keys (or set elements) that were told apart by a subclass's __eq__ or __hash__ are equal
// once copied as their base type: the copy would lose one, or hold it twice.
void builder::equal_copies(PyObject* copy) {
  std::string r;
  {
    pass_through pass(hooks_);
    owned text(PyObject_Repr(copy));
    Py_ssize_t len = 0;
    const char* utf8 = text.p ? PyUnicode_AsUTF8AndSize(text.p, &len) : nullptr;
    if (utf8 == nullptr) PyErr_Clear();
    r = utf8 ? std::string(utf8, static_cast<std::size_t>(std::min<Py_ssize_t>(len, 200))) : "?";
  }
  fail(PyExc_TypeError,
       "two keys or elements are equal once copied as their base types (" + r +
           "): a subclass's __eq__ or __hash__ told them apart, and the copy cannot");
}

// A dict too large for CPython's smallest table would grow while built by inserts, leaving each
// outgrown table dead in the region (about as many bytes as the final one) and rehashing every
// key each time. dict.fromkeys(o) makes its table once, sized for o and of o's key kind
// (Objects/dictobject.c, _PyDict_FromKeys: dictresize to estimate_log2_keysize(len(o)), then
// inserts in o's order); each entry's key (o's own) and value (None) are then replaced in place by
// their copies. o's keys are builtin scalars (builtin_scalar_keys): no Python code runs, and a
// copy hashes and compares equal to its original, so the table stays valid.
PyObject* builder::copy_large_dict(PyObject* o) {
  fromkeys();
  owned made(made_in_region([&] { return checked(PyObject_CallOneArg(fromkeys_, o)); }));
  dict_keys* k = keys_of(made.p);
  char* entries = entries_of(k);
  const bool general = k->dk_kind == dict_keys_general;
  Py_ssize_t pos = 0;
  PyObject* key;
  PyObject* value;
  Py_ssize_t i = 0;
  for (; PyDict_Next(o, &pos, &key, &value); ++i) {
    source_ref k_src(*this, key);
    source_ref v_src(*this, value);
    PyObject** key_slot;
    PyObject** value_slot;
    if (general) {
      auto& e = reinterpret_cast<dict_entry_general*>(entries)[i];
      key_slot = &e.key;
      value_slot = &e.value;
    } else {
      auto& e = reinterpret_cast<dict_entry_unicode*>(entries)[i];
      key_slot = &e.key;
      value_slot = &e.value;
    }
    if (i >= k->dk_nentries || *key_slot != key)  // a signal handler changed o meanwhile
      fail(PyExc_RuntimeError, "the dict changed while it was being copied");
    owned k_copy;
    {
      path_step at(*this, value_path_kind::key_of, nullptr, i);
      k_copy = owned(copy_value(k_src.p, true, true));
    }
    path_step at(*this, value_path_kind::value_of, k_src.p, 0);
    owned v_copy(copy_value(v_src.p, false, true));
    // The table's references: the original key and None, replaced by the copies.
    Py_DECREF(std::exchange(*key_slot, k_copy.release()));
    Py_DECREF(std::exchange(*value_slot, v_copy.release()));
  }
  if (i != k->dk_nentries) fail(PyExc_RuntimeError, "the dict changed while it was being copied");
  switch_type(made.p, types_.dict);
  return made.release();
}

PyObject* builder::copy_set(PyObject* o) {
  std::vector<owned> items;
  const Py_ssize_t size = PySet_GET_SIZE(o);
  items.reserve(static_cast<std::size_t>(size));
  Py_ssize_t pos = 0;
  PyObject* key;
  Py_hash_t hash;
  for (Py_ssize_t i = 0; _PySet_NextEntry(o, &pos, &key, &hash); ++i) {
    source_ref k(*this, key);
    path_step at(*this, value_path_kind::element, nullptr, i);
    items.emplace_back(copy_value(k.p, false, true));
  }
  if (static_cast<Py_ssize_t>(items.size()) != size || PySet_GET_SIZE(o) != size)
    fail(PyExc_RuntimeError, "the set changed while it was being copied");
  const bool frozen = PyFrozenSet_Check(o);
  PyObject* s = made_in_region(
      [&] { return checked(frozen ? PyFrozenSet_New(nullptr) : PySet_New(nullptr)); });
  owned made(s);
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (PySet_Add(s, items[i].p) < 0) throw std::bad_alloc();
    if (PySet_GET_SIZE(s) != static_cast<Py_ssize_t>(i + 1)) equal_copies(items[i].p);
  }
  if (frozen) {
    if (PyObject_Hash(s) == -1) throw std::bad_alloc();  // frozenset caches its hash
    give_weakref_head(s);
  } else {
    switch_type(s, types_.set);
  }
  return made.release();
}

// weakref.ref() of a frozenset writes the head of its weakref list unless a plain reference (no
// callback) already heads it: then weakref.ref() returns that one, and a reference with a
// callback, a proxy or a subclass's (WeakKeyDictionary, WeakSet) is linked in after it, writing
// only the references themselves (Objects/weakrefobject.c: get_basic_refs, insert_after). So
// every frozen frozenset is given that head now, made outside the region: mutable, untracked (it
// has no callback, so it is in no cycle) and immortal, as the frozenset it names (were it freed,
// unlinking it would write the frozenset).
void builder::give_weakref_head(PyObject* frozenset) {
  pass_through pass(hooks_);
  PyObject* head = PyWeakref_NewRef(frozenset, nullptr);
  if (head == nullptr) throw std::bad_alloc();
  PyObject_GC_UnTrack(head);
  make_immortal(head);
}

void builder::fail(PyObject* type, const std::string& what) {
  // The path's reprs are Python objects: made outside the region.
  pass_through pass(hooks_);
  throw build_error{type, path_text(path_) + ": " + what};
}

}  // namespace permafrost::python::native

#endif  // PF_NATIVE_SUPPORTED
