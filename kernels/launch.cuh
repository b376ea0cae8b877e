// How the kernels launch and declare shared memory, so that one source builds for a GPU with
// nvcc and for the emulated device (cuda_emu/, -DGPUSWEEP_EMULATE_CUDA=ON) with the host
// compiler:
//   GS_LAUNCH(kernel, grid, block, shmem, stream)(args...)   kernel<<<grid, block, shmem, stream>>>(args...)
//   GS_SHARED(type, name, dims);                             __shared__ type name dims;
// Under emulation a launch goes to the emulated runtime, and shared memory is per block and
// filled with NaN when the block starts.
#pragma once

#ifdef GPUSWEEP_EMULATE_CUDA
#include "cuda_emu/kernel.h"
#define GS_LAUNCH(kernel, grid, block, shmem, stream) ::gs_emu::launch(#kernel, kernel, grid, block, shmem, stream)
#define GS_SHARED(type, name, dims) \
  static thread_local type name dims; \
  ::gs_emu::fresh_shared(&name, sizeof(name), #name)
#else
#define GS_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#define GS_SHARED(type, name, dims) __shared__ type name dims
#endif
