// permafrost — frozen images: save, validate, map (contract in include/permafrost/image.hpp, file
// format in docs/design.md "Images").
#include "permafrost/image.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>
#include <vector>

#include "image/image_format.hpp"
#include "image/image_mapping.hpp"
#include "os/os.hpp"
#include "permafrost/detail/check.hpp"

namespace permafrost {
namespace {

using reason = image_error::reason;
using namespace detail::image_format;

std::string errno_text(int err) { return std::system_category().message(err); }

// Closes a descriptor this file opened (-1: none) on every way out.
struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) (void)os::close_fd(fd);
  }
};

// ----- save ---------------------------------------------------------------------------------

// The path as a message shows it: a NUL byte, which would end what() there, as "\0".
std::string shown(const std::filesystem::path& path) {
  std::string s = path.string();
  for (std::size_t at = s.find('\0'); at != std::string::npos; at = s.find('\0', at + 2))
    s.replace(at, 1, "\\0");
  return s;
}

// A path with a NUL byte: the system sees only the part before it, so image::open() of
// "good.pfi\0/../other.pfi" opened good.pfi, and save_image refused it with a message cut short.
bool holds_nul(const std::filesystem::path& path) {
  return path.native().find('\0') != std::string::npos;
}

// Whether a link of the symlink chain at `path` lives in /proc or /dev (on their file systems;
// /dev/shm is a file system of its own), at most 40 links as the kernel follows them: such a link
// names whatever a descriptor or a device holds (/dev/stdout, a link to /proc/self/fd/1, names a
// regular file when output is redirected to one), and it is the system's, not the caller's to
// replace. Each link's target is looked up as the kernel does (a relative one from the link's
// directory, through any directory symlinks and "..": lstat resolves it), not by its text.
bool links_into_system(const std::filesystem::path& path) {
  std::uint64_t proc = 0, dev = 0;
  const bool have_proc = os::path_device_of("/proc/self", &proc) == 0;
  const bool have_dev = os::path_device_of("/dev/null", &dev) == 0;
  std::filesystem::path at = path;
  for (int hop = 0; hop < 40; ++hop) {
    std::uint64_t device = 0;
    if (os::path_device_of(at.c_str(), &device) != 0) return false;  // dangling
    if ((have_proc && device == proc) || (have_dev && device == dev)) return true;
    char target[4096];
    if (os::read_symlink(at.c_str(), target, sizeof target) != 0) return false;  // the end
    const std::filesystem::path next(target);
    at = next.is_relative() ? at.parent_path() / next : next;
  }
  return false;
}

[[noreturn]] void refuse_save(reason why, const std::filesystem::path& path,
                              const std::string& what) {
  throw image_error(why, "permafrost::save_image('" + shown(path) + "'): " + what);
}

// Removes the temporary file on every exit but a successful rename.
struct temp_file {
  std::string path;
  int fd = -1;
  bool renamed = false;
  ~temp_file() {
    if (fd >= 0) (void)os::close_fd(fd);
    if (!renamed && !path.empty()) (void)os::remove_file(path.c_str());
  }
};

// ----- open ---------------------------------------------------------------------------------

std::string describe_fd(int fd) {
  char target[320];
  std::string name = "fd " + std::to_string(fd);
  if (os::fd_path(fd, target, sizeof target) == 0) name += std::string(" (") + target + ")";
  return name;
}

// The slot name shown by the write trap and kept for is_frozen's owner: "image <name>",
// shortened from the left to fit the slot's 47 bytes, never inside a UTF-8 character.
std::string slot_name(const std::string& name) {
  constexpr std::size_t room = 47 - 6;
  if (name.size() <= room) return "image " + name;
  return "image ..." + name.substr(detail::utf8_suffix_start(name, room - 3));
}

// Pre-faults the mapping open_step_bytes at a time, calling step after each (it may throw).
// Best effort: a chunk the kernel refuses ends the populating, not the open.
void populate_in_steps(const std::byte* base, std::size_t bytes,
                       const std::function<void()>& step) {
  for (std::size_t off = 0; off < bytes; off += open_step_bytes) {
    if (os::populate_read(base + off, std::min(open_step_bytes, bytes - off)) != 0) return;
    if (step) step();
  }
}

// The data's checksum (the value data_checksum_of gives: XXH3's streaming and one-shot forms
// agree), hashed open_step_bytes at a time, calling step after each (it may throw).
std::uint64_t checksum_in_steps(const std::byte* data, std::size_t bytes,
                                const std::function<void()>& step) {
  if (!step) return data_checksum_of(data, bytes);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  for (std::size_t off = 0; off < bytes; off += open_step_bytes) {
    XXH3_64bits_update(&state, data + off, std::min(open_step_bytes, bytes - off));
    step();
  }
  return XXH3_64bits_digest(&state);
}

}  // namespace

