// permafrost — the always-on check's failure path.
#include <cstdlib>
#include <cstring>

#include "os/os.hpp"
#include "permafrost/detail/check.hpp"

namespace permafrost::detail {
namespace {

void put(const char* s) noexcept { (void)os::write_stderr(s, std::strlen(s)); }

}  // namespace

void check_failed(const char* message, const char* file, int line) noexcept {
  // Only the OS layer's write_stderr and abort(): this may run in a signal handler or with the heap
  // corrupted.
  char digits[16];
  int i = sizeof digits - 1;
  digits[i] = '\0';
  unsigned value = line > 0 ? static_cast<unsigned>(line) : 0u;
  do {
    digits[--i] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && i > 0);
  put("permafrost: ");
  put(message);
  put(" (");
  put(file);
  put(":");
  put(digits + i);
  put(")\n");
  std::abort();
}

}  // namespace permafrost::detail
