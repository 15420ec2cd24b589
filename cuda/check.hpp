#pragma once
// Error checks for the CUDA runtime, cuBLAS and NCCL, in the style of MOE_MPI_CHECK: the message
// names the API, the call as written, file:line, the rank and the library's error string, and the
// macro throws moe::Error (through moe::detail::fail_call).
//
// Kernel launchers in kernels/*.cuh return cudaGetLastError() after their launch, so a launch is
// checked as MOE_CUDA_CHECK(cuda_kernels::rms_norm(...)) and the message names the launcher.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "core/error.hpp"

#define MOE_CUDA_CHECK(call)                                                                                          \
  do {                                                                                                                \
    const cudaError_t moe_cuda_rc_ = (call);                                                                          \
    if (moe_cuda_rc_ != cudaSuccess)                                                                                  \
      ::moe::detail::fail_call("CUDA", #call,                                                                         \
                               std::string(cudaGetErrorName(moe_cuda_rc_)) + ": " + cudaGetErrorString(moe_cuda_rc_), \
                               __FILE__, __LINE__);                                                                   \
  } while (0)

#define MOE_CUBLAS_CHECK(call)                                                                                       \
  do {                                                                                                               \
    const cublasStatus_t moe_cublas_rc_ = (call);                                                                    \
    if (moe_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                                     \
      ::moe::detail::fail_call(                                                                                      \
          "cuBLAS", #call,                                                                                           \
          std::string(cublasGetStatusName(moe_cublas_rc_)) + ": " + cublasGetStatusString(moe_cublas_rc_), __FILE__, \
          __LINE__);                                                                                                 \
  } while (0)

// ncclGetLastError(nullptr) adds NCCL's own description of the last failure (e.g. which peer or
// transport), which the result code alone does not carry.
#define MOE_NCCL_CHECK(call)                                                                             \
  do {                                                                                                   \
    const ncclResult_t moe_nccl_rc_ = (call);                                                            \
    if (moe_nccl_rc_ != ncclSuccess) {                                                                   \
      std::string moe_nccl_what_ = ncclGetErrorString(moe_nccl_rc_);                                     \
      const char* moe_nccl_last_ = ncclGetLastError(nullptr);                                            \
      if (moe_nccl_last_ && *moe_nccl_last_) moe_nccl_what_ += std::string(" (") + moe_nccl_last_ + ")"; \
      ::moe::detail::fail_call("NCCL", #call, moe_nccl_what_, __FILE__, __LINE__);                       \
    }                                                                                                    \
  } while (0)
