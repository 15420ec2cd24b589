// moe-synth: random MoE checkpoints (from a model spec in inputs/models/) and token datasets,
// with fixed seeds. See `moe-synth --help`.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "config/model_config.hpp"
#include "core/error.hpp"
#include "io/output_file.hpp"
#include "main_support.hpp"
#include "synth/synth.hpp"

namespace {

// Loads a model spec and applies key=value overrides (values parsed as YAML).
moe::ModelConfig load_spec(const std::string& path, const std::vector<std::string>& overrides) {
  YAML::Node spec;
  try {
    spec = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    moe::fail("{}: cannot open the model spec", path);
  } catch (const YAML::Exception& e) {
    moe::fail("{}: malformed YAML at line {}: {}", path, e.mark.line + 1, e.msg);
  }
  for (const std::string& o : overrides) {
    const auto eq = o.find('=');
    MOE_CHECK(eq != std::string::npos && eq > 0, "--set '{}': expected key=value", o);
    spec[o.substr(0, eq)] = YAML::Load(o.substr(eq + 1));
  }
  return moe::ModelConfig::from_yaml(spec, path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-synth: write random MoE checkpoints and token datasets (deterministic for a seed).", "moe-synth"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("moe-synth ") + MOE_VERSION);

  auto* model = app.add_subcommand("model", "write a random checkpoint from a model spec (inputs/models/*.yaml)");
  std::string spec_path, model_out, dtype = "f32";
  std::vector<std::string> overrides;
  uint64_t model_seed = 1;
  double router_scale = 1.0;
  model->add_option("SPEC", spec_path, "model spec (YAML: the checkpoint's architecture keys)")->required();
  model->add_option("OUT", model_out, "checkpoint to write (HDF5)")->required();
  model->add_option("--seed", model_seed, "random seed")->capture_default_str();
  model->add_option("--dtype", dtype, "stored weight type")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  model->add_option("--router-scale", router_scale, "scale of the router weights (larger: more decisive routing)")
      ->capture_default_str();
  moe::RoutingSpec routing;  // docs/workloads.md
  model->add_option("--zipf", routing.zipf, "expert popularity skew: logit bias -zipf*ln(rank+1)")
      ->capture_default_str();
  model->add_option("--topics", routing.topics, "vocabulary topics (contiguous id ranges) with their own experts")
      ->capture_default_str();
  model->add_option("--topic-experts", routing.topic_experts, "experts each topic prefers (per MoE layer)")
      ->capture_default_str();
  model->add_option("--topic-boost", routing.topic_boost, "nats added to a topic's experts for its tokens")
      ->capture_default_str();
  model->add_option("--pair-boost", routing.pair_boost, "nats added to both experts of each token's expert pair")
      ->capture_default_str();
  model->add_option("--set", overrides, "override a spec key, e.g. --set vocab_size=32000")->type_name("KEY=VALUE");

  auto* tokens = app.add_subcommand("tokens", "write a random token dataset");
  std::string tokens_out;
  moe::TokenSpec spec;
  spec.max_length = 64;
  tokens->add_option("OUT", tokens_out, "dataset to write (HDF5)")->required();
  tokens->add_option("--vocab", spec.vocab_size, "ids are drawn from [0, vocab)")->required();
  tokens->add_option("--num-seqs", spec.num_seqs, "number of sequences")->required();
  tokens->add_option("--min-len", spec.min_length, "shortest sequence")->capture_default_str();
  tokens->add_option("--max-len", spec.max_length, "longest sequence (and the padded width)")->capture_default_str();
  tokens->add_flag("--ragged", spec.ragged, "write flat tokens + offsets instead of padded tokens + lengths");
  tokens->add_option("--seed", spec.seed, "random seed")->capture_default_str();
  tokens->add_option("--topics", spec.topics, "topic workload: the model's --topics (0: uniform ids)")
      ->capture_default_str();
  tokens->add_option("--topic-run", spec.topic_run, "consecutive sequences on one topic")->capture_default_str();
  tokens->add_option("--topic-purity", spec.topic_purity, "share of a sequence's tokens from its topic's ids")
      ->capture_default_str();

  bool force = false;
  for (CLI::App* sub : {model, tokens})
    sub->add_flag("--force", force, "replace OUT even when it is not a file of the kind this writes");
  if (const auto code = moe::parse_command_line(app, "moe-synth", argc, argv)) return *code;
  return moe::run_main("moe-synth", argc, argv, [&] {
    if (*model) {
      const moe::ModelConfig config = load_spec(spec_path, overrides);
      moe::StagedOutput output("OUT", model_out, moe::OutputKind::checkpoint, {{"SPEC", spec_path}}, {force, false});
      moe::write_random_model(config, output.partial(), model_seed,
                              dtype == "bf16" ? moe::DType::bf16 : moe::DType::f32, router_scale, routing);
      output.commit();
      fmt::print("moe-synth: {} model, {} layers, {:.2f} M parameters ({}) -> {}\n", config.family, config.num_layers,
                 static_cast<double>(config.parameter_count()) / 1e6, dtype, model_out);
    } else {
      moe::StagedOutput output("OUT", tokens_out, moe::OutputKind::tokens, {}, {force, false});
      moe::write_random_tokens(spec, output.partial());
      output.commit();
      fmt::print("moe-synth: {} sequences of {}..{} tokens ({}) -> {}\n", spec.num_seqs, spec.min_length,
                 spec.max_length, spec.ragged ? "ragged" : "padded", tokens_out);
    }
    return 0;
  });
}
