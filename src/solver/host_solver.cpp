// The solver's host half (host_solver.h): least squares of linear stages and the
// variable-projection step, per network, for both backends.
#include "gpusweep/solver/host_solver.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/least_squares.h"
#include "gpusweep/solver/solve.h"
#include "gpusweep/solver/tally.h"
#include "model/by_shape.h"
#include "solver/lapack.h"

namespace gs {
namespace {

// Sum of squared residuals over the points x (row-major) with targets f; kNf and kD as in
// by_shape.
template <int kNf, int kD>
double sum_squares(const Shape& shape, const double* theta, const std::vector<double>& x,
                   const std::vector<double>& f) {
  const Shape s = fixed_shape<kNf, kD>(shape);
  double sse = 0.0;
  for (std::size_t q = 0; q < f.size(); ++q) {
    const double r = evaluate(s, theta, x.data() + q * s.d) - f[q];
    sse += r * r;
  }
  return sse;
}

// Residuals y(x_k) - f_k at n points x (row-major) into r; kNf and kD as in by_shape.
template <int kNf, int kD>
double residuals_of(const Shape& shape, const double* theta, const double* x, const double* f, int n, double* r) {
  const Shape s = fixed_shape<kNf, kD>(shape);
  for (int q = 0; q < n; ++q) r[q] = evaluate(s, theta, x + static_cast<std::size_t>(q) * s.d) - f[q];
  return 0.0;
}

// Relu on 1D inputs: the residuals at the sorted points xs (n of them, targets f) into r,
// neuron by neuron over its active range (active_range: the gate as eval_neuron computes it, so
// the same points). Off that range evaluate adds q * 0 * m, a zero, and its sum is unchanged;
// on it, each point adds the neurons in evaluate's order with evaluate's arithmetic, so r is
// residuals_of's to the bit. That holds while q and m are finite on the data (else 0 * inf
// makes evaluate's sum NaN): a neuron whose bound on |q|, |a_0| and |m| (the product of one
// plus each) is not below 1e300 (a non-finite parameter, or one that could overflow) makes
// this return 0, and its caller takes residuals_of. kNf as in by_shape.
template <int kNf, int kD>
double relu1d_residuals_of(const Shape& shape, const double* theta, const double* xs, const double* f, int n,
                           double* r) {
  const Shape s = fixed_shape<kNf, kD>(shape);
  const int nf = num_factors(s.arch);
  const int M = num_poly_terms(s);
  const double xmax = n > 0 ? std::fmax(std::fabs(xs[0]), std::fabs(xs[n - 1])) : 0.0;
  for (int i = 0; i < s.n; ++i) {
    const double* D = theta + d_offset(s) + i * M;
    // Each bound plus 1, so that a zero in one does not hide the overflow of another.
    double bound = 1.0, xp = 1.0;
    for (int t = 0; t < M; ++t, xp *= xmax) bound += std::fabs(D[t]) * xp;
    for (int b = 0; b < nf; ++b)
      bound *= 1.0 + std::fabs(theta[factor_offset(s, b) + i]) * xmax + std::fabs(theta[factor_offset(s, b) + s.n + i]);
    if (!(bound < 1e300)) return 0.0;
  }
  const double d0 = theta[num_params(s) - 1];
  for (int k = 0; k < n; ++k) r[k] = d0;
  for (int i = 0; i < s.n; ++i) {
    double W[kMaxFactors], w[kMaxFactors];
    for (int b = 0; b < nf; ++b) {
      W[b] = theta[factor_offset(s, b) + i];
      w[b] = theta[factor_offset(s, b) + s.n + i];
    }
    const double* D = theta + d_offset(s) + i * M;
    int lo, hi;
    active_range(xs, n, W[0], w[0], &lo, &hi);
    for (int k = lo; k < hi; ++k) {
      const double x = xs[k];
      double a0 = w[0];
      a0 += W[0] * x;
      double m = 1.0;
      for (int b = 1; b < nf; ++b) {
        double a = w[b];
        a += W[b] * x;
        m *= a;
      }
      double q;
      if (M == 1) {
        q = D[0];
      } else {
        q = D[M - 1];
        for (int t = M - 2; t >= 0; --t) q = q * x + D[t];
      }
      r[k] += q * a0 * m;
    }
  }
  for (int k = 0; k < n; ++k) r[k] -= f[k];
  return 1.0;
}

}  // namespace

double residual_flops(const Shape& s, int npoints) {
  // Per point and neuron: d + 1 operations for each factor's line, one product per factor
  // and the sum (the relu a comparison); then d0 and the target.
  const int nf = num_factors(s.arch);
  return static_cast<double>(npoints) * (static_cast<double>(s.n) * (nf * (2 * s.d + 1) + 1) + 2);
}

double train_sse(const Shape& s, const double* theta, const Dataset& ds) {
  return by_shape(s, [&](auto nf, auto d) {
    return sum_squares<decltype(nf)::value, decltype(d)::value>(s, theta, ds.x_train, ds.y_train);
  });
}

double rounding_floor(const Shape& s, const double* theta, const Dataset& ds) {
  const int npts = ds.n_train();
  if (npts == 0) return 0.0;
  const double d0 = std::fabs(theta[num_params(s) - 1]);
  double fmax = 0.0;
  for (int q = 0; q < npts; ++q) fmax = std::fmax(fmax, std::fabs(ds.y_train[q]));
  const double cap = kFloorTermCap * fmax;
  double sum = 0.0;
  for (int q = 0; q < npts; ++q) {
    const double* x = ds.x_train.data() + static_cast<std::size_t>(q) * s.d;
    double mag = d0 + std::fabs(ds.y_train[q]);
    for (int i = 0; i < s.n; ++i) {
      const NeuronEval e = eval_neuron(s, theta, x, i);
      mag += std::fabs(e.q * e.g.s * e.m);
    }
    mag = std::fmin(mag, cap);
    sum += mag * mag;
  }
  const double ulp = kFloorUlps * 2.220446049250313e-16;
  return ulp * ulp * sum / npts;
}

double kink_scaled_gradient(const Shape& s, const double* theta, const Dataset& ds, double at_point) {
  const int npts = ds.n_train(), m = num_params(s);
  if (npts == 0) return 0.0;
  std::vector<double> g(m, 0.0), h(m, 0.0), row(m), r(npts);
  double sse = 0.0;
  for (int k = 0; k < npts; ++k) {
    const double y = jacobian_row(s, theta, ds.x_train.data() + static_cast<std::size_t>(k) * s.d, row.data());
    r[k] = y - ds.y_train[k];
    sse += r[k] * r[k];
    for (int q = 0; q < m; ++q) {
      g[q] += 2.0 / npts * row[q] * r[k];
      h[q] += 2.0 / npts * row[q] * row[q];
    }
  }
  const double loss = sse / npts;
  if (!(loss > 0.0)) return 0.0;
  if (relu1d_fast_path(s)) {
    std::vector<int> order(npts);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return ds.x_train[a] < ds.x_train[b]; });
    for (int i = 0; i < s.n; ++i) {
      const int iG = factor_offset(s, 0) + i, ig = factor_offset(s, 0) + s.n + i;
      if (theta[iG] == 0.0) continue;
      const double kink = -theta[ig] / theta[iG];
      // The nearest training point.
      const auto at = std::lower_bound(order.begin(), order.end(), kink,
                                       [&](int a, double v) { return ds.x_train[a] < v; }) - order.begin();
      int k = -1;
      for (auto c : {at - 1, at})
        if (c >= 0 && c < npts && (k < 0 || std::fabs(ds.x_train[order[c]] - kink) < std::fabs(ds.x_train[k] - kink)))
          k = order[c];
      if (k < 0) continue;
      const double xk = ds.x_train[k];
      if (std::fabs(g[ig] * theta[iG] * (xk - kink)) > at_point * loss) continue;
      // The jump of the gate's gradient when x_k changes sides, the neuron's other factors at x_k.
      const NeuronEval e = eval_neuron(s, theta, &xk, i);
      const double sign = e.a[0] > 0.0 ? -1.0 : 1.0;  // active now: the other side drops it
      const double dg = sign * 2.0 / npts * r[k] * e.q * e.m, dG = dg * xk;
      // Least scaled norm on g + t d, t in [0, 1].
      double num = 0.0, den = 0.0;
      for (const auto& [q, d] : {std::pair<int, double>{iG, dG}, std::pair<int, double>{ig, dg}})
        if (h[q] > 0.0) {
          num += g[q] * d / h[q];
          den += d * d / h[q];
        }
      const double t = den > 0.0 ? std::clamp(-num / den, 0.0, 1.0) : 0.0;
      g[iG] += t * dG;
      g[ig] += t * dg;
    }
  }
  double hmax = 0.0;
  for (double v : h) hmax = std::fmax(hmax, v);
  double worst = 0.0;
  for (int q = 0; q < m; ++q)
    if (h[q] > kSingularRel * hmax && h[q] > 0.0) worst = std::fmax(worst, std::fabs(g[q]) / std::sqrt(h[q]));
  return worst / std::sqrt(loss);
}

