// How the kernels launch and declare shared memory, so that one source builds for a GPU with
// nvcc and for the emulated device (cuda_emu/, -DGPUSWEEP_EMULATE_CUDA=ON) with the host
// compiler:
//   GS_LAUNCH(kernel, grid, block, shmem, stream)(args...)   kernel<<<grid, block, shmem, stream>>>(args...)
//   GS_SHARED(type, name, dims);                             __shared__ type name dims;
// Under emulation a launch goes to the emulated runtime, and shared memory is per block, on
// the heap (so AddressSanitizer sees accesses past its ends), and filled with NaN when the
// block starts. GS_SHARED is two statements there: use it only as a declaration statement.
#pragma once

#ifdef GPUSWEEP_EMULATE_CUDA
#include "cuda_emu/kernel.h"
#define GS_LAUNCH(kernel, grid, block, shmem, stream) ::gs_emu::launch(#kernel, kernel, grid, block, shmem, stream)
#define GS_SHARED(type, name, dims)  \
  static const char name##_gs_key = 0; \
  type(&name) dims = *static_cast<type(*) dims>(::gs_emu::shared_array(&name##_gs_key, sizeof(type dims), #name))
#else
#define GS_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#define GS_SHARED(type, name, dims) __shared__ type name dims
#endif
