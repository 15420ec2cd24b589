#pragma once
// A reader of safetensors files (Hugging Face): an 8-byte little-endian header length, a JSON
// header mapping tensor names to {dtype, shape, data_offsets}, then the raw data. The file is
// untrusted: the constructor checks the whole header against the file's size (every tensor's
// bytes lie inside the data section and match its shape and dtype) before anything is read.
// Data is read with pread, row block by row block, so memory stays what the caller asks for.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moe {

// The element types we import; others (F64, I8, ...) are refused with a message naming the tensor.
enum class SafeDType { f32, f16, bf16 };

struct SafeTensorInfo {
  SafeDType dtype = SafeDType::f32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // absolute byte offset in the file
  uint64_t bytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, SafeTensorInfo>& tensors() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const SafeTensorInfo& info(const std::string& name) const;

  // Reads elements [first, first + count) of the flattened tensor, widened to float32.
  void read_f32(const std::string& name, int64_t first, int64_t count, float* out) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::map<std::string, SafeTensorInfo> tensors_;
};

const char* safe_dtype_name(SafeDType t);
// IEEE half to float (exact: every half is a float).
float half_to_float(uint16_t h);

}  // namespace moe
