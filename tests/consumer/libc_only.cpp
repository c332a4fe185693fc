// Linked with the malloc library (permafrost::malloc, or the permafrost-malloc .pc file) but
// calling no allocator and nothing of the library itself: only libc, which allocates inside
// libc. Under --as-needed (the default of Debian's gcc) such a program got no DT_NEEDED entry
// for the library and kept glibc's malloc. Exits 0 when the library is loaded and libc's own
// allocation (strdup) is served by it, 1 otherwise.
#include <cstdio>
#include <cstring>
#include <dlfcn.h>

int main() {
  void* marker = ::dlsym(RTLD_DEFAULT, "permafrost_malloc_library");
  void* libc_malloc = ::dlsym(RTLD_DEFAULT, "malloc");
  Dl_info where{};
  if (marker == nullptr || libc_malloc == nullptr || ::dladdr(libc_malloc, &where) == 0 ||
      where.dli_fname == nullptr ||
      std::strstr(where.dli_fname, "libpermafrost-malloc") == nullptr) {
    std::fprintf(stderr, "the malloc library is not loaded, or malloc is not its (%s)\n",
                 where.dli_fname != nullptr ? where.dli_fname : "?");
    return 1;
  }
  std::puts("malloc is the malloc library's, though this program calls no allocator");
  return 0;
}
