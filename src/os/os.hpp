// permafrost — the OS contract.
//
// Every system call the library makes (mmap, mprotect, madvise, prctl, fork, pthread_atfork,
// signal handling, stderr output, getenv, reads of /proc and /sys) goes through this header;
// src/os/os_linux.cpp is its only implementation. In the style of mimalloc's prim.h, each function
// returns 0 on success or an errno value, never throws, never allocates unless it says so, and
// states its preconditions. Callers turn errors into exceptions.
#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace permafrost::os {

// ---------------------------------------------------------------------------------------------
// Pages and address space
// ---------------------------------------------------------------------------------------------

// The base page size (sysconf(_SC_PAGESIZE)). Never fails.
std::size_t page_size() noexcept;

// Reserves `bytes` of address space, inaccessible (PROT_NONE) and uncharged (MAP_NORESERVE).
// Pre: bytes > 0. On success *out is the start of the range, aligned to `align` (a power of two
// multiple of the page size). Tried in turn: where the kernel puts `bytes`, the 16 aligned
// addresses below that (MAP_FIXED_NOREPLACE, so nothing mapped is touched), then `bytes + align`
// with the over-reserved head and tail returned (which an address-space limit may not allow).
int reserve(std::size_t bytes, std::size_t align, void** out) noexcept;

// The machine's physical memory in bytes (sysconf _SC_PHYS_PAGES times the page size). Returns
// ENOENT when it cannot be read. Allocates nothing.
int physical_memory(std::size_t* bytes) noexcept;

// The address space this process may still map under its RLIMIT_AS soft limit: the limit minus
// VmSize (/proc/self/status). Returns ENOENT when there is no limit (or it cannot be read).
// Allocates nothing (a stack buffer).
int address_space_left(std::size_t* bytes) noexcept;

// The largest single request the kernel's default overcommit heuristic (vm.overcommit_memory 0)
// grants a mapping that it accounts: RAM plus swap (sysinfo). Returns ENOENT in the other modes (1
// grants any size; 2 accounts every commit itself, MAP_NORESERVE or not) or when they cannot be
// read. Allocates nothing.
int heuristic_commit_limit(std::size_t* bytes) noexcept;

// Returns a reserved range to the kernel. Pre: [p, p+bytes) came from reserve().
int release(void* p, std::size_t bytes) noexcept;

// Makes [p, p+bytes) readable and writable. Pages are still only backed on first touch.
// Pre: p and bytes page-aligned; the range lies in a reservation.
int commit(void* p, std::size_t bytes) noexcept;

// Drops the pages of [p, p+bytes) and makes the range inaccessible again, keeping it reserved
// (an atomic MAP_FIXED replacement, so no other mapping can slip into the hole).
// Pre: p and bytes page-aligned; the range lies in a reservation.
int decommit(void* p, std::size_t bytes) noexcept;

// Maps `bytes` (> 0, a multiple of the page size) of private anonymous memory, readable and
// writable, zero, backed on first touch; *out is its start. Free it with release().
int map_private(std::size_t bytes, void** out) noexcept;

// Grows (or shrinks) a map_private() mapping [p, p+old_bytes) to new_bytes, moving it where the
// kernel chooses (mremap MREMAP_MAYMOVE): its pages move with it, nothing is copied, and the new
// tail is zero. *out is the new start (the old range is gone). Pre: sizes page multiples, > 0.
int remap(void* p, std::size_t old_bytes, std::size_t new_bytes, void** out) noexcept;

// Drops the pages of [p, p+bytes) of a map_private() mapping (MADV_DONTNEED): they stop counting
// in the RSS and read as zero when touched again. Pre: p and bytes page-aligned.
int discard(void* p, std::size_t bytes) noexcept;

// Makes [p, p+bytes) read-only. Pre: p and bytes page-aligned; range committed.
int protect_read_only(void* p, std::size_t bytes) noexcept;

