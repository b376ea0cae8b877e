// Kernels over a ragged batch of networks: residuals and losses, line-search trials, the
// tiled J^T J assembly, the gradient, the per-neuron curvature, and the Jacobi-scaled damped
// systems around cuSOLVER's Cholesky. See batch_kernels.h for the data layout.
#include "batch_kernels.h"

#include <algorithm>

#include "cuda_check.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/solve.h"
#include "block_reduce.cuh"
#include "launch.cuh"
#include "worklist.h"

namespace gs {
namespace {

constexpr int kBlock = 256;      // threads of the per-call and point-tile kernels
constexpr int kHPoints = 16;     // points per shared-memory stage of hessian_tiles_kernel
constexpr int kCurvThreads = 128;
// The point-tile kernels reduce over kBlock threads and launch kPointTile; the Hessian tile
// kernel maps 16 x 16 threads to 4 x 4 patches of a 64 x 64 tile.
static_assert(kPointTile == kBlock, "point tiles are reduced by block_sum<kBlock>");
static_assert(kHTile == 64 && kBlock == 256, "hessian_tiles_kernel assumes 256 threads on 64 x 64 tiles");

int grid_of(long long work) {
  if (work > 0x7fffffffLL) throw std::runtime_error("CUDA work list too long for one launch");
  return static_cast<int>(work);
}

// Thread j -> call j.
__global__ void count_work_kernel(const CallNet* calls, int count, const DevNet* nets,
                                  const DevSet* sets, WorkKind kind, long long* items) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= count) return;
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const int m = c.e - c.b;
  long long v = 0;
  switch (kind) {
    case WorkKind::kPointTiles: v = ceil_div(sets[nd.data].n, kPointTile); break;
    case WorkKind::kParamTiles: v = ceil_div(m, kParamTile); break;
    case WorkKind::kHessianTiles: v = lower_tiles(m); break;
    case WorkKind::kNeurons: v = nd.s.n; break;
    case WorkKind::kNeuronsAndBias: v = nd.s.n + 1; break;
  }
  items[j] = v;
}

// Block w -> point tile (w - work_off[j]) of call j; thread -> one point.
__global__ void residuals_kernel(const CallNet* calls, int count, const long long* work_off,
                                 const DevNet* nets, const DevSet* train, const double* theta,
                                 double* resid, double* partial) {
  GS_SHARED(double, sh, [kBlock]);
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const DevNet& nd = nets[calls[j].net];
  const DevSet set = train[nd.data];
  const int k = static_cast<int>(w - work_off[j]) * kPointTile + threadIdx.x;
  double r2 = 0.0;
  if (k < set.n) {
    const double r = evaluate(nd.s, theta + nd.theta_off, set.x + static_cast<long long>(k) * nd.s.d) - set.y[k];
    resid[nd.res_off + k] = r;
    r2 = r * r;
  }
  const double sum = block_sum<kBlock>(r2, sh);
  if (threadIdx.x == 0) partial[w] = sum;
}

// Block w -> point tile of call j; thread -> one point, all n_alpha parameter vectors.
__global__ void squared_errors_kernel(const CallNet* calls, int count, const long long* work_off,
                                      long long work, const DevNet* nets, const DevSet* sets,
                                      const double* params, long long stride, int n_alpha,
                                      double* partial) {
  GS_SHARED(double, sh, [kBlock]);
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const DevNet& nd = nets[calls[j].net];
  const DevSet set = sets[nd.data];
  const int p = num_params(nd.s);
  const int k = static_cast<int>(w - work_off[j]) * kPointTile + threadIdx.x;
  for (int t = 0; t < n_alpha; ++t) {
    double r2 = 0.0;
    if (k < set.n) {
      const double* th = params + nd.theta_off * stride + static_cast<long long>(t) * p;
      const double r = evaluate(nd.s, th, set.x + static_cast<long long>(k) * nd.s.d) - set.y[k];
      r2 = r * r;
    }
    const double sum = block_sum<kBlock>(r2, sh);
    if (threadIdx.x == 0) partial[static_cast<long long>(t) * work + w] = sum;
  }
}

// Block j -> call j; threads stride over its n_alpha * P trial entries.
__global__ void make_trials_kernel(const CallNet* calls, const DevNet* nets, const double* theta,
                                   const double* step, const double* alpha, int n_alpha,
                                   double* trial) {
  const CallNet c = calls[blockIdx.x];
  const DevNet& nd = nets[c.net];
  const int p = num_params(nd.s);
  const double* th = theta + nd.theta_off;
  const double* st = step + nd.vec_off;
  double* out = trial + nd.theta_off * kMaxAlpha;
  for (int idx = threadIdx.x; idx < n_alpha * p; idx += blockDim.x) {
    const int t = idx / p, q = idx - t * p;
    out[idx] = th[q] + (q >= c.b && q < c.e ? alpha[t] * st[q - c.b] : 0.0);
  }
}

