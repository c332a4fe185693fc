// permafrost for Python — freeze(): Python objects into the frozen format (see freeze.hpp).
#include "freeze.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "format.hpp"
#include "graph_output.hpp"
#include "keys.hpp"
#include "module_state.hpp"
#include "permafrost/arena.hpp"
#include "permafrost/hash.hpp"
#include "permafrost/memstat.hpp"
#include "py_ref.hpp"
#include "reading.hpp"
#include "scalars.hpp"
#include "store.hpp"
#include "value_path.hpp"
#include "values.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

constexpr std::uint32_t max_depth = 5000;
// Stack the walk keeps free (see freezer::container).
constexpr std::size_t min_stack_left = std::size_t{256} << 10;

// Lists, tuples and dicts with more items than this are frozen live, without a snapshot of
// their items (freezer::large_sequence, large_dict); smaller ones are snapshotted.
constexpr Py_ssize_t large_container = 4096;

// What freezing one value gave: its word, and how many containers deep it nests (0: a scalar, a
// str, bytes or int), counted through containers stored once for several references too.
struct frozen {
  word w;
  std::uint32_t height = 0;
};

// Strong references to the items of the containers being walked, on one stack shared by all
// of them (no allocation per container): a container's items are held from the mark taken when
// it started to the end, and released when it is done (or when an error unwinds it).
class held_items {
 public:
  explicit held_items(std::vector<PyObject*>& stack) : stack_(stack), mark_(stack.size()) {}
  held_items(const held_items&) = delete;
  held_items& operator=(const held_items&) = delete;
  ~held_items() {
    for (std::size_t i = mark_; i < stack_.size(); ++i) Py_DECREF(stack_[i]);
    stack_.resize(mark_);
  }
  void add(PyObject* o) {
    stack_.push_back(o);  // first: if it throws, nothing is left to release
    Py_INCREF(o);
  }
  // Item i (held). The stack may have grown and moved since: index, never keep a pointer.
  PyObject* operator[](std::size_t i) const { return stack_[mark_ + i]; }
  // Holds o as item i instead, releasing the item it was.
  void replace(std::size_t i, ref o) {
    PyObject* old = stack_[mark_ + i];
    stack_[mark_ + i] = o.release();
    Py_DECREF(old);
  }
  std::size_t size() const { return stack_.size() - mark_; }

 private:
  std::vector<PyObject*>& stack_;
  std::size_t mark_;
};

// Truncates a stack back to the size it had when the scope began.
template <class T>
class stack_scope {
 public:
  explicit stack_scope(std::vector<T>& stack) : stack_(stack), mark_(stack.size()) {}
  stack_scope(const stack_scope&) = delete;
  stack_scope& operator=(const stack_scope&) = delete;
  ~stack_scope() { stack_.resize(mark_); }

 private:
  std::vector<T>& stack_;
  std::size_t mark_;
};

// Holding references. Any call into Python (an allocation that triggers a GC pass running a
// finalizer, a key's __repr__ on the error path) may run code that mutates or drops anything in
// the graph. So the freezer owns a strong reference to every object for as long as it uses it:
// each container while it is walked, a snapshot of each list's, dict's and set's items (taken
// before anything is hashed or frozen), and every object in the identity memo. A container that
// changes during the walk is frozen as its snapshot; except that a dict, list or tuple of more
// than large_container items is walked live, each key and item held while it is frozen, and a
// change to its size or keys raises RuntimeError (large_sequence, large_dict).
class freezer {
 public:
  // Effects: a new memfd arena named `name` to write into (graph_output.hpp).
  freezer(module_state& state, std::string_view name) : state_(state), out_(name, state.forks) {}

