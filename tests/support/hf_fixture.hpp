#pragma once
// The command that runs tests/support/hf_tiny.py (tiny Hugging Face checkpoints and their numpy
// forward pass) with Debian's Python, which has numpy and h5py.
#include <string>

namespace moe::test {

inline std::string hf_tiny() {
  return std::string("/usr/bin/python3 ") + MOE_TEST_SUPPORT_DIR + "/hf_tiny.py";
}

}  // namespace moe::test
