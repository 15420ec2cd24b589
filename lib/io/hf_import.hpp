#pragma once
// Hugging Face checkpoint folder (config.json + model.safetensors, or shards listed by
// model.safetensors.index.json) -> our HDF5 checkpoint. Everything is checked before the output
// is created (architecture, every tensor present with the shape config.json implies, no tensor
// left over); then tensors stream one at a time (row blocks for 2-D ones), so peak memory is about
// one expert matrix or one block, never the model.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "io/hf_config.hpp"

namespace moe {

// One dataset of our checkpoint and the Hugging Face tensors it is made of: one, or one per
// expert stacked along the first axis.
struct TensorMapping {
  std::string target;
  std::vector<int64_t> target_shape;
  std::vector<std::string> sources;
  std::vector<int64_t> source_shape;  // of each source
};

// Every dataset our checkpoint needs for this architecture, in write order.
std::vector<TensorMapping> hf_tensor_plan(const HfArchitecture& arch);

struct HfConvertSummary {
  std::string architecture;
  ModelConfig config;
  int64_t num_tensors = 0;  // Hugging Face tensors read
  int64_t input_bytes = 0;  // their bytes as stored
};

// Converts `hf_dir` into `out_path` (stored as `dtype`). out_path is written as it goes: callers
// pass a partial file (io/output_file.hpp) and rename it when this returns.
HfConvertSummary convert_hf_checkpoint(const std::string& hf_dir, const std::string& out_path, DType dtype,
                                       MPI_Comm comm);

}  // namespace moe
