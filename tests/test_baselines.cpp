// The untrained baselines: the paper's constructions are real networks that are exact where
// they are built to be, splines reproduce polynomials of their degree, both have the textbook
// slopes, and they ride along in a sweep with the trained archs.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/analysis/fit.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/model.h"
#include "gpusweep/solver/baselines.h"
#include "gpusweep/train/sweep.h"
#include "lsq_reference.h"

namespace gs {
namespace {

TargetFn pointwise(double (*f)(double)) {
  return [f](const std::vector<double>& xs) {
    std::vector<double> y(xs.size());
    for (std::size_t k = 0; k < xs.size(); ++k) y[k] = f(xs[k]);
    return y;
  };
}

double sin4(double x) { return std::sin(4 * x); }
double expx(double x) { return std::exp(x); }

// Test values compared with a tolerance that scales with the reference.
void expect_close(double got, double want, double tol, const std::string& where) {
  EXPECT_LE(std::abs(got - want), tol * (1.0 + std::abs(want)))
      << where << ": got " << got << " want " << want;
}

TEST(PaperConstruction, MlpInterpolatesTheTargetAtTheCellBoundaries) {
  for (const auto& [lo, hi, f] : {std::tuple{-1.0, 1.0, &sin4}, std::tuple{0.5, 3.0, &expx}}) {
    for (int n : {1, 2, 7, 40}) {
      const Shape s{Arch::kMlp, Act::kRelu, 1, n};
      const auto th = paper_network(Arch::kMlp, n, lo, hi, pointwise(f));
      ASSERT_EQ(static_cast<int>(th.size()), num_params(s));
      for (int k = 0; k <= n; ++k) {
        const double x = k == n ? hi : lo + k * (hi - lo) / n;
        expect_close(evaluate(s, th.data(), &x), f(x), 1e-13,
                     "n=" + std::to_string(n) + " k=" + std::to_string(k));
      }
      // Between the boundaries it is the chord, not f: the error there is what the slope measures.
      const double mid = lo + 0.5 * (hi - lo) / n;
      const double chord = 0.5 * (f(lo) + f(lo + (hi - lo) / n));
      expect_close(evaluate(s, th.data(), &mid), chord, 1e-13, "chord n=" + std::to_string(n));
    }
  }
}

TEST(PaperConstruction, GluMatchesTheTargetAtEachCellsMiddleAndRightEnd) {
  for (const auto& [lo, hi, f] : {std::tuple{-1.0, 1.0, &sin4}, std::tuple{0.5, 3.0, &expx}}) {
    for (int n : {1, 2, 7, 40}) {
      const Shape s{Arch::kGlu, Act::kRelu, 1, n};
      const auto th = paper_network(Arch::kGlu, n, lo, hi, pointwise(f));
      ASSERT_EQ(static_cast<int>(th.size()), num_params(s));
      const double h = (hi - lo) / n;
      for (int k = 0; k < n; ++k) {
        const double left = lo + k * h, right = k + 1 == n ? hi : lo + (k + 1) * h;
        for (double x : {left, 0.5 * (left + right), right})
          expect_close(evaluate(s, th.data(), &x), f(x), 1e-12,
                       "n=" + std::to_string(n) + " cell " + std::to_string(k) + " x=" + std::to_string(x));
      }
    }
  }
}

TEST(PaperConstruction, ReproducesPolynomialsOfItsOwnDegreeEverywhere) {
  auto line = [](double x) { return 0.3 - 1.7 * x; };
  auto parabola = [](double x) { return 0.3 - 1.7 * x + 2.2 * x * x; };
  for (int n : {1, 5, 16}) {
    const Shape sm{Arch::kMlp, Act::kRelu, 1, n}, sg{Arch::kGlu, Act::kRelu, 1, n};
    const auto tm = paper_network(Arch::kMlp, n, -1, 1, pointwise(+line));
    const auto tg = paper_network(Arch::kGlu, n, -1, 1, pointwise(+parabola));
    for (int k = 0; k <= 100; ++k) {
      const double x = -1.0 + 0.02 * k;
      expect_close(evaluate(sm, tm.data(), &x), line(x), 1e-13, "mlp x=" + std::to_string(x));
      expect_close(evaluate(sg, tg.data(), &x), parabola(x), 1e-13, "glu x=" + std::to_string(x));
    }
  }
}

TEST(PaperConstruction, OnlyMlpAndGluHaveOne) {
  EXPECT_THROW(paper_network(Arch::kGqu, 4, -1, 1, pointwise(&sin4)), std::invalid_argument);
  EXPECT_THROW(paper_network(Arch::kMlp, 0, -1, 1, pointwise(&sin4)), std::invalid_argument);
  EXPECT_THROW(paper_network(Arch::kGlu, 4, 1, 1, pointwise(&sin4)), std::invalid_argument);
}

std::vector<double> random_points(int m, double lo, double hi, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> x(m);
  for (auto& v : x) v = lo + (hi - lo) * rng.uniform();
  return x;
}

TEST(Spline, ReproducesAPolynomialOfItsDegreeExactly) {
  const double lo = -1.3, hi = 2.1;
  const auto x = random_points(500, lo, hi, 7);
  std::vector<double> grid;
  for (int k = 0; k <= 200; ++k) grid.push_back(lo + (hi - lo) * k / 200);
  const double c[] = {0.4, -1.1, 0.7, 0.25, -0.3, 0.15};  // p_k(x) = sum_{i <= k} c_i x^i
  static_assert(sizeof(c) / sizeof(c[0]) >= kMaxSplineDegree + 1, "a coefficient per degree");
  auto poly = [&](int deg, double v) {
    double y = 0.0;
    for (int i = deg; i >= 0; --i) y = y * v + c[i];
    return y;
  };
  for (int deg = 1; deg <= kMaxSplineDegree; ++deg) {
    std::vector<double> y;
    for (double v : x) y.push_back(poly(deg, v));
    for (int cells : {1, 4, 13, 60}) {
      const UniformSpline sp = fit_spline(deg, cells, lo, hi, x, y);
      ASSERT_EQ(static_cast<int>(sp.coef.size()), cells + deg);
      double sse = 0.0;
      for (double v : grid) sse += std::pow(sp(v) - poly(deg, v), 2);
      EXPECT_LT(std::sqrt(sse / grid.size()), 1e-13) << "degree " << deg << " cells " << cells;
      // One degree more is beyond it.
      if (deg < kMaxSplineDegree && cells == 4) {
        std::vector<double> y2;
        for (double v : x) y2.push_back(poly(deg + 1, v));
        const UniformSpline sp2 = fit_spline(deg, cells, lo, hi, x, y2);
        double e2 = 0.0;
        for (double v : grid) e2 += std::pow(sp2(v) - poly(deg + 1, v), 2);
        EXPECT_GT(std::sqrt(e2 / grid.size()), 1e-4) << "degree " << deg;
      }
    }
  }
}

TEST(Spline, FewerPointsThanCoefficientsGiveAFiniteInterpolant) {
  // 5 points, 23 coefficients and empty cells: dgelsd's minimum-norm solution passes
  // through every point and stays finite everywhere.
  const std::vector<double> x = {-0.9, -0.2, 0.1, 0.55, 0.95};
  std::vector<double> y;
  for (double v : x) y.push_back(sin4(v));
  const UniformSpline sp = fit_spline(3, 20, -1, 1, x, y);
  for (std::size_t k = 0; k < x.size(); ++k)
    expect_close(sp(x[k]), y[k], 1e-12, "point " + std::to_string(k));
  for (int k = 0; k <= 100; ++k) EXPECT_TRUE(std::isfinite(sp(-1.0 + 0.02 * k)));
  EXPECT_THROW(fit_spline(0, 4, -1, 1, x, y), std::invalid_argument);
  EXPECT_THROW(fit_spline(kMaxSplineDegree + 1, 4, -1, 1, x, y), std::invalid_argument);
  EXPECT_THROW(fit_spline(2, 4, 1, -1, x, y), std::invalid_argument);
}

// A baseline-only sweep over sin4, widths 8..96: the slopes the paper and the textbooks give.
struct Slopes {
  double vs_width, vs_params;
};

std::map<std::string, Slopes> baseline_slopes() {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin4", 2000, 0));
  spec.archs = parse_archs("mlp-paper,glu-paper,spline1,spline2,spline3");
  spec.acts = {Act::kRelu};
  for (int w = 8; w <= 96; w += 2) spec.widths.push_back(w);
  const auto jobs = make_jobs(spec);
  CpuBackend backend(1);
  const auto results = run_sweep(spec, jobs, backend);
  std::map<std::string, Slopes> out;
  for (const auto& f : fit_groups(spec, jobs, results, 8)) {
    EXPECT_TRUE(f.ok) << f.arch << ": " << f.note;
    EXPECT_GT(f.vs_width.r2, 0.99) << f.arch;
    out[f.arch] = {f.vs_width.slope, f.vs_params.slope};
  }
  return out;
}

TEST(BaselineSlopes, ConstructionsAndSplinesOnSin4) {
  const auto s = baseline_slopes();
  ASSERT_EQ(s.size(), 5u);
  EXPECT_NEAR(s.at("mlp-paper").vs_width, -2.0, 0.1);
  EXPECT_NEAR(s.at("mlp-paper").vs_params, -2.0, 0.1);
  EXPECT_NEAR(s.at("glu-paper").vs_width, -3.0, 0.15);
  EXPECT_NEAR(s.at("glu-paper").vs_params, -3.0, 0.15);
  // Against the number of cells n. Against P = n + degree the fitted slope over 8..96 is
  // steeper (the offset shrinks log P's range), and tends to the same value as n grows.
  EXPECT_NEAR(s.at("spline1").vs_width, -2.0, 0.15);
  EXPECT_NEAR(s.at("spline2").vs_width, -3.0, 0.15);
  EXPECT_NEAR(s.at("spline3").vs_width, -4.0, 0.15);
  for (const char* k : {"spline1", "spline2", "spline3"}) EXPECT_LT(s.at(k).vs_params, s.at(k).vs_width) << k;
}

TEST(BaselineSweep, MixesWithTrainedArchsAndSkipsTheDriver) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin4", 200, 0));
  spec.archs = parse_archs("mlp,glu-construct,spline2");
  spec.acts = {Act::kRelu, Act::kSilu};
  spec.widths = {3, 6};
  spec.seeds = 3;
  spec.train.schedule = parse_schedule("D,U,G");
  const auto jobs = make_jobs(spec);
  // mlp: 2 acts x 2 widths x 3 seeds; each baseline: one job per width.
  ASSERT_EQ(jobs.size(), 12u + 2u + 2u);
  int baselines = 0;
  for (const Job& j : jobs)
    if (j.method != Method::kTrain) {
      ++baselines;
      EXPECT_EQ(j.seed, 0);
    }
  EXPECT_EQ(baselines, 4);
  int chunked = 0;
  for (const auto& c : plan_chunks(jobs, {1}, std::size_t{1} << 30, [](int) { return std::size_t{1}; })) {
    for (int j : c) EXPECT_EQ(jobs[j].method, Method::kTrain);
    chunked += static_cast<int>(c.size());
  }
  EXPECT_EQ(chunked, 12);
  CpuBackend backend(2);
  const auto results = run_sweep(spec, jobs, backend);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Model m = jobs[j].model();
    if (m.method == Method::kTrain) {
      EXPECT_GT(results[j].newton_steps, 0);
      continue;
    }
    EXPECT_EQ(results[j].status, Status::kConverged);
    EXPECT_EQ(results[j].newton_steps, 0);
    EXPECT_EQ(results[j].reason, m.method == Method::kSpline ? "least squares" : "construction");
    EXPECT_EQ(static_cast<int>(results[j].params.size()), model_num_params(m, 1, jobs[j].width));
    EXPECT_GT(results[j].test_rmse, 0.0);
  }
  const auto fits = fit_groups(spec, jobs, results, 3);
  ASSERT_EQ(fits.size(), 4u);
  EXPECT_EQ(fits[2].arch, "glu-construct");
  EXPECT_EQ(fits[2].activation, "relu");
  EXPECT_EQ(fits[2].params, (std::vector<int>{16, 31}));
  EXPECT_EQ(fits[3].arch, "spline2");
  EXPECT_EQ(fits[3].activation, "none");
  EXPECT_EQ(fits[3].params, (std::vector<int>{5, 8}));
}

