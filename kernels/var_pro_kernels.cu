// Kernels of the variable-projection step on the device: the compression of a relu 1D
// network's Jacobian columns and residual (var_pro_kernels.h).
#include "var_pro_kernels.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "cuda_check.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/solve.h"
#include "gpusweep/solver/var_pro.h"
#include "block_reduce.cuh"
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
    // What no row reaches: the residual beyond the run's polynomials (zero for a run of at
    // most c + 1 distinct points; points that coincide leave theirs here).
    runrest[k] = R[ncoef][ncoef] * R[ncoef][ncoef];
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
  const int npts = train[nd.data].n;
  const double w = npts > 0 ? 2.0 / npts : 0.0;  // no points: no curvature
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


// Block j -> call j: M = sqrt(2 / N) [B diag(scale) | h] in place (all ldb rows).
__global__ void scale_system_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                                    const DevSet* train, const int* cols, const double* scale, double* B) {
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const double f = sqrt(2.0 / train[nd.data].n);
  const long long entries = static_cast<long long>(sl.ldb) * (sl.m + 1);
  for (long long e = threadIdx.x; e < entries; e += blockDim.x) {
    const int q = static_cast<int>(e / sl.ldb);
    B[sl.b_off + e] *= q < sl.m ? f * scale[nd.vec_off + cols[sl.col_off + q]] : f;
  }
}

// dlarfg's reflector of a column (alpha, then entries whose squares sum to ss): beta =
// -sign(alpha) sqrt(alpha^2 + ss) and tau = (beta - alpha) / beta, its vector x / (alpha - beta)
// with a unit first entry; none (tau = 0, beta = alpha) where ss is zero.
__device__ inline void reflector(double alpha, double ss, double* beta, double* tau) {
  if (ss == 0.0) {
    *beta = alpha;
    *tau = 0.0;
    return;
  }
  *beta = -copysign(sqrt(alpha * alpha + ss), alpha);
  *tau = (*beta - alpha) / *beta;
}

// Block j -> call j, after the QR of all of M: whether the main block is dependent (a diagonal
// entry of its R at most kVarProRank max(N, kc) of the largest, or more main columns than
// rows); else the column-pivoted Householder QR of the global columns' triangle (their R rows
// below the main block, reflectors below the diagonal dropped), applied to the same rows of the
// nonlinear columns and h, columns swapped whole; the rank of the linear columns; perm, the
// linear columns in the order of R_cc. The rank's reference is the main block's largest
// diagonal entry, or with none the first global pivot (reduced_system's rule); with
// with_globals, the larger of the two (least_squares_values').
__global__ void globals_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                               const DevSet* train, const int* rows_of, double* B, int* perm, int* rank,
                               int* deficient, bool with_globals) {
  GS_SHARED(double, red, [kBlock]);
  GS_SHARED(int, at, [kBlock]);
  GS_SHARED(double, beta_tau, [2]);
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const int rows = rows_of[j], ld = sl.ldb, kc = sl.kc, g = sl.g, kmain = kc - g, m = sl.m;
  double* M = B + sl.b_off;
  const double tol = kVarProRank * max(train[nd.data].n, kc);
  for (int q = threadIdx.x; q < kc; q += blockDim.x) perm[sl.col_off + q] = q;
  // The main block: its largest diagonal entry, and whether any is too small.
  double big = 0.0;
  for (int q = threadIdx.x; q < kmain && q < rows; q += blockDim.x) big = fmax(big, fabs(M[q + static_cast<long long>(q) * ld]));
  double rmax = block_max<kBlock>(big, red);
  double low = 0.0;
  for (int q = threadIdx.x; q < kmain && q < rows; q += blockDim.x)
    if (!(fabs(M[q + static_cast<long long>(q) * ld]) > tol * rmax)) low = 1.0;
  const bool dependent = kmain > rows || block_max<kBlock>(low, red) > 0.0;
  if (dependent) {
    if (threadIdx.x == 0) {
      deficient[j] = 1;
      rank[j] = 0;
    }
    return;
  }
  const int kq = max(0, min(rows - kmain, g));
  // The triangle's own entries only: the reflectors of the QR below its diagonal are dropped.
  for (int e = threadIdx.x; e < kq * g; e += blockDim.x) {
    const int r = e % kq, c = e / kq;
    if (r > c) M[kmain + r + static_cast<long long>(kmain + c) * ld] = 0.0;
  }
  __syncthreads();
  int r2 = 0;
  bool counting = true;
  for (int t = 0; t < kq; ++t) {
    // The pivot: the remaining column of the largest norm over rows t .. kq - 1 (the first of equals).
    double best = -1.0;
    int arg = t;
    for (int c = t + threadIdx.x; c < g; c += blockDim.x) {
      double ss = 0.0;
      for (int r = t; r < kq; ++r) {
        const double v = M[kmain + r + static_cast<long long>(kmain + c) * ld];
        ss += v * v;
      }
      if (ss > best) {
        best = ss;
        arg = c;
      }
    }
    red[threadIdx.x] = best;
    at[threadIdx.x] = arg;
    __syncthreads();
    for (int h = kBlock / 2; h > 0; h >>= 1) {
      if (threadIdx.x < h) {
        const double o = red[threadIdx.x + h];
        const int oa = at[threadIdx.x + h];
        if (o > red[threadIdx.x] || (o == red[threadIdx.x] && oa < at[threadIdx.x])) {
          red[threadIdx.x] = o;
          at[threadIdx.x] = oa;
        }
      }
      __syncthreads();
    }
    const int p = at[0];
    __syncthreads();
    if (p != t) {
      // Swap whole columns (the main rows too) and their places in perm.
      for (int r = threadIdx.x; r < kmain + kq; r += blockDim.x) {
        double* a = M + r + static_cast<long long>(kmain + t) * ld;
        double* b = M + r + static_cast<long long>(kmain + p) * ld;
        const double v = *a;
        *a = *b;
        *b = v;
      }
      if (threadIdx.x == 0) {
        const int v = perm[sl.col_off + kmain + t];
        perm[sl.col_off + kmain + t] = perm[sl.col_off + kmain + p];
        perm[sl.col_off + kmain + p] = v;
      }
    }
    __syncthreads();
    // The reflector of column t (dlarfg).
    double* x = M + kmain + t + static_cast<long long>(kmain + t) * ld;
    if (threadIdx.x == 0) {
      double ss = 0.0;
      for (int r = 1; r < kq - t; ++r) ss += x[r] * x[r];
      reflector(x[0], ss, &beta_tau[0], &beta_tau[1]);
      if (beta_tau[1] != 0.0) {
        const double inv = 1.0 / (x[0] - beta_tau[0]);
        for (int r = 1; r < kq - t; ++r) x[r] *= inv;
      }
    }
    __syncthreads();
    const double tau = beta_tau[1];
    // H = I - tau v v^T on the global columns after t and on the nonlinear columns and h.
    const int others = (g - t - 1) + (m + 1 - kc);
    for (int e = threadIdx.x; e < others; e += blockDim.x) {
      const int c = e < g - t - 1 ? kmain + t + 1 + e : kc + (e - (g - t - 1));
      double* y = M + kmain + t + static_cast<long long>(c) * ld;
      double d = y[0];
      for (int r = 1; r < kq - t; ++r) d += x[r] * y[r];
      d *= tau;
      y[0] -= d;
      for (int r = 1; r < kq - t; ++r) y[r] -= d * x[r];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      x[0] = beta_tau[0];
      for (int r = 1; r < kq - t; ++r) x[r] = 0.0;
    }
    __syncthreads();
    if (t == 0 && (kmain == 0 || with_globals)) rmax = fmax(rmax, fabs(x[0]));
    if (counting && fabs(x[0]) > tol * rmax) ++r2;
    else counting = false;
  }
  if (threadIdx.x == 0) {
    deficient[j] = 0;
    rank[j] = kmain + r2;
  }
}

