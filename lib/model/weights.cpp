#include "model/weights.hpp"

#include <cstring>
#include <string>

#include "core/error.hpp"
#include "io/checkpoint_upload.hpp"

namespace moe {

namespace {

// Stacks tensors of the same dtype and column count along their rows; 1-D tensors (biases, whose
// lengths differ when num_kv_heads < num_heads) are concatenated.
HostTensor stack_rows(const std::vector<const HostTensor*>& parts, const std::string& what) {
  HostTensor out;
  out.dtype = parts.front()->dtype;
  const bool vectors = parts.front()->shape.size() == 1;
  const int64_t cols = vectors ? 1 : parts.front()->shape.back();
  int64_t rows = 0;
  for (const HostTensor* p : parts) {
    MOE_CHECK(p->dtype == out.dtype, "{}: its tensors mix f32 and bf16", what);
    rows += p->numel() / cols;
    out.bytes.insert(out.bytes.end(), p->bytes.begin(), p->bytes.end());
  }
  out.shape = vectors ? std::vector<int64_t>{rows} : std::vector<int64_t>{rows, cols};
  return out;
}

DeviceBuffer upload_f32(Backend& backend, const HostTensor& t) {
  const std::vector<float> values = t.to_f32();
  DeviceBuffer buf = backend.alloc(values.size() * sizeof(float));
  backend.copy_to_device(buf.data(), values.data(), values.size() * sizeof(float));
  return buf;
}

Norm load_norm(CheckpointReader& ckpt, Backend& backend, const std::string& prefix) {
  const ModelConfig& c = ckpt.config();
  Norm n;
  n.weight = upload_f32(backend, ckpt.read(prefix + "/weight", {c.hidden_size}));
  if (c.norm == NormKind::layernorm) n.bias = upload_f32(backend, ckpt.read(prefix + "/bias", {c.hidden_size}));
  return n;
}

// A box of a checkpoint dataset: one part of a weight matrix.
struct Box {
  std::string name;
  std::vector<int64_t> shape, offset, count;
};

// Rows [begin, end) of a 2-D tensor of `shape`.
Box rows_of(const std::string& name, const std::vector<int64_t>& shape, int64_t begin, int64_t end) {
  return {name, shape, {begin, 0}, {end - begin, shape[1]}};
}
Box whole(const std::string& name, const std::vector<int64_t>& shape) {
  return {name, shape, std::vector<int64_t>(shape.size(), 0), shape};
}

// One weight matrix made of 2-D boxes stacked along their rows (q, k and v; gate and up), read
// into its backend buffer with one copy (io/checkpoint_upload.hpp).
Matrix load_matrix(CheckpointReader& ckpt, Backend& backend, const std::vector<Box>& parts, const std::string& what) {
  const DType type = ckpt.dtype(parts.front().name);
  const int64_t cols = parts.front().count.back();
  int64_t rows = 0;
  for (const Box& b : parts) {
    MOE_CHECK(ckpt.dtype(b.name) == type, "{}: its tensors mix f32 and bf16", what);
    MOE_CHECK(b.count.size() == 2 && b.count[1] == cols, "{}: its tensors differ in columns", what);
    rows += b.count[0];
  }
  Matrix m;
  // One box that lies in place in a mapped checkpoint: used there, no copy (io/mapped_file.hpp).
  if (parts.size() == 1 && ckpt.map_weights() && backend.reads_host_weights_in_place(type)) {
    const Box& b = parts.front();
    if (const void* at = ckpt.map_box(b.name, b.shape, b.offset, b.count)) {
      m.mapped = ckpt.mapping();
      m.view = {at, type, rows, cols, cols};
      return m;
    }
  }
  const std::size_t row_bytes = static_cast<std::size_t>(cols) * dtype_size(type);
  m.buffer = backend.alloc(static_cast<std::size_t>(rows) * row_bytes);
  std::size_t at = 0;
  for (const Box& b : parts) {
    const std::size_t bytes = static_cast<std::size_t>(b.count[0]) * row_bytes;
    read_to_backend(ckpt, backend, b.name, b.shape, b.offset, b.count, m.buffer.as<std::byte>() + at, bytes);
    at += bytes;
  }
  m.view = {m.buffer.data(), type, rows, cols, cols};
  return m;
}

}  // namespace

Matrix upload_matrix(Backend& backend, const HostTensor& t) {
  Matrix m;
  m.buffer = backend.alloc(t.bytes.size());
  backend.copy_to_device(m.buffer.data(), t.bytes.data(), t.bytes.size());
  m.view.data = m.buffer.data();
  m.view.dtype = t.dtype;
  m.view.cols = t.shape.back();
  m.view.rows = t.numel() / m.view.cols;
  m.view.stride = m.view.cols;
  return m;
}

MlpWeights load_mlp(CheckpointReader& ckpt, Backend& backend, const std::string& prefix, int64_t ffn,
                    const TensorParallel& tp) {
  const ModelConfig& c = ckpt.config();
  const int64_t d = c.hidden_size;
  MOE_CHECK(ffn >= tp.size, "{}: {} columns cannot be sliced over tp = {} ranks", prefix, ffn, tp.size);
  const auto [f0, f1] = slice_range(ffn, tp.rank, tp.size);
  MlpWeights mlp;
  mlp.ffn = f1 - f0;
  const Box up = rows_of(prefix + "/up_proj", {ffn, d}, f0, f1);
  if (c.activation == ActivationKind::swiglu)
    mlp.in = load_matrix(ckpt, backend, {rows_of(prefix + "/gate_proj", {ffn, d}, f0, f1), up}, prefix);
  else
    mlp.in = load_matrix(ckpt, backend, {up}, prefix);
  mlp.out = load_matrix(ckpt, backend, {{prefix + "/down_proj", {d, ffn}, {0, f0}, {d, f1 - f0}}}, prefix);
  return mlp;
}

ModelWeights load_weights(CheckpointReader& ckpt, Backend& backend, const TensorParallel& tp) {
  const ModelConfig& c = ckpt.config();
  const int64_t d = c.hidden_size;
  const std::size_t before = backend.bytes_in_use();
  ModelWeights w;
  // Query heads split evenly; each rank keeps the kv heads its query heads read: a slice of them
  // when tp divides KV, else (tp a multiple of KV) the one kv head of its query group.
  MOE_CHECK(c.num_heads % tp.size == 0, "parallel.tp = {} does not divide num_heads = {}", tp.size, c.num_heads);
  MOE_CHECK(c.num_kv_heads % tp.size == 0 || tp.size % c.num_kv_heads == 0,
            "parallel.tp = {}: num_kv_heads = {} must divide it or be a multiple of it", tp.size, c.num_kv_heads);
  MOE_CHECK(c.vocab_size >= tp.size, "parallel.tp = {} exceeds vocab_size = {}", tp.size, c.vocab_size);
  const auto [h0, h1] = slice_range(c.num_heads, tp.rank, tp.size);
  const auto [kv0, kv1] =
      c.num_kv_heads % tp.size == 0
          ? slice_range(c.num_kv_heads, tp.rank, tp.size)
          : std::pair<int64_t, int64_t>{h0 / (c.num_heads / c.num_kv_heads), h0 / (c.num_heads / c.num_kv_heads) + 1};
  w.heads = h1 - h0;
  w.kv_heads = kv1 - kv0;
  const auto [v0, v1] = slice_range(c.vocab_size, tp.rank, tp.size);
  w.vocab_begin = v0;
  w.vocab_rows = v1 - v0;
  w.embed_tokens = load_matrix(ckpt, backend, {rows_of("embed_tokens", {c.vocab_size, d}, v0, v1)}, "embed_tokens");
  if (c.position == PositionKind::learned)
    w.embed_positions =
        load_matrix(ckpt, backend, {whole("embed_positions", {c.max_positions, d})}, "embed_positions");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "layers/" + std::to_string(i);
    LayerWeights& l = w.layers.emplace_back();
    l.attn_norm = load_norm(ckpt, backend, p + "/attn_norm");
    const int64_t hd = c.head_dim;
    const int64_t q_rows = c.num_heads * hd;
    const int64_t kv_rows = c.num_kv_heads * hd;
    l.qkv = load_matrix(ckpt, backend,
                        {rows_of(p + "/attn/q_proj", {q_rows, d}, h0 * hd, h1 * hd),
                         rows_of(p + "/attn/k_proj", {kv_rows, d}, kv0 * hd, kv1 * hd),
                         rows_of(p + "/attn/v_proj", {kv_rows, d}, kv0 * hd, kv1 * hd)},
                        p + "/attn");
    if (c.qkv_bias) {
      const HostTensor qb = ckpt.read(p + "/attn/q_bias", {q_rows}, {h0 * hd}, {(h1 - h0) * hd});
      const HostTensor kb = ckpt.read(p + "/attn/k_bias", {kv_rows}, {kv0 * hd}, {(kv1 - kv0) * hd});
      const HostTensor vb = ckpt.read(p + "/attn/v_bias", {kv_rows}, {kv0 * hd}, {(kv1 - kv0) * hd});
      HostTensor all = stack_rows({&qb, &kb, &vb}, p + "/attn biases");
      l.qkv_bias = upload_f32(backend, all);
    }
    if (c.qk_norm) {  // this rank's slices: the norm's statistics are summed over tp
      l.q_norm = upload_f32(backend, ckpt.read(p + "/attn/q_norm", {q_rows}, {h0 * hd}, {(h1 - h0) * hd}));
      l.k_norm = upload_f32(backend, ckpt.read(p + "/attn/k_norm", {kv_rows}, {kv0 * hd}, {(kv1 - kv0) * hd}));
    }
    l.o_proj =
        load_matrix(ckpt, backend, {{p + "/attn/o_proj", {d, q_rows}, {0, h0 * hd}, {d, (h1 - h0) * hd}}}, p + "/attn");
    l.mlp_norm = load_norm(ckpt, backend, p + "/mlp_norm");
    if (!c.is_moe_layer(i)) {
      l.dense = load_mlp(ckpt, backend, p + "/mlp", c.dense_ffn, tp);
      continue;
    }
    l.router = load_matrix(ckpt, backend, {whole(p + "/moe/router", {c.num_experts(i), d})}, p + "/moe/router");
    if (c.shared_ffn > 0) l.shared = load_mlp(ckpt, backend, p + "/moe/shared", c.shared_ffn, tp);
    if (c.shared_gate == SharedGateKind::sigmoid)
      l.shared_gate = load_matrix(ckpt, backend, {whole(p + "/moe/shared_gate", {1, d})}, p + "/moe/shared_gate");
  }
  w.final_norm = load_norm(ckpt, backend, "final_norm");
  if (c.tie_embeddings) {
    w.lm_head.view = w.embed_tokens.view;
  } else {
    w.lm_head = load_matrix(ckpt, backend, {rows_of("lm_head", {c.vocab_size, d}, v0, v1)}, "lm_head");
  }
  w.bytes = backend.bytes_in_use() - before;
  std::vector<const Matrix*> all{&w.embed_tokens, &w.embed_positions, &w.lm_head};
  for (const LayerWeights& l : w.layers) {
    for (const Matrix* m : {&l.qkv, &l.o_proj, &l.router, &l.shared_gate}) all.push_back(m);
    for (const std::optional<MlpWeights>* mlp : {&l.dense, &l.shared})
      if (*mlp) all.insert(all.end(), {&(*mlp)->in, &(*mlp)->out});
  }
  for (const Matrix* m : all)
    if (m->mapped)
      w.mapped_bytes += static_cast<std::size_t>(m->view.rows * m->view.cols) * dtype_size(m->view.dtype);
  w.bytes += w.mapped_bytes;
  return w;
}

}  // namespace moe
