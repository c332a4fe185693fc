// A separate program for test_image (exec'd, never only forked): opens an image, looks every key
// up, reports, then holds the image open until its stdin closes so the test can read its smaps
// and pagemap.
//
//   image_child PATH N [map]   open the file at PATH
//   image_child - N [map]      receive the descriptor over the Unix socket on fd 3 and open_fd it
// With "map" the root is a hash_map<string, string> (image_map), else the offset-based
// image_table.
//
// Prints one line: "ok <data address, hex> <data bytes> <wrong answers> <is_frozen>" or
// "error <what>"; exit status 0 after stdin closes, 1 on error.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

#include <permafrost/image.hpp>

#include "fd_passing.hpp"
#include "image_table.hpp"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: image_child PATH|- N [map]\n");
    return 2;
  }
  const std::uint64_t n = std::strtoull(argv[2], nullptr, 10);
  try {
    permafrost::image img = [&] {
      if (std::strcmp(argv[1], "-") != 0) return permafrost::image::open(argv[1]);
      char byte = 0;
      int fd = -1;
      if (!permafrost::test::receive_with_fd(3, &byte, 1, &fd) || fd < 0)
        throw std::runtime_error("no descriptor received on fd 3");
      permafrost::image opened = permafrost::image::open_fd(fd);
      ::close(fd);
      return opened;
    }();
    const bool map = argc == 4 && std::strcmp(argv[3], "map") == 0;
    const void* root = nullptr;
    std::uint64_t wrong = 0;
    if (map) {
      const auto& m = img.root<permafrost::test::image_map>();
      wrong = permafrost::test::check_image_map(m, n);
      root = &m;
    } else {
      const auto& table = img.root<permafrost::test::image_table>();
      wrong = permafrost::test::check_image_table(table, n);
      root = &table;
    }
    std::printf("ok %lx %zu %llu %d\n", reinterpret_cast<unsigned long>(img.data().data()),
                img.data().size(), static_cast<unsigned long long>(wrong),
                permafrost::is_frozen(root) ? 1 : 0);
    std::fflush(stdout);
    char buf[64];
    while (::read(0, buf, sizeof buf) > 0) {}
    return 0;
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
  }
}
