// The solver's host half (host_solver.h): least squares of linear stages and the
// variable-projection step, per network, for both backends.
#include "gpusweep/host_solver.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <numeric>
#include <stdexcept>

#include "by_shape.h"
#include "gpusweep/least_squares.h"
#include "gpusweep/relu1d.h"

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

}  // namespace

double train_sse(const Shape& s, const double* theta, const Dataset& ds) {
  return by_shape(s, [&](auto nf, auto d) {
    return sum_squares<decltype(nf)::value, decltype(d)::value>(s, theta, ds.x_train, ds.y_train);
  });
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
    for (int q = 0; q < npts; ++q) {
      so.x[q] = ds.x_train[order[q]];
      so.y[q] = ds.y_train[order[q]];
    }
    so.pre.resize(static_cast<std::size_t>(kNumMoments) * (npts + 1) * 2);
    build_prefix(so.x.data(), nullptr, npts, kNumMoments, so.pre.data());
  }
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
  LsSystem sys;
  const int npts = ds.n_train();
  if (relu1d_fast_path(s) && fast_relu1d_) {
    const Sorted& so = sorted_[nd.dataset];
    w.resid.resize(npts);
    for (int k = 0; k < npts; ++k) w.resid[k] = evaluate(s, theta, &so.x[k]) - so.y[k];
    compress_relu1d(s, theta, cols, so.x.data(), w.resid.data(), npts, &sys);
  } else {
    compress_rows(s, theta, cols, ds.x_train.data(), ds.y_train.data(), npts, &sys);
  }
  double sse = sys.rest;
  for (double v : sys.h) sse += v * v;
  *loss = sse / npts;
  w.current.resize(cols.size());
  for (std::size_t q = 0; q < cols.size(); ++q) w.current[q] = theta[cols[q]];
  return least_squares_values(sys, w.current.data(), npts, values);
}

int HostSolver::stage_step(int i, const double* theta, int b, int e, double* step, double* loss,
                           Workspace& w) const {
  w.values.resize(e - b);
  const int rank = linear_optimum(i, theta, param_range(b, e), w.values.data(), loss, w);
  for (int q = b; q < e; ++q) step[q - b] = w.values[q - b] - theta[q];
  return rank;
}

int HostSolver::var_pro_step(int i, const double* theta, const double* H, const double* g,
                             const double* scale, double lambda, double* step, double* pred,
                             Workspace& w) const {
  const NetDesc& nd = nets_[i];
  const Shape& s = nd.shape;
  const int m = num_params(s);
  w.roles.resize(m);
  w.extra.clear();
  if (relu1d_fast_path(s)) {
    const Sorted& so = sorted_[nd.dataset];
    const Points1d pts = points1d(nd.dataset);
    var_pro_roles(s, theta, &pts, w.roles.data());
    knot_curvature(s, theta, so.x.data(), so.y.data(), pts.n, kKnotWindow, &w.extra);
  } else {
    var_pro_roles(s, theta, nullptr, w.roles.data());
  }
  reduced_system(m, H, g, scale, w.roles.data(), w.extra, &w.reduced);
  return reduced_solve(m, scale, w.reduced, lambda, w.work, step, pred);
}

double HostSolver::var_pro_trial(int i, const double* theta, const double* step, double* trial,
                                 Workspace& w) const {
  const NetDesc& nd = nets_[i];
  const Shape& s = nd.shape;
  const int m = num_params(s);
  for (int q = 0; q < m; ++q) trial[q] = step != nullptr ? theta[q] + step[q] : theta[q];
  std::vector<int> cols = linear_columns(s);
  if (relu1d_fast_path(s)) {  // the same rule as var_pro_step's roles, whatever the assembly
    const std::vector<int> all = cols;
    drop_thin_neurons(s, trial, points1d(nd.dataset), &cols);
    for (int q : all) trial[q] = std::binary_search(cols.begin(), cols.end(), q) ? trial[q] : 0.0;
  }
  w.values.resize(cols.size());
  double before;
  linear_optimum(i, trial, cols, w.values.data(), &before, w);
  for (std::size_t q = 0; q < cols.size(); ++q) trial[cols[q]] = w.values[q];
  const Dataset& ds = *data_[nd.dataset];
  return train_sse(s, trial, ds) / ds.n_train();
}

}  // namespace gs
