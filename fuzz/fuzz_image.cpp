// Fuzz target: the image loader. Each input becomes an image file in a memfd, opened with and
// without checksum verification. Any outcome but an image (whose data is then read end to end
// and whose root and metadata are read) or an image_error is a failure; so is a crash.
//
// Input: the first byte picks the mode.
//   even: the rest is the file, verbatim (finds what the magic and checksum checks guard).
//   odd:  the rest overlays a valid header (field by field, little-endian as on this machine),
//         then the loader's gate fields are made to pass with a matching header checksum (and,
//         if the flag byte says so, a matching data checksum), so the field checks behind the
//         checksum (sizes, offsets, root range and alignment) are what gets fuzzed.
#include <permafrost/image.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "image/image_format.hpp"

namespace fmt = permafrost::detail::image_format;

namespace {

struct fuzz_root {
  std::uint64_t a;
  std::uint64_t b;
};

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_image: %s\n", what);
    std::abort();
  }
}

// An image file: `head` from offset 0 and `data` from `data_at` (the file has a hole between
// them, as a saved image has).
struct image_file {
  std::string head;
  std::size_t data_at = 0;
  std::string data;
};

image_file crafted(const std::uint8_t* data, std::size_t size) {
  fmt::file_header h{};
  std::memcpy(h.magic, fmt::magic, sizeof h.magic);
  h.version = fmt::format_version;
  h.word_size = sizeof(void*);
  h.byte_order = fmt::native_byte_order();
  h.header_size = sizeof h;
  h.data_offset = fmt::data_offset_for(0);
  h.data_size = 64;
  h.root_size = sizeof(fuzz_root);
  h.root_align = alignof(fuzz_root);
  h.type_name_size = 18;
  std::memcpy(h.type_name, "permafrost.fuzz.v1", 18);
  const std::uint8_t flags = size > 0 ? data[0] : 0;
  if (size > 0) {
    ++data;
    --size;
  }
  // Overlay from byte 16 on (magic, version, word size, byte order and header size stay valid).
  const std::size_t overlay = std::min(size, offsetof(fmt::file_header, header_checksum) - 16);
  std::memcpy(reinterpret_cast<char*>(&h) + 16, data, overlay);
  data += overlay;
  size -= overlay;
  h.metadata_size %= 256;
  const std::size_t metadata_bytes = std::min<std::size_t>(h.metadata_size, size);
  const std::string metadata(reinterpret_cast<const char*>(data), metadata_bytes);
  data += metadata_bytes;
  size -= metadata_bytes;
  if (flags & 2) h.data_offset = fmt::data_offset_for(h.metadata_size);
  if (flags & 4) h.data_size = size;
  if (flags & 8)
    h.data_checksum = fmt::data_checksum_of(data, std::min<std::size_t>(size, h.data_size));
  h.header_checksum = fmt::header_checksum_of(h, metadata);
  image_file file;
  file.head.assign(reinterpret_cast<const char*>(&h), sizeof h);
  file.head += metadata;
  // The data at the offset the header claims, when that is small enough to be real; else right
  // after the header.
  file.data_at = h.data_offset >= file.head.size() && h.data_offset <= (std::size_t{4} << 20)
                     ? h.data_offset
                     : file.head.size();
  file.data.assign(reinterpret_cast<const char*>(data), size);
  return file;
}

void try_open(int fd, bool verify) {
  try {
    const permafrost::image img = permafrost::image::open_fd(fd, {.verify_checksum = verify});
    unsigned sum = 0;
    for (std::byte b : img.data()) sum += static_cast<unsigned>(b);
    (void)sum;
    require(img.data().size() > 0, "an opened image has no data");
    require(permafrost::is_frozen(img.data().data()), "image data is not is_frozen()");
    require(img.root_tag().size <= img.data().size(), "the root is larger than the data");
    (void)img.metadata().size();
    try {
      const fuzz_root& r = img.root<fuzz_root>();
      require(img.contains(&r) && img.contains(reinterpret_cast<const char*>(&r) + sizeof r - 1),
              "the root lies outside the data");
      (void)(r.a + r.b);
    } catch (const permafrost::image_error& e) {
      require(e.why() == permafrost::image_error::reason::type_mismatch,
              "root<T>() threw another reason");
    }
  } catch (const permafrost::image_error&) {
    // The expected way to refuse a bad file.
  }
}

}  // namespace

PERMAFROST_IMAGE_TYPE(fuzz_root, "permafrost.fuzz.v1");

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const image_file file =
      (data[0] & 1) != 0
          ? crafted(data + 1, size - 1)
          : image_file{std::string(reinterpret_cast<const char*>(data + 1), size - 1), 0, {}};
  const int fd = ::memfd_create("fuzz_image", MFD_CLOEXEC);
  require(fd >= 0, "memfd_create");
  require(::pwrite(fd, file.head.data(), file.head.size(), 0) ==
              static_cast<ssize_t>(file.head.size()),
          "write");
  require(::pwrite(fd, file.data.data(), file.data.size(), static_cast<off_t>(file.data_at)) ==
              static_cast<ssize_t>(file.data.size()),
          "write");
  try_open(fd, true);
  try_open(fd, false);
  ::close(fd);
  return 0;
}
