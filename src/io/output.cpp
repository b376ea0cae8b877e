// results.csv (written and read back), summary.json and the slope table.
#include "gpusweep/io/output.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <stdexcept>

#include "gpusweep/io/checkpoint.h"
#include "gpusweep/util/csv.h"
#include "gpusweep/util/text.h"
#include "gpusweep/util/util.h"

namespace gs {

std::string results_csv(const SweepSpec& spec, const std::vector<Job>& jobs,
                        const std::vector<NetResult>& results) {
  std::ostringstream os;
  os << "arch,activation,target,width,params,effective_params,seed,train_rmse,test_rmse,status,reason,"
        "newton_steps,scaled_gradient,last_rel_decrease,seconds,start\n";
  os << std::setprecision(17);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Job& job = jobs[j];
    const NetResult& r = results[j];
    const Dataset& ds = spec.datasets[job.target];
    const std::string target = csv_quote(ds.name);
    os << model_name(job.model()) << ',' << model_act_name(job.model(), job.act) << ',' << target
       << ',' << job.width << ',' << model_num_params(job.model(), ds.d, job.width) << ','
       << model_effective_params(job.model(), ds.d, job.width, job.act) << ',' << job.seed << ','
       << r.train_rmse << ',' << r.test_rmse << ',' << status_name(r.status) << ',' << r.reason
       << ',' << r.newton_steps << ',' << std::setprecision(6) << r.scaled_grad << ','
       << r.rel_decrease << ',' << r.seconds << ',' << r.start
       << std::setprecision(17) << '\n';
  }
  return os.str();
}

nlohmann::json datasets_json(const std::vector<Dataset>& datasets) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& ds : datasets) {
    nlohmann::json j = {{"name", ds.name}, {"d", ds.d}, {"train_points", ds.n_train()}, {"test_points", ds.n_test()},
                        {"standardized", ds.standardized}};
    if (!ds.expression.empty()) j["expression"] = ds.expression;
    if (ds.standardized)
      j["map"] = {{"x_center", ds.x_center}, {"x_scale", ds.x_scale}, {"y_center", ds.y_center}, {"y_scale", ds.y_scale}};
    arr.push_back(j);
  }
  return arr;
}

namespace {

// The networks that stopped at the step limit: their last relative loss decreases and scaled
// gradients (0 where a network took no step).
struct StoppedShort {
  std::vector<double> drops, grads;
};

StoppedShort stopped_short(const std::vector<NetResult>& results) {
  StoppedShort out;
  for (const auto& r : results)
    if (r.status == Status::kMaxSteps) {
      out.drops.push_back(std::isfinite(r.rel_decrease) ? r.rel_decrease : 0.0);
      out.grads.push_back(std::isfinite(r.scaled_grad) ? r.scaled_grad : 0.0);
    }
  return out;
}

}  // namespace

nlohmann::json host_transfers_json(const SweepTransfers& t) {
  const HostTransfers b = t.bytes.value_or(HostTransfers{});
  const long long steps = t.network_steps;
  auto per_step = [&](double v) { return steps > 0 ? nlohmann::json(v / steps) : nlohmann::json(nullptr); };
  return {{"bytes_to_host", b.bytes_to_host},
          {"bytes_to_device", b.bytes_to_device},
          {"network_steps", steps},
          {"bytes_to_host_per_network_step", per_step(static_cast<double>(b.bytes_to_host))},
          {"bytes_to_device_per_network_step", per_step(static_cast<double>(b.bytes_to_device))},
          {"params_per_network_step", per_step(t.param_steps)},
          {"host_var_pro_systems", b.host_var_pro_systems},
          {"host_var_pro_trials", b.host_var_pro_trials}};
}