// Block j -> call j (not deficient): T = the rows rank .. min(rows, m + 1) - 1 of the nonlinear
// columns and h of M's R, leading dimension those rows.
__global__ void copy_t_kernel(const VarProSlot* slots, const int* rows_of, const int* rank, const int* deficient,
                              const double* B, double* T) {
  const int j = blockIdx.x;
  if (deficient[j]) return;
  const VarProSlot sl = slots[j];
  const int r0 = rank[j], tr = min(rows_of[j], sl.m + 1) - r0, cols = sl.m + 1 - sl.kc;
  if (tr <= 0) return;
  for (long long e = threadIdx.x; e < static_cast<long long>(tr) * cols; e += blockDim.x) {
    const int r = static_cast<int>(e % tr), c = static_cast<int>(e / tr);
    // Below the diagonal of all of M's R: its reflectors, not R.
    T[sl.t_off + e] = r0 + r > sl.kc + c ? 0.0 : B[sl.b_off + r0 + r + static_cast<long long>(sl.kc + c) * sl.ldb];
  }
}

// Block j -> call j (not deficient), after the QR of T: its reflectors below the diagonal
// cleared (R_bb and h_b remain), and W = scale S scale over the rank linear columns in the
// order of R_cc by the nonlinear ones (leading dimension rank).
__global__ void reduced_prep_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                                    const int* rows_of, const int* rank, const int* deficient, const int* cols,
                                    const int* perm, const double* scale, const double* S, double* T, double* W) {
  const int j = blockIdx.x;
  if (deficient[j]) return;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const int r0 = rank[j], tr = min(rows_of[j], sl.m + 1) - r0, kb = sl.m - sl.kc;
  for (long long e = threadIdx.x; e < static_cast<long long>(max(tr, 0)) * (kb + 1); e += blockDim.x) {
    const int r = static_cast<int>(e % tr), c = static_cast<int>(e / tr);
    if (r > c) T[sl.t_off + e] = 0.0;
  }
  const double* sc = scale + nd.vec_off;
  const int* cl = cols + sl.col_off;
  for (long long e = threadIdx.x; e < static_cast<long long>(r0) * kb; e += blockDim.x) {
    const int k = static_cast<int>(e % r0), c = static_cast<int>(e / r0);
    const int q = perm[sl.col_off + k];
    W[sl.w_off + e] = sc[cl[q]] * S[sl.s_off + q + static_cast<long long>(c) * sl.m] * sc[cl[sl.kc + c]];
  }
}

// Block j -> call j (not deficient), on the lower triangle of A: stage 0 adds scale S_bb scale;
// stage 1 subtracts U + U^T; stage 2 copies the lower triangle to the upper.
__global__ void reduced_terms_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets,
                                     const int* rank, const int* deficient, const int* cols, const double* scale,
                                     const double* S, const double* U, double* A, int stage) {
  const int j = blockIdx.x;
  if (deficient[j] || (stage == 1 && rank[j] == 0)) return;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const int kb = sl.m - sl.kc;
  const double* sc = scale + nd.vec_off;
  const int* non = cols + sl.col_off + sl.kc;
  for (long long e = threadIdx.x; e < static_cast<long long>(kb) * kb; e += blockDim.x) {
    const int r = static_cast<int>(e % kb), c = static_cast<int>(e / kb);
    if (r < c) continue;
    double& a = A[sl.a_off + e];
    if (stage == 0)
      a += sc[non[r]] * S[sl.s_off + sl.kc + r + static_cast<long long>(c) * sl.m] * sc[non[c]];
    else if (stage == 1)
      a -= U[sl.u_off + e] + U[sl.u_off + c + static_cast<long long>(r) * kb];
    else
      A[sl.a_off + c + static_cast<long long>(r) * kb] = a;
  }
}


// Block j -> call j whose mode is unknown (go[j]): T's diagonal t (1 / sqrt |A_kk|, 0 for a
// row at most kSingularRel of the largest), C = T A T with unit diagonal where t = 0, and the
// copy C + kSingularRel I to factorize.
__global__ void unit_diagonal_kernel(const VarProSlot* slots, const int* go, const double* A, double* V, double* L,
                                     double* E) {
  GS_SHARED(double, red, [kBlock]);
  const int j = blockIdx.x;
  if (!go[j]) return;
  const VarProSlot sl = slots[j];
  const int kb = sl.m - sl.kc;
  const double* a = A + sl.a_off;
  double big = 0.0;
  for (int k = threadIdx.x; k < kb; k += blockDim.x) big = fmax(big, fabs(a[k + static_cast<long long>(k) * kb]));
  const double dmax = block_max<kBlock>(big, red);
  double* t = E + sl.e_off;
  for (int k = threadIdx.x; k < kb; k += blockDim.x) {
    const double d = fabs(a[k + static_cast<long long>(k) * kb]);
    t[k] = d > kSingularRel * dmax && d > 0.0 ? 1.0 / sqrt(d) : 0.0;
  }
  __syncthreads();
  for (long long e = threadIdx.x; e < static_cast<long long>(kb) * kb; e += blockDim.x) {
    const int r = static_cast<int>(e % kb), c = static_cast<int>(e / kb);
    double v = t[r] * a[e] * t[c];
    if (r == c && t[c] == 0.0) v = 1.0;
    V[sl.v_off + e] = v;
    L[sl.l_off + e] = r == c ? v + kSingularRel : v;
  }
}

// Block j -> call j in Cholesky mode (go[j]): L = C + lambda I, and z = -t gr.
__global__ void damp_kernel(const VarProSlot* slots, const int* go, const double* lambda, const double* gr,
                            const double* V, double* L, const double* E, double* Z) {
  const int j = blockIdx.x;
  if (!go[j]) return;
  const VarProSlot sl = slots[j];
  const int kb = sl.m - sl.kc;
  for (long long e = threadIdx.x; e < static_cast<long long>(kb) * kb; e += blockDim.x) {
    const int r = static_cast<int>(e % kb), c = static_cast<int>(e / kb);
    L[sl.l_off + e] = V[sl.v_off + e] + (r == c ? lambda[j] : 0.0);
  }
  for (int k = threadIdx.x; k < kb; k += blockDim.x) Z[sl.z_off + k] = -E[sl.e_off + k] * gr[sl.gr_off + k];
}

