// permafrost for Python — the deep copy freeze_native() makes with CPython's own constructors
// (internal).
//
// Contract: builder::copy(obj) returns a deep copy of obj (a new reference) made while the build
// hooks are in build mode, so every object and buffer it allocates lands in the region:
//   - str (any subclass: an exact str), with its hash computed and, when not ASCII, its UTF-8
//     form cached; dict keys that are identifiers are interned (the interpreter's own interned
//     str is used when one exists), as CPython does for names -- on 3.13 the interned str lives
//     outside the region, immortal, because 3.13 writes every interned str at exit;
//   - int, float, bytes (subclasses: the exact type), bytes with their hash computed;
//   - tuple, frozenset (hash computed) as the exact types; dict, list and set as the types given
//     (the package's subclasses of dict, list and set whose mutators raise), built with
//     PyDict_New + PyDict_SetItem after its items (str-keyed tables stay CPython's str-keyed
//     kind), or for a dict of more than 5 items dict.fromkeys (one table of the source's size and
//     key kind) with the entries then replaced in place by the copies; PyList_New, PySet_New +
//     PySet_Add after their items: a container's buffers follow it in the region;
//   - objects that are already immortal (None, True, False, small ints, interned strs, the empty
//     tuple, objects of an earlier freeze_native()) are used as they are, not copied.
// An object reached twice is copied once (the copy is shared, as in the original); a cycle,
// an unsupported type or nesting deeper than 5000 containers raises build_error with the path
// (obj["users"][3]["created"]: datetime is not supported; a permafrost.freeze() view is refused
// saying to pass view.thaw(): copying it would run the thaw, and its scalars' constructors, in
// the middle of the copy). No Python code runs while copying:
// values are read with the concrete C API (PyDict_Next, PyList_GET_ITEM...), never through
// methods a subclass may override. Every source container, key and item is held by a strong
// reference while it is copied. Every 65536 objects, pending signals are handled (in pass
// mode, so a handler's objects do not land in the region); a handler that raises
// (KeyboardInterrupt) ends the copy with build_error{nullptr}, its exception left set.
//
// Thread safety: under the GIL, inside one build (build_hooks).
#pragma once

#include "native_layout.hpp"

#if PF_NATIVE_SUPPORTED

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "module_state.hpp"
#include "native_region.hpp"
#include "value_path.hpp"

namespace permafrost::python::native {

// A failed copy: the Python exception type to raise and its message (raised by the caller once
// the hooks are gone, so that the exception itself is not made in the region).
struct build_error {
  PyObject* type;
  std::string message;
};

// The types a frozen dict, list and set get (the package's subclasses).
struct native_types {
  PyTypeObject* dict = nullptr;
  PyTypeObject* list = nullptr;
  PyTypeObject* set = nullptr;
};

// Immortal objects of the kinds freeze_native() holds are used as they are, not copied: nothing
// ever frees them or writes their reference count.
bool reusable_as_is(PyObject* o, const native_types& t);

// A new reference released on scope exit.
struct owned {
  PyObject* p = nullptr;
  owned() = default;
  explicit owned(PyObject* o) noexcept : p(o) {}
  owned(owned&& o) noexcept : p(o.p) { o.p = nullptr; }
  owned& operator=(owned&& o) noexcept {
    std::swap(p, o.p);
    return *this;
  }
  owned(const owned&) = delete;
  ~owned() { Py_XDECREF(p); }
  PyObject* release() noexcept {
    PyObject* o = p;
    p = nullptr;
    return o;
  }
};

class builder {
 public:
  // `held` receives what drain_free_lists() pulls after signal handlers ran (see copy());
  // `views` is the module state whose FrozenDict, FrozenList and FrozenSet are refused by name.
  builder(region& r, build_hooks& hooks, const native_types& types, const module_state& views,
          std::vector<PyObject*>& held) noexcept
      : region_(r), hooks_(hooks), types_(types), views_(views), held_(held) {}
  builder(const builder&) = delete;
  builder& operator=(const builder&) = delete;
  ~builder();

  // Effects: see the contract. Throws build_error; std::bad_alloc when the region or the
  // process is out of memory.
  PyObject* copy(PyObject* obj);

  // Tuple sizes made (bit n: a tuple of n items), for drain_free_lists().
  std::uint32_t tuple_sizes() const noexcept { return tuple_sizes_; }
  // Objects copied so far.
  std::size_t objects() const noexcept { return objects_; }

 private:
  class path_step;
  class source_ref;

  // key: o is a dict key (an identifier str is interned). held: the caller holds a reference
  // to o of its own.
  PyObject* copy_value(PyObject* o, bool key, bool held);
  PyObject* copy_scalar(PyObject* o, bool key);
  PyObject* copy_str(PyObject* o, bool intern);
  PyObject* new_str(PyObject* o);
  PyObject* interned(PyObject* o);
  PyObject* copy_container(PyObject* o, bool shared);
  PyObject* copy_tuple(PyObject* o);
  PyObject* copy_list(PyObject* o);
  PyObject* copy_dict(PyObject* o);
  bool odict_walked_in_order(PyObject* o);
  PyObject* copy_large_dict(PyObject* o);
  PyObject* dict_of_copies(std::vector<owned>& copies);
  void fromkeys();
  [[noreturn]] void equal_copies(PyObject* copy);
  PyObject* copy_set(PyObject* o);
  void give_weakref_head(PyObject* frozenset);
  PyObject* checked(PyObject* made);
  void switch_type(PyObject* o, PyTypeObject* t);
  void count_object();
  [[noreturn]] void fail(PyObject* type, const std::string& what);

  region& region_;
  build_hooks& hooks_;
  native_types types_;
  const module_state& views_;
  std::vector<PyObject*>& held_;
  // Source object -> its copy (borrowed: the copy's parent holds it), for objects referenced
  // more than once; nullptr while a container is being copied (a cycle).
  std::unordered_map<PyObject*, PyObject*> memo_;
  std::vector<value_path_step> path_;  // each key held by its path_step
  std::size_t depth_ = 0;
  std::uint32_t tuple_sizes_ = 0;
  std::size_t objects_ = 0;
  std::vector<PyObject*> rejected_;  // objects a free list handed back from outside the region
  PyObject* fromkeys_ = nullptr;     // dict.fromkeys, for copy_large_dict
};

}  // namespace permafrost::python::native

#endif  // PF_NATIVE_SUPPORTED