std::string host_transfers_line(const SweepTransfers& t) {
  const HostTransfers b = t.bytes.value_or(HostTransfers{});
  std::ostringstream os;
  os << "Host transfers: ";
  if (t.network_steps > 0) {
    const double steps = static_cast<double>(t.network_steps);
    os << std::fixed << std::setprecision(0) << b.bytes_to_host / steps << " bytes to the host and "
       << b.bytes_to_device / steps << " to the device per network-step (" << t.network_steps
       << " network-steps of " << std::setprecision(1) << t.param_steps / steps << " parameters on average)";
  } else {
    os << b.bytes_to_host << " bytes to the host and " << b.bytes_to_device << " to the device, in no network-step";
  }
  os << "; variable projection on host threads: " << b.host_var_pro_systems << " systems, " << b.host_var_pro_trials
     << " trials";
  return os.str();
}

std::string stopped_short_line(const std::vector<NetResult>& results) {
  const StoppedShort st = stopped_short(results);
  if (st.drops.empty()) return "";
  std::ostringstream os;
  os << std::setprecision(2) << st.drops.size() << " network" << (st.drops.size() == 1 ? "" : "s")
     << " stopped short at the step limit: the last step lowered the loss by " << median_of(st.drops)
     << " (median), " << *std::max_element(st.drops.begin(), st.drops.end())
     << " (max), relative; scaled gradient " << median_of(st.grads)
     << " (median). More steps (--schedule ...,ALL*N; with --optimizer adam, --adam-steps N) would take them further.";
  return os.str();
}

namespace {
std::string quoted(const std::string& name) { return "'" + printable(name, 60) + "'"; }
std::string span(long lo, long hi) { return lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi); }
}  // namespace

std::vector<std::string> plan_warnings(const SweepSpec& spec, const std::vector<Job>& jobs) {
  std::vector<std::string> out;
  for (const auto& ds : spec.datasets)
    if (ds.expression.empty() && ds.x_test == ds.x_train && ds.y_test == ds.y_train)
      out.push_back("--test-fraction 0: the test RMSE of " + quoted(ds.name) +
                    " is measured on its training rows, so it is the train RMSE and says nothing about new points");
  // Per (target, model): the widths with P above the number of training points.
  std::map<std::pair<int, std::string>, std::vector<std::pair<int, int>>> over;  // -> (width, P)
  std::vector<std::pair<int, std::string>> order;
  for (const Job& job : jobs) {
    const Dataset& ds = spec.datasets[job.target];
    const int p = model_num_params(job.model(), ds.d, job.width);
    if (p <= ds.n_train()) continue;
    const std::pair<int, std::string> key{job.target, model_name(job.model())};
    if (!over.count(key)) order.push_back(key);
    auto& v = over[key];
    if (v.empty() || v.back().first != job.width) v.push_back({job.width, p});
  }
  for (const auto& key : order) {
    const auto& v = over[key];
    const Dataset& ds = spec.datasets[key.first];
    out.push_back(key.second + " on " + quoted(ds.name) + ": width" + (v.size() > 1 ? "s " : " ") +
                  span(v.front().first, v.back().first) + " ha" + (v.size() > 1 ? "ve" : "s") +
                  " more parameters (P = " + span(v.front().second, v.back().second) + ") than its " +
                  std::to_string(ds.n_train()) +
                  " training points, so they can interpolate them; trust their test RMSE, not the train RMSE");
  }
  return out;
}

std::vector<std::string> result_warnings(const SweepSpec& spec, const std::vector<Job>& jobs,
                                         const std::vector<NetResult>& results) {
  struct Group {
    int count = 0, over = 0, width = 0, seed = 0;
    double worst = 0.0;
  };
  std::map<std::string, Group> groups;
  std::vector<std::string> order;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const NetResult& r = results[j];
    if (r.status == Status::kFailed || !std::isfinite(r.train_rmse) || !std::isfinite(r.test_rmse)) continue;
    const Model m = jobs[j].model();
    const std::string key = model_name(m) + " " + model_act_name(m, jobs[j].act) + " on " +
                            quoted(spec.datasets[jobs[j].target].name);
    if (!groups.count(key)) order.push_back(key);
    Group& g = groups[key];
    ++g.count;
    if (!(r.test_rmse > kOverfitRatio * r.train_rmse) || r.test_rmse <= 0.0) continue;
    ++g.over;
    const double ratio = r.train_rmse > 0.0 ? r.test_rmse / r.train_rmse : HUGE_VAL;
    if (ratio > g.worst) g.worst = ratio, g.width = jobs[j].width, g.seed = jobs[j].seed;
  }
  std::vector<std::string> out;
  for (const auto& key : order) {
    const Group& g = groups[key];
    if (!g.over) continue;
    std::ostringstream os;
    os << key << ": " << g.over << " of " << g.count << " networks have a test RMSE above " << kOverfitRatio
       << "x their train RMSE (";
    if (std::isfinite(g.worst)) os << "up to " << std::setprecision(3) << g.worst << "x";
    else os << "a train RMSE of 0";
    os << ", width " << g.width << " seed " << g.seed
       << "): they fit the training points, not the function between them (more points, or smaller widths)";
    out.push_back(os.str());
  }
  return out;
}

