// The interface of the CUDA plugin, libgpusweep_cuda.so: the CUDA backend and the NTK spectra
// on CUDA, which the core loads only when a run goes to a GPU (src/backend/cuda_loader.h), so
// that a CPU run never loads the CUDA libraries. A plain C++ header, free of CUDA types.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "cuda_backend.h"
#include "gpusweep/backend/spectra.h"

namespace gs {

// Raised whenever the table below or a type it passes changes meaning, so that the core
// refuses a plugin of another build instead of calling into it.
constexpr int kCudaPluginAbi = 1;

// The plugin's entry points. They are the functions of cuda_backend.h and ntk_cuda.h, and
// throw as those do.
struct CudaPlugin {
  int abi;                   // kCudaPluginAbi of the plugin's build
  std::size_t size;          // sizeof(CudaPlugin) there
  std::size_t options_size;  // sizeof(CudaOptions) there
  int (*device_count)(std::string* why);
  bool (*kernel_image)(int device, std::string* why);
  std::unique_ptr<Backend> (*create_backend)(const CudaOptions& options);
  std::vector<NtkSpectrum> (*ntk_spectra)(const Batch& batch, int device, std::string* backend);
};

}  // namespace gs

// The symbol the core looks up in the plugin: it returns the table, which lives as long as the
// plugin stays loaded (for the rest of the process).
#define GPUSWEEP_CUDA_PLUGIN_ENTRY "gpusweep_cuda_plugin"
extern "C" const gs::CudaPlugin* gpusweep_cuda_plugin();
