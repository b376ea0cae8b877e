// Thrust's CUDA execution policies for the emulated CUDA device (cuda_emu): thrust::device,
// thrust::cuda::par and thrust::cuda::par_nosync, each optionally .on(stream). par waits for
// its algorithm before returning, as Thrust does; par_nosync does not.
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace thrust {

// Thrust's exception for a failed CUDA call inside an algorithm.
class system_error : public std::runtime_error {
 public:
  system_error(cudaError_t e, const std::string& what)
      : std::runtime_error(what + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e)), code_(e) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

namespace cuda_emu_detail {

struct policy {
  cudaStream_t stream = nullptr;
  bool sync = true;
  policy on(cudaStream_t s) const { return policy{s, sync}; }
};

}  // namespace cuda_emu_detail

namespace cuda {
inline constexpr cuda_emu_detail::policy par{nullptr, true};
inline constexpr cuda_emu_detail::policy par_nosync{nullptr, false};
}  // namespace cuda

inline constexpr cuda_emu_detail::policy device{nullptr, true};

}  // namespace thrust
