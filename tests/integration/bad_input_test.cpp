// moe-score must reject every bad input before heavy work with one line on stderr,
// "moe-score: error: ...", that names the culprit (file, dataset or key, bad value), and a non-zero
// exit (1 on one rank); under mpirun the job must end, not hang, and the line appear once.
// Inputs start as a valid tiny model and token datasets from moe-synth; each test corrupts its
// own copy with the plain HDF5 C API (support/h5_edit.hpp) or writes a bad run file.
// BAD_INPUT_SHOW=1 prints each rejected run's output (to review the messages).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support/h5_edit.hpp"
#include "support/h5_read.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

using testing::HasSubstr;

constexpr const char* kPrefix = "moe-score: error:";
// mixtral-tiny: vocab 512, hidden 64, 4 heads x 16, 2 kv heads, 8 experts of 96, max_positions 256.
constexpr int kVocab = 512;
constexpr int kNumSeqs = 6;
constexpr int kWidth = 12;  // padded width (moe-synth --max-len); every length is >= 2

// The lines of the output that start with the error prefix.
std::vector<std::string> error_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(kPrefix, 0) == 0) lines.push_back(line);
  }
  return lines;
}

// Checks the common contract of a rejection and returns the error line ("" if there was not
// exactly one): exit code `exit_code` (or any non-zero one when exit_code < 0), exactly one line
// "moe-score: error: ...", no HDF5 error stack and no crash or abort noise.
std::string rejection(const CommandResult& r, int exit_code = 1) {
  EXPECT_NE(r.exit_code, 124) << "timed out (hang?)\n" << r.output;
  if (exit_code >= 0) {
    EXPECT_EQ(r.exit_code, exit_code) << r.output;
  } else {
    EXPECT_NE(r.exit_code, 0) << r.output;
  }
  EXPECT_THAT(r.output, testing::Not(HasSubstr("HDF5-DIAG"))) << "HDF5 error stack leaked";
  EXPECT_THAT(r.output, testing::Not(HasSubstr("terminate called"))) << "uncaught exception";
  EXPECT_THAT(r.output, testing::Not(HasSubstr("Segmentation fault")));
  const std::vector<std::string> lines = error_lines(r.output);
  EXPECT_EQ(lines.size(), 1u) << "expected exactly one '" << kPrefix << "' line in:\n" << r.output;
  if (std::getenv("BAD_INPUT_SHOW")) std::printf("%s\n", r.output.c_str());
  return lines.size() == 1 ? lines[0] : std::string();
}

class BadInput : public testing::Test {
 protected:
  // One valid model and token datasets for the whole suite; tests corrupt copies.
  static void SetUpTestSuite() {
    base_ = std::make_unique<ScratchDir>("bad-input-base");
    synth(" model " + input_file("models/mixtral-tiny.yaml") + " " + base_->file("model.h5") + " --seed 7");
    synth(" model " + input_file("models/mixtral-tiny.yaml") + " " + base_->file("short.h5") +
          " --seed 7 --set max_positions=16");
    const std::string common = " --vocab " + std::to_string(kVocab) + " --num-seqs " + std::to_string(kNumSeqs);
    synth(" tokens " + base_->file("tokens.h5") + common + " --min-len 2 --max-len " + std::to_string(kWidth) +
          " --seed 3");
    synth(" tokens " + base_->file("ragged.h5") + common + " --min-len 2 --max-len " + std::to_string(kWidth) +
          " --ragged --seed 3");
    synth(" tokens " + base_->file("long.h5") + common + " --min-len 20 --max-len 24 --seed 3");
  }
  static void TearDownTestSuite() { base_.reset(); }

