#include "runtime/layer_guard.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "runtime/signals.hpp"

namespace moe {

LayerGuard::LayerGuard(MPI_Comm world, NonFiniteAction action, int64_t batch_size, Watchdog* watchdog)
    : world_(world), action_(action), batch_size_(batch_size), watchdog_(watchdog) {}

void LayerGuard::mark(int64_t s) {
  if (std::find(marked_in_batch_.begin(), marked_in_batch_.end(), s) != marked_in_batch_.end()) return;
  marked_in_batch_.push_back(s);
}

void LayerGuard::after_layer(int64_t layer, float* hidden, int64_t hidden_size, const TokenBatch& batch,
                             Backend& backend) {
  if (layer == 0) marked_in_batch_.clear();
  const int64_t t = batch.num_tokens();
  host_.resize(static_cast<std::size_t>(t * hidden_size));
  if (t > 0) backend.copy_to_host(host_.data(), hidden, host_.size() * sizeof(float));
  int64_t first_bad = -1;
  for (int64_t s = 0; s < batch.num_seqs; ++s) {
    const float* begin = host_.data() + batch.seq_offsets[s] * hidden_size;
    const float* end = host_.data() + batch.seq_offsets[s + 1] * hidden_size;
    // A sum is finite only if every term is (inf - inf is NaN): one branch per sequence.
    float sum = 0;
    for (const float* p = begin; p < end; ++p) sum += *p * 0.0f;
    if (std::isfinite(sum)) continue;
    if (first_bad < 0) first_bad = batch.first_seq + s;
    if (action_ == NonFiniteAction::mark) {
      // Zeroed so the bad values cannot reach other sequences through routing and capacity.
      mark(s);
      std::fill(const_cast<float*>(begin), const_cast<float*>(end), 0.0f);
      backend.copy_to_device(hidden + batch.seq_offsets[s] * hidden_size, begin,
                             static_cast<std::size_t>(end - begin) * sizeof(float));
    }
  }
  if (watchdog_) watchdog_->beat();
  const std::string where = fmt::format("layer {}", layer);
  agree(where.c_str(), action_ == NonFiniteAction::stop ? first_bad : -1);
}

void LayerGuard::check_scores(const TokenBatch& batch, float* token_logprobs) {
  int64_t first_bad = -1;
  for (int64_t s = 0; s < batch.num_seqs; ++s) {
    const int64_t begin = batch.seq_offsets[s];
    const int64_t end = batch.seq_offsets[s + 1];
    bool bad = std::find(marked_in_batch_.begin(), marked_in_batch_.end(), s) != marked_in_batch_.end();
    for (int64_t i = begin + 1; i < end && !bad; ++i) bad = !std::isfinite(token_logprobs[i]);
    if (!bad) continue;
    if (first_bad < 0) first_bad = batch.first_seq + s;
    if (action_ == NonFiniteAction::mark) {
      mark(s);
      std::fill(token_logprobs + begin, token_logprobs + end, std::numeric_limits<float>::quiet_NaN());
    }
  }
  for (int64_t s : marked_in_batch_) marked_.push_back(batch.first_seq + s);
  marked_in_batch_.clear();
  agree("the LM head (scores)", action_ == NonFiniteAction::stop ? first_bad : -1);
}

void LayerGuard::agree(const char* where, int64_t first_bad_seq) {
  // MAX over {stop, -first_bad}: the lowest bad sequence of any rank.
  int64_t values[2] = {stop_signal_received() != 0 ? 1 : 0,
                       first_bad_seq >= 0 ? -first_bad_seq : std::numeric_limits<int64_t>::min()};
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, 2, MPI_INT64_T, MPI_MAX, world_));
  if (values[1] != std::numeric_limits<int64_t>::min()) {
    const int64_t seq = -values[1];
    throw CollectiveError(fmt::format(
        "non-finite values in the output of {} in batch {} (sequence {}): the model's weights or activations overflow "
        "float32 (set on_nonfinite: mark to give such sequences NaN scores, list them in the report and go on)",
        where, seq / batch_size_, seq));
  }
  if (values[0] != 0) {
    if (watchdog_) watchdog_->stop_acknowledged();
    throw StopRequested();
  }
}

}  // namespace moe
