// Kernels of the variable-projection step on the device (var_pro.h), over a ragged batch of
// relu networks on 1D inputs (relu1d.h), and their host launchers. The data layout is
// batch_kernels.h's; every launcher enqueues on the given stream, checks the launch and does
// not synchronize.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <vector>

#include "batch_kernels.h"
#include "cuda_plan.h"
#include "host_copies.h"
#include "gpusweep/solver/var_pro.h"

namespace gs {

// Where one call's reduced system is built on the device: its columns (the kc linear ones,
// then the nonlinear ones: VarProColumns::all() of var_pro.h), its compressed system [B | h]
// (compress_relu1d of least_squares.h), its residual curvature S, and scratch. Offsets are in
// entries of the arrays they name.
struct VarProSlot {
  long long col_off;  // its columns: parameter indices cols[col_off ..], m of them
  int m, kc, g;       // kc linear columns, the last g of them global (var_pro.h)
  long long b_off;    // B at b_off, column-major, leading dimension ldb (>= its rows)
  int ldb;
  long long h_off;    // h at h_off (ldb entries)
  long long s_off;    // S at s_off: m x (m - kc), column-major
  long long run_off;  // scratch: compress_scratch entries of bounds, runrow, nrange and runrest
  // reduced_systems: A ((m - kc)^2) and gr at a_off and gr_off; scratch: tau (m + 1 entries),
  // T ((m + 1) (m - kc + 1)), W (kc (m - kc)) and U ((m - kc)^2) at their offsets.
  long long a_off, gr_off, tau_off, t_off, w_off, u_off;
  // reduced_solves, kept from try to try: the unit-diagonal matrix C or its eigenvectors
  // ((m - kc)^2 at v_off), the damped copy (at l_off, as many), T's diagonal and the eigenvalues
  // (2 (m - kc) at e_off), the right-hand side and solution (m - kc at z_off).
  long long v_off, l_off, e_off, z_off;
};

// Lays out slots one after another in the arrays they name.
struct VarProLayout {
  long long cols = 0, b = 0, s = 0, run = 0, a = 0, gr = 0, tau = 0, t = 0, w = 0, e = 0;
  // The next slot: m columns (the first kc linear, the last g of those global) of a network of
  // shape sh, B with leading dimension ldb and h at its column m.
  VarProSlot add(const Shape& sh, int m, int kc, int g, int ldb);
};

// The rows of compress_relu1d for a network of n neurons on npoints points are at most this:
// every neuron is active on a half-line, so its range of sorted points has one end at 0 or at
// npoints; the ends of all ranges then take at most n + 2 values, which make at most n + 1 runs,
// of min(its points, c + 1) rows each.
int compress_rows_bound(const Shape& s, int npoints);
// The scratch entries of one slot: the 2 (n + 1) ends of the active ranges (d0's included) and
// one more.
inline long long compress_scratch(const Shape& s) { return 2LL * (s.n + 1) + 1; }

struct Compressed {
  const int* cols;       // the columns of every slot
  double* B;
  double* h;
  int* rows;             // per call
  double* rest;          // per call: the part of |r|^2 no step reaches
  unsigned char* global; // per column (at col_off): one polynomial on all the training points
  double* cpoly;         // scratch per column: its polynomial (kColCoef coefficients)
  int* cown;             // scratch per column: its neuron (n for d0)
  int* bounds;           // scratch per slot (run_off): the runs' boundaries, then their count
  int* runrow;           // scratch per slot: each run's first row
  int* nrange;           // scratch per slot: each neuron's active range [lo, hi), d0 last
  double* runrest;       // scratch per slot: each run's share of rest
};

// compress_relu1d on the device: for call j (network calls[j].net, slot slots[j]), the
// columns of its Jacobian at the parameters theta (at theta_off) and the residuals r (at
// res_off, at the sorted training points) compressed to [B | h] with ||J s + r||^2 =
// ||B s + h||^2 + rest for every s. Each run of points between consecutive kinks contributes
// the R factor of its local Vandermonde matrix with r appended (run_frame's coordinate),
// accumulated point by point with Givens rotations; B and h then agree with the host's up to an
// orthogonal transform of each run's rows (B^T B, B^T h and h^T h + rest to rounding).
void compress_relu1d(const CallNet* calls, int count, const VarProSlot* slots, const DevNet* nets,
                     const DevSet* train, const double* theta, const double* resid, const Compressed& out,
                     cudaStream_t stream);

// The residual curvature S of var_pro.h (residual_curvature_relu1d) on the device: for call j,
// S_uv = (2/N) sum_k r_k d2y(x_k)/dtheta_u dtheta_v over its columns u and its nonlinear columns
// v (zero unless both are the same neuron's), from rmom, the moments of relu1d_neurons (of
// batch_kernels.h) at the same parameters.
void residual_curvature(const CallNet* calls, int count, const VarProSlot* slots, const DevNet* nets,
                        const DevSet* train, const double* theta, const int* cols, const double* rmom, double* S,
                        cudaStream_t stream);

// The device arrays of reduced_systems besides the slots' own: per column (at col_off) the
// permutation of the linear columns in the order of R_cc; per call the rank of the linear
// columns, whether they were found dependent, cuSOLVER's info, and the rows; the QRs' device
// workspace.
struct ReducedWork {
  double *A, *gr, *tau, *T, *W, *U;
  int *perm;
  int *rank, *deficient, *info;  // per call
  const int* rows;               // per call: compress_relu1d's rows (Compressed::rows)
  void* ws;
  std::size_t ws_bytes;
  double** ptrs;                 // the grouped GEMMs' and triangular solves' pointer arrays: 6 per call
};

// reduced_system of var_pro.h on the device, for calls whose [B | h] (compress_relu1d, with h at
// column m of B: h_off = b_off + m ldb) and S (residual_curvature) are made. scale: the Jacobi
// scale of every parameter (at vec_off). With M = sqrt(2 / N) [B diag(scale) | h], one
// Householder QR of all of M (cuSOLVER) gives the main linear columns' R, with Q^T applied to the
// rest; the global columns' triangle then takes a column-pivoted QR of its own (a block per
// call), the same R up to the signs of its rows as the host's pivoted QR of their rows below
// the main block, since column norms are kept by orthogonal transforms; the rows of the
// nonlinear columns and h below the rank, their QR (R_bb, h_b); then A and gr by cuBLAS, as the
// host's. A call whose main block looks dependent (the host's `pivoted` path) gets deficient = 1
// and no A: the host solves it. Host arrays: the slots, the calls' rows (compress_relu1d's) and,
// out, their ranks and deficient flags; every copy between them goes through copies.
// Synchronizes the stream.
void reduced_systems(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params, cublasHandle_t blas,
                     const CallNet* calls, int count, const VarProSlot* slots, const std::vector<VarProSlot>& host_slots,
                     const std::vector<int>& rows, const DevNet* nets, const DevSet* train, const int* cols,
                     const double* scale, double* B, const double* S, const ReducedWork& w, std::vector<int>* rank,
                     std::vector<int>* deficient);

// reduced_solve of var_pro.h on the device, for the calls (not deficient) whose reduced systems
// reduced_systems made: the damped step on the reduced system into step (all P entries of the
// call's network at vec_off, zero off its nonlinear columns), per call. mode (host, per call,
// ReducedSystem::Mode) says what the call's slot keeps: kUnknown makes the unit-diagonal matrix
// C = T A T and tests it by a Cholesky factorization of C + kSingularRel I (cuSOLVER), then keeps
// C (kCholesky) or its eigendecomposition (kEigen, cusolverDnXsyevBatched); a damping retry
// with the mode known reuses them. The Cholesky factorizations (and solves) of each size group
// take the path the table gives (cuda_plan.h): one cusolverDnDpotrfBatched (and
// cusolverDnDpotrsBatched) over pointer arrays, or one cusolverDnXpotrf (and cusolverDnXpotrs)
// per matrix. Writes info (0, or the failed factorization's info, as the host's) and model per
// call. Synchronizes the stream.
struct SolveWork {
  double *V, *L, *E, *Z;  // at the slots' v_off, l_off, e_off and z_off
  double* model;          // 4 per call: pred, slope, curvature of each, then each lambda
  int* info;              // 3 per call: flags of the kernels, then cuSOLVER's infos
  int* chol_info;         // per call
  void* ws;
  std::size_t ws_bytes;
  double** ptrs;          // 2 per call: the batched calls' matrix and right-hand-side pointers
  int* order;             // 2 per call: the batched calls' infos, and where each goes
};
// Factorizations of reduced_solves, and of them by the per-matrix path.
struct ReducedCholeskyCounts {
  long long factorizations = 0, looped = 0;
};
void reduced_solves(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params,
                    const CholeskyTable& table, const CallNet* calls, int count, const VarProSlot* slots,
                    const std::vector<VarProSlot>& host_slots, const DevNet* nets, const int* cols,
                    const double* scale, const double* A, const double* gr, const SolveWork& w,
                    const std::vector<double>& lambda, std::vector<int>* mode, std::vector<int>* info,
                    std::vector<StepModel>* model, double* step, ReducedCholeskyCounts* counts);

// Bytes of device workspace reduced_solves needs for matrices of at most n rows.
std::size_t solve_workspace_bytes(cusolverDnHandle_t solver, cusolverDnParams_t params, int n);

// Bytes of device workspace reduced_systems' QRs need for the slots' systems.
std::size_t reduced_workspace_bytes(cusolverDnHandle_t solver, cusolverDnParams_t params,
                                   const std::vector<VarProSlot>& slots);


// The trial of variable projection (HostSolver::var_pro_trial of host_solver.h) on the device,
// for relu networks on 1D inputs, in four parts:
//
// start_trials: trial = theta + alpha[j] step for call j (theta alone without take_step), every
// thin neuron then pushed out of the domain (push_out_thin). trial has theta's layout.
void start_trials(const CallNet* calls, int count, const DevNet* nets, const DevSet* train, const double* theta,
                  const double* step, const double* alpha, bool take_step, double* trial, cudaStream_t stream);

// trial_systems: with X = compress_relu1d's [B | h] of each call's linear columns (cols, ascending;
// slots with kc = m) at the trial and its residuals, least_squares_values' scaled system M (the
// columns divided by their norms, in the order ord: main columns, then the global and zero
// ones; the right-hand side B x - h) at X's offsets, and its QR as reduced_systems' first half
// (main_qr): the main columns' R, then the pivoted QR of the global ones, the rank counted as
// least_squares_values counts it (kLsRcondEps max(N, m) of the larger of the main block's
// largest diagonal entry and the first global pivot). Writes each slot's g on the device. A call
// whose main block looks dependent (the host's dgelsd fallback) gets deficient = 1.
// trial_solutions: the solution of least norm over the dependent global columns (qr_solve's),
// through a triangular solve of R_11 (cuBLAS) into Z and a Householder QR of the null-space
// basis; the trial's linear parameters are set to it. Z: trial_scratch(m, rank) entries per call,
// at zoff.
struct TrialWork {
  ReducedWork qr;  // perm, rank, deficient, info, rows, tau, the QR workspace (main_qr), and ptrs
                   // (2 per call: trial_solutions' triangular solves)
  double* M;       // the scaled systems (the slots' B layout)
  double* cnorm;   // per column (col_off): its norm, 0 for a zero column
  int* ord;        // per column: the ascending index of the column at each place of M
  double* Z;
  const long long* zoff;  // per call
};
void trial_systems(cudaStream_t stream, HostCopies& copies, cusolverDnHandle_t solver, cusolverDnParams_t params,
                   const CallNet* calls, int count, VarProSlot* slots, const std::vector<VarProSlot>& host_slots,
                   const std::vector<int>& rows, const DevNet* nets, const DevSet* train, const int* cols,
                   const unsigned char* global, const double* X, const double* trial, const TrialWork& t,
                   std::vector<int>* rank, std::vector<int>* deficient);
long long trial_scratch(int m, int rank);
void trial_solutions(cudaStream_t stream, HostCopies& copies, cublasHandle_t blas, const CallNet* calls, int count,
                     const VarProSlot* slots, const std::vector<VarProSlot>& host_slots, const DevNet* nets,
                     const int* cols, const TrialWork& t, const std::vector<int>& rank,
                     const std::vector<int>& deficient, const std::vector<long long>& zoff, double* trial);

// theta = trial over all parameters of each call's network.
void take_trials(const CallNet* calls, int count, const DevNet* nets, const double* trial, double* theta,
                 cudaStream_t stream);


// The columns of each call's reduced system (var_pro_columns of var_pro.h, for relu networks on
// 1D inputs) at theta and the Jacobi scale, as one ColumnClass byte per parameter into out from
// pack_off[j] (columns_of_classes makes the columns from them); role: scratch of P entries per
// network at vec_off.
void column_classes(const CallNet* calls, int count, const DevNet* nets, const DevSet* train, const double* theta,
                    const double* scale, Role* role, const long long* pack_off, unsigned char* out,
                    cudaStream_t stream);

}  // namespace gs
