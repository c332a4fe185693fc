// Fuzz target: the malloc library (libpermafrost-malloc, linked, so it is this process's malloc).
// Each input is a sequence of malloc / calloc / realloc / free / aligned_alloc / posix_memalign /
// malloc_usable_size calls on random sizes and alignments (overflowing and invalid ones
// included), on blocks of this process, on frozen arena blocks (free leaves them alone, realloc
// moves them out) and, after an occasional fork, on blocks inherited from the parent (free
// abandons them, realloc moves them). Every block's contents are checked at each use and at the
// end; a frozen block never changes. Built without ASan (the sanitizer would own malloc); UBSan
// and libFuzzer's own checks stay on. Any violation aborts.
#include <permafrost/arena.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "fuzz_input.hpp"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_malloc: %s\n", what);
    std::abort();
  }
}

// Compilers may delete a malloc whose result is only compared with null (and assume success):
// passing the result through an opaque asm keeps the call and its real answer.
void* observed(void* p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}

struct block {
  unsigned char* p;
  std::size_t size;
  unsigned char fill;
};

// Writes or checks the two ends of a block (all of a small one).
template <class F>
void each_end_byte(const block& b, F&& f) {
  if (b.size <= 128) {
    for (std::size_t i = 0; i < b.size; ++i) f(i);
    return;
  }
  for (std::size_t i = 0; i < 64; ++i) f(i);
  for (std::size_t i = b.size - 64; i < b.size; ++i) f(i);
}

void fill(const block& b) {
  each_end_byte(b, [&](std::size_t i) { b.p[i] = b.fill; });
}

void verify(const block& b, const char* what) {
  each_end_byte(b, [&](std::size_t i) { require(b.p[i] == b.fill, what); });
}

// Frozen blocks shared by every input: made once, before any fork.
struct frozen_blocks {
  permafrost::arena a;
  std::vector<block> blocks;
  frozen_blocks() : a(options()) {
    for (int i = 0; i < 16; ++i) {
      const std::size_t n = 16u << (i % 8);
      block b{static_cast<unsigned char*>(a.allocate(n, 16)), n,
              static_cast<unsigned char>(0xA0 + i)};
      fill(b);
      blocks.push_back(b);
    }
    a.freeze();
  }
  static permafrost::arena_options options() {
    permafrost::arena_options o;
    o.capacity = std::size_t{8} << 20;
    o.name = "fuzz-malloc-frozen";
    o.huge_pages = false;
    return o;
  }
};

frozen_blocks& frozen() {
  static frozen_blocks* f = new frozen_blocks();  // never destroyed: frozen objects never are
  return *f;
}

class program {
 public:
  explicit program(permafrost::fuzz::input& in) : in_(in) {}

  void run(bool may_fork) {
    for (int ops = 0; !in_.empty() && ops < 512; ++ops) {
      const unsigned op = in_.byte() % 10;
      if (op == 9) {
        if (may_fork && in_.byte() % 4 == 0) {
          fork_and_continue();
          return;  // the child ran the rest of the input
        }
        continue;
      }
      step(op);
    }
  }

  void finish() {
    for (const auto& b : live_) {
      verify(b, "block changed before its free");
      std::free(b.p);
    }
    live_.clear();
    for (const auto& b : frozen().blocks) verify(b, "a frozen block changed");
  }

 private:
  std::size_t size() {
    std::size_t n = in_.size();
    if (n > (std::size_t{1} << 20) && n < SIZE_MAX / 2) n %= std::size_t{1} << 20;
    return n;
  }

  unsigned char next_fill() { return static_cast<unsigned char>(1 + (counter_++ % 250)); }

  void keep(void* p, std::size_t n) {
    block b{static_cast<unsigned char*>(p), n, next_fill()};
    fill(b);
    live_.push_back(b);
  }

  block take(std::size_t i) {
    const block b = live_[i % live_.size()];
    live_[i % live_.size()] = live_.back();
    live_.pop_back();
    return b;
  }

