#pragma once
// Checkpoint boxes into backend memory with one copy: where the backend's memory is host memory
// (the CPU) the read lands in the buffer itself; elsewhere it is staged in host memory and copied.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "io/checkpoint.hpp"

namespace moe {

// Reads the box [offset, offset + count) of `name` (full shape `shape`) into dst, a buffer from
// backend.alloc() that no kernel has read yet, `bytes` long (the box's size in the dataset's
// dtype). Same checks and checksum as CheckpointReader::read; returns the dtype.
DType read_to_backend(CheckpointReader& ckpt, Backend& backend, const std::string& name,
                      const std::vector<int64_t>& shape, const std::vector<int64_t>& offset,
                      const std::vector<int64_t>& count, void* dst, std::size_t bytes);

}  // namespace moe