void parallel_for(int count, int threads, const std::function<void(int, int)>& f) {
  // An exception must not leave an OpenMP region: the first one is kept and rethrown here.
  std::exception_ptr first;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int j = 0; j < count; ++j) {
    try {
      f(j, omp_get_thread_num());
    } catch (...) {
#pragma omp critical(gs_parallel_for)
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

void HostSolver::load(const Batch& batch, bool fast_relu1d) {
  nets_ = batch.nets;
  data_ = batch.datasets;
  fast_relu1d_ = fast_relu1d;
  sorted_.assign(data_.size(), Sorted{});
  for (std::size_t k = 0; k < data_.size(); ++k) {
    const Dataset& ds = *data_[k];
    if (ds.d != 1) continue;
    const int npts = ds.n_train();
    std::vector<int> order(npts);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return ds.x_train[a] < ds.x_train[b]; });
    Sorted& so = sorted_[k];
    so.x.resize(npts);
    so.y.resize(npts);
    so.pos.resize(npts);
    for (int q = 0; q < npts; ++q) {
      so.x[q] = ds.x_train[order[q]];
      so.y[q] = ds.y_train[order[q]];
      so.pos[order[q]] = q;
    }
    so.pre.resize(static_cast<std::size_t>(kNumMoments) * (npts + 1) * 2);
    build_prefix(so.x.data(), nullptr, npts, kNumMoments, so.pre.data());
  }
}

