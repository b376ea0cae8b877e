// The floating-point work of one variable-projection step (the ALL stage) of the main job,
// `gpu-sweep --widths 1:200 --seeds 32` (mlp, glu, gqu; relu; invcos2; 10,000 points; the
// default schedule), by primitive, from the sizes the solver factorizes in a real run: the
// command line's default sweep is trained on the CPU backend (one thread) at a sample of
// widths, with the solver's tallies on (gpusweep/solver/tally.h), one arch and width at a
// time. Per network, the ALL stage's work over its steps is divided by its steps (its
// assemblies); widths between the samples are interpolated linearly, and the seeds of the
// full job are taken to cost what the sampled seeds cost. It prints:
//   - per arch and sampled width: steps, reduced systems and how many were indefinite
//     (the saddle-free path, dsyevd) or took their main QR from the trial at their parameters
//     (reuse%, MainQr of var_pro.h), damping tries, trials, mean sizes, flops per step, and
//     the trials solved by QR (trqr) and sent to dgelsd (trfb), totals (least_squares.h);
//   - one step of the full job by primitive: flops (present and target formulation,
//     tally.h), this machine's CPU seconds on one thread and its rate;
//   - a projection for one H100 at the sustained rates assumed below, one step and the whole
//     ALL stage (the mean steps of the sample);
//   - the bytes per network-step the present CUDA backend moves to and from the host;
//   - single LAPACK calls at the gqu sizes of the widest sample, timed, as a check of the
//     flop counts.
//   usage: bench_flops [widths=1,2,3,4,5,10,20,...,200] [seeds=1] [full_seeds=32] [csv=]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu_backend.h"
#include "cli/cli_options.h"
#include "gpusweep/model/model.h"
#include "gpusweep/solver/tally.h"
#include "gpusweep/train/sweep.h"
#include "solver/lapack.h"
#include "solver/staircase_qr.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr int kP = gs::kNumPrims;

// Per network of one (arch, width): the ALL stage's totals, over the sampled seeds' mean.
struct Sample {
  int width = 0, params = 0, nets = 0, converged = 0;
  double steps = 0.0;  // ALL steps (assemblies) per network
  double flops[kP] = {}, target[kP] = {}, seconds[kP] = {};
  double systems = 0, indefinite = 0, first_solves = 0, tries = 0, trials = 0, pivoted = 0, reused = 0;
  double rows = 0, kc = 0, kb = 0, elems = 0, trial_rows = 0, trial_m = 0, trial_elems = 0;
  int max_rows = 0, max_kc = 0, max_kb = 0, max_trial_rows = 0, max_trial_m = 0;
  long long trial_qr = 0, trial_fallbacks = 0;  // totals over the sampled networks (tally.h)
};

Sample run_one(const std::string& arch, int width, int seeds) {
  gs::Options o;
  o.arch = arch;
  o.widths = std::to_string(width);
  o.seeds = seeds;
  const gs::SweepSpec spec = gs::build_spec(o);
  const auto jobs = gs::make_jobs(spec);
  gs::CpuBackend be(1);
  gs::SolverTally t;
  gs::set_solver_tally(&t);
  const auto res = gs::run_sweep(spec, jobs, be);
  gs::set_solver_tally(nullptr);
  Sample s;
  s.width = width;
  s.nets = static_cast<int>(res.size());
  s.params = gs::num_params(gs::Shape{gs::parse_archs(arch)[0].arch, gs::Act::kRelu, 1, width});
  for (const auto& r : res) s.converged += r.status == gs::Status::kConverged ? 1 : 0;
  const double n = s.nets;
  s.steps = t.prim[static_cast<int>(gs::Prim::kAssembly)].calls / n;
  for (int p = 0; p < kP; ++p) {
    s.flops[p] = t.prim[p].flops / n;
    s.target[p] = t.prim[p].target_flops / n;
    s.seconds[p] = t.prim[p].seconds / n;
  }
  s.systems = t.systems / n;
  s.indefinite = t.indefinite / n;
  s.first_solves = t.first_solves / n;
  s.tries = t.tries / n;
  s.trials = t.trials / n;
  s.pivoted = t.pivoted / n;
  s.reused = t.reused_qr / n;
  const double ns = std::max<double>(t.systems, 1), nt = std::max<double>(t.trials, 1);
  s.rows = t.sum_rows / ns;
  s.kc = t.sum_kc / ns;
  s.kb = t.sum_kb / ns;
  s.elems = t.sum_elems / ns;
  s.trial_rows = t.sum_trial_rows / nt;
  s.trial_m = t.sum_trial_m / nt;
  s.trial_elems = t.sum_trial_elems / nt;
  s.max_rows = t.max_rows;
  s.max_kc = t.max_kc;
  s.max_kb = t.max_kb;
  s.max_trial_rows = t.max_trial_rows;
  s.max_trial_m = t.max_trial_m;
  s.trial_qr = t.trial_qr;
  s.trial_fallbacks = t.trial_fallbacks;
  return s;
}

