// Every op of moe::CpuBackend against the float64 reference kernels (tests/reference/), on fresh
// random inputs of odd sizes. The seed comes from std::random_device and is printed with every
// failure (SCOPED_TRACE). Buffers go through backend.alloc / copy_to_device / copy_to_host as the
// real callers do, and outputs start as NaN (or random values where the op reads them), so an op
// that skips an element or reads what it should not is caught.
//
// Tolerances are fp32 ones: for a dot product the error bound scales with sum |x_i w_i| (computed
// in float64 as the reference of |x| . |w|^T), elsewhere relative ~1e-5 with a small absolute
// floor for results that cancel to ~0.
#include "backend/cpu/cpu_backend.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "backend/cpu/row_invariant_gemm.hpp"
#include "core/dtype.hpp"
#include "reference_kernels.hpp"

namespace moe::test {
namespace {

using ref::CSpan;
using ref::Vec;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kRtol = 1e-5;

Vec to_double(std::span<const float> x) {
  return Vec(x.begin(), x.end());
}

Vec abs_of(const Vec& x) {
  Vec a(x.size());
  std::transform(x.begin(), x.end(), a.begin(), [](double v) { return std::abs(v); });
  return a;
}

// bf16-rounded copy of w (what a bf16 weight holds, as float).
std::vector<float> bf16_rounded(const std::vector<float>& w) {
  std::vector<float> r(w.size());
  std::transform(w.begin(), w.end(), r.begin(), [](float v) { return bf16_to_float(float_to_bf16(v)); });
  return r;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& w) {
  std::vector<uint16_t> r(w.size());
  std::transform(w.begin(), w.end(), r.begin(), [](float v) { return float_to_bf16(v); });
  return r;
}

// |got[i] - want[i]| <= rtol * scale[i] + atol for every i (scale defaults to |want|).
void expect_close(std::span<const float> got, const Vec& want, double rtol, double atol, const std::string& what,
                  const Vec* scale = nullptr) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double s = scale ? (*scale)[i] : std::abs(want[i]);
    const double tol = rtol * s + atol;
    if (!(std::abs(static_cast<double>(got[i]) - want[i]) <= tol)) {
      if (++bad <= 5) {
        ADD_FAILURE() << what << ": index " << i << " got " << got[i] << " want " << want[i] << " (tol " << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": elements out of tolerance";
}

class CpuBackendTest : public testing::Test {
 protected:
  void SetUp() override {
    seed_ = std::random_device{}();
    rng_.seed(seed_);
  }
  void TearDown() override {
    // Every test frees its buffers before TearDown (they are locals of the test body).
    EXPECT_EQ(backend_.bytes_in_use(), 0u) << "a buffer leaked";
  }

  std::string seed_trace() const { return "seed = " + std::to_string(seed_); }

  std::vector<float> random(std::size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng_);
    return v;
  }
  int64_t random_int(int64_t lo, int64_t hi) {  // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  std::vector<int32_t> random_ids(std::size_t n, int32_t lo, int32_t hi) {
    std::vector<int32_t> v(n);
    for (auto& x : v) x = static_cast<int32_t>(random_int(lo, hi));
    return v;
  }

  template <typename T>
  DeviceBuffer upload(const std::vector<T>& host) {
    DeviceBuffer b = backend_.alloc(host.size() * sizeof(T));
    backend_.copy_to_device(b.data(), host.data(), host.size() * sizeof(T));
    return b;
  }
  template <typename T>
  std::vector<T> download(const DeviceBuffer& b, std::size_t count) {
    std::vector<T> host(count);
    backend_.copy_to_host(host.data(), b.data(), count * sizeof(T));
    return host;
  }

  CpuBackend backend_;
  unsigned seed_ = 0;
  std::mt19937_64 rng_;
};

// --- memory --------------------------------------------------------------------------------------

TEST_F(CpuBackendTest, BytesInUseAndPeakTrackAllocations) {
  const std::size_t before = backend_.bytes_in_use();
  const std::size_t peak_before = backend_.peak_bytes();
  {
    DeviceBuffer a = backend_.alloc(1000);
    DeviceBuffer b = backend_.alloc(3001);
    EXPECT_EQ(a.bytes(), 1000u);
    EXPECT_EQ(backend_.bytes_in_use(), before + 4001);
    EXPECT_EQ(backend_.peak_bytes(), std::max(peak_before, before + 4001));
    a.reset();
    EXPECT_EQ(backend_.bytes_in_use(), before + 3001);
    EXPECT_EQ(backend_.peak_bytes(), std::max(peak_before, before + 4001)) << "peak must not drop on free";
    // A move transfers ownership without counting twice.
    DeviceBuffer c = std::move(b);
    EXPECT_EQ(b.data(), nullptr);
    EXPECT_EQ(backend_.bytes_in_use(), before + 3001);
    DeviceBuffer d = backend_.alloc(500);
    EXPECT_EQ(backend_.bytes_in_use(), before + 3501);
    EXPECT_EQ(backend_.peak_bytes(), std::max(peak_before, before + 4001));
    DeviceBuffer e = backend_.alloc(2000);
    EXPECT_EQ(backend_.peak_bytes(), before + 5501);
    backend_.reset_peak();
    EXPECT_EQ(backend_.peak_bytes(), before + 5501);
    e.reset();
    backend_.reset_peak();
    EXPECT_EQ(backend_.peak_bytes(), before + 3501);
    DeviceBuffer empty = backend_.alloc(0);
    EXPECT_EQ(empty.bytes(), 0u);
    EXPECT_EQ(backend_.bytes_in_use(), before + 3501);
  }
  EXPECT_EQ(backend_.bytes_in_use(), before);
  EXPECT_EQ(backend_.peak_bytes(), before + 3501);
}

TEST_F(CpuBackendTest, CopiesRoundTrip) {
  SCOPED_TRACE(seed_trace());
  const auto host = random(97);
  DeviceBuffer a = upload(host);
  DeviceBuffer b = backend_.alloc(host.size() * sizeof(float));
  backend_.copy(b.data(), a.data(), host.size() * sizeof(float));
  backend_.synchronize();
  EXPECT_EQ(download<float>(b, host.size()), host);
}

// --- dense algebra -------------------------------------------------------------------------------

struct LinearCase {
  DType dtype;
  float beta;
  bool strided;
};

class CpuLinearTest : public CpuBackendTest, public testing::WithParamInterface<LinearCase> {};

TEST_P(CpuLinearTest, MatchesReference) {
  SCOPED_TRACE(seed_trace());
  const LinearCase p = GetParam();
  const int64_t m = 37, in = 53, out = 29;
  // A strided view addresses columns [col0, col0 + in) of a wider [out, stride] matrix.
  const int64_t stride = p.strided ? 64 : in;
  const int64_t col0 = p.strided ? 7 : 0;
  const auto x = random(static_cast<std::size_t>(m * in));
  const auto full = random(static_cast<std::size_t>(out * stride));
  const auto y0 = random(static_cast<std::size_t>(m * out));

  // The weights the op sees (bf16-rounded for bf16), as a dense [out, in] matrix for the reference.
  const std::vector<float> seen = p.dtype == DType::bf16 ? bf16_rounded(full) : full;
  Vec w(static_cast<std::size_t>(out * in));
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) w[r * in + c] = seen[r * stride + col0 + c];
  }

