// Kernels of the GPU NTK spectra: Jacobian rows through network.h's jacobian_row, and the
// guard that keeps non-finite matrices out of the batched eigensolver. See ntk_kernels.h.
#include <cuda_runtime.h>

#include <cmath>

#include "cuda_check.h"
#include "launch.cuh"
#include "ntk_kernels.h"

namespace gs {
namespace {

constexpr int kBlock = 128;

int grid_for(long long work) {
  const long long g = (work + kBlock - 1) / kBlock;
  return static_cast<int>(g < 65535 ? (g > 0 ? g : 1) : 65535);
}

// Thread -> one (network j, point k) row, grid-stride over count * points rows. The row is
// written with the stride of one thread per row: rows are long (P entries) and few, and this
// kernel is a small share of the spectra's time next to the Gram product and the eigensolver.
__global__ void ntk_jacobians_kernel(const NtkDevNet* nets, int count, int points, int params,
                                     const double* theta, double* J, int* bad) {
  const long long rows = static_cast<long long>(count) * points;
  for (long long r = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(r / points);
    const int k = static_cast<int>(r - static_cast<long long>(j) * points);
    const NtkDevNet nd = nets[j];
    double* row = J + r * params;
    jacobian_row(nd.s, theta + nd.theta_off, nd.x + static_cast<long long>(k) * nd.s.d, row);
    bool finite = true;
    for (int q = 0; q < params; ++q) finite = finite && isfinite(row[q]);
    if (!finite) bad[j] = 1;
  }
}

// Thread -> one entry (network j, a, b) of the bad networks' Gram matrices, grid-stride.
__global__ void ntk_neutralize_kernel(const int* bad, int count, int m, double* G) {
  const long long per = static_cast<long long>(m) * m;
  const long long all = per * count;
  for (long long e = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; e < all;
       e += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(e / per);
    if (!bad[j]) continue;
    const long long ab = e - j * per;
    G[e] = ab / m == ab % m ? 1.0 : 0.0;
  }
}

}  // namespace

void ntk_jacobians(const NtkDevNet* nets, int count, int points, int params, const double* theta,
                   double* J, int* bad, cudaStream_t stream) {
  GS_LAUNCH(ntk_jacobians_kernel, grid_for(static_cast<long long>(count) * points), kBlock, 0, stream)(
      nets, count, points, params, theta, J, bad);
  CUDA_CHECK_LAUNCH("ntk_jacobians_kernel");
}

void ntk_neutralize(const int* bad, int count, int m, double* G, cudaStream_t stream) {
  GS_LAUNCH(ntk_neutralize_kernel, grid_for(static_cast<long long>(count) * m * m), kBlock, 0, stream)(
      bad, count, m, G);
  CUDA_CHECK_LAUNCH("ntk_neutralize_kernel");
}

}  // namespace gs
