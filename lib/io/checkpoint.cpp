#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <type_traits>
#include <variant>

#include "core/error.hpp"
#include "io/box_extents.hpp"
#include "io/mapped_file.hpp"

namespace moe {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// The multi-index of flat element i of a box, for messages.
std::string index_text(int64_t i, const std::vector<int64_t>& offset, const std::vector<int64_t>& count) {
  std::vector<int64_t> idx(count.size());
  for (std::size_t d = count.size(); d-- > 0;) {
    idx[d] = offset[d] + i % count[d];
    i /= count[d];
  }
  return shape_text(idx);
}

// One element's contribution to its dataset's checksum: its bits mixed with its flat index in
// the whole dataset, so that sums over any split of the dataset into boxes agree.
inline uint64_t element_hash(uint64_t bits, uint64_t index) {
  uint64_t x = (bits * 0x9e3779b97f4a7c15ull) ^ ((index + 0x632be59bd9b4e019ull) * 0xd6e8feb86659fd93ull);
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ull;
  return x ^ (x >> 29);
}

struct BoxScan {
  uint64_t sum = 0;                 // sum of element_hash over the box (mod 2^64)
  int64_t first_bad = -1;           // the first non-finite element, as an index into the box
  uint64_t max_magnitude_bits = 0;  // largest |element| as its bits without the sign (finite
                                    // floats and bf16 order like these bits)
};

// Adds count words (flat indices base...) to a scan's sum, non-finite flag and largest magnitude.
template <typename Word>
inline void scan_words(const Word* words, int64_t count, uint64_t base, Word exponent, uint64_t& sum, int& bad,
                       uint64_t& max_bits) {
  const Word magnitude = static_cast<Word>(~(Word{1} << (8 * sizeof(Word) - 1)));
  uint64_t s = 0;
  int b = 0;
  Word m = 0;
  for (int64_t c = 0; c < count; ++c) {
    b |= (words[c] & exponent) == exponent;
    m = std::max<Word>(m, words[c] & magnitude);
    s += element_hash(words[c], base + static_cast<uint64_t>(c));
  }
  sum += s;
  bad |= b;
  max_bits = std::max<uint64_t>(max_bits, m);
}

template <typename Word>
BoxScan finish_scan(const Word* data, int64_t n, Word exponent, uint64_t sum, int bad, uint64_t max_bits) {
  BoxScan scan{sum, -1, max_bits};
  if (bad)
    for (int64_t i = 0; i < n && scan.first_bad < 0; ++i)
      if ((data[i] & exponent) == exponent) scan.first_bad = i;
  return scan;
}

// One pass at memory speed over a box [offset, offset + count) of a dataset of shape `full`:
// the checksum sum and whether any element has all exponent bits set (Inf or NaN). Rows of the
// box (its last dimension) go to the OpenMP threads; the loops have no branches to vectorise.
template <typename Word>
BoxScan scan_box(const Word* data, const std::vector<int64_t>& full, const std::vector<int64_t>& offset,
                 const std::vector<int64_t>& count, Word exponent) {
  const std::size_t dims = count.size();
  const int64_t cols = dims ? count.back() : 1;
  const int64_t rows = cols ? product(count) / cols : 0;
  std::vector<int64_t> stride(dims, 1);  // element strides of the full dataset
  for (std::size_t d = dims; d-- > 1;) stride[d - 1] = stride[d] * full[d];
  uint64_t sum = 0;
  int bad = 0;
  uint64_t max_bits = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum) reduction(| : bad) reduction(max : max_bits)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = dims ? offset.back() : 0;
    int64_t rest = r;
    for (std::size_t d = dims ? dims - 1 : 0; d-- > 0;) {
      base += (offset[d] + rest % count[d]) * stride[d];
      rest /= count[d];
    }
    scan_words(data + r * cols, cols, static_cast<uint64_t>(base), exponent, sum, bad, max_bits);
  }
  return finish_scan(data, rows * cols, exponent, sum, bad, max_bits);
}

// Loading reads blocks of this size on the OpenMP threads and scans each one while it is in cache.
constexpr uint64_t kLoadBlockBytes = uint64_t{8} << 20;