  void step(unsigned op) {
    switch (op) {
      case 0: {
        const std::size_t n = size();
        void* p = observed(std::malloc(n));
        if (n > (std::size_t{1} << 48)) {
          require(p == nullptr && errno == ENOMEM, "malloc of an impossible size");
          return;
        }
        require(p != nullptr, "malloc failed");
        keep(p, n);
        return;
      }
      case 1: {
        const std::size_t count = size();
        const std::size_t each = in_.byte() % 2 == 0 ? in_.byte() : SIZE_MAX / 2;
        void* p = observed(std::calloc(count, each));
        const bool overflow = each != 0 && count > SIZE_MAX / each;
        if (overflow || count * each > (std::size_t{1} << 48)) {
          require(p == nullptr, "calloc overflow not refused");
          return;
        }
        require(p != nullptr, "calloc failed");
        const block b{static_cast<unsigned char*>(p), count * each, 0};
        verify(b, "calloc memory not zero");
        keep(p, count * each);
        return;
      }
      case 2: {
        if (live_.empty()) return;
        block b = take(in_.u16());
        verify(b, "block changed before realloc");
        const std::size_t n = size() % (std::size_t{1} << 20);
        void* q = observed(std::realloc(b.p, n));
        if (n == 0) return;  // freed (glibc's behaviour; q may be nullptr)
        require(q != nullptr, "realloc failed");
        const block moved{static_cast<unsigned char*>(q), b.size < n ? b.size : n, b.fill};
        if (moved.size > 0 && moved.size <= 64) verify(moved, "realloc lost the contents");
        if (moved.size > 64)
          for (std::size_t i = 0; i < 64; ++i)
            require(moved.p[i] == b.fill, "realloc lost the head");
        keep(q, n);
        return;
      }
      case 3:
        if (!live_.empty()) {
          const block b = take(in_.u16());
          verify(b, "block changed before free");
          std::free(b.p);
        }
        return;
      case 4: {
        const std::size_t align = in_.alignment();
        const std::size_t n = size() % (std::size_t{1} << 20);
        void* p = nullptr;
        const int rc = posix_memalign(&p, align, n);
        p = observed(p);
        // The heap is mimalloc 2.0.9, whose largest alignment is 16 MiB: beyond it ENOMEM.
        const bool valid =
            align >= sizeof(void*) && (align & (align - 1)) == 0 && align <= (std::size_t{1} << 24);
        if (!valid) {
          if (align < sizeof(void*) || (align & (align - 1)) != 0)
            require(rc == EINVAL, "posix_memalign accepted a bad alignment");
          if (rc == 0) std::free(p);
          return;
        }
        require(rc == 0 && p != nullptr, "posix_memalign failed");
        require(reinterpret_cast<std::uintptr_t>(p) % align == 0, "posix_memalign misaligned");
        keep(p, n);
        return;
      }
      case 5: {
        const auto& blocks = frozen().blocks;
        const block& f = blocks[in_.byte() % blocks.size()];
        std::free(f.p);  // arena memory: left alone
        verify(f, "free wrote a frozen block");
        return;
      }
      case 6: {
        const auto& blocks = frozen().blocks;
        const block& f = blocks[in_.byte() % blocks.size()];
        const std::size_t n = 1 + in_.byte() * 16;
        auto* q = static_cast<unsigned char*>(observed(std::realloc(f.p, n)));
        require(q != nullptr && q != f.p, "realloc of a frozen block did not move it");
        const std::size_t kept = f.size < n ? f.size : n;
        for (std::size_t i = 0; i < kept && i < 64; ++i)
          require(q[i] == f.fill, "moved frozen bytes differ");
        verify(f, "realloc wrote a frozen block");
        keep(q, n);
        return;
      }
      case 7:
        if (!live_.empty()) {
          const block& b = live_[in_.u16() % live_.size()];
          require(malloc_usable_size(b.p) >= b.size, "usable size below the request");
        }
        return;
      default: {
        const std::size_t align = std::size_t{1} << (in_.byte() % 13);
        const std::size_t n = (size() % (std::size_t{1} << 20) / align + 1) * align;  // a multiple
        void* p = observed(std::aligned_alloc(align, n));
        require(p != nullptr, "aligned_alloc failed");
        require(reinterpret_cast<std::uintptr_t>(p) % align == 0, "aligned_alloc misaligned");
        keep(p, n);
      }
    }
  }

  // The rest of the input runs in a child, on blocks it inherited (an earlier generation): their
  // frees are abandoned and their reallocs move them. The parent checks its blocks are unchanged.
  void fork_and_continue() {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    require(pid >= 0, "fork failed");
    if (pid == 0) {
      ::alarm(30);
      run(false);
      finish();
      ::_exit(0);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child failed");
    for (const auto& b : live_) verify(b, "the child's frees changed the parent's block");
  }

  permafrost::fuzz::input& in_;
  std::vector<block> live_;
  unsigned counter_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)frozen();
  permafrost::fuzz::input in(data, size);
  program p(in);
  p.run(true);
  p.finish();
  return 0;
}
