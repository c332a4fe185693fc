// permafrost for Python — a reader's pin on a store: the check every reader entry point starts
// with.
//
// Contract: `reading r(view); if (!r) return nullptr;` at the top of a reader entry point (a view
// slot or method, an iterator step, freezing or hashing a view) checks that the view's store is
// open, with ValueError ("... is closed") set when it is not, and gives the bytes' address
// (r.base) and the view's node (r.node()). Until r goes out of scope the store keeps those bytes
// mapped, whatever Python code runs meanwhile: a key's __eq__ or a finalizer may close the store
// or move its bytes (share()), and the owner they replace is released only when the last reader
// returns (store.hpp). Cost: one load and a test to check, an increment and a decrement to pin
// (no atomic: the GIL is held).
//
// Thread safety: under the GIL.
#pragma once

#include <cstdint>

#include "store.hpp"
#include "views.hpp"

namespace permafrost::python {

class reading {
 public:
  explicit reading(PyObject* view) : reading(reinterpret_cast<view_object*>(view)->store) {
    off = reinterpret_cast<view_object*>(view)->off;
  }
  explicit reading(store_object* s) : store(s), base(s->base) {
    if (base) [[likely]]
      ++s->readers;
    else closed_error(s);
  }
  ~reading() {
    if (base && --store->readers == 0 && store->retired) [[unlikely]]
      release_retired(store);
  }
  reading(const reading&) = delete;
  reading& operator=(const reading&) = delete;

  // False when the store is closed (ValueError is set).
  explicit operator bool() const { return base != nullptr; }
  // The view's node (for a reading made from a view).
  const node_header* node() const { return node_at<node_header>(base, off); }

  store_object* const store;
  const char* const base;  // the graph's first byte, mapped while this reading lives
  std::uint64_t off = 0;   // the view's node
};

}  // namespace permafrost::python