// dy/dtheta_{b+q} at x for stage column q of network nd.
__device__ double stage_jacobian(const DevNet& nd, const double* th, const double* x, int gq) {
  int i, lk;
  if (!param_owner(nd.s, gq, &i, &lk)) return 1.0;  // d0
  const NeuronEval e = eval_neuron(nd.s, th, x, i);
  return jacobian_entry(nd.s, e, x, lk);
}

// acc += the products of kHPoints points' Jacobian entries in shared memory: Ja holds the
// columns of tile row ti, Jb those of tile column tj; thread (tx, ty) owns a 4 x 4 patch.
__device__ __forceinline__ void tile_products(const double (&Ja)[kHPoints][kHTile], const double (&Jb)[kHPoints][kHTile], int tx,
                              int ty, double (&acc)[4][4]) {
#pragma unroll 4
  for (int pt = 0; pt < kHPoints; ++pt) {
    double a[4], b[4];
    for (int u = 0; u < 4; ++u) a[u] = Ja[pt][ty * 4 + u];
    for (int v = 0; v < 4; ++v) b[v] = Jb[pt][tx * 4 + v];
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < 4; ++v) acc[u][v] = fma(a[u], b[v], acc[u][v]);
  }
}

// Stores scale * acc, the thread's patch of lower tile (ti, tj), into both triangles of the
// m x m matrix Hn, or adds it (a diagonal entry once).
__device__ __forceinline__ void store_tile_patch(double* Hn, int m, int ti, int tj, int tx, int ty, const double (&acc)[4][4],
                                 double scale, bool add) {
  for (int u = 0; u < 4; ++u) {
    const int r = ti * kHTile + ty * 4 + u;
    for (int v = 0; v < 4; ++v) {
      const int cc = tj * kHTile + tx * 4 + v;
      if (r >= m || cc >= m || (ti == tj && r < cc)) continue;
      const double val = acc[u][v] * scale;
      double& lo = Hn[r + static_cast<long long>(cc) * m];
      double& up = Hn[cc + static_cast<long long>(r) * m];
      if (!add) {
        lo = val;
        up = val;
      } else {
        lo += val;
        if (r != cc) up += val;
      }
    }
  }
}

// Block w -> lower tile (ti, tj) of call j's stage Hessian, 16 x 16 threads, each owning a
// 4 x 4 patch of the 64 x 64 tile. Points stream through shared memory kHPoints at a time:
// Ja holds the Jacobian columns of tile row ti, Jb those of tile column tj.
__global__ void __launch_bounds__(256)
hessian_tiles_kernel(const CallNet* calls, int count, const long long* work_off,
                     const DevNet* nets, const DevSet* train, const double* theta, double* H) {
  GS_SHARED(double, Ja, [kHPoints][kHTile]);
  GS_SHARED(double, Jb, [kHPoints][kHTile]);
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const DevSet set = train[nd.data];
  const double* th = theta + nd.theta_off;
  const int m = c.e - c.b;
  int ti, tj;
  lower_tile_coords(static_cast<int>(w - work_off[j]), &ti, &tj);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  double acc[4][4] = {};
  for (int p0 = 0; p0 < set.n; p0 += kHPoints) {
    for (int idx = threadIdx.x; idx < 2 * kHPoints * kHTile; idx += blockDim.x) {
      const int which = idx / (kHPoints * kHTile);
      const int rem = idx - which * kHPoints * kHTile;
      const int pt = rem / kHTile, col = rem - pt * kHTile;
      const int q = (which == 0 ? ti : tj) * kHTile + col;
      const int k = p0 + pt;
      double v = 0.0;
      if (q < m && k < set.n)
        v = stage_jacobian(nd, th, set.x + static_cast<long long>(k) * nd.s.d, c.b + q);
      (which == 0 ? Ja : Jb)[pt][col] = v;
    }
    __syncthreads();
    tile_products(Ja, Jb, tx, ty, acc);
    __syncthreads();
  }
  store_tile_patch(H + nd.sq_off, m, ti, tj, tx, ty, acc, 2.0 / set.n, false);
}

// Block j -> segment j (segs: device offsets, packed offsets, lengths; count of each).
__global__ void copy_segments_kernel(const long long* segs, int count, const double* src, double* dst,
                                     bool gather) {
  const int j = blockIdx.x;
  const long long dev = segs[j], packed = segs[count + j], len = segs[2 * count + j];
  const long long from = gather ? dev : packed, to = gather ? packed : dev;
  for (long long q = threadIdx.x; q < len; q += blockDim.x) dst[to + q] = src[from + q];
}

