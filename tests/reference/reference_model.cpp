#include "reference_model.hpp"

#include <hdf5.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace ref {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("ref: " + what); }

// Owns one HDF5 id and closes it with the matching H5?close.
class Handle {
public:
    Handle(hid_t id, herr_t (*close)(hid_t), const std::string& what) : id_(id), close_(close) {
        if (id_ < 0) fail(what);
    }
    ~Handle() { close_(id_); }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    operator hid_t() const { return id_; }

private:
    hid_t id_;
    herr_t (*close_)(hid_t);
};

void check(herr_t status, const std::string& what) {
    if (status < 0) fail(what);
}

std::vector<std::size_t> shape_of(hid_t space) {
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0) fail("cannot read a dataspace rank");
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    return {dims.begin(), dims.end()};
}

std::size_t count_of(const std::vector<std::size_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), std::size_t{1}, std::multiplies<>());
}

// A scalar string attribute, fixed-length (NUL- or space-padded) or variable-length.
std::string read_string(hid_t attr, const std::string& where) {
    Handle type(H5Aget_type(attr), H5Tclose, where + ": no type");
    Handle space(H5Aget_space(attr), H5Sclose, where + ": no dataspace");
    // One string only: the buffers below hold exactly one element.
    if (H5Sget_simple_extent_npoints(space) != 1) fail(where + ": not a single string");
    if (H5Tis_variable_str(type) > 0) {
        Handle mem(H5Tcopy(H5T_C_S1), H5Tclose, where + ": H5Tcopy");
        check(H5Tset_size(mem, H5T_VARIABLE), where + ": H5Tset_size");
        check(H5Tset_cset(mem, H5Tget_cset(type)), where + ": H5Tset_cset");
        char* buf = nullptr;
        check(H5Aread(attr, mem, &buf), where + ": cannot read string");
        std::string s = buf ? buf : "";
        H5free_memory(buf);
        return s;
    }
    const std::size_t size = H5Tget_size(type);
    std::string s(size, '\0');
    check(H5Aread(attr, type, s.data()), where + ": cannot read string");  // file type = mem type
    s.resize(s.find('\0') == std::string::npos ? size : s.find('\0'));
    if (H5Tget_strpad(type) == H5T_STR_SPACEPAD) s.erase(s.find_last_not_of(' ') + 1);
    return s;
}

Attribute read_attribute(hid_t loc, const std::string& name, const std::string& where) {
    Handle attr(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose, where + ": cannot open");
    Handle type(H5Aget_type(attr), H5Tclose, where + ": no type");
    Attribute a;
    const H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_STRING) {
        a.is_string = true;
        a.text = read_string(attr, where);
    } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
        Handle space(H5Aget_space(attr), H5Sclose, where + ": no dataspace");
        a.numbers.resize(count_of(shape_of(space)));
        check(H5Aread(attr, H5T_NATIVE_DOUBLE, a.numbers.data()), where + ": cannot read");
    } else {
        fail(where + ": unsupported attribute type");
    }
    return a;
}

herr_t collect_attribute(hid_t, const char* name, const H5A_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
}

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
}

float bf16_to_float(std::uint16_t bits) {
    // bf16 is the high half of a float32 bit pattern.
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

Tensor read_tensor(hid_t file, const std::string& path, const std::string& where) {
    Handle ds(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose, where + ": cannot open");
    Handle space(H5Dget_space(ds), H5Sclose, where + ": no dataspace");
    Handle type(H5Dget_type(ds), H5Tclose, where + ": no type");
    Tensor t;
    t.shape = shape_of(space);
    t.data.resize(count_of(t.shape));
    std::string dtype;
    if (H5Aexists(ds, "dtype") > 0) {
        Handle attr(H5Aopen(ds, "dtype", H5P_DEFAULT), H5Aclose, where + ": dtype attribute");
        dtype = read_string(attr, where + " attribute dtype");
    }
    const H5T_class_t cls = H5Tget_class(type);
    if (dtype == "bf16") {
        if (cls != H5T_INTEGER || H5Tget_size(type) != 2)
            fail(where + ": dtype = bf16 but the data is not 16-bit integers");
        std::vector<std::uint16_t> raw(t.data.size());
        check(H5Dread(ds, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()),
              where + ": cannot read");
        for (std::size_t i = 0; i < raw.size(); ++i) t.data[i] = bf16_to_float(raw[i]);
    } else if (cls == H5T_FLOAT || cls == H5T_INTEGER) {
        // float32 (the normal case); HDF5 converts to double exactly.
        check(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data.data()),
              where + ": cannot read");
    } else {
        fail(where + ": unsupported dataset type");
    }
    return t;
}

