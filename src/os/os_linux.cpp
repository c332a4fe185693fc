// permafrost — the Linux implementation of the OS contract in os.hpp. Nothing else in the
// library makes system calls on memory or reads /proc.
#include "os/os.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <ucontext.h>
#include <unistd.h>
#include <utility>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

namespace permafrost::os {
namespace {

int errno_or(int fallback) noexcept { return errno != 0 ? errno : fallback; }

// Opens /proc/<pid>/<what> (pid 0 = self). Returns the fd or -1 with errno set.
int open_proc(pid_t pid, const char* what) noexcept {
  char path[96];
  if (const int err = proc_path(pid, what, path, sizeof path); err != 0) {
    errno = err;
    return -1;
  }
  return ::open(path, O_RDONLY | O_CLOEXEC);
}

}  // namespace

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

int reserve(std::size_t bytes, std::size_t align, void** out) noexcept {
  if (bytes == 0 || align == 0 || (align & (align - 1)) != 0) return EINVAL;
  if (bytes + align < bytes) return ENOMEM;
  // First the exact size: new mappings go just below the lowest one, so after one aligned
  // reservation the next of an aligned size usually is aligned too, and under an address-space
  // limit (RLIMIT_AS) the over-reservation below would cost `align` bytes the limit may not have.
  void* exact =
      ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (exact != MAP_FAILED) {
    if ((reinterpret_cast<std::uintptr_t>(exact) & (align - 1)) == 0) {
      *out = exact;
      return 0;
    }
    ::munmap(exact, bytes);
    // Then aligned addresses below it: the kernel put `exact` in the highest gap that holds it,
    // so the range under it is usually free too, though a mapping may sit right below (in a
    // program linked with the permafrost heap, mimalloc's segments): a few steps further down.
    // Under an address-space limit this is what succeeds, where the over-reservation below
    // needs `align` more bytes than the limit leaves.
    constexpr int aligned_tries = 16;
    auto below = reinterpret_cast<std::uintptr_t>(exact) & ~(std::uintptr_t{align} - 1);
    for (int i = 0; i < aligned_tries && below != 0; ++i, below -= below >= align ? align : below) {
      if (reserve_at(reinterpret_cast<void*>(below), bytes) == 0) {
        *out = reinterpret_cast<void*>(below);
        return 0;
      }
    }
  }
  const std::size_t span = bytes + align;
  void* raw = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return errno_or(ENOMEM);
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const auto aligned = (start + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  const std::uintptr_t tail = start + span - (aligned + bytes);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  *out = reinterpret_cast<void*>(aligned);
  return 0;
}

int physical_memory(std::size_t* bytes) noexcept {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  if (pages <= 0) return ENOENT;
  std::size_t total = 0;
  if (__builtin_mul_overflow(static_cast<std::size_t>(pages), page_size(), &total))
    total = SIZE_MAX;
  *bytes = total;
  return 0;
}

int address_space_left(std::size_t* bytes) noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return ENOENT;
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ENOENT;
  char text[8192];
  std::size_t n = 0;
  for (ssize_t got;
       n < sizeof text - 1 && (got = ::read(fd, text + n, sizeof text - 1 - n)) != 0;) {
    if (got < 0) {
      if (errno == EINTR) continue;
      break;
    }
    n += static_cast<std::size_t>(got);
  }
  ::close(fd);
  text[n] = '\0';
  const char* at = std::strstr(text, "\nVmSize:");
  if (at == nullptr) return ENOENT;
  const std::size_t used = std::strtoull(at + 9, nullptr, 10) << 10;
  *bytes = limit.rlim_cur > used ? limit.rlim_cur - used : 0;
  return 0;
}

int heuristic_commit_limit(std::size_t* bytes) noexcept {
  const int fd = ::open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ENOENT;
  char mode = '\0';
  ssize_t got = 0;
  do {
    got = ::read(fd, &mode, 1);
  } while (got < 0 && errno == EINTR);
  ::close(fd);
  if (got != 1 || mode != '0') return ENOENT;
  struct sysinfo info {};
  if (::sysinfo(&info) != 0) return ENOENT;
  std::size_t units = 0;
  std::size_t total = 0;
  if (__builtin_add_overflow(info.totalram, info.totalswap, &units) ||
      __builtin_mul_overflow(units, std::size_t{info.mem_unit}, &total))
    total = SIZE_MAX;
  *bytes = total;
  return 0;
}

int release(void* p, std::size_t bytes) noexcept {
  return ::munmap(p, bytes) == 0 ? 0 : errno_or(EINVAL);
}

int commit(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  return ::mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0 ? 0 : errno_or(ENOMEM);
}

int decommit(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  void* r =
      ::mmap(p, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return r == MAP_FAILED ? errno_or(ENOMEM) : 0;
}

int map_private(std::size_t bytes, void** out) noexcept {
  if (bytes == 0) return EINVAL;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return errno_or(ENOMEM);
  *out = p;
  return 0;
}

int remap(void* p, std::size_t old_bytes, std::size_t new_bytes, void** out) noexcept {
  if (old_bytes == 0 || new_bytes == 0) return EINVAL;
  void* r = ::mremap(p, old_bytes, new_bytes, MREMAP_MAYMOVE);
  if (r == MAP_FAILED) return errno_or(ENOMEM);
  *out = r;
  return 0;
}

int discard(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  return ::madvise(p, bytes, MADV_DONTNEED) == 0 ? 0 : errno_or(EINVAL);
}

int protect_read_only(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  return ::mprotect(p, bytes, PROT_READ) == 0 ? 0 : errno_or(ENOMEM);
}

int advise_huge_pages(void* p, std::size_t bytes) noexcept {
#ifdef MADV_HUGEPAGE
  return ::madvise(p, bytes, MADV_HUGEPAGE) == 0 ? 0 : errno_or(EINVAL);
#else
  (void)p;
  (void)bytes;
  return EINVAL;
#endif
}

void* global_symbol(const char* name) noexcept { return ::dlsym(RTLD_DEFAULT, name); }

int name_range(void* p, std::size_t bytes, const char* name) noexcept {
  return ::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, reinterpret_cast<unsigned long>(p), bytes,
                 reinterpret_cast<unsigned long>(name)) == 0
             ? 0
             : errno_or(EINVAL);
}

int populate_read(const void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
  if (::madvise(const_cast<void*>(p), bytes, MADV_POPULATE_READ) == 0) return 0;
  if (errno != EINVAL) return errno_or(EFAULT);
  // Before Linux 5.14: fault every page in by reading one byte of it.
  const std::size_t page = page_size();
  const auto* c = static_cast<const volatile char*>(p);
  for (std::size_t off = 0; off < bytes; off += page) (void)c[off];
  return 0;
}

int populate_write(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  return ::madvise(p, bytes, MADV_POPULATE_WRITE) == 0 ? 0 : errno_or(EINVAL);
}

int reserve_at(void* p, std::size_t bytes) noexcept {
  // The system call itself, not libc's mmap: ThreadSanitizer's mmap wrapper replaces an address
  // outside its application ranges with 0 unless the flags hold MAP_FIXED (this flag is another
  // bit), then dies when the kernel maps the range at 0 (a 512 GiB reservation in a test did).
  // Only the kernel can say whether [p, p+bytes) is free; a reservation needs no wrapper's care.
  const long raw =
      ::syscall(SYS_mmap, p, bytes, long{PROT_NONE},
                long{MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE}, -1L, 0L);
  if (raw == -1) return errno_or(ENOMEM);
  void* r = reinterpret_cast<void*>(raw);
  if (r != p) {  // kernels before 4.17 treat the flag as a hint
    ::munmap(r, bytes);
    return EEXIST;
  }
  return 0;
}

int memfd_open(const char* name, int* fd) noexcept {
  const int r = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (r < 0) return errno_or(EMFILE);
  *fd = r;
  return 0;
}

int file_resize(int fd, std::size_t bytes) noexcept {
  return ::ftruncate(fd, static_cast<off_t>(bytes)) == 0 ? 0 : errno_or(EIO);
}

int file_size(int fd, std::size_t* bytes) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_or(EBADF);
  *bytes = static_cast<std::size_t>(st.st_size);
  return 0;
}

