// permafrost — frozen images: a frozen arena and its root object in a file that any process on
// the host (or on another host) maps read-only and shares through the page cache.
//
// Contract:
// - save_image() writes the used bytes of a frozen arena, the root object's offset and type tag,
//   a short metadata string and a checksum to a file, atomically: a temporary file in the same
//   directory, fsync, rename over the target, fsync of the directory. A reader opening the path
//   sees the old file or the new one, never part of one.
// - image::open()/open_fd() map the file's data read-only and MAP_SHARED at whatever address the
//   process has free: N processes that open one image hold its pages once. Nothing is ever
//   written to the file or to the mapped pages (no relocation pass): the data must hold no
//   absolute address. Every reference inside it is an offset (self-relative, or from the data's
//   first byte), which is what the library's position-independent containers and
//   permafrost::offset_ptr store. A raw pointer or a vtable in image data is the caller's bug.
// - The header is validated field by field before anything is mapped, and the data checksum
//   (XXH3-64) is verified on open unless open_options::verify_checksum is false. Every failure
//   is an image_error naming the file and the check that failed: a damaged or truncated file
//   never crashes. (A file rewritten or truncated in place while it is opened or mapped is not a
//   damaged file but a misuse, as for any mapping: open() itself, which reads the data through the
//   mapping, and every reader may die of SIGBUS. Replace images by renaming a new file over the
//   path, as save_image does.) The checksum detects damage, not tampering: the data's contents (the
//   root object's offsets and whatever T's readers follow) are not checked, as only T knows them,
//   so a file crafted with a matching checksum can crash or mislead the reader. Open only images
//   whose writer is trusted (docs/security.md). The checksum reads all the data the header
//   declares, so opening a sparse file whose header declares a large size reads that many zero
//   bytes; refuse files larger than you expect before opening them, or give up from
//   open_options::step.
// - root<T>() hands out the root as const T& after checking its type tag (the name given by
//   image_type<T>, sizeof, alignof) against the file's.
// - Image memory is frozen memory: is_frozen(p) is true for it, and with the write trap installed
//   a write into it prints `write to frozen arena "image NAME" at offset N` (N counted from the
//   data's first byte, the same offset the bytes had in the saved arena) before the process dies.
// - Swapping: open the newer image while readers still use the old one; publish it to readers
//   as a std::shared_ptr<const image> (swapped under a mutex, or in a std::atomic<shared_ptr>),
//   taken once per request; the old mapping goes away when its last reader drops its reference
//   (examples/image_swap). Saving over the path an
//   open image came from is safe: the rename leaves the old inode mapped until it is closed.
//   Truncating or rewriting an image file in place while it is mapped is not (readers would take
//   SIGBUS or see changed bytes); save_image never does.
// - The data starts 2 MiB into the file and is mapped at the start of a 256 MiB granule, so every
//   alignment an arena serves is kept, and page-cache huge pages can be mapped whole.
//
// File format: docs/design.md, section "Images".
//
// Thread safety: save_image may run concurrently with anything that only reads the arena. An
// image is immutable after open: all const members may be called from any number of threads.
// Opening and destroying images is thread-safe (the registry lock orders it with arenas).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "permafrost/api.h"
#include "permafrost/arena.hpp"
#include "permafrost/error.hpp"
#include "permafrost/frozen_storable.hpp"

namespace permafrost {

// =============================================================================================
// Type tags
// =============================================================================================

// The stable name of an image root type, stored in the file and checked on open. Specialise it
// (or use PERMAFROST_IMAGE_TYPE) for every root type: the name must not change when the type's
// layout does not, and must change when it does (e.g. "myapp.routes.v2"). At most 63 bytes.
template <class T>
struct image_type;  // { static constexpr std::string_view name = "..."; }

// Specialises image_type<T> with `NAME` (a string literal). Use at namespace scope (global).
#define PERMAFROST_IMAGE_TYPE(T, NAME)             \
  template <>                                      \
  struct permafrost::image_type<T> {               \
    static constexpr std::string_view name = NAME; \
  }

// =============================================================================================
// Errors
// =============================================================================================

// Thrown by save_image() and image::open*(); what() names the file and the failed check.
class PERMAFROST_API image_error : public std::runtime_error, public error {
 public:
  enum class reason {
    io,             // the file could not be opened, read, written, synced or renamed (errno)
    truncated,      // the file is shorter than its header says
    bad_magic,      // not a permafrost image
    version,        // made by another format version than the one this library reads
    platform,       // made for another word size or byte order
    checksum,       // the data does not match its checksum
    type_mismatch,  // root<T>() with a T whose tag differs from the file's
    not_mappable,   // not a regular file, or its file system refused mmap
    bad_header,     // a header field is impossible (sizes, offsets, header checksum)
    not_frozen,     // save_image() of an arena that is not frozen
    root_outside,   // save_image() with a root that does not lie inside the arena's used bytes
    address_space,  // no room in this process's arena reservation for the data, or an
                    // address-space limit (RLIMIT_AS) left too little to make one (what() says)
    not_position_independent,  // save_image() of data holding a raw pointer (an absolute address)
    no_free_slot,  // all 1024 arena slots of this process are in use (arenas and images together)
  };
  image_error(reason why, const std::string& what) : std::runtime_error(what), why_(why) {}
  const char* what() const noexcept override { return std::runtime_error::what(); }
  reason why() const noexcept { return why_; }

