#pragma once
// The decoder stack from token ids to per-token log-probabilities, on one backend. Batches are
// packed (no padding is computed): sequence s owns tokens [seq_offsets[s], seq_offsets[s+1]).
#include <memory>
#include <vector>

#include "io/checkpoint.hpp"
#include "io/token_dataset.hpp"
#include "model/moe_layer.hpp"
#include "model/weights.hpp"

namespace moe {

// Sees every decoder layer's output: the run checks it for non-finite values, honours stop
// requests and feeds its watchdog there (runtime/layer_guard.hpp). `hidden` is the residual
// stream [batch.num_tokens(), hidden_size] in backend memory; the observer may overwrite rows.
// Called on every rank for every layer (empty batches too), so it may be collective.
class LayerObserver {
 public:
  virtual ~LayerObserver() = default;
  virtual void after_layer(int64_t layer, float* hidden, int64_t hidden_size, const TokenBatch& batch,
                           Backend& backend) = 0;
};

struct TransformerOptions {
  GatingPolicy gating;
  TensorParallel tp;  // the tp group this rank slices the dense weights with
};

class Transformer {
 public:
  // Loads the non-expert weights from ckpt; experts come from `experts`.
  Transformer(CheckpointReader& ckpt, Backend& backend, ExpertStore& experts, Dispatcher& dispatcher,
              Workspace& expert_ws, const TransformerOptions& options);

  // Sizes every per-step buffer for batches of up to max_seqs sequences and max_tokens tokens of
  // which none is longer than max_len, so that the batch loop allocates nothing.
  void reserve(int64_t max_seqs, int64_t max_tokens, int64_t max_len);

  // token_logprobs[i] = log p(ids[i] | the earlier ids of its sequence); NaN for each
  // sequence's first token. token_logprobs has batch.num_tokens() entries (host).
  // Collective over the tp group and, in MoE layers, over every rank holding experts: every rank
  // calls it once per step, with an empty batch when its group has no sequences.
  void score(const TokenBatch& batch, float* token_logprobs, PhaseTimes* times);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  std::vector<MoeLayerStats> moe_stats() const;
  std::vector<const MoeLayer*> moe_layers() const;  // in layer order, dense layers skipped
  // Observes the layers of later score() calls (nullptr: none).
  void set_layer_observer(LayerObserver* observer) { observer_ = observer; }
  Workspace& workspace() { return ws_; }
  const Workspace& workspace() const { return ws_; }

 private:
  void upload_batch(Step& step, const TokenBatch& batch);
  void lm_head(Step& step, const float* hidden, const TokenBatch& batch, float* token_logprobs);

  ModelConfig config_;
  Backend& backend_;
  TensorParallel tp_;
  ModelWeights weights_;
  Workspace ws_;
  std::vector<std::unique_ptr<MoeLayer>> moe_layers_;  // null for dense layers
  LayerObserver* observer_ = nullptr;
  // Host staging reused from batch to batch.
  std::vector<int32_t> positions_;
  std::vector<int32_t> targets_;
  std::vector<double> lse_;
  std::vector<float> target_logit_;
  std::vector<double> lse_all_;          // [tp, T] every vocabulary slice's logsumexp
  std::vector<float> target_logit_all_;  // [tp, T]
};

}  // namespace moe