  static void synth(const std::string& args) {
    const CommandResult r = run_command(program("moe-synth") + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Copies a base file into this test's folder under `name`; returns its path.
  std::string copy(const std::string& base_name, const std::string& name) const {
    const std::string to = dir_.file(name);
    std::filesystem::copy_file(base_->file(base_name), to);
    return to;
  }
  std::string model() const { return copy("model.h5", "model.h5"); }
  std::string tokens() const { return copy("tokens.h5", "tokens.h5"); }
  std::string ragged() const { return copy("ragged.h5", "ragged.h5"); }

  std::string run_file(const std::string& model, const std::string& input, const std::string& extra = "") const {
    return write_run_file(dir_, model, input, dir_.file("scores.h5"), extra);
  }
  // moe-score on one rank (under a time limit: a hang fails instead of blocking the suite).
  static CommandResult score(const std::string& run, const std::string& args = "") {
    return run_command("timeout -k 10 60 " + program("moe-score") + " " + run + args);
  }
  static CommandResult score_mpi(int ranks, const std::string& run) {
    return run_command("timeout -k 10 60 env " + mpirun(ranks) + program("moe-score") + " " + run);
  }

  ScratchDir dir_{"bad-input"};
  static std::unique_ptr<ScratchDir> base_;
};

std::unique_ptr<ScratchDir> BadInput::base_;

// --- the inputs themselves are valid (so each rejection below is due to its corruption) ---

TEST_F(BadInput, ValidInputsAreAccepted) {
  const std::string m = model();
  const CommandResult r = score(run_file(m, tokens()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(error_lines(r.output).empty()) << r.output;
  const CommandResult rr = score(run_file(m, ragged()));
  EXPECT_EQ(rr.exit_code, 0) << rr.output;
}

// --- files ---

TEST_F(BadInput, MissingRunFile) {
  const std::string run = dir_.file("no-such-run.yaml");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("cannot open the run file"));
}

TEST_F(BadInput, MissingModelFile) {
  const std::string absent = dir_.file("absent-model.h5");
  const std::string line = rejection(score(run_file(absent, tokens())));
  EXPECT_THAT(line, HasSubstr(absent));
  EXPECT_THAT(line, HasSubstr("no such file"));
}

TEST_F(BadInput, MissingInputFile) {
  const std::string absent = dir_.file("absent-tokens.h5");
  const std::string line = rejection(score(run_file(model(), absent)));
  EXPECT_THAT(line, HasSubstr(absent));
  EXPECT_THAT(line, HasSubstr("no such file"));
}

TEST_F(BadInput, ModelIsNotHdf5) {
  const std::string text = dir_.file("model-text.h5");
  std::ofstream(text) << "family: mixtral\nvocab_size: 512\n";
  const std::string line = rejection(score(run_file(text, tokens())));
  EXPECT_THAT(line, HasSubstr(text));
  EXPECT_THAT(line, HasSubstr("not an HDF5 file"));
}

// --- missing datasets ---

TEST_F(BadInput, CheckpointMissingDataset) {
  const std::string m = model();
  h5_delete(m, "layers/1/attn/o_proj");
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("missing dataset 'layers/1/attn/o_proj'"));
}

TEST_F(BadInput, CheckpointMissingExpertDataset) {
  const std::string m = model();
  h5_delete(m, "layers/0/moe/experts/down_proj");
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'layers/0/moe/experts/down_proj'"));
}

TEST_F(BadInput, InputMissingTokens) {
  const std::string t = tokens();
  h5_delete(t, "tokens");
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("missing dataset 'tokens'"));
}

TEST_F(BadInput, InputMissingLengths) {
  const std::string t = tokens();
  h5_delete(t, "lengths");
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("missing dataset 'lengths'"));
}

TEST_F(BadInput, RaggedInputMissingOffsets) {
  const std::string t = ragged();
  h5_delete(t, "offsets");
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("missing dataset 'offsets'"));
}

// --- shapes and types ---

TEST_F(BadInput, WeightShapeMismatch) {
  const std::string m = model();
  h5_replace_f32(m, "layers/0/attn/q_proj", {48, 64}, std::vector<float>(48 * 64, 0.01f));
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'layers/0/attn/q_proj'"));
  EXPECT_THAT(line, HasSubstr("[48, 64]"));
  EXPECT_THAT(line, HasSubstr("[64, 64]"));
}

TEST_F(BadInput, ArchitectureAttributeMismatch) {
  const std::string m = model();
  h5_set_int_attribute(m, "/", "hidden_size", 32);
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  // The first tensor read no longer fits (which one is first is the loader's business): it is
  // named, with its stored shape (hidden size 64) and the one the architecture needs (32).
  EXPECT_THAT(line, testing::ContainsRegex("dataset '[a-z_/0-9]+' has shape \\[[0-9, ]*64\\], "
                                           "but the architecture needs \\[[0-9, ]*32\\]"));
}

TEST_F(BadInput, HugeHiddenSizeAttribute) {
  const std::string m = model();
  h5_set_int_attribute(m, "/", "hidden_size", int64_t{1} << 40);
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("1099511627776"));
}

