// The write trap: the report line, death by SIGSEGV, chaining to earlier handlers, the alternate
// signal stack, PERMAFROST_TRAP. The trap is only ever installed in forked children, so the test
// process itself keeps its own (and its sanitizer's) SIGSEGV disposition.
#include <doctest/doctest.h>

#include <permafrost/arena.hpp>
#include <permafrost/permafrost.h>
#include <permafrost/write_trap.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <pthread.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arenas.hpp"
#include "fork_probe.hpp"

using permafrost::arena;
using permafrost::arena_options;
using permafrost::test::run_capturing_stderr;

namespace {

arena_options opts(const char* name, bool log) {
  return permafrost::test::arena_options_for(name, {.small_pages = true, .log = log});
}

bool killed_by(int status, int sig) { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

std::string describe(const void* p) {
  char buf[320];
  const std::size_t n = permafrost::describe_frozen_write(p, buf, sizeof buf);
  return std::string(buf, n);
}

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%#lx",
                static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(p)));
  return buf;
}

void poke(void* p) { *static_cast<volatile char*>(p) = 1; }

// A page of the child's own that is read-only but in no arena.
void* foreign_read_only_page() {
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) ::_exit(90);
  return p;
}

}  // namespace

TEST_CASE("the report names the arena, the offset, the allocation's tag and the offset inside it") {
  arena a(opts("catalog", true));
  auto* head = static_cast<char*>(a.allocate(100, 16, "header"));
  auto* rows = static_cast<char*>(a.allocate(4000, 64, "rows"));
  auto* untagged = static_cast<char*>(a.allocate(10, 1));
  CHECK(describe(rows) == "");  // not frozen yet
  a.freeze();

  const std::size_t rows_offset = rows - head;
  CHECK(describe(rows + 5) == "permafrost: write to frozen arena \"catalog\" at offset " +
                                  std::to_string(rows_offset + 5) + " (address " + hex(rows + 5) +
                                  "); allocation \"rows\" +5 of 4000 bytes at offset " +
                                  std::to_string(rows_offset));
  CHECK(describe(head).find("allocation \"header\" +0 of 100 bytes at offset 0") !=
        std::string::npos);
  CHECK(describe(head + 99).find("\"header\" +99 of 100") != std::string::npos);
  CHECK(describe(untagged + 9).find("allocation \"(untagged)\" +9 of 10 bytes") !=
        std::string::npos);
  // The alignment padding between header and rows belongs to no allocation.
  CHECK(describe(head + 100).find("; not inside a logged allocation") != std::string::npos);
  // Past the last allocation, on the same read-only page.
  CHECK(describe(untagged + 10).find("; not inside a logged allocation") != std::string::npos);

  int on_stack = 0;
  CHECK(describe(&on_stack) == "");
  CHECK(describe(nullptr) == "");

  // A short buffer truncates and stays NUL-terminated.
  char tiny[12];
  CHECK(permafrost::describe_frozen_write(rows, tiny, sizeof tiny) == sizeof tiny - 1);
  CHECK(std::string(tiny) == "permafrost:");
}

TEST_CASE("without an allocation log the report says so") {
  arena a(opts("plain", false));
  auto* p = static_cast<char*>(a.allocate(64));
  a.freeze();
  const std::string line = describe(p + 8);
  CHECK(line.rfind("permafrost: write to frozen arena \"plain\" at offset 8 (address ", 0) == 0);
  CHECK(line.ends_with("); no allocation log"));
}

TEST_CASE("a name or tag holding a newline or a quote is escaped: the report stays one line") {
  // An image opened from a path holding a newline (its arena name is "image PATH") printed a
  // report of two lines, the second free text; a quote ended the name's quotes early.
  arena a(opts("two\nlines \"q\" \\", true));
  auto* p = static_cast<char*>(a.allocate(64, 8, "tag\r\n"));
  a.freeze();
  const std::string line = describe(p + 1);
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.find('\r') == std::string::npos);
  CHECK(line.find("frozen arena \"two\\012lines \\042q\\042 \\134\" at offset 1") !=
        std::string::npos);
  CHECK(line.ends_with("allocation \"tag\\015\\012\" +1 of 64 bytes at offset 0"));
}

