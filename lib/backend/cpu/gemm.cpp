#include "backend/cpu/gemm.hpp"

#include <cblas.h>
#include <cpuid.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string_view>
#include <tuple>
#include <vector>

#include "backend/cpu/host_memory.hpp"
#include "backend/cpu/row_invariant_gemm.hpp"
#include "core/error.hpp"

extern "C" char* openblas_get_corename(void);

namespace moe::cpu {

namespace {

// Set by choose_blas_kernels() for the restarted program: OpenBLAS's own pick before the restart.
constexpr const char* kRestartedVar = "MOE_BLAS_RESTARTED";
// Set when the chosen core type failed its self-check: keep OpenBLAS's own pick.
constexpr const char* kRejectedVar = "MOE_BLAS_REJECTED";

struct BlasChoice {
  std::string openblas_pick;  // what OpenBLAS chose itself, when the program overrode it
  std::string rejected;       // a core type that failed the self-check
  bool user_set = false;      // OPENBLAS_CORETYPE came from the caller's environment
};
BlasChoice& blas_choice() {
  static BlasChoice choice;
  return choice;
}

uint64_t xgetbv0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool avx = (c >> 28) & 1;
  const bool fma = (c >> 12) & 1;
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0;
  const bool tile_state = (xcr0 & 0x60000) == 0x60000;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const auto bit = [](unsigned r, int i) { return ((r >> i) & 1) != 0; };
  f.avx2 = avx && ymm_state && bit(b, 5);
  f.fma = avx && ymm_state && fma;
  f.avx512 = zmm_state && bit(b, 16) && bit(b, 17) && bit(b, 28) && bit(b, 30) && bit(b, 31);
  f.amx_bf16 = tile_state && bit(d, 22);
  __cpuid_count(7, 1, a, b, c, d);
  f.avx512_bf16 = f.avx512 && bit(a, 5);
  const std::pair<bool, std::string_view> named[] = {
      {f.avx2, "avx2"}, {f.fma, "fma"}, {f.avx512, "avx512"}, {f.avx512_bf16, "avx512_bf16"}, {f.amx_bf16, "amx_bf16"}};
  std::vector<std::string_view> on;
  for (const auto& [has, name] : named)
    if (has) on.push_back(name);
  f.flags = fmt::format("{}", fmt::join(on, " "));
  return f;
}

// The OpenBLAS core type this CPU should run, or "" when OpenBLAS's own pick is as good.
std::string wanted_core(const CpuFeatures& f, const std::string& pick) {
  const auto is_one_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (strcasecmp(pick.c_str(), n) == 0) return true;
    return false;
  };
  if (f.avx512) return is_one_of({"SkylakeX", "Cooperlake", "SapphireRapids"}) ? "" : "SkylakeX";
  if (f.avx2 && f.fma)
    return is_one_of({"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}) ? "" : "Haswell";
  return "";
}

std::vector<float> random_values(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// max over elements of |y - y_ref| / (sum_k |x||w| + tiny): the rounding error of an fp32
// accumulation of k products is far below 1e-5 of that sum; a wrong kernel is far above it.
double relative_error(const std::vector<float>& x, const std::vector<float>& w, int64_t m, int64_t n, int64_t k,
                      int64_t ldw, const std::vector<float>& y, const std::vector<double>& y0, double beta) {
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = beta * y0[i * n + j], scale = std::abs(beta * y0[i * n + j]) + 1e-30;
      for (int64_t p = 0; p < k; ++p) {
        ref += static_cast<double>(x[i * k + p]) * w[j * ldw + p];
        scale += std::abs(static_cast<double>(x[i * k + p]) * w[j * ldw + p]);
      }
      worst = std::max(worst, std::abs(y[i * n + j] - ref) / scale);
    }
  return worst;
}

constexpr double kSelfCheckTolerance = 1e-5;

// sgemm on odd sizes (edge tiles in every dimension) against a double loop.
double sgemm_self_check_error() {
  std::mt19937 rng(12345);
  const int64_t m = 29, n = 67, k = 133;
  const std::vector<float> x = random_values(m * k, rng), w = random_values(n * k, rng);
  std::vector<float> y(m * n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, y.data(), n);
  return relative_error(x, w, m, n, k, k, y, std::vector<double>(m * n, 0.0), 0.0);
}

// --- oneDNN matmuls (f32 and bf16) ----------------------------------------------------------------

// oneDNN's kernels have the row count fixed when the kernel is made, so rows go through in chunks
// of kChunkRows, and a shorter remainder is padded to a multiple of kPadRows: at most
// kChunkRows / kPadRows kernels per weight shape, made once each.
constexpr int64_t kChunkRows = 512;
constexpr int64_t kPadRows = 32;
// f32 runs the multiple-of-kPadRows part of a remainder in place and pads only what is left, to a
// multiple of kTailPadRows (a copy of at most 31 rows instead of the whole remainder).
constexpr int64_t kTailPadRows = 8;

int64_t padded_rows(int64_t rows, int64_t multiple = kPadRows) {
  return (rows + multiple - 1) / multiple * multiple;
}

class Matmuls {
 public:
  struct Kernel {
    dnnl::matmul primitive;
    std::string impl;
    dnnl::memory::desc weights;  // the layout the kernel reads its weights in
  };
  using dt = dnnl::memory::data_type;
  // The kernel for a [rows, k] x [k, n] product of `type` inputs (f32 output) whose weight rows
  // are ldw apart (packed: in the layout oneDNN prefers, see pack()); beta != 0 adds beta * y (a
  // sum post-op). Throws dnnl::error when oneDNN has no kernel here.
  const Kernel& get(dt type, int64_t rows, int64_t n, int64_t k, int64_t ldw, float beta, bool packed) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto key = std::make_tuple(static_cast<int>(type), rows, n, k, packed ? 0 : ldw, beta);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    const dnnl::memory::desc src({rows, k}, type, {k, 1});
    const dnnl::memory::desc wei = packed ? dnnl::memory::desc({k, n}, type, dnnl::memory::format_tag::any)
                                          : dnnl::memory::desc({k, n}, type, {1, ldw});
    const dnnl::memory::desc dst({rows, n}, dt::f32, {n, 1});
    dnnl::primitive_attr attr;
    if (beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(beta);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), attr, engine_);
    return cache_.emplace(key, Kernel{dnnl::matmul(pd), pd.impl_info_str(), pd.weights_desc()}).first->second;
  }

