// The GPU tests' guard: a test that needs a CUDA device skips itself where none is visible.
// On the emulated device (-DGPUSWEEP_EMULATE_CUDA=ON) a device is always visible, and
// sized() gives the tests the smaller sizes that device runs in seconds.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cuda_backend.h"

namespace gs_test {

#ifdef GPUSWEEP_EMULATE_CUDA
inline constexpr bool kEmulatedDevice = true;
#else
inline constexpr bool kEmulatedDevice = false;
#endif

inline bool gpu_visible() {
  std::string why;
  return gs::cuda_device_count(&why) > 0;
}

// A size of a GPU test: gpu on a GPU, emulated on the emulated device, which runs every
// kernel on the host's cores (each CUDA thread a fiber) and would take minutes at the full
// sizes. The assertions stay the same.
template <class T>
T sized(T gpu, T emulated) {
  return kEmulatedDevice ? emulated : gpu;
}

// Hides every CUDA device from this process while it lives (CUDA_VISIBLE_DEVICES empty).
// Only the emulated device reads the variable at every call; a GPU's runtime reads it once,
// at start-up, so there can_hide() is false and a test that needs no device must skip.
class HiddenDevices {
 public:
  static constexpr bool can_hide() { return kEmulatedDevice; }
  HiddenDevices() {
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) old_ = v, had_ = true;
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
  }
  ~HiddenDevices() {
    if (had_) setenv("CUDA_VISIBLE_DEVICES", old_.c_str(), 1);
    else unsetenv("CUDA_VISIBLE_DEVICES");
  }
  HiddenDevices(const HiddenDevices&) = delete;
  HiddenDevices& operator=(const HiddenDevices&) = delete;

 private:
  std::string old_;
  bool had_ = false;
};

}  // namespace gs_test

#define SKIP_WITHOUT_GPU() \
  if (!gs_test::gpu_visible()) GTEST_SKIP() << "no CUDA device visible"
