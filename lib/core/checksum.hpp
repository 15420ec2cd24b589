#pragma once
// FNV-1a 64-bit: a fast, stable fingerprint of model and input content, stored in results so a
// resumed run can refuse output made from other inputs. Not cryptographic.
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

class Fnv1a {
 public:
  void update(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) {
      hash_ ^= p[i];
      hash_ *= 0x100000001b3ull;
    }
  }
  template <typename T>
  void update_value(const T& v) {
    update(&v, sizeof(T));
  }
  uint64_t value() const { return hash_; }
  std::string hex() const { return fmt::format("{:016x}", hash_); }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

}  // namespace moe