  // Packed copies of weights: oneDNN's AMX kernels read weights in a blocked layout and, given
  // plain rows, reorder them on every call (most of the time at moe-score's shapes). Weights are
  // packed once, when the caller says they stay unchanged until forget() covers them (the CPU
  // backend: weights in its own buffers, forgotten when a buffer is freed or written). The
  // copies double the memory of bf16 weights (to what f32 weights take).
  void pack(const WeightView& w) {
    const Kernel& kernel = get(dt::bf16, kChunkRowsForPacking, w.rows, w.cols, w.stride, 0.0f, true);
    std::lock_guard<std::mutex> lock(mutex_);
    if (packs_.count(w.data)) return;
    dnnl::memory plain({{w.cols, w.rows}, dnnl::memory::data_type::bf16, {1, w.stride}}, engine_,
                       const_cast<void*>(w.data));
    // The packed copy in our own (huge-page) memory, freed with the Pack.
    std::shared_ptr<void> block(alloc_host(std::max<std::size_t>(kernel.weights.get_size(), 1)), free_host);
    MOE_CHECK(block != nullptr, "out of memory packing bf16 weights ({} bytes)", kernel.weights.get_size());
    dnnl::memory packed(kernel.weights, engine_, block.get());
    dnnl::stream stream(engine_);
    dnnl::reorder(plain, packed).execute(stream, plain, packed);
    stream.wait();
    packs_.emplace(w.data, Pack{w.rows, w.cols, w.stride, packed, std::move(block)});
  }
  // The packed copy of w when there is one in the layout `kernel` reads.
  const dnnl::memory* packed(const WeightView& w, const dnnl::memory::desc& layout) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = packs_.find(w.data);
    if (it == packs_.end() || it->second.n != w.rows || it->second.k != w.cols || it->second.ldw != w.stride ||
        it->second.memory.get_desc() != layout)
      return nullptr;
    return &it->second.memory;
  }
  void forget(const void* begin, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto* b = static_cast<const char*>(begin);
    packs_.erase(packs_.lower_bound(b), packs_.lower_bound(b + bytes));
  }
  dnnl::engine& engine() { return engine_; }
  static constexpr int64_t kChunkRowsForPacking = kChunkRows;

 private:
  struct Pack {
    int64_t n, k, ldw;
    dnnl::memory memory;
    std::shared_ptr<void> block;  // what memory points into
  };
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mutex_;
  std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, float>, Kernel> cache_;
  std::map<const void*, Pack, std::less<>> packs_;
};

