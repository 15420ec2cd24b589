#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"

#if MOE_HAVE_CUDA
#include "cuda_backend.hpp"
#endif

namespace moe {

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
#if MOE_HAVE_CUDA
  if (name == "cuda") return make_cuda_backend();
  fail("unknown backend '{}': valid backends are cpu, cuda", name);
#else
  if (name == "cuda") fail("backend 'cuda' was not built: configure with a CUDA toolkit (MOE_WITH_CUDA=ON)");
  fail("unknown backend '{}': valid backends are cpu", name);
#endif
}

}  // namespace moe