TEST(BaselineSweep, RefusesWhatTheDataCannotGive) {
  SweepSpec spec;
  Dataset csv = make_target_dataset("sin4", 50, 0);
  csv.name = "points.csv";
  csv.expression.clear();  // as if read from a file: no f between the points
  spec.datasets.push_back(csv);
  spec.acts = {Act::kRelu};
  spec.widths = {4};
  spec.archs = parse_archs("spline3");
  EXPECT_EQ(make_jobs(spec).size(), 1u);  // splines need only the points
  spec.archs = parse_archs("mlp-construct");
  EXPECT_EQ(make_jobs(spec).size(), 1u);  // the spline network too
  spec.archs = parse_archs("mlp-paper");
  EXPECT_THROW(make_jobs(spec), std::invalid_argument);
  spec.archs = parse_archs("gated:3-construct");  // below its smallest width, 2
  spec.widths = {1, 4};
  EXPECT_THROW(make_jobs(spec), std::invalid_argument);
  spec.widths = {4};
  spec.datasets[0] = make_target_dataset("sin4", 200000, 0);
  spec.archs = parse_archs("spline1");
  spec.widths = {2000};  // 200000 x 2001 doubles: more than a spline fit may take
  EXPECT_THROW(make_jobs(spec), std::invalid_argument);
}


