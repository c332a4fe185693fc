/* Built against the installed package as a C program (C11, -Wall -Wextra -pedantic -Werror), with
 * find_package(permafrost) in a C-only project and with pkg-config: proves the C API's header and
 * the static library are enough for a C program, which has no C++ runtime of its own. */
#include <permafrost/permafrost.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failed(const char* what, int rc) {
  fprintf(stderr, "consumer_c: %s: %d\n", what, rc);
  return 1;
}

int main(void) {
  permafrost_arena_options options;
  permafrost_arena* arena = NULL;
  char* text = NULL;
  void* more = NULL;
  int rc;
  permafrost_arena_options_init(&options);
  options.capacity = (size_t)1 << 20;
  options.name = "consumer-c";
  rc = permafrost_arena_create(&options, &arena);
  if (rc != 0) return failed("create", rc);
  rc = permafrost_arena_allocate(arena, 6, 1, (void**)&text);
  if (rc != 0) return failed("allocate", rc);
  memcpy(text, "hello", 6);
  rc = permafrost_arena_freeze(arena);
  if (rc != 0) return failed("freeze", rc);
  if (!permafrost_is_frozen(text) || !permafrost_arena_contains(arena, text))
    return failed("is_frozen", 0);
  rc = permafrost_arena_allocate(arena, 1, 1, &more);
  if (rc != EROFS) return failed("allocate after freeze (want EROFS)", rc);
  if (permafrost_arena_create(NULL, NULL) != EINVAL) return failed("create(NULL, NULL)", 0);
  permafrost_arena_destroy(arena);
  printf("consumer_c: %s\n", "ok");
  return 0;
}