// Asks for transparent huge pages on [p, p+bytes) (MADV_HUGEPAGE).
// Pre: p and bytes page-aligned. Returns EINVAL where the kernel has no THP.
int advise_huge_pages(void* p, std::size_t bytes) noexcept;

// The address of the first definition of `name` in the process's global symbol scope
// (dlsym(RTLD_DEFAULT)), or nullptr.
void* global_symbol(const char* name) noexcept;

// Names an anonymous range in /proc/PID/maps (PR_SET_VMA_ANON_NAME). Best effort: kernels
// without CONFIG_ANON_VMA_NAME return EINVAL, which callers ignore.
int name_range(void* p, std::size_t bytes, const char* name) noexcept;

// Pre-faults [p, p+bytes) for reading so later reads take no page fault (MADV_POPULATE_READ,
// Linux 5.14+; older kernels: one volatile read per page). Pre: the range is readable.
int populate_read(const void* p, std::size_t bytes) noexcept;

// Pre-faults [p, p+bytes) for writing (MADV_POPULATE_WRITE, Linux 5.14+; older kernels: EINVAL,
// callers fall back to touching). Pages already present are left as they are. Pre: writable.
int populate_write(void* p, std::size_t bytes) noexcept;

// Reserves exactly [p, p+bytes), inaccessible and uncharged, failing with EEXIST when anything is
// mapped there (MAP_FIXED_NOREPLACE). Pre: p and bytes page-aligned, bytes > 0.
int reserve_at(void* p, std::size_t bytes) noexcept;

// ---------------------------------------------------------------------------------------------
// Shared files (memfd backing)
// ---------------------------------------------------------------------------------------------

// Creates a sealable, close-on-exec memfd named `name` (shown as /memfd:<name> in
// /proc/PID/maps). On success *fd is the descriptor.
int memfd_open(const char* name, int* fd) noexcept;

// Sets the file's size (ftruncate). Pre: fd open for writing.
int file_resize(int fd, std::size_t bytes) noexcept;

// The file's size (fstat).
int file_size(int fd, std::size_t* bytes) noexcept;

// Which file a descriptor refers to (fstat: device and inode), to tell later whether the number
// still names that file or has been closed and reused for another.
struct file_id {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  bool operator==(const file_id&) const = default;
};
int file_identity(int fd, file_id* id) noexcept;

// Writes/reads exactly `bytes` at `offset` (pwrite/pread, retried on EINTR and short counts).
// A read that meets the end of the file first fails with ENODATA.
int file_write(int fd, const void* data, std::size_t bytes, std::size_t offset) noexcept;
int file_read(int fd, void* data, std::size_t bytes, std::size_t offset) noexcept;

// Maps `bytes` of the file from `offset` MAP_SHARED at p, replacing whatever mapping is there
// (MAP_FIXED; used inside the arena's own reservation). Pre: p, bytes, offset page-aligned.
int map_file_fixed(int fd, void* p, std::size_t bytes, std::size_t offset, bool writable) noexcept;

// Maps `bytes` of the file from offset 0 MAP_SHARED read-only at exactly p, failing with EEXIST
// when anything is mapped there (MAP_FIXED_NOREPLACE). Pre: p, bytes page-aligned.
int map_file_noreplace(int fd, void* p, std::size_t bytes) noexcept;

// Maps `bytes` of the file from offset 0 MAP_PRIVATE read-only at p, replacing whatever is there
// (MAP_FIXED). The mapping shows the file's current bytes and never writes it, whatever the
// process does with mprotect. Pre: p, bytes page-aligned.
int map_file_private(int fd, void* p, std::size_t bytes) noexcept;

// Whether a child made by fork() inherits [p, p+bytes) (MADV_DOFORK / MADV_DONTFORK; a range a
// child does not inherit is unmapped in it). Pre: p, bytes page-aligned, the range mapped.
int set_fork_inherit(void* p, std::size_t bytes, bool inherit) noexcept;