// ---- spline networks -----------------------------------------------------------------------

// The least-squares spline of degree p on `cells` uniform cells, independently of
// fit_spline: the recursive Cox-de Boor definition of B_{j,p} on the extended knot vector
// t_j = lo + (j - p) h (the last cell closed at hi), solved by the SVD. Returns its RMSE on
// the points.
double bspline_rmse(int p, int cells, double lo, double hi, const std::vector<double>& x,
                    const std::vector<double>& y) {
  const double h = (hi - lo) / cells;
  const int m = cells + p, rows = static_cast<int>(x.size());
  auto t = [&](int j) { return lo + (j - p) * h; };
  std::function<double(int, int, double)> B = [&](int j, int q, double v) -> double {
    if (q == 0) {
      const bool last = j == cells + p - 1;  // [t_j, hi]
      return (v >= t(j) && (v < t(j + 1) || (last && v <= t(j + 1)))) ? 1.0 : 0.0;
    }
    return (v - t(j)) / (t(j + q) - t(j)) * B(j, q - 1, v) + (t(j + q + 1) - v) / (t(j + q + 1) - t(j + 1)) * B(j + 1, q - 1, v);
  };
  std::vector<double> A(static_cast<std::size_t>(rows) * m);
  for (int k = 0; k < rows; ++k)
    for (int j = 0; j < m; ++j) A[k + static_cast<std::size_t>(j) * rows] = B(j, p, x[k]);
  const auto c = svd_solve(rows, m, A, y);
  double sse = 0.0;
  for (int k = 0; k < rows; ++k) {
    double v = -y[k];
    for (int q = 0; q < m; ++q) v += A[k + static_cast<std::size_t>(q) * rows] * c[q];
    sse += v * v;
  }
  return std::sqrt(sse / rows);
}

