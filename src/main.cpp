// gpu-sweep: trains a sweep of tiny networks with Newton's method and reports L(P) slopes.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <iostream>
#include <set>
#include <stdexcept>

#include "gpusweep/cli.h"
#include "gpusweep/data.h"
#include "gpusweep/fit.h"
#include "gpusweep/output.h"
#include "gpusweep/params_io.h"
#include "gpusweep/plots.h"

namespace fs = std::filesystem;

namespace {

struct Options {
  std::string arch = "mlp,glu,gqu";
  std::string activation = "relu";
  std::string widths = "1:50";
  int seeds = 1;
  std::string target = "invcos2";
  std::string data;
  double test_fraction = 0.2;
  int points = 10000;
  std::uint64_t data_seed = 0;
  std::string schedule = "D,U,Q,G,ALL*100";
  std::string hessian = "exact";
  std::string init = "maso";
  std::string projection = "on";
  std::string device = "auto";
  int threads = 0;
  std::string out;
  bool overwrite = false;
  int fit_min_width = 4;
  int fit_max_width = 0;
  int bootstrap = 2000;
  bool quiet = false;
  std::string fit_dir;  // the `fit DIR` subcommand
  bool no_plots = false;
};

std::string default_out_dir() {
  const std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S", std::localtime(&now));
  return buf;
}

// Everything that can be wrong with the input is found here, before any output exists.
gs::SweepSpec build_spec(const Options& o) {
  gs::SweepSpec spec;
  spec.archs = gs::parse_archs(o.arch);
  spec.acts = gs::parse_acts(o.activation);
  spec.widths = gs::parse_widths(o.widths);
  spec.seeds = o.seeds;
  if (o.init == "maso") spec.init = gs::InitKind::kMaso;
  else if (o.init == "random") spec.init = gs::InitKind::kRandom;
  else throw std::invalid_argument("--init: unknown initialization '" + o.init + "' (maso or random)");
  spec.train.schedule = gs::parse_schedule(o.schedule);
  if (o.hessian == "exact") spec.train.hessian = gs::HessianKind::kExact;
  else if (o.hessian == "gn") spec.train.hessian = gs::HessianKind::kGaussNewton;
  else throw std::invalid_argument("--hessian: unknown kind '" + o.hessian + "' (exact or gn)");
  if (o.projection == "on") spec.train.project = true;
  else if (o.projection == "off") spec.train.project = false;
  else throw std::invalid_argument("--projection: want on or off, not '" + o.projection + "'");
  if (!(o.test_fraction >= 0.0 && o.test_fraction < 1.0))
    throw std::invalid_argument("--test-fraction must be in [0, 1)");
  if (!o.data.empty()) {
    spec.datasets.push_back(gs::load_csv_dataset(o.data, o.test_fraction, o.data_seed));
  } else {
    std::set<std::string> seen;
    for (const auto& t : gs::split_targets(o.target)) {
      if (t.empty()) throw std::invalid_argument("--target: empty target name in '" + o.target + "'");
      if (seen.insert(t).second) spec.datasets.push_back(gs::make_target_dataset(t, o.points, o.data_seed));
    }
  }
  return spec;
}

gs::DeviceKind parse_device(const std::string& d) {
  if (d == "cpu") return gs::DeviceKind::kCpu;
  if (d == "cuda") return gs::DeviceKind::kCuda;
  if (d == "auto") return gs::DeviceKind::kAuto;
  throw std::invalid_argument("--device: unknown device '" + d + "' (cpu, cuda or auto)");
}

nlohmann::json config_json(const Options& o, const std::string& backend) {
  return {{"arch", o.arch},         {"activation", o.activation},
          {"widths", o.widths},     {"seeds", o.seeds},
          {"target", o.target},     {"data", o.data},
          {"test_fraction", o.test_fraction}, {"points", o.points},
          {"data_seed", o.data_seed}, {"schedule", o.schedule},
          {"hessian", o.hessian},   {"init", o.init}, {"projection", o.projection},
          {"device", o.device},     {"backend", backend}};
}

// The output directory: created if missing; refuses to overwrite results unless asked.
// Returns true when this run created it.
bool prepare_out_dir(const std::string& dir, bool overwrite) {
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  if (existed && !fs::is_directory(dir, ec))
    throw std::invalid_argument("--out " + dir + ": exists and is not a directory");
  if (existed && !overwrite &&
      (fs::exists(fs::path(dir) / "results.csv") || fs::exists(fs::path(dir) / "summary.json")))
    throw std::invalid_argument("--out " + dir + ": already holds results (pass --overwrite to replace them)");
  fs::create_directories(dir, ec);
  if (ec) throw std::invalid_argument("--out " + dir + ": cannot create the directory: " + ec.message());
  // Probe that we can write here before spending time on training.
  const fs::path probe = fs::path(dir) / ".write-test.tmp";
  std::FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) {
    if (!existed) fs::remove(dir, ec);
    throw std::invalid_argument("--out " + dir + ": the directory is not writable");
  }
  std::fclose(f);
  fs::remove(probe, ec);
  return !existed;
}

