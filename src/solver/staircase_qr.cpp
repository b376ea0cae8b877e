// Householder QR over a staircase of zeros (staircase_qr.h).
#include "solver/staircase_qr.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "gpusweep/solver/tally.h"
#include "solver/lapack.h"

namespace gs {
namespace {

// One past the last row at or after `from` where the column col has a nonzero; `from` if none.
int reach(const double* col, int from, int rows) {
  int e = rows;
  while (e > from && col[e - 1] == 0.0) --e;
  return e;
}

// One past the deepest nonzero row of columns [k0, k0 + nb) of a, and at least k0 + nb: how far
// down a panel (its columns before its QR, or its reflectors after) reaches.
int panel_reach(const double* a, int lda, int rows, int k0, int nb) {
  int e = k0 + nb;
  for (int j = k0; j < k0 + nb; ++j) e = std::max(e, reach(a + static_cast<std::size_t>(j) * lda, e, rows));
  return e;
}

// c := H^T c on rows [0, m) for the nb reflectors at v (a panel in dgeqrf's layout), c m x ncols:
// LAPACK's block reflector (dlarft, dlarfb), as dormqr applies one panel, to the columns of c
// that have a nonzero in those rows (H^T leaves a column that is zero there as it is); those
// are gathered into one block where some are left out. Returns the flops.
double apply_panel(int m, int nb, int ncols, const double* v, int ldv, const double* tau, double* c, int ldc,
                   std::vector<double>& work) {
  if (m <= 0 || nb <= 0 || ncols <= 0) return 0.0;
  thread_local std::vector<int> hit;
  thread_local std::vector<double> block;
  hit.clear();
  for (int j = 0; j < ncols; ++j) {
    const double* col = c + static_cast<std::size_t>(j) * ldc;
    int r = 0;
    while (r < m && col[r] == 0.0) ++r;
    if (r < m) hit.push_back(j);
  }
  const int nh = static_cast<int>(hit.size());
  if (nh == 0) return 0.0;
  const std::size_t tsize = static_cast<std::size_t>(nb) * nb;
  if (work.size() < tsize + static_cast<std::size_t>(nh) * nb) work.resize(tsize + static_cast<std::size_t>(nh) * nb);
  double* t = work.data();
  dlarft_("F", "C", &m, &nb, v, &ldv, tau, t, &nb);
  if (nh == ncols) {
    dlarfb_("L", "T", "F", "C", &m, &nh, &nb, v, &ldv, t, &nb, c, &ldc, work.data() + tsize, &nh);
  } else {
    block.resize(static_cast<std::size_t>(m) * nh);
    for (int h = 0; h < nh; ++h)
      std::copy(c + static_cast<std::size_t>(hit[h]) * ldc, c + static_cast<std::size_t>(hit[h]) * ldc + m,
                block.data() + static_cast<std::size_t>(h) * m);
    dlarfb_("L", "T", "F", "C", &m, &nh, &nb, v, &ldv, t, &nb, block.data(), &m, work.data() + tsize, &nh);
    for (int h = 0; h < nh; ++h)
      std::copy(block.data() + static_cast<std::size_t>(h) * m, block.data() + static_cast<std::size_t>(h + 1) * m,
                c + static_cast<std::size_t>(hit[h]) * ldc);
  }
  return flops_apply_q(m, nh, nb);
}

}  // namespace

double staircase_qr(int rows, int n, int k, double* a, int lda, double* tau, std::vector<double>& work) {
  if (k > rows) throw std::logic_error("staircase_qr: more columns than rows");
  double flops = 0.0;
  for (int k0 = 0; k0 < k; k0 += kStaircasePanel) {
    const int nb = std::min(kStaircasePanel, k - k0);
    const int m = panel_reach(a, lda, rows, k0, nb) - k0;
    double* panel = a + k0 + static_cast<std::size_t>(k0) * lda;
    if (work.size() < static_cast<std::size_t>(nb)) work.resize(nb);
    int info = 0;
    dgeqr2_(&m, &nb, panel, &lda, tau + k0, work.data(), &info);
    if (info != 0) throw std::logic_error("dgeqr2: argument " + std::to_string(-info) + " is invalid");
    flops += flops_qr(m, nb) +
             apply_panel(m, nb, n - k0 - nb, panel, lda, tau + k0, panel + static_cast<std::size_t>(nb) * lda, lda, work);
  }
  return flops;
}

double staircase_apply_qt(int rows, int ncols, int k, const double* a, int lda, const double* tau, double* c,
                          int ldc, std::vector<double>& work) {
  if (k > rows) throw std::logic_error("staircase_apply_qt: more reflectors than rows");
  if (rows <= 0 || ncols <= 0) return 0.0;
  double flops = 0.0;
  for (int k0 = 0; k0 < k; k0 += kStaircasePanel) {
    const int nb = std::min(kStaircasePanel, k - k0);
    // Below the diagonal a reflector column holds its vector: its reach is the panel's.
    const int m = panel_reach(a, lda, rows, k0, nb) - k0;
    flops += apply_panel(m, nb, ncols, a + k0 + static_cast<std::size_t>(k0) * lda, lda, tau + k0, c + k0, ldc, work);
  }
  return flops;
}

}  // namespace gs
