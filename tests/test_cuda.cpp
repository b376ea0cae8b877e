// The CUDA backend against the CPU backend, and one body run on both backends. Every test
// that needs a GPU skips itself where none is visible, so this binary passes on the build
// machines and proves the backend on a GPU machine.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "cpu_backend.h"
#include "cuda_backend.h"
#include "gpu_skip.h"
#include "gpusweep/data.h"
#include "gpusweep/driver.h"
#include "gpusweep/fit.h"
#include "gpusweep/solve.h"
#include "gpusweep/sweep.h"

namespace gs {
namespace {

std::unique_ptr<Backend> make_backend(const std::string& which) {
  if (which == "cuda") return std::make_unique<CudaBackend>(CudaOptions{});
  return std::make_unique<CpuBackend>(2);
}

// A batch of random networks of every arch of arch.h's table at the given widths, taking the datasets in turn.
Batch random_batch(const std::vector<const Dataset*>& data, const std::vector<int>& widths, Act act,
                   std::uint64_t seed) {
  Batch batch;
  batch.datasets = data;
  Rng rng(seed);
  int turn = 0;
  for (const ArchRow& row : kArchTable) {  // every order of gated:K and gpoly:K
    const Arch a = row_arch(row);
    for (int w : widths) {
      const int k = turn++ % static_cast<int>(data.size());
      if (poly_term_count(data[k]->d, poly_degree(a)) > kMaxPolyTerms) continue;
      const Shape s{a, act, data[k]->d, w};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, *data[k], rng.next(), th.data());
      for (auto& v : th) v += 0.05 * rng.normal();  // off the symmetric init
      batch.add(s, k, th.data());
    }
  }
  return batch;
}
Batch random_batch(const Dataset& ds, const std::vector<int>& widths, Act act, std::uint64_t seed) {
  return random_batch(std::vector<const Dataset*>{&ds}, widths, act, seed);
}

// Random points on [-1, 1]^d with a smooth target: a dataset with d > 1.
Dataset plane_dataset(int d, int n, std::uint64_t seed) {
  Rng rng(seed);
  Dataset ds;
  ds.name = "plane";
  ds.d = d;
  for (int k = 0; k < n; ++k) {
    double y = 0.0;
    for (int j = 0; j < d; ++j) {
      const double x = 2.0 * rng.uniform() - 1.0;
      ds.x_train.push_back(x);
      y += std::sin(2.0 * x + j);
    }
    ds.y_train.push_back(y);
  }
  ds.x_test = ds.x_train;
  ds.y_test = ds.y_train;
  ds.lo.assign(d, -1.0);
  ds.hi.assign(d, 1.0);
  return ds;
}

double rel_diff(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

bool close(double a, double ref, double rel) { return std::fabs(a - ref) <= rel * std::fabs(ref) + 1e-300; }

std::vector<int> all_of(const Batch& b) {
  std::vector<int> v(b.size());
  for (int i = 0; i < b.size(); ++i) v[i] = i;
  return v;
}

// One body, both backends: the assembled gradient is the derivative of the backend's own
// loss (central differences through trial_losses along each stage coordinate).
// Inputs of dimension 1, 2 and 5; relu and silu.
class AnyBackend : public ::testing::TestWithParam<std::tuple<std::string, const char*, Act>> {};

TEST_P(AnyBackend, GradientIsTheDerivativeOfItsOwnLoss) {
  const auto& [backend, target, act] = GetParam();
  if (backend == "cuda") SKIP_WITHOUT_GPU();
  Dataset ds = make_target_dataset(target, 300, 3);
  Batch batch = random_batch(ds, {3, 8}, act, 11);
  auto be = make_backend(backend);
  be->load(batch);
  const std::vector<int> nets = all_of(batch);
  std::vector<double> loss(nets.size()), sg(nets.size());
  be->assemble(nets, Block::kAll, HessianKind::kExact, loss.data(), sg.data());
  for (int i : nets) {
    std::vector<double> H, g;
    be->read_system(i, &H, &g);
    const int m = static_cast<int>(g.size());
    // Solve with a huge damping: the step is then about -S^2 g / lambda, a tiny move along
    // every coordinate at once, and the loss change along it must match g . step.
    std::vector<double> lam{1e8}, gd(1);
    std::vector<int> info(1);
    be->solve({i}, lam.data(), false, info.data(), gd.data());
    ASSERT_EQ(info[0], 0);
    ASSERT_LT(gd[0], 0.0) << "a zero gradient proves nothing";
    const double h = 1.0;
    const double alpha[2] = {h, -h};
    double lt[2];
    be->trial_losses({i}, alpha, 2, lt);
    const double fd = (lt[0] - lt[1]) / (2.0 * h);
    EXPECT_NEAR(fd, gd[0], 1e-6 * std::fabs(gd[0]) + 1e-18) << "network " << i << " m " << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, AnyBackend,
                         ::testing::Combine(::testing::Values("cpu", "cuda"),
                                            ::testing::Values("sin4", "sin_sin", "friedman1"),
                                            ::testing::Values(Act::kRelu, Act::kSilu)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param) + "_" +
                                  act_name(std::get<2>(info.param));
                         });

TEST(Cuda, NoDeviceIsOneClearError) {
  if (gs_test::gpu_visible()) GTEST_SKIP() << "a CUDA device is visible";
  try {
    CudaBackend be{CudaOptions{}};
    FAIL() << "created a CUDA backend without a device";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no CUDA device"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

// Assembled gradient and Hessian of every arch, widths 1..200, every stage, exact and
// Gauss-Newton, agree with the CPU backend to 1e-12 relative (Frobenius). Three datasets of
// different sizes and dimensions (1, 2 and 5) share the batch; relu takes the relu / 1D path
// on the 1D sets and the general one on the others.
TEST(Cuda, AssemblyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const Dataset d1 = make_target_dataset("invcos2", 2000, 1);
  const Dataset d2 = make_target_dataset("sin4", 777, 2);
  const Dataset d3 = plane_dataset(2, 501, 3);
  const Dataset d4 = make_target_dataset("friedman1", 613, 4);
  const Dataset d5 = make_target_dataset("sin_sin", 900, 5);
  for (Act act : {Act::kRelu, Act::kGelu}) {
    Batch batch = random_batch({&d1, &d2, &d3, &d4, &d5}, {1, 2, 5, 17, 64, 65, 128, 200}, act, 5);
    CpuBackend cpu(2);
    CudaBackend gpu{CudaOptions{}};
    cpu.load(batch);
    gpu.load(batch);
    for (Block stage : {Block::kD, Block::kU, Block::kQ, Block::kG, Block::kAll}) {
      for (HessianKind kind : {HessianKind::kExact, HessianKind::kGaussNewton}) {
        std::vector<int> nets;
        for (int i = 0; i < batch.size(); ++i)
          if (has_block(batch.nets[i].shape.arch, stage)) nets.push_back(i);
        std::vector<double> lc(nets.size()), lg(nets.size()), sc(nets.size()), sgg(nets.size());
        cpu.assemble(nets, stage, kind, lc.data(), sc.data());
        gpu.assemble(nets, stage, kind, lg.data(), sgg.data());
        for (std::size_t j = 0; j < nets.size(); ++j) {
          const int i = nets[j];
          const std::string where = std::string(act_name(act)) + " " + arch_name(batch.nets[i].shape.arch) +
                                    " n=" + std::to_string(batch.nets[i].shape.n) + " stage " +
                                    block_name(stage) + (kind == HessianKind::kExact ? " exact" : " gn");
          EXPECT_TRUE(close(lg[j], lc[j], 1e-12)) << where << ": loss " << lg[j] << " vs " << lc[j];
          EXPECT_TRUE(close(sgg[j], sc[j], 1e-10)) << where << ": scaled gradient " << sgg[j] << " vs " << sc[j];
          std::vector<double> Hc, gc, Hg, gg;
          cpu.read_system(i, &Hc, &gc);
          gpu.read_system(i, &Hg, &gg);
          ASSERT_EQ(Hc.size(), Hg.size()) << where;
          EXPECT_LE(rel_diff(Hg, Hc), 1e-12) << where;
          EXPECT_LE(rel_diff(gg, gc), 1e-12) << where;
        }
      }
    }
  }
}

// Adam's passes: the device's loss and gradient over all parameters against the CPU
// backend's (which tests/test_adam.cpp checks against finite differences), and theta moved by
// add_params and replaced by set_params exactly as on the host.
TEST(Cuda, GradientPassAndParameterUpdatesMatchCpu) {
  SKIP_WITHOUT_GPU();
  const Dataset d1 = make_target_dataset("invcos2", 700, 2);
  const Dataset d2 = plane_dataset(2, 300, 4);
  for (Act act : {Act::kRelu, Act::kSilu}) {
    const Batch batch = random_batch({&d1, &d2}, {1, 4, 17}, act, 12);
    CpuBackend cpu(2);
    CudaBackend gpu{CudaOptions{}};
    cpu.load(batch);
    gpu.load(batch);
    std::vector<int> nets = all_of(batch);
    std::reverse(nets.begin(), nets.end());  // packed in list order, not batch order
    const std::size_t total = packed_offsets(batch.nets, nets).back();
    std::vector<double> lc(nets.size()), lg(nets.size()), gc(total), gg(total);
    cpu.gradient(nets, lc.data(), gc.data());
    gpu.gradient(nets, lg.data(), gg.data());
    for (std::size_t j = 0; j < nets.size(); ++j)
      EXPECT_TRUE(close(lg[j], lc[j], 1e-12)) << "network " << nets[j] << ": " << lg[j] << " vs " << lc[j];
    EXPECT_LE(rel_diff(gg, gc), 1e-11) << act_name(act);
    Rng rng(5);
    std::vector<double> delta(total), values(total);
    for (auto& v : delta) v = 1e-3 * rng.normal();
    for (auto& v : values) v = rng.normal();
    std::vector<double> pc, pg;
    cpu.add_params(nets, delta.data());
    gpu.add_params(nets, delta.data());
    cpu.read_params(pc);
    gpu.read_params(pg);
    EXPECT_EQ(pg, pc);
    const std::vector<int> half(nets.begin(), nets.begin() + nets.size() / 2);
    cpu.set_params(half, values.data());
    gpu.set_params(half, values.data());
    cpu.read_params(pc);
    gpu.read_params(pg);
    EXPECT_EQ(pg, pc);
  }
}

// The damped solve on the device agrees with LAPACK on the same systems, and reports the
// same per-matrix info for the indefinite ones.
TEST(Cuda, DampedSolveMatchesLapack) {
  SKIP_WITHOUT_GPU();
  Dataset ds = make_target_dataset("invcos2", 1000, 2);
  Batch batch = random_batch(ds, {1, 3, 8, 40, 90, 200}, Act::kRelu, 9);
  for (int loop_min : {0, 64}) {
    CpuBackend cpu(2);
    CudaOptions o;
    o.potrf_loop_min = loop_min;
    CudaBackend gpu{o};
    cpu.load(batch);
    gpu.load(batch);
    const std::vector<int> nets = all_of(batch);
    std::vector<double> l(nets.size()), s(nets.size());
    cpu.assemble(nets, Block::kAll, HessianKind::kExact, l.data(), s.data());
    gpu.assemble(nets, Block::kAll, HessianKind::kExact, l.data(), s.data());
    // Damping well above round-off: at 1e-9 the near-singular MASO systems make info and
    // g . step depend on the last bits of H.
    for (double lam : {1e-3, 1.0}) {
      for (bool values : {false, true}) {
        std::vector<double> lams(nets.size(), lam), gc(nets.size()), gg(nets.size());
        std::vector<int> ic(nets.size()), ig(nets.size());
        cpu.solve(nets, lams.data(), values, ic.data(), gc.data());
        gpu.solve(nets, lams.data(), values, ig.data(), gg.data());
        const std::string where = " lambda " + std::to_string(lam) + (values ? " values" : " step") +
                                  " loop_min " + std::to_string(loop_min);
        for (std::size_t j = 0; j < nets.size(); ++j) {
          EXPECT_EQ(ig[j] == 0, ic[j] == 0) << "network " << j << where;
          if (ic[j] == 0 && ig[j] == 0)
            EXPECT_TRUE(close(gg[j], gc[j], 1e-8)) << "network " << j << where << ": " << gg[j] << " vs " << gc[j];
        }
      }
    }
  }
}

// One plain Newton step of the ALL stage from identical parameters (no projection, so the
// same math on both backends: assembly, damped Cholesky, line search): RMSE to 1e-8 relative
// and the status exactly.
void expect_same_step(SweepSpec spec) {
  spec.train.schedule = parse_schedule("ALL*1");
  spec.train.project = false;
  // Damping well above round-off, as in DampedSolveMatchesLapack.
  spec.train.lambda_init = 1e-3;
  const auto jobs = make_jobs(spec);
  CpuBackend cpu(0);
  CudaBackend gpu{CudaOptions{}};
  const auto rc = run_sweep(spec, jobs, cpu);
  const auto rg = run_sweep(spec, jobs, gpu);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const std::string where = spec.datasets[jobs[j].target].name + " " + arch_name(jobs[j].arch) + " " +
                              act_name(jobs[j].act) + " n=" + std::to_string(jobs[j].width) + " seed " +
                              std::to_string(jobs[j].seed);
    EXPECT_EQ(rg[j].status, rc[j].status) << where << ": " << rg[j].reason << " vs " << rc[j].reason;
    EXPECT_TRUE(close(rg[j].train_rmse, rc[j].train_rmse, 1e-8)) << where << ": " << rg[j].train_rmse << " vs " << rc[j].train_rmse;
    EXPECT_TRUE(close(rg[j].test_rmse, rc[j].test_rmse, 1e-8)) << where << ": " << rg[j].test_rmse << " vs " << rc[j].test_rmse;
  }
}

// Whole runs of the cascade: after a few steps rounding alone parts the trajectories of
// near-singular systems (sorting the points differently moves RMSEs by up to 2.4e-6 after
// three steps on the CPU alone), so they compare statistically. Per arch and activation the
// median GPU/CPU RMSE ratio is within 10%, and no network fails on one backend alone.
void expect_similar_training(const SweepSpec& spec) {
  const auto jobs = make_jobs(spec);
  CpuBackend cpu(0);
  CudaBackend gpu{CudaOptions{}};
  const auto rc = run_sweep(spec, jobs, cpu);
  const auto rg = run_sweep(spec, jobs, gpu);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (Act act : spec.acts) {
      std::vector<double> ratio;
      for (std::size_t j = 0; j < jobs.size(); ++j) {
        if (jobs[j].arch != a || jobs[j].act != act) continue;
        EXPECT_EQ(rg[j].status == Status::kFailed, rc[j].status == Status::kFailed)
            << arch_name(a) << " " << act_name(act) << " n=" << jobs[j].width << ": " << rg[j].reason
            << " vs " << rc[j].reason;
        if (rc[j].status != Status::kFailed && rg[j].status != Status::kFailed)
          ratio.push_back(rg[j].train_rmse / rc[j].train_rmse);
      }
      if (ratio.empty()) continue;  // an arch the spec does not train
      std::sort(ratio.begin(), ratio.end());
      const double med = ratio[ratio.size() / 2];
      EXPECT_NEAR(med, 1.0, 0.1) << arch_name(a) << " " << act_name(act);
    }
}

TEST(Cuda, OneNewtonStepMatchesCpu) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 2000, 0));
  spec.datasets.push_back(make_target_dataset("sin_sin", 1500, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu, Act::kSilu};
  spec.widths = {1, 2, 4, 9, 33, 100, 200};
  spec.seeds = 2;
  expect_same_step(spec);
}

TEST(Cuda, NewtonStepsMatchCpuStatistically) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 2000, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu, Act::kSilu};
  spec.widths = {1, 2, 4, 9, 33, 100, 200};
  spec.seeds = 2;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*3");
  spec.train.variable_projection = false;  // the CUDA backend alternates
  expect_similar_training(spec);
}

