#pragma once
// A program started in the background whose output a test reads line by line while it runs, and
// signals: for stopping a run at a chosen point (tests/integration/resume_test.cpp).
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace moe::test {

class ChildProcess {
 public:
  // Runs `command` with /bin/sh in `folder`, stdout and stderr into one pipe.
  ChildProcess(const std::string& command, const std::string& folder);
  ~ChildProcess();  // kills the process group if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The next line of output, or nothing at end of output or after `timeout_seconds`.
  std::optional<std::string> read_line(double timeout_seconds);
  // Reads the rest of the output, waits for the process and returns its exit code (128 + signal
  // when a signal ended it).
  int wait();
  // wait(), for at most `seconds`: the exit code, or nothing while the process still runs.
  std::optional<int> wait_for(double seconds);
  // Ends the process group (SIGKILL) and reaps the process; returns its exit code (128 + 9).
  int kill_group();
  const std::string& output() const { return output_; }  // everything read so far

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string pending_;
  std::string output_;
  std::optional<int> exit_code_;
};

// The processes whose parent is `parent` (from /proc), e.g. the ranks that mpirun started.
std::vector<pid_t> child_pids(pid_t parent);
// Whether `pid` has ended: gone, or a zombie its parent has not reaped.
bool process_ended(pid_t pid);

}  // namespace moe::test
