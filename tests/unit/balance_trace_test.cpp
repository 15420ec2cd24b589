// The routing-trace reader (lib/moe/balance/trace_reader): traces written here in moe-score's
// layout read back exactly (finished batches only), several files concatenate along batches, and
// bad traces (another model, no finished batch, a missing or extra layer, wrong expert count, no
// trace) give one-line errors.
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <random>

#include "core/error.hpp"
#include "io/h5.hpp"
#include "moe/balance/plan_trace.hpp"
#include "moe/balance/trace_reader.hpp"
#include "support/h5_edit.hpp"
#include "support/one_line_error.hpp"
#include "support/process.hpp"

namespace moe::balance {
namespace {

using test::expect_one_line_error;

// h5::File opens through MPI-IO: a singleton MPI process for this program.
class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) MPI_Init(nullptr, nullptr);
  }
  void TearDown() override { MPI_Finalize(); }
};
const auto* const kMpi = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

// A PR-MoE-like model: dense, 8 experts, dense, 16 experts.
ModelConfig model() {
  ModelConfig c;
  c.num_layers = 4;
  c.layer_num_experts = {0, 8, 0, 16};
  return c;
}

struct Layer {
  int64_t layer, experts;
};

// Writes a results file as moe-score does with moe.trace: true (docs/formats.md): model_checksum,
// input_checksum, trace_batch_size, batch_done [batches] and trace/layer_<L>/expert_rows [batches, E]. Returns each
// layer's rows of the finished batches, in order.
std::map<int64_t, std::vector<int64_t>> write_trace(const std::string& path, const std::string& checksum,
                                                    const std::vector<Layer>& layers, const std::vector<int32_t>& done,
                                                    std::mt19937& rng) {
  h5::File f = h5::File::create(path, MPI_COMM_SELF);
  f.write_string_attribute("/", "model_checksum", checksum);
  f.write_string_attribute("/", "input_checksum", "0123");
  f.write_attributes({{"trace_batch_size", int64_t{4}}});
  const auto batches = static_cast<int64_t>(done.size());
  f.create_dataset<int32_t>("batch_done", {batches});
  f.write<int32_t>("batch_done", {0}, {batches}, done.data());
  std::map<int64_t, std::vector<int64_t>> out;
  std::uniform_int_distribution<int64_t> d(0, 1000);
  for (const Layer& l : layers) {
    const std::string name = "trace/layer_" + std::to_string(l.layer) + "/expert_rows";
    std::vector<int64_t> v(static_cast<std::size_t>(batches * l.experts));
    for (int64_t b = 0; b < batches; ++b)
      for (int64_t e = 0; e < l.experts; ++e) {
        // Unfinished batches read as 0 in a real file; any value must be ignored.
        v[b * l.experts + e] = d(rng);
        if (done[b]) out[l.layer].push_back(v[b * l.experts + e]);
      }
    f.create_dataset<int64_t>(name, {batches, l.experts});
    f.write<int64_t>(name, {0, 0}, {batches, l.experts}, v.data());
  }
  return out;
}

TEST(BalanceTrace, ReadsFinishedBatchesAndConcatenatesFiles) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  test::ScratchDir dir("balance_trace");
  auto a = write_trace(dir.file("a.h5"), "abc", {{1, 8}, {3, 16}}, {1, 1, 0, 1, 1}, rng);
  auto b = write_trace(dir.file("b.h5"), "abc", {{1, 8}, {3, 16}}, {1, 1, 1}, rng);
  const TraceCounts one = read_trace_counts(dir.file("a.h5"));
  EXPECT_EQ(one.model_checksum, "abc");
  ASSERT_EQ(one.layers.size(), 2u);
  EXPECT_EQ(one.layers.at(3).counts, a[3]);
  EXPECT_EQ(one.layers.at(3).batches, 4);
  const TraceCounts both = read_trace_counts({dir.file("a.h5"), dir.file("b.h5")}, model(), "abc");
  for (int64_t l : {1, 3}) {
    std::vector<int64_t> want = a[l];
    want.insert(want.end(), b[l].begin(), b[l].end());
    EXPECT_EQ(both.layers.at(l).counts, want);
    EXPECT_EQ(both.layers.at(l).batches, 7);
    EXPECT_EQ(both.layers.at(l).experts, model().num_experts(l));
  }
}

