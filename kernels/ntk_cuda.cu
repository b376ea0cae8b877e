// NTK spectra on the GPU: size groups, memory-sized sub-batches, the Gram products and the
// batched eigensolver, with each matrix's info read back. See ntk_cuda.h.
//
// Stream rules: everything runs on the legacy default stream, in order (the Thrust vectors
// allocate and fill there too). The host synchronizes once per sub-batch, where it reads the
// eigenvalues, the info array and the non-finite flags back.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <thrust/device_vector.h>

#include <algorithm>
#include <climits>
#include <map>
#include <memory>
#include <stdexcept>
#include <utility>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_owners.h"
#include "ntk_cuda.h"
#include "ntk_kernels.h"

namespace gs {
namespace {

// The library handles of one call, each in its own holder, so that those already created are
// released however the call ends, a constructor that throws half way included.
struct Handles {
  Blas blas_h = make_blas();
  Solver solver_h = make_solver();
  Params params_h = make_params();
  cublasHandle_t blas = blas_h.get();
  cusolverDnHandle_t solver = solver_h.get();
  cusolverDnParams_t params = params_h.get();
};

template <class T>
T* raw(thrust::device_vector<T>& v) {
  return thrust::raw_pointer_cast(v.data());
}

// Device bytes of one network of a group: its J, Gram matrix, eigenvalues and parameters
// (the eigensolver's workspace comes on top: solver_workspace).
std::size_t bytes_per_net(int points, int params) {
  const std::size_t m = static_cast<std::size_t>(gram_size(points, params));
  return sizeof(double) * (static_cast<std::size_t>(points) * params + m * m + m + params) + 64;
}

// Device bytes of cusolverDnXsyevBatched's workspace for count m x m matrices. The query
// reads only the sizes, so it takes no matrices (null pointers).
std::size_t solver_workspace(Handles& h, int m, int count) {
  std::size_t dev_bytes = 0, host_bytes = 0;
  CUSOLVER_CHECK(cusolverDnXsyevBatched_bufferSize(h.solver, h.params, CUSOLVER_EIG_MODE_NOVECTOR,
                                                   CUBLAS_FILL_MODE_LOWER, m, CUDA_R_64F, nullptr, m, CUDA_R_64F,
                                                   nullptr, CUDA_R_64F, &dev_bytes, &host_bytes, count));
  return dev_bytes;
}

// One sub-batch: networks ids (all with N points and P parameters) into out.
void spectra_of(const Batch& batch, const std::vector<int>& ids, int points, int params,
                const std::vector<const double*>& x_dev, Handles& h, std::vector<NtkSpectrum>& out) {
  const int count = static_cast<int>(ids.size());
  const int m = gram_size(points, params);
  const Gram gram = gram_kind(points, params);
  std::vector<double> theta_h(static_cast<std::size_t>(count) * params);
  std::vector<NtkDevNet> nets_h(count);
  for (int j = 0; j < count; ++j) {
    const NetDesc& nd = batch.nets[ids[j]];
    std::copy_n(batch.params.data() + nd.offset, params, theta_h.data() + static_cast<std::size_t>(j) * params);
    nets_h[j] = NtkDevNet{nd.shape, x_dev[nd.dataset], static_cast<long long>(j) * params};
  }
  thrust::device_vector<double> theta(theta_h.begin(), theta_h.end());
  thrust::device_vector<NtkDevNet> nets(nets_h.begin(), nets_h.end());
  thrust::device_vector<double> J(static_cast<std::size_t>(count) * points * params);
  thrust::device_vector<double> G(static_cast<std::size_t>(count) * m * m);
  thrust::device_vector<double> W(static_cast<std::size_t>(count) * m);
  thrust::device_vector<int> bad(count, 0), info(count, 0);

  ntk_jacobians(raw(nets), count, points, params, raw(theta), raw(J), raw(bad), nullptr);

  // Column-major, network j's J is A_j = J_j^T (P x N, lda P). K = A^T A (N x N) when
  // N <= P, else J^T J = A A^T (P x P). Both triangles are written; the solver reads the lower.
  const double one = 1.0, zero = 0.0;
  const long long stride_a = static_cast<long long>(points) * params;
  const long long stride_g = static_cast<long long>(m) * m;
  if (gram == Gram::kJJt)
    CUBLAS_CHECK(cublasDgemmStridedBatched(h.blas, CUBLAS_OP_T, CUBLAS_OP_N, m, m, params, &one, raw(J), params,
                                           stride_a, raw(J), params, stride_a, &zero, raw(G), m, stride_g, count));
  else
    CUBLAS_CHECK(cublasDgemmStridedBatched(h.blas, CUBLAS_OP_N, CUBLAS_OP_T, m, m, points, &one, raw(J), params,
                                           stride_a, raw(J), params, stride_a, &zero, raw(G), m, stride_g, count));
  J.clear();
  J.shrink_to_fit();  // the largest buffer; the eigensolver's workspace may need the room
  ntk_neutralize(raw(bad), count, m, raw(G), nullptr);

  std::size_t dev_bytes = 0, host_bytes = 0;
  CUSOLVER_CHECK(cusolverDnXsyevBatched_bufferSize(h.solver, h.params, CUSOLVER_EIG_MODE_NOVECTOR,
                                                   CUBLAS_FILL_MODE_LOWER, m, CUDA_R_64F, raw(G), m, CUDA_R_64F,
                                                   raw(W), CUDA_R_64F, &dev_bytes, &host_bytes, count));
  thrust::device_vector<char> dev_work(std::max<std::size_t>(dev_bytes, 1));
  std::vector<char> host_work(std::max<std::size_t>(host_bytes, 1));
  CUSOLVER_CHECK(cusolverDnXsyevBatched(h.solver, h.params, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, m,
                                        CUDA_R_64F, raw(G), m, CUDA_R_64F, raw(W), CUDA_R_64F, raw(dev_work),
                                        dev_bytes, host_work.data(), host_bytes, raw(info), count));
  std::vector<double> w_h(W.size());
  std::vector<int> info_h(count), bad_h(count);
  CUDA_CHECK(cudaMemcpy(w_h.data(), raw(W), w_h.size() * sizeof(double), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(info_h.data(), raw(info), count * sizeof(int), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(bad_h.data(), raw(bad), count * sizeof(int), cudaMemcpyDeviceToHost));
  for (int j = 0; j < count; ++j) {
    NtkSpectrum& s = out[ids[j]];
    s.gram = gram;
    if (info_h[j] < 0)  // an argument cuSOLVER rejects is our bug, not the network's
      throw std::logic_error("cusolverDnXsyevBatched: parameter " + std::to_string(-info_h[j]) + " is wrong");
    if (bad_h[j]) {
      s.reason = "non-finite Jacobian entry";
    } else if (info_h[j] > 0) {
      s.reason = "cusolverDnXsyevBatched did not converge (info " + std::to_string(info_h[j]) + ")";
    } else {
      s.eig.assign(w_h.begin() + static_cast<std::ptrdiff_t>(j) * m, w_h.begin() + static_cast<std::ptrdiff_t>(j + 1) * m);
      s.ok = true;  // syev returns them ascending, as dsyevd does
    }
  }
}

}  // namespace

std::vector<NtkSpectrum> ntk_spectra_cuda(const Batch& batch, int device, std::string* backend) {
  std::string why;
  if (cuda_device_count(&why) <= device)
    throw std::runtime_error("--device cuda: no CUDA device is visible (" + why + ")");
  if (!cuda_kernel_image(device, &why)) throw std::runtime_error("--device cuda: " + why);
  CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  if (backend) *backend = std::string("cuda (") + prop.name + ", cusolverDnXsyevBatched)";
  Handles h;

  std::vector<thrust::device_vector<double>> x(batch.datasets.size());
  std::vector<const double*> x_dev(batch.datasets.size());
  for (std::size_t i = 0; i < batch.datasets.size(); ++i) {
    const auto& xs = batch.datasets[i]->x_train;
    x[i].assign(xs.begin(), xs.end());
    x_dev[i] = raw(x[i]);
  }

  // Size groups: networks with the same N and P share strides, so one batched call each.
  std::map<std::pair<int, int>, std::vector<int>> groups;
  for (int i = 0; i < batch.size(); ++i) {
    const NetDesc& nd = batch.nets[i];
    groups[{batch.datasets[nd.dataset]->n_train(), num_params(nd.shape)}].push_back(i);
  }
  std::vector<NtkSpectrum> out(batch.size());
  for (const auto& [key, ids] : groups) {
    const auto [points, params] = key;
    std::size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    // The budget holds the sub-batch's buffers and the eigensolver's workspace; the rest of
    // the free memory is the libraries' slack.
    const std::size_t budget = free_bytes / 10 * 7;
    const std::size_t per = bytes_per_net(points, params);
    const long long m = gram_size(points, params);
    if (m * m > INT32_MAX) {
      for (int i : ids) {
        out[i].gram = gram_kind(points, params);
        out[i].reason = "the Gram matrix is larger than cusolverDnXsyevBatched takes (m^2 > INT32_MAX)";
      }
      continue;
    }
    // cusolverDnXsyevBatched needs m * lda * batchSize <= INT32_MAX.
    std::size_t chunk = std::min<std::size_t>({budget / per, 1u << 16, static_cast<std::size_t>(INT32_MAX / (m * m)),
                                               ids.size()});
    while (chunk > 0 && chunk * per + solver_workspace(h, static_cast<int>(m), static_cast<int>(chunk)) > budget)
      chunk = chunk * 3 / 4;  // a quarter less until the workspace fits too
    if (chunk == 0) {
      for (int i : ids) {
        out[i].gram = gram_kind(points, params);
        out[i].reason = "J, its Gram matrix and the eigensolver's workspace do not fit in device memory";
      }
      continue;
    }
    for (std::size_t b = 0; b < ids.size(); b += chunk) {
      const std::vector<int> part(ids.begin() + b, ids.begin() + std::min(ids.size(), b + chunk));
      spectra_of(batch, part, points, params, x_dev, h, out);
    }
  }
  return out;
}

}  // namespace gs
