// score_diff A.h5 B.h5: how far two moe-score results files of the same input are apart
// (scripts/gpu_check.sh compares a cuda run with a cpu run). Prints one line:
//   max_abs_dlogprob=X mean_abs_dlogprob=Y tokens=N over_1e-3=M
// over the scored tokens (NaN entries excluded); exits 1, naming what differs, when the shapes or
// the NaN patterns (first tokens, padding) disagree.
#include <cmath>
#include <cstdio>
#include <exception>

#include "support/h5_read.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: score_diff A.h5 B.h5\n");
    return 2;
  }
  try {
    const moe::test::Array a = moe::test::read_array(argv[1], "logprobs");
    const moe::test::Array b = moe::test::read_array(argv[2], "logprobs");
    if (a.shape != b.shape) {
      std::printf("logprobs shapes differ between %s and %s\n", argv[1], argv[2]);
      return 1;
    }
    double worst = 0.0;
    double sum = 0.0;
    std::size_t tokens = 0;
    std::size_t over = 0;
    for (std::size_t i = 0; i < a.values.size(); ++i) {
      if (std::isnan(a.values[i]) != std::isnan(b.values[i])) {
        std::printf("NaN pattern differs at flat index %zu\n", i);
        return 1;
      }
      if (std::isnan(a.values[i])) continue;
      const double d = std::fabs(a.values[i] - b.values[i]);
      worst = std::fmax(worst, d);
      sum += d;
      tokens += 1;
      over += d > 1e-3 ? 1 : 0;
    }
    std::printf("max_abs_dlogprob=%.3g mean_abs_dlogprob=%.3g tokens=%zu over_1e-3=%zu\n", worst,
                tokens ? sum / static_cast<double>(tokens) : 0.0, tokens, over);
    return 0;
  } catch (const std::exception& e) {
    std::printf("%s\n", e.what());
    return 1;
  }
}
