// permafrost for Python — the audit and the describer (contract in native_audit.hpp).
#include "native_audit.hpp"

#if PF_NATIVE_SUPPORTED

#include <cstring>
#include <vector>

#include "permafrost/write_trap.hpp"

namespace permafrost::python::native {

namespace {

bool has_gc_header(PyObject* o) { return PyType_IS_GC(Py_TYPE(o)); }

// The keys table every empty dict shares (Py_EMPTY_KEYS, static and immortal).
void* empty_dict_keys() {
  static void* keys = [] {
    PyObject* d = PyDict_New();
    void* k = d ? reinterpret_cast<PyDictObject*>(d)->ma_keys : nullptr;
    Py_XDECREF(d);
    return k;
  }();
  return keys;
}

std::string offset_text(const region& r, const void* p) {
  return "offset " + std::to_string(reinterpret_cast<std::uintptr_t>(p) - r.base());
}

class auditor {
 public:
  auditor(region& r, PyObject* root, const native_types& types, block_map& layout)
      : r_(r), root_(root), types_(types), layout_(layout), build_(r.map()) {}

  std::string run() {
    // Sized to what the arena holds: the build map grew by half at a time and may be longer.
    layout_.reset((r_.used() + granule_bytes - 1) >> granule_shift);
    if (std::string e = edge(root_, nullptr); !e.empty()) return e;
    while (!stack_.empty()) {
      PyObject* o = stack_.back();
      stack_.pop_back();
      if (std::string e = visit(o); !e.empty()) return e;
    }
    if (std::string e = check_reference_counts(); !e.empty()) return e;
    if (std::string e = check_strays(); !e.empty()) return e;
    freeze_objects();
    return check_frozen();
  }

  // After a failure: no object of the graph may ever be freed (something outside may hold it,
  // and its count was lowered by the walk), so all of them become immortal.
  void give_up() {
    for_each_object([](PyObject* o) { make_immortal(o); });
  }

 private:
  // An edge from `from` (nullptr: the caller's reference to the root) to o.
  std::string edge(PyObject* o, PyObject* from) {
    if (!r_.holds(o)) {
      if (is_immortal(o)) return {};
      return std::string(Py_TYPE(o)->tp_name) + " object outside the arena, referred to by " +
             (from ? std::string(Py_TYPE(from)->tp_name) + " at " + offset_text(r_, from)
                   : std::string("the caller")) +
             ", is not immortal";
    }
    // The graph's own reference: the walk takes it off the count, so that what remains is the
    // references from outside (only the caller's, to the root).
    if (from != nullptr && !is_immortal(o)) --o->ob_refcnt;
    stack_.push_back(o);
    return {};
  }

  std::string claim(void* block, unsigned code, PyObject* owner, const char* what) {
    const std::size_t g = r_.granule_of(block);
    if (!r_.holds(block) || reinterpret_cast<std::uintptr_t>(block) % granule_bytes != 0 ||
        build_.get(g) != block_live)
      return std::string(what) + " of " + Py_TYPE(owner)->tp_name + " at " +
             offset_text(r_, owner) + " is not a block of the arena";
    layout_.set(g, code);
    return {};
  }

  std::string visit(PyObject* o) {
    const bool gc = has_gc_header(o);
    char* start = reinterpret_cast<char*>(o) - (gc ? gc_header_bytes : 0);
    if (r_.holds(start) && layout_.get(r_.granule_of(start)) != 0) return {};  // seen
    PyTypeObject* t = Py_TYPE(o);
    const bool known = t == types_.dict || t == types_.list || t == types_.set ||
                       t == &PyTuple_Type || t == &PyFrozenSet_Type || t == &PyUnicode_Type ||
                       t == &PyLong_Type || t == &PyFloat_Type || t == &PyBytes_Type;
    if (!known)
      return std::string(t->tp_name) + " object at " + offset_text(r_, o) +
             " is not a type freeze_native() makes";
    if (std::string e = claim(start, gc ? starts_gc_header : starts_object, o, "the object");
        !e.empty())
      return e;
    ++objects_;
    if (t == types_.dict) return visit_dict(o);
    if (t == types_.list) {
      auto* l = reinterpret_cast<PyListObject*>(o);
      if (l->allocated > 0)
        if (std::string e = claim(l->ob_item, starts_buffer, o, "the items"); !e.empty()) return e;
      for (Py_ssize_t i = 0; i < Py_SIZE(o); ++i)
        if (std::string e = edge(l->ob_item[i], o); !e.empty()) return e;
      return {};
    }
    if (t == &PyTuple_Type) {
      for (Py_ssize_t i = 0; i < Py_SIZE(o); ++i)
        if (std::string e = edge(PyTuple_GET_ITEM(o, i), o); !e.empty()) return e;
      return {};
    }
    if (t == types_.set || t == &PyFrozenSet_Type) {
      auto* s = reinterpret_cast<PySetObject*>(o);
      if (s->table != s->smalltable)
        if (std::string e = claim(s->table, starts_buffer, o, "the hash table"); !e.empty())
          return e;
      // (A deleted entry's key is CPython's static dummy, immortal: an edge like any other.
      // Sets made by freeze_native() have none.)
      for (Py_ssize_t i = 0; i <= s->mask; ++i) {
        PyObject* k = s->table[i].key;
        if (k != nullptr)
          if (std::string e = edge(k, o); !e.empty()) return e;
      }
      return {};
    }
    if (t == &PyUnicode_Type) {
      if (void* utf8 = utf8_buffer_of(o)) return claim(utf8, starts_buffer, o, "the UTF-8 form");
    }
    return {};
  }

