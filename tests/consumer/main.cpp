// Built against the installed package, once per library target (CMake's find_package and
// pkg-config): proves the headers, each library and its package files are enough for a user's
// project, and that each target changes nothing it does not name.
//   PERMAFROST_CONSUMER_ARENA   permafrost::arena: malloc stays glibc's (dladdr, mallinfo2), no
//                               mimalloc is loaded, nothing is reserved before the first arena.
//   PERMAFROST_CONSUMER_HEAP    permafrost::heap: malloc is libmimalloc's (as documented), the
//                               process heap renews in a child, the malloc library is absent.
//   PERMAFROST_CONSUMER_MALLOC  permafrost::malloc or permafrost::permafrost: malloc is
//                               libpermafrost-malloc's and a arena_scope routes into the arena.
//   PERMAFROST_CONSUMER_SANITIZED  with the arena: a sanitizer build, whose runtime owns malloc
//                               and maps terabytes of shadow; the malloc checks are skipped.
#include <permafrost/arena.hpp>
#include <permafrost/frozen_allocator.hpp>
#include <permafrost/permafrost.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

// The tests' /proc readers (header-only, standard C++ and POSIX: no part of the library).
#include "../support/proc.hpp"

#if defined(PERMAFROST_CONSUMER_HEAP)
#include <permafrost/fork.hpp>
#include <permafrost/heap.hpp>
#include <sys/wait.h>
#include <unistd.h>
#elif defined(PERMAFROST_CONSUMER_MALLOC)
#include <permafrost/arena_scope.hpp>
#include <permafrost/heap.hpp>
#elif !defined(PERMAFROST_CONSUMER_SANITIZED)
#include <malloc.h>
#endif

using permafrost::test::mapped;
using permafrost::test::status_kib;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

// The file that defines the malloc this program calls.
std::string malloc_provider() {
  Dl_info info{};
  void* (*volatile fn)(std::size_t) = &std::malloc;
  if (::dladdr(reinterpret_cast<void*>(fn), &info) == 0 || info.dli_fname == nullptr) return "?";
  return info.dli_fname;
}

}  // namespace

int main() {
  const std::string provider = malloc_provider();
  std::printf("malloc is from %s\n", provider.c_str());
#if defined(PERMAFROST_CONSUMER_HEAP)
  expect(provider.find("libmimalloc") != std::string::npos,
         "permafrost::heap: malloc is libmimalloc's");
  expect(::dlsym(RTLD_DEFAULT, "permafrost_malloc_library") == nullptr,
         "the malloc library is not loaded");
  expect(permafrost::process_heap_stats().reserved != 0, "the process heap is reserved");
  const pid_t pid = permafrost::fork();
  if (pid == 0) ::_exit(permafrost::process_heap_stats().generation == 1 ? 0 : 1);
  int status = 0;
  ::waitpid(pid, &status, 0);
  expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child runs on a renewed heap");
#elif defined(PERMAFROST_CONSUMER_MALLOC)
  expect(provider.find("libpermafrost-malloc") != std::string::npos,
         "malloc is libpermafrost-malloc's");
  expect(permafrost::malloc_library_active(), "malloc_library_active()");
#elif defined(PERMAFROST_CONSUMER_SANITIZED)
  std::printf("skipped: the malloc checks (the sanitizer's runtime owns malloc)\n");
  expect(!mapped("mimalloc"), "no mimalloc is loaded");
#else
  expect(provider.find("libc.so") != std::string::npos, "permafrost::arena: malloc is glibc's");
  expect(!mapped("mimalloc"), "no mimalloc is loaded");
  const long vm_kib = status_kib("VmSize");
  std::printf("VmSize before the first arena: %ld KiB\n", vm_kib);
  expect(vm_kib > 0 && vm_kib < (4L << 20),
         "nothing is reserved before the first arena (VmSize < 4 GiB)");
  const struct mallinfo2 before = ::mallinfo2();
  void* volatile block = std::malloc(1000);
  expect(::mallinfo2().uordblks >= before.uordblks + 1000, "mallinfo2 counts a malloc");
  std::free(block);
#endif

  permafrost::arena a({.capacity = 1 << 20, .name = "consumer"});
  std::vector<int, permafrost::frozen_allocator<int>> v{permafrost::frozen_allocator<int>(a)};
  for (int i = 0; i < 100; ++i) v.push_back(i);
  const std::string_view s = a.copy("frozen");
#if defined(PERMAFROST_CONSUMER_MALLOC)
  std::string* routed = nullptr;
  {
    permafrost::arena_scope scope{a};
    routed = new std::string(64, 'x');
  }
  expect(a.contains(routed) && a.contains(routed->data()),
         "a arena_scope routes new into the arena");
#endif
  a.freeze();
  permafrost_arena* c = nullptr;
  expect(permafrost_arena_create(nullptr, &c) == 0, "the C API creates an arena");
  permafrost_arena_destroy(c);
  expect(permafrost::is_frozen(s.data()) && permafrost::is_frozen(v.data()) && v[99] == 99,
         "frozen data reads back");
  std::printf("consumer: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
