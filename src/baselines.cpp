// The untrained baselines: model names, the paper's mlp and glu constructions, and
// least-squares splines in a uniform B-spline basis (LAPACK dgelsd).
#include "gpusweep/baselines.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "gpusweep/network.h"
#include "gpusweep/sweep.h"
#include "lapack.h"

namespace gs {

// ---- names ---------------------------------------------------------------------------------

namespace {
const char* trained_name(Arch a) {
  switch (a) {
    case Arch::kMlp: return "mlp";
    case Arch::kGlu: return "glu";
    case Arch::kGqu: return "gqu";
  }
  return "?";
}

std::vector<Model> all_models() {
  return {Model(Arch::kMlp),
          Model(Arch::kGlu),
          Model(Arch::kGqu),
          Model(Method::kConstruct, Arch::kMlp, 0),
          Model(Method::kConstruct, Arch::kGlu, 0),
          Model(Method::kSpline, Arch::kMlp, 1),
          Model(Method::kSpline, Arch::kMlp, 2),
          Model(Method::kSpline, Arch::kMlp, 3)};
}
}  // namespace

std::string model_name(const Model& m) {
  switch (m.method) {
    case Method::kTrain: return trained_name(m.arch);
    case Method::kConstruct: return std::string(trained_name(m.arch)) + "-construct";
    case Method::kSpline: return "spline" + std::to_string(m.degree);
  }
  return "?";
}

bool parse_model(const std::string& name, Model* out) {
  for (const Model& m : all_models())
    if (model_name(m) == name) {
      *out = m;
      return true;
    }
  return false;
}

std::vector<std::string> model_names() {
  std::vector<std::string> v;
  for (const Model& m : all_models()) v.push_back(model_name(m));
  return v;
}

int model_num_params(const Model& m, int d, int width) {
  if (m.method == Method::kSpline) return width + m.degree;
  return num_params(Shape{m.arch, Act::kRelu, d, width});
}

const char* model_act_name(const Model& m, Act trained_act) {
  switch (m.method) {
    case Method::kTrain: return act_name(trained_act);
    case Method::kConstruct: return "relu";
    case Method::kSpline: return "none";
  }
  return "?";
}

// ---- constructions ---------------------------------------------------------------------------

std::vector<double> construct_network(Arch arch, int n, double lo, double hi, const TargetFn& f) {
  if (arch != Arch::kMlp && arch != Arch::kGlu)
    throw std::invalid_argument(std::string("no analytical construction for ") + trained_name(arch));
  if (n < 1 || !(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi))
    throw std::invalid_argument("construction: need a width >= 1 and a range lo < hi");
  const Shape s{arch, Act::kRelu, 1, n};
  std::vector<double> th(num_params(s), 0.0);
  double* G = th.data() + factor_offset(s, 0);
  double* g = G + n;
  double* U = arch == Arch::kGlu ? th.data() + factor_offset(s, 1) : nullptr;
  double* u = arch == Arch::kGlu ? U + n : nullptr;
  double* D = th.data() + d_offset(s);

  const double h = (hi - lo) / n;
  auto boundary = [&](int k) { return k == n ? hi : lo + k * h; };
  // xs[2k] = x_k (boundaries), xs[2k + 1] = the middle of cell k.
  std::vector<double> xs(2 * n + 1);
  for (int k = 0; k <= n; ++k) xs[2 * k] = boundary(k);
  for (int k = 0; k < n; ++k) xs[2 * k + 1] = 0.5 * (xs[2 * k] + xs[2 * k + 2]);
  const std::vector<double> fx = f(xs);
  if (fx.size() != xs.size()) throw std::logic_error("construction: f returned the wrong count");

  // Right of x_k, every neuron i <= k is on and the network is one polynomial
  // c0 + c1 x + c2 x^2; each new neuron only adds to it, so the sweep keeps its coefficients
  // instead of evaluating the whole network at every boundary.
  double c0 = fx[0], c1 = 0.0, c2 = 0.0;
  th.back() = fx[0];  // d0 = f(lo): y(x_0) = f(x_0)
  auto poly = [&](double x) { return c0 + x * (c1 + x * c2); };
  for (int k = 0; k < n; ++k) {
    const double xk = xs[2 * k], m = xs[2 * k + 1], r = xs[2 * k + 2];
    G[k] = 1.0;
    g[k] = -xk;
    const double er = fx[2 * k + 2] - poly(r);  // what the cell still misses at its right end
    if (arch == Arch::kMlp) {
      D[k] = er / (r - xk);  // D_k (x - x_k) closes the gap at x_{k+1}
      c1 += D[k];
      c0 -= D[k] * xk;
    } else {
      // (x - x_k) q(x) with q = U x + u closes the gaps at the middle and at the right end.
      const double em = fx[2 * k + 1] - poly(m);
      const double qm = em / (m - xk), qr = er / (r - xk);
      const double Uk = (qr - qm) / (r - m);
      const double uk = qr - Uk * r;
      D[k] = 1.0;
      U[k] = Uk;
      u[k] = uk;
      c2 += Uk;
      c1 += uk - xk * Uk;
      c0 -= xk * uk;
    }
  }
  return th;
}

// ---- splines ---------------------------------------------------------------------------------

namespace {
// Values of the degree + 1 uniform B-splines that are nonzero on a cell, at local position t
// (t in [0, 1] inside the cell; outside it, their polynomials continued). Cox-de Boor on
// integer knots (Piegl and Tiller, A2.2), where every denominator is the current degree.
void uniform_bspline_basis(int degree, double t, double* N) {
  double left[kMaxSplineDegree + 1], right[kMaxSplineDegree + 1];
  N[0] = 1.0;
  for (int j = 1; j <= degree; ++j) {
    left[j] = t + j - 1.0;
    right[j] = j - t;
    double saved = 0.0;
    for (int r = 0; r < j; ++r) {
      const double temp = N[r] / j;
      N[r] = saved + right[r + 1] * temp;
      saved = left[j - r] * temp;
    }
    N[j] = saved;
  }
}

// The cell of x (clamped to the end cells) and x's local position in it.
int locate(double x, double lo, double h, int cells, double* t) {
  const double s = (x - lo) / h;
  int j = static_cast<int>(std::floor(s));
  j = std::min(std::max(j, 0), cells - 1);
  *t = s - j;
  return j;
}

void check_spline_args(int degree, int cells, double lo, double hi) {
  if (degree < 1 || degree > kMaxSplineDegree)
    throw std::invalid_argument("spline: degree must be 1.." + std::to_string(kMaxSplineDegree));
  if (cells < 1) throw std::invalid_argument("spline: need at least one cell");
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi))
    throw std::invalid_argument("spline: need a finite range lo < hi");
}
}  // namespace

