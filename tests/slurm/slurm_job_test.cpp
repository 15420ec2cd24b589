// jobs/score.sbatch under a real Slurm (the local one of scripts/slurm_local.sh): a job's output
// equals a direct mpirun run's byte for byte; a job stopped mid-run by a signal requeues itself,
// continues from its journal and ends with the same bytes. Skips when no Slurm controller answers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "support/process.hpp"

namespace moe::test {
namespace {

using testing::HasSubstr;

// 2 ranks, 3000 sequences in batches of 2: 750 steps, 2 s or more here, so that a signal sent
// after the first progress lines lands well before the end.
constexpr int kRanks = 2;
constexpr int kNumSeqs = 3000;

bool slurm_is_up() {
  return run_command("scontrol ping").output.find("is UP") != std::string::npos;
}

// Fields of `scontrol show job ID` (JobState, Restarts, ExitCode, ...).
std::map<std::string, std::string> job_fields(const std::string& id) {
  std::map<std::string, std::string> fields;
  const std::string text = run_command("scontrol show job " + id).output;
  static const std::regex field(R"(([A-Za-z:]+)=(\S*))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), field); it != std::sregex_iterator(); ++it)
    fields.emplace((*it)[1], (*it)[2]);
  return fields;
}

bool finished(const std::string& state) {
  return state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
         state == "NODE_FAIL" || state == "OUT_OF_MEMORY" || state == "BOOT_FAIL" || state == "DEADLINE";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class SlurmJob : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!slurm_is_up()) return;
    dir_ = std::make_unique<ScratchDir>("slurm");
    auto r = run_command(program("moe-synth") + " model " + input_file("models/mixtral-tiny.yaml") + " " +
                         dir_->file("model.h5") + " --seed 41");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(program("moe-synth") + " tokens " + dir_->file("tokens.h5") + " --vocab 512 --num-seqs " +
                    std::to_string(kNumSeqs) + " --min-len 8 --max-len 96 --seed 42");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Relative paths and one output name: every run writes scores.h5 in a folder of its own, so
    // the run file stored in the results is the same for all.
    std::ofstream(dir_->file("run.yaml")) << "model: ../model.h5\ninput: ../tokens.h5\noutput: scores.h5\n"
                                             "batch_size: 2\nprogress_seconds: 0.2\n";
    std::filesystem::create_directory(dir_->file("reference"));
    r = run_command("cd " + dir_->file("reference") + " && timeout 300 " + mpirun(kRanks) + program("moe-score") +
                    " ../run.yaml");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { dir_.reset(); }

  void SetUp() override {
    if (!slurm_is_up()) GTEST_SKIP() << "no Slurm controller answers (scripts/slurm_local.sh start)";
  }

  // Submits jobs/score.sbatch from a new folder `name` (launcher: srun or mpirun); returns the job id.
  static std::string submit(const std::string& name, const std::string& launcher = "srun") {
    const std::string where = dir_->file(name);
    std::filesystem::create_directories(where);
    // Waiting ranks yield the core: this machine's 2 cores are shared with the rest of the suite.
    const auto r = run_command(
        "cd " + where + " && sbatch --parsable --ntasks=" + std::to_string(kRanks) +
        " --time=10 --output=job.log --export=ALL,MOE_SCORE=" + program("moe-score") +
        ",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,OMPI_MCA_mpi_yield_when_idle=1,MOE_LAUNCHER=" +
        launcher + " " + MOE_TEST_JOBS_DIR + "/score.sbatch ../run.yaml");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output.substr(0, r.output.find_first_of(";\n"));
  }

  // Waits until the job has finished (through any requeues); returns its final fields.
  static std::map<std::string, std::string> wait_for(const std::string& id, int timeout_seconds = 240) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
    auto fields = job_fields(id);
    while (!finished(fields["JobState"]) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      fields = job_fields(id);
    }
    if (!finished(fields["JobState"])) run_command("scancel " + id);
    return fields;
  }

  // Waits until the job's log shows `batches` or more batches done; false if the job ends first.
  static bool wait_for_progress(const std::string& id, const std::string& log, int batches, int timeout_seconds = 120) {
    static const std::regex done(R"(batches (\d+)/)");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
    while (std::chrono::steady_clock::now() < deadline && !finished(job_fields(id)["JobState"])) {
      const std::string text = read_file(log);
      for (auto it = std::sregex_iterator(text.begin(), text.end(), done); it != std::sregex_iterator(); ++it)
        if (std::stoi((*it)[1]) >= batches) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  static bool same_as_reference(const std::string& name) {
    return run_command("cmp " + dir_->file("reference/scores.h5") + " " + dir_->file(name + "/scores.h5")).exit_code ==
           0;
  }

  // A job stopped by `scancel_options` after some batches must requeue itself and finish.
  static void expect_stop_then_requeue(const std::string& name, const std::string& scancel_options,
                                       const std::string& launcher = "srun") {
    const std::string id = submit(name, launcher);
    const std::string log = dir_->file(name + "/job.log");
    ASSERT_TRUE(wait_for_progress(id, log, 10)) << read_file(log);
    const auto r = run_command("scancel " + scancel_options + " " + id);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto fields = wait_for(id);
    const std::string text = read_file(log);
    EXPECT_EQ(fields["JobState"], "COMPLETED") << text;
    EXPECT_EQ(fields["ExitCode"], "0:0") << text;
    EXPECT_GE(std::stoi(fields["Restarts"]), 1) << "the job was not requeued:\n" << text;
    EXPECT_THAT(text, HasSubstr("moe-score: stopped by a signal with"));
    EXPECT_THAT(text, HasSubstr("requeueing job " + id));
    EXPECT_THAT(text, HasSubstr("start 2 on 2 task(s)"));
    EXPECT_TRUE(same_as_reference(name)) << "the requeued job's output differs from an uninterrupted run's\n" << text;
  }

  static std::unique_ptr<ScratchDir> dir_;
};
std::unique_ptr<ScratchDir> SlurmJob::dir_;

TEST_F(SlurmJob, ScoreJobWritesWhatMpirunWrites) {
  const std::string id = submit("plain");
  auto fields = wait_for(id);
  const std::string text = read_file(dir_->file("plain/job.log"));
  EXPECT_EQ(fields["JobState"], "COMPLETED") << text;
  EXPECT_EQ(fields["ExitCode"], "0:0") << text;
  EXPECT_EQ(fields["Restarts"], "0") << text;
  EXPECT_THAT(text, HasSubstr("srun --mpi=pmix"));
  EXPECT_THAT(text, HasSubstr("moe-score: " + std::to_string(kNumSeqs) + " sequences"));
  EXPECT_TRUE(same_as_reference("plain")) << text;
}

// What --signal=B:USR1@120 does before a time limit: SIGUSR1 to the batch script, which forwards it.
TEST_F(SlurmJob, TimeLimitWarningStopsRequeuesAndFinishes) {
  expect_stop_then_requeue("warned", "--signal=USR1 --batch");
}

// The same with mpirun inside the allocation (the launcher where Slurm has no PMIx): mpirun
// forwards the script's SIGUSR1 to its ranks.
TEST_F(SlurmJob, MpirunInTheAllocationStopsRequeuesAndFinishes) {
  expect_stop_then_requeue("mpirun", "--signal=USR1 --batch", "mpirun");
}

// SIGTERM to every rank of the job's steps (what a preemption or an operator's signal looks like).
TEST_F(SlurmJob, SigtermToTheRanksStopsRequeuesAndFinishes) {
  expect_stop_then_requeue("terminated", "--signal=TERM");
}

}  // namespace
}  // namespace moe::test