  DeviceBuffer dx = upload(x);
  DeviceBuffer dw = p.dtype == DType::bf16 ? upload(to_bf16(full)) : upload(full);
  // With beta = 0 the output is not read: NaN there must not leak into the result.
  DeviceBuffer dy = upload(p.beta == 0.0f ? std::vector<float>(y0.size(), kNaN) : y0);
  WeightView view{static_cast<const char*>(dw.data()) + col0 * static_cast<int64_t>(dtype_size(p.dtype)), p.dtype, out,
                  in, stride};
  backend_.linear(dx.as<float>(), m, view, dy.as<float>(), p.beta);

  // bf16 weights: the activations are rounded to bf16 at the GEMM input too.
  const std::vector<float> xs = p.dtype == DType::bf16 ? bf16_rounded(x) : x;
  Vec want = ref::linear(to_double(xs), w, out, in);
  Vec scale = ref::linear(abs_of(to_double(xs)), abs_of(w), out, in);
  if (p.beta != 0.0f) {
    for (std::size_t i = 0; i < want.size(); ++i) {
      want[i] += p.beta * y0[i];
      scale[i] += std::abs(p.beta * y0[i]);
    }
  }
  expect_close(download<float>(dy, y0.size()), want, kRtol, 0.0, "linear", &scale);
}

INSTANTIATE_TEST_SUITE_P(Cases, CpuLinearTest,
                         testing::Values(LinearCase{DType::f32, 0.0f, false}, LinearCase{DType::f32, 1.0f, false},
                                         LinearCase{DType::f32, 0.0f, true}, LinearCase{DType::f32, 1.0f, true},
                                         LinearCase{DType::bf16, 0.0f, false}, LinearCase{DType::bf16, 1.0f, false},
                                         LinearCase{DType::bf16, 0.0f, true}, LinearCase{DType::bf16, 1.0f, true}),
                         [](const testing::TestParamInfo<LinearCase>& info) {
                           return std::string(dtype_name(info.param.dtype)) + "_beta" +
                                  std::to_string(static_cast<int>(info.param.beta)) +
                                  (info.param.strided ? "_strided" : "_dense");
                         });

// bf16 GEMMs go through in chunks of rows (512, the last padded to a multiple of 32) and, in
// the fallback, panels of widened weight rows: a product larger than one of each checks that
// every block lands in its own rows and columns of y, and beta applies to each.
TEST_F(CpuBackendTest, LinearBf16AcrossSeveralBlocks) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 545, in = 1024, out = 1100;
  const auto x = random(static_cast<std::size_t>(m * in));
  const auto full = random(static_cast<std::size_t>(out * in));
  const auto y0 = random(static_cast<std::size_t>(m * out));
  const Vec w = to_double(bf16_rounded(full));
  DeviceBuffer dx = upload(x);
  DeviceBuffer dw = upload(to_bf16(full));
  for (const float beta : {0.0f, 1.0f}) {
    SCOPED_TRACE("beta = " + std::to_string(beta));
    DeviceBuffer dy = upload(beta == 0.0f ? std::vector<float>(y0.size(), kNaN) : y0);
    backend_.linear(dx.as<float>(), m, WeightView{dw.data(), DType::bf16, out, in, in}, dy.as<float>(), beta);
    const Vec xs = to_double(bf16_rounded(x));  // the activations are rounded at the GEMM input
    Vec want = ref::linear(xs, w, out, in);
    Vec scale = ref::linear(abs_of(xs), abs_of(w), out, in);
    for (std::size_t i = 0; i < want.size(); ++i) {
      want[i] += beta * y0[i];
      scale[i] += std::abs(beta * y0[i]);
    }
    expect_close(download<float>(dy, y0.size()), want, kRtol, 0.0, "linear bf16 panels", &scale);
  }
}

// The row-invariant bf16 kernel is what CPUs without a oneDNN bf16 kernel run (AVX2-only ones);
// called directly so that every CPU checks it, AVX2 and plain code both, on two OpenMP threads,
// with k past one block of 256 (700: two blocks and a tail), output columns past a multiple of 16
// and rows past a multiple of 6 (edge tiles), strided weights, beta 0 and 1.
TEST_F(CpuBackendTest, RowInvariantBf16MatchesTheReference) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 77, in = 700, out = 1100, stride = 1031;
  const auto x = random(static_cast<std::size_t>(m * in));
  const auto full = random(static_cast<std::size_t>(out * stride));
  const auto y0 = random(static_cast<std::size_t>(m * out));
  const std::vector<uint16_t> wb = to_bf16(full);
  Vec w(static_cast<std::size_t>(out * in));
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) w[r * in + c] = bf16_to_float(wb[r * stride + c]);
  const Vec xs = to_double(bf16_rounded(x));
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(2);
  for (const bool generic : {false, true})
    for (const float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(std::string(generic ? "generic" : cpu::row_invariant_gemm_isa()) + ", beta " + std::to_string(beta));
      std::vector<float> y = beta == 0.0f ? std::vector<float>(y0.size(), kNaN) : y0;
      cpu::gemm_bf16_row_invariant(x.data(), m, WeightView{wb.data(), DType::bf16, out, in, stride}, y.data(), beta,
                                   generic);
      Vec want = ref::linear(xs, w, out, in);
      Vec scale = ref::linear(abs_of(xs), abs_of(w), out, in);
      for (std::size_t i = 0; i < want.size(); ++i) {
        want[i] += beta * y0[i];
        scale[i] += std::abs(beta * y0[i]);
      }
      expect_close(y, want, kRtol, 0.0, "row-invariant bf16", &scale);
    }
  omp_set_num_threads(threads_before);
}

