// permafrost for Python — image files (see image_support.hpp).
#include "image_support.hpp"

#include <stdexcept>
#include <string>

namespace permafrost::python {

struct image_handle {};

void save_image(const arena&, const char*, const char* path) {
  throw std::runtime_error(std::string("cannot save ") + path +
                           ": this build of permafrost has no image support");
}

image_handle* open_image(const char* path, const char*&, std::size_t&) {
  throw std::runtime_error(std::string("cannot open ") + path +
                           ": this build of permafrost has no image support");
}

void close_image(image_handle* h) noexcept { delete h; }

}  // namespace permafrost::python