// The box's bytes (at the file runs x names) read with pread into dst on the OpenMP threads, a
// block at a time, each block scanned right after its read: the same sum, flag and maximum as
// scan_box, in one pass over memory instead of two and on every core. Returns the failed read
// (errno, or EIO for a file that ends early) as err != 0.
template <typename Word>
BoxScan read_and_scan(int fd, const BoxExtents& x, Word* dst, Word exponent, int& err) {
  struct Block {
    uint64_t file_offset;
    int64_t first, count;  // elements of the box
  };
  std::vector<Block> blocks;
  int64_t at = 0;
  for (const ByteRun& run : x.runs) {
    // The whole box's reads go to the storage at once (asynchronous readahead), not one
    // block-sized synchronous read per thread: a cold checkpoint then loads at the device's
    // parallel bandwidth. Advice only: a failure changes nothing but speed.
    (void)::posix_fadvise(fd, static_cast<off_t>(run.file_offset), static_cast<off_t>(run.bytes), POSIX_FADV_WILLNEED);
    for (uint64_t b = 0; b < run.bytes; b += kLoadBlockBytes) {
      const auto n = static_cast<int64_t>(std::min(kLoadBlockBytes, run.bytes - b) / sizeof(Word));
      blocks.push_back({run.file_offset + b, at, n});
      at += n;
    }
  }
  uint64_t sum = 0, max_bits = 0;
  int bad = 0;
  std::atomic<int> first_error{0};
  const auto count = static_cast<int64_t>(blocks.size());
#pragma omp parallel for schedule(dynamic) reduction(+ : sum) reduction(| : bad) reduction(max : max_bits)
  for (int64_t i = 0; i < count; ++i) {
    const Block& block = blocks[static_cast<std::size_t>(i)];
    Word* words = dst + block.first;
    auto* bytes = reinterpret_cast<char*>(words);
    std::size_t left = static_cast<std::size_t>(block.count) * sizeof(Word);
    auto offset = static_cast<off_t>(block.file_offset);
    while (left > 0) {
      const ssize_t got = pread(fd, bytes, left, offset);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        int expected = 0;
        first_error.compare_exchange_strong(expected, got < 0 ? errno : EIO);
        break;
      }
      bytes += got;
      left -= static_cast<std::size_t>(got);
      offset += got;
    }
    if (left > 0) continue;
    scan_words(words, block.count, static_cast<uint64_t>(x.first_element + block.first), exponent, sum, bad, max_bits);
  }
  err = first_error.load();
  return finish_scan(dst, at, exponent, sum, bad, max_bits);
}

// The same scan over a box that lies in place in a mapped file as one run of the dataset's flat
// order starting at element first_element; blocks on the OpenMP threads, so the page faults
// that map the file's cached pages are taken on every core.
template <typename Word>
BoxScan scan_in_place(const Word* data, int64_t n, int64_t first_element, Word exponent) {
  constexpr auto block = static_cast<int64_t>(kLoadBlockBytes / sizeof(Word));
  const int64_t blocks = (n + block - 1) / block;
  uint64_t sum = 0, max_bits = 0;
  int bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : sum) reduction(| : bad) reduction(max : max_bits)
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t first = i * block;
    scan_words(data + first, std::min(block, n - first), static_cast<uint64_t>(first_element + first), exponent, sum,
               bad, max_bits);
  }
  return finish_scan(data, n, exponent, sum, bad, max_bits);
}

}  // namespace

int64_t HostTensor::numel() const {
  return product(shape);
}

std::vector<float> HostTensor::to_f32() const {
  std::vector<float> out(static_cast<std::size_t>(numel()));
  if (dtype == DType::f32) {
    std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  } else {
    const auto* src = reinterpret_cast<const uint16_t*>(bytes.data());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(src[i]);
  }
  return out;
}

// POSIX reads: every rank reads its own boxes, independently (io/h5.hpp).
CheckpointReader::CheckpointReader(const std::string& path, MPI_Comm /*comm*/)
    : file_(h5::File::open_read_local(path)) {
  config_ = ModelConfig::from_attributes(file_.read_attributes("/"), path);
}

CheckpointReader::~CheckpointReader() {
  if (raw_fd_ >= 0) ::close(raw_fd_);
}

int CheckpointReader::raw_fd() {
  // Opened once, at the first plain read; -1 (HDF5 reads everything) when it cannot be opened.
  if (!raw_fd_tried_) {
    raw_fd_tried_ = true;
    raw_fd_ = ::open(path().c_str(), O_RDONLY | O_CLOEXEC);
  }
  return raw_fd_;
}