// Block (j, y) -> neuron-point pairs y * kBlock + thread of call j, striding by the grid:
// point p0 + pt, neuron nu (nu == n: d0). Each neuron is evaluated once per point, and its stage columns of row pt
// are written into call j's rows at J + j_off[j] (row-major, leading dimension m). Rows of
// points past the dataset's end are zero.
__global__ void jacobian_rows_kernel(const CallNet* calls, const long long* j_off, const DevNet* nets,
                                     const DevSet* train, const double* theta, int p0, int rows, double* J) {
  const int j = blockIdx.x;
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const Shape s = nd.s;
  const DevSet set = train[nd.data];
  const int m = c.e - c.b;
  const int kn = neuron_num_params(s);
  const long long items = static_cast<long long>(s.n + 1) * rows;
  for (long long idx = static_cast<long long>(blockIdx.y) * blockDim.x + threadIdx.x; idx < items;
       idx += static_cast<long long>(gridDim.y) * blockDim.x) {
    const int nu = static_cast<int>(idx / rows), pt = static_cast<int>(idx - static_cast<long long>(nu) * rows);
    const int k = p0 + pt;
    double* row = J + j_off[j] + static_cast<long long>(pt) * m;
    if (nu == s.n) {
      const int q = num_params(s) - 1 - c.b;  // d0
      if (q >= 0 && q < m) row[q] = k < set.n ? 1.0 : 0.0;
      continue;
    }
    if (k >= set.n) {
      for (int lk = 0; lk < kn; ++lk) {
        const int q = neuron_param_index(s, nu, lk) - c.b;
        if (q >= 0 && q < m) row[q] = 0.0;
      }
      continue;
    }
    const double* x = set.x + static_cast<long long>(k) * s.d;
    const NeuronEval e = eval_neuron(s, theta + nd.theta_off, x, nu);
    double mono[kMaxPolyTerms];  // gpoly:K: the monomials once per item, not once per entry
    const bool poly = poly_degree(s.arch) > 0;
    if (poly) poly_terms(s, x, mono);
    for (int lk = 0; lk < kn; ++lk) {
      const int q = neuron_param_index(s, nu, lk) - c.b;
      if (q >= 0 && q < m) row[q] = jacobian_entry(s, e, x, lk, poly ? mono : nullptr);
    }
  }
}

// hessian_tiles_kernel on Jacobian rows written by jacobian_rows_kernel: the points p0 ..
// p0 + rows - 1, from call j's rows at J + j_off[j]. The first chunk (p0 == 0) writes H,
// later ones add to it.
__global__ void __launch_bounds__(256)
hessian_rows_kernel(const CallNet* calls, int count, const long long* work_off, const long long* j_off,
                    const DevNet* nets, const DevSet* train, const double* J, int p0, int rows, double* H) {
  GS_SHARED(double, Ja, [kHPoints][kHTile]);
  GS_SHARED(double, Jb, [kHPoints][kHTile]);
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const DevSet set = train[nd.data];
  const int m = c.e - c.b;
  const int have = min(rows, set.n - p0);  // this call's points in the chunk
  if (p0 > 0 && have <= 0) return;          // the same for the whole block
  const double* Jn = J + j_off[j];
  int ti, tj;
  lower_tile_coords(static_cast<int>(w - work_off[j]), &ti, &tj);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  double acc[4][4] = {};
  for (int r0 = 0; r0 < have; r0 += kHPoints) {
    for (int idx = threadIdx.x; idx < 2 * kHPoints * kHTile; idx += blockDim.x) {
      const int which = idx / (kHPoints * kHTile);
      const int rem = idx - which * kHPoints * kHTile;
      const int pt = rem / kHTile, col = rem - pt * kHTile;
      const int q = (which == 0 ? ti : tj) * kHTile + col;
      const int k = r0 + pt;
      (which == 0 ? Ja : Jb)[pt][col] = q < m && k < have ? Jn[static_cast<long long>(k) * m + q] : 0.0;
    }
    __syncthreads();
    tile_products(Ja, Jb, tx, ty, acc);
    __syncthreads();
  }
  store_tile_patch(H + nd.sq_off, m, ti, tj, tx, ty, acc, 2.0 / set.n, p0 > 0);
}

// Block w -> kParamTile stage parameters of call j; thread -> one parameter, looping over
// every training point (all threads read the same point: broadcast loads).
__global__ void gradient_kernel(const CallNet* calls, int count, const long long* work_off,
                                const DevNet* nets, const DevSet* train, const double* theta,
                                const double* resid, double* g) {
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const DevSet set = train[nd.data];
  const int q = static_cast<int>(w - work_off[j]) * kParamTile + threadIdx.x;
  if (q >= c.e - c.b) return;
  const double* th = theta + nd.theta_off;
  const double* r = resid + nd.res_off;
  double sum = 0.0;
  for (int k = 0; k < set.n; ++k)
    sum += r[k] * stage_jacobian(nd, th, set.x + static_cast<long long>(k) * nd.s.d, c.b + q);
  g[nd.vec_off + q] = sum * (2.0 / set.n);
}

