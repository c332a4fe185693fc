// permafrost — frozen_json: a JSON document (parsed with nlohmann::json) converted into an arena.
//
// Contract: copy_json(arena, j) copies the nlohmann::json value j into the arena as a tree of
// frozen_json values — strings interned (a value repeated across the document is stored once),
// arrays as permafrost::array<frozen_json>, objects as permafrost::sorted_map<string, frozen_json>
// — and returns the root, which lives in the arena. j can then be dropped; freeze the arena and
// every worker forked afterwards reads the document without writing a byte of it. The document
// holds no absolute address (offsets only). Any nesting depth converts and checks without
// recursion (nlohmann's parser is the limit).
//
// Header-only; including it needs nlohmann/json.hpp (Debian's nlohmann-json3-dev). The library
// itself does not depend on nlohmann.
//
// Thread safety: a frozen document may be read by any number of threads and processes at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "permafrost/array.hpp"
#include "permafrost/intern_pool.hpp"
#include "permafrost/sorted_map.hpp"
#include "permafrost/string.hpp"

namespace permafrost {

namespace detail {
struct json_access;
}

// A JSON value in an arena: 16 bytes, trivially destructible. A string, array or object value
// refers to its data by a self-relative offset (no absolute address), so a document in frozen
// data works wherever the data is mapped; copying a frozen_json re-bases the offset (never
// memcpy one to another address).
class frozen_json {
 public:
  enum class kind : std::uint8_t {
    null,
    boolean,
    integer,
    unsigned_integer,
    floating,
    string,
    array,
    object
  };
  using object_type = sorted_map<string, frozen_json>;

  frozen_json() noexcept : u_(0) {}
  // Effects: a copy referring to the same data (the offset re-based to this object's address).
  frozen_json(const frozen_json& other) noexcept : kind_(other.kind_), n_(other.n_), u_(other.u_) {
    if (other.refers()) set_target(other.target());
  }
  frozen_json& operator=(const frozen_json& other) noexcept {
    kind_ = other.kind_;
    n_ = other.n_;
    u_ = other.u_;
    if (other.refers()) set_target(other.target());
    return *this;
  }

  kind type() const noexcept { return kind_; }
  bool is_null() const noexcept { return kind_ == kind::null; }
  bool is_bool() const noexcept { return kind_ == kind::boolean; }
  bool is_number() const noexcept {
    return kind_ == kind::integer || kind_ == kind::unsigned_integer || kind_ == kind::floating;
  }
  bool is_string() const noexcept { return kind_ == kind::string; }
  bool is_array() const noexcept { return kind_ == kind::array; }
  bool is_object() const noexcept { return kind_ == kind::object; }

  // Typed reads. Throws: std::domain_error when the value has another type. Numbers convert
  // between integer and floating point as with a static_cast (a double loses its fraction), but
  // only when the result is representable: std::out_of_range otherwise (a double outside the
  // target's range or NaN, a negative number for as_uint(), a number above INT64_MAX for
  // as_int()).
  bool as_bool() const {
    expect(kind::boolean);
    return b_;
  }
  std::int64_t as_int() const {
    switch (kind_) {
      case kind::integer: return i_;
      case kind::unsigned_integer:
        if (u_ > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          out_of_range("as_int");
        return static_cast<std::int64_t>(u_);
      case kind::floating:
        // [-2^63, 2^63): both bounds are exact doubles; NaN fails both comparisons.
        if (!(d_ >= -0x1p63 && d_ < 0x1p63)) out_of_range("as_int");
        return static_cast<std::int64_t>(d_);
      default: throw std::domain_error("permafrost::frozen_json: not a number");
    }
  }
  std::uint64_t as_uint() const {
    switch (kind_) {
      case kind::integer:
        if (i_ < 0) out_of_range("as_uint");
        return static_cast<std::uint64_t>(i_);
      case kind::unsigned_integer: return u_;
      case kind::floating:
        // (-1, 2^64): a static_cast truncates towards zero, so -0.5 gives 0.
        if (!(d_ > -1.0 && d_ < 0x1p64)) out_of_range("as_uint");
        return static_cast<std::uint64_t>(d_);
      default: throw std::domain_error("permafrost::frozen_json: not a number");
    }
  }
  double as_double() const {
    switch (kind_) {
      case kind::integer: return static_cast<double>(i_);
      case kind::unsigned_integer: return static_cast<double>(u_);
      case kind::floating: return d_;
      default: throw std::domain_error("permafrost::frozen_json: not a number");
    }
  }
  std::string_view as_string() const {
    expect(kind::string);
    const auto* rep = static_cast<const detail::string_rep*>(target());
    return {rep->bytes(), rep->size};
  }
  array<frozen_json> as_array() const {
    expect(kind::array);
    return n_ == 0 ? array<frozen_json>() : array<frozen_json>(elements(), n_);
  }
  const object_type& as_object() const {
    expect(kind::object);
    return *object();
  }

  // Elements of an array or members of an object; 0 for anything else.
  std::size_t size() const noexcept {
    return kind_ == kind::array ? n_ : kind_ == kind::object ? object()->size() : 0;
  }

  // Object member lookup. find: nullptr when this is not an object or has no such key.
  const frozen_json* find(std::string_view key) const noexcept {
    if (kind_ != kind::object) return nullptr;
    const auto* e = object()->find(key);
    return e != nullptr ? &e->value() : nullptr;
  }
  bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }
  // Throws: std::out_of_range when absent; std::domain_error when this is not an object.
  const frozen_json& at(std::string_view key) const { return as_object().at(key); }
  const frozen_json& operator[](std::string_view key) const { return at(key); }
  // Array element. Throws: std::out_of_range; std::domain_error when this is not an array.
  const frozen_json& at(std::size_t i) const {
    expect(kind::array);
    if (i >= n_) throw std::out_of_range("permafrost::frozen_json::at: index out of range");
    return elements()[i];
  }
  const frozen_json& operator[](std::size_t i) const { return at(i); }