// --- Typed views of the root attributes. ---

const Attribute& attr(const Model& m, const std::string& key) {
    auto it = m.attributes.find(key);
    if (it == m.attributes.end()) fail("checkpoint attribute '" + key + "' is missing");
    return it->second;
}

std::string get_string(const Model& m, const std::string& key) {
    const Attribute& a = attr(m, key);
    if (!a.is_string) fail("checkpoint attribute '" + key + "' is not a string");
    return a.text;
}

std::vector<std::int64_t> get_ints(const Model& m, const std::string& key) {
    const Attribute& a = attr(m, key);
    if (a.is_string) fail("checkpoint attribute '" + key + "' is not a number");
    std::vector<std::int64_t> v;
    for (double x : a.numbers) {
        if (x != std::floor(x)) fail("checkpoint attribute '" + key + "' is not integer");
        v.push_back(static_cast<std::int64_t>(x));
    }
    return v;
}

std::int64_t get_int(const Model& m, const std::string& key) {
    const auto v = get_ints(m, key);
    if (v.size() != 1) fail("checkpoint attribute '" + key + "' is not a scalar");
    return v[0];
}

bool get_bool(const Model& m, const std::string& key) {
    const std::int64_t v = get_int(m, key);
    if (v != 0 && v != 1) fail("checkpoint attribute '" + key + "' is not 0/1");
    return v == 1;
}

double get_double(const Model& m, const std::string& key) {
    const Attribute& a = attr(m, key);
    if (a.is_string || a.numbers.size() != 1)
        fail("checkpoint attribute '" + key + "' is not a number");
    return a.numbers[0];
}

void require(bool ok, const std::string& what) {
    if (!ok) fail("invalid checkpoint: " + what);
}

Config parse_config(const Model& m) {
    Config c;
    c.format = get_string(m, "format");
    c.format_version = get_int(m, "format_version");
    require(c.format == "moebatch-checkpoint", "format = '" + c.format + "'");
    require(c.format_version == 1, "format_version = " + std::to_string(c.format_version));
    if (m.attributes.count("family")) c.family = get_string(m, "family");  // informational only
    c.vocab_size = get_int(m, "vocab_size");
    c.hidden_size = get_int(m, "hidden_size");
    c.num_layers = get_int(m, "num_layers");
    c.num_heads = get_int(m, "num_heads");
    c.num_kv_heads = get_int(m, "num_kv_heads");
    c.head_dim = get_int(m, "head_dim");
    c.max_positions = get_int(m, "max_positions");
    c.norm = get_string(m, "norm");
    c.norm_eps = get_double(m, "norm_eps");
    c.position = get_string(m, "position");
    if (c.position == "rope") c.rope_theta = get_double(m, "rope_theta");
    c.qkv_bias = get_bool(m, "qkv_bias");
    c.qk_norm = m.attributes.count("qk_norm") ? get_bool(m, "qk_norm") : false;
    c.activation = get_string(m, "activation");
    c.dense_ffn = get_int(m, "dense_ffn");
    c.expert_ffn = get_int(m, "expert_ffn");
    c.top_k = get_int(m, "top_k");
    c.router_renormalize = get_bool(m, "router_renormalize");
    c.shared_ffn = get_int(m, "shared_ffn");
    c.shared_gate = get_string(m, "shared_gate");
    c.tie_embeddings = get_bool(m, "tie_embeddings");
    c.layer_num_experts = get_ints(m, "layer_num_experts");

    require(c.vocab_size > 0 && c.hidden_size > 0 && c.num_layers >= 0, "sizes must be positive");
    require(c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads == 0,
            "num_kv_heads must divide num_heads");
    require(c.head_dim > 0 && c.max_positions > 0, "head_dim and max_positions must be positive");
    require(c.norm == "rmsnorm" || c.norm == "layernorm", "norm = '" + c.norm + "'");
    require(c.position == "rope" || c.position == "learned", "position = '" + c.position + "'");
    require(c.position != "rope" || c.head_dim % 2 == 0, "rope needs an even head_dim");
    require(c.activation == "swiglu" || c.activation == "gelu",
            "activation = '" + c.activation + "'");
    require(c.shared_gate == "none" || c.shared_gate == "sigmoid",
            "shared_gate = '" + c.shared_gate + "'");
    require(c.layer_num_experts.size() == static_cast<std::size_t>(c.num_layers),
            "layer_num_experts must have num_layers entries");
    for (std::int64_t e : c.layer_num_experts) {
        require(e >= 0, "layer_num_experts must be >= 0");
        if (e == 0) require(c.dense_ffn > 0, "a dense layer needs dense_ffn > 0");
        if (e > 0)
            require(c.top_k >= 1 && c.top_k <= e && c.expert_ffn > 0,
                    "an MoE layer needs 1 <= top_k <= E and expert_ffn > 0");
    }
    require(c.shared_ffn >= 0, "shared_ffn must be >= 0");
    return c;
}