int file_identity(int fd, file_id* id) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_or(EBADF);
  id->device = static_cast<std::uint64_t>(st.st_dev);
  id->inode = static_cast<std::uint64_t>(st.st_ino);
  return 0;
}

int file_write(int fd, const void* data, std::size_t bytes, std::size_t offset) noexcept {
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pwrite(fd, static_cast<const char*>(data) + done, bytes - done,
                               static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_or(EIO);
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

int file_read(int fd, void* data, std::size_t bytes, std::size_t offset) noexcept {
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd, static_cast<char*>(data) + done, bytes - done,
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_or(EIO);
    }
    if (n == 0) return ENODATA;  // the end: shorter than its size said (a /sys file)
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

int map_file_fixed(int fd, void* p, std::size_t bytes, std::size_t offset, bool writable) noexcept {
  if (bytes == 0) return 0;
  void* r = ::mmap(p, bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED | MAP_FIXED,
                   fd, static_cast<off_t>(offset));
  return r == MAP_FAILED ? errno_or(ENOMEM) : 0;
}

int map_file_noreplace(int fd, void* p, std::size_t bytes) noexcept {
  void* r = ::mmap(p, bytes, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  if (r == MAP_FAILED) return errno_or(ENOMEM);
  if (r != p) {
    ::munmap(r, bytes);
    return EEXIST;
  }
  return 0;
}

int map_file_private(int fd, void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  void* r = ::mmap(p, bytes, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  return r == MAP_FAILED ? errno_or(ENOMEM) : 0;
}

int set_fork_inherit(void* p, std::size_t bytes, bool inherit) noexcept {
  if (bytes == 0) return 0;
  return ::madvise(p, bytes, inherit ? MADV_DOFORK : MADV_DONTFORK) == 0 ? 0 : errno_or(EINVAL);
}

int add_seals(int fd, int seals) noexcept {
  return ::fcntl(fd, F_ADD_SEALS, seals) == 0 ? 0 : errno_or(EPERM);
}

int get_seals(int fd, int* seals) noexcept {
  const int r = ::fcntl(fd, F_GET_SEALS);
  if (r < 0) return errno_or(EINVAL);
  *seals = r;
  return 0;
}

int fd_path(int fd, char* out, std::size_t size) noexcept {
  if (size == 0) return EINVAL;
  char fd_name[32];
  std::snprintf(fd_name, sizeof fd_name, "fd/%d", fd);
  char link[64];
  if (const int err = proc_path(0, fd_name, link, sizeof link); err != 0) return err;
  const ssize_t n = ::readlink(link, out, size - 1);
  if (n < 0) return errno_or(EBADF);
  out[n] = '\0';
  return 0;
}

int dup_fd(int fd, int* out) noexcept {
  const int r = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (r < 0) return errno_or(EBADF);
  *out = r;
  return 0;
}

int close_fd(int fd) noexcept { return ::close(fd) == 0 ? 0 : errno_or(EBADF); }

pid_t process_id() noexcept { return ::getpid(); }

int fork_process(pid_t* pid) noexcept {
  const pid_t r = ::fork();
  if (r < 0) return errno_or(EAGAIN);
  *pid = r;
  return 0;
}

void yield_cpu() noexcept { (void)::sched_yield(); }

int register_fork_handlers(void (*prepare)(), void (*parent)(), void (*child)()) noexcept {
  return ::pthread_atfork(prepare, parent, child);
}

int thread_stack(std::uintptr_t* low, std::size_t* bytes) noexcept {
  pthread_attr_t attr;
  if (const int err = ::pthread_getattr_np(::pthread_self(), &attr)) return err;
  void* addr = nullptr;
  std::size_t size = 0;
  const int err = ::pthread_attr_getstack(&attr, &addr, &size);
  ::pthread_attr_destroy(&attr);
  if (err) return err;
  *low = reinterpret_cast<std::uintptr_t>(addr);
  *bytes = size;
  return 0;
}

int write_stderr(const char* s, std::size_t n) noexcept {
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno_or(EIO);
    if (w == 0) return EIO;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
  return 0;
}

int set_signal_action(int sig, const struct sigaction* action,
                      struct sigaction* previous) noexcept {
  return ::sigaction(sig, action, previous) == 0 ? 0 : errno_or(EINVAL);
}

int reset_signal_action(int sig) noexcept {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  return set_signal_action(sig, &dfl, nullptr);
}

int set_signal_mask(int how, const sigset_t* set, sigset_t* previous) noexcept {
  return ::sigprocmask(how, set, previous) == 0 ? 0 : errno_or(EINVAL);
}

int raise_signal(int sig) noexcept { return ::raise(sig) == 0 ? 0 : errno_or(EINVAL); }

int environment(const char* name, const char** value) noexcept {
  const char* v = std::getenv(name);
  if (v == nullptr) return ENOENT;
  *value = v;
  return 0;
}

fault_access fault_access_of(const void* ucontext) noexcept {
#if defined(__x86_64__)
  if (ucontext == nullptr) return fault_access::unknown;
  // The page-fault error code: bit 1 set for a write, bit 4 for an instruction fetch.
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
  const auto code = static_cast<unsigned long long>(uc->uc_mcontext.gregs[REG_ERR]);
  if ((code & 0x10) != 0) return fault_access::execute;
  return (code & 0x2) != 0 ? fault_access::write : fault_access::read;
#else
  (void)ucontext;
  return fault_access::unknown;
#endif
}

int open_read(const char* path, int* fd) noexcept {
  // O_NONBLOCK: opening a FIFO without a writer (or some devices) would otherwise wait forever,
  // before the caller could see what the file is. O_NOCTTY: a terminal never becomes ours.
  const int r = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (r < 0) return errno_or(ENOENT);
  // Back to blocking reads: the caller gets an ordinary descriptor.
  const int flags = ::fcntl(r, F_GETFL);
  if (flags < 0 || ::fcntl(r, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int err = errno_or(EBADF);
    ::close(r);
    return err;
  }
  *fd = r;
  return 0;
}

int create_temp(char* path_template, int* fd) noexcept {
  // Not mkostemp: it creates the file 0600, and widening that to 0644 & ~umask needs the umask,
  // which the process can only read by changing it (umask(0), then back) - a window in which a
  // file another thread creates is world-writable. Created with mode 0644 instead, the file gets
  // exactly what the kernel grants any new file: 0644 less the umask, or the directory's default
  // ACL where it has one. O_EXCL makes a name already taken (or a symlink planted there) fail
  // with EEXIST, and another random name is tried.
  const std::size_t length = std::strlen(path_template);
  constexpr std::size_t random_chars = 6;
  if (length < random_chars || std::strcmp(path_template + length - random_chars, "XXXXXX") != 0)
    return EINVAL;
  char* const name = path_template + length - random_chars;
  static constexpr char alphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";  // 62 letters
  static std::atomic<std::uint64_t> counter{0};
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::uint64_t bits = 0;
    if (::getrandom(&bits, sizeof bits, GRND_NONBLOCK) != sizeof bits) {
      // No entropy yet (early boot): the names need only differ, O_EXCL catches a collision.
      timespec now{};
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      bits = (static_cast<std::uint64_t>(now.tv_nsec) << 20) ^
             static_cast<std::uint64_t>(::getpid()) ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15u);
    }
    for (std::size_t i = 0; i < random_chars; ++i, bits /= 62) name[i] = alphabet[bits % 62];
    const int r = ::open(path_template, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0644);
    if (r >= 0) {
      *fd = r;
      return 0;
    }
    if (errno != EEXIST) return errno_or(EIO);
  }
  return EEXIST;
}

int file_is_regular(int fd, bool* regular) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_or(EBADF);
  *regular = S_ISREG(st.st_mode);
  return 0;
}

int fd_is_read_only(int fd, bool* read_only) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return errno_or(EBADF);
  *read_only = (flags & O_ACCMODE) == O_RDONLY;
  return 0;
}

int reopen_read_only(int fd, int* out) noexcept {
  char fd_name[32];
  std::snprintf(fd_name, sizeof fd_name, "fd/%d", fd);
  char path[64];
  if (const int err = proc_path(0, fd_name, path, sizeof path); err != 0) return err;
  const int r = ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (r < 0) return errno_or(ENOENT);
  struct stat was {};
  struct stat now {};
  if (::fstat(fd, &was) != 0 || ::fstat(r, &now) != 0 || was.st_dev != now.st_dev ||
      was.st_ino != now.st_ino) {
    ::close(r);
    return EXDEV;
  }
  *out = r;
  return 0;
}

int sync_file(int fd) noexcept { return ::fsync(fd) == 0 ? 0 : errno_or(EIO); }

int open_directory(const char* path, int* fd) noexcept {
  const int r = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r < 0) return errno_or(ENOENT);
  *fd = r;
  return 0;
}