DType CheckpointReader::dtype(const std::string& name) const {
  const h5::DatasetInfo info = file_.info(name);
  MOE_CHECK(info.kind == h5::ElementKind::f32 || info.kind == h5::ElementKind::bf16,
            "{}: dataset '{}' has type {}, expected float32 or bf16", path(), name, info.type_name);
  return info.kind == h5::ElementKind::bf16 ? DType::bf16 : DType::f32;
}

HostTensor CheckpointReader::read(const std::string& name, const std::vector<int64_t>& expected_shape,
                                  const std::vector<int64_t>& offset_in, const std::vector<int64_t>& count_in) {
  const std::vector<int64_t> offset = offset_in.empty() ? std::vector<int64_t>(expected_shape.size(), 0) : offset_in;
  const std::vector<int64_t> count = count_in.empty() ? expected_shape : count_in;
  HostTensor t;
  t.dtype = dtype(name);
  t.shape = count;
  MOE_CHECK(count.size() == expected_shape.size(), "{}: dataset '{}': a box of rank {} in a tensor of rank {}", path(),
            name, count.size(), expected_shape.size());
  t.bytes.resize(static_cast<std::size_t>(product(count)) * dtype_size(t.dtype));
  read_into(name, expected_shape, offset, count, t.bytes.data(), t.bytes.size());
  return t;
}

DType CheckpointReader::read_into(const std::string& name, const std::vector<int64_t>& expected_shape,
                                  const std::vector<int64_t>& offset, const std::vector<int64_t>& count, void* dst,
                                  std::size_t dst_bytes) {
  const h5::DatasetInfo info = file_.info(name);
  const DType type = dtype(name);
  MOE_CHECK(info.shape == expected_shape, "{}: dataset '{}' has shape {}, but the architecture needs {}", path(), name,
            shape_text(info.shape), shape_text(expected_shape));
  const int64_t n = product(count);
  MOE_CHECK(static_cast<std::size_t>(n) * dtype_size(type) == dst_bytes,
            "{}: dataset '{}': a box of {} elements of {} does not fill {} bytes", path(), name, n, dtype_name(type),
            dst_bytes);
  BoxScan scan;
  // Plain layouts: pread on every thread, each block checked while in cache; others through HDF5.
  const std::optional<BoxExtents> extents = box_extents(file_, name, expected_shape, offset, count, dtype_size(type));
  if (extents && raw_fd() >= 0) {
    int err = 0;
    scan = type == DType::f32
               ? read_and_scan(raw_fd(), *extents, static_cast<uint32_t*>(dst), uint32_t{0x7f800000u}, err)
               : read_and_scan(raw_fd(), *extents, static_cast<uint16_t*>(dst), uint16_t{0x7f80u}, err);
    MOE_CHECK(err == 0, "{}: reading dataset '{}' at offset {} count {} failed ({})", path(), name, shape_text(offset),
              shape_text(count), std::strerror(err));
  } else if (type == DType::f32) {
    auto* data = static_cast<uint32_t*>(dst);
    file_.read<float>(name, offset, count, reinterpret_cast<float*>(data));
    scan = scan_box(data, expected_shape, offset, count, uint32_t{0x7f800000u});
  } else {
    auto* data = static_cast<uint16_t*>(dst);
    file_.read<uint16_t>(name, offset, count, data);
    scan = scan_box(data, expected_shape, offset, count, uint16_t{0x7f80u});
  }
  record_box(name, type, offset, count, scan.sum, scan.first_bad, scan.max_magnitude_bits, dst);
  return type;
}

void CheckpointReader::record_box(const std::string& name, DType type, const std::vector<int64_t>& offset,
                                  const std::vector<int64_t>& count, uint64_t sum, int64_t first_bad,
                                  uint64_t max_magnitude_bits, const void* data) {
  if (first_bad >= 0) {
    const double value = type == DType::f32 ? static_cast<const float*>(data)[first_bad]
                                            : bf16_to_float(static_cast<const uint16_t*>(data)[first_bad]);
    fail("{}: dataset '{}' holds a non-finite {}value ({}) at {}", path(), name, type == DType::bf16 ? "bf16 " : "",
         value, index_text(first_bad, offset, count));
  }
  reads_.push_back({name, offset, count, sum});
  const float max_abs = type == DType::f32 ? std::bit_cast<float>(static_cast<uint32_t>(max_magnitude_bits))
                                           : bf16_to_float(static_cast<uint16_t>(max_magnitude_bits));
  if (max_abs > kLargestPlausibleWeight)
    warnings_.push_back(
        fmt::format("{}: dataset '{}' holds a weight of magnitude {:.3g} (above {:.0e}): activations "
                    "may overflow float32",
                    path(), name, max_abs, kLargestPlausibleWeight));
}

