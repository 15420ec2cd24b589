#pragma once
// What this process may still allocate, and the check made before every large allocation: a run
// that cannot fit is refused with one line ("need X, available Y") instead of ending in
// std::bad_alloc or the OOM killer part-way through.
#include <cstdint>
#include <string>

namespace moe {

// Bytes this process can still allocate: the lower of the kernel's MemAvailable and what the
// cgroup (v2 memory.max or v1 limit_in_bytes, minus current usage) leaves; the environment
// variable MOE_MEMORY_LIMIT (bytes, for tests and for schedulers that enforce their own limit)
// lowers it further.
uint64_t available_memory_bytes();

// "1.5 GiB", "300 MiB", "12 KiB", "7 B".
std::string format_bytes(double bytes);

// Throws "WHAT: need X, available Y" when need_bytes exceed what is available. `what` names
// the allocation and its inputs (a file, a dataset, the model and the batch).
void require_memory(const std::string& what, double need_bytes);

}  // namespace moe
