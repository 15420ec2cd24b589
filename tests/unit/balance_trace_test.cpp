// The routing-trace reader (lib/moe/balance/trace_reader): traces written here in the documented
// layout read back exactly, several files concatenate along batches, and bad traces (another
// model, no batches, a missing or extra layer, wrong expert count) give one-line errors.
#include <gtest/gtest.h>
#include <mpi.h>

#include <random>

#include "core/error.hpp"
#include "io/h5.hpp"
#include "moe/balance/trace_reader.hpp"
#include "support/process.hpp"

namespace moe::balance {
namespace {

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
  int64_t layer, experts, batches;
};

// Writes a results file with model_checksum and the given trace datasets; returns their counts.
std::map<int64_t, std::vector<int64_t>> write_trace(const std::string& path, const std::string& checksum,
                                                    const std::vector<Layer>& layers, std::mt19937& rng) {
  h5::File f = h5::File::create(path, MPI_COMM_SELF);
  f.write_string_attribute("/", "model_checksum", checksum);
  std::map<int64_t, std::vector<int64_t>> out;
  std::uniform_int_distribution<int64_t> d(0, 1000);
  for (const Layer& l : layers) {
    const std::string name = "trace/layer_" + std::to_string(l.layer);
    std::vector<int64_t> v(static_cast<std::size_t>(l.batches * l.experts));
    for (auto& x : v) x = d(rng);
    f.create_dataset<int64_t>(name, {l.batches, l.experts});
    if (!v.empty()) f.write<int64_t>(name, {0, 0}, {l.batches, l.experts}, v.data());
    f.write_attributes({{"layer", l.layer}, {"num_experts", l.experts}}, name);
    out[l.layer] = v;
  }
  return out;
}

TEST(BalanceTrace, ReadsAndConcatenatesTraces) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  test::ScratchDir dir("balance_trace");
  auto a = write_trace(dir.file("a.h5"), "abc", {{1, 8, 5}, {3, 16, 5}}, rng);
  auto b = write_trace(dir.file("b.h5"), "abc", {{1, 8, 3}, {3, 16, 3}}, rng);
  const RoutingTrace one = read_routing_trace(dir.file("a.h5"));
  EXPECT_EQ(one.model_checksum, "abc");
  ASSERT_EQ(one.layers.size(), 2u);
  EXPECT_EQ(one.layers.at(3).counts, a[3]);
  EXPECT_EQ(one.layers.at(3).batches, 5);
  const RoutingTrace both = read_routing_traces({dir.file("a.h5"), dir.file("b.h5")}, model(), "abc");
  for (int64_t l : {1, 3}) {
    std::vector<int64_t> want = a[l];
    want.insert(want.end(), b[l].begin(), b[l].end());
    EXPECT_EQ(both.layers.at(l).counts, want);
    EXPECT_EQ(both.layers.at(l).batches, 8);
    EXPECT_EQ(both.layers.at(l).experts, model().num_experts(l));
  }
}

template <typename Fn>
void expect_one_line_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(BalanceTrace, BadTracesGiveOneLineErrors) {
  std::mt19937 rng(1);
  test::ScratchDir dir("balance_trace_bad");
  const auto path = [&](const std::string& n) { return dir.file(n + ".h5"); };
  write_trace(path("other"), "fff", {{1, 8, 4}, {3, 16, 4}}, rng);
  write_trace(path("empty"), "abc", {{1, 8, 0}, {3, 16, 4}}, rng);
  write_trace(path("missing"), "abc", {{1, 8, 4}}, rng);
  write_trace(path("dense"), "abc", {{1, 8, 4}, {2, 8, 4}, {3, 16, 4}}, rng);
  write_trace(path("experts"), "abc", {{1, 8, 4}, {3, 12, 4}}, rng);
  write_trace(path("none"), "abc", {}, rng);
  const auto read = [&](const std::string& n) { read_routing_traces({path(n)}, model(), "abc"); };
  expect_one_line_error([&] { read("other"); }, "trace of model fff, not of this model abc");
  expect_one_line_error([&] { read("empty"); }, "'trace/layer_1' has no batches");
  expect_one_line_error([&] { read("missing"); }, "lacks MoE layer 3");
  expect_one_line_error([&] { read("dense"); }, "layer 2, which is dense");
  expect_one_line_error([&] { read("experts"); }, "layer 3 has 12 experts, the model 16");
  expect_one_line_error([&] { read("none"); }, "no routing trace");
  expect_one_line_error([&] { read_routing_traces({}, model(), "abc"); }, "no trace file");
  expect_one_line_error([&] { read_routing_trace(path("absent")); }, "absent.h5");
}

}  // namespace
}  // namespace moe::balance