Matmuls& matmuls() {
  static Matmuls m;
  return m;
}

// x rounded to bf16, rows padded with zeros to a multiple of kPadRows.
const uint16_t* round_rows_to_bf16(const float* x, int64_t m, int64_t k) {
  thread_local std::vector<uint16_t> buffer;
  const int64_t rows = padded_rows(m);
  if (buffer.size() < static_cast<std::size_t>(rows * k)) buffer.resize(static_cast<std::size_t>(rows * k));
  uint16_t* out = buffer.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t p = 0; p < k; ++p) out[i * k + p] = i < m ? float_to_bf16(x[i * k + p]) : 0;
  return out;
}

void onednn_bf16(const float* x, int64_t m, const WeightView& w, float* y, float beta, bool pack) {
  const int64_t n = w.rows, k = w.cols;
  const uint16_t* xb = round_rows_to_bf16(x, m, k);
  thread_local dnnl::stream stream(matmuls().engine());
  thread_local std::vector<float> tail;
  using dt = dnnl::memory::data_type;
  for (int64_t r0 = 0; r0 < m; r0 += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, m - r0);
    const int64_t pad = rows == kChunkRows ? rows : padded_rows(rows);
    const Matmuls::Kernel& fast = matmuls().get(dt::bf16, pad, n, k, w.stride, beta, true);
    if (pack && r0 == 0) matmuls().pack(w);
    const dnnl::memory* packed = matmuls().packed(w, fast.weights);
    const Matmuls::Kernel& kernel = packed ? fast : matmuls().get(dt::bf16, pad, n, k, w.stride, beta, false);
    float* out = y + r0 * n;
    if (pad != rows) {  // the padded remainder lands in a scratch block first
      tail.resize(static_cast<std::size_t>(pad * n));
      if (beta != 0.0f) std::memcpy(tail.data(), out, sizeof(float) * static_cast<std::size_t>(rows * n));
      out = tail.data();
    }
    dnnl::engine& engine = matmuls().engine();
    dnnl::memory src({{pad, k}, dt::bf16, {k, 1}}, engine, const_cast<uint16_t*>(xb + r0 * k));
    dnnl::memory plain({{k, n}, dt::bf16, {1, w.stride}}, engine, const_cast<void*>(w.data));
    dnnl::memory dst({{pad, n}, dt::f32, {n, 1}}, engine, out);
    kernel.primitive.execute(stream,
                             {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, packed ? *packed : plain}, {DNNL_ARG_DST, dst}});
    stream.wait();
    if (pad != rows) std::memcpy(y + r0 * n, tail.data(), sizeof(float) * static_cast<std::size_t>(rows * n));
  }
}

