#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/dtype.hpp"
#include "core/error.hpp"

namespace moe {

namespace {

// The format caps the header at 100 MB; a larger length is a corrupt or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
// Rows read per pread when widening: bounded so a huge tensor never needs a huge staging buffer.
constexpr std::size_t kReadBlockBytes = 4u << 20;

std::size_t element_size(SafeDType t) {
  return t == SafeDType::f32 ? 4 : 2;
}

SafeDType parse_dtype(const std::string& name, const std::string& tensor, const std::string& path) {
  if (name == "F32") return SafeDType::f32;
  if (name == "F16") return SafeDType::f16;
  if (name == "BF16") return SafeDType::bf16;
  fail("{}: tensor '{}' has dtype '{}', which is not supported (F32, F16, BF16)", path, tensor, name);
}

void read_exact(int fd, void* out, std::size_t bytes, uint64_t offset, const std::string& path,
                const std::string& what) {
  auto* p = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t got = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    MOE_CHECK(got > 0, "{}: cannot read {} ({})", path, what,
              got < 0 ? std::strerror(errno) : "unexpected end of file");
    p += got;
    bytes -= static_cast<std::size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

SafeTensorInfo parse_entry(const std::string& name, const nlohmann::json& entry, uint64_t data_start,
                           uint64_t data_bytes, const std::string& path) {
  MOE_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") && entry.contains("data_offsets"),
            "{}: tensor '{}' needs dtype, shape and data_offsets in the header", path, name);
  const auto& dtype = entry["dtype"];
  MOE_CHECK(dtype.is_string(), "{}: tensor '{}' has a dtype that is not a string", path, name);
  SafeTensorInfo t;
  t.dtype = parse_dtype(dtype.get<std::string>(), name, path);
  const auto& shape = entry["shape"];
  MOE_CHECK(shape.is_array(), "{}: tensor '{}' has a shape that is not a list", path, name);
  uint64_t numel = 1;
  for (const auto& s : shape) {
    MOE_CHECK(s.is_number_unsigned() || (s.is_number_integer() && s.get<int64_t>() >= 0),
              "{}: tensor '{}' has a shape entry that is not a non-negative integer", path, name);
    const auto v = s.get<uint64_t>();
    MOE_CHECK(v == 0 || numel <= (uint64_t{1} << 60) / v, "{}: tensor '{}' has an impossibly large shape", path, name);
    numel *= v;
    t.shape.push_back(static_cast<int64_t>(v));
  }
  const auto& offsets = entry["data_offsets"];
  MOE_CHECK(
      offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(),
      "{}: tensor '{}' needs data_offsets [begin, end] of non-negative integers", path, name);
  const auto begin = offsets[0].get<uint64_t>();
  const auto end = offsets[1].get<uint64_t>();
  MOE_CHECK(begin <= end && end <= data_bytes,
            "{}: tensor '{}' has data_offsets [{}, {}] outside the data section of {} bytes (truncated file?)", path,
            name, begin, end, data_bytes);
  MOE_CHECK(end - begin == numel * element_size(t.dtype),
            "{}: tensor '{}' holds {} bytes, but its shape and dtype need {}", path, name, end - begin,
            numel * element_size(t.dtype));
  t.begin = data_start + begin;
  t.bytes = end - begin;
  return t;
}

// Two tensors sharing bytes would read as each other's weights (a corrupt or forged header): the
// byte ranges, sorted by start, must not overlap. Zero-length tensors take no bytes.
void check_disjoint(const std::map<std::string, SafeTensorInfo>& tensors, const std::string& path) {
  std::vector<std::pair<uint64_t, const std::string*>> starts;
  for (const auto& [name, t] : tensors)
    if (t.bytes > 0) starts.emplace_back(t.begin, &name);
  std::sort(starts.begin(), starts.end());
  for (std::size_t i = 1; i < starts.size(); ++i) {
    const SafeTensorInfo& prev = tensors.at(*starts[i - 1].second);
    MOE_CHECK(prev.begin + prev.bytes <= starts[i].first,
              "{}: tensors '{}' and '{}' overlap in the data section (bytes {}..{} and {}..); the header is corrupt",
              path, *starts[i - 1].second, *starts[i].second, prev.begin, prev.begin + prev.bytes, starts[i].first);
  }
}

}  // namespace

int64_t SafeTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

const char* safe_dtype_name(SafeDType t) {
  switch (t) {
    case SafeDType::f32:
      return "F32";
    case SafeDType::f16:
      return "F16";
    case SafeDType::bf16:
      return "BF16";
  }
  return "?";
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits = 0;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);  // rebias 15 -> 127
  } else if (mantissa != 0) {
    // Subnormal half: shift the mantissa up until its leading 1 is the implicit bit.
    uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  } else {
    bits = sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MOE_CHECK(fd_ >= 0, "{}: cannot open ({})", path, std::strerror(errno));
  try {
    struct stat st {};
    MOE_CHECK(::fstat(fd_, &st) == 0, "{}: cannot stat ({})", path, std::strerror(errno));
    const auto file_bytes = static_cast<uint64_t>(st.st_size);
    MOE_CHECK(file_bytes >= 8, "{}: file of {} bytes is too short for a safetensors header (truncated file?)", path,
              file_bytes);
    unsigned char length_bytes[8];
    read_exact(fd_, length_bytes, 8, 0, path, "the header length");
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | length_bytes[i];  // little-endian
    MOE_CHECK(header_bytes <= kMaxHeaderBytes && header_bytes <= file_bytes - 8,
              "{}: header length {} points past the end of the file ({} bytes; truncated file?)", path, header_bytes,
              file_bytes);
    std::string text(static_cast<std::size_t>(header_bytes), '\0');
    read_exact(fd_, text.data(), text.size(), 8, path, "the header");
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: the header is not valid JSON ({})", path, e.what());
    }
    MOE_CHECK(header.is_object(), "{}: the header is not a JSON object", path);
    const uint64_t data_start = 8 + header_bytes;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      tensors_[name] = parse_entry(name, entry, data_start, file_bytes - data_start, path);
    }
    check_disjoint(tensors_, path);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

const SafeTensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  MOE_CHECK(it != tensors_.end(), "{}: tensor '{}' is missing", path_, name);
  return it->second;
}

void SafetensorsFile::read_f32(const std::string& name, int64_t first, int64_t count, float* out) const {
  const SafeTensorInfo& t = info(name);
  MOE_CHECK(first >= 0 && count >= 0 && first + count <= t.numel(), "{}: read of tensor '{}' out of range", path_,
            name);
  const std::size_t size = element_size(t.dtype);
  const uint64_t offset = t.begin + static_cast<uint64_t>(first) * size;
  const std::string what = "tensor '" + name + "'";
  if (t.dtype == SafeDType::f32) {
    read_exact(fd_, out, static_cast<std::size_t>(count) * 4, offset, path_, what);  // little-endian host
    return;
  }
  // 16-bit types: read a bounded block, widen, repeat.
  std::vector<uint16_t> block(std::min<std::size_t>(static_cast<std::size_t>(count), kReadBlockBytes / 2));
  for (int64_t done = 0; done < count;) {
    const auto n = static_cast<std::size_t>(std::min<int64_t>(count - done, static_cast<int64_t>(block.size())));
    read_exact(fd_, block.data(), n * 2, offset + static_cast<uint64_t>(done) * 2, path_, what);
    for (std::size_t i = 0; i < n; ++i)
      out[done + static_cast<int64_t>(i)] =
          t.dtype == SafeDType::bf16 ? bf16_to_float(block[i]) : half_to_float(block[i]);
    done += static_cast<int64_t>(n);
  }
}

}  // namespace moe
