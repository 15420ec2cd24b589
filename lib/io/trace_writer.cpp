#include "io/trace_writer.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace moe {

std::string trace_counts_dataset(int64_t layer) {
  return "trace/layer_" + std::to_string(layer) + "/expert_rows";
}
std::string trace_topk_dataset(int64_t layer) {
  return "trace/layer_" + std::to_string(layer) + "/topk_ids";
}

TraceWriter::TraceWriter(h5::File& file, const ModelConfig& model, const TokenDataset& tokens, int64_t batch_size,
                         bool with_topk, bool resumed, Communicator* tp)
    : file_(file), batch_size_(batch_size), top_k_(model.top_k), with_topk_(with_topk), tp_(tp) {
  const int64_t n = tokens.num_seqs();
  seq_token_start_.assign(static_cast<std::size_t>(n + 1), 0);
  for (int64_t s = 0; s < n; ++s) seq_token_start_[s + 1] = seq_token_start_[s] + tokens.length(s);
  const int64_t num_batches = (n + batch_size - 1) / batch_size;
  for (int64_t i = 0; i < model.num_layers; ++i) {
    if (!model.is_moe_layer(i)) continue;
    const int64_t e = model.num_experts(i);
    if (resumed) {
      // The run fingerprint covers moe.trace*, so a resumed file has these datasets.
      MOE_CHECK(file_.has(trace_counts_dataset(i)), "{}: has no routing trace '{}' to continue", file_.path(),
                trace_counts_dataset(i));
      continue;
    }
    // Rows of batches not yet run read as 0; readers take only rows the journal marks done.
    file_.create_dataset<int64_t>(trace_counts_dataset(i), {num_batches, e});
    if (with_topk_) file_.create_dataset<int32_t>(trace_topk_dataset(i), {tokens.total_tokens(), top_k_});
  }
  if (resumed) return;
  file_.write_attributes({{"trace_batch_size", batch_size}, {"trace_top_k", with_topk ? top_k_ : 0}});
  file_.flush();  // the file's structure is final before the first batch (ResultWriter's rule)
}

void TraceWriter::write_batch(int64_t batch, int64_t num_tokens, const std::vector<TraceLayerBatch>& layers,
                              bool write) {
  const bool has_batch = batch >= 0;
  const int64_t first_token = has_batch ? seq_token_start_[static_cast<std::size_t>(batch * batch_size_)] : 0;
  const int64_t tp = tp_ ? tp_->size() : 1;
  for (const TraceLayerBatch& l : layers) {
    const int64_t e = static_cast<int64_t>(l.counts->size());
    // With tp > 1 each rank routed a block of the tokens: the group's counts are the sum.
    counts_.assign(l.counts->begin(), l.counts->end());
    if (tp > 1) tp_->allreduce_sum(counts_.data(), counts_.size());
    counts_out_.assign(counts_.begin(), counts_.end());
    const bool mine = write && has_batch;
    file_.write<int64_t>(trace_counts_dataset(l.layer), {mine ? batch : 0, 0}, {mine ? 1 : 0, mine ? e : 0},
                         counts_out_.data(), true);
    if (!with_topk_) continue;
    const int32_t* ids = l.topk->data();
    if (tp > 1) {
      // Blocks of ceil(T / tp) tokens in tp-rank order (MoeLayer's split); short ones are padded.
      const int64_t block = (num_tokens + tp - 1) / tp;
      ids_block_.assign(static_cast<std::size_t>(block * top_k_), -1);
      std::copy(l.topk->begin(), l.topk->end(), ids_block_.begin());
      ids_all_.resize(static_cast<std::size_t>(block * top_k_ * tp));
      tp_->allgather(ids_block_.data(), sizeof(int32_t) * ids_block_.size(), ids_all_.data());
      ids = ids_all_.data();
    }
    const int64_t rows = mine ? num_tokens : 0;
    file_.write<int32_t>(trace_topk_dataset(l.layer), {mine ? first_token : 0, 0}, {rows, rows > 0 ? top_k_ : 0}, ids,
                         true);
  }
}

}  // namespace moe