TEST_CASE("a trapped write prints exactly one line, then the process dies of SIGSEGV") {
  arena a(opts("catalog", true));
  (void)a.allocate(24, 8, "header");
  auto* rows = static_cast<char*>(a.allocate(256, 8, "rows"));
  a.freeze();
  const std::string expected = describe(rows + 17) + "\n";
  REQUIRE(expected.size() > 1);

  const auto child = run_capturing_stderr([&] {
    permafrost::install_write_trap();
    if (!permafrost::write_trap_installed()) ::_exit(91);
    poke(rows + 17);
    ::_exit(92);  // not reached: the write must kill us
  });
  CHECK(killed_by(child.status, SIGSEGV));
  CHECK(child.stderr_text == expected);
  CHECK(rows[17] == 0);
}

namespace {
// A describer for the tests: names the 16-byte cell of the offset, or says nothing past 64.
std::size_t describe_cell(const void* context, std::size_t offset, char* buf,
                          std::size_t size) noexcept {
  if (offset >= 64) return 0;
  const int n =
      std::snprintf(buf, size, "%s cell %zu", static_cast<const char*>(context), offset / 16);
  return n < 0 ? 0 : std::min(static_cast<std::size_t>(n), size - 1);
}
}  // namespace

TEST_CASE("a write describer names what lives at the offset instead of the allocation log") {
  arena a(opts("cells", true));
  auto* p = static_cast<char*>(a.allocate(128, 16, "cells"));
  static const char label[] = "test";
  permafrost::set_write_describer(a, describe_cell, label);
  a.freeze();
  CHECK(describe(p + 37).ends_with("); test cell 2"));
  // The describer has nothing to say past 64 bytes: the allocation log speaks.
  CHECK(describe(p + 70).ends_with("); allocation \"cells\" +70 of 128 bytes at offset 0"));
  // A short buffer still truncates and stays NUL-terminated.
  char tiny[12];
  CHECK(permafrost::describe_frozen_write(p + 37, tiny, sizeof tiny) == sizeof tiny - 1);
  CHECK(std::string(tiny) == "permafrost:");
  // After freeze the describer can no longer change: the handler reads it without a lock.
  CHECK_THROWS_AS(permafrost::set_write_describer(a, nullptr, nullptr), permafrost::frozen_error);

  const std::string expected = describe(p + 5) + "\n";
  const auto child = run_capturing_stderr([&] {
    permafrost::install_write_trap();
    poke(p + 5);
    ::_exit(92);  // not reached
  });
  CHECK(killed_by(child.status, SIGSEGV));
  CHECK(child.stderr_text == expected);
  CHECK(expected.ends_with("); test cell 0\n"));
}

TEST_CASE("installing the trap twice installs it once; the C API installs it too") {
  arena a(opts("twice", false));
  auto* p = static_cast<char*>(a.allocate(8));
  a.freeze();
  const auto child = run_capturing_stderr([&] {
    permafrost::install_write_trap();
    permafrost::install_write_trap();
    if (permafrost_install_write_trap() != 0) ::_exit(91);
    poke(p);
  });
  CHECK(killed_by(child.status, SIGSEGV));
  CHECK(child.stderr_text == describe(p) + "\n");
}

namespace {

volatile sig_atomic_t g_usr1_blocked = -1;

void previous_siginfo_handler(int sig, siginfo_t* info, void*) {
  sigset_t now;
  sigprocmask(SIG_SETMASK, nullptr, &now);
  g_usr1_blocked = sigismember(&now, SIGUSR1);
  const bool segv_blocked = sigismember(&now, SIGSEGV) == 1;
  // Exit codes carry what the handler saw: 40 + 1 (right signal) + 2 (si_code is a fault code)
  // + 4 (its sa_mask is blocked) + 8 (SIGSEGV itself blocked, no SA_NODEFER).
  ::_exit(40 + (sig == SIGSEGV) + 2 * (info != nullptr && info->si_code > 0) +
          4 * (g_usr1_blocked == 1) + 8 * segv_blocked);
}

void previous_plain_handler(int sig) { ::_exit(sig == SIGSEGV ? 70 : 71); }

void install_previous(bool siginfo, int extra_flags = 0) {
  struct sigaction sa {};
  if (siginfo) {
    sa.sa_sigaction = previous_siginfo_handler;
    sa.sa_flags = SA_SIGINFO | extra_flags;
  } else {
    sa.sa_handler = previous_plain_handler;
    sa.sa_flags = extra_flags;
  }
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGUSR1);
  if (sigaction(SIGSEGV, &sa, nullptr) != 0) ::_exit(93);
}

}  // namespace

TEST_CASE("a fault outside frozen arenas reaches the previous SA_SIGINFO handler with its mask") {
  const auto child = run_capturing_stderr([] {
    install_previous(true);
    permafrost::install_write_trap();
    poke(foreign_read_only_page());  // SEGV_ACCERR, but no arena
  });
  CHECK(exited_with(child.status, 40 + 1 + 2 + 4 + 8));
  CHECK(child.stderr_text.empty());
}

