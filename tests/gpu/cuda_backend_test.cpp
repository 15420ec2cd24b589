// CudaBackend against CpuBackend, op by op: fresh random inputs per op, both backends on the same
// inputs, outputs compared with a per-op tolerance (ggml's test-backend-ops pattern).
//
// Every GPU test skips when cuda_device_available() is false (any machine without a GPU or with a
// too old driver). Only NoDevice.* runs there. As written, these tests have NOT yet run on a GPU.
#include "cuda_backend.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"

namespace moe {
namespace {

// --- helpers -------------------------------------------------------------------------------------

// A typed array in a backend's memory, filled from the host.
template <typename T>
class DeviceArray {
 public:
  DeviceArray(Backend& backend, const std::vector<T>& host)
      : backend_(&backend), size_(host.size()), buffer_(backend.alloc(host.size() * sizeof(T))) {
    backend.copy_to_device(buffer_.data(), host.data(), host.size() * sizeof(T));
  }
  T* get() const { return buffer_.as<T>(); }
  std::vector<T> to_host() const {
    std::vector<T> host(size_);
    backend_->copy_to_host(host.data(), buffer_.data(), size_ * sizeof(T));
    return host;
  }

 private:
  Backend* backend_;
  std::size_t size_;
  DeviceBuffer buffer_;
};

std::vector<float> random_floats(std::mt19937& rng, std::size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<int32_t> random_ints(std::mt19937& rng, std::size_t n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> dist(lo, hi);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = float_to_bf16(v[i]);
  return out;
}

// Each value rounded to the nearest bf16 (as a float). GEMMs with bf16 weights multiply bf16
// activations: inputs that are bf16 already make the CPU and CUDA backends compute the same
// products whether the CPU backend rounds x or widens w (both exact in fp32).
std::vector<float> bf16_valued(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(float_to_bf16(v[i]));
  return out;
}

WeightView view(const void* data, DType dtype, int64_t rows, int64_t cols, int64_t stride) {
  return WeightView{data, dtype, rows, cols, stride};
}

// |cpu - cuda| <= atol + rtol |cpu| element-wise (equal infinities pass); one failure per call,
// naming the first bad element and the largest error.
template <typename T>
void expect_close(const std::vector<T>& cpu, const std::vector<T>& cuda, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(cpu.size(), cuda.size()) << what;
  std::size_t bad = 0;
  std::size_t first_bad = 0;
  double max_err = 0.0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double want = static_cast<double>(cpu[i]);
    const double got = static_cast<double>(cuda[i]);
    if (want == got) continue;
    const double err = std::fabs(want - got);
    if (!(err <= atol + rtol * std::fabs(want))) {
      if (bad++ == 0) first_bad = i;
    }
    if (err > max_err || std::isnan(err)) max_err = err;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " elements differ beyond atol " << atol
                     << " rtol " << rtol << "; first at " << first_bad << " (cpu " << cpu[first_bad] << ", cuda "
                     << cuda[first_bad] << "), max error " << max_err;
}

// A per-test seed: fresh inputs for every op, reproducible from the test's name.
unsigned seed_for_current_test() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return static_cast<unsigned>(std::hash<std::string>{}(std::string(info->test_suite_name()) + "." + info->name()));
}

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no usable CUDA device (cuda_device_available() is false)";
    gpu_ = std::make_unique<CudaBackend>(0);
    rng_.seed(seed_for_current_test());
  }

  CpuBackend cpu_;
  std::unique_ptr<CudaBackend> gpu_;
  std::mt19937 rng_;
};

// --- runs everywhere --------------------------------------------------------------------------

TEST(NoDevice, MakeCudaBackendThrowsAClearError) {
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is present";
  try {
    make_cuda_backend();
    FAIL() << "make_cuda_backend() returned without a device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << "should point to the cpu backend: " << e.what();
  }
}

// --- memory ------------------------------------------------------------------------------------

