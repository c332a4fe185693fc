// permafrost for Python — freeze(): Python objects into the frozen format (see freeze.hpp).
#include "freeze.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "format.hpp"
#include "keys.hpp"
#include "module_state.hpp"
#include "permafrost/hash.hpp"
#include "reading.hpp"
#include "scalars.hpp"
#include "store.hpp"
#include "value_path.hpp"
#include "values.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

constexpr std::size_t max_depth = 5000;

class freezer {
 public:
  explicit freezer(module_state& state) : state_(state) { buf_.reserve(1 << 16); }

  word value(PyObject* o) {
    if (o == Py_None) return const_none;
    if (o == Py_True) return const_true;
    if (o == Py_False) return const_false;
    if (PyLong_Check(o)) return integer(o);
    if (PyFloat_Check(o)) {
      const double d = PyFloat_AS_DOUBLE(o);
      word bits;
      std::memcpy(&bits, &d, sizeof bits);
      if ((bits & tag_mask) == 0) return bits | tag_inline_float;
      const std::uint64_t off = alloc(8);
      std::memcpy(at(off), &d, 8);
      return off | tag_float;
    }
    if (PyUnicode_Check(o)) return str(o);
    if (PyBytes_Check(o)) {
      return blob(kind_bytes, 0, PyBytes_AS_STRING(o),
                  static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
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
        return blob(static_cast<kind>(e.kind), e.flags, e.payload.data(), e.payload.size());
      keep_.push_back(std::move(e.replacement));
      return value(keep_.back().get());
    }
    fail(PyExc_TypeError, short_type_name(o) + " is not supported");
  }

  std::vector<char>& bytes() { return buf_; }

 private:
  using step = value_path_step;
  using step_kind = value_path_kind;
  using enum value_path_kind;

  [[noreturn]] void fail(PyObject* type, const std::string& what) {
    std::string msg = path_text(path_) + ": " + what;
    PyErr_SetString(type, msg.c_str());
    throw py_error{};
  }

  std::uint64_t alloc(std::size_t bytes) {
    const std::size_t off = buf_.size();
    const std::size_t rounded = (bytes + 7) & ~std::size_t{7};
    if (buf_.capacity() < off + rounded) buf_.reserve(std::max(buf_.capacity() * 2, off + rounded));
    buf_.resize(off + rounded);
    return off;
  }
  char* at(std::uint64_t off) { return buf_.data() + off; }
  void put_word(std::uint64_t off, word w) { std::memcpy(at(off), &w, sizeof w); }
  void put_header(std::uint64_t off, kind k, std::uint8_t flags, std::size_t count) {
    if (count > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const node_header h{k, flags, 0, static_cast<std::uint32_t>(count)};
    std::memcpy(at(off), &h, sizeof h);
  }

  word blob(kind k, std::uint8_t flags, const char* data, std::size_t n) {
    if (n > UINT32_MAX) fail(PyExc_ValueError, "too large (at most 2**32 - 1 items or bytes)");
    const std::uint64_t off = alloc(sizeof(node_header) + n);
    put_header(off, k, flags, n);
    if (n) std::memcpy(at(off) + sizeof(node_header), data, n);
    return dedupe(off);
  }

  // Small immutable nodes (strs, bytes, lists, tuples of at most 64 bytes) with equal bytes are
  // stored once: frozen data is never written, so sharing them is invisible to readers, and
  // records repeat small values (tags, enums, short lists) a lot. `off` must be the last node
  // in the buffer; it is dropped when an equal node exists.
  std::uint64_t dedupe(std::uint64_t off) {
    const std::size_t size = buf_.size() - off;
    if (size > 64) return off;
    if (dedupe_used_ * 2 >= dedupe_.size()) grow_dedupe();
    const std::uint64_t h =
        permafrost::detail::hash_bytes(at(off), size) | 1;  // 0 marks an empty slot
    const std::size_t mask = dedupe_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      dedupe_entry& e = dedupe_[i];
      if (e.hash == 0) {
        e = {h, off, size};
        ++dedupe_used_;
        return off;
      }
      if (e.hash == h && e.size == size && std::memcmp(at(e.off), at(off), size) == 0) {
        buf_.resize(off);
        return e.off;
      }
    }
  }

  void grow_dedupe() {
    std::vector<dedupe_entry> old(std::max<std::size_t>(1024, dedupe_.size() * 2));
    old.swap(dedupe_);
    const std::size_t mask = dedupe_.size() - 1;
    for (const dedupe_entry& e : old) {
      if (e.hash == 0) continue;
      std::size_t i = e.hash & mask;
      while (dedupe_[i].hash != 0) i = (i + 1) & mask;
      dedupe_[i] = e;
    }
  }

  word str(PyObject* o) {
    std::string_view s;
    ref holder;
    if (!utf8_of(o, s, holder)) throw py_error{};
    if (s.size() <= max_short_str && !holder.get()) return short_str_word(s.data(), s.size());
    std::uint8_t flags = PyUnicode_IS_ASCII(o) ? flag_ascii : 0;
    if (holder.get()) flags |= flag_surrogates;
    if (s.size() < 65536) {  // a 4-byte header
      const std::uint64_t off = alloc(4 + s.size());
      const node_header h{kind_str16, flags, static_cast<std::uint16_t>(s.size()), 0};
      std::memcpy(at(off), &h, 4);
      std::memcpy(at(off) + 4, s.data(), s.size());
      return dedupe(off);
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

  // Cycle and depth checks around one container.
  word container(PyObject* o, word (freezer::*build)(PyObject*)) {
    const bool seen = open_.size() <= 64 ? std::find(open_.begin(), open_.end(), o) != open_.end()
                                         : open_set_.count(o) != 0;
    if (seen) fail(PyExc_TypeError, "cycle: this " + short_type_name(o) + " contains itself");
    if (open_.size() >= max_depth) fail(PyExc_TypeError, "nested deeper than 5000 containers");
    if (open_.size() == 64) open_set_.insert(open_.begin(), open_.end());
    open_.push_back(o);
    if (open_.size() > 64) open_set_.insert(o);
    const word w = (this->*build)(o);
    if (open_.size() > 64) open_set_.erase(o);
    open_.pop_back();
    if (open_.size() == 64) open_set_.clear();
    return w;
  }

  word sequence(PyObject* o) {
    const bool tuple = PyTuple_Check(o);
    const Py_ssize_t n = tuple ? PyTuple_GET_SIZE(o) : PyList_GET_SIZE(o);
    // The items first (on a shared stack), then the node, so the node is last and can be deduped.
    const std::size_t mark = scratch_.size();
    path_.push_back({at_index, nullptr, 0});
    for (Py_ssize_t i = 0; i < n; ++i) {
      path_.back().index = i;
      // Freezing runs no Python code, so the list cannot change under us.
      PyObject* item = tuple ? PyTuple_GET_ITEM(o, i) : PyList_GET_ITEM(o, i);
      const word w = value(item);
      scratch_.push_back(w);
    }
    path_.pop_back();
    const std::size_t bytes = 8 * static_cast<std::size_t>(n);
    const std::uint64_t off = alloc(sizeof(node_header) + bytes);
    put_header(off, tuple ? kind_tuple : kind_list, 0, static_cast<std::size_t>(n));
    if (bytes) std::memcpy(at(off) + sizeof(node_header), scratch_.data() + mark, bytes);
    scratch_.resize(mark);
    return dedupe(off);
  }

  // A keys/set table over `keys` (borrowed), whose hashes are given.
  std::uint64_t table(kind k, const std::vector<PyObject*>& keys,
                      const std::vector<std::uint64_t>& hashes, step_kind how) {
    const std::size_t n = keys.size();
    if (n > max_table_keys) fail(PyExc_ValueError, "too large (at most 2**31 - 1 keys)");
    const auto count = static_cast<std::uint32_t>(n);
    const std::size_t bytes = table_bytes(n, table_capacity(count));
    const std::uint64_t off = alloc(bytes);
    write_table_header(at(off), k, count);
    const std::uint64_t keys_off = off + bytes - 8 * n;  // the key words end the table
    path_.push_back({how, nullptr, 0});
    for (std::size_t i = 0; i < n; ++i) {
      path_.back().index = static_cast<Py_ssize_t>(i);
      put_word(keys_off + 8 * i, value(keys[i]));
    }
    path_.pop_back();
    build_table_index(reinterpret_cast<table_header*>(at(off)), hashes.data());
    return off;
  }

  std::uint64_t hash_of(PyObject* key, Py_ssize_t i, step_kind how) {
    std::uint64_t h;
    if (key_hash(state_, key, h)) return h;
    PyErr_Clear();
    path_.push_back({how, nullptr, i});
    if (!PyUnicode_Check(key) && !PyLong_Check(key) && !PyFloat_Check(key) && !PyBytes_Check(key) &&
        !PyTuple_Check(key) && !PyFrozenSet_Check(key) && key != Py_None)
      fail(PyExc_TypeError, short_type_name(key) + " is not supported" + key_only_note(key));
    fail(PyExc_TypeError,
         "unhashable (or nested deeper than 5000) key of type " + short_type_name(key));
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

  word dict(PyObject* o) {
    std::vector<PyObject*> keys, values;
    std::vector<std::uint64_t> hashes;
    const Py_ssize_t n = PyDict_Size(o);
    keys.reserve(static_cast<std::size_t>(n));
    values.reserve(static_cast<std::size_t>(n));
    hashes.reserve(static_cast<std::size_t>(n));
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    bool all_str = true;
    std::uint64_t sig = static_cast<std::uint64_t>(n);
    while (PyDict_Next(o, &pos, &k, &v)) {
      const std::uint64_t h = hash_of(k, static_cast<Py_ssize_t>(keys.size()), key_of);
      keys.push_back(k);
      values.push_back(v);
      hashes.push_back(h);
      all_str = all_str && PyUnicode_CheckExact(k);
      sig = permafrost::detail::hash_word(sig + h);
    }
    // Dicts with the same str keys in the same order (records) share one keys table.
    std::uint64_t keys_off = 0;
    const bool shareable = all_str && n <= 64;
    if (shareable) {
      auto it = shared_keys_.find(sig);
      if (it != shared_keys_.end() && same_keys(it->second, keys)) keys_off = it->second;
    }
    if (keys_off == 0) {
      keys_off = table(kind_keys, keys, hashes, key_of);
      if (shareable) shared_keys_.emplace(sig, keys_off);
    }
    // Records are small: a 8-byte header when the count and the keys' offset fit.
    const bool small = values.size() < 65536 && keys_off / 8 <= UINT32_MAX;
    const std::size_t header = small ? 8 : sizeof(dict_header);
    const std::uint64_t off = alloc(header + 8 * values.size());
    if (small) {
      const node_header h{kind_dict16, 0, static_cast<std::uint16_t>(values.size()),
                          static_cast<std::uint32_t>(keys_off / 8)};
      std::memcpy(at(off), &h, sizeof h);
    } else {
      put_header(off, kind_dict, 0, values.size());
      std::memcpy(at(off) + 8, &keys_off, 8);
    }
    path_.push_back({value_of, nullptr, 0});
    for (std::size_t i = 0; i < values.size(); ++i) {
      path_.back().key = keys[i];
      put_word(off + header + 8 * i, value(values[i]));
    }
    path_.pop_back();
    return off;
  }

  bool same_keys(std::uint64_t table_off, const std::vector<PyObject*>& keys) {
    const auto* t = reinterpret_cast<const table_header*>(at(table_off));
    if (t->h.count != keys.size()) return false;
    const word* kw = table_keys(t);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::string_view s;
      ref holder;
      if (!utf8_of(keys[i], s, holder)) throw py_error{};
      if ((kw[i] & tag_mask) == tag_short_str) {
        if (holder.get() || s.size() > max_short_str || kw[i] != short_str_word(s.data(), s.size()))
          return false;
        continue;
      }
      if ((kw[i] & tag_mask) != tag_node) return false;
      const auto* n = reinterpret_cast<const node_header*>(at(kw[i]));
      if (!is_str(n->kind) || str_size(n) != s.size() ||
          std::memcmp(str_bytes(n), s.data(), s.size()))
        return false;
    }
    return true;
  }

  word set(PyObject* o) {
    std::vector<ref> held;
    std::vector<PyObject*> keys;
    std::vector<std::uint64_t> hashes;
    // The base type's iterator: a subclass's __iter__ (user code) does not run.
    ref it(check(PyFrozenSet_Check(o) ? PyFrozenSet_Type.tp_iter(o) : PySet_Type.tp_iter(o)));
    while (PyObject* e = PyIter_Next(it.get())) {
      held.emplace_back(e);
      hashes.push_back(hash_of(e, static_cast<Py_ssize_t>(keys.size()), element));
      keys.push_back(e);
    }
    if (PyErr_Occurred()) throw py_error{};
    return table(PyFrozenSet_Check(o) ? kind_frozenset : kind_set, keys, hashes, element);
  }

  struct dedupe_entry {
    std::uint64_t hash = 0;
    std::uint64_t off = 0;
    std::size_t size = 0;
  };

  module_state& state_;
  std::vector<char> buf_;
  std::vector<word> scratch_;
  std::vector<dedupe_entry> dedupe_;
  std::size_t dedupe_used_ = 0;
  std::vector<step> path_;
  std::vector<PyObject*> open_;
  std::unordered_set<PyObject*> open_set_;
  std::unordered_map<std::uint64_t, std::uint64_t> shared_keys_;
  std::vector<ref> keep_;
};

}  // namespace

PyObject* py_freeze(PyObject* module, PyObject* args) {
  PyObject* obj;
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "O|z", &obj, &name)) return nullptr;
  PF_ENTRY_BEGIN
  module_state& state = state_of(module);
  freezer f(state);
  std::vector<char>& buf = f.bytes();
  buf.resize(sizeof(root_header));
  const word root = f.value(obj);
  root_header rh{};
  std::memcpy(rh.magic, root_magic, sizeof root_magic);
  rh.root = root;
  std::memcpy(buf.data(), &rh, sizeof rh);
  const std::uint8_t root_kind =
      (root & tag_mask) == tag_node ? node_at<node_header>(buf.data(), root)->kind : 0;
  if (root_kind != kind_list && root_kind != kind_tuple && !is_dict(root_kind) &&
      root_kind != kind_set && root_kind != kind_frozenset) {
    // A scalar root: an ordinary (immutable) object says it all; no arena needed.
    return thaw_word(state, buf.data(), root);
  }
  ref store = store_from_graph(state, buf.data(), buf.size(), name ? name : "permafrost-python");
  return root_of(reinterpret_cast<store_object*>(store.get()));
  PF_ENTRY_END
}

}  // namespace permafrost::python
