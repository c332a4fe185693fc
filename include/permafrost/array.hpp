// permafrost — permafrost::array<T>, an immutable contiguous sequence in an arena.
//
// Contract: an array<T> is a handle (a self-relative offset + size, see offset_ptr.hpp) to T's
// laid out contiguously in an arena; it holds no absolute address, so an array stored in frozen
// data stays valid wherever the data is mapped. Like std::span<const T>, it never owns, copies or
// frees; copying a handle re-bases its offset and writes nothing, and the elements' destructors
// never run, so T must be frozen-storable (trivially destructible or a permafrost type).
//
// Thread safety: a handle is a value; any number of threads may read the same elements at once.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "permafrost/arena.hpp"
#include "permafrost/frozen_storable.hpp"
#include "permafrost/offset_ptr.hpp"

namespace permafrost {

template <class T>
class array {
  static_assert(frozen_storable_v<T>,
                "permafrost::array<T>: T must be trivially destructible or a permafrost type");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using const_iterator = const T*;
  using iterator = const T*;

  constexpr array() noexcept = default;
  // Internal: a handle to n T's already in an arena.
  array(const T* data, std::size_t n) noexcept : data_(data), size_(n) {}

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const T* data() const noexcept { return data_.get(); }
  const T* begin() const noexcept { return data(); }
  const T* end() const noexcept { return data() + size_; }
  const T& operator[](std::size_t i) const noexcept { return data()[i]; }
  const T& front() const noexcept { return data()[0]; }
  const T& back() const noexcept { return data()[size_ - 1]; }

  // Throws: std::out_of_range when i >= size().
  const T& at(std::size_t i) const {
    if (i >= size_) throw std::out_of_range("permafrost::array::at: index out of range");
    return data()[i];
  }

  std::span<const T> span() const noexcept { return {data(), size_}; }
  operator std::span<const T>() const noexcept { return span(); }  // NOLINT: meant to be implicit

  // For freeze checks: the elements, and whatever they point to, lie inside `a`.
  bool points_into(const arena& a) const {
    if (!detail::range_in(a, data(), size_ * sizeof(T))) return false;
    for (const T& v : *this)
      if (!permafrost::points_into(v, a)) return false;
    return true;
  }

 private:
  offset_ptr<const T> data_;
  std::size_t size_ = 0;
};

template <class T>
struct is_permafrost_type<array<T>> : std::true_type {};

// Effects: copies `items` into `a` (each element by its copy constructor, so offset-based
// handles re-base) and returns a handle to the copy. An empty input allocates nothing.
// Throws: std::bad_alloc when the size overflows; as arena::allocate otherwise.
// (Named for what it does: arena::make_array<T>(n) makes n new elements; this copies.)
template <class T>
[[nodiscard]] array<T> copy_array(arena& a, std::span<const T> items) {
  static_assert(std::is_copy_constructible_v<T>);
  if (items.empty()) return {};
  if (items.size() > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_alloc();
  T* first = static_cast<T*>(a.allocate(items.size() * sizeof(T), alignof(T)));
  for (std::size_t i = 0; i < items.size(); ++i) ::new (static_cast<void*>(first + i)) T(items[i]);
  return {first, items.size()};
}

template <class T>
[[nodiscard]] array<T> copy_array(arena& a, std::initializer_list<T> items) {
  return copy_array(a, std::span<const T>(items.begin(), items.size()));
}

// The former name of copy_array, kept for one release.
template <class T>
[[deprecated("use permafrost::copy_array")]] array<T> make_array(arena& a,
                                                                 std::span<const T> items) {
  return copy_array(a, items);
}
template <class T>
[[deprecated("use permafrost::copy_array")]] array<T> make_array(arena& a,
                                                                 std::initializer_list<T> items) {
  return copy_array(a, items);
}

}  // namespace permafrost
