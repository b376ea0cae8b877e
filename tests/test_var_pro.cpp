// Variable projection (var_pro.h) against independent references: the reduced gradient and
// Hessian against finite differences of the projected loss phi(b) = min_c L(b, c), with the
// minimum over c taken by LAPACK's SVD solver on the explicit Jacobian; relu's knot-crossing
// curvature against the secant of the per-point gradient; thin neurons switched off; and the
// ALL stage reaching, in fewer steps, a loss no worse than the alternating method's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "cpu_backend.h"
#include "gpusweep/data.h"
#include "gpusweep/driver.h"
#include "gpusweep/solve.h"
#include "gpusweep/sweep.h"
#include "gpusweep/var_pro.h"
#include "gpusweep/least_squares.h"
#include "lsq_reference.h"

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

// The exact Hessian and gradient of the ALL stage at theta, from the CPU backend.
void assembled(const Shape& s, const std::vector<double>& th, const Dataset& ds,
               std::vector<double>* H, std::vector<double>* g) {
  Batch batch;
  batch.datasets.push_back(&ds);
  batch.add(s, 0, th.data());
  CpuBackend be(1);
  be.load(batch);
  double loss = 0.0, sg = 0.0;
  be.assemble({0}, Block::kAll, HessianKind::kExact, &loss, &sg);
  be.read_system(0, H, g);
}

// Smooth activations (no kinks), so phi is smooth and its finite differences are clean.
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
    const Shape& s = c.s;
    const Dataset& ds = *c.ds;
    const int m = num_params(s);
    std::vector<double> th(m);
    init_params(s, InitKind::kRandom, ds, 7, th.data());
    th = project(s, th, ds);
    std::vector<double> H, g, scale(m);
    assembled(s, th, ds, &H, &g);
    jacobi_scale(m, H.data(), g.data(), scale.data());
    std::vector<Role> role(m);
    var_pro_roles(s, th.data(), nullptr, role.data());
    ReducedSystem sys;
    reduced_system(m, H.data(), g.data(), scale.data(), role.data(), {}, &sys);
    const int kb = static_cast<int>(sys.index.size());
    const std::string where = std::string(arch_name(s.arch)) + " d=" + std::to_string(s.d);
    ASSERT_GT(kb, 0) << where;
    // Central differences of phi, each step 1e-4 in the units where the reduced Hessian has a
    // unit diagonal (a direction that phi hardly sees keeps a step of bounded size).
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
      EXPECT_NEAR(fd_g * sk, sys.gr[k], 1e-3 * std::fabs(sys.gr[k]) + 1e-6 * gmax) << where << " gradient " << k;
      for (int l = 0; l <= k; ++l) {
        const double sl = scale[sys.index[l]];
        double fd_h;
        if (l == k) {
          fd_h = (at(k, h[k], -1, 0) - 2 * f0 + at(k, -h[k], -1, 0)) / (h[k] * h[k]);
        } else {
          fd_h = (at(k, h[k], l, h[l]) - at(k, h[k], l, -h[l]) - at(k, -h[k], l, h[l]) +
                  at(k, -h[k], l, -h[l])) / (4 * h[k] * h[l]);
        }
        EXPECT_NEAR(fd_h * sk * sl, sys.A[k + static_cast<std::size_t>(l) * kb], 5e-3 * unit[k] * unit[l])
            << where << " Hessian " << k << "," << l;
      }
    }
  }
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