  // Pre: the caller holds a strong reference to o for the call (the snapshots do; so does the
  // root's caller), so a value reached once has exactly two: its container's and that one.
  frozen value(PyObject* o) {
    // Ctrl-C (and any signal handler) runs every 4096 values: a long freeze stays interruptible,
    // and what it wrote is dropped with the partial arena (graph_output's destructor).
    if ((++values_ & 0xfff) == 0 && PyErr_CheckSignals() < 0) throw py_error{};
    if (o == Py_None) return {const_none};
    if (o == Py_True) return {const_true};
    if (o == Py_False) return {const_false};
    if (PyLong_Check(o)) return {integer(o)};
    if (PyFloat_Check(o)) {
      const double d = PyFloat_AS_DOUBLE(o);
      word bits;
      std::memcpy(&bits, &d, sizeof bits);
      if ((bits & tag_mask) == 0) return {bits | tag_inline_float};
      const std::uint64_t off = alloc(8);
      std::memcpy(at(off), &d, 8);
      return {off | tag_float};
    }
    if (PyUnicode_Check(o)) return {str(o)};
    if (PyBytes_Check(o)) {
      return {
          blob(kind_bytes, 0, PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)))};
    }
    if (PyDict_Check(o)) return container(o, &freezer::dict);
    if (PyList_Check(o) || PyTuple_Check(o)) return container(o, &freezer::sequence);
    if (PyAnySet_Check(o)) return container(o, &freezer::set);
    if (is_view(state_, o)) {  // freezing a view copies it
      const reading r(o);
      if (!r) throw py_error{};
      PyObject* thawed = check(thaw_word(state_, r.base, r.off));
      keep_.emplace_back(thawed);
      return value(thawed);
    }
    if (scalar_encoding e; encode_scalar(o, e)) {  // datetime, Decimal, UUID...; Enum: its value
      if (!e.replacement.get())
        return {blob(static_cast<kind>(e.kind), e.flags, e.payload.data(), e.payload.size())};
      return value(enum_value(o, std::move(e.replacement)));
    }
    fail(PyExc_TypeError, short_type_name(o) + " is not supported");
  }

  // Effects: writes the root header for `root` and returns the view of the frozen graph's root,
  // or for a scalar root the ordinary object (no arena kept).
  PyObject* finish(word root) {
    root_header rh{};
    // v2 only when the graph needs it (format.hpp): others stay readable by older readers.
    std::memcpy(rh.magic, uses_v2_ ? root_magic : root_magic_v1, sizeof root_magic);
    rh.root = root;
    std::memcpy(out_.at(0), &rh, sizeof rh);
    const std::uint8_t root_kind =
        (root & tag_mask) == tag_node ? node_at<node_header>(out_.at(0), root)->kind : 0;
    if (root_kind != kind_list && root_kind != kind_tuple && !is_dict(root_kind) &&
        root_kind != kind_set && root_kind != kind_frozenset) {
      // A scalar root: an ordinary (immutable) object says it all; no arena needed.
      return thaw_word(state_, out_.at(0), root);
    }
    const std::size_t size = out_.size();
    ref store = store_from_arena(state_, out_.finish(), size);
    return root_of(reinterpret_cast<store_object*>(store.get()));
  }

  // build_list(values): the values of an iterable, frozen one at a time, as a list's root.
  // Each value is released before the next is pulled: what stays is its word (8 bytes).
  word build_list(PyObject* iterable) {
    ref it(check(PyObject_GetIter(iterable)));
    growing_array<word> words;
    std::uint32_t height = 0;
    path_.push_back({at_index, nullptr, 0});
    for (Py_ssize_t i = 0;; ++i) {
      ref item(PyIter_Next(it.get()));
      out_.check_not_forked();  // the iterable may have forked: stop the child here
      if (!item.get()) {
        if (PyErr_Occurred()) throw py_error{};
        break;
      }
      path_.back().index = i;
      const frozen f = value(item.get());
      height = std::max(height, f.height);
      words.push_back(f.w);
      end_item();
    }
    path_.pop_back();
    out_.forget_small_nodes();  // the root's node is all that is left to write
    if (height >= max_depth) fail(PyExc_TypeError, "nested deeper than 5000 containers");
    const std::size_t n = words.size();
    if (n > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const std::uint64_t off = alloc(sizeof(node_header) + 8 * n);
    put_header(off, kind_list, 0, n);
    if (n) std::memcpy(at(off) + sizeof(node_header), words.data(), 8 * n);
    return off;
  }

  // build_dict(items): the (key, value) pairs of an iterable, frozen one pair at a time, as a
  // dict's root. Each pair is released before the next is pulled: what stays is its key's word
  // (4 bytes, 8 for a key word wider than that; its hash is computed again from it at the end)
  // and its value's word (8 bytes), or, while every value is a record of one shape, the
  // record's fields (4 or 8 bytes each; its place is its row's). A key given again keeps its first
  // position and takes the last value, as dict(items) does.
  word build_dict(PyObject* iterable) {
    ref it(check(PyObject_GetIter(iterable)));
    column_buffer keys;         // 4 bytes a key word where it fits
    value_sink sink(false, 0);  // rows come first, in order: no word is kept for them
    std::uint32_t height = 0;
    for (Py_ssize_t i = 0;; ++i) {
      ref pair(PyIter_Next(it.get()));
      out_.check_not_forked();  // the iterable may have forked: stop the child here
      if (!pair.get()) {
        if (PyErr_Occurred()) throw py_error{};
        break;
      }
      ref seq;
      PyObject* key;
      PyObject* val;
      if (PyTuple_CheckExact(pair.get()) && PyTuple_GET_SIZE(pair.get()) == 2) {
        key = PyTuple_GET_ITEM(pair.get(), 0);
        val = PyTuple_GET_ITEM(pair.get(), 1);
      } else {
        seq = ref(PySequence_Fast(pair.get(), ""));
        if (!seq.get()) {
          if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw py_error{};
          PyErr_Format(PyExc_TypeError,
                       "cannot convert dictionary update sequence element #%zd to a sequence", i);
          throw py_error{};
        }
        const Py_ssize_t len = PySequence_Fast_GET_SIZE(seq.get());
        if (len != 2) {
          PyErr_Format(PyExc_ValueError,
                       "dictionary update sequence element #%zd has length %zd; 2 is required", i,
                       len);
          throw py_error{};
        }
        // A tuple of the two, which holds them while they are frozen: user code run meanwhile
        // (a tzinfo, an __index__) may empty a list pair, and a key or value it held alone
        // would be freed under path_, item_key_ and the walk. (A tuple pair cannot change; a
        // record's references are counted, so none is added where none is needed.)
        seq = ref(check(PySequence_Tuple(seq.get())));
        key = PyTuple_GET_ITEM(seq.get(), 0);
        val = PyTuple_GET_ITEM(seq.get(), 1);
      }
      const ref stored_key(check(storable_key(state_, key)));  // held for the item
      key = stored_key.get();
      (void)hash_of(key, i, key_of);  // refuses an unhashable key here; computed again at the end
      path_.push_back({key_of, nullptr, i});
      const frozen k = unique_value(key);
      path_.back() = {value_of, key, 0};
      const item_key_scope in_item(*this, key, k.w);
      const std::uint32_t value_height = add_value(sink, val);  // pushes its word, or its row
      path_.pop_back();
      height = std::max({height, k.height, value_height});
      if (may_hold_nan(k.w) && holds_nan(key))
        nan_keys_.emplace_back(keys.size(), ref(Py_NewRef(key)));
      else if (subclass_key(key)) subclass_keys_.emplace_back(keys.size(), ref(Py_NewRef(key)));
      keys.push_back(k.w);
      end_item();
    }
    out_.forget_small_nodes();  // the root's table and node are all that is left to write
    if (height >= max_depth) fail(PyExc_TypeError, "nested deeper than 5000 containers");
    const std::size_t n = drop_repeated_keys(keys, sink);
    if (n > max_table_keys) fail(PyExc_ValueError, "too large (at most 2**31 - 1 keys)");
    const auto count = static_cast<std::uint32_t>(n);
    bool narrow = true;
    for (std::size_t i = 0; i < n && narrow; ++i) narrow = fits_narrow_key(keys[i]);
    const std::uint64_t keys_off = alloc(table_bytes(n, table_capacity(count), narrow));
    new_table_header(keys_off, kind_keys, count, narrow);
    auto* t = reinterpret_cast<table_header*>(at(keys_off));
    for (std::size_t i = 0; i < n; ++i) {
      const word w = keys[i];
      const std::uint64_t h = filed_key_hash(w, i);  // may run no user code, but may allocate
      t = reinterpret_cast<table_header*>(at(keys_off));
      add_table_entry(t, static_cast<std::uint32_t>(i), h);
      put_table_key(t, i, w);
      // The key words written go back as the table's are written: never both resident.
      if ((i + 1) % (std::size_t{16} << 10) == 0) keys.release_prefix(i + 1);
    }
    keys.clear();
    return finish_values(sink, keys_off, 0);
  }

 private:
  class column_buffer;  // below, with the tables of records
  struct value_sink;

  // A large table's key is not remembered for later values (unique_value), but a record often
  // holds its own key ({"id": "u123", ...} under "u123": what `python -m permafrost build --key`
  // makes). While an item's value is frozen, a str equal to its key reuses the key's node.
  // The key is held by the caller for the scope.
  class item_key_scope {
   public:
    item_key_scope(freezer& f, PyObject* key, word w)
        : f_(f), saved_(f.item_key_), saved_word_(f.item_key_word_) {
      f.item_key_ = PyUnicode_Check(key) ? key : nullptr;
      f.item_key_word_ = w;
    }
    item_key_scope(const item_key_scope&) = delete;
    item_key_scope& operator=(const item_key_scope&) = delete;
    ~item_key_scope() {
      f_.item_key_ = saved_;
      f_.item_key_word_ = saved_word_;
    }

   private:
    freezer& f_;
    PyObject* saved_;
    word saved_word_;
  };

  // Two exact strs with the same characters (comparing them runs no Python code).
  static bool same_exact_str(PyObject* a, PyObject* b) {
    return PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b) &&
           PyUnicode_GET_LENGTH(a) == PyUnicode_GET_LENGTH(b) && PyUnicode_Compare(a, b) == 0;
  }

  // value(o) for a value unlikely to recur, a key of a large table (its keys are distinct): its
  // small nodes reuse equal ones stored before, but are not remembered for later values.
  frozen unique_value(PyObject* o) {
    const bool saved = remember_small_;
    remember_small_ = false;
    struct restore {
      bool& flag;
      bool saved;
      ~restore() { flag = saved; }
    } restore_flag{remember_small_, saved};
    return value(o);
  }

  // A builder's item is done: what the walk held for it goes. Identity sharing does not reach
  // across items (a container reached from two items is stored twice; small ones are stored
  // once by content all the same), so nothing of an item outlives it here.
  void end_item() {
    memo_.clear();
    memo_holds_.clear();
    keep_.clear();
  }

  // Drops the entries whose key equals an earlier entry's, giving that entry their value (the
  // last one wins, at the first position). Returns how many entries remain (compacted). The
  // sink's rows, kept without a word while they come in order, get their words (row markers)
  // at the first repeated key, as a moved value needs one.
  std::size_t drop_repeated_keys(column_buffer& keys, value_sink& sink) {
    const std::size_t n = keys.size();
    if (n == 0 || n > max_table_keys) return n;
    growing_array<word>& values = sink.words;
    std::vector<bool> dropped;
    // A transient index of its own, at most 3/4 full (4 bytes a slot below 2**24 keys, 5.3 a
    // key: it adds to the build's peak), each probe starting at slot (low half of the hash) *
    // capacity >> 32. A slot holds the entry and the top bits of its hash, as a table's index
    // does: at that load a probe passes several slots, and only a matching tag costs a key
    // comparison (reading both keys' bytes).
    const auto find_repeats = [&](auto slot_type) {
      using Slot = decltype(slot_type);
      using slot = index_slot<Slot>;
      growing_array<Slot> slots;
      const std::uint64_t capacity = n + n / 3 + 1;
      slots.resize_zeroed(capacity);
      std::uint64_t probes = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t h = duplicate_hash(keys, i);
        const Slot tag = slot::tag_of_hash(h);
        for (std::uint64_t pos = (h & UINT32_MAX) * capacity >> 32;;
             pos = pos + 1 == capacity ? 0 : pos + 1) {
          // Keys whose hashes collide (an int hashes to itself modulo 2**61 - 1) probe long
          // runs, quadratic in their number as in a dict: stay interruptible, as value() does.
          if ((++probes & 0xfff) == 0 && PyErr_CheckSignals() < 0) throw py_error{};
          const Slot s = slots[pos];
          if (s == 0) {
            slots[pos] = slot::make(h, static_cast<std::uint32_t>(i));
            break;
          }
          if (slot::tag(s) != tag) continue;
          const auto j = static_cast<std::size_t>(slot::entry_plus_one(s) - 1);
          if (same_built_key(keys, j, i, h)) {
            if (dropped.empty()) {
              dropped.resize(n);
              if (sink.tabular && !sink.markers) {  // every value so far is row i, in order
                values.reserve_for(n);
                for (std::uint32_t r = 0; r < sink.rows; ++r) values.push_back(row_marker(r));
                sink.markers = true;
              }
            }
            values[j] = values[i];
            dropped[i] = true;
            break;
          }
        }
      }
    };
    if (narrow_table(n)) find_repeats(std::uint32_t{});
    else find_repeats(std::uint64_t{});
    if (dropped.empty()) return n;
    std::size_t m = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (dropped[i]) continue;
      keys.set(m, keys[i]);
      values[m] = values[i];
      ++m;
    }
    keys.truncate(m);
    values.resize(m);
    return m;
  }

  // key_hash() of the key a frozen word stores, from its bytes for a str (no object made),
  // else of the key thawed (builtin types only: no user code runs; equal keys hash equal).
  std::uint64_t stored_key_hash(word w) {
    std::string_view s;
    if ((w & tag_mask) == tag_short_str) {
      char b[8];
      short_str_bytes(w, b);
      return permafrost::detail::hash_bytes(b, short_str_size(w));
    }
    if (stored_str(out_.at(0), w, s)) return permafrost::detail::hash_bytes(s.data(), s.size());
    ref key(check(thaw_word(state_, out_.at(0), w)));
    std::uint64_t h;
    if (!key_hash(state_, key.get(), h)) throw py_error{};
    return h;
  }

  // The hash entry i of a table is filed under in its index: its key's key_hash, or for a key
  // holding a NaN one spread by its entry. Every NaN has one hash (keys.cpp's hash_nan), so
  // 50,000 distinct NaN keys (distinct objects, distinct keys in a dict) filed under it made
  // one probe run, quadratic to build and as long to search. No lookup can find such a key
  // (what it reads back is a new NaN, unequal to anything), so where it is filed changes no
  // answer: a lookup of a NaN probes from hash_nan and finds it absent, as before.
  static std::uint64_t filed_hash(std::uint64_t h, PyObject* key, std::size_t i) {
    if (!is_nan_key(key)) return h;
    return permafrost::detail::hash_word(h + 0x9e3779b97f4a7c15ull * (std::uint64_t{i} + 1));
  }

  // Whether the key o is or holds a float NaN (a tuple or frozenset holding one: unequal to
  // every key too).
  static bool is_nan_key(PyObject* o) {
    return (PyFloat_Check(o) || PyTuple_Check(o) || PyFrozenSet_Check(o)) && holds_nan(o);
  }

  // filed_hash() of entry i, whose key the frozen word w stores.
  std::uint64_t filed_key_hash(word w, std::size_t i) {
    if (!may_hold_nan(w)) return stored_key_hash(w);
    ref key(check(thaw_word(state_, out_.at(0), w)));
    std::uint64_t h;
    if (!key_hash(state_, key.get(), h)) throw py_error{};
    return filed_hash(h, key.get(), i);
  }

  // Whether build_dict's keys j and i (of `keys`; i's hash hb, from duplicate_hash) are one key.
  // A key holding a NaN is one key with another only when both are the same object: their frozen
  // words are equal whatever NaN they hold, and a dict tells NaNs apart by identity. (A dict also
  // merges two tuples holding the same NaN object; this does not: comparing them would run the
  // elements' __eq__, user code for a subclass, where the builders run none.)
  // Keys whose copies are equal, one of them a subclass_key, are one key when they are the same
  // object; else dict(items) may hold both, as the subclass's own __eq__ or __hash__ says, and
  // those are not run (user code: it may raise or fork): refused, the copy cannot hold both.
  bool same_built_key(column_buffer& keys, std::size_t j, std::size_t i, std::uint64_t hb) {
    if (!nan_keys_.empty()) {
      PyObject* x = nan_key(j);
      PyObject* y = nan_key(i);
      if (x || y) return x == y;
    }
    if (!same_hashed_key(keys[j], keys[i], hb)) return false;
    if (subclass_keys_.empty()) return true;
    PyObject* x = key_at(subclass_keys_, j);
    PyObject* y = key_at(subclass_keys_, i);
    if (x == y) return true;  // the same object, or neither of a subclass
    fail_equal_copies(keys[i], " and one is of a subclass whose own __eq__ or __hash__ (not run) "
                               "may tell them apart, as dict(items) would: the copy cannot");
  }

  // The hash the duplicate pass files key i under: its stored hash, or for a key holding a NaN
  // its object's address (every NaN's stored hash is one value: thousands of distinct NaN keys
  // would probe one run, quadratic).
  std::uint64_t duplicate_hash(column_buffer& keys, std::size_t i) {
    if (!nan_keys_.empty())
      if (PyObject* o = nan_key(i))
        return permafrost::detail::hash_word(reinterpret_cast<std::uintptr_t>(o));
    return stored_key_hash(keys[i]);
  }

  // The object of build_dict's key i when it holds a NaN, else nullptr.
  PyObject* nan_key(std::size_t i) const { return key_at(nan_keys_, i); }

  // The object of entry i in `keys` (build_dict's keys by index, in order), else nullptr.
  static PyObject* key_at(const std::vector<std::pair<std::size_t, ref>>& keys, std::size_t i) {
    const auto it = std::lower_bound(keys.begin(), keys.end(), i,
                                     [](const auto& e, std::size_t k) { return e.first < k; });
    return it != keys.end() && it->first == i ? it->second.get() : nullptr;
  }

  // Whether the key o (hashed: its depth checked) is or holds, in a tuple or frozenset, an
  // object of a subclass (of str, int, tuple...) with an __eq__ or __hash__ of its own: that may
  // tell apart keys whose copies, of the base types, are equal. Such keys are checked for equal
  // copies (table, large_dict, same_built_key); the usual keys, of exact types, answer at once.
  static bool subclass_key(PyObject* o) {
    if (PyUnicode_CheckExact(o) || PyLong_CheckExact(o) || o == Py_None || PyBool_Check(o) ||
        PyFloat_CheckExact(o) || PyBytes_CheckExact(o))
      return false;
    PyTypeObject* base = PyUnicode_Check(o)     ? &PyUnicode_Type
                         : PyLong_Check(o)      ? &PyLong_Type
                         : PyFloat_Check(o)     ? &PyFloat_Type
                         : PyBytes_Check(o)     ? &PyBytes_Type
                         : PyTuple_Check(o)     ? &PyTuple_Type
                         : PyFrozenSet_Check(o) ? &PyFrozenSet_Type
                                                : nullptr;
    if (!base) return false;  // a FrozenSet view: equal to its copy, as it hashes
    if (Py_TYPE(o)->tp_richcompare != base->tp_richcompare || Py_TYPE(o)->tp_hash != base->tp_hash)
      return true;
    return any_item(o, subclass_key);
  }

  // Whether test(item) holds for an item of the tuple or frozenset o (false for other objects).
  // No user code runs: the base types' iterators.
  static bool any_item(PyObject* o, bool (*test)(PyObject*)) {
    if (PyTuple_Check(o)) {
      for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(o); ++k)
        if (test(PyTuple_GET_ITEM(o, k))) return true;
      return false;
    }
    if (!PyFrozenSet_Check(o)) return false;
    ref it(check(PyFrozenSet_Type.tp_iter(o)));
    while (PyObject* e = PyIter_Next(it.get())) {
      const bool found = test(e);
      Py_DECREF(e);
      if (found) return true;
    }
    if (PyErr_Occurred()) throw py_error{};
    return false;
  }

  // Two keys or elements of one container, told apart by a subclass's __eq__ or __hash__, are
  // equal once copied (the frozen word w stores the copy): the table cannot hold both. As
  // freeze_native() says (native_build.cpp, builder::equal_copies).
  [[noreturn]] void fail_equal_copies(word w, const char* why = ": a subclass's __eq__ or "
                                                                "__hash__ told them apart, and the "
                                                                "copy cannot") {
    std::string r = "?";
    if (ref copy(thaw_word(state_, out_.at(0), w)); copy.get()) {  // builtin types: no user code
      ref text(PyObject_Repr(copy.get()));
      Py_ssize_t len = 0;
      const char* utf8 = text.get() ? PyUnicode_AsUTF8AndSize(text.get(), &len) : nullptr;
      if (utf8) r.assign(utf8, static_cast<std::size_t>(std::min<Py_ssize_t>(len, 200)));
    }
    PyErr_Clear();
    fail(PyExc_TypeError,
         "two keys or elements are equal once copied as their base types (" + r + ")" + why);
  }

  // Whether o is a float NaN, or a tuple or frozenset holding one at any depth (o's depth was
  // checked by hash_of; no user code runs: the base types' iterators).
  static bool holds_nan(PyObject* o) {
    if (PyFloat_Check(o)) return std::isnan(PyFloat_AS_DOUBLE(o));
    return any_item(o, holds_nan);
  }

  // Whether frozen key a equals frozen key b, whose hash is hb: from their encodings where
  // those tell, else by hash, then as Python's == says.
  bool same_hashed_key(word a, word b, std::uint64_t hb) {
    if (a == b) return true;
    if (const int known = same_encoded_key(a, b); known >= 0) return known == 1;
    return stored_key_hash(a) == hb && same_key(a, b);
  }

  // Whether two frozen keys with the same hash are equal, as Python's == says (1 == 1.0): the
  // same word, or else equal once thawed (builtin types only: no user code runs).
  bool same_key(word a, word b) {
    if (a == b) return true;
    if (const int known = same_encoded_key(a, b); known >= 0) return known == 1;
    ref x(check(thaw_word(state_, out_.at(0), a)));
    ref y(check(thaw_word(state_, out_.at(0), b)));
    const int eq = PyObject_RichCompareBool(x.get(), y.get(), Py_EQ);
    if (eq < 0) throw py_error{};
    return eq == 1;
  }

  // Whether two different words of one encoding are equal keys, from their bytes (no objects
  // made, so colliding keys cost what they cost a dict): 1 or 0, or -1 where only Python's ==
  // can tell (1 == 1.0, 0.0 == -0.0, tuples). An int, a str and a bytes value each have one
  // encoding: an inline int or short str is its word; a str node is its UTF-8 bytes, a big
  // int's the shortest two's complement.
  int same_encoded_key(word a, word b) {
    const word tag = a & tag_mask;
    if (tag != (b & tag_mask)) return -1;
    if (tag == tag_int || tag == tag_short_str) return 0;
    if (tag == tag_packed_str) {
      return packed_str(out_.at(0), a) == packed_str(out_.at(0), b);
    }
    if (tag != tag_node) return -1;
    const auto* x = node_at<node_header>(out_.at(0), a);
    const auto* y = node_at<node_header>(out_.at(0), b);
    if (is_str(x->kind) && is_str(y->kind)) {
      return str_size(x) == str_size(y) &&
             std::memcmp(str_bytes(x), str_bytes(y), str_size(x)) == 0;
    }
    if (x->kind != y->kind || (x->kind != kind_bytes && x->kind != kind_bigint)) return -1;
    return x->count == y->count && std::memcmp(x + 1, y + 1, x->count) == 0;
  }

  using step = value_path_step;
  using step_kind = value_path_kind;
  using enum value_path_kind;

  [[noreturn]] void fail(PyObject* type, const std::string& what) {
    std::string msg = path_text(path_) + ": " + what;
    PyErr_SetString(type, msg.c_str());
    throw py_error{};
  }

  std::uint64_t alloc(std::size_t bytes) { return out_.alloc(bytes); }
  // Any allocation may move the arena (graph_output.hpp): take pointers again after one.
  char* at(std::uint64_t off) { return out_.at(off); }
  void put_word(std::uint64_t off, word w) { std::memcpy(at(off), &w, sizeof w); }
  void put_header(std::uint64_t off, kind k, std::uint8_t flags, std::size_t count) {
    if (count > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const node_header h{k, flags, 0, static_cast<std::uint32_t>(count)};
    std::memcpy(at(off), &h, sizeof h);
  }

  // A table's header (format.hpp write_table_header): its index is a v2 one (flag_any_capacity).
  void new_table_header(std::uint64_t off, kind k, std::uint32_t count, bool narrow_keys) {
    write_table_header(at(off), k, count, narrow_keys);
    uses_v2_ = true;
  }

  word blob(kind k, std::uint8_t flags, const char* data, std::size_t n) {
    if (n > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const node_header h{k, flags, 0, static_cast<std::uint32_t>(n)};
    if (sizeof h + n <= max_stored_once) {
      small_node node;
      std::memcpy(node.bytes, &h, sizeof h);
      if (n) std::memcpy(node.bytes + sizeof h, data, n);
      return out_.store_once(node.bytes, node.size(sizeof h + n), remember_small_);
    }
    const std::uint64_t off = alloc(sizeof h + n);
    std::memcpy(at(off), &h, sizeof h);
    std::memcpy(at(off) + sizeof h, data, n);
    return off;
  }

  // Small immutable nodes (strs, bytes, lists, tuples of at most 64 bytes) with equal bytes are
  // stored once (graph_output::store_once): frozen data is never written, so sharing them is
  // invisible to readers, and records repeat small values (tags, enums, short lists) a lot. Such
  // a node is put together here first, zero padded to 8 bytes, and stored only when new.
  static constexpr std::size_t max_stored_once = 64;
  struct small_node {
    char bytes[max_stored_once] = {};
    static std::size_t size(std::size_t n) { return (n + 7) & ~std::size_t{7}; }
  };

  word str(PyObject* o) {
    if (item_key_ && (o == item_key_ || same_exact_str(o, item_key_))) return item_key_word_;
    std::string_view s;
    ref holder;
    if (!utf8_of(o, s, holder)) throw py_error{};
    if (s.size() <= max_short_str && !holder.get()) return short_str_word(s.data(), s.size());
    if (s.size() <= max_packed_str && !holder.get()) {  // no node: a length byte and the bytes
      char packed[1 + max_packed_str];
      packed[0] = static_cast<char>(s.size());
      std::memcpy(packed + 1, s.data(), s.size());
      uses_v2_ = true;
      return packed_str_word(out_.store_packed(packed, 1 + s.size(), remember_small_));
    }
    std::uint8_t flags = PyUnicode_IS_ASCII(o) ? flag_ascii : 0;
    if (holder.get()) flags |= flag_surrogates;
    if (s.size() < 65536) {  // a 4-byte header
      const node_header h{kind_str16, flags, static_cast<std::uint16_t>(s.size()), 0};
      if (4 + s.size() <= max_stored_once) {
        small_node node;
        std::memcpy(node.bytes, &h, 4);
        std::memcpy(node.bytes + 4, s.data(), s.size());
        return out_.store_once(node.bytes, node.size(4 + s.size()), remember_small_);
      }
      const std::uint64_t off = alloc(4 + s.size());
      std::memcpy(at(off), &h, 4);
      std::memcpy(at(off) + 4, s.data(), s.size());
      return off;
    }
    return blob(kind_str, flags, s.data(), s.size());
  }

  word integer(PyObject* o) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) throw py_error{};
    if (!overflow && v >= inline_int_min && v <= inline_int_max)
      return (static_cast<word>(v) << 3) | tag_int;
    // Big: int.to_bytes(bit_length // 8 + 1, "little", signed=True).
    // int's own methods, called unbound: an int subclass's overrides (user code) do not run.
    auto* int_type = reinterpret_cast<PyObject*>(&PyLong_Type);
    ref bits(check(PyObject_CallMethod(int_type, "bit_length", "O", o)));
    const Py_ssize_t nbits = PyLong_AsSsize_t(bits.get());
    if (nbits < 0) throw py_error{};
    ref to_bytes(check(PyObject_GetAttrString(int_type, "to_bytes")));
    ref args(check(Py_BuildValue("(OnO)", o, nbits / 8 + 1, state_.str_little)));
    ref b(check(PyObject_Call(to_bytes.get(), args.get(), state_.kw_signed)));
    return blob(kind_bigint, 0, PyBytes_AS_STRING(b.get()),
                static_cast<std::size_t>(PyBytes_GET_SIZE(b.get())));
  }

  // The value to freeze for the Enum member `member`, whose `_value_` is `v`: v, or where v is a
  // member in turn, the end of that chain. Followed in a loop, each link held until the freeze
  // ends: recursing once per member overflowed the C stack (SIGSEGV) on a member whose value was
  // set to itself, and on a chain of 100,000 members each valued by the next.
  PyObject* enum_value(PyObject* member, ref v) {
    keep_.push_back(std::move(v));
    ref next = enum_member_value(keep_.back().get());
    if (!next.get()) return keep_.back().get();  // the usual member: no chain to follow
    std::unordered_set<PyObject*> chain{member, keep_.back().get()};
    for (;;) {
      if (!chain.insert(next.get()).second)
        fail(PyExc_TypeError, "cycle: this Enum member's value leads back to a member on its way");
      if (chain.size() > max_depth)
        fail(PyExc_TypeError, "an Enum member valued by a member, and so on, more than 5000 deep");
      keep_.push_back(std::move(next));
      next = enum_member_value(keep_.back().get());
      if (!next.get()) return keep_.back().get();
    }
  }

  // The identity memo, cycle and depth checks around one container. A container with more
  // references than its container's and the caller's may be reached again: it is stored once,
  // marked flag_shared, and every later reference gets the same word (format.hpp, "Sharing").
  // One reached once (the usual record) skips the memo.
  frozen container(PyObject* o, frozen (freezer::*build)(PyObject*, std::uint8_t)) {
    const bool maybe_shared = Py_REFCNT(o) > 2;
    if (maybe_shared) {
      if (const auto it = memo_.find(o); it != memo_.end()) return it->second;
    }
    const bool seen = open_.size() <= 64 ? std::find(open_.begin(), open_.end(), o) != open_.end()
                                         : open_set_.count(o) != 0;
    if (seen) fail(PyExc_TypeError, "cycle: this " + short_type_name(o) + " contains itself");
    if (open_.size() >= max_depth) fail(PyExc_TypeError, "nested deeper than 5000 containers");
    // The walk recurses once per level, up to ~1 KiB of stack each: a thread with a small stack
    // (threading.stack_size) would overflow it long before 5000 levels. Checked every 32 levels,
    // keeping room for what a level may call (a scalar's encoder, a GC pass's finalizers).
    if ((open_.size() & 31) == 31 && permafrost::stack_bytes_left() < min_stack_left) {
      fail(PyExc_RecursionError, "nested too deep for this thread's stack (" +
                                     std::to_string(open_.size()) +
                                     " containers): freeze it in a thread with a larger stack "
                                     "(threading.stack_size) or in the main thread");
    }
    ref hold(Py_NewRef(o));
    if (open_.size() == 64) open_set_.insert(open_.begin(), open_.end());
    open_.push_back(o);
    if (open_.size() > 64) open_set_.insert(o);
    const frozen f = (this->*build)(o, maybe_shared ? flag_shared : 0);
    if (open_.size() > 64) open_set_.erase(o);
    open_.pop_back();
    if (open_.size() == 64) open_set_.clear();
    // Through containers stored once, a path can nest deeper than the walk's own stack.
    if (f.height > max_depth) fail(PyExc_TypeError, "nested deeper than 5000 containers");
    if (maybe_shared) {
      memo_.emplace(o, f);
      memo_holds_.push_back(std::move(hold));  // no other object may take its address
    }
    return f;
  }

  frozen sequence(PyObject* o, std::uint8_t shared) {
    const bool tuple = PyTuple_Check(o);
    if ((tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o)) > large_container)
      return large_sequence(o, tuple, shared);
    // The items as they are now, each held: a list may change while its items are frozen.
    held_items items(held_);
    const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
    bool holds_a_nan = false;
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* item = tuple ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i);
      items.add(item);
      holds_a_nan =
          holds_a_nan || (!tuple && PyFloat_Check(item) && std::isnan(PyFloat_AS_DOUBLE(item)));
    }
    // The items first (on a shared stack), then the node, so the node is last and can be deduped.
    const std::size_t mark = scratch_.size();
    std::uint32_t height = 0;
    path_.push_back({at_index, nullptr, 0});
    for (Py_ssize_t i = 0; i < n; ++i) {
      path_.back().index = i;
      const frozen f = value(items[static_cast<std::size_t>(i)]);
      height = std::max(height, f.height);
      scratch_.push_back(f.w);
    }
    path_.pop_back();
    const std::size_t bytes = 8 * static_cast<std::size_t>(n);
    if (n > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const node_header h{tuple ? kind_tuple : kind_list, shared, 0, static_cast<std::uint32_t>(n)};
    // Stored once by content only when it holds no container: readers build it anew for every
    // reference, so sharing containers by content could multiply what a read builds. Nor a list
    // holding a NaN: two views of one node are equal without reading (_same_node), as an object
    // is to itself, but [nan] == [another nan] is False (a tuple reads as a new tuple: no view).
    if (!shared && height == 0 && !holds_a_nan && sizeof h + bytes <= max_stored_once) {
      small_node node;
      std::memcpy(node.bytes, &h, sizeof h);
      if (bytes) std::memcpy(node.bytes + sizeof h, scratch_.data() + mark, bytes);
      scratch_.resize(mark);
      return {out_.store_once(node.bytes, sizeof h + bytes, remember_small_), height + 1};
    }
    const std::uint64_t off = alloc(sizeof h + bytes);
    std::memcpy(at(off), &h, sizeof h);
    if (bytes) std::memcpy(at(off) + sizeof h, scratch_.data() + mark, bytes);
    scratch_.resize(mark);
    return {off, height + 1};
  }

  // A list or tuple of more than large_container items: its node is written first and each
  // item's word put in place as the item is frozen, live (each item held while it is frozen),
  // so neither a snapshot of its items nor a copy of its words exists beside the arena. A list
  // that changes size meanwhile (user code: a finalizer, a tzinfo's utcoffset) is refused, as
  // iterating it would be, rather than frozen as a mix of two states.
  frozen large_sequence(PyObject* o, bool tuple, std::uint8_t shared) {
    const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
    if (n > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const std::uint64_t off = alloc(sizeof(node_header) + 8 * static_cast<std::size_t>(n));
    put_header(off, tuple ? kind_tuple : kind_list, shared, static_cast<std::size_t>(n));
    std::uint32_t height = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!tuple && PyList_GET_SIZE(o) != n) fail(PyExc_RuntimeError, list_changed);
      const ref item(Py_NewRef(tuple ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i)));
      path_.push_back({at_index, nullptr, i});
      const frozen f = value(item.get());
      path_.pop_back();
      height = std::max(height, f.height);
      put_word(off + sizeof(node_header) + 8 * static_cast<std::size_t>(i), f.w);
    }
    if (!tuple && PyList_GET_SIZE(o) != n) fail(PyExc_RuntimeError, list_changed);
    return {off, height + 1};
  }

  // A dict of more than large_container items, walked live (PyDict_Next) in one pass: its keys
  // table and node are written first, and each key's and value's word put in place as they are
  // frozen, so no snapshot of its items exists (16 bytes an item: 16 MiB for a 1M-row table).
  // The table has 4-byte key words (flag_narrow_keys) when narrow_keys_likely() says so; a key
  // whose word does not fit then moves it to a new table with 8-byte ones (widen_table), so the
  // node has a 16-byte header whose keys offset is put in at the end.
  // Each key and value is held while frozen. A dict that changes size, or yields more or fewer
  // keys than it had (a key deleted and another inserted), or a key equal to one already in the
  // table, raises RuntimeError as iterating it would: the table never holds two equal keys.
  frozen large_dict(PyObject* o, std::uint8_t shared) {
    const auto n = static_cast<std::size_t>(PyDict_GET_SIZE(o));
    if (n > max_table_keys) fail(PyExc_ValueError, "too large (at most 2**31 - 1 keys)");
    const auto count = static_cast<std::uint32_t>(n);
    bool narrow = narrow_keys_likely(o, n);
    std::uint64_t keys_off = alloc(table_bytes(n, table_capacity(count), narrow));
    new_table_header(keys_off, kind_keys, count, narrow);
    value_sink sink(false, n);
    reserve_rows(sink, o, n);  // a likely table: its rows go straight into the arena
    std::uint32_t height = 0;
    std::size_t i = 0;
    bool subclass_keys = false;  // whether a key so far is a subclass_key
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {  // runs no Python code: safe on a changed dict too
      if (i == n) fail(PyExc_RuntimeError, dict_changed_keys);
      const ref key(check(storable_key(state_, k)));
      const ref val(Py_NewRef(v));
      const auto index = static_cast<Py_ssize_t>(i);
      const std::uint64_t h = hash_of(key.get(), index, key_of);
      subclass_keys = subclass_keys || subclass_key(key.get());
      path_.push_back({key_of, nullptr, index});
      const frozen fk = unique_value(key.get());
      path_.back() = {value_of, key.get(), 0};
      if (narrow && !fits_narrow_key(fk.w)) {
        keys_off = widen_table(keys_off, i);
        narrow = false;
      }
      auto* t = reinterpret_cast<table_header*>(at(keys_off));
      put_table_key(t, i, fk.w);
      if (is_nan_key(key.get())) {  // equal to no other key: no search for one
        add_table_entry(t, static_cast<std::uint32_t>(i), filed_hash(h, key.get(), i));
      } else if (!add_new_key(t, static_cast<std::uint32_t>(i), h)) {
        path_.pop_back();
        // Keys without an __eq__ or __hash__ of their own are equal in the dict as in the
        // copy: only a change to the dict makes it yield one twice.
        if (subclass_keys) fail_equal_copies(fk.w);
        fail(PyExc_RuntimeError, dict_changed_keys);
      }
      if (static_cast<std::size_t>(PyDict_GET_SIZE(o)) != n) {
        path_.pop_back();
        fail(PyExc_RuntimeError, dict_changed_size);
      }
      const item_key_scope in_item(*this, key.get(), fk.w);
      const std::uint32_t value_height = add_value(sink, val.get());
      path_.pop_back();
      height = std::max({height, fk.height, value_height});
      if (static_cast<std::size_t>(PyDict_GET_SIZE(o)) != n)
        fail(PyExc_RuntimeError, dict_changed_size);
      ++i;
    }
    if (i != n) fail(PyExc_RuntimeError, dict_changed_keys);
    return {finish_values(sink, keys_off, shared), height + 1};
  }

  // Whether every key of the large dict o will likely have a 4-byte word (fits_narrow_key), from
  // the keys alone (no Python code runs): None, bools, ints below 2^28 in size, strs of at most
  // 2 UTF-8 bytes or of 8 and more (packed strs and str nodes: offsets), tuples, frozensets and
  // bytes (nodes), while the graph stays below 256 MiB with 128 bytes a key more. Floats, 3..7-byte
  // strs (short strs) and anything else: no. A wrong yes costs a copy of the table (widen_table).
  bool narrow_keys_likely(PyObject* o, std::size_t n) {
    if (out_.size() + 128 * n >= (std::size_t{1} << 28)) return false;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (k == Py_None || PyBool_Check(k) || PyTuple_Check(k) || PyFrozenSet_Check(k) ||
          PyBytes_Check(k))
        continue;
      if (PyLong_Check(k)) {
        int overflow = 0;
        const long long value = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (overflow || value < -(1LL << 28) || value >= (1LL << 28)) return false;
        continue;
      }
      if (!PyUnicode_Check(k) || !short_str_fits(k)) return false;
    }
    return true;
  }

  // Whether the str s, if a short str (3..7 UTF-8 bytes), is not one: its word would not fit.
  static bool short_str_fits(PyObject* s) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {  // legacy (wstr) strs; every str is ready on 3.12+
      PyErr_Clear();
      return false;
    }
