// Baselines that need no training: the paper's analytical constructions (section 3) of mlp
// and glu parameters, the spline networks, and least-squares splines of degree 1 to
// kMaxSplineDegree (model.h) on uniform cells. Host only (LAPACK); the sweep measures them
// (run_baseline in sweep.h) and never trains them.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "gpusweep/model/arch.h"

namespace gs {

// f evaluated at a list of points (a target's expression, or a test's lambda).
using TargetFn = std::function<std::vector<double>(const std::vector<double>&)>;

// The paper's construction of a width-n network on [lo, hi], cut into n equal cells with
// boundaries x_k = lo + k h. Every neuron k has G_k = 1, g_k = -x_k, so exactly one neuron
// switches on at each boundary, and d0 = f(lo). Sweeping the cells left to right:
//   mlp: D_k is set so that y(x_{k+1}) = f(x_{k+1}): the piecewise-linear interpolant.
//   glu: neuron k adds D_k (x - x_k)(U_k x + u_k), D_k = 1, and U_k, u_k are set so that
//        the cell's quadratic matches f at the cell's middle and right end.
// Returns the parameter vector in the layout of network.h. Only mlp and glu are defined;
// other archs throw std::invalid_argument.
std::vector<double> paper_network(Arch arch, int n, double lo, double hi, const TargetFn& f);

// A spline of one degree on n uniform cells over [lo, hi] in the uniform B-spline basis
// (knots lo + (j - degree) h, j = 0..n + 2 degree): n + degree coefficients. Outside
// [lo, hi] it continues the end cells' polynomials.
struct UniformSpline {
  int degree = 1;
  int cells = 1;
  double lo = 0.0, hi = 1.0;
  std::vector<double> coef;  // n + degree B-spline coefficients

  double operator()(double x) const;
};

// The least-squares spline through the points (x, y), by LAPACK's dgelsd: where the points
// do not determine every coefficient (a cell with too few points) it is the minimum-norm
// solution. Throws std::invalid_argument for a bad degree, width or range.
UniformSpline fit_spline(int degree, int cells, double lo, double hi, const std::vector<double>& x,
                         const std::vector<double>& y);

// Bytes of the dense least-squares matrix fit_spline needs for a width on n_points points.
std::size_t spline_fit_bytes(int degree, int cells, int n_points);

// The spline network of gated:K at width n (relu, 1D): the network that equals the
// least-squares C^K spline of degree K + 1 on the points (x, y) (fit_spline), with knots at
// its gates. c = spline_network_cells cells of width h = (hi - lo) / c; the c - 1 interior
// knots lo + j h each hold one neuron, the truncated power (x - t_j)_+^(K+1) times the jump
// of the spline's (K+1)-th derivative there over (K+1)!, with every factor's root at the
// knot. The spline's global polynomial P is d0 plus the outer neurons, whose gates switch
// on at e = lo - (hi - lo) / 2: P = d0 + (x - e) S(x) with S of degree K. One outer neuron
// holds S while K <= 1 (the mlp's D_i, the glu's one linear factor); from K = 2 on S need
// not have real roots, and two neurons hold S + lam T and -lam T, T real-rooted and lam
// large enough that S + lam T is real-rooted too (its roots from LAPACK dgeev). D_i = 1 and
// the last factor carries the coefficient (the mlp: D_i does). Throws std::invalid_argument
// for a width below spline_network_min_width, an architecture of another family, or a bad
// range.
// gpoly:K's spline network is gated:K's multiplied out: each neuron's polynomial is
// D_i prod_b (U_b x + u_b), and one neuron holds the whole global polynomial (its polynomial
// is free), so a width-n gpoly:K network holds n cells.
std::vector<double> spline_network(Arch arch, int n, double lo, double hi, const std::vector<double>& x,
                                   const std::vector<double>& y);
// The cells of the spline a width-n spline network of arch holds: n for K <= 1 and for
// gpoly:K, n - 1 for gated:K from K = 2 on (one neuron fewer for the interior knots, as the
// global polynomial takes two).
// Each interior knot takes a neuron and the global polynomial at least one more, so c = n
// is the most any such construction holds.
int spline_network_cells(Arch arch, int n);
// The smallest width spline_network builds: 1 for K <= 1 and gpoly:K, 2 for gated:K from K = 2.
int spline_network_min_width(Arch arch);

}  // namespace gs
