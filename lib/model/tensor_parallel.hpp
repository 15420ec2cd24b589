#pragma once
// Tensor slicing (DESIGN.md, "Parallel layout"; DeepSpeed-MoE's tensor slicing of the non-expert
// weights): the tp ranks of a data-parallel group hold row or column slices of every dense weight
// and reduce partial results over the tp communicator. A size of 1 means no slicing.
#include <cstdint>
#include <utility>

#include "comm/communicator.hpp"

namespace moe {

struct TensorParallel {
  Communicator* comm = nullptr;  // the tp group; null when size == 1
  int rank = 0;
  int size = 1;
  bool active() const { return size > 1; }
};

// Slice `rank` of `n` items over `size` ranks: [n * rank / size, n * (rank + 1) / size).
inline std::pair<int64_t, int64_t> slice_range(int64_t n, int rank, int size) {
  return {n * rank / size, n * (rank + 1) / size};
}

}  // namespace moe