// The same in d = 2 and d = 5, where every activation takes the general assembly.
TEST(Cuda, NewtonStepsMatchCpuInHigherDimensions) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin_sin", 1500, 0));
  spec.datasets.push_back(make_target_dataset("friedman1", 1200, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu, Act::kGelu};
  spec.widths = {1, 3, 16, 40};
  spec.seeds = 2;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*3");
  spec.train.variable_projection = false;  // the CUDA backend alternates
  expect_similar_training(spec);
}

// The slopes of a whole sweep agree within 0.05.
TEST(Cuda, SweepSlopesMatchCpu) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 2000, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu};
  for (int w = 4; w <= 32; ++w) spec.widths.push_back(w);
  spec.seeds = 2;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*100");
  spec.train.variable_projection = false;  // the CUDA backend alternates
  const auto jobs = make_jobs(spec);
  CpuBackend cpu(0);
  CudaBackend gpu{CudaOptions{}};
  const auto fc = fit_groups(spec, jobs, run_sweep(spec, jobs, cpu), 4);
  const auto fg = fit_groups(spec, jobs, run_sweep(spec, jobs, gpu), 4);
  ASSERT_EQ(fc.size(), fg.size());
  for (std::size_t k = 0; k < fc.size(); ++k) {
    ASSERT_TRUE(fc[k].ok && fg[k].ok) << fc[k].arch;
    EXPECT_NEAR(fg[k].vs_width.slope, fc[k].vs_width.slope, 0.05) << fc[k].arch;
    EXPECT_NEAR(fg[k].vs_params.slope, fc[k].vs_params.slope, 0.05) << fc[k].arch;
  }
}