#endif
    if (PyUnicode_GET_LENGTH(s) > 7) return true;  // 8 bytes or more: packed or a node
    const std::size_t bytes = bytes_of_str(s);
    return bytes <= 2 || bytes >= 8;
  }

  // Moves the large dict's table at old_off, whose first `filled` key words are written, to a
  // new one with 8-byte key words; returns its offset (the old one stays unused).
  std::uint64_t widen_table(std::uint64_t old_off, std::size_t filled) {
    const auto* old = reinterpret_cast<const table_header*>(at(old_off));
    const std::uint32_t n = old->h.count;
    const std::size_t index_bytes = std::size_t{old->capacity} * table_slot_size(old);
    const std::uint64_t off = alloc(table_bytes(n, old->capacity, false));
    old = reinterpret_cast<const table_header*>(at(old_off));  // alloc may move the arena
    auto* t = reinterpret_cast<table_header*>(at(off));
    std::memcpy(t, old, sizeof *t + index_bytes);
    t->h.flags = static_cast<std::uint8_t>(t->h.flags & ~flag_narrow_keys);
    const key_words kw = table_keys(old);
    for (std::size_t j = 0; j < filled; ++j) put_table_key(t, j, kw[j]);
    return off;
  }

  static constexpr const char* list_changed = "list changed size during freeze()";
  static constexpr const char* dict_changed_size = "dictionary changed size during freeze()";
  static constexpr const char* dict_changed_keys = "dictionary keys changed during freeze()";

  // Adds entry i (its key word written) with hash h to the table t, unless an
  // earlier entry's key is equal to it: then false. A dict may hold several NaN keys (NaN !=
  // NaN), which freeze to one word: a float key, or a tuple or frozenset that may hold one, is
  // compared by value (fresh objects, so NaN is unequal to itself), never by its word.
  bool add_new_key(table_header* t, std::uint32_t i, std::uint64_t h) {
    const auto equal = [&](word a, word b) {
      if (a != b || !may_hold_nan(a)) return same_key(a, b);
      ref x(check(thaw_word(state_, out_.at(0), a)));
      ref y(check(thaw_word(state_, out_.at(0), b)));
      const int eq = PyObject_RichCompareBool(x.get(), y.get(), Py_EQ);
      if (eq < 0) throw py_error{};
      return eq == 1;
    };
    const key_words kw = table_keys(t);
    const std::int64_t found =
        find_entry(t, h, [&](std::uint32_t j) { return equal(kw[j], kw[i]) ? 1 : 0; });
    if (found != entry_absent) return false;
    add_table_entry(t, i, h);
    return true;
  }

  // Whether a key word may be or hold a NaN: a float, or a tuple or frozenset node.
  bool may_hold_nan(word w) {
    const word tag = w & tag_mask;
    if (tag == tag_float || tag == tag_inline_float) return true;
    if (tag != tag_node) return false;
    const std::uint8_t k = node_at<node_header>(out_.at(0), w)->kind;
    return k == kind_tuple || k == kind_frozenset;
  }

  // A dict node for n values over the keys table at keys_off (values zero, the caller's to
  // put): its offset and its header's size. Records are small: a 8-byte header (dict16) when
  // the count and the keys' offset fit.
  std::pair<std::uint64_t, std::size_t> dict_node(std::size_t n, std::uint64_t keys_off,
                                                  std::uint8_t shared) {
    const bool small = n < 65536 && keys_off / 8 <= UINT32_MAX;
    const std::size_t header = small ? 8 : sizeof(dict_header);
    const std::uint64_t off = alloc(header + 8 * n);
    if (small) {
      const node_header h{kind_dict16, shared, static_cast<std::uint16_t>(n),
                          static_cast<std::uint32_t>(keys_off / 8)};
      std::memcpy(at(off), &h, sizeof h);
    } else {
      put_header(off, kind_dict, shared, n);
      std::memcpy(at(off) + 8, &keys_off, 8);
    }
    return {off, header};
  }

  // A keys/set table over n keys, key i being items[first + stride * i] (held by the caller)
  // with hash hashes[i] (or, without hashes, hashed here: no array of n hashes is kept). Returns
  // the table's offset and the largest height among its keys.
  std::pair<std::uint64_t, std::uint32_t> table(kind k, std::uint8_t flags, std::size_t n,
                                                const held_items& items, std::size_t first,
                                                std::size_t stride, const std::uint64_t* hashes,
                                                step_kind how) {
    if (n > max_table_keys) fail(PyExc_ValueError, "too large (at most 2**31 - 1 keys)");
    const auto count = static_cast<std::uint32_t>(n);
    // The keys first, their words (and hashes) on the shared scratch stacks, then the table:
    // its key words are 4 bytes when every one fits (flag_narrow_keys).
    const std::size_t mark = scratch_.size();
    const std::size_t hash_mark = scratch_hashes_.size();
    const stack_scope<word> words_scope(scratch_);
    const stack_scope<std::uint64_t> hashes_scope(scratch_hashes_);
    std::uint32_t height = 0;
    bool narrow = true;
    bool subclass_keys = false;  // whether equal copies must be looked for (subclass_key)
    for (std::size_t i = 0; i < n; ++i) {
      PyObject* key = items[first + stride * i];
      if (!hashes) scratch_hashes_.push_back(hash_of(key, static_cast<Py_ssize_t>(i), how));
      subclass_keys = subclass_keys || subclass_key(key);
      path_.push_back({how, nullptr, static_cast<Py_ssize_t>(i)});
      const frozen f = n > 64 ? unique_value(key) : value(key);
      path_.pop_back();
      height = std::max(height, f.height);
      scratch_.push_back(f.w);
      narrow = narrow && fits_narrow_key(f.w);
    }
    const std::uint64_t off = alloc(table_bytes(n, table_capacity(count), narrow));
    new_table_header(off, k, count, narrow);
    auto* t = reinterpret_cast<table_header*>(at(off));
    t->h.flags = static_cast<std::uint8_t>(t->h.flags | flags);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t h = hashes ? hashes[i] : scratch_hashes_[hash_mark + i];
      PyObject* key = items[first + stride * i];
      put_table_key(t, i, scratch_[mark + i]);
      if (!subclass_keys || is_nan_key(key)) {  // distinct in o, so distinct copies
        add_table_entry(t, static_cast<std::uint32_t>(i), filed_hash(h, key, i));
      } else if (!add_new_key(t, static_cast<std::uint32_t>(i), h)) {
        fail_equal_copies(scratch_[mark + i]);
      }
    }
    return {off, height};
  }

  // Puts in place of keys items[first + stride * i], i < n, the keys stored for them
  // (storable_key: a FrozenSet view of a set becomes a frozenset, in a tuple key too).
  void as_stored_keys(held_items& items, std::size_t first, std::size_t stride, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t at = first + stride * i;
      ref stored(check(storable_key(state_, items[at])));
      if (stored.get() != items[at]) items.replace(at, std::move(stored));
    }
  }

  std::uint64_t hash_of(PyObject* key, Py_ssize_t i, step_kind how) {
    std::uint64_t h;
    if (key_hash(state_, key, h)) return h;
    // Only a TypeError says the key cannot be stored; anything else stands: a closed view's
    // ValueError (as when freezing it as a value), a MemoryError, RecursionError (a small
    // thread stack).
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw py_error{};
    // key_hash names what a tuple or frozenset key holds that cannot be stored (a list, a
    // FrozenSet of a set); the key's own type alone would call the tuple unhashable.
    const std::string why = take_error_text();
    path_.push_back({how, nullptr, i});
    if (Py_TYPE(key) == state_.set_type) fail(PyExc_TypeError, why);
    if ((PyTuple_Check(key) || PyFrozenSet_Check(key)) && !why.empty())
      fail(PyExc_TypeError, "key of type " + short_type_name(key) + ": " + why);
    if (!PyUnicode_Check(key) && !PyLong_Check(key) && !PyFloat_Check(key) && !PyBytes_Check(key) &&
        !PyTuple_Check(key) && !PyFrozenSet_Check(key) && key != Py_None)
      fail(PyExc_TypeError, short_type_name(key) + " is not supported" + key_only_note(key));
    fail(PyExc_TypeError,
         "unhashable (or nested deeper than 5000) key of type " + short_type_name(key));
  }

  // The pending exception's text (str() of it), cleared; "" when it has none.
  static std::string take_error_text() {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    std::string text;
    if (value != nullptr) {
      ref s(PyObject_Str(value));
      const char* c = s.get() ? PyUnicode_AsUTF8(s.get()) : nullptr;
      if (c != nullptr) text = c;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();  // a failed str() leaves its own
    return text;
  }

  // Dates, Decimals, UUIDs and Enums are values, never keys: say so where one is a key.
  static const char* key_only_note(PyObject* key) {
    scalar_encoding e;
    try {
      if (encode_scalar(key, e)) return " as a dict key or set element (only as a value)";
    } catch (const py_error&) {
      PyErr_Clear();
    }
    return "";
  }

  static int check_order(PyObject* o) {
    const int r = odict_in_dict_order(o);
    if (r < 0) throw py_error{};
    return r;
  }

  frozen dict(PyObject* o, std::uint8_t shared) {
    value_sink* const as_row_of = row_sink_;  // set by add_value for this dict only
    row_sink_ = nullptr;
    if (PyODict_Check(o) && !(PyODict_CheckExact(o) && check_order(o) == 1)) {
      // An OrderedDict's order is its own: move_to_end() does not reorder the dict underneath,
      // which PyDict_Next walks. Its items are frozen from a plain dict made in its order.
      ref ordered(check(PyDict_New()));
      if (PyDict_Merge(ordered.get(), o, 1) < 0) throw py_error{};
      o = ordered.get();
      keep_.push_back(std::move(ordered));
    }
    if (PyDict_GET_SIZE(o) > large_container) return large_dict(o, shared);
    // The items as they are now, each held, before anything is hashed or frozen: key i is
    // items[2i], its value items[2i + 1].
    held_items items(held_);
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {  // runs no Python code: increfs only
      items.add(k);
      items.add(v);
    }
    const std::size_t n = items.size() / 2;
    as_stored_keys(items, 0, 2, n);
    // Dicts with the same str keys in the same order (records) share one keys table: small
    // ones are hashed first to find it; larger ones are hashed as their table is built.
    std::uint64_t small_hashes[64];
    bool all_str = n <= 64;
    std::uint64_t sig = n;
    for (std::size_t i = 0; i < n && n <= 64; ++i) {
      const std::uint64_t h = hash_of(items[2 * i], static_cast<Py_ssize_t>(i), key_of);
      small_hashes[i] = h;
      all_str = all_str && PyUnicode_CheckExact(items[2 * i]);
      sig = permafrost::detail::hash_word(sig + h);
    }
    std::uint64_t keys_off = 0;
    std::uint32_t height = 0;  // str keys nest nothing
    const bool shareable = all_str && n <= 64;
    if (shareable) {
      auto it = shared_keys_.find(sig);
      if (it != shared_keys_.end() && same_keys(it->second, items, n)) keys_off = it->second;
    }
    if (keys_off == 0) {
      std::tie(keys_off, height) =
          table(kind_keys, 0, n, items, 0, 2, n <= 64 ? small_hashes : nullptr, key_of);
      if (shareable) shared_keys_.emplace(sig, keys_off);
    }
    if (as_row_of && shareable && (as_row_of->rows == 0 || as_row_of->shape == keys_off) &&
        (!as_row_of->region || n == as_row_of->column_count)) {
      // A row of the table being collected: its value words go into the sink's columns, or
      // straight into its row in the arena (reserve_rows).
      if (as_row_of->rows == 0) {
        as_row_of->shape = keys_off;
        if (!as_row_of->region) {
          as_row_of->columns = std::make_unique<column_buffer[]>(n);
          as_row_of->column_count = n;
          for (std::size_t j = 0; j < n; ++j) as_row_of->columns[j].expect(as_row_of->expected);
        }
      }
      // In place, the row's words wait on the shared scratch stack (not in this frame: the
      // walk recurses through it) until the row is complete.
      const std::size_t mark = scratch_.size();
      const stack_scope<word> words_scope(scratch_);
      path_.push_back({value_of, nullptr, 0});
      for (std::size_t i = 0; i < n; ++i) {
        path_.back().key = items[2 * i];
        const frozen f = value(items[2 * i + 1]);
        height = std::max(height, f.height);
        if (as_row_of->region) scratch_.push_back(f.w);
        else as_row_of->columns[i].push_back(f.w);
      }
      path_.pop_back();
      if (as_row_of->region && !put_row(*as_row_of, scratch_.data() + mark)) {
        // No room for it (past 32 GiB): the rows so far become nodes, and so does this one.
        untabulate(*as_row_of);
        const auto [off, header] = dict_node(n, keys_off, shared);
        for (std::size_t i = 0; i < n; ++i) put_word(off + header + 8 * i, scratch_[mark + i]);
        return {off, height + 1};
      }
      return {row_marker(as_row_of->rows++), height + 1};
    }
    if (as_row_of) untabulate(*as_row_of);
    if (n >= min_table_rows) {  // values that may be rows of one shape: a table
      value_sink sink(false, n);
      path_.push_back({value_of, nullptr, 0});
      for (std::size_t i = 0; i < n; ++i) {
        path_.back().key = items[2 * i];
        height = std::max(height, add_value(sink, items[2 * i + 1]));
      }
      path_.pop_back();
      return {finish_values(sink, keys_off, shared), height + 1};
    }
    const auto [off, header] = dict_node(n, keys_off, shared);
    path_.push_back({value_of, nullptr, 0});
    for (std::size_t i = 0; i < n; ++i) {
      path_.back().key = items[2 * i];
      const frozen f = value(items[2 * i + 1]);
      height = std::max(height, f.height);
      put_word(off + header + 8 * i, f.w);
    }
    path_.pop_back();
    return {off, height + 1};
  }

  // ----- tables of records (format.hpp, "Tables of records") -----------------------------------
  // The values of a dict of at least min_table_rows values go through a value_sink: as long as
  // every value is a record (an exact dict of at most 64 str keys that nothing else references:
  // rows are not nodes, so an identity-shared dict is never one) of one shape, each is frozen
  // as a row, its value words appended to the sink's columns (each kept in the narrowest column
  // type that holds it so far: 4 bytes a field for most); at the first value that is not, the
  // rows so far are written as dict16 nodes and the sink keeps plain words from then on.

  // One column of the rows being collected, in the narrowest column_type that holds every value
  // word pushed so far (re-encoded when a value needs another type: at most twice a column).
  class column_buffer {
   public:
    column_buffer() = default;
    column_buffer(const column_buffer&) = delete;
    column_buffer& operator=(const column_buffer&) = delete;
    ~column_buffer() = default;

    // Room for the rows a dict of known size may have (build_dict's grow as they come).
    void expect(std::size_t rows) {
      expected_ = rows;
      narrow_.reserve_for(rows);
    }
    column_type type() const { return type_; }
    std::size_t size() const { return type_ == column_word64 ? wide_.size() : narrow_.size(); }
    word operator[](std::size_t r) {
      return type_ == column_word64
                 ? wide_[r]
                 : column_word(reinterpret_cast<const char*>(narrow_.data()), type_, r);
    }
    // The array, as the column stores it.
    const char* data() {
      return type_ == column_word64 ? reinterpret_cast<const char*>(wide_.data())
                                    : reinterpret_cast<const char*>(narrow_.data());
    }
    void push_back(word w) {
      if (type_ != column_word64 && !fits_column(w, type_)) retype(w);
      if (type_ == column_word64) return wide_.push_back(w);
      narrow_.push_back(0);
      put_column_value(reinterpret_cast<char*>(narrow_.data()), type_, narrow_.size() - 1, w);
    }
    // Sets value r to w (a value of the same column after narrow_short_strs replaced it).
    void set(std::size_t r, word w) {
      if (type_ == column_word64) wide_[r] = w;
      else put_column_value(reinterpret_cast<char*>(narrow_.data()), type_, r, w);
    }
    // Pre: r <= size(). Keeps values [0, r).
    void truncate(std::size_t r) {
      if (type_ == column_word64) wide_.resize(r);
      else narrow_.resize(r);
    }
    // Values [0, r) go back to the kernel where they fill whole pages (read none of them again).
    void release_prefix(std::size_t r) noexcept {
      if (type_ == column_word64) wide_.release_prefix(r);
      else narrow_.release_prefix(r);
    }
    // Effects: frees the memory.
    void clear() {
      narrow_.clear();
      wide_.clear();
    }
    // Re-encodes the column as `to`, which holds every value (fits_column).
    void convert(column_type to) {
      const std::size_t n = size();
      if (to == column_word64) {
        wide_.reserve_for(expected_);
        for (std::size_t r = 0; r < n; ++r) wide_.push_back((*this)[r]);
        narrow_.clear();
      } else if (type_ == column_word64) {
        for (std::size_t r = 0; r < n; ++r) narrow_.push_back(0);
        for (std::size_t r = 0; r < n; ++r)
          put_column_value(reinterpret_cast<char*>(narrow_.data()), to, r, wide_[r]);
        wide_.clear();
      } else {
        for (std::size_t r = 0; r < n; ++r)
          put_column_value(reinterpret_cast<char*>(narrow_.data()), to, r, (*this)[r]);
      }
      type_ = to;
    }
    // Whether every value fits `to`.
    bool all_fit(column_type to) {
      for (std::size_t r = 0, n = size(); r < n; ++r) {
        if (!fits_column((*this)[r], to)) return false;
      }
      return true;
    }

   private:
    // w does not fit the current narrow type: the other narrow type if it holds every value
    // and w, else word64.
    void retype(word w) {
      const column_type other = type_ == column_word32 ? column_float32 : column_word32;
      convert(fits_column(w, other) && all_fit(other) ? other : column_word64);
    }

    column_type type_ = column_word32;
    std::size_t expected_ = 0;
    growing_array<std::uint32_t> narrow_;
    growing_array<word> wide_;
  };

  // The rows of a table reserved in the arena before its first value (reserve_rows): a table
  // node of `capacity` rows at `off` whose header and descriptors finish_values writes.
  struct row_region {
    std::uint64_t off = 0;
    std::size_t capacity = 0;
    std::uint32_t row_bytes = 0;
    std::uint32_t rows_start = 0;
    column_type types[64] = {};
    bool short_strs_as_nodes[64] = {};  // short strs that do not fit word32 become str16 nodes
    std::uint32_t fields[64] = {};      // each field's byte offset in a row
  };

  struct value_sink {
    value_sink(bool keep_row_markers, std::size_t expected_values)
        : markers(keep_row_markers), expected(expected_values) {}
    bool markers;             // rows leave a marker in words (else: rows come first)
    std::size_t expected;     // the dict's size, when known (0: build_dict)
    std::uint64_t shape = 0;  // the rows' keys node
    std::unique_ptr<column_buffer[]> columns;  // one per shape key
    std::unique_ptr<row_region> region;        // or the rows in place (reserve_rows)
    std::size_t column_count = 0;
    std::uint32_t rows = 0;     // rows collected
    bool tabular = true;        // every value so far is a row
    growing_array<word> words;  // frozen values (and row markers, with `markers`)
  };
  static word row_marker(std::uint32_t r) { return (word{r} << 3) | tag_row; }
  static bool is_row_marker(word w) { return (w & tag_mask) == tag_row; }

  // Freezes o, a value of the dict whose values `sink` collects; returns its height.
  std::uint32_t add_value(value_sink& sink, PyObject* o) {
    frozen f;
    if (sink.tabular && PyDict_CheckExact(o) && Py_REFCNT(o) <= 2 && PyDict_GET_SIZE(o) <= 64 &&
        sink.rows + 1 < max_table_rows) {
      row_sink_ = &sink;  // dict() takes it (container() runs no other dict() first)
      f = container(o, &freezer::dict);
      row_sink_ = nullptr;
    } else {
      untabulate(sink);
      f = value(o);
    }
    if (!is_row_marker(f.w) || sink.markers) sink.words.push_back(f.w);
    return f.height;
  }

  // The rows collected so far become dict16 nodes; the sink collects plain words from now on.
  void untabulate(value_sink& sink) {
    if (!sink.tabular) return;
    sink.tabular = false;
    if (sink.markers) {
      for (std::size_t i = 0; i < sink.words.size(); ++i) {
        if (is_row_marker(sink.words[i])) sink.words[i] = row_node(sink, sink.words[i] >> 3);
      }
    } else {  // the rows are the values so far, in order
      for (std::uint32_t r = 0; r < sink.rows; ++r) sink.words.push_back(row_node(sink, r));
    }
    sink.columns.reset();
    sink.region.reset();  // its bytes stay in the arena, unused
  }

  word row_node(value_sink& sink, std::uint64_t r) {
    const std::size_t n = sink.column_count;
    const auto [off, header] = dict_node(n, sink.shape, 0);
    for (std::size_t j = 0; j < n; ++j) {
      put_word(off + header + 8 * j,
               sink.region ? region_word(*sink.region, r, j) : sink.columns[j][r]);
    }
    return off;
  }

  // Writes the node of the dict whose keys node is keys_off and whose values `sink` collected:
  // a table when they are all rows (at least min_table_rows), else a dict node. Returns its
  // offset.
  std::uint64_t finish_values(value_sink& sink, std::uint64_t keys_off, std::uint8_t shared) {
    const std::size_t n = sink.markers ? sink.words.size() : sink.rows;
    if (sink.tabular && n >= min_table_rows) {
      if (const std::uint64_t off = table_node_of(sink, n, keys_off, shared)) return off;
    }
    untabulate(sink);
    const std::size_t count = sink.words.size();
    const auto [off, header] = dict_node(count, keys_off, shared);
    if (count) std::memcpy(at(off) + header, sink.words.data(), 8 * count);
    return off;
  }

  // A column of node references and a few short strs too long for a word32 (names: "name-1"
  // is a short str, "name-100" a node) stores those strs as nodes instead, when that costs less
  // than the 4 bytes a row a word64 column would add. Returns the column's type in the table:
  // word32 then, though the buffer stays word64 (re-encoding it would hold both at once).
  column_type narrow_short_strs(column_buffer& column) {
    if (column.type() != column_word64) return column.type();
    const std::size_t rows = column.size();
    std::size_t misfits = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      const word w = column[r];
      if (fits_column(w, column_word32)) continue;
      if ((w & tag_mask) != tag_short_str) return column_word64;
      ++misfits;
    }
    if (16 * misfits >= 4 * rows) return column_word64;
    for (std::size_t r = 0; r < rows; ++r) {
      const word w = column[r];
      if (fits_column(w, column_word32)) continue;
      const word node_word = short_str_node(w);
      if (!fits_column(node_word, column_word32)) return column_word64;  // past 2 GiB: wide
      column.set(r, node_word);
    }
    return column_word32;
  }

  // The str16 node of the short str whose word is w (the same str to every reader).
  [[gnu::noinline]] word short_str_node(word w) {
    char b[8];
    short_str_bytes(w, b);
    const std::size_t len = short_str_size(w);
    bool ascii = true;
    for (std::size_t i = 0; i < len; ++i) ascii = ascii && static_cast<unsigned char>(b[i]) < 0x80;
    const node_header h{kind_str16, static_cast<std::uint8_t>(ascii ? flag_ascii : 0),
                        static_cast<std::uint16_t>(len), 0};
    small_node node;
    std::memcpy(node.bytes, &h, 4);
    std::memcpy(node.bytes + 4, b, len);
    return out_.store_once(node.bytes, node.size(4 + len), remember_small_);
  }

  // The table node of the n rows in `sink`, or 0 where a table cannot lie (past 32 GiB).
  std::uint64_t table_node_of(value_sink& sink, std::size_t n, std::uint64_t keys_off,
                              std::uint8_t shared) {
    const std::size_t columns = sink.column_count;
    if (sink.region) {  // the rows are in place: the header and descriptors are left to write
      const row_region& g = *sink.region;
      table_node t{};
      t.h = {kind_table, shared, static_cast<std::uint16_t>(columns),
             static_cast<std::uint32_t>(n)};
      t.keys = keys_off;
      t.shape = sink.shape;
      t.row_bytes = g.row_bytes;
      t.rows_start = g.rows_start;
      char* p = at(g.off);
      std::memcpy(p, &t, sizeof t);
      for (std::size_t j = 0; j < columns; ++j) {
        const word d = word{g.fields[j]} << 3 | g.types[j];
        std::memcpy(p + sizeof t + 8 * j, &d, 8);
      }
      return g.off;
    }
    std::size_t row_bytes = 0;
    column_type types[64];  // each column's type in the table
    for (std::size_t j = 0; j < columns; ++j) {
      types[j] = narrow_short_strs(sink.columns[j]);
      row_bytes += types[j] == column_word64 ? 8 : 4;
    }
    const std::size_t rows_start = sizeof(table_node) + 8 * columns;
    const std::size_t bytes = rows_start + row_bytes * n;
    if (out_.size() + bytes > max_table_offset) return 0;
    const std::uint64_t off = alloc(bytes);
    table_node t{};
    t.h = {kind_table, shared, static_cast<std::uint16_t>(columns), static_cast<std::uint32_t>(n)};
    t.keys = keys_off;
    t.shape = sink.shape;
    t.row_bytes = static_cast<std::uint32_t>(row_bytes);
    t.rows_start = static_cast<std::uint32_t>(rows_start);
    char* p = at(off);
    std::memcpy(p, &t, sizeof t);
    std::size_t field = 0;
    std::size_t widths[64];
    std::size_t fields[64];
    for (std::size_t j = 0; j < columns; ++j) {
      const word d = field << 3 | types[j];
      std::memcpy(p + sizeof t + 8 * j, &d, 8);
      widths[j] = types[j] == column_word64 ? 8 : 4;
      fields[j] = field;
      field += widths[j];
    }
    char* const rows = p + rows_start;
    // Field j of row i from value r of column j (as the table stores it: types[j]).
    const auto copy_field = [&](std::size_t j, std::size_t i, std::size_t r) {
      column_buffer& c = sink.columns[j];
      char* to = rows + row_bytes * i + fields[j];
      if (c.type() == types[j]) std::memcpy(to, c.data() + widths[j] * r, widths[j]);
      else put_column_value(to, types[j], 0, c[r]);  // a word64 buffer of a word32 column
    };
    if (sink.markers) {  // build_dict's repeated keys moved or dropped rows: row i is words[i]
      for (std::size_t j = 0; j < columns; ++j) {
        for (std::size_t i = 0; i < n; ++i) copy_field(j, i, sink.words[i] >> 3);
      }
      return off;
    }
    // Row i is value i: the rows are written a block at a time, and each block's fields go
    // back to the kernel as soon as it is written, so the columns and the rows they become are
    // never both resident (a generator's table: 16 bytes a row of each at bench/python's).
    constexpr std::size_t block = std::size_t{16} << 10;
    for (std::size_t start = 0; start < n; start += block) {
      const std::size_t end = std::min(n, start + block);
      for (std::size_t j = 0; j < columns; ++j) {
        for (std::size_t i = start; i < end; ++i) copy_field(j, i, i);
      }
      for (std::size_t j = 0; j < columns; ++j) sink.columns[j].release_prefix(end);
    }
    return off;
  }

  // ----- a large dict's table written in place ---------------------------------------------------
  // freeze(d) of a large dict knows its size: when its values are likely rows of one table, the
  // table node is reserved in the arena before the first value (reserve_rows) and each row is
  // written into it as its record is frozen (put_row), so no column buffers (4 to 8 bytes a
  // field, and what malloc keeps around them) lie beside the arena. Each column's type is
  // predicted from the values (no Python code runs); a value that then does not fit its column
  // (a misprediction, or a record changed by user code during the walk) moves the rows so far
  // to a new region whose misfit columns are word64 (widen_rows; the old region stays unused).
  // A value that is no row (a record changed shape, gained a reference or became another type)
  // turns the rows so far into dict16 nodes read back from the region (untabulate).

  // What a column's values are predicted to need (reserve_rows).
  struct column_forecast {
    bool words_fit32 = true;        // every value of known word fits column_word32
    bool all_float32 = true;        // every value is an inline float exact as a single
    std::size_t short_misfits = 0;  // short strs whose word does not fit column_word32
    bool other_misfits = false;     // values of known word that fit neither
    bool packed = false;            // packed strs: offsets (fit word32 below 256 MiB)
    bool nodes = false;             // node references (fit word32 below 2 GiB)
  };

  // Forecasts value o of a column into f and adds what it may take in the arena to `bytes`.
  static void forecast(column_forecast& f, PyObject* o, std::size_t& bytes) {
    word w = 0;
    bool known = true;
    if (o == Py_None) {
      w = const_none;
    } else if (o == Py_True) {
      w = const_true;
    } else if (o == Py_False) {
      w = const_false;
    } else if (PyLong_Check(o)) {
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
      if (v == -1 && PyErr_Occurred()) PyErr_Clear();
      if (!overflow && v >= inline_int_min && v <= inline_int_max) {
        w = (static_cast<word>(v) << 3) | tag_int;
      } else {
        known = false;
        bytes += 64;
      }
    } else if (PyFloat_Check(o)) {
      const double d = PyFloat_AS_DOUBLE(o);
      std::memcpy(&w, &d, sizeof w);
      if ((w & tag_mask) == 0) {
        w |= tag_inline_float;
      } else {
        known = false;
        bytes += 8;
      }
    } else if (PyUnicode_Check(o)) {
      const str_forecast s = forecast_str(o, w, bytes);
      if (s == str_forecast::packed) {
        f.packed = true;
        f.all_float32 = false;
        return;
      }
      known = s == str_forecast::short_str;
    } else {
      known = false;
      if (PyBytes_Check(o)) bytes += 16 + static_cast<std::size_t>(PyBytes_GET_SIZE(o));
      else if (PyList_Check(o) || PyTuple_Check(o))
        bytes += 16 + 16 * static_cast<std::size_t>(Py_SIZE(o));
      else if (PyDict_Check(o)) bytes += 64 + 48 * static_cast<std::size_t>(PyDict_GET_SIZE(o));
      else if (PyAnySet_Check(o)) bytes += 64 + 32 * static_cast<std::size_t>(PySet_GET_SIZE(o));
      else bytes += 64;
    }
    if (!known) {
      f.nodes = true;
      f.all_float32 = false;
      return;
    }
    f.all_float32 = f.all_float32 && fits_column(w, column_float32);
    if (fits_column(w, column_word32)) return;
    f.words_fit32 = false;
    if ((w & tag_mask) == tag_short_str) ++f.short_misfits;
    else f.other_misfits = true;
  }

  // The UTF-8 size of the str s (from its code points: no UTF-8 copy is made).
  static std::size_t bytes_of_str(PyObject* s) {
    const Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s)) return static_cast<std::size_t>(len);
    const int kind = PyUnicode_KIND(s);
    const void* data = PyUnicode_DATA(s);
    std::size_t bytes = 0;
    for (Py_ssize_t i = 0; i < len; ++i) {
      const Py_UCS4 c = PyUnicode_READ(kind, data, i);
      bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    return bytes;
  }
  static bool has_surrogates(PyObject* s) {
    if (PyUnicode_IS_ASCII(s) || PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) return false;
    const int kind = PyUnicode_KIND(s);
    const void* data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0, len = PyUnicode_GET_LENGTH(s); i < len; ++i) {
      const Py_UCS4 c = PyUnicode_READ(kind, data, i);
      if (c >= 0xD800 && c <= 0xDFFF) return true;
    }
    return false;
  }

  // What the str s is frozen as: a short str (its word in w), a packed str or a node (what it
  // may take in the arena added to `bytes`).
  enum class str_forecast { short_str, packed, node };
  static str_forecast forecast_str(PyObject* s, word& w, std::size_t& bytes) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {  // legacy (wstr) strs; every str is ready on 3.12+
      PyErr_Clear();
      bytes += 64;
      return str_forecast::node;
    }
