// HD marks functions that both the host compiler and nvcc compile: the math of one network
// is written once and shared by the CPU backend and the CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define HD __host__ __device__
#else
#define HD
#endif