std::vector<std::string> fit_warnings(const std::vector<GroupFit>& fits) {
  std::vector<std::string> out;
  for (const auto& f : fits)
    if (f.ok && f.fit_widths.size() == 2)
      out.push_back("the fit of " + f.arch + " " + f.activation + " on " + quoted(f.target) + " rests on 2 widths (" +
                    std::to_string(f.fit_widths[0]) + " and " + std::to_string(f.fit_widths[1]) +
                    "): its slope is the line through two points; widen --widths or the fit's range");
  return out;
}

nlohmann::json summary_json(const std::vector<GroupFit>& fits, const FitOptions& fit,
                            const nlohmann::json& config, const std::vector<NetResult>& results) {
  nlohmann::json j;
  j["config"] = config;
  nlohmann::json counts = nlohmann::json::object();
  for (Status st : kAllStatuses) counts[status_name(st)] = 0;
  for (const auto& r : results) counts[status_name(r.status)] = counts[status_name(r.status)].get<int>() + 1;
  const StoppedShort st = stopped_short(results);
  if (!st.drops.empty()) {
    counts["stopped_short"] = {
        {"last_rel_decrease_median", median_of(st.drops)},
        {"last_rel_decrease_max", *std::max_element(st.drops.begin(), st.drops.end())},
        {"scaled_gradient_median", median_of(st.grads)}};
  }
  j["networks"] = counts;
  put_fits(j, fits, fit);
  return j;
}

namespace {
nlohmann::json line_json(const LineFit& f) {
  return {{"slope", f.slope}, {"intercept", f.intercept}, {"r2", f.r2}, {"points", f.points}};
}
nlohmann::json stat_json(const SlopeStat& s) {
  return {{"median", s.median}, {"lo", s.lo}, {"hi", s.hi}, {"r2_median", s.r2}, {"seeds", s.seeds}};
}
}  // namespace

void put_fits(nlohmann::json& j, const std::vector<GroupFit>& fits, const FitOptions& fit) {
  j["fit_min_width"] = fit.min_width;
  j["fit_max_width"] = fit.max_width > 0 ? nlohmann::json(fit.max_width) : nlohmann::json(nullptr);
  j["bootstrap"] = {{"resamples", fit.bootstrap}, {"level", fit.level}, {"seed", fit.seed}};
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& f : fits) {
    nlohmann::json g = {{"arch", f.arch},     {"activation", f.activation},
                        {"target", f.target}, {"widths", f.widths},
                        {"params", f.params}, {"effective_params", f.effective_params},
                        {"median_test_rmse", f.median_rmse},
                        {"min_test_rmse", f.min_rmse}, {"max_test_rmse", f.max_rmse},
                        {"fit_widths", f.fit_widths}, {"ok", f.ok}};
    if (f.seeds_identical) g["seeds_identical"] = true;
    if (f.ok) {
      // The fit of the median curve across seeds.
      g["vs_width"] = line_json(f.vs_width);
      g["vs_params"] = line_json(f.vs_params);
      if (!f.effective_params.empty()) g["vs_effective_params"] = line_json(f.vs_effective);
      // Each seed's own fit: the median slope and its bootstrap interval.
      g["seed_slopes"] = {{"vs_width", stat_json(f.seed_vs_width)},
                          {"vs_params", stat_json(f.seed_vs_params)}};
      if (!f.effective_params.empty()) g["seed_slopes"]["vs_effective_params"] = stat_json(f.seed_vs_effective);
      if (!f.seed_note.empty()) g["seed_slopes"]["note"] = f.seed_note;
    } else {
      g["note"] = f.note;
    }
    arr.push_back(g);
  }
  j["fits"] = arr;
  j["fit_warnings"] = fit_warnings(fits);
}