std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

std::string layer_prefix(const Model& m, int layer) {
    if (layer < 0 || layer >= m.config.num_layers)
        fail("layer " + std::to_string(layer) + " out of range");
    return "layers/" + std::to_string(layer) + "/";
}

// The configured activation's MLP on x[T, d]; gate is ignored for gelu.
Vec run_mlp(const Config& c, CSpan gate, CSpan up, CSpan down, std::size_t ffn, CSpan x) {
    const std::size_t d = sz(c.hidden_size);
    if (c.activation == "swiglu") return swiglu_mlp(x, gate, up, down, d, ffn);
    return gelu_mlp(x, up, down, d, ffn);
}

void add_into(Vec& acc, CSpan x, double scale = 1.0) {
    for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += scale * x[i];
}

}  // namespace

const Tensor& Model::tensor(const std::string& path, const std::vector<std::size_t>& shape) const {
    auto it = tensors.find(path);
    if (it == tensors.end()) fail("checkpoint dataset '" + path + "' is missing");
    if (it->second.shape != shape) {
        std::string want, got;
        for (auto s : shape) want += std::to_string(s) + " ";
        for (auto s : it->second.shape) got += std::to_string(s) + " ";
        fail("checkpoint dataset '" + path + "' has shape [ " + got + "], expected [ " + want +
             "]");
    }
    return it->second;
}

Model load_model(const std::string& path) {
    Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                path + ": cannot open");
    Model m;
    // The C iterators cannot carry exceptions, so collect names first and read afterwards.
    std::vector<std::string> names;
    check(H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attribute, &names),
          path + ": cannot list root attributes");
    for (const auto& name : names)
        m.attributes[name] = read_attribute(file, name, path + " attribute " + name);

    names.clear();
    check(H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, collect_link, &names),
          path + ": cannot list objects");
    for (const auto& name : names) {
        Handle obj(H5Oopen(file, name.c_str(), H5P_DEFAULT), H5Oclose,
                   path + ": cannot open " + name);
        if (H5Iget_type(obj) == H5I_DATASET)
            m.tensors[name] = read_tensor(file, name, path + ":" + name);
    }
    m.config = parse_config(m);
    return m;
}

Vec embed(const Model& m, std::span<const std::int32_t> tokens) {
    const Config& c = m.config;
    const std::size_t S = tokens.size(), d = sz(c.hidden_size);
    if (S > sz(c.max_positions))
        fail("sequence of " + std::to_string(S) + " tokens exceeds max_positions");
    const Tensor& table = m.tensor("embed_tokens", {sz(c.vocab_size), d});
    Vec h(S * d);
    for (std::size_t t = 0; t < S; ++t) {
        if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
            fail("token id " + std::to_string(tokens[t]) + " out of range at position " +
                 std::to_string(t));
        for (std::size_t i = 0; i < d; ++i) h[t * d + i] = table.data[sz(tokens[t]) * d + i];
    }
    if (c.position == "learned") {
        const Tensor& pos = m.tensor("embed_positions", {sz(c.max_positions), d});
        add_into(h, CSpan(pos.data).first(S * d));  // position t is row t
    }
    return h;
}