// Linear interpolation of f over the samples (sorted by width) at width w.
template <class F>
double interp(const std::vector<Sample>& v, int w, F f) {
  if (w <= v.front().width) return f(v.front());
  for (std::size_t k = 1; k < v.size(); ++k)
    if (w <= v[k].width) {
      const double a = static_cast<double>(w - v[k - 1].width) / (v[k].width - v[k - 1].width);
      return (1.0 - a) * f(v[k - 1]) + a * f(v[k]);
    }
  return f(v.back());
}

// Sustained rates assumed for one H100 (SXM: 67 TFLOP/s FP64 on the tensor cores, 34 on the
// vector units, 3.35 TB/s HBM3), as [low, high] fractions of a peak. Projections, not
// measurements: bench_gpu replaces them where a GPU is at hand.
struct Rate {
  const char* basis;
  double peak;       // flop/s
  double low, high;  // fractions of peak
};
constexpr double kTensor = 67e12, kVector = 34e12, kHbm = 3.35e12;
Rate rate_of(gs::Prim p, bool target) {
  using gs::Prim;
  switch (p) {
    case Prim::kResiduals:
    case Prim::kAssembly:
    case Prim::kCurvature:
    case Prim::kTrialLoss:
      return {"FP64 vector, per-point loops", kVector, 0.10, 0.40};
    case Prim::kCompress:
    case Prim::kTrialCompress:
      return {"FP64 vector, tiny QRs per cell", kVector, 0.05, 0.20};
    case Prim::kQr:
      return {"FP64 tensor, batched Householder QR", kTensor, 0.05, 0.25};
    case Prim::kReduced:
      return {"FP64 tensor, TRSM/GEMM/SYRK", kTensor, 0.20, 0.50};
    case Prim::kCholesky:
    case Prim::kOther:
      return {"FP64 tensor, batched Cholesky", kTensor, 0.05, 0.25};
    case Prim::kEigen:
      return target ? Rate{"FP64 tensor, batched Cholesky", kTensor, 0.05, 0.25}
                    : Rate{"syevd, per matrix", kTensor, 0.002, 0.01};
    case Prim::kTrialLs:
      // The trial's least squares is a Householder QR in both (least_squares.h; dgelsd only
      // for a dependent main block, none in the sampled runs: the trfb column).
      return {"FP64 tensor, batched Householder QR", kTensor, 0.05, 0.25};
    case Prim::kCount: break;
  }
  return {"?", kVector, 0.1, 0.1};
}

// The calling thread's CPU seconds of one call of f (the mean of reps, after a warm-up call).
double time_call(int reps, const std::function<void()>& f) {
  f();
  const double t0 = gs::thread_cpu_seconds();
  for (int r = 0; r < reps; ++r) f();
  return (gs::thread_cpu_seconds() - t0) / reps;
}

