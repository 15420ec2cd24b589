// libFuzzer target: the run-file parser (YAML text, then every key's validation) and the
// run fingerprint of what it accepts. The first line of the input, when it holds '=', is used
// as a --set override too.
#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "config/run_fingerprint.hpp"
#include "core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  const auto newline = text.find('\n');
  if (newline != std::string::npos && text.substr(0, newline).find('=') != std::string::npos)
    overrides.push_back(text.substr(0, newline));
  try {
    const moe::RunConfig c = moe::RunConfig::parse(text, "fuzz.yaml", overrides);
    (void)moe::run_fingerprint(c);
  } catch (const moe::Error&) {
  }
  return 0;
}
