// moe-synth's routing workloads realize what their knobs promise, measured through the model's
// own router by moe-score's routing trace (fresh seeds each run): topic locality puts a batch of
// one topic's sequences on that topic's experts; a Zipf exponent makes expert loads skewed; a
// pair boost makes experts fire with one partner. Without knobs the checkpoint is byte for byte
// the one moe-synth always wrote.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "support/h5_read.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

constexpr int kExperts = 8;

class RoutingWorkload : public testing::Test {
 protected:
  ScratchDir dir{"routing-workload"};
  unsigned seed = std::random_device{}();

  void synth(const std::string& args) {
    const auto r = run_command(program("moe-synth") + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Scores `tokens` with `model_args`, returns the file with the trace.
  std::string traced(const std::string& name, const std::string& model_args, const std::string& tokens) {
    const std::string model = dir.file(name + ".h5"), out = dir.file(name + "_scores.h5");
    synth(" model " + input_file("models/mixtral-tiny.yaml") + " " + model +
          " --set num_experts=" + std::to_string(kExperts) + " --seed " + std::to_string(seed) + " " + model_args);
    const auto r = run_command(
        "timeout 120 " + mpirun(1) + program("moe-score") + " " +
        write_run_file(dir, model, tokens, out, "batch_size: 4\nmoe:\n  trace: true\n  trace_topk: true\n"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
  }
  std::string tokens(const std::string& name, const std::string& args) {
    const std::string path = dir.file(name);
    synth(" tokens " + path + " --vocab 512 --num-seqs 32 --min-len 32 --max-len 48 --seed " + std::to_string(seed) +
          " " + args);
    return path;
  }
};

// Layer 0's rows per expert [batches][E].
std::vector<std::vector<double>> expert_rows(const std::string& scores) {
  const Array a = read_array(scores, "trace/layer_0/expert_rows");
  std::vector<std::vector<double>> rows;
  for (int64_t b = 0; b < a.shape[0]; ++b)
    rows.emplace_back(a.values.begin() + b * a.shape[1], a.values.begin() + (b + 1) * a.shape[1]);
  return rows;
}

// The smallest share, over batches, of a batch's rows on its `k` busiest experts.
double min_busiest_share(const std::string& scores, int k) {
  double worst = 1.0;
  for (auto row : expert_rows(scores)) {
    const double total = std::accumulate(row.begin(), row.end(), 0.0);
    std::sort(row.begin(), row.end(), std::greater<>());
    if (total > 0) worst = std::min(worst, std::accumulate(row.begin(), row.begin() + k, 0.0) / total);
  }
  return worst;
}

// Busiest expert's rows over the mean, over the whole run.
double max_over_mean(const std::string& scores) {
  std::vector<double> total(kExperts, 0.0);
  for (const auto& row : expert_rows(scores))
    for (int e = 0; e < kExperts; ++e) total[static_cast<std::size_t>(e)] += row[static_cast<std::size_t>(e)];
  return *std::max_element(total.begin(), total.end()) / (std::accumulate(total.begin(), total.end(), 0.0) / kExperts);
}

// Mean over experts of the share of their top-2 co-selections that go to their favourite partner.
double partner_share(const std::string& scores) {
  const Array ids = read_array(scores, "trace/layer_0/topk_ids");
  std::vector<std::vector<double>> co(kExperts, std::vector<double>(kExperts, 0.0));
  for (int64_t t = 0; t < ids.shape[0]; ++t) {
    const int a = static_cast<int>(ids.values[static_cast<std::size_t>(2 * t)]);
    const int b = static_cast<int>(ids.values[static_cast<std::size_t>(2 * t + 1)]);
    co[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)] += 1;
    co[static_cast<std::size_t>(b)][static_cast<std::size_t>(a)] += 1;
  }
  double sum = 0;
  int used = 0;
  for (const auto& row : co) {
    const double total = std::accumulate(row.begin(), row.end(), 0.0);
    if (total == 0) continue;
    sum += *std::max_element(row.begin(), row.end()) / total;
    ++used;
  }
  return sum / used;
}

TEST_F(RoutingWorkload, KnobsControlTheRealizedRouting) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string uniform = tokens("uniform.h5", "");
  const std::string topical = tokens("topics.h5", "--topics 4 --topic-run 4");  // one topic per batch of 4
  const std::string plain = traced("plain", "", uniform);
  const std::string plain_topical = traced("plain_topical", "", topical);
  const std::string topic = traced("topic", "--topics 4 --topic-experts 2 --topic-boost 8", topical);
  const std::string zipf = traced("zipf", "--zipf 1.5", uniform);
  const std::string pairs = traced("pairs", "--pair-boost 4", uniform);
  std::printf("busiest-2 share %.3f (plain %.3f), max/mean %.2f (plain %.2f), partner share %.3f (plain %.3f)\n",
              min_busiest_share(topic, 2), min_busiest_share(plain_topical, 2), max_over_mean(zipf),
              max_over_mean(plain), partner_share(pairs), partner_share(plain));
  // Topic locality: every batch's rows sit on its topic's 2 experts; without the knob they spread.
  EXPECT_GE(min_busiest_share(topic, 2), 0.99);
  EXPECT_LT(min_busiest_share(plain_topical, 2), 0.8);
  // Popularity: the busiest expert carries well over the mean.
  EXPECT_GT(max_over_mean(zipf), 2.0);
  EXPECT_LT(max_over_mean(plain), 1.8);
  // Pairs: an expert's co-selections go mostly to its partner (uniform would be 1/7).
  EXPECT_GT(partner_share(pairs), 0.8);
  EXPECT_LT(partner_share(plain), 0.45);
}

TEST_F(RoutingWorkload, NoKnobsLeaveTheModelAsItWas) {
  const std::string a = dir.file("a.h5"), b = dir.file("b.h5");
  synth(" model " + input_file("models/mixtral-tiny.yaml") + " " + a + " --seed 3");
  synth(" model " + input_file("models/mixtral-tiny.yaml") + " " + b + " --seed 3 --zipf 0 --topics 4 --pair-boost 0");
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  const std::string ba((std::istreambuf_iterator<char>(fa)), {}), bb((std::istreambuf_iterator<char>(fb)), {});
  EXPECT_EQ(ba, bb) << "a routing spec without effect changed the weights";
}

TEST_F(RoutingWorkload, BadKnobsGiveOneLine) {
  const std::string spec = input_file("models/mixtral-tiny.yaml") + " " + dir.file("bad.h5");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--topics 4 --topic-boost 2 --topic-experts 9", "--topic-experts must be in [1, 8]"},
      {"--topics 100 --topic-boost 2 --topic-experts 1", "need hidden_size >= 100, got 64"},
      {"--zipf -1", "--zipf must be >= 0"},
  };
  for (const auto& [args, expected] : cases) {
    const auto r = run_command(program("moe-synth") + " model " + spec + " " + args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << r.output;
  }
  const auto r = run_command(program("moe-synth") + " tokens " + dir.file("t.h5") +
                             " --vocab 512 --num-seqs 4 --topics 4 --topic-purity 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--topic-purity must be in [0, 1]"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace moe::test
