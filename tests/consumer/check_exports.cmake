# The binary surface of libpermafrost-malloc.so: every symbol `nm -D --defined-only` lists must be
# one the library means to export, and each of those must be there. Run by check.cmake on the
# installed library (cmake -DLIBRARY=<path> -P check_exports.cmake).
#
# Exported, and nothing else (docs/design.md, "The binary surface"):
#   - the C allocation API the library replaces, and every form of operator new and delete;
#   - the C API (permafrost_*), with the two markers found by dlsym (permafrost_malloc_library,
#     permafrost_heap_instance);
#   - the public C++ API: permafrost:: names outside permafrost::detail and permafrost::os, with
#     the typeinfo and vtables of its exception classes;
#   - the internals that inline code in the public headers calls or reads, listed in
#     `inline_internals` below with the header that needs each.
if(NOT LIBRARY)
  message(FATAL_ERROR "check_exports.cmake: pass -DLIBRARY=<path to libpermafrost-malloc.so>")
endif()
find_program(NM nm REQUIRED)

# Internals an inline function of a public header reaches: exported on purpose.
set(inline_internals
  "permafrost::detail::t_bump"             # detail/arena_fast_path.hpp: try_bump (arena::allocate)
  "permafrost::detail::g_address_space"    # detail/arena_fast_path.hpp: granule_of (is_frozen)
  "permafrost::detail::allocate_slow("     # detail/arena_fast_path.hpp: allocate's slow path
  "permafrost::detail::check_failed("      # detail/check.hpp: PERMAFROST_CHECK in the containers
  "permafrost::detail::heap_allocate("     # heap.hpp: process_allocator<T>::allocate
  "permafrost::detail::heap_free("         # heap.hpp: process_allocator<T>::deallocate
  "permafrost::detail::share_anchor("      # ref.hpp: share(p)
  "permafrost::detail::save_image("        # image.hpp: save_image<T>
)
# A few names each part of the surface must still have (the check must not pass on an empty table).
set(required
  "malloc" "free" "realloc" "posix_memalign" "malloc_usable_size" "__libc_malloc" "cfree"
  "operator new(unsigned long)" "operator delete(void*)"
  "permafrost_arena_create" "permafrost_is_frozen" "permafrost_malloc_library"
  "permafrost_heap_instance"
  "permafrost::arena::freeze()" "permafrost::fork()" "permafrost::process_heap()"
  "typeinfo for permafrost::frozen_error" "typeinfo for permafrost::image_error"
  ${inline_internals})

# Every function of the C API, as permafrost.h declares it.
file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/../../include/permafrost/permafrost.h c_api
     REGEX "^PERMAFROST_API [a-z_ ]+ \\*?permafrost_[a-z_]+\\(")
list(TRANSFORM c_api REPLACE "^.* \\*?(permafrost_[a-z_]+)\\(.*$" "\\1")
list(LENGTH c_api c_api_count)
if(c_api_count LESS 10)
  message(FATAL_ERROR "check_exports.cmake: found only ${c_api_count} functions in permafrost.h")
endif()
list(APPEND required ${c_api})

execute_process(COMMAND ${NM} -D --defined-only -C ${LIBRARY}
                OUTPUT_VARIABLE table RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm -D failed on ${LIBRARY}")
endif()
string(REPLACE "\n" ";" lines "${table}")

set(c_allocation "^(malloc|free|calloc|realloc|reallocarray|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|malloc_usable_size|__libc_(malloc|calloc|realloc|free|cfree|memalign|valloc|pvalloc)|__posix_memalign|cfree|vfree|_aligned_malloc|reallocf|reallocarr|malloc_size|malloc_good_size)$")
set(names "")
set(unexpected "")
set(internal_count 0)
foreach(line IN LISTS lines)
  if(NOT line MATCHES "^[0-9a-f]+ [A-Za-z] (.+)$")
    continue()
  endif()
  set(name "${CMAKE_MATCH_1}")
  list(APPEND names "${name}")
  set(ok FALSE)
  if(name MATCHES "${c_allocation}" OR name MATCHES "^permafrost_[a-z_]+$"
     OR name MATCHES "^operator (new|delete)(\\[\\])?\\(")
    set(ok TRUE)
  elseif(name MATCHES "^((typeinfo|typeinfo name|vtable) for )?permafrost::(detail|os)::")
    math(EXPR internal_count "${internal_count} + 1")
    foreach(allowed IN LISTS inline_internals)
      string(FIND "${name}" "${allowed}" at)
      if(at EQUAL 0)
        set(ok TRUE)
      endif()
    endforeach()
  elseif(name MATCHES "^((typeinfo|typeinfo name|vtable) for )?permafrost::")
    set(ok TRUE)
  endif()
  if(NOT ok)
    list(APPEND unexpected "${name}")
  endif()
endforeach()

set(missing "")
foreach(want IN LISTS required)
  set(found FALSE)
  foreach(name IN LISTS names)
    string(FIND "${name}" "${want}" at)
    if(at EQUAL 0)
      set(found TRUE)
      break()
    endif()
  endforeach()
  if(NOT found)
    list(APPEND missing "${want}")
  endif()
endforeach()

list(LENGTH names total)
if(unexpected OR missing)
  list(JOIN unexpected "\n  " unexpected_text)
  list(JOIN missing "\n  " missing_text)
  message(FATAL_ERROR "libpermafrost-malloc.so exports what it should not, or lacks what it "
          "should (${total} symbols):\nunexpected:\n  ${unexpected_text}\nmissing:\n  "
          "${missing_text}\nSee include/permafrost/api.h and src/malloc/libpermafrost-malloc.map.")
endif()
message(STATUS "libpermafrost-malloc.so exports ${total} symbols, all intended; "
        "${internal_count} of them internals that inline fast paths reach")
