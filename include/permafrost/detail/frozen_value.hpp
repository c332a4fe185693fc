// permafrost — what may be stored in a frozen container, and how a freeze check looks inside it
// (internal).
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>

#include "permafrost/arena.hpp"

namespace permafrost {

// Specialised to true for permafrost's own handle types (string, array<T>, the containers).
template <class T>
struct is_permafrost_type : std::false_type {};

// A value may live in a frozen container when nothing needs to run when it dies: frozen
// containers are never destroyed. Types that own heap memory (std::string, std::vector,
// std::shared_ptr) are refused, so nothing points out of the arena by accident.
template <class T>
inline constexpr bool frozen_storable_v =
    (std::is_trivially_destructible_v<T> && std::is_trivially_copyable_v<T>) ||
    is_permafrost_type<std::remove_cv_t<T>>::value;

namespace detail {

template <class T, class = void>
struct has_points_into : std::false_type {};
template <class T>
struct has_points_into<T, std::void_t<decltype(std::declval<const T&>().points_into(
                              std::declval<const arena&>()))>> : std::true_type {};

// True when every pointer `v` holds (that permafrost can see) lies inside `a`: raw object
// pointers, and types with a `bool points_into(const arena&) const` member (permafrost's handles).
// Plain data has no pointers and passes.
template <class T>
bool points_into(const T& v, const arena& a) {
  if constexpr (has_points_into<T>::value) {
    return v.points_into(a);
  } else if constexpr (std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>) {
    return v == nullptr || a.contains(v);
  } else {
    return true;
  }
}

// [p, p + bytes) lies in `a` (an empty range passes).
inline bool range_in(const arena& a, const void* p, std::size_t bytes) {
  if (bytes == 0) return true;
  return a.contains(p) && a.contains(static_cast<const char*>(p) + (bytes - 1));
}

}  // namespace detail
}  // namespace permafrost
