// The CUDA plugin's entry point: the table of cuda_plugin.h over the CUDA backend
// (cuda_backend.h) and the NTK spectra on CUDA (ntk_cuda.h). Built into libgpusweep_cuda.so
// only; core symbols (arch.h, cuda_plan.h, the Backend base) come from libgpusweep_core.so.
#include "cuda_plugin.h"

#include "ntk_cuda.h"

namespace {

std::unique_ptr<gs::Backend> create_backend(const gs::CudaOptions& options) {
  return std::make_unique<gs::CudaBackend>(options);
}

const gs::CudaPlugin kPlugin{gs::kCudaPluginAbi, sizeof(gs::CudaPlugin), sizeof(gs::CudaOptions),
                             &gs::cuda_device_count, &gs::cuda_kernel_image, &create_backend,
                             &gs::ntk_spectra_cuda};

}  // namespace

extern "C" const gs::CudaPlugin* gpusweep_cuda_plugin() { return &kPlugin; }
