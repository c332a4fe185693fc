// permafrost — the common base of the library's exceptions.
//
// Every exception type the library defines is a permafrost::error and, as before, the standard
// exception that fits it:
//
//   frozen_error, freeze_check_error   std::logic_error    (arena.hpp)
//   arena_limit_error                  std::bad_alloc      (arena.hpp)
//   attach_error                       std::runtime_error  (arena.hpp)
//   image_error                        std::runtime_error  (image.hpp)
//   proc_error                         std::system_error   (memstat.hpp)
//
// so `catch (const permafrost::error&)` takes any of them, and every catch written against the
// standard bases keeps working. permafrost::error is deliberately not a std::exception itself:
// each type then has exactly one std::exception base, and `catch (const std::exception&)` is never
// ambiguous (with two such bases it would not match at all). Its what() is the standard base's.
//
// Thread safety: as std::exception - const members only, safe to read from any thread.
#pragma once

#include "permafrost/api.h"

namespace permafrost {

class PERMAFROST_API error {
 public:
  // The message: the same text as the standard base's what() (one override serves both).
  virtual const char* what() const noexcept = 0;
  virtual ~error() = default;

 protected:
  error() = default;
  error(const error&) = default;
  error& operator=(const error&) = default;
};

}  // namespace permafrost
