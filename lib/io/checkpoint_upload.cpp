#include "io/checkpoint_upload.hpp"

#include "core/error.hpp"

namespace moe {

DType read_to_backend(CheckpointReader& ckpt, Backend& backend, const std::string& name,
                      const std::vector<int64_t>& shape, const std::vector<int64_t>& offset,
                      const std::vector<int64_t>& count, void* dst, std::size_t bytes) {
  if (backend.host_addressable()) return ckpt.read_into(name, shape, offset, count, dst, bytes);
  const HostTensor t = ckpt.read(name, shape, offset, count);
  MOE_CHECK(t.bytes.size() == bytes, "{}: dataset '{}': a box of {} bytes does not fill {} bytes", ckpt.path(), name,
            t.bytes.size(), bytes);
  backend.copy_to_device(dst, t.bytes.data(), bytes);
  return t.dtype;
}

}  // namespace moe