// The F_SEAL_* bits (Linux ABI values, so callers need not include <fcntl.h>).
inline constexpr int seal_seal = 0x0001;
inline constexpr int seal_shrink = 0x0002;
inline constexpr int seal_grow = 0x0004;
inline constexpr int seal_write = 0x0008;
inline constexpr int seal_future_write = 0x0010;  // Linux 5.1+

// File seals (fcntl F_ADD_SEALS / F_GET_SEALS; the seal_* bits above). get_seals fails with EINVAL
// for a file that cannot be sealed (not a memfd or tmpfs file).
int add_seals(int fd, int seals) noexcept;
int get_seals(int fd, int* seals) noexcept;

// The target of /proc/self/fd/<fd> (for a memfd: "/memfd:<name> (deleted)"), NUL-terminated,
// truncated to `size` - 1 bytes.
int fd_path(int fd, char* out, std::size_t size) noexcept;

// dup(fd) with close-on-exec; close(fd).
int dup_fd(int fd, int* out) noexcept;
int close_fd(int fd) noexcept;

// ---------------------------------------------------------------------------------------------
// Processes, signals, environment
// ---------------------------------------------------------------------------------------------

// fork(2): on success *pid is the child's id in the parent and 0 in the child.
int fork_process(pid_t* pid) noexcept;

// getpid(2). Async-signal-safe.
pid_t process_id() noexcept;

// pthread_atfork(3). Handlers may be null. Fails only with ENOMEM.
int register_fork_handlers(void (*prepare)(), void (*parent)(), void (*child)()) noexcept;

// Gives the CPU to another runnable thread (sched_yield), for short waits on another thread.
void yield_cpu() noexcept;

// The calling thread's stack: *low its lowest usable address, *bytes its size
// (pthread_getattr_np; for the main thread glibc derives them from RLIMIT_STACK and
// /proc/self/maps). Returns the error of a failed call, or 0.
int thread_stack(std::uintptr_t* low, std::size_t* bytes) noexcept;

// Writes all of [s, s+n) to stderr (write(2), retried on EINTR and short writes).
// Async-signal-safe; allocates nothing. Returns the errno of a failed write.
int write_stderr(const char* s, std::size_t n) noexcept;

// sigaction(2): installs `action` (if non-null) for `sig` and stores the previous one in
// `previous` (if non-null). Async-signal-safe.
int set_signal_action(int sig, const struct sigaction* action, struct sigaction* previous) noexcept;

// Restores the default action for `sig` (SIG_DFL, empty mask). Async-signal-safe.
int reset_signal_action(int sig) noexcept;

// sigprocmask(2) for the calling thread (single-threaded use, or from a signal handler).
int set_signal_mask(int how, const sigset_t* set, sigset_t* previous) noexcept;

// raise(3): sends `sig` to the calling thread. Async-signal-safe.
int raise_signal(int sig) noexcept;

// The environment variable `name` (getenv(3)): *value points into the environment, valid until
// it changes. ENOENT when unset. Not thread-safe against setenv, like getenv.
int environment(const char* name, const char** value) noexcept;

// What a SIGSEGV's faulting instruction did, decoded from the signal context where the
// architecture reports it (x86-64: the page-fault error code); `unknown` elsewhere.
enum class fault_access { unknown, read, write, execute };
fault_access fault_access_of(const void* ucontext) noexcept;

// ---------------------------------------------------------------------------------------------
// Files by path (images: src/image/image.cpp)
// ---------------------------------------------------------------------------------------------

// Opens `path` read-only, close-on-exec, without waiting: a FIFO with no writer or a device that
// would block its open is opened at once (O_NONBLOCK during the open; the descriptor returned is
// blocking again), so the caller can fstat it and refuse what it cannot use. On success *fd is
// the descriptor.
int open_read(const char* path, int* fd) noexcept;

// Creates a new file from `path_template` (ending in "XXXXXX", replaced in place by random
// letters) with mode 0644 as the kernel applies it (less the umask, or the directory's default
// ACL), open read-write and close-on-exec; never follows a symlink. Reads and changes no umask.
// On success *fd is the descriptor. EINVAL when the template does not end in "XXXXXX".
int create_temp(char* path_template, int* fd) noexcept;

