// permafrost for Python — JSON text straight from frozen bytes (dumps.hpp).
//
// One writer walks ordinary objects the way json's encoder does (the same type tests in the same
// order, the same key conversions, subclasses through the same protocols) and frozen nodes
// directly from their words. Frozen records that share a keys table (format.hpp: dicts with the
// same str keys) have their keys rendered once per dumps() call and copied after that.
#include "dumps.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "json_numbers.hpp"
#include "json_output.hpp"
#include "module_state.hpp"
#include "py_ref.hpp"
#include "reading.hpp"
#include "scalars.hpp"
#include "store.hpp"
#include "value_path.hpp"
#include "values.hpp"
#include "views.hpp"

namespace permafrost::python {
namespace {

// Nesting is bounded as json bounds it, by the interpreter's recursion check
// (Py_EnterRecursiveCall: RecursionError "maximum recursion depth exceeded while encoding a JSON
// object"), and never deeper than this, whatever sys.setrecursionlimit() says: ~270 bytes of C
// stack a level at most, so 2.7 MiB.
constexpr int max_json_depth = 10000;

struct json_options {
  bool pretty = false;      // indent given: newlines, indent_unit per level
  std::string indent_unit;  // "    " for indent=4
  std::string item_sep = ",";
  std::string key_sep = ":";
  bool sort_keys = false;
  text_form form = text_form::utf8;  // dumps(): bytes; _encode(): ascii or surrogatepass
  bool allow_nan = true;             // NaN, Infinity, -Infinity (as json); else ValueError
  bool skipkeys = false;             // keys of other types are skipped rather than refused
  bool check_circular = true;
  PyObject* default_fn = nullptr;  // borrowed: json's `default`, called for unsupported values
};

class json_writer {
 public:
  json_writer(const module_state& state, const json_options& opt) : state_(state), opt_(opt) {}
  json_writer(const json_writer&) = delete;
  json_writer& operator=(const json_writer&) = delete;

  // The whole document: bytes, or nullptr with an exception set.
  PyObject* run(PyObject* obj) {
    try {
      value(obj);
      return PyBytes_FromStringAndSize(out_.data(), static_cast<Py_ssize_t>(out_.size()));
    } catch (const py_error&) {
      raise_depth_error();
      add_path_to_error();
    } catch (const std::bad_alloc&) {
      PyErr_NoMemory();
    } catch (const std::exception& e) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, e.what());
    }
    return nullptr;
  }

 private:
  // ----- errors ---------------------------------------------------------------------------

  // An error of ours (not one raised by user code), to which the path is added.
  [[noreturn, gnu::noinline]] void fail(PyObject* type, const char* msg) {
    PyErr_SetString(type, msg);
    own_error_ = true;
    throw py_error{};
  }
  [[noreturn]] void fail(PyObject* type, const std::string& msg) { fail(type, msg.c_str()); }

  // Unwinding through a container records where we were, innermost first.
  // Out of line: their temporaries stay off the recursion's frames.
  [[gnu::noinline]] void note_index(std::size_t i) {
    path_.push_back("[" + std::to_string(i) + "]");
  }
  // A key is noted while the error is pending: making its text (UTF-8 that a lone surrogate
  // refuses, repr(), thawing a frozen key) may raise and clear, or run code, which must neither
  // see nor lose that error (it was lost: SystemError, NULL without an exception).
  [[gnu::noinline]] void note_key(PyObject* key) {
    const pending_error keep;
    path_.push_back("[" + py_key_text(key) + "]");
  }
  [[gnu::noinline]] void note_frozen_key(const char* base, word key) {
    const pending_error keep;
    path_.push_back("[" + frozen_key_text(base, key) + "]");
  }
  class pending_error {
   public:
    pending_error() { PyErr_Fetch(&type_, &value_, &tb_); }
    ~pending_error() { PyErr_Restore(type_, value_, tb_); }
    pending_error(const pending_error&) = delete;
    pending_error& operator=(const pending_error&) = delete;

   private:
    PyObject *type_, *value_, *tb_;
  };

  void add_path_to_error() {
    if (!own_error_ || path_.empty() || !PyErr_Occurred()) return;
    const std::string where = joined_path({path_.rbegin(), path_.rend()});
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    ref text(value ? PyObject_Str(value) : nullptr);
    if (!text.p) {
      PyErr_Restore(type, value, tb);
      return;
    }
    PyErr_Format(type, "%U (at %s)", text.p, where.c_str());
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
  }

