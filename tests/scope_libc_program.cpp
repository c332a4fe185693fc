// A program linked with the malloc library whose C library is first used inside an arena_scope:
// stdio (printf, fprintf to a file, std::cout), the exit-handler list, pthread keys, the locale,
// iconv (a gconv module is loaded), the user database (NSS), qsort, dlopen and a thread - each
// makes the C runtime allocate for itself. Then the arena is frozen ("freeze") or destroyed
// ("destroy") and all of them are used again; at exit the atexit handlers run and stdout is
// flushed. test_malloc.cpp runs it with stdout on a pipe (so printf buffers) and checks every
// line arrives and the exit status is 0.
//
// Usage: scope_libc_program freeze|destroy FILE
#include <permafrost/arena.hpp>
#include <permafrost/arena_scope.hpp>

#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <iconv.h>
#include <iostream>
#include <map>
#include <memory>
#include <pthread.h>
#include <pwd.h>
#include <string>
#include <vector>

namespace {

constexpr int handlers = 40;  // more than the 32 of glibc's static exit-handler block
int g_handlers_run = 0;
void count_handler() { ++g_handlers_run; }
void last_handler() {  // registered first, so it runs last
  std::printf("atexit handlers run: %d\n", g_handlers_run);
}

constexpr int keys = 40;  // more than the 32 a thread's static key block holds
pthread_key_t g_keys[keys];

int compare(const void* a, const void* b) {
  return *static_cast<const int*>(a) - *static_cast<const int*>(b);
}

// Uses every part of the C runtime the program exercises; prints one line per part.
void use_the_c_runtime(const char* when, FILE* file) {
  std::printf("printf %s\n", when);
  std::cout << "cout " << when << "\n";
  std::fprintf(file, "fprintf %s\n", when);
  for (int i = 0; i < keys; ++i) (void)pthread_setspecific(g_keys[i], &g_keys[i]);
  std::printf("locale %s\n", std::setlocale(LC_ALL, "C.UTF-8") != nullptr ? "set" : "missing");
  iconv_t cd = iconv_open("UTF-8", "ISO-8859-15");  // a gconv module, loaded on first use
  char in[] = "\xa4";                               // the euro sign in ISO-8859-15
  char out[8] = {};
  char* inp = in;
  char* outp = out;
  std::size_t inn = 1, outn = sizeof out;
  const bool converted =
      cd != reinterpret_cast<iconv_t>(-1) && iconv(cd, &inp, &inn, &outp, &outn) != size_t(-1);
  if (cd != reinterpret_cast<iconv_t>(-1)) iconv_close(cd);
  std::printf("iconv %s\n", converted && std::strcmp(out, "\xe2\x82\xac") == 0 ? "ok" : "failed");
  const passwd* root = getpwnam("root");
  std::printf("getpwnam %s\n", root != nullptr && root->pw_uid == 0 ? "ok" : "failed");
  std::vector<int> v(20000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int>((i * 7919) % v.size());
  std::qsort(v.data(), v.size(), sizeof(int), compare);  // big enough for a temporary buffer
  std::printf("qsort %s\n", v[0] == 0 && v.back() == static_cast<int>(v.size()) - 1 ? "ok" : "bad");
  void* lib = dlopen("libresolv.so.2", RTLD_NOW);
  std::printf("dlopen %s\n", lib != nullptr ? "ok" : dlerror());
  pthread_t thread;
  const bool started = pthread_create(
                           &thread, nullptr, [](void*) -> void* { return nullptr; }, nullptr) == 0;
  std::printf("thread %s\n", started && pthread_join(thread, nullptr) == 0 ? "ok" : "failed");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "freeze") != 0 && std::strcmp(argv[1], "destroy") != 0)) {
    std::fprintf(stderr, "usage: scope_libc_program freeze|destroy FILE\n");
    return 2;
  }
  const bool destroy = std::strcmp(argv[1], "destroy") == 0;
  auto a = std::make_unique<permafrost::arena>(
      permafrost::arena_options{.capacity = std::size_t{256} << 20, .name = "scope-libc"});
  FILE* file = nullptr;
  const std::map<std::string, std::vector<int>>* data = nullptr;
  {
    permafrost::arena_scope scope(*a);
    std::atexit(last_handler);
    for (int i = 0; i < handlers; ++i) std::atexit(count_handler);
    for (int i = 0; i < keys; ++i) (void)pthread_key_create(&g_keys[i], nullptr);
    file = std::fopen(argv[2], "w");
    if (file == nullptr) return 3;
    use_the_c_runtime("inside the scope", file);
    // What the program itself allocates still lands in the arena.
    auto* m = new std::map<std::string, std::vector<int>>;
    for (int i = 0; i < 100; ++i)
      (*m)["a key long enough to be allocated " + std::to_string(i)] = {i};
    data = m;
  }
  const bool in_arena = a->contains(data) && a->contains(data->begin()->first.data());
  std::printf("program data in the arena: %s\n", in_arena ? "yes" : "no");
  if (destroy) {
    a.reset();
  } else {
    a->freeze();
  }
  use_the_c_runtime(destroy ? "after destroy" : "after freeze", file);
  std::fclose(file);
  std::printf("exit\n");
  return 0;  // the atexit handlers run, then stdout is flushed
}
