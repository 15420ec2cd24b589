// The routing trace (moe.trace, docs/formats.md) against the float64 reference: every token's
// top-k experts of every MoE layer, and each batch's row count per expert, on one rank and on
// four (tp 2 x dp 2, where each tp rank routes a block of its group's tokens), for Mixtral and
// PR-MoE (MoE every other layer, more experts in deeper layers). Read serially here (the library's
// reader opens files through MPI-IO; moe-bench cache's test covers it). Fresh random models and
// tokens each run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>

#include "reference_kernels.hpp"
#include "reference_model.hpp"
#include "support/h5_read.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

struct TokenChoice {
  std::vector<std::vector<int>> ids;  // [layer][k], ascending
};

// Each token's top-k expert ids per MoE layer from the reference forward pass, and the smallest
// gap between the k-th and (k+1)-th router probability seen (fp32 may order a near tie otherwise).
std::vector<std::vector<std::vector<int>>> reference_routing(const ref::Model& m, const ref::Tokens& tokens,
                                                             double& min_margin) {
  const std::size_t d = static_cast<std::size_t>(m.config.hidden_size);
  const std::size_t k = static_cast<std::size_t>(m.config.top_k);
  std::vector<std::vector<std::vector<int>>> out;  // [moe layer][packed token] -> ids
  for (int i = 0; i < m.config.num_layers; ++i)
    if (m.config.layer_num_experts[static_cast<std::size_t>(i)] > 0) out.emplace_back();
  for (const auto& seq : tokens.sequences) {
    ref::Vec h = ref::embed(m, seq);
    std::size_t moe_index = 0;
    for (int i = 0; i < m.config.num_layers; ++i) {
      const std::string p = "layers/" + std::to_string(i) + "/";
      const ref::Vec a = ref::attention_block(m, i, ref::apply_norm(m, p + "attn_norm", h));
      for (std::size_t j = 0; j < h.size(); ++j) h[j] += a[j];
      const ref::Vec x = ref::apply_norm(m, p + "mlp_norm", h);
      const std::size_t e = static_cast<std::size_t>(m.config.layer_num_experts[static_cast<std::size_t>(i)]);
      ref::Vec y;
      if (e == 0) {
        y = ref::mlp_block(m, p + "mlp", static_cast<std::size_t>(m.config.dense_ffn), x);
      } else {
        std::vector<ref::TopK> routing;
        y = ref::moe_block(m, i, x, &routing);
        const ref::Vec logits = ref::linear(x, m.tensor(p + "moe/router", {e, d}).data, e, d);
        for (std::size_t t = 0; t < seq.size(); ++t) {
          ref::Vec prob = ref::softmax(ref::CSpan(logits).subspan(t * e, e));
          std::sort(prob.begin(), prob.end(), std::greater<>());
          if (k < e) min_margin = std::min(min_margin, prob[k - 1] - prob[k]);
          std::vector<int> ids = routing[t].ids;
          std::sort(ids.begin(), ids.end());
          out[moe_index].push_back(ids);
        }
        ++moe_index;
      }
      for (std::size_t j = 0; j < h.size(); ++j) h[j] += y[j];
    }
  }
  return out;
}

class RoutingTrace : public testing::TestWithParam<std::string> {};

TEST_P(RoutingTrace, EqualsReferenceOnEveryLayout) {
  std::random_device rd;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const unsigned model_seed = rd(), token_seed = rd();
    SCOPED_TRACE("model seed " + std::to_string(model_seed) + ", token seed " + std::to_string(token_seed));
    ScratchDir dir("trace-" + GetParam());
    const std::string model = dir.file("model.h5"), tokens = dir.file("tokens.h5");
    auto r = run_command(program("moe-synth") + " model " + input_file("models/" + GetParam() + "-tiny.yaml") + " " +
                         model + " --seed " + std::to_string(model_seed));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(program("moe-synth") + " tokens " + tokens +
                    " --vocab 512 --num-seqs 7 --min-len 0 --max-len 24 --seed " + std::to_string(token_seed));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const ref::Model m = ref::load_model(model);
    const ref::Tokens seqs = ref::load_tokens(tokens);
    double margin = 1.0;
    const auto want = reference_routing(m, seqs, margin);
    if (margin < 1e-5) {
      std::printf("attempt %d: top-k margin %.3g too close to call, drawing again\n", attempt, margin);
      continue;
    }
    const int64_t batch_size = 3;
    const std::size_t k = static_cast<std::size_t>(m.config.top_k);
    for (const auto& [ranks, layout] :
         std::vector<std::pair<int, std::string>>{{1, ""}, {4, "parallel:\n  tp: 2\n  ranks_per_node: 2\n"}}) {
      SCOPED_TRACE(std::to_string(ranks) + " ranks");
      const std::string out = dir.file("out" + std::to_string(ranks) + ".h5");
      r = run_command("timeout 120 " + mpirun(ranks) + program("moe-score") + " " +
                      write_run_file(dir, model, tokens, out,
                                     "batch_size: " + std::to_string(batch_size) + "\n" + layout +
                                         "moe:\n  trace: true\n  trace_topk: true\n"));
      ASSERT_EQ(r.exit_code, 0) << r.output;
      EXPECT_EQ(read_array(out, "batch_done").values, std::vector<double>(3, 1.0));
      std::size_t moe_index = 0;
      for (int64_t i = 0; i < m.config.num_layers; ++i) {
        const int64_t e = m.config.layer_num_experts[static_cast<std::size_t>(i)];
        if (e == 0) continue;
        const std::size_t l = moe_index++;
        const std::string prefix = "trace/layer_" + std::to_string(i) + "/";
        const Array ids = read_array(out, prefix + "topk_ids");
        ASSERT_EQ(ids.shape, (std::vector<int64_t>{static_cast<int64_t>(want[l].size()), static_cast<int64_t>(k)}));
        std::vector<double> counts(static_cast<std::size_t>(3 * e), 0.0);
        std::size_t token = 0;
        for (std::size_t s = 0; s < seqs.sequences.size(); ++s)
          for (std::size_t t = 0; t < seqs.sequences[s].size(); ++t, ++token) {
            std::vector<int> got(k);
            for (std::size_t j = 0; j < k; ++j) got[j] = static_cast<int>(ids.values[token * k + j]);
            std::sort(got.begin(), got.end());
            EXPECT_EQ(got, want[l][token]) << "layer " << i << " token " << token;
            for (int x : want[l][token])
              counts[(s / batch_size) * static_cast<std::size_t>(e) + static_cast<std::size_t>(x)] += 1;
          }
        const Array rows = read_array(out, prefix + "expert_rows");
        EXPECT_EQ(rows.shape, (std::vector<int64_t>{3, e}));
        EXPECT_EQ(rows.values, counts) << "layer " << i;
      }
    }
    return;
  }
  FAIL() << "five draws in a row had near-tied routing";
}

INSTANTIATE_TEST_SUITE_P(Families, RoutingTrace, testing::Values("mixtral", "prmoe"));

}  // namespace
}  // namespace moe::test