// *regular = the file behind fd is a regular file (memfds included); false for pipes, sockets,
// devices and directories (fstat).
int file_is_regular(int fd, bool* regular) noexcept;

// *read_only = fd was opened for reading only (O_RDONLY), so no mapping made through it can ever
// become writable (fcntl F_GETFL).
int fd_is_read_only(int fd, bool* read_only) noexcept;

// Opens the file behind fd anew, read-only and close-on-exec, through /proc/self/fd/<fd> (works
// for memfds and deleted files too). On success *out is a new descriptor of the same file (checked
// by device and inode: EXDEV otherwise). Fails where /proc is not mounted (ENOENT) or the file's
// permissions do not let this process read it (EACCES). Pre: fd is a regular file.
int reopen_read_only(int fd, int* out) noexcept;

// Flushes the file's data and metadata to its device (fsync).
int sync_file(int fd) noexcept;

// Opens a directory for reading, close-on-exec (fsync it with sync_file after a rename into it).
// EACCES for a directory this process may write but not read.
int open_directory(const char* path, int* fd) noexcept;

// Flushes everything written to the file system that holds fd, metadata included (syncfs).
// Makes a rename durable where the directory cannot be opened for fsync.
int sync_file_system(int fd) noexcept;

// What is at `path` itself (lstat(2): a symlink is reported as one, not followed), or with
// `follow` what it names (stat(2): the symlinks' final target). ENOENT when nothing is there (with
// `follow`, also a dangling symlink), ELOOP for a symlink loop.
enum class path_type { regular, symlink, directory, char_device, block_device, fifo, socket };
int path_type_of(const char* path, path_type* type, bool follow = false) noexcept;

// The file system (st_dev, lstat(2): a symlink's own) that holds what is at `path`. ENOENT when
// nothing is there.
int path_device_of(const char* path, std::uint64_t* device) noexcept;

// readlink(2) of the symlink at `path` into out (NUL-terminated). EINVAL when `path` is no
// symlink, ENAMETOOLONG when the target does not fit in `size` bytes.
int read_symlink(const char* path, char* out, std::size_t size) noexcept;

// rename(2): replaces `to` atomically; unlink(2).
int rename_file(const char* from, const char* to) noexcept;
int remove_file(const char* path) noexcept;

// ---------------------------------------------------------------------------------------------
// Loaded code (the malloc library tells the C runtime's allocations from the program's)
// ---------------------------------------------------------------------------------------------

// One executable segment of a loaded object. c_runtime: the object is the C library, the
// dynamic loader or another part of glibc (libm, libpthread, libdl, librt, libresolv, libanl,
// libutil, libnss_*, libmvec, libBrokenLocale, libc_malloc_debug, a gconv module).
struct code_segment {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool c_runtime = false;
};

// A number that changes whenever an object is loaded or unloaded (dl_iterate_phdr's
// dlpi_adds + dlpi_subs). Allocates nothing; takes the loader's lock briefly.
int loaded_code_generation(std::uint64_t* generation) noexcept;

// Fills out[0, *count) with the executable segments of every loaded object (at most `capacity`;
// the rest are left out) and *generation as loaded_code_generation() gives it. Allocates
// nothing; takes the loader's lock for the walk (dl_iterate_phdr).
int list_code_segments(code_segment* out, std::size_t capacity, std::size_t* count,
                       std::uint64_t* generation) noexcept;

// ---------------------------------------------------------------------------------------------
// Transparent huge pages
// ---------------------------------------------------------------------------------------------

enum class thp_mode { always, madvise, never, unavailable };

// The system's THP mode, from /sys/kernel/mm/transparent_hugepage/enabled. Never fails:
// a missing file reads as `unavailable`.
thp_mode transparent_huge_pages() noexcept;

