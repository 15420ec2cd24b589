// Static gating (capacity factor, padding, drops) against dynamic gating and the float64
// reference. With capacity factor >= E/k no choice can be dropped, so static gating is dynamic
// gating's function exactly (padding rows add zero); with a small factor the drops the run report
// counts equal the reference's count of choices over capacity, batch by batch.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "reference_model.hpp"
#include "support/h5_read.hpp"
#include "support/process.hpp"
#include "support/report.hpp"

namespace moe::test {
namespace {

int64_t dropped_rows(const nlohmann::json& report) {
  int64_t total = 0;
  for (const auto& layer : report["moe_layers"]) total += layer["dropped_rows"].get<int64_t>();
  return total;
}

struct Fixture {
  ScratchDir dir;
  std::string model, tokens;
  Fixture(const std::string& family, unsigned model_seed, unsigned token_seed, int num_seqs)
      : dir("static-" + family), model(dir.file("model.h5")), tokens(dir.file("tokens.h5")) {
    auto r = run_command(program("moe-synth") + " model " + input_file("models/" + family + "-tiny.yaml") + " " +
                         model + " --seed " + std::to_string(model_seed));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = run_command(program("moe-synth") + " tokens " + tokens + " --vocab 512 --num-seqs " + std::to_string(num_seqs) +
                    " --min-len 0 --max-len 40 --ragged --seed " + std::to_string(token_seed));
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  // Runs moe-score on `ranks` ranks; returns the output file, and the report in `report`.
  std::string score(const std::string& tag, int ranks, const std::string& extra, nlohmann::json* report = nullptr) {
    const std::string out = dir.file(tag + ".h5"), rep = dir.file(tag + ".json");
    const auto r = run_command("timeout 120 " + mpirun(ranks) + program("moe-score") + " " +
                               write_run_file(dir, model, tokens, out, extra + "report: " + rep + "\n"));
    EXPECT_EQ(r.exit_code, 0) << tag << ": " << r.output;
    if (report) *report = read_report(rep);
    return out;
  }
};

// The largest E/k over the model's MoE layers: static gating at this factor can drop nothing.
double no_drop_factor(const std::string& model_path) {
  const ref::Model m = ref::load_model(model_path);
  double factor = 1.0;
  for (const int64_t e : m.config.layer_num_experts)
    factor = std::max(factor, static_cast<double>(e) / static_cast<double>(m.config.top_k));
  return factor;
}

class StaticGating : public testing::TestWithParam<std::string> {};

TEST_P(StaticGating, FullCapacityEqualsDynamic) {
  std::random_device rd;
  const unsigned model_seed = rd(), token_seed = rd();
  SCOPED_TRACE("model seed " + std::to_string(model_seed) + ", token seed " + std::to_string(token_seed));
  Fixture f(GetParam(), model_seed, token_seed, 9);
  const std::string factor = std::to_string(no_drop_factor(f.model));
  for (const auto& [ranks, layout] :
       std::vector<std::pair<int, std::string>>{{1, ""}, {4, "parallel:\n  tp: 2\n  ranks_per_node: 2\n"}}) {
    SCOPED_TRACE(std::to_string(ranks) + " ranks");
    const std::string base = "batch_size: 3\n" + layout;
    const std::string dyn = f.score("dynamic" + std::to_string(ranks), ranks, base + "moe:\n  gating: dynamic\n");
    nlohmann::json report;
    const std::string sta = f.score("static" + std::to_string(ranks), ranks,
                                    base + "moe:\n  gating: static\n  capacity_factor: " + factor + "\n", &report);
    EXPECT_LE(max_abs_diff(read_array(dyn, "logprobs"), read_array(sta, "logprobs")), 1e-6);
    EXPECT_EQ(dropped_rows(report), 0);
    int64_t padded = 0;
    for (const auto& layer : report["moe_layers"]) padded += layer["padded_rows"].get<int64_t>();
    EXPECT_GT(padded, 0) << "a capacity of E/k must pad";
  }
}

TEST_P(StaticGating, DropCountMatchesReference) {
  std::random_device rd;
  const double factor = 0.5;
  const int batch_size = 3;
  // A token whose k-th and (k+1)-th expert probabilities nearly tie could be routed differently by
  // fp32 and the fp64 reference; such draws are replaced (the margin is printed).
  for (int attempt = 0; attempt < 5; ++attempt) {
    const unsigned model_seed = rd(), token_seed = rd();
    SCOPED_TRACE("model seed " + std::to_string(model_seed) + ", token seed " + std::to_string(token_seed));
    Fixture f(GetParam(), model_seed, token_seed, 8);
    const ref::Model model = ref::load_model(f.model);
    const ref::Tokens tokens = ref::load_tokens(f.tokens);
    ref::StaticGating gating;
    gating.capacity_factor = factor;
    std::vector<std::vector<double>> want;
    for (std::size_t first = 0; first < tokens.sequences.size(); first += batch_size) {
      const std::vector<std::vector<int32_t>> batch(
          tokens.sequences.begin() + static_cast<std::ptrdiff_t>(first),
          tokens.sequences.begin() +
              static_cast<std::ptrdiff_t>(std::min(tokens.sequences.size(), first + batch_size)));
      for (auto& seq : ref::score_batch_static(model, batch, gating)) want.push_back(std::move(seq));
    }
    if (gating.min_margin < 1e-5) {
      std::printf("attempt %d: top-k margin %.3g too close to call, drawing again\n", attempt, gating.min_margin);
      continue;
    }
    ASSERT_GT(gating.dropped, 0) << "capacity factor " << factor << " must drop something";
    // One rank, and four data-parallel ranks (each batch is still one gating group).
    for (const int ranks : {1, 4}) {
      SCOPED_TRACE(std::to_string(ranks) + " ranks");
      nlohmann::json report;
      const std::string out =
          f.score("small" + std::to_string(ranks), ranks,
                  "batch_size: " + std::to_string(batch_size) +
                      "\nmoe:\n  gating: static\n  capacity_factor: " + std::to_string(factor) + "\n",
                  &report);
      EXPECT_EQ(dropped_rows(report), gating.dropped);
      const Array got = read_array(out, "logprobs");
      double worst = 0.0;
      std::size_t flat = 0;
      for (const auto& seq : want)
        for (const double v : seq) {
          const double g = got.values[flat++];
          if (std::isnan(v)) {
            EXPECT_TRUE(std::isnan(g));
          } else {
            worst = std::max(worst, std::abs(v - g));
          }
        }
      EXPECT_EQ(flat, got.values.size());
      EXPECT_LE(worst, 1e-4);
      std::printf("%d ranks: %lld drops (reference %lld), max |d logprob| vs reference %.3g\n", ranks,
                  static_cast<long long>(dropped_rows(report)), static_cast<long long>(gating.dropped), worst);
    }
    return;
  }
  FAIL() << "five draws in a row had near-tied routing";
}

INSTANTIATE_TEST_SUITE_P(Families, StaticGating, testing::Values("mixtral", "qwen2moe", "prmoe"),
                         [](const testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace moe::test