// The device memory a loaded batch takes, after a full step, stays within the plan's estimate
// (plus the datasets, allocation granularity and cuSOLVER, in a fixed 128 MiB allowance).
TEST(Cuda, MemoryUseStaysWithinTheEstimate) {
  SKIP_WITHOUT_GPU();
  const Dataset ds = make_target_dataset("invcos2", 10000, 0);
  Batch batch = random_batch(ds, {1, 50, 200}, Act::kRelu, 4);
  std::size_t estimate = 0;
  for (const auto& nd : batch.nets) estimate += cuda_bytes_per_network(num_params(nd.shape), 20000);
  CudaBackend gpu{CudaOptions{}};
  std::size_t free0 = 0, free1 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  gpu.load(batch);
  std::vector<int> nets = all_of(batch);
  std::vector<double> l(nets.size()), sg(nets.size()), gd(nets.size()), lam(nets.size(), 1.0), tl(8 * nets.size());
  std::vector<int> info(nets.size());
  gpu.assemble(nets, Block::kAll, HessianKind::kExact, l.data(), sg.data());
  gpu.solve(nets, lam.data(), false, info.data(), gd.data());
  const double alphas[8] = {1, 0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2048};
  gpu.trial_losses(nets, alphas, 8, tl.data());
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  const std::size_t used = free0 > free1 ? free0 - free1 : 0;
  EXPECT_LE(used, estimate + (std::size_t(128) << 20)) << "estimate " << estimate;
}

