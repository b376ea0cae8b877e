// Kernels of the GPU NTK spectra, and their host launchers. All pointers are device memory.
// Every launcher enqueues on the given stream, checks the launch and does not synchronize.
#pragma once

#include <cuda_runtime_api.h>

#include "gpusweep/model/network.h"

namespace gs {

// One network of a size group: its shape, its training inputs (N x d, row-major) and where
// its parameters start in the group's theta array.
struct NtkDevNet {
  Shape s;
  const double* x;
  long long theta_off;
};

// J of every network of a group of `count` networks that share N points and P parameters:
// network j's J is N x P, row-major, at J + j N P (its column-major reading is J^T, P x N).
// Row k of network j is jacobian_row at x_k. bad[j] is set to 1 when any of its entries is
// not finite (the caller zeroes bad first).
void ntk_jacobians(const NtkDevNet* nets, int count, int points, int params, const double* theta,
                   double* J, int* bad, cudaStream_t stream);

// For each network j with bad[j] != 0: its m x m Gram matrix at G + j m m becomes the
// identity, so that the batched eigensolver sees finite input; the caller discards the result.
void ntk_neutralize(const int* bad, int count, int m, double* G, cudaStream_t stream);

}  // namespace gs
