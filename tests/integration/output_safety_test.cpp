// Nothing a user owns is destroyed (issue 12, io/output_file.hpp): every program writes OUT.partial
// and renames it when complete, refuses outputs that are its inputs (through links and `..`) or
// files of another kind (unless --force), and a second run on one output stops with one line.
// Also the small findings of the same issue: empty inputs, HDF5 virtual datasets, a folder as the
// run file. Each test names the finding it covers. Full disks: full_disk_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/h5_edit.hpp"
#include "support/h5_read.hpp"
#include "support/hf_fixture.hpp"
#include "support/process.hpp"

namespace moe::test {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;
using testing::Not;

// The README's "Outputs and exit codes" table (ExitCodesAreTheReadmes checks it lists these).
constexpr int kError = 1;
constexpr int kStopped = 75;
// Runs started without mpirun (so that the test can signal the rank itself): one thread, as
// mpirun() sets, since the 2 cores here are shared.
constexpr const char* kOneThread = "env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ";

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> lines_starting(const std::string& output, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) lines.push_back(line);
  return lines;
}

// A refusal: exit code 1, exactly one "PROGRAM: error:" line and it contains `what`; no crash.
void expect_refused(const CommandResult& r, const std::string& program, const std::string& what) {
  EXPECT_EQ(r.exit_code, kError) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("terminate called")));
  EXPECT_THAT(r.output, Not(HasSubstr("HDF5-DIAG")));
  const auto lines = lines_starting(r.output, program + ": error:");
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_THAT(lines[0], HasSubstr(what));
}

class OutputSafety : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = std::make_unique<ScratchDir>("output-safety-base");
    const std::string spec = input_file("models/mixtral-tiny.yaml");
    for (const auto& [name, seed] : {std::pair{"model.h5", "5"}, std::pair{"model2.h5", "6"}}) {
      const auto r = run_command(program("moe-synth") + " model " + spec + " " + base_->file(name) + " --seed " + seed);
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    auto r = run_command(program("moe-synth") + " tokens " + base_->file("tokens.h5") +
                         " --vocab 512 --num-seqs 24 --min-len 2 --max-len 12 --seed 7");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(program("moe-synth") + " tokens " + base_->file("many.h5") +
                    " --vocab 512 --num-seqs 400 --min-len 2 --max-len 12 --seed 8");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { base_.reset(); }

  static std::string base(const std::string& name) { return base_->file(name); }
  std::string file(const std::string& name) const { return dir_.file(name); }
  // run.yaml in the test's folder, reading the shared model and tokens.
  std::string run_file(const std::string& output, const std::string& extra = "", int batch_size = 4) const {
    return write_run_file(dir_, base("model.h5"), base("tokens.h5"), output,
                          "batch_size: " + std::to_string(batch_size) + "\n" + extra);
  }
  CommandResult in_dir(const std::string& command) const {
    return run_command("cd " + dir_.path().string() + " && timeout -k 5 120 " + command);
  }
  CommandResult score(const std::string& args, int ranks = 1) const {
    return in_dir(mpirun(ranks) + program("moe-score") + " " + args);
  }
  CommandResult synth(const std::string& args) const { return in_dir(program("moe-synth") + " " + args); }
  CommandResult convert(const std::string& args) const { return in_dir(program("moe-convert") + " " + args); }
  // A tiny Hugging Face Mixtral folder (tests/support/hf_tiny.py) and its weights file.
  std::string hf_folder() const {
    const auto r = run_command(hf_tiny() + " write mixtral " + file("hf") + " --seed 11");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return file("hf");
  }

  static std::unique_ptr<ScratchDir> base_;
  ScratchDir dir_{"output-safety"};
};
std::unique_ptr<ScratchDir> OutputSafety::base_;

