// The expert cache's user-facing parts: moe.expert_cache.* keys refused with one line and exit 1
// (slots 0 or more than a layer's experts, unknown policy, belady without a trace or with the
// trace of another input, model or batch size), and `moe-bench cache` replaying a trace: its
// request counts equal the trace's active experts (read here independently), a cache of every
// expert misses only first uses, no policy beats belady, and bad options give one line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/h5_read.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

using testing::HasSubstr;

// The one "<program>: error: ..." line of a rejected run (checks exit code 1 and that it is alone).
std::string one_error_line(const CommandResult& r, const std::string& program_name) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  std::vector<std::string> lines;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(program_name + ": error:", 0) == 0) lines.push_back(line);
  EXPECT_EQ(lines.size(), 1u) << r.output;
  EXPECT_THAT(r.output, testing::Not(HasSubstr("HDF5-DIAG")));
  return lines.empty() ? "" : lines[0];
}

class ExpertCache : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<ScratchDir>("expert-cache");
    const std::string spec = input_file("models/mixtral-tiny.yaml");  // 8 experts, top-2
    synth(" model " + spec + " " + file("model.h5") +
          " --set num_experts=16 --topics 8 --topic-experts 4 --topic-boost 8 --seed 5");
    synth(" model " + spec + " " + file("other_model.h5") + " --set num_experts=16 --seed 6");
    synth(" tokens " + file("tokens.h5") +
          " --vocab 512 --num-seqs 24 --min-len 8 --max-len 32 --topics 8 --topic-run 4 --seed 2");
    synth(" tokens " + file("other_tokens.h5") + " --vocab 512 --num-seqs 24 --min-len 8 --max-len 32 --seed 3");
    score("trace.h5", "model.h5", "tokens.h5", "batch_size: 2\nmoe:\n  trace: true\n");
    score("trace_b4.h5", "model.h5", "tokens.h5", "batch_size: 4\nmoe:\n  trace: true\n");
    score("trace_other_input.h5", "model.h5", "other_tokens.h5", "batch_size: 2\nmoe:\n  trace: true\n");
    score("trace_other_model.h5", "other_model.h5", "tokens.h5", "batch_size: 2\nmoe:\n  trace: true\n");
  }
  static void TearDownTestSuite() { dir_.reset(); }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static void synth(const std::string& args) {
    const auto r = run_command(program("moe-synth") + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static CommandResult run_score(const std::string& out, const std::string& model, const std::string& tokens,
                                 const std::string& extra, int ranks = 1) {
    return run_command("timeout 120 " + mpirun(ranks) + program("moe-score") + " " +
                       write_run_file(*dir_, file(model), file(tokens), file(out), extra));
  }
  static void score(const std::string& out, const std::string& model, const std::string& tokens,
                    const std::string& extra) {
    const auto r = run_score(out, model, tokens, extra);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static inline std::unique_ptr<ScratchDir> dir_;
};

TEST_F(ExpertCache, BadKeysGiveOneLine) {
  struct Case {
    std::string cache_keys;
    std::string expected;
  };
  const std::string belady = "    policy: belady\n    slots: 2\n";
  const std::vector<Case> cases = {
      {"    slots: 0\n", "'moe.expert_cache.slots' is '0': at least 1 expert must be resident"},
      {"    slots: 17\n", "'moe.expert_cache.slots' is 17, more than the 16 experts of MoE layer 0"},
      {"    slots: 0%\n", "a percentage must be in (0, 100]"},
      {"    slots: two\n", "'moe.expert_cache.slots' is 'two'"},
      {"    policy: fifo\n", "'moe.expert_cache.policy' is 'fifo' (valid: lifo, lru, belady)"},
      {belady, "'moe.expert_cache.policy: belady' needs 'moe.expert_cache.trace'"},
      {belady + "    trace: " + file("trace_other_input.h5") + "\n", "traced another input"},
      {belady + "    trace: " + file("trace_other_model.h5") + "\n", "traced another model"},
      {belady + "    trace: " + file("trace_b4.h5") + "\n", "was run with batch_size 4, this run has 2"},
      {belady + "    trace: " + file("tokens.h5") + "\n", "not a moe-score results file"},
      {belady + "    trace: " + file("missing.h5") + "\n", "missing.h5"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    // Every rank checks and all agree: two ranks must still print one line (a few cases suffice).
    for (const int ranks : {1, 2}) {
      if (ranks == 2 && i % 3 != 0) continue;
      SCOPED_TRACE(c.cache_keys + " on " + std::to_string(ranks) + " ranks");
      const auto r =
          run_score("bad.h5", "model.h5", "tokens.h5", "batch_size: 2\nmoe:\n  expert_cache:\n" + c.cache_keys, ranks);
      EXPECT_THAT(one_error_line(r, "moe-score"), HasSubstr(c.expected));
    }
  }
}

TEST_F(ExpertCache, ValidBeladyKeysPassValidation) {
  // Every check passes and the bounded store runs (its results: expert_store_parity_test).
  const auto r2 = run_score("ok.h5", "model.h5", "tokens.h5",
                            "batch_size: 2\nmoe:\n  expert_cache:\n    policy: belady\n    slots: 25%\n    trace: " +
                                file("trace.h5") + "\n");
  EXPECT_EQ(r2.exit_code, 0) << r2.output;
  // Static gating computes padding rows the trace does not show: belady cannot plan with it.
  const auto r4 = run_score("static.h5", "model.h5", "tokens.h5",
                            "batch_size: 2\nmoe:\n  gating: static\n  expert_cache:\n    policy: belady\n    slots: "
                            "2\n    trace: " +
                                file("trace.h5") + "\n");
  EXPECT_THAT(one_error_line(r4, "moe-score"),
              HasSubstr("'moe.expert_cache.policy: belady' needs 'moe.gating: dynamic'"));
  // slots: all with any policy runs as today.
  const auto r3 = run_score("all.h5", "model.h5", "tokens.h5",
                            "batch_size: 2\nmoe:\n  expert_cache:\n    policy: lru\n    slots: all\n");
  EXPECT_EQ(r3.exit_code, 0) << r3.output;
}

// Each batch's active experts per MoE layer, read from the trace with plain HDF5.
std::map<int, std::vector<std::set<int>>> active_sets(const std::string& path) {
  std::map<int, std::vector<std::set<int>>> out;
  for (int layer = 0; layer < 2; ++layer) {
    const Array rows = read_array(path, "trace/layer_" + std::to_string(layer) + "/expert_rows");
    for (int64_t b = 0; b < rows.shape[0]; ++b) {
      std::set<int> active;
      for (int64_t e = 0; e < rows.shape[1]; ++e)
        if (rows.values[static_cast<std::size_t>(b * rows.shape[1] + e)] > 0) active.insert(static_cast<int>(e));
      out[layer].push_back(active);
    }
  }
  return out;
}

struct CsvRow {
  std::string slots, policy;
  int64_t requests = 0, misses = 0;
  double miss_rate = 0;
};

std::vector<CsvRow> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<CsvRow> rows;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::vector<std::string> f;
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    EXPECT_EQ(f.size(), 7u) << line;
    if (f.size() != 7) continue;
    rows.push_back({f[0], f[2], std::stoll(f[3]), std::stoll(f[4]), std::stod(f[5])});
  }
  return rows;
}

TEST_F(ExpertCache, BenchReplaysTheTrace) {
  const std::string csv = file("cache.csv");
  const auto r =
      run_command(program("moe-bench") + " cache --trace " + file("trace.h5") + " --slots 2,25%,50%,100% --csv " + csv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("PERFORMANCE cache lifo_gap_at_2="));
  const auto sets = active_sets(file("trace.h5"));
  int64_t requests = 0, distinct = 0;
  for (const auto& [layer, steps] : sets) {
    std::set<int> seen;
    for (const auto& s : steps) {
      requests += static_cast<int64_t>(s.size());
      seen.insert(s.begin(), s.end());
    }
    distinct += static_cast<int64_t>(seen.size());
  }
  const std::vector<CsvRow> rows = read_csv(csv);
  ASSERT_EQ(rows.size(), 12u);
  EXPECT_FALSE(std::filesystem::exists(csv + ".partial"));
  // The CSV is an output like any other (io/output_file.hpp): an unrelated file at its path is
  // refused and left as it was; an earlier table is replaced.
  const std::string mine = file("mine.csv");
  std::ofstream(mine) << "a,b\n1,2\n";
  const auto refused = run_command(program("moe-bench") + " cache --trace " + file("trace.h5") + " --csv " + mine);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("is not a moe-bench cache CSV table"));
  std::ifstream kept(mine);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(kept), {}), "a,b\n1,2\n");
  const auto again =
      run_command(program("moe-bench") + " cache --trace " + file("trace.h5") + " --slots 2,25%,50%,100% --csv " + csv);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(read_csv(csv).size(), 12u);
  std::map<std::string, double> belady;
  for (const CsvRow& row : rows)
    if (row.policy == "belady") belady[row.slots] = row.miss_rate;
  for (const CsvRow& row : rows) {
    SCOPED_TRACE(row.slots + " " + row.policy);
    EXPECT_EQ(row.requests, requests);
    EXPECT_GE(row.miss_rate, belady[row.slots] - 1e-12);
    if (row.slots == "100%") {
      EXPECT_EQ(row.misses, distinct);
    }
    if (row.slots == "2") {
      EXPECT_GT(row.misses, distinct);  // 2 of 16 slots must evict
    }
  }
  // Topic locality: with half the experts cached, belady misses well under half the requests.
  EXPECT_LT(belady["50%"], 0.5);
}

TEST_F(ExpertCache, BenchBadOptionsGiveOneLine) {
  const std::string bench = program("moe-bench") + " cache --trace ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {file("trace.h5") + " --slots 0", "--slots is '0': at least 1 expert must be resident"},
      {file("trace.h5") + " --slots 17", "--slots 17: more than the 16 experts"},
      {file("trace.h5") + " --ranks 4 --slots 5", "more than the 4 experts a rank holds"},
      {file("trace.h5") + " --policies lifo,fifo", "unknown policy 'fifo'"},
      {file("tokens.h5"), "not a moe-score results file"},
      {file("ok.h5"), "ok.h5"},
  };
  for (const auto& [args, expected] : cases) {
    SCOPED_TRACE(args);
    EXPECT_THAT(one_error_line(run_command(bench + args), "moe-bench"), HasSubstr(expected));
  }
  // A results file without a trace.
  const auto plain = run_score("plain.h5", "model.h5", "tokens.h5", "batch_size: 2\n");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_THAT(one_error_line(run_command(bench + file("plain.h5")), "moe-bench"), HasSubstr("has no routing trace"));
}

}  // namespace
}  // namespace moe::test