void CheckpointReader::set_map_weights(bool on) {
  map_weights_ = on;
}

const std::byte* CheckpointReader::find_in_place(const std::string& name, const std::vector<int64_t>& expected_shape,
                                                 const std::vector<int64_t>& offset,
                                                 const std::vector<int64_t>& count) {
  if (!map_weights_) return nullptr;
  if (!mapping_tried_) {
    mapping_tried_ = true;
    mapping_ = MappedFile::open(path());
  }
  if (!mapping_ || file_.info(name).shape != expected_shape) return nullptr;
  const std::size_t element = dtype_size(dtype(name));
  const std::optional<BoxExtents> x = box_extents(file_, name, expected_shape, offset, count, element);
  if (!x || x->runs.size() != 1) return nullptr;
  const ByteRun& run = x->runs.front();
  // An element aligned to its size (HDF5 places data at multiples of 8), inside the file as it is now.
  if (run.file_offset % element != 0 || run.file_offset + run.bytes > mapping_->size()) return nullptr;
  return mapping_->data() + run.file_offset;
}

bool CheckpointReader::can_map(const std::string& name, const std::vector<int64_t>& expected_shape,
                               const std::vector<int64_t>& offset, const std::vector<int64_t>& count) {
  return find_in_place(name, expected_shape, offset, count) != nullptr;
}

const void* CheckpointReader::map_box(const std::string& name, const std::vector<int64_t>& expected_shape,
                                      const std::vector<int64_t>& offset, const std::vector<int64_t>& count) {
  const std::byte* at = find_in_place(name, expected_shape, offset, count);
  if (at == nullptr) return nullptr;
  const DType type = dtype(name);
  const int64_t n = product(count);
  const std::size_t bytes = static_cast<std::size_t>(n) * dtype_size(type);
  mapping_->will_need(static_cast<std::size_t>(at - mapping_->data()), bytes);
  const std::optional<BoxExtents> x = box_extents(file_, name, expected_shape, offset, count, dtype_size(type));
  const BoxScan scan =
      type == DType::f32
          ? scan_in_place(reinterpret_cast<const uint32_t*>(at), n, x->first_element, uint32_t{0x7f800000u})
          : scan_in_place(reinterpret_cast<const uint16_t*>(at), n, x->first_element, uint16_t{0x7f80u});
  record_box(name, type, offset, count, scan.sum, scan.first_bad, scan.max_magnitude_bits, at);
  return at;
}

std::string CheckpointReader::model_checksum(MPI_Comm comm) const {
  // Each rank's reads as text lines "name\toffset\tcount\telements\tsum", gathered on rank 0.
  std::string lines;
  for (const BoxSum& r : reads_)
    lines +=
        fmt::format("{}\t{}\t{}\t{}\t{}\n", r.name, shape_text(r.offset), shape_text(r.count), product(r.count), r.sum);
  int rank = 0, ranks = 1;
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MOE_MPI_CHECK(MPI_Comm_size(comm, &ranks));
  // Every rank learns the total, so that all refuse an oversized gather together.
  auto total = static_cast<int64_t>(lines.size());
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT64_T, MPI_SUM, comm));
  MOE_CHECK(total < (int64_t{1} << 31), "{}: too many reads for the model checksum", path());
  int length = static_cast<int>(lines.size());
  std::vector<int> lengths(static_cast<std::size_t>(ranks)), displs(static_cast<std::size_t>(ranks));
  MOE_MPI_CHECK(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comm));
  for (int r = 0, at = 0; r < ranks; ++r) {
    displs[r] = at;
    at += lengths[r];
  }
  std::string all(static_cast<std::size_t>(rank == 0 ? total : 0), '\0');
  MOE_MPI_CHECK(
      MPI_Gatherv(lines.data(), length, MPI_CHAR, all.data(), lengths.data(), displs.data(), MPI_CHAR, 0, comm));
  char hex[17] = {};
  if (rank == 0) {
    // Identical boxes (read by several ranks) count once; per dataset, the sums of the distinct
    // boxes and the number of elements they cover.
    std::map<std::string, uint64_t> boxes;
    std::size_t pos = 0;
    while (pos < all.size()) {
      const std::size_t end = all.find('\n', pos);
      const std::string line = all.substr(pos, end - pos);
      const std::size_t tab = line.rfind('\t');
      boxes.emplace(line.substr(0, tab), std::stoull(line.substr(tab + 1)));
      pos = end + 1;
    }
    struct Dataset {
      uint64_t sum = 0;
      int64_t elements = 0;
    };
    std::map<std::string, Dataset> datasets;
    for (const auto& [key, sum] : boxes) {
      const std::size_t last = key.rfind('\t');
      Dataset& d = datasets[key.substr(0, key.find('\t'))];
      d.sum += sum;
      d.elements += std::stoll(key.substr(last + 1));
    }
    Fnv1a hash;
    const std::string identity = fingerprint();
    hash.update(identity.data(), identity.size());
    for (const auto& [name, d] : datasets) {
      hash.update(name.data(), name.size() + 1);
      hash.update_value(d.sum);
      hash.update_value(d.elements);
    }
    std::snprintf(hex, sizeof(hex), "%s", hash.hex().c_str());
  }
  MOE_MPI_CHECK(MPI_Bcast(hex, 16, MPI_CHAR, 0, comm));
  return std::string(hex, 16);
}

