// The GPU tests' guard: a test that needs a CUDA device skips itself where none is visible.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "cuda_backend.h"

namespace gs_test {

inline bool gpu_visible() {
  std::string why;
  return gs::cuda_device_count(&why) > 0;
}

}  // namespace gs_test

#define SKIP_WITHOUT_GPU() \
  if (!gs_test::gpu_visible()) GTEST_SKIP() << "no CUDA device visible"