gs::FitOptions fit_options(const Options& o) {
  gs::FitOptions f;
  f.min_width = o.fit_min_width;
  f.max_width = o.fit_max_width;
  f.bootstrap = o.bootstrap;
  if (f.max_width > 0 && f.max_width < f.min_width)
    throw std::invalid_argument("--fit-max-width " + std::to_string(f.max_width) + " is below --fit-min-width " +
                                std::to_string(f.min_width));
  return f;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot read it");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `gpu-sweep fit DIR`: the fits again, from DIR/results.csv, with the fit options given now.
// Rewrites the fits in DIR/summary.json (the run's config and counts are kept) and prints
// the table.
int refit(const Options& o) {
  const gs::FitOptions f = fit_options(o);
  const fs::path dir(o.fit_dir);
  if (!fs::is_directory(dir)) throw std::invalid_argument("fit " + o.fit_dir + ": not a directory");
  const std::string rpath = (dir / "results.csv").string();
  if (!fs::exists(rpath)) throw std::invalid_argument("fit " + o.fit_dir + ": no results.csv in it");
  const auto rows = gs::parse_results_csv(read_text(rpath), rpath);
  const auto fits = gs::fit_groups(rows, f);
  bool any = false;
  for (const auto& g : fits) any = any || g.ok;
  if (!any)
    throw std::invalid_argument("fit " + o.fit_dir + ": no group can be fitted: " + fits.front().note);
  const std::string spath = (dir / "summary.json").string();
  nlohmann::json summary;
  if (fs::exists(spath)) {
    try {
      summary = nlohmann::json::parse(read_text(spath));
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(spath + ": not valid JSON (" + std::string(e.what()) + ")");
    }
  }
  gs::put_fits(summary, fits, f);
  gs::write_file_atomic(spath, summary.dump(2) + "\n");
  if (!o.quiet) gs::print_fit_table(std::cout, fits, f);
  return 0;
}

// Progress on a terminal: chunk, stage, step, active networks, elapsed time and an estimate.
class Progress {
 public:
  // The estimate counts Newton steps: stage k of the schedule is steps[k] of them.
  Progress(bool on, int total, const std::vector<gs::StageSpec>& schedule)
      : on_(on), total_(total), t0_(std::chrono::steady_clock::now()) {
    for (const auto& st : schedule) {
      before_.push_back(all_steps_);
      all_steps_ += st.steps;
    }
  }
  void step(const gs::StepInfo& s) {
    if (!on_) return;
    const double el = elapsed();
    if (el - last_ < 0.2 && !(s.stage + 1 == s.stages && s.step == s.steps)) return;
    last_ = el;
    const double stage_frac = (before_[s.stage] + s.step) / all_steps_;
    const double frac = (done_ + s.batch * stage_frac) / total_;
    std::fprintf(stderr, "\rchunk %d/%d  stage %s (%d/%d) step %d/%d  active %d/%d  elapsed %.1f s  eta %s   ",
                 chunk_ + 1, chunks_, gs::block_name(s.block).c_str(), s.stage + 1, s.stages, s.step, s.steps,
                 s.active, s.batch, el, eta(el, frac).c_str());
  }
  void chunk(const gs::SweepProgress& p) {
    done_ = p.nets_done;
    chunk_ = p.chunks_done;
    chunks_ = p.chunks_total;
    if (!on_) return;
    if (p.chunks_done == p.chunks_total) std::fprintf(stderr, "\r%-110s\r", "");
  }
  void set_chunks(int n) { chunks_ = n; }

 private:
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  static std::string eta(double el, double frac) {
    if (frac <= 0.01) return "?";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f s", el / frac * (1.0 - frac));
    return buf;
  }
  bool on_;
  int total_, done_ = 0, chunk_ = 0, chunks_ = 1;
  std::vector<double> before_;
  double all_steps_ = 0.0;
  double last_ = -1.0;
  std::chrono::steady_clock::time_point t0_;
};

// The figures after a run: a missing gnuplot or a failed plot costs one line, never the results.
void write_plots(const std::string& dir, const std::vector<gs::NetPick>& picks, bool quiet) {
  try {
    const auto rep = gs::plot_run(dir, picks);
    if (quiet) return;
    for (const auto& n : rep.notes) std::cerr << "gpu-sweep: note: " << n << "\n";
    std::cout << "Wrote " << rep.files.size() << " plots to " << (fs::path(dir) / "plots").string() << "\n";
  } catch (const gs::GnuplotMissing& e) {
    std::cerr << "gpu-sweep: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "gpu-sweep: warning: no plots: " << e.what() << "\n";
  }
}

int run(const Options& o) {
  gs::SweepSpec spec = build_spec(o);
  const gs::FitOptions fit = fit_options(o);
  gs::BackendOptions bo;
  bo.device = parse_device(o.device);
  bo.threads = o.threads;
  auto backend = gs::Backend::create(bo);
  const auto jobs = gs::make_jobs(spec);
  // Refuse sizes that cannot fit before any output is made.
  const auto planned = gs::plan_chunks(jobs, spec.datasets[0].d, backend->memory_budget(),
                  [&](int p) { return backend->bytes_per_network(p, gs::max_points(spec.datasets)); });

  const std::string out = o.out.empty() ? default_out_dir() : o.out;
  const bool created = prepare_out_dir(out, o.overwrite);
  const bool tty = isatty(STDERR_FILENO);
  if (!o.quiet)
    std::cout << "gpu-sweep: " << jobs.size() << " networks on " << backend->describe() << ", output in "
              << out << std::endl;
  try {
    const auto t0 = std::chrono::steady_clock::now();
    Progress progress(tty && !o.quiet, static_cast<int>(jobs.size()), spec.train.schedule);
    progress.set_chunks(static_cast<int>(planned.size()));
    spec.train.on_step = [&](const gs::StepInfo& s) { progress.step(s); };
    const auto results =
        gs::run_sweep(spec, jobs, *backend, [&](const gs::SweepProgress& p) { progress.chunk(p); });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto fits = gs::fit_groups(gs::fit_rows(spec, jobs, results), fit);
    auto summary = gs::summary_json(fits, fit, config_json(o, backend->describe()), results);
    summary["seconds"] = secs;
    gs::write_params(out, spec, jobs, results);
    const std::string results_path = (fs::path(out) / "results.csv").string();
    gs::write_file_atomic(results_path, gs::results_csv(spec, jobs, results));
    try {
      gs::write_file_atomic((fs::path(out) / "summary.json").string(), summary.dump(2) + "\n");
    } catch (...) {
      std::remove(results_path.c_str());
      throw;
    }
    if (!o.quiet) {
      gs::print_fit_table(std::cout, fits, fit);
      const auto& n = summary["networks"];
      std::cout << "\n" << jobs.size() << " networks in " << std::fixed << std::setprecision(2) << secs
                << " s: " << n["converged"] << " converged, " << n["max_steps"] << " at max steps, "
                << n["failed"] << " failed. Wrote " << out << "/results.csv, summary.json and params.bin\n";
    }
  } catch (...) {
    std::error_code ec;
    if (created) fs::remove_all(out, ec);
    throw;
  }
  if (!o.no_plots) write_plots(out, {}, o.quiet);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"gpu-sweep: train sweeps of tiny mlp/glu/gqu networks with Newton's method in float64 "
               "and report the L(P) scaling slopes."};
  app.add_option("--arch", o.arch,
                 "architectures: mlp, glu, gqu (trained); baselines mlp-construct, glu-construct, "
                 "spline1, spline2, spline3 (comma-separated)")->capture_default_str();
  app.add_option("--activation", o.activation, "activations: relu, gelu, silu, sigmoid (comma-separated)")
      ->capture_default_str();
  app.add_option("--widths", o.widths, "widths: A:B (inclusive), A:B:S, or a list 4,8,16")->capture_default_str();
  app.add_option("--seeds", o.seeds, "run seeds 0..K-1 (the seed drives initialization)")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--target", o.target,
                 "built-in target names (x2, x3, cos4, sin4, sin4sq, runge1, runge9, atan, invcos2) or "
                 "expressions in x, comma-separated")
      ->capture_default_str();
  const CLI::Validator non_empty(gs::check_path_text, "");
  app.add_option("--data", o.data, "train on the points of a CSV file with header x,y")->check(non_empty);
  app.add_option("--test-fraction", o.test_fraction, "with --data: fraction of the rows held out for test")
      ->capture_default_str();
  app.add_option("--points", o.points, "training points, uniform random on [-1, 1]; the test grid has as many")
      ->capture_default_str()->check(CLI::Range(2, 100000000));
  app.add_option("--data-seed", o.data_seed, "seed of the training points")
      ->capture_default_str()
      ->check(CLI::Validator(gs::check_uint64_text, ""));
  app.add_option("--schedule", o.schedule, "Newton stages: D, U, Q, G, ALL, each optionally *steps")
      ->capture_default_str();
  app.add_option("--hessian", o.hessian, "exact or gn (Gauss-Newton)")->capture_default_str();
  app.add_option("--projection", o.projection,
                 "on: after each ALL step, solve the linear blocks (D, U, Q) exactly; off: plain Newton")
      ->capture_default_str();
  app.add_option("--init", o.init, "maso (spline knots) or random")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str()->check(CLI::Range(0, 4096));
  app.add_option("--out", o.out, "output directory (default runs/<timestamp>)")->check(non_empty);
  app.add_flag("--overwrite", o.overwrite, "replace results already in --out");
  app.add_option("--fit-min-width", o.fit_min_width, "smallest width in the slope fits")
      ->capture_default_str()->check(CLI::Range(1, gs::kMaxWidth));
  app.add_option("--fit-max-width", o.fit_max_width, "largest width in the slope fits (0 = no limit)")
      ->capture_default_str()->check(CLI::Range(0, gs::kMaxWidth));
  app.add_option("--bootstrap", o.bootstrap, "resamples of the seeds for the slope intervals")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  app.add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  CLI::App* fit_cmd = app.add_subcommand(
      "fit", "recompute the slope fits of a results directory (its results.csv) with the fit options "
             "given here, rewrite its summary.json fits and print them");
  fit_cmd->add_option("DIR", o.fit_dir, "a directory written by gpu-sweep")->required();
  fit_cmd->add_option("--fit-min-width", o.fit_min_width, "smallest width in the slope fits")
      ->check(CLI::Range(1, gs::kMaxWidth));
  fit_cmd->add_option("--fit-max-width", o.fit_max_width, "largest width in the slope fits (0 = no limit)")
      ->check(CLI::Range(0, gs::kMaxWidth));
  fit_cmd->add_option("--bootstrap", o.bootstrap, "resamples of the seeds for the slope intervals")
      ->check(CLI::Range(0, 1000000));
  fit_cmd->add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  app.add_flag("--no-plots", o.no_plots, "do not write the figures into DIR/plots");
  std::string plot_dir, plot_nets;
  CLI::App* plot = app.add_subcommand("plot", "draw the figures of a results directory into DIR/plots");
  plot->add_option("DIR", plot_dir, "a directory written by gpu-sweep (--out)")->required();
  plot->add_option("--nets", plot_nets,
                   "networks for the per-network figures, arch:width:seed,... (default: each arch's widest "
                   "width, seed 0)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << (plot->parsed() ? plot->help() : app.help());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 2;
  }
  try {
    if (*fit_cmd) return refit(o);
    if (*plot) {
      const auto rep = gs::plot_run(plot_dir, plot_nets.empty() ? std::vector<gs::NetPick>{}
                                                                : gs::parse_net_picks(plot_nets));
      for (const auto& n : rep.notes) std::cerr << "gpu-sweep: note: " << n << "\n";
      if (!o.quiet) std::cout << "Wrote " << rep.files.size() << " plots to " << plot_dir << "/plots\n";
      return 0;
    }
    return run(o);
  } catch (const std::invalid_argument& e) {
    // Messages quote the user's text, which may hold a newline; the error stays one line.
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 1;
  }
}
