#include "io/h5.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <type_traits>

#include "core/error.hpp"

namespace moe::h5 {

namespace {

// HDF5 prints an error stack on stderr by default; moebatch reports its own one-line errors.
void silence_hdf5() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

template <typename T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
  if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
  if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
  if constexpr (std::is_same_v<T, uint16_t>) return H5T_NATIVE_UINT16;
}

Handle file_access(MPI_Comm comm) {
  Handle fapl(MOE_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS)));
  MOE_H5_CHECK(H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL));
  return fapl;
}

Handle transfer(bool collective) {
  Handle dxpl(MOE_H5_CHECK(H5Pcreate(H5P_DATASET_XFER)));
  MOE_H5_CHECK(H5Pset_dxpl_mpio(dxpl.get(), collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT));
  return dxpl;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Selects the box [offset, offset + count) in a dataspace, or nothing when the box is empty.
void select_box(hid_t space, const std::vector<int64_t>& offset, const std::vector<int64_t>& count) {
  bool empty = false;
  for (int64_t c : count) empty = empty || c == 0;
  if (empty) {
    MOE_H5_CHECK(H5Sselect_none(space));
    return;
  }
  std::vector<hsize_t> start(offset.begin(), offset.end());
  std::vector<hsize_t> size(count.begin(), count.end());
  MOE_H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, size.data(), nullptr));
}

// A failed write, flush, create or close of an output: names the file, the operation and, when
// the C library left one, the system's reason (errno 28: "No space left on device").
[[noreturn]] void io_failure(const std::string& path, const std::string& operation, int err) {
  throw IoError(fmt::format("{}: {} failed{}", path, operation,
                            err != 0 ? fmt::format(" ({})", std::strerror(err)) : std::string()));
}