  // A key as the path shows it: "name" for a str (as freeze's errors do), repr() otherwise.
  std::string py_key_text(PyObject* key) {
    if (PyUnicode_Check(key)) {
      Py_ssize_t n = 0;
      if (const char* t = PyUnicode_AsUTF8AndSize(key, &n)) {
        std::string out = "\"";
        for (const char c : std::string_view(t, static_cast<std::size_t>(n))) {
          if (c == '"' || c == '\\') out += '\\';
          out += c;
        }
        return out + "\"";
      }
      PyErr_Clear();
    }
    ref r(PyObject_Repr(key));
    const char* t = r.p ? PyUnicode_AsUTF8(r.p) : nullptr;
    if (!t) {
      PyErr_Clear();
      return "?";
    }
    return t;
  }

  std::string frozen_key_text(const char* base, word w) {
    ref k(thaw_word(state_, base, w));
    if (!k.p) {
      PyErr_Clear();
      return "?";
    }
    return py_key_text(k.p);
  }

  // ----- depth and cycles -------------------------------------------------------------------

  // One level of nesting (a container, or a default() result), for as long as it is written:
  // the depth check, and the stack of ordinary containers json's cycle check walks when the
  // depth runs out (a cycle always ends there; json's "markers" find it sooner, at a cost on
  // every container).
  class level {
   public:
    level(json_writer& w, PyObject* container) : w_(w), container_(container) {
      // A long document (shared nodes are written at every reference) stays interruptible.
      if ((++w.containers_ & 0xffff) == 0 && PyErr_CheckSignals() < 0) throw py_error{};
      if (w.depth_ >= max_json_depth || Py_EnterRecursiveCall(" while encoding a JSON object"))
        w.too_deep();
      // A thread's small stack (threading.stack_size) runs out long before either limit.
      if (!stack_room_at(static_cast<std::size_t>(w.depth_))) {
        Py_LeaveRecursiveCall();
        throw py_error{};
      }
      ++w.depth_;
      if (container) w.open_.push_back(container);
    }
    level(const level&) = delete;
    level& operator=(const level&) = delete;
    ~level() {
      --w_.depth_;
      if (container_) w_.open_.pop_back();
      Py_LeaveRecursiveCall();
    }

   private:
    json_writer& w_;
    PyObject* container_;
  };

  // The error is raised once the stack has unwound (run()): at this depth the interpreter has
  // no recursion left even to make an exception object (3.12+ counts C calls).
  [[noreturn, gnu::noinline]] void too_deep() {
    depth_error_ = PyExc_RecursionError;
    if (opt_.check_circular) {
      std::vector<PyObject*> sorted(open_);
      std::sort(sorted.begin(), sorted.end());
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        depth_error_ = PyExc_ValueError;
    }
    if (depth_error_ == PyExc_ValueError || !PyErr_Occurred()) PyErr_Clear();
    else depth_error_ = nullptr;  // the interpreter's RecursionError stands
    throw py_error{};
  }
  // No path for these: it would be thousands of steps long.
  void raise_depth_error() {
    if (depth_error_ == PyExc_ValueError)
      PyErr_SetString(PyExc_ValueError, "Circular reference detected");
    else if (depth_error_)
      PyErr_SetString(PyExc_RecursionError, "maximum nesting of 10000 levels exceeded");
  }

  // ----- layout -----------------------------------------------------------------------------

  void newline_indent() {
    out_.put('\n');
    for (int i = 0; i < level_; ++i) out_.put(opt_.indent_unit);
  }
  // Before the first item of a container (after '[' or '{').
  void open_items() {
    ++level_;
    if (opt_.pretty) newline_indent();
  }
  void between_items() {
    out_.put(opt_.item_sep);
    if (opt_.pretty) newline_indent();
  }
  void close_items(char close) {
    --level_;
    if (opt_.pretty) newline_indent();
    out_.put(close);
  }

  // ----- scalars ----------------------------------------------------------------------------

  void integer(std::int64_t v) {
    char* o = out_.room(24);
    out_.commit(std::to_chars(o, o + 24, v).ptr);
  }

