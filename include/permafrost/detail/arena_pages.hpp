// permafrost — page_buffer: a growable scratch buffer in its own anonymous mapping (internal, not
// API: names may change in any release; not exported from the shared library, for code linked
// with the static library, such as the Python extension).
//
// Contract: the bytes live in one private anonymous mapping of whole pages. Growing moves the
// mapping's pages (mremap), never copies them, so a buffer growing to n bytes never needs 2n;
// the resident memory is the pages written, not the capacity; discard_prefix() hands consumed
// pages back to the kernel at once (no allocator keeps them), and the destructor unmaps it all.
// A writer that does not know how many items will come (a build from a generator) keeps its
// transient arrays here so that its peak is the bytes it holds, not those plus a copy or what
// malloc kept.
//
// Thread safety: none; one owner.
#pragma once

#include <cstddef>

namespace permafrost::detail {

class page_buffer {
 public:
  page_buffer() = default;
  ~page_buffer() { clear(); }
  page_buffer(const page_buffer&) = delete;
  page_buffer& operator=(const page_buffer&) = delete;

  // Effects: room for at least `bytes` bytes, keeping the contents; bytes never written read as
  // zero. data() may move. Throws: std::bad_alloc when the kernel refuses the memory.
  void reserve(std::size_t bytes);

  // Effects: the pages wholly inside [data(), data() + bytes) are dropped (they read as zero if
  // touched again); the capacity stays. Pre: bytes <= capacity().
  void discard_prefix(std::size_t bytes) noexcept;

  // Effects: unmaps the buffer (capacity 0, data() null).
  void clear() noexcept;

  char* data() const noexcept { return data_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  char* data_ = nullptr;
  std::size_t capacity_ = 0;  // a multiple of the page size
};

}  // namespace permafrost::detail