TEST(SplineNetwork, EqualsAnIndependentLeastSquaresSplineOnTheSameKnots) {
  const double lo = -1.0, hi = 1.0;
  const auto x = random_points(3000, lo, hi, 11);
  std::vector<double> y;
  for (double v : x) y.push_back(std::sin(4 * v) + 0.3 * std::exp(v));
  for (Family fam : {Family::kGated, Family::kGpoly})
  for (int K = 0; K < kMaxFactors; ++K) {
    const Arch a = make_arch(fam, K);
    for (int n : {spline_network_min_width(a), K + 3, 12, 20}) {
      const Shape s{a, Act::kRelu, 1, n};
      const auto th = spline_network(a, n, lo, hi, x, y);
      ASSERT_EQ(static_cast<int>(th.size()), num_params(s));
      double sse = 0.0;
      for (std::size_t k = 0; k < x.size(); ++k) sse += std::pow(evaluate(s, th.data(), &x[k]) - y[k], 2);
      const double got = std::sqrt(sse / x.size());
      const int cells = spline_network_cells(a, n);
      EXPECT_EQ(cells, K <= 1 || fam == Family::kGpoly ? n : n - 1);
      const double want = bspline_rmse(K + 1, cells, lo, hi, x, y);
      // 1e-9 relative, down to the floor every residual y - f of O(1) values carries: a few
      // ulps of 1 (gated:4 at width 20 fits to 1e-7, where 1e-9 relative is 1e-16).
      EXPECT_NEAR(got, want, 1e-9 * want + 1e-15) << arch_name(a) << " n=" << n;
      // And pointwise it is fit_spline's fit of the same degree on the same cells, to the
      // rounding of a degree-(K + 1) polynomial held in monomials of u in [1/2, 3/2].
      const UniformSpline sp = fit_spline(K + 1, cells, lo, hi, x, y);
      for (int k = 0; k <= 50; ++k) {
        const double v = lo + (hi - lo) * k / 50;
        EXPECT_NEAR(evaluate(s, th.data(), &v), sp(v), 1e-10) << arch_name(a) << " n=" << n << " x=" << v;
      }
    }
  }
}

