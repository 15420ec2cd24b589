#pragma once
// Serial, minimal HDF5 reads for tests (no MPI needed): a whole dataset as doubles with its
// shape, and string attributes.
#include <cstdint>
#include <string>
#include <vector>

namespace moe::test {

struct Array {
  std::vector<int64_t> shape;
  std::vector<double> values;
};

Array read_array(const std::string& path, const std::string& dataset);
std::string read_string_attribute(const std::string& path, const std::string& name);

}  // namespace moe::test
