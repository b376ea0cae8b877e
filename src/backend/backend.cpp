// The Backend interface's factory: Backend::create and ntk_spectra pick the CPU or the CUDA
// backend (use_cuda).
#include <stdexcept>
#include <string>

#include "backend/cpu_backend.h"
#include "gpusweep/backend/backend.h"
#include "gpusweep/backend/spectra.h"
#include "gpusweep/util/util.h"
#ifdef GPUSWEEP_HAVE_CUDA
#include "backend/cuda_loader.h"
#endif

namespace gs {

bool use_cuda(DeviceKind device, std::string* why) {
  switch (device) {
    case DeviceKind::kCuda: {
      // A missing GPU is the user's to fix, like any bad input: std::invalid_argument.
#ifdef GPUSWEEP_HAVE_CUDA
      std::string why;
      const CudaPlugin* plugin = cuda_plugin(&why);
      if (!plugin) throw std::invalid_argument("--device cuda: " + why);
      if (plugin->device_count(&why) == 0)
        throw std::invalid_argument("--device cuda: no CUDA device is visible (" + why + "); use --device cpu");
      if (!plugin->kernel_image(0, &why)) throw std::invalid_argument("--device cuda: " + why);
      return true;
#else
      throw std::invalid_argument(
          "--device cuda: this build has no CUDA backend (nvcc was not found when it was "
          "configured); use --device cpu");
#endif
    }
    case DeviceKind::kAuto: {
#if defined(GPUSWEEP_EMULATE_CUDA)
      // The emulated device (cuda_emu/) checks the CUDA backend on machines without a GPU,
      // far slower than the CPU backend: only --device cuda asks for it.
      (void)why;
      return false;
#elif defined(GPUSWEEP_HAVE_CUDA)
      // The driver alone decides whether there is a GPU, so that a machine without one loads
      // neither the plugin nor the CUDA libraries behind it.
      if (cuda_driver_device_count(nullptr) == 0) return false;
      std::string error;
      const CudaPlugin* plugin = cuda_plugin(&error);
      if (!plugin) {
        if (why) *why = "a GPU is visible, but " + error + "; using the CPU";
        return false;
      }
      if (plugin->device_count(&error) == 0) {
        if (why) *why = "a GPU is visible, but the CUDA runtime finds none (" + error + "); using the CPU";
        return false;
      }
      return plugin->kernel_image(0, why);
#else
      (void)why;
      return false;
#endif
    }
    case DeviceKind::kCpu:
      break;
  }
  return false;
}

std::unique_ptr<Backend> Backend::create(const BackendOptions& options) {
#ifdef GPUSWEEP_HAVE_CUDA
  if (use_cuda(options.device)) {
    CudaOptions co;
    co.cholesky = parse_cholesky(options.cholesky);
    co.host_threads = options.threads;
    return cuda_plugin(nullptr)->create_backend(co);  // loaded by use_cuda
  }
#else
  use_cuda(options.device);  // throws for --device cuda
#endif
  return std::make_unique<CpuBackend>(options.threads);
}

std::vector<NtkSpectrum> ntk_spectra(const Batch& batch, DeviceKind device, int threads, std::string* backend) {
#ifdef GPUSWEEP_HAVE_CUDA
  if (use_cuda(device)) return cuda_plugin(nullptr)->ntk_spectra(batch, 0, backend);  // loaded by use_cuda
#else
  use_cuda(device);  // throws for --device cuda
#endif
  const int t = thread_count(threads);
  if (backend) *backend = "cpu (" + std::to_string(t) + " thread" + (t == 1 ? "" : "s") + ", LAPACK dsyevd)";
  return ntk_spectra_cpu(batch, t);
}

}  // namespace gs
