// permafrost — what may be stored in frozen containers, the points_into hook of the freeze
// checks, and the position-independence check for data bound for a frozen image.
//
// Contract:
// - frozen_storable_v<T>: T may be a value (or array element) of a frozen container when nothing
//   needs to run when it dies — frozen containers are never destroyed. Types that own heap memory
//   (std::string, std::vector, std::shared_ptr) are refused at compile time, so nothing points out
//   of the arena by accident. is_permafrost_type<T> marks permafrost's own handle types; users may
//   specialise it for handle types of their own.
// - The points_into hook: a type with a member `bool points_into(const permafrost::arena&) const`
//   tells the freeze checks (arena_options::freeze_checks) whether everything it references lies
//   inside the arena. permafrost's handles have one; give your own value types one by calling
//   permafrost::points_into(member, a) for each member that references something. A type without
//   the hook is opaque to the checks (only raw pointers are seen, when stored directly).
// - check_position_independent(a, root): for data written to a file and mapped elsewhere (a frozen
//   image), every reference inside the arena must be an offset: permafrost's containers store
//   only offsets; users' structs use permafrost::offset_ptr (offset_ptr.hpp). The check walks
//   `root` through the hooks and refuses any raw pointer it meets, naming its arena offset. An
//   offset_ptr's hook checks where it points, not what its target holds (structures may be
//   cyclic): check each container reached only through an offset_ptr on its own, or give the
//   root a hook that does.
//
// Thread safety: the checks only read; each thread may run its own check at any time (the
// position-independence mode is per thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "permafrost/arena.hpp"

namespace permafrost {

// Specialised to true for permafrost's own handle types (string, array<T>, the containers,
// frozen_json). A user type may specialise it when it is a handle that never needs destroying.
template <class T>
struct is_permafrost_type : std::false_type {};

// True when a T may live in a frozen container: trivially destructible (nothing to run when it
// dies; self-relative offset_ptr members are allowed) or a permafrost type.
template <class T>
inline constexpr bool frozen_storable_v =
    std::is_trivially_destructible_v<T> || is_permafrost_type<std::remove_cv_t<T>>::value;

namespace detail {

template <class T, class = void>
struct has_points_into : std::false_type {};
template <class T>
struct has_points_into<
    T, std::void_t<decltype(std::declval<const T&>().points_into(std::declval<const arena&>()))>>
    : std::true_type {};

// The state of the check running on this thread. In position-independent mode a raw pointer is
// refused wherever it points, and the first one met is remembered for the message.
struct check_context {
  bool position_independent = false;
  const void* raw_pointer_at = nullptr;
};
inline thread_local check_context t_check_context;

// [p, p + bytes) lies in `a` (an empty range passes).
inline bool range_in(const arena& a, const void* p, std::size_t bytes) {
  if (bytes == 0) return true;
  return a.contains(p) && a.contains(static_cast<const char*>(p) + (bytes - 1));
}

}  // namespace detail

// Effects: none (reads only). True when every reference `v` holds (that permafrost can see) lies
// inside `a`: types with the points_into hook answer themselves; a raw pointer (object or
// function) must be null or point into `a` — and, inside check_position_independent(), must be
// null. Anything else is plain data and passes. Call it on each member from your own hook.
template <class T>
bool points_into(const T& v, const arena& a) {
  if constexpr (detail::has_points_into<T>::value) {
    return v.points_into(a);
  } else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T>) {
    if (v == nullptr) return true;
    if (detail::t_check_context.position_independent) {
      if (detail::t_check_context.raw_pointer_at == nullptr)
        detail::t_check_context.raw_pointer_at = &v;
      return false;
    }
    if constexpr (std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>)
      return a.contains(v);
    else return true;  // code, not data: outside any arena by nature
  } else {
    return true;
  }
}

// Specialised to true (or with PERMAFROST_POINTER_FREE) for a class type without a points_into
// hook whose author vouches that it holds no pointer — plain numbers, characters, fixed arrays
// of them — so check_position_independent() may accept it without looking inside. The check
// cannot see into a class without a hook, so such a root must either get a hook or be declared
// here; anything else is a compile error (a pointer in it would be saved as it is).
template <class T>
struct declared_pointer_free : std::false_type {};

// Declares T pointer-free (see declared_pointer_free). Use at namespace scope (global).
#define PERMAFROST_POINTER_FREE(T) \
  template <>                      \
  struct permafrost::declared_pointer_free<T> : std::true_type {}

// True when check_position_independent() can vouch for a root of type T: T answers through the
// points_into hook, is not a class (a number, a pointer — seen and refused — an enum), or is
// declared pointer-free.
template <class T>
inline constexpr bool position_checkable_v =
    detail::has_points_into<T>::value || !std::is_class_v<T> || std::is_empty_v<T> ||
    declared_pointer_free<std::remove_cv_t<T>>::value;

// Effects: none (reads only). Checks that `root`, which must live in `a`, and everything it
// references through the points_into hook hold no absolute address and point only inside `a`.
// Returns an empty string when they do, else what is wrong: the arena offset of the first raw
// pointer met ("store permafrost::offset_ptr instead"), or a reference leaving the arena. For
// image writers: call it on a frozen arena's root before writing the arena's bytes to a file.
template <class T>
std::string check_position_independent(const arena& a, const T& root) {
  static_assert(position_checkable_v<T>,
                "permafrost: this root type has no points_into hook, so the position check "
                "cannot see inside it: give it a hook (bool points_into(const permafrost::arena&) "
                "const) or, if it holds no pointer, declare it with PERMAFROST_POINTER_FREE(T)");
  struct mode {
    detail::check_context saved = detail::t_check_context;
    mode() { detail::t_check_context = {true, nullptr}; }
    ~mode() { detail::t_check_context = saved; }
  } scope;
  const auto* base = reinterpret_cast<const char*>(a.used_bytes().data());
  const auto offset_of = [&](const void* p) {
    return std::to_string(static_cast<std::uintptr_t>(static_cast<const char*>(p) - base));
  };
  if (!detail::range_in(a, &root, sizeof(T)))
    return "permafrost: position independence: the root object lies outside the arena";
  const bool inside = permafrost::points_into(root, a);
  if (const void* raw = detail::t_check_context.raw_pointer_at; raw != nullptr) {
    if (!a.contains(raw))
      return "permafrost: position independence: a raw pointer outside the arena's bytes (in a "
             "copy the check was given); store permafrost::offset_ptr instead";
    return "permafrost: position independence: a raw pointer at arena offset " + offset_of(raw) +
           "; data bound for an image must hold offsets: store permafrost::offset_ptr instead";
  }
  if (!inside)
    return "permafrost: position independence: a reference reachable from the root (at arena "
           "offset " +
           offset_of(&root) + ") points outside the arena";
  return {};
}

}  // namespace permafrost
