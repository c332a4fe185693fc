// permafrost for Python — graph_output: where freeze() and the builders write a frozen graph.
//
// Contract: a graph_output is a permafrost arena (arena.hpp) that the writer bump-allocates
// nodes from, in the format of format.hpp, addressed by offset from the arena's first byte (the
// root header, allocated by the constructor). A graph past 1 MiB lives in a memfd-backed arena
// (backing::memfd), which commits and grows its memory file as the writer advances (in 2 MiB
// steps, up to 64 MiB ahead), so nothing is written twice: there is no buffer to copy from.
// finish() freezes it exactly as every frozen arena is frozen (read-only, sealed memfd, write
// trap, permafrost-stat name) and hands it over; a graph_output destroyed before that (an error,
// KeyboardInterrupt) unmaps and closes the partial arena. Small immutable nodes (at most 64
// bytes) with equal bytes can be stored once (store_once), through an index of 8 bytes a node
// that goes sparse when new nodes stop recurring.
//
// Growth: the first 1 MiB is written into an anonymous arena (a small value costs no descriptor
// and no memory file; sharing it with another process moves it into a memfd then, see
// sharing.cpp). Past that the graph moves into a memfd arena that reserves 4 GiB of address
// space (256 MiB where the process's arena reservation has no 4 GiB run); a graph that outgrows
// that moves into one four times larger. Each move copies what was written: at most 1 MiB,
// except past 4 GiB.
//
// Thread safety: none; one writer, under the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <vector>

#include "permafrost/detail/arena_pages.hpp"

namespace permafrost {
class arena;
}

namespace permafrost::python {

class graph_output {
 public:
  // Effects: a new memfd arena named `name`, holding a zeroed root header at offset 0. `forks`
  // counts the forks this process is a child of (module_state::forks, bumped by an
  // os.register_at_fork hook); it must outlive the writer.
  // Throws: std::bad_alloc (arena_limit_error naming the limit), std::system_error.
  graph_output(std::string_view name, const std::uint64_t& forks);
  ~graph_output();
  graph_output(const graph_output&) = delete;
  graph_output& operator=(const graph_output&) = delete;

  // Effects: `bytes` (> 0) zero bytes, rounded up to 8, at an 8-aligned offset that is
  // returned. Any pointer from at() may move (see the file comment): take them again after.
  // Throws: std::bad_alloc, std::system_error.
  std::uint64_t alloc(std::size_t bytes) {
    check_not_forked();
    const std::size_t rounded = (bytes + 7) & ~std::size_t{7};
    const std::uint64_t off = bump(rounded);
    end_ = off + rounded;
    return off;
  }

  // The byte at `off`. Every write and read of the graph goes through at() or the calls here.
  char* at(std::uint64_t off) const {
    check_not_forked();
    return base_ + off;
  }

  // Throws py_error (RuntimeError set) in a child forked since the writer began, so that no
  // entry point writes on: past 1 MiB the arena is a memfd whose pages the child maps read-only
  // (the parent's), and a store there killed the child with SIGSEGV. User code the writer runs
  // (an iterable, a tzinfo, a finalizer, a signal handler) may fork at any point between two
  // calls; every call checks, so the child stops at its next one.
  void check_not_forked() const {
    if (*forks_ != forks_at_start_) [[unlikely]]
      forked();
  }

  // Bytes written so far, from offset 0 to the end of the last allocation.
  std::size_t size() const { return end_; }

  // Effects: the offset of a node with the same `bytes` bytes (8 <= bytes <= 64, a multiple of
  // 8, starting with the node's header, zero padded) stored earlier through store_once, or
  // else a new copy of them, which later calls find unless `remember` is false (a value known
  // to be unique, e.g. a key of a large table: indexing it would cost 8-16 bytes for nothing)
  // or the index is sampling (below).
  // Adaptive: once 64 Ki nodes are indexed, the index watches windows of 16 Ki new nodes; when
  // fewer than 1 in 16 of a window's new nodes is found again while the index still knows it
  // (hits on nodes stored since the previous window began), new nodes are unlikely to recur
  // (1M distinct names: 16-24 MiB of index for nothing) and only every 16th new node is
  // indexed, until hits on recent nodes come back. Nodes already indexed are found as before,
  // and a value that recurs is indexed within 16 of its copies, so repeated values (tags,
  // enum-like strs) stay stored once or nearly.
  // Throws: as alloc().
  std::uint64_t store_once(const char* node, std::size_t bytes, bool remember = true);

  // Effects: the byte offset of a packed str (format.hpp, tag_packed_str: `bytes` bytes, its
  // length byte then its UTF-8) with the same bytes stored earlier through store_packed, or else
  // of a new copy at any (unaligned) offset; remembered and found as store_once's nodes are, in
  // an index of its own. Pre: 2 <= bytes <= 1 + max_packed_str.
  // Packed strs are laid end to end in runs the writer allocates (a sixteenth of the packed
  // strs so far: 256 bytes to 64 KiB), so a run's unused tail is all they waste.
  // Throws: as alloc().
  std::uint64_t store_packed(const char* bytes, std::size_t n, bool remember = true);

  // Effects: frees store_once's index (nodes stored from now on are not compared with those
  // stored before): for a builder whose items are all written, before its root's own nodes.
  void forget_small_nodes() {
    nodes_ = {};
    packed_ = {};
  }

  // Effects: freezes the arena and hands it over. Throws: as arena::freeze().
  std::unique_ptr<permafrost::arena> finish();