void HostSolver::sorted_residuals(int i, const double* theta, std::vector<double>& r) const {
  const Shape& s = nets_[i].shape;
  const Sorted& so = sorted_[nets_[i].dataset];
  const int n = static_cast<int>(so.x.size());
  r.resize(n);
  const double fast = by_shape(s, [&](auto nf, auto d) {
    return relu1d_residuals_of<decltype(nf)::value, decltype(d)::value>(s, theta, so.x.data(), so.y.data(), n,
                                                                         r.data());
  });
  if (fast == 0.0)
    by_shape(s, [&](auto nf, auto d) {
      return residuals_of<decltype(nf)::value, decltype(d)::value>(s, theta, so.x.data(), so.y.data(), n, r.data());
    });
}

Points1d HostSolver::points1d(int dataset) const {
  const Sorted& so = sorted_[dataset];
  return {so.x.data(), static_cast<int>(so.x.size()), data_[dataset]->lo[0], data_[dataset]->hi[0]};
}

int HostSolver::linear_optimum(int i, const double* theta, const std::vector<int>& cols, double* values,
                               double* loss, Workspace& w) const {
  const NetDesc& nd = nets_[i];
  const Shape& s = nd.shape;
  const Dataset& ds = *data_[nd.dataset];
  LsSystem& sys = w.ls;
  const int npts = ds.n_train();
  if (relu1d_fast_path(s) && fast_relu1d_) {
    const Sorted& so = sorted_[nd.dataset];
    const TallyTimer timer;
    sorted_residuals(i, theta, w.resid);
    if (timer.on() && tally_phase() == TallyPhase::kTrial) {
      const double f = residual_flops(s, npts);
      tally_add(Prim::kTrialLoss, f, f, timer.seconds());
    }
    compress_relu1d(s, theta, cols, so.x.data(), w.resid.data(), npts, &sys);
  } else {
    compress_rows(s, theta, cols, ds.x_train.data(), ds.y_train.data(), npts, &sys);
  }
  double sse = sys.rest;
  for (double v : sys.h) sse += v * v;
  *loss = sse / npts;
  w.current.resize(cols.size());
  for (std::size_t q = 0; q < cols.size(); ++q) w.current[q] = theta[cols[q]];
  return least_squares_values(sys, w.current.data(), npts, values, &w.lss);
}

