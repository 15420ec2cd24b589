// moe-convert on tiny checkpoints in exactly the Hugging Face layout (tests/support/hf_tiny.py),
// then moe-score, against two independent float64 computations:
//  - hf_tiny.py's numpy forward pass, which reads the safetensors files itself and follows
//    transformers' modeling code per architecture (so a wrong mapping -- gate/up swapped, w2/w3
//    mixed up, a transposed projection, a wrong eps or top-k rule -- shows here);
//  - the project's reference (tests/reference) on the converted checkpoint.
// Weights and tokens are fresh random draws; the seeds are printed.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "reference_model.hpp"
#include "support/h5_read.hpp"
#include "support/hf_fixture.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

constexpr double kTolerance = 1e-4;
// bf16 rounding of F32 weights (--dtype bf16) against the unrounded model: the mean |d logprob|
// stays under this fraction of the mean |logprob| (the maximum is reported, not bounded: a
// rounded router can pick a different expert for a token). Measured about 0.1%.
constexpr double kBf16RoundingRelative = 0.01;

struct Case {
  std::string arch;       // hf_tiny.py architecture
  std::string hf_dtype;   // F32, BF16, F16 in the safetensors files
  std::string out_dtype;  // moe-convert --dtype
  int shards;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.arch << " " << c.hf_dtype << " -> " << c.out_dtype << ", " << c.shards << " shard(s)";
}

// Bytes per element of a dataset as stored (2 for bf16, 4 for f32).
std::size_t stored_element_size(const std::string& path, const std::string& dataset) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t ds = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  const hid_t type = H5Dget_type(ds);
  const std::size_t size = H5Tget_size(type);
  H5Tclose(type);
  H5Dclose(ds);
  H5Fclose(file);
  return size;
}

std::string case_name(const testing::TestParamInfo<Case>& info) {
  std::string arch = info.param.arch;
  for (char& ch : arch)
    if (ch == '-') ch = '_';
  return arch + "_" + info.param.hf_dtype + "_to_" + info.param.out_dtype + "_shards" +
         std::to_string(info.param.shards);
}

struct Diff {
  double max = 0.0;
  double mean = 0.0;
  double mean_magnitude = 0.0;  // of the expected values
  int64_t compared = 0;
};

// Compares logprobs [N, S] (NaN where nothing is scored) with expected values.
Diff compare(const Array& got, const Array& expected) {
  Diff d;
  EXPECT_EQ(got.shape, expected.shape);
  for (std::size_t i = 0; i < expected.values.size() && i < got.values.size(); ++i) {
    const double e = expected.values[i];
    const double g = got.values[i];
    if (std::isnan(e)) {
      EXPECT_TRUE(std::isnan(g)) << "element " << i << " must be NaN";
      continue;
    }
    EXPECT_TRUE(std::isfinite(g)) << "element " << i;
    d.max = std::max(d.max, std::abs(g - e));
    d.mean += std::abs(g - e);
    d.mean_magnitude += std::abs(e);
    ++d.compared;
  }
  if (d.compared > 0) {
    d.mean /= static_cast<double>(d.compared);
    d.mean_magnitude /= static_cast<double>(d.compared);
  }
  return d;
}

class HfImport : public testing::TestWithParam<Case> {};

