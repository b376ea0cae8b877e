// A sweep's results: writing results.csv, summary.json and the terminal table, and reading
// results.csv back. Files are written to a temporary name and renamed into place, so a reader
// never sees half a file.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpusweep/analysis/fit.h"

namespace gs {

std::string results_csv(const SweepSpec& spec, const std::vector<Job>& jobs,
                        const std::vector<NetResult>& results);
// Each dataset's dimension, point counts and standardization map, for summary.json.
nlohmann::json datasets_json(const std::vector<Dataset>& datasets);

nlohmann::json summary_json(const std::vector<GroupFit>& fits, const FitOptions& fit,
                            const nlohmann::json& config, const std::vector<NetResult>& results);
// summary.json's host_transfers: the bytes a run on a backend with a device moved to the host
// and to the device, its network-steps (SweepTransfers), the bytes of each direction per
// network-step (null without a step) and the mean P of a network-step; and the terminal's line
// on them. Only for transfers.bytes present.
nlohmann::json host_transfers_json(const SweepTransfers& transfers);
std::string host_transfers_line(const SweepTransfers& transfers);
// One line on the networks that stopped at the step limit and how far from an optimum (their
// last relative loss decrease and scaled gradient); empty when none did.
std::string stopped_short_line(const std::vector<NetResult>& results);

// What a researcher should know before trusting the numbers, one line each (the program
// prints them as warnings on stderr, and summary.json keeps them):
// - before training: a --data set whose test rows are its training rows (--test-fraction 0);
//   widths whose networks have more parameters than the training points;
std::vector<std::string> plan_warnings(const SweepSpec& spec, const std::vector<Job>& jobs);
// - after: networks whose test RMSE is more than kOverfitRatio times their train RMSE;
constexpr double kOverfitRatio = 10.0;
std::vector<std::string> result_warnings(const SweepSpec& spec, const std::vector<Job>& jobs,
                                         const std::vector<NetResult>& results);
// - fits that rest on two widths.
std::vector<std::string> fit_warnings(const std::vector<GroupFit>& fits);
// The "fits" part of summary.json (and the fit options), for summary_json and `gpu-sweep fit`.
void put_fits(nlohmann::json& summary, const std::vector<GroupFit>& fits, const FitOptions& fit);
void print_fit_table(std::ostream& os, const std::vector<GroupFit>& fits, const FitOptions& fit);

// One row of results.csv, every column: the network and its outcome.
struct ResultRow {
  std::string arch, activation, target;
  int width = 0;
  int params = 0;
  int effective_params = 0;  // 0: unknown (a results.csv from before the column)
  int seed = 0;
  // status, reason, newton_steps, scaled_gradient, last_rel_decrease, train_rmse, test_rmse
  // and seconds; params stays empty (the parameters are in params.bin).
  NetResult result;
};

// The reader of results.csv: the rows of a file written by results_csv, from its text (path
// names it in errors) or from the file. Columns that older files lack are optional:
// effective_params (0 then), scaled_gradient and last_rel_decrease (NaN then). Throws
// std::invalid_argument with one line naming the file, the row or the column, and the problem.
std::vector<ResultRow> parse_results_table(const std::string& text, const std::string& path);
std::vector<ResultRow> read_results_table(const std::string& path);

// The rows of a results.csv as the fits see them (parse_results_table's); a file without
// rows is refused too.
std::vector<FitRow> parse_results_csv(const std::string& text, const std::string& path);

// A file that could not be written (a full disk, a quota, no permission). Like bad input, it
// is the user's to fix: the program exits with status 2.
class WriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes text to path through path + ".tmp" and a rename. Throws WriteError.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace gs
