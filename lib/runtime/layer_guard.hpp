#pragma once
// What the batch loop checks between layers (LayerObserver): that every layer's output is finite,
// that no stop was requested (so a long step stops within a layer's time, not a step's), and that
// the rank makes progress (the watchdog). Every check is agreed on by all ranks (one small
// all-reduce per layer), as all ranks go through the layers together.
#include <mpi.h>

#include <cstdint>
#include <exception>
#include <vector>

#include "config/run_config.hpp"
#include "model/transformer.hpp"
#include "runtime/watchdog.hpp"

namespace moe {

// Thrown on every rank together when a stop signal was agreed on between layers.
class StopRequested : public std::exception {
 public:
  const char* what() const noexcept override { return "stop requested"; }
};

class LayerGuard : public LayerObserver {
 public:
  LayerGuard(MPI_Comm world, NonFiniteAction action, int64_t batch_size, Watchdog* watchdog);

  // The global batch this rank scores next (-1: none).
  void begin_batch(int64_t batch) { batch_ = batch; }
  // Collective. Throws CollectiveError (stop) on non-finite values, StopRequested on a stop.
  void after_layer(int64_t layer, float* hidden, int64_t hidden_size, const TokenBatch& batch,
                   Backend& backend) override;
  // Collective, after the LM head: every score but each sequence's first must be finite; in mark
  // mode, sequences marked in this batch get NaN scores throughout.
  void check_scores(const TokenBatch& batch, float* token_logprobs);
  // Sequences (global indices) this rank marked (mark mode), in order.
  const std::vector<int64_t>& marked() const { return marked_; }

 private:
  // Agrees on the lowest bad sequence of any rank (-1: none) and the stop flag; acts on them.
  void agree(const char* where, int64_t first_bad_seq);
  void mark(int64_t seq);

  MPI_Comm world_;
  NonFiniteAction action_;
  int64_t batch_size_;
  Watchdog* watchdog_;
  int64_t batch_ = -1;
  std::vector<float> host_;  // one layer's output, on the host
  std::vector<int64_t> marked_;
  std::vector<int64_t> marked_in_batch_;  // local sequence indices
};

}  // namespace moe
