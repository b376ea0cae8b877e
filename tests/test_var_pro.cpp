// Variable projection (var_pro.h) against independent references: the reduced gradient and
// Hessian against finite differences of the projected loss phi(b) = min_c L(b, c), with the
// minimum over c taken by LAPACK's SVD solver on the explicit Jacobian; the Gauss-Newton part
// at a wide network against the SVD projection of the explicit Jacobian; thin neurons pushed
// out of the domain; the ALL stage reaching, in fewer steps, a loss no worse than the
// alternating method's; stationarity against finite differences of the loss; a target that is
// itself a network, reached to the rounding floor, at width 200 in a handful of steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/host_solver.h"
#include "gpusweep/solver/least_squares.h"
#include "gpusweep/solver/solve.h"
#include "gpusweep/solver/tally.h"
#include "gpusweep/solver/var_pro.h"
#include "gpusweep/train/driver.h"
#include "gpusweep/train/sweep.h"
#include "lsq_reference.h"
#include "solver/lapack.h"
#include "train_one.h"

namespace gs {
namespace {

// theta with its linear columns (linear_columns) at their least-squares optimum.
std::vector<double> project(const Shape& s, const std::vector<double>& th, const Dataset& ds) {
  return reference_solve(s, th, linear_columns(s), ds);
}

double phi(const Shape& s, const std::vector<double>& th, const Dataset& ds) {
  const std::vector<double> p = project(s, th, ds);
  return train_mse(s, p.data(), ds);
}

// The reduced system of one network at theta, as the CPU backend builds it: the exact Hessian's
// Jacobi scale (and, off the relu 1D path, the Hessian itself), then HostSolver::var_pro_system.
// main: the QR of the main linear columns of the trial that made th (HostSolver::var_pro_trial's
// keep), for the system to start from (MainQr).
void reduced_at(const Shape& s, const std::vector<double>& th, const Dataset& ds, ReducedSystem* sys,
                std::vector<double>* scale, const MainQr* main = nullptr) {
  Batch batch;
  batch.datasets.push_back(&ds);
  batch.add(s, 0, th.data());
  CpuBackend be(1);
  be.load(batch);
  double loss = 0.0, sg = 0.0;
  be.assemble({0}, Block::kAll, HessianKind::kExact, &loss, &sg);
  std::vector<double> H, g;
  be.read_system(0, &H, &g);
  const int m = num_params(s);
  scale->assign(m, 0.0);
  jacobi_scale(m, H.data(), g.data(), scale->data());
  HostSolver host;
  host.load(batch);
  HostSolver::Workspace w;
  host.var_pro_system(0, th.data(), H.data(), scale->data(), sys, w, nullptr, main);
}

// The trial without a step at th (thin kinks pushed out, the linear parameters solved again),
// and the QR of its main linear columns in *main. scale, when given: the Jacobi scale whose
// left-out linear columns that QR takes last (HostSolver::var_pro_trial).
std::vector<double> trial_at(const Shape& s, const std::vector<double>& th, const Dataset& ds, MainQr* main,
                             const double* scale = nullptr) {
  Batch batch;
  batch.datasets.push_back(&ds);
  batch.add(s, 0, th.data());
  HostSolver host;
  host.load(batch);
  HostSolver::Workspace w;
  std::vector<double> t(th.size());
  host.var_pro_trial(0, th.data(), nullptr, t.data(), w, 1.0, nullptr, main, scale);
  return t;
}

// Central differences of phi against the reduced gradient and Hessian, each step 1e-4 in the
// units where the reduced Hessian has a unit diagonal (a direction that phi hardly sees keeps a
// step of bounded size). step_ok(k, h) may veto a step (a relu kink that would cross a point).
// With via_trial, th is first replaced by the trial at th, and the system starts from the QR of
// that trial's main linear columns (it must: sys.reused).
// flip, when 0 or 1: whether the trial's QR must have taken the rows in reverse order.
void check_against_phi(const Shape& s, std::vector<double> th, const Dataset& ds, const std::string& where,
                       double rel, bool via_trial = false, int flip = -1) {
  ReducedSystem sys;
  std::vector<double> scale;
  MainQr main;
  if (via_trial) th = trial_at(s, th, ds, &main);
  if (via_trial && flip >= 0) EXPECT_EQ(main.flip, flip == 1) << where;
  reduced_at(s, th, ds, &sys, &scale, via_trial ? &main : nullptr);
  EXPECT_EQ(sys.reused, via_trial) << where;
  const int kb = static_cast<int>(sys.index.size());
  ASSERT_GT(kb, 0) << where;
  std::vector<double> h(kb), unit(kb);
  double umax = 0.0;
  for (int k = 0; k < kb; ++k) {
    unit[k] = std::sqrt(std::fabs(sys.A[k + static_cast<std::size_t>(k) * kb]));
    umax = std::fmax(umax, unit[k]);
  }
  ASSERT_GT(umax, 0.0) << where;
  for (int k = 0; k < kb; ++k) {
    unit[k] = std::fmax(unit[k], 1e-3 * umax);
    h[k] = 1e-4 * scale[sys.index[k]] / unit[k];
  }
  auto at = [&](int k, double dk, int l, double dl) {
    std::vector<double> t(th);
    if (k >= 0) t[sys.index[k]] += dk;
    if (l >= 0) t[sys.index[l]] += dl;
    return phi(s, t, ds);
  };
  const double f0 = phi(s, th, ds);
  double gmax = 0.0;
  for (double v : sys.gr) gmax = std::fmax(gmax, std::fabs(v));
  for (int k = 0; k < kb; ++k) {
    const double sk = scale[sys.index[k]];
    const double fd_g = (at(k, h[k], -1, 0) - at(k, -h[k], -1, 0)) / (2 * h[k]);
    EXPECT_NEAR(fd_g * sk, sys.gr[k], rel * std::fabs(sys.gr[k]) + 1e-6 * gmax) << where << " gradient " << k;
    for (int l = 0; l <= k; ++l) {
      const double sl = scale[sys.index[l]];
      double fd_h;
      if (l == k) {
        fd_h = (at(k, h[k], -1, 0) - 2 * f0 + at(k, -h[k], -1, 0)) / (h[k] * h[k]);
      } else {
        fd_h = (at(k, h[k], l, h[l]) - at(k, h[k], l, -h[l]) - at(k, -h[k], l, h[l]) +
                at(k, -h[k], l, -h[l])) / (4 * h[k] * h[l]);
      }
      EXPECT_NEAR(fd_h * sk * sl, sys.A[k + static_cast<std::size_t>(l) * kb], 5 * rel * unit[k] * unit[l])
          << where << " Hessian " << k << "," << l;
    }
  }
}

// Smooth activations (no kinks), so phi is smooth and its finite differences are clean: the
// general path (streaming QR of the Jacobian rows, the residual curvature from the Hessian).
TEST(VarPro, ReducedSystemIsTheDerivativeOfTheProjectedLoss) {
  // Few neurons on a target they fit only roughly: the optimal coefficients stay moderate, and
  // phi's differences stand well above the rounding of its least-squares solves.
  const Dataset one = make_target_dataset("runge9", 400, 3);
  const Dataset two = make_target_dataset("sin_sin", 300, 4);
  struct C {
    Shape s;
    const Dataset* ds;
  };
  const C cs[] = {{{Arch::kMlp, Act::kSilu, 1, 3}, &one},
                  {{Arch::kGlu, Act::kSilu, 1, 2}, &one},
                  {{Arch::kGqu, Act::kGelu, 1, 2}, &one},
                  {{Arch::kGlu, Act::kSilu, 2, 2}, &two}};
  for (const C& c : cs) {
    std::vector<double> th(num_params(c.s));
    init_params(c.s, InitKind::kRandom, *c.ds, 7, th.data());
    th = project(c.s, th, *c.ds);
    check_against_phi(c.s, th, *c.ds, std::string(arch_name(c.s.arch)) + " d=" + std::to_string(c.s.d), 1e-3);
  }
}

// The saddle-free step of an indefinite reduced system (the eigendecomposition kept as its
// tridiagonal reduction, ReducedSystem) against the step written out from LAPACK's dsyevd of
// the unit-diagonal matrix, z = V (|ev| + lambda)^-1 V^T (-T gr), at a first try and at two
// damping retries on the kept factors, with the model's decrease and curvature.
TEST(VarPro, SaddleFreeStepMatchesTheEigendecomposition) {
  const int kb = 37, m = kb + 3;
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  ReducedSystem sys;
  for (int k = 0; k < kb; ++k) sys.index.push_back(k + 2);
  sys.A.assign(static_cast<std::size_t>(kb) * kb, 0.0);
  sys.gr.resize(kb);
  std::vector<double> scale(m, 0.0);
  for (int k = 0; k < m; ++k) scale[k] = std::exp(normal(rng));
  for (int c = 0; c < kb; ++c) {
    sys.gr[c] = normal(rng);
    for (int r = c; r < kb; ++r) {
      const double v = normal(rng) * (r == c ? 4.0 : 1.0) * std::exp(0.5 * (c % 5));
      sys.A[r + static_cast<std::size_t>(c) * kb] = sys.A[c + static_cast<std::size_t>(r) * kb] = v;
    }
  }
  // The reference: T A T (T = diag(1/sqrt|A_kk|)), its eigenpairs by dsyevd.
  std::vector<double> t(kb), V(static_cast<std::size_t>(kb) * kb), ev(kb);
  for (int k = 0; k < kb; ++k) t[k] = 1.0 / std::sqrt(std::fabs(sys.A[k + static_cast<std::size_t>(k) * kb]));
  for (int c = 0; c < kb; ++c)
    for (int r = 0; r < kb; ++r) V[r + static_cast<std::size_t>(c) * kb] = t[r] * sys.A[r + static_cast<std::size_t>(c) * kb] * t[c];
  int lwork = -1, liwork = -1, iq = 0, info = 0;
  double wq = 0.0;
  dsyevd_("V", "L", &kb, V.data(), &kb, ev.data(), &wq, &lwork, &iq, &liwork, &info);
  lwork = static_cast<int>(wq);
  liwork = iq;
  std::vector<double> wk(lwork);
  std::vector<int> iwk(liwork);
  dsyevd_("V", "L", &kb, V.data(), &kb, ev.data(), wk.data(), &lwork, iwk.data(), &liwork, &info);
  ASSERT_EQ(info, 0);
  ASSERT_LT(ev[0], 0.0);  // indefinite: the saddle-free path
  std::vector<double> work;
  for (double lambda : {1e-3, 0.5, 20.0}) {
    std::vector<double> step(m, 1.0), want(m, 0.0), y(kb, 0.0);
    StepModel model;
    ASSERT_EQ(reduced_solve(m, scale.data(), sys, lambda, work, step.data(), &model), 0);
    ASSERT_EQ(sys.mode, ReducedSystem::kEigen);
    double pred = 0.0, curvature = 0.0;
    for (int k = 0; k < kb; ++k) {
      double v = 0.0;  // (V^T (-T gr))_k
      for (int r = 0; r < kb; ++r) v -= V[r + static_cast<std::size_t>(k) * kb] * t[r] * sys.gr[r];
      y[k] = v / (std::fabs(ev[k]) + lambda);
      pred += v * y[k] - 0.5 * ev[k] * y[k] * y[k];
      curvature += ev[k] * y[k] * y[k];
    }
    double norm = 0.0, diff = 0.0;
    for (int r = 0; r < kb; ++r) {
      double z = 0.0;
      for (int k = 0; k < kb; ++k) z += V[r + static_cast<std::size_t>(k) * kb] * y[k];
      want[sys.index[r]] = scale[sys.index[r]] * t[r] * z;
    }
    for (int q = 0; q < m; ++q) {
      diff = std::hypot(diff, step[q] - want[q]);
      norm = std::hypot(norm, want[q]);
    }
    EXPECT_LT(diff, 1e-10 * norm) << "lambda " << lambda;
    EXPECT_NEAR(model.pred, pred, 1e-10 * std::fabs(pred)) << "lambda " << lambda;
    EXPECT_NEAR(model.curvature, curvature, 1e-9 * std::fabs(pred)) << "lambda " << lambda;
  }
}

// The step's model (StepModel: its slope and curvature along the step, and the decrease it
// predicts) against central differences of phi along the step, on the smooth networks above,
// at small and large damping, from a random start (indefinite reduced Hessians: eigenvectors,
// the saddle-free step) and near the minimum 30 steps reach (positive definite ones: Cholesky).
TEST(VarPro, StepModelIsTheProjectedLossAlongTheStep) {
  const Dataset one = make_target_dataset("runge9", 400, 3);
  const Dataset two = make_target_dataset("sin_sin", 300, 4);
  struct C {
    Shape s;
    const Dataset* ds;
  };
  const C cs[] = {{{Arch::kMlp, Act::kSilu, 1, 3}, &one},
                  {{Arch::kGlu, Act::kSilu, 1, 2}, &one},
                  {{Arch::kGqu, Act::kGelu, 1, 2}, &one},
                  {{Arch::kGlu, Act::kSilu, 2, 2}, &two}};
  int modes[3] = {0, 0, 0};
  for (const C& c : cs) {
    for (int trained : {0, 1}) {
      std::vector<double> th(num_params(c.s));
      // (a start whose 30 steps keep every coefficient moderate: some others lead a silu neuron
      // to a near line with coefficients near 1e5, where phi's differences are rounding)
      init_params(c.s, InitKind::kRandom, *c.ds, 11, th.data());
      th = project(c.s, th, *c.ds);
      if (trained) {
        // Near a minimum, where the reduced Hessian is positive definite.
        th = train_one(c.s, *c.ds, th, "ALL*30");
        // ... and a little off it, so that the step has somewhere to go.
        for (std::size_t q = 0; q < th.size(); ++q) th[q] *= 1.0 + 0.01 * std::sin(q + 1.0);
        th = project(c.s, th, *c.ds);
      }
      ReducedSystem sys;
      std::vector<double> scale;
      reduced_at(c.s, th, *c.ds, &sys, &scale);
      for (double lambda : {1e-3, 1.0}) {
        const std::string where = std::string(arch_name(c.s.arch)) + " d=" + std::to_string(c.s.d) +
                                  (trained ? " trained" : "") + " lambda " + std::to_string(lambda);
        std::vector<double> step(num_params(c.s)), work;
        StepModel m;
        ASSERT_EQ(reduced_solve(num_params(c.s), scale.data(), sys, lambda, work, step.data(), &m), 0) << where;
        ++modes[sys.mode];
        // phi along the step, a short stretch of it (the model is quadratic; phi is not).
        const double h = 1e-4;
        auto at = [&](double a) {
          std::vector<double> t(th);
          for (std::size_t q = 0; q < t.size(); ++q) t[q] += a * step[q];
          return phi(c.s, t, *c.ds);
        };
        const double f0 = phi(c.s, th, *c.ds), fp = at(h), fm = at(-h);
        const double slope = (fp - fm) / (2 * h), curvature = (fp - 2 * f0 + fm) / (h * h);
        EXPECT_NEAR(m.slope, slope, 1e-4 * std::fabs(slope)) << where;
        EXPECT_NEAR(m.curvature, curvature, 2e-3 * std::fabs(curvature) + 1e-6 * std::fabs(slope)) << where;
        EXPECT_NEAR(m.pred, -(m.slope + 0.5 * m.curvature), 1e-12 * std::fabs(m.slope)) << where;
        EXPECT_LT(m.slope, 0.0) << where;
      }
    }
  }
  EXPECT_GT(modes[ReducedSystem::kCholesky], 0);
  EXPECT_GT(modes[ReducedSystem::kEigen], 0);
}

// Relu on 1D inputs (compress_relu1d and the residual curvature from prefix sums): phi is
// smooth between the training points, so the differences are taken with kinks that stay
// between the same two points (a few points, and steps far below their spacing).
TEST(VarPro, Relu1dReducedSystemIsTheDerivativeOfTheProjectedLoss) {
  const Dataset ds = make_target_dataset("invcos2", 60, 2);
  // Gates as drawn, then every neuron active right of its kink (its linear columns are zero on
  // the rows left of it: the trial's QR takes the rows in reverse order, MainQr::flip), then
  // every one active left of it.
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int dir : {0, 1, -1}) {
      const Shape s{a, Act::kRelu, 1, 4};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, 5, th.data());
      // Kinks inside, away from the points: midway between two of them.
      std::vector<double> xs(ds.x_train);
      std::sort(xs.begin(), xs.end());
      for (int i = 0; i < s.n; ++i) {
        // (Active left: the kinks mirrored, so that each neuron sees as many points.)
        const int at = dir == -1 ? static_cast<int>(xs.size()) - 14 - 11 * i : 12 + 11 * i;
        double& G = th[factor_offset(s, 0) + i];
        if (dir != 0) G = dir * std::fabs(G);
        const double kink = 0.5 * (xs[at] + xs[at + 1]);
        th[factor_offset(s, 0) + s.n + i] = -G * kink;
      }
      th = project(s, th, ds);
      const std::string where = std::string(arch_name(a)) + " relu, gates " + std::to_string(dir);
      check_against_phi(s, th, ds, where, 2e-3);
      check_against_phi(s, th, ds, where + ", from the trial's QR", 2e-3, true, dir == 0 ? -1 : dir == 1);
    }
}