Vec apply_norm(const Model& m, const std::string& prefix, CSpan x) {
    const Config& c = m.config;
    const std::size_t d = sz(c.hidden_size);
    const Tensor& w = m.tensor(prefix + "/weight", {d});
    if (c.norm == "rmsnorm") return rms_norm(x, w.data, c.norm_eps);
    return layer_norm(x, w.data, m.tensor(prefix + "/bias", {d}).data, c.norm_eps);
}

Vec attention_block(const Model& m, int layer, CSpan x) {
    const Config& c = m.config;
    const std::string p = layer_prefix(m, layer) + "attn/";
    const std::size_t d = sz(c.hidden_size), hd = sz(c.head_dim);
    const std::size_t H = sz(c.num_heads), KV = sz(c.num_kv_heads);
    auto project = [&](const std::string& name, const std::string& bias, std::size_t rows) {
        const CSpan b = c.qkv_bias ? CSpan(m.tensor(p + bias, {rows}).data) : CSpan{};
        return linear(x, m.tensor(p + name, {rows, d}).data, rows, d, b);
    };
    Vec q = project("q_proj", "q_bias", H * hd);
    Vec k = project("k_proj", "k_bias", KV * hd);
    const Vec v = project("v_proj", "v_bias", KV * hd);
    if (c.qk_norm) {  // one RMSNorm over each token's whole q (H*hd) and k (KV*hd) vector
        q = rms_norm(q, m.tensor(p + "q_norm", {H * hd}).data, c.norm_eps);
        k = rms_norm(k, m.tensor(p + "k_norm", {KV * hd}).data, c.norm_eps);
    }
    if (c.position == "rope") {
        std::vector<std::int64_t> positions(x.size() / d);
        std::iota(positions.begin(), positions.end(), 0);
        q = rope(q, positions, H, hd, c.rope_theta);
        k = rope(k, positions, KV, hd, c.rope_theta);
    }
    const Vec a = causal_attention(q, k, v, H, KV, hd);
    return linear(a, m.tensor(p + "o_proj", {d, H * hd}).data, d, H * hd);
}

Vec mlp_block(const Model& m, const std::string& prefix, std::size_t ffn, CSpan x) {
    const std::size_t d = sz(m.config.hidden_size);
    const CSpan gate = m.config.activation == "swiglu"
                           ? CSpan(m.tensor(prefix + "/gate_proj", {ffn, d}).data)
                           : CSpan{};
    return run_mlp(m.config, gate, m.tensor(prefix + "/up_proj", {ffn, d}).data,
                   m.tensor(prefix + "/down_proj", {d, ffn}).data, ffn, x);
}

