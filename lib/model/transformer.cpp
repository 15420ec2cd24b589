#include "model/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"
#include "model/attention.hpp"
#include "model/mlp.hpp"

namespace moe {

Transformer::Transformer(CheckpointReader& ckpt, Backend& backend, ExpertStore& experts, Dispatcher& dispatcher,
                         Workspace& expert_ws, const TransformerOptions& options)
    : config_(ckpt.config()),
      backend_(backend),
      tp_(options.tp),
      weights_(load_weights(ckpt, backend, options.tp)),
      ws_(backend) {
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    moe_layers_.push_back(
        config_.is_moe_layer(i)
            ? std::make_unique<MoeLayer>(i, config_.num_experts(i), options.gating, dispatcher, experts, expert_ws)
            : nullptr);
  }
}

void Transformer::reserve(int64_t max_seqs, int64_t max_tokens, int64_t max_len) {
  // One synthetic batch (empty on a rank with no work: the warm-up is collective too) of the largest shape sizes every
  // slot exactly as score() will use it. It runs as the backend's sizing pass: the GEMMs, attention and LM head
  // write zeros instead of computing, so reserving costs memory traffic, not a batch of FLOPs.
  TokenBatch batch;
  batch.num_seqs = max_seqs;
  batch.seq_offsets.resize(static_cast<std::size_t>(max_seqs + 1));
  for (int64_t s = 0; s <= max_seqs; ++s) batch.seq_offsets[s] = std::min(max_tokens, s * max_len);
  batch.seq_offsets[max_seqs] = max_tokens;
  batch.ids.assign(static_cast<std::size_t>(max_tokens), 0);
  std::vector<float> out(static_cast<std::size_t>(max_tokens));
  struct SizingPass {
    Backend& backend;
    explicit SizingPass(Backend& b) : backend(b) { backend.set_sizing_pass(true); }
    ~SizingPass() { backend.set_sizing_pass(false); }
  } sizing(backend_);
  score(batch, out.data(), nullptr);
  for (auto& layer : moe_layers_)
    if (layer) layer->reset_stats();
}

void Transformer::upload_batch(Step& step, const TokenBatch& batch) {
  const int64_t t = batch.num_tokens();
  positions_.resize(static_cast<std::size_t>(t));
  targets_.resize(static_cast<std::size_t>(t));
  for (int64_t s = 0; s < batch.num_seqs; ++s) {
    const int64_t begin = batch.seq_offsets[s];
    const int64_t end = batch.seq_offsets[s + 1];
    for (int64_t i = begin; i < end; ++i) {
      positions_[i] = static_cast<int32_t>(i - begin);
      // The row of token i predicts token i + 1; a sequence's last row predicts nothing (0 is
      // a harmless stand-in whose result is never used).
      targets_[i] = i + 1 < end ? batch.ids[i + 1] : 0;
    }
  }
  auto* ids = step.ws.get<int32_t>(slot::token_ids, static_cast<std::size_t>(t));
  auto* pos = step.ws.get<int32_t>(slot::positions, static_cast<std::size_t>(t));
  auto* offsets = step.ws.get<int64_t>(slot::seq_offsets, static_cast<std::size_t>(batch.num_seqs + 1));
  backend_.copy_to_device(ids, batch.ids.data(), sizeof(int32_t) * static_cast<std::size_t>(t));
  backend_.copy_to_device(pos, positions_.data(), sizeof(int32_t) * static_cast<std::size_t>(t));
  backend_.copy_to_device(offsets, batch.seq_offsets.data(),
                          sizeof(int64_t) * static_cast<std::size_t>(batch.num_seqs + 1));
  step.token_ids = ids;
  step.positions = pos;
  step.seq_offsets = offsets;
}

