#pragma once
// RMSNorm and LayerNorm, one block per row. Row statistics are reduced in double, as the CPU
// backend does, so the two agree to float rounding of the final multiply.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda_kernels {

// y = x / sqrt(mean(x^2) + eps) * w per row of d; y may alias x.
cudaError_t rms_norm(const float* x, const float* w, float* y, int64_t m, int64_t d, float eps, cudaStream_t stream);
// y = (x - mean) / sqrt(var + eps) * w + b per row of d; y may alias x.
// sum_sq[i] = sum_j x[i, j]^2 (fp64); y = x / sqrt(sum_sq / count + eps) * w (rows split over ranks).
cudaError_t row_sum_squares(const float* x, int64_t m, int64_t d, double* sum_sq, cudaStream_t stream);
cudaError_t rms_norm_scaled(const float* x, const float* w, const double* sum_sq, double count, float* y, int64_t m,
                            int64_t d, float eps, cudaStream_t stream);
cudaError_t layer_norm(const float* x, const float* w, const float* b, float* y, int64_t m, int64_t d, float eps,
                       cudaStream_t stream);

}  // namespace moe::cuda_kernels
