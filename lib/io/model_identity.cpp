#include "io/model_identity.hpp"

#include <mpi.h>

#include <algorithm>

#include "io/h5.hpp"

namespace moe {

std::string whole_model_checksum(CheckpointReader& ckpt) {
  constexpr int64_t kBoxElements = int64_t{1} << 24;
  const h5::File file = h5::File::open_read_local(ckpt.path());
  for (const std::string& name : file.dataset_names()) {
    const h5::DatasetInfo info = file.info(name);
    if (info.kind != h5::ElementKind::f32 && info.kind != h5::ElementKind::bf16) continue;  // not weights
    if (info.shape.empty()) {
      ckpt.read(name, info.shape);
      continue;
    }
    int64_t row = 1;  // elements per index of the first dimension
    for (std::size_t d = 1; d < info.shape.size(); ++d) row *= info.shape[d];
    const int64_t step = std::max<int64_t>(1, kBoxElements / std::max<int64_t>(row, 1));
    for (int64_t first = 0; first < info.shape[0]; first += step) {
      std::vector<int64_t> offset(info.shape.size(), 0), count = info.shape;
      offset[0] = first;
      count[0] = std::min(step, info.shape[0] - first);
      ckpt.read(name, info.shape, offset, count);
    }
  }
  return ckpt.model_checksum(MPI_COMM_SELF);
}

}  // namespace moe