int HostSolver::stage_step(int i, const double* theta, int b, int e, double* step, double* loss,
                           Workspace& w) const {
  w.values.resize(e - b);
  const int rank = linear_optimum(i, theta, param_range(b, e), w.values.data(), loss, w);
  for (int q = b; q < e; ++q) step[q - b] = w.values[q - b] - theta[q];
  return rank;
}

void HostSolver::var_pro_system(int i, const double* theta, const double* H, const double* scale,
                                ReducedSystem* sys, Workspace& w, const double* resid, const MainQr* main) const {
  const NetDesc& nd = nets_[i];
  const Shape& s = nd.shape;
  const Dataset& ds = *data_[nd.dataset];
  const int m = num_params(s);
  const int npts = ds.n_train();
  w.roles.resize(m);
  LsSystem& js = w.js;
  const TallyPhaseScope phase(TallyPhase::kSystem);
  if (relu1d_fast_path(s)) {
    const Sorted& so = sorted_[nd.dataset];
    const Points1d pts = points1d(nd.dataset);
    var_pro_roles(s, theta, &pts, w.roles.data());
    var_pro_columns(s, theta, w.roles.data(), scale, &pts, &w.cols);
    if (resid == nullptr) {
      const TallyTimer timer;
      sorted_residuals(i, theta, w.resid);
      if (timer.on()) {
        const double f = residual_flops(s, npts);
        tally_add(Prim::kResiduals, f, f, timer.seconds());
      }
      resid = w.resid.data();
    }
    compress_relu1d(s, theta, w.cols.all(), so.x.data(), resid, npts, &js);
    residual_curvature_relu1d(s, theta, w.cols, so.x.data(), resid, npts, &w.curvature);
  } else {
    // Any other network: the streaming QR of its Jacobian rows, and the residual curvature
    // as the exact Hessian less its Gauss-Newton part.
    var_pro_roles(s, theta, nullptr, w.roles.data());
    var_pro_columns(s, theta, w.roles.data(), scale, nullptr, &w.cols);
    const std::vector<int> all = w.cols.all();
    compress_rows(s, theta, all, ds.x_train.data(), ds.y_train.data(), npts, &js);
    const int ld = static_cast<int>(all.size()), kc = static_cast<int>(w.cols.lin.size());
    const int kb = ld - kc;
    w.curvature.assign(static_cast<std::size_t>(ld) * kb, 0.0);
    if (kb > 0 && js.rows > 0) {
      const double weight = -2.0 / npts, one = 1.0;
      for (int c = 0; c < kb; ++c)
        for (int r = 0; r < ld; ++r)
          w.curvature[r + static_cast<std::size_t>(c) * ld] = H[all[r] + static_cast<std::size_t>(all[kc + c]) * m];
      dgemm_("T", "N", &ld, &kb, &js.rows, &weight, js.B.data(), &js.rows,
             js.B.data() + static_cast<std::size_t>(kc) * js.rows, &js.rows, &one, w.curvature.data(), &ld);
    }
  }
  reduced_system(js, w.cols, scale, 2.0 / npts, npts, w.curvature, sys, main);
}

