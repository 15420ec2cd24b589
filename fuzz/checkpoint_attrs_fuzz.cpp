// libFuzzer target: a checkpoint's root attributes -> ModelConfig (from_attributes), driven from
// a valid architecture that the input edits key by key, so mutations reach the deep checks; also
// model specs (from_yaml) when the input starts with "yaml:".
#include <fuzzer/FuzzedDataProvider.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "config/model_config.hpp"
#include "core/error.hpp"

namespace {

const char* const kKeys[] = {"format",
                             "format_version",
                             "family",
                             "vocab_size",
                             "hidden_size",
                             "num_layers",
                             "num_heads",
                             "num_kv_heads",
                             "head_dim",
                             "max_positions",
                             "norm",
                             "norm_eps",
                             "position",
                             "rope_theta",
                             "qkv_bias",
                             "qk_norm",
                             "activation",
                             "dense_ffn",
                             "expert_ffn",
                             "top_k",
                             "router_renormalize",
                             "shared_ffn",
                             "shared_gate",
                             "tie_embeddings",
                             "layer_num_experts",
                             "unknown_key"};

moe::AttrMap base() {
  return {{"format", std::string("moebatch-checkpoint")},
          {"format_version", int64_t{1}},
          {"vocab_size", int64_t{512}},
          {"hidden_size", int64_t{64}},
          {"num_layers", int64_t{2}},
          {"num_heads", int64_t{4}},
          {"num_kv_heads", int64_t{2}},
          {"head_dim", int64_t{16}},
          {"max_positions", int64_t{256}},
          {"norm", std::string("rmsnorm")},
          {"norm_eps", 1e-5},
          {"position", std::string("rope")},
          {"activation", std::string("swiglu")},
          {"expert_ffn", int64_t{96}},
          {"top_k", int64_t{2}},
          {"router_renormalize", int64_t{1}},
          {"layer_num_experts", std::vector<int64_t>{8, 8}}};
}

moe::AttrValue value(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 4)) {
    case 0:
      return in.ConsumeIntegral<int64_t>();
    case 1:
      return int64_t{in.ConsumeIntegralInRange<int64_t>(-2, 1 << 12)};
    case 2:
      return in.ConsumeFloatingPoint<double>();
    case 3: {
      std::vector<int64_t> list(in.ConsumeIntegralInRange<std::size_t>(0, 64));
      for (auto& x : list) x = in.ConsumeIntegralInRange<int64_t>(-1, 1 << 17);
      return list;
    }
    default:
      return in.ConsumeRandomLengthString(32);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  try {
    if (size >= 5 && std::string(reinterpret_cast<const char*>(data), 5) == "yaml:") {
      YAML::Node node;
      try {
        node = YAML::Load(std::string(reinterpret_cast<const char*>(data) + 5, size - 5));
      } catch (const YAML::Exception&) {
        return 0;
      }
      (void)moe::ModelConfig::from_yaml(node, "fuzz.yaml").parameter_count();
      return 0;
    }
    FuzzedDataProvider in(data, size);
    moe::AttrMap attrs = base();
    while (in.remaining_bytes() > 0) {
      const char* key = kKeys[in.ConsumeIntegralInRange<std::size_t>(0, std::size(kKeys) - 1)];
      if (in.ConsumeBool())
        attrs.erase(key);
      else
        attrs[key] = value(in);
    }
    const moe::ModelConfig c = moe::ModelConfig::from_attributes(attrs, "fuzz.h5");
    (void)c.parameter_count();
    (void)moe::ModelConfig::from_attributes(c.to_attributes(), "fuzz.h5");
  } catch (const moe::Error&) {
  }
  return 0;
}
