// Fuzz target: the arena API, C++ and C. Each input is a program: an arena configuration, then
// operations (allocations of random sizes and alignments, tagged or not, through allocate,
// try_allocate or the C API; freeze at a random point; reads back). After every operation the
// arena's invariants hold; at the end every block is aligned, inside the arena, disjoint from the
// others and still holds what was written to it; after freeze nothing allocates and everything
// handed out is is_frozen(). Any violation aborts (a crash for libFuzzer).
#include <permafrost/arena.hpp>
#include <permafrost/permafrost.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

#include "fuzz_input.hpp"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_arena: %s\n", what);
    std::abort();
  }
}

struct block {
  unsigned char* p;
  std::size_t size;
  unsigned char fill;
};

bool valid_alignment(std::size_t align) {
  return align != 0 && (align & (align - 1)) == 0 && align <= permafrost::detail::max_alignment;
}

// The bytes of a block the fuzzer writes: all of a small block, the two ends of a large one
// (writing megabytes per input would make the fuzzer slow, not more thorough).
template <class F>
void for_each_checked_byte(const block& b, F&& f) {
  const std::size_t n = std::max<std::size_t>(b.size, 1);
  if (n <= 256) {
    for (std::size_t i = 0; i < n; ++i) f(i);
  } else {
    for (std::size_t i = 0; i < 64; ++i) f(i);
    for (std::size_t i = n - 64; i < n; ++i) f(i);
  }
}

class program {
 public:
  explicit program(permafrost::fuzz::input& in) : in_(in) {}

  void run() {
    const std::size_t capacity = (std::size_t{1} + in_.byte() % 64) << 20;  // 1..64 MiB
    const bool log = (in_.byte() & 1) != 0;
    use_c_ = (in_.byte() & 1) != 0;
    permafrost_arena_options o;
    permafrost_arena_options_init(&o);
    o.capacity = capacity;
    o.name = "fuzz";
    o.huge_pages = 0;
    o.allocation_log = log ? 1 : 0;
    require(permafrost_arena_create(&o, &c_) == 0, "arena creation failed");
    capacity_ = capacity;

    int ops = 0;
    while (!in_.empty() && ops++ < 256) {
      step(in_.byte() % 8);
      check();
    }
    finish();
    permafrost_arena_destroy(c_);
  }

 private:
  // The C handle is a struct whose only member is the C++ arena (src/capi/c_api.cpp), so one arena
  // is driven through both APIs in the same program.
  permafrost::arena& a() { return *reinterpret_cast<permafrost::arena*>(c_); }