// Dependent global columns: c + 2 neurons active on all the data make, with d0, c + 3 global
// columns that span c + 1 polynomials. The global block's pivoted QR reorders them and leaves
// two out; the reduced system must still be the derivative of phi (finite differences).
TEST(VarPro, DependentGlobalColumnsKeepTheDerivativeOfTheProjectedLoss) {
  const Dataset ds = make_target_dataset("invcos2", 60, 2);
  std::vector<double> xs(ds.x_train);
  std::sort(xs.begin(), xs.end());
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu}) {
    const int c = column_degree(a);
    const Shape s{a, Act::kRelu, 1, c + 4};
    std::vector<double> th(num_params(s));
    init_params(s, InitKind::kMaso, ds, 5, th.data());
    for (int i = 0; i < s.n; ++i) {
      double& G = th[factor_offset(s, 0) + i];
      const bool outside = i < c + 2;
      if (outside) G = std::fabs(G);  // active right of a kink left of the domain
      const int at = 15 + 20 * (i - (c + 2));
      const double kink = outside ? ds.lo[0] - 0.2 * (i + 1) : 0.5 * (xs[at] + xs[at + 1]);
      th[factor_offset(s, 0) + s.n + i] = -G * kink;
    }
    th = project(s, th, ds);
    const std::string where = std::string(arch_name(a)) + ", c + 2 neurons outside";
    ReducedSystem sys;
    std::vector<double> scale;
    reduced_at(s, th, ds, &sys, &scale);
    EXPECT_FALSE(sys.pivoted) << where;
    check_against_phi(s, th, ds, where, 2e-3);
  }
}

