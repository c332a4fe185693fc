// permafrost — frozen_json: a JSON document (parsed with nlohmann::json) converted into an arena.
//
// Contract: freeze_json(arena, j) copies the nlohmann::json value j into the arena as a tree of
// frozen_json values — strings interned (a value repeated across the document is stored once),
// arrays as permafrost::array<frozen_json>, objects as permafrost::sorted_map<string, frozen_json>
// — and returns the root, which lives in the arena. j can then be dropped; freeze the arena and
// every worker forked afterwards reads the document without writing a byte of it.
//
// Header-only; including it needs nlohmann/json.hpp (Debian's nlohmann-json3-dev). The library
// itself does not depend on nlohmann.
//
// Thread safety: a frozen document may be read by any number of threads and processes at once.
#pragma once

#include <cstddef>
#include <cstdint>
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

// A JSON value in an arena: 16 bytes, trivially copyable, no destructor.
class frozen_json {
 public:
  enum class kind : std::uint8_t { null, boolean, integer, unsigned_integer, floating, string, array, object };
  using object_type = sorted_map<string, frozen_json>;

  frozen_json() noexcept : u_(0) {}

  kind type() const noexcept { return kind_; }
  bool is_null() const noexcept { return kind_ == kind::null; }
  bool is_bool() const noexcept { return kind_ == kind::boolean; }
  bool is_number() const noexcept {
    return kind_ == kind::integer || kind_ == kind::unsigned_integer || kind_ == kind::floating;
  }
  bool is_string() const noexcept { return kind_ == kind::string; }
  bool is_array() const noexcept { return kind_ == kind::array; }
  bool is_object() const noexcept { return kind_ == kind::object; }

  // Typed reads. Throws: std::domain_error when the value has another type (numbers convert
  // between integer and floating point as with a static_cast).
  bool as_bool() const {
    expect(kind::boolean);
    return b_;
  }
  std::int64_t as_int() const {
    switch (kind_) {
      case kind::integer: return i_;
      case kind::unsigned_integer: return static_cast<std::int64_t>(u_);
      case kind::floating: return static_cast<std::int64_t>(d_);
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
    return string(s_).view();
  }
  array<frozen_json> as_array() const {
    expect(kind::array);
    return array<frozen_json>(a_, n_);
  }
  const object_type& as_object() const {
    expect(kind::object);
    return *o_;
  }

  // Elements of an array or members of an object; 0 for anything else.
  std::size_t size() const noexcept {
    return kind_ == kind::array ? n_ : kind_ == kind::object ? o_->size() : 0;
  }

  // Object member lookup. find: nullptr when this is not an object or has no such key.
  const frozen_json* find(std::string_view key) const noexcept {
    if (kind_ != kind::object) return nullptr;
    const auto* e = o_->find(key);
    return e != nullptr ? &e->value() : nullptr;
  }
  bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }
  // Throws: std::out_of_range when absent; std::domain_error when this is not an object.
  const frozen_json& at(std::string_view key) const { return as_object().at(key); }
  const frozen_json& operator[](std::string_view key) const { return at(key); }
  // Array element. Throws: std::out_of_range; std::domain_error when this is not an array.
  const frozen_json& at(std::size_t i) const { return as_array().at(i); }
  const frozen_json& operator[](std::size_t i) const { return at(i); }

  // For freeze checks: what this value points to lies inside `a`.
  bool points_into(const arena& a) const {
    switch (kind_) {
      case kind::string: return string(s_).points_into(a);
      case kind::array: return array<frozen_json>(a_, n_).points_into(a);
      case kind::object: return a.contains(o_);
      default: return true;
    }
  }

 private:
  friend frozen_json freeze_json_value(arena&, intern_pool&, const nlohmann::json&);

  void expect(kind k) const {
    if (kind_ != k) throw std::domain_error("permafrost::frozen_json: wrong type");
  }

  kind kind_ = kind::null;
  std::uint32_t n_ = 0;  // array length
  union {
    bool b_;
    std::int64_t i_;
    std::uint64_t u_;
    double d_;
    const detail::string_rep* s_;
    const frozen_json* a_;
    const object_type* o_;
  };
};

static_assert(std::is_trivially_copyable_v<frozen_json> && std::is_trivially_destructible_v<frozen_json>);

// Effects: converts j (recursively) into `a`, interning strings through `pool`.
// Throws: std::invalid_argument for binary or discarded values and arrays of 2^32 or more
// elements; as the containers' builders and arena::allocate.
inline frozen_json freeze_json_value(arena& a, intern_pool& pool, const nlohmann::json& j) {
  frozen_json v;
  using t = nlohmann::json::value_t;
  switch (j.type()) {
    case t::null:
      break;
    case t::boolean:
      v.kind_ = frozen_json::kind::boolean;
      v.b_ = j.get<bool>();
      break;
    case t::number_integer:
      v.kind_ = frozen_json::kind::integer;
      v.i_ = j.get<std::int64_t>();
      break;
    case t::number_unsigned:
      v.kind_ = frozen_json::kind::unsigned_integer;
      v.u_ = j.get<std::uint64_t>();
      break;
    case t::number_float:
      v.kind_ = frozen_json::kind::floating;
      v.d_ = j.get<double>();
      break;
    case t::string:
      v.kind_ = frozen_json::kind::string;
      v.s_ = pool.intern(j.get_ref<const std::string&>()).rep();
      break;
    case t::array: {
      if (j.size() > UINT32_MAX) throw std::invalid_argument("permafrost::freeze_json: array too long");
      std::vector<frozen_json> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(freeze_json_value(a, pool, e));
      const auto arr = make_array(a, std::span<const frozen_json>(items));
      v.kind_ = frozen_json::kind::array;
      v.a_ = arr.data();
      v.n_ = static_cast<std::uint32_t>(arr.size());
      break;
    }
    case t::object: {
      sorted_map_builder<string, frozen_json> b{a};
      for (const auto& [key, value] : j.items()) b.insert(key, freeze_json_value(a, pool, value));
      v.kind_ = frozen_json::kind::object;
      v.o_ = &b.finish();
      break;
    }
    default:
      throw std::invalid_argument("permafrost::freeze_json: binary or discarded JSON value");
  }
  return v;
}

// Effects: converts j into `a` and returns the root, which lives in `a`. Strings are interned;
// pass a pool to share it across documents and read its stats.
// Throws: as freeze_json_value().
inline const frozen_json& freeze_json(arena& a, const nlohmann::json& j, intern_pool* pool = nullptr) {
  intern_pool local(a);
  intern_pool& p = pool != nullptr ? *pool : local;
  return *a.make<frozen_json>(freeze_json_value(a, p, j));
}

}  // namespace permafrost
