// The CUDA backend against the CPU backend, and one body run on both backends. Every test
// that needs a GPU skips itself where none is visible, so this binary passes on the build
// machines and proves the backend on a GPU machine.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu_backend.h"
#include "batch_kernels.h"
#include "var_pro_kernels.h"
#ifdef GPUSWEEP_EMULATE_CUDA
#include "cuda_emu/copies.h"
#endif
#include "cuda_backend.h"
#include "cuda_owners.h"
#include "gpu_skip.h"
#include "gpusweep/analysis/fit.h"
#include "gpusweep/model/data.h"
#include "gpusweep/solver/host_solver.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/solver/least_squares.h"
#include "gpusweep/solver/var_pro.h"
#include "gpusweep/solver/solve.h"
#include "gpusweep/train/driver.h"
#include "gpusweep/train/sweep.h"
#include "gpusweep/util/csv.h"
#include "program.h"
#include "train_one.h"

namespace gs {
namespace {

using gs_test::sized;

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

// LAPACK's damped solve (gs::damped_solve) of network i's system exactly as the backend
// assembled it (read_system), with the 1-norm condition number of the damped matrix
// (dpocon; infinite when it is not positive definite). Against the same system, the device
// solve may differ from it by rounding amplified by that condition number, and no more.
extern "C" void dpocon_(const char* uplo, const int* n, const double* a, const int* lda, const double* anorm,
                        double* rcond, double* work, int* iwork, int* info);
struct LapackSolve {
  int info;
  double gdotp;
  double cond;
};
LapackSolve lapack_solve(Backend& be, int i, double lambda) {
  std::vector<double> H, g;
  be.read_system(i, &H, &g);
  const int m = static_cast<int>(g.size());
  std::vector<double> scale(m), work(static_cast<std::size_t>(m) * m), step(m);
  jacobi_scale(m, H.data(), g.data(), scale.data());
  // The 1-norm of A = S H S + lambda I (singular rows: identity), before damped_solve
  // overwrites work with its factor.
  double anorm = 0.0;
  for (int j = 0; j < m; ++j) {
    double col = 0.0;
    for (int r = 0; r < m; ++r) {
      double a = scale[r] * H[r + static_cast<std::size_t>(j) * m] * scale[j];
      if (r == j) a = scale[j] == 0.0 ? 1.0 : a + lambda;
      else if (scale[j] == 0.0 || scale[r] == 0.0) a = 0.0;
      col += std::fabs(a);
    }
    anorm = std::max(anorm, col);
  }
  LapackSolve out{0, NAN, INFINITY};
  out.info = damped_solve(m, H.data(), g.data(), scale.data(), lambda, work.data(), step.data(), &out.gdotp);
  if (out.info == 0) {
    double rcond = 0.0;
    std::vector<double> w3(3 * static_cast<std::size_t>(m));
    std::vector<int> iw(m);
    int inf = 0;
    dpocon_("L", &m, work.data(), &m, &anorm, &rcond, w3.data(), iw.data(), &inf);
    EXPECT_EQ(inf, 0);
    out.cond = rcond > 0.0 ? 1.0 / rcond : INFINITY;
  }
  return out;
}

// The tolerance of a device solve against LAPACK's on the same system of size m.
double solve_tol(int m, double cond) { return 1e-10 + 1e-15 * m * cond; }

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
    be->solve({i}, lam.data(), info.data(), gd.data());
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

// var_pro_solve reads the assembly of the ALL stage: after an assembly of another stage it
// refuses, even when an operation on all parameters (gradient, add_params) came between, and
// after a least-squares solve it refuses until the next assembly.
TEST(Cuda, VarProSolveNeedsAnAssemblyOfAll) {
  for (const std::string backend : {"cpu", "cuda"}) {
    if (backend == "cuda" && !gs_test::gpu_visible()) continue;
    const Dataset ds = make_target_dataset("invcos2", 200, 1);
    const Batch batch = random_batch(ds, {3, 5}, Act::kRelu, 7);
    auto be = make_backend(backend);
    be->load(batch);
    const std::vector<int> nets = all_of(batch);
    const std::size_t n = nets.size();
    std::vector<double> loss(n), sg(n), lambda(n, 1e-3), grad(batch.params.size());
    std::vector<int> info(n), rank(n);
    std::vector<StepModel> model(n);
    be->assemble(nets, Block::kD, HessianKind::kExact, loss.data(), sg.data());
    be->gradient(nets, loss.data(), grad.data());
    const std::vector<double> zero(batch.params.size(), 0.0);
    be->add_params(nets, zero.data());
    EXPECT_THROW(be->var_pro_solve(nets, lambda.data(), info.data(), model.data()), std::logic_error) << backend;
    be->assemble(nets, Block::kAll, HessianKind::kDiagonal, loss.data(), sg.data());
    be->least_squares(nets, Block::kD, rank.data(), loss.data());
    EXPECT_THROW(be->var_pro_solve(nets, lambda.data(), info.data(), model.data()), std::logic_error) << backend;
    be->assemble(nets, Block::kAll, HessianKind::kDiagonal, loss.data(), sg.data());
    EXPECT_NO_THROW(be->var_pro_solve(nets, lambda.data(), info.data(), model.data())) << backend;
  }
}

TEST(Cuda, NoDeviceIsOneClearError) {
  if (gs_test::gpu_visible() && !gs_test::HiddenDevices::can_hide())
    GTEST_SKIP() << "a CUDA device is visible, and its runtime cannot hide it after start-up";
  gs_test::HiddenDevices hidden;
  try {
    CudaBackend be{CudaOptions{}};
    FAIL() << "created a CUDA backend without a device";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no CUDA device"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

// Assembled gradient and Hessian of every arch, widths 1..200, every stage, exact, Gauss-Newton
// and diagonal (a relu 1D network's then holds only the diagonal, the others' the Gauss-Newton
// Hessian), agree with the CPU backend to 1e-12 relative (Frobenius). Three datasets of
// different sizes and dimensions (1, 2 and 5) share the batch; relu takes the relu / 1D path
// on the 1D sets and the general one on the others. The general J^T J five ways: Jacobian
// rows 256 points at a time (the default), 7 at a time in groups so small that most hold one
// network, each with the tile kernel and with cuBLAS's grouped GEMM, and the tile kernel that
// evaluates its own entries. The emulated device takes widths up to 33 (systems of up to
// 1000 parameters: many 64 x 64 tiles, most of them cut at the system's edge) on fewer points;
// the order of its widths deals the datasets so that some system is a whole number of tiles
// and another one row more (checked below).
TEST(Cuda, AssemblyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const Dataset d1 = make_target_dataset("invcos2", sized(2000, 400), 1);
  const Dataset d2 = make_target_dataset("sin4", sized(777, 200), 2);
  const Dataset d3 = plane_dataset(2, sized(501, 151), 3);
  const Dataset d4 = make_target_dataset("friedman1", sized(613, 163), 4);
  const Dataset d5 = make_target_dataset("sin_sin", sized(900, 200), 5);
  const std::vector<int> widths = sized<std::vector<int>>({1, 2, 5, 17, 64, 65, 128, 200}, {1, 2, 5, 17, 16, 33});
  std::vector<std::pair<std::string, CudaOptions>> modes(5);
  modes[0].first = "rows of 256";
  modes[1].first = "rows of 7 in groups of 64 KiB";
  modes[1].second.jacobian_rows = 7;
  modes[1].second.jacobian_group_bytes = 64 << 10;
  modes[2].first = "grouped GEMM on rows of 256";
  modes[2].second.jtj_gemm = true;
  modes[3].first = "grouped GEMM on rows of 7 in groups of 64 KiB";
  modes[3].second = modes[1].second;
  modes[3].second.jtj_gemm = true;
  modes[4].first = "tiles";
  modes[4].second.jacobian_rows = 0;
  for (Act act : {Act::kRelu, Act::kGelu}) {
    Batch batch = random_batch({&d1, &d2, &d3, &d4, &d5}, widths, act, 5);
    // The tiles' edge cases are among the systems: a size that is a whole number of 64-wide
    // tiles, and one a single row past it.
    std::set<int> edges;
    std::string sizes;
    for (const NetDesc& nd : batch.nets)
      for (Block stage : {Block::kD, Block::kU, Block::kQ, Block::kG, Block::kAll}) {
        if (!has_block(nd.shape.arch, stage)) continue;
        int b = 0, e = 0;
        stage_range(nd.shape, stage, &b, &e);
        if (e - b >= 64 && (e - b) % 64 <= 1) edges.insert((e - b) % 64);
        sizes += " " + std::to_string(e - b);
      }
    ASSERT_EQ(edges.size(), 2u) << "no system of 64 k or 64 k + 1 parameters among" << sizes;
    CpuBackend cpu(2);
    cpu.load(batch);
    std::vector<std::unique_ptr<CudaBackend>> gpus;
    for (const auto& mode : modes) {
      gpus.push_back(std::make_unique<CudaBackend>(mode.second));
      gpus.back()->load(batch);
    }
    for (Block stage : {Block::kD, Block::kU, Block::kQ, Block::kG, Block::kAll}) {
      for (HessianKind kind : {HessianKind::kExact, HessianKind::kGaussNewton, HessianKind::kDiagonal}) {
        std::vector<int> nets;
        for (int i = 0; i < batch.size(); ++i)
          if (has_block(batch.nets[i].shape.arch, stage)) nets.push_back(i);
        std::vector<double> lc(nets.size()), lg(nets.size()), sc(nets.size()), sgg(nets.size());
        cpu.assemble(nets, stage, kind, lc.data(), sc.data());
        for (std::size_t g = 0; g < gpus.size(); ++g) {
          CudaBackend& gpu = *gpus[g];
          gpu.assemble(nets, stage, kind, lg.data(), sgg.data());
          for (std::size_t j = 0; j < nets.size(); ++j) {
            const int i = nets[j];
            const std::string where = modes[g].first + ": " + act_name(act) + " " +
                                      arch_name(batch.nets[i].shape.arch) + " n=" +
                                      std::to_string(batch.nets[i].shape.n) + " stage " + block_name(stage) +
                                      (kind == HessianKind::kExact         ? " exact"
                                       : kind == HessianKind::kGaussNewton ? " gn"
                                                                           : " diagonal");
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

// The solver's host half on the CUDA backend: least squares of a linear stage and the
// variable-projection step (of every network: device_var_pro off), trial and accept, against
// host_solver.h applied by the test to what the device holds (read_params, read_system), with
// the Hessians copied back in several groups and the networks listed out of batch order. This
// checks the copies and offsets; the math itself is the CPU backend's (test_var_pro,
// test_least_squares check it against finite differences and LAPACK's SVD solver) and whole
// runs compare with the CPU below.
TEST(Cuda, SolverHostHalfActsOnTheDeviceSystems) {
  SKIP_WITHOUT_GPU();
  const Dataset d1 = make_target_dataset("invcos2", 900, 2);
  const Dataset d2 = plane_dataset(2, 400, 4);
  for (Act act : {Act::kRelu, Act::kSilu}) {
    const Batch batch = random_batch({&d1, &d2}, {1, 4, 17, 60}, act, 21);
    CudaOptions o;
    o.host_threads = 2;
    o.host_system_bytes = 200000;  // a few networks per group
    o.device_var_pro = false;
    CudaBackend gpu{o};
    gpu.load(batch);
    HostSolver host;
    host.load(batch);
    HostSolver::Workspace w;
    std::vector<int> nets = all_of(batch);
    std::reverse(nets.begin(), nets.end());
    const int count = static_cast<int>(nets.size());

    // Least squares of stage D: rank, loss and the step that apply_step takes.
    std::vector<int> lin;
    for (int i : nets)
      if (has_block(batch.nets[i].shape.arch, Block::kD)) lin.push_back(i);
    std::vector<double> theta, after;
    gpu.read_params(theta);
    std::vector<int> rank(lin.size());
    std::vector<double> loss(lin.size());
    gpu.least_squares(lin, Block::kD, rank.data(), loss.data());
    const std::vector<double> ones(lin.size(), 1.0);
    gpu.apply_step(lin, ones.data());
    gpu.read_params(after);
    std::vector<double> expect = theta;
    for (std::size_t j = 0; j < lin.size(); ++j) {
      const NetDesc& nd = batch.nets[lin[j]];
      int b, e;
      stage_range(nd.shape, Block::kD, &b, &e);
      std::vector<double> step(e - b);
      double l = 0.0;
      EXPECT_EQ(rank[j], host.stage_step(lin[j], theta.data() + nd.offset, b, e, step.data(), &l, w));
      EXPECT_TRUE(close(loss[j], l, 1e-13)) << loss[j] << " vs " << l;
      for (int q = b; q < e; ++q) expect[nd.offset + q] = theta[nd.offset + q] + step[q - b];
    }
    // The same LAPACK calls on the same bytes; only a threaded BLAS in the test's own thread
    // could round differently.
    EXPECT_LE(rel_diff(after, expect), 1e-13) << act_name(act);

    // Variable projection after an exact ALL assembly.
    std::vector<double> l0(count), sg(count), lambda(count), trial_loss(count);
    std::vector<StepModel> model(count);
    std::vector<int> info(count);
    gpu.assemble(nets, Block::kAll, HessianKind::kExact, l0.data(), sg.data());
    std::vector<double> H, g;
    std::vector<std::vector<double>> systems, grads;
    for (int i : nets) {
      gpu.read_system(i, &H, &g);
      systems.push_back(H);
      grads.push_back(g);
    }
    // The step and its trial, then a damping retry (no assembly in between: the backend solves
    // the system it kept, and the parameters, step and scale it holds) and its trial.
    gpu.read_params(theta);
    expect = theta;
    for (double factor : {1.0, 10.0}) {
      for (int j = 0; j < count; ++j) lambda[j] = factor * 1e-3 * (1 + j % 3);
      gpu.var_pro_solve(nets, lambda.data(), info.data(), model.data());
      gpu.var_pro_trial(nets, true, trial_loss.data());
      for (int j = 0; j < count; ++j) {
        const NetDesc& nd = batch.nets[nets[j]];
        const int p = num_params(nd.shape);
        const std::string where = std::string(act_name(act)) + " " + arch_name(nd.shape.arch) +
                                  " n=" + std::to_string(nd.shape.n) + " lambda x" + std::to_string(factor);
        std::vector<double> scale(p), step(p), trial(p);
        jacobi_scale(p, systems[j].data(), grads[j].data(), scale.data());
        StepModel pr;
        ReducedSystem sys;
        host.var_pro_system(nets[j], theta.data() + nd.offset, systems[j].data(), scale.data(), &sys, w);
        const int inf = reduced_solve(p, scale.data(), sys, lambda[j], w.work, step.data(), &pr);
        EXPECT_EQ(info[j], inf) << where;
        if (inf == 0) {
          EXPECT_TRUE(close(model[j].pred, pr.pred, 1e-12)) << where << ": " << model[j].pred << " vs " << pr.pred;
          EXPECT_TRUE(close(model[j].slope, pr.slope, 1e-12)) << where;
          EXPECT_TRUE(close(model[j].curvature, pr.curvature, 1e-12)) << where;
        }
        const double tl = host.var_pro_trial(nets[j], theta.data() + nd.offset, step.data(), trial.data(), w);
        EXPECT_TRUE(close(trial_loss[j], tl, 1e-12)) << where << ": " << trial_loss[j] << " vs " << tl;
        std::copy(trial.begin(), trial.end(), expect.begin() + nd.offset);
      }
    }
    // Accept every other network's trial: the rest keep their parameters.
    std::vector<int> half;
    for (int j = 0; j < count; j += 2) half.push_back(nets[j]);
    for (int j = 1; j < count; j += 2) {
      const NetDesc& nd = batch.nets[nets[j]];
      std::copy(theta.begin() + nd.offset, theta.begin() + nd.offset + num_params(nd.shape), expect.begin() + nd.offset);
    }
    gpu.var_pro_accept(half);
    gpu.read_params(after);
    EXPECT_LE(rel_diff(after, expect), 1e-12) << act_name(act);

    // A trial without the step: the linear parameters solved at the current ones.
    gpu.read_params(theta);
    gpu.var_pro_trial(nets, false, trial_loss.data());
    gpu.var_pro_accept(nets);
    gpu.read_params(after);
    expect = theta;
    for (int j = 0; j < count; ++j) {
      const NetDesc& nd = batch.nets[nets[j]];
      std::vector<double> trial(num_params(nd.shape));
      const double tl = host.var_pro_trial(nets[j], theta.data() + nd.offset, nullptr, trial.data(), w);
      EXPECT_TRUE(close(trial_loss[j], tl, 1e-12)) << trial_loss[j] << " vs " << tl;
      std::copy(trial.begin(), trial.end(), expect.begin() + nd.offset);
    }
    EXPECT_LE(rel_diff(after, expect), 1e-12) << act_name(act);

    // add_params moves the parameters and leaves delta as the step on the device: a trial of
    // that step starts from the moved parameters (the host copies it held are stale).
    gpu.read_params(theta);
    std::vector<double> delta;
    for (int i : nets) {
      const NetDesc& nd = batch.nets[i];
      for (int q = 0; q < num_params(nd.shape); ++q) delta.push_back(1e-4 * theta[nd.offset + q]);
    }
    gpu.add_params(nets, delta.data());
    gpu.var_pro_trial(nets, true, trial_loss.data());
    for (int j = 0, at = 0; j < count; ++j) {
      const NetDesc& nd = batch.nets[nets[j]];
      const int p = num_params(nd.shape);
      std::vector<double> moved(theta.begin() + nd.offset, theta.begin() + nd.offset + p), trial(p);
      for (int q = 0; q < p; ++q) moved[q] += delta[at + q];
      const double tl = host.var_pro_trial(nets[j], moved.data(), delta.data() + at, trial.data(), w);
      EXPECT_TRUE(close(trial_loss[j], tl, 1e-12)) << trial_loss[j] << " vs " << tl;
      at += p;
    }
  }
}

// Relu networks on 1D inputs like those the ALL stage meets: mlp, glu and gqu of each width, in
// that order, MASO-initialized and perturbed (rng), then trained on the host by schedule.
std::vector<std::pair<Shape, std::vector<double>>> trained_like(const Dataset& ds, const std::vector<int>& widths,
                                                               Rng& rng, const char* schedule) {
  std::vector<std::pair<Shape, std::vector<double>>> out;
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int n : widths) {
      const Shape s{a, Act::kRelu, 1, n};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, rng.next(), th.data());
      for (auto& v : th) v += 0.05 * rng.normal();
      out.emplace_back(s, train_one(s, ds, th, schedule));
    }
  return out;
}

// Copies a neuron whose kink lies inside the data of ds onto another such neuron: two equal main
// linear columns. False where th has fewer than two such neurons.
bool copy_inside_neuron(const Shape& s, const Dataset& ds, double* th) {
  Batch one;
  one.datasets.push_back(&ds);
  one.add(s, 0, th);
  HostSolver h;
  h.load(one);
  std::vector<int> inside;
  for (int i = 0; i < s.n; ++i)
    if (kink_place(s, th, h.points1d(0), i) == EdgeKind::kInside) inside.push_back(i);
  if (inside.size() < 2) return false;
  for (int k = 0; k < neuron_num_params(s); ++k)
    th[neuron_param_index(s, inside[1], k)] = th[neuron_param_index(s, inside[0], k)];
  return true;
}

// Variable projection of relu 1D networks on the device (device_var_pro, var_pro_kernels.h)
// against the host half (device_var_pro off), both on the CUDA backend, from trained-like
// starts of the mlp, the glu and the gqu: the step's info and model and the trial's loss of a
// first try and of a damping retry, then the parameters after accepting half of the trials.
// The device builds the systems in groups (device_system_bytes small) and keeps the last
// group's for the retry; one network has two equal neurons, whose linear columns the device
// finds dependent and sends to the host. The two differ by
// rounding amplified by the conditioning of the linear columns and by 1 / lambda; at these
// widths (condition numbers to about 1e4) they agree to 1.5e-6 at most (the trial loss of the
// gqu of width 17; its model to 5e-8, the mlp's and glu's to 1e-13); at width 40 (1e9) the
// steps differ by percents, both within rounding of the reduced system, which
// VarProSystemPartsMatchTheHost bounds against the condition number.
TEST(Cuda, VarProOnTheDeviceMatchesTheHostHalf) {
  SKIP_WITHOUT_GPU();
  const Dataset ds = make_target_dataset("invcos2", sized(2000, 500), 3);
  Batch batch;
  batch.datasets.push_back(&ds);
  Rng rng(23);
  for (auto& [s, th] : trained_like(ds, {1, 4, 9, 17}, rng, "D,U,Q,G,ALL*4")) {
    // In the gqu of width 9, two equal neurons whose kinks lie inside the data.
    if (s.arch == Arch::kGqu && s.n == 9) ASSERT_TRUE(copy_inside_neuron(s, ds, th.data()));
    batch.add(s, 0, th.data());
  }
  CudaOptions on, off;
  on.device_system_bytes = 200000;  // a few networks per group
  off.device_var_pro = false;
  CudaBackend dev{on}, hst{off};
  CudaBackend* both[2] = {&dev, &hst};
  std::vector<int> nets = all_of(batch);
  std::reverse(nets.begin(), nets.end());
  const int count = static_cast<int>(nets.size());
  std::vector<double> l0(count), sg(count), lambda(count), trial[2], after[2];
  std::vector<int> info[2];
  std::vector<StepModel> model[2];
  for (CudaBackend* be : both) {
    be->load(batch);
    be->assemble(nets, Block::kAll, HessianKind::kDiagonal, l0.data(), sg.data());
  }
  int compared = 0;
  for (double factor : {1.0, 10.0}) {
    for (int j = 0; j < count; ++j) lambda[j] = factor * 1e-3 * (1 + j % 3);
    for (int k = 0; k < 2; ++k) {
      info[k].assign(count, -1);
      model[k].assign(count, StepModel{});
      trial[k].assign(count, NAN);
      both[k]->var_pro_solve(nets, lambda.data(), info[k].data(), model[k].data());
      both[k]->var_pro_trial(nets, true, trial[k].data());
    }
    for (int j = 0; j < count; ++j) {
      const NetDesc& nd = batch.nets[nets[j]];
      const std::string where = std::string(arch_name(nd.shape.arch)) + " n=" + std::to_string(nd.shape.n) +
                                " lambda x" + std::to_string(factor);
      EXPECT_EQ(info[0][j], info[1][j]) << where;
      if (info[0][j] != 0 || info[1][j] != 0) continue;
      ++compared;
      EXPECT_TRUE(close(model[0][j].pred, model[1][j].pred, 1e-5)) << where;
      EXPECT_TRUE(close(model[0][j].slope, model[1][j].slope, 1e-5)) << where;
      EXPECT_NEAR(model[0][j].curvature, model[1][j].curvature,
                  1e-5 * (std::fabs(model[1][j].curvature) + model[1][j].pred))
          << where;
      EXPECT_TRUE(close(trial[0][j], trial[1][j], 1e-5)) << where << ": " << trial[0][j] << " vs " << trial[1][j];
    }
  }
  EXPECT_GT(compared, count);
  std::vector<int> half;
  for (int j = 0; j < count; j += 2) half.push_back(nets[j]);
  for (int k = 0; k < 2; ++k) {
    both[k]->var_pro_accept(half);
    both[k]->read_params(after[k]);
  }
  EXPECT_LE(rel_diff(after[0], after[1]), 1e-5);
  // The device sent the copied neuron's network to the host at the first try, and no other; the
  // host solved it again at the retry on the system it kept; the retry solved the last group's
  // systems again without building them, the others anew.
  EXPECT_EQ(dev.stats().dependent_systems, 1);
  EXPECT_EQ(dev.stats().host_systems, 2);
  EXPECT_EQ(hst.stats().dependent_systems, 0);
  EXPECT_GT(dev.stats().kept_systems, 0);
  EXPECT_LT(dev.stats().kept_systems, count);
}

// The trial of variable projection on the device (the parameters theta with the linear ones
// solved again, and its loss) against the host's (HostSolver::var_pro_trial: LAPACK's
// Householder QR, or dgelsd where the main columns are dependent), at parameters that take
// every path: trained-like networks, and networks with neurons outside the data on all of it
// (global columns, dependent: the least-norm solution), off on all of it (zero columns), thin
// (pushed out first), and a network with two equal inside neurons (dependent main columns: the
// host takes it, counted).
TEST(Cuda, VarProTrialOnTheDeviceMatchesTheHost) {
  SKIP_WITHOUT_GPU();
  const Dataset ds = make_target_dataset("invcos2", sized(2000, 500), 5);
  Batch batch;
  batch.datasets.push_back(&ds);
  Rng rng(29);
  std::vector<double> xs = ds.x_train;
  std::sort(xs.begin(), xs.end());
  const double lo = ds.lo[0], hi = ds.hi[0];
  for (auto& [s, th] : trained_like(ds, {1, 4, 9, 17, 40}, rng, "D,U,Q,G,ALL*2")) {
    if (s.n == 9 || (s.arch == Arch::kGlu && s.n == 17)) {
      // Neurons 0-2 on all of the data, 3 off on all of it, 4 and 5 thin (on at all but three
      // points, and at three only).
      auto set_kink = [&, &s = s, &th = th](int i, double W, double kink) {
        th[factor_offset(s, 0) + i] = W;
        th[factor_offset(s, 0) + s.n + i] = -W * kink;
      };
      for (int i = 0; i < 3; ++i) set_kink(i, 1.0 + 0.5 * i, lo - 0.3 * (i + 1));
      set_kink(3, 2.0, hi + 0.5);
      set_kink(4, 1.5, 0.5 * (xs[2] + xs[3]));
      set_kink(5, -1.5, 0.5 * (xs[2] + xs[3]));
    }
    batch.add(s, 0, th.data());
    if (s.arch == Arch::kGqu && s.n == 17) {
      // The same network with two equal neurons whose kinks lie inside the data.
      ASSERT_TRUE(copy_inside_neuron(s, ds, th.data()));
      batch.add(s, 0, th.data());
    }
  }
  const int count = batch.size();
  HostSolver host;
  host.load(batch);
  HostSolver::Workspace w;
  std::vector<double> ref_loss(count);
  std::vector<std::vector<double>> ref(count);
  long long host_dependent = 0;  // the host's dgelsd fallbacks
  for (int i = 0; i < count; ++i) {
    const NetDesc& nd = batch.nets[i];
    ref[i].resize(num_params(nd.shape));
    const long long f0 = w.lss.fallbacks;
    ref_loss[i] = host.var_pro_trial(i, batch.params.data() + nd.offset, nullptr, ref[i].data(), w, 1.0, nullptr);
    host_dependent += w.lss.fallbacks - f0;
  }
  CudaOptions o;
  o.device_system_bytes = 300000;  // a few networks per group
  CudaBackend dev{o};
  dev.load(batch);
  std::vector<int> nets = all_of(batch);
  std::vector<double> loss(count, NAN), after;
  dev.var_pro_trial(nets, false, loss.data());
  dev.var_pro_accept(nets);
  dev.read_params(after);
  for (int i = 0; i < count; ++i) {
    const NetDesc& nd = batch.nets[i];
    const std::string where = std::string(arch_name(nd.shape.arch)) + " n=" + std::to_string(nd.shape.n) + " #" +
                              std::to_string(i);
    // The loss to rounding (of the mean square of residuals of targets of order one; observed
    // 2.4e-17 at most, at gqu 40); the network's values at the training points to rounding
    // times a modest factor (observed 2.1e-10 at gqu 40, 1.7e-13 at glu 17, 9e-14 below); the
    // parameters to rounding times the linear columns' conditioning. The host's QR takes the
    // main columns in the order of their reach (staircase_qr), the device's in their own: at
    // gqu 40 that order alone moves the parameters by 1e-5 (the host with the device's order
    // is 1.9e-6 from the device), at glu 40 by 4e-8, at glu 17 by 2e-9, and by 2e-11 below.
    EXPECT_NEAR(loss[i], ref_loss[i], 1e-10 * ref_loss[i] + 1e-15) << where;
    const std::vector<double> got(after.begin() + nd.offset, after.begin() + nd.offset + ref[i].size());
    EXPECT_LE(rel_diff(got, ref[i]), nd.shape.n <= 9 ? 1e-10 : 1e-4) << where;
    double dv = 0.0, nv = 0.0;
    for (int k = 0; k < ds.n_train(); ++k) {
      const double a = evaluate(nd.shape, got.data(), &ds.x_train[k]);
      const double b = evaluate(nd.shape, ref[i].data(), &ds.x_train[k]);
      dv += (a - b) * (a - b);
      nv += b * b;
    }
    EXPECT_LE(std::sqrt(dv / nv), nd.shape.n <= 9 ? 1e-12 : 1e-8) << where << ": the values at the training points";
  }
  // The device finds dependent main columns where the host does, and no others: the copied
  // neuron's network always; trained glu 40 sits at the rank threshold (its smallest diagonal of
  // R near rcond times the largest), on either side of it as the rounding of the compression
  // falls.
  EXPECT_GE(host_dependent, 1);
  EXPECT_LE(host_dependent, 2);
  EXPECT_EQ(dev.stats().dependent_trials, host_dependent);
}

// The default ALL stage of relu networks on 1D inputs (variable projection) runs on the
// device: training with the default schedule, host threads make no variable-projection system
// and no trial but those the device found dependent, and every network ends as the CPU
// backend's does (same status; test RMSE within 1e-6 where the paths did not part, which these
// narrow networks do not).
TEST(Cuda, DefaultAllStageStaysOnTheDevice) {
  SKIP_WITHOUT_GPU();
  const Dataset ds = make_target_dataset("invcos2", sized(3000, 1000), 0);
  Batch batch;
  batch.datasets.push_back(&ds);
  Rng rng(5);
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int n : {1, 2, 5, 8}) {
      const Shape s{a, Act::kRelu, 1, n};
      std::vector<double> th(num_params(s));
      init_params(s, InitKind::kMaso, ds, rng.next(), th.data());
      batch.add(s, 0, th.data());
    }
  TrainOptions opt;
  opt.schedule = parse_schedule("D,U,Q,R,S,G,ALL*100");  // the default (cli_options.h)
  CudaBackend gpu{CudaOptions{}};
  gpu.load(batch);
  const std::vector<NetResult> got = train(gpu, batch, opt);
  CpuBackend cpu(2);
  cpu.load(batch);
  const std::vector<NetResult> want = train(cpu, batch, opt);
  const CudaStats& st = gpu.stats();
  EXPECT_EQ(st.host_systems, st.dependent_systems);
  EXPECT_EQ(st.host_trials, st.dependent_trials);
  EXPECT_LE(st.dependent_systems + st.dependent_trials, 2);
  // The reduced systems (at most 16 nonlinear parameters here) are factorized in size groups by
  // the batched call, as the default Cholesky table says for sizes below 256.
  EXPECT_GT(st.reduced_factorizations, 0);
  EXPECT_EQ(st.reduced_looped, 0);
  for (int i = 0; i < batch.size(); ++i) {
    EXPECT_EQ(got[i].status, want[i].status) << i;
    EXPECT_NEAR(got[i].test_rmse, want[i].test_rmse, 1e-6 * want[i].test_rmse) << i;
  }
}

// The host solver's threads each run LAPACK on their own, as the CPU backend's do: with
// OpenBLAS's threads on top they spun against each other (on the emulated device, a third of
// a sweep's time went to spinning).
extern "C" int openblas_get_num_threads(void);
extern "C" void openblas_set_num_threads(int num_threads);
TEST(Cuda, HostSolverRunsLapackOnItsCallersThreads) {
  SKIP_WITHOUT_GPU();
  openblas_set_num_threads(2);
  if (openblas_get_num_threads() != 2)
    GTEST_SKIP() << "this OpenBLAS does not take two threads (a single-threaded build, or capped to one core)";
  CudaBackend gpu{CudaOptions{}};
  EXPECT_EQ(openblas_get_num_threads(), 1);
}

// The Cholesky options the solve tests run under: each path alone, the default table, and
// each path with a scratch so small that the solve takes several rounds.
std::vector<std::pair<std::string, CudaOptions>> cholesky_modes(std::size_t round_bytes) {
  std::vector<std::pair<std::string, CudaOptions>> modes;
  for (const char* c : {"batched", "looped", "auto"}) {
    CudaOptions o;
    o.cholesky = parse_cholesky(c);
    modes.push_back({c, o});
  }
  for (const char* c : {"batched", "looped"}) {
    CudaOptions o;
    o.cholesky = parse_cholesky(c);
    o.scratch_bytes = round_bytes;
    modes.push_back({std::string(c) + " in rounds", o});
  }
  return modes;
}

// The damped solve on the device agrees with LAPACK's on the same systems (those the device
// assembled), within rounding times the condition number, and reports the same per-matrix
// info for the indefinite ones, on every Cholesky path (the emulated device: widths up to 90).
TEST(Cuda, DampedSolveMatchesLapack) {
  SKIP_WITHOUT_GPU();
  Dataset ds = make_target_dataset("invcos2", sized(1000, 500), 2);
  Batch batch = random_batch(ds, sized<std::vector<int>>({1, 3, 8, 40, 90, 200}, {1, 3, 8, 40, 90}), Act::kRelu, 9);
  // A scratch of three gqu systems of the largest width: several rounds per solve.
  for (const auto& [mode, o] : cholesky_modes(3 * 8 * padded_square(sized(1401, 631)))) {
    CudaBackend gpu{o};
    gpu.load(batch);
    const std::vector<int> nets = all_of(batch);
    std::vector<double> l(nets.size()), s(nets.size());
    gpu.assemble(nets, Block::kAll, HessianKind::kExact, l.data(), s.data());
    // Damping well above round-off: at 1e-9 the near-singular MASO systems make info and
    // g . step depend on the last bits of H.
    for (double lam : {1e-3, 1.0}) {
      std::vector<double> lams(nets.size(), lam), gg(nets.size());
      std::vector<int> ig(nets.size());
      gpu.solve(nets, lams.data(), ig.data(), gg.data());
      const std::string where = " lambda " + std::to_string(lam) + " " + mode;
      for (std::size_t j = 0; j < nets.size(); ++j) {
        const int i = nets[j];
        const LapackSolve ref = lapack_solve(gpu, i, lam);
        EXPECT_EQ(ig[j] == 0, ref.info == 0) << "network " << j << where;
        if (ref.info == 0 && ig[j] == 0) {
          const int m = num_params(batch.nets[i].shape);
          EXPECT_TRUE(close(gg[j], ref.gdotp, solve_tol(m, ref.cond)))
              << "network " << j << where << ": " << gg[j] << " vs " << ref.gdotp << " (m " << m << ", cond "
              << ref.cond << ")";
        }
      }
    }
    // Two solves: more rounds than that means the small scratch split them.
    if (mode.find("rounds") != std::string::npos) EXPECT_GT(gpu.stats().rounds, 2);
    if (mode == "looped") EXPECT_EQ(gpu.stats().looped, gpu.stats().factorizations);
    if (mode == "batched") EXPECT_EQ(gpu.stats().looped, 0);
  }
}

// The reference of the solve tests, on the CPU backend (runs everywhere): on the backend's own
// systems it reproduces the backend's solve and finds the condition numbers they must have.
TEST(CudaReference, LapackSolveReproducesTheCpuBackend) {
  Dataset ds = make_target_dataset("invcos2", 600, 2);
  Batch batch = random_batch(ds, {1, 8, 40}, Act::kRelu, 9);
  CpuBackend cpu(2);
  cpu.load(batch);
  const std::vector<int> nets = all_of(batch);
  std::vector<double> l(nets.size()), s(nets.size());
  cpu.assemble(nets, Block::kAll, HessianKind::kGaussNewton, l.data(), s.data());
  std::vector<double> lams(nets.size(), 1.0), gc(nets.size());
  std::vector<int> ic(nets.size());
  cpu.solve(nets, lams.data(), ic.data(), gc.data());
  for (int i : nets) {
    const LapackSolve ref = lapack_solve(cpu, i, 1.0);
    ASSERT_EQ(ref.info, 0);
    EXPECT_EQ(ic[i], 0);
    const int m = num_params(batch.nets[i].shape);
    EXPECT_TRUE(close(gc[i], ref.gdotp, solve_tol(m, ref.cond))) << "network " << i;
    // Gauss-Newton with lambda 1 on a unit diagonal: 2-norm condition below m + 1, and the
    // 1-norm's within a factor m of it.
    EXPECT_GE(ref.cond, 1.0);
    EXPECT_LE(ref.cond, static_cast<double>(m) * (m + 1)) << "network " << i;
  }
}

// A factorization that fails (info > 0) inside a group of same-size matrices fails that
// network alone, on both Cholesky paths, in one round or several: its neighbours' steps match
// LAPACK's. Gauss-Newton systems with lambda = 1 are positive definite; lambda = -1.5 takes
// 1.5 from a unit diagonal, so potrf stops at the first row that is not singular, on both
// backends alike.
TEST(Cuda, FailedFactorizationInsideASizeGroup) {
  SKIP_WITHOUT_GPU();
  Dataset ds = make_target_dataset("invcos2", 800, 4);
  // Every arch three times at widths 8 and 40: groups of three or more matrices of each size.
  Batch batch = random_batch(ds, {8, 40, 8, 40, 8, 40}, Act::kRelu, 12);
  const std::vector<int> nets = all_of(batch);
  std::vector<double> lams(nets.size(), 1.0);
  std::vector<char> bad(nets.size(), 0);
  for (std::size_t j = 1; j < nets.size(); j += 3) bad[j] = 1;
  bad[nets.size() - 1] = 1;
  for (std::size_t j = 0; j < nets.size(); ++j)
    if (bad[j]) lams[j] = -1.5;
  for (const auto& [mode, o] : cholesky_modes(2 * 8 * padded_square(161))) {
    CpuBackend cpu(2);
    CudaBackend gpu{o};
    cpu.load(batch);
    gpu.load(batch);
    std::vector<double> l(nets.size()), s(nets.size()), gc(nets.size()), gg(nets.size());
    std::vector<int> ic(nets.size()), ig(nets.size());
    cpu.assemble(nets, Block::kAll, HessianKind::kGaussNewton, l.data(), s.data());
    gpu.assemble(nets, Block::kAll, HessianKind::kGaussNewton, l.data(), s.data());
    cpu.solve(nets, lams.data(), ic.data(), gc.data());
    gpu.solve(nets, lams.data(), ig.data(), gg.data());
    for (std::size_t j = 0; j < nets.size(); ++j) {
      const std::string where = mode + " network " + std::to_string(j) + " (" +
                                arch_name(batch.nets[j].shape.arch) + " n=" + std::to_string(batch.nets[j].shape.n) + ")";
      if (bad[j]) {
        EXPECT_GT(ig[j], 0) << where;
        EXPECT_EQ(ig[j], ic[j]) << where;
        EXPECT_TRUE(std::isnan(gg[j])) << where;
      } else {
        ASSERT_EQ(ic[j], 0) << where;
        EXPECT_EQ(ig[j], 0) << where;
        EXPECT_TRUE(close(gg[j], gc[j], 1e-8)) << where << ": " << gg[j] << " vs " << gc[j];
      }
    }
  }
}

// The largest network of the full sweep (gqu, width 200: P = 1401) on 10^4 points: relu
// (moments) and gelu (J^T J tiles) systems agree with the CPU's, and their solves do on both
// Cholesky paths. The emulated device takes the same networks on 2000 points.
TEST(Cuda, LargestNetworkOnTenThousandPoints) {
  SKIP_WITHOUT_GPU();
  const Dataset ds = make_target_dataset("invcos2", sized(10000, 2000), 0);
  Batch batch;
  batch.datasets = {&ds};
  Rng rng(21);
  for (Act act : {Act::kRelu, Act::kRelu, Act::kRelu, Act::kGelu}) {
    const Shape s{Arch::kGqu, act, 1, 200};
    ASSERT_EQ(num_params(s), 1401);
    std::vector<double> th(num_params(s));
    init_params(s, InitKind::kMaso, ds, rng.next(), th.data());
    for (auto& v : th) v += 0.05 * rng.normal();
    batch.add(s, 0, th.data());
  }
  const std::vector<int> nets = all_of(batch);
  CpuBackend cpu(0);
  cpu.load(batch);
  std::vector<double> lc(nets.size()), sc(nets.size()), lg(nets.size()), sg(nets.size());
  cpu.assemble(nets, Block::kAll, HessianKind::kExact, lc.data(), sc.data());
  const double lam = 1e-2;
  std::vector<double> lams(nets.size(), lam), gg(nets.size());
  std::vector<int> ig(nets.size());
  for (const char* mode : {"batched", "looped"}) {
    CudaOptions o;
    o.cholesky = parse_cholesky(mode);
    CudaBackend gpu{o};
    gpu.load(batch);
    gpu.assemble(nets, Block::kAll, HessianKind::kExact, lg.data(), sg.data());
    for (int i : nets) {
      const std::string where = std::string(mode) + " network " + std::to_string(i);
      EXPECT_TRUE(close(lg[i], lc[i], 1e-12)) << where << ": loss " << lg[i] << " vs " << lc[i];
      std::vector<double> Hc, gvc, Hg, gvg;
      cpu.read_system(i, &Hc, &gvc);
      gpu.read_system(i, &Hg, &gvg);
      ASSERT_EQ(Hg.size(), 1401u * 1401u);
      EXPECT_LE(rel_diff(Hg, Hc), 1e-12) << where;
      EXPECT_LE(rel_diff(gvg, gvc), 1e-12) << where;
    }
    gpu.solve(nets, lams.data(), ig.data(), gg.data());
    for (int i : nets) {
      const LapackSolve ref = lapack_solve(gpu, i, lam);
      EXPECT_EQ(ig[i] == 0, ref.info == 0) << mode << " network " << i;
      if (ref.info == 0 && ig[i] == 0)
        EXPECT_TRUE(close(gg[i], ref.gdotp, solve_tol(1401, ref.cond)))
            << mode << " network " << i << ": " << gg[i] << " vs " << ref.gdotp << " (cond " << ref.cond << ")";
    }
  }
}

// Loading a second batch (what every chunk after the first does): larger, then smaller, then
// the first again; each agrees with a CPU backend that loaded it fresh.
TEST(Cuda, SecondLoadMatchesAFreshCpuBackend) {
  SKIP_WITHOUT_GPU();
  const Dataset d1 = make_target_dataset("invcos2", 700, 1);
  const Dataset d2 = make_target_dataset("sin_sin", 500, 2);
  const Batch a = random_batch({&d1}, {2, 9}, Act::kRelu, 31);
  const Batch b = random_batch({&d1, &d2}, {1, 30, 64, 120}, Act::kGelu, 32);
  const Batch c = random_batch({&d2}, {3}, Act::kSilu, 33);
  CudaBackend gpu{CudaOptions{}};
  for (const Batch* batch : {&a, &b, &c, &a}) {
    CpuBackend cpu(2);
    cpu.load(*batch);
    gpu.load(*batch);
    const std::vector<int> nets = all_of(*batch);
    const std::size_t n = nets.size();
    // lambda = 1 on Gauss-Newton systems: condition numbers below m + 1, so the two backends'
    // steps agree to about 1e-9.
    std::vector<double> lc(n), lg(n), sc(n), sg(n), gc(n), gg(n), lam(n, 1.0);
    std::vector<int> ic(n), ig(n);
    cpu.assemble(nets, Block::kAll, HessianKind::kGaussNewton, lc.data(), sc.data());
    gpu.assemble(nets, Block::kAll, HessianKind::kGaussNewton, lg.data(), sg.data());
    cpu.solve(nets, lam.data(), ic.data(), gc.data());
    gpu.solve(nets, lam.data(), ig.data(), gg.data());
    const double alphas[3] = {1.0, 0.5, 0.0};
    std::vector<double> tc(3 * n), tg(3 * n), rc(n), rg(n), ec(n), eg(n);
    cpu.trial_losses(nets, alphas, 3, tc.data());
    gpu.trial_losses(nets, alphas, 3, tg.data());
    cpu.rmse(rc.data(), ec.data());
    gpu.rmse(rg.data(), eg.data());
    for (std::size_t j = 0; j < n; ++j) {
      const std::string where = "batch of " + std::to_string(n) + ", network " + std::to_string(j);
      EXPECT_TRUE(close(lg[j], lc[j], 1e-12)) << where;
      std::vector<double> Hc, vc, Hg, vg;
      cpu.read_system(nets[j], &Hc, &vc);
      gpu.read_system(nets[j], &Hg, &vg);
      EXPECT_LE(rel_diff(Hg, Hc), 1e-12) << where;
      ASSERT_EQ(ic[j], 0) << where;
      ASSERT_EQ(ig[j], 0) << where;
      EXPECT_TRUE(close(gg[j], gc[j], 1e-8)) << where;
      // The trials move along steps that agree to about 1e-8; at alpha = 0 only the order of
      // the sums differs.
      for (int t = 0; t < 3; ++t)
        EXPECT_TRUE(close(tg[3 * j + t], tc[3 * j + t], t == 2 ? 1e-12 : 1e-8)) << where << " trial " << t;
      EXPECT_TRUE(close(rg[j], rc[j], 1e-10)) << where;
      EXPECT_TRUE(close(eg[j], ec[j], 1e-10)) << where;
    }
  }
}

// The host's work-list offsets (cuda_plan.h) against the device's own count: count_work and
// a scan, per kind, on a mixed call list.
TEST(Cuda, HostWorkListsMatchTheDeviceCount) {
  SKIP_WITHOUT_GPU();
  std::vector<DevNet> nets;
  std::vector<CallNet> calls;
  std::vector<CallShape> shapes;
  const int npts[2] = {1000, 257};
  const std::vector<DevSet> sets = {{nullptr, nullptr, npts[0], nullptr}, {nullptr, nullptr, npts[1], nullptr}};
  int k = 0;
  for (Arch a : {Arch::kMlp, Arch::kGlu, Arch::kGqu})
    for (int w : {1, 7, 64, 200}) {
      const Shape s{a, Act::kRelu, 1, w};
      nets.push_back(DevNet{s, k % 2, 0, 0, 0, 0, 0});
      int b = 0, e = 0;
      stage_range(s, k % 3 == 0 ? Block::kD : Block::kAll, &b, &e);
      calls.push_back({k, b, e});
      shapes.push_back({e - b, w, npts[k % 2]});
      ++k;
    }
  const int count = static_cast<int>(calls.size());
  DevNet* d_nets = nullptr;
  CallNet* d_calls = nullptr;
  DevSet* d_sets = nullptr;
  long long* d_items = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_nets), nets.size() * sizeof(DevNet)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_calls), calls.size() * sizeof(CallNet)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_sets), sets.size() * sizeof(DevSet)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_items), count * sizeof(long long)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_nets, nets.data(), nets.size() * sizeof(DevNet), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_calls, calls.data(), calls.size() * sizeof(CallNet), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_sets, sets.data(), sets.size() * sizeof(DevSet), cudaMemcpyHostToDevice), cudaSuccess);
  for (WorkKind kind : {WorkKind::kPointTiles, WorkKind::kParamTiles, WorkKind::kHessianTiles, WorkKind::kNeurons,
                        WorkKind::kNeuronsAndBias}) {
    count_work(d_calls, count, d_nets, d_sets, kind, d_items, nullptr);
    std::vector<long long> items(count);
    ASSERT_EQ(cudaMemcpy(items.data(), d_items, count * sizeof(long long), cudaMemcpyDeviceToHost), cudaSuccess);
    std::vector<long long> scanned(count + 1, 0);
    for (int j = 0; j < count; ++j) scanned[j + 1] = scanned[j] + items[j];
    EXPECT_EQ(work_offsets(shapes, static_cast<WorkItems>(kind)), scanned) << "kind " << static_cast<int>(kind);
  }
  cudaFree(d_nets);
  cudaFree(d_calls);
  cudaFree(d_sets);
  cudaFree(d_items);
}

// A device array of v's values (freed by the caller).
template <class T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), std::max<std::size_t>(v.size(), 1) * sizeof(T)), cudaSuccess);
  if (!v.empty()) EXPECT_EQ(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}
