#pragma once
// Where each expert's weights lie in the checkpoint file, as byte offsets, so that the bounded
// expert store's I/O thread can read an expert with plain pread and never call HDF5 (parallel
// HDF5 is not thread-safe, and the main thread keeps using it for tokens and results).
//
// An expert tensor [E, rows, cols] is either chunked one expert per chunk (CheckpointWriter's
// layout) without filters, or contiguous; either way expert x's [rows, cols] block is one run of
// bytes. Compressed or otherwise chunked datasets are refused in one line naming the dataset.
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "io/checkpoint.hpp"

namespace moe {

struct ExpertTensorExtent {
  std::string name;               // dataset, for messages
  DType dtype = DType::f32;       // as stored (little-endian f32 or bf16)
  int64_t rows = 0, cols = 0;     // one expert's block [rows, cols]
  std::vector<uint64_t> offsets;  // [E] file offset of each expert's block
};

// Maps dataset `name` of shape [E, rows, cols] (checked). Reads HDF5 metadata only; call it on
// the thread that owns HDF5.
ExpertTensorExtent map_expert_tensor(const CheckpointReader& ckpt, const std::string& name,
                                     const std::vector<int64_t>& shape);

}  // namespace moe