// Block w -> neuron i of call j; threads over the training points. For each pair of the
// neuron's own parameters inside the stage, the block sums r_k d2y_k/dp dq and adds it to H.
// The pairs go in chunks of kPairChunk: each point's neuron is evaluated once per chunk, not
// once per pair. Neurons own disjoint entries of H, so no two blocks write the same entry.
constexpr int kPairChunk = 16;

__global__ void curvature_kernel(const CallNet* calls, int count, const long long* work_off,
                                 const DevNet* nets, const DevSet* train, const double* theta,
                                 const double* resid, double* H) {
  GS_SHARED(double, sh, [kCurvThreads]);
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const Shape s = nd.s;
  const DevSet set = train[nd.data];
  const int i = static_cast<int>(w - work_off[j]);
  const double* th = theta + nd.theta_off;
  const double* r = resid + nd.res_off;
  const int m = c.e - c.b;
  const int nf = num_factors(s.arch);
  const int per = s.d + 1;
  const int nfp = nf * per;  // local indices from nfp on are the coefficients D_alpha
  const int k = neuron_num_params(s);
  double* Hn = H + nd.sq_off;
  int pp = 0, qq = 0;  // the next pair (pp >= qq) to consider
  for (;;) {
    // The next chunk of pairs inside the stage; D_alpha with D_beta is zero.
    int cp[kPairChunk], cq[kPairChunk], np = 0;
    while (pp < k && np < kPairChunk) {
      const int gp = neuron_param_index(s, i, pp), gq = neuron_param_index(s, i, qq);
      if (gp >= c.b && gp < c.e && gq >= c.b && gq < c.e && !(pp >= nfp && qq >= nfp)) {
        cp[np] = pp;
        cq[np] = qq;
        ++np;
      }
      if (++qq > pp) {
        ++pp;
        qq = 0;
      }
    }
    if (np == 0) break;  // the same for every thread of the block
    double acc[kPairChunk];
    for (int t = 0; t < np; ++t) acc[t] = 0.0;
    for (int kk = threadIdx.x; kk < set.n; kk += blockDim.x) {
      const double* x = set.x + static_cast<long long>(kk) * s.d;
      const NeuronEval e = eval_neuron(s, th, x, i);
      double hab[kMaxFactors][kMaxFactors], hbD[kMaxFactors];
      neuron_curvature(s, e, hab, hbD);
      double mono[kMaxPolyTerms];
      poly_terms(s, x, mono);
      // x~ of a factor's parameter; x^alpha of the coefficient D_alpha.
      auto xval = [&](int b, int jj) { return b < nf ? (jj < s.d ? x[jj] : 1.0) : mono[jj]; };
      for (int t = 0; t < np; ++t) {
        const int bp = cp[t] < nfp ? cp[t] / per : nf, jp = cp[t] - bp * per;
        const int bq = cq[t] < nfp ? cq[t] / per : nf, jq = cq[t] - bq * per;
        const double xp = xval(bp, jp), xq = xval(bq, jq);
        double v;
        if (bp == nf) v = hbD[bq] * xq * xp;
        else if (bq == nf) v = hbD[bp] * xp * xq;
        else v = hab[bp][bq] * xp * xq;
        acc[t] += r[kk] * v;
      }
    }
    for (int t = 0; t < np; ++t) {
      const double tot = block_sum<kCurvThreads>(acc[t], sh);
      if (threadIdx.x == 0) {
        const double add = tot * (2.0 / set.n);
        const int a = neuron_param_index(s, i, cp[t]) - c.b, b = neuron_param_index(s, i, cq[t]) - c.b;
        Hn[a + static_cast<long long>(b) * m] += add;
        if (a != b) Hn[b + static_cast<long long>(a) * m] += add;
      }
    }
  }
}

