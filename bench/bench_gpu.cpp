// GPU against CPU on the same machine: network-Newton-steps per second of a full (ALL-stage)
// Newton step at widths 8, 32, 128 and 200 for each arch on both backends; the achieved FP64
// rate of the general J^T J assembly (gelu) and of the factorization against the card's peak;
// the Cholesky path table (batched against looped cuSOLVER Cholesky by size and batch, and the
// --cholesky rules it implies); and the full sweep --widths 1:200 --seeds 32.
//   usage: bench_gpu [points=10000] [peak_fp64_tflops=0 (unknown)] [full_sweep=1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backend/cpu_backend.h"
#include "cuda_backend.h"
#include "gpusweep/model/data.h"
#include "gpusweep/model/relu1d.h"
#include "gpusweep/train/driver.h"
#include "gpusweep/train/sweep.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct StepRate {
  double per_second = 0.0;
  int failed = 0;  // factorizations that failed at the damping used (their step is not applied)
};

// Network steps per second of step() on n networks: one untimed warm-up (after which
// stats_of's counters restart), then repetitions for at least min_seconds. *timed (if given):
// the seconds the timed repetitions took.
template <class Step>
double steps_per_second(Step&& step, int n, double min_seconds, gs::CudaBackend* stats_of,
                        double* timed = nullptr) {
  step();
  if (stats_of) stats_of->reset_stats();
  long long steps = 0;
  const auto t0 = Clock::now();
  do {
    step();
    steps += n;
  } while (since(t0) < min_seconds);
  const double el = since(t0);
  if (timed) *timed = el;
  return steps / el;
}

// The driver's common path for every network of the batch: assemble the exact system of the
// stage, solve it, evaluate the full step, apply it with length 0 (so every repetition does
// the same work) to the networks whose factorization succeeded.
StepRate newton_steps_per_second(gs::Backend& be, const gs::Batch& batch, double min_seconds,
                                 gs::CudaBackend* stats_of = nullptr) {
  be.load(batch);
  const int n = batch.size();
  std::vector<int> nets(n);
  for (int i = 0; i < n; ++i) nets[i] = i;
  std::vector<double> loss(n), sg(n), gd(n), lam(n, 1e-2), alpha(n, 0.0), trials(n);
  std::vector<int> info(n);
  const double one = 1.0;
  StepRate out;
  auto step = [&]() {
    be.assemble(nets, gs::Block::kAll, gs::HessianKind::kExact, loss.data(), sg.data());
    be.solve(nets, lam.data(), info.data(), gd.data());
    std::vector<int> ok;
    for (int j = 0; j < n; ++j)
      if (info[j] == 0) ok.push_back(nets[j]);
    out.failed = n - static_cast<int>(ok.size());
    be.trial_losses(ok, &one, 1, trials.data());
    be.apply_step(ok, alpha.data());
  };
  out.per_second = steps_per_second(step, n, min_seconds, stats_of);
  return out;
}

// The default ALL step, variable projection, for every network of the batch (relu on 1D
// inputs): assemble the gradient and the Hessian's diagonal (the Jacobi scale, all that the
// driver assembles for these networks), take the reduced Newton step (var_pro.h), evaluate the
// trial with the linear parameters solved, and keep nothing (every repetition does the same
// work).
double var_pro_steps_per_second(gs::Backend& be, const gs::Batch& batch, double min_seconds,
                                gs::CudaBackend* stats_of = nullptr, double* timed = nullptr) {
  for (const gs::NetDesc& nd : batch.nets)
    if (!gs::relu1d_fast_path(nd.shape)) throw std::logic_error("var_pro_steps_per_second: relu networks on 1D inputs only");
  be.load(batch);
  const int n = batch.size();
  std::vector<int> nets(n);
  for (int i = 0; i < n; ++i) nets[i] = i;
  std::vector<double> loss(n), sg(n), lam(n, 1e-2), trial(n);
  std::vector<gs::StepModel> model(n);
  std::vector<int> info(n);
  auto step = [&]() {
    be.assemble(nets, gs::Block::kAll, gs::HessianKind::kDiagonal, loss.data(), sg.data());
    be.var_pro_solve(nets, lam.data(), info.data(), model.data());
    be.var_pro_trial(nets, true, trial.data());
  };
  return steps_per_second(step, n, min_seconds, stats_of, timed);
}

