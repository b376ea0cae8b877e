// The relu / 1D fast assembly (relu1d.h) against the general per-point assembly, its oracle:
// the same gradient and Hessian, every arch, stage and Hessian kind, at MASO and random
// parameters, including dead neurons, neurons active everywhere and G = 0.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/relu1d.h"
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

}  // namespace
}  // namespace gs
