// The driver probe and the plugin loader of cuda_loader.h, by dlopen and dlsym. Nothing
// loaded is ever closed: the CUDA driver and runtime do not support being unloaded, and the
// backends the plugin creates run its code until the process ends.
#include "backend/cuda_loader.h"

#include <dlfcn.h>
#include <link.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace gs {

namespace {

// dlerror()'s text, or a placeholder where it has none.
std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "no error text";
}

// The driver API's signatures (cuda.h), so that nothing links against libcuda.
using CuInit = int (*)(unsigned flags);
using CuDeviceGetCount = int (*)(int* count);
using CuGetErrorString = int (*)(int error, const char** text);

struct DriverProbe {
  int count = 0;
  std::string why;
};

DriverProbe probe_driver() {
  DriverProbe p;
  dlerror();
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    p.why = "no CUDA driver (" + dl_error() + ")";
    return p;
  }
  const auto init = reinterpret_cast<CuInit>(dlsym(lib, "cuInit"));
  const auto get_count = reinterpret_cast<CuDeviceGetCount>(dlsym(lib, "cuDeviceGetCount"));
  const auto error_string = reinterpret_cast<CuGetErrorString>(dlsym(lib, "cuGetErrorString"));
  if (!init || !get_count || !error_string) {
    p.why = "the CUDA driver libcuda.so.1 lacks cuInit, cuDeviceGetCount or cuGetErrorString (" + dl_error() + ")";
    return p;
  }
  int n = 0;
  int r = init(0);
  if (r == 0) r = get_count(&n);
  if (r != 0) {
    const char* text = nullptr;
    p.why = error_string(r, &text) == 0 && text ? text : "CUDA driver error " + std::to_string(r);
    return p;
  }
  p.count = n;
  if (n == 0) p.why = "no CUDA device is visible";
  return p;
}

struct LoadedPlugin {
  const CudaPlugin* table = nullptr;
  std::string why;
};

LoadedPlugin load_plugin() {
  LoadedPlugin l;
  const std::string path = cuda_plugin_path();
  const std::string name = "the CUDA plugin " + path;
  dlerror();
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    l.why = name + " did not load (" + dl_error() + ")";
    return l;
  }
  dlerror();
  const auto entry = reinterpret_cast<const CudaPlugin* (*)()>(dlsym(lib, GPUSWEEP_CUDA_PLUGIN_ENTRY));
  if (!entry) {
    l.why = name + " has no entry point " GPUSWEEP_CUDA_PLUGIN_ENTRY " (" + dl_error() + ")";
    dlclose(lib);  // nothing of it has run but its static constructors
    return l;
  }
  const CudaPlugin* table = entry();
  if (!table || table->abi != kCudaPluginAbi || table->size != sizeof(CudaPlugin) ||
      table->options_size != sizeof(CudaOptions)) {
    l.why = name + " comes from another build of gpu-sweep (plugin interface " +
            (table ? std::to_string(table->abi) + ", table " + std::to_string(table->size) + " bytes, options " +
                         std::to_string(table->options_size) + " bytes"
                   : std::string("unknown")) +
            "; this program's " + std::to_string(kCudaPluginAbi) + ", " + std::to_string(sizeof(CudaPlugin)) +
            " and " + std::to_string(sizeof(CudaOptions)) + " bytes); rebuild both";
    dlclose(lib);
    return l;
  }
  l.table = table;
  return l;
}

}  // namespace

int cuda_driver_device_count(std::string* why) {
  static const DriverProbe probe = probe_driver();
  if (why) *why = probe.why;
  return probe.count;
}

std::string cuda_plugin_path() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("GPUSWEEP_CUDA_PLUGIN"); env && *env) return env;
  // The file this function is in: libgpusweep_core.so, wherever the executable or the Python
  // module found it, or the executable itself (/proc/self/exe) where the core is linked in.
  fs::path self;
  Dl_info info{};
  link_map* map = nullptr;
  if (dladdr1(reinterpret_cast<void*>(&cuda_plugin_path), &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) != 0 &&
      map && map->l_name && *map->l_name)
    self = map->l_name;
  std::error_code ec;
  if (self.empty()) self = fs::read_symlink("/proc/self/exe", ec);
  // Never the working directory: the bare name makes dlopen search the library path.
  if (self.empty()) return kCudaPluginFile;
  const fs::path dir = fs::absolute(self, ec).lexically_normal().parent_path();
  return (dir / kCudaPluginFile).string();
}

const CudaPlugin* cuda_plugin(std::string* why) {
  static const LoadedPlugin plugin = load_plugin();
  if (!plugin.table && why) *why = plugin.why;
  return plugin.table;
}

}  // namespace gs
