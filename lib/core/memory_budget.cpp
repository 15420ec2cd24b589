#include "core/memory_budget.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "core/error.hpp"

namespace moe {

namespace {

constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

// The first number in a file, or kUnlimited when it is missing or says "max".
uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word == "max") return kUnlimited;
  try {
    return std::stoull(word);
  } catch (const std::exception&) {
    return kUnlimited;
  }
}

// The cgroup this process is in, from /proc/self/cgroup ("0::/path" for v2, "N:memory:/path" for v1).
std::string cgroup_path(bool v2) {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find(':');
    const auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    if ((v2 && controllers.empty()) || (!v2 && controllers.find("memory") != std::string::npos))
      return line.substr(second + 1);
  }
  return "";
}

// What the cgroup limit leaves: limit - usage, checked at the process's own cgroup and, for v2,
// at the mount's root (a container sees its own cgroup as "/").
uint64_t cgroup_available() {
  uint64_t best = kUnlimited;
  auto consider = [&](uint64_t limit, uint64_t usage) {
    if (limit == kUnlimited) return;
    best = std::min(best, limit > usage || usage == kUnlimited ? limit - (usage == kUnlimited ? 0 : usage) : 0);
  };
  const std::string v2 = cgroup_path(true);
  for (const std::string& dir : {"/sys/fs/cgroup" + v2, std::string("/sys/fs/cgroup")})
    consider(read_number(dir + "/memory.max"), read_number(dir + "/memory.current"));
  const std::string v1 = "/sys/fs/cgroup/memory" + cgroup_path(false);
  for (const std::string& dir : {v1, std::string("/sys/fs/cgroup/memory")})
    consider(read_number(dir + "/memory.limit_in_bytes"), read_number(dir + "/memory.usage_in_bytes"));
  return best;
}

uint64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  for (std::string key; in >> key;) {
    uint64_t kib = 0;
    in >> kib;
    if (key == "MemAvailable:") return kib * 1024;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return kUnlimited;
}

}  // namespace

uint64_t available_memory_bytes() {
  uint64_t available = std::min(mem_available(), cgroup_available());
  if (const char* env = std::getenv("MOE_MEMORY_LIMIT"); env && *env) {
    char* end = nullptr;
    const unsigned long long limit = std::strtoull(env, &end, 10);
    if (end && *end == '\0') available = std::min<uint64_t>(available, limit);
  }
  return available;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, units[u]);
}

void require_memory(const std::string& what, double need_bytes) {
  const uint64_t available = available_memory_bytes();
  MOE_CHECK(need_bytes <= static_cast<double>(available), "{}: need {}, available {}", what, format_bytes(need_bytes),
            format_bytes(static_cast<double>(available)));
}

}  // namespace moe
