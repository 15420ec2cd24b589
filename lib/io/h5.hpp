#pragma once
// Thin RAII over the HDF5 C API: handles that close themselves, typed reads and writes of
// hyperslabs, attributes as an AttrMap. Files are opened through MPI-IO on a communicator.
#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/attributes.hpp"

namespace moe::h5 {

// An HDF5 identifier closed with the right H5*close on destruction.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { close(); }
  void close();
  // Gives up ownership: the caller closes the id (and can check that closing worked).
  hid_t release() {
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

enum class ElementKind { f32, bf16, f64, i32, i64, other };

struct DatasetInfo {
  std::vector<int64_t> shape;
  ElementKind kind = ElementKind::other;
  std::string type_name;  // for messages: "float32", "int64", ...
};

class File {
 public:
  // Opens an existing file read-only (collective over comm). Errors name the path.
  static File open_read(const std::string& path, MPI_Comm comm);
  // Creates (truncates) a file for writing (collective over comm). Objects carry no timestamps,
  // so the same writes give the same bytes (a resumed run's output equals an uninterrupted one).
  static File create(const std::string& path, MPI_Comm comm);
  // Opens an existing file for reading and writing (collective over comm): resuming a run.
  static File open_readwrite(const std::string& path, MPI_Comm comm);

  const std::string& path() const { return path_; }
  hid_t id() const { return file_.get(); }
  bool has(const std::string& dataset) const;
  // Every dataset's path (no leading '/'), sorted.
  std::vector<std::string> dataset_names() const;
  DatasetInfo info(const std::string& dataset) const;

  // Reads the box [offset, offset + count) of a dataset into out (dense, row-major), converting
  // to T's type. An empty count reads nothing but still takes part (for collective transfers).
  template <typename T>
  void read(const std::string& dataset, const std::vector<int64_t>& offset, const std::vector<int64_t>& count, T* out,
            bool collective = false) const;
  template <typename T>
  std::vector<T> read_all(const std::string& dataset) const;

  // Creates a dataset of T; chunk is optional (empty = contiguous).
  template <typename T>
  void create_dataset(const std::string& dataset, const std::vector<int64_t>& shape,
                      const std::vector<int64_t>& chunk = {});
  template <typename T>
  void write(const std::string& dataset, const std::vector<int64_t>& offset, const std::vector<int64_t>& count,
             const T* data, bool collective = false);

  AttrMap read_attributes(const std::string& object = "/") const;
  void write_attributes(const AttrMap& attrs, const std::string& object = "/");
  void write_string_attribute(const std::string& object, const std::string& name, const std::string& value);
  std::string string_attribute(const std::string& object, const std::string& name) const;
  // Flushes to disk (collective); throws moe::IoError naming the file when it fails.
  void flush();
  // Closes the file (collective), reporting a failure to write what was still cached (full disk)
  // as moe::IoError. The destructor closes too but cannot report; outputs call close().
  void close();

 private:
  // Refuses storage that parallel HDF5 cannot read (virtual and external datasets), by name.
  void check_storage(hid_t ds, const std::string& dataset) const;

  std::string path_;
  Handle file_;
};

}  // namespace moe::h5
