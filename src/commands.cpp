// The bodies of gpu-sweep's commands: a sweep, fit, merge, plot and ntk. See commands.h.
#include "commands.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <stdexcept>

#include "cuda_plan.h"
#include "gpusweep/checkpoint.h"
#include "gpusweep/fit.h"
#include "gpusweep/output.h"
#include "gpusweep/plots.h"
#include "progress.h"
#include "run_dir.h"

namespace fs = std::filesystem;

namespace gs {
namespace {

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

}  // namespace

int run(Options o, const CLI::App& app) {
  // Before anything is written: a signal during setup stops the sweep at its first Newton
  // step, with the same message, instead of killing the process half-way through.
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  if (!o.resume.empty()) resume_options(o, app);
  gs::SweepSpec spec = build_spec(o);
  spec.chunk_networks = o.chunk_networks;
  fit_options(o);  // refuse bad fit options before any work
  gs::BackendOptions bo;
  bo.device = parse_device(o.device);
  bo.threads = o.threads;
  gs::parse_cholesky(o.cholesky);  // refuse a bad table on every device and build
  bo.cholesky = o.cholesky;
  if (bo.device == gs::DeviceKind::kAuto && !o.quiet) {
    std::string why;
    if (!gs::use_cuda(bo.device, &why) && !why.empty()) std::cerr << "gpu-sweep: note: --device auto: " << why << "\n";
  }
  auto backend = gs::Backend::create(bo);
  if (spec.train.optimizer == gs::Optimizer::kAdam && !backend->has_gradient())
    throw std::invalid_argument("--optimizer adam: the " + backend->describe() +
                                " backend has no gradient pass (use --device cpu)");
  const auto all_jobs = gs::make_jobs(spec);
  // This run's jobs: all of them, or one shard; canonical[i] is job i's index in all_jobs.
  const std::vector<int> canonical = shard_of(o, spec, all_jobs);
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
  if (!o.resume.empty())
    saved = read_saved(out, static_cast<int>(all_jobs.size()), canonical, &results, &have);
  else
    created = start_sweep_dir(out, o, jobs.size());
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
    // Adam's steps are one stage of the estimate.
    const std::vector<gs::StageSpec> adam_stages = {{gs::Block::kAll, spec.train.adam.steps}};
    Progress progress(tty && !o.quiet, static_cast<int>(todo.size()),
                      spec.train.optimizer == gs::Optimizer::kAdam ? adam_stages : spec.train.schedule);
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

int merge(const Options& o, const std::vector<std::string>& dirs) {
  merge_shards(o, dirs);
  if (!o.no_plots) write_plots(o.out, {}, o.quiet);
  return 0;
}

int plot(const std::string& dir, const std::string& nets, const Options& o) {
  // A directory of `gpu-sweep ntk` has its own figures.
  const bool ntk_dir = !fs::exists(fs::path(dir) / "results.csv") &&
                       fs::exists(fs::path(dir) / "ntk_summary.json");
  if (ntk_dir && !nets.empty())
    throw std::invalid_argument("--nets: " + dir + " is an ntk directory, which has no per-network figures");
  const auto rep = ntk_dir ? gs::plot_ntk(dir)
                           : gs::plot_run(dir, nets.empty() ? std::vector<gs::NetPick>{}
                                                          : gs::parse_net_picks(nets));
  for (const auto& n : rep.notes) std::cerr << "gpu-sweep: note: " << n << "\n";
  if (!o.quiet) std::cout << "Wrote " << rep.files.size() << " plots to " << dir << "/plots\n";
  return 0;
}

int ntk(const NtkArgs& a, const Options& o) {
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

}  // namespace gs
