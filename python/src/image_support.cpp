// permafrost for Python — image files (see image_support.hpp), on permafrost::image.
#include "image_support.hpp"

#include "format.hpp"
#include "permafrost/image.hpp"

// The root of a Python image is the root_header at offset 0 of the data.
PERMAFROST_IMAGE_TYPE(permafrost::python::root_header, "permafrost.python.v1");

namespace permafrost::python {

struct image_handle {
  permafrost::image img;
};

void save_image(const arena& a, const char* base, const char* path) {
  permafrost::save_image(a, *reinterpret_cast<const root_header*>(base), path);
}

image_handle* open_image(const char* path, const char*& base, std::size_t& size) {
  auto* h = new image_handle{permafrost::image::open(path)};
  const root_header& root = h->img.root<root_header>();
  base = reinterpret_cast<const char*>(h->img.data().data());
  size = h->img.data().size();
  if (reinterpret_cast<const char*>(&root) != base) {
    delete h;
    throw image_error(image_error::reason::bad_header,
                      std::string(path) + ": the Python root is not at offset 0");
  }
  return h;
}

void close_image(image_handle* h) noexcept { delete h; }

}  // namespace permafrost::python