// Block j -> call j: the network's step zeroed; then, for a call with a step to write (go[j]: 1
// Cholesky, after the solve of Z in place; 2 eigen), the step z, its model (pred, slope,
// curvature: var_pro.h's reduced_solve) and the step at the nonlinear columns, scale t z.
__global__ void finish_solve_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets, const int* go,
                                    const int* chol_info, const double* lambda, const int* cols, const double* scale,
                                    const double* gr, const double* V, const double* E, double* Z, double* L,
                                    double* model, double* step) {
  GS_SHARED(double, red, [kBlock]);
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const int P = num_params(nd.s);
  double* st = step + nd.vec_off;
  for (int q = threadIdx.x; q < P; q += blockDim.x) st[q] = 0.0;
  if (!go[j] || (go[j] == 1 && chol_info[j] != 0)) return;
  const int kb = sl.m - sl.kc;
  const double lam = lambda[j];
  const double* t = E + sl.e_off;
  double* z = Z + sl.z_off;
  double p = 0.0, curv = 0.0, slope = 0.0;
  if (go[j] == 2) {
    // y = V^T rhs / (|ev| + lambda) into L's first column, then z = V y.
    const double* ev = E + sl.e_off + kb;
    double* y = L + sl.l_off;
    for (int k = threadIdx.x; k < kb; k += blockDim.x) {
      double d = 0.0;
      for (int r = 0; r < kb; ++r) d += V[sl.v_off + r + static_cast<long long>(k) * kb] * (-t[r] * gr[sl.gr_off + r]);
      const double yk = d / (fabs(ev[k]) + lam);
      y[k] = yk;
      const double gk = -(fabs(ev[k]) + lam) * yk;
      p -= gk * yk + 0.5 * ev[k] * yk * yk;
      curv += ev[k] * yk * yk;
    }
    __syncthreads();
    for (int r = threadIdx.x; r < kb; r += blockDim.x) {
      double v = 0.0;
      for (int k = 0; k < kb; ++k) v += V[sl.v_off + r + static_cast<long long>(k) * kb] * y[k];
      z[r] = v;
    }
    __syncthreads();
  }
  for (int k = threadIdx.x; k < kb; k += blockDim.x) {
    const double rhs = -t[k] * gr[sl.gr_off + k];
    if (go[j] == 1) {
      p += rhs * z[k] + lam * z[k] * z[k];
      curv += rhs * z[k] - lam * z[k] * z[k];
    }
    slope -= rhs * z[k];
  }
  const double sums[3] = {go[j] == 1 ? 0.5 * p : p, slope, curv};
  for (int q = 0; q < 3; ++q) {
    const double total = block_sum<kBlock>(sums[q], red);
    if (threadIdx.x == 0) model[3 * j + q] = total;
  }
  __syncthreads();
  const int* non = cols + sl.col_off + sl.kc;
  const double* sc = scale + nd.vec_off;
  for (int k = threadIdx.x; k < kb; k += blockDim.x) st[non[k]] = sc[non[k]] * t[k] * z[k];
}




// Block j -> call j: trial = theta + alpha[j] step (theta alone without take_step), then every
// thin neuron's kink pushed out of the domain (push_out_thin of var_pro.h).
__global__ void start_trial_kernel(const CallNet* calls, const DevNet* nets, const DevSet* train, const double* theta,
                                   const double* step, const double* alpha, bool take_step, double* trial) {
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const int p = num_params(nd.s);
  const double a = take_step ? alpha[j] : 0.0;
  double* out = trial + nd.theta_off;
  for (int q = threadIdx.x; q < p; q += blockDim.x)
    out[q] = theta[nd.theta_off + q] + (take_step ? a * step[nd.vec_off + q] : 0.0);
  __syncthreads();
  if (!relu1d_fast_path(nd.s)) return;
  const DevSet set = train[nd.data];
  const Points1d pts{set.x, set.n, set.lo, set.hi};
  for (int i = threadIdx.x; i < nd.s.n; i += blockDim.x) push_out_thin_neuron(nd.s, pts, out, i);
}

// Block j -> call j of a trial, from X, compress_relu1d's [B | h] of its linear columns (cols,
// ascending): least_squares_values' scaled system M = [B_o diag(1 / c) | B x - h] (x the trial's
// linear parameters, c the columns' norms, computed as the host's), with the columns in the
// order o (ord): the nonzero ones that are not global first, then the rest. A column that is
// zero or not finite (c = 0) is left out as the host leaves it out: zero in M and in B x, among
// the global ones, where the pivoted QR puts it past the rank. Writes the slot's g (those last
// columns).
__global__ void trial_prepare_kernel(const CallNet* calls, VarProSlot* slots, const DevNet* nets, const int* rows_of,
                                     const int* cols, const unsigned char* global, const double* X,
                                     const double* trial, double* M, double* cnorm, int* ord) {
  GS_SHARED(int, kmain, [1]);
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const int rows = rows_of[j], m = sl.m, ld = sl.ldb;
  const double* Xj = X + sl.b_off;
  double* Mj = M + sl.b_off;
  for (int q = threadIdx.x; q < m; q += blockDim.x) {
    // The norm in two passes, scaled by the largest entry (least_squares_values').
    const double* col = Xj + static_cast<long long>(q) * ld;
    double amax = 0.0;
    for (int k = 0; k < rows; ++k) amax = fmax(amax, fabs(col[k]));
    double nrm = 0.0;
    if (amax > 0.0 && isfinite(amax)) {
      const double inv = 1.0 / amax;
      double ss = 0.0;
      for (int k = 0; k < rows; ++k) {
        const double v = col[k] * inv;
        ss += v * v;
      }
      nrm = amax * sqrt(ss);
    }
    cnorm[sl.col_off + q] = nrm > 0.0 && isfinite(nrm) ? nrm : 0.0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int k = 0;
    for (int q = 0; q < m; ++q)
      if (cnorm[sl.col_off + q] > 0.0 && !global[sl.col_off + q]) ord[sl.col_off + k++] = q;
    kmain[0] = k;
    for (int q = 0; q < m; ++q)
      if (!(cnorm[sl.col_off + q] > 0.0 && !global[sl.col_off + q])) ord[sl.col_off + k++] = q;
    slots[j].g = m - kmain[0];
  }
  __syncthreads();
  for (long long e = threadIdx.x; e < static_cast<long long>(rows) * m; e += blockDim.x) {
    const int r = static_cast<int>(e % rows), k = static_cast<int>(e / rows);
    const int q = ord[sl.col_off + k];
    const double c = cnorm[sl.col_off + q];
    // A zero or non-finite column (cnorm 0) is left out, as the host leaves it out: zero here.
    Mj[r + static_cast<long long>(k) * ld] = c > 0.0 ? Xj[r + static_cast<long long>(q) * ld] / c : 0.0;
  }
  const double* th = trial + nd.theta_off;
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    double v = 0.0;
    for (int q = 0; q < m; ++q)
      if (cnorm[sl.col_off + q] > 0.0) v += Xj[r + static_cast<long long>(q) * ld] * th[cols[sl.col_off + q]];
    Mj[r + static_cast<long long>(m) * ld] = v - Xj[r + static_cast<long long>(m) * ld];
  }
}

