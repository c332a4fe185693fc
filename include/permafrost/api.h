/* permafrost — the export macro (C and C++).
 *
 * PERMAFROST_API marks a declaration as part of the library's binary interface. The library is
 * compiled with hidden visibility (-fvisibility=hidden), so libpermafrost-malloc.so exports what
 * carries the mark and nothing else (its version script, src/malloc/libpermafrost-malloc.map,
 * also keeps out the standard-library template instances the library uses). The static archives
 * carry the same marks: a program linking them sees no difference; a shared object linking them
 * exports only what is marked (link it with -Wl,--exclude-libs,ALL to export none of it).
 *
 * Marked: every public class and function the headers declare and the library defines, and the
 * few internals that inline fast paths in the headers reach (listed in docs/design.md, "The
 * binary surface").
 */
#ifndef PERMAFROST_API_H
#define PERMAFROST_API_H

#if defined(__GNUC__) || defined(__clang__)
#define PERMAFROST_API __attribute__((visibility("default")))
#else
#define PERMAFROST_API
#endif

#endif /* PERMAFROST_API_H */