Handle memory_space(const std::vector<int64_t>& count) {
  std::vector<hsize_t> dims(count.begin(), count.end());
  Handle space(MOE_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
  bool empty = false;
  for (int64_t c : count) empty = empty || c == 0;
  if (empty) MOE_H5_CHECK(H5Sselect_none(space.get()));
  return space;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    close();
    id_ = o.id_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::close() {
  if (id_ >= 0) {
    switch (H5Iget_type(id_)) {
      case H5I_FILE:
        H5Fclose(id_);
        break;
      case H5I_GROUP:
        H5Gclose(id_);
        break;
      case H5I_DATASET:
        H5Dclose(id_);
        break;
      case H5I_DATASPACE:
        H5Sclose(id_);
        break;
      case H5I_DATATYPE:
        H5Tclose(id_);
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
  id_ = H5I_INVALID_HID;
}

namespace {

// Opens an existing HDF5 file over MPI-IO with `flags` (H5F_ACC_RDONLY or H5F_ACC_RDWR).
Handle open_existing(const std::string& path, MPI_Comm comm, unsigned flags, const char* purpose) {
  silence_hdf5();
  MOE_CHECK(std::filesystem::exists(path), "{}: no such file", path);
  MOE_CHECK(H5Fis_hdf5(path.c_str()) > 0, "{}: not an HDF5 file", path);
  Handle fapl = file_access(comm);
  const hid_t id = H5Fopen(path.c_str(), flags, fapl.get());
  MOE_CHECK(id >= 0, "{}: cannot open HDF5 file for {}", path, purpose);
  return Handle(id);
}

}  // namespace

File File::open_read(const std::string& path, MPI_Comm comm) {
  File f;
  f.path_ = path;
  f.file_ = open_existing(path, comm, H5F_ACC_RDONLY, "reading");
  return f;
}

File File::create(const std::string& path, MPI_Comm comm) {
  silence_hdf5();
  File f;
  f.path_ = path;
  Handle fapl = file_access(comm);
  // The root group's creation times would make two identical runs differ (datasets: below).
  Handle fcpl(MOE_H5_CHECK(H5Pcreate(H5P_FILE_CREATE)));
  MOE_H5_CHECK(H5Pset_obj_track_times(fcpl.get(), false));
  errno = 0;
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get());
  if (id < 0) io_failure(path, "creating the HDF5 file", errno);
  f.file_ = Handle(id);
  return f;
}

File File::open_readwrite(const std::string& path, MPI_Comm comm) {
  File f;
  f.path_ = path;
  f.file_ = open_existing(path, comm, H5F_ACC_RDWR, "writing");
  return f;
}

bool File::has(const std::string& dataset) const {
  // H5Lexists fails on a missing intermediate group, so test each prefix.
  std::size_t pos = 0;
  while (true) {
    pos = dataset.find('/', pos + 1);
    const std::string prefix = dataset.substr(0, pos);
    if (H5Lexists(id(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) break;
  }
  return H5Oexists_by_name(id(), dataset.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::dataset_names() const {
  std::vector<std::string> names;
  const auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* out) -> herr_t {
    if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  MOE_H5_CHECK(H5Ovisit2(id(), H5_INDEX_NAME, H5_ITER_INC, visit, &names, H5O_INFO_BASIC));
  std::sort(names.begin(), names.end());
  return names;
}

DatasetInfo File::info(const std::string& dataset) const {
  MOE_CHECK(has(dataset), "{}: missing dataset '{}'", path_, dataset);
  Handle ds(H5Dopen2(id(), dataset.c_str(), H5P_DEFAULT));
  MOE_CHECK(ds, "{}: '{}' is not a dataset", path_, dataset);
  check_storage(ds.get(), dataset);
  Handle space(MOE_H5_CHECK(H5Dget_space(ds.get())));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  DatasetInfo info;
  info.shape.assign(dims.begin(), dims.end());
  Handle type(MOE_H5_CHECK(H5Dget_type(ds.get())));
  const H5T_class_t cls = H5Tget_class(type.get());
  const std::size_t size = H5Tget_size(type.get());
  if (cls == H5T_FLOAT) {
    info.kind = size == 4 ? ElementKind::f32 : size == 8 ? ElementKind::f64 : ElementKind::other;
    info.type_name = "float" + std::to_string(size * 8);
  } else if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type.get()) == H5T_SGN_2;
    info.type_name = std::string(is_signed ? "int" : "uint") + std::to_string(size * 8);
    if (is_signed && size == 4) info.kind = ElementKind::i32;
    if (is_signed && size == 8) info.kind = ElementKind::i64;
    // bf16 weights are uint16 with the attribute dtype = "bf16".
    if (!is_signed && size == 2 && H5Aexists(ds.get(), "dtype") > 0 && string_attribute(dataset, "dtype") == "bf16") {
      info.kind = ElementKind::bf16;
      info.type_name = "bf16";
    }
  } else {
    info.type_name = cls == H5T_STRING ? "string" : "non-numeric";
  }
  return info;
}

void File::check_storage(hid_t ds, const std::string& dataset) const {
  // Parallel HDF5 (MPI-IO) reads only data stored in the file itself: without this check a
  // virtual or external dataset fails later with a bare "reading ... failed".
  Handle dcpl(MOE_H5_CHECK(H5Dget_create_plist(ds)));
  MOE_CHECK(H5Pget_layout(dcpl.get()) != H5D_VIRTUAL,
            "{}: '{}' is an HDF5 virtual dataset (it maps data held in other files), which parallel HDF5 cannot "
            "read; copy it into a plain dataset first (e.g. h5py: f2['{}'] = f['{}'][:])",
            path_, dataset, dataset, dataset);
  MOE_CHECK(H5Pget_external_count(dcpl.get()) == 0,
            "{}: '{}' keeps its data in external raw files, which parallel HDF5 cannot read; copy it into a plain "
            "dataset first",
            path_, dataset);
}

template <typename T>
void File::read(const std::string& dataset, const std::vector<int64_t>& offset, const std::vector<int64_t>& count,
                T* out, bool collective) const {
  Handle ds(H5Dopen2(id(), dataset.c_str(), H5P_DEFAULT));
  MOE_CHECK(ds, "{}: missing dataset '{}'", path_, dataset);
  check_storage(ds.get(), dataset);
  Handle space(MOE_H5_CHECK(H5Dget_space(ds.get())));
  select_box(space.get(), offset, count);
  Handle mem = memory_space(count);
  Handle dxpl = transfer(collective);
  MOE_CHECK(H5Dread(ds.get(), native_type<T>(), mem.get(), space.get(), dxpl.get(), out) >= 0,
            "{}: reading '{}' at offset {} count {} failed", path_, dataset, shape_text(offset), shape_text(count));
}

template <typename T>
std::vector<T> File::read_all(const std::string& dataset) const {
  const DatasetInfo i = info(dataset);
  std::size_t n = 1;
  for (int64_t s : i.shape) n *= static_cast<std::size_t>(s);
  std::vector<T> out(n);
  read(dataset, std::vector<int64_t>(i.shape.size(), 0), i.shape, out.data());
  return out;
}

template <typename T>
void File::create_dataset(const std::string& dataset, const std::vector<int64_t>& shape,
                          const std::vector<int64_t>& chunk) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(MOE_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
  Handle lcpl(MOE_H5_CHECK(H5Pcreate(H5P_LINK_CREATE)));
  MOE_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1));
  Handle dcpl(MOE_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)));
  if (!chunk.empty()) {
    std::vector<hsize_t> c(chunk.begin(), chunk.end());
    MOE_H5_CHECK(H5Pset_chunk(dcpl.get(), static_cast<int>(c.size()), c.data()));
  }
  // Parallel HDF5 needs space allocated at creation; nothing is pre-filled since every element is written.
  MOE_H5_CHECK(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
  MOE_H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
  // No creation/modification times: identical runs write identical files.
  MOE_H5_CHECK(H5Pset_obj_track_times(dcpl.get(), false));
  const hid_t ds =
      H5Dcreate2(id(), dataset.c_str(), native_type<T>(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT);
  MOE_CHECK(ds >= 0, "{}: cannot create dataset '{}' of shape {}", path_, dataset, shape_text(shape));
  Handle closer(ds);
}

template <typename T>
void File::write(const std::string& dataset, const std::vector<int64_t>& offset, const std::vector<int64_t>& count,
                 const T* data, bool collective) {
  Handle ds(H5Dopen2(id(), dataset.c_str(), H5P_DEFAULT));
  MOE_CHECK(ds, "{}: missing dataset '{}'", path_, dataset);
  Handle space(MOE_H5_CHECK(H5Dget_space(ds.get())));
  select_box(space.get(), offset, count);
  Handle mem = memory_space(count);
  Handle dxpl = transfer(collective);
  errno = 0;
  if (H5Dwrite(ds.get(), native_type<T>(), mem.get(), space.get(), dxpl.get(), data) < 0)
    io_failure(path_, fmt::format("writing '{}' at offset {} count {}", dataset, shape_text(offset), shape_text(count)),
               errno);
}

AttrMap File::read_attributes(const std::string& object) const {
  AttrMap attrs;
  Handle obj(H5Oopen(id(), object.c_str(), H5P_DEFAULT));
  MOE_CHECK(obj, "{}: missing object '{}'", path_, object);
  H5O_info_t oinfo;
  MOE_H5_CHECK(H5Oget_info(obj.get(), &oinfo));
  for (hsize_t i = 0; i < oinfo.num_attrs; ++i) {
    Handle attr(MOE_H5_CHECK(H5Aopen_by_idx(obj.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT)));
    char name[256] = {};
    H5Aget_name(attr.get(), sizeof(name), name);
    Handle type(MOE_H5_CHECK(H5Aget_type(attr.get())));
    Handle space(MOE_H5_CHECK(H5Aget_space(attr.get())));
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    const bool is_array = H5Sget_simple_extent_ndims(space.get()) > 0;
    switch (H5Tget_class(type.get())) {
      case H5T_INTEGER: {
        std::vector<int64_t> values(static_cast<std::size_t>(n));
        MOE_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, values.data()));
        if (is_array)
          attrs[name] = values;
        else
          attrs[name] = values.at(0);
        break;
      }
      case H5T_FLOAT: {
        double v = 0;
        MOE_CHECK(n == 1, "{}: attribute '{}' must be a single number", path_, name);
        MOE_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v));
        attrs[name] = v;
        break;
      }
      case H5T_STRING:
        attrs[name] = string_attribute(object, name);
        break;
      default:
        fail("{}: attribute '{}' has an unsupported type", path_, name);
    }
  }
  return attrs;
}