// What the kernel is for: a row's output has the same bits whether it is computed alone, among
// other rows at any place (a different place inside a tile of 6, an edge tile or not), in another
// order, or on another number of threads. (OpenBLAS's sgemm fails this: its tiles of 12 rows and
// their edges give a row other last bits.) beta 1 too, which continues each sum from y.
TEST_F(CpuBackendTest, RowInvariantBf16GivesARowTheSameBitsWhereverItIs) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 53, in = 600, out = 300;
  const auto x = random(static_cast<std::size_t>(m * in));
  const std::vector<uint16_t> wb = to_bf16(random(static_cast<std::size_t>(out * in)));
  const auto y0 = random(static_cast<std::size_t>(m * out));
  const WeightView view{wb.data(), DType::bf16, out, in, in};
  const int threads_before = omp_get_max_threads();
  const auto row = [&](const std::vector<float>& v, int64_t i) {
    return std::vector<float>(v.begin() + i * out, v.begin() + (i + 1) * out);
  };
  std::vector<float> first_kernel;  // the AVX2 kernel's answer (when present), per beta
  for (const bool generic : {false, true}) {
    for (const float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(std::string(generic ? "generic" : cpu::row_invariant_gemm_isa()) + ", beta " + std::to_string(beta));
      omp_set_num_threads(2);
      std::vector<float> all = y0;
      cpu::gemm_bf16_row_invariant(x.data(), m, view, all.data(), beta, generic);
      // bf16 x bf16 products are exact in fp32, so fused or not, both kernels' chains agree too.
      if (!generic) first_kernel.insert(first_kernel.end(), all.begin(), all.end());
      if (generic) {
        ASSERT_TRUE(std::equal(all.begin(), all.end(), first_kernel.begin() + (beta == 0.0f ? 0 : m * out)))
            << "the generic kernel differs from " << cpu::row_invariant_gemm_isa();
      }
      omp_set_num_threads(1);
      // Each row alone, one thread.
      for (int64_t i = 0; i < m; ++i) {
        std::vector<float> one = row(y0, i);
        cpu::gemm_bf16_row_invariant(x.data() + i * in, 1, view, one.data(), beta, generic);
        ASSERT_EQ(one, row(all, i)) << "row " << i << " alone";
      }
      // Rows 5..21 in reverse order (each lands at another place among 17 rows), two threads.
      omp_set_num_threads(2);
      const int64_t first = 5, count = 17;
      std::vector<float> xs, ys;
      for (int64_t i = first + count - 1; i >= first; --i) {
        xs.insert(xs.end(), x.begin() + i * in, x.begin() + (i + 1) * in);
        const std::vector<float> r = row(y0, i);
        ys.insert(ys.end(), r.begin(), r.end());
      }
      cpu::gemm_bf16_row_invariant(xs.data(), count, view, ys.data(), beta, generic);
      for (int64_t j = 0; j < count; ++j)
        ASSERT_EQ(row(ys, j), row(all, first + count - 1 - j)) << "row " << first + count - 1 - j << " reordered";
    }
  }
  omp_set_num_threads(threads_before);
}

// f32 GEMMs through oneDNN go in chunks of 512 rows; a shorter remainder runs its multiple of 32
// rows in place and the rest through a copy padded to a multiple of 8. Row counts that hit each
// case (tail only, in place only, chunk + in place + tail, two chunks + tail), strided weights,
// beta 0 and 1: every block lands in its own rows of y.
TEST_F(CpuBackendTest, LinearF32AcrossRowBlocks) {
  SCOPED_TRACE(seed_trace());
  const int64_t in = 300, out = 131, stride = 307;
  const auto full = random(static_cast<std::size_t>(out * stride));
  Vec w(static_cast<std::size_t>(out * in));
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) w[r * in + c] = full[r * stride + c];
  DeviceBuffer dw = upload(full);
  for (const int64_t m : {int64_t{7}, int64_t{64}, int64_t{545}, int64_t{1100}}) {
    const auto x = random(static_cast<std::size_t>(m * in));
    const auto y0 = random(static_cast<std::size_t>(m * out));
    DeviceBuffer dx = upload(x);
    for (const float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE("m = " + std::to_string(m) + ", beta = " + std::to_string(beta));
      DeviceBuffer dy = upload(beta == 0.0f ? std::vector<float>(y0.size(), kNaN) : y0);
      backend_.linear(dx.as<float>(), m, WeightView{dw.data(), DType::f32, out, in, stride}, dy.as<float>(), beta);
      Vec want = ref::linear(to_double(x), w, out, in);
      Vec scale = ref::linear(abs_of(to_double(x)), abs_of(w), out, in);
      for (std::size_t i = 0; i < want.size(); ++i) {
        want[i] += beta * y0[i];
        scale[i] += std::abs(beta * y0[i]);
      }
      expect_close(download<float>(dy, y0.size()), want, kRtol, 0.0, "linear f32 blocks", &scale);
    }
  }
}

// The sizing pass packs bf16 weights into oneDNN's layout (once); later products read the packed
// copy, and freeing the buffer drops it, so new weights at the same address are not mistaken for
// the old ones.
TEST_F(CpuBackendTest, LinearBf16WithWeightsPackedBySizingPass) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 70, in = 96, out = 64;
  const auto x = random(static_cast<std::size_t>(m * in));
  const Vec xs = to_double(bf16_rounded(x));
  DeviceBuffer dx = upload(x);
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const auto full = random(static_cast<std::size_t>(out * in));
    DeviceBuffer dw = upload(to_bf16(full));
    DeviceBuffer dy = upload(std::vector<float>(static_cast<std::size_t>(m * out), kNaN));
    const WeightView view{dw.data(), DType::bf16, out, in, in};
    if (round == 0) {  // only the first weights are packed; the second reuse the freed address
      backend_.set_sizing_pass(true);
      backend_.linear(dx.as<float>(), m, view, dy.as<float>(), 0.0f);
      backend_.set_sizing_pass(false);
    }
    backend_.linear(dx.as<float>(), m, view, dy.as<float>(), 0.0f);
    const Vec w = to_double(bf16_rounded(full));
    const Vec scale = ref::linear(abs_of(xs), abs_of(w), out, in);
    expect_close(download<float>(dy, static_cast<std::size_t>(m * out)), ref::linear(xs, w, out, in), kRtol, 0.0,
                 "linear bf16 packed", &scale);
  }
}

