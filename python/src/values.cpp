// permafrost for Python — reading frozen values as Python objects (see values.hpp).
#include "values.hpp"

#include <cstdint>
#include <cstring>
#include <unordered_map>

#include "permafrost/memstat.hpp"
#include "scalars.hpp"
#include "store.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

PyObject* str_from_packed(std::string_view s) {
  const auto size = static_cast<Py_ssize_t>(s.size());
  if (!all_ascii(s)) return PyUnicode_DecodeUTF8(s.data(), size, nullptr);
  PyObject* o = PyUnicode_New(size, 127);
  if (o) std::memcpy(PyUnicode_1BYTE_DATA(o), s.data(), s.size());
  return o;
}

PyObject* str_from_node(const node_header* n) {
  const char* p = str_bytes(n);
  const auto size = static_cast<Py_ssize_t>(str_size(n));
  if (n->flags & flag_ascii) {
    PyObject* s = PyUnicode_New(size, 127);
    if (s && size) std::memcpy(PyUnicode_1BYTE_DATA(s), p, static_cast<std::size_t>(size));
    return s;
  }
  return PyUnicode_DecodeUTF8(p, size, (n->flags & flag_surrogates) ? "surrogatepass" : nullptr);
}

PyObject* bigint_from_node(const module_state& state, const node_header* n) {
  ref b(PyBytes_FromStringAndSize(node_bytes(n), n->count));
  if (!b.get()) return nullptr;
  ref args(PyTuple_Pack(2, b.get(), state.str_little));
  if (!args.get()) return nullptr;
  return PyObject_Call(state.int_from_bytes, args.get(), state.kw_signed);
}

// A value stored in its word, or a float beside it.
PyObject* scalar(const char* base, word w) {
  switch (w & tag_mask) {
    case tag_int: return PyLong_FromLongLong(static_cast<std::int64_t>(w) >> 3);
    case tag_const:
      if (w == const_none) Py_RETURN_NONE;
      if (w == const_true) Py_RETURN_TRUE;
      Py_RETURN_FALSE;
    case tag_float: {
      double d;
      std::memcpy(&d, base + (w & ~tag_mask), sizeof d);
      return PyFloat_FromDouble(d);
    }
    case tag_inline_float: {
      const word bits = w & ~tag_mask;
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return PyFloat_FromDouble(d);
    }
    case tag_short_str: {
      char b[8];
      short_str_bytes(w, b);
      const std::size_t n = short_str_size(w);
      bool ascii = true;
      for (std::size_t i = 0; i < n; ++i) ascii = ascii && static_cast<unsigned char>(b[i]) < 0x80;
      if (!ascii) return PyUnicode_DecodeUTF8(b, static_cast<Py_ssize_t>(n), nullptr);
      PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
      if (s) std::memcpy(PyUnicode_1BYTE_DATA(s), b, n);
      return s;
    }
    case tag_packed_str: return str_from_packed(packed_str(base, w));
  }
  PyErr_SetString(PyExc_SystemError, "permafrost: corrupt frozen value (unknown tag)");
  return nullptr;
}

PyObject* corrupt_kind(const node_header* n) {
  PyErr_Format(PyExc_SystemError, "permafrost: corrupt frozen value (kind %d)", int{n->kind});
  return nullptr;
}

// The object of the leaf node n (is_leaf(n->kind): a str, bytes, big int, date, Decimal...).
PyObject* leaf_object(const module_state& state, const node_header* n) {
  switch (n->kind) {
    case kind_str:
    case kind_str16: return str_from_node(n);
    case kind_bytes: return PyBytes_FromStringAndSize(node_bytes(n), n->count);
    case kind_bigint: return bigint_from_node(state, n);
  }
  if (is_scalar_kind(n->kind)) return scalar_from_node(n);
  return corrupt_kind(n);
}

// The objects one read built for flag_shared nodes, by offset: every later reference in the same
// read gets the same object, so a read builds each shared node once (format.hpp, "Sharing").
class shared_objects {
 public:
  shared_objects() = default;
  shared_objects(const shared_objects&) = delete;
  shared_objects& operator=(const shared_objects&) = delete;
  ~shared_objects() {
    for (const auto& [off, o] : built_) Py_DECREF(o);
  }
  // A new reference to the object built for the node at `off`, or nullptr.
  PyObject* find(std::uint64_t off) const {
    const auto it = built_.find(off);
    if (it == built_.end()) return nullptr;
    Py_INCREF(it->second);
    return it->second;
  }
  // Returns o (a new reference, or nullptr); remembers it for the node at `off`.
  PyObject* keep(std::uint64_t off, PyObject* o) {
    if (o) {
      Py_INCREF(o);
      built_.emplace(off, o);
    }
    return o;
  }

  // How many containers deep the read is, for stack_room_at (level).
  std::size_t depth = 0;

 private:
  std::unordered_map<std::uint64_t, PyObject*> built_;
};

// One level of a read's recursion, for its scope: ok() is false, with RecursionError set, where
// the thread's stack has no room for it (stack_room_at: checked every 32 levels, so a shallow
// read works in a thread with a small stack, where a check at every level failed at the first).
class level {
 public:
  explicit level(shared_objects& s) : s_(s), ok_(stack_room_at(s.depth)) {
    if (ok_) ++s_.depth;
  }
  level(const level&) = delete;
  level& operator=(const level&) = delete;
  ~level() {
    if (ok_) --s_.depth;
  }
  bool ok() const { return ok_; }

 private:
  shared_objects& s_;
  bool ok_;
};

