// A lean start: gpu-sweep loads the CUDA libraries only when a run goes to a GPU (the CUDA
// plugin, src/backend/cuda_loader.h), so --help and CPU runs start fast and small; a plugin that
// cannot be loaded is one clear line.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "backend/cuda_loader.h"
#include "program.h"

extern char** environ;

namespace fs = std::filesystem;

namespace {

using gs_test::lines;
using gs_test::Outcome;
using gs_test::run;
using gs_test::tmp_dir;

// The libraries of the CUDA side: none of them may load on a CPU run (libgpusweep_cuda_emu:
// the emulated device's runtime, in a -DGPUSWEEP_EMULATE_CUDA=ON build).
constexpr std::array<const char*, 8> kCudaLibraries{"libcudart",        "libcublas",   "libcublasLt",
                                                   "libcusolver",      "libcusparse", "libnvJitLink",
                                                   "libgpusweep_cuda", "libgpusweep_cuda_emu"};

// The CUDA libraries among those the dynamic loader reports loading (LD_DEBUG=files).
std::vector<std::string> cuda_libraries_loaded(const std::string& ld_debug) {
  std::vector<std::string> found;
  for (const char* lib : kCudaLibraries)
    if (ld_debug.find(std::string("file=") + lib) != std::string::npos) found.push_back(lib);
  return found;
}

// The program with args under LD_DEBUG=files, so that its stderr lists every file it loads.
Outcome run_traced(const std::string& args, const fs::path& dir, const std::string& env = "") {
  return run(args, dir, "LD_DEBUG=files" + (env.empty() ? "" : " " + env));
}

bool gpu_visible() {
  std::string why;
  return gs::cuda_driver_device_count(&why) > 0;
}

#ifdef GPUSWEEP_EMULATE_CUDA
constexpr bool kEmulatedDevice = true;
#else
constexpr bool kEmulatedDevice = false;
#endif

// Whether --device auto may go to a GPU: where the driver sees one, except in a build for the
// emulated device, whose auto stays on the CPU.
bool auto_may_use_gpu() { return gpu_visible() && !kEmulatedDevice; }

TEST(Startup, HelpLoadsNoCudaLibrary) {
  const fs::path dir = tmp_dir();
  const Outcome r = run_traced("--help", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  // The trace itself must work, or the check below proves nothing.
  ASSERT_NE(r.err.find("file=libc.so.6"), std::string::npos) << r.err.substr(0, 2000);
  EXPECT_EQ(cuda_libraries_loaded(r.err), std::vector<std::string>{});
}

TEST(Startup, CpuRunLoadsNoCudaLibrary) {
  const fs::path dir = tmp_dir();
  std::vector<std::string> devices{"cpu"};
  // auto asks the driver alone; where it sees a GPU, auto may rightly load the plugin.
  if (!auto_may_use_gpu()) devices.push_back("auto");
  for (const std::string& device : devices) {
    const fs::path out = dir / device;
    const Outcome r = run_traced("--widths 2 --points 20 --schedule D,ALL*2 --no-plots -q --device " + device +
                                 " --out " + out.string(), dir);
    ASSERT_EQ(r.code, 0) << device << ": " << r.err.substr(r.err.size() > 3000 ? r.err.size() - 3000 : 0);
    EXPECT_TRUE(fs::exists(out / "results.csv")) << device;
    EXPECT_EQ(cuda_libraries_loaded(r.err), std::vector<std::string>{}) << device;
  }
}

// The child's peak resident set in MiB, and its exit status.
double peak_rss_mib(const std::vector<std::string>& argv, int* status) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  const int e = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (e != 0) {
    *status = -1;
    return 0.0;
  }
  rusage usage{};
  wait4(pid, status, 0, &usage);
  return usage.ru_maxrss / 1024.0;  // KiB on Linux
}

// With the CUDA libraries loaded at start-up --help took about 270 MiB; without them about 10.
TEST(Startup, HelpIsSmall) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer's own memory counts in the resident set";
#endif
  int status = 0;
  const double mib = peak_rss_mib({GPUSWEEP_BIN, "--help"}, &status);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_LT(mib, 40.0);
  std::cout << "gpu-sweep --help: peak RSS " << mib << " MiB\n";
}

#ifdef GPUSWEEP_HAVE_CUDA

// --device cuda with a plugin that cannot be loaded: status 2 and one line that names the
// file and says why; auto runs on the CPU.
TEST(Startup, UnloadablePluginIsOneLine) {
  const fs::path dir = tmp_dir();
  const fs::path missing = dir / "missing" / gs::kCudaPluginFile;
  const fs::path not_a_library = dir / "libgpusweep_cuda.so";
  std::ofstream(not_a_library) << "not a shared object\n";
  const std::string libm = "/lib/x86_64-linux-gnu/libm.so.6";
  struct Case {
    std::string plugin, must_mention;
  };
  std::vector<Case> cases{{missing.string(), " did not load (" + missing.string() + ": cannot open shared object file"},
                          {not_a_library.string(), " did not load (" + not_a_library.string() + ": "}};
  if (fs::exists(libm)) cases.push_back({libm, "has no entry point gpusweep_cuda_plugin"});
  for (const Case& c : cases) {
    for (const char* command : {"", "ntk "}) {
      const fs::path out = dir / "out";
      const Outcome r = run(std::string(command) + "--widths 2 --points 20 --device cuda --out " + out.string(), dir,
                            "GPUSWEEP_CUDA_PLUGIN=" + c.plugin);
      EXPECT_EQ(r.code, 2) << r.err;
      EXPECT_EQ(lines(r.err), 1) << r.err;
      EXPECT_EQ(r.err.rfind("gpu-sweep: error: --device cuda: the CUDA plugin " + c.plugin, 0), 0u) << r.err;
      EXPECT_NE(r.err.find(c.must_mention), std::string::npos) << r.err;
      EXPECT_FALSE(fs::exists(out));
    }
  }
  const fs::path out = dir / "auto";
  const Outcome r = run("--widths 2 --points 20 --schedule D --no-plots --out " + out.string(), dir,
                        "GPUSWEEP_CUDA_PLUGIN=" + missing.string());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "results.csv"));
  // Without a GPU auto never looks for the plugin; with one it says it passed over the GPU.
  if (auto_may_use_gpu())
    EXPECT_NE(r.err.find("note: --device auto: a GPU is visible, but the CUDA plugin " + missing.string()),
              std::string::npos)
        << r.err;
  else
    EXPECT_EQ(r.err.find("plugin"), std::string::npos) << r.err;
}

// The plugin is built beside the core and loads into a process that holds the core: every
// symbol it takes from the core resolves (RTLD_NOW), and its table answers.
TEST(Startup, PluginLoadsBesideTheCore) {
  const fs::path path = gs::cuda_plugin_path();
  EXPECT_EQ(path.filename(), gs::kCudaPluginFile);
  EXPECT_TRUE(fs::exists(path.parent_path() / "libgpusweep_core.so")) << path;
  std::string why;
  const gs::CudaPlugin* plugin = gs::cuda_plugin(&why);
  ASSERT_NE(plugin, nullptr) << why;
  EXPECT_EQ(plugin->abi, gs::kCudaPluginAbi);
  const int n = plugin->device_count(&why);
  // The emulated device is always there, whatever the driver sees.
  EXPECT_EQ(n > 0, gpu_visible() || kEmulatedDevice) << why;
  if (kEmulatedDevice) EXPECT_EQ(n, 1);
  if (n == 0) EXPECT_FALSE(why.empty());
}

#endif  // GPUSWEEP_HAVE_CUDA

}  // namespace