template <class T>
std::vector<T> to_host(const T* d, std::size_t n) {
  std::vector<T> v(n);
  if (n > 0) EXPECT_EQ(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// G = B^T B (m x m) and c = B^T h of a compressed system whose B has leading dimension ld.
void normal_parts(const double* B, const double* h, int rows, int m, int ld, std::vector<double>* G,
                  std::vector<double>* c) {
  G->assign(static_cast<std::size_t>(m) * m, 0.0);
  c->assign(m, 0.0);
  for (int p = 0; p < m; ++p) {
    for (int q = 0; q < m; ++q) {
      double v = 0.0;
      for (int k = 0; k < rows; ++k) v += B[k + static_cast<std::size_t>(p) * ld] * B[k + static_cast<std::size_t>(q) * ld];
      (*G)[p + static_cast<std::size_t>(q) * m] = v;
    }
    for (int k = 0; k < rows; ++k) (*c)[p] += B[k + static_cast<std::size_t>(p) * ld] * h[k];
  }
}

// The device's parts of a relu 1D network's reduced system (var_pro_kernels.h) against the
// host's, on networks of every arch at several widths, some with a kink outside the domain, one
// between the last training points (a thin neuron), one with a zero gate weight; for three
// column sets: all the parameters as nonlinear ones, the variable projection's columns
// (var_pro_columns: linear, then nonlinear), and the linear ones alone (a trial's).
// - compress_relu1d (Givens rotations per run of points) against the host's (LAPACK's
//   Householder QR per run): they agree up to an orthogonal transform of each run's rows, so the
//   rows, global marks, B^T B, B^T h and |h|^2 + rest are compared.
// - residual_curvature (moments summed over each neuron's range by relu1d_neurons) against
//   residual_curvature_relu1d (compensated prefix sums), entry by entry.
TEST(Cuda, VarProSystemPartsMatchTheHost) {
  SKIP_WITHOUT_GPU();
  const Dataset d1 = make_target_dataset("invcos2", sized(3000, 600), 1);
  const Dataset d2 = make_target_dataset("sin4", sized(777, 300), 2);
  Batch batch = random_batch(std::vector<const Dataset*>{&d1, &d2}, {1, 3, 17, 40}, Act::kRelu, 11);
  // Kinks out of the domain, between the last two points, and a zero gate weight.
  for (int i = 0; i < batch.size(); ++i) {
    const Shape& s = batch.nets[i].shape;
    if (s.n < 3) continue;
    double* th = batch.params.data() + batch.nets[i].offset;
    const Dataset& ds = *batch.datasets[batch.nets[i].dataset];
    std::vector<double> xs = ds.x_train;
    std::sort(xs.begin(), xs.end());
    const int G = factor_offset(s, 0), g = G + s.n;
    th[g + 0] = -th[G + 0] * (ds.hi[0] + 0.3);                         // kink beyond the domain's end
    th[g + 1] = -th[G + 1] * (0.5 * (xs[xs.size() - 2] + xs.back()));  // thin
    th[G + 2] = 0.0;                                                   // no kink
  }
  HostSolver host;
  host.load(batch);
  std::vector<DevNet> nets;
  std::vector<CallNet> calls;
  std::vector<VarProSlot> slots;
  std::vector<VarProColumns> call_cols;
  std::vector<int> cols;
  std::vector<double> resid, xs_all, ys_all;
  std::vector<long long> set_at, work_off = {0};
  for (int k = 0; k < static_cast<int>(batch.datasets.size()); ++k) {
    set_at.push_back(static_cast<long long>(xs_all.size()));
    xs_all.insert(xs_all.end(), host.sorted(k).x.begin(), host.sorted(k).x.end());
    ys_all.insert(ys_all.end(), host.sorted(k).y.begin(), host.sorted(k).y.end());
  }
  long long nrn_at = 0, vec_at = 0;
  VarProLayout lay;
  std::vector<double> scale;
  for (int i = 0; i < batch.size(); ++i) {
    const Shape& s = batch.nets[i].shape;
    const int k = batch.nets[i].dataset, npts = batch.datasets[k]->n_train(), p = num_params(s);
    const double* th = batch.params.data() + batch.nets[i].offset;
    std::vector<double> r;
    host.sorted_residuals(i, th, r);
    nets.push_back(DevNet{s, k, static_cast<long long>(batch.nets[i].offset), 0, vec_at,
                          static_cast<long long>(resid.size()), nrn_at});
    resid.insert(resid.end(), r.begin(), r.end());
    nrn_at += s.n + 1;
    vec_at += p;
    {
      // A Jacobi scale: 1 / sqrt((2/N) |J_q|^2), zero for a column that is zero on the data.
      LsSystem js;
      compress_relu1d(s, th, param_range(0, p), host.sorted(k).x.data(), r.data(), npts, &js);
      for (int q = 0; q < p; ++q) {
        double ss = 0.0;
        for (int row = 0; row < js.rows; ++row) ss += js.B[row + static_cast<std::size_t>(q) * js.rows] * js.B[row + static_cast<std::size_t>(q) * js.rows];
        scale.push_back(ss > 0.0 ? 1.0 / std::sqrt(2.0 / npts * ss) : 0.0);
      }
    }
    VarProColumns all_non, var_pro, linear;
    all_non.non = param_range(0, p);
    std::vector<Role> role(p);
    const Points1d pts = host.points1d(k);
    var_pro_roles(s, th, &pts, role.data());
    const std::vector<double> unit(p, 1.0);
    var_pro_columns(s, th, role.data(), unit.data(), &pts, &var_pro);
    linear.lin = linear_columns(s);
    for (const VarProColumns& c : {all_non, var_pro, linear}) {
      const std::vector<int> all = c.all();
      const int m = static_cast<int>(all.size()), kc = static_cast<int>(c.lin.size()), ldb = compress_rows_bound(s, npts);
      calls.push_back(CallNet{i, 0, p});
      slots.push_back(lay.add(s, m, kc, c.global, ldb));
      cols.insert(cols.end(), all.begin(), all.end());
      call_cols.push_back(c);
      work_off.push_back(work_off.back() + s.n + 1);
    }
  }
  const long long b_at = lay.b, s_at = lay.s, run_at = lay.run, a_at = lay.a, gr_at = lay.gr, tau_at = lay.tau,
                  t_at = lay.t, w_at = lay.w, e_at = lay.e;
  double* d_x = to_device(xs_all);
  double* d_y = to_device(ys_all);
  std::vector<DevSet> sets;
  for (int k = 0; k < static_cast<int>(batch.datasets.size()); ++k)
    sets.push_back(DevSet{d_x + set_at[k], d_y + set_at[k], batch.datasets[k]->n_train(), nullptr,
                          batch.datasets[k]->lo[0], batch.datasets[k]->hi[0]});
  const int count = static_cast<int>(calls.size());
  DevNet* d_nets = to_device(nets);
  CallNet* d_calls = to_device(calls);
  VarProSlot* d_slots = to_device(slots);
  DevSet* d_sets = to_device(sets);
  double* d_theta = to_device(batch.params);
  {
    // The columns of each network's reduced system as the device finds them (column_classes, at
    // the Jacobi scale, zeros included) against the host's var_pro_columns.
    std::vector<CallNet> cc;
    std::vector<long long> at = {0};
    for (int i = 0; i < batch.size(); ++i) {
      const int p = num_params(batch.nets[i].shape);
      cc.push_back(CallNet{i, 0, p});
      at.push_back(at.back() + p);
    }
    CallNet* d_cc = to_device(cc);
    long long* d_at = to_device(at);
    double* d_sc = to_device(scale);
    Role* d_role = to_device(std::vector<Role>(scale.size(), Role::kLinear));
    unsigned char* d_cls = to_device(std::vector<unsigned char>(at.back(), 9));
    column_classes(d_cc, batch.size(), d_nets, d_sets, d_theta, d_sc, d_role, d_at, d_cls, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<unsigned char> cls = to_host(d_cls, at.back());
    int globals = 0, dropped = 0;
    for (int i = 0; i < batch.size(); ++i) {
      const Shape& s = batch.nets[i].shape;
      const int p = num_params(s);
      const double* th = batch.params.data() + batch.nets[i].offset;
      const Points1d pts = host.points1d(batch.nets[i].dataset);
      std::vector<Role> role(p);
      var_pro_roles(s, th, &pts, role.data());
      VarProColumns want, got;
      var_pro_columns(s, th, role.data(), scale.data() + nets[i].vec_off, &pts, &want);
      columns_of_classes(cls.data() + at[i], p, &got);
      EXPECT_EQ(got.lin, want.lin) << "network " << i;
      EXPECT_EQ(got.non, want.non) << "network " << i;
      EXPECT_EQ(got.global, want.global) << "network " << i;
      globals += want.global;
      dropped += p - static_cast<int>(want.lin.size() + want.non.size());
    }
    EXPECT_GT(globals, 0);
    EXPECT_GT(dropped, 0);
    for (void* v : {static_cast<void*>(d_cc), static_cast<void*>(d_at), static_cast<void*>(d_sc),
                    static_cast<void*>(d_role), static_cast<void*>(d_cls)})
      cudaFree(v);
  }
  double* d_resid = to_device(resid);
  long long* d_work = to_device(work_off);
  int* d_range = to_device(std::vector<int>(2 * nrn_at, -1));
  double* d_rmom = to_device(std::vector<double>(nrn_at * kColCoef, NAN));
  double* d_S = to_device(std::vector<double>(s_at, NAN));
  Compressed out{};
  out.cols = to_device(cols);
  out.B = to_device(std::vector<double>(b_at, NAN));
  out.h = out.B;  // h at column m of each call's B
  out.rows = to_device(std::vector<int>(count, -1));
  out.rest = to_device(std::vector<double>(count, NAN));
  out.global = to_device(std::vector<unsigned char>(cols.size(), 2));
  out.cpoly = to_device(std::vector<double>(cols.size() * kColCoef, NAN));
  out.cown = to_device(std::vector<int>(cols.size(), -1));
  out.bounds = to_device(std::vector<int>(run_at, -1));
  out.runrow = to_device(std::vector<int>(run_at, -1));
  out.nrange = to_device(std::vector<int>(run_at, -1));
  out.runrest = to_device(std::vector<double>(run_at, NAN));
  compress_relu1d(d_calls, count, d_slots, d_nets, d_sets, d_theta, d_resid, out, nullptr);
  relu1d_neurons(d_calls, count, d_work, work_off.back(), d_nets, d_sets, d_theta, d_resid, d_range, d_rmom, nullptr);
  residual_curvature(d_calls, count, d_slots, d_nets, d_sets, d_theta, out.cols, d_rmom, d_S, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<double> B = to_host(out.B, b_at), rest = to_host(out.rest, count);
  const std::vector<double>& h = B;
  const std::vector<double> S = to_host(d_S, s_at);
  const std::vector<int> rows = to_host(out.rows, count);
  const std::vector<unsigned char> global = to_host(out.global, cols.size());
  int thin_or_outside = 0, curved = 0;
  for (int j = 0; j < count; ++j) {
    const int i = calls[j].net;
    const Shape& s = batch.nets[i].shape;
    const int k = batch.nets[i].dataset;
    const double* th = batch.params.data() + batch.nets[i].offset;
    const HostSolver::Sorted& so = host.sorted(k);
    const int npts = static_cast<int>(so.x.size());
    const Points1d pts = host.points1d(k);
    for (int nu = 0; nu < s.n; ++nu) thin_or_outside += kink_place(s, th, pts, nu) != EdgeKind::kInside;
    std::vector<double> r;
    host.sorted_residuals(i, th, r);
    const VarProSlot& sl = slots[j];
    LsSystem ref;
    compress_relu1d(s, th, call_cols[j].all(), so.x.data(), r.data(), npts, &ref);
    const std::string what = std::string(arch_name(s.arch)) + " width " + std::to_string(s.n) + " m " +
                             std::to_string(sl.m) + " kc " + std::to_string(sl.kc);
    ASSERT_EQ(rows[j], ref.rows) << what;
    ASSERT_LE(rows[j], sl.ldb) << what;  // compress_rows_bound
    for (int q = 0; q < sl.m; ++q) EXPECT_EQ(global[sl.col_off + q], ref.global[q]) << what << " column " << q;
    std::vector<double> G, c, Gr, cr;
    normal_parts(B.data() + sl.b_off, h.data() + sl.h_off, rows[j], sl.m, sl.ldb, &G, &c);
    normal_parts(ref.B.data(), ref.h.data(), ref.rows, sl.m, ref.rows, &Gr, &cr);
    double hh = rest[j], hr = ref.rest;
    for (int q = 0; q < rows[j]; ++q) hh += h[sl.h_off + q] * h[sl.h_off + q];
    for (int q = 0; q < ref.rows; ++q) hr += ref.h[q] * ref.h[q];
    EXPECT_NEAR(hh, hr, 1e-12 * hr) << what;
    for (int p = 0; p < sl.m; ++p) {
      const double gp = Gr[p + static_cast<std::size_t>(p) * sl.m];
      EXPECT_NEAR(c[p], cr[p], 1e-11 * std::sqrt(gp * hr) + 1e-300) << what << " B^T h " << p;
      for (int q = 0; q < sl.m; ++q) {
        const double gq = Gr[q + static_cast<std::size_t>(q) * sl.m];
        EXPECT_NEAR(G[p + static_cast<std::size_t>(q) * sl.m], Gr[p + static_cast<std::size_t>(q) * sl.m],
                    1e-11 * std::sqrt(gp * gq) + 1e-300)
            << what << " B^T B " << p << ", " << q;
      }
    }
    // S: each entry against the host's, to the rounding of the moments' sums (observed: 3e-15 of
    // (2/N) sum |r| at most).
    std::vector<double> Sr;
    residual_curvature_relu1d(s, th, call_cols[j], so.x.data(), r.data(), npts, &Sr);
    ASSERT_EQ(Sr.size(), static_cast<std::size_t>(sl.m) * (sl.m - sl.kc)) << what;
    double rsum = 0.0;
    for (double v : r) rsum += std::fabs(v);
    const double xmax = std::max(std::fabs(so.x.front()), std::fabs(so.x.back()));
    for (std::size_t e = 0; e < Sr.size(); ++e) {
      curved += Sr[e] != 0.0;
      EXPECT_NEAR(S[sl.s_off + e], Sr[e],
                  1e-12 * std::fabs(Sr[e]) + 1e-13 * (2.0 / npts) * rsum * std::pow(std::max(1.0, xmax), kColCoef))
          << what << " S entry " << e;
    }
  }
  EXPECT_GT(thin_or_outside, 0);
  EXPECT_GT(curved, 0);

  // The reduced systems on the device against reduced_system on the host's compressed systems.
  Stream stream = make_stream();
  HostCopies copies;
  Solver solver = make_solver(stream.get());
  Params params = make_params();
  Blas blas = make_blas();
  ReducedWork rw{};
  rw.A = to_device(std::vector<double>(a_at, NAN));
  rw.U = to_device(std::vector<double>(a_at, NAN));
  rw.gr = to_device(std::vector<double>(gr_at, NAN));
  rw.tau = to_device(std::vector<double>(tau_at, NAN));
  rw.T = to_device(std::vector<double>(t_at, NAN));
  rw.W = to_device(std::vector<double>(w_at, NAN));
  rw.perm = to_device(std::vector<int>(cols.size(), -1));
  rw.rank = to_device(std::vector<int>(count, -1));
  rw.deficient = to_device(std::vector<int>(count, -1));
  rw.info = to_device(std::vector<int>(count, -1));
  rw.rows = out.rows;
  rw.ptrs = to_device(std::vector<double*>(6 * static_cast<std::size_t>(count), nullptr));
  rw.ws_bytes = reduced_workspace_bytes(solver.get(), params.get(), slots);
  ASSERT_EQ(cudaMalloc(&rw.ws, rw.ws_bytes), cudaSuccess);
  double* d_scale = to_device(scale);
  std::vector<int> rank, deficient;
  reduced_systems(stream.get(), copies, solver.get(), params.get(), blas.get(), d_calls, count, d_slots, slots, rows, d_nets,
                  d_sets, out.cols, d_scale, out.B, d_S, rw, &rank, &deficient);
  const std::vector<double> A = to_host(rw.A, a_at), gr = to_host(rw.gr, gr_at), R = to_host(out.B, b_at);
  int solved = 0, dependent = 0, with_globals = 0;
  for (int j = 0; j < count; ++j) {
    const int i = calls[j].net;
    const Shape& s = batch.nets[i].shape;
    const int k = batch.nets[i].dataset;
    const double* th = batch.params.data() + batch.nets[i].offset;
    const HostSolver::Sorted& so = host.sorted(k);
    const int npts = static_cast<int>(so.x.size());
    std::vector<double> r, Sr;
    host.sorted_residuals(i, th, r);
    LsSystem js;
    compress_relu1d(s, th, call_cols[j].all(), so.x.data(), r.data(), npts, &js);
    residual_curvature_relu1d(s, th, call_cols[j], so.x.data(), r.data(), npts, &Sr);
    ReducedSystem ref;
    reduced_system(js, call_cols[j], scale.data() + nets[i].vec_off, 2.0 / npts, npts, Sr, &ref);
    const VarProSlot& sl = slots[j];
    const int kb = sl.m - sl.kc;
    const std::string what = std::string(arch_name(s.arch)) + " width " + std::to_string(s.n) + " m " +
                             std::to_string(sl.m) + " kc " + std::to_string(sl.kc) + " g " + std::to_string(sl.g);
    if (kb == 0) continue;
    EXPECT_EQ(deficient[j] != 0, ref.pivoted) << what;
    if (deficient[j] || ref.pivoted) {
      ++dependent;
      continue;
    }
    ++solved;
    with_globals += sl.g > 1 && rank[j] < sl.kc;
    EXPECT_EQ(rank[j], ref.rank) << what;
    // The two factorizations differ by rounding, amplified in the terms of R_cc^-1 by its
    // condition number kappa, of which the spread of its diagonal is a lower estimate (these
    // random networks' linear columns reach 6e10).
    double dmax = 0.0, dmin = INFINITY;
    for (int q = 0; q < rank[j]; ++q) {
      const double d = std::fabs(R[sl.b_off + q + static_cast<std::size_t>(q) * sl.ldb]);
      dmax = std::max(dmax, d);
      dmin = std::min(dmin, d);
    }
    const double kappa = rank[j] > 0 ? dmax / dmin : 1.0;
    double amax = 0.0, gmax = 0.0, aerr = 0.0, gerr = 0.0;
    for (int q = 0; q < kb * kb; ++q) {
      amax = std::max(amax, std::fabs(ref.A[q]));
      aerr = std::max(aerr, std::fabs(A[sl.a_off + q] - ref.A[q]));
    }
    for (int q = 0; q < kb; ++q) {
      gmax = std::max(gmax, std::fabs(ref.gr[q]));
      gerr = std::max(gerr, std::fabs(gr[sl.gr_off + q] - ref.gr[q]));
    }
    // Observed: at most 3.6e-13 of the largest entry where kappa is 1, and 4.7e-15 kappa (2.1e-5)
    // at kappa 4.5e9.
    const double tol = 2e-12 + 1e-14 * kappa;
    EXPECT_LE(aerr, tol * amax) << what << " A, kappa " << kappa;
    EXPECT_LE(gerr, tol * gmax) << what << " gr, kappa " << kappa;
  }
  EXPECT_GT(solved, 0);
  EXPECT_GT(dependent, 0);
  EXPECT_GT(with_globals, 0);

  // The damped steps on those systems (reduced_solves) against reduced_solve on the same A and
  // gr: a first try, then a damping retry on what the first kept; one column set at a time (a
  // network's calls share its step).
  int eigen_tries = 0, chol_tries = 0;
  for (int set = 0; set < 3; ++set) {
  std::vector<int> sub;
  for (int j = set; j < count; j += 3)
    if (!deficient[j] && slots[j].m > slots[j].kc) sub.push_back(j);
  std::vector<CallNet> calls2;
  std::vector<VarProSlot> slots2;
  int max_kb = 1;
  for (int j : sub) {
    calls2.push_back(calls[j]);
    slots2.push_back(slots[j]);
    max_kb = std::max(max_kb, slots[j].m - slots[j].kc);
  }
  const int c2 = static_cast<int>(sub.size());
  CallNet* d_calls2 = to_device(calls2);
  VarProSlot* d_slots2 = to_device(slots2);
  SolveWork sw{};
  sw.V = to_device(std::vector<double>(a_at, NAN));
  sw.L = to_device(std::vector<double>(a_at, NAN));
  sw.E = to_device(std::vector<double>(e_at, NAN));
  sw.Z = to_device(std::vector<double>(gr_at, NAN));
  sw.model = to_device(std::vector<double>(4 * c2, NAN));
  sw.info = to_device(std::vector<int>(3 * c2, -1));
  sw.chol_info = to_device(std::vector<int>(c2, -1));
  sw.order = to_device(std::vector<int>(2 * c2, -1));
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&sw.ptrs), std::max(1, 2 * c2) * sizeof(double*)), cudaSuccess);
  // The two column sets with nonlinear columns (all of them, and var_pro's) take the Cholesky
  // table's paths: every size batched, then the smallest size batched and the rest looped (both
  // paths in one call); the third set (the linear columns) has no reduced system.
  std::vector<int> kbs;
  for (const VarProSlot& sl : slots2) kbs.push_back(sl.m - sl.kc);
  std::sort(kbs.begin(), kbs.end());
  const int split = kbs.empty() ? 2 : kbs.front() + 1;  // the smallest size batched, the rest looped
  const std::string path = set == 1 ? "1:0," + std::to_string(split) + ":never" : "batched";
  const CholeskyTable table = parse_cholesky(path);
  ReducedCholeskyCounts counts;
  int eigen_here = 0;
  sw.ws_bytes = solve_workspace_bytes(solver.get(), params.get(), max_kb);
  ASSERT_EQ(cudaMalloc(&sw.ws, sw.ws_bytes), cudaSuccess);
  double* d_step = to_device(std::vector<double>(vec_at, NAN));
  std::vector<int> mode(c2, ReducedSystem::kUnknown), sinfo;
  std::vector<ReducedSystem> host_sys(c2);
  for (int q = 0; q < c2; ++q) {
    const int j = sub[q], kb = slots[j].m - slots[j].kc;
    host_sys[q].index = call_cols[j].non;
    host_sys[q].A.assign(A.begin() + slots[j].a_off, A.begin() + slots[j].a_off + static_cast<long long>(kb) * kb);
    host_sys[q].gr.assign(gr.begin() + slots[j].gr_off, gr.begin() + slots[j].gr_off + kb);
    if (q % 2 == 1) {
      // Every other system made positive definite, for the Cholesky path.
      double amax = 0.0;
      for (double v : host_sys[q].A) amax = std::max(amax, std::fabs(v));
      for (int k = 0; k < kb; ++k) host_sys[q].A[k + static_cast<std::size_t>(k) * kb] += 2.0 * kb * amax;
      ASSERT_EQ(cudaMemcpy(rw.A + slots[j].a_off, host_sys[q].A.data(), host_sys[q].A.size() * sizeof(double),
                           cudaMemcpyHostToDevice),
                cudaSuccess);
    }
  }
  for (double lam : {1e-3, 0.5}) {
    std::vector<StepModel> smodel;
    reduced_solves(stream.get(), copies, solver.get(), params.get(), table, d_calls2, c2, d_slots2, slots2, d_nets,
                   out.cols, d_scale, rw.A, rw.gr, sw, std::vector<double>(c2, lam), &mode, &sinfo, &smodel, d_step,
                   &counts);
    const std::vector<double> step = to_host(d_step, vec_at);
    for (int q = 0; q < c2; ++q) {
      const int j = sub[q], i = calls[j].net;
      const int p = num_params(batch.nets[i].shape);
      std::vector<double> ref_step(p), work;
      StepModel ref_model;
      const int ref_info = reduced_solve(p, scale.data() + nets[i].vec_off, host_sys[q], lam, work, ref_step.data(),
                                         &ref_model);
      const std::string what = std::string(arch_name(batch.nets[i].shape.arch)) + " width " +
                               std::to_string(batch.nets[i].shape.n) + " kc " + std::to_string(slots[j].kc) +
                               " lambda " + std::to_string(lam) + " " + path;
      EXPECT_EQ(sinfo[q], ref_info) << what;
      EXPECT_EQ(mode[q], host_sys[q].mode) << what;
      if (ref_info != 0) continue;
      (mode[q] == ReducedSystem::kEigen ? eigen_tries : chol_tries) += 1;
      if (mode[q] == ReducedSystem::kEigen) ++eigen_here;
      double smax = 0.0, err = 0.0;
      for (int k = 0; k < p; ++k) {
        smax = std::max(smax, std::fabs(ref_step[k]));
        err = std::max(err, std::fabs(step[nets[i].vec_off + k] - ref_step[k]));
      }
      // Two eigensolvers (or Cholesky factorizations) differ by rounding of the size of the
      // unit-diagonal matrix C, amplified by 1 / lambda at most.
      const int kb = static_cast<int>(host_sys[q].index.size());
      double cnorm = 0.0;
      for (int r = 0; r < kb; ++r)
        for (int c = 0; c < kb; ++c) {
          const double v = host_sys[q].t[r] * host_sys[q].A[r + static_cast<std::size_t>(c) * kb] * host_sys[q].t[c];
          cnorm += v * v;
        }
      const double tol = 1e-13 * (1.0 + std::sqrt(cnorm) / lam);
      EXPECT_LE(err, tol * smax) << what << " step, |C| " << std::sqrt(cnorm);
      EXPECT_NEAR(smodel[q].pred, ref_model.pred, tol * std::fabs(ref_model.pred)) << what;
      EXPECT_NEAR(smodel[q].slope, ref_model.slope, tol * std::fabs(ref_model.slope)) << what;
      EXPECT_NEAR(smodel[q].curvature, ref_model.curvature, tol * (std::fabs(ref_model.curvature) + ref_model.pred))
          << what;
    }
  }
  EXPECT_EQ(counts.factorizations > 0, c2 > 0) << path;
  if (set == 0) EXPECT_EQ(counts.looped, 0) << path;
  if (set == 1) {
    EXPECT_GT(counts.looped, 0) << path;
    EXPECT_LT(counts.looped, counts.factorizations) << path;
  }
  // Failed Cholesky tests (the eigendecomposition's tries) inside each path's groups.
  if (c2 > 0) EXPECT_GT(eigen_here, 0) << path;
  for (void* p : std::initializer_list<void*>{d_calls2, d_slots2, sw.V, sw.L, sw.E, sw.Z, sw.model, sw.info,
                                             sw.chol_info, sw.order, sw.ptrs, sw.ws, d_step})
    cudaFree(p);
  }
  EXPECT_GT(eigen_tries, 0);
  EXPECT_GT(chol_tries, 0);
  for (void* p : std::initializer_list<void*>{rw.A, rw.U, rw.gr, rw.tau, rw.T, rw.W, rw.perm, rw.rank, rw.deficient,
                                             rw.info, rw.ws, d_scale})
    cudaFree(p);
  for (void* p : std::initializer_list<void*>{d_x, d_y, d_nets, d_calls, d_slots, d_sets, d_theta, d_resid, d_work,
                                             d_range, d_rmom, d_S, const_cast<int*>(out.cols), out.B, out.rows, out.rest, out.global, out.cpoly, out.cown, out.bounds,
                                             out.runrow, out.nrange, out.runrest})
    cudaFree(p);
}

// This build's kernels run on the visible device (the probe behind --device auto). The
// emulated device is there for --device cuda only: auto asks the driver, which sees no GPU.
TEST(Cuda, BinaryHoldsAnImageForTheDevice) {
  SKIP_WITHOUT_GPU();
  std::string why;
  EXPECT_TRUE(cuda_kernel_image(0, &why)) << why;
  EXPECT_TRUE(use_cuda(DeviceKind::kCuda));
  EXPECT_EQ(use_cuda(DeviceKind::kAuto), !gs_test::kEmulatedDevice);
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

// The emulated device: widths up to 33 on fewer points.
TEST(Cuda, OneNewtonStepMatchesCpu) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", sized(2000, 800), 0));
  spec.datasets.push_back(make_target_dataset("sin_sin", sized(1500, 600), 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu, Act::kSilu};
  spec.widths = sized<std::vector<int>>({1, 2, 4, 9, 33, 100, 200}, {1, 2, 4, 9, 33});
  spec.seeds = 2;
  expect_same_step(spec);
}

// A few steps of every stage for the three archs on invcos2, widths 1..200, relu and silu
// (the emulated device: widths up to 33 on fewer points).
SweepSpec few_steps_spec() {
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", sized(2000, 800), 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu, Act::kSilu};
  spec.widths = sized<std::vector<int>>({1, 2, 4, 9, 33, 100, 200}, {1, 2, 4, 9, 33});
  spec.seeds = 2;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*3");
  return spec;
}

TEST(Cuda, NewtonStepsMatchCpuStatistically) {
  SKIP_WITHOUT_GPU();
  expect_similar_training(few_steps_spec());
}

// The same with the ALL stage alternating between damped Newton steps and exact linear solves
// instead of variable projection.
TEST(Cuda, AlternatingStepsMatchCpuStatistically) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec = few_steps_spec();
  spec.train.variable_projection = false;
  expect_similar_training(spec);
}

// The same in d = 2 and d = 5, where every activation takes the general assembly (the
// emulated device: widths up to 16 on fewer points).
TEST(Cuda, NewtonStepsMatchCpuInHigherDimensions) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("sin_sin", sized(1500, 600), 0));
  spec.datasets.push_back(make_target_dataset("friedman1", sized(1200, 500), 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu, Act::kGelu};
  spec.widths = sized<std::vector<int>>({1, 3, 16, 40}, {1, 3, 16});
  spec.seeds = 2;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*3");
  expect_similar_training(spec);
}

