// Householder QR that skips the zeros below a staircase. The compressed Jacobian of a relu
// network on 1D inputs (compress_relu1d) has its rows in runs from left to right, and a neuron
// that is active left of its kink is zero on every run right of it: with its columns taken in
// the order of their last nonzero row, a panel of columns reaches only as far down as its last
// column does, and so do its reflectors. Host only; LAPACK's dgeqr2, dlarft and dlarfb do the
// arithmetic.
#pragma once

#include <vector>

namespace gs {

// Householder QR of the first k columns of the rows x n matrix a (column-major, leading
// dimension lda; k <= rows), with Q^T applied to its other n - k columns, a panel of
// kStaircasePanel columns at a time. A panel is factorized, and its reflectors applied to the
// columns on its right, only down to the last row where one of its columns has a nonzero (as
// they stand then) or to the panel's last diagonal row, whichever is lower. The result is in
// dgeqrf's layout: R on and above the diagonal, the reflectors below it (zero past their
// panel's reach), their scalars in tau; mathematically dgeqrf's reflectors. On a dense matrix
// the work is dgeqrf's; with the columns sorted by their last nonzero row it is a fraction.
constexpr int kStaircasePanel = 32;
// Returns the flops done (tally.h's counts for each panel's QR and its application).
double staircase_qr(int rows, int n, int k, double* a, int lda, double* tau, std::vector<double>& work);

// c := Q^T c (rows x ncols, leading dimension ldc) for the first k <= rows reflectors of a QR in dgeqrf's
// layout (a, lda, tau), a panel of kStaircasePanel reflectors at a time, each panel applied only
// down to the last row its reflectors reach (their last nonzero). The same as dormqr's "L", "T".
// Returns the flops done.
double staircase_apply_qt(int rows, int ncols, int k, const double* a, int lda, const double* tau, double* c,
                        int ldc, std::vector<double>& work);

}  // namespace gs
