#pragma once
// The model checksum a results file records (`model_checksum`, CheckpointReader::model_checksum),
// computed by one process that loads no model: tools that check a routing trace against a model
// (moe-place) need the same identity moe-score stored, which covers every weight byte.
#include <string>

#include "io/checkpoint.hpp"

namespace moe {

// Reads every float dataset of the checkpoint through `ckpt` in boxes of at most about 16 M
// elements along the first dimension (memory stays one box), then returns
// ckpt.model_checksum(MPI_COMM_SELF): the value any layout of moe-score computes for this model.
std::string whole_model_checksum(CheckpointReader& ckpt);

}  // namespace moe
