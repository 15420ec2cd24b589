#pragma once
// The HDF5 checkpoint (docs/formats.md): architecture from the root attributes, tensors read as
// boxes so a rank reads only what it holds. Every read checks the dataset's dtype and shape
// against the architecture and that the values are finite, and feeds the model checksum.
#include <mpi.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "core/checksum.hpp"
#include "core/dtype.hpp"
#include "io/h5.hpp"
#include "io/mapped_file.hpp"

namespace moe {

// Weights in host memory as stored (f32 or bf16), dense row-major over `shape`.
struct HostTensor {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
  int64_t numel() const;
  // The values widened to float32 (for small vectors: norms, biases).
  std::vector<float> to_f32() const;
};

// Trained weights stay within a few hundred in magnitude (norm scales included); one beyond this
// is reported at load (CheckpointReader::warnings()).
inline constexpr float kLargestPlausibleWeight = 1e4f;

class CheckpointReader {
 public:
  CheckpointReader(const std::string& path, MPI_Comm comm);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const { return file_.path(); }
  const ModelConfig& config() const { return config_; }
  bool has(const std::string& name) const { return file_.has(name); }
  // The open file, for metadata queries (the expert cache maps expert blocks to byte offsets).
  const h5::File& file() const { return file_; }

  // Reads the box [offset, offset + count) of `name`, whose full shape must be `expected_shape`.
  // Empty offset/count read the whole tensor.
  HostTensor read(const std::string& name, const std::vector<int64_t>& expected_shape,
                  const std::vector<int64_t>& offset = {}, const std::vector<int64_t>& count = {});
  // The same read into host memory the caller owns: dst_bytes must be the box's size in the
  // dataset's dtype (dtype()). Same checks and checksum as read(); returns that dtype.
  DType read_into(const std::string& name, const std::vector<int64_t>& expected_shape,
                  const std::vector<int64_t>& offset, const std::vector<int64_t>& count, void* dst,
                  std::size_t dst_bytes);
  // Weights in place (io/mapped_file.hpp), off unless asked: with it on, map_box() gives boxes
  // that lie in the file as one aligned run of bytes straight from the mapped file.
  void set_map_weights(bool on);
  bool map_weights() const { return map_weights_; }
  // Whether map_box() would give this box in place (no checks, no checksum: nothing recorded).
  bool can_map(const std::string& name, const std::vector<int64_t>& expected_shape, const std::vector<int64_t>& offset,
               const std::vector<int64_t>& count);
  // The box in place in the mapped file, after the same checks and checksum as read_into() over
  // its mapped bytes; nullptr (nothing done) where can_map() is false. Valid while mapping() is held.
  const void* map_box(const std::string& name, const std::vector<int64_t>& expected_shape,
                      const std::vector<int64_t>& offset, const std::vector<int64_t>& count);
  // The mapping map_box() points into (held by whoever keeps such pointers).
  std::shared_ptr<const MappedFile> mapping() const { return mapping_; }
  // A weight dataset's element type (f32 or bf16; anything else is refused naming the dataset).
  DType dtype(const std::string& name) const;
  // The model's identity for results and --resume, collective over comm (every rank that read
  // weights): fingerprint() combined with a checksum of every weight byte the ranks read. Each
  // element's bits are mixed with its flat index in its dataset and summed (mod 2^64) per read,
  // while read() checks the values; a box that several ranks read counts once. The union of the
  // ranks' reads is the whole model in every layout, so the result is the same for every layout.
  std::string model_checksum(MPI_Comm comm) const;
  // The model's identity, the same on every rank and for every layout: the architecture, every
  // dataset's name, type and shape, and a sample of its values (the first up to 256 elements of
  // its first row). Stored in results so that resuming refuses output from another model.
  // Independent reads: any subset of ranks may call it.
  std::string fingerprint() const;
  // One line per dataset read so far holding a finite weight far beyond what training produces
  // (kLargestPlausibleWeight): such a model runs, but its activations may overflow to inf/NaN.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct BoxSum {
    std::string name;
    std::vector<int64_t> offset, count;
    uint64_t sum = 0;
  };
  h5::File file_;
  ModelConfig config_;
  // A second descriptor of the file for reads that bypass HDF5 (io/box_extents.hpp).
  int raw_fd();
  const std::byte* find_in_place(const std::string& name, const std::vector<int64_t>& expected_shape,
                                 const std::vector<int64_t>& offset, const std::vector<int64_t>& count);
  // A box's scan: a non-finite value fails, the sum joins the checksum, a huge value warns.
  void record_box(const std::string& name, DType type, const std::vector<int64_t>& offset,
                  const std::vector<int64_t>& count, uint64_t sum, int64_t first_bad, uint64_t max_magnitude_bits,
                  const void* data);

  std::vector<BoxSum> reads_;
  std::vector<std::string> warnings_;
  int raw_fd_ = -1;
  bool raw_fd_tried_ = false;
  bool map_weights_ = false;
  bool mapping_tried_ = false;
  std::shared_ptr<const MappedFile> mapping_;
};

// Writes a checkpoint tensor by tensor (moe-synth, converters): memory stays one tensor.
class CheckpointWriter {
 public:
  CheckpointWriter(const std::string& path, const ModelConfig& config, MPI_Comm comm);
  // data holds numel(shape) floats; stored as f32 or, with dtype bf16, rounded to bf16.
  // 3-D tensors ([E, rows, cols]) are chunked one expert per chunk.
  void write(const std::string& name, const std::vector<int64_t>& shape, const float* data, DType dtype = DType::f32);
  // Streaming: create() an empty tensor, then fill it box by box with write_box() (same dtype), so
  // a converter holds a block of rows, never a whole stacked tensor.
  void create(const std::string& name, const std::vector<int64_t>& shape, DType dtype);
  void write_box(const std::string& name, const std::vector<int64_t>& offset, const std::vector<int64_t>& count,
                 const float* data, DType dtype);
  // Closes the file, reporting a failed write of what was cached (moe::IoError).
  void close() { file_.close(); }

 private:
  h5::File file_;
};

}  // namespace moe