int sync_file_system(int fd) noexcept { return ::syncfs(fd) == 0 ? 0 : errno_or(EIO); }

int path_type_of(const char* path, path_type* type, bool follow) noexcept {
  struct stat st {};
  if ((follow ? ::stat(path, &st) : ::lstat(path, &st)) != 0) return errno_or(ENOENT);
  *type = S_ISREG(st.st_mode)    ? path_type::regular
          : S_ISLNK(st.st_mode)  ? path_type::symlink
          : S_ISDIR(st.st_mode)  ? path_type::directory
          : S_ISCHR(st.st_mode)  ? path_type::char_device
          : S_ISBLK(st.st_mode)  ? path_type::block_device
          : S_ISFIFO(st.st_mode) ? path_type::fifo
                                 : path_type::socket;
  return 0;
}

int path_device_of(const char* path, std::uint64_t* device) noexcept {
  struct stat st {};
  if (::lstat(path, &st) != 0) return errno_or(ENOENT);
  *device = static_cast<std::uint64_t>(st.st_dev);
  return 0;
}

int read_symlink(const char* path, char* out, std::size_t size) noexcept {
  if (size == 0) return ENAMETOOLONG;
  const ssize_t n = ::readlink(path, out, size);
  if (n < 0) return errno_or(EINVAL);
  if (static_cast<std::size_t>(n) >= size) return ENAMETOOLONG;
  out[n] = '\0';
  return 0;
}

