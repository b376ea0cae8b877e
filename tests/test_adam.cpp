// The Adam baseline: the backend's gradient pass against central finite differences of the
// training loss, the driver's Adam against an Adam written out here on those finite-difference
// gradients, and a poisoned network that fails alone.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/network.h"
#include "gpusweep/train/driver.h"
#include "gpusweep/train/sweep.h"

namespace gs {
namespace {

// Training MSE of theta, point by point through evaluate().
double mse(const Shape& s, const std::vector<double>& th, const Dataset& ds) {
  double sse = 0.0;
  for (int q = 0; q < ds.n_train(); ++q) {
    const double r = evaluate(s, th.data(), ds.x_train.data() + static_cast<std::size_t>(q) * s.d) - ds.y_train[q];
    sse += r * r;
  }
  return sse / ds.n_train();
}

std::vector<double> fd_gradient(const Shape& s, std::vector<double> th, const Dataset& ds) {
  std::vector<double> g(th.size());
  for (std::size_t k = 0; k < th.size(); ++k) {
    const double v = th[k], h = 1e-6 * (1.0 + std::fabs(v));
    th[k] = v + h;
    const double up = mse(s, th, ds);
    th[k] = v - h;
    const double down = mse(s, th, ds);
    th[k] = v;
    g[k] = (up - down) / (2 * h);
  }
  return g;
}

struct Net {
  Shape shape;
  int dataset;
};

TEST(Adam, GradientPassMatchesFiniteDifferences) {
  const Dataset d1 = make_target_dataset("sin4", 300, 0);
  const Dataset d2 = make_target_dataset("sin_sin", 300, 0);
  Batch batch;
  batch.datasets = {&d1, &d2};
  const std::vector<Net> nets = {{{Arch::kMlp, Act::kRelu, 1, 6}, 0},
                                 {{Arch::kGqu, Act::kRelu, 1, 5}, 0},
                                 {{make_arch(Family::kGated, 3), Act::kSilu, 1, 4}, 0},
                                 {{Arch::kGlu, Act::kGelu, 2, 4}, 1}};
  for (std::size_t j = 0; j < nets.size(); ++j) {
    std::vector<double> th(num_params(nets[j].shape));
    init_params(nets[j].shape, InitKind::kRandom, *batch.datasets[nets[j].dataset], 3 + j, th.data());
    batch.add(nets[j].shape, nets[j].dataset, th.data());
  }
  CpuBackend be(2);
  be.load(batch);
  std::vector<int> all = {0, 1, 2, 3};
  std::size_t total = 0;
  for (const Net& n : nets) total += num_params(n.shape);
  std::vector<double> loss(4), grad(total);
  be.gradient(all, loss.data(), grad.data());
  std::size_t off = 0;
  for (std::size_t j = 0; j < nets.size(); ++j) {
    const Shape& s = nets[j].shape;
    const Dataset& ds = *batch.datasets[nets[j].dataset];
    const std::vector<double> th(batch.params.begin() + batch.nets[j].offset,
                                 batch.params.begin() + batch.nets[j].offset + num_params(s));
    EXPECT_NEAR(loss[j], mse(s, th, ds), 1e-12 * mse(s, th, ds)) << j;
    const auto fd = fd_gradient(s, th, ds);
    double scale = 0.0;
    for (double v : fd) scale = std::max(scale, std::fabs(v));
    for (std::size_t k = 0; k < fd.size(); ++k)
      EXPECT_NEAR(grad[off + k], fd[k], 1e-6 * scale) << "net " << j << " param " << k;
    off += fd.size();
  }
}

TEST(Adam, DriverTakesAdamsStepsOnTheTrueGradient) {
  const Dataset ds = make_target_dataset("invcos2", 400, 0);
  // A poisoned network first, then two healthy ones of other shapes: their gradient slices
  // sit at shifted offsets, and the poisoned one leaves after the first step.
  const std::vector<Shape> shapes = {{Arch::kGlu, Act::kRelu, 1, 6},
                                     {Arch::kMlp, Act::kRelu, 1, 5},
                                     {Arch::kGqu, Act::kSilu, 1, 4}};
  Batch batch;
  batch.datasets = {&ds};
  for (std::size_t j = 0; j < shapes.size(); ++j) {
    std::vector<double> th(num_params(shapes[j]));
    init_params(shapes[j], InitKind::kMaso, ds, 1 + j, th.data());
    if (j == 0) th[num_params(shapes[j]) - 3] = NAN;  // a poisoned D
    batch.add(shapes[j], 0, th.data());
  }
  TrainOptions o;
  o.optimizer = Optimizer::kAdam;
  o.adam.lr = 1e-2;
  o.adam.steps = 6;
  CpuBackend be(2);
  be.load(batch);
  const auto res = train(be, batch, o);
  std::vector<double> got;
  be.read_params(got);
  EXPECT_EQ(res[0].status, Status::kFailed);
  EXPECT_NE(res[0].reason.find("non-finite"), std::string::npos) << res[0].reason;

  for (std::size_t j = 1; j < shapes.size(); ++j) {
    const Shape& s = shapes[j];
    const std::size_t off = batch.nets[j].offset;
    const std::vector<double> start(batch.params.begin() + off, batch.params.begin() + off + num_params(s));
    // Adam written out, on finite-difference gradients.
    std::vector<double> ref = start, m(ref.size(), 0.0), v(ref.size(), 0.0);
    for (int t = 1; t <= o.adam.steps; ++t) {
      const auto g = fd_gradient(s, ref, ds);
      for (std::size_t k = 0; k < ref.size(); ++k) {
        m[k] = 0.9 * m[k] + 0.1 * g[k];
        v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k];
        const double mh = m[k] / (1 - std::pow(0.9, t)), vh = v[k] / (1 - std::pow(0.999, t));
        ref[k] -= o.adam.lr * mh / (std::sqrt(vh) + 1e-8);
      }
    }
    // Each step moves a parameter by about lr; a finite-difference error shows only where a
    // gradient entry is near the round-off of the differences.
    for (std::size_t k = 0; k < ref.size(); ++k)
      EXPECT_NEAR(got[off + k], ref[k], 1e-3 * o.adam.lr) << "net " << j << " param " << k;
    EXPECT_EQ(res[j].status, Status::kMaxSteps);
    EXPECT_EQ(res[j].newton_steps, o.adam.steps);
    EXPECT_LT(res[j].train_rmse, std::sqrt(mse(s, start, ds))) << "net " << j;
  }
}

}  // namespace
}  // namespace gs
