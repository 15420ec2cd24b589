#include "backend/cpu/host_memory.hpp"

#include <sys/mman.h>

#include <cstdlib>

namespace moe::cpu {

namespace {
constexpr std::size_t kAlignment = 64;
constexpr std::size_t kHugePage = std::size_t{2} << 20;
// Below this a block gains little from huge pages and would waste up to its size in rounding.
constexpr std::size_t kHugeThreshold = std::size_t{16} << 20;
}  // namespace

void* alloc_host(std::size_t bytes) {
  if (bytes < kHugeThreshold) return std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  const std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* ptr = std::aligned_alloc(kHugePage, rounded);
  // Advice only: where THP is off the block is ordinary memory.
  if (ptr) (void)madvise(ptr, rounded, MADV_HUGEPAGE);
  return ptr;
}

void free_host(void* ptr) {
  std::free(ptr);
}

}  // namespace moe::cpu
