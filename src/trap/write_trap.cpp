// permafrost — the write trap (contract in include/permafrost/write_trap.hpp).
//
// Everything reachable from the signal handler is async-signal-safe: no allocation, no locks, no
// stdio; only loads from the static arena table and the OS layer's write_stderr, signal action,
// mask and raise calls.
#include "permafrost/write_trap.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <type_traits>

#include "arena/arena_slot.hpp"
#include "os/os.hpp"

namespace permafrost {

// arena_slot.hpp spells the describer type out (it cannot include this layer); keep them one.
static_assert(std::is_same_v<decltype(detail::arena_slot::describer), write_describer>);

namespace {

std::size_t describe_frozen_access(const void* address, os::fault_access access, char* buf,
                                   std::size_t size) noexcept;

// The disposition the trap replaced. Written once, before the trap is installed; read only by
// the handler afterwards.
struct sigaction g_previous {};
std::atomic<bool> g_installed{false};

// The frozen arena whose read-only range holds `address`, or nullptr. Lock-free.
const detail::arena_slot* frozen_slot_of(const void* address) noexcept {
  const detail::arena_slot* slot = detail::slot_of(address);
  if (slot == nullptr || !slot->frozen.load(std::memory_order_acquire)) return nullptr;
  // After freeze base and committed_end no longer change; the acquire above orders these reads.
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  if (a < slot->base || a >= slot->committed_end) return nullptr;  // reserved, never accessible
  return slot;
}

// The logged allocation holding `offset`, or nullptr: a binary search over a log that is sorted
// by offset and no longer appended to (the arena is frozen; see the header).
const allocation_record* logged_allocation(const detail::arena_slot* slot,
                                           std::size_t offset) noexcept {
  const allocation_record* first = slot->log.data();
  std::size_t count = slot->log.size();
  // Find the last record whose offset is <= `offset`.
  const allocation_record* found = nullptr;
  while (count > 0) {
    const std::size_t half = count / 2;
    const allocation_record* mid = first + half;
    if (mid->offset <= offset) {
      found = mid;
      first = mid + 1;
      count -= half + 1;
    } else {
      count = half;
    }
  }
  if (found == nullptr || offset - found->offset >= found->size) return nullptr;
  return found;
}

void restore_default(int sig) noexcept { (void)os::reset_signal_action(sig); }

// Delivers the fault to the disposition the trap replaced, as the kernel would have.
void chain(int sig, siginfo_t* info, void* context) noexcept {
  const struct sigaction& prev = g_previous;
  const bool has_info = (prev.sa_flags & SA_SIGINFO) != 0;
  if (!has_info && (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN)) {
    // The kernel overrides SIG_IGN for a synchronous fault: both end in the default action once
    // the faulting instruction runs again. (A SIGSEGV sent with kill(2) under SIG_IGN would have
    // been dropped: raise it again with the default action instead of dying.)
    if (prev.sa_handler == SIG_IGN && info != nullptr && info->si_code <= 0) return;
    restore_default(sig);
    if (info != nullptr && info->si_code <= 0) (void)os::raise_signal(sig);
    return;
  }
  if (has_info && prev.sa_sigaction == nullptr) {
    restore_default(sig);
    return;
  }
  if ((prev.sa_flags & SA_RESETHAND) != 0) restore_default(sig);
  sigset_t old;
  sigset_t during;
  (void)os::set_signal_mask(SIG_SETMASK, nullptr, &old);
  during = old;
  for (int s = 1; s < NSIG; ++s) {
    if (sigismember(&prev.sa_mask, s) == 1) sigaddset(&during, s);
  }
  if ((prev.sa_flags & SA_NODEFER) != 0) {
    sigdelset(&during, sig);
  } else {
    sigaddset(&during, sig);
  }
  (void)os::set_signal_mask(SIG_SETMASK, &during, nullptr);
  if (has_info) {
    prev.sa_sigaction(sig, info, context);
  } else {
    prev.sa_handler(sig);
  }
  (void)os::set_signal_mask(SIG_SETMASK, &old, nullptr);
}

void on_segv(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  if (info != nullptr && info->si_code == SEGV_ACCERR) {
    char line[320];
    const std::size_t n =
        describe_frozen_access(info->si_addr, os::fault_access_of(context), line, sizeof line - 1);
    if (n > 0) {
      line[n] = '\n';
      (void)os::write_stderr(line, n + 1);
      // Returning re-runs the write, which now takes the default action: death by SIGSEGV.
      restore_default(sig);
      errno = saved_errno;
      return;
    }
  }
  chain(sig, info, context);
  errno = saved_errno;
}

}  // namespace

namespace {

// Appends `s` with every control byte, '"' and '\\' written as a backslash and three octal
// digits (as /proc and permafrost-stat do), so a name holding a newline (an image opened from
// such a path) keeps the report on one line and cannot end its quotes. Other bytes as they are.
void quoted(report_text& out, const char* s) noexcept {
  for (; *s != '\0'; ++s) {
    const auto c = static_cast<unsigned char>(*s);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      const char escaped[] = {'\\', static_cast<char>('0' + (c >> 6)),
                              static_cast<char>('0' + ((c >> 3) & 7)),
                              static_cast<char>('0' + (c & 7)), '\0'};
      out.text(escaped);
    } else {
      const char plain[] = {*s, '\0'};
      out.text(plain);
    }
  }
}

// The report line, with the verb the fault's access type calls for.
std::size_t describe_frozen_access(const void* address, os::fault_access access, char* buf,
                                   std::size_t size) noexcept {
  if (buf == nullptr || size == 0) return 0;
  const detail::arena_slot* slot = frozen_slot_of(address);
  if (slot == nullptr) {
    buf[0] = '\0';
    return 0;
  }
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  const std::size_t offset = a - slot->base;
  report_text out(buf, size);
  // A read of the frozen range cannot fault (it is readable), so "access" is what remains when
  // the architecture does not say.
  const char* what = access == os::fault_access::execute   ? "execution in"
                     : access == os::fault_access::unknown ? "access to"
                                                           : "write to";
  out.text("permafrost: ").text(what).text(" frozen arena \"");
  quoted(out, slot->name);
  out.text("\" at offset ");
  out.decimal(offset).text(" (address ").hex(a).text("); ");
  // The describer writes straight into the rest of the buffer; on 0 the log part follows.
  if (slot->describer != nullptr) {
    const std::size_t used = out.length();
    const std::size_t n = slot->describer(slot->describer_context, offset, buf + used, size - used);
    if (n > 0 && used + n < size) return used + n;
    buf[used] = '\0';
  }
  if (!slot->log_allocations) {
    out.text("no allocation log");
  } else if (const allocation_record* r = logged_allocation(slot, offset)) {
    out.text("allocation \"");
    quoted(out, r->tag != nullptr ? r->tag : "(untagged)");
    out.text("\" +");
    out.decimal(offset - r->offset).text(" of ").decimal(r->size).text(" bytes at offset ");
    out.decimal(r->offset);
  } else {
    out.text("not inside a logged allocation");
  }
  return out.length();
}

}  // namespace

