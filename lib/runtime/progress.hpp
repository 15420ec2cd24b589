#pragma once
// Rank 0's progress: batches, tokens, tokens/s and ETA, at most every `interval` seconds as a line,
// or as a bar redrawn in place when the output is a terminal. A resumed run counts the batches and
// tokens done before it as done, but its rate (and so its ETA) only from its own work.
#include <cstdint>
#include <cstdio>

namespace moe {

struct ProgressTotals {
  int64_t batches = 0;
  int64_t tokens = 0;
};

class Progress {
 public:
  Progress(ProgressTotals total, ProgressTotals done_before, double interval_seconds, bool enabled, std::FILE* out);
  // Called after each step with what the whole job has scored so far (done_before included).
  void update(ProgressTotals done);
  void finish(ProgressTotals done);

 private:
  void print(ProgressTotals done, double now, bool final);
  ProgressTotals total_;
  ProgressTotals before_;
  double interval_;
  bool enabled_;
  bool tty_;
  std::FILE* out_;
  double start_;
  double last_ = 0;
};

}  // namespace moe
