// The bodies of gpu-sweep's commands: a sweep, fit, merge, plot and ntk. See commands.h.
#include "cli/commands.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cli/progress.h"
#include "cli/run_dir.h"
#include "cuda_plan.h"
#include "gpusweep/analysis/fit.h"
#include "gpusweep/figures/plots.h"
#include "gpusweep/io/checkpoint.h"
#include "gpusweep/io/output.h"
#include "gpusweep_version.h"

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

// The host memory a sweep's bookkeeping takes, estimated before it is built: per network its
// job (three copies), its result (two, with the parameters), its row of results.csv, and its
// parameters again in params.bin. A sweep that would need more than half of this machine's
// memory is refused up front, with the size, instead of growing until the machine swaps.
void refuse_oversized(const Options& o, const SweepSpec& spec) {
  const SweepSize size = sweep_size(spec);
  int shards = 1;
  if (!o.shard.empty()) {
    int k = 0;
    gs::parse_shard(o.shard, &k, &shards);
  }
  const double per_network = 3.0 * sizeof(gs::Job) + 2.0 * sizeof(gs::NetResult) + 200.0;
  const double bytes = size.networks * (sizeof(gs::Job) + 16.0) +
                       (size.networks * per_network + size.params * 8.0 * 3.0) / shards;
  const double machine = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (size.networks > 2e9 || (machine > 0 && bytes > 0.5 * machine)) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(1) << "the sweep has " << std::setprecision(0) << size.networks
       << " networks, whose jobs and results need about " << std::setprecision(1) << bytes / gib
       << " GiB of memory, more than half of this machine's " << machine / gib
       << " GiB; use fewer --seeds or widths, or split it with --shard k/N";
    throw std::invalid_argument(os.str());
  }
}

int run(Options o, const CLI::App& app, std::string* out_dir) {
  // A process may run several sweeps (the Python module): a stop asked of an earlier one is
  // spent.
  g_stop = 0;
  nlohmann::json manifest;
  if (!o.resume.empty()) manifest = resume_options(o, app);
  refuse_ignored_options(o, app);
  DataFile data;
  gs::SweepSpec spec = build_spec(o, &data);
  if (!o.resume.empty()) check_data_unchanged(manifest, data, "--resume " + o.resume);
  spec.chunk_networks = o.chunk_networks;
  fit_options(o);  // refuse bad fit options before any work
  gs::BackendOptions bo;
  bo.device = parse_device(o.device);
  // The CUDA backend's gradient pass has not yet run on a GPU (Cuda.GradientPassAndParameter-
  // UpdatesMatchCpu checks it there): auto keeps Adam on the CPU; --device cuda runs it.
  if (spec.train.optimizer == gs::Optimizer::kAdam && bo.device == gs::DeviceKind::kAuto) bo.device = gs::DeviceKind::kCpu;
  gs::parse_cholesky(o.cholesky);  // refuse a bad table on every device and build
  bo.cholesky = o.cholesky;
  if (bo.device == gs::DeviceKind::kAuto && !o.quiet) {
    std::string why;
    if (!gs::use_cuda(bo.device, &why) && !why.empty()) std::cerr << "gpu-sweep: note: --device auto: " << why << "\n";
  }
  refuse_oversized(o, spec);
  const auto all_jobs = gs::make_jobs(spec);
  // This run's jobs: all of them, or one shard; canonical[i] is job i's index in all_jobs.
  const std::vector<int> canonical = shard_of(o, spec, all_jobs);
  std::vector<gs::Job> jobs;
  for (int c : canonical) jobs.push_back(all_jobs[c]);
  // The CPU backend keeps a workspace per thread: never more threads than networks to train.
  const long trained = std::count_if(jobs.begin(), jobs.end(), [](const gs::Job& j) { return j.method == gs::Method::kTrain; });
  bo.threads = o.threads > 0 ? static_cast<int>(std::min<long>(o.threads, std::max(1L, trained))) : 0;
  auto backend = gs::Backend::create(bo);
  // Refuse sizes that cannot fit before any output is made.
  const auto planned = gs::plan_sweep_chunks(spec, jobs, *backend);

  std::vector<std::string> warnings = gs::plan_warnings(spec, jobs);
  const unsigned cores = std::thread::hardware_concurrency();
  if (bo.threads > 0 && cores > 0 && static_cast<unsigned>(bo.threads) > cores)
    warnings.push_back("--threads " + std::to_string(o.threads) + " on " + std::to_string(cores) +
                       " cores: threads beyond the cores add memory and switching, not speed");

  // From here on the run writes: a signal stops the sweep at its next Newton step, with the
  // way to resume, instead of killing it half-way through a file. Before, it just ends it.
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);

  const std::string out = o.out.empty() ? default_out_dir() : o.out;
  if (out_dir) *out_dir = out;
  bool created = false;
  std::vector<gs::NetResult> results(jobs.size());
  std::vector<char> have(jobs.size(), 0);
  int saved = 0;
  const Provenance prov = provenance(o, backend->describe(), data);
  if (!o.resume.empty()) {
    saved = read_saved(out, all_jobs, gs::dataset_dims(spec.datasets), canonical, &results, &have);
    // Each run that continued the sweep, in order.
    manifest["resumed"].push_back(
        {{"command_line", prov.command_line}, {"working_directory", prov.working_directory},
         {"backend", prov.backend}, {"version", GPUSWEEP_VERSION}, {"commit", GPUSWEEP_COMMIT}});
    gs::write_file_atomic((fs::path(out) / "manifest.json").string(), manifest.dump(2) + "\n");
  } else {
    manifest = manifest_json(o, jobs.size(), prov);
    created = start_sweep_dir(out, o, manifest);
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
    print_warnings(warnings);
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
    gs::SweepTransfers transfers;
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
        },
        &transfers);
    for (std::size_t t = 0; t < todo.size(); ++t) results[todo_pos[t]] = fresh[t];
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto config = config_json(o, backend->describe(), manifest);
    if (!o.shard.empty()) config["shard"] = o.shard;
    write_outputs(out, o, spec, jobs, results, config, secs, warnings, transfers);
    gs::remove_chunks(out);
  } catch (const Interrupted&) {
    std::cerr << "\ngpu-sweep: interrupted: " << saved << " of " << jobs.size() << " networks are saved in "
              << out << "; continue with: gpu-sweep --resume " << out << "\n";
    return 130;
  } catch (const gs::WriteError& e) {
    // A full disk: what finished stays for --resume, and the message says how to go on.
    std::error_code ec;
    if (gs::count_chunks(out) == 0) {
      if (created) fs::remove_all(out, ec);
      throw;
    }
    throw gs::WriteError(std::string(e.what()) + "; the " + std::to_string(saved) + " networks finished are saved in " +
                         out + ": make room, then continue with: gpu-sweep --resume " + out);
  } catch (...) {
    // Nothing finished: leave nothing behind. Finished chunks stay for --resume.
    std::error_code ec;
    if (created && gs::count_chunks(out) == 0) fs::remove_all(out, ec);
    throw;
  }
  if (!o.no_plots) write_plots(out, {}, o.quiet);
  return 0;
}