int rename_file(const char* from, const char* to) noexcept {
  return ::rename(from, to) == 0 ? 0 : errno_or(EIO);
}

int remove_file(const char* path) noexcept { return ::unlink(path) == 0 ? 0 : errno_or(ENOENT); }

namespace {

// True when the object at `path` belongs to glibc: the C library, the loader, glibc's other
// libraries, or a gconv module (loaded by iconv).
bool is_c_runtime_object(const char* path) noexcept {
  if (path == nullptr || path[0] == '\0') return false;  // the main program
  if (std::strstr(path, "/gconv/") != nullptr) return true;
  const char* slash = std::strrchr(path, '/');
  const char* base = slash != nullptr ? slash + 1 : path;
  static constexpr const char* glibc_objects[] = {"libc.so",
                                                  "ld-linux",
                                                  "ld64.so",
                                                  "ld.so",
                                                  "libm.so",
                                                  "libmvec.so",
                                                  "libpthread.so",
                                                  "libdl.so",
                                                  "librt.so",
                                                  "libresolv.so",
                                                  "libanl.so",
                                                  "libutil.so",
                                                  "libnss_",
                                                  "libBrokenLocale.so",
                                                  "libc_malloc_debug.so",
                                                  "libthread_db.so",
                                                  "libmemusage.so",
                                                  "libpcprofile.so"};
  for (const char* prefix : glibc_objects)
    if (std::strncmp(base, prefix, std::strlen(prefix)) == 0) return true;
  return false;
}

struct code_walk {
  code_segment* out;
  std::size_t capacity;
  std::size_t count;
  std::uint64_t generation;
  bool generation_only;
};

int visit_object(dl_phdr_info* info, std::size_t size, void* data) noexcept {
  auto* walk = static_cast<code_walk*>(data);
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs)
    walk->generation = info->dlpi_adds + info->dlpi_subs;
  if (walk->generation_only) return 1;  // the counters are the same in every call
  const bool c_runtime = is_c_runtime_object(info->dlpi_name);
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
    if (walk->count == walk->capacity) return 1;
    const std::uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
    walk->out[walk->count++] = code_segment{begin, begin + ph.p_memsz, c_runtime};
  }
  return 0;
}

}  // namespace