// At a wide network the linear columns are ill-conditioned (cond(J_c) near 1e7 at gqu width
// 50), and the Schur complement of the Hessian loses the Gauss-Newton part to rounding; the QR
// keeps it. Reference: the explicit Jacobian of every training point, its nonlinear columns
// projected off the linear ones by LAPACK's SVD solver (dgelsd, one right-hand side per column).
TEST(VarPro, ReducedGaussNewtonMatchesTheSvdProjectionAtWidth50) {
  const Dataset ds = make_target_dataset("invcos2", 3000, 0);
  const Shape s{Arch::kGqu, Act::kRelu, 1, 50};
  const int m = num_params(s);
  // A trained-like network: the default schedule's linear stages from the MASO start.
  std::vector<double> th(m);
  init_params(s, InitKind::kMaso, ds, 1, th.data());
  th = train_one(s, ds, th, "D,U,Q,G,ALL*3");
  ReducedSystem sys;
  std::vector<double> scale;
  reduced_at(s, th, ds, &sys, &scale);  // for the scale and the roles
  // The trial at th, its QR taking last the linear columns that the Jacobi scale leaves out (as
  // the CPU backend's trial does, HostVarPro::trial); the test runs at the trial's parameters,
  // and checks the system that starts from that QR (MainQr) as well as the system's own.
  MainQr main;
  th = trial_at(s, th, ds, &main, scale.data());
  reduced_at(s, th, ds, &sys, &scale);
  std::vector<Role> role(m);
  std::vector<double> xs, ys;
  {
    std::vector<int> order(ds.n_train());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return ds.x_train[a] < ds.x_train[b]; });
    for (int k : order) {
      xs.push_back(ds.x_train[k]);
      ys.push_back(ds.y_train[k]);
    }
  }
  const Points1d pts{xs.data(), ds.n_train(), ds.lo[0], ds.hi[0]};
  var_pro_roles(s, th.data(), &pts, role.data());
  VarProColumns cols;
  var_pro_columns(s, th.data(), role.data(), scale.data(), &pts, &cols);
  const int n = ds.n_train();
  std::vector<double> r(n);
  for (int k = 0; k < n; ++k) r[k] = evaluate(s, th.data(), &xs[k]) - ys[k];
  LsSystem js;
  compress_relu1d(s, th.data(), cols.all(), xs.data(), r.data(), n, &js);
  const int kc = static_cast<int>(cols.lin.size()), kb = static_cast<int>(cols.non.size());
  const std::vector<double> zero(static_cast<std::size_t>(kc + kb) * kb, 0.0);
  ReducedSystem gn, from_trial;
  reduced_system(js, cols, scale.data(), 2.0 / n, n, zero, &gn);
  ASSERT_EQ(gn.index, cols.non);
  reduced_system(js, cols, scale.data(), 2.0 / n, n, zero, &from_trial, &main);
  // The system's main columns are a proper prefix of the trial's (a linear column left out by
  // the Jacobi scale goes last in the trial), so the first of them are taken from its QR.
  EXPECT_TRUE(from_trial.reused);
  EXPECT_GT(main.cols.size(), cols.lin.size() - cols.global);

  // The reference, in the same scaled units: sqrt(2/N) J diag(scale).
  const double f = std::sqrt(2.0 / n);
  std::vector<double> Jc(static_cast<std::size_t>(n) * kc), Jb(static_cast<std::size_t>(n) * (kb + 1)), row(m);
  for (int k = 0; k < n; ++k) {
    jacobian_row(s, th.data(), &xs[k], row.data());
    for (int j = 0; j < kc; ++j) Jc[k + static_cast<std::size_t>(j) * n] = f * scale[cols.lin[j]] * row[cols.lin[j]];
    for (int j = 0; j < kb; ++j) Jb[k + static_cast<std::size_t>(j) * n] = f * scale[cols.non[j]] * row[cols.non[j]];
    Jb[k + static_cast<std::size_t>(kb) * n] = f * r[k];
  }
  std::vector<double> A(Jc), B(Jb), sv(kc);
  const double rcond = kLsRcondEps * n;
  int rank = 0, info = 0, lwork = -1, iw = 0;
  const int nrhs = kb + 1;
  double wq = 0.0;
  dgelsd_(&n, &kc, &nrhs, A.data(), &n, B.data(), &n, sv.data(), &rcond, &rank, &wq, &lwork, &iw, &info);
  lwork = static_cast<int>(wq);
  std::vector<double> work(lwork);
  std::vector<int> iwork(std::max(1, iw));
  dgelsd_(&n, &kc, &nrhs, A.data(), &n, B.data(), &n, sv.data(), &rcond, &rank, work.data(), &lwork, iwork.data(),
          &info);
  ASSERT_EQ(info, 0);
  // cond(J_c) is large here, which is the point of the test.
  EXPECT_GT(sv[0] / sv[rank - 1], 1e6) << "rank " << rank;
  // P J_b = J_b - J_c X, X the first kc rows of B.
  std::vector<double> P(Jb);
  const double one = 1.0, minus = -1.0;
  dgemm_("N", "N", &n, &nrhs, &kc, &minus, Jc.data(), &n, B.data(), &n, &one, P.data(), &n);
  for (const ReducedSystem* got_sys : {&gn, &from_trial}) {
    double diff = 0.0, norm = 0.0, gdiff = 0.0, gnorm = 0.0;
    for (int c = 0; c < kb; ++c) {
      for (int q = 0; q < kb; ++q) {
        double v = 0.0;
        for (int k = 0; k < n; ++k) v += P[k + static_cast<std::size_t>(q) * n] * P[k + static_cast<std::size_t>(c) * n];
        const double got = got_sys->A[q + static_cast<std::size_t>(c) * kb];
        diff += (got - v) * (got - v);
        norm += v * v;
      }
      double v = 0.0;  // J_b^T P r
      for (int k = 0; k < n; ++k) v += P[k + static_cast<std::size_t>(c) * n] * P[k + static_cast<std::size_t>(kb) * n];
      gdiff += (got_sys->gr[c] - v) * (got_sys->gr[c] - v);
      gnorm += v * v;
    }
    const char* which = got_sys == &gn ? "own QR" : "from the trial's QR";
    EXPECT_LT(std::sqrt(diff / norm), 1e-6) << which;
    EXPECT_LT(std::sqrt(gdiff / gnorm), 1e-6) << which;
  }
}

