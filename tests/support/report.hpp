#pragma once
// The JSON run report moe-score writes (for tests that check its figures).
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace moe::test {

inline nlohmann::json read_report(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

}  // namespace moe::test