TEST(SplineNetwork, ReproducesAPolynomialOfItsDegreeAndItsKnotsAreItsGates) {
  const double lo = 0.5, hi = 3.0;
  const auto x = random_points(800, lo, hi, 5);
  const double c[] = {0.4, -1.1, 0.7, 0.25, -0.3, 0.15};
  for (int K = 0; K < kMaxFactors; ++K) {
    const Arch a = make_arch(Family::kGated, K);
    std::vector<double> y;
    for (double v : x) {
      double p = 0.0;
      for (int i = K + 1; i >= 0; --i) p = p * v + c[i];
      y.push_back(p);
    }
    const int n = K + 9;
    const Shape s{a, Act::kRelu, 1, n};
    const auto th = spline_network(a, n, lo, hi, x, y);
    double worst = 0.0;
    for (std::size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(evaluate(s, th.data(), &x[k]) - y[k]));
    EXPECT_LT(worst, 1e-10) << arch_name(a);
    // One kink (two from K = 2 on) left of the range, the others on the uniform interior
    // knots, and every interior neuron's factors with their root at its kink.
    const int cells = spline_network_cells(a, n), outer = K <= 1 ? 1 : 2;
    EXPECT_EQ(cells, n - outer + 1);
    const double h = (hi - lo) / cells;
    int outside = 0;
    std::vector<double> inner;
    for (int i = 0; i < n; ++i) {
      const double knot = -th[factor_offset(s, 0) + n + i] / th[factor_offset(s, 0) + i];
      if (knot < lo || knot > hi) {
        ++outside;
        continue;
      }
      inner.push_back(knot);
      for (int b = 1; b < num_factors(a); ++b) {
        const double W = th[factor_offset(s, b) + i], w = th[factor_offset(s, b) + n + i];
        if (W != 0.0) EXPECT_NEAR(-w / W, knot, 1e-12 * (1 + std::abs(knot))) << arch_name(a);
      }
    }
    EXPECT_EQ(outside, outer) << arch_name(a);
    std::sort(inner.begin(), inner.end());
    ASSERT_EQ(static_cast<int>(inner.size()), cells - 1);
    for (int j = 0; j < cells - 1; ++j) EXPECT_NEAR(inner[j], lo + (j + 1) * h, 1e-12) << arch_name(a);
  }
  EXPECT_THROW(spline_network(Arch::kGqu, 1, lo, hi, x, x), std::invalid_argument);
  EXPECT_NO_THROW(spline_network(Arch::kGlu, 1, lo, hi, x, x));
}

// Data of a lower degree than the spline's: the fit's leading coefficient is then rounding
// noise, whose roots run off to infinity; the global polynomial must still come out right.
TEST(SplineNetwork, DataOfALowerDegreeStillGiveTheSpline) {
  const double lo = -1.0, hi = 1.0;
  for (int seed = 0; seed < 20; ++seed) {
    const auto x = random_points(500, lo, hi, 100 + seed);
    for (int K = 2; K < kMaxFactors; ++K) {
      const Arch a = make_arch(Family::kGated, K);
      std::vector<double> y;
      for (double v : x) y.push_back(K == 4 ? 1.0 + std::pow(v, 4) : v * v);
      for (int n = spline_network_min_width(a); n <= 12; ++n) {
        const Shape s{a, Act::kRelu, 1, n};
        const auto th = spline_network(a, n, lo, hi, x, y);
        const UniformSpline sp = fit_spline(K + 1, spline_network_cells(a, n), lo, hi, x, y);
        double worst = 0.0;
        for (int k = 0; k <= 40; ++k) {
          const double v = lo + (hi - lo) * k / 40;
          worst = std::max(worst, std::fabs(evaluate(s, th.data(), &v) - sp(v)));
        }
        EXPECT_LT(worst, 1e-9) << arch_name(a) << " n=" << n << " seed " << seed;
      }
    }
  }
}