// A reduced system starts from the QR of the trial that made its parameters (MainQr), and from
// no other: after the network's parameters move otherwise (add_params, here a middle factor,
// which changes the linear columns and keeps the runs of points), it factorizes its own.
TEST(VarPro, ASystemTakesTheTrialsQrOnlyAtTheTrialsParameters) {
  const Dataset ds = make_target_dataset("invcos2", 2000, 0);
  const Shape s{Arch::kGqu, Act::kRelu, 1, 12};
  const int m = num_params(s);
  std::vector<double> th(m);
  init_params(s, InitKind::kMaso, ds, 3, th.data());
  Batch batch;
  batch.datasets.push_back(&ds);
  batch.add(s, 0, th.data());
  CpuBackend be(1);
  be.load(batch);
  const std::vector<int> nets = {0};
  double loss = 0.0, sg = 0.0, trial = 0.0;
  const double lambda = 1e-3;
  int info = 0;
  StepModel model;
  SolverTally t;
  set_solver_tally(&t);
  be.assemble(nets, Block::kAll, HessianKind::kDiagonal, &loss, &sg);
  be.var_pro_trial(nets, false, &trial);
  be.var_pro_accept(nets);
  be.assemble(nets, Block::kAll, HessianKind::kDiagonal, &loss, &sg);
  be.var_pro_solve(nets, &lambda, &info, &model);
  const long long systems = t.systems, reused = t.reused_qr;
  std::vector<double> delta(m, 0.0);
  delta[factor_offset(s, 1)] = 1e-3 * std::fabs(th[factor_offset(s, 1)]) + 1e-6;
  be.add_params(nets, delta.data());
  be.assemble(nets, Block::kAll, HessianKind::kDiagonal, &loss, &sg);
  be.var_pro_solve(nets, &lambda, &info, &model);
  set_solver_tally(nullptr);
  EXPECT_EQ(systems, 1);
  EXPECT_EQ(reused, 1);
  EXPECT_EQ(t.systems, 2);
  EXPECT_EQ(t.reused_qr, 1);
}