// Finding: "moe-convert removes whatever OUT names on any failure: a pre-existing file".
TEST_F(OutputSafety, FailedConversionLeavesAnExistingOutputUntouched) {
  const std::string hf = hf_folder();
  // A NaN in the last weight: found while copying, after the output was created.
  const std::string weights = hf + "/model.safetensors";
  ASSERT_TRUE(fs::exists(weights));
  {
    std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-4, std::ios::end);
    f.write("\xff\xff\xff\xff", 4);
  }
  fs::copy_file(base("model.h5"), file("out.h5"));
  const auto r = convert(hf + " out.h5");
  expect_refused(r, "moe-convert", "non-finite");
  EXPECT_TRUE(bytes_of(file("out.h5")) == bytes_of(base("model.h5"))) << "the earlier checkpoint was changed";
  EXPECT_FALSE(fs::exists(file("out.h5.partial"))) << "the failed conversion's partial file was left behind";
}

// Findings: "moe-convert DIR DIR/model.safetensors leaves only config.json"; "it overwrites
// config.json when OUT names it, with exit 0" (also through `..` and a symbolic link).
TEST_F(OutputSafety, ConversionRefusesItsOwnInputsAsOutput) {
  const std::string hf = hf_folder();
  fs::create_directory(file("sub"));
  fs::create_symlink(hf + "/config.json", file("link.json"));
  for (const std::string out : {"hf/model.safetensors", "hf/config.json", "sub/../hf/config.json", "link.json"}) {
    SCOPED_TRACE(out);
    const std::string before_config = bytes_of(hf + "/config.json");
    const std::string before_weights = bytes_of(hf + "/model.safetensors");
    expect_refused(convert("hf " + out), "moe-convert", "is the same file as 'HF_DIR/");
    EXPECT_TRUE(bytes_of(hf + "/config.json") == before_config);
    EXPECT_TRUE(bytes_of(hf + "/model.safetensors") == before_weights);
  }
  EXPECT_EQ(convert("hf out.h5").exit_code, 0);
}

