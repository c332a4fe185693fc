// permafrost — which code is the C runtime's (internal; compiled only into the malloc library).
//
// Inside an arena_scope the malloc library sends an allocation to the scope's arena only when the
// program asked for it. What the C library and the dynamic loader allocate for themselves - a
// stdio buffer, the exit-handler list, pthread key tables, locale and iconv data, NSS state, a
// loaded library's records, a new thread's TLS vector - is process-wide state that outlives any
// scope: in an arena it would be frozen under the C library's feet (the next printf dies of
// SIGSEGV) or unmapped with the arena (buffered output lost). The caller is told by the return
// address of the allocation call: code of libc.so.6, the dynamic loader or another glibc library
// (libm, libresolv, libnss_*, gconv modules, ...) is the C runtime; everything else (the
// program, libstdc++ - std::string grows from there -, any other library) is the program.
//
// Thread safety: is_c_runtime_code() is lock-free and may run in any thread, inside malloc, while
// another thread refreshes the map; refresh_code_map() serialises itself.
#pragma once

#include <cstdint>

namespace permafrost::detail {

// True when `address` lies in the executable code of the C runtime. An address in no object
// known yet (a library loaded since the last look) refreshes the map once per change of the
// loaded set; code in no loaded object at all (generated code) counts as the program's.
bool is_c_runtime_code(std::uintptr_t address) noexcept;

// Reads the loaded objects again if any was loaded or unloaded since the last look. Called when
// an arena_scope starts, so a scope's first allocations find the map current.
void refresh_code_map() noexcept;

}  // namespace permafrost::detail
