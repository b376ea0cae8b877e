// gpu-sweep: trains a sweep of tiny networks with Newton's method and reports L(P) slopes.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <iostream>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>
#include <type_traits>

#include "gpusweep/checkpoint.h"
#include "gpusweep_version.h"
#include "gpusweep/cli.h"
#include "gpusweep/data.h"
#include "gpusweep/fit.h"
#include "gpusweep/ntk_run.h"
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
  int dim = 0;  // input dimension of expression targets; 0: from the expression
  std::string standardize = "on";
  std::uint64_t data_seed = 0;
  std::string schedule = "D,U,Q,R,S,G,ALL*100";
  std::string hessian = "exact";
  std::string init = "auto";
  std::string projection = "on";
  std::string optimizer = "newton";
  double adam_lr = 1e-3;
  int adam_steps = 10000;
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
  std::string resume;   // a directory of an unfinished sweep
  std::string shard;    // "k/N"
  int chunk_networks = 0;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot read it");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The options that decide a sweep's results, as manifest.json records them and summary.json's
// config repeats them. Each entry maps the key to its option (key "data_seed" is
// --data-seed) and the Options field. A new option is one line here (and its CLI flag).
template <class F>
void for_each_sweep_option(Options& o, F&& f) {
  f("arch", o.arch);
  f("activation", o.activation);
  f("widths", o.widths);
  f("seeds", o.seeds);
  f("target", o.target);
  f("data", o.data);
  f("test_fraction", o.test_fraction);
  f("points", o.points);
  f("dim", o.dim);
  f("standardize", o.standardize);
  f("data_seed", o.data_seed);
  f("schedule", o.schedule);
  f("hessian", o.hessian);
  f("init", o.init);
  f("projection", o.projection);
  f("optimizer", o.optimizer);
  f("adam_lr", o.adam_lr);
  f("adam_steps", o.adam_steps);
  f("device", o.device);
  f("shard", o.shard);
}

std::string option_of(const std::string& key) {
  std::string opt = "--" + key;
  std::replace(opt.begin(), opt.end(), '_', '-');
  return opt;
}

nlohmann::json manifest_json(Options o, std::size_t jobs) {
  nlohmann::json m;
  m["version"] = GPUSWEEP_VERSION;
  m["commit"] = GPUSWEEP_COMMIT;
  for_each_sweep_option(o, [&](const char* key, auto& value) { m["sweep"][key] = value; });
  m["jobs"] = jobs;
  return m;
}

