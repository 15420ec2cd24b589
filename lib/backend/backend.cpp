#include "backend/backend.hpp"

namespace moe {

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = o.owner_;
    data_ = o.data_;
    bytes_ = o.bytes_;
    o.owner_ = nullptr;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (owner_ && data_) owner_->release(data_, bytes_);
  owner_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

DeviceBuffer Backend::alloc(std::size_t bytes) {
  if (bytes == 0) return DeviceBuffer(this, nullptr, 0);
  void* ptr = raw_alloc(bytes);
  in_use_ += bytes;
  if (in_use_ > peak_) peak_ = in_use_;
  return DeviceBuffer(this, ptr, bytes);
}

void Backend::release(void* ptr, std::size_t bytes) {
  raw_free(ptr);
  in_use_ -= bytes;
}

}  // namespace moe