int loaded_code_generation(std::uint64_t* generation) noexcept {
  code_walk walk{nullptr, 0, 0, 0, true};
  ::dl_iterate_phdr(&visit_object, &walk);
  *generation = walk.generation;
  return 0;
}

int list_code_segments(code_segment* out, std::size_t capacity, std::size_t* count,
                       std::uint64_t* generation) noexcept {
  code_walk walk{out, capacity, 0, 0, false};
  ::dl_iterate_phdr(&visit_object, &walk);
  *count = walk.count;
  *generation = walk.generation;
  return 0;
}

thp_mode transparent_huge_pages() noexcept {
  const int fd = ::open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return thp_mode::unavailable;
  char buf[128] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return thp_mode::unavailable;
  // The selected mode is the bracketed word: "always [madvise] never".
  if (std::strstr(buf, "[always]") != nullptr) return thp_mode::always;
  if (std::strstr(buf, "[madvise]") != nullptr) return thp_mode::madvise;
  if (std::strstr(buf, "[never]") != nullptr) return thp_mode::never;
  return thp_mode::unavailable;
}

int smaps_field_in_range(pid_t pid, std::uintptr_t begin, std::uintptr_t end, const char* field,
                         std::uint64_t* bytes) noexcept {
  std::string text;
  if (const int err = read_proc_file(pid, "smaps", &text); err != 0) return err;
  const std::string_view wanted(field);
  std::uint64_t total = 0;
  bool inside = false;
  for_each_line(text, [&](std::string_view line) {
    maps_header h;
    std::string_view name;
    std::uint64_t value = 0;
    if (parse_maps_header(line, &h)) {
      inside = h.begin < end && h.end > begin;
    } else if (inside && parse_smaps_field(line, &name, &value) && name == wanted) {
      total += value;
    }
  });
  *bytes = total;
  return 0;
}

