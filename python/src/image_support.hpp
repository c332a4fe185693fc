// permafrost for Python — saving and mapping frozen value graphs as image files.
//
// Contract: save_image() writes the frozen arena whose first byte is `base` (a graph made by
// freeze(), root_header at offset 0) to `path`, with an image id in the header's metadata;
// open_image() maps such a file read-only and returns the graph's first byte, size and id. The
// bytes are the same either way: the format refers to itself by offsets only, so it works at
// whatever address the image is mapped. The id tells one saved image from another at the same
// path: a pickled view names its image, so a receiver never reads a newer file at that path with
// an older view's offsets.
//
// Thread safety: as permafrost::image (each call is independent).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace permafrost {
class arena;
}

namespace permafrost::python {

struct image_handle;

// Effects: writes the image atomically, `image_id` (at most 64 bytes) in its metadata.
// Throws: the library's image_error naming the path and the failed step.
void save_image(const arena& a, const char* base, const char* path, std::string_view image_id);

// For tests: as save_image, without an id and with the root type tag `root_type` in place of the
// Python root's (e.g. a C++ image's tag, which open_image must refuse). Throws as save_image.
void save_image_with_root_type(const arena& a, const char* base, const char* path,
                               std::string_view root_type);

// Effects: maps the image file open as `fd`, which the caller opened at `path` (and keeps and
// closes): the file mapped is the one the caller stat'ed, even if another was renamed over the
// path meanwhile. Sets base, size and image_id ("" when the file has none). With `populate`,
// maps every page first (open_options::populate). `step` runs every open_step_bytes populated
// or hashed (open_options::step). A file that is not a Python image (another root type, such as
// a C++ image) is refused, and nothing stays mapped.
// Throws as save_image (type_mismatch for another root type), naming `path`; whatever `step`
// throws, with nothing mapped.
image_handle* open_image(int fd, const char* path, const char*& base, std::size_t& size,
                         std::string& image_id, bool populate, std::function<void()> step);

// Effects: maps the image file open as `fd` (the caller keeps and closes it) without verifying
// its checksum: for a descriptor another process sent after it verified the file itself.
// Throws as save_image.
image_handle* open_image_fd(int fd, const char*& base, std::size_t& size, std::string& image_id);

// Effects: unmaps (nullptr: nothing). Never throws.
void close_image(image_handle* h) noexcept;

}  // namespace permafrost::python
