#include "config/run_fingerprint.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>
#include <vector>

#include "core/checksum.hpp"

namespace moe {

namespace {

const std::set<std::string> kKeysThatDoNotChangeResults = {
    "model", "input", "output", "report", "progress_seconds", "watchdog_seconds", "mmap_weights"};

void flatten(const YAML::Node& node, const std::string& prefix, std::vector<std::string>& lines) {
  if (node.IsMap()) {
    for (const auto& item : node)
      flatten(item.second, prefix + (prefix.empty() ? "" : ".") + item.first.as<std::string>(), lines);
    return;
  }
  if (kKeysThatDoNotChangeResults.count(prefix)) return;
  YAML::Emitter value;
  value << node;
  lines.push_back(prefix + "=" + value.c_str());
}

}  // namespace

std::string run_fingerprint(const RunConfig& config) {
  std::vector<std::string> lines;
  flatten(YAML::Load(config.effective_yaml), "", lines);
  std::sort(lines.begin(), lines.end());
  Fnv1a hash;
  for (const std::string& line : lines) {
    hash.update(line.data(), line.size());
    hash.update("\n", 1);
  }
  return hash.hex();
}

}  // namespace moe