TEST_F(CpuBackendTest, GroupedLinearSkipsEmptyGroups) {
  SCOPED_TRACE(seed_trace());
  const int64_t in = 53, out = 31;
  // Groups 0 and 3 and the last are empty; the rest have odd sizes, one of them a single row.
  const std::vector<int64_t> sizes = {0, 11, 1, 0, 23, 0};
  std::vector<int64_t> offsets = {0};
  for (int64_t s : sizes) offsets.push_back(offsets.back() + s);
  const int64_t num_groups = static_cast<int64_t>(sizes.size());
  const int64_t m = offsets.back();
  const int64_t sentinel_rows = 3;  // rows past the last group must stay untouched

  const auto x = random(static_cast<std::size_t>(m * in));
  std::vector<std::vector<float>> w_host;
  std::vector<DeviceBuffer> w_dev;
  std::vector<WeightView> views;
  for (int64_t g = 0; g < num_groups; ++g) {
    w_host.push_back(random(static_cast<std::size_t>(out * in)));
    // Alternate dtypes: a layer's experts share one, but the op takes a view per group.
    const DType dt = g % 2 == 0 ? DType::f32 : DType::bf16;
    if (dt == DType::bf16) {
      w_dev.push_back(upload(to_bf16(w_host.back())));
      w_host.back() = bf16_rounded(w_host.back());
    } else {
      w_dev.push_back(upload(w_host.back()));
    }
    views.push_back(WeightView{w_dev.back().data(), dt, out, in, in});
  }
  const auto sentinel = random(static_cast<std::size_t>(sentinel_rows * out));
  std::vector<float> y_init(static_cast<std::size_t>(m * out), kNaN);
  y_init.insert(y_init.end(), sentinel.begin(), sentinel.end());

  // On 1, 2 and 3 threads: with more than one, each thread takes an equal share of the 35 rows and
  // cuts the groups where a share ends (group 4 at row 17 on 2 threads, groups 1 and 4 on 3).
  DeviceBuffer dx = upload(x);
  const int threads_before = omp_get_max_threads();
  for (const int threads : {1, 2, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    omp_set_num_threads(threads);
    DeviceBuffer dy = upload(y_init);
    backend_.grouped_linear(dx.as<float>(), offsets.data(), num_groups, views.data(), dy.as<float>());
    const auto y = download<float>(dy, y_init.size());

    for (int64_t g = 0; g < num_groups; ++g) {
      if (sizes[g] == 0) continue;
      // A bf16 group's rows are rounded to bf16 at its GEMM input.
      const Vec xd = to_double(views[g].dtype == DType::bf16 ? bf16_rounded(x) : x);
      SCOPED_TRACE("group " + std::to_string(g));
      const auto rows = std::span<const double>(xd).subspan(static_cast<std::size_t>(offsets[g] * in),
                                                            static_cast<std::size_t>(sizes[g] * in));
      const Vec w = to_double(w_host[g]);
      const Vec want = ref::linear(rows, w, out, in);
      const Vec scale = ref::linear(abs_of(Vec(rows.begin(), rows.end())), abs_of(w), out, in);
      expect_close(std::span<const float>(y).subspan(static_cast<std::size_t>(offsets[g] * out), want.size()), want,
                   kRtol, 0.0, "grouped_linear", &scale);
    }
    for (int64_t i = 0; i < sentinel_rows * out; ++i) {
      EXPECT_EQ(y[static_cast<std::size_t>(m * out + i)], sentinel[static_cast<std::size_t>(i)])
          << "grouped_linear wrote past the last group at " << i;
    }
  }
  omp_set_num_threads(threads_before);
}

TEST_F(CpuBackendTest, AddBiasAndAdd) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 37, n = 53;
  const auto y0 = random(static_cast<std::size_t>(m * n));
  const auto bias = random(static_cast<std::size_t>(n));
  const auto x = random(static_cast<std::size_t>(m * n));
  DeviceBuffer dy = upload(y0);
  DeviceBuffer db = upload(bias);
  DeviceBuffer dx = upload(x);

  backend_.add_bias(dy.as<float>(), db.as<float>(), m, n);
  Vec want(y0.size());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) want[i * n + j] = static_cast<double>(y0[i * n + j]) + bias[j];
  }
  expect_close(download<float>(dy, y0.size()), want, 1e-6, 0.0, "add_bias");

  const auto y1 = download<float>(dy, y0.size());
  backend_.add(dy.as<float>(), dx.as<float>(), m * n);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] = static_cast<double>(y1[i]) + x[i];
  expect_close(download<float>(dy, y0.size()), want, 1e-6, 0.0, "add");
}

// --- normalisation and position ------------------------------------------------------------------

TEST_F(CpuBackendTest, RmsNormOutOfPlaceAndInPlace) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 37, d = 53;
  const float eps = 1e-5f;
  const auto x = random(static_cast<std::size_t>(m * d), -2.0f, 2.0f);
  const auto w = random(static_cast<std::size_t>(d), 0.5f, 1.5f);
  const Vec want = ref::rms_norm(to_double(x), to_double(w), eps);
  DeviceBuffer dx = upload(x);
  DeviceBuffer dw = upload(w);
  DeviceBuffer dy = upload(std::vector<float>(x.size(), kNaN));
  backend_.rms_norm(dx.as<float>(), dw.as<float>(), dy.as<float>(), m, d, eps);
  expect_close(download<float>(dy, x.size()), want, kRtol, 1e-6, "rms_norm");
  backend_.rms_norm(dx.as<float>(), dw.as<float>(), dx.as<float>(), m, d, eps);
  expect_close(download<float>(dx, x.size()), want, kRtol, 1e-6, "rms_norm in place");
}

// A row split in three column slices, as tp ranks hold it: each slice's sums of squares, summed,
// then each slice scaled with the full row's count, gives the whole row's RMSNorm.
TEST_F(CpuBackendTest, RmsNormOfSlicedRowsEqualsWholeRows) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 23, d = 60;
  const float eps = 1e-5f;
  const auto x = random(static_cast<std::size_t>(m * d), -2.0f, 2.0f);
  const auto w = random(static_cast<std::size_t>(d), 0.5f, 1.5f);
  const Vec want = ref::rms_norm(to_double(x), to_double(w), eps);
  const int64_t cuts[] = {0, 17, 41, d};
  std::vector<std::vector<float>> slices(3), weights(3);
  std::vector<double> total(static_cast<std::size_t>(m), 0.0);
  for (int s = 0; s < 3; ++s) {
    const int64_t w_s = cuts[s + 1] - cuts[s];
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = cuts[s]; j < cuts[s + 1]; ++j) slices[s].push_back(x[i * d + j]);
    weights[s].assign(w.begin() + cuts[s], w.begin() + cuts[s + 1]);
    DeviceBuffer dx = upload(slices[s]);
    DeviceBuffer dss = backend_.alloc(static_cast<std::size_t>(m) * sizeof(double));
    backend_.row_sum_squares(dx.as<float>(), m, w_s, dss.as<double>());
    const auto ss = download<double>(dss, static_cast<std::size_t>(m));
    for (int64_t i = 0; i < m; ++i) total[i] += ss[i];
  }
  for (int s = 0; s < 3; ++s) {
    const int64_t w_s = cuts[s + 1] - cuts[s];
    DeviceBuffer dx = upload(slices[s]);
    DeviceBuffer dw = upload(weights[s]);
    DeviceBuffer dss = upload(total);
    backend_.rms_norm_scaled(dx.as<float>(), dw.as<float>(), dss.as<double>(), static_cast<double>(d), dx.as<float>(),
                             m, w_s, eps);  // in place
    const auto got = download<float>(dx, slices[s].size());
    Vec want_s;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = cuts[s]; j < cuts[s + 1]; ++j) want_s.push_back(want[i * d + j]);
    expect_close(got, want_s, kRtol, 1e-6, "sliced rms_norm, slice " + std::to_string(s));
  }
}

