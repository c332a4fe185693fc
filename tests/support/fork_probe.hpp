// Test support: fork children, let them work, then compare their page frames with the parent's
// through /proc/PID/pagemap while they are still alive. Real kernel state, no mocks. The
// comparison itself is permafrost::sharing_audit (memstat.hpp); this file only runs the children.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <sys/types.h>
#include <vector>

namespace permafrost::test {

// How one child's view of a range compares with the parent's.
struct sharing {
  std::size_t pages = 0;           // pages in the range
  std::size_t parent_present = 0;  // present in the parent
  std::size_t child_present = 0;   // present in the child
  std::size_t copied = 0;  // copy-on-write copies, as permafrost::sharing_audit counts them:
                           // present in both on different frames (without root: present in both
                           // and exclusively mapped in the child)
  int exit_status = 0;     // the child's wait status
};

// True when pagemap shows frame numbers (CAP_SYS_ADMIN).
bool frames_visible();

// Forks `children` processes that each run `work` (an exception or a non-zero return fails the
// child), then, with all of them alive, compares `range` in each child with the parent.
std::vector<sharing> fork_and_compare(int children, std::span<const std::byte> range,
                                      const std::function<int()>& work);

// Runs `work` in a forked child and returns the wait status (for tests that expect a crash).
int wait_status_of(const std::function<void()>& work);

// What a child wrote to stderr and how it ended.
struct child_output {
  int status = 0;           // the wait status
  std::string stderr_text;  // everything the child wrote to fd 2
};

// As wait_status_of, with the child's stderr captured through a pipe.
child_output run_capturing_stderr(const std::function<void()>& work);

// Compares `range` in process `pid` (alive, or stopped) with the calling process, as
// fork_and_compare does for its children. exit_status is left 0.
sharing compare_pages(pid_t pid, std::span<const std::byte> range);

// Raw pagemap entries for [begin, begin + bytes) in pid (0 = self); begin need not be aligned.
std::vector<std::uint64_t> pagemap(pid_t pid, const void* begin, std::size_t bytes);

}  // namespace permafrost::test
