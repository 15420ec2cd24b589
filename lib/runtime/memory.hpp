#pragma once
#include <cstddef>

namespace moe {
// Peak resident set size of this program in bytes since its exec (VmHWM).
std::size_t peak_rss_bytes();

// Serves every allocation from the heap and keeps freed memory in the process (glibc mallopt).
// Loading makes a host buffer of up to hundreds of MB per tensor and frees it after the upload;
// by default glibc maps and unmaps each, so the kernel faults in and zeroes every page again, which
// was over half of a load's time. Called first in moe-score and moe-bench.
void reuse_freed_memory();
}  // namespace moe
