#pragma once
// Host memory for the CPU backend's buffers and oneDNN's packed weights. Large blocks (weights,
// workspaces) are 2 MiB aligned and advised as transparent huge pages (MADV_HUGEPAGE; honoured
// where THP is "madvise" or "always"): a fresh block is then faulted in 2 MiB at a time instead of
// 4 KiB, and on a virtual machine that was most of the cost of first touching the model's weights
// (710 k faults for the 640 M bf16 model, several seconds). Small blocks are plain aligned_alloc.
#include <cstddef>

namespace moe::cpu {

// At least `bytes` (> 0), aligned to 64 bytes (2 MiB for large blocks); nullptr when out of
// memory. Free with free_host().
void* alloc_host(std::size_t bytes);
void free_host(void* ptr);

}  // namespace moe::cpu