TEST_F(BadInput, TruncatedModelFile) {
  const std::string full = model();
  const std::string cut = dir_.file("truncated.h5");
  {
    std::ifstream in(full, std::ios::binary);
    std::vector<char> head(100000);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(cut, std::ios::binary).write(head.data(), in.gcount());
  }
  const std::string line = rejection(score(run_file(cut, tokens())));
  EXPECT_THAT(line, HasSubstr(cut));
}

TEST_F(BadInput, WeightStoredAsInt32) {
  const std::string m = model();
  h5_replace_i32(m, "layers/0/attn/k_proj", {32, 64}, std::vector<int32_t>(32 * 64, 1));
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'layers/0/attn/k_proj'"));
  EXPECT_THAT(line, HasSubstr("int32"));
}

TEST_F(BadInput, TokensStoredAsFloat) {
  const std::string t = tokens();
  h5_replace_f32(t, "tokens", {kNumSeqs, kWidth}, std::vector<float>(kNumSeqs * kWidth, 1.0f));
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("'tokens'"));
  EXPECT_THAT(line, HasSubstr("float32"));
}

// --- token ids ---

TEST_F(BadInput, TokenIdEqualToVocabSize) {
  const std::string t = tokens();
  h5_set_i32(t, "tokens", {3, 1}, kVocab);
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("token id 512"));
  EXPECT_THAT(line, HasSubstr("sequence 3, position 1"));
}

TEST_F(BadInput, NegativeTokenId) {
  const std::string t = tokens();
  h5_set_i32(t, "tokens", {2, 0}, -5);
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("token id -5"));
  EXPECT_THAT(line, HasSubstr("sequence 2, position 0"));
}

TEST_F(BadInput, RaggedTokenIdOutsideVocabulary) {
  const std::string t = ragged();
  const Array offsets = read_array(t, "offsets");
  h5_set_i32(t, "tokens", {static_cast<int64_t>(offsets.values[4]) + 1}, 600);
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("token id 600"));
  EXPECT_THAT(line, HasSubstr("sequence 4, position 1"));
}

// --- lengths and offsets ---

TEST_F(BadInput, NegativeLength) {
  const std::string t = tokens();
  h5_set_i32(t, "lengths", {1}, -3);
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("lengths[1] = -3"));
}

TEST_F(BadInput, LengthBeyondPaddedWidth) {
  const std::string t = tokens();
  h5_set_i32(t, "lengths", {2}, kWidth + 1);
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("lengths[2] = 13"));
  EXPECT_THAT(line, HasSubstr("width 12"));
}

