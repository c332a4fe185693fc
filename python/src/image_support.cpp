// permafrost for Python — image files (see image_support.hpp), on permafrost::image.
#include "image_support.hpp"

#include <memory>

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

void save_image_with_root_type(const arena& a, const char* base, const char* path,
                               std::string_view root_type) {
  const image_root_tag tag{root_type, sizeof(root_header), alignof(root_header)};
  permafrost::detail::save_image(a, base, tag, path, {});
}

image_handle* open_image(const char* path, const char*& base, std::size_t& size,
                         std::string& image_id) {
  // Owned until every check passed: root<>() throws for another root type, and the mapping and
  // its registry slot must go with the exception (each leaked one held one of 1024 slots).
  auto h = std::make_unique<image_handle>(image_handle{permafrost::image::open(path)});
  const std::string_view metadata = h->img.metadata();
  image_id = metadata.substr(0, id_prefix.size()) == id_prefix
                 ? std::string(metadata.substr(id_prefix.size()))
                 : std::string();
  const root_header& root = h->img.root<root_header>();
  base = reinterpret_cast<const char*>(h->img.data().data());
  size = h->img.data().size();
  if (reinterpret_cast<const char*>(&root) != base) {
    throw image_error(image_error::reason::bad_header,
                      std::string(path) + ": the Python root is not at offset 0");
  }
  return h.release();
}

void close_image(image_handle* h) noexcept { delete h; }

}  // namespace permafrost::python