namespace detail {

void save_image(const arena& a, const void* root, const image_root_tag& tag,
                const std::filesystem::path& path, const save_options& options) {
  if (!a.frozen())
    refuse_save(reason::not_frozen, path,
                "the arena '" + std::string(a.name()) + "' is not frozen: freeze() it first");
  const std::span<const std::byte> data = a.used_bytes();
  const auto* r = static_cast<const std::byte*>(root);
  if (data.empty() || r < data.data() || tag.size > data.size() ||
      r > data.data() + (data.size() - tag.size))
    refuse_save(reason::root_outside, path,
                "the root object (" + std::string(tag.name) + ", " + std::to_string(tag.size) +
                    " bytes) does not lie inside the arena '" + std::string(a.name()) +
                    "' (its used bytes)");
  if (options.metadata.size() > max_metadata)
    refuse_save(reason::bad_header, path,
                "metadata of " + std::to_string(options.metadata.size()) + " bytes (at most " +
                    std::to_string(max_metadata) + ")");

  // An empty path, or one ending in '/', names no file: the temporary file was made as
  // ".XXXXXX" in the directory and the rename then failed, naming that temporary file.
  if (!path.has_filename())
    refuse_save(reason::io, path, "the path names no file (it is empty or ends in '/')");
  if (holds_nul(path)) refuse_save(reason::io, path, "the path holds a NUL byte");

  // The rename replaces whatever the path names: refuse anything but a regular file, or a
  // symlink to one (or to nothing), which the rename replaces, leaving its target alone. A device,
  // FIFO or socket there was replaced by the image (save_image to /dev/null as root made /dev/null
  // a regular file), and so was a symlink to one, or into /proc or /dev (/dev/stdout, a link to
  // /proc/self/fd/1, which names a regular file when output is redirected to one).
  if (os::path_type t{}; os::path_type_of(path.c_str(), &t) == 0 && t != os::path_type::regular) {
    std::string what = t == os::path_type::symlink ? "a symlink to " : "";
    if (t == os::path_type::symlink) {
      if (links_into_system(path))
        refuse_save(
            reason::io, path,
            "it is a symlink into /proc or /dev (a system link, such as /dev/stdout), not "
            "a regular file: save_image replaces only a regular file (or a symlink to one)");
      if (const int err = os::path_type_of(path.c_str(), &t, /*follow=*/true); err != 0) {
        if (err != ENOENT && err != ENOTDIR)
          refuse_save(reason::io, path,
                      "it is a symlink that cannot be followed: " + errno_text(err));
        t = os::path_type::regular;  // dangling: only the link is replaced
      }
    }
    if (t != os::path_type::regular) {
      what += t == os::path_type::directory      ? "a directory"
              : t == os::path_type::char_device  ? "a character device"
              : t == os::path_type::block_device ? "a block device"
              : t == os::path_type::fifo         ? "a FIFO"
                                                 : "a socket";
      refuse_save(reason::io, path,
                  "it is " + what +
                      ", not a regular file: save_image replaces only a regular file (or a symlink "
                      "to one)");
    }
  }

  file_header h{};
  std::memcpy(h.magic, magic, sizeof magic);
  h.version = format_version;
  h.word_size = sizeof(void*);
  h.byte_order = native_byte_order();
  h.header_size = sizeof(file_header);
  h.data_offset = data_offset_for(options.metadata.size());
  h.data_size = data.size();
  h.data_checksum = data_checksum_of(data.data(), data.size());
  h.root_offset = static_cast<std::uint64_t>(r - data.data());
  h.root_size = tag.size;
  h.root_align = tag.align;
  h.metadata_size = static_cast<std::uint32_t>(options.metadata.size());
  h.type_name_size = static_cast<std::uint32_t>(tag.name.size());
  std::memcpy(h.type_name, tag.name.data(), tag.name.size());
  h.header_checksum = header_checksum_of(h, options.metadata);

  // The header and metadata; the rest of the space before the data stays a hole.
  std::vector<std::byte> head(sizeof h + options.metadata.size());
  std::memcpy(head.data(), &h, sizeof h);
  if (!options.metadata.empty())
    std::memcpy(head.data() + sizeof h, options.metadata.data(), options.metadata.size());

  // The directory is opened before anything is written, so the one step left after the rename
  // (making it durable) cannot fail for want of permission: a directory this process may write
  // but not read (mode -wx) cannot be opened for fsync, and then syncfs() of the new file's file
  // system makes the rename durable instead.
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  int dir_fd = -1;
  (void)os::open_directory(dir.c_str(), &dir_fd);  // a missing directory fails below, named
  const fd_closer close_dir{dir_fd};

  // The temporary file is NAME.XXXXXX beside the target; NAME is cut so that the temporary name
  // fits a file name's 255 bytes (NAME_MAX): a valid target name of 249-255 bytes failed to save
  // with ENAMETOOLONG.
  constexpr std::size_t name_max = 255;
  constexpr std::size_t suffix = 7;  // ".XXXXXX"
  std::string base = path.filename().string();
  if (base.size() > name_max - suffix) {
    // Whole UTF-8 characters only: a name cut inside one is not valid UTF-8, which a file system
    // that checks names (ext4's casefold strict mode, vfat, ntfs3) refuses.
    base.resize(detail::utf8_prefix_length(base, name_max - suffix));
  }
  temp_file tmp;
  tmp.path = (path.has_parent_path() ? (path.parent_path() / base).string() : base) + ".XXXXXX";
  if (const int err = os::create_temp(tmp.path.data(), &tmp.fd); err != 0) {
    tmp.path.clear();  // nothing was created
    refuse_save(reason::io, path, "creating a temporary file beside it: " + errno_text(err));
  }
  auto step = [&](const char* what, int err) {
    if (err != 0)
      refuse_save(reason::io, path, std::string(what) + " '" + tmp.path + "': " + errno_text(err));
  };
  step("writing the header to", os::file_write(tmp.fd, head.data(), head.size(), 0));
  step("writing the data to", os::file_write(tmp.fd, data.data(), data.size(), h.data_offset));
  step("fsync of", os::sync_file(tmp.fd));
  if (dir_fd >= 0) step("closing", os::close_fd(std::exchange(tmp.fd, -1)));
  if (const int err = os::rename_file(tmp.path.c_str(), path.c_str()); err != 0)
    refuse_save(reason::io, path, "renaming '" + tmp.path + "' over it: " + errno_text(err));
  tmp.renamed = true;
  // Only the device can fail from here on (EIO): the path already holds the new image, and the
  // error says so rather than suggesting the target was left alone.
  const int err = dir_fd >= 0 ? os::sync_file(dir_fd) : os::sync_file_system(tmp.fd);
  if (err != 0)
    refuse_save(reason::io, path,
                std::string("the path now holds the new image (the rename was done), but ") +
                    (dir_fd >= 0 ? "the fsync of its directory" : "the syncfs of its file system") +
                    " failed: " + errno_text(err) +
                    "; until the device has written it, a crash may bring back the previous file");
}

}  // namespace detail