// The slopes of a whole sweep agree within 0.05 (the emulated device: widths 4..16 on fewer
// points). Trajectories part through rounding, and a network may end in another minimum; a
// fit over 13 widths spanning a factor 4 moves about 2.2 times as much for one such network
// as one over 29 widths spanning a factor 8 (sqrt(29/13) * ln 8 / ln 4), so the emulated
// sizes allow 0.11: the same sensitivity to one network.
TEST(Cuda, SweepSlopesMatchCpu) {
  SKIP_WITHOUT_GPU();
  SweepSpec spec;
  spec.datasets.push_back(make_target_dataset("invcos2", sized(2000, 1000), 0));
  spec.archs = {Arch::kMlp, Arch::kGlu, Arch::kGqu};
  spec.acts = {Act::kRelu};
  for (int w = 4; w <= sized(32, 16); ++w) spec.widths.push_back(w);
  spec.seeds = 2;
  spec.train.schedule = parse_schedule("D,U,Q,G,ALL*100");
  const auto jobs = make_jobs(spec);
  CpuBackend cpu(0);
  CudaBackend gpu{CudaOptions{}};
  const auto fc = fit_groups(spec, jobs, run_sweep(spec, jobs, cpu), 4);
  const auto fg = fit_groups(spec, jobs, run_sweep(spec, jobs, gpu), 4);
  ASSERT_EQ(fc.size(), fg.size());
  for (std::size_t k = 0; k < fc.size(); ++k) {
    ASSERT_TRUE(fc[k].ok && fg[k].ok) << fc[k].arch;
    EXPECT_NEAR(fg[k].vs_width.slope, fc[k].vs_width.slope, sized(0.05, 0.11)) << fc[k].arch;
    EXPECT_NEAR(fg[k].vs_params.slope, fc[k].vs_params.slope, sized(0.05, 0.11)) << fc[k].arch;
  }
}