void install_write_trap() {
  static std::mutex mu;
  std::lock_guard lock(mu);
  if (g_installed.load(std::memory_order_acquire)) return;
  // Read the old disposition first, so it is in place before the handler can run.
  if (const int err = os::set_signal_action(SIGSEGV, nullptr, &g_previous); err != 0)
    throw std::system_error(err, std::generic_category(), "permafrost: sigaction(SIGSEGV)");
  struct sigaction trap {};
  trap.sa_sigaction = on_segv;
  trap.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&trap.sa_mask);
  if (const int err = os::set_signal_action(SIGSEGV, &trap, nullptr); err != 0)
    throw std::system_error(err, std::generic_category(), "permafrost: sigaction(SIGSEGV)");
  g_installed.store(true, std::memory_order_release);
}

bool install_write_trap_from_env() noexcept {
  const char* value = nullptr;
  if (os::environment("PERMAFROST_TRAP", &value) == 0 && std::strcmp(value, "1") == 0) {
    try {
      install_write_trap();
    } catch (...) {
      static const char msg[] =
          "permafrost: PERMAFROST_TRAP=1 but the write trap failed to install\n";
      (void)os::write_stderr(msg, sizeof msg - 1);
    }
  }
  return write_trap_installed();
}

std::size_t describe_frozen_write(const void* address, char* buf, std::size_t size) noexcept {
  return describe_frozen_access(address, os::fault_access::write, buf, size);
}

bool write_trap_installed() noexcept { return g_installed.load(std::memory_order_acquire); }

void set_write_describer(arena& a, write_describer describer, const void* context) {
  PERMAFROST_CHECK(a.core() != &detail::g_dead_arena,
                   "use of a moved-from or destroyed permafrost::arena");
  auto* slot = static_cast<detail::arena_slot*>(a.core());
  std::lock_guard lock(slot->mu);
  if (slot->frozen.load(std::memory_order_relaxed))
    throw frozen_error(std::string("permafrost::arena '") + slot->name +
                       "': set_write_describer after freeze()");
  slot->describer = describer;
  slot->describer_context = context;
}

}  // namespace permafrost
