#pragma once
// Which global batch each data-parallel slot runs at each step, skipping the batches that the
// resume journal marks as done. Global batch b holds sequences [b * batch_size, (b + 1) *
// batch_size) whatever the layout, so a journal written in these terms survives a change of how
// steps are run. The pending batches are dealt out in order: at step s, slot k runs pending batch
// s * num_slots + k. With nothing done that is batch s * num_slots + k, the layout of a fresh run.
#include <cstdint>
#include <vector>

namespace moe {

class BatchSchedule {
 public:
  BatchSchedule(const std::vector<int32_t>& journal, int64_t num_slots) : num_slots_(num_slots) {
    for (std::size_t b = 0; b < journal.size(); ++b)
      if (journal[b] == 0) pending_.push_back(static_cast<int64_t>(b));
    num_done_before_ = static_cast<int64_t>(journal.size() - pending_.size());
  }
  int64_t num_steps() const { return (num_pending() + num_slots_ - 1) / num_slots_; }
  int64_t num_pending() const { return static_cast<int64_t>(pending_.size()); }
  int64_t num_done_before() const { return num_done_before_; }
  // The global batch of `slot` at `step`, or -1 when the slot is idle (the last step may be short).
  int64_t batch(int64_t step, int64_t slot) const {
    const int64_t i = step * num_slots_ + slot;
    return i < num_pending() ? pending_[static_cast<std::size_t>(i)] : -1;
  }

 private:
  int64_t num_slots_;
  int64_t num_done_before_ = 0;
  std::vector<int64_t> pending_;
};

}  // namespace moe