// f32 through oneDNN, weights as they are (rows ldw apart; no packed copy, which would double the
// memory of f32 weights for a few per cent): chunks of kChunkRows rows, a remainder's multiple of
// kPadRows in place, the last rows (fewer than kPadRows) through a zero-padded copy.
void onednn_f32(const float* x, int64_t m, const WeightView& w, float* y, float beta) {
  const int64_t n = w.rows, k = w.cols;
  using dt = dnnl::memory::data_type;
  thread_local dnnl::stream stream(matmuls().engine());
  thread_local std::vector<float> x_tail, y_tail;
  dnnl::engine& engine = matmuls().engine();
  dnnl::memory weights({{k, n}, dt::f32, {1, w.stride}}, engine, const_cast<void*>(w.data));
  const auto run = [&](const float* xs, int64_t rows, float* ys) {
    const Matmuls::Kernel& kernel = matmuls().get(dt::f32, rows, n, k, w.stride, beta, false);
    dnnl::memory src({{rows, k}, dt::f32, {k, 1}}, engine, const_cast<float*>(xs));
    dnnl::memory dst({{rows, n}, dt::f32, {n, 1}}, engine, ys);
    kernel.primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    stream.wait();
  };
  for (int64_t r0 = 0; r0 < m; r0 += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, m - r0);
    const int64_t direct = rows == kChunkRows ? rows : rows / kPadRows * kPadRows;
    if (direct > 0) run(x + r0 * k, direct, y + r0 * n);
    const int64_t tail = rows - direct;
    if (tail == 0) continue;
    const int64_t pad = padded_rows(tail, kTailPadRows);
    const auto tail_begin = static_cast<std::size_t>((r0 + direct) * k);
    x_tail.assign(static_cast<std::size_t>(pad * k), 0.0f);
    std::memcpy(x_tail.data(), x + tail_begin, sizeof(float) * static_cast<std::size_t>(tail * k));
    y_tail.resize(static_cast<std::size_t>(pad * n));
    float* out = y + (r0 + direct) * n;
    if (beta != 0.0f) std::memcpy(y_tail.data(), out, sizeof(float) * static_cast<std::size_t>(tail * n));
    run(x_tail.data(), pad, y_tail.data());
    std::memcpy(out, y_tail.data(), sizeof(float) * static_cast<std::size_t>(tail * n));
  }
}

void openblas_f32(const float* x, int64_t m, const WeightView& w, float* y, float beta) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(w.rows),
              static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), static_cast<const float*>(w.data),
              static_cast<int>(w.stride), beta, y, static_cast<int>(w.rows));
}

using F32Fn = void (*)(const float*, int64_t, const WeightView&, float*, float);

// An f32 kernel against a double loop: 45 rows (a remainder of 32 in place and 13 padded),
// strided weights, beta = 0 and beta = 1; then 557 rows (a full chunk and a remainder).
double f32_self_check_error(F32Fn fn) {
  std::mt19937 rng(24680);
  double worst = 0;
  for (const int64_t m : {int64_t{45}, int64_t{557}}) {
    const int64_t n = 67, k = 133, ldw = 141;
    const std::vector<float> x = random_values(m * k, rng), w = random_values(n * ldw, rng);
    const WeightView view{w.data(), DType::f32, n, k, ldw};
    for (const float beta : {0.0f, 1.0f}) {
      std::vector<float> y = random_values(m * n, rng);
      const std::vector<double> y0(y.begin(), y.end());
      fn(x.data(), m, view, y.data(), beta);
      worst = std::max(worst, relative_error(x, w, m, n, k, ldw, y, y0, beta));
    }
  }
  return worst;
}

using Bf16Fn = void (*)(const float*, int64_t, const WeightView&, float*, float, bool);

void row_invariant_bf16(const float* x, int64_t m, const WeightView& w, float* y, float beta, bool /*pack*/) {
  gemm_bf16_row_invariant(x, m, w, y, beta);
}