// gpu-sweep --device cuda end to end, figures included, against --device cpu: the run names
// the device in summary.json, draws the same figures, fails no network the CPU does not, and
// its median test RMSE per arch is within 10% of the CPU's (trajectories part through
// rounding, as in expect_similar_training). The default sweep's widths 1..20, on 3000
// points instead of 10^4 on the emulated device.
TEST(Cuda, SweepCommandMatchesCpu) {
  SKIP_WITHOUT_GPU();
  namespace fs = std::filesystem;
  const fs::path dir = gs_test::tmp_dir();
  const std::string args = "--widths 1:20 -q --points " + std::to_string(sized(10000, 3000));
  for (const char* device : {"cpu", "cuda"}) {
    const gs_test::Outcome r =
        gs_test::run(args + " --device " + device + " --out " + (dir / device).string(), dir);
    ASSERT_EQ(r.code, 0) << device << ": " << r.err;
  }
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  const auto summary = nlohmann::json::parse(gs_test::slurp(dir / "cuda" / "summary.json"));
  const auto& config = summary.at("config");
  EXPECT_EQ(config.at("device"), "cuda");
  const std::string backend = config.at("backend");
  EXPECT_EQ(backend.rfind(std::string("cuda (") + prop.name, 0), 0u) << backend;
  std::set<std::string> figures[2];
  for (int k = 0; k < 2; ++k)
    for (const auto& e : fs::directory_iterator(dir / (k ? "cuda" : "cpu") / "plots")) {
      EXPECT_GT(fs::file_size(e.path()), 0u) << e.path();
      figures[k].insert(e.path().filename().string());
    }
  EXPECT_FALSE(figures[0].empty());
  EXPECT_EQ(figures[1], figures[0]);
  const CsvTable rc = read_csv_table((dir / "cpu" / "results.csv").string());
  const CsvTable rg = read_csv_table((dir / "cuda" / "results.csv").string());
  ASSERT_EQ(rg.rows.size(), rc.rows.size());
  const int arch = rc.column("arch"), width = rc.column("width"), rmse = rc.column("test_rmse"), st = rc.column("status");
  std::map<std::string, std::vector<double>> by_arch[2];
  for (std::size_t j = 0; j < rc.rows.size(); ++j) {
    const auto& c = rc.rows[j];
    const auto& g = rg.rows[j];
    ASSERT_EQ(g[arch] + g[width], c[arch] + c[width]);
    EXPECT_EQ(g[st] == "failed", c[st] == "failed") << c[arch] << " n=" << c[width];
    by_arch[0][c[arch]].push_back(parse_double_field(c[rmse], "cpu results"));
    by_arch[1][g[arch]].push_back(parse_double_field(g[rmse], "cuda results"));
  }
  ASSERT_EQ(by_arch[0].size(), 3u);
  // The host transfers of the CUDA run (none on the CPU's): its network-steps are the Newton
  // steps of results.csv summed, every parameter came to the device at the start and back at
  // the end, and each per-step figure is its total over the steps.
  EXPECT_FALSE(nlohmann::json::parse(gs_test::slurp(dir / "cpu" / "summary.json")).contains("host_transfers"));
  ASSERT_TRUE(summary.contains("host_transfers"));
  const auto& ht = summary.at("host_transfers");
  const int steps = rg.column("newton_steps"), params = rg.column("params");
  long long step_sum = 0;
  double param_bytes = 0.0, param_steps = 0.0;
  for (const auto& g : rg.rows) {
    const int s = std::stoi(g[steps]), p = std::stoi(g[params]);
    step_sum += s;
    param_bytes += 8.0 * p;
    param_steps += static_cast<double>(p) * s;
  }
  const long long ns = ht.at("network_steps").get<long long>();
  EXPECT_EQ(ns, step_sum);
  ASSERT_GT(ns, 0);
  const double to_host = ht.at("bytes_to_host").get<double>(), to_device = ht.at("bytes_to_device").get<double>();
  EXPECT_GE(to_host, param_bytes);
  EXPECT_GE(to_device, param_bytes);
  EXPECT_DOUBLE_EQ(ht.at("bytes_to_host_per_network_step").get<double>(), to_host / ns);
  EXPECT_DOUBLE_EQ(ht.at("bytes_to_device_per_network_step").get<double>(), to_device / ns);
  EXPECT_DOUBLE_EQ(ht.at("params_per_network_step").get<double>(), param_steps / ns);
  // No Hessian comes back: at most 16 P + 256 bytes to the host per network-step, P the mean
  // parameters of a network-step, in a sweep that saves once at its end.
  EXPECT_LE(to_host / ns, 16.0 * param_steps / ns + 256.0);
  // The ALL stage's variable projection ran on the device: host threads made a system or a
  // trial only where the device found the linear columns dependent (rare), counted.
  const long long host_systems = ht.at("host_var_pro_systems").get<long long>(),
                  host_trials = ht.at("host_var_pro_trials").get<long long>();
  EXPECT_LE(host_systems + host_trials, ns / 100);
  std::printf("host transfers: %.0f bytes to the host, %.0f to the device per network-step (%lld steps); "
              "variable projection on host threads: %lld systems, %lld trials\n",
              to_host / ns, to_device / ns, ns, host_systems, host_trials);
  for (auto& [name, cpu] : by_arch[0]) {
    std::vector<double>& gpu = by_arch[1][name];
    std::sort(cpu.begin(), cpu.end());
    std::sort(gpu.begin(), gpu.end());
    const double ratio = gpu[gpu.size() / 2] / cpu[cpu.size() / 2];
    EXPECT_NEAR(ratio, 1.0, 0.1) << name;
    std::printf("%s: median test RMSE %.6g (cuda) vs %.6g (cpu), ratio %.4f\n", name.c_str(), gpu[gpu.size() / 2],
                cpu[cpu.size() / 2], ratio);
  }
}