TEST_F(CudaBackendTest, MemoryCopiesAndAccounting) {
  EXPECT_EQ(gpu_->name(), "cuda");
  const std::size_t before = gpu_->bytes_in_use();
  const auto host = random_floats(rng_, 1000);
  {
    DeviceArray<float> a(*gpu_, host);
    EXPECT_EQ(gpu_->bytes_in_use(), before + 1000 * sizeof(float));
    EXPECT_EQ(a.to_host(), host);

    // Non-overlapping copy, then overlapping copies in both directions (memmove semantics).
    DeviceArray<float> b(*gpu_, std::vector<float>(1000, 0.0f));
    gpu_->copy(b.get(), a.get(), 1000 * sizeof(float));
    EXPECT_EQ(b.to_host(), host);
    std::vector<float> want = host;
    std::memmove(want.data() + 100, want.data(), 800 * sizeof(float));
    gpu_->copy(a.get() + 100, a.get(), 800 * sizeof(float));
    EXPECT_EQ(a.to_host(), want);
    std::memmove(want.data(), want.data() + 50, 900 * sizeof(float));
    gpu_->copy(a.get(), a.get() + 50, 900 * sizeof(float));
    EXPECT_EQ(a.to_host(), want);
    gpu_->synchronize();
  }
  EXPECT_EQ(gpu_->bytes_in_use(), before);
  EXPECT_GE(gpu_->peak_bytes(), before + 2000 * sizeof(float));
}

// --- dense algebra -----------------------------------------------------------------------------

// raw_x: the CUDA backend gets activations that are not bf16 values and must round them itself
// (bf16 weights); the CPU backend gets them rounded.
void run_linear(Backend& cpu, CudaBackend& gpu, std::mt19937& rng, DType dtype, const std::string& what,
                bool raw_x = false) {
  // A column slice of a wider matrix (stride > cols), odd sizes, both beta = 0 and beta != 0.
  const int64_t m = 37, rows = 70, cols = 53, stride = 61;
  auto x = random_floats(rng, m * cols);
  if (dtype == DType::bf16 && !raw_x) x = bf16_valued(x);
  const auto x_cpu = dtype == DType::bf16 ? bf16_valued(x) : x;
  const auto w_f32 = random_floats(rng, rows * stride);
  const auto w_bf16 = to_bf16(w_f32);
  const void* w_host = dtype == DType::f32 ? static_cast<const void*>(w_f32.data()) : w_bf16.data();
  DeviceArray<float> x_dev(gpu, x);
  DeviceArray<float> wf_dev(gpu, w_f32);
  DeviceArray<uint16_t> wb_dev(gpu, w_bf16);
  const void* w_dev = dtype == DType::f32 ? static_cast<const void*>(wf_dev.get()) : wb_dev.get();

  for (const float beta : {0.0f, 0.5f}) {
    const auto y0 = random_floats(rng, m * rows);
    std::vector<float> y_cpu = y0;
    DeviceArray<float> y_dev(gpu, y0);
    cpu.linear(x_cpu.data(), m, view(w_host, dtype, rows, cols, stride), y_cpu.data(), beta);
    gpu.linear(x_dev.get(), m, view(w_dev, dtype, rows, cols, stride), y_dev.get(), beta);
    expect_close(y_cpu, y_dev.to_host(), 1e-5, 1e-4, what + " beta=" + std::to_string(beta));
  }
}

TEST_F(CudaBackendTest, LinearF32) {
  run_linear(cpu_, *gpu_, rng_, DType::f32, "linear f32");
}

TEST_F(CudaBackendTest, LinearBf16) {
  run_linear(cpu_, *gpu_, rng_, DType::bf16, "linear bf16");
}

TEST_F(CudaBackendTest, LinearBf16RoundsActivations) {
  run_linear(cpu_, *gpu_, rng_, DType::bf16, "linear bf16, fp32 activations rounded on the device", true);
}

