#pragma once
#include <cstddef>

namespace moe {
// Peak resident set size of this program in bytes since its exec (VmHWM).
std::size_t peak_rss_bytes();
}  // namespace moe