void Transformer::score(const TokenBatch& batch, float* token_logprobs, PhaseTimes* times) {
  const int64_t t = batch.num_tokens();
  const int64_t d = config_.hidden_size;
  Step step{backend_, ws_, config_, times, tp_};
  step.heads = weights_.heads;
  step.kv_heads = weights_.kv_heads;
  step.num_tokens = t;
  step.num_seqs = batch.num_seqs;
  step.max_len = batch.max_length();
  float* h = ws_.get<float>(slot::hidden, static_cast<std::size_t>(t * d));
  float* normed = ws_.get<float>(slot::normed, static_cast<std::size_t>(t * d));
  {
    ScopedPhase phase(times, "embed");
    upload_batch(step, batch);
    backend_.embed(step.token_ids, t, weights_.embed_tokens.view, weights_.vocab_begin, h, false);
  }
  if (tp_.active()) {
    // Each tp rank looked up the tokens of its vocabulary slice (zeros for the rest).
    ScopedPhase phase(times, "tp.allreduce");
    backend_.synchronize();
    tp_.comm->allreduce_sum(h, static_cast<std::size_t>(t * d));
  }
  if (config_.position == PositionKind::learned) {
    ScopedPhase phase(times, "embed");
    backend_.embed(step.positions, t, weights_.embed_positions.view, 0, h, true);
  }
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const LayerWeights& layer = weights_.layers[static_cast<std::size_t>(i)];
    {
      ScopedPhase phase(times, "norm");
      apply_norm(step, layer.attn_norm, h, normed, t);
    }
    attention_forward(step, layer, h);
    {
      ScopedPhase phase(times, "norm");
      apply_norm(step, layer.mlp_norm, h, normed, t);
    }
    if (moe_layers_[static_cast<std::size_t>(i)]) {
      moe_layers_[static_cast<std::size_t>(i)]->forward(step, layer, h);
    } else {
      mlp_forward_into(step, *layer.dense, normed, h, "dense_mlp");
    }
    if (observer_) observer_->after_layer(i, h, d, batch, backend_);
  }
  {
    ScopedPhase phase(times, "norm");
    apply_norm(step, weights_.final_norm, h, normed, t);
  }
  lm_head(step, normed, batch, token_logprobs);
}

void Transformer::lm_head(Step& step, const float* hidden, const TokenBatch& batch, float* token_logprobs) {
  const int64_t t = step.num_tokens;
  auto* targets = ws_.get<int32_t>(slot::targets, static_cast<std::size_t>(t));
  auto* lse = ws_.get<double>(slot::lse, static_cast<std::size_t>(t));
  auto* target_logit = ws_.get<float>(slot::target_logit, static_cast<std::size_t>(t));
  void* scratch = ws_.get<std::byte>(slot::lm_scratch, backend_.lm_head_scratch_bytes());
  const auto n = static_cast<std::size_t>(t);
  lse_.resize(n);
  target_logit_.resize(n);
  {
    ScopedPhase phase(step.times, "lm_head");
    backend_.copy_to_device(targets, targets_.data(), sizeof(int32_t) * n);
    backend_.lm_head_logsumexp(hidden, t, weights_.lm_head.view, weights_.vocab_begin, targets, lse, target_logit,
                               scratch);
    backend_.copy_to_host(lse_.data(), lse, sizeof(double) * n);
    backend_.copy_to_host(target_logit_.data(), target_logit, sizeof(float) * n);
  }
  if (tp_.active()) {
    // Vocabulary-parallel: combine the slices' logsumexps (fp64) and take the target logit from
    // the slice that holds the target (the others report -inf).
    ScopedPhase phase(step.times, "tp.allgather");
    const auto size = static_cast<std::size_t>(tp_.size);
    lse_all_.resize(size * n);
    target_logit_all_.resize(size * n);
    tp_.comm->allgather(lse_.data(), sizeof(double) * n, lse_all_.data());
    tp_.comm->allgather(target_logit_.data(), sizeof(float) * n, target_logit_all_.data());
    for (std::size_t i = 0; i < n; ++i) {
      double hi = -std::numeric_limits<double>::infinity();
      float target = -std::numeric_limits<float>::infinity();
      for (std::size_t r = 0; r < size; ++r) {
        hi = std::max(hi, lse_all_[r * n + i]);
        target = std::max(target, target_logit_all_[r * n + i]);
      }
      double sum = 0.0;
      for (std::size_t r = 0; r < size; ++r) sum += std::exp(lse_all_[r * n + i] - hi);
      lse_[i] = hi + std::log(sum);
      target_logit_[i] = target;
    }
  }
  for (int64_t s = 0; s < batch.num_seqs; ++s) {
    const int64_t begin = batch.seq_offsets[s];
    const int64_t end = batch.seq_offsets[s + 1];
    if (begin < end) token_logprobs[begin] = std::numeric_limits<float>::quiet_NaN();
    for (int64_t i = begin + 1; i < end; ++i)
      token_logprobs[i] = static_cast<float>(static_cast<double>(target_logit_[i - 1]) - lse_[i - 1]);
  }
}

std::vector<MoeLayerStats> Transformer::moe_stats() const {
  std::vector<MoeLayerStats> out;
  for (const auto& layer : moe_layers_)
    if (layer) out.push_back(layer->stats());
  return out;
}

std::vector<const MoeLayer*> Transformer::moe_layers() const {
  std::vector<const MoeLayer*> out;
  for (const auto& layer : moe_layers_)
    if (layer) out.push_back(layer.get());
  return out;
}

}  // namespace moe
