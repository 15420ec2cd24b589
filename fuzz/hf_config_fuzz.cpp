// libFuzzer target: a Hugging Face config.json mapped to a ModelConfig (read_hf_config).
#include "core/error.hpp"
#include "fuzz_support.hpp"
#include "io/hf_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static moe::fuzz::ScratchFile file("config.json");
  moe::fuzz::write_file(file.path, data, size);
  try {
    const moe::HfArchitecture a = moe::read_hf_config(file.path);
    (void)a.config.parameter_count();
  } catch (const moe::Error&) {
  }
  return 0;
}
