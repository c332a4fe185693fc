// permafrost — refcount-free handles to frozen objects.
//
// Contract: a reference count stored next to an object writes the object's page on every copy
// of a handle, so one worker copying handles to frozen data would un-share it (and, the arena
// being read-only, crash). Two handle kinds make counting stop at the frozen boundary:
//
//  - permafrost::refcounted<T>: an intrusive count for boost::intrusive_ptr (or any smart
//    pointer using intrusive_ptr_add_ref/intrusive_ptr_release). For an object in a frozen
//    arena, add_ref and release write nothing (is_frozen() is a range check and one load); for a
//    mutable object they count, and the last release deletes it. An object in an arena that is
//    not frozen yet is counted but never deleted: the arena owns its memory.
//  - permafrost::share(p): a std::shared_ptr<const T> to a frozen object, for APIs that want
//    shared_ptr. Its control block is a process-local anchor (the aliasing constructor), so
//    copies count in the copying process's own memory, never in the arena. The object lives as
//    long as its arena, not as long as the handles.
//
// Thread safety: as boost::intrusive_ptr and std::shared_ptr (counts are atomic).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <type_traits>

#include "permafrost/api.h"
#include "permafrost/arena.hpp"

namespace permafrost {

namespace detail {

// True when p lies in the reserved range of a live arena of this process, frozen or not.
inline bool in_any_arena(const void* p) noexcept {
  bool inside = false;
  const granule_entry& g = granule_of(p, inside);
  return inside && g.owner.load(std::memory_order_relaxed) != nullptr;
}

// This thread's anchor for share(): a process-local control block, renewed in a forked child
// (the parent's stays untouched, on its inherited page).
PERMAFROST_API const std::shared_ptr<const void>& share_anchor();

}  // namespace detail

// =============================================================================================
// Intrusive counting that stops at frozen objects
// =============================================================================================

// Derive T from refcounted<T> (CRTP) and hold it in boost::intrusive_ptr<T>. Mutable objects must
// come from `new` (the last release deletes them); frozen objects cost no write at all.
template <class T>
class refcounted {
 public:
  // Handles counted so far. Stops changing when the object's arena is frozen.
  std::size_t use_count() const noexcept { return refs_.load(std::memory_order_relaxed); }

 protected:
  refcounted() noexcept = default;
  // A copy is a new object: it starts uncounted.
  refcounted(const refcounted&) noexcept {}
  refcounted& operator=(const refcounted&) noexcept { return *this; }
  ~refcounted() = default;

 private:
  // Effects: counts one more handle, unless the object is frozen.
  friend void intrusive_ptr_add_ref(const refcounted* p) noexcept {
    if (is_frozen(p)) return;
    p->refs_.fetch_add(1, std::memory_order_relaxed);
  }

  // Effects: counts one handle fewer, unless the object is frozen; the last one deletes a
  // mutable object that is not in an arena.
  friend void intrusive_ptr_release(const refcounted* p) noexcept {
    static_assert(std::is_base_of_v<refcounted, T>, "T must derive from permafrost::refcounted<T>");
    if (is_frozen(p)) return;
    if (p->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1 && !detail::in_any_arena(p))
      delete static_cast<const T*>(p);
  }

  mutable std::atomic<std::size_t> refs_{0};
};

// =============================================================================================
// shared_ptr handles to frozen objects
// =============================================================================================

// Effects: a shared_ptr to the frozen object *p whose control block is this thread's
// process-local anchor; copying it never writes the arena. use_count() counts all handles on the
// anchor, not handles to *p, and means nothing. A nullptr gives an empty shared_ptr.
// Handles made before a fork keep the parent's anchor: copying one in a child writes that one
// anchor (a heap page, never an arena page); handles made in the child use the child's anchor.
// Throws: std::invalid_argument when p is not in a frozen arena: nothing would keep a mutable
// object alive, and counting next to it would be the very write this header exists to avoid.
template <class T>
std::shared_ptr<const T> share(const T* p) {
  if (p == nullptr) return {};
  if (!is_frozen(p))
    throw std::invalid_argument(
        "permafrost::share: the object is not in a frozen arena (freeze() it first, or use "
        "std::shared_ptr/refcounted for mutable objects)");
  return std::shared_ptr<const T>(detail::share_anchor(), p);
}

}  // namespace permafrost