// ----- image --------------------------------------------------------------------------------

image image::open(const std::filesystem::path& path, const open_options& options) {
  int fd = -1;
  if (holds_nul(path))
    throw image_error(reason::io,
                      "permafrost::image::open('" + shown(path) + "'): the path holds a NUL byte");
  if (const int err = os::open_read(path.c_str(), &fd); err != 0)
    throw image_error(reason::io, "permafrost::image::open('" + path.string() +
                                      "'): cannot open the file: " + errno_text(err));
  const fd_closer close_on_exit{fd};
  return open_descriptor(fd, path.string(), options);
}

image image::open_fd(int fd, const open_options& options) {
  return open_descriptor(fd, describe_fd(fd), options);
}

image image::open_fd_named(int fd, std::string name, const open_options& options) {
  return open_descriptor(fd, std::move(name), options);
}

image image::open_descriptor(int fd, std::string name, const open_options& options) {
  auto refuse = [&name](reason why, const std::string& what) -> void {
    throw image_error(why, "permafrost::image::open('" + name + "'): " + what);
  };
  bool regular = false;
  if (const int err = os::file_is_regular(fd, &regular); err != 0)
    refuse(reason::io, "fstat: " + errno_text(err));
  if (!regular)
    refuse(reason::not_mappable,
           "not a regular file (a pipe, socket, device or directory cannot be mapped)");
  // The mapping must never be writable: mapped through a descriptor opened for writing (every
  // memfd is), mprotect(PROT_WRITE) would succeed and a store would change the file under every
  // other reader. Such a descriptor is replaced by a read-only one of the same file.
  bool read_only = false;
  if (const int err = os::fd_is_read_only(fd, &read_only); err != 0)
    refuse(reason::io, "fcntl: " + errno_text(err));
  int own_fd = -1;
  if (!read_only) {
    if (const int err = os::reopen_read_only(fd, &own_fd); err != 0)
      refuse(reason::io,
             "the descriptor is open for writing, and opening its file again read-only (through "
             "/proc/self/fd) failed: " +
                 errno_text(err) + "; pass a descriptor opened O_RDONLY");
    fd = own_fd;
  }
  const fd_closer close_own{own_fd};
  std::size_t file_bytes = 0;
  if (const int err = os::file_size(fd, &file_bytes); err != 0)
    refuse(reason::io, "fstat: " + errno_text(err));
  if (file_bytes < sizeof(file_header))
    refuse(reason::truncated, "truncated: " + std::to_string(file_bytes) +
                                  " bytes, shorter than the " +
                                  std::to_string(sizeof(file_header)) + "-byte header");
  file_header h{};
  // A file that ends before the size fstat gave it (a /sys file says 4096 and holds less)
  // is truncated, not an I/O error.
  auto refuse_read = [&](const char* what, int err) {
    if (err == ENODATA)
      refuse(reason::truncated, std::string("truncated: the file ended while reading ") + what +
                                    ", before the size it claims (" + std::to_string(file_bytes) +
                                    " bytes)");
    refuse(reason::io, std::string("reading ") + what + ": " + errno_text(err));
  };
  if (const int err = os::file_read(fd, &h, sizeof h, 0); err != 0) refuse_read("the header", err);
  if (std::memcmp(h.magic, magic, sizeof magic) != 0)
    refuse(reason::bad_magic, "bad magic: not a permafrost image");
  if (h.word_size != sizeof(void*) || h.byte_order != native_byte_order())
    refuse(reason::platform,
           "made for " + std::to_string(h.word_size * 8) + "-bit " +
               (h.byte_order == little_endian ? "little"
                : h.byte_order == big_endian  ? "big"
                                              : "unknown") +
               "-endian machines; this one is " + std::to_string(sizeof(void*) * 8) + "-bit " +
               (native_byte_order() == little_endian ? "little" : "big") + "-endian");
  if (h.version > format_version)
    refuse(reason::version, "format version " + std::to_string(h.version) +
                                " is newer than this library reads (" +
                                std::to_string(format_version) + ")");
  if (h.version == 0) refuse(reason::bad_header, "bad header: format version 0");
  if (h.version < format_version)
    refuse(reason::version,
           "format version " + std::to_string(h.version) + " is older than this library reads (" +
               std::to_string(format_version) +
               "): its hash tables have another layout; build and save the image again "
               "with this library");
  if (h.header_size != sizeof(file_header))
    refuse(reason::bad_header, "bad header: header size " + std::to_string(h.header_size) +
                                   ", expected " + std::to_string(sizeof(file_header)));
  if (h.metadata_size > max_metadata)
    refuse(reason::bad_header, "bad header: metadata size " + std::to_string(h.metadata_size) +
                                   " over " + std::to_string(max_metadata));
  if (file_bytes < sizeof h + h.metadata_size)
    refuse(reason::truncated, "truncated: " + std::to_string(file_bytes) +
                                  " bytes, shorter than its header and metadata");
  std::string metadata(h.metadata_size, '\0');
  if (const int err = os::file_read(fd, metadata.data(), metadata.size(), sizeof h); err != 0)
    refuse_read("the metadata", err);
  if (header_checksum_of(h, metadata) != h.header_checksum)
    refuse(reason::bad_header,
           "bad header: header checksum mismatch (the header or metadata is damaged)");
  // The checksum passed: the fields below are what a saver wrote; check them anyway, since a
  // crafted file can carry any values with a matching checksum.
  if (h.type_name_size == 0 || h.type_name_size >= sizeof h.type_name)
    refuse(reason::bad_header,
           "bad header: root type name of " + std::to_string(h.type_name_size) + " bytes");
  if (h.data_offset != data_offset_for(h.metadata_size))
    refuse(reason::bad_header, "bad header: data offset " + std::to_string(h.data_offset));
  if (h.data_offset % os::page_size() != 0)
    refuse(reason::platform, "data offset " + std::to_string(h.data_offset) +
                                 " is not a multiple of this machine's page size");
  if (h.data_size == 0 || h.data_size > detail::max_granules * detail::granule_size)
    refuse(reason::bad_header, "bad header: data size " + std::to_string(h.data_size));
  if (h.root_align == 0 || (h.root_align & (h.root_align - 1)) != 0 ||
      h.root_align > detail::max_alignment || h.root_size == 0 || h.root_size > h.data_size ||
      h.root_offset > h.data_size - h.root_size || h.root_offset % h.root_align != 0)
    refuse(reason::bad_header, "bad header: root at offset " + std::to_string(h.root_offset) +
                                   " (" + std::to_string(h.root_size) + " bytes, alignment " +
                                   std::to_string(h.root_align) + ") does not lie inside " +
                                   std::to_string(h.data_size) + " data bytes");
  if (file_bytes < h.data_offset || file_bytes - h.data_offset < h.data_size)
    refuse(reason::truncated, "truncated: " + std::to_string(file_bytes) +
                                  " bytes, the header promises " +
                                  std::to_string(h.data_offset + h.data_size));
  // A saved image ends where its data does. Bytes beyond are no part of it: another file
  // appended, or the end of a longer file that a writer overwrote in place without truncating.
  // Either way the file is not what its saver wrote, so it is refused rather than served.
  if (file_bytes - h.data_offset > h.data_size)
    refuse(reason::bad_header,
           "bad file: " + std::to_string(file_bytes - h.data_offset - h.data_size) +
               " bytes after the end of the image the header describes (" +
               std::to_string(h.data_offset + h.data_size) + " bytes); something was appended, " +
               "or the file was overwritten in place by a shorter image");

  image img;
  std::uintptr_t base = 0;
  const int err =
      detail::map_image(fd, h.data_offset, h.data_size, slot_name(name), &img.core_, &base);
  if (err == EMFILE) refuse(reason::no_free_slot, detail::registry::no_free_slot_text());
  if (err == ENOMEM) refuse(reason::address_space, detail::registry::no_space_text(h.data_size));
  if (err != 0) refuse(reason::not_mappable, "mmap refused: " + errno_text(err));
  img.base_ = reinterpret_cast<const std::byte*>(base);
  img.size_ = h.data_size;
  // Advice before the first read, so the kernel reads the file in 2 MiB folios from the start;
  // then populate, so the checksum (which reads every page) takes no fault either. Both are best
  // effort: without them reads cost more faults.
  const std::size_t mapped = detail::round_up(h.data_size, os::page_size());
  if (options.huge_pages) (void)os::advise_huge_pages(reinterpret_cast<void*>(base), mapped);
  if (options.populate) populate_in_steps(img.base_, mapped, options.step);
  if (options.verify_checksum) {
    const std::uint64_t got = checksum_in_steps(img.base_, img.size_, options.step);
    if (got != h.data_checksum)
      refuse(reason::checksum, "data checksum mismatch (XXH3-64: the header says " +
                                   std::to_string(h.data_checksum) + ", the data hashes to " +
                                   std::to_string(got) + ")");
  }
  img.root_offset_ = h.root_offset;
  img.name_ = std::move(name);
  img.metadata_ = std::move(metadata);
  img.type_name_.assign(h.type_name, h.type_name_size);
  img.type_size_ = h.root_size;
  img.type_align_ = h.root_align;
  return img;
}