double UniformSpline::operator()(double x) const {
  double t;
  const int j = locate(x, lo, (hi - lo) / cells, cells, &t);
  double N[kMaxSplineDegree + 1];
  uniform_bspline_basis(degree, t, N);
  double y = 0.0;
  for (int r = 0; r <= degree; ++r) y += coef[j + r] * N[r];
  return y;
}

std::size_t spline_fit_bytes(int degree, int cells, int n_points) {
  const std::size_t p = static_cast<std::size_t>(cells) + degree;
  return sizeof(double) * (static_cast<std::size_t>(std::max<std::size_t>(n_points, p)) * (p + 1) + 13 * p);
}

UniformSpline fit_spline(int degree, int cells, double lo, double hi, const std::vector<double>& x,
                         const std::vector<double>& y) {
  check_spline_args(degree, cells, lo, hi);
  if (x.size() != y.size() || x.empty())
    throw std::invalid_argument("spline: need as many values as points, and at least one");
  const int m = static_cast<int>(x.size());
  const int p = cells + degree;
  const double h = (hi - lo) / cells;
  // The design matrix, column-major m x p: row k holds the basis at x_k.
  std::vector<double> A(static_cast<std::size_t>(m) * p, 0.0);
  for (int k = 0; k < m; ++k) {
    double t, N[kMaxSplineDegree + 1];
    const int j = locate(x[k], lo, h, cells, &t);
    uniform_bspline_basis(degree, t, N);
    for (int r = 0; r <= degree; ++r) A[static_cast<std::size_t>(j + r) * m + k] = N[r];
  }
  const int ldb = std::max(m, p);
  std::vector<double> b(ldb, 0.0);
  std::copy(y.begin(), y.end(), b.begin());
  std::vector<double> sv(std::min(m, p));
  // Singular values below this share of the largest count as zero: the B-spline basis is
  // well conditioned, so only coefficients the points do not reach fall under it.
  const double rcond = 1e-12;
  const int nrhs = 1;
  int rank = 0, info = 0, lwork = -1;
  double wquery = 0.0;
  int iquery = 0;
  dgelsd_(&m, &p, &nrhs, A.data(), &m, b.data(), &ldb, sv.data(), &rcond, &rank, &wquery, &lwork,
          &iquery, &info);
  if (info != 0) throw std::logic_error("dgelsd workspace query: info " + std::to_string(info));
  lwork = static_cast<int>(wquery);
  std::vector<double> work(std::max(1, lwork));
  std::vector<int> iwork(std::max(1, iquery));
  dgelsd_(&m, &p, &nrhs, A.data(), &m, b.data(), &ldb, sv.data(), &rcond, &rank, work.data(),
          &lwork, iwork.data(), &info);
  if (info < 0) throw std::logic_error("dgelsd: argument " + std::to_string(-info) + " is invalid");
  if (info > 0) throw std::runtime_error("dgelsd: the SVD did not converge");
  UniformSpline sp;
  sp.degree = degree;
  sp.cells = cells;
  sp.lo = lo;
  sp.hi = hi;
  sp.coef.assign(b.begin(), b.begin() + p);
  return sp;
}