  [[gnu::noinline]] void floating(double d) {
    if (std::isfinite(d)) {
      char* o = out_.room(max_float_repr);
      out_.commit(o + float_repr(d, o));
      return;
    }
    if (!opt_.allow_nan) {
      fail(PyExc_ValueError, std::string("Out of range float values are not JSON compliant: ") +
                                 (std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf")));
    }
    out_.put(std::isnan(d)
                 ? std::string_view("NaN")
                 : (d > 0 ? std::string_view("Infinity") : std::string_view("-Infinity")));
  }

  // A little-endian two's complement integer, checked against int's digit limit as
  // int.__repr__ would be (sys.get_int_max_str_digits(); 0 is no limit).
  [[gnu::noinline]] void big_integer(const unsigned char* bytes, std::size_t n) {
    if (min_decimal_digits(bytes, n) > 640) {  // 640: the smallest limit Python accepts
      const long limit = int_digit_limit();
      if (limit > 0 && min_decimal_digits(bytes, n) > static_cast<std::size_t>(limit))
        digits_over_limit(limit);
      scratch_.clear();
      const std::size_t digits = decimal_of_twos_complement(bytes, n, scratch_);
      if (limit > 0 && digits > static_cast<std::size_t>(limit)) digits_over_limit(limit);
      out_.put(scratch_);
      return;
    }
    scratch_.clear();
    decimal_of_twos_complement(bytes, n, scratch_);
    out_.put(scratch_);
  }
  long int_digit_limit() {
    if (digit_limit_ < 0) {
      PyObject* fn = PySys_GetObject("get_int_max_str_digits");  // borrowed
      ref r(fn ? PyObject_CallNoArgs(fn) : nullptr);
      if (!r.p) {
        PyErr_Clear();
        digit_limit_ = 4300;  // CPython's default
      } else {
        digit_limit_ = PyLong_AsLong(r.p);
        if (digit_limit_ < 0) {
          PyErr_Clear();
          digit_limit_ = 4300;
        }
      }
    }
    return digit_limit_;
  }
  [[noreturn]] void digits_over_limit(long limit) {
    fail(PyExc_ValueError, "Exceeds the limit (" + std::to_string(limit) +
                               " digits) for integer string conversion; use "
                               "sys.set_int_max_str_digits() to increase the limit");
  }

  // ----- strings ----------------------------------------------------------------------------

  [[gnu::noinline]] void string_utf8(const char* s, std::size_t n) {
    if (!write_json_string_utf8(out_, s, n, opt_.form))
      fail(PyExc_ValueError, "a frozen str is not valid UTF-8 (a damaged image?)");
  }
  template <class Ch>
  void string_units(const Ch* s, std::size_t n) {
    write_json_string_units(out_, s, n, opt_.form);
  }

  void py_string(PyObject* s) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) throw py_error{};
#endif
    const auto n = static_cast<std::size_t>(PyUnicode_GET_LENGTH(s));
    const void* data = PyUnicode_DATA(s);
    if (PyUnicode_IS_ASCII(s)) return string_utf8(static_cast<const char*>(data), n);
    switch (PyUnicode_KIND(s)) {
      case PyUnicode_1BYTE_KIND: return string_units(static_cast<const Py_UCS1*>(data), n);
      case PyUnicode_2BYTE_KIND: return string_units(static_cast<const Py_UCS2*>(data), n);
      default: return string_units(static_cast<const Py_UCS4*>(data), n);
    }
  }

  // ----- ordinary objects, as json's encoder takes them -------------------------------------

  // The containers, and everything but the commonest scalars, are out of line: a nesting level
  // costs the C stack only value()/frozen() and the container's frame (<= ~270 bytes), so the
  // 10,000-level bound stays far inside a thread's stack.
  void value(PyObject* o) {
    if (PyUnicode_CheckExact(o)) return py_string(o);
    if (PyLong_CheckExact(o)) return py_int(o);
    if (PyDict_CheckExact(o)) return py_dict(o);
    if (PyList_CheckExact(o)) return py_sequence(o);
    if (o == Py_None) return out_.put("null", 4);
    if (o == Py_True) return out_.put("true", 4);
    if (o == Py_False) return out_.put("false", 5);
    if (PyFloat_CheckExact(o)) return floating(PyFloat_AS_DOUBLE(o));
    if (PyTuple_CheckExact(o)) return py_sequence(o);
    if (is_view(state_, o)) return frozen_root(reinterpret_cast<view_object*>(o));
    // Subclasses, in json's order (str, int, float, list or tuple, dict), through the base
    // type's value: an IntEnum is written as its int, a str subclass as its characters.
    if (PyUnicode_Check(o)) return py_string(o);
    if (PyLong_Check(o)) return py_int(o);
    if (PyFloat_Check(o)) return floating(PyFloat_AS_DOUBLE(o));
    if (PyList_Check(o) || PyTuple_Check(o)) return py_sequence(o);
    if (PyDict_Check(o)) return py_dict(o);
    unsupported(o);
  }