nlohmann::json read_manifest(const std::string& dir, const std::string& what) {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(mpath)) throw std::invalid_argument(what + " " + dir + ": no manifest.json there (not a gpu-sweep directory)");
  try {
    return nlohmann::json::parse(read_text(mpath));
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(mpath + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

// --resume: the sweep options come from DIR/manifest.json. One given on the command line
// must agree with it; the others are taken from it.
// app: the command line, or null when nothing was given on it.
void apply_manifest(Options& o, const nlohmann::json& m, const CLI::App* app, const std::string& path) {
  for_each_sweep_option(o, [&](const char* key, auto& value) {
    using T = std::decay_t<decltype(value)>;
    // Options added after a manifest was written keep their defaults.
    const std::set<std::string> optional = {"dim", "standardize", "optimizer", "adam_lr", "adam_steps"};
    if (m.contains("sweep") && !m["sweep"].contains(key) && optional.count(key)) return;
    if (!m.contains("sweep") || !m["sweep"].contains(key))
      throw std::invalid_argument(path + ": no '" + key + "' (not a gpu-sweep manifest?)");
    T recorded;
    try {
      recorded = m["sweep"][key].get<T>();
    } catch (const nlohmann::json::exception&) {
      throw std::invalid_argument(path + ": '" + key + "' has the wrong type");
    }
    const std::string opt = option_of(key);
    if (app && app->count(opt) > 0 && !(value == recorded)) {
      std::ostringstream given, was;
      given << value;
      was << recorded;
      throw std::invalid_argument("--resume: " + opt + " is '" + given.str() + "' here but '" + was.str() +
                                  "' in " + path + "; a resumed sweep keeps its options");
    }
    value = recorded;
  });
}

// Set by SIGINT and SIGTERM; the running sweep stops at its next Newton step.
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int sig) {
  if (g_stop) {  // a second signal: stop now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_stop = 1;
}

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// runs/<timestamp>, or runs/<timestamp>-2, -3, ... when runs started in the same second took
// the earlier names: the default never lands on an earlier run's directory.
std::string default_out_dir() {
  const std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S", std::localtime(&now));
  std::string dir = buf;
  std::error_code ec;
  for (int k = 2; fs::exists(dir, ec); ++k) dir = std::string(buf) + "-" + std::to_string(k);
  return dir;
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
  else if (o.init == "auto") spec.init = gs::InitKind::kAuto;
  else if (o.init == "spline") spec.init = gs::InitKind::kSpline;
  else throw std::invalid_argument("--init: unknown initialization '" + o.init + "' (auto, maso, random or spline)");
  spec.train.schedule = gs::parse_schedule(o.schedule);
  if (o.hessian == "exact") spec.train.hessian = gs::HessianKind::kExact;
  else if (o.hessian == "gn") spec.train.hessian = gs::HessianKind::kGaussNewton;
  else throw std::invalid_argument("--hessian: unknown kind '" + o.hessian + "' (exact or gn)");
  if (o.projection == "on") {
    spec.train.project = true;
  } else if (o.projection == "alternate") {
    spec.train.project = true;
    spec.train.variable_projection = false;
  } else if (o.projection == "off") {
    spec.train.project = false;
  } else {
    throw std::invalid_argument("--projection: want on, alternate or off, not '" + o.projection + "'");
  }
  if (o.optimizer == "adam") spec.train.optimizer = gs::Optimizer::kAdam;
  else if (o.optimizer != "newton")
    throw std::invalid_argument("--optimizer: want newton or adam, not '" + o.optimizer + "'");
  if (!(o.adam_lr > 0.0 && std::isfinite(o.adam_lr)))
    throw std::invalid_argument("--adam-lr must be a finite number > 0");
  spec.train.adam.lr = o.adam_lr;
  spec.train.adam.steps = o.adam_steps;
  if (!(o.test_fraction >= 0.0 && o.test_fraction < 1.0))
    throw std::invalid_argument("--test-fraction must be in [0, 1)");
  if (o.standardize != "on" && o.standardize != "off")
    throw std::invalid_argument("--standardize: want on or off, not '" + o.standardize + "'");
  if (!o.data.empty()) {
    if (o.dim != 0) throw std::invalid_argument("--dim applies to --target expressions; --data takes d from its columns");
    spec.datasets.push_back(gs::load_csv_dataset(o.data, o.test_fraction, o.data_seed, o.standardize == "on"));
  } else {
    std::set<std::string> seen;
    for (const auto& t : gs::split_targets(o.target)) {
      if (t.empty()) throw std::invalid_argument("--target: empty target name in '" + o.target + "'");
      if (seen.insert(t).second) spec.datasets.push_back(gs::make_target_dataset(t, o.points, o.data_seed, o.dim));
    }
  }
  if (spec.init == gs::InitKind::kMaso || spec.init == gs::InitKind::kSpline)
    for (const auto& ds : spec.datasets)
      if (ds.d != 1)
        throw std::invalid_argument("--init " + o.init + ": the spline knots need 1D inputs, and '" +
                                    gs::printable(ds.name, 80) +
                                    "' has d = " + std::to_string(ds.d) + " (use auto or random)");
  return spec;
}

gs::DeviceKind parse_device(const std::string& d) {
  if (d == "cpu") return gs::DeviceKind::kCpu;
  if (d == "cuda") return gs::DeviceKind::kCuda;
  if (d == "auto") return gs::DeviceKind::kAuto;
  throw std::invalid_argument("--device: unknown device '" + d + "' (cpu, cuda or auto)");
}

nlohmann::json config_json(Options o, const std::string& backend) {
  nlohmann::json c;
  for_each_sweep_option(o, [&](const char* key, auto& value) { c[key] = value; });
  c["backend"] = backend;
  c["version"] = GPUSWEEP_VERSION;
  c["commit"] = GPUSWEEP_COMMIT;
  return c;
}

// The output directory: created if missing; refuses to overwrite results (any of the files
// `results` names: by default those of a sweep and of an ntk run, so that neither kind lands
// on the other) unless asked. Returns true when this run created it.
bool prepare_out_dir(const std::string& dir, bool overwrite,
                     const std::vector<std::string>& results = {"results.csv", "summary.json", "ntk.csv",
                                                                "ntk_summary.json"}) {
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  if (existed && !fs::is_directory(dir, ec))
    throw std::invalid_argument("--out " + dir + ": exists and is not a directory");
  if (existed && !overwrite &&
      std::any_of(results.begin(), results.end(), [&](const std::string& f) { return fs::exists(fs::path(dir) / f); }))
    throw std::invalid_argument("--out " + dir + ": already holds results (pass --overwrite to replace them)");
  if (existed && !overwrite && fs::exists(fs::path(dir) / "manifest.json"))
    throw std::invalid_argument("--out " + dir + ": holds an unfinished sweep (continue it with --resume " + dir +
                                ", or pass --overwrite to start again)");
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

// With --overwrite, the earlier run's files go first, of either kind (a sweep's or an ntk
// run's) and with its figures: a stopped run must never leave them looking like its own
// results, and `plot` must not draw them again.
void remove_earlier_results(const std::string& dir) {
  for (const char* f : {"results.csv", "summary.json", "params.bin", "params_index.csv", "manifest.json", "ntk.csv",
                        "ntk_summary.json", "ntk_hist.csv", "ntk_loss.csv", "ntk_loss_median.csv", "ntk_crossing.csv"})
    fs::remove(fs::path(dir) / f);
  std::error_code ec;
  fs::remove_all(fs::path(dir) / "plots", ec);
  gs::remove_chunks(dir);
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

// The finished sweep's files: params.bin and its index, results.csv, summary.json (results
// and summary stand or fall together), and the slope table.
void write_outputs(const std::string& out, const Options& o, const gs::SweepSpec& spec,
                   const std::vector<gs::Job>& jobs, const std::vector<gs::NetResult>& results,
                   const nlohmann::json& config, double secs) {
  const gs::FitOptions fit = fit_options(o);
  const auto fits = gs::fit_groups(gs::fit_rows(spec, jobs, results), fit);
  auto summary = gs::summary_json(fits, fit, config, results);
  summary["seconds"] = secs;
  summary["datasets"] = gs::datasets_json(spec.datasets);
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
    const std::string short_line = gs::stopped_short_line(results);
    if (!short_line.empty()) std::cout << short_line << "\n";
  }
}

int run(Options o, const CLI::App& app) {
  // Before anything is written: a signal during setup stops the sweep at its first Newton
  // step, with the same message, instead of killing the process half-way through.
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  if (!o.resume.empty()) {
    if (app.count("--out") > 0 && o.out != o.resume)
      throw std::invalid_argument("--resume " + o.resume + ": writes into that directory; leave out --out");
    const nlohmann::json manifest = read_manifest(o.resume, "--resume");
    // summary.json is written last: with it the sweep is complete; without it the saved
    // chunks (still there) give the results again.
    if (fs::exists(fs::path(o.resume) / "results.csv") && fs::exists(fs::path(o.resume) / "summary.json"))
      throw std::invalid_argument("--resume " + o.resume + ": the sweep is complete; nothing to resume");
    apply_manifest(o, manifest, &app, (fs::path(o.resume) / "manifest.json").string());
    o.out = o.resume;
  }
  gs::SweepSpec spec = build_spec(o);
  spec.chunk_networks = o.chunk_networks;
  fit_options(o);  // refuse bad fit options before any work
  gs::BackendOptions bo;
  bo.device = parse_device(o.device);
  // Adam needs a gradient-only pass, which only the CPU backend has: auto picks it.
  if (spec.train.optimizer == gs::Optimizer::kAdam && bo.device == gs::DeviceKind::kAuto) bo.device = gs::DeviceKind::kCpu;
  bo.threads = o.threads;
  auto backend = gs::Backend::create(bo);
  if (spec.train.optimizer == gs::Optimizer::kAdam && !backend->has_gradient())
    throw std::invalid_argument("--optimizer adam: the " + backend->describe() +
                                " backend has no gradient pass yet (use --device cpu)");
  const auto all_jobs = gs::make_jobs(spec);
  // This run's jobs: all of them, or one shard; canonical[i] is job i's index in all_jobs.
  std::vector<int> canonical(all_jobs.size());
  std::iota(canonical.begin(), canonical.end(), 0);
  if (!o.shard.empty()) {
    int k = 0, n = 0;
    gs::parse_shard(o.shard, &k, &n);
    canonical = gs::shard_jobs(all_jobs, gs::dataset_dims(spec.datasets), k, n);
  }
  std::vector<gs::Job> jobs;
  for (int c : canonical) jobs.push_back(all_jobs[c]);
  // Refuse sizes that cannot fit before any output is made.
  const auto planned = gs::plan_chunks(jobs, gs::dataset_dims(spec.datasets), backend->memory_budget(),
                  [&](int p) { return backend->bytes_per_network(p, gs::max_points(spec.datasets)); },
                  spec.chunk_networks > 0 ? spec.chunk_networks : backend->max_chunk_networks());

  const std::string out = o.out.empty() ? default_out_dir() : o.out;
  bool created = false;
  std::vector<gs::NetResult> results(jobs.size());
  std::vector<char> have(jobs.size(), 0);
  int saved = 0;
  if (!o.resume.empty()) {
    const auto done = gs::read_chunks(out, static_cast<int>(all_jobs.size()));
    std::map<int, int> position;
    for (std::size_t i = 0; i < canonical.size(); ++i) position[canonical[i]] = static_cast<int>(i);
    for (const auto& [job, r] : done) {
      if (!position.count(job))
        throw std::invalid_argument("--resume " + out + ": its chunks hold job " + std::to_string(job) +
                                    ", which is not in this sweep");
      results[position[job]] = r;
      have[position[job]] = 1;
      ++saved;
    }
  } else {
    created = prepare_out_dir(out, o.overwrite);
    remove_earlier_results(out);
    gs::write_file_atomic((fs::path(out) / "manifest.json").string(),
                          manifest_json(o, jobs.size()).dump(2) + "\n");
  }
  std::vector<gs::Job> todo;
  std::vector<int> todo_pos;  // position in jobs of each todo entry
  for (std::size_t i = 0; i < jobs.size(); ++i)
    if (!have[i]) {
      todo.push_back(jobs[i]);
      todo_pos.push_back(static_cast<int>(i));
    }
  const bool tty = isatty(STDERR_FILENO);
  if (!o.quiet) {
    std::cout << "gpu-sweep: " << jobs.size() << " networks on " << backend->describe() << ", output in " << out;
    if (saved > 0) std::cout << " (" << saved << " already done, " << todo.size() << " to go)";
    std::cout << std::endl;
  }
  int next_chunk = gs::count_chunks(out);
  try {
    const auto t0 = std::chrono::steady_clock::now();
    Progress progress(tty && !o.quiet, static_cast<int>(todo.size()), spec.train.schedule);
    progress.set_chunks(static_cast<int>(planned.size()));
    spec.train.on_step = [&](const gs::StepInfo& s) {
      if (g_stop) throw Interrupted();
      progress.step(s);
    };
    // Each finished chunk goes to disk at once, under the jobs' canonical indices.
    const auto fresh = gs::run_sweep(
        spec, todo, *backend, [&](const gs::SweepProgress& p) { progress.chunk(p); },
        [&](const std::vector<int>& done, const std::vector<gs::NetResult>& res) {
          std::vector<int> ids;
          std::vector<gs::NetResult> by_id(all_jobs.size());
          for (int t : done) {
            const int pos = todo_pos[t];
            ids.push_back(canonical[pos]);
            by_id[canonical[pos]] = res[t];
            saved++;
          }
          gs::write_chunk(out, next_chunk++, ids, by_id);
          if (g_stop) throw Interrupted();
        });
    for (std::size_t t = 0; t < todo.size(); ++t) results[todo_pos[t]] = fresh[t];
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto config = config_json(o, backend->describe());
    if (!o.shard.empty()) config["shard"] = o.shard;
    write_outputs(out, o, spec, jobs, results, config, secs);
    gs::remove_chunks(out);
  } catch (const Interrupted&) {
    std::cerr << "\ngpu-sweep: interrupted: " << saved << " of " << jobs.size() << " networks are saved in "
              << out << "; continue with: gpu-sweep --resume " << out << "\n";
    return 130;
  } catch (...) {
    // Nothing finished: leave nothing behind. Finished chunks stay for --resume.
    std::error_code ec;
    if (created && gs::count_chunks(out) == 0) fs::remove_all(out, ec);
    throw;
  }
  if (!o.no_plots) write_plots(out, {}, o.quiet);
  return 0;
}

// `gpu-sweep merge DIR... --out DIR`: the shards 1/N..N/N of one sweep into one directory,
// as if the sweep had run whole.
int merge(Options o, const std::vector<std::string>& dirs) {
  if (o.out.empty()) throw std::invalid_argument("merge: give the merged directory with --out");
  std::vector<nlohmann::json> manifests;
  for (const auto& d : dirs) {
    manifests.push_back(read_manifest(d, "merge"));
    if (!fs::exists(fs::path(d) / "results.csv"))
      throw std::invalid_argument("merge " + d + ": unfinished (no results.csv); finish it with --resume " + d);
  }
  // One sweep: every option but the shard agrees.
  for (std::size_t i = 1; i < dirs.size(); ++i)
    for (const auto& [key, value] : manifests[0]["sweep"].items())
      if (key != "shard" && manifests[i]["sweep"].value(key, nlohmann::json()) != value)
        throw std::invalid_argument("merge: " + dirs[i] + " and " + dirs[0] + " are not shards of one sweep: " +
                                    option_of(key) + " is " + manifests[i]["sweep"].value(key, nlohmann::json()).dump() +
                                    " against " + value.dump());
  int n_shards = 0;
  std::vector<std::string> by_k;
  for (std::size_t i = 0; i < dirs.size(); ++i) {
    const std::string shard = manifests[i]["sweep"].value("shard", std::string());
    if (shard.empty()) throw std::invalid_argument("merge " + dirs[i] + ": not a shard (it ran without --shard)");
    int k = 0, n = 0;
    gs::parse_shard(shard, &k, &n);
    if (n_shards == 0) {
      n_shards = n;
      by_k.assign(n + 1, "");
    }
    if (n != n_shards)
      throw std::invalid_argument("merge " + dirs[i] + ": shard " + shard + " of a split into " + std::to_string(n) +
                                  ", the others into " + std::to_string(n_shards));
    if (!by_k[k].empty()) throw std::invalid_argument("merge: shard " + shard + " twice: " + by_k[k] + " and " + dirs[i]);
    by_k[k] = dirs[i];
  }
  for (int k = 1; k <= n_shards; ++k)
    if (by_k[k].empty())
      throw std::invalid_argument("merge: shard " + std::to_string(k) + "/" + std::to_string(n_shards) + " is missing");

  // The sweep's jobs, from its options; each shard's rows are its jobs in order.
  Options sweep_opt = o;
  apply_manifest(sweep_opt, manifests[0], nullptr, (fs::path(dirs[0]) / "manifest.json").string());
  gs::SweepSpec spec = build_spec(sweep_opt);
  const auto jobs = gs::make_jobs(spec);
  std::vector<gs::NetResult> results(jobs.size());
  double secs = 0.0;
  for (int k = 1; k <= n_shards; ++k) {
    const std::string& d = by_k[k];
    const auto ids = gs::shard_jobs(jobs, gs::dataset_dims(spec.datasets), k, n_shards);
    const auto table = gs::read_csv_table((fs::path(d) / "results.csv").string());
    const auto index = gs::read_params_index(d);
    if (table.rows.size() != ids.size() || index.size() != ids.size())
      throw std::invalid_argument("merge " + d + ": " + std::to_string(table.rows.size()) + " results for the " +
                                  std::to_string(ids.size()) + " networks of shard " + std::to_string(k) + "/" +
                                  std::to_string(n_shards));
    const int c_arch = table.column("arch"), c_act = table.column("activation"), c_target = table.column("target"),
              c_width = table.column("width"), c_seed = table.column("seed"), c_status = table.column("status"),
              c_reason = table.column("reason"), c_steps = table.column("newton_steps"),
              c_sgrad = table.column("scaled_gradient"), c_drop = table.column("last_rel_decrease"),
              c_train = table.column("train_rmse"), c_test = table.column("test_rmse"), c_secs = table.column("seconds");
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto& row = table.rows[i];
      const gs::Job& job = jobs[ids[i]];
      const std::string where = d + "/results.csv: row " + std::to_string(i + 2);
      const gs::Model model = job.model();
      if (row[c_arch] != gs::model_name(model) || row[c_act] != gs::model_act_name(model, job.act) ||
          row[c_target] != spec.datasets[job.target].name ||
          gs::parse_int_field(row[c_width], where) != job.width || gs::parse_int_field(row[c_seed], where) != job.seed)
        throw std::invalid_argument(where + ": not the network shard " + std::to_string(k) + " should hold there");
      gs::NetResult& r = results[ids[i]];
      r.status = gs::status_from(row[c_status]);
      r.reason = row[c_reason];
      r.newton_steps = static_cast<int>(gs::parse_int_field(row[c_steps], where));
      r.scaled_grad = gs::parse_double_field(row[c_sgrad], where);
      r.rel_decrease = gs::parse_double_field(row[c_drop], where);
      r.train_rmse = gs::parse_double_field(row[c_train], where);
      r.test_rmse = gs::parse_double_field(row[c_test], where);
      r.seconds = gs::parse_double_field(row[c_secs], where);
      r.params = gs::read_params(d, index[i]);
    }
    nlohmann::json summary;
    try {
      summary = nlohmann::json::parse(read_text((fs::path(d) / "summary.json").string()));
      secs += summary.value("seconds", 0.0);
    } catch (const std::exception&) {
    }
  }
  const std::string out = o.out;
  const bool created = prepare_out_dir(out, o.overwrite);
  try {
    sweep_opt.shard.clear();
    gs::write_file_atomic((fs::path(out) / "manifest.json").string(), manifest_json(sweep_opt, jobs.size()).dump(2) + "\n");
    auto config = config_json(sweep_opt, manifests[0]["sweep"].value("device", std::string()));
    config["merged_from"] = dirs;
    sweep_opt.quiet = o.quiet;
    write_outputs(out, sweep_opt, spec, jobs, results, config, secs);
  } catch (...) {
    std::error_code ec;
    if (created) fs::remove_all(out, ec);
    throw;
  }
  if (!o.no_plots) write_plots(out, {}, o.quiet);
  return 0;
}

// `gpu-sweep ntk`: the NTK spectra of a sweep of networks and, with --steps, their loss
// curves under gradient descent. Everything is computed before the first file is written.
int ntk(const gs::NtkArgs& a, const Options& o) {
  const gs::NtkSpec spec = gs::make_ntk_spec(a);
  const std::string out = o.out.empty() ? default_out_dir() : o.out;
  const bool created = prepare_out_dir(out, o.overwrite);
  nlohmann::json summary;
  try {
    remove_earlier_results(out);
    const auto t0 = std::chrono::steady_clock::now();
    const auto res = gs::run_ntk(spec, [&](const std::string& line) {
      if (!o.quiet) std::cerr << "gpu-sweep: " << line << "\n";
    });
    const nlohmann::json config = {
        {"problem", a.problem},     {"arch", a.arch},       {"activation", a.activation},
        {"dims", a.dims},           {"widths", a.widths},   {"points", a.points},
        {"seeds", a.seeds},         {"match_params", a.match_params}, {"noise", a.noise},
        {"data_seed", a.data_seed}, {"device", a.device},   {"hist_bins", a.hist_bins},
        {"spectra_after", a.spectra_after}, {"steps", a.steps}, {"lr_c", a.lr_c}, {"lr_rule", spec.shared_lr ? "shared" : "own"},
        {"batch", a.batch},         {"record_every", spec.dyn.record_every},
        {"init", spec.lecun ? "lecun" : "maso"}};
    auto files = gs::ntk_files(spec, res, config);
    files.summary["seconds"]["total"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const fs::path dir(out);
    gs::write_file_atomic((dir / "ntk_hist.csv").string(), files.hist_csv);
    if (!files.loss_csv.empty()) {
      gs::write_file_atomic((dir / "ntk_loss.csv").string(), files.loss_csv);
      gs::write_file_atomic((dir / "ntk_loss_median.csv").string(), files.median_csv);
      gs::write_file_atomic((dir / "ntk_crossing.csv").string(), files.crossing_csv);
    }
    gs::write_file_atomic((dir / "ntk_summary.json").string(), files.summary.dump(2) + "\n");
    gs::write_file_atomic((dir / "ntk.csv").string(), files.ntk_csv);  // last: it marks a finished run
    summary = files.summary;
  } catch (...) {
    std::error_code ec;
    if (created) fs::remove_all(out, ec);
    throw;
  }
  if (!o.quiet) {
    gs::print_ntk_table(std::cout, summary);
    std::cout << "Wrote " << (fs::path(out) / "ntk.csv").string() << "\n";
  }
  if (!o.no_plots) {
    try {
      const auto rep = gs::plot_ntk(out);
      if (!o.quiet) {
        for (const auto& n : rep.notes) std::cerr << "gpu-sweep: note: " << n << "\n";
        std::cout << "Wrote " << rep.files.size() << " plots to " << (fs::path(out) / "plots").string() << "\n";
      }
    } catch (const gs::GnuplotMissing& e) {
      std::cerr << "gpu-sweep: " << e.what() << "\n";
    } catch (const std::exception& e) {
      std::cerr << "gpu-sweep: warning: no plots: " << e.what() << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"gpu-sweep: train sweeps of tiny mlp/glu/gqu networks with Newton's method in float64 "
               "and report the L(P) scaling slopes."};
  app.set_version_flag("--version", std::string("gpu-sweep ") + GPUSWEEP_VERSION + " (commit " +
                                        GPUSWEEP_COMMIT + ")",
                       "print the version and the commit this binary was built from, and exit");
  app.add_option("--arch", o.arch,
                 "architectures, comma-separated: gated:K for K = 0.." + std::to_string(gs::kMaxFactors - 1) +
                 " (the gate times K linear factors; mlp = gated:0, glu = gated:1, gqu = gated:2), trained; "
                 "NAME-construct, the network equal to the least-squares C^K spline of degree K+1 (no "
                 "training); mlp-paper, glu-paper, the paper's constructions; spline1.." +
                 std::to_string(gs::kMaxSplineDegree) + ", least-squares splines")->capture_default_str();
  app.add_option("--activation", o.activation, "activations: relu, gelu, silu, sigmoid (comma-separated)")
      ->capture_default_str();
  app.add_option("--widths", o.widths, "widths: A:B (inclusive), A:B:S, or a list 4,8,16")->capture_default_str();
  app.add_option("--seeds", o.seeds, "run seeds 0..K-1 (the seed drives initialization)")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--target", o.target,
                 "targets, comma-separated: built-in names (" + gs::builtin_target_list() +
                 ") or expressions in x (1D), x and y (2D), or x1..xd")
      ->capture_default_str();
  app.add_option("--dim", o.dim,
                 "input dimension of --target expressions (default: the largest input the expression uses)")
      ->check(CLI::Range(0, gs::kMaxDim));
  const CLI::Validator non_empty(gs::check_path_text, "");
  app.add_option("--data", o.data,
                 "train on the rows of a CSV file whose header names the inputs and then y (x,y or x1,...,xd,y)")
      ->check(non_empty);
  app.add_option("--standardize", o.standardize,
                 "with --data: on shifts and scales each input and y to mean 0, deviation 1 on the training rows "
                 "(RMSE is then in units of y's deviation); off keeps the file's units")
      ->capture_default_str();
  app.add_option("--test-fraction", o.test_fraction, "with --data: fraction of the rows held out for test")
      ->capture_default_str();
  app.add_option("--points", o.points,
                 "training points, uniform random on [-1, 1]^d (Friedman: their input ranges); test points: as "
                 "many, a grid in 1D and 2D, a separate random draw beyond")
      ->capture_default_str()->check(CLI::Range(2, 100000000));
  app.add_option("--data-seed", o.data_seed, "seed of the training points")
      ->capture_default_str()
      ->check(CLI::Validator(gs::check_uint64_text, ""));
  app.add_option("--schedule", o.schedule,
                 "Newton stages: " + gs::stage_names() + " (G the gate, U, Q, R, S the factors after it), each "
                 "optionally *steps; an arch skips the stages of factors it lacks")
      ->capture_default_str();
  app.add_option("--hessian", o.hessian, "exact or gn (Gauss-Newton)")->capture_default_str();
  app.add_option("--projection", o.projection,
                 "ALL stage. on: variable projection, Newton on the gates (and middle factors) with the "
                 "last factor and d0 (mlp: D and d0) solved exactly at every step (CPU; the CUDA backend "
                 "alternates); "
                 "alternate: Newton on all parameters, then exact solves of D, U, Q in turn; off: plain "
                 "Newton")
      ->capture_default_str();
  app.add_option("--optimizer", o.optimizer,
                 "newton (the schedule above) or adam (Adam on all parameters for --adam-steps steps at "
                 "--adam-lr; CPU backend)")
      ->capture_default_str();
  app.add_option("--adam-lr", o.adam_lr, "Adam's learning rate")->capture_default_str();
  app.add_option("--adam-steps", o.adam_steps, "Adam's steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  app.add_option("--init", o.init,
                 "auto (maso for 1D inputs, random beyond), maso (spline knots, 1D only), random (gate rows "
                 "N(0, 1/d) through random data points) or spline (the arch's -construct network: training "
                 "starts from the least-squares spline; relu, 1D)")
      ->capture_default_str();
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
  app.add_option("--resume", o.resume,
                 "continue the unfinished sweep in DIR (its manifest.json gives the options; results "
                 "already saved are kept)");
  app.add_option("--shard", o.shard, "run shard k of N of the sweep (k/N), balanced by cost");
  app.add_option("--chunk-networks", o.chunk_networks,
                 "networks per chunk at most (each finished chunk is saved at once); 0: the backend's choice")
      ->capture_default_str()->check(CLI::Range(0, 100000000));
  std::vector<std::string> merge_dirs;
  CLI::App* merge_cmd = app.add_subcommand(
      "merge", "merge the finished shards 1/N..N/N of one sweep into --out, with their fits and plots");
  merge_cmd->add_option("DIR", merge_dirs, "the shards' directories")->required();
  merge_cmd->add_option("--out", o.out, "the merged directory")->required();
  merge_cmd->add_flag("--overwrite", o.overwrite, "replace results already in --out");
  merge_cmd->add_flag("--no-plots", o.no_plots, "do not write the figures");
  merge_cmd->add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  std::string plot_dir, plot_nets;
  CLI::App* plot = app.add_subcommand("plot", "draw the figures of a results directory into DIR/plots");
  plot->add_option("DIR", plot_dir, "a directory written by gpu-sweep (--out)")->required();
  plot->add_option("--nets", plot_nets,
                   "networks for the per-network figures, arch:width:seed,... (default: each arch's widest "
                   "width, seed 0)");
  gs::NtkArgs ntk_args;
  CLI::App* ntk_cmd = app.add_subcommand(
      "ntk", "NTK spectra (K = J J^T over the training points and all parameters) of a sweep of networks: "
             "condition numbers, eigenvalue histograms and, with --steps, gradient-descent loss curves and the "
             "loss crossing of each gated arch against the mlp; writes DIR/ntk.csv and its companions");
  ntk_cmd->add_option("--problem", ntk_args.problem,
                      "linear (x ~ N(0, I_d), y = x . w + noise, LeCun init) or a 1D target of the sweeps "
                      "(name or expression in x, MASO init)")->capture_default_str();
  ntk_cmd->add_option("--arch", ntk_args.arch, "mlp, glu, gqu (comma-separated)")->capture_default_str();
  ntk_cmd->add_option("--activation", ntk_args.activation, "relu, gelu, silu, sigmoid (comma-separated)")
      ->capture_default_str();
  ntk_cmd->add_option("--dims", ntk_args.dims, "input dimensions of the linear problem, comma-separated (20)");
  ntk_cmd->add_option("--widths", ntk_args.widths, "widths: A:B, A:B:S or a list")->capture_default_str();
  ntk_cmd->add_flag("--match-params", ntk_args.match_params,
                    "give gated archs the width n (d+1)/(nf d+1) (glu: n (d+1)/(2d+1)), about the mlp's P");
  ntk_cmd->add_option("--points", ntk_args.points, "training points N")->capture_default_str()
      ->check(CLI::Range(2, 10000000));
  ntk_cmd->add_option("--seeds", ntk_args.seeds, "seeds 0..K-1 per network")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  ntk_cmd->add_option("--noise", ntk_args.noise, "linear problem: the noise's standard deviation")
      ->capture_default_str();
  ntk_cmd->add_option("--data-seed", ntk_args.data_seed, "seed of the points, w and the SGD order")
      ->capture_default_str()->check(CLI::Validator(gs::check_uint64_text, ""));
  ntk_cmd->add_option("--device", ntk_args.device, "spectra on cpu, cuda or auto (dynamics run on the CPU)")
      ->capture_default_str();
  ntk_cmd->add_option("--threads", ntk_args.threads, "CPU threads (0 = all cores)")->capture_default_str()
      ->check(CLI::Range(0, 4096));
  ntk_cmd->add_option("--hist-bins", ntk_args.hist_bins, "bins of the log10 eigenvalue histograms")
      ->capture_default_str();
  ntk_cmd->add_option("--steps", ntk_args.steps, "gradient-descent steps (0: spectra only)")->capture_default_str();
  ntk_cmd->add_option("--lr-c", ntk_args.lr_c, "step size eta = c N / lambda_max(K) of each network")
      ->capture_default_str();
  ntk_cmd->add_option("--lr-rule", ntk_args.lr_rule,
                      "own: each network's lambda_max sets its eta; shared: the archs of one (d, activation, width, "
                      "seed) share the eta of their largest lambda_max (default own; needs --steps)");
  ntk_cmd->add_option("--batch", ntk_args.batch, "SGD minibatch size (0: full-batch gradient descent)")
      ->capture_default_str();
  ntk_cmd->add_option("--record-every", ntk_args.record_every, "record the loss every k steps (0: about 500 records)")
      ->capture_default_str();
  ntk_cmd->add_flag("--spectra-after", ntk_args.spectra_after, "the spectra again after training (rows 'trained')");
  ntk_cmd->add_option("--out", o.out, "output directory (default runs/<timestamp>)")->check(non_empty);
  ntk_cmd->add_flag("--overwrite", o.overwrite, "replace results already in --out");
  ntk_cmd->add_flag("--no-plots", o.no_plots, "do not write the figures");
  ntk_cmd->add_flag("-q,--quiet", o.quiet, "print nothing but errors");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << (plot->parsed() ? plot->help() : ntk_cmd->parsed() ? ntk_cmd->help() : app.help());
    return 0;
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 2;
  }
  try {
    if (*fit_cmd) return refit(o);
    if (*merge_cmd) return merge(o, merge_dirs);
    if (*ntk_cmd) return ntk(ntk_args, o);
    if (*plot) {
      // A directory of `gpu-sweep ntk` has its own figures.
      const bool ntk_dir = !fs::exists(fs::path(plot_dir) / "results.csv") &&
                           fs::exists(fs::path(plot_dir) / "ntk_summary.json");
      if (ntk_dir && !plot_nets.empty())
        throw std::invalid_argument("--nets: " + plot_dir + " is an ntk directory, which has no per-network figures");
      const auto rep = ntk_dir ? gs::plot_ntk(plot_dir)
                               : gs::plot_run(plot_dir, plot_nets.empty() ? std::vector<gs::NetPick>{}
                                                                          : gs::parse_net_picks(plot_nets));
      for (const auto& n : rep.notes) std::cerr << "gpu-sweep: note: " << n << "\n";
      if (!o.quiet) std::cout << "Wrote " << rep.files.size() << " plots to " << plot_dir << "/plots\n";
      return 0;
    }
    return run(o, app);
  } catch (const std::invalid_argument& e) {
    // Messages quote the user's text, which may hold a newline; the error stays one line.
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "gpu-sweep: error: " << gs::printable(e.what(), 2000) << "\n";
    return 1;
  }
}
