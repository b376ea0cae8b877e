// Variable projection for the ALL stage, on the host (LAPACK): Newton on the nonlinear
// parameters with the linear ones eliminated exactly.
//
// With the gates and the middle factors held, y is linear in the last factor and d0 (the mlp
// and gpoly:K: in D and d0), so the loss has a least-squares optimum c*(b) in those "linear"
// parameters for every value b of the others. Variable projection minimizes
// phi(b) = L(b, c*(b)). Its gradient is dL/db at (b, c*) and its Hessian is the Schur
// complement H_bb - H_bc H_cc^-1 H_cb of the exact Hessian. H_cc is J_c^T J_c, and J_c (the
// truncated-power basis) has condition numbers near 1e9 at width 200, so H_cc is never formed:
// the Schur complement comes from a Householder QR of the compressed Jacobian [J_c | J_b | r]
// (reduced_system), and c itself is never stepped: after each step on b it is solved again
// with the rank-revealing least squares of least_squares.h.
//
// The parameterization's continuous symmetries are removed from b by holding one coordinate
// of each orbit fixed (Role::kFixed): relu's positive homogeneity (the largest gate weight of
// each neuron), each middle factor's scale against the last one (its largest entry) and D
// against the last factor (all of D; its columns lie in the span of the last factor's, and
// with them in the least-squares solve the rank decision loses accuracy).
#pragma once

#include <cmath>
#include <vector>

#include "gpusweep/model/hd.h"
#include "gpusweep/model/network.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/least_squares.h"

