// A run's output directory through its life: the default name, preparing it, the manifest,
// --resume, --shard, the finished sweep's files, and merging shards. See run_dir.h.
#include "cli/run_dir.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "gpusweep/analysis/fit.h"
#include "gpusweep/io/checkpoint.h"
#include "gpusweep/io/output.h"
#include "gpusweep/io/params_io.h"
#include "gpusweep_version.h"

namespace fs = std::filesystem;

namespace gs {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot read it");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string default_out_dir() {
  const std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S", std::localtime(&now));
  std::string dir = buf;
  std::error_code ec;
  for (int k = 2; fs::exists(dir, ec); ++k) dir = std::string(buf) + "-" + std::to_string(k);
  return dir;
}

bool prepare_out_dir(const std::string& dir, bool overwrite, const std::vector<std::string>& results) {
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

void remove_earlier_results(const std::string& dir) {
  for (const char* f : {"results.csv", "summary.json", "params.bin", "params_index.csv", "manifest.json", "ntk.csv",
                        "ntk_summary.json", "ntk_hist.csv", "ntk_loss.csv", "ntk_loss_median.csv", "ntk_crossing.csv"})
    fs::remove(fs::path(dir) / f);
  std::error_code ec;
  fs::remove_all(fs::path(dir) / "plots", ec);
  gs::remove_chunks(dir);
}

namespace {

// The "model name" of /proc/cpuinfo, or "unknown".
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 10, "model name") == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        const auto b = line.find_first_not_of(" \t", colon + 1);
        if (b != std::string::npos) return line.substr(b);
      }
    }
  return "unknown";
}

nlohmann::json fit_json(const Options& o) {
  return {{"fit_min_width", o.fit_min_width}, {"fit_max_width", o.fit_max_width}, {"bootstrap", o.bootstrap}};
}

}  // namespace