Vec moe_block(const Model& m, int layer, CSpan x, std::vector<TopK>* routing, StaticGating* gating) {
    const Config& c = m.config;
    const std::string p = layer_prefix(m, layer) + "moe/";
    const std::size_t E = sz(c.layer_num_experts[sz(layer)]);
    if (E == 0) fail("layer " + std::to_string(layer) + " is dense, not MoE");
    const std::size_t d = sz(c.hidden_size), F = sz(c.expert_ffn), S = x.size() / d;
    const bool swiglu = c.activation == "swiglu";
    const Vec logits = linear(x, m.tensor(p + "router", {E, d}).data, E, d);
    const CSpan gate = swiglu ? CSpan(m.tensor(p + "experts/gate_proj", {E, F, d}).data) : CSpan{};
    const CSpan up = m.tensor(p + "experts/up_proj", {E, F, d}).data;
    const CSpan down = m.tensor(p + "experts/down_proj", {E, d, F}).data;

    Vec y(S * d, 0.0);
    if (routing) routing->clear();
    const std::size_t K = sz(c.top_k);
    std::size_t capacity = S * K;
    if (gating) {
        const double rows = gating->capacity_factor * static_cast<double>(S * K) / static_cast<double>(E);
        capacity = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(rows)));
    }
    std::vector<std::size_t> taken(E, 0);
    for (std::size_t t = 0; t < S; ++t) {
        const TopK choice =
            softmax_topk(CSpan(logits).subspan(t * E, E), sz(c.top_k), c.router_renormalize);
        if (gating && K < E) {
            // How close this token came to choosing differently (probabilities, pre-renorm).
            std::vector<double> probs(logits.begin() + static_cast<std::ptrdiff_t>(t * E),
                                      logits.begin() + static_cast<std::ptrdiff_t>((t + 1) * E));
            const double mx = *std::max_element(probs.begin(), probs.end());
            double total = 0.0;
            for (double& v : probs) total += (v = std::exp(v - mx));
            std::sort(probs.begin(), probs.end(), std::greater<>());
            gating->min_margin = std::min(gating->min_margin, (probs[K - 1] - probs[K]) / total);
        }
        const CSpan xt = x.subspan(t * d, d);
        Vec yt(d, 0.0);
        for (std::size_t j = 0; j < choice.ids.size(); ++j) {
            const std::size_t e = sz(choice.ids[j]);
            if (taken[e] == capacity) {
                ++gating->dropped;  // capacity < S * K only with gating
                continue;
            }
            ++taken[e];
            const Vec out =
                run_mlp(c, swiglu ? gate.subspan(e * F * d, F * d) : CSpan{},
                        up.subspan(e * F * d, F * d), down.subspan(e * d * F, d * F), F, xt);
            add_into(yt, out, choice.weights[j]);
        }
        std::copy(yt.begin(), yt.end(), y.begin() + static_cast<std::ptrdiff_t>(t * d));
        if (routing) routing->push_back(choice);
    }
    if (c.shared_ffn > 0) {
        const Vec s = mlp_block(m, p + "shared", sz(c.shared_ffn), x);
        Vec g(S, 1.0);
        if (c.shared_gate == "sigmoid") {
            g = linear(x, m.tensor(p + "shared_gate", {1, d}).data, 1, d);
            for (double& v : g) v = sigmoid(v);
        }
        for (std::size_t t = 0; t < S; ++t)
            for (std::size_t i = 0; i < d; ++i) y[t * d + i] += g[t] * s[t * d + i];
    }
    return y;
}

Vec decoder_layer(const Model& m, int layer, CSpan h_in) {
    const std::string p = layer_prefix(m, layer);
    Vec h(h_in.begin(), h_in.end());
    add_into(h, attention_block(m, layer, apply_norm(m, p + "attn_norm", h)));
    const Vec n = apply_norm(m, p + "mlp_norm", h);
    const bool dense = m.config.layer_num_experts[sz(layer)] == 0;
    add_into(h,
             dense ? mlp_block(m, p + "mlp", sz(m.config.dense_ffn), n) : moe_block(m, layer, n));
    return h;
}

Vec final_hidden(const Model& m, std::span<const std::int32_t> tokens) {
    Vec h = embed(m, tokens);
    for (int i = 0; i < m.config.num_layers; ++i) h = decoder_layer(m, i, h);
    return apply_norm(m, "final_norm", h);
}

Vec lm_logits(const Model& m, CSpan hidden) {
    const std::size_t V = sz(m.config.vocab_size), d = sz(m.config.hidden_size);
    const Tensor& head = m.tensor(m.config.tie_embeddings ? "embed_tokens" : "lm_head", {V, d});
    return linear(hidden, head.data, V, d);
}

std::vector<double> score_sequence(const Model& m, std::span<const std::int32_t> tokens) {
    if (tokens.empty()) return {};
    const std::size_t V = sz(m.config.vocab_size);
    const Vec logits = lm_logits(m, final_hidden(m, tokens));
    std::vector<double> lp(tokens.size(), std::numeric_limits<double>::quiet_NaN());
    for (std::size_t t = 1; t < tokens.size(); ++t)  // position t-1 predicts token t
        lp[t] = log_softmax_at(CSpan(logits).subspan((t - 1) * V, V), sz(tokens[t]));
    return lp;
}

