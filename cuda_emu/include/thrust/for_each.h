// thrust::for_each for the emulated CUDA device (cuda_emu): f(*(first + i)) for i in
// [0, last - first) as a kernel of 256-thread blocks on the policy's stream, one element per
// thread, as Thrust's CUDA backend launches it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "cuda_emu/kernel.h"
#include "thrust/execution_policy.h"

namespace thrust {
namespace cuda_emu_detail {

template <class It, class F>
void for_each_kernel(It first, long long n, F f) {
  const long long i = static_cast<long long>(gs_emu::tl_builtins.block.x) * gs_emu::tl_builtins.block_dim.x +
                      gs_emu::tl_builtins.thread.x;
  if (i < n) f(*(first + static_cast<std::ptrdiff_t>(i)));
}

}  // namespace cuda_emu_detail

template <class It, class F>
It for_each(const cuda_emu_detail::policy& p, It first, It last, F f) {
  const long long n = static_cast<long long>(last - first);
  if (n <= 0) return last;
  constexpr unsigned kThreads = 256;
  const auto blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  gs_emu::launch_without_barriers("thrust::for_each", &cuda_emu_detail::for_each_kernel<It, F>, dim3(blocks), dim3(kThreads), 0,
                 p.stream)(first, n, f);
  if (cudaError_t e = cudaPeekAtLastError()) throw system_error(e, "for_each: failed to launch kernel");
  if (p.sync)
    if (cudaError_t e = cudaStreamSynchronize(p.stream)) throw system_error(e, "for_each: failed to synchronize");
  return last;
}

}  // namespace thrust