#endif
    const std::size_t size = bytes_of_str(s);
    const bool surrogates = has_surrogates(s);
    if (size > max_short_str || surrogates) {
      bytes += 16 + size;
      return size <= max_packed_str && !surrogates ? str_forecast::packed : str_forecast::node;
    }
    char b[max_short_str];
    const int kind = PyUnicode_KIND(s);
    const void* data = PyUnicode_DATA(s);
    std::size_t n = 0;
    for (Py_ssize_t i = 0, len = PyUnicode_GET_LENGTH(s); i < len; ++i) {
      const Py_UCS4 c = PyUnicode_READ(kind, data, i);
      if (c < 0x80) {
        b[n++] = static_cast<char>(c);
      } else if (c < 0x800) {
        b[n++] = static_cast<char>(0xC0 | (c >> 6));
        b[n++] = static_cast<char>(0x80 | (c & 0x3F));
      } else if (c < 0x10000) {
        b[n++] = static_cast<char>(0xE0 | (c >> 12));
        b[n++] = static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        b[n++] = static_cast<char>(0x80 | (c & 0x3F));
      } else {
        b[n++] = static_cast<char>(0xF0 | (c >> 18));
        b[n++] = static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        b[n++] = static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        b[n++] = static_cast<char>(0x80 | (c & 0x3F));
      }
    }
    w = short_str_word(b, n);
    return str_forecast::short_str;
  }

  // Lays out g's `columns` fields in column order from g.types.
  static void lay_out(row_region& g, std::size_t columns) {
    std::uint32_t field = 0;
    for (std::size_t j = 0; j < columns; ++j) {
      g.fields[j] = field;
      field += g.types[j] == column_word64 ? 8 : 4;
    }
    g.row_bytes = field;
    g.rows_start = static_cast<std::uint32_t>(sizeof(table_node) + 8 * columns);
  }

  // When every value of the large dict o (n items) is a record of one shape, as add_value
  // requires (an exact dict referenced by o alone, of at most 64 exact str keys, all in one
  // order), reserves its table node in the arena with each column's predicted type and gives
  // it to `sink`. Runs no Python code; a dict that is not such a table keeps the column buffers.
  [[gnu::noinline]] void reserve_rows(value_sink& sink, PyObject* o, std::size_t n) {
    if (n < min_table_rows || n + 1 >= max_table_rows) return;
    PyObject* first = nullptr;
    std::size_t columns = 0;
    std::size_t bytes = 0;  // what the values and keys may add to the arena beside the rows
    column_forecast f[64];
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (!PyDict_CheckExact(v) || Py_REFCNT(v) > 1 || PyDict_GET_SIZE(v) > 64) return;
      if (word unused = 0; !PyUnicode_Check(k)) bytes += 64;
      else forecast_str(k, unused, bytes);
      if (!first) {
        first = v;
        columns = static_cast<std::size_t>(PyDict_GET_SIZE(v));
      } else if (static_cast<std::size_t>(PyDict_GET_SIZE(v)) != columns) {
        return;
      }
      Py_ssize_t field_pos = 0, first_pos = 0;
      PyObject *fk, *fv, *shape_key, *shape_value;
      std::size_t j = 0;
      while (PyDict_Next(v, &field_pos, &fk, &fv)) {
        if (!PyDict_Next(first, &first_pos, &shape_key, &shape_value)) return;
        if (!PyUnicode_CheckExact(fk) || (fk != shape_key && !same_exact_str(fk, shape_key)))
          return;
        forecast(f[j++], fv, bytes);
      }
    }
    // The arena's size bound: what it holds, the rows at 8 bytes a field, the rest forecast.
    const std::size_t rows_start = sizeof(table_node) + 8 * columns;
    const std::size_t bound = out_.size() + rows_start + 8 * columns * n + bytes;
    const bool packed_fit = bound < (std::size_t{1} << 28);
    const bool nodes_fit = bound < (std::size_t{1} << 31);
    auto g = std::make_unique<row_region>();
    for (std::size_t j = 0; j < columns; ++j) {
      const column_forecast& c = f[j];
      const bool offsets_fit = (!c.packed || packed_fit) && (!c.nodes || nodes_fit);
      column_type t = column_word64;
      if (c.words_fit32 && offsets_fit) {
        t = column_word32;
      } else if (c.all_float32) {
        t = column_float32;
      } else if (!c.other_misfits && offsets_fit && 16 * c.short_misfits < 4 * n &&
                 bound + 8 * c.short_misfits < (std::size_t{1} << 31)) {
        t = column_word32;  // as narrow_short_strs makes it: a few short strs as str16 nodes
        g->short_strs_as_nodes[j] = true;
      }
      g->types[j] = t;
    }
    lay_out(*g, columns);
    const std::size_t total = g->rows_start + std::size_t{g->row_bytes} * n;
    if (out_.size() + total > max_table_offset) return;
    g->off = alloc(total);
    g->capacity = n;
    sink.region = std::move(g);
    sink.column_count = columns;
  }

  // Value word j of row r of the region g.
  word region_word(const row_region& g, std::size_t r, std::size_t j) {
    return column_word(at(g.off) + g.rows_start + g.row_bytes * r + g.fields[j], g.types[j], 0);
  }

  // Writes the next row of sink's region: its fields' words w (sink.column_count of them; a
  // short str may become its str16 node). A word that does not fit its column widens the
  // region (widen_rows). False where no row can go (past the region or 32 GiB): nothing written.
  [[gnu::noinline]] bool put_row(value_sink& sink, word* w) {
    const std::size_t columns = sink.column_count;
    if (sink.rows >= sink.region->capacity) return false;
    bool misfit = false;
    for (std::size_t j = 0; j < columns; ++j) {
      if (sink.region->short_strs_as_nodes[j] && (w[j] & tag_mask) == tag_short_str &&
          !fits_column(w[j], column_word32))
        w[j] = short_str_node(w[j]);
      misfit = misfit || !fits_column(w[j], sink.region->types[j]);
    }
    if (misfit && !widen_rows(sink, w)) return false;
    const row_region& g = *sink.region;  // widen_rows may have replaced it
    char* row = at(g.off) + g.rows_start + std::size_t{g.row_bytes} * sink.rows;
    for (std::size_t j = 0; j < columns; ++j)
      put_column_value(row + g.fields[j], g.types[j], 0, w[j]);
    return true;
  }

  // Moves sink's region to a new one where each column whose word in w does not fit is word64,
  // the rows so far re-encoded (the old region stays unused). False past 32 GiB: nothing moved.
  [[gnu::noinline]] bool widen_rows(value_sink& sink, const word* w) {
    const row_region& old = *sink.region;
    const std::size_t columns = sink.column_count;
    auto g = std::make_unique<row_region>(old);
    for (std::size_t j = 0; j < columns; ++j) {
      if (!fits_column(w[j], g->types[j])) {
        g->types[j] = column_word64;
        g->short_strs_as_nodes[j] = false;
      }
    }
    lay_out(*g, columns);
    const std::size_t total = g->rows_start + std::size_t{g->row_bytes} * old.capacity;
    if (out_.size() + total > max_table_offset) return false;
    g->off = alloc(total);
    for (std::size_t r = 0; r < sink.rows; ++r) {
      for (std::size_t j = 0; j < columns; ++j) {
        const word v = region_word(old, r, j);
        put_column_value(at(g->off) + g->rows_start + g->row_bytes * r + g->fields[j], g->types[j],
                         0, v);
      }
    }
    sink.region = std::move(g);
    return true;
  }

  // Whether the keys table at table_off holds the `count` str keys items[0], items[2]... in order.
  bool same_keys(std::uint64_t table_off, const held_items& items, std::size_t count) {
    const auto* t = reinterpret_cast<const table_header*>(at(table_off));
    if (t->h.count != count) return false;
    const key_words kw = table_keys(t);
    for (std::size_t i = 0; i < count; ++i) {
      std::string_view s;
      ref holder;
      if (!utf8_of(items[2 * i], s, holder)) throw py_error{};
      if ((kw[i] & tag_mask) == tag_short_str) {
        if (holder.get() || s.size() > max_short_str || kw[i] != short_str_word(s.data(), s.size()))
          return false;
        continue;
      }
      // Equal bytes, equal strs: a str with lone surrogates has bytes (surrogatepass) that no
      // other str has.
      std::string_view stored;
      if (!stored_str(out_.at(0), kw[i], stored) || stored != s) return false;
    }
    return true;
  }

  frozen set(PyObject* o, std::uint8_t shared) {
    // The elements as they are now, each held, before any is hashed. The base type's iterator:
    // a subclass's __iter__ (user code) does not run.
    held_items elements(held_);
    ref it(check(PyFrozenSet_Check(o) ? PyFrozenSet_Type.tp_iter(o) : PySet_Type.tp_iter(o)));
    while (PyObject* e = PyIter_Next(it.get())) {
      elements.add(e);
      Py_DECREF(e);  // PyIter_Next gave a new reference; the stack holds its own
    }
    if (PyErr_Occurred()) throw py_error{};
    const std::size_t n = elements.size();
    as_stored_keys(elements, 0, 1, n);
    const auto [off, height] = table(PyFrozenSet_Check(o) ? kind_frozenset : kind_set, shared, n,
                                     elements, 0, 1, nullptr, element);
    return {off, height + 1};
  }

  module_state& state_;
  std::vector<std::pair<std::size_t, ref>> nan_keys_;  // build_dict's keys holding a NaN, by index
  std::vector<std::pair<std::size_t, ref>> subclass_keys_;  // ...and its other subclass_keys
  std::vector<PyObject*> held_;                             // held_items' stack
  graph_output out_;
  bool uses_v2_ = false;          // whether the graph holds packed strs or v2 tables (finish)
  bool remember_small_ = true;    // whether store_once indexes new small nodes (unique_value)
  PyObject* item_key_ = nullptr;  // the str key whose value is being frozen (item_key_scope)
  word item_key_word_ = 0;        // ...and its frozen word
  std::vector<word> scratch_;     // key and item words of the containers being walked
  std::vector<std::uint64_t> scratch_hashes_;  // and their keys' hashes (table)
  value_sink* row_sink_ = nullptr;  // the sink the next dict() may be a row of (add_value)
  std::vector<step> path_;
  std::vector<PyObject*> open_;
  std::unordered_set<PyObject*> open_set_;
  std::unordered_map<std::uint64_t, std::uint64_t> shared_keys_;
  std::unordered_map<PyObject*, frozen> memo_;  // containers that may be reached again
  std::vector<ref> memo_holds_;                 // the memo's keys, held
  std::vector<ref> keep_;
  std::uint64_t values_ = 0;  // values frozen so far: signals are checked every 4096
};

}  // namespace