// Block j -> call j of a trial (not deficient), after main_qr: Z = [R_12 | Q^T rhs] over the
// rank rows (leading dimension m; R_12 the columns past the rank), for the triangular solve.
__global__ void trial_rhs_kernel(const VarProSlot* slots, const int* rank, const int* deficient, const double* M,
                                 const long long* zoff, double* Z) {
  const int j = blockIdx.x;
  if (deficient[j]) return;
  const VarProSlot sl = slots[j];
  const int r = rank[j], m = sl.m, d = m - r;
  double* z = Z + zoff[j];
  for (long long e = threadIdx.x; e < static_cast<long long>(r) * (d + 1); e += blockDim.x) {
    const int i = static_cast<int>(e % r), t = static_cast<int>(e / r);
    z[i + static_cast<long long>(t) * m] = M[sl.b_off + i + static_cast<long long>(t < d ? r + t : m) * sl.ldb];
  }
}

// Block j -> call j of a trial (not deficient), after Z's rank rows took R_11^-1: the solution of
// least norm (qr_solve of least_squares.cpp): y = [R_11^-1 Q^T rhs; 0] less its projection on the
// null space, spanned by the columns of [-R_11^-1 R_12; I], by a Householder QR of those; then
// the trial's linear parameters x = y / c, zero at the zero columns.
__global__ void least_norm_kernel(const CallNet* calls, const VarProSlot* slots, const DevNet* nets, const int* rank,
                                  const int* deficient, const int* cols, const double* cnorm, const int* ord,
                                  const int* perm, const long long* zoff, double* Z, double* trial) {
  GS_SHARED(double, red, [kBlock]);
  GS_SHARED(double, beta_tau, [2]);
  const int j = blockIdx.x;
  if (deficient[j]) return;
  const DevNet& nd = nets[calls[j].net];
  const VarProSlot sl = slots[j];
  const int r = rank[j], m = sl.m, d = m - r;
  double* z = Z + zoff[j];
  double* y = z + static_cast<long long>(d) * m;  // column d
  double* tau = y + m;                              // d entries
  for (int i = r + threadIdx.x; i < m; i += blockDim.x) y[i] = 0.0;
  for (long long e = threadIdx.x; e < static_cast<long long>(m) * d; e += blockDim.x) {
    const int i = static_cast<int>(e % m), t = static_cast<int>(e / m);
    z[e] = i < r ? -z[e] : (i == r + t ? 1.0 : 0.0);
  }
  __syncthreads();
  // Reflector t (dlarfg) on rows t .. m - 1 of column t, applied to the later columns and y.
  for (int t = 0; t < d; ++t) {
    double* x = z + static_cast<long long>(t) * m;
    double ss = 0.0;
    for (int i = t + 1 + threadIdx.x; i < m; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum<kBlock>(ss, red);
    if (threadIdx.x == 0) reflector(x[t], ss, &beta_tau[0], &beta_tau[1]);
    __syncthreads();
    const double beta = beta_tau[0], tt = beta_tau[1];
    if (tt != 0.0) {
      const double inv = 1.0 / (x[t] - beta);
      __syncthreads();
      for (int i = t + 1 + threadIdx.x; i < m; i += blockDim.x) x[i] *= inv;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      x[t] = 1.0;  // v's unit entry, while the reflector is applied
      tau[t] = tt;
    }
    __syncthreads();
    for (int c = t + 1; c <= d; ++c) {
      double* col = c < d ? z + static_cast<long long>(c) * m : y;
      double dot = 0.0;
      for (int i = t + threadIdx.x; i < m; i += blockDim.x) dot += x[i] * col[i];
      dot = block_sum<kBlock>(dot, red) * tt;
      for (int i = t + threadIdx.x; i < m; i += blockDim.x) col[i] -= dot * x[i];
      __syncthreads();
    }
  }
  // Q^T y with its first d entries (the null space's) cleared, then Q back.
  for (int i = threadIdx.x; i < d; i += blockDim.x) y[i] = 0.0;
  __syncthreads();
  for (int t = d - 1; t >= 0; --t) {
    const double* x = z + static_cast<long long>(t) * m;
    double dot = 0.0;
    for (int i = t + threadIdx.x; i < m; i += blockDim.x) dot += x[i] * y[i];
    dot = block_sum<kBlock>(dot, red) * tau[t];
    for (int i = t + threadIdx.x; i < m; i += blockDim.x) y[i] -= dot * x[i];
    __syncthreads();
  }
  double* th = trial + nd.theta_off;
  for (int k = threadIdx.x; k < m; k += blockDim.x) {
    const int q = ord[sl.col_off + perm[sl.col_off + k]];
    const double c = cnorm[sl.col_off + q];
    th[cols[sl.col_off + q]] = c > 0.0 ? y[k] / c : 0.0;
  }
}

// Block j -> call j: theta = trial over all of its parameters.
__global__ void take_trial_kernel(const CallNet* calls, const DevNet* nets, const double* trial, double* theta) {
  const DevNet& nd = nets[calls[blockIdx.x].net];
  const int p = num_params(nd.s);
  for (int q = threadIdx.x; q < p; q += blockDim.x) theta[nd.theta_off + q] = trial[nd.theta_off + q];
}


// Block j -> call j: each parameter's ColumnClass (var_pro.h) at theta with the Jacobi scale,
// into out from pack_off[j]; its roles (var_pro_roles, one thread) at vec_off in role.
__global__ void column_classes_kernel(const CallNet* calls, const DevNet* nets, const DevSet* train,
                                      const double* theta, const double* scale, Role* role,
                                      const long long* pack_off, unsigned char* out) {
  const int j = blockIdx.x;
  const DevNet& nd = nets[calls[j].net];
  const DevSet set = train[nd.data];
  const Points1d pts{set.x, set.n, set.lo, set.hi};
  const double* th = theta + nd.theta_off;
  Role* rl = role + nd.vec_off;
  if (threadIdx.x == 0) var_pro_roles(nd.s, th, &pts, rl);
  __syncthreads();
  for (int q = threadIdx.x; q < num_params(nd.s); q += blockDim.x)
    out[pack_off[j] + q] = static_cast<unsigned char>(column_class(nd.s, th, rl, scale + nd.vec_off, &pts, q));
}

}  // namespace

VarProSlot VarProLayout::add(const Shape& sh, int m, int kc, int g, int ldb) {
  const int kb = m - kc;
  const VarProSlot sl{cols, m, kc, g, b, ldb, b + static_cast<long long>(m) * ldb, s, run, a, gr, tau, t, w,
                      a, a, a, e, gr};
  cols += m;
  b += static_cast<long long>(ldb) * (m + 1);
  s += static_cast<long long>(m) * kb;
  run += compress_scratch(sh);
  a += static_cast<long long>(kb) * kb;
  gr += kb;
  tau += m + 1;
  t += static_cast<long long>(m + 1) * (kb + 1);
  w += static_cast<long long>(kc) * kb;
  e += 2LL * kb;
  return sl;
}

