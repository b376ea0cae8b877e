// The spectra of the empirical neural tangent kernels of a batch of networks at their current
// parameters: the eigenvalues of K = J J^T over the training points and all parameters, on the
// CPU (here) or on a GPU (kernels/ntk_cuda.h), with the device chosen beside Backend::create.
//
// J is N x P (N training points, P parameters, every block of network.h including the biases
// and d0); its rows are network.h's jacobian_row. K = J J^T (N x N) and J^T J (P x P) share
// their nonzero eigenvalues, so the smaller one is factorized: K when N <= P, J^T J otherwise.
#pragma once

#include <string>
#include <vector>

#include "gpusweep/backend/backend.h"

namespace gs {

// Which Gram matrix a network's spectrum comes from.
enum class Gram : int { kJJt = 0, kJtJ = 1 };
inline Gram gram_kind(int points, int params) { return points <= params ? Gram::kJJt : Gram::kJtJ; }
inline int gram_size(int points, int params) { return points <= params ? points : params; }
const char* gram_name(Gram g);

// One network's NTK eigenvalues, ascending; min(N, P) of them. When !ok, reason says why
// (a factorization that did not converge, non-finite entries) and eig is empty.
struct NtkSpectrum {
  bool ok = false;
  std::string reason;
  Gram gram = Gram::kJJt;
  std::vector<double> eig;
};

// Fills J (N x P, row-major: row k is dy/dtheta at training point k) of one network.
void ntk_jacobian(const Shape& s, const double* theta, const Dataset& data, double* J);

// The Gram matrix of J (row-major N x P), m x m with m = gram_size(N, P), full (both
// triangles), by three nested loops. The tests' reference, not used by the backends.
std::vector<double> gram_reference(const double* J, int points, int params);

// Spectra of every network of the batch, in batch order. CPU: OpenMP threads over networks,
// J from jacobian_row, the Gram matrix by BLAS dsyrk and its eigenvalues by LAPACK dsyevd.
// threads = 0: all cores.
std::vector<NtkSpectrum> ntk_spectra_cpu(const Batch& batch, int threads);

// Spectra on the device asked for, chosen as Backend::create chooses (use_cuda): the CPU above,
// or the CUDA path (kernels/ntk_cuda.h: J by a kernel over (network, point), the Gram matrix
// by cuBLAS strided-batched dgemm and the eigenvalues by cusolverDnXsyevBatched, grouped by
// size). kAuto takes the GPU when one is visible.
// *backend names what ran. Throws std::runtime_error when CUDA is asked for and cannot run.
std::vector<NtkSpectrum> ntk_spectra(const Batch& batch, DeviceKind device, int threads,
                                     std::string* backend);

}  // namespace gs
