#include "io/hf_import.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"

namespace moe {

namespace {

namespace fs = std::filesystem;

// Bytes of float32 staging per write of a 2-D tensor: bounds memory for huge embeddings.
constexpr int64_t kBlockBytes = 4 << 20;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The safetensors files of a folder, and which file holds each tensor.
class HfTensors {
 public:
  explicit HfTensors(const fs::path& dir) {
    const fs::path index = dir / "model.safetensors.index.json";
    const fs::path single = dir / "model.safetensors";
    if (fs::exists(index)) {
      read_index(index);
    } else {
      MOE_CHECK(fs::exists(single), "{}: neither model.safetensors nor model.safetensors.index.json exists",
                dir.string());
      open(single);
    }
  }

  // The file that holds `name`, or an error naming the tensor and the file it should be in.
  const SafetensorsFile& file_of(const std::string& name) const {
    auto it = holder_.find(name);
    if (it != holder_.end()) return *it->second;
    auto listed = listed_file_.find(name);
    if (listed != listed_file_.end())
      fail("{}: tensor '{}' is missing (the index lists it there)", listed->second, name);
    fail("{}: tensor '{}' is missing", default_file_, name);
  }
  const std::map<std::string, const SafetensorsFile*>& all() const { return holder_; }
  int64_t stored_bytes(const std::string& name) const { return static_cast<int64_t>(file_of(name).info(name).bytes); }

 private:
  void read_index(const fs::path& index) {
    default_file_ = index.string();
    std::ifstream in(index);
    MOE_CHECK(in, "{}: cannot open", index.string());
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", index.string(), e.what());
    }
    MOE_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
              "{}: needs an object 'weight_map'", index.string());
    std::set<std::string> shards;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      MOE_CHECK(file.is_string(), "{}: weight_map entry '{}' is not a file name", index.string(), tensor);
      const std::string shard = file.get<std::string>();
      // Shard names come from an untrusted file: plain names inside the folder only.
      MOE_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..",
                "{}: weight_map entry '{}' names '{}', not a file in the folder", index.string(), tensor, shard);
      shards.insert(shard);
      listed_file_[tensor] = (index.parent_path() / shard).string();
    }
    for (const std::string& shard : shards) open(index.parent_path() / shard);
    for (const auto& [tensor, file] : listed_file_) {
      auto it = holder_.find(tensor);
      MOE_CHECK(it != holder_.end() && it->second->path() == file,
                "{}: tensor '{}' is missing (the index lists it there)", file, tensor);
    }
  }

  void open(const fs::path& path) {
    MOE_CHECK(fs::exists(path), "{}: file is missing", path.string());
    files_.push_back(std::make_unique<SafetensorsFile>(path.string()));
    const SafetensorsFile& f = *files_.back();
    if (default_file_.empty()) default_file_ = f.path();
    for (const auto& [name, info] : f.tensors()) {
      auto [it, fresh] = holder_.emplace(name, &f);
      MOE_CHECK(fresh, "{}: tensor '{}' is also in {}", f.path(), name, it->second->path());
    }
  }

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> holder_;
  std::map<std::string, std::string> listed_file_;  // from the index
  std::string default_file_;
};

// Tensors a checkpoint may carry that transformers does not load as weights.
bool ignorable(const std::string& name, const ModelConfig& c) {
  if (name.ends_with(".rotary_emb.inv_freq")) return true;  // older checkpoints saved the RoPE buffer
  return c.tie_embeddings && name == "lm_head.weight";      // tied: transformers uses embed_tokens
}

void check_inputs(const HfTensors& tensors, const std::vector<TensorMapping>& plan, const HfArchitecture& arch) {
  std::set<std::string> used;
  for (const TensorMapping& m : plan) {
    for (const std::string& name : m.sources) {
      const SafetensorsFile& f = tensors.file_of(name);
      const SafeTensorInfo& info = f.info(name);
      MOE_CHECK(info.shape == m.source_shape, "{}: tensor '{}' has shape {}, but config.json implies {}", f.path(),
                name, shape_text(info.shape), shape_text(m.source_shape));
      used.insert(name);
    }
  }
  for (const auto& [name, file] : tensors.all())
    MOE_CHECK(used.count(name) || ignorable(name, arch.config),
              "{}: tensor '{}' is not used by {} as config.json describes it", file->path(), name, arch.name);
}

void check_finite(const float* v, int64_t n, const SafetensorsFile& f, const std::string& name) {
  for (int64_t i = 0; i < n; ++i)
    MOE_CHECK(std::isfinite(v[i]), "{}: tensor '{}' holds a non-finite value ({})", f.path(), name, v[i]);
}

// Streams one mapping: stacked experts one matrix at a time, other tensors in row blocks.
void copy_tensor(const HfTensors& tensors, const TensorMapping& m, CheckpointWriter& out, DType dtype,
                 std::vector<float>& buffer) {
  out.create(m.target, m.target_shape, dtype);
  if (m.sources.size() > 1 || m.target_shape.size() == 3) {
    int64_t numel = 1;
    for (int64_t s : m.source_shape) numel *= s;
    buffer.resize(static_cast<std::size_t>(numel));
    for (std::size_t e = 0; e < m.sources.size(); ++e) {
      const SafetensorsFile& f = tensors.file_of(m.sources[e]);
      f.read_f32(m.sources[e], 0, numel, buffer.data());
      check_finite(buffer.data(), numel, f, m.sources[e]);
      out.write_box(m.target, {static_cast<int64_t>(e), 0, 0}, {1, m.target_shape[1], m.target_shape[2]}, buffer.data(),
                    dtype);
    }
    return;
  }
  const std::string& name = m.sources.front();
  const SafetensorsFile& f = tensors.file_of(name);
  const int64_t rows = m.target_shape.front();
  const int64_t cols = m.target_shape.size() == 2 ? m.target_shape[1] : 1;
  const int64_t block = std::max<int64_t>(1, kBlockBytes / (4 * cols));
  buffer.resize(static_cast<std::size_t>(std::min(rows, block) * cols));
  for (int64_t r = 0; r < rows; r += block) {
    const int64_t n = std::min(block, rows - r);
    f.read_f32(name, r * cols, n * cols, buffer.data());
    check_finite(buffer.data(), n * cols, f, name);
    if (m.target_shape.size() == 2)
      out.write_box(m.target, {r, 0}, {n, cols}, buffer.data(), dtype);
    else
      out.write_box(m.target, {r}, {n}, buffer.data(), dtype);
  }
}

}  // namespace

