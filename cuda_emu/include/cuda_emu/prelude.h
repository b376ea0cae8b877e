// Read first by every .cu file of an emulated build (-include): the CUDA toolkit's own
// headers for the types and the runtime API, then what nvcc would provide and the host
// compiler lacks: the built-in index variables, __syncthreads, __launch_bounds__, the
// device-side min and max. __shared__ is refused: shared memory is declared with GS_SHARED
// (kernels/launch.cuh), which makes it fresh for every block.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda_emu/kernel.h"

#define threadIdx (static_cast<const uint3&>(::gs_emu::tl_builtins.thread))
#define blockIdx (static_cast<const uint3&>(::gs_emu::tl_builtins.block))
#define blockDim (static_cast<const uint3&>(::gs_emu::tl_builtins.block_dim))
#define gridDim (static_cast<const uint3&>(::gs_emu::tl_builtins.grid_dim))
#define __syncthreads() ::gs_emu::sync_threads(__FILE__, __LINE__)
#define __launch_bounds__(...)
#undef __shared__
#define __shared__ static_assert(false, "declare shared memory with GS_SHARED (kernels/launch.cuh)");

// CUDA's device min and max of two ints (and of mixed arguments after promotion).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

// The C++ overload of cuda_runtime.h that only nvcc sees: a kernel's attributes by its function.
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* entry) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(entry));
}