double HostSolver::var_pro_trial(int i, const double* theta, const double* step, double* trial,
                                 Workspace& w, double alpha, std::vector<double>* resid, MainQr* keep,
                                 const double* scale) const {
  const NetDesc& nd = nets_[i];
  const Shape& s = nd.shape;
  const int m = num_params(s);
  const TallyPhaseScope phase(TallyPhase::kTrial);
  for (int q = 0; q < m; ++q) trial[q] = step != nullptr ? theta[q] + alpha * step[q] : theta[q];
  const std::vector<int> cols = linear_columns(s);
  if (relu1d_fast_path(s)) push_out_thin(s, points1d(nd.dataset), trial);
  w.values.resize(cols.size());
  double before;
  {
    // The columns of zero Jacobi scale go last in the QR, for this solve alone (LsScratch::late),
    // whether it returns or throws.
    struct Marks {
      std::vector<unsigned char>& late;
      ~Marks() { late.clear(); }
    } marks{w.lss.late};
    marks.late.clear();
    if (scale != nullptr)
      for (int q : cols) marks.late.push_back(scale[q] == 0.0 ? 1 : 0);
    linear_optimum(i, trial, cols, w.values.data(), &before, w);
  }
  for (std::size_t q = 0; q < cols.size(); ++q) trial[cols[q]] = w.values[q];
  if (keep != nullptr) {
    keep->cols.clear();
    keep->norm.clear();
    const int km = w.lss.qr_main;
    if (km > 0) {
      keep->rows = w.ls.rows;
      keep->flip = w.lss.flip;
      for (int j = 0; j < km; ++j) {
        keep->cols.push_back(cols[w.lss.order[j]]);
        keep->norm.push_back(w.lss.c[w.lss.order[j]]);
      }
      keep->a.assign(w.lss.A.begin(), w.lss.A.begin() + static_cast<std::ptrdiff_t>(keep->rows) * km);
      keep->tau.assign(w.lss.tau.begin(), w.lss.tau.begin() + km);
    }
  }
  const Dataset& ds = *data_[nd.dataset];
  const int npts = ds.n_train();
  const TallyTimer timer;
  double sse = 0.0;
  if (relu1d_fast_path(s) && fast_relu1d_) {
    // train_sse's sum, in its order (the training points'), of the sorted residuals.
    std::vector<double>& r = resid != nullptr ? *resid : w.resid;
    sorted_residuals(i, trial, r);
    const std::vector<int>& pos = sorted_[nd.dataset].pos;
    for (int q = 0; q < npts; ++q) {
      const double v = r[pos[q]];
      sse += v * v;
    }
  } else {
    if (resid != nullptr) resid->clear();
    sse = train_sse(s, trial, ds);
  }
  if (timer.on()) {
    const double f = residual_flops(s, npts) + 2.0 * npts;
    tally_add(Prim::kTrialLoss, f, f, timer.seconds());
  }
  return sse / npts;
}

void HostVarPro::load(int networks) {
  system_.assign(networks, ReducedSystem{});
  resid_.assign(networks, {});
  trial_resid_.assign(networks, {});
  system_ok_.assign(networks, 0);
  resid_ok_.assign(networks, 0);
  trial_resid_ok_.assign(networks, 0);
  qr_.assign(networks, {});
  trial_qr_.assign(networks, {});
  qr_ok_.assign(networks, 0);
  trial_qr_ok_.assign(networks, 0);
}

const std::vector<double>& HostVarPro::residuals(const HostSolver& host, int i, const double* theta) {
  if (!resid_ok_[i]) {
    host.sorted_residuals(i, theta, resid_[i]);
    resid_ok_[i] = 1;
  }
  return resid_[i];
}

int HostVarPro::solve(const HostSolver& host, int i, const double* theta, const double* H, const double* scale,
                      double lambda, double* step, StepModel* model, HostSolver::Workspace& w) {
  if (!system_ok_[i]) {
    host.var_pro_system(i, theta, H, scale, &system_[i], w, resid_ok_[i] ? resid_[i].data() : nullptr,
                        qr_ok_[i] ? &qr_[i] : nullptr);
    system_ok_[i] = 1;
  }
  return reduced_solve(num_params(host.shape(i)), scale, system_[i], lambda, w.work, step, model);
}

double HostVarPro::trial(const HostSolver& host, int i, const double* theta, const double* step, double* trial,
                         HostSolver::Workspace& w, double alpha, const double* scale) {
  const double loss =
      host.var_pro_trial(i, theta, step, trial, w, alpha, &trial_resid_[i], &trial_qr_[i], scale);
  trial_resid_ok_[i] = !trial_resid_[i].empty();
  trial_qr_ok_[i] = !trial_qr_[i].cols.empty();
  return loss;
}

void HostVarPro::accept(int i) {
  system_ok_[i] = 0;
  resid_[i].swap(trial_resid_[i]);
  resid_ok_[i] = trial_resid_ok_[i];
  trial_resid_ok_[i] = 0;
  std::swap(qr_[i], trial_qr_[i]);
  qr_ok_[i] = trial_qr_ok_[i];
  trial_qr_ok_[i] = 0;
}

}  // namespace gs