// Block w -> entry nu of call j (nu < n: neuron nu; nu == n: d0, active everywhere);
// threads over the points of its active range.
__global__ void relu1d_neurons_kernel(const CallNet* calls, int count, const long long* work_off,
                                      const DevNet* nets, const DevSet* train, const double* theta,
                                      const double* resid, int* range, double* rmom) {
  GS_SHARED(double, sh, [kCurvThreads]);
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const DevNet& nd = nets[calls[j].net];
  const DevSet set = train[nd.data];
  const int nu = static_cast<int>(w - work_off[j]);
  int lo = 0, hi = set.n;
  if (nu < nd.s.n) {
    const NeuronLines L = neuron_lines(nd.s, theta + nd.theta_off, nu);
    active_range(set.x, set.n, L.W[0], L.w[0], &lo, &hi);
  }
  const int nr = column_degree(nd.s.arch) + 1;
  const double* r = resid + nd.res_off;
  double acc[kColCoef] = {};
  for (int k = lo + threadIdx.x; k < hi; k += blockDim.x) {
    double v = r[k];
    for (int jm = 0; jm < nr; ++jm) {
      acc[jm] += v;
      v *= set.x[k];
    }
  }
  for (int jm = 0; jm < kColCoef; ++jm) {
    const double tot = block_sum<kCurvThreads>(acc[jm], sh);
    if (threadIdx.x == 0) rmom[(nd.nrn_off + nu) * kColCoef + jm] = tot;
  }
  if (threadIdx.x == 0) {
    range[2 * (nd.nrn_off + nu)] = lo;
    range[2 * (nd.nrn_off + nu) + 1] = hi;
  }
}

// Block w -> kParamTile stage parameters of call j; thread -> one parameter.
__global__ void relu1d_gradient_kernel(const CallNet* calls, int count, const long long* work_off,
                                       const DevNet* nets, const DevSet* train, const double* theta,
                                       const double* rmom, double* cols, int* colnrn, double* g) {
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const int q = static_cast<int>(w - work_off[j]) * kParamTile + threadIdx.x;
  if (q >= c.e - c.b) return;
  double cp[kColCoef] = {1.0, 0.0, 0.0, 0.0};
  int nu, lk;
  if (param_owner(nd.s, c.b + q, &nu, &lk)) column_poly(neuron_lines(nd.s, theta + nd.theta_off, nu), lk, cp);
  else nu = nd.s.n;
  const double* R = rmom + (nd.nrn_off + nu) * kColCoef;
  double v = 0.0;
  for (int a = 0; a < kColCoef; ++a) {
    cols[(nd.vec_off + q) * kColCoef + a] = cp[a];
    v += cp[a] * R[a];
  }
  colnrn[nd.vec_off + q] = nu;
  g[nd.vec_off + q] = v * (2.0 / train[nd.data].n);
}

// Entry (r, cc) of a relu 1D network's J^T J (2/N scaled): the moments of x over the
// intersection of the two columns' active ranges, then their Hankel form.
__device__ double relu1d_gram_entry(const DevNet& nd, const DevSet& set, const double* cols, const int* colnrn,
                                    const int* range, int r, int cc) {
  const int n1 = colnrn[nd.vec_off + r], n2 = colnrn[nd.vec_off + cc];
  const int lo = max(range[2 * (nd.nrn_off + n1)], range[2 * (nd.nrn_off + n2)]);
  const int hi = min(range[2 * (nd.nrn_off + n1) + 1], range[2 * (nd.nrn_off + n2) + 1]);
  if (lo >= hi) return 0.0;
  const int nmom = 2 * column_degree(nd.s.arch) + 1;
  double M[kNumMoments] = {};
  for (int jm = 0; jm < nmom; ++jm) M[jm] = prefix_moment(set.pre, set.n, jm, lo, hi);
  double cp[kColCoef], cq[kColCoef];
  for (int a = 0; a < kColCoef; ++a) {
    cp[a] = cols[(nd.vec_off + r) * kColCoef + a];
    cq[a] = cols[(nd.vec_off + cc) * kColCoef + a];
  }
  return hankel_form(cp, cq, M) * (2.0 / set.n);
}

// Block w -> lower tile (ti, tj) of call j; threads stride over the tile's entries, one
// entry each (relu1d_gram_entry).
__global__ void relu1d_hessian_kernel(const CallNet* calls, int count, const long long* work_off,
                                      const DevNet* nets, const DevSet* train, const double* cols,
                                      const int* colnrn, const int* range, double* H) {
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const DevSet set = train[nd.data];
  const int m = c.e - c.b;
  int ti, tj;
  lower_tile_coords(static_cast<int>(w - work_off[j]), &ti, &tj);
  double* Hn = H + nd.sq_off;
  for (int idx = threadIdx.x; idx < kHTile * kHTile; idx += blockDim.x) {
    const int r = ti * kHTile + idx / kHTile;
    const int cc = tj * kHTile + idx % kHTile;
    if (r >= m || cc >= m || (ti == tj && r < cc)) continue;
    const double v = relu1d_gram_entry(nd, set, cols, colnrn, range, r, cc);
    Hn[r + static_cast<long long>(cc) * m] = v;
    Hn[cc + static_cast<long long>(r) * m] = v;
  }
}

