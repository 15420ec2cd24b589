#pragma once
// Serial edits of existing HDF5 files for tests that corrupt valid inputs (plain HDF5 C API, no
// MPI): delete an object, replace a dataset with one of another type or shape, overwrite one
// element, rewrite an attribute. Each call opens the file read-write, makes its change and closes
// it; failures throw std::runtime_error naming the file and object.
#include <cstdint>
#include <string>
#include <vector>

namespace moe::test {

// Removes the link `name` (a dataset or a group) from the file.
void h5_delete(const std::string& file, const std::string& name);

// Replaces (or creates) dataset `name` with a contiguous dataset of the given shape, stored as
// float32 / int32 / int64, holding `values` (row-major, product(shape) entries).
void h5_replace_f32(const std::string& file, const std::string& name, const std::vector<int64_t>& shape,
                    const std::vector<float>& values);
void h5_replace_i32(const std::string& file, const std::string& name, const std::vector<int64_t>& shape,
                    const std::vector<int32_t>& values);
void h5_replace_i64(const std::string& file, const std::string& name, const std::vector<int64_t>& shape,
                    const std::vector<int64_t>& values);

// Overwrites one element of an existing dataset (at the multi-index `at`), converting from the
// given C type to the dataset's stored type.
void h5_set_f32(const std::string& file, const std::string& name, const std::vector<int64_t>& at, float value);
void h5_set_i32(const std::string& file, const std::string& name, const std::vector<int64_t>& at, int32_t value);
void h5_set_i64(const std::string& file, const std::string& name, const std::vector<int64_t>& at, int64_t value);

// Replaces (or creates) the scalar int64 attribute `attribute` of `object` ("/" for the root).
void h5_set_int_attribute(const std::string& file, const std::string& object, const std::string& attribute,
                          int64_t value);

}  // namespace moe::test
