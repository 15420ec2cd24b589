#pragma once
// Where a box of a checkpoint dataset lies in the file as runs of raw bytes, so that loading can
// read it with plain pread on several threads (HDF5 is not thread-safe) and check each block
// while it is still in cache. Only layouts whose bytes are the values as they are in memory:
// little-endian IEEE f32 or uint16 (bf16), no filters, no user block; a box that is a run of the
// dataset's flat order (whole trailing dimensions), contiguous or chunked one leading index per
// chunk (CheckpointWriter's expert tensors). Anything else returns nothing and HDF5 reads it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/h5.hpp"

namespace moe {

struct ByteRun {
  uint64_t file_offset = 0;
  uint64_t bytes = 0;
};

struct BoxExtents {
  int64_t first_element = 0;  // the box's first element as a flat index into the dataset
  std::vector<ByteRun> runs;  // in the box's order; together they hold the whole box
};

// element_bytes: 4 for f32, 2 for bf16 (what the caller's checks already established).
std::optional<BoxExtents> box_extents(const h5::File& file, const std::string& dataset,
                                      const std::vector<int64_t>& shape, const std::vector<int64_t>& offset,
                                      const std::vector<int64_t>& count, std::size_t element_bytes);

}  // namespace moe
