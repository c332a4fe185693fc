// permafrost — the Linux implementation of the OS contract in os.hpp. Nothing else in the
// library makes system calls on memory or reads /proc.
#include "os.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
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
  char path[64];
  if (pid == 0) {
    std::snprintf(path, sizeof path, "/proc/self/%s", what);
  } else {
    std::snprintf(path, sizeof path, "/proc/%d/%s", static_cast<int>(pid), what);
  }
  return ::open(path, O_RDONLY | O_CLOEXEC);
}

// Opens /proc/<pid>/<what> as a stdio stream (for line-by-line parsing). Returns 0 or an errno.
int open_proc_stream(pid_t pid, const char* what, FILE** out) noexcept {
  const int fd = open_proc(pid, what);
  if (fd < 0) return errno_or(ENOENT);
  *out = ::fdopen(fd, "r");
  if (*out == nullptr) {
    const int err = errno_or(ENOMEM);
    ::close(fd);
    return err;
  }
  return 0;
}

}  // namespace

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

int reserve(std::size_t bytes, std::size_t align, void** out) noexcept {
  if (bytes == 0 || align == 0 || (align & (align - 1)) != 0) return EINVAL;
  if (bytes + align < bytes) return ENOMEM;
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

int release(void* p, std::size_t bytes) noexcept {
  return ::munmap(p, bytes) == 0 ? 0 : errno_or(EINVAL);
}

int commit(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  return ::mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0 ? 0 : errno_or(ENOMEM);
}

int decommit(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) return 0;
  void* r = ::mmap(p, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                   -1, 0);
  return r == MAP_FAILED ? errno_or(ENOMEM) : 0;
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
  void* r = ::mmap(p, bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (r == MAP_FAILED) return errno_or(ENOMEM);
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
    if (n == 0) return EIO;
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
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
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
  FILE* f = nullptr;
  if (const int err = open_proc_stream(pid, "smaps", &f); err != 0) return err;
  const std::size_t field_len = std::strlen(field);
  std::uint64_t total = 0;
  bool inside = false;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long lo = 0;
    unsigned long hi = 0;
    // A mapping header starts with "lo-hi "; field lines start with a capitalised name.
    if (std::sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && std::strchr(line, '-') < std::strchr(line, ' ')) {
      inside = lo < end && hi > begin;
      continue;
    }
    if (inside && std::strncmp(line, field, field_len) == 0 && line[field_len] == ':') {
      unsigned long long kib = 0;
      if (std::sscanf(line + field_len + 1, "%llu", &kib) == 1) total += kib * 1024ULL;
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return EIO;
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
    const ssize_t n = ::pread(fd, reinterpret_cast<char*>(out + done),
                              (count - done) * sizeof(std::uint64_t),
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
  char path[96];
  if (pid == 0) {
    std::snprintf(path, sizeof path, "/proc/self/%s", what);
  } else {
    std::snprintf(path, sizeof path, "/proc/%d/%s", static_cast<int>(pid), what);
  }
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
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
  FILE* f = nullptr;
  if (const int err = open_proc_stream(pid, "maps", &f); err != 0) return err;
  int err = 0;
  char line[4096];
  try {
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long lo = 0;
      unsigned long hi = 0;
      char perms[8] = {};
      int path_at = 0;
      // "lo-hi perms offset dev inode   path"
      if (std::sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &path_at) < 3) continue;
      mapping m;
      m.begin = lo;
      m.end = hi;
      m.readable = perms[0] == 'r';
      m.writable = perms[1] == 'w';
      m.is_private = perms[3] == 'p';
      if (path_at > 0) {
        m.path = line + path_at;
        while (!m.path.empty() && (m.path.back() == '\n' || m.path.back() == ' ')) m.path.pop_back();
      }
      out->push_back(std::move(m));
    }
    if (std::ferror(f) != 0) err = EIO;
  } catch (...) {
    err = ENOMEM;
  }
  std::fclose(f);
  if (err != 0) out->clear();
  return err;
}

}  // namespace permafrost::os
