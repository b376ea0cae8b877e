// Analytic Jacobian rows, loss gradients and Hessians against central finite differences,
// for every arch, activation and input dimension 1, 2 and 5, at random parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/network.h"
#include "gpusweep/train/sweep.h"

namespace gs {
namespace {

using Param = std::tuple<Arch, Act, int>;

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string arch = arch_name(std::get<0>(info.param));
  for (char& c : arch)
    if (c == ':') c = '_';  // gated:3 -> gated_3: test names are identifiers
  return arch + "_" + act_name(std::get<1>(info.param)) + "_d" + std::to_string(std::get<2>(info.param));
}

class Derivatives : public ::testing::TestWithParam<Param> {
 protected:
  Shape shape() const {
    return Shape{std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam()), 3};
  }
  std::vector<double> random_params(const Shape& s, std::uint64_t seed) const {
    Rng rng(seed);
    std::vector<double> th(num_params(s));
    for (auto& v : th) v = 0.8 * rng.normal();
    return th;
  }
  Dataset random_data(int d, int n, std::uint64_t seed) const {
    Rng rng(seed);
    Dataset ds;
    ds.d = d;
    for (int k = 0; k < n * d; ++k) ds.x_train.push_back(-1.0 + 2.0 * rng.uniform());
    for (int k = 0; k < n; ++k) ds.y_train.push_back(rng.normal());
    ds.x_test = ds.x_train;
    ds.y_test = ds.y_train;
    ds.lo.assign(d, -1.0);
    ds.hi.assign(d, 1.0);
    return ds;
  }
  static double loss(const Shape& s, const std::vector<double>& th, const Dataset& ds) {
    double sse = 0.0;
    for (int k = 0; k < ds.n_train(); ++k) {
      const double r = evaluate(s, th.data(), ds.x_train.data() + k * s.d) - ds.y_train[k];
      sse += r * r;
    }
    return sse / ds.n_train();
  }
};

// relu's kinks make finite differences meaningless where a point sits near a knot; the random
// points and parameters here keep every |a| well away from 0 at step 1e-5.
TEST_P(Derivatives, JacobianRowAndNeuronHessianMatchFiniteDifferences) {
  const Shape s = shape();
  const int p = num_params(s);
  auto th = random_params(s, 7);
  Rng rng(11);
  std::vector<double> x(s.d), row(p), rp(p), rm(p);
  for (auto& v : x) v = -1.0 + 2.0 * rng.uniform();
  const double y = jacobian_row(s, th.data(), x.data(), row.data());
  EXPECT_NEAR(y, evaluate(s, th.data(), x.data()), 1e-13);
  const double h = 1e-5;
  for (int q = 0; q < p; ++q) {
    auto tp = th, tm = th;
    tp[q] += h;
    tm[q] -= h;
    const double fd = (evaluate(s, tp.data(), x.data()) - evaluate(s, tm.data(), x.data())) / (2 * h);
    EXPECT_NEAR(row[q], fd, 1e-7 * (1 + std::fabs(fd))) << "parameter " << q;
  }
  // Second derivatives: differentiate the Jacobian row, neuron by neuron.
  const int k = neuron_num_params(s);
  std::vector<double> blk(k * k);
  for (int i = 0; i < s.n; ++i) {
    neuron_hessian(s, eval_neuron(s, th.data(), x.data(), i), x.data(), blk.data());
    for (int a = 0; a < k; ++a) {
      const int ga = neuron_param_index(s, i, a);
      auto tp = th, tm = th;
      tp[ga] += h;
      tm[ga] -= h;
      jacobian_row(s, tp.data(), x.data(), rp.data());
      jacobian_row(s, tm.data(), x.data(), rm.data());
      for (int b = 0; b < k; ++b) {
        const int gb = neuron_param_index(s, i, b);
        const double fd = (rp[gb] - rm[gb]) / (2 * h);
        EXPECT_NEAR(blk[a * k + b], fd, 1e-6 * (1 + std::fabs(fd))) << "neuron " << i << " (" << a << "," << b << ")";
      }
    }
    // Parameters of other neurons do not interact with this one.
    const int other = (i + 1) % s.n;
    auto tp = th, tm = th;
    tp[neuron_param_index(s, other, 0)] += h;
    tm[neuron_param_index(s, other, 0)] -= h;
    jacobian_row(s, tp.data(), x.data(), rp.data());
    jacobian_row(s, tm.data(), x.data(), rm.data());
    for (int b = 0; b < k; ++b) {
      const int gb = neuron_param_index(s, i, b);
      EXPECT_NEAR((rp[gb] - rm[gb]) / (2 * h), 0.0, 1e-8);
    }
  }
}