// Sorted copies of a 1D dataset's training points.
void sorted_points(const Dataset& ds, std::vector<double>* xs, std::vector<double>* ys) {
  std::vector<int> order(ds.n_train());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return ds.x_train[a] < ds.x_train[b]; });
  xs->resize(order.size());
  ys->resize(order.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    (*xs)[k] = ds.x_train[order[k]];
    (*ys)[k] = ds.y_train[order[k]];
  }
}

// A neuron whose kink leaves two training points beyond it is thin: the trial moves its kink
// past the end of the domain, where it is one polynomial on all of the data (its active side
// held the rest), and solves the linear parameters; dgelsd on the explicit Jacobian there is
// the reference.
TEST(VarPro, ThinNeuronIsPushedOutOfTheDomain) {
  const Dataset ds = make_target_dataset("invcos2", 2000, 5);
  std::vector<double> xs, ys;
  sorted_points(ds, &xs, &ys);
  const int npts = ds.n_train();
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu}) {
    const Shape s{a, Act::kRelu, 1, 8};
    const int m = num_params(s);
    std::vector<double> th(m);
    init_params(s, InitKind::kMaso, ds, 1, th.data());
    const int i = 3;
    const double G = -1.0, kink = 0.5 * (xs[npts - 3] + xs[npts - 2]);  // active on the left
    th[factor_offset(s, 0) + i] = G;
    th[factor_offset(s, 0) + s.n + i] = -G * kink;
    const Points1d pts{xs.data(), npts, ds.lo[0], ds.hi[0]};
    ASSERT_EQ(kink_place(s, th.data(), pts, i), EdgeKind::kThin);
    Batch batch;
    batch.datasets.push_back(&ds);
    batch.add(s, 0, th.data());
    CpuBackend be(1);
    be.load(batch);
    double loss = 0.0;
    be.var_pro_trial({0}, false, &loss);
    be.var_pro_accept({0});
    std::vector<double> got;
    be.read_params(got);
    EXPECT_EQ(kink_place(s, got.data(), pts, i), EdgeKind::kOutside) << arch_name(a);
    EXPECT_GT(-got[factor_offset(s, 0) + s.n + i] / got[factor_offset(s, 0) + i], ds.hi[0]) << arch_name(a);
    // The reference: the pushed-out gate, every linear column, dgelsd.
    std::vector<double> ref(th);
    ref[factor_offset(s, 0) + s.n + i] = got[factor_offset(s, 0) + s.n + i];
    ref = reference_solve(s, ref, linear_columns(s), ds);
    const double want = train_mse(s, ref.data(), ds);
    EXPECT_NEAR(loss, want, 1e-8 * want) << arch_name(a);
    EXPECT_NEAR(train_mse(s, got.data(), ds), want, 1e-8 * want) << arch_name(a);
  }
}

// The side a thin kink leaves by is the one of the fewer points, not the nearer half of the
// domain: with the domain reaching far beyond the data on the left, a kink two points from the
// data's left end still leaves on the left.
TEST(VarPro, ThinNeuronLeavesOnTheSideOfTheFewerPoints) {
  Dataset ds = make_target_dataset("invcos2", 2000, 5);
  std::vector<double> xs, ys;
  sorted_points(ds, &xs, &ys);
  const double lo = ds.lo[0] - 3.0 * (ds.hi[0] - ds.lo[0]);  // midpoint left of every point
  const Points1d pts{xs.data(), ds.n_train(), lo, ds.hi[0]};
  ASSERT_LT(0.5 * (pts.lo + pts.hi), xs[0]);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu}) {
    const Shape s{a, Act::kRelu, 1, 8};
    std::vector<double> th(num_params(s));
    init_params(s, InitKind::kMaso, ds, 1, th.data());
    const int i = 3;
    const double G = 1.0, kink = 0.5 * (xs[1] + xs[2]);  // active on the right
    th[factor_offset(s, 0) + i] = G;
    th[factor_offset(s, 0) + s.n + i] = -G * kink;
    ASSERT_EQ(kink_place(s, th.data(), pts, i), EdgeKind::kThin);
    EXPECT_GE(push_out_thin(s, pts, th.data()), 1) << arch_name(a);
    const double moved = -th[factor_offset(s, 0) + s.n + i] / th[factor_offset(s, 0) + i];
    EXPECT_LT(moved, pts.lo) << arch_name(a);
    EXPECT_EQ(kink_place(s, th.data(), pts, i), EdgeKind::kOutside) << arch_name(a);
  }
}