  // For freeze checks: this value and everything below it lie inside `a`. Walks the whole
  // subtree with an explicit stack (any nesting depth; no recursion).
  bool points_into(const arena& a) const {
    std::vector<const frozen_json*> todo{this};
    while (!todo.empty()) {
      const frozen_json* v = todo.back();
      todo.pop_back();
      switch (v->kind_) {
        case kind::string: {
          const auto* rep = static_cast<const detail::string_rep*>(v->target());
          if (!detail::range_in(a, rep, sizeof(detail::string_rep)) ||
              !detail::range_in(a, rep, sizeof(detail::string_rep) + rep->size + 1))
            return false;
          break;
        }
        case kind::array:
          if (v->n_ == 0) break;
          if (!detail::range_in(a, v->elements(), std::size_t{v->n_} * sizeof(frozen_json)))
            return false;
          for (std::size_t i = 0; i < v->n_; ++i) todo.push_back(v->elements() + i);
          break;
        case kind::object: {
          const object_type* o = v->object();
          if (!detail::range_in(a, o, sizeof(object_type)) || !o->layout_in(a)) return false;
          for (const auto& e : *o) todo.push_back(&e.value());
          break;
        }
        default: break;
      }
    }
    return true;
  }

  // The freeze check copy_json() registers for a document's root.
  std::string check(const arena& a) const {
    return points_into(a) ? std::string()
                          : "frozen_json: a value of the document points outside the arena";
  }

 private:
  friend struct detail::json_access;

  bool refers() const noexcept {
    return kind_ == kind::string || kind_ == kind::object || (kind_ == kind::array && n_ != 0);
  }
  const void* target() const noexcept {
    return reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(this) +
                                         static_cast<std::uintptr_t>(off_));
  }
  void set_target(const void* p) noexcept {
    off_ = static_cast<std::ptrdiff_t>(reinterpret_cast<std::uintptr_t>(p) -
                                       reinterpret_cast<std::uintptr_t>(this));
  }
  const frozen_json* elements() const noexcept { return static_cast<const frozen_json*>(target()); }
  const object_type* object() const noexcept { return static_cast<const object_type*>(target()); }

  void expect(kind k) const {
    if (kind_ != k) throw std::domain_error("permafrost::frozen_json: wrong type");
  }
  [[noreturn]] static void out_of_range(const char* what) {
    throw std::out_of_range(std::string("permafrost::frozen_json::") + what +
                            ": the number does not fit the result type");
  }

  kind kind_ = kind::null;
  std::uint32_t n_ = 0;  // array length
  union {
    bool b_;
    std::int64_t i_;
    std::uint64_t u_;
    double d_;
    std::ptrdiff_t off_;  // string, array, object: from this object to the data
  };
};

static_assert(std::is_trivially_destructible_v<frozen_json> && sizeof(frozen_json) == 16);