// Chunks planned from a card's free memory hold every network of the full sweep, on a small
// card and on an 80 GB one, and never exceed the budget. Plain arithmetic: runs everywhere.
TEST(CudaPlan, FullSweepFitsSmallAndLargeCards) {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", 10000, 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu};
  for (int w = 1; w <= 200; ++w) spec.widths.push_back(w);
  spec.seeds = 32;
  const auto jobs = make_jobs(spec);
  ASSERT_EQ(jobs.size(), 19200u);
  const int pts = max_points(spec.datasets);
  for (double gib : {4.0, 79.0}) {
    const std::size_t budget = cuda_memory_budget(static_cast<std::size_t>(gib * 1073741824.0), 0.85);
    const auto bytes = [&](int p) { return cuda_bytes_per_network(p, pts); };
    const auto chunks = plan_chunks(jobs, {1}, budget, bytes);
    std::size_t total = 0;
    for (const auto& c : chunks) total += c.size();
    EXPECT_EQ(total, jobs.size());
    std::printf("%.0f GiB card: %zu chunks\n", gib, chunks.size());
  }
  // The largest network (gqu, width 200: P = 1401) needs about 32 MiB.
  EXPECT_LT(cuda_bytes_per_network(1401, 20000), std::size_t(40) << 20);
}

}  // namespace
}  // namespace gs
