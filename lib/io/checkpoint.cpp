#include "io/checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <variant>

#include "core/error.hpp"

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

CheckpointReader::CheckpointReader(const std::string& path, MPI_Comm comm) : file_(h5::File::open_read(path, comm)) {
  config_ = ModelConfig::from_attributes(file_.read_attributes("/"), path);
}

HostTensor CheckpointReader::read(const std::string& name, const std::vector<int64_t>& expected_shape,
                                  const std::vector<int64_t>& offset_in, const std::vector<int64_t>& count_in) {
  const h5::DatasetInfo info = file_.info(name);
  MOE_CHECK(info.kind == h5::ElementKind::f32 || info.kind == h5::ElementKind::bf16,
            "{}: dataset '{}' has type {}, expected float32 or bf16", path(), name, info.type_name);
  MOE_CHECK(info.shape == expected_shape, "{}: dataset '{}' has shape {}, but the architecture needs {}", path(), name,
            shape_text(info.shape), shape_text(expected_shape));
  const std::vector<int64_t> offset = offset_in.empty() ? std::vector<int64_t>(expected_shape.size(), 0) : offset_in;
  const std::vector<int64_t> count = count_in.empty() ? expected_shape : count_in;
  HostTensor t;
  t.dtype = info.kind == h5::ElementKind::bf16 ? DType::bf16 : DType::f32;
  t.shape = count;
  const int64_t n = product(count);
  t.bytes.resize(static_cast<std::size_t>(n) * dtype_size(t.dtype));
  float max_abs = 0;
  if (t.dtype == DType::f32) {
    auto* data = reinterpret_cast<float*>(t.bytes.data());
    file_.read<float>(name, offset, count, data);
    for (int64_t i = 0; i < n; ++i) {
      MOE_CHECK(std::isfinite(data[i]), "{}: dataset '{}' holds a non-finite value ({}) at {}", path(), name, data[i],
                index_text(i, offset, count));
      max_abs = std::max(max_abs, std::fabs(data[i]));
    }
  } else {
    auto* data = reinterpret_cast<uint16_t*>(t.bytes.data());
    file_.read<uint16_t>(name, offset, count, data);
    uint16_t max_bits = 0;  // bf16 magnitudes order like their bits without the sign
    for (int64_t i = 0; i < n; ++i) {
      MOE_CHECK((data[i] & 0x7f80u) != 0x7f80u, "{}: dataset '{}' holds a non-finite bf16 value ({}) at {}", path(),
                name, bf16_to_float(data[i]), index_text(i, offset, count));
      max_bits = std::max<uint16_t>(max_bits, data[i] & 0x7fffu);
    }
    max_abs = bf16_to_float(max_bits);
  }
  if (max_abs > kLargestPlausibleWeight)
    warnings_.push_back(
        fmt::format("{}: dataset '{}' holds a weight of magnitude {:.3g} (above {:.0e}): activations "
                    "may overflow float32",
                    path(), name, max_abs, kLargestPlausibleWeight));
  hash_.update(name.data(), name.size());
  hash_.update(t.bytes.data(), t.bytes.size());
  return t;
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