void calibrate(const Sample& g) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd;
  auto randm = [&](int r, int c) {
    std::vector<double> a(static_cast<std::size_t>(r) * c);
    for (auto& v : a) v = nd(rng);
    return a;
  };
  std::printf("\nSingle LAPACK calls at the gqu sizes of width %d (one thread; flops by tally.h's counts):\n",
              g.width);
  std::printf("%-34s %12s %12s %10s\n", "call", "flops", "seconds", "GFLOP/s");
  auto show = [](const std::string& what, double fl, double s) {
    std::printf("%-34s %12.3e %12.3e %10.2f\n", what.c_str(), fl, s, fl / s / 1e9);
  };
  {  // the step's QR: the compressed [J_c | J_b | r], its linear columns first
    const int m = g.max_rows, n = g.max_kc;
    const auto a0 = randm(m, n);
    std::vector<double> a, tau(n), work(1);
    int lwork = -1, info = 0;
    double q = 0;
    a = a0;
    dgeqrf_(&m, &n, a.data(), &m, tau.data(), &q, &lwork, &info);
    lwork = static_cast<int>(q);
    work.resize(lwork);
    const double s = time_call(5, [&] {
      a = a0;
      dgeqrf_(&m, &n, a.data(), &m, tau.data(), work.data(), &lwork, &info);
    });
    show("dgeqrf " + std::to_string(m) + " x " + std::to_string(n), gs::flops_qr(m, n), s);
  }
  const int k = g.max_kb;
  std::vector<double> spd;
  {
    const auto b = randm(k, k);
    spd.assign(static_cast<std::size_t>(k) * k, 0.0);
    const double one = 1.0, zero = 0.0;
    dgemm_("T", "N", &k, &k, &k, &one, b.data(), &k, b.data(), &k, &zero, spd.data(), &k);
    for (int i = 0; i < k; ++i) spd[i + static_cast<std::size_t>(i) * k] += k;
    std::vector<double> c;
    const double s = time_call(5, [&] {
      c = spd;
      dgemm_("T", "N", &k, &k, &k, &one, b.data(), &k, b.data(), &k, &zero, c.data(), &k);
    });
    show("dgemm " + std::to_string(k) + "^3", 2.0 * k * k * static_cast<double>(k), s);
  }
  {
    std::vector<double> c;
    int info = 0;
    const double s = time_call(5, [&] {
      c = spd;
      dpotrf_("L", &k, c.data(), &k, &info);
    });
    show("dpotrf " + std::to_string(k), gs::flops_potrf(k), s);
  }
  {
    std::vector<double> c(spd), w(k);
    for (std::size_t i = 0; i < c.size(); ++i) c[i] -= (i % (k + 1) == 0) ? 1.5 * k : 0.0;  // indefinite
    int lwork = -1, liwork = -1, iq = 0, info = 0;
    double wq = 0;
    dsyevd_("V", "L", &k, c.data(), &k, w.data(), &wq, &lwork, &iq, &liwork, &info);
    lwork = static_cast<int>(wq);
    liwork = iq;
    std::vector<double> wk(lwork);
    std::vector<int> iwk(liwork);
    const auto c0 = c;
    const double s = time_call(3, [&] {
      c = c0;
      dsyevd_("V", "L", &k, c.data(), &k, w.data(), wk.data(), &lwork, iwk.data(), &liwork, &info);
    });
    show("dsyevd " + std::to_string(k) + " (9 n^3)", gs::flops_syevd(k), s);
  }
  {  // the trial's least squares
    const int m = g.max_trial_rows, n = g.max_trial_m, nrhs = 1, ldb = std::max(m, n);
    const auto a0 = randm(m, n);
    std::vector<double> a, b(ldb), sv(std::min(m, n));
    const double rcond = 1e-12;
    int rank = 0, info = 0, lwork = -1, iq = 0;
    double q = 0;
    a = a0;
    dgelsd_(&m, &n, &nrhs, a.data(), &m, b.data(), &ldb, sv.data(), &rcond, &rank, &q, &lwork, &iq, &info);
    lwork = static_cast<int>(q);
    std::vector<double> work(lwork);
    std::vector<int> iwork(std::max(1, iq));
    const double s = time_call(3, [&] {
      a = a0;
      std::fill(b.begin(), b.end(), 1.0);
      dgelsd_(&m, &n, &nrhs, a.data(), &m, b.data(), &ldb, sv.data(), &rcond, &rank, work.data(), &lwork,
              iwork.data(), &info);
    });
    show("dgelsd " + std::to_string(m) + " x " + std::to_string(n) + " (2mn^2+11n^3)", gs::flops_gelsd(m, n), s);
    std::vector<double> tau(n + 1), wq(1);
    const int n1 = n + 1;
    auto a1 = randm(m, n1);
    int lw = -1;
    dgeqrf_(&m, &n1, a1.data(), &m, tau.data(), &q, &lw, &info);
    lw = static_cast<int>(q);
    wq.resize(lw);
    const auto a10 = a1;
    const double s2 = time_call(3, [&] {
      a1 = a10;
      dgeqrf_(&m, &n1, a1.data(), &m, tau.data(), wq.data(), &lw, &info);
    });
    show("dgeqrf " + std::to_string(m) + " x " + std::to_string(n1) + " (its target)", gs::flops_qr(m, n1), s2);
  }
  {
    // The trial's main QR on the staircase a relu 1D system has (least_squares.h): half the
    // columns from the top row down to a row 4 per column deeper (sorted so), half from a row 8
    // per column deeper to the bottom, and the right-hand side dense; LAPACK's dgeqrf and dormqr
    // against staircase_qr (flops: what each did by tally.h's counts).
    const int m = g.max_trial_rows, n = g.max_trial_m - 5, half = n / 2, nr = 6;
    std::vector<double> a0(static_cast<std::size_t>(m) * (n + nr), 0.0);
    for (int j = 0; j < n + nr; ++j) {
      const int lo = j >= half && j < n ? std::min(m - 1, 8 * (j - half) + 16) : 0;
      const int hi = j < half ? std::min(m, 4 * j + 28) : m;
      for (int r = lo; r < hi; ++r) a0[r + static_cast<std::size_t>(j) * m] = nd(rng);
    }
    std::vector<double> a, tau(n), work;
    int lw = -1, info = 0, nrr = nr;
    double q = 0;
    a = a0;
    dgeqrf_(&m, &n, a.data(), &m, tau.data(), &q, &lw, &info);
    lw = static_cast<int>(q);
    std::vector<double> wq(lw);
    int lw2 = -1;
    dormqr_("L", "T", &m, &nrr, &n, a.data(), &m, tau.data(), a.data() + static_cast<std::size_t>(n) * m, &m, &q, &lw2,
            &info);
    lw2 = static_cast<int>(q);
    std::vector<double> wq2(lw2);
    const double s1 = time_call(5, [&] {
      a = a0;
      dgeqrf_(&m, &n, a.data(), &m, tau.data(), wq.data(), &lw, &info);
      dormqr_("L", "T", &m, &nrr, &n, a.data(), &m, tau.data(), a.data() + static_cast<std::size_t>(n) * m, &m,
              wq2.data(), &lw2, &info);
    });
    const std::string size = std::to_string(m) + " x " + std::to_string(n);
    show("dgeqrf+dormqr " + size + " staircase", gs::flops_qr(m, n) + gs::flops_apply_q(m, nr, n), s1);
    double fl = 0.0;
    const double s2 = time_call(5, [&] {
      a = a0;
      fl = gs::staircase_qr(m, n + nr, n, a.data(), m, tau.data(), work);
    });
    show("staircase_qr " + size, fl, s2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string widths_text = argc > 1 ? argv[1] : "1,2,3,4,5,10,20,30,40,50,60,70,80,90,100,110,120,130,140,150,160,170,180,190,200";
  const int seeds = argc > 2 ? std::atoi(argv[2]) : 1;
  const int full_seeds = argc > 3 ? std::atoi(argv[3]) : 32;
  const std::string csv = argc > 4 ? argv[4] : "";
  std::vector<int> widths = gs::parse_widths(widths_text);
  std::sort(widths.begin(), widths.end());
  widths.erase(std::unique(widths.begin(), widths.end()), widths.end());
  const std::vector<std::string> archs = {"mlp", "glu", "gqu"};
  const int wmax = 200;
  std::printf("bench_flops: the default sweep (invcos2, 10,000 points, D,U,Q,R,S,G,ALL*100), CPU backend, one thread,\n"
              "widths %s, %d seed(s) sampled; projected to widths 1..%d x %d seeds\n\n",
              widths_text.c_str(), seeds, wmax, full_seeds);
  std::printf("%-4s %5s %5s %6s %6s %6s %7s %7s %6s %6s %7s %6s %6s %6s %10s %10s %8s %6s %6s\n", "arch", "width", "P",
              "conv", "steps", "syst", "indef%", "reuse%", "tries", "trials", "rows", "kc", "kb", "trialm", "flops/step",
              "target", "cpu s", "trqr", "trfb");
  std::map<std::string, std::vector<Sample>> by_arch;
  std::ofstream out;
  if (!csv.empty()) {
    out.open(csv);
    out << "arch,width,params,nets,converged,steps,systems,indefinite,first_solves,tries,trials,pivoted,rows,kc,kb,"
           "elems,trial_rows,trial_m,trial_elems,max_rows,max_kc,max_kb,max_trial_rows,max_trial_m,trial_qr,"
           "trial_fallbacks,reused_qr";
    for (int p = 0; p < kP; ++p) {
      const char* n = gs::prim_name(static_cast<gs::Prim>(p));
      out << ',' << n << "_flops," << n << "_target," << n << "_seconds";
    }
    out << '\n';
  }
  const auto t_all = Clock::now();
  for (const auto& arch : archs) {
    for (int w : widths) {
      const Sample s = run_one(arch, w, seeds);
      by_arch[arch].push_back(s);
      double fl = 0, tg = 0, sec = 0;
      for (int p = 0; p < kP; ++p) {
        fl += s.flops[p];
        tg += s.target[p];
        sec += s.seconds[p];
      }
      const double st = std::max(s.steps, 1e-300);
      std::printf("%-4s %5d %5d %3d/%-2d %6.1f %6.1f %7.1f %7.1f %6.1f %6.1f %7.1f %6.1f %6.1f %6.1f %10.3e %10.3e %8.4f %6lld "
                  "%6lld\n",
                  arch.c_str(), w, s.params, s.converged, s.nets, s.steps, s.systems,
                  s.first_solves > 0 ? 100.0 * s.indefinite / s.first_solves : 0.0,
                  s.systems > 0 ? 100.0 * s.reused / s.systems : 0.0, s.tries, s.trials, s.rows, s.kc,
                  s.kb, s.trial_m, fl / st, tg / st, sec / st, s.trial_qr, s.trial_fallbacks);
      std::fflush(stdout);
      if (out) {
        out << arch << ',' << w << ',' << s.params << ',' << s.nets << ',' << s.converged << ',' << s.steps << ','
            << s.systems << ',' << s.indefinite << ',' << s.first_solves << ',' << s.tries << ',' << s.trials << ','
            << s.pivoted << ',' << s.rows << ',' << s.kc << ',' << s.kb << ',' << s.elems << ',' << s.trial_rows
            << ',' << s.trial_m << ',' << s.trial_elems << ',' << s.max_rows << ',' << s.max_kc << ','
            << s.max_kb << ',' << s.max_trial_rows << ',' << s.max_trial_m << ',' << s.trial_qr << ','
            << s.trial_fallbacks << ',' << s.reused;
        for (int p = 0; p < kP; ++p) out << ',' << s.flops[p] << ',' << s.target[p] << ',' << s.seconds[p];
        out << '\n';
        out.flush();
      }
    }
  }
  std::printf("(sampled runs: %.0f s)\n", since(t_all));

  // The full job: per network, its ALL stage's totals over its steps ("per step"), summed over
  // widths 1..wmax and full_seeds seeds; and the totals themselves (the whole ALL stage).
  double step_fl[kP] = {}, step_tg[kP] = {}, step_sec[kP] = {};
  double sweep_fl[kP] = {}, sweep_tg[kP] = {};
  double nets = 0, steps = 0, indef = 0, firsts = 0, bytes_present = 0, bytes_target = 0, bytes_systems = 0;
  for (const auto& arch : archs) {
    const auto& v = by_arch[arch];
    for (int w = 1; w <= wmax; ++w) {
      const gs::Shape shape{gs::parse_archs(arch)[0].arch, gs::Act::kRelu, 1, w};
      const double P = gs::num_params(shape);
      const double st = interp(v, w, [](const Sample& s) { return s.steps; });
      if (!(st > 0)) continue;
      nets += full_seeds;
      steps += full_seeds * st;
      indef += full_seeds * interp(v, w, [](const Sample& s) { return s.indefinite; }) / st;
      firsts += full_seeds * interp(v, w, [](const Sample& s) { return s.first_solves; }) / st;
      for (int p = 0; p < kP; ++p) {
        const double f = interp(v, w, [p](const Sample& s) { return s.flops[p]; });
        const double t = interp(v, w, [p](const Sample& s) { return s.target[p]; });
        const double c = interp(v, w, [p](const Sample& s) { return s.seconds[p]; });
        step_fl[p] += full_seeds * f / st;
        step_tg[p] += full_seeds * t / st;
        step_sec[p] += full_seeds * c / st;
        sweep_fl[p] += full_seeds * f;
        sweep_tg[p] += full_seeds * t;
      }
      // The present CUDA backend, per step: loss and scaled gradient down (a relu 1D network's
      // system, step and trial are made on the device). Per damping try (var_pro_solve), an
      // upper bound (a retry of a kept system copies less): the columns' classes down (one byte
      // per parameter), the call's rows, rank, flags, infos and model down (about 64 bytes), its
      // columns (4 bytes each, at most P) and slot (about 200 bytes) up. Per trial: its loss,
      // rows, rank and flag down (24 bytes), its linear columns (at most P) and slot up.
      const double tries = interp(v, w, [](const Sample& s) { return s.tries; }) / st;
      const double trials = interp(v, w, [](const Sample& s) { return s.trials; }) / st;
      bytes_present += full_seeds * (16.0 + tries * (5.0 * P + 264.0) + trials * (4.0 * P + 224.0));
      bytes_target += full_seeds * (16.0 * P + 256.0);
      bytes_systems += full_seeds * 8.0 * interp(v, w, [](const Sample& s) { return s.elems; });
    }
  }
  const double mean_steps = steps / nets;
  double tot_fl = 0, tot_tg = 0, tot_sec = 0;
  for (int p = 0; p < kP; ++p) {
    tot_fl += step_fl[p];
    tot_tg += step_tg[p];
    tot_sec += step_sec[p];
  }
  std::printf("\nThe full job: %.0f networks, mean ALL steps per network %.1f (the sample's, interpolated);\n"
              "%.1f%% of the reduced systems indefinite (saddle-free path)\n",
              nets, mean_steps, firsts > 0 ? 100.0 * indef / firsts : 0.0);
  std::printf("\nOne ALL step of the full job by primitive (every network one step of its own mean work):\n");
  std::printf("%-15s %12s %8s %12s %8s %14s %10s\n", "primitive", "flops", "share", "target flops", "share",
              "CPU s (1 thr)", "GFLOP/s");
  for (int p = 0; p < kP; ++p)
    std::printf("%-15s %12.3e %7.1f%% %12.3e %7.1f%% %14.1f %10.2f\n", gs::prim_name(static_cast<gs::Prim>(p)),
                step_fl[p], 100.0 * step_fl[p] / tot_fl, step_tg[p], 100.0 * step_tg[p] / tot_tg, step_sec[p],
                step_sec[p] > 0 ? step_fl[p] / step_sec[p] / 1e9 : 0.0);
  std::printf("%-15s %12.3e %8s %12.3e %8s %14.1f %10.2f\n", "total", tot_fl, "", tot_tg, "", tot_sec,
              tot_fl / tot_sec / 1e9);

  std::printf("\nProjection for one H100 (rates assumed, not measured; low = the low rate):\n");
  std::printf("%-15s %-38s %12s %12s %12s %12s\n", "primitive", "rate basis (present)", "present low",
              "present high", "target low", "target high");
  double t_pl = 0, t_ph = 0, t_tl = 0, t_th = 0, s_pl = 0, s_ph = 0, s_tl = 0, s_th = 0;
  for (int p = 0; p < kP; ++p) {
    const auto pr = static_cast<gs::Prim>(p);
    const Rate rp = rate_of(pr, false), rt = rate_of(pr, true);
    const double pl = step_fl[p] / (rp.peak * rp.low), ph = step_fl[p] / (rp.peak * rp.high);
    const double tl = step_tg[p] / (rt.peak * rt.low), th = step_tg[p] / (rt.peak * rt.high);
    t_pl += pl;
    t_ph += ph;
    t_tl += tl;
    t_th += th;
    s_pl += sweep_fl[p] / (rp.peak * rp.low);
    s_ph += sweep_fl[p] / (rp.peak * rp.high);
    s_tl += sweep_tg[p] / (rt.peak * rt.low);
    s_th += sweep_tg[p] / (rt.peak * rt.high);
    char basis[96];
    std::snprintf(basis, sizeof basis, "%s %.1f-%.0f%% of %.0f", rp.basis, 100 * rp.low, 100 * rp.high, rp.peak / 1e12);
    std::printf("%-15s %-38s %11.3fs %11.3fs %11.3fs %11.3fs\n", gs::prim_name(pr), basis, pl, ph, tl, th);
  }
  std::printf("%-15s %-38s %11.3fs %11.3fs %11.3fs %11.3fs\n", "one step", "", t_pl, t_ph, t_tl, t_th);
  std::printf("%-15s %-38s %11.1fs %11.1fs %11.1fs %11.1fs\n", "ALL stage", "(every network's steps)", s_pl, s_ph,
              s_tl, s_th);
  std::printf("compressed systems [J_c | J_b | r] of one step: %.3e bytes (%.3f s at 50%% of %.2f TB/s, read once)\n",
              bytes_systems, bytes_systems / (0.5 * kHbm), kHbm / 1e12);
  std::printf("\nBytes to and from the host per step: present CUDA backend %.3e (%.0f per network-step), "
              "target 16 P + 256: %.3e (%.0f per network-step)\n",
              bytes_present, bytes_present / nets, bytes_target, bytes_target / nets);

  const auto& g = by_arch["gqu"].back();
  calibrate(g);
  return 0;
}