  [[gnu::noinline]] void py_int(PyObject* o) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) throw py_error{};
    if (!overflow) return integer(v);
    ref text(check(PyLong_Type.tp_repr(o)));  // int.__repr__: the digit limit applies as in json
    Py_ssize_t n = 0;
    const char* t = must_utf8(text.p, n);
    out_.put(t, static_cast<std::size_t>(n));
  }

  static const char* must_utf8(PyObject* s, Py_ssize_t& n) {
    const char* t = PyUnicode_AsUTF8AndSize(s, &n);
    if (!t) throw py_error{};
    return t;
  }

  // A value json cannot encode: default(value) when given (its result encoded in its place),
  // else TypeError as json raises it.
  [[gnu::noinline]] void unsupported(PyObject* o) {
    if (!opt_.default_fn) {
      // The kinds freeze() stores besides json's: written as their frozen copy is.
      scalar_encoding e;
      if (encode_scalar(o, e)) {
        if (e.replacement.get()) {  // an Enum member: its value
          const level nested(*this, o);
          return value(e.replacement.get());
        }
        scratch_.clear();
        append_encoded_json(e, scratch_);
        return out_.put(scratch_);
      }
      fail(PyExc_TypeError, "Object of type " + short_type_name(o) + " is not JSON serializable");
    }
    const level nested(*this, o);
    ref r(PyObject_CallOneArg(opt_.default_fn, o));
    if (!r.p) {
      // default() itself may run out of recursion (Python frames count too): a cycle through
      // default() is json's ValueError all the same.
      if (PyErr_ExceptionMatches(PyExc_RecursionError)) too_deep();
      throw py_error{};
    }
    value(r.p);
  }

  [[gnu::noinline]] void py_sequence(PyObject* o) {
    // An exact list may change under us (user code runs in default() and subclass hooks):
    // its length is read each time and each item ref while it is written. Anything else is
    // json's PySequence_Fast: a tuple, or a new list of what a subclass's __iter__ yields.
    const bool live = PyList_CheckExact(o);
    ref fast(live ? (Py_INCREF(o), o) : check(PySequence_Fast(o, "not a sequence")));
    if (PySequence_Fast_GET_SIZE(fast.p) == 0) return out_.put("[]", 2);
    const level nested(*this, o);
    out_.put('[');
    open_items();
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast.p); ++i) {
      if (i) between_items();
      PyObject* item = PySequence_Fast_GET_ITEM(fast.p, i);
      Py_INCREF(item);
      ref hold(item);
      try {
        value(item);
      } catch (const py_error&) {
        note_index(static_cast<std::size_t>(i));
        throw;
      }
    }
    close_items(']');
  }

  // A key of an ordinary dict as json converts it; false when skipped (skipkeys).
  [[gnu::noinline]] bool py_key(PyObject* k) {
    if (PyUnicode_Check(k)) {
      py_string(k);
    } else if (PyFloat_Check(k)) {
      quoted([&] { floating(PyFloat_AS_DOUBLE(k)); });
    } else if (k == Py_True || k == Py_False || k == Py_None) {
      out_.put(k == Py_True ? "\"true\"" : (k == Py_False ? "\"false\"" : "\"null\""));
    } else if (PyLong_Check(k)) {
      quoted([&] { py_int(k); });
    } else if (opt_.skipkeys) {
      return false;
    } else {
      fail(PyExc_TypeError,
           std::string("keys must be str, int, float, bool or None, not ") + Py_TYPE(k)->tp_name);
    }
    out_.put(opt_.key_sep);
    return true;
  }

  template <class Write>
  void quoted(Write&& write) {
    out_.put('"');
    write();
    out_.put('"');
  }

  [[gnu::noinline]] void py_dict(PyObject* o) {
    if (PyDict_GET_SIZE(o) == 0) return out_.put("{}", 2);
    const level nested(*this, o);
    out_.put('{');
    open_items();
    bool first = true;
    if (PyDict_CheckExact(o) && !opt_.sort_keys) {
      Py_ssize_t pos = 0;
      PyObject *k, *v;
      while (PyDict_Next(o, &pos, &k, &v)) {  // both ref: user code may change the dict
        Py_INCREF(k);
        Py_INCREF(v);
        ref hk(k), hv(v);
        py_dict_item(k, v, first);
      }
    } else {
      py_dict_items(o, first);
    }
    close_items('}');
  }

  // json's way for a dict subclass or sort_keys: items() (a subclass's own), sorted as
  // (key, value) pairs when asked.
  [[gnu::noinline]] void py_dict_items(PyObject* o, bool& first) {
    ref items(check(PyMapping_Items(o)));
    if (opt_.sort_keys && PyList_Sort(items.p) < 0) throw py_error{};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items.p); ++i) {
      // Held: items() may return a list it keeps, which default() or a value's code may empty
      // while the pair is written (its key was then read freed, naming it in an error).
      PyObject* kv = PyList_GET_ITEM(items.p, i);
      Py_INCREF(kv);
      const ref hold(kv);
      if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2)
        fail(PyExc_ValueError, "items must return 2-tuples");
      py_dict_item(PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1), first);
    }
  }

  void py_dict_item(PyObject* k, PyObject* v, bool& first) {
    const std::size_t mark = out_.size();
    if (!first) between_items();
    if (!py_key(k)) {  // skipped: take back the separator
      out_.commit(const_cast<char*>(out_.data()) + mark);
      return;
    }
    first = false;
    try {
      value(v);
    } catch (const py_error&) {
      note_key(k);
      throw;
    }
  }

  // ----- frozen values ----------------------------------------------------------------------

  [[gnu::noinline]] void frozen_root(view_object* v) {
    PyObject* const store = reinterpret_cast<PyObject*>(v->store);
    Py_INCREF(store);
    ref hold(store);
    const reading r(reinterpret_cast<PyObject*>(v));  // open, and mapped until written
    if (!r) throw py_error{};
    PyObject* const outer = owner_;  // a default() result inside a frozen value may be a view
    owner_ = store;
    frozen(r.base, r.off);
    owner_ = outer;
  }

  void frozen(const char* base, word w) {
    switch (w & tag_mask) {
      case tag_int: return integer(static_cast<std::int64_t>(w) >> 3);
      case tag_const:
        return out_.put(w == const_none ? std::string_view("null")
                                        : (w == const_true ? std::string_view("true")
                                                           : std::string_view("false")));
      case tag_float: {
        double d;
        std::memcpy(&d, base + (w & ~tag_mask), sizeof d);
        return floating(d);
      }
      case tag_inline_float: {
        const word bits = w & ~tag_mask;
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return floating(d);
      }
      case tag_short_str: {
        char b[8];
        short_str_bytes(w, b);
        return string_utf8(b, short_str_size(w));
      }
      case tag_packed_str: {
        const std::string_view s = packed_str(base, w);
        return string_utf8(s.data(), s.size());
      }
      case tag_node: break;
      case tag_row: return frozen_dict(base, w);
      default: return frozen_unsupported(base, w);
    }
    const auto* n = reinterpret_cast<const node_header*>(base + w);
    switch (n->kind) {
      case kind_str:
      case kind_str16: return string_utf8(str_bytes(n), str_size(n));
      case kind_bigint:
        return big_integer(reinterpret_cast<const unsigned char*>(node_bytes(n)), n->count);
      case kind_list:
      case kind_tuple: return frozen_sequence(base, n);
      case kind_dict:
      case kind_dict16:
      case kind_table: return frozen_dict(base, w);
      case kind_datetime:
      case kind_date:
      case kind_time:
      case kind_timedelta:
      case kind_decimal:
      case kind_uuid: return frozen_scalar(base, w, n);
      // bytes, sets, and any kind json has no text for: what json.dumps does with the thawed
      // value (default(), or TypeError naming its type; thaw raises on a corrupt word).
      default: return frozen_unsupported(base, w);
    }
  }

  // A datetime, date, time, timedelta, Decimal or UUID: its text (scalar_format.hpp), or, when
  // a default() is given, what that makes of the thawed value (Flask's provider passes its own:
  // the same text as for the dict the record was frozen from).
  [[gnu::noinline]] void frozen_scalar(const char* base, word w, const node_header* n) {
    if (opt_.default_fn) return frozen_unsupported(base, w);
    scalar_text(n);
  }
  void scalar_text(const node_header* n) {
    scratch_.clear();
    append_scalar_json(n, scratch_);
    out_.put(scratch_);
  }

  // bytes, set, frozenset: what json.dumps(thawed) does with the thawed value.
  [[gnu::noinline]] void frozen_unsupported(const char* base, word w) {
    ref thawed(check(thaw_word(state_, base, w)));
    unsupported(thawed.p);
  }

  [[gnu::noinline]] void frozen_sequence(const char* base, const node_header* n) {
    if (n->count == 0) return out_.put("[]", 2);
    const level nested(*this, nullptr);
    out_.put('[');
    open_items();
    const word* items = seq_items(n);
    for (std::uint32_t i = 0; i < n->count; ++i) {
      if (i) between_items();
      try {
        frozen(base, items[i]);
      } catch (const py_error&) {
        note_index(i);
        throw;
      }
    }
    close_items(']');
  }

  // The keys of a record-sized keys table (freeze() shares one among dicts with the same str
  // keys), rendered once per dumps() call ("key" + key separator each) with the order to write
  // them in. Held by shared_ptr: a nested dict may replace the cache slot of the one being
  // written.
  struct rendered_keys {
    const char* base = nullptr;
    std::uint64_t keys_off = 0;
    PyObject* owner = nullptr;  // strong: the graph stays mapped while its text is cached
    std::string text;
    std::vector<std::uint32_t> ends;   // key i's text is text[ends[i-1], ends[i])
    std::vector<std::uint32_t> order;  // entries in writing order (sorted when sort_keys)
    std::vector<bool> live;            // written when reached (they may fail or be skipped)
    rendered_keys() = default;
    rendered_keys(const rendered_keys&) = delete;
    rendered_keys& operator=(const rendered_keys&) = delete;
    ~rendered_keys() { Py_XDECREF(owner); }
  };
  static constexpr std::uint32_t max_cached_keys = 64;

  // A cache slot remembers the last keys table that mapped to it; its keys are rendered the
  // second time that table is met (a single record pays nothing for the cache). A table is its
  // graph's owner (the store) and offset, not its address alone: default() may close a graph
  // written before and freeze another at the same address, whose records then got the first
  // one's keys (and with more keys, read past their text).
  struct key_cache_slot {
    const char* base = nullptr;
    std::uint64_t keys_off = 0;
    ref owner;  // strong: compared by identity, so it must not be freed and its address reused
    std::shared_ptr<const rendered_keys> rendered;
  };

  // The rendered keys of a table met before, or null the first time (write them directly).
  [[gnu::noinline]] std::shared_ptr<const rendered_keys> keys_of(const char* base,
                                                                 std::uint64_t keys_off,
                                                                 std::uint32_t count) {
    key_cache_slot& slot = key_cache_[(keys_off >> 3) % key_cache_.size()];
    if (slot.base != base || slot.keys_off != keys_off || slot.owner.p != owner_) {
      slot.base = base;
      slot.keys_off = keys_off;
      Py_XINCREF(owner_);
      slot.owner = ref(owner_);
      slot.rendered = nullptr;
      return nullptr;
    }
    if (slot.rendered) return slot.rendered->ends.size() == count ? slot.rendered : nullptr;
    const key_words kw = table_keys(reinterpret_cast<const table_header*>(base + keys_off));
    auto e = std::make_shared<rendered_keys>();
    e->base = base;
    e->keys_off = keys_off;
    e->order = key_order(base, kw, count);
    e->ends.resize(count);
    e->live.resize(count);
    // Render each key with this writer (escapes, numbers), then move the text out of it. Keys
    // that may fail or be skipped (other types, big ints, non-finite floats) are written when
    // reached, so that errors come in json's order.
    const std::size_t mark = out_.size();
    for (std::uint32_t i = 0; i < count; ++i) {
      e->live[i] = !always_written(base, kw[i]);
      if (!e->live[i]) frozen_key(base, kw[i]);
      e->ends[i] = static_cast<std::uint32_t>(out_.size() - mark);
    }
    e->text.assign(out_.data() + mark, out_.size() - mark);
    out_.commit(const_cast<char*>(out_.data()) + mark);
    Py_XINCREF(owner_);
    e->owner = owner_;
    slot.rendered = e;
    return e;
  }

  // The dict (a dict, dict16 or table node, or a table's row) of word w.
  [[gnu::noinline]] void frozen_dict(const char* base, word w) {
    const dict_reader d(base, w);
    const std::uint32_t count = d.count();
    if (count == 0) return out_.put("{}", 2);
    const auto kw = table_keys(reinterpret_cast<const table_header*>(base + d.keys_offset()));
    std::shared_ptr<const rendered_keys> cached;
    if (count <= max_cached_keys) cached = keys_of(base, d.keys_offset(), count);
    std::vector<std::uint32_t> sorted;
    if (!cached && opt_.sort_keys) sorted = key_order(base, kw, count);
    const std::uint32_t* order =
        cached ? cached->order.data() : (opt_.sort_keys ? sorted.data() : nullptr);
    const level nested(*this, nullptr);
    out_.put('{');
    open_items();
    bool first = true;
    for (std::uint32_t j = 0; j < count; ++j) {
      const std::uint32_t i = order ? order[j] : j;
      const std::size_t mark = out_.size();
      if (!first) between_items();
      if (cached && !cached->live[i]) {
        const std::uint32_t start = i ? cached->ends[i - 1] : 0;
        out_.put(cached->text.data() + start, cached->ends[i] - start);
      } else if (!frozen_key(base, kw[i])) {  // skipped: take back the separator
        out_.commit(const_cast<char*>(out_.data()) + mark);
        continue;
      }
      first = false;
      try {
        frozen(base, d.value(i));
      } catch (const py_error&) {
        note_frozen_key(base, kw[i]);
        throw;
      }
    }
    close_items('}');
  }

  // json's TypeError for a key of another type (tuple, frozenset, bytes...), naming the type of
  // the thawed key.
  [[noreturn, gnu::noinline]] void bad_key_type(const char* base, word w) {
    ref key(check(thaw_word(state_, base, w)));
    fail(PyExc_TypeError,
         std::string("keys must be str, int, float, bool or None, not ") + Py_TYPE(key.p)->tp_name);
  }

  // Whether frozen_key() writes this key without failing or skipping it.
  bool always_written(const char* base, word w) const {
    switch (w & tag_mask) {
      case tag_short_str:
      case tag_packed_str:
      case tag_int:
      case tag_const: return true;
      case tag_node: return is_str(reinterpret_cast<const node_header*>(base + w)->kind);
      case tag_float:
      case tag_inline_float: return opt_.allow_nan;
      default: return false;
    }
  }

  // A frozen key as json converts the thawed key, with the key separator; false when skipped.
  [[gnu::noinline]] bool frozen_key(const char* base, word w) {
    const word tag = w & tag_mask;
    if (tag == tag_short_str || tag == tag_packed_str) {
      frozen(base, w);
    } else if (tag == tag_node) {
      const auto* n = reinterpret_cast<const node_header*>(base + w);
      if (is_str(n->kind)) {
        frozen(base, w);
      } else if (n->kind == kind_bigint) {
        quoted([&] { frozen(base, w); });
      } else if (opt_.skipkeys) {
        return false;
      } else {
        bad_key_type(base, w);
      }
    } else if (tag == tag_const) {
      out_.put(w == const_true ? "\"true\"" : (w == const_false ? "\"false\"" : "\"null\""));
    } else {
      quoted([&] { frozen(base, w); });  // an int or a float
    }
    out_.put(opt_.key_sep);
    return true;
  }

  // The order to write a frozen dict's keys in: insertion order, or sorted as json sorts the
  // thawed dict's items. All-str and all-int keys are sorted here (UTF-8 byte order is code
  // point order); any other mix goes to Python's sort of the thawed keys, which raises json's
  // TypeError for keys that do not compare.
  [[gnu::noinline]] std::vector<std::uint32_t> key_order(const char* base, const key_words& kw,
                                                         std::uint32_t count) {
    std::vector<std::uint32_t> order(count);
    std::iota(order.begin(), order.end(), 0u);
    if (!opt_.sort_keys) return order;
    bool all_str = true, all_int = true;
    for (std::uint32_t i = 0; i < count; ++i) {
      const word tag = kw[i] & tag_mask;
      std::string_view stored;
      all_str = all_str && (tag == tag_short_str || stored_str(base, kw[i], stored));
      all_int = all_int && (tag == tag_int || kw[i] == const_true || kw[i] == const_false);
    }
    if (all_str) {
      std::vector<char> shorts(8 * std::size_t{count});
      std::vector<std::string_view> text(count);
      for (std::uint32_t i = 0; i < count; ++i) {
        if ((kw[i] & tag_mask) == tag_short_str) {
          short_str_bytes(kw[i], &shorts[8 * std::size_t{i}]);
          text[i] = {&shorts[8 * std::size_t{i}], short_str_size(kw[i])};
        } else {
          stored_str(base, kw[i], text[i]);
        }
      }
      std::sort(order.begin(), order.end(),
                [&](std::uint32_t a, std::uint32_t b) { return text[a] < text[b]; });
      return order;
    }
    if (all_int) {
      auto num = [&](std::uint32_t i) -> std::int64_t {
        if ((kw[i] & tag_mask) == tag_int) return static_cast<std::int64_t>(kw[i]) >> 3;
        return kw[i] == const_true ? 1 : 0;
      };
      std::sort(order.begin(), order.end(),
                [&](std::uint32_t a, std::uint32_t b) { return num(a) < num(b); });
      return order;
    }
    // (thawed key, index) pairs: no two keys of a dict are equal, so the index never decides
    // and the comparisons are exactly those of sorting the (key, value) pairs.
    ref pairs(check(PyList_New(count)));
    for (std::uint32_t i = 0; i < count; ++i) {
      ref k(check(thaw_word(state_, base, kw[i])));
      ref index(check(PyLong_FromUnsignedLong(i)));
      PyList_SET_ITEM(pairs.p, i, check(PyTuple_Pack(2, k.p, index.p)));
    }
    if (PyList_Sort(pairs.p) < 0) throw py_error{};
    for (std::uint32_t j = 0; j < count; ++j)
      order[j] = static_cast<std::uint32_t>(
          PyLong_AsUnsignedLong(PyTuple_GET_ITEM(PyList_GET_ITEM(pairs.p, j), 1)));
    return order;
  }

  const module_state& state_;
  const json_options& opt_;
  out_buffer out_;
  std::string scratch_;
  std::vector<std::string> path_;
  std::vector<PyObject*> open_;
  int depth_ = 0;
  std::uint64_t containers_ = 0;  // entered so far: signals are checked every 65,536
  int level_ = 0;
  long digit_limit_ = -1;
  bool own_error_ = false;
  PyObject* depth_error_ = nullptr;  // too_deep(): the exception type to raise once unwound
  PyObject* owner_ = nullptr;        // the store of the frozen value being written
  std::array<key_cache_slot, 16> key_cache_;
};