  std::string visit_dict(PyObject* o) {
    auto* d = reinterpret_cast<PyDictObject*>(o);
    if (d->ma_values != nullptr)
      return "dict at " + offset_text(r_, o) + " has a split table (not made by freeze_native)";
    if (d->ma_keys != empty_dict_keys())
      if (std::string e = claim(d->ma_keys, starts_buffer, o, "the keys table"); !e.empty())
        return e;
    std::string err;
    for_each_entry(o, [&](PyObject* k, PyObject* v) {
      if (err.empty()) err = edge(k, o);
      if (err.empty()) err = edge(v, o);
    });
    return err;
  }

  template <class F>
  void for_each_object(F&& f) {
    const std::size_t n = layout_.granules();
    for (std::size_t g = layout_.next_start(static_cast<std::size_t>(-1), n); g < n;
         g = layout_.next_start(g, n)) {
      const unsigned code = layout_.get(g);
      if (code == starts_buffer) continue;
      auto* p = static_cast<char*>(r_.address_of(g));
      f(reinterpret_cast<PyObject*>(code == starts_gc_header ? p + gc_header_bytes : p));
    }
  }

  std::string check_reference_counts() {
    std::string err;
    for_each_object([&](PyObject* o) {
      if (!err.empty() || is_immortal(o)) return;
      const Py_ssize_t expected = o == root_ ? 1 : 0;
      if (Py_REFCNT(o) != expected)
        err = std::string(Py_TYPE(o)->tp_name) + " object at " + offset_text(r_, o) + " has " +
              std::to_string(Py_REFCNT(o) - expected) +
              " reference(s) from outside the result (something kept an object of the copy)";
    });
    return err;
  }

  std::string check_strays() {
    const std::size_t n = build_.granules();
    for (std::size_t g = build_.next_start(static_cast<std::size_t>(-1), n); g < n;
         g = build_.next_start(g, n)) {
      if (build_.get(g) != block_live || layout_.get(g) != 0) continue;
      auto* p = static_cast<char*>(r_.address_of(g));
      return "a block of " + std::to_string(r_.block_bytes(p)) + " bytes at " + offset_text(r_, p) +
             " (" + guess_type(p) +
             ") was allocated while copying but is not part of the result (an object made by "
             "other code during the copy, e.g. a finalizer or a signal handler)";
    }
    return {};
  }

  // A stray block's type, when it starts like an object of a known type.
  std::string guess_type(char* p) {
    for (std::size_t header : {std::size_t{0}, gc_header_bytes}) {
      PyTypeObject* t = reinterpret_cast<PyObject*>(p + header)->ob_type;
      if (t == &PyDict_Type || t == &PyList_Type || t == &PyTuple_Type || t == &PyUnicode_Type ||
          t == &PyLong_Type || t == &PyFloat_Type || t == &PyBytes_Type || t == &PySet_Type ||
          t == &PyFrozenSet_Type || t == types_.dict || t == types_.list || t == types_.set)
        return std::string("a ") + t->tp_name + " object";
    }
    return "not an object of a known type";
  }