// The per-point Hessian misses the jumps of dL/dg as a kink crosses the points; over a step
// that crosses many of them, the change of the gradient is the per-point curvature plus the
// knot term.
TEST(VarPro, KnotCurvatureIsTheSecantOfTheGradient) {
  const Dataset ds = make_target_dataset("invcos2", 40000, 2);
  std::vector<double> xs, ys;
  sorted_points(ds, &xs, &ys);
  int checked = 0;
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu}) {
    const Shape s{a, Act::kRelu, 1, 6};
    const int m = num_params(s);
    std::vector<double> th(m);
    init_params(s, InitKind::kMaso, ds, 3, th.data());
    for (int i = 0; i < s.n; ++i) {
      const int ig = factor_offset(s, 0) + s.n + i;
      const double G = th[factor_offset(s, 0) + i];
      const double kink = -th[ig] / G;
      if (kink_place(s, th.data(), {xs.data(), ds.n_train(), ds.lo[0], ds.hi[0]}, i) != EdgeKind::kInside)
        continue;
      // Move the kink across about 100 points either way; along the way, the per-point
      // curvature and the knot term at five kink positions (Simpson's rule).
      const double dg = 100.0 * 2.0 / ds.n_train() * std::fabs(G);
      const double wts[5] = {1, 4, 2, 4, 1};
      double per_point = 0.0, knot = 0.0, g_lo = 0.0, g_hi = 0.0;
      for (int t = 0; t < 5; ++t) {
        std::vector<double> tt(th), H, g;
        tt[ig] = th[ig] + dg * (t - 2) / 2.0;
        assembled(s, tt, ds, &H, &g);
        std::vector<HessEntry> extra;
        knot_curvature(s, tt.data(), xs.data(), ys.data(), ds.n_train(), 8, &extra);
        double kv = 0.0;
        for (const HessEntry& e : extra)
          if (e.row == ig && e.col == ig) kv = e.value;
        per_point += wts[t] / 12.0 * H[ig + static_cast<std::size_t>(ig) * m];
        knot += wts[t] / 12.0 * kv;
        if (t == 0) g_lo = g[ig];
        if (t == 4) g_hi = g[ig];
      }
      const double secant = (g_hi - g_lo) / (2 * dg);
      // Only where the knot term carries a real part of the curvature does the comparison say
      // anything; there it accounts for what the per-point Hessian misses, to the precision of
      // its density estimate (64 random points each: about 12%, 6% over the five).
      if (std::fabs(knot) < 0.1 * std::fabs(per_point)) continue;
      ++checked;
      EXPECT_NEAR(per_point + knot, secant, 0.1 * std::fabs(secant - per_point))
          << arch_name(a) << " neuron " << i << " kink " << kink << ": per-point " << per_point
          << ", knot " << knot;
    }
  }
  EXPECT_GE(checked, 6);
}

// A neuron whose kink leaves two training points beyond it is thin: the trial leaves its last
// factor at zero (and that of any other thin neuron) and solves the rest, as dgelsd does
// without their columns.
TEST(VarPro, ThinNeuronIsSwitchedOff) {
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
    const double G = 1.0, kink = 0.5 * (xs[npts - 3] + xs[npts - 2]);
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
    // The reference: dgelsd on the linear columns of the neurons that are not thin.
    std::vector<double> ref(th);
    const std::vector<int> all = linear_columns(s);
    std::vector<int> keep;
    for (int q : all) {
      int nu, k;
      if (param_owner(s, q, &nu, &k) && kink_place(s, th.data(), pts, nu) == EdgeKind::kThin) {
        ref[q] = 0.0;
        EXPECT_EQ(got[q], 0.0) << arch_name(a) << " parameter " << q;
      } else {
        keep.push_back(q);
      }
    }
    ref = reference_solve(s, ref, keep, ds);
    const double want = train_mse(s, ref.data(), ds);
    EXPECT_NEAR(loss, want, 1e-8 * want) << arch_name(a);
    EXPECT_NEAR(train_mse(s, got.data(), ds), want, 1e-8 * want) << arch_name(a);
  }
}

// The ALL stage by variable projection against the alternating method with ten times the
// steps, from the same start, on the default target. The two may settle in different local
// minima, so the RMSEs compare statistically: median ratio within 5%, none worse than 1.5x
// (at this commit: 0.97 to 1.38). Every network ends at a stationary point (small scaled
// gradient), in a quarter of the steps or fewer in all.
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
    EXPECT_LT(r1[i].scaled_grad, 1e-4) << where << ": " << r1[i].reason;
    EXPECT_LT(ratio.back(), 1.5) << where << ": " << r1[i].train_rmse << " against " << r2[i].train_rmse;
    EXPECT_TRUE(std::isfinite(r1[i].rel_decrease)) << where;
  }
  std::sort(ratio.begin(), ratio.end());
  EXPECT_LT(0.5 * (ratio[2] + ratio[3]), 1.05);
  EXPECT_LT(steps1, steps2 / 4);
}

}  // namespace
}  // namespace gs