// Block w -> kParamTile stage parameters of call j; thread -> the diagonal entry of one
// parameter (relu1d_gram_entry). The other entries of H are left as they were.
__global__ void relu1d_hessian_diag_kernel(const CallNet* calls, int count, const long long* work_off,
                                           const DevNet* nets, const DevSet* train, const double* cols,
                                           const int* colnrn, const int* range, double* H) {
  const long long w = blockIdx.x;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const int m = c.e - c.b;
  const int q = static_cast<int>(w - work_off[j]) * kParamTile + threadIdx.x;
  if (q >= m) return;
  H[nd.sq_off + q + static_cast<long long>(q) * m] = relu1d_gram_entry(nd, train[nd.data], cols, colnrn, range, q, q);
}

// Thread w -> neuron (w - work_off[j]) of call j; adds its residual curvature to H. Neurons
// own disjoint entries, so threads never write the same entry.
__global__ void relu1d_curvature_kernel(const CallNet* calls, int count, const long long* work_off,
                                        long long work, const DevNet* nets, const DevSet* train,
                                        const double* theta, const int* range, const double* rmom,
                                        double* H) {
  const long long w = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (w >= work) return;
  const int j = find_segment(work_off, count, w);
  const CallNet c = calls[j];
  const DevNet& nd = nets[c.net];
  const Shape s = nd.s;
  const int nu = static_cast<int>(w - work_off[j]);
  if (range[2 * (nd.nrn_off + nu)] >= range[2 * (nd.nrn_off + nu) + 1]) return;
  const NeuronLines L = neuron_lines(s, theta + nd.theta_off, nu);
  const double* R = rmom + (nd.nrn_off + nu) * kColCoef;
  const int m = c.e - c.b;
  const int k = neuron_num_params(s);
  const double scale = 2.0 / train[nd.data].n;
  double* Hn = H + nd.sq_off;
  for (int pp = 0; pp < k; ++pp) {
    const int gp = neuron_param_index(s, nu, pp);
    if (gp < c.b || gp >= c.e) continue;
    for (int qq = 0; qq <= pp; ++qq) {
      const int gq = neuron_param_index(s, nu, qq);
      if (gq < c.b || gq >= c.e) continue;
      const double v = curvature_entry(L, pp, qq, R, scale);
      Hn[(gp - c.b) + static_cast<long long>(gq - c.b) * m] += v;
      if (gp != gq) Hn[(gq - c.b) + static_cast<long long>(gp - c.b) * m] += v;
    }
  }
}

// Block j -> call j; threads stride over the diagonal.
__global__ void jacobi_scale_kernel(const CallNet* calls, const DevNet* nets, const double* H,
                                    const double* g, double* scale, double* sgrad) {
  GS_SHARED(double, sh, [kBlock]);
  const CallNet c = calls[blockIdx.x];
  const DevNet& nd = nets[c.net];
  const int m = c.e - c.b;
  const double* Hn = H + nd.sq_off;
  const double* gn = g + nd.vec_off;
  double* sc = scale + nd.vec_off;
  double dmax = 0.0, bad = 0.0;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    const double h = Hn[i + static_cast<long long>(i) * m];
    dmax = fmax(dmax, fabs(h));
    if (!isfinite(h) || !isfinite(gn[i])) bad = 1.0;
  }
  dmax = block_max<kBlock>(dmax, sh);
  bad = block_max<kBlock>(bad, sh);
  double gnorm = 0.0;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    const double hii = fabs(Hn[i + static_cast<long long>(i) * m]);
    double si = 0.0;
    if (hii > kSingularRel * dmax && hii > 0.0) {
      si = 1.0 / sqrt(hii);
      gnorm = fmax(gnorm, fabs(gn[i]) * si);
    }
    sc[i] = si;
  }
  gnorm = block_max<kBlock>(gnorm, sh);
  if (threadIdx.x == 0) sgrad[blockIdx.x] = bad != 0.0 ? NAN : gnorm;
}

// Block j -> call j; threads stride over the m * m entries (column-major).
__global__ void build_damped_kernel(const CallNet* calls, const DevNet* nets, const double* H,
                                    const double* g, const double* scale, const double* lambda, double* A,
                                    double* step) {
  const CallNet c = calls[blockIdx.x];
  const DevNet& nd = nets[c.net];
  const int m = c.e - c.b;
  const double* Hn = H + nd.sq_off;
  const double* sc = scale + nd.vec_off;
  double* An = A + nd.sq_off;
  const double lam = lambda[blockIdx.x];
  const long long mm = static_cast<long long>(m) * m;
  for (long long idx = threadIdx.x; idx < mm; idx += blockDim.x) {
    const int col = static_cast<int>(idx / m), row = static_cast<int>(idx - static_cast<long long>(col) * m);
    double a = sc[row] * Hn[idx] * sc[col];
    if (row == col) a = sc[col] == 0.0 ? 1.0 : a + lam;
    An[idx] = a;
  }
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    step[nd.vec_off + i] = -g[nd.vec_off + i] * sc[i];
  }
}