TEST_F(CpuBackendTest, LayerNormOutOfPlaceAndInPlace) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 37, d = 53;
  const float eps = 1e-5f;
  // A non-zero mean, so a missing mean subtraction shows.
  const auto x = random(static_cast<std::size_t>(m * d), -1.0f, 3.0f);
  const auto w = random(static_cast<std::size_t>(d), 0.5f, 1.5f);
  const auto b = random(static_cast<std::size_t>(d));
  const Vec want = ref::layer_norm(to_double(x), to_double(w), to_double(b), eps);
  DeviceBuffer dx = upload(x);
  DeviceBuffer dw = upload(w);
  DeviceBuffer db = upload(b);
  DeviceBuffer dy = upload(std::vector<float>(x.size(), kNaN));
  backend_.layer_norm(dx.as<float>(), dw.as<float>(), db.as<float>(), dy.as<float>(), m, d, eps);
  expect_close(download<float>(dy, x.size()), want, kRtol, 1e-6, "layer_norm");
  backend_.layer_norm(dx.as<float>(), dw.as<float>(), db.as<float>(), dx.as<float>(), m, d, eps);
  expect_close(download<float>(dx, x.size()), want, kRtol, 1e-6, "layer_norm in place");
}

TEST_F(CpuBackendTest, RopeLongPositionsLargeTheta) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 37, heads = 3, head_dim = 14;
  const double theta = 1e6;
  const auto x = random(static_cast<std::size_t>(m * heads * head_dim));
  std::vector<int32_t> pos = random_ids(static_cast<std::size_t>(m), 0, 200);
  pos[0] = 0;
  pos[1] = 200;
  pos[2] = 1;
  const std::vector<int64_t> pos64(pos.begin(), pos.end());
  const Vec want = ref::rope(to_double(x), pos64, heads, head_dim, theta);
  DeviceBuffer dx = upload(x);
  DeviceBuffer dp = upload(pos);
  backend_.rope(dx.as<float>(), dp.as<int32_t>(), m, heads, head_dim, static_cast<float>(theta));
  expect_close(download<float>(dx, x.size()), want, kRtol, 1e-6, "rope");
}

struct EmbedCase {
  DType dtype;
  bool accumulate;
  int64_t vocab_begin;  // > 0: the table is a vocabulary slice and some ids fall outside it
};

class CpuEmbedTest : public CpuBackendTest, public testing::WithParamInterface<EmbedCase> {};

TEST_P(CpuEmbedTest, MatchesTableRows) {
  SCOPED_TRACE(seed_trace());
  const EmbedCase p = GetParam();
  const int64_t vocab = 41, d = 53, stride = 60, m = 37;
  const auto table = random(static_cast<std::size_t>(vocab * stride));
  const std::vector<float> seen = p.dtype == DType::bf16 ? bf16_rounded(table) : table;
  // Ids span the slice and beyond it on both sides when the table is a slice.
  const auto hi = static_cast<int32_t>(p.vocab_begin > 0 ? p.vocab_begin + vocab + 9 : vocab - 1);
  const auto ids = random_ids(static_cast<std::size_t>(m), 0, hi);
  const auto out0 = random(static_cast<std::size_t>(m * d));
  DeviceBuffer dt = p.dtype == DType::bf16 ? upload(to_bf16(table)) : upload(table);
  DeviceBuffer di = upload(ids);
  DeviceBuffer dout = upload(p.accumulate ? out0 : std::vector<float>(out0.size(), kNaN));
  backend_.embed(di.as<int32_t>(), m, WeightView{dt.data(), p.dtype, vocab, d, stride}, p.vocab_begin, dout.as<float>(),
                 p.accumulate);
  Vec want(out0.size());
  int64_t outside = 0;
  for (int64_t i = 0; i < m; ++i) {
    const int64_t row = ids[i] - p.vocab_begin;
    const bool held = row >= 0 && row < vocab;
    outside += held ? 0 : 1;
    for (int64_t j = 0; j < d; ++j) {
      want[i * d + j] =
          (held ? static_cast<double>(seen[row * stride + j]) : 0.0) + (p.accumulate ? out0[i * d + j] : 0.0);
    }
  }
  if (p.vocab_begin > 0) {
    EXPECT_GT(outside, 0) << "the slice case must look up ids outside the slice";
  }
  expect_close(download<float>(dout, out0.size()), want, 1e-6, 0.0, "embed");
}

INSTANTIATE_TEST_SUITE_P(Cases, CpuEmbedTest,
                         testing::Values(EmbedCase{DType::f32, false, 0}, EmbedCase{DType::f32, true, 0},
                                         EmbedCase{DType::bf16, false, 0}, EmbedCase{DType::bf16, true, 0},
                                         EmbedCase{DType::f32, false, 17}, EmbedCase{DType::bf16, true, 17}),
                         [](const testing::TestParamInfo<EmbedCase>& info) {
                           return std::string(dtype_name(info.param.dtype)) +
                                  (info.param.accumulate ? "_accumulate" : "_overwrite") +
                                  (info.param.vocab_begin > 0 ? "_slice" : "");
                         });

// --- attention -----------------------------------------------------------------------------------

struct AttentionCase {
  int64_t heads;
  int64_t kv_heads;
};

class CpuAttentionTest : public CpuBackendTest, public testing::WithParamInterface<AttentionCase> {};

