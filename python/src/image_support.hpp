// permafrost for Python — saving and mapping frozen value graphs as image files.
//
// Contract: save_image() writes the frozen arena whose first byte is `base` (a graph made by
// freeze(), root_header at offset 0) to `path`; open_image() maps such a file read-only and
// returns the graph's first byte and size. The bytes are the same either way: the format refers
// to itself by offsets only, so it works at whatever address the image is mapped.
//
// Thread safety: as permafrost::image (each call is independent).
#pragma once

#include <cstddef>

namespace permafrost {
class arena;
}

namespace permafrost::python {

struct image_handle;

// Effects: writes the image atomically. Throws: std::runtime_error (or the library's
// image_error) naming the path and the failed step.
void save_image(const arena& a, const char* base, const char* path);

// Effects: maps the image at `path`; sets base and size. Throws as save_image.
image_handle* open_image(const char* path, const char*& base, std::size_t& size);

// Effects: unmaps (nullptr: nothing). Never throws.
void close_image(image_handle* h) noexcept;

}  // namespace permafrost::python