std::vector<TensorMapping> hf_tensor_plan(const HfArchitecture& arch) {
  const ModelConfig& c = arch.config;
  const HfNaming& n = arch.naming;
  const int64_t d = c.hidden_size;
  const int64_t q_rows = c.num_heads * c.head_dim;
  const int64_t kv_rows = c.num_kv_heads * c.head_dim;
  std::vector<TensorMapping> plan;
  auto one = [&](const std::string& target, const std::string& source, std::vector<int64_t> shape) {
    plan.push_back({target, shape, {source}, shape});
  };
  auto mlp = [&](const std::string& target, const std::string& source, int64_t ffn) {
    one(target + "/gate_proj", source + ".gate_proj.weight", {ffn, d});
    one(target + "/up_proj", source + ".up_proj.weight", {ffn, d});
    one(target + "/down_proj", source + ".down_proj.weight", {d, ffn});
  };
  one("embed_tokens", "model.embed_tokens.weight", {c.vocab_size, d});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string t = "layers/" + std::to_string(i);
    const std::string s = "model.layers." + std::to_string(i);
    one(t + "/attn_norm/weight", s + ".input_layernorm.weight", {d});
    one(t + "/attn/q_proj", s + ".self_attn.q_proj.weight", {q_rows, d});
    one(t + "/attn/k_proj", s + ".self_attn.k_proj.weight", {kv_rows, d});
    one(t + "/attn/v_proj", s + ".self_attn.v_proj.weight", {kv_rows, d});
    if (c.qkv_bias) {
      one(t + "/attn/q_bias", s + ".self_attn.q_proj.bias", {q_rows});
      one(t + "/attn/k_bias", s + ".self_attn.k_proj.bias", {kv_rows});
      one(t + "/attn/v_bias", s + ".self_attn.v_proj.bias", {kv_rows});
    }
    if (c.qk_norm) {
      one(t + "/attn/q_norm", s + ".self_attn.q_norm.weight", {q_rows});
      one(t + "/attn/k_norm", s + ".self_attn.k_norm.weight", {kv_rows});
    }
    one(t + "/attn/o_proj", s + ".self_attn.o_proj.weight", {d, q_rows});
    one(t + "/mlp_norm/weight", s + ".post_attention_layernorm.weight", {d});
    if (!c.is_moe_layer(i)) {
      mlp(t + "/mlp", s + ".mlp", c.dense_ffn);
      continue;
    }
    const int64_t e = c.num_experts(i);
    const int64_t f = c.expert_ffn;
    const std::string block = s + "." + n.moe_block;
    one(t + "/moe/router", block + ".gate.weight", {e, d});
    auto experts = [&](const std::string& target, const std::string& hf_name, std::vector<int64_t> shape) {
      TensorMapping m{t + "/moe/experts/" + target, {e, shape[0], shape[1]}, {}, shape};
      for (int64_t j = 0; j < e; ++j)
        m.sources.push_back(block + ".experts." + std::to_string(j) + "." + hf_name + ".weight");
      plan.push_back(m);
    };
    experts("gate_proj", n.expert_gate, {f, d});
    experts("up_proj", n.expert_up, {f, d});
    experts("down_proj", n.expert_down, {d, f});
    if (c.shared_ffn > 0) mlp(t + "/moe/shared", block + "." + n.shared_expert, c.shared_ffn);
    if (n.shared_expert_gate) one(t + "/moe/shared_gate", block + ".shared_expert_gate.weight", {1, d});
  }
  one("final_norm/weight", "model.norm.weight", {d});
  if (!c.tie_embeddings) one("lm_head", "lm_head.weight", {c.vocab_size, d});
  return plan;
}

HfConvertSummary convert_hf_checkpoint(const std::string& hf_dir, const std::string& out_path, DType dtype,
                                       MPI_Comm comm) {
  MOE_CHECK(fs::is_directory(hf_dir), "{}: not a folder (expected config.json and *.safetensors)", hf_dir);
  const HfArchitecture arch = read_hf_config((fs::path(hf_dir) / "config.json").string());
  const HfTensors tensors{fs::path(hf_dir)};
  const std::vector<TensorMapping> plan = hf_tensor_plan(arch);
  check_inputs(tensors, plan, arch);

  HfConvertSummary summary{arch.name, arch.config, 0, 0};
  // out_path is the caller's partial file (io/output_file.hpp): on failure the caller removes it.
  CheckpointWriter out(out_path, arch.config, comm);
  std::vector<float> buffer;
  for (const TensorMapping& m : plan) {
    copy_tensor(tensors, m, out, dtype, buffer);
    summary.num_tensors += static_cast<int64_t>(m.sources.size());
    for (const std::string& s : m.sources) summary.input_bytes += tensors.stored_bytes(s);
  }
  out.close();
  return summary;
}

}  // namespace moe