PyObject* py_freeze(PyObject* module, PyObject* args) {
  PyObject* obj;
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "O|O&", &obj, &arena_name_arg, &name)) return nullptr;
  PF_ENTRY_BEGIN
  freezer f(state_of(module), name ? name : "permafrost-python");
  const ref held(Py_NewRef(obj));
  const word root = f.value(obj).w;
  return f.finish(root);
  PF_ENTRY_END
}

// _writer_reservation(bytes): tests only; see graph_output::set_first_reservation.
PyObject* py_writer_reservation(PyObject*, PyObject* arg) {
  const Py_ssize_t bytes = PyLong_AsSsize_t(arg);
  if (bytes < 0) return PyErr_Occurred() ? nullptr : PyErr_Format(PyExc_ValueError, "negative");
  graph_output::set_first_reservation(static_cast<std::size_t>(bytes));
  Py_RETURN_NONE;
}

// _build(iterable, as_dict, name=None): build_dict()'s (as_dict true) or build_list()'s frozen
// root; see permafrost/__init__.py.
PyObject* py_build(PyObject* module, PyObject* args) {
  PyObject* iterable;
  int as_dict = 0;
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "Op|O&", &iterable, &as_dict, &arena_name_arg, &name)) return nullptr;
  PF_ENTRY_BEGIN
  freezer f(state_of(module), name ? name : "permafrost-python");
  const ref held(Py_NewRef(iterable));
  const word root = as_dict ? f.build_dict(iterable) : f.build_list(iterable);
  return f.finish(root);
  PF_ENTRY_END
}

}  // namespace permafrost::python