// The construction's own sweep, as a user runs it: gated:2-construct against spline3 on sin4.
TEST(SplineNetwork, GquConstructionScalesAsTheCubicSpline) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin4", 4000, 0));
  spec.archs = parse_archs("gated:2-construct,spline3");
  spec.acts = {Act::kRelu};
  for (int w = 8; w <= 96; w += 8) spec.widths.push_back(w);
  const auto jobs = make_jobs(spec);
  CpuBackend backend(1);
  const auto results = run_sweep(spec, jobs, backend);
  // Width n holds n - 1 cells, and width 8 (7 cells) is short of the asymptotic n^-4: fitted
  // over all widths the slope is -4.3, from width 24 on the cubic spline's -4.
  const auto fits = fit_groups(spec, jobs, results, 24);
  ASSERT_EQ(fits.size(), 2u);
  ASSERT_TRUE(fits[0].ok) << fits[0].note;
  EXPECT_EQ(fits[0].arch, "gqu-construct");
  EXPECT_NEAR(fits[0].vs_width.slope, -4.0, 0.15);
  EXPECT_NEAR(fits[1].vs_width.slope, -4.0, 0.15);
  for (std::size_t k = 0; k < fits[0].widths.size(); ++k) {
    ASSERT_EQ(fits[0].widths[k], fits[1].widths[k]);
    if (fits[0].widths[k] >= 48)
      EXPECT_LT(fits[0].median_rmse[k], 1.5 * fits[1].median_rmse[k]) << "width " << fits[0].widths[k];
  }
  // Effective parameters: 4 n + 1 for the relu gqu, all n + 3 coefficients for the spline
  // (at every width, the fit's first among them).
  EXPECT_EQ(fits[0].fit_widths.front(), 24);
  ASSERT_EQ(fits[0].widths[2], 24);
  EXPECT_EQ(fits[0].effective_params[2], 4 * 24 + 1);
  EXPECT_EQ(fits[1].effective_params[2], 24 + 3);
  EXPECT_EQ(fits[0].effective_params.front(), 4 * 8 + 1);
}

TEST(SplineInit, TrainingFromTheSplineNetworkOnlyImprovesOnIt) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 2000, 0));
  spec.archs = parse_archs("gqu,gqu-construct,gpoly:2,gpoly:2-construct,spline3");
  spec.acts = {Act::kRelu};
  spec.widths = {8, 16, 32};
  spec.init = InitKind::kSpline;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*60");
  const auto jobs = make_jobs(spec);
  CpuBackend backend(2);
  const auto results = run_sweep(spec, jobs, backend);
  std::map<std::pair<std::string, int>, NetResult> by;
  for (std::size_t j = 0; j < jobs.size(); ++j) by[{model_name(jobs[j].model()), jobs[j].width}] = results[j];
  for (const std::string arch : {"gqu", "gpoly:2"})
    for (int w : spec.widths) {
      const NetResult& t = by.at({arch, w});
      const NetResult& c = by.at({arch + "-construct", w});
      EXPECT_NE(t.status, Status::kFailed) << arch << " " << w << ": " << t.reason;
      EXPECT_GT(t.newton_steps, 0);
      EXPECT_LE(t.train_rmse, c.train_rmse * (1 + 1e-12)) << arch << " width " << w;
      if (w >= 16) EXPECT_LT(t.test_rmse, 1.3 * by.at({"spline3", w}).test_rmse) << arch << " width " << w;
    }
  // gpoly:2's construction holds n cells, gqu's n - 1: at the same width it is the better
  // spline, and exactly spline3's.
  for (int w : spec.widths) {
    EXPECT_LT(by.at({"gpoly:2-construct", w}).train_rmse, by.at({"gqu-construct", w}).train_rmse);
    EXPECT_NEAR(by.at({"gpoly:2-construct", w}).train_rmse, by.at({"spline3", w}).train_rmse,
                1e-9 * by.at({"spline3", w}).train_rmse);
  }
  // The start is the construction: without a step, the trained network is it.
  Dataset& ds = spec.datasets[0];
  const Shape s{Arch::kGqu, Act::kRelu, 1, 16};
  std::vector<double> th(num_params(s));
  init_params(s, InitKind::kSpline, ds, 7, th.data());
  EXPECT_EQ(th, spline_network(Arch::kGqu, 16, ds.lo[0], ds.hi[0], ds.x_train, ds.y_train));
  // It is a relu construction: a smooth activation is refused before anything runs.
  spec.acts = {Act::kSilu};
  EXPECT_THROW(make_jobs(spec), std::invalid_argument);
}