 private:
  reason why_;
};

// =============================================================================================
// Saving
// =============================================================================================

struct save_options {
  std::string_view metadata = {};  // stored in the header as is; at most 4096 bytes
};

// The root's tag as stored in the file (internal: filled in by save_image<T> and root<T>).
struct image_root_tag {
  std::string_view name;
  std::size_t size = 0;
  std::size_t align = 0;
};

namespace detail {
PERMAFROST_API void save_image(const arena& a, const void* root, const image_root_tag& tag,
                               const std::filesystem::path& path, const save_options& options);

template <class T>
image_root_tag root_tag_of() {
  static_assert(!std::is_polymorphic_v<T>,
                "an image root cannot have virtual functions: its vtable pointer is an absolute "
                "address");
  static_assert(image_type<T>::name.size() > 0 && image_type<T>::name.size() <= 63,
                "image_type<T>::name must be 1 to 63 bytes");
  return {image_type<T>::name, sizeof(T), alignof(T)};
}
}  // namespace detail

// Effects: writes the used bytes of the frozen arena `a` and the root object `root` (which lies
// in `a`) to `path` atomically: a temporary file "<path>.XXXXXX" in the same directory, written,
// fsynced, renamed over `path`, then the directory fsynced (a directory this process may write but
// not read: syncfs of its file system). The temporary file is removed on failure; `path` is then
// untouched, except when the device fails that last sync: the error then says the path already
// holds the new image.
// Before writing, check_position_independent(a, root) (frozen_storable.hpp) walks the root
// through the containers' points_into hooks: a raw pointer met there is refused, naming its
// arena offset (store permafrost::offset_ptr instead). A root of a class type without a
// points_into hook does not compile unless declared with PERMAFROST_POINTER_FREE(T)
// (frozen_storable.hpp): the check cannot look inside it. A container's value of such a type is
// still unseen: a pointer in it is saved as it is; give your structs a hook or keep pointers out
// of them (docs/design.md, "Offsets, not relocation").
// Only a regular file, or a symlink to one or to nothing (which the rename replaces, leaving its
// target alone), is replaced: a directory, device, FIFO or socket at `path`, a symlink to one, or
// a symlink chain with a link in /proc or /dev (/dev/stdout; /dev/shm excepted) is refused before
// anything is written.
// Throws: image_error — not_frozen, root_outside, not_position_independent, bad_header (metadata
// over 4096 bytes), io (naming the path, the step and the errno; or `path` is not a regular file,
// names no file, or holds a NUL byte).
template <class T>
void save_image(const arena& a, const T& root, const std::filesystem::path& path,
                const save_options& options = {}) {
  const image_root_tag tag = detail::root_tag_of<T>();
  if (a.frozen() && a.contains(&root)) {  // otherwise detail::save_image names the misuse
    if (std::string why = check_position_independent(a, root); !why.empty())
      throw image_error(image_error::reason::not_position_independent,
                        "permafrost::save_image('" + path.string() + "'): " + why);
  }
  detail::save_image(a, &root, tag, path, options);
}

// =============================================================================================
// Opening
// =============================================================================================

struct open_options {
  // Hash the data on open (XXH3-64, at memory bandwidth; reads every page, so the whole image
  // enters the page cache). Off: open is O(1) in the data's size and a flipped byte goes unseen.
  bool verify_checksum = true;

  // Pre-fault the whole mapping on open (MADV_POPULATE_READ, Linux 5.14+; one read per page
  // before), so this process takes no page fault reading the image later: the cost of faulting
  // moves from the first requests to the open, which then reads the whole file into the page
  // cache. Fork does not copy the page tables of a file mapping, so a worker that wants this
  // opens the image itself (or opens it again) with populate. Best effort: a failure costs page
  // faults later, nothing else. Default off.
  bool populate = false;

