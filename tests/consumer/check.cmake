# Installs the build into a scratch prefix, then builds and runs tests/consumer against it, as a
# user's project would: with find_package(permafrost), one program per target, and with
# pkg-config, one program per .pc file. The prefix is moved after installing, so the .pc files
# must be relocatable. Run by ctest (consumer_find_package). In a sanitizer build (SANITIZE set)
# only permafrost::arena is checked: the sanitizer's runtime owns malloc there, so the heap's and
# the malloc library's promises about malloc cannot hold, and main.cpp skips its malloc checks.
file(REMOVE_RECURSE ${WORK_DIR})
set(installed ${WORK_DIR}/installed)
set(prefix ${WORK_DIR}/prefix)

function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${ARGN}:\n${out}")
endfunction()

run_step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${installed})
file(RENAME ${installed} ${prefix})
set(targets arena heap malloc permafrost)
# Each entry: the .pc file, then (after a comma) main.cpp's define for it.
set(pcs permafrost-arena permafrost-heap,-DPERMAFROST_CONSUMER_HEAP
        permafrost-malloc,-DPERMAFROST_CONSUMER_MALLOC permafrost,-DPERMAFROST_CONSUMER_MALLOC)
set(extra_flags "")
if(SANITIZE)
  set(targets arena)
  set(pcs permafrost-arena)
  set(extra_flags -fsanitize=${SANITIZE} -DPERMAFROST_CONSUMER_SANITIZED)
endif()
string(REPLACE ";" " " cxx_flags "${extra_flags}")
# The installed malloc library exports exactly its intended surface (check_exports.cmake). Not in a
# sanitizer build, whose instrumentation adds symbols of its own to every module.
if(SANITIZE)
  message(STATUS "skipped: the export table check (a sanitizer build instruments the library)")
else()
  file(GLOB_RECURSE malloc_library ${prefix}/*/libpermafrost-malloc.so)
  run_step(${CMAKE_COMMAND} -DLIBRARY=${malloc_library} -P ${SOURCE_DIR}/tests/consumer/check_exports.cmake)
endif()
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${prefix}
         -DCMAKE_CXX_COMPILER=${CXX} "-DCMAKE_CXX_FLAGS=${cxx_flags}")
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
foreach(target IN LISTS targets)
  run_step(${WORK_DIR}/build/consumer_${target})
endforeach()
if(NOT SANITIZE)
  run_step(${WORK_DIR}/build/consumer_libc_only)
endif()

file(GLOB_RECURSE pc_files ${prefix}/*/permafrost.pc)
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
get_filename_component(lib_dir ${pc_dir} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
foreach(pair IN LISTS pcs)
  string(REPLACE "," ";" pair "${pair}")
  list(GET pair 0 pc)
  list(LENGTH pair n)
  set(define "")
  if(n GREATER 1)
    list(GET pair 1 define)
  endif()
  execute_process(COMMAND pkg-config --cflags --libs ${pc} OUTPUT_VARIABLE flags RESULT_VARIABLE rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config ${pc} failed")
  endif()
  if(NOT flags MATCHES "-I${prefix}/")
    message(FATAL_ERROR "${pc}.pc does not point into the prefix it was moved to: ${flags}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run_step(${CXX} ${SOURCE_DIR}/tests/consumer/main.cpp ${define} ${extra_flags} ${flags} -Wl,-rpath,${lib_dir}
           -o ${WORK_DIR}/pc_${pc})
  run_step(${WORK_DIR}/pc_${pc})
endforeach()

# The C API from a C program: a C-only CMake project, and the C compiler with pkg-config (a C
# program takes the include path only: the Cflags also carry -std=c++20 for C++ programs). Both
# link the static library with the C compiler driver, which adds no C++ runtime by itself. Not
# in a sanitizer build (the C driver would need the sanitizer's C++ runtime parts too).
if(SANITIZE)
  message(STATUS "skipped: the C consumer (a sanitizer build)")
else()
  run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/c -B ${WORK_DIR}/build-c
           -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${CC})
  run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build-c)
  run_step(${WORK_DIR}/build-c/consumer_c)
  execute_process(COMMAND pkg-config --cflags-only-I --libs permafrost-arena OUTPUT_VARIABLE flags
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config permafrost-arena failed")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run_step(${CC} -std=c11 -Wall -Wextra -pedantic -Werror ${SOURCE_DIR}/tests/consumer/c/main.c
           ${flags} -o ${WORK_DIR}/pc_c)
  run_step(${WORK_DIR}/pc_c)
  # A program that calls no allocator still gets the malloc library from the .pc file's flags.
  execute_process(COMMAND pkg-config --cflags --libs permafrost-malloc OUTPUT_VARIABLE flags
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config permafrost-malloc failed")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run_step(${CXX} ${SOURCE_DIR}/tests/consumer/libc_only.cpp ${flags} -Wl,-rpath,${lib_dir}
           -o ${WORK_DIR}/pc_libc_only)
  run_step(${WORK_DIR}/pc_libc_only)
endif()