  // Tests: the reservation of the first memfd arena (0: the default, 4 GiB), to reach growth
  // past it with a small graph. Under the GIL.
  static void set_first_reservation(std::size_t bytes) { first_reservation_ = bytes; }

 private:
  // store_once's open-addressing index (one for nodes, one for packed strs): 0 is empty, else
  // the value's 32-bit hash tag (high half) and its offset / unit (low half: unit 8 for nodes, 1
  // for packed strs). A value past what the low half holds is stored but not indexed.
  // The adaptive part (see store_once): whether only every 16th new value is indexed, and the
  // current window: new values stored in it, hits on values stored since previous_window_start.
  struct dedupe_index {
    std::vector<std::uint64_t> slots;
    std::size_t used = 0;
    bool sampling = false;
    std::size_t window_new = 0;
    std::size_t window_recent_hits = 0;
    std::uint64_t window_start = 0;
    std::uint64_t previous_window_start = 0;
  };

  [[noreturn]] static void forked();
  std::uint64_t bump(std::size_t rounded);
  [[gnu::noinline]] std::uint64_t grow(std::size_t rounded);
  // grow()'s move when no second arena fits: arena_ released, then remade with `capacity`.
  void replace_arena(std::size_t capacity);
  std::uint64_t store_deduped(dedupe_index& ix, const char* data, std::size_t bytes, bool remember,
                              unsigned unit);
  std::uint64_t alloc_packed(std::size_t bytes);
  static void grow_index(dedupe_index& ix);
  void end_window(dedupe_index& ix) const;

  static inline std::size_t first_reservation_ = 0;
  const std::uint64_t* forks_;          // module_state::forks (check_not_forked)
  const std::uint64_t forks_at_start_;  // its value when the writer began
  std::unique_ptr<permafrost::arena> arena_;
  std::size_t capacity_ = 0;  // the arena's reservation
  bool memfd_ = false;        // whether the arena is memfd-backed (it is after the first move)
  char* base_ = nullptr;      // offset 0
  std::size_t end_ = 0;
  dedupe_index nodes_;
  dedupe_index packed_;
  // The run packed strs are written into (store_packed): the next free byte, the bytes left in
  // the run; and the bytes of all packed strs written (new runs are sized from it).
  std::uint64_t packed_next_ = 0;
  std::size_t packed_left_ = 0;
  std::size_t packed_total_ = 0;
};

// A writer's transient array of trivially copyable T (words, hashes, column fields). Up to 64 KiB
// it is a malloc block grown by realloc; past that it lives in its own mapping
// (permafrost/detail/arena_pages.hpp), which grows by moving pages, never by copying them, and
// whose memory is the pages written: so a build that does not know its size never holds twice an
// array, nor what malloc keeps after it (glibc's dynamic mmap threshold would put a large array
// on its heap once larger blocks were freed), and consumed elements can go back to the kernel at
// once (release_prefix). Thread safety: none.
template <class T>
class growing_array {
 public:
  growing_array() = default;
  ~growing_array() { clear(); }
  growing_array(const growing_array&) = delete;
  growing_array& operator=(const growing_array&) = delete;

  // Throws: std::bad_alloc.
  void push_back(T v) {
    if (size_ == capacity_) reserve(capacity_ ? capacity_ + capacity_ / 2 : 1024);
    data_[size_++] = v;
  }
  // Effects: room for n elements, so that growing to n moves nothing.
  // Throws: std::bad_alloc.
  void reserve_for(std::size_t n) {
    if (n > capacity_) reserve(n);
  }
  // Effects: n zero elements (after what it held is dropped). Throws: std::bad_alloc.
  void resize_zeroed(std::size_t n) {
    clear();
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    if (n * sizeof(T) > small_bytes) {
      pages_.reserve(n * sizeof(T));  // a new mapping is zero
      data_ = reinterpret_cast<T*>(pages_.data());
    } else {
      data_ = static_cast<T*>(std::calloc(n ? n : 1, sizeof(T)));
      if (!data_) throw std::bad_alloc();
    }
    size_ = capacity_ = n;
  }
  // Pre: n <= size().
  void resize(std::size_t n) { size_ = n; }
  // Effects: the memory of elements [0, n) goes back to the kernel where it fills whole pages
  // of a mapped array (their values are gone: read none of them again). Pre: n <= size().
  void release_prefix(std::size_t n) noexcept {
    if (pages_.data()) pages_.discard_prefix(n * sizeof(T));
  }
  // Effects: frees the memory.
  void clear() {
    if (pages_.data()) pages_.clear();
    else std::free(data_);
    data_ = nullptr;
    size_ = capacity_ = 0;
  }
  T* data() { return data_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_[i]; }

 private:
  static constexpr std::size_t small_bytes = std::size_t{64} << 10;

  void reserve(std::size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    const std::size_t bytes = n * sizeof(T);
    if (!pages_.data() && bytes <= small_bytes) {
      void* p = std::realloc(data_, bytes);
      if (!p) throw std::bad_alloc();
      data_ = static_cast<T*>(p);
    } else {
      const bool was_small = !pages_.data();
      pages_.reserve(bytes);
      if (was_small) {  // the one copy: at most 64 KiB
        if (size_) std::memcpy(pages_.data(), data_, size_ * sizeof(T));
        std::free(data_);
      }
      data_ = reinterpret_cast<T*>(pages_.data());
    }
    capacity_ = n;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  permafrost::detail::page_buffer pages_;  // the storage past small_bytes
};

}  // namespace permafrost::python
