#include "support/process.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>

namespace moe::test {

CommandResult run_command(const std::string& command) {
  CommandResult result;
  const std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), static_cast<int>(buffer.size()), pipe)) result.output += buffer.data();
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string program(const std::string& name) {
  return std::string(MOE_TEST_BIN_DIR) + "/" + name;
}

std::string input_file(const std::string& relative) {
  return std::string(MOE_TEST_INPUTS_DIR) + "/" + relative;
}

std::string mpirun(int ranks) {
  return "env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe --bind-to none -np " +
         std::to_string(ranks) + " ";
}

ScratchDir::ScratchDir(const std::string& tag) {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("moe-test-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string write_run_file(const ScratchDir& dir, const std::string& model, const std::string& input,
                           const std::string& output, const std::string& extra) {
  const std::string path = dir.file("run.yaml");
  std::ofstream out(path);
  out << "model: " << model << "\ninput: " << input << "\noutput: " << output << "\nprogress_seconds: 0\n" << extra;
  return path;
}

}  // namespace moe::test
