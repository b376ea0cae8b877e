// The untrained baselines: the paper's mlp and glu constructions, the spline networks, and
// least-squares splines in a uniform B-spline basis (LAPACK dgelsd).
#include "gpusweep/solver/baselines.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "gpusweep/model/model.h"
#include "gpusweep/model/network.h"
#include "solver/lapack.h"

namespace gs {

// ---- constructions ---------------------------------------------------------------------------

std::vector<double> paper_network(Arch arch, int n, double lo, double hi, const TargetFn& f) {
  if (arch != Arch::kMlp && arch != Arch::kGlu)
    throw std::invalid_argument(std::string("the paper has no construction for ") + arch_name(arch));
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

// ---- spline networks ---------------------------------------------------------------------

namespace {
// Neurons whose kink lies left of [lo, hi] and that, with d0, give the spline's global
// polynomial: one while it splits into d0 + (x - e) S(x) with S of degree K <= 1 (any
// linear S is one factor), two from K = 2 on, where S = (S + lam T) - lam T with T real-rooted.
int outer_neurons(Arch arch) {
  return arch_family(arch) == Family::kGpoly || arch_order(arch) <= 1 ? 1 : 2;
}

// The roots wr + i wi of the polynomial sum_r c[r] u^r (c.back() != 0), from the eigenvalues
// of its companion matrix (LAPACK dgeev). A complex pair comes as two consecutive roots, the
// one with wi > 0 first.
void poly_roots(const std::vector<double>& c, std::vector<double>* wr, std::vector<double>* wi) {
  const int k = static_cast<int>(c.size()) - 1;
  wr->assign(k, 0.0);
  wi->assign(k, 0.0);
  if (k == 0) return;
  std::vector<double> C(static_cast<std::size_t>(k) * k, 0.0);
  for (int i = 0; i < k; ++i) {
    C[static_cast<std::size_t>(k - 1) * k + i] = -c[i] / c[k];  // last column
    if (i > 0) C[static_cast<std::size_t>(i - 1) * k + i] = 1.0;  // subdiagonal
  }
  const char no = 'N';
  int one = 1, info = 0, lwork = -1;
  double wquery = 0.0, vdummy = 0.0;
  dgeev_(&no, &no, &k, C.data(), &k, wr->data(), wi->data(), &vdummy, &one, &vdummy, &one, &wquery, &lwork,
         &info);
  if (info != 0) throw std::logic_error("dgeev workspace query: info " + std::to_string(info));
  lwork = static_cast<int>(wquery);
  std::vector<double> work(std::max(1, lwork));
  dgeev_(&no, &no, &k, C.data(), &k, wr->data(), wi->data(), &vdummy, &one, &vdummy, &one, work.data(),
         &lwork, &info);
  if (info != 0) throw std::runtime_error("dgeev: info " + std::to_string(info));
}

bool real_roots(const std::vector<double>& c, std::vector<double>* roots) {
  std::vector<double> wi;
  poly_roots(c, roots, &wi);
  for (double v : wi)
    if (v != 0.0) return false;
  return true;
}
}  // namespace

int spline_network_min_width(Arch arch) { return outer_neurons(arch); }

int spline_network_cells(Arch arch, int n) { return n - outer_neurons(arch) + 1; }

namespace {
// gpoly:K's spline network from gated:K's with the same cells: each neuron's factors and D
// multiplied out into its polynomial, and gated:K's outer neurons (which share one gate)
// summed into one.
std::vector<double> gpoly_spline_network(Arch arch, int n, double lo, double hi, const std::vector<double>& x,
                                         const std::vector<double>& y) {
  const int K = arch_order(arch);
  const Arch ga = make_arch(Family::kGated, K);
  const int outer = outer_neurons(ga);
  const int gn = n + outer - 1;  // spline_network_cells(ga, gn) == n
  const std::vector<double> gth = spline_network(ga, gn, lo, hi, x, y);
  const Shape gsh{ga, Act::kRelu, 1, gn}, s{arch, Act::kRelu, 1, n};
  std::vector<double> th(num_params(s), 0.0);
  for (int i = 0; i < gn; ++i) {
    const int j = i < outer ? 0 : i - outer + 1;  // the gpoly neuron it goes into
    th[factor_offset(s, 0) + j] = gth[factor_offset(gsh, 0) + i];
    th[factor_offset(s, 0) + n + j] = gth[factor_offset(gsh, 0) + gn + i];
    std::vector<double> p(1, gth[d_offset(gsh) + i]);  // D prod_b (U_b x + u_b), ascending powers
    for (int b = 1; b <= K; ++b) {
      const double U = gth[factor_offset(gsh, b) + i], u = gth[factor_offset(gsh, b) + gn + i];
      std::vector<double> next(p.size() + 1, 0.0);
      for (std::size_t q = 0; q < p.size(); ++q) {
        next[q] += u * p[q];
        next[q + 1] += U * p[q];
      }
      p = next;
    }
    for (int q = 0; q <= K; ++q) th[d_offset(s) + j * (K + 1) + q] += p[q];
  }
  th.back() = gth.back();
  return th;
}
}  // namespace

std::vector<double> spline_network(Arch arch, int n, double lo, double hi, const std::vector<double>& x,
                                   const std::vector<double>& y) {
  if (arch_family(arch) == Family::kGpoly) {
    if (n < spline_network_min_width(arch))
      throw std::invalid_argument(std::string(arch_name(arch)) + "-construct: width " + std::to_string(n) +
                                  " is below 1");
    return gpoly_spline_network(arch, n, lo, hi, x, y);
  }
  if (arch_family(arch) != Family::kGated)
    throw std::invalid_argument(std::string("no spline construction for ") + arch_name(arch));
  const int K = arch_order(arch), deg = K + 1;
  const int outer = outer_neurons(arch);
  if (n < spline_network_min_width(arch))
    throw std::invalid_argument(std::string(arch_name(arch)) + "-construct: width " + std::to_string(n) +
                                " is below " + std::to_string(outer) + ", the neurons its global polynomial needs");
  const int cells = spline_network_cells(arch, n);
  const UniformSpline sp = fit_spline(deg, cells, lo, hi, x, y);
  const double L = hi - lo, h = L / cells;

  // Forward differences of the B-spline coefficients: the r-th derivative of the spline on
  // cell j is sum_q diff[r][j + q] N^(deg - r)_q(t) / h^r, and the deg-th is constant per cell.
  std::vector<std::vector<double>> diff(deg + 1);
  diff[0] = sp.coef;
  for (int r = 1; r <= deg; ++r) {
    const auto& p = diff[r - 1];
    for (std::size_t q = 0; q + 1 < p.size(); ++q) diff[r].push_back(p[q + 1] - p[q]);
  }
  double fact = 1.0;  // deg!
  for (int r = 2; r <= deg; ++r) fact *= r;
  // Taylor coefficients at lo of the first cell's polynomial: a[r] = P^(r)(lo) / r!.
  std::vector<double> a(deg + 1);
  double rf = 1.0, hr = 1.0;
  for (int r = 0; r <= deg; ++r) {
    if (r > 0) {
      rf *= r;
      hr *= h;
    }
    double N[kMaxSplineDegree + 1];
    uniform_bspline_basis(deg - r, 0.0, N);
    double v = 0.0;
    for (int q = 0; q <= deg - r; ++q) v += diff[r][q] * N[q];
    a[r] = v / hr / rf;
  }

  const Shape s{arch, Act::kRelu, 1, n};
  std::vector<double> th(num_params(s), 0.0);
  // Neuron i: relu(G x + g) times K factors U_b x + u_b, times D_i.
  auto set_gate = [&](int i, double G, double g) {
    th[factor_offset(s, 0) + i] = G;
    th[factor_offset(s, 0) + n + i] = g;
  };
  auto set_factor = [&](int i, int b, double U, double u) {
    th[factor_offset(s, b) + i] = U;
    th[factor_offset(s, b) + n + i] = u;
  };
  // Interior knots: the jumps of the deg-th derivative, each the truncated power
  // (x - t)_+^deg: every factor has its root at the knot and the last one the coefficient.
  for (int j = 1; j < cells; ++j) {
    const double coef = (diff[deg][j] - diff[deg][j - 1]) / hr / fact;
    const double knot = lo + j * h;
    const int i = outer + j - 1;
    set_gate(i, 1.0, -knot);
    for (int b = 1; b <= K; ++b) {
      const double scale = b == K ? coef : 1.0;
      set_factor(i, b, scale, -scale * knot);
    }
    th[d_offset(s) + i] = K == 0 ? coef : 1.0;
  }

  // The global polynomial P in u = (x - e) / L, e = lo - L / 2, so that u is in [1/2, 3/2] on
  // the range: P = sum_r beta_r u^r with x - lo = L (u - 1/2). Then P = beta_0 + u S(u), and
  // every outer neuron has the gate relu(u).
  std::vector<double> beta(deg + 1, 0.0);
  for (int r = 0; r <= deg; ++r) {
    // a_r (x - lo)^r = a_r L^r (u - 1/2)^r, expanded binomially.
    double Lr = std::pow(L, r), binom = 1.0;
    for (int q = 0; q <= r; ++q) {
      if (q > 0) binom = binom * (r - q + 1) / q;
      beta[q] += a[r] * Lr * binom * std::pow(-0.5, r - q);
    }
  }
  const double e = lo - 0.5 * L;
  std::vector<double> S(beta.begin() + 1, beta.end());  // degree K
  th.back() = beta[0];
  for (int k = 0; k < outer; ++k) {
    set_gate(k, 1.0 / L, -e / L);
    th[d_offset(s) + k] = 1.0;
  }
  // A factor that is (u - rho) in x; the last factor of a neuron is scaled by its coefficient.
  auto set_root_factor = [&](int i, int b, double rho, double scale) {
    set_factor(i, b, scale / L, -scale * (e / L + rho));
  };
  if (K == 0) {
    th[d_offset(s)] = S[0];
  } else if (K == 1) {
    set_factor(0, 1, S[1] / L, S[0] - S[1] * e / L);
  } else {
    // S = (S + lam T) - lam T with T real-rooted and lam large enough that S + lam T is
    // real-rooted too. T is S with each complex pair of roots a +- ib moved to a +- b: for one
    // pair S + lam T is real-rooted from lam = 1 on, and T is as large as S, so the two
    // neurons cancel little. Where S has (numerically) lost its degree, as for data of a
    // lower degree, its roots run off to infinity; there, and wherever the first T finds no
    // split (a repeated complex pair gives T a double root), T is the product over the
    // Chebyshev points of [1/2, 3/2], scaled to S. lam starts at 1/8 and doubles, then
    // doubles once more for margin.
    double smax = 0.0;
    for (double c : S) smax = std::max(smax, std::fabs(c));
    std::vector<double> roots, sum(K + 1), T;
    double cT = 0.0, lam = 0.0;
    std::vector<double> tau;
    auto make_T = [&](bool from_roots) {
      tau.clear();
      if (from_roots) {
        std::vector<double> wr, wi;
        poly_roots(S, &wr, &wi);
        for (int j = 0; j < K; ++j) {
          if (wi[j] == 0.0) tau.push_back(wr[j]);
          if (wi[j] > 0.0) {
            tau.push_back(wr[j] + wi[j]);
            tau.push_back(wr[j] - wi[j]);
          }
        }
        cT = S[K];
      } else {
        for (int j = 0; j < K; ++j) tau.push_back(1.0 + 0.5 * std::cos(M_PI * (j + 0.5) / K));
        cT = smax > 0.0 ? smax : 1.0;
      }
      T.assign(1, cT);
      for (int j = 0; j < K; ++j) {
        std::vector<double> next(T.size() + 1, 0.0);
        for (std::size_t q = 0; q < T.size(); ++q) {
          next[q + 1] += T[q];
          next[q] -= tau[j] * T[q];
        }
        T = next;
      }
    };
    auto split = [&](double l) {
      for (int q = 0; q <= K; ++q) sum[q] = S[q] + l * T[q];
      return sum[K] != 0.0 && real_roots(sum, &roots);
    };
    auto search = [&] {
      for (lam = 0.125; lam < 1e30; lam *= 2.0)
        if (split(lam)) {
          // Once more for margin: roots that just turned real may sit close together.
          if (split(2.0 * lam))
            lam *= 2.0;
          else
            split(lam);
          return true;
        }
      return false;
    };
    const bool full_degree = std::fabs(S[K]) > 1e-8 * smax;
    bool found = false;
    if (full_degree) {
      make_T(true);
      found = search();
    }
    if (!found) {
      make_T(false);
      found = search();
    }
    if (!found)
      throw std::runtime_error(std::string(arch_name(arch)) + "-construct at width " + std::to_string(n) +
                               ": no real-rooted split of the spline's global polynomial");
    for (int b = 1; b <= K; ++b) {
      set_root_factor(0, b, roots[b - 1], b == K ? sum[K] : 1.0);
      set_root_factor(1, b, tau[b - 1], b == K ? -lam * cT : 1.0);
    }
  }
  return th;
}

}  // namespace gs