  // Ask for huge pages on the mapping (MADV_HUGEPAGE). The data starts 2 MiB into the file and is
  // mapped 2 MiB-aligned, so where the file system keeps its page cache in 2 MiB folios (ext4 and
  // XFS on Linux 6.x) each is mapped with one page-table entry: one TLB entry and one fault per
  // 2 MiB instead of 512. With the advice, pages the kernel reads in for a fault are read as 2 MiB
  // folios; without it, pages already in the page cache as 2 MiB folios are still mapped whole.
  // Best effort; default: where transparent huge pages are `madvise` or `always`.
  bool huge_pages = huge_pages_available();

  // Called after every open_step_bytes that open() populates and every open_step_bytes it hashes,
  // so that a long open of a large image can report progress or be abandoned: whatever it
  // throws leaves open() with nothing mapped and the file untouched (the Python module checks
  // for Ctrl-C here). Default: none.
  std::function<void()> step = nullptr;
};

// How much of the data open() reads between two calls of open_options::step: ~2-5 ms of hashing.
inline constexpr std::size_t open_step_bytes = std::size_t{16} << 20;

// A mapped image. Move-only; the mapping lives until the image is destroyed (every reference
// into it dangles then: keep the image alive as long as its readers, see the swap pattern above).
class PERMAFROST_API image {
 public:
  // Effects: opens `path` read-only, validates the header, maps the data, verifies the checksum
  // (unless told not to), closes the descriptor (the mapping keeps the file).
  // Throws: image_error — io (missing file, no permission, a NUL byte in the path), truncated,
  // bad_magic, version, platform, bad_header, not_mappable, checksum, address_space,
  // no_free_slot; each names the path. Whatever options.step throws.
  static image open(const std::filesystem::path& path, const open_options& options = {});

  // As open(), from a descriptor (a file or memfd, e.g. received over a Unix socket). The
  // descriptor is only read (pread at explicit offsets, so its file position is untouched); the
  // caller keeps and closes it. The image's name is "fd N (<target of /proc/self/fd/N>)".
  // A descriptor open for writing (every memfd is) is never mapped: the file is opened again
  // read-only through /proc/self/fd/N and mapped through that, so no mprotect can make the
  // mapping writable; where that is impossible (no /proc, no read permission) the open fails
  // with image_error(io).
  static image open_fd(int fd, const open_options& options = {});
  // As open_fd(fd, options), named `name` (in name() and in errors) instead of "fd N (...)": for
  // a caller that opened the path itself, to learn the file's identity (fstat) before mapping
  // it; opening the path twice may map a file renamed over it in between.
  static image open_fd_named(int fd, std::string name, const open_options& options = {});

  image(image&& other) noexcept;
  image& operator=(image&& other) noexcept;
  image(const image&) = delete;
  image& operator=(const image&) = delete;
  // Effects: unmaps the data (the address range goes back to the arena reservation).
  ~image();

  // The root object. Throws: image_error(type_mismatch) naming both tags when T's tag
  // (image_type<T>::name, sizeof, alignof) differs from the file's. Pre: not moved from (else
  // aborts with a message).
  template <class T>
  const T& root() const {
    return *static_cast<const T*>(root_address(detail::root_tag_of<T>()));
  }

  // The file's root tag (name, size, alignment), for tools that do not know the type.
  image_root_tag root_tag() const noexcept;
  // The metadata string given to save_image().
  std::string_view metadata() const noexcept { return metadata_; }
  // The arena's bytes: offset 0 here is offset 0 of the saved arena.
  std::span<const std::byte> data() const noexcept { return {base_, size_}; }
  // The path, or the descriptor's description (open_fd).
  const std::string& name() const noexcept { return name_; }
  // True when p lies in data().
  bool contains(const void* p) const noexcept {
    const auto* b = static_cast<const std::byte*>(p);
    return base_ != nullptr && b >= base_ && b < base_ + size_;
  }

 private:
  image() = default;
  const void* root_address(const image_root_tag& want) const;
  static image open_descriptor(int fd, std::string name, const open_options& options);

  detail::arena_core* core_ = nullptr;  // the frozen slot that owns the mapping
  const std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t root_offset_ = 0;
  std::string name_;
  std::string metadata_;
  std::string type_name_;
  std::size_t type_size_ = 0;
  std::size_t type_align_ = 0;
};

}  // namespace permafrost