// The assembled loss gradient and exact Hessian of the backend, for every stage, against
// finite differences of the loss and of the gradient.
TEST_P(Derivatives, AssembledGradientAndHessianMatchFiniteDifferences) {
  const Shape s = shape();
  const int p = num_params(s);
  const Dataset ds = random_data(s.d, 37, 3);
  Batch batch;
  batch.datasets.push_back(&ds);
  const auto th = random_params(s, 5);
  batch.add(s, 0, th.data());
  CpuBackend be(1);
  for (Block st : {Block::kG, Block::kU, Block::kQ, Block::kD, Block::kAll}) {
    if (!has_block(s.arch, st)) continue;
    be.load(batch);
    int b, e;
    stage_range(s, st, &b, &e);
    const int m = e - b;
    double l, sg;
    be.assemble({0}, st, HessianKind::kExact, &l, &sg);
    EXPECT_NEAR(l, loss(s, th, ds), 1e-12 * l);
    std::vector<double> H, g;
    be.read_system(0, &H, &g);
    ASSERT_EQ(static_cast<int>(g.size()), m);
    const double h = 1e-6;
    for (int q = 0; q < m; ++q) {
      auto tp = th, tm = th;
      tp[b + q] += h;
      tm[b + q] -= h;
      const double fd = (loss(s, tp, ds) - loss(s, tm, ds)) / (2 * h);
      EXPECT_NEAR(g[q], fd, 1e-6 * (1 + std::fabs(fd))) << "stage " << static_cast<int>(st) << " g[" << q << "]";
    }
    // Hessian column q from the finite difference of the assembled gradient.
    for (int q = 0; q < m; ++q) {
      std::vector<double> gp, gm, Hx;
      for (int sign : {+1, -1}) {
        auto t2 = th;
        t2[b + q] += sign * h;
        Batch b2;
        b2.datasets.push_back(&ds);
        b2.add(s, 0, t2.data());
        be.load(b2);
        be.assemble({0}, st, HessianKind::kExact, &l, &sg);
        be.read_system(0, &Hx, sign > 0 ? &gp : &gm);
      }
      for (int r = 0; r < m; ++r) {
        const double fd = (gp[r] - gm[r]) / (2 * h);
        EXPECT_NEAR(H[r + q * m], fd, 2e-5 * (1 + std::fabs(fd)))
            << "stage " << static_cast<int>(st) << " H(" << r << "," << q << ")";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllNetworks, Derivatives,
    ::testing::Combine(::testing::Values(Arch::kMlp, Arch::kGlu, Arch::kGqu, make_arch(Family::kGated, 3),
                                         make_arch(Family::kGated, 4)),
                       ::testing::Values(Act::kRelu, Act::kGelu, Act::kSilu, Act::kSigmoid),
                       ::testing::Values(1, 2, 5)),
    param_name);

// gpoly:K, with as many inputs as its output polynomial's terms allow (kMaxPolyTerms).
INSTANTIATE_TEST_SUITE_P(
    GpolyLowDegree, Derivatives,
    ::testing::Combine(::testing::Values(make_arch(Family::kGpoly, 1), make_arch(Family::kGpoly, 2)),
                       ::testing::Values(Act::kRelu, Act::kGelu, Act::kSilu, Act::kSigmoid),
                       ::testing::Values(1, 2, 5)),
    param_name);
INSTANTIATE_TEST_SUITE_P(
    GpolyHighDegree, Derivatives,
    ::testing::Combine(::testing::Values(make_arch(Family::kGpoly, 3), make_arch(Family::kGpoly, 4)),
                       ::testing::Values(Act::kRelu, Act::kGelu, Act::kSilu, Act::kSigmoid),
                       ::testing::Values(1, 2)),
    param_name);

// The gpoly network's value against its formula written out by hand:
// d0 + sum_i s(G_i . x + g_i) p_i(x), for gpoly:2 in two inputs (p_i = c0 + c1 x1 + c2 x2 +
// c3 x1^2 + c4 x1 x2 + c5 x2^2) and gpoly:3 in one.
TEST(Gpoly, EvaluatesItsFormula) {
  Rng rng(3);
  {
    const Shape s{make_arch(Family::kGpoly, 2), Act::kSilu, 2, 3};
    std::vector<double> th(num_params(s));
    for (auto& v : th) v = rng.normal();
    ASSERT_EQ(num_params(s), 3 * 3 + 3 * 6 + 1);
    const double x[2] = {0.3, -0.8};
    double want = th.back();
    for (int i = 0; i < s.n; ++i) {
      const double a = th[2 * i] * x[0] + th[2 * i + 1] * x[1] + th[2 * s.n + i];
      const double* c = th.data() + 3 * s.n + 6 * i;
      const double p = c[0] + c[1] * x[0] + c[2] * x[1] + c[3] * x[0] * x[0] + c[4] * x[0] * x[1] +
                       c[5] * x[1] * x[1];
      want += a / (1.0 + std::exp(-a)) * p;
    }
    EXPECT_NEAR(evaluate(s, th.data(), x), want, 1e-14 * (1 + std::fabs(want)));
  }
  {
    // Three inputs: 1; x1, x2, x3; x1^2, x1 x2, x1 x3, x2^2, x2 x3, x3^2.
    const Shape s{make_arch(Family::kGpoly, 2), Act::kRelu, 3, 1};
    std::vector<double> th(num_params(s));
    for (auto& v : th) v = rng.normal();
    ASSERT_EQ(num_params(s), 4 + 10 + 1);
    const double x[3] = {0.3, -0.8, 0.55};
    const double* c = th.data() + 4;
    const double p = c[0] + c[1] * x[0] + c[2] * x[1] + c[3] * x[2] + c[4] * x[0] * x[0] + c[5] * x[0] * x[1] +
                     c[6] * x[0] * x[2] + c[7] * x[1] * x[1] + c[8] * x[1] * x[2] + c[9] * x[2] * x[2];
    const double a = th[0] * x[0] + th[1] * x[1] + th[2] * x[2] + th[3];
    const double want = th.back() + std::max(a, 0.0) * p;
    EXPECT_NEAR(evaluate(s, th.data(), x), want, 1e-14 * (1 + std::fabs(want)));
  }
  {
    const Shape s{make_arch(Family::kGpoly, 3), Act::kRelu, 1, 4};
    std::vector<double> th(num_params(s));
    for (auto& v : th) v = rng.normal();
    const double x = 0.37;
    double want = th.back();
    for (int i = 0; i < s.n; ++i) {
      const double a = th[i] * x + th[s.n + i];
      const double* c = th.data() + 2 * s.n + 4 * i;
      want += std::max(a, 0.0) * (c[0] + c[1] * x + c[2] * x * x + c[3] * x * x * x);
    }
    EXPECT_NEAR(evaluate(s, th.data(), &x), want, 1e-14 * (1 + std::fabs(want)));
  }
}

}  // namespace
}  // namespace gs