void File::write_attributes(const AttrMap& attrs, const std::string& object) {
  Handle obj(H5Oopen(id(), object.c_str(), H5P_DEFAULT));
  MOE_CHECK(obj, "{}: missing object '{}'", path_, object);
  for (const auto& [name, value] : attrs) {
    if (auto* s = std::get_if<std::string>(&value)) {
      write_string_attribute(object, name, *s);
      continue;
    }
    hsize_t n = 1;
    const void* data = nullptr;
    hid_t type = H5T_NATIVE_INT64;
    bool scalar = true;
    if (auto* i = std::get_if<int64_t>(&value)) data = i;
    if (auto* d = std::get_if<double>(&value)) {
      data = d;
      type = H5T_NATIVE_DOUBLE;
    }
    if (auto* list = std::get_if<std::vector<int64_t>>(&value)) {
      data = list->data();
      n = list->size();
      scalar = false;
    }
    Handle space(MOE_H5_CHECK(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr)));
    if (H5Aexists(obj.get(), name.c_str()) > 0) MOE_H5_CHECK(H5Adelete(obj.get(), name.c_str()));
    Handle attr(MOE_H5_CHECK(H5Acreate2(obj.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
    MOE_H5_CHECK(H5Awrite(attr.get(), type, data));
  }
}

void File::write_string_attribute(const std::string& object, const std::string& name, const std::string& value) {
  Handle obj(H5Oopen(id(), object.c_str(), H5P_DEFAULT));
  MOE_CHECK(obj, "{}: missing object '{}'", path_, object);
  // Variable-length UTF-8: what h5py reads back as str.
  Handle type(MOE_H5_CHECK(H5Tcopy(H5T_C_S1)));
  MOE_H5_CHECK(H5Tset_size(type.get(), H5T_VARIABLE));
  MOE_H5_CHECK(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  Handle space(MOE_H5_CHECK(H5Screate(H5S_SCALAR)));
  if (H5Aexists(obj.get(), name.c_str()) > 0) MOE_H5_CHECK(H5Adelete(obj.get(), name.c_str()));
  Handle attr(MOE_H5_CHECK(H5Acreate2(obj.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  const char* text = value.c_str();
  MOE_H5_CHECK(H5Awrite(attr.get(), type.get(), &text));
}

std::string File::string_attribute(const std::string& object, const std::string& name) const {
  Handle attr(H5Aopen_by_name(id(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  MOE_CHECK(attr, "{}: missing attribute '{}' on '{}'", path_, name, object);
  Handle type(MOE_H5_CHECK(H5Aget_type(attr.get())));
  MOE_CHECK(H5Tget_class(type.get()) == H5T_STRING, "{}: attribute '{}' on '{}' is not a string", path_, name, object);
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(MOE_H5_CHECK(H5Tcopy(H5T_C_S1)));
    MOE_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE));
    MOE_H5_CHECK(H5Tset_cset(mem.get(), H5Tget_cset(type.get())));
    char* text = nullptr;
    MOE_H5_CHECK(H5Aread(attr.get(), mem.get(), &text));
    std::string value = text ? text : "";
    Handle space(MOE_H5_CHECK(H5Aget_space(attr.get())));
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, &text);
    return value;
  }
  const std::size_t size = H5Tget_size(type.get());
  std::string value(size, '\0');
  MOE_H5_CHECK(H5Aread(attr.get(), type.get(), value.data()));
  value.resize(value.find('\0') == std::string::npos ? size : value.find('\0'));
  return value;
}

void File::flush() {
  errno = 0;
  if (H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0) io_failure(path_, "flushing to disk", errno);
}

void File::close() {
  if (!file_) return;
  errno = 0;
  if (H5Fclose(file_.release()) < 0) io_failure(path_, "closing (writing what was cached)", errno);
}

#define MOE_H5_INSTANTIATE(T)                                                                                          \
  template void File::read<T>(const std::string&, const std::vector<int64_t>&, const std::vector<int64_t>&, T*, bool)  \
      const;                                                                                                           \
  template std::vector<T> File::read_all<T>(const std::string&) const;                                                 \
  template void File::create_dataset<T>(const std::string&, const std::vector<int64_t>&, const std::vector<int64_t>&); \
  template void File::write<T>(const std::string&, const std::vector<int64_t>&, const std::vector<int64_t>&, const T*, \
                               bool);
MOE_H5_INSTANTIATE(float)
MOE_H5_INSTANTIATE(double)
MOE_H5_INSTANTIATE(int32_t)
MOE_H5_INSTANTIATE(int64_t)
MOE_H5_INSTANTIATE(uint16_t)
#undef MOE_H5_INSTANTIATE

}  // namespace moe::h5