std::vector<std::vector<double>> score_batch_static(const Model& m,
                                                    const std::vector<std::vector<std::int32_t>>& batch,
                                                    StaticGating& gating) {
    const Config& c = m.config;
    const std::size_t V = sz(c.vocab_size);
    std::vector<Vec> h;
    for (const auto& seq : batch) h.push_back(embed(m, seq));
    for (int layer = 0; layer < c.num_layers; ++layer) {
        const std::string p = layer_prefix(m, layer);
        Vec normed;  // every sequence's mlp-normed rows, in order
        for (Vec& hs : h) {
            if (hs.empty()) continue;
            add_into(hs, attention_block(m, layer, apply_norm(m, p + "attn_norm", hs)));
            const Vec n = apply_norm(m, p + "mlp_norm", hs);
            normed.insert(normed.end(), n.begin(), n.end());
        }
        const bool dense = c.layer_num_experts[sz(layer)] == 0;
        const Vec out = dense ? mlp_block(m, p + "mlp", sz(c.dense_ffn), normed)
                              : (normed.empty() ? Vec{} : moe_block(m, layer, normed, nullptr, &gating));
        std::size_t row = 0;
        for (Vec& hs : h) {
            add_into(hs, CSpan(out).subspan(row, hs.size()));
            row += hs.size();
        }
    }
    std::vector<std::vector<double>> result;
    for (std::size_t s = 0; s < batch.size(); ++s) {
        std::vector<double> lp(batch[s].size(), std::numeric_limits<double>::quiet_NaN());
        if (!batch[s].empty()) {
            const Vec logits = lm_logits(m, apply_norm(m, "final_norm", h[s]));
            for (std::size_t t = 1; t < batch[s].size(); ++t)
                lp[t] = log_softmax_at(CSpan(logits).subspan((t - 1) * V, V), sz(batch[s][t]));
        }
        result.push_back(std::move(lp));
    }
    return result;
}

// --- Tokens ---

namespace {

template <class T>
std::vector<T> read_ints(hid_t file, const std::string& name, hid_t memtype,
                         const std::string& where, std::vector<std::size_t>& shape) {
    Handle ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose, where + ": no dataset " + name);
    Handle space(H5Dget_space(ds), H5Sclose, where + ": no dataspace for " + name);
    Handle type(H5Dget_type(ds), H5Tclose, where + ": no type for " + name);
    if (H5Tget_class(type) != H5T_INTEGER) fail(where + ": " + name + " is not integer");
    shape = shape_of(space);
    std::vector<T> v(count_of(shape));
    check(H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
          where + ": cannot read " + name);
    return v;
}

}  // namespace

Tokens load_tokens(const std::string& path) {
    Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                path + ": cannot open");
    std::vector<std::size_t> shape, aux;
    const auto tokens = read_ints<std::int32_t>(file, "tokens", H5T_NATIVE_INT32, path, shape);
    Tokens out;
    if (shape.size() == 2) {  // padded [N, S] + lengths [N]
        const std::size_t N = shape[0], S = shape[1];
        const auto lengths = read_ints<std::int32_t>(file, "lengths", H5T_NATIVE_INT32, path, aux);
        if (aux != std::vector<std::size_t>{N}) fail(path + ": lengths must be [N]");
        out.padded_width = S;
        for (std::size_t i = 0; i < N; ++i) {
            if (lengths[i] < 0 || sz(lengths[i]) > S)
                fail(path + ": lengths[" + std::to_string(i) + "] out of range");
            const auto row = tokens.begin() + static_cast<std::ptrdiff_t>(i * S);
            out.sequences.emplace_back(row, row + lengths[i]);
        }
    } else if (shape.size() == 1) {  // ragged [total] + offsets [N+1]
        out.ragged = true;
        out.offsets = read_ints<std::int64_t>(file, "offsets", H5T_NATIVE_INT64, path, aux);
        if (aux.size() != 1 || out.offsets.empty()) fail(path + ": offsets must be [N+1]");
        if (out.offsets.front() != 0 || sz(out.offsets.back()) != tokens.size())
            fail(path + ": offsets must start at 0 and end at the token count");
        for (std::size_t i = 0; i + 1 < out.offsets.size(); ++i) {
            if (out.offsets[i + 1] < out.offsets[i])
                fail(path + ": offsets must be non-decreasing");
            out.sequences.emplace_back(tokens.begin() + out.offsets[i],
                                       tokens.begin() + out.offsets[i + 1]);
        }
    } else {
        fail(path + ": tokens must have rank 1 (ragged) or 2 (padded)");
    }
    return out;
}

}  // namespace ref