int read_pagemap(pid_t pid, std::uintptr_t begin, std::size_t count, std::uint64_t* out) noexcept {
  const int fd = open_proc(pid, "pagemap");
  if (fd < 0) return errno_or(ENOENT);
  const off_t offset = static_cast<off_t>(begin / page_size() * sizeof(std::uint64_t));
  std::size_t done = 0;
  int err = 0;
  while (done < count) {
    const ssize_t n =
        ::pread(fd, reinterpret_cast<char*>(out + done), (count - done) * sizeof(std::uint64_t),
                offset + static_cast<off_t>(done * sizeof(std::uint64_t)));
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno_or(EIO);
      break;
    }
    if (n == 0) {
      err = EIO;
      break;
    }
    done += static_cast<std::size_t>(n) / sizeof(std::uint64_t);
  }
  ::close(fd);
  return err;
}

int read_proc_file(pid_t pid, const char* what, std::string* out) noexcept {
  const int fd = open_proc(pid, what);
  if (fd < 0) return errno_or(ENOENT);
  int err = 0;
  try {
    out->clear();
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno_or(EIO);
        break;
      }
      if (n == 0) break;
      out->append(buf, static_cast<std::size_t>(n));
    }
  } catch (...) {
    err = ENOMEM;
  }
  ::close(fd);
  return err;
}

