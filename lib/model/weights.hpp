#pragma once
// The non-expert weights of a model in backend memory, as the forward pass uses them: q/k/v
// fused into one matrix and a SwiGLU MLP's gate/up fused into one [2F, d] matrix, so each is one
// GEMM. Expert weights live in the ExpertStore (moe/expert_store.hpp).
#include <optional>
#include <vector>

#include "backend/backend.hpp"
#include "config/model_config.hpp"
#include "io/checkpoint.hpp"
#include "model/tensor_parallel.hpp"

namespace moe {

struct Matrix {
  DeviceBuffer buffer;
  WeightView view;
  // Set when view points into the mapped checkpoint instead of buffer (io/mapped_file.hpp).
  std::shared_ptr<const MappedFile> mapped;
};

struct Norm {
  DeviceBuffer weight;
  DeviceBuffer bias;  // layernorm only
};

struct MlpWeights {
  Matrix in;   // [mlp_in_rows(F), d]: gate rows then up rows (swiglu), or up (gelu)
  Matrix out;  // [d, F]
  int64_t ffn = 0;
};

// Shapes are this tp rank's slices: H and KV are its heads, F its MLP columns, V its vocabulary.
struct LayerWeights {
  Norm attn_norm;
  Matrix qkv;             // [(H + 2 KV) * hd, d]
  DeviceBuffer qkv_bias;  // [(H + 2 KV) * hd] when qkv_bias
  DeviceBuffer q_norm;    // [H * hd] when qk_norm
  DeviceBuffer k_norm;    // [KV * hd] when qk_norm
  Matrix o_proj;          // [d, H * hd]: a column slice, so its output is a partial sum over tp
  Norm mlp_norm;
  std::optional<MlpWeights> dense;   // dense layers
  Matrix router;                     // MoE layers: [E, d]
  std::optional<MlpWeights> shared;  // MoE layers with a shared/residual MLP
  Matrix shared_gate;                // [1, d] with shared_gate = sigmoid
};

struct ModelWeights {
  Matrix embed_tokens;     // [V, d]
  Matrix embed_positions;  // [max_positions, d] (learned positions)
  std::vector<LayerWeights> layers;
  Norm final_norm;
  Matrix lm_head;         // [V, d]; a view of embed_tokens when tied (its buffer is then empty)
  std::size_t bytes = 0;         // weight bytes this rank uses: in backend memory or mapped
  std::size_t mapped_bytes = 0;  // of which in place in the mapped checkpoint (page cache)
  // This tp rank's slice of the heads and of the vocabulary (embedding and LM head rows).
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t vocab_begin = 0;
  int64_t vocab_rows = 0;
};

// Reads and uploads every non-expert tensor of the checkpoint (validated by the reader), only
// this tp rank's slices: heads (GQA-aware), MLP columns and vocabulary rows. Throws moe::Error
// when the model cannot be sliced tp ways.
ModelWeights load_weights(CheckpointReader& ckpt, Backend& backend, const TensorParallel& tp = {});

// Uploads a host tensor as a [rows, cols] matrix (a 1-row matrix for 1-D tensors).
Matrix upload_matrix(Backend& backend, const HostTensor& t);

// Reads this tp rank's columns of an MLP (`prefix`/gate_proj, up_proj, down_proj) of size ffn,
// fusing gate and up.
MlpWeights load_mlp(CheckpointReader& ckpt, Backend& backend, const std::string& prefix, int64_t ffn,
                    const TensorParallel& tp = {});

}  // namespace moe
