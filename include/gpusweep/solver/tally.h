// Tallies of the solver's work by primitive, for the flop benchmark (bench/bench_flops.cpp):
// for each call, its floating-point operations by the standard count of its algorithm (below),
// its CPU time, and the sizes of the systems it factorized. Off unless a tally is installed
// (set_solver_tally); a solver function then reads one pointer and does nothing else. While
// one is installed, every record takes a lock, so tallies are meant for one thread (the
// times are each thread's own, and BLAS must run on the calling thread).
//
// Each record also carries the operations the same work would take in the formulation of
// shifted Cholesky factorizations and Householder QR only ("target"): the reduced solve by a
// Cholesky factorization of the damped reduced matrix at every try (no eigendecomposition, no
// separate definiteness test), the trial's least squares by a Householder QR of [B | h] and a
// triangular solve (no SVD), and an assembly that forms the gradient and the Jacobi diagonal,
// not the whole Gauss-Newton Hessian. Work the two formulations share counts the same in both;
// a Householder QR that skips the zeros below a staircase (staircase_qr) counts the work it did
// in both.
#pragma once

namespace gs {

// The primitives of one variable-projection step of the ALL stage (var_pro.h, host_solver.h).
enum class Prim : int {
  kResiduals = 0,  // residuals at the training points for the step's system (sorted_residuals)
  kAssembly,       // the ALL stage's assembly: loss, gradient, Gauss-Newton Hessian, Jacobi scale
  kCompress,       // compress_relu1d of [J_c | J_b | r] (the step's system)
  kCurvature,      // residual_curvature_relu1d: S
  kQr,             // reduced_system: the Householder QRs of the compressed system, applied
  kReduced,        // reduced_system: W = R_cc^-T S_cb, the SYRKs, GEMM, GEMVs
  kCholesky,       // reduced_solve: the definiteness test and the damped Cholesky solves
  kEigen,          // reduced_solve: dsyevd of the indefinite systems, and their step products
  kTrialCompress,  // var_pro_trial: compress_relu1d of the linear columns at the trial
  kTrialLs,        // var_pro_trial: the rank-revealing least squares (QR or dgelsd)
  kTrialLoss,      // var_pro_trial: the residuals before the solve and the loss after it
  kOther,          // the rest of the ALL stage: the fallback's damped Newton solve
  kCount
};
constexpr int kNumPrims = static_cast<int>(Prim::kCount);
const char* prim_name(Prim p);

struct PrimTally {
  long long calls = 0;
  double flops = 0.0;         // the present formulation
  double target_flops = 0.0;  // shifted Cholesky and Householder QR only (above)
  double seconds = 0.0;
};

struct SolverTally {
  PrimTally prim[kNumPrims];
  // The step's reduced systems: how many were built, how many took the pivoted QR, how many
  // took the main QR of the trial at their parameters (MainQr, var_pro.h), and their sizes
  // summed (compressed rows, linear columns, nonlinear columns k, rank of the linear ones).
  long long systems = 0, pivoted = 0, reused_qr = 0;
  double sum_rows = 0.0, sum_kc = 0.0, sum_kb = 0.0, sum_rank = 0.0;
  double sum_elems = 0.0;  // rows x (kc + kb + 1): the entries of the compressed [J_c | J_b | r]
  int max_rows = 0, max_kc = 0, max_kb = 0;
  // reduced_solve: first solves of a system, those that found it indefinite (the saddle-free
  // path, dsyevd), and all tries (damping retries included).
  long long first_solves = 0, indefinite = 0, tries = 0;
  // The trials' least squares: how many, their rows and columns summed, the largest.
  long long trials = 0;
  double sum_trial_rows = 0.0, sum_trial_m = 0.0, sum_trial_elems = 0.0;
  int max_trial_rows = 0, max_trial_m = 0;
  // Trials whose system carried global marks (least_squares.h): solved by the QR path, or sent
  // to dgelsd because their main columns looked dependent.
  long long trial_qr = 0, trial_fallbacks = 0;
};

// Installs t (null: none). The caller owns it; records go to it until it is replaced.
void set_solver_tally(SolverTally* t);
SolverTally* solver_tally();

// Adds one call of p.
void tally_add(Prim p, double flops, double target_flops, double seconds);
// Updates the size counters under the same lock: f(tally).
template <class F>
void tally_sizes(F f);

// Standard operation counts (a multiply and an add count two). Householder QR of an m x n
// matrix, m >= n: 2 m n^2 - 2 n^3 / 3 (LAPACK Working Note 41; Golub and Van Loan, Matrix
// Computations, 4th ed., 5.2.2); m < n: the same with m and n swapped (the first m columns'
// reflectors, applied to the rest, count as about that). Applying k reflectors of an m-row QR
// to n columns: 4 m n k - 2 n k^2. Cholesky n^3 / 3, its solve 2 n^2 per right-hand side.
// Symmetric eigendecomposition with eigenvectors: 9 n^3 (the symmetric QR algorithm, Golub
// and Van Loan 8.3; divide and conquer, dsyevd, often does less: the measured rate says how
// much). Least squares by SVD, m >= n: 2 m n^2 + 11 n^3 (R-SVD, Golub and Van Loan 5.4.8;
// dgelsd first reduces to R when m is well above n). Triangular solve m^2 per right-hand
// side; GEMM 2 m n k; SYRK n^2 k; GEMV 2 m n.
double flops_qr(double m, double n);
double flops_apply_q(double m, double n, double k);
double flops_potrf(double n);
double flops_syevd(double n);
// dsyevd less its back-transformation (dormtr on the n eigenvectors, 2 n^3): dsytrd, then the
// eigenvectors of the tridiagonal matrix (dstedc).
double flops_tridiagonal_eigen(double n);
double flops_gelsd(double m, double n);

// A timer of the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID: time the thread waits
// for a core does not count), read only while a tally is installed.
double thread_cpu_seconds();
class TallyTimer {
 public:
  TallyTimer() : on_(solver_tally() != nullptr), t0_(on_ ? thread_cpu_seconds() : 0.0) {}
  bool on() const { return on_; }
  double seconds() const { return on_ ? thread_cpu_seconds() - t0_ : 0.0; }

 private:
  bool on_;
  double t0_;
};

// Which step's work a call of the shared least-squares code belongs to: the step's system, a
// trial, or neither (a linear stage; not recorded). Set by HostSolver for its calls.
enum class TallyPhase : int { kNone = 0, kSystem = 1, kTrial = 2 };
TallyPhase tally_phase();
class TallyPhaseScope {
 public:
  explicit TallyPhaseScope(TallyPhase p);
  ~TallyPhaseScope();
  TallyPhaseScope(const TallyPhaseScope&) = delete;
  TallyPhaseScope& operator=(const TallyPhaseScope&) = delete;

 private:
  TallyPhase prev_;
};

namespace detail {
void tally_lock();
void tally_unlock();
}  // namespace detail

template <class F>
void tally_sizes(F f) {
  SolverTally* t = solver_tally();
  if (t == nullptr) return;
  detail::tally_lock();
  f(*t);
  detail::tally_unlock();
}

}  // namespace gs