// Block j -> call j.
__global__ void finish_step_kernel(const CallNet* calls, const DevNet* nets, const double* g,
                                   const double* scale, double* step, double* gdotp) {
  GS_SHARED(double, sh, [kBlock]);
  const CallNet c = calls[blockIdx.x];
  const DevNet& nd = nets[c.net];
  const int m = c.e - c.b;
  double sum = 0.0;
  for (int i = threadIdx.x; i < m; i += blockDim.x) {
    const double st = step[nd.vec_off + i] * scale[nd.vec_off + i];
    step[nd.vec_off + i] = st;
    sum += g[nd.vec_off + i] * st;
  }
  sum = block_sum<kBlock>(sum, sh);
  if (threadIdx.x == 0) gdotp[blockIdx.x] = sum;
}

// Block j -> call j.
__global__ void apply_step_kernel(const CallNet* calls, const DevNet* nets, const double* step,
                                  const double* alpha, double* theta) {
  const CallNet c = calls[blockIdx.x];
  const DevNet& nd = nets[c.net];
  const double a = alpha[blockIdx.x];
  for (int q = c.b + threadIdx.x; q < c.e; q += blockDim.x)
    theta[nd.theta_off + q] += a * step[nd.vec_off + q - c.b];
}

}  // namespace

void count_work(const CallNet* calls, int count, const DevNet* nets, const DevSet* sets,
                WorkKind kind, long long* items, cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(count_work_kernel, ceil_div(count, kBlock), kBlock, 0, stream)(calls, count, nets, sets, kind, items);
  CUDA_CHECK_LAUNCH("count_work_kernel");
}

void residuals(const CallNet* calls, int count, const long long* work_off, long long work,
               const DevNet* nets, const DevSet* train, const double* theta, double* resid,
               double* partial, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(residuals_kernel, grid_of(work), kPointTile, 0, stream)(calls, count, work_off, nets, train, theta, resid,
                                                                    partial);
  CUDA_CHECK_LAUNCH("residuals_kernel");
}

void squared_errors(const CallNet* calls, int count, const long long* work_off, long long work,
                    const DevNet* nets, const DevSet* sets, const double* params,
                    long long per_net_stride, int n_alpha, double* partial, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(squared_errors_kernel, grid_of(work), kPointTile, 0, stream)(calls, count, work_off, work, nets, sets,
                                                                         params, per_net_stride, n_alpha, partial);
  CUDA_CHECK_LAUNCH("squared_errors_kernel");
}

void make_trials(const CallNet* calls, int count, const DevNet* nets, const double* theta,
                 const double* step, const double* alpha, int n_alpha, double* trial,
                 cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(make_trials_kernel, count, kBlock, 0, stream)(calls, nets, theta, step, alpha, n_alpha, trial);
  CUDA_CHECK_LAUNCH("make_trials_kernel");
}

void hessian_tiles(const CallNet* calls, int count, const long long* work_off, long long work,
                   const DevNet* nets, const DevSet* train, const double* theta, double* H,
                   cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(hessian_tiles_kernel, grid_of(work), 256, 0, stream)(calls, count, work_off, nets, train, theta, H);
  CUDA_CHECK_LAUNCH("hessian_tiles_kernel");
}

void copy_segments(const long long* segs, int count, const double* src, double* dst, bool gather,
                   cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(copy_segments_kernel, count, kBlock, 0, stream)(segs, count, src, dst, gather);
  CUDA_CHECK_LAUNCH("copy_segments_kernel");
}

void jacobian_rows(const CallNet* calls, int count, const long long* j_off, int max_neurons, const DevNet* nets,
                   const DevSet* train, const double* theta, int p0, int rows, double* J, cudaStream_t stream) {
  if (count == 0 || rows == 0) return;
  const long long items = static_cast<long long>(max_neurons + 1) * rows;
  const dim3 grid(count, static_cast<unsigned>(std::min<long long>((items + kBlock - 1) / kBlock, 65535)));
  GS_LAUNCH(jacobian_rows_kernel, grid, kBlock, 0, stream)(calls, j_off, nets, train, theta, p0, rows, J);
  CUDA_CHECK_LAUNCH("jacobian_rows_kernel");
}

void hessian_rows(const CallNet* calls, int count, const long long* work_off, long long work,
                  const long long* j_off, const DevNet* nets, const DevSet* train, const double* J, int p0,
                  int rows, double* H, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(hessian_rows_kernel, grid_of(work), 256, 0, stream)(calls, count, work_off, j_off, nets, train, J, p0,
                                                                rows, H);
  CUDA_CHECK_LAUNCH("hessian_rows_kernel");
}