  void step(unsigned op) {
    switch (op) {
      case 0:
      case 1:
      case 2: {
        const std::size_t size = in_.size();  // sequenced: see fuzz_input.hpp
        allocate(size, in_.alignment());
        break;
      }
      case 3: {
        const std::size_t size = in_.byte();
        allocate(size, std::size_t{1} << (in_.byte() % 8));
        break;
      }
      case 4:
        if (in_.byte() % 4 == 0) freeze();
        break;
      case 5: verify_one(in_.u16()); break;
      case 6:
        if (in_.byte() % 8 == 0) stats();  // reads /proc/self/smaps: slow, so only sometimes
        break;
      default: {
        // A string copy: NUL-terminated, exact.
        const std::size_t n = in_.byte();
        char text[256];
        for (std::size_t i = 0; i < n; ++i) text[i] = static_cast<char>('a' + i % 26);
        try {
          const auto s = a().copy({text, n});
          require(!frozen_, "copy succeeded after freeze");
          require(s.size() == n && std::memcmp(s.data(), text, n) == 0 && s.data()[n] == '\0',
                  "copy is not exact");
          blocks_.push_back({reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())), n + 1,
                             0});  // fill 0: content checked as the string, not a pattern
          strings_.push_back(blocks_.size() - 1);
        } catch (const permafrost::frozen_error&) {
          require(frozen_, "frozen_error before freeze");
        } catch (const std::bad_alloc&) {
          require(used() + n + 1 > capacity_, "copy refused with room to spare");
        }
      }
    }
  }

  std::size_t used() { return a().used_bytes().size(); }  // stats() would read smaps: slow

  void allocate(std::size_t size, std::size_t align) {
    const unsigned how = in_.byte() % 4;
    const bool valid = valid_alignment(align);
    const bool overflow = valid && size > SIZE_MAX - (align - 1);
    const bool fits = valid && !overflow && size <= capacity_ && align <= capacity_ &&
                      used() + std::max<std::size_t>(size, 1) + align <= capacity_;
    if (trace_) {
      std::fprintf(stderr, "allocate size=%zu align=%zu how=%u used=%zu frozen=%d\n", size, align,
                   how, used(), frozen_);
    }
    void* p = nullptr;
    if (use_c_ && how == 0) {
      const int err = permafrost_arena_allocate(c_, size, align, &p);
      if (frozen_) {
        require(err == EROFS || (!valid && err == EINVAL) || (overflow && err == ENOMEM),
                "C allocate after freeze: wrong errno");
      } else if (!valid) {
        require(err == EINVAL, "C allocate: bad alignment not EINVAL");
      } else if (overflow) {
        require(err == ENOMEM, "C allocate: overflow not ENOMEM");
      } else if (fits) {
        require(err == 0, "C allocate failed with room to spare");
      } else {
        require(err == 0 || err == ENOMEM, "C allocate: unexpected errno");
      }
      require((err == 0) == (p != nullptr), "C allocate: result and errno disagree");
    } else if (how == 1) {
      p = a().try_allocate(size, align);
      if (frozen_ || !valid || overflow) require(p == nullptr, "try_allocate should have failed");
      if (!frozen_ && fits) require(p != nullptr, "try_allocate failed with room to spare");
    } else {
      try {
        p = how == 2 ? a().allocate(size, align) : a().allocate(size, align, "fuzz-tag");
        require(!frozen_ && valid && !overflow, "allocate should have thrown");
      } catch (const permafrost::frozen_error&) {
        require(frozen_, "frozen_error before freeze");
      } catch (const std::invalid_argument&) {
        require(!valid, "invalid_argument for a valid alignment");
      } catch (const std::bad_alloc&) {
        require(valid && (overflow || !fits), "bad_alloc with room to spare");
      }
    }
    if (p == nullptr) return;
    require(reinterpret_cast<std::uintptr_t>(p) % align == 0, "misaligned block");
    require(a().contains(p), "block outside the arena");
    require(!permafrost::is_frozen(p), "fresh block reads as frozen");
    block b{static_cast<unsigned char*>(p), size,
            static_cast<unsigned char>(1 + blocks_.size() % 255)};
    for_each_checked_byte(b, [&](std::size_t i) {
      require(b.p[i] == 0, "fresh block is not zero");
      b.p[i] = b.fill;
    });
    blocks_.push_back(b);
  }

  void freeze() {
    if (use_c_) {
      require(permafrost_arena_freeze(c_) == 0, "C freeze failed");
      require(permafrost_arena_freeze(c_) == 0, "C freeze is not idempotent");
    } else {
      a().freeze();
      a().freeze();
    }
    frozen_ = true;
    require(a().frozen() && permafrost_arena_frozen(c_) == 1, "freeze did not stick");
    require(a().try_allocate(8) == nullptr, "try_allocate after freeze");
  }

  void verify(const block& b) {
    if (std::find(strings_.begin(), strings_.end(), &b - blocks_.data()) != strings_.end()) {
      require(b.p[b.size - 1] == '\0', "string copy lost its NUL");
      return;
    }
    for_each_checked_byte(b,
                          [&](std::size_t i) { require(b.p[i] == b.fill, "block overwritten"); });
    require(permafrost::is_frozen(b.p) == frozen_, "is_frozen disagrees with freeze()");
    require(permafrost_is_frozen(b.p) == (frozen_ ? 1 : 0), "C is_frozen disagrees");
  }

  void verify_one(std::size_t i) {
    if (!blocks_.empty()) verify(blocks_[i % blocks_.size()]);
  }

  void stats() {
    const auto s = a().stats();
    permafrost_arena_stats cs;
    require(permafrost_arena_stats_get(c_, &cs) == 0, "C stats failed");
    require(s.used <= capacity_ && s.used <= s.committed, "used beyond the committed range");
    require(s.allocations >= blocks_.size(), "allocations undercounted");
    require(s.frozen == frozen_ && cs.frozen == (frozen_ ? 1 : 0), "stats disagree on frozen");
    require(cs.used == s.used && cs.allocations == s.allocations, "C and C++ stats disagree");
  }

  void check() { a().check_invariants(); }

  void finish() {
    std::vector<block> sorted = blocks_;
    std::sort(sorted.begin(), sorted.end(),
              [](const block& x, const block& y) { return x.p < y.p; });
    for (std::size_t i = 1; i < sorted.size(); ++i) {
      require(sorted[i - 1].p + std::max<std::size_t>(sorted[i - 1].size, 1) <= sorted[i].p,
              "blocks overlap");
    }
    for (const auto& b : blocks_) verify(b);
    if (!sorted.empty()) {
      const auto range = a().used_bytes();
      const auto* last = sorted.back().p + std::max<std::size_t>(sorted.back().size, 1);
      require(static_cast<const void*>(range.data()) <= sorted.front().p &&
                  static_cast<const void*>(range.data() + range.size()) >= last,
              "used_bytes does not cover every block");
    }
    if (!frozen_ && (in_.byte() & 1) != 0) freeze();
    if (frozen_) {
      for (const auto& b : blocks_) verify(b);
      try {
        (void)a().allocate(1);
        require(false, "allocate after freeze did not throw");
      } catch (const permafrost::frozen_error&) {}
    }
    check();
  }

  permafrost::fuzz::input& in_;
  permafrost_arena* c_ = nullptr;
  std::size_t capacity_ = 0;
  bool use_c_ = false;
  bool frozen_ = false;
  bool trace_ = std::getenv("PERMAFROST_FUZZ_TRACE") != nullptr;  // to read a failing input
  std::vector<block> blocks_;
  std::vector<std::ptrdiff_t> strings_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  permafrost::fuzz::input in(data, size);
  program(in).run();
  return 0;
}
