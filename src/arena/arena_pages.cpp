// permafrost — page_buffer (see include/permafrost/detail/arena_pages.hpp).
#include "permafrost/detail/arena_pages.hpp"

#include <cstdint>
#include <new>

#include "os/os.hpp"

namespace permafrost::detail {

void page_buffer::reserve(std::size_t bytes) {
  if (bytes <= capacity_) return;
  const std::size_t page = os::page_size();
  if (bytes > SIZE_MAX - page) throw std::bad_alloc();
  const std::size_t rounded = (bytes + page - 1) & ~(page - 1);
  void* p = nullptr;
  const int err = data_ ? os::remap(data_, capacity_, rounded, &p) : os::map_private(rounded, &p);
  if (err != 0) throw std::bad_alloc();
  data_ = static_cast<char*>(p);
  capacity_ = rounded;
}

void page_buffer::discard_prefix(std::size_t bytes) noexcept {
  const std::size_t whole = bytes & ~(os::page_size() - 1);  // data_ is page-aligned
  if (whole) (void)os::discard(data_, whole);  // best effort: the pages are only scratch
}

void page_buffer::clear() noexcept {
  if (data_) (void)os::release(data_, capacity_);
  data_ = nullptr;
  capacity_ = 0;
}

}  // namespace permafrost::detail