void print_fit_table(std::ostream& os, const std::vector<GroupFit>& fits, const FitOptions& fit) {
  os << "\nL(P) slopes: median over seeds of each seed's log-log fit of test RMSE, with a "
     << static_cast<int>(std::lround(100 * fit.level)) << "% bootstrap interval (widths "
     << fit.min_width << ".." << (fit.max_width > 0 ? std::to_string(fit.max_width) : std::string("any"))
     << ")\n";
  // The arch column is as wide as its longest name ("gated:4-construct"), plus two.
  std::size_t arch_w = 15;
  for (const auto& f : fits) arch_w = std::max(arch_w, f.arch.size() + 2);
  const int aw = static_cast<int>(arch_w);
  os << std::left << std::setw(aw) << "arch" << std::setw(9) << "act" << std::setw(22) << "target"
     << std::right << std::setw(26) << "slope(n)" << std::setw(26) << "slope(P)" << std::setw(26) << "slope(P_eff)" << std::setw(8)
     << "r2" << std::setw(10) << "widths" << std::setw(7) << "seeds" << "\n";
  bool identical = false, several_seeds = false;
  auto cell = [](const SlopeStat& s, bool same) {
    std::ostringstream c;
    c << std::fixed << std::setprecision(3) << s.median;
    if (s.seeds > 1 && same) c << " [seeds identical]";
    else if (s.seeds > 1) c << " [" << s.lo << ", " << s.hi << "]";
    return c.str();
  };
  for (const auto& f : fits) {
    std::string target = f.target.size() > 21 ? f.target.substr(0, 18) + "..." : f.target;
    os << std::left << std::setw(aw) << f.arch << std::setw(9) << f.activation << std::setw(22)
       << target << std::right;
    if (f.ok) {
      std::ostringstream range;
      range << f.fit_widths.front() << "-" << f.fit_widths.back();
      const bool same = f.seeds_identical;
      identical = identical || (same && f.seed_vs_width.seeds > 1);
      several_seeds = several_seeds || f.seed_vs_width.seeds > 1;
      os << std::setw(26) << cell(f.seed_vs_width, same) << std::setw(26) << cell(f.seed_vs_params, same)
         << std::setw(26) << (f.effective_params.empty() ? std::string("-") : cell(f.seed_vs_effective, same))
         << std::fixed << std::setprecision(3) << std::setw(8) << f.seed_vs_width.r2 << std::setw(10)
         << range.str() << std::setw(7) << f.seed_vs_width.seeds << std::defaultfloat << "\n";
    } else {
      os << "  no fit: " << f.note << "\n";
    }
  }
  if (identical)
    os << "[seeds identical]: every seed trained the same networks, so the training does not depend on the seed "
          "(as for an mlp with MASO initialization and relu: its knots are fixed, and its D stage solves D "
          "exactly), and there is no spread to give an interval of.\n";
  if (several_seeds)
    os << "These slopes are medians of per-seed fits; the figures' dashed lines (summary.json's vs_width, "
          "vs_params) fit the median curve across seeds, whose slope differs a little.\n";
}

