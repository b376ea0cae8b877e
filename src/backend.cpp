// Backend::create: picks the CPU or the CUDA backend from the options.
#include <stdexcept>

#include "cpu_backend.h"
#include "gpusweep/backend.h"
#ifdef GPUSWEEP_HAVE_CUDA
#include "cuda_backend.h"
#endif

namespace gs {

int Batch::add(const Shape& s, int dataset, const double* theta) {
  NetDesc nd{s, dataset, params.size()};
  params.insert(params.end(), theta, theta + num_params(s));
  nets.push_back(nd);
  return size() - 1;
}

std::unique_ptr<Backend> Backend::create(const BackendOptions& options) {
  switch (options.device) {
    case DeviceKind::kCuda:
#ifdef GPUSWEEP_HAVE_CUDA
      return std::make_unique<CudaBackend>(CudaOptions{});  // one clear line when no GPU
#else
      throw std::runtime_error(
          "--device cuda: this build has no CUDA backend (nvcc was not found when it was "
          "configured); use --device cpu");
#endif
    case DeviceKind::kAuto:
#ifdef GPUSWEEP_HAVE_CUDA
      if (cuda_device_count(nullptr) > 0) return std::make_unique<CudaBackend>(CudaOptions{});
#endif
      break;
    case DeviceKind::kCpu:
      break;
  }
  return std::make_unique<CpuBackend>(options.threads);
}

}  // namespace gs