TEST_F(CudaBackendTest, GroupedLinear) {
  // Four experts of the same shape, one of them empty, mixed dtypes.
  const int64_t rows = 24, cols = 40, num_groups = 4;
  const std::vector<int64_t> offsets = {0, 5, 5, 17, 30};
  const int64_t m = offsets.back();
  const auto x = bf16_valued(random_floats(rng_, m * cols));  // the bf16 groups multiply bf16 values
  std::vector<std::vector<float>> wf;
  std::vector<std::vector<uint16_t>> wb;
  std::vector<std::unique_ptr<DeviceArray<float>>> wf_dev;
  std::vector<std::unique_ptr<DeviceArray<uint16_t>>> wb_dev;
  std::vector<WeightView> cpu_views, gpu_views;
  for (int64_t g = 0; g < num_groups; ++g) {
    wf.push_back(random_floats(rng_, rows * cols));
    wb.push_back(to_bf16(wf.back()));
    wf_dev.push_back(std::make_unique<DeviceArray<float>>(*gpu_, wf.back()));
    wb_dev.push_back(std::make_unique<DeviceArray<uint16_t>>(*gpu_, wb.back()));
    if (g % 2 == 0) {
      cpu_views.push_back(view(wf.back().data(), DType::f32, rows, cols, cols));
      gpu_views.push_back(view(wf_dev.back()->get(), DType::f32, rows, cols, cols));
    } else {
      cpu_views.push_back(view(wb.back().data(), DType::bf16, rows, cols, cols));
      gpu_views.push_back(view(wb_dev.back()->get(), DType::bf16, rows, cols, cols));
    }
  }
  std::vector<float> y_cpu(m * rows, 0.0f);
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<float> y_dev(*gpu_, y_cpu);
  cpu_.grouped_linear(x.data(), offsets.data(), num_groups, cpu_views.data(), y_cpu.data());
  gpu_->grouped_linear(x_dev.get(), offsets.data(), num_groups, gpu_views.data(), y_dev.get());
  expect_close(y_cpu, y_dev.to_host(), 1e-5, 1e-4, "grouped_linear");
}

TEST_F(CudaBackendTest, AddBiasAndAdd) {
  const int64_t m = 33, n = 301;
  auto y = random_floats(rng_, m * n);
  const auto bias = random_floats(rng_, n);
  const auto x = random_floats(rng_, m * n);
  DeviceArray<float> y_dev(*gpu_, y);
  DeviceArray<float> bias_dev(*gpu_, bias);
  DeviceArray<float> x_dev(*gpu_, x);
  cpu_.add_bias(y.data(), bias.data(), m, n);
  gpu_->add_bias(y_dev.get(), bias_dev.get(), m, n);
  expect_close(y, y_dev.to_host(), 0.0, 0.0, "add_bias");
  cpu_.add(y.data(), x.data(), m * n);
  gpu_->add(y_dev.get(), x_dev.get(), m * n);
  expect_close(y, y_dev.to_host(), 0.0, 0.0, "add");
}

// --- normalisation and position ----------------------------------------------------------------

TEST_F(CudaBackendTest, RmsNorm) {
  const int64_t m = 29, d = 1000;  // d not a multiple of the block
  const auto x = random_floats(rng_, m * d, -3.0f, 3.0f);
  const auto w = random_floats(rng_, d, 0.5f, 1.5f);
  std::vector<float> y_cpu(m * d);
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<float> w_dev(*gpu_, w);
  DeviceArray<float> y_dev(*gpu_, y_cpu);
  cpu_.rms_norm(x.data(), w.data(), y_cpu.data(), m, d, 1e-6f);
  gpu_->rms_norm(x_dev.get(), w_dev.get(), y_dev.get(), m, d, 1e-6f);
  expect_close(y_cpu, y_dev.to_host(), 1e-6, 1e-6, "rms_norm");
  gpu_->rms_norm(x_dev.get(), w_dev.get(), x_dev.get(), m, d, 1e-6f);  // in place
  expect_close(y_cpu, x_dev.to_host(), 1e-6, 1e-6, "rms_norm in place");
}