TEST_F(BadInput, LengthBeyondMaxPositions) {
  const std::string m = copy("short.h5", "model.h5");  // max_positions 16
  const std::string t = copy("long.h5", "tokens.h5");  // lengths 20..24
  const Array lengths = read_array(t, "lengths");
  const std::string line = rejection(score(run_file(m, t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("sequence 0 has length " + std::to_string(static_cast<int64_t>(lengths.values[0]))));
  EXPECT_THAT(line, HasSubstr("max_positions 16"));
}

TEST_F(BadInput, RaggedOffsetsDecrease) {
  const std::string t = ragged();
  const Array offsets = read_array(t, "offsets");
  const auto o2 = static_cast<int64_t>(offsets.values[2]);
  h5_set_i64(t, "offsets", {1}, o2 + 1);  // sequence 1 gets length -1
  const std::string line = rejection(score(run_file(model(), t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("offsets decrease at sequence 1"));
}

// --- the run file and the command line ---

TEST_F(BadInput, UnknownTopLevelKey) {
  const std::string run = run_file(model(), tokens(), "batch_sise: 4\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("unknown key 'batch_sise'"));
}

TEST_F(BadInput, UnknownNestedKey) {
  const std::string run = run_file(model(), tokens(), "moe:\n  gatting: static\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("unknown key 'moe.gatting'"));
}

TEST_F(BadInput, UnknownSetKey) {
  const std::string run = run_file(model(), tokens());
  const std::string line = rejection(score(run, " --set parallel.tpp=2"));
  EXPECT_THAT(line, HasSubstr("--set 'parallel.tpp=2'"));
  EXPECT_THAT(line, HasSubstr("unknown key 'parallel.tpp'"));
}

TEST_F(BadInput, MalformedYaml) {
  const std::string run = run_file(model(), tokens(), "moe: {gating: static, alltoall: [flat\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("malformed YAML"));
}

TEST_F(BadInput, ZeroBatchSize) {
  const std::string run = run_file(model(), tokens(), "batch_size: 0\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("'batch_size'"));
  EXPECT_THAT(line, HasSubstr("got 0"));
}

TEST_F(BadInput, ZeroBatchSizeFromSet) {
  const std::string run = run_file(model(), tokens());
  const std::string line = rejection(score(run, " --set batch_size=0"));
  EXPECT_THAT(line, HasSubstr("'batch_size'"));
  EXPECT_THAT(line, HasSubstr("got 0"));
}

TEST_F(BadInput, UnknownGating) {
  const std::string run = run_file(model(), tokens(), "moe:\n  gating: foo\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("'moe.gating'"));
  EXPECT_THAT(line, HasSubstr("'foo'"));
}

TEST_F(BadInput, NonNumericBatchSize) {
  const std::string run = run_file(model(), tokens(), "batch_size: eight\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("'batch_size'"));
  EXPECT_THAT(line, HasSubstr("'eight'"));
}

TEST_F(BadInput, SectionGivenAValue) {
  const std::string run = run_file(model(), tokens(), "parallel: 3\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("'parallel' must be a mapping"));
}

TEST_F(BadInput, SetSectionToAValue) {
  const std::string line = rejection(score(run_file(model(), tokens()), " --set moe=static"));
  EXPECT_THAT(line, HasSubstr("--set 'moe=static'"));
  EXPECT_THAT(line, HasSubstr("'moe' must be a mapping"));
}

TEST_F(BadInput, SetUnknownNestedKeyInMapping) {
  const std::string line = rejection(score(run_file(model(), tokens()), " --set 'moe={gatting: static}'"));
  EXPECT_THAT(line, HasSubstr("unknown key 'moe.gatting'"));
}

TEST_F(BadInput, DuplicateKey) {
  const std::string run = run_file(model(), tokens(), "batch_size: 4\nbatch_size: 0\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(run));
  EXPECT_THAT(line, HasSubstr("'batch_size' appears twice"));
}

TEST_F(BadInput, MissingRunFileArgument) {
  const std::string line = rejection(run_command("timeout 60 " + program("moe-score")));
  EXPECT_THAT(line, HasSubstr("RUN.yaml"));
}

TEST_F(BadInput, UnknownCommandLineOption) {
  const std::string line = rejection(score(run_file(model(), tokens()), " --no-such-option"));
  EXPECT_THAT(line, HasSubstr("--no-such-option"));
}

TEST_F(BadInput, SetWithoutValue) {
  const std::string line = rejection(score(run_file(model(), tokens()), " --set"));
  EXPECT_THAT(line, HasSubstr("--set"));
}

TEST_F(BadInput, SetWithoutEquals) {
  const std::string line = rejection(score(run_file(model(), tokens()), " --set batch_size"));
  EXPECT_THAT(line, HasSubstr("--set 'batch_size'"));
  EXPECT_THAT(line, HasSubstr("key=value"));
}

// --- where the results go ---

TEST_F(BadInput, OutputFolderMissing) {
  const std::string out = dir_.file("no-such-folder/scores.h5");
  const std::string line = rejection(score(write_run_file(dir_, model(), tokens(), out)));
  EXPECT_THAT(line, HasSubstr(out));
  EXPECT_THAT(line, HasSubstr("the folder of 'output'"));
}

TEST_F(BadInput, OutputIsAFolder) {
  const std::string out = dir_.file("a-folder");
  std::filesystem::create_directory(out);
  const std::string line = rejection(score(write_run_file(dir_, model(), tokens(), out)));
  EXPECT_THAT(line, HasSubstr(out));
  EXPECT_THAT(line, HasSubstr("'output' is a folder"));
}

TEST_F(BadInput, OutputIsTheInput) {
  const std::string t = tokens();
  const std::string line = rejection(score(write_run_file(dir_, model(), t, t)));
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("'output' is the same file as 'input'"));
  EXPECT_EQ(read_array(t, "tokens").shape, (std::vector<int64_t>{kNumSeqs, kWidth})) << "the input was overwritten";
}

TEST_F(BadInput, OutputIsTheModel) {
  const std::string m = model();
  const std::string line = rejection(score(write_run_file(dir_, m, tokens(), m)));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'output' is the same file as 'model'"));
  EXPECT_EQ(read_array(m, "embed_tokens").shape, (std::vector<int64_t>{kVocab, 64})) << "the model was overwritten";
}

TEST_F(BadInput, ReportFolderMissing) {
  const std::string report = dir_.file("no-such-folder/report.json");
  const std::string run = run_file(model(), tokens(), "report: " + report + "\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(report));
  EXPECT_THAT(line, HasSubstr("the folder of 'report'"));
  EXPECT_FALSE(std::filesystem::exists(dir_.file("scores.h5"))) << "rejected only after the work";
}

TEST_F(BadInput, ReportIsTheOutput) {
  const std::string run = run_file(model(), tokens(), "report: " + dir_.file("scores.h5") + "\n");
  const std::string line = rejection(score(run));
  EXPECT_THAT(line, HasSubstr(dir_.file("scores.h5")));
  EXPECT_THAT(line, HasSubstr("'report' is the same file as 'output'"));
}

// --- non-finite weights ---

TEST_F(BadInput, NanInExpertWeight) {
  const std::string m = model();
  h5_set_f32(m, "layers/1/moe/experts/up_proj", {3, 5, 7}, std::numeric_limits<float>::quiet_NaN());
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'layers/1/moe/experts/up_proj'"));
  EXPECT_THAT(line, HasSubstr("nan"));
  EXPECT_THAT(line, HasSubstr("[3, 5, 7]"));
}

TEST_F(BadInput, InfInWeight) {
  const std::string m = model();
  h5_set_f32(m, "layers/0/attn/v_proj", {4, 9}, -std::numeric_limits<float>::infinity());
  const std::string line = rejection(score(run_file(m, tokens())));
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'layers/0/attn/v_proj'"));
  EXPECT_THAT(line, HasSubstr("inf"));
  EXPECT_THAT(line, HasSubstr("[4, 9]"));
}

// --- several ranks: the job ends, and the error is printed once ---

TEST_F(BadInput, TwoRanksBadTokenId) {
  const std::string t = tokens();
  h5_set_i32(t, "tokens", {5, 1}, kVocab + 7);
  const std::string line = rejection(score_mpi(2, run_file(model(), t)), -1);
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("token id 519"));
  EXPECT_THAT(line, HasSubstr("sequence 5, position 1"));
}

TEST_F(BadInput, TwoRanksNanInWeight) {
  const std::string m = model();
  h5_set_f32(m, "layers/0/moe/router", {6, 0}, std::numeric_limits<float>::quiet_NaN());
  const std::string line = rejection(score_mpi(2, run_file(m, tokens())), -1);
  EXPECT_THAT(line, HasSubstr(m));
  EXPECT_THAT(line, HasSubstr("'layers/0/moe/router'"));
}

// --- layouts the model or the world cannot take ---

TEST_F(BadInput, TpDoesNotDivideWorld) {
  const std::string line = rejection(score_mpi(2, run_file(model(), tokens(), "parallel:\n  tp: 3\n")), -1);
  EXPECT_THAT(line, HasSubstr("tp"));
  EXPECT_THAT(line, HasSubstr("3"));
}

TEST_F(BadInput, TpDoesNotDivideHeads) {
  // mixtral-tiny has 4 query heads: 3 tp ranks cannot share them.
  const std::string line = rejection(score_mpi(3, run_file(model(), tokens(), "parallel:\n  tp: 3\n")), -1);
  EXPECT_THAT(line, HasSubstr("parallel.tp = 3"));
  EXPECT_THAT(line, HasSubstr("num_heads = 4"));
}

TEST_F(BadInput, RanksPerNodeDoesNotDivideWorld) {
  const std::string line = rejection(score_mpi(2, run_file(model(), tokens(), "parallel:\n  ranks_per_node: 3\n")), -1);
  EXPECT_THAT(line, HasSubstr("ranks_per_node"));
  EXPECT_THAT(line, HasSubstr("3"));
}

TEST_F(BadInput, ExpertsCannotBeSlicedOverRanks) {
  // 3 experts over 4 ranks: fewer experts than ranks, and 4 is not a multiple of 3.
  const std::string m = dir_.file("three.h5");
  synth(" model " + input_file("models/mixtral-tiny.yaml") + " " + m + " --seed 7 --set num_experts=3");
  const std::string line = rejection(score_mpi(4, run_file(m, tokens())), -1);
  EXPECT_THAT(line, HasSubstr("layer 0 has 3 experts"));
  EXPECT_THAT(line, HasSubstr("4 ranks"));
}

TEST_F(BadInput, TwoRanksOutputIsTheInput) {
  const std::string t = tokens();
  const std::string line = rejection(score_mpi(2, write_run_file(dir_, model(), t, t)), -1);
  EXPECT_THAT(line, HasSubstr(t));
  EXPECT_THAT(line, HasSubstr("'output' is the same file as 'input'"));
}

}  // namespace
}  // namespace moe::test
