// Chunk files of a running sweep, and shards. See checkpoint.h.
#include "gpusweep/io/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "gpusweep/io/output.h"

namespace fs = std::filesystem;

namespace gs {
namespace {

fs::path chunk_dir(const std::string& dir) { return fs::path(dir) / "chunks"; }

// JSON numbers cannot be NaN; a failed network's RMSE can.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double number_from(const nlohmann::json& j) { return j.is_null() ? NAN : j.get<double>(); }

}  // namespace

Status status_from(const std::string& s) {
  if (s == "converged") return Status::kConverged;
  if (s == "max_steps") return Status::kMaxSteps;
  if (s == "failed") return Status::kFailed;
  if (s == "stalled") return Status::kStalled;
  throw std::invalid_argument("unknown status '" + s + "'");
}

void write_chunk(const std::string& dir, int id, const std::vector<int>& jobs,
                 const std::vector<NetResult>& results) {
  std::error_code ec;
  fs::create_directories(chunk_dir(dir), ec);
  if (ec) throw WriteError("cannot create " + chunk_dir(dir).string() + ": " + ec.message());
  nlohmann::json arr = nlohmann::json::array();
  for (int j : jobs) {
    const NetResult& r = results[j];
    nlohmann::json params = nlohmann::json::array();
    for (double v : r.params) params.push_back(number(v));
    arr.push_back({{"job", j},
                   {"status", status_name(r.status)},
                   {"reason", r.reason},
                   {"newton_steps", r.newton_steps},
                   {"scaled_gradient", number(r.scaled_grad)},
                   {"last_rel_decrease", number(r.rel_decrease)},
                   {"train_rmse", number(r.train_rmse)},
                   {"test_rmse", number(r.test_rmse)},
                   {"seconds", r.seconds},
                   {"start", r.start},
                   {"params", params}});
  }
  char name[32];
  std::snprintf(name, sizeof name, "chunk-%06d.json", id);
  // nlohmann-json writes doubles with enough digits to read back the same bits.
  write_file_atomic((chunk_dir(dir) / name).string(), nlohmann::json{{"networks", arr}}.dump() + "\n");
}

std::map<int, NetResult> read_chunks(const std::string& dir, int num_jobs) {
  std::map<int, NetResult> out;
  std::error_code ec;
  if (!fs::is_directory(chunk_dir(dir), ec)) return out;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(chunk_dir(dir)))
    if (e.path().extension() == ".json") files.push_back(e.path());  // *.tmp: a write that never finished
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      const auto j = nlohmann::json::parse(ss.str());
      for (const auto& n : j.at("networks")) {
        const int job = n.at("job").get<int>();
        if (job < 0 || job >= num_jobs)
          throw std::invalid_argument("job " + std::to_string(job) + " is not in this sweep of " +
                                      std::to_string(num_jobs));
        if (out.count(job)) throw std::invalid_argument("job " + std::to_string(job) + " appears twice");
        NetResult r;
        r.status = status_from(n.at("status").get<std::string>());
        r.reason = n.at("reason").get<std::string>();
        r.newton_steps = n.at("newton_steps").get<int>();
        // Chunks written before these two numbers were recorded read as NaN.
        r.scaled_grad = n.contains("scaled_gradient") ? number_from(n.at("scaled_gradient")) : NAN;
        r.rel_decrease = n.contains("last_rel_decrease") ? number_from(n.at("last_rel_decrease")) : NAN;
        r.train_rmse = number_from(n.at("train_rmse"));
        r.test_rmse = number_from(n.at("test_rmse"));
        r.seconds = n.at("seconds").get<double>();
        r.start = n.contains("start") ? n.at("start").get<int>() : 0;
        for (const auto& v : n.at("params")) r.params.push_back(number_from(v));
        out[job] = std::move(r);
      }
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(f.string() + ": not a chunk of results (" + std::string(e.what()) + ")");
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(f.string() + ": " + e.what());
    }
  }
  return out;
}

int count_chunks(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(chunk_dir(dir), ec)) return 0;
  int n = 0;
  for (const auto& e : fs::directory_iterator(chunk_dir(dir)))
    if (e.path().extension() == ".json") ++n;
  return n;
}

void remove_chunks(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(chunk_dir(dir), ec);
}

void parse_shard(const std::string& text, int* k, int* n) {
  const auto slash = text.find('/');
  auto whole = [&](const std::string& s, int* v) {
    std::size_t used = 0;
    try {
      *v = std::stoi(s, &used);
    } catch (const std::exception&) {
      return false;
    }
    return used == s.size() && !s.empty();
  };
  if (slash == std::string::npos || !whole(text.substr(0, slash), k) || !whole(text.substr(slash + 1), n) ||
      *n < 1 || *k < 1 || *k > *n)
    throw std::invalid_argument("--shard: want k/N with 1 <= k <= N, not '" + text + "'");
}

std::vector<int> shard_jobs(const std::vector<Job>& jobs, const std::vector<int>& dims, int k, int n) {
  std::vector<double> cost(jobs.size());
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const double p = job_params(jobs[j], dims);
    cost[j] = jobs[j].method == Method::kTrain ? p * p : p;
  }
  std::vector<int> order(jobs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cost[a] > cost[b]; });
  std::vector<double> load(n, 0.0);
  std::vector<int> mine;
  for (int j : order) {
    const int s = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[s] += cost[j];
    if (s == k - 1) mine.push_back(j);
  }
  std::sort(mine.begin(), mine.end());
  return mine;
}

}  // namespace gs
