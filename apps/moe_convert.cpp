// moe-convert: a Hugging Face checkpoint folder (config.json + *.safetensors) -> our HDF5
// checkpoint (docs/models.md lists the architectures and the conventions they follow).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "core/error.hpp"
#include "io/hf_import.hpp"
#include "io/output_file.hpp"
#include "main_support.hpp"
#include "runtime/memory.hpp"

namespace {

// The tokenizer travels with the model (moe-prepare reads it): copied to a temporary name and
// renamed, so a reader never sees half a file. Returns the copy's path, or "" without a tokenizer.
std::string copy_tokenizer(const std::string& hf_dir, const std::string& model_out) {
  namespace fs = std::filesystem;
  const fs::path source = fs::path(hf_dir) / "tokenizer.json";
  if (!fs::exists(source)) return "";
  const fs::path target = fs::absolute(model_out).parent_path() / "tokenizer.json";
  if (fs::exists(target) && fs::equivalent(source, target)) return target.string();
  const fs::path partial = target.string() + ".partial";
  std::error_code ec;
  fs::copy_file(source, partial, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(partial, target, ec);
  if (ec) {
    fs::remove(partial);
    moe::fail("{}: cannot copy the tokenizer to {}: {}", source.string(), target.string(), ec.message());
  }
  return target.string();
}

// Every file moe-convert may read from HF_DIR: OUT must not be one of them.
moe::NamedPaths hf_inputs(const std::string& hf_dir) {
  namespace fs = std::filesystem;
  moe::NamedPaths inputs;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(hf_dir, ec)) {
    const std::string name = e.path().filename().string();
    const auto ends_with = [&](const std::string& tail) {
      return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    if (ends_with(".json") || ends_with(".safetensors")) inputs.emplace_back("HF_DIR/" + name, e.path().string());
  }
  inputs.emplace_back("HF_DIR/config.json", (fs::path(hf_dir) / "config.json").string());
  return inputs;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-convert: import a Hugging Face MoE checkpoint into moebatch's HDF5 format.", "moe-convert"};
  app.set_version_flag("--version", std::string("moe-convert ") + MOE_VERSION);
  std::string hf_dir, out, dtype = "f32";
  app.add_option("HF_DIR", hf_dir, "folder with config.json and model.safetensors (or shards + index)")->required();
  app.add_option("OUT", out, "checkpoint to write (HDF5)")->required();
  app.add_option("--dtype", dtype, "stored weight type (bf16 rounds to nearest even)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  bool force = false;
  app.add_flag("--force", force, "replace OUT even when it is not a moebatch checkpoint");
  if (const auto code = moe::parse_command_line(app, "moe-convert", argc, argv)) return *code;
  return moe::run_main("moe-convert", argc, argv, [&] {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MOE_CHECK(size == 1, "moe-convert runs on one rank (started on {})", size);
    MOE_CHECK(std::filesystem::is_directory(hf_dir), "{}: not a folder (expected config.json and *.safetensors)",
              hf_dir);
    moe::StagedOutput output("OUT", out, moe::OutputKind::checkpoint, hf_inputs(hf_dir), {force, false});
    const moe::HfConvertSummary s = moe::convert_hf_checkpoint(
        hf_dir, output.partial(), dtype == "bf16" ? moe::DType::bf16 : moe::DType::f32, MPI_COMM_SELF);
    output.commit();
    fmt::print(
        "moe-convert: {} ({} layers, {:.2f} M parameters), {} tensors, {:.1f} MB read -> {} ({}), "
        "peak RSS {:.1f} MB\n",
        s.architecture, s.config.num_layers, static_cast<double>(s.config.parameter_count()) / 1e6, s.num_tensors,
        static_cast<double>(s.input_bytes) / 1e6, out, dtype, static_cast<double>(moe::peak_rss_bytes()) / 1e6);
    if (const std::string tokenizer = copy_tokenizer(hf_dir, out); !tokenizer.empty())
      fmt::print("moe-convert: tokenizer.json -> {}\n", tokenizer);
    return 0;
  });
}
