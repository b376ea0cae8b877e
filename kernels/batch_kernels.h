// Kernels of the CUDA backend over a ragged batch, and their host launchers. All pointers
// are device memory unless a parameter says otherwise. Every launcher enqueues on the given
// stream, checks the launch and does not synchronize.
//
// A "call list" names the networks one backend operation acts on: CallNet j is network
// calls[j].net of the loaded batch, training its stage parameters [b, e). Work lists are
// ragged: work_off (count + 1 entries, an exclusive scan of items per call) maps work item
// w to its call with find_segment (worklist.h).
#pragma once

#include <cuda_runtime_api.h>

#include "gpusweep/model/network.h"

namespace gs {

constexpr int kMaxAlpha = 8;  // line-search trial steps per pass

struct DevNet {
  Shape s;
  int data;             // dataset index
  long long theta_off;  // into theta (P entries); trial params live at theta_off * kMaxAlpha
  long long sq_off;     // into H and A (P * P entries)
  long long vec_off;    // into g, step, scale (P entries)
  long long res_off;    // into resid (one entry per training point)
  long long nrn_off;    // into range (2 ints) and rmom (kColCoef) per neuron, n + 1 per net
};

// The points of one dataset's training or test set.
struct DevSet {
  const double* x;  // n x d, row-major; training sets with d = 1 are sorted by x
  const double* y;  // n
  int n;
  const double* pre;  // d = 1 training sets: prefix sums of x^j (relu1d.h), else null
  double lo = 0.0, hi = 0.0;  // d = 1 training sets: the ends of the domain (Dataset::lo, hi)
};

struct CallNet {
  int net;
  int b, e;  // stage range; m = e - b
};

// Items per call of each work list, written to count[j] (device), for the Thrust scan.
enum class WorkKind : int { kPointTiles, kParamTiles, kHessianTiles, kNeurons, kNeuronsAndBias };
void count_work(const CallNet* calls, int count, const DevNet* nets, const DevSet* sets,
                WorkKind kind, long long* items, cudaStream_t stream);

// Residuals r_k = y(x_k) - f(x_k) on the training points into resid, and per work item
// (point tile) the partial sum of r^2 into partial[w].
void residuals(const CallNet* calls, int count, const long long* work_off, long long work,
               const DevNet* nets, const DevSet* train, const double* theta, double* resid,
               double* partial, cudaStream_t stream);

// Sum of squared errors of each call at n_alpha parameter vectors: vector t of call j starts
// at params + theta_off * per_net_stride + t * P. partial[t * work + w] per point tile.
void squared_errors(const CallNet* calls, int count, const long long* work_off, long long work,
                    const DevNet* nets, const DevSet* sets, const double* params,
                    long long per_net_stride, int n_alpha, double* partial, cudaStream_t stream);

// trial[theta_off * kMaxAlpha + t * P + q] = theta + alpha[t] * step on the stage range.
void make_trials(const CallNet* calls, int count, const DevNet* nets, const double* theta,
                 const double* step, const double* alpha, int n_alpha, double* trial,
                 cudaStream_t stream);

// (2/N) J^T J over the stage block into H (m x m, column-major, both triangles), one
// 64 x 64 lower tile per work item.
void hessian_tiles(const CallNet* calls, int count, const long long* work_off, long long work,
                   const DevNet* nets, const DevSet* train, const double* theta, double* H,
                   cudaStream_t stream);

// Segment j of count: segs[j] (an offset into a device array), segs[count + j] (an offset
// into a packed array) and segs[2 count + j] (its length). gather: packed[...] = device[...]
// (src the device array, dst the packed one); otherwise the reverse. One block per segment.
void copy_segments(const long long* segs, int count, const double* src, double* dst, bool gather,
                   cudaStream_t stream);

// The same from Jacobian rows computed once per chunk of points. jacobian_rows writes the
// stage's Jacobian rows of the points p0 .. p0 + rows - 1 of each call into J + j_off[j]
// (rows x m, row-major; zero past the dataset's end), evaluating each neuron once per point;
// max_neurons is the largest width among the calls. hessian_rows then adds (2/N) of their
// J^T J to H (writes it when p0 == 0), one 64 x 64 lower tile per work item, both triangles.
// Over p0 = 0, rows, 2 rows, ... up to the largest dataset the pair gives hessian_tiles' H.
void jacobian_rows(const CallNet* calls, int count, const long long* j_off, int max_neurons, const DevNet* nets,
                   const DevSet* train, const double* theta, int p0, int rows, double* J, cudaStream_t stream);
void hessian_rows(const CallNet* calls, int count, const long long* work_off, long long work,
                  const long long* j_off, const DevNet* nets, const DevSet* train, const double* J, int p0,
                  int rows, double* H, cudaStream_t stream);

// g = (2/N) J^T r over the stage block, one tile of kParamTile parameters per work item.
void gradient(const CallNet* calls, int count, const long long* work_off, long long work,
              const DevNet* nets, const DevSet* train, const double* theta,
              const double* resid, double* g, cudaStream_t stream);

// H += (2/N) sum_k r_k d2y_k / dtheta2, the per-neuron blocks; one neuron per work item.
// Must run after hessian_tiles on the same stream.
void add_curvature(const CallNet* calls, int count, const long long* work_off, long long work,
                   const DevNet* nets, const DevSet* train, const double* theta,
                   const double* resid, double* H, cudaStream_t stream);

// The relu / 1D assembly (relu1d.h) for calls whose networks take it. In order:
// relu1d_neurons: per neuron (and d0 as neuron n) its active range and the moments
//   sum r x^j over it, j <= nf;
// relu1d_gradient: per stage parameter its column polynomial (kept in cols / colnrn at
//   vec_off) and g;
// relu1d_hessian: J^T J from the prefix sums of x^j, one 64 x 64 lower tile per work item;
// relu1d_hessian_diag: only the diagonal of J^T J, one parameter per thread over the
//   relu1d_gradient's parameter work list (HessianKind::kDiagonal);
// relu1d_curvature: adds the residual curvature, one neuron per thread.
void relu1d_neurons(const CallNet* calls, int count, const long long* work_off, long long work,
                    const DevNet* nets, const DevSet* train, const double* theta,
                    const double* resid, int* range, double* rmom, cudaStream_t stream);
void relu1d_gradient(const CallNet* calls, int count, const long long* work_off, long long work,
                     const DevNet* nets, const DevSet* train, const double* theta,
                     const double* rmom, double* cols, int* colnrn, double* g, cudaStream_t stream);
void relu1d_hessian(const CallNet* calls, int count, const long long* work_off, long long work,
                    const DevNet* nets, const DevSet* train, const double* cols, const int* colnrn,
                    const int* range, double* H, cudaStream_t stream);
void relu1d_hessian_diag(const CallNet* calls, int count, const long long* work_off, long long work,
                         const DevNet* nets, const DevSet* train, const double* cols, const int* colnrn,
                         const int* range, double* H, cudaStream_t stream);
void relu1d_curvature(const CallNet* calls, int count, const long long* work_off, long long work,
                      const DevNet* nets, const DevSet* train, const double* theta,
                      const int* range, const double* rmom, double* H, cudaStream_t stream);

// Jacobi scale of each call's system, as gs::jacobi_scale: scale (P entries at vec_off) and
// the scaled gradient norm sgrad[j] (NaN when H or g holds a non-finite value).
void jacobi_scale(const CallNet* calls, int count, const DevNet* nets, const double* H,
                  const double* g, double* scale, double* sgrad, cudaStream_t stream);

// A = S H S + lambda[j] I with singular rows as identity rows, and the right-hand side
// z = -S g (into step), as gs::damped_solve before its factorization.
void build_damped(const CallNet* calls, int count, const DevNet* nets, const double* H,
                  const double* g, const double* scale, const double* lambda, double* A, double* step,
                  cudaStream_t stream);

// step = S z in place, and gdotp[j] = g . step.
void finish_step(const CallNet* calls, int count, const DevNet* nets, const double* g,
                 const double* scale, double* step, double* gdotp, cudaStream_t stream);

// theta += alpha[j] * step on each call's stage range.
void apply_step(const CallNet* calls, int count, const DevNet* nets, const double* step,
                const double* alpha, double* theta, cudaStream_t stream);

}  // namespace gs
