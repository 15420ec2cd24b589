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
// max |a - b| over the entries that are not NaN; adds a test failure when the shapes or the NaN
// patterns differ (NaN marks first tokens and padding in results).
double max_abs_diff(const Array& a, const Array& b);
// A string attribute of the file's root group; throws when it is missing or unreadable.
std::string read_string_attribute(const std::string& path, const std::string& name);

}  // namespace moe::test
