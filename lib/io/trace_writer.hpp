#pragma once
// The routing trace (`moe.trace: true`, docs/formats.md): per global batch and MoE layer, each
// expert's routed row count, and optionally the top-k expert ids of every token, written into the
// results file next to the logprobs. The expert cache's `belady` policy, `moe-bench cache` and the
// placement planners read it back (io/trace_reader.hpp).
#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "config/model_config.hpp"
#include "io/h5.hpp"
#include "io/token_dataset.hpp"

namespace moe {

// What one MoE layer routed in this rank's last batch (its share of it when tp > 1).
struct TraceLayerBatch {
  int64_t layer = 0;
  const std::vector<int64_t>* counts = nullptr;  // [E] rows per expert
  const std::vector<int32_t>* topk = nullptr;    // [tokens routed here, k]
};

class TraceWriter {
 public:
  // Collective over the file's communicator. Creates `trace/layer_{i}/expert_rows` (and
  // `topk_ids`) for every MoE layer, or, when `resumed`, uses the ones the file has.
  // tp: the group's tensor-parallel communicator (nullptr when tp = 1): its ranks each route a
  // block of the batch's tokens, and their counts and ids are combined before writing.
  TraceWriter(h5::File& file, const ModelConfig& model, const TokenDataset& tokens, int64_t batch_size, bool with_topk,
              bool resumed, Communicator* tp);

  // Collective over the file's communicator and, with tp > 1, over tp. batch: the global batch
  // this rank's group ran (-1: none); num_tokens: its tokens; write: whether this rank writes
  // (one rank per group).
  void write_batch(int64_t batch, int64_t num_tokens, const std::vector<TraceLayerBatch>& layers, bool write);

 private:
  h5::File& file_;
  int64_t batch_size_;
  int64_t top_k_;
  bool with_topk_;
  Communicator* tp_;
  std::vector<int64_t> seq_token_start_;  // [N + 1] packed position of each sequence's first token
  std::vector<double> counts_;            // staging, reused
  std::vector<int64_t> counts_out_;
  std::vector<int32_t> ids_block_;
  std::vector<int32_t> ids_all_;
};

// The dataset names of MoE layer `layer`'s trace.
std::string trace_counts_dataset(int64_t layer);
std::string trace_topk_dataset(int64_t layer);

}  // namespace moe