// The ALL stage by variable projection against the alternating method with ten times the
// steps, from the same start, on the default target. The two may settle in different local
// minima, so the RMSEs compare statistically: median ratio within 5%, none worse than 1.5x.
// Every network ends converged (stationary), in a quarter of the steps or fewer in all.
TEST(VarPro, ConvergesInFewStepsToTheAlternatingMethodsLoss) {
  const Dataset ds = make_target_dataset("invcos2", 3000, 0);
  Batch batch;
  batch.datasets.push_back(&ds);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int w : {20, 30}) {
      const Shape s{a, Act::kRelu, 1, w};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, 0, th.data());
      batch.add(s, 0, th.data());
    }
  TrainOptions vp;
  vp.schedule = parse_schedule("D,U,Q,G,ALL*100");
  TrainOptions alt = vp;
  alt.schedule = parse_schedule("D,U,Q,G,ALL*1000");
  alt.variable_projection = false;
  CpuBackend b1(2), b2(2);
  b1.load(batch);
  b2.load(batch);
  const std::vector<NetResult> r1 = train(b1, batch, vp);
  const std::vector<NetResult> r2 = train(b2, batch, alt);
  std::vector<double> ratio;
  int steps1 = 0, steps2 = 0;
  for (int i = 0; i < batch.size(); ++i) {
    const std::string where = std::string(arch_name(batch.nets[i].shape.arch)) + " n=" +
                              std::to_string(batch.nets[i].shape.n);
    ratio.push_back(r1[i].train_rmse / r2[i].train_rmse);
    steps1 += r1[i].newton_steps;
    steps2 += r2[i].newton_steps;
    EXPECT_EQ(r1[i].status, Status::kConverged) << where << ": " << r1[i].reason;
    EXPECT_LE(r1[i].scaled_grad, vp.stationary_tol) << where << ": " << r1[i].reason;
    EXPECT_LT(ratio.back(), 1.5) << where << ": " << r1[i].train_rmse << " against " << r2[i].train_rmse;
    EXPECT_TRUE(std::isfinite(r1[i].rel_decrease)) << where;
  }
  std::sort(ratio.begin(), ratio.end());
  EXPECT_LT(0.5 * (ratio[2] + ratio[3]), 1.05);
  EXPECT_LT(steps1, steps2 / 4);
}

// The scaled gradient of the training loss from central differences of the loss itself
// (direct evaluation of every point, train_mse), each entry over the square root of its
// Gauss-Newton diagonal from the explicit Jacobian, and the whole over the RMSE: the quantity
// NetResult::scaled_grad reports, computed without the solver.
double fd_scaled_gradient(const Shape& s, const std::vector<double>& th, const Dataset& ds) {
  const int m = num_params(s), n = ds.n_train();
  std::vector<double> diag(m, 0.0), row(m);
  for (int k = 0; k < n; ++k) {
    jacobian_row(s, th.data(), &ds.x_train[static_cast<std::size_t>(k) * s.d], row.data());
    for (int q = 0; q < m; ++q) diag[q] += 2.0 * row[q] * row[q] / n;
  }
  const double loss = train_mse(s, th.data(), ds);
  double worst = 0.0;
  for (int q = 0; q < m; ++q) {
    if (!(diag[q] > 0.0)) continue;
    const double h = 1e-6 / std::sqrt(diag[q]);  // a step of 1e-6 in the Jacobi-scaled units
    std::vector<double> t(th);
    t[q] = th[q] + h;
    const double up = train_mse(s, t.data(), ds);
    t[q] = th[q] - h;
    const double down = train_mse(s, t.data(), ds);
    worst = std::fmax(worst, std::fabs(up - down) / (2 * h) / std::sqrt(diag[q]));
  }
  return worst / std::sqrt(loss);
}

// Every network the driver calls converged is stationary by the loss's own finite differences,
// and the scaled gradient it reports agrees with them.
TEST(VarPro, ConvergedIsStationaryByFiniteDifferences) {
  const Dataset ds = make_target_dataset("invcos2", 2000, 1);
  Batch batch;
  batch.datasets.push_back(&ds);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int w : {6, 12}) {
      const Shape s{a, Act::kRelu, 1, w};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, 2, th.data());
      batch.add(s, 0, th.data());
    }
  TrainOptions o;
  o.schedule = parse_schedule("D,U,Q,G,ALL*100");
  CpuBackend be(2);
  be.load(batch);
  const std::vector<NetResult> res = train(be, batch, o);
  std::vector<double> theta;
  be.read_params(theta);
  int converged = 0;
  for (int i = 0; i < batch.size(); ++i) {
    const NetDesc& nd = batch.nets[i];
    const std::string where = std::string(arch_name(nd.shape.arch)) + " n=" + std::to_string(nd.shape.n);
    if (res[i].status != Status::kConverged) continue;
    ++converged;
    const std::vector<double> th(theta.begin() + nd.offset, theta.begin() + nd.offset + num_params(nd.shape));
    const double fd = fd_scaled_gradient(nd.shape, th, ds);
    EXPECT_LE(fd, o.stationary_tol * 1.01 + 1e-7) << where << ": " << res[i].reason;
    EXPECT_NEAR(fd, res[i].scaled_grad, 0.01 * res[i].scaled_grad + 1e-7) << where;
  }
  EXPECT_GE(converged, batch.size() - 1);
}