namespace {

bool has_column(const CsvTable& t, const char* name) {
  return std::find(t.header.begin(), t.header.end(), name) != t.header.end();
}

std::vector<ResultRow> result_rows(const CsvTable& t) {
  const std::string& path = t.path;
  for (const char* need : {"arch", "activation", "target", "width", "params", "seed", "train_rmse", "test_rmse",
                           "status", "reason", "newton_steps", "seconds"})
    if (!has_column(t, need))
      throw std::invalid_argument(path + ": no column '" + need + "' in the header (not a gpu-sweep results.csv?)");
  const int c_arch = t.column("arch"), c_act = t.column("activation"), c_target = t.column("target"),
            c_width = t.column("width"), c_params = t.column("params"), c_seed = t.column("seed"),
            c_train = t.column("train_rmse"), c_test = t.column("test_rmse"), c_status = t.column("status"),
            c_reason = t.column("reason"), c_steps = t.column("newton_steps"), c_secs = t.column("seconds");
  // Older files have no effective_params (their fits leave it out), nor scaled_gradient and
  // last_rel_decrease.
  const int c_eff = has_column(t, "effective_params") ? t.column("effective_params") : -1;
  const int c_sgrad = has_column(t, "scaled_gradient") ? t.column("scaled_gradient") : -1;
  const int c_drop = has_column(t, "last_rel_decrease") ? t.column("last_rel_decrease") : -1;
  const int c_start = has_column(t, "start") ? t.column("start") : -1;  // older files: start 0
  std::vector<ResultRow> rows;
  for (std::size_t k = 0; k < t.rows.size(); ++k) {
    const auto& f = t.rows[k];
    const std::string where = path + ": row " + std::to_string(k + 2);
    ResultRow r;
    r.arch = f[c_arch];
    r.activation = f[c_act];
    r.target = f[c_target];
    r.width = parse_int_field(f[c_width], where, 1, INT_MAX);
    r.params = parse_int_field(f[c_params], where, 1, INT_MAX);
    if (c_eff >= 0) r.effective_params = parse_int_field(f[c_eff], where, 1, INT_MAX);
    r.seed = parse_int_field(f[c_seed], where, 0, kMaxSeed);
    NetResult& n = r.result;
    try {
      n.status = status_from(f[c_status]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + ": " + e.what());
    }
    n.reason = f[c_reason];
    n.newton_steps = parse_int_field(f[c_steps], where, 0, INT_MAX);
    // strtod reads nan and inf too: a failed network's numbers.
    if (c_sgrad >= 0) n.scaled_grad = parse_double_field(f[c_sgrad], where);
    if (c_drop >= 0) n.rel_decrease = parse_double_field(f[c_drop], where);
    n.train_rmse = parse_double_field(f[c_train], where);
    n.test_rmse = parse_double_field(f[c_test], where);
    n.seconds = parse_double_field(f[c_secs], where);
    if (c_start >= 0) n.start = parse_int_field(f[c_start], where, 0, INT_MAX);
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace

std::vector<ResultRow> parse_results_table(const std::string& text, const std::string& path) {
  return result_rows(parse_csv_table(text, path));
}

std::vector<ResultRow> read_results_table(const std::string& path) { return result_rows(read_csv_table(path)); }

std::vector<FitRow> parse_results_csv(const std::string& text, const std::string& path) {
  std::vector<FitRow> rows;
  for (const ResultRow& f : parse_results_table(text, path)) {
    FitRow r;
    r.arch = f.arch;
    r.activation = f.activation;
    r.target = f.target;
    r.width = f.width;
    r.params = f.params;
    r.effective_params = f.effective_params;
    r.seed = f.seed;
    r.test_rmse = f.result.test_rmse;
    r.failed = f.result.status == Status::kFailed;
    rows.push_back(std::move(r));
  }
  if (rows.empty()) throw std::invalid_argument(path + ": no result rows");
  return rows;
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw WriteError("cannot write " + tmp + ": " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) {
      const std::string why = std::strerror(errno);
      out.close();
      std::remove(tmp.c_str());
      throw WriteError("cannot write " + tmp + ": " + why);
    }
    out.close();
    if (!out) {
      const std::string why = std::strerror(errno);
      std::remove(tmp.c_str());
      throw WriteError("cannot write " + tmp + ": " + why);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw WriteError("cannot rename " + tmp + " to " + path + ": " + why);
  }
}

}  // namespace gs