#ifdef GPUSWEEP_EMULATE_CUDA
// Every copy the backend makes between the host and the device goes through its count
// (Backend::host_transfers): over the same interval, from before the backend is made, its count
// equals the emulated device's own (cuda_emu/copies.h, taken at each cudaMemcpy and
// cudaMemcpyAsync), through every operation of the interface: training through each kind of
// stage with both projections, Adam, reading a system and the parameters, on the relu 1D
// path and the general one. Reading the parameters adds exactly their bytes.
TEST(Cuda, HostTransfersCountEveryCopy) {
  const Dataset ds = make_target_dataset("invcos2", 300, 0);
  const gs_emu::CopiedBytes e0 = gs_emu::bytes_copied();
  CudaBackend gpu{CudaOptions{}};
  ASSERT_TRUE(gpu.host_transfers().has_value());
  for (Act act : {Act::kRelu, Act::kSilu}) {
    const Batch batch = random_batch(ds, {2, 6}, act, 11);
    TrainOptions opt;
    opt.schedule = parse_schedule("D,U,Q,G,ALL*3");
    gpu.load(batch);
    train(gpu, batch, opt);
    opt.variable_projection = false;
    gpu.load(batch);
    train(gpu, batch, opt);
    opt.optimizer = Optimizer::kAdam;
    opt.adam.steps = 3;
    gpu.load(batch);
    train(gpu, batch, opt);
    std::vector<double> H, g, theta;
    gpu.read_system(batch.size() - 1, &H, &g);
    const HostTransfers before = *gpu.host_transfers();
    gpu.read_params(theta);
    const HostTransfers after = *gpu.host_transfers();
    EXPECT_EQ(after.bytes_to_host - before.bytes_to_host, batch.params.size() * sizeof(double));
    EXPECT_EQ(after.bytes_to_device, before.bytes_to_device);
  }
  const gs_emu::CopiedBytes e1 = gs_emu::bytes_copied();
  const HostTransfers b = *gpu.host_transfers();
  EXPECT_GT(b.bytes_to_host, 0u);
  EXPECT_GT(b.bytes_to_device, 0u);
  EXPECT_EQ(b.bytes_to_host, e1.to_host - e0.to_host);
  EXPECT_EQ(b.bytes_to_device, e1.to_device - e0.to_device);
  std::printf("%llu bytes to the host, %llu to the device\n", static_cast<unsigned long long>(b.bytes_to_host),
              static_cast<unsigned long long>(b.bytes_to_device));
}
#endif