TEST_F(CudaBackendTest, RowSumSquaresAndScaledRmsNorm) {
  const int64_t m = 29, d = 1000;
  const auto x = random_floats(rng_, m * d, -3.0f, 3.0f);
  const auto w = random_floats(rng_, d, 0.5f, 1.5f);
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<float> w_dev(*gpu_, w);
  std::vector<double> ss_cpu(m);
  DeviceArray<double> ss_dev(*gpu_, ss_cpu);
  cpu_.row_sum_squares(x.data(), m, d, ss_cpu.data());
  gpu_->row_sum_squares(x_dev.get(), m, d, ss_dev.get());
  const auto ss_gpu = ss_dev.to_host();
  for (int64_t i = 0; i < m; ++i) EXPECT_NEAR(ss_gpu[i], ss_cpu[i], 1e-9 * ss_cpu[i]) << "row " << i;
  // A count of 3d stands for a row three times as long (the other slices on other ranks).
  std::vector<float> y_cpu(m * d);
  DeviceArray<float> y_dev(*gpu_, y_cpu);
  DeviceArray<double> ss_in(*gpu_, ss_cpu);
  cpu_.rms_norm_scaled(x.data(), w.data(), ss_cpu.data(), 3.0 * d, y_cpu.data(), m, d, 1e-6f);
  gpu_->rms_norm_scaled(x_dev.get(), w_dev.get(), ss_in.get(), 3.0 * d, y_dev.get(), m, d, 1e-6f);
  expect_close(y_cpu, y_dev.to_host(), 1e-6, 1e-6, "rms_norm_scaled");
}

TEST_F(CudaBackendTest, LayerNorm) {
  const int64_t m = 29, d = 777;
  const auto x = random_floats(rng_, m * d, -2.0f, 4.0f);
  const auto w = random_floats(rng_, d, 0.5f, 1.5f);
  const auto b = random_floats(rng_, d);
  std::vector<float> y_cpu(m * d);
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<float> w_dev(*gpu_, w);
  DeviceArray<float> b_dev(*gpu_, b);
  DeviceArray<float> y_dev(*gpu_, y_cpu);
  cpu_.layer_norm(x.data(), w.data(), b.data(), y_cpu.data(), m, d, 1e-5f);
  gpu_->layer_norm(x_dev.get(), w_dev.get(), b_dev.get(), y_dev.get(), m, d, 1e-5f);
  expect_close(y_cpu, y_dev.to_host(), 1e-6, 1e-6, "layer_norm");
  gpu_->layer_norm(x_dev.get(), w_dev.get(), b_dev.get(), x_dev.get(), m, d, 1e-5f);
  expect_close(y_cpu, x_dev.to_host(), 1e-6, 1e-6, "layer_norm in place");
}

TEST_F(CudaBackendTest, Rope) {
  const int64_t m = 19, heads = 3, head_dim = 64;
  auto x = random_floats(rng_, m * heads * head_dim);
  const auto positions = random_ints(rng_, m, 0, 100000);  // long positions: the angle is in double
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<int32_t> pos_dev(*gpu_, positions);
  cpu_.rope(x.data(), positions.data(), m, heads, head_dim, 1e6f);
  gpu_->rope(x_dev.get(), pos_dev.get(), m, heads, head_dim, 1e6f);
  expect_close(x, x_dev.to_host(), 1e-6, 1e-5, "rope");
}

TEST_F(CudaBackendTest, Embed) {
  const int64_t vocab = 50, cols = 33, stride = 40, m = 23;
  const auto table = random_floats(rng_, vocab * stride);
  const auto table_bf16 = to_bf16(table);
  // A whole table sees ids it holds; a vocabulary slice starting at 7 also sees ids 0..6 and
  // 57.., which other slices hold.
  const auto whole_ids = random_ints(rng_, m, 0, vocab - 1);
  const auto slice_ids = random_ints(rng_, m, 0, vocab + 15);
  DeviceArray<float> tf_dev(*gpu_, table);
  DeviceArray<uint16_t> tb_dev(*gpu_, table_bf16);
  for (const int64_t vocab_begin : {int64_t{0}, int64_t{7}}) {
    const auto& ids = vocab_begin == 0 ? whole_ids : slice_ids;
    DeviceArray<int32_t> ids_dev(*gpu_, ids);
    for (const DType dtype : {DType::f32, DType::bf16}) {
      for (const bool accumulate : {false, true}) {
        auto out = random_floats(rng_, m * cols);
        DeviceArray<float> out_dev(*gpu_, out);
        const void* host_table = dtype == DType::f32 ? static_cast<const void*>(table.data()) : table_bf16.data();
        const void* dev_table = dtype == DType::f32 ? static_cast<const void*>(tf_dev.get()) : tb_dev.get();
        cpu_.embed(ids.data(), m, view(host_table, dtype, vocab, cols, stride), vocab_begin, out.data(), accumulate);
        gpu_->embed(ids_dev.get(), m, view(dev_table, dtype, vocab, cols, stride), vocab_begin, out_dev.get(),
                    accumulate);
        expect_close(out, out_dev.to_host(), 0.0, 0.0,
                     std::string("embed ") + std::string(dtype_name(dtype)) + (accumulate ? " accumulate" : "") +
                         (vocab_begin > 0 ? " slice" : ""));
      }
    }
  }
}

