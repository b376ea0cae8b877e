// Kernels of the variable-projection step on the device: the compression of a relu 1D
// network's Jacobian columns and residual (var_pro_kernels.h).
#include "var_pro_kernels.h"

#include <algorithm>

#include "cuda_check.h"
#include "gpusweep/model/relu1d.h"
#include "launch.cuh"

namespace gs {
namespace {

constexpr int kBlock = 256;
constexpr int kRunCols = kColCoef + 1;  // a run's Vandermonde columns and the residual

// Block j -> call j. Each neuron's active range (d0's: all points), each column's polynomial
// and neuron, the runs' boundaries (the ranges' ends, sorted, each once; their count after
// them), each run's first row, the call's rows, and the columns' global marks.
__global__ void compress_runs_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                                     const DevSet* train, const double* theta, Compressed out) {
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const DevSet set = train[nd.data];
  const int n = nd.s.n, npts = set.n, nv = 2 * (n + 1);
  const double* th = theta + nd.theta_off;
  int* nrange = out.nrange + sl.run_off;
  int* vals = out.runrow + sl.run_off;  // the ranges' ends, unsorted, until the rows replace them
  int* bounds = out.bounds + sl.run_off;
  for (int nu = threadIdx.x; nu <= n; nu += blockDim.x) {
    int lo = 0, hi = npts;
    if (nu < n) {
      const NeuronLines L = neuron_lines(nd.s, th, nu);
      active_range(set.x, npts, L.W[0], L.w[0], &lo, &hi);
    }
    nrange[2 * nu] = vals[2 * nu] = lo;
    nrange[2 * nu + 1] = vals[2 * nu + 1] = hi;
  }
  for (int q = threadIdx.x; q < sl.m; q += blockDim.x) {
    double cp[kColCoef];
    for (int a = 0; a < kColCoef; ++a) cp[a] = 0.0;
    cp[0] = 1.0;
    int nu, lk;
    if (param_owner(nd.s, out.cols[sl.col_off + q], &nu, &lk)) column_poly(neuron_lines(nd.s, th, nu), lk, cp);
    else nu = n;
    for (int a = 0; a < kColCoef; ++a) out.cpoly[(sl.col_off + q) * kColCoef + a] = cp[a];
    out.cown[sl.col_off + q] = nu;
  }
  __syncthreads();
  // Sorted by rank (ties by position): nv^2 comparisons over the block.
  for (int e = threadIdx.x; e < nv; e += blockDim.x) {
    const int v = vals[e];
    int rank = 0;
    for (int f = 0; f < nv; ++f) rank += vals[f] < v || (vals[f] == v && f < e);
    bounds[rank] = v;
  }
  for (int q = threadIdx.x; q < sl.m; q += blockDim.x) {
    const int nu = out.cown[sl.col_off + q];
    out.global[sl.col_off + q] = nrange[2 * nu] == 0 && nrange[2 * nu + 1] == npts ? 1 : 0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int nb = 0;
    for (int e = 0; e < nv; ++e)
      if (nb == 0 || bounds[e] != bounds[nb - 1]) bounds[nb++] = bounds[e];
    bounds[nv] = nb;
    const int ncoef = column_degree(nd.s.arch) + 1;
    int rows = 0;
    for (int k = 0; k + 1 < nb; ++k) {
      vals[k] = rows;
      rows += min(bounds[k + 1] - bounds[k], ncoef);
    }
    out.rows[j] = rows;
  }
}

// Block j -> call j; threads over its runs. A run's points stream through Givens rotations into
// the triangle R of [V | r] (V its Vandermonde matrix in run_frame's coordinate); its first
// min(points, c + 1) rows give the run's rows of B (R times each active column's polynomial in
// that coordinate) and of h, and its last diagonal entry the run's share of rest.
__global__ void compress_fill_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                                     const DevSet* train, const double* resid, Compressed out) {
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const DevSet set = train[nd.data];
  const int nv = 2 * (nd.s.n + 1);
  const int* bounds = out.bounds + sl.run_off;
  const int* nrange = out.nrange + sl.run_off;
  const int runs = bounds[nv] - 1;
  const int ncoef = column_degree(nd.s.arch) + 1, nc = ncoef + 1;
  const double* r = resid + nd.res_off;
  double* runrest = out.runrest + sl.run_off;
  for (int k = threadIdx.x; k < runs; k += blockDim.x) {
    const int s0 = bounds[k], s1 = bounds[k + 1], cnt = s1 - s0;
    double c0, hw;
    run_frame(set.x, s0, s1, &c0, &hw);
    double R[kRunCols][kRunCols];
    for (int a = 0; a < kRunCols; ++a)
      for (int b = 0; b < kRunCols; ++b) R[a][b] = 0.0;
    for (int p = s0; p < s1; ++p) {
      double v[kRunCols];
      const double t = (set.x[p] - c0) / hw;
      double pw = 1.0;
      for (int u = 0; u < ncoef; ++u, pw *= t) v[u] = pw;
      v[ncoef] = r[p];
      // Row u of R is zero or has R[u][u] > 0: a rotation zeroes v[u] against it.
      for (int u = 0; u < nc; ++u) {
        if (v[u] == 0.0) continue;
        const double d = hypot(R[u][u], v[u]);
        const double c = R[u][u] / d, s = v[u] / d;
        R[u][u] = d;
        for (int w = u + 1; w < nc; ++w) {
          const double x1 = R[u][w], x2 = v[w];
          R[u][w] = c * x1 + s * x2;
          v[w] = c * x2 - s * x1;
        }
      }
    }
    const int kr = min(cnt, ncoef), row0 = out.runrow[sl.run_off + k];
    runrest[k] = cnt > ncoef ? R[ncoef][ncoef] * R[ncoef][ncoef] : 0.0;
    for (int rho = 0; rho < kr; ++rho) out.h[sl.h_off + row0 + rho] = R[rho][ncoef];
    double cpow[kColCoef], hpow[kColCoef];
    cpow[0] = hpow[0] = 1.0;
    for (int a = 1; a < ncoef; ++a) {
      cpow[a] = cpow[a - 1] * c0;
      hpow[a] = hpow[a - 1] * hw;
    }
    for (int q = 0; q < sl.m; ++q) {
      double* b = out.B + sl.b_off + static_cast<long long>(q) * sl.ldb + row0;
      const int nu = out.cown[sl.col_off + q];
      if (s0 < nrange[2 * nu] || s1 > nrange[2 * nu + 1]) {
        for (int rho = 0; rho < kr; ++rho) b[rho] = 0.0;
        continue;
      }
      double a[kColCoef];
      shift_poly(out.cpoly + (sl.col_off + q) * kColCoef, ncoef, cpow, hpow, a);
      for (int rho = 0; rho < kr; ++rho) {
        double v = 0.0;
        for (int u = rho; u < ncoef; ++u) v += R[rho][u] * a[u];
        b[rho] = v;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (int k = 0; k < runs; ++k) sum += runrest[k];
    out.rest[j] = sum;
  }
}

// Block j -> call j; threads over the entries of its S.
__global__ void residual_curvature_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                                          const DevSet* train, const double* theta, const int* cols,
                                          const double* rmom, double* S) {
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const double w = 2.0 / train[nd.data].n;
  const double* th = theta + nd.theta_off;
  const long long entries = static_cast<long long>(sl.m) * (sl.m - sl.kc);
  for (long long e = threadIdx.x; e < entries; e += blockDim.x) {
    const int u = static_cast<int>(e % sl.m), v = sl.kc + static_cast<int>(e / sl.m);
    int nu, ku, nv, kv;
    double s = 0.0;
    if (param_owner(nd.s, cols[sl.col_off + u], &nu, &ku) && param_owner(nd.s, cols[sl.col_off + v], &nv, &kv) &&
        nu == nv)
      s = curvature_entry(neuron_lines(nd.s, th, nu), ku, kv, rmom + (nd.nrn_off + nu) * kColCoef, w);
    S[sl.s_off + e] = s;
  }
}

}  // namespace

int compress_rows_bound(const Shape& s, int npoints) {
  return static_cast<int>(
      std::min<long long>(npoints, static_cast<long long>(column_degree(s.arch) + 1) * (2 * s.n + 1)));
}

void compress_relu1d(const CallNet* calls, int count, const VarProSlot* slots, const DevNet* nets,
                     const DevSet* train, const double* theta, const double* resid, const Compressed& out,
                     cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(compress_runs_kernel, count, kBlock, 0, stream)(calls, slots, nets, train, theta, out);
  CUDA_CHECK_LAUNCH("compress_runs_kernel");
  GS_LAUNCH(compress_fill_kernel, count, kBlock, 0, stream)(calls, slots, nets, train, resid, out);
  CUDA_CHECK_LAUNCH("compress_fill_kernel");
}

void residual_curvature(const CallNet* calls, int count, const VarProSlot* slots, const DevNet* nets,
                        const DevSet* train, const double* theta, const int* cols, const double* rmom, double* S,
                        cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(residual_curvature_kernel, count, kBlock, 0, stream)(calls, slots, nets, train, theta, cols, rmom, S);
  CUDA_CHECK_LAUNCH("residual_curvature_kernel");
}

}  // namespace gs