namespace gs {

enum class Role : unsigned char { kNonlinear = 0, kLinear = 1, kFixed = 2 };

// The linear parameters, ascending: the last factor and d0; an arch whose only factor is its
// gate (the mlp, gpoly:K): D (all of each neuron's polynomial coefficients) and d0.
std::vector<int> linear_columns(const Shape& s);

// The sorted training points of a 1D dataset and the ends of its domain (Dataset::lo, hi).
struct Points1d {
  const double* x;
  int n;
  double lo, hi;
};

// Relu on 1D inputs: where neuron i's kink lies against the training points.
// kOutside: beyond the domain; on the data the neuron is one polynomial, which the other outer
// neurons and d0 span too. kThin: inside the data with fewer than 2 (c + 1) points, c the
// column degree of arch.h, between
// the kink and the end of the data, or between the data and the end of the domain: a
// polynomial piece fitted to those few points, or to none, whose coefficients nothing else
// constrains, and which takes any value between the last point and the end of the domain,
// where test points lie. kInside: every other kink.
enum class EdgeKind : int { kInside = 0, kThin = 1, kOutside = 2 };
HD inline int min_active_points(const Shape& s) { return 2 * (column_degree(s.arch) + 1); }
// The first of the sorted points pts.x at or above v (pts.n if none), as std::lower_bound.
HD inline int first_at_or_above(const Points1d& pts, double v) {
  int a = 0, b = pts.n;
  while (a < b) {
    const int mid = a + (b - a) / 2;
    if (pts.x[mid] < v) a = mid + 1;
    else b = mid;
  }
  return a;
}
HD inline EdgeKind kink_place(const Shape& s, const double* theta, const Points1d& pts, int i) {
  const NeuronLines L = neuron_lines(s, theta, i);
  if (L.W[0] == 0.0 || pts.n < 2) return EdgeKind::kOutside;
  const double kink = -L.w[0] / L.W[0];
  const int at = first_at_or_above(pts, kink);
  if (at == 0 || at == pts.n) return kink < pts.lo || kink > pts.hi ? EdgeKind::kOutside : EdgeKind::kThin;
  return (at < pts.n - at ? at : pts.n - at) < min_active_points(s) ? EdgeKind::kThin : EdgeKind::kInside;
}

// Moves the kink of every thin neuron out of the domain, past the end on the side of the
// fewer training points (the end of the thin zone) by 0.0005 of
// its length (the margin of the MASO knots), by its gate bias; returns how many moved. A neuron
// whose active side held the few points is then off on all of the data; one whose active side
// held the rest is one polynomial on all of it (an outside neuron). Either way the thin piece
// is gone: nothing is left fitted to a few points, and the function changes only there, so a
// step that carries a kink into the thin zone is judged by what the training points see.
int push_out_thin(const Shape& s, const Points1d& pts, double* theta);
// The same for neuron i alone (relu on 1D inputs); whether it moved.
HD inline bool push_out_thin_neuron(const Shape& s, const Points1d& pts, double* theta, int i) {
  if (kink_place(s, theta, pts, i) != EdgeKind::kThin) return false;
  const double G = theta[factor_offset(s, 0) + i];
  const double kink = -theta[factor_offset(s, 0) + s.n + i] / G;
  // Out past the end of the data the kink is nearer to, counted in points: with the data
  // spread unevenly over the domain, the domain's midpoint can lie on the other side.
  const int at = first_at_or_above(pts, kink);
  const double margin = 0.0005 * (pts.hi - pts.lo);
  const double out = at < pts.n - at ? pts.lo - margin : pts.hi + margin;
  theta[factor_offset(s, 0) + s.n + i] = -G * out;
  return true;
}

// The role of each of the network's num_params(s) parameters at theta. With the training
// points (1D relu; pts may be null otherwise), the gate and middle factors of every neuron
// whose kink lies outside the domain are fixed as well (on the data they move only within the
// span of the other outer neurons, and unchecked they drift to large values that show between
// the data and the end of the domain), and all of a thin neuron's.
HD inline void var_pro_roles(const Shape& s, const double* theta, const Points1d* pts, Role* role) {
  const int p = num_params(s);
  const int nf = num_factors(s.arch);
  for (int q = 0; q < p; ++q) role[q] = Role::kNonlinear;
  if (nf > 1)
    for (int q = d_offset(s); q < p - 1; ++q) role[q] = Role::kFixed;
  // The linear parameters (linear_columns).
  const int lb = nf == 1 ? d_offset(s) : factor_offset(s, nf - 1), le = nf == 1 ? p : d_offset(s);
  for (int q = lb; q < le; ++q) role[q] = Role::kLinear;
  if (nf > 1) role[p - 1] = Role::kLinear;
  if (pts != nullptr && relu1d_fast_path(s)) {
    // A neuron's gate and middle factors come before its last factor in its local order.
    const int nonlinear = (nf == 1 ? 1 : nf - 1) * (s.d + 1);
    for (int i = 0; i < s.n; ++i) {
      const EdgeKind place = kink_place(s, theta, *pts, i);
      if (place == EdgeKind::kInside) continue;
      // Outside: the gate and middle factors; thin: all (its linear columns stay at zero).
      const int fixed = place == EdgeKind::kOutside ? nonlinear : neuron_num_params(s);
      for (int k = 0; k < fixed; ++k) role[neuron_param_index(s, i, k)] = Role::kFixed;
    }
  }
  for (int i = 0; i < s.n; ++i) {
    // Gate (relu only: positive homogeneity): its largest weight. Middle factors (against the
    // last one's scale): their largest entry, bias included.
    for (int b = 0; b + 1 < nf || (b == 0 && nf == 1); ++b) {
      if (b == 0 && s.act != Act::kRelu) continue;
      int best = -1;
      double big = 0.0;
      const int count = b == 0 ? s.d : s.d + 1;
      for (int j = 0; j < count; ++j) {
        const int q = neuron_param_index(s, i, b * (s.d + 1) + j);
        if (fabs(theta[q]) > big) {
          big = fabs(theta[q]);
          best = q;
        }
      }
      if (best >= 0) role[best] = Role::kFixed;
    }
  }
}

// The columns of the reduced system: the linear parameters that enter (role kLinear, nonzero
// Jacobi scale), the main ones first and then the `global` ones, whose columns are one
// polynomial of degree <= c on all of the data (d0, and the last factor of each neuron whose
// kink lies outside the domain: together they span at most c + 1 functions, so they are
// linearly dependent whenever there are more than c + 1 of them); then the nonlinear ones
// (role kNonlinear, nonzero scale). pts may be null (no kink is then called outside).
struct VarProColumns {
  std::vector<int> lin;
  int global = 0;
  std::vector<int> non;
  std::vector<int> all() const;  // lin, then non
};
void var_pro_columns(const Shape& s, const double* theta, const Role* role, const double* scale,
                     const Points1d* pts, VarProColumns* out);
// Parameter q's place in those columns (var_pro_columns is columns_of_classes of these), so that
// the device can find them and send one byte per parameter.
enum class ColumnClass : unsigned char { kNone = 0, kMain = 1, kGlobal = 2, kNonlinear = 3 };
HD inline ColumnClass column_class(const Shape& s, const double* theta, const Role* role, const double* scale,
                                   const Points1d* pts, int q) {
  if (scale[q] == 0.0 || role[q] == Role::kFixed) return ColumnClass::kNone;
  if (role[q] == Role::kNonlinear) return ColumnClass::kNonlinear;
  int i = 0, k = 0;
  const bool owned = param_owner(s, q, &i, &k);
  const bool outside = owned && pts != nullptr && relu1d_fast_path(s) && kink_place(s, theta, *pts, i) == EdgeKind::kOutside;
  return !owned || outside ? ColumnClass::kGlobal : ColumnClass::kMain;
}
void columns_of_classes(const unsigned char* cls, int m, VarProColumns* out);

// The residual curvature S_pq = (2/N) sum_k r_k d2y(x_k)/dtheta_p dtheta_q for p in cols.all()
// and q in cols.non, into S ((kc + kb) x kb, column-major): relu on 1D inputs, exactly, from
// prefix sums of r_k x_k^j over the sorted points xs (relu1d.h; r = y - f at xs).
void residual_curvature_relu1d(const Shape& s, const double* theta, const VarProColumns& cols,
                               const double* xs, const double* r, int n, std::vector<double>* S);

// The reduced Newton system of one network, by orthogonal factorization of its compressed
// Jacobian (least_squares.h), so that the conditioning of the linear columns is never squared.
// js compresses [J_c | J_b | r] with the columns cols.all() (so ||J s + r|| = ||B s + h||);
// weight = 2 / N (the loss is the mean of the squared residuals); scale, the Jacobi scale of
// every parameter; S, residual_curvature's matrix. With the Householder QR
//   [J_c | J_b | r] = Q [[R_cc, R_cb, h_c], [0, R_bb, h_b]],
// the reduced Hessian (the Schur complement of the exact Hessian's linear block) and gradient
// are, with W = R_cc^-T S_cb,
//   A = R_bb^T R_bb + S_bb - R_cb^T W - W^T R_cb - W^T W,   gr = R_bb^T h_b - W^T h_c,
// scaled by the Jacobi scale on both sides; R_bb^T R_bb is the Gauss-Newton part (the
// Jacobian of the projected residual, as Kaufman's) and the rest the exact second-order terms.
// The QR of the main linear columns is unpivoted; a diagonal entry of R_cc below
// kVarProRank * max(N, kc) times the largest (columns of unit norm: the rank threshold of the
// least-squares solves, least_squares.h) sends the network to a column-pivoted QR of all the
// linear columns (`pivoted`), whose trailing columns below that threshold are left out (as the
// trial's minimum-norm solve leaves out the directions below its threshold). The global
// columns always take a small pivoted QR of their own after the main ones.
//
// main, when given, is the QR of the main linear columns that a trial made at the same
// parameters (MainQr): where the system's main columns are its first ones, in any order, its R
// (rescaled from the trial's unit column norms to the system's scale) and reflectors of those
// stand in for the main QR (the first k steps of a Householder QR see only the first k
// columns), R_cc's columns in the trial's order and the rows in the trial's (MainQr::flip), and
// the system is built from there as it would be from its own. Q^T reaches the other columns a
// panel at a time, each only down to its reflectors' last nonzero row (staircase_apply_qt).
constexpr double kVarProRank = 2.220446049250313e-16;

// The Householder QR of the main linear columns of a trial's least-squares solve (the QR path of
// least_squares_values: each column divided by its norm), kept for the reduced system at the
// trial's parameters, whose main linear columns are the same functions of the same compressed
// rows (compress_relu1d depends on the nonlinear parameters alone).
struct MainQr {
  int rows = 0;
  bool flip = false;         // the QR is of the system's rows in reverse order (LsScratch::flip)
  std::vector<int> cols;     // the parameters of the main columns, in the order of the QR
  std::vector<double> norm;  // each column's norm, by which the trial divided it
  std::vector<double> a;     // R and the reflectors: rows x cols.size(), leading dimension rows
  std::vector<double> tau;
};

struct ReducedSystem {
  std::vector<int> index;      // the nonlinear parameters (cols.non)
  std::vector<double> A, gr;   // k x k, column-major, both triangles; k
  int rank = 0;                // of the linear columns
  bool pivoted = false;        // the rank-revealing path was taken
  bool reused = false;         // the main QR came from a trial's (MainQr)
  // reduced_solve's factorization, kept for the damping retries: unknown until the first
  // solve, then Cholesky (T A T positive definite) or the eigendecomposition of T A T =
  // Q (U diag(ev) U^T) Q^T: Q from its reduction to tridiagonal form (dsytrd: the reflectors in
  // V's lower triangle, their scalars in tq), U and ev the eigenvectors and values of the
  // tridiagonal matrix (dstedc). Q U, which dsyevd would form at 2 kb^3 flops, is never formed:
  // a try applies Q to its two vectors instead.
  enum Mode { kUnknown = 0, kCholesky = 1, kEigen = 2 };
  Mode mode = kUnknown;
  std::vector<double> t, V, ev, e, tq, U;
  std::vector<double> work;    // scratch, reused
};
void reduced_system(const LsSystem& js, const VarProColumns& cols, const double* scale, double weight,
                    int npoints, const std::vector<double>& S, ReducedSystem* out, const MainQr* main = nullptr);

// The damped step on the reduced system, into step (all m parameters; zero outside index),
// with the matrix scaled to its own unit diagonal, T A T, T = diag(1/sqrt|A_kk|). Where T A T
// is positive definite this is Levenberg-Marquardt: (T A T + lambda I) z = -T gr by Cholesky.
// Where it is not, each eigenvalue enters with its absolute value, (|T A T| + lambda I) z =
// -T gr (the saddle-free Newton step of Dauphin et al. 2014): a direction of negative curvature
// is descended as far as its curvature's size allows, and no other direction is damped for it.
// The two agree wherever both apply. The definiteness test (a Cholesky of T A T) and the
// eigendecomposition are made once per system and kept in sys, so a damping retry costs one
// Cholesky, or two matrix-vector products and two applications of Q. Returns 0, or the LAPACK
// info of a failed Cholesky
// or eigendecomposition; on success writes *model (StepModel).
//
// The quadratic model gr.s + s A s / 2 at the step s, in the loss's units: pred, the decrease it
// predicts, -(slope + curvature / 2), with slope = gr.s and curvature = s A s. Along the step's
// direction the model is m(a) = a slope + a^2 curvature / 2; the damping and the absolute
// values of the saddle-free step make the step shorter than the model's own minimizer along it
// (-slope / curvature), or the model has none there (curvature <= 0), and the driver reads
// that to decide whether a longer step is worth a trial.
struct StepModel {
  double pred = 0.0, slope = 0.0, curvature = 0.0;
};
int reduced_solve(int m, const double* scale, ReducedSystem& sys, double lambda,
                  std::vector<double>& work, double* step, StepModel* model);

}  // namespace gs
