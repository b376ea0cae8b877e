// Writing a sweep's results: results.csv, summary.json and the terminal table. Files are
// written to a temporary name and renamed into place, so a reader never sees half a file.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "gpusweep/fit.h"

namespace gs {

std::string results_csv(const SweepSpec& spec, const std::vector<Job>& jobs,
                        const std::vector<NetResult>& results);
// Each dataset's dimension, point counts and standardization map, for summary.json.
nlohmann::json datasets_json(const std::vector<Dataset>& datasets);

nlohmann::json summary_json(const std::vector<GroupFit>& fits, const FitOptions& fit,
                            const nlohmann::json& config, const std::vector<NetResult>& results);
// One line on the networks that stopped at the step limit and how far from an optimum (their
// last relative loss decrease and scaled gradient); empty when none did.
std::string stopped_short_line(const std::vector<NetResult>& results);
// The "fits" part of summary.json (and the fit options), for summary_json and `gpu-sweep fit`.
void put_fits(nlohmann::json& summary, const std::vector<GroupFit>& fits, const FitOptions& fit);
void print_fit_table(std::ostream& os, const std::vector<GroupFit>& fits, const FitOptions& fit);

// Reads the rows of a results.csv written by results_csv. Throws std::invalid_argument with
// one line naming the file, the line and the problem.
std::vector<FitRow> parse_results_csv(const std::string& text, const std::string& path);

// Writes text to path through path + ".tmp" and a rename. Throws std::runtime_error.
void write_file_atomic(const std::string& path, const std::string& text);

}  // namespace gs