namespace detail {

// Builds frozen_json values; the one place that sets their fields.
struct json_access {
  // Effects: a scalar or string value (strings interned through `pool`).
  static frozen_json scalar(intern_pool& pool, const nlohmann::json& j) {
    frozen_json v;
    using t = nlohmann::json::value_t;
    using k = frozen_json::kind;
    switch (j.type()) {
      case t::null: break;
      case t::boolean:
        v.kind_ = k::boolean;
        v.b_ = j.get<bool>();
        break;
      case t::number_integer:
        v.kind_ = k::integer;
        v.i_ = j.get<std::int64_t>();
        break;
      case t::number_unsigned:
        v.kind_ = k::unsigned_integer;
        v.u_ = j.get<std::uint64_t>();
        break;
      case t::number_float:
        v.kind_ = k::floating;
        v.d_ = j.get<double>();
        break;
      case t::string:
        v.kind_ = k::string;
        v.set_target(string_access::rep(pool.intern(j.get_ref<const std::string&>())));
        break;
      default: throw std::invalid_argument("permafrost::copy_json: binary or discarded JSON value");
    }
    return v;
  }

  // One array or object being converted: its children converted so far.
  struct frame {
    const nlohmann::json* j;
    nlohmann::json::const_iterator next;
    std::vector<frozen_json> values;
    std::vector<const std::string*> keys;  // objects: keys[i] names values[i]
  };

  static frame open(const nlohmann::json& j) {
    if (j.is_array() && j.size() > std::numeric_limits<std::uint32_t>::max())
      throw std::invalid_argument("permafrost::copy_json: array too long");
    return frame{&j, j.cbegin(), {}, {}};
  }

  // Effects: lays out a finished frame's array or object in `a`.
  static frozen_json close(arena& a, const frame& f) {
    frozen_json v;
    if (f.j->is_array()) {
      v.kind_ = frozen_json::kind::array;
      v.n_ = static_cast<std::uint32_t>(f.values.size());
      if (!f.values.empty())
        v.set_target(copy_array(a, std::span<const frozen_json>(f.values)).data());
    } else {
      // The document's check walks every object; the maps register none of their own.
      sorted_map_builder<string, frozen_json> b{a, duplicate_policy::reject, no_freeze_check};
      for (std::size_t i = 0; i < f.values.size(); ++i) b.insert(*f.keys[i], f.values[i]);
      v.kind_ = frozen_json::kind::object;
      v.set_target(&b.finish());
    }
    return v;
  }

  // Effects: converts j into `a`, depth first with an explicit stack: any nesting depth the
  // parser accepted converts, in memory proportional to the depth, without recursion.
  static frozen_json convert(arena& a, intern_pool& pool, const nlohmann::json& root) {
    if (!root.is_array() && !root.is_object()) return scalar(pool, root);
    std::vector<frame> stack;
    stack.push_back(open(root));
    for (;;) {
      frame& f = stack.back();
      if (f.next != f.j->cend()) {
        const auto it = f.next++;
        if (f.j->is_object()) f.keys.push_back(&it.key());
        const nlohmann::json& child = *it;
        if (child.is_array() || child.is_object()) {
          stack.push_back(open(child));  // invalidates f
        } else {
          f.values.push_back(scalar(pool, child));
        }
        continue;
      }
      const frozen_json v = close(a, f);
      stack.pop_back();
      if (stack.empty()) return v;
      stack.back().values.push_back(v);
    }
  }
};

}  // namespace detail

// Effects: converts j into `a`, interning strings through `pool`, and returns the value (which
// refers into `a`; store it in the arena — e.g. as a container value — to keep it). Registers no
// freeze check: the container that stores it checks it. Any nesting depth converts (no
// recursion; memory in proportion to the depth).
// Throws: std::invalid_argument for binary or discarded values and arrays of 2^32 or more
// elements; as the containers' builders and arena::allocate.
[[nodiscard]] inline frozen_json copy_json_value(arena& a, intern_pool& pool,
                                                 const nlohmann::json& j) {
  return detail::json_access::convert(a, pool, j);
}

// Effects: copies j into `a` and returns the root, which lives in `a`, and registers the
// document's freeze check. Strings are interned; pass a pool to share it across documents and
// read its stats.
// Throws: as copy_json_value().
[[nodiscard]] inline const frozen_json& copy_json(arena& a, const nlohmann::json& j,
                                                  intern_pool* pool = nullptr) {
  intern_pool local(a);
  intern_pool& p = pool != nullptr ? *pool : local;
  const frozen_json* root = a.make<frozen_json>(copy_json_value(a, p, j));
  detail::register_check(a, root);
  return *root;
}

// The former names, kept for one release: "freeze" means write protection (arena::freeze).
[[deprecated("use permafrost::copy_json")]] inline const frozen_json& freeze_json(
    arena& a, const nlohmann::json& j, intern_pool* pool = nullptr) {
  return copy_json(a, j, pool);
}
[[deprecated("use permafrost::copy_json_value")]] inline frozen_json freeze_json_value(
    arena& a, intern_pool& pool, const nlohmann::json& j) {
  return copy_json_value(a, pool, j);
}

}  // namespace permafrost