  // Every object immortal and untracked; every str not interned yet marked interned (after it
  // is immortal: see mark_interned), so that no interning writes it.
  void freeze_objects() {
    for_each_object([](PyObject* o) {
      make_immortal(o);
      if (PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
      if (PyUnicode_CheckExact(o) && !PyUnicode_CHECK_INTERNED(o)) mark_interned(o);
    });
  }

  std::string check_frozen() {
    std::string err;
    std::size_t seen = 0;
    for_each_object([&](PyObject* o) {
      ++seen;
      if (err.empty() && (!is_immortal(o) || PyObject_GC_IsTracked(o) ||
                          (PyUnicode_CheckExact(o) && !PyUnicode_CHECK_INTERNED(o))))
        err = std::string(Py_TYPE(o)->tp_name) + " object at " + offset_text(r_, o) +
              " is not immortal, untracked and (a str) interned";
    });
    if (err.empty() && seen != objects_) err = "the block map lost objects (internal error)";
    return err;
  }

  region& r_;
  PyObject* root_;
  native_types types_;
  block_map& layout_;
  const block_map& build_;
  std::vector<PyObject*> stack_;
  std::size_t objects_ = 0;
};

// ----- the describer ----------------------------------------------------------------------------

const describe_context& ctx_of(const void* p) { return *static_cast<const describe_context*>(p); }

// "dict object (NativeDict)" or "str object".
void type_text(permafrost::report_text& out, const describe_context& c, PyObject* o) {
  PyTypeObject* t = Py_TYPE(o);
  if (t == c.types.dict || t == c.types.list || t == c.types.set) {
    out.text(t->tp_base->tp_name).text(" object (").text(t->tp_name).text(")");
  } else {
    out.text(t->tp_name).text(" object");
  }
}

// The object whose block starts at granule g (code 1 or 3), or nullptr.
PyObject* object_at(const describe_context& c, std::size_t g) {
  const unsigned code = c.layout->get(g);
  if (code != starts_object && code != starts_gc_header) return nullptr;
  return reinterpret_cast<PyObject*>(c.base + (g << granule_shift) +
                                     (code == starts_gc_header ? gc_header_bytes : 0));
}

// What buffer of o `buffer` is, or nullptr when it is none of o's.
const char* buffer_role(const describe_context& c, PyObject* o, const void* buffer) {
  PyTypeObject* t = Py_TYPE(o);
  if (t == c.types.dict && reinterpret_cast<PyDictObject*>(o)->ma_keys == buffer)
    return "keys table";
  if (t == c.types.list && reinterpret_cast<PyListObject*>(o)->ob_item == buffer) return "items";
  if ((t == c.types.set || t == &PyFrozenSet_Type) &&
      reinterpret_cast<PySetObject*>(o)->table == buffer)
    return "hash table";
  if (t == &PyUnicode_Type && utf8_buffer_of(o) == buffer) return "UTF-8 form";
  return nullptr;
}

}  // namespace

std::string audit(region& r, PyObject* root, const native_types& types, block_map& layout) {
  auditor a(r, root, types, layout);
  std::string err = a.run();
  if (!err.empty()) a.give_up();
  return err;
}

std::size_t describe(const void* context, std::size_t offset, char* buf,
                     std::size_t size) noexcept {
  const describe_context& c = ctx_of(context);
  if (offset >= c.used) return 0;
  const std::size_t g = offset >> granule_shift;
  const std::size_t end = (c.used + granule_bytes - 1) >> granule_shift;
  const std::size_t s = c.layout->start_at_or_before(g);
  if (s == static_cast<std::size_t>(-1)) return 0;
  const std::size_t next = c.layout->next_start(s, end);
  const std::size_t block_bytes = (next - s) << granule_shift;
  const std::size_t block_offset = s << granule_shift;
  permafrost::report_text out(buf, size);
  const unsigned code = c.layout->get(s);
  if (code == starts_buffer) {
    const void* buffer = reinterpret_cast<const void*>(c.base + block_offset);
    // A buffer is made right after the objects it belongs to: its owner is the object just
    // before it, or (a dict keys table cloned first) just after it.
    PyObject* owner = nullptr;
    const char* role = nullptr;
    if (s > 0) {
      const std::size_t before = c.layout->start_at_or_before(s - 1);
      if (before != static_cast<std::size_t>(-1) && (owner = object_at(c, before)) != nullptr)
        role = buffer_role(c, owner, buffer);
    }
    if (role == nullptr && next < end && (owner = object_at(c, next)) != nullptr)
      role = buffer_role(c, owner, buffer);
    if (role == nullptr) {
      out.text("a buffer at offset ").decimal(block_offset);
    } else {
      out.text(role).text(" of ");
      type_text(out, c, owner);
      out.text(" at offset ").decimal(reinterpret_cast<std::uintptr_t>(owner) - c.base);
    }
    out.text(" (+").decimal(offset - block_offset).text(" of ").decimal(block_bytes);
    return out.text(" bytes)").length();
  }
  PyObject* o = object_at(c, s);
  if (o == nullptr) return 0;
  const std::size_t object_offset = reinterpret_cast<std::uintptr_t>(o) - c.base;
  if (offset < object_offset) {
    out.text("the GC header of ");
    type_text(out, c, o);
    return out.text(" at offset ").decimal(object_offset).length();
  }
  type_text(out, c, o);
  out.text(" at offset ").decimal(object_offset).text(" (+").decimal(offset - object_offset);
  out.text(" of ").decimal(block_bytes - (object_offset - block_offset)).text(" bytes)");
  return out.length();
}

}  // namespace permafrost::python::native

#endif  // PF_NATIVE_SUPPORTED
