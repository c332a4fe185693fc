// permafrost for Python — image files (see image_support.hpp), on permafrost::image.
#include "image_support.hpp"

#include "format.hpp"
#include "permafrost/image.hpp"

// The root of a Python image is the root_header at offset 0 of the data.
PERMAFROST_IMAGE_TYPE(permafrost::python::root_header, "permafrost.python.v1");

namespace permafrost::python {
namespace {
constexpr std::string_view id_prefix = "permafrost.python id=";
}

struct image_handle {
  permafrost::image img;
};

void save_image(const arena& a, const char* base, const char* path, std::string_view image_id) {
  const std::string metadata = std::string(id_prefix) + std::string(image_id.substr(0, 64));
  permafrost::save_image(a, *reinterpret_cast<const root_header*>(base), path, {metadata});
}

image_handle* open_image(const char* path, const char*& base, std::size_t& size,
                         std::string& image_id) {
  auto* h = new image_handle{permafrost::image::open(path)};
  const std::string_view metadata = h->img.metadata();
  image_id = metadata.substr(0, id_prefix.size()) == id_prefix
                 ? std::string(metadata.substr(id_prefix.size()))
                 : std::string();
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
