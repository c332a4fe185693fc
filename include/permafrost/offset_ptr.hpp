// permafrost — offset_ptr<T>: a self-relative pointer, for users' own structs in frozen data.
//
// Contract: an offset_ptr stores the distance from its own address to the object it points at,
// never an address. Frozen data made only of offsets means the same thing wherever its bytes are
// mapped: an arena's bytes written to a file and mapped at another address (a frozen image) need
// no relocation pass and no write. Store offset_ptr<T>, never T*, in a struct that goes into an
// arena bound for an image; a raw pointer found there is refused by
// check_position_independent() (frozen_storable.hpp).
//
// Copying re-bases: the copy points at the same object as the original, from its own address
// (the copy constructor and assignment compute a new offset). So offset_ptr is not trivially
// copyable — never memcpy one (or a struct holding one) to another address; copy it with its
// constructor or assignment. It is trivially destructible, so it may be stored in frozen
// containers. Null is representable (the stored offset 1, which no object can be at: it lies
// inside the offset_ptr's own bytes). An offset_ptr may point at itself.
//
// Thread safety: a value; reading one from any number of threads at once is safe.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace permafrost {

template <class T>
class offset_ptr {
 public:
  using element_type = T;

  // Effects: a null pointer.
  constexpr offset_ptr() noexcept = default;
  constexpr offset_ptr(std::nullptr_t) noexcept {}  // NOLINT: implicit, like T*
  // Effects: points at p (nullptr gives a null pointer).
  offset_ptr(T* p) noexcept : off_(encode(p)) {}  // NOLINT: implicit, like T*
  // Effects: points at what `other` points at (re-based to this object's address).
  offset_ptr(const offset_ptr& other) noexcept : off_(encode(other.get())) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
  offset_ptr(const offset_ptr<U>& other) noexcept : off_(encode(other.get())) {}  // NOLINT

  offset_ptr& operator=(const offset_ptr& other) noexcept {
    off_ = encode(other.get());
    return *this;
  }
  offset_ptr& operator=(T* p) noexcept {
    off_ = encode(p);
    return *this;
  }
  offset_ptr& operator=(std::nullptr_t) noexcept {
    off_ = null_offset;
    return *this;
  }

  // The address this pointer designates in the current mapping, or nullptr.
  T* get() const noexcept {
    if (off_ == null_offset) return nullptr;
    return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(this) +
                                static_cast<std::uintptr_t>(off_));
  }
  T* operator->() const noexcept { return get(); }
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  U& operator*() const noexcept {
    return *get();
  }
  explicit operator bool() const noexcept { return off_ != null_offset; }

  // The stored distance in bytes from this object to the target (1 when null). For tests.
  std::ptrdiff_t offset() const noexcept { return off_; }

  // For freeze checks (the points_into hook, frozen_storable.hpp): null, or the target lies
  // inside the arena `a`. A template only so this header needs no arena.hpp.
  template <class Arena>
  bool points_into(const Arena& a) const {
    return off_ == null_offset || a.contains(get());
  }

  friend bool operator==(const offset_ptr& a, const offset_ptr& b) noexcept {
    return a.get() == b.get();
  }
  friend bool operator==(const offset_ptr& a, const T* b) noexcept { return a.get() == b; }
  friend bool operator==(const offset_ptr& a, std::nullptr_t) noexcept { return !a; }
  friend auto operator<=>(const offset_ptr& a, const offset_ptr& b) noexcept {
    return std::compare_three_way{}(a.get(), b.get());
  }

 private:
  static constexpr std::ptrdiff_t null_offset = 1;

  std::ptrdiff_t encode(const T* p) const noexcept {
    if (p == nullptr) return null_offset;
    // Unsigned arithmetic: the distance between two unrelated objects is not a pointer
    // difference the language defines, but it is well defined on addresses.
    return static_cast<std::ptrdiff_t>(reinterpret_cast<std::uintptr_t>(p) -
                                       reinterpret_cast<std::uintptr_t>(this));
  }

  std::ptrdiff_t off_ = null_offset;
};

static_assert(std::is_trivially_destructible_v<offset_ptr<int>> &&
              sizeof(offset_ptr<int>) == sizeof(void*));

namespace detail {

// The target of an offset_ptr known not to be null: one add, no test. For the tables' lookups.
template <class T>
T* target_of(const offset_ptr<T>& p) noexcept {
  return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(&p) +
                              static_cast<std::uintptr_t>(p.offset()));
}

}  // namespace detail

}  // namespace permafrost