// The device memory a loaded batch takes, after a full step, stays within the plan's estimate:
// bytes_per_network each and the scratch the plan sets aside, plus the datasets, allocation
// granularity and the libraries' lazy allocations in a fixed 128 MiB allowance. The same with
// every Cholesky path.
TEST(Cuda, MemoryUseStaysWithinTheEstimate) {
  SKIP_WITHOUT_GPU();
  const Dataset ds = make_target_dataset("invcos2", sized(10000, 4000), 0);
  Batch batch = random_batch(ds, {1, 50, 200}, Act::kRelu, 4);
  for (const char* mode : {"batched", "looped"}) {
    CudaOptions o;
    o.cholesky = parse_cholesky(mode);
    CudaBackend gpu{o};
    std::size_t estimate = gpu.memory().scratch;
    for (const auto& nd : batch.nets) estimate += gpu.bytes_per_network(num_params(nd.shape), sized(20000, 8000));
    std::size_t free0 = 0, free1 = 0, total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
    gpu.load(batch);
    std::vector<int> nets = all_of(batch);
    std::vector<double> l(nets.size()), sg(nets.size()), gd(nets.size()), lam(nets.size(), 1.0), tl(8 * nets.size());
    std::vector<int> info(nets.size());
    gpu.assemble(nets, Block::kAll, HessianKind::kExact, l.data(), sg.data());
    gpu.solve(nets, lam.data(), info.data(), gd.data());
    const double alphas[8] = {1, 0.5, 0.25, 0.125, 1.0 / 16, 1.0 / 64, 1.0 / 256, 1.0 / 2048};
    gpu.trial_losses(nets, alphas, 8, tl.data());
    std::vector<double> tr(nets.size()), te(nets.size());
    gpu.rmse(tr.data(), te.data());
    ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
    const std::size_t used = free0 > free1 ? free0 - free1 : 0;
    // The allowance: what the libraries allocate for themselves on a GPU (cuBLAS's and
    // cuSOLVER's handles and workspaces); the emulated ones allocate nothing of the device's.
    EXPECT_LE(used, estimate + sized(std::size_t(128) << 20, std::size_t(8) << 20)) << mode << ": estimate " << estimate;
    std::printf("%s: used %zu MiB of an estimate of %zu MiB; workspace %zu MiB\n", mode, used >> 20, estimate >> 20,
                gpu.memory().workspace >> 20);
  }
}

}  // namespace
}  // namespace gs