image::image(image&& other) noexcept
    : core_(std::exchange(other.core_, nullptr)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      root_offset_(other.root_offset_),
      name_(std::move(other.name_)),
      metadata_(std::move(other.metadata_)),
      type_name_(std::move(other.type_name_)),
      type_size_(other.type_size_),
      type_align_(other.type_align_) {}

image& image::operator=(image&& other) noexcept {
  if (this != &other) {
    image taken(std::move(other));  // leaves with this image's old mapping, and unmaps it
    std::swap(core_, taken.core_);
    std::swap(base_, taken.base_);
    std::swap(size_, taken.size_);
    std::swap(root_offset_, taken.root_offset_);
    name_.swap(taken.name_);
    metadata_.swap(taken.metadata_);
    type_name_.swap(taken.type_name_);
    std::swap(type_size_, taken.type_size_);
    std::swap(type_align_, taken.type_align_);
  }
  return *this;
}

image::~image() {
  if (core_ != nullptr) detail::unmap_image(core_);
}

image_root_tag image::root_tag() const noexcept { return {type_name_, type_size_, type_align_}; }

const void* image::root_address(const image_root_tag& want) const {
  // A moved-from image has no file: its empty tag read as "root type mismatch: the file holds ''".
  PERMAFROST_CHECK(base_ != nullptr, "root() of a moved-from permafrost::image");
  if (want.name != type_name_ || want.size != type_size_ || want.align != type_align_)
    throw image_error(
        reason::type_mismatch,
        "permafrost::image::root('" + name_ + "'): root type mismatch: the file holds '" +
            type_name_ + "' (" + std::to_string(type_size_) + " bytes, alignment " +
            std::to_string(type_align_) + "), asked for '" + std::string(want.name) + "' (" +
            std::to_string(want.size) + " bytes, alignment " + std::to_string(want.align) + ")");
  return base_ + root_offset_;
}

}  // namespace permafrost