// The rounding floor is the problem's: a network whose neurons cancel one another with huge
// terms gets no higher floor from them. Neuron 1 of a glu becomes a copy of neuron 0, and their
// output weights +-1e12: the two terms cancel exactly, so the loss is that of the other neurons
// (far above float64's floor for targets of 1), while the sum of the terms' magnitudes is about
// 1e12. Without the cap that network's floor would lie above its loss, and it would be called
// converged.
TEST(VarPro, RoundingFloorIsNotRaisedByCancellingNeurons) {
  const Dataset ds = make_target_dataset("invcos2", 2000, 1);
  const Shape s{Arch::kGlu, Act::kRelu, 1, 6};
  std::vector<double> th(num_params(s));
  init_params(s, InitKind::kMaso, ds, 2, th.data());
  th = project(s, th, ds);
  const double plain = rounding_floor(s, th.data(), ds);
  double fmax = 0.0;
  for (double y : ds.y_train) fmax = std::fmax(fmax, std::fabs(y));
  const double ulp = kFloorUlps * 2.220446049250313e-16, cap = ulp * ulp * kFloorTermCap * kFloorTermCap * fmax * fmax;
  EXPECT_GT(plain, 0.0);
  EXPECT_LT(plain, 1e-3 * cap);  // an ordinary network is far below the cap
  for (int b = 0; b < num_factors(s.arch); ++b) {
    th[factor_offset(s, b) + 1] = th[factor_offset(s, b) + 0];                  // W
    th[factor_offset(s, b) + s.n + 1] = th[factor_offset(s, b) + s.n + 0];      // w
  }
  th[d_offset(s) + 0] = 1e12;
  th[d_offset(s) + 1] = -1e12;
  const double loss = train_mse(s, th.data(), ds);
  const double floor = rounding_floor(s, th.data(), ds);
  EXPECT_GT(loss, 1e-12);
  EXPECT_LT(floor, 1e-6 * loss);
  EXPECT_LE(floor, cap * (1.0 + 1e-12));
  EXPECT_GT(floor, plain);
}

// A kink on a training point (x = 0, so that only the gate bias's derivative jumps there):
// kink_scaled_gradient against finite differences of the loss. Every parameter but that gate
// bias takes a central difference; the gate bias takes its two one-sided differences (the
// point on and off the active side), and the element of least size between them (zero where
// they have opposite signs: a corner). Both a corner and a kink that is not one are met.
TEST(VarPro, KinkOnATrainingPointTakesTheLeastOneSidedDerivative) {
  Dataset ds;
  ds.name = "grid";
  ds.d = 1;
  ds.lo = {-1.0};
  ds.hi = {1.0};
  for (int k = 0; k <= 200; ++k) {
    const double x = -1.0 + k / 100.0;  // x = 0 exactly at k = 100
    ds.x_train.push_back(x);
    ds.y_train.push_back(1.0 / (1.0 + std::pow(std::cos(3.14159 * x), 2)) + 0.3 * x * x * x);
    ds.x_test.push_back(x);
    ds.y_test.push_back(ds.y_train.back());
  }
  int corners = 0, plain = 0;
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int i = 1; i <= 3; ++i) {
      const Shape s{a, Act::kRelu, 1, 5};
      const std::string where = std::string(arch_name(a)) + " neuron " + std::to_string(i);
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, 3, th.data());
      // Neuron i's kink at x = 0, on the training point there; every other one midway between two.
      for (int j = 0; j < s.n; ++j) {
        const double G = th[factor_offset(s, 0) + j];
        const double kink = j == i ? 0.0 : (std::floor(-th[factor_offset(s, 0) + s.n + j] / G * 100.0) + 0.5) / 100.0;
        th[factor_offset(s, 0) + s.n + j] = -G * kink;
      }
      const int ig = factor_offset(s, 0) + s.n + i;
      th = project(s, th, ds);
      const int m = num_params(s), n = ds.n_train();
      std::vector<double> diag(m, 0.0), row(m);
      for (int k = 0; k < n; ++k) {
        jacobian_row(s, th.data(), &ds.x_train[k], row.data());
        for (int q = 0; q < m; ++q) diag[q] += 2.0 * row[q] * row[q] / n;
      }
      double dmax = 0.0;
      for (double v : diag) dmax = std::fmax(dmax, v);
      const double loss = train_mse(s, th.data(), ds);
      auto at = [&](int q, double d) {
        std::vector<double> t(th);
        t[q] += d;
        return train_mse(s, t.data(), ds);
      };
      double worst = 0.0;
      for (int q = 0; q < m; ++q) {
        if (!(diag[q] > kSingularRel * dmax)) continue;
        double slope;
        if (q == ig) {
          const double h = 1e-8;  // the kink moves 1e-8 / |G|, far less than the spacing 0.01
          const double up = (at(q, h) - loss) / h, down = (loss - at(q, -h)) / h;
          const bool corner = (up >= 0.0) == (down <= 0.0) && up * down <= 0.0;
          corners += corner;
          plain += !corner;
          slope = corner ? 0.0 : (std::fabs(up) < std::fabs(down) ? up : down);
        } else {
          const double h = 1e-6 / std::sqrt(diag[q]);
          slope = (at(q, h) - at(q, -h)) / (2 * h);
        }
        worst = std::fmax(worst, std::fabs(slope) / std::sqrt(diag[q]));
      }
      worst /= std::sqrt(loss);
      EXPECT_NEAR(kink_scaled_gradient(s, th.data(), ds, 1e-10), worst, 1e-4 * worst + 1e-9) << where;
    }
  EXPECT_GT(corners, 0);
  EXPECT_GT(plain, 0);
}

// A target that is itself a network of the arch and width: the teacher's knots spread over the
// domain (jittered), its other parameters N(0, 1). Training points uniform, test points a grid.
Dataset teacher_dataset(const Shape& s, const std::vector<double>& th, int points, std::uint64_t seed) {
  Dataset ds;
  ds.name = "teacher";
  ds.d = 1;
  ds.lo = {-1.0};
  ds.hi = {1.0};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int k = 0; k < points; ++k) {
    const double x = u(rng);
    ds.x_train.push_back(x);
    ds.y_train.push_back(evaluate(s, th.data(), &x));
    const double t = -1.0 + 2.0 * k / (points - 1);
    ds.x_test.push_back(t);
    ds.y_test.push_back(evaluate(s, th.data(), &t));
  }
  return ds;
}

// A teacher whose neurons are far from the parameterization's singular points: each factor's
// root lies on the active side of its kink, a third and two thirds of a cell in, so that no
// factor is nearly constant over the neuron's support and no two roots coincide (where the
// Jacobian loses rank and Newton's method is only linear). Coefficients D of size 1/n.
std::vector<double> regular_teacher(const Shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> th(num_params(s));
  const double cell = 1.9 / s.n;
  const int nf = num_factors(s.arch);
  for (int i = 0; i < s.n; ++i) {
    const double kink = -0.95 + cell * (i + 0.5 + 0.2 * std::tanh(g(rng)));
    const double G = i % 2 == 0 ? 1.0 : -1.0;
    th[factor_offset(s, 0) + i] = G;
    th[factor_offset(s, 0) + s.n + i] = -G * kink;
    for (int b = 1; b < nf; ++b) {
      const double root = kink + G * cell * b / nf;
      th[factor_offset(s, b) + i] = 1.0;
      th[factor_offset(s, b) + s.n + i] = -root;
    }
    th[d_offset(s) + i] = (1.0 + 0.5 * std::tanh(g(rng))) / s.n;
  }
  th[num_params(s) - 1] = 0.1;
  return th;
}