// Finding: "... a device node (/dev/full, as root)". A private node: never the shared /dev/full.
TEST_F(OutputSafety, ConversionRefusesADeviceNode) {
  if (geteuid() != 0) GTEST_SKIP() << "mknod needs root";
  const std::string hf = hf_folder();
  ASSERT_EQ(mknod(file("full").c_str(), S_IFCHR | 0666, makedev(1, 7)), 0);
  expect_refused(convert("hf full"), "moe-convert", "not a regular file");
  struct stat st {};
  ASSERT_EQ(lstat(file("full").c_str(), &st), 0) << "the device node was removed";
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

// Finding: "moe-synth model SPEC SPEC overwrites the spec"; also other kinds of files.
TEST_F(OutputSafety, SynthRefusesItsSpecAndUnrelatedFiles) {
  fs::copy_file(input_file("models/mixtral-tiny.yaml"), file("spec.yaml"));
  const std::string spec = bytes_of(file("spec.yaml"));
  fs::create_directory(file("sub"));
  fs::create_symlink("spec.yaml", file("link.yaml"));
  for (const std::string out : {"spec.yaml", "sub/../spec.yaml", "link.yaml"}) {
    SCOPED_TRACE(out);
    expect_refused(synth("model spec.yaml " + out), "moe-synth", "is the same file as 'SPEC'");
    EXPECT_TRUE(bytes_of(file("spec.yaml")) == spec);
  }
  std::ofstream(file("notes.txt")) << "my notes\n";
  expect_refused(synth("tokens notes.txt --vocab 8 --num-seqs 2"), "moe-synth", "is not a token dataset");
  expect_refused(synth("model spec.yaml notes.txt"), "moe-synth", "is not a moebatch checkpoint");
  EXPECT_TRUE(bytes_of(file("notes.txt")) == "my notes\n");
  // Told to: replaced. Its own kind: replaced without --force.
  EXPECT_EQ(synth("tokens notes.txt --vocab 8 --num-seqs 2 --force").exit_code, 0);
  EXPECT_EQ(synth("tokens notes.txt --vocab 8 --num-seqs 3").exit_code, 0);
  EXPECT_EQ(read_array(file("notes.txt"), "lengths").values.size(), 3u);
}

// moe-place's placement file follows the same rules (its --model is its input).
TEST_F(OutputSafety, PlacementFileRefusesItsModelAndUnrelatedFiles) {
  const std::string place = program("moe-place") + " --world 2 --policy contiguous --model " + base("model.h5");
  fs::copy_file(base("model.h5"), file("model.h5"));
  expect_refused(in_dir(program("moe-place") + " --world 2 --policy contiguous --model model.h5 --out model.h5"),
                 "moe-place", "is the same file as '--model'");
  std::ofstream(file("notes.json")) << "{\"mine\": 1}\n";
  expect_refused(in_dir(place + " --out notes.json"), "moe-place", "is not a moe-place placement file");
  EXPECT_TRUE(bytes_of(file("notes.json")) == "{\"mine\": 1}\n");
  ASSERT_EQ(in_dir(place + " --out p.json").exit_code, 0);
  EXPECT_EQ(in_dir(place + " --out p.json").exit_code, 0) << "its own kind is replaced";
  EXPECT_FALSE(fs::exists(file("p.json.partial")));
}

// moe-bench's files (place --loads here; cache --csv in expert_cache_keys_test) too: written under
// PATH.partial and renamed, an unrelated file refused before any work and left as it was, an
// earlier file of the same kind replaced, any file with --force.
TEST_F(OutputSafety, BenchLoadsFileRefusesUnrelatedFilesAndReplacesItsOwn) {
  const std::string place = program("moe-bench") + " place --world 4 --batches 20 --loads ";
  std::ofstream(file("notes.json")) << "{\"mine\": 1}\n";
  const auto refused = in_dir(place + "notes.json");
  expect_refused(refused, "moe-bench", "is not a moe-bench place loads file");
  EXPECT_THAT(refused.output, Not(HasSubstr("PERFORMANCE"))) << "refused before the work";
  EXPECT_TRUE(bytes_of(file("notes.json")) == "{\"mine\": 1}\n");
  ASSERT_EQ(in_dir(place + "loads.json").exit_code, 0);
  const auto again = in_dir(place + "loads.json");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("loads.json exists and will be replaced"));
  const nlohmann::json loads = nlohmann::json::parse(bytes_of(file("loads.json")));
  EXPECT_EQ(loads["format"], "moebatch-place-loads");
  EXPECT_EQ(loads["world"], 4);
  EXPECT_FALSE(loads["policies"].empty());
  EXPECT_FALSE(fs::exists(file("loads.json.partial")));
  ASSERT_EQ(in_dir(place + "notes.json --force").exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(bytes_of(file("notes.json")))["format"], "moebatch-place-loads");
}

// Finding: "output or report equal to the run file overwrites the run file, exit 0".
TEST_F(OutputSafety, OutputOrReportThatIsTheRunFileIsRefused) {
  const std::string run = run_file("scores.h5");
  const std::string text = bytes_of(run);
  fs::create_directory(file("sub"));
  fs::create_symlink("run.yaml", file("link.yaml"));
  for (const std::string key : {"output", "report"}) {
    for (const std::string path : {"run.yaml", "sub/../run.yaml", "link.yaml"}) {
      SCOPED_TRACE(key + "=" + path);
      expect_refused(score("run.yaml --set " + key + "=" + path), "moe-score", "is the same file as 'RUN.yaml'");
      EXPECT_TRUE(bytes_of(run) == text);
    }
  }
  expect_refused(score("run.yaml --set output=" + base("tokens.h5")), "moe-score",
                 "'output' is the same file as 'input'");
  expect_refused(score("run.yaml --set report=scores.h5"), "moe-score", "'report' is the same file as 'output'");
}