std::string CheckpointReader::fingerprint() const {
  Fnv1a hash;
  for (const auto& [key, value] : config_.to_attributes()) {
    hash.update(key.data(), key.size() + 1);
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            hash.update(v.data(), v.size() + 1);
          } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
            for (const int64_t x : v) hash.update_value(x);
          } else {
            hash.update_value(v);
          }
        },
        value);
  }
  std::vector<std::byte> sample;
  for (const std::string& name : file_.dataset_names()) {
    const h5::DatasetInfo info = file_.info(name);
    hash.update(name.data(), name.size() + 1);
    hash.update(info.type_name.data(), info.type_name.size() + 1);
    for (const int64_t n : info.shape) hash.update_value(n);
    if (info.shape.empty() || product(info.shape) == 0) continue;
    // The first row's leading elements, as stored (float32 or 16-bit words).
    std::vector<int64_t> count(info.shape.size(), 1);
    count.back() = std::min<int64_t>(256, info.shape.back());
    const std::vector<int64_t> offset(info.shape.size(), 0);
    if (info.kind == h5::ElementKind::f32) {
      std::vector<float> v(static_cast<std::size_t>(count.back()));
      file_.read<float>(name, offset, count, v.data());
      hash.update(v.data(), v.size() * sizeof(float));
    } else if (info.kind == h5::ElementKind::bf16) {
      std::vector<uint16_t> v(static_cast<std::size_t>(count.back()));
      file_.read<uint16_t>(name, offset, count, v.data());
      hash.update(v.data(), v.size() * sizeof(uint16_t));
    }
  }
  return hash.hex();
}

CheckpointWriter::CheckpointWriter(const std::string& path, const ModelConfig& config, MPI_Comm comm)
    : file_(h5::File::create(path, comm)) {
  file_.write_attributes(config.to_attributes());
}

void CheckpointWriter::write(const std::string& name, const std::vector<int64_t>& shape, const float* data,
                             DType dtype) {
  create(name, shape, dtype);
  write_box(name, std::vector<int64_t>(shape.size(), 0), shape, data, dtype);
}

void CheckpointWriter::create(const std::string& name, const std::vector<int64_t>& shape, DType dtype) {
  std::vector<int64_t> chunk;
  if (shape.size() == 3) chunk = {1, shape[1], shape[2]};
  if (dtype == DType::f32) {
    file_.create_dataset<float>(name, shape, chunk);
    return;
  }
  file_.create_dataset<uint16_t>(name, shape, chunk);
  file_.write_string_attribute(name, "dtype", "bf16");
}

void CheckpointWriter::write_box(const std::string& name, const std::vector<int64_t>& offset,
                                 const std::vector<int64_t>& count, const float* data, DType dtype) {
  if (dtype == DType::f32) {
    file_.write<float>(name, offset, count, data);
    return;
  }
  std::vector<uint16_t> packed(static_cast<std::size_t>(product(count)));
  for (std::size_t i = 0; i < packed.size(); ++i) packed[i] = float_to_bf16(data[i]);
  file_.write<uint16_t>(name, offset, count, packed.data());
}

}  // namespace moe