// --- attention ---------------------------------------------------------------------------------

void run_attention(CpuBackend& cpu, CudaBackend& gpu, std::mt19937& rng, const std::vector<int64_t>& lengths,
                   int64_t heads, int64_t kv_heads, int64_t head_dim) {
  std::vector<int64_t> offsets = {0};
  for (const int64_t len : lengths) offsets.push_back(offsets.back() + len);
  const int64_t total = offsets.back();
  const int64_t num_seqs = static_cast<int64_t>(lengths.size());
  const int64_t max_len = *std::max_element(lengths.begin(), lengths.end());
  const auto q = random_floats(rng, total * heads * head_dim);
  const auto k = random_floats(rng, total * kv_heads * head_dim);
  const auto v = random_floats(rng, total * kv_heads * head_dim);
  std::vector<float> out_cpu(total * heads * head_dim, 0.0f);
  std::vector<float> scratch_cpu(cpu.attention_scratch_bytes(max_len) / sizeof(float));
  cpu.causal_attention(q.data(), k.data(), v.data(), out_cpu.data(), offsets.data(), num_seqs, max_len, heads, kv_heads,
                       head_dim, scratch_cpu.data());

  DeviceArray<float> q_dev(gpu, q), k_dev(gpu, k), v_dev(gpu, v);
  DeviceArray<float> out_dev(gpu, std::vector<float>(out_cpu.size(), std::nanf("")));
  DeviceArray<int64_t> offsets_dev(gpu, offsets);
  DeviceBuffer scratch = gpu.alloc(gpu.attention_scratch_bytes(max_len));
  gpu.causal_attention(q_dev.get(), k_dev.get(), v_dev.get(), out_dev.get(), offsets_dev.get(), num_seqs, max_len,
                       heads, kv_heads, head_dim, scratch.data());
  expect_close(out_cpu, out_dev.to_host(), 1e-4, 1e-4,
               "causal_attention heads=" + std::to_string(heads) + " kv_heads=" + std::to_string(kv_heads) +
                   " head_dim=" + std::to_string(head_dim));
}

TEST_F(CudaBackendTest, CausalAttentionGroupedHeads) {
  // An empty sequence, a single token, and sequences longer than one key chunk (128).
  run_attention(cpu_, *gpu_, rng_, {7, 0, 1, 300, 129}, 4, 2, 64);
}

TEST_F(CudaBackendTest, CausalAttentionOddHeadDim) {
  run_attention(cpu_, *gpu_, rng_, {50, 200}, 3, 3, 48);
}

// --- activations and elementwise ---------------------------------------------------------------