// A bf16 kernel against a double loop over the bf16-rounded operands, on a padded remainder
// (45 rows), strided weights and both beta = 0 and beta = 1.
double bf16_self_check_error(Bf16Fn fn) {
  std::mt19937 rng(54321);
  const int64_t m = 45, n = 67, k = 133, ldw = 141;
  std::vector<float> x = random_values(m * k, rng), wf = random_values(n * ldw, rng);
  std::vector<uint16_t> wb(wf.size());
  for (std::size_t i = 0; i < wf.size(); ++i) {
    wb[i] = float_to_bf16(wf[i]);
    wf[i] = bf16_to_float(wb[i]);
  }
  const WeightView view{wb.data(), DType::bf16, n, k, ldw};
  std::vector<float> xr(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_float(float_to_bf16(x[i]));
  double worst = 0;
  for (const float beta : {0.0f, 1.0f}) {
    std::vector<float> y = random_values(m * n, rng);
    const std::vector<double> y0(y.begin(), y.end());
    fn(x.data(), m, view, y.data(), beta, false);
    worst = std::max(worst, relative_error(xr, wf, m, n, k, ldw, y, y0, beta));
  }
  return worst;
}

struct Selected {
  GemmKernels names;
  F32Fn f32 = openblas_f32;
  Bf16Fn bf16 = row_invariant_bf16;
};

Selected select_kernels() {
  Selected s;
  const BlasChoice& choice = blas_choice();
  std::string f32 = std::string("OpenBLAS ") + openblas_get_corename();
  if (choice.user_set)
    f32 += " (OPENBLAS_CORETYPE set by the caller)";
  else if (!choice.openblas_pick.empty())
    f32 += " (chosen by cpuid; OpenBLAS picked " + choice.openblas_pick + ")";
  else if (!choice.rejected.empty())
    f32 += " (OpenBLAS's pick; " + choice.rejected + " failed the self-check)";
  else
    f32 += " (OpenBLAS's pick)";
  const double f32_error = sgemm_self_check_error();
  MOE_CHECK(f32_error < kSelfCheckTolerance, "GEMM self-check: {} is off by {:.2g} (relative) against a plain loop",
            f32, f32_error);
  s.names.openblas = f32;
  // f32: oneDNN when it has a kernel that passes the self-check (its cpuid dispatch is not moved by
  // OPENBLAS_CORETYPE, and at moe-score's shapes it measured at or above OpenBLAS's best kernels:
  // docs/architecture.md), else OpenBLAS.
  s.names.f32 = f32;
  try {
    // oneDNN's brgemm kernels (AVX-512 and up) beat OpenBLAS; where oneDNN has only its older
    // gemm:jit (AVX2 CPUs) OpenBLAS's own kernels are faster (Zen 3: 186 against 175-180 GFLOP/s
    // at moe-score's shapes, moe-bench gemm), so oneDNN f32 runs only as brgemm.
    const std::string impl = matmuls().get(dnnl::memory::data_type::f32, kChunkRows, 64, 64, 64, 0.0f, false).impl;
    const double error = impl.rfind("brg", 0) == 0 ? f32_self_check_error(onednn_f32) : -1.0;
    if (error >= 0.0 && error < kSelfCheckTolerance) {
      s.f32 = onednn_f32;
      s.names.f32 = "oneDNN " + impl;
    } else if (error < 0.0) {
      s.names.f32 += "; oneDNN f32 would run " + impl + ", slower than OpenBLAS";
    } else {
      s.names.f32 += fmt::format("; oneDNN f32 failed the self-check ({:.2g})", error);
    }
  } catch (const dnnl::error& e) {
    s.names.f32 += std::string("; no oneDNN f32 kernel: ") + e.what();
  }
  std::string onednn_problem;
  try {
    const double error = bf16_self_check_error(onednn_bf16);
    if (error < kSelfCheckTolerance) {
      s.bf16 = onednn_bf16;
      s.names.bf16 = "oneDNN " + matmuls().get(dnnl::memory::data_type::bf16, kChunkRows, 64, 64, 64, 0.0f, true).impl +
                     ", packed weights";
      return s;
    }
    onednn_problem = fmt::format("oneDNN failed the self-check ({:.2g})", error);
  } catch (const dnnl::error& e) {
    onednn_problem = std::string("no oneDNN bf16 kernel: ") + e.what();
  }
  const double error = bf16_self_check_error(row_invariant_bf16);
  MOE_CHECK(error < kSelfCheckTolerance,
            "GEMM self-check: the row-invariant bf16 kernel is off by {:.2g} against a plain loop", error);
  s.names.bf16 = std::string("row-invariant bf16 x bf16 -> f32 (") + row_invariant_gemm_isa() + "); " + onednn_problem;
  return s;
}

const Selected& selected() {
  static const Selected s = select_kernels();
  return s;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

void choose_blas_kernels(char** argv) {
  BlasChoice& choice = blas_choice();
  if (const char* rejected = std::getenv(kRejectedVar)) {
    choice.rejected = rejected;
    unsetenv(kRejectedVar);
    return;
  }
  if (const char* pick = std::getenv(kRestartedVar)) {
    // The restarted program: OpenBLAS has read the variable; give the caller's environment back.
    choice.openblas_pick = pick;
    const std::string chosen = openblas_get_corename();
    unsetenv(kRestartedVar);
    unsetenv("OPENBLAS_CORETYPE");
    if (sgemm_self_check_error() < kSelfCheckTolerance) return;
    setenv(kRejectedVar, chosen.c_str(), 1);
    execv("/proc/self/exe", argv);
    fail("cannot restart {} after the GEMM self-check of {} failed", argv[0], chosen);
  }
  if (std::getenv("OPENBLAS_CORETYPE")) {
    choice.user_set = true;
    return;
  }
  const std::string pick = openblas_get_corename();
  const std::string want = wanted_core(cpu_features(), pick);
  if (want.empty()) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  setenv(kRestartedVar, pick.c_str(), 1);
  execv("/proc/self/exe", argv);
  // No restart possible (no /proc): run with OpenBLAS's pick.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kRestartedVar);
}

const GemmKernels& gemm_kernels() {
  return selected().names;
}

void gemm_f32(const float* x, int64_t m, const WeightView& w, float* y, float beta) {
  selected().f32(x, m, w, y, beta);
}

void gemm_f32_openblas(const float* x, int64_t m, const WeightView& w, float* y, float beta) {
  openblas_f32(x, m, w, y, beta);
}

void prepare_f32(int64_t m, const WeightView& w) {
  if (selected().f32 != onednn_f32 || w.rows == 0) return;
  for (int64_t r0 = 0; r0 < m; r0 += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, m - r0);
    const int64_t direct = rows == kChunkRows ? rows : rows / kPadRows * kPadRows;
    if (direct > 0) matmuls().get(dnnl::memory::data_type::f32, direct, w.rows, w.cols, w.stride, 0.0f, false);
    if (rows > direct)
      matmuls().get(dnnl::memory::data_type::f32, padded_rows(rows - direct, kTailPadRows), w.rows, w.cols, w.stride,
                    0.0f, false);
  }
}

void gemm_bf16(const float* x, int64_t m, const WeightView& w, float* y, float beta, bool pack) {
  selected().bf16(x, m, w, y, beta, pack);
}

bool gemm_runs_on_one_thread_in_parallel(DType dtype) {
  return dtype == DType::f32 ? selected().f32 == openblas_f32 : selected().bf16 == row_invariant_bf16;
}

bool bf16_gemm_packs_weights() {
  return selected().bf16 == onednn_bf16;
}

void prepare_bf16(int64_t m, const WeightView& w, bool pack) {
  if (selected().bf16 != onednn_bf16 || w.rows == 0) return;
  if (pack) matmuls().pack(w);
  for (int64_t r0 = 0; r0 < m; r0 += kChunkRows) {
    const int64_t rows = std::min(kChunkRows, m - r0);
    matmuls().get(dnnl::memory::data_type::bf16, rows == kChunkRows ? rows : padded_rows(rows), w.rows, w.cols,
                  w.stride, 0.0f, true);
  }
}

void forget_bf16_weights(const void* begin, std::size_t bytes) {
  matmuls().forget(begin, bytes);
}

}  // namespace moe::cpu