TEST_CASE("SA_NODEFER of the previous handler leaves SIGSEGV unblocked in it") {
  const auto child = run_capturing_stderr([] {
    install_previous(true, SA_NODEFER);
    permafrost::install_write_trap();
    poke(foreign_read_only_page());
  });
  CHECK(exited_with(child.status, 40 + 1 + 2 + 4));
}

TEST_CASE("a null-pointer write reaches the previous plain handler") {
  const auto child = run_capturing_stderr([] {
    install_previous(false);
    permafrost::install_write_trap();
    char* volatile null_page = nullptr;  // volatile: the compiler may not reason the write away
    poke(null_page + 16);                // SEGV_MAPERR
  });
  CHECK(exited_with(child.status, 70));
  CHECK(child.stderr_text.empty());
}

TEST_CASE("a reserved but never committed arena byte is not reported as a frozen write") {
  arena a(opts("reserved", true));
  auto* p = static_cast<char*>(a.allocate(8, 8, "one"));
  a.freeze();
  char* beyond = p + (std::size_t{8} << 20);  // inside the reservation, inaccessible
  CHECK(describe(beyond) == "");
  const auto child = run_capturing_stderr([&] {
    install_previous(false);
    permafrost::install_write_trap();
    poke(beyond);
  });
  CHECK(exited_with(child.status, 70));
}

TEST_CASE("a frozen write is reported even when another handler was installed first") {
  arena a(opts("layered", true));
  auto* p = static_cast<char*>(a.allocate(32, 8, "cell"));
  a.freeze();
  const auto child = run_capturing_stderr([&] {
    install_previous(true);
    permafrost::install_write_trap();
    poke(p + 3);
  });
  CHECK(killed_by(child.status, SIGSEGV));  // the previous handler (exit 40+) was not called
  CHECK(child.stderr_text == describe(p + 3) + "\n");
}

TEST_CASE("with SIG_IGN or SIG_DFL before it, a foreign fault still kills by SIGSEGV, silently") {
  for (auto disposition : {SIG_IGN, SIG_DFL}) {
    const auto child = run_capturing_stderr([&] {
      std::signal(SIGSEGV, disposition);
      permafrost::install_write_trap();
      poke(foreign_read_only_page());
    });
    CHECK(killed_by(child.status, SIGSEGV));
    CHECK(child.stderr_text.empty());
  }
}

namespace {

struct deep_write {
  char* target = nullptr;
  bool alt_stack = false;
  char* stack_low = nullptr;
};

// Recurses until less than 1 KiB of the thread's stack is left (too little for the kernel to
// push a signal frame with the CPU's extended state), then writes to frozen memory.
[[gnu::noinline]] int descend(deep_write* job, int depth) {
  volatile char pad[192];
  pad[0] = static_cast<char>(depth);
  const auto here = reinterpret_cast<char*>(__builtin_frame_address(0));
  if (here - job->stack_low > 1024) {
    const int below = descend(job, depth + 1);
    return below + pad[0];  // used after the call: no tail call
  }
  *static_cast<volatile char*>(job->target) = 1;
  return pad[0];
}

void* deep_thread(void* arg) {
  auto* job = static_cast<deep_write*>(arg);
  if (job->alt_stack) {
    stack_t ss{};
    ss.ss_size = 64 << 10;
    ss.ss_sp =
        ::mmap(nullptr, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ss.ss_sp == MAP_FAILED || sigaltstack(&ss, nullptr) != 0) ::_exit(94);
  }
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) ::_exit(95);
  void* low = nullptr;
  std::size_t size = 0;
  pthread_attr_getstack(&attr, &low, &size);
  pthread_attr_destroy(&attr);
  job->stack_low = static_cast<char*>(low);
  return reinterpret_cast<void*>(static_cast<std::intptr_t>(descend(job, 0)));
}

permafrost::test::child_output deep_recursion_write(char* target, bool alt_stack) {
  return run_capturing_stderr([=] {
    permafrost::install_write_trap();
    deep_write job{target, alt_stack, nullptr};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    pthread_t t;
    if (pthread_create(&t, &attr, deep_thread, &job) != 0) ::_exit(96);
    pthread_join(t, nullptr);
  });
}

}  // namespace