// The teacher with every kink and factor root moved by `frac` of a cell (normal).
std::vector<double> perturbed(const Shape& s, std::vector<double> th, double frac, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  const double cell = 1.9 / s.n;
  for (int b = 0; b < num_factors(s.arch) - 1; ++b)
    for (int i = 0; i < s.n; ++i)
      th[factor_offset(s, b) + s.n + i] -= th[factor_offset(s, b) + i] * frac * cell * g(rng);
  return th;
}

// From a perturbed start (kinks and roots moved by 2% of a cell, the linear parameters 1% off
// and then solved), training reaches the teacher: a test RMSE of 1e-10 or less, converged at
// the rounding floor of its loss.
TEST(VarPro, TargetThatIsANetworkIsReachedToTheFloor) {
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu}) {
    const Shape s{a, Act::kRelu, 1, 8};
    const std::vector<double> t = regular_teacher(s, 11);
    const Dataset ds = teacher_dataset(s, t, 2000, 12);
    std::vector<double> start = perturbed(s, t, 0.02, 13);
    std::mt19937_64 rng(14);
    std::normal_distribution<double> g(0.0, 0.01);
    for (int q : linear_columns(s)) start[q] *= 1.0 + g(rng);
    Batch batch;
    batch.datasets.push_back(&ds);
    batch.add(s, 0, start.data());
    CpuBackend be(1);
    be.load(batch);
    TrainOptions o;
    o.schedule = parse_schedule("D,U,Q,G,ALL*100");
    const std::vector<NetResult> res = train(be, batch, o);
    const std::string where = arch_name(a);
    EXPECT_EQ(res[0].status, Status::kConverged) << where << ": " << res[0].reason;
    EXPECT_LE(res[0].test_rmse, 1e-10) << where << ": " << res[0].reason;
  }
}

// The rate at width 200: a gqu teacher of width 200 (1401 parameters, 10,000 points), from a
// start with every kink and root moved by 1% of a cell. Near a zero residual, with a Jacobian
// of full rank, the projection and Newton's steps take the test RMSE from above 1e-7 to below
// 1e-10 in three steps (the projected problem's own floor at this width, about 1e-11 of the
// target's size, is reached). A model that does not describe the reduced problem (the Schur
// complement of the Hessian, whose conditioning is squared, loses its Gauss-Newton part at
// this width) does not get there.
TEST(VarPro, Width200ConvergesAtNewtonsRate) {
  const Shape s{Arch::kGqu, Act::kRelu, 1, 200};
  const std::vector<double> t = regular_teacher(s, 21);
  const Dataset ds = teacher_dataset(s, t, 10000, 22);
  const std::vector<double> start = perturbed(s, t, 0.01, 23);
  Batch batch;
  batch.datasets.push_back(&ds);
  batch.add(s, 0, start.data());
  CpuBackend be(2);
  be.load(batch);
  const double rmse0 = std::sqrt(train_mse(s, start.data(), ds));
  TrainOptions o;
  o.schedule = parse_schedule("ALL*3");
  const std::vector<NetResult> res = train(be, batch, o);
  EXPECT_GT(rmse0, 1e-7);
  EXPECT_LE(res[0].test_rmse, 1e-4 * rmse0) << res[0].reason;
  EXPECT_LE(res[0].test_rmse, 1e-10) << res[0].reason;
}

// The damping and extension fields of TrainOptions act as documented. Damping held at 1e8 of
// the unit diagonal over every step (calm_steps, calm_lambda) leaves the ALL stage where it
// began, where the default lowers the loss; with max_extrapolate 1 no kept step is extended,
// so each network takes one trial per damping try (and one at the stage's start), where the
// default takes more.
TEST(VarPro, DampingAndExtensionOptionsActAsDocumented) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 2000, 0));
  spec.archs = parse_archs("glu,gqu");
  spec.acts = {Act::kRelu};
  spec.widths = {12};
  spec.train.schedule = parse_schedule("D,U,Q,R,S,G");
  const auto jobs = make_jobs(spec);
  auto run = [&](const TrainOptions& o, SolverTally* t) {
    SweepSpec sp = spec;
    sp.train = o;
    if (t != nullptr) set_solver_tally(t);
    CpuBackend be(1);
    const auto res = run_sweep(sp, jobs, be);
    set_solver_tally(nullptr);
    return res;
  };
  const auto before = run(spec.train, nullptr);
  TrainOptions o = spec.train;
  o.schedule = parse_schedule("D,U,Q,R,S,G,ALL*20");
  SolverTally t_default, t_calm, t_short;
  const auto trained = run(o, &t_default);
  TrainOptions calm = o;
  calm.calm_steps = 1000;
  calm.calm_lambda = 1e8;
  const auto held = run(calm, &t_calm);
  TrainOptions no_ext = o;
  no_ext.max_extrapolate = 1.0;
  const auto short_steps = run(no_ext, &t_short);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const std::string where = model_name(jobs[j].model());
    EXPECT_LT(trained[j].train_rmse, 0.5 * before[j].train_rmse) << where;
    // The stage's start re-solves the linear parameters; the held steps then move by about
    // 1e-8 of a Newton step.
    EXPECT_GT(held[j].train_rmse, 0.9 * before[j].train_rmse) << where;
    EXPECT_LT(short_steps[j].train_rmse, 0.5 * before[j].train_rmse) << where;
    std::printf("%s: train RMSE %.4g before ALL, %.4g default, %.4g held, %.4g without extension\n", where.c_str(),
                before[j].train_rmse, trained[j].train_rmse, held[j].train_rmse, short_steps[j].train_rmse);
  }
  const long long nets = static_cast<long long>(jobs.size());
  EXPECT_GT(t_default.trials, t_default.tries + nets);
  EXPECT_LE(t_short.trials, t_short.tries + nets);
  std::printf("trials / tries: default %lld / %lld, without extension %lld / %lld\n", t_default.trials,
              t_default.tries, t_short.trials, t_short.tries);
}

}  // namespace
}  // namespace gs
