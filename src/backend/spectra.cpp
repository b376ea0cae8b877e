// The NTK spectra on the CPU: Jacobians through network.h's jacobian_row, Gram matrices by
// dsyrk, eigenvalues by dsyevd, OpenMP threads over the networks. See spectra.h.
#include "gpusweep/backend/spectra.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <stdexcept>

#include "gpusweep/util/util.h"
#include "solver/lapack.h"

namespace gs {

const char* gram_name(Gram g) { return g == Gram::kJJt ? "JJt" : "JtJ"; }

void ntk_jacobian(const Shape& s, const double* theta, const Dataset& data, double* J) {
  const int p = num_params(s);
  const int n = data.n_train();
  for (int k = 0; k < n; ++k)
    jacobian_row(s, theta, data.x_train.data() + static_cast<std::size_t>(k) * s.d,
                 J + static_cast<std::size_t>(k) * p);
}

std::vector<double> gram_reference(const double* J, int points, int params) {
  const int m = gram_size(points, params);
  std::vector<double> G(static_cast<std::size_t>(m) * m, 0.0);
  const bool jjt = gram_kind(points, params) == Gram::kJJt;
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) {
      double sum = 0.0;
      if (jjt) {
        for (int q = 0; q < params; ++q)
          sum += J[static_cast<std::size_t>(a) * params + q] * J[static_cast<std::size_t>(b) * params + q];
      } else {
        for (int k = 0; k < points; ++k)
          sum += J[static_cast<std::size_t>(k) * params + a] * J[static_cast<std::size_t>(k) * params + b];
      }
      G[static_cast<std::size_t>(a) * m + b] = sum;
    }
  return G;
}

namespace {

// One network's spectrum on the calling thread: J, the lower triangle of its Gram matrix by
// dsyrk, then dsyevd (eigenvalues only).
NtkSpectrum spectrum_cpu(const Shape& s, const double* theta, const Dataset& data) {
  NtkSpectrum out;
  const int p = num_params(s);
  const int n = data.n_train();
  out.gram = gram_kind(n, p);
  const int m = gram_size(n, p);
  std::vector<double> J(static_cast<std::size_t>(n) * p);
  ntk_jacobian(s, theta, data, J.data());
  for (double v : J)
    if (!std::isfinite(v)) {
      out.reason = "non-finite Jacobian entry";
      return out;
    }
  // In column-major terms J's storage is A = J^T (P x N, lda P). K = J J^T = A^T A, and
  // J^T J = A A^T.
  std::vector<double> G(static_cast<std::size_t>(m) * m, 0.0);
  const double one = 1.0, zero = 0.0;
  const char lower = 'L';
  if (out.gram == Gram::kJJt) {
    const char trans = 'T';
    dsyrk_(&lower, &trans, &n, &p, &one, J.data(), &p, &zero, G.data(), &m);
  } else {
    const char trans = 'N';
    dsyrk_(&lower, &trans, &p, &n, &one, J.data(), &p, &zero, G.data(), &m);
  }
  J = std::vector<double>();  // the largest buffer; dsyevd needs only G
  out.eig.assign(m, 0.0);
  const char jobz = 'N';
  int lwork = -1, liwork = -1, info = 0, iwork_query = 0;
  double work_query = 0.0;
  dsyevd_(&jobz, &lower, &m, G.data(), &m, out.eig.data(), &work_query, &lwork, &iwork_query, &liwork, &info);
  if (info != 0) throw std::logic_error("dsyevd workspace query failed, info " + std::to_string(info));
  lwork = static_cast<int>(work_query);
  liwork = iwork_query;
  std::vector<double> work(std::max(1, lwork));
  std::vector<int> iwork(std::max(1, liwork));
  dsyevd_(&jobz, &lower, &m, G.data(), &m, out.eig.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info < 0) throw std::logic_error("dsyevd: argument " + std::to_string(-info) + " is wrong");
  if (info > 0) {
    out.eig.clear();
    out.reason = "dsyevd did not converge (info " + std::to_string(info) + ")";
    return out;
  }
  out.ok = true;
  return out;
}

}  // namespace

std::vector<NtkSpectrum> ntk_spectra_cpu(const Batch& batch, int threads) {
  // Parallelism is over networks; each BLAS call runs on its caller's thread.
  openblas_set_num_threads(1);
  const int count = batch.size();
  std::vector<NtkSpectrum> out(count);
  std::vector<std::string> bugs(count);
#pragma omp parallel for schedule(dynamic, 1) num_threads(thread_count(threads))
  for (int i = 0; i < count; ++i) {
    const NetDesc& nd = batch.nets[i];
    try {
      out[i] = spectrum_cpu(nd.shape, batch.params.data() + nd.offset, *batch.datasets[nd.dataset]);
    } catch (const std::bad_alloc&) {
      out[i].reason = "out of memory for J";
    } catch (const std::exception& e) {
      bugs[i] = e.what();  // a LAPACK argument error is ours: rethrown below, off the worker
    }
  }
  for (const auto& b : bugs)
    if (!b.empty()) throw std::logic_error(b);
  return out;
}

}  // namespace gs