// gated:4 on sin4 at width 100 fits to 3e-12: there a re-solve of the linear parameters in
// the network's own basis (truncated powers of degree 5) loses digits that the B-spline fit
// kept, and the ALL stage must not end worse than it began. (On 4000 points the trial's QR
// solve keeps those digits and the stage beats its start; on 1000 it does not.)
TEST(SplineInit, AnIllConditionedStartIsKeptWhenTrainingCannotBeatIt) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin4", 1000, 0));
  // The gqu first, so that gated:4 sits at an offset in the batch.
  spec.archs = parse_archs("gqu,gated:4,gqu-construct,gated:4-construct");
  spec.acts = {Act::kRelu};
  spec.widths = {100};
  spec.init = InitKind::kSpline;
  spec.train.schedule = parse_schedule("D,U,Q,R,S,G,ALL*5");
  const auto jobs = make_jobs(spec);
  CpuBackend backend(2);
  const auto results = run_sweep(spec, jobs, backend);
  std::map<std::string, NetResult> by;
  for (std::size_t j = 0; j < jobs.size(); ++j) by[model_name(jobs[j].model())] = results[j];
  ASSERT_EQ(by.size(), 4u);
  EXPECT_LT(by.at("gated:4-construct").train_rmse, 1e-11);
  for (const char* a : {"gqu", "gated:4"}) {
    const NetResult& t = by.at(a);
    EXPECT_NE(t.status, Status::kFailed) << a << ": " << t.reason;
    EXPECT_LE(t.train_rmse, by.at(std::string(a) + "-construct").train_rmse * (1 + 1e-9)) << a << ": " << t.reason;
  }
  EXPECT_NE(by.at("gated:4").reason.find("kept the ALL stage's start"), std::string::npos) << by.at("gated:4").reason;
  // The gqu's re-solve is accurate: it trains on from it.
  EXPECT_EQ(by.at("gqu").reason.find("kept"), std::string::npos) << by.at("gqu").reason;
}

TEST(ModelNames, RoundTripAndNearMissesFail) {
  for (const auto& name : model_names()) {
    Model m;
    ASSERT_TRUE(parse_model(name, &m)) << name;
    EXPECT_EQ(model_name(m), name);
  }
  const auto all = parse_archs("mlp,glu,gqu,mlp-construct,glu-construct,spline1,spline2,spline3,spline2");
  EXPECT_EQ(all.size(), 8u);
  for (const char* bad : {"spline", "spline0", "spline6", "Spline2", "spline 2", "spline2 ",
                          "mlp-constructed", "mlpconstruct", "gqu-paper", "construct", "gated:5",
                          "gated:", "gated:-1", "gated:1x", "gated:01", "gated:2-paper-construct",
                          "glu_construct", ""}) {
    Model m;
    EXPECT_FALSE(parse_model(bad, &m)) << bad;
    EXPECT_THROW(parse_archs(std::string("mlp,") + bad), std::invalid_argument) << bad;
  }
  // Family names are aliases of the same models, which keep their short names.
  const auto fam = parse_archs("gated:0,gated:1,gated:2,gated:2-construct,gated:1-paper,gated:3,gated:4-construct");
  ASSERT_EQ(fam.size(), 7u);
  EXPECT_EQ(model_name(fam[0]), "mlp");
  EXPECT_EQ(model_name(fam[2]), "gqu");
  EXPECT_EQ(model_name(fam[3]), "gqu-construct");
  EXPECT_EQ(model_name(fam[4]), "glu-paper");
  EXPECT_EQ(model_name(fam[5]), "gated:3");
  EXPECT_EQ(model_name(fam[6]), "gated:4-construct");
  EXPECT_EQ(model_num_params(Model(Method::kSpline, Arch::kMlp, 3), 1, 10), 13);
  EXPECT_EQ(model_num_params(Model(Method::kConstruct, Arch::kGlu, 0), 1, 10), 51);
  EXPECT_STREQ(model_act_name(Model(Method::kConstruct, Arch::kMlp, 0), Act::kSilu), "relu");
  EXPECT_STREQ(model_act_name(Model(Method::kSpline, Arch::kMlp, 1), Act::kSilu), "none");
  EXPECT_STREQ(model_act_name(Model(Arch::kGlu), Act::kSilu), "silu");
}

}  // namespace
}  // namespace gs
