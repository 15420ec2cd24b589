#pragma once
// Per-step buffers in backend memory, by slot. A slot grows when a step needs more than it has
// and is then reused: once the largest batch has run (or reserve() sized it), the per-batch path
// allocates nothing.
#include <cstddef>
#include <vector>

#include "backend/backend.hpp"

namespace moe {

class Workspace {
 public:
  explicit Workspace(Backend& backend) : backend_(backend) {}

  // A buffer of at least `count` elements of T in `slot`; contents are not preserved on growth.
  template <typename T>
  T* get(std::size_t slot, std::size_t count) {
    if (slot >= buffers_.size()) buffers_.resize(slot + 1);
    DeviceBuffer& b = buffers_[slot];
    const std::size_t bytes = count * sizeof(T);
    if (b.bytes() < bytes) {
      b = DeviceBuffer();  // free first: peak memory is the new size, not old + new
      b = backend_.alloc(bytes);
      ++growths_;
    }
    return b.as<T>();
  }
  std::size_t bytes() const {
    std::size_t total = 0;
    for (const auto& b : buffers_) total += b.bytes();
    return total;
  }
  // Times any slot had to grow: tests check it stays flat after the first batch.
  std::size_t growths() const { return growths_; }
  Backend& backend() { return backend_; }

 private:
  Backend& backend_;
  std::vector<DeviceBuffer> buffers_;
  std::size_t growths_ = 0;
};

}  // namespace moe