void gradient(const CallNet* calls, int count, const long long* work_off, long long work,
              const DevNet* nets, const DevSet* train, const double* theta,
              const double* resid, double* g, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(gradient_kernel, grid_of(work), kParamTile, 0, stream)(calls, count, work_off, nets, train, theta, resid,
                                                                   g);
  CUDA_CHECK_LAUNCH("gradient_kernel");
}

void add_curvature(const CallNet* calls, int count, const long long* work_off, long long work,
                   const DevNet* nets, const DevSet* train, const double* theta,
                   const double* resid, double* H, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(curvature_kernel, grid_of(work), kCurvThreads, 0, stream)(calls, count, work_off, nets, train, theta,
                                                                      resid, H);
  CUDA_CHECK_LAUNCH("curvature_kernel");
}

void relu1d_neurons(const CallNet* calls, int count, const long long* work_off, long long work,
                    const DevNet* nets, const DevSet* train, const double* theta,
                    const double* resid, int* range, double* rmom, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(relu1d_neurons_kernel, grid_of(work), kCurvThreads, 0, stream)(calls, count, work_off, nets, train, theta,
                                                                           resid, range, rmom);
  CUDA_CHECK_LAUNCH("relu1d_neurons_kernel");
}

void relu1d_gradient(const CallNet* calls, int count, const long long* work_off, long long work,
                     const DevNet* nets, const DevSet* train, const double* theta,
                     const double* rmom, double* cols, int* colnrn, double* g, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(relu1d_gradient_kernel, grid_of(work), kParamTile, 0, stream)(calls, count, work_off, nets, train, theta,
                                                                          rmom, cols, colnrn, g);
  CUDA_CHECK_LAUNCH("relu1d_gradient_kernel");
}

void relu1d_hessian(const CallNet* calls, int count, const long long* work_off, long long work,
                    const DevNet* nets, const DevSet* train, const double* cols, const int* colnrn,
                    const int* range, double* H, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(relu1d_hessian_kernel, grid_of(work), kBlock, 0, stream)(calls, count, work_off, nets, train, cols,
                                                                     colnrn, range, H);
  CUDA_CHECK_LAUNCH("relu1d_hessian_kernel");
}

void relu1d_hessian_diag(const CallNet* calls, int count, const long long* work_off, long long work,
                         const DevNet* nets, const DevSet* train, const double* cols, const int* colnrn,
                         const int* range, double* H, cudaStream_t stream) {
  if (work == 0) return;
  GS_LAUNCH(relu1d_hessian_diag_kernel, grid_of(work), kParamTile, 0, stream)(calls, count, work_off, nets, train,
                                                                              cols, colnrn, range, H);
  CUDA_CHECK_LAUNCH("relu1d_hessian_diag_kernel");
}

void relu1d_curvature(const CallNet* calls, int count, const long long* work_off, long long work,
                      const DevNet* nets, const DevSet* train, const double* theta,
                      const int* range, const double* rmom, double* H, cudaStream_t stream) {
  if (work == 0) return;
  const long long blocks = (work + kBlock - 1) / kBlock;
  GS_LAUNCH(relu1d_curvature_kernel, grid_of(blocks), kBlock, 0, stream)(calls, count, work_off, work, nets, train,
                                                                         theta, range, rmom, H);
  CUDA_CHECK_LAUNCH("relu1d_curvature_kernel");
}

void jacobi_scale(const CallNet* calls, int count, const DevNet* nets, const double* H,
                  const double* g, double* scale, double* sgrad, cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(jacobi_scale_kernel, count, kBlock, 0, stream)(calls, nets, H, g, scale, sgrad);
  CUDA_CHECK_LAUNCH("jacobi_scale_kernel");
}

void build_damped(const CallNet* calls, int count, const DevNet* nets, const double* H,
                  const double* g, const double* scale, const double* lambda, double* A, double* step,
                  cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(build_damped_kernel, count, kBlock, 0, stream)(calls, nets, H, g, scale, lambda, A, step);
  CUDA_CHECK_LAUNCH("build_damped_kernel");
}

void finish_step(const CallNet* calls, int count, const DevNet* nets, const double* g,
                 const double* scale, double* step, double* gdotp, cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(finish_step_kernel, count, kBlock, 0, stream)(calls, nets, g, scale, step, gdotp);
  CUDA_CHECK_LAUNCH("finish_step_kernel");
}

void apply_step(const CallNet* calls, int count, const DevNet* nets, const double* step,
                const double* alpha, double* theta, cudaStream_t stream) {
  if (count == 0) return;
  GS_LAUNCH(apply_step_kernel, count, kBlock, 0, stream)(calls, nets, step, alpha, theta);
  CUDA_CHECK_LAUNCH("apply_step_kernel");
}

}  // namespace gs
