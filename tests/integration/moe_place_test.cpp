// moe-place with routing traces: bad traces (another model's, no finished batch, a MoE layer
// missing) and impossible requests (more replicas than a rank's slots, a world the model's experts
// or the nodes cannot fill, no trace for a planning policy, an input as the output) stop it with
// exit code 1 and one line "moe-place: error: ...", leaving no file behind; a good request prints
// the evaluation table and writes a placement moe-score reads.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "support/h5_edit.hpp"
#include "support/process.hpp"
#include "support/report.hpp"

namespace moe::test {
namespace {

class MoePlace : public testing::Test {
 protected:
  void SetUp() override {
    synth_model(model_, 5);
    auto r = run_command(
        fmt::format("{} tokens {} --vocab 512 --num-seqs 16 --max-len 12 --seed 6", program("moe-synth"), tokens_));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(mpirun(1) + program("moe-score") + " " +
                    write_run_file(dir_, model_, tokens_, trace_, "batch_size: 2\nmoe:\n  trace: true\n"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  void synth_model(const std::string& path, int seed) {
    const auto r = run_command(fmt::format("{} model {} {} --set num_experts=16 --zipf 1 --seed {}",
                                           program("moe-synth"), input_file("models/mixtral-tiny.yaml"), path, seed));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // A copy of the good trace, for editing.
  std::string trace_copy(const std::string& name) {
    const std::string path = dir_.file(name);
    std::filesystem::copy_file(trace_, path);
    return path;
  }
  // Runs moe-place with `args` (plus --model unless given) and returns its only output line, which
  // must be an error; the output file must not exist afterwards.
  std::string refusal(const std::string& args) {
    const std::string out = dir_.file("placement.json");
    std::filesystem::remove(out);
    const std::string model = args.find("--model") == std::string::npos ? " --model " + model_ : "";
    const auto r = run_command(fmt::format("{}{} {} --out {}", program("moe-place"), model, args, out));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_FALSE(std::filesystem::exists(out));
    EXPECT_FALSE(std::filesystem::exists(out + ".partial"));
    std::string line = r.output;
    while (!line.empty() && line.back() == '\n') line.pop_back();
    EXPECT_EQ(line.find('\n'), std::string::npos) << r.output;
    EXPECT_EQ(line.rfind("moe-place: error: ", 0), 0u) << r.output;
    return line;
  }

  ScratchDir dir_{"moe-place"};
  std::string model_ = dir_.file("model.h5"), tokens_ = dir_.file("tokens.h5"), trace_ = dir_.file("trace.h5");
};

TEST_F(MoePlace, WritesThePlacementAndPrintsTheEvaluation) {
  const std::string out = dir_.file("p.json");
  const auto r =
      run_command(fmt::format("{} --model {} --trace {} --trace {} --world 4 --ranks-per-node 2 --policy replicate "
                              "--replicas 1 --out {}",
                              program("moe-place"), model_, trace_, trace_, out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 8 batches per file, two files: built on [0, 8), tested on [8, 16); contiguous beside it.
  EXPECT_NE(r.output.find("built on batches [0, 8), tested on [8, 16)"), std::string::npos) << r.output;
  for (const char* row : {"    0       contiguous      16     4 |", "    0        replicate      16     5 |",
                          "    1        replicate      16     5 |"})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << "\n" << r.output;
  EXPECT_NE(r.output.find("built on all 16 traced batches"), std::string::npos) << r.output;
  const nlohmann::json doc = read_report(out);
  EXPECT_EQ(doc["policy"], "replicate");
  EXPECT_EQ(doc["replicas"], 1);
  EXPECT_EQ(doc["trace_batches"], 16);
  // 16 experts + 4 extra slots: every rank holds 5, each replica once per rank.
  for (const auto& layer : doc["layers"]) {
    std::vector<int> per_rank(4, 0);
    for (const auto& e : layer["experts"])
      for (const auto& h : e["holders"]) ++per_rank[h["rank"].get<std::size_t>()];
    EXPECT_EQ(per_rank, std::vector<int>(4, 5));
  }
  EXPECT_FALSE(std::filesystem::exists(out + ".partial"));
}

TEST_F(MoePlace, BadTraces) {
  const std::string other = dir_.file("other.h5");
  synth_model(other, 9);
  EXPECT_NE(refusal(fmt::format("--model {} --trace {} --world 4 --policy greedy", other, trace_))
                .find(trace_ + ": trace of model "),
            std::string::npos);

  const std::string empty = trace_copy("empty.h5");
  h5_replace_i32(empty, "batch_done", {8}, std::vector<int32_t>(8, 0));
  EXPECT_EQ(refusal(fmt::format("--trace {} --world 4 --policy greedy", empty)),
            "moe-place: error: " + empty + ": the routing trace has no finished batch");

  const std::string missing = trace_copy("missing.h5");
  h5_delete(missing, "trace/layer_1/expert_rows");
  EXPECT_EQ(refusal(fmt::format("--trace {} --trace {} --world 4 --policy greedy", trace_, missing)),
            "moe-place: error: " + missing + ": trace lacks MoE layer 1 (trace/layer_1/expert_rows)");

  const std::string one = trace_copy("one.h5");
  h5_replace_i32(one, "batch_done", {8}, {1, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_NE(refusal(fmt::format("--trace {} --world 4 --policy greedy", one)).find("layer 0: count matrix: 1 batch"),
            std::string::npos);

  EXPECT_EQ(refusal(fmt::format("--trace {} --world 4 --policy greedy", tokens_)),
            "moe-place: error: " + tokens_ +
                ": not a moe-score results file (no 'batch_done', model_checksum or input_checksum)");
}

TEST_F(MoePlace, ImpossibleRequests) {
  const std::string t = " --trace " + trace_;
  // 16 experts on 4 ranks: 4 slots per rank; 13 extra make 17 > 16 experts.
  EXPECT_EQ(refusal(t + " --world 4 --policy replicate --replicas 13"),
            "moe-place: error: layer 0: replicate placement: 13 extra slot(s) per rank make 17 slots per rank, more "
            "than the 16 experts (a rank would hold two replicas of one expert)");
  EXPECT_EQ(refusal(t + " --world 32 --policy greedy"),
            "moe-place: error: layer 0: greedy placement: 16 experts on world 32: needs at least one whole expert per "
            "rank (use replicate)");
  EXPECT_EQ(refusal(t + " --world 6 --ranks-per-node 4 --policy replicate"),
            "moe-place: error: --ranks-per-node 4 does not divide --world 6");
  EXPECT_EQ(refusal(t + " --world 12 --ranks-per-node 4 --policy replicate --replicas 1"),
            "moe-place: error: layer 0: replicate placement: 16 experts do not split evenly over 3 nodes of 4 ranks");
  EXPECT_EQ(refusal(" --world 4 --policy anticorrelation"),
            "moe-place: error: --policy anticorrelation plans from routing history: give --trace RESULTS.h5 "
            "(moe-score with moe.trace: true)");
  EXPECT_EQ(refusal(t + " --world 4 --policy greedy --replicas 1"),
            "moe-place: error: --replicas is for --policy replicate");
  EXPECT_EQ(refusal(t + " --world 4 --policy random"), "moe-place: error: --policy random does not read --trace");
}

TEST_F(MoePlace, RefusesAnInputAsOutput) {
  const auto size = std::filesystem::file_size(trace_);
  const auto r = run_command(fmt::format("{} --model {} --trace {} --world 4 --policy greedy --out {}",
                                         program("moe-place"), model_, trace_, trace_));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output, fmt::format("moe-place: error: {}: '--out' is the same file as '--trace' ({}), which it would "
                                  "overwrite\n",
                                  trace_, trace_));
  EXPECT_EQ(std::filesystem::file_size(trace_), size);
}

}  // namespace
}  // namespace moe::test