TEST_P(HfImport, ScoresAsTransformersWould) {
  const Case& c = GetParam();
  ScratchDir dir("hf-" + c.arch);
  std::random_device rd;
  const unsigned model_seed = rd();
  const unsigned token_seed = rd();
  SCOPED_TRACE("model seed " + std::to_string(model_seed) + ", token seed " + std::to_string(token_seed));
  const std::string hf = dir.file("hf");
  const std::string tokens = dir.file("tokens.h5");
  const std::string model = dir.file("model.h5");
  const std::string scores = dir.file("scores.h5");
  const std::string expected = dir.file("expected.h5");
  CommandResult r = run_command(hf_tiny() + " write " + c.arch + " " + hf + " --seed " + std::to_string(model_seed) +
                                " --dtype " + c.hf_dtype + " --shards " + std::to_string(c.shards));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Lengths 0..40 include empty and 1-token sequences; batch 4 leaves a partial last batch.
  r = run_command(program("moe-synth") + " tokens " + tokens + " --vocab 320 --num-seqs 9 --min-len 0 --max-len 40" +
                  " --seed " + std::to_string(token_seed));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(hf_tiny() + " score " + hf + " " + tokens + " " + expected);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(program("moe-convert") + " " + hf + " " + model + " --dtype " + c.out_dtype);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(program("moe-score") + " " + write_run_file(dir, model, tokens, scores, "batch_size: 4\n"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Array got = read_array(scores, "logprobs");
  EXPECT_EQ(stored_element_size(model, "embed_tokens"), c.out_dtype == "bf16" ? 2u : 4u);
  EXPECT_EQ(stored_element_size(model, "layers/0/attn/q_proj"), c.out_dtype == "bf16" ? 2u : 4u);

  // The project's float64 reference on the converted file: the same weights as moe-score used.
  const ref::Model ref_model = ref::load_model(model);
  const ref::Tokens ref_tokens = ref::load_tokens(tokens);
  Array ref_scores = got;
  for (std::size_t s = 0; s < ref_tokens.sequences.size(); ++s) {
    const std::vector<double> lp = ref::score_sequence(ref_model, ref_tokens.sequences[s]);
    const std::size_t row = s * static_cast<std::size_t>(got.shape[1]);
    for (std::size_t t = 0; t < static_cast<std::size_t>(got.shape[1]); ++t)
      ref_scores.values[row + t] = t < lp.size() ? lp[t] : NAN;
  }
  const Diff vs_ref = compare(got, ref_scores);
  // bf16 weights run bf16 GEMMs, whose inputs (the activations) are rounded to bf16 too: the
  // mean is bounded like the rounding of the weights below (docs/models.md).
  const bool bf16_compute = c.out_dtype == "bf16";
  if (bf16_compute) {
    EXPECT_LE(vs_ref.mean, kBf16RoundingRelative * vs_ref.mean_magnitude) << "bf16 compute against the reference";
  } else {
    EXPECT_LE(vs_ref.max, kTolerance) << "against the reference on the converted file";
  }
  // Every scored token (all but the first of each sequence) is compared: a count, not a floor,
  // since random lengths 0..40 of 9 sequences can sum to few tokens (seed 2870938403: 35).
  int64_t scored = 0;
  for (const double len : read_array(tokens, "lengths").values) scored += std::max<int64_t>(0, std::llround(len) - 1);
  EXPECT_GT(scored, 0);
  EXPECT_EQ(vs_ref.compared, scored);

  // transformers' semantics, computed from the Hugging Face files themselves.
  const Diff vs_hf = compare(got, read_array(expected, "logprobs"));
  if (bf16_compute) {
    EXPECT_LE(vs_hf.mean, kBf16RoundingRelative * vs_hf.mean_magnitude) << "bf16 weights and compute against HF";
  } else {
    EXPECT_LE(vs_hf.max, kTolerance) << "against the numpy forward of the Hugging Face files";
  }
  std::printf(
      "%s: max |d logprob| %.3g vs reference, %.3g vs numpy-transformers (mean %.3g, mean |logprob| %.3g) "
      "over %lld tokens\n",
      case_name({c, 0}).c_str(), vs_ref.max, vs_hf.max, vs_hf.mean, vs_hf.mean_magnitude,
      static_cast<long long>(vs_hf.compared));
}

INSTANTIATE_TEST_SUITE_P(Architectures, HfImport,
                         testing::Values(Case{"mixtral", "F32", "f32", 1}, Case{"qwen2moe", "F32", "f32", 2},
                                         Case{"qwen2moe-step2", "F32", "f32", 1}, Case{"olmoe", "F32", "f32", 1},
                                         Case{"deepseek", "F32", "f32", 3}, Case{"deepseek-freq2", "F32", "f32", 1},
                                         Case{"mixtral", "BF16", "bf16", 1}, Case{"qwen2moe", "BF16", "f32", 2},
                                         Case{"olmoe", "F16", "f32", 1}, Case{"deepseek", "F32", "bf16", 1},
                                         Case{"olmoe", "F32", "bf16", 1}),
                         case_name);

}  // namespace
}  // namespace moe::test