TEST(BalanceTrace, BadTracesGiveOneLineErrors) {
  std::mt19937 rng(1);
  test::ScratchDir dir("balance_trace_bad");
  const auto path = [&](const std::string& n) { return dir.file(n + ".h5"); };
  write_trace(path("other"), "fff", {{1, 8}, {3, 16}}, {1, 1}, rng);
  write_trace(path("empty"), "abc", {{1, 8}, {3, 16}}, {0, 0}, rng);
  write_trace(path("missing"), "abc", {{1, 8}}, {1, 1}, rng);
  write_trace(path("dense"), "abc", {{1, 8}, {2, 8}, {3, 16}}, {1, 1}, rng);
  write_trace(path("experts"), "abc", {{1, 8}, {3, 12}}, {1, 1}, rng);
  write_trace(path("none"), "abc", {}, {1, 1}, rng);
  write_trace(path("int32"), "abc", {{1, 8}, {3, 16}}, {1, 1}, rng);
  test::h5_replace_i32(path("int32"), "trace/layer_3/expert_rows", {2, 16}, std::vector<int32_t>(32, 1));
  {
    h5::File f = h5::File::create(path("untraced"), MPI_COMM_SELF);
    f.write_string_attribute("/", "model_checksum", "abc");
    f.write_string_attribute("/", "input_checksum", "0123");
    f.create_dataset<int32_t>("batch_done", {1});
  }
  const auto read = [&](const std::string& n) { read_trace_counts({path(n)}, model(), "abc"); };
  expect_one_line_error([&] { read("other"); }, "trace of model fff, not of this model abc");
  expect_one_line_error([&] { read("empty"); }, "no finished batch");
  expect_one_line_error([&] { read("missing"); }, "lacks MoE layer 3");
  expect_one_line_error([&] { read("dense"); }, "layer 2, which is not an MoE layer");
  expect_one_line_error([&] { read("experts"); }, "layer 3 has 12 experts, the model 16");
  expect_one_line_error([&] { read("none"); }, "no routing trace datasets");
  expect_one_line_error([&] { read("int32"); },
                        "trace dataset 'trace/layer_3/expert_rows' must be int64 [2, experts], is int32");
  expect_one_line_error([&] { read("untraced"); }, "moe.trace: true");
  expect_one_line_error([&] { read_trace_counts({}, model(), "abc"); }, "no trace file");
  expect_one_line_error([&] { read_trace_counts(path("absent")); }, "absent.h5");
}

// Each MoE layer gets its own placement, evaluated on the second half of its own batches.
TEST(BalanceTrace, PlansEveryLayerOnItsOwnCounts) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  test::ScratchDir dir("balance_trace_plan");
  write_trace(dir.file("a.h5"), "abc", {{1, 8}, {3, 16}}, std::vector<int32_t>(6, 1), rng);
  const TraceCounts trace = read_trace_counts({dir.file("a.h5")}, model(), "abc");
  const std::vector<PlannedLayer> planned = plan_trace("replicate", trace, {4, 2, 1});
  ASSERT_EQ(planned.size(), 2u);
  for (const PlannedLayer& p : planned) {
    const CountMatrix& counts = trace.layers.at(p.row.layer);
    EXPECT_EQ(static_cast<int64_t>(p.holders.size()), counts.experts);
    EXPECT_EQ(p.holders, plan_replicate(counts.rows(0, 3), {4, 2, 1}));
    EXPECT_EQ(p.row.slots, counts.experts / 4 + 1);
    EXPECT_EQ(p.row.eval.max_load, evaluate(counts.rows(3, 3), p.holders, 4).max_load);
  }
  const std::vector<ExpertHolders> assignment = layer_assignment(planned, 4);
  ASSERT_EQ(assignment.size(), 4u);
  EXPECT_TRUE(assignment[0].empty() && assignment[2].empty());
  EXPECT_EQ(assignment[1], planned[0].holders);
  EXPECT_EQ(assignment[3], planned[1].holders);
  // 8 experts, 4 ranks, 2 per node: 3 slots per rank fit; 7 extra do not (9 > 8 experts).
  expect_one_line_error([&] { plan_trace("replicate", trace, {4, 2, 7}); }, "layer 1: replicate placement");
}

}  // namespace
}  // namespace moe::balance
