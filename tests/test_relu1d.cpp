// The relu / 1D fast assembly (relu1d.h) against the general per-point assembly, its oracle:
// the same gradient and Hessian, every arch, stage and Hessian kind, at MASO and random
// parameters, including dead neurons, neurons active everywhere and G = 0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/host_solver.h"
#include "gpusweep/train/sweep.h"

namespace gs {
namespace {

double rel_diff(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

double horner(const double c[kColCoef], double x) {
  double v = 0.0;
  for (int j = kColCoef - 1; j >= 0; --j) v = v * x + c[j];
  return v;
}

TEST(Relu1d, ColumnAndCurvaturePolynomialsMatchThePointFormulas) {
  Rng rng(3);
  for (const ArchRow& row : kArchTable) {
    const Arch a = row_arch(row);
    const Shape s{a, Act::kRelu, 1, 4};
    std::vector<double> th(num_params(s));
    for (auto& v : th) v = rng.normal();
    const int k = neuron_num_params(s);
    std::vector<double> blk(k * k);
    for (int t = 0; t < 50; ++t) {
      const double x = 2.0 * rng.uniform() - 1.0;
      for (int i = 0; i < s.n; ++i) {
        const NeuronEval e = eval_neuron(s, th.data(), &x, i);
        if (!(e.a[0] > 0.0)) continue;
        const NeuronLines L = neuron_lines(s, th.data(), i);
        neuron_hessian(s, e, &x, blk.data());
        for (int p = 0; p < k; ++p) {
          double c[kColCoef];
          column_poly(L, p, c);
          const double v = horner(c, x);
          EXPECT_NEAR(v, jacobian_entry(s, e, &x, p), 1e-13) << arch_name(a) << " p " << p;
          for (int q = 0; q < k; ++q) {
            curvature_poly(L, p, q, c);
            const double h = horner(c, x);
            EXPECT_NEAR(h, blk[p * k + q], 1e-13) << arch_name(a) << " p " << p << " q " << q;
          }
        }
      }
    }
  }
}

TEST(Relu1d, ActiveRangeIsTheSetThePointFormulasSee) {
  std::vector<double> xs;
  for (int k = 0; k < 101; ++k) xs.push_back(-1.0 + 0.02 * k);
  for (double G : {1.0, -1.0, 0.3, -7.0, 0.0}) {
    for (double g : {-2.0, -0.5, 0.0, 0.02, 0.5, 2.0}) {
      int lo, hi;
      active_range(xs.data(), static_cast<int>(xs.size()), G, g, &lo, &hi);
      for (int k = 0; k < static_cast<int>(xs.size()); ++k) {
        double a = g;
        a += G * xs[k];
        EXPECT_EQ(a > 0.0, k >= lo && k < hi) << "G " << G << " g " << g << " k " << k;
      }
    }
  }
}

TEST(Relu1d, PrefixMomentsKeepShortIntervals) {
  std::vector<double> xs;
  Rng rng(5);
  for (int k = 0; k < 5000; ++k) xs.push_back(2.0 * rng.uniform() - 1.0);
  std::sort(xs.begin(), xs.end());
  std::vector<double> pre(kNumMoments * (xs.size() + 1) * 2);
  build_prefix(xs.data(), nullptr, static_cast<int>(xs.size()), kNumMoments, pre.data());
  for (int lo : {0, 17, 2500, 4990}) {
    for (int len : {1, 2, 9, 10}) {
      for (int j = 0; j < kNumMoments; ++j) {
        // The double-double prefix sums keep ~104 bits of the whole sum: below that share of
        // sum |x|^j over all points (x^10 near 0), a short interval's moment is noise.
        double total = 0.0;
        for (double v : xs) total += std::pow(std::fabs(v), j);
        long double ref = 0.0L;
        for (int k = lo; k < lo + len; ++k) ref += std::pow(static_cast<long double>(xs[k]), j);
        const double got = prefix_moment(pre.data(), static_cast<int>(xs.size()), j, lo, lo + len);
        EXPECT_NEAR(got, static_cast<double>(ref), 4e-16 * std::fabs(static_cast<double>(ref)) + 4 * 0x1p-104 * total)
            << "lo " << lo << " len " << len << " j " << j;
      }
    }
  }
}

// Same systems from both paths, for every arch, stage and kind.
TEST(Relu1d, FastAssemblyMatchesThePerPointAssembly) {
  const Dataset ds = make_target_dataset("invcos2", 1500, 4);
  Batch batch;
  batch.datasets.push_back(&ds);
  Rng rng(8);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu, make_arch(Family::kGpoly, 1), make_arch(Family::kGpoly, 4)}) {
    for (int w : {1, 2, 5, 16, 40}) {
      for (int variant = 0; variant < 3; ++variant) {
        const Shape s{a, Act::kRelu, 1, w};
        std::vector<double> th(num_params(s));
        init_params(s, variant == 1 ? InitKind::kRandom : InitKind::kMaso, ds, rng.next(), th.data());
        if (variant == 2) {
          // A dead neuron, one active everywhere, a flat gate (G = 0) and a perturbation.
          for (auto& v : th) v += 0.1 * rng.normal();
          th[factor_offset(s, 0) + 0] = 0.5;
          th[factor_offset(s, 0) + s.n + 0] = -3.0;  // dead on [-1, 1]
          if (w > 1) th[factor_offset(s, 0) + s.n + 1] = 3.0;  // active everywhere
          if (w > 2) th[factor_offset(s, 0) + 2] = 0.0;        // G = 0
        }
        batch.add(s, 0, th.data());
      }
    }
  }
  CpuBackend fast(2, true), slow(2, false);
  fast.load(batch);
  slow.load(batch);
  for (Block stage : {Block::kD, Block::kU, Block::kQ, Block::kG, Block::kAll}) {
    for (HessianKind kind : {HessianKind::kExact, HessianKind::kGaussNewton}) {
      std::vector<int> nets;
      for (int i = 0; i < batch.size(); ++i)
        if (has_block(batch.nets[i].shape.arch, stage)) nets.push_back(i);
      std::vector<double> lf(nets.size()), ls(nets.size()), sf(nets.size()), ss(nets.size());
      fast.assemble(nets, stage, kind, lf.data(), sf.data());
      slow.assemble(nets, stage, kind, ls.data(), ss.data());
      for (std::size_t j = 0; j < nets.size(); ++j) {
        const int i = nets[j];
        const Shape& s = batch.nets[i].shape;
        const std::string where = std::string(arch_name(s.arch)) + " n=" + std::to_string(s.n) +
                                  " net " + std::to_string(i) + " stage " + std::to_string(static_cast<int>(stage)) +
                                  (kind == HessianKind::kExact ? " exact" : " gn");
        EXPECT_NEAR(lf[j], ls[j], 1e-13 * ls[j]) << where;
        EXPECT_NEAR(sf[j], ss[j], 1e-9 * ss[j] + 1e-300) << where;
        std::vector<double> Hf, gf, Hs, gs_;
        fast.read_system(i, &Hf, &gf);
        slow.read_system(i, &Hs, &gs_);
        EXPECT_LE(rel_diff(Hf, Hs), 1e-12) << where;
        EXPECT_LE(rel_diff(gf, gs_), 1e-10) << where;
      }
    }
  }
}


// The diagonal-only assembly (HessianKind::kDiagonal, relu 1D): its loss, gradient and Jacobi
// scaled gradient are those of the full Gauss-Newton assembly, bit for bit (the same sums), and
// its diagonal is that of the full one's H; against independent references, the diagonal is
// the per-point assembly's (sum of squared Jacobian entries, BLAS) and the gradient the central
// finite differences of the training loss. Kinks at random places, on a training point
// (a = 0 there, so the point is off) and near one; widths down to 1.
TEST(Relu1d, DiagonalAssemblyMatchesTheFullOneAndFiniteDifferences) {
  const Dataset ds = make_target_dataset("invcos2", 800, 6);
  std::vector<double> xs(ds.x_train);
  std::sort(xs.begin(), xs.end());
  Batch batch;
  batch.datasets.push_back(&ds);
  Rng rng(11);
  // Per network: the neuron whose kink was put on (kind 1) or near (kind 2) a training point.
  std::vector<int> on_point;
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu, make_arch(Family::kGated, 3), make_arch(Family::kGpoly, 2)}) {
    for (int w : {1, 3, 12}) {
      for (int variant = 0; variant < 3; ++variant) {
        const Shape s{a, Act::kRelu, 1, w};
        std::vector<double> th(num_params(s));
        init_params(s, variant == 0 ? InitKind::kMaso : InitKind::kRandom, ds, rng.next(), th.data());
        for (auto& v : th) v += 0.05 * rng.normal();
        int i = -1;
        if (variant > 0) {
          i = w / 2;
          const double G = th[factor_offset(s, 0) + i];
          const double xk = xs[300 + 7 * w];
          // variant 1: a = g + G x_k is exactly 0 at x_k; variant 2: the kink 1e-5 beside it.
          th[factor_offset(s, 0) + s.n + i] = -G * (variant == 1 ? xk : xk + 1e-5);
        }
        on_point.push_back(variant == 1 ? i : -1);
        batch.add(s, 0, th.data());
      }
    }
  }
  CpuBackend fast(2, true), full(2, true), slow(2, false);
  fast.load(batch);
  full.load(batch);
  slow.load(batch);
  const int npts = ds.n_train();
  int checked = 0;
  for (Block stage : {Block::kD, Block::kU, Block::kG, Block::kAll}) {
    std::vector<int> nets;
    for (int i = 0; i < batch.size(); ++i)
      if (has_block(batch.nets[i].shape.arch, stage)) nets.push_back(i);
    const std::size_t k = nets.size();
    std::vector<double> ld(k), sd(k), lf(k), sf(k), ls(k), ss(k);
    fast.assemble(nets, stage, HessianKind::kDiagonal, ld.data(), sd.data());
    full.assemble(nets, stage, HessianKind::kGaussNewton, lf.data(), sf.data());
    slow.assemble(nets, stage, HessianKind::kGaussNewton, ls.data(), ss.data());
    for (std::size_t j = 0; j < k; ++j) {
      const int i = nets[j];
      const Shape& s = batch.nets[i].shape;
      const std::string where = std::string(arch_name(s.arch)) + " n=" + std::to_string(s.n) + " net " +
                                std::to_string(i) + " stage " + std::to_string(static_cast<int>(stage));
      EXPECT_EQ(ld[j], lf[j]) << where;
      EXPECT_EQ(sd[j], sf[j]) << where;
      EXPECT_NEAR(ld[j], ls[j], 1e-13 * ls[j]) << where;
      EXPECT_NEAR(sd[j], ss[j], 1e-9 * ss[j]) << where;
      std::vector<double> Hd, gd, Hf, gf, Hs, gs_;
      fast.read_system(i, &Hd, &gd);
      full.read_system(i, &Hf, &gf);
      slow.read_system(i, &Hs, &gs_);
      const std::size_t m = gd.size();
      ASSERT_EQ(Hd.size(), m * m) << where;
      EXPECT_EQ(gd, gf) << where;
      double dmax = 0.0;
      for (std::size_t q = 0; q < m; ++q) dmax = std::fmax(dmax, Hs[q + q * m]);
      for (std::size_t c = 0; c < m; ++c)
        for (std::size_t r = 0; r < m; ++r) {
          if (r != c) {
            EXPECT_EQ(Hd[r + c * m], 0.0) << where;
            continue;
          }
          EXPECT_EQ(Hd[r + c * m], Hf[r + c * m]) << where << " q " << r;
          EXPECT_NEAR(Hd[r + c * m], Hs[r + c * m], 1e-12 * dmax) << where << " q " << r;
        }
      // Central differences of the training MSE, parameter by parameter (the stage's).
      int b, e;
      stage_range(s, stage, &b, &e);
      std::vector<double> th(batch.params.begin() + batch.nets[i].offset,
                             batch.params.begin() + batch.nets[i].offset + num_params(s));
      double gmax = 0.0;
      for (double v : gd) gmax = std::fmax(gmax, std::fabs(v));
      for (int q = b; q < e; ++q) {
        // Where the kink sits on a point the loss has a corner in the gate's parameters.
        const int gi = on_point[i];
        if (gi >= 0 && (q == factor_offset(s, 0) + gi || q == factor_offset(s, 0) + s.n + gi)) continue;
        const double h = 1e-7 * std::fmax(1.0, std::fabs(th[q]));
        std::vector<double> tp(th), tm(th);
        tp[q] += h;
        tm[q] -= h;
        const double fd = (train_sse(s, tp.data(), ds) - train_sse(s, tm.data(), ds)) / npts / (tp[q] - tm[q]);
        EXPECT_NEAR(gd[q - b], fd, 1e-6 * gmax + 1e-6 * std::fabs(fd)) << where << " q " << q;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 1000);
  // The diagonal is all there is to solve with: solve() refuses it.
  std::vector<int> nets = {0};
  double l, sg, lambda = 1.0, gdotp;
  int info;
  fast.assemble(nets, Block::kAll, HessianKind::kDiagonal, &l, &sg);
  EXPECT_THROW(fast.solve(nets, &lambda, &info, &gdotp), std::logic_error);
  fast.assemble(nets, Block::kAll, HessianKind::kGaussNewton, &l, &sg);
  EXPECT_NO_THROW(fast.solve(nets, &lambda, &info, &gdotp));
}

// HostSolver::sorted_residuals sums each neuron over its active range only: its residuals are
// evaluate's, bit for bit, at every sorted point (kinks on points, dead neurons, G = 0, the
// output polynomials of gpoly), and where a factor product overflows (evaluate's 0 * inf is NaN
// off the active range) it takes evaluate's path. var_pro_trial's loss, summed from them, is
// train_sse's to the bit.
TEST(Relu1d, SortedResidualsAreEvaluatesToTheBit) {
  const Dataset ds = make_target_dataset("invcos2", 700, 9);
  Batch batch;
  batch.datasets.push_back(&ds);
  Rng rng(21);
  std::vector<double> xs(ds.x_train);
  std::sort(xs.begin(), xs.end());
  std::vector<char> huge;
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu, make_arch(Family::kGated, 4), make_arch(Family::kGpoly, 3)}) {
    for (int w : {1, 2, 9, 30}) {
      for (int variant = 0; variant < 5; ++variant) {
        const Shape s{a, Act::kRelu, 1, w};
        std::vector<double> th(num_params(s));
        init_params(s, variant == 1 ? InitKind::kRandom : InitKind::kMaso, ds, rng.next(), th.data());
        for (auto& v : th) v += 0.1 * rng.normal();
        const int i = w - 1;
        if (variant == 2) {
          th[factor_offset(s, 0) + s.n + i] = -th[factor_offset(s, 0) + i] * xs[350];  // a kink on a point
          if (w > 1) th[factor_offset(s, 0) + s.n] = -5.0 * std::fabs(th[factor_offset(s, 0)]);  // dead or everywhere
          if (w > 2) th[factor_offset(s, 0) + 1] = 0.0;                                       // G = 0
        }
        if (variant == 3) {
          // Factors that overflow: evaluate's sum is NaN wherever the gate is off.
          for (int b = 1; b < num_factors(s.arch); ++b) th[factor_offset(s, b) + s.n + i] = 1e200;
          if (num_factors(s.arch) == 1) th[d_offset(s) + i * num_poly_terms(s)] = INFINITY;
        }
        if (variant == 4) {
          // Factors that overflow behind a zero output coefficient: evaluate's 0 * inf is NaN.
          for (int b = 1; b < num_factors(s.arch); ++b) th[factor_offset(s, b) + s.n + i] = 1e200;
          for (int t = 0; t < num_poly_terms(s); ++t) th[d_offset(s) + i * num_poly_terms(s) + t] = 0.0;
        }
        huge.push_back(variant >= 3);
        batch.add(s, 0, th.data());
      }
    }
  }
  HostSolver host;
  host.load(batch);
  const HostSolver::Sorted& so = host.sorted(0);
  HostSolver::Workspace w;
  int nan_nets = 0, finite_trials = 0;
  for (int i = 0; i < batch.size(); ++i) {
    const Shape& s = batch.nets[i].shape;
    const double* th = batch.params.data() + batch.nets[i].offset;
    std::vector<double> r;
    host.sorted_residuals(i, th, r);
    ASSERT_EQ(r.size(), so.x.size());
    bool any_nan = false;
    for (std::size_t k = 0; k < r.size(); ++k) {
      const double ref = evaluate(s, th, &so.x[k]) - so.y[k];
      any_nan = any_nan || std::isnan(ref);
      EXPECT_TRUE(r[k] == ref || (std::isnan(r[k]) && std::isnan(ref)))
          << arch_name(s.arch) << " n=" << s.n << " net " << i << " point " << k << ": " << r[k] << " vs " << ref;
    }
    nan_nets += any_nan;
    if (huge[i]) continue;
    // The trial without a step: the linear parameters solved, its loss from the residuals.
    std::vector<double> trial(num_params(s)), rt;
    const double loss = host.var_pro_trial(i, th, nullptr, trial.data(), w, 1.0, &rt);
    const double ref = train_sse(s, trial.data(), ds) / ds.n_train();
    EXPECT_TRUE(loss == ref || (std::isnan(loss) && std::isnan(ref))) << arch_name(s.arch) << " net " << i;
    finite_trials += std::isfinite(loss);
    std::vector<double> r2;
    host.sorted_residuals(i, trial.data(), r2);
    ASSERT_EQ(rt.size(), r2.size());
    for (std::size_t k = 0; k < r2.size(); ++k)
      EXPECT_TRUE(rt[k] == r2[k] || (std::isnan(rt[k]) && std::isnan(r2[k]))) << "net " << i << " point " << k;
  }
  EXPECT_GT(nan_nets, 8);  // the overflow cases were met (variant 4 at gqu and gated:4)
  EXPECT_GT(finite_trials, 40);
}

}  // namespace
}  // namespace gs
