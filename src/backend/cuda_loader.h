// Finding a GPU and loading the CUDA plugin on demand: the driver is asked directly
// (libcuda.so.1 by dlopen), so that deciding on --device auto loads no CUDA library on a
// machine without a GPU, and the plugin (cuda_plugin.h) with cuBLAS and cuSOLVER behind it
// is loaded only when a run goes to the GPU.
#pragma once

#include <string>

#include "cuda_plugin.h"

namespace gs {

// The plugin's file name, built beside libgpusweep_core.so.
inline constexpr const char* kCudaPluginFile = "libgpusweep_cuda.so";

// The number of CUDA devices the driver sees; 0 with the reason in *why (if given) when there
// is no driver, no device, or CUDA_VISIBLE_DEVICES hides them all. Asks once per process.
int cuda_driver_device_count(std::string* why);

// Where the plugin is loaded from: $GPUSWEEP_CUDA_PLUGIN when set and not empty, else
// kCudaPluginFile in the directory of the file that holds the core (libgpusweep_core.so).
std::string cuda_plugin_path();

// The plugin's table, loaded on the first call and kept for the rest of the process; nullptr
// with one line in *why (if given) that names the file and the loader's error when it cannot
// be loaded, lacks the entry point, or comes from another build.
const CudaPlugin* cuda_plugin(std::string* why);

}  // namespace gs
