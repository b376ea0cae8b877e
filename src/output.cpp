// results.csv, summary.json and the slope table.
#include "gpusweep/output.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace gs {

std::string results_csv(const SweepSpec& spec, const std::vector<Job>& jobs,
                        const std::vector<NetResult>& results) {
  std::ostringstream os;
  os << "arch,activation,target,width,params,seed,train_rmse,test_rmse,status,reason,"
        "newton_steps,seconds\n";
  os << std::setprecision(17);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const Job& job = jobs[j];
    const NetResult& r = results[j];
    const Dataset& ds = spec.datasets[job.target];
    std::string target = ds.name;
    if (target.find_first_of(",\"\n") != std::string::npos) {
      std::string q = "\"";
      for (char c : target) q += c == '"' ? std::string("\"\"") : std::string(1, c);
      target = q + "\"";
    }
    os << model_name(job.model()) << ',' << model_act_name(job.model(), job.act) << ',' << target
       << ',' << job.width << ',' << model_num_params(job.model(), ds.d, job.width) << ',' << job.seed << ','
       << r.train_rmse << ',' << r.test_rmse << ',' << status_name(r.status) << ',' << r.reason
       << ',' << r.newton_steps << ',' << std::setprecision(6) << r.seconds
       << std::setprecision(17) << '\n';
  }
  return os.str();
}

nlohmann::json summary_json(const std::vector<GroupFit>& fits, int min_width,
                            const nlohmann::json& config, const std::vector<NetResult>& results) {
  nlohmann::json j;
  j["config"] = config;
  nlohmann::json counts = {{"converged", 0}, {"max_steps", 0}, {"failed", 0}};
  for (const auto& r : results) counts[status_name(r.status)] = counts[status_name(r.status)].get<int>() + 1;
  j["networks"] = counts;
  j["fit_min_width"] = min_width;
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& f : fits) {
    nlohmann::json g = {{"arch", f.arch},     {"activation", f.activation},
                        {"target", f.target}, {"widths", f.widths},
                        {"params", f.params}, {"median_test_rmse", f.median_rmse},
                        {"ok", f.ok}};
    if (f.ok) {
      g["vs_width"] = {{"slope", f.vs_width.slope}, {"intercept", f.vs_width.intercept},
                       {"r2", f.vs_width.r2}, {"points", f.vs_width.points}};
      g["vs_params"] = {{"slope", f.vs_params.slope}, {"intercept", f.vs_params.intercept},
                        {"r2", f.vs_params.r2}, {"points", f.vs_params.points}};
    } else {
      g["note"] = f.note;
    }
    arr.push_back(g);
  }
  j["fits"] = arr;
  return j;
}

void print_fit_table(std::ostream& os, const std::vector<GroupFit>& fits, int min_width) {
  os << "\nL(P) slopes of the median test RMSE across seeds (log-log least squares, width >= "
     << min_width << ")\n";
  os << std::left << std::setw(14) << "arch" << std::setw(9) << "act" << std::setw(22) << "target"
     << std::right << std::setw(10) << "slope(n)" << std::setw(10) << "slope(P)" << std::setw(8)
     << "r2" << std::setw(10) << "widths" << "\n";
  for (const auto& f : fits) {
    std::string target = f.target.size() > 21 ? f.target.substr(0, 18) + "..." : f.target;
    os << std::left << std::setw(14) << f.arch << std::setw(9) << f.activation << std::setw(22)
       << target << std::right;
    if (f.ok) {
      std::ostringstream range;
      range << f.widths.front() << "-" << f.widths.back();
      os << std::fixed << std::setprecision(3) << std::setw(10) << f.vs_width.slope
         << std::setw(10) << f.vs_params.slope << std::setw(8) << f.vs_width.r2 << std::setw(10)
         << range.str() << std::defaultfloat << "\n";
    } else {
      os << "  no fit: " << f.note << "\n";
    }
  }
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + why);
  }
}

}  // namespace gs