TEST_F(CudaBackendTest, Swiglu) {
  const int64_t m = 17, n = 250;
  const auto gate_up = random_floats(rng_, m * 2 * n, -6.0f, 6.0f);
  std::vector<float> out(m * n);
  DeviceArray<float> gu_dev(*gpu_, gate_up);
  DeviceArray<float> out_dev(*gpu_, out);
  cpu_.swiglu(gate_up.data(), gate_up.data() + n, 2 * n, out.data(), m, n);
  gpu_->swiglu(gu_dev.get(), gu_dev.get() + n, 2 * n, out_dev.get(), m, n);
  expect_close(out, out_dev.to_host(), 1e-6, 1e-5, "swiglu, one [m, 2n] buffer");
  // Gate and up in separate [m, n] halves (experts used in place in a mapped checkpoint).
  cpu_.swiglu(gate_up.data(), gate_up.data() + m * n, n, out.data(), m, n);
  gpu_->swiglu(gu_dev.get(), gu_dev.get() + m * n, n, out_dev.get(), m, n);
  expect_close(out, out_dev.to_host(), 1e-6, 1e-5, "swiglu, separate gate and up");
}

TEST_F(CudaBackendTest, Gelu) {
  auto x = random_floats(rng_, 5000, -6.0f, 6.0f);
  DeviceArray<float> x_dev(*gpu_, x);
  cpu_.gelu(x.data(), 5000);
  gpu_->gelu(x_dev.get(), 5000);
  expect_close(x, x_dev.to_host(), 1e-6, 1e-5, "gelu");
}

TEST_F(CudaBackendTest, ScaleRowsSigmoid) {
  const int64_t m = 40, d = 130;
  auto y = random_floats(rng_, m * d);
  const auto logit = random_floats(rng_, m, -8.0f, 8.0f);
  DeviceArray<float> y_dev(*gpu_, y);
  DeviceArray<float> logit_dev(*gpu_, logit);
  cpu_.scale_rows_sigmoid(y.data(), logit.data(), m, d);
  gpu_->scale_rows_sigmoid(y_dev.get(), logit_dev.get(), m, d);
  expect_close(y, y_dev.to_host(), 1e-6, 1e-5, "scale_rows_sigmoid");
}

// --- routing and token movement ----------------------------------------------------------------

TEST_F(CudaBackendTest, SoftmaxTopk) {
  const int64_t m = 100, e = 64, k = 6;
  auto logits = random_floats(rng_, m * e, -4.0f, 4.0f);
  // Ties break by the lower id: a row of equal logits picks 0..k-1; a row with a tied pair.
  std::fill(logits.begin(), logits.begin() + e, 0.25f);
  logits[e + 10] = logits[e + 3] = 9.0f;
  DeviceArray<float> logits_dev(*gpu_, logits);
  for (const bool renormalize : {false, true}) {
    std::vector<int32_t> ids(m * k, -7);
    std::vector<float> weights(m * k, 0.0f);
    DeviceArray<int32_t> ids_dev(*gpu_, ids);
    DeviceArray<float> weights_dev(*gpu_, weights);
    cpu_.softmax_topk(logits.data(), m, e, k, renormalize, ids.data(), weights.data());
    gpu_->softmax_topk(logits_dev.get(), m, e, k, renormalize, ids_dev.get(), weights_dev.get());
    const std::string what = renormalize ? "softmax_topk renormalised" : "softmax_topk";
    EXPECT_EQ(ids, ids_dev.to_host()) << what << ": expert ids differ";
    expect_close(weights, weights_dev.to_host(), 1e-6, 1e-5, what);
  }
}

TEST_F(CudaBackendTest, GatherRows) {
  const int64_t src_rows = 40, d = 70, m = 55;
  const auto x = random_floats(rng_, src_rows * d);
  const auto rows = random_ints(rng_, m, 0, src_rows - 1);
  std::vector<float> out(m * d);
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<int32_t> rows_dev(*gpu_, rows);
  DeviceArray<float> out_dev(*gpu_, out);
  cpu_.gather_rows(x.data(), rows.data(), m, d, out.data());
  gpu_->gather_rows(x_dev.get(), rows_dev.get(), m, d, out_dev.get());
  expect_close(out, out_dev.to_host(), 0.0, 0.0, "gather_rows");
}