gs::Batch make_batch(const gs::Dataset& ds, const gs::Shape& s, int count) {
  gs::Batch batch;
  batch.datasets.push_back(&ds);
  std::vector<double> th(gs::num_params(s));
  for (int k = 0; k < count; ++k) {
    gs::init_params(s, gs::InitKind::kMaso, ds, 1000 + k, th.data());
    batch.add(s, 0, th.data());
  }
  return batch;
}

int gpu_batch(int p, int points) {
  return std::max(64, std::min(4096, static_cast<int>(4e9 / (8.0 * 2 * p * p + 8.0 * points * 20))));
}

}  // namespace

int run(int argc, char** argv) {
  const int points = argc > 1 ? std::atoi(argv[1]) : 10000;
  const double peak = argc > 2 ? std::atof(argv[2]) : 0.0;
  const bool full = argc > 3 ? std::atoi(argv[3]) != 0 : true;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const gs::Dataset ds = gs::make_target_dataset("invcos2", points, 0);
  gs::CudaBackend gpu{gs::CudaOptions{}};
  std::printf("%s; CPU: %d threads; %d points\n", gpu.describe().c_str(), cores, points);
  const gs::CudaMemory& mem = gpu.memory();
  std::printf("memory plan: %.2f GiB for networks, %.2f GiB scratch, %.1f MiB cuSOLVER workspace\n",
              mem.networks / 1073741824.0, mem.scratch / 1073741824.0, mem.workspace / 1048576.0);
  auto pct = [&](double tflops) { return peak > 0 ? 100.0 * tflops / peak : 0.0; };

  std::printf("\nNewton steps, ALL stage, exact Hessian, relu (the relu / 1D assembly on both backends)\n");
  std::printf("%-5s %6s %6s %8s %14s %14s %9s %12s %14s %8s\n", "arch", "width", "P", "batch",
              "CPU steps/s", "GPU steps/s", "GPU/CPU", "asm ms/call", "chol TFLOP/s", "failed");
  for (gs::Arch arch : {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu}) {
    for (int w : {8, 32, 128, 200}) {
      const gs::Shape s{arch, gs::Act::kRelu, 1, w};
      const int p = gs::num_params(s);
      const int count = gpu_batch(p, points);
      gs::CpuBackend cpu(cores);
      const StepRate rc = newton_steps_per_second(cpu, make_batch(ds, s, 2 * cores), 2.0);
      const StepRate rg = newton_steps_per_second(gpu, make_batch(ds, s, count), 2.0, &gpu);
      const gs::CudaStats& st = gpu.stats();
      const double calls = st.factorizations / static_cast<double>(count);
      std::printf("%-5s %6d %6d %8d %14.1f %14.1f %9.1f %12.3f %14.3f %8d\n", gs::arch_name(arch), w, p, count,
                  rc.per_second, rg.per_second, rg.per_second / rc.per_second, 1e3 * st.relu1d_seconds / calls,
                  st.factor_flops / st.factor_seconds * 1e-12, rg.failed);
    }
  }

  std::printf("\nVariable-projection steps (the default ALL step), relu: the shares of the GPU time in the host half "
              "and in the device's variable projection (systems, steps and trials)\n");
  std::printf("%-5s %6s %6s %8s %14s %14s %9s %10s %12s\n", "arch", "width", "P", "batch", "CPU steps/s",
              "GPU steps/s", "GPU/CPU", "host %", "device vp %");
  for (gs::Arch arch : {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu}) {
    for (int w : {8, 32, 128, 200}) {
      const gs::Shape s{arch, gs::Act::kRelu, 1, w};
      const int p = gs::num_params(s);
      const int count = gpu_batch(p, points);
      gs::CpuBackend cpu(cores);
      const double rc = var_pro_steps_per_second(cpu, make_batch(ds, s, 2 * cores), 2.0);
      double timed = 0.0;
      const double rg = var_pro_steps_per_second(gpu, make_batch(ds, s, count), 2.0, &gpu, &timed);
      std::printf("%-5s %6d %6d %8d %14.1f %14.1f %9.1f %10.1f %12.1f\n", gs::arch_name(arch), w, p, count, rc, rg,
                  rg / rc, 100.0 * gpu.stats().host_seconds / timed,
                  100.0 * gpu.stats().device_var_pro_seconds / timed);
    }
  }

  std::printf("\nGeneral J^T J assembly (gelu, every point), ALL stage, exact Hessian: Jacobian rows once per 256 "
              "points with the tile kernel (the default), the tile kernel evaluating its own entries, and "
              "cublasDgemmGroupedBatched on the rows\n");
  std::printf("%-5s %6s %6s %8s %14s %14s %9s %14s %8s %16s %15s\n", "arch", "width", "P", "batch", "CPU steps/s",
              "GPU steps/s", "GPU/CPU", "asm TFLOP/s", "% peak", "tiles TFLOP/s", "GEMM TFLOP/s");
  gs::CudaOptions tiles_only, gemm;
  tiles_only.jacobian_rows = 0;
  gemm.jtj_gemm = true;
  gs::CudaBackend gpu_tiles{tiles_only}, gpu_gemm{gemm};
  for (gs::Arch arch : {gs::Arch::kGlu, gs::Arch::kGqu}) {
    for (int w : {32, 128, 200}) {
      const gs::Shape s{arch, gs::Act::kGelu, 1, w};
      const int p = gs::num_params(s);
      const int count = std::max(16, gpu_batch(p, points) / 4);
      gs::CpuBackend cpu(cores);
      const StepRate rc = newton_steps_per_second(cpu, make_batch(ds, s, 2 * cores), 2.0);
      const StepRate rg = newton_steps_per_second(gpu, make_batch(ds, s, count), 2.0, &gpu);
      const gs::CudaStats& st = gpu.stats();
      const double tf = st.assemble_flops / st.assemble_seconds * 1e-12;
      newton_steps_per_second(gpu_tiles, make_batch(ds, s, count), 1.0, &gpu_tiles);
      newton_steps_per_second(gpu_gemm, make_batch(ds, s, count), 1.0, &gpu_gemm);
      const gs::CudaStats& tt = gpu_tiles.stats();
      const gs::CudaStats& tg = gpu_gemm.stats();
      std::printf("%-5s %6d %6d %8d %14.1f %14.1f %9.1f %14.3f %8.1f %16.3f %15.3f\n", gs::arch_name(arch), w, p,
                  count, rc.per_second, rg.per_second, rg.per_second / rc.per_second, tf, pct(tf),
                  tt.assemble_flops / tt.assemble_seconds * 1e-12, tg.assemble_flops / tg.assemble_seconds * 1e-12);
    }
  }

  // The Cholesky path table: per size and batch, the factorization time of one solve on each
  // path (factor_seconds: from each round's fork to its join, potrf and potrs), and the rules
  // for --cholesky that follow from it. The full sweep's size groups hold 32 to 96 matrices.
  std::printf("\nCholesky paths: cusolverDnDpotrfBatched against one cusolverDnXpotrf per matrix on %d streams "
              "(gqu, relu, Gauss-Newton ALL stage, lambda 1e-2)\n",
              gs::CudaOptions{}.loop_streams);
  std::printf("%6s %8s %18s %18s %9s %8s\n", "P", "batch", "batched ms/solve", "looped ms/solve", "looped/b", "failed");
  gs::CudaOptions ob, ol;
  ob.cholesky = gs::parse_cholesky("batched");
  ol.cholesky = gs::parse_cholesky("looped");
  gs::CudaBackend batched{ob}, looped{ol};
  std::vector<gs::CholeskyRule> rules;
  for (int w : {2, 4, 8, 16, 32, 64, 128, 200}) {
    const gs::Shape s{gs::Arch::kGqu, gs::Act::kRelu, 1, w};
    const int p = gs::num_params(s);
    int min_batch = gs::kNeverBatched;  // the smallest batch from which batched wins at every larger one
    bool looped_won = false;
    const std::vector<int> batches = p <= 449 ? std::vector<int>{1, 4, 16, 32, 96, 256} : std::vector<int>{1, 4, 16, 32, 96};
    for (auto it = batches.rbegin(); it != batches.rend(); ++it) {
      const int count = *it;
      const gs::Batch batch = make_batch(ds, s, count);
      double ms[2];
      int failed = 0;
      for (int mode = 0; mode < 2; ++mode) {
        gs::CudaBackend& be = mode == 0 ? batched : looped;
        be.load(batch);
        std::vector<int> nets(batch.size());
        for (int i = 0; i < batch.size(); ++i) nets[i] = i;
        std::vector<double> loss(nets.size()), sg(nets.size()), gd(nets.size()), lam(nets.size(), 1e-2);
        std::vector<int> info(nets.size());
        be.assemble(nets, gs::Block::kAll, gs::HessianKind::kGaussNewton, loss.data(), sg.data());
        be.solve(nets, lam.data(), info.data(), gd.data());  // warm-up
        be.reset_stats();
        for (int r = 0; r < 3; ++r) be.solve(nets, lam.data(), info.data(), gd.data());
        ms[mode] = 1e3 * be.stats().factor_seconds / 3;
        failed += static_cast<int>(std::count_if(info.begin(), info.end(), [](int v) { return v != 0; }));
      }
      std::printf("%6d %8d %18.3f %18.3f %9.2f %8d\n", p, count, ms[0], ms[1], ms[1] / ms[0], failed);
      if (ms[0] <= ms[1] && !looped_won) min_batch = count;
      else looped_won = true;
    }
    rules.push_back({rules.empty() ? 1 : p, min_batch});
  }
  // Merge sizes with the same crossover into one rule.
  gs::CholeskyTable measured;
  for (const auto& r : rules)
    if (measured.rules.empty() || measured.rules.back().min_batch != r.min_batch) measured.rules.push_back(r);
  std::printf("measured --cholesky %s (the default, auto, is %s)\n", gs::cholesky_text(measured).c_str(),
              gs::kDefaultCholesky);

  if (full) {
    gs::SweepSpec spec;
    spec.datasets.push_back(gs::make_target_dataset("invcos2", points, 0));
    spec.archs = {gs::Arch::kMlp, gs::Arch::kGlu, gs::Arch::kGqu};
    spec.acts = {gs::Act::kRelu};
    for (int w = 1; w <= 200; ++w) spec.widths.push_back(w);
    spec.seeds = 32;
    spec.train.schedule = gs::parse_schedule("D,U,Q,G,ALL*100");
    const auto jobs = gs::make_jobs(spec);
    gpu.reset_stats();
    const auto t0 = Clock::now();
    const auto res = gs::run_sweep(spec, jobs, gpu);
    const double el = since(t0);
    int conv = 0, failed = 0;
    for (const auto& r : res) conv += r.status == gs::Status::kConverged, failed += r.status == gs::Status::kFailed;
    const gs::CudaStats& st = gpu.stats();
    std::printf("\nfull sweep --widths 1:200 --seeds 32 (%zu networks, %d points): %.1f s; %d converged, %d failed\n",
                jobs.size(), points, el, conv, failed);
    const double tf = st.factor_flops / st.factor_seconds * 1e-12;
    std::printf("  host half of the solver (least squares, variable projection, copies) %.1f s\n", st.host_seconds);
    std::printf("  relu/1D assembly kernels %.1f s; factorization %.1f s at %.3f TFLOP/s (%.1f %% of peak), %lld factorizations "
                "(%lld looped) in %lld scratch rounds\n",
                st.relu1d_seconds, st.factor_seconds, tf, pct(tf), st.factorizations, st.looped, st.rounds);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 2;
  }
}