// ---------------------------------------------------------------------------------------------
// /proc readers and the one parser of their text
// ---------------------------------------------------------------------------------------------

// Writes "/proc/<pid>/<what>" (pid 0: "/proc/self/<what>") into out[0, size), NUL-terminated.
// Returns ENAMETOOLONG when it does not fit. Async-signal-safe.
int proc_path(pid_t pid, const char* what, char* out, std::size_t size) noexcept;

// Calls f(line) for each line of text, without its newline.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// A mapping's header line in /proc/PID/maps and smaps: "lo-hi perms offset dev inode   path".
struct maps_header {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::string_view perms;  // "rw-p", "r--s", ...
  std::string_view path;   // the file, "[heap]", "[anon:NAME]", ... or empty (may hold spaces)
};

// Parses a header line (without its newline) into *out, whose views point into `line`. Returns
// false for any other line (an smaps field such as "Rss:   4 kB"), for perms that are not the
// kernel's four characters, and for an address wider than 64 bits (never wrapped around).
bool parse_maps_header(std::string_view line, maps_header* out) noexcept;

// Parses an smaps field line "Name:   123 kB" into its name and value in bytes. Returns false for
// any other line, and for a value whose bytes do not fit in 64 bits (never wrapped around).
bool parse_smaps_field(std::string_view line, std::string_view* name,
                       std::uint64_t* bytes) noexcept;

// Sums the named smaps field (e.g. "AnonHugePages", "Rss", "Private_Dirty") in bytes over the
// mappings of `pid` (0 = self) that overlap [begin, end), counting each mapping wholly.
// Allocates (reads a file). Returns the errno of the failed open or read.
int smaps_field_in_range(pid_t pid, std::uintptr_t begin, std::uintptr_t end, const char* field,
                         std::uint64_t* bytes) noexcept;

// Reads `count` raw 64-bit pagemap entries of `pid` (0 = self) for the pages starting at the
// page-aligned address `begin` (bit 63 present, bit 56 exclusively mapped, bits 0-54 the frame
// number, zero unless the caller has CAP_SYS_ADMIN). Returns the errno of the failed open/pread.
int read_pagemap(pid_t pid, std::uintptr_t begin, std::size_t count, std::uint64_t* out) noexcept;

// Reads the whole of /proc/<pid>/<what> (pid 0 = self; `what` may name a nested file such as
// "task/12/children") into *out. Allocates. Returns the errno of the failed open or read: ENOENT
// or ESRCH for a vanished process, EACCES/EPERM without permission, ENOENT for a file this kernel
// lacks (smaps_rollup before 4.14). An empty file reads as an empty string.
int read_proc_file(pid_t pid, const char* what, std::string* out) noexcept;

// Appends the id of every process visible in /proc to *out. Allocates. Returns the errno of the
// failed opendir/readdir.
int list_processes(std::vector<pid_t>* out) noexcept;
// One line of /proc/PID/maps.
struct mapping {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool readable = false;
  bool writable = false;
  bool is_private = false;  // 'p' (copy-on-write) rather than 's' (shared)
  std::string path;         // the file, "[heap]", "[stack]", ... or empty for anonymous memory
};

// Opens, read-only, the descriptor of `pid` (0 = self) whose /proc/PID/fd link reads exactly
// `target` (e.g. "/memfd:permafrost-arenas (deleted)") and which is a regular file: the first
// one found; the open never blocks (a FIFO swapped in meanwhile is skipped). Needs the same
// right as reading the process's smaps (ptrace read access). Returns ENOENT when none has that
// link, else the errno of the failed opendir/open (ESRCH/ENOENT: the process is gone,
// EACCES/EPERM: no permission).
int open_process_fd(pid_t pid, const char* target, int* fd) noexcept;

// Lists the mappings of `pid` (0 = self) in address order. Allocates (reads a file, fills *out).
// Returns the errno of the failed open or read; *out is then left empty.
int read_mappings(pid_t pid, std::vector<mapping>* out) noexcept;

}  // namespace permafrost::os