TEST_CASE("a write from a thread with its stack nearly exhausted is reported on its sigaltstack") {
  arena a(opts("deep", true));
  auto* p = static_cast<char*>(a.allocate(64, 8, "leaf"));
  a.freeze();
  const auto with_alt = deep_recursion_write(p + 1, true);
  CHECK(killed_by(with_alt.status, SIGSEGV));
  CHECK(with_alt.stderr_text == describe(p + 1) + "\n");
}

// Skipped under a sanitizer: its runtime gives every thread an alternate signal stack of its own,
// so there is no "without" case to observe.
TEST_CASE("control: the same write without a sigaltstack dies unreported (the test is sensitive)" *
          doctest::skip(permafrost::test::under_sanitizer)) {
  arena a(opts("deep", true));
  auto* p = static_cast<char*>(a.allocate(64, 8, "leaf"));
  a.freeze();
  const auto without = deep_recursion_write(p + 1, false);
  CHECK(killed_by(without.status, SIGSEGV));
  CHECK(without.stderr_text.empty());
}

TEST_CASE("PERMAFROST_TRAP=1 installs the trap; any other value does not") {
  arena a(opts("env", false));
  auto* p = static_cast<char*>(a.allocate(8));
  a.freeze();
  const auto on = run_capturing_stderr([&] {
    ::setenv("PERMAFROST_TRAP", "1", 1);
    if (!permafrost::install_write_trap_from_env()) ::_exit(97);
    if (permafrost_install_write_trap_from_env() != 1) ::_exit(98);
    poke(p);
  });
  CHECK(killed_by(on.status, SIGSEGV));
  CHECK(on.stderr_text == describe(p) + "\n");

  const auto off = run_capturing_stderr([&] {
    ::setenv("PERMAFROST_TRAP", "0", 1);
    if (permafrost::install_write_trap_from_env()) ::_exit(97);
    poke(p);
  });
  CHECK(killed_by(off.status, SIGSEGV));
  CHECK(off.stderr_text.empty());
}

TEST_CASE("a write to a frozen memfd arena is reported the same way") {
  arena_options o = opts("shared", true);
  o.backing = permafrost::backing::memfd;
  arena a(o);
  auto* p = static_cast<char*>(a.allocate(128, 8, "blob"));
  a.freeze();
  const auto child = run_capturing_stderr([&] {
    permafrost::install_write_trap();
    poke(p + 100);
  });
  CHECK(killed_by(child.status, SIGSEGV));
  CHECK(child.stderr_text == describe(p + 100) + "\n");
  CHECK(child.stderr_text.find("allocation \"blob\" +100 of 128 bytes") != std::string::npos);
}

TEST_CASE("executing frozen memory is reported as execution, not as a write") {
  arena a(opts("code", false));
  auto* code = static_cast<unsigned char*>(a.allocate(16, 16));
  code[0] = 0xc3;  // x86-64 `ret`; on other architectures the fetch faults before decoding
  a.freeze();
  const auto child = run_capturing_stderr([&] {
    permafrost::install_write_trap();
    reinterpret_cast<void (*)()>(reinterpret_cast<std::uintptr_t>(code))();
    ::_exit(92);  // not reached: frozen memory is not executable
  });
  INFO(child.stderr_text);
  CHECK(killed_by(child.status, SIGSEGV));
#if defined(__x86_64__)
  CHECK(child.stderr_text.rfind("permafrost: execution in frozen arena \"code\" at offset 0 (",
                                0) == 0);
#else
  MESSAGE("this architecture does not report the access type: the report says \"access to\"");
  CHECK(child.stderr_text.rfind("permafrost: access to frozen arena \"code\" at offset 0 (", 0) ==
        0);
#endif
  CHECK(child.stderr_text.find("write to") == std::string::npos);
}

TEST_CASE(
    "read(2) into frozen memory fails with EFAULT: no signal, no trap line, bytes unchanged") {
  arena a(opts("syscall", false));
  char* buf = static_cast<char*>(a.allocate(64, 1));
  std::memcpy(buf, "frozen", 7);
  a.freeze();
  const auto child = run_capturing_stderr([&] {
    permafrost::install_write_trap();
    int fds[2];
    if (::pipe(fds) != 0) ::_exit(90);
    if (::write(fds[1], "kernel", 6) != 6) ::_exit(91);
    errno = 0;
    const ssize_t n = ::read(fds[0], buf, 6);  // the kernel writes on our behalf: refused
    ::_exit(n == -1 && errno == EFAULT ? 0 : 93);
  });
  CHECK(exited_with(child.status, 0));
  CHECK(child.stderr_text.empty());
  CHECK(std::strcmp(buf, "frozen") == 0);
}