std::string shell_quote(int argc, const char* const* argv) {
  std::string line;
  for (int k = 0; k < argc; ++k) {
    const std::string a = argv[k];
    if (k) line += ' ';
    const bool plain = !a.empty() && a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                         "0123456789_-+=./:,@%") == std::string::npos;
    if (plain) {
      line += a;
      continue;
    }
    line += '\'';
    for (char c : a) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

Provenance provenance(const Options& o, const std::string& backend, const DataFile& data) {
  Provenance p;
  p.command_line = o.command_line;
  std::error_code ec;
  p.working_directory = fs::current_path(ec).string();
  p.backend = backend;
  p.cpu = cpu_model();
  p.data = data;
  return p;
}

nlohmann::json manifest_json(Options o, std::size_t jobs, const Provenance& p) {
  nlohmann::json m;
  m["version"] = GPUSWEEP_VERSION;
  m["commit"] = GPUSWEEP_COMMIT;
  for_each_sweep_option(o, [&](const char* key, auto& value) { m["sweep"][key] = value; });
  m["jobs"] = jobs;
  m["command_line"] = p.command_line;
  m["working_directory"] = p.working_directory;
  m["backend"] = p.backend;
  m["cpu"] = p.cpu;
  if (!p.data.path.empty()) m["data_file"] = {{"path", p.data.path}, {"sha256", p.data.sha256}};
  m["fit"] = fit_json(o);
  m["plots"] = !o.no_plots;
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

void apply_manifest(Options& o, const nlohmann::json& m, const CLI::App* app, const std::string& path) {
  // A manifest from before --optimizer named the paper's constructions mlp-construct and
  // glu-construct; those names now build the spline networks, so its rows would not match.
  if (m.contains("sweep") && !m["sweep"].contains("optimizer") && m["sweep"].contains("arch") &&
      m["sweep"]["arch"].is_string() && m["sweep"]["arch"].get<std::string>().find("-construct") != std::string::npos)
    throw std::invalid_argument(path + ": made by an earlier version, whose mlp-construct and glu-construct were the "
                                "paper's constructions (now mlp-paper and glu-paper); run that sweep again");
  Options defaults;
  nlohmann::json default_values;
  for_each_sweep_option(defaults, [&](const char* key, auto& value) { default_values[key] = value; });
  for_each_sweep_option(o, [&](const char* key, auto& value) {
    using T = std::decay_t<decltype(value)>;
    // Options added after a manifest was written count as their defaults, against which a
    // value given now is checked as against any recorded one.
    const std::set<std::string> optional = {"dim", "standardize", "optimizer", "adam_lr", "adam_steps", "restarts"};
    const bool absent = m.contains("sweep") && !m["sweep"].contains(key) && optional.count(key);
    if (!absent && (!m.contains("sweep") || !m["sweep"].contains(key)))
      throw std::invalid_argument(path + ": no '" + key + "' (not a gpu-sweep manifest?)");
    T recorded;
    try {
      recorded = (absent ? default_values : m["sweep"])[key].template get<T>();
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

nlohmann::json config_json(Options o, const std::string& backend, const nlohmann::json& manifest) {
  nlohmann::json c;
  for_each_sweep_option(o, [&](const char* key, auto& value) { c[key] = value; });
  c["backend"] = backend;
  c["version"] = GPUSWEEP_VERSION;
  c["commit"] = GPUSWEEP_COMMIT;
  for (const char* key : {"command_line", "working_directory", "cpu", "data_file", "resumed", "merged_from"})
    if (manifest.is_object() && manifest.contains(key)) c[key] = manifest[key];
  return c;
}

bool start_sweep_dir(const std::string& out, const Options& o, const nlohmann::json& manifest) {
  const bool created = prepare_out_dir(out, o.overwrite);
  try {
    remove_earlier_results(out);
    gs::write_file_atomic((fs::path(out) / "manifest.json").string(), manifest.dump(2) + "\n");
  } catch (...) {
    std::error_code ec;
    if (created) fs::remove_all(out, ec);
    throw;
  }
  return created;
}

nlohmann::json resume_options(Options& o, const CLI::App& app) {
  if (app.count("--out") > 0 && o.out != o.resume)
    throw std::invalid_argument("--resume " + o.resume + ": writes into that directory; leave out --out");
  const nlohmann::json manifest = read_manifest(o.resume, "--resume");
  // summary.json is written last: with it the sweep is complete; without it the saved
  // chunks (still there) give the results again.
  if (fs::exists(fs::path(o.resume) / "results.csv") && fs::exists(fs::path(o.resume) / "summary.json"))
    throw std::invalid_argument("--resume " + o.resume + ": the sweep is complete; nothing to resume");
  const std::string mpath = (fs::path(o.resume) / "manifest.json").string();
  apply_manifest(o, manifest, &app, mpath);
  try {
    // The run's fit options and --no-plots hold unless given again now.
    if (manifest.contains("fit")) {
      const auto& f = manifest.at("fit");
      if (app.count("--fit-min-width") == 0 && f.contains("fit_min_width")) o.fit_min_width = f["fit_min_width"].get<int>();
      if (app.count("--fit-max-width") == 0 && f.contains("fit_max_width")) o.fit_max_width = f["fit_max_width"].get<int>();
      if (app.count("--bootstrap") == 0 && f.contains("bootstrap")) o.bootstrap = f["bootstrap"].get<int>();
    }
    if (manifest.contains("plots") && !manifest["plots"].get<bool>()) o.no_plots = true;
    // A relative --data is relative to where the sweep began.
    if (!o.data.empty() && manifest.contains("data_file")) o.data_file = manifest["data_file"].at("path").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(mpath + ": its fit, plots or data_file entry has the wrong type");
  }
  o.out = o.resume;
  return manifest;
}

void check_data_unchanged(const nlohmann::json& manifest, const DataFile& now, const std::string& what) {
  if (!manifest.contains("data_file") || !manifest["data_file"].is_object()) return;
  const std::string was = manifest["data_file"].value("sha256", std::string());
  if (was.empty() || was == now.sha256) return;
  throw std::invalid_argument(what + ": the --data file " + now.path + " has changed since the sweep began (SHA-256 " +
                              now.sha256.substr(0, 12) + "..., was " + was.substr(0, 12) +
                              "...); its saved networks were trained on the old data, so start a new sweep");
}

int read_saved(const std::string& dir, const std::vector<gs::Job>& all_jobs, const std::vector<int>& dims,
               const std::vector<int>& canonical, std::vector<gs::NetResult>* results, std::vector<char>* have) {
  const auto done = gs::read_chunks(dir, static_cast<int>(all_jobs.size()));
  std::map<int, int> position;
  for (std::size_t i = 0; i < canonical.size(); ++i) position[canonical[i]] = static_cast<int>(i);
  int saved = 0;
  for (const auto& [job, r] : done) {
    if (!position.count(job))
      throw std::invalid_argument("--resume " + dir + ": its chunks hold job " + std::to_string(job) +
                                  ", which is not in this sweep");
    const gs::Job& j = all_jobs[job];
    const std::size_t want = static_cast<std::size_t>(gs::job_params(j, dims));
    if (r.params.size() != want)
      throw std::invalid_argument("--resume " + dir + ": a chunk holds " + std::to_string(r.params.size()) +
                                  " parameters for job " + std::to_string(job) + " (" + gs::model_name(j.model()) +
                                  " of width " + std::to_string(j.width) + "), which has " + std::to_string(want) +
                                  "; the chunk is damaged");
    (*results)[position[job]] = r;
    (*have)[position[job]] = 1;
    ++saved;
  }
  return saved;
}

std::vector<int> shard_of(const Options& o, const gs::SweepSpec& spec, const std::vector<gs::Job>& all_jobs) {
  std::vector<int> canonical(all_jobs.size());
  std::iota(canonical.begin(), canonical.end(), 0);
  if (!o.shard.empty()) {
    int k = 0, n = 0;
    gs::parse_shard(o.shard, &k, &n);
    canonical = gs::shard_jobs(all_jobs, gs::dataset_dims(spec.datasets), k, n);
  }
  return canonical;
}

void print_warnings(const std::vector<std::string>& lines) {
  for (const auto& w : lines) std::cerr << "gpu-sweep: warning: " << w << "\n";
}

void write_outputs(const std::string& out, const Options& o, const gs::SweepSpec& spec,
                   const std::vector<gs::Job>& jobs, const std::vector<gs::NetResult>& results,
                   const nlohmann::json& config, double secs, std::vector<std::string> warnings,
                   const gs::SweepTransfers& transfers) {
  const gs::FitOptions fit = fit_options(o);
  const auto fits = gs::fit_groups(gs::fit_rows(spec, jobs, results), fit);
  auto summary = gs::summary_json(fits, fit, config, results);
  const auto after = gs::result_warnings(spec, jobs, results);
  warnings.insert(warnings.end(), after.begin(), after.end());
  summary["warnings"] = warnings;
  summary["seconds"] = secs;
  summary["datasets"] = gs::datasets_json(spec.datasets);
  if (transfers.bytes) summary["host_transfers"] = gs::host_transfers_json(transfers);
  // All of them or none: a full disk half-way leaves no file that looks like results.
  try {
    gs::write_params(out, spec, jobs, results);
    gs::write_file_atomic((fs::path(out) / "results.csv").string(), gs::results_csv(spec, jobs, results));
    gs::write_file_atomic((fs::path(out) / "summary.json").string(), summary.dump(2) + "\n");
  } catch (...) {
    std::error_code ec;
    for (const char* f : {"params.bin", "params_index.csv", "results.csv"}) fs::remove(fs::path(out) / f, ec);
    throw;
  }
  if (!o.quiet) {
    gs::print_fit_table(std::cout, fits, fit);
    const auto& n = summary["networks"];
    std::cout << "\n" << jobs.size() << " networks in " << std::fixed << std::setprecision(2) << secs
              << " s: " << n["converged"] << " converged, " << n["max_steps"] << " at max steps, "
              << n["stalled"] << " stalled, " << n["failed"] << " failed. Wrote " << out
              << "/results.csv, summary.json and params.bin\n";
    const std::string short_line = gs::stopped_short_line(results);
    if (!short_line.empty()) std::cout << short_line << "\n";
    if (transfers.bytes) std::cout << gs::host_transfers_line(transfers) << "\n";
    std::cout.flush();
    print_warnings(after);
    print_warnings(gs::fit_warnings(fits));
  }
}

void merge_shards(const Options& o, const std::vector<std::string>& dirs) {
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

  // Shards of one sweep read the same data.
  for (std::size_t i = 1; i < dirs.size(); ++i) {
    const auto sha = [](const nlohmann::json& m) {
      return m.contains("data_file") && m["data_file"].is_object() ? m["data_file"].value("sha256", std::string())
                                                                   : std::string();
    };
    if (sha(manifests[i]) != sha(manifests[0]))
      throw std::invalid_argument("merge: " + dirs[i] + " and " + dirs[0] +
                                  " are not shards of one sweep: their --data files differ (SHA-256)");
  }

  // The sweep's jobs, from its options; each shard's rows are its jobs in order.
  Options sweep_opt = o;
  apply_manifest(sweep_opt, manifests[0], nullptr, (fs::path(dirs[0]) / "manifest.json").string());
  if (!sweep_opt.data.empty() && manifests[0].contains("data_file") && manifests[0]["data_file"].is_object())
    sweep_opt.data_file = manifests[0]["data_file"].value("path", std::string());
  DataFile data;
  gs::SweepSpec spec = build_spec(sweep_opt, &data);
  if (!sweep_opt.data.empty()) check_data_unchanged(manifests[0], data, "merge");
  const auto jobs = gs::make_jobs(spec);
  std::vector<gs::NetResult> results(jobs.size());
  double secs = 0.0;
  for (int k = 1; k <= n_shards; ++k) {
    const std::string& d = by_k[k];
    const auto ids = gs::shard_jobs(jobs, gs::dataset_dims(spec.datasets), k, n_shards);
    const auto rows = gs::read_results_table((fs::path(d) / "results.csv").string());
    const auto index = gs::read_params_index(d);
    if (rows.size() != ids.size() || index.size() != ids.size())
      throw std::invalid_argument("merge " + d + ": " + std::to_string(rows.size()) + " results for the " +
                                  std::to_string(ids.size()) + " networks of shard " + std::to_string(k) + "/" +
                                  std::to_string(n_shards));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const gs::ResultRow& row = rows[i];
      const gs::Job& job = jobs[ids[i]];
      const gs::Model model = job.model();
      if (row.arch != gs::model_name(model) || row.activation != gs::model_act_name(model, job.act) ||
          row.target != spec.datasets[job.target].name || row.width != job.width || row.seed != job.seed)
        throw std::invalid_argument(d + "/results.csv: row " + std::to_string(i + 2) + ": not the network shard " +
                                    std::to_string(k) + " should hold there");
      gs::NetResult& r = results[ids[i]];
      r = row.result;
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
    // The merged manifest is the first shard's, as if the sweep had run whole, with the merge.
    nlohmann::json manifest = manifests[0];
    sweep_opt.shard.clear();
    manifest["sweep"]["shard"] = "";
    manifest["jobs"] = jobs.size();
    manifest["merged_from"] = dirs;
    manifest["merge_command_line"] = o.command_line;
    gs::write_file_atomic((fs::path(out) / "manifest.json").string(), manifest.dump(2) + "\n");
    auto config = config_json(sweep_opt, manifests[0].value("backend", manifests[0]["sweep"].value("device", std::string())),
                              manifest);
    sweep_opt.quiet = o.quiet;
    write_outputs(out, sweep_opt, spec, jobs, results, config, secs, gs::plan_warnings(spec, jobs));
  } catch (...) {
    std::error_code ec;
    if (created) fs::remove_all(out, ec);
    throw;
  }
}

}  // namespace gs
