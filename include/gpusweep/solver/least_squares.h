// Linear stages solved to their least-squares optimum without the normal equations. The stage's
// Jacobian J (training points x stage columns) and the residual r are first compressed to a
// small system [B | h] with ||J s + r|| = ||B s + h|| for every step s (an orthogonal
// reduction: the Gram matrix J^T J is never formed, so conditioning is not squared), then a
// rank-revealing LAPACK solve (dgelsd, the SVD; for relu 1D systems a QR with the same
// threshold, see least_squares_values) gives the minimizer of least norm in the exact null
// space. Host only.
#pragma once

#include <vector>

#include "gpusweep/model/network.h"

namespace gs {

// A compressed least-squares system: rows x m matrix B (column-major, leading dimension rows)
// and right-hand side h, with ||J s + r||^2 = ||B s + h||^2 + rest for every s.
struct LsSystem {
  int rows = 0, m = 0;
  std::vector<double> B, h;
  double rest = 0.0;  // the part of ||r||^2 that no step can reach
  // Empty, or one mark per column: 1 where the column is one polynomial of degree <= c on all
  // of the training points (compress_relu1d: d0, and any column of a neuron active on every
  // point). Together such columns span at most c + 1 functions, so more of them are linearly
  // dependent; least_squares_values solves a system with these marks by QR (see there).
  std::vector<unsigned char> global;
};

// Relative rank threshold of the solve: singular directions below kLsRcondEps * max(N, m) of the
// largest (N = training points, columns scaled to unit norm) count as the exact null space,
// as numpy's lstsq counts them.
constexpr double kLsRcondEps = 2.220446049250313e-16;

// Scratch of least_squares_values, kept by its caller from call to call so that a solve
// allocates nothing once the sizes have been met.
struct LsScratch {
  std::vector<double> c, A, rhs, sv, work, tau, tg, Z, tz, y;
  std::vector<int> iwork, order, jp;
  std::vector<int> first, last;  // each column's first and last row with a nonzero entry
  std::vector<unsigned char> nonzero;
  // Solves by each path since the scratch was made: the QR path, and the systems with global
  // marks that fell back to dgelsd (their main columns looked dependent).
  long long qr_solves = 0, fallbacks = 0;
  // After a solve by the QR path: the count km of its main columns, whose Householder QR (R on
  // and above the diagonal, the reflectors below, leading dimension sys.rows) are the first km
  // columns of A, with their scalars in tau, the columns being order[0..km) of the system,
  // each divided by its norm c[q]. -1 after any other solve.
  // The QR path takes the main columns in the order of their last nonzero row (a staircase:
  // staircase_qr skips the zeros below it), and with flip the system's rows in reverse order
  // (row k as row rows - 1 - k), where that puts more zeros below the staircase.
  int qr_main = -1;
  bool flip = false;
  double main_flops = 0.0;  // the flops of the main columns' QR (staircase_qr's count)
  // Set by the caller for the next solve, or empty: one mark per column; the QR path factorizes
  // the main columns marked 1 after the others (the answer is the same to rounding). The
  // variable-projection trial marks the linear columns of zero Jacobi scale at the last
  // assembly (those the reduced system leaves out), so that the next system, if it leaves out
  // the same ones, can take the QR of the others: a prefix of this one (MainQr).
  std::vector<unsigned char> late;
};

// The new values of the stage's m parameters (theta: their current values) that minimize
// ||B (x - theta) + h||, of least norm ||diag(c) x|| among the minimizers, c_q = ||B e_q|| (the
// Jacobi scaling of the Newton systems; zero columns count with c_q = 1 and get x_q = 0).
// npoints sets the rank threshold. Returns the numerical rank. scratch may be null.
//
// A system without global marks is solved by dgelsd (the SVD): directions of singular value
// at most rcond = kLsRcondEps * max(N, m) times the largest are dropped. A system with them
// (sys.global) is solved by QR with the structure of reduced_system (var_pro.h): an unpivoted
// Householder QR of the main (nonzero, unmarked) scaled columns (staircase_qr, the columns in the
// order of their last nonzero row: LsScratch::flip), Q^T applied to the global
// columns and the right-hand side, a column-pivoted QR of the global columns' rows below the
// main block, and a triangular solve. A global column whose pivoted diagonal is at most rcond
// times the largest diagonal of R counts as dependent: its direction, and the main columns'
// share of it, is the null space, and the answer is the basic solution less its projection on
// that null space (least scaled norm there, as dgelsd's). Where any diagonal of the main
// block's R is at most rcond times the largest, the system goes to dgelsd (counted in
// scratch->fallbacks). The two differ only in how the rank is decided: by the diagonals of
// R (each at least the smallest singular value) instead of the singular values, so a
// direction whose singular value falls below rcond while no diagonal does is kept here and
// dropped by dgelsd; at the conditioning these systems have (singular values of the scaled
// main block far above rcond) the answers agree to rounding.
int least_squares_values(const LsSystem& sys, const double* theta, int npoints, double* x,
                         LsScratch* scratch = nullptr);

// Relu networks on 1D inputs (relu1d.h): the exact compression of the Jacobian columns of the
// network theta named by columns (parameter indices) on the training points xs (sorted
// ascending, n of them) with residuals r (y(x_k) - f(x_k)). The gates split the points into
// runs on which every column is one polynomial of degree <= c (column_degree of arch.h); each
// run contributes the R factor of its local Vandermonde matrix (LAPACK dgeqrf in the run's
// own centred, scaled coordinate). Each gate is a half-line and adds one boundary, so the
// system has at most (n + 1)(c + 1) rows, however many points there are.
void compress_relu1d(const Shape& s, const double* theta, const std::vector<int>& columns,
                     const double* xs, const double* r, int n, LsSystem* out);

// Any network: the compression as a streaming QR of the Jacobian rows (their entries in
// columns), a tile of
// points at a time (LAPACK dgeqrf on the previous R stacked over the tile). x is row-major
// (n points of s.d inputs), f the targets. At most m + 1 rows.
void compress_rows(const Shape& s, const double* theta, const std::vector<int>& columns,
                   const double* x, const double* f, int n, LsSystem* out);

// The parameter indices b, b + 1, ..., e - 1: the columns of a stage [b, e).
std::vector<int> param_range(int b, int e);

}  // namespace gs
