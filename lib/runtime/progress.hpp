#pragma once
// Rank 0's progress line: batches, tokens, tokens/s and ETA, at most every `interval` seconds.
#include <cstdint>
#include <cstdio>

namespace moe {

class Progress {
 public:
  Progress(int64_t total_steps, int64_t total_tokens, double interval_seconds, bool enabled, std::FILE* out);
  // Called after each step with the tokens the whole job has scored so far.
  void update(int64_t steps_done, int64_t tokens_done);
  void finish(int64_t tokens_done);

 private:
  void print(int64_t steps_done, int64_t tokens_done, double now, bool final);
  int64_t total_steps_;
  int64_t total_tokens_;
  double interval_;
  bool enabled_;
  bool tty_;
  std::FILE* out_;
  double start_;
  double last_ = 0;
};

}  // namespace moe