TEST_P(CpuAttentionTest, PackedSequencesMatchPerSequenceReference) {
  SCOPED_TRACE(seed_trace());
  const auto [heads, kv_heads] = GetParam();
  const int64_t head_dim = 13;
  // The query heads sharing a kv head are stacked, 128 / group queries of each per product: 150
  // crosses several query tiles for every grouping; 130 query heads of one kv head (more than a
  // product's 128 rows) split into two stacks.
  const std::vector<int64_t> lengths = {5, 1, 17, 2, 30, 1, 9, 150};
  std::vector<int64_t> offsets = {0};
  for (int64_t len : lengths) offsets.push_back(offsets.back() + len);
  const int64_t total = offsets.back();
  const int64_t max_len = *std::max_element(lengths.begin(), lengths.end());
  const int64_t qw = heads * head_dim, kw = kv_heads * head_dim;
  const auto q = random(static_cast<std::size_t>(total * qw), -2.0f, 2.0f);
  const auto k = random(static_cast<std::size_t>(total * kw), -2.0f, 2.0f);
  const auto v = random(static_cast<std::size_t>(total * kw));

  DeviceBuffer dq = upload(q);
  DeviceBuffer dk = upload(k);
  DeviceBuffer dv = upload(v);
  DeviceBuffer doff = upload(offsets);
  DeviceBuffer dout = upload(std::vector<float>(q.size(), kNaN));
  DeviceBuffer scratch = backend_.alloc(backend_.attention_scratch_bytes(max_len));
  backend_.causal_attention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), doff.as<int64_t>(),
                            static_cast<int64_t>(lengths.size()), max_len, heads, kv_heads, head_dim, scratch.data());
  const auto out = download<float>(dout, q.size());

  const Vec qd = to_double(q), kd = to_double(k), vd = to_double(v);
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    SCOPED_TRACE("sequence " + std::to_string(s) + " of length " + std::to_string(lengths[s]));
    const auto b = static_cast<std::size_t>(offsets[s]);
    const auto len = static_cast<std::size_t>(lengths[s]);
    const Vec want = ref::causal_attention(CSpan(qd).subspan(b * qw, len * qw), CSpan(kd).subspan(b * kw, len * kw),
                                           CSpan(vd).subspan(b * kw, len * kw), heads, kv_heads, head_dim);
    expect_close(std::span<const float>(out).subspan(b * qw, len * qw), want, kRtol, 2e-6, "causal_attention");
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, CpuAttentionTest,
                         testing::Values(AttentionCase{4, 2}, AttentionCase{3, 3}, AttentionCase{6, 1},
                                         AttentionCase{130, 1}),
                         [](const testing::TestParamInfo<AttentionCase>& info) {
                           return "heads" + std::to_string(info.param.heads) + "_kv" +
                                  std::to_string(info.param.kv_heads);
                         });

// --- activations and elementwise -----------------------------------------------------------------

TEST_F(CpuBackendTest, SwigluGateFirstThenUp) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 37, n = 29;
  const auto gate_up = random(static_cast<std::size_t>(m * 2 * n), -4.0f, 4.0f);
  DeviceBuffer dgu = upload(gate_up);
  DeviceBuffer dout = upload(std::vector<float>(static_cast<std::size_t>(m * n), kNaN));
  backend_.swiglu(dgu.as<float>(), dgu.as<float>() + n, 2 * n, dout.as<float>(), m, n);
  Vec want(static_cast<std::size_t>(m * n));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      want[i * n + j] = ref::silu(gate_up[i * 2 * n + j]) * static_cast<double>(gate_up[i * 2 * n + n + j]);
    }
  }
  expect_close(download<float>(dout, want.size()), want, kRtol, 1e-6, "swiglu");
}

TEST_F(CpuBackendTest, SwigluGateAndUpInSeparateBuffers) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 23, n = 41;
  const auto gate = random(static_cast<std::size_t>(m * n), -4.0f, 4.0f);
  const auto up = random(static_cast<std::size_t>(m * n), -4.0f, 4.0f);
  DeviceBuffer dgate = upload(gate), dup = upload(up);
  DeviceBuffer dout = upload(std::vector<float>(static_cast<std::size_t>(m * n), kNaN));
  backend_.swiglu(dgate.as<float>(), dup.as<float>(), n, dout.as<float>(), m, n);
  Vec want(static_cast<std::size_t>(m * n));
  for (int64_t i = 0; i < m * n; ++i) want[i] = ref::silu(gate[i]) * static_cast<double>(up[i]);
  expect_close(download<float>(dout, want.size()), want, kRtol, 1e-6, "swiglu, separate gate and up");
}

TEST_F(CpuBackendTest, GeluErfInPlace) {
  SCOPED_TRACE(seed_trace());
  const int64_t n = 37 * 53;
  const auto x = random(static_cast<std::size_t>(n), -5.0f, 5.0f);
  DeviceBuffer dx = upload(x);
  backend_.gelu(dx.as<float>(), n);
  Vec want(x.size());
  std::transform(x.begin(), x.end(), want.begin(), [](float v) { return ref::gelu_erf(v); });
  expect_close(download<float>(dx, x.size()), want, kRtol, 1e-6, "gelu");
}

TEST_F(CpuBackendTest, ScaleRowsSigmoid) {
  SCOPED_TRACE(seed_trace());
  const int64_t m = 37, d = 53;
  const auto y = random(static_cast<std::size_t>(m * d));
  const auto logit = random(static_cast<std::size_t>(m), -6.0f, 6.0f);
  DeviceBuffer dy = upload(y);
  DeviceBuffer dl = upload(logit);
  backend_.scale_rows_sigmoid(dy.as<float>(), dl.as<float>(), m, d);
  Vec want(y.size());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < d; ++j) want[i * d + j] = y[i * d + j] * ref::sigmoid(logit[i]);
  }
  expect_close(download<float>(dy, y.size()), want, kRtol, 1e-7, "scale_rows_sigmoid");
}

// --- routing and token movement ------------------------------------------------------------------

class CpuSoftmaxTopkTest : public CpuBackendTest, public testing::WithParamInterface<bool> {};

TEST_P(CpuSoftmaxTopkTest, RandomLogits) {
  SCOPED_TRACE(seed_trace());
  const bool renormalize = GetParam();
  const int64_t m = 37, e = 11;
  for (const int64_t k : {int64_t{1}, int64_t{3}, e}) {
    SCOPED_TRACE("k = " + std::to_string(k));
    const auto logits = random(static_cast<std::size_t>(m * e), -3.0f, 3.0f);
    DeviceBuffer dl = upload(logits);
    DeviceBuffer di = upload(std::vector<int32_t>(static_cast<std::size_t>(m * k), -7));
    DeviceBuffer dw = upload(std::vector<float>(static_cast<std::size_t>(m * k), kNaN));
    backend_.softmax_topk(dl.as<float>(), m, e, k, renormalize, di.as<int32_t>(), dw.as<float>());
    const auto ids = download<int32_t>(di, static_cast<std::size_t>(m * k));
    const auto weights = download<float>(dw, static_cast<std::size_t>(m * k));
    const Vec ld = to_double(logits);
    for (int64_t i = 0; i < m; ++i) {
      const ref::TopK want = ref::softmax_topk(CSpan(ld).subspan(static_cast<std::size_t>(i * e), e), k, renormalize);
      for (int64_t s = 0; s < k; ++s) EXPECT_EQ(ids[i * k + s], want.ids[s]) << "row " << i << " slot " << s;
      expect_close(std::span<const float>(weights).subspan(static_cast<std::size_t>(i * k), k), want.weights, kRtol,
                   1e-7, "softmax_topk weights, row " + std::to_string(i));
    }
  }
}

