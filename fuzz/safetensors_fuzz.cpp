// libFuzzer target: SafetensorsFile on arbitrary bytes, then every tensor read back as f32 (the
// reader promises that a header it accepts only points inside the file).
#include <vector>

#include "core/error.hpp"
#include "fuzz_support.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static moe::fuzz::ScratchFile file("safetensors");
  moe::fuzz::write_file(file.path, data, size);
  try {
    moe::SafetensorsFile st(file.path);
    std::vector<float> out;
    for (const auto& [name, info] : st.tensors()) {
      const int64_t n = std::min<int64_t>(info.numel(), 4096);
      out.resize(static_cast<std::size_t>(n));
      st.read_f32(name, 0, n, out.data());
    }
  } catch (const moe::Error&) {
  }
  return 0;
}
