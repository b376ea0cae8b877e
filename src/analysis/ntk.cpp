// The NTK experiment's math on the CPU: the paper's problem and initialization, the summary of
// a spectrum, gradient-descent dynamics and the loss crossing. See ntk.h.
#include "gpusweep/analysis/ntk.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "gpusweep/model/data.h"
#include "gpusweep/util/util.h"
#include "solver/lapack.h"

namespace gs {

namespace {

constexpr double kEps = 0x1p-52;

}  // namespace

Dataset make_linear_problem(int d, int points, double noise, std::uint64_t data_seed) {
  if (d < 1 || points < 1) throw std::invalid_argument("linear problem: need d >= 1 and points >= 1");
  Rng rng(mix_seed(mix_seed(data_seed, hash_string("linear")), static_cast<std::uint64_t>(d)));
  std::vector<double> w(d);
  const double sd = 1.0 / std::sqrt(static_cast<double>(d));
  for (auto& v : w) v = sd * rng.normal();
  Dataset ds;
  ds.name = "linear";
  ds.expression = "x . w + " + std::to_string(noise) + " N(0,1)";
  ds.d = d;
  auto draw = [&](std::vector<double>& xs, std::vector<double>& ys) {
    xs.resize(static_cast<std::size_t>(points) * d);
    ys.resize(points);
    for (int k = 0; k < points; ++k) {
      double y = 0.0;
      for (int j = 0; j < d; ++j) {
        const double x = rng.normal();
        xs[static_cast<std::size_t>(k) * d + j] = x;
        y += x * w[j];
      }
      ys[k] = y + noise * rng.normal();
    }
  };
  draw(ds.x_train, ds.y_train);
  draw(ds.x_test, ds.y_test);
  ds.lo.assign(d, std::numeric_limits<double>::infinity());
  ds.hi.assign(d, -std::numeric_limits<double>::infinity());
  for (int k = 0; k < points; ++k)
    for (int j = 0; j < d; ++j) {
      ds.lo[j] = std::min(ds.lo[j], ds.x_train[static_cast<std::size_t>(k) * d + j]);
      ds.hi[j] = std::max(ds.hi[j], ds.x_train[static_cast<std::size_t>(k) * d + j]);
    }
  ds.x_center.assign(d, 0.0);
  ds.x_scale.assign(d, 1.0);
  return ds;
}

void init_lecun(const Shape& s, std::uint64_t seed, double* theta) {
  Rng rng(seed);
  const int p = num_params(s);
  std::fill(theta, theta + p, 0.0);
  const double sd_in = 1.0 / std::sqrt(static_cast<double>(s.d));
  for (int b = 0; b < num_factors(s.arch); ++b) {
    double* W = theta + factor_offset(s, b);
    for (int q = 0; q < s.n * s.d; ++q) W[q] = sd_in * rng.normal();
  }
  const double sd_out = 1.0 / std::sqrt(static_cast<double>(s.n));
  double* D = theta + d_offset(s);
  for (int q = 0; q < s.n * num_poly_terms(s); ++q) D[q] = sd_out * rng.normal();
}

int matched_width(Arch arch, int d, int n) {
  const double per = static_cast<double>(num_factors(arch)) * d + static_cast<double>(poly_term_count(d, poly_degree(arch)));
  const double w = std::round(static_cast<double>(n) * (d + 1) / per);
  return std::max(1, static_cast<int>(w));
}

SpectrumSummary summarize_spectrum(const std::vector<double>& eig, int points, int params) {
  SpectrumSummary s;
  if (eig.empty()) {
    s.reason = "no eigenvalues";
    return s;
  }
  for (double v : eig)
    if (!std::isfinite(v)) {
      s.reason = "non-finite eigenvalue";
      return s;
    }
  s.lambda_max = eig.back();
  if (!(s.lambda_max > 0.0)) {
    s.reason = "the kernel is zero (lambda_max <= 0)";
    return s;
  }
  // The Gram matrix's rounding grows with both its size and the length of the products that
  // form it, so the scale is max(N, P) either way (numpy's matrix_rank rule).
  s.floor = s.lambda_max * static_cast<double>(std::max(points, params)) * kEps;
  for (double v : eig) {
    if (v <= s.floor) {
      ++s.below_floor;
    } else if (s.lambda_min == 0.0) {
      s.lambda_min = v;  // ascending: the first one above the floor
    }
  }
  s.cond = s.lambda_max / s.lambda_min;
  s.ok = true;
  return s;
}

// ---- dynamics ------------------------------------------------------------------------------

std::vector<int> record_steps(int steps, int every) {
  std::vector<int> r;
  every = std::max(1, every);
  for (int t = 0; t <= steps; t += every) r.push_back(t);
  if (r.back() != steps) r.push_back(steps);
  return r;
}

namespace {

// The order in which SGD visits the points: epochs of shuffled indices, the same for every
// network of a dataset.
class MinibatchStream {
 public:
  MinibatchStream(int points, int batch, std::uint64_t seed) : rng_(seed), order_(points), batch_(batch) {
    std::iota(order_.begin(), order_.end(), 0);
    shuffle();
  }
  // The next minibatch's point indices.
  const int* next() {
    if (pos_ + batch_ > static_cast<int>(order_.size())) {
      shuffle();
      pos_ = 0;
    }
    const int* r = order_.data() + pos_;
    pos_ += batch_;
    return r;
  }

