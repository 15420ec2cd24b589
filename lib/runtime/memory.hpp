#pragma once
#include <cstddef>

namespace moe {
// Peak resident set size of this process in bytes (getrusage ru_maxrss).
std::size_t peak_rss_bytes();
}  // namespace moe