TEST_F(CudaBackendTest, ScatterAddRowsWithRepeats) {
  // 150 rows onto 40 destinations: every destination repeats; m is not a multiple of the batch.
  const int64_t dst_rows = 40, d = 300, m = 151;
  const auto x = random_floats(rng_, m * d);
  const auto rows = random_ints(rng_, m, 0, dst_rows - 1);
  const auto scale = random_floats(rng_, m, 0.0f, 1.0f);
  auto out = random_floats(rng_, dst_rows * d);
  DeviceArray<float> x_dev(*gpu_, x);
  DeviceArray<int32_t> rows_dev(*gpu_, rows);
  DeviceArray<float> scale_dev(*gpu_, scale);
  DeviceArray<float> out_dev(*gpu_, out);
  cpu_.scatter_add_rows(x.data(), rows.data(), scale.data(), m, d, out.data());
  gpu_->scatter_add_rows(x_dev.get(), rows_dev.get(), scale_dev.get(), m, d, out_dev.get());
  // Same order of additions; only fused multiply-adds may differ.
  expect_close(out, out_dev.to_host(), 1e-6, 1e-6, "scatter_add_rows");
}

// --- LM head -----------------------------------------------------------------------------------

// raw_h as run_linear's raw_x.
void run_lm_head(CpuBackend& cpu, CudaBackend& gpu, std::mt19937& rng, DType dtype, bool raw_h = false) {
  // Two row tiles (256 + 44), two vocabulary tiles (4096 + 904), a slice starting at 1000 and
  // targets on both sides of it; rows strided (stride > d).
  const int64_t m = 300, d = 64, stride = 67, vocab = 5000, vocab_begin = 1000;
  auto h = random_floats(rng, m * d, -2.0f, 2.0f);
  if (dtype == DType::bf16 && !raw_h) h = bf16_valued(h);
  const auto h_cpu = dtype == DType::bf16 ? bf16_valued(h) : h;
  const auto head_f32 = random_floats(rng, vocab * stride);
  const auto head_bf16 = to_bf16(head_f32);
  const auto targets = random_ints(rng, m, 0, 7000);
  const void* head_host = dtype == DType::f32 ? static_cast<const void*>(head_f32.data()) : head_bf16.data();
  std::vector<double> lse_cpu(m);
  std::vector<float> target_cpu(m);
  std::vector<float> scratch_cpu(cpu.lm_head_scratch_bytes() / sizeof(float));
  cpu.lm_head_logsumexp(h_cpu.data(), m, view(head_host, dtype, vocab, d, stride), vocab_begin, targets.data(),
                        lse_cpu.data(), target_cpu.data(), scratch_cpu.data());

  DeviceArray<float> h_dev(gpu, h);
  DeviceArray<float> hf_dev(gpu, head_f32);
  DeviceArray<uint16_t> hb_dev(gpu, head_bf16);
  DeviceArray<int32_t> targets_dev(gpu, targets);
  DeviceArray<double> lse_dev(gpu, std::vector<double>(m, 0.0));
  DeviceArray<float> target_dev(gpu, std::vector<float>(m, 0.0f));
  DeviceBuffer scratch = gpu.alloc(gpu.lm_head_scratch_bytes());
  const void* head_dev = dtype == DType::f32 ? static_cast<const void*>(hf_dev.get()) : hb_dev.get();
  gpu.lm_head_logsumexp(h_dev.get(), m, view(head_dev, dtype, vocab, d, stride), vocab_begin, targets_dev.get(),
                        lse_dev.get(), target_dev.get(), scratch.data());
  const std::string what = std::string("lm_head_logsumexp ") + std::string(dtype_name(dtype));
  expect_close(lse_cpu, lse_dev.to_host(), 1e-4, 1e-5, what + " lse");
  expect_close(target_cpu, target_dev.to_host(), 1e-4, 1e-5, what + " target logit");  // -inf outside the slice
}

TEST_F(CudaBackendTest, LmHeadF32) {
  run_lm_head(cpu_, *gpu_, rng_, DType::f32);
}

TEST_F(CudaBackendTest, LmHeadBf16) {
  run_lm_head(cpu_, *gpu_, rng_, DType::bf16);
}

TEST_F(CudaBackendTest, LmHeadBf16RoundsActivations) {
  run_lm_head(cpu_, *gpu_, rng_, DType::bf16, true);
}

}  // namespace
}  // namespace moe