// indent: None, an int (that many spaces; negative: none) or a str, as json takes it.
bool parse_indent(PyObject* indent, json_options& opt) {
  if (!indent || indent == Py_None) return true;
  opt.pretty = true;
  if (PyUnicode_Check(indent)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(indent, &n);
    if (!s) return false;
    opt.indent_unit.assign(s, static_cast<std::size_t>(n));
    return true;
  }
  if (!PyIndex_Check(indent)) {
    PyErr_Format(PyExc_TypeError, "indent must be None, an int or a str, not %.100s",
                 Py_TYPE(indent)->tp_name);
    return false;
  }
  const Py_ssize_t n = PyNumber_AsSsize_t(indent, PyExc_OverflowError);
  if (n == -1 && PyErr_Occurred()) return false;
  if (n > 0) opt.indent_unit.assign(static_cast<std::size_t>(n), ' ');
  return true;
}

bool parse_separator(PyObject* sep, std::string& out) {
  Py_ssize_t n = 0;
  const char* s = PyUnicode_Check(sep) ? PyUnicode_AsUTF8AndSize(sep, &n) : nullptr;
  if (!s) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "separators must be str");
    return false;
  }
  out.assign(s, static_cast<std::size_t>(n));
  return true;
}

// Any object, as json takes it: one that is not callable fails only when called ("'int' object
// is not callable"), and a value that never needs default() is written.
bool parse_default(PyObject* fn, json_options& opt) {
  if (fn && fn != Py_None) opt.default_fn = fn;
  return true;
}