int open_process_fd(pid_t pid, const char* target, int* fd) noexcept {
  char dir_path[64];
  if (const int err = proc_path(pid, "fd", dir_path, sizeof dir_path); err != 0) return err;
  DIR* dir = ::opendir(dir_path);
  if (dir == nullptr) return errno_or(ENOENT);
  int result = ENOENT;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char link[sizeof dir_path + sizeof e->d_name + 1];
    std::snprintf(link, sizeof link, "%s/%s", dir_path, e->d_name);
    char seen[256];
    const ssize_t n = ::readlink(link, seen, sizeof seen - 1);
    if (n < 0) continue;  // closed meanwhile
    seen[n] = '\0';
    if (std::strcmp(seen, target) != 0) continue;
    // The process may swap another file in between the readlink and the open (dup2): a FIFO
    // without a writer would block this open forever, a terminal could become ours. So the open
    // does not wait (O_NONBLOCK), takes no terminal (O_NOCTTY), and only a regular file is kept.
    const int opened = ::open(link, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (opened < 0) {
      result = errno_or(EACCES);
      continue;
    }
    struct stat st {};
    if (::fstat(opened, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(opened);
      continue;
    }
    *fd = opened;
    result = 0;
    break;
  }
  ::closedir(dir);
  return result;
}

int list_processes(std::vector<pid_t>* out) noexcept {
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return errno_or(ENOENT);
  int err = 0;
  try {
    errno = 0;
    while (const dirent* e = ::readdir(dir)) {
      char* end = nullptr;
      const long pid = std::strtol(e->d_name, &end, 10);
      if (end != e->d_name && *end == '\0' && pid > 0) out->push_back(static_cast<pid_t>(pid));
      errno = 0;
    }
    if (errno != 0) err = errno;
  } catch (...) {
    err = ENOMEM;
  }
  ::closedir(dir);
  return err;
}

int read_mappings(pid_t pid, std::vector<mapping>* out) noexcept {
  out->clear();
  std::string text;
  if (const int err = read_proc_file(pid, "maps", &text); err != 0) return err;
  try {
    for_each_line(text, [&](std::string_view line) {
      maps_header h;
      if (!parse_maps_header(line, &h)) return;
      mapping m;
      m.begin = h.begin;
      m.end = h.end;
      m.readable = !h.perms.empty() && h.perms[0] == 'r';
      m.writable = h.perms.size() > 1 && h.perms[1] == 'w';
      m.is_private = h.perms.size() > 3 && h.perms[3] == 'p';
      m.path = std::string(h.path);
      out->push_back(std::move(m));
    });
  } catch (...) {
    out->clear();
    return ENOMEM;
  }
  return 0;
}

int proc_path(pid_t pid, const char* what, char* out, std::size_t size) noexcept {
  const int n = pid == 0 ? std::snprintf(out, size, "/proc/self/%s", what)
                         : std::snprintf(out, size, "/proc/%d/%s", static_cast<int>(pid), what);
  return n >= 0 && static_cast<std::size_t>(n) < size ? 0 : ENAMETOOLONG;
}

bool parse_maps_header(std::string_view line, maps_header* out) noexcept {
  // "lo-hi perms offset dev inode   path": two hex numbers joined by '-', then a space.
  const auto hex = [&](std::size_t& at, std::uintptr_t* value) {
    std::uintptr_t v = 0;
    const std::size_t start = at;
    for (; at < line.size(); ++at) {
      const char c = line[at];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) break;
      if ((v >> (sizeof v * 8 - 4)) != 0) return false;  // a 17th digit: no address, refuse
      v = (v << 4) | static_cast<std::uintptr_t>(d);
    }
    *value = v;
    return at > start;
  };
  // The kernel writes exactly four: r or -, w or -, x or -, then s (shared) or p (private).
  const auto valid_perms = [](std::string_view p) {
    return p.size() == 4 && (p[0] == 'r' || p[0] == '-') && (p[1] == 'w' || p[1] == '-') &&
           (p[2] == 'x' || p[2] == '-') && (p[3] == 's' || p[3] == 'p');
  };
  std::size_t at = 0;
  maps_header h;
  if (!hex(at, &h.begin) || at >= line.size() || line[at] != '-') return false;
  ++at;
  if (!hex(at, &h.end) || at >= line.size() || line[at] != ' ') return false;
  std::string_view rest = line.substr(at + 1);
  // perms, offset, dev, inode, then the (optional) path, which may contain spaces.
  for (int field = 0; field < 4; ++field) {
    const auto sp = rest.find(' ');
    if (field == 0) h.perms = rest.substr(0, sp);
    if (sp == std::string_view::npos) {
      rest = {};
      break;
    }
    rest.remove_prefix(sp + 1);
  }
  if (!valid_perms(h.perms)) return false;
  const auto first = rest.find_first_not_of(' ');
  h.path = first == std::string_view::npos ? std::string_view{} : rest.substr(first);
  *out = h;
  return true;
}

bool parse_smaps_field(std::string_view line, std::string_view* name,
                       std::uint64_t* bytes) noexcept {
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::size_t at = colon + 1;
  while (at < line.size() && line[at] == ' ') ++at;
  if (at >= line.size() || line[at] < '0' || line[at] > '9') return false;
  std::uint64_t v = 0;
  for (; at < line.size() && line[at] >= '0' && line[at] <= '9'; ++at) {
    const auto digit = static_cast<std::uint64_t>(line[at] - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;  // beyond 64 bits: refuse, never wrap
    v = v * 10 + digit;
  }
  const bool kib = line.substr(at).find("kB") != std::string_view::npos;
  if (kib && v > UINT64_MAX / 1024) return false;
  *name = line.substr(0, colon);
  *bytes = kib ? v * 1024 : v;
  return true;
}

}  // namespace permafrost::os
