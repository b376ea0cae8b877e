// Host implementation of the variable-projection step (var_pro.h).
#include "gpusweep/solver/var_pro.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/solve.h"
#include "gpusweep/solver/tally.h"
#include "solver/lapack.h"
#include "solver/staircase_qr.h"

namespace gs {

std::vector<int> linear_columns(const Shape& s) {
  const int nf = num_factors(s.arch);
  std::vector<int> cols;
  const int b = nf == 1 ? d_offset(s) : factor_offset(s, nf - 1);
  const int e = nf == 1 ? num_params(s) : d_offset(s);
  for (int q = b; q < e; ++q) cols.push_back(q);
  if (nf > 1) cols.push_back(num_params(s) - 1);
  return cols;
}

int push_out_thin(const Shape& s, const Points1d& pts, double* theta) {
  if (!relu1d_fast_path(s)) return 0;
  int moved = 0;
  for (int i = 0; i < s.n; ++i) moved += push_out_thin_neuron(s, pts, theta, i) ? 1 : 0;
  return moved;
}

std::vector<int> VarProColumns::all() const {
  std::vector<int> v(lin);
  v.insert(v.end(), non.begin(), non.end());
  return v;
}

void var_pro_columns(const Shape& s, const double* theta, const Role* role, const double* scale,
                     const Points1d* pts, VarProColumns* out) {
  const int m = num_params(s);
  std::vector<unsigned char> cls(m);
  for (int q = 0; q < m; ++q) cls[q] = static_cast<unsigned char>(column_class(s, theta, role, scale, pts, q));
  columns_of_classes(cls.data(), m, out);
}

void columns_of_classes(const unsigned char* cls, int m, VarProColumns* out) {
  std::vector<int> global;
  out->lin.clear();
  out->non.clear();
  for (int q = 0; q < m; ++q) {
    const auto c = static_cast<ColumnClass>(cls[q]);
    if (c == ColumnClass::kNonlinear) out->non.push_back(q);
    else if (c == ColumnClass::kMain) out->lin.push_back(q);
    else if (c == ColumnClass::kGlobal) global.push_back(q);
  }
  out->global = static_cast<int>(global.size());
  out->lin.insert(out->lin.end(), global.begin(), global.end());
}

void residual_curvature_relu1d(const Shape& s, const double* theta, const VarProColumns& cols,
                               const double* xs, const double* r, int n, std::vector<double>* S) {
  const TallyTimer timer;
  const int kc = static_cast<int>(cols.lin.size()), kb = static_cast<int>(cols.non.size());
  const int ld = kc + kb;
  S->assign(static_cast<std::size_t>(ld) * kb, 0.0);
  if (kb == 0) return;
  const int nr = column_degree(s.arch) + 1;
  // Operations (tally.h): the prefix sums (x^j r and a compensated sum, about j + 14 a point),
  // then per neuron its moments and one polynomial product and dot per entry.
  double flops = 0.0;
  if (timer.on())
    for (int j = 0; j < nr; ++j) flops += static_cast<double>(n) * (j + 14);
  thread_local std::vector<double> pre;  // kept by each thread from call to call
  pre.resize(static_cast<std::size_t>(nr) * (n + 1) * 2);
  build_prefix(xs, r, n, nr, pre.data());
  // The columns of each neuron: (position in cols.all(), local index).
  const int k_loc = neuron_num_params(s);
  std::vector<int> count(s.n, 0), pos(static_cast<std::size_t>(s.n) * k_loc), loc(pos.size());
  const std::vector<int> all = cols.all();
  for (int j = 0; j < ld; ++j) {
    int i, k;
    if (!param_owner(s, all[j], &i, &k)) continue;  // d0: y is linear in it
    pos[static_cast<std::size_t>(i) * k_loc + count[i]] = j;
    loc[static_cast<std::size_t>(i) * k_loc + count[i]++] = k;
  }
  const double w = 2.0 / n;
  for (int i = 0; i < s.n; ++i) {
    if (count[i] == 0) continue;
    const NeuronLines L = neuron_lines(s, theta, i);
    int lo, hi;
    active_range(xs, n, L.W[0], L.w[0], &lo, &hi);
    if (lo >= hi) continue;
    double R[kColCoef] = {};
    for (int j = 0; j < nr; ++j) R[j] = prefix_moment(pre.data(), n, j, lo, hi);
    if (timer.on()) flops += 8.0 * nr;
    for (int t = 0; t < count[i]; ++t) {
      const int q = pos[static_cast<std::size_t>(i) * k_loc + t] - kc;  // a nonlinear column
      if (q < 0) continue;
      if (timer.on()) flops += static_cast<double>(count[i]) * (2 * nr + 2 * num_factors(s.arch) * nr);
      for (int u = 0; u < count[i]; ++u)
        (*S)[pos[static_cast<std::size_t>(i) * k_loc + u] + static_cast<std::size_t>(q) * ld] = curvature_entry(
            L, loc[static_cast<std::size_t>(i) * k_loc + u], loc[static_cast<std::size_t>(i) * k_loc + t], R, w);
    }
  }
  if (timer.on()) tally_add(Prim::kCurvature, flops, flops, timer.seconds());
}

namespace {

void check_info(const char* what, int info) {
  if (info < 0) throw std::logic_error(std::string(what) + ": argument " + std::to_string(-info) + " is invalid");
}

// Householder QR of the rows x cols block at a (leading dimension lda), in place.
void householder(int rows, int cols, double* a, int lda, double* tau, std::vector<double>& work) {
  if (rows <= 0 || cols <= 0) return;
  int lwork = -1, info = 0;
  double q = 0.0;
  dgeqrf_(&rows, &cols, a, &lda, tau, &q, &lwork, &info);
  check_info("dgeqrf", info);
  lwork = std::max(1, static_cast<int>(q));
  if (static_cast<int>(work.size()) < lwork) work.resize(lwork);
  dgeqrf_(&rows, &cols, a, &lda, tau, work.data(), &lwork, &info);
  check_info("dgeqrf", info);
}

// Column-pivoted QR (jpvt: 1-based permutation out).
void pivoted_qr(int rows, int cols, double* a, int lda, int* jpvt, double* tau, std::vector<double>& work) {
  if (rows <= 0 || cols <= 0) return;
  std::fill(jpvt, jpvt + cols, 0);
  int lwork = -1, info = 0;
  double q = 0.0;
  dgeqp3_(&rows, &cols, a, &lda, jpvt, tau, &q, &lwork, &info);
  check_info("dgeqp3", info);
  lwork = std::max(1, static_cast<int>(q));
  if (static_cast<int>(work.size()) < lwork) work.resize(lwork);
  dgeqp3_(&rows, &cols, a, &lda, jpvt, tau, work.data(), &lwork, &info);
  check_info("dgeqp3", info);
}

// c := Q^T c for the first k reflectors of a QR (a, tau), c: rows x cols.
void apply_qt(int rows, int cols, int k, const double* a, int lda, const double* tau, double* c, int ldc,
              std::vector<double>& work) {
  if (rows <= 0 || cols <= 0 || k <= 0) return;
  int lwork = -1, info = 0;
  double q = 0.0;
  dormqr_("L", "T", &rows, &cols, &k, a, &lda, tau, c, &ldc, &q, &lwork, &info);
  check_info("dormqr", info);
  lwork = std::max(1, static_cast<int>(q));
  if (static_cast<int>(work.size()) < lwork) work.resize(lwork);
  dormqr_("L", "T", &rows, &cols, &k, a, &lda, tau, c, &ldc, work.data(), &lwork, &info);
  check_info("dormqr", info);
}

}  // namespace

void reduced_system(const LsSystem& js, const VarProColumns& cols, const double* scale, double weight,
                    int npoints, const std::vector<double>& S, ReducedSystem* out, const MainQr* main) {
  const int kc = static_cast<int>(cols.lin.size()), kb = static_cast<int>(cols.non.size());
  const int kmain = kc - cols.global;
  const int rows = js.rows, nc = kc + kb + 1, ld = kc + kb;
  out->index = cols.non;
  out->A.assign(static_cast<std::size_t>(kb) * kb, 0.0);
  out->gr.assign(kb, 0.0);
  out->rank = 0;
  out->pivoted = false;
  out->reused = false;
  out->mode = ReducedSystem::kUnknown;
  if (kb == 0) return;
  if (js.m != ld) throw std::logic_error("reduced_system: the compressed system has the wrong columns");
  const TallyTimer qr_timer;
  double qr_flops = 2.0 * rows * nc;  // the scaled copy M
  const std::vector<int> all = cols.all();
  // M = sqrt(weight) [B diag(scale) | h]: the scaled Jacobian, of unit column norms for the
  // linear columns (their exact Hessian is weight J^T J).
  const double f = std::sqrt(weight);
  const int ldm = std::max(rows, 1);
  // Scratch kept by each thread from call to call: its pages are touched once, not per step.
  thread_local std::vector<double> M, tau, T, tb, Rbb, hb, W, Rcb, Rcc, hc, U;
  std::vector<int> perm(kc);  // the linear columns in the order of R_cc
  for (int j = 0; j < kc; ++j) perm[j] = j;
  // The trial's QR of the main columns stands in for this one's where these are its first ones
  // (in any order: perm follows the trial's).
  bool reuse = main != nullptr && kmain > 0 && kmain <= rows && main->rows == rows &&
               static_cast<int>(main->cols.size()) >= kmain && static_cast<int>(main->tau.size()) >= kmain &&
               main->norm.size() >= main->cols.size() && main->a.size() >= static_cast<std::size_t>(rows) * kmain;
  if (reuse) {
    thread_local std::vector<int> where;  // parameter -> its place among the main columns, or -1
    int top = 0;
    for (int j = 0; j < kmain; ++j) top = std::max({top, cols.lin[j] + 1, main->cols[j] + 1});
    where.assign(top, -1);
    for (int j = 0; j < kmain; ++j) where[cols.lin[j]] = j;
    for (int j = 0; j < kmain && reuse; ++j) {
      const int at = where[main->cols[j]];
      reuse = at >= 0;
      if (reuse) {
        perm[j] = at;
        where[main->cols[j]] = -1;  // each once
      }
    }
    if (!reuse)
      for (int j = 0; j < kmain; ++j) perm[j] = j;
  }
  // The rows as the trial took them (MainQr::flip) where its QR is reused; any order is the
  // same least-squares problem.
  const bool flip = reuse && main->flip;
  const int r0 = flip ? rows - 1 : 0, dr = flip ? -1 : 1;
  M.resize(static_cast<std::size_t>(ldm) * nc);
  for (int j = reuse ? kmain : 0; j < ld; ++j) {
    const double* from = js.B.data() + static_cast<std::size_t>(j) * rows;
    double* to = M.data() + static_cast<std::size_t>(j) * ldm;
    const double v = f * scale[all[j]];
    for (int k = 0, t = r0; k < rows; ++k, t += dr) to[t] = from[k] * v;
  }
  for (int k = 0, t = r0; k < rows; ++k, t += dr) M[t + static_cast<std::size_t>(ld) * ldm] = js.h[k] * f;
  std::vector<double>& work = out->work;
  tau.resize(std::max(1, kc));
  const double tol = kVarProRank * std::max(npoints, kc);
  int rank = 0;
  double rmax = 0.0;
  bool deficient = kmain > rows;
  if (reuse) {
    // The trial's columns were B_q / norm_q, these are B_q f scale_q: the same reflectors, and
    // R's column j times d_j = f scale_q norm_q.
    for (int j = 0; j < kmain; ++j) {
      const double d = f * scale[all[perm[j]]] * main->norm[j];
      const double* from = main->a.data() + static_cast<std::size_t>(j) * rows;
      double* to = M.data() + static_cast<std::size_t>(j) * ldm;
      for (int k = 0; k <= j; ++k) to[k] = from[k] * d;
      std::copy(from + j + 1, from + rows, to + j + 1);
      tau[j] = main->tau[j];
    }
  } else if (!deficient && kmain > 0) {
    householder(rows, kmain, M.data(), ldm, tau.data(), work);
    qr_flops += flops_qr(rows, kmain);
  }
  if (!deficient && kmain > 0) {
    for (int j = 0; j < kmain; ++j) rmax = std::fmax(rmax, std::fabs(M[j + static_cast<std::size_t>(j) * ldm]));
    for (int j = 0; j < kmain && !deficient; ++j)
      deficient = !(std::fabs(M[j + static_cast<std::size_t>(j) * ldm]) > tol * rmax);
  }
  out->reused = reuse && !deficient;
  if (deficient) {
    // The rare path: the main columns are (numerically) dependent. Start again from M with a
    // column-pivoted QR of all the linear columns.
    out->pivoted = true;
    for (int j = 0; j < ld; ++j)
      for (int k = 0; k < rows; ++k)
        M[k + static_cast<std::size_t>(j) * ldm] = js.B[k + static_cast<std::size_t>(j) * rows] * f * scale[all[j]];
    for (int k = 0; k < rows; ++k) M[k + static_cast<std::size_t>(ld) * ldm] = js.h[k] * f;
    std::vector<int> jp(kc);
    pivoted_qr(rows, kc, M.data(), ldm, jp.data(), tau.data(), work);
    const int kq = std::min(rows, kc);
    qr_flops += 2.0 * rows * nc + flops_qr(rows, kc) + flops_apply_q(rows, kb + 1, kq);
    rmax = kq > 0 ? std::fabs(M[0]) : 0.0;
    while (rank < kq && std::fabs(M[rank + static_cast<std::size_t>(rank) * ldm]) > tol * rmax) ++rank;
    for (int j = 0; j < kc; ++j) perm[j] = jp[j] - 1;
    apply_qt(rows, kb + 1, kq, M.data(), ldm, tau.data(), M.data() + static_cast<std::size_t>(kc) * ldm, ldm, work);
  } else {
    rank = kmain;
    if (kmain > 0)
      qr_flops += staircase_apply_qt(rows, nc - kmain, kmain, M.data(), ldm, tau.data(),
                                     M.data() + static_cast<std::size_t>(kmain) * ldm, ldm, work);
    const int g = cols.global, below = rows - kmain;
    if (g > 0 && below > 0) {
      // The global columns, below the main block's rows: a small pivoted QR, then its
      // reflectors on the nonlinear columns and the residual.
      double* Mg = M.data() + kmain + static_cast<std::size_t>(kmain) * ldm;
      std::vector<int> jp(g);
      std::vector<double> tg(std::max(1, g));
      pivoted_qr(below, g, Mg, ldm, jp.data(), tg.data(), work);
      const int kq = std::min(below, g);
      qr_flops += flops_qr(below, g) + flops_apply_q(below, kb + 1, kq);
      if (rmax == 0.0) rmax = kq > 0 ? std::fabs(Mg[0]) : 0.0;
      int r2 = 0;
      while (r2 < kq && std::fabs(Mg[r2 + static_cast<std::size_t>(r2) * ldm]) > tol * rmax) ++r2;
      apply_qt(below, kb + 1, kq, Mg, ldm, tg.data(), M.data() + kmain + static_cast<std::size_t>(kc) * ldm, ldm, work);
      // The main rows of the global columns follow the pivoting.
      std::vector<double> top(static_cast<std::size_t>(kmain) * g);
      for (int j = 0; j < g; ++j)
        for (int k = 0; k < kmain; ++k)
          top[k + static_cast<std::size_t>(j) * kmain] = M[k + static_cast<std::size_t>(kmain + jp[j] - 1) * ldm];
      for (int j = 0; j < g; ++j) {
        for (int k = 0; k < kmain; ++k)
          M[k + static_cast<std::size_t>(kmain + j) * ldm] = top[k + static_cast<std::size_t>(j) * kmain];
        perm[kmain + j] = kmain + jp[j] - 1;
      }
      rank += r2;
    }
  }
  out->rank = rank;
  // R_cc (rank x rank, upper), R_cb and h_c (the first rank rows of the nonlinear columns and
  // the residual), R_bb and h_b (the QR of the rows below).
  const int below = rows - rank;
  const int kr = std::max(0, std::min(below, kb));
  if (below > 0) {
    T.resize(static_cast<std::size_t>(below) * (kb + 1));
    for (int j = 0; j <= kb; ++j)
      for (int k = 0; k < below; ++k)
        T[k + static_cast<std::size_t>(j) * below] = M[rank + k + static_cast<std::size_t>(kc + j) * ldm];
    tb.resize(std::max(1, std::min(below, kb + 1)));
    householder(below, kb + 1, T.data(), below, tb.data(), work);
    qr_flops += flops_qr(below, kb + 1);
  }
  if (qr_timer.on()) {
    tally_add(Prim::kQr, qr_flops, qr_flops, qr_timer.seconds());
    tally_sizes([&](SolverTally& t) {
      ++t.systems;
      t.pivoted += out->pivoted ? 1 : 0;
      t.reused_qr += out->reused ? 1 : 0;
      t.sum_rows += rows;
      t.sum_kc += kc;
      t.sum_kb += kb;
      t.sum_rank += rank;
      t.sum_elems += static_cast<double>(rows) * nc;
      t.max_rows = std::max(t.max_rows, rows);
      t.max_kc = std::max(t.max_kc, kc);
      t.max_kb = std::max(t.max_kb, kb);
    });
  }
  const TallyTimer red_timer;
  double red_flops = 0.0;
  Rbb.assign(static_cast<std::size_t>(std::max(kr, 1)) * kb, 0.0);
  hb.assign(std::max(kr, 1), 0.0);
  for (int j = 0; j < kb; ++j)
    for (int k = 0; k <= j && k < kr; ++k) Rbb[k + static_cast<std::size_t>(j) * kr] = T[k + static_cast<std::size_t>(j) * below];
  for (int k = 0; k < kr; ++k) hb[k] = T[k + static_cast<std::size_t>(kb) * below];
  const double one = 1.0, zero = 0.0, minus = -1.0;
  const int inc = 1;
  if (kr > 0) {
    dsyrk_("L", "T", &kb, &kr, &one, Rbb.data(), &kr, &zero, out->A.data(), &kb);
    dgemv_("T", &kr, &kb, &one, Rbb.data(), &kr, hb.data(), &inc, &zero, out->gr.data(), &inc);
    red_flops += static_cast<double>(kb) * kb * kr + 2.0 * kr * kb;
  }
  red_flops += 2.0 * kb * kb;  // S_bb
  // S_bb, then the terms of W = R_cc^-T S_cb (S's rows in the order of R_cc).
  for (int c = 0; c < kb; ++c)
    for (int r = c; r < kb; ++r)
      out->A[r + static_cast<std::size_t>(c) * kb] +=
          scale[cols.non[r]] * S[kc + r + static_cast<std::size_t>(c) * ld] * scale[cols.non[c]];
  if (rank > 0) {
    W.resize(static_cast<std::size_t>(rank) * kb);
    Rcb.resize(static_cast<std::size_t>(rank) * kb);
    Rcc.assign(static_cast<std::size_t>(rank) * rank, 0.0);
    hc.resize(rank);
    bool any = false;
    for (int c = 0; c < kb; ++c)
      for (int k = 0; k < rank; ++k) {
        const int j = perm[k];
        const double v = scale[all[j]] * S[j + static_cast<std::size_t>(c) * ld] * scale[cols.non[c]];
        W[k + static_cast<std::size_t>(c) * rank] = v;
        any = any || v != 0.0;
        Rcb[k + static_cast<std::size_t>(c) * rank] = M[k + static_cast<std::size_t>(kc + c) * ldm];
      }
    for (int k = 0; k < rank; ++k) hc[k] = M[k + static_cast<std::size_t>(ld) * ldm];
    if (any) {
      for (int c = 0; c < rank; ++c)
        for (int r = 0; r <= c; ++r) Rcc[r + static_cast<std::size_t>(c) * rank] = M[r + static_cast<std::size_t>(c) * ldm];
      dtrsm_("L", "U", "T", "N", &rank, &kb, &one, Rcc.data(), &rank, W.data(), &rank);
      // A -= R_cb^T W + W^T R_cb + W^T W (lower triangle), gr -= W^T h_c.
      U.resize(static_cast<std::size_t>(kb) * kb);
      dgemm_("T", "N", &kb, &kb, &rank, &one, Rcb.data(), &rank, W.data(), &rank, &zero, U.data(), &kb);
      for (int c = 0; c < kb; ++c)
        for (int r = c; r < kb; ++r)
          out->A[r + static_cast<std::size_t>(c) * kb] -= U[r + static_cast<std::size_t>(c) * kb] + U[c + static_cast<std::size_t>(r) * kb];
      dsyrk_("L", "T", &kb, &rank, &minus, W.data(), &rank, &one, out->A.data(), &kb);
      dgemv_("T", &rank, &kb, &minus, W.data(), &rank, hc.data(), &inc, &one, out->gr.data(), &inc);
      // trsm, gemm, the sum of both triangles, syrk, gemv
      red_flops += static_cast<double>(rank) * rank * kb + 2.0 * kb * kb * rank + 2.0 * kb * kb +
                   static_cast<double>(kb) * kb * rank + 2.0 * rank * kb;
    }
  }
  for (int c = 0; c < kb; ++c)
    for (int r = c + 1; r < kb; ++r) out->A[c + static_cast<std::size_t>(r) * kb] = out->A[r + static_cast<std::size_t>(c) * kb];
  if (red_timer.on()) tally_add(Prim::kReduced, red_flops, red_flops, red_timer.seconds());
}

namespace {

// The reduced matrix scaled to its own unit diagonal, T A T with T = diag(1/sqrt|A_kk|): a
// direction of negative curvature keeps its sign. A row whose |A_kk| is at most kSingularRel
// of the largest gets T = 0 (it does not move) and a unit diagonal.
void unit_diagonal(const ReducedSystem& sys, std::vector<double>* t, std::vector<double>* C) {
  const int kb = static_cast<int>(sys.index.size());
  double dmax = 0.0;
  for (int k = 0; k < kb; ++k) dmax = std::fmax(dmax, std::fabs(sys.A[k + static_cast<std::size_t>(k) * kb]));
  t->resize(kb);
  for (int k = 0; k < kb; ++k) {
    const double d = std::fabs(sys.A[k + static_cast<std::size_t>(k) * kb]);
    (*t)[k] = d > kSingularRel * dmax && d > 0.0 ? 1.0 / std::sqrt(d) : 0.0;
  }
  C->resize(static_cast<std::size_t>(kb) * kb);
  for (int c = 0; c < kb; ++c)
    for (int r = 0; r < kb; ++r) {
      double a = (*t)[r] * sys.A[r + static_cast<std::size_t>(c) * kb] * (*t)[c];
      if (r == c && (*t)[c] == 0.0) a = 1.0;
      (*C)[r + static_cast<std::size_t>(c) * kb] = a;
    }
}

// v := Q v (trans "N") or Q^T v ("T"), Q the orthogonal factor of the reduction of T A T to
// tridiagonal form kept in sys (dsytrd, lower).
void apply_tridiagonal_q(const char* trans, int kb, const ReducedSystem& sys, double* v) {
  if (kb <= 1) return;
  thread_local std::vector<double> wk;
  const int one = 1;
  int lwork = -1, info = 0;
  double wq = 0.0;
  dormtr_("L", "L", trans, &kb, &one, sys.V.data(), &kb, sys.tq.data(), v, &kb, &wq, &lwork, &info);
  if (info < 0) throw std::logic_error("dormtr: illegal argument " + std::to_string(-info));
  lwork = std::max(1, static_cast<int>(wq));
  if (static_cast<int>(wk.size()) < lwork) wk.resize(lwork);
  dormtr_("L", "L", trans, &kb, &one, sys.V.data(), &kb, sys.tq.data(), v, &kb, wk.data(), &lwork, &info);
  if (info < 0) throw std::logic_error("dormtr: illegal argument " + std::to_string(-info));
}

}  // namespace

int reduced_solve(int m, const double* scale, ReducedSystem& sys, double lambda, std::vector<double>& work,
                  double* step, StepModel* model) {
  const int kb = static_cast<int>(sys.index.size());
  std::fill(step, step + m, 0.0);
  *model = StepModel{};
  if (kb == 0) return 0;
  std::vector<double>& t = sys.t;
  const double n3 = flops_potrf(kb), n2 = static_cast<double>(kb) * kb;
  // The target formulation (tally.h): a Cholesky of the damped matrix and its solve at every try.
  const double target_try = n3 + 2.0 * n2;
  if (sys.mode == ReducedSystem::kUnknown) {
    const TallyTimer timer;
    // Once per system: is T A T positive definite? Then the damped step is a Cholesky solve
    // for every lambda; otherwise the eigenvectors are kept for every lambda.
    unit_diagonal(sys, &t, &work);
    // Scratch kept by each thread from call to call, as reduced_system's.
    thread_local std::vector<double> C, wk;
    thread_local std::vector<int> iwk;
    C = work;
    for (int k = 0; k < kb; ++k) C[k + static_cast<std::size_t>(k) * kb] += kSingularRel;
    int info = 0;
    dpotrf_("L", &kb, C.data(), &kb, &info);
    if (info < 0) throw std::logic_error("dpotrf: illegal argument " + std::to_string(-info));
    if (timer.on()) tally_add(Prim::kCholesky, 3.0 * n2 + n3, 0.0, timer.seconds());
    if (info == 0) {
      sys.mode = ReducedSystem::kCholesky;
    } else {
      const TallyTimer eig_timer;
      // dsyevd's steps but its last: T A T = Q T_d Q^T (dsytrd), T_d = U diag(ev) U^T
      // (dstedc, divide and conquer); Q U is never formed (ReducedSystem).
      sys.mode = ReducedSystem::kEigen;
      sys.V.swap(work);
      sys.ev.resize(kb);
      sys.e.resize(std::max(1, kb - 1));
      sys.tq.resize(std::max(1, kb - 1));
      sys.U.resize(static_cast<std::size_t>(kb) * kb);
      int lwork = -1, liwork = -1, iq = 0;
      double wq = 0.0;
      dsytrd_("L", &kb, sys.V.data(), &kb, sys.ev.data(), sys.e.data(), sys.tq.data(), &wq, &lwork, &info);
      if (info < 0) throw std::logic_error("dsytrd: illegal argument " + std::to_string(-info));
      lwork = std::max(1, static_cast<int>(wq));
      if (static_cast<int>(wk.size()) < lwork) wk.resize(lwork);
      dsytrd_("L", &kb, sys.V.data(), &kb, sys.ev.data(), sys.e.data(), sys.tq.data(), wk.data(), &lwork, &info);
      if (info < 0) throw std::logic_error("dsytrd: illegal argument " + std::to_string(-info));
      lwork = -1;
      dstedc_("I", &kb, sys.ev.data(), sys.e.data(), sys.U.data(), &kb, &wq, &lwork, &iq, &liwork, &info);
      if (info < 0) throw std::logic_error("dstedc: illegal argument " + std::to_string(-info));
      lwork = std::max(1, static_cast<int>(wq));
      liwork = std::max(1, iq);
      if (static_cast<int>(wk.size()) < lwork) wk.resize(lwork);
      if (static_cast<int>(iwk.size()) < liwork) iwk.resize(liwork);
      dstedc_("I", &kb, sys.ev.data(), sys.e.data(), sys.U.data(), &kb, wk.data(), &lwork, iwk.data(), &liwork,
              &info);
      if (info < 0) throw std::logic_error("dstedc: illegal argument " + std::to_string(-info));
      if (eig_timer.on()) tally_add(Prim::kEigen, flops_tridiagonal_eigen(kb), 0.0, eig_timer.seconds());
      if (info > 0) {
        // No eigendecomposition: refused like a failed Cholesky, and the system is tested
        // afresh at the next try (V holds no decomposition).
        sys.mode = ReducedSystem::kUnknown;
        return info;
      }
    }
    tally_sizes([&](SolverTally& ts) {
      ++ts.first_solves;
      ts.indefinite += sys.mode == ReducedSystem::kEigen ? 1 : 0;
    });
  }
  tally_sizes([&](SolverTally& ts) { ++ts.tries; });
  const TallyTimer try_timer;
  std::vector<double> rhs(kb), z(kb);
  for (int k = 0; k < kb; ++k) rhs[k] = -t[k] * sys.gr[k];
  double p = 0.0, curvature = 0.0;
  if (sys.mode == ReducedSystem::kCholesky) {
    unit_diagonal(sys, &t, &work);
    for (int k = 0; k < kb; ++k) work[k + static_cast<std::size_t>(k) * kb] += lambda;
    int info = 0;
    dpotrf_("L", &kb, work.data(), &kb, &info);
    if (info < 0) throw std::logic_error("dpotrf: illegal argument " + std::to_string(-info));
    if (info > 0) {
      if (try_timer.on()) tally_add(Prim::kCholesky, 3.0 * n2 + n3, target_try, try_timer.seconds());
      return info;
    }
    z = rhs;
    const int one = 1;
    dpotrs_("L", &kb, &one, work.data(), &kb, z.data(), &kb, &info);
    if (info < 0) throw std::logic_error("dpotrs: illegal argument " + std::to_string(-info));
    // The decrease of the model g.s + s A s / 2 at the step: (rhs . z + lambda |z|^2) / 2; and
    // z (T A T) z = rhs . z - lambda |z|^2.
    for (int k = 0; k < kb; ++k) {
      p += rhs[k] * z[k] + lambda * z[k] * z[k];
      curvature += rhs[k] * z[k] - lambda * z[k] * z[k];
    }
    p *= 0.5;
    if (try_timer.on()) tally_add(Prim::kCholesky, 3.0 * n2 + n3 + 2.0 * n2, target_try, try_timer.seconds());
  } else {
    // z = V (|Lambda| + lambda)^-1 V^T rhs: each direction of negative curvature is taken
    // with its curvature's absolute value (Dauphin et al. 2014, "saddle-free Newton"), so it
    // is descended, not climbed, and damps no other direction.
    // V^T rhs = U^T (Q^T rhs), and z = Q (U y).
    std::vector<double> y(kb), qr(rhs);
    const double one = 1.0, zero = 0.0;
    const int inc = 1;
    apply_tridiagonal_q("T", kb, sys, qr.data());
    dgemv_("T", &kb, &kb, &one, sys.U.data(), &kb, qr.data(), &inc, &zero, y.data(), &inc);
    for (int k = 0; k < kb; ++k) {
      y[k] /= std::fabs(sys.ev[k]) + lambda;
      // The model's decrease along eigenvector k: -(g_k y_k + ev_k y_k^2 / 2), g_k = -(V^T rhs)_k.
      const double gk = -(std::fabs(sys.ev[k]) + lambda) * y[k];
      p -= gk * y[k] + 0.5 * sys.ev[k] * y[k] * y[k];
      curvature += sys.ev[k] * y[k] * y[k];
    }
    dgemv_("N", &kb, &kb, &one, sys.U.data(), &kb, y.data(), &inc, &zero, z.data(), &inc);
    apply_tridiagonal_q("N", kb, sys, z.data());
    if (try_timer.on()) tally_add(Prim::kEigen, 8.0 * n2, target_try, try_timer.seconds());
  }
  double slope = 0.0;
  for (int k = 0; k < kb; ++k) {
    step[sys.index[k]] = scale[sys.index[k]] * t[k] * z[k];
    slope -= rhs[k] * z[k];
  }
  model->pred = p;
  model->slope = slope;
  model->curvature = curvature;
  return 0;
}

}  // namespace gs
