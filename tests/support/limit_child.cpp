// A separate program for test_arena and test_image (exec'd, so it starts with no arena
// reservation): sets an address-space limit (RLIMIT_AS) on itself first, then makes arenas and
// images under it.
//
//   limit_child KIB arena         under a limit of KIB KiB: a default arena holds 32 MiB and
//                                 freezes; then a C API arena is made and allocates 1 MiB
//   limit_child KIB image PATH    under a limit of KIB KiB: saves a 16 MiB image to PATH from a
//                                 default arena, destroys the arena, opens the image and checks it
//   limit_child +KIB none PATH    under a limit of what the program maps now plus KIB KiB: an
//                                 arena, a C API arena and opening the image at PATH (unless
//                                 PATH is "-") all fail, naming the limit
//
// Prints one line per step: "ok <what>" or "error <what>: <message>"; exit status 0 when every
// step went as expected.
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <permafrost/arena.hpp>
#include <permafrost/image.hpp>
#include <permafrost/permafrost.h>

namespace {

struct limit_root {
  std::size_t bytes;
  std::size_t offset;  // of the data, from the root
};

}  // namespace

PERMAFROST_IMAGE_TYPE(limit_root, "permafrost.test.limit_root");
PERMAFROST_POINTER_FREE(limit_root);

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

std::size_t vm_size_kib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  std::size_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmSize:", 7) == 0) kib = std::strtoull(line + 7, nullptr, 10);
  }
  std::fclose(f);
  return kib;
}

unsigned char pattern(std::size_t i) { return static_cast<unsigned char>(i * 7 + 3); }

int fails = 0;

void report(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok" : "error", what.c_str());
  std::fflush(stdout);
  if (!ok) ++fails;
}

void arena_case() {
  try {
    permafrost::arena a;
    auto* p = static_cast<unsigned char*>(a.allocate(32 * mib));
    for (std::size_t i = 0; i < 32 * mib; ++i) p[i] = pattern(i);
    a.freeze();
    bool same = true;
    for (std::size_t i = 0; i < 32 * mib; i += 4096) same = same && p[i] == pattern(i);
    report(same && a.frozen(), "arena reserved " + std::to_string(a.stats().reserved));
  } catch (const std::exception& e) {
    report(false, std::string("arena: ") + e.what());
  }
  permafrost_arena* c = nullptr;
  const int err = permafrost_arena_create(nullptr, &c);
  void* q = nullptr;
  const int alloc = err == 0 ? permafrost_arena_allocate(c, mib, 16, &q) : err;
  report(err == 0 && alloc == 0 && q != nullptr,
         "C API arena: create " + std::to_string(err) + ", allocate " + std::to_string(alloc));
  if (c != nullptr) permafrost_arena_destroy(c);
}

void image_case(const char* path) {
  try {
    {
      permafrost::arena a;
      auto* root = static_cast<limit_root*>(a.allocate(sizeof(limit_root), alignof(limit_root)));
      auto* data = static_cast<unsigned char*>(a.allocate(16 * mib));
      for (std::size_t i = 0; i < 16 * mib; ++i) data[i] = pattern(i);
      root->bytes = 16 * mib;
      root->offset = static_cast<std::size_t>(data - reinterpret_cast<unsigned char*>(root));
      a.freeze();
      permafrost::save_image(a, *root, path);
    }
    report(true, "image saved");
    const permafrost::image img = permafrost::image::open(path);
    const auto& root = img.root<limit_root>();
    const auto* data = reinterpret_cast<const unsigned char*>(&root) + root.offset;
    bool same = root.bytes == 16 * mib;
    for (std::size_t i = 0; same && i < root.bytes; i += 4096) same = data[i] == pattern(i);
    report(same, "image opened, " + std::to_string(img.data().size()) + " bytes");
  } catch (const std::exception& e) {
    report(false, std::string("image: ") + e.what());
  }
}

// Every step must fail, and say that the address-space limit is the cause.
void none_case(const char* path) {
  const auto names_limit = [](const char* what) {
    return std::strstr(what, "RLIMIT_AS") != nullptr;
  };
  try {
    permafrost::arena a;
    report(false, "an arena was made");
  } catch (const permafrost::arena_limit_error& e) {
    report(e.which() == permafrost::arena_limit_error::limit::address_space &&
               names_limit(e.what()),
           std::string("arena refused: ") + e.what());
  } catch (const std::exception& e) {
    report(false, std::string("arena: ") + e.what());
  }
  permafrost_arena* c = nullptr;
  const int err = permafrost_arena_create(nullptr, &c);
  report(err == ENOMEM && c == nullptr, "C API arena refused: " + std::to_string(err));
  if (std::strcmp(path, "-") == 0) return;
  try {
    const permafrost::image img = permafrost::image::open(path);
    report(false, "an image was opened");
  } catch (const permafrost::image_error& e) {
    report(e.why() == permafrost::image_error::reason::address_space && names_limit(e.what()),
           std::string("image refused: ") + e.what());
  } catch (const std::exception& e) {
    report(false, std::string("image: ") + e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: limit_child [+]KIB arena|image PATH|none PATH\n");
    return 2;
  }
  const bool relative = argv[1][0] == '+';
  const std::size_t kib = std::strtoull(argv[1] + (relative ? 1 : 0), nullptr, 10);
  const rlim_t limit = (kib + (relative ? vm_size_kib() : 0)) << 10;
  const rlimit rl{limit, limit};
  if (::setrlimit(RLIMIT_AS, &rl) != 0) {
    std::perror("setrlimit");
    return 2;
  }
  const std::string mode = argv[2];
  if (mode == "arena") {
    arena_case();
  } else if (mode == "image" && argc == 4) {
    image_case(argv[3]);
  } else if (mode == "none" && argc == 4) {
    none_case(argv[3]);
  } else {
    return 2;
  }
  return fails == 0 ? 0 : 1;
}