int refit(Options o, const CLI::App& cmd) {
  const fs::path dir(o.fit_dir);
  if (!fs::is_directory(dir)) throw std::invalid_argument("fit " + o.fit_dir + ": not a directory");
  const std::string rpath = (dir / "results.csv").string();
  if (!fs::exists(rpath)) throw std::invalid_argument("fit " + o.fit_dir + ": no results.csv in it");
  const std::string spath = (dir / "summary.json").string();
  nlohmann::json summary;
  if (fs::exists(spath)) {
    try {
      summary = nlohmann::json::parse(read_text(spath));
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(spath + ": not valid JSON (" + std::string(e.what()) + ")");
    }
  }
  // A fit option left out keeps the value of the directory's last fit.
  try {
    if (cmd.count("--fit-min-width") == 0 && summary.contains("fit_min_width"))
      o.fit_min_width = summary["fit_min_width"].get<int>();
    if (cmd.count("--fit-max-width") == 0 && summary.contains("fit_max_width"))
      o.fit_max_width = summary["fit_max_width"].is_null() ? 0 : summary["fit_max_width"].get<int>();
    if (cmd.count("--bootstrap") == 0 && summary.contains("bootstrap") && summary["bootstrap"].is_object())
      o.bootstrap = summary["bootstrap"].value("resamples", o.bootstrap);
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(spath + ": its fit_min_width, fit_max_width or bootstrap has the wrong type");
  }
  const gs::FitOptions f = fit_options(o);
  const auto rows = gs::parse_results_csv(read_text(rpath), rpath);
  const auto fits = gs::fit_groups(rows, f);
  bool any = false;
  for (const auto& g : fits) any = any || g.ok;
  if (!any)
    throw std::invalid_argument("fit " + o.fit_dir + ": no group can be fitted: " + fits.front().note);
  gs::put_fits(summary, fits, f);
  gs::write_file_atomic(spath, summary.dump(2) + "\n");
  if (!o.quiet) {
    gs::print_fit_table(std::cout, fits, f);
    std::cout.flush();
    print_warnings(gs::fit_warnings(fits));
  }
  // The scaling figures draw the fits: drawn again where the run has figures.
  if (fs::is_directory(dir / "plots")) {
    try {
      gs::plot_scaling(o.fit_dir);
      if (!o.quiet) std::cout << "Redrew the scaling figures in " << (dir / "plots").string() << "\n";
    } catch (const std::exception& e) {
      std::cerr << "gpu-sweep: warning: the scaling figures were not redrawn: " << e.what() << "\n";
    }
  }
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