TEST_P(CpuSoftmaxTopkTest, ExactTiesGoToTheLowerId) {
  const bool renormalize = GetParam();
  const int64_t e = 6, k = 3;
  const std::vector<float> logits = {
      0.5f,  2.0f,  1.0f,  2.0f,  2.0f,  -1.0f,  // three-way tie at the top: 1, 3, 4
      1.0f,  3.0f,  2.0f,  2.0f,  0.0f,  2.0f,   // tie for the last two slots: 2, 3 (not 5)
      0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f,  // all equal: 0, 1, 2
  };
  const std::vector<std::vector<int32_t>> expected_ids = {{1, 3, 4}, {1, 2, 3}, {0, 1, 2}};
  const int64_t m = static_cast<int64_t>(expected_ids.size());
  DeviceBuffer dl = upload(logits);
  DeviceBuffer di = upload(std::vector<int32_t>(static_cast<std::size_t>(m * k), -7));
  DeviceBuffer dw = upload(std::vector<float>(static_cast<std::size_t>(m * k), kNaN));
  backend_.softmax_topk(dl.as<float>(), m, e, k, renormalize, di.as<int32_t>(), dw.as<float>());
  const auto ids = download<int32_t>(di, static_cast<std::size_t>(m * k));
  const auto weights = download<float>(dw, static_cast<std::size_t>(m * k));
  const Vec ld = to_double(logits);
  for (int64_t i = 0; i < m; ++i) {
    const ref::TopK want = ref::softmax_topk(CSpan(ld).subspan(static_cast<std::size_t>(i * e), e), k, renormalize);
    for (int64_t s = 0; s < k; ++s) {
      EXPECT_EQ(ids[i * k + s], expected_ids[i][s]) << "row " << i << " slot " << s;
      EXPECT_EQ(want.ids[s], expected_ids[i][s]) << "reference, row " << i << " slot " << s;
    }
    expect_close(std::span<const float>(weights).subspan(static_cast<std::size_t>(i * k), k), want.weights, kRtol, 1e-7,
                 "tie weights, row " + std::to_string(i));
  }
}

INSTANTIATE_TEST_SUITE_P(Renormalize, CpuSoftmaxTopkTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("renormalized") : std::string("raw");
                         });

TEST_F(CpuBackendTest, GatherRowsWithRepeats) {
  SCOPED_TRACE(seed_trace());
  const int64_t n = 23, d = 53, m = 41;
  const auto x = random(static_cast<std::size_t>(n * d));
  auto rows = random_ids(static_cast<std::size_t>(m), 0, static_cast<int32_t>(n - 1));
  rows[1] = rows[0];  // at least one repeat
  rows[2] = static_cast<int32_t>(n - 1);
  DeviceBuffer dx = upload(x);
  DeviceBuffer dr = upload(rows);
  DeviceBuffer dout = upload(std::vector<float>(static_cast<std::size_t>(m * d), kNaN));
  backend_.gather_rows(dx.as<float>(), dr.as<int32_t>(), m, d, dout.as<float>());
  const auto out = download<float>(dout, static_cast<std::size_t>(m * d));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      ASSERT_EQ(out[i * d + j], x[rows[i] * d + j]) << "row " << i << " col " << j;
    }
  }
}

TEST_F(CpuBackendTest, ScatterAddRowsWithRepeatedRows) {
  SCOPED_TRACE(seed_trace());
  const int64_t n = 9, d = 53, m = 60;
  const auto x = random(static_cast<std::size_t>(m * d));
  const auto scale = random(static_cast<std::size_t>(m), 0.0f, 1.0f);
  const auto out0 = random(static_cast<std::size_t>(n * d));
  auto rows = random_ids(static_cast<std::size_t>(m), 0, static_cast<int32_t>(n - 2));
  for (int64_t i = 0; i < m; i += 4) rows[i] = 3;  // one row hit many times; row n-1 never
  DeviceBuffer dx = upload(x);
  DeviceBuffer dr = upload(rows);
  DeviceBuffer ds = upload(scale);
  DeviceBuffer dout = upload(out0);
  backend_.scatter_add_rows(dx.as<float>(), dr.as<int32_t>(), ds.as<float>(), m, d, dout.as<float>());
  Vec want = to_double(out0);
  Vec mag = abs_of(want);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      const double term = static_cast<double>(scale[i]) * x[i * d + j];
      want[rows[i] * d + j] += term;
      mag[rows[i] * d + j] += std::abs(term);
    }
  }
  const auto out = download<float>(dout, out0.size());
  expect_close(out, want, kRtol, 0.0, "scatter_add_rows", &mag);
  for (int64_t j = 0; j < d; ++j) EXPECT_EQ(out[(n - 1) * d + j], out0[(n - 1) * d + j]) << "untouched row changed";
}

// --- LM head -------------------------------------------------------------------------------------

struct LmHeadCase {
  DType dtype;
  bool strided;
};

class CpuLmHeadTest : public CpuBackendTest, public testing::WithParamInterface<LmHeadCase> {};