// Finding: "a run that fails after creating its output has already truncated the previous results
// there". The run here stops on SIGTERM part-way (exit 75): the earlier results stay as they were,
// the unfinished ones wait in scores.h5.partial, and --resume finishes them and puts them in place.
TEST_F(OutputSafety, AnUnfinishedRunLeavesThePreviousResultsUntouched) {
  run_file("scores.h5", "", 1);
  ASSERT_EQ(score("run.yaml --set input=" + base("many.h5")).exit_code, 0);
  const std::string previous = bytes_of(file("scores.h5"));
  const std::string other =
      " run.yaml --set progress_seconds=0.000001 --set input=" + base("many.h5") + " --set model=" + base("model2.h5");
  ChildProcess run(std::string(kOneThread) + program("moe-score") + other, dir_.path().string());
  while (auto line = run.read_line(60))
    if (line->rfind("progress:", 0) == 0) break;
  kill(run.pid(), SIGTERM);
  ASSERT_EQ(run.wait(), kStopped) << run.output();
  EXPECT_THAT(run.output(), HasSubstr("scores.h5.partial; run again with --resume"));
  EXPECT_TRUE(bytes_of(file("scores.h5")) == previous) << "an unfinished run changed the earlier results";
  ASSERT_TRUE(fs::exists(file("scores.h5.partial")));
  const auto resumed = score(other + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_FALSE(fs::exists(file("scores.h5.partial")));
  EXPECT_TRUE(bytes_of(file("scores.h5")) != previous) << "the finished run's results were not put in place";
  for (double done : read_array(file("scores.h5"), "batch_done").values) EXPECT_EQ(done, 1.0);
}

// Finding: "two runs writing one output both exit 0 and leave an unreadable file". The first run
// is held (SIGSTOP) inside its batch loop while the second starts.
TEST_F(OutputSafety, ASecondRunOnTheSameOutputIsRefused) {
  run_file("scores.h5", "", 1);
  const std::string args = " run.yaml --set progress_seconds=0.000001 --set input=" + base("many.h5");
  ChildProcess first(std::string(kOneThread) + program("moe-score") + args, dir_.path().string());
  while (auto line = first.read_line(60))
    if (line->rfind("progress:", 0) == 0) break;
  kill(first.pid(), SIGSTOP);
  const auto second = score(args);
  kill(first.pid(), SIGCONT);
  expect_refused(second, "moe-score", "another run is writing it");
  ASSERT_EQ(first.wait(), 0) << first.output();
  for (double done : read_array(file("scores.h5"), "batch_done").values) EXPECT_EQ(done, 1.0);
  // The same with 2 ranks for the second run (the lock is rank 0's; every rank ends).
  ChildProcess third(std::string(kOneThread) + program("moe-score") + args, dir_.path().string());
  while (auto line = third.read_line(60))
    if (line->rfind("progress:", 0) == 0) break;
  kill(third.pid(), SIGSTOP);
  const auto fourth = score(args, 2);
  kill(third.pid(), SIGCONT);
  expect_refused(fourth, "moe-score", "another run is writing it");
  EXPECT_EQ(third.wait(), 0) << third.output();
}

// Finding: "another run's complete results, or an unrelated file, are replaced without a word".
TEST_F(OutputSafety, ReplacingSaysSoAndOtherFilesNeedForce) {
  run_file("scores.h5", "report: scores.json\n");
  ASSERT_EQ(score("run.yaml --set model=" + base("model2.h5")).exit_code, 0);
  auto r = score("run.yaml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("scores.h5 exists and will be replaced when this run completes"));
  EXPECT_THAT(r.output, HasSubstr("scores.json exists and will be replaced"));
  std::ofstream(file("notes.h5")) << "not results\n";
  std::ofstream(file("notes.json")) << "{\"mine\": 1}\n";
  expect_refused(score("run.yaml --set output=notes.h5"), "moe-score", "is not a moe-score results file");
  expect_refused(score("run.yaml --set report=notes.json"), "moe-score", "is not a moe-score run report");
  EXPECT_TRUE(bytes_of(file("notes.h5")) == "not results\n");
  EXPECT_TRUE(bytes_of(file("notes.json")) == "{\"mine\": 1}\n");
  r = score("run.yaml --set output=notes.h5 --set report=notes.json --force");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_array(file("notes.h5"), "seq_logprob").values.size(), 24u);
  // Never a folder, even with --force.
  fs::create_directory(file("folder"));
  expect_refused(score("run.yaml --set output=folder --force"), "moe-score", "is a folder");
}

// Finding: "empty inputs (N = 0, S = 0) fail with a message about batch_done and leave an output
// behind".
TEST_F(OutputSafety, EmptyInputsAreRefusedAndLeaveNothing) {
  run_file("scores.h5");
  fs::copy_file(base("tokens.h5"), file("n0.h5"));
  h5_replace_i32(file("n0.h5"), "tokens", {0, 12}, {});
  h5_replace_i32(file("n0.h5"), "lengths", {0}, {});
  fs::copy_file(base("tokens.h5"), file("s0.h5"));
  h5_replace_i32(file("s0.h5"), "tokens", {4, 0}, {});
  h5_replace_i32(file("s0.h5"), "lengths", {4}, {0, 0, 0, 0});
  expect_refused(score("run.yaml --set input=n0.h5"), "moe-score", "holds no sequences (N = 0)");
  expect_refused(score("run.yaml --set input=s0.h5", 2), "moe-score", "hold no tokens");
  for (const char* left : {"scores.h5", "scores.h5.partial", "scores.h5.lock"})
    EXPECT_FALSE(fs::exists(file(left))) << left << " left behind";
}

// Finding: "an HDF5 virtual dataset is refused without saying why".
TEST_F(OutputSafety, AVirtualDatasetIsRefusedSayingWhy) {
  const std::string make_vds =
      "/usr/bin/python3 -c \"import h5py\n"
      "src = h5py.File('" +
      base("tokens.h5") +
      "', 'r')\n"
      "with h5py.File('vds.h5', 'w') as f:\n"
      "    for name in ('tokens', 'lengths'):\n"
      "        d = src[name]\n"
      "        layout = h5py.VirtualLayout(shape=d.shape, dtype=d.dtype)\n"
      "        layout[...] = h5py.VirtualSource('" +
      base("tokens.h5") +
      "', name, shape=d.shape)\n"
      "        f.create_virtual_dataset(name, layout)\n\"";
  ASSERT_EQ(in_dir(make_vds).exit_code, 0);
  run_file("scores.h5");
  expect_refused(score("run.yaml --set input=vds.h5"), "moe-score", "is an HDF5 virtual dataset");
}

// Finding: "a directory as the run file says \"missing key 'model'\"".
TEST_F(OutputSafety, AFolderAsTheRunFileIsNamed) {
  fs::create_directory(file("runs"));
  expect_refused(score("runs"), "moe-score", "runs: is a folder, not a run file");
}

// The exit codes the README documents are the ones these tests and full_disk_test see.
TEST_F(OutputSafety, ExitCodesAreTheReadmes) {
  std::ifstream readme(input_file("../README.md"));
  ASSERT_TRUE(readme.good());
  std::set<int> codes;
  bool in_section = false;
  for (std::string line; std::getline(readme, line);) {
    if (line.rfind("## ", 0) == 0) in_section = line.find("exit codes") != std::string::npos;
    int code = -1;
    if (in_section && std::sscanf(line.c_str(), "| %d |", &code) == 1) codes.insert(code);
  }
  EXPECT_EQ(codes, (std::set<int>{0, kError, 74, kStopped}));
}

}  // namespace
}  // namespace moe::test
