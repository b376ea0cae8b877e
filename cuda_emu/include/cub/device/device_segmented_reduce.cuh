// cub::DeviceSegmentedReduce::Sum for the emulated CUDA device (cuda_emu): the same
// two-phase call (a size query with null temporary storage, then the reduction), one
// thread per segment summing it in order, enqueued on the given stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cuda_emu/kernel.h"

namespace cub {
namespace cuda_emu_detail {

// Temporary storage the reduction asks for; it checks that it gets a device pointer to it.
constexpr std::size_t kTempBytes = 256;

template <class In, class Out, class Begin, class End>
void segmented_sum_kernel(In in, Out out, long long segments, Begin begin, End end, const char* temp) {
  (void)temp;
  const long long s = static_cast<long long>(gs_emu::tl_builtins.block.x) * gs_emu::tl_builtins.block_dim.x +
                      gs_emu::tl_builtins.thread.x;
  if (s >= segments) return;
  auto sum = decltype(in[0] + in[0]){};
  for (auto k = begin[s]; k < end[s]; ++k) sum = sum + in[k];
  out[s] = sum;
}

}  // namespace cuda_emu_detail

struct DeviceSegmentedReduce {
  template <class In, class Out, class Begin, class End>
  static cudaError_t Sum(void* d_temp_storage, std::size_t& temp_storage_bytes, In d_in, Out d_out,
                         std::int64_t num_segments, Begin d_begin_offsets, End d_end_offsets, cudaStream_t stream = 0) {
    if (!d_temp_storage) {
      temp_storage_bytes = cuda_emu_detail::kTempBytes;
      return cudaSuccess;
    }
    if (temp_storage_bytes < cuda_emu_detail::kTempBytes) return cudaErrorInvalidValue;
    if (num_segments <= 0) return cudaSuccess;
    constexpr unsigned kThreads = 256;
    const auto blocks = static_cast<unsigned>((num_segments + kThreads - 1) / kThreads);
    gs_emu::launch_without_barriers("cub::DeviceSegmentedReduce::Sum", &cuda_emu_detail::segmented_sum_kernel<In, Out, Begin, End>,
                   dim3(blocks), dim3(kThreads), 0, stream)(d_in, d_out, static_cast<long long>(num_segments),
                                                             d_begin_offsets, d_end_offsets,
                                                             static_cast<const char*>(d_temp_storage));
    return cudaPeekAtLastError();
  }
};

}  // namespace cub
