// permafrost — the write trap: a one-line report when code writes to a frozen arena.
//
// Contract: after install_write_trap(), a SIGSEGV with si_code SEGV_ACCERR whose address lies in
// a frozen arena of this process prints exactly one line to stderr,
//
//   permafrost: write to frozen arena "NAME" at offset N (address 0x...); allocation "TAG" +K of S
//   bytes at offset O
//
// (NAME and TAG with every control byte, '"' and backslash written as a backslash and three
// octal digits, as in /proc, so the report is one line whatever an image's path holds; the part
// after ';' says "no allocation log" when the arena keeps none, and "not inside a logged
// allocation" for padding; an arena with a write describer (set_write_describer) has the
// describer's text there instead, e.g. what object lives at that offset; a jump into frozen memory
// says "execution in frozen arena" instead of "write to", and "access to" where the CPU does not
// report the access type; a read(2) or other system call writing into frozen memory fails with
// EFAULT and raises no signal, so nothing is printed), then restores the default action and
// returns, so the write faults again and the process dies of SIGSEGV as it would have without the
// trap (core dump included). The handler uses only async-signal-safe calls (write(2), sigaction(2))
// and runs on the thread's alternate signal stack when it has one (SA_ONSTACK), so a write from a
// thread whose stack is nearly exhausted is still reported.
//
// Every other SIGSEGV goes to the handler that was installed before the trap, as the kernel would
// have delivered it: an SA_SIGINFO handler gets (sig, info, context), a plain handler gets (sig),
// both with their own sa_mask blocked (and the signal itself unless SA_NODEFER); SA_RESETHAND is
// honoured; SIG_DFL and SIG_IGN (which the kernel overrides for a fault) end in the default action.
// Install the trap after any handler it should chain to (sanitizer runtimes install theirs
// before main, so they are chained to).
//
// The allocation lookup is a binary search over the arena's allocation log, which is read without
// a lock. That is safe because the log is only consulted once the arena is frozen: freeze() takes
// the arena's lock, after which nothing appends to the log, and it publishes the frozen state with
// a release store that the handler's acquire load pairs with. Destroying the arena while another
// thread is writing into it is a use-after-free the trap cannot make safe.
//
// A write describer is read by the handler without a lock for the same reason: it is set before
// freeze() (set_write_describer refuses afterwards) and freeze() publishes it.
//
// Thread safety: install_write_trap() may be called from any thread, any number of times; the
// first call installs, later calls do nothing. describe_frozen_write() is async-signal-safe.
// set_write_describer() must not race freeze() or destruction of the same arena.
#pragma once

#include <cstddef>
#include <cstdint>

#include "permafrost/api.h"

namespace permafrost {

class arena;

// =============================================================================================
// Installation
// =============================================================================================

// Effects: installs the SIGSEGV handler described above, once per process (inherited by fork()).
// Throws: std::system_error if sigaction(2) fails.
PERMAFROST_API void install_write_trap();

// Effects: calls install_write_trap() when the environment variable PERMAFROST_TRAP is "1".
// Returns true when the trap is installed after the call. Never throws (an error is reported on
// stderr and false returned). For the malloc library's initialisation and for main().
PERMAFROST_API bool install_write_trap_from_env() noexcept;

// True once install_write_trap() has succeeded in this process (or its parent before fork()).
PERMAFROST_API bool write_trap_installed() noexcept;

// =============================================================================================
// The report
// =============================================================================================

// Effects: writes the report line for a write to `address` (without the trailing newline,
// NUL-terminated, truncated to fit) into buf[0, size) and returns its length, or returns 0 when
// `address` is not in a frozen arena of this process. Async-signal-safe, allocates nothing.
PERMAFROST_API std::size_t describe_frozen_write(const void* address, char* buf,
                                                 std::size_t size) noexcept;

// =============================================================================================
// Naming what was written
// =============================================================================================

// Names what lives at `offset` of a frozen arena, for the report line: writes text (no newline)
// into buf[0, size), NUL-terminated and truncated to fit, and returns its length; 0 means
// "nothing to say" and the report keeps its allocation-log part. It is called from the SIGSEGV
// handler, so it must be async-signal-safe (no allocation, lock or stdio) and may read only
// memory that stays valid and unchanged while the arena lives: the frozen bytes themselves, and
// tables that were complete before freeze() and are never changed or freed.
using write_describer = std::size_t (*)(const void* context, std::size_t offset, char* buf,
                                        std::size_t size) noexcept;

// Appends text and numbers to a fixed buffer, truncating; always leaves it NUL-terminated.
// Async-signal-safe: the trap's own report is written with it, and describers may use it.
class report_text {
 public:
  report_text(char* buf, std::size_t size) noexcept : buf_(buf), size_(size) {
    if (size_ > 0) buf_[0] = '\0';
  }

  report_text& text(const char* s) noexcept {
    while (*s != '\0') put(*s++);
    return *this;
  }

  report_text& decimal(std::uint64_t v) noexcept {
    char digits[20];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0) put(digits[--n]);
    return *this;
  }

  report_text& hex(std::uintptr_t v) noexcept {
    text("0x");
    bool started = false;
    for (int shift = static_cast<int>(sizeof v * 8) - 4; shift >= 0; shift -= 4) {
      const unsigned nibble = static_cast<unsigned>(v >> shift) & 0xfu;
      if (nibble == 0 && !started && shift != 0) continue;
      started = true;
      put("0123456789abcdef"[nibble]);
    }
    return *this;
  }

  std::size_t length() const noexcept { return len_; }

 private:
  void put(char c) noexcept {
    if (len_ + 1 >= size_) return;
    buf_[len_++] = c;
    buf_[len_] = '\0';
  }

  char* buf_;
  std::size_t size_;
  std::size_t len_ = 0;
};

// Effects: the report of a write into `a` ends with describer(context, offset, ...)'s text in
// place of the allocation-log part ("...(address 0x...); TEXT"). nullptr removes it. For owners
// of an arena that know its layout better than the allocation log can (the Python package names
// the CPython object at the offset).
// Throws: frozen_error after freeze() (the handler reads the describer without a lock).
void set_write_describer(arena& a, write_describer describer, const void* context);

}  // namespace permafrost