// 600 rows cross the 512-row tile and a 5000-token slice crosses the 4096-token tile; the slice
// starts at vocab_begin != 0 (a vocab-parallel shard), and targets fall inside and outside it.
TEST_P(CpuLmHeadTest, LogsumexpAndTargetLogitAcrossTiles) {
  SCOPED_TRACE(seed_trace());
  const LmHeadCase p = GetParam();
  const int64_t m = 600, d = 37, v = 5000, vocab_begin = 1234, vocab_total = vocab_begin + v + 777;
  const int64_t stride = p.strided ? d + 5 : d;
  ASSERT_GT(m, Backend::lm_head_tile_rows);
  ASSERT_GT(v, Backend::lm_head_tile_vocab);
  const auto h = random(static_cast<std::size_t>(m * d));
  const auto head = random(static_cast<std::size_t>(v * stride));
  const std::vector<float> seen = p.dtype == DType::bf16 ? bf16_rounded(head) : head;
  const std::vector<float> h_seen = p.dtype == DType::bf16 ? bf16_rounded(h) : h;  // rounded at the GEMM input

  auto targets = random_ids(static_cast<std::size_t>(m), 0, static_cast<int32_t>(vocab_total - 1));
  // Edges: first and last of the slice, either side of it, and inside the second vocab tile.
  const std::vector<int64_t> edges = {vocab_begin,
                                      vocab_begin + v - 1,
                                      vocab_begin - 1,
                                      vocab_begin + v,
                                      0,
                                      vocab_total - 1,
                                      vocab_begin + Backend::lm_head_tile_vocab,
                                      vocab_begin + Backend::lm_head_tile_vocab - 1};
  for (std::size_t i = 0; i < edges.size(); ++i) targets[i] = static_cast<int32_t>(edges[i]);
  // The same edges again in the second row tile.
  for (std::size_t i = 0; i < edges.size(); ++i) targets[580 + i] = static_cast<int32_t>(edges[i]);

  DeviceBuffer dh = upload(h);
  DeviceBuffer dw = p.dtype == DType::bf16 ? upload(to_bf16(head)) : upload(head);
  DeviceBuffer dt = upload(targets);
  DeviceBuffer dlse = upload(std::vector<double>(static_cast<std::size_t>(m), std::nan("")));
  DeviceBuffer dtl = upload(std::vector<float>(static_cast<std::size_t>(m), kNaN));
  DeviceBuffer scratch = backend_.alloc(backend_.lm_head_scratch_bytes());
  backend_.lm_head_logsumexp(dh.as<float>(), m, WeightView{dw.data(), p.dtype, v, d, stride}, vocab_begin,
                             dt.as<int32_t>(), dlse.as<double>(), dtl.as<float>(), scratch.data());
  const auto lse = download<double>(dlse, static_cast<std::size_t>(m));
  const auto target_logit = download<float>(dtl, static_cast<std::size_t>(m));

  int64_t inside = 0;
  Vec logits(static_cast<std::size_t>(v));
  for (int64_t i = 0; i < m; ++i) {
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < v; ++j) {
      double dot = 0.0;
      for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(h_seen[i * d + c]) * seen[j * stride + c];
      logits[j] = dot;
      mx = std::max(mx, dot);
    }
    double sum = 0.0;
    for (double l : logits) sum += std::exp(l - mx);
    const double want_lse = mx + std::log(sum);
    EXPECT_NEAR(lse[i], want_lse, kRtol * std::max(1.0, std::abs(want_lse))) << "lse of row " << i;

    const int64_t local = targets[i] - vocab_begin;
    if (local < 0 || local >= v) {
      EXPECT_EQ(target_logit[i], -std::numeric_limits<float>::infinity())
          << "row " << i << ": target " << targets[i] << " is outside the slice";
      continue;
    }
    ++inside;
    double mag = 0.0;
    for (int64_t c = 0; c < d; ++c) mag += std::abs(static_cast<double>(h_seen[i * d + c]) * seen[local * stride + c]);
    EXPECT_NEAR(target_logit[i], logits[local], kRtol * mag) << "target logit of row " << i;
    // What the caller makes of the two: log p(target) over the slice.
    EXPECT_NEAR(target_logit[i] - lse[i], ref::log_softmax_at(logits, static_cast<std::size_t>(local)),
                kRtol * std::max(1.0, std::abs(want_lse)))
        << "log-prob of row " << i;
  }
  EXPECT_GT(inside, 100) << "too few targets inside the slice to mean anything";
}

INSTANTIATE_TEST_SUITE_P(Cases, CpuLmHeadTest,
                         testing::Values(LmHeadCase{DType::f32, false}, LmHeadCase{DType::f32, true},
                                         LmHeadCase{DType::bf16, true}),
                         [](const testing::TestParamInfo<LmHeadCase>& info) {
                           return std::string(dtype_name(info.param.dtype)) +
                                  (info.param.strided ? "_strided" : "_dense");
                         });

// A sequence's attention must not depend on where its rows lie in memory (its place in the batch,
// the scratch block its thread uses), or layouts that place sequences differently would differ by
// an ulp, and by more once activations are rounded to bf16: the sequences in another order and
// another max_len give bitwise the same output. (Not so for GEMM rows in general: OpenBLAS's edge
// tiles round differently from its full ones, which the layouts' tolerance covers.)
TEST_F(CpuBackendTest, AttentionDoesNotDependOnWhereRowsLie) {
  SCOPED_TRACE(seed_trace());
  const int64_t heads = 4, kv_heads = 2, head_dim = 13, qw = heads * head_dim, kw = kv_heads * head_dim;
  const std::vector<int64_t> lengths = {37, 150, 9};
  std::vector<std::vector<float>> q, k, v;
  for (const int64_t len : lengths) {
    q.push_back(random(static_cast<std::size_t>(len * qw)));
    k.push_back(random(static_cast<std::size_t>(len * kw)));
    v.push_back(random(static_cast<std::size_t>(len * kw)));
  }
  // Packs the sequences in `order`, runs attention, returns each sequence's output (by index).
  const auto run = [&](const std::vector<std::size_t>& order, int64_t max_len) {
    std::vector<float> pq, pk, pv;
    std::vector<int64_t> offsets = {0};
    for (const std::size_t s : order) {
      pq.insert(pq.end(), q[s].begin(), q[s].end());
      pk.insert(pk.end(), k[s].begin(), k[s].end());
      pv.insert(pv.end(), v[s].begin(), v[s].end());
      offsets.push_back(offsets.back() + lengths[s]);
    }
    DeviceBuffer dq = upload(pq), dk = upload(pk), dv = upload(pv), doff = upload(offsets);
    DeviceBuffer dout = upload(std::vector<float>(pq.size(), kNaN));
    DeviceBuffer scratch = backend_.alloc(backend_.attention_scratch_bytes(max_len));
    backend_.causal_attention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), doff.as<int64_t>(),
                              static_cast<int64_t>(order.size()), max_len, heads, kv_heads, head_dim, scratch.data());
    const auto out = download<float>(dout, pq.size());
    std::vector<std::vector<float>> per_seq(lengths.size());
    for (std::size_t i = 0; i < order.size(); ++i)
      per_seq[order[i]].assign(out.begin() + offsets[i] * qw, out.begin() + offsets[i + 1] * qw);
    return per_seq;
  };
  const auto first = run({0, 1, 2}, 150), second = run({2, 0, 1}, 163);
  for (std::size_t s = 0; s < lengths.size(); ++s)
    EXPECT_TRUE(first[s] == second[s]) << "attention output of sequence " << s << " moved with its place";
}

}  // namespace
}  // namespace moe::test