bool truth(PyObject* o, bool& out) {
  const int t = PyObject_IsTrue(o);
  if (t < 0) return false;
  out = t != 0;
  return true;
}

}  // namespace

// dumps(obj, *, indent=None, sort_keys=False, default=None): obj may be passed by keyword, as
// json.dumps(obj=...) takes it.
PyObject* py_dumps(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (nargs > 1) {
    PyErr_Format(PyExc_TypeError, "dumps() takes 1 positional argument but %zd were given", nargs);
    return nullptr;
  }
  PyObject* obj = nargs == 1 ? args[0] : nullptr;
  json_options opt;
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject* name = PyTuple_GET_ITEM(kwnames, i);
    PyObject* v = args[nargs + i];
    if (PyUnicode_CompareWithASCIIString(name, "indent") == 0) {
      if (!parse_indent(v, opt)) return nullptr;
    } else if (PyUnicode_CompareWithASCIIString(name, "sort_keys") == 0) {
      if (!truth(v, opt.sort_keys)) return nullptr;
    } else if (PyUnicode_CompareWithASCIIString(name, "default") == 0) {
      if (!parse_default(v, opt)) return nullptr;
    } else if (PyUnicode_CompareWithASCIIString(name, "obj") == 0) {
      if (obj) {
        PyErr_SetString(PyExc_TypeError, "dumps() got multiple values for argument 'obj'");
        return nullptr;
      }
      obj = v;
    } else {
      PyErr_Format(PyExc_TypeError, "dumps() got an unexpected keyword argument '%U'", name);
      return nullptr;
    }
  }
  if (!obj) {
    PyErr_SetString(PyExc_TypeError, "dumps() missing 1 required argument: 'obj'");
    return nullptr;
  }
  if (opt.pretty) opt.key_sep = ": ";
  json_writer w(state_of(module), opt);
  return w.run(obj);
}

