#include "support/h5_read.hpp"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace moe::test {

Array read_array(const std::string& path, const std::string& dataset) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) throw std::runtime_error(path + ": cannot open");
  const hid_t ds = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  if (ds < 0) {
    H5Fclose(file);
    throw std::runtime_error(path + ": no dataset " + dataset);
  }
  const hid_t space = H5Dget_space(ds);
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  Array a;
  std::size_t n = 1;
  for (hsize_t d : dims) {
    a.shape.push_back(static_cast<int64_t>(d));
    n *= d;
  }
  a.values.resize(n);
  H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.values.data());
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(file);
  return a;
}

std::string read_string_attribute(const std::string& path, const std::string& name) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) throw std::runtime_error(path + ": cannot open");
  const hid_t attr = H5Aopen(file, name.c_str(), H5P_DEFAULT);
  if (attr < 0) {
    H5Fclose(file);
    throw std::runtime_error(path + ": no attribute " + name);
  }
  // The memory type takes the stored character set: HDF5 1.10 has no ASCII <-> UTF-8 conversion,
  // so reading a UTF-8 attribute as plain C_S1 fails (and an empty string would compare equal).
  const hid_t stored = H5Aget_type(attr);
  const bool variable = H5Tis_variable_str(stored) > 0;
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_cset(type, H5Tget_cset(stored));
  std::string value;
  herr_t status = -1;
  if (variable) {
    H5Tset_size(type, H5T_VARIABLE);
    char* text = nullptr;
    status = H5Aread(attr, type, &text);
    if (status >= 0 && text) value = text;
    H5free_memory(text);
  } else {
    const size_t size = H5Tget_size(stored);
    H5Tset_size(type, size + 1);
    std::vector<char> text(size + 1, '\0');
    status = H5Aread(attr, type, text.data());
    value = text.data();
  }
  H5Tclose(type);
  H5Tclose(stored);
  H5Aclose(attr);
  H5Fclose(file);
  if (status < 0) throw std::runtime_error(path + ": cannot read string attribute " + name);
  return value;
}

double max_abs_diff(const Array& a, const Array& b) {
  EXPECT_EQ(a.shape, b.shape);
  double worst = 0.0;
  for (std::size_t i = 0; i < std::min(a.values.size(), b.values.size()); ++i) {
    const bool nan_a = std::isnan(a.values[i]);
    EXPECT_EQ(nan_a, std::isnan(b.values[i])) << "NaN pattern differs at " << i;
    if (!nan_a) worst = std::max(worst, std::abs(a.values[i] - b.values[i]));
  }
  return worst;
}

}  // namespace moe::test
