#include "support/h5_edit.hpp"

#include <hdf5.h>

#include <stdexcept>

namespace moe::test {

namespace {

// Closes an HDF5 identifier with the matching H5*close.
class Id {
 public:
  explicit Id(hid_t id) : id_(id) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() {
    if (id_ < 0) return;
    switch (H5Iget_type(id_)) {
      case H5I_FILE:
        H5Fclose(id_);
        break;
      case H5I_DATASET:
        H5Dclose(id_);
        break;
      case H5I_DATASPACE:
        H5Sclose(id_);
        break;
      case H5I_ATTR:
        H5Aclose(id_);
        break;
      case H5I_GENPROP_LST:
        H5Pclose(id_);
        break;
      default:
        break;
    }
  }
  hid_t get() const { return id_; }

 private:
  hid_t id_;
};

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw std::runtime_error("h5_edit: " + file + ": " + what);
}

hid_t open_rw(const std::string& file) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) fail(file, "cannot open read-write");
  return f;
}

void replace(const std::string& file, const std::string& name, const std::vector<int64_t>& shape, hid_t type,
             const void* data, std::size_t count) {
  std::size_t n = 1;
  for (int64_t s : shape) n *= static_cast<std::size_t>(s);
  if (n != count) fail(file, "'" + name + "': " + std::to_string(count) + " values for the shape");
  Id f(open_rw(file));
  if (H5Lexists(f.get(), name.c_str(), H5P_DEFAULT) > 0 && H5Ldelete(f.get(), name.c_str(), H5P_DEFAULT) < 0) {
    fail(file, "cannot delete '" + name + "'");
  }
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  Id lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Id ds(H5Dcreate2(f.get(), name.c_str(), type, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (ds.get() < 0) fail(file, "cannot create '" + name + "'");
  if (n > 0 && H5Dwrite(ds.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    fail(file, "cannot write '" + name + "'");
  }
}

void set_element(const std::string& file, const std::string& name, const std::vector<int64_t>& at, hid_t type,
                 const void* value) {
  Id f(open_rw(file));
  Id ds(H5Dopen2(f.get(), name.c_str(), H5P_DEFAULT));
  if (ds.get() < 0) fail(file, "no dataset '" + name + "'");
  Id space(H5Dget_space(ds.get()));
  if (H5Sget_simple_extent_ndims(space.get()) != static_cast<int>(at.size())) {
    fail(file, "'" + name + "': index has the wrong rank");
  }
  std::vector<hsize_t> coord(at.begin(), at.end());
  if (H5Sselect_elements(space.get(), H5S_SELECT_SET, 1, coord.data()) < 0) fail(file, "bad index into '" + name + "'");
  const hsize_t one = 1;
  Id mem(H5Screate_simple(1, &one, nullptr));
  if (H5Dwrite(ds.get(), type, mem.get(), space.get(), H5P_DEFAULT, value) < 0) {
    fail(file, "cannot write an element of '" + name + "'");
  }
}

}  // namespace

void h5_delete(const std::string& file, const std::string& name) {
  Id f(open_rw(file));
  if (H5Ldelete(f.get(), name.c_str(), H5P_DEFAULT) < 0) fail(file, "cannot delete '" + name + "'");
}

void h5_replace_f32(const std::string& file, const std::string& name, const std::vector<int64_t>& shape,
                    const std::vector<float>& values) {
  replace(file, name, shape, H5T_NATIVE_FLOAT, values.data(), values.size());
}

void h5_replace_i32(const std::string& file, const std::string& name, const std::vector<int64_t>& shape,
                    const std::vector<int32_t>& values) {
  replace(file, name, shape, H5T_NATIVE_INT32, values.data(), values.size());
}

void h5_replace_i64(const std::string& file, const std::string& name, const std::vector<int64_t>& shape,
                    const std::vector<int64_t>& values) {
  replace(file, name, shape, H5T_NATIVE_INT64, values.data(), values.size());
}

void h5_set_f32(const std::string& file, const std::string& name, const std::vector<int64_t>& at, float value) {
  set_element(file, name, at, H5T_NATIVE_FLOAT, &value);
}

void h5_set_i32(const std::string& file, const std::string& name, const std::vector<int64_t>& at, int32_t value) {
  set_element(file, name, at, H5T_NATIVE_INT32, &value);
}

void h5_set_i64(const std::string& file, const std::string& name, const std::vector<int64_t>& at, int64_t value) {
  set_element(file, name, at, H5T_NATIVE_INT64, &value);
}

void h5_set_int_attribute(const std::string& file, const std::string& object, const std::string& attribute,
                          int64_t value) {
  Id f(open_rw(file));
  if (H5Aexists_by_name(f.get(), object.c_str(), attribute.c_str(), H5P_DEFAULT) > 0 &&
      H5Adelete_by_name(f.get(), object.c_str(), attribute.c_str(), H5P_DEFAULT) < 0) {
    fail(file, "cannot delete attribute '" + attribute + "'");
  }
  Id space(H5Screate(H5S_SCALAR));
  Id attr(H5Acreate_by_name(f.get(), object.c_str(), attribute.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT));
  if (attr.get() < 0) fail(file, "cannot create attribute '" + attribute + "'");
  if (H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) fail(file, "cannot write attribute '" + attribute + "'");
}

}  // namespace moe::test