int compress_rows_bound(const Shape& s, int npoints) {
  return static_cast<int>(
      std::min<long long>(npoints, static_cast<long long>(column_degree(s.arch) + 1) * (s.n + 1)));
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

std::size_t solve_workspace_bytes(cusolverDnHandle_t solver, cusolverDnParams_t params, int n) {
  n = std::max(1, n);
  std::size_t dev = 0, host = 0, dev2 = 0;
  CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(solver, params, CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, nullptr, n,
                                             CUDA_R_64F, &dev, &host));
  if (host != 0) throw std::logic_error("cusolverDnXpotrf asks for host workspace");
  CUSOLVER_CHECK(cusolverDnXsyevBatched_bufferSize(solver, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                                   CUDA_R_64F, nullptr, n, CUDA_R_64F, nullptr, CUDA_R_64F, &dev2,
                                                   &host, 1));
  if (host != 0) throw std::logic_error("cusolverDnXsyevBatched asks for host workspace");
  return std::max(dev, dev2);
}

namespace {

// Sorts list stably by key(item) and returns its runs [begin, end) of equal keys, in order: the
// groups of one size that a batched call takes.
template <class T, class Key>
std::vector<std::pair<std::size_t, std::size_t>> sort_into_runs(std::vector<T>& list, Key key) {
  std::stable_sort(list.begin(), list.end(), [&](const T& a, const T& b) { return key(a) < key(b); });
  std::vector<std::pair<std::size_t, std::size_t>> runs;
  for (std::size_t b = 0; b < list.size();) {
    std::size_t e = b + 1;
    while (e < list.size() && key(list[e]) == key(list[b])) ++e;
    runs.push_back({b, e});
    b = e;
  }
  return runs;
}

// dst[to[k]] = src[k] for the k < n with to[k] >= 0.
__global__ void scatter_ints_kernel(const int* src, const int* to, int n, int* dst) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < n && to[k] >= 0) dst[to[k]] = src[k];
}

// The Cholesky factorizations of reduced_solves: the matrices at L (l_off, size m - kc) of the
// listed calls, each factorization's info into w.chol_info at the call's position, and with
// `solve` the solve of each right-hand side at Z (z_off) by its factor. The calls go by size;
// each size group takes the table's path.
void reduced_cholesky(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params,
                      const CholeskyTable& table, const std::vector<VarProSlot>& host_slots, std::vector<int> list,
                      int count, bool solve, const SolveWork& w, ReducedCholeskyCounts* counts) {
  const int n = static_cast<int>(list.size());
  if (n == 0) return;
  auto kb_of = [&](int j) { return host_slots[j].m - host_slots[j].kc; };
  // Size groups [begin, end) of list, and the path of each.
  const std::vector<std::pair<std::size_t, std::size_t>> groups = sort_into_runs(list, kb_of);
  std::vector<char> batched(groups.size());
  std::vector<double*> ptrs(2 * static_cast<std::size_t>(n));
  std::vector<int> to(n, -1);
  bool any = false;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto [b, e] = groups[g];
    batched[g] = choose_cholesky(table, kb_of(list[b]), static_cast<int>(e - b)) == CholeskyPath::kBatched;
    any = any || batched[g];
    for (std::size_t k = b; k < e; ++k) {
      const VarProSlot& sl = host_slots[list[k]];
      ptrs[k] = w.L + sl.l_off;
      ptrs[n + k] = w.Z + sl.z_off;
      if (batched[g]) to[k] = list[k];
    }
  }
  if (any) {
    copies.to_device(w.ptrs, ptrs.data(), ptrs.size() * sizeof(double*), stream);
    copies.to_device(w.order + n, to.data(), n * sizeof(int), stream);
  }
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const auto [b, e] = groups[g];
    const int m = kb_of(list[b]), nb = static_cast<int>(e - b);
    counts->factorizations += nb;
    if (batched[g]) {
      CUSOLVER_CHECK(cusolverDnDpotrfBatched(solver, CUBLAS_FILL_MODE_LOWER, m, w.ptrs + b, m, w.order + b, nb));
      // potrs on a failed factorization yields garbage that the info check discards.
      if (solve)
        CUSOLVER_CHECK(cusolverDnDpotrsBatched(solver, CUBLAS_FILL_MODE_LOWER, m, 1, w.ptrs + b, m, w.ptrs + n + b, m,
                                               w.info + 2 * count + list[b], nb));
      continue;
    }
    counts->looped += nb;
    for (std::size_t k = b; k < e; ++k) {
      const int j = list[k];
      CUSOLVER_CHECK(cusolverDnXpotrf(solver, params, CUBLAS_FILL_MODE_LOWER, m, CUDA_R_64F, ptrs[k], m, CUDA_R_64F,
                                      w.ws, w.ws_bytes, nullptr, 0, w.chol_info + j));
      if (solve)
        CUSOLVER_CHECK(cusolverDnXpotrs(solver, params, CUBLAS_FILL_MODE_LOWER, m, 1, CUDA_R_64F, ptrs[k], m,
                                        CUDA_R_64F, ptrs[n + k], m, w.info + 2 * count + j));
    }
  }
  if (any) {
    GS_LAUNCH(scatter_ints_kernel, (n + kBlock - 1) / kBlock, kBlock, 0, stream)(w.order, w.order + n, n, w.chol_info);
    CUDA_CHECK_LAUNCH("scatter_ints_kernel");
  }
}

}  // namespace

