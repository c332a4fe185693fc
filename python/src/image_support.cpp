// permafrost for Python — image files (see image_support.hpp), on permafrost::image.
#include "image_support.hpp"

#include <memory>
#include <utility>

#include "format.hpp"
#include "permafrost/image.hpp"

// The root of a Python image is the root_header at offset 0 of the data.
PERMAFROST_IMAGE_TYPE(permafrost::python::root_header, "permafrost.python.v1");
// Its root word is an offset in an integer, and the graph check (graph_check.hpp) verifies the
// graph on open, so the C++ position check has nothing to look at.
PERMAFROST_POINTER_FREE(permafrost::python::root_header);

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

namespace {
// The Python graph of an opened image: its first byte, size and id. Owns the image until every
// check passed: root<>() throws for another root type, and the mapping and its registry slot must
// go with the exception (each leaked one held one of 1024 slots).
image_handle* adopt(permafrost::image img, const char*& base, std::size_t& size,
                    std::string& image_id) {
  auto h = std::make_unique<image_handle>(image_handle{std::move(img)});
  const std::string_view metadata = h->img.metadata();
  image_id = metadata.substr(0, id_prefix.size()) == id_prefix
                 ? std::string(metadata.substr(id_prefix.size()))
                 : std::string();
  const root_header& root = h->img.root<root_header>();
  base = reinterpret_cast<const char*>(h->img.data().data());
  size = h->img.data().size();
  if (reinterpret_cast<const char*>(&root) != base) {
    throw image_error(image_error::reason::bad_header,
                      h->img.name() + ": the Python root is not at offset 0");
  }
  return h.release();
}
}  // namespace

image_handle* open_image(int fd, const char* path, const char*& base, std::size_t& size,
                         std::string& image_id, bool populate, std::function<void()> step) {
  return adopt(
      permafrost::image::open_fd_named(fd, path, {.populate = populate, .step = std::move(step)}),
      base, size, image_id);
}

image_handle* open_image_fd(int fd, const char*& base, std::size_t& size, std::string& image_id) {
  return adopt(permafrost::image::open_fd(fd, {.verify_checksum = false}), base, size, image_id);
}

void close_image(image_handle* h) noexcept { delete h; }

}  // namespace permafrost::python
