// permafrost — the image file format (internal): the header layout and its checksums, shared by
// image.cpp and the fuzz target. docs/design.md ("Images") has the same layout as a table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

// xxHash compiled in (header-only mode): the library gains no link dependency, so the installed
// static library and its package config need nothing more; only the build needs the header.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace permafrost::detail::image_format {

inline constexpr char magic[8] = {'P', 'F', 'R', 'O', 'S', 'T', 'I', 'M'};
// Version 2 (2026-12): hash tables index their entries with 64-byte tag lines, entries no longer
// store their hash, and the data starts 2 MiB into the file. Version 3 (2026-12): string-keyed
// hash tables store each line's values apart from its keys, the keys packed (detail/
// split_table.hpp). Older files are refused: nothing in the file says where its tables are.
inline constexpr std::uint32_t format_version = 3;
inline constexpr std::uint8_t little_endian = 1;
inline constexpr std::uint8_t big_endian = 2;
inline constexpr std::size_t max_metadata = 4096;
// The data starts at a multiple of this in the file: a multiple of every Linux page size, and of
// the 2 MiB huge page, so that the file's page-cache pages, when the file system keeps them as
// 2 MiB folios (ext4 and XFS on recent kernels), are mapped one page-table entry per 2 MiB (the
// data is mapped at a granule start, so file offset and address agree modulo 2 MiB). The space
// before it, past the header and metadata, is a hole in the file: it takes no disk blocks.
inline constexpr std::size_t data_alignment = std::size_t{2} << 20;

inline std::uint8_t native_byte_order() noexcept {
  const std::uint16_t probe = 1;
  std::uint8_t first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1 ? little_endian : big_endian;
}

// The file header, written in the saving machine's byte order (byte_order says which). Every
// field has its natural alignment, so the layout has no padding.
struct file_header {
  char magic[8];
  std::uint32_t version;
  std::uint8_t word_size;         // sizeof(void*) of the saver
  std::uint8_t byte_order;        // little_endian or big_endian
  std::uint16_t header_size;      // sizeof(file_header)
  std::uint64_t data_offset;      // where the data starts in the file; a multiple of 64 KiB
  std::uint64_t data_size;        // bytes of data (the arena's used bytes)
  std::uint64_t data_checksum;    // XXH3-64 of the data
  std::uint64_t root_offset;      // the root object, from the data's first byte
  std::uint64_t root_size;        // sizeof the root type
  std::uint64_t root_align;       // alignof the root type
  std::uint32_t metadata_size;    // bytes of metadata right after the header
  std::uint32_t type_name_size;   // bytes of type_name used (1..63)
  char type_name[64];             // the root's image_type<T>::name, NUL-padded
  std::uint64_t header_checksum;  // XXH3-64 of the bytes before this field, then the metadata
};
static_assert(sizeof(file_header) == 144,
              "the header layout is the file format: see docs/design.md");
static_assert(std::is_trivially_copyable_v<file_header>);

inline std::uint64_t header_checksum_of(const file_header& h, std::string_view metadata) noexcept {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, &h, offsetof(file_header, header_checksum));
  XXH3_64bits_update(&state, metadata.data(), metadata.size());
  return XXH3_64bits_digest(&state);
}

inline std::uint64_t data_checksum_of(const void* data, std::size_t bytes) noexcept {
  return XXH3_64bits(data, bytes);
}

// The data offset a header with `metadata_bytes` of metadata must give.
inline constexpr std::size_t data_offset_for(std::size_t metadata_bytes) noexcept {
  return (sizeof(file_header) + metadata_bytes + data_alignment - 1) / data_alignment *
         data_alignment;
}

}  // namespace permafrost::detail::image_format