// The tuple node n (at offset `off`): its items materialised, nested tuples built eagerly too.
PyObject* tuple_of(store_object* store, const char* base, const node_header* n,
                   shared_objects& shared) {
  const level in(shared);
  if (!in.ok()) return nullptr;
  ref t(PyTuple_New(n->count));
  if (!t.get()) return nullptr;
  const word* items = seq_items(n);
  for (std::uint32_t i = 0; i < n->count; ++i) {
    const word w = items[i];
    const auto* item_node = (w & tag_mask) == tag_node ? node_at<node_header>(base, w) : nullptr;
    PyObject* item;
    if (!item_node || item_node->kind != kind_tuple) {
      item = materialise(store, base, w);
    } else if (!is_shared(item_node)) {
      item = tuple_of(store, base, item_node, shared);
    } else if (!(item = shared.find(w))) {
      item = shared.keep(w, tuple_of(store, base, item_node, shared));
    }
    if (!item) return nullptr;
    PyTuple_SET_ITEM(t.get(), i, item);
  }
  return t.release();
}

PyObject* thaw(const module_state& state, const char* base, word w, shared_objects& shared);

// thaw() of the dict (a dict, dict16 or table node, or a row) of word w.
PyObject* thaw_dict(const module_state& state, const char* base, word w, shared_objects& shared) {
  const dict_reader d(base, w);
  const auto kw = table_keys(node_at<table_header>(base, d.keys_offset()));
  ref out(PyDict_New());
  if (!out.get()) return nullptr;
  for (std::uint32_t i = 0, count = d.count(); i < count; ++i) {
    ref k(thaw(state, base, kw[i], shared));
    if (!k.get()) return nullptr;
    ref v(thaw(state, base, d.value(i), shared));
    if (!v.get() || PyDict_SetItem(out.get(), k.get(), v.get()) < 0) return nullptr;
  }
  return out.release();
}

// thaw() of the node n, which is not a leaf.
PyObject* thaw_container(const module_state& state, const char* base, const node_header* n,
                         shared_objects& shared) {
  switch (n->kind) {
    case kind_tuple:
    case kind_list: {
      const bool tuple = n->kind == kind_tuple;
      ref out(tuple ? PyTuple_New(n->count) : PyList_New(n->count));
      if (!out.get()) return nullptr;
      const word* items = seq_items(n);
      for (std::uint32_t i = 0; i < n->count; ++i) {
        PyObject* item = thaw(state, base, items[i], shared);
        if (!item) return nullptr;
        if (tuple) PyTuple_SET_ITEM(out.get(), i, item);
        else PyList_SET_ITEM(out.get(), i, item);
      }
      return out.release();
    }
    case kind_dict:
    case kind_dict16:
    case kind_table:
      return thaw_dict(state, base, static_cast<word>(reinterpret_cast<const char*>(n) - base),
                       shared);
    case kind_set:
    case kind_frozenset: {
      const auto* t = reinterpret_cast<const table_header*>(n);
      ref out(n->kind == kind_set ? PySet_New(nullptr) : PyFrozenSet_New(nullptr));
      if (!out.get()) return nullptr;
      const key_words kw = table_keys(t);
      for (std::uint32_t i = 0; i < n->count; ++i) {
        ref k(thaw(state, base, kw[i], shared));
        if (!k.get() || PySet_Add(out.get(), k.get()) < 0) return nullptr;
      }
      return out.release();
    }
  }
  return corrupt_kind(n);
}

PyObject* thaw(const module_state& state, const char* base, word w, shared_objects& shared) {
  if ((w & tag_mask) == tag_row) {  // a row: built anew for each reference, as a dict16 record
    const level in(shared);
    return in.ok() ? thaw_dict(state, base, w, shared) : nullptr;
  }
  if ((w & tag_mask) != tag_node) return scalar(base, w);
  const auto* n = node_at<node_header>(base, w);
  if (is_leaf(n->kind)) return leaf_object(state, n);
  const level in(shared);
  if (!in.ok()) return nullptr;
  if (!is_shared(n)) return thaw_container(state, base, n, shared);
  if (PyObject* built = shared.find(w)) return built;
  return shared.keep(w, thaw_container(state, base, n, shared));
}

}  // namespace

PyObject* materialise(store_object* store, const char* base, word w) {
  if ((w & tag_mask) == tag_row) {
    // A row's fields lie apart from its key (the node a lookup just compared): start loading
    // them now, while the view is made and Python asks for a field.
    const auto* t = node_at<table_node>(base, row_table_offset(w));
    __builtin_prefetch(row_bytes_of(t, row_of(w)));
    return new_view(store->state->dict_type, store, w);
  }
  if ((w & tag_mask) != tag_node) return scalar(base, w);
  const auto* n = node_at<node_header>(base, w);
  if (is_leaf(n->kind)) return leaf_object(*store->state, n);
  switch (n->kind) {
    case kind_tuple: {
      shared_objects shared;
      return tuple_of(store, base, n, shared);
    }
    case kind_list: return new_view(store->state->list_type, store, w);
    case kind_dict:
    case kind_dict16:
    case kind_table: return new_view(store->state->dict_type, store, w);
    case kind_set:
    case kind_frozenset: return new_view(store->state->set_type, store, w);
  }
  return corrupt_kind(n);
}

bool stack_room() {
  constexpr std::size_t min_stack_left = std::size_t{256} << 10;
  if (permafrost::stack_bytes_left() >= min_stack_left) return true;
  PyErr_SetString(PyExc_RecursionError,
                  "permafrost: nested too deep for this thread's stack: read it in a thread with a "
                  "larger stack (threading.stack_size) or in the main thread");
  return false;
}

bool stack_room_at(std::size_t depth) { return (depth & 31) != 31 || stack_room(); }

PyObject* thaw_word(const module_state& state, const char* base, word w) {
  shared_objects shared;
  return thaw(state, base, w, shared);
}

}  // namespace permafrost::python
