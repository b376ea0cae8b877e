// Variable projection for the ALL stage, on the host (LAPACK): Newton on the nonlinear
// parameters with the linear ones eliminated exactly.
//
// With the gates and the middle factors held, y is linear in the last factor and d0 (the mlp
// and gpoly:K: in D and d0), so
// the loss has a least-squares optimum c*(b) in those "linear" parameters for every value b of
// the others. Variable projection minimizes phi(b) = L(b, c*(b)). Its gradient is dL/db at
// (b, c*) and its Hessian is the Schur complement H_bb - H_bc H_cc^+ H_cb of the exact Hessian.
// H_cc is J_c^T J_c (the truncated-power basis: condition numbers near 1e16, and exactly
// singular where MASO's outer neurons and d0 span the same functions), so it enters only
// through an eigenvalue-truncated pseudo-inverse, and c itself is never stepped: after each
// step on b it is solved again with the rank-revealing least squares of least_squares.h.
//
// The parameterization's continuous symmetries are removed from b by holding one coordinate
// of each orbit fixed (Role::kFixed): relu's positive homogeneity (the largest gate weight of
// each neuron), each middle factor's scale against the last one (its largest entry) and D
// against the last factor (all of D; its columns lie in the span of the last factor's, and
// with them in the least-squares solve the rank decision loses accuracy).
#pragma once

#include <vector>

#include "gpusweep/network.h"

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
int min_active_points(const Shape& s);
EdgeKind kink_place(const Shape& s, const double* theta, const Points1d& pts, int i);

// Removes from cols the linear columns of the thin neurons, so that the least-squares solve
// leaves them at zero: the neuron is switched off, and a step that would thin a neuron out
// that far is refused by the loss it costs.
void drop_thin_neurons(const Shape& s, const double* theta, const Points1d& pts,
                       std::vector<int>* cols);

// The role of each of the network's num_params(s) parameters at theta. With the training
// points (1D relu; pts may be null otherwise), the gate and middle factors of every neuron
// whose kink lies outside the domain are fixed as well (on the data they move only within the
// span of the other outer neurons, and unchecked they drift to large values that show between
// the data and the end of the domain), and all of a thin neuron's.
void var_pro_roles(const Shape& s, const double* theta, const Points1d* pts, Role* role);

// The curvature of the training loss in the gate of each relu neuron that the per-point
// Hessian does not hold: y has a kink where G x + g = 0, so dL/dg jumps as the kink crosses a
// training point, by 2 r(x) D m(x) / (N |G|) (m: the neuron's other factors). Over a step that
// crosses many points these jumps add up to the curvature 2 rho(b) r(b) D m(b) / |G| (rho: the
// density of the points at the kink b = -g/G), as large as the Gauss-Newton curvature of a
// knot near the optimum. r D m is averaged over the `half` sorted training points on each side
// of the kink, and rho is estimated from four times as many (none when the kink lies outside
// the points). 1D relu only (relu1d_fast_path);
// appends to entries (row, column, value) triples of the Hessian, both triangles.
struct HessEntry {
  int row, col;
  double value;
};
void knot_curvature(const Shape& s, const double* theta, const double* xs, const double* ys,
                    int npts, int half, std::vector<HessEntry>* entries);

// The reduced Newton system of one network: from the exact Hessian H and gradient g over all
// num_params parameters (m of them; H column-major, both triangles), their Jacobi scale
// (jacobi_scale; 0 marks a singular row, which is treated as fixed), the roles and extra
// Hessian entries, writes the Schur complement A (k x k, column-major, scaled by scale on
// both sides) and the reduced gradient gr (scaled), k = the number of nonlinear parameters
// with nonzero scale, listed in index. Linear-set eigenvalues below kPinvRel times the largest
// are dropped from the pseudo-inverse.
constexpr double kPinvRel = 1e-14;
struct ReducedSystem {
  std::vector<int> index;
  std::vector<double> A, gr;
};
void reduced_system(int m, const double* H, const double* g, const double* scale, const Role* role,
                    const std::vector<HessEntry>& extra, ReducedSystem* out);

// Solves the reduced system by Cholesky, scaled to its own unit diagonal and damped by lambda
// (Levenberg-Marquardt), and writes the step on all m parameters (zero outside index). Returns
// the dpotrf info; on success writes *pred, the decrease of the reduced quadratic model.
int reduced_solve(int m, const double* scale, const ReducedSystem& sys, double lambda,
                  std::vector<double>& work, double* step, double* pred);

}  // namespace gs