// ---- one baseline as a sweep row -------------------------------------------------------------

namespace {
template <class Fn>
double rmse(const Fn& y, const std::vector<double>& x, const std::vector<double>& f) {
  double sse = 0.0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    const double e = y(x[k]) - f[k];
    sse += e * e;
  }
  return x.empty() ? 0.0 : std::sqrt(sse / x.size());
}
}  // namespace

NetResult run_baseline(const Model& m, int width, const Dataset& ds, const TargetFn& f) {
  if (m.method == Method::kTrain) throw std::logic_error("run_baseline: " + model_name(m) + " is trained");
  if (ds.d != 1) throw std::invalid_argument(model_name(m) + " is defined for 1D inputs only");
  const auto t0 = std::chrono::steady_clock::now();
  NetResult r;
  r.status = Status::kConverged;
  r.newton_steps = 0;
  if (m.method == Method::kConstruct) {
    r.params = construct_network(m.arch, width, ds.lo[0], ds.hi[0], f);
    const Shape s{m.arch, Act::kRelu, 1, width};
    // Measured through the shared network math: the construction is a real network.
    auto y = [&](double x) { return evaluate(s, r.params.data(), &x); };
    r.train_rmse = rmse(y, ds.x_train, ds.y_train);
    r.test_rmse = rmse(y, ds.x_test, ds.y_test);
    r.reason = "construction";
  } else {
    const UniformSpline sp = fit_spline(m.degree, width, ds.lo[0], ds.hi[0], ds.x_train, ds.y_train);
    r.train_rmse = rmse(sp, ds.x_train, ds.y_train);
    r.test_rmse = rmse(sp, ds.x_test, ds.y_test);
    r.params = sp.coef;
    r.reason = "least squares";
  }
  if (!std::isfinite(r.train_rmse) || !std::isfinite(r.test_rmse)) {
    r.status = Status::kFailed;
    r.reason = "non-finite";
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace gs