PyObject* py_encode(PyObject* module, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 11) {
    PyErr_SetString(PyExc_TypeError, "_encode() takes 11 arguments");
    return nullptr;
  }
  json_options opt;
  bool ensure_ascii = false, for_str = false;
  if (!parse_indent(args[1], opt) || !truth(args[2], opt.sort_keys) ||
      !parse_default(args[3], opt) || !truth(args[4], ensure_ascii) ||
      !parse_separator(args[5], opt.item_sep) || !parse_separator(args[6], opt.key_sep) ||
      !truth(args[7], opt.allow_nan) || !truth(args[8], opt.skipkeys) ||
      !truth(args[9], opt.check_circular) || !truth(args[10], for_str))
    return nullptr;
  // For a str, the caller decodes the bytes with surrogatepass: a lone surrogate comes out raw
  // in the str, as json.dumps(ensure_ascii=False) leaves it.
  opt.form = ensure_ascii ? text_form::ascii : for_str ? text_form::surrogatepass : text_form::utf8;
  json_writer w(state_of(module), opt);
  return w.run(args[0]);
}

}  // namespace permafrost::python

namespace permafrost::python {

PyObject* py_jsonable(PyObject*, PyObject* o) {
  PF_ENTRY_BEGIN
  scalar_encoding e;
  if (!encode_scalar(o, e)) {
    PyErr_Format(PyExc_TypeError, "Object of type %s is not JSON serializable",
                 short_type_name(o).c_str());
    return nullptr;
  }
  if (e.replacement.get()) return e.replacement.release();
  std::string text;
  append_encoded_json(e, text);  // a JSON string of ASCII: its characters are between the quotes
  return PyUnicode_FromStringAndSize(text.data() + 1, static_cast<Py_ssize_t>(text.size() - 2));
  PF_ENTRY_END
}

}  // namespace permafrost::python