void reduced_solves(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params,
                    const CholeskyTable& table, const CallNet* calls, int count, const VarProSlot* slots,
                    const std::vector<VarProSlot>& host_slots, const DevNet* nets, const int* cols,
                    const double* scale, const double* A, const double* gr, const SolveWork& w,
                    const std::vector<double>& lambda, std::vector<int>* mode, std::vector<int>* info,
                    std::vector<StepModel>* model, double* step, ReducedCholeskyCounts* counts) {
  info->assign(count, 0);
  model->assign(count, StepModel{});
  if (count == 0) return;
  CUSOLVER_CHECK(cusolverDnSetStream(solver, stream));
  auto kb_of = [&](int j) { return host_slots[j].m - host_slots[j].kc; };
  // Per call, on the device: lambda, then the go flags of each kernel.
  std::vector<double> h_lambda(lambda);
  std::vector<int> go(count, 0);
  // Each new system: C, its Cholesky test, then the eigendecomposition where that fails.
  for (int j = 0; j < count; ++j) go[j] = (*mode)[j] == ReducedSystem::kUnknown && kb_of(j) > 0;
  copies.to_device(w.info, go.data(), count * sizeof(int), stream);
  GS_LAUNCH(unit_diagonal_kernel, count, kBlock, 0, stream)(slots, w.info, A, w.V, w.L, w.E);
  CUDA_CHECK_LAUNCH("unit_diagonal_kernel");
  std::vector<int> list;
  for (int j = 0; j < count; ++j)
    if (go[j]) list.push_back(j);
  reduced_cholesky(stream, copies, solver, params, table, host_slots, list, count, false, w, counts);
  std::vector<int> chol(count, 0);
  copies.to_host(chol.data(), w.chol_info, count * sizeof(int), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  bool eigen = false;
  for (int j = 0; j < count; ++j) {
    if (!go[j]) continue;
    if (chol[j] < 0) throw std::logic_error("reduced_solves: Cholesky info " + std::to_string(chol[j]));
    (*mode)[j] = chol[j] == 0 ? ReducedSystem::kCholesky : ReducedSystem::kEigen;
    if (chol[j] == 0) continue;
    const VarProSlot& sl = host_slots[j];
    CUSOLVER_CHECK(cusolverDnXsyevBatched(solver, params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, kb_of(j),
                                          CUDA_R_64F, w.V + sl.v_off, kb_of(j), CUDA_R_64F, w.E + sl.e_off + kb_of(j),
                                          CUDA_R_64F, w.ws, w.ws_bytes, nullptr, 0, w.chol_info + j, 1));
    eigen = true;
  }
  if (eigen) {
    copies.to_host(chol.data(), w.chol_info, count * sizeof(int), stream);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int j = 0; j < count; ++j) {
      if (!go[j] || (*mode)[j] != ReducedSystem::kEigen) continue;
      if (chol[j] < 0) throw std::logic_error("reduced_solves: cusolverDnXsyevBatched info " + std::to_string(chol[j]));
      if (chol[j] > 0) {
        // No eigendecomposition: refused like a failed Cholesky; the next try tests afresh.
        (*mode)[j] = ReducedSystem::kUnknown;
        (*info)[j] = chol[j];
      }
    }
  }
  // The try: a damped Cholesky solve, or the eigenvectors' products.
  double* d_lambda = w.model + 3 * count;
  copies.to_device(d_lambda, h_lambda.data(), count * sizeof(double), stream);
  for (int j = 0; j < count; ++j)
    go[j] = (*info)[j] != 0 || kb_of(j) == 0 ? 0 : (*mode)[j] == ReducedSystem::kCholesky ? 1 : 2;
  copies.to_device(w.info, go.data(), count * sizeof(int), stream);
  std::vector<int> is_chol(count);
  for (int j = 0; j < count; ++j) is_chol[j] = go[j] == 1;
  copies.to_device(w.info + count, is_chol.data(), count * sizeof(int), stream);
  GS_LAUNCH(damp_kernel, count, kBlock, 0, stream)(slots, w.info + count, d_lambda, gr, w.V, w.L, w.E, w.Z);
  CUDA_CHECK_LAUNCH("damp_kernel");
  CUDA_CHECK(cudaMemsetAsync(w.chol_info, 0, count * sizeof(int), stream));
  CUDA_CHECK(cudaMemsetAsync(w.info + 2 * count, 0, count * sizeof(int), stream));  // the solves' infos
  list.clear();
  for (int j = 0; j < count; ++j)
    if (go[j] == 1) list.push_back(j);
  reduced_cholesky(stream, copies, solver, params, table, host_slots, list, count, true, w, counts);
  GS_LAUNCH(finish_solve_kernel, count, kBlock, 0, stream)(calls, slots, nets, w.info, w.chol_info, d_lambda, cols,
                                                           scale, gr, w.V, w.E, w.Z, w.L, w.model, step);
  CUDA_CHECK_LAUNCH("finish_solve_kernel");
  std::vector<double> m(3 * count);
  copies.to_host(m.data(), w.model, 3 * count * sizeof(double), stream);
  copies.to_host(chol.data(), w.chol_info, count * sizeof(int), stream);
  std::vector<int> solve_info(count);
  copies.to_host(solve_info.data(), w.info + 2 * count, count * sizeof(int), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  for (int j = 0; j < count; ++j) {
    if (go[j] == 1 && chol[j] < 0) throw std::logic_error("reduced_solves: Cholesky info " + std::to_string(chol[j]));
    if (solve_info[j] < 0) throw std::logic_error("reduced_solves: Cholesky solve info " + std::to_string(solve_info[j]));
    if (go[j] == 1 && chol[j] > 0) (*info)[j] = chol[j];
    if (go[j] != 0 && (*info)[j] == 0) (*model)[j] = StepModel{m[3 * j], m[3 * j + 1], m[3 * j + 2]};
  }
}

std::size_t reduced_workspace_bytes(cusolverDnHandle_t solver, cusolverDnParams_t params,
                                   const std::vector<VarProSlot>& slots) {
  std::size_t most = 0;
  for (const VarProSlot& sl : slots) {
    // The QR of M (at most ldb rows) and of T (at most m + 1 rows), each asked at its size.
    const int64_t sizes[2][2] = {{sl.ldb, sl.m + 1}, {sl.m + 1, sl.m - sl.kc + 1}};
    for (const auto& mn : sizes) {
      std::size_t dev = 0, host = 0;
      CUSOLVER_CHECK(cusolverDnXgeqrf_bufferSize(solver, params, std::max<int64_t>(1, mn[0]), std::max<int64_t>(1, mn[1]),
                                                 CUDA_R_64F, nullptr, std::max<int64_t>(1, mn[0]), CUDA_R_64F, nullptr,
                                                 CUDA_R_64F, &dev, &host));
      if (host != 0) throw std::logic_error("cusolverDnXgeqrf asks for host workspace");
      most = std::max(most, dev);
    }
  }
  return most;
}

namespace {

// C = alpha op(A) op(B) + beta C for each problem of a list, in one cublasDgemmGroupedBatched:
// the problems grouped by their sizes and scalars on the host, their A, B and C pointers sent
// to ptrs (3 per problem, device memory).
struct Gemm {
  int m, n, k;
  double alpha;
  const double* A;
  int lda;
  const double* B;
  int ldb;
  double beta;
  double* C;
  int ldc;
};
void grouped_gemm(cublasHandle_t blas, HostCopies& copies, cudaStream_t stream, std::vector<Gemm> list,
                  double** ptrs) {
  if (list.empty()) return;
  // Every problem here is A^T B.
  auto key = [](const Gemm& g) { return std::make_tuple(g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.alpha, g.beta); };
  const std::vector<std::pair<std::size_t, std::size_t>> runs = sort_into_runs(list, key);
  const std::size_t n = list.size();
  std::vector<double*> host(3 * n);
  for (std::size_t p = 0; p < n; ++p) {
    host[p] = const_cast<double*>(list[p].A);
    host[n + p] = const_cast<double*>(list[p].B);
    host[2 * n + p] = list[p].C;
  }
  std::vector<int> m, nn, k, lda, ldb, ldc, size;
  std::vector<double> alpha, beta;
  for (const auto& [b, e] : runs) {
    const Gemm& g = list[b];
    m.push_back(g.m);
    nn.push_back(g.n);
    k.push_back(g.k);
    lda.push_back(std::max(1, g.lda));
    ldb.push_back(std::max(1, g.ldb));
    ldc.push_back(std::max(1, g.ldc));
    alpha.push_back(g.alpha);
    beta.push_back(g.beta);
    size.push_back(static_cast<int>(e - b));
  }
  // From pageable memory: the call returns once host has been read.
  copies.to_device(ptrs, host.data(), host.size() * sizeof(double*), stream);
  const int groups = static_cast<int>(size.size());
  const std::vector<cublasOperation_t> ta(groups, CUBLAS_OP_T), tb(groups, CUBLAS_OP_N);
  CUBLAS_CHECK(cublasDgemmGroupedBatched(blas, ta.data(), tb.data(), m.data(), nn.data(), k.data(), alpha.data(), ptrs,
                                         lda.data(), ptrs + n, ldb.data(), beta.data(), ptrs + 2 * n, ldc.data(),
                                         groups, size.data()));
}

// B := op(A)^-1 B with A upper triangular (side left, non-unit diagonal) for each problem of a
// list, each group of one size and op in one cublasDtrsmBatched, a group of one problem by
// cublasDtrsm: the problems grouped on the host, their A and B pointers sent to ptrs (2 per
// problem, device memory) for the batched calls.
struct Trsm {
  cublasOperation_t trans;
  int m, n;
  const double* A;
  int lda;
  double* B;
  int ldb;
};
void grouped_trsm(cublasHandle_t blas, HostCopies& copies, cudaStream_t stream, std::vector<Trsm> list,
                  double** ptrs) {
  if (list.empty()) return;
  auto key = [](const Trsm& t) { return std::make_tuple(static_cast<int>(t.trans), t.m, t.n, t.lda, t.ldb); };
  const std::vector<std::pair<std::size_t, std::size_t>> groups = sort_into_runs(list, key);
  const std::size_t n = list.size();
  std::vector<double*> host(2 * n);
  for (std::size_t p = 0; p < n; ++p) {
    host[p] = const_cast<double*>(list[p].A);
    host[n + p] = list[p].B;
  }
  // From pageable memory: the call returns once host has been read.
  if (groups.size() < n) copies.to_device(ptrs, host.data(), host.size() * sizeof(double*), stream);
  const double one = 1.0;
  for (const auto& [b, e] : groups) {
    const Trsm& t = list[b];
    if (e - b == 1)
      CUBLAS_CHECK(cublasDtrsm(blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, t.trans, CUBLAS_DIAG_NON_UNIT, t.m, t.n,
                               &one, t.A, t.lda, t.B, t.ldb));
    else
      CUBLAS_CHECK(cublasDtrsmBatched(blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, t.trans, CUBLAS_DIAG_NON_UNIT,
                                      t.m, t.n, &one, ptrs + b, t.lda, ptrs + n + b, t.ldb, static_cast<int>(e - b)));
  }
}

void check_qr_info(const std::vector<int>& info, const char* what) {
  for (std::size_t j = 0; j < info.size(); ++j)
    if (info[j] != 0)
      throw std::logic_error(std::string(what) + ": cuSOLVER info " + std::to_string(info[j]) + " for call " +
                             std::to_string(j));
}

// The first half of reduced_systems (and of the trial's least squares): one Householder QR of
// all of each call's M (cuSOLVER), then globals_kernel; the ranks and dependent flags to the host.
void main_qr(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params,
             const CallNet* calls, int count, const VarProSlot* slots, const std::vector<VarProSlot>& host_slots,
             const std::vector<int>& rows, const DevNet* nets, const DevSet* train, double* B, const ReducedWork& w,
             bool with_globals, std::vector<int>* rank, std::vector<int>* deficient) {
  // One Householder QR of all of each M.
  for (int j = 0; j < count; ++j) {
    const VarProSlot& sl = host_slots[j];
    if (rows[j] == 0) {
      CUDA_CHECK(cudaMemsetAsync(w.info + j, 0, sizeof(int), stream));
      continue;
    }
    CUSOLVER_CHECK(cusolverDnXgeqrf(solver, params, rows[j], sl.m + 1, CUDA_R_64F, B + sl.b_off, sl.ldb, CUDA_R_64F,
                                    w.tau + sl.tau_off, CUDA_R_64F, w.ws, w.ws_bytes, nullptr, 0, w.info + j));
  }
  GS_LAUNCH(globals_kernel, count, kBlock, 0, stream)(calls, slots, nets, train, w.rows, B, w.perm, w.rank,
                                                      w.deficient, with_globals);
  CUDA_CHECK_LAUNCH("globals_kernel");
  std::vector<int> info(count);
  copies.to_host(info.data(), w.info, count * sizeof(int), stream);
  copies.to_host(rank->data(), w.rank, count * sizeof(int), stream);
  copies.to_host(deficient->data(), w.deficient, count * sizeof(int), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  check_qr_info(info, "the QR of M");
}

}  // namespace

void reduced_systems(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params, cublasHandle_t blas,
                     const CallNet* calls, int count, const VarProSlot* slots, const std::vector<VarProSlot>& host_slots,
                     const std::vector<int>& rows, const DevNet* nets, const DevSet* train, const int* cols,
                     const double* scale, double* B, const double* S, const ReducedWork& w, std::vector<int>* rank,
                     std::vector<int>* deficient) {
  rank->assign(count, 0);
  deficient->assign(count, 0);
  if (count == 0) return;
  CUSOLVER_CHECK(cusolverDnSetStream(solver, stream));
  CUBLAS_CHECK(cublasSetStream(blas, stream));
  GS_LAUNCH(scale_system_kernel, count, kBlock, 0, stream)(calls, slots, nets, train, cols, scale, B);
  CUDA_CHECK_LAUNCH("scale_system_kernel");
  main_qr(stream, copies, solver, params, calls, count, slots, host_slots, rows, nets, train, B, w, false, rank,
          deficient);
  std::vector<int> info(count);
  // The QR of the rows below the rank: R_bb and h_b.
  GS_LAUNCH(copy_t_kernel, count, kBlock, 0, stream)(slots, w.rows, w.rank, w.deficient, B, w.T);
  CUDA_CHECK_LAUNCH("copy_t_kernel");
  std::vector<int> tr(count, 0);
  for (int j = 0; j < count; ++j) {
    const VarProSlot& sl = host_slots[j];
    tr[j] = std::min(rows[j], sl.m + 1) - (*rank)[j];
    CUDA_CHECK(cudaMemsetAsync(w.info + j, 0, sizeof(int), stream));
    if ((*deficient)[j] || tr[j] <= 0) continue;
    CUSOLVER_CHECK(cusolverDnXgeqrf(solver, params, tr[j], sl.m - sl.kc + 1, CUDA_R_64F, w.T + sl.t_off, tr[j],
                                    CUDA_R_64F, w.tau + sl.tau_off, CUDA_R_64F, w.ws, w.ws_bytes, nullptr, 0,
                                    w.info + j));
  }
  GS_LAUNCH(reduced_prep_kernel, count, kBlock, 0, stream)(calls, slots, nets, w.rows, w.rank, w.deficient, cols,
                                                           w.perm, scale, S, w.T, w.W);
  CUDA_CHECK_LAUNCH("reduced_prep_kernel");
  // A = R_bb^T R_bb and gr = R_bb^T h_b.
  std::vector<Gemm> gemms;
  for (int j = 0; j < count; ++j) {
    const VarProSlot& sl = host_slots[j];
    const int kb = sl.m - sl.kc, kr = std::max(0, std::min(tr[j], kb));
    if ((*deficient)[j] || kb == 0) continue;
    if (kr == 0) {
      // No rows below the rank: R_bb is empty.
      CUDA_CHECK(cudaMemsetAsync(w.A + sl.a_off, 0, sizeof(double) * kb * kb, stream));
      CUDA_CHECK(cudaMemsetAsync(w.gr + sl.gr_off, 0, sizeof(double) * kb, stream));
      continue;
    }
    const double* T = w.T + sl.t_off;
    gemms.push_back({kb, kb, kr, 1.0, T, tr[j], T, tr[j], 0.0, w.A + sl.a_off, kb});
    gemms.push_back({kb, 1, kr, 1.0, T, tr[j], T + static_cast<long long>(kb) * std::max(1, tr[j]), tr[j], 0.0,
                     w.gr + sl.gr_off, kb});
  }
  grouped_gemm(blas, copies, stream, gemms, w.ptrs);
  GS_LAUNCH(reduced_terms_kernel, count, kBlock, 0, stream)(calls, slots, nets, w.rank, w.deficient, cols, scale, S,
                                                            w.U, w.A, 0);
  CUDA_CHECK_LAUNCH("reduced_terms_kernel");
  // W = R_cc^-T W, U = R_cb^T W; A -= U + U^T + W^T W, gr -= W^T h_c (the last two after U's
  // terms).
  gemms.clear();
  std::vector<Gemm> after_u;
  std::vector<Trsm> solves;
  for (int j = 0; j < count; ++j) {
    const VarProSlot& sl = host_slots[j];
    const int kb = sl.m - sl.kc, r = (*rank)[j];
    if ((*deficient)[j] || kb == 0 || r == 0) continue;
    solves.push_back({CUBLAS_OP_T, r, kb, B + sl.b_off, sl.ldb, w.W + sl.w_off, r});
    gemms.push_back({kb, kb, r, 1.0, B + sl.b_off + static_cast<long long>(sl.kc) * sl.ldb, sl.ldb, w.W + sl.w_off, r,
                     0.0, w.U + sl.u_off, kb});
    after_u.push_back({kb, kb, r, -1.0, w.W + sl.w_off, r, w.W + sl.w_off, r, 1.0, w.A + sl.a_off, kb});
    after_u.push_back({kb, 1, r, -1.0, w.W + sl.w_off, r, B + sl.b_off + static_cast<long long>(sl.m) * sl.ldb,
                       sl.ldb, 1.0, w.gr + sl.gr_off, kb});
  }
  grouped_trsm(blas, copies, stream, solves, w.ptrs);
  grouped_gemm(blas, copies, stream, gemms, w.ptrs);
  GS_LAUNCH(reduced_terms_kernel, count, kBlock, 0, stream)(calls, slots, nets, w.rank, w.deficient, cols, scale, S,
                                                            w.U, w.A, 1);
  CUDA_CHECK_LAUNCH("reduced_terms_kernel");
  grouped_gemm(blas, copies, stream, after_u, w.ptrs);
  GS_LAUNCH(reduced_terms_kernel, count, kBlock, 0, stream)(calls, slots, nets, w.rank, w.deficient, cols, scale, S,
                                                            w.U, w.A, 2);
  CUDA_CHECK_LAUNCH("reduced_terms_kernel");
  copies.to_host(info.data(), w.info, count * sizeof(int), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  check_qr_info(info, "reduced_systems: the QR of T");
}


void residual_curvature(const CallNet* calls, int count, const VarProSlot* slots, const DevNet* nets,
                        const DevSet* train, const double* theta, const int* cols, const double* rmom, double* S,
                        cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(residual_curvature_kernel, count, kBlock, 0, stream)(calls, slots, nets, train, theta, cols, rmom, S);
  CUDA_CHECK_LAUNCH("residual_curvature_kernel");
}


void start_trials(const CallNet* calls, int count, const DevNet* nets, const DevSet* train, const double* theta,
                  const double* step, const double* alpha, bool take_step, double* trial, cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(start_trial_kernel, count, kBlock, 0, stream)(calls, nets, train, theta, step, alpha, take_step, trial);
  CUDA_CHECK_LAUNCH("start_trial_kernel");
}

void trial_systems(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params,
                   const CallNet* calls, int count, VarProSlot* slots, const std::vector<VarProSlot>& host_slots,
                   const std::vector<int>& rows, const DevNet* nets, const DevSet* train, const int* cols,
                   const unsigned char* global, const double* X, const double* trial, const TrialWork& t,
                   std::vector<int>* rank, std::vector<int>* deficient) {
  rank->assign(count, 0);
  deficient->assign(count, 0);
  if (count == 0) return;
  CUSOLVER_CHECK(cusolverDnSetStream(solver, stream));
  GS_LAUNCH(trial_prepare_kernel, count, kBlock, 0, stream)(calls, slots, nets, t.qr.rows, cols, global, X, trial,
                                                            t.M, t.cnorm, t.ord);
  CUDA_CHECK_LAUNCH("trial_prepare_kernel");
  main_qr(stream, copies, solver, params, calls, count, slots, host_slots, rows, nets, train, t.M, t.qr, true, rank,
          deficient);
}

void trial_solutions(cudaStream_t stream, HostCopies& copies, cublasHandle_t blas, const CallNet* calls, int count,
                     const VarProSlot* slots, const std::vector<VarProSlot>& host_slots, const DevNet* nets,
                     const int* cols, const TrialWork& t, const std::vector<int>& rank,
                     const std::vector<int>& deficient, const std::vector<long long>& zoff, double* trial) {
  if (count == 0) return;
  CUBLAS_CHECK(cublasSetStream(blas, stream));
  GS_LAUNCH(trial_rhs_kernel, count, kBlock, 0, stream)(slots, t.qr.rank, t.qr.deficient, t.M, t.zoff, t.Z);
  CUDA_CHECK_LAUNCH("trial_rhs_kernel");
  std::vector<Trsm> solves;
  for (int j = 0; j < count; ++j) {
    const VarProSlot& sl = host_slots[j];
    const int r = rank[j], d = sl.m - r;
    if (deficient[j] || r == 0) continue;
    solves.push_back({CUBLAS_OP_N, r, d + 1, t.M + sl.b_off, sl.ldb, t.Z + zoff[j], sl.m});
  }
  grouped_trsm(blas, copies, stream, solves, t.qr.ptrs);
  GS_LAUNCH(least_norm_kernel, count, kBlock, 0, stream)(calls, slots, nets, t.qr.rank, t.qr.deficient, cols, t.cnorm,
                                                         t.ord, t.qr.perm, t.zoff, t.Z, trial);
  CUDA_CHECK_LAUNCH("least_norm_kernel");
}

long long trial_scratch(int m, int rank) { return static_cast<long long>(m) * (m - rank + 1) + (m - rank); }

void take_trials(const CallNet* calls, int count, const DevNet* nets, const double* trial, double* theta,
                 cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(take_trial_kernel, count, kBlock, 0, stream)(calls, nets, trial, theta);
  CUDA_CHECK_LAUNCH("take_trial_kernel");
}


void column_classes(const CallNet* calls, int count, const DevNet* nets, const DevSet* train, const double* theta,
                    const double* scale, Role* role, const long long* pack_off, unsigned char* out,
                    cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(column_classes_kernel, count, kBlock, 0, stream)(calls, nets, train, theta, scale, role, pack_off, out);
  CUDA_CHECK_LAUNCH("column_classes_kernel");
}

}  // namespace gs