 private:
  void shuffle() {
    for (int k = static_cast<int>(order_.size()) - 1; k > 0; --k)
      std::swap(order_[k], order_[static_cast<int>(rng_.next() % static_cast<std::uint64_t>(k + 1))]);
  }
  Rng rng_;
  std::vector<int> order_;
  int batch_;
  int pos_ = 0;
};

// L = (1/2N) sum_k r_k^2 over all N points.
double full_loss(const Shape& s, const double* theta, const Dataset& data) {
  const int n = data.n_train();
  double sum = 0.0;
  for (int k = 0; k < n; ++k) {
    const double r = evaluate(s, theta, data.x_train.data() + static_cast<std::size_t>(k) * s.d) - data.y_train[k];
    sum += r * r;
  }
  return 0.5 * sum / n;
}

// The gradient of (1/2c) sum_{k in idx} r_k^2 over the c listed points into grad, and that
// loss as the return value: with every point listed, L and dL/dtheta in one pass; with a
// minibatch, an unbiased estimate of dL/dtheta.
double minibatch_grad(const Shape& s, const double* theta, const Dataset& data, const int* idx, int count,
                      double* row, double* grad) {
  const int p = num_params(s);
  std::fill(grad, grad + p, 0.0);
  double sum = 0.0;
  for (int j = 0; j < count; ++j) {
    const int k = idx[j];
    const double r =
        jacobian_row(s, theta, data.x_train.data() + static_cast<std::size_t>(k) * s.d, row) - data.y_train[k];
    sum += r * r;
    for (int q = 0; q < p; ++q) grad[q] += r * row[q];
  }
  const double scale = 1.0 / count;
  for (int q = 0; q < p; ++q) grad[q] *= scale;
  return 0.5 * sum * scale;
}

}  // namespace

double max_kernel_diagonal(const Shape& s, const double* theta, const Dataset& data) {
  std::vector<double> row(num_params(s));
  double top = 0.0;
  for (int k = 0; k < data.n_train(); ++k) {
    jacobian_row(s, theta, data.x_train.data() + static_cast<std::size_t>(k) * s.d, row.data());
    double sq = 0.0;
    for (double v : row) sq += v * v;
    top = std::max(top, sq);
  }
  return top;
}

std::vector<double> step_sizes(const Batch& batch, const std::vector<double>& lambda_max, const DynamicsOptions& opt) {
  const int count = batch.size();
  std::vector<double> eta(count, std::numeric_limits<double>::quiet_NaN());
  for (int i = 0; i < count; ++i) {
    const NetDesc& nd = batch.nets[i];
    const Dataset& data = *batch.datasets[nd.dataset];
    const int n = data.n_train();
    if (!(lambda_max[i] > 0.0 && std::isfinite(lambda_max[i]))) continue;  // no spectrum: no step size
    double curvature = lambda_max[i] / n;
    if (opt.batch > 0 && opt.batch < n)
      curvature = std::max(curvature, max_kernel_diagonal(nd.shape, batch.params.data() + nd.offset, data) / opt.batch);
    eta[i] = opt.lr_c / curvature;
  }
  return eta;
}

std::vector<LossCurve> train_gd(Batch& batch, const std::vector<double>& eta, const DynamicsOptions& opt) {
  openblas_set_num_threads(1);
  const int count = batch.size();
  const std::vector<int> rec = record_steps(opt.steps, opt.record_every);
  std::vector<LossCurve> out(count);
#pragma omp parallel for schedule(dynamic, 1) num_threads(thread_count(opt.threads))
  for (int i = 0; i < count; ++i) {
    const NetDesc& nd = batch.nets[i];
    const Shape& s = nd.shape;
    const Dataset& data = *batch.datasets[nd.dataset];
    const int n = data.n_train();
    const int p = num_params(s);
    double* theta = batch.params.data() + nd.offset;
    LossCurve& c = out[i];
    try {
      c.loss.assign(rec.size(), std::numeric_limits<double>::quiet_NaN());
      if (!(eta[i] > 0.0 && std::isfinite(eta[i]))) continue;  // no spectrum: no step size
      c.eta = eta[i];
      const bool sgd = opt.batch > 0 && opt.batch < n;
      const int per_step = sgd ? opt.batch : n;
      std::vector<int> all(n);
      std::iota(all.begin(), all.end(), 0);
      MinibatchStream stream(n, sgd ? opt.batch : n,
                             mix_seed(opt.data_seed, hash_string("sgd:" + data.name + ":" + std::to_string(s.d))));
      std::vector<double> row(p), grad(p);
      std::size_t next_rec = 0;
      for (int t = 0; t <= opt.steps; ++t) {
        const bool record = next_rec < rec.size() && rec[next_rec] == t;
        if (t == opt.steps) {  // the last point: the loss only
          if (record) c.loss[next_rec] = full_loss(s, theta, data);
          break;
        }
        const int* idx = sgd ? stream.next() : all.data();
        double L = minibatch_grad(s, theta, data, idx, per_step, row.data(), grad.data());
        if (sgd && record) L = full_loss(s, theta, data);
        if (record) {
          c.loss[next_rec++] = L;
          if (!std::isfinite(L)) {
            c.diverged = true;
            break;
          }
        }
        for (int q = 0; q < p; ++q) theta[q] -= c.eta * grad[q];
      }
      if (!c.loss.empty() && !std::isfinite(c.loss.back())) c.diverged = true;
    } catch (const std::exception& e) {  // out of memory: this network fails, not the run
      c.failed = true;
      c.reason = std::string("training stopped: ") +
                 (dynamic_cast<const std::bad_alloc*>(&e) ? "out of memory" : e.what());
      c.loss.assign(rec.size(), std::numeric_limits<double>::quiet_NaN());
    }
  }
  return out;
}

Crossing find_crossing(const std::vector<int>& steps, const std::vector<double>& base,
                       const std::vector<double>& gated) {
  Crossing c;
  const std::size_t m = std::min({steps.size(), base.size(), gated.size()});
  auto val = [](double v) { return std::isnan(v) ? std::numeric_limits<double>::infinity() : v; };
  auto below = [&](std::size_t t) { return val(gated[t]) < val(base[t]); };
  if (m < 2) {
    c.note = "too few recorded steps";
    return c;
  }
  // The start of the final run of recorded steps where the gated curve is below.
  std::size_t start = m;
  while (start > 0 && below(start - 1)) --start;
  if (start == m) {
    c.note = "no crossing: the gated curve does not stay below to the end";
    return c;
  }
  if (start <= 1) {
    c.note = "no crossing: the gated curve is below from the first step on";
    return c;
  }
  c.found = true;
  c.step = steps[start];
  c.note = "crossing";
  return c;
}

}  // namespace gs
