// Compressed least-squares systems of linear stages and their rank-revealing solve (LAPACK
// dgeqrf, dgelsd). See least_squares.h.
#include "gpusweep/solver/least_squares.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/tally.h"
#include "solver/lapack.h"
#include "solver/staircase_qr.h"

namespace gs {
namespace {

// In-place QR of the rows x cols matrix a (column-major, leading dimension lda): R in the upper
// triangle. lwork: the size of work, or -1 to ask LAPACK (and size work) first.
void qr_in_place(int rows, int cols, double* a, int lda, std::vector<double>& tau,
                 std::vector<double>& work, int lwork = -1) {
  tau.resize(std::max(1, std::min(rows, cols)));
  int info = 0;
  if (lwork < 0) {
    double query = 0.0;
    dgeqrf_(&rows, &cols, a, &lda, tau.data(), &query, &lwork, &info);
    if (info != 0) throw std::logic_error("dgeqrf workspace query: info " + std::to_string(info));
    lwork = std::max(1, static_cast<int>(query));
    if (static_cast<int>(work.size()) < lwork) work.resize(lwork);
  }
  dgeqrf_(&rows, &cols, a, &lda, tau.data(), work.data(), &lwork, &info);
  if (info != 0) throw std::logic_error("dgeqrf: argument " + std::to_string(-info) + " is invalid");
}

// Column-pivoted QR (jpvt: 1-based permutation out) of the rows x cols block at a.
void pivoted_qr(int rows, int cols, double* a, int lda, int* jpvt, double* tau, std::vector<double>& work) {
  std::fill(jpvt, jpvt + cols, 0);
  int lwork = -1, info = 0;
  double q = 0.0;
  dgeqp3_(&rows, &cols, a, &lda, jpvt, tau, &q, &lwork, &info);
  if (info != 0) throw std::logic_error("dgeqp3 workspace query: info " + std::to_string(info));
  lwork = std::max(1, static_cast<int>(q));
  if (static_cast<int>(work.size()) < lwork) work.resize(lwork);
  dgeqp3_(&rows, &cols, a, &lda, jpvt, tau, work.data(), &lwork, &info);
  if (info != 0) throw std::logic_error("dgeqp3: argument " + std::to_string(-info) + " is invalid");
}

// c := op(Q) c, trans "T" or "N", for the first k reflectors of a QR (a, tau); c: rows x cols.
void apply_q(const char* trans, int rows, int cols, int k, const double* a, int lda, const double* tau,
             double* c, int ldc, std::vector<double>& work) {
  if (rows <= 0 || cols <= 0 || k <= 0) return;
  int lwork = -1, info = 0;
  double q = 0.0;
  dormqr_("L", trans, &rows, &cols, &k, a, &lda, tau, c, &ldc, &q, &lwork, &info);
  if (info != 0) throw std::logic_error("dormqr workspace query: info " + std::to_string(info));
  lwork = std::max(1, static_cast<int>(q));
  if (static_cast<int>(work.size()) < lwork) work.resize(lwork);
  dormqr_("L", trans, &rows, &cols, &k, a, &lda, tau, c, &ldc, work.data(), &lwork, &info);
  if (info != 0) throw std::logic_error("dormqr: argument " + std::to_string(-info) + " is invalid");
}

// The QR path of least_squares_values (least_squares.h) on the scaled system: the columns of
// sys.B divided by c, in the order w.order (the km main columns, then the g global ones), the
// right-hand side rhs = B theta - h. Writes y (scaled values, in w.order's order) and returns
// the rank, or -1 where the main block's R looks rank-deficient (the caller falls back).
int qr_solve(const LsSystem& sys, const double* theta, double rcond, int km, int g, LsScratch& w,
             std::vector<double>& y) {
  const int rows = sys.rows, n = km + g, ld = rows;
  if (km > rows) return -1;
  std::vector<double>& M = w.A;
  M.resize(static_cast<std::size_t>(ld) * (n + 1));
  double* rhs = M.data() + static_cast<std::size_t>(n) * ld;
  std::fill(rhs, rhs + rows, 0.0);
  // System row k is row k of M, or row rows - 1 - k with w.flip.
  const int r0 = w.flip ? rows - 1 : 0, dr = w.flip ? -1 : 1;
  for (int j = 0; j < n; ++j) {
    const int q = w.order[j];
    const double* col = sys.B.data() + static_cast<std::size_t>(q) * rows;
    double* out = M.data() + static_cast<std::size_t>(j) * ld;
    const double inv = 1.0 / w.c[q];
    for (int k = 0, t = r0; k < rows; ++k, t += dr) {
      rhs[t] += col[k] * theta[q];
      out[t] = col[k] * inv;
    }
  }
  for (int k = 0, t = r0; k < rows; ++k, t += dr) rhs[t] -= sys.h[k];
  w.tau.resize(std::max(1, km));
  w.main_flops = 0.0;
  double rmax = 0.0;
  if (km > 0) {
    // The main columns' QR, and Q^T on the global columns and the right-hand side.
    w.main_flops = staircase_qr(rows, n + 1, km, M.data(), ld, w.tau.data(), w.work);
    for (int j = 0; j < km; ++j) rmax = std::fmax(rmax, std::fabs(M[j + static_cast<std::size_t>(j) * ld]));
    for (int j = 0; j < km; ++j)
      if (!(std::fabs(M[j + static_cast<std::size_t>(j) * ld]) > rcond * rmax)) return -1;
  }
  // The global columns below the main block: pivoted QR, its reflectors on the right-hand side,
  // and the main rows of the global columns in the pivoted order.
  const int below = rows - km;
  int r2 = 0;
  w.jp.resize(std::max(1, g));
  for (int j = 0; j < g; ++j) w.jp[j] = j + 1;
  if (g > 0 && below > 0) {
    double* Mg = M.data() + km + static_cast<std::size_t>(km) * ld;
    w.tg.resize(std::max(1, g));
    pivoted_qr(below, g, Mg, ld, w.jp.data(), w.tg.data(), w.work);
    const int kq = std::min(below, g);
    rmax = std::fmax(rmax, std::fabs(Mg[0]));
    while (r2 < kq && std::fabs(Mg[r2 + static_cast<std::size_t>(r2) * ld]) > rcond * rmax) ++r2;
    apply_q("T", below, 1, kq, Mg, ld, w.tg.data(), rhs + km, ld, w.work);
    std::vector<double>& top = w.Z;
    top.resize(static_cast<std::size_t>(std::max(1, km)) * g);
    for (int j = 0; j < g; ++j)
      for (int k = 0; k < km; ++k)
        top[k + static_cast<std::size_t>(j) * km] = M[k + static_cast<std::size_t>(km + w.jp[j] - 1) * ld];
    for (int j = 0; j < g; ++j)
      for (int k = 0; k < km; ++k) M[k + static_cast<std::size_t>(km + j) * ld] = top[k + static_cast<std::size_t>(j) * km];
  }
  // The basic solution: R (rank x rank, upper) y = the first rank entries of Q^T rhs, the
  // dropped global columns at zero.
  const int rank = km + r2, d = n - rank, one_rhs = 1;
  const double one = 1.0;
  std::vector<double>& yp = w.y;  // in the pivoted order
  yp.assign(n, 0.0);
  for (int k = 0; k < rank; ++k) yp[k] = rhs[k];
  if (rank > 0) dtrsm_("L", "U", "N", "N", &rank, &one_rhs, &one, M.data(), &ld, yp.data(), &rank);
  if (d > 0) {
    // The null space: column t is e_{rank + t} less R^-1 (the upper rows of that column).
    std::vector<double>& Z = w.Z;
    Z.assign(static_cast<std::size_t>(n) * d, 0.0);
    for (int t = 0; t < d; ++t) {
      double* z = Z.data() + static_cast<std::size_t>(t) * n;
      const double* a = M.data() + static_cast<std::size_t>(rank + t) * ld;
      for (int k = 0; k < rank; ++k) z[k] = -a[k];
      z[rank + t] = 1.0;
    }
    if (rank > 0) dtrsm_("L", "U", "N", "N", &rank, &d, &one, M.data(), &ld, Z.data(), &n);
    // Least norm: yp less its projection on span(Z), through the QR of Z.
    w.tz.resize(d);
    qr_in_place(n, d, Z.data(), n, w.tz, w.work);
    apply_q("T", n, 1, d, Z.data(), n, w.tz.data(), yp.data(), n, w.work);
    for (int t = 0; t < d; ++t) yp[t] = 0.0;
    apply_q("N", n, 1, d, Z.data(), n, w.tz.data(), yp.data(), n, w.work);
  }
  y.assign(n, 0.0);
  for (int j = 0; j < km; ++j) y[j] = yp[j];
  for (int j = 0; j < g; ++j) y[km + w.jp[j] - 1] = yp[km + j];
  return rank;
}

}  // namespace

std::vector<int> param_range(int b, int e) {
  std::vector<int> cols(e - b);
  for (int q = b; q < e; ++q) cols[q - b] = q;
  return cols;
}

namespace {

// The dgelsd path of least_squares_values: the columns of sys.B divided by w.c, the right-hand
// side B theta - h; writes x and returns the rank.
int gelsd_values(const LsSystem& sys, const double* theta, double rcond, LsScratch& w, double* x) {
  const int m = sys.m, rows = sys.rows;
  const std::vector<double>& c = w.c;
  const int ldb = std::max(rows, m);
  std::vector<double>& A = w.A;
  std::vector<double>& rhs = w.rhs;
  A.resize(static_cast<std::size_t>(rows) * m);
  rhs.assign(ldb, 0.0);
  for (int q = 0; q < m; ++q) {
    const double* col = sys.B.data() + static_cast<std::size_t>(q) * sys.rows;
    double* out = A.data() + static_cast<std::size_t>(q) * rows;
    for (int k = 0; k < sys.rows; ++k) {
      rhs[k] += col[k] * theta[q];
      out[k] = col[k] / c[q];
    }
  }
  for (int k = 0; k < sys.rows; ++k) rhs[k] -= sys.h[k];
  std::vector<double>& sv = w.sv;
  sv.resize(std::max(1, std::min(rows, m)));
  int rank = 0, info = 0, lwork = -1, iquery = 0;
  const int nrhs = 1;
  double query = 0.0;
  dgelsd_(&rows, &m, &nrhs, A.data(), &rows, rhs.data(), &ldb, sv.data(), &rcond, &rank, &query,
          &lwork, &iquery, &info);
  if (info != 0) throw std::logic_error("dgelsd workspace query: info " + std::to_string(info));
  lwork = std::max(1, static_cast<int>(query));
  if (static_cast<int>(w.work.size()) < lwork) w.work.resize(lwork);
  if (static_cast<int>(w.iwork.size()) < std::max(1, iquery)) w.iwork.resize(std::max(1, iquery));
  dgelsd_(&rows, &m, &nrhs, A.data(), &rows, rhs.data(), &ldb, sv.data(), &rcond, &rank,
          w.work.data(), &lwork, w.iwork.data(), &info);
  if (info < 0) throw std::logic_error("dgelsd: argument " + std::to_string(-info) + " is invalid");
  if (info > 0) throw std::runtime_error("dgelsd: the SVD did not converge");
  for (int q = 0; q < m; ++q) x[q] = rhs[q] / c[q];
  return rank;
}

}  // namespace

int least_squares_values(const LsSystem& sys, const double* theta, int npoints, double* x,
                         LsScratch* scratch) {
  LsScratch own;
  LsScratch& w = scratch != nullptr ? *scratch : own;
  w.qr_main = -1;
  w.flip = false;
  const int m = sys.m;
  if (m == 0) return 0;
  const TallyTimer timer;
  const int rows = sys.rows;
  if (rows == 0) {
    std::fill(x, x + m, 0.0);
    return 0;
  }
  std::vector<double>& c = w.c;
  c.assign(m, 1.0);
  std::vector<unsigned char>& nonzero = w.nonzero;
  nonzero.assign(m, 0);
  w.first.resize(m);
  w.last.resize(m);
  for (int q = 0; q < m; ++q) {
    const double* col = sys.B.data() + static_cast<std::size_t>(q) * sys.rows;
    // The norm in two passes, scaled by the largest entry (no overflow or underflow, as
    // hypot's, at the cost of one vectorizable sum).
    double amax = 0.0;
    for (int k = 0; k < sys.rows; ++k) amax = std::fmax(amax, std::fabs(col[k]));
    double nrm = 0.0;
    if (amax > 0.0 && std::isfinite(amax)) {
      const double inv = 1.0 / amax;
      double ss = 0.0;
      for (int k = 0; k < sys.rows; ++k) {
        const double v = col[k] * inv;
        ss += v * v;
      }
      nrm = amax * std::sqrt(ss);
    }
    if (nrm > 0.0 && std::isfinite(nrm)) {
      c[q] = nrm;
      nonzero[q] = 1;
    }
    int lo = 0, hi = sys.rows - 1;
    while (lo < sys.rows && col[lo] == 0.0) ++lo;
    while (hi > lo && col[hi] == 0.0) --hi;
    w.first[q] = lo;
    w.last[q] = hi;
  }
  const double rcond = kLsRcondEps * std::max(npoints, m);
  int rank = -1;
  if (static_cast<int>(sys.global.size()) == m) {
    // The QR path: the main columns, then the global ones; zero columns get x_q = 0.
    w.order.clear();
    const bool marks = static_cast<int>(w.late.size()) == m;
    // The rows' direction with fewer nonzeros above the columns' last ones (staircase_qr).
    double down = 0.0, up = 0.0;
    for (int q = 0; q < m; ++q)
      if (nonzero[q] && !sys.global[q]) {
        down += w.last[q] + 1;
        up += rows - w.first[q];
      }
    w.flip = up < down;
    auto reach = [&](int q) { return w.flip ? rows - 1 - w.first[q] : w.last[q]; };
    auto by_reach = [&](int a, int b) { return reach(a) < reach(b); };
    for (int q = 0; q < m; ++q)
      if (nonzero[q] && !sys.global[q] && !(marks && w.late[q])) w.order.push_back(q);
    std::stable_sort(w.order.begin(), w.order.end(), by_reach);
    const std::size_t early = w.order.size();
    if (marks)
      for (int q = 0; q < m; ++q)
        if (nonzero[q] && !sys.global[q] && w.late[q]) w.order.push_back(q);
    std::stable_sort(w.order.begin() + static_cast<std::ptrdiff_t>(early), w.order.end(), by_reach);
    const int km = static_cast<int>(w.order.size());
    for (int q = 0; q < m; ++q)
      if (nonzero[q] && sys.global[q]) w.order.push_back(q);
    const int g = static_cast<int>(w.order.size()) - km;
    rank = qr_solve(sys, theta, rcond, km, g, w, w.rhs);
    if (rank >= 0) {
      ++w.qr_solves;
      w.qr_main = km;
      std::fill(x, x + m, 0.0);
      for (int j = 0; j < km + g; ++j) x[w.order[j]] = w.rhs[j] / c[w.order[j]];
    } else {
      ++w.fallbacks;
    }
  }
  const bool used_qr = rank >= 0;
  if (rank < 0) rank = gelsd_values(sys, theta, rcond, w, x);
  if (timer.on() && tally_phase() == TallyPhase::kTrial) {
    // The target (tally.h): Householder QR of [B | h], then a triangular solve.
    const double scaling = 3.0 * rows * m;
    // The QR path: the main columns' staircase QR as done (the target's too: it is a Householder
    // QR), the global columns' QR and the solve as if dense.
    const double qr_path = used_qr ? w.main_flops + flops_qr(rows - w.qr_main, m - w.qr_main + 1) +
                                         static_cast<double>(m) * m
                                   : 0.0;
    tally_add(Prim::kTrialLs, scaling + (used_qr ? qr_path : flops_gelsd(rows, m)),
              scaling + (used_qr ? qr_path : flops_qr(rows, m + 1) + static_cast<double>(m) * m), timer.seconds());
    tally_sizes([&](SolverTally& t) {
      ++t.trials;
      if (static_cast<int>(sys.global.size()) == m) ++(used_qr ? t.trial_qr : t.trial_fallbacks);
      t.sum_trial_rows += rows;
      t.sum_trial_m += m;
      t.sum_trial_elems += static_cast<double>(rows) * m;
      t.max_trial_rows = std::max(t.max_trial_rows, rows);
      t.max_trial_m = std::max(t.max_trial_m, m);
    });
  }
  return rank;
}

void compress_relu1d(const Shape& s, const double* theta, const std::vector<int>& columns,
                     const double* xs, const double* r, int n, LsSystem* out) {
  const TallyTimer timer;
  double flops = 0.0;
  const int ncoef = column_degree(s.arch) + 1;  // column polynomials have degree <= c
  const int m = static_cast<int>(columns.size());
  // Active point ranges; d0 (neuron s.n) is active everywhere.
  std::vector<int> lo(s.n + 1, 0), hi(s.n + 1, n), bounds = {0, n};
  for (int nu = 0; nu < s.n; ++nu) {
    const NeuronLines L = neuron_lines(s, theta, nu);
    active_range(xs, n, L.W[0], L.w[0], &lo[nu], &hi[nu]);
    bounds.push_back(lo[nu]);
    bounds.push_back(hi[nu]);
  }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  // Each column's polynomial in x on its neuron's active range.
  std::vector<double> poly(static_cast<std::size_t>(m) * kColCoef, 0.0);
  std::vector<int> owner(m);
  for (int j = 0; j < m; ++j) {
    int nu, lk;
    double* c = &poly[static_cast<std::size_t>(j) * kColCoef];
    if (param_owner(s, columns[j], &nu, &lk)) {
      column_poly(neuron_lines(s, theta, nu), lk, c);
    } else {
      nu = s.n;
      c[0] = 1.0;
    }
    owner[j] = nu;
  }
  const int runs = static_cast<int>(bounds.size()) - 1;
  // Each run of cnt points gives min(cnt, ncoef) rows; B is written column-major at once, every
  // entry (zero where the column's neuron is off on the run).
  int rows = 0;
  for (int j = 0; j < runs; ++j) rows += std::min(std::max(bounds[j + 1] - bounds[j], 0), ncoef);
  out->m = m;
  out->rows = rows;
  out->rest = 0.0;
  out->global.resize(m);
  for (int j = 0; j < m; ++j) out->global[j] = lo[owner[j]] == 0 && hi[owner[j]] == n ? 1 : 0;
  out->B.resize(static_cast<std::size_t>(rows) * m);
  out->h.resize(rows);
  // First each run's triangle (the R of its Vandermonde matrix with r appended) and frame; then
  // B column by column, each column's rows written in order. A column's entries on a run are R
  // times its polynomial in the run's coordinate t = (x - c0) / h, that is R S p, with p its
  // coefficients in x and S the change of basis, S[u][l] = C(l, u) c0^(l - u) h^u (u <= l):
  // G = R S is made once per run, and each column's entries are then G p.
  struct Run {
    int s0, s1, kr, row0;
    double G[kColCoef * kColCoef];  // rows kr, columns ncoef: G[rho + l * kColCoef]
  };
  thread_local std::vector<Run> run_of;  // kept by each thread from call to call
  thread_local std::vector<double> V, tau, work;
  run_of.clear();
  double binom[kColCoef][kColCoef] = {};  // binom[l][u] = C(l, u), by Pascal's rule (exact)
  for (int l = 0; l < kColCoef; ++l) {
    binom[l][0] = binom[l][l] = 1.0;
    for (int u = 1; u < l; ++u) binom[l][u] = binom[l - 1][u - 1] + binom[l - 1][u];
  }
  int lwork = -1;  // dgeqrf's workspace, asked once: the runs differ only in their rows
  int row0 = 0;
  for (int j = 0; j < runs; ++j) {
    const int s0 = bounds[j], s1 = bounds[j + 1];
    const int cnt = s1 - s0;
    if (cnt <= 0) continue;
    double c0, h;
    run_frame(xs, s0, s1, &c0, &h);
    const int cols = ncoef + 1;
    V.resize(static_cast<std::size_t>(cnt) * cols);
    for (int k = 0; k < cnt; ++k) {
      const double t = (xs[s0 + k] - c0) / h;
      double p = 1.0;
      for (int u = 0; u < ncoef; ++u, p *= t) V[k + static_cast<std::size_t>(u) * cnt] = p;
      V[k + static_cast<std::size_t>(ncoef) * cnt] = r[s0 + k];
    }
    if (lwork < 0) {
      qr_in_place(cnt, cols, V.data(), cnt, tau, work);
      lwork = static_cast<int>(work.size());
    } else {
      qr_in_place(cnt, cols, V.data(), cnt, tau, work, lwork);
    }
    const int kr = std::min(cnt, ncoef);
    if (timer.on()) flops += 3.0 * cnt * ncoef + flops_qr(cnt, cols);
    if (cnt > ncoef) {
      const double last = V[ncoef + static_cast<std::size_t>(ncoef) * cnt];
      out->rest += last * last;
    }
    Run run{s0, s1, kr, row0, {}};
    double cpow[kColCoef], hpow[kColCoef];
    cpow[0] = hpow[0] = 1.0;
    for (int k = 1; k < ncoef; ++k) {
      cpow[k] = cpow[k - 1] * c0;
      hpow[k] = hpow[k - 1] * h;
    }
    for (int l = 0; l < ncoef; ++l)
      for (int rho = 0; rho < kr; ++rho) {
        double v = 0.0;
        for (int u = rho; u <= l; ++u) v += V[rho + static_cast<std::size_t>(u) * cnt] * (binom[l][u] * cpow[l - u] * hpow[u]);
        run.G[rho + l * kColCoef] = v;
      }
    if (timer.on()) flops += 2.0 * kr * ncoef * ncoef;
    for (int rho = 0; rho < kr; ++rho) out->h[row0 + rho] = V[rho + static_cast<std::size_t>(ncoef) * cnt];
    run_of.push_back(run);
    row0 += kr;
  }
  for (int q = 0; q < m; ++q) {
    double* col = out->B.data() + static_cast<std::size_t>(q) * rows;
    const int nu = owner[q];
    const double* p = &poly[static_cast<std::size_t>(q) * kColCoef];
    for (const Run& run : run_of) {
      double* b = col + run.row0;
      if (run.s0 < lo[nu] || run.s1 > hi[nu]) {
        for (int rho = 0; rho < run.kr; ++rho) b[rho] = 0.0;
        continue;
      }
      if (timer.on()) flops += 2.0 * run.kr * ncoef;
      for (int rho = 0; rho < run.kr; ++rho) {
        double v = 0.0;
        for (int l = 0; l < ncoef; ++l) v += run.G[rho + l * kColCoef] * p[l];
        b[rho] = v;
      }
    }
  }
  if (timer.on() && tally_phase() != TallyPhase::kNone)
    tally_add(tally_phase() == TallyPhase::kTrial ? Prim::kTrialCompress : Prim::kCompress, flops, flops,
              timer.seconds());
}

void compress_rows(const Shape& s, const double* theta, const std::vector<int>& columns,
                   const double* x, const double* f, int n, LsSystem* out) {
  const int m = static_cast<int>(columns.size());
  const int cols = m + 1;  // the stage's columns, then the residual
  const int tile = std::max(256, cols);
  const int ld = cols + tile;
  std::vector<double> W(static_cast<std::size_t>(ld) * cols, 0.0), row(num_params(s));
  std::vector<double> tau, work;
  int have = 0;  // rows of R at the top of W
  for (int t0 = 0; t0 < n; t0 += tile) {
    const int nb = std::min(tile, n - t0);
    for (int k = 0; k < nb; ++k) {
      const double* xk = x + static_cast<std::size_t>(t0 + k) * s.d;
      const double y = jacobian_row(s, theta, xk, row.data());
      for (int q = 0; q < m; ++q) W[have + k + static_cast<std::size_t>(q) * ld] = row[columns[q]];
      W[have + k + static_cast<std::size_t>(m) * ld] = y - f[t0 + k];
    }
    const int rows = have + nb;
    qr_in_place(rows, cols, W.data(), ld, tau, work);
    have = std::min(rows, cols);
    for (int q = 0; q < cols; ++q)  // keep R: clear the reflectors below the diagonal
      for (int k = q + 1; k < rows; ++k) W[k + static_cast<std::size_t>(q) * ld] = 0.0;
  }
  const int rows = std::min(have, m);
  out->m = m;
  out->rows = rows;
  out->global.clear();
  out->rest = have > m ? W[m + static_cast<std::size_t>(m) * ld] * W[m + static_cast<std::size_t>(m) * ld] : 0.0;
  out->B.assign(static_cast<std::size_t>(rows) * m, 0.0);
  out->h.assign(rows, 0.0);
  for (int q = 0; q < m; ++q)
    for (int k = 0; k < rows; ++k)
      out->B[k + static_cast<std::size_t>(q) * rows] = W[k + static_cast<std::size_t>(q) * ld];
  for (int k = 0; k < rows; ++k) out->h[k] = W[k + static_cast<std::size_t>(m) * ld];
}

}  // namespace gs
