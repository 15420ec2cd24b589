#pragma once
// A flat key -> value map: what a checkpoint stores as HDF5 attributes of its root, and what a
// model spec in YAML is turned into, so that one function validates both.
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace moe {

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;
using AttrMap = std::map<std::string, AttrValue>;

}  // namespace moe
